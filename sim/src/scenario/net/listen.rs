//! `net-listen`: notifications while idle.

use std::time::Duration;

use pg_transport::State;

use super::harness::{connect, finish, simulate};
use crate::scenario::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::pg::{Reply, Script};

/// LISTEN while idle: notifications in the same segment as the ReadyForQuery
/// that ends a query, then more at seeded intervals while the client waits
/// with `wait_notification` and short seeded timeouts. Every one arrives, in
/// order, once; timeouts lose nothing; the connection stays `Ready`.
pub fn listen(seed: Seed) -> Outcome {
    let mut rng = Rng::new(Seed(seed.0 ^ 0x11));
    let trailing: Vec<String> = (0..rng.below(4))
        .map(|i| format!("t{i}-{}", rng.word(8)))
        .collect();
    let later: Vec<(u64, String)> = (0..rng.below(6))
        .map(|i| (rng.below(120) as u64, format!("l{i}-{}", rng.word(8))))
        .collect();
    let expected: Vec<String> = trailing
        .iter()
        .cloned()
        .chain(later.iter().map(|(_, p)| p.clone()))
        .collect();
    let timeout = Duration::from_millis(1 + rng.below(60) as u64);
    let script = Script::plain(Reply::Listen { trailing, later }).tls_if(rng.one_in(3));
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let mut c = connect(plan, "prefer")
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            c.simple_query("LISTEN ch")
                .await
                .map_err(|e| format!("LISTEN: {e:#}"))?;
            let mut got = Vec::new();
            let mut timeouts = 0;
            while got.len() < expected.len() {
                match c.wait_notification(Some(timeout)).await {
                    Ok(Some(n)) => got.push(n.payload),
                    Ok(None) => timeouts += 1,
                    Err(e) => return Err(format!("after {got:?}: {e:#}")),
                }
                if timeouts > 10_000 {
                    return Err(format!("only {got:?} of {expected:?} arrived"));
                }
            }
            transcript
                .lock()
                .unwrap()
                .push(format!("{} notifications, {timeouts} timeouts", got.len()));
            if got != expected {
                return Err(format!("notifications {got:?}, sent {expected:?}"));
            }
            // Nothing beyond the expected set: no duplicate, none invented.
            // Everything was sent by now; wait past the link's latency and
            // holds for anything still on its way.
            match c.wait_notification(Some(Duration::from_millis(250))).await {
                Ok(None) => {}
                Ok(Some(n)) => {
                    return Err(format!(
                        "extra notification {:?} after all of {expected:?}",
                        n.payload
                    ));
                }
                Err(e) => return Err(format!("after all notifications: {e:#}")),
            }
            if c.state() != State::Ready {
                return Err(format!("state {:?} while listening", c.state()));
            }
            c.simple_query("")
                .await
                .map_err(|e| format!("connection not usable after listening: {e:#}"))?;
            if let Some(extra) = c.session_mut().pop_notification() {
                return Err(format!("extra notification {extra:?} after the last query"));
            }
            c.close().await;
            Ok(())
        });
    finish(result, &log, &transcript, 0)
}
