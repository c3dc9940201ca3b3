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

/// Every backend message tag (the protocol documentation, "Message Formats").
const TAGS: &[u8] = b"123ACDEGHIKNRSTVWZcdnstv";

/// Noise that is mostly well framed, so a session parses deep into it before
/// (if ever) refusing it: valid messages, with now and then a well-framed
/// message with a random body under a real tag or a frame whose length lies;
/// then up to three bytes of the whole stream changed anywhere, and now and
/// then raw bytes after it. Plain random bytes die at the first byte nine
/// times in ten (`framed_noise_reaches_deep`).
fn framed_noise() -> impl Strategy<Value = Vec<u8>> {
    let frame = prop_oneof![
        16 => backend_message(),
        2 => (prop::sample::select(TAGS.to_vec()), bytes(64)).prop_map(|(t, b)| msg(t, &b)),
        1 => refused_whole(),
        1 => (prop::sample::select(TAGS.to_vec()), -8i32..80, bytes(64)).prop_map(|(t, len, b)| {
            let mut m = vec![t];
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(&b);
            m
        }),
    ];
    (
        proptest::collection::vec(frame, 0..40),
        proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        prop_oneof![3 => Just(Vec::new()), 1 => bytes(16)],
    )
        .prop_map(|(frames, flips, tail)| {
            let mut stream = frames.concat();
            if !stream.is_empty() {
                for (at, x) in flips {
                    let at = at.index(stream.len());
                    stream[at] ^= x;
                }
            }
            stream.extend_from_slice(&tail);
            stream
        })
}

/// The length of the complete frame `next` starts with, if it is complete.
fn frame_len(next: &[u8]) -> Option<usize> {
    let declared = i32::from_be_bytes(next.get(1..5)?.try_into().unwrap());
    let len = 1 + usize::try_from(declared).ok().filter(|&d| d >= 4)?;
    (next.len() >= len).then_some(len)
}

/// Well-formed messages a session refuses whole, each with its own kind
/// (`expected_kind`): CopyBothResponse, and requests for Kerberos V5, GSSAPI
/// (and its continuation) or SSPI.
fn refused_whole() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..2, proptest::collection::vec(0u8..2, 0..4)).prop_map(|(format, columns)| {
            let mut body = vec![format];
            body.extend_from_slice(&(columns.len() as i16).to_be_bytes());
            columns
                .iter()
                .for_each(|&c| body.extend_from_slice(&i16::from(c).to_be_bytes()));
            msg(b'W', &body)
        }),
        prop::sample::select(vec![2i32, 7, 9]).prop_map(|code| msg(b'R', &code.to_be_bytes())),
        bytes(8).prop_map(|data| msg(b'R', &[&8i32.to_be_bytes()[..], &data].concat())),
    ]
}

/// The kind a Busy session must fail with when it refuses `next` (the unread
/// bytes, starting with the refused message), from the protocol
/// documentation rather than the parser: a well-formed CopyBothResponse is
/// unsupported (replication), a well-formed request for Kerberos V5, GSSAPI
/// or SSPI is an authentication error, anything else a protocol error.
fn expected_kind(mut next: &[u8]) -> ErrorKind {
    // The session consumes notices, notifications, ParameterStatus and
    // NegotiateProtocolVersion itself on the way to the refused message; a
    // well-formed one is passed over (the parser only says whether it is).
    while let Some(len) = frame_len(next) {
        if !INTERNAL.contains(&next[0]) || parse_stream(&next[..len], 1 << 20).1 != StreamEnd::Clean
        {
            break;
        }
        next = &next[len..];
    }
    let Some(len) = next.get(1..5) else {
        return ErrorKind::Protocol;
    };
    let declared = i32::from_be_bytes(len.try_into().unwrap());
    let Some(body) = usize::try_from(declared)
        .ok()
        .filter(|&d| d >= 4)
        .and_then(|d| next.get(5..1 + d))
    else {
        return ErrorKind::Protocol;
    };
    match next[0] {
        b'W' => {
            let well_formed = match body {
                [format @ (0 | 1), hi, lo, columns @ ..] => {
                    let count = i16::from_be_bytes([*hi, *lo]);
                    let _ = format;
                    count >= 0
                        && columns.len() == 2 * count as usize
                        && columns.chunks(2).all(|c| c == [0, 0] || c == [0, 1])
                }
                _ => false,
            };
            if well_formed {
                ErrorKind::Unsupported
            } else {
                ErrorKind::Protocol
            }
        }
        b'R' => match body {
            [0, 0, 0, 2 | 7 | 9] | [0, 0, 0, 8, ..] => ErrorKind::Auth,
            _ => ErrorKind::Protocol,
        },
        _ => ErrorKind::Protocol,
    }
}

/// The generator does what it claims: most streams parse past their first
/// message and many past their fifth, where random bytes almost never do.
#[test]
fn framed_noise_reaches_deep() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    // Streams (of 1000) whose parse returns at least 1 and at least 5 messages.
    let count = |noise: Vec<u8>, tally: &mut (usize, usize)| {
        let parsed = parse_stream(&noise, 1 << 20).0.len();
        tally.0 += usize::from(parsed >= 1);
        tally.1 += usize::from(parsed >= 5);
    };
    let (framed, raw) = (framed_noise(), bytes(2048));
    let (mut f, mut r) = ((0, 0), (0, 0));
    for _ in 0..1000 {
        count(framed.new_tree(&mut runner).unwrap().current(), &mut f);
        count(raw.new_tree(&mut runner).unwrap().current(), &mut r);
    }
    assert!(
        f.0 >= 700 && f.1 >= 250,
        "framed noise: {f:?} of 1000 reach 1 and 5 messages"
    );
    assert!(r.0 < 200 && r.1 < 10, "random bytes: {r:?} of 1000");
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
        let (mut fed, mut cut) = (0usize, 0usize);
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
        }
        prop_assert_eq!(got, expected);
        prop_assert!(s.recv_buf().is_empty());
    }

    /// (b) Noise that is mostly well framed (so parsing goes deep, see
    /// `framed_noise`): never a panic; the buffer stays within its bounds;
    /// the outcome is messages, "need more", or an error of the kind the
    /// refused frame calls for (`expected_kind`) with the session Closed.
    #[test]
    fn arbitrary_bytes_never_panic_or_overgrow(
        stream in framed_noise(),
        cuts in proptest::collection::vec(1usize..512, 1..10),
    ) {
        const MAX: usize = 16 * 1024;
        let config = SessionConfig::default().max_message_len(MAX);
        let bound = 2 * (MAX + config.recv.read_size_max);
        let mut s = ready_session(config);
        s.query("SELECT noise").unwrap();
        let mut fed = 0;
        let mut cut = 0;
        'outer: while fed < stream.len() {
            let room = match s.prepare_read() {
                Ok(buf) => buf.capacity() - buf.len(),
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::Protocol);
                    prop_assert_eq!(s.state(), State::Closed);
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
                let next = s.recv_buf().unread().to_vec();
                match s.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert_eq!(e.kind(), expected_kind(&next), "{} refusing {:?}", e, &next[..next.len().min(16)]);
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

    /// (b) The pure parser on noise: a result, never a panic, and
    /// "incomplete" only when what is left really is the start of a message
    /// (a header cut short, or fewer bytes than the header declares).
    #[test]
    fn parser_total_on_arbitrary_bytes(noise in framed_noise()) {
        let (_, end) = parse_stream(&noise, 1 << 20);
        match end {
            StreamEnd::Clean => {}
            StreamEnd::Incomplete(n) => {
                prop_assert!(n > 0 && n <= noise.len());
                let rest = &noise[noise.len() - n..];
                if let Some(len) = rest.get(1..5) {
                    let declared = i32::from_be_bytes(len.try_into().unwrap());
                    prop_assert!(declared >= 4, "a length under 4 is an error, not a prefix");
                    prop_assert!((declared as usize) + 1 > n, "a complete frame was left unparsed");
                }
            }
            StreamEnd::Error(at, _) => prop_assert!(at < noise.len()),
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
