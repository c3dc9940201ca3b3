//! The session's state apart from its buffers: what each message the
//! server sends means for it.

use super::dispatch::Notification;
use super::state::Event;
use super::{BackendKey, Core, ProtocolNegotiation, State, lossy};
use crate::error::Error;
use crate::mutant::{Mutant, mutant};
use crate::protocol::{Authentication, Message, ProtocolError};

impl Core {
    #[inline]
    pub(super) fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Closed => Err(Error::closed("connection is closed")),
            _ => Ok(()),
        }
    }

    pub(super) fn expect_state(&self, want: State) -> Result<(), Error> {
        self.check_open()?;
        if self.state != want {
            return Err(Error::state(format!(
                "connection is {:?}, not {want:?}: finish the operation in progress first",
                self.state
            )));
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, event: Event) -> Result<(), Error> {
        match self.state.on(event) {
            Ok(next) => {
                self.state = next;
                Ok(())
            }
            Err(t) => {
                self.state = State::Closed;
                Err(Error::protocol_violation(format!(
                    "unexpected message from the server: {t}"
                )))
            }
        }
    }

    /// Closes the session and builds the error for a broken stream.
    pub(super) fn protocol_failure(&mut self, e: ProtocolError) -> Error {
        if !mutant(Mutant::ReuseAfterProtocolError) {
            self.state = State::Closed;
        }
        Error::protocol(e)
    }

    /// Handles a message that is consumed internally.
    ///
    /// # Errors
    /// A NegotiateProtocolVersion the session cannot accept (the session is then
    /// closed).
    pub(super) fn absorb<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> Result<(), Error> {
        match msg {
            Message::NoticeResponse(fields) => self.dispatch.notice(&fields.to_db_error()),
            Message::NotificationResponse {
                process_id,
                channel,
                payload,
            } => {
                self.dispatch.notification(Notification {
                    process_id: *process_id,
                    channel: lossy(channel),
                    payload: lossy(payload),
                });
            }
            Message::ParameterStatus { name, value } => {
                self.params.insert(lossy(name), lossy(value));
            }
            Message::NegotiateProtocolVersion(n) => {
                let theirs = ProtocolNegotiation {
                    newest_minor: n.newest_minor(),
                    unsupported_options: n
                        .options()
                        .map(|o| String::from_utf8_lossy(o).into_owned())
                        .collect(),
                };
                // The version is settled at the first ReadyForQuery; after it
                // the message can change nothing and is only recorded.
                if self.state == State::Authenticating {
                    if let Err(e) = self.versions.negotiate(self.negotiation.as_ref(), &theirs) {
                        self.state = State::Closed;
                        return Err(e);
                    }
                }
                self.negotiation = Some(theirs);
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies what a returned message means for the session's state.
    #[inline]
    pub(super) fn observe<B: AsRef<[u8]>>(&mut self, msg: &Message<B>) -> Result<(), Error> {
        match msg {
            Message::ReadyForQuery(status) => {
                self.transaction_status = *status;
                self.ready_count += 1;
                self.apply(Event::ReadyForQuery)
            }
            Message::CopyInResponse(_) => self.apply(Event::CopyInResponse),
            Message::CopyOutResponse(_) => self.apply(Event::CopyOutResponse),
            Message::CopyBothResponse(_) => {
                self.state = State::Closed;
                Err(Error::unsupported(
                    "CopyBothResponse: replication streams are not supported",
                ))
            }
            Message::CopyDone | Message::CommandComplete { .. } | Message::ErrorResponse(_)
                if matches!(self.state, State::CopyIn | State::CopyOut) =>
            {
                self.apply(Event::CopyEnded)
            }
            Message::BackendKeyData {
                process_id,
                secret_key,
            } => {
                if self.state == State::Authenticating {
                    if let Err(e) = self.versions.check_cancel_key(secret_key.as_ref().len()) {
                        self.state = State::Closed;
                        return Err(e);
                    }
                }
                self.backend_key = Some(BackendKey {
                    process_id: *process_id,
                    secret_key: secret_key.as_ref().to_vec(),
                });
                Ok(())
            }
            Message::Authentication(auth) => match auth {
                Authentication::KerberosV5 => Err(self.unsupported_auth("Kerberos V5")),
                Authentication::Gss | Authentication::GssContinue(_) => {
                    Err(self.unsupported_auth("GSSAPI"))
                }
                Authentication::Sspi => Err(self.unsupported_auth("SSPI")),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    pub(super) fn unsupported_auth(&mut self, method: &str) -> Error {
        self.state = State::Closed;
        Error::auth(format!(
            "unsupported authentication method {method} requested by the server; pg-transport supports \
             trust, password, md5 and SCRAM-SHA-256: change the pg_hba.conf entry for this user"
        ))
    }
}
