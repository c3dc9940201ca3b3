//! COPY OUT and COPY IN, with early detection of the server's error while we
//! are still sending (the receive watch, `watch.rs`).

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::io::AsyncRead;

use crate::conn::Connection;
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
use crate::protocol::limits::{COPY_CANCEL_WAIT, MAX_COPY_DATA_CHUNK};
use crate::protocol::{DbError, Message, SqlState, frontend};
use crate::session::State;
use crate::transport::Transport;

/// An error from application code (a sink or a source).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where COPY IN data comes from. Build one with [`source_fn`],
/// [`source_stream`] or [`source_reader`], or implement it.
pub trait CopySource: Send {
    /// The next chunk of COPY data; an empty chunk means the end.
    ///
    /// The future may be dropped before it completes (when the server aborts
    /// the COPY meanwhile): nothing it did is used then.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Bytes, BoxError>> + Send;
}

/// A source from an async callback returning chunks (empty = end).
pub fn source_fn<F, Fut, E>(f: F) -> FnSource<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<Bytes, E>> + Send,
    E: Into<BoxError>,
{
    FnSource(f)
}

/// See [`source_fn`].
#[derive(Debug)]
pub struct FnSource<F>(F);

impl<F, Fut, E> CopySource for FnSource<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<Bytes, E>> + Send,
    E: Into<BoxError>,
{
    async fn next_chunk(&mut self) -> Result<Bytes, BoxError> {
        (self.0)().await.map_err(Into::into)
    }
}

/// A source from a `Stream` of chunks; the stream's end (or an empty chunk) ends the COPY.
pub fn source_stream<S, E>(stream: S) -> StreamSource<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Into<BoxError>,
{
    StreamSource(stream)
}

/// See [`source_stream`].
#[derive(Debug)]
pub struct StreamSource<S>(S);

impl<S, E> CopySource for StreamSource<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Into<BoxError>,
{
    async fn next_chunk(&mut self) -> Result<Bytes, BoxError> {
        match std::future::poll_fn(|cx| Pin::new(&mut self.0).poll_next(cx)).await {
            None => Ok(Bytes::new()),
            Some(r) => r.map_err(Into::into),
        }
    }
}

/// A source reading an `AsyncRead` (a file, a pipe) in chunks of `chunk_size` bytes.
pub fn source_reader<R: AsyncRead + Unpin + Send>(reader: R, chunk_size: usize) -> ReaderSource<R> {
    ReaderSource {
        reader,
        chunk_size: chunk_size.max(1),
        buf: BytesMut::new(),
    }
}

/// See [`source_reader`].
#[derive(Debug)]
pub struct ReaderSource<R> {
    reader: R,
    chunk_size: usize,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin + Send> CopySource for ReaderSource<R> {
    async fn next_chunk(&mut self) -> Result<Bytes, BoxError> {
        self.buf.reserve(self.chunk_size);
        let n = tokio_util::io::read_buf(&mut self.reader, &mut self.buf).await?;
        Ok(self.buf.split_to(n).freeze())
    }
}

/// How far a COPY IN has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyProgress {
    /// Payload bytes handed to the transport.
    pub bytes: u64,
    /// Newlines among them: rows, for text and CSV formats.
    pub rows: u64,
}

/// Settings of one COPY IN.
pub struct CopyInOptions<'a> {
    /// Called after each batch is written.
    pub progress: Option<&'a mut (dyn FnMut(CopyProgress) + Send)>,
    /// Small chunks are gathered into batches of about this size before a write.
    pub batch_size: usize,
    /// Bound on the whole COPY; on expiry the connection is closed and the
    /// timeout returned.
    pub timeout: Option<Duration>,
}

impl Default for CopyInOptions<'_> {
    fn default() -> Self {
        Self {
            progress: None,
            batch_size: 64 * 1024,
            timeout: None,
        }
    }
}

impl std::fmt::Debug for CopyInOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyInOptions")
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The rows count of a `COPY n` command tag.
fn copy_rows(tag: &[u8]) -> u64 {
    tag.strip_prefix(b"COPY ")
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Where COPY OUT data goes, inside this module: a caller's closure, or a
/// writer (a closure cannot lend its captures to the future it returns).
trait CopySink {
    type Error: Into<BoxError>;
    /// The closure's own future, not wrapped: this is the per-row hot path.
    fn take(&mut self, data: Bytes) -> impl Future<Output = Result<(), Self::Error>>;
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
}

/// The data of a `COPY … TO STDOUT`, from [`Connection::copy_out_stream`].
#[derive(Debug)]
pub struct CopyOutStream<'a, T> {
    conn: &'a mut Connection<T>,
    rows: Option<u64>,
    /// The server's error, held until its ReadyForQuery arrives.
    error: Option<Error>,
    done: bool,
}

impl<T> CopyOutStream<'_, T> {
    /// The row count from the command tag, once the stream has ended.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }
}

impl<T: Transport> CopyOutStream<'_, T> {
    /// Ends the operation with `result` (clearing the in-flight mark; closing
    /// the connection unless the error left the stream in sync).
    fn finish(&mut self, result: Result<(), Error>) -> Poll<Option<Result<Bytes, Error>>> {
        self.done = true;
        Poll::Ready(self.conn.end(result).err().map(Err))
    }
}

impl<T: Transport> Stream for CopyOutStream<'_, T> {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if this.error.is_none() {
                // The hot path: no Message built.
                match this.conn.session.next_copy_data() {
                    Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                    Ok(None) => {}
                    Err(e) => return this.finish(Err(e)),
                }
            }
            let m = match this.conn.session.next_message_owned() {
                Ok(Some(m)) => m,
                Ok(None) => match this.conn.poll_fill(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return this.finish(Err(e)),
                    Poll::Pending => return Poll::Pending,
                },
                Err(e) => return this.finish(Err(e)),
            };
            match m {
                // After a notice or notification, CopyData comes this way.
                Message::CopyData(data) if this.error.is_none() => {
                    return Poll::Ready(Some(Ok(data)));
                }
                Message::CommandComplete { tag } => this.rows = Some(copy_rows(&tag)),
                Message::ErrorResponse(fields) => {
                    this.error
                        .get_or_insert_with(|| Error::server(fields.to_db_error()));
                }
                Message::ReadyForQuery(_) => {
                    let result = this.error.take().map_or(Ok(()), Err);
                    return this.finish(result);
                }
                _ => {}
            }
        }
    }
}

/// What happened while waiting for the COPY to start.
enum Start {
    /// CopyInResponse or CopyOutResponse: go on.
    Copying,
    /// The statement is over (error, wrong kind); the error to return.
    Done(Error),
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
        self.check_not_abandoned()?;
        self.session.query(sql)?;
        self.begin()?;
        let started = async {
            self.flush_send_buf().await?;
            match self.await_copy_start(false).await? {
                Start::Copying => Ok(()),
                Start::Done(e) => Err(e),
            }
        }
        .await;
        // On success the operation goes on (still in flight) inside the stream.
        if let Err(e) = started {
            return self.end(Err(e));
        }
        Ok(CopyOutStream {
            conn: self,
            rows: None,
            error: None,
            done: false,
        })
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
        let mut sink = WriterSink { writer };
        let rows = self.copy_out_into(sql, &mut sink, true).await?;
        tokio::io::AsyncWriteExt::flush(sink.writer)
            .await
            .map_err(|e| Error::callback("COPY OUT writer failed", e.into()))?;
        Ok(rows)
    }

    async fn copy_out_into<S: CopySink>(
        &mut self,
        sql: &str,
        sink: &mut S,
        joined: bool,
    ) -> Result<u64, Error> {
        // The loop of `CopyOutStream::poll_next`, written out: driving the
        // stream from here measured about a fifth more client CPU per row.
        self.check_not_abandoned()?;
        self.session.query(sql)?;
        self.begin()?;
        // Kept outside the loop so that a later failure (the transport
        // breaking while the rest is drained) cannot hide the first cause.
        let mut sink_error: Option<BoxError> = None;
        let mut outcome: Option<Error> = None;
        let result = async {
            self.flush_send_buf().await?;
            if let Start::Done(e) = self.await_copy_start(false).await? {
                return Err(e);
            }
            let mut rows = 0;
            loop {
                // The hot path: CopyData straight to the sink, no Message built.
                if sink_error.is_none() {
                    let next = if joined {
                        self.session.next_copy_data_joined()?
                    } else {
                        self.session.next_copy_data()?
                    };
                    if let Some(data) = next {
                        if let Err(e) = sink.take(data).await {
                            sink_error = Some(e.into());
                        }
                        continue;
                    }
                }
                let Some(m) = self.session.next_message_owned()? else {
                    self.fill(None).await?;
                    continue;
                };
                match m {
                    // CopyData comes this way when a notice or notification
                    // preceded it (the fast path only looks at the next frame).
                    Message::CopyData(data) if sink_error.is_none() => {
                        if let Err(e) = sink.take(data).await {
                            sink_error = Some(e.into());
                        }
                    }
                    Message::CommandComplete { tag } => rows = copy_rows(&tag),
                    Message::ErrorResponse(fields) => {
                        outcome.get_or_insert_with(|| Error::server(fields.to_db_error()));
                    }
                    Message::ReadyForQuery(_) => break,
                    _ => {}
                }
            }
            Ok(rows)
        }
        .await;
        let first = match sink_error {
            Some(e) => Some(Error::callback("COPY OUT sink failed", e)),
            None => outcome,
        };
        self.end(first_cause(first, result))
    }

    /// Runs `COPY … FROM STDIN`, sending what `source` yields; returns the row
    /// count from the command tag. See [`Connection::copy_in_with`].
    ///
    /// # Errors
    /// As [`Connection::copy_in_with`].
    pub async fn copy_in<S: CopySource>(&mut self, sql: &str, source: S) -> Result<u64, Error> {
        self.copy_in_with(sql, source, CopyInOptions::default())
            .await
    }

    /// Runs `COPY … FROM STDIN` with `options`.
    ///
    /// Small chunks are batched; large ones are sent without copying (vectored
    /// writes) and split into CopyData messages of at most 1 MiB. While data is
    /// being pulled or written, the connection also reads: an ErrorResponse
    /// from the server stops the COPY within one batch, not at the end of the
    /// input. After such an abort neither CopyDone nor CopyFail is sent; the
    /// reply is drained to ReadyForQuery (including stray `08P01` replies some
    /// servers add) and the server's error returned.
    ///
    /// # Errors
    /// - Kind `Server`: the server aborted; the connection is `Ready`.
    /// - Kind `Callback`: the source failed; CopyFail was sent with its message
    ///   (NUL bytes replaced), the reply drained, no rows inserted, `Ready`.
    /// - Kind `Usage` for a statement that is not `COPY … FROM STDIN` (the
    ///   source is never pulled); `Ready`.
    /// - Kind `Timeout` when `options.timeout` expires: the connection is
    ///   closed (its stream is mid-COPY) and no CopyFail is sent.
    /// - Transport or protocol errors, or dropping the future: `Closed`, no CopyFail.
    pub async fn copy_in_with<S: CopySource>(
        &mut self,
        sql: &str,
        mut source: S,
        mut options: CopyInOptions<'_>,
    ) -> Result<u64, Error> {
        self.check_not_abandoned()?;
        self.session.query(sql)?;
        self.begin()?;
        let timeout = options.timeout;
        let run = self.run_copy_in(&mut source, &mut options);
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => {
                    // The stream is mid-COPY: close it, and ask the server to stop
                    // the statement so it does not wait on a dead COPY.
                    self.session.close();
                    self.cancel_after_timeout().await;
                    Err(Error::timeout(format!(
                        "COPY IN did not finish within {limit:?}"
                    )))
                }
            },
            None => run.await,
        };
        self.end(result)
    }

    async fn cancel_after_timeout(&self) {
        let Some(token) = self.cancel_token.clone() else {
            return;
        };
        match tokio::time::timeout(COPY_CANCEL_WAIT, token.cancel()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not cancel the timed-out COPY"),
            Err(_) => tracing::warn!("cancel request for the timed-out COPY did not complete"),
        }
    }

    async fn run_copy_in<S: CopySource>(
        &mut self,
        source: &mut S,
        options: &mut CopyInOptions<'_>,
    ) -> Result<u64, Error> {
        self.flush_send_buf().await?;
        if let Start::Done(e) = self.await_copy_start(true).await? {
            return Err(e);
        }
        let mut out = Outgoing::default();
        let mut progress = CopyProgress::default();
        let batch = options.batch_size.max(1);
        loop {
            // Pull the next chunk. Meanwhile, write what is batched (a slow
            // source must not hold data back) and watch for the server's error.
            let chunk = {
                let mut next = std::pin::pin!(source.next_chunk());
                loop {
                    tokio::select! {
                        biased;
                        chunk = &mut next => break chunk,
                        aborted = std::future::poll_fn(|cx| self.poll_write_or_watch(cx, &mut out)) => {
                            if let Some(db) = aborted? {
                                return self.finish_abort(db, &mut out).await;
                            }
                        }
                    }
                }
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return self.fail_copy(e, &mut out).await,
            };
            if chunk.is_empty() {
                break;
            }
            progress.bytes += chunk.len() as u64;
            progress.rows += memchr::memchr_iter(b'\n', &chunk).count() as u64;
            out.push_copy_data(chunk, batch);
            if out.len() >= batch {
                if let Some(db) = self.write_watching(&mut out).await? {
                    return self.finish_abort(db, &mut out).await;
                }
                if let Some(cb) = options.progress.as_mut() {
                    cb(progress);
                }
            }
        }
        if let Some(db) = self.write_watching(&mut out).await? {
            return self.finish_abort(db, &mut out).await;
        }
        if let Some(cb) = options.progress.as_mut() {
            cb(progress);
        }
        // One last look before CopyDone: if the server already aborted, CopyDone
        // must not follow.
        if let Poll::Ready(aborted) =
            self.poll_watch(&mut Context::from_waker(std::task::Waker::noop()))
        {
            return self.finish_abort(aborted?, &mut out).await;
        }
        frontend::copy_done(self.session.send_buf().buf_mut());
        self.flush_send_buf().await?;
        let result = self.drain_copy_result().await;
        self.end_copy_in(result).await
    }

    /// Reads until the COPY starts (`CopyInResponse` when `copy_in`) or the
    /// statement turns out not to be the expected COPY.
    async fn await_copy_start(&mut self, copy_in: bool) -> Result<Start, Error> {
        let mut outcome: Option<Error> = None;
        loop {
            let Some(m) = self.session.next_message_owned()? else {
                self.fill(None).await?;
                continue;
            };
            match m {
                Message::CopyInResponse(_) if copy_in => return Ok(Start::Copying),
                Message::CopyOutResponse(_) if !copy_in => return Ok(Start::Copying),
                Message::CopyOutResponse(_) => {
                    outcome.get_or_insert_with(|| Error::usage(
                        "copy_in was given COPY … TO STDOUT, which sends data to the client: use copy_out",
                    ));
                }
                Message::CopyInResponse(_) => {
                    // The server waits for data: refuse it so it answers.
                    frontend::copy_fail(
                        self.session.send_buf().buf_mut(),
                        "copy_out cannot send COPY data",
                    );
                    self.flush_send_buf().await?;
                    outcome.get_or_insert_with(|| Error::usage(
                        "copy_out was given COPY … FROM STDIN, which sends data to the server: use copy_in",
                    ));
                }
                Message::RowDescription(_)
                | Message::CommandComplete { .. }
                | Message::EmptyQueryResponse => {
                    outcome.get_or_insert_with(|| {
                        Error::usage(if copy_in {
                            "copy_in needs a COPY … FROM STDIN statement"
                        } else {
                            "copy_out needs a COPY … TO STDOUT statement"
                        })
                    });
                }
                Message::ErrorResponse(fields) => {
                    outcome.get_or_insert_with(|| Error::server(fields.to_db_error()));
                }
                Message::ReadyForQuery(_) => {
                    return Ok(Start::Done(outcome.unwrap_or_else(|| {
                        Error::usage("the statement did not start a COPY")
                    })));
                }
                _ => {}
            }
        }
    }

    /// Writes everything queued while watching for the server's error.
    /// `Ok(Some(error))` if the server aborted (the write may be unfinished).
    async fn write_watching(&mut self, out: &mut Outgoing) -> Result<Option<DbError>, Error> {
        std::future::poll_fn(|cx| {
            if mutant(Mutant::CopyInIgnoresWatch) {
                return self.poll_write_out(cx, out).map_ok(|()| None);
            }
            if let Poll::Ready(aborted) = self.poll_watch(cx) {
                return Poll::Ready(aborted.map(Some));
            }
            self.poll_write_out(cx, out).map_ok(|()| None)
        })
        .await
    }

    /// Writes what is queued while watching; once nothing is queued, only
    /// watches. Ready with `Some` when the server aborted, `None` when the
    /// queue has just been written out.
    fn poll_write_or_watch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing,
    ) -> Poll<Result<Option<DbError>, Error>> {
        if mutant(Mutant::CopyInIgnoresWatch) {
            if out.is_empty() {
                return Poll::Pending;
            }
            return self.poll_write_out(cx, out).map_ok(|()| None);
        }
        if let Poll::Ready(aborted) = self.poll_watch(cx) {
            return Poll::Ready(aborted.map(Some));
        }
        if out.is_empty() {
            return Poll::Pending;
        }
        self.poll_write_out(cx, out).map_ok(|()| None)
    }

    fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing,
    ) -> Poll<Result<(), Error>> {
        let Some(transport) = self.transport.as_mut() else {
            return Poll::Ready(Err(Error::closed("connection is closed")));
        };
        // Anything the session queued first (it precedes the COPY data).
        while !self.session.send_buf().is_empty() {
            let pending = self.session.send_buf().pending();
            match Pin::new(&mut *transport).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Error::closed(
                        "connection closed by server while writing",
                    )));
                }
                Poll::Ready(Ok(n)) => self.session.send_buf().advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("writing COPY data", e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        out.seal();
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = out.io_slices(&mut slices);
            match Pin::new(&mut *transport)
                .poll_write_vectored(cx, slices.get(..n).unwrap_or_default())
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Error::closed(
                        "connection closed by server while writing",
                    )));
                }
                Poll::Ready(Ok(written)) => out.advance(written),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::io("writing COPY data", e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(transport).poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::io("flushing COPY data", e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The server aborted the COPY: finish the message already on its way (a
    /// half-sent frame would desynchronise the stream; the server discards
    /// CopyData after an error), send nothing more, drain to ReadyForQuery.
    async fn finish_abort(&mut self, first: DbError, out: &mut Outgoing) -> Result<u64, Error> {
        out.keep_started_frame_only();
        if mutant(Mutant::CopyDoneAfterAbort) {
            let mut done = BytesMut::new();
            frontend::copy_done(&mut done);
            out.push_message(done.freeze());
        }
        let drained = match std::future::poll_fn(|cx| self.poll_write_out(cx, out)).await {
            Ok(()) => self.drain_copy_result().await,
            Err(e) => Err(e),
        };
        let result = first_cause(Some(Error::server(first)), drained);
        self.end_copy_in(result).await
    }

    /// The source failed: CopyFail (after whatever frame is already on its
    /// way), drain, and return the source's error.
    async fn fail_copy(&mut self, e: BoxError, out: &mut Outgoing) -> Result<u64, Error> {
        out.keep_started_frame_only();
        let reason = format!("COPY source failed: {e}");
        frontend::copy_fail(self.session.send_buf().buf_mut(), &reason);
        let fail = self.session.send_buf().buf_mut().split().freeze();
        out.push_message(fail);
        let drained = match std::future::poll_fn(|cx| self.poll_write_out(cx, out)).await {
            Ok(()) => self.drain_copy_result().await,
            Err(e) => Err(e),
        };
        let drained = self.end_copy_in(drained).await;
        first_cause(Some(Error::callback("COPY IN source failed", e)), drained)
    }

    /// Reads the end of a COPY: CommandComplete's row count, or the server's
    /// first error.
    async fn drain_copy_result(&mut self) -> Result<u64, Error> {
        let mut rows = 0;
        let mut error: Option<DbError> = None;
        loop {
            let Some(m) = self.session.next_message_owned()? else {
                self.fill(None).await?;
                continue;
            };
            match m {
                Message::CommandComplete { tag } => rows = copy_rows(&tag),
                Message::ErrorResponse(fields) => {
                    error.get_or_insert_with(|| fields.to_db_error());
                }
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        error.map_or(Ok(rows), |db| Err(Error::server(db)))
    }

    /// After the server aborted a COPY IN, CopyData that crossed its error on
    /// the wire draws, from some servers, one ErrorResponse 08P01 +
    /// ReadyForQuery each, arriving at any time later. An empty query is a
    /// fence: the server answers in order, so every such reply comes before
    /// the fence's own EmptyQueryResponse, and none is left to poison the
    /// next query. One round trip, on the error path only.
    async fn fence_stray_replies(&mut self) -> Result<(), Error> {
        self.session.begin_request(|buf| frontend::query(buf, ""))?;
        self.flush_send_buf().await?;
        let mut fenced = false;
        loop {
            let Some(m) = self.session.next_message_owned()? else {
                self.fill(None).await?;
                continue;
            };
            match m {
                Message::EmptyQueryResponse => fenced = true,
                Message::ErrorResponse(fields) if !fenced && is_violation(&fields) => {}
                Message::ErrorResponse(fields) => return Err(Error::server(fields.to_db_error())),
                Message::ReadyForQuery(_) if fenced => return Ok(()),
                // A stray pair ended; the fence's reply is still to come.
                Message::ReadyForQuery(_) => self.session.begin_request(|_| Ok(()))?,
                _ => {}
            }
        }
    }

    /// The COPY IN ended in `result`; after a server error, fence off stray
    /// replies (see [`Self::fence_stray_replies`]). If the fence fails the
    /// stream cannot be trusted: `Closed`, and the COPY's own error is still
    /// the one returned, with the fence's failure as its [`Error::later`].
    async fn end_copy_in(&mut self, result: Result<u64, Error>) -> Result<u64, Error> {
        let server_error = matches!(&result, Err(e) if e.as_db_error().is_some());
        if server_error && self.session.state() == State::Ready {
            if let Err(later) = self.fence_stray_replies().await {
                self.session.close();
                return result.map_err(|first| first.then(later));
            }
        }
        result
    }
}

/// When an operation met two failures, the first is the one reported. A
/// later failure of the connection is attached to it ([`Error::later`]); a
/// later server error (the server's answer to CopyFail, a stray reply) only
/// repeats the first and is dropped. The connection's state says what is left.
fn first_cause(first: Option<Error>, result: Result<u64, Error>) -> Result<u64, Error> {
    match (first, result) {
        (Some(first), Err(later)) if later.as_db_error().is_none() => Err(first.then(later)),
        (Some(first), _) => Err(first),
        (None, result) => result,
    }
}

/// Whether an ErrorResponse is 08P01 (protocol violation).
fn is_violation(fields: &crate::protocol::fields::Fields<Bytes>) -> bool {
    fields.iter().any(|(code, v)| {
        code == b'C' && SqlState::from_code(v) == Some(SqlState::PROTOCOL_VIOLATION)
    })
}

/// COPY IN bytes on their way out: sealed segments (batches of small CopyData
/// messages, or a header and then a large payload that is not copied), plus
/// where each message ends, so an abort can finish exactly the message in flight.
#[derive(Debug, Default)]
struct Outgoing {
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

/// Chunks at least this large are sent without copying into the batch.
const ZERO_COPY_MIN: usize = 16 * 1024;

impl Outgoing {
    /// Bytes not yet written.
    fn len(&self) -> usize {
        usize::try_from(self.sealed_end - self.written).unwrap_or(usize::MAX) + self.open.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames `chunk` as CopyData messages: copied into the batch when small,
    /// referenced (header + payload) when large, split at the size cap.
    fn push_copy_data(&mut self, mut chunk: Bytes, batch: usize) {
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
    fn push_message(&mut self, bytes: Bytes) {
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
    fn seal(&mut self) {
        if !self.open.is_empty() {
            let seg = self.open.split().freeze();
            self.sealed_end += seg.len() as u64;
            self.segments.push_back(seg);
        }
    }

    fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, seg) in slices.iter_mut().zip(&self.segments) {
            *slot = IoSlice::new(seg);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut n: usize) {
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
    fn keep_started_frame_only(&mut self) {
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
#[path = "copy_tests.rs"]
mod tests;
