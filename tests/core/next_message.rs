//! Group B: `Session::next_message` and internal dispatch; D51/D52 (state on send).

use std::sync::{Arc, Mutex};

use pg_transport::protocol::Message;
use pg_transport::{DbError, ErrorKind, RowBuffer, RowCounter, Session, SessionConfig, State};

use crate::support::*;

#[test]
fn b26_rows_counted_and_command_complete_returned() {
    let mut s = busy_session();
    let stream = concat(&[
        data_row(&[Some(b"1")]),
        data_row(&[Some(b"2")]),
        command_complete("SELECT 2"),
    ]);
    s.feed(&stream).unwrap();
    let mut counter = RowCounter::default();
    let m = s.next_message_with(&mut counter).unwrap();
    assert_eq!(
        m,
        Some(Message::CommandComplete {
            tag: &b"SELECT 2"[..]
        })
    );
    assert_eq!(counter.rows, 2);
    assert!(s.recv_buf().is_empty(), "position at the end");
    assert_eq!(s.recv_buf().position(), stream.len());
}

#[test]
fn b27_skip_counts_and_a_row_buffer_decodes() {
    let stream = concat(&[
        data_row(&[Some(b"a"), None]),
        data_row(&[Some(b"b"), Some(b"c")]),
        command_complete("SELECT 2"),
    ]);

    let mut s = busy_session();
    s.feed(&stream).unwrap();
    let mut counter = RowCounter::default();
    assert!(matches!(
        s.next_message_with(&mut counter).unwrap(),
        Some(Message::CommandComplete { .. })
    ));
    assert_eq!(counter.rows, 2);

    let mut s = busy_session();
    s.feed(&stream).unwrap();
    let mut rows = RowBuffer::default();
    assert!(matches!(
        s.next_message_with(&mut rows).unwrap(),
        Some(Message::CommandComplete { .. })
    ));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.get(0, 0), Some(Some(&b"a"[..])));
    assert_eq!(rows.get(0, 1), Some(None));
    assert_eq!(rows.get(1, 1), Some(Some(&b"c"[..])));

    // Without a sink, DataRows are returned one by one.
    let mut s = busy_session();
    s.feed(&stream).unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::DataRow(_))
    ));
}

#[test]
fn b28_partial_message_stays_buffered() {
    let mut s = busy_session();
    let complete = concat(&[row_description(&["x"]), data_row(&[Some(b"1")])]);
    let partial = &command_complete("SELECT 1")[..7];
    s.feed(&complete).unwrap();
    s.feed(partial).unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::RowDescription(_))
    ));
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::DataRow(_))
    ));
    assert_eq!(s.next_message().unwrap(), None);
    assert_eq!(
        s.recv_buf().position(),
        complete.len(),
        "pointer at the start of the partial message"
    );
    assert_eq!(s.recv_buf().unread(), partial, "partial bytes retained");
    s.feed(&command_complete("SELECT 1")[7..]).unwrap();
    assert_eq!(
        s.next_message().unwrap(),
        Some(Message::CommandComplete {
            tag: &b"SELECT 1"[..]
        })
    );
}

#[test]
fn b29_notification_mid_result_is_dispatched_not_returned() {
    let mut s = busy_session();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cb_seen = seen.clone();
    s.set_notification_delivery(pg_transport::NotificationDelivery::Both(Box::new(
        move |n| cb_seen.lock().unwrap().push(n.payload.clone()),
    )));
    s.feed(&concat(&[
        row_description(&["x"]),
        notification(9, "ch", "first"),
        notification(9, "ch", "second"),
        command_complete("SELECT 0"),
    ]))
    .unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::RowDescription(_))
    ));
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::CommandComplete { .. })
    ));
    assert_eq!(*seen.lock().unwrap(), ["first", "second"]);
    let a = s.pop_notification().unwrap().unwrap();
    let b = s.pop_notification().unwrap().unwrap();
    assert_eq!(
        (a.process_id, a.channel.as_str(), a.payload.as_str()),
        (9, "ch", "first")
    );
    assert_eq!(b.payload, "second");
    assert!(s.pop_notification().is_none());
}

fn notice_stream(severity: &str) -> Vec<u8> {
    concat(&[
        notice(&[
            (b'S', severity),
            (b'V', severity),
            (b'C', "01000"),
            (b'M', "careful now"),
        ]),
        command_complete("DO"),
    ])
}

#[test]
fn b30_notice_goes_to_tracing_by_severity_when_no_callback() {
    for (severity, level) in [("WARNING", "WARN"), ("NOTICE", "INFO"), ("DEBUG", "DEBUG")] {
        let mut s = busy_session();
        s.feed(&notice_stream(severity)).unwrap();
        let log = capture_tracing(|| {
            assert!(matches!(
                s.next_message().unwrap(),
                Some(Message::CommandComplete { .. })
            ));
        });
        let line = log
            .lines()
            .find(|l| l.contains("careful now"))
            .unwrap_or_else(|| panic!("no notice in {log:?}"));
        assert!(
            line.starts_with(&format!("{level:>5}")) || line.trim_start().starts_with(level),
            "{line}"
        );
        assert!(line.contains("pg_transport::notice"), "{line}");
        assert!(line.contains("01000"), "{line}");
    }
}

#[test]
fn b30_notice_callback_gets_exactly_the_fields() {
    let mut s = busy_session();
    let got: Arc<Mutex<Vec<DbError>>> = Arc::default();
    let sink = got.clone();
    s.set_notice_callback(move |n| sink.lock().unwrap().push(n.clone()));
    s.feed(&concat(&[
        notice(&[
            (b'S', "NOTICE"),
            (b'C', "00000"),
            (b'M', "hello"),
            (b'D', "some detail"),
            (b'H', "a hint"),
        ]),
        command_complete("DO"),
    ]))
    .unwrap();
    let log = capture_tracing(|| {
        assert!(matches!(
            s.next_message().unwrap(),
            Some(Message::CommandComplete { .. })
        ));
    });
    assert!(!log.contains("hello"), "callback set: nothing logged");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(
        (
            n.severity.as_str(),
            n.code.code(),
            n.message.as_str(),
            n.detail.as_deref(),
            n.hint.as_deref()
        ),
        (
            "NOTICE",
            "00000",
            "hello",
            Some("some detail"),
            Some("a hint")
        )
    );
}

#[test]
fn b31_parameter_status_updates_params_silently() {
    let mut s = busy_session();
    s.feed(&concat(&[
        parameter_status("application_name", "x"),
        data_row(&[Some(b"1")]),
        command_complete("SELECT 1"),
    ]))
    .unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::DataRow(_))
    ));
    assert_eq!(s.parameter("application_name"), Some("x"));
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::CommandComplete { .. })
    ));
}

#[test]
fn b32_negotiate_protocol_version_during_startup() {
    let mut s = Session::new(SessionConfig::default());
    s.startup(&[("user", "u"), ("_pq_.a", "1"), ("_pq_.b", "2")])
        .unwrap();
    s.feed(&concat(&[
        negotiate(0, &["_pq_.a", "_pq_.b"]),
        auth_ok(),
        parameter_status("server_version", "17.2"),
        backend_key(4242, &[1, 2, 3, 4]),
        ready(b'I'),
    ]))
    .unwrap();
    let mut seen = Vec::new();
    while let Some(m) = s.next_message().unwrap() {
        seen.push(
            format!("{m:?}")
                .split(['(', ' ', '{'])
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen, ["Authentication", "BackendKeyData", "ReadyForQuery"]);
    assert_eq!(s.state(), State::Ready);
    let n = s.protocol_negotiation().unwrap();
    assert_eq!(
        (n.newest_minor, n.unsupported_options.clone()),
        (0, vec!["_pq_.a".to_owned(), "_pq_.b".to_owned()])
    );
    assert_eq!(s.backend_key().unwrap().process_id, 4242);
    assert_eq!(s.parameter("server_version"), Some("17.2"));
}

#[test]
fn b34_unknown_type_byte_in_ready_closes() {
    let mut s = ready_session(SessionConfig::default());
    s.feed(&msg(b'X', b"")).unwrap();
    let e = s.next_message().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(
        e.report()
            .to_string()
            .contains("Unknown backend message type"),
        "{e:#}"
    );
    assert_eq!(s.state(), State::Closed);
    // Sticky: nothing brings it back, and operations say it is closed.
    assert_eq!(s.next_message().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(s.query("SELECT 1").unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn error_in_message_k_does_not_reparse_earlier_ones() {
    let mut s = busy_session();
    s.feed(&concat(&[data_row(&[Some(b"1")]), msg(b'Z', b"")]))
        .unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::DataRow(_))
    ));
    let position = s.recv_buf().position();
    assert!(s.next_message().unwrap_err().is_protocol());
    assert!(
        s.recv_buf().position() > position,
        "advanced past the bad message"
    );
}

#[test]
fn owned_messages_share_the_receive_buffer() {
    let mut s = busy_session();
    s.feed(&concat(&[msg(b'd', b"row one\n"), msg(b'd', b"row two\n")]))
        .unwrap();
    let Some(Message::CopyData(a)) = s.next_message_owned().unwrap() else {
        panic!()
    };
    let Some(Message::CopyData(b)) = s.next_message_owned().unwrap() else {
        panic!()
    };
    assert_eq!((&a[..], &b[..]), (&b"row one\n"[..], &b"row two\n"[..]));
    // Adjacent payloads of one allocation: no copy was made.
    assert_eq!(a.as_ptr() as usize + a.len() + 5, b.as_ptr() as usize);
}

#[test]
fn ready_for_query_sets_transaction_status_and_state() {
    let mut s = busy_session();
    s.feed(&concat(&[command_complete("BEGIN"), ready(b'T')]))
        .unwrap();
    while s.next_message().unwrap().is_some() {}
    assert_eq!(s.state(), State::Ready);
    assert_eq!(
        s.transaction_status(),
        pg_transport::TransactionStatus::InTransaction
    );
    s.feed(&ready(b'I')).unwrap();
    let e = s.next_message().unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Protocol,
        "ReadyForQuery while idle: {e}"
    );
}

#[test]
fn copy_states_follow_the_server() {
    let mut s = busy_session();
    s.feed(&copy_response(b'H', 0, &[0])).unwrap();
    assert!(s.next_message().unwrap().is_some());
    assert_eq!(s.state(), State::CopyOut);
    s.feed(&concat(&[
        msg(b'd', b"1\n"),
        msg(b'c', b""),
        command_complete("COPY 1"),
        ready(b'I'),
    ]))
    .unwrap();
    assert!(matches!(
        s.next_message().unwrap(),
        Some(Message::CopyData(_))
    ));
    assert_eq!(s.state(), State::CopyOut);
    assert!(matches!(s.next_message().unwrap(), Some(Message::CopyDone)));
    assert_eq!(s.state(), State::Busy);
    while s.next_message().unwrap().is_some() {}
    assert_eq!(s.state(), State::Ready);
}

#[test]
fn d51_nul_in_query_leaves_ready_and_nothing_queued() {
    let mut s = ready_session(SessionConfig::default());
    let e = s.query("SELECT 1\0x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.report().to_string().contains("NUL"), "{e:#}");
    assert_eq!(s.state(), State::Ready);
    assert!(s.send_buf().is_empty());
    s.query("SELECT 1").unwrap();
    assert_eq!(s.send_buf().pending(), b"Q\0\0\0\x0dSELECT 1\0");
    assert_eq!(s.state(), State::Busy);
}

#[test]
fn d52_busy_is_a_state_error_closed_is_a_connection_error() {
    let mut s = busy_session();
    let e = s.query("SELECT 2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    assert!(!e.is_closed());
    s.close();
    let e = s.query("SELECT 2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(e.to_string(), "connection is closed");
}

/// Each way a DataRow can be malformed, as a body.
fn malformed_rows() -> [(&'static str, Vec<u8>); 5] {
    let row = |count: i16, rest: &[u8]| [&count.to_be_bytes()[..], rest].concat();
    [
        (
            "negative length other than -1",
            row(1, &(-2i32).to_be_bytes()),
        ),
        ("length past the end", row(1, &100i32.to_be_bytes())),
        (
            "fewer columns than counted",
            row(2, &[&1i32.to_be_bytes()[..], b"x"].concat()),
        ),
        (
            "bytes after the last column",
            row(1, &[&1i32.to_be_bytes()[..], b"xyz"].concat()),
        ),
        ("bytes in a row of no columns", row(0, b"x")),
    ]
}

/// Every session path checks a DataRow before its caller or sink sees it
/// (the returned paths take a row without `observe`): a malformed row is a
/// protocol error and closes the session.
#[test]
fn b_malformed_data_row_closes_the_session_on_every_path() {
    for (what, body) in malformed_rows() {
        for path in ["borrowed", "owned", "row", "counter", "buffer"] {
            let mut s = busy_session();
            s.feed(&concat(&[row_description(&["x"]), msg(b'D', &body)]))
                .unwrap();
            let mut counter = RowCounter::default();
            let mut buffer = RowBuffer::default();
            let outcome = (|| {
                match path {
                    "borrowed" => while s.next_message()?.is_some() {},
                    "owned" => while s.next_message_owned()?.is_some() {},
                    "row" => {
                        while s
                            .next_message_owned()?
                            .is_some_and(|m| !matches!(m, Message::RowDescription(_)))
                        {
                        }
                        s.next_data_row_owned()?;
                    }
                    "counter" => while s.next_message_with(&mut counter)?.is_some() {},
                    _ => while s.next_message_with(&mut buffer)?.is_some() {},
                }
                Ok::<_, pg_transport::Error>(())
            })();
            let e = outcome.expect_err(what);
            assert_eq!(e.kind(), ErrorKind::Protocol, "{what} ({path})");
            assert_eq!(s.state(), State::Closed, "{what} ({path})");
            assert_eq!(counter.rows, 0, "{what}: the sink saw the bad row");
        }
    }
}

/// `next_data_row_owned` takes only a complete DataRow at the front: the
/// row's columns as sent; `None` (nothing consumed) for an incomplete row and
/// for any other message, which `next_message_owned` then returns.
#[test]
fn next_data_row_owned_takes_only_a_complete_row() {
    let row = data_row(&[Some(b"42"), None, Some(b"")]);
    let mut s = busy_session();
    s.feed(&row[..row.len() - 1]).unwrap();
    assert_eq!(s.next_data_row_owned().unwrap(), None, "incomplete");
    assert_eq!(s.recv_buf().position(), 0, "nothing consumed");
    s.feed(&concat(&[
        row[row.len() - 1..].to_vec(),
        command_complete("SELECT 1"),
    ]))
    .unwrap();
    let taken = s.next_data_row_owned().unwrap().expect("the row");
    let columns: Vec<_> = taken.columns().collect();
    assert_eq!(columns, [Some(&b"42"[..]), None, Some(&b""[..])]);
    assert_eq!(s.next_data_row_owned().unwrap(), None, "not a row");
    assert_eq!(
        s.next_message_owned().unwrap(),
        Some(Message::CommandComplete {
            tag: bytes::Bytes::from_static(b"SELECT 1")
        })
    );
}
