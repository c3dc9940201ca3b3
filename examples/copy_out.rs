//! Streams `COPY … TO STDOUT` to standard output with `copy_out_to`: the rows
//! already received are written together (nothing more is read while stdout is
//! busy), and stdout is flushed at the end.
//!
//! ```sh
//! cargo run --example copy_out -- "postgres://user@localhost/db" "COPY my_table TO STDOUT (FORMAT csv)" > out.csv
//! ```

use std::process::ExitCode;

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
        let rows = client.copy_out_to(&sql, &mut tokio::io::stdout()).await?;
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
