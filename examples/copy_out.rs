//! Streams `COPY … TO STDOUT` to standard output; each CopyData payload is
//! written as it arrives (zero-copy `Bytes`, nothing read while stdout is busy).
//!
//! ```sh
//! cargo run --example copy_out -- "postgres://user@localhost/db" "COPY my_table TO STDOUT (FORMAT csv)" > out.csv
//! ```

use std::process::ExitCode;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(conninfo), Some(sql)) = (args.next(), args.next()) else {
        eprintln!("usage: copy_out CONNINFO 'COPY … TO STDOUT'");
        return ExitCode::from(2);
    };
    let result = async {
        let config = pg_transport::Config::parse_with_env(&conninfo)?;
        let (mut client, _) = pg_transport::connect(&config).await?;
        let rows = client
            .copy_out(&sql, |chunk: Bytes| async move {
                // The next chunk is not read until this write has finished.
                tokio::io::stdout().write_all(&chunk).await
            })
            .await?;
        tokio::io::stdout()
            .flush()
            .await
            .map_err(|e| pg_transport::Error::io("flushing stdout", e))?;
        client.close().await;
        Ok::<_, pg_transport::Error>(rows)
    }
    .await;
    match result {
        Ok(rows) => {
            eprintln!("COPY {rows}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("copy_out failed: {e}");
            ExitCode::FAILURE
        }
    }
}
