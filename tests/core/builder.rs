//! Group H (pure): `Config::builder()` means what the equivalent connection
//! string means, and refuses what it cannot use with an error naming the
//! setting.

use std::net::IpAddr;
use std::time::Duration;

use pg_transport::ErrorKind;
use pg_transport::connect::{
    AuthRequirement, ChannelBinding, Config, ConfigBuilder, LoadBalanceHosts, RequireAuth, SslMode,
    SslNegotiation, TargetSessionAttrs,
};

fn parse(s: &str) -> Config {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One case per setter: the builder, and the string that means the same.
type Case = (&'static str, fn(ConfigBuilder) -> ConfigBuilder);

const SAME_AS_STRING: &[Case] = &[
    ("host=db", |b| b.host("db")),
    ("host=a,b", |b| b.host("a").host(" b ")),
    ("host=/run/postgresql", |b| b.host_path("/run/postgresql")),
    ("host=a,b hostaddr=10.0.0.1,", |b| {
        b.host("a")
            .host("b")
            .hostaddr(ip("10.0.0.1"))
            .hostaddr(None)
    }),
    ("host=a,b port=5433,5434", |b| {
        b.host("a").host("b").port(5433).port(5434)
    }),
    ("port=0", |b| b.port(0)),
    ("user=app", |b| b.user("app")),
    ("password=s3cret", |b| b.password("s3cret")),
    ("dbname=orders", |b| b.dbname("orders")),
    ("application_name=loader", |b| b.application_name("loader")),
    ("options='-c search_path=app'", |b| {
        b.options("-c search_path=app")
    }),
    ("sslmode=verify-full", |b| b.sslmode(SslMode::VerifyFull)),
    ("sslmode=disable", |b| b.sslmode(SslMode::Disable)),
    ("sslmode=require sslnegotiation=direct", |b| {
        b.sslmode(SslMode::Require)
            .sslnegotiation(SslNegotiation::Direct)
    }),
    ("sslrootcert=/etc/ca.pem", |b| b.sslrootcert("/etc/ca.pem")),
    ("sslrootcert=system", |b| b.sslrootcert("system")),
    ("sslcert=/c.pem sslkey=/k.pem", |b| {
        b.sslcert("/c.pem").sslkey("/k.pem")
    }),
    ("channel_binding=require", |b| {
        b.channel_binding(ChannelBinding::Require)
    }),
    ("require_auth=scram-sha-256", |b| {
        b.require_auth(RequireAuth::only(&[AuthRequirement::ScramSha256]))
    }),
    ("require_auth=!password", |b| {
        b.require_auth(RequireAuth::except(&[AuthRequirement::Password]))
    }),
    ("target_session_attrs=prefer-standby", |b| {
        b.target_session_attrs(TargetSessionAttrs::PreferStandby)
    }),
    ("load_balance_hosts=random", |b| {
        b.load_balance_hosts(LoadBalanceHosts::Random)
    }),
    ("connect_timeout=7", |b| {
        b.connect_timeout(Duration::from_secs(7))
    }),
    ("keepalives=0", |b| b.keepalives(false)),
    ("keepalives_idle=30", |b| {
        b.keepalives_idle(Duration::from_secs(30))
    }),
    ("keepalives_interval=5", |b| {
        b.keepalives_interval(Duration::from_secs(5))
    }),
    ("keepalives_count=4", |b| b.keepalives_count(4)),
    ("tcp_user_timeout=1500", |b| {
        b.tcp_user_timeout(Duration::from_millis(1500))
    }),
    ("ssl_min_protocol_version=TLSv1.3", |b| {
        b.set("ssl_min_protocol_version", "TLSv1.3")
    }),
    // `set` replaces a list, as a later keyword does in a string.
    ("host=c", |b| b.host("a").set("host", "c")),
];

#[test]
fn h_builder_gives_the_config_the_string_gives() {
    let default = Config::default();
    for (string, build) in SAME_AS_STRING {
        let built = build(Config::builder())
            .build()
            .unwrap_or_else(|e| panic!("{string}: {e}"));
        assert_eq!(built, parse(string), "{string}");
        // A case whose string means nothing would let a setter that drops its
        // value pass.
        assert_ne!(built, default, "{string}");
    }
}

#[test]
fn h_builder_zero_means_what_zero_means_in_a_string() {
    let zero = Config::builder()
        .connect_timeout(Duration::ZERO)
        .keepalives_idle(Duration::ZERO)
        .keepalives_interval(Duration::ZERO)
        .keepalives_count(0)
        .tcp_user_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let string = "connect_timeout=0 keepalives_idle=0 keepalives_interval=0 \
                  keepalives_count=0 tcp_user_timeout=0";
    assert_eq!(zero, parse(string));
    assert_eq!(zero, Config::default());
    // Shorter than a second only code can ask for; it is kept as given.
    let short = Config::builder()
        .connect_timeout(Duration::from_millis(250))
        .build()
        .unwrap();
    assert_eq!(short.connect_timeout, Some(Duration::from_millis(250)));
    assert_eq!(
        short.connect_timeout_used(),
        Some(Duration::from_millis(250))
    );
}

/// The message `builder` fails with; each must be a config error.
fn refusal(builder: ConfigBuilder) -> String {
    let e = builder.build().expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    e.to_string()
}

#[test]
fn h_builder_refuses_a_value_naming_the_setting() {
    let cases = [
        (
            Config::builder().host("a,b"),
            r#"invalid value for host: "a,b" (a comma separates hosts: call host() once per host)"#,
        ),
        (
            Config::builder().host_path("run/postgresql"),
            r#"invalid value for host: "run/postgresql" (a Unix-socket directory must be an absolute path)"#,
        ),
        (
            Config::builder().keepalives_idle(Duration::from_millis(1500)),
            r#"invalid value for keepalives_idle: "1.5s" (whole seconds only)"#,
        ),
        (
            Config::builder().keepalives_interval(Duration::from_secs(1 << 32)),
            r#"invalid value for keepalives_interval: "4294967296" (must be between 0 and 4294967295)"#,
        ),
        (
            Config::builder().tcp_user_timeout(Duration::from_micros(1500)),
            r#"invalid value for tcp_user_timeout: "1.5ms" (whole milliseconds only)"#,
        ),
        (
            Config::builder().tcp_user_timeout(Duration::from_secs(5_000_000)),
            r#"invalid value for tcp_user_timeout: "5000000000" (must be between 0 and 4294967295)"#,
        ),
        (
            Config::builder().set("sslmode", "verify"),
            r#"invalid value for sslmode: "verify" (expected disable, allow, prefer, require, verify-ca or verify-full)"#,
        ),
        (
            Config::builder().set("sslmod", "require"),
            r#"unknown connection option "sslmod""#,
        ),
        (
            Config::builder().set("gssdelegation", "1"),
            r#"connection option "gssdelegation" is not supported by this library: GSSAPI is not supported"#,
        ),
    ];
    for (builder, message) in cases {
        assert_eq!(refusal(builder), message);
    }
}

#[cfg(unix)]
#[test]
fn h_builder_refuses_a_socket_directory_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
    assert_eq!(
        refusal(Config::builder().host_path(dir)),
        "invalid value for host: \"/tmp/\u{fffd}\" (not UTF-8)"
    );
}

#[test]
fn h_builder_refuses_what_validate_refuses() {
    let cases = [
        (
            Config::builder()
                .host("a")
                .host("b")
                .hostaddr(ip("10.0.0.1")),
            "could not match 2 host names to 1 hostaddr values",
        ),
        (
            Config::builder()
                .host("a")
                .host("b")
                .port(1)
                .port(2)
                .port(3),
            "could not match 3 port numbers to 2 hosts",
        ),
        (
            Config::builder().sslnegotiation(SslNegotiation::Direct),
            "weak sslmode Prefer may not be used with sslnegotiation=direct (use require, verify-ca, or verify-full)",
        ),
        (
            Config::builder()
                .sslrootcert("system")
                .sslmode(SslMode::Require),
            "weak sslmode Require may not be used with sslrootcert=system (use verify-full)",
        ),
        (
            Config::builder()
                .set("min_protocol_version", "3.2")
                .set("max_protocol_version", "3.0"),
            "\"min_protocol_version\" is greater than \"max_protocol_version\" (3.2 > 3.0)",
        ),
    ];
    for (builder, message) in cases {
        assert_eq!(refusal(builder), message);
    }
}

#[test]
fn h_builder_reports_the_first_refusal_and_later_setters_do_not_clear_it() {
    let e = refusal(
        Config::builder()
            .set("port", "x")
            .set("sslmode", "nope")
            .set("port", "5432"),
    );
    assert_eq!(e, r#"invalid value for port: "x" (not a port number)"#);
}

#[test]
fn h_builder_result_takes_the_environment_only_on_request() {
    // The builder reads no PG* variable (it starts from `Config::new()`); the
    // documented way to add them fills only what the builder left unset.
    let mut config = Config::builder().user("app").build().unwrap();
    config
        .apply_env(|k| match k {
            "PGUSER" => Some("other".to_owned()),
            "PGDATABASE" => Some("db".to_owned()),
            _ => None,
        })
        .unwrap();
    assert_eq!(config, parse("user=app dbname=db"));
}

#[test]
fn h_builder_reads_a_named_service_as_a_string_does() {
    let file =
        std::env::temp_dir().join(format!("pg-transport-builder-{}.conf", std::process::id()));
    std::fs::write(&file, "[app]\nhost=svc\nport=6000\n").unwrap();
    let servicefile = file.to_str().unwrap();
    let built = Config::builder()
        .set("servicefile", servicefile)
        .set("service", "app")
        .port(7000)
        .build();
    let string = format!("servicefile={servicefile} service=app port=7000").parse::<Config>();
    std::fs::remove_file(&file).unwrap();
    let built = built.unwrap();
    assert_eq!(built, string.unwrap());
    // The service filled the host; the builder's port won, as a string's does.
    assert_eq!(
        (built.hosts, built.ports),
        (vec!["svc".to_owned()], vec![7000])
    );
}
