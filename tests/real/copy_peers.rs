//! COPY IN against scripted peers: aborts at chosen moments, resets, stalls,
//! stray replies (SCENARIOS J96, J100, J112, and the 08P01 drain).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pg_transport::{ErrorKind, State, source_fn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::scripted::{Peer, within};

/// AuthenticationOk, BackendKeyData(1234, 42), ReadyForQuery(I).
const HELLO: &[u8] = b"R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\x04\xd2\0\0\0\x2aZ\0\0\0\x05I";
const COPY_IN_RESPONSE: &[u8] = b"G\0\0\0\x07\0\0\0";
const READY: &[u8] = b"Z\0\0\0\x05I";

fn error(code: &str, message: &str) -> Vec<u8> {
    let fields = format!("SERROR\0C{code}\0M{message}\0\0");
    let mut m = vec![b'E'];
    m.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(fields.as_bytes());
    m
}

async fn read_untagged(s: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// One frontend message (tag, body), or None at EOF/reset.
async fn read_message(s: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await.ok()?;
    Some((head[0], body))
}

/// CopyOutResponse (text, no columns), then `rows` CopyData rows of 999 `x`
/// and a newline.
pub(crate) fn copy_out_rows(rows: usize) -> Vec<u8> {
    let mut out = b"H\0\0\0\x07\0\0\0".to_vec();
    for _ in 0..rows {
        out.push(b'd');
        out.extend_from_slice(&1004i32.to_be_bytes());
        out.extend_from_slice(&[b'x'; 999]);
        out.push(b'\n');
    }
    out
}

/// CopyDone, CommandComplete `COPY rows`, ReadyForQuery.
pub(crate) fn copy_out_end(rows: usize) -> Vec<u8> {
    let tag = format!("COPY {rows}\0");
    let mut out = b"c\0\0\0\x04C".to_vec();
    out.extend_from_slice(&(tag.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(READY);
    out
}

/// Reads the startup packet, answers HELLO, and reads the first Query.
pub(crate) async fn start(s: &mut (impl AsyncRead + AsyncWrite + Unpin)) {
    read_untagged(s).await;
    s.write_all(HELLO).await.unwrap();
    let (tag, _) = read_message(s).await.unwrap();
    assert_eq!(tag, b'Q');
}

async fn client(port: u16) -> pg_transport::DefaultConnection {
    let config: pg_transport::Config = format!("host=127.0.0.1 port={port} user=u sslmode=disable")
        .parse()
        .unwrap();
    pg_transport::connect(&config).await.unwrap().0
}

/// The server's error reaches the client while the source is asleep: the
/// client must return it without waiting for the source. The source's
/// second call tells the peer it is asleep and then never wakes (so waiting
/// for it hangs, and the deadline fails the test); the peer sends the error
/// only then, records every message that follows until the client closes,
/// and reports them.
#[tokio::test]
async fn j96_abort_while_the_source_sleeps_no_copy_done() {
    within(async {
        let (asleep, source_asleep) = tokio::sync::oneshot::channel::<()>();
        let (report, tags) = tokio::sync::oneshot::channel();
        let peer = Peer::once(move |mut s| async move {
            start(&mut s).await;
            s.write_all(COPY_IN_RESPONSE).await.unwrap();
            let mut seen = Vec::new();
            let (tag, _) = read_message(&mut s).await.unwrap();
            seen.push(tag);
            source_asleep.await.unwrap();
            s.write_all(
                &[
                    error("23505", "duplicate key value violates unique constraint").as_slice(),
                    READY,
                ]
                .concat(),
            )
            .await
            .unwrap();
            // Everything else the client sends until it closes; its fence
            // (an empty query) is answered as a server does.
            while let Some((tag, _)) = read_message(&mut s).await {
                seen.push(tag);
                if tag == b'Q' {
                    s.write_all(b"I\0\0\0\x04Z\0\0\0\x05I").await.unwrap();
                }
            }
            report.send(seen).unwrap();
        })
        .await;
        let mut c = client(peer.port()).await;
        let mut calls = 0;
        let mut asleep = Some(asleep);
        let source = source_fn(move || {
            calls += 1;
            let first = calls == 1;
            let asleep = if first { None } else { asleep.take() };
            async move {
                if first {
                    return Ok(Bytes::from(vec![b'x'; 256 * 1024]));
                }
                // Asleep for good; the peer hears of it on the first such call.
                if let Some(asleep) = asleep {
                    asleep.send(()).unwrap();
                }
                std::future::pending::<std::io::Result<Bytes>>().await
            }
        });
        let e = c.copy_in("COPY t FROM STDIN", source).await.unwrap_err();
        assert_eq!(e.as_db_error().unwrap().code.code(), "23505");
        assert_eq!(c.state(), State::Ready);
        drop(c);
        let tags = tags.await.unwrap();
        let (fence, data) = tags.split_last().unwrap();
        assert!(
            *fence == b'Q' && data.iter().all(|&t| t == b'd'),
            "only CopyData, never CopyDone or CopyFail, then the empty-query fence: {tags:?}"
        );
        peer.finish().await;
    })
    .await;
}

/// Two 08P01 strays follow the real error: one in the same write, one that
/// crossed the client's fence on the wire (the peer sends it only once it
/// has read the fence, before the fence's own answer).
#[tokio::test]
async fn stray_protocol_violation_after_abort_is_drained() {
    within(async {
        let peer = Peer::once(|mut s| async move {
            start(&mut s).await;
            s.write_all(COPY_IN_RESPONSE).await.unwrap();
            read_message(&mut s).await.unwrap();
            let reply = [
                error("23505", "dup").as_slice(),
                READY,
                &error("08P01", "unexpected message type 0x64"),
                READY,
            ]
            .concat();
            s.write_all(&reply).await.unwrap();
            // Every query (the client's fence, then the caller's) gets its
            // own answer; the late stray goes just before the fence's.
            let mut late =
                Some([&error("08P01", "unexpected message type 0x64")[..], READY].concat());
            while let Some((tag, _)) = read_message(&mut s).await {
                if tag == b'Q' {
                    if let Some(stray) = late.take() {
                        s.write_all(&stray).await.unwrap();
                    }
                    s.write_all(b"I\0\0\0\x04Z\0\0\0\x05I").await.unwrap();
                }
            }
            assert!(late.is_none(), "the client sent no fence");
        })
        .await;
        let mut c = client(peer.port()).await;
        let source = source_fn(|| async {
            // Paces the source so the error arrives mid-COPY; not a wait for an event.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"1\n"))
        });
        let e = c.copy_in("COPY t FROM STDIN", source).await.unwrap_err();
        assert_eq!(
            e.as_db_error().unwrap().code.code(),
            "23505",
            "the first, real error is returned"
        );
        assert_eq!(c.state(), State::Ready);
        let r = c.simple_query("").await.unwrap();
        assert_eq!(
            r.len(),
            1,
            "the empty query's own result, not the stray 08P01"
        );
        drop(c);
        peer.finish().await;
    })
    .await;
}

#[tokio::test]
async fn j100_reset_during_send_is_a_transport_error() {
    within(async {
        let peer = Peer::once(|mut s| async move {
            start(&mut s).await;
            s.write_all(COPY_IN_RESPONSE).await.unwrap();
            let mut sink = vec![0u8; 64 * 1024];
            let _ = s.read(&mut sink).await;
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        })
        .await;
        let mut c = client(peer.port()).await;
        let source =
            source_fn(|| async { Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 128 * 1024])) });
        let e = c.copy_in("COPY t FROM STDIN", source).await.unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Io,
            "a transport error, not a callback one: {e}"
        );
        assert_eq!(c.state(), State::Closed);
        drop(c);
        peer.finish().await;
    })
    .await;
}

/// The COPY stalls (the peer reads nothing more) until the client's timeout:
/// the connection is Closed and one CancelRequest arrives on a second
/// connection. The stalled connection waits for that cancel, not for time.
#[tokio::test]
async fn j112_copy_timeout_closes_and_cancels() {
    within(async {
        let (cancels, mut cancel_seen) = tokio::sync::mpsc::unbounded_channel();
        let stall_over = Arc::new(tokio::sync::Notify::new());
        let peer = Peer::start(move |mut s, n| {
            let (cancels, stall_over) = (cancels.clone(), stall_over.clone());
            async move {
                let first = read_untagged(&mut s).await;
                if n == 1 {
                    cancels.send(first).unwrap();
                    stall_over.notify_one();
                    return;
                }
                assert_eq!(n, 0, "one COPY connection, then one cancel connection");
                s.write_all(HELLO).await.unwrap();
                read_message(&mut s).await.unwrap();
                s.write_all(COPY_IN_RESPONSE).await.unwrap();
                // Stall: read nothing more until the cancel has come.
                stall_over.notified().await;
            }
        })
        .await;
        let mut c = client(peer.port()).await;
        let source =
            source_fn(|| async { Ok::<_, std::io::Error>(Bytes::from(vec![b'z'; 256 * 1024])) });
        let options = pg_transport::CopyInOptions::default().timeout(Duration::from_millis(300));
        let e = c
            .copy_in_with("COPY t FROM STDIN", source, options)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(c.state(), State::Closed);
        drop(c);
        let cancel = tokio::time::timeout(Duration::from_secs(5), cancel_seen.recv())
            .await
            .expect("a CancelRequest on a second connection")
            .unwrap();
        peer.finish().await;
        assert!(cancel_seen.try_recv().is_err(), "one CancelRequest only");
        assert_eq!(cancel.len(), 12, "{cancel:?}");
        assert_eq!(&cancel[..4], &80877102i32.to_be_bytes());
        assert_eq!(&cancel[4..8], &1234i32.to_be_bytes());
        assert_eq!(&cancel[8..12], &42i32.to_be_bytes());
    })
    .await;
}

/// A server that streams 2 MiB of COPY data, then a short row, and sends the
/// rest only once the client has seen that row: the row sits under the
/// client's low-water mark, so only the bounded wait can deliver it.
#[tokio::test]
async fn bulk_read_delivers_a_short_row_the_server_waits_on() {
    within(async {
        let seen = Arc::new(tokio::sync::Notify::new());
        let told = seen.clone();
        let peer = Peer::once(move |mut s| async move {
            start(&mut s).await;
            let mut bulk = copy_out_rows(2048);
            bulk.extend_from_slice(b"d\0\0\0\x09last\n");
            s.write_all(&bulk).await.unwrap();
            told.notified().await;
            s.write_all(&copy_out_end(2049)).await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        })
        .await;
        let mut c = client(peer.port()).await;
        c.set_bulk_read(Some(
            pg_transport::BulkRead::DEFAULT
                .after(64 << 10)
                .low_water(8 << 20)
                .max_wait(Duration::from_micros(300)),
        ));
        let mut total = 0usize;
        let rows = tokio::time::timeout(
            Duration::from_secs(30),
            c.copy_out("COPY t TO STDOUT", |b: Bytes| {
                total += b.len();
                if &b[..] == b"last\n" {
                    seen.notify_one();
                }
                async { Ok::<_, std::io::Error>(()) }
            }),
        )
        .await
        .expect("the short row under the mark must be delivered")
        .unwrap();
        assert_eq!(rows, 2049);
        assert_eq!(total, 2048 * 1000 + 5);
        assert_eq!(c.state(), State::Ready);
        drop(c);
        peer.finish().await;
    })
    .await;
}
