//! What every scripted-peer test shares: a peer whose connection tasks are
//! all joined, so an assertion inside a script fails the test, and a
//! deadline, so a bug makes a test fail instead of hang.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long any scripted-peer test may take. Each takes well under a second
/// (the slowest waits out a 300 ms timeout); this only turns a hang into a
/// failure.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `test` under [`DEADLINE`]; on expiry, panics naming the test.
pub async fn within<F: Future>(test: F) -> F::Output {
    let name = std::thread::current()
        .name()
        .unwrap_or("a scripted-peer test")
        .to_owned();
    // Pinned here so that on expiry the test (and any Peer in it) is dropped
    // while this panic unwinds, not before: the deadline is what gets reported.
    let mut test = std::pin::pin!(test);
    match tokio::time::timeout(DEADLINE, &mut test).await {
        Ok(output) => output,
        Err(_) => panic!("{name}: no result within {DEADLINE:?} (hung)"),
    }
}

/// A listener on 127.0.0.1 that runs a script per connection. Every script
/// task is kept: [`Peer::finish`] joins them and resumes the first panic, so
/// an assertion inside a script fails the test. Dropping a `Peer` without
/// `finish` panics (outside an unwinding test), so no test can forget it.
#[must_use = "call finish() so the script's assertions reach the test"]
pub struct Peer {
    port: u16,
    dials: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    finished: bool,
}

impl Peer {
    /// Runs `script(stream, n)` for the `n`-th connection (from 0).
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dials = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (seen, kept) = (dials.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                // No await between accept and push: an abort cannot lose a task.
                kept.lock().unwrap().push(tokio::spawn(script(stream, n)));
            }
        });
        Self {
            port,
            dials,
            accept,
            tasks,
            finished: false,
        }
    }

    /// Runs `script` for the first connection only (further dials wait in
    /// the backlog, unanswered).
    pub async fn once<F, Fut>(script: F) -> Self
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let script = Mutex::new(Some(script));
        Self::start(move |stream, n| {
            let script = script.lock().unwrap().take();
            async move {
                assert_eq!(n, 0, "a one-connection peer was dialled again");
                (script.unwrap())(stream).await;
            }
        })
        .await
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it accepted so far.
    pub fn dials(&self) -> usize {
        self.dials.load(Ordering::SeqCst)
    }

    /// Stops accepting, waits for every script to end, and resumes the first
    /// panic among them. Drop the clients first when a script reads until
    /// the client closes.
    pub async fn finish(mut self) {
        self.finished = true;
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in tasks {
            if let Err(e) = task.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.accept.abort();
        if !self.finished && !std::thread::panicking() {
            panic!("a scripted peer was dropped without finish(): its panics would be lost");
        }
    }
}

/// Polls `probe` until it holds, at most [`PROBE_WAIT`]; panics naming
/// `what` if it never does. For kernel state no event announces (a FIN or a
/// byte arriving on the client's socket): the poll is bounded and the
/// assertion is the probe turning true, not the passing of time.
pub async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    while !probe() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PROBE_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How long [`eventually`] polls: loopback delivers in microseconds.
pub const PROBE_WAIT: Duration = Duration::from_secs(5);

/// A TLS acceptor for a scripted peer: `cert` and `key`, the protocol
/// `versions`, and ALPN `postgresql` when `alpn`.
pub fn tls_acceptor(
    versions: &[&'static rustls::SupportedProtocolVersion],
    (cert, key): (rcgen::Certificate, rcgen::KeyPair),
    alpn: bool,
) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
