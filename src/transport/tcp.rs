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
    /// The receive low-water mark in force (1: the kernel's default).
    low_water: usize,
    /// Set when the mark was lowered: bytes already waiting under the old
    /// mark raised no readiness event, so the next read looks for them once
    /// without waiting for one.
    read_now: bool,
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
        Ok(Self {
            stream,
            low_water: 1,
            read_now: false,
        })
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

    #[cfg(target_os = "linux")]
    fn set_recv_low_water(&mut self, bytes: usize) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let bytes = bytes.max(1);
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is open for as long as `self.stream` lives;
        // the option value is a c_int read by the kernel during the call, and
        // its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                std::ptr::from_ref(&value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if bytes < self.low_water {
            self.read_now = true;
        }
        self.low_water = bytes;
        Ok(true)
    }
}

impl AsyncRead for TcpTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.read_now) && buf.remaining() > 0 {
            // The socket is non-blocking: this returns what is waiting, or
            // WouldBlock, and never waits.
            let n = match io::Read::read(
                &mut &*SockRef::from(&this.stream),
                buf.initialize_unfilled(),
            ) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Pin::new(&mut this.stream).poll_read(cx, buf);
                }
                Err(e) => return Poll::Ready(Err(e)),
            };
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
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
