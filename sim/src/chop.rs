//! The fault layer: cuts every read and write to sizes from a seeded plan and
//! sometimes returns `Pending` first (turmoil delivers whole segments, so
//! without this, framing code would never see a split message), and can end
//! the connection with a FIN or RST at a chosen byte.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use pg_transport::transport::{SocketPeek, Transport, TransportKind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A read/write size plan: sizes are used in turn, cycling.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Read sizes, in bytes.
    pub reads: Vec<usize>,
    /// Write sizes, in bytes.
    pub writes: Vec<usize>,
    /// Every `pending_every`-th operation returns `Pending` once (0 = never).
    pub pending_every: usize,
}

/// The connection ends at a chosen byte of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// Cut the client's reads (the server's output) or its writes.
    pub reads: bool,
    /// Bytes that pass before the end.
    pub at: usize,
    /// RST (`ConnectionReset` on read, `BrokenPipe` on write) rather than FIN.
    /// A FIN on the write side is not a thing the peer can do; write ends are
    /// always resets.
    pub reset: bool,
}

thread_local! {
    /// Splits made by every `Chop` on this thread (a simulation runs on one).
    static CUTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Returns and resets the number of reads and writes split on this thread.
pub(crate) fn take_cuts() -> u32 {
    CUTS.with(|c| c.replace(0))
}

fn count_cut() {
    CUTS.with(|c| c.set(c.get().saturating_add(1)));
}

/// `T` with every read and write cut per a [`Plan`].
#[derive(Debug)]
pub(crate) struct Chop<T> {
    inner: T,
    plan: Plan,
    reads: usize,
    writes: usize,
    /// Operations completed.
    ops: usize,
    /// The completion count at the last stall.
    stalled_at: Option<usize>,
    frames: Option<Frames>,
    end: Option<End>,
    /// Bytes read and written so far.
    read_total: usize,
    write_total: usize,
}

impl<T> Chop<T> {
    pub(crate) fn new(inner: T, plan: Plan) -> Self {
        Self {
            inner,
            plan,
            reads: 0,
            writes: 0,
            ops: 0,
            stalled_at: None,
            frames: None,
            end: None,
            read_total: 0,
            write_total: 0,
        }
    }

    /// Ends the connection per `end`.
    pub(crate) fn with_end(mut self, end: Option<End>) -> Self {
        self.end = end;
        self
    }

    /// Bytes left before the end of reads (`reads`) or writes; `None`
    /// without an end in that direction.
    fn left(&self, reads: bool) -> Option<usize> {
        let end = self.end.filter(|e| e.reads == reads)?;
        let done = if reads {
            self.read_total
        } else {
            self.write_total
        };
        Some(end.at.saturating_sub(done))
    }

    fn resets(&self) -> bool {
        self.end.is_some_and(|e| e.reset)
    }

    /// Also tracks the frames passing in both directions into `frames`.
    pub(crate) fn with_frames(mut self, frames: Frames) -> Self {
        self.frames = Some(frames);
        self
    }

    /// Whether this operation should return `Pending` once first. Stalls are
    /// counted against *completed* operations and happen at most once per
    /// completion, so a task waiting on the network is never kept spinning.
    fn stall(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.plan.pending_every != 0 && self.ops % self.plan.pending_every == 0;
        if due && self.stalled_at != Some(self.ops) {
            self.stalled_at = Some(self.ops);
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }
}

fn pick(sizes: &[usize], i: usize) -> usize {
    sizes
        .get(i % sizes.len().max(1))
        .copied()
        .unwrap_or(usize::MAX)
        .max(1)
}

impl<T: Transport> Transport for Chop<T> {
    fn probe(&self) -> SocketPeek {
        match self.left(true) {
            Some(0) if self.resets() => SocketPeek::Error(io::ErrorKind::ConnectionReset),
            Some(0) => SocketPeek::Closed,
            _ => self.inner.probe(),
        }
    }

    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }
}

impl<T: Transport> AsyncRead for Chop<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A spurious `Pending` is a stall, not a lie about data that has been
        // sitting in the socket: once the server's COPY IN error is known to
        // have arrived (peeked), the next read is not stalled. Otherwise a
        // stall at the start of every batch would let whole batches pass
        // the receive watch, which no socket does.
        let waiting = this
            .frames
            .as_ref()
            .is_some_and(|f| f.log.lock().unwrap().error_arrived);
        if !waiting && this.stall(cx) {
            return Poll::Pending;
        }
        let left = this.left(true);
        if left == Some(0) {
            // The end itself is the scenario's fault, not a split.
            return Poll::Ready(if this.resets() {
                Err(io::ErrorKind::ConnectionReset.into())
            } else {
                Ok(())
            });
        }
        let limit = pick(&this.plan.reads, this.reads).min(left.unwrap_or(usize::MAX));
        if limit >= buf.remaining() {
            let before = buf.filled().len();
            let result = Pin::new(&mut this.inner).poll_read(cx, buf);
            this.ops += usize::from(result.is_ready());
            this.read_total += buf.filled().len() - before;
            if let Some(frames) = this.frames.as_mut() {
                frames.read(&buf.filled()[before..]);
            }
            return result;
        }
        let mut small = vec![0u8; limit];
        let mut sub = ReadBuf::new(&mut small);
        match Pin::new(&mut this.inner).poll_read(cx, &mut sub) {
            Poll::Ready(Ok(())) => {
                this.reads += 1;
                this.ops += 1;
                this.read_total += sub.filled().len();
                count_cut();
                if let Some(frames) = this.frames.as_mut() {
                    frames.read(sub.filled());
                }
                buf.put_slice(sub.filled());
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: Transport> Chop<T> {
    /// Writes at most the plan's next size of `bufs`, across the slices, so a
    /// vectored write is cut the way a single one is.
    fn poll_write_cut(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.stall(cx) {
            return Poll::Pending;
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let left = self.left(false);
        if left == Some(0) && total != 0 {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if let Some(frames) = self.frames.as_mut() {
            frames.note_arrival(&self.inner);
        }
        let limit = pick(&self.plan.writes, self.writes).min(left.unwrap_or(usize::MAX));
        let parts = prefix(bufs, limit);
        let inner = Pin::new(&mut self.inner);
        let result = match parts.as_slice() {
            [] => inner.poll_write(cx, &[]),
            [one] => inner.poll_write(cx, one),
            _ if inner.is_write_vectored() => inner.poll_write_vectored(cx, &parts),
            // turmoil's stream has no vectored write and would take the first
            // slice only; gathering, as writev does, lets the caller see a
            // count that ends inside a later slice.
            _ => {
                let gathered: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
                inner.poll_write(cx, &gathered)
            }
        };
        if let Poll::Ready(Ok(n)) = result {
            if let Some(frames) = self.frames.as_mut() {
                for part in prefix(&parts, n) {
                    frames.write(&part);
                }
            }
            self.writes += 1;
            self.ops += 1;
            self.write_total += n;
            if limit < total {
                count_cut();
            }
        }
        result
    }
}

/// The first `limit` bytes of `bufs`, as slices.
fn prefix<'b>(bufs: &'b [IoSlice<'_>], mut limit: usize) -> Vec<IoSlice<'b>> {
    let mut parts = Vec::new();
    for b in bufs {
        if limit == 0 {
            break;
        }
        let take = b.len().min(limit);
        parts.push(IoSlice::new(&b[..take]));
        limit -= take;
    }
    parts
}

impl<T: Transport> AsyncWrite for Chop<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_cut(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_cut(cx, bufs)
    }

    /// Vectored writes reach the inner stream whole (or gathered, when it
    /// has none), only cut to the plan's size.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What the client's byte streams showed, frame by frame (recorded by a
/// [`Chop`] built with [`Chop::with_frames`]).
#[derive(Debug, Default)]
pub(crate) struct FrameLog {
    /// A complete ErrorResponse had reached the client.
    pub(crate) error_received: bool,
    /// The client started a CopyDone or CopyFail after that.
    pub(crate) end_after_error: bool,
    /// A CopyInResponse has reached the client: from then on, anything the
    /// server sends is its error (COPY IN has no other reply before CopyDone).
    pub(crate) copying: bool,
    /// The server's error was waiting in the client's socket (seen by a
    /// peek before a write) or already read.
    pub(crate) error_arrived: bool,
    /// CopyData bytes (headers included) the client wrote after that.
    pub(crate) written_after_arrival: usize,
}

/// What [`Framer::feed`] reports of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// Its header is complete.
    Started,
    /// Its last byte passed.
    Ended,
    /// This many of its bytes (header or body) passed.
    Bytes(usize),
}

/// Splits a byte stream into protocol frames as it passes.
#[derive(Debug, Default)]
struct Framer {
    /// Untagged (startup-phase) messages still expected first.
    untagged: usize,
    header: Vec<u8>,
    body_left: usize,
    tag: u8,
}

impl Framer {
    /// Feeds bytes; calls `on(tag, edge)` for the bytes of each frame they
    /// hold ([`Edge::Bytes`]), when a frame starts and when it completes.
    fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(u8, Edge)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                on(self.tag, Edge::Bytes(n));
                if self.body_left == 0 {
                    on(self.tag, Edge::Ended);
                }
                continue;
            }
            let header_len = if self.untagged > 0 { 4 } else { 5 };
            let n = (header_len - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            let tag = if self.untagged > 0 { 0 } else { self.header[0] };
            on(tag, Edge::Bytes(n));
            if self.header.len() < header_len {
                continue;
            }
            let (tag, len) = if self.untagged > 0 {
                self.untagged -= 1;
                (
                    0,
                    u32::from_be_bytes(self.header[..4].try_into().unwrap_or_default()) as usize,
                )
            } else {
                (
                    self.header[0],
                    u32::from_be_bytes(self.header[1..5].try_into().unwrap_or_default()) as usize,
                )
            };
            self.header.clear();
            self.tag = tag;
            self.body_left = len.saturating_sub(4);
            on(tag, Edge::Started);
            if self.body_left == 0 {
                on(tag, Edge::Ended);
            }
        }
    }
}

/// Frame trackers for both directions of one plaintext connection.
#[derive(Debug)]
pub(crate) struct Frames {
    incoming: Framer,
    outgoing: Framer,
    pub(crate) log: std::sync::Arc<std::sync::Mutex<FrameLog>>,
}

impl Frames {
    /// For a plaintext connection that starts with one untagged StartupMessage.
    pub(crate) fn new(log: std::sync::Arc<std::sync::Mutex<FrameLog>>) -> Self {
        Self {
            incoming: Framer::default(),
            outgoing: Framer {
                untagged: 1,
                ..Framer::default()
            },
            log,
        }
    }

    fn read(&mut self, bytes: &[u8]) {
        let log = &self.log;
        self.incoming.feed(bytes, |tag, edge| {
            let mut l = log.lock().unwrap();
            if tag == b'E' && edge == Edge::Ended {
                l.error_received = true;
                l.error_arrived = true;
            }
            if tag == b'G' && edge == Edge::Ended {
                l.copying = true;
            }
        });
    }

    /// During COPY IN, peeks whether the server's reply has arrived (before
    /// each write, so bytes written after it can be counted).
    fn note_arrival<T: Transport>(&mut self, inner: &T) {
        let mut l = self.log.lock().unwrap();
        if l.copying && !l.error_arrived && inner.probe().has_data() {
            l.error_arrived = true;
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let log = &self.log;
        self.outgoing.feed(bytes, |tag, edge| {
            let mut l = log.lock().unwrap();
            match edge {
                // Only COPY data counts: the fence (an empty query) that
                // follows an aborted COPY is not data sent in vain.
                Edge::Bytes(n) if tag == b'd' && l.error_arrived => l.written_after_arrival += n,
                Edge::Started if matches!(tag, b'c' | b'f') && l.error_received => {
                    l.end_after_error = true;
                }
                _ => {}
            }
        });
    }
}
