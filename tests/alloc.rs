//! Zero heap allocations per DataRow and per CopyData in steady state, and a
//! live heap that follows the bytes a server sent rather than the length it
//! declared, both measured by a global allocator. Its own binary, so nothing
//! else allocates in between; the tests here take [`SERIAL`] so they do not
//! count each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use pg_transport::protocol::Message;
use pg_transport::transport::UnixTransport;
use pg_transport::{Connection, ErrorKind, RowCounter, Session, SessionConfig, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Highest `LIVE` since the last [`live_peak_during`] began.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Held by each test for its whole run: the counters are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        grew(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Counted as the new block arriving before the old one leaves, as a
        // moving reallocation holds both for a moment.
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the counters are
    // still sound for the next one.
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

const ROW_TEXT: &[u8] = b"some text value of moderate length";
const ROW_TIME: &[u8] = b"2024-05-17 12:34:56";

fn data_row(i: u32) -> Vec<u8> {
    let id = i.to_string();
    let cols: [&[u8]; 3] = [id.as_bytes(), ROW_TEXT, ROW_TIME];
    let mut body = 3i16.to_be_bytes().to_vec();
    for c in cols {
        body.extend_from_slice(&(c.len() as i32).to_be_bytes());
        body.extend_from_slice(c);
    }
    msg(b'D', &body)
}

fn busy_session() -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.startup(&[("user", "u")]).unwrap();
    s.send_buf().clear();
    s.feed(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").unwrap();
    while s.next_message().unwrap().is_some() {}
    s.query("SELECT").unwrap();
    s.send_buf().clear();
    s
}

/// Feeds `stream` in reads of `read` bytes, never past the room the session
/// prepared (as a socket read would), calling `drain` after each read.
fn pump(s: &mut Session, stream: &[u8], read: usize, mut drain: impl FnMut(&mut Session)) {
    let mut fed = 0;
    while fed < stream.len() {
        let buf = s.prepare_read().unwrap();
        let n = read.min(buf.capacity() - buf.len()).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        s.commit_read(n);
        fed += n;
        drain(s);
    }
}

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn zero_allocations_per_data_row_and_copy_data() {
    let _serial = serial();
    let rows: Vec<u8> = (0..50_000).flat_map(data_row).collect();
    let copy_data = |i: u32| msg(b'd', format!("{i}\tvalue {i}\n").as_bytes());
    let copy: Vec<u8> = (0..50_000u32).flat_map(copy_data).collect();
    // Warm-up streams: whole messages, so the measured stream starts on a boundary.
    let warm_rows: Vec<u8> = (0..5_000).flat_map(data_row).collect();
    let warm_copy: Vec<u8> = (0..5_000u32).flat_map(copy_data).collect();

    // DataRow, returned one by one, columns visited.
    let mut s = busy_session();
    pump(&mut s, &warm_rows, 7_919, |s| {
        while s.next_message().unwrap().is_some() {}
    });
    let (mut returned, mut total) = (0usize, 0usize);
    let n = allocations_during(|| {
        pump(&mut s, &rows, 7_919, |s| {
            while let Some(m) = s.next_message().unwrap() {
                let Message::DataRow(row) = m else {
                    panic!("only DataRows were sent: {m:?}");
                };
                returned += 1;
                total += row
                    .columns()
                    .map(|c| c.map_or(0, <[u8]>::len))
                    .sum::<usize>();
            }
        })
    });
    black_box(total);
    assert_eq!(n, 0, "allocations while parsing 50,000 DataRows");
    assert_eq!(returned, 50_000, "every row came back");
    let column_bytes: usize = (0..50_000u32)
        .map(|i| i.to_string().len() + ROW_TEXT.len() + ROW_TIME.len())
        .sum();
    assert_eq!(total, column_bytes, "and every column byte");

    // DataRow, counted by a row sink.
    let mut s = busy_session();
    let mut counter = RowCounter::default();
    pump(&mut s, &warm_rows, 16_384, |s| {
        while s.next_message_with(&mut counter).unwrap().is_some() {}
    });
    let n = allocations_during(|| {
        pump(&mut s, &rows, 16_384, |s| {
            while s.next_message_with(&mut counter).unwrap().is_some() {}
        })
    });
    assert_eq!(n, 0, "allocations while counting 50,000 DataRows");
    assert_eq!(counter.rows, 55_000);

    // CopyData handed out as owned Bytes sharing the receive buffer.
    let mut s = busy_session();
    let (mut copies, mut bytes) = (0usize, 0usize);
    let mut drain = |s: &mut Session| {
        while let Some(m) = s.next_message_owned().unwrap() {
            let Message::CopyData(b) = m else {
                panic!("only CopyData was sent: {m:?}");
            };
            copies += 1;
            bytes += b.len();
        }
    };
    pump(&mut s, &warm_copy, 8_192, &mut drain);
    let n = allocations_during(|| pump(&mut s, &copy, 8_192, &mut drain));
    assert_eq!(n, 0, "allocations while receiving 50,000 CopyData as Bytes");
    assert_eq!(copies, 55_000, "every CopyData came back (5,000 warm-up)");
    let payload = |i: u32| format!("{i}\tvalue {i}\n").len();
    let sent: usize =
        (0..5_000u32).map(payload).sum::<usize>() + (0..50_000u32).map(payload).sum::<usize>();
    assert_eq!(bytes, sent, "and every byte");
}

/// The growth of the live heap above where it stood when `f` began, at its highest.
async fn live_peak_during<F: Future>(f: F) -> (F::Output, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

/// A server that declares a 512 MiB DataRow, sends 1 KiB of it and closes:
/// the client's heap grows with the 1 KiB, not with the 512 MiB (issue 10 §2).
#[test]
fn a_declared_length_does_not_reserve_memory() {
    let _serial = serial();
    const DECLARED: usize = 512 << 20;
    const SENT: usize = 1024;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client_end, mut server) = UnixStream::pair().unwrap();
        // Above the declared length, so the cap does not refuse the
        // header and only the buffer's growth is under test.
        let config = SessionConfig::default().max_message_len(DECLARED + (256 << 20));
        let mut session = Session::new(config);
        session.startup(&[("user", "u")]).unwrap();
        session.send_buf().clear();
        session.feed(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").unwrap();
        while session.next_message().unwrap().is_some() {}
        let mut client = Connection::new(UnixTransport::from_stream(client_end), session);

        let mut reply = vec![b'D'];
        reply.extend_from_slice(&u32::try_from(DECLARED).unwrap().to_be_bytes());
        reply.extend_from_slice(&1i16.to_be_bytes());
        reply.resize(5 + SENT, b'x');
        let peer = async move {
            // The Query: its header, then the body the header counts.
            let mut header = [0u8; 5];
            server.read_exact(&mut header).await?;
            assert_eq!(header[0], b'Q', "the client sends a Query");
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            let mut body = vec![0u8; len as usize - 4];
            server.read_exact(&mut body).await?;
            server.write_all(&reply).await?;
            server.shutdown().await
        };
        let ((result, growth), peer) =
            tokio::join!(live_peak_during(client.simple_query("SELECT 1")), peer);
        peer.expect("the scripted peer");
        let e = result.expect_err("the server closed in the middle of a message");
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        assert_eq!(client.state(), State::Closed);
        eprintln!("live heap grew by {growth} bytes reading {SENT} of a declared {DECLARED}");
        assert!(
            growth < 16 << 20,
            "the live heap grew by {growth} bytes for {SENT} bytes sent of {DECLARED} declared"
        );
        assert!(
            client.session().recv_buf().capacity() < 16 << 20,
            "receive buffer capacity {}",
            client.session().recv_buf().capacity()
        );
    });
}
