//! The libpq keywords: what each one sets ([`Config::set`]), when one
//! counts as unset (for the service file and the environment), and the PG*
//! variables.

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
        // other variables.
        if self.service.is_none() {
            self.service = env("PGSERVICE").filter(|s| !s.is_empty());
        }
        super::service::apply(self, &env)?;
        let fresh = Self::default();
        for (var, key) in ENV_VARS {
            let Some(value) = env(var) else { continue };
            if self.is_unset(key, &fresh) {
                self.set(key, &value)
                    .map_err(|e| Error::config(format!("environment variable {var}: {e}")))?;
            }
        }
        Ok(())
    }

    pub(super) fn is_unset(&self, key: &str, fresh: &Self) -> bool {
        match key {
            "host" => self.hosts.is_empty(),
            "hostaddr" => self.hostaddrs.is_empty(),
            "port" => self.ports.is_empty(),
            "user" => self.user.is_none(),
            "password" => self.password.is_none(),
            "dbname" => self.dbname.is_none(),
            "application_name" | "fallback_application_name" => self.application_name.is_none(),
            "options" => self.options.is_none(),
            "connect_timeout" => self.connect_timeout.is_none(),
            "sslmode" | "requiressl" => self.ssl_mode == fresh.ssl_mode,
            "sslnegotiation" => self.ssl_negotiation == fresh.ssl_negotiation,
            "sslrootcert" => self.ssl_root_cert.is_none(),
            "sslcert" => self.ssl_cert.is_none(),
            "sslkey" => self.ssl_key.is_none(),
            "channel_binding" => self.channel_binding == fresh.channel_binding,
            "target_session_attrs" => self.target_session_attrs == fresh.target_session_attrs,
            "load_balance_hosts" => self.load_balance_hosts == fresh.load_balance_hosts,
            "passfile" => self.passfile.is_none(),
            "keepalives" => self.keepalive.enabled == fresh.keepalive.enabled,
            "keepalives_idle" => self.keepalive.idle.is_none(),
            "keepalives_interval" => self.keepalive.interval.is_none(),
            "keepalives_count" => self.keepalive.count.is_none(),
            "tcp_user_timeout" => self.tcp_user_timeout.is_none(),
            "require_auth" => self.require_auth.is_any(),
            "sslcrl" => self.ssl_crl.is_none(),
            "sslcrldir" => self.ssl_crl_dir.is_none(),
            "ssl_min_protocol_version" => self.ssl_min_protocol_version.is_none(),
            "ssl_max_protocol_version" => self.ssl_max_protocol_version.is_none(),
            "min_protocol_version" => self.min_protocol_version.is_none(),
            "max_protocol_version" => self.max_protocol_version.is_none(),
            "sslcertmode" => self.ssl_cert_mode == fresh.ssl_cert_mode,
            "sslsni" => self.ssl_sni == fresh.ssl_sni,
            "requirepeer" => self.require_peer.is_none(),
            "sslpassword" => self.ssl_password.is_none(),
            "gssencmode" => self.gss_enc_mode == fresh.gss_enc_mode,
            "replication" => self.replication.is_none(),
            "servicefile" => self.service_file.is_none(),
            // Settings with no field: the environment may always give them,
            // and a value that is refused is refused from there too.
            "client_encoding" | "krbsrvname" | "gsslib" | "sslcompression" => true,
            key if REFUSED_KEYWORDS.contains(&key) => true,
            _ => false,
        }
    }

    /// Sets one libpq keyword.
    ///
    /// # Errors
    /// A config error naming the key and value: unknown key, a number or enum
    /// value that does not parse, a negative keepalive setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let bad = |why: &str| Error::config(format!("invalid value for {key}: {value:?} ({why})"));
        match key {
            "host" => self.hosts = split_list(value),
            "hostaddr" => {
                self.hostaddrs = split_list(value)
                    .into_iter()
                    .map(|a| {
                        if a.is_empty() {
                            Ok(None)
                        } else {
                            a.parse().map(Some)
                        }
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("not a numeric IP address"))?;
            }
            "port" => {
                self.ports = split_list(value)
                    .into_iter()
                    .map(|p| {
                        if p.is_empty() {
                            Ok(5432)
                        } else {
                            p.parse::<u16>()
                        }
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("not a port number"))?;
            }
            "user" => self.user = Some(value.to_owned()),
            "password" => self.password = Some(value.to_owned()),
            "dbname" => self.dbname = Some(value.to_owned()),
            "application_name" | "fallback_application_name" => {
                if key == "application_name" || self.application_name.is_none() {
                    self.application_name = Some(value.to_owned());
                }
            }
            "options" => self.options = Some(value.to_owned()),
            "connect_timeout" => {
                // libpq: 0 or negative waits forever (1 s becomes 2 s when
                // used: `Config::connect_timeout_used`).
                let secs: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("not a number of seconds"))?;
                self.connect_timeout = u64::try_from(secs)
                    .ok()
                    .filter(|&s| s > 0)
                    .map(Duration::from_secs);
            }
            "sslmode" => {
                self.ssl_mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" => SslMode::Allow,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    _ => {
                        return Err(bad(
                            "expected disable, allow, prefer, require, verify-ca or verify-full",
                        ));
                    }
                }
            }
            "sslnegotiation" => {
                self.ssl_negotiation = match value {
                    "postgres" => SslNegotiation::Postgres,
                    "direct" => SslNegotiation::Direct,
                    _ => return Err(bad("expected postgres or direct")),
                }
            }
            "sslrootcert" => self.ssl_root_cert = path(value),
            "sslcert" => self.ssl_cert = path(value),
            "sslkey" => self.ssl_key = path(value),
            "channel_binding" => {
                self.channel_binding = match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => return Err(bad("expected disable, prefer or require")),
                }
            }
            "keepalives" => self.keepalive.enabled = parse_count(value).map_err(&bad)? != 0,
            "keepalives_idle" => self.keepalive.idle = seconds(parse_count(value).map_err(&bad)?),
            "keepalives_interval" => {
                self.keepalive.interval = seconds(parse_count(value).map_err(&bad)?)
            }
            "keepalives_count" => {
                self.keepalive.count = Some(parse_count(value).map_err(&bad)?).filter(|&c| c != 0)
            }
            "tcp_user_timeout" => {
                let ms = parse_count(value).map_err(&bad)?;
                self.tcp_user_timeout =
                    Some(Duration::from_millis(u64::from(ms))).filter(|d| !d.is_zero());
            }
            "target_session_attrs" => {
                self.target_session_attrs = match value {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    "primary" => TargetSessionAttrs::Primary,
                    "standby" => TargetSessionAttrs::Standby,
                    "prefer-standby" => TargetSessionAttrs::PreferStandby,
                    _ => {
                        return Err(bad(
                            "expected any, read-write, read-only, primary, standby or prefer-standby",
                        ));
                    }
                }
            }
            "load_balance_hosts" => {
                self.load_balance_hosts = match value {
                    "disable" => LoadBalanceHosts::Disable,
                    "random" => LoadBalanceHosts::Random,
                    _ => return Err(bad("expected disable or random")),
                }
            }
            "passfile" => self.passfile = path(value),
            // libpq's legacy spelling, still accepted in strings and URLs.
            "requiressl" => {
                self.ssl_mode = if value.starts_with('1') {
                    SslMode::Require
                } else {
                    SslMode::Prefer
                };
            }
            "require_auth" => self.require_auth = RequireAuth::parse(value).map_err(|e| bad(&e))?,
            "sslcrl" => self.ssl_crl = path(value),
            "sslcrldir" => self.ssl_crl_dir = path(value),
            "ssl_min_protocol_version" => {
                self.ssl_min_protocol_version = tls_version(value).map_err(&bad)?;
            }
            "ssl_max_protocol_version" => {
                self.ssl_max_protocol_version = tls_version(value).map_err(&bad)?;
            }
            "min_protocol_version" => {
                self.min_protocol_version = protocol_version(value).map_err(&bad)?;
            }
            "max_protocol_version" => {
                self.max_protocol_version = protocol_version(value).map_err(&bad)?;
            }
            "sslcertmode" => {
                self.ssl_cert_mode = match value {
                    "disable" => SslCertMode::Disable,
                    "allow" => SslCertMode::Allow,
                    "require" => SslCertMode::Require,
                    _ => return Err(bad("expected disable, allow or require")),
                }
            }
            "sslsni" => {
                self.ssl_sni = match value.trim() {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad("expected 0 or 1")),
                }
            }
            "requirepeer" => self.require_peer = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "sslpassword" => self.ssl_password = Some(value.to_owned()),
            "gssencmode" => {
                self.gss_enc_mode = match value {
                    "disable" => GssEncMode::Disable,
                    "prefer" => GssEncMode::Prefer,
                    "require" => {
                        return Err(bad(
                            "GSSAPI encryption is not supported by this library; use gssencmode=disable or prefer, and TLS (sslmode) for encryption",
                        ));
                    }
                    _ => return Err(bad("expected disable, prefer or require")),
                }
            }
            "replication" => {
                self.replication = match value.to_ascii_lowercase().as_str() {
                    "true" | "on" | "yes" | "1" => Some(Replication::Physical),
                    "database" => Some(Replication::Database),
                    "false" | "off" | "no" | "0" => None,
                    _ => return Err(bad("expected true, false or database")),
                }
            }
            "client_encoding" => {
                // Text is decoded as UTF-8 everywhere in this library, so the
                // startup packet always asks for UTF8; another encoding would
                // be quietly replaced, so it is refused instead.
                let name: String = value
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_ascii_lowercase();
                if name != "utf8" && name != "unicode" {
                    return Err(bad(
                        "only UTF8 is supported: this library decodes all text as UTF-8",
                    ));
                }
            }
            "service" => self.service = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "servicefile" => self.service_file = path(value),
            // libpq's own no-ops here: Kerberos settings matter only to GSSAPI
            // authentication (refused by this library, as by a libpq built
            // without it), and TLS compression is never used (libpq 14+).
            "krbsrvname" | "gsslib" | "sslcompression" => {}
            "sslkeylogfile"
            | "scram_client_key"
            | "scram_server_key"
            | "gssdelegation"
            | "oauth_issuer"
            | "oauth_client_id"
            | "oauth_client_secret"
            | "oauth_scope" => {
                return Err(Error::config(format!(
                    "connection option {key:?} is not supported by this library{}",
                    unsupported_why(key)
                )));
            }
            _ => return Err(Error::config(format!("unknown connection option {key:?}"))),
        }
        Ok(())
    }
}

/// Every keyword [`Config::set`] accepts (each has its libpq effect, or is
/// one of libpq's own no-ops without GSSAPI), in libpq's order.
pub const KEYWORDS: &[&str] = &[
    "service",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "requiressl",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslcertmode",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "require_auth",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "replication",
    "target_session_attrs",
    "load_balance_hosts",
    "servicefile",
];

/// libpq keywords [`Config::set`] refuses, each with an error saying why.
pub const REFUSED_KEYWORDS: &[&str] = &[
    "scram_client_key",
    "scram_server_key",
    "gssdelegation",
    "oauth_issuer",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
    "sslkeylogfile",
];

/// PG* variables and the keyword each one stands for.
const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGAPPNAME", "application_name"),
    ("PGOPTIONS", "options"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("PGPASSFILE", "passfile"),
    ("PGREQUIREAUTH", "require_auth"),
    ("PGSSLCRL", "sslcrl"),
    ("PGSSLCRLDIR", "sslcrldir"),
    ("PGSSLMINPROTOCOLVERSION", "ssl_min_protocol_version"),
    ("PGSSLMAXPROTOCOLVERSION", "ssl_max_protocol_version"),
    ("PGSSLCERTMODE", "sslcertmode"),
    ("PGSSLSNI", "sslsni"),
    ("PGREQUIREPEER", "requirepeer"),
    ("PGGSSENCMODE", "gssencmode"),
    ("PGCLIENTENCODING", "client_encoding"),
    ("PGKRBSRVNAME", "krbsrvname"),
    ("PGGSSLIB", "gsslib"),
    ("PGSSLCOMPRESSION", "sslcompression"),
    ("PGSERVICEFILE", "servicefile"),
    ("PGMINPROTOCOLVERSION", "min_protocol_version"),
    ("PGMAXPROTOCOLVERSION", "max_protocol_version"),
    // Variables for settings this library refuses: set, they are refused too.
    ("PGGSSDELEGATION", "gssdelegation"),
];

/// Why a libpq keyword is refused, for its error message.
fn unsupported_why(key: &str) -> &'static str {
    match key {
        "sslkeylogfile" => ": writing TLS keys to a file is not implemented",
        "scram_client_key" | "scram_server_key" => ": pass the password instead",
        "gssdelegation" => ": GSSAPI is not supported",
        _ if key.starts_with("oauth_") => ": OAuth authentication is not implemented",
        _ => "",
    }
}

/// A path setting; libpq treats an empty value as unset.
fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
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

fn split_list(value: &str) -> Vec<String> {
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
        for (var, key) in ENV_VARS {
            assert!(
                KEYWORDS.contains(key) || REFUSED_KEYWORDS.contains(key),
                "{var} names {key}"
            );
        }
    }
}
