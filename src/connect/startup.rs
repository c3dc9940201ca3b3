//! StartupMessage and authentication, up to the first ReadyForQuery: the
//! async driver of [`StartupAuth`]. It gathers the parameters, draws the
//! SCRAM nonce, reads the TLS facts, and finds the password (the setting, or
//! the password file) only when the machine asks for one.

use base64::Engine;
use rand::RngCore;

use super::config::{Config, Replication, SslCertMode};
use super::hosts::HostEntry;
use super::pgpass;
use crate::conn::Connection;
use crate::error::Error;
use crate::session::{AuthMethod, StartupAuth, StartupSettings, StartupStep, TlsFacts};
use crate::transport::Transport;

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
    let (min, max) = config.protocol_versions();
    conn.session_mut()
        .startup_with_protocol(min, max, &params(config, &user, &dbname))?;
    conn.send_buf_msg().await?;

    let mut auth = StartupAuth::new(settings(conn, config, &user));
    loop {
        let message = conn.recv_message(None).await?;
        let mut step = auth.feed(&message, conn.session_mut().send_buf())?;
        if step == StartupStep::NeedPassword {
            let password = password(config, host, &dbname, &user)?;
            step = auth.password(&password, conn.session_mut().send_buf())?;
        }
        match step {
            StartupStep::Send => conn.send_buf_msg().await?,
            StartupStep::Done(method) => return Ok(method),
            StartupStep::Wait | StartupStep::NeedPassword => {}
        }
    }
}

/// The StartupMessage's parameters.
fn params<'a>(config: &'a Config, user: &'a str, dbname: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("user", user),
        ("database", dbname),
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
    params
}

/// What the machine decides with: the settings, the TLS facts of `conn`, and
/// a fresh SCRAM nonce (18 bytes from the OS-seeded thread RNG, base64).
fn settings<T: Transport>(conn: &Connection<T>, config: &Config, user: &str) -> StartupSettings {
    let tls = conn
        .tls_info()
        .map_or_else(TlsFacts::default, |t| TlsFacts {
            server_certificate: t.server_certificate.clone(),
            client_cert_requested: t.client_cert_requested,
            client_cert_sent: t.client_cert_sent,
        });
    let mut nonce = [0u8; 18];
    rand::rng().fill_bytes(&mut nonce);
    StartupSettings {
        user: user.to_owned(),
        channel_binding: config.channel_binding,
        require_auth: config.require_auth.clone(),
        require_client_cert: config.ssl_cert_mode == SslCertMode::Require,
        tls,
        scram_nonce: base64::engine::general_purpose::STANDARD.encode(nonce),
    }
}

/// The password the server asked for: the setting, else the password file
/// (read only now).
fn password(config: &Config, host: &HostEntry, dbname: &str, user: &str) -> Result<String, Error> {
    config.password.clone().or_else(|| password_from_file(config, host, dbname, user)).ok_or_else(|| {
        Error::auth(format!(
            "the server asked for a password for user {user:?} but none was given: set password, PGPASSWORD or a ~/.pgpass entry"
        ))
    })
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
