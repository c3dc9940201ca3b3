//! Two failures in one operation (issue 10 §2): the caller gets the first
//! cause, the later failure of the connection is `Error::later` (and, for an
//! error with no cause of its own, its `source()`), and the state says what
//! is left. Scripted peers, each joined so that their asserts count.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use pg_transport::{Config, DefaultConnection, ErrorKind, State, source_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// AuthenticationOk, BackendKeyData(1234, 42), ReadyForQuery(I).
const HELLO: &[u8] = b"R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\x04\xd2\0\0\0\x2aZ\0\0\0\x05I";
const COPY_IN_RESPONSE: &[u8] = b"G\0\0\0\x07\0\0\0";
const COPY_OUT_RESPONSE: &[u8] = b"H\0\0\0\x07\0\0\0";
const ROW: &[u8] = b"d\0\0\0\x08row\n";
const ABORT: &[u8] = b"E\0\0\0\x24SERROR\0C22P02\0Mbad row in COPY\0\0";

/// Reads frontend messages until one with `tag` (the query's `Q`, CopyFail's
/// `f`); false at EOF.
async fn read_until(s: &mut TcpStream, tag: u8) -> bool {
    loop {
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).await.is_err() {
            return false;
        }
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        if s.read_exact(&mut body).await.is_err() {
            return false;
        }
        if head[0] == tag {
            return true;
        }
    }
}

/// Startup with HELLO, then `script`; returns a connected client and the
/// peer's task.
async fn scripted<F, Fut>(script: F) -> (DefaultConnection, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut startup = vec![0u8; i32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut startup).await.unwrap();
        s.write_all(HELLO).await.unwrap();
        script(s).await;
    });
    let config: Config = format!("host=127.0.0.1 port={port} user=u sslmode=disable")
        .parse()
        .unwrap();
    let (client, _) = pg_transport::connect(&config).await.unwrap();
    (client, peer)
}

/// A deadline, so that a bug fails the test instead of hanging it.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the operation did not end within 30 s")
}

#[tokio::test]
async fn a_failed_source_then_a_dead_server_reports_the_source() {
    let (mut client, peer) = scripted(|mut s| async move {
        assert!(read_until(&mut s, b'Q').await);
        s.write_all(COPY_IN_RESPONSE).await.unwrap();
        assert!(read_until(&mut s, b'f').await, "CopyFail arrives");
        // Gone without an answer.
    })
    .await;
    let source = source_fn(|| async { Err::<Bytes, _>(std::io::Error::other("disk on fire")) });
    let e = within(client.copy_in("COPY t FROM STDIN", source))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback, "{e}");
    assert_eq!(
        e.to_string(),
        "COPY IN source failed",
        "Display is this level only"
    );
    assert_eq!(
        e.report().to_string(),
        "COPY IN source failed: disk on fire"
    );
    assert_eq!(
        e.source().unwrap().to_string(),
        "disk on fire",
        "the source's own error"
    );
    let later = e.later().expect("the connection's failure is kept");
    assert_eq!(later.kind(), ErrorKind::Closed, "{later}");
    assert_eq!(client.state(), State::Closed);
    peer.await.unwrap();
}

#[tokio::test]
async fn a_server_abort_then_a_dead_server_reports_the_abort() {
    let (mut client, peer) = scripted(|mut s| async move {
        assert!(read_until(&mut s, b'Q').await);
        s.write_all(COPY_IN_RESPONSE).await.unwrap();
        s.write_all(ABORT).await.unwrap();
        // No ReadyForQuery: the connection dies before the drain ends.
    })
    .await;
    let source = source_fn(|| async {
        // Never ends by itself: only the server's error stops the COPY.
        Ok::<_, std::io::Error>(Bytes::from_static(b"1\n"))
    });
    let e = within(client.copy_in("COPY t FROM STDIN", source))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
    assert_eq!(e.as_db_error().unwrap().code.code(), "22P02");
    let later = e.later().expect("the connection's failure is kept");
    assert_eq!(later.kind(), ErrorKind::Closed, "{later}");
    assert_eq!(
        e.source().unwrap().to_string(),
        later.to_string(),
        "with no cause of its own, the later failure is the source"
    );
    assert_eq!(client.state(), State::Closed);
    peer.await.unwrap();
}

#[tokio::test]
async fn a_failed_sink_then_a_dead_server_reports_the_sink() {
    let (mut client, peer) = scripted(|mut s| async move {
        assert!(read_until(&mut s, b'Q').await);
        s.write_all(COPY_OUT_RESPONSE).await.unwrap();
        s.write_all(ROW).await.unwrap();
        s.write_all(ROW).await.unwrap();
        s.flush().await.unwrap();
        // Gone before CopyDone.
    })
    .await;
    let e = within(client.copy_out("COPY t TO STDOUT", |_row| async {
        Err::<(), _>(std::io::Error::other("sink full"))
    }))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback, "{e}");
    assert_eq!(
        e.to_string(),
        "COPY OUT sink failed",
        "Display is this level only"
    );
    assert_eq!(e.report().to_string(), "COPY OUT sink failed: sink full");
    assert_eq!(e.later().expect("kept").kind(), ErrorKind::Closed);
    assert_eq!(client.state(), State::Closed);
    peer.await.unwrap();
}
