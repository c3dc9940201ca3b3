//! `net-ssl-inject`: plaintext injected after the server's `S`.

use std::time::Duration;

use pg_transport::ErrorKind;

use super::harness::{connect, finish, simulate};
use crate::scenario::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::auth::Auth;
use crate::server::pg::{PROTOCOL_3_0, Reply, Script, Ssl};

/// The server answers SSLRequest with `S` and plaintext: refused before a
/// single TLS byte is sent.
pub fn ssl_injection(seed: Seed) -> Outcome {
    let same_segment = Rng::new(seed).one_in(2);
    let script = Script {
        ssl: Ssl::Inject { same_segment },
        auth: Auth::Trust,
        reply: Reply::Rows(Vec::new()),
        newest_protocol: PROTOCOL_3_0,
    };
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let Err(e) = connect(plan, "require").await else {
                return Err("connected despite injected bytes".into());
            };
            transcript.lock().unwrap().push(format!("error: {e:#}"));
            if e.kind() != ErrorKind::Tls
                || !e
                    .to_string()
                    .contains("unencrypted data after SSL response")
            {
                return Err(format!("expected the injection refusal, got {e:#}"));
            }
            // Let the server finish reading what we sent.
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        });
    // Bytes in the same segment as the S are seen before TLS starts: not one
    // TLS byte may follow. Bytes in a later segment can only be seen once the
    // ClientHello is out; they must still be refused before anything else is sent.
    let result =
        result.and_then(
            |()| match (same_segment, log.lock().unwrap().bytes_after_injection) {
                (true, 0) => Ok(()),
                (true, n) => Err(format!(
                    "{n} bytes sent after an S with injected bytes in the same segment"
                )),
                (false, n) if n <= CLIENT_HELLO_MAX => Ok(()),
                (false, n) => Err(format!(
                    "{n} bytes sent after the injected S: more than a ClientHello"
                )),
            },
        );
    finish(result, &log, &transcript, 1)
}

/// The most a ClientHello takes on the wire (rustls sends ~250 bytes).
const CLIENT_HELLO_MAX: usize = 1024;
