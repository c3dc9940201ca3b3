//! The simulated server, proven faithful: each conversation it plays is also
//! held with a real PostgreSQL (the real-server tier's throwaway cluster, of the
//! version `PGT_SERVER_VERSION` names), the same client steps against both, and
//! the backend messages each sent are compared where a client acts on them: the
//! message types in order, authentication codes and SASL mechanisms, protocol
//! version negotiation and the cancel key's length, error
//! severities and SQLSTATEs, the SSL answer, CommandComplete tags, transaction status, COPY
//! formats and column counts, row widths, notification channels and payloads.
//! A drift fails the test and names the step.
//!
//! Left out by construction: what the simulated server does on purpose that no
//! server does (faults, injected bytes, twisted SCRAM), and what differs without
//! a client acting on it: which ParameterStatus messages arrive (a run of them
//! is one token), message texts, process ids and cancel key values. Cancel is
//! not compared: the simulated server does not play CancelRequest.
//!
//! Both sides are recorded by the same loopback proxy, so the client, its
//! settings and the recording are identical; only the server differs.

// The root crate's real-server harness, included by path: it lives in that
// crate's tests (no library exports it), and a dev-dependency of pg-sim on
// pg-transport's test files is not a thing Cargo has.
#[path = "../../tests/real/cluster.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the real-server tier's helpers; a few are used here"
)]
mod cluster;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pg_transport::{Config, DefaultConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use cluster::*;
use pg_sim::server;
use pg_sim::server::auth::{Auth, PASSWORD, Twist};
use pg_sim::server::encode::Sent;
use pg_sim::server::pg::{PROTOCOL_3_0, Reply, Script};

/// What a conversation's client does once connected.
#[derive(Clone, Copy, Debug)]
enum Steps {
    /// Nothing: the startup is the conversation.
    None,
    Query(&'static str),
    /// COPY IN of `rows` rows `(g, 'row g')`; row 2 a duplicate key if `bad`.
    CopyIn {
        rows: u64,
        bad: bool,
    },
    CopyOut(&'static str),
    /// LISTEN on `ch`, then wait for one notification (sent by the real
    /// server's other session, or scripted on the simulated one).
    Listen,
}

/// One conversation: the real server's user, the simulated server's script,
/// the client's steps.
struct Conversation {
    name: &'static str,
    /// Held with the standby (TLS off) rather than the primary.
    on_standby: bool,
    real_user: (&'static str, Option<&'static str>),
    /// For the simulated server: its user `sim`, with or without the password.
    sim_password: Option<&'static str>,
    sslmode: &'static str,
    /// More `key=value` settings for the client.
    params: &'static str,
    script: Script,
    steps: Steps,
}

const COPY_TABLE: &str = "differential_copy";
const WRONG_PASSWORD: &str = "not the password";

fn conversations() -> Vec<Conversation> {
    let plain = |name, reply, steps| Conversation {
        name,
        on_standby: false,
        real_user: (TRUST_USER, None),
        sim_password: None,
        sslmode: "disable",
        params: "",
        script: Script::plain(reply),
        steps,
    };
    let startup = |name, user, password: Option<&'static str>, auth| Conversation {
        name,
        on_standby: false,
        real_user: (user, password),
        // The simulated user's password where the real one is right, the
        // same wrong one where it is wrong.
        sim_password: password.map(|p| if p == WRONG_PASSWORD { p } else { PASSWORD }),
        sslmode: "disable",
        params: "",
        script: Script::plain(Reply::Rows(Vec::new())).auth(auth),
        steps: Steps::None,
    };
    let row = |id: &str, v: &str| Sent::DataRow(vec![Some(id.into()), Some(v.into())]);
    let copy_row = |line: &str| Sent::CopyData(line.as_bytes().to_vec());
    vec![
        startup("startup, trust", TRUST_USER, None, Auth::Trust),
        startup(
            "startup, cleartext password",
            PASSWORD_USER,
            Some(PASSWORD_PASS),
            Auth::Cleartext,
        ),
        startup("startup, md5", MD5_USER, Some(MD5_PASS), Auth::Md5),
        startup(
            "startup, SCRAM-SHA-256",
            SCRAM_USER,
            Some(SCRAM_PASS),
            Auth::Scram(Twist::None),
        ),
        startup(
            "startup, wrong SCRAM password",
            SCRAM_USER,
            Some(WRONG_PASSWORD),
            Auth::Scram(Twist::None),
        ),
        Conversation {
            name: "startup asking for protocol 3.2",
            params: "max_protocol_version=3.2",
            script: Script {
                // As the real server does: 3.2 from PostgreSQL 18, else its downgrade.
                newest_protocol: if cluster().version >= 180_000 {
                    0x0003_0002
                } else {
                    PROTOCOL_3_0
                },
                ..Script::plain(Reply::Rows(Vec::new()))
            },
            ..plain("", Reply::EmptyQuery, Steps::None)
        },
        Conversation {
            name: "SSL accepted (sslmode=require)",
            sslmode: "require",
            script: Script::plain(Reply::Rows(Vec::new())).tls_if(true),
            ..plain("", Reply::EmptyQuery, Steps::Query("SELECT 1"))
        },
        Conversation {
            name: "SSL refused (sslmode=prefer, a server with TLS off)",
            on_standby: true,
            sslmode: "prefer",
            ..plain(
                "",
                Reply::Rows(vec![
                    Sent::RowDescription(vec!["?column?".into()]),
                    Sent::DataRow(vec![Some(b"1".to_vec())]),
                ]),
                Steps::Query("SELECT 1"),
            )
        },
        plain(
            "simple query with rows",
            Reply::Rows(vec![
                Sent::RowDescription(vec!["id".into(), "v".into()]),
                row("1", "a"),
                row("2", "b"),
            ]),
            Steps::Query("SELECT 1 AS id, 'a' AS v UNION ALL SELECT 2, 'b'"),
        ),
        plain(
            "simple query with an error",
            Reply::Error {
                code: "42P01".into(),
                message: "relation \"no_such_table\" does not exist".into(),
            },
            Steps::Query("SELECT * FROM no_such_table"),
        ),
        plain("empty query", Reply::EmptyQuery, Steps::Query("")),
        plain(
            "COPY OUT with notices",
            Reply::CopyOut(vec![
                Sent::Notice("row 1".into()),
                copy_row("1\trow 1\n"),
                Sent::Notice("row 2".into()),
                copy_row("2\trow 2\n"),
                Sent::Notice("row 3".into()),
                copy_row("3\trow 3\n"),
            ]),
            Steps::CopyOut(
                "COPY (SELECT differential_noisy(g), 'row ' || g FROM generate_series(1, 3) g) TO STDOUT",
            ),
        ),
        plain(
            "COPY IN",
            Reply::CopyIn {
                abort_at: None,
                stray: false,
            },
            Steps::CopyIn {
                rows: 3,
                bad: false,
            },
        ),
        plain(
            "COPY IN aborted by the server",
            Reply::CopyIn {
                abort_at: Some(1),
                stray: false,
            },
            Steps::CopyIn {
                rows: 1000,
                bad: true,
            },
        ),
        plain(
            "LISTEN, then a notification",
            Reply::Listen {
                trailing: Vec::new(),
                later: vec![(10, "payload".into())],
            },
            Steps::Listen,
        ),
    ]
}

/// A backend message as a client acts on it.
fn token(tag: u8, body: &[u8]) -> String {
    let cstrs = |b: &[u8]| -> Vec<String> {
        b.split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let i16_at = |at: usize| i16::from_be_bytes([body[at], body[at + 1]]);
    let i32_at =
        |at: usize| i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    match tag {
        b'R' => match i32_at(0) {
            10 => format!("AuthenticationSASL {:?}", cstrs(&body[4..])),
            code => format!("Authentication {code}"),
        },
        b'S' => "ParameterStatus…".to_owned(),
        b'K' => format!("BackendKeyData key of {} bytes", body.len() - 4),
        b'Z' => format!("ReadyForQuery {}", body[0] as char),
        b'E' | b'N' => {
            let fields: Vec<(u8, String)> = body
                .split(|&c| c == 0)
                .filter(|f| !f.is_empty())
                .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
                .collect();
            let field = |t: u8| {
                fields
                    .iter()
                    .find(|(k, _)| *k == t)
                    .map_or("-", |(_, v)| v.as_str())
                    .to_owned()
            };
            let what = if tag == b'E' {
                "ErrorResponse"
            } else {
                "NoticeResponse"
            };
            format!("{what} {} {}", field(b'V'), field(b'C'))
        }
        b'T' => {
            let n = i16_at(0);
            // Each field: name, then 18 bytes of which the last two are the format.
            let mut at = 2;
            let mut formats = Vec::new();
            for _ in 0..n {
                at += body[at..].iter().position(|&c| c == 0).unwrap() + 1;
                formats.push(i16_at(at + 16));
                at += 18;
            }
            format!("RowDescription formats {formats:?}")
        }
        b'D' => format!("DataRow of {}", i16_at(0)),
        b'C' => format!("CommandComplete {:?}", cstrs(body).concat()),
        b'I' => "EmptyQueryResponse".to_owned(),
        b'G' | b'H' => {
            let n = i16_at(1);
            let formats: Vec<i16> = (0..n).map(|i| i16_at(3 + 2 * i as usize)).collect();
            let what = if tag == b'G' {
                "CopyInResponse"
            } else {
                "CopyOutResponse"
            };
            format!("{what} format {} columns {formats:?}", body[0])
        }
        b'd' => "CopyData".to_owned(),
        b'c' => "CopyDone".to_owned(),
        b'A' => format!("NotificationResponse {:?}", cstrs(&body[4..])),
        b'v' => format!("NegotiateProtocolVersion {:#x}", i32_at(0)),
        other => format!("message {:?}", other as char),
    }
}

/// The recorded server-to-client bytes as tokens; a run of ParameterStatus is
/// one token. After an SSLRequest the answer byte comes first: past an `S`
/// only TLS records follow, which cannot be read here.
fn tokens(bytes: &[u8], ssl_requested: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = bytes;
    if ssl_requested {
        let (first, after) = rest
            .split_first()
            .map_or((None, &[][..]), |(b, r)| (Some(*b as char), r));
        out.push(format!("SSL answer {first:?}"));
        if first == Some('S') {
            out.push("TLS".to_owned());
            return out;
        }
        rest = after;
    }
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(body) = rest.get(5..1 + len) else {
            out.push(format!("a truncated {:?} message", rest[0] as char));
            break;
        };
        let t = token(rest[0], body);
        if out.last() != Some(&t) || t != "ParameterStatus…" {
            out.push(t);
        }
        rest = &rest[1 + len..];
    }
    out
}

/// A proxy on loopback in front of `upstream` for one connection; yields what
/// the server sent once both sides are done.
async fn recording_proxy(upstream: u16) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = async {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            let _ = server_write.shutdown().await;
        };
        let down = async {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = server_read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if client_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = client_write.shutdown().await;
            seen
        };
        tokio::join!(up, down).1
    });
    (port, task)
}

/// A simulated server on loopback playing `script` for one connection.
async fn simulated_server(script: Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let log = Arc::new(Mutex::new(server::pg::Log::default()));
        let _ = server::pg::serve(stream, script, log).await;
    });
    port
}

/// Copy rows `(g, 'row g')` for g in 1..=rows, row 2 duplicating row 1 if `bad`.
fn copy_source(rows: u64, bad: bool) -> impl pg_transport::CopySource {
    let mut next = 1;
    pg_transport::source_fn(move || {
        let mut buf = String::new();
        while buf.len() < 4096 && next <= rows {
            let id = if bad && next == 2 { 1 } else { next };
            buf.push_str(&format!("{id}\trow {next}\n"));
            next += 1;
        }
        async move { Ok::<_, std::io::Error>(Bytes::from(buf)) }
    })
}

/// Connects through `port` and runs `steps`; the outcome in words (errors
/// included: both servers must fail alike).
async fn run(
    port: u16,
    params: &str,
    user: &str,
    password: Option<&str>,
    sslmode: &str,
    steps: Steps,
    real: bool,
) -> String {
    let mut config: Config = format!(
        "host=127.0.0.1 port={port} user={user} dbname=postgres sslmode={sslmode} connect_timeout=20 {params}"
    )
    .parse()
    .unwrap();
    config.password = password.map(str::to_owned);
    let mut client: DefaultConnection = match pg_transport::connect(&config).await {
        Ok((client, _)) => client,
        Err(e) => {
            return format!(
                "connect failed: {:?} {:?}",
                e.kind(),
                e.as_db_error().map(|d| d.code.code().to_owned())
            );
        }
    };
    let outcome = match steps {
        Steps::None => Ok("connected".to_owned()),
        Steps::Query(sql) => client
            .simple_query(sql)
            .await
            .map(|r| format!("{} results", r.len())),
        Steps::CopyIn { rows, bad } => client
            .copy_in(
                &format!("COPY {COPY_TABLE} FROM STDIN"),
                copy_source(rows, bad),
            )
            .await
            .map(|n| format!("{n} rows in")),
        Steps::CopyOut(sql) => {
            let mut out = Vec::new();
            client
                .copy_out_to(sql, &mut out)
                .await
                .map(|n| format!("{n} rows out"))
        }
        Steps::Listen => match client.simple_query("LISTEN ch").await {
            Err(e) => Err(e),
            Ok(_) => {
                if real {
                    notify_from_elsewhere().await;
                }
                client
                    .wait_notification(Some(Duration::from_secs(10)))
                    .await
                    .map(|n| format!("notification {:?}", n.map(|n| (n.channel, n.payload))))
            }
        },
    };
    let outcome = outcome.unwrap_or_else(|e| {
        format!(
            "{:?} {:?}",
            e.kind(),
            e.as_db_error().map(|d| d.code.code().to_owned())
        )
    });
    client.close().await;
    outcome
}

/// The superuser over the Unix socket, for the real server's side of a fixture.
async fn admin() -> DefaultConnection {
    pg_transport::connect(&cluster().socket_conninfo(TRUST_USER, "").parse().unwrap())
        .await
        .unwrap()
        .0
}

async fn notify_from_elsewhere() {
    let mut admin = admin().await;
    admin.simple_query("NOTIFY ch, 'payload'").await.unwrap();
    admin.close().await;
}

/// The real server's side of the fixtures: the COPY table, emptied before each
/// conversation, and a function that raises a NOTICE per row.
async fn prepare_real() {
    let mut admin = admin().await;
    admin
        .simple_query(&format!(
            "DROP TABLE IF EXISTS {COPY_TABLE};
             CREATE TABLE {COPY_TABLE} (id int PRIMARY KEY, v text);
             CREATE OR REPLACE FUNCTION differential_noisy(g int) RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN RAISE NOTICE 'row %', g; RETURN g; END $$;"
        ))
        .await
        .unwrap();
    admin.close().await;
}

async fn empty_copy_table() {
    let mut admin = admin().await;
    admin
        .simple_query(&format!("TRUNCATE {COPY_TABLE}"))
        .await
        .unwrap();
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_server_says_what_postgresql_says() {
    prepare_real().await;
    let (primary, standby) = (cluster().port, replica().port);
    let mut drifts = Vec::new();
    for c in conversations() {
        let ssl_requested = c.sslmode != "disable";
        empty_copy_table().await;
        let real_port = if c.on_standby { standby } else { primary };
        let (proxy, recorded) = recording_proxy(real_port).await;
        let (user, password) = c.real_user;
        let real_outcome = run(proxy, c.params, user, password, c.sslmode, c.steps, true).await;
        let real = tokens(&recorded.await.unwrap(), ssl_requested);

        let sim_port = simulated_server(c.script.clone()).await;
        let (proxy, recorded) = recording_proxy(sim_port).await;
        let sim_outcome = run(
            proxy,
            c.params,
            "sim",
            c.sim_password,
            c.sslmode,
            c.steps,
            false,
        )
        .await;
        let sim = tokens(&recorded.await.unwrap(), ssl_requested);

        if real != sim || real_outcome != sim_outcome {
            drifts.push(format!(
                "step {:?}:\n  PostgreSQL (server_version_num {}): {real:?} → {real_outcome}\n  simulated: {sim:?} → {sim_outcome}",
                c.name,
                cluster().version,
            ));
        }
    }
    assert!(
        drifts.is_empty(),
        "the simulated server drifted:\n{}",
        drifts.join("\n")
    );
}
