//! Group C scenarios that need no socket: framing across reads, large messages,
//! the size cap; D50 (empty send buffer).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pg_transport::protocol::Message;
use pg_transport::transport::{SocketPeek, Transport, TransportKind};
use pg_transport::{Connection, ErrorKind, SessionConfig, State};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::support::*;

fn stream() -> Vec<u8> {
    concat(&[
        row_description(&["a", "b"]),
        data_row(&[Some(b"1"), None]),
        notice(&[(b'S', "NOTICE"), (b'M', "n")]),
        data_row(&[Some(b"22"), Some(b"xyz")]),
        parameter_status("TimeZone", "UTC"),
        command_complete("SELECT 2"),
        ready(b'I'),
    ])
}

fn drain(s: &mut pg_transport::Session, out: &mut Vec<String>) {
    while let Some(m) = s.next_message().unwrap() {
        out.push(format!("{m:?}"));
    }
}

#[test]
fn c42_every_split_point_parses_identically() {
    let bytes = stream();
    let mut whole = busy_session();
    whole.feed(&bytes).unwrap();
    let mut expected = Vec::new();
    drain(&mut whole, &mut expected);
    assert_eq!(expected.len(), 5);

    // One byte per read.
    let mut s = busy_session();
    let mut got = Vec::new();
    for b in &bytes {
        s.feed(std::slice::from_ref(b)).unwrap();
        drain(&mut s, &mut got);
    }
    assert_eq!(got, expected);

    // Every two-way split.
    for cut in 0..=bytes.len() {
        let mut s = busy_session();
        let mut got = Vec::new();
        s.feed(&bytes[..cut]).unwrap();
        drain(&mut s, &mut got);
        s.feed(&bytes[cut..]).unwrap();
        drain(&mut s, &mut got);
        assert_eq!(got, expected, "cut at {cut}");
        assert!(s.recv_buf().is_empty());
    }
}

#[test]
fn c43_five_megabyte_message_across_many_reads_then_shrink() {
    let mut s = busy_session();
    let payload: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let bytes = concat(&[data_row(&[Some(&payload)]), command_complete("SELECT 1")]);
    let row_len = data_row(&[Some(&payload)]).len();
    let (mut reads, mut fed) = (0, 0);
    let mut got = Vec::new();
    for chunk in bytes.chunks(64 * 1024 - 7) {
        let buf = s.prepare_read().unwrap();
        assert!(buf.capacity() - buf.len() >= chunk.len().min(8 * 1024));
        buf.extend_from_slice(chunk);
        s.commit_read(chunk.len());
        reads += 1;
        fed += chunk.len();
        while let Some(m) = s.next_message().unwrap() {
            match m {
                Message::DataRow(row) => {
                    assert!(
                        fed >= row_len && fed - chunk.len() < row_len,
                        "the row comes out with the read that completes it: fed {fed}, row {row_len}"
                    );
                    let mut columns = row.columns();
                    assert_eq!(
                        columns.next().unwrap().unwrap(),
                        &payload[..],
                        "reassembled exactly"
                    );
                    assert!(columns.next().is_none(), "one column");
                    got.push("DataRow");
                }
                Message::CommandComplete { .. } => got.push("CommandComplete"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(reads > 50);
    assert_eq!(
        got,
        ["DataRow", "CommandComplete"],
        "the row exactly once, then the end"
    );
    assert!(
        s.recv_buf().capacity() >= payload.len(),
        "grew to hold the message"
    );
    s.prepare_read().unwrap();
    assert!(
        s.recv_buf().capacity() <= 256 * 1024,
        "shrank back: {}",
        s.recv_buf().capacity()
    );
}

#[test]
fn c44_oversized_header_refused_before_any_body() {
    let config = SessionConfig::default().max_message_len(1024 * 1024);
    let mut s = ready_session(config);
    s.query("SELECT big").unwrap();
    let mut header = vec![b'D'];
    header.extend_from_slice(&(2 * 1024 * 1024i32).to_be_bytes());
    s.feed(&header).unwrap();
    let cap = s.recv_buf().capacity();
    let e = s.next_message().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.report().to_string().contains("limit"), "{e:#}");
    assert_eq!(s.state(), State::Closed);
    // No further reads: the buffer is not handed out again, and never grew.
    assert_eq!(s.prepare_read().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(s.recv_buf().capacity(), cap);
}

#[test]
fn c44_prepare_read_refuses_oversized_header_without_growing() {
    let config = SessionConfig::default().max_message_len(1024 * 1024);
    let mut s = ready_session(config);
    let mut header = vec![b'd'];
    header.extend_from_slice(&(i32::MAX).to_be_bytes());
    s.feed(&header).unwrap();
    let cap = s.recv_buf().capacity();
    let e = s.prepare_read().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert_eq!(
        s.recv_buf().capacity(),
        cap,
        "the hostile length reserved nothing"
    );
    assert!(cap < 1024 * 1024);
}

#[test]
fn c48_length_three_mid_query_is_a_protocol_error() {
    let mut s = busy_session();
    s.feed(&concat(&[data_row(&[Some(b"1")]), b"C\0\0\0\x03".to_vec()]))
        .unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::DataRow(_))
    ));
    let e = s.next_message().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(
        e.report().to_string().contains("Invalid message length"),
        "{e:#}"
    );
    assert_eq!(s.state(), State::Closed);
}

/// An in-memory transport that counts every write and flush and never has
/// anything to read.
#[derive(Default)]
struct Counting {
    written: Vec<u8>,
    writes: usize,
    flushes: usize,
}

impl Transport for Counting {
    fn probe(&self) -> SocketPeek {
        SocketPeek::Unavailable
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Simulated
    }
}

impl AsyncRead for Counting {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Counting {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writes += 1;
        this.written.extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().flushes += 1;
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// D50: `send_buf_msg` with an empty send buffer does no I/O and no error;
/// the same connection with a message queued writes it once and flushes, so
/// the counts are seen to count.
#[tokio::test]
async fn d50_empty_send_buffer_has_nothing_to_write() {
    let mut c = Connection::new(Counting::default(), ready_session(SessionConfig::default()));
    assert!(c.session_mut().send_buf().is_empty());
    c.send_buf_msg().await.unwrap();
    let t = c.transport().unwrap();
    assert_eq!((t.writes, t.flushes), (0, 0), "no I/O");
    assert_eq!(c.state(), State::Ready);

    c.session_mut().query("SELECT 1").unwrap();
    let queued = c.session_mut().send_buf().pending().to_vec();
    assert_eq!(queued, b"Q\0\0\0\x0dSELECT 1\0");
    c.send_buf_msg().await.unwrap();
    let t = c.transport().unwrap();
    assert_eq!((t.writes, t.flushes), (1, 1));
    assert_eq!(t.written, queued);
    assert!(c.session_mut().send_buf().is_empty());
}

/// An idle connection holds no receive buffer: after a response, even one
/// that grew the buffer to hold a 300 KB row, the allocation is given back
/// and the next response allocates the normal size again (issue 13 §1).
#[tokio::test]
async fn an_idle_connection_gives_its_receive_buffer_back() {
    use pg_transport::RowCounter;
    use pg_transport::transport::UnixTransport;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (client_end, mut server) = tokio::net::UnixStream::pair().unwrap();
    let mut c = Connection::new(
        UnixTransport::from_stream(client_end),
        ready_session(SessionConfig::default()),
    );
    let big = vec![b'x'; 300_000];
    let peer = async move {
        for column in [&b"1"[..], &big] {
            let mut header = [0u8; 5];
            server.read_exact(&mut header).await?;
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            server.read_exact(&mut vec![0; len as usize - 4]).await?;
            let reply = concat(&[
                row_description(&["c"]),
                data_row(&[Some(column)]),
                command_complete("SELECT 1"),
                ready(b'I'),
            ]);
            server.write_all(&reply).await?;
        }
        io::Result::Ok(server)
    };
    let client = async {
        for _ in 0..2 {
            let mut rows = RowCounter::default();
            c.query_with("SELECT c", &mut rows).await.unwrap();
            assert_eq!(rows.rows, 1);
            assert_eq!(c.state(), State::Ready);
            assert_eq!(c.session().recv_buf().capacity(), 0, "released while idle");
        }
    };
    let (peer, ()) = tokio::join!(peer, client);
    peer.unwrap();
}

/// A connection waiting for notifications holds no receive buffer while it
/// waits, nor after it hands one out: one small notification, then a burst
/// larger than the idle read (512 bytes) that must arrive whole and in
/// order.
#[tokio::test]
async fn a_connection_waiting_for_notifications_holds_no_receive_buffer() {
    use pg_transport::transport::UnixTransport;
    use tokio::io::AsyncWriteExt;

    let (client_end, mut server) = tokio::net::UnixStream::pair().unwrap();
    let mut c = Connection::new(
        UnixTransport::from_stream(client_end),
        ready_session(SessionConfig::default()),
    );
    // As `connect` leaves it after startup.
    c.session_mut().release_idle_buffers();
    let capacity = |c: &Connection<UnixTransport>| c.session().recv_buf().capacity();
    // One poll of the wait: nothing has arrived, and nothing is held.
    tokio::select! {
        biased;
        n = c.wait_notification(None) => panic!("nothing was sent, got {n:?}"),
        () = std::future::ready(()) => {}
    }
    assert_eq!(capacity(&c), 0, "held while waiting");

    server
        .write_all(&notification(7, "jobs", "one"))
        .await
        .unwrap();
    let n = c.wait_notification(None).await.unwrap().unwrap();
    assert_eq!((n.process_id, &*n.channel, &*n.payload), (7, "jobs", "one"));
    assert_eq!(capacity(&c), 0, "held after the notification");

    let payloads: Vec<String> = (0..3).map(|i| format!("{i}{}", "x".repeat(400))).collect();
    let burst = concat(
        &payloads
            .iter()
            .map(|p| notification(7, "jobs", p))
            .collect::<Vec<_>>(),
    );
    assert!(burst.len() > 512);
    server.write_all(&burst).await.unwrap();
    for p in &payloads {
        let n = c.wait_notification(None).await.unwrap().unwrap();
        assert_eq!(&*n.payload, p.as_str());
    }
    assert_eq!(capacity(&c), 0, "held after the burst");
    assert_eq!(c.state(), State::Ready);
}
