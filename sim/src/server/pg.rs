//! A simulated PostgreSQL server on a turmoil host. It decodes frontend
//! messages and encodes replies with its own code, and does what the scenario
//! scripts, including what a real server cannot be made to do on cue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{Auth, authenticate};
use super::encode::{Sent, authentication_ok, ready_for_query};
use super::extended::Extended;

/// How the server answers an SSLRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ssl {
    /// `N`.
    Refuse,
    /// `S` followed by plaintext bytes, in the same segment or a later one.
    Inject {
        /// The plaintext follows the `S` in the same segment.
        same_segment: bool,
    },
    /// `S`, then TLS (rustls over the simulated stream).
    Accept,
    /// An ErrorResponse, as a server too old to know SSLRequest sends, then close.
    Error,
}

/// How the server answers the first Query.
#[derive(Debug, Clone)]
pub enum Reply {
    /// These messages, then CommandComplete and ReadyForQuery.
    Rows(Vec<Sent>),
    /// CopyInResponse; abort with 23505 once `abort_at` bytes of COPY data
    /// arrived, followed (`stray`) by the ErrorResponse 08P01 + ReadyForQuery
    /// some servers send for CopyData that crossed the abort, in the same segment.
    CopyIn {
        /// COPY data bytes after which the server aborts; `None`: never.
        abort_at: Option<usize>,
        /// The 08P01 + ReadyForQuery follow the abort.
        stray: bool,
    },
    /// CopyOutResponse, these messages, CopyDone, CommandComplete.
    CopyOut(Vec<Sent>),
    /// An ErrorResponse (severity ERROR) with `code`, then ReadyForQuery.
    Error {
        /// The SQLSTATE.
        code: String,
        /// The primary message.
        message: String,
    },
    /// EmptyQueryResponse, then ReadyForQuery: the answer to an empty query.
    EmptyQuery,
    /// Right after startup, close the connection (optionally after a FATAL
    /// ErrorResponse, as PostgreSQL does), without waiting for a query.
    CloseIdle {
        /// A FATAL ErrorResponse (57P01) comes before the close.
        fatal: bool,
    },
    /// No Query: a pipeline of extended-protocol requests, answered in
    /// order, with an error planted at message `fail_at` (counted over
    /// Parse/Bind/Describe/Execute/Close) or, with `at_sync`, at the Sync.
    Pipeline {
        /// The message that fails; `None`: none does.
        fail_at: Option<usize>,
        /// The Sync fails (the implicit COMMIT).
        at_sync: bool,
    },
    /// An empty result whose ReadyForQuery is followed, in the same segment, by
    /// notifications (`trailing`), then more while the connection is idle,
    /// each after its delay in milliseconds (`later`).
    Listen {
        /// Payloads sent right behind the ReadyForQuery.
        trailing: Vec<String>,
        /// Payloads sent later, each after its delay in milliseconds.
        later: Vec<(u64, String)>,
    },
}

/// What the scenario wants the server to do.
#[derive(Debug, Clone)]
pub struct Script {
    /// The answer to SSLRequest.
    pub ssl: Ssl,
    /// The authentication it asks for.
    pub auth: Auth,
    /// The answer to the first Query.
    pub reply: Reply,
    /// The newest protocol version the server speaks, as a StartupMessage
    /// carries it: 3.0 (`0x0003_0000`, PostgreSQL 14–17) answers a request for
    /// 3.2 with NegotiateProtocolVersion; 3.2 (PostgreSQL 18) accepts it and
    /// gives a 32-byte cancel key.
    pub newest_protocol: i32,
}

/// Protocol 3.0, what the simulated server speaks unless told otherwise.
pub const PROTOCOL_3_0: i32 = 0x0003_0000;

impl Script {
    /// No SSL, trust authentication, then `reply`.
    pub fn plain(reply: Reply) -> Self {
        Self {
            ssl: Ssl::Refuse,
            auth: Auth::Trust,
            reply,
            newest_protocol: PROTOCOL_3_0,
        }
    }

    /// Authenticates with `auth`.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Accepts SSL (TLS over the simulated stream) when `tls` is set.
    pub fn tls_if(mut self, tls: bool) -> Self {
        if tls {
            self.ssl = Ssl::Accept;
        }
        self
    }
}

/// What the server saw, for the scenario's checks.
#[derive(Debug, Default)]
pub struct Log {
    /// Frontend message tags in order (`0` for untagged startup-phase messages).
    pub tags: Vec<u8>,
    /// COPY data bytes received before an abort.
    pub copy_bytes: usize,
    /// COPY data bytes received after an abort.
    pub copy_bytes_after_abort: usize,
    /// CopyDone or CopyFail after the server aborted.
    pub end_after_abort: bool,
    /// Bytes the client sent after an injected `S`.
    pub bytes_after_injection: usize,
    /// Rows the server committed from a COPY IN.
    pub rows_committed: u64,
    /// The server aborted a COPY IN.
    pub aborted: bool,
    /// PasswordMessage/SASL messages received.
    pub password_messages: u32,
    /// The SASL mechanism the client chose.
    pub mechanism: Option<String>,
    /// The session ran over TLS.
    pub tls: bool,
}

/// Serves one connection per `script`, recording into `log`: a turmoil stream in
/// the simulation, a loopback TCP stream in the differential test.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    script: Script,
    log: Arc<Mutex<Log>>,
) -> std::io::Result<()> {
    let Some(mut first) = read_untagged(&mut s).await? else {
        return Ok(());
    };
    log.lock().unwrap().tags.push(0);
    if first.get(..4) == Some(&80877103i32.to_be_bytes()[..]) {
        match script.ssl {
            Ssl::Refuse => s.write_all(b"N").await?,
            Ssl::Error => {
                let fatal = error(
                    "0A000",
                    "unsupported frontend protocol 1234.5679: server supports 1.0 to 2.0",
                );
                s.write_all(&fatal).await?;
                return Ok(());
            }
            Ssl::Accept => {
                s.write_all(b"S").await?;
                let mut tls = super::tls::acceptor().accept(s).await?;
                log.lock().unwrap().tls = true;
                let Some(first) = read_untagged(&mut tls).await? else {
                    return Ok(());
                };
                log.lock().unwrap().tags.push(0);
                return session(tls, first, script, log).await;
            }
            Ssl::Inject { same_segment } => {
                if same_segment {
                    s.write_all(b"SXYZ").await?;
                } else {
                    s.write_all(b"S").await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    s.write_all(b"XYZ").await?;
                }
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
                log.lock().unwrap().bytes_after_injection = rest.len();
                return Ok(());
            }
        }
        let Some(startup) = read_untagged(&mut s).await? else {
            return Ok(());
        };
        first = startup;
        log.lock().unwrap().tags.push(0);
    }
    session(s, first, script, log).await
}

/// The session after SSL negotiation: `startup` is the StartupMessage body.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    startup: Vec<u8>,
    script: Script,
    log: Arc<Mutex<Log>>,
) -> std::io::Result<()> {
    let Some(asked) = startup
        .get(..4)
        .map(|v| i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
        .filter(|v| v >> 16 == 3)
    else {
        return Ok(());
    };
    // Newer than we speak: say which we do, as PostgreSQL does before anything else.
    let version = asked.min(script.newest_protocol);
    if asked > script.newest_protocol {
        send(&mut s, &negotiate_protocol_version(version)).await?;
    }
    let tls = log.lock().unwrap().tls;
    if !authenticate(&mut s, script.auth, tls, &log).await? {
        return Ok(());
    }
    send(&mut s, &hello(version)).await?;
    if let Reply::CloseIdle { fatal } = script.reply {
        return close_idle(&mut s, fatal).await;
    }
    let mut extended = match script.reply {
        Reply::Pipeline { fail_at, at_sync } => Some(Extended::new(fail_at, at_sync)),
        _ => None,
    };
    let mut reply = Some(script.reply);
    let mut copy: Option<CopyIn> = None;
    // Extended-protocol replies, sent as PostgreSQL does: at Sync or when
    // its output buffer fills.
    let mut pending = Vec::new();
    loop {
        let Some((tag, body)) = read_message(&mut s).await? else {
            return Ok(());
        };
        log.lock().unwrap().tags.push(tag);
        if let Some(ext) = extended.as_mut().filter(|_| copy.is_none()) {
            if ext.take(tag, &body, &mut pending) {
                if tag == b'S' || pending.len() >= 8192 {
                    send(&mut s, &std::mem::take(&mut pending)).await?;
                }
                continue;
            }
        }
        match (tag, copy.as_mut()) {
            (b'd', Some(c)) => {
                let abort_now = c.take(&body, &mut log.lock().unwrap());
                if abort_now {
                    send(&mut s, &copy_abort(c.stray)).await?;
                }
            }
            (b'c' | b'f', Some(c)) if c.aborted => {
                log.lock().unwrap().end_after_abort = true;
                copy = None;
            }
            (b'c', Some(c)) => {
                let rows = c.rows;
                log.lock().unwrap().rows_committed = rows;
                copy = None;
                let mut out = Vec::new();
                Sent::CommandComplete(format!("COPY {rows}")).encode(&mut out);
                ready_for_query(&mut out, b'I');
                send(&mut s, &out).await?;
            }
            (b'f', Some(_)) => {
                copy = None;
                let mut out = error("57014", "COPY from stdin failed");
                ready_for_query(&mut out, b'I');
                send(&mut s, &out).await?;
            }
            (b'Q', _) => copy = answer_query(&mut s, reply.take()).await?,
            (b'X', _) => return Ok(()),
            _ => {}
        }
    }
}

/// NegotiateProtocolVersion: the newest minor version we speak, no options
/// unrecognised.
fn negotiate_protocol_version(version: i32) -> Vec<u8> {
    let mut out = vec![b'v'];
    out.extend_from_slice(&12u32.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// What follows a successful authentication: AuthenticationOk, a
/// ParameterStatus, BackendKeyData sized for `version`, ReadyForQuery.
fn hello(version: i32) -> Vec<u8> {
    let mut hello = Vec::new();
    authentication_ok(&mut hello);
    Sent::ParameterStatus("server_version".into(), "17.0 (simulated)".into()).encode(&mut hello);
    // A 4-byte cancel key in 3.0; 3.2 allows up to 256 and PostgreSQL 18 sends 32.
    let key: &[u8] = if version == PROTOCOL_3_0 {
        &[0, 0, 0, 0x2a]
    } else {
        &[0x2a; 32]
    };
    hello.push(b'K');
    hello.extend_from_slice(&(8 + key.len() as u32).to_be_bytes());
    hello.extend_from_slice(&1234i32.to_be_bytes());
    hello.extend_from_slice(key);
    ready_for_query(&mut hello, b'I');
    hello
}

/// Closes an idle connection soon after startup, after a FATAL message if
/// `fatal` (what an administrator's pg_terminate_backend does).
async fn close_idle<S: AsyncWrite + Unpin>(s: &mut S, fatal: bool) -> std::io::Result<()> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if fatal {
        let fatal = error(
            "57P01",
            "terminating connection due to administrator command",
        );
        send(s, &fatal).await?;
    }
    Ok(())
}

/// Answers a Query: with the script's reply the first time (`reply` is then
/// taken), with an empty result after. Returns the COPY IN it started.
async fn answer_query<S: AsyncWrite + Unpin>(
    s: &mut S,
    reply: Option<Reply>,
) -> std::io::Result<Option<CopyIn>> {
    match reply {
        Some(Reply::Rows(sent)) => send(s, &rows_then_ready(&sent)).await?,
        Some(Reply::Error { code, message }) => {
            let mut out = error(&code, &message);
            ready_for_query(&mut out, b'I');
            send(s, &out).await?;
        }
        Some(Reply::EmptyQuery) => {
            let mut out = Vec::new();
            Sent::EmptyQuery.encode(&mut out);
            ready_for_query(&mut out, b'I');
            send(s, &out).await?;
        }
        Some(Reply::CopyIn { abort_at, stray }) => {
            // The scenarios' table `t (id int PRIMARY KEY, v text)`:
            // text format, two text columns.
            send(s, b"G\0\0\0\x0b\0\0\x02\0\0\0\0").await?;
            return Ok(Some(CopyIn {
                abort_at,
                stray,
                aborted: false,
                rows: 0,
            }));
        }
        Some(Reply::CopyOut(sent)) => send(s, &copy_out_then_ready(&sent)).await?,
        Some(Reply::Listen { trailing, later }) => notify(s, trailing, later).await?,
        // Later queries (a check that the connection still works): empty.
        Some(Reply::CloseIdle { .. } | Reply::Pipeline { .. }) | None => {
            let mut out = b"I\0\0\0\x04".to_vec();
            ready_for_query(&mut out, b'I');
            send(s, &out).await?;
        }
    }
    Ok(None)
}

/// `sent`, then CommandComplete with the row count and ReadyForQuery.
fn rows_then_ready(sent: &[Sent]) -> Vec<u8> {
    let mut out = Vec::new();
    sent.iter().for_each(|m| m.encode(&mut out));
    let rows = sent
        .iter()
        .filter(|m| matches!(m, Sent::DataRow(_)))
        .count();
    Sent::CommandComplete(format!("SELECT {rows}")).encode(&mut out);
    ready_for_query(&mut out, b'I');
    out
}

/// COPY OUT of `sent` from CopyOutResponse to ReadyForQuery.
fn copy_out_then_ready(sent: &[Sent]) -> Vec<u8> {
    let mut out = copy_out_response(sent);
    sent.iter().for_each(|m| m.encode(&mut out));
    out.extend_from_slice(b"c\0\0\0\x04");
    // PostgreSQL sends one CopyData per row.
    let rows = sent
        .iter()
        .filter(|m| matches!(m, Sent::CopyData(_)))
        .count();
    Sent::CommandComplete(format!("COPY {rows}")).encode(&mut out);
    ready_for_query(&mut out, b'I');
    out
}

/// The answer to LISTEN, with the `trailing` notifications in the same
/// segment as its ReadyForQuery; then each of `later` after its delay.
async fn notify<S: AsyncWrite + Unpin>(
    s: &mut S,
    trailing: Vec<String>,
    later: Vec<(u64, String)>,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    Sent::CommandComplete("LISTEN".into()).encode(&mut out);
    ready_for_query(&mut out, b'I');
    for payload in trailing {
        notification(payload).encode(&mut out);
    }
    send(s, &out).await?;
    for (delay, payload) in later {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut out = Vec::new();
        notification(payload).encode(&mut out);
        send(s, &out).await?;
    }
    Ok(())
}

/// The server's abort of a COPY IN: 23505 and ReadyForQuery, and (`stray`)
/// the 08P01 + ReadyForQuery some servers add for CopyData that crossed it.
fn copy_abort(stray: bool) -> Vec<u8> {
    let mut out = error(
        "23505",
        "duplicate key value violates unique constraint \"t_pkey\"",
    );
    ready_for_query(&mut out, b'I');
    if stray {
        out.extend_from_slice(&error(
            "08P01",
            "unexpected message type 0x64 during COPY from stdin",
        ));
        ready_for_query(&mut out, b'I');
    }
    out
}

/// CopyOutResponse in text format with as many columns as the first row has
/// fields (tab-separated), as PostgreSQL describes the table it copies.
fn copy_out_response(sent: &[Sent]) -> Vec<u8> {
    let columns = sent
        .iter()
        .find_map(|m| match m {
            Sent::CopyData(row) => Some(row.split(|&b| b == b'\n').next().unwrap_or_default()),
            _ => None,
        })
        .map_or(0, |line| line.iter().filter(|&&b| b == b'\t').count() + 1);
    let columns = u16::try_from(columns).unwrap_or(u16::MAX);
    let mut out = vec![b'H'];
    out.extend_from_slice(&(7 + 2 * u32::from(columns)).to_be_bytes());
    out.push(0);
    out.extend_from_slice(&columns.to_be_bytes());
    out.extend(std::iter::repeat_n([0u8, 0], columns.into()).flatten());
    out
}

fn notification(payload: String) -> Sent {
    Sent::Notification {
        pid: 99,
        channel: "ch".into(),
        payload,
    }
}

/// A COPY IN in progress.
struct CopyIn {
    abort_at: Option<usize>,
    stray: bool,
    aborted: bool,
    rows: u64,
}

impl CopyIn {
    /// Takes in one CopyData body: counted, and its rows too until the
    /// abort. Returns whether it brought the COPY data to `abort_at`, the
    /// moment to abort.
    fn take(&mut self, body: &[u8], log: &mut Log) -> bool {
        if self.aborted {
            log.copy_bytes_after_abort += body.len();
            return false;
        }
        log.copy_bytes += body.len();
        self.rows += body.iter().filter(|&&b| b == b'\n').count() as u64;
        let hit = self.abort_at.is_some_and(|at| log.copy_bytes >= at);
        log.aborted |= hit;
        self.aborted = hit;
        hit
    }
}

pub(crate) fn error(code: &str, message: &str) -> Vec<u8> {
    let fields = format!("SERROR\0VERROR\0C{code}\0M{message}\0\0");
    let mut out = vec![b'E'];
    out.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(fields.as_bytes());
    out
}

/// Writes `bytes` and flushes: TLS holds written bytes until flushed.
pub(crate) async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// A startup-phase message (no tag); `None` if the client closed first.
async fn read_untagged<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    s.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// A tagged message; `None` if the client closed between messages.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match s.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body).await?;
    Ok(Some((head[0], body)))
}
