//! COPY IN over a connection: pulls the source, writes what the session's
//! COPY queues, and keeps reading meanwhile (the receive watch), so the
//! server's error stops it early.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument;

use super::{CopyInOptions, CopyProgress, CopySource, Turns};
use crate::conn::Connection;
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
use crate::protocol::limits::COPY_CANCEL_WAIT;
use crate::session::copy::{CopyIn, CopyInPhase};
use crate::trace::{self, CopyCounts, CopyDirection};
use crate::transport::Transport;

impl<T: Transport> Connection<T> {
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
        source: S,
        options: CopyInOptions<'_>,
    ) -> Result<u64, Error> {
        let span = trace::copy_span(&self.endpoint, CopyDirection::In);
        let mut counts = CopyCounts::default();
        let result = self
            .copy_in_traced(sql, source, options, &mut counts)
            .instrument(span.clone())
            .await;
        trace::copy_ended(&span, &result, counts);
        result
    }

    /// [`Connection::copy_in_with`] without its span; `counts` is set when
    /// the COPY ends.
    async fn copy_in_traced<S: CopySource>(
        &mut self,
        sql: &str,
        mut source: S,
        mut options: CopyInOptions<'_>,
        counts: &mut CopyCounts,
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
                    cancel_after_timeout(self.cancel_token.clone()).await;
                    Err(Error::timeout(format!(
                        "COPY IN did not finish within {limit:?}"
                    )))
                }
            },
            None => run.await,
        };
        *counts = copy_counts(&copy);
        self.end(result)
    }

    async fn run_copy_in<S: CopySource>(
        &mut self,
        copy: &mut CopyIn,
        source: &mut S,
        options: &mut CopyInOptions<'_>,
    ) -> Result<u64, Error> {
        self.start_copy_in(copy).await?;
        if copy.phase() == CopyInPhase::Sending {
            if let Err(e) = self.send_copy_data(copy, source, options).await {
                return Err(copy.interrupted(&mut self.session, e));
            }
        }
        self.finish_copy_in(copy).await
    }

    /// Sends the Query and reads until the COPY leaves `Starting` (sending,
    /// or refused: then its phase is `Done`).
    ///
    /// # Errors
    /// A transport or protocol error, as [`CopyIn::interrupted`] reports it.
    pub(super) async fn start_copy_in(&mut self, copy: &mut CopyIn) -> Result<(), Error> {
        let started = async {
            self.flush_send_buf().await?;
            self.receive(|session| {
                copy.receive(session);
                (copy.phase() != CopyInPhase::Starting).then_some(())
            })
            .await
        };
        started
            .await
            .map_err(|e| copy.interrupted(&mut self.session, e))
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
        let mut turns = Turns::default();
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
            turns.took(chunk.len());
            copy.push(chunk)?;
            if copy.queued() >= copy.batch_size() {
                // A source and writes that never block would never let the
                // reactor see the server's error (see `YIELD_EVERY`).
                std::future::poll_fn(|cx| turns.poll_turn(cx)).await;
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
        std::future::poll_fn(|cx| self.poll_finish_copy_in(cx, copy)).await
    }

    /// [`Self::finish_copy_in`] as a poll: everything it needs is in `copy`
    /// and the session, so a pending poll loses nothing.
    pub(super) fn poll_finish_copy_in(
        &mut self,
        cx: &mut Context<'_>,
        copy: &mut CopyIn,
    ) -> Poll<Result<u64, Error>> {
        loop {
            copy.receive(&mut self.session);
            if let Some(result) = copy.take_result() {
                return Poll::Ready(result);
            }
            let io = if copy.queued() > 0 || !self.session.send_buf().is_empty() {
                self.poll_write_out(cx, copy)
            } else {
                self.poll_fill(cx)
            };
            match io {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(copy.interrupted(&mut self.session, e)));
                }
                Poll::Pending => return Poll::Pending,
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
    pub(super) fn poll_watch(
        &mut self,
        cx: &mut Context<'_>,
        copy: &mut CopyIn,
    ) -> Poll<Result<(), Error>> {
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
    pub(super) fn poll_write_out(
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

/// Asks the server to stop a COPY IN that timed out, through `token` (a
/// connection made by `connect` has one); failures are only logged.
///
/// It takes the token, not `&Connection`: a `&Connection` held across the
/// await would make `copy_in_with`'s future `Send` only if `Connection` were
/// `Sync`, which it is not (the session's callbacks are `Send` only).
async fn cancel_after_timeout(token: Option<crate::cancel::CancelToken>) {
    let Some(token) = token else {
        return;
    };
    match tokio::time::timeout(COPY_CANCEL_WAIT, token.cancel()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e.report(), "could not cancel the timed-out COPY"),
        Err(_) => tracing::warn!("cancel request for the timed-out COPY did not complete"),
    }
}

/// What a COPY IN moved, for its span.
pub(super) fn copy_counts(copy: &CopyIn) -> CopyCounts {
    CopyCounts {
        bytes: copy.bytes(),
        aborted: Some(copy.aborted()),
    }
}

/// A write that took nothing (the peer is gone) or failed.
fn write_failed(result: std::io::Result<usize>) -> Error {
    match result {
        Ok(_) => Error::closed("connection closed by server while writing"),
        Err(e) => Error::io("writing COPY data", e),
    }
}
