//! Sending a [`Pipeline`] and reading its replies: the requests are written
//! while the replies are read, so a pipeline larger than the sockets' buffers
//! cannot stall both sides (the server blocked writing replies we do not
//! read, we blocked writing requests it does not read).

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::conn::Connection;
use crate::error::Error;
use tracing::Instrument;

use crate::session::pipeline::{Pipeline, PipelineRun, Response};
use crate::trace;
use crate::transport::Transport;

impl<T: Transport> Connection<T> {
    /// Sends every request of `pipeline` followed by one Sync, before any
    /// reply is read, and returns one [`Response`] per request, in order.
    /// One round trip for the lot.
    ///
    /// After an error, the server skips the rest of the pipeline: the
    /// failing request's response is [`Response::Failed`] with the server's
    /// error, every later one [`Response::Skipped`], and the connection is
    /// `Ready`. The pipeline is one implicit transaction (unless inside
    /// `BEGIN`), so the earlier requests' changes are rolled back too.
    ///
    /// ```no_run
    /// # async fn demo(conn: &mut pg_transport::DefaultConnection) -> Result<(), pg_transport::Error> {
    /// use pg_transport::session::pipeline::{Pipeline, Response};
    ///
    /// let mut p = Pipeline::new();
    /// p.query("SELECT $1::int * 2", &[Some(b"21")])?
    ///     .query("SELECT 1/0", &[])?
    ///     .query("SELECT 3", &[])?;
    /// let responses = conn.pipeline(&p).await?;
    /// let first = responses[0].rows().expect("ran");
    /// assert_eq!(first.rows[0].get_str(0)?, Some("42"));
    /// assert!(matches!(responses[1], Response::Failed(_)));
    /// assert!(matches!(responses[2], Response::Skipped));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Errors of the pipeline as a whole; each request's own failure is its
    /// [`Response::Failed`].
    /// - Kind `State`/`Closed` if the connection is busy or closed (nothing sent).
    /// - Kind `Server` if the implicit COMMIT after the last request failed
    ///   (a deferred constraint, say): nothing of the pipeline was kept. The
    ///   connection is `Ready`.
    /// - Kind `Usage` if the rows would take more than 64 MiB: the reply is
    ///   read and dropped, the connection `Ready`.
    /// - Transport and protocol errors (a reply that does not fit its request)
    ///   leave it `Closed`.
    pub async fn pipeline(&mut self, pipeline: &Pipeline) -> Result<Vec<Response>, Error> {
        let span = trace::pipeline_span(&self.endpoint, pipeline.len());
        let result = async {
            self.check_not_abandoned()?;
            let mut run = PipelineRun::start(&mut self.session, pipeline)?;
            self.begin()?;
            let mut unflushed = false;
            let result =
                std::future::poll_fn(|cx| self.poll_pipeline(&mut run, &mut unflushed, cx)).await;
            self.end(result)
        }
        .instrument(span.clone())
        .await;
        match &result {
            // A request's own failure is the batch's outcome too.
            Ok(responses) => match responses.iter().find_map(Response::error) {
                Some(failed) => trace::query_ended(&span, Err(failed)),
                None => {
                    let rows = responses.iter().filter_map(Response::rows);
                    trace::query_ended(&span, Ok(rows.map(|set| set.rows.len() as u64).sum()));
                }
            },
            Err(e) => trace::query_ended(&span, Err(e)),
        }
        result
    }

    fn poll_pipeline(
        &mut self,
        run: &mut PipelineRun,
        unflushed: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Vec<Response>, Error>> {
        loop {
            if let Some(done) = run.next(&mut self.session) {
                return Poll::Ready(done);
            }
            let wrote = match self.poll_write_some(unflushed, cx) {
                Poll::Ready(Ok(wrote)) => wrote,
                Poll::Ready(Err(e)) => return Poll::Ready(run.interrupted(e)),
                Poll::Pending => false,
            };
            match self.poll_fill(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(run.interrupted(e)),
                Poll::Pending if wrote => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes what the session queued, as far as the transport takes it
    /// now, and flushes once it is all out (`unflushed` remembers a flush
    /// still owed). `true` if any byte went out.
    pub(crate) fn poll_write_some(
        &mut self,
        unflushed: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<Result<bool, Error>> {
        let Some(transport) = self.transport.as_mut() else {
            return Poll::Ready(Err(Error::closed("connection is closed")));
        };
        let mut wrote = false;
        while !self.session.send_buf().is_empty() {
            let pending = self.session.send_buf().pending();
            match tokio::io::AsyncWrite::poll_write(Pin::new(&mut *transport), cx, pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Error::closed(
                        "connection closed by server while writing",
                    )));
                }
                Poll::Ready(Ok(n)) => {
                    self.session.send_buf().advance(n);
                    (wrote, *unflushed) = (true, true);
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(Error::io("writing to the server", e)));
                }
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if *unflushed {
            // TLS holds written bytes until flushed; a pending flush is
            // retried by the next call.
            match tokio::io::AsyncWrite::poll_flush(Pin::new(&mut *transport), cx) {
                Poll::Ready(Ok(())) => *unflushed = false,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(Error::io("flushing to the server", e)));
                }
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(wrote))
    }
}
