//! Host lists: which addresses to dial, in which order, and how to name them in errors.

use std::net::IpAddr;
use std::path::PathBuf;

use super::config::Config;

/// The default port when none is given (or 0 is given).
pub const DEFAULT_PORT: u16 = 5432;

/// One entry of the host list, with its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// Host name, IP literal, or Unix-socket directory; `None` when only a
    /// hostaddr was given.
    pub host: Option<String>,
    /// Numeric address to dial instead of resolving `host`.
    pub hostaddr: Option<IpAddr>,
    /// The port (also names the Unix socket file).
    pub port: u16,
}

/// Where a [`HostEntry`] is dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    /// A Unix-domain socket file.
    Unix(PathBuf),
    /// A literal address.
    Addr(IpAddr, u16),
    /// A name to resolve; every address it resolves to is tried in order.
    Name(String, u16),
}

impl HostEntry {
    /// Where to dial: hostaddr wins over host; a host starting with `/` or `@` is
    /// a Unix-socket directory.
    pub fn dial_target(&self) -> DialTarget {
        if let Some(addr) = self.hostaddr {
            return DialTarget::Addr(addr, self.port);
        }
        match self.host.as_deref() {
            Some(h) if is_unix_socket(h) => DialTarget::Unix(unix_socket_path(h, self.port).into()),
            Some(h) => match h.parse::<IpAddr>() {
                Ok(addr) => DialTarget::Addr(addr, self.port),
                Err(_) => DialTarget::Name(h.to_owned(), self.port),
            },
            None => DialTarget::Name("localhost".to_owned(), self.port),
        }
    }

    /// How errors name this entry: `host:port`, `[v6]:port`, or the socket path.
    pub fn display_host(&self) -> String {
        match self.dial_target() {
            DialTarget::Unix(path) => path.display().to_string(),
            DialTarget::Addr(IpAddr::V6(a), port) => match &self.host {
                Some(h) if self.hostaddr.is_some() => format!("{h} ([{a}]:{port})"),
                _ => format!("[{a}]:{port}"),
            },
            DialTarget::Addr(a, port) => match &self.host {
                Some(h) if self.hostaddr.is_some() => format!("{h} ({a}:{port})"),
                _ => format!("{a}:{port}"),
            },
            DialTarget::Name(h, port) => format!("{h}:{port}"),
        }
    }

    /// The name TLS verifies and sends as SNI: the host name, never the hostaddr.
    pub fn tls_name(&self) -> Option<&str> {
        self.host.as_deref().filter(|h| !is_unix_socket(h))
    }

    /// Whether this entry dials a Unix socket.
    pub fn is_unix(&self) -> bool {
        matches!(self.dial_target(), DialTarget::Unix(_))
    }
}

/// Whether `host` names a Unix-socket directory: an absolute path, or (Linux) an
/// abstract socket name starting with `@`.
pub fn is_unix_socket(host: &str) -> bool {
    host.starts_with('/') || host.starts_with('@')
}

/// libpq's socket file name: `{dir}/.s.PGSQL.{port}`.
pub fn unix_socket_path(dir: &str, port: u16) -> String {
    format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/'))
}

/// The hosts to try, in order, each with its port.
///
/// `host` and `hostaddr` pair up by position; one port applies to every host,
/// or there is one per host (checked by [`Config::validate`]). With no host at
/// all, one entry from the defaults: the Unix-socket directory if it exists,
/// else `localhost`. Port 0 means 5432.
///
/// Pure: reads no file and resolves no name (only the default host looks at
/// the file system, for the socket directory). Never fails: a port list that
/// does not fit the hosts is [`Config::validate`]'s error, not this one's.
pub fn host_list(config: &Config) -> Vec<HostEntry> {
    let count = config.hosts.len().max(config.hostaddrs.len());
    let port_for = |i: usize| {
        let port = match config.ports.as_slice() {
            [] => DEFAULT_PORT,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(DEFAULT_PORT),
        };
        if port == 0 { DEFAULT_PORT } else { port }
    };
    if count == 0 {
        return vec![HostEntry {
            host: Some(default_host()),
            hostaddr: None,
            port: port_for(0),
        }];
    }
    (0..count)
        .map(|i| {
            let hostaddr = config.hostaddrs.get(i).copied().flatten();
            // libpq: an empty entry means the default host, unless a hostaddr
            // says where to dial.
            let host = match config.hosts.get(i).filter(|h| !h.is_empty()) {
                Some(h) => Some(h.clone()),
                None if hostaddr.is_none() => Some(default_host()),
                None => None,
            };
            HostEntry {
                host,
                hostaddr,
                port: port_for(i),
            }
        })
        .collect()
}

/// The former name of [`host_list`], kept for one release.
#[deprecated(note = "renamed to `host_list` (Rust naming: no `get_` prefix)")]
pub fn get_hosts(config: &Config) -> Vec<HostEntry> {
    host_list(config)
}

/// libpq's compiled-in default: the Debian socket directory, else /tmp, else localhost.
fn default_host() -> String {
    ["/var/run/postgresql", "/tmp"]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
        .unwrap_or("localhost")
        .to_owned()
}
