//! Loads a file with `COPY … FROM STDIN`, drawing a progress bar on stderr
//! (bytes, rows, rate) from `CopyProgress`; indicatif hides it when stderr is
//! not a terminal. A server error (a constraint violation, say) stops the
//! upload within one batch, not at the end of the file.
//!
//! ```sh
//! cargo run --example copy_in -- "postgres://user@localhost/db" "COPY my_table FROM STDIN (FORMAT csv)" data.csv
//! ```

use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use pg_transport::{CopyInOptions, CopyProgress, source_reader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(conninfo), Some(sql), Some(path)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: copy_in CONNINFO 'COPY … FROM STDIN' FILE");
        return ExitCode::from(2);
    };
    let bar = progress_bar(std::fs::metadata(&path).map(|m| m.len()).ok());
    let result = async {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| pg_transport::Error::io("opening the input", e))?;
        let config = pg_transport::Config::parse_with_env(&conninfo)?;
        let (mut client, _) = pg_transport::connect(&config).await?;
        let mut progress = |p: CopyProgress| {
            bar.set_position(p.bytes);
            bar.set_message(format!("{} rows", p.rows));
        };
        let options = CopyInOptions::default().progress(&mut progress);
        let rows = client
            .copy_in_with(&sql, source_reader(file, 256 * 1024), options)
            .await?;
        client.close().await;
        Ok::<_, pg_transport::Error>(rows)
    }
    .await;
    // indicatif leaves the bar's line open; what follows starts a new one.
    let end_bar_line = || {
        if !bar.is_hidden() {
            eprintln!();
        }
    };
    match result {
        Ok(rows) => {
            bar.finish();
            end_bar_line();
            eprintln!("COPY {rows}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Left where it stopped: how far the upload got is part of the story.
            bar.abandon();
            end_bar_line();
            eprintln!("copy_in failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A bar over the file's `len` bytes, or a spinner when its size is unknown.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "[{bar:40}] {binary_bytes}/{binary_total_bytes}, {msg}, {binary_bytes_per_sec}, eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {binary_bytes}, {msg}, {binary_bytes_per_sec}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("the templates are constants that parse")
        .progress_chars("## ");
    bar.with_style(style).with_message("0 rows")
}
