//! What every network scenario shares: one turmoil simulation per run (the
//! simulated server on one host, the client on another, seeded latency, holds
//! and fault plan), the client's connection through the `Chop` fault layer, and
//! the run's `Outcome`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_transport::connect::{AuthMethod, HostEntry, connect_transport};
use pg_transport::transport::{MaybeTls, SimTransport};
use pg_transport::{Config, Connection};

use crate::chop::{Chop, End, Frames, Plan, take_cuts};
use crate::scenario::Outcome;
use crate::seed::{Rng, Seed};
use crate::server::pg::{Log, Script, serve};

pub(super) type Client = Connection<MaybeTls<Chop<SimTransport>>>;

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

pub(super) type Shared<T> = Arc<Mutex<T>>;

/// Runs one simulation: the server serves `script`; `client` runs against it.
/// Failures inside the client come back as `Err` from the simulation.
pub(super) fn simulate<F, Fut>(
    seed: Seed,
    script: Script,
    min_write: usize,
    client: F,
) -> (Result<(), String>, Shared<Log>, Shared<Vec<String>>)
where
    F: FnOnce(Plan, Shared<Log>, Shared<Vec<String>>) -> Fut + 'static,
    Fut: Future<Output = Result<(), String>> + 'static,
{
    // Drawn even when a property test overrides the plan: the seed's other
    // draws (latency, holds) stay what they are without the override.
    let link = Link::from_seed(seed);
    HOLDS.with(|h| h.set(link.holds.len() as u32));
    let mut plan = PLAN_OVERRIDE
        .with(|p| p.borrow().clone())
        .unwrap_or(link.plan);
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
        .max_message_latency(link.latency)
        .build();
    // turmoil steps hosts in the order they were added (and numbers their
    // addresses so): a seed replays only with this order kept.
    let server_log = log.clone();
    sim.host("server", move || {
        serve_each(script.clone(), server_log.clone())
    });
    if !link.holds.is_empty() {
        sim.client("chaos", hold_link(link.holds));
    }
    let (l, t) = (log.clone(), transcript.clone());
    sim.client("client", async move {
        client(plan, l, t).await.map_err(Into::into)
    });
    let result = sim.run().map_err(|e| e.to_string());
    (result, log, transcript)
}

/// What a seed makes of the link between client and server.
struct Link {
    /// The most a segment takes (the least is 1 ms).
    latency: Duration,
    /// The client's fault plan, unless a property test gives one.
    plan: Plan,
    /// (wait, hold) pairs for [`hold_link`].
    holds: Vec<(Duration, Duration)>,
}

impl Link {
    fn from_seed(seed: Seed) -> Self {
        let mut rng = Rng::new(seed);
        let latency = Duration::from_millis(1 + rng.below(20) as u64);
        let plan = Plan {
            reads: (0..1 + rng.below(6)).map(|_| size(&mut rng)).collect(),
            writes: (0..1 + rng.below(6)).map(|_| size(&mut rng)).collect(),
            pending_every: rng.below(6),
        };
        // Holds: the link delays everything for a while, then delivers it all
        // (lossless, unlike a partition). Short and early, so the scenarios' own
        // waits (an idle close, a server's read timeout) still outlast them.
        let holds = if rng.one_in(2) {
            (0..1 + rng.below(3))
                .map(|_| {
                    let mut ms = |n: usize| Duration::from_millis(rng.below(n) as u64);
                    (ms(60), ms(50))
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            latency,
            plan,
            holds,
        }
    }
}

/// The simulated server's host: serves `script` on each connection it
/// accepts.
async fn serve_each(script: Script, log: Shared<Log>) -> turmoil::Result {
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

/// After each wait, holds every segment between client and server for a
/// while, then releases them all.
async fn hold_link(holds: Vec<(Duration, Duration)>) -> turmoil::Result {
    for (wait, hold) in holds {
        tokio::time::sleep(wait).await;
        turmoil::hold("client", "server");
        tokio::time::sleep(hold).await;
        turmoil::release("client", "server");
    }
    Ok(())
}

fn size(rng: &mut Rng) -> usize {
    match rng.below(4) {
        0 => 1,
        1 => 1 + rng.below(7),
        2 => 1 + rng.below(200),
        _ => 1 + rng.below(64 * 1024),
    }
}

pub(super) async fn connect(plan: Plan, ssl_mode: &str) -> Result<Client, pg_transport::Error> {
    connect_tracked(plan, ssl_mode, None).await
}

pub(super) async fn connect_tracked(
    plan: Plan,
    ssl_mode: &str,
    frames: Option<Frames>,
) -> Result<Client, pg_transport::Error> {
    let conninfo = format!("user=sim dbname=sim sslmode={ssl_mode}");
    connect_with(plan, &conninfo, frames, None)
        .await
        .map(|(c, _)| c)
}

pub(super) async fn connect_with(
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

pub(super) fn finish(
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
