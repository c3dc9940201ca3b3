//! Group F (liveness probes) and group C/D against the real server: a backend
//! killed with pg_terminate_backend, cancellation, keepalive settings.

use std::time::Duration;

use pg_transport::transport::{MaybeTls, Socket};
use pg_transport::{ErrorKind, State};

use crate::cluster::*;

async fn terminate(pid: i32) {
    let c = cluster();
    let out = c
        .psql(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    assert_eq!(out, "t");
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a backend (`pid`, or any: behind PgBouncer the key's pid is
/// PgBouncer's own) is running `query`, as a second connection sees it in
/// pg_stat_activity (bounded: 10 s).
pub async fn until_running(pid: Option<i32>, query: &str) {
    let mut watcher = crate::client(&cluster().url(TRUST_USER, None, "sslmode=disable")).await;
    let which = pid.map_or_else(String::new, |pid| format!("pid = {pid} AND "));
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE {which}state = 'active' AND query = '{}'",
        query.replace('\'', "''")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while watcher.simple_query(&sql).await.unwrap()[0].rows != [[Some("1".to_owned())]] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backend {pid:?} never seen running {query:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// F61 over `conninfo`: an idle backend terminated by the server is seen by
/// the probes alone (FIN behind the unread FATAL), the state stays Ready,
/// and the next operation reports the server's reason.
async fn terminated_idle_backend_is_seen_without_a_round_trip(
    conninfo: &str,
) -> pg_transport::Error {
    let mut client = crate::client(conninfo).await;
    assert!(client.is_connected());
    assert!(!client.socket_has_fin());
    assert!(!client.socket_has_pending_data());
    let pid = client.session().backend_key().unwrap().process_id;
    terminate(pid).await;
    wait_for(|| client.socket_has_fin()).await;
    assert!(
        client.socket_has_fin(),
        "{conninfo}: FIN after the FATAL message is seen"
    );
    assert!(!client.is_connected(), "{conninfo}");
    assert!(
        client.socket_has_pending_data(),
        "{conninfo}: the FATAL message is still unread"
    );
    assert_eq!(
        client.state(),
        State::Ready,
        "{conninfo}: probes do not change the state"
    );
    // The next operation fails and leaves the connection Closed.
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(client.state(), State::Closed, "{conninfo}");
    e
}

#[tokio::test]
async fn f61_terminated_idle_backend_is_seen_without_a_round_trip() {
    let e = terminated_idle_backend_is_seen_without_a_round_trip(&cluster().url(
        TRUST_USER,
        None,
        "sslmode=disable",
    ))
    .await;
    // TCP takes the write; the read then finds the server's reason.
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.as_db_error().unwrap().code.code(), "57P01", "{e}");
}

/// The same over the Unix socket: a second real socket on which a probe that
/// read the FIN as idle would fail.
#[tokio::test]
async fn f61_terminated_idle_backend_over_the_unix_socket() {
    let e = terminated_idle_backend_is_seen_without_a_round_trip(
        &cluster().socket_conninfo(TRUST_USER, ""),
    )
    .await;
    // A Unix socket refuses the write at once (EPIPE), so the FATAL still
    // waiting unread is not what is reported (libpq reads it first; this
    // client does not yet).
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.report().to_string().contains("Broken pipe"), "{e:#}");
}

#[tokio::test]
async fn f62_many_idle_connections_all_detected() {
    let c = cluster();
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(crate::client(&c.socket_conninfo(TRUST_USER, "")).await);
    }
    let pids: Vec<String> = clients
        .iter()
        .map(|c| c.session().backend_key().unwrap().process_id.to_string())
        .collect();
    c.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM unnest(ARRAY[{}]) AS pid",
        pids.join(",")
    ))
    .unwrap();
    wait_for(|| clients.iter().all(|c| !c.is_connected())).await;
    for client in &clients {
        assert!(!client.is_connected());
    }
}

#[tokio::test]
async fn c35_c47_backend_killed_mid_query() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    let pid = client.session().backend_key().unwrap().process_id;
    let killer = tokio::spawn(async move {
        until_running(Some(pid), "SELECT pg_sleep(30)").await;
        terminate(pid).await;
    });
    let e = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .unwrap_err();
    killer.await.unwrap();
    // The server's FATAL (57P01) is reported, not just "closed".
    assert_eq!(
        e.as_db_error().map(|d| d.code.code().to_owned()).as_deref(),
        Some("57P01"),
        "{e}"
    );
    assert_eq!(client.state(), State::Closed);
    assert_eq!(
        client.simple_query("SELECT 1").await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    let e = client.fill_recv_buf(None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "connection is closed",
        "C38: no syscall on a closed connection"
    );
}

#[tokio::test]
async fn c37_fill_timeout_changes_nothing() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    let e = client
        .fill_recv_buf(Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(client.state(), State::Ready);
    assert!(client.session().recv_buf().is_empty());
    assert_eq!(
        client.simple_query("SELECT 7").await.unwrap()[0].rows,
        [[Some("7".to_owned())]]
    );
}

#[tokio::test]
async fn c36_dropped_operation_closes_the_connection() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        client.simple_query("SELECT pg_sleep(5)"),
    )
    .await;
    assert!(r.is_err(), "timed out");
    assert_eq!(
        client.state(),
        State::Closed,
        "an abandoned exchange is never reused"
    );
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(e.to_string().contains("cancelled part-way"), "{e}");
}

#[tokio::test]
async fn f60_f65_closed_connection_probes_and_ping() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    client.ping().await.unwrap();
    client.close().await;
    assert!(!client.is_connected());
    assert!(!client.socket_has_fin(), "no handle: false");
    assert!(!client.socket_has_pending_data());
    let e = client.ping().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(e.to_string(), "Connection is not established");
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test]
async fn cancel_stops_a_running_query() {
    cancel_stops_a_running_query_with("sslmode=disable").await;
}

/// Under sslmode=require the CancelRequest goes inside TLS: the server must
/// accept it there. (That SSL is negotiated at all is checked by
/// `peers::cancel_request_negotiates_ssl_per_sslmode`.)
#[tokio::test]
async fn cancel_over_tls_stops_a_running_query() {
    cancel_stops_a_running_query_with("sslmode=require").await;
}

pub async fn cancel_stops_a_running_query_with(params: &str) {
    let c = cluster();
    let config: pg_transport::Config = c.url(TRUST_USER, None, params).parse().unwrap();
    let (mut client, info) = pg_transport::connect(&config).await.unwrap();
    let key = client.session().backend_key().unwrap().clone();
    let canceller = tokio::spawn(async move {
        until_running(Some(key.process_id), "SELECT pg_sleep(30)").await;
        pg_transport::connect::cancel(&config, &info, &key).await
    });
    let e = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .unwrap_err();
    canceller.await.unwrap().unwrap();
    assert_eq!(e.as_db_error().unwrap().code.code(), "57014");
    assert_eq!(
        client.state(),
        State::Ready,
        "a cancelled query leaves the connection usable"
    );
    client.ping().await.unwrap();
}

fn tcp(client: &pg_transport::DefaultConnection) -> &pg_transport::transport::TcpTransport {
    match client.transport() {
        Some(MaybeTls::Plain(Socket::Tcp(t))) => t,
        other => panic!("not plain TCP: {other:?}"),
    }
}

#[tokio::test]
async fn h81_h82_h85_socket_options_read_back() {
    let c = cluster();
    let client = crate::client(&c.url(
        TRUST_USER,
        None,
        "sslmode=disable&keepalives=0&keepalives_idle=42",
    ))
    .await;
    let sock = socket2::SockRef::from(tcp(&client).get_ref());
    assert!(!sock.keepalive().unwrap(), "H81");
    assert!(sock.tcp_nodelay().unwrap(), "H85");

    let url = c.url(TRUST_USER, None, "sslmode=disable&keepalives_idle=42&keepalives_interval=7&keepalives_count=3&tcp_user_timeout=9000");
    let client = crate::client(&url).await;
    let sock = socket2::SockRef::from(tcp(&client).get_ref());
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(42));
    assert_eq!(
        sock.tcp_keepalive_interval().unwrap(),
        Duration::from_secs(7)
    );
    assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
    assert_eq!(
        sock.tcp_user_timeout().unwrap(),
        Some(Duration::from_secs(9))
    );

    // All zeros: only SO_KEEPALIVE; the timings stay at a fresh socket's values.
    let fresh = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let url = c.url(
        TRUST_USER,
        None,
        "sslmode=disable&keepalives_idle=0&keepalives_interval=0&keepalives_count=0",
    );
    let client = crate::client(&url).await;
    let sock = socket2::SockRef::from(tcp(&client).get_ref());
    assert!(sock.keepalive().unwrap());
    assert_eq!(
        sock.tcp_keepalive_time().unwrap(),
        fresh.tcp_keepalive_time().unwrap()
    );
    assert_eq!(
        sock.tcp_keepalive_retries().unwrap(),
        fresh.tcp_keepalive_retries().unwrap()
    );
    // Idle only: only KEEPIDLE changes.
    let client =
        crate::client(&c.url(TRUST_USER, None, "sslmode=disable&keepalives_idle=42")).await;
    let sock = socket2::SockRef::from(tcp(&client).get_ref());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(42));
    assert_eq!(
        sock.tcp_keepalive_interval().unwrap(),
        fresh.tcp_keepalive_interval().unwrap()
    );
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn h84_failing_setsockopt_closes_the_socket() {
    let c = cluster();
    // TCP_KEEPCNT above 127 is EINVAL on Linux: a real setsockopt failure.
    let url = c.url(TRUST_USER, None, "sslmode=disable&keepalives_count=1000");
    let config: pg_transport::Config = url.parse().unwrap();
    let before = open_fds();
    for _ in 0..200 {
        let e = pg_transport::connect(&config).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("could not connect"), "{e}");
    }
    // Other tests run in parallel and open a few sockets too; 200 leaked
    // descriptors would stand far above that noise.
    assert!(
        open_fds() < before + 50,
        "descriptors leaked: {before} -> {}",
        open_fds()
    );
}

#[tokio::test]
async fn c40_recv_message_timeout_mid_exchange_is_recoverable() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    client
        .session_mut()
        .query("SELECT pg_sleep(0.3)::text, 42")
        .unwrap();
    client.send_buf_msg().await.unwrap();
    let e = client
        .recv_message(Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // Documented: a timeout leaves the exchange in progress (Busy), nothing lost.
    assert_eq!(client.state(), State::Busy);
    let mut saw_row = false;
    loop {
        match client.recv_message(None).await.unwrap() {
            pg_transport::Message::DataRow(row) => {
                saw_row = row.columns().nth(1) == Some(Some(&b"42"[..]));
            }
            pg_transport::Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    assert!(saw_row, "the result arrived after the timeout");
    assert_eq!(client.state(), State::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f62_server_restart_is_seen_on_every_idle_connection() {
    let c = tokio::task::spawn_blocking(start_dedicated).await.unwrap();
    let mut clients = Vec::new();
    for i in 0..6 {
        let conninfo = if i % 2 == 0 {
            c.socket_conninfo("postgres", "")
        } else {
            c.url("postgres", None, "sslmode=require")
        };
        clients.push(crate::client(&conninfo).await);
    }
    assert!(clients.iter().all(pg_transport::Connection::is_connected));
    tokio::task::block_in_place(|| c.restart_immediate());
    wait_for(|| clients.iter().all(|c| !c.is_connected())).await;
    for (i, client) in clients.iter().enumerate() {
        assert!(
            !client.is_connected(),
            "connection {i} still looks alive after the restart"
        );
        assert_eq!(client.state(), State::Ready, "no round trip was made");
    }
    let e = clients[0].simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(clients[0].state(), State::Closed, "{e}");
    // The restarted server takes new connections.
    let mut fresh = crate::client(&c.socket_conninfo("postgres", "")).await;
    fresh.ping().await.unwrap();
}
