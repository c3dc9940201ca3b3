//! What bulk reads (`Connection::set_bulk_read`) cost and save by response
//! size: COPY OUT of generated ~100-byte rows, 31 times per size with bulk
//! reads off and on, printing the median and the 10th/90th percentiles.
//! Over TCP (Unix sockets have no receive low-water mark).
//!
//! ```sh
//! cargo run --release --example bulk_tail -- "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
//! ```

use std::process::ExitCode;
use std::time::Instant;

use pg_transport::BulkRead;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(conninfo) = std::env::args().nth(1) else {
        eprintln!("usage: bulk_tail CONNINFO");
        return ExitCode::from(2);
    };
    match run(&conninfo).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulk_tail failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(conninfo: &str) -> Result<(), pg_transport::Error> {
    let config = pg_transport::Config::parse_with_env(conninfo)?;
    let (mut client, _) = pg_transport::connect(&config).await?;
    println!("| MB | bulk reads | median ms | p10–p90 ms |");
    println!("|---:|---|---:|---:|");
    for mb in [1.5f64, 3.0, 5.0, 8.0, 32.0] {
        let rows = (mb * 1e6 / 100.0) as u64;
        let sql =
            format!("COPY (SELECT g, repeat('x', 92) FROM generate_series(1, {rows}) g) TO STDOUT");
        for (name, bulk) in [("off", None), ("default", Some(BulkRead::default()))] {
            client.set_bulk_read(bulk);
            let mut ms = Vec::new();
            for _ in 0..31 {
                let start = Instant::now();
                client
                    .copy_out(&sql, |_| async { Ok::<_, std::io::Error>(()) })
                    .await?;
                ms.push(start.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "| {mb} | {name} | {:.2} | {:.2}–{:.2} |",
                ms[15], ms[3], ms[27]
            );
        }
    }
    client.close().await;
    Ok(())
}
