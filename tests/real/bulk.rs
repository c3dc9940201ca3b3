//! Bulk reads (`Connection::set_bulk_read`): engaged while a large response
//! streams (TCP: the receive low-water mark; Unix: timed reads), released
//! when it ends, never hiding the response's last bytes, and changing no
//! byte of what is delivered.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::Bytes;
use pg_transport::transport::{MaybeTls, Socket, SocketOptions, TcpTransport};
use pg_transport::{BulkRead, DefaultConnection, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::*;

/// Rows `g, 'x' * 90` for g in 1..=50,000: about 4.7 MB of COPY text.
const ROWS: u32 = 50_000;
const COPY: &str = "COPY (SELECT g, repeat('x', 90) FROM generate_series(1, 50000) g) TO STDOUT";
/// The same rows, with the server pausing 10 ms before every 10,000th: the
/// client then finds nothing waiting, whatever its speed.
const PAUSED_COPY: &str = "COPY (SELECT g, repeat('x', 90) FROM generate_series(1, 50000) g \
     WHERE g % 10000 <> 0 OR pg_sleep(0.01)::text = '') TO STDOUT";

fn expected_copy_text() -> Vec<u8> {
    let mut text = Vec::new();
    for g in 1..=ROWS {
        text.extend_from_slice(format!("{g}\t{}\n", "x".repeat(90)).as_bytes());
    }
    text
}

/// Small enough that the 4.7 MB above spends most of its time under the mark.
const EAGER: BulkRead = BulkRead::DEFAULT
    .after(256 << 10)
    .low_water(256 << 10)
    .max_wait(Duration::from_micros(300));

/// SO_RCVLOWAT of a socket, as the kernel reports it.
fn low_water(fd: RawFd) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket for the duration of the call; `value`
    // and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    value
}

/// The TCP socket's descriptor, under TLS or not.
fn tcp_fd(c: &DefaultConnection) -> RawFd {
    let socket = match c.transport() {
        Some(MaybeTls::Plain(s)) => s,
        Some(MaybeTls::Tls(t)) => t.get_ref(),
        None => panic!("no transport"),
    };
    match socket {
        Socket::Tcp(t) => t.get_ref().as_raw_fd(),
        Socket::Unix(_) => panic!("expected TCP, got a Unix socket"),
    }
}

async fn tcp_client(params: &str) -> DefaultConnection {
    crate::client(&cluster().url(TRUST_USER, None, params)).await
}

/// COPY OUT under `client`'s settings: the bytes delivered, and the largest
/// mark seen on `fd` from inside the sink (when given).
async fn copy_watching(client: &mut DefaultConnection, fd: Option<RawFd>) -> (Vec<u8>, i32) {
    copy_sql_watching(client, COPY, fd).await
}

async fn copy_sql_watching(
    client: &mut DefaultConnection,
    sql: &str,
    fd: Option<RawFd>,
) -> (Vec<u8>, i32) {
    let (mut got, mut most) = (Vec::new(), 0);
    let rows = tokio::time::timeout(
        Duration::from_secs(60),
        client.copy_out(sql, |b: Bytes| {
            got.extend_from_slice(&b);
            if let Some(fd) = fd {
                most = most.max(low_water(fd));
            }
            async { Ok::<_, std::io::Error>(()) }
        }),
    )
    .await
    .expect("COPY OUT under a low-water mark must not hang")
    .unwrap();
    assert_eq!(rows, u64::from(ROWS));
    (got, most)
}

#[tokio::test]
async fn copy_out_over_tcp_sets_the_mark_while_streaming_and_clears_it_after() {
    let mut c = tcp_client("sslmode=disable").await;
    assert_eq!(c.bulk_read(), Some(BulkRead::default()), "on by default");
    c.set_bulk_read(Some(EAGER));
    let fd = tcp_fd(&c);
    let (got, most) = copy_watching(&mut c, Some(fd)).await;
    assert!(got == expected_copy_text(), "every byte, in order");
    assert_eq!(most, 256 << 10, "the mark was set while the COPY streamed");
    assert_eq!(low_water(fd), 1, "and removed when it ended");
    assert_eq!(c.state(), State::Ready);

    // A large SELECT through simple_query: same mark, every row, mark gone.
    let results = c
        .simple_query("SELECT g, repeat('y', 90) FROM generate_series(1, 50000) g")
        .await
        .unwrap();
    let rows = &results[0].rows;
    assert_eq!(rows.len(), 50_000);
    assert_eq!(rows[49_999][0].as_deref(), Some("50000"));
    assert_eq!(low_water(fd), 1);

    // The next, small response is read at once and right.
    let r = c.simple_query("SELECT 'after'").await.unwrap();
    assert_eq!(r[0].rows, vec![vec![Some("after".to_owned())]]);
}

#[tokio::test]
async fn bulk_read_off_never_sets_a_mark() {
    let mut c = tcp_client("sslmode=disable").await;
    c.set_bulk_read(None);
    assert_eq!(c.bulk_read(), None);
    let fd = tcp_fd(&c);
    let (got, most) = copy_watching(&mut c, Some(fd)).await;
    assert!(got == expected_copy_text());
    assert_eq!(most, 1);
}

#[tokio::test]
async fn copy_out_over_tls_sets_the_mark_underneath_and_delivers_every_byte() {
    let mut c = tcp_client("sslmode=require").await;
    assert!(c.tls_info().is_some());
    c.set_bulk_read(Some(EAGER));
    let fd = tcp_fd(&c);
    let (got, most) = copy_watching(&mut c, Some(fd)).await;
    assert!(
        got == expected_copy_text(),
        "every byte, in order, through TLS"
    );
    assert_eq!(most, 256 << 10, "the mark was set on the socket under TLS");
    assert_eq!(low_water(fd), 1, "and removed when the COPY ended");
    assert_eq!(c.state(), State::Ready);
    let r = c.simple_query("SELECT 2").await.unwrap();
    assert_eq!(r[0].rows, vec![vec![Some("2".to_owned())]]);
}

fn bulk_waits(c: &DefaultConnection) -> u64 {
    match c.transport() {
        Some(MaybeTls::Plain(Socket::Unix(u))) => u.bulk_waits(),
        other => panic!("expected a Unix socket, got {other:?}"),
    }
}

#[tokio::test]
async fn copy_out_over_the_unix_socket_sleeps_on_a_timer_and_stops_after() {
    let mut c = crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await;
    c.set_bulk_read(Some(EAGER));
    let (got, _) = copy_sql_watching(&mut c, PAUSED_COPY, None).await;
    assert!(got == expected_copy_text(), "every byte, in order");
    let timed = bulk_waits(&c);
    assert!(timed > 0, "no bulk read slept on its timer");
    assert_eq!(c.state(), State::Ready);

    // Small responses after it are read as they arrive, and right.
    for i in 0..20 {
        let r = c.simple_query(&format!("SELECT {i}")).await.unwrap();
        assert_eq!(r[0].rows, vec![vec![Some(i.to_string())]]);
    }
    assert_eq!(bulk_waits(&c), timed, "bulk reading stopped with the COPY");

    // Off: no timed waits at all.
    c.set_bulk_read(None);
    let (got, _) = copy_sql_watching(&mut c, PAUSED_COPY, None).await;
    assert!(got == expected_copy_text());
    assert_eq!(bulk_waits(&c), timed);
}

#[tokio::test]
async fn notifications_reach_a_unix_connection_after_a_bulk_read() {
    let mut listener = crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await;
    listener.set_bulk_read(Some(EAGER));
    listener.listen("bulk_chan").await.unwrap();
    let (got, _) = copy_sql_watching(&mut listener, PAUSED_COPY, None).await;
    assert!(got == expected_copy_text());
    assert!(
        bulk_waits(&listener) > 0,
        "the socket slept out of the reactor during the COPY"
    );
    let mut other = crate::client(&cluster().socket_conninfo(TRUST_USER, "")).await;
    other
        .simple_query("NOTIFY bulk_chan, 'after the copy'")
        .await
        .unwrap();
    let n = listener
        .wait_notification(Some(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("a notification within 10 s");
    assert_eq!(
        (n.channel.as_str(), n.payload.as_str()),
        ("bulk_chan", "after the copy")
    );
}

#[tokio::test]
async fn tcp_transport_mark_holds_bytes_back_until_lowered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = SocketOptions::default();
    let (t, accepted) = tokio::join!(TcpTransport::connect(addr, &options), listener.accept());
    let mut t = t.unwrap();
    let (mut peer, _) = accepted.unwrap();
    t.set_recv_low_water(4096).unwrap();
    assert_eq!(low_water(t.get_ref().as_raw_fd()), 4096);
    peer.write_all(b"ten bytes!").await.unwrap();

    let mut buf = [0u8; 64];
    let held = tokio::time::timeout(Duration::from_millis(50), t.read(&mut buf)).await;
    assert!(
        held.is_err(),
        "10 bytes under a 4096-byte mark: not readable"
    );

    t.set_recv_low_water(1).unwrap();
    assert_eq!(low_water(t.get_ref().as_raw_fd()), 1);
    let n = tokio::time::timeout(Duration::from_secs(10), t.read(&mut buf))
        .await
        .expect("lowering the mark makes the waiting bytes readable")
        .unwrap();
    assert_eq!(&buf[..n], b"ten bytes!");
}

#[tokio::test]
async fn a_bulk_read_dropped_while_asleep_leaves_the_connection_closed() {
    for conninfo in [
        cluster().socket_conninfo(TRUST_USER, ""),
        cluster().url(TRUST_USER, None, "sslmode=disable"),
    ] {
        let mut c = crate::client(&conninfo).await;
        c.set_bulk_read(Some(EAGER));
        // 40 ms of pauses at the least: 5 ms ends it part-way, often while a
        // bulk read sleeps on its timer (on a Unix socket: out of the reactor).
        let cut = tokio::time::timeout(
            Duration::from_millis(5),
            c.copy_out(PAUSED_COPY, |_| async { Ok::<_, std::io::Error>(()) }),
        )
        .await;
        assert!(cut.is_err(), "{conninfo}: the COPY cannot finish in 5 ms");
        assert_eq!(c.state(), State::Closed, "{conninfo}");
        assert!(!c.is_connected(), "{conninfo}");
        let e = c.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(e.kind(), pg_transport::ErrorKind::Closed, "{conninfo}");

        // A new connection reads the same COPY whole.
        let mut again = crate::client(&conninfo).await;
        again.set_bulk_read(Some(EAGER));
        let (got, _) = copy_sql_watching(&mut again, PAUSED_COPY, None).await;
        assert!(got == expected_copy_text(), "{conninfo}");
    }
}

/// A scripted server on a Unix socket: streams 2 MiB of COPY data at once,
/// says nothing for `pause` (the pause is the scenario, not a wait), then
/// ends the COPY and reads until the client closes. The returned task is
/// joined by the test, so the script's assertions count.
async fn paused_unix_peer(
    pause: Duration,
) -> (std::path::PathBuf, String, tokio::task::JoinHandle<()>) {
    use crate::copy_peers::{copy_out_end, copy_out_rows, start};
    let dir = std::env::temp_dir().join(format!("pgt-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = 40000 + (std::process::id() % 20000);
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        start(&mut s).await;
        s.write_all(&copy_out_rows(2048)).await.unwrap();
        tokio::time::sleep(pause).await;
        s.write_all(&copy_out_end(2048)).await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let conninfo = format!("host={} port={port} user=u sslmode=disable", dir.display());
    (dir, conninfo, task)
}

#[tokio::test]
async fn a_paused_server_costs_a_unix_bulk_read_a_few_timed_waits_not_one_per_tick() {
    let (dir, conninfo, peer) = paused_unix_peer(Duration::from_millis(500)).await;
    let mut c = crate::client(&conninfo).await;
    c.set_bulk_read(Some(EAGER.after(64 << 10)));
    let mut total = 0;
    let rows = tokio::time::timeout(
        Duration::from_secs(30),
        c.copy_out("COPY t TO STDOUT", |b: Bytes| {
            total += b.len();
            async { Ok::<_, std::io::Error>(()) }
        }),
    )
    .await
    .expect("the COPY ends after the pause")
    .unwrap();
    assert_eq!((rows, total), (2048, 2048 * 1000));
    // 500 ms at one wake per 300 µs wait would be over 1,000 timed waits:
    // after a wait that finds nothing, the read must wait for data instead.
    // Streaming the 2 MiB takes at most one wait per 32 KiB (the adaptive
    // wait grows until a wait lets in that much): 64, far below the bound.
    let waits = bulk_waits(&c);
    assert!(
        (1..300).contains(&waits),
        "{waits} timed waits across a 500 ms pause"
    );
    drop(c);
    peer.await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
