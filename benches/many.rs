//! Cost as the work grows: many connections against one throwaway PostgreSQL
//! server, pg-transport beside tokio-postgres (its `Client` with the
//! `Connection` spawned on the same runtime).
//!
//! Run: `cargo bench --bench many` (about five minutes). Prints Markdown
//! tables on stdout (progress on stderr) and draws the curves into
//! `docs/many-connections.svg`. Results: `docs/benchmarks.md`.
//!
//! The parent starts a cluster (`support/cluster.rs`) with
//! `max_connections = 1100` and small `shared_buffers`, adds a SCRAM user,
//! then re-executes itself once per case and repetition (`--case <spec>`), so
//! every measurement is a fresh process: its heap, RSS and `getrusage` belong
//! to that case alone. Cases:
//!
//! * `mem:<client>:<socket>:<N>`: open N connections (32 at a time), run
//!   `SELECT pg_backend_pid()` on each, wait 100 ms, and report the live heap
//!   (a counting global allocator: bytes allocated and not freed) and the RSS
//!   (`VmRSS`) grown since before the first, divided by N. The `Vec` holding the
//!   handles is allocated after the baseline, so the handles' own size counts.
//!   Also the time to open the N, and one probe pass over them
//!   (`is_connected()`; tokio-postgres `is_closed()`).
//! * `bufs:<client>`: one connection over the Unix socket: its heap and (ours)
//!   receive/send buffer capacities after startup and a small query, after a
//!   ~101 MB COPY OUT, after one more small query, while it waits after
//!   LISTEN, and after a notification (sent by a second connection).
//! * `connect:<client>:<auth>:<socket>:<mode>`: 1,000 connections established
//!   (startup and authentication done) and dropped, sequentially (`seq`) or 32
//!   at a time (`conc`); `trust` as `postgres`, `scram` (SCRAM-SHA-256, 4,096
//!   iterations) as `scram_user`. Rate and client CPU (`RUSAGE_SELF`) per connect.
//! * `busy:<client>:<socket>:<rt>`: 100 connections each running a 10,000-row
//!   SELECT (`SELECT id, txt FROM rows10k`, 41 bytes of text per row)
//!   concurrently, one task per connection, on a current-thread runtime (`ct`)
//!   or a 2-worker runtime (`mt`). Ours: `query_with(sql, &mut RowCounter)`
//!   (`pgt-sink`) or `query_stream` (owned rows, `pgt-stream`), simple query,
//!   text; tokio-postgres: `query_raw` of a statement prepared before the
//!   clock starts (extended protocol, binary). Rows/s and client CPU per row.
//! * `probe:<client>:<socket>`: 1,000 idle connections; one probe pass over
//!   all (median of 11 passes), then 10 backends terminated
//!   (`pg_terminate_backend(pid, 5000)`, which waits for the exit), 100 ms,
//!   and the pass that finds them.
//!
//! Environment: `PGT_MANY_REPS` (default 3; timing cases, medians reported;
//! memory cases run once), `PGT_MANY_CASES` (comma-separated substrings of
//! case specs; only matching cases run), `PGT_MANY_NS` (default
//! `10,100,1000`), `PGT_MANY_PLOT` (SVG path, default `docs/many-connections.svg`),
//! `PG_BINDIR` (server binaries).

#[allow(
    dead_code,
    reason = "shared with benches/copy.rs, which uses more of it"
)]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use pg_transport::{DefaultConnection, RowCounter};
use support::cluster::Cluster;
use support::measure::{Who, usage};

#[path = "many/plot.rs"]
mod plot;

struct Counting;

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER_SETTINGS: &str = "max_connections = 1100\nshared_buffers = 32MB\nfsync = off\n\
     synchronous_commit = off\nautovacuum = off\nlog_min_messages = fatal\n";
const SCRAM_USER: &str = "scram_user";
const SCRAM_PASSWORD: &str = "bench-password";
const CONNECTS: usize = 1000;
const CONNECT_CONCURRENCY: usize = 32;
const BUSY_CONNS: usize = 100;
const BUSY_ROWS: u64 = 10_000;
const BUSY_SQL: &str = "SELECT id, txt FROM rows10k";
const PROBE_CONNS: usize = 1000;
const PROBE_KILLED: usize = 10;
const BIG_COPY: &str =
    "COPY (SELECT g, repeat('x', 92) FROM generate_series(1, 1000000) g) TO STDOUT";

/// One case's measurements, by name.
type Values = BTreeMap<String, f64>;

/// Where the server listens (passed to case processes in the environment).
#[derive(Debug, Clone)]
struct Env {
    port: u16,
    socket_dir: PathBuf,
}

impl Env {
    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
        Self {
            port: var("PGT_MANY_PORT").parse().expect("port"),
            socket_dir: var("PGT_MANY_SOCK").into(),
        }
    }

    fn pgt_config(&self, sock: &str, scram: bool) -> pg_transport::Config {
        let host = match sock {
            "unix" => format!("host={}", self.socket_dir.display()),
            _ => "host=127.0.0.1 sslmode=disable".to_owned(),
        };
        let user = if scram {
            format!("user={SCRAM_USER} password={SCRAM_PASSWORD}")
        } else {
            "user=postgres".to_owned()
        };
        format!("{host} port={} {user} dbname=postgres", self.port)
            .parse()
            .expect("conninfo")
    }

    fn tpg_config(&self, sock: &str, scram: bool) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.dbname("postgres").port(self.port);
        if scram {
            config.user(SCRAM_USER).password(SCRAM_PASSWORD);
        } else {
            config.user("postgres");
        }
        match sock {
            "unix" => config.host_path(&self.socket_dir),
            _ => config.host("127.0.0.1"),
        };
        config
    }
}

async fn pgt_open(config: &pg_transport::Config) -> DefaultConnection {
    pg_transport::connect(config).await.expect("connect").0
}

async fn tpg_open(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        // Ends with an error when its backend is terminated (the probe case).
        let _ = connection.await;
    });
    client
}

async fn pgt_pid(conn: &mut DefaultConnection) -> i32 {
    let r = conn
        .simple_query("SELECT pg_backend_pid()")
        .await
        .expect("query");
    r[0].rows[0][0]
        .as_deref()
        .expect("pid")
        .parse()
        .expect("pid")
}

async fn tpg_pid(client: &tokio_postgres::Client) -> i32 {
    let r = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .expect("query");
    r.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .expect("pid")
}

/// Runs `make()` `n` times, at most `concurrency` at once, collecting the outputs.
async fn bounded<T, F, Fut>(n: usize, concurrency: usize, make: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    stream::iter(0..n)
        .map(|_| make())
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn runtime(kind: &str) -> tokio::runtime::Runtime {
    let mut builder = match kind {
        "mt" => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    if kind == "mt" {
        builder.worker_threads(2);
    }
    builder.enable_all().build().expect("runtime")
}

/// `VmRSS` of this process, bytes.
fn rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0)
}

fn live() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64
}

fn cpu() -> f64 {
    let u = usage(Who::SelfProcess);
    u.user + u.sys
}

/// Raises the soft open-file limit to the hard one (1,000 sockets and more).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the calls read and write; no other effect.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Times `pass()` `runs` times; the median, seconds.
fn timed_passes(runs: usize, mut pass: impl FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::new();
    let mut last = 0;
    for _ in 0..runs {
        let t = Instant::now();
        last = std::hint::black_box(pass());
        times.push(t.elapsed().as_secs_f64());
    }
    (median(times), last)
}

// ---------------------------------------------------------------- cases

fn case_mem(env: &Env, client: &str, sock: &str, n: usize) -> Values {
    runtime("ct").block_on(async {
        let mut out = Values::new();
        if client == "pgt" {
            let config = env.pgt_config(sock, false);
            let mut warm = pgt_open(&config).await;
            pgt_pid(&mut warm).await;
            warm.close().await;
            let (heap0, rss0, t) = (live(), rss(), Instant::now());
            let mut conns = Vec::with_capacity(n);
            conns.extend(bounded(n, CONNECT_CONCURRENCY, || pgt_open(&config)).await);
            out.insert("open_s".into(), t.elapsed().as_secs_f64());
            for c in &mut conns {
                pgt_pid(c).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            out.insert("heap".into(), (live() - heap0) / n as f64);
            out.insert("rss".into(), (rss() - rss0) / n as f64);
            let recv: usize = conns
                .iter()
                .map(|c| c.session().recv_buf().capacity())
                .sum();
            let send: usize = conns
                .iter_mut()
                .map(|c| c.session_mut().send_buf().buf_mut().capacity())
                .sum();
            out.insert("recv_cap".into(), recv as f64 / n as f64);
            out.insert("send_cap".into(), send as f64 / n as f64);
            out.insert("handle".into(), size_of::<DefaultConnection>() as f64);
            // Part of what an idle connection keeps: its cancel token holds a
            // clone of the Config; the server's parameters sit in a map.
            let heap = live();
            let clone = config.clone();
            out.insert(
                "config_clone".into(),
                live() - heap + size_of::<pg_transport::Config>() as f64,
            );
            drop(clone);
            let params = conns[0].session().server_params();
            out.insert("params".into(), params.len() as f64);
            let text: usize = params.iter().map(|(k, v)| k.len() + v.len()).sum();
            out.insert("params_text".into(), text as f64);
            let (pass, _) = timed_passes(11, || conns.iter().filter(|c| c.is_connected()).count());
            out.insert("probe_pass_s".into(), pass);
            for mut c in conns {
                c.close().await;
            }
        } else {
            let config = env.tpg_config(sock, false);
            let warm = tpg_open(&config).await;
            tpg_pid(&warm).await;
            drop(warm);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (heap0, rss0, t) = (live(), rss(), Instant::now());
            let mut clients = Vec::with_capacity(n);
            clients.extend(bounded(n, CONNECT_CONCURRENCY, || tpg_open(&config)).await);
            out.insert("open_s".into(), t.elapsed().as_secs_f64());
            for c in &clients {
                tpg_pid(c).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            out.insert("heap".into(), (live() - heap0) / n as f64);
            out.insert("rss".into(), (rss() - rss0) / n as f64);
            out.insert("handle".into(), size_of::<tokio_postgres::Client>() as f64);
            let (pass, _) = timed_passes(11, || clients.iter().filter(|c| !c.is_closed()).count());
            out.insert("probe_pass_s".into(), pass);
        }
        out
    })
}

fn case_bufs(env: &Env, client: &str) -> Values {
    runtime("ct").block_on(async {
        let mut out = Values::new();
        let heap0 = live();
        if client == "pgt" {
            let mut conn = pgt_open(&env.pgt_config("unix", false)).await;
            let mut note = |conn: &mut DefaultConnection, when: &str| {
                out.insert(format!("heap_{when}"), live() - heap0);
                let recv = conn.session().recv_buf().capacity();
                let send = conn.session_mut().send_buf().buf_mut().capacity();
                out.insert(format!("recv_{when}"), recv as f64);
                out.insert(format!("send_{when}"), send as f64);
            };
            pgt_pid(&mut conn).await;
            note(&mut conn, "idle");
            let rows = conn
                .copy_out_to(BIG_COPY, &mut tokio::io::sink())
                .await
                .expect("copy out");
            assert_eq!(rows, 1_000_000);
            note(&mut conn, "after_copy");
            pgt_pid(&mut conn).await;
            note(&mut conn, "after_query");
            conn.listen("many_bufs").await.expect("listen");
            // One poll of the wait: waiting, nothing arrived yet.
            tokio::select! {
                biased;
                n = conn.wait_notification(None) => panic!("nothing sent yet: {n:?}"),
                () = std::future::ready(()) => {}
            }
            note(&mut conn, "listening");
            let mut other = pgt_open(&env.pgt_config("unix", false)).await;
            other.notify("many_bufs", "x").await.expect("notify");
            drop(other);
            conn.wait_notification(None).await.expect("notification");
            note(&mut conn, "after_notification");
        } else {
            let client = tpg_open(&env.tpg_config("unix", false)).await;
            tpg_pid(&client).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            out.insert("heap_idle".into(), live() - heap0);
            let stream = client.copy_out(BIG_COPY).await.expect("copy out");
            let mut stream = std::pin::pin!(stream);
            while let Some(chunk) = stream.next().await {
                chunk.expect("copy data");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            out.insert("heap_after_copy".into(), live() - heap0);
            tpg_pid(&client).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            out.insert("heap_after_query".into(), live() - heap0);
            // Its connection task drops notifications; the heap is what
            // listening costs it.
            client
                .batch_execute("LISTEN many_bufs")
                .await
                .expect("listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
            out.insert("heap_listening".into(), live() - heap0);
            let other = tpg_open(&env.tpg_config("unix", false)).await;
            other
                .batch_execute("NOTIFY many_bufs, 'x'")
                .await
                .expect("notify");
            drop(other);
            tokio::time::sleep(Duration::from_millis(20)).await;
            out.insert("heap_after_notification".into(), live() - heap0);
        }
        out
    })
}

fn case_connect(env: &Env, client: &str, auth: &str, sock: &str, mode: &str) -> Values {
    let concurrency = if mode == "conc" {
        CONNECT_CONCURRENCY
    } else {
        1
    };
    let scram = auth == "scram";
    runtime("ct").block_on(async {
        let (t, c);
        if client == "pgt" {
            let config = env.pgt_config(sock, scram);
            drop(pgt_open(&config).await);
            (t, c) = (Instant::now(), cpu());
            bounded(CONNECTS, concurrency, || async {
                drop(pgt_open(&config).await);
            })
            .await;
        } else {
            let config = env.tpg_config(sock, scram);
            drop(
                config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .expect("connect"),
            );
            (t, c) = (Instant::now(), cpu());
            bounded(CONNECTS, concurrency, || async {
                drop(
                    config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .expect("connect"),
                );
            })
            .await;
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu() - c);
        Values::from([
            ("rate".into(), CONNECTS as f64 / wall),
            ("cpu_per".into(), cpu / CONNECTS as f64),
        ])
    })
}

fn case_busy(env: &Env, client: &str, sock: &str, rt: &str) -> Values {
    runtime(rt).block_on(async {
        let (t, c, rows): (Instant, f64, u64);
        if client.starts_with("pgt") {
            let config = env.pgt_config(sock, false);
            let conns = bounded(BUSY_CONNS, CONNECT_CONCURRENCY, || pgt_open(&config)).await;
            let stream_rows = client == "pgt-stream";
            (t, c) = (Instant::now(), cpu());
            let tasks: Vec<_> = conns
                .into_iter()
                .map(|mut conn| tokio::spawn(async move { pgt_busy(&mut conn, stream_rows).await }))
                .collect();
            rows = futures_util::future::join_all(tasks)
                .await
                .into_iter()
                .map(|r| r.expect("task"))
                .sum();
        } else {
            let config = env.tpg_config(sock, false);
            let clients = bounded(BUSY_CONNS, CONNECT_CONCURRENCY, || tpg_open(&config)).await;
            let mut prepared = Vec::new();
            for client in clients {
                let stmt = client.prepare(BUSY_SQL).await.expect("prepare");
                prepared.push((client, stmt));
            }
            (t, c) = (Instant::now(), cpu());
            let tasks: Vec<_> = prepared
                .into_iter()
                .map(|(client, stmt)| tokio::spawn(async move { tpg_busy(&client, &stmt).await }))
                .collect();
            rows = futures_util::future::join_all(tasks)
                .await
                .into_iter()
                .map(|r| r.expect("task"))
                .sum();
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu() - c);
        assert_eq!(rows, BUSY_CONNS as u64 * BUSY_ROWS, "every row arrived");
        Values::from([
            ("rows_per_s".into(), rows as f64 / wall),
            ("cpu_ns_per_row".into(), cpu * 1e9 / rows as f64),
            ("wall_s".into(), wall),
        ])
    })
}

async fn pgt_busy(conn: &mut DefaultConnection, stream_rows: bool) -> u64 {
    if stream_rows {
        let mut rows = conn.query_stream(BUSY_SQL).await.expect("query");
        let mut n = 0;
        while let Some(row) = rows.next().await {
            std::hint::black_box(row.expect("row"));
            n += 1;
        }
        n
    } else {
        let mut counter = RowCounter::default();
        conn.query_with(BUSY_SQL, &mut counter)
            .await
            .expect("query");
        counter.rows
    }
}

async fn tpg_busy(client: &tokio_postgres::Client, stmt: &tokio_postgres::Statement) -> u64 {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let rows = client.query_raw(stmt, params).await.expect("query");
    let mut rows = std::pin::pin!(rows);
    let mut n = 0;
    while let Some(row) = rows.next().await {
        std::hint::black_box(row.expect("row"));
        n += 1;
    }
    n
}

fn case_probe(env: &Env, client: &str, sock: &str) -> Values {
    runtime("ct").block_on(async {
        let admin = tpg_open(&env.tpg_config("unix", false)).await;
        let kill = |pids: Vec<i32>| async {
            for pid in pids {
                let r = admin
                    .query_one("SELECT pg_terminate_backend($1, 5000)", &[&pid])
                    .await
                    .expect("terminate");
                assert!(r.get::<_, bool>(0), "backend {pid} terminated");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let victims = |pids: &[i32]| {
            pids.iter()
                .step_by(PROBE_CONNS / PROBE_KILLED)
                .copied()
                .collect()
        };
        let (idle, find, found);
        if client == "pgt" {
            let config = env.pgt_config(sock, false);
            let mut conns = bounded(PROBE_CONNS, CONNECT_CONCURRENCY, || pgt_open(&config)).await;
            let mut pids = Vec::new();
            for c in &mut conns {
                pids.push(pgt_pid(c).await);
            }
            (idle, _) = timed_passes(11, || conns.iter().filter(|c| c.is_connected()).count());
            kill(victims(&pids)).await;
            (find, found) = timed_passes(1, || conns.iter().filter(|c| !c.is_connected()).count());
        } else {
            let config = env.tpg_config(sock, false);
            let clients = bounded(PROBE_CONNS, CONNECT_CONCURRENCY, || tpg_open(&config)).await;
            let mut pids = Vec::new();
            for c in &clients {
                pids.push(tpg_pid(c).await);
            }
            (idle, _) = timed_passes(11, || clients.iter().filter(|c| !c.is_closed()).count());
            kill(victims(&pids)).await;
            (find, found) = timed_passes(1, || clients.iter().filter(|c| c.is_closed()).count());
        }
        Values::from([
            ("probe_ns".into(), idle * 1e9 / PROBE_CONNS as f64),
            ("find_us".into(), find * 1e6),
            ("found".into(), found as f64),
        ])
    })
}

/// Our SCRAM client's PBKDF2 (`Hi`, 4,096 iterations) alone: the
/// `server-first-message` step, which computes it, in seconds (median of 21).
fn pbkdf2_seconds() -> f64 {
    use pg_transport::protocol::auth::scram::{ChannelBinding, ScramClient};
    let mut times = Vec::new();
    for _ in 0..21 {
        let mut client = ScramClient::new(SCRAM_PASSWORD, "abcdef", ChannelBinding::Unsupported);
        let t = Instant::now();
        client
            .server_first(b"r=abcdefserver,s=c2FsdHNhbHRzYWx0c2FsdA==,i=4096")
            .expect("server-first");
        times.push(t.elapsed().as_secs_f64());
    }
    median(times)
}

fn run_case(spec: &str) -> Values {
    raise_nofile();
    let env = Env::from_env();
    let p: Vec<&str> = spec.split(':').collect();
    match p.as_slice() {
        ["mem", client, sock, n] => case_mem(&env, client, sock, n.parse().expect("N")),
        ["bufs", client] => case_bufs(&env, client),
        ["connect", client, auth, sock, mode] => case_connect(&env, client, auth, sock, mode),
        ["busy", client, sock, rt] => case_busy(&env, client, sock, rt),
        ["probe", client, sock] => case_probe(&env, client, sock),
        ["pbkdf2"] => Values::from([("s".into(), pbkdf2_seconds())]),
        _ => panic!("unknown case {spec}"),
    }
}

// ---------------------------------------------------------------- parent

/// Every case spec, and how many times each runs.
fn case_list(ns: &[usize], reps: usize) -> Vec<(String, usize)> {
    let mut cases = Vec::new();
    for &n in ns {
        for sock in ["unix", "tcp"] {
            for client in ["pgt", "tpg"] {
                cases.push((format!("mem:{client}:{sock}:{n}"), 1));
            }
        }
    }
    for client in ["pgt", "tpg"] {
        cases.push((format!("bufs:{client}"), 1));
    }
    cases.push(("pbkdf2".into(), reps));
    for auth in ["trust", "scram"] {
        for sock in ["unix", "tcp"] {
            for mode in ["seq", "conc"] {
                for client in ["pgt", "tpg"] {
                    cases.push((format!("connect:{client}:{auth}:{sock}:{mode}"), reps));
                }
            }
        }
    }
    for sock in ["unix", "tcp"] {
        for rt in ["ct", "mt"] {
            for client in ["pgt-sink", "pgt-stream", "tpg"] {
                cases.push((format!("busy:{client}:{sock}:{rt}"), reps));
            }
        }
    }
    for sock in ["unix", "tcp"] {
        for client in ["pgt", "tpg"] {
            cases.push((format!("probe:{client}:{sock}"), reps));
        }
    }
    cases
}

fn spawn_case(cluster: &Cluster, spec: &str) -> Result<Values, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--case", spec])
        .env("PGT_MANY_PORT", cluster.port.to_string())
        .env("PGT_MANY_SOCK", &cluster.socket_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("case {spec} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("case {spec}: no RESULT line"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect())
}

/// Adds the SCRAM user and the table the busy case reads; SCRAM for that user only.
fn prepare_server(cluster: &Cluster) -> Result<(), String> {
    cluster.psql(&format!(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE {SCRAM_USER} LOGIN SUPERUSER PASSWORD '{SCRAM_PASSWORD}'"
    ))?;
    cluster.psql(
        "CREATE TABLE rows10k AS SELECT g AS id, md5(g::text) AS txt \
         FROM generate_series(1, 10000) g",
    )?;
    cluster.psql("VACUUM (FREEZE, ANALYZE) rows10k")?;
    let hba = format!(
        "local all {SCRAM_USER} scram-sha-256\nhost all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
         local all all trust\nhost all all 127.0.0.1/32 trust\n"
    );
    std::fs::write(cluster.base.join("data/pg_hba.conf"), hba).map_err(|e| e.to_string())?;
    cluster.psql("SELECT pg_reload_conf()")?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let values = run_case(&args[i + 1]);
        let line: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("RESULT {}", line.join(" "));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends: nothing to list.
    }
    if let Err(e) = parent() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn parent() -> Result<(), String> {
    let reps: usize = std::env::var("PGT_MANY_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let ns: Vec<usize> = std::env::var("PGT_MANY_NS")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let filter: Vec<String> = std::env::var("PGT_MANY_CASES")
        .map(|f| f.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let cases: Vec<(String, usize)> = case_list(&ns, reps)
        .into_iter()
        .filter(|(spec, _)| filter.is_empty() || filter.iter().any(|f| spec.contains(f.as_str())))
        .collect();
    let mut cluster = Cluster::start(SERVER_SETTINGS)?;
    prepare_server(&cluster)?;
    eprintln!("server {} on port {}", cluster.version(), cluster.port);
    let started = Instant::now();
    let mut results: BTreeMap<String, Vec<Values>> = BTreeMap::new();
    let max_reps = cases.iter().map(|c| c.1).max().unwrap_or(1);
    // Interleaved: every case once, then again, so slow drifts spread evenly.
    for rep in 0..max_reps {
        for (spec, runs) in cases.iter().filter(|c| c.1 > rep) {
            eprintln!(
                "[{:>5.0} s] {spec} ({}/{runs})",
                started.elapsed().as_secs_f64(),
                rep + 1
            );
            let values = spawn_case(&cluster, spec)?;
            results.entry(spec.clone()).or_default().push(values);
        }
    }
    cluster.stop();
    let medians: BTreeMap<String, Values> = results
        .into_iter()
        .map(|(spec, runs)| {
            let keys: Vec<String> = runs[0].keys().cloned().collect();
            let m = keys
                .into_iter()
                .map(|k| {
                    let v = median(runs.iter().filter_map(|r| r.get(&k).copied()).collect());
                    (k, v)
                })
                .collect();
            (spec, m)
        })
        .collect();
    plot::print_tables(&medians, &ns, reps);
    let plot = std::env::var("PGT_MANY_PLOT").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/many-connections.svg"),
        PathBuf::from,
    );
    if medians.keys().any(|k| k.starts_with("mem:")) {
        plot::draw(&medians, &ns, &plot)?;
        eprintln!("plot: {}", plot.display());
    }
    eprintln!("{:.0} s in all", started.elapsed().as_secs_f64());
    Ok(())
}
