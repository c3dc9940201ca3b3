//! turmoil's simulated TCP stream as a [`Transport`], so the same connection
//! code runs in deterministic simulations (feature `sim`).

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::TcpStream;

use super::probe::SocketPeek;
use super::{Transport, TransportKind};

/// A turmoil TCP stream. The probe answers like the real one: data waiting,
/// peer closed (FIN or reset), or idle — except that turmoil cannot show a FIN
/// queued behind unread bytes, so `DataThenClosed` is reported as `Data`.
#[derive(Debug)]
pub struct SimTransport {
    /// The mutex only lets `probe(&self)` peek; reads and writes reach the
    /// stream through `get_mut`, without locking.
    stream: Mutex<TcpStream>,
}

impl SimTransport {
    /// Wraps a connected simulated stream.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream: Mutex::new(stream),
        }
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        let this = self.get_mut();
        let stream = this
            .stream
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Pin::new(stream)
    }
}

impl Transport for SimTransport {
    fn probe(&self) -> SocketPeek {
        let Ok(mut stream) = self.stream.try_lock() else {
            return SocketPeek::Unavailable;
        };
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // A no-op waker: the probe never waits. No read is pending while a
        // probe runs (both need the connection), so no real waker is displaced.
        match stream.poll_peek(&mut Context::from_waker(Waker::noop()), &mut buf) {
            Poll::Ready(Ok(0)) => SocketPeek::Closed,
            Poll::Ready(Ok(_)) => SocketPeek::Data,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => SocketPeek::Closed,
            Poll::Ready(Err(e)) => SocketPeek::Error(e.kind()),
            Poll::Pending => SocketPeek::Idle,
        }
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Simulated
    }
}

impl AsyncRead for SimTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for SimTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}
