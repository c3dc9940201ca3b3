//! What differs between the server versions users run (14–18): direct SSL
//! (PostgreSQL 17+) and protocol 3.2 (PostgreSQL 18). Each test asserts what
//! the version it runs against must do, both sides of the line; the tier runs
//! once per version (`PGT_SERVER_VERSION`, see `scripts/pg-servers.sh`).

use pg_transport::ErrorKind;
use pg_transport::session::ProtocolVersion;

use crate::cluster::*;

/// PostgreSQL 17 is the first to accept TLS without an SSLRequest.
const DIRECT_SSL_SINCE: u32 = 170_000;

#[tokio::test]
async fn direct_ssl_where_the_server_has_it_and_a_clear_error_where_not() {
    let c = cluster();
    let root = c.ca_file.display().to_string();
    for mode in ["require", "verify-full"] {
        let conninfo = format!(
            "host=localhost port={} user={SSL_ONLY_USER} dbname=postgres sslmode={mode} \
             sslrootcert={root} sslnegotiation=direct connect_timeout=20",
            c.port
        );
        let config: pg_transport::Config = conninfo.parse().unwrap();
        let outcome = pg_transport::connect(&config).await;
        if c.version >= DIRECT_SSL_SINCE {
            let (mut client, _) = outcome.unwrap_or_else(|e| panic!("{conninfo}: {e}"));
            let tls = client.tls_info().expect("TLS in use").clone();
            assert_eq!(tls.alpn_protocol.as_deref(), Some(&b"postgresql"[..]));
            let rows = client
                .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .await
                .unwrap();
            assert_eq!(rows[0].rows[0][0].as_deref(), Some("t"), "{mode}");
        } else {
            let e = outcome.expect_err("a server before 17 cannot accept direct SSL");
            assert_eq!(e.kind(), ErrorKind::Tls, "{mode}: {e}");
            assert!(
                e.to_string().contains("sslnegotiation=direct"),
                "{mode}: the error names the setting to change: {e}"
            );
        }
    }
}

/// PostgreSQL 18 is the first to speak protocol 3.2.
const PROTOCOL_3_2_SINCE: u32 = 180_000;

#[tokio::test]
async fn protocol_3_2_where_the_server_has_it_and_its_downgrade_where_not() {
    let c = cluster();
    let client =
        crate::client(&c.url(TRUST_USER, None, "sslmode=disable&max_protocol_version=3.2")).await;
    let s = client.session();
    let key = &s.backend_key().expect("a cancel key").secret_key;
    if c.version >= PROTOCOL_3_2_SINCE {
        assert_eq!(s.protocol_version(), ProtocolVersion::V3_2);
        assert_eq!(s.protocol_negotiation(), None, "nothing to negotiate");
        assert_eq!(key.len(), 32, "PostgreSQL 18's long cancel key");
    } else {
        assert_eq!(s.protocol_version(), ProtocolVersion::V3_0);
        let n = s.protocol_negotiation().expect("the server's downgrade");
        assert_eq!(n.newest_minor, 0x0003_0000);
        assert!(n.unsupported_options.is_empty());
        assert_eq!(key.len(), 4);
    }
    // The default asks for 3.0 everywhere, as libpq 18 does.
    let client = crate::client(&c.url(TRUST_USER, None, "sslmode=disable")).await;
    assert_eq!(client.session().protocol_version(), ProtocolVersion::V3_0);
    assert_eq!(client.session().protocol_negotiation(), None);
}

#[tokio::test]
async fn cancel_with_the_key_protocol_3_2_gives() {
    crate::liveness::cancel_stops_a_running_query_with("sslmode=disable&max_protocol_version=3.2")
        .await;
}

#[tokio::test]
async fn min_protocol_version_3_2_refuses_a_server_before_18() {
    let c = cluster();
    let config: pg_transport::Config = c
        .url(TRUST_USER, None, "sslmode=disable&min_protocol_version=3.2")
        .parse()
        .unwrap();
    let outcome = pg_transport::connect(&config).await;
    if c.version >= PROTOCOL_3_2_SINCE {
        let (client, _) = outcome.unwrap();
        assert_eq!(client.session().protocol_version(), ProtocolVersion::V3_2);
    } else {
        let e = outcome.expect_err("the server only has 3.0");
        assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
        assert!(
            e.to_string().contains(
                "server only supports protocol version 3.0, but \"min_protocol_version\" was set to 3.2"
            ),
            "{e}"
        );
    }
}
