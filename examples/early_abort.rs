//! COPY IN that the server aborts early: 1 GB of rows generated on the fly
//! into a table whose primary key fails at the 10 MB mark (a repeated id).
//! pg-transport (`copy_in_with`) and tokio-postgres (`copy_in` sink fed with
//! `SinkExt::send`) side by side, over the Unix socket and TCP, against a
//! throwaway PostgreSQL cluster this example starts and stops itself.
//!
//! For each run it prints how many bytes each client wrote to the socket and
//! pulled from its source *after the server's error reached it* (both clients
//! run over the same counting wrapper around their socket, which notes the
//! first byte read during the COPY: during COPY IN the server sends nothing but
//! its error), how far past the failing row it pulled, and the wall time.
//!
//! ```text
//! cargo run --release --example early_abort            # 1 GB input
//! PGT_ABORT_TOTAL=100000000 cargo run --release --example early_abort
//! ```
//!
//! Needs the PostgreSQL server binaries (`PG_BINDIR`, `initdb` on `PATH`, or
//! `/usr/lib/postgresql/*/bin`); as root the server runs as `postgres`.
//! The same case runs in `cargo bench --bench copy` (see `docs/benchmarks.md`).

#[path = "../benches/support/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with benches/copy.rs, which uses more of it"
)]
mod support;

use support::cluster::Cluster;
use support::early_abort::{self, Report, Target};

/// Where the repeated id sits.
const MARK: u64 = 10_000_000;
/// Chunks pulled from the generator.
const CHUNK: usize = 64 * 1024;

fn print(client: &str, socket: &str, r: &Report) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!(
        "{client:<15} {socket:<5} {:>8.3} s  pulled {:>11} B  past the bad row {:>11} B  \
         after the error: written {:>11} B, pulled {:>11} B, returned {:>8} ms later  \
         (bad row line {}, server says line {})  {}",
        r.wall.as_secs_f64(),
        r.pulled,
        r.pulled_past_bad(),
        opt(r.written_after_error),
        opt(r.pulled_after_error),
        r.error_to_return.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.2}", d.as_secs_f64() * 1e3)
        ),
        opt(r.bad.map(|b| b.line)),
        opt(r.server_line),
        r.error,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let total = std::env::var("PGT_ABORT_TOTAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000_000u64)
        .max(2 * MARK);
    let mut cluster = Cluster::start("fsync = off\nautovacuum = off\n")?;
    println!(
        "PostgreSQL {}; {total} bytes of input, the repeated id at byte {MARK}, {CHUNK}-byte chunks",
        cluster.version()
    );
    let result = async {
        for (socket, target) in [
            ("unix", Target::Unix(&cluster.socket_dir, cluster.port)),
            ("tcp", Target::Tcp(cluster.port)),
        ] {
            let r = early_abort::with_pg_transport(&target, total, MARK, CHUNK).await?;
            print("pg-transport", socket, &r);
            let r = early_abort::with_tokio_postgres(&target, total, MARK, CHUNK).await?;
            print("tokio-postgres", socket, &r);
        }
        Ok::<(), String>(())
    }
    .await;
    cluster.stop();
    result
}
