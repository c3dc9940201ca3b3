//! Connection settings: parsed from a libpq URL or `key=value` string, filled in
//! from PG* environment variables, or built with the typed setters.
//!
//! Precedence is libpq's: a value in the connection string wins over the
//! environment, which wins over the built-in default. The password file is read
//! only at connect time, for the host actually dialled.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// How hard to insist on TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plaintext first; TLS only if the server refuses plaintext.
    Allow,
    /// TLS if the server offers it, else plaintext (with a warning). The default.
    #[default]
    Prefer,
    /// TLS, without verifying the certificate.
    Require,
    /// TLS with a certificate signed by a trusted root; host name not checked.
    VerifyCa,
    /// TLS with a trusted certificate for the host name.
    VerifyFull,
}

/// How TLS is started (`sslnegotiation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslNegotiation {
    /// SSLRequest first, then TLS on `S` (all server versions). The default.
    #[default]
    Postgres,
    /// TLS ClientHello straight away with ALPN `postgresql` (PostgreSQL 17+).
    Direct,
}

/// SCRAM channel binding (`channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// Never bind.
    Disable,
    /// Bind when TLS and SCRAM-SHA-256-PLUS are both available. The default.
    #[default]
    Prefer,
    /// Refuse to authenticate without channel binding.
    Require,
}

/// Which server in a host list is acceptable (`target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server. The default.
    #[default]
    Any,
    /// One that accepts writes.
    ReadWrite,
    /// One that does not accept writes.
    ReadOnly,
    /// Not in recovery.
    Primary,
    /// In recovery.
    Standby,
    /// A standby if there is one, else any.
    PreferStandby,
}

/// Whether to try hosts in order or shuffled (`load_balance_hosts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalanceHosts {
    /// In the order given. The default.
    #[default]
    Disable,
    /// In a random order, drawn once per connect.
    Random,
}

/// TCP keepalive settings; `None` timings keep the OS default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Whether SO_KEEPALIVE is on (default: on).
    pub enabled: bool,
    /// Idle time before the first probe (`keepalives_idle`).
    pub idle: Option<Duration>,
    /// Time between probes (`keepalives_interval`).
    pub interval: Option<Duration>,
    /// Probes before the connection is dropped (`keepalives_count`).
    pub count: Option<u32>,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
        }
    }
}

/// Everything needed to connect. Its `Debug` output never shows the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Host names, IP addresses, or Unix-socket directories (start with `/` or `@`).
    pub hosts: Vec<String>,
    /// Numeric addresses to dial instead of resolving `hosts`, one per host (or none).
    pub hostaddrs: Vec<Option<IpAddr>>,
    /// One port for all hosts, or one per host; empty means 5432.
    pub ports: Vec<u16>,
    /// User name (`user`; default: the OS user).
    pub user: Option<String>,
    /// Password (`password`); else the password file is consulted.
    pub password: Option<String>,
    /// Database name (`dbname`; default: the user name).
    pub dbname: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// Command-line options for the backend (`options`).
    pub options: Option<String>,
    /// Per-host connect timeout (`connect_timeout`); `None` waits as long as the OS does.
    pub connect_timeout: Option<Duration>,
    /// `sslmode`.
    pub ssl_mode: SslMode,
    /// `sslnegotiation`.
    pub ssl_negotiation: SslNegotiation,
    /// Root certificate file for verify-ca/verify-full (`sslrootcert`);
    /// `system` for the operating system's trusted roots.
    pub ssl_root_cert: Option<PathBuf>,
    /// Client certificate file (`sslcert`).
    pub ssl_cert: Option<PathBuf>,
    /// Client private key file (`sslkey`).
    pub ssl_key: Option<PathBuf>,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
    /// TCP keepalive.
    pub keepalive: Keepalive,
    /// `tcp_user_timeout` (Linux TCP_USER_TIMEOUT); `None` keeps the OS default.
    pub tcp_user_timeout: Option<Duration>,
    /// `target_session_attrs`.
    pub target_session_attrs: TargetSessionAttrs,
    /// `load_balance_hosts`.
    pub load_balance_hosts: LoadBalanceHosts,
    /// Password file (`passfile`; default `~/.pgpass`).
    pub passfile: Option<PathBuf>,
    /// Protocol-level settings of the connection's session: message-size cap,
    /// receive buffer sizing, notification queue capacity. Not settable from a
    /// connection string.
    pub session: crate::session::SessionConfig,
}

impl Config {
    /// An empty configuration: every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a connection string (URL or `key=value`), then fills what it left
    /// unset from the PG* environment variables.
    ///
    /// # Errors
    /// A config error naming the key and the value that could not be used.
    pub fn parse_with_env(s: &str) -> Result<Self, Error> {
        let mut config: Self = s.parse()?;
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Fills every setting still unset from `env` (PGHOST, PGPORT, PGUSER, ...).
    ///
    /// # Errors
    /// A config error naming the variable and its value.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
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

    fn is_unset(&self, key: &str, fresh: &Self) -> bool {
        match key {
            "host" => self.hosts.is_empty(),
            "hostaddr" => self.hostaddrs.is_empty(),
            "port" => self.ports.is_empty(),
            "user" => self.user.is_none(),
            "password" => self.password.is_none(),
            "dbname" => self.dbname.is_none(),
            "application_name" => self.application_name.is_none(),
            "options" => self.options.is_none(),
            "connect_timeout" => self.connect_timeout.is_none(),
            "sslmode" => self.ssl_mode == fresh.ssl_mode,
            "sslnegotiation" => self.ssl_negotiation == fresh.ssl_negotiation,
            "sslrootcert" => self.ssl_root_cert.is_none(),
            "sslcert" => self.ssl_cert.is_none(),
            "sslkey" => self.ssl_key.is_none(),
            "channel_binding" => self.channel_binding == fresh.channel_binding,
            "target_session_attrs" => self.target_session_attrs == fresh.target_session_attrs,
            "load_balance_hosts" => self.load_balance_hosts == fresh.load_balance_hosts,
            "passfile" => self.passfile.is_none(),
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
                // libpq: 0 or negative waits forever; 1 is raised to 2 seconds.
                let secs: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("not a number of seconds"))?;
                self.connect_timeout = u64::try_from(secs)
                    .ok()
                    .filter(|&s| s > 0)
                    .map(|s| Duration::from_secs(s.max(2)));
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
            "sslrootcert" => self.ssl_root_cert = Some(value.into()),
            "sslcert" => self.ssl_cert = Some(value.into()),
            "sslkey" => self.ssl_key = Some(value.into()),
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
            "passfile" => self.passfile = Some(value.into()),
            // Accepted for compatibility; they change nothing here.
            "client_encoding"
            | "sslsni"
            | "sslcompression"
            | "gssencmode"
            | "krbsrvname"
            | "require_auth"
            | "service"
            | "replication"
            | "sslcrl"
            | "sslcrldir"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "sslpassword"
            | "sslcertmode"
            | "requirepeer" => {}
            _ => return Err(Error::config(format!("unknown connection option {key:?}"))),
        }
        Ok(())
    }
}

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
];

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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out so that the password cannot reach a log by accident.
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("hostaddrs", &self.hostaddrs)
            .field("ports", &self.ports)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .field("connect_timeout", &self.connect_timeout)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_negotiation", &self.ssl_negotiation)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("ssl_cert", &self.ssl_cert)
            .field("ssl_key", &self.ssl_key)
            .field("channel_binding", &self.channel_binding)
            .field("keepalive", &self.keepalive)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("passfile", &self.passfile)
            .field("session", &self.session)
            .finish()
    }
}

impl FromStr for Config {
    type Err = Error;

    /// Parses `postgres://…` / `postgresql://…` URLs and `key=value` strings.
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut config = Self::default();
        let trimmed = s.trim();
        match trimmed
            .strip_prefix("postgresql://")
            .or_else(|| trimmed.strip_prefix("postgres://"))
        {
            Some(rest) => parse_url(rest, &mut config)?,
            None => {
                for (key, value) in parse_keywords(trimmed)? {
                    config.set(&key, &value)?;
                }
            }
        }
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    /// Whether `sslrootcert=system`: the operating system's trusted roots.
    pub fn uses_system_roots(&self) -> bool {
        self.ssl_root_cert.as_deref() == Some(std::path::Path::new("system"))
    }

    /// The settings a connection uses: with `sslrootcert=system` and the
    /// default sslmode, `verify-full` (as libpq does).
    pub(crate) fn resolved(&self) -> std::borrow::Cow<'_, Self> {
        if self.uses_system_roots() && self.ssl_mode == SslMode::Prefer {
            let mut config = self.clone();
            config.ssl_mode = SslMode::VerifyFull;
            return std::borrow::Cow::Owned(config);
        }
        std::borrow::Cow::Borrowed(self)
    }

    /// Checks the settings fit together: host/hostaddr/port counts, direct TLS
    /// only with sslmode require or stronger, `sslrootcert=system` only with
    /// verify-full (or the default, which becomes verify-full).
    ///
    /// # Errors
    /// A config error saying which settings disagree.
    pub fn validate(&self) -> Result<(), Error> {
        let hosts = self.hosts.len().max(self.hostaddrs.len()).max(1);
        if !self.hosts.is_empty()
            && !self.hostaddrs.is_empty()
            && self.hosts.len() != self.hostaddrs.len()
        {
            return Err(Error::config(format!(
                "could not match {} host names to {} hostaddr values",
                self.hosts.len(),
                self.hostaddrs.len()
            )));
        }
        if self.ports.len() > 1 && self.ports.len() != hosts {
            return Err(Error::config(format!(
                "could not match {} port numbers to {hosts} hosts",
                self.ports.len()
            )));
        }
        if self.uses_system_roots()
            && !matches!(self.ssl_mode, SslMode::Prefer | SslMode::VerifyFull)
        {
            // libpq: the system's roots trust any public CA, so only a host
            // name check makes them mean something. `prefer`, the default,
            // becomes verify-full (see `Config::resolved`).
            return Err(Error::config(format!(
                "weak sslmode {:?} may not be used with sslrootcert=system (use verify-full)",
                self.ssl_mode
            )));
        }
        if self.ssl_negotiation == SslNegotiation::Direct
            && !matches!(
                self.ssl_mode,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
            )
        {
            return Err(Error::config(format!(
                "weak sslmode {:?} may not be used with sslnegotiation=direct (use require, verify-ca, or verify-full)",
                self.ssl_mode
            )));
        }
        Ok(())
    }
}

/// `postgresql://[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`
fn parse_url(rest: &str, config: &mut Config) -> Result<(), Error> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo
            .split_once(':')
            .map_or((userinfo, None), |(u, p)| (u, Some(p)));
        if !user.is_empty() {
            config.user = Some(percent_decode(user, "user")?);
        }
        if let Some(p) = password {
            config.password = Some(percent_decode(p, "password")?);
        }
    }
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in hostlist.split(',') {
            let (host, port) = split_host_port(spec)?;
            hosts.push(percent_decode(host, "host")?);
            ports.push(port);
        }
        config.hosts = hosts;
        if ports.iter().any(Option::is_some) {
            config.ports = ports.into_iter().map(|p| p.unwrap_or(5432)).collect();
        }
    }
    if !path.is_empty() {
        config.dbname = Some(percent_decode(path, "dbname")?);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::config(format!(
                "URL parameter {pair:?} has no value (expected key=value)"
            ))
        })?;
        let key = percent_decode(k, "URL parameter name")?;
        let value = percent_decode(v, &key)?;
        // libpq accepts `ssl=true` in URLs as sslmode=require.
        if key == "ssl" && value == "true" {
            config.set("sslmode", "require")?;
        } else {
            config.set(&key, &value)?;
        }
    }
    Ok(())
}

fn split_host_port(spec: &str) -> Result<(&str, Option<u16>), Error> {
    let bad_port = |p: &str| Error::config(format!("invalid port {p:?} in URL host {spec:?}"));
    if let Some(v6) = spec.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| {
            Error::config(format!("unterminated IPv6 address in URL host {spec:?}"))
        })?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((addr, Some(p.parse().map_err(|_| bad_port(p))?))),
            None if after.is_empty() => Ok((addr, None)),
            None => Err(Error::config(format!(
                "unexpected {after:?} after IPv6 address in {spec:?}"
            ))),
        };
    }
    match spec.rsplit_once(':') {
        Some((h, "")) => Ok((h, None)),
        Some((h, p)) => Ok((h, Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((spec, None)),
    }
}

fn percent_decode(s: &str, what: &str) -> Result<String, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = hex.ok_or_else(|| {
                Error::config(format!("invalid percent-encoding in {what}: {s:?}"))
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::config(format!(
            "{what} is not valid UTF-8 after percent-decoding: {s:?}"
        ))
    })
}

/// `key = value` pairs; values may be single-quoted with `\'` and `\\` escapes.
fn parse_keywords(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::config(format!(
                "missing \"=\" after {key:?} in connection string"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().unwrap_or('\\')),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::config(format!(
                            "unterminated quoted value for {key:?}"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().unwrap_or('\\'));
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}
