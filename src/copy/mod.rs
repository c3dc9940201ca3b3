//! COPY OUT and COPY IN over a connection: the caller's sources and sinks,
//! and the I/O for the sans-IO COPY of the session (`session/copy/`), which
//! holds the protocol's rules. While COPY IN writes or waits for its source,
//! the connection keeps reading (the receive watch), so the server's error
//! stops it early.

mod copy_in;
mod source;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tracing::{Instrument, Span};

use crate::conn::Connection;
use crate::error::Error;
use crate::session::copy::{BoxError, CopyOut, CopyOutEvent};
use crate::trace::{self, CopyCounts, CopyDirection};
use crate::transport::Transport;

pub use source::{
    CopyInOptions, CopyProgress, CopySource, FnSource, ReaderSource, StreamSource, source_fn,
    source_reader, source_stream,
};
pub use writer::CopyInWriter;

/// A COPY IN whose writes never block would never see the server's error:
/// a socket's readiness is updated by the runtime's reactor, which runs only
/// when the task yields (tokio's cooperative budget forces that only every
/// 128 I/O polls: 25 MB of 200 KB writes, measured; 27.8 MB in CI). So after
/// this many bytes taken, COPY IN yields once, and the watch sees what
/// arrived.
const YIELD_EVERY: usize = 1 << 20;

/// Counts the bytes COPY IN takes and gives the runtime a turn once
/// [`YIELD_EVERY`] of them went by without one (see there).
#[derive(Debug, Default)]
struct Turns {
    unyielded: usize,
    yielding: bool,
}

impl Turns {
    fn took(&mut self, bytes: usize) {
        self.unyielded += bytes;
    }

    /// Pending once, waking at once, when a turn is due; else ready.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielding {
            self.yielding = false;
            self.unyielded = 0;
        } else if self.unyielded >= YIELD_EVERY {
            self.yielding = true;
            // Its first poll defers our wake-up until the reactor has run.
            let mut turn = std::pin::pin!(tokio::task::yield_now());
            if turn.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

/// Where COPY OUT data goes, inside this module: a caller's closure, or a
/// writer (a closure cannot lend its captures to the future it returns).
trait CopySink {
    type Error: Into<BoxError>;
    /// The closure's own future, not wrapped: this is the per-row hot path.
    fn take(&mut self, data: Bytes) -> impl Future<Output = Result<(), Self::Error>>;

    /// Once the COPY has ended well: whatever the sink still holds back (a
    /// writer's flush), inside the COPY's span so its outcome covers it.
    fn finish(&mut self) -> impl Future<Output = Result<(), Self::Error>> {
        // Not `future::ready`: that would hold a `Self::Error` and make the
        // COPY's future `Send` only for `Send` errors.
        async { Ok(()) }
    }
}

struct FnSink<F>(F);

impl<F, Fut, E> CopySink for FnSink<F>
where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Error = E;
    fn take(&mut self, data: Bytes) -> impl Future<Output = Result<(), E>> {
        (self.0)(data)
    }
}

struct WriterSink<'w, W: ?Sized> {
    writer: &'w mut W,
}

impl<W: tokio::io::AsyncWrite + Unpin + ?Sized> CopySink for WriterSink<'_, W> {
    type Error = std::io::Error;
    async fn take(&mut self, data: Bytes) -> Result<(), std::io::Error> {
        tokio::io::AsyncWriteExt::write_all(self.writer, &data).await
    }

    async fn finish(&mut self) -> Result<(), std::io::Error> {
        tokio::io::AsyncWriteExt::flush(self.writer).await
    }
}

/// The data of a `COPY … TO STDOUT`, from [`Connection::copy_out_stream`].
#[derive(Debug)]
pub struct CopyOutStream<'a, T> {
    conn: &'a mut Connection<T>,
    copy: CopyOut,
    done: bool,
    /// Recorded when the stream ends; never entered per item (no per-row
    /// cost with a subscriber).
    span: Span,
}

impl<T> CopyOutStream<'_, T> {
    /// The row count from the command tag, once the stream has ended.
    pub fn rows(&self) -> Option<u64> {
        if self.done { self.copy.rows() } else { None }
    }
}

impl<T: Transport> Stream for CopyOutStream<'_, T> {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(data) = this.copy.next_data(&mut this.conn.session) {
            return Poll::Ready(Some(Ok(data)));
        }
        loop {
            let event = match this.copy.next(&mut this.conn.session) {
                Some(event) => event,
                None => match this.conn.poll_fill(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => this.copy.interrupted(e),
                    Poll::Pending => return Poll::Pending,
                },
            };
            return match event {
                CopyOutEvent::Data(data) => Poll::Ready(Some(Ok(data))),
                CopyOutEvent::Done(result) => {
                    // Clears the in-flight mark; closes the connection unless
                    // the error left the stream in sync.
                    this.done = true;
                    let result = this.conn.end(result);
                    let counts = CopyCounts {
                        bytes: this.copy.bytes(),
                        aborted: None,
                    };
                    trace::copy_ended(&this.span, &result, counts);
                    Poll::Ready(result.err().map(Err))
                }
            };
        }
    }
}

impl<T: Transport> Connection<T> {
    /// Runs `COPY … TO STDOUT` and hands each CopyData payload to `sink` as a
    /// [`Bytes`] that shares the receive buffer (no copy). Nothing more is read
    /// while the sink is busy. Returns the row count from the command tag.
    ///
    /// # Errors
    /// - Kind `Usage` for a statement that is not `COPY … TO STDOUT` (the sink
    ///   is never called; `COPY … FROM STDIN` is answered with CopyFail so the
    ///   server does not wait); the connection stays `Ready`.
    /// - Kind `Callback` with the sink's error: the rest is drained, the
    ///   connection stays `Ready`, the transaction status unchanged.
    /// - Kind `Server` for the server's error (drained, `Ready`).
    /// - Transport, protocol and cancellation errors leave it `Closed`.
    pub async fn copy_out<F, Fut, E>(&mut self, sql: &str, sink: F) -> Result<u64, Error>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        self.copy_out_into(sql, &mut FnSink(sink), false).await
    }

    /// [`Connection::copy_out`] for sinks that treat COPY data as a byte
    /// stream (a file, a socket, a parser that splits rows itself): the
    /// CopyData messages already received are joined into one [`Bytes`] per
    /// hand-over (see [`Session::next_copy_data_joined`](crate::Session::next_copy_data_joined)),
    /// so the cost per row is a small in-place move instead of a reference
    /// count taken and dropped. Each chunk holds whole CopyData messages (in
    /// text and CSV formats, whole rows), but usually several.
    ///
    /// # Errors
    /// As [`Connection::copy_out`].
    pub async fn copy_out_joined<F, Fut, E>(&mut self, sql: &str, sink: F) -> Result<u64, Error>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        self.copy_out_into(sql, &mut FnSink(sink), true).await
    }

    /// Runs `COPY … TO STDOUT` and returns its data as a [`Stream`] of
    /// [`Bytes`], one per CopyData message, each sharing the receive buffer
    /// (no copy). Nothing is read until the stream is polled. The stream ends
    /// (`None`) once the server is ready again; [`CopyOutStream::rows`] then
    /// has the row count. A server error during the COPY comes as the last
    /// item, after which the connection is `Ready`.
    ///
    /// Dropping the stream before it ends abandons the COPY: the connection
    /// is then `Closed` (the rest of the data is not drained).
    ///
    /// # Errors
    /// Before the stream starts, as [`Connection::copy_out`] (misuse is a
    /// `Usage` error with the connection `Ready`; a server error is `Server`).
    /// Items: kind `Server` for the server's error, transport and protocol
    /// errors (the connection then `Closed`).
    pub async fn copy_out_stream(&mut self, sql: &str) -> Result<CopyOutStream<'_, T>, Error> {
        let span = trace::copy_span(&self.endpoint, CopyDirection::Out);
        let started = async {
            self.check_not_abandoned()?;
            let mut copy = CopyOut::start(&mut self.session, sql, false)?;
            self.begin()?;
            // Up to CopyOutResponse here; the data is the stream's.
            match self.receive(|session| copy.start_only(session)).await {
                Ok(Ok(())) => Ok(copy),
                Ok(Err(e)) | Err(e) => self.end(Err(e)),
            }
        }
        .instrument(span.clone())
        .await;
        // On success the operation goes on (still in flight) inside the stream.
        match started {
            Ok(copy) => Ok(CopyOutStream {
                conn: self,
                copy,
                done: false,
                span,
            }),
            Err(e) => {
                trace::outcome(&span, Some(&e));
                Err(e)
            }
        }
    }

    /// Runs `COPY … TO STDOUT` and writes its data to `writer`, joined per
    /// read as in [`Connection::copy_out_joined`] (a file or socket gets
    /// whole rows in large writes), then flushes it. Returns the row count.
    ///
    /// # Errors
    /// As [`Connection::copy_out`]; a failed write or flush is kind
    /// `Callback` with the I/O error (the rest of the COPY is drained, the
    /// connection stays `Ready`).
    pub async fn copy_out_to<W>(&mut self, sql: &str, writer: &mut W) -> Result<u64, Error>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        self.copy_out_into(sql, &mut WriterSink { writer }, true)
            .await
    }

    async fn copy_out_into<S: CopySink>(
        &mut self,
        sql: &str,
        sink: &mut S,
        joined: bool,
    ) -> Result<u64, Error> {
        let span = trace::copy_span(&self.endpoint, CopyDirection::Out);
        let mut counts = CopyCounts::default();
        let result = async {
            let rows = self.copy_out_run(sql, sink, joined, &mut counts).await?;
            sink.finish()
                .await
                .map_err(|e| Error::callback("COPY OUT writer failed", e.into()))?;
            Ok(rows)
        }
        .instrument(span.clone())
        .await;
        trace::copy_ended(&span, &result, counts);
        result
    }

    /// [`Connection::copy_out_into`] without its span; `counts` is set when
    /// the COPY ends.
    async fn copy_out_run<S: CopySink>(
        &mut self,
        sql: &str,
        sink: &mut S,
        joined: bool,
        counts: &mut CopyCounts,
    ) -> Result<u64, Error> {
        // The loop of `CopyOutStream::poll_next`, written out: driving the
        // stream from here measured about a fifth more client CPU per row.
        self.check_not_abandoned()?;
        let mut copy = CopyOut::start(&mut self.session, sql, joined)?;
        self.begin()?;
        if let Err(e) = self.flush_send_buf().await {
            return self.end(Err(e));
        }
        loop {
            // The hot path: one payload, no event built.
            if let Some(data) = copy.next_data(&mut self.session) {
                if let Err(e) = sink.take(data).await {
                    copy.sink_failed(e.into());
                }
                continue;
            }
            let event = match copy.next(&mut self.session) {
                Some(event) => event,
                None => match self.refill().await {
                    Ok(()) => continue,
                    Err(e) => copy.interrupted(e),
                },
            };
            match event {
                CopyOutEvent::Data(data) => {
                    if let Err(e) = sink.take(data).await {
                        copy.sink_failed(e.into());
                    }
                }
                CopyOutEvent::Done(result) => {
                    counts.bytes = copy.bytes();
                    return self.end(result);
                }
            }
        }
    }
}
