//! Connection settings: parsed from a libpq URL or `key=value` string, filled in
//! from PG* environment variables, or set one keyword at a time with
//! `Config::set` (libpq's names and value rules; see `keywords.rs`).
//!
//! Precedence is libpq's: a value in the connection string wins over the
//! environment, which wins over the built-in default. The password file is read
//! only at connect time, for the host actually dialled.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::conninfo::{parse_keywords, parse_url};
use crate::error::Error;
pub use crate::protocol::frontend::ProtocolVersion;
use crate::session::RequireAuth;

/// How hard to insist on TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum SslNegotiation {
    /// SSLRequest first, then TLS on `S` (all server versions). The default.
    #[default]
    Postgres,
    /// TLS ClientHello straight away with ALPN `postgresql` (PostgreSQL 17+).
    Direct,
}

pub use crate::session::ChannelBinding;

/// Which server in a host list is acceptable (`target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum LoadBalanceHosts {
    /// In the order given. The default.
    #[default]
    Disable,
    /// In a random order, drawn once per connect.
    Random,
}

/// A TLS protocol version, for `ssl_min_protocol_version` and
/// `ssl_max_protocol_version`. rustls speaks TLS 1.2 and 1.3 only, so libpq's
/// `TLSv1` and `TLSv1.1` are refused rather than silently raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsVersion {
    /// `TLSv1.2`.
    Tls12,
    /// `TLSv1.3`.
    Tls13,
}

impl TlsVersion {
    /// libpq's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tls12 => "TLSv1.2",
            Self::Tls13 => "TLSv1.3",
        }
    }
}

/// Whether a client certificate may be sent, and whether the server must ask
/// for one (`sslcertmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslCertMode {
    /// Never send a client certificate, even if one is configured.
    Disable,
    /// Send one if the server asks and one is configured. The default.
    #[default]
    Allow,
    /// Fail unless a client certificate was sent: the server must ask for one
    /// and one must be configured.
    Require,
}

/// GSSAPI encryption (`gssencmode`). This library has no GSSAPI, so, as a
/// libpq built without it, `prefer` (the default) and `disable` never use it
/// and `require` is refused when the setting is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GssEncMode {
    /// Never GSSAPI encryption.
    Disable,
    /// GSSAPI encryption if available, which it never is here. The default.
    #[default]
    Prefer,
}

/// A replication connection (`replication`): sent to the server in the
/// startup packet, which then accepts replication commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replication {
    /// Physical replication (`replication=true`).
    Physical,
    /// Logical replication, bound to `dbname` (`replication=database`).
    Database,
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
///
/// Every libpq keyword this library accepts has libpq's effect; the ones it
/// cannot honour are refused by [`Config::set`] with an error naming them
/// (the README's table lists each).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Which authentication methods the server may use (`require_auth`).
    pub require_auth: RequireAuth,
    /// Certificate revocation list file (`sslcrl`; default
    /// `~/.postgresql/root.crl` if it exists). Used whenever the server
    /// certificate is verified.
    pub ssl_crl: Option<PathBuf>,
    /// Directory of certificate revocation list files (`sslcrldir`).
    pub ssl_crl_dir: Option<PathBuf>,
    /// Lowest TLS version to accept (`ssl_min_protocol_version`; default
    /// TLS 1.2, as libpq's).
    pub ssl_min_protocol_version: Option<TlsVersion>,
    /// Highest TLS version to accept (`ssl_max_protocol_version`).
    pub ssl_max_protocol_version: Option<TlsVersion>,
    /// Lowest protocol version to accept (`min_protocol_version`; default 3.0).
    /// A server that answers the StartupMessage with an older one is refused.
    pub min_protocol_version: Option<ProtocolVersion>,
    /// The protocol version asked for (`max_protocol_version`; `latest` is
    /// 3.2). Unset, it is 3.0 as in libpq 18, or the latest when
    /// `min_protocol_version` is above 3.0.
    pub max_protocol_version: Option<ProtocolVersion>,
    /// `sslcertmode`.
    pub ssl_cert_mode: SslCertMode,
    /// Whether to send the host name as TLS SNI (`sslsni`; default on). SNI is
    /// never sent for IP literals.
    pub ssl_sni: bool,
    /// The operating-system user the server process must run as (`requirepeer`;
    /// Unix sockets only, checked with SO_PEERCRED before anything is sent).
    pub require_peer: Option<String>,
    /// Passphrase for an encrypted `sslkey` (`sslpassword`). Encrypted keys are
    /// not supported: connecting with one fails with an error saying so.
    pub ssl_password: Option<String>,
    /// `gssencmode`.
    pub gss_enc_mode: GssEncMode,
    /// `replication`: `None` for an ordinary connection.
    pub replication: Option<Replication>,
    /// Service name (`service`, `PGSERVICE`): a section of the service file
    /// whose settings fill those still unset.
    pub service: Option<String>,
    /// Service file (`servicefile`, `PGSERVICEFILE`; default
    /// `~/.pg_service.conf`, then `$PGSYSCONFDIR/pg_service.conf`).
    pub service_file: Option<PathBuf>,
    /// Protocol-level settings of the connection's session: message-size cap,
    /// receive buffer sizing, notification queue capacity. Not settable from a
    /// connection string.
    pub session: crate::session::SessionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            hostaddrs: Vec::new(),
            ports: Vec::new(),
            user: None,
            password: None,
            dbname: None,
            application_name: None,
            options: None,
            connect_timeout: None,
            ssl_mode: SslMode::default(),
            ssl_negotiation: SslNegotiation::default(),
            ssl_root_cert: None,
            ssl_cert: None,
            ssl_key: None,
            channel_binding: ChannelBinding::default(),
            keepalive: Keepalive::default(),
            tcp_user_timeout: None,
            target_session_attrs: TargetSessionAttrs::default(),
            load_balance_hosts: LoadBalanceHosts::default(),
            passfile: None,
            require_auth: RequireAuth::default(),
            ssl_crl: None,
            ssl_crl_dir: None,
            ssl_min_protocol_version: None,
            ssl_max_protocol_version: None,
            min_protocol_version: None,
            max_protocol_version: None,
            ssl_cert_mode: SslCertMode::default(),
            ssl_sni: true,
            require_peer: None,
            ssl_password: None,
            gss_enc_mode: GssEncMode::default(),
            replication: None,
            service: None,
            service_file: None,
            session: crate::session::SessionConfig::default(),
        }
    }
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
            .field("require_auth", &self.require_auth)
            .field("ssl_crl", &self.ssl_crl)
            .field("ssl_crl_dir", &self.ssl_crl_dir)
            .field("ssl_min_protocol_version", &self.ssl_min_protocol_version)
            .field("ssl_max_protocol_version", &self.ssl_max_protocol_version)
            .field("min_protocol_version", &self.min_protocol_version)
            .field("max_protocol_version", &self.max_protocol_version)
            .field("ssl_cert_mode", &self.ssl_cert_mode)
            .field("ssl_sni", &self.ssl_sni)
            .field("require_peer", &self.require_peer)
            .field(
                "ssl_password",
                &self.ssl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("gss_enc_mode", &self.gss_enc_mode)
            .field("replication", &self.replication)
            .field("service", &self.service)
            .field("service_file", &self.service_file)
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
        config.checked()
    }
}

impl Config {
    /// The last step of parsing a string or building a config: the named
    /// service fills what is still unset, then [`Config::validate`].
    ///
    /// # Errors
    /// The service file's errors and [`Config::validate`]'s.
    pub(super) fn checked(mut self) -> Result<Self, Error> {
        super::service::apply(&mut self, &|k| std::env::var(k).ok())?;
        self.validate()?;
        Ok(self)
    }

    /// The per-host connect timeout a connection uses: none for zero, and 2
    /// seconds for 1 (libpq raises it: with whole seconds, a 1 s limit could
    /// expire at once). Shorter limits, which only code can set, are used as
    /// given.
    pub fn connect_timeout_used(&self) -> Option<Duration> {
        const ONE: Duration = Duration::from_secs(1);
        self.connect_timeout
            .filter(|d| !d.is_zero())
            .map(|d| if d == ONE { 2 * ONE } else { d })
    }

    /// Whether `sslrootcert=system`: the operating system's trusted roots.
    pub fn uses_system_roots(&self) -> bool {
        self.ssl_root_cert.as_deref() == Some(std::path::Path::new("system"))
    }

    /// The settings a connection made with this configuration uses (see
    /// below); for inspection and tests.
    ///
    /// # Errors
    /// As [`Config::validate`], and the service file's errors.
    pub fn effective(&self) -> Result<Self, Error> {
        self.resolved().map(std::borrow::Cow::into_owned)
    }

    /// The settings a connection uses, checked: the named service's settings
    /// fill what is still unset (a `Config` built in code means what the same
    /// values mean in a string), and with `sslrootcert=system` and the default
    /// sslmode, `verify-full` (as libpq does).
    ///
    /// # Errors
    /// As [`Config::validate`], and the service file's errors.
    pub(crate) fn resolved(&self) -> Result<std::borrow::Cow<'_, Self>, Error> {
        let mut config = std::borrow::Cow::Borrowed(self);
        if self.service.is_some() {
            super::service::apply(config.to_mut(), &|k| std::env::var(k).ok())?;
        }
        if config.uses_system_roots() && config.ssl_mode == SslMode::Prefer {
            config.to_mut().ssl_mode = SslMode::VerifyFull;
        }
        config.validate()?;
        Ok(config)
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
        if let (Some(min), Some(max)) =
            (self.ssl_min_protocol_version, self.ssl_max_protocol_version)
        {
            if min > max {
                return Err(Error::config(format!(
                    "invalid SSL protocol version range: ssl_min_protocol_version={} is above ssl_max_protocol_version={}",
                    min.name(),
                    max.name()
                )));
            }
        }
        let (min, max) = self.protocol_versions();
        if min > max {
            return Err(Error::config(format!(
                "\"min_protocol_version\" is greater than \"max_protocol_version\" ({min} > {max})"
            )));
        }
        Ok(())
    }

    /// The protocol versions to accept and to ask for, defaults applied as
    /// libpq 18 does: 3.0 unless `min_protocol_version` asks for more.
    pub fn protocol_versions(&self) -> (ProtocolVersion, ProtocolVersion) {
        let min = self.min_protocol_version.unwrap_or_default();
        let max = self
            .max_protocol_version
            .unwrap_or(if min > ProtocolVersion::V3_0 {
                ProtocolVersion::LATEST
            } else {
                ProtocolVersion::V3_0
            });
        (min, max)
    }
}
