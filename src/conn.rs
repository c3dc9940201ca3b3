//! `Connection<T>`: the thin async driver around a [`Session`] and a [`Transport`].
//!
//! # Cancellation
//! [`Connection::fill_recv_buf`] is cancel-safe: dropping it loses no byte (a
//! read commits bytes only when it completes). Every other async method is an
//! *operation*: it marks itself in flight and clears the mark when it finishes.
//! Dropping one part-way leaves the mark set, so the connection reports
//! [`State::Closed`] from then on and is never reused half-way through an
//! exchange.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::bulk::BulkReader;
use crate::error::Error;
use crate::protocol::limits::{MAX_SIMPLE_QUERY_RESULT_BYTES, TERMINATE_WAIT};
use crate::protocol::{DataRow, Message, frontend};
use crate::session::{Session, State};
use crate::transport::{BulkRead, TlsInfo, Transport};

/// Bytes a connection waiting idle reads at a time while it holds no receive
/// buffer ([`Connection::poll_fill_idle`]): room for a typical notification;
/// a larger one, or a burst, goes on in the receive buffer it then allocates.
const IDLE_READ: usize = 512;

/// One statement's result from [`Connection::simple_query`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueryResult {
    /// Column names (empty for statements without rows).
    pub columns: Vec<String>,
    /// Rows as text; `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The command tag, e.g. `SELECT 2` or `INSERT 0 1` (empty for an empty query).
    pub tag: String,
}

/// A connection: a transport, the protocol session, and the operations on them.
#[derive(Debug)]
pub struct Connection<T> {
    pub(crate) transport: Option<T>,
    pub(crate) session: Session,
    /// Set while an operation runs; still set after one was dropped part-way.
    pub(crate) in_flight: bool,
    /// How to cancel this connection's running query (set by `connect`).
    pub(crate) cancel_token: Option<crate::cancel::CancelToken>,
    /// How long a read in the middle of a response keeps retrying before the
    /// task parks (zero: park at once). See [`Connection::set_read_spin`].
    read_spin: Duration,
    /// When the current run of empty reads began.
    spinning_since: Option<std::time::Instant>,
    /// Bulk reads of large responses. See [`Connection::set_bulk_read`].
    bulk: BulkReader,
    /// Where the connection goes, for its spans (set by `connect`).
    pub(crate) endpoint: crate::trace::Endpoint,
}

impl<T: Transport> Connection<T> {
    /// Wraps an established transport and a session (normally `Ready`, after startup).
    pub fn new(transport: T, session: Session) -> Self {
        Self {
            transport: Some(transport),
            session,
            in_flight: false,
            cancel_token: None,
            read_spin: Duration::ZERO,
            spinning_since: None,
            bulk: BulkReader::new(Some(BulkRead::default())),
            endpoint: crate::trace::Endpoint::default(),
        }
    }

    /// How the connection reads large responses (query rows, COPY OUT data):
    /// with `Some` (the default, [`BulkRead::default`]), once a response has
    /// delivered [`BulkRead::after`] bytes, a read that finds nothing waiting
    /// sleeps up to [`BulkRead::max_wait`] without being woken by each
    /// server send, then takes everything that came; `None` reads every
    /// response as it arrives. The server then no longer pays to wake the
    /// client per 8 KB: measured on a 104 MB COPY OUT, a quarter less wall
    /// time and about half the client CPU (docs/benchmarks.md).
    /// The price is up to `max_wait` at the end of each large response and at
    /// each pause in one. Applies to TCP, TLS over TCP and Unix sockets on
    /// Linux; elsewhere, and on other transports, it does nothing. Takes
    /// effect at the next read.
    pub fn set_bulk_read(&mut self, bulk: Option<BulkRead>) {
        self.bulk.set(bulk);
    }

    /// The bulk-read settings ([`Connection::set_bulk_read`]); `None` when off.
    pub fn bulk_read(&self) -> Option<BulkRead> {
        self.bulk.config()
    }

    /// Lets a read that finds the socket empty in the middle of a response
    /// (a COPY OUT, a long result) retry for up to `budget` before the task
    /// parks. A server streaming faster than one wake-up per send then finds
    /// the client awake and does not pay to wake it, which can shorten bulk
    /// transfers, at the price of the client's CPU for up to `budget` per
    /// pause. Zero (the default) parks at once. It reads the real clock: do
    /// not set it in a deterministic simulation.
    pub fn set_read_spin(&mut self, budget: Duration) {
        self.read_spin = budget;
        self.spinning_since = None;
    }

    /// The protocol session (state, server parameters, notifications).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The protocol session, mutably (callbacks, notifications, row sinks).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// A token that cancels this connection's running query from elsewhere
    /// (another task); present for connections made by [`connect`](crate::connect()).
    pub fn cancel_token(&self) -> Option<crate::cancel::CancelToken> {
        self.cancel_token.clone()
    }

    /// The transport, while the connection has one.
    pub fn transport(&self) -> Option<&T> {
        self.transport.as_ref()
    }

    /// TLS details, if the connection uses TLS.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.transport.as_ref()?.tls_info()
    }

    /// The state; `Closed` if an operation was abandoned part-way.
    pub fn state(&self) -> State {
        if self.in_flight {
            State::Closed
        } else {
            self.session.state()
        }
    }

    /// Reads once from the transport into the receive buffer: the only await
    /// point of reception. With `timeout`, gives up after it.
    ///
    /// # Errors
    /// - Kind `Closed` at once, without a syscall, on a closed connection.
    /// - Kind `Timeout`: nothing read, nothing lost, state unchanged; call again.
    /// - Kind `Closed` "connection closed by server" on EOF; the state becomes `Closed`.
    /// - Kind `Io` for any other read error (kept as the source); `Closed`.
    /// - Kind `Protocol` if the buffered header is over the size cap; `Closed`.
    pub async fn fill_recv_buf(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.check_not_abandoned()?;
        self.fill(timeout).await
    }

    /// [`Connection::fill_recv_buf`] for use inside an operation (which has
    /// already checked, and set, the in-flight mark).
    pub(crate) async fn fill(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        let read = std::future::poll_fn(|cx| self.poll_fill(cx));
        match timeout {
            Some(limit) => tokio::time::timeout(limit, read).await.unwrap_or_else(|_| {
                Err(Error::timeout(format!(
                    "no data from the server within {limit:?}"
                )))
            }),
            None => read.await,
        }
    }

    /// One read into the receive buffer, as a poll. Bytes are committed only
    /// when the read completes, so a dropped or timed-out poll loses nothing.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let Some(transport) = self.transport.as_mut() else {
            self.session.close();
            return Poll::Ready(Err(Error::closed("connection is closed")));
        };
        if let Err(e) = self.bulk.before_read(transport, &self.session) {
            return Poll::Ready(Err(self.bulk_switch_failed(e)));
        }
        let buf = match self.session.prepare_read() {
            Ok(buf) => buf,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let result = match tokio_util::io::poll_read_buf(Pin::new(&mut *transport), cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                if !self.read_spin.is_zero() && self.session.state() != State::Ready {
                    let now = std::time::Instant::now();
                    let since = *self.spinning_since.get_or_insert(now);
                    if now.duration_since(since) < self.read_spin {
                        // Runnable again at once: the runtime polls the
                        // driver (non-blocking) and this read retries.
                        cx.waker().wake_by_ref();
                    }
                }
                return Poll::Pending;
            }
        };
        self.spinning_since = None;
        Poll::Ready(match result {
            Ok(0) => {
                self.session.close();
                Err(Error::closed("connection closed by server"))
            }
            Ok(n) => {
                self.session.commit_read(n);
                self.bulk.after_read(n);
                Ok(())
            }
            Err(e) => {
                self.session.close();
                Err(Error::io("reading from the server", e))
            }
        })
    }

    /// [`Connection::poll_fill`] for a connection waiting idle (for a
    /// notification): while it holds no receive buffer, it reads into
    /// [`IDLE_READ`] bytes on the stack, so a connection that waits holds no
    /// buffer; a receive buffer is allocated only once bytes arrive (and
    /// given back by [`Session::release_idle_buffers`] when they are used).
    pub(crate) fn poll_fill_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.session.recv_buf().capacity() != 0 {
            return self.poll_fill(cx);
        }
        let Some(transport) = self.transport.as_mut() else {
            return self.poll_fill(cx);
        };
        let mut stack = [0u8; IDLE_READ];
        let mut buf = tokio::io::ReadBuf::new(&mut stack);
        let result = match Pin::new(transport).poll_read(cx, &mut buf) {
            Poll::Ready(r) => r,
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(match result {
            Ok(()) if buf.filled().is_empty() => {
                self.session.close();
                Err(Error::closed("connection closed by server"))
            }
            Ok(()) => self.session.feed(buf.filled()),
            Err(e) => {
                self.session.close();
                Err(Error::io("reading from the server", e))
            }
        })
    }

    /// A transport that could not switch bulk reading on or off may never
    /// report the bytes waiting: the connection is done.
    fn bulk_switch_failed(&mut self, e: std::io::Error) -> Error {
        self.session.close();
        self.transport = None;
        Error::io("switching bulk reading", e)
    }

    /// What an operation does when the buffered bytes hold nothing complete:
    /// write what it queued in the session meanwhile (a reply such as
    /// CopyFail), then read once.
    pub(crate) async fn refill(&mut self) -> Result<(), Error> {
        if !self.session.send_buf().is_empty() {
            self.flush_send_buf().await?;
        }
        self.fill(None).await
    }

    /// The receive loop of operations: `step` looks at what is buffered
    /// (through the session's sans-IO state) and returns what it waits for;
    /// until then, [`Connection::refill`].
    pub(crate) async fn receive<R>(
        &mut self,
        mut step: impl FnMut(&mut Session) -> Option<R>,
    ) -> Result<R, Error> {
        loop {
            if let Some(r) = step(&mut self.session) {
                return Ok(r);
            }
            self.refill().await?;
        }
    }

    /// The next message the caller must see, reading as needed; owned payloads.
    ///
    /// # Errors
    /// As [`Session::next_message`] and [`Connection::fill_recv_buf`]. A timeout
    /// leaves everything buffered: calling again continues the same exchange.
    pub async fn recv_message(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Message<Bytes>, Error> {
        self.check_not_abandoned()?;
        loop {
            if let Some(m) = self.session.next_message_owned()? {
                return Ok(m);
            }
            self.fill(timeout).await?;
        }
    }

    /// Writes `bytes` to the server and flushes.
    ///
    /// # Errors
    /// Kind `Closed` on a closed connection; kind `Io` if the write fails, after
    /// which the connection is `Closed`.
    pub async fn send_msg(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.begin()?;
        let result = self.write_all(bytes).await;
        self.end(result)
    }

    /// Writes whatever the session's send buffer holds; no I/O if it is empty.
    ///
    /// # Errors
    /// As [`Connection::send_msg`].
    pub async fn send_buf_msg(&mut self) -> Result<(), Error> {
        if self.session.send_buf().is_empty() {
            return Ok(());
        }
        self.begin()?;
        let result = self.flush_send_buf().await;
        self.end(result)
    }

    pub(crate) async fn flush_send_buf(&mut self) -> Result<(), Error> {
        let Some(transport) = self.transport.as_mut() else {
            return Err(Error::closed("connection is closed"));
        };
        while !self.session.send_buf().is_empty() {
            let n = transport
                .write(self.session.send_buf().pending())
                .await
                .map_err(|e| Error::io("writing to the server", e))?;
            if n == 0 {
                return Err(Error::closed("connection closed by server while writing"));
            }
            self.session.send_buf().advance(n);
        }
        transport
            .flush()
            .await
            .map_err(|e| Error::io("flushing to the server", e))
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(transport) = self.transport.as_mut() else {
            return Err(Error::closed("connection is closed"));
        };
        transport
            .write_all(bytes)
            .await
            .map_err(|e| Error::io("writing to the server", e))?;
        transport
            .flush()
            .await
            .map_err(|e| Error::io("flushing to the server", e))
    }

    /// Runs `sql` with the simple-query protocol and returns each statement's
    /// columns, rows (as text) and command tag.
    ///
    /// # Errors
    /// - Kind `Server` with the server's error, after draining to
    ///   ReadyForQuery: the connection stays `Ready`.
    /// - Kind `InvalidInput` for SQL containing NUL: nothing sent, still `Ready`.
    /// - Kind `Usage` if the rows would take more than
    ///   [`MAX_SIMPLE_QUERY_RESULT_BYTES`] (64 MiB): the rest of the response
    ///   is read and dropped, the connection stays `Ready`; read such results
    ///   as a stream (`copy_out`, or `recv_message`) instead.
    /// - Kind `State`/`Closed` if the connection is busy or closed; kind
    ///   `Io`/`Protocol`/`Closed` if the stream fails (the connection is then `Closed`).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>, Error> {
        let span = crate::trace::query_span(&self.endpoint, sql);
        let result = async {
            self.check_not_abandoned()?;
            self.session.query(sql)?;
            self.begin()?;
            let result = self.run_simple_query().await;
            self.end(result)
        }
        .instrument(span.clone())
        .await;
        let rows = |r: &Vec<QueryResult>| r.iter().map(|q| q.rows.len() as u64).sum();
        crate::trace::query_ended(&span, result.as_ref().map(rows));
        result
    }

    async fn run_simple_query(&mut self) -> Result<Vec<QueryResult>, Error> {
        self.flush_send_buf().await?;
        let mut results = Vec::new();
        let mut current = QueryResult::default();
        let mut server_error = None;
        // Heap the collected rows take; `None` once over the cap, after which
        // rows are dropped as they arrive and the response is only drained.
        let mut collected = Some(0usize);
        loop {
            while let Some(m) = self.session.next_message()? {
                match m {
                    Message::RowDescription(rd) => {
                        current.columns = rd
                            .fields()
                            .map(|f| String::from_utf8_lossy(f.name).into_owned())
                            .collect();
                    }
                    Message::DataRow(row) => {
                        collected = collected.and_then(|used| {
                            collect_row(&mut current.rows, row, used)
                                .filter(|&used| used <= MAX_SIMPLE_QUERY_RESULT_BYTES)
                        });
                        if collected.is_none() {
                            current.rows = Vec::new();
                            results.clear();
                        }
                    }
                    Message::CommandComplete { tag } => {
                        current.tag = String::from_utf8_lossy(tag).into_owned();
                        results.push(std::mem::take(&mut current));
                    }
                    Message::EmptyQueryResponse => results.push(std::mem::take(&mut current)),
                    Message::ErrorResponse(fields) => {
                        // The first error is the one that matters; later ones are drained.
                        server_error.get_or_insert_with(|| fields.to_db_error());
                    }
                    Message::ReadyForQuery(_) => {
                        return match (server_error, collected) {
                            (Some(db), _) => Err(Error::server(db)),
                            (None, None) => Err(result_too_large()),
                            (None, Some(_)) => Ok(results),
                        };
                    }
                    Message::CopyInResponse(_) => {
                        // A simple query cannot feed COPY FROM STDIN: refuse it so the
                        // server does not wait forever.
                        frontend::copy_fail(
                            self.session.send_buf().buf_mut(),
                            "COPY FROM STDIN is not supported by simple_query; use copy_in",
                        );
                        self.flush_send_buf().await?;
                    }
                    _ => {}
                }
            }
            if let Err(e) = self.fill(None).await {
                // A FATAL error (the backend was terminated, say) is followed by
                // EOF: the server's reason says more than "closed".
                return Err(match server_error {
                    Some(db) => {
                        self.session.close();
                        Error::server(db)
                    }
                    None => e,
                });
            }
        }
    }

    /// A full round trip (an empty query) proving the server answers.
    ///
    /// # Errors
    /// Kind `Closed` "Connection is not established" without a transport (the
    /// state becomes `Closed`); otherwise as [`Connection::simple_query`].
    pub async fn ping(&mut self) -> Result<(), Error> {
        if self.transport.is_none() {
            self.session.close();
            return Err(Error::closed("Connection is not established"));
        }
        self.simple_query("").await.map(drop)
    }

    /// Whether there is a transport, the connection is not `Closed` (nor
    /// abandoned part-way through an operation), and its socket has not seen
    /// FIN/RST. No round trip.
    pub fn is_connected(&self) -> bool {
        self.transport.is_some() && self.state() != State::Closed && !self.socket_has_fin()
    }

    /// Whether the kernel has seen the peer close or reset (one non-blocking
    /// peek). False when data is pending, when idle, on ENOMEM/ENOBUFS, or
    /// without a transport.
    pub fn socket_has_fin(&self) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|t| t.probe().peer_gone())
    }

    /// Whether bytes are waiting in the kernel to be read (fails open: false on
    /// any other outcome).
    pub fn socket_has_pending_data(&self) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|t| t.probe().has_data())
    }

    /// Shuts the transport down and drops it, without Terminate. Idempotent; the
    /// session becomes `Closed`.
    pub async fn close_transport(&mut self) {
        self.session.close();
        if let Some(mut transport) = self.transport.take() {
            let _ = transport.shutdown().await;
        }
    }

    /// Closes politely: sends Terminate when the connection is usable and the
    /// peer looks alive, then closes the transport. Never fails.
    pub async fn close(&mut self) {
        if self.state() != State::Closed && self.is_connected() {
            let mut buf = bytes::BytesMut::new();
            frontend::terminate(&mut buf);
            if let Some(t) = self.transport.as_mut() {
                // Best effort, bounded: the server may already be gone.
                let _ = tokio::time::timeout(TERMINATE_WAIT, async {
                    t.write_all(&buf).await?;
                    t.flush().await
                })
                .await;
            }
        }
        self.close_transport().await;
    }

    pub(crate) fn check_not_abandoned(&mut self) -> Result<(), Error> {
        if self.in_flight {
            self.session.close();
            self.transport = None;
            return Err(Error::closed(
                "connection is closed: an earlier operation was cancelled part-way through an exchange",
            ));
        }
        Ok(())
    }

    pub(crate) fn begin(&mut self) -> Result<(), Error> {
        self.check_not_abandoned()?;
        if self.session.is_closed() || self.transport.is_none() {
            return Err(Error::closed("connection is closed"));
        }
        self.in_flight = true;
        Ok(())
    }

    /// Ends an operation: clears the in-flight mark and closes the connection
    /// unless the error leaves the stream in sync (a server error drained to
    /// ReadyForQuery, bad input, a usage or callback error).
    pub(crate) fn end<R>(&mut self, result: Result<R, Error>) -> Result<R, Error> {
        use crate::ErrorKind as K;
        self.in_flight = false;
        if let Err(e) = &result {
            let in_sync = matches!(
                e.kind(),
                K::Server | K::InvalidInput | K::State | K::Usage | K::Callback
            ) && self.session.state() == State::Ready;
            if !in_sync {
                // The stream cannot be trusted again: release the socket now
                // rather than when the caller drops the connection.
                self.session.close();
                self.transport = None;
            }
        }
        // Idle from here: an idle connection never reads in bulk, and holds
        // no receive buffer.
        if let Some(t) = self.transport.as_mut() {
            if let Err(e) = self.bulk.release(t) {
                return Err(self.bulk_switch_failed(e));
            }
        }
        self.session.release_idle_buffers();
        result
    }
}

/// Appends `row` as text to `rows` and returns the heap the rows now take,
/// `used` before; `None` if that overflows. Counted as the strings as
/// converted (lossy UTF-8 can triple invalid bytes) plus each row's and
/// column's bookkeeping, so an empty column or row is not free.
fn collect_row(
    rows: &mut Vec<Vec<Option<String>>>,
    row: DataRow<&[u8]>,
    used: usize,
) -> Option<usize> {
    let columns: Vec<Option<String>> = row
        .columns()
        .map(|c| c.map(|v| String::from_utf8_lossy(v).into_owned()))
        .collect();
    let text: usize = columns.iter().flatten().map(String::len).sum();
    let bookkeeping =
        size_of::<Vec<Option<String>>>() + columns.len() * size_of::<Option<String>>();
    rows.push(columns);
    used.checked_add(text)?.checked_add(bookkeeping)
}

fn result_too_large() -> Error {
    Error::usage(format!(
        "simple_query result over {} MiB (MAX_SIMPLE_QUERY_RESULT_BYTES): its rows were dropped; \
         read a result this large as a stream (copy_out, or recv_message) instead",
        MAX_SIMPLE_QUERY_RESULT_BYTES >> 20
    ))
}
