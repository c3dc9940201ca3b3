//! `net-copy-in`: COPY IN that the server may abort at a seeded byte.

use std::sync::Arc;

use bytes::Bytes;
use pg_transport::{CopyInOptions, State, source_fn};

use super::harness::{Shared, connect_tracked, finish, simulate};
use crate::chop::{FrameLog, Frames};
use crate::scenario::Outcome;
use crate::scenario::variant::CopyInVariant;
use crate::seed::Seed;
use crate::server::pg::{Reply, Script};

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
                .map_err(|e| format!("connect: {e}"))?;
            let mut next = 0u64;
            let largest_chunk: Shared<usize> = Arc::default();
            let largest = largest_chunk.clone();
            let source = source_fn(move || {
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
            });
            let options = CopyInOptions {
                batch_size,
                ..CopyInOptions::default()
            };
            let result = c.copy_in_with("COPY t FROM STDIN", source, options).await;
            let (aborted, rows_committed, after_abort, end_after_abort) = {
                let l = log.lock().unwrap();
                (
                    l.aborted,
                    l.rows_committed,
                    l.copy_bytes_after_abort,
                    l.end_after_abort,
                )
            };
            transcript
                .lock()
                .unwrap()
                .push(format!("copy: {result:?}; after abort {after_abort}"));
            // abort_at may lie beyond the data: then the COPY completes.
            match (aborted, &result) {
                (true, Err(e)) if e.as_db_error().is_some_and(|d| d.code.code() == "23505") => {}
                (true, other) => {
                    return Err(format!(
                        "the server aborted; expected its 23505, got {other:?}"
                    ));
                }
                (false, Ok(rows)) if *rows == total_rows && rows_committed == total_rows => {}
                (false, other) => {
                    return Err(format!(
                        "expected COPY {total_rows}, got {other:?} (server {})",
                        rows_committed
                    ));
                }
            }
            // The server may receive a CopyDone that crossed its error on the
            // wire; what must never happen is the client sending one after the
            // error reached it.
            if frame_log.lock().unwrap().end_after_error {
                return Err(
                    "CopyDone or CopyFail sent after the server's error had arrived".into(),
                );
            }
            if end_after_abort && result.is_ok() {
                return Err("the server aborted but the client reported success".into());
            }
            // The contract: once the server's error has arrived, at most the
            // batch being written and the rest of the frame it had started go
            // out. A batch is written once it holds at least `batch_size`
            // bytes, so it is under `batch_size` plus one CopyData frame (the
            // largest chunk and its 5-byte header), which is also the
            // largest frame that can be started.
            let written_after = frame_log.lock().unwrap().written_after_arrival;
            let largest_frame = *largest_chunk.lock().unwrap() + 5;
            let allowed = batch_size + largest_frame;
            if written_after > allowed {
                return Err(format!(
                    "{written_after} bytes written after the server's error arrived; \
                     allowed one batch ({batch_size}) plus the started frame ({largest_frame})"
                ));
            }
            if c.state() != State::Ready {
                return Err(format!("state {:?} after COPY", c.state()));
            }
            c.simple_query("")
                .await
                .map_err(|e| format!("connection not usable after COPY: {e}"))?;
            Ok(())
        });
    finish(result, &log, &transcript, u32::from(abort_at.is_some()))
}
