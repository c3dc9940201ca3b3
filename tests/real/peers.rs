//! Scripted peers: small servers in the test that say exactly what a real
//! server cannot be made to say on cue (SCENARIOS G, I and parts of C/D/F).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pg_transport::{Config, ErrorKind, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener on 127.0.0.1 that runs `script` for every connection and counts them.
async fn peer<F, Fut>(script: F) -> (u16, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(stream, n));
        }
    });
    (port, count)
}

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

#[tokio::test]
async fn g66_ssl_request_is_exactly_eight_bytes() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let (port, _) = peer(move |mut s, _| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut first = [0u8; 8];
            s.read_exact(&mut first).await.unwrap();
            // Nothing more until we answer.
            let more =
                tokio::time::timeout(Duration::from_millis(100), s.read(&mut [0u8; 1])).await;
            let _ = tx.unwrap().send((first, more.is_err()));
        }
    })
    .await;
    let _ = connect_err(&config(port, "sslmode=require")).await;
    let (first, silent) = rx.await.unwrap();
    assert_eq!(first, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert!(silent, "the client waited for the answer");
}

async fn answering(byte: &'static [u8]) -> u16 {
    peer(move |mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(byte).await.unwrap();
        // If the client goes on in plaintext, act as a server.
        if byte == b"N" {
            plain_server(s).await;
        } else {
            let _ = s.read(&mut [0u8; 64]).await;
        }
    })
    .await
    .0
}

#[tokio::test]
async fn g67_g68_server_without_ssl() {
    let port = answering(b"N").await;
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
}

#[tokio::test]
async fn g69_closed_during_ssl_negotiation() {
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
    })
    .await;
    let e = connect_err(&config(port, "sslmode=require")).await;
    assert_eq!(e.to_string(), "Connection closed during SSL negotiation");
}

#[tokio::test]
async fn g70_unexpected_and_error_answers() {
    let e = connect_err(&config(answering(b"X").await, "sslmode=require")).await;
    assert!(e.to_string().contains("unexpected SSL response"), "{e}");
    let e = connect_err(&config(answering(b"E").await, "sslmode=require")).await;
    assert_eq!(e.kind(), ErrorKind::Tls);
    assert!(
        e.to_string().contains("error during SSL negotiation"),
        "{e}"
    );
}

#[tokio::test]
async fn g71_injected_bytes_after_s_are_refused() {
    // Same segment.
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(b"SXYZ").await.unwrap();
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut seen)).await;
        assert!(seen.is_empty(), "no TLS bytes may be sent: got {seen:?}");
    })
    .await;
    let e = connect_err(&config(port, "sslmode=require")).await;
    assert!(
        e.to_string()
            .contains("unencrypted data after SSL response"),
        "{e}"
    );
    // prefer must not fall back to plaintext after an injection.
    let e = connect_err(&config(port, "sslmode=prefer")).await;
    assert!(
        e.to_string()
            .contains("unencrypted data after SSL response"),
        "{e}"
    );

    // A later segment: the bytes arrive after the client has looked.
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(b"S").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = s.write_all(b"XYZ").await;
        let _ = s.read(&mut [0u8; 1024]).await;
    })
    .await;
    let e = connect_err(&config(port, "sslmode=require")).await;
    assert!(
        e.to_string()
            .contains("unencrypted data after SSL response"),
        "{e}"
    );
}

#[tokio::test]
async fn g73_direct_with_prefer_sends_nothing() {
    let (port, dials) = peer(|_, _| async {}).await;
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
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        dials.load(Ordering::SeqCst),
        0,
        "zero bytes reached the server"
    );
}

#[tokio::test]
async fn g74_alpn_is_offered_in_both_negotiations() {
    for (extra, expect_request) in [
        ("sslmode=require sslnegotiation=direct", false),
        ("sslmode=require", true),
    ] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let (port, _) = peer(move |mut s, _| {
            let tx = tx.lock().unwrap().take();
            async move {
                if expect_request {
                    read_untagged(&mut s).await;
                    s.write_all(b"S").await.unwrap();
                }
                let mut hello = vec![0u8; 2048];
                let n = s.read(&mut hello).await.unwrap();
                hello.truncate(n);
                let _ = tx.unwrap().send(hello);
            }
        })
        .await;
        let _ = connect_err(&config(port, extra)).await;
        let hello = rx.await.unwrap();
        assert_eq!(hello[0], 0x16, "{extra}: a TLS handshake record first");
        assert!(
            hello.windows(10).any(|w| w == b"postgresql"),
            "{extra}: ALPN offered"
        );
    }
}

fn tls_acceptor(alpn: bool) -> tokio_rustls::TlsAcceptor {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
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

#[tokio::test]
async fn g74_direct_peer_without_alpn_is_refused() {
    let acceptor = tls_acceptor(false);
    let (port, _) = peer(move |s, _| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(mut tls) = acceptor.accept(s).await {
                let _ = tls.read(&mut [0u8; 64]).await;
            }
        }
    })
    .await;
    let e = connect_err(&config(port, "sslmode=require sslnegotiation=direct")).await;
    assert_eq!(e.kind(), ErrorKind::Tls);
    assert!(e.to_string().contains("without ALPN"), "{e}");
}

#[tokio::test]
async fn direct_tls_with_alpn_reaches_startup() {
    let acceptor = tls_acceptor(true);
    let (port, _) = peer(move |s, _| {
        let acceptor = acceptor.clone();
        async move {
            let mut tls = acceptor.accept(s).await.unwrap();
            let mut len = [0u8; 4];
            tls.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize - 4];
            tls.read_exact(&mut body).await.unwrap();
            tls.write_all(HELLO).await.unwrap();
            tls.flush().await.unwrap();
            let _ = tls.read(&mut [0u8; 64]).await;
        }
    })
    .await;
    let (client, _) = pg_transport::connect(&config(port, "sslmode=require sslnegotiation=direct"))
        .await
        .unwrap();
    let tls = client.tls_info().unwrap();
    assert_eq!(tls.alpn_protocol.as_deref(), Some(&b"postgresql"[..]));
    assert_eq!(client.session().backend_key().unwrap().process_id, 1234);
}

#[tokio::test]
async fn g76_allow_dials_twice_and_explains_both_failures() {
    let (port, dials) = peer(|mut s, n| async move {
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
    let e = connect_err(&config(port, "sslmode=allow")).await;
    assert_eq!(dials.load(Ordering::SeqCst), 2);
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
}

#[tokio::test]
async fn g77_disable_sends_startup_first() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let (port, _) = peer(move |mut s, _| {
        let tx = tx.lock().unwrap().take();
        async move {
            let first = read_untagged(&mut s).await;
            let _ = tx.unwrap().send(first);
            s.write_all(HELLO).await.unwrap();
            let _ = s.read(&mut [0u8; 64]).await;
        }
    })
    .await;
    pg_transport::connect(&config(port, "sslmode=disable"))
        .await
        .unwrap();
    let first = rx.await.unwrap();
    assert_eq!(
        &first[4..8],
        &196608i32.to_be_bytes(),
        "StartupMessage, protocol 3.0"
    );
    assert!(first.windows(5).any(|w| w == b"user\0"));
}

#[tokio::test]
async fn g79_peer_closes_mid_handshake() {
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(b"S").await.unwrap();
        let _ = s.read(&mut [0u8; 512]).await;
        // Half a ServerHello, then gone.
        let _ = s.write_all(&[0x16, 0x03, 0x03, 0x00, 0x40, 0x02]).await;
    })
    .await;
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        connect_err(&config(port, "sslmode=require")),
    )
    .await
    .expect("no hang");
    assert_eq!(e.kind(), ErrorKind::Tls);
    assert!(e.to_string().contains("TLS handshake"), "{e}");
}

#[tokio::test]
async fn i89_stalled_host_then_healthy_host() {
    let (stall, _) = peer(|mut s, _| async move {
        let _ = s.read(&mut [0u8; 256]).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let (healthy, _) = peer(|s, _| plain_server(s)).await;
    let mut c = config(stall, "sslmode=disable");
    c.hosts = vec!["127.0.0.1".into(), "127.0.0.1".into()];
    c.ports = vec![stall, healthy];
    c.connect_timeout = Some(Duration::from_millis(100));
    let (client, info) = pg_transport::connect(&c).await.unwrap();
    assert_eq!(info.host.port, healthy);
    assert_eq!(client.state(), State::Ready);
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
}

#[tokio::test]
async fn i91_single_host_timeout_is_a_timeout() {
    let (port, _) = peer(|mut s, _| async move {
        let _ = s.read(&mut [0u8; 256]).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let mut c = config(port, "sslmode=disable");
    c.connect_timeout = Some(Duration::from_millis(100));
    let e = connect_err(&c).await;
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_timeout());
}

#[tokio::test]
async fn i93_load_balance_random() {
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
}

#[tokio::test]
async fn f64_pending_data_probe() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    let tx = Arc::new(tx);
    let (port, _) = peer(move |mut s, _| {
        let tx = tx.clone();
        async move {
            read_untagged(&mut s).await;
            s.write_all(HELLO).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.write_all(b"N").await.unwrap(); // one byte of a NoticeResponse
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send("done").await;
        }
    })
    .await;
    let (client, _) = pg_transport::connect(&config(port, "sslmode=disable"))
        .await
        .unwrap();
    assert!(!client.socket_has_pending_data(), "idle");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.socket_has_pending_data(), "one byte queued");
    assert!(!client.socket_has_fin());
    rx.recv().await;

    // FIN only: no pending data, but FIN seen.
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(HELLO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    let (client, _) = pg_transport::connect(&config(port, "sslmode=disable"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!client.socket_has_pending_data(), "FIN only");
    assert!(client.socket_has_fin());
    assert!(!client.is_connected());
    assert_eq!(client.state(), State::Ready);
}

#[tokio::test]
async fn c47_partial_data_row_then_fin() {
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(HELLO).await.unwrap();
        let mut q = [0u8; 64];
        let _ = s.read(&mut q).await;
        // RowDescription-less DataRow cut in half, then FIN.
        s.write_all(b"D\0\0\0\x10\0\x01\0\0\0\x06ab").await.unwrap();
        s.shutdown().await.unwrap();
    })
    .await;
    let (mut client, _) = pg_transport::connect(&config(port, "sslmode=disable"))
        .await
        .unwrap();
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(e.to_string(), "connection closed by server");
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test]
async fn c48_length_three_mid_query() {
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(HELLO).await.unwrap();
        let _ = s.read(&mut [0u8; 64]).await;
        s.write_all(b"C\0\0\0\x03").await.unwrap();
        let _ = s.read(&mut [0u8; 64]).await;
    })
    .await;
    let (mut client, _) = pg_transport::connect(&config(port, "sslmode=disable"))
        .await
        .unwrap();
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.to_string().contains("Invalid message length"), "{e}");
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test]
async fn d49_send_after_reset_closes() {
    let (port, _) = peer(|mut s, _| async move {
        read_untagged(&mut s).await;
        s.write_all(HELLO).await.unwrap();
        // Reset: linger 0 then drop.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    })
    .await;
    let (mut client, _) = pg_transport::connect(&config(port, "sslmode=disable"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut last = None;
    for _ in 0..3 {
        match client.send_msg(b"Q\0\0\0\x0dSELECT 1\0").await {
            Ok(()) => {}
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    let e = last.expect("a send after RST fails");
    assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Closed), "{e}");
    assert_eq!(client.state(), State::Closed);
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
    let (port, _) = peer(move |mut s, _| {
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
        let c: Config =
            format!("host={host} port={port} user=u sslmode=require connect_timeout=2 {extra}")
                .parse()
                .unwrap();
        let _ = pg_transport::connect(&c).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Some("localhost".to_owned()), None, None],
        "SNI for a name, none for an IP literal, none with sslsni=0"
    );
}

/// The cancel connection negotiates SSL as the sslmode says: under `prefer`
/// it asks first (and, refused, sends the CancelRequest in plaintext), under
/// `disable` it sends the CancelRequest at once.
#[tokio::test]
async fn cancel_request_negotiates_ssl_per_sslmode() {
    for (mode, asks) in [("prefer", true), ("disable", false)] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let (port, _) = peer(move |mut s, _| {
            let tx = tx.lock().unwrap().take();
            async move {
                let mut packets = vec![read_untagged(&mut s).await];
                if packets[0][4..8] == 80877103i32.to_be_bytes() {
                    s.write_all(b"N").await.unwrap();
                    packets.push(read_untagged(&mut s).await);
                }
                let _ = tx.unwrap().send(packets);
            }
        })
        .await;
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
    }
}
