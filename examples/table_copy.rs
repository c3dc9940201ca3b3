//! Copies a table (or a query's result) from one server to another by
//! streaming `COPY … TO STDOUT` straight into `COPY … FROM STDIN`: each row
//! is read from the source and written to the target as it arrives, so
//! memory stays bounded whatever the table's size. A progress bar on stderr
//! shows bytes, rows/s and, for a table, an ETA from `pg_class.reltuples`.
//!
//! Either side's error ends both cleanly and says which: when the target
//! refuses a row, the source's COPY is cancelled and drained; when the
//! source fails, the target's COPY is aborted with CopyFail (nothing of it
//! is kept). Both connections are `Ready` afterwards.
//!
//! ```sh
//! cargo run --release --example table_copy -- \
//!     --from "postgres://app@db1/prod" --to "postgres://app@db2/copy" --table wide
//! cargo run --release --example table_copy -- --from … --to … --table wide \
//!     --query "SELECT * FROM wide WHERE id % 2 = 0" --format binary
//! ```
#![allow(dead_code, reason = "tests/real/table_copy.rs includes this file")]

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use pg_transport::session::pipeline::Pipeline;
use pg_transport::{Config, DefaultConnection, Error};

/// What to copy.
#[derive(Debug, Clone)]
pub struct Job {
    /// The target table (and the source table unless `query` is given).
    pub table: String,
    /// A query whose result is copied instead of the source table.
    pub query: Option<String>,
    /// `text`, `csv` or `binary`.
    pub format: String,
}

/// Which server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server the rows come from.
    Source,
    /// The server the rows go to.
    Target,
}

/// A copy that did not complete: which side failed, and how.
#[derive(Debug)]
pub struct Failed {
    /// The side whose error ended the copy.
    pub side: Side,
    /// Its error.
    pub error: Error,
}

/// What a completed copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Rows, as the target's `COPY n` counted them (equal to the source's).
    pub rows: u64,
    /// Bytes of COPY data.
    pub bytes: u64,
}

impl Job {
    fn copy_out(&self) -> String {
        let what = match &self.query {
            Some(query) => format!("({query})"),
            None => self.table.clone(),
        };
        format!("COPY {what} TO STDOUT (FORMAT {})", self.format)
    }

    fn copy_in(&self) -> String {
        format!("COPY {} FROM STDIN (FORMAT {})", self.table, self.format)
    }
}

/// Copies `job` from `source` to `target`, calling `progress(rows, bytes)`
/// after each group of rows.
///
/// The source is read and the target written concurrently, through a
/// bounded queue of rows: neither server waits while the other's socket is
/// being served, and memory stays bounded by the queue.
///
/// # Errors
/// The side that failed and its error; both connections are left `Ready`
/// unless their transport failed.
pub async fn copy(
    source: &mut DefaultConnection,
    target: &mut DefaultConnection,
    job: &Job,
    mut progress: impl FnMut(u64, u64),
) -> Result<Copied, Failed> {
    let on = |side| move |error| Failed { side, error };
    let cancel = source.cancel_token();
    let mut rows_out = source
        .copy_out_stream(&job.copy_out())
        .await
        .map_err(on(Side::Source))?;
    let mut writer = match target.copy_in_writer(&job.copy_in()).await {
        Ok(writer) => writer,
        Err(error) => {
            drain_cancelled(&mut rows_out, cancel).await;
            return Err(Failed {
                side: Side::Target,
                error,
            });
        }
    };
    let (queue, queued) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUED_GROUPS);
    // Ends at the source's end or error, or when the target side has
    // stopped taking rows (the queue's receiver is gone). Rows go over in
    // groups of what the source has ready, not one by one: the queue's
    // cost is paid per group.
    let read = async {
        // Owned here: dropped at the end, which closes the queue.
        let queue = queue;
        let mut groups = (&mut rows_out).ready_chunks(GROUP_ROWS);
        while let Some(group) = groups.next().await {
            let group = group.into_iter().collect::<Result<Vec<_>, _>>()?;
            if queue.send(group).await.is_err() {
                break;
            }
        }
        Ok(())
    };
    // Ends when the queue is closed and empty, or at the target's error.
    let write = async {
        // Owned here: dropped at the target's error, which stops the reader.
        let mut queued = queued;
        let (mut rows, mut bytes) = (0, 0);
        while let Some(group) = queued.recv().await {
            for data in group {
                bytes += data.len() as u64;
                writer.feed(data).await?;
                rows += 1;
            }
            progress(rows, bytes);
        }
        Ok(bytes)
    };
    let (read, write): (Result<(), Error>, Result<u64, Error>) = tokio::join!(read, write);
    let bytes = match (read, write) {
        (_, Err(error)) => {
            drain_cancelled(&mut rows_out, cancel).await;
            return Err(Failed {
                side: Side::Target,
                error,
            });
        }
        (Err(error), Ok(_)) => {
            // The target keeps nothing of it: CopyFail, and it is Ready.
            let _ = writer.abort(format!("the source failed: {error}")).await;
            return Err(Failed {
                side: Side::Source,
                error,
            });
        }
        (Ok(()), Ok(bytes)) => bytes,
    };
    let sent = rows_out.rows();
    let rows = writer.finish().await.map_err(on(Side::Target))?;
    if sent != Some(rows) {
        let error = Error::config(format!(
            "the source sent {sent:?} rows, the target took {rows}"
        ));
        return Err(Failed {
            side: Side::Target,
            error,
        });
    }
    Ok(Copied { rows, bytes })
}

/// At most this many rows go over the queue at once.
const GROUP_ROWS: usize = 256;
/// Groups read from the source but not yet handed to the target: with
/// [`GROUP_ROWS`], what bounds the copy's memory (at most 4,096 rows, about
/// 0.5 MB of 130-byte rows).
const QUEUED_GROUPS: usize = 16;

/// Stops the source's COPY after the target failed: a CancelRequest, then
/// the rest of its data read and dropped until the server's "canceling
/// statement" error, so the source connection is `Ready` again.
async fn drain_cancelled(
    rows_out: &mut pg_transport::CopyOutStream<'_, impl pg_transport::Transport>,
    cancel: Option<pg_transport::CancelToken>,
) {
    if let Some(cancel) = cancel {
        let _ = cancel.cancel().await;
    }
    while rows_out.next().await.is_some() {}
}

/// The planner's row estimate for `table`, if it has one (`reltuples` is -1
/// for a table never vacuumed or analyzed).
async fn estimate(source: &mut DefaultConnection, table: &str) -> Option<u64> {
    let mut p = Pipeline::new();
    p.query(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass",
        &[Some(table.as_bytes())],
    )
    .ok()?;
    let responses = source.pipeline(&p).await.ok()?;
    let rows = &responses.first()?.rows()?.rows;
    rows.first()?
        .get_str(0)
        .ok()??
        .parse::<i64>()
        .ok()?
        .try_into()
        .ok()
}

fn bar(estimate: Option<u64>) -> ProgressBar {
    let (bar, template) = match estimate {
        Some(rows) => (
            ProgressBar::new(rows),
            "[{bar:40}] {pos}/{len} rows, {msg}, {per_sec}, eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {pos} rows, {msg}, {per_sec}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("the templates are constants that parse")
        .progress_chars("## ");
    bar.with_style(style)
}

fn parse_args() -> Result<(String, String, Job), String> {
    let (mut from, mut to, mut table, mut query) = (None, None, None, None);
    let mut format = "text".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--from" => from = Some(value),
            "--to" => to = Some(value),
            "--table" => table = Some(value),
            "--query" => query = Some(value),
            "--format" => format = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    match (from, to, table) {
        (Some(from), Some(to), Some(table)) => Ok((
            from,
            to,
            Job {
                table,
                query,
                format,
            },
        )),
        _ => Err("--from, --to and --table are required".to_owned()),
    }
}

async fn connect(conninfo: &str) -> Result<DefaultConnection, Error> {
    let config = Config::parse_with_env(conninfo)?;
    Ok(pg_transport::connect(&config).await?.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (from, to, job) = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "{e}\nusage: table_copy --from CONNINFO --to CONNINFO --table NAME [--query SQL] [--format text|csv|binary]"
            );
            return ExitCode::from(2);
        }
    };
    let (mut source, mut target) = match tokio::try_join!(connect(&from), connect(&to)) {
        Ok(both) => both,
        Err(e) => {
            eprintln!("could not connect: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rows = match job.query {
        None => estimate(&mut source, &job.table).await,
        Some(_) => None,
    };
    let bar = bar(rows);
    let started = Instant::now();
    let result = copy(&mut source, &mut target, &job, |rows, bytes| {
        bar.set_position(rows);
        bar.set_message(indicatif::HumanBytes(bytes).to_string());
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let code = match result {
        Ok(done) => {
            let mib = done.bytes as f64 / (1 << 20) as f64;
            eprintln!(
                "copied {} rows ({mib:.1} MiB) in {secs:.2} s: {:.0} rows/s",
                done.rows,
                done.rows as f64 / secs
            );
            ExitCode::SUCCESS
        }
        Err(Failed { side, error }) => {
            let which = match side {
                Side::Source => "the source server",
                Side::Target => "the target server",
            };
            eprintln!("{which} failed; nothing was kept on the target: {error:#}");
            ExitCode::FAILURE
        }
    };
    source.close().await;
    target.close().await;
    code
}
