//! COPY OUT, COPY IN and a streamed many-row SELECT against a throwaway
//! PostgreSQL server: pg-transport, tokio-postgres and `psql` side by side, on
//! the same data in the same run, over the Unix socket and over TCP, each as a
//! ratio to the server-side floor measured in the same run.
//!
//! Run: `cargo bench --bench copy` (a few minutes; results as Markdown on
//! stdout, progress on stderr). Quick mode: `PGT_BENCH_ROWS_SCALE=0.1`.
//! Results and targets: `docs/benchmarks.md`.
//!
//! # What it does
//!
//! The parent process starts a cluster (`support/cluster.rs`: `initdb` +
//! `pg_ctl` from the installed PostgreSQL, as the `postgres` user when root),
//! creates the data, then re-executes itself once per case and repetition
//! (`--case <spec>`), so every measurement is a fresh process whose `getrusage`
//! and peak RSS (`ru_maxrss`) belong to that case alone. It stops the cluster
//! (`pg_ctl stop`) at the end; a guardian process stops it if the parent dies.
//!
//! Tables (values from a seeded `random()`, shapes as in `benches/parse.rs`):
//!
//! * `wide`: `id int4, big int8, txt text, ts timestamp, num numeric`,
//!   1,000,000 rows, about 104 MB as COPY text;
//! * `narrow`: `n int4` (seven digits), 5,000,000 rows, 40 MB as COPY text.
//!
//! Cases, per table and per socket (Unix, TCP 127.0.0.1):
//!
//! * COPY OUT `COPY t TO STDOUT`: pg-transport `copy_out` with a sink that
//!   counts bytes; tokio-postgres `copy_out` stream, counting bytes;
//!   `psql -c "\copy t to '/dev/null'"`. Floor: `COPY t TO '/dev/null'`
//!   executed by the server.
//! * COPY IN `COPY t_in FROM STDIN` of the file the server wrote with
//!   `COPY t TO '<base>/t.copy'`, read in 64 KiB chunks (`PGT_BENCH_CHUNK`)
//!   with blocking `read(2)` from the page cache: pg-transport `copy_in` with
//!   `source_fn`; tokio-postgres `copy_in` sink fed with `SinkExt::send`;
//!   `psql -c "\copy t_in from '<file>'"`. Floor: `COPY t_in FROM '<file>'`
//!   executed by the server. `t_in` is truncated (and a CHECKPOINT run) before
//!   every case.
//! * Streamed SELECT `SELECT * FROM t` (simple query, text): pg-transport sends
//!   the Query and drains with `Session::next_message_with(&mut RowCounter)`
//!   and `fill_recv_buf`; tokio-postgres `simple_query_raw`, counting
//!   `SimpleQueryMessage::Row`s; `psql -A -t -o /dev/null -c "SELECT …"` (which
//!   holds the whole result in memory: PQexec). Floor: the COPY OUT floor of
//!   the same table (the server reads and formats the same rows as text).
//!
//! And, over the Unix socket only, a ~1 GB COPY OUT of generated rows
//! (`COPY (SELECT g, repeat('x', 92) FROM (SELECT generate_series(1, 10^7) …))
//! TO STDOUT`) for peak RSS, and the early-abort case of
//! `support/early_abort.rs` (also `examples/early_abort.rs`) over both sockets.
//!
//! In-process clients run on a current-thread tokio runtime (tokio-postgres
//! also on a two-worker multi-thread runtime, `tpgmt`, where its connection
//! task can run beside the caller); their wall time and CPU (`RUSAGE_SELF`,
//! user + sys, all threads) cover the operation only, after connecting; their
//! peak RSS is `VmHWM` (see `support/measure.rs` for why not `ru_maxrss`).
//! `psql` is a child process: its wall time includes its start and connection
//! (a few ms), its CPU and peak RSS are `RUSAGE_CHILDREN`. For in-process
//! clients and the floors the case process also reads the server backend's
//! CPU time and run-queue wait from `/proc/<pid>/schedstat` (pid from
//! `pg_backend_pid()`), and its own threads' run-queue wait: how much other work
//! on the machine got in the way.
//!
//! Environment: `PGT_BENCH_ROWS_SCALE` (default 1; scales every row count and
//! the early-abort input), `PGT_BENCH_REPS` (default 3; medians are reported),
//! `PGT_BENCH_CHUNK` (COPY IN read size, default 65536), `PGT_BENCH_CASES`
//! (comma-separated substrings of case specs such as `pgt:out:wide:unix`; only
//! matching cases run), `PG_BINDIR` (server binaries), `PGT_BENCH_WRAP` (a
//! command prefix for every case process, `{case}` replaced by the case name:
//! `strace -c -f -o /tmp/{case}.strace`, `perf record -g -o /tmp/{case}.data`;
//! for profiling, not for the tables), `PGT_BENCH_SCHED` (default `fifo`: the
//! parent makes itself SCHED_FIFO, so the server and every case process
//! inherit it and other work on the machine yields to them; `nice` for nice
//! -19; `none`),
//! `PGT_BENCH_RETRIES` (default 3: a run whose client and server backend
//! together waited for a CPU, per `/proc/<pid>/schedstat`, more than 3 % of
//! its wall time is run again, at most this many times), `PGT_BENCH_QUIET_WAIT`
//! (seconds, default 0: before each case, wait up to this long for the machine
//! to be idle), `PGT_BENCH_SPIN_US` (pg-transport only: `set_read_spin` with
//! this many microseconds; default off), `PGT_BENCH_JOINED` (set: pg-transport's
//! COPY OUT cases use `copy_out_joined`), `PGT_BENCH_BULK` (pg-transport only:
//! `off`, or `after,low_water,max_wait_us` for `set_bulk_read`; default: the
//! library's default), `PGT_BENCH_RCVBUF` (pg-transport over TCP only: this
//! `SO_RCVBUF`, which turns the kernel's autotuning off; default: not set).
//! The server CPU column's bracket is the backend's system CPU, from
//! `/proc/<pid>/stat` (10 ms ticks): for COPY OUT over a socket, mostly its
//! send path.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use pg_transport::{Message, RowCounter, source_fn};
use support::cluster::Cluster;
use support::early_abort;
use support::measure::{Cost, Timer, Who, machine_busy, peak_rss_kib, usage};

const WIDE_ROWS: f64 = 1_000_000.0;
const NARROW_ROWS: f64 = 5_000_000.0;
/// About 101 bytes per row: 1 GB.
const BIG_ROWS: f64 = 10_000_000.0;
const ABORT_TOTAL: f64 = 1_000_000_000.0;
/// Where the duplicate key sits; not scaled.
const ABORT_MARK: u64 = 10_000_000;

/// postgresql.conf additions: no fsync, everything cached, no checkpoints or
/// autovacuum in the middle of a measurement.
const SERVER_SETTINGS: &str = "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
     shared_buffers = 1GB\nmax_wal_size = 16GB\ncheckpoint_timeout = 1h\nautovacuum = off\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    Floor,
    Pgt,
    Tpg,
    /// tokio-postgres on a two-worker multi-thread runtime (its connection
    /// task can run beside the caller).
    TpgMt,
    Psql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Out,
    Select,
    In,
    Big,
    Abort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Wide,
    Narrow,
    /// Big and Abort name their own data.
    Generated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sock {
    Unix,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Case {
    op: Op,
    table: Table,
    sock: Sock,
    client: Client,
}

impl Client {
    const ALL: [(Self, &'static str); 5] = [
        (Self::Floor, "floor"),
        (Self::Pgt, "pgt"),
        (Self::Tpg, "tpg"),
        (Self::TpgMt, "tpgmt"),
        (Self::Psql, "psql"),
    ];
    fn label(self) -> &'static str {
        match self {
            Self::Floor => "server floor",
            Self::Pgt => "pg-transport",
            Self::Tpg => "tokio-postgres",
            Self::TpgMt => "tokio-postgres, multi-thread rt",
            Self::Psql => "psql",
        }
    }
}

impl Op {
    const ALL: [(Self, &'static str); 5] = [
        (Self::Out, "out"),
        (Self::Select, "select"),
        (Self::In, "in"),
        (Self::Big, "big"),
        (Self::Abort, "abort"),
    ];
}

impl Table {
    const ALL: [(Self, &'static str); 3] = [
        (Self::Wide, "wide"),
        (Self::Narrow, "narrow"),
        (Self::Generated, "gen"),
    ];
}

impl Sock {
    const ALL: [(Self, &'static str); 2] = [(Self::Unix, "unix"), (Self::Tcp, "tcp")];
}

fn name_of<T: PartialEq + Copy>(all: &[(T, &'static str)], v: T) -> &'static str {
    all.iter().find(|(x, _)| *x == v).map_or("?", |(_, n)| *n)
}

fn parse_name<T: Copy>(all: &[(T, &'static str)], s: &str) -> Result<T, String> {
    all.iter()
        .find(|(_, n)| *n == s)
        .map(|(x, _)| *x)
        .ok_or_else(|| format!("unknown case part {s:?}"))
}

impl Case {
    fn spec(self) -> String {
        format!(
            "{}:{}:{}:{}",
            name_of(&Client::ALL, self.client),
            name_of(&Op::ALL, self.op),
            name_of(&Table::ALL, self.table),
            name_of(&Sock::ALL, self.sock)
        )
    }

    fn parse(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let [client, op, table, sock] = parts.as_slice() else {
            return Err(format!("bad case spec {spec:?}"));
        };
        Ok(Self {
            client: parse_name(&Client::ALL, client)?,
            op: parse_name(&Op::ALL, op)?,
            table: parse_name(&Table::ALL, table)?,
            sock: parse_name(&Sock::ALL, sock)?,
        })
    }
}

/// Settings the parent hands to each case process.
#[derive(Debug, Clone)]
struct Env {
    port: u16,
    socket_dir: PathBuf,
    base: PathBuf,
    psql: PathBuf,
    big_rows: u64,
    abort_total: u64,
    chunk: usize,
}

impl Env {
    const VARS: [&'static str; 7] = [
        "PGT_BENCH_PORT",
        "PGT_BENCH_SOCKDIR",
        "PGT_BENCH_BASE",
        "PGT_BENCH_PSQL",
        "PGT_BENCH_BIG_ROWS",
        "PGT_BENCH_ABORT_TOTAL",
        "PGT_BENCH_CHUNK",
    ];

    fn to_vars(&self) -> Vec<(&'static str, String)> {
        let values = [
            self.port.to_string(),
            self.socket_dir.display().to_string(),
            self.base.display().to_string(),
            self.psql.display().to_string(),
            self.big_rows.to_string(),
            self.abort_total.to_string(),
            self.chunk.to_string(),
        ];
        Self::VARS.into_iter().zip(values).collect()
    }

    fn from_vars() -> Result<Self, String> {
        let get = |k: &str| std::env::var(k).map_err(|_| format!("{k} not set"));
        let num =
            |k: &str| -> Result<u64, String> { get(k)?.parse().map_err(|e| format!("{k}: {e}")) };
        Ok(Self {
            port: u16::try_from(num("PGT_BENCH_PORT")?).map_err(|e| e.to_string())?,
            socket_dir: get("PGT_BENCH_SOCKDIR")?.into(),
            base: get("PGT_BENCH_BASE")?.into(),
            psql: get("PGT_BENCH_PSQL")?.into(),
            big_rows: num("PGT_BENCH_BIG_ROWS")?,
            abort_total: num("PGT_BENCH_ABORT_TOTAL")?,
            chunk: usize::try_from(num("PGT_BENCH_CHUNK")?).map_err(|e| e.to_string())?,
        })
    }

    fn data_file(&self, table: Table) -> PathBuf {
        self.base
            .join(format!("{}.copy", name_of(&Table::ALL, table)))
    }

    fn big_query(&self) -> String {
        format!(
            "SELECT g, repeat('x', 92) FROM (SELECT generate_series(1, {}) AS g) s",
            self.big_rows
        )
    }
}

// --- the case process -----------------------------------------------------------

/// What a case reports besides its cost.
#[derive(Debug, Default)]
struct Outcome {
    cost: Cost,
    who: Option<Who>,
    bytes: u64,
    rows: u64,
    extra: Vec<(&'static str, String)>,
}

fn pgt_conninfo(env: &Env, sock: Sock) -> String {
    match sock {
        Sock::Unix => format!(
            "host={} port={} user=postgres dbname=postgres",
            env.socket_dir.display(),
            env.port
        ),
        Sock::Tcp => format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            env.port
        ),
    }
}

async fn pgt_connect(env: &Env, sock: Sock) -> Result<pg_transport::DefaultConnection, String> {
    let config: pg_transport::Config = pgt_conninfo(env, sock)
        .parse()
        .map_err(|e: pg_transport::Error| e.to_string())?;
    Ok(pg_transport::connect(&config)
        .await
        .map_err(|e| e.to_string())?
        .0)
}

async fn tpg_connect(env: &Env, sock: Sock) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres").port(env.port);
    match sock {
        Sock::Unix => config.host_path(&env.socket_dir),
        Sock::Tcp => config.host("127.0.0.1"),
    };
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("tokio-postgres connection: {e}");
        }
    });
    Ok(client)
}

/// Reads a file in chunks with blocking reads (the file is in the page cache),
/// the same way for both in-process clients.
struct FileChunks {
    file: std::fs::File,
    buf: BytesMut,
    chunk: usize,
}

impl FileChunks {
    fn open(path: &Path, chunk: usize) -> Result<Self, String> {
        Ok(Self {
            file: std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
            buf: BytesMut::new(),
            chunk,
        })
    }

    /// The next chunk; empty at the end.
    fn next(&mut self) -> std::io::Result<Bytes> {
        self.buf.resize(self.chunk, 0);
        let n = self.file.read(&mut self.buf)?;
        self.buf.truncate(n);
        Ok(self.buf.split().freeze())
    }
}

fn table_name(table: Table) -> &'static str {
    name_of(&Table::ALL, table)
}

fn abort_target(env: &Env, sock: Sock) -> early_abort::Target<'_> {
    match sock {
        Sock::Unix => early_abort::Target::Unix(&env.socket_dir, env.port),
        Sock::Tcp => early_abort::Target::Tcp(env.port),
    }
}

async fn abort_case(env: &Env, case: Case) -> Result<Outcome, String> {
    let target = abort_target(env, case.sock);
    let r = match case.client {
        Client::Pgt => {
            early_abort::with_pg_transport(&target, env.abort_total, ABORT_MARK, env.chunk).await?
        }
        Client::Tpg => {
            early_abort::with_tokio_postgres(&target, env.abort_total, ABORT_MARK, env.chunk)
                .await?
        }
        _ => return Err("early abort: pg-transport and tokio-postgres only".to_owned()),
    };
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    Ok(Outcome {
        cost: Cost {
            wall: r.wall,
            ..Cost::default()
        },
        who: Some(Who::SelfProcess),
        bytes: r.pulled,
        rows: 0,
        extra: vec![
            ("pulled", r.pulled.to_string()),
            ("written", r.written.to_string()),
            ("pulled_past_bad", r.pulled_past_bad().to_string()),
            ("written_after_error", opt(r.written_after_error)),
            ("pulled_after_error", opt(r.pulled_after_error)),
            (
                "error_to_return_ms",
                r.error_to_return.map_or_else(
                    || "-".to_owned(),
                    |d| format!("{:.2}", d.as_secs_f64() * 1e3),
                ),
            ),
            ("bad_line", opt(r.bad.map(|b| b.line))),
            ("bad_end", opt(r.bad.map(|b| b.end))),
            ("server_line", opt(r.server_line)),
            ("error", r.error.replace('\t', " ")),
        ],
    })
}

/// The server backend's pid, to read its CPU time from /proc.
async fn pgt_backend_pid(c: &mut pg_transport::DefaultConnection) -> Option<u32> {
    let results = c.simple_query("SELECT pg_backend_pid()").await.ok()?;
    results
        .first()?
        .rows
        .first()?
        .first()?
        .as_deref()?
        .parse()
        .ok()
}

async fn tpg_backend_pid(c: &tokio_postgres::Client) -> Option<u32> {
    let row = c.query_one("SELECT pg_backend_pid()", &[]).await.ok()?;
    u32::try_from(row.get::<_, i32>(0)).ok()
}

/// Sets `SO_RCVBUF` on a plain TCP connection (which turns the kernel's
/// receive-buffer autotuning off for it); other transports are left alone.
fn set_tcp_rcvbuf(c: &pg_transport::DefaultConnection, bytes: usize) -> Result<(), String> {
    use pg_transport::transport::{MaybeTls, Socket};
    if let Some(MaybeTls::Plain(Socket::Tcp(t))) = c.transport() {
        socket2::SockRef::from(t.get_ref())
            .set_recv_buffer_size(bytes)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    Ok(())
}

/// `off`, or `after,low_water,max_wait_us`.
fn parse_bulk(spec: &str) -> Result<Option<pg_transport::BulkRead>, String> {
    if spec == "off" {
        return Ok(None);
    }
    let bad = || format!("PGT_BENCH_BULK={spec:?}: want `off` or `after,low_water,max_wait_us`");
    let n: Vec<u64> = spec
        .split(',')
        .map(|v| v.trim().parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [after, low_water, us] = n[..] else {
        return Err(bad());
    };
    Ok(Some(
        pg_transport::BulkRead::DEFAULT
            .after(after as usize)
            .low_water(low_water as usize)
            .max_wait(Duration::from_micros(us)),
    ))
}

async fn pgt_case(env: &Env, case: Case) -> Result<Outcome, String> {
    let mut c = pgt_connect(env, case.sock).await?;
    if let Some(us) = std::env::var("PGT_BENCH_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.set_read_spin(Duration::from_micros(us));
    }
    if let Ok(spec) = std::env::var("PGT_BENCH_BULK") {
        c.set_bulk_read(parse_bulk(&spec)?);
    }
    if let Some(bytes) = std::env::var("PGT_BENCH_RCVBUF")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        set_tcp_rcvbuf(&c, bytes)?;
    }
    let pid = pgt_backend_pid(&mut c).await;
    let t = table_name(case.table);
    let mut out = Outcome::default();
    match case.op {
        Op::Out | Op::Big => {
            let sql = match case.op {
                Op::Big => format!("COPY ({}) TO STDOUT", env.big_query()),
                _ => format!("COPY {t} TO STDOUT"),
            };
            let mut bytes = 0u64;
            let joined = std::env::var_os("PGT_BENCH_JOINED").is_some();
            let sink = |b: Bytes| {
                bytes += b.len() as u64;
                async { Ok::<(), Infallible>(()) }
            };
            let timer = Timer::start(Who::SelfProcess, pid);
            out.rows = if joined {
                c.copy_out_joined(&sql, sink).await
            } else {
                c.copy_out(&sql, sink).await
            }
            .map_err(|e| e.to_string())?;
            out.cost = timer.stop();
            out.bytes = bytes;
        }
        Op::In => {
            let mut file = FileChunks::open(&env.data_file(case.table), env.chunk)?;
            let mut bytes = 0u64;
            let timer = Timer::start(Who::SelfProcess, pid);
            out.rows = c
                .copy_in(
                    &format!("COPY {t}_in FROM STDIN"),
                    source_fn(|| {
                        let chunk = file.next();
                        if let Ok(c) = &chunk {
                            bytes += c.len() as u64;
                        }
                        async move { chunk }
                    }),
                )
                .await
                .map_err(|e| e.to_string())?;
            out.cost = timer.stop();
            out.bytes = bytes;
        }
        Op::Select => {
            let timer = Timer::start(Who::SelfProcess, pid);
            c.session_mut()
                .query(&format!("SELECT * FROM {t}"))
                .map_err(|e| e.to_string())?;
            c.send_buf_msg().await.map_err(|e| e.to_string())?;
            let mut counter = RowCounter::default();
            let mut error = None;
            loop {
                /// What to do after one `next_message_with`.
                enum Step {
                    Next,
                    Fill,
                    Done,
                }
                let step = match c.session_mut().next_message_with(&mut counter) {
                    Ok(Some(Message::ReadyForQuery(_))) => Step::Done,
                    Ok(Some(Message::ErrorResponse(fields))) => {
                        error.get_or_insert_with(|| fields.to_db_error().message);
                        Step::Next
                    }
                    Ok(Some(_)) => Step::Next,
                    Ok(None) => Step::Fill,
                    Err(e) => return Err(e.to_string()),
                };
                match step {
                    Step::Next => {}
                    Step::Fill => c.fill_recv_buf(None).await.map_err(|e| e.to_string())?,
                    Step::Done => break,
                }
            }
            out.cost = timer.stop();
            if let Some(e) = error {
                return Err(e);
            }
            out.rows = counter.rows;
        }
        Op::Abort => return Err("see abort_case".to_owned()),
    }
    out.who = Some(Who::SelfProcess);
    c.close().await;
    Ok(out)
}

async fn tpg_case(env: &Env, case: Case) -> Result<Outcome, String> {
    let c = tpg_connect(env, case.sock).await?;
    let pid = tpg_backend_pid(&c).await;
    let t = table_name(case.table);
    let mut out = Outcome::default();
    let e = |e: tokio_postgres::Error| e.to_string();
    match case.op {
        Op::Out | Op::Big => {
            let sql = match case.op {
                Op::Big => format!("COPY ({}) TO STDOUT", env.big_query()),
                _ => format!("COPY {t} TO STDOUT"),
            };
            let timer = Timer::start(Who::SelfProcess, pid);
            let stream = c.copy_out(&sql).await.map_err(e)?;
            let mut stream = pin!(stream);
            while let Some(chunk) = stream.next().await {
                out.bytes += chunk.map_err(e)?.len() as u64;
            }
            out.cost = timer.stop();
        }
        Op::In => {
            let mut file = FileChunks::open(&env.data_file(case.table), env.chunk)?;
            let timer = Timer::start(Who::SelfProcess, pid);
            let sink = c
                .copy_in::<_, Bytes>(&format!("COPY {t}_in FROM STDIN"))
                .await
                .map_err(e)?;
            let mut sink = pin!(sink);
            loop {
                let chunk = file.next().map_err(|e| e.to_string())?;
                if chunk.is_empty() {
                    break;
                }
                out.bytes += chunk.len() as u64;
                sink.send(chunk).await.map_err(e)?;
            }
            out.rows = sink.as_mut().finish().await.map_err(e)?;
            out.cost = timer.stop();
        }
        Op::Select => {
            let timer = Timer::start(Who::SelfProcess, pid);
            let stream = c
                .simple_query_raw(&format!("SELECT * FROM {t}"))
                .await
                .map_err(e)?;
            let mut stream = pin!(stream);
            while let Some(m) = stream.next().await {
                if let tokio_postgres::SimpleQueryMessage::Row(_) = m.map_err(e)? {
                    out.rows += 1;
                }
            }
            out.cost = timer.stop();
        }
        Op::Abort => return Err("see abort_case".to_owned()),
    }
    out.who = Some(Who::SelfProcess);
    Ok(out)
}

fn psql_case(env: &Env, case: Case) -> Result<Outcome, String> {
    let t = table_name(case.table);
    let host = match case.sock {
        Sock::Unix => env.socket_dir.display().to_string(),
        Sock::Tcp => "127.0.0.1".to_owned(),
    };
    let mut cmd = Command::new(&env.psql);
    cmd.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        "postgres",
        "-d",
        "postgres",
    ])
    .args(["-h", &host, "-p", &env.port.to_string()])
    .env("PGSSLMODE", "disable");
    match case.op {
        Op::Out => cmd.args(["-c", &format!("\\copy {t} to '/dev/null'")]),
        Op::Big => cmd.args([
            "-c",
            &format!("\\copy ({}) to '/dev/null'", env.big_query()),
        ]),
        Op::In => cmd.args([
            "-c",
            &format!(
                "\\copy {t}_in from '{}'",
                env.data_file(case.table).display()
            ),
        ]),
        Op::Select => cmd
            .args(["-A", "-t", "-o", "/dev/null", "-c"])
            .arg(format!("SELECT * FROM {t}")),
        Op::Abort => return Err("no psql early-abort case".to_owned()),
    };
    let timer = Timer::start(Who::Children, None);
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let cost = timer.stop();
    if !output.status.success() {
        return Err(format!(
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let rows = String::from_utf8_lossy(&output.stdout)
        .trim()
        .strip_prefix("COPY ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(Outcome {
        cost,
        who: Some(Who::Children),
        rows,
        ..Outcome::default()
    })
}

async fn floor_case(env: &Env, case: Case) -> Result<Outcome, String> {
    let mut c = pgt_connect(env, Sock::Unix).await?;
    let pid = pgt_backend_pid(&mut c).await;
    let t = table_name(case.table);
    let sql = match case.op {
        Op::Out => format!("COPY {t} TO '/dev/null'"),
        Op::Big => format!("COPY ({}) TO '/dev/null'", env.big_query()),
        Op::In => format!("COPY {t}_in FROM '{}'", env.data_file(case.table).display()),
        Op::Select | Op::Abort => return Err("no floor case for this".to_owned()),
    };
    let timer = Timer::start(Who::SelfProcess, pid);
    let results = c.simple_query(&sql).await.map_err(|e| e.to_string())?;
    let cost = timer.stop();
    c.close().await;
    let rows = results
        .first()
        .and_then(|r| r.tag.strip_prefix("COPY "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(Outcome {
        cost,
        who: Some(Who::SelfProcess),
        rows,
        ..Outcome::default()
    })
}

/// Runs one case in this process and prints its `RESULT` line.
fn case_process(spec: &str) -> Result<(), String> {
    let case = Case::parse(spec)?;
    let env = Env::from_vars()?;
    let out = match case.client {
        Client::Psql => psql_case(&env, case)?,
        client => {
            let rt = match client {
                Client::TpgMt => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build(),
                _ => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
            }
            .map_err(|e| e.to_string())?;
            rt.block_on(async {
                match client {
                    _ if case.op == Op::Abort => abort_case(&env, case).await,
                    Client::Pgt => pgt_case(&env, case).await,
                    Client::Tpg | Client::TpgMt => tpg_case(&env, case).await,
                    _ => floor_case(&env, case).await,
                }
            })?
        }
    };
    let who = out.who.unwrap_or(Who::SelfProcess);
    let peak = peak_rss_kib(who);
    let ru_maxrss = usage(who).maxrss_kib;
    let mut line = format!(
        "RESULT\twall={:.6}\tuser={:.6}\tsys={:.6}\tpeak_rss_kib={peak}\tru_maxrss_kib={ru_maxrss}\tbytes={}\trows={}",
        out.cost.wall.as_secs_f64(),
        out.cost.user,
        out.cost.sys,
        out.bytes,
        out.rows
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.6}"));
    let _ = write!(
        line,
        "\tserver_cpu={}\tserver_sys={}\tserver_wait={}\tclient_wait={}\tmachine_cpu={}",
        opt(out.cost.server),
        opt(out.cost.server_sys),
        opt(out.cost.server_wait),
        opt(out.cost.client_wait),
        opt(out.cost.machine)
    );
    for (k, v) in &out.extra {
        let _ = write!(line, "\t{k}={v}");
    }
    println!("{line}");
    Ok(())
}

// --- the parent -----------------------------------------------------------------

/// One run's `RESULT` fields.
type Run = BTreeMap<String, String>;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scaled(n: f64, scale: f64) -> u64 {
    (n * scale).round().max(1.0) as u64
}

fn prepare_data(cluster: &Cluster, wide: u64, narrow: u64) -> Result<(), String> {
    let base = cluster.base.display();
    cluster.psql(&format!(
        "SELECT setseed(0.42);\n\
         CREATE TABLE wide (id int4, big int8, txt text, ts timestamp, num numeric);\n\
         INSERT INTO wide SELECT\n\
           100000 + (random() * 899999)::int4,\n\
           1000000000000 + (random() * 8999999999999)::int8,\n\
           substr(md5(g::text) || ' ' || md5((g + 7)::text), 1, 36 + (random() * 16)::int),\n\
           timestamp '2024-01-01' + random() * interval '330 days',\n\
           round((10000 + random() * 89999)::numeric, 4)\n\
         FROM generate_series(1, {wide}) g;\n\
         CREATE TABLE narrow (n int4);\n\
         INSERT INTO narrow SELECT 1000000 + (random() * 8999999)::int4 FROM generate_series(1, {narrow});\n\
         CREATE TABLE wide_in (LIKE wide);\n\
         CREATE TABLE narrow_in (LIKE narrow);\n\
         COPY wide TO '{base}/wide.copy';\n\
         COPY narrow TO '{base}/narrow.copy';"
    ))?;
    // psql -c runs a multi-statement string as one transaction: VACUUM apart.
    cluster.psql("VACUUM (FREEZE, ANALYZE) wide, narrow")?;
    cluster.psql("CHECKPOINT")?;
    // Warm the page cache (files; read in chunks, so that this process stays
    // small) and shared buffers (tables).
    for f in ["wide.copy", "narrow.copy"] {
        let path = cluster.base.join(f);
        let mut file =
            std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        while file.read(&mut buf).map_err(|e| e.to_string())? > 0 {}
        cluster.give_to_server(&path)?;
    }
    cluster.psql(
        "COPY wide TO '/dev/null'; COPY narrow TO '/dev/null'; \
         SELECT count(*) FROM wide; SELECT count(*) FROM narrow",
    )?;
    Ok(())
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let clients = [Client::Pgt, Client::Tpg, Client::TpgMt, Client::Psql];
    for table in [Table::Wide, Table::Narrow] {
        for op in [Op::Out, Op::Select, Op::In] {
            if op != Op::Select {
                cases.push(Case {
                    op,
                    table,
                    sock: Sock::Unix,
                    client: Client::Floor,
                });
            }
            for sock in [Sock::Unix, Sock::Tcp] {
                for client in clients {
                    cases.push(Case {
                        op,
                        table,
                        sock,
                        client,
                    });
                }
            }
        }
    }
    for client in [Client::Floor, Client::Pgt, Client::Tpg, Client::Psql] {
        cases.push(Case {
            op: Op::Big,
            table: Table::Generated,
            sock: Sock::Unix,
            client,
        });
    }
    for sock in [Sock::Unix, Sock::Tcp] {
        for client in [Client::Pgt, Client::Tpg] {
            cases.push(Case {
                op: Op::Abort,
                table: Table::Generated,
                sock,
                client,
            });
        }
    }
    cases
}

fn run_case_process(env: &Env, case: Case) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Profiling hook: PGT_BENCH_WRAP="strace -c -f -o /tmp/{case}.strace" or
    // "perf record -g -o /tmp/{case}.perf.data" runs each case under that tool.
    let wrap: Vec<String> = std::env::var("PGT_BENCH_WRAP")
        .map(|w| {
            w.split_whitespace()
                .map(|a| a.replace("{case}", &case.spec().replace(':', "-")))
                .collect()
        })
        .unwrap_or_default();
    let mut cmd = match wrap.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let output = cmd
        .args(["--case", &case.spec()])
        .envs(env.to_vars())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT\t"))
        .ok_or_else(|| format!("{}: no result ({})", case.spec(), output.status))?;
    Ok(line
        .split('\t')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn before_case(cluster: &Cluster, case: Case) -> Result<(), String> {
    let sql = match case.op {
        Op::In => format!("TRUNCATE {}_in; CHECKPOINT", table_name(case.table)),
        _ => "CHECKPOINT".to_owned(),
    };
    cluster.psql(&sql).map(drop)
}

fn num(run: &Run, key: &str) -> f64 {
    run.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Medians of one case's runs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    wall: f64,
    wall_min: f64,
    wall_max: f64,
    cpu: f64,
    rss_mib: f64,
    bytes: f64,
    rows: f64,
    server: f64,
    server_sys: f64,
    wait_ms: f64,
}

fn summarize(runs: &[Run]) -> Summary {
    let walls: Vec<f64> = runs.iter().map(|r| num(r, "wall")).collect();
    Summary {
        wall: median(walls.clone()),
        wall_min: walls.iter().copied().fold(f64::INFINITY, f64::min),
        wall_max: walls.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        cpu: median(
            runs.iter()
                .map(|r| num(r, "user") + num(r, "sys"))
                .collect(),
        ),
        rss_mib: median(
            runs.iter()
                .map(|r| num(r, "peak_rss_kib") / 1024.0)
                .collect(),
        ),
        bytes: median(runs.iter().map(|r| num(r, "bytes")).collect()),
        rows: median(runs.iter().map(|r| num(r, "rows")).collect()),
        server: median(runs.iter().map(|r| num(r, "server_cpu")).collect()),
        server_sys: median(runs.iter().map(|r| num(r, "server_sys")).collect()),
        wait_ms: median(runs.iter().map(|r| run_queue_wait(r) * 1e3).collect()),
    }
}

/// Seconds the client and the server backend spent runnable but waiting for a
/// CPU during the run: how much something else on the machine got in the way.
/// NaN when neither is known (psql: its backend pid is not known here).
fn run_queue_wait(run: &Run) -> f64 {
    let (s, c) = (num(run, "server_wait"), num(run, "client_wait"));
    match (s.is_nan(), c.is_nan()) {
        (true, true) => f64::NAN,
        (true, false) => c,
        (false, true) => s,
        (false, false) => s + c,
    }
}

/// Runs whose client and server waited for a CPU more than this share of the
/// wall time are run again (up to `PGT_BENCH_RETRIES` times).
const MAX_WAIT_SHARE: f64 = 0.03;

/// Waits (at most `max`) until the machine has been nearly idle for 300 ms;
/// returns the load last seen, in cores.
fn wait_for_quiet(max: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let Some(a) = machine_busy() else {
            return f64::NAN;
        };
        std::thread::sleep(Duration::from_millis(300));
        let load = machine_busy().map_or(f64::NAN, |b| (b - a) / 0.3);
        if load.is_nan() || load < 0.15 || start.elapsed() >= max {
            return load;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
}

fn op_title(op: Op, table: Table) -> String {
    let t = table_name(table);
    match op {
        Op::Out => format!("COPY OUT `{t}` (`COPY {t} TO STDOUT`)"),
        Op::Select => format!("Streamed SELECT `{t}` (`SELECT * FROM {t}`, simple query)"),
        Op::In => format!("COPY IN `{t}` (`COPY {t}_in FROM STDIN`)"),
        Op::Big => "1 GB COPY OUT (generated rows), Unix socket".to_owned(),
        Op::Abort => "Early abort".to_owned(),
    }
}

fn floor_of(results: &BTreeMap<Case, Vec<Run>>, op: Op, table: Table) -> Option<Summary> {
    let floor_op = if op == Op::Select { Op::Out } else { op };
    results
        .get(&Case {
            op: floor_op,
            table,
            sock: Sock::Unix,
            client: Client::Floor,
        })
        .map(|r| summarize(r))
}

fn report(results: &BTreeMap<Case, Vec<Run>>) -> String {
    let mut md = String::new();
    let mut groups: Vec<(Op, Table)> = results.keys().map(|c| (c.op, c.table)).collect();
    groups.dedup();
    for (op, table) in groups {
        if op == Op::Abort {
            continue;
        }
        let floor = floor_of(results, op, table);
        let _ = writeln!(md, "\n#### {}\n", op_title(op, table));
        if let Some(f) = floor {
            let mb = results
                .iter()
                .filter(|(c, _)| c.op == op && c.table == table && c.client == Client::Pgt)
                .map(|(_, r)| summarize(r).bytes)
                .fold(0.0, f64::max)
                / 1e6;
            let _ = if op == Op::Select {
                writeln!(
                    md,
                    "Floor (the COPY OUT floor of the same table): {:.3} s ({:.3}–{:.3}); {:.0} rows.\n",
                    f.wall, f.wall_min, f.wall_max, f.rows
                )
            } else {
                writeln!(
                    md,
                    "Floor: {:.3} s ({:.3}–{:.3}); {:.0} rows, {mb:.1} MB of COPY data.\n",
                    f.wall, f.wall_min, f.wall_max, f.rows
                )
            };
        }
        let _ = writeln!(
            md,
            "| client | socket | s (median) | min–max | × floor | client CPU s | CPU ÷ tokio-postgres | server CPU s (sys) | run-queue wait ms | peak RSS MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (case, runs) in results {
            if case.op != op || case.table != table {
                continue;
            }
            let s = summarize(runs);
            let tpg = results
                .get(&Case {
                    client: Client::Tpg,
                    ..*case
                })
                .map(|r| summarize(r).cpu);
            let ratio = floor.map_or(f64::NAN, |f| s.wall / f.wall);
            let cpu_vs = match (case.client, tpg) {
                (Client::Floor, _) | (_, None) => String::new(),
                (_, Some(t)) => format!("{:.2}", s.cpu / t),
            };
            let (sock, cpu, rss) = if case.client == Client::Floor {
                ("(server)", String::new(), String::new())
            } else {
                (
                    name_of(&Sock::ALL, case.sock),
                    format!("{:.3}", s.cpu),
                    format!("{:.1}", s.rss_mib),
                )
            };
            let server = match (s.server.is_nan(), s.server_sys.is_nan()) {
                (true, _) => "-".to_owned(),
                (false, true) => format!("{:.3}", s.server),
                (false, false) => format!("{:.3} ({:.2})", s.server, s.server_sys),
            };
            let _ = writeln!(
                md,
                "| {} | {sock} | {:.3} | {:.3}–{:.3} | {ratio:.2}× | {cpu} | {cpu_vs} | {server} | {:.1} | {rss} |",
                case.client.label(),
                s.wall,
                s.wall_min,
                s.wall_max,
                s.wait_ms,
            );
        }
    }
    let aborts: Vec<_> = results.iter().filter(|(c, _)| c.op == Op::Abort).collect();
    if !aborts.is_empty() {
        let _ = writeln!(
            md,
            "\n#### Early abort\n\n| client | socket | run | s | pulled MB | pulled past the bad row | written after the error arrived | pulled after the error arrived | ms from the error to return | bad row line / server's line | error |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for (case, runs) in aborts {
            for (i, r) in runs.iter().enumerate() {
                let get = |k: &str| r.get(k).cloned().unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.3} | {:.1} | {} | {} | {} | {} | {} / {} | {} |",
                    case.client.label(),
                    name_of(&Sock::ALL, case.sock),
                    i + 1,
                    num(r, "wall"),
                    num(r, "pulled") / 1e6,
                    get("pulled_past_bad"),
                    get("written_after_error"),
                    get("pulled_after_error"),
                    get("error_to_return_ms"),
                    get("bad_line"),
                    get("server_line"),
                    get("error"),
                );
            }
        }
    }
    md
}

fn targets(results: &BTreeMap<Case, Vec<Run>>) -> String {
    let mut md = String::from(
        "\n#### Targets (pg-transport, medians)\n\n| target | socket | measured | met? |\n|---|---|---:|---|\n",
    );
    let get = |op, table, sock, client| {
        results
            .get(&Case {
                op,
                table,
                sock,
                client,
            })
            .map(|r| summarize(r))
    };
    let mut line = |what: &str, sock: Sock, value: Option<f64>, unit: &str, limit: f64| {
        let (shown, met) = match value {
            Some(v) if !v.is_nan() => (
                format!("{v:.3}{unit}"),
                if v <= limit { "met" } else { "**not met**" },
            ),
            _ => ("-".to_owned(), "not measured"),
        };
        let _ = writeln!(
            md,
            "| {what} | {} | {shown} | {met} |",
            name_of(&Sock::ALL, sock)
        );
    };
    for sock in [Sock::Unix, Sock::Tcp] {
        for table in [Table::Wide, Table::Narrow] {
            let t = table_name(table);
            let ratio = |op| {
                let floor = floor_of(results, op, table)?;
                Some(get(op, table, sock, Client::Pgt)?.wall / floor.wall)
            };
            line(
                &format!("COPY OUT {t} ≤ 1.12× floor"),
                sock,
                ratio(Op::Out),
                "×",
                1.12,
            );
            let cpu = get(Op::Out, table, sock, Client::Pgt)
                .zip(get(Op::Out, table, sock, Client::Tpg))
                .map(|(p, t)| p.cpu / t.cpu);
            line(
                &format!("COPY OUT {t} client CPU ≤ 0.6× tokio-postgres"),
                sock,
                cpu,
                "×",
                0.6,
            );
            line(
                &format!("COPY IN {t} ≤ 1.03× floor"),
                sock,
                ratio(Op::In),
                "×",
                1.03,
            );
            line(
                &format!("streamed SELECT {t} ≤ 1.05× floor"),
                sock,
                ratio(Op::Select),
                "×",
                1.05,
            );
        }
    }
    let rss = get(Op::Big, Table::Generated, Sock::Unix, Client::Pgt).map(|s| s.rss_mib);
    line(
        "1 GB COPY OUT peak RSS < 8 MiB",
        Sock::Unix,
        rss,
        " MiB",
        8.0,
    );
    for sock in [Sock::Unix, Sock::Tcp] {
        let after = results
            .get(&Case {
                op: Op::Abort,
                table: Table::Generated,
                sock,
                client: Client::Pgt,
            })
            .map(|runs| {
                runs.iter()
                    .map(|r| num(r, "written_after_error") / 1e6)
                    .fold(0.0, f64::max)
            });
        line(
            "early abort: written after the error (max of runs) < 1 MB",
            sock,
            after,
            " MB",
            1.0,
        );
    }
    md
}

/// Gives the parent, and so the server and every case process (the policy is
/// inherited across fork and exec), priority over other work on the machine:
/// `PGT_BENCH_SCHED=fifo` (default: SCHED_FIFO priority 1, so a waking client or
/// backend preempts other processes at once, as it would run at once on an idle
/// machine; the kernel's RT throttling still leaves others 5 %), `nice` (nice
/// -19), or `none`.
fn set_scheduling() {
    let policy = std::env::var("PGT_BENCH_SCHED").unwrap_or_else(|_| "fifo".to_owned());
    let rc = match policy.as_str() {
        "fifo" => {
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: `param` is a valid sched_param for the duration of the call.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) }
        }
        // SAFETY: setpriority has no memory preconditions.
        "nice" => unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -19) },
        _ => 0,
    };
    if rc != 0 {
        eprintln!(
            "warning: PGT_BENCH_SCHED={policy} not applied: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn parent() -> Result<(), String> {
    let scale = env_f64("PGT_BENCH_ROWS_SCALE", 1.0);
    let reps = env_f64("PGT_BENCH_REPS", 3.0).max(1.0) as usize;
    let chunk = env_f64("PGT_BENCH_CHUNK", 65536.0).max(1.0) as usize;
    let filters: Vec<String> = std::env::var("PGT_BENCH_CASES")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let quiet_wait = Duration::from_secs_f64(env_f64("PGT_BENCH_QUIET_WAIT", 0.0).max(0.0));
    set_scheduling();
    let max_retries = env_f64("PGT_BENCH_RETRIES", 3.0).max(0.0) as usize;
    let started = Instant::now();
    let mut cluster = Cluster::start(SERVER_SETTINGS)?;
    eprintln!(
        "cluster: PostgreSQL {} port {} in {}",
        cluster.version(),
        cluster.port,
        cluster.base.display()
    );
    let result = (|| {
        let (wide, narrow) = (scaled(WIDE_ROWS, scale), scaled(NARROW_ROWS, scale));
        prepare_data(&cluster, wide, narrow)?;
        eprintln!(
            "data ready after {:.1} s ({wide} wide rows, {narrow} narrow rows)",
            started.elapsed().as_secs_f64()
        );
        let env = Env {
            port: cluster.port,
            socket_dir: cluster.socket_dir.clone(),
            base: cluster.base.clone(),
            psql: cluster.psql_bin(),
            big_rows: scaled(BIG_ROWS, scale),
            abort_total: scaled(ABORT_TOTAL, scale).max(ABORT_MARK * 2),
            chunk,
        };
        let cases: Vec<Case> = all_cases()
            .into_iter()
            .filter(|c| filters.is_empty() || filters.iter().any(|f| c.spec().contains(f.as_str())))
            .collect();
        let mut results: BTreeMap<Case, Vec<Run>> = BTreeMap::new();
        for rep in 1..=reps {
            for &case in &cases {
                let mut attempt = 0;
                let run = loop {
                    let quiet = wait_for_quiet(quiet_wait);
                    before_case(&cluster, case)?;
                    let mut run = run_case_process(&env, case)?;
                    let wait = run_queue_wait(&run);
                    run.insert("load_before".to_owned(), format!("{quiet:.3}"));
                    run.insert("retries".to_owned(), attempt.to_string());
                    let share = wait / num(&run, "wall");
                    if share.is_nan() || share <= MAX_WAIT_SHARE || attempt >= max_retries {
                        break run;
                    }
                    attempt += 1;
                    eprintln!(
                        "rep {rep}/{reps} {:<26} disturbed (waited {:.1} ms for a CPU): again",
                        case.spec(),
                        wait * 1e3
                    );
                };
                eprintln!(
                    "rep {rep}/{reps} {:<26} {}",
                    case.spec(),
                    run.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                results.entry(case).or_default().push(run);
            }
        }
        Ok::<_, String>((results, env))
    })();
    let version = cluster.version();
    cluster.stop();
    let (results, env) = result?;
    println!(
        "<!-- cargo bench --bench copy: PostgreSQL {version}; scale {scale}; {reps} runs per case, medians; \
         COPY IN chunk {} bytes; {:.0} s in all -->",
        env.chunk,
        started.elapsed().as_secs_f64()
    );
    print!("{}", report(&results));
    print!("{}", targets(&results));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(spec) = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
    {
        if let Err(e) = case_process(spec) {
            eprintln!("case {spec} failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: do not
    // start a server and run for minutes inside a test run.
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("benches/copy.rs: run it with `cargo bench --bench copy`");
        return;
    }
    if let Err(e) = parent() {
        eprintln!("copy bench failed: {e}");
        std::process::exit(1);
    }
}
