//! `StartupAuth` driven with hand-encoded server messages, bytes only: every
//! authentication method, each refusal, and the exact bytes answered.
//! The server side of SCRAM is computed here from RFC 5802's formulas with
//! the RustCrypto primitives, not with `protocol::auth::scram`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::*;
use crate::ErrorKind;
use crate::protocol::backend::parse_message;

// ---- server messages, encoded from the protocol documentation ----

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = i32::try_from(body.len() + 4).unwrap();
    [&[tag][..], &len.to_be_bytes(), body].concat()
}

fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    msg(b'R', &[&code.to_be_bytes()[..], extra].concat())
}

fn auth_ok() -> Vec<u8> {
    auth(0, &[])
}

fn sasl(mechanisms: &[&str]) -> Vec<u8> {
    let mut list = Vec::new();
    for m in mechanisms {
        list.extend_from_slice(m.as_bytes());
        list.push(0);
    }
    list.push(0);
    auth(10, &list)
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    msg(b'E', &body)
}

// ---- client messages, as the protocol documentation lays them out ----

/// PasswordMessage: `p`, length, the password and a NUL.
fn password_message(password: &[u8]) -> Vec<u8> {
    msg(b'p', &[password, b"\0"].concat())
}

/// SASLInitialResponse: `p`, length, mechanism, NUL, data length, data.
fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let len = i32::try_from(data.len()).unwrap().to_be_bytes();
    msg(b'p', &[mechanism.as_bytes(), b"\0", &len, data].concat())
}

// ---- driving the machine ----

const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";

fn settings() -> StartupSettings {
    StartupSettings {
        user: "alice".to_owned(),
        channel_binding: ChannelBinding::Prefer,
        require_auth: RequireAuth::default(),
        require_client_cert: false,
        tls: TlsFacts::default(),
        scram_nonce: NONCE.to_owned(),
    }
}

/// A machine and its send buffer.
struct Client {
    auth: StartupAuth,
    send: SendBuf,
}

impl Client {
    fn new(settings: StartupSettings) -> Self {
        Self {
            auth: StartupAuth::new(settings),
            send: SendBuf::new(),
        }
    }

    /// Feeds one encoded server message.
    fn feed(&mut self, bytes: &[u8]) -> Result<StartupStep, Error> {
        let (message, used) = parse_message(bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "one whole message");
        self.auth.feed(&message, &mut self.send)
    }

    fn password(&mut self, password: &str) -> Result<StartupStep, Error> {
        self.auth.password(password, &mut self.send)
    }

    /// What was encoded since the last call.
    fn sent(&mut self) -> Vec<u8> {
        let out = self.send.pending().to_vec();
        self.send.clear();
        out
    }

    /// AuthenticationOk, a ParameterStatus, ReadyForQuery: the method.
    fn finish(&mut self) -> Result<AuthMethod, Error> {
        assert_eq!(self.feed(&auth_ok())?, StartupStep::Wait);
        let status = msg(b'S', b"server_version\x0017\0");
        assert_eq!(self.feed(&status)?, StartupStep::Wait);
        match self.feed(&ready())? {
            StartupStep::Done(method) => Ok(method),
            other => panic!("ReadyForQuery gave {other:?}"),
        }
    }
}

/// Asserts an `Auth` error with exactly `text`.
fn auth_error(result: Result<impl fmt::Debug, Error>, text: &str) {
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_eq!(e.to_string(), text);
}

// ---- the server side of SCRAM ----

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// PBKDF2-HMAC-SHA-256, one block (RFC 5802's Hi).
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// Checks the client's proof in `client_final` and returns the server's
/// signature, as a server holding `password` would.
fn server_verifies(
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    client_final: &str,
) -> String {
    let (without_proof, proof) = client_final.split_once(",p=").unwrap();
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salted_password(password, &salt, 4096);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let expected: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    assert_eq!(
        BASE64.decode(proof).unwrap(),
        expected,
        "the client's proof"
    );
    let server_key = hmac(&salted, b"Server Key");
    BASE64.encode(hmac(&server_key, auth_message.as_bytes()))
}

const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

/// SASL up to the client's SASLInitialResponse; checks its bytes.
fn scram_started(c: &mut Client, offered: &[&str], mechanism: &str, gs2: &str) {
    assert_eq!(c.feed(&sasl(offered)).unwrap(), StartupStep::NeedPassword);
    assert!(c.sent().is_empty(), "nothing before the password");
    assert_eq!(c.password("pencil").unwrap(), StartupStep::Send);
    let first = format!("{gs2}n=,r={NONCE}");
    assert_eq!(c.sent(), sasl_initial(mechanism, first.as_bytes()));
}

/// SASLContinue: the client's final message (SASLResponse body), as text.
fn scram_continued(c: &mut Client) -> String {
    assert_eq!(
        c.feed(&auth(11, SERVER_FIRST.as_bytes())).unwrap(),
        StartupStep::Send
    );
    let sent = c.sent();
    assert_eq!(sent[0], b'p');
    String::from_utf8(sent[5..].to_vec()).unwrap()
}

// ---- the methods ----

#[test]
fn trust_sends_nothing_and_never_asks_for_a_password() {
    let mut c = Client::new(settings());
    assert_eq!(c.finish().unwrap(), AuthMethod::Trust);
    assert!(c.sent().is_empty());
}

#[test]
fn cleartext_sends_the_password() {
    let mut c = Client::new(settings());
    assert_eq!(c.feed(&auth(3, &[])).unwrap(), StartupStep::NeedPassword);
    assert!(c.sent().is_empty());
    assert_eq!(c.password("secret").unwrap(), StartupStep::Send);
    assert_eq!(c.sent(), password_message(b"secret"));
    assert_eq!(c.finish().unwrap(), AuthMethod::Cleartext);
}

/// The hash is the one `protocol::auth::md5`'s test computed with Python's
/// hashlib for user alice, password secret, salt 1 2 3 4.
#[test]
fn md5_sends_the_salted_hash() {
    let mut c = Client::new(settings());
    assert_eq!(
        c.feed(&auth(5, &[1, 2, 3, 4])).unwrap(),
        StartupStep::NeedPassword
    );
    assert_eq!(c.password("secret").unwrap(), StartupStep::Send);
    assert_eq!(
        c.sent(),
        password_message(b"md598a0412b9c31436fc53776e863350083")
    );
    assert_eq!(c.finish().unwrap(), AuthMethod::Md5);
}

#[test]
fn a_password_with_a_nul_is_invalid_input_and_nothing_is_sent() {
    let mut c = Client::new(settings());
    c.feed(&auth(3, &[])).unwrap();
    let e = c.password("se\0cret").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(c.sent().is_empty());
}

#[test]
fn a_password_nobody_asked_for_is_a_usage_error() {
    let mut c = Client::new(settings());
    assert_eq!(c.password("x").unwrap_err().kind(), ErrorKind::Usage);
}

/// RFC 7677 §3 in PostgreSQL's form (empty user name): the proof and the
/// server signature are the ones `protocol::auth::scram`'s test checked with
/// Python, and the server side computed here agrees.
#[test]
fn scram_sha_256_full_exchange() {
    let mut c = Client::new(settings());
    scram_started(&mut c, &["SCRAM-SHA-256"], "SCRAM-SHA-256", "n,,");
    let client_final = scram_continued(&mut c);
    assert_eq!(
        client_final,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k="
    );
    let signature = server_verifies(
        "pencil",
        &format!("n=,r={NONCE}"),
        SERVER_FIRST,
        &client_final,
    );
    assert_eq!(signature, "3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=");
    let last = format!("v={signature}");
    assert_eq!(
        c.feed(&auth(12, last.as_bytes())).unwrap(),
        StartupStep::Wait
    );
    assert!(c.sent().is_empty());
    assert_eq!(c.finish().unwrap(), AuthMethod::ScramSha256);
}

/// Over TLS with a server offering -PLUS: the GS2 header binds to the
/// certificate's hash (SHA-256 for a certificate whose signature algorithm is
/// not recognised), and channel_binding=require is satisfied.
#[test]
fn scram_sha_256_plus_binds_to_the_certificate() {
    let cert = b"not a DER certificate: hashed with SHA-256".to_vec();
    let mut c = Client::new(StartupSettings {
        channel_binding: ChannelBinding::Require,
        tls: TlsFacts {
            server_certificate: Some(cert.clone()),
            ..TlsFacts::default()
        },
        ..settings()
    });
    let gs2 = "p=tls-server-end-point,,";
    scram_started(
        &mut c,
        &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
        "SCRAM-SHA-256-PLUS",
        gs2,
    );
    let client_final = scram_continued(&mut c);
    let cbind = BASE64.encode([gs2.as_bytes(), &Sha256::digest(&cert)].concat());
    assert!(
        client_final.starts_with(&format!("c={cbind},r=")),
        "{client_final}"
    );
    let signature = server_verifies(
        "pencil",
        &format!("n=,r={NONCE}"),
        SERVER_FIRST,
        &client_final,
    );
    c.feed(&auth(12, format!("v={signature}").as_bytes()))
        .unwrap();
    assert_eq!(c.finish().unwrap(), AuthMethod::ScramSha256Plus);
}

/// Over TLS, a server offering only SCRAM-SHA-256 gets `y,,` (the client
/// could bind; a downgrade shows on the server side).
#[test]
fn scram_over_tls_without_plus_says_the_client_could_bind() {
    let mut c = Client::new(StartupSettings {
        tls: TlsFacts {
            server_certificate: Some(b"cert".to_vec()),
            ..TlsFacts::default()
        },
        ..settings()
    });
    scram_started(&mut c, &["SCRAM-SHA-256"], "SCRAM-SHA-256", "y,,");
}

#[test]
fn a_wrong_server_signature_is_refused() {
    let mut c = Client::new(settings());
    scram_started(&mut c, &["SCRAM-SHA-256"], "SCRAM-SHA-256", "n,,");
    scram_continued(&mut c);
    auth_error(
        c.feed(&auth(12, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")),
        "SCRAM server signature is invalid: the server could not prove it knows the password",
    );
}

#[test]
fn ok_before_sasl_final_is_refused() {
    let mut c = Client::new(settings());
    scram_started(&mut c, &["SCRAM-SHA-256"], "SCRAM-SHA-256", "n,,");
    scram_continued(&mut c);
    auth_error(
        c.feed(&auth_ok()),
        "the server sent AuthenticationOk before completing SCRAM: it never proved it knows the password; not trusting this server",
    );
}

#[test]
fn sasl_messages_before_sasl_are_protocol_errors() {
    for (code, name) in [
        (11, "AuthenticationSASLContinue"),
        (12, "AuthenticationSASLFinal"),
    ] {
        let e = Client::new(settings())
            .feed(&auth(code, b"r=x"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert_eq!(
            e.to_string(),
            format!("protocol error, connection closed: {name} before AuthenticationSASL")
        );
    }
}

#[test]
fn no_supported_sasl_mechanism() {
    let mut c = Client::new(settings());
    assert_eq!(
        c.feed(&sasl(&["OAUTHBEARER"])).unwrap(),
        StartupStep::NeedPassword
    );
    auth_error(
        c.password("pencil"),
        r#"no supported SASL mechanism among ["OAUTHBEARER"]"#,
    );
    assert!(c.sent().is_empty());
}

// ---- channel_binding=require ----

fn binding_required() -> StartupSettings {
    StartupSettings {
        channel_binding: ChannelBinding::Require,
        ..settings()
    }
}

/// Refused when the request arrives: the password is never asked for, so
/// never sent.
#[test]
fn channel_binding_require_refuses_cleartext_and_md5_before_the_password() {
    for (request, what) in [
        (auth(3, &[]), "a cleartext password"),
        (auth(5, &[1, 2, 3, 4]), "an MD5 password"),
    ] {
        let mut c = Client::new(binding_required());
        auth_error(
            c.feed(&request),
            &format!(
                "channel_binding=require, but the server asked for {what}, which cannot bind to the channel; the password was not sent"
            ),
        );
        assert!(c.sent().is_empty());
    }
}

#[test]
fn channel_binding_require_refuses_scram_without_plus() {
    let plain = binding_required();
    let tls_no_plus = StartupSettings {
        tls: TlsFacts {
            server_certificate: Some(b"cert".to_vec()),
            ..TlsFacts::default()
        },
        ..binding_required()
    };
    for (settings, offered) in [
        (plain, &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"][..]),
        (tls_no_plus, &["SCRAM-SHA-256"][..]),
    ] {
        let mut c = Client::new(settings);
        c.feed(&sasl(offered)).unwrap();
        auth_error(
            c.password("pencil"),
            "channel_binding=require, but the server did not offer SCRAM-SHA-256-PLUS over TLS",
        );
        assert!(c.sent().is_empty());
    }
}

#[test]
fn channel_binding_require_refuses_a_server_that_asks_nothing() {
    let mut c = Client::new(binding_required());
    auth_error(
        c.finish(),
        "channel_binding=require, but the server authenticated the client without channel binding",
    );
}

// ---- require_auth ----

fn requiring(list: &str) -> Client {
    Client::new(StartupSettings {
        require_auth: RequireAuth::parse(list).unwrap(),
        ..settings()
    })
}

/// Each request refused by `require_auth` fails before anything is sent or a
/// password is looked for.
#[test]
fn require_auth_refuses_each_request_before_answering() {
    let sent = "nothing was sent in answer";
    for (list, request, what) in [
        (
            "scram-sha-256",
            auth(3, &[]),
            "server requested a cleartext password",
        ),
        (
            "password",
            auth(5, &[0; 4]),
            "server requested a hashed password",
        ),
        (
            "!scram-sha-256",
            sasl(&["SCRAM-SHA-256"]),
            "server requested SASL authentication",
        ),
        (
            "md5",
            auth(7, &[]),
            "server requested GSSAPI authentication",
        ),
        (
            "md5",
            auth(8, b"token"),
            "server requested GSSAPI authentication",
        ),
        ("md5", auth(9, &[]), "server requested SSPI authentication"),
    ] {
        let mut c = requiring(list);
        auth_error(
            c.feed(&request),
            &format!("authentication method requirement {list:?} failed: {what}; {sent}"),
        );
        assert!(c.sent().is_empty());
    }
}

#[test]
fn require_auth_refuses_no_authentication_at_ok() {
    let mut c = requiring("md5");
    auth_error(
        c.finish(),
        "authentication method requirement \"md5\" failed: server did not complete authentication; not trusting this server",
    );
    // `none` allowed: trust passes.
    assert_eq!(requiring("none").finish().unwrap(), AuthMethod::Trust);
}

/// Once a method was used, AuthenticationOk does not count as `none`.
#[test]
fn require_auth_none_is_not_checked_after_a_password() {
    let mut c = requiring("password");
    c.feed(&auth(3, &[])).unwrap();
    c.password("secret").unwrap();
    assert_eq!(c.finish().unwrap(), AuthMethod::Cleartext);
}

// ---- unsupported methods, server errors, sslcertmode ----

#[test]
fn gss_sspi_and_kerberos_are_refused() {
    for (request, text) in [
        (
            auth(7, &[]),
            "the server asked for GSSAPI authentication, which this library does not support",
        ),
        (
            auth(8, b"token"),
            "the server asked for GSSAPI authentication, which this library does not support",
        ),
        (
            auth(9, &[]),
            "the server asked for SSPI authentication, which this library does not support",
        ),
        (
            auth(2, &[]),
            "unsupported authentication request KerberosV5",
        ),
    ] {
        let mut c = Client::new(settings());
        auth_error(c.feed(&request), text);
        assert!(c.sent().is_empty());
    }
}

#[test]
fn an_error_response_is_the_servers_error() {
    let mut c = Client::new(settings());
    let e = c
        .feed(&error_response("3D000", "database \"nope\" does not exist"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code.code(), "3D000");
    assert_eq!(db.message, "database \"nope\" does not exist");
    // Class 28 (invalid authorization) is an authentication failure.
    let e = Client::new(settings())
        .feed(&error_response("28P01", "password authentication failed"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
}

#[test]
fn sslcertmode_require_is_checked_at_ok() {
    let with = |requested, sent| {
        Client::new(StartupSettings {
            require_client_cert: true,
            tls: TlsFacts {
                server_certificate: None,
                client_cert_requested: requested,
                client_cert_sent: sent,
            },
            ..settings()
        })
    };
    auth_error(
        with(false, false).feed(&auth_ok()),
        "sslcertmode=require: the server did not request an SSL certificate",
    );
    auth_error(
        with(true, false).feed(&auth_ok()),
        "sslcertmode=require: the server accepted the connection without a valid SSL certificate (set sslcert and sslkey)",
    );
    assert_eq!(with(true, true).finish().unwrap(), AuthMethod::Trust);
}
