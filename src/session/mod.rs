//! The sans-IO connection core: state, server parameters, transaction status,
//! backend key, and `next_message()` with internal dispatch of notices,
//! notifications, ParameterStatus and NegotiateProtocolVersion.
//!
//! Depends on `protocol`, `buffer`, `error` and `tracing`; never on tokio,
//! sockets, a clock or randomness.
//!
//! # Calling order
//! A driver (the async `Connection`, a simulation, a test) does this:
//! 1. Start an operation with [`Session::startup`], [`Session::query`] or
//!    [`Session::begin_request`]; they encode into [`Session::send_buf`] and move
//!    the state only if encoding succeeded. Write the send buffer out.
//! 2. Call [`Session::next_message`] (or `_with` / `_owned`) until it returns
//!    `Ok(None)`: the buffer then holds no complete message.
//! 3. Read: [`Session::prepare_read`] returns the buffer to append to (its room
//!    grows with the bytes that arrive, never with a declared length); after the
//!    read call [`Session::commit_read`] with the byte count. EOF or a read error
//!    goes to [`Session::close`]. Then back to 2.
//!
//! Any `Err` from a method here that is about the byte stream has already
//! moved the session to [`State::Closed`].

mod dispatch;
mod require_auth;
mod rows;
mod startup;
mod state;
mod version;

use std::collections::BTreeMap;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use crate::buffer::{RecvBuf, RecvBufConfig, SendBuf};
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
use crate::protocol::backend::{
    self, COPY_DATA_TAG, DATA_ROW_TAG, NEGOTIATE_PROTOCOL_VERSION_TAG, NOTICE_RESPONSE_TAG,
    NOTIFICATION_RESPONSE_TAG, PARAMETER_STATUS_TAG,
};
use crate::protocol::limits::{DEFAULT_MAX_MESSAGE_LEN, DEFAULT_NOTIFICATION_CAPACITY, HEADER_LEN};
use crate::protocol::{
    Authentication, DataRow, DbError, EncodeError, Header, Message, ProtocolError,
    TransactionStatus, frontend,
};

pub use crate::protocol::frontend::ProtocolVersion;
pub use dispatch::{Notification, NotificationDelivery, NotificationQueue};
pub use require_auth::{AuthRequirement, RequireAuth};
pub use rows::{RowBuffer, RowCounter, RowSink};
pub use startup::{
    AuthMethod, ChannelBinding, StartupAuth, StartupSettings, StartupStep, TlsFacts,
};
pub use state::{Event, InvalidTransition, State};

use dispatch::{Dispatch, NoticeSink};

/// Settings of a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Largest backend message accepted, header included (default 1 GiB).
    pub max_message_len: usize,
    /// Receive buffer sizing.
    pub recv: RecvBufConfig,
    /// Notification queue capacity (default [`DEFAULT_NOTIFICATION_CAPACITY`]:
    /// past it the oldest is dropped and the overflow reported); 0 = unbounded,
    /// for a caller that would rather hold every notification in memory.
    pub notification_capacity: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            recv: RecvBufConfig::default(),
            notification_capacity: DEFAULT_NOTIFICATION_CAPACITY,
        }
    }
}

/// The key a CancelRequest needs, from BackendKeyData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKey {
    /// The backend's process id.
    pub process_id: i32,
    /// The secret key (4 bytes in protocol 3.0).
    pub secret_key: Vec<u8>,
}

/// What NegotiateProtocolVersion told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolNegotiation {
    /// The newest protocol version the server supports for the major version
    /// asked for, as sent: PostgreSQL sends the whole version (`0x0003_0000`
    /// for 3.0), though the protocol documentation calls the field the minor.
    pub newest_minor: i32,
    /// `_pq_.` options the server did not recognise.
    pub unsupported_options: Vec<String>,
}

/// The sans-IO core of one connection. See the module docs for the calling order.
#[derive(Debug)]
pub struct Session {
    recv: RecvBuf,
    send: SendBuf,
    core: Core,
}

/// Everything but the buffers, so a message borrowed from `recv` can coexist
/// with updates to the rest.
#[derive(Debug)]
struct Core {
    state: State,
    max_message_len: usize,
    params: BTreeMap<String, String>,
    transaction_status: TransactionStatus,
    backend_key: Option<BackendKey>,
    negotiation: Option<ProtocolNegotiation>,
    versions: version::Versions,
    dispatch: Dispatch,
    /// ReadyForQuery messages processed: tells one response from the next.
    ready_count: u64,
}

impl Session {
    /// A session in [`State::Connecting`].
    pub fn new(config: SessionConfig) -> Self {
        Self {
            recv: RecvBuf::new(config.recv),
            send: SendBuf::new(),
            core: Core {
                state: State::Connecting,
                max_message_len: config.max_message_len,
                params: BTreeMap::new(),
                transaction_status: TransactionStatus::Idle,
                backend_key: None,
                negotiation: None,
                versions: version::Versions::default(),
                ready_count: 0,
                dispatch: Dispatch {
                    queue: NotificationQueue::new(config.notification_capacity),
                    ..Dispatch::default()
                },
            },
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.core.state
    }

    /// How many ReadyForQuery messages the session has processed; a change
    /// means a response ended.
    pub(crate) fn ready_count(&self) -> u64 {
        self.core.ready_count
    }

    /// Whether the session is [`State::Closed`].
    pub fn is_closed(&self) -> bool {
        self.core.state == State::Closed
    }

    /// Transaction status from the last ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.core.transaction_status
    }

    /// Every run-time parameter the server reported (ParameterStatus), latest value.
    pub fn server_params(&self) -> &BTreeMap<String, String> {
        &self.core.params
    }

    /// One server parameter, e.g. `server_version`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.core.params.get(name).map(String::as_str)
    }

    /// The cancel key, once BackendKeyData has arrived.
    pub fn backend_key(&self) -> Option<&BackendKey> {
        self.core.backend_key.as_ref()
    }

    /// The protocol version in use: what the StartupMessage asked for, or the
    /// older one the server's NegotiateProtocolVersion named.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.core.versions.current
    }

    /// What NegotiateProtocolVersion reported, if the server sent one.
    pub fn protocol_negotiation(&self) -> Option<&ProtocolNegotiation> {
        self.core.negotiation.as_ref()
    }

    /// The receive buffer (read-only).
    pub fn recv_buf(&self) -> &RecvBuf {
        &self.recv
    }

    /// The send buffer: what operations encoded and the driver must write.
    pub fn send_buf(&mut self) -> &mut SendBuf {
        &mut self.send
    }

    /// The largest message accepted, header included.
    pub fn max_message_len(&self) -> usize {
        self.core.max_message_len
    }

    /// Moves to [`State::Closed`] for good and drops unsent bytes. Idempotent.
    pub fn close(&mut self) {
        self.core.state = State::Closed;
        self.send.clear();
    }

    /// Encodes a StartupMessage with `params` and moves to `Authenticating`.
    ///
    /// # Errors
    /// A state error unless `Connecting`; an invalid-input error for a bad
    /// parameter (state and send buffer unchanged).
    pub fn startup(&mut self, params: &[(&str, &str)]) -> Result<(), Error> {
        self.startup_with_protocol(ProtocolVersion::V3_0, ProtocolVersion::V3_0, params)
    }

    /// As [`Session::startup`], asking for protocol `max` and accepting a server
    /// that answers with any version from `min` up (libpq's
    /// `min_protocol_version` / `max_protocol_version`). The server's answer is
    /// checked as it arrives: [`Session::next_message`] fails with kind
    /// `Connect` for a version below `min`, kind `Protocol` for an answer no
    /// correct server gives.
    ///
    /// # Errors
    /// As [`Session::startup`]; a config error if `min` is above `max`.
    pub fn startup_with_protocol(
        &mut self,
        min: ProtocolVersion,
        max: ProtocolVersion,
        params: &[(&str, &str)],
    ) -> Result<(), Error> {
        if min > max {
            return Err(Error::config(
                "\"min_protocol_version\" is greater than \"max_protocol_version\"",
            ));
        }
        self.transition_with(State::Connecting, Event::StartupSent, |buf| {
            frontend::startup_with_version(buf, max, params)
        })?;
        self.core.versions = version::Versions {
            min,
            current: max,
            requested_options: params
                .iter()
                .filter(|(name, _)| name.starts_with("_pq_."))
                .map(|(name, _)| (*name).to_owned())
                .collect(),
        };
        Ok(())
    }

    /// Encodes a simple Query and moves to `Busy`.
    ///
    /// # Errors
    /// A closed error if `Closed`, a state error if not `Ready`, an invalid-input
    /// error for SQL with a NUL (state and send buffer unchanged: the next query works).
    pub fn query(&mut self, sql: &str) -> Result<(), Error> {
        self.begin_request(|buf| frontend::query(buf, sql))
    }

    /// Starts an operation: checks `Ready`, runs `encode` on the send buffer, and
    /// only if it succeeds moves to `Busy`.
    ///
    /// # Errors
    /// As [`Session::query`]; `encode`'s error comes back as invalid input, with
    /// whatever it appended removed.
    pub fn begin_request(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<(), Error> {
        self.transition_with(State::Ready, Event::RequestSent, encode)
    }

    /// Checks the state is ready for a new operation.
    ///
    /// # Errors
    /// Kind `Closed` ("connection is closed") on a closed session; kind `State`
    /// in any other state but `Ready`.
    pub fn check_ready(&self) -> Result<(), Error> {
        self.core.expect_state(State::Ready)
    }

    fn transition_with(
        &mut self,
        from: State,
        event: Event,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<(), Error> {
        self.core.expect_state(from)?;
        let buf = self.send.buf_mut();
        let mark = buf.len();
        if let Err(e) = encode(buf) {
            buf.truncate(mark);
            return Err(Error::invalid_input(e));
        }
        self.core.apply(event)
    }

    /// Returns the buffer to read into, with room for the next read. A buffered
    /// header is checked against the size cap first; under the cap, its length
    /// still reserves nothing by itself: the room grows with the bytes that
    /// arrive (at most doubling what is buffered, see [`RecvBuf::prepare_read`]),
    /// so memory follows what the server sent, not what it claimed. Append at
    /// most its spare capacity, then call [`Session::commit_read`].
    ///
    /// # Errors
    /// Kind `Closed` on a closed session (do not read); kind `Protocol` (and the
    /// session closes) if the buffered header is invalid or over the cap.
    #[inline]
    pub fn prepare_read(&mut self) -> Result<&mut BytesMut, Error> {
        self.core.check_open()?;
        let missing = match backend::parse_header(self.recv.unread(), self.core.max_message_len) {
            Ok(Some(h)) => h.len.saturating_sub(self.recv.len()),
            Ok(None) => 0,
            Err(e) => return Err(self.core.protocol_failure(e)),
        };
        Ok(self.recv.prepare_read(missing))
    }

    /// Records that a read appended `n` bytes (adapts the read size).
    #[inline]
    pub fn commit_read(&mut self, n: usize) {
        self.recv.commit_read(n);
    }

    /// Appends `bytes` as if read from the server (tests, simulations, callers
    /// doing their own I/O).
    ///
    /// # Errors
    /// As [`Session::prepare_read`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.prepare_read()?.extend_from_slice(bytes);
        self.commit_read(bytes.len());
        Ok(())
    }

    /// The next message the caller must see, borrowed from the receive buffer;
    /// `Ok(None)` when no complete message is buffered (the partial one stays,
    /// the position at its start).
    ///
    /// Notices, notifications, ParameterStatus and NegotiateProtocolVersion are
    /// consumed and dispatched, never returned. DataRows are returned.
    ///
    /// # Errors
    /// Kind `Closed` on a closed session. Kind `Protocol` for a malformed or
    /// unexpected message; kind `Auth` for an authentication method we do not
    /// support. Both close the session; the position is already past the bad
    /// message, so earlier messages are never parsed again.
    #[inline]
    pub fn next_message(&mut self) -> Result<Option<Message<&[u8]>>, Error> {
        self.next_borrowed(None)
    }

    /// Like [`Session::next_message`], but DataRows go to `rows` instead of being
    /// returned (count them with [`RowCounter`], keep them with [`RowBuffer`]).
    ///
    /// # Errors
    /// As [`Session::next_message`]; a row the sink refuses is a protocol error.
    #[inline]
    pub fn next_message_with(
        &mut self,
        rows: &mut dyn RowSink,
    ) -> Result<Option<Message<&[u8]>>, Error> {
        self.next_borrowed(Some(rows))
    }

    /// The COPY OUT fast path: if the next buffered message is a complete
    /// CopyData, its payload (sharing the receive buffer, no copy); `Ok(None)`
    /// for anything else or an incomplete message — then call
    /// [`Session::next_message_owned`]. Skips building a [`Message`].
    ///
    /// # Errors
    /// Kind `Closed` on a closed session; kind `Protocol` for a bad header (closes).
    #[inline]
    pub fn next_copy_data(&mut self) -> Result<Option<Bytes>, Error> {
        self.core.check_open()?;
        match backend::parse_header(self.recv.unread(), self.core.max_message_len) {
            Ok(Some(h)) if h.tag == COPY_DATA_TAG && h.len <= self.recv.len() => {
                let mut payload = self.recv.take_bytes(h.len);
                bytes::Buf::advance(&mut payload, HEADER_LEN);
                Ok(Some(payload))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(self.core.protocol_failure(e)),
        }
    }

    /// Every complete CopyData at the front of the receive buffer, joined into
    /// one [`Bytes`]: the payloads are moved together in place, over the
    /// five-byte headers between them, so a whole read's worth of rows costs
    /// one hand-over instead of one per message. `None` when the front is not a
    /// complete CopyData. Message boundaries are not kept (each chunk holds
    /// whole messages); use [`Session::next_copy_data`] to keep them.
    ///
    /// # Errors
    /// Kind `Closed` on a closed session; kind `Protocol` for a bad header at
    /// the front (closes). A bad header after some CopyData ends the run; the
    /// next call reports it.
    pub fn next_copy_data_joined(&mut self) -> Result<Option<Bytes>, Error> {
        self.core.check_open()?;
        let max = self.core.max_message_len;
        let unread = self.recv.unread_mut();
        // `read`: where the next frame starts; `joined`: payload bytes gathered
        // so far, kept from offset HEADER_LEN on (the first payload's place).
        let (mut read, mut joined) = (0, 0);
        loop {
            let rest = unread.get(read..).unwrap_or_default();
            match backend::parse_header(rest, max) {
                Ok(Some(h))
                    if (h.tag == COPY_DATA_TAG || mutant(Mutant::JoinedPastNonCopyData))
                        && h.len <= rest.len() =>
                {
                    let body = h.len - HEADER_LEN;
                    if joined != read {
                        unread.copy_within(read + HEADER_LEN..read + h.len, HEADER_LEN + joined);
                    }
                    joined += body;
                    read += h.len;
                }
                Err(e) if read == 0 => return Err(self.core.protocol_failure(e)),
                _ => break,
            }
        }
        if read == 0 {
            return Ok(None);
        }
        let mut chunk = self.recv.take_bytes(read);
        bytes::Buf::advance(&mut chunk, HEADER_LEN);
        chunk.truncate(joined);
        Ok(Some(chunk))
    }

    /// Like [`Session::next_message`], but the message owns its payloads: `Bytes`
    /// that share the receive buffer's allocation (no copy).
    ///
    /// # Errors
    /// As [`Session::next_message`].
    #[inline]
    pub fn next_message_owned(&mut self) -> Result<Option<Message<Bytes>>, Error> {
        let Some(header) = self.skip_internal(None)? else {
            return Ok(None);
        };
        let mut body = self.recv.take_bytes(header.len);
        bytes::Buf::advance(&mut body, HEADER_LEN);
        // The bulk messages move the frame in whole: one reference count per
        // message instead of one per field.
        let parsed = match header.tag {
            COPY_DATA_TAG => Ok(Message::CopyData(body)),
            DATA_ROW_TAG => DataRow::<()>::parse_owned(body).map(Message::DataRow),
            tag => backend::parse_body(tag, &body, |s| body.slice_ref(s)),
        };
        // The same tail as `next_borrowed`, written out: a shared helper made
        // this path 13-25 % slower (one more move of the 72-byte message).
        let msg = match parsed {
            Ok(msg) => msg,
            Err(e) => return Err(self.core.protocol_failure(e)),
        };
        self.core.observe(&msg)?;
        Ok(Some(msg))
    }

    #[inline]
    fn next_borrowed(
        &mut self,
        rows: Option<&mut dyn RowSink>,
    ) -> Result<Option<Message<&[u8]>>, Error> {
        let Some(header) = self.skip_internal(rows)? else {
            return Ok(None);
        };
        let body = self
            .recv
            .take(header.len)
            .get(HEADER_LEN..)
            .unwrap_or_default();
        let msg = match backend::parse_body(header.tag, body, |s| s) {
            Ok(msg) => msg,
            Err(e) => return Err(self.core.protocol_failure(e)),
        };
        self.core.observe(&msg)?;
        Ok(Some(msg))
    }

    /// Consumes every buffered message the caller does not see and returns the
    /// header of the next one it does, left unconsumed; `None` if incomplete.
    #[inline]
    fn skip_internal(
        &mut self,
        mut rows: Option<&mut dyn RowSink>,
    ) -> Result<Option<Header>, Error> {
        self.core.check_open()?;
        loop {
            let header = match backend::parse_header(self.recv.unread(), self.core.max_message_len)
            {
                Ok(Some(h)) if h.len <= self.recv.len() => h,
                Ok(_) => return Ok(None),
                Err(e) => return Err(self.core.protocol_failure(e)),
            };
            let to_sink = header.tag == DATA_ROW_TAG && rows.is_some();
            let internal = matches!(
                header.tag,
                NOTICE_RESPONSE_TAG
                    | NOTIFICATION_RESPONSE_TAG
                    | PARAMETER_STATUS_TAG
                    | NEGOTIATE_PROTOCOL_VERSION_TAG
            );
            if !to_sink && !internal {
                return Ok(Some(header));
            }
            if header.tag == NOTIFICATION_RESPONSE_TAG && mutant(Mutant::NotificationNoAdvance) {
                let frame = self
                    .recv
                    .unread()
                    .get(HEADER_LEN..header.len)
                    .unwrap_or_default();
                if let Ok(msg) = backend::parse_body(header.tag, frame, |s| s) {
                    self.core.absorb(&msg)?;
                }
                return Ok(None);
            }
            // Advance first: whatever happens to this message, it is never parsed twice.
            let body = self
                .recv
                .take(header.len)
                .get(HEADER_LEN..)
                .unwrap_or_default();
            let parsed = match rows.as_deref_mut() {
                Some(sink) if to_sink => DataRow::parse(body, |s| s).and_then(|row| sink.row(row)),
                _ => match backend::parse_body(header.tag, body, |s| s) {
                    Ok(msg) => {
                        self.core.absorb(&msg)?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = parsed {
                return Err(self.core.protocol_failure(e));
            }
        }
    }

    /// Pulls the next queued notification (or the overflow report, once).
    ///
    /// Pulling takes `&mut self`: two pullers at once cannot be written.
    ///
    /// ```compile_fail,E0499
    /// # let mut session = pg_transport::Session::new(Default::default());
    /// // A waiting puller holds the session mutably...
    /// let waiting = std::future::poll_fn(|cx| session.poll_notification(cx));
    /// // ...so a second puller does not compile: `session` is already borrowed.
    /// let second = session.pop_notification();
    /// drop(waiting);
    /// ```
    pub fn pop_notification(&mut self) -> Option<Result<Notification, Error>> {
        self.core.dispatch.queue.pop()
    }

    /// Polls the notification queue, registering `cx` to be woken by the next push.
    pub fn poll_notification(&mut self, cx: &mut Context<'_>) -> Poll<Result<Notification, Error>> {
        self.core.dispatch.queue.poll_pop(cx)
    }

    /// The notification queue (read-only).
    pub fn notifications(&self) -> &NotificationQueue {
        &self.core.dispatch.queue
    }

    /// Chooses how notifications are delivered (queue, callback, or both).
    pub fn set_notification_delivery(&mut self, delivery: NotificationDelivery) {
        self.core.dispatch.delivery = delivery;
    }

    /// Sends every notice to `callback` instead of `tracing`.
    pub fn set_notice_callback(&mut self, callback: impl FnMut(&DbError) + Send + 'static) {
        self.core.dispatch.notice = Some(NoticeSink(Box::new(callback)));
    }

    /// Restores the default notice sink: `tracing`, at WARN for warnings and at
    /// INFO (DEBUG for debug notices) otherwise.
    pub fn clear_notice_callback(&mut self) {
        self.core.dispatch.notice = None;
    }
}

impl Core {
    #[inline]
    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(Error::closed("connection is closed")),
            _ => Ok(()),
        }
    }

    fn expect_state(&self, want: State) -> Result<(), Error> {
        self.check_open()?;
        if self.state != want {
            return Err(Error::state(format!(
                "connection is {:?}, not {want:?}: finish the operation in progress first",
                self.state
            )));
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) -> Result<(), Error> {
        match self.state.on(event) {
            Ok(next) => {
                self.state = next;
                Ok(())
            }
            Err(t) => {
                self.state = State::Closed;
                Err(Error::protocol_violation(format!(
                    "unexpected message from the server: {t}"
                )))
            }
        }
    }

    /// Closes the session and builds the error for a broken stream.
    fn protocol_failure(&mut self, e: ProtocolError) -> Error {
        if !mutant(Mutant::ReuseAfterProtocolError) {
            self.state = State::Closed;
        }
        Error::protocol(e)
    }

    /// Handles a message that is consumed internally.
    ///
    /// # Errors
    /// A NegotiateProtocolVersion the session cannot accept (the session is then
    /// closed).
    fn absorb<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> Result<(), Error> {
        match msg {
            Message::NoticeResponse(fields) => self.dispatch.notice(&fields.to_db_error()),
            Message::NotificationResponse {
                process_id,
                channel,
                payload,
            } => {
                self.dispatch.notification(Notification {
                    process_id: *process_id,
                    channel: lossy(channel),
                    payload: lossy(payload),
                });
            }
            Message::ParameterStatus { name, value } => {
                self.params.insert(lossy(name), lossy(value));
            }
            Message::NegotiateProtocolVersion(n) => {
                let theirs = ProtocolNegotiation {
                    newest_minor: n.newest_minor(),
                    unsupported_options: n
                        .options()
                        .map(|o| String::from_utf8_lossy(o).into_owned())
                        .collect(),
                };
                // The version is settled at the first ReadyForQuery; after it
                // the message can change nothing and is only recorded.
                if self.state == State::Authenticating {
                    if let Err(e) = self.versions.negotiate(self.negotiation.as_ref(), &theirs) {
                        self.state = State::Closed;
                        return Err(e);
                    }
                }
                self.negotiation = Some(theirs);
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies what a returned message means for the session's state.
    #[inline]
    fn observe<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> Result<(), Error> {
        match msg {
            Message::ReadyForQuery(status) => {
                self.transaction_status = *status;
                self.ready_count += 1;
                self.apply(Event::ReadyForQuery)
            }
            Message::CopyInResponse(_) => self.apply(Event::CopyInResponse),
            Message::CopyOutResponse(_) => self.apply(Event::CopyOutResponse),
            Message::CopyBothResponse(_) => {
                self.state = State::Closed;
                Err(Error::unsupported(
                    "CopyBothResponse: replication streams are not supported",
                ))
            }
            Message::CopyDone | Message::CommandComplete { .. } | Message::ErrorResponse(_)
                if matches!(self.state, State::CopyIn | State::CopyOut) =>
            {
                self.apply(Event::CopyEnded)
            }
            Message::BackendKeyData {
                process_id,
                secret_key,
            } => {
                if self.state == State::Authenticating {
                    if let Err(e) = self.versions.check_cancel_key(secret_key.as_ref().len()) {
                        self.state = State::Closed;
                        return Err(e);
                    }
                }
                self.backend_key = Some(BackendKey {
                    process_id: *process_id,
                    secret_key: secret_key.as_ref().to_vec(),
                });
                Ok(())
            }
            Message::Authentication(auth) => match auth {
                Authentication::KerberosV5 => Err(self.unsupported_auth("Kerberos V5")),
                Authentication::Gss | Authentication::GssContinue(_) => {
                    Err(self.unsupported_auth("GSSAPI"))
                }
                Authentication::Sspi => Err(self.unsupported_auth("SSPI")),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn unsupported_auth(&mut self, method: &str) -> Error {
        self.state = State::Closed;
        Error::auth(format!(
            "unsupported authentication method {method} requested by the server; pg-transport supports \
             trust, password, md5 and SCRAM-SHA-256: change the pg_hba.conf entry for this user"
        ))
    }
}

fn lossy<B: AsRef<[u8]>>(b: &B) -> String {
    String::from_utf8_lossy(b.as_ref()).into_owned()
}
