//! Property tests of the sans-IO core (issue 2's "Must show"):
//! (a) chunk invariance with correct positions, (b) arbitrary bytes never panic
//! or grow the buffer past its bounds, (c) every frontend encoder round-trips
//! through an independent decoder written here.
//!
//! Shrunk failures are persisted to `proptest-regressions/prop.txt` and committed.
//! CI pins the RNG with `PROPTEST_RNG_SEED`; local runs explore.

#[path = "../support/mod.rs"]
mod support;

mod frontend;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use pg_transport::internal::{StreamEnd, parse_stream};
use pg_transport::protocol::limits::DEFAULT_MAX_MESSAGE_LEN;
use pg_transport::{ErrorKind, SessionConfig, State};

use support::*;

pub(crate) fn config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/prop.txt",
        ))),
        ..Config::default()
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('Z'),
            Just(' '),
            Just('é'),
            Just('\n'),
            Just('9')
        ],
        0..max,
    )
    .prop_map(|c| c.into_iter().collect())
}

/// Valid backend messages that leave a Busy session's state alone, encoded.
fn backend_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(proptest::option::of(bytes(40)), 0..6).prop_map(|cols| {
            let refs: Vec<Option<&[u8]>> = cols.iter().map(|c| c.as_deref()).collect();
            data_row(&refs)
        }),
        text(20).prop_map(|t| command_complete(&t)),
        proptest::collection::vec(text(10), 0..4).prop_map(|names| {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            row_description(&refs)
        }),
        (any::<i32>(), text(10), text(30)).prop_map(|(p, c, m)| notification(p, &c, &m)),
        (text(10), text(10)).prop_map(|(k, v)| parameter_status(&k, &v)),
        (text(20), text(20)).prop_map(|(m, d)| notice(&[(b'S', "NOTICE"), (b'M', &m), (b'D', &d)])),
        (text(20), text(5)).prop_map(|(m, c)| error(&[(b'S', "ERROR"), (b'C', &c), (b'M', &m)])),
        bytes(300).prop_map(|b| msg(b'd', &b)),
        prop::sample::select(b"123nsI".to_vec()).prop_map(|t| msg(t, b"")),
        proptest::collection::vec(any::<u32>(), 0..5).prop_map(|oids| {
            let mut body = (oids.len() as i16).to_be_bytes().to_vec();
            oids.iter()
                .for_each(|o| body.extend_from_slice(&o.to_be_bytes()));
            msg(b't', &body)
        }),
        (any::<i32>(), proptest::collection::vec(text(8), 0..3)).prop_map(|(m, o)| {
            let refs: Vec<&str> = o.iter().map(String::as_str).collect();
            negotiate(m, &refs)
        }),
    ]
}

/// Tags a Session consumes internally instead of returning.
const INTERNAL: &[u8] = b"ANSv";

proptest! {
    #![proptest_config(config())]

    /// (a) The same messages, with the right position after each, however the
    /// stream is cut into reads.
    #[test]
    fn chunked_stream_parses_like_the_whole(
        messages in proptest::collection::vec(backend_message(), 1..30),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let stream = messages.concat();
        let (whole, end) = parse_stream(&stream, DEFAULT_MAX_MESSAGE_LEN);
        prop_assert_eq!(end, StreamEnd::Clean);
        prop_assert_eq!(whole.len(), messages.len());

        // Expected: returned messages and the stream offset just after each.
        let mut expected = Vec::new();
        let mut offset = 0;
        for (m, rendered) in messages.iter().zip(&whole) {
            offset += m.len();
            if !INTERNAL.contains(&m[0]) {
                expected.push((rendered.clone(), offset));
            }
        }

        let mut s = busy_session();
        let mut got = Vec::new();
        let (mut fed, mut i, mut cut) = (0usize, 0usize, 0usize);
        while fed < stream.len() {
            let n = cuts[cut % cuts.len()].min(stream.len() - fed);
            cut += 1;
            s.feed(&stream[fed..fed + n]).unwrap();
            fed += n;
            while let Some(m) = s.next_message().unwrap() {
                let rendered = format!("{m:?}");
                let consumed = fed - s.recv_buf().len();
                got.push((rendered, consumed));
            }
            i += 1;
        }
        prop_assert!(i > 0);
        prop_assert_eq!(got, expected);
        prop_assert!(s.recv_buf().is_empty());
    }

    /// (b) Arbitrary bytes: never a panic; the buffer stays within its bounds;
    /// the outcome is messages, "need more", or a protocol error with the
    /// session Closed.
    #[test]
    fn arbitrary_bytes_never_panic_or_overgrow(
        noise in bytes(2048),
        prefix in proptest::collection::vec(backend_message(), 0..4),
        cuts in proptest::collection::vec(1usize..512, 1..10),
    ) {
        const MAX: usize = 16 * 1024;
        let config = SessionConfig { max_message_len: MAX, ..SessionConfig::default() };
        let bound = 2 * (MAX + config.recv.read_size_max);
        let mut s = ready_session(config);
        s.query("SELECT noise").unwrap();
        let stream = [prefix.concat(), noise].concat();
        let mut fed = 0;
        let mut cut = 0;
        'outer: while fed < stream.len() {
            let room = match s.prepare_read() {
                Ok(buf) => buf.capacity() - buf.len(),
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::Protocol);
                    break;
                }
            };
            // Like a real read: never more than the room prepared.
            let n = cuts[cut % cuts.len()].min(stream.len() - fed).min(room);
            cut += 1;
            s.prepare_read().unwrap().extend_from_slice(&stream[fed..fed + n]);
            s.commit_read(n);
            fed += n;
            prop_assert!(s.recv_buf().capacity() <= bound, "capacity {}", s.recv_buf().capacity());
            loop {
                match s.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(matches!(e.kind(), ErrorKind::Protocol | ErrorKind::Auth | ErrorKind::Unsupported), "{e}");
                        prop_assert_eq!(s.state(), State::Closed);
                        break 'outer;
                    }
                }
            }
        }
        if s.state() != State::Closed {
            // Whatever is left is one incomplete message, shorter than the cap.
            prop_assert!(s.recv_buf().len() < MAX);
        }
    }

    /// (b) The pure parser on arbitrary bytes: a result, never a panic, and
    /// "incomplete" only when the bytes really are a prefix.
    #[test]
    fn parser_total_on_arbitrary_bytes(noise in bytes(512)) {
        let (_, end) = parse_stream(&noise, 1 << 20);
        if let StreamEnd::Incomplete(n) = end {
            prop_assert!(n <= noise.len());
        }
    }

    /// `next_copy_data_joined`: however the stream is cut into reads, the
    /// chunks are the CopyData payloads in order, every byte once, each chunk
    /// ending on a message boundary; notices and notifications between them
    /// are consumed, not joined in.
    #[test]
    fn joined_copy_data_is_every_payload_in_whole_messages(
        parts in proptest::collection::vec(
            prop_oneof![
                4 => bytes(200).prop_map(Ok),
                1 => (text(10), text(20)).prop_map(|(c, m)| Err(notification(7, &c, &m))),
                1 => text(20).prop_map(|m| Err(notice(&[(b'S', "NOTICE"), (b'M', &m)]))),
            ],
            1..40,
        ),
        cuts in proptest::collection::vec(1usize..300, 1..40),
    ) {
        let stream: Vec<u8> = parts
            .iter()
            .flat_map(|p| match p {
                Ok(payload) => msg(b'd', payload),
                Err(other) => other.clone(),
            })
            .collect();
        let payloads: Vec<&Vec<u8>> = parts.iter().filter_map(|p| p.as_ref().ok()).collect();
        let mut boundaries = vec![0usize];
        for p in &payloads {
            boundaries.push(boundaries.last().unwrap() + p.len());
        }

        let mut s = busy_session();
        let mut got: Vec<u8> = Vec::new();
        let (mut fed, mut cut) = (0usize, 0usize);
        while fed < stream.len() {
            let n = cuts[cut % cuts.len()].min(stream.len() - fed);
            cut += 1;
            s.feed(&stream[fed..fed + n]).unwrap();
            fed += n;
            loop {
                let chunk = match s.next_copy_data_joined().unwrap() {
                    Some(chunk) => chunk,
                    None => match s.next_message_owned().unwrap() {
                        Some(pg_transport::Message::CopyData(chunk)) => chunk,
                        Some(other) => panic!("unexpected {other:?}"),
                        None => break,
                    },
                };
                got.extend_from_slice(&chunk);
                prop_assert!(
                    boundaries.contains(&got.len()),
                    "a chunk ended inside a message, at payload byte {}", got.len()
                );
            }
        }
        let all: Vec<u8> = payloads.iter().flat_map(|p| p.iter().copied()).collect();
        prop_assert_eq!(got, all);
        prop_assert!(s.recv_buf().is_empty());
    }
}

#[test]
fn unknown_byte_after_valid_prefix_is_protocol_error() {
    let mut s = busy_session();
    s.feed(&[data_row(&[Some(b"x")]), vec![b'?', 0, 0, 0, 4]].concat())
        .unwrap();
    assert!(s.next_message().unwrap().is_some());
    assert_eq!(s.next_message().unwrap_err().kind(), ErrorKind::Protocol);
    assert_eq!(s.state(), State::Closed);
}
