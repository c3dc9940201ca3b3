//! `net-idle-close`: the server closes an idle connection.

use std::time::Duration;

use pg_transport::State;

use super::harness::{connect, finish, simulate};
use crate::scenario::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::pg::{Reply, Script};

/// The server closes an idle connection (FIN, with or without a FATAL message
/// first): the probe sees it without a round trip, the state stays Ready until
/// the next operation, which fails and leaves the connection Closed.
pub fn idle_close(seed: Seed) -> Outcome {
    let fatal = Rng::new(Seed(seed.0 ^ 0x1D)).one_in(2);
    let script = Script::plain(Reply::CloseIdle { fatal });
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let mut c = connect(plan, "disable")
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            transcript
                .lock()
                .unwrap()
                .push(format!("fatal {fatal}, connected {}", c.is_connected()));
            // turmoil cannot show a FIN queued behind unread bytes (the real probe
            // can: POLLRDHUP), so after a FATAL message the simulated probe reports
            // the pending data; after a bare FIN it must report the close.
            let seen = if fatal {
                c.socket_has_pending_data()
            } else {
                c.socket_has_fin() && !c.is_connected()
            };
            if !seen {
                return Err("the server's close was not seen by the probe".into());
            }
            if c.state() != State::Ready {
                return Err(format!("a probe changed the state to {:?}", c.state()));
            }
            match c.simple_query("SELECT 1").await {
                Err(e) if fatal && e.as_db_error().is_some_and(|d| d.code.code() == "57P01") => {}
                Err(e) if !fatal && e.is_closed() => {}
                other => return Err(format!("query on a closed connection: {other:?}")),
            }
            if c.state() != State::Closed {
                return Err(format!("state {:?} after the server closed", c.state()));
            }
            Ok(())
        });
    finish(result, &log, &transcript, 1)
}
