//! Encoding of the frontend messages we send, into a `BytesMut`.
//!
//! Every encoder is all-or-nothing: on bad input it returns an [`EncodeError`] and
//! leaves the buffer exactly as it found it, so a caller can refuse a query and
//! keep the connection usable. Lengths are back-filled once the body is written.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::limits::{MAX_COPY_FAIL_REASON_LEN, MAX_FRONTEND_BODY_LEN};

/// Protocol version 3.0 as sent in a StartupMessage: major 3 in the high 16 bits.
pub const PROTOCOL_VERSION_3_0: i32 = 0x0003_0000;
/// Protocol version 3.2 (PostgreSQL 18: cancel keys up to 256 bytes).
pub const PROTOCOL_VERSION_3_2: i32 = 0x0003_0002;

/// A protocol version a client may ask for. 3.1 never existed: PostgreSQL went
/// from 3.0 to 3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// 3.0, every server since PostgreSQL 7.4; what libpq asks for by default.
    #[default]
    V3_0,
    /// 3.2, PostgreSQL 18 and later.
    V3_2,
}

impl ProtocolVersion {
    /// The newest version this library speaks (libpq's `latest`).
    pub const LATEST: Self = Self::V3_2;

    /// The minor number (0 or 2).
    pub const fn minor(self) -> i32 {
        match self {
            Self::V3_0 => 0,
            Self::V3_2 => 2,
        }
    }

    /// The version for a code as a StartupMessage or NegotiateProtocolVersion
    /// carries it; `None` for 3.1 (which never existed), other majors and
    /// anything newer than we speak.
    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            PROTOCOL_VERSION_3_0 => Some(Self::V3_0),
            PROTOCOL_VERSION_3_2 => Some(Self::V3_2),
            _ => None,
        }
    }

    /// The code sent in a StartupMessage.
    pub const fn code(self) -> i32 {
        match self {
            Self::V3_0 => PROTOCOL_VERSION_3_0,
            Self::V3_2 => PROTOCOL_VERSION_3_2,
        }
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "3.{}", self.minor())
    }
}
/// The SSLRequest code: 1234 in the high 16 bits, 5679 in the low.
pub const SSL_REQUEST_CODE: i32 = 0x04D2_162F;
/// The CancelRequest code: 1234 in the high 16 bits, 5678 in the low.
pub const CANCEL_REQUEST_CODE: i32 = 0x04D2_162E;

/// `p`: PasswordMessage, SASLInitialResponse and SASLResponse.
pub const PASSWORD_MESSAGE_TAG: u8 = b'p';
/// `Q`: Query.
pub const QUERY_TAG: u8 = b'Q';
/// `P`: Parse.
pub const PARSE_TAG: u8 = b'P';
/// `B`: Bind.
pub const BIND_TAG: u8 = b'B';
/// `D`: Describe.
pub const DESCRIBE_TAG: u8 = b'D';
/// `E`: Execute.
pub const EXECUTE_TAG: u8 = b'E';
/// `S`: Sync.
pub const SYNC_TAG: u8 = b'S';
/// `H`: Flush.
pub const FLUSH_TAG: u8 = b'H';
/// `C`: Close.
pub const CLOSE_TAG: u8 = b'C';
/// `d`: CopyData.
pub const COPY_DATA_TAG: u8 = b'd';
/// `c`: CopyDone.
pub const COPY_DONE_TAG: u8 = b'c';
/// `f`: CopyFail.
pub const COPY_FAIL_TAG: u8 = b'f';
/// `X`: Terminate.
pub const TERMINATE_TAG: u8 = b'X';

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A prepared statement (`S`).
    Statement,
    /// A portal (`P`).
    Portal,
}

impl Target {
    const fn byte(self) -> u8 {
        match self {
            Self::Statement => b'S',
            Self::Portal => b'P',
        }
    }
}

/// StartupMessage for protocol 3.0 with `params` (`user` is required by the server).
///
/// # Errors
/// [`EncodeError::NulInString`] or [`EncodeError::EmptyParameterName`] for a bad
/// parameter; [`EncodeError::TooLong`] if the message would not fit.
pub fn startup(buf: &mut BytesMut, params: &[(&str, &str)]) -> Result<(), EncodeError> {
    startup_with_version(buf, ProtocolVersion::V3_0, params)
}

/// StartupMessage asking for protocol `version` with `params`.
///
/// # Errors
/// As [`startup`].
pub fn startup_with_version(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    params: &[(&str, &str)],
) -> Result<(), EncodeError> {
    message(buf, None, "StartupMessage", |buf| {
        buf.put_i32(version.code());
        for (name, value) in params {
            if name.is_empty() {
                return Err(EncodeError::EmptyParameterName);
            }
            put_cstr(buf, name.as_bytes(), "startup parameter name")?;
            put_cstr(buf, value.as_bytes(), "startup parameter value")?;
        }
        buf.put_u8(0);
        Ok(())
    })
}

/// SSLRequest: exactly 8 bytes, length 8 and code 80877103.
pub fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(SSL_REQUEST_CODE);
}

/// CancelRequest for the backend `process_id` with its `secret_key`.
///
/// # Errors
/// [`EncodeError::TooLong`] for a key over 256 bytes (protocol 3.2's limit).
pub fn cancel_request(
    buf: &mut BytesMut,
    process_id: i32,
    secret_key: &[u8],
) -> Result<(), EncodeError> {
    check_len(
        "CancelRequest secret key",
        secret_key.len(),
        super::limits::MAX_CANCEL_KEY_LEN,
    )?;
    message(buf, None, "CancelRequest", |buf| {
        buf.put_i32(CANCEL_REQUEST_CODE);
        buf.put_i32(process_id);
        buf.put_slice(secret_key);
        Ok(())
    })
}

/// PasswordMessage carrying a cleartext or MD5-hashed password.
///
/// # Errors
/// [`EncodeError::NulInString`] if the password contains NUL.
pub fn password(buf: &mut BytesMut, password: &[u8]) -> Result<(), EncodeError> {
    message(buf, Some(PASSWORD_MESSAGE_TAG), "PasswordMessage", |buf| {
        put_cstr(buf, password, "password")
    })
}

/// SASLInitialResponse: the chosen `mechanism` and the client-first message.
///
/// # Errors
/// [`EncodeError::NulInString`] for a NUL in the mechanism name;
/// [`EncodeError::TooLong`] if `data` does not fit.
pub fn sasl_initial_response(
    buf: &mut BytesMut,
    mechanism: &str,
    data: &[u8],
) -> Result<(), EncodeError> {
    let data_len = i32_len("SASL initial response", data.len())?;
    message(
        buf,
        Some(PASSWORD_MESSAGE_TAG),
        "SASLInitialResponse",
        |buf| {
            put_cstr(buf, mechanism.as_bytes(), "SASL mechanism")?;
            buf.put_i32(data_len);
            buf.put_slice(data);
            Ok(())
        },
    )
}

/// SASLResponse: a client message in the SASL exchange.
///
/// # Errors
/// [`EncodeError::TooLong`] if `data` does not fit.
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    check_len("SASL response", data.len(), MAX_FRONTEND_BODY_LEN)?;
    message(buf, Some(PASSWORD_MESSAGE_TAG), "SASLResponse", |buf| {
        buf.put_slice(data);
        Ok(())
    })
}

/// Query: a simple-protocol query string.
///
/// # Errors
/// [`EncodeError::NulInString`] if `sql` contains NUL; [`EncodeError::TooLong`]
/// if it does not fit a message.
pub fn query(buf: &mut BytesMut, sql: &str) -> Result<(), EncodeError> {
    check_len("query", sql.len(), MAX_FRONTEND_BODY_LEN - 1)?;
    message(buf, Some(QUERY_TAG), "Query", |buf| {
        put_cstr(buf, sql.as_bytes(), "query")
    })
}

/// Parse: prepare `sql` as statement `name` ("" = unnamed) with `param_types`
/// (0 = let the server infer).
///
/// # Errors
/// [`EncodeError::NulInString`], [`EncodeError::TooMany`] (over 65535 types) or
/// [`EncodeError::TooLong`].
pub fn parse(
    buf: &mut BytesMut,
    name: &str,
    sql: &str,
    param_types: &[u32],
) -> Result<(), EncodeError> {
    check_len("query", sql.len(), MAX_FRONTEND_BODY_LEN - 1)?;
    let count = u16_count("Parse parameter types", param_types.len())?;
    message(buf, Some(PARSE_TAG), "Parse", |buf| {
        put_cstr(buf, name.as_bytes(), "statement name")?;
        put_cstr(buf, sql.as_bytes(), "query")?;
        buf.put_u16(count);
        for oid in param_types {
            buf.put_u32(*oid);
        }
        Ok(())
    })
}

/// Bind: bind `params` (`None` = NULL) to `statement` as `portal`.
///
/// `param_formats` and `result_formats` follow the protocol: empty = all text,
/// one entry = applies to all, else one per parameter/column.
///
/// # Errors
/// [`EncodeError::NulInString`], [`EncodeError::TooMany`] or [`EncodeError::TooLong`].
pub fn bind(
    buf: &mut BytesMut,
    portal: &str,
    statement: &str,
    param_formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Result<(), EncodeError> {
    let format_count = u16_count("Bind parameter formats", param_formats.len())?;
    let param_count = u16_count("Bind parameters", params.len())?;
    let result_count = u16_count("Bind result formats", result_formats.len())?;
    message(buf, Some(BIND_TAG), "Bind", |buf| {
        put_cstr(buf, portal.as_bytes(), "portal name")?;
        put_cstr(buf, statement.as_bytes(), "statement name")?;
        buf.put_u16(format_count);
        param_formats.iter().for_each(|f| buf.put_i16(*f));
        buf.put_u16(param_count);
        for param in params {
            match param {
                None => buf.put_i32(-1),
                Some(value) => {
                    buf.put_i32(i32_len("Bind parameter", value.len())?);
                    buf.put_slice(value);
                }
            }
        }
        buf.put_u16(result_count);
        result_formats.iter().for_each(|f| buf.put_i16(*f));
        Ok(())
    })
}

/// Describe a statement or portal.
///
/// # Errors
/// [`EncodeError::NulInString`] if `name` contains NUL.
pub fn describe(buf: &mut BytesMut, target: Target, name: &str) -> Result<(), EncodeError> {
    message(buf, Some(DESCRIBE_TAG), "Describe", |buf| {
        buf.put_u8(target.byte());
        put_cstr(buf, name.as_bytes(), "describe name")
    })
}

/// Execute `portal`, returning at most `max_rows` rows (0 = all).
///
/// # Errors
/// [`EncodeError::NulInString`]; [`EncodeError::TooLong`] if `max_rows` exceeds `i32::MAX`.
pub fn execute(buf: &mut BytesMut, portal: &str, max_rows: u32) -> Result<(), EncodeError> {
    let max_rows = i32::try_from(max_rows).map_err(|_| EncodeError::TooLong {
        what: "Execute max_rows",
        len: max_rows as usize,
        max: i32::MAX as usize,
    })?;
    message(buf, Some(EXECUTE_TAG), "Execute", |buf| {
        put_cstr(buf, portal.as_bytes(), "portal name")?;
        buf.put_i32(max_rows);
        Ok(())
    })
}

/// Close a statement or portal.
///
/// # Errors
/// [`EncodeError::NulInString`] if `name` contains NUL.
pub fn close(buf: &mut BytesMut, target: Target, name: &str) -> Result<(), EncodeError> {
    message(buf, Some(CLOSE_TAG), "Close", |buf| {
        buf.put_u8(target.byte());
        put_cstr(buf, name.as_bytes(), "close name")
    })
}

/// Sync.
pub fn sync(buf: &mut BytesMut) {
    empty(buf, SYNC_TAG);
}

/// Flush.
pub fn flush(buf: &mut BytesMut) {
    empty(buf, FLUSH_TAG);
}

/// CopyData carrying `data`.
///
/// # Errors
/// [`EncodeError::TooLong`] if `data` does not fit one message; split it first.
pub fn copy_data(buf: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    copy_data_header(buf, data.len())?;
    buf.put_slice(data);
    Ok(())
}

/// Only the five header bytes of a CopyData whose `len`-byte payload the caller
/// sends separately (a vectored write that does not copy the payload).
///
/// # Errors
/// [`EncodeError::TooLong`] if `len` does not fit one message.
pub fn copy_data_header(buf: &mut BytesMut, len: usize) -> Result<(), EncodeError> {
    check_len("CopyData payload", len, MAX_FRONTEND_BODY_LEN)?;
    buf.put_u8(COPY_DATA_TAG);
    buf.put_i32(i32_len("CopyData payload", len + 4)?);
    Ok(())
}

/// CopyDone.
pub fn copy_done(buf: &mut BytesMut) {
    empty(buf, COPY_DONE_TAG);
}

/// CopyFail with `reason`. NUL bytes in `reason` are replaced by `?`, and a
/// reason over [`MAX_COPY_FAIL_REASON_LEN`] is cut at a character boundary,
/// rather than refused: the reason usually comes from an error we must report,
/// not from SQL, and the CopyFail must go out for the COPY to end.
pub fn copy_fail(buf: &mut BytesMut, reason: &str) {
    let mut end = reason.len().min(MAX_COPY_FAIL_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or("");
    let start = buf.len();
    buf.put_u8(COPY_FAIL_TAG);
    buf.put_i32(0);
    buf.extend(reason.bytes().map(|b| if b == 0 { b'?' } else { b }));
    buf.put_u8(0);
    backfill(buf, start + 1);
}

/// Terminate.
pub fn terminate(buf: &mut BytesMut) {
    empty(buf, TERMINATE_TAG);
}

fn empty(buf: &mut BytesMut, tag: u8) {
    buf.put_u8(tag);
    buf.put_i32(4);
}

/// Writes `tag` (if any), a length placeholder and the body from `body`, then the
/// length; on any error the buffer is truncated back to where it started.
fn message(
    buf: &mut BytesMut,
    tag: Option<u8>,
    what: &'static str,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    if let Some(tag) = tag {
        buf.put_u8(tag);
    }
    let len_at = buf.len();
    buf.put_i32(0);
    let result = body(buf).and_then(|()| check_len(what, buf.len() - len_at, i32::MAX as usize));
    match result {
        Ok(()) => {
            backfill(buf, len_at);
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Writes the length of everything from `len_at` on into the four bytes at `len_at`.
fn backfill(buf: &mut BytesMut, len_at: usize) {
    let len = i32::try_from(buf.len() - len_at).unwrap_or(i32::MAX);
    if let Some(slot) = buf.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

fn put_cstr(buf: &mut BytesMut, s: &[u8], what: &'static str) -> Result<(), EncodeError> {
    if let Some(offset) = memchr::memchr(0, s) {
        return Err(EncodeError::NulInString { what, offset });
    }
    buf.put_slice(s);
    buf.put_u8(0);
    Ok(())
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::TooLong { what, len, max });
    }
    Ok(())
}

fn i32_len(what: &'static str, len: usize) -> Result<i32, EncodeError> {
    i32::try_from(len).map_err(|_| EncodeError::TooLong {
        what,
        len,
        max: i32::MAX as usize,
    })
}

fn u16_count(what: &'static str, count: usize) -> Result<u16, EncodeError> {
    u16::try_from(count).map_err(|_| EncodeError::TooMany {
        what,
        count,
        max: usize::from(u16::MAX),
    })
}
