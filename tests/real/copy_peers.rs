//! COPY IN against scripted peers: aborts at chosen moments, resets, stalls,
//! stray replies (SCENARIOS J96, J100, J112, and the 08P01 drain).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pg_transport::{ErrorKind, State, source_fn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A one-connection-at-a-time peer: startup, then `script` per connection.
async fn peer<F, Fut>(script: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(script(s));
        }
    });
    port
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

async fn client(port: u16) -> pg_transport::Client {
    let config: pg_transport::Config = format!("host=127.0.0.1 port={port} user=u sslmode=disable")
        .parse()
        .unwrap();
    pg_transport::connect(&config).await.unwrap().0
}

#[tokio::test]
async fn j96_abort_while_the_source_sleeps_no_copy_done() {
    let tags = Arc::new(Mutex::new(Vec::new()));
    let seen = tags.clone();
    let port = peer(move |mut s| {
        let seen = seen.clone();
        async move {
            start(&mut s).await;
            s.write_all(COPY_IN_RESPONSE).await.unwrap();
            let (tag, _) = read_message(&mut s).await.unwrap();
            seen.lock().unwrap().push(tag);
            tokio::time::sleep(Duration::from_millis(200)).await;
            s.write_all(
                &[
                    error("23505", "duplicate key value violates unique constraint").as_slice(),
                    READY,
                ]
                .concat(),
            )
            .await
            .unwrap();
            // Record everything else the client sends for a while, and
            // answer its fence (an empty query) as a server does.
            while let Ok(Some((tag, _))) =
                tokio::time::timeout(Duration::from_millis(800), read_message(&mut s)).await
            {
                seen.lock().unwrap().push(tag);
                if tag == b'Q' {
                    s.write_all(b"I\0\0\0\x04Z\0\0\0\x05I").await.unwrap();
                }
            }
        }
    })
    .await;
    let mut c = client(port).await;
    let mut calls = 0;
    let source = source_fn(move || {
        calls += 1;
        let n = calls;
        async move {
            if n == 1 {
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 256 * 1024]))
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Bytes::new())
            }
        }
    });
    let started = std::time::Instant::now();
    let e = c.copy_in("COPY t FROM STDIN", source).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code.code(), "23505");
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "noticed before the source woke up"
    );
    assert_eq!(c.state(), State::Ready);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let tags = tags.lock().unwrap().clone();
    let (fence, data) = tags.split_last().unwrap();
    assert!(
        *fence == b'Q' && data.iter().all(|&t| t == b'd'),
        "only CopyData, never CopyDone or CopyFail, then the empty-query fence: {tags:?}"
    );
}

#[tokio::test]
async fn stray_protocol_violation_after_abort_is_drained() {
    let port = peer(|mut s| async move {
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
        // A second stray, late: it crossed the client's fence on the wire.
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[&error("08P01", "unexpected message type 0x64")[..], READY].concat())
            .await
            .unwrap();
        // Every query (the client's fence, then the caller's) gets its own answer.
        while let Some((tag, _)) = read_message(&mut s).await {
            if tag == b'Q' {
                s.write_all(b"I\0\0\0\x04Z\0\0\0\x05I").await.unwrap();
            }
        }
    })
    .await;
    let mut c = client(port).await;
    let source = source_fn(|| async {
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
}

#[tokio::test]
async fn j100_reset_during_send_is_a_transport_error() {
    let port = peer(|mut s| async move {
        start(&mut s).await;
        s.write_all(COPY_IN_RESPONSE).await.unwrap();
        let mut sink = vec![0u8; 64 * 1024];
        let _ = s.read(&mut sink).await;
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    })
    .await;
    let mut c = client(port).await;
    let source =
        source_fn(|| async { Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 128 * 1024])) });
    let e = c.copy_in("COPY t FROM STDIN", source).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Io | ErrorKind::Closed),
        "a transport error, not a callback one: {e}"
    );
    assert_eq!(c.state(), State::Closed);
}

#[tokio::test]
async fn j112_copy_timeout_closes_and_cancels() {
    let cancels = Arc::new(Mutex::new(Vec::new()));
    let seen = cancels.clone();
    let port = peer(move |mut s| {
        let seen = seen.clone();
        async move {
            let first = read_untagged(&mut s).await;
            if first.len() == 12 && first[..4] == 80877102i32.to_be_bytes() {
                seen.lock().unwrap().push(first);
                return;
            }
            s.write_all(HELLO).await.unwrap();
            read_message(&mut s).await.unwrap();
            s.write_all(COPY_IN_RESPONSE).await.unwrap();
            // Stall: read nothing more.
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    })
    .await;
    let mut c = client(port).await;
    let source =
        source_fn(|| async { Ok::<_, std::io::Error>(Bytes::from(vec![b'z'; 256 * 1024])) });
    let options = pg_transport::CopyInOptions {
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let e = c
        .copy_in_with("COPY t FROM STDIN", source, options)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(c.state(), State::Closed);
    let cancels = cancels.lock().unwrap().clone();
    assert_eq!(cancels.len(), 1, "one CancelRequest on a second connection");
    assert_eq!(&cancels[0][4..8], &1234i32.to_be_bytes());
    assert_eq!(&cancels[0][8..12], &42i32.to_be_bytes());
}

/// A server that streams 2 MiB of COPY data, then a short row, and sends the
/// rest only once the client has seen that row: the row sits under the
/// client's low-water mark, so only the bounded wait can deliver it.
#[tokio::test]
async fn bulk_read_delivers_a_short_row_the_server_waits_on() {
    let seen = Arc::new(tokio::sync::Notify::new());
    let told = seen.clone();
    let port = peer(move |mut s| {
        let told = told.clone();
        async move {
            start(&mut s).await;
            let mut bulk = copy_out_rows(2048);
            bulk.extend_from_slice(b"d\0\0\0\x09last\n");
            s.write_all(&bulk).await.unwrap();
            told.notified().await;
            s.write_all(&copy_out_end(2049)).await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }
    })
    .await;
    let mut c = client(port).await;
    c.set_bulk_read(Some(pg_transport::BulkRead {
        after: 64 << 10,
        low_water: 8 << 20,
        max_wait: Duration::from_micros(300),
    }));
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
}
