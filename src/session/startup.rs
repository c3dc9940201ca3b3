//! Startup and authentication as a sans-IO state machine: fed each server
//! message after the StartupMessage, it encodes the client's answers into the
//! send buffer and says when the exchange is over.
//!
//! Everything that needs the outside world comes in as data: the SCRAM nonce
//! (drawn by the caller), the TLS facts (server certificate, whether a client
//! certificate was asked for and sent), and the password, asked for only when
//! the server wants one ([`StartupStep::NeedPassword`]), so a password file is
//! read only then.
//!
//! The rules, in the order they apply:
//! - `require_auth` is checked at every request, before anything is answered
//!   (and at AuthenticationOk when no request came: method `none`);
//! - with `channel_binding=require`, a cleartext or MD5 request is refused
//!   before the password is sent, SCRAM without -PLUS is refused, and at the
//!   end the method must have been SCRAM-SHA-256-PLUS;
//! - AuthenticationOk before SCRAM's AuthenticationSASLFinal is refused: the
//!   server has not proved it knows the password;
//! - `sslcertmode=require` is checked at AuthenticationOk;
//! - GSSAPI, SSPI and Kerberos V5 are refused; an ErrorResponse is the
//!   server's error.
//!
//! ```text
//!   feed(R: Cleartext/MD5/SASL) -> NeedPassword -> password() -> Send
//!   feed(R: SASLContinue)       -> Send
//!   feed(R: SASLFinal, R: Ok, other messages) -> Wait
//!   feed(Z: ReadyForQuery)      -> Done(method)
//! ```

use std::fmt;

use crate::buffer::SendBuf;
use crate::error::Error;
use crate::protocol::auth::md5::md5_password;
use crate::protocol::auth::scram::{self, ScramClient, tls_server_end_point};
use crate::protocol::{Authentication, EncodeError, Message, frontend};

use super::require_auth::{AuthRequirement, RequireAuth};

/// How the server authenticated us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// SCRAM channel binding (`channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// Never bind.
    Disable,
    /// Bind when TLS and SCRAM-SHA-256-PLUS are both available. The default.
    #[default]
    Prefer,
    /// Refuse to authenticate without channel binding.
    Require,
}

/// What the TLS handshake established; the default is a plaintext connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// The server's end-entity certificate (DER), for SCRAM-SHA-256-PLUS.
    pub server_certificate: Option<Vec<u8>>,
    /// Whether the server asked for a client certificate.
    pub client_cert_requested: bool,
    /// Whether a client certificate was sent in answer.
    pub client_cert_sent: bool,
}

/// The plain data [`StartupAuth`] decides with.
#[derive(Debug, Clone)]
pub struct StartupSettings {
    /// The user name of the StartupMessage (MD5 hashes it with the password).
    pub user: String,
    /// The `channel_binding` policy.
    pub channel_binding: ChannelBinding,
    /// The methods the server may use (`require_auth`).
    pub require_auth: RequireAuth,
    /// `sslcertmode=require`: a client certificate must have been asked for
    /// and sent by the time the server accepts us.
    pub require_client_cert: bool,
    /// The TLS facts, default for a plaintext connection.
    pub tls: TlsFacts,
    /// The printable SCRAM client nonce, drawn by the caller from a CSPRNG.
    pub scram_nonce: String,
}

/// What the caller does after feeding a message or a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupStep {
    /// An answer was encoded into the send buffer: write it out, then feed
    /// the next message.
    Send,
    /// Nothing to send: feed the next message.
    Wait,
    /// The server asked for a password: find it and call
    /// [`StartupAuth::password`].
    NeedPassword,
    /// ReadyForQuery arrived: the session is ready, authenticated this way.
    Done(AuthMethod),
}

/// A password request waiting for [`StartupAuth::password`].
#[derive(Debug)]
enum Pending {
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { offered: Vec<Vec<u8>> },
}

/// The client side of startup and authentication, from the first message
/// after the StartupMessage to ReadyForQuery. See the module docs.
pub struct StartupAuth {
    settings: StartupSettings,
    method: AuthMethod,
    scram: Option<ScramClient>,
    pending: Option<Pending>,
}

impl fmt::Debug for StartupAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the settings: the nonce is a secret of the exchange.
        f.debug_struct("StartupAuth")
            .field("method", &self.method)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl StartupAuth {
    /// A machine waiting for the server's first answer to the StartupMessage.
    pub fn new(settings: StartupSettings) -> Self {
        Self {
            settings,
            method: AuthMethod::Trust,
            scram: None,
            pending: None,
        }
    }

    /// Takes one server message; answers, if any, are encoded into `send`.
    ///
    /// # Errors
    /// Kind `Auth` for a method `require_auth` or `channel_binding` refuses, an
    /// unsupported method (GSSAPI, SSPI, Kerberos), a failed SCRAM exchange,
    /// AuthenticationOk before SCRAM completed, or `sslcertmode=require`
    /// unmet; kind `Server` for an ErrorResponse; kind `Protocol` for a SASL
    /// message before AuthenticationSASL.
    pub fn feed<B: AsRef<[u8]> + fmt::Debug>(
        &mut self,
        message: &Message<B>,
        send: &mut SendBuf,
    ) -> Result<StartupStep, Error> {
        match message {
            Message::Authentication(auth) => self.authentication(auth, send),
            Message::ErrorResponse(fields) => Err(Error::server(fields.to_db_error())),
            Message::ReadyForQuery(_) => self.ready(),
            _ => Ok(StartupStep::Wait),
        }
    }

    /// Answers the pending password request with `password`.
    ///
    /// # Errors
    /// Kind `Usage` when no password was asked for; kind `Auth` when SCRAM
    /// cannot start (`channel_binding=require` without SCRAM-SHA-256-PLUS
    /// over TLS, no supported mechanism); kind `InvalidInput` when the
    /// password cannot be encoded (a NUL byte).
    pub fn password(&mut self, password: &str, send: &mut SendBuf) -> Result<StartupStep, Error> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| Error::usage("StartupAuth::password: no password was asked for"))?;
        match pending {
            Pending::Cleartext => encode(send, |buf| frontend::password(buf, password.as_bytes())),
            Pending::Md5 { salt } => {
                let user = self.settings.user.as_bytes();
                let hashed = md5_password(user, password.as_bytes(), salt);
                encode(send, |buf| frontend::password(buf, &hashed))
            }
            Pending::Sasl { offered } => {
                let client = self.start_scram(&offered, password)?;
                self.method = if client.mechanism() == scram::SCRAM_SHA_256_PLUS {
                    AuthMethod::ScramSha256Plus
                } else {
                    AuthMethod::ScramSha256
                };
                let first = client.client_first();
                let mechanism = client.mechanism();
                self.scram = Some(client);
                encode(send, |buf| {
                    frontend::sasl_initial_response(buf, mechanism, &first)
                })
            }
        }
    }

    fn authentication<B: AsRef<[u8]> + fmt::Debug>(
        &mut self,
        auth: &Authentication<B>,
        send: &mut SendBuf,
    ) -> Result<StartupStep, Error> {
        let require = &self.settings.require_auth;
        let pending = match auth {
            Authentication::Ok => return self.accepted(),
            Authentication::CleartextPassword => {
                require.check(AuthRequirement::Password)?;
                self.refuse_without_binding("a cleartext password")?;
                self.method = AuthMethod::Cleartext;
                Pending::Cleartext
            }
            Authentication::Md5Password { salt } => {
                require.check(AuthRequirement::Md5)?;
                self.refuse_without_binding("an MD5 password")?;
                self.method = AuthMethod::Md5;
                Pending::Md5 { salt: *salt }
            }
            Authentication::Sasl(mechanisms) => {
                require.check(AuthRequirement::ScramSha256)?;
                let offered = mechanisms.iter().map(<[u8]>::to_vec).collect();
                Pending::Sasl { offered }
            }
            Authentication::SaslContinue(data) => {
                let client = self
                    .scram
                    .as_mut()
                    .ok_or_else(|| out_of_order("AuthenticationSASLContinue"))?;
                let reply = client
                    .server_first(data.as_ref())
                    .map_err(|e| Error::auth(e.to_string()))?;
                return encode(send, |buf| frontend::sasl_response(buf, &reply));
            }
            Authentication::SaslFinal(data) => {
                let client = self
                    .scram
                    .as_mut()
                    .ok_or_else(|| out_of_order("AuthenticationSASLFinal"))?;
                client
                    .server_final(data.as_ref())
                    .map_err(|e| Error::auth(e.to_string()))?;
                return Ok(StartupStep::Wait);
            }
            Authentication::Gss | Authentication::GssContinue(_) => {
                require.check(AuthRequirement::Gss)?;
                return Err(Error::auth(
                    "the server asked for GSSAPI authentication, which this library does not support",
                ));
            }
            Authentication::Sspi => {
                require.check(AuthRequirement::Sspi)?;
                return Err(Error::auth(
                    "the server asked for SSPI authentication, which this library does not support",
                ));
            }
            other => {
                return Err(Error::auth(format!(
                    "unsupported authentication request {other:?}"
                )));
            }
        };
        self.pending = Some(pending);
        Ok(StartupStep::NeedPassword)
    }

    /// AuthenticationOk.
    fn accepted(&self) -> Result<StartupStep, Error> {
        // SCRAM authenticates the server too: an Ok before its proof
        // (SASLFinal) could come from anyone.
        if self.scram.as_ref().is_some_and(|s| !s.is_complete()) {
            return Err(Error::auth(
                "the server sent AuthenticationOk before completing SCRAM: it never proved it knows the password; not trusting this server",
            ));
        }
        if self.method == AuthMethod::Trust {
            self.settings.require_auth.check(AuthRequirement::None)?;
        }
        self.check_cert_mode()?;
        Ok(StartupStep::Wait)
    }

    /// ReadyForQuery: the end, unless channel binding was required and not used.
    fn ready(&self) -> Result<StartupStep, Error> {
        if self.settings.channel_binding == ChannelBinding::Require
            && self.method != AuthMethod::ScramSha256Plus
        {
            return Err(Error::auth(
                "channel_binding=require, but the server authenticated the client without channel binding",
            ));
        }
        Ok(StartupStep::Done(self.method))
    }

    /// With channel_binding=require, a password is never sent to a server that
    /// asks for it outside SCRAM-PLUS: a man in the middle would get it (libpq
    /// refuses the same way).
    fn refuse_without_binding(&self, what: &str) -> Result<(), Error> {
        if self.settings.channel_binding == ChannelBinding::Require {
            return Err(Error::auth(format!(
                "channel_binding=require, but the server asked for {what}, which cannot bind to the channel; the password was not sent"
            )));
        }
        Ok(())
    }

    /// `sslcertmode=require`, checked when the server accepts us (as libpq
    /// does): a client certificate must have been asked for and sent.
    fn check_cert_mode(&self) -> Result<(), Error> {
        if !self.settings.require_client_cert {
            return Ok(());
        }
        if !self.settings.tls.client_cert_requested {
            return Err(Error::auth(
                "sslcertmode=require: the server did not request an SSL certificate",
            ));
        }
        if !self.settings.tls.client_cert_sent {
            return Err(Error::auth(
                "sslcertmode=require: the server accepted the connection without a valid SSL certificate (set sslcert and sslkey)",
            ));
        }
        Ok(())
    }

    /// Picks the SCRAM mechanism: -PLUS over TLS when the server offers it and
    /// channel binding is not disabled.
    fn start_scram(&self, offered: &[Vec<u8>], password: &str) -> Result<ScramClient, Error> {
        let offers = |m: &str| offered.iter().any(|o| o == m.as_bytes());
        let cert = self.settings.tls.server_certificate.as_deref();
        let binding = match (self.settings.channel_binding, cert) {
            (ChannelBinding::Disable, _) => scram::ChannelBinding::Unsupported,
            (_, Some(cert)) if offers(scram::SCRAM_SHA_256_PLUS) => {
                scram::ChannelBinding::TlsServerEndPoint(tls_server_end_point(cert))
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
        Ok(ScramClient::new(
            password,
            &self.settings.scram_nonce,
            binding,
        ))
    }
}

fn out_of_order(what: &str) -> Error {
    Error::protocol_violation(format!("{what} before AuthenticationSASL"))
}

/// Encodes one answer; encoders leave the buffer untouched on error.
fn encode(
    send: &mut SendBuf,
    encoder: impl FnOnce(&mut bytes::BytesMut) -> Result<(), EncodeError>,
) -> Result<StartupStep, Error> {
    encoder(send.buf_mut()).map_err(Error::invalid_input)?;
    Ok(StartupStep::Send)
}

#[cfg(test)]
#[path = "startup_tests.rs"]
mod tests;
