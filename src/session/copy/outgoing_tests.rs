//! `Outgoing` against a model: the COPY IN byte stream is the pushed chunks
//! framed as whole CopyData messages, in order; whatever the writes accept,
//! and wherever an abort comes, no frame is cut and nothing but the rest of
//! the started frame (and CopyFail, when the source failed) follows the abort.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::{Outgoing, ZERO_COPY_MIN};
use crate::protocol::frontend;
use crate::protocol::limits::MAX_COPY_DATA_CHUNK;

/// What the connection does to the queue.
#[derive(Debug, Clone)]
enum Op {
    /// The source yields a chunk of this many bytes.
    Push(usize),
    /// The transport accepts at most `max` bytes; without `vectored`, only
    /// from the first non-empty slice (tokio's default `poll_write_vectored`).
    Write { max: usize, vectored: bool },
    /// The server's error arrived (`copy_fail: false`), or the source failed
    /// and CopyFail follows. Later pushes and aborts are not made: the
    /// connection stops pulling the source.
    Abort { copy_fail: bool },
}

const REASON: &str = "COPY source failed: planted";

fn chunk_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => Just(0usize),
        6 => 1usize..64,
        4 => 64usize..4_096,
        // Around the zero-copy threshold, so both ways of framing meet.
        3 => (ZERO_COPY_MIN - 2)..(ZERO_COPY_MIN + 2),
        2 => 4_096usize..70_000,
        // Split at the cap into more than one frame.
        1 => MAX_COPY_DATA_CHUNK..(MAX_COPY_DATA_CHUNK + 20_000),
    ]
}

fn write_max() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..8, 8usize..300, 300usize..70_000, Just(usize::MAX),]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => chunk_len().prop_map(Op::Push),
        5 => (write_max(), any::<bool>()).prop_map(|(max, vectored)| Op::Write { max, vectored }),
        1 => any::<bool>().prop_map(|copy_fail| Op::Abort { copy_fail }),
    ]
}

/// Chunk `index`'s bytes: distinct per chunk and position, so a reordered or
/// repeated byte shows.
fn chunk(index: usize, len: usize) -> Bytes {
    (0..len)
        .map(|j| (index.wrapping_mul(131).wrapping_add(j) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A CopyData frame, encoded here rather than by `frontend`.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len() + 4).unwrap();
    [&[tag][..], &len.to_be_bytes(), body].concat()
}

/// Writes once, as a transport accepting at most `max` bytes would.
fn write(out: &mut Outgoing, wire: &mut Vec<u8>, max: usize, vectored: bool) {
    // What the connection does before every write (`poll_write_out`).
    out.seal();
    let slices: Vec<&[u8]> = out.segments().take(16).collect();
    let offered = slices.iter().filter(|s| !s.is_empty());
    let mut left = max;
    let before = wire.len();
    for s in offered {
        let take = s.len().min(left);
        wire.extend_from_slice(&s[..take]);
        left -= take;
        if left == 0 || !vectored {
            break;
        }
    }
    out.advance(wire.len() - before);
}

/// The end of the frame holding stream offset `at`: `at` itself when a
/// frame ends (or the stream starts) there.
fn frame_end(ends: &[usize], at: usize) -> usize {
    if at == 0 {
        return 0;
    }
    *ends
        .iter()
        .find(|&&e| e >= at)
        .expect("offset within the stream")
}

fn run(batch: usize, ops: &[Op], drain: &[(usize, bool)]) -> Result<(), TestCaseError> {
    let mut out = Outgoing::default();
    let mut wire = Vec::new();
    // The model: every CopyData frame pushed, as one stream, and where each ends.
    let mut stream = Vec::new();
    let mut ends = Vec::new();
    let mut abort: Option<(usize, bool)> = None;
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Push(len) if abort.is_none() => {
                let data = chunk(i, len);
                for piece in data.chunks(MAX_COPY_DATA_CHUNK) {
                    stream.extend_from_slice(&frame(b'd', piece));
                    ends.push(stream.len());
                }
                out.push_copy_data(data, batch);
            }
            Op::Write { max, vectored } => write(&mut out, &mut wire, max, vectored),
            Op::Abort { copy_fail } if abort.is_none() => {
                let at = wire.len();
                abort = Some((at, copy_fail));
                out.keep_started_frame_only();
                if copy_fail {
                    let mut buf = BytesMut::new();
                    frontend::copy_fail(&mut buf, REASON);
                    out.push_message(buf.freeze());
                }
                let end = frame_end(&ends, at);
                let fail = if copy_fail {
                    frame(b'f', format!("{REASON}\0").as_bytes()).len()
                } else {
                    0
                };
                prop_assert_eq!(
                    out.len(),
                    end - at + fail,
                    "queued after the abort at {}",
                    at
                );
            }
            Op::Push(_) | Op::Abort { .. } => {}
        }
        if abort.is_none() {
            prop_assert!(
                stream.starts_with(&wire),
                "written bytes are not the frames' prefix"
            );
            prop_assert_eq!(out.len(), stream.len() - wire.len(), "queued bytes");
        }
    }
    // Write out what is left, in the drain's sizes while they last (1-byte
    // writes through a 1 MiB frame would take a while), then whole.
    let mut steps = 0usize;
    while !out.is_empty() {
        let (max, vectored) = drain[steps % drain.len()];
        let max = if steps < 5_000 { max } else { usize::MAX };
        let before = wire.len();
        write(&mut out, &mut wire, max, vectored);
        prop_assert!(
            wire.len() > before,
            "a write with bytes queued wrote nothing"
        );
        steps += 1;
    }
    let expected = match abort {
        None => stream,
        Some((at, copy_fail)) => {
            let mut e = stream[..frame_end(&ends, at)].to_vec();
            if copy_fail {
                e.extend_from_slice(&frame(b'f', format!("{REASON}\0").as_bytes()));
            }
            e
        }
    };
    // Compared by length first: a multi-megabyte diff helps nobody.
    prop_assert_eq!(
        wire.len(),
        expected.len(),
        "bytes written (abort {:?})",
        abort
    );
    prop_assert!(
        wire == expected,
        "written bytes differ from the model (abort {:?})",
        abort
    );
    Ok(())
}

proptest! {
    // The regressions file kept its name from when this test lived in `src/copy_tests.rs`.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/copy_tests.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn outgoing_writes_whole_frames_in_order_and_finishes_the_started_one(
        batch in prop_oneof![1usize..64, 64usize..70_000],
        ops in proptest::collection::vec(op(), 0..40),
        drain in proptest::collection::vec((write_max(), any::<bool>()), 1..4),
    ) {
        run(batch, &ops, &drain)?;
    }
}

/// A write that ends inside the second slice, then an abort: the rest of
/// that frame goes out, and nothing after it.
#[test]
fn abort_after_a_write_across_slices_finishes_that_frame() {
    let ops = [
        Op::Push(3),
        Op::Push(ZERO_COPY_MIN),
        Op::Write {
            max: 8 + 5 + 2,
            vectored: true,
        },
        Op::Abort { copy_fail: false },
    ];
    run(1 << 16, &ops, &[(1, true)]).unwrap();
}
