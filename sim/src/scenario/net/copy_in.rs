//! `net-copy-in`: COPY IN that the server may abort at a seeded byte.

use std::sync::Arc;

use bytes::Bytes;
use pg_transport::{CopyInOptions, CopySource, State, source_fn};

use super::harness::{Shared, connect_tracked, finish, simulate};
use crate::chop::{FrameLog, Frames};
use crate::scenario::Outcome;
use crate::scenario::variant::CopyInVariant;
use crate::seed::Seed;
use crate::server::pg::{Log, Reply, Script};

/// COPY IN that the server aborts at a seeded byte: the server's error, no
/// CopyDone or CopyFail after the abort, little data after it, and the
/// connection usable. Without an abort: the server's row count, all rows.
pub fn copy_in(seed: Seed) -> Outcome {
    copy_in_with(seed, CopyInVariant::from_seed(seed))
}

/// [`copy_in`] with its choices given.
pub fn copy_in_with(seed: Seed, v: CopyInVariant) -> Outcome {
    let CopyInVariant {
        abort_at,
        total_rows,
        chunk_rows,
        stray,
        batch_size,
    } = v;
    let script = Script::plain(Reply::CopyIn { abort_at, stray });
    // Writes of at least 256 bytes: 1-byte CopyData segments would make a
    // single run take minutes without exercising anything new.
    let (result, log, transcript) =
        simulate(seed, script, 256, move |plan, log, transcript| async move {
            let frame_log: Shared<FrameLog> = Arc::default();
            let frames = Frames::new(frame_log.clone());
            let mut c = connect_tracked(plan, "disable", Some(frames))
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            let largest_chunk: Shared<usize> = Arc::default();
            let source = numbered_rows(total_rows, chunk_rows, largest_chunk.clone());
            let options = CopyInOptions::default().batch_size(batch_size);
            let result = c.copy_in_with("COPY t FROM STDIN", source, options).await;
            let server = ServerCopy::seen_in(&log.lock().unwrap());
            transcript.lock().unwrap().push(format!(
                "copy: {result:?}; after abort {}",
                server.bytes_after_abort
            ));
            check_outcome(&result, &server, total_rows)?;
            check_no_end_after_error(&frame_log.lock().unwrap(), &server, result.is_ok())?;
            let written_after = frame_log.lock().unwrap().written_after_arrival;
            let largest_frame = *largest_chunk.lock().unwrap() + 5;
            check_written_after_error(written_after, batch_size, largest_frame)?;
            if c.state() != State::Ready {
                return Err(format!("state {:?} after COPY", c.state()));
            }
            c.simple_query("")
                .await
                .map_err(|e| format!("connection not usable after COPY: {e:#}"))?;
            Ok(())
        });
    finish(result, &log, &transcript, u32::from(abort_at.is_some()))
}

/// Rows `i\tsimulated row i` for `i` below `total_rows`, `chunk_rows` to a
/// chunk; `largest` keeps the largest chunk's length.
fn numbered_rows(total_rows: u64, chunk_rows: u64, largest: Shared<usize>) -> impl CopySource {
    let mut next = 0u64;
    source_fn(move || {
        let mut chunk = String::new();
        for _ in 0..chunk_rows {
            if next >= total_rows {
                break;
            }
            chunk.push_str(&format!("{next}\tsimulated row {next}\n"));
            next += 1;
        }
        let mut l = largest.lock().unwrap();
        *l = (*l).max(chunk.len());
        async move { Ok::<_, std::io::Error>(Bytes::from(chunk)) }
    })
}

/// What the server's log says of the COPY, read once it is over.
struct ServerCopy {
    aborted: bool,
    rows_committed: u64,
    bytes_after_abort: usize,
    end_after_abort: bool,
}

impl ServerCopy {
    fn seen_in(log: &Log) -> Self {
        Self {
            aborted: log.aborted,
            rows_committed: log.rows_committed,
            bytes_after_abort: log.copy_bytes_after_abort,
            end_after_abort: log.end_after_abort,
        }
    }
}

/// The server's abort comes back as its 23505; without one, every row is
/// reported and committed.
fn check_outcome(
    result: &Result<u64, pg_transport::Error>,
    server: &ServerCopy,
    total_rows: u64,
) -> Result<(), String> {
    // abort_at may lie beyond the data: then the COPY completes.
    match (server.aborted, result) {
        (true, Err(e)) if e.as_db_error().is_some_and(|d| d.code.code() == "23505") => Ok(()),
        (true, other) => Err(format!(
            "the server aborted; expected its 23505, got {other:?}"
        )),
        (false, Ok(rows)) if *rows == total_rows && server.rows_committed == total_rows => Ok(()),
        (false, other) => Err(format!(
            "expected COPY {total_rows}, got {other:?} (server {})",
            server.rows_committed
        )),
    }
}

/// Neither CopyDone nor CopyFail once the server's error is in, and no
/// success claimed for a COPY the server aborted.
fn check_no_end_after_error(
    frames: &FrameLog,
    server: &ServerCopy,
    succeeded: bool,
) -> Result<(), String> {
    // The server may receive a CopyDone that crossed its error on the
    // wire; what must never happen is the client sending one after the
    // error reached it.
    if frames.end_after_error {
        return Err("CopyDone or CopyFail sent after the server's error had arrived".into());
    }
    if server.end_after_abort && succeeded {
        return Err("the server aborted but the client reported success".into());
    }
    Ok(())
}

/// The contract: once the server's error has arrived, at most the batch
/// being written and the rest of the frame it had started go out. A batch is
/// written once it holds at least `batch_size` bytes, so it is under
/// `batch_size` plus one CopyData frame (the largest chunk and its 5-byte
/// header), which is also the largest frame that can be started.
fn check_written_after_error(
    written_after: usize,
    batch_size: usize,
    largest_frame: usize,
) -> Result<(), String> {
    let allowed = batch_size + largest_frame;
    if written_after > allowed {
        return Err(format!(
            "{written_after} bytes written after the server's error arrived; \
             allowed one batch ({batch_size}) plus the started frame ({largest_frame})"
        ));
    }
    Ok(())
}
