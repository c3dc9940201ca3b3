//! TCP transport.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

#[cfg(target_os = "linux")]
use super::BulkRead;
#[cfg(target_os = "linux")]
use super::bulk::{Timer, recv_now};
use super::probe::{SocketPeek, peek_socket};
use super::sockopt::{SocketOptions, configure_tcp};
use super::{Transport, TransportKind};

/// A TCP connection with TCP_NODELAY, keepalive and TCP_USER_TIMEOUT applied.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    #[cfg(target_os = "linux")]
    bulk: Bulk,
}

/// Bulk reading over TCP: a receive low-water mark holds the wake-up back,
/// and a timer bounds every wait under it.
#[cfg(target_os = "linux")]
#[derive(Debug, Default)]
struct Bulk {
    settings: Option<BulkRead>,
    /// The mark in force (0 or 1: the kernel's default).
    low_water: usize,
    /// Set when the mark was lowered: bytes already waiting under the old
    /// mark raised no readiness event, so the next read looks for them once
    /// without waiting for one.
    read_now: bool,
    /// The timer ran out: the mark is down until the next bytes arrive.
    lowered: bool,
    timer: Option<Timer>,
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
            #[cfg(target_os = "linux")]
            bulk: Bulk::default(),
        })
    }

    /// The underlying stream (to read socket options back, for example).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Sets the socket's receive low-water mark (`SO_RCVLOWAT`): it reports
    /// itself readable only once `bytes` are waiting (or the peer closed).
    /// `1` restores the default; the next read then returns the bytes already
    /// waiting, even though lowering the mark raised no readiness event.
    ///
    /// # Errors
    /// The `setsockopt` error.
    #[cfg(target_os = "linux")]
    pub fn set_recv_low_water(&mut self, bytes: usize) -> io::Result<()> {
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
        if bytes < self.bulk.low_water {
            self.bulk.read_now = true;
        }
        self.bulk.low_water = bytes;
        Ok(())
    }

    /// The read of [`AsyncRead::poll_read`] under bulk settings.
    #[cfg(target_os = "linux")]
    fn poll_read_bulk(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        settings: BulkRead,
    ) -> Poll<io::Result<()>> {
        loop {
            let filled = buf.filled().len();
            let result = if std::mem::take(&mut self.bulk.read_now) {
                match recv_now(&self.stream, buf) {
                    Ok(true) => Poll::Ready(Ok(())),
                    Ok(false) => Pin::new(&mut self.stream).poll_read(cx, buf),
                    Err(e) => Poll::Ready(Err(e)),
                }
            } else {
                Pin::new(&mut self.stream).poll_read(cx, buf)
            };
            match result {
                Poll::Ready(Ok(())) => {
                    if let Some(timer) = self.bulk.timer.as_mut() {
                        timer.cancel();
                    }
                    if self.bulk.lowered && buf.filled().len() > filled {
                        self.bulk.lowered = false;
                        self.set_recv_low_water(settings.low_water)?;
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if self.bulk.lowered => return Poll::Pending,
                Poll::Pending => {}
            }
            let timer = Timer::in_slot(&mut self.bulk.timer)?;
            if timer.poll_after(cx, settings.max_wait)?.is_pending() {
                return Poll::Pending;
            }
            // The mark was not reached in time: take what is there, and wait
            // for data as usual if nothing is.
            self.bulk.lowered = true;
            self.set_recv_low_water(1)?;
        }
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
    fn set_bulk_read(&mut self, bulk: Option<&BulkRead>) -> io::Result<bool> {
        if bulk.is_some() && !Timer::ready_in(&mut self.bulk.timer) {
            return Ok(false);
        }
        self.bulk.settings = bulk.copied();
        self.bulk.lowered = false;
        if let Some(timer) = self.bulk.timer.as_mut() {
            timer.cancel();
        }
        self.set_recv_low_water(bulk.map_or(1, |b| b.low_water))?;
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
        #[cfg(target_os = "linux")]
        if let Some(settings) = this.bulk.settings {
            return this.poll_read_bulk(cx, buf, settings);
        }
        #[cfg(target_os = "linux")]
        if std::mem::take(&mut this.bulk.read_now) && recv_now(&this.stream, buf)? {
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
