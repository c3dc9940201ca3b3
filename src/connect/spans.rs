//! What the connect spans say about a host and an attempt (see
//! [`crate::trace`]): the endpoint a connection names in its spans, and an
//! attempt's outcome.

use std::net::SocketAddr;

use tracing::Span;

use super::config::Config;
use super::hosts::{DialTarget, HostEntry, is_unix_socket};
use crate::error::Error;
use crate::session::AuthMethod;
use crate::trace::{self, Endpoint};
use crate::transport::TransportKind;

/// The endpoint of `host` dialled at `addr` (`None` for a Unix socket), as
/// OpenTelemetry names it: the host as configured, not the address dialled.
pub(super) fn endpoint(config: &Config, host: &HostEntry, addr: Option<SocketAddr>) -> Endpoint {
    let (address, port, transport) = match host.dial_target() {
        DialTarget::Unix(path) => (path.display().to_string(), None, "unix"),
        DialTarget::Addr(..) | DialTarget::Name(..) => {
            let name = match (&host.host, host.hostaddr) {
                (Some(h), _) if !is_unix_socket(h) => h.clone(),
                (_, Some(a)) => a.to_string(),
                _ => "localhost".to_owned(),
            };
            let port = addr.map_or(host.port, |a| a.port());
            (name, Some(port), "tcp")
        }
    };
    Endpoint {
        address: Some(address),
        port,
        transport: Some(transport),
        peer_address: addr.map(|a| a.ip().to_string()),
        namespace: namespace(config).map(str::to_owned),
    }
}

/// The database the server connects to: `dbname`, else the user's name.
pub(super) fn namespace(config: &Config) -> Option<&str> {
    config.dbname.as_deref().or(config.user.as_deref())
}

/// `network.transport` for a caller's transport, when it says.
pub(super) fn transport_name(kind: TransportKind) -> Option<&'static str> {
    match kind {
        TransportKind::Tcp => Some("tcp"),
        TransportKind::Unix => Some("unix"),
        TransportKind::Tls | TransportKind::Simulated => None,
    }
}

/// Records how an attempt ended: on success, how the server authenticated us.
pub(super) fn attempt_ended(span: &Span, result: Result<AuthMethod, &Error>) {
    if let Ok(method) = result {
        trace::attempt_auth(span, auth_name(method));
    }
    trace::outcome(span, result.err());
}

/// `pg.auth.method`: the names pg_hba.conf uses.
fn auth_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Trust => "trust",
        AuthMethod::Cleartext => "password",
        AuthMethod::Md5 => "md5",
        AuthMethod::ScramSha256 => "scram-sha-256",
        AuthMethod::ScramSha256Plus => "scram-sha-256-plus",
    }
}
