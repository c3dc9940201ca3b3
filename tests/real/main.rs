#![allow(
    unreachable_pub,
    reason = "helpers shared between the modules of this test binary"
)]
//! Against a real PostgreSQL server that this binary starts (see `cluster.rs`):
//! SCENARIOS groups C, D, F, G, H, I wherever a real server can produce the
//! situation; small scripted peers for the rest (`peers.rs`).

mod cluster;
mod connect;
mod liveness;

use pg_transport::{Client, Config};

/// Connects with a connection string; panics with the error on failure.
pub async fn client(conninfo: &str) -> Client {
    let config: Config = conninfo
        .parse()
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
    pg_transport::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"))
        .0
}
