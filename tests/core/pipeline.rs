//! The pipeline through the session, bytes only: what goes on the wire, the
//! replies read back per request at every split, the server's error at every
//! position of the reply (the failing request gets it, every later one is
//! skipped, nothing waits), the implicit COMMIT's error, and replies that do
//! not fit their requests.

use pg_transport::session::pipeline::{Pipeline, PipelineRun, Response};
use pg_transport::{ErrorKind, Session, SessionConfig, State};

use crate::support::*;

/// Four requests of every kind.
fn pipeline() -> Pipeline {
    let mut p = Pipeline::new();
    p.query("SELECT v FROM t WHERE k = $1", &[Some(b"a")])
        .unwrap()
        .prepare("ins", "INSERT INTO t VALUES ($1)", &[23])
        .unwrap()
        .execute("ins", &[None])
        .unwrap()
        .close("ins")
        .unwrap();
    p
}

/// The reply to [`pipeline`], message by message, each with the index of
/// the request it answers.
fn reply() -> Vec<(usize, Vec<u8>)> {
    let params = concat(&[vec![0, 1], 23u32.to_be_bytes().to_vec()]);
    vec![
        (0, msg(b'1', b"")),
        (0, msg(b'2', b"")),
        (0, row_description(&["v"])),
        (0, data_row(&[Some(b"x")])),
        (0, data_row(&[None])),
        (0, command_complete("SELECT 2")),
        (1, msg(b'1', b"")),
        (1, msg(b't', &params)),
        (1, msg(b'n', b"")),
        (2, msg(b'2', b"")),
        (2, msg(b'n', b"")),
        (2, command_complete("INSERT 0 1")),
        (3, msg(b'3', b"")),
    ]
}

fn started() -> (Session, PipelineRun) {
    let mut s = ready_session(SessionConfig::default());
    let p = pipeline();
    let run = PipelineRun::start(&mut s, &p).unwrap();
    assert_eq!(
        s.send_buf().pending(),
        concat(&[p.bytes().to_vec(), msg(b'S', b"")])
    );
    s.send_buf().clear();
    (s, run)
}

/// Feeds `bytes` in pieces of `chunk`; the outcome once it comes.
fn feed(
    s: &mut Session,
    run: &mut PipelineRun,
    bytes: &[u8],
    chunk: usize,
) -> Option<Result<Vec<Response>, pg_transport::Error>> {
    let mut end = None;
    for piece in bytes.chunks(chunk) {
        s.feed(piece).unwrap();
        if let Some(done) = run.next(s) {
            assert!(end.is_none(), "two outcomes");
            end = Some(done);
        }
    }
    end
}

/// Each response in one word: `rows:<tag>:<values>`, `prepared:<oids>`, …
fn describe(responses: &[Response]) -> Vec<String> {
    responses
        .iter()
        .map(|r| match r {
            Response::Rows(set) => {
                let values: Vec<String> = set
                    .rows
                    .iter()
                    .map(|row| row.get_str(0).unwrap().unwrap_or("NULL").to_owned())
                    .collect();
                format!("rows:{}:{}", set.tag, values.join(","))
            }
            Response::Prepared(p) => format!("prepared:{:?}:{}", p.param_types, p.columns.len()),
            Response::Closed => "closed".into(),
            Response::Failed(e) => format!("failed:{}", e.code().unwrap().code()),
            Response::Skipped => "skipped".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn every_request_is_answered_in_order_at_every_split() {
    let whole = concat(&[
        reply().into_iter().flat_map(|(_, m)| m).collect(),
        ready(b'I'),
    ]);
    for chunk in 1..=whole.len() {
        let (mut s, mut run) = started();
        let responses = feed(&mut s, &mut run, &whole, chunk).unwrap().unwrap();
        assert_eq!(
            describe(&responses),
            [
                "rows:SELECT 2:x,NULL",
                "prepared:[23]:0",
                "rows:INSERT 0 1:",
                "closed"
            ],
            "chunk {chunk}"
        );
        assert_eq!(s.state(), State::Ready);
        assert!(run.next(&mut s).is_none(), "nothing after the end");
    }
}

#[test]
fn the_servers_error_at_every_position_fails_its_request_and_skips_the_rest() {
    let reply = reply();
    for at in 0..=reply.len() {
        let before: Vec<u8> = reply[..at].iter().flat_map(|(_, m)| m.clone()).collect();
        let bytes = concat(&[
            before,
            error(&[(b'S', "ERROR"), (b'C', "23505"), (b'M', "planted")]),
            ready(b'I'),
        ]);
        for chunk in [1, 2, 5, bytes.len()] {
            let (mut s, mut run) = started();
            let outcome = feed(&mut s, &mut run, &bytes, chunk).unwrap();
            assert_eq!(s.state(), State::Ready, "error at {at}, chunk {chunk}");
            let Some(&(failing, _)) = reply.get(at) else {
                // After the last reply: the implicit COMMIT failed.
                let e = outcome.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Server);
                assert_eq!(e.code().unwrap().code(), "23505");
                continue;
            };
            let got = describe(&outcome.unwrap());
            let full = [
                "rows:SELECT 2:x,NULL",
                "prepared:[23]:0",
                "rows:INSERT 0 1:",
                "closed",
            ];
            let mut want: Vec<String> = full[..failing].iter().map(|s| s.to_string()).collect();
            want.push("failed:23505".into());
            want.extend((failing + 1..4).map(|_| "skipped".to_string()));
            assert_eq!(got, want, "error at message {at}, chunk {chunk}");
        }
    }
}

#[test]
fn replies_that_do_not_fit_their_requests_close_the_session() {
    let cases = [
        // ReadyForQuery with requests unanswered and no error.
        (
            concat(&[msg(b'1', b""), ready(b'I')]),
            "ReadyForQuery before request 1",
        ),
        // CloseComplete where a query's ParseComplete belongs.
        (msg(b'3', b""), "CloseComplete is not a reply to request 1"),
        // A DataRow before its RowDescription.
        (
            concat(&[msg(b'1', b""), msg(b'2', b""), data_row(&[Some(b"x")])]),
            "DataRow before its RowDescription",
        ),
        // A reply past the last request.
        (
            concat(&[
                reply().into_iter().flat_map(|(_, m)| m).collect(),
                msg(b'3', b""),
            ]),
            "CloseComplete is not a reply to request 5",
        ),
    ];
    for (bytes, message) in cases {
        let (mut s, mut run) = started();
        let e = feed(&mut s, &mut run, &bytes, bytes.len())
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert!(e.to_string().contains(message), "{e}");
        assert_eq!(s.state(), State::Closed);
    }
}

#[test]
fn bad_input_leaves_the_builder_unchanged_and_copy_in_is_refused() {
    let mut p = Pipeline::new();
    p.query("SELECT 1", &[]).unwrap();
    let before = p.bytes().to_vec();
    let e = p.query("SELECT '\0'", &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = p.execute("s", &vec![None; 70_000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    // Parse is written before Bind refuses the count: it must be taken back.
    let e = p.query("SELECT 2", &vec![None; 70_000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!((p.bytes(), p.len()), (&before[..], 1));

    let mut s = ready_session(SessionConfig::default());
    let mut copy = Pipeline::new();
    copy.query("COPY t FROM STDIN", &[]).unwrap();
    let mut run = PipelineRun::start(&mut s, &copy).unwrap();
    s.send_buf().clear();
    let start = concat(&[
        msg(b'1', b""),
        msg(b'2', b""),
        msg(b'n', b""),
        copy_response(b'G', 0, &[0]),
    ]);
    assert!(feed(&mut s, &mut run, &start, start.len()).is_none());
    assert_eq!(s.send_buf().pending()[0], b'f', "CopyFail queued");
    let end = concat(&[
        error(&[
            (b'S', "ERROR"),
            (b'C', "57014"),
            (b'M', "COPY from stdin failed"),
        ]),
        ready(b'I'),
    ]);
    let responses = feed(&mut s, &mut run, &end, end.len()).unwrap().unwrap();
    assert_eq!(describe(&responses), ["failed:57014"]);
    assert_eq!(s.state(), State::Ready);
}
