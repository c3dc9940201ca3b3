//! The one public error type: opaque, with a [`kind`](Error::kind) to match on.
//!
//! `Display` prints one level, as the Rust API guidelines ask: what failed, in this
//! crate's words; the cause (an I/O error, the parser's finding, a callback's error) is
//! the [`source`](std::error::Error::source). [`Error::report`] prints the whole chain.
//!
//! Depends on std, thiserror and the protocol's error types only.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::protocol::{DbError, EncodeError, ProtocolError, SqlState};

/// What went wrong, in terms a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server's byte stream broke the protocol; the connection is closed and
    /// must not be reused. Reconnect.
    Protocol,
    /// The connection is closed (by us, by the server, or after an earlier
    /// failure). Reconnect.
    Closed,
    /// An I/O error on the transport; the connection is closed.
    Io,
    /// An operation timed out. What state it leaves is documented per operation.
    Timeout,
    /// The server reported an error ([`Error::as_db_error`] has its fields).
    Server,
    /// The operation is not allowed in the connection's current state (another
    /// operation is in progress). Not a connection failure.
    State,
    /// TLS negotiation or the TLS layer failed.
    Tls,
    /// Authentication failed or needs a method we do not support.
    Auth,
    /// A configuration value is invalid or missing.
    Config,
    /// Notifications were dropped because the bounded queue was full.
    NotificationOverflow,
    /// Caller input cannot be sent (a NUL in a string, a size over the protocol's
    /// limits). Nothing was sent and the connection is unchanged.
    InvalidInput,
    /// The server asked for something this library does not implement.
    Unsupported,
    /// The call does not fit the statement: `copy_out` given `COPY … FROM
    /// STDIN`, a COPY call given a query that is not a COPY, a `simple_query`
    /// whose rows exceed `MAX_SIMPLE_QUERY_RESULT_BYTES`. The connection is
    /// left `Ready`.
    Usage,
    /// An application callback (a COPY sink or source) failed; its error is the
    /// [`source`](std::error::Error::source). The connection is left `Ready`
    /// when the transport is healthy.
    Callback,
    /// No host of the list accepted the connection; [`Error::host_errors`] has
    /// each host's reason. Also: a server refused by `target_session_attrs`.
    Connect,
}

/// The error type of every fallible operation in this crate.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Box<dyn StdError + Send + Sync>>,
    db: Option<DbError>,
    dropped: u64,
    hosts: Vec<(String, Error)>,
    later: Option<Box<Error>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
            db: None,
            dropped: 0,
            hosts: Vec::new(),
            later: None,
        }))
    }

    fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The server's error fields, for [`ErrorKind::Server`].
    pub fn as_db_error(&self) -> Option<&DbError> {
        self.0.db.as_ref()
    }

    /// The SQLSTATE the server sent, when this error is the server's
    /// ([`ErrorKind::Server`], or [`ErrorKind::Auth`] for class 28); `None` for an error
    /// of this side, and for a server error without a code field.
    ///
    /// ```
    /// # fn check(e: &pg_transport::Error) -> bool {
    /// use pg_transport::SqlState;
    /// e.code() == Some(SqlState::UNIQUE_VIOLATION)
    /// # }
    /// ```
    pub fn code(&self) -> Option<SqlState> {
        let code = self.0.db.as_ref()?.code;
        (code != SqlState::default()).then_some(code)
    }

    /// This error and its causes on one line, `what failed: cause: its cause…` (each
    /// level's `Display` joined by `": "`): the form to log or show a person, where
    /// `Display` alone gives this level only. `format!("{e:#}")` prints the same. A
    /// [`later`](Error::later) failure is in the chain only when it is the source (the
    /// error has no cause of its own).
    pub fn report(&self) -> impl fmt::Display + '_ {
        Report(self)
    }

    /// The wire-level cause, for [`ErrorKind::Protocol`] errors found by the parser.
    pub fn as_protocol_error(&self) -> Option<&ProtocolError> {
        self.0.source.as_ref()?.downcast_ref()
    }

    /// The encoding cause, for [`ErrorKind::InvalidInput`].
    pub fn as_encode_error(&self) -> Option<&EncodeError> {
        self.0.source.as_ref()?.downcast_ref()
    }

    /// The I/O cause, for [`ErrorKind::Io`] (and closed errors caused by I/O).
    pub fn as_io_error(&self) -> Option<&io::Error> {
        self.0.source.as_ref()?.downcast_ref()
    }

    /// For [`ErrorKind::Connect`]: each host tried (as `host:port` or socket
    /// path) with the error it gave, in the order tried.
    pub fn host_errors(&self) -> &[(String, Self)] {
        &self.0.hosts
    }

    /// A failure that came after this one in the same operation (the
    /// transport breaking while the rest of a response was drained after the
    /// server's error or a callback's, say). This error is the first cause,
    /// the one reported; the connection's state says what the later failure
    /// left (usually `Closed`). When this error has no cause of its own, the
    /// later failure is also its [`source`](std::error::Error::source).
    pub fn later(&self) -> Option<&Self> {
        self.0.later.as_deref()
    }

    /// Attaches `later` (see [`Error::later`]); the first one attached stays.
    pub(crate) fn then(mut self, later: Self) -> Self {
        if self.0.later.is_none() {
            self.0.later = Some(Box::new(later));
        }
        self
    }

    /// For [`ErrorKind::NotificationOverflow`]: how many notifications were dropped.
    pub fn notifications_dropped(&self) -> Option<u64> {
        (self.0.kind == ErrorKind::NotificationOverflow).then_some(self.0.dropped)
    }

    /// Whether this is [`ErrorKind::Closed`].
    pub fn is_closed(&self) -> bool {
        self.0.kind == ErrorKind::Closed
    }

    /// Whether this is [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::Timeout
    }

    /// Whether this is [`ErrorKind::Protocol`].
    pub fn is_protocol(&self) -> bool {
        self.0.kind == ErrorKind::Protocol
    }

    /// A broken backend stream found by the parser (the source says what was wrong).
    pub(crate) fn protocol(e: ProtocolError) -> Self {
        Self::new(ErrorKind::Protocol, "protocol error, connection closed").with_source(e)
    }

    /// A well-formed message that makes no sense where it arrived.
    pub(crate) fn protocol_violation(message: String) -> Self {
        Self::new(
            ErrorKind::Protocol,
            format!("protocol error, connection closed: {message}"),
        )
    }

    pub(crate) fn closed(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Closed, message)
    }

    pub(crate) fn state(message: String) -> Self {
        Self::new(ErrorKind::State, message)
    }

    pub(crate) fn invalid_input(e: EncodeError) -> Self {
        Self::new(ErrorKind::InvalidInput, "invalid input, nothing sent").with_source(e)
    }

    pub(crate) fn unsupported(message: &'static str) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    pub(crate) fn auth(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }

    pub(crate) fn notification_overflow(dropped: u64, capacity: usize) -> Self {
        let mut e = Self::new(
            ErrorKind::NotificationOverflow,
            format!(
                "{dropped} notification(s) dropped: the queue (capacity {capacity}) was full; pull faster or raise the capacity"
            ),
        );
        e.0.dropped = dropped;
        e
    }

    /// An error reported by the server. SQLSTATE class 28 (invalid
    /// authorization) is kind [`ErrorKind::Auth`], everything else
    /// [`ErrorKind::Server`]; the fields are in [`Error::as_db_error`] either way.
    /// `Display` prints the server's error (as [`DbError`]'s does); it is this level,
    /// not a [`source`](std::error::Error::source).
    pub fn server(db: DbError) -> Self {
        let kind = if db.code.class() == "28" {
            ErrorKind::Auth
        } else {
            ErrorKind::Server
        };
        let mut e = Self::new(kind, db.to_string());
        e.0.db = Some(db);
        e
    }

    pub(crate) fn usage(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    pub(crate) fn callback(context: &'static str, source: Box<dyn StdError + Send + Sync>) -> Self {
        let mut e = Self::new(ErrorKind::Callback, context);
        e.0.source = Some(source);
        e
    }

    pub(crate) fn tls(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Tls, message)
    }

    pub(crate) fn tls_with_source(
        message: String,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::new(ErrorKind::Tls, message).with_source(source)
    }

    pub(crate) fn connect_failed(hosts: Vec<(String, Self)>) -> Self {
        // The hosts' errors are not one source: each is listed with its causes.
        let list: Vec<String> = hosts
            .iter()
            .map(|(h, e)| format!("{h}: {}", e.report()))
            .collect();
        let mut e = Self::new(
            ErrorKind::Connect,
            format!("Could not connect to any host: {}", list.join("; ")),
        );
        e.0.hosts = hosts;
        e
    }

    pub(crate) fn connect_rejected(message: String) -> Self {
        Self::new(ErrorKind::Connect, message)
    }

    /// A new error of `other`'s kind with `message` (for wrapping with context).
    pub(crate) fn with_kind_of(other: &Self, message: String) -> Self {
        Self::new(other.0.kind, message)
    }

    /// An I/O failure, with `context` saying what we were doing; `e` is the
    /// [`source`](std::error::Error::source).
    pub fn io(context: &'static str, e: io::Error) -> Self {
        Self::new(ErrorKind::Io, context).with_source(e)
    }

    /// A timeout, with `context` saying what was waited for.
    pub fn timeout(context: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Timeout, context)
    }

    /// A bad configuration value.
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        if let Some(later) = &self.0.later {
            d.field("later", later);
        }
        d.finish()
    }
}

/// This level only; `{:#}` prints the chain, as [`Error::report`] does.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return Report(self).fmt(f);
        }
        f.write_str(&self.0.message)
    }
}

/// The cause: the error's own (I/O, parser, encoder, callback, TLS), else the
/// [`later`](Error::later) failure. A server error's fields are its own `Display`, not
/// a source.
impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match (&self.0.source, &self.0.later) {
            (Some(s), _) => Some(&**s as &(dyn StdError + 'static)),
            (None, Some(later)) => Some(&**later as &(dyn StdError + 'static)),
            (None, None) => None,
        }
    }
}

/// [`Error::report`]: the error, then each source, joined by `": "`.
struct Report<'a>(&'a Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.0.message)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}
