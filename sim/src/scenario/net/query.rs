//! `net-query`: a query reply with notices, notifications and ParameterStatus.

use pg_transport::State;

use super::harness::{connect, finish, simulate};
use super::reply::{rows_reply, text_rows};
use crate::scenario::Outcome;
use crate::scenario::variant::{QUERY_SALT, QueryVariant};
use crate::seed::{Rng, Seed};
use crate::server::encode::Sent;
use crate::server::pg::{Reply, Script};

/// A query whose reply mixes rows with notices, notifications and
/// ParameterStatus, over chopped reads and writes.
pub fn query(seed: Seed) -> Outcome {
    query_with(seed, QueryVariant::from_seed(seed))
}

/// [`query`] with its choices given.
pub fn query_with(seed: Seed, v: QueryVariant) -> Outcome {
    let mut rng = Rng::new(Seed(seed.0 ^ QUERY_SALT));
    let sent = rows_reply(&mut rng, Some(v.messages));
    let expected = sent.clone();
    let script = Script::plain(Reply::Rows(sent)).tls_if(v.tls);
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let mut c = connect(plan, "prefer")
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            transcript
                .lock()
                .unwrap()
                .push(format!("tls {}", c.tls_info().is_some()));
            let results = c
                .simple_query("SELECT sim")
                .await
                .map_err(|e| format!("query: {e:#}"))?;
            let rows = text_rows(&expected);
            let got = results.first().map(|r| r.rows.clone()).unwrap_or_default();
            transcript
                .lock()
                .unwrap()
                .push(format!("rows {}", got.len()));
            if got != rows {
                return Err(format!(
                    "rows differ: got {} rows, sent {}",
                    got.len(),
                    rows.len()
                ));
            }
            for want in expected.iter().filter_map(|m| match m {
                Sent::Notification { payload, .. } => Some(payload),
                _ => None,
            }) {
                match c.session_mut().pop_notification() {
                    Some(Ok(n)) if &n.payload == want => {}
                    other => return Err(format!("notification {want:?}: got {other:?}")),
                }
            }
            if let Some(extra) = c.session_mut().pop_notification() {
                return Err(format!("extra notification {extra:?}"));
            }
            if c.state() != State::Ready {
                return Err(format!("state {:?}", c.state()));
            }
            c.close().await;
            Ok(())
        });
    finish(result, &log, &transcript, 0)
}
