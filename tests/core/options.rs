//! Every connection option: accepted with libpq's meaning, or refused with an
//! error naming it (issue 10 §1). Parsing only; the effects are shown against
//! the real server and scripted peers in `tests/real/options.rs`.

use std::path::PathBuf;
use std::time::Duration;

use pg_transport::ErrorKind;
use pg_transport::connect::{
    AuthRequirement, Config, GssEncMode, KEYWORDS, REFUSED_KEYWORDS, Replication, RequireAuth,
    SslCertMode, SslMode, TlsVersion, host_list,
};

fn parse(s: &str) -> Config {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn refused(s: &str) -> String {
    let e = s
        .parse::<Config>()
        .err()
        .unwrap_or_else(|| panic!("{s} was accepted"));
    assert_eq!(e.kind(), ErrorKind::Config, "{s}: {e}");
    e.to_string()
}

/// A valid value for each keyword, to show every one is accepted.
fn sample(key: &str) -> &'static str {
    match key {
        "port" => "5433",
        "hostaddr" => "127.0.0.1",
        "connect_timeout"
        | "keepalives"
        | "keepalives_idle"
        | "keepalives_interval"
        | "keepalives_count"
        | "tcp_user_timeout"
        | "sslsni"
        | "sslcompression"
        | "requiressl" => "1",
        "sslmode" => "require",
        "sslnegotiation" => "postgres",
        "channel_binding" => "prefer",
        "sslcertmode" => "allow",
        "require_auth" => "scram-sha-256",
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => "TLSv1.3",
        "min_protocol_version" | "max_protocol_version" => "3.2",
        "gssencmode" => "disable",
        "replication" => "database",
        "target_session_attrs" => "read-write",
        "load_balance_hosts" => "random",
        "client_encoding" => "UTF8",
        "service" => "",
        _ => "x",
    }
}

#[test]
fn every_keyword_is_accepted_and_every_refused_one_names_itself() {
    for key in KEYWORDS {
        let s = format!("{key}='{}'", sample(key));
        s.parse::<Config>()
            .unwrap_or_else(|e| panic!("{key} refused: {e}"));
    }
    for key in REFUSED_KEYWORDS {
        let why = refused(&format!("{key}=x"));
        assert!(
            why.contains(&format!("{key:?} is not supported")),
            "{key}: {why}"
        );
    }
    assert!(refused("bogus_option=1").contains("unknown connection option \"bogus_option\""));
    let e = Config::new()
        .apply_env(|k| (k == "PGGSSDELEGATION").then(|| "1".to_owned()))
        .unwrap_err();
    assert!(
        e.to_string().contains("PGGSSDELEGATION")
            && e.to_string().contains("\"gssdelegation\" is not supported"),
        "{e}"
    );
}

#[test]
fn protocol_versions_as_libpq_18() {
    use pg_transport::connect::ProtocolVersion::{V3_0, V3_2};
    assert_eq!(
        Config::new().protocol_versions(),
        (V3_0, V3_0),
        "3.0 by default"
    );
    assert_eq!(
        parse("max_protocol_version=latest").protocol_versions(),
        (V3_0, V3_2)
    );
    assert_eq!(
        parse("max_protocol_version=3.2").protocol_versions(),
        (V3_0, V3_2)
    );
    assert_eq!(
        parse("min_protocol_version=3.2").protocol_versions(),
        (V3_2, V3_2),
        "a min above 3.0 makes the default max the latest"
    );
    assert_eq!(
        parse("min_protocol_version=3.0 max_protocol_version=3.0").protocol_versions(),
        (V3_0, V3_0)
    );
    assert!(refused("max_protocol_version=3.1").contains("protocol 3.1 never existed"));
    assert!(refused("min_protocol_version=4.0").contains("expected 3.0, 3.2 or latest"));
    let why = refused("min_protocol_version=3.2 max_protocol_version=3.0");
    assert!(
        why.contains("\"min_protocol_version\" is greater than \"max_protocol_version\""),
        "{why}"
    );
    let mut c = Config::new();
    c.apply_env(|k| (k == "PGMAXPROTOCOLVERSION").then(|| "latest".to_owned()))
        .unwrap();
    assert_eq!(c.max_protocol_version, Some(V3_2));
}

#[test]
fn require_auth_lists() {
    use AuthRequirement::*;
    let c = parse("require_auth=scram-sha-256");
    assert!(c.require_auth.allows(ScramSha256));
    for m in [None, Password, Md5, Gss, Sspi] {
        assert!(!c.require_auth.allows(m), "{m:?}");
    }
    let c = parse("require_auth=scram-sha-256,none");
    assert!(c.require_auth.allows(None) && !c.require_auth.allows(Md5));
    let c = parse("require_auth=!password,!md5");
    assert!(!c.require_auth.allows(Password) && !c.require_auth.allows(Md5));
    assert!(c.require_auth.allows(None) && c.require_auth.allows(ScramSha256));
    let c = parse("require_auth=!none");
    assert!(!c.require_auth.allows(None) && c.require_auth.allows(Password));
    assert!(parse("require_auth=''").require_auth.is_any());
    assert_eq!(
        parse("require_auth=md5,password").require_auth,
        RequireAuth::only(&[Md5, Password]),
    );
    assert_eq!(
        parse("require_auth=!md5").require_auth,
        RequireAuth::except(&[Md5]),
    );
    for (bad, says) in [
        (
            "password,!md5",
            "negative require_auth method \"!md5\" cannot be mixed with non-negative methods",
        ),
        (
            "!md5,password",
            "require_auth method \"password\" cannot be mixed with negative methods",
        ),
        (
            "md5,md5",
            "require_auth method \"md5\" is specified more than once",
        ),
        ("trust", "invalid require_auth value: \"trust\""),
        // libpq splits on commas only: a space is part of the name.
        ("password, md5", "invalid require_auth value: \" md5\""),
        ("password,", "invalid require_auth value: \"\""),
    ] {
        let why = refused(&format!("require_auth='{bad}'"));
        assert!(why.contains(says), "{bad}: {why}");
    }
}

#[test]
fn tls_settings() {
    let c = parse(
        "sslcrl=/etc/crl.pem sslcrldir=/etc/crls ssl_min_protocol_version=TLSv1.2 \
         ssl_max_protocol_version=TLSv1.3 sslcertmode=require sslsni=0 sslpassword=pw",
    );
    assert_eq!(c.ssl_crl, Some(PathBuf::from("/etc/crl.pem")));
    assert_eq!(c.ssl_crl_dir, Some(PathBuf::from("/etc/crls")));
    assert_eq!(c.ssl_min_protocol_version, Some(TlsVersion::Tls12));
    assert_eq!(c.ssl_max_protocol_version, Some(TlsVersion::Tls13));
    assert_eq!(c.ssl_cert_mode, SslCertMode::Require);
    assert!(!c.ssl_sni);
    assert!(Config::new().ssl_sni, "SNI is on by default");
    assert!(
        !format!("{c:?}").contains("pw\""),
        "sslpassword is redacted"
    );
    for empty in [
        "sslcrl",
        "sslcrldir",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "passfile",
        "servicefile",
    ] {
        let c = parse(&format!("{empty}=''"));
        assert_eq!(c, Config::new(), "{empty}: empty means unset, as in libpq");
    }
    for v in ["TLSv1", "TLSv1.1"] {
        let why = refused(&format!("ssl_min_protocol_version={v}"));
        assert!(why.contains("before 1.2 are not supported"), "{why}");
    }
    assert!(refused("ssl_max_protocol_version=SSLv3").contains("expected TLSv1.2 or TLSv1.3"));
    let why = refused("ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2");
    assert!(why.contains("invalid SSL protocol version range"), "{why}");
    // The same range built in code is refused the same way, when used.
    let mut c = Config::new();
    c.ssl_min_protocol_version = Some(TlsVersion::Tls13);
    c.ssl_max_protocol_version = Some(TlsVersion::Tls12);
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("invalid SSL protocol version range")
    );
    assert!(refused("sslcertmode=always").contains("sslcertmode"));
    assert!(refused("sslsni=yes").contains("sslsni"));
}

#[test]
fn settings_without_support_are_refused_by_value() {
    assert_eq!(
        parse("gssencmode=disable").gss_enc_mode,
        GssEncMode::Disable
    );
    assert_eq!(Config::new().gss_enc_mode, GssEncMode::Prefer);
    let why = refused("gssencmode=require");
    assert!(
        why.contains("gssencmode") && why.contains("not supported"),
        "{why}"
    );
    for ok in ["UTF8", "utf-8", "Unicode"] {
        parse(&format!("client_encoding={ok}"));
    }
    for bad in ["LATIN1", "auto", "SQL_ASCII"] {
        let why = refused(&format!("client_encoding={bad}"));
        assert!(why.contains("only UTF8 is supported"), "{bad}: {why}");
    }
    assert_eq!(
        parse("replication=true").replication,
        Some(Replication::Physical)
    );
    assert_eq!(
        parse("replication=on").replication,
        Some(Replication::Physical)
    );
    assert_eq!(
        parse("replication=database").replication,
        Some(Replication::Database)
    );
    assert_eq!(parse("replication=off").replication, None);
    assert!(refused("replication=maybe").contains("replication"));
    assert_eq!(parse("requiressl=1").ssl_mode, SslMode::Require);
    assert_eq!(parse("requiressl=0").ssl_mode, SslMode::Prefer);
}

#[test]
fn uri_forms_libpq_accepts() {
    let c = parse("postgresql://[2001:db8::1]:5433,[::1],[fe80::1%25eth0]:7/db");
    assert_eq!(c.hosts, ["2001:db8::1", "::1", "fe80::1%eth0"]);
    assert_eq!(c.ports, [5433, 5432, 7]);
    let c = parse("postgres://%2Fvar%2Frun%2Fpostgresql:5433/db");
    assert_eq!(c.hosts, ["/var/run/postgresql"]);
    assert_eq!(
        host_list(&c)[0].display_host(),
        "/var/run/postgresql/.s.PGSQL.5433"
    );
    let c = parse("postgresql://h/db?host=/tmp&port=6000");
    assert_eq!(
        (c.hosts.as_slice(), c.ports.as_slice()),
        (&["/tmp".to_owned()][..], &[6000][..])
    );
    let c = parse("postgresql:///db");
    assert!(c.hosts.is_empty());
    assert_eq!(c.dbname.as_deref(), Some("db"));
    // An empty host with a port: the default host, as libpq.
    let c = parse("postgresql://:5433/db");
    let h = &host_list(&c)[0];
    assert_eq!(h.port, 5433);
    assert_eq!(
        h.host,
        host_list(&Config::new())[0].host,
        "the default host"
    );
    let c = parse("postgresql://u:p%40ss:w@h/d%2Fb?hostaddr=::1&ssl=true&");
    assert_eq!(
        (c.user.as_deref(), c.password.as_deref()),
        (Some("u"), Some("p@ss:w"))
    );
    assert_eq!(c.dbname.as_deref(), Some("d/b"));
    assert_eq!(c.hostaddrs, [Some("::1".parse().unwrap())]);
    assert_eq!(c.ssl_mode, SslMode::Require);
    // PostgreSQL 17+: spaces around a component are dropped.
    assert_eq!(parse("postgresql://h/ db ").dbname.as_deref(), Some("db"));
    assert_eq!(
        parse("postgresql://h/my%20db").dbname.as_deref(),
        Some("my db")
    );
    // key=value: an IPv6 hostaddr without brackets.
    assert_eq!(
        parse("hostaddr=fe80::2 host=h").hostaddrs,
        [Some("fe80::2".parse().unwrap())]
    );
}

#[test]
fn uri_forms_libpq_refuses() {
    for (bad, says) in [
        ("postgresql://[]/db", "IPv6 host address may not be empty"),
        ("postgresql://[::1/db", "unterminated IPv6 address"),
        (
            "postgresql://[::1]x/db",
            "unexpected \"x\" after IPv6 address",
        ),
        ("postgresql://h/db?sslmode", "missing key/value separator"),
        (
            "postgresql://h/db?&sslmode=require",
            "missing key/value separator",
        ),
        (
            "postgresql://h/db?application_name=a=b",
            "extra key/value separator",
        ),
        ("postgresql://h/d%zzb", "invalid percent-encoded token"),
        ("postgresql://h/d%2", "invalid percent-encoded token"),
        ("postgresql://h/d%00b", "forbidden value %00"),
        ("postgresql://h/my db", "unexpected spaces found"),
        (
            "postgresql://h/db?nosuch=1",
            "unknown connection option \"nosuch\"",
        ),
        (
            "postgresql://h/db?ssl=yes",
            "unknown connection option \"ssl\"",
        ),
        ("postgresql://h:port/db", "invalid port"),
        ("hostaddr=[::1]", "not a numeric IP address"),
    ] {
        let why = refused(bad);
        assert!(why.contains(says), "{bad}: {why}");
    }
}

/// A service file in a fresh temporary directory.
fn service_file(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pgt-service-{}-{}",
        std::process::id(),
        text.len() ^ text.bytes().map(usize::from).sum::<usize>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pg_service.conf");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn service_file_fills_what_is_unset() {
    let file = service_file(
        "# comment\n[other]\nhost=wrong\n\n[mydb]\nhost=svc-host\nport=6001\nuser=svc-user\n\
         sslmode=verify-full\nuser=second-user\nkeepalives_idle=30\n[after]\nbroken line\n",
    );
    let f = file.display();
    let c = parse(&format!("service=mydb servicefile={f} user=explicit"));
    assert_eq!(c.hosts, ["svc-host"]);
    assert_eq!(c.ports, [6001]);
    assert_eq!(
        c.user.as_deref(),
        Some("explicit"),
        "the string wins over the service"
    );
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert_eq!(c.keepalive.idle, Some(Duration::from_secs(30)));
    // The service wins over the environment; the first occurrence of a key wins.
    let mut c = parse(&format!("servicefile={f}"));
    c.apply_env(|k| match k {
        "PGSERVICE" => Some("mydb".to_owned()),
        "PGHOST" => Some("env-host".to_owned()),
        "PGDATABASE" => Some("env-db".to_owned()),
        _ => None,
    })
    .unwrap();
    assert_eq!(c.hosts, ["svc-host"]);
    assert_eq!(c.user.as_deref(), Some("svc-user"));
    assert_eq!(
        c.dbname.as_deref(),
        Some("env-db"),
        "the environment fills the rest"
    );
    // A Config built in code with a service means the same once resolved.
    let mut code = Config::new();
    code.service = Some("mydb".to_owned());
    code.service_file = Some(file.clone());
    let used = code.effective().unwrap();
    assert_eq!(used.hosts, ["svc-host"]);
    assert_eq!(used.ssl_mode, SslMode::VerifyFull);
}

#[test]
fn service_file_errors() {
    let f = service_file("[a]\nhost=x\n[nested]\nservice=a\n[syntax]\nhost\n[spaced]\nhost = x\n");
    let f = f.display();
    let why = refused(&format!("service=missing servicefile={f}"));
    assert!(
        why.contains("definition of service \"missing\" not found"),
        "{why}"
    );
    let why = refused(&format!("service=nested servicefile={f}"));
    assert!(
        why.contains("nested service specifications not supported"),
        "{why}"
    );
    let why = refused(&format!("service=syntax servicefile={f}"));
    assert!(
        why.contains("syntax error in service file") && why.contains("line 6"),
        "{why}"
    );
    let why = refused(&format!("service=spaced servicefile={f}"));
    assert!(why.contains("unknown connection option \"host \""), "{why}");
    let why = refused("service=a servicefile=/nonexistent/pg_service.conf");
    assert!(
        why.contains("/nonexistent/pg_service.conf") && why.contains("cannot be read"),
        "{why}"
    );
}

#[test]
fn code_and_string_mean_the_same() {
    // Zero and one-second values, from code, mean what they mean in a string.
    let mut code = Config::new();
    code.connect_timeout = Some(Duration::from_secs(1));
    assert_eq!(
        code.connect_timeout_used(),
        parse("connect_timeout=1").connect_timeout_used()
    );
    assert_eq!(code.connect_timeout_used(), Some(Duration::from_secs(2)));
    code.connect_timeout = Some(Duration::ZERO);
    assert_eq!(code.connect_timeout_used(), None);
    assert_eq!(parse("connect_timeout=0").connect_timeout_used(), None);
    // A typed require_auth equals the parsed one.
    let mut code = Config::new();
    code.require_auth = RequireAuth::only(&[AuthRequirement::ScramSha256, AuthRequirement::None]);
    code.ssl_cert_mode = SslCertMode::Disable;
    code.ssl_sni = false;
    assert_eq!(
        code,
        parse("require_auth=scram-sha-256,none sslcertmode=disable sslsni=0")
    );
}

/// The README's table names every keyword, accepted or refused.
#[test]
fn the_readme_lists_every_keyword() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("### Every connection option")
        .nth(1)
        .expect("the README's option table");
    for key in KEYWORDS.iter().chain(REFUSED_KEYWORDS) {
        assert!(
            table.contains(&format!("`{key}`")),
            "{key} is not in the README's table"
        );
    }
}
