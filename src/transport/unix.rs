//! Unix-domain socket transport (no socket options apply).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

#[cfg(target_os = "linux")]
use super::BulkRead;
#[cfg(target_os = "linux")]
use super::bulk::{Timer, recv_now};
use super::probe::{SocketPeek, peek_socket};
use super::{Transport, TransportKind};

/// A Unix-domain socket connection.
#[derive(Debug)]
pub struct UnixTransport {
    io: Io,
    #[cfg(target_os = "linux")]
    bulk: Bulk,
}

#[derive(Debug)]
enum Io {
    /// In the reactor, with read and write interest.
    Registered(UnixStream),
    /// Out of the reactor while a bulk read sleeps, so the server's sends
    /// wake no one (a Unix socket has no receive low-water mark).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Bare(std::os::unix::net::UnixStream),
    /// Moving it between the two failed: the socket is gone.
    Lost,
}

/// Bulk reading over a Unix socket: timed reads, out of the reactor.
#[cfg(target_os = "linux")]
#[derive(Debug, Default)]
struct Bulk {
    settings: Option<BulkRead>,
    /// A timed read found nothing: wait for data as usual until some comes.
    waited: bool,
    timer: Option<Timer>,
    waits: u64,
    /// The current wait: `max_wait`, shortened while the server fills it
    /// with more than `FULL` bytes.
    wait: std::time::Duration,
    /// Bytes read since the last wait ended.
    since_wait: usize,
}

/// A Unix socket queues at most the server's send buffer (about 200 KB by
/// default) before the server blocks: a wait that lets this much pile up is
/// too long, and one that lets in less than `SPARSE` could be longer.
#[cfg(target_os = "linux")]
const FULL: usize = 128 << 10;
#[cfg(target_os = "linux")]
const SPARSE: usize = 32 << 10;

#[cfg(target_os = "linux")]
impl Bulk {
    /// Before a new wait: fits its length to how much the last one let in,
    /// between `max_wait / 16` and `max_wait`.
    fn fit_wait(&mut self, max_wait: std::time::Duration) {
        if self.since_wait >= FULL {
            self.wait = (self.wait / 2).max(max_wait / 16);
        } else if self.since_wait < SPARSE {
            self.wait = (self.wait * 2).min(max_wait);
        }
        self.since_wait = 0;
    }
}

fn lost() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the Unix socket was lost moving it into or out of the reactor",
    )
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
        Ok(Self::from_stream(stream))
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: UnixStream) -> Self {
        Self {
            io: Io::Registered(stream),
            #[cfg(target_os = "linux")]
            bulk: Bulk::default(),
        }
    }

    /// How many times a bulk read slept on its timer (diagnostics: shows
    /// bulk reading at work).
    pub fn bulk_waits(&self) -> u64 {
        #[cfg(target_os = "linux")]
        return self.bulk.waits;
        #[cfg(not(target_os = "linux"))]
        0
    }

    /// The user id the process at the other end ran as when it created the
    /// socket (SO_PEERCRED), as the kernel recorded it: the server cannot
    /// claim another.
    ///
    /// # Errors
    /// The `getsockopt` error; `Unsupported` where the platform has no
    /// SO_PEERCRED (only Linux is supported).
    pub fn peer_uid(&self) -> io::Result<u32> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.fd().ok_or_else(lost)?;
            let mut cred = libc::ucred {
                pid: 0,
                uid: 0,
                gid: 0,
            };
            let mut len = libc::socklen_t::try_from(size_of::<libc::ucred>())
                .map_err(|_| io::Error::other("ucred size"))?;
            // SAFETY: `fd` is a live socket borrowed for the call; `cred` and
            // `len` are a ucred-sized buffer and its size, as SO_PEERCRED needs.
            let rc = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_PEERCRED,
                    (&raw mut cred).cast(),
                    &raw mut len,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(cred.uid)
        }
        #[cfg(not(target_os = "linux"))]
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_PEERCRED is not available on this platform",
        ))
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.io {
            Io::Registered(s) => Some(s.as_fd()),
            Io::Bare(s) => Some(s.as_fd()),
            Io::Lost => None,
        }
    }

    /// The stream, back in the reactor if a bulk read had taken it out.
    fn stream(&mut self) -> io::Result<&mut UnixStream> {
        if let Io::Bare(_) = self.io {
            self.io = match std::mem::replace(&mut self.io, Io::Lost) {
                Io::Bare(s) => Io::Registered(UnixStream::from_std(s)?),
                other => other,
            };
        }
        match &mut self.io {
            Io::Registered(s) => Ok(s),
            _ => Err(lost()),
        }
    }

    /// The read of [`AsyncRead::poll_read`] under bulk settings.
    #[cfg(target_os = "linux")]
    fn poll_read_bulk(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        settings: BulkRead,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        loop {
            if self.bulk.waited {
                let result = Pin::new(self.stream()?).poll_read(cx, buf);
                if result.is_ready() {
                    self.bulk.waited = false;
                    self.bulk.since_wait = buf.filled().len() - before;
                }
                return result;
            }
            if !self.bulk.timer.as_ref().is_some_and(Timer::is_armed) {
                if recv_now(&self.fd().ok_or_else(lost)?, buf)? {
                    self.bulk.since_wait += buf.filled().len() - before;
                    return Poll::Ready(Ok(()));
                }
                // Nothing waiting: sleep out of the reactor, so the server's
                // sends wake no one.
                if let Io::Registered(_) = self.io {
                    self.io = match std::mem::replace(&mut self.io, Io::Lost) {
                        Io::Registered(s) => Io::Bare(s.into_std()?),
                        other => other,
                    };
                }
                self.bulk.fit_wait(settings.max_wait);
            }
            // Armed: only the timer ends the wait.
            let wait = self.bulk.wait;
            if Timer::in_slot(&mut self.bulk.timer)?
                .poll_after(cx, wait)?
                .is_pending()
            {
                return Poll::Pending;
            }
            self.bulk.waits += 1;
            if recv_now(&self.fd().ok_or_else(lost)?, buf)? {
                self.bulk.since_wait += buf.filled().len() - before;
                return Poll::Ready(Ok(()));
            }
            // A whole wait without a byte: the response ended or paused.
            self.bulk.waited = true;
        }
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
        match self.fd() {
            Some(fd) => peek_socket(&fd),
            None => SocketPeek::Unavailable,
        }
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Unix
    }

    #[cfg(target_os = "linux")]
    fn set_bulk_read(&mut self, bulk: Option<&BulkRead>) -> io::Result<bool> {
        if bulk.is_some() && !Timer::ready_in(&mut self.bulk.timer) {
            return Ok(false);
        }
        self.bulk.settings = bulk.copied();
        self.bulk.waited = false;
        self.bulk.wait = bulk.map_or(std::time::Duration::ZERO, |b| b.max_wait);
        self.bulk.since_wait = 0;
        if let Some(timer) = self.bulk.timer.as_mut() {
            timer.cancel();
        }
        Ok(true)
    }
}

impl AsyncRead for UnixTransport {
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
        Pin::new(this.stream()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for UnixTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()?).poll_write(cx, buf)
    }

    // Forwarded so a COPY IN chunk goes out with its header in one writev, not
    // two writes (the default writes only the first slice).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // A Unix stream writes slices with writev, in or out of the reactor.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use super::{Bulk, FULL, SPARSE};

    fn fitted(wait_us: u64, since: usize) -> Duration {
        let mut bulk = Bulk {
            wait: Duration::from_micros(wait_us),
            since_wait: since,
            ..Bulk::default()
        };
        bulk.fit_wait(Duration::from_micros(800));
        assert_eq!(bulk.since_wait, 0, "each wait counts afresh");
        bulk.wait
    }

    #[test]
    fn the_wait_shrinks_when_the_server_fills_it_and_grows_back_when_it_does_not() {
        let us = Duration::from_micros;
        assert_eq!(fitted(800, FULL), us(400), "a full wait halves");
        assert_eq!(fitted(100, FULL), us(50), "down to max_wait / 16");
        assert_eq!(fitted(50, 10 * FULL), us(50), "and no further");
        assert_eq!(fitted(400, FULL - 1), us(400), "between the bounds: kept");
        assert_eq!(fitted(400, SPARSE), us(400));
        assert_eq!(fitted(400, SPARSE - 1), us(800), "a sparse wait doubles");
        assert_eq!(fitted(800, 0), us(800), "up to max_wait");
    }
}
