//! The public `Error`: `Display` is one level, `source()` the cause, `report()` (and
//! `{:#}`) the chain, `code()` the server's SQLSTATE.

use std::error::Error as _;

use pg_transport::{DbError, Error, ErrorKind, Session, SessionConfig, SqlState};

fn db_error(code: &[u8], message: &[u8]) -> DbError {
    DbError::from_fields([(b'S', &b"ERROR"[..]), (b'C', code), (b'M', message)])
}

#[test]
fn an_io_error_displays_its_context_and_sources_the_cause() {
    let e = Error::io(
        "reading from the server",
        std::io::Error::other("reset by peer"),
    );
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(e.to_string(), "reading from the server");
    assert_eq!(
        e.source().map(ToString::to_string).as_deref(),
        Some("reset by peer")
    );
    assert_eq!(
        e.report().to_string(),
        "reading from the server: reset by peer"
    );
    assert_eq!(format!("{e:#}"), "reading from the server: reset by peer");
    assert_eq!(e.code(), None, "not the server's error");
}

/// The server's error is its own level: no source repeating it, and the chain is the
/// server's text alone.
#[test]
fn a_server_error_has_its_code_and_is_not_its_own_source() {
    let e = Error::server(db_error(b"23505", b"duplicate key value"));
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(e.code(), Some(SqlState::UNIQUE_VIOLATION));
    assert_eq!(e.code().and_then(|c| c.name()), Some("unique_violation"));
    assert_eq!(e.to_string(), "ERROR:  duplicate key value");
    assert!(e.source().is_none(), "{:?}", e.source());
    assert_eq!(e.report().to_string(), "ERROR:  duplicate key value");

    let auth = Error::server(db_error(b"28P01", b"password authentication failed"));
    assert_eq!(auth.kind(), ErrorKind::Auth);
    assert_eq!(auth.code(), Some(SqlState::INVALID_PASSWORD));

    let no_code = Error::server(DbError::from_fields([(b'M', &b"no C field"[..])]));
    assert_eq!(no_code.code(), None, "a missing code is not 00000");
    assert_eq!(Error::config("bad port").code(), None);
}

/// The parser's finding is the source of a protocol error, and the chain names it.
#[test]
fn a_protocol_error_sources_what_the_parser_found() {
    let mut s = Session::new(SessionConfig::default());
    // A message type no server sends, with a valid length.
    s.feed(&[b'!', 0, 0, 0, 4]).unwrap();
    let e = s.next_message().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_eq!(e.to_string(), "protocol error, connection closed");
    let cause = e
        .as_protocol_error()
        .expect("the parser's error")
        .to_string();
    assert_eq!(e.source().map(ToString::to_string), Some(cause.clone()));
    assert_eq!(e.report().to_string(), format!("{e}: {cause}"));
}
