//! Loads a file with `COPY … FROM STDIN`, drawing a progress bar on stderr from
//! `CopyProgress`. A server error (a constraint violation, say) stops the
//! upload within one batch, not at the end of the file.
//!
//! ```sh
//! cargo run --example copy_in -- "postgres://user@localhost/db" "COPY my_table FROM STDIN (FORMAT csv)" data.csv
//! ```

use std::io::Write;
use std::process::ExitCode;

use pg_transport::{CopyInOptions, CopyProgress, source_reader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(conninfo), Some(sql), Some(path)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: copy_in CONNINFO 'COPY … FROM STDIN' FILE");
        return ExitCode::from(2);
    };
    let total = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let result = async {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| pg_transport::Error::io("opening the input", e))?;
        let config = pg_transport::Config::parse_with_env(&conninfo)?;
        let (mut client, _) = pg_transport::connect(&config).await?;
        let mut bar = |p: CopyProgress| draw(p, total);
        let options = CopyInOptions::default().progress(&mut bar);
        let rows = client
            .copy_in_with(&sql, source_reader(file, 256 * 1024), options)
            .await?;
        client.close().await;
        Ok::<_, pg_transport::Error>(rows)
    }
    .await;
    eprintln!();
    match result {
        Ok(rows) => {
            eprintln!("COPY {rows}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("copy_in failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn draw(p: CopyProgress, total: u64) {
    const WIDTH: u64 = 40;
    let filled = (p.bytes * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH) as usize;
    eprint!(
        "\r[{}{}] {:>6.1} MiB, {} rows",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled),
        p.bytes as f64 / (1024.0 * 1024.0),
        p.rows
    );
    let _ = std::io::stderr().flush();
}
