//! The [`tracing`] spans this crate emits: one per connect (with a child per
//! address tried), one per query, one per COPY. Field names follow
//! OpenTelemetry's database semantic conventions where one exists, so a
//! `tracing-opentelemetry` layer exports them as they are; the rest start
//! with `pg.`.
//!
//! Every span is at level `INFO` with target `pg_transport::trace`, so
//! `pg_transport::trace=off` (or `pg_transport=warn`) in a filter turns them
//! off. With no subscriber, or a filter that refuses them, building a span
//! is one cached check and no field is computed.
//!
//! | span | fields |
//! |---|---|
//! | `pg.connect` | `db.system.name`, `db.namespace`; at the end `outcome` and the error fields |
//! | `pg.connect.attempt` (child of `pg.connect`, one per address dialled) | `otel.kind` = `client`, `server.address`, `server.port`, `network.transport`, `network.peer.address`; `tls.established` once SSL is negotiated; `pg.auth.method` once authenticated; `outcome` and the error fields |
//! | `pg.query` ([`Connection::simple_query`](crate::Connection::simple_query), [`query_stream`](crate::Connection::query_stream), [`query_with`](crate::Connection::query_with), [`pipeline`](crate::Connection::pipeline)) | `otel.kind` = `client`, `otel.name`, `db.system.name`, `db.namespace`, `server.address`, `server.port`, `network.transport`, `network.peer.address`, `db.operation.name`; at the end `db.response.returned_rows`, `outcome` and the error fields |
//! | `pg.copy` (COPY OUT and COPY IN, including [`CopyInWriter`](crate::CopyInWriter) and [`CopyOutStream`](crate::CopyOutStream)) | as `pg.query` with `db.operation.name` = `COPY`, and `pg.copy.direction` (`in`/`out`); at the end `pg.copy.rows`, `pg.copy.bytes`, for COPY IN `pg.copy.aborted`, `outcome` and the error fields |
//!
//! What the fields hold:
//! - `db.system.name`: always `postgresql`.
//! - `db.namespace`: the database name (`dbname`, else `user`, as the server
//!   defaults it); absent when neither was configured.
//! - `server.address`: the host as configured (name or IP literal), the
//!   `hostaddr` when no host was given, or the Unix socket's path;
//!   `server.port` its port (absent for a Unix socket); `network.transport`
//!   `tcp` or `unix`; `network.peer.address` the IP actually dialled.
//!   A [`Connection`](crate::Connection) made by [`Connection::new`](crate::Connection::new)
//!   rather than [`connect`](crate::connect()) does not know them.
//! - `tls.established`: whether the attempt's stream is TLS (the last
//!   negotiation wins: `sslmode=prefer` falling back records `false`).
//! - `pg.auth.method`: `trust`, `password`, `md5`, `scram-sha-256` or
//!   `scram-sha-256-plus`.
//! - `db.operation.name`: the first keyword of the SQL, upper-cased
//!   (`SELECT`, `INSERT`, `WITH`), after leading blanks and comments; absent
//!   for an empty query or when the text does not start with a word.
//!   `otel.name` is `{db.operation.name} {db.namespace}`, as OpenTelemetry
//!   names database spans.
//! - `db.response.returned_rows`: the rows of every statement of the query
//!   (for `query_with`, the counts of the `SELECT`/`FETCH` command tags; for a
//!   pipeline, of every request). A pipeline's span has `db.operation.name` =
//!   `BATCH` and `db.operation.batch.size`; a request that failed makes its
//!   outcome `error` with that request's error fields.
//! - `pg.copy.rows`: the row count of `COPY n`; `pg.copy.bytes`: the COPY
//!   data received (OUT) or taken from the source (IN), headers excluded;
//!   `pg.copy.aborted`: whether the server's error ended a COPY IN while its
//!   data was still being sent (an early abort), rather than at CopyDone.
//! - `outcome`: `ok` or `error`. On error also: `otel.status_code` =
//!   `ERROR`; `error.type`, the SQLSTATE when the server sent one (as
//!   OpenTelemetry advises), else the [`ErrorKind`] in snake case (`io`,
//!   `timeout`, `tls`…); `db.response.status_code`, the SQLSTATE; and
//!   `error.message`: the server's primary message (without its DETAIL,
//!   which can quote row values), or this crate's error with its causes.
//!   A span that closes without `outcome` was dropped before the operation
//!   ended (a cancelled future, a stream or writer dropped part-way).
//!
//! The SQL text is never recorded: it can hold passwords and personal data,
//! and OpenTelemetry asks for `db.query.text` to be sanitised, which needs a
//! SQL lexer this crate does not have. The first keyword says what kind of
//! statement ran; a caller that wants the text can record it in a span of
//! its own around the call.
//!
//! Spans are made per operation, never per row or message.

use tracing::Span;
use tracing::field::Empty;

use crate::error::{Error, ErrorKind};

/// OpenTelemetry's `db.system.name` for PostgreSQL.
const DB_SYSTEM: &str = "postgresql";

/// Where a connection goes, as its spans name it (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `server.address`.
    pub(crate) address: Option<String>,
    /// `server.port` (TCP only).
    pub(crate) port: Option<u16>,
    /// `network.transport`: `tcp` or `unix`.
    pub(crate) transport: Option<&'static str>,
    /// `network.peer.address`: the IP dialled (TCP only).
    pub(crate) peer_address: Option<String>,
    /// `db.namespace`.
    pub(crate) namespace: Option<String>,
}

/// Which way a COPY's data flows (`pg.copy.direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyDirection {
    In,
    Out,
}

/// What a COPY moved, recorded when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CopyCounts {
    /// `pg.copy.bytes`.
    pub(crate) bytes: u64,
    /// `pg.copy.aborted` (COPY IN only).
    pub(crate) aborted: Option<bool>,
}

/// The span of one [`connect`](crate::connect()); `db.namespace` is recorded
/// once the configuration is resolved ([`connect_namespace`]).
pub(crate) fn connect_span() -> Span {
    tracing::info_span!(
        "pg.connect",
        db.system.name = DB_SYSTEM,
        db.namespace = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        "error.type" = Empty,
        error.message = Empty,
        db.response.status_code = Empty,
    )
}

/// Records the database a connect asks for.
pub(crate) fn connect_namespace(span: &Span, namespace: Option<&str>) {
    if let Some(ns) = namespace {
        span.record("db.namespace", ns);
    }
}

/// The span of one address tried, a child of `parent` (the connect span).
pub(crate) fn attempt_span(parent: &Span, at: &Endpoint) -> Span {
    tracing::info_span!(
        parent: parent,
        "pg.connect.attempt",
        otel.kind = "client",
        server.address = at.address.as_deref(),
        server.port = at.port,
        network.transport = at.transport,
        network.peer.address = at.peer_address.as_deref(),
        tls.established = Empty,
        pg.auth.method = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        "error.type" = Empty,
        error.message = Empty,
        db.response.status_code = Empty,
    )
}

/// Records whether the attempt's stream is TLS; the last call wins.
pub(crate) fn attempt_tls(span: &Span, established: bool) {
    span.record("tls.established", established);
}

/// Records how the server authenticated the attempt.
pub(crate) fn attempt_auth(span: &Span, method: &'static str) {
    span.record("pg.auth.method", method);
}

/// The span of one query.
pub(crate) fn query_span(at: &Endpoint, sql: &str) -> Span {
    request_span(at, operation_name(sql))
}

/// The span of one [`Connection::pipeline`](crate::Connection::pipeline):
/// a `pg.query` whose `db.operation.name` is `BATCH`, with
/// `db.operation.batch.size`, as OpenTelemetry names batches.
pub(crate) fn pipeline_span(at: &Endpoint, size: usize) -> Span {
    let span = request_span(at, Some("BATCH".to_owned()));
    span.record("db.operation.batch.size", size as u64);
    span
}

fn request_span(at: &Endpoint, operation: Option<String>) -> Span {
    tracing::info_span!(
        "pg.query",
        otel.kind = "client",
        otel.name = span_name(operation.as_deref(), at),
        db.system.name = DB_SYSTEM,
        db.namespace = at.namespace.as_deref(),
        server.address = at.address.as_deref(),
        server.port = at.port,
        network.transport = at.transport,
        network.peer.address = at.peer_address.as_deref(),
        db.operation.name = operation,
        db.operation.batch.size = Empty,
        db.response.returned_rows = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        "error.type" = Empty,
        error.message = Empty,
        db.response.status_code = Empty,
    )
}

/// Records how a query ended: `Ok` with the rows it returned.
pub(crate) fn query_ended(span: &Span, result: Result<u64, &Error>) {
    if span.is_disabled() {
        return;
    }
    if let Ok(rows) = result {
        span.record("db.response.returned_rows", rows);
    }
    outcome(span, result.err());
}

/// The span of one COPY.
pub(crate) fn copy_span(at: &Endpoint, direction: CopyDirection) -> Span {
    tracing::info_span!(
        "pg.copy",
        otel.kind = "client",
        otel.name = span_name(Some("COPY"), at),
        db.system.name = DB_SYSTEM,
        db.namespace = at.namespace.as_deref(),
        server.address = at.address.as_deref(),
        server.port = at.port,
        network.transport = at.transport,
        network.peer.address = at.peer_address.as_deref(),
        db.operation.name = "COPY",
        pg.copy.direction = match direction {
            CopyDirection::In => "in",
            CopyDirection::Out => "out",
        },
        pg.copy.rows = Empty,
        pg.copy.bytes = Empty,
        pg.copy.aborted = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        "error.type" = Empty,
        error.message = Empty,
        db.response.status_code = Empty,
    )
}

/// Records how a COPY ended and what it moved.
pub(crate) fn copy_ended(span: &Span, result: &Result<u64, Error>, counts: CopyCounts) {
    if span.is_disabled() {
        return;
    }
    if let Ok(rows) = result {
        span.record("pg.copy.rows", rows);
    }
    span.record("pg.copy.bytes", counts.bytes);
    if let Some(aborted) = counts.aborted {
        span.record("pg.copy.aborted", aborted);
    }
    outcome(span, result.as_ref().err());
}

/// Records `outcome` and, for an error, the error fields.
pub(crate) fn outcome(span: &Span, error: Option<&Error>) {
    if span.is_disabled() {
        return;
    }
    let Some(e) = error else {
        span.record("outcome", "ok");
        return;
    };
    span.record("outcome", "error");
    span.record("otel.status_code", "ERROR");
    match e.code() {
        Some(code) => {
            span.record("error.type", code.code());
            span.record("db.response.status_code", code.code());
        }
        None => {
            span.record("error.type", kind_name(e.kind()));
        }
    }
    match e.as_db_error() {
        Some(db) => span.record("error.message", db.message.as_str()),
        None => span.record("error.message", tracing::field::display(e.report())),
    };
}

/// `otel.name`: `{operation} {namespace}`, or what there is of it.
fn span_name(operation: Option<&str>, at: &Endpoint) -> String {
    match (operation, at.namespace.as_deref()) {
        (Some(op), Some(ns)) => format!("{op} {ns}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => DB_SYSTEM.to_owned(),
    }
}

/// Longer than any PostgreSQL command keyword: a longer first word is not
/// one, and is not recorded.
const OPERATION_NAME_MAX: usize = 16;

/// The first keyword of `sql`, upper-cased, after blanks and comments.
pub(crate) fn operation_name(sql: &str) -> Option<String> {
    let rest = skip_blanks_and_comments(sql);
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = rest.get(..end)?;
    (!word.is_empty() && word.len() <= OPERATION_NAME_MAX).then(|| word.to_ascii_uppercase())
}

fn skip_blanks_and_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            // PostgreSQL nests block comments.
            sql = after_block_comment(rest);
        } else {
            return sql;
        }
    }
}

/// What follows the block comment whose `/*` preceded `rest`; empty if it
/// never closes.
fn after_block_comment(mut rest: &str) -> &str {
    let mut depth = 1usize;
    while depth > 0 {
        let open = rest.find("/*");
        let Some(close) = rest.find("*/") else {
            return "";
        };
        match open {
            Some(open) if open < close => {
                depth += 1;
                rest = rest.get(open + 2..).unwrap_or("");
            }
            _ => {
                depth -= 1;
                rest = rest.get(close + 2..).unwrap_or("");
            }
        }
    }
    rest
}

/// `error.type` for an error the server did not give a SQLSTATE.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Protocol => "protocol",
        ErrorKind::Closed => "closed",
        ErrorKind::Io => "io",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Server => "server",
        ErrorKind::State => "state",
        ErrorKind::Tls => "tls",
        ErrorKind::Auth => "auth",
        ErrorKind::Config => "config",
        ErrorKind::NotificationOverflow => "notification_overflow",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Usage => "usage",
        ErrorKind::Callback => "callback",
        ErrorKind::Connect => "connect",
    }
}

#[cfg(test)]
mod tests {
    use super::operation_name;

    #[test]
    fn operation_name_is_the_first_keyword() {
        let cases = [
            ("SELECT 1", Some("SELECT")),
            ("  select\n1", Some("SELECT")),
            ("-- a comment\ninsert into t values (1)", Some("INSERT")),
            (
                "/* a /* nested */ comment */ WITH x AS (SELECT 1) SELECT * FROM x",
                Some("WITH"),
            ),
            ("COPY t FROM STDIN", Some("COPY")),
            ("", None),
            ("  -- only a comment", None),
            ("/* never closed SELECT", None),
            ("(SELECT 1)", None),
            ("supercalifragilistic 1", None),
        ];
        for (sql, want) in cases {
            assert_eq!(operation_name(sql).as_deref(), want, "{sql:?}");
        }
    }
}
