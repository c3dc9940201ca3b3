//! COPY OUT and COPY IN over a connection: the caller's sources and sinks,
//! and the I/O for the sans-IO COPY of the session (`session/copy/`), which
//! holds the protocol's rules. While COPY IN writes or waits for its source,
//! the connection keeps reading (the receive watch), so the server's error
//! stops it early.

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
use crate::protocol::limits::COPY_CANCEL_WAIT;
use crate::session::copy::{BoxError, CopyIn, CopyInPhase, CopyOut, CopyOutEvent};
use crate::transport::Transport;

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
    copy: CopyOut,
    done: bool,
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
                    Poll::Ready(this.conn.end(result).err().map(Err))
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
        self.check_not_abandoned()?;
        let mut copy = CopyOut::start(&mut self.session, sql, false)?;
        self.begin()?;
        // Up to CopyOutResponse here; the data is the stream's.
        let started = self.receive(|session| copy.start_only(session)).await;
        // On success the operation goes on (still in flight) inside the stream.
        match started {
            Ok(Ok(())) => Ok(CopyOutStream {
                conn: self,
                copy,
                done: false,
            }),
            Ok(Err(e)) | Err(e) => self.end(Err(e)),
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
        let mut copy = CopyOut::start(&mut self.session, sql, joined)?;
        self.begin()?;
        if let Err(e) = self.flush_send_buf().await {
            return self.end(Err(e));
        }
        loop {
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
                CopyOutEvent::Done(result) => return self.end(result),
            }
        }
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
        let mut copy = CopyIn::start(&mut self.session, sql, options.batch_size)?;
        self.begin()?;
        let timeout = options.timeout;
        let run = self.run_copy_in(&mut copy, &mut source, &mut options);
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
        copy: &mut CopyIn,
        source: &mut S,
        options: &mut CopyInOptions<'_>,
    ) -> Result<u64, Error> {
        let started = async {
            self.flush_send_buf().await?;
            self.receive(|session| {
                copy.receive(session);
                (copy.phase() != CopyInPhase::Starting).then_some(())
            })
            .await
        };
        if let Err(e) = started.await {
            return Err(copy.interrupted(&mut self.session, e));
        }
        if copy.phase() == CopyInPhase::Sending {
            if let Err(e) = self.send_copy_data(copy, source, options).await {
                return Err(copy.interrupted(&mut self.session, e));
            }
        }
        self.finish_copy_in(copy).await
    }

    /// Pulls the source and writes its data until it ends, fails, or the
    /// server aborts (the COPY's phase then says which).
    async fn send_copy_data<S: CopySource>(
        &mut self,
        copy: &mut CopyIn,
        source: &mut S,
        options: &mut CopyInOptions<'_>,
    ) -> Result<(), Error> {
        let mut progress = CopyProgress::default();
        loop {
            // Pull the next chunk. Meanwhile, write what is batched (a slow
            // source must not hold data back) and watch for the server's error.
            let chunk = {
                let mut next = std::pin::pin!(source.next_chunk());
                loop {
                    tokio::select! {
                        biased;
                        chunk = &mut next => break chunk,
                        watched = std::future::poll_fn(|cx| self.poll_write_or_watch(cx, copy)) => {
                            watched?;
                            if copy.phase() != CopyInPhase::Sending {
                                return Ok(());
                            }
                        }
                    }
                }
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    copy.fail(e);
                    return Ok(());
                }
            };
            if chunk.is_empty() {
                break;
            }
            progress.bytes += chunk.len() as u64;
            progress.rows += memchr::memchr_iter(b'\n', &chunk).count() as u64;
            copy.push(chunk)?;
            if copy.queued() >= copy.batch_size() {
                self.write_watching(copy).await?;
                if copy.phase() != CopyInPhase::Sending {
                    return Ok(());
                }
                if let Some(cb) = options.progress.as_mut() {
                    cb(progress);
                }
            }
        }
        self.write_watching(copy).await?;
        if copy.phase() != CopyInPhase::Sending {
            return Ok(());
        }
        if let Some(cb) = options.progress.as_mut() {
            cb(progress);
        }
        // One last look before CopyDone: if the server already aborted, the
        // COPY does not send it.
        if let Poll::Ready(watched) =
            self.poll_watch(&mut Context::from_waker(std::task::Waker::noop()), copy)
        {
            watched?;
        }
        copy.finish();
        Ok(())
    }

    /// Writes what the COPY still queues (the rest of a started frame,
    /// CopyDone or CopyFail, the fence) and reads its reply to the end.
    async fn finish_copy_in(&mut self, copy: &mut CopyIn) -> Result<u64, Error> {
        loop {
            copy.receive(&mut self.session);
            if let Some(result) = copy.take_result() {
                return result;
            }
            let io = async {
                if copy.queued() > 0 || !self.session.send_buf().is_empty() {
                    std::future::poll_fn(|cx| self.poll_write_out(cx, copy)).await?;
                }
                self.fill(None).await
            };
            if let Err(e) = io.await {
                return Err(copy.interrupted(&mut self.session, e));
            }
        }
    }

    /// Writes everything queued while watching for the server's error; ends
    /// early if it arrives (the COPY is then no longer sending).
    async fn write_watching(&mut self, copy: &mut CopyIn) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            if !mutant(Mutant::CopyInIgnoresWatch) {
                if let Poll::Ready(watched) = self.poll_watch(cx, copy) {
                    return Poll::Ready(watched);
                }
            }
            self.poll_write_out(cx, copy)
        })
        .await
    }

    /// Writes what is queued while watching; once nothing is queued, only
    /// watches. Ready when the server aborted or the queue has just been
    /// written out.
    fn poll_write_or_watch(
        &mut self,
        cx: &mut Context<'_>,
        copy: &mut CopyIn,
    ) -> Poll<Result<(), Error>> {
        if !mutant(Mutant::CopyInIgnoresWatch) {
            if let Poll::Ready(watched) = self.poll_watch(cx, copy) {
                return Poll::Ready(watched);
            }
        }
        if copy.queued() == 0 {
            return Poll::Pending;
        }
        self.poll_write_out(cx, copy)
    }

    /// The receive watch: reads while COPY IN is sending, ready once the
    /// COPY is no longer (the server's ErrorResponse arrived, or something it
    /// cannot send now, which ends the COPY). Notices, notifications and
    /// ParameterStatus are dispatched on the way.
    ///
    /// It is a poll, not a spawned task: bytes it reads are committed to the
    /// receive buffer only when a read completes (cancel-safe), and dropping
    /// a pending watch loses nothing. At most one read is ever in flight,
    /// because there is only one `&mut Connection`.
    fn poll_watch(&mut self, cx: &mut Context<'_>, copy: &mut CopyIn) -> Poll<Result<(), Error>> {
        loop {
            copy.receive(&mut self.session);
            if copy.phase() != CopyInPhase::Sending {
                return Poll::Ready(Ok(()));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes the session's send buffer, then the COPY's queue (vectored),
    /// then flushes.
    fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        copy: &mut CopyIn,
    ) -> Poll<Result<(), Error>> {
        let Some(transport) = self.transport.as_mut() else {
            return Poll::Ready(Err(Error::closed("connection is closed")));
        };
        // Anything the session queued first (it precedes the COPY data).
        while !self.session.send_buf().is_empty() {
            let pending = self.session.send_buf().pending();
            match Pin::new(&mut *transport).poll_write(cx, pending) {
                Poll::Ready(Ok(n)) if n > 0 => self.session.send_buf().advance(n),
                Poll::Ready(r) => return Poll::Ready(Err(write_failed(r))),
                Poll::Pending => return Poll::Pending,
            }
        }
        while copy.queued() > 0 {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = slices
                .iter_mut()
                .zip(copy.to_write())
                .map(|(slot, seg)| *slot = IoSlice::new(seg))
                .count();
            match Pin::new(&mut *transport)
                .poll_write_vectored(cx, slices.get(..n).unwrap_or_default())
            {
                Poll::Ready(Ok(written)) if written > 0 => copy.written(written),
                Poll::Ready(r) => return Poll::Ready(Err(write_failed(r))),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(transport).poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::io("flushing COPY data", e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A write that took nothing (the peer is gone) or failed.
fn write_failed(result: std::io::Result<usize>) -> Error {
    match result {
        Ok(_) => Error::closed("connection closed by server while writing"),
        Err(e) => Error::io("writing COPY data", e),
    }
}
