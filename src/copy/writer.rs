//! COPY IN as a `tokio::io::AsyncWrite` and a `futures::Sink<Bytes>`, with
//! the receive watch: the server's error ends the writer at the next write,
//! not at the end of the data.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tracing::{Instrument, Span};

use super::{CopyInOptions, Turns, copy_in};
use crate::conn::Connection;
use crate::error::Error;
use crate::session::copy::{BoxError, CopyIn, CopyInPhase};
use crate::trace::{self, CopyDirection};
use crate::transport::Transport;

/// A `COPY … FROM STDIN` in progress, fed by writes: an
/// [`AsyncWrite`] (so `tokio::io::copy(&mut file, &mut writer)` works) and a
/// [`Sink<Bytes>`](futures_sink::Sink) (large `Bytes` go out without a copy).
/// From [`Connection::copy_in_writer`].
///
/// While it is written to, it also reads: when the server aborts the COPY (a
/// constraint violated at row 2 of a billion), the next write, flush or
/// `poll_ready` fails with the server's error, about a MiB later at most
/// (COPY IN yields to the runtime that often) — not at
/// the end, as with a writer that only looks at the reply when it is
/// finished. By then the COPY is over and the connection `Ready` again.
///
/// End it with [`CopyInWriter::finish`] (or `shutdown` / `close`, then
/// [`CopyInWriter::rows`]): that sends CopyDone and reads the row count.
/// Dropping it before the end abandons the COPY: the connection is then
/// `Closed`.
///
/// Errors from the `AsyncWrite` side are `io::Error`s of kind `Other` whose
/// inner error ([`io::Error::get_ref`]) is the [`Error`].
#[derive(Debug)]
pub struct CopyInWriter<'a, T> {
    conn: &'a mut Connection<T>,
    copy: CopyIn,
    /// When to give the runtime a turn (see [`YIELD_EVERY`](super::YIELD_EVERY)).
    turns: Turns,
    /// The COPY's outcome once it has ended (the operation is then over).
    outcome: Option<Result<u64, Error>>,
    /// Recorded when the COPY ends; never entered per write.
    span: Span,
}

impl<T: Transport> Connection<T> {
    /// Starts `COPY … FROM STDIN` and returns a writer for its data once the
    /// server is ready for it. See [`CopyInWriter`].
    ///
    /// ```no_run
    /// # async fn run(conn: &mut pg_transport::DefaultConnection) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut file = tokio::fs::File::open("rows.tsv").await?;
    /// let mut writer = conn.copy_in_writer("COPY t FROM STDIN").await?;
    /// // A server error (a duplicate key at row 2) fails this copy within one
    /// // batch, with the server's error inside the io::Error.
    /// tokio::io::copy(&mut file, &mut writer).await?;
    /// let rows = writer.finish().await?;
    /// # let _ = rows; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// - Kind `Usage` for a statement that is not `COPY … FROM STDIN`, kind
    ///   `Server` for the server's refusal (no such table): the connection
    ///   stays `Ready`.
    /// - Transport and protocol errors: `Closed`.
    pub async fn copy_in_writer(&mut self, sql: &str) -> Result<CopyInWriter<'_, T>, Error> {
        let span = trace::copy_span(&self.endpoint, CopyDirection::In);
        let started = self
            .start_copy_in_writer(sql)
            .instrument(span.clone())
            .await;
        match started {
            Ok(copy) => Ok(CopyInWriter {
                conn: self,
                copy,
                turns: Turns::default(),
                outcome: None,
                span,
            }),
            Err(e) => {
                trace::outcome(&span, Some(&e));
                Err(e)
            }
        }
    }

    /// Starts the COPY for [`Connection::copy_in_writer`]: the COPY, sending.
    async fn start_copy_in_writer(&mut self, sql: &str) -> Result<CopyIn, Error> {
        self.check_not_abandoned()?;
        let mut copy = CopyIn::start(&mut self.session, sql, CopyInOptions::default().batch_size)?;
        self.begin()?;
        if let Err(e) = self.start_copy_in(&mut copy).await {
            return self.end(Err(e));
        }
        match copy.take_result() {
            // Refused before any data: the statement is over (always an error:
            // a COPY that never started has no row count).
            Some(result) => self.end(result.and_then(|_| {
                Err(Error::protocol_violation(
                    "COPY IN ended before it started".to_owned(),
                ))
            })),
            None => Ok(copy),
        }
    }
}

impl<T: Transport> CopyInWriter<'_, T> {
    /// Sends CopyDone (unless the server has already aborted), reads the
    /// reply and returns the row count from `COPY n`.
    ///
    /// # Errors
    /// - Kind `Server`: the server aborted the COPY (also when a write already
    ///   reported it) or refused the data at the end; the connection is `Ready`.
    /// - Transport and protocol errors: `Closed`.
    pub async fn finish(mut self) -> Result<u64, Error> {
        std::future::poll_fn(|cx| self.poll_end(cx)).await;
        self.take_outcome()
    }

    /// Abandons the COPY cleanly: sends CopyFail with `reason` (after the
    /// rest of a frame already partly written), reads the server's reply,
    /// and returns the COPY's outcome, which is an error: kind `Callback`
    /// with `reason` as its source, the connection `Ready` and nothing of
    /// the COPY kept. Use it when the data's own source fails part-way (a
    /// COPY OUT from another server, say); dropping the writer instead
    /// leaves the connection `Closed`.
    ///
    /// If the server had already aborted the COPY, its error is returned
    /// instead (nothing is sent); transport errors leave the connection
    /// `Closed`.
    pub async fn abort(mut self, reason: impl Into<BoxError>) -> Error {
        if self.outcome.is_none() {
            self.copy.fail(reason.into());
        }
        std::future::poll_fn(|cx| self.poll_end(cx)).await;
        match self.take_outcome() {
            Err(e) => e,
            // Unreachable for a COPY that was sending: CopyFail always fails it.
            Ok(rows) => Error::usage(format!(
                "the COPY IN had already ended with COPY {rows}: nothing to abort"
            )),
        }
    }

    /// The row count, once the COPY has ended well (after
    /// [`CopyInWriter::finish`], `shutdown` or `close`).
    pub fn rows(&self) -> Option<u64> {
        match &self.outcome {
            Some(Ok(rows)) => Some(*rows),
            _ => None,
        }
    }

    /// Ready when another chunk may be queued: the queue is under one batch
    /// (written out while watching the socket otherwise). After the server's
    /// error, ends the COPY and fails with it.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.outcome.is_some() {
            return Poll::Ready(Err(self.ended()));
        }
        ready!(self.turns.poll_turn(cx));
        if let Poll::Ready(Err(e)) = self.conn.poll_watch(cx, &mut self.copy) {
            return Poll::Ready(Err(self.fail(e)));
        }
        while self.copy.phase() == CopyInPhase::Sending
            && self.copy.queued() >= self.copy.batch_size()
        {
            if let Err(e) = ready!(self.conn.poll_write_out(cx, &mut self.copy)) {
                return Poll::Ready(Err(self.fail(e)));
            }
        }
        self.poll_still_sending(cx)
    }

    /// Writes everything queued, watching; after the server's error, ends
    /// the COPY and fails with it.
    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.poll_room(cx))?;
        while self.copy.queued() > 0 && self.copy.phase() == CopyInPhase::Sending {
            if let Poll::Ready(Err(e)) = self.conn.poll_watch(cx, &mut self.copy) {
                return Poll::Ready(Err(self.fail(e)));
            }
            if self.copy.phase() != CopyInPhase::Sending {
                break;
            }
            if let Err(e) = ready!(self.conn.poll_write_out(cx, &mut self.copy)) {
                return Poll::Ready(Err(self.fail(e)));
            }
        }
        self.poll_still_sending(cx)
    }

    /// Ok while the COPY takes data; once the server has ended it, drives
    /// the end (the reply, the fence) and fails with the server's error.
    fn poll_still_sending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.copy.phase() == CopyInPhase::Sending {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_end(cx));
        Poll::Ready(Err(self.ended()))
    }

    /// Drives the COPY to its end: CopyDone if it is still sending, the rest
    /// written, the reply (and after a server error the fence) read. Ready
    /// once the outcome is known; the operation is then over.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.outcome.is_some() {
            return Poll::Ready(());
        }
        if self.copy.phase() == CopyInPhase::Sending {
            // One last look first: after the server's error, no CopyDone.
            if let Poll::Ready(Err(e)) = self.conn.poll_watch(cx, &mut self.copy) {
                let e = self.copy.interrupted(self.conn.session_mut(), e);
                self.conclude(Err(e));
                return Poll::Ready(());
            }
            self.copy.finish();
        }
        let result = ready!(self.conn.poll_finish_copy_in(cx, &mut self.copy));
        self.conclude(result);
        Poll::Ready(())
    }

    /// The COPY is over with `result`: ends the operation, records the span.
    fn conclude(&mut self, result: Result<u64, Error>) {
        let result = self.conn.end(result);
        trace::copy_ended(&self.span, &result, copy_in::copy_counts(&self.copy));
        self.outcome = Some(result);
    }

    /// The I/O failed while sending: the COPY is over (`Closed`).
    fn fail(&mut self, e: Error) -> Error {
        let e = self.copy.interrupted(self.conn.session_mut(), e);
        let reported = Error::with_kind_of(&e, e.report().to_string());
        self.conclude(Err(e));
        reported
    }

    /// The error to report again for a COPY that has already ended.
    fn ended(&self) -> Error {
        match &self.outcome {
            Some(Err(e)) => match e.as_db_error() {
                Some(db) => Error::server(db.clone()),
                None => Error::with_kind_of(e, e.report().to_string()),
            },
            _ => Error::usage("the COPY IN has ended: nothing more can be written"),
        }
    }

    fn take_outcome(&mut self) -> Result<u64, Error> {
        self.outcome
            .take()
            .unwrap_or_else(|| Err(Error::usage("the COPY IN has not ended")))
    }
}

impl<T: Transport> AsyncWrite for CopyInWriter<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx)).map_err(io::Error::other)?;
        if !buf.is_empty() {
            this.copy
                .push(Bytes::copy_from_slice(buf))
                .map_err(io::Error::other)?;
            this.turns.took(buf.len());
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_all(cx).map_err(io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_end(cx));
        match &this.outcome {
            Some(Ok(_)) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::other(this.ended()))),
        }
    }
}

impl<T: Transport> futures_sink::Sink<Bytes> for CopyInWriter<'_, T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_room(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), Error> {
        let this = self.get_mut();
        if this.outcome.is_some() {
            return Err(this.ended());
        }
        this.turns.took(item.len());
        this.copy.push(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_write_all(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_end(cx));
        match &this.outcome {
            Some(Ok(_)) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(this.ended())),
        }
    }
}
