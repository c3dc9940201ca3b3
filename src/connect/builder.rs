//! [`ConfigBuilder`]: typed setters for the common libpq settings, for code
//! that builds a [`Config`] rather than parsing one (other crates cannot
//! write `Config` as a literal: it is `#[non_exhaustive]`).
//!
//! Every value goes through the keyword table's rules (`keywords.rs`) where
//! it has a string form, and `build` runs the checks a connection string
//! gets, so a builder and the equivalent string give the same `Config`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{
    ChannelBinding, Config, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs,
};
use super::keywords::{invalid_value, path, split_list};
use crate::error::Error;
use crate::session::RequireAuth;

/// Builds a [`Config`] from typed values; start it with [`Config::builder`].
///
/// Each setter is named after the libpq keyword it sets, and means what that
/// keyword means in a connection string. [`host`](Self::host),
/// [`hostaddr`](Self::hostaddr) and [`port`](Self::port) append to their
/// lists (one entry per host, as `host=a,b port=1,2`); every other setter
/// replaces the value, and so does [`set`](Self::set) for a list.
///
/// A value that cannot be used is not dropped: it makes [`build`](Self::build)
/// fail with an error naming the setting (the first such error, if several).
///
/// Like [`Config::new`], the builder reads no PG* environment variable. To
/// fill the settings still unset from the environment, as
/// [`Config::parse_with_env`] does, call [`Config::apply_env`] on the result.
///
/// ```no_run
/// use pg_transport::connect::{Config, SslMode};
///
/// # async fn run() -> Result<(), pg_transport::Error> {
/// let config = Config::builder()
///     .host("db.example.com")
///     .port(5432)
///     .user("app")
///     .dbname("orders")
///     .password("secret")
///     .sslmode(SslMode::VerifyFull)
///     .connect_timeout(std::time::Duration::from_secs(10))
///     .build()?;
/// let (mut conn, _) = pg_transport::connect(&config).await?;
/// conn.simple_query("SELECT 1").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConfigBuilder {
    config: Config,
    /// The first value refused; `build` returns it.
    error: Option<Error>,
}

impl Config {
    /// A [`ConfigBuilder`] with every setting at its default, as
    /// [`Config::new`]: no environment variable is read.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Self::new(),
            error: None,
        }
    }
}

impl ConfigBuilder {
    /// Adds a host: a name, an IP address, a Unix-socket directory (starting
    /// with `/`) or an abstract socket (starting with `@`). Leading and
    /// trailing blanks are dropped, as in a connection string.
    ///
    /// # Errors
    /// [`build`](Self::build) fails, naming `host`, if `host` holds a comma:
    /// in libpq a comma separates hosts, so one host cannot contain it.
    pub fn host(self, host: &str) -> Self {
        self.apply(|c| match split_list(host).as_slice() {
            [one] => {
                c.hosts.push(one.clone());
                Ok(())
            }
            _ => Err(invalid_value(
                "host",
                host,
                "a comma separates hosts: call host() once per host",
            )),
        })
    }

    /// Adds a Unix-socket directory as a host.
    ///
    /// # Errors
    /// [`build`](Self::build) fails, naming `host`, if `dir` is not absolute
    /// (a relative one would be taken for a host name) or not UTF-8.
    pub fn host_path(self, dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let shown = dir.to_string_lossy();
        match dir.to_str() {
            Some(s) if dir.is_absolute() => self.host(s),
            Some(_) => self.fail(invalid_value(
                "host",
                &shown,
                "a Unix-socket directory must be an absolute path",
            )),
            None => self.fail(invalid_value("host", &shown, "not UTF-8")),
        }
    }

    /// Adds the numeric address of the next host (`hostaddr`), dialled
    /// instead of resolving its name; `None` resolves that host's name.
    pub fn hostaddr(self, addr: impl Into<Option<IpAddr>>) -> Self {
        let addr = addr.into();
        self.assign(|c| c.hostaddrs.push(addr))
    }

    /// Adds a port: one for all hosts, or one per host. 0 means 5432.
    pub fn port(self, port: u16) -> Self {
        self.assign(|c| c.ports.push(port))
    }

    /// Sets the user name (`user`; default: the OS user).
    pub fn user(self, user: &str) -> Self {
        self.set("user", user)
    }

    /// Sets the password (`password`); without one, the password file is read.
    pub fn password(self, password: &str) -> Self {
        self.set("password", password)
    }

    /// Sets the database name (`dbname`; default: the user name).
    pub fn dbname(self, dbname: &str) -> Self {
        self.set("dbname", dbname)
    }

    /// Sets `application_name`.
    pub fn application_name(self, name: &str) -> Self {
        self.set("application_name", name)
    }

    /// Sets the backend's command-line options (`options`, e.g.
    /// `-c search_path=app`).
    pub fn options(self, options: &str) -> Self {
        self.set("options", options)
    }

    /// Sets `sslmode`.
    pub fn sslmode(self, mode: SslMode) -> Self {
        self.assign(|c| c.ssl_mode = mode)
    }

    /// Sets `sslnegotiation`.
    ///
    /// # Errors
    /// [`build`](Self::build) fails if `Direct` is combined with an sslmode
    /// weaker than `require`, as a connection string does.
    pub fn sslnegotiation(self, negotiation: SslNegotiation) -> Self {
        self.assign(|c| c.ssl_negotiation = negotiation)
    }

    /// Sets the root certificate file (`sslrootcert`); `system` means the
    /// operating system's roots. An empty path means unset, as in libpq.
    ///
    /// # Errors
    /// [`build`](Self::build) fails if `system` is combined with an sslmode
    /// other than `verify-full` or the default, as a connection string does.
    pub fn sslrootcert(self, file: impl Into<PathBuf>) -> Self {
        let file = path(file);
        self.assign(|c| c.ssl_root_cert = file)
    }

    /// Sets the client certificate file (`sslcert`); empty means unset.
    pub fn sslcert(self, file: impl Into<PathBuf>) -> Self {
        let file = path(file);
        self.assign(|c| c.ssl_cert = file)
    }

    /// Sets the client private key file (`sslkey`); empty means unset.
    pub fn sslkey(self, file: impl Into<PathBuf>) -> Self {
        let file = path(file);
        self.assign(|c| c.ssl_key = file)
    }

    /// Sets `channel_binding`.
    pub fn channel_binding(self, binding: ChannelBinding) -> Self {
        self.assign(|c| c.channel_binding = binding)
    }

    /// Sets which authentication methods the server may use (`require_auth`).
    pub fn require_auth(self, methods: RequireAuth) -> Self {
        self.assign(|c| c.require_auth = methods)
    }

    /// Sets `target_session_attrs`.
    pub fn target_session_attrs(self, attrs: TargetSessionAttrs) -> Self {
        self.assign(|c| c.target_session_attrs = attrs)
    }

    /// Sets `load_balance_hosts`.
    pub fn load_balance_hosts(self, order: LoadBalanceHosts) -> Self {
        self.assign(|c| c.load_balance_hosts = order)
    }

    /// Sets the per-host connect timeout (`connect_timeout`); zero waits as
    /// long as the OS does, as `connect_timeout=0`. Unlike the string form it
    /// may be shorter than a second, and is then used as given (see
    /// [`Config::connect_timeout_used`]).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        // The one rule of the keyword a Duration can break: zero (libpq's
        // "0 or negative") means no limit.
        self.assign(|c| c.connect_timeout = Some(timeout).filter(|d| !d.is_zero()))
    }

    /// Turns TCP keepalive on or off (`keepalives`; default on).
    pub fn keepalives(self, on: bool) -> Self {
        self.set("keepalives", if on { "1" } else { "0" })
    }

    /// Sets the idle time before the first keepalive probe
    /// (`keepalives_idle`); zero keeps the OS default.
    ///
    /// # Errors
    /// [`build`](Self::build) fails, naming `keepalives_idle`, for a fraction
    /// of a second (the socket option counts seconds) or more than
    /// `u32::MAX` seconds.
    pub fn keepalives_idle(self, idle: Duration) -> Self {
        self.set_whole("keepalives_idle", idle, Unit::Seconds)
    }

    /// Sets the time between keepalive probes (`keepalives_interval`); zero
    /// keeps the OS default.
    ///
    /// # Errors
    /// As [`keepalives_idle`](Self::keepalives_idle), naming
    /// `keepalives_interval`.
    pub fn keepalives_interval(self, interval: Duration) -> Self {
        self.set_whole("keepalives_interval", interval, Unit::Seconds)
    }

    /// Sets how many keepalive probes may go unanswered
    /// (`keepalives_count`); zero keeps the OS default.
    pub fn keepalives_count(self, count: u32) -> Self {
        self.set("keepalives_count", &count.to_string())
    }

    /// Sets `tcp_user_timeout` (Linux TCP_USER_TIMEOUT); zero keeps the OS
    /// default.
    ///
    /// # Errors
    /// [`build`](Self::build) fails, naming `tcp_user_timeout`, for a
    /// fraction of a millisecond (the socket option counts milliseconds) or
    /// more than `u32::MAX` milliseconds.
    pub fn tcp_user_timeout(self, timeout: Duration) -> Self {
        self.set_whole("tcp_user_timeout", timeout, Unit::Millis)
    }

    /// Sets any libpq keyword from its string form, exactly as
    /// [`Config::set`] (and so as a connection string) does; for a list
    /// (`host`, `hostaddr`, `port`) it replaces the whole list.
    ///
    /// # Errors
    /// [`build`](Self::build) fails with [`Config::set`]'s error, which names
    /// the keyword: an unknown or refused keyword, or a value that does not
    /// parse.
    pub fn set(self, keyword: &str, value: &str) -> Self {
        self.apply(|c| c.set(keyword, value))
    }

    /// The configuration, checked as a connection string is: a `service`
    /// named with [`set`](Self::set) fills the settings still unset from the
    /// service file, and [`Config::validate`] runs.
    ///
    /// # Errors
    /// Kind `Config`: the first value a setter refused, else the service
    /// file's errors or [`Config::validate`]'s (host, hostaddr and port
    /// counts that do not match, an sslmode too weak for
    /// `sslnegotiation=direct` or `sslrootcert=system`, inverted version
    /// ranges). Each message names the settings at fault.
    pub fn build(self) -> Result<Config, Error> {
        match self.error {
            Some(e) => Err(e),
            None => self.config.checked(),
        }
    }

    /// Runs `set` on the config unless a value was already refused; records
    /// its error otherwise.
    fn apply(mut self, set: impl FnOnce(&mut Config) -> Result<(), Error>) -> Self {
        if self.error.is_none() {
            self.error = set(&mut self.config).err();
        }
        self
    }

    /// [`apply`](Self::apply) for a typed value, which cannot be refused.
    fn assign(self, set: impl FnOnce(&mut Config)) -> Self {
        self.apply(|c| {
            set(c);
            Ok(())
        })
    }

    fn fail(self, error: Error) -> Self {
        self.apply(|_| Err(error))
    }

    /// Sets `keyword` to `value` in whole `unit`s, through the keyword
    /// table (which checks the range); a fraction of a unit is refused
    /// rather than rounded.
    fn set_whole(self, keyword: &str, value: Duration, unit: Unit) -> Self {
        let (whole, why) = match unit {
            Unit::Seconds => (value.subsec_nanos() == 0, "whole seconds only"),
            Unit::Millis => (
                value.subsec_nanos() % 1_000_000 == 0,
                "whole milliseconds only",
            ),
        };
        if !whole {
            return self.fail(invalid_value(keyword, &format!("{value:?}"), why));
        }
        let n = match unit {
            Unit::Seconds => u128::from(value.as_secs()),
            Unit::Millis => value.as_millis(),
        };
        self.set(keyword, &n.to_string())
    }
}

/// What a libpq keyword counts its duration in.
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}
