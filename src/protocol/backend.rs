//! Framing and parsing of backend messages (protocol 3.0).
//!
//! Two steps, each usable alone: [`parse_header`] checks the five-byte header
//! against the size cap before any body is buffered, and [`parse_body`] turns one
//! whole message into a [`Message`] whose payloads are slices of the input, in
//! whatever slice type the caller maps them to: `&[u8]` for the borrowed,
//! zero-allocation path, [`Bytes`](bytes::Bytes) for owned messages that share the
//! receive buffer.

use super::data_row::{DataRow, RowDescription};
use super::error::ProtocolError;
use super::fields::Fields;
use super::limits::{HEADER_LEN, MAX_CANCEL_KEY_LEN, MAX_PROTOCOL_OPTIONS, MAX_SASL_MECHANISMS};
use super::reader::Reader;

pub use super::tags::*;

/// A checked backend message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The type byte.
    pub tag: u8,
    /// Total message size in bytes, type byte and length field included.
    pub len: usize,
}

impl Header {
    /// Body size: the message without its five header bytes.
    pub const fn body_len(&self) -> usize {
        self.len - HEADER_LEN
    }
}

/// Checks the header at the start of `buf`.
///
/// Returns `Ok(None)` while fewer than five bytes are buffered. Checks the type
/// byte and the length against `max_len` (the whole message, header included)
/// as soon as the header is there, so a hostile length is refused before any of
/// its body is read.
///
/// # Errors
/// [`ProtocolError::UnknownMessageType`], [`ProtocolError::InvalidLength`] (below
/// 4) or [`ProtocolError::MessageTooLarge`].
#[inline]
pub fn parse_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, ProtocolError> {
    let Some(&[tag, a, b, c, d]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    if !is_backend_tag(tag) {
        return Err(ProtocolError::UnknownMessageType { byte: tag });
    }
    let raw = i32::from_be_bytes([a, b, c, d]);
    let len = match usize::try_from(raw) {
        Ok(n) if n >= 4 || crate::mutant::mutant(crate::mutant::Mutant::HeaderLenUnder4) => n + 1,
        _ => return Err(ProtocolError::InvalidLength { tag, len: raw }),
    };
    if len > max_len {
        return Err(ProtocolError::MessageTooLarge {
            tag,
            len,
            max: max_len,
        });
    }
    Ok(Some(Header { tag, len }))
}

/// Parses one complete message at the start of `buf`, borrowing from it.
///
/// Returns `Ok(None)` ("incomplete": nothing consumed) when `buf` does not yet
/// hold the whole message, else the message and the bytes it took.
///
/// # Errors
/// Any [`ProtocolError`] of the header or the body.
#[expect(
    clippy::type_complexity,
    reason = "a named pair type would only rename this tuple"
)]
#[inline]
pub fn parse_message(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(Message<&[u8]>, usize)>, ProtocolError> {
    let Some(header) = parse_header(buf, max_len)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(HEADER_LEN..header.len) else {
        return Ok(None);
    };
    Ok(Some((parse_body(header.tag, body, |s| s)?, header.len)))
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: inside a transaction block.
    InTransaction,
    /// `E`: inside a failed transaction block; queries are rejected until it ends.
    Failed,
}

/// One backend message; payloads are `B`: `&[u8]` or [`Bytes`](bytes::Bytes).
///
/// NoticeResponse, NotificationResponse, ParameterStatus and
/// NegotiateProtocolVersion are parsed here like every other message; a
/// [`Session`](crate::session::Session) consumes them before its caller sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message<B> {
    /// An Authentication* request (`R`).
    Authentication(Authentication<B>),
    /// The key that identifies this backend to a CancelRequest.
    BackendKeyData {
        /// The backend's process id.
        process_id: i32,
        /// The secret key: 4 bytes in protocol 3.0, up to 256 in 3.2.
        secret_key: B,
    },
    /// A Bind succeeded.
    BindComplete,
    /// A Close succeeded.
    CloseComplete,
    /// A command finished; `tag` is e.g. `INSERT 0 5` or `COPY 20000`.
    CommandComplete {
        /// The command tag.
        tag: B,
    },
    /// One chunk of COPY data.
    CopyData(B),
    /// The server's COPY OUT stream ended.
    CopyDone,
    /// The server is ready to receive COPY data.
    CopyInResponse(CopyResponse<B>),
    /// The server is about to send COPY data.
    CopyOutResponse(CopyResponse<B>),
    /// Both directions (replication only).
    CopyBothResponse(CopyResponse<B>),
    /// One result row.
    DataRow(DataRow<B>),
    /// The query string was empty.
    EmptyQueryResponse,
    /// The server reports an error.
    ErrorResponse(Fields<B>),
    /// The server does not support our minor version or some `_pq_.` options.
    NegotiateProtocolVersion(NegotiateProtocolVersion<B>),
    /// The statement returns no rows.
    NoData,
    /// A notice (warning or information) from the server.
    NoticeResponse(Fields<B>),
    /// A LISTEN/NOTIFY notification.
    NotificationResponse {
        /// The notifying backend's process id.
        process_id: i32,
        /// The channel name.
        channel: B,
        /// The payload (may be empty).
        payload: B,
    },
    /// The parameter types of a prepared statement.
    ParameterDescription(ParameterDescription<B>),
    /// A run-time parameter's current value.
    ParameterStatus {
        /// The parameter's name.
        name: B,
        /// Its value.
        value: B,
    },
    /// A Parse succeeded.
    ParseComplete,
    /// An Execute hit its row limit.
    PortalSuspended,
    /// The server is ready for a new query.
    ReadyForQuery(TransactionStatus),
    /// The shape of the rows that follow.
    RowDescription(RowDescription<B>),
}

impl<B> Message<B> {
    /// The message's type byte.
    pub const fn tag(&self) -> u8 {
        match self {
            Self::Authentication(_) => AUTHENTICATION_TAG,
            Self::BackendKeyData { .. } => BACKEND_KEY_DATA_TAG,
            Self::BindComplete => BIND_COMPLETE_TAG,
            Self::CloseComplete => CLOSE_COMPLETE_TAG,
            Self::CommandComplete { .. } => COMMAND_COMPLETE_TAG,
            Self::CopyData(_) => COPY_DATA_TAG,
            Self::CopyDone => COPY_DONE_TAG,
            Self::CopyInResponse(_) => COPY_IN_RESPONSE_TAG,
            Self::CopyOutResponse(_) => COPY_OUT_RESPONSE_TAG,
            Self::CopyBothResponse(_) => COPY_BOTH_RESPONSE_TAG,
            Self::DataRow(_) => DATA_ROW_TAG,
            Self::EmptyQueryResponse => EMPTY_QUERY_RESPONSE_TAG,
            Self::ErrorResponse(_) => ERROR_RESPONSE_TAG,
            Self::NegotiateProtocolVersion(_) => NEGOTIATE_PROTOCOL_VERSION_TAG,
            Self::NoData => NO_DATA_TAG,
            Self::NoticeResponse(_) => NOTICE_RESPONSE_TAG,
            Self::NotificationResponse { .. } => NOTIFICATION_RESPONSE_TAG,
            Self::ParameterDescription(_) => PARAMETER_DESCRIPTION_TAG,
            Self::ParameterStatus { .. } => PARAMETER_STATUS_TAG,
            Self::ParseComplete => PARSE_COMPLETE_TAG,
            Self::PortalSuspended => PORTAL_SUSPENDED_TAG,
            Self::ReadyForQuery(_) => READY_FOR_QUERY_TAG,
            Self::RowDescription(_) => ROW_DESCRIPTION_TAG,
        }
    }

    /// The message's name in the protocol documentation (`DataRow`, …).
    pub const fn name(&self) -> &'static str {
        message_name(self.tag())
    }
}

/// An Authentication* request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authentication<B> {
    /// Authentication succeeded.
    Ok,
    /// Kerberos V5 (unsupported since PostgreSQL 9.3; we refuse it).
    KerberosV5,
    /// Send the password in clear text.
    CleartextPassword,
    /// Send the MD5-hashed password with this salt.
    Md5Password {
        /// The four-byte salt.
        salt: [u8; 4],
    },
    /// GSSAPI (unsupported by this library).
    Gss,
    /// GSSAPI or SSPI continuation data (unsupported by this library).
    GssContinue(B),
    /// SSPI (unsupported by this library).
    Sspi,
    /// Start SASL with one of these mechanisms.
    Sasl(SaslMechanisms<B>),
    /// A SASL challenge.
    SaslContinue(B),
    /// The SASL outcome (server signature).
    SaslFinal(B),
}

/// The mechanism list of an AuthenticationSASL message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslMechanisms<B> {
    /// NUL-terminated names, ending with an empty name; validated at parse time.
    raw: B,
}

impl<B: AsRef<[u8]>> SaslMechanisms<B> {
    /// The mechanism names, in the server's order of preference.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.raw
            .as_ref()
            .split(|&b| b == 0)
            .take_while(|name| !name.is_empty())
    }
}

/// The body of CopyInResponse, CopyOutResponse or CopyBothResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse<B> {
    binary: bool,
    column_count: u16,
    /// `column_count` big-endian `i16` formats, each 0 or 1; validated at parse time.
    formats: B,
}

impl<B: AsRef<[u8]>> CopyResponse<B> {
    /// Whether the overall COPY format is binary (else text or CSV).
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Number of columns in the copied data.
    pub fn column_count(&self) -> u16 {
        self.column_count
    }

    /// Per-column formats: 0 text, 1 binary.
    pub fn column_formats(&self) -> impl Iterator<Item = i16> {
        self.formats.as_ref().chunks_exact(2).map(|c| {
            i16::from_be_bytes([
                c.first().copied().unwrap_or(0),
                c.last().copied().unwrap_or(0),
            ])
        })
    }
}

/// The body of ParameterDescription: one type OID per statement parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterDescription<B> {
    oids: B,
}

impl<B: AsRef<[u8]>> ParameterDescription<B> {
    /// The parameter type OIDs.
    pub fn oids(&self) -> impl Iterator<Item = u32> {
        self.oids
            .as_ref()
            .chunks_exact(4)
            .map(|c| c.first_chunk::<4>().map_or(0, |a| u32::from_be_bytes(*a)))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.oids.as_ref().len() / 4
    }

    /// Whether the statement takes no parameters.
    pub fn is_empty(&self) -> bool {
        self.oids.as_ref().is_empty()
    }
}

/// The body of NegotiateProtocolVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateProtocolVersion<B> {
    newest_minor: i32,
    option_count: usize,
    /// `option_count` NUL-terminated names; validated at parse time.
    options: B,
}

impl<B: AsRef<[u8]>> NegotiateProtocolVersion<B> {
    /// The newest minor protocol version the server supports.
    pub fn newest_minor(&self) -> i32 {
        self.newest_minor
    }

    /// Number of protocol options the server did not recognise.
    pub fn option_count(&self) -> usize {
        self.option_count
    }

    /// The unrecognised option names.
    pub fn options(&self) -> impl Iterator<Item = &[u8]> {
        self.options
            .as_ref()
            .split(|&b| b == 0)
            .take(self.option_count)
    }
}

/// Parses the body of a message of type `tag`; `map` turns sub-slices of `body`
/// into the payload type.
///
/// # Errors
/// A [`ProtocolError`] naming the message and field that broke the protocol.
#[inline]
pub fn parse_body<'a, B>(
    tag: u8,
    body: &'a [u8],
    map: impl Fn(&'a [u8]) -> B,
) -> Result<Message<B>, ProtocolError> {
    let mut r = Reader::new(body);
    let msg = match tag {
        DATA_ROW_TAG => return DataRow::parse(body, map).map(Message::DataRow),
        COPY_DATA_TAG => return Ok(Message::CopyData(map(body))),
        AUTHENTICATION_TAG => return parse_authentication(r, map).map(Message::Authentication),
        ERROR_RESPONSE_TAG => {
            return Fields::parse(body, "ErrorResponse", map).map(Message::ErrorResponse);
        }
        NOTICE_RESPONSE_TAG => {
            return Fields::parse(body, "NoticeResponse", map).map(Message::NoticeResponse);
        }
        ROW_DESCRIPTION_TAG => {
            return RowDescription::parse(body, map).map(Message::RowDescription);
        }
        COMMAND_COMPLETE_TAG => Message::CommandComplete {
            tag: map(r.cstr("CommandComplete.tag")?),
        },
        READY_FOR_QUERY_TAG => Message::ReadyForQuery(parse_status(&mut r)?),
        BACKEND_KEY_DATA_TAG => parse_backend_key(&mut r, &map)?,
        NOTIFICATION_RESPONSE_TAG => Message::NotificationResponse {
            process_id: r.i32("NotificationResponse.process_id")?,
            channel: map(r.cstr("NotificationResponse.channel")?),
            payload: map(r.cstr("NotificationResponse.payload")?),
        },
        PARAMETER_STATUS_TAG => Message::ParameterStatus {
            name: map(r.cstr("ParameterStatus.name")?),
            value: map(r.cstr("ParameterStatus.value")?),
        },
        PARAMETER_DESCRIPTION_TAG => {
            // The server writes this count with pq_sendint16 from a uint16 (up to 65535 parameters).
            let count = usize::from(u16::from_be_bytes(r.array("ParameterDescription.count")?));
            let oids = r.take(count * 4, "ParameterDescription.type_oid")?;
            Message::ParameterDescription(ParameterDescription { oids: map(oids) })
        }
        COPY_IN_RESPONSE_TAG => Message::CopyInResponse(parse_copy_response(&mut r, &map)?),
        COPY_OUT_RESPONSE_TAG => Message::CopyOutResponse(parse_copy_response(&mut r, &map)?),
        COPY_BOTH_RESPONSE_TAG => Message::CopyBothResponse(parse_copy_response(&mut r, &map)?),
        NEGOTIATE_PROTOCOL_VERSION_TAG => {
            Message::NegotiateProtocolVersion(parse_negotiate(&mut r, &map)?)
        }
        BIND_COMPLETE_TAG => Message::BindComplete,
        CLOSE_COMPLETE_TAG => Message::CloseComplete,
        COPY_DONE_TAG => Message::CopyDone,
        EMPTY_QUERY_RESPONSE_TAG => Message::EmptyQueryResponse,
        NO_DATA_TAG => Message::NoData,
        PARSE_COMPLETE_TAG => Message::ParseComplete,
        PORTAL_SUSPENDED_TAG => Message::PortalSuspended,
        other => return Err(ProtocolError::UnknownMessageType { byte: other }),
    };
    r.finish(message_name(tag))?;
    Ok(msg)
}

#[inline]
fn parse_status(r: &mut Reader<'_>) -> Result<TransactionStatus, ProtocolError> {
    match r.u8("ReadyForQuery.status")? {
        b'I' => Ok(TransactionStatus::Idle),
        b'T' => Ok(TransactionStatus::InTransaction),
        b'E' => Ok(TransactionStatus::Failed),
        other => Err(ProtocolError::InvalidValue {
            field: "ReadyForQuery.status",
            value: i64::from(other),
        }),
    }
}

fn parse_backend_key<'a, B>(
    r: &mut Reader<'a>,
    map: &impl Fn(&'a [u8]) -> B,
) -> Result<Message<B>, ProtocolError> {
    let process_id = r.i32("BackendKeyData.process_id")?;
    let key = r.rest();
    if key.len() < 4 {
        return Err(ProtocolError::MissingData("BackendKeyData.secret_key"));
    }
    if key.len() > MAX_CANCEL_KEY_LEN {
        return Err(ProtocolError::TooMany {
            what: "BackendKeyData.secret_key bytes",
            count: i64::try_from(key.len()).unwrap_or(i64::MAX),
            max: MAX_CANCEL_KEY_LEN,
        });
    }
    r.take(key.len(), "BackendKeyData.secret_key")?;
    Ok(Message::BackendKeyData {
        process_id,
        secret_key: map(key),
    })
}

fn parse_authentication<'a, B>(
    mut r: Reader<'a>,
    map: impl Fn(&'a [u8]) -> B,
) -> Result<Authentication<B>, ProtocolError> {
    let code = r.i32("Authentication.code")?;
    let auth = match code {
        0 => Authentication::Ok,
        2 => Authentication::KerberosV5,
        3 => Authentication::CleartextPassword,
        5 => Authentication::Md5Password {
            salt: r.array("AuthenticationMD5Password.salt")?,
        },
        7 => Authentication::Gss,
        8 => {
            let data = r.rest();
            r.take(data.len(), "AuthenticationGSSContinue.data")?;
            Authentication::GssContinue(map(data))
        }
        9 => Authentication::Sspi,
        10 => {
            let start = r.rest();
            let mut count = 0usize;
            while !r.cstr("AuthenticationSASL.mechanism")?.is_empty() {
                count += 1;
                if count > MAX_SASL_MECHANISMS {
                    return Err(ProtocolError::TooMany {
                        what: "SASL mechanisms",
                        count: i64::try_from(count).unwrap_or(i64::MAX),
                        max: MAX_SASL_MECHANISMS,
                    });
                }
            }
            let used = start.len() - r.remaining();
            let raw = start
                .get(..used)
                .ok_or(ProtocolError::MissingData("AuthenticationSASL"))?;
            Authentication::Sasl(SaslMechanisms { raw: map(raw) })
        }
        11 | 12 => {
            let data = r.rest();
            r.take(data.len(), "AuthenticationSASL.data")?;
            if code == 11 {
                Authentication::SaslContinue(map(data))
            } else {
                Authentication::SaslFinal(map(data))
            }
        }
        other => {
            return Err(ProtocolError::InvalidValue {
                field: "Authentication.code",
                value: i64::from(other),
            });
        }
    };
    r.finish("Authentication")?;
    Ok(auth)
}

fn parse_copy_response<'a, B>(
    r: &mut Reader<'a>,
    map: &impl Fn(&'a [u8]) -> B,
) -> Result<CopyResponse<B>, ProtocolError> {
    let binary = match r.u8("CopyResponse.format")? {
        0 => false,
        1 => true,
        other => {
            return Err(ProtocolError::InvalidValue {
                field: "CopyResponse.format",
                value: i64::from(other),
            });
        }
    };
    let count = r.count16("CopyResponse.column_count")?;
    let formats = r.take(count * 2, "CopyResponse.column_format")?;
    for pair in formats.chunks_exact(2) {
        if pair != [0, 0] && pair != [0, 1] {
            return Err(ProtocolError::InvalidValue {
                field: "CopyResponse.column_format",
                value: i64::from(
                    pair.first_chunk::<2>()
                        .map_or(0, |a| i16::from_be_bytes(*a)),
                ),
            });
        }
    }
    Ok(CopyResponse {
        binary,
        column_count: u16::try_from(count).unwrap_or(u16::MAX),
        formats: map(formats),
    })
}

fn parse_negotiate<'a, B>(
    r: &mut Reader<'a>,
    map: &impl Fn(&'a [u8]) -> B,
) -> Result<NegotiateProtocolVersion<B>, ProtocolError> {
    let newest_minor = r.i32("NegotiateProtocolVersion.newest_minor")?;
    let n = r.i32("NegotiateProtocolVersion.option_count")?;
    let count = usize::try_from(n).map_err(|_| ProtocolError::InvalidValue {
        field: "NegotiateProtocolVersion.option_count",
        value: i64::from(n),
    })?;
    if count > MAX_PROTOCOL_OPTIONS {
        return Err(ProtocolError::TooMany {
            what: "protocol options",
            count: i64::from(n),
            max: MAX_PROTOCOL_OPTIONS,
        });
    }
    // Each option takes at least its NUL: refuse a count the body cannot hold
    // before walking it.
    if count > r.remaining() {
        return Err(ProtocolError::MissingData(
            "NegotiateProtocolVersion.option",
        ));
    }
    let start = r.rest();
    for _ in 0..count {
        r.cstr("NegotiateProtocolVersion.option")?;
    }
    let used = start.len() - r.remaining();
    let options = start.get(..used).ok_or(ProtocolError::MissingData(
        "NegotiateProtocolVersion.option",
    ))?;
    Ok(NegotiateProtocolVersion {
        newest_minor,
        option_count: count,
        options: map(options),
    })
}
