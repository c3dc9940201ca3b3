//! When to read in bulk: once a response (query rows, COPY OUT data) has
//! proved large, the transport is told to read in bulk
//! ([`Transport::set_bulk_read`]); when the response ends, or the connection
//! does anything else, it is told to stop. How a transport reads in bulk is
//! its own business (see `transport/bulk.rs`).

use std::io;

use crate::session::{Session, State};
use crate::transport::{BulkRead, Transport};

/// The per-connection state of bulk reading.
#[derive(Debug)]
pub(crate) struct BulkReader {
    config: Option<BulkRead>,
    /// Bytes read since the current response began.
    received: usize,
    /// The session's ReadyForQuery count when `received` started.
    responses_seen: u64,
    /// The settings the transport is reading in bulk with, if it is.
    sent: Option<BulkRead>,
    /// The transport said it cannot: stop asking.
    unsupported: bool,
}

impl BulkReader {
    pub(crate) fn new(config: Option<BulkRead>) -> Self {
        Self {
            config,
            received: 0,
            responses_seen: 0,
            sent: None,
            unsupported: false,
        }
    }

    pub(crate) fn config(&self) -> Option<BulkRead> {
        self.config
    }

    /// Replaces the settings; the transport follows at the next read.
    pub(crate) fn set(&mut self, config: Option<BulkRead>) {
        self.config = config;
    }

    /// Before a read: bulk reading on if the session is in the middle of a
    /// large response, off otherwise.
    ///
    /// # Errors
    /// The transport's error switching.
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
        let want = self.config.filter(|c| {
            !self.unsupported
                && matches!(session.state(), State::Busy | State::CopyOut)
                && self.received >= c.after
        });
        if want != self.sent {
            if transport.set_bulk_read(want.as_ref())? {
                self.sent = want;
            } else {
                self.unsupported = true;
            }
        }
        Ok(())
    }

    /// Stops bulk reading, if on (an operation ended: the connection is idle).
    ///
    /// # Errors
    /// The transport's error switching.
    pub(crate) fn release<T: Transport>(&mut self, transport: &mut T) -> io::Result<()> {
        if self.sent.take().is_some() {
            transport.set_bulk_read(None)?;
        }
        Ok(())
    }

    /// After a read that returned `n` bytes.
    pub(crate) fn after_read(&mut self, n: usize) {
        self.received = self.received.saturating_add(n);
    }
}
