//! StartupMessage and authentication, up to the first ReadyForQuery.

use base64::Engine;
use rand::RngCore;

use super::config::{ChannelBinding, Config, Replication, SslCertMode};
use super::hosts::HostEntry;
use super::pgpass;
use super::require_auth::AuthRequirement;
use crate::conn::Connection;
use crate::error::Error;
use crate::protocol::auth::md5::md5_password;
use crate::protocol::auth::scram::{self, ScramClient, tls_server_end_point};
use crate::protocol::{Authentication, Message, frontend};
use crate::transport::Transport;

/// How the server authenticated us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No password asked (trust, peer, cert).
    Trust,
    /// Cleartext password.
    Cleartext,
    /// MD5.
    Md5,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS (channel binding to the TLS certificate).
    ScramSha256Plus,
}

/// Sends the StartupMessage and authenticates; returns once ReadyForQuery arrives.
///
/// # Errors
/// Kind `Auth` for a failed or unsupported authentication (the server's fields
/// attached when it sent them), kind `Server` for other startup errors (unknown
/// database, say), and the usual I/O/protocol kinds.
pub(crate) async fn startup<T: Transport>(
    conn: &mut Connection<T>,
    config: &Config,
    host: &HostEntry,
) -> Result<AuthMethod, Error> {
    let user = config
        .user
        .clone()
        .or_else(os_user)
        .ok_or_else(|| Error::config("no user name: set user or PGUSER"))?;
    let dbname = config.dbname.clone().unwrap_or_else(|| user.clone());
    let mut params = vec![
        ("user", user.as_str()),
        ("database", dbname.as_str()),
        ("client_encoding", "UTF8"),
    ];
    if let Some(app) = &config.application_name {
        params.push(("application_name", app));
    }
    if let Some(options) = &config.options {
        params.push(("options", options));
    }
    match config.replication {
        Some(Replication::Physical) => params.push(("replication", "true")),
        Some(Replication::Database) => params.push(("replication", "database")),
        None => {}
    }
    let (min, max) = config.protocol_versions();
    conn.session_mut()
        .startup_with_protocol(min, max, &params)?;
    conn.send_buf_msg().await?;

    let mut method = AuthMethod::Trust;
    let mut scram: Option<ScramClient> = None;
    let password = || {
        config.password.clone().or_else(|| password_from_file(config, host, &dbname, &user)).ok_or_else(|| {
            Error::auth(format!(
                "the server asked for a password for user {user:?} but none was given: set password, PGPASSWORD or a ~/.pgpass entry"
            ))
        })
    };
    loop {
        match conn.recv_message(None).await? {
            Message::Authentication(auth) => match auth {
                Authentication::Ok => {
                    // SCRAM authenticates the server too: an Ok before its
                    // proof (SASLFinal) could come from anyone.
                    if scram.as_ref().is_some_and(|s| !s.is_complete()) {
                        return Err(Error::auth(
                            "the server sent AuthenticationOk before completing SCRAM: it never proved it knows the password; not trusting this server",
                        ));
                    }
                    if method == AuthMethod::Trust {
                        config.require_auth.check(AuthRequirement::None)?;
                    }
                    check_cert_mode(conn, config)?;
                }
                Authentication::CleartextPassword => {
                    config.require_auth.check(AuthRequirement::Password)?;
                    refuse_without_binding(config, "a cleartext password")?;
                    method = AuthMethod::Cleartext;
                    let pw = password()?;
                    send(conn, |buf| frontend::password(buf, pw.as_bytes())).await?;
                }
                Authentication::Md5Password { salt } => {
                    config.require_auth.check(AuthRequirement::Md5)?;
                    refuse_without_binding(config, "an MD5 password")?;
                    method = AuthMethod::Md5;
                    let pw = password()?;
                    let hashed = md5_password(user.as_bytes(), pw.as_bytes(), salt);
                    send(conn, |buf| frontend::password(buf, &hashed)).await?;
                }
                Authentication::Sasl(mechanisms) => {
                    config.require_auth.check(AuthRequirement::ScramSha256)?;
                    let names: Vec<Vec<u8>> = mechanisms.iter().map(<[u8]>::to_vec).collect();
                    let client = start_scram(conn, config, &names, &password()?)?;
                    method = if client.mechanism() == scram::SCRAM_SHA_256_PLUS {
                        AuthMethod::ScramSha256Plus
                    } else {
                        AuthMethod::ScramSha256
                    };
                    let first = client.client_first();
                    let mechanism = client.mechanism();
                    send(conn, |buf| {
                        frontend::sasl_initial_response(buf, mechanism, &first)
                    })
                    .await?;
                    scram = Some(client);
                }
                Authentication::SaslContinue(data) => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| out_of_order("AuthenticationSASLContinue"))?;
                    let reply = client
                        .server_first(&data)
                        .map_err(|e| Error::auth(e.to_string()))?;
                    send(conn, |buf| frontend::sasl_response(buf, &reply)).await?;
                }
                Authentication::SaslFinal(data) => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| out_of_order("AuthenticationSASLFinal"))?;
                    client
                        .server_final(&data)
                        .map_err(|e| Error::auth(e.to_string()))?;
                }
                Authentication::Gss | Authentication::GssContinue(_) => {
                    config.require_auth.check(AuthRequirement::Gss)?;
                    return Err(Error::auth(
                        "the server asked for GSSAPI authentication, which this library does not support",
                    ));
                }
                Authentication::Sspi => {
                    config.require_auth.check(AuthRequirement::Sspi)?;
                    return Err(Error::auth(
                        "the server asked for SSPI authentication, which this library does not support",
                    ));
                }
                other => {
                    return Err(Error::auth(format!(
                        "unsupported authentication request {other:?}"
                    )));
                }
            },
            Message::ErrorResponse(fields) => return Err(Error::server(fields.to_db_error())),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    if config.channel_binding == ChannelBinding::Require && method != AuthMethod::ScramSha256Plus {
        return Err(Error::auth(
            "channel_binding=require, but the server authenticated the client without channel binding",
        ));
    }
    Ok(method)
}

/// With channel_binding=require, a password is never sent to a server that
/// asks for it outside SCRAM-PLUS: a man in the middle would get it (libpq
/// refuses the same way).
fn refuse_without_binding(config: &Config, what: &str) -> Result<(), Error> {
    if config.channel_binding == ChannelBinding::Require {
        return Err(Error::auth(format!(
            "channel_binding=require, but the server asked for {what}, which cannot bind to the channel; the password was not sent"
        )));
    }
    Ok(())
}

/// `sslcertmode=require`, checked when the server accepts us (as libpq does):
/// a client certificate must have been asked for and sent.
fn check_cert_mode<T: Transport>(conn: &Connection<T>, config: &Config) -> Result<(), Error> {
    if config.ssl_cert_mode != SslCertMode::Require {
        return Ok(());
    }
    let (requested, sent) = conn.tls_info().map_or((false, false), |t| {
        (t.client_cert_requested, t.client_cert_sent)
    });
    if !requested {
        return Err(Error::auth(
            "sslcertmode=require: the server did not request an SSL certificate",
        ));
    }
    if !sent {
        return Err(Error::auth(
            "sslcertmode=require: the server accepted the connection without a valid SSL certificate (set sslcert and sslkey)",
        ));
    }
    Ok(())
}

fn out_of_order(what: &str) -> Error {
    Error::protocol_violation(format!("{what} before AuthenticationSASL"))
}

/// Picks the SCRAM mechanism: -PLUS over TLS when the server offers it and
/// channel binding is not disabled.
fn start_scram<T: Transport>(
    conn: &Connection<T>,
    config: &Config,
    offered: &[Vec<u8>],
    password: &str,
) -> Result<ScramClient, Error> {
    let offers = |m: &str| offered.iter().any(|o| o == m.as_bytes());
    let cert = conn.tls_info().and_then(|t| t.server_certificate.clone());
    let binding = match (config.channel_binding, cert) {
        (ChannelBinding::Disable, _) => scram::ChannelBinding::Unsupported,
        (_, Some(cert)) if offers(scram::SCRAM_SHA_256_PLUS) => {
            scram::ChannelBinding::TlsServerEndPoint(tls_server_end_point(&cert))
        }
        (ChannelBinding::Require, _) => {
            return Err(Error::auth(
                "channel_binding=require, but the server did not offer SCRAM-SHA-256-PLUS over TLS",
            ));
        }
        (_, Some(_)) => scram::ChannelBinding::NotOffered,
        (_, None) => scram::ChannelBinding::Unsupported,
    };
    if !matches!(binding, scram::ChannelBinding::TlsServerEndPoint(_))
        && !offers(scram::SCRAM_SHA_256)
    {
        let names: Vec<String> = offered
            .iter()
            .map(|o| String::from_utf8_lossy(o).into_owned())
            .collect();
        return Err(Error::auth(format!(
            "no supported SASL mechanism among {names:?}"
        )));
    }
    let mut nonce = [0u8; 18];
    rand::rng().fill_bytes(&mut nonce);
    let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
    Ok(ScramClient::new(password, &nonce, binding))
}

async fn send<T: Transport>(
    conn: &mut Connection<T>,
    encode: impl FnOnce(&mut bytes::BytesMut) -> Result<(), crate::protocol::EncodeError>,
) -> Result<(), Error> {
    // Encoders leave the buffer untouched on error.
    encode(conn.session_mut().send_buf().buf_mut()).map_err(Error::invalid_input)?;
    conn.send_buf_msg().await
}

fn password_from_file(
    config: &Config,
    host: &HostEntry,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let file = pgpass::default_file(config.passfile.as_deref())?;
    // libpq matches a socket in the default directory as "localhost".
    let name = match host.host.as_deref() {
        Some(h) if super::hosts::is_unix_socket(h) => "localhost".to_owned(),
        Some(h) => h.to_owned(),
        None => host.hostaddr.map(|a| a.to_string()).unwrap_or_default(),
    };
    pgpass::lookup(&file, &name, host.port, dbname, user)
}

fn os_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
}
