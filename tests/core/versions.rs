//! Protocol version negotiation in the session, bytes only: what the
//! StartupMessage asks for, how a NegotiateProtocolVersion answer is followed or
//! refused (libpq 18's rules), and the cancel key's length per version.

use pg_transport::session::ProtocolVersion;
use pg_transport::{ErrorKind, Session, SessionConfig, State};

use crate::support::*;

const V3_0: i32 = 0x0003_0000;
const V3_2: i32 = 0x0003_0002;

fn starting(min: ProtocolVersion, max: ProtocolVersion) -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.startup_with_protocol(min, max, &[("user", "u")]).unwrap();
    s
}

/// Feeds `bytes` and reads messages until one fails; the error.
fn fails_with(s: &mut Session, bytes: &[u8]) -> pg_transport::Error {
    s.feed(bytes).unwrap();
    loop {
        match s.next_message() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error: every message was accepted"),
            Err(e) => return e,
        }
    }
}

/// Feeds `bytes` and reads every message; panics on an error.
fn accepts(s: &mut Session, bytes: &[u8]) {
    s.feed(bytes).unwrap();
    while s.next_message().unwrap().is_some() {}
}

#[test]
fn the_startup_message_asks_for_the_max() {
    for (max, code) in [(ProtocolVersion::V3_0, V3_0), (ProtocolVersion::V3_2, V3_2)] {
        let mut s = starting(ProtocolVersion::V3_0, max);
        let sent = s.send_buf().pending().to_vec();
        assert_eq!(sent[4..8], code.to_be_bytes(), "{max}");
        assert_eq!(s.protocol_version(), max);
    }
    let mut s = Session::new(SessionConfig::default());
    s.startup(&[("user", "u")]).unwrap();
    assert_eq!(s.send_buf().pending()[4..8], V3_0.to_be_bytes());
}

#[test]
fn min_above_max_is_refused_before_anything_is_encoded() {
    let mut s = Session::new(SessionConfig::default());
    let e = s
        .startup_with_protocol(
            ProtocolVersion::V3_2,
            ProtocolVersion::V3_0,
            &[("user", "u")],
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string()
            .contains("\"min_protocol_version\" is greater than \"max_protocol_version\""),
        "{e}"
    );
    assert!(s.send_buf().is_empty());
    assert_eq!(s.state(), State::Connecting);
}

#[test]
fn a_downgrade_to_3_0_is_followed_and_the_4_byte_key_accepted() {
    let mut s = starting(ProtocolVersion::V3_0, ProtocolVersion::V3_2);
    accepts(
        &mut s,
        &concat(&[
            negotiate(V3_0, &[]),
            auth_ok(),
            backend_key(7, &[1, 2, 3, 4]),
            ready(b'I'),
        ]),
    );
    assert_eq!(s.protocol_version(), ProtocolVersion::V3_0);
    assert_eq!(s.protocol_negotiation().unwrap().newest_minor, V3_0);
    assert_eq!(s.backend_key().unwrap().secret_key, [1, 2, 3, 4]);
    assert_eq!(s.state(), State::Ready);
}

#[test]
fn no_answer_means_3_2_and_a_long_key_is_kept() {
    let mut s = starting(ProtocolVersion::V3_2, ProtocolVersion::V3_2);
    let key: Vec<u8> = (0..=255).collect();
    accepts(
        &mut s,
        &concat(&[auth_ok(), backend_key(7, &key), ready(b'I')]),
    );
    assert_eq!(s.protocol_version(), ProtocolVersion::V3_2);
    assert_eq!(s.backend_key().unwrap().secret_key, key);
}

#[test]
fn a_downgrade_below_the_min_is_refused_naming_the_setting() {
    let mut s = starting(ProtocolVersion::V3_2, ProtocolVersion::V3_2);
    let e = fails_with(&mut s, &concat(&[negotiate(V3_0, &[]), auth_ok()]));
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert_eq!(
        e.to_string(),
        "server only supports protocol version 3.0, but \"min_protocol_version\" was set to 3.2"
    );
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn answers_no_correct_server_gives_close_the_session() {
    let cases: &[(ProtocolVersion, Vec<u8>, &str)] = &[
        (
            ProtocolVersion::V3_0,
            negotiate(V3_2, &[]),
            "server requested downgrade to a higher-numbered version",
        ),
        (
            ProtocolVersion::V3_2,
            negotiate(0x0003_0001, &[]),
            "server requested downgrade to non-existent 3.1 protocol version",
        ),
        (
            ProtocolVersion::V3_2,
            negotiate(0x0002_0000, &[]),
            "server requested downgrade to pre-3.0 protocol version",
        ),
        (
            ProtocolVersion::V3_2,
            negotiate(V3_2, &[]),
            "server negotiated but asks for no changes",
        ),
        (
            ProtocolVersion::V3_2,
            negotiate(V3_0, &["_pq_.never_asked"]),
            "server reported an unsupported parameter that was not requested (\"_pq_.never_asked\")",
        ),
        (
            ProtocolVersion::V3_2,
            negotiate(V3_0, &["plain"]),
            "server reported unsupported parameter name without a \"_pq_.\" prefix (\"plain\")",
        ),
    ];
    for (max, answer, why) in cases {
        let mut s = starting(ProtocolVersion::V3_0, *max);
        let e = fails_with(&mut s, &concat(&[answer.clone(), auth_ok()]));
        assert_eq!(e.kind(), ErrorKind::Protocol, "{why}: {e}");
        assert!(
            e.to_string().ends_with(&format!(
                "received invalid protocol negotiation message: {why}"
            )),
            "{why}: {e}"
        );
        assert_eq!(s.state(), State::Closed, "{why}");
    }
}

#[test]
fn a_second_negotiation_is_refused() {
    let mut s = starting(ProtocolVersion::V3_0, ProtocolVersion::V3_2);
    let e = fails_with(
        &mut s,
        &concat(&[negotiate(V3_0, &[]), negotiate(V3_0, &[])]),
    );
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(
        e.to_string()
            .ends_with("received duplicate protocol negotiation message"),
        "{e}"
    );
}

#[test]
fn under_3_0_the_cancel_key_must_be_4_bytes() {
    let mut s = starting(ProtocolVersion::V3_0, ProtocolVersion::V3_0);
    let e = fails_with(&mut s, &concat(&[auth_ok(), backend_key(7, &[0; 32])]));
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(
        e.to_string().ends_with(
            "received invalid BackendKeyData message: cancel key with length 32 not allowed in protocol version 3.0 (must be 4 bytes)"
        ),
        "{e}"
    );
    assert_eq!(s.state(), State::Closed);
    assert!(s.backend_key().is_none(), "the refused key is not kept");
}

#[test]
fn after_a_downgrade_to_3_0_a_long_key_is_refused() {
    let mut s = starting(ProtocolVersion::V3_0, ProtocolVersion::V3_2);
    let e = fails_with(
        &mut s,
        &concat(&[negotiate(V3_0, &[]), auth_ok(), backend_key(7, &[0; 32])]),
    );
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
}
