//! The libpq keywords: what each one sets ([`Config::set`]), when one
//! counts as unset (for the service file and the environment), and the PG*
//! variables.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use super::config::{
    ChannelBinding, Config, GssEncMode, LoadBalanceHosts, Replication, SslCertMode, SslMode,
    SslNegotiation, TargetSessionAttrs, TlsVersion,
};
use crate::error::Error;
use crate::protocol::frontend::ProtocolVersion;
use crate::session::RequireAuth;

impl Config {
    /// Fills every setting still unset from `env` (PGHOST, PGPORT, PGUSER, ...).
    ///
    /// # Errors
    /// A config error naming the variable and its value.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        // libpq's order: the connection string, then the service, then the
        // other variables (the service's own variable never counts as unset
        // below, so it is read only here).
        if self.service.is_none() {
            self.service = env("PGSERVICE").filter(|s| !s.is_empty());
        }
        super::service::apply(self, &env)?;
        let fresh = Self::default();
        for keyword in TABLE {
            let Some(var) = keyword.env else { continue };
            let Some(value) = env(var) else { continue };
            if (keyword.unset)(self, &fresh) {
                self.set(keyword.name, &value)
                    .map_err(|e| Error::config(format!("environment variable {var}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Whether `key` still has its default here (`fresh` is a default
    /// config), so the service file or the environment may set it. Settings
    /// with no field, and refused ones, always count as unset: the
    /// environment may always give them, and a refused value is refused from
    /// there too. Unknown keys never do.
    pub(super) fn is_unset(&self, key: &str, fresh: &Self) -> bool {
        keyword(key).is_some_and(|k| (k.unset)(self, fresh))
    }

    /// Sets one libpq keyword.
    ///
    /// # Errors
    /// A config error naming the key and value: unknown key, a number or enum
    /// value that does not parse, a negative keepalive setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let keyword = keyword(key)
            .ok_or_else(|| Error::config(format!("unknown connection option {key:?}")))?;
        match keyword.set {
            Set::Value(set) => set(self, value).map_err(|why| invalid_value(key, value, &why)),
            Set::Text(field) => {
                *field(self) = Some(value.to_owned());
                Ok(())
            }
            Set::Path(field) => {
                *field(self) = path(value);
                Ok(())
            }
            Set::Ignored => Ok(()),
            Set::Refused(why) => Err(Error::config(format!(
                "connection option {key:?} is not supported by this library{why}"
            ))),
        }
    }
}

/// Why a value is bad, for [`invalid_value`].
type Why = Cow<'static, str>;

/// The error for a value `key` cannot take, naming both; also used by the
/// builder's typed setters, so that both say it the same way.
pub(super) fn invalid_value(key: &str, value: &str, why: &str) -> Error {
    Error::config(format!("invalid value for {key}: {value:?} ({why})"))
}

/// How a keyword takes a value.
enum Set {
    /// Parses the value into the config; `Err` says why it is bad.
    Value(fn(&mut Config, &str) -> Result<(), Why>),
    /// The value as is, into this field.
    Text(fn(&mut Config) -> &mut Option<String>),
    /// A path into this field; empty means unset, as in libpq.
    Path(fn(&mut Config) -> &mut Option<PathBuf>),
    /// Accepted and ignored: one of libpq's own no-ops here.
    Ignored,
    /// Refused whatever the value, with this reason after the error.
    Refused(&'static str),
}

/// One libpq keyword: its name, its PG* variable, how a value sets it, and
/// how to tell it unset (the second config is a default one).
struct Keyword {
    name: &'static str,
    env: Option<&'static str>,
    set: Set,
    unset: fn(&Config, &Config) -> bool,
}

/// A row of [`TABLE`].
const fn kw(
    name: &'static str,
    env: Option<&'static str>,
    set: Set,
    unset: fn(&Config, &Config) -> bool,
) -> Keyword {
    Keyword {
        name,
        env,
        set,
        unset,
    }
}

fn keyword(name: &str) -> Option<&'static Keyword> {
    TABLE.iter().find(|k| k.name == name)
}

/// Never unset: `service` is applied first, by [`Config::apply_env`].
fn never(_: &Config, _: &Config) -> bool {
    false
}

/// No field, or refused: the environment may always give it.
fn always(_: &Config, _: &Config) -> bool {
    true
}

/// Every libpq keyword, in libpq's order, the refused ones last. A row is:
/// name, PG* variable, how a value sets it, whether it is still unset.
// One row per keyword reads as a table; rustfmt would spread every row over
// five lines and the file past 600.
#[rustfmt::skip]
const TABLE: &[Keyword] = &[
    kw("service", Some("PGSERVICE"), Set::Value(|c, v| {
        c.service = Some(v.to_owned()).filter(|v| !v.is_empty());
        Ok(())
    }), never),
    kw("user", Some("PGUSER"), Set::Text(|c| &mut c.user), |c, _| c.user.is_none()),
    kw("password", Some("PGPASSWORD"), Set::Text(|c| &mut c.password), |c, _| c.password.is_none()),
    kw("passfile", Some("PGPASSFILE"), Set::Path(|c| &mut c.passfile), |c, _| c.passfile.is_none()),
    kw("channel_binding", Some("PGCHANNELBINDING"), Set::Value(|c, v| {
        let options = [
            ("disable", ChannelBinding::Disable),
            ("prefer", ChannelBinding::Prefer),
            ("require", ChannelBinding::Require),
        ];
        c.channel_binding = choice(v, &options, "expected disable, prefer or require")?;
        Ok(())
    }), |c, f| c.channel_binding == f.channel_binding),
    kw("connect_timeout", Some("PGCONNECT_TIMEOUT"), Set::Value(|c, v| {
        // libpq: 0 or negative waits forever (1 s becomes 2 s when used:
        // `Config::connect_timeout_used`).
        let secs: i64 = v.trim().parse().map_err(|_| "not a number of seconds")?;
        c.connect_timeout = u64::try_from(secs).ok().filter(|&s| s > 0).map(Duration::from_secs);
        Ok(())
    }), |c, _| c.connect_timeout.is_none()),
    kw("dbname", Some("PGDATABASE"), Set::Text(|c| &mut c.dbname), |c, _| c.dbname.is_none()),
    kw("host", Some("PGHOST"), Set::Value(|c, v| {
        c.hosts = split_list(v);
        Ok(())
    }), |c, _| c.hosts.is_empty()),
    kw("hostaddr", Some("PGHOSTADDR"), Set::Value(|c, v| {
        c.hostaddrs = split_list(v)
            .into_iter()
            .map(|a| if a.is_empty() { Ok(None) } else { a.parse().map(Some) })
            .collect::<Result<_, _>>()
            .map_err(|_| "not a numeric IP address")?;
        Ok(())
    }), |c, _| c.hostaddrs.is_empty()),
    kw("port", Some("PGPORT"), Set::Value(|c, v| {
        c.ports = split_list(v)
            .into_iter()
            .map(|p| if p.is_empty() { Ok(5432) } else { p.parse::<u16>() })
            .collect::<Result<_, _>>()
            .map_err(|_| "not a port number")?;
        Ok(())
    }), |c, _| c.ports.is_empty()),
    kw("client_encoding", Some("PGCLIENTENCODING"), Set::Value(|_, v| {
        // Text is decoded as UTF-8 everywhere in this library, so the startup
        // packet always asks for UTF8; another encoding would be quietly
        // replaced, so it is refused instead.
        let name: String = v.chars().filter(char::is_ascii_alphanumeric).collect();
        match name.to_ascii_lowercase().as_str() {
            "utf8" | "unicode" => Ok(()),
            _ => Err("only UTF8 is supported: this library decodes all text as UTF-8".into()),
        }
    }), always),
    kw("options", Some("PGOPTIONS"), Set::Text(|c| &mut c.options), |c, _| c.options.is_none()),
    kw("application_name", Some("PGAPPNAME"), Set::Text(|c| &mut c.application_name),
        |c, _| c.application_name.is_none()),
    kw("fallback_application_name", None, Set::Value(|c, v| {
        if c.application_name.is_none() {
            c.application_name = Some(v.to_owned());
        }
        Ok(())
    }), |c, _| c.application_name.is_none()),
    kw("keepalives", None, Set::Value(|c, v| {
        c.keepalive.enabled = parse_count(v)? != 0;
        Ok(())
    }), |c, f| c.keepalive.enabled == f.keepalive.enabled),
    kw("keepalives_idle", None, Set::Value(|c, v| {
        c.keepalive.idle = seconds(parse_count(v)?);
        Ok(())
    }), |c, _| c.keepalive.idle.is_none()),
    kw("keepalives_interval", None, Set::Value(|c, v| {
        c.keepalive.interval = seconds(parse_count(v)?);
        Ok(())
    }), |c, _| c.keepalive.interval.is_none()),
    kw("keepalives_count", None, Set::Value(|c, v| {
        c.keepalive.count = Some(parse_count(v)?).filter(|&n| n != 0);
        Ok(())
    }), |c, _| c.keepalive.count.is_none()),
    kw("tcp_user_timeout", None, Set::Value(|c, v| {
        let ms = Duration::from_millis(u64::from(parse_count(v)?));
        c.tcp_user_timeout = Some(ms).filter(|d| !d.is_zero());
        Ok(())
    }), |c, _| c.tcp_user_timeout.is_none()),
    kw("sslmode", Some("PGSSLMODE"), Set::Value(|c, v| {
        let options = [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ];
        let expected = "expected disable, allow, prefer, require, verify-ca or verify-full";
        c.ssl_mode = choice(v, &options, expected)?;
        Ok(())
    }), |c, f| c.ssl_mode == f.ssl_mode),
    // libpq's legacy spelling, still accepted in strings and URLs.
    kw("requiressl", None, Set::Value(|c, v| {
        c.ssl_mode = if v.starts_with('1') { SslMode::Require } else { SslMode::Prefer };
        Ok(())
    }), |c, f| c.ssl_mode == f.ssl_mode),
    kw("sslnegotiation", Some("PGSSLNEGOTIATION"), Set::Value(|c, v| {
        let options = [("postgres", SslNegotiation::Postgres), ("direct", SslNegotiation::Direct)];
        c.ssl_negotiation = choice(v, &options, "expected postgres or direct")?;
        Ok(())
    }), |c, f| c.ssl_negotiation == f.ssl_negotiation),
    // libpq's own no-op: TLS compression is never used (libpq 14+).
    kw("sslcompression", Some("PGSSLCOMPRESSION"), Set::Ignored, always),
    kw("sslcert", Some("PGSSLCERT"), Set::Path(|c| &mut c.ssl_cert), |c, _| c.ssl_cert.is_none()),
    kw("sslkey", Some("PGSSLKEY"), Set::Path(|c| &mut c.ssl_key), |c, _| c.ssl_key.is_none()),
    kw("sslcertmode", Some("PGSSLCERTMODE"), Set::Value(|c, v| {
        let options = [
            ("disable", SslCertMode::Disable),
            ("allow", SslCertMode::Allow),
            ("require", SslCertMode::Require),
        ];
        c.ssl_cert_mode = choice(v, &options, "expected disable, allow or require")?;
        Ok(())
    }), |c, f| c.ssl_cert_mode == f.ssl_cert_mode),
    kw("sslpassword", None, Set::Text(|c| &mut c.ssl_password), |c, _| c.ssl_password.is_none()),
    kw("sslrootcert", Some("PGSSLROOTCERT"), Set::Path(|c| &mut c.ssl_root_cert),
        |c, _| c.ssl_root_cert.is_none()),
    kw("sslcrl", Some("PGSSLCRL"), Set::Path(|c| &mut c.ssl_crl), |c, _| c.ssl_crl.is_none()),
    kw("sslcrldir", Some("PGSSLCRLDIR"), Set::Path(|c| &mut c.ssl_crl_dir),
        |c, _| c.ssl_crl_dir.is_none()),
    kw("sslsni", Some("PGSSLSNI"), Set::Value(|c, v| {
        c.ssl_sni = choice(v.trim(), &[("0", false), ("1", true)], "expected 0 or 1")?;
        Ok(())
    }), |c, f| c.ssl_sni == f.ssl_sni),
    kw("requirepeer", Some("PGREQUIREPEER"), Set::Value(|c, v| {
        c.require_peer = Some(v.to_owned()).filter(|v| !v.is_empty());
        Ok(())
    }), |c, _| c.require_peer.is_none()),
    kw("require_auth", Some("PGREQUIREAUTH"), Set::Value(|c, v| {
        c.require_auth = RequireAuth::parse(v)?;
        Ok(())
    }), |c, _| c.require_auth.is_any()),
    kw("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION"), Set::Value(|c, v| {
        c.ssl_min_protocol_version = tls_version(v)?;
        Ok(())
    }), |c, _| c.ssl_min_protocol_version.is_none()),
    kw("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION"), Set::Value(|c, v| {
        c.ssl_max_protocol_version = tls_version(v)?;
        Ok(())
    }), |c, _| c.ssl_max_protocol_version.is_none()),
    kw("min_protocol_version", Some("PGMINPROTOCOLVERSION"), Set::Value(|c, v| {
        c.min_protocol_version = protocol_version(v)?;
        Ok(())
    }), |c, _| c.min_protocol_version.is_none()),
    kw("max_protocol_version", Some("PGMAXPROTOCOLVERSION"), Set::Value(|c, v| {
        c.max_protocol_version = protocol_version(v)?;
        Ok(())
    }), |c, _| c.max_protocol_version.is_none()),
    kw("gssencmode", Some("PGGSSENCMODE"), Set::Value(|c, v| {
        c.gss_enc_mode = match v {
            "disable" => GssEncMode::Disable,
            "prefer" => GssEncMode::Prefer,
            "require" => return Err(GSSENC_REQUIRE.into()),
            _ => return Err("expected disable, prefer or require".into()),
        };
        Ok(())
    }), |c, f| c.gss_enc_mode == f.gss_enc_mode),
    // libpq's own no-ops here: Kerberos settings matter only to GSSAPI
    // authentication (refused by this library, as by a libpq built without it).
    kw("krbsrvname", Some("PGKRBSRVNAME"), Set::Ignored, always),
    kw("gsslib", Some("PGGSSLIB"), Set::Ignored, always),
    kw("replication", None, Set::Value(|c, v| {
        c.replication = match v.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(Replication::Physical),
            "database" => Some(Replication::Database),
            "false" | "off" | "no" | "0" => None,
            _ => return Err("expected true, false or database".into()),
        };
        Ok(())
    }), |c, _| c.replication.is_none()),
    kw("target_session_attrs", Some("PGTARGETSESSIONATTRS"), Set::Value(|c, v| {
        let options = [
            ("any", TargetSessionAttrs::Any),
            ("read-write", TargetSessionAttrs::ReadWrite),
            ("read-only", TargetSessionAttrs::ReadOnly),
            ("primary", TargetSessionAttrs::Primary),
            ("standby", TargetSessionAttrs::Standby),
            ("prefer-standby", TargetSessionAttrs::PreferStandby),
        ];
        let expected = "expected any, read-write, read-only, primary, standby or prefer-standby";
        c.target_session_attrs = choice(v, &options, expected)?;
        Ok(())
    }), |c, f| c.target_session_attrs == f.target_session_attrs),
    kw("load_balance_hosts", Some("PGLOADBALANCEHOSTS"), Set::Value(|c, v| {
        let options = [("disable", LoadBalanceHosts::Disable), ("random", LoadBalanceHosts::Random)];
        c.load_balance_hosts = choice(v, &options, "expected disable or random")?;
        Ok(())
    }), |c, f| c.load_balance_hosts == f.load_balance_hosts),
    kw("servicefile", Some("PGSERVICEFILE"), Set::Path(|c| &mut c.service_file),
        |c, _| c.service_file.is_none()),
    // Refused: set from the environment, they are refused too.
    kw("scram_client_key", None, Set::Refused(": pass the password instead"), always),
    kw("scram_server_key", None, Set::Refused(": pass the password instead"), always),
    kw("gssdelegation", Some("PGGSSDELEGATION"), Set::Refused(": GSSAPI is not supported"), always),
    kw("oauth_issuer", None, Set::Refused(OAUTH), always),
    kw("oauth_client_id", None, Set::Refused(OAUTH), always),
    kw("oauth_client_secret", None, Set::Refused(OAUTH), always),
    kw("oauth_scope", None, Set::Refused(OAUTH), always),
    kw("sslkeylogfile", None, Set::Refused(": writing TLS keys to a file is not implemented"), always),
];

const OAUTH: &str = ": OAuth authentication is not implemented";
const GSSENC_REQUIRE: &str = "GSSAPI encryption is not supported by this library; use gssencmode=disable or prefer, and TLS (sslmode) for encryption";

/// Every keyword [`Config::set`] accepts (each has its libpq effect, or is
/// one of libpq's own no-ops without GSSAPI), in libpq's order.
pub const KEYWORDS: &[&str] = &names::<{ count(false) }>(false);

/// libpq keywords [`Config::set`] refuses, each with an error saying why.
pub const REFUSED_KEYWORDS: &[&str] = &names::<{ count(true) }>(true);

/// How many keywords of [`TABLE`] are refused (`refused`) or accepted.
const fn count(refused: bool) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        if matches!(TABLE[i].set, Set::Refused(_)) == refused {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The names of the keywords of [`TABLE`] that are refused (`refused`) or
/// accepted, in the table's order.
const fn names<const N: usize>(refused: bool) -> [&'static str; N] {
    let mut out = [""; N];
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        if matches!(TABLE[i].set, Set::Refused(_)) == refused {
            out[n] = TABLE[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

/// One of `options`' names, or `expected`.
fn choice<T: Copy>(value: &str, options: &[(&str, T)], expected: &'static str) -> Result<T, Why> {
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or(Cow::Borrowed(expected))
}

/// A path setting; libpq treats an empty value as unset.
pub(super) fn path(value: impl Into<PathBuf>) -> Option<PathBuf> {
    let path = value.into();
    (!path.as_os_str().is_empty()).then_some(path)
}

/// `ssl_min_protocol_version` / `ssl_max_protocol_version`; empty means no bound.
fn tls_version(value: &str) -> Result<Option<TlsVersion>, &'static str> {
    match value {
        "" => Ok(None),
        "TLSv1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLSv1.3" => Ok(Some(TlsVersion::Tls13)),
        "TLSv1" | "TLSv1.1" => {
            Err("TLS versions before 1.2 are not supported (rustls speaks TLSv1.2 and TLSv1.3)")
        }
        _ => Err("expected TLSv1.2 or TLSv1.3"),
    }
}

/// `min_protocol_version` / `max_protocol_version`: libpq's spellings; empty
/// means the default.
fn protocol_version(value: &str) -> Result<Option<ProtocolVersion>, &'static str> {
    match value {
        "" => Ok(None),
        "3.0" => Ok(Some(ProtocolVersion::V3_0)),
        "3.2" => Ok(Some(ProtocolVersion::V3_2)),
        "latest" => Ok(Some(ProtocolVersion::LATEST)),
        "3.1" => Err("protocol 3.1 never existed (PostgreSQL went from 3.0 to 3.2)"),
        _ => Err("expected 3.0, 3.2 or latest"),
    }
}

/// A comma-separated list (`host`, `hostaddr`, `port`), each entry trimmed.
pub(super) fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_owned()).collect()
}

/// A non-negative integer setting (libpq rejects negative keepalive values).
fn parse_count(value: &str) -> Result<u32, &'static str> {
    let n: i64 = value.trim().parse().map_err(|_| "not an integer")?;
    u32::try_from(n).map_err(|_| "must be between 0 and 4294967295")
}

fn seconds(n: u32) -> Option<Duration> {
    (n != 0).then(|| Duration::from_secs(u64::from(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyword that never counts as unset would be silently dropped from
    /// a service file or the environment.
    #[test]
    fn every_keyword_can_come_from_a_service_file_or_the_environment() {
        let fresh = Config::default();
        for key in KEYWORDS.iter().filter(|k| **k != "service") {
            assert!(fresh.is_unset(key, &fresh), "{key}");
        }
        // One row per keyword and per variable.
        let mut names: Vec<&str> = TABLE.iter().map(|k| k.name).collect();
        let mut vars: Vec<&str> = TABLE.iter().filter_map(|k| k.env).collect();
        let (n, v) = (names.len(), vars.len());
        names.sort_unstable();
        names.dedup();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!((names.len(), vars.len()), (n, v));
        assert_eq!(n, KEYWORDS.len() + REFUSED_KEYWORDS.len());
    }
}
