//! Streamed simple queries: rows as they arrive, as a [`Stream`] of owned
//! [`Row`]s or into a [`RowSink`], over the sans-IO [`SimpleQuery`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tracing::{Instrument, Span};

use crate::conn::Connection;
use crate::error::Error;
use crate::session::RowSink;
use crate::session::query::{QueryEvent, Row, SimpleQuery};
use crate::trace;
use crate::transport::Transport;

/// The rows of a simple query, from [`Connection::query_stream`].
///
/// Each item is one [`Row`]; the stream ends (`None`) once the server is
/// ready again. An error (the server's, or a failed connection) is the last
/// item; after a server error the connection is `Ready`. Dropping the stream
/// before it ends abandons the query: the connection is then `Closed` (the
/// rest of the reply is not drained).
#[derive(Debug)]
pub struct RowStream<'a, T> {
    conn: &'a mut Connection<T>,
    query: SimpleQuery,
    done: bool,
    /// The query's span, recorded when the stream ends (not entered per row).
    span: Span,
    rows: u64,
    /// A write still owes a flush.
    unflushed: bool,
}

impl<T> RowStream<'_, T> {
    /// The command tags of the statements completed so far (`SELECT 3`,
    /// `INSERT 0 1`, …), in order; all of them once the stream has ended.
    pub fn tags(&self) -> &[String] {
        self.query.tags()
    }
}

impl<T: Transport> Stream for RowStream<'_, T> {
    type Item = Result<Row, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let event = match this.query.next(&mut this.conn.session) {
                Some(event) => event,
                None => match poll_refill(this.conn, &mut this.unflushed, cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => this.query.interrupted(e),
                    Poll::Pending => return Poll::Pending,
                },
            };
            return match event {
                QueryEvent::Row(row) => {
                    this.rows += 1;
                    Poll::Ready(Some(Ok(row)))
                }
                QueryEvent::Done(result) => {
                    // Clears the in-flight mark; closes the connection unless
                    // the error left the stream in sync.
                    this.done = true;
                    let result = this.conn.end(result);
                    trace::query_ended(&this.span, result.as_ref().map(|()| this.rows));
                    Poll::Ready(result.err().map(Err))
                }
            };
        }
    }
}

/// Writes what the session queued (a CopyFail refusing `COPY … FROM STDIN`)
/// through the pipeline's write step, which flushes (TLS holds written bytes
/// until then), and reads meanwhile.
fn poll_refill<T: Transport>(
    conn: &mut Connection<T>,
    unflushed: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    if !conn.session.send_buf().is_empty() || *unflushed {
        if let Poll::Ready(Err(e)) = conn.poll_write_some(unflushed, cx) {
            return Poll::Ready(Err(e));
        }
    }
    conn.poll_fill(cx)
}

impl<T: Transport> Connection<T> {
    /// Runs `sql` (one or more statements) with the simple-query protocol and
    /// returns its rows as a [`Stream`], each an owned [`Row`] sharing the
    /// receive buffer (one reference count per row, no copy), with columns by
    /// index and by name. Nothing is buffered beyond what the socket
    /// delivered: memory stays bounded whatever the result's size.
    ///
    /// ```no_run
    /// # async fn demo(conn: &mut pg_transport::DefaultConnection) -> Result<(), pg_transport::Error> {
    /// use futures_util::TryStreamExt;
    ///
    /// let mut rows = conn.query_stream("SELECT id, name FROM users").await?;
    /// while let Some(row) = rows.try_next().await? {
    ///     let name = row.get_str(1)?.unwrap_or("(null)");
    ///     println!("{name}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Before the stream: kind `InvalidInput` for SQL with a NUL (nothing
    /// sent, still `Ready`); `State`/`Closed` if the connection is busy or
    /// closed; a failed write (the connection is then `Closed`).
    /// Items: kind `Server` with the server's error (the rest of the reply is
    /// drained; the connection is `Ready`); kind `Usage` for a `COPY`
    /// statement (refused or drained; `Ready`); transport and protocol errors
    /// (a DataRow whose column count is not its RowDescription's, say) leave
    /// it `Closed`.
    pub async fn query_stream(&mut self, sql: &str) -> Result<RowStream<'_, T>, Error> {
        let span = trace::query_span(&self.endpoint, sql);
        let started = async {
            self.check_not_abandoned()?;
            let query = SimpleQuery::start(&mut self.session, sql)?;
            self.begin()?;
            match self.flush_send_buf().await {
                Ok(()) => Ok(query),
                Err(e) => self.end(Err(e)),
            }
        }
        .instrument(span.clone())
        .await;
        match started {
            Ok(query) => Ok(RowStream {
                conn: self,
                query,
                done: false,
                span,
                rows: 0,
                unflushed: false,
            }),
            Err(e) => {
                trace::query_ended(&span, Err(&e));
                Err(e)
            }
        }
    }

    /// Runs `sql` with the simple-query protocol, handing every row to `rows`
    /// as a borrowed view (nothing allocated per row unless the sink keeps
    /// it: [`RowCounter`](crate::RowCounter) counts, [`RowBuffer`](crate::RowBuffer)
    /// stores compactly). Returns the command tags in order.
    ///
    /// ```no_run
    /// # async fn demo(conn: &mut pg_transport::DefaultConnection) -> Result<(), pg_transport::Error> {
    /// let mut counter = pg_transport::RowCounter::default();
    /// let tags = conn.query_with("SELECT * FROM big", &mut counter).await?;
    /// assert_eq!(tags, [format!("SELECT {}", counter.rows)]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Connection::query_stream`]; a row the sink refuses (a full
    /// `RowBuffer`, a changed column count) is kind `Protocol` and leaves the
    /// connection `Closed`, since the rest of the reply cannot be un-sent.
    pub async fn query_with(
        &mut self,
        sql: &str,
        rows: &mut (dyn RowSink + Send),
    ) -> Result<Vec<String>, Error> {
        let span = trace::query_span(&self.endpoint, sql);
        let result = async {
            self.check_not_abandoned()?;
            let mut query = SimpleQuery::start(&mut self.session, sql)?;
            self.begin()?;
            let result = match self.receive(|session| query.next_with(session, rows)).await {
                Ok(done) => done,
                Err(e) => query.interrupted(e).into_result(),
            };
            self.end(result.map(|()| query.tags().to_vec()))
        }
        .instrument(span.clone())
        .await;
        trace::query_ended(&span, result.as_ref().map(|tags| returned_rows(tags)));
        result
    }
}

/// The rows the command tags say were returned: `SELECT n` and `FETCH n`.
fn returned_rows(tags: &[String]) -> u64 {
    tags.iter()
        .filter_map(|tag| {
            let (command, count) = tag.rsplit_once(' ')?;
            matches!(command, "SELECT" | "FETCH").then(|| count.parse::<u64>().ok())?
        })
        .sum()
}
