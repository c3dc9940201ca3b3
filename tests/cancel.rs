//! Poll-level cancellation harness: every public async read, write and
//! operation is polled k times with a no-op waker, dropped, and followed by a
//! fresh call, for every k until it completes. The rule: nothing is lost or
//! duplicated, or the connection ends `Closed` — never half-parsed.
//!
//! The server is a byte script written into an in-memory duplex ahead of time;
//! the client side stutters (every other poll is `Pending`, reads are cut to 7
//! bytes) so each call spans many polls.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::Stream;
use pg_transport::connect::{HostEntry, connect_transport};
use pg_transport::transport::{MaybeTls, SocketPeek, Transport, TransportKind};
use pg_transport::{Config, Connection, Message, State, source_fn};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// A duplex end that returns `Pending` on every other poll of each direction,
/// reads at most 7 bytes and writes at most 11.
struct Stutter {
    inner: DuplexStream,
    /// One flip per direction: with one shared, a COPY IN that polls its
    /// receive watch before each write would hand every pass to the read and
    /// never write a second time.
    flips: [bool; 2],
}

const READ: usize = 0;
const WRITE: usize = 1;

impl Stutter {
    fn pause(&mut self, direction: usize, cx: &mut Context<'_>) -> bool {
        let flip = &mut self.flips[direction];
        *flip = !*flip;
        if *flip {
            cx.waker().wake_by_ref();
        }
        *flip
    }
}

impl Transport for Stutter {
    fn probe(&self) -> SocketPeek {
        SocketPeek::Unavailable
    }
    fn kind(&self) -> TransportKind {
        TransportKind::Simulated
    }
}

impl AsyncRead for Stutter {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pause(READ, cx) {
            return Poll::Pending;
        }
        let mut small = [0u8; 7];
        let mut sub = ReadBuf::new(&mut small[..buf.remaining().min(7)]);
        let r = Pin::new(&mut this.inner).poll_read(cx, &mut sub);
        buf.put_slice(sub.filled());
        r
    }
}

impl AsyncWrite for Stutter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pause(WRITE, cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_write(cx, &buf[..buf.len().min(11)])
    }
    /// Cut to 11 bytes across the slices, like `poll_write`, so COPY IN's
    /// vectored writes also stop inside a slice.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pause(WRITE, cx) {
            return Poll::Pending;
        }
        let mut room = 11;
        let mut parts = Vec::new();
        for b in bufs {
            if room == 0 {
                break;
            }
            let take = b.len().min(room);
            parts.push(io::IoSlice::new(&b[..take]));
            room -= take;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, &parts)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

type Client = Connection<MaybeTls<Stutter>>;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

const HELLO: &[u8] = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";

fn notification(payload: &str) -> Vec<u8> {
    msg(
        b'A',
        &[&7i32.to_be_bytes()[..], b"ch\0", payload.as_bytes(), b"\0"].concat(),
    )
}

/// A connected client whose server has already "sent" `script` after startup.
/// The server end is returned so it stays open (and absorbs our writes).
fn client(script: &[u8]) -> (Client, DuplexStream) {
    let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        server_end
            .write_all(&[HELLO, script].concat())
            .await
            .unwrap();
        let config: Config = "user=u sslmode=disable".parse().unwrap();
        let host = HostEntry {
            host: Some("sim".into()),
            hostaddr: None,
            port: 5432,
        };
        let (c, _) = connect_transport(
            Stutter {
                inner: client_end,
                flips: [false; 2],
            },
            &config,
            &host,
        )
        .await
        .unwrap();
        (c, server_end)
    })
}

/// Polls `fut` up to `k` times with a no-op waker; its output if it finished.
fn poll_k<F: Future>(fut: F, k: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..k {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

/// Runs `fut` to completion with a no-op waker (everything here is ready-driven).
fn finish<F: Future>(fut: F) -> F::Output {
    poll_k(fut, 100_000).expect("finishes")
}

fn rows_script() -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..5 {
        s.extend(notification(&format!("n{i}")));
        s.extend(msg(
            b'D',
            &[
                &1i16.to_be_bytes()[..],
                &2i32.to_be_bytes(),
                format!("r{i}").as_bytes(),
            ]
            .concat(),
        ));
    }
    s.extend(msg(b'C', b"SELECT 5\0"));
    s.extend(msg(b'Z', b"I"));
    s
}

fn show(m: Message<Bytes>) -> String {
    match m {
        Message::ReadyForQuery(_) => "Z".to_owned(),
        m => format!("{m:?}"),
    }
}

/// Reads with fresh `recv_message` calls up to and including ReadyForQuery.
fn drain(c: &mut Client, got: &mut Vec<String>) {
    while got.last().map(String::as_str) != Some("Z") {
        got.push(show(finish(c.recv_message(None)).unwrap()));
    }
}

fn busy_client() -> (Client, DuplexStream) {
    let (mut c, s) = client(&rows_script());
    c.session_mut().query("SELECT").unwrap();
    c.session_mut().send_buf().clear();
    (c, s)
}

#[test]
fn fill_recv_buf_and_recv_message_lose_nothing() {
    let (mut whole, _s) = busy_client();
    let mut expected = Vec::new();
    drain(&mut whole, &mut expected);
    assert_eq!(expected.len(), 7, "{expected:?}");
    for k in 0..200 {
        let (mut c, _s) = busy_client();
        let mut got = Vec::new();
        // A dropped fill may or may not have read; a completed one read once.
        if let Some(r) = poll_k(c.fill_recv_buf(None), k) {
            r.unwrap();
        }
        // A recv_message that completed returned a message: it counts.
        if let Some(m) = poll_k(c.recv_message(None), k) {
            got.push(show(m.unwrap()));
        }
        drain(&mut c, &mut got);
        assert_eq!(got, expected, "k = {k}: messages lost or duplicated");
        let mut notes = Vec::new();
        while let Some(n) = c.session_mut().pop_notification() {
            notes.push(n.unwrap().payload);
        }
        assert_eq!(
            notes,
            ["n0", "n1", "n2", "n3", "n4"],
            "k = {k}: notifications"
        );
    }
}

/// An operation dropped before its first poll did nothing; after that it has
/// started an exchange, and dropping it must leave the connection Closed.
fn assert_abandoned(c: &Client, k: usize) {
    let want = if k == 0 { State::Ready } else { State::Closed };
    assert_eq!(c.state(), want, "k = {k}");
    // A pool asks is_connected(): an abandoned connection must not pass.
    assert_eq!(c.is_connected(), k == 0, "k = {k}");
}

#[test]
fn dropped_operations_end_closed_or_complete() {
    // (operation, completed at some k, abandoned at some k > 0)
    let mut seen = [(false, false); 4];
    for k in 0..400 {
        // simple_query
        let (mut c, _s) = client(&rows_script());
        match poll_k(c.simple_query("SELECT"), k) {
            Some(Ok(r)) => {
                assert_eq!(r[0].rows.len(), 5, "k = {k}");
                seen[0].0 = true;
            }
            Some(Err(e)) => panic!("k = {k}: {e}"),
            None => {
                assert_abandoned(&c, k);
                if k > 0 {
                    seen[0].1 = true;
                    assert!(finish(c.simple_query("SELECT 1")).unwrap_err().is_closed());
                }
            }
        }
        // copy_out
        let script = [
            msg(b'H', &[0, 0, 0]),
            msg(b'd', b"1\n"),
            msg(b'd', b"2\n"),
            msg(b'c', b""),
            msg(b'C', b"COPY 2\0"),
            msg(b'Z', b"I"),
        ]
        .concat();
        let (mut c, _s) = client(&script);
        let mut got = Vec::new();
        match poll_k(
            c.copy_out("COPY t TO STDOUT", |b: Bytes| {
                got.extend_from_slice(&b);
                async { Ok::<_, io::Error>(()) }
            }),
            k,
        ) {
            Some(r) => {
                assert_eq!((r.unwrap(), got.as_slice()), (2, &b"1\n2\n"[..]), "k = {k}");
                seen[1].0 = true;
            }
            None => {
                assert_abandoned(&c, k);
                seen[1].1 |= k > 0;
            }
        }
        // copy_out_stream, started and drained within the same k polls
        let (mut c, _s) = client(&script);
        let drained = async {
            let mut stream = c.copy_out_stream("COPY t TO STDOUT").await?;
            let mut got = Vec::new();
            while let Some(item) =
                std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await
            {
                got.extend_from_slice(&item?);
            }
            Ok::<_, pg_transport::Error>((got, stream.rows()))
        };
        match poll_k(drained, k) {
            Some(r) => {
                assert_eq!(r.unwrap(), (b"1\n2\n".to_vec(), Some(2)), "k = {k}");
                assert_eq!(c.state(), State::Ready, "k = {k}");
                seen[3].0 = true;
            }
            None => {
                assert_abandoned(&c, k);
                seen[3].1 |= k > 0;
            }
        }
        // copy_in
        // A server answers CopyDone only once it has it; the byte script cannot
        // wait, so it stops at CopyInResponse and the COPY never completes here:
        // every drop must close. (Completion is covered by the real-server and
        // simulation tests.)
        let script = msg(b'G', &[0, 0, 0]);
        let (mut c, _s) = client(&script);
        // The large chunk is sent without copying, as a slice of its own: a
        // vectored write cut at 11 bytes then ends inside it.
        let mut chunks = vec![
            Bytes::new(),
            Bytes::from(vec![b'x'; 20_000]),
            Bytes::from_static(b"2\n"),
            Bytes::from_static(b"1\n"),
        ];
        let source = source_fn(move || {
            let next = chunks.pop().unwrap_or_default();
            async move { Ok::<_, io::Error>(next) }
        });
        match poll_k(c.copy_in("COPY t FROM STDIN", source), k) {
            Some(r) => panic!("k = {k}: COPY cannot finish without the server: {r:?}"),
            None => assert_abandoned(&c, k),
        }
        // send_msg
        let (mut c, _s) = client(b"");
        match poll_k(c.send_msg(b"Q\0\0\0\x0dSELECT 1\0"), k) {
            Some(r) => {
                r.unwrap();
                seen[2].0 = true;
            }
            None => {
                assert_abandoned(&c, k);
                seen[2].1 |= k > 0;
            }
        }
    }
    assert_eq!(
        seen,
        [(true, true); 4],
        "every operation was both cut short and completed"
    );
}

#[test]
fn wait_notification_dropped_loses_nothing() {
    for k in 0..100 {
        let script: Vec<u8> = (0..3)
            .flat_map(|i| notification(&format!("w{i}")))
            .collect();
        let (mut c, _s) = client(&script);
        let mut got = Vec::new();
        if let Some(n) = poll_k(c.wait_notification(None), k) {
            got.push(n.unwrap().unwrap().payload);
        }
        while got.len() < 3 {
            got.push(finish(c.wait_notification(None)).unwrap().unwrap().payload);
        }
        assert_eq!(got, ["w0", "w1", "w2"], "k = {k}");
        assert_eq!(c.state(), State::Ready);
    }
}
