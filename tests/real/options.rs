//! The effect of each connection option (issue 10 §1), shown against the real
//! server, or against a scripted peer for what the server cannot be made to
//! do (a CA certificate as its own, a TLS 1.2-only server, a server that asks
//! for a password the client must not send).

use std::path::Path;
use std::time::Duration;

use pg_transport::connect::AuthMethod;
use pg_transport::{Config, ErrorKind, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::*;
use crate::scripted::{Peer, within};

async fn try_connect(
    conninfo: &str,
) -> pg_transport::Result<(pg_transport::DefaultConnection, pg_transport::ConnectInfo)> {
    let config: Config = conninfo.parse()?;
    connect(&config).await
}

async fn refused(conninfo: &str, kind: ErrorKind) -> String {
    match try_connect(conninfo).await {
        Ok(_) => panic!("{conninfo}: connected, expected a {kind:?} error"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{conninfo}: {e}");
            e.to_string()
        }
    }
}

#[tokio::test]
async fn require_auth_against_the_server() {
    within(async {
        let c = cluster();
        let allowed = [
            (
                SCRAM_USER,
                Some(SCRAM_PASS),
                "scram-sha-256",
                AuthMethod::ScramSha256,
            ),
            (MD5_USER, Some(MD5_PASS), "md5,password", AuthMethod::Md5),
            (
                PASSWORD_USER,
                Some(PASSWORD_PASS),
                "!md5,!scram-sha-256",
                AuthMethod::Cleartext,
            ),
            (TRUST_USER, None, "none", AuthMethod::Trust),
            (TRUST_USER, None, "!password", AuthMethod::Trust),
        ];
        for (user, pass, require, method) in allowed {
            let url = c.url(
                user,
                pass,
                &format!("sslmode=disable&require_auth={require}"),
            );
            let (_, info) = try_connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{user} {require}: {e}"));
            assert_eq!(info.auth_method, method, "{user} {require}");
        }
        let refusals = [
            (
                PASSWORD_USER,
                Some(PASSWORD_PASS),
                "scram-sha-256",
                "server requested a cleartext password",
            ),
            (
                MD5_USER,
                Some(MD5_PASS),
                "!md5",
                "server requested a hashed password",
            ),
            (
                SCRAM_USER,
                Some(SCRAM_PASS),
                "password",
                "server requested SASL authentication",
            ),
            (
                TRUST_USER,
                None,
                "scram-sha-256",
                "server did not complete authentication",
            ),
            (
                TRUST_USER,
                None,
                "!none",
                "server did not complete authentication",
            ),
        ];
        for (user, pass, require, says) in refusals {
            let url = c.url(
                user,
                pass,
                &format!(
                    "sslmode=disable&require_auth={}",
                    require.replace('!', "%21")
                ),
            );
            let text = refused(&url, ErrorKind::Auth).await;
            assert!(
                text.contains(&format!(
                    "authentication method requirement {require:?} failed: {says}"
                )),
                "{user} {require}: {text}"
            );
        }
    })
    .await;
}

/// One scripted connection on a fresh port; the peer's own assertions reach
/// the test through `finish` (crate::scripted::Peer).
async fn one_peer<F, Fut>(script: F) -> (u16, Peer)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let peer = Peer::once(script).await;
    (peer.port(), peer)
}

async fn read_startup(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// The password never leaves the client when require_auth forbids what the
/// server asked for: after the request, the peer sees the connection close
/// without a single byte more.
#[tokio::test]
async fn require_auth_sends_nothing_after_a_forbidden_request() {
    within(async {
    for (request, says) in [
        (&b"R\0\0\0\x08\0\0\0\x03"[..], "cleartext password"),
        (&b"R\0\0\0\x0c\0\0\0\x05salt"[..], "hashed password"),
    ] {
        let (port, peer) = one_peer(move |mut s| async move {
            read_startup(&mut s).await;
            s.write_all(request).await.unwrap();
            // One read: a password would arrive here (and the panic, closing
            // the socket, fails the client's side too, so nothing hangs).
            let mut rest = [0u8; 256];
            let n = s.read(&mut rest).await.unwrap();
            assert_eq!(&rest[..n], b"", "nothing after a forbidden request");
        })
        .await;
        let text = refused(
            &format!("host=127.0.0.1 port={port} user=u password=secret sslmode=disable require_auth=scram-sha-256"),
            ErrorKind::Auth,
        )
        .await;
        assert!(text.contains(says), "{text}");
        peer.finish().await;
    }
    })
    .await;
}

#[tokio::test]
async fn sslcrl_and_sslcrldir_refuse_a_revoked_server_certificate() {
    within(async {
        let c = cluster();
        let ca = c.ca_file.display();
        let base = c.base.display();
        let verify = |extra: &str| {
            c.url(
                TRUST_USER,
                None,
                &format!("sslmode=verify-full&sslrootcert={ca}&{extra}"),
            )
        };
        try_connect(&verify(&format!("sslcrl={base}/clean.crl")))
            .await
            .expect("a CRL that does not list the server's certificate");
        let text = refused(
            &verify(&format!("sslcrl={base}/revoked.crl")),
            ErrorKind::Tls,
        )
        .await;
        assert!(
            text.contains(&format!(
                "the server's certificate has been revoked (per sslcrl {base}/revoked.crl)"
            )),
            "{text}"
        );
        let text = refused(&verify(&format!("sslcrldir={base}/crls")), ErrorKind::Tls).await;
        assert!(text.contains("has been revoked (per sslcrldir"), "{text}");
        // verify-ca checks revocation too (not only the host name is skipped).
        let text = refused(
            &c.url(
                TRUST_USER,
                None,
                &format!("sslmode=verify-ca&sslrootcert={ca}&sslcrl={base}/revoked.crl"),
            ),
            ErrorKind::Tls,
        )
        .await;
        assert!(text.contains("has been revoked"), "{text}");
        let text = refused(
            &verify(&format!("sslcrl={base}/other-ca.crl")),
            ErrorKind::Tls,
        )
        .await;
        assert!(
            text.contains("revocation status of the server's certificate is unknown"),
            "{text}"
        );
        // A CRL file named but missing is an error, not revocation checking off.
        let text = refused(&verify("sslcrl=/nonexistent/root.crl"), ErrorKind::Config).await;
        assert!(
            text.contains("sslcrl /nonexistent/root.crl: cannot be read"),
            "{text}"
        );
        let text = refused(
            &verify(&format!("sslcrldir={base}/sock")),
            ErrorKind::Config,
        )
        .await;
        assert!(
            text.contains("holds no certificate revocation list"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn tls_errors_say_what_failed() {
    within(async {
    let c = cluster();
    let base = c.base.display();
    let text = refused(
        &c.url(
            TRUST_USER,
            None,
            &format!("sslmode=verify-ca&sslrootcert={base}/other-ca.crt"),
        ),
        ErrorKind::Tls,
    )
    .await;
    assert_eq!(
        text,
        format!(
            "TLS handshake failed: the server's certificate was not issued by a CA in sslrootcert {base}/other-ca.crt: point sslrootcert at the CA that signed it"
        )
    );
    let url = format!(
        "host=wrong.example hostaddr=127.0.0.1 port={} user={TRUST_USER} dbname=postgres sslmode=verify-full sslrootcert={}",
        c.port,
        c.ca_file.display()
    );
    let text = refused(&url, ErrorKind::Tls).await;
    assert!(
        text.contains("not valid for host name \"wrong.example\" (it names localhost, IpAddress("),
        "{text}"
    );
    assert!(!text.contains("Other(OtherError"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn tls_protocol_versions() {
    within(async {
        let c = cluster();
        for (params, version) in [
            ("ssl_max_protocol_version=TLSv1.2", "TLSv1_2"),
            ("ssl_min_protocol_version=TLSv1.3", "TLSv1_3"),
            (
                "ssl_min_protocol_version=TLSv1.2&ssl_max_protocol_version=TLSv1.2",
                "TLSv1_2",
            ),
        ] {
            let (client, _) =
                try_connect(&c.url(TRUST_USER, None, &format!("sslmode=require&{params}")))
                    .await
                    .unwrap_or_else(|e| panic!("{params}: {e}"));
            assert_eq!(
                client.tls_info().unwrap().protocol_version,
                version,
                "{params}"
            );
        }
        // A server that speaks only TLS 1.2, asked for 1.3 at least.
        let acceptor = acceptor(
            &[&rustls::version::TLS12],
            self_signed(&["localhost"], true),
        );
        let (port, peer) = one_peer(move |mut s| async move {
            read_startup(&mut s).await;
            s.write_all(b"S").await.unwrap();
            assert!(acceptor.accept(s).await.is_err(), "no common version");
        })
        .await;
        let text = refused(
            &format!(
                "host=localhost port={port} user=u sslmode=require ssl_min_protocol_version=TLSv1.3"
            ),
            ErrorKind::Tls,
        )
        .await;
        assert!(
            text.contains(
                "the server does not support any TLS version between TLSv1.3 and TLSv1.3"
            ),
            "{text}"
        );
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn sslcertmode() {
    within(async {
        let c = cluster();
        let cert = format!(
            "sslcert={}&sslkey={}",
            c.base.join("client.crt").display(),
            c.base.join("client.key").display()
        );
        // The server asks for a certificate (ssl_ca_file is set): require is met.
        let (client, _) = try_connect(&c.url(
            CERT_USER,
            None,
            &format!("sslmode=require&sslcertmode=require&{cert}"),
        ))
        .await
        .unwrap();
        let tls = client.tls_info().unwrap();
        assert!(tls.client_cert_requested && tls.client_cert_sent);
        // disable: the certificate is not sent, so cert authentication fails.
        let text = refused(
            &c.url(
                CERT_USER,
                None,
                &format!("sslmode=require&sslcertmode=disable&{cert}"),
            ),
            ErrorKind::Auth,
        )
        .await;
        assert!(
            text.contains("connection requires a valid client certificate"),
            "{text}"
        );
        // require without a certificate to send.
        let text = refused(
            &c.url(
                TRUST_USER,
                None,
                "sslmode=require&sslcertmode=require&sslcert=/nonexistent",
            ),
            ErrorKind::Config,
        )
        .await;
        assert!(text.contains("cannot read sslcert /nonexistent"), "{text}");
        let text = refused(
            &c.url(TRUST_USER, None, "sslmode=require&sslcertmode=require"),
            ErrorKind::Auth,
        )
        .await;
        assert!(
            text.contains("accepted the connection without a valid SSL certificate"),
            "{text}"
        );
        // No TLS at all: nothing was requested.
        let text = refused(
            &c.url(TRUST_USER, None, "sslmode=disable&sslcertmode=require"),
            ErrorKind::Auth,
        )
        .await;
        assert!(
            text.contains("the server did not request an SSL certificate"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn sslcertmode_require_with_a_server_that_never_asks() {
    within(async {
    let acceptor = acceptor(
        &[&rustls::version::TLS13],
        self_signed(&["localhost"], true),
    );
    let (port, peer) = one_peer(move |mut s| async move {
        read_startup(&mut s).await;
        s.write_all(b"S").await.unwrap();
        let mut tls = acceptor.accept(s).await.unwrap();
        read_startup(&mut tls).await;
        tls.write_all(HELLO).await.unwrap();
        tls.flush().await.unwrap();
        let _ = tls.read(&mut [0u8; 64]).await;
    })
    .await;
    let c = cluster();
    let text = refused(
        &format!(
            "host=localhost port={port} user=u sslmode=require sslcertmode=require sslcert={} sslkey={}",
            c.base.join("client.crt").display(),
            c.base.join("client.key").display()
        ),
        ErrorKind::Auth,
    )
    .await;
    assert!(
        text.contains("the server did not request an SSL certificate"),
        "{text}"
    );
    peer.finish().await;
    })
    .await;
}

/// AuthenticationOk, BackendKeyData, ReadyForQuery(I).
const HELLO: &[u8] = b"R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\x04\xd2\0\0\0\x2aZ\0\0\0\x05I";

/// A certificate for `names`, self-signed; `ca` marks it a CA certificate
/// (what `openssl req -new -x509` makes).
fn self_signed(names: &[&str], ca: bool) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    (params.self_signed(&key).unwrap(), key)
}

fn acceptor(
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert_and_key: (rcgen::Certificate, rcgen::KeyPair),
) -> tokio_rustls::TlsAcceptor {
    crate::scripted::tls_acceptor(versions, cert_and_key, false)
}

/// A peer that answers SSLRequest with `S`, runs TLS with `cert`, and (if the
/// handshake succeeds) says hello.
async fn tls_peer(cert: rcgen::Certificate, key: rcgen::KeyPair) -> (u16, Peer) {
    let acceptor = acceptor(&[&rustls::version::TLS13], (cert, key));
    one_peer(move |mut s| async move {
        read_startup(&mut s).await;
        s.write_all(b"S").await.unwrap();
        if let Ok(mut tls) = acceptor.accept(s).await {
            read_startup(&mut tls).await;
            tls.write_all(HELLO).await.unwrap();
            tls.flush().await.unwrap();
            let _ = tls.read(&mut [0u8; 64]).await;
        }
    })
    .await
}

/// Connects with verify-full and `root` to a TLS peer serving `cert`; the
/// refusal's text (kind `Tls`).
async fn verify_full_refuses(cert: rcgen::Certificate, key: rcgen::KeyPair, root: &str) -> String {
    let (port, peer) = tls_peer(cert, key).await;
    let text = refused(
        &format!("host=localhost port={port} user=u sslmode=verify-full sslrootcert={root}"),
        ErrorKind::Tls,
    )
    .await;
    peer.finish().await;
    text
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

/// PostgreSQL's documented quick setup: a self-signed CA certificate as the
/// server's, the same file as the client's root. libpq accepts it; WebPKI
/// alone refuses it (CaUsedAsEndEntity).
#[tokio::test]
async fn a_server_certificate_that_is_the_root_itself() {
    within(async {
        let dir = cluster().base.join("self-signed");
        for (mode, host) in [("verify-full", "localhost"), ("verify-ca", "127.0.0.1")] {
            let (cert, key) = self_signed(&["localhost"], true);
            let root = write_pem(&dir, "root.crt", &cert.pem());
            let (port, peer) = tls_peer(cert, key).await;
            let (client, _) = try_connect(&format!(
                "host={host} port={port} user=u sslmode={mode} sslrootcert={root}"
            ))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
            assert_eq!(client.session().backend_key().unwrap().process_id, 1234);
            drop(client);
            peer.finish().await;
        }
        // verify-full still checks the name.
        let (cert, key) = self_signed(&["db.example"], true);
        let root = write_pem(&dir, "other-name.crt", &cert.pem());
        let text = verify_full_refuses(cert, key, &root).await;
        assert!(
            text.contains("not valid for host name \"localhost\""),
            "{text}"
        );
        // ...and the dates (WebPKI checks them before the certificate's role).
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let root = write_pem(&dir, "expired.crt", &cert.pem());
        let text = verify_full_refuses(cert, key, &root).await;
        assert!(
            text.contains("the server's certificate has expired"),
            "{text}"
        );
        // A CA certificate that is *not* among the roots stays refused, in words.
        let (cert, key) = self_signed(&["localhost"], true);
        let other = cluster().ca_file.display().to_string();
        let text = verify_full_refuses(cert, key, &other).await;
        let says = "the server presented a CA certificate as its own certificate, \
                and it is not one of the roots";
        assert!(text.contains(says), "{text}");
    })
    .await;
}

#[tokio::test]
async fn requirepeer_over_the_unix_socket() {
    within(async {
        let c = cluster();
        let socket = c.socket_dir.join(format!(".s.PGSQL.{}", c.port));
        let owner = {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata(&socket).unwrap().uid();
            let out = std::process::Command::new("id")
                .args(["-nu", &uid.to_string()])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        assert!(!owner.is_empty());
        try_connect(&c.socket_conninfo(TRUST_USER, &format!("requirepeer={owner}")))
            .await
            .unwrap_or_else(|e| panic!("requirepeer={owner}: {e}"));
        let text = refused(
            &c.socket_conninfo(TRUST_USER, "requirepeer=no_such_peer"),
            ErrorKind::Auth,
        )
        .await;
        assert_eq!(
            text,
            format!(
                "requirepeer specifies \"no_such_peer\", but actual peer user name is \"{owner}\""
            )
        );
        // Over TCP there is no peer user: ignored, as libpq does.
        try_connect(&c.url(TRUST_USER, None, "sslmode=disable&requirepeer=no_such_peer"))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn replication_is_sent_in_the_startup_packet() {
    within(async {
        let c = cluster();
        let mut client =
            crate::client(&c.socket_conninfo(TRUST_USER, "replication=database")).await;
        let rows = client.simple_query("IDENTIFY_SYSTEM").await.unwrap();
        assert_eq!(rows[0].columns[0], "systemid");
        assert_eq!(rows[0].rows.len(), 1);
        let mut plain = crate::client(&c.socket_conninfo(TRUST_USER, "")).await;
        let e = plain.simple_query("IDENTIFY_SYSTEM").await.unwrap_err();
        assert_eq!(e.as_db_error().unwrap().code.code(), "42601", "{e}");
    })
    .await;
}

#[tokio::test]
async fn an_encrypted_client_key_is_refused_before_dialling() {
    within(async {
    let c = cluster();
    let dir = c.base.join("encrypted-key");
    let key = write_pem(
        &dir,
        "client.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let text = refused(
        &c.url(
            CERT_USER,
            None,
            &format!(
                "sslmode=require&sslcert={}&sslkey={key}&sslpassword=pw",
                c.base.join("client.crt").display()
            ),
        ),
        ErrorKind::Config,
    )
    .await;
    assert!(
        text.contains("is encrypted, and encrypted client keys are not supported"),
        "{text}"
    );
    })
    .await;
}

#[tokio::test]
async fn a_service_file_names_the_server() {
    within(async {
    let c = cluster();
    let dir = c.base.join("service");
    let file = write_pem(
        &dir,
        "pg_service.conf",
        &format!(
            "[test]\nhost={}\nport={}\nuser={TRUST_USER}\ndbname=postgres\napplication_name=from-service\n",
            c.socket_dir.display(),
            c.port
        ),
    );
    let mut client = crate::client(&format!("service=test servicefile={file}")).await;
    let rows = client.simple_query("SHOW application_name").await.unwrap();
    assert_eq!(rows[0].rows[0][0].as_deref(), Some("from-service"));
    // Built in code: the same service, applied when connecting.
    let mut config = Config::new();
    config.service = Some("test".to_owned());
    config.service_file = Some(file.into());
    config.connect_timeout = Some(Duration::from_secs(10));
    let (mut client, _) = connect(&config).await.unwrap();
    let rows = client.simple_query("SHOW application_name").await.unwrap();
    assert_eq!(rows[0].rows[0][0].as_deref(), Some("from-service"));
    })
    .await;
}
