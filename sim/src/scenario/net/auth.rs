//! `net-auth`: startup over SSL or not, every authentication method, right
//! and wrong passwords, channel binding, and SCRAM servers that cheat.

use pg_transport::connect::AuthMethod;
use pg_transport::{ErrorKind, State};

use super::harness::{Client, connect_with, finish, simulate};
use crate::scenario::Outcome;
use crate::scenario::variant::AuthVariant;
use crate::seed::Seed;
use crate::server::auth::{Auth, PASSWORD, Twist};
use crate::server::pg::{Log, PROTOCOL_3_0, Reply, Script, Ssl};

/// Startup over what the seed picks: SSL refused or TLS (rustls over the
/// simulated stream), trust/cleartext/MD5/SCRAM(-PLUS), the right or a wrong
/// password, channel_binding disable/prefer/require, and SCRAM servers that
/// skip or forge their proof. Each combination has one right outcome.
pub fn auth(seed: Seed) -> Outcome {
    auth_with(seed, AuthVariant::from_seed(seed))
}

/// [`auth`] with its choices given.
pub fn auth_with(seed: Seed, v: AuthVariant) -> Outcome {
    let AuthVariant {
        ssl,
        sslmode,
        binding,
        auth,
        right_password,
    } = v;
    debug_assert!(
        matches!(ssl, Ssl::Accept | Ssl::Refuse | Ssl::Error),
        "injection is ssl_injection's scenario; its checks are not here"
    );
    let server_tls = ssl == Ssl::Accept;
    let ssl_error = ssl == Ssl::Error;
    let tls = server_tls && sslmode != "disable";
    let expected = expected_auth(&v);
    let script = Script {
        ssl,
        auth,
        reply: Reply::Rows(Vec::new()),
        newest_protocol: PROTOCOL_3_0,
    };
    let conninfo = conninfo(&v);
    let forged = matches!(auth, Auth::Scram(twist) if twist != Twist::None);
    let faults = u32::from(!right_password || forged);
    let (result, log, transcript) = simulate(
        seed,
        script,
        1,
        move |plan, log, transcript| async move {
            let outcome = connect_with(plan, &conninfo, None, None).await;
            transcript.lock().unwrap().push(format!(
                "tls {server_tls} (error {ssl_error})/{sslmode}, binding {binding}, {auth:?}, right password {right_password}: {:?}",
                outcome.as_ref().map(|(_, m)| m).map_err(|e| format!("{e:#}"))
            ));
            let server = ServerStartup::seen_in(&log.lock().unwrap());
            match (&expected, outcome) {
                (Ok(method), Ok((c, got))) => check_connected(c, got, *method, tls, &server).await,
                (Err(want), Err(e)) => check_refused(&e, want, &server),
                (Ok(method), Err(e)) => Err(format!("expected {method:?}, got {e:#}")),
                (Err(want), Ok((_, got))) => Err(format!(
                    "connected with {got:?}; expected a {:?} error saying {:?}",
                    want.kind, want.says
                )),
            }
        },
    );
    finish(result, &log, &transcript, faults)
}

/// The client's settings: the variant's modes, and its password.
fn conninfo(v: &AuthVariant) -> String {
    let password = if v.right_password {
        PASSWORD
    } else {
        "not the password"
    };
    format!(
        "user=sim dbname=sim sslmode={} channel_binding={} password='{password}'",
        v.sslmode, v.binding
    )
}

/// What the server's log says of the startup, read once the client is done
/// with it (the log's lock is not held across the client's awaits).
struct ServerStartup {
    /// PasswordMessage/SASL messages received.
    passwords: u32,
    mechanism: Option<String>,
    tls: bool,
}

impl ServerStartup {
    fn seen_in(log: &Log) -> Self {
        Self {
            passwords: log.password_messages,
            mechanism: log.mechanism.clone(),
            tls: log.tls,
        }
    }
}

/// A startup that had to succeed did so with `method`, over TLS exactly
/// when both ends should see it, with the SASL mechanism `method` names, and
/// leaves the connection usable.
async fn check_connected(
    mut c: Client,
    got: AuthMethod,
    method: AuthMethod,
    tls: bool,
    server: &ServerStartup,
) -> Result<(), String> {
    if got != method {
        return Err(format!("authenticated with {got:?}, expected {method:?}"));
    }
    if c.tls_info().is_some() != tls || server.tls != tls {
        return Err(format!(
            "TLS: client {}, server {}, expected {tls}",
            c.tls_info().is_some(),
            server.tls
        ));
    }
    let plus = server.mechanism.as_deref() == Some("SCRAM-SHA-256-PLUS");
    if plus != (method == AuthMethod::ScramSha256Plus) {
        return Err(format!(
            "server saw mechanism {:?} for {method:?}",
            server.mechanism
        ));
    }
    c.simple_query("")
        .await
        .map_err(|e| format!("connection not usable after startup: {e:#}"))?;
    if c.state() != State::Ready {
        return Err(format!("state {:?} after startup", c.state()));
    }
    c.close().await;
    Ok(())
}

/// A startup that had to fail did so the way `want` says, and without a
/// password where the client had to refuse before sending one.
fn check_refused(
    e: &pg_transport::Error,
    want: &Refusal,
    server: &ServerStartup,
) -> Result<(), String> {
    if e.kind() != want.kind || !e.report().to_string().contains(want.says) {
        return Err(format!(
            "expected a {:?} error saying {:?}, got {:?}: {e:#}",
            want.kind,
            want.says,
            e.kind()
        ));
    }
    if want.no_password && server.passwords != 0 {
        return Err(format!(
            "{} password message(s) sent although the client had to refuse",
            server.passwords
        ));
    }
    Ok(())
}

/// How a startup must fail.
#[derive(Debug)]
struct Refusal {
    kind: ErrorKind,
    says: &'static str,
    /// The client must not have sent any password or SASL message.
    no_password: bool,
}

/// The one right outcome of a startup, from libpq's rules.
fn expected_auth(v: &AuthVariant) -> Result<AuthMethod, Refusal> {
    let refuse = |kind, says, no_password| {
        Err(Refusal {
            kind,
            says,
            no_password,
        })
    };
    let server_tls = v.ssl == Ssl::Accept;
    if v.ssl == Ssl::Error && v.sslmode != "disable" {
        return refuse(ErrorKind::Tls, "sent an error during SSL negotiation", true);
    }
    if v.sslmode == "require" && !server_tls {
        return refuse(ErrorKind::Tls, "SSL was required", true);
    }
    let tls = server_tls && v.sslmode != "disable";
    let require = v.binding == "require";
    let right_password = v.right_password;
    let wrong = "password authentication failed";
    match v.auth {
        Auth::Trust if require => refuse(ErrorKind::Auth, "without channel binding", true),
        Auth::Trust => Ok(AuthMethod::Trust),
        Auth::Cleartext | Auth::Md5 if require => {
            refuse(ErrorKind::Auth, "the password was not sent", true)
        }
        Auth::Cleartext | Auth::Md5 if !right_password => refuse(ErrorKind::Auth, wrong, false),
        Auth::Cleartext => Ok(AuthMethod::Cleartext),
        Auth::Md5 => Ok(AuthMethod::Md5),
        Auth::Scram(_) if require && !tls => refuse(ErrorKind::Auth, "SCRAM-SHA-256-PLUS", true),
        // Nothing was checked yet when the server skipped to its final message.
        Auth::Scram(Twist::FinalFirst) => refuse(ErrorKind::Auth, "out of order", false),
        Auth::Scram(_) if !right_password => refuse(ErrorKind::Auth, wrong, false),
        Auth::Scram(Twist::OkWithoutFinal) => {
            refuse(ErrorKind::Auth, "before completing SCRAM", false)
        }
        Auth::Scram(Twist::BadSignature) => {
            refuse(ErrorKind::Auth, "server signature is invalid", false)
        }
        Auth::Scram(Twist::ContinueTwice) => refuse(ErrorKind::Auth, "out of order", false),
        Auth::Scram(Twist::None) if tls && v.binding != "disable" => {
            Ok(AuthMethod::ScramSha256Plus)
        }
        Auth::Scram(Twist::None) => Ok(AuthMethod::ScramSha256),
    }
}
