//! Bulk reads: during a large response, wake the reader once per many server
//! sends instead of once per send.
//!
//! PostgreSQL sends a large result in 8 KB writes. A client that drains each
//! one and goes back to sleep makes the server wake it for every write, which
//! costs the client a sleep/wake cycle per 8 KB and the server the wake-up
//! itself (on the measured VM, a third of a COPY OUT's wall time). Once a
//! response has proved large, a receive low-water mark on the socket lets
//! the kernel hold the wake-up until a few hundred KB are waiting. The mark
//! would hide a response's last, short bytes forever, so every wait under it
//! is bounded by a timer: when it fires, the mark is dropped for one read of
//! what is waiting, then set again. A server slower than the mark is then
//! read once per timer tick: the socket buffer keeps filling meanwhile, so
//! the server loses no time, and the client wakes even less often.

use std::io;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::Sleep;

use crate::session::{Session, State};
use crate::transport::Transport;

/// How a connection reads large responses; see [`Connection::set_bulk_read`].
///
/// Applies to the rows of a query and to COPY OUT data, never to COPY IN
/// (where the connection reads only to notice an error at once), never to
/// an idle connection, and only on transports that support a receive
/// low-water mark (TCP and TLS over TCP, on Linux).
///
/// [`Connection::set_bulk_read`]: crate::Connection::set_bulk_read
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRead {
    /// Bytes one response must have delivered before bulk reading starts,
    /// so short responses never wait.
    pub after: usize,
    /// Wake the reader once this many bytes are waiting (`SO_RCVLOWAT`).
    pub low_water: usize,
    /// The longest a read waits for `low_water` bytes before taking what is
    /// there (at least this long: Tokio's timer rounds up to its 1 ms tick).
    /// This is what the end of a large response, or a pause in it, costs;
    /// a response that arrives slower than `low_water` per `max_wait` is
    /// read once per `max_wait`.
    pub max_wait: Duration,
}

impl Default for BulkRead {
    /// After 4 MiB of a response, wake per 512 KiB, waiting at most 1 ms.
    fn default() -> Self {
        Self {
            after: 4 << 20,
            low_water: 512 << 10,
            max_wait: Duration::from_millis(1),
        }
    }
}

/// The per-connection state of bulk reading.
#[derive(Debug)]
pub(crate) struct BulkReader {
    config: Option<BulkRead>,
    /// Bytes read since the current response began.
    received: usize,
    /// The session's ReadyForQuery count when `received` started.
    responses_seen: u64,
    /// The mark set on the socket (1: none).
    applied: usize,
    /// The transport said it has no mark: stop asking.
    unsupported: bool,
    /// Bounds the current wait under the mark.
    fallback: Option<Pin<Box<Sleep>>>,
}

impl BulkReader {
    pub(crate) fn new(config: Option<BulkRead>) -> Self {
        Self {
            config: config.filter(|c| c.low_water > 1 && !c.max_wait.is_zero()),
            received: 0,
            responses_seen: 0,
            applied: 1,
            unsupported: false,
            fallback: None,
        }
    }

    pub(crate) fn config(&self) -> Option<BulkRead> {
        self.config
    }

    /// Replaces the settings; the socket follows at the next read.
    pub(crate) fn set(&mut self, config: Option<BulkRead>) {
        let unsupported = self.unsupported;
        let applied = self.applied;
        *self = Self {
            unsupported,
            applied,
            ..Self::new(config)
        };
    }

    /// Before a read: sets the mark the session's state calls for, or
    /// removes it.
    ///
    /// # Errors
    /// The transport's `setsockopt` error.
    pub(crate) fn before_read<T: Transport>(
        &mut self,
        transport: &mut T,
        session: &Session,
    ) -> io::Result<()> {
        let responses = session.ready_count();
        if responses != self.responses_seen {
            self.responses_seen = responses;
            self.received = 0;
        }
        let want = match self.config {
            Some(c)
                if !self.unsupported
                    && matches!(session.state(), State::Busy | State::CopyOut)
                    && self.received >= c.after =>
            {
                c.low_water
            }
            _ => 1,
        };
        if want != self.applied {
            self.fallback = None;
            if transport.set_recv_low_water(want)? {
                self.applied = want;
            } else {
                self.unsupported = true;
            }
        }
        Ok(())
    }

    /// Removes the mark, if set (an operation ended: the connection is idle).
    ///
    /// # Errors
    /// The transport's `setsockopt` error.
    pub(crate) fn release<T: Transport>(&mut self, transport: &mut T) -> io::Result<()> {
        self.fallback = None;
        if self.applied > 1 {
            transport.set_recv_low_water(1)?;
            self.applied = 1;
        }
        Ok(())
    }

    /// After a read that returned `n` bytes.
    pub(crate) fn after_read(&mut self, n: usize) {
        self.received = self.received.saturating_add(n);
        self.fallback = None;
    }

    /// A read found nothing to return. Under a mark, starts (or polls) the
    /// timer that bounds the wait; once it fires, removes the mark so what is
    /// waiting is read, and wakes the task to read it.
    ///
    /// # Errors
    /// The transport's `setsockopt` error.
    pub(crate) fn poll_pending<T: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        transport: &mut T,
    ) -> io::Result<()> {
        let Some(config) = self.config else {
            return Ok(());
        };
        if self.applied <= 1 {
            return Ok(());
        }
        let timer = self
            .fallback
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(config.max_wait)));
        if timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        // The server has not filled the mark in time: the response is ending,
        // paused or slower than the mark. Take what is there; the next read
        // sets the mark again.
        self.fallback = None;
        transport.set_recv_low_water(1)?;
        self.applied = 1;
        cx.waker().wake_by_ref();
        Ok(())
    }
}
