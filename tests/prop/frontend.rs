//! (c) Every frontend encoder round-trips through a decoder written here from
//! the protocol documentation, and bad input leaves the buffer untouched.

use bytes::BytesMut;
use proptest::prelude::*;

use pg_transport::protocol::EncodeError;
use pg_transport::protocol::frontend::{self, Target};

/// A frontend message as decoded by this test's own reader.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Startup {
        version: i32,
        params: Vec<(Vec<u8>, Vec<u8>)>,
    },
    SslRequest,
    Cancel {
        pid: i32,
        key: Vec<u8>,
    },
    Tagged {
        tag: u8,
        body: Vec<u8>,
    },
}

/// Splits `buf` into messages; untagged ones are recognised by being first.
fn decode(buf: &[u8], first_untagged: bool) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut pos = 0;
    if first_untagged {
        let len = i32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
        let code = i32::from_be_bytes(buf[4..8].try_into().unwrap());
        let body = &buf[8..len];
        out.push(match code {
            80877103 => {
                assert_eq!(len, 8);
                Decoded::SslRequest
            }
            80877102 => Decoded::Cancel {
                pid: i32::from_be_bytes(body[0..4].try_into().unwrap()),
                key: body[4..].to_vec(),
            },
            version => {
                let mut params = Vec::new();
                let mut parts = body.split(|&b| b == 0);
                loop {
                    let name = parts.next().unwrap();
                    if name.is_empty() {
                        break;
                    }
                    params.push((name.to_vec(), parts.next().unwrap().to_vec()));
                }
                assert_eq!(body.last(), Some(&0));
                Decoded::Startup { version, params }
            }
        });
        pos = len;
    }
    while pos < buf.len() {
        let tag = buf[pos];
        let len = i32::from_be_bytes(buf[pos + 1..pos + 5].try_into().unwrap()) as usize;
        out.push(Decoded::Tagged {
            tag,
            body: buf[pos + 5..pos + 1 + len].to_vec(),
        });
        pos += 1 + len;
    }
    assert_eq!(pos, buf.len(), "lengths account for every byte");
    out
}

fn cstr(s: &[u8]) -> Vec<u8> {
    [s, &[0]].concat()
}

fn no_nul(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..max)
        .prop_map(|c| c.into_iter().collect())
}

fn tagged(tag: u8, body: Vec<u8>) -> Vec<Decoded> {
    vec![Decoded::Tagged { tag, body }]
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn startup_round_trips(params in proptest::collection::vec((no_nul(12).prop_filter("named", |n| !n.is_empty()), no_nul(12)), 0..6)) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mut buf = BytesMut::new();
        frontend::startup(&mut buf, &refs).unwrap();
        let want = params.iter().map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec())).collect();
        prop_assert_eq!(decode(&buf, true), vec![Decoded::Startup { version: 196608, params: want }]);
    }

    #[test]
    fn cancel_round_trips(pid in any::<i32>(), key in proptest::collection::vec(any::<u8>(), 4..=256)) {
        let mut buf = BytesMut::new();
        frontend::cancel_request(&mut buf, pid, &key).unwrap();
        prop_assert_eq!(decode(&buf, true), vec![Decoded::Cancel { pid, key }]);
    }

    #[test]
    fn simple_messages_round_trip(sql in no_nul(200), pw in no_nul(40), data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = BytesMut::new();
        frontend::query(&mut buf, &sql).unwrap();
        frontend::password(&mut buf, pw.as_bytes()).unwrap();
        frontend::sasl_initial_response(&mut buf, "SCRAM-SHA-256", &data).unwrap();
        frontend::sasl_response(&mut buf, &data).unwrap();
        frontend::copy_data(&mut buf, &data).unwrap();
        frontend::copy_done(&mut buf);
        frontend::sync(&mut buf);
        frontend::flush(&mut buf);
        frontend::terminate(&mut buf);
        let mut initial = cstr(b"SCRAM-SHA-256");
        initial.extend_from_slice(&(data.len() as i32).to_be_bytes());
        initial.extend_from_slice(&data);
        let want: Vec<Decoded> = [
            tagged(b'Q', cstr(sql.as_bytes())),
            tagged(b'p', cstr(pw.as_bytes())),
            tagged(b'p', initial),
            tagged(b'p', data.clone()),
            tagged(b'd', data.clone()),
            tagged(b'c', vec![]),
            tagged(b'S', vec![]),
            tagged(b'H', vec![]),
            tagged(b'X', vec![]),
        ].into_iter().flatten().collect();
        prop_assert_eq!(decode(&buf, false), want);
    }

    #[test]
    fn extended_protocol_round_trips(
        name in no_nul(10),
        sql in no_nul(60),
        types in proptest::collection::vec(any::<u32>(), 0..5),
        params in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), 0..5),
        formats in proptest::collection::vec(0i16..2, 0..3),
        max_rows in 0u32..=i32::MAX as u32,
    ) {
        let mut buf = BytesMut::new();
        frontend::parse(&mut buf, &name, &sql, &types).unwrap();
        let refs: Vec<Option<&[u8]>> = params.iter().map(|p| p.as_deref()).collect();
        frontend::bind(&mut buf, "p1", &name, &formats, &refs, &formats).unwrap();
        frontend::describe(&mut buf, Target::Portal, "p1").unwrap();
        frontend::execute(&mut buf, "p1", max_rows).unwrap();
        frontend::close(&mut buf, Target::Statement, &name).unwrap();

        let mut parse = cstr(name.as_bytes());
        parse.extend_from_slice(&cstr(sql.as_bytes()));
        parse.extend_from_slice(&(types.len() as i16).to_be_bytes());
        types.iter().for_each(|t| parse.extend_from_slice(&t.to_be_bytes()));
        let mut bind = cstr(b"p1");
        bind.extend_from_slice(&cstr(name.as_bytes()));
        let put_formats = |v: &mut Vec<u8>| {
            v.extend_from_slice(&(formats.len() as i16).to_be_bytes());
            formats.iter().for_each(|f| v.extend_from_slice(&f.to_be_bytes()));
        };
        put_formats(&mut bind);
        bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in &params {
            match p {
                None => bind.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    bind.extend_from_slice(v);
                }
            }
        }
        put_formats(&mut bind);
        let mut execute = cstr(b"p1");
        execute.extend_from_slice(&(max_rows as i32).to_be_bytes());
        let want: Vec<Decoded> = [
            tagged(b'P', parse),
            tagged(b'B', bind),
            tagged(b'D', [&b"P"[..], &cstr(b"p1")].concat()),
            tagged(b'E', execute),
            tagged(b'C', [&b"S"[..], &cstr(name.as_bytes())].concat()),
        ].into_iter().flatten().collect();
        prop_assert_eq!(decode(&buf, false), want);
    }

    /// A NUL anywhere in a string argument: an error, and the buffer exactly as before.
    #[test]
    fn nul_is_refused_atomically(prefix in no_nul(20), suffix in no_nul(20), existing in proptest::collection::vec(any::<u8>(), 0..30)) {
        let bad = format!("{prefix}\0{suffix}");
        let mut buf = BytesMut::from(&existing[..]);
        let results = [
            frontend::query(&mut buf, &bad),
            frontend::parse(&mut buf, "s", &bad, &[]),
            frontend::parse(&mut buf, &bad, "SELECT 1", &[]),
            frontend::bind(&mut buf, &bad, "", &[], &[], &[]),
            frontend::describe(&mut buf, Target::Statement, &bad),
            frontend::execute(&mut buf, &bad, 0),
            frontend::close(&mut buf, Target::Portal, &bad),
            frontend::password(&mut buf, bad.as_bytes()),
            frontend::startup(&mut buf, &[("user", &bad)]),
            frontend::sasl_initial_response(&mut buf, &bad, b""),
        ];
        for r in results {
            let is_nul = matches!(r, Err(EncodeError::NulInString { offset, .. }) if offset == prefix.len());
            prop_assert!(is_nul, "{:?}", r);
        }
        prop_assert_eq!(&buf[..], &existing[..]);
    }

    #[test]
    fn copy_fail_sanitises_nul(reason in proptest::collection::vec(any::<char>(), 0..40)) {
        let reason: String = reason.into_iter().collect();
        let mut buf = BytesMut::new();
        frontend::copy_fail(&mut buf, &reason);
        let want = cstr(reason.replace('\0', "?").as_bytes());
        prop_assert_eq!(decode(&buf, false), tagged(b'f', want));
    }
}

#[test]
fn ssl_request_is_exactly_eight_bytes() {
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    assert_eq!(&buf[..], &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert_eq!(decode(&buf, true), vec![Decoded::SslRequest]);
}

#[test]
fn counts_over_the_protocol_limit_are_refused() {
    let mut buf = BytesMut::new();
    let types = vec![0u32; 65536];
    assert_eq!(
        frontend::parse(&mut buf, "", "SELECT 1", &types),
        Err(EncodeError::TooMany {
            what: "Parse parameter types",
            count: 65536,
            max: 65535
        })
    );
    assert!(buf.is_empty());
    assert_eq!(
        frontend::startup(&mut buf, &[("", "x")]),
        Err(EncodeError::EmptyParameterName)
    );
    assert!(buf.is_empty());
    let key = [0u8; 257];
    assert!(matches!(
        frontend::cancel_request(&mut buf, 1, &key),
        Err(EncodeError::TooLong { .. })
    ));
    assert!(buf.is_empty());
}

/// A reason over the cap is cut to it, at a character boundary (a two-byte
/// character straddles the cap here), and still ends in one NUL.
#[test]
fn copy_fail_truncates_a_long_reason_at_a_character_boundary() {
    use pg_transport::protocol::limits::MAX_COPY_FAIL_REASON_LEN;
    let reason = format!(
        "{}é{}",
        "x".repeat(MAX_COPY_FAIL_REASON_LEN - 1),
        "y".repeat(1000)
    );
    let mut buf = BytesMut::new();
    frontend::copy_fail(&mut buf, &reason);
    let mut want = "x".repeat(MAX_COPY_FAIL_REASON_LEN - 1).into_bytes();
    want.push(0);
    assert_eq!(decode(&buf, false), tagged(b'f', want));
}
