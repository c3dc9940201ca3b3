//! Connecting: config → host list → dial → SSL negotiation → startup and auth →
//! target_session_attrs. Orchestration only; each step lives in its own file.

mod builder;
mod cert;
pub mod config;
mod conninfo;
pub mod hosts;
mod keywords;
mod negotiate;
mod peer;
mod pgpass;
mod service;
mod spans;
mod startup;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use rand::seq::SliceRandom;
use tracing::{Instrument, Span};

use crate::cancel::{Cancel, CancelFuture};
use crate::conn::Connection;
use crate::error::Error;
use crate::session::Session;
use crate::trace;
use crate::transport::{
    KeepaliveOptions, MaybeTls, Socket, SocketOptions, TcpTransport, Transport, UnixTransport,
};

pub use crate::cancel::CancelToken;
pub use crate::session::{AuthMethod, AuthRequirement, RequireAuth};
pub use builder::ConfigBuilder;
pub use config::{
    ChannelBinding, Config, GssEncMode, Keepalive, LoadBalanceHosts, ProtocolVersion, Replication,
    SslCertMode, SslMode, SslNegotiation, TargetSessionAttrs, TlsVersion,
};
#[expect(deprecated, reason = "`get_hosts` stays reachable for one release")]
pub use hosts::get_hosts;
pub use hosts::{DialTarget, HostEntry, host_list, is_unix_socket, unix_socket_path};
pub use keywords::{KEYWORDS, REFUSED_KEYWORDS};

use negotiate::SslAnswer;
use tls::TlsSetup;

/// The connection [`connect`] returns: a [`Connection`] over a TCP or
/// Unix-domain socket ([`Socket`]), with or without TLS ([`MaybeTls`]).
///
/// It is the connection itself, not a handle to one: operations take it by
/// `&mut`, one at a time (unlike tokio-postgres, whose `Client` is a handle
/// to a connection driven by another task). To share it between tasks, move
/// it into one task or put it behind a `tokio::sync::Mutex`.
pub type DefaultConnection = Connection<MaybeTls<Socket>>;

/// The former name of [`DefaultConnection`], kept for one release.
#[deprecated(
    note = "renamed to `DefaultConnection`: it is the connection itself, not a tokio-postgres-style handle"
)]
pub type Client = DefaultConnection;

/// What [`connect`] settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The host entry that answered.
    pub host: HostEntry,
    /// The address dialled (`None` for a Unix socket).
    pub addr: Option<SocketAddr>,
    /// How the server authenticated us.
    pub auth_method: AuthMethod,
}

/// Connects using `config`: every host, and every address each resolves to,
/// in order (or shuffled with `load_balance_hosts=random`), each attempt
/// bounded by `connect_timeout`, until one is accepted.
///
/// # Errors
/// With one host, that host's error (a timeout stays a timeout). With several,
/// kind `Connect`: "Could not connect to any host: …", listing each host and
/// its cause, inspectable through [`Error::host_errors`]. Settings that can
/// never work (direct TLS with a weak sslmode, verify-ca without a root
/// certificate) fail once, before any I/O.
pub async fn connect(config: &Config) -> Result<(DefaultConnection, ConnectInfo), Error> {
    let span = trace::connect_span();
    let result = connect_hosts(config, &span).instrument(span.clone()).await;
    trace::outcome(&span, result.as_ref().err());
    result
}

/// [`connect`] inside its span, `span`: the parent of each attempt's.
async fn connect_hosts(
    config: &Config,
    span: &Span,
) -> Result<(DefaultConnection, ConnectInfo), Error> {
    let config = &*config.resolved()?;
    trace::connect_namespace(span, spans::namespace(config));
    let tls = match config.ssl_mode {
        SslMode::Disable => None,
        _ => Some(TlsSetup::new(config)?),
    };
    let hosts = shuffled_hosts(config);
    let mut failures: Vec<(String, Error)> = Vec::new();
    let passes: &[Option<TargetSessionAttrs>] = match config.target_session_attrs {
        TargetSessionAttrs::PreferStandby => &[
            Some(TargetSessionAttrs::Standby),
            Some(TargetSessionAttrs::Any),
        ],
        other => &[Some(other)],
    };
    for want in passes.iter().flatten() {
        for host in &hosts {
            if let Some(found) =
                connect_host(config, tls.as_ref(), host, *want, &mut failures, span).await?
            {
                return Ok(found);
            }
        }
    }
    Err(match failures.len() {
        1 => failures.remove(0).1,
        _ => Error::connect_failed(failures),
    })
}

/// The host list in the order [`connect`] tries it: as given, or shuffled
/// (from the OS-seeded thread RNG, never a global seed) with
/// `load_balance_hosts=random`.
pub fn shuffled_hosts(config: &Config) -> Vec<HostEntry> {
    let mut hosts = host_list(config);
    if config.load_balance_hosts == LoadBalanceHosts::Random {
        hosts.shuffle(&mut rand::rng());
    }
    hosts
}

/// Tries every address of one host entry, recording each failure; `Ok(None)`
/// when none was accepted, `Err` only for a configuration error (no point
/// trying other hosts).
async fn connect_host(
    config: &Config,
    tls: Option<&TlsSetup>,
    host: &HostEntry,
    want: TargetSessionAttrs,
    failures: &mut Vec<(String, Error)>,
    span: &Span,
) -> Result<Option<(DefaultConnection, ConnectInfo)>, Error> {
    let addrs = match resolve(host).await {
        Ok(a) => a,
        Err(e) => {
            failures.push((
                host.display_host(),
                Error::io("could not resolve the host name", e),
            ));
            return Ok(None);
        }
    };
    for addr in addrs {
        let label = addr.map_or_else(|| host.display_host(), |a| a.to_string());
        let endpoint = spans::endpoint(config, host, addr);
        let attempt_span = trace::attempt_span(span, &endpoint);
        let result = connect_addr_bounded(config, tls, host, addr, want, &label)
            .instrument(attempt_span.clone())
            .await;
        let auth = result.as_ref().map(|(_, info)| info.auth_method);
        spans::attempt_ended(&attempt_span, auth);
        match result {
            Ok(mut found) => {
                found.0.endpoint = endpoint;
                return Ok(Some(found));
            }
            Err(e) if e.kind() == crate::ErrorKind::Config => return Err(e),
            Err(e) => failures.push((label, e)),
        }
    }
    Ok(None)
}

/// One address, bounded by `connect_timeout`: connected, authenticated, and
/// the server checked against `want`.
async fn connect_addr_bounded(
    config: &Config,
    tls: Option<&TlsSetup>,
    host: &HostEntry,
    addr: Option<SocketAddr>,
    want: TargetSessionAttrs,
    label: &str,
) -> Result<(DefaultConnection, ConnectInfo), Error> {
    let attempt = async {
        let (mut client, auth_method) = connect_addr(config, tls, host, addr).await?;
        check_session_attrs(&mut client, want).await?;
        let info = ConnectInfo {
            host: host.clone(),
            addr,
            auth_method,
        };
        if let Some(key) = client.session().backend_key().cloned() {
            client.cancel_token = Some(CancelToken::new(CancelTarget {
                config: config.clone(),
                info: info.clone(),
                key,
            }));
        }
        Ok::<_, Error>((client, info))
    };
    match config.connect_timeout_used() {
        Some(limit) => tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Error::timeout(format!(
                    "timeout expired after {limit:?} connecting to {label}"
                )))
            }),
        None => attempt.await,
    }
}

async fn resolve(host: &HostEntry) -> std::io::Result<Vec<Option<SocketAddr>>> {
    Ok(match host.dial_target() {
        DialTarget::Unix(_) => vec![None],
        DialTarget::Addr(ip, port) => vec![Some(SocketAddr::new(ip, port))],
        DialTarget::Name(name, port) => tokio::net::lookup_host((name.as_str(), port))
            .await?
            .map(Some)
            .collect(),
    })
}

async fn dial(
    config: &Config,
    host: &HostEntry,
    addr: Option<SocketAddr>,
) -> Result<Socket, Error> {
    match (addr, host.dial_target()) {
        (Some(addr), _) => TcpTransport::connect(addr, &socket_options(config))
            .await
            .map(Socket::Tcp)
            .map_err(|e| Error::io("could not connect", e)),
        (None, DialTarget::Unix(path)) => {
            let socket = UnixTransport::connect(&path)
                .await
                .map_err(|e| Error::io("could not connect to the Unix socket", e))?;
            if let Some(want) = &config.require_peer {
                peer::check(&socket, want)?;
            }
            Ok(Socket::Unix(socket))
        }
        (None, _) => Err(Error::config("no address to dial")),
    }
}

fn socket_options(config: &Config) -> SocketOptions {
    SocketOptions {
        // Zero means the OS default, whether it came from a string or from code.
        keepalive: config.keepalive.enabled.then_some(KeepaliveOptions {
            idle: config.keepalive.idle.filter(|d| !d.is_zero()),
            interval: config.keepalive.interval.filter(|d| !d.is_zero()),
            count: config.keepalive.count.filter(|&c| c != 0),
        }),
        user_timeout: config.tcp_user_timeout.filter(|d| !d.is_zero()),
    }
}

/// One address: dial, negotiate TLS per sslmode, start up. sslmode=allow tries
/// plaintext, then TLS on a second dial; prefer falls back to a plaintext dial
/// when the TLS handshake fails (never after an injection refusal).
async fn connect_addr(
    config: &Config,
    tls: Option<&TlsSetup>,
    host: &HostEntry,
    addr: Option<SocketAddr>,
) -> Result<(DefaultConnection, AuthMethod), Error> {
    let use_tls = match (tls, config.ssl_mode) {
        (None, _) | (_, SslMode::Disable) => false,
        _ if host.is_unix() => false,
        (_, SslMode::Allow) => {
            let plain = attempt(config, None, host, addr).await;
            return match plain {
                Ok(ok) => Ok(ok),
                Err(first) => attempt(config, tls, host, addr).await.map_err(|second| {
                    Error::with_kind_of(
                        &second,
                        format!(
                            "sslmode=allow: plaintext attempt failed: {}; SSL fallback failed: {}",
                            first.report(),
                            second.report()
                        ),
                    )
                }),
            };
        }
        _ => true,
    };
    let result = attempt(config, use_tls.then_some(tls).flatten(), host, addr).await;
    match result {
        Err(e) if config.ssl_mode == SslMode::Prefer && use_tls && prefer_retries_after(&e) => {
            tracing::warn!(host = %host.display_host(), error = %e.report(), "attempt with TLS failed (sslmode=prefer); retrying without TLS");
            attempt(config, None, host, addr).await
        }
        other => other,
    }
}

/// sslmode=prefer retries in plaintext, as libpq does, after a failed TLS
/// handshake or a server refusal over TLS (a `hostnossl` entry, say), but never
/// after refusing injected bytes: that is an attack, not a missing feature.
fn prefer_retries_after(e: &Error) -> bool {
    match e.kind() {
        crate::ErrorKind::Tls => !negotiate::is_injection(e),
        _ => e.as_db_error().is_some(),
    }
}

async fn attempt(
    config: &Config,
    tls: Option<&TlsSetup>,
    host: &HostEntry,
    addr: Option<SocketAddr>,
) -> Result<(DefaultConnection, AuthMethod), Error> {
    let socket = dial(config, host, addr).await?;
    establish(socket, config, tls, host).await
}

/// Connects over a transport the caller already has (a simulated stream, a
/// tunnel): SSL negotiation per `config.ssl_mode` (TLS unless the mode is
/// `disable` or `allow`, since there is no second dial to fall back to), then
/// startup and authentication. `host` names the server for TLS and errors.
///
/// # Errors
/// As [`connect`] for a single host.
pub async fn connect_transport<T: Transport>(
    transport: T,
    config: &Config,
    host: &HostEntry,
) -> Result<(Connection<MaybeTls<T>>, AuthMethod), Error> {
    let span = trace::connect_span();
    let result = async {
        let config = &*config.resolved()?;
        trace::connect_namespace(&span, spans::namespace(config));
        let mut endpoint = spans::endpoint(config, host, None);
        endpoint.transport = spans::transport_name(transport.kind());
        let attempt_span = trace::attempt_span(&span, &endpoint);
        let result = async {
            let tls = first_attempt_tls(config, host)?;
            establish(transport, config, tls.as_ref(), host).await
        }
        .instrument(attempt_span.clone())
        .await;
        spans::attempt_ended(&attempt_span, result.as_ref().map(|(_, m)| *m));
        let (mut client, method) = result?;
        client.endpoint = endpoint;
        Ok((client, method))
    }
    .instrument(span.clone())
    .await;
    trace::outcome(&span, result.as_ref().err());
    result
}

/// SSL negotiation per `tls` and `config`, then startup, over `socket`.
async fn establish<T: Transport>(
    socket: T,
    config: &Config,
    tls: Option<&TlsSetup>,
    host: &HostEntry,
) -> Result<(Connection<MaybeTls<T>>, AuthMethod), Error> {
    let transport = negotiate_ssl(socket, config, tls, host).await?;
    // The current span is the attempt's (`connect_host`, `connect_transport`).
    trace::attempt_tls(&Span::current(), matches!(transport, MaybeTls::Tls(_)));
    let session = Session::new(config.session);
    let mut client = Connection::new(transport, session);
    let method = startup::startup(&mut client, config, host).await?;
    client.session.release_idle_buffers();
    Ok((client, method))
}

/// The TLS setup for a first attempt at `host`: none for disable and allow
/// (allow tries plaintext first) and for Unix sockets.
fn first_attempt_tls(config: &Config, host: &HostEntry) -> Result<Option<TlsSetup>, Error> {
    Ok(match config.ssl_mode {
        SslMode::Disable | SslMode::Allow => None,
        _ if host.is_unix() => None,
        _ => Some(TlsSetup::new(config)?),
    })
}

/// SSL negotiation per `tls` and `config` over `socket`: TLS (direct, or
/// after SSLRequest and `S`), or plaintext where the mode allows it.
async fn negotiate_ssl<T: Transport>(
    mut socket: T,
    config: &Config,
    tls: Option<&TlsSetup>,
    host: &HostEntry,
) -> Result<MaybeTls<T>, Error> {
    Ok(match tls {
        None => MaybeTls::Plain(socket),
        Some(setup) => {
            let name = setup.server_name(host)?;
            let direct = config.ssl_negotiation == SslNegotiation::Direct;
            if direct {
                MaybeTls::Tls(Box::new(
                    negotiate::start_tls(socket, setup, name, true).await?,
                ))
            } else {
                match negotiate::request_ssl(&mut socket).await? {
                    SslAnswer::Accepted => MaybeTls::Tls(Box::new(
                        negotiate::start_tls(socket, setup, name, false).await?,
                    )),
                    // Under allow this attempt is already the fallback: plaintext failed.
                    SslAnswer::Refused if config.ssl_mode == SslMode::Prefer => {
                        tracing::warn!(host = %host.display_host(), "server does not support SSL; continuing without TLS (sslmode=prefer)");
                        MaybeTls::Plain(socket)
                    }
                    SslAnswer::Refused => {
                        return Err(Error::tls(
                            "Server does not support SSL, but SSL was required",
                        ));
                    }
                }
            }
        }
    })
}

/// Checks the server matches `want`, from the ParameterStatus values PostgreSQL
/// 14+ reports, or by asking.
async fn check_session_attrs(
    client: &mut DefaultConnection,
    want: TargetSessionAttrs,
) -> Result<(), Error> {
    if want == TargetSessionAttrs::Any {
        return Ok(());
    }
    let read_only = client
        .session()
        .parameter("default_transaction_read_only")
        .map(|v| v == "on");
    let in_recovery = match client.session().parameter("in_hot_standby") {
        Some(v) => v == "on",
        None => ask(client, "SELECT pg_catalog.pg_is_in_recovery()").await? == "t",
    };
    let read_only = match read_only {
        Some(ro) => ro || in_recovery,
        None => ask(client, "SHOW transaction_read_only").await? == "on",
    };
    let ok = match want {
        TargetSessionAttrs::ReadWrite => !read_only,
        TargetSessionAttrs::ReadOnly => read_only,
        TargetSessionAttrs::Primary => !in_recovery,
        TargetSessionAttrs::Standby => in_recovery,
        TargetSessionAttrs::Any | TargetSessionAttrs::PreferStandby => true,
    };
    if ok {
        return Ok(());
    }
    client.close().await;
    Err(Error::connect_rejected(format!(
        "server does not satisfy target_session_attrs={want:?} (read_only={read_only}, in_recovery={in_recovery})"
    )))
}

async fn ask(client: &mut DefaultConnection, sql: &str) -> Result<String, Error> {
    let results = client.simple_query(sql).await?;
    Ok(results
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_default())
}

/// The connection a [`CancelToken`] cancels: where it was made, and its key.
struct CancelTarget {
    config: Config,
    info: ConnectInfo,
    key: crate::session::BackendKey,
}

impl std::fmt::Debug for CancelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As the token itself: the token's Debug shows its target.
        f.debug_struct("CancelToken")
            .field("config", &self.config)
            .field("info", &self.info)
            .field("key", &self.key)
            .finish()
    }
}

impl Cancel for CancelTarget {
    fn cancel(&self) -> CancelFuture<'_> {
        Box::pin(cancel(&self.config, &self.info, &self.key))
    }
}

/// How long [`cancel`] waits for the server to close the cancel connection.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Asks the server to cancel the query running on the connection `info` and
/// `key` describe: a CancelRequest on a new connection to the same address,
/// with SSL negotiated as `config`'s sslmode says (as libpq 17 does), so the
/// cancel key does not cross the network in the clear when the session did
/// not. `allow` sends it in plaintext, as its first attempt would; Unix
/// sockets never use TLS.
///
/// # Errors
/// Kind `Io`/`Timeout` if the cancel connection cannot be made or the server
/// does not close it; kind `Tls` if TLS is required and fails; kind
/// `InvalidInput` for an oversized key.
pub async fn cancel(
    config: &Config,
    info: &ConnectInfo,
    key: &crate::session::BackendKey,
) -> Result<(), Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = &*config.resolved()?;
    let socket = dial(config, &info.host, info.addr).await?;
    let tls = first_attempt_tls(config, &info.host)?;
    let mut socket = negotiate_ssl(socket, config, tls.as_ref(), &info.host).await?;
    let mut buf = bytes::BytesMut::new();
    crate::protocol::frontend::cancel_request(&mut buf, key.process_id, &key.secret_key)
        .map_err(Error::invalid_input)?;
    socket
        .write_all(&buf)
        .await
        .map_err(|e| Error::io("sending CancelRequest", e))?;
    socket
        .flush()
        .await
        .map_err(|e| Error::io("sending CancelRequest", e))?;
    // The server closes the connection once it has read the request.
    let mut sink = [0u8; 64];
    tokio::time::timeout(CANCEL_WAIT, async {
        while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .map_err(|_| Error::timeout("the server did not close the cancel connection"))
}
