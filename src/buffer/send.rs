//! The send buffer: frontend messages are encoded here, then written out.

use bytes::{Buf, BytesMut};

/// The most a written-out send buffer keeps while the connection is idle
/// ([`SendBuf::release`]): a page, which the Query or Parse/Bind/Execute of an
/// ordinary statement fits in, so those reuse it; a COPY IN batch (64 KiB by
/// default) or a long statement gives its larger buffer back.
pub const SEND_BUF_IDLE_CAPACITY_MAX: usize = 4096;

/// Encoded frontend messages waiting to be written.
#[derive(Debug, Default)]
pub struct SendBuf {
    buf: BytesMut,
}

impl SendBuf {
    /// An empty send buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer encoders append to.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Number of bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Marks `n` bytes written. When everything is written the buffer rewinds, so
    /// its allocation is reused without copying.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
        if self.buf.is_empty() {
            self.buf.clear();
        }
    }

    /// Gives back an allocation larger than [`SEND_BUF_IDLE_CAPACITY_MAX`]
    /// once everything has been written; does nothing while bytes wait.
    pub fn release(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > SEND_BUF_IDLE_CAPACITY_MAX {
            self.buf = BytesMut::new();
        }
    }

    /// Drops everything not yet written (the connection is being torn down).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}
