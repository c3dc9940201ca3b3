//! `Connection` over an in-memory pipe, where what arrives in one read is
//! exactly what the test wrote: `set_read_spin` (a read that finds the socket
//! empty in the middle of a response stays runnable for its budget, then
//! parks; an idle connection never spins; spinning changes nothing about what
//! is read), notifications that arrive in the same read as a
//! ReadyForQuery, and the cap on what `simple_query` collects.

use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use pg_transport::connect::{HostEntry, connect_transport};
use pg_transport::transport::{MaybeTls, SocketPeek, Transport, TransportKind};
use pg_transport::{Config, Connection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// An in-memory transport with no probe.
struct Pipe(DuplexStream);

impl Transport for Pipe {
    fn probe(&self) -> SocketPeek {
        SocketPeek::Unavailable
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Simulated
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Counts wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

const HELLO: &[u8] = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(rt: &tokio::runtime::Runtime) -> (Connection<MaybeTls<Pipe>>, DuplexStream) {
    let (client_end, mut server_end) = tokio::io::duplex(1 << 16);
    rt.block_on(async {
        server_end.write_all(HELLO).await.unwrap();
        let config: Config = "user=u sslmode=disable".parse().unwrap();
        let host = HostEntry {
            host: Some("pipe".into()),
            hostaddr: None,
            port: 5432,
        };
        let (c, _) = connect_transport(Pipe(client_end), &config, &host)
            .await
            .unwrap();
        (c, server_end)
    })
}

#[test]
fn spins_mid_response_for_its_budget_then_parks() {
    let rt = runtime();
    let (mut c, mut server) = client(&rt);
    let budget = Duration::from_millis(5);
    c.set_read_spin(budget);
    let counter = Arc::new(Counter::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let wakes = || counter.0.load(Ordering::SeqCst);

    // Idle (Ready): a read waiting for notifications parks at once.
    {
        let mut idle = pin!(c.fill_recv_buf(None));
        assert!(idle.as_mut().poll(&mut cx).is_pending());
        assert_eq!(wakes(), 0, "an idle connection must not spin");
    }

    // Mid-response: the query is sent, its reply has not arrived.
    let started = Instant::now();
    let mut query = pin!(c.simple_query("SELECT 1"));
    let mut polls = 0;
    loop {
        let before = wakes();
        assert!(query.as_mut().poll(&mut cx).is_pending());
        polls += 1;
        if wakes() == before {
            break;
        }
    }
    assert!(polls > 1, "the empty read was retried");
    assert!(
        started.elapsed() >= budget,
        "parked after {:?}, before its budget of {budget:?}",
        started.elapsed()
    );

    // The reply arrives: it is read whole, as without spinning.
    let reply = b"T\0\0\0\x1a\0\x01a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0\
                  D\0\0\0\x0b\0\x01\0\0\0\x01x\
                  C\0\0\0\x0dSELECT 1\0\
                  Z\0\0\0\x05I";
    rt.block_on(server.write_all(reply)).unwrap();
    let result = loop {
        if let Poll::Ready(r) = query.as_mut().poll(&mut cx) {
            break r;
        }
    };
    let results = result.unwrap();
    assert_eq!(results[0].rows, vec![vec![Some("x".to_owned())]]);
}

#[test]
fn no_spin_by_default() {
    let rt = runtime();
    let (mut c, _server) = client(&rt);
    let counter = Arc::new(Counter::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut query = pin!(c.simple_query("SELECT 1"));
    assert!(query.as_mut().poll(&mut cx).is_pending());
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        0,
        "without a budget an empty read parks at once"
    );
}

/// A notification that arrives in the same read as the ReadyForQuery that
/// ends a query must be delivered by `wait_notification` (and the stream)
/// without any further bytes from the server: none may ever come.
#[test]
fn notification_behind_ready_for_query_is_delivered() {
    let rt = runtime();
    let (mut c, mut server) = client(&rt);
    let reply = b"I\0\0\0\x04Z\0\0\0\x05I";
    let first = b"A\0\0\0\x0f\0\0\0\x07ch\0one\0";
    let second = b"A\0\0\0\x0f\0\0\0\x07ch\0two\0";
    rt.block_on(server.write_all(&[&reply[..], first, second].concat()))
        .unwrap();
    rt.block_on(async {
        c.simple_query("").await.unwrap();
        let wait = Duration::from_secs(5);
        let n = c.wait_notification(Some(wait)).await.unwrap();
        assert_eq!(n.map(|n| n.payload).as_deref(), Some("one"));
        let mut stream = c.notifications();
        let n = tokio::time::timeout(
            wait,
            std::future::poll_fn(|cx| futures_util::Stream::poll_next(Pin::new(&mut stream), cx)),
        )
        .await
        .expect("delivered without new bytes");
        assert_eq!(n.unwrap().unwrap().payload, "two");
    });
    assert_eq!(c.state(), pg_transport::State::Ready);
}

/// One backend message: type byte, length counting itself, body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(i32::try_from(body.len()).unwrap() + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A server that answers a simple query with more rows than the cap allows
/// gets a `Usage` error naming the cap, not a client that collects them all;
/// the response is drained, so the connection answers the next query.
#[test]
fn simple_query_refuses_a_result_over_the_cap() {
    use pg_transport::protocol::limits::MAX_SIMPLE_QUERY_RESULT_BYTES;
    const COLUMN: usize = 1 << 20;
    let rows = MAX_SIMPLE_QUERY_RESULT_BYTES / COLUMN + 1;
    let rt = runtime();
    let (mut c, mut server) = client(&rt);
    let mut row = 1i16.to_be_bytes().to_vec();
    row.extend_from_slice(&i32::try_from(COLUMN).unwrap().to_be_bytes());
    row.resize(row.len() + COLUMN, b'x');
    let row = message(b'D', &row);
    let tail = [
        message(b'C', format!("SELECT {rows}\0").as_bytes()),
        message(b'Z', b"I"),
    ]
    .concat();
    let reply = async {
        server
            .write_all(b"T\0\0\0\x1a\0\x01a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0")
            .await?;
        for _ in 0..rows {
            server.write_all(&row).await?;
        }
        server.write_all(&tail).await?;
        // The second query's answer: one small row.
        server
            .write_all(b"D\0\0\0\x0b\0\x01\0\0\0\x01y\x43\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I")
            .await
    };
    let (result, written) =
        rt.block_on(async { tokio::join!(c.simple_query("SELECT big"), reply) });
    written.expect("the scripted server writes its reply");
    let e = result.expect_err("a result over the cap");
    assert_eq!(e.kind(), pg_transport::ErrorKind::Usage, "{e}");
    assert!(
        e.to_string().contains("MAX_SIMPLE_QUERY_RESULT_BYTES"),
        "the error names the limit: {e}"
    );
    assert_eq!(c.state(), pg_transport::State::Ready);
    let next = rt.block_on(c.simple_query("SELECT 1")).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].rows, [[Some("y".to_owned())]]);
}
