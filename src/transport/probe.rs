//! The liveness probe: one `recv(MSG_PEEK | MSG_DONTWAIT)`, retried on EINTR.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

/// What a non-blocking peek at a socket saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketPeek {
    /// At least one byte is readable.
    Data,
    /// Bytes are readable and the peer has closed after them (Linux: POLLRDHUP).
    /// A PostgreSQL server that ends a session sends a FATAL ErrorResponse and
    /// then FIN, so this is what a terminated idle connection usually shows.
    DataThenClosed,
    /// The peer closed (FIN) or reset the connection.
    Closed,
    /// Open, nothing to read.
    Idle,
    /// The kernel was short of memory (ENOMEM/ENOBUFS): says nothing about the peer.
    Transient,
    /// Another error; the socket is unusable.
    Error(io::ErrorKind),
    /// No socket to probe (no handle, or a transport without one).
    Unavailable,
}

impl SocketPeek {
    /// Whether the peer is known to be gone: FIN/RST (with or without bytes
    /// before it) or an unclassified error.
    pub fn peer_gone(self) -> bool {
        matches!(self, Self::Closed | Self::DataThenClosed | Self::Error(_))
    }

    /// Whether bytes are waiting to be read.
    pub fn has_data(self) -> bool {
        matches!(self, Self::Data | Self::DataThenClosed)
    }
}

/// Peeks at `socket` without blocking and without consuming a byte.
pub fn peek_socket(socket: &impl AsFd) -> SocketPeek {
    let sock = socket2::SockRef::from(socket);
    let mut byte = [MaybeUninit::<u8>::uninit()];
    loop {
        return match sock.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => SocketPeek::Closed,
            Ok(_) if peer_hung_up(socket) => SocketPeek::DataThenClosed,
            Ok(_) => SocketPeek::Data,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => SocketPeek::Idle,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => SocketPeek::Closed,
                _ if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOBUFS)) => {
                    SocketPeek::Transient
                }
                kind => SocketPeek::Error(kind),
            },
        };
    }
}

/// Whether the peer has shut down its sending side, even with bytes still
/// unread: `poll` with POLLRDHUP and a zero timeout.
#[cfg(target_os = "linux")]
fn peer_hung_up(socket: &impl AsFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: socket.as_fd().as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `fds` is one valid, initialised pollfd that outlives the call; a
    // zero timeout makes the call non-blocking; the fd is borrowed and open.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n == 1 && fds.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

#[cfg(not(target_os = "linux"))]
fn peer_hung_up(_socket: &impl AsFd) -> bool {
    false
}
