#![allow(
    unreachable_pub,
    reason = "helpers shared between the modules of this test binary"
)]
//! Against a real PostgreSQL server that this binary starts (see `cluster.rs`):
//! SCENARIOS groups C, D, F, G, H, I wherever a real server can produce the
//! situation; small scripted peers for the rest (`peers.rs`).

mod bulk;
mod cluster;
mod connect;
mod copy;
mod copy_peers;
mod first_cause;
mod liveness;
mod options;
mod peers;
mod pgbouncer;
mod pipeline;
mod query;
mod scripted;
mod spans;
mod table_copy;
mod targets;
mod versions;

use pg_transport::{Config, DefaultConnection};

/// Connects with a connection string; panics with the error on failure.
pub async fn client(conninfo: &str) -> DefaultConnection {
    let config: Config = conninfo
        .parse()
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
    pg_transport::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"))
        .0
}

/// Runs `f` with a subscriber that records `tracing` events; returns the log text.
pub async fn capture<F: Future>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    f.await;
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}
