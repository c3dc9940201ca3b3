//! The `tracing` spans (src/trace.rs) against the real server: names,
//! parents and the exact field values a subscriber sees.
//!
//! Each test installs its own capturing subscriber as the thread's default
//! and runs a current-thread runtime inside it, so the spans of the tests
//! running beside it in this binary (on other threads) never reach it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use pg_transport::{Config, DefaultConnection, ErrorKind, source_fn};
use tokio::io::AsyncWriteExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::cluster::*;

/// A recorded field value, typed as the library recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    Str(String),
    U64(u64),
    I64(i64),
    Bool(bool),
}

/// One span as a subscriber saw it.
#[derive(Debug, Clone)]
struct Captured {
    id: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: BTreeMap<String, V>,
    closed: bool,
}

impl Captured {
    fn str(&self, field: &str) -> Option<&str> {
        match self.fields.get(field) {
            Some(V::Str(s)) => Some(s),
            other => panic!("{}.{field}: not a string: {other:?}", self.name),
        }
    }

    fn get(&self, field: &str) -> Option<&V> {
        self.fields.get(field)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, V>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), V::Str(value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), V::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), V::I64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), V::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), V::Str(format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.metadata().target().starts_with("pg_transport") {
            return;
        }
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            parent,
            fields,
            closed: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        self.with_open(id, |span| values.record(&mut Fields(&mut span.fields)));
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        self.with_open(&id, |span| span.closed = true);
    }
}

impl Capture {
    /// Applies `f` to the open span `id` (ids are reused once a span closes).
    fn with_open(&self, id: &Id, f: impl FnOnce(&mut Captured)) {
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = spans
            .iter_mut()
            .rev()
            .find(|s| s.id == id.into_u64() && !s.closed)
        {
            f(span);
        }
    }
}

/// Runs `f` on a current-thread runtime under a capturing subscriber; returns
/// its output and the crate's spans, in the order they were made.
fn with_spans<F: Future>(f: impl FnOnce() -> F) -> (F::Output, Vec<Captured>) {
    // `tracing` caches each callsite's interest process-wide, computed when
    // the callsite is first hit. While only one dispatcher is registered, it
    // asks the *registering thread's* default: a test on another thread with
    // no subscriber then caches "never" for `pg.copy`, and this capture sees
    // no COPY span at all (seen: 1 run in 3). A second dispatcher, kept
    // alive for the whole binary, makes registration ask every registered
    // dispatcher, this capture included; the rebuild below heals a callsite
    // cached before this capture existed.
    static PINNED: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    PINNED.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let out = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    });
    let spans = capture.0.lock().unwrap().clone();
    assert!(
        spans.iter().all(|s| s.closed),
        "every span closed: {spans:#?}"
    );
    (out, spans)
}

/// The one span named `name`.
fn only<'a>(spans: &'a [Captured], name: &str) -> &'a Captured {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name}: {spans:#?}");
    found[0]
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn tcp_client() -> DefaultConnection {
    crate::client(&cluster().url(TRUST_USER, None, "sslmode=disable")).await
}

fn s(v: &str) -> Option<V> {
    Some(V::Str(v.to_owned()))
}

#[test]
fn connect_span_has_an_attempt_per_address_with_its_outcome() {
    let c = cluster();
    let closed = closed_port();
    let mut config: Config = format!(
        "host=127.0.0.1,127.0.0.1 port={closed},{} user={SCRAM_USER} dbname=postgres sslmode=require",
        c.port
    )
    .parse()
    .unwrap();
    config.password = Some(SCRAM_PASS.to_owned());
    let (tls, spans) = with_spans(|| async {
        let (conn, _) = pg_transport::connect(&config).await.unwrap();
        conn.tls_info().is_some()
    });
    assert!(tls);

    let connect = only(&spans, "pg.connect");
    assert_eq!(connect.parent, None);
    assert_eq!(connect.get("db.system.name"), s("postgresql").as_ref());
    assert_eq!(connect.get("db.namespace"), s("postgres").as_ref());
    assert_eq!(connect.get("outcome"), s("ok").as_ref());
    assert_eq!(connect.get("error.type"), None);

    let attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "pg.connect.attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert!(attempts.iter().all(|a| a.parent == Some(connect.id)));
    let (refused, accepted) = (attempts[0], attempts[1]);
    for (a, port) in [(refused, closed), (accepted, c.port)] {
        assert_eq!(a.get("server.address"), s("127.0.0.1").as_ref());
        assert_eq!(a.get("server.port"), Some(&V::U64(port.into())));
        assert_eq!(a.get("network.transport"), s("tcp").as_ref());
        assert_eq!(a.get("network.peer.address"), s("127.0.0.1").as_ref());
        assert_eq!(a.get("otel.kind"), s("client").as_ref());
    }
    assert_eq!(refused.get("outcome"), s("error").as_ref());
    assert_eq!(refused.get("otel.status_code"), s("ERROR").as_ref());
    assert_eq!(refused.get("error.type"), s("io").as_ref());
    assert_eq!(
        refused.str("error.message"),
        Some("could not connect: Connection refused (os error 111)")
    );
    assert_eq!(refused.get("tls.established"), None, "never got that far");
    assert_eq!(refused.get("pg.auth.method"), None);
    assert_eq!(refused.get("db.response.status_code"), None);

    assert_eq!(accepted.get("outcome"), s("ok").as_ref());
    assert_eq!(accepted.get("tls.established"), Some(&V::Bool(true)));
    assert_eq!(
        accepted.get("pg.auth.method"),
        s("scram-sha-256-plus").as_ref()
    );
    assert_eq!(accepted.get("error.type"), None);
    assert_eq!(accepted.get("otel.status_code"), None);
}

#[test]
fn query_span_names_the_operation_and_counts_rows_never_the_text() {
    let port = cluster().port;
    let (conn_results, spans) = with_spans(|| async {
        let mut conn = tcp_client().await;
        let ok = conn
            .simple_query("/* note */ select g, 'hunter2' FROM generate_series(1, 3) g; SELECT 1")
            .await;
        let failed = conn.simple_query("SELECT 1/0 -- hunter2").await;
        (ok, failed)
    });
    let (ok, failed) = conn_results;
    assert_eq!(ok.unwrap().len(), 2);
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Server);

    let queries: Vec<_> = spans.iter().filter(|s| s.name == "pg.query").collect();
    assert_eq!(queries.len(), 2, "{spans:#?}");
    let (q, e) = (queries[0], queries[1]);
    for span in [q, e] {
        assert_eq!(span.parent, None, "not inside the (closed) connect span");
        assert_eq!(span.get("db.system.name"), s("postgresql").as_ref());
        assert_eq!(span.get("db.namespace"), s("postgres").as_ref());
        assert_eq!(span.get("server.address"), s("127.0.0.1").as_ref());
        assert_eq!(span.get("server.port"), Some(&V::U64(port.into())));
        assert_eq!(span.get("network.transport"), s("tcp").as_ref());
        assert_eq!(span.get("db.operation.name"), s("SELECT").as_ref());
        assert_eq!(span.get("otel.name"), s("SELECT postgres").as_ref());
        assert_eq!(span.get("otel.kind"), s("client").as_ref());
        for (name, value) in &span.fields {
            assert!(
                !format!("{value:?}").contains("hunter2"),
                "the SQL text leaked into {name}: {value:?}"
            );
        }
    }
    assert_eq!(q.get("db.response.returned_rows"), Some(&V::U64(4)));
    assert_eq!(q.get("outcome"), s("ok").as_ref());
    assert_eq!(q.get("error.type"), None);

    assert_eq!(e.get("db.response.returned_rows"), None);
    assert_eq!(e.get("outcome"), s("error").as_ref());
    assert_eq!(e.get("otel.status_code"), s("ERROR").as_ref());
    assert_eq!(e.get("error.type"), s("22012").as_ref());
    assert_eq!(e.get("db.response.status_code"), s("22012").as_ref());
    assert_eq!(e.get("error.message"), s("division by zero").as_ref());
}

/// `rows` rows of about 100 bytes for `COPY t (id, v)`, in 16 KiB chunks,
/// with the first row's id again at row 2 (a unique violation there).
fn duplicate_at_row_two(rows: u64) -> impl pg_transport::CopySource {
    let mut next = 1u64;
    source_fn(move || {
        let mut buf = String::new();
        while buf.len() < 16 * 1024 && next <= rows {
            let id = if next == 2 { 1 } else { next };
            buf.push_str(&format!(
                "{id}\tpadding out a row to about a hundred bytes {next:>50}\n"
            ));
            next += 1;
        }
        async move { Ok::<_, std::io::Error>(Bytes::from(buf)) }
    })
}

#[test]
fn copy_in_span_records_the_early_abort_and_the_sqlstate() {
    const ROWS: u64 = 1_000_000;
    let (results, spans) = with_spans(|| async {
        let mut conn = tcp_client().await;
        conn.simple_query(
            "DROP TABLE IF EXISTS spans_in; CREATE TABLE spans_in (id int PRIMARY KEY, v text)",
        )
        .await
        .unwrap();
        let aborted = conn
            .copy_in("COPY spans_in FROM STDIN", duplicate_at_row_two(ROWS))
            .await;
        let mut writer = conn
            .copy_in_writer("COPY spans_in FROM STDIN")
            .await
            .unwrap();
        writer.write_all(b"7\tseven\n8\teight\n").await.unwrap();
        let written = writer.finish().await;
        (aborted, written)
    });
    let (aborted, written) = results;
    assert_eq!(aborted.unwrap_err().kind(), ErrorKind::Server);
    assert_eq!(written.unwrap(), 2);

    let copies: Vec<_> = spans.iter().filter(|s| s.name == "pg.copy").collect();
    assert_eq!(copies.len(), 2, "{spans:#?}");
    let (a, w) = (copies[0], copies[1]);
    for span in [a, w] {
        assert_eq!(span.get("pg.copy.direction"), s("in").as_ref());
        assert_eq!(span.get("db.operation.name"), s("COPY").as_ref());
        assert_eq!(span.get("otel.name"), s("COPY postgres").as_ref());
    }
    assert_eq!(a.get("outcome"), s("error").as_ref());
    assert_eq!(a.get("pg.copy.aborted"), Some(&V::Bool(true)));
    assert_eq!(a.get("error.type"), s("23505").as_ref());
    assert_eq!(a.get("db.response.status_code"), s("23505").as_ref());
    assert_eq!(
        a.get("error.message"),
        s("duplicate key value violates unique constraint \"spans_in_pkey\"").as_ref(),
        "the primary message only: the DETAIL quotes the row"
    );
    assert_eq!(a.get("pg.copy.rows"), None);
    let Some(V::U64(sent)) = a.get("pg.copy.bytes") else {
        panic!("pg.copy.bytes: {a:#?}");
    };
    assert!(
        *sent > 0 && *sent < 10_000_000,
        "stopped early: {sent} bytes of ~100 MB"
    );

    assert_eq!(w.get("outcome"), s("ok").as_ref());
    assert_eq!(w.get("pg.copy.aborted"), Some(&V::Bool(false)));
    assert_eq!(w.get("pg.copy.rows"), Some(&V::U64(2)));
    assert_eq!(w.get("pg.copy.bytes"), Some(&V::U64(16)));
    assert_eq!(w.get("error.type"), None);
}

#[test]
fn copy_out_span_records_rows_and_bytes() {
    let sql = "COPY (SELECT g FROM generate_series(1, 12) g) TO STDOUT";
    let (results, spans) = with_spans(|| async {
        let mut conn = tcp_client().await;
        let mut received = 0usize;
        let rows = conn
            .copy_out(sql, |data: Bytes| {
                received += data.len();
                async { Ok::<_, std::io::Error>(()) }
            })
            .await
            .unwrap();
        let mut stream = conn.copy_out_stream(sql).await.unwrap();
        let mut streamed = 0usize;
        while let Some(item) = stream.next().await {
            streamed += item.unwrap().len();
        }
        let stream_rows = stream.rows();
        drop(stream);
        let failed = conn
            .copy_out("COPY no_such_table_here TO STDOUT", |_: Bytes| async {
                Ok::<_, std::io::Error>(())
            })
            .await;
        (rows, received, stream_rows, streamed, failed)
    });
    let (rows, received, stream_rows, streamed, failed) = results;
    // "1\n" … "9\n" and "10\n" … "12\n".
    assert_eq!((rows, received), (12, 9 * 2 + 3 * 3));
    assert_eq!((stream_rows, streamed), (Some(12), 27));
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Server);

    let copies: Vec<_> = spans.iter().filter(|s| s.name == "pg.copy").collect();
    assert_eq!(copies.len(), 3, "{spans:#?}");
    for span in &copies[..2] {
        assert_eq!(span.get("pg.copy.direction"), s("out").as_ref());
        assert_eq!(span.get("outcome"), s("ok").as_ref());
        assert_eq!(span.get("pg.copy.rows"), Some(&V::U64(12)));
        assert_eq!(span.get("pg.copy.bytes"), Some(&V::U64(27)));
        assert_eq!(span.get("pg.copy.aborted"), None, "COPY IN only");
    }
    let refused = copies[2];
    assert_eq!(refused.get("outcome"), s("error").as_ref());
    assert_eq!(refused.get("error.type"), s("42P01").as_ref());
    assert_eq!(refused.get("pg.copy.bytes"), Some(&V::U64(0)));
    assert_eq!(refused.get("pg.copy.rows"), None);
}

/// A writer that takes every byte and fails to flush.
struct FlushFails(usize);

impl tokio::io::AsyncWrite for FlushFails {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().0 += buf.len();
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("disk full at flush")))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// `copy_out_to`'s final flush is inside the COPY's span: a flush that
/// fails makes the span an error (it recorded `ok` before the flush once).
#[test]
fn copy_out_to_span_covers_the_final_flush() {
    let sql = "COPY (SELECT g FROM generate_series(1, 12) g) TO STDOUT";
    let (results, spans) = with_spans(|| async {
        let mut conn = tcp_client().await;
        let mut writer = FlushFails(0);
        let result = conn.copy_out_to(sql, &mut writer).await;
        (result, writer.0, conn.state())
    });
    let (result, written, state) = results;
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback);
    assert!(
        e.report().to_string().contains("disk full at flush"),
        "{e:#}"
    );
    assert_eq!(written, 27, "every row was written before the flush");
    assert_eq!(state, pg_transport::State::Ready);
    let copies: Vec<_> = spans.iter().filter(|s| s.name == "pg.copy").collect();
    assert_eq!(copies.len(), 1, "{spans:#?}");
    assert_eq!(copies[0].get("outcome"), s("error").as_ref());
    assert_eq!(copies[0].get("error.type"), s("callback").as_ref());
}

#[test]
fn streamed_queries_and_pipelines_record_rows_and_the_failed_request() {
    use pg_transport::session::pipeline::Pipeline;
    let (_, spans) = with_spans(|| async {
        let mut conn = tcp_client().await;
        let rows = conn
            .query_stream("SELECT g FROM generate_series(1, 5) g")
            .await
            .unwrap();
        assert_eq!(rows.count().await, 5);
        let mut counter = pg_transport::RowCounter::default();
        let tags = conn
            .query_with(
                "SELECT 1 UNION ALL SELECT 2; CREATE TEMP TABLE sp (v int)",
                &mut counter,
            )
            .await
            .unwrap();
        assert_eq!(tags.len(), 2);
        let mut ok = Pipeline::new();
        ok.query("SELECT 1", &[])
            .unwrap()
            .query("SELECT 2 UNION ALL SELECT 3", &[])
            .unwrap();
        conn.pipeline(&ok).await.unwrap();
        let mut failing = Pipeline::new();
        failing
            .query("SELECT 1", &[])
            .unwrap()
            .query("SELECT 1/0", &[])
            .unwrap();
        conn.pipeline(&failing).await.unwrap();
    });
    let queries: Vec<_> = spans.iter().filter(|s| s.name == "pg.query").collect();
    assert_eq!(queries.len(), 4, "{spans:#?}");
    let (stream, with, ok, failing) = (queries[0], queries[1], queries[2], queries[3]);
    assert_eq!(stream.get("db.operation.name"), s("SELECT").as_ref());
    assert_eq!(stream.get("db.response.returned_rows"), Some(&V::U64(5)));
    assert_eq!(stream.get("outcome"), s("ok").as_ref());
    assert_eq!(with.get("db.response.returned_rows"), Some(&V::U64(2)));
    assert_eq!(with.get("outcome"), s("ok").as_ref());
    for batch in [ok, failing] {
        assert_eq!(batch.get("db.operation.name"), s("BATCH").as_ref());
        assert_eq!(batch.get("db.operation.batch.size"), Some(&V::U64(2)));
        assert_eq!(batch.get("otel.name"), s("BATCH postgres").as_ref());
    }
    assert_eq!(ok.get("db.response.returned_rows"), Some(&V::U64(3)));
    assert_eq!(ok.get("outcome"), s("ok").as_ref());
    assert_eq!(failing.get("outcome"), s("error").as_ref());
    assert_eq!(failing.get("error.type"), s("22012").as_ref());
    assert_eq!(failing.get("db.response.returned_rows"), None);
}
