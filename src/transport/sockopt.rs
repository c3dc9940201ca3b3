//! Socket options: TCP_NODELAY, keepalive, TCP_USER_TIMEOUT.

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Keepalive timings; `None` keeps the OS default for that timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepaliveOptions {
    /// Idle time before the first probe (TCP_KEEPIDLE).
    pub idle: Option<Duration>,
    /// Time between probes (TCP_KEEPINTVL).
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection drops (TCP_KEEPCNT).
    pub count: Option<u32>,
}

/// Options applied to a TCP socket right after it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// SO_KEEPALIVE on with these timings, or off (`None`).
    pub keepalive: Option<KeepaliveOptions>,
    /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged (Linux).
    pub user_timeout: Option<Duration>,
}

impl Default for SocketOptions {
    /// Keepalive on with OS timings; no user timeout. TCP_NODELAY is always on.
    fn default() -> Self {
        Self {
            keepalive: Some(KeepaliveOptions::default()),
            user_timeout: None,
        }
    }
}

/// Applies `options` (and TCP_NODELAY) to a connected TCP socket.
///
/// # Errors
/// The first failing setsockopt; the caller drops (closes) the socket.
pub(crate) fn configure_tcp(sock: SockRef<'_>, options: &SocketOptions) -> io::Result<()> {
    // Messages are written whole and a reply is awaited: Nagle would only add latency.
    sock.set_tcp_nodelay(true)?;
    match options.keepalive {
        None => sock.set_keepalive(false)?,
        Some(k) => {
            sock.set_keepalive(true)?;
            let mut params = TcpKeepalive::new();
            let mut any = false;
            if let Some(idle) = k.idle {
                params = params.with_time(idle);
                any = true;
            }
            if let Some(interval) = k.interval {
                params = params.with_interval(interval);
                any = true;
            }
            if let Some(count) = k.count {
                params = params.with_retries(count);
                any = true;
            }
            if any {
                sock.set_tcp_keepalive(&params)?;
            }
        }
    }
    if let Some(timeout) = options.user_timeout {
        sock.set_tcp_user_timeout(Some(timeout))?;
    }
    Ok(())
}
