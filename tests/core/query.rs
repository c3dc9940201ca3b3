//! The streamed simple query through the session, bytes only: rows by index
//! and by name at every split of the reply, several statements, the server's
//! error mid-result, a hostile DataRow, COPY refused, and the row-sink form.

use pg_transport::session::query::{QueryEvent, SimpleQuery};
use pg_transport::{ErrorKind, RowBuffer, RowCounter, Session, SessionConfig, SqlState, State};

use crate::support::*;

fn started(sql: &str) -> (Session, SimpleQuery) {
    let mut s = ready_session(SessionConfig::default());
    let q = SimpleQuery::start(&mut s, sql).unwrap();
    assert_eq!(s.send_buf().pending(), msg(b'Q', &cstr(sql.as_bytes())));
    s.send_buf().clear();
    (s, q)
}

/// Everything `q` hands out for `reply` fed in pieces of `chunk` bytes: each
/// row as its text values, the end as `Err` text or `"done"`.
fn run(reply: &[u8], chunk: usize) -> (Vec<String>, Session, SimpleQuery) {
    let (mut s, mut q) = started("SELECT a, b FROM t; SELECT 1");
    let mut seen = Vec::new();
    for piece in reply.chunks(chunk) {
        s.feed(piece).unwrap();
        while let Some(event) = q.next(&mut s) {
            seen.push(match event {
                QueryEvent::Row(row) => (0..row.len())
                    .map(|i| row.get_str(i).unwrap().unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
                    .join(","),
                QueryEvent::Done(Ok(())) => "done".into(),
                QueryEvent::Done(Err(e)) => format!("err {:?} {:#}", e.kind(), e),
            });
        }
    }
    (seen, s, q)
}

fn two_statements() -> Vec<u8> {
    concat(&[
        row_description(&["a", "b"]),
        data_row(&[Some(b"1"), Some(b"x")]),
        notice(&[(b'S', "NOTICE"), (b'C', "00000"), (b'M', "between rows")]),
        data_row(&[Some(b"2"), None]),
        command_complete("SELECT 2"),
        row_description(&["?column?"]),
        data_row(&[Some(b"1")]),
        command_complete("SELECT 1"),
        ready(b'I'),
    ])
}

#[test]
fn rows_of_every_statement_arrive_at_every_split_of_the_reply() {
    let reply = two_statements();
    for chunk in 1..=reply.len() {
        let (seen, s, q) = run(&reply, chunk);
        assert_eq!(seen, ["1,x", "2,NULL", "1", "done"], "chunk {chunk}");
        assert_eq!(q.tags(), ["SELECT 2", "SELECT 1"]);
        assert_eq!(s.state(), State::Ready);
    }
}

#[test]
fn a_row_reads_by_index_and_by_name_and_outlives_the_buffer() {
    let (mut s, mut q) = started("SELECT a, b FROM t");
    s.feed(&concat(&[
        row_description(&["a", "b"]),
        data_row(&[Some(b"10"), Some(b"\xff")]),
    ]))
    .unwrap();
    let Some(QueryEvent::Row(row)) = q.next(&mut s) else {
        panic!("expected a row");
    };
    // More bytes arrive (the buffer may move); the row keeps its own view.
    s.feed(&concat(&[command_complete("SELECT 1"), ready(b'I')]))
        .unwrap();
    assert!(matches!(q.next(&mut s), Some(QueryEvent::Done(Ok(())))));
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(row.columns()[0].type_oid(), 25);
    assert_eq!(row.get_by_name("a"), Some(Some(&b"10"[..])));
    assert_eq!(row.get_by_name("nope"), None);
    assert_eq!(row.get(2), None);
    assert_eq!(row.get_str(0).unwrap(), Some("10"));
    let bad = row.get_str(1).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Usage);
    assert!(
        bad.to_string().contains("column 1 is not valid UTF-8"),
        "{bad}"
    );
    let missing = row.get_str(5).unwrap_err();
    assert_eq!(missing.to_string(), "no column 5: the row has 2 columns");
}

#[test]
fn the_servers_error_ends_the_rows_and_leaves_the_session_ready() {
    let reply = concat(&[
        row_description(&["a", "b"]),
        data_row(&[Some(b"1"), Some(b"x")]),
        error(&[(b'S', "ERROR"), (b'C', "22012"), (b'M', "division by zero")]),
        ready(b'I'),
    ]);
    for chunk in 1..=reply.len() {
        let (seen, s, q) = run(&reply, chunk);
        assert_eq!(
            seen,
            ["1,x", "err Server ERROR:  division by zero"],
            "chunk {chunk}"
        );
        assert!(q.tags().is_empty());
        assert_eq!(s.state(), State::Ready);
    }
}

#[test]
fn a_row_that_does_not_match_its_description_closes_the_session() {
    for (reply, message) in [
        (
            concat(&[row_description(&["a", "b"]), data_row(&[Some(b"1")])]),
            "DataRow has 1 columns, expected 2",
        ),
        (data_row(&[Some(b"1")]), "DataRow before any RowDescription"),
    ] {
        let (seen, s, _) = run(&reply, reply.len());
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].starts_with("err Protocol"), "{seen:?}");
        assert!(seen[0].contains(message), "{seen:?}");
        assert_eq!(s.state(), State::Closed);
    }
}

#[test]
fn copy_from_stdin_is_refused_with_copy_fail_and_copy_to_stdout_drained() {
    let (mut s, mut q) = started("COPY t FROM STDIN");
    s.feed(&copy_response(b'G', 0, &[0])).unwrap();
    assert!(q.next(&mut s).is_none());
    let sent = s.send_buf().pending().to_vec();
    assert_eq!(sent[0], b'f', "CopyFail queued for the driver to write");
    s.send_buf().clear();
    s.feed(&concat(&[
        error(&[
            (b'S', "ERROR"),
            (b'C', "57014"),
            (b'M', "COPY from stdin failed"),
        ]),
        ready(b'I'),
    ]))
    .unwrap();
    let Some(QueryEvent::Done(Err(e))) = q.next(&mut s) else {
        panic!("expected the end");
    };
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.to_string().contains("use copy_in"), "{e}");
    assert_eq!(s.state(), State::Ready);

    let (mut s, mut q) = started("COPY t TO STDOUT");
    s.feed(&concat(&[
        copy_response(b'H', 0, &[0]),
        msg(b'd', b"1\n"),
        msg(b'c', b""),
        command_complete("COPY 1"),
        ready(b'I'),
    ]))
    .unwrap();
    let Some(QueryEvent::Done(Err(e))) = q.next(&mut s) else {
        panic!("expected the end, no rows");
    };
    assert!(e.to_string().contains("use copy_out"), "{e}");
    assert_eq!(s.state(), State::Ready);
}

#[test]
fn the_sink_form_counts_rows_and_a_refusing_sink_closes() {
    let reply = two_statements();
    for chunk in 1..=reply.len() {
        let (mut s, mut q) = started("SELECT a, b FROM t; SELECT 1");
        let mut counter = RowCounter::default();
        let mut end = None;
        for piece in reply.chunks(chunk) {
            s.feed(piece).unwrap();
            if let Some(done) = q.next_with(&mut s, &mut counter) {
                end = Some(done);
            }
        }
        assert!(matches!(end, Some(Ok(()))), "chunk {chunk}: {end:?}");
        assert_eq!(counter.rows, 3);
        assert_eq!(q.tags(), ["SELECT 2", "SELECT 1"]);
    }
    // A RowBuffer takes rows of one shape: the second statement's is refused.
    let (mut s, mut q) = started("SELECT a, b FROM t; SELECT 1");
    let mut buffer = RowBuffer::default();
    s.feed(&reply).unwrap();
    let e = q.next_with(&mut s, &mut buffer).unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(buffer.len(), 2);
}

#[test]
fn a_server_error_code_is_reachable_from_the_stream_end() {
    let reply = concat(&[
        error(&[(b'S', "ERROR"), (b'C', "42P01"), (b'M', "no such table")]),
        ready(b'I'),
    ]);
    let (mut s, mut q) = started("SELECT 1 FROM nope");
    s.feed(&reply).unwrap();
    let Some(QueryEvent::Done(Err(e))) = q.next(&mut s) else {
        panic!("expected the end");
    };
    assert_eq!(e.code(), Some(SqlState::UNDEFINED_TABLE));
    // The next operation's reply is not this query's to read.
    let next_reply = concat(&[command_complete("SELECT 0"), ready(b'I')]);
    s.feed(&next_reply).unwrap();
    assert!(q.next(&mut s).is_none(), "nothing after the end");
    assert_eq!(s.recv_buf().len(), next_reply.len(), "left unread");
}
