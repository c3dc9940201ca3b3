//! Scenarios over turmoil's simulated network: the real `Connection` code over
//! `SimTransport`, behind the seeded `Chop` fault layer, against the simulated
//! server of `server/pg.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pg_transport::connect::{AuthMethod, HostEntry, connect_transport};
use pg_transport::transport::{MaybeTls, SimTransport};
use pg_transport::{Config, Connection, CopyInOptions, ErrorKind, State, source_fn};

use super::Outcome;
use super::variant::{
    AuthVariant, COPY_OUT_SALT, CUT_SALT, CopyInVariant, CopyOutForm, CopyOutVariant, CutVariant,
    QUERY_SALT, QueryVariant,
};
use crate::chop::{Chop, End, FrameLog, Frames, Plan, take_cuts};
use crate::seed::{Rng, Seed};
use crate::server::auth::{Auth, PASSWORD, Twist};
use crate::server::encode::Sent;
use crate::server::pg::{Log, PROTOCOL_3_0, Reply, Script, Ssl, serve};

type Client = Connection<MaybeTls<Chop<SimTransport>>>;

thread_local! {
    /// A fault plan that replaces the seed's (property tests shrink it).
    static PLAN_OVERRIDE: std::cell::RefCell<Option<Plan>> = const { std::cell::RefCell::new(None) };
    /// Holds scheduled by the last `simulate` on this thread, for its faults count.
    static HOLDS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with `plan` as the fault plan of every simulation it starts on
/// this thread, instead of the plan drawn from the seed.
pub fn with_plan<R>(plan: Plan, f: impl FnOnce() -> R) -> R {
    PLAN_OVERRIDE.with(|p| *p.borrow_mut() = Some(plan));
    let r = f();
    PLAN_OVERRIDE.with(|p| *p.borrow_mut() = None);
    r
}
type Shared<T> = Arc<Mutex<T>>;

/// Runs one simulation: the server serves `script`; `client` runs against it.
/// Failures inside the client come back as `Err` from the simulation.
fn simulate<F, Fut>(
    seed: Seed,
    script: Script,
    min_write: usize,
    client: F,
) -> (Result<(), String>, Shared<Log>, Shared<Vec<String>>)
where
    F: FnOnce(Plan, Shared<Log>, Shared<Vec<String>>) -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    let mut rng = Rng::new(seed);
    let latency = Duration::from_millis(1 + rng.below(20) as u64);
    let seeded = Plan {
        reads: (0..1 + rng.below(6)).map(|_| size(&mut rng)).collect(),
        writes: (0..1 + rng.below(6)).map(|_| size(&mut rng)).collect(),
        pending_every: rng.below(6),
    };
    // Holds: the link delays everything for a while, then delivers it all
    // (lossless, unlike a partition). Short and early, so the scenarios' own
    // waits (an idle close, a server's read timeout) still outlast them.
    let holds: Vec<(Duration, Duration)> = if rng.one_in(2) {
        (0..1 + rng.below(3))
            .map(|_| {
                let mut ms = |n: usize| Duration::from_millis(rng.below(n) as u64);
                (ms(60), ms(50))
            })
            .collect()
    } else {
        Vec::new()
    };
    HOLDS.with(|h| h.set(holds.len() as u32));
    let mut plan = PLAN_OVERRIDE.with(|p| p.borrow().clone()).unwrap_or(seeded);
    plan.writes
        .iter_mut()
        .for_each(|w| *w = (*w).max(min_write));
    let log: Shared<Log> = Arc::default();
    let transcript: Shared<Vec<String>> = Arc::default();
    take_cuts();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed.0)
        .simulation_duration(Duration::from_secs(30))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(latency)
        .build();
    let server_log = log.clone();
    sim.host("server", move || {
        let script = script.clone();
        let log = server_log.clone();
        async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 5432)).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                // One connection at a time: scenarios use one. A client
                // that resets or drops its end is the scenario's doing.
                if let Err(e) = serve(stream, script.clone(), log.clone()).await {
                    use std::io::ErrorKind as K;
                    if !matches!(
                        e.kind(),
                        K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof
                    ) {
                        return Err(e.into());
                    }
                }
            }
        }
    });
    if !holds.is_empty() {
        sim.client("chaos", async move {
            for (wait, hold) in holds {
                tokio::time::sleep(wait).await;
                turmoil::hold("client", "server");
                tokio::time::sleep(hold).await;
                turmoil::release("client", "server");
            }
            Ok(())
        });
    }
    let (l, t) = (log.clone(), transcript.clone());
    sim.client("client", async move {
        client(plan, l, t).await.map_err(Into::into)
    });
    let result = sim.run().map_err(|e| e.to_string());
    (result, log, transcript)
}

fn size(rng: &mut Rng) -> usize {
    match rng.below(4) {
        0 => 1,
        1 => 1 + rng.below(7),
        2 => 1 + rng.below(200),
        _ => 1 + rng.below(64 * 1024),
    }
}

async fn connect(plan: Plan, ssl_mode: &str) -> Result<Client, pg_transport::Error> {
    connect_tracked(plan, ssl_mode, None).await
}

async fn connect_tracked(
    plan: Plan,
    ssl_mode: &str,
    frames: Option<Frames>,
) -> Result<Client, pg_transport::Error> {
    let conninfo = format!("user=sim dbname=sim sslmode={ssl_mode}");
    connect_with(plan, &conninfo, frames, None)
        .await
        .map(|(c, _)| c)
}

async fn connect_with(
    plan: Plan,
    conninfo: &str,
    frames: Option<Frames>,
    end: Option<End>,
) -> Result<(Client, AuthMethod), pg_transport::Error> {
    let stream = turmoil::net::TcpStream::connect(("server", 5432))
        .await
        .map_err(|e| pg_transport::Error::io("simulated connect", e))?;
    let mut chop = Chop::new(SimTransport::new(stream), plan).with_end(end);
    if let Some(frames) = frames {
        chop = chop.with_frames(frames);
    }
    let config: Config = conninfo.parse()?;
    let host = HostEntry {
        host: Some("server".into()),
        hostaddr: None,
        port: 5432,
    };
    connect_transport(chop, &config, &host).await
}

fn finish(
    result: Result<(), String>,
    log: &Shared<Log>,
    transcript: &Shared<Vec<String>>,
    faults: u32,
) -> Outcome {
    let mut lines = transcript.lock().unwrap().clone();
    lines.push(format!(
        "server tags: {}",
        String::from_utf8_lossy(&log.lock().unwrap().tags).replace('\0', "_")
    ));
    Outcome {
        faults: faults + HOLDS.with(|h| h.replace(0)),
        splits: take_cuts(),
        transcript: lines,
        result,
    }
}

/// A RowDescription and the messages that follow it: as many as the seed
/// draws, or `count`. The count is drawn either way, so a smaller `count`
/// gives a prefix of the seed's messages.
pub(super) fn rows_reply(rng: &mut Rng, count: Option<usize>) -> Vec<Sent> {
    let mut sent = vec![Sent::RowDescription(vec!["a".into(), "b".into()])];
    let drawn = rng.below(60);
    for _ in 0..count.unwrap_or(drawn) {
        sent.push(match rng.below(6) {
            0 => Sent::Notice(rng.word(20)),
            1 => Sent::Notification {
                pid: 7,
                channel: "ch".into(),
                payload: rng.word(30),
            },
            2 => Sent::ParameterStatus("application_name".into(), rng.word(10)),
            _ => Sent::DataRow(vec![
                Some(rng.word(40).into_bytes()),
                (!rng.one_in(4)).then(|| rng.word(500).into_bytes()),
            ]),
        });
    }
    sent
}

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
                .map_err(|e| format!("connect: {e}"))?;
            transcript
                .lock()
                .unwrap()
                .push(format!("tls {}", c.tls_info().is_some()));
            let results = c
                .simple_query("SELECT sim")
                .await
                .map_err(|e| format!("query: {e}"))?;
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

/// COPY OUT: every CopyData byte arrives, in order, notifications on the side.
pub fn copy_out(seed: Seed) -> Outcome {
    copy_out_with(seed, CopyOutVariant::from_seed(seed))
}

/// [`copy_out`] with its choices given.
pub fn copy_out_with(seed: Seed, v: CopyOutVariant) -> Outcome {
    let mut rng = Rng::new(Seed(seed.0 ^ COPY_OUT_SALT));
    let sent = copy_reply(&mut rng, Some(v.messages));
    let expected = copy_bytes(&sent);
    let script = Script::plain(Reply::CopyOut(sent)).tls_if(v.tls);
    let form = v.form;
    let payload_ends: Vec<usize> = {
        let mut end = 0;
        copy_payloads(&script)
            .map(|len| {
                end += len;
                end
            })
            .collect()
    };
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let mut c = connect(plan, "prefer")
                .await
                .map_err(|e| format!("connect: {e}"))?;
            transcript.lock().unwrap().push(format!(
                "tls {}, form {}",
                c.tls_info().is_some(),
                form as u8
            ));
            let mut got = Vec::new();
            let mut split_inside = false;
            let sink = |b: Bytes| {
                got.extend_from_slice(&b);
                split_inside |= !b.is_empty() && !payload_ends.contains(&got.len());
                async { Ok::<_, std::io::Error>(()) }
            };
            match form {
                CopyOutForm::Callback => c.copy_out("COPY t TO STDOUT", sink).await.map(drop),
                CopyOutForm::Joined => c.copy_out_joined("COPY t TO STDOUT", sink).await.map(drop),
                CopyOutForm::Stream => copy_out_streamed(&mut c, sink).await,
            }
            .map_err(|e| format!("copy_out: {e}"))?;
            if split_inside {
                return Err("a chunk ended inside a CopyData message".into());
            }
            transcript
                .lock()
                .unwrap()
                .push(format!("copy out {} bytes", got.len()));
            if got != expected {
                return Err(format!(
                    "COPY data differs: {} bytes, sent {}",
                    got.len(),
                    expected.len()
                ));
            }
            Ok(())
        });
    finish(result, &log, &transcript, 0)
}

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
            transcript.lock().unwrap().push(format!("error: {e}"));
            if e.kind() != ErrorKind::Tls
                || !e
                    .to_string()
                    .contains("unencrypted data after SSL response")
            {
                return Err(format!("expected the injection refusal, got {e}"));
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
                .map_err(|e| format!("connect: {e}"))?;
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
                .map_err(|e| format!("connect: {e}"))?;
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

/// Startup over what the seed picks: SSL refused or TLS (rustls over the
/// simulated stream), trust/cleartext/MD5/SCRAM(-PLUS), the right or a wrong
/// password, channel_binding disable/prefer/require, and SCRAM servers that
/// skip or forge their proof. Each combination has one right outcome.
pub fn auth(seed: Seed) -> Outcome {
    auth_with(seed, AuthVariant::from_seed(seed))
}

/// [`auth`] with its choices given.
pub fn auth_with(seed: Seed, v: AuthVariant) -> Outcome {
    let AuthVariant {
        ssl,
        sslmode,
        binding,
        auth,
        right_password,
    } = v;
    debug_assert!(
        matches!(ssl, Ssl::Accept | Ssl::Refuse | Ssl::Error),
        "injection is ssl_injection's scenario; its checks are not here"
    );
    let server_tls = ssl == Ssl::Accept;
    let ssl_error = ssl == Ssl::Error;
    let tls = server_tls && sslmode != "disable";
    let expected = if ssl_error && sslmode != "disable" {
        Err(Refusal {
            kind: ErrorKind::Tls,
            says: "sent an error during SSL negotiation",
            no_password: true,
        })
    } else {
        expected_auth(server_tls, sslmode, binding, auth, right_password)
    };
    let script = Script {
        ssl,
        auth,
        reply: Reply::Rows(Vec::new()),
        newest_protocol: PROTOCOL_3_0,
    };
    let password = if right_password {
        PASSWORD
    } else {
        "not the password"
    };
    let conninfo = format!(
        "user=sim dbname=sim sslmode={sslmode} channel_binding={binding} password='{password}'"
    );
    let forged = matches!(auth, Auth::Scram(twist) if twist != Twist::None);
    let faults = u32::from(!right_password || forged);
    let (result, log, transcript) = simulate(
        seed,
        script,
        1,
        move |plan, log, transcript| async move {
            let outcome = connect_with(plan, &conninfo, None, None).await;
            transcript.lock().unwrap().push(format!(
                "tls {server_tls} (error {ssl_error})/{sslmode}, binding {binding}, {auth:?}, right password {right_password}: {:?}",
                outcome.as_ref().map(|(_, m)| m).map_err(|e| e.to_string())
            ));
            let (passwords, mechanism, server_saw_tls) = {
                let l = log.lock().unwrap();
                (l.password_messages, l.mechanism.clone(), l.tls)
            };
            match (&expected, outcome) {
                (Ok(method), Ok((mut c, got))) => {
                    if got != *method {
                        return Err(format!("authenticated with {got:?}, expected {method:?}"));
                    }
                    if c.tls_info().is_some() != tls || server_saw_tls != tls {
                        return Err(format!(
                            "TLS: client {}, server {server_saw_tls}, expected {tls}",
                            c.tls_info().is_some()
                        ));
                    }
                    let plus = mechanism.as_deref() == Some("SCRAM-SHA-256-PLUS");
                    if plus != (*method == AuthMethod::ScramSha256Plus) {
                        return Err(format!("server saw mechanism {mechanism:?} for {method:?}"));
                    }
                    c.simple_query("")
                        .await
                        .map_err(|e| format!("connection not usable after startup: {e}"))?;
                    if c.state() != State::Ready {
                        return Err(format!("state {:?} after startup", c.state()));
                    }
                    c.close().await;
                    Ok(())
                }
                (Err(want), Err(e)) => {
                    if e.kind() != want.kind || !e.to_string().contains(want.says) {
                        return Err(format!(
                            "expected a {:?} error saying {:?}, got {:?}: {e}",
                            want.kind,
                            want.says,
                            e.kind()
                        ));
                    }
                    if want.no_password && passwords != 0 {
                        return Err(format!(
                            "{passwords} password message(s) sent although the client had to refuse"
                        ));
                    }
                    Ok(())
                }
                (Ok(method), Err(e)) => Err(format!("expected {method:?}, got {e}")),
                (Err(want), Ok((_, got))) => Err(format!(
                    "connected with {got:?}; expected a {:?} error saying {:?}",
                    want.kind, want.says
                )),
            }
        },
    );
    finish(result, &log, &transcript, faults)
}

/// How a startup must fail.
#[derive(Debug)]
struct Refusal {
    kind: ErrorKind,
    says: &'static str,
    /// The client must not have sent any password or SASL message.
    no_password: bool,
}

/// The one right outcome of a startup, from libpq's rules.
fn expected_auth(
    server_tls: bool,
    sslmode: &str,
    binding: &str,
    auth: Auth,
    right_password: bool,
) -> Result<AuthMethod, Refusal> {
    let refuse = |kind, says, no_password| {
        Err(Refusal {
            kind,
            says,
            no_password,
        })
    };
    if sslmode == "require" && !server_tls {
        return refuse(ErrorKind::Tls, "SSL was required", true);
    }
    let tls = server_tls && sslmode != "disable";
    let require = binding == "require";
    let wrong = "password authentication failed";
    match auth {
        Auth::Trust if require => refuse(ErrorKind::Auth, "without channel binding", true),
        Auth::Trust => Ok(AuthMethod::Trust),
        Auth::Cleartext | Auth::Md5 if require => {
            refuse(ErrorKind::Auth, "the password was not sent", true)
        }
        Auth::Cleartext | Auth::Md5 if !right_password => refuse(ErrorKind::Auth, wrong, false),
        Auth::Cleartext => Ok(AuthMethod::Cleartext),
        Auth::Md5 => Ok(AuthMethod::Md5),
        Auth::Scram(_) if require && !tls => refuse(ErrorKind::Auth, "SCRAM-SHA-256-PLUS", true),
        // Nothing was checked yet when the server skipped to its final message.
        Auth::Scram(Twist::FinalFirst) => refuse(ErrorKind::Auth, "out of order", false),
        Auth::Scram(_) if !right_password => refuse(ErrorKind::Auth, wrong, false),
        Auth::Scram(Twist::OkWithoutFinal) => {
            refuse(ErrorKind::Auth, "before completing SCRAM", false)
        }
        Auth::Scram(Twist::BadSignature) => {
            refuse(ErrorKind::Auth, "server signature is invalid", false)
        }
        Auth::Scram(Twist::ContinueTwice) => refuse(ErrorKind::Auth, "out of order", false),
        Auth::Scram(Twist::None) if tls && binding != "disable" => Ok(AuthMethod::ScramSha256Plus),
        Auth::Scram(Twist::None) => Ok(AuthMethod::ScramSha256),
    }
}

/// The DataRows in `sent` as `simple_query` returns them.
fn text_rows(sent: &[Sent]) -> Vec<Vec<Option<String>>> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::DataRow(cols) => Some(
                cols.iter()
                    .map(|c| c.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// CopyData, notices and notifications: as many as the seed draws, or
/// `count` (a prefix of the seed's, as in [`rows_reply`]).
pub(super) fn copy_reply(rng: &mut Rng, count: Option<usize>) -> Vec<Sent> {
    let drawn = rng.below(80);
    (0..count.unwrap_or(drawn))
        .map(|_| match rng.below(5) {
            0 => Sent::Notification {
                pid: 1,
                channel: "c".into(),
                payload: rng.word(10),
            },
            1 => Sent::Notice(rng.word(10)),
            _ => Sent::CopyData(rng.bytes(3000)),
        })
        .collect()
}

/// The COPY data in `sent`, concatenated.
fn copy_bytes(sent: &[Sent]) -> Vec<u8> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::CopyData(d) => Some(d.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

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
    let mut rng = Rng::new(Seed(seed.0 ^ CUT_SALT));
    // The two draws that chose this variant from the seed: skipped here too,
    // so a seed's messages are the same whichever way it was chosen.
    let _ = (rng.one_in(3), rng.one_in(2));
    let sent = if copy {
        copy_reply(&mut rng, Some(messages))
    } else {
        rows_reply(&mut rng, Some(messages))
    };
    let expected_rows = text_rows(&sent);
    let expected_copy = copy_bytes(&sent);
    let script = Script::plain(if copy {
        Reply::CopyOut(sent)
    } else {
        Reply::Rows(sent)
    });
    let (result, log, transcript) =
        simulate(seed, script, 1, move |plan, _log, transcript| async move {
            let note = |line: String| transcript.lock().unwrap().push(line);
            note(format!("{end:?}, copy {copy}"));
            let Some(mut c) = connect_ending(plan, end, &transcript).await? else {
                return Ok(());
            };
            let failed = if copy {
                let mut got = Vec::new();
                let r = c
                    .copy_out("COPY t TO STDOUT", |b: Bytes| {
                        got.extend_from_slice(&b);
                        async { Ok::<_, std::io::Error>(()) }
                    })
                    .await;
                note(format!(
                    "copy out: {} bytes, {:?}",
                    got.len(),
                    r.as_ref().map_err(ToString::to_string)
                ));
                match r {
                    Ok(_) if got == expected_copy => None,
                    Ok(_) => {
                        return Err(format!(
                            "COPY OUT completed with {} bytes of {}",
                            got.len(),
                            expected_copy.len()
                        ));
                    }
                    Err(_) if !expected_copy.starts_with(&got) => {
                        return Err(
                            "COPY data before the end is not a prefix of what was sent".into()
                        );
                    }
                    Err(e) => Some(e),
                }
            } else {
                let r = c.simple_query("SELECT sim").await;
                note(format!(
                    "query: {:?}",
                    r.as_ref()
                        .map(|q| q.first().map_or(0, |q| q.rows.len()))
                        .map_err(ToString::to_string)
                ));
                match r {
                    Ok(q) if q.first().map(|q| &q.rows) == Some(&expected_rows) => None,
                    Ok(_) => return Err("the query completed with the wrong rows".into()),
                    Err(e) => Some(e),
                }
            };
            let Some(e) = failed else {
                if c.state() != State::Ready {
                    return Err(format!("state {:?} after a complete reply", c.state()));
                }
                return Ok(());
            };
            check_end_error(&e, end)?;
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
        });
    finish(result, &log, &transcript, 1)
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
            transcript.lock().unwrap().push(format!("connect: {e}"));
            check_end_error(&e, end).map(|()| None)
        }
    }
}

/// An error from a connection that ended: `Closed` or `Io`, saying so.
fn check_end_error(e: &pg_transport::Error, end: End) -> Result<(), String> {
    let text = e.to_string().to_lowercase();
    let says = ["closed", "reset", "broken pipe", "end of file", "eof"]
        .iter()
        .any(|w| text.contains(w));
    if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io) && says {
        Ok(())
    } else {
        Err(format!(
            "after {end:?}: expected a Closed/Io error saying the connection ended, got {:?}: {e}",
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
            let note = |line: String| transcript.lock().unwrap().push(line);
            note(format!("{end:?}, copy in {total_rows} rows"));
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
            note(format!(
                "copy in: {:?}, server committed {committed}",
                r.as_ref().map_err(ToString::to_string)
            ));
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
pub(super) fn copy_in_data_len(total_rows: u64) -> usize {
    (0..total_rows).map(|i| copy_in_row(i).len()).sum()
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
                .map_err(|e| format!("connect: {e}"))?;
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

/// The payload sizes of a COPY OUT script's CopyData messages, in order.
fn copy_payloads(script: &Script) -> impl Iterator<Item = usize> + '_ {
    let sent: &[Sent] = match &script.reply {
        Reply::CopyOut(sent) => sent,
        _ => &[],
    };
    sent.iter().filter_map(|m| match m {
        Sent::CopyData(d) => Some(d.len()),
        _ => None,
    })
}

/// COPY OUT through `copy_out_stream`, each item handed to `sink`.
async fn copy_out_streamed<F, Fut>(c: &mut Client, mut sink: F) -> Result<(), pg_transport::Error>
where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = Result<(), std::io::Error>>,
{
    let mut stream = c.copy_out_stream("COPY t TO STDOUT").await?;
    loop {
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut stream), cx)
        });
        match next.await {
            Some(Ok(b)) => {
                let _ = sink(b).await;
            }
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
}

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
                .map_err(|e| format!("connect: {e}"))?;
            c.simple_query("LISTEN ch")
                .await
                .map_err(|e| format!("LISTEN: {e}"))?;
            let mut got = Vec::new();
            let mut timeouts = 0;
            while got.len() < expected.len() {
                match c.wait_notification(Some(timeout)).await {
                    Ok(Some(n)) => got.push(n.payload),
                    Ok(None) => timeouts += 1,
                    Err(e) => return Err(format!("after {got:?}: {e}")),
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
                Err(e) => return Err(format!("after all notifications: {e}")),
            }
            if c.state() != State::Ready {
                return Err(format!("state {:?} while listening", c.state()));
            }
            c.simple_query("")
                .await
                .map_err(|e| format!("connection not usable after listening: {e}"))?;
            if let Some(extra) = c.session_mut().pop_notification() {
                return Err(format!("extra notification {extra:?} after the last query"));
            }
            c.close().await;
            Ok(())
        });
    finish(result, &log, &transcript, 0)
}
