//! Unix-domain socket transport (no socket options apply).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use super::probe::{SocketPeek, peek_socket};
use super::{Transport, TransportKind};

/// A Unix-domain socket connection.
#[derive(Debug)]
pub struct UnixTransport {
    stream: UnixStream,
}

impl UnixTransport {
    /// Connects to the socket file at `path`; a path starting with `@` names a
    /// Linux abstract socket.
    ///
    /// # Errors
    /// The connect error.
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let stream = match path.to_str().and_then(|p| p.strip_prefix('@')) {
            Some(name) => connect_abstract(name)?,
            None => UnixStream::connect(path).await?,
        };
        Ok(Self { stream })
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: UnixStream) -> Self {
        Self { stream }
    }
}

#[cfg(target_os = "linux")]
fn connect_abstract(name: &str) -> io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    // Connecting to a local socket does not block for long; tokio has no
    // abstract-name connect, so do it with std and hand the socket over.
    let std_stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    std_stream.set_nonblocking(true)?;
    UnixStream::from_std(std_stream)
}

#[cfg(not(target_os = "linux"))]
fn connect_abstract(name: &str) -> io::Result<UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("abstract Unix socket @{name} needs Linux"),
    ))
}

impl Transport for UnixTransport {
    fn probe(&self) -> SocketPeek {
        peek_socket(&self.stream)
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Unix
    }
}

impl AsyncRead for UnixTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for UnixTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
