//! Protocol version negotiation, with libpq 18's rules: the StartupMessage asks
//! for the highest version allowed, a server that speaks an older one answers
//! NegotiateProtocolVersion, and the answer is checked before anything else.

use crate::error::Error;
use crate::protocol::frontend::ProtocolVersion;

use super::ProtocolNegotiation;

/// The versions a session may use and the one it is using.
#[derive(Debug, Clone)]
pub(super) struct Versions {
    /// The lowest version acceptable (`min_protocol_version`).
    pub(super) min: ProtocolVersion,
    /// What the StartupMessage asked for, until the server answers lower.
    pub(super) current: ProtocolVersion,
    /// The `_pq_.` options the StartupMessage carried: the only ones a server
    /// may say it does not know.
    pub(super) requested_options: Vec<String>,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            min: ProtocolVersion::V3_0,
            current: ProtocolVersion::V3_0,
            requested_options: Vec::new(),
        }
    }
}

impl Versions {
    /// Applies the server's NegotiateProtocolVersion. `earlier` is the one it
    /// sent before in this session, if any.
    ///
    /// # Errors
    /// Kind `Protocol` for a message no correct server sends (a second one, an
    /// upgrade, 3.1, nothing to change, an option we never asked for); kind
    /// `Connect` when the server's version is below `min_protocol_version`.
    pub(super) fn negotiate(
        &mut self,
        earlier: Option<&ProtocolNegotiation>,
        theirs: &ProtocolNegotiation,
    ) -> Result<(), Error> {
        let invalid = |why: String| {
            Err(Error::protocol_violation(format!(
                "received invalid protocol negotiation message: {why}"
            )))
        };
        if earlier.is_some() {
            return Err(Error::protocol_violation(
                "received duplicate protocol negotiation message".to_owned(),
            ));
        }
        // PostgreSQL sends the whole version here (major in the high 16 bits)
        // and libpq 18 reads it so, though the protocol documentation says
        // "minor": a bare minor is taken as that minor of major 3.
        let theirs_code = match theirs.newest_minor {
            minor @ 0..=0xffff => ProtocolVersion::V3_0.code() | minor,
            code => code,
        };
        if theirs_code > self.current.code() {
            return invalid("server requested downgrade to a higher-numbered version".to_owned());
        }
        let Some(version) = ProtocolVersion::from_code(theirs_code) else {
            return invalid(if theirs_code < ProtocolVersion::V3_0.code() {
                "server requested downgrade to pre-3.0 protocol version".to_owned()
            } else {
                format!(
                    "server requested downgrade to non-existent 3.{} protocol version",
                    theirs_code & 0xffff
                )
            });
        };
        if version == self.current && theirs.unsupported_options.is_empty() {
            return invalid("server negotiated but asks for no changes".to_owned());
        }
        if version < self.min {
            return Err(Error::connect_rejected(format!(
                "server only supports protocol version {version}, but \"min_protocol_version\" was set to {}",
                self.min
            )));
        }
        let made_up = theirs
            .unsupported_options
            .iter()
            .find(|o| !self.requested_options.contains(o));
        if let Some(option) = made_up {
            return invalid(if option.starts_with("_pq_.") {
                format!(
                    "server reported an unsupported parameter that was not requested (\"{option}\")"
                )
            } else {
                format!(
                    "server reported unsupported parameter name without a \"_pq_.\" prefix (\"{option}\")"
                )
            });
        }
        self.current = version;
        Ok(())
    }

    /// Checks a BackendKeyData secret's length against the version in use.
    ///
    /// # Errors
    /// Kind `Protocol` for a key other than 4 bytes under protocol 3.0 (the
    /// parser already refuses under 4 and over 256).
    pub(super) fn check_cancel_key(&self, len: usize) -> Result<(), Error> {
        if self.current == ProtocolVersion::V3_0 && len != 4 {
            return Err(Error::protocol_violation(format!(
                "received invalid BackendKeyData message: cancel key with length {len} not allowed in protocol version 3.0 (must be 4 bytes)"
            )));
        }
        Ok(())
    }
}
