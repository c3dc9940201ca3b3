//! Scripted peers: small servers in the test that say exactly what a real
//! server cannot be made to say on cue (SCENARIOS G, I and parts of C/D/F).

use std::sync::Arc;
use std::time::Duration;

use pg_transport::{Config, ErrorKind, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::scripted::{Peer, eventually, within};

/// Reads one untagged startup-phase message (SSLRequest or StartupMessage).
async fn read_untagged(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut body).await.unwrap();
    [len.to_vec(), body].concat()
}

/// AuthenticationOk, BackendKeyData, ReadyForQuery(I).
const HELLO: &[u8] = b"R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\x04\xd2\0\0\0\x2aZ\0\0\0\x05I";

async fn plain_server(mut s: TcpStream) {
    let startup = read_untagged(&mut s).await;
    assert_eq!(&startup[4..8], &196608i32.to_be_bytes());
    s.write_all(HELLO).await.unwrap();
    let mut sink = [0u8; 1024];
    while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
}

fn config(port: u16, extra: &str) -> Config {
    format!("host=127.0.0.1 port={port} user=u dbname=d {extra}")
        .parse()
        .unwrap()
}

async fn connect_err(config: &Config) -> pg_transport::Error {
    match pg_transport::connect(config).await {
        Ok(_) => panic!("connected, expected an error"),
        Err(e) => e,
    }
}

/// The client sends the 8-byte SSLRequest and nothing more while it waits
/// for the answer: the peer never answers, the client gives up at its
/// connect timeout and closes, and the peer reports every byte it received.
#[tokio::test]
async fn g66_ssl_request_is_exactly_eight_bytes() {
    within(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let peer = Peer::once(move |mut s| async move {
            let mut seen = Vec::new();
            s.read_to_end(&mut seen).await.unwrap();
            tx.send(seen).unwrap();
        })
        .await;
        let mut c = config(peer.port(), "sslmode=require");
        c.connect_timeout = Some(Duration::from_millis(300));
        let e = connect_err(&c).await;
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        let seen = rx.await.unwrap();
        assert_eq!(
            seen,
            [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            "the SSLRequest, then nothing until the client closed"
        );
        peer.finish().await;
    })
    .await;
}

/// Answers SSLRequest with `byte`, then waits for the client to close.
async fn answering(byte: &'static [u8]) -> Peer {
    Peer::start(move |mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(byte).await.unwrap();
        let _ = s.read(&mut [0u8; 64]).await;
    })
    .await
}

#[tokio::test]
async fn g67_g68_server_without_ssl() {
    within(async {
        // The three modes that require TLS close after the `N` without a
        // byte more; prefer (the fourth dial) goes on in plaintext.
        let peer = Peer::start(|mut s, n| async move {
            read_untagged(&mut s).await;
            s.write_all(b"N").await.unwrap();
            if n < 3 {
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty(), "dial {n}: nothing after N: {rest:?}");
            } else {
                plain_server(s).await;
            }
        })
        .await;
        let port = peer.port();
        for mode in ["require", "verify-ca", "verify-full"] {
            let extra = format!(
                "sslmode={mode} sslrootcert={}",
                crate::cluster::cluster().ca_file.display()
            );
            let e = connect_err(&config(port, &extra)).await;
            assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
            assert!(
                e.to_string().contains("Server does not support SSL"),
                "{mode}: {e}"
            );
        }
        let log = crate::capture(async {
            let (client, _) = pg_transport::connect(&config(port, "sslmode=prefer"))
                .await
                .unwrap();
            assert_eq!(client.state(), State::Ready);
            assert!(client.tls_info().is_none());
        })
        .await;
        assert!(
            log.contains("WARN") && log.contains("does not support SSL"),
            "{log}"
        );
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn g69_closed_during_ssl_negotiation() {
    within(async {
        let peer = Peer::start(|mut s, _| async move {
            read_untagged(&mut s).await;
        })
        .await;
        let e = connect_err(&config(peer.port(), "sslmode=require")).await;
        assert_eq!(e.to_string(), "Connection closed during SSL negotiation");
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn g70_unexpected_and_error_answers() {
    within(async {
        let x = answering(b"X").await;
        let e = connect_err(&config(x.port(), "sslmode=require")).await;
        assert!(e.to_string().contains("unexpected SSL response"), "{e}");
        let error = answering(b"E").await;
        let e = connect_err(&config(error.port(), "sslmode=require")).await;
        assert_eq!(e.kind(), ErrorKind::Tls);
        assert!(
            e.to_string().contains("error during SSL negotiation"),
            "{e}"
        );
        x.finish().await;
        error.finish().await;
    })
    .await;
}

/// The first defence (negotiate::request_ssl): bytes already readable with
/// the `S` are refused before a single TLS byte is sent, and sslmode=prefer
/// does not fall back to plaintext after it.
#[tokio::test]
async fn g71_injected_bytes_in_the_same_segment_as_s_are_refused_before_tls() {
    within(async {
        let peer = Peer::start(|mut s, _| async move {
            let first = read_untagged(&mut s).await;
            assert_eq!(
                first[4..8],
                80877103i32.to_be_bytes(),
                "an SSLRequest: never a plaintext retry"
            );
            s.write_all(b"SXYZ").await.unwrap();
            // Until the client closes: it must close without a TLS byte.
            let mut seen = Vec::new();
            let _ = s.read_to_end(&mut seen).await;
            assert!(seen.is_empty(), "no TLS bytes may be sent: got {seen:?}");
        })
        .await;
        for mode in ["require", "prefer"] {
            let e = connect_err(&config(peer.port(), &format!("sslmode={mode}"))).await;
            assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
            assert_eq!(
                e.to_string(),
                "unencrypted data after SSL response (possible man-in-the-middle); refusing to start TLS",
                "{mode}"
            );
        }
        assert_eq!(peer.dials(), 2, "prefer did not dial again in plaintext");
        peer.finish().await;
    })
    .await;
}

/// The second defence (the TLS layer's first-byte guard): bytes that arrive
/// only after the client looked, i.e. once its ClientHello is out, are
/// refused by name (their first byte) before anything else is sent, and
/// sslmode=prefer does not fall back after it either. The peer learns that
/// the client has looked from the client's side: it writes the plaintext
/// only after reading the whole ClientHello record.
#[tokio::test]
async fn g71_injected_bytes_after_the_client_hello_are_refused_by_the_tls_guard() {
    within(async {
        let peer = Peer::start(|mut s, _| async move {
            let first = read_untagged(&mut s).await;
            assert_eq!(
                first[4..8],
                80877103i32.to_be_bytes(),
                "an SSLRequest: never a plaintext retry"
            );
            s.write_all(b"S").await.unwrap();
            let mut header = [0u8; 5];
            s.read_exact(&mut header).await.unwrap();
            assert_eq!(header[0], 0x16, "a TLS handshake record");
            let mut hello = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
            s.read_exact(&mut hello).await.unwrap();
            s.write_all(b"XYZ").await.unwrap();
            let mut seen = Vec::new();
            let _ = s.read_to_end(&mut seen).await;
            assert!(
                seen.is_empty(),
                "nothing after the ClientHello may be sent: got {seen:?}"
            );
        })
        .await;
        for mode in ["require", "prefer"] {
            let e = connect_err(&config(peer.port(), &format!("sslmode={mode}"))).await;
            assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
            assert_eq!(
                e.to_string(),
                "unencrypted data after SSL response, seen once the TLS handshake had begun \
                 (first byte 0x58 where a TLS record should start; possible man-in-the-middle); \
                 refusing to continue TLS",
                "{mode}"
            );
        }
        assert_eq!(peer.dials(), 2, "prefer did not dial again in plaintext");
        peer.finish().await;
    })
    .await;
}

/// Direct negotiation with prefer is refused before any dial. The check
/// that nothing dialled: once the error is back, the test dials the peer
/// itself; the kernel queues connections in order, so its own connection is
/// the first one accepted only if the client never dialled.
#[tokio::test]
async fn g73_direct_with_prefer_sends_nothing() {
    within(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let peer = Peer::start(move |mut s, n| {
            let tx = tx.clone();
            async move {
                let mut first = [0u8; 1];
                let got = s.read(&mut first).await.map_or(0, |k| k);
                tx.send((n, first[..got].to_vec())).unwrap();
            }
        })
        .await;
        let port = peer.port();
        let config: Result<Config, _> = format!(
            "host=127.0.0.1,127.0.0.1,127.0.0.1 port={port} user=u sslmode=prefer sslnegotiation=direct"
        )
        .parse();
        let e = config.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("sslnegotiation=direct"));
        assert!(
            !e.to_string().contains("Could not connect to any host"),
            "single, not aggregated"
        );
        // Built by hand past the parser, connect() refuses it the same way, before any dial.
        let mut c = Config::new();
        c.hosts = vec!["127.0.0.1".into(); 3];
        c.ports = vec![port];
        c.user = Some("u".into());
        c.ssl_negotiation = pg_transport::connect::SslNegotiation::Direct;
        let e = connect_err(&c).await;
        assert_eq!(e.kind(), ErrorKind::Config);
        let mut marker = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        marker.write_all(b"M").await.unwrap();
        assert_eq!(
            rx.recv().await.unwrap(),
            (0, b"M".to_vec()),
            "zero connections reached the server before the test's own"
        );
        drop(marker);
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn g74_alpn_is_offered_in_both_negotiations() {
    within(async {
        for (extra, expect_request) in [
            ("sslmode=require sslnegotiation=direct", false),
            ("sslmode=require", true),
        ] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let peer = Peer::once(move |mut s| async move {
                if expect_request {
                    read_untagged(&mut s).await;
                    s.write_all(b"S").await.unwrap();
                }
                let mut hello = vec![0u8; 2048];
                let n = s.read(&mut hello).await.unwrap();
                hello.truncate(n);
                tx.send(hello).unwrap();
            })
            .await;
            let _ = connect_err(&config(peer.port(), extra)).await;
            let hello = rx.await.unwrap();
            assert_eq!(hello[0], 0x16, "{extra}: a TLS handshake record first");
            assert!(
                hello.windows(10).any(|w| w == b"postgresql"),
                "{extra}: ALPN offered"
            );
            peer.finish().await;
        }
    })
    .await;
}

/// A self-signed certificate for `localhost`, TLS 1.2 and 1.3.
fn tls_acceptor(alpn: bool) -> tokio_rustls::TlsAcceptor {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    crate::scripted::tls_acceptor(rustls::ALL_VERSIONS, (cert, key), alpn)
}

#[tokio::test]
async fn g74_direct_peer_without_alpn_is_refused() {
    within(async {
        let acceptor = tls_acceptor(false);
        let peer = Peer::once(move |s| async move {
            if let Ok(mut tls) = acceptor.accept(s).await {
                let _ = tls.read(&mut [0u8; 64]).await;
            }
        })
        .await;
        let e = connect_err(&config(
            peer.port(),
            "sslmode=require sslnegotiation=direct",
        ))
        .await;
        assert_eq!(e.kind(), ErrorKind::Tls);
        assert!(e.to_string().contains("without ALPN"), "{e}");
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn direct_tls_with_alpn_reaches_startup() {
    within(async {
        let acceptor = tls_acceptor(true);
        let peer = Peer::once(move |s| async move {
            let mut tls = acceptor.accept(s).await.unwrap();
            let mut len = [0u8; 4];
            tls.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize - 4];
            tls.read_exact(&mut body).await.unwrap();
            tls.write_all(HELLO).await.unwrap();
            tls.flush().await.unwrap();
            let _ = tls.read(&mut [0u8; 64]).await;
        })
        .await;
        let (client, _) = pg_transport::connect(&config(
            peer.port(),
            "sslmode=require sslnegotiation=direct",
        ))
        .await
        .unwrap();
        let tls = client.tls_info().unwrap();
        assert_eq!(tls.alpn_protocol.as_deref(), Some(&b"postgresql"[..]));
        assert_eq!(client.session().backend_key().unwrap().process_id, 1234);
        drop(client);
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn g76_allow_dials_twice_and_explains_both_failures() {
    within(async {
        let peer = Peer::start(|mut s, n| async move {
            let first = read_untagged(&mut s).await;
            if n == 0 {
                // Plaintext startup: refused the way pg_hba refuses.
                assert_eq!(&first[4..8], &196608i32.to_be_bytes());
                let fields =
                    b"SFATAL\0C28000\0Mno pg_hba.conf entry for host \"127.0.0.1\", no encryption\0\0";
                let mut msg = vec![b'E'];
                msg.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
                msg.extend_from_slice(fields);
                s.write_all(&msg).await.unwrap();
            } else {
                s.write_all(b"N").await.unwrap();
            }
        })
        .await;
        let e = connect_err(&config(peer.port(), "sslmode=allow")).await;
        assert_eq!(peer.dials(), 2);
        let text = e.to_string();
        for needle in [
            "sslmode=allow",
            "plaintext attempt failed",
            "no pg_hba.conf entry",
            "SSL fallback failed",
            "Server does not support SSL",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn g77_disable_sends_startup_first() {
    within(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let peer = Peer::once(move |mut s| async move {
            let first = read_untagged(&mut s).await;
            tx.send(first).unwrap();
            s.write_all(HELLO).await.unwrap();
            let _ = s.read(&mut [0u8; 64]).await;
        })
        .await;
        let client = pg_transport::connect(&config(peer.port(), "sslmode=disable"))
            .await
            .unwrap();
        let first = rx.await.unwrap();
        assert_eq!(
            &first[4..8],
            &196608i32.to_be_bytes(),
            "StartupMessage, protocol 3.0"
        );
        assert!(first.windows(5).any(|w| w == b"user\0"));
        drop(client);
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn g79_peer_closes_mid_handshake() {
    within(async {
        let peer = Peer::start(|mut s, _| async move {
            read_untagged(&mut s).await;
            s.write_all(b"S").await.unwrap();
            let _ = s.read(&mut [0u8; 512]).await;
            // Half a ServerHello, then gone.
            let _ = s.write_all(&[0x16, 0x03, 0x03, 0x00, 0x40, 0x02]).await;
        })
        .await;
        let e = connect_err(&config(peer.port(), "sslmode=require")).await;
        assert_eq!(e.kind(), ErrorKind::Tls);
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        peer.finish().await;
    })
    .await;
}

/// Reads the first bytes, then nothing more until the client gives up.
async fn stalled(mut s: TcpStream) {
    let _ = s.read(&mut [0u8; 256]).await;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn i89_stalled_host_then_healthy_host() {
    within(async {
        let stall = Peer::start(|s, _| stalled(s)).await;
        let healthy = Peer::start(|s, _| plain_server(s)).await;
        let mut c = config(stall.port(), "sslmode=disable");
        c.hosts = vec!["127.0.0.1".into(), "127.0.0.1".into()];
        c.ports = vec![stall.port(), healthy.port()];
        c.connect_timeout = Some(Duration::from_millis(100));
        let (client, info) = pg_transport::connect(&c).await.unwrap();
        assert_eq!(info.host.port, healthy.port());
        assert_eq!(client.state(), State::Ready);
        drop(client);
        stall.finish().await;
        healthy.finish().await;
    })
    .await;
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn i90_all_hosts_refuse() {
    within(async {
        let ports = [closed_port(), closed_port(), closed_port()];
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let c: Config = format!(
            "host=127.0.0.1,127.0.0.1,127.0.0.1 port={} user=u sslmode=disable",
            list.join(",")
        )
        .parse()
        .unwrap();
        let e = connect_err(&c).await;
        assert_eq!(e.kind(), ErrorKind::Connect);
        let text = e.to_string();
        assert!(
            text.starts_with("Could not connect to any host: "),
            "{text}"
        );
        for p in ports {
            assert!(
                text.contains(&format!("127.0.0.1:{p}: could not connect")),
                "{text}"
            );
        }
        assert_eq!(e.host_errors().len(), 3);
        assert!(
            e.host_errors()
                .iter()
                .all(|(_, err)| err.as_io_error().map(|io| io.kind())
                    == Some(std::io::ErrorKind::ConnectionRefused))
        );
    })
    .await;
}

#[tokio::test]
async fn i91_single_host_timeout_is_a_timeout() {
    within(async {
        let peer = Peer::start(|s, _| stalled(s)).await;
        let mut c = config(peer.port(), "sslmode=disable");
        c.connect_timeout = Some(Duration::from_millis(100));
        let e = connect_err(&c).await;
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(e.is_timeout());
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn i93_load_balance_random() {
    within(async {
        // Five distinct hosts: 127.0.0.1..5 all reach this machine's loopback.
        let order = |hosts: usize, tries: usize| {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..tries {
                let c: Config = format!(
                    "host={} port=1 user=u load_balance_hosts=random",
                    (1..=hosts)
                        .map(|i| format!("127.0.0.{i}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
                .parse()
                .unwrap();
                seen.insert(
                    pg_transport::connect::shuffled_hosts(&c)
                        .into_iter()
                        .map(|h| h.host.unwrap())
                        .collect::<Vec<_>>(),
                );
            }
            seen
        };
        let five = order(5, 100);
        assert!(five.len() > 10, "permutations observed: {}", five.len());
        assert!(five.iter().all(|p| {
            let mut s = p.clone();
            s.sort();
            s == (1..=5).map(|i| format!("127.0.0.{i}")).collect::<Vec<_>>()
        }));
        assert_eq!(order(2, 100).len(), 2, "two hosts reorder");
        assert_eq!(order(1, 20).len(), 1);
    })
    .await;
}

/// The probes against a peer the test drives: idle, one byte queued, then
/// (on a second connection) a FIN alone. The peer writes only when the test
/// says so, and the test waits for the kernel to show it (bounded polls).
#[tokio::test]
async fn f64_pending_data_probe() {
    within(async {
        let (send_byte, byte_wanted) = tokio::sync::oneshot::channel::<()>();
        let peer = Peer::once(move |mut s| async move {
            read_untagged(&mut s).await;
            s.write_all(HELLO).await.unwrap();
            byte_wanted.await.unwrap();
            s.write_all(b"N").await.unwrap(); // one byte of a NoticeResponse
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        })
        .await;
        let (client, _) = pg_transport::connect(&config(peer.port(), "sslmode=disable"))
            .await
            .unwrap();
        assert!(!client.socket_has_pending_data(), "idle");
        assert!(!client.socket_has_fin(), "idle");
        send_byte.send(()).unwrap();
        eventually("one byte queued", || client.socket_has_pending_data()).await;
        assert!(!client.socket_has_fin(), "data, no FIN");
        assert!(client.is_connected());
        drop(client);
        peer.finish().await;

        // FIN only: no pending data, but FIN seen.
        let (close, closing) = tokio::sync::oneshot::channel::<()>();
        let peer = Peer::once(move |mut s| async move {
            read_untagged(&mut s).await;
            s.write_all(HELLO).await.unwrap();
            closing.await.unwrap();
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        })
        .await;
        let (client, _) = pg_transport::connect(&config(peer.port(), "sslmode=disable"))
            .await
            .unwrap();
        assert!(!client.socket_has_fin(), "open");
        assert!(client.is_connected());
        close.send(()).unwrap();
        eventually("the FIN seen", || client.socket_has_fin()).await;
        assert!(!client.socket_has_pending_data(), "FIN only");
        assert!(!client.is_connected());
        assert_eq!(client.state(), State::Ready);
        drop(client);
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn c47_partial_data_row_then_fin() {
    within(async {
        let peer = Peer::once(|mut s| async move {
            read_untagged(&mut s).await;
            s.write_all(HELLO).await.unwrap();
            let mut q = [0u8; 64];
            let _ = s.read(&mut q).await;
            // RowDescription-less DataRow cut in half, then FIN.
            s.write_all(b"D\0\0\0\x10\0\x01\0\0\0\x06ab").await.unwrap();
            s.shutdown().await.unwrap();
        })
        .await;
        let (mut client, _) = pg_transport::connect(&config(peer.port(), "sslmode=disable"))
            .await
            .unwrap();
        let e = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert_eq!(e.to_string(), "connection closed by server");
        assert_eq!(client.state(), State::Closed);
        drop(client);
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn c48_length_three_mid_query() {
    within(async {
        let peer = Peer::once(|mut s| async move {
            read_untagged(&mut s).await;
            s.write_all(HELLO).await.unwrap();
            let _ = s.read(&mut [0u8; 64]).await;
            s.write_all(b"C\0\0\0\x03").await.unwrap();
            let _ = s.read(&mut [0u8; 64]).await;
        })
        .await;
        let (mut client, _) = pg_transport::connect(&config(peer.port(), "sslmode=disable"))
            .await
            .unwrap();
        let e = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(
            e.report().to_string().contains("Invalid message length"),
            "{e:#}"
        );
        assert_eq!(client.state(), State::Closed);
        drop(client);
        peer.finish().await;
    })
    .await;
}

/// The peer resets the connection (linger 0, then close) and says so; once
/// the client's kernel has seen it, the next send fails and the connection
/// is Closed.
#[tokio::test]
async fn d49_send_after_reset_closes() {
    within(async {
        let (reset, rx) = tokio::sync::oneshot::channel::<()>();
        let peer = Peer::once(move |mut s| async move {
            read_untagged(&mut s).await;
            s.write_all(HELLO).await.unwrap();
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            reset.send(()).unwrap();
        })
        .await;
        let (mut client, _) = pg_transport::connect(&config(peer.port(), "sslmode=disable"))
            .await
            .unwrap();
        rx.await.unwrap();
        eventually("the reset seen", || client.socket_has_fin()).await;
        let e = client
            .send_msg(b"Q\0\0\0\x0dSELECT 1\0")
            .await
            .expect_err("a send after the reset fails");
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert_eq!(client.state(), State::Closed);
        drop(client);
        peer.finish().await;
    })
    .await;
}

/// Records the SNI of each ClientHello and serves one self-signed certificate.
#[derive(Debug)]
struct SniRecorder {
    key: Arc<rustls::sign::CertifiedKey>,
    seen: Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl rustls::server::ResolvesServerCert for SniRecorder {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .push(hello.server_name().map(str::to_owned));
        Some(self.key.clone())
    }
}

#[tokio::test]
async fn sni_for_host_names_never_for_ip_literals_nor_with_sslsni_0() {
    within(async {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let resolver = SniRecorder {
            key: Arc::new(rustls::sign::CertifiedKey::new(
                vec![cert.der().clone()],
                signing,
            )),
            seen: seen.clone(),
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let peer = Peer::start(move |mut s, _| {
            let acceptor = acceptor.clone();
            async move {
                read_untagged(&mut s).await;
                s.write_all(b"S").await.unwrap();
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut len = [0u8; 4];
                    let _ = tls.read_exact(&mut len).await;
                }
            }
        })
        .await;
        for (host, extra) in [
            ("localhost", ""),
            ("127.0.0.1", ""),
            ("localhost", "sslsni=0"),
        ] {
            let c: Config = format!(
                "host={host} port={} user=u sslmode=require connect_timeout=2 {extra}",
                peer.port()
            )
            .parse()
            .unwrap();
            let _ = pg_transport::connect(&c).await;
        }
        peer.finish().await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [Some("localhost".to_owned()), None, None],
            "SNI for a name, none for an IP literal, none with sslsni=0"
        );
    })
    .await;
}

/// The cancel connection negotiates SSL as the sslmode says: under `prefer`
/// it asks first (and, refused, sends the CancelRequest in plaintext), under
/// `disable` it sends the CancelRequest at once.
#[tokio::test]
async fn cancel_request_negotiates_ssl_per_sslmode() {
    within(async {
        for (mode, asks) in [("prefer", true), ("disable", false)] {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let peer = Peer::once(move |mut s| async move {
                let mut packets = vec![read_untagged(&mut s).await];
                if packets[0][4..8] == 80877103i32.to_be_bytes() {
                    s.write_all(b"N").await.unwrap();
                    packets.push(read_untagged(&mut s).await);
                }
                tx.send(packets).unwrap();
            })
            .await;
            let port = peer.port();
            let config = config(port, &format!("sslmode={mode}"));
            let info = pg_transport::ConnectInfo {
                host: pg_transport::connect::HostEntry {
                    host: Some("127.0.0.1".into()),
                    hostaddr: None,
                    port,
                },
                addr: Some(([127, 0, 0, 1], port).into()),
                auth_method: pg_transport::connect::AuthMethod::Trust,
            };
            let key = pg_transport::session::BackendKey {
                process_id: 1234,
                secret_key: 42i32.to_be_bytes().to_vec(),
            };
            pg_transport::connect::cancel(&config, &info, &key)
                .await
                .unwrap();
            let packets = rx.await.unwrap();
            let cancel = packets.last().unwrap();
            assert_eq!(packets.len(), 1 + usize::from(asks), "sslmode={mode}");
            assert_eq!(
                &cancel[..8],
                &[&16i32.to_be_bytes()[..], &80877102i32.to_be_bytes()].concat()[..],
                "sslmode={mode}: a CancelRequest"
            );
            assert_eq!(
                &cancel[8..],
                &[0, 0, 4, 0xd2, 0, 0, 0, 42],
                "sslmode={mode}"
            );
            peer.finish().await;
        }
    })
    .await;
}
