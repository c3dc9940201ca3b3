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

pub mod copy;
mod dispatch;
mod effects;
pub mod pipeline;
pub mod query;
mod receive;
mod require_auth;
mod rows;
mod startup;
mod state;
mod version;

use std::collections::BTreeMap;
use std::task::{Context, Poll};

use bytes::BytesMut;

use crate::buffer::{RecvBuf, RecvBufConfig, SendBuf};
use crate::error::Error;
use crate::protocol::limits::{DEFAULT_MAX_MESSAGE_LEN, DEFAULT_NOTIFICATION_CAPACITY};
use crate::protocol::{DbError, EncodeError, TransactionStatus, frontend};

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
///
/// Start from [`SessionConfig::default`] and chain the setters, or assign the
/// fields (the struct is `#[non_exhaustive]`, so other crates cannot build it
/// as a literal):
///
/// ```
/// # use pg_transport::{Session, SessionConfig};
/// let session = Session::new(
///     SessionConfig::default()
///         .max_message_len(16 << 20)
///         .notification_capacity(0),
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

impl SessionConfig {
    /// Refuses backend messages over `bytes`, header included (default
    /// 1 GiB): a longer header is a `Protocol` error that closes the session,
    /// before anything is reserved for the message.
    #[must_use]
    pub fn max_message_len(mut self, bytes: usize) -> Self {
        self.max_message_len = bytes;
        self
    }

    /// Sizes the receive buffer with `recv`.
    #[must_use]
    pub fn recv(mut self, recv: RecvBufConfig) -> Self {
        self.recv = recv;
        self
    }

    /// Holds at most `capacity` notifications (0 = unbounded); past it the
    /// oldest is dropped and the next pull reports the overflow (kind
    /// `NotificationOverflow`) once.
    #[must_use]
    pub fn notification_capacity(mut self, capacity: usize) -> Self {
        self.notification_capacity = capacity;
        self
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

    /// Gives back buffer memory an idle session does not need: the receive
    /// buffer's allocation once every byte has been consumed
    /// ([`RecvBuf::release`]), and a written-out send buffer grown past
    /// [`SEND_BUF_IDLE_CAPACITY_MAX`](crate::buffer::SEND_BUF_IDLE_CAPACITY_MAX).
    /// Does nothing unless the session is `Ready` with nothing left to send.
    /// [`Connection`](crate::Connection) calls it when an operation ends and
    /// after startup, so an idle connection holds almost no buffer memory; the
    /// next response allocates the receive buffer again (one allocation per
    /// response, none per row).
    pub fn release_idle_buffers(&mut self) {
        if self.core.state == State::Ready && self.send.is_empty() {
            self.recv.release();
            self.send.release();
        }
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

    /// The notification queue, read-only: how many notifications wait
    /// ([`NotificationQueue::len`]), how many were dropped. Pull from it with
    /// [`Session::pop_notification`]; on a connection,
    /// [`Connection::notifications`](crate::Connection::notifications) is the
    /// `Stream` that also reads from the socket. Never fails.
    pub fn notification_queue(&self) -> &NotificationQueue {
        &self.core.dispatch.queue
    }

    /// The former name of [`Session::notification_queue`], kept for one
    /// release.
    #[deprecated(
        note = "renamed to `notification_queue`; `Connection::notifications` is the notification `Stream`"
    )]
    pub fn notifications(&self) -> &NotificationQueue {
        self.notification_queue()
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

fn lossy<B: AsRef<[u8]>>(b: &B) -> String {
    String::from_utf8_lossy(b.as_ref()).into_owned()
}
