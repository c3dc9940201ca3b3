//! The receive buffer: one allocation, a read position, deferred compaction,
//! adaptive read size, and shrink after a large message.

use bytes::{Buf, Bytes, BytesMut};

/// Sizing of a [`RecvBuf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecvBufConfig {
    /// Read size to start with. The buffer starts with (and shrinks back to)
    /// twice this capacity, so a partial message left at the end rarely forces
    /// a move before the next read.
    pub read_size_initial: usize,
    /// Smallest read size the adaptive sizing goes down to.
    pub read_size_min: usize,
    /// Largest read size the adaptive sizing goes up to.
    pub read_size_max: usize,
    /// Capacity above which the buffer is reallocated to its normal size once the
    /// large message that needed it has been consumed.
    pub shrink_above: usize,
}

impl RecvBufConfig {
    /// The capacity a buffer starts with and shrinks back to.
    pub fn normal_capacity(&self) -> usize {
        2 * self.read_size_initial
    }
}

impl Default for RecvBufConfig {
    /// 8 KiB to start (libpq's initial input buffer is 16 KiB, a typical socket
    /// read delivers well under that for chatty traffic), up to 256 KiB for
    /// bulk transfers, shrinking back above 1 MiB.
    fn default() -> Self {
        Self {
            read_size_initial: 8 * 1024,
            read_size_min: 4 * 1024,
            read_size_max: 256 * 1024,
            shrink_above: 1024 * 1024,
        }
    }
}

/// Consecutive short reads after which the read size halves.
const SHORT_READS_BEFORE_SHRINK: u8 = 8;

/// Bytes received and not yet consumed, plus room to read more.
///
/// Consuming a message only moves the read position; unconsumed bytes move to
/// the front only when a read needs the room ([`RecvBuf::prepare_read`]).
#[derive(Debug)]
pub struct RecvBuf {
    /// Everything received since the last compaction; `data[pos..]` is unread.
    data: BytesMut,
    /// Read position. Invariant: `pos <= data.len()`.
    pos: usize,
    /// Space the next read asks for; adapts between the configured bounds.
    read_size: usize,
    /// Reads in a row that filled less than an eighth of `read_size`.
    short_reads: u8,
    config: RecvBufConfig,
}

impl RecvBuf {
    /// An empty buffer with the given sizing.
    pub fn new(config: RecvBufConfig) -> Self {
        Self {
            data: BytesMut::with_capacity(config.normal_capacity()),
            pos: 0,
            read_size: config.read_size_initial,
            short_reads: 0,
            config,
        }
    }

    /// The unread bytes.
    #[inline]
    pub fn unread(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// The unread bytes, mutably (the session rearranges complete frames in
    /// place before taking them). Nothing else shares this region: bytes
    /// handed out were split off before it.
    #[inline]
    pub(crate) fn unread_mut(&mut self) -> &mut [u8] {
        self.data.get_mut(self.pos..).unwrap_or_default()
    }

    /// Number of unread bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Whether every received byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated for this buffer's current view (consumed prefix, unread
    /// bytes and spare room).
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The read position: bytes consumed since the last compaction.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The room the next [`RecvBuf::prepare_read`] reserves at least.
    pub fn read_size(&self) -> usize {
        self.read_size
    }

    /// Marks the next `n` unread bytes consumed and returns them.
    ///
    /// # Panics
    /// If `n` exceeds the unread bytes: the caller framed a message that is not
    /// there, which is a bug in the caller.
    #[inline]
    pub fn take(&mut self, n: usize) -> &[u8] {
        assert!(n <= self.len(), "RecvBuf::take past the unread bytes");
        let start = self.pos;
        self.pos += n;
        self.data.get(start..self.pos).unwrap_or_default()
    }

    /// Like [`RecvBuf::take`], but hands the bytes out as a [`Bytes`] that shares
    /// this buffer's allocation (no copy).
    ///
    /// # Panics
    /// If `n` exceeds the unread bytes (a caller bug, as for `take`).
    #[inline(always)]
    pub fn take_bytes(&mut self, n: usize) -> Bytes {
        assert!(n <= self.len(), "RecvBuf::take_bytes past the unread bytes");
        // Usually 0 (the previous message went out as `Bytes` too), and
        // `advance` is an out-of-line call even then.
        if self.pos != 0 {
            self.data.advance(self.pos);
            self.pos = 0;
        }
        self.data.split_to(n).freeze()
    }

    /// Makes room for the next read and returns the buffer to read into: append
    /// at most its spare capacity, then call [`RecvBuf::commit_read`].
    ///
    /// `missing` is how many more bytes the message being received still needs
    /// (0 if unknown). The room reserved is the read size, or for a larger
    /// message as much of `missing` as is already buffered unread, never more:
    /// memory follows the bytes that arrived, not the length a header claims, so a
    /// server that declares 512 MiB and sends 1 KiB costs a read's worth, while
    /// a message that really is large still arrives in O(log n) reallocations
    /// (the room at most doubles what is buffered). The caller must have
    /// checked `missing` against its message-size cap.
    /// Unread bytes move to the front here, and only if the room at the end is
    /// too small; a buffer grown for a large message is reallocated back to its
    /// normal size once that message is consumed.
    pub fn prepare_read(&mut self, missing: usize) -> &mut BytesMut {
        let want = self.read_size.max(missing.min(self.len()));
        if self.data.capacity() == 0 {
            // Released while idle (RecvBuf::release): the normal size again.
            self.data = BytesMut::with_capacity(self.config.normal_capacity().max(want));
            self.pos = 0;
        }
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        }
        if self.spare() < want {
            self.compact();
        }
        self.shrink_if_oversized(self.read_size.max(missing), want);
        if self.spare() < want {
            self.data.reserve(want);
        }
        debug_assert!(self.pos <= self.data.len(), "read position past the data");
        &mut self.data
    }

    /// Records that a read appended `n` bytes, adapting the read size: it doubles
    /// after a read that filled the requested size and halves after a run of
    /// short reads, within the configured bounds.
    pub fn commit_read(&mut self, n: usize) {
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(self.config.read_size_max);
            self.short_reads = 0;
        } else if n < self.read_size / 8 {
            self.short_reads += 1;
            if self.short_reads >= SHORT_READS_BEFORE_SHRINK {
                self.read_size = (self.read_size / 2).max(self.config.read_size_min);
                self.short_reads = 0;
            }
        } else {
            self.short_reads = 0;
        }
    }

    /// Gives the allocation back once every received byte has been consumed,
    /// and puts the read size back at its start: an idle connection then holds
    /// no receive buffer (16 KiB by default, or whatever a large response grew
    /// it to), and the next [`RecvBuf::prepare_read`] allocates the normal
    /// capacity again. Does nothing while bytes are unread. Bytes already
    /// handed out ([`RecvBuf::take_bytes`]) keep their part of the old
    /// allocation alive until they drop.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.data = BytesMut::new();
            self.pos = 0;
            self.read_size = self.config.read_size_initial;
            self.short_reads = 0;
        }
    }

    /// Appends `bytes` as if a read had delivered them (tests, simulations and
    /// callers that do their own I/O).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.prepare_read(bytes.len()).extend_from_slice(bytes);
        self.commit_read(bytes.len());
    }

    fn spare(&self) -> usize {
        self.data.capacity() - self.data.len()
    }

    /// Moves the unread bytes to the front, dropping the consumed prefix.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        let unread = self.len();
        if !crate::mutant::mutant(crate::mutant::Mutant::CompactSkipsMove) {
            self.data.copy_within(self.pos.., 0);
        }
        self.data.truncate(unread);
        self.pos = 0;
    }

    /// Reallocates an oversized buffer to its normal size, unless the message
    /// being received (`declared` more bytes) would need the room again: a
    /// large message arriving right after another keeps the capacity it has
    /// instead of shrinking and growing back. `want` is the room the fresh
    /// buffer needs now.
    fn shrink_if_oversized(&mut self, declared: usize, want: usize) {
        let normal = self.config.normal_capacity();
        let needed = self.len().saturating_add(declared);
        if self.data.capacity() > self.config.shrink_above && needed <= self.config.shrink_above {
            let mut fresh = BytesMut::with_capacity(normal.max(self.len() + want));
            fresh.extend_from_slice(self.unread());
            self.data = fresh;
            self.pos = 0;
        }
    }
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new(RecvBufConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_bytes_stay_until_a_read_needs_the_room() {
        let mut buf = RecvBuf::default();
        buf.extend_from_slice(b"abcdef");
        assert_eq!(buf.take(2), b"ab");
        assert_eq!(buf.position(), 2, "no compaction per message");
        assert_eq!(buf.unread(), b"cdef");
        let room = buf.prepare_read(0);
        assert_eq!(
            &room[..],
            b"abcdef",
            "enough room at the end: nothing moved"
        );
        // Fill the end until it has less room than a read: now the unread
        // bytes move to the front.
        let filler = vec![b'x'; buf.capacity() - 6 - 10];
        buf.extend_from_slice(&filler);
        assert_eq!(buf.position(), 2, "the filler fitted at the end");
        buf.prepare_read(0);
        assert_eq!(buf.position(), 0);
        assert_eq!(buf.unread().get(..4), Some(&b"cdef"[..]));
    }

    #[test]
    fn take_bytes_shares_the_allocation_and_keeps_order() {
        let mut buf = RecvBuf::default();
        buf.extend_from_slice(b"0123456789");
        let _ = buf.take(2);
        let b = buf.take_bytes(3);
        assert_eq!(&b[..], b"234");
        assert_eq!(buf.unread(), b"56789");
    }

    #[test]
    fn read_size_grows_on_full_reads_and_shrinks_on_short_ones() {
        let config = RecvBufConfig::default();
        let mut buf = RecvBuf::new(config);
        buf.commit_read(config.read_size_initial);
        assert_eq!(buf.read_size(), config.read_size_initial * 2);
        for _ in 0..64 {
            buf.commit_read(1);
        }
        assert_eq!(buf.read_size(), config.read_size_min);
        for _ in 0..64 {
            let n = buf.read_size();
            buf.commit_read(n);
        }
        assert_eq!(buf.read_size(), config.read_size_max);
    }

    #[test]
    fn a_declared_length_reserves_only_what_arrived() {
        let mut buf = RecvBuf::default();
        buf.extend_from_slice(&[0u8; 1024]);
        let room = buf.prepare_read(512 << 20);
        assert!(
            room.capacity() <= 64 * 1024,
            "reserved {} for 1 KiB buffered of a 512 MiB message",
            room.capacity()
        );
    }

    #[test]
    fn a_large_message_grows_in_few_reallocations() {
        let mut buf = RecvBuf::default();
        let total = 64 << 20;
        let mut reallocations = 0;
        let mut capacity = buf.capacity();
        while buf.len() < total {
            let left = total - buf.len();
            let room = buf.prepare_read(left);
            let n = (room.capacity() - room.len()).min(left);
            room.resize(room.len() + n, 7);
            buf.commit_read(n);
            if buf.capacity() != capacity {
                reallocations += 1;
                capacity = buf.capacity();
            }
        }
        // 16 KiB to 64 MiB by doubling is 12 steps.
        assert!(reallocations <= 14, "{reallocations} reallocations");
        assert!(buf.capacity() <= 2 * total, "capacity {}", buf.capacity());
    }

    #[test]
    fn release_frees_an_empty_buffer_and_the_next_read_reallocates() {
        let mut buf = RecvBuf::default();
        buf.extend_from_slice(b"abcdef");
        buf.release();
        assert!(buf.capacity() > 0, "unread bytes keep the buffer");
        assert_eq!(buf.take(6), b"abcdef");
        buf.release();
        assert_eq!(
            buf.capacity(),
            0,
            "an empty buffer gives its allocation back"
        );
        assert_eq!(buf.read_size(), RecvBufConfig::default().read_size_initial);
        let room = buf.prepare_read(0);
        assert_eq!(room.capacity(), RecvBufConfig::default().normal_capacity());
        buf.extend_from_slice(b"xyz");
        assert_eq!(buf.unread(), b"xyz");
    }

    #[test]
    fn shrinks_after_a_large_message() {
        let mut buf = RecvBuf::default();
        let big = vec![7u8; 5 * 1024 * 1024];
        buf.extend_from_slice(&big);
        assert!(buf.capacity() >= big.len());
        buf.extend_from_slice(b"tail");
        let _ = buf.take(big.len());
        buf.prepare_read(0);
        assert!(
            buf.capacity() <= 64 * 1024,
            "capacity {} after shrink",
            buf.capacity()
        );
        assert_eq!(buf.unread(), b"tail");
    }
}
