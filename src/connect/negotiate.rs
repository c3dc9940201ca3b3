//! SSL negotiation: SSLRequest and its one-byte answer, refusing bytes that
//! arrive with or after the `S` (CVE-2021-23222 family), and starting TLS.

use std::io;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tls::{ALPN_POSTGRESQL, TlsSetup};
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
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

/// Message for bytes that arrived with the `S`, before the TLS handshake (the
/// first defence; the TLS layer's guard has its own message).
pub(crate) const INJECTION: &str =
    "unencrypted data after SSL response (possible man-in-the-middle); refusing to start TLS";

/// The source of an [`INJECTION`] error: what tells an attack apart from a
/// failed handshake (sslmode=prefer retries after the one, never the other).
#[derive(Debug)]
pub(crate) struct InjectionRefused;

impl std::fmt::Display for InjectionRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes arrived before the TLS handshake")
    }
}

impl std::error::Error for InjectionRefused {}

fn injection() -> Error {
    Error::tls_with_source(INJECTION.to_owned(), InjectionRefused)
}

/// The second defence: plaintext that arrived only after `request_ssl` had
/// looked (a later segment), caught by the TLS layer's first-byte guard. Its
/// own message (naming the byte) tells which defence fired; the same marker
/// keeps sslmode=prefer from retrying in plaintext.
fn injection_in_handshake(plaintext: PlaintextBeforeTls) -> Error {
    Error::tls_with_source(
        format!(
            "unencrypted data after SSL response, seen once the TLS handshake had begun \
             (first byte 0x{:02x} where a TLS record should start; possible man-in-the-middle); \
             refusing to continue TLS",
            plaintext.first_byte
        ),
        InjectionRefused,
    )
}

/// Whether `e` refused bytes injected before TLS (either defence).
pub(crate) fn is_injection(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<InjectionRefused>())
}

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
        b'S' if socket.probe().has_data() && !mutant(Mutant::AcceptBytesAfterS) => Err(injection()),
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
    let attempt = setup.attempt();
    let host = match &name {
        ServerName::DnsName(n) => n.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    };
    let mut tls = TlsTransport::connect(socket, attempt.config.clone(), name)
        .await
        .map_err(|e| handshake_error(e, setup, &host, direct))?;
    let (requested, sent) = attempt.client_cert();
    tls.set_client_cert(requested, sent);
    let alpn = tls.info().alpn_protocol.as_deref();
    if direct && alpn != Some(ALPN_POSTGRESQL) {
        return Err(Error::tls(
            "direct SSL connection established without ALPN protocol negotiation: the server does not \
             support sslnegotiation=direct (PostgreSQL 17+ needed); use sslnegotiation=postgres",
        ));
    }
    Ok(tls)
}

fn handshake_error(e: io::Error, setup: &TlsSetup, host: &str, direct: bool) -> Error {
    if let Some(plaintext) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<PlaintextBeforeTls>())
    {
        return injection_in_handshake(*plaintext);
    }
    let explained = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| setup.explain(tls, host));
    let reason = match (explained, e.kind()) {
        (Some(why), _) => format!("TLS handshake failed: {why}"),
        // A server before 17 reads a ClientHello as a malformed startup
        // packet and hangs up without a word: the likeliest cause, so say it.
        (None, io::ErrorKind::UnexpectedEof) if direct => {
            "the server closed the connection during the TLS handshake: a server before \
             PostgreSQL 17 does this with sslnegotiation=direct; use sslnegotiation=postgres"
                .to_owned()
        }
        (None, io::ErrorKind::UnexpectedEof) => {
            "the server closed the connection during the TLS handshake".to_owned()
        }
        // The I/O error (rustls' alert, say) is the source.
        (None, _) => "TLS handshake failed".to_owned(),
    };
    Error::tls_with_source(reason, e)
}
