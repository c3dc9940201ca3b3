//! Through PgBouncer (Debian's `pgbouncer`, 1.18 here; `scripts/pg-servers.sh
//! pgbouncer`), in front of this binary's cluster, in session and transaction
//! pooling: trust and SCRAM users (an `auth_file` with the passwords), TLS from
//! the client to PgBouncer, queries, COPY both ways with the early abort,
//! cancel, LISTEN, and what a restart of PgBouncer looks like to a client.
//!
//! What transaction pooling cannot do is asserted as users see it, so a change
//! in either PgBouncer or this library shows up here: see
//! `transaction_pooling_loses_listen_between_transactions`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use pg_transport::{DefaultConnection, ErrorKind, State, TransactionStatus, source_fn};

use crate::cluster::*;
use crate::scripted::eventually;

/// A PgBouncer process in front of [`cluster`]; stopped with the cluster when
/// this binary exits (the guardian kills every `pgbouncer-*.pid` it finds).
pub struct Bouncer {
    pub port: u16,
    name: String,
    config: PathBuf,
}

static SESSION: OnceLock<Bouncer> = OnceLock::new();
static TRANSACTION: OnceLock<Bouncer> = OnceLock::new();

fn session_pool() -> &'static Bouncer {
    SESSION.get_or_init(|| Bouncer::start("session", "session"))
}

fn transaction_pool() -> &'static Bouncer {
    TRANSACTION.get_or_init(|| Bouncer::start("transaction", "transaction"))
}

fn pgbouncer_binary() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("pgbouncer is not installed: run scripts/pg-servers.sh pgbouncer (Debian's pgbouncer package)")
        })
}

impl Bouncer {
    /// Writes the configuration for pool mode `mode` and starts PgBouncer.
    fn start(name: &str, mode: &str) -> Self {
        let c = cluster();
        let port = free_port().unwrap();
        let base = &c.base;
        let data = base.join("data");
        let file = |what: &str| base.join(format!("pgbouncer-{name}.{what}"));
        std::fs::write(
            file("hba"),
            format!(
                "host all {TRUST_USER} 127.0.0.1/32 trust\n\
                 host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        std::fs::write(
            file("users"),
            format!("\"{TRUST_USER}\" \"\"\n\"{SCRAM_USER}\" \"{SCRAM_PASS}\"\n"),
        )
        .unwrap();
        let config = file("ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n\
                 postgres = host=127.0.0.1 port={pg} dbname=postgres\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = hba\n\
                 auth_hba_file = {hba}\n\
                 auth_file = {users}\n\
                 pool_mode = {mode}\n\
                 logfile = {log}\n\
                 pidfile = {pid}\n\
                 client_tls_sslmode = allow\n\
                 client_tls_cert_file = {data}/server.crt\n\
                 client_tls_key_file = {data}/server.key\n\
                 server_tls_sslmode = disable\n",
                pg = c.port,
                hba = file("hba").display(),
                users = file("users").display(),
                log = file("log").display(),
                pid = file("pid").display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let bouncer = Self {
            port,
            name: name.to_owned(),
            config,
        };
        bouncer.launch();
        bouncer
    }

    /// Starts the daemon and waits until it accepts connections.
    fn launch(&self) {
        let c = cluster();
        run(c
            .as_server_user_in(&c.base, &pgbouncer_binary())
            .unwrap()
            .arg("-d")
            .arg(&self.config))
        .unwrap_or_else(|e| panic!("pgbouncer ({}) did not start: {e}", self.name));
        let port = self.port;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer ({}) not listening on {port} within 30 s; see {}",
                self.name,
                self.log().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> PathBuf {
        cluster().base.join(format!("pgbouncer-{}.log", self.name))
    }

    fn pid_file(&self) -> PathBuf {
        cluster().base.join(format!("pgbouncer-{}.pid", self.name))
    }

    /// Kills PgBouncer at once (SIGTERM: every client connection dropped) and
    /// waits for it to be gone.
    fn kill(&self) {
        let pid = std::fs::read_to_string(self.pid_file()).unwrap();
        let pid = pid.trim();
        run(Command::new("kill").args(["-TERM", pid])).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer {pid} did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, user: &str, password: Option<&str>, params: &str) -> String {
        url_for(self.port, user, password, params)
    }
}

async fn one(client: &mut DefaultConnection, sql: &str) -> Option<String> {
    client.simple_query(sql).await.unwrap()[0].rows[0][0].clone()
}

#[tokio::test]
async fn trust_and_scram_users_connect_through_both_pool_modes() {
    for bouncer in [session_pool(), transaction_pool()] {
        for (user, password) in [(TRUST_USER, None), (SCRAM_USER, Some(SCRAM_PASS))] {
            let url = bouncer.url(user, password, "sslmode=disable");
            let config: pg_transport::Config = url.parse().unwrap();
            let (mut client, info) = pg_transport::connect(&config)
                .await
                .unwrap_or_else(|e| panic!("{} {user}: {e}", bouncer.name));
            assert_eq!(
                one(&mut client, "SELECT current_user").await.as_deref(),
                Some(user)
            );
            let expected = if password.is_some() {
                pg_transport::connect::AuthMethod::ScramSha256
            } else {
                pg_transport::connect::AuthMethod::Trust
            };
            assert_eq!(info.auth_method, expected, "{} {user}", bouncer.name);
            assert_eq!(client.session().parameter("application_name"), Some(""));
        }
    }
    // A wrong password is PgBouncer's refusal, with its SQLSTATE.
    let e = pg_transport::connect(
        &session_pool()
            .url(SCRAM_USER, Some("wrong"), "sslmode=disable")
            .parse()
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.as_db_error().unwrap().code.code(), "08P01", "{e}");
}

#[tokio::test]
async fn tls_from_the_client_to_pgbouncer() {
    let root = cluster().ca_file.display().to_string();
    let url = session_pool()
        .url(
            SCRAM_USER,
            Some(SCRAM_PASS),
            &format!("sslmode=verify-full&sslrootcert={root}"),
        )
        .replace("127.0.0.1", "localhost");
    let (mut client, info) = pg_transport::connect(&url.parse().unwrap()).await.unwrap();
    assert!(client.tls_info().is_some(), "TLS to PgBouncer");
    // PgBouncer 1.18 offers only SCRAM-SHA-256, never -PLUS: no channel binding.
    assert_eq!(
        info.auth_method,
        pg_transport::connect::AuthMethod::ScramSha256
    );
    assert_eq!(
        one(&mut client, "SELECT 40 + 2").await.as_deref(),
        Some("42")
    );
    let e = pg_transport::connect(
        &session_pool()
            .url(
                SCRAM_USER,
                Some(SCRAM_PASS),
                &format!("sslmode=require&channel_binding=require&sslrootcert={root}"),
            )
            .parse()
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

/// A COPY text source of `rows` rows `(g, 'row g')`, row `bad` a duplicate
/// key, adding the bytes it hands out to `pulled`.
fn rows(rows: u64, bad: Option<u64>, pulled: Arc<AtomicU64>) -> impl pg_transport::CopySource {
    let mut next = 1u64;
    source_fn(move || {
        let mut buf = String::new();
        while buf.len() < 16 * 1024 && next <= rows {
            let id = if Some(next) == bad { 1 } else { next };
            buf.push_str(&format!("{id}\trow {next}\n"));
            next += 1;
        }
        pulled.fetch_add(buf.len() as u64, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(Bytes::from(buf)) }
    })
}

#[tokio::test]
async fn copy_both_ways_and_the_early_abort_in_both_pool_modes() {
    for bouncer in [session_pool(), transaction_pool()] {
        let table = format!("via_pgbouncer_{}", bouncer.name);
        let mut client = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
        client
            .simple_query(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, v text)"
            ))
            .await
            .unwrap();
        let n = client
            .copy_in(
                &format!("COPY {table} FROM STDIN"),
                rows(10_000, None, Arc::default()),
            )
            .await
            .unwrap();
        assert_eq!(n, 10_000, "{}", bouncer.name);
        let mut out = Vec::new();
        let copied = client
            .copy_out_to(&format!("COPY {table} TO STDOUT"), &mut out)
            .await
            .unwrap();
        assert_eq!(copied, 10_000);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 10_000);
        // The early abort: a duplicate key at row 2 of 2 million (~30 MB)
        // stops the stream; the server's error comes back through PgBouncer.
        let pulled = Arc::new(AtomicU64::new(0));
        client
            .simple_query(&format!("TRUNCATE {table}"))
            .await
            .unwrap();
        let e = client
            .copy_in(
                &format!("COPY {table} FROM STDIN"),
                rows(2_000_000, Some(2), pulled.clone()),
            )
            .await
            .unwrap_err();
        let sent = pulled.load(Ordering::SeqCst);
        assert!(
            sent < 10_000_000,
            "{}: stopped early, {sent} bytes pulled",
            bouncer.name
        );
        assert_eq!(
            e.as_db_error().unwrap().code.code(),
            "23505",
            "{}: {e}",
            bouncer.name
        );
        assert_eq!(client.state(), State::Ready);
        assert_eq!(
            client.session().transaction_status(),
            TransactionStatus::Idle
        );
        assert_eq!(
            one(&mut client, &format!("SELECT count(*) FROM {table}"))
                .await
                .as_deref(),
            Some("0")
        );
    }
}

#[tokio::test]
async fn cancel_through_pgbouncer() {
    for bouncer in [session_pool(), transaction_pool()] {
        let config: pg_transport::Config = bouncer
            .url(TRUST_USER, None, "sslmode=disable")
            .parse()
            .unwrap();
        let (mut client, info) = pg_transport::connect(&config).await.unwrap();
        // PgBouncer's own key, not the backend's: only PgBouncer can route it.
        let key = client.session().backend_key().unwrap().clone();
        let query = format!("SELECT pg_sleep(30), '{}'", bouncer.name);
        let watched = query.clone();
        let canceller = tokio::spawn(async move {
            crate::liveness::until_running(None, &watched).await;
            pg_transport::connect::cancel(&config, &info, &key).await
        });
        let e = client.simple_query(&query).await.unwrap_err();
        canceller.await.unwrap().unwrap();
        assert_eq!(
            e.as_db_error().unwrap().code.code(),
            "57014",
            "{}: {e}",
            bouncer.name
        );
        assert_eq!(client.state(), State::Ready);
        assert_eq!(one(&mut client, "SELECT 1").await.as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn listen_in_session_pooling() {
    let bouncer = session_pool();
    let mut listener = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
    listener.simple_query("LISTEN via_bouncer").await.unwrap();
    let mut sender = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
    sender
        .simple_query("NOTIFY via_bouncer, 'hello'")
        .await
        .unwrap();
    let n = listener
        .wait_notification(Some(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the notification arrives");
    assert_eq!(
        (n.channel.as_str(), n.payload.as_str()),
        ("via_bouncer", "hello")
    );
}

/// Transaction pooling hands the server connection back after each
/// transaction, so a LISTEN belongs to the server connection, not the client:
/// the next client served by that connection gets the notifications, the
/// listener does not. What users see, pinned so a change shows. A pool of its
/// own, used one statement at a time, so its one server connection serves both.
#[tokio::test]
async fn transaction_pooling_delivers_notifications_to_whoever_holds_the_server_connection() {
    let bouncer = Bouncer::start("tx-listen", "transaction");
    let mut listener = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
    listener
        .simple_query("LISTEN tx_pool_channel")
        .await
        .unwrap();
    let mut sender = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
    sender
        .simple_query("NOTIFY tx_pool_channel, 'misdelivered'")
        .await
        .unwrap();
    let n = sender
        .session_mut()
        .pop_notification()
        .expect("the sender, on the listening server connection, gets it")
        .unwrap();
    assert_eq!(
        (n.channel.as_str(), n.payload.as_str()),
        ("tx_pool_channel", "misdelivered")
    );
    assert_eq!(one(&mut listener, "SELECT 1").await.as_deref(), Some("1"));
    assert!(
        listener.session_mut().pop_notification().is_none(),
        "the listener hears nothing"
    );
}

/// Transaction pooling again: a `SET` changes the server connection, so it
/// reaches whichever client that connection serves next, while the startup
/// parameters PgBouncer tracks (application_name among them) are set again
/// for each client. What users see, pinned; a pool of its own, one server
/// connection.
#[tokio::test]
async fn transaction_pooling_leaks_set_but_keeps_tracked_startup_parameters() {
    let bouncer = Bouncer::start("tx-set", "transaction");
    let mut a =
        crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable&application_name=alpha"))
            .await;
    a.simple_query("SET statement_timeout = '4321ms'")
        .await
        .unwrap();
    let mut b =
        crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable&application_name=beta"))
            .await;
    assert_eq!(
        one(&mut b, "SHOW statement_timeout").await.as_deref(),
        Some("4321ms"),
        "client b sees client a's SET"
    );
    assert_eq!(
        one(&mut b, "SHOW application_name").await.as_deref(),
        Some("beta")
    );
    assert_eq!(
        one(&mut a, "SHOW application_name").await.as_deref(),
        Some("alpha")
    );
}

#[tokio::test]
async fn a_pgbouncer_restart_is_seen_by_the_probes_and_a_new_connection_works() {
    let bouncer = Bouncer::start("restart", "session");
    let mut client = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
    assert!(client.is_connected());
    bouncer.kill();
    eventually("the client sees PgBouncer gone", || !client.is_connected()).await;
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    // PgBouncer's immediate shutdown says nothing before it closes.
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert_eq!(e.to_string(), "connection closed by server");
    bouncer.launch();
    let mut again = crate::client(&bouncer.url(TRUST_USER, None, "sslmode=disable")).await;
    assert_eq!(one(&mut again, "SELECT 1").await.as_deref(), Some("1"));
}
