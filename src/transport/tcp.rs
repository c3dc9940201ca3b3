//! TCP transport.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::probe::{SocketPeek, peek_socket};
use super::sockopt::{SocketOptions, configure_tcp};
use super::{Transport, TransportKind};

/// A TCP connection with TCP_NODELAY, keepalive and TCP_USER_TIMEOUT applied.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Connects to `addr` and applies `options`.
    ///
    /// # Errors
    /// The connect error, or the first socket option that failed (the socket is
    /// closed before returning: no descriptor leaks).
    pub async fn connect(addr: SocketAddr, options: &SocketOptions) -> io::Result<Self> {
        Self::from_stream(TcpStream::connect(addr).await?, options)
    }

    /// Wraps a connected stream, applying `options`.
    ///
    /// # Errors
    /// The first socket option that failed; `stream` is dropped (closed).
    pub fn from_stream(stream: TcpStream, options: &SocketOptions) -> io::Result<Self> {
        configure_tcp(SockRef::from(&stream), options)?;
        Ok(Self { stream })
    }

    /// The underlying stream (to read socket options back, for example).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl Transport for TcpTransport {
    fn probe(&self) -> SocketPeek {
        peek_socket(&self.stream)
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Tcp
    }
}

impl AsyncRead for TcpTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
