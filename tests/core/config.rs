//! Group H (pure): host helpers, host lists, and connection-string parsing.

use std::net::IpAddr;
use std::time::Duration;

use pg_transport::ErrorKind;
use pg_transport::connect::{
    Config, DialTarget, HostEntry, SslMode, SslNegotiation, TargetSessionAttrs, host_list,
    is_unix_socket, unix_socket_path,
};

#[test]
fn h86_unix_socket_helpers() {
    assert!(is_unix_socket("/tmp"));
    assert!(is_unix_socket("/var/run/postgresql"));
    assert!(is_unix_socket("@abstract"));
    for not in ["localhost", "127.0.0.1", ""] {
        assert!(!is_unix_socket(not), "{not:?}");
    }
    assert_eq!(unix_socket_path("/tmp", 5433), "/tmp/.s.PGSQL.5433");
    assert_eq!(unix_socket_path("/tmp/", 5433), "/tmp/.s.PGSQL.5433");
}

fn parse(s: &str) -> Config {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn h87_get_hosts() {
    let c = parse("host=a,b,c port=1,2,3");
    let hosts = host_list(&c);
    assert_eq!(
        hosts
            .iter()
            .map(|h| (h.host.clone().unwrap(), h.port))
            .collect::<Vec<_>>(),
        [
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("c".to_owned(), 3)
        ]
    );
    // No host: one entry from the defaults.
    let hosts = host_list(&Config::new());
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].port, 5432);
    // Port 0 means 5432.
    assert_eq!(host_list(&parse("host=h port=0"))[0].port, 5432);
    // hostaddr is carried through and wins for dialling; the name stays for display and TLS.
    let h = &host_list(&parse("host=db.example hostaddr=10.1.2.3 port=6000"))[0];
    assert_eq!(h.hostaddr, Some("10.1.2.3".parse::<IpAddr>().unwrap()));
    assert_eq!(
        h.dial_target(),
        DialTarget::Addr("10.1.2.3".parse().unwrap(), 6000)
    );
    assert_eq!(h.display_host(), "db.example (10.1.2.3:6000)");
    assert_eq!(h.tls_name(), Some("db.example"));
    let unix = HostEntry {
        host: Some("/tmp".into()),
        hostaddr: None,
        port: 5433,
    };
    assert_eq!(
        unix.dial_target(),
        DialTarget::Unix("/tmp/.s.PGSQL.5433".into())
    );
    assert_eq!(unix.tls_name(), None);
    let v6 = &host_list(&parse("host=::1 port=5"))[0];
    assert_eq!(v6.display_host(), "[::1]:5");
}

#[test]
fn h88_host_lists_and_bad_values() {
    let c = parse("postgresql://u@h1:5433,h2:5434/db");
    let pairs: Vec<_> = host_list(&c)
        .into_iter()
        .map(|h| (h.host.unwrap(), h.port))
        .collect();
    assert_eq!(pairs, [("h1".to_owned(), 5433), ("h2".to_owned(), 5434)]);
    let one_port = host_list(&parse("host=h1,h2 port=7777"));
    assert!(one_port.iter().all(|h| h.port == 7777));
    let e = "host=h1,h2,h3 port=1,2".parse::<Config>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("2 port numbers to 3 hosts"), "{e}");
    for bad in [
        "keepalives_idle=-1",
        "keepalives_count=-1",
        "keepalives_interval=x",
        "port=99999",
        "sslmode=sometimes",
    ] {
        let e = format!("host=h {bad}").parse::<Config>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
        let (key, value) = bad.split_once('=').unwrap();
        assert!(
            e.to_string().contains(key) && e.to_string().contains(value),
            "names key and value: {e}"
        );
    }
    assert!(
        "host=h bogus_option=1"
            .parse::<Config>()
            .unwrap_err()
            .to_string()
            .contains("bogus_option")
    );
}

#[test]
fn url_form() {
    let c = parse(
        "postgres://al%40ice:p%3Ass@[::1]:6432,%2Ftmp/my%20db?sslmode=verify-full&application_name=x&connect_timeout=1",
    );
    assert_eq!(c.user.as_deref(), Some("al@ice"));
    assert_eq!(c.password.as_deref(), Some("p:ss"));
    assert_eq!(c.hosts, ["::1", "/tmp"]);
    assert_eq!(c.ports, [6432, 5432]);
    assert_eq!(c.dbname.as_deref(), Some("my db"));
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert_eq!(c.application_name.as_deref(), Some("x"));
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(1)));
    assert_eq!(
        c.connect_timeout_used(),
        Some(Duration::from_secs(2)),
        "libpq raises 1 s to 2 s"
    );
    assert!("postgres://h/db?sslmode".parse::<Config>().is_err());
    assert!("postgres://h:notaport/db".parse::<Config>().is_err());
}

#[test]
fn keyword_form_with_quotes() {
    let c = parse(
        r"host=localhost  user = 'o\'brien' password='a b\\c' target_session_attrs=prefer-standby",
    );
    assert_eq!(c.user.as_deref(), Some("o'brien"));
    assert_eq!(c.password.as_deref(), Some(r"a b\c"));
    assert_eq!(c.target_session_attrs, TargetSessionAttrs::PreferStandby);
    assert!("host='unterminated".parse::<Config>().is_err());
    assert!("host".parse::<Config>().is_err());
}

#[test]
fn environment_fills_only_what_is_unset() {
    let env = |k: &str| match k {
        "PGHOST" => Some("envhost".to_owned()),
        "PGPORT" => Some("6543".to_owned()),
        "PGUSER" => Some("envuser".to_owned()),
        "PGSSLMODE" => Some("require".to_owned()),
        "PGAPPNAME" => Some("envapp".to_owned()),
        _ => None,
    };
    let mut c = parse("user=explicit");
    c.apply_env(env).unwrap();
    assert_eq!(c.user.as_deref(), Some("explicit"), "the string wins");
    assert_eq!(c.hosts, ["envhost"]);
    assert_eq!(c.ports, [6543]);
    assert_eq!(c.ssl_mode, SslMode::Require);
    assert_eq!(c.application_name.as_deref(), Some("envapp"));
    let e = Config::new()
        .apply_env(|k| (k == "PGPORT").then(|| "x".to_owned()))
        .unwrap_err();
    assert!(e.to_string().contains("PGPORT"), "{e}");
}

#[test]
fn g73_direct_with_weak_sslmode_fails_before_dialling() {
    for mode in ["disable", "allow", "prefer"] {
        let e = format!("host=a,b,c sslmode={mode} sslnegotiation=direct")
            .parse::<Config>()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("sslnegotiation=direct"), "{e}");
    }
    assert_eq!(
        parse("host=a sslmode=require sslnegotiation=direct").ssl_negotiation,
        SslNegotiation::Direct
    );
}

#[test]
fn sslrootcert_system_needs_verify_full() {
    for mode in ["disable", "allow", "require", "verify-ca"] {
        let e = format!("host=h sslrootcert=system sslmode={mode}")
            .parse::<Config>()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{mode}");
        assert!(e.to_string().contains("verify-full"), "{mode}: {e}");
    }
    for ok in [
        "host=h sslrootcert=system",
        "host=h sslrootcert=system sslmode=verify-full",
    ] {
        let config: Config = ok.parse().unwrap();
        assert!(config.uses_system_roots(), "{ok}");
    }
    let file: Config = "host=h sslrootcert=/etc/ca.pem".parse().unwrap();
    assert!(!file.uses_system_roots());
}

#[test]
fn debug_output_never_shows_the_password() {
    let config: Config = "host=h user=u password=hunter2-secret".parse().unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains("user: Some(\"u\")"),
        "{shown}"
    );
}
