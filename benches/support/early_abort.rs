//! COPY IN of a large input generated on the fly into a table whose primary
//! key fails early (a duplicate id at the `mark` byte offset): how far past the
//! server's error does each client go before it stops?
//!
//! Rows are `<id>\t<90 × 'p'>\n` with ids 1, 2, 3, …; the first row that starts
//! at or after `mark` repeats id 1. The server rejects it when it flushes the
//! multi-insert batch holding it (at most 1000 rows / 64 KB later), sends
//! ErrorResponse, and discards all further COPY data.
//!
//! Both clients run over the same [`Counting`] wrapper around their socket,
//! which counts the bytes written to the socket and notes the first read during
//! the COPY: during COPY IN the server sends nothing but its error, so that read
//! is the moment the error reached the client. What is written (and pulled from
//! the source) after it is what the client sent after the server's error.
//! Bytes written before it but past the failing row were already in the kernel's
//! socket buffers or the server's read buffer when the server failed: no client
//! can take those back (up to ~200 KB on a Unix socket, several MB on loopback
//! TCP with autotuned buffers).

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use pg_transport::transport::{
    Socket, SocketOptions, SocketPeek, TcpTransport, TransportKind, UnixTransport,
};
use pg_transport::{
    Connection, CopyInOptions, CopyProgress, Message, Session, SessionConfig, Transport, source_fn,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Drops and creates the target table.
pub(crate) const SETUP_SQL: &str =
    "DROP TABLE IF EXISTS early; CREATE TABLE early (id int8 PRIMARY KEY, payload text)";
/// The COPY statement.
pub(crate) const COPY_SQL: &str = "COPY early FROM STDIN";

const PAYLOAD: &[u8] = &[b'p'; 90];

/// Where to connect: a Unix socket file, or a TCP address.
#[derive(Debug, Clone)]
pub(crate) enum Target<'a> {
    /// `{dir}/.s.PGSQL.{port}`.
    Unix(&'a Path, u16),
    /// 127.0.0.1:port.
    Tcp(u16),
}

/// Counters shared between a [`Counting`] transport and the run.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bytes the socket accepted (all writes, startup included).
    pub(crate) written: AtomicU64,
    /// Bytes pulled from the source so far (set by the run).
    pub(crate) pulled: AtomicU64,
    /// Set once COPY data flows: from then on, any read is the server's error.
    pub(crate) armed: AtomicBool,
    /// `(written, pulled, when)` at the first read after arming.
    pub(crate) error_read: OnceLock<(u64, u64, Instant)>,
}

/// A stream wrapper that counts what is written and notes the first read
/// after [`Counters::armed`] is set.
#[derive(Debug)]
pub(crate) struct Counting<T> {
    inner: T,
    counters: Arc<Counters>,
}

impl<T> Counting<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }

    fn wrote(&self, n: usize) {
        self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let c = &self.counters;
            if c.armed.load(Ordering::Relaxed) {
                let _ = c.error_read.set((
                    c.written.load(Ordering::Relaxed),
                    c.pulled.load(Ordering::Relaxed),
                    Instant::now(),
                ));
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Transport> Transport for Counting<T> {
    fn probe(&self) -> SocketPeek {
        self.inner.probe()
    }

    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }
}

/// A pg-transport connection over a [`Counting`] socket: the same `Socket`
/// that `pg_transport::connect` uses, with a trust-only startup.
pub(crate) async fn connect_pg_transport(
    target: &Target<'_>,
    counters: Arc<Counters>,
) -> Result<Connection<Counting<Socket>>, String> {
    let e = |e: io::Error| e.to_string();
    let socket = match target {
        Target::Unix(dir, port) => Socket::Unix(
            UnixTransport::connect(&dir.join(format!(".s.PGSQL.{port}")))
                .await
                .map_err(e)?,
        ),
        Target::Tcp(port) => Socket::Tcp(
            TcpTransport::connect(([127, 0, 0, 1], *port).into(), &SocketOptions::default())
                .await
                .map_err(e)?,
        ),
    };
    let mut session = Session::new(SessionConfig::default());
    session
        .startup(&[
            ("user", "postgres"),
            ("database", "postgres"),
            ("client_encoding", "UTF8"),
        ])
        .map_err(|e| e.to_string())?;
    let mut conn = Connection::new(Counting::new(socket, counters), session);
    conn.send_buf_msg().await.map_err(|e| e.to_string())?;
    loop {
        match conn.recv_message(None).await.map_err(|e| e.to_string())? {
            Message::ReadyForQuery(_) => return Ok(conn),
            Message::ErrorResponse(fields) => return Err(fields.to_db_error().message),
            Message::Authentication(pg_transport::protocol::Authentication::Ok) => {}
            Message::Authentication(_) => return Err("the cluster should trust us".to_owned()),
            _ => {}
        }
    }
}

/// A tokio-postgres connection over a [`Counting`] socket (`connect_raw`).
pub(crate) async fn connect_tokio_postgres(
    target: &Target<'_>,
    counters: Arc<Counters>,
) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    let e = |e: io::Error| e.to_string();
    let (client, task) = match target {
        Target::Unix(dir, port) => {
            let s = tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                .await
                .map_err(e)?;
            let (client, connection) = config
                .connect_raw(Counting::new(s, counters), tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            (client, tokio::spawn(connection))
        }
        Target::Tcp(port) => {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .map_err(e)?;
            s.set_nodelay(true).map_err(e)?;
            let (client, connection) = config
                .connect_raw(Counting::new(s, counters), tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            (client, tokio::spawn(connection))
        }
    };
    drop(task);
    Ok(client)
}

/// The failing row, once generated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BadRow {
    /// Its line number (1-based), as the server's `COPY early, line N` names it.
    pub(crate) line: u64,
    /// Byte offset just past it.
    pub(crate) end: u64,
}

/// Generates the input in chunks of whole rows.
#[derive(Debug)]
pub(crate) struct Generator {
    next_line: u64,
    generated: u64,
    total: u64,
    mark: u64,
    chunk: usize,
    buf: BytesMut,
    /// The failing row, once it has been generated.
    pub(crate) bad: Option<BadRow>,
}

impl Generator {
    /// About `total` bytes, the duplicate at `mark`, in chunks of about `chunk` bytes.
    pub(crate) fn new(total: u64, mark: u64, chunk: usize) -> Self {
        Self {
            next_line: 1,
            generated: 0,
            total,
            mark,
            chunk: chunk.max(256),
            buf: BytesMut::new(),
            bad: None,
        }
    }

    /// Bytes handed out so far.
    pub(crate) fn generated(&self) -> u64 {
        self.generated
    }

    /// The next chunk; empty at the end.
    pub(crate) fn next_chunk(&mut self) -> Bytes {
        self.buf.reserve(self.chunk + 128);
        while self.buf.len() < self.chunk && self.generated + (self.buf.len() as u64) < self.total {
            let offset = self.generated + self.buf.len() as u64;
            let line = self.next_line;
            let bad = self.bad.is_none() && offset >= self.mark;
            put_decimal(&mut self.buf, if bad { 1 } else { line });
            self.buf.put_u8(b'\t');
            self.buf.put_slice(PAYLOAD);
            self.buf.put_u8(b'\n');
            if bad {
                self.bad = Some(BadRow {
                    line,
                    end: self.generated + self.buf.len() as u64,
                });
            }
            self.next_line += 1;
        }
        let chunk = self.buf.split().freeze();
        self.generated += chunk.len() as u64;
        chunk
    }
}

fn put_decimal(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

/// What one early-abort run saw. Byte counts of the COPY only (from the first
/// CopyData on).
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Bytes pulled from the generator (the source).
    pub(crate) pulled: u64,
    /// Bytes the socket accepted during the COPY (CopyData framing included).
    pub(crate) written: u64,
    /// The failing row.
    pub(crate) bad: Option<BadRow>,
    /// The line the server's error names (`COPY early, line N`).
    pub(crate) server_line: Option<u64>,
    /// The error's SQLSTATE and message.
    pub(crate) error: String,
    /// From the start of the COPY until the client returned.
    pub(crate) wall: Duration,
    /// Written to the socket after the error reached the client.
    pub(crate) written_after_error: Option<u64>,
    /// Pulled from the source after the error reached the client.
    pub(crate) pulled_after_error: Option<u64>,
    /// From the error reaching the client until the client returned.
    pub(crate) error_to_return: Option<Duration>,
}

impl Report {
    fn new(
        generator: &Generator,
        counters: &Counters,
        written_before: u64,
        start: Instant,
        error: (String, Option<u64>),
    ) -> Self {
        let end = Instant::now();
        let written_total = counters.written.load(Ordering::Relaxed);
        let at_error = counters.error_read.get();
        Self {
            pulled: generator.generated(),
            written: written_total - written_before,
            bad: generator.bad,
            server_line: error.1,
            error: error.0,
            wall: end - start,
            written_after_error: at_error.map(|&(w, _, _)| written_total - w),
            pulled_after_error: at_error.map(|&(_, p, _)| generator.generated() - p),
            error_to_return: at_error.map(|&(_, _, t)| end - t),
        }
    }

    /// Bytes pulled past the end of the failing row.
    pub(crate) fn pulled_past_bad(&self) -> i64 {
        signed(self.pulled) - signed(self.bad.map_or(0, |b| b.end))
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn line_of(where_: Option<&str>) -> Option<u64> {
    let rest = where_?.split("line ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The run with pg-transport's `copy_in_with` (default options; a progress
/// callback that only records).
pub(crate) async fn with_pg_transport(
    target: &Target<'_>,
    total: u64,
    mark: u64,
    chunk: usize,
) -> Result<Report, String> {
    let counters = Arc::new(Counters::default());
    let mut client = connect_pg_transport(target, counters.clone()).await?;
    client
        .simple_query(SETUP_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let mut generator = Generator::new(total, mark, chunk);
    let mut last_progress = CopyProgress::default();
    let mut on_progress = |p: CopyProgress| last_progress = p;
    let options = CopyInOptions::default().progress(&mut on_progress);
    let start = Instant::now();
    let written_before = counters.written.load(Ordering::Relaxed);
    let result = client
        .copy_in_with(
            COPY_SQL,
            source_fn(|| {
                let chunk = generator.next_chunk();
                counters
                    .pulled
                    .store(generator.generated(), Ordering::Relaxed);
                counters.armed.store(true, Ordering::Relaxed);
                async move { Ok::<_, Infallible>(chunk) }
            }),
            options,
        )
        .await;
    let error = match &result {
        Ok(rows) => (format!("no error: {rows} rows copied"), None),
        Err(e) => match e.as_db_error() {
            Some(db) => (
                format!("{}: {}", db.code.code(), db.message),
                line_of(db.where_.as_deref()),
            ),
            None => (e.to_string(), None),
        },
    };
    let report = Report::new(&generator, &counters, written_before, start, error);
    if client.state() != pg_transport::State::Ready {
        return Err(format!(
            "connection not Ready after the abort: {:?}",
            client.state()
        ));
    }
    client.close().await;
    Ok(report)
}

/// The same with tokio-postgres: `copy_in` sink fed with `SinkExt::send`
/// until a send fails or the input ends, then `finish`.
pub(crate) async fn with_tokio_postgres(
    target: &Target<'_>,
    total: u64,
    mark: u64,
    chunk: usize,
) -> Result<Report, String> {
    let counters = Arc::new(Counters::default());
    let client = connect_tokio_postgres(target, counters.clone()).await?;
    client
        .batch_execute(SETUP_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let mut generator = Generator::new(total, mark, chunk);
    let start = Instant::now();
    let sink = client
        .copy_in::<_, Bytes>(COPY_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let written_before = counters.written.load(Ordering::Relaxed);
    let mut sink = pin!(sink);
    let result = loop {
        let chunk = generator.next_chunk();
        counters
            .pulled
            .store(generator.generated(), Ordering::Relaxed);
        counters.armed.store(true, Ordering::Relaxed);
        if chunk.is_empty() {
            break sink.as_mut().finish().await;
        }
        if let Err(e) = sink.send(chunk).await {
            break Err(e);
        }
    };
    let error = match &result {
        Ok(rows) => (format!("no error: {rows} rows copied"), None),
        Err(e) => match e.as_db_error() {
            Some(db) => (
                format!("{}: {}", db.code().code(), db.message()),
                line_of(db.where_()),
            ),
            None => (e.to_string(), None),
        },
    };
    Ok(Report::new(
        &generator,
        &counters,
        written_before,
        start,
        error,
    ))
}
