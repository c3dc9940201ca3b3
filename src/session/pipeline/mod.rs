//! Extended-protocol requests sent together and answered in order, without
//! I/O: the builder encodes Parse/Bind/Describe/Execute/Close with the
//! protocol's encoders; [`PipelineRun`] appends one Sync and reads the
//! replies back per request. After an error the server skips everything up
//! to the Sync, and so does the reader: the failing request gets the
//! server's error and every later one [`Response::Skipped`], so no caller
//! waits for a reply that will never come.

mod run;

use std::sync::Arc;

use bytes::BytesMut;

pub use run::PipelineRun;

use super::query::{Column, Row};
use crate::error::Error;
use crate::protocol::frontend::{self, Target};

/// The format of parameters or result columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// PostgreSQL's text representation. The default.
    #[default]
    Text,
    /// The binary representation of each type (`typsend`/`typreceive`).
    Binary,
}

impl Format {
    fn code(self) -> i16 {
        match self {
            Self::Text => 0,
            Self::Binary => 1,
        }
    }
}

/// What kind of reply a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Parse + Bind + Describe portal + Execute.
    Query,
    /// Parse (named) + Describe statement.
    Prepare,
    /// Bind (named statement) + Describe portal + Execute.
    Execute,
    /// Close statement.
    Close,
}

/// Requests for the extended protocol, to be sent together by
/// [`Connection::pipeline`](crate::Connection::pipeline) (or driven by
/// [`PipelineRun`]).
///
/// Each call encodes its messages at once, all or nothing: bad input (a NUL
/// in the SQL, more than 65,535 parameters) is refused with the builder
/// unchanged. The whole pipeline ends with one Sync, so it runs as one
/// implicit transaction unless it is inside `BEGIN`: an error rolls back the
/// requests before it too, as in libpq's pipeline mode between sync points.
///
/// ```
/// use pg_transport::session::pipeline::Pipeline;
///
/// let mut p = Pipeline::new();
/// p.query("SELECT $1::int + 1", &[Some(b"41")])?
///     .prepare("ins", "INSERT INTO t (v) VALUES ($1)", &[])?
///     .execute("ins", &[Some(b"a")])?
///     .execute("ins", &[None])?;
/// assert_eq!(p.len(), 4);
/// # Ok::<(), pg_transport::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    buf: BytesMut,
    kinds: Vec<Kind>,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of requests.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Whether there are no requests.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The encoded messages, without the Sync that [`PipelineRun`] adds.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// Runs `sql` once with `params` (`None` = NULL) in text format, the
    /// parameter types inferred by the server, rows in text: the unnamed
    /// statement and portal. Its reply is [`Response::Rows`].
    ///
    /// # Errors
    /// Kind `InvalidInput` for a NUL in `sql` or more than 65,535
    /// parameters; the pipeline is unchanged.
    pub fn query(&mut self, sql: &str, params: &[Option<&[u8]>]) -> Result<&mut Self, Error> {
        self.query_typed(sql, &[], params, Format::Text, Format::Text)
    }

    /// [`Pipeline::query`] with parameter type OIDs (`0` or a short list
    /// leaves the rest to the server) and the formats of the parameters
    /// and of the result columns.
    ///
    /// # Errors
    /// As [`Pipeline::query`].
    pub fn query_typed(
        &mut self,
        sql: &str,
        types: &[u32],
        params: &[Option<&[u8]>],
        param_format: Format,
        result_format: Format,
    ) -> Result<&mut Self, Error> {
        self.encode(Kind::Query, |buf| {
            frontend::parse(buf, "", sql, types)?;
            bind_describe_execute(buf, "", params, param_format, result_format)
        })
    }

    /// Prepares `sql` as the named statement `name` (reusable by
    /// [`Pipeline::execute`] in this pipeline and later ones, until closed).
    /// Its reply is [`Response::Prepared`] with the parameter types and
    /// the columns.
    ///
    /// # Errors
    /// As [`Pipeline::query`].
    pub fn prepare(&mut self, name: &str, sql: &str, types: &[u32]) -> Result<&mut Self, Error> {
        self.encode(Kind::Prepare, |buf| {
            frontend::parse(buf, name, sql, types)?;
            frontend::describe(buf, Target::Statement, name)
        })
    }

    /// Runs the prepared statement `statement` with `params` in text
    /// format, rows in text. Its reply is [`Response::Rows`].
    ///
    /// # Errors
    /// As [`Pipeline::query`].
    pub fn execute(
        &mut self,
        statement: &str,
        params: &[Option<&[u8]>],
    ) -> Result<&mut Self, Error> {
        self.execute_typed(statement, params, Format::Text, Format::Text)
    }

    /// [`Pipeline::execute`] with the formats of the parameters and of the
    /// result columns.
    ///
    /// # Errors
    /// As [`Pipeline::query`].
    pub fn execute_typed(
        &mut self,
        statement: &str,
        params: &[Option<&[u8]>],
        param_format: Format,
        result_format: Format,
    ) -> Result<&mut Self, Error> {
        self.encode(Kind::Execute, |buf| {
            bind_describe_execute(buf, statement, params, param_format, result_format)
        })
    }

    /// Closes the prepared statement `name`. Its reply is [`Response::Closed`]
    /// (also when no such statement exists, as the protocol says).
    ///
    /// # Errors
    /// As [`Pipeline::query`].
    pub fn close(&mut self, name: &str) -> Result<&mut Self, Error> {
        self.encode(Kind::Close, |buf| {
            frontend::close(buf, Target::Statement, name)
        })
    }

    fn encode(
        &mut self,
        kind: Kind,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), crate::protocol::EncodeError>,
    ) -> Result<&mut Self, Error> {
        let mark = self.buf.len();
        if let Err(e) = encode(&mut self.buf) {
            self.buf.truncate(mark);
            return Err(Error::invalid_input(e));
        }
        self.kinds.push(kind);
        Ok(self)
    }
}

fn bind_describe_execute(
    buf: &mut BytesMut,
    statement: &str,
    params: &[Option<&[u8]>],
    param_format: Format,
    result_format: Format,
) -> Result<(), crate::protocol::EncodeError> {
    let param_formats = [param_format.code()];
    let result_formats = [result_format.code()];
    frontend::bind(buf, "", statement, &param_formats, params, &result_formats)?;
    frontend::describe(buf, Target::Portal, "")?;
    frontend::execute(buf, "", 0)
}

/// The rows and command tag of one query or execute.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RowSet {
    /// The result's columns (empty for a statement without rows).
    pub columns: Arc<[Column]>,
    /// The rows, each sharing the receive buffer.
    pub rows: Vec<Row>,
    /// The command tag (`SELECT 2`, `INSERT 0 1`; empty for an empty query).
    pub tag: String,
}

/// A prepared statement's description.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Prepared {
    /// The parameter type OIDs, as the server resolved them.
    pub param_types: Vec<u32>,
    /// The columns its rows will have (empty if it returns none).
    pub columns: Arc<[Column]>,
}

/// The reply to one request of a [`Pipeline`], in request order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Response {
    /// A query or execute ran.
    Rows(RowSet),
    /// A statement was prepared.
    Prepared(Prepared),
    /// A statement was closed.
    Closed,
    /// The server's error for this request (kind `Server`), or kind `Usage`
    /// for a `COPY` (which cannot run in a pipeline).
    Failed(Error),
    /// Not run: an earlier request failed, and the server skips the rest
    /// of the pipeline.
    Skipped,
}

impl Response {
    /// The rows, if the request ran and returned a [`RowSet`].
    pub fn rows(&self) -> Option<&RowSet> {
        match self {
            Self::Rows(rows) => Some(rows),
            _ => None,
        }
    }

    /// The error, for a request that failed.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }
}
