//! Group A: the framing parser, pure.

use pg_transport::protocol::limits::DEFAULT_MAX_MESSAGE_LEN;
use pg_transport::protocol::{
    Authentication, Message, ProtocolError, TransactionStatus, parse_message,
};
use pg_transport::{ErrorKind, RowBuffer, RowSink, Session};

use crate::support::*;

const MAX: usize = DEFAULT_MAX_MESSAGE_LEN;

#[expect(clippy::type_complexity, reason = "mirrors parse_message's signature")]
fn parse(buf: &[u8]) -> Result<Option<(Message<&[u8]>, usize)>, ProtocolError> {
    parse_message(buf, MAX)
}

fn err(buf: &[u8]) -> ProtocolError {
    parse(buf).expect_err("expected a protocol error")
}

#[test]
fn a01_empty_buffer_is_incomplete() {
    assert_eq!(parse(b"").unwrap(), None);
}

#[test]
fn a02_four_header_bytes_are_incomplete() {
    assert_eq!(parse(b"C\0\0\0").unwrap(), None);
}

#[test]
fn a03_partial_body_is_incomplete_and_input_untouched() {
    let input = b"C\0\0\0\x0dab".to_vec();
    let before = input.clone();
    assert_eq!(parse(&input).unwrap(), None);
    assert_eq!(input, before);
}

#[test]
fn a04_lengths_below_four_are_invalid() {
    for len in [0i32, 3, -1, i32::MIN] {
        let mut buf = vec![b'C'];
        buf.extend_from_slice(&len.to_be_bytes());
        let e = err(&buf);
        assert_eq!(e, ProtocolError::InvalidLength { tag: b'C', len });
        assert!(e.to_string().contains("Invalid message length"), "{e}");
    }
}

#[test]
fn a05_huge_length_refused_from_the_header_alone() {
    let mut buf = vec![b'D'];
    buf.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        err(&buf),
        ProtocolError::MessageTooLarge { tag: b'D', .. }
    ));
}

#[test]
fn a06_custom_cap_and_exact_fit() {
    let mut buf = vec![b'd'];
    buf.extend_from_slice(&99i32.to_be_bytes());
    assert_eq!(
        parse_message(&buf, 32).unwrap_err(),
        ProtocolError::MessageTooLarge {
            tag: b'd',
            len: 100,
            max: 32
        }
    );
    // CopyData of total size 32 (header 5 + 27 body bytes) under cap 32: complete.
    let exact = msg(b'd', &[7u8; 27]);
    assert_eq!(exact.len(), 32);
    let (m, n) = parse_message(&exact, 32).unwrap().unwrap();
    assert_eq!(n, 32);
    assert_eq!(m, Message::CopyData(&[7u8; 27][..]));
}

#[test]
fn a08_frontend_only_type_bytes_are_unknown() {
    for tag in *b"XxYQPBF!@?V" {
        let e = err(&msg(tag, b""));
        assert_eq!(e, ProtocolError::UnknownMessageType { byte: tag });
        assert!(
            e.to_string().contains("Unknown backend message type"),
            "{e}"
        );
    }
}

#[test]
fn a09_empty_body_messages_complete() {
    let expected = [
        (b'1', Message::ParseComplete),
        (b'2', Message::BindComplete),
        (b'3', Message::CloseComplete),
        (b'I', Message::EmptyQueryResponse),
        (b'n', Message::NoData),
        (b's', Message::PortalSuspended),
        (b'c', Message::CopyDone),
    ];
    for (tag, want) in expected {
        let bytes = msg(tag, b"");
        let (m, n) = parse(&bytes).unwrap().unwrap();
        assert_eq!((m, n), (want, 5));
    }
}

#[test]
fn a10_sequential_parse_of_three_messages() {
    let buf = concat(&[msg(b'1', b""), msg(b'2', b""), ready(b'I')]);
    let mut pos = 0;
    let mut got = Vec::new();
    while let Some((m, n)) = parse(&buf[pos..]).unwrap() {
        got.push(m);
        pos += n;
    }
    assert_eq!(
        got,
        [
            Message::ParseComplete,
            Message::BindComplete,
            Message::ReadyForQuery(TransactionStatus::Idle)
        ]
    );
    assert_eq!(pos, buf.len());
}

#[test]
fn a11_authentication_framing() {
    assert_eq!(
        err(&msg(b'R', &[0, 0, 0])),
        ProtocolError::MissingData("Authentication.code")
    );
    assert!(matches!(
        err(&auth(5, &[1, 2])),
        ProtocolError::MissingData(_)
    ));
    assert_eq!(
        err(&auth(99, &[])),
        ProtocolError::InvalidValue {
            field: "Authentication.code",
            value: 99
        }
    );
    let bytes = auth(5, &[1, 2, 3, 4]);
    let (m, _) = parse(&bytes).unwrap().unwrap();
    assert_eq!(
        m,
        Message::Authentication(Authentication::Md5Password { salt: [1, 2, 3, 4] })
    );
}

#[test]
fn a11_gss_and_sspi_are_unsupported_not_protocol_errors() {
    for (code, name) in [(7, "GSSAPI"), (8, "GSSAPI"), (9, "SSPI")] {
        let mut s = Session::new(Default::default());
        s.startup(&[("user", "u")]).unwrap();
        s.feed(&auth(code, &[])).unwrap();
        let e = s.next_message().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
        assert!(
            e.to_string().contains("unsupported authentication method"),
            "{e}"
        );
        assert!(e.to_string().contains(name), "{e}");
        assert!(s.is_closed());
    }
}

fn sasl(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(&cstr(format!("M{i}").as_bytes()));
    }
    body.push(0);
    auth(10, &body)
}

#[test]
fn a12_sasl_mechanism_cap() {
    assert!(matches!(
        err(&sasl(65)),
        ProtocolError::TooMany {
            what: "SASL mechanisms",
            ..
        }
    ));
    let bytes = sasl(64);
    let (m, _) = parse(&bytes).unwrap().unwrap();
    let Message::Authentication(Authentication::Sasl(mechs)) = m else {
        panic!("{m:?}")
    };
    assert_eq!(mechs.iter().count(), 64);
    assert_eq!(mechs.iter().next(), Some(&b"M0"[..]));
}

#[test]
fn a13_error_field_cap() {
    let many = |n: usize| msg(b'E', &fields(&vec![(b'M', "x"); n]));
    assert!(matches!(
        err(&many(129)),
        ProtocolError::TooMany {
            what: "error fields",
            ..
        }
    ));
    assert!(parse(&many(128)).unwrap().is_some());
    let n = msg(b'N', &fields(&vec![(b'M', "x"); 129]));
    assert!(matches!(err(&n), ProtocolError::TooMany { .. }));
}

#[test]
fn a14_error_and_notice_with_empty_body() {
    assert_eq!(
        err(&msg(b'E', b"")),
        ProtocolError::EmptyBody("ErrorResponse")
    );
    assert_eq!(
        err(&msg(b'N', b"")),
        ProtocolError::EmptyBody("NoticeResponse")
    );
}

#[test]
fn a15_missing_nul_terminators() {
    assert_eq!(
        err(&msg(b'E', b"Mboom")),
        ProtocolError::MissingNul("ErrorResponse.field_value")
    );
    assert_eq!(
        err(&msg(b'N', b"Sx\0Mboom")),
        ProtocolError::MissingNul("ErrorResponse.field_value")
    );
    assert_eq!(
        err(&msg(b'C', b"SELECT 1")),
        ProtocolError::MissingNul("CommandComplete.tag")
    );
}

#[test]
fn a16_data_row_framing() {
    assert!(matches!(
        err(&msg(b'D', &[0])),
        ProtocolError::MissingData(_)
    ));
    assert_eq!(
        err(&msg(b'D', &(-1i16).to_be_bytes())),
        ProtocolError::InvalidValue {
            field: "DataRow.column_count",
            value: -1
        }
    );
    let mut neg = 1i16.to_be_bytes().to_vec();
    neg.extend_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(
        err(&msg(b'D', &neg)),
        ProtocolError::InvalidValue {
            field: "DataRow.column_len",
            value: -2
        }
    );
    let mut short = 1i16.to_be_bytes().to_vec();
    short.extend_from_slice(&100i32.to_be_bytes());
    assert_eq!(
        err(&msg(b'D', &short)),
        ProtocolError::MissingData("DataRow.column_data")
    );
    let mut one_header = 2i16.to_be_bytes().to_vec();
    one_header.extend_from_slice(&1i32.to_be_bytes());
    one_header.push(b'x');
    assert_eq!(
        err(&msg(b'D', &one_header)),
        ProtocolError::MissingData("DataRow.column_len")
    );
}

#[test]
fn a16_data_row_columns_iterate() {
    let bytes = data_row(&[Some(b"42"), None, Some(b"")]);
    let (m, _) = parse(&bytes).unwrap().unwrap();
    let Message::DataRow(row) = m else { panic!() };
    let cols: Vec<_> = row.columns().collect();
    assert_eq!(cols, [Some(&b"42"[..]), None, Some(&b""[..])]);
}

#[test]
fn a17_row_description_framing() {
    assert!(matches!(
        err(&msg(b'T', &[0])),
        ProtocolError::MissingData(_)
    ));
    let mut short = 1i16.to_be_bytes().to_vec();
    short.extend_from_slice(b"id\0");
    short.extend_from_slice(&[0; 17]);
    assert_eq!(
        err(&msg(b'T', &short)),
        ProtocolError::MissingData("RowDescription.field metadata")
    );
    let mut unterminated = 1i16.to_be_bytes().to_vec();
    unterminated.extend_from_slice(b"id");
    assert_eq!(
        err(&msg(b'T', &unterminated)),
        ProtocolError::MissingNul("RowDescription.name")
    );
    let bytes = row_description(&["id", "name"]);
    let (m, _) = parse(&bytes).unwrap().unwrap();
    let Message::RowDescription(rd) = m else {
        panic!()
    };
    let names: Vec<_> = rd.fields().map(|f| f.name).collect();
    assert_eq!(names, [&b"id"[..], b"name"]);
    assert_eq!(rd.fields().nth(1).unwrap().type_oid, 25);
}

#[test]
fn a18_ready_for_query_status() {
    assert_eq!(
        err(&msg(b'Z', b"")),
        ProtocolError::MissingData("ReadyForQuery.status")
    );
    assert_eq!(
        err(&ready(b'X')),
        ProtocolError::InvalidValue {
            field: "ReadyForQuery.status",
            value: i64::from(b'X')
        }
    );
    for (b, status) in [
        (b'I', TransactionStatus::Idle),
        (b'T', TransactionStatus::InTransaction),
        (b'E', TransactionStatus::Failed),
    ] {
        assert_eq!(
            parse(&ready(b)).unwrap().unwrap().0,
            Message::ReadyForQuery(status)
        );
    }
}

#[test]
fn a19_parameter_description_and_copy_responses() {
    let mut pd = 2i16.to_be_bytes().to_vec();
    pd.extend_from_slice(&23u32.to_be_bytes());
    assert_eq!(
        err(&msg(b't', &pd)),
        ProtocolError::MissingData("ParameterDescription.type_oid")
    );
    for tag in *b"GHW" {
        assert!(matches!(
            err(&msg(tag, &[0, 0])),
            ProtocolError::MissingData(_)
        ));
        assert!(matches!(
            err(&msg(tag, &[0, 0, 2, 0, 0])),
            ProtocolError::MissingData(_)
        ));
        let bytes = copy_response(tag, 0, &[0, 0]);
        let (m, _) = parse(&bytes).unwrap().unwrap();
        let resp = match m {
            Message::CopyInResponse(r)
            | Message::CopyOutResponse(r)
            | Message::CopyBothResponse(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(resp.column_count(), 2);
        assert!(!resp.is_binary());
    }
}

#[test]
fn a20_notification_response() {
    assert!(matches!(
        err(&msg(b'A', b"")),
        ProtocolError::MissingData(_)
    ));
    let mut no_nul = 7i32.to_be_bytes().to_vec();
    no_nul.extend_from_slice(b"chan");
    assert_eq!(
        err(&msg(b'A', &no_nul)),
        ProtocolError::MissingNul("NotificationResponse.channel")
    );
    let bytes = notification(7, "chan", "");
    let (m, _) = parse(&bytes).unwrap().unwrap();
    assert_eq!(
        m,
        Message::NotificationResponse {
            process_id: 7,
            channel: &b"chan"[..],
            payload: &b""[..]
        }
    );
}

#[test]
fn a21_negotiate_protocol_version() {
    assert!(matches!(
        err(&msg(b'v', &[0; 7])),
        ProtocolError::MissingData(_)
    ));
    let head = |n: i32| {
        let mut b = 0i32.to_be_bytes().to_vec();
        b.extend_from_slice(&n.to_be_bytes());
        b
    };
    assert!(matches!(
        err(&msg(b'v', &head(-1))),
        ProtocolError::InvalidValue { value: -1, .. }
    ));
    assert_eq!(
        err(&msg(b'v', &head(3))),
        ProtocolError::MissingData("NegotiateProtocolVersion.option"),
        "count larger than the body allows"
    );
    assert!(matches!(
        err(&msg(b'v', &head(1025))),
        ProtocolError::TooMany { count: 1025, .. }
    ));
    let names: Vec<String> = (0..1024).map(|i| format!("_pq_.o{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let bytes = negotiate(0, &refs);
    let (m, _) = parse(&bytes).unwrap().unwrap();
    let Message::NegotiateProtocolVersion(n) = m else {
        panic!()
    };
    assert_eq!(n.option_count(), 1024);
    assert_eq!(n.options().last(), Some(&b"_pq_.o1023"[..]));
    let mut truncated = head(1);
    truncated.extend_from_slice(b"_pq_.a");
    assert_eq!(
        err(&msg(b'v', &truncated)),
        ProtocolError::MissingNul("NegotiateProtocolVersion.option")
    );
}

#[test]
fn a22_row_sink_column_count_mismatch_leaves_sink_unchanged() {
    let mut sink = RowBuffer::default();
    let first = data_row(&[Some(b"1"), Some(b"a")]);
    let Some((Message::DataRow(row), _)) = parse(&first).unwrap() else {
        panic!()
    };
    sink.row(row).unwrap();
    let other = data_row(&[Some(b"2")]);
    let Some((Message::DataRow(row), _)) = parse(&other).unwrap() else {
        panic!()
    };
    assert_eq!(
        sink.row(row),
        Err(ProtocolError::ColumnCountMismatch {
            expected: 2,
            got: 1
        })
    );
    assert_eq!((sink.len(), sink.data_len()), (1, 2));
    assert_eq!(sink.get(0, 1), Some(Some(&b"a"[..])));
}

#[test]
fn a23_row_sink_full_is_an_error_not_a_panic() {
    // The default limit is i32::MAX bytes; a small limit exercises the same check
    // without allocating 2 GiB.
    let mut sink = RowBuffer::with_limit(10);
    let row = data_row(&[Some(b"12345678")]);
    let Some((Message::DataRow(r), _)) = parse(&row).unwrap() else {
        panic!()
    };
    sink.row(r).unwrap();
    let e = sink.row(r).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::RowSinkFull {
            len: 8,
            row_len: 8,
            max: 10
        }
    );
    assert_eq!(sink.len(), 1);
}

/// A small deterministic generator (xorshift) so the fuzz is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TAGS: &[u8] = b"RK23CdcGHWDIEvnNAtSsZT1XQ";

#[test]
fn a24_seeded_fuzz_only_incomplete_complete_or_error() {
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut sink = RowBuffer::with_limit(1 << 16);
        for _ in 0..4000 {
            let len = rng.below(64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            match rng.below(3) {
                // Type-forced: a real tag and a plausible length.
                0 if !buf.is_empty() => {
                    buf[0] = TAGS[rng.below(TAGS.len() as u64) as usize];
                    if buf.len() >= 5 {
                        let l = (rng.below(buf.len() as u64 + 2) as i32).to_be_bytes();
                        buf[1..5].copy_from_slice(&l);
                    }
                }
                // DataRow into a row sink.
                1 if buf.len() >= 5 => {
                    buf[0] = b'D';
                    let l = ((buf.len() - 1) as i32).to_be_bytes();
                    buf[1..5].copy_from_slice(&l);
                }
                _ => {}
            }
            match parse_message(&buf, 1 << 20) {
                Ok(None) => {}
                Ok(Some((m, n))) => {
                    assert!(n <= buf.len());
                    if let Message::DataRow(row) = m {
                        let _ = sink.row(row);
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}
