//! Transports: byte streams to a server, and a non-blocking look at the socket.
//!
//! This layer knows nothing of PostgreSQL: it moves bytes, sets socket options,
//! and answers "is the peer gone?" without a round trip.
//!
//! # Implementing [`Transport`]
//! An implementation must guarantee:
//! - `poll_read` returning `Ready(Ok(()))` with nothing filled means the peer
//!   closed (EOF); a reset is an `Err` (`ConnectionReset`).
//! - Reads are cancel-safe: a read future dropped before completion consumed
//!   nothing from the stream.
//! - `poll_flush` pushes every byte accepted by `poll_write` to the peer (TLS
//!   layers hold bytes back until flushed).
//! - [`Transport::probe`] never blocks and never consumes a byte.

mod bulk;
mod probe;
#[cfg(feature = "sim")]
mod sim;
mod sockopt;
mod tcp;
mod tls;
mod unix;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use bulk::BulkRead;
pub use probe::{SocketPeek, peek_socket};
#[cfg(feature = "sim")]
pub use sim::SimTransport;
pub use sockopt::{KeepaliveOptions, SocketOptions};
pub use tcp::TcpTransport;
pub use tls::{PlaintextBeforeTls, TlsInfo, TlsTransport};
pub use unix::UnixTransport;

/// What kind of stream a transport is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// TCP.
    Tcp,
    /// A Unix-domain socket.
    Unix,
    /// TLS over another transport.
    Tls,
    /// A simulated or in-memory stream.
    Simulated,
}

/// A byte stream to a server plus a non-blocking probe of its socket.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Looks at the socket without blocking or consuming: data waiting, peer
    /// closed, idle, or why it cannot tell.
    fn probe(&self) -> SocketPeek;

    /// The kind of stream.
    fn kind(&self) -> TransportKind;

    /// TLS details, for a TLS transport.
    fn tls_info(&self) -> Option<&TlsInfo> {
        None
    }

    /// Switches bulk reading on (`Some`) or off (`None`); see [`BulkRead`].
    /// While on, a read that finds nothing
    /// waiting sleeps up to [`BulkRead::max_wait`] without being woken by
    /// each arriving send, then returns what came; a read that still finds
    /// nothing waits for data as usual.
    ///
    /// Returns `Ok(false)` if the transport cannot (the default: simulated
    /// streams, platforms other than Linux; also a sandbox that refuses a
    /// `timerfd`); the caller then reads as usual.
    ///
    /// # Errors
    /// A socket option or timer that could not be set; the caller should
    /// treat the connection as broken.
    fn set_bulk_read(&mut self, _bulk: Option<&BulkRead>) -> io::Result<bool> {
        Ok(false)
    }
}

/// A plain socket: TCP or Unix.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpTransport),
    /// Unix-domain.
    Unix(UnixTransport),
}

/// A plain or TLS-wrapped transport; what `connect` returns.
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// No TLS.
    Plain(T),
    /// TLS over `T`.
    Tls(Box<TlsTransport<T>>),
}

macro_rules! delegate_io {
    ([$($g:ident: $bound:path)?] $ty:ty, $($variant:path),+) => {
        impl$(<$g: $bound>)? AsyncRead for $ty {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($variant(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl$(<$g: $bound>)? AsyncWrite for $ty {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($variant(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($variant(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $($variant(s) => s.is_write_vectored(),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($variant(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($variant(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_io!([] Socket, Socket::Tcp, Socket::Unix);
delegate_io!([T: Transport] MaybeTls<T>, MaybeTls::Plain, MaybeTls::Tls);

impl Transport for Socket {
    fn probe(&self) -> SocketPeek {
        match self {
            Self::Tcp(s) => s.probe(),
            Self::Unix(s) => s.probe(),
        }
    }

    fn kind(&self) -> TransportKind {
        match self {
            Self::Tcp(_) => TransportKind::Tcp,
            Self::Unix(_) => TransportKind::Unix,
        }
    }

    fn set_bulk_read(&mut self, bulk: Option<&BulkRead>) -> io::Result<bool> {
        match self {
            Self::Tcp(s) => s.set_bulk_read(bulk),
            Self::Unix(s) => s.set_bulk_read(bulk),
        }
    }
}

impl<T: Transport> Transport for MaybeTls<T> {
    fn probe(&self) -> SocketPeek {
        match self {
            Self::Plain(s) => s.probe(),
            Self::Tls(s) => s.probe(),
        }
    }

    fn kind(&self) -> TransportKind {
        match self {
            Self::Plain(s) => s.kind(),
            Self::Tls(_) => TransportKind::Tls,
        }
    }

    fn tls_info(&self) -> Option<&TlsInfo> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(s) => s.tls_info(),
        }
    }

    fn set_bulk_read(&mut self, bulk: Option<&BulkRead>) -> io::Result<bool> {
        match self {
            Self::Plain(s) => s.set_bulk_read(bulk),
            Self::Tls(s) => s.set_bulk_read(bulk),
        }
    }
}
