//! `require_auth` (libpq 16+): which authentication methods the server may
//! ask for. Checked when the server's request arrives, before any password
//! or proof leaves the client.

use std::fmt;

use crate::error::Error;

/// One authentication method `require_auth` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthRequirement {
    /// No authentication at all: the server sends AuthenticationOk straight away
    /// (`trust`, `peer`, or `cert` without a password).
    None,
    /// A cleartext password (`password`).
    Password,
    /// An MD5-hashed password (`md5`).
    Md5,
    /// SCRAM-SHA-256, with or without channel binding (`scram-sha-256`).
    ScramSha256,
    /// Kerberos through GSSAPI (`gss`). This library refuses GSSAPI requests
    /// whatever `require_auth` says; the name is accepted so that a list
    /// written for libpq parses.
    Gss,
    /// Windows SSPI (`sspi`); refused like GSSAPI.
    Sspi,
}

impl AuthRequirement {
    const ALL: [Self; 6] = [
        Self::None,
        Self::Password,
        Self::Md5,
        Self::ScramSha256,
        Self::Gss,
        Self::Sspi,
    ];

    /// libpq's name for the method.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Password => "password",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
            Self::Gss => "gss",
            Self::Sspi => "sspi",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// What the server did, in libpq's words, for error messages.
    fn request(self) -> &'static str {
        match self {
            Self::None => "server did not complete authentication",
            Self::Password => "server requested a cleartext password",
            Self::Md5 => "server requested a hashed password",
            Self::ScramSha256 => "server requested SASL authentication",
            Self::Gss => "server requested GSSAPI authentication",
            Self::Sspi => "server requested SSPI authentication",
        }
    }
}

/// The `require_auth` setting: the methods the server may use. The default
/// allows every method.
///
/// A list names the allowed methods (`scram-sha-256,none`); a list whose every
/// entry starts with `!` names the forbidden ones (`!password,!md5`).
#[derive(Clone, PartialEq, Eq)]
pub struct RequireAuth {
    allowed: u8,
    /// The setting as written, for error messages; `None` for the default.
    text: Option<String>,
}

impl Default for RequireAuth {
    fn default() -> Self {
        Self {
            allowed: u8::MAX,
            text: None,
        }
    }
}

impl fmt::Debug for RequireAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            None => f.write_str("RequireAuth(any)"),
            Some(t) => write!(f, "RequireAuth({t:?})"),
        }
    }
}

impl RequireAuth {
    /// Allows exactly `methods`.
    pub fn only(methods: &[AuthRequirement]) -> Self {
        let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
        Self {
            allowed: methods.iter().fold(0, |acc, m| acc | m.bit()),
            text: Some(names.join(",")),
        }
    }

    /// Allows every method except `methods`.
    pub fn except(methods: &[AuthRequirement]) -> Self {
        let names: Vec<String> = methods.iter().map(|m| format!("!{}", m.name())).collect();
        Self {
            allowed: !methods.iter().fold(0, |acc, m| acc | m.bit()),
            text: Some(names.join(",")),
        }
    }

    /// Parses libpq's syntax: a comma-separated list of `password`, `md5`,
    /// `gss`, `sspi`, `scram-sha-256` and `none`, all plain or all negated with
    /// `!`. An empty string allows every method.
    ///
    /// # Errors
    /// A message naming the offending entry: an unknown method, a method given
    /// twice, or negated and plain entries mixed.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Ok(Self::default());
        }
        // As libpq: split on commas only, no trimming; the first entry decides
        // whether the list is negated.
        let negated = value.starts_with('!');
        let mut named = 0u8;
        for entry in value.split(',') {
            let (neg, name) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            if neg && !negated {
                return Err(format!(
                    "negative require_auth method {entry:?} cannot be mixed with non-negative methods"
                ));
            }
            if !neg && negated {
                return Err(format!(
                    "require_auth method {entry:?} cannot be mixed with negative methods"
                ));
            }
            let method = AuthRequirement::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| format!("invalid require_auth value: {name:?}"))?;
            if named & method.bit() != 0 {
                return Err(format!(
                    "require_auth method {entry:?} is specified more than once"
                ));
            }
            named |= method.bit();
        }
        let allowed = if negated { !named } else { named };
        Ok(Self {
            allowed,
            text: Some(value.to_owned()),
        })
    }

    /// Whether the server may authenticate the client with `method`.
    pub fn allows(&self, method: AuthRequirement) -> bool {
        self.allowed & method.bit() != 0
    }

    /// Whether this is the default (every method allowed).
    pub fn is_any(&self) -> bool {
        self.text.is_none()
    }

    /// Refuses `method` unless allowed; called before the client answers the
    /// server's request, so nothing secret has been sent when this fails.
    ///
    /// # Errors
    /// Kind `Auth`, naming the setting and what the server asked for.
    pub(crate) fn check(&self, method: AuthRequirement) -> Result<(), Error> {
        if self.allows(method) {
            return Ok(());
        }
        let text = self.text.as_deref().unwrap_or_default();
        let tail = match method {
            AuthRequirement::None => "not trusting this server",
            _ => "nothing was sent in answer",
        };
        Err(Error::auth(format!(
            "authentication method requirement {text:?} failed: {}; {tail}",
            method.request()
        )))
    }
}
