//! `net-pipeline`: a pipeline of extended-protocol queries with the server's
//! error planted at a seeded message (or at the Sync, or nowhere), over
//! chopped reads and writes.

use pg_transport::session::pipeline::{Pipeline, Response};
use pg_transport::{ErrorKind, State};

use super::harness::{connect, finish, simulate};
use crate::scenario::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::extended::rows_of;
use crate::server::pg::{Reply, Script};

const PIPELINE_SALT: u64 = 0x919E;
/// Parse, Bind, Describe, Execute: the messages of one query.
const MESSAGES_PER_QUERY: usize = 4;

/// Where the server's error goes.
#[derive(Debug, Clone, Copy)]
enum Fail {
    Nowhere,
    /// At this message of the pipeline.
    At(usize),
    /// At the Sync: the implicit COMMIT.
    Sync,
}

/// Up to 6 queries; the error at any of their messages, at the Sync, or
/// nowhere: the failing query gets the error, the rest are skipped, nothing
/// hangs, and the connection is `Ready` for the next query.
pub fn pipeline(seed: Seed) -> Outcome {
    let mut rng = Rng::new(Seed(seed.0 ^ PIPELINE_SALT));
    let queries = 1 + rng.below(6);
    let fail = match rng.below(4) {
        0 => Fail::Nowhere,
        1 => Fail::Sync,
        _ => Fail::At(rng.below(queries * MESSAGES_PER_QUERY)),
    };
    let reply = Reply::Pipeline {
        fail_at: match fail {
            Fail::At(at) => Some(at),
            _ => None,
        },
        at_sync: matches!(fail, Fail::Sync),
    };
    let tls = rng.one_in(4);
    let (result, log, transcript) = simulate(
        seed,
        Script::plain(reply).tls_if(tls),
        1,
        move |plan, _log, transcript| async move {
            let mut c = connect(plan, "prefer")
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            let mut p = Pipeline::new();
            for k in 0..queries {
                p.query("SELECT sim", &[Some(k.to_string().as_bytes())])
                    .map_err(|e| format!("encode: {e:#}"))?;
            }
            let outcome = c.pipeline(&p).await;
            let got = match &outcome {
                Ok(responses) => responses.iter().map(word).collect::<Vec<_>>().join(" "),
                Err(e) => format!(
                    "error {:?} {}",
                    e.kind(),
                    e.code()
                        .map_or_else(|| "-".to_owned(), |c| c.code().to_owned())
                ),
            };
            transcript
                .lock()
                .unwrap()
                .push(format!("{queries} queries: {got}"));
            let want = expected(queries, fail);
            if got != want {
                return Err(format!("pipeline: got {got:?}, want {want:?}"));
            }
            if let Err(e) = &outcome {
                if e.kind() != ErrorKind::Server {
                    return Err(format!("pipeline: {e:#}"));
                }
            }
            c.simple_query("SELECT 1")
                .await
                .map_err(|e| format!("after the pipeline: {e:#}"))?;
            if c.state() != State::Ready {
                return Err(format!("state {:?}", c.state()));
            }
            c.close().await;
            Ok(())
        },
    );
    finish(result, &log, &transcript, 0)
}

fn word(r: &Response) -> String {
    match r {
        Response::Rows(set) => {
            let values: Vec<&str> = set
                .rows
                .iter()
                .map(|row| row.get_str(0).ok().flatten().unwrap_or("?"))
                .collect();
            format!("[{}]", values.join(","))
        }
        Response::Failed(e) => format!(
            "failed:{}",
            e.code()
                .map_or_else(|| "-".to_owned(), |c| c.code().to_owned())
        ),
        Response::Skipped => "skipped".into(),
        other => format!("{other:?}"),
    }
}

/// What the client must report, from what the server was told to do.
fn expected(queries: usize, fail: Fail) -> String {
    let failing = match fail {
        Fail::Sync => return "error Server 23505".into(),
        Fail::Nowhere => queries,
        Fail::At(at) => at / MESSAGES_PER_QUERY,
    };
    (0..queries)
        .map(|k| match k.cmp(&failing) {
            std::cmp::Ordering::Less => format!("[{}]", rows_of(k).join(",")),
            std::cmp::Ordering::Equal => "failed:23505".into(),
            std::cmp::Ordering::Greater => "skipped".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
