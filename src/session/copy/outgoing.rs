//! The COPY IN write queue.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::mutant::{Mutant, mutant};
use crate::protocol::frontend;
use crate::protocol::limits::MAX_COPY_DATA_CHUNK;

/// Chunks at least this large are sent without copying into the batch.
pub(super) const ZERO_COPY_MIN: usize = 16 * 1024;

/// COPY IN bytes on their way out: sealed segments (batches of small CopyData
/// messages, or a header and then a large payload that is not copied), plus
/// where each message ends, so an abort can finish exactly the message in flight.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Segments ready to write, in order.
    segments: VecDeque<Bytes>,
    /// Small messages being gathered into the next segment.
    open: BytesMut,
    /// Stream offsets (bytes since the COPY began) ...
    /// ... up to which everything is written,
    written: u64,
    /// ... of the end of the sealed segments,
    sealed_end: u64,
    /// ... of the last message boundary at or before `written`,
    last_boundary: u64,
    /// ... and of every message end not yet written (sealed or open).
    message_ends: VecDeque<u64>,
}

impl Outgoing {
    /// Bytes not yet written.
    pub(super) fn len(&self) -> usize {
        usize::try_from(self.sealed_end - self.written).unwrap_or(usize::MAX) + self.open.len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames `chunk` as CopyData messages: copied into the batch when small,
    /// referenced (header + payload) when large, split at the size cap.
    pub(super) fn push_copy_data(&mut self, mut chunk: Bytes, batch: usize) {
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(MAX_COPY_DATA_CHUNK));
            // Cannot fail: a piece is at most MAX_COPY_DATA_CHUNK bytes.
            if piece.len() < ZERO_COPY_MIN.min(batch) {
                let _ = frontend::copy_data(&mut self.open, &piece);
                self.message_ends
                    .push_back(self.sealed_end + self.open.len() as u64);
            } else {
                let _ = frontend::copy_data_header(&mut self.open, piece.len());
                self.seal();
                self.push_segment(piece);
            }
        }
    }

    /// One whole message as its own segment.
    pub(super) fn push_message(&mut self, bytes: Bytes) {
        self.seal();
        self.push_segment(bytes);
    }

    fn push_segment(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.sealed_end += bytes.len() as u64;
            self.message_ends.push_back(self.sealed_end);
            self.segments.push_back(bytes);
        }
    }

    /// Moves the open batch into the segment queue.
    pub(super) fn seal(&mut self) {
        if !self.open.is_empty() {
            let seg = self.open.split().freeze();
            self.sealed_end += seg.len() as u64;
            self.segments.push_back(seg);
        }
    }

    /// The sealed segments, in order (what a vectored write offers).
    pub(super) fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().map(|s| &s[..])
    }

    /// Records that the first `n` sealed bytes were written.
    pub(super) fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            let take = n.min(front.len());
            let _ = front.split_to(take);
            n -= take;
            if front.is_empty() {
                self.segments.pop_front();
            }
        }
        while let Some(&end) = self.message_ends.front() {
            if end > self.written {
                break;
            }
            self.last_boundary = end;
            self.message_ends.pop_front();
        }
    }

    /// Drops everything but the rest of a message already partly written.
    pub(super) fn keep_started_frame_only(&mut self) {
        self.open.clear();
        let keep_until = match self.message_ends.front() {
            Some(&end)
                if self.written > self.last_boundary
                    && !mutant(Mutant::CopyInDropsStartedFrame) =>
            {
                end
            }
            _ => self.written,
        };
        let mut keep = usize::try_from(keep_until - self.written).unwrap_or(usize::MAX);
        let mut kept = VecDeque::new();
        for seg in self.segments.drain(..) {
            if keep == 0 {
                break;
            }
            let take = keep.min(seg.len());
            kept.push_back(seg.slice(..take));
            keep -= take;
        }
        self.segments = kept;
        self.sealed_end = keep_until;
        self.message_ends.retain(|&e| e <= keep_until);
    }
}

#[cfg(test)]
#[path = "outgoing_tests.rs"]
mod tests;
