//! # pg-transport
//!
//! The transport layer of a PostgreSQL wire-protocol (3.0) client: buffers,
//! framing, the backend-message parser, frontend encoders, and notice and
//! notification dispatch.
//!
//! ```text
//!  sans-IO core (no tokio, no sockets, no clocks, no randomness)
//!   protocol/   bytes -> Message<B>, frontend messages -> bytes, limits, SCRAM/MD5
//!   buffer/     RecvBuf (read position, deferred compaction), SendBuf
//!   session/    Session: state machine, next_message(), dispatch, protocol versions,
//!               StartupAuth (startup + authentication), copy::{CopyIn, CopyOut},
//!               query::SimpleQuery, pipeline::{Pipeline, PipelineRun}
//!   error       one Error with a matchable ErrorKind
//!  async shell (tokio)
//!   transport/  Transport trait; TCP, Unix, TLS (rustls), turmoil (feature `sim`)
//!   connect/    Config (libpq keywords, URL, PG*, service, pgpass), hosts, SSL, startup driver
//!   conn        Connection: reads, writes, simple_query, ping, liveness probes
//!   copy/       COPY OUT (sinks, Stream) and COPY IN (sources, the receive watch)
//!   pipeline    pipeline: extended-protocol requests sent together, replies per request
//!   query       query_stream (rows as a Stream), query_with (into a RowSink)
//!   notify      LISTEN / NOTIFY
//!   cancel      CancelToken
//!   trace       the tracing spans (connect, query, COPY) and their fields
//! ```
//!
//! The core is a value you feed: give a [`Session`] bytes, take messages out.
//! The async shell ([`Connection`], [`connect()`]) needs a Tokio runtime with
//! I/O and time enabled (`enable_all`, or `#[tokio::main]`): timeouts and the
//! polite [`Connection::close`] use its timer.
//!
//! Connects, queries and COPYs are [`tracing`] spans (`pg.connect` with a
//! `pg.connect.attempt` per address, `pg.query`, `pg.copy`) whose fields use
//! OpenTelemetry's database names (`db.system.name`, `server.address`,
//! `db.operation.name`, `db.response.status_code`, `error.type`…); the SQL
//! text is never recorded. [`trace`] lists every span and field.
//!
//! ```
//! use pg_transport::{Session, SessionConfig, protocol::Message};
//!
//! let mut session = Session::new(SessionConfig::default());
//! session.startup(&[("user", "app")])?;
//! // AuthenticationOk, then ReadyForQuery(idle), as the server sends them.
//! session.feed(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I")?;
//! assert!(matches!(session.next_message()?, Some(Message::Authentication(_))));
//! assert!(matches!(session.next_message()?, Some(Message::ReadyForQuery(_))));
//! assert!(session.next_message()?.is_none());
//! # Ok::<(), pg_transport::Error>(())
//! ```
#![warn(missing_docs)]

pub mod buffer;
mod bulk;
mod cancel;
pub mod conn;
pub mod connect;
pub mod copy;
pub mod error;
#[doc(hidden)]
pub mod internal;
mod mutant;
pub mod notify;
mod pipeline;
pub mod protocol;
mod query;
pub mod session;
pub mod trace;
pub mod transport;

pub use cancel::CancelToken;
pub use conn::{Connection, QueryResult};
#[expect(deprecated, reason = "`Client` stays reachable for one release")]
pub use connect::Client;
pub use connect::{Config, ConnectInfo, DefaultConnection, connect};
pub use copy::{
    CopyInOptions, CopyInWriter, CopyOutStream, CopyProgress, CopySource, source_fn, source_reader,
    source_stream,
};
pub use error::{Error, ErrorKind, Result};
pub use protocol::{DbError, Message, SqlState, TransactionStatus};
pub use query::RowStream;
pub use session::query::{Column, Row};
pub use session::{
    Notification, NotificationDelivery, RowBuffer, RowCounter, RowSink, Session, SessionConfig,
    State,
};
pub use transport::{BulkRead, Transport};
