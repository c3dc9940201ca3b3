//! SSL negotiation: SSLRequest and its one-byte answer, refusing bytes that
//! arrive with or after the `S` (CVE-2021-23222 family), and starting TLS.

use std::io;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tls::{ALPN_POSTGRESQL, TlsSetup};
use crate::error::Error;
use crate::internal::{Mutant, mutant};
use crate::protocol::frontend;
use crate::transport::{PlaintextBeforeTls, TlsTransport, Transport};

/// The server's answer to SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslAnswer {
    /// `S`: go ahead with TLS.
    Accepted,
    /// `N`: no TLS on this server.
    Refused,
}

/// Message for bytes that arrived before the TLS handshake.
pub(crate) const INJECTION: &str =
    "unencrypted data after SSL response (possible man-in-the-middle); refusing to start TLS";

/// Sends SSLRequest and reads exactly one byte of answer.
///
/// # Errors
/// Kind `Closed` "Connection closed during SSL negotiation"; kind `Tls` for an
/// `E` answer, an unexpected byte, or bytes already waiting after `S`.
pub(crate) async fn request_ssl<T: Transport>(socket: &mut T) -> Result<SslAnswer, Error> {
    let mut buf = bytes::BytesMut::with_capacity(8);
    frontend::ssl_request(&mut buf);
    socket
        .write_all(&buf)
        .await
        .map_err(|e| Error::io("sending SSLRequest", e))?;
    socket
        .flush()
        .await
        .map_err(|e| Error::io("sending SSLRequest", e))?;
    let mut answer = [0u8; 1];
    // A one-byte read never takes more than the answer from the kernel, so any
    // byte after it is still there for the probe below.
    let n = socket
        .read(&mut answer)
        .await
        .map_err(|e| Error::io("reading the SSL response", e))?;
    if n == 0 {
        return Err(Error::closed("Connection closed during SSL negotiation"));
    }
    match answer[0] {
        b'S' if socket.probe().has_data() && !mutant(Mutant::AcceptBytesAfterS) => {
            Err(Error::tls(INJECTION))
        }
        b'S' => Ok(SslAnswer::Accepted),
        b'N' => Ok(SslAnswer::Refused),
        b'E' => Err(Error::tls(
            "the server sent an error during SSL negotiation (it may be too old to understand SSLRequest)",
        )),
        other => Err(Error::tls(format!(
            "unexpected SSL response 0x{other:02x} to SSLRequest"
        ))),
    }
}

/// Runs the TLS handshake over `socket`.
///
/// # Errors
/// Kind `Tls`, naming the handshake, for any handshake failure; the injection
/// message if the server's first bytes are not TLS; "without ALPN" for direct
/// negotiation with a server that selected no ALPN protocol.
pub(crate) async fn start_tls<T: Transport>(
    socket: T,
    setup: &TlsSetup,
    name: ServerName<'static>,
    direct: bool,
) -> Result<TlsTransport<T>, Error> {
    let tls = TlsTransport::connect(socket, setup.client_config(), name)
        .await
        .map_err(handshake_error)?;
    let alpn = tls.info().alpn_protocol.as_deref();
    if direct && alpn != Some(ALPN_POSTGRESQL) {
        return Err(Error::tls(
            "direct SSL connection established without ALPN protocol negotiation: the server does not \
             support sslnegotiation=direct (PostgreSQL 17+ needed); use sslnegotiation=postgres",
        ));
    }
    Ok(tls)
}

fn handshake_error(e: io::Error) -> Error {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<PlaintextBeforeTls>())
    {
        return Error::tls(INJECTION);
    }
    let reason = match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the TLS handshake".to_owned()
        }
        _ => format!("TLS handshake failed: {e}"),
    };
    Error::tls_with_source(reason, e)
}
