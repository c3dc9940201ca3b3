//! Connects with a URL or key=value string (or, with no argument, the PG*
//! environment variables) and prints the server version, TLS and the
//! authentication method used.
//!
//! ```sh
//! cargo run --example connect -- "postgres://user:secret@localhost/postgres?sslmode=require"
//! PGHOST=/var/run/postgresql PGUSER=postgres cargo run --example connect
//! ```

use std::process::ExitCode;

use pg_transport::Config;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let conninfo = std::env::args().nth(1).unwrap_or_default();
    let config = match Config::parse_with_env(&conninfo) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bad connection settings: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut client, info) = match pg_transport::connect(&config).await {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("could not connect: {e}");
            for (host, cause) in e.host_errors() {
                eprintln!("  {host}: {cause}");
            }
            return ExitCode::FAILURE;
        }
    };
    let session = client.session();
    println!("connected to {}", info.host.display_host());
    println!(
        "server version: {}",
        session.parameter("server_version").unwrap_or("?")
    );
    match client.tls_info() {
        Some(tls) => println!(
            "TLS: {} {} (ALPN {})",
            tls.protocol_version,
            tls.cipher_suite,
            tls.alpn_protocol
                .as_deref()
                .map_or_else(|| "none".into(), String::from_utf8_lossy)
        ),
        None => println!("TLS: not in use"),
    }
    println!("authentication: {:?}", info.auth_method);
    match client
        .simple_query("SELECT current_user, current_database()")
        .await
    {
        Ok(r) => println!("as {:?} in {:?}", r[0].rows[0][0], r[0].rows[0][1]),
        Err(e) => eprintln!("query failed: {e}"),
    }
    client.close().await;
    ExitCode::SUCCESS
}
