//! Backend-message parse throughput: our borrowed, session and owned paths
//! against `postgres-protocol` and a bare header-skip loop, over the same bytes.
//!
//! Two synthetic `SELECT *` result streams in text format, built once before any
//! timing, byte-for-byte what PostgreSQL sends (RowDescription, DataRows,
//! CommandComplete `SELECT n`, ReadyForQuery `I`):
//!
//! * `wide`: 5 columns (int4, int8, text, timestamp, numeric), 1,000,000 rows of
//!   about 126 bytes per DataRow message.
//! * `narrow`: one int4 column, 5,000,000 rows of 18 bytes per DataRow message.
//!
//! Cases (each visits every DataRow column and sums the column lengths):
//!
//! * `borrowed`: `protocol::parse_message` in a loop over the byte slice.
//! * `session_borrowed`: a busy [`Session`] holding the whole stream, drained with
//!   `next_message()`. The session is built and fed in `iter_batched` setup, so
//!   the copy into the receive buffer is not timed (like `postgres_protocol`,
//!   which also starts from a filled buffer).
//! * `session_sink`: as `session_borrowed`, with `next_message_with()` and a
//!   `RowSink` that walks the columns: the session's row path.
//! * `owned`: as `session_borrowed`, with `next_message_owned()` (`Message<Bytes>`).
//! * `owned_rows`: as `owned`, but DataRows taken with `next_data_row_owned()`
//!   (a `DataRow<Bytes>`, no `Message` built), as `query_stream` does.
//! * `postgres_protocol`: `postgres_protocol::message::backend::Message::parse`
//!   over a `BytesMut` holding the stream (cloned in untimed setup). Columns are
//!   walked over `DataRowBody::buffer()` with a copy of `DataRowRanges::next`
//!   (see [`pp_columns`]): `ranges()` is only usable through the
//!   `fallible_iterator::FallibleIterator` trait, which postgres-protocol does
//!   not re-export and this crate does not depend on.
//! * `header_skip`: read each five-byte header and skip the body: the ceiling.
//! * `session_borrowed_64k`, `owned_64k`: the realistic driver loop: a fresh
//!   session fed 64 KiB chunks, drained after each chunk. The copy into the
//!   receive buffer (what a socket read does) is timed here.
//!
//! `wide_hot` and `narrow_hot` repeat every case but the `_64k` ones over about
//! 500 KB of the same shapes, which stays in L2: the parsers' CPU cost without
//! the memory traffic that bounds every case on the big streams.
//!
//! Run: `cargo bench --bench parse` (filter with e.g. `-- wide/`). Results and
//! targets: `docs/benchmarks.md`.

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use pg_transport::protocol::limits::DEFAULT_MAX_MESSAGE_LEN;
use pg_transport::protocol::{DataRow, Message, ProtocolError, parse_message};
use pg_transport::{RowSink, Session, SessionConfig, State};
use postgres_protocol::message::backend as pp;

/// Rows in the wide stream.
const WIDE_ROWS: usize = 1_000_000;
/// Rows in the narrow stream.
const NARROW_ROWS: usize = 5_000_000;
/// Rows of the cache-resident (`_hot`) variants: about 500 KB each.
const HOT_WIDE_ROWS: usize = 4_000;
/// See [`HOT_WIDE_ROWS`].
const HOT_NARROW_ROWS: usize = 28_000;
/// Feed size of the chunked session cases.
const CHUNK: usize = 64 * 1024;

/// Type OIDs (`pg_type.oid`) and `typlen` of the columns we describe.
const INT4: (u32, i16) = (23, 4);
const INT8: (u32, i16) = (20, 8);
const TEXT: (u32, i16) = (25, -1);
const TIMESTAMP: (u32, i16) = (1114, 8);
const NUMERIC: (u32, i16) = (1700, -1);

// --- stream synthesis (untimed) -------------------------------------------------

/// Deterministic xorshift64 generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Appends one backend message: type byte, big-endian `i32` length counting
/// itself, body.
fn put_message(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = i32::try_from(out.len() - at).expect("message longer than i32::MAX");
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// RowDescription for `SELECT *` from a table with OID `table_oid`: columns
/// `(name, (type oid, typlen))`, no typmod, text format.
fn put_row_description(out: &mut Vec<u8>, table_oid: u32, columns: &[(&str, (u32, i16))]) {
    put_message(out, b'T', |b| {
        let count = i16::try_from(columns.len()).expect("too many columns");
        b.extend_from_slice(&count.to_be_bytes());
        for (attnum, (name, (type_oid, typlen))) in (1i16..).zip(columns) {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&table_oid.to_be_bytes());
            b.extend_from_slice(&attnum.to_be_bytes());
            b.extend_from_slice(&type_oid.to_be_bytes());
            b.extend_from_slice(&typlen.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes()); // atttypmod
            b.extend_from_slice(&0i16.to_be_bytes()); // text format
        }
    });
}

/// DataRow of non-NULL text values.
fn put_data_row(out: &mut Vec<u8>, values: &[&[u8]]) {
    put_message(out, b'D', |b| {
        let count = i16::try_from(values.len()).expect("too many columns");
        b.extend_from_slice(&count.to_be_bytes());
        for v in values {
            let len = i32::try_from(v.len()).expect("value too long");
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(v);
        }
    });
}

/// CommandComplete `SELECT rows`, then ReadyForQuery (idle).
fn put_trailer(out: &mut Vec<u8>, rows: usize) {
    put_message(out, b'C', |b| {
        write!(b, "SELECT {rows}").expect("write to Vec");
        b.push(0);
    });
    put_message(out, b'Z', |b| b.push(b'I'));
}

/// One result stream and what it holds.
struct Stream {
    bytes: Vec<u8>,
    /// Backend messages in `bytes`.
    messages: u64,
}

impl Stream {
    fn new(bytes: Vec<u8>, rows: usize) -> Self {
        let messages = u64::try_from(rows).expect("row count") + 3;
        Self { bytes, messages }
    }
}

/// `timestamp` text output (DateStyle ISO): trailing zeros of the fraction are
/// dropped, and the fraction entirely when it is zero.
fn write_timestamp(out: &mut Vec<u8>, rng: &mut XorShift) {
    let (month, day) = (rng.range(1, 12), rng.range(1, 28));
    let (hour, minute, second) = (rng.range(0, 23), rng.range(0, 59), rng.range(0, 59));
    write!(
        out,
        "2024-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}"
    )
    .expect("write to Vec");
    let mut micros = rng.range(0, 999_999);
    if micros != 0 {
        let mut digits = 6;
        while micros % 10 == 0 {
            micros /= 10;
            digits -= 1;
        }
        write!(out, ".{micros:0digits$}").expect("write to Vec");
    }
}

/// `SELECT * FROM wide`: `id int4, big int8, txt text, ts timestamp, num numeric`.
fn wide_stream(rows: usize) -> Stream {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz      ";
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(rows * 128 + 256);
    put_row_description(
        &mut out,
        16_384,
        &[
            ("id", INT4),
            ("big", INT8),
            ("txt", TEXT),
            ("ts", TIMESTAMP),
            ("num", NUMERIC),
        ],
    );
    let (mut id, mut big, mut txt, mut ts, mut num) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rows {
        id.clear();
        big.clear();
        txt.clear();
        ts.clear();
        num.clear();
        write!(id, "{}", rng.range(100_000, 999_999)).expect("write to Vec");
        write!(big, "{}", rng.range(1_000_000_000_000, 9_999_999_999_999)).expect("write to Vec");
        let txt_len = rng.range(36, 52);
        txt.extend(
            (0..txt_len).map(|_| ALPHABET[usize::try_from(rng.next() % 32).expect("small")]),
        );
        write_timestamp(&mut ts, &mut rng);
        // numeric(…, 4) keeps its scale in text output.
        write!(
            num,
            "{}.{:04}",
            rng.range(10_000, 99_999),
            rng.range(0, 9_999)
        )
        .expect("write to Vec");
        put_data_row(&mut out, &[&id, &big, &txt, &ts, &num]);
    }
    put_trailer(&mut out, rows);
    Stream::new(out, rows)
}

/// `SELECT * FROM narrow`: `n int4`, seven-digit values.
fn narrow_stream(rows: usize) -> Stream {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(rows * 18 + 256);
    put_row_description(&mut out, 16_390, &[("n", INT4)]);
    let mut n = Vec::new();
    for _ in 0..rows {
        n.clear();
        write!(n, "{}", rng.range(1_000_000, 9_999_999)).expect("write to Vec");
        put_data_row(&mut out, &[&n]);
    }
    put_trailer(&mut out, rows);
    Stream::new(out, rows)
}

// --- the timed loops --------------------------------------------------------------

/// What `parse_message` returns.
type ParseResult<'a> = Result<Option<(Message<&'a [u8]>, usize)>, ProtocolError>;

/// What every case does with a message: DataRows have their columns walked and
/// their lengths summed; anything else goes through `black_box`.
fn visit<B: AsRef<[u8]>>(msg: &Message<B>, sum: &mut usize) {
    match msg {
        Message::DataRow(row) => {
            for col in row.columns() {
                *sum += col.map_or(0, <[u8]>::len);
            }
        }
        other => {
            black_box(other);
        }
    }
}

/// Our zero-copy parser over a slice; returns (messages, column bytes).
fn run_borrowed(buf: &[u8]) -> (u64, usize) {
    let (mut pos, mut messages, mut sum) = (0, 0u64, 0usize);
    while let Some((msg, n)) =
        parse_message(&buf[pos..], DEFAULT_MAX_MESSAGE_LEN).expect("valid stream")
    {
        visit(&msg, &mut sum);
        pos += n;
        messages += 1;
    }
    assert_eq!(pos, buf.len(), "stream not fully parsed");
    (messages, sum)
}

/// A session in `Busy` right after `query("SELECT *")`, nothing buffered.
fn busy_session() -> Session {
    let mut s = Session::new(SessionConfig::default().max_message_len(DEFAULT_MAX_MESSAGE_LEN));
    s.startup(&[("user", "u")]).expect("startup");
    s.send_buf().clear();
    s.feed(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").expect("feed");
    while s.next_message().expect("handshake").is_some() {}
    s.query("SELECT *").expect("query");
    s.send_buf().clear();
    assert_eq!(s.state(), State::Busy);
    s
}

/// A busy session holding the whole stream (untimed setup).
fn fed_session(stream: &[u8]) -> Session {
    let mut s = busy_session();
    s.feed(stream).expect("feed");
    s
}

/// Drains a fed session with `next_message()`.
fn drain_borrowed(s: &mut Session, messages: &mut u64, sum: &mut usize) {
    while let Some(msg) = s.next_message().expect("valid stream") {
        visit(&msg, sum);
        *messages += 1;
    }
}

/// Drains a fed session with `next_message_owned()`.
fn drain_owned(s: &mut Session, messages: &mut u64, sum: &mut usize) {
    while let Some(msg) = s.next_message_owned().expect("valid stream") {
        visit(&msg, sum);
        *messages += 1;
    }
}

/// Drains a fed session the way `query_stream` does: DataRows with
/// `next_data_row_owned()` (no `Message` built), the rest with
/// `next_message_owned()`.
fn drain_owned_rows(s: &mut Session, messages: &mut u64, sum: &mut usize) {
    loop {
        if let Some(row) = s.next_data_row_owned().expect("valid stream") {
            for col in row.columns() {
                *sum += col.map_or(0, <[u8]>::len);
            }
            *messages += 1;
            continue;
        }
        let Some(msg) = s.next_message_owned().expect("valid stream") else {
            return;
        };
        visit(&msg, sum);
        *messages += 1;
    }
}

/// A [`RowSink`] that walks each row's columns like [`visit`].
#[derive(Default)]
struct SumSink {
    rows: u64,
    sum: usize,
}

impl RowSink for SumSink {
    fn row(&mut self, row: DataRow<&[u8]>) -> Result<(), ProtocolError> {
        for col in row.columns() {
            self.sum += col.map_or(0, <[u8]>::len);
        }
        self.rows += 1;
        Ok(())
    }
}

/// Drains a fed session with `next_message_with()`: DataRows go to a sink,
/// everything else is returned.
fn drain_sink(s: &mut Session, messages: &mut u64, sum: &mut usize) {
    let mut sink = SumSink::default();
    while let Some(msg) = s.next_message_with(&mut sink).expect("valid stream") {
        visit(&msg, sum);
        *messages += 1;
    }
    *messages += sink.rows;
    *sum += sink.sum;
}

/// Feeds `stream` in [`CHUNK`]-byte pieces, draining after each, as a driver does.
fn run_chunked(stream: &[u8], drain: fn(&mut Session, &mut u64, &mut usize)) -> (u64, usize) {
    let mut s = busy_session();
    let (mut messages, mut sum) = (0, 0);
    for chunk in stream.chunks(CHUNK) {
        s.feed(chunk).expect("feed");
        drain(&mut s, &mut messages, &mut sum);
    }
    assert_eq!(s.state(), State::Ready);
    (messages, sum)
}

/// Sums the column lengths of a postgres-protocol DataRow body (after the
/// count): the same reads and checks as `DataRowRanges::next` (0.6.12), which is
/// `#[inline]`, so this is the code `body.ranges()` compiles to.
fn pp_columns(mut buf: &[u8]) -> usize {
    let mut sum = 0;
    while let Some((len, rest)) = buf.split_first_chunk::<4>() {
        let len = i32::from_be_bytes(*len);
        buf = rest;
        if let Ok(len) = usize::try_from(len) {
            assert!(buf.len() >= len, "unexpected EOF");
            buf = &buf[len..];
            sum += len;
        }
    }
    assert!(
        buf.is_empty(),
        "invalid message length: datarowrange is not empty"
    );
    sum
}

/// `postgres-protocol`'s parser; returns the (empty) buffer so its release is untimed.
fn run_postgres_protocol(mut buf: BytesMut) -> (BytesMut, u64, usize) {
    let (mut messages, mut sum) = (0u64, 0usize);
    while let Some(msg) = pp::Message::parse(&mut buf).expect("valid stream") {
        match msg {
            pp::Message::DataRow(body) => sum += pp_columns(body.buffer()),
            other => {
                black_box(other);
            }
        }
        messages += 1;
    }
    assert!(buf.is_empty(), "stream not fully parsed");
    (buf, messages, sum)
}

/// The ceiling: read each header, skip the body.
fn run_header_skip(buf: &[u8]) -> (u64, usize) {
    let (mut pos, mut messages, mut tags) = (0, 0u64, 0usize);
    while let Some(&[tag, a, b, c, d]) = buf.get(pos..).and_then(<[u8]>::first_chunk::<5>) {
        let len = usize::try_from(i32::from_be_bytes([a, b, c, d])).expect("valid length");
        tags += usize::from(tag);
        pos += len + 1;
        messages += 1;
    }
    assert_eq!(pos, buf.len(), "stream not fully skipped");
    (messages, tags)
}

// --- criterion ----------------------------------------------------------------------

/// One group over `stream`; the `_64k` cases only when `chunked`.
fn bench_shape(c: &mut Criterion, name: &str, stream: &Stream, chunked: bool) {
    let bytes = stream.bytes.as_slice();
    let expected = stream.messages;
    let as_bytes_mut = BytesMut::from(bytes);
    eprintln!("{name}: {} messages, {} bytes", expected, bytes.len());

    // Every case must see the same messages and the same column bytes.
    let (n, sum) = run_borrowed(bytes);
    assert_eq!(n, expected);
    let (_, pp_n, pp_sum) = run_postgres_protocol(as_bytes_mut.clone());
    assert_eq!((pp_n, pp_sum), (n, sum), "postgres_protocol disagrees");
    assert_eq!(
        run_chunked(bytes, drain_borrowed),
        (n, sum),
        "session_borrowed disagrees"
    );
    assert_eq!(run_chunked(bytes, drain_owned), (n, sum), "owned disagrees");
    assert_eq!(
        run_chunked(bytes, drain_owned_rows),
        (n, sum),
        "owned_rows disagrees"
    );
    assert_eq!(
        run_chunked(bytes, drain_sink),
        (n, sum),
        "session_sink disagrees"
    );
    eprintln!("{name}: column bytes {sum}");

    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(expected));

    g.bench_function("borrowed", |b| {
        b.iter(|| {
            let (n, sum) = run_borrowed(black_box(bytes));
            assert_eq!(n, expected);
            black_box(sum)
        });
    });

    g.bench_function("session_borrowed", |b| {
        b.iter_batched(
            || fed_session(bytes),
            |mut s| {
                let (mut n, mut sum) = (0, 0);
                drain_borrowed(&mut s, &mut n, &mut sum);
                assert_eq!(n, expected);
                assert_eq!(s.state(), State::Ready);
                black_box(sum);
                s
            },
            BatchSize::PerIteration,
        );
    });

    g.bench_function("session_sink", |b| {
        b.iter_batched(
            || fed_session(bytes),
            |mut s| {
                let (mut n, mut sum) = (0, 0);
                drain_sink(&mut s, &mut n, &mut sum);
                assert_eq!(n, expected);
                assert_eq!(s.state(), State::Ready);
                black_box(sum);
                s
            },
            BatchSize::PerIteration,
        );
    });

    g.bench_function("owned", |b| {
        b.iter_batched(
            || fed_session(bytes),
            |mut s| {
                let (mut n, mut sum) = (0, 0);
                drain_owned(&mut s, &mut n, &mut sum);
                assert_eq!(n, expected);
                assert_eq!(s.state(), State::Ready);
                black_box(sum);
                s
            },
            BatchSize::PerIteration,
        );
    });

    // Spelled out like the cases above: the same loop over a table of drain
    // functions made `owned` twice as slow (inlining changes with the
    // indirect call), so each case keeps its own closure.
    g.bench_function("owned_rows", |b| {
        b.iter_batched(
            || fed_session(bytes),
            |mut s| {
                let (mut n, mut sum) = (0, 0);
                drain_owned_rows(&mut s, &mut n, &mut sum);
                assert_eq!(n, expected);
                assert_eq!(s.state(), State::Ready);
                black_box(sum);
                s
            },
            BatchSize::PerIteration,
        );
    });

    g.bench_function("postgres_protocol", |b| {
        b.iter_batched(
            || as_bytes_mut.clone(),
            |buf| {
                let (buf, n, sum) = run_postgres_protocol(buf);
                assert_eq!(n, expected);
                black_box(sum);
                buf
            },
            BatchSize::PerIteration,
        );
    });

    g.bench_function("header_skip", |b| {
        b.iter(|| {
            let (n, tags) = run_header_skip(black_box(bytes));
            assert_eq!(n, expected);
            black_box(tags)
        });
    });

    if !chunked {
        g.finish();
        return;
    }

    g.bench_function("session_borrowed_64k", |b| {
        b.iter(|| {
            let (n, sum) = run_chunked(black_box(bytes), drain_borrowed);
            assert_eq!(n, expected);
            black_box(sum)
        });
    });

    g.bench_function("owned_64k", |b| {
        b.iter(|| {
            let (n, sum) = run_chunked(black_box(bytes), drain_owned);
            assert_eq!(n, expected);
            black_box(sum)
        });
    });

    g.finish();
}

fn benches(c: &mut Criterion) {
    let wide = wide_stream(WIDE_ROWS);
    bench_shape(c, "wide", &wide, true);
    drop(wide);
    let narrow = narrow_stream(NARROW_ROWS);
    bench_shape(c, "narrow", &narrow, true);
    drop(narrow);
    // The same shapes, small enough to stay in L2: the parsers' CPU cost alone.
    bench_shape(c, "wide_hot", &wide_stream(HOT_WIDE_ROWS), false);
    bench_shape(c, "narrow_hot", &narrow_stream(HOT_NARROW_ROWS), false);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

// What `criterion_group!` / `criterion_main!` expand to, minus the `pub fn`
// that `missing_docs` would flag.
fn main() {
    eprintln!(
        "size_of: Message<&[u8]> {} B, parse_message result {} B, next_message result {} B, \
         Message<Bytes> {} B",
        size_of::<Message<&[u8]>>(),
        size_of::<ParseResult<'_>>(),
        size_of::<pg_transport::Result<Option<Message<&[u8]>>>>(),
        size_of::<Message<bytes::Bytes>>(),
    );
    let mut c = config().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
