//! Zero heap allocations per DataRow and per CopyData in steady state, counted
//! by a global allocator. Its own binary, so nothing else allocates in between.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use pg_transport::protocol::Message;
use pg_transport::{RowCounter, Session, SessionConfig};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn data_row(i: u32) -> Vec<u8> {
    let id = i.to_string();
    let cols: [&[u8]; 3] = [
        id.as_bytes(),
        b"some text value of moderate length",
        b"2024-05-17 12:34:56",
    ];
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
    let mut total = 0usize;
    let n = allocations_during(|| {
        pump(&mut s, &rows, 7_919, |s| {
            while let Some(m) = s.next_message().unwrap() {
                if let Message::DataRow(row) = m {
                    total += row
                        .columns()
                        .map(|c| c.map_or(0, <[u8]>::len))
                        .sum::<usize>();
                }
            }
        })
    });
    black_box(total);
    assert_eq!(n, 0, "allocations while parsing 50,000 DataRows");

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
    let mut bytes = 0usize;
    let mut drain = |s: &mut Session| {
        while let Some(m) = s.next_message_owned().unwrap() {
            if let Message::CopyData(b) = m {
                bytes += b.len();
            }
        }
    };
    pump(&mut s, &warm_copy, 8_192, &mut drain);
    let n = allocations_during(|| pump(&mut s, &copy, 8_192, &mut drain));
    assert_eq!(n, 0, "allocations while receiving 50,000 CopyData as Bytes");
    assert!(bytes > 0);
}
