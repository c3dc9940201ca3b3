//! Bulk reads at the socket: while a large response streams, wake the reader
//! once per many server sends instead of once per send.
//!
//! PostgreSQL sends a large result in 8 KB writes. A client that drains each
//! one and goes back to sleep makes the server wake it for every write, which
//! costs the client a sleep/wake cycle per 8 KB and the server the wake-up
//! itself (on the measured VM, a third of a COPY OUT's wall time). In bulk
//! mode a transport reads what is waiting, then sleeps on a timer *without*
//! asking to be woken by arriving data, and reads again when it fires; a
//! timer that finds nothing means the response ended or paused, and the read
//! falls back to waiting for data as usual. TCP keeps its read interest and
//! sets a receive low-water mark instead, which also wakes it early if data
//! comes faster than the timer drains it; a Unix socket has no such mark, so
//! its read interest is dropped from the reactor while it sleeps.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::ReadBuf;

/// How a connection reads large responses; see
/// [`Connection::set_bulk_read`](crate::Connection::set_bulk_read).
///
/// Applies to the rows of a query and to COPY OUT data, never to COPY IN
/// (where the connection reads only to notice an error at once) and never to
/// an idle connection; on Linux, over TCP, TLS over TCP and Unix sockets.
///
/// Start from [`BulkRead::DEFAULT`] and chain the setters (the struct is
/// `#[non_exhaustive]`, so other crates cannot build it as a literal):
/// `BulkRead::DEFAULT.after(1 << 20).max_wait(Duration::from_micros(200))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkRead {
    /// Bytes one response must have delivered before bulk reading starts,
    /// so short responses never wait.
    pub after: usize,
    /// TCP: wake the reader early once this many bytes are waiting
    /// (`SO_RCVLOWAT`), whatever `max_wait` says.
    pub low_water: usize,
    /// How long a read sleeps before taking what has arrived. What the end of
    /// a large response, or a pause in one, costs; a shorter wait wakes the
    /// client more often. On a Unix socket, whose server can queue only about
    /// 200 KB before it blocks, the wait is halved (down to a sixteenth) while
    /// one wait lets in 128 KiB or more, and doubles back while one lets in
    /// under 32 KiB.
    pub max_wait: Duration,
}

impl BulkRead {
    /// The default settings: after 4 MiB of a response, read every 300 µs
    /// (TCP: or per 512 KiB). A `const`, so settings built from it with the
    /// setters can be constants too.
    pub const DEFAULT: Self = Self {
        after: 4 << 20,
        low_water: 512 << 10,
        max_wait: Duration::from_micros(300),
    };

    /// Starts bulk reading once a response has delivered `bytes`.
    #[must_use]
    pub const fn after(mut self, bytes: usize) -> Self {
        self.after = bytes;
        self
    }

    /// TCP: wakes the reader early once `bytes` are waiting (`SO_RCVLOWAT`).
    #[must_use]
    pub const fn low_water(mut self, bytes: usize) -> Self {
        self.low_water = bytes;
        self
    }

    /// Lets a read sleep up to `wait` before taking what has arrived.
    #[must_use]
    pub const fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }
}

impl Default for BulkRead {
    /// [`BulkRead::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One non-blocking `recv` into `buf`: `Ok(true)` if it returned (bytes, or
/// EOF with nothing filled), `Ok(false)` if nothing is waiting. It does not
/// look at, or change, the reactor's readiness.
pub(crate) fn recv_now(socket: &impl AsFd, buf: &mut ReadBuf<'_>) -> io::Result<bool> {
    if buf.remaining() == 0 {
        return Ok(true);
    }
    let sock = socket2::SockRef::from(socket);
    // SAFETY: `recv` only writes into the slice; the bytes it reports are
    // initialised before `assume_init` marks them so, and nothing here
    // de-initialises what `buf` already holds.
    let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
    loop {
        return match sock.recv_with_flags(unfilled, libc::MSG_DONTWAIT) {
            Ok(n) => {
                // SAFETY: the kernel wrote `n` bytes at the start of `unfilled`.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        };
    }
}

/// A one-shot timer with microsecond resolution (Linux `timerfd`), waited on
/// through the reactor: Tokio's own timer rounds up to whole milliseconds.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct Timer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    armed: bool,
}

#[cfg(target_os = "linux")]
impl Timer {
    /// # Errors
    /// `timerfd_create`'s error, or registering it with the reactor.
    pub(crate) fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain FFI call with constant arguments; it returns a new
        // descriptor or -1.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just created and nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: an `OwnedFd` keeps its descriptor open, and returns the
        // same one, for as long as the `AsyncFd` owns it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }?;
        Ok(Self { fd, armed: false })
    }

    /// The timer in `slot`, created on first use.
    ///
    /// # Errors
    /// As [`Timer::new`].
    pub(crate) fn in_slot(slot: &mut Option<Self>) -> io::Result<&mut Self> {
        match slot {
            Some(timer) => Ok(timer),
            None => Ok(slot.insert(Self::new()?)),
        }
    }

    /// Whether `slot` holds a timer, creating one if not. A system that
    /// refuses one (a sandbox without `timerfd`) gets `false`: the transport
    /// then says it cannot read in bulk, rather than failing a read later.
    pub(crate) fn ready_in(slot: &mut Option<Self>) -> bool {
        match Self::in_slot(slot) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("bulk reads off: no timer ({e})");
                false
            }
        }
    }

    /// Ready once `after` has passed since the first call (which arms the
    /// timer); the next call after that arms it again.
    ///
    /// # Errors
    /// `timerfd_settime`'s or `read`'s error.
    pub(crate) fn poll_after(
        &mut self,
        cx: &mut Context<'_>,
        after: Duration,
    ) -> Poll<io::Result<()>> {
        if !self.armed {
            // An expiry left over from a cancelled wait must not end this one.
            self.expired()?;
            // Zero would disarm the timer.
            self.set(after.max(Duration::from_nanos(1)))?;
            self.armed = true;
        }
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if self.expired()? {
                self.armed = false;
                return Poll::Ready(Ok(()));
            }
            guard.clear_ready();
        }
    }

    /// Whether a wait is under way.
    pub(crate) fn is_armed(&self) -> bool {
        self.armed
    }

    /// Ends the current wait, if any, so it wakes no one.
    pub(crate) fn cancel(&mut self) {
        if std::mem::take(&mut self.armed) {
            // If disarming fails the expiry still comes: it wakes the task
            // once for nothing and is drained when the timer is next armed.
            let _ = self.set(Duration::ZERO);
        }
    }

    /// Arms the timer to expire once after `after`; zero disarms it.
    fn set(&self, after: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                // Below 10^9: fits every c_long.
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is open (owned by `self.fd`); `spec` is valid
        // for reads and the old value is not asked for (null).
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Reads the expiry count: whether the timer fired since the last read.
    fn expired(&self) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let mut count = 0u64;
        loop {
            // SAFETY: reads at most 8 bytes into `count`, which is 8 bytes
            // and valid for writes; the descriptor is open.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    std::ptr::from_mut(&mut count).cast(),
                    size_of::<u64>(),
                )
            };
            if n >= 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
    }
}
