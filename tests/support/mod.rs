//! Shared test helpers: an independent backend-message encoder (written from the
//! protocol docs, not from `src/protocol`), and tracing capture.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    unreachable_pub,
    reason = "test helpers shared by path between binaries"
)]

use std::sync::{Arc, Mutex};

/// One backend message: type byte, length (counting itself), body.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

pub fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    msg(b'R', &body)
}

pub fn auth_ok() -> Vec<u8> {
    auth(0, &[])
}

pub fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

pub fn command_complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstr(tag.as_bytes()))
}

pub fn data_row(columns: &[Option<&[u8]>]) -> Vec<u8> {
    let mut body = (columns.len() as i16).to_be_bytes().to_vec();
    for c in columns {
        match c {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
        }
    }
    msg(b'D', &body)
}

pub fn row_description(names: &[&str]) -> Vec<u8> {
    let mut body = (names.len() as i16).to_be_bytes().to_vec();
    for (i, n) in names.iter().enumerate() {
        body.extend_from_slice(&cstr(n.as_bytes()));
        body.extend_from_slice(&0u32.to_be_bytes()); // table oid
        body.extend_from_slice(&(i as i16 + 1).to_be_bytes()); // column id
        body.extend_from_slice(&25u32.to_be_bytes()); // text
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
    }
    msg(b'T', &body)
}

pub fn notification(pid: i32, channel: &str, payload: &str) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&cstr(channel.as_bytes()));
    body.extend_from_slice(&cstr(payload.as_bytes()));
    msg(b'A', &body)
}

pub fn fields(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(*code);
        body.extend_from_slice(&cstr(value.as_bytes()));
    }
    body.push(0);
    body
}

pub fn notice(f: &[(u8, &str)]) -> Vec<u8> {
    msg(b'N', &fields(f))
}

pub fn error(f: &[(u8, &str)]) -> Vec<u8> {
    msg(b'E', &fields(f))
}

pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut body = cstr(name.as_bytes());
    body.extend_from_slice(&cstr(value.as_bytes()));
    msg(b'S', &body)
}

pub fn negotiate(minor: i32, options: &[&str]) -> Vec<u8> {
    let mut body = minor.to_be_bytes().to_vec();
    body.extend_from_slice(&(options.len() as i32).to_be_bytes());
    for o in options {
        body.extend_from_slice(&cstr(o.as_bytes()));
    }
    msg(b'v', &body)
}

pub fn backend_key(pid: i32, key: &[u8]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(key);
    msg(b'K', &body)
}

pub fn copy_response(tag: u8, format: u8, columns: &[i16]) -> Vec<u8> {
    let mut body = vec![format];
    body.extend_from_slice(&(columns.len() as i16).to_be_bytes());
    for c in columns {
        body.extend_from_slice(&c.to_be_bytes());
    }
    msg(tag, &body)
}

pub fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A session that has sent a query and waits for its results (state Busy).
pub fn busy_session() -> pg_transport::Session {
    let mut s = ready_session(pg_transport::SessionConfig::default());
    s.query("SELECT 1").unwrap();
    s.send_buf().clear();
    s
}

/// A session that went through startup and is Ready.
pub fn ready_session(config: pg_transport::SessionConfig) -> pg_transport::Session {
    let mut s = pg_transport::Session::new(config);
    s.startup(&[("user", "test")]).unwrap();
    s.send_buf().clear();
    s.feed(&concat(&[auth_ok(), ready(b'I')])).unwrap();
    while s.next_message().unwrap().is_some() {}
    assert_eq!(s.state(), pg_transport::State::Ready);
    s
}

/// Captures `tracing` events as "LEVEL target: message fields" lines.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// Runs `f` with a subscriber that records every event; returns the log text.
pub fn capture_tracing(f: impl FnOnce()) -> String {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // As `with_spans` in tests/real/spans.rs: a second dispatcher kept alive
    // and a rebuild, so a sibling test on another thread cannot have cached
    // "never" for a callsite this capture must see.
    static PINNED: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    PINNED.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}
