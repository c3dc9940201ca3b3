//! `net-cancel`: a query or COPY IN dropped at a seeded simulated instant.

use std::time::Duration;

use bytes::Bytes;
use pg_transport::{State, source_fn};

use super::harness::{connect, finish, simulate};
use super::reply::rows_reply;
use crate::scenario::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::encode::Sent;
use crate::server::pg::{Reply, Script};

/// A query abandoned at a seeded simulated instant (its future dropped): the
/// connection is then Closed and refuses work, or the query completed and is correct.
pub fn cancel(seed: Seed) -> Outcome {
    let mut rng = Rng::new(Seed(seed.0 ^ 0xCA));
    if rng.one_in(3) {
        return cancel_copy_in(seed, &mut rng);
    }
    let sent = rows_reply(&mut rng, None);
    let rows = sent
        .iter()
        .filter(|m| matches!(m, Sent::DataRow(_)))
        .count();
    let mut deadline = Duration::from_millis(rng.below(60) as u64);
    let tls = rng.one_in(3);
    // A partition a few milliseconds into the query drops every segment from
    // then on: only the deadline ends the wait, and it must end it.
    let partition = rng
        .one_in(3)
        .then(|| Duration::from_millis(rng.below(25) as u64));
    if partition.is_some() {
        deadline = Duration::from_secs(2);
    }
    let script = Script::plain(Reply::Rows(sent)).tls_if(tls);
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let mode = if tls { "require" } else { "disable" };
            let mut c = connect(plan, mode)
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            let outcome = tokio::time::timeout(deadline, async {
                let query = c.simple_query("SELECT sim");
                tokio::pin!(query);
                if let Some(at) = partition {
                    tokio::select! {
                        biased;
                        r = &mut query => return r,
                        () = tokio::time::sleep(at) => turmoil::partition("client", "server"),
                    }
                }
                query.await
            })
            .await;
            transcript.lock().unwrap().push(format!(
                "partition {partition:?}, completed: {}",
                outcome.is_ok()
            ));
            match outcome {
                Ok(Ok(r)) if r.first().map_or(0, |q| q.rows.len()) == rows => Ok(()),
                Ok(other) => Err(format!("query finished wrongly: {other:?}")),
                Err(_) if c.state() != State::Closed || c.is_connected() => Err(format!(
                    "abandoned query left state {:?}, connected {}",
                    c.state(),
                    c.is_connected()
                )),
                Err(_) => match c.simple_query("SELECT 1").await {
                    Err(e) if e.is_closed() => Ok(()),
                    other => Err(format!("abandoned connection was reused: {other:?}")),
                },
            }
        });
    finish(
        result,
        &log,
        &transcript,
        1 + u32::from(partition.is_some()),
    )
}

/// COPY IN dropped at a seeded simulated instant (while sending, while the
/// receive watch has a read in flight, or while waiting for the server's
/// count): the connection is then `Closed` and refuses work, and the server
/// holds every row or none; or it completed with the server's count.
fn cancel_copy_in(seed: Seed, rng: &mut Rng) -> Outcome {
    let total_rows = 500 + rng.below(3_000) as u64;
    let chunk_rows = 1 + rng.below(200) as u64;
    let deadline = Duration::from_millis(rng.below(40) as u64);
    let script = Script::plain(Reply::CopyIn {
        abort_at: None,
        stray: false,
    });
    let (result, log, transcript) = simulate(
        seed,
        script,
        256,
        move |plan, log, transcript| async move {
            let mut c = connect(plan, "disable")
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            let mut next = 0u64;
            let source = source_fn(move || {
                let end = total_rows.min(next + chunk_rows);
                let chunk: String = (next..end)
                    .map(|i| format!("{i}\tsimulated row {i}\n"))
                    .collect();
                next = end;
                async move { Ok::<_, std::io::Error>(Bytes::from(chunk)) }
            });
            let outcome =
                tokio::time::timeout(deadline, c.copy_in("COPY t FROM STDIN", source)).await;
            // Let the server take in whatever was already on the wire.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let committed = log.lock().unwrap().rows_committed;
            transcript.lock().unwrap().push(format!(
                "copy in of {total_rows} dropped after {deadline:?}: completed {}, server committed {committed}",
                outcome.is_ok()
            ));
            if committed != 0 && committed != total_rows {
                return Err(format!(
                    "the server committed {committed} of {total_rows} rows"
                ));
            }
            match outcome {
                Ok(Ok(n)) if n == total_rows && committed == total_rows => Ok(()),
                Ok(other) => Err(format!(
                    "COPY IN finished wrongly: {other:?} (server {committed})"
                )),
                Err(_) if c.state() != State::Closed || c.is_connected() => Err(format!(
                    "dropped COPY IN left state {:?}, connected {}",
                    c.state(),
                    c.is_connected()
                )),
                Err(_) => match c.simple_query("SELECT 1").await {
                    Err(e) if e.is_closed() => Ok(()),
                    other => Err(format!("abandoned connection was reused: {other:?}")),
                },
            }
        },
    );
    finish(result, &log, &transcript, 1)
}
