//! COPY IN and COPY OUT through the session, bytes only: what the sans-IO
//! COPY queues for the wire and what it makes of the server's replies,
//! including the server's error at every point of the write queue, the
//! stray-`08P01` fence, a failing source and a failing sink.

use bytes::Bytes;
use pg_transport::session::copy::{CopyIn, CopyInPhase, CopyOut, CopyOutEvent};
use pg_transport::{ErrorKind, Session, SessionConfig, SqlState, State};

use crate::support::*;

const BATCH: usize = 64 * 1024;

/// The frontend message a test expects, encoded here.
fn frontend(tag: u8, body: &[u8]) -> Vec<u8> {
    msg(tag, body)
}

fn copy_in_response() -> Vec<u8> {
    copy_response(b'G', 0, &[0])
}

fn copy_out_response() -> Vec<u8> {
    copy_response(b'H', 0, &[0])
}

fn server_error(code: &str) -> Vec<u8> {
    error(&[(b'S', "ERROR"), (b'C', code), (b'M', "planted")])
}

/// A session whose COPY IN has started (CopyInResponse received).
fn sending() -> (Session, CopyIn) {
    let mut s = ready_session(SessionConfig::default());
    let mut copy = CopyIn::start(&mut s, "COPY t FROM STDIN", BATCH).unwrap();
    assert_eq!(
        s.send_buf().pending(),
        frontend(b'Q', b"COPY t FROM STDIN\0")
    );
    s.send_buf().clear();
    assert_eq!(copy.phase(), CopyInPhase::Starting);
    s.feed(&copy_in_response()).unwrap();
    copy.receive(&mut s);
    assert_eq!(copy.phase(), CopyInPhase::Sending);
    (s, copy)
}

/// Writes at most `max` bytes of what the COPY queues, as a transport would.
fn write(copy: &mut CopyIn, max: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for seg in copy.to_write() {
        let take = seg.len().min(max - wire.len());
        wire.extend_from_slice(&seg[..take]);
        if wire.len() == max {
            break;
        }
    }
    copy.written(wire.len());
    wire
}

fn feed(s: &mut Session, copy: &mut CopyIn, bytes: &[u8]) {
    s.feed(bytes).unwrap();
    copy.receive(s);
}

/// The chunks of the abort test: small ones batched, one large enough to go
/// out without a copy, so both kinds of segment meet.
fn chunks() -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"1\ta\n"),
        Bytes::from_static(b"2\tbb\n"),
        Bytes::from(vec![b'x'; 20_000]),
        Bytes::from_static(b"3\n"),
    ]
}

#[test]
fn copy_in_sends_frames_then_copy_done_and_reads_the_row_count() {
    let (mut s, mut copy) = sending();
    for chunk in chunks() {
        copy.push(chunk).unwrap();
    }
    copy.finish();
    assert_eq!(copy.phase(), CopyInPhase::Ending);
    let wire = write(&mut copy, usize::MAX);
    let mut expected: Vec<u8> = chunks().iter().flat_map(|c| frontend(b'd', c)).collect();
    expected.extend_from_slice(&frontend(b'c', b""));
    assert_eq!(wire, expected);
    feed(
        &mut s,
        &mut copy,
        &concat(&[command_complete("COPY 3"), ready(b'I')]),
    );
    assert_eq!(copy.phase(), CopyInPhase::Done);
    assert_eq!(copy.take_result().unwrap().unwrap(), 3);
    assert_eq!(s.state(), State::Ready);
    assert!(s.send_buf().is_empty(), "no fence without a server error");
}

/// The server's error after every possible count of written bytes: the rest
/// of the frame in flight goes out, then nothing of the data (no CopyDone,
/// no CopyFail), then the fence; the server's error is the outcome and the
/// session is Ready. The error and its ReadyForQuery arrive either before
/// the rest of the frame is written or after.
#[test]
fn server_error_at_every_write_point_finishes_only_the_started_frame() {
    let frames: Vec<Vec<u8>> = chunks().iter().map(|c| frontend(b'd', c)).collect();
    let stream: Vec<u8> = frames.concat();
    let ends: Vec<usize> = frames
        .iter()
        .scan(0, |end, f| {
            *end += f.len();
            Some(*end)
        })
        .collect();
    let fence = frontend(b'Q', b"\0");
    for ready_first in [true, false] {
        for at in 0..=stream.len() {
            let (mut s, mut copy) = sending();
            for chunk in chunks() {
                copy.push(chunk).unwrap();
            }
            let mut wire = write(&mut copy, at);
            feed(&mut s, &mut copy, &server_error("22P02"));
            assert_eq!(copy.phase(), CopyInPhase::Ending, "at {at}");
            // Nothing can be added now, by any way in.
            let pushed = copy.push(Bytes::from_static(b"late\n")).unwrap_err();
            assert_eq!(pushed.kind(), ErrorKind::State, "at {at}");
            copy.finish();
            copy.fail("late source error".into());
            if ready_first {
                feed(&mut s, &mut copy, &ready(b'I'));
                assert_eq!(copy.phase(), CopyInPhase::Fencing, "at {at}");
            }
            wire.extend(write(&mut copy, usize::MAX));
            if !ready_first {
                feed(&mut s, &mut copy, &ready(b'I'));
                assert_eq!(copy.phase(), CopyInPhase::Fencing, "at {at}");
                wire.extend(write(&mut copy, usize::MAX));
            }
            let frame_end = match at {
                0 => 0,
                _ => ends.iter().copied().find(|&e| e >= at).unwrap(),
            };
            let expected = [&stream[..frame_end], &fence[..]].concat();
            assert_eq!(wire.len(), expected.len(), "bytes after an abort at {at}");
            assert_eq!(wire, expected, "at {at}, ready first {ready_first}");
            assert!(
                s.send_buf().is_empty(),
                "the fence goes in the COPY's queue"
            );

            feed(&mut s, &mut copy, &concat(&[msg(b'I', b""), ready(b'I')]));
            assert_eq!(copy.phase(), CopyInPhase::Done, "at {at}");
            let e = copy.take_result().unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Server);
            assert_eq!(
                e.as_db_error().unwrap().code,
                SqlState::from_code(b"22P02").unwrap()
            );
            assert_eq!(s.state(), State::Ready);
        }
    }
}

/// Stray `08P01` + ReadyForQuery pairs (one per CopyData that crossed the
/// error) before the fence's reply are consumed; the COPY's error stays the
/// outcome.
#[test]
fn stray_protocol_violation_replies_before_the_fence_are_consumed() {
    let (mut s, mut copy) = sending();
    feed(
        &mut s,
        &mut copy,
        &concat(&[server_error("23505"), ready(b'I')]),
    );
    assert_eq!(write(&mut copy, usize::MAX), frontend(b'Q', b"\0"));
    let strays = concat(&[
        server_error("08P01"),
        ready(b'I'),
        server_error("08P01"),
        ready(b'I'),
    ]);
    feed(&mut s, &mut copy, &strays);
    assert_eq!(copy.phase(), CopyInPhase::Fencing);
    feed(&mut s, &mut copy, &concat(&[msg(b'I', b""), ready(b'I')]));
    let e = copy.take_result().unwrap().unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code,
        SqlState::from_code(b"23505").unwrap()
    );
    assert_eq!(s.state(), State::Ready);
    // The next query starts clean.
    s.query("SELECT 1").unwrap();
}

/// Any other error from the fence: the stream cannot be trusted; Closed,
/// and the COPY's own error reported with the fence's as its `later`.
#[test]
fn a_failing_fence_closes_the_session_and_keeps_the_first_error() {
    let (mut s, mut copy) = sending();
    feed(
        &mut s,
        &mut copy,
        &concat(&[server_error("23505"), ready(b'I')]),
    );
    feed(
        &mut s,
        &mut copy,
        &concat(&[msg(b'I', b""), server_error("08P01")]),
    );
    assert_eq!(copy.phase(), CopyInPhase::Done);
    let e = copy.take_result().unwrap().unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code,
        SqlState::from_code(b"23505").unwrap()
    );
    let later = e.later().expect("the fence's failure attached");
    assert_eq!(
        later.as_db_error().unwrap().code,
        SqlState::PROTOCOL_VIOLATION
    );
    assert_eq!(s.state(), State::Closed);
}

/// The source fails while a large frame is partly written: the frame is
/// finished, CopyFail follows with the source's message, and after the
/// server's answer (an error, so a fence) the outcome is the source's error.
#[test]
fn a_failing_source_finishes_the_frame_then_sends_copy_fail() {
    let (mut s, mut copy) = sending();
    let big = Bytes::from(vec![b'y'; 30_000]);
    copy.push(big.clone()).unwrap();
    copy.push(Bytes::from_static(b"never sent\n")).unwrap();
    let mut wire = write(&mut copy, 7);
    copy.fail("disk on fire".into());
    assert_eq!(copy.phase(), CopyInPhase::Ending);
    wire.extend(write(&mut copy, usize::MAX));
    let mut expected = frontend(b'd', &big);
    expected.extend_from_slice(&frontend(b'f', b"COPY source failed: disk on fire\0"));
    assert_eq!(wire, expected);
    feed(
        &mut s,
        &mut copy,
        &concat(&[server_error("57014"), ready(b'I')]),
    );
    assert_eq!(copy.phase(), CopyInPhase::Fencing);
    assert_eq!(write(&mut copy, usize::MAX), frontend(b'Q', b"\0"));
    feed(&mut s, &mut copy, &concat(&[msg(b'I', b""), ready(b'I')]));
    let e = copy.take_result().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Callback);
    assert!(e.report().to_string().contains("disk on fire"), "{e:#}");
    assert!(
        e.later().is_none(),
        "the server's answer to CopyFail only repeats it"
    );
    assert_eq!(s.state(), State::Ready);
}

/// Before CopyDone the server can send only an error (and notices): any
/// other message ends the COPY with a protocol error, the session Closed.
#[test]
fn a_reply_before_copy_done_is_a_protocol_violation() {
    let (mut s, mut copy) = sending();
    feed(
        &mut s,
        &mut copy,
        &notice(&[(b'S', "NOTICE"), (b'C', "00000"), (b'M', "hi")]),
    );
    assert_eq!(copy.phase(), CopyInPhase::Sending, "a notice is no reply");
    feed(&mut s, &mut copy, &command_complete("COPY 0"));
    assert_eq!(copy.phase(), CopyInPhase::Done);
    let e = copy.take_result().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(
        e.to_string()
            .contains("CommandComplete from the server during COPY IN"),
        "{e}"
    );
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn copy_in_refused_by_the_server_is_its_error_without_a_fence() {
    let mut s = ready_session(SessionConfig::default());
    let mut copy = CopyIn::start(&mut s, "COPY nope FROM STDIN", BATCH).unwrap();
    s.send_buf().clear();
    feed(
        &mut s,
        &mut copy,
        &concat(&[server_error("42P01"), ready(b'I')]),
    );
    let e = copy.take_result().unwrap().unwrap_err();
    assert_eq!(
        e.as_db_error().unwrap().code,
        SqlState::from_code(b"42P01").unwrap()
    );
    assert!(s.send_buf().is_empty());
    assert_eq!(s.state(), State::Ready);
}

#[test]
fn copy_in_given_copy_to_stdout_is_a_usage_error() {
    let mut s = ready_session(SessionConfig::default());
    let mut copy = CopyIn::start(&mut s, "COPY t TO STDOUT", BATCH).unwrap();
    let out = concat(&[
        copy_out_response(),
        msg(b'd', b"1\n"),
        msg(b'c', b""),
        command_complete("COPY 1"),
        ready(b'I'),
    ]);
    feed(&mut s, &mut copy, &out);
    let e = copy.take_result().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("use copy_out"), "{e}");
    assert_eq!(s.state(), State::Ready);
}

/// The driver's read failed after the server aborted: the server's error is
/// reported, the failure attached.
#[test]
fn an_io_failure_after_the_abort_is_attached_to_the_servers_error() {
    let (mut s, mut copy) = sending();
    feed(&mut s, &mut copy, &server_error("22P02"));
    s.close();
    let io = pg_transport::Error::io("reading", std::io::ErrorKind::ConnectionReset.into());
    let e = copy.interrupted(&mut s, io);
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.later().unwrap().kind(), ErrorKind::Io);
    assert_eq!(copy.phase(), CopyInPhase::Done);
}

fn copy_out(joined: bool) -> (Session, CopyOut) {
    let mut s = ready_session(SessionConfig::default());
    let copy = CopyOut::start(&mut s, "COPY t TO STDOUT", joined).unwrap();
    assert_eq!(
        s.send_buf().pending(),
        frontend(b'Q', b"COPY t TO STDOUT\0")
    );
    s.send_buf().clear();
    (s, copy)
}

/// Drains every event the buffered bytes give.
fn events(s: &mut Session, copy: &mut CopyOut) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(event) = copy.next(s) {
        out.push(match event {
            CopyOutEvent::Data(d) => format!("data {}", String::from_utf8_lossy(&d)),
            CopyOutEvent::Done(Ok(rows)) => format!("done {rows}"),
            // The chain: a sink's error is the source of the Callback error.
            CopyOutEvent::Done(Err(e)) => format!("error {:?}: {e:#}", e.kind()),
        });
    }
    out
}

#[test]
fn copy_out_hands_out_each_payload_then_the_row_count() {
    for joined in [false, true] {
        let (mut s, mut copy) = copy_out(joined);
        let reply = concat(&[
            copy_out_response(),
            msg(b'd', b"1\n"),
            msg(b'd', b"2\n"),
            notice(&[(b'S', "NOTICE"), (b'C', "00000"), (b'M', "mid-copy")]),
            msg(b'd', b"3\n"),
            msg(b'c', b""),
            command_complete("COPY 3"),
            ready(b'I'),
        ]);
        s.feed(&reply).unwrap();
        let expected: &[&str] = if joined {
            &["data 1\n2\n", "data 3\n", "done 3"]
        } else {
            &["data 1\n", "data 2\n", "data 3\n", "done 3"]
        };
        assert_eq!(events(&mut s, &mut copy), expected, "joined {joined}");
        assert_eq!(copy.rows(), Some(3));
        assert_eq!(s.state(), State::Ready);
    }
}

#[test]
fn copy_out_after_a_sink_failure_drops_the_rest_and_reports_the_sink() {
    let (mut s, mut copy) = copy_out(false);
    s.feed(&concat(&[copy_out_response(), msg(b'd', b"1\n")]))
        .unwrap();
    assert_eq!(events(&mut s, &mut copy), ["data 1\n"]);
    copy.sink_failed("sink full".into());
    s.feed(&concat(&[
        msg(b'd', b"2\n"),
        msg(b'c', b""),
        command_complete("COPY 2"),
        ready(b'I'),
    ]))
    .unwrap();
    assert_eq!(
        events(&mut s, &mut copy),
        ["error Callback: COPY OUT sink failed: sink full"]
    );
    assert_eq!(s.state(), State::Ready);
}

#[test]
fn copy_out_server_error_mid_stream_ends_with_it() {
    let (mut s, mut copy) = copy_out(false);
    s.feed(&concat(&[
        copy_out_response(),
        msg(b'd', b"1\n"),
        server_error("57014"),
        ready(b'I'),
    ]))
    .unwrap();
    let got = events(&mut s, &mut copy);
    assert_eq!(got[0], "data 1\n");
    assert!(got[1].starts_with("error Server"), "{got:?}");
    assert_eq!(got.len(), 2);
    assert_eq!(s.state(), State::Ready);
}

/// Given `COPY … FROM STDIN`, the server waits for data: CopyFail is queued
/// in the session so it answers, and the outcome is a usage error.
#[test]
fn copy_out_given_copy_from_stdin_refuses_with_copy_fail() {
    let (mut s, mut copy) = copy_out(false);
    s.feed(&copy_in_response()).unwrap();
    assert!(copy.next(&mut s).is_none());
    assert_eq!(
        s.send_buf().pending(),
        frontend(b'f', b"copy_out cannot send COPY data\0")
    );
    s.send_buf().clear();
    s.feed(&concat(&[server_error("57014"), ready(b'I')]))
        .unwrap();
    let got = events(&mut s, &mut copy);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("error Usage: copy_out was given COPY … FROM STDIN"),
        "{got:?}"
    );
    assert_eq!(s.state(), State::Ready);
}
