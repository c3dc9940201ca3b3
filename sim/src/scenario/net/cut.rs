//! `net-cut`: the connection ends (FIN or RST) at a seeded byte.

use bytes::Bytes;
use pg_transport::{ErrorKind, State, source_fn};

use super::harness::{Client, Shared, connect_with, finish, simulate};
use super::reply::{copy_bytes, copy_reply, rows_reply, text_rows};
use crate::chop::{End, Plan};
use crate::scenario::Outcome;
use crate::scenario::variant::{CUT_SALT, CutVariant};
use crate::seed::{Rng, Seed};
use crate::server::encode::Sent;
use crate::server::pg::{Reply, Script};

/// The connection ends, with a FIN or an RST, at a seeded byte of what the
/// client reads (startup, a query reply or COPY OUT) or writes: the operation
/// either completes with the right result or fails as `Closed`/`Io` saying
/// what happened, COPY data handed over before the end is a prefix of what
/// was sent, and the connection is then `Closed` and refuses work.
pub fn cut(seed: Seed) -> Outcome {
    cut_with(seed, CutVariant::from_seed(seed))
}

/// [`cut`] with its choices given.
pub fn cut_with(seed: Seed, v: CutVariant) -> Outcome {
    let (copy, messages, end) = match v {
        CutVariant::Reply {
            copy,
            messages,
            end,
        } => (copy, messages, end),
        CutVariant::CopyIn {
            total_rows,
            chunk_rows,
            at,
        } => return cut_copy_in(seed, total_rows, chunk_rows, at),
    };
    debug_assert!(end.reads || end.reset, "a write end is always a reset");
    let sent = cut_reply(seed, copy, messages);
    let expected_rows = text_rows(&sent);
    let expected_copy = copy_bytes(&sent);
    let script = Script::plain(if copy {
        Reply::CopyOut(sent)
    } else {
        Reply::Rows(sent)
    });
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            note(&transcript, format!("{end:?}, copy {copy}"));
            let Some(mut c) = connect_ending(plan, end, &transcript).await? else {
                return Ok(());
            };
            let failed = if copy {
                copy_out_until_end(&mut c, &expected_copy, &transcript).await?
            } else {
                query_until_end(&mut c, &expected_rows, &transcript).await?
            };
            match failed {
                None if c.state() != State::Ready => {
                    Err(format!("state {:?} after a complete reply", c.state()))
                }
                None => Ok(()),
                Some(e) => check_ended(&mut c, &e, end).await,
            }
        });
    finish(result, &log, &transcript, 1)
}

/// The reply of `messages` messages that `seed` draws for [`cut`]: COPY OUT
/// data (`copy`) or a query's rows.
fn cut_reply(seed: Seed, copy: bool, messages: usize) -> Vec<Sent> {
    let mut rng = Rng::new(Seed(seed.0 ^ CUT_SALT));
    // The two draws that chose this variant from the seed: skipped here too,
    // so a seed's messages are the same whichever way it was chosen.
    let _ = (rng.one_in(3), rng.one_in(2));
    if copy {
        copy_reply(&mut rng, Some(messages))
    } else {
        rows_reply(&mut rng, Some(messages))
    }
}

/// Adds `line` to the run's transcript.
fn note(transcript: &Shared<Vec<String>>, line: String) {
    transcript.lock().unwrap().push(line);
}

/// COPY OUT over a connection that may end: `Ok(None)` if it completed with
/// every byte, `Ok(Some(e))` if it failed with `e` after handing over a
/// prefix of the data.
async fn copy_out_until_end(
    c: &mut Client,
    expected: &[u8],
    transcript: &Shared<Vec<String>>,
) -> Result<Option<pg_transport::Error>, String> {
    let mut got = Vec::new();
    let r = c
        .copy_out("COPY t TO STDOUT", |b: Bytes| {
            got.extend_from_slice(&b);
            async { Ok::<_, std::io::Error>(()) }
        })
        .await;
    note(
        transcript,
        format!(
            "copy out: {} bytes, {:?}",
            got.len(),
            r.as_ref().map_err(ToString::to_string)
        ),
    );
    match r {
        Ok(_) if got == expected => Ok(None),
        Ok(_) => Err(format!(
            "COPY OUT completed with {} bytes of {}",
            got.len(),
            expected.len()
        )),
        Err(_) if !expected.starts_with(&got) => {
            Err("COPY data before the end is not a prefix of what was sent".into())
        }
        Err(e) => Ok(Some(e)),
    }
}

/// A query over a connection that may end: `Ok(None)` if it completed with
/// the rows sent, `Ok(Some(e))` if it failed with `e`.
async fn query_until_end(
    c: &mut Client,
    expected: &[Vec<Option<String>>],
    transcript: &Shared<Vec<String>>,
) -> Result<Option<pg_transport::Error>, String> {
    let r = c.simple_query("SELECT sim").await;
    note(
        transcript,
        format!(
            "query: {:?}",
            r.as_ref()
                .map(|q| q.first().map_or(0, |q| q.rows.len()))
                .map_err(ToString::to_string)
        ),
    );
    match r {
        Ok(q) if q.first().map(|q| q.rows.as_slice()) == Some(expected) => Ok(None),
        Ok(_) => Err("the query completed with the wrong rows".into()),
        Err(e) => Ok(Some(e)),
    }
}

/// After the connection ended under an operation: the error said so, and
/// the connection is `Closed` and refuses the next one.
async fn check_ended(c: &mut Client, e: &pg_transport::Error, end: End) -> Result<(), String> {
    check_end_error(e, end)?;
    if c.state() != State::Closed || c.is_connected() {
        return Err(format!(
            "after the connection ended: state {:?}, connected {}",
            c.state(),
            c.is_connected()
        ));
    }
    match c.simple_query("SELECT 1").await {
        Err(e) if e.is_closed() => Ok(()),
        other => Err(format!("a connection that ended was reused: {other:?}")),
    }
}

/// Connects through a fault layer that ends the connection per `end`.
/// `Ok(None)`: the end came during startup and the error said so.
async fn connect_ending(
    plan: Plan,
    end: End,
    transcript: &Shared<Vec<String>>,
) -> Result<Option<Client>, String> {
    let conninfo = "user=sim dbname=sim sslmode=disable";
    match connect_with(plan, conninfo, None, Some(end)).await {
        Ok((c, _)) => Ok(Some(c)),
        Err(e) => {
            transcript.lock().unwrap().push(format!("connect: {e:#}"));
            check_end_error(&e, end).map(|()| None)
        }
    }
}

/// An error from a connection that ended: `Closed` or `Io`, saying so.
fn check_end_error(e: &pg_transport::Error, end: End) -> Result<(), String> {
    // The chain: an I/O error's own words ("reset", "broken pipe") are its source's.
    let text = e.report().to_string().to_lowercase();
    let says = ["closed", "reset", "broken pipe", "end of file", "eof"]
        .iter()
        .any(|w| text.contains(w));
    if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io) && says {
        Ok(())
    } else {
        Err(format!(
            "after {end:?}: expected a Closed/Io error saying the connection ended, got {:?}: {e:#}",
            e.kind()
        ))
    }
}

/// COPY IN whose connection is reset at a seeded byte of what the client
/// writes: the server's row count and every row, or a `Closed`/`Io` error and
/// no row committed.
fn cut_copy_in(seed: Seed, total_rows: u64, chunk_rows: u64, at: usize) -> Outcome {
    let end = End {
        reads: false,
        at,
        reset: true,
    };
    let script = Script::plain(Reply::CopyIn {
        abort_at: None,
        stray: false,
    });
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, log, transcript| async move {
            note(&transcript, format!("{end:?}, copy in {total_rows} rows"));
            let Some(mut c) = connect_ending(plan, end, &transcript).await? else {
                return Ok(());
            };
            let mut next = 0u64;
            let source = source_fn(move || {
                let chunk: String = (next..total_rows.min(next + chunk_rows))
                    .map(copy_in_row)
                    .collect();
                next = total_rows.min(next + chunk_rows);
                async move { Ok::<_, std::io::Error>(Bytes::from(chunk)) }
            });
            let r = c.copy_in("COPY t FROM STDIN", source).await;
            let committed = log.lock().unwrap().rows_committed;
            note(
                &transcript,
                format!(
                    "copy in: {:?}, server committed {committed}",
                    r.as_ref().map_err(ToString::to_string)
                ),
            );
            match r {
                Ok(n) if n == total_rows && committed == total_rows => Ok(()),
                Ok(n) => Err(format!(
                    "COPY IN reported {n} rows of {total_rows}; the server committed {committed}"
                )),
                Err(_) if committed != 0 => Err(format!(
                    "COPY IN failed but the server committed {committed} rows"
                )),
                Err(e) => {
                    check_end_error(&e, end)?;
                    match (c.state(), c.is_connected()) {
                        (State::Closed, false) => Ok(()),
                        (state, connected) => Err(format!(
                            "after the reset: state {state:?}, connected {connected}"
                        )),
                    }
                }
            }
        });
    finish(result, &log, &transcript, 1)
}

/// Row `i` of the COPY IN data `cut` sends.
fn copy_in_row(i: u64) -> String {
    format!("{i}\tsimulated row {i}\n")
}

/// The bytes of `total_rows` rows of [`copy_in_row`].
pub(crate) fn copy_in_data_len(total_rows: u64) -> usize {
    (0..total_rows).map(|i| copy_in_row(i).len()).sum()
}
