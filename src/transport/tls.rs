//! TLS over any transport, with rustls. What to verify, ALPN and SNI come in
//! with the `ClientConfig` and the server name; this module only runs it.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::probe::SocketPeek;
use super::{BulkRead, Transport, TransportKind};

/// What the TLS handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// e.g. `TLSv1_3`.
    pub protocol_version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The ALPN protocol the server selected, if any.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The server's end-entity certificate (DER), for channel binding.
    pub server_certificate: Option<Vec<u8>>,
    /// Whether the server asked for a client certificate (set by the layer
    /// that configured TLS; false when it does not record it).
    pub client_cert_requested: bool,
    /// Whether a client certificate was sent in answer.
    pub client_cert_sent: bool,
}

/// The error a handshake fails with when the peer's first bytes are not TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaintextBeforeTls {
    /// The first byte received.
    pub first_byte: u8,
}

impl fmt::Display for PlaintextBeforeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unencrypted data (first byte 0x{:02x}) where the TLS handshake should start (possible man-in-the-middle)",
            self.first_byte
        )
    }
}

impl std::error::Error for PlaintextBeforeTls {}

/// A TLS session over the transport `T`.
pub struct TlsTransport<T> {
    stream: TlsStream<FirstByteGuard<T>>,
    info: TlsInfo,
}

impl<T> fmt::Debug for TlsTransport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> TlsTransport<T> {
    /// Runs the TLS handshake over `inner`.
    ///
    /// The first byte the server sends must start a TLS record (handshake or
    /// alert); anything else fails with [`PlaintextBeforeTls`] as the source of
    /// an `InvalidData` error, before a single decrypted byte is used.
    ///
    /// # Errors
    /// The handshake's I/O or TLS error (as `io::Error`, the rustls error inside).
    pub async fn connect(
        inner: T,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Self> {
        let stream = TlsConnector::from(config)
            .connect(
                server_name,
                FirstByteGuard {
                    inner,
                    checked: false,
                },
            )
            .await?;
        let (_, session) = stream.get_ref();
        let info = TlsInfo {
            protocol_version: session
                .protocol_version()
                .map_or_else(String::new, |v| format!("{v:?}")),
            cipher_suite: session
                .negotiated_cipher_suite()
                .map_or_else(String::new, |c| format!("{:?}", c.suite())),
            alpn_protocol: session.alpn_protocol().map(<[u8]>::to_vec),
            server_certificate: session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec()),
            client_cert_requested: false,
            client_cert_sent: false,
        };
        Ok(Self { stream, info })
    }

    /// Records what the client-certificate resolver saw during the handshake
    /// (rustls does not report it).
    pub(crate) fn set_client_cert(&mut self, requested: bool, sent: bool) {
        self.info.client_cert_requested = requested;
        self.info.client_cert_sent = sent;
    }

    /// What the handshake settled.
    pub fn info(&self) -> &TlsInfo {
        &self.info
    }

    /// The transport under TLS (to read socket options back, for example).
    pub fn get_ref(&self) -> &T {
        &self.stream.get_ref().0.inner
    }
}

impl<T: Transport> Transport for TlsTransport<T> {
    /// Probes the socket under TLS: FIN/RST show; TLS-level state does not.
    fn probe(&self) -> SocketPeek {
        self.get_ref().probe()
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Tls
    }

    fn tls_info(&self) -> Option<&TlsInfo> {
        Some(&self.info)
    }

    /// Bulk reading of the socket under the TLS layer.
    fn set_bulk_read(&mut self, bulk: Option<&BulkRead>) -> io::Result<bool> {
        self.stream.get_mut().0.inner.set_bulk_read(bulk)
    }
}

impl<T: Transport> AsyncRead for TlsTransport<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<T: Transport> AsyncWrite for TlsTransport<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    // Forwarded so a COPY IN chunk and its header enter rustls in one call
    // (the default passes only the first slice: a 5-byte write of its own).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Checks that the first byte read from the peer starts a TLS record.
struct FirstByteGuard<T> {
    inner: T,
    checked: bool,
}

/// TLS record content types a server may open with: alert (21), handshake (22).
const TLS_ALERT: u8 = 0x15;
const TLS_HANDSHAKE: u8 = 0x16;

impl<T: Transport> AsyncRead for FirstByteGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.checked && !crate::mutant::mutant(crate::mutant::Mutant::AcceptBytesAfterS) {
            if let Some(&first) = buf.filled().get(before) {
                this.checked = true;
                if first != TLS_HANDSHAKE && first != TLS_ALERT {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        PlaintextBeforeTls { first_byte: first },
                    )));
                }
            }
        }
        result
    }
}

impl<T: Transport> AsyncWrite for FirstByteGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    // rustls hands its queued records to the socket as one vectored write.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
