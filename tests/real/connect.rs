//! Startup, authentication and TLS modes against the real server.

use pg_transport::connect::AuthMethod;
use pg_transport::{Config, ErrorKind, connect};

use crate::cluster::*;

async fn try_connect(
    conninfo: &str,
) -> pg_transport::Result<(pg_transport::DefaultConnection, pg_transport::ConnectInfo)> {
    let config: Config = conninfo.parse()?;
    connect(&config).await
}

#[tokio::test]
async fn every_auth_method_over_tcp() {
    let c = cluster();
    let cases = [
        (TRUST_USER, None, "sslmode=disable", AuthMethod::Trust),
        (
            PASSWORD_USER,
            Some(PASSWORD_PASS),
            "sslmode=disable",
            AuthMethod::Cleartext,
        ),
        (MD5_USER, Some(MD5_PASS), "sslmode=disable", AuthMethod::Md5),
        (
            SCRAM_USER,
            Some(SCRAM_PASS),
            "sslmode=disable",
            AuthMethod::ScramSha256,
        ),
        (
            SCRAM_USER,
            Some(SCRAM_PASS),
            "sslmode=require",
            AuthMethod::ScramSha256Plus,
        ),
        (
            SCRAM_USER,
            Some(SCRAM_PASS),
            "sslmode=require&channel_binding=disable",
            AuthMethod::ScramSha256,
        ),
        (
            SCRAM_USER,
            Some(SCRAM_PASS),
            "sslmode=require&channel_binding=require",
            AuthMethod::ScramSha256Plus,
        ),
    ];
    for (user, password, params, expected) in cases {
        let url = c.url(user, password, params);
        let (mut client, info) = try_connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(info.auth_method, expected, "{url}");
        let rows = client
            .simple_query("SELECT current_user, 1 + 1")
            .await
            .unwrap();
        assert_eq!(
            rows[0].rows,
            [[Some(user.to_owned()), Some("2".to_owned())]]
        );
        assert_eq!(rows[0].tag, "SELECT 1");
        assert_eq!(
            client.tls_info().is_some(),
            params.contains("require"),
            "{url}"
        );
        client.close().await;
    }
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_with_the_server_fields() {
    let c = cluster();
    for user in [MD5_USER, SCRAM_USER, PASSWORD_USER] {
        let e = try_connect(&c.url(user, Some("wrong"), "sslmode=disable"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{user}: {e}");
        let db = e
            .as_db_error()
            .unwrap_or_else(|| panic!("{user}: no server fields in {e:?}"));
        assert_eq!(db.code.code(), "28P01", "{user}");
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn missing_password_says_how_to_give_one() {
    let c = cluster();
    let url = format!(
        "{}&passfile=/nonexistent",
        c.url(SCRAM_USER, None, "sslmode=disable")
    );
    let e = try_connect(&url).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(e.to_string().contains("PGPASSWORD"), "{e}");
}

#[tokio::test]
async fn password_file_is_used_and_must_be_private() {
    let c = cluster();
    let dir = std::env::temp_dir().join(format!("pgpass-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgpass");
    std::fs::write(
        &file,
        format!(
            "# comment\n127.0.0.1:{}:*:{SCRAM_USER}:{SCRAM_PASS}\n",
            c.port
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!(
        "{}&passfile={}",
        c.url(SCRAM_USER, None, "sslmode=disable"),
        file.display()
    );
    let (_, info) = try_connect(&url).await.unwrap();
    assert_eq!(info.auth_method, AuthMethod::ScramSha256);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        try_connect(&url).await.unwrap_err().kind(),
        ErrorKind::Auth,
        "a world-readable file is ignored"
    );
}

#[tokio::test]
async fn channel_binding_require_without_tls_fails() {
    let c = cluster();
    let e = try_connect(&c.url(
        SCRAM_USER,
        Some(SCRAM_PASS),
        "sslmode=disable&channel_binding=require",
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(e.to_string().contains("channel_binding=require"), "{e}");
    // Trust auth over TLS with channel_binding=require: the server never bound.
    let e = try_connect(&c.url(TRUST_USER, None, "sslmode=require&channel_binding=require"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("without channel binding"), "{e}");
    // A server that asks for a cleartext or MD5 password over TLS: refused
    // before the password is sent (the server then logs an incomplete startup).
    for (user, pass, method) in [
        (PASSWORD_USER, PASSWORD_PASS, "a cleartext password"),
        (MD5_USER, MD5_PASS, "an MD5 password"),
    ] {
        let e = try_connect(&c.url(user, Some(pass), "sslmode=require&channel_binding=require"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(method) && text.contains("the password was not sent"),
            "{text}"
        );
    }
}

/// `sslrootcert=system` trusts the operating system's roots, which do not
/// include the test CA: the connection must fail verification, and the
/// default sslmode must have become verify-full (prefer would have retried
/// in plaintext and connected).
#[tokio::test]
async fn sslrootcert_system_verifies_against_the_system_roots() {
    let c = cluster();
    let e = try_connect(&c.url(TRUST_USER, None, "sslrootcert=system"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(
        e.to_string().contains(
            "the server's certificate was not issued by a CA in the system's trusted roots (sslrootcert=system)"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn verify_full_and_verify_ca_with_the_test_ca() {
    let c = cluster();
    let root = c.ca_file.display().to_string();
    for (host, mode) in [
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-full"),
        ("localhost", "verify-ca"),
    ] {
        let conninfo = format!(
            "host={host} port={} user={TRUST_USER} dbname=postgres sslmode={mode} sslrootcert={root}",
            c.port
        );
        let (client, _) = try_connect(&conninfo)
            .await
            .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
        let tls = client.tls_info().expect("TLS in use");
        assert!(tls.protocol_version.contains("TLS"), "{tls:?}");
    }
}

#[tokio::test]
async fn verify_modes_fail_closed_before_io() {
    // G75: no root certificate → config error; the port is closed, so any I/O would fail differently.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for mode in ["verify-ca", "verify-full"] {
        let e = try_connect(&format!(
            "host=127.0.0.1 port={closed} user=x sslmode={mode} sslrootcert="
        ))
        .await;
        let e = e.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{mode}: {e}");
    }
    let c = cluster();
    let e = try_connect(&format!(
        "hostaddr=127.0.0.1 port={} user={TRUST_USER} sslmode=verify-full sslrootcert={}",
        c.port,
        c.ca_file.display()
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("host name must be specified"), "{e}");
}

#[tokio::test]
async fn ssl_only_and_nossl_only_users_follow_sslmode() {
    let c = cluster();
    // hostssl only: disable is refused by pg_hba; allow retries with TLS.
    let e = try_connect(&c.url(SSL_ONLY_USER, None, "sslmode=disable"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("no pg_hba.conf entry"), "{e}");
    let (client, _) = try_connect(&c.url(SSL_ONLY_USER, None, "sslmode=allow"))
        .await
        .unwrap();
    assert!(client.tls_info().is_some(), "allow fell back to TLS");
    // hostnossl only: prefer tries TLS, is refused, and retries in plaintext.
    let (client, _) = try_connect(&c.url(NOSSL_ONLY_USER, None, "sslmode=prefer"))
        .await
        .unwrap();
    assert!(client.tls_info().is_none());
    let e = try_connect(&c.url(NOSSL_ONLY_USER, None, "sslmode=require"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no pg_hba.conf entry"), "{e}");
}

#[tokio::test]
async fn unix_socket_never_uses_tls() {
    // G80: sslmode=require on a Unix socket sends no SSLRequest; startup proceeds.
    let c = cluster();
    let (mut client, info) = try_connect(&c.socket_conninfo("postgres", "sslmode=require"))
        .await
        .unwrap();
    assert!(client.tls_info().is_none());
    assert!(info.addr.is_none());
    assert_eq!(
        client.simple_query("SELECT 1").await.unwrap()[0].rows,
        [[Some("1".to_owned())]]
    );
}

#[tokio::test]
async fn application_name_and_server_params_are_reported() {
    let c = cluster();
    let (client, _) = try_connect(&c.url(
        TRUST_USER,
        None,
        "application_name=pgt-test&sslmode=disable",
    ))
    .await
    .unwrap();
    let s = client.session();
    assert_eq!(s.parameter("application_name"), Some("pgt-test"));
    assert!(s.parameter("server_version").is_some());
    assert_eq!(s.parameter("client_encoding"), Some("UTF8"));
    assert!(s.backend_key().is_some());
}

#[tokio::test]
async fn d51_nul_in_query_keeps_the_connection_ready() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    let e = client.simple_query("SELECT 1\0x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(client.state(), pg_transport::State::Ready);
    assert_eq!(
        client.simple_query("SELECT 2").await.unwrap()[0].rows,
        [[Some("2".to_owned())]]
    );
}

#[tokio::test]
async fn server_error_drains_to_ready() {
    let c = cluster();
    let mut client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    let e = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code.code(), "42P01");
    assert_eq!(
        db.render("SELECT * FROM no_such_table"),
        format!(
            "ERROR:  relation \"no_such_table\" does not exist\nLINE 1: SELECT * FROM no_such_table\n                      ^"
        )
    );
    assert_eq!(client.state(), pg_transport::State::Ready);
    // COPY FROM STDIN cannot be fed by a simple query: refused with CopyFail,
    // the server's error returned, the connection still Ready.
    client
        .simple_query("CREATE TEMP TABLE sq_copy (v int)")
        .await
        .unwrap();
    let e = client
        .simple_query("COPY sq_copy FROM STDIN")
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code.code(), "57014", "{e}");
    assert!(e.to_string().contains("use copy_in"), "{e}");
    assert_eq!(client.state(), pg_transport::State::Ready);
    let r = client
        .simple_query("SELECT 1; SELECT 'a', NULL")
        .await
        .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].rows, [[Some("a".to_owned()), None]]);
}

#[tokio::test]
async fn client_certificate_authenticates() {
    let c = cluster();
    let base = c.ca_file.parent().unwrap();
    let with_cert = format!(
        "host=localhost port={} user={CERT_USER} dbname=postgres sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        c.port,
        c.ca_file.display(),
        base.join("client.crt").display(),
        base.join("client.key").display()
    );
    let (mut client, info) = try_connect(&with_cert)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        info.auth_method,
        AuthMethod::Trust,
        "cert auth asks for no password"
    );
    assert_eq!(
        client.simple_query("SELECT current_user").await.unwrap()[0].rows[0][0].as_deref(),
        Some(CERT_USER)
    );
    // Without the certificate the server refuses.
    let without = format!(
        "host=localhost port={} user={CERT_USER} dbname=postgres sslmode=require",
        c.port
    );
    let e = try_connect(&without).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(
        e.to_string()
            .contains("connection requires a valid client certificate"),
        "{e}"
    );
    // A certificate file that is not there: a config error before any I/O.
    let e = try_connect(&format!(
        "{without} sslcert=/nonexistent.crt sslkey=/nonexistent.key"
    ))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}
