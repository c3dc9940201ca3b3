//! ErrorResponse and NoticeResponse fields, SQLSTATE codes, and [`DbError`], which
//! prints the way psql does.

use std::fmt;

use super::error::ProtocolError;
use super::limits::MAX_ERROR_FIELDS;
use super::reader::Reader;

/// The raw fields of an ErrorResponse or NoticeResponse, validated at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<B> {
    /// `(code byte, NUL-terminated value)*` then a final 0.
    raw: B,
}

impl<B> Fields<B> {
    pub(crate) fn parse<'a>(
        body: &'a [u8],
        message: &'static str,
        map: impl Fn(&'a [u8]) -> B,
    ) -> Result<Self, ProtocolError> {
        if body.is_empty() {
            return Err(ProtocolError::EmptyBody(message));
        }
        let mut r = Reader::new(body);
        let mut count = 0usize;
        while r.u8("ErrorResponse.field_type")? != 0 {
            count += 1;
            if count > MAX_ERROR_FIELDS {
                return Err(ProtocolError::TooMany {
                    what: "error fields",
                    count: i64::try_from(count).unwrap_or(i64::MAX),
                    max: MAX_ERROR_FIELDS,
                });
            }
            r.cstr("ErrorResponse.field_value")?;
        }
        r.finish(message)?;
        Ok(Self { raw: map(body) })
    }
}

impl<B: AsRef<[u8]>> Fields<B> {
    /// `(field type, value)` pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        let mut r = Reader::new(self.raw.as_ref());
        std::iter::from_fn(move || match r.u8("field_type") {
            Ok(0) | Err(_) => None,
            Ok(code) => r.cstr("field_value").ok().map(|v| (code, v)),
        })
    }

    /// Decodes the fields into an owned [`DbError`].
    pub fn to_db_error(&self) -> DbError {
        DbError::from_fields(self.iter())
    }
}

/// A five-character SQLSTATE code.
///
/// Every code PostgreSQL 14 to 18 define is a constant here (`SqlState::UNIQUE_VIOLATION`
/// is `23505`), generated from the servers' `errcodes.txt` into `sqlstate_codes.rs`;
/// [`name`](Self::name) gives a code's condition name. A code the server sends that is
/// not among them (a newer server's, an extension's) is kept as it came.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SqlState(
    /// The five ASCII characters; `pub(super)` so the generated constants can build it.
    pub(super) [u8; 5],
);

impl SqlState {
    /// Builds a code from its five characters; `None` if `code` is not five bytes.
    pub fn from_code(code: &[u8]) -> Option<Self> {
        code.try_into().ok().map(Self)
    }

    /// The code as text, e.g. `"23505"`.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("?????")
    }

    /// The two-character class, e.g. `"23"` (integrity constraint violation).
    pub fn class(&self) -> &str {
        self.code().get(..2).unwrap_or("??")
    }

    /// The condition name PostgreSQL gives this code (the name PL/pgSQL's `EXCEPTION WHEN`
    /// takes), e.g. `Some("unique_violation")` for `23505`; `None` for a code that none of
    /// PostgreSQL 14 to 18 defines.
    pub fn name(&self) -> Option<&'static str> {
        let names = super::sqlstate_codes::NAMES;
        let found = names.binary_search_by(|(code, _)| code.cmp(self)).ok()?;
        names.get(found).map(|&(_, name)| name)
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.code())
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An error or notice reported by the server, with every standard field.
///
/// `Display` prints it as psql does at default verbosity: `ERROR:  message`, then
/// `DETAIL:`, `HINT:`, `QUERY:`/`CONTEXT:` lines when present. [`DbError::render`]
/// adds psql's `LINE n:` excerpt with a caret when given the query text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DbError {
    /// `S`: localized severity (ERROR, FATAL, PANIC, WARNING, NOTICE, DEBUG, INFO, LOG).
    pub severity: String,
    /// `V`: severity, never localized (PostgreSQL 9.6+).
    pub severity_nonlocalized: Option<String>,
    /// `C`: the SQLSTATE code.
    pub code: SqlState,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
    /// `P`: 1-based character position in the query string.
    pub position: Option<u32>,
    /// `p`: position in an internally generated query.
    pub internal_position: Option<u32>,
    /// `q`: the internally generated query.
    pub internal_query: Option<String>,
    /// `W`: context (call stack).
    pub where_: Option<String>,
    /// `s`: schema name.
    pub schema: Option<String>,
    /// `t`: table name.
    pub table: Option<String>,
    /// `c`: column name.
    pub column: Option<String>,
    /// `d`: data type name.
    pub datatype: Option<String>,
    /// `n`: constraint name.
    pub constraint: Option<String>,
    /// `F`: source file.
    pub file: Option<String>,
    /// `L`: source line.
    pub line: Option<u32>,
    /// `R`: source routine.
    pub routine: Option<String>,
}

impl DbError {
    /// Builds a `DbError` from `(field type, value)` pairs; unknown types are ignored
    /// (the protocol says clients must), non-UTF-8 bytes are replaced.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (u8, &'a [u8])>) -> Self {
        let mut e = Self::default();
        for (code, value) in fields {
            let text = || String::from_utf8_lossy(value).into_owned();
            let number = || std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            match code {
                b'S' => e.severity = text(),
                b'V' => e.severity_nonlocalized = Some(text()),
                b'C' => e.code = SqlState::from_code(value).unwrap_or_default(),
                b'M' => e.message = text(),
                b'D' => e.detail = Some(text()),
                b'H' => e.hint = Some(text()),
                b'P' => e.position = number(),
                b'p' => e.internal_position = number(),
                b'q' => e.internal_query = Some(text()),
                b'W' => e.where_ = Some(text()),
                b's' => e.schema = Some(text()),
                b't' => e.table = Some(text()),
                b'c' => e.column = Some(text()),
                b'd' => e.datatype = Some(text()),
                b'n' => e.constraint = Some(text()),
                b'F' => e.file = Some(text()),
                b'L' => e.line = number(),
                b'R' => e.routine = Some(text()),
                _ => {}
            }
        }
        e
    }

    /// The severity to act on: the non-localized one when the server sent it.
    pub fn severity_code(&self) -> &str {
        self.severity_nonlocalized
            .as_deref()
            .unwrap_or(&self.severity)
    }

    /// Renders like psql, with the `LINE n:` excerpt and caret that psql prints
    /// when the error carries a position into `query`.
    pub fn render(&self, query: &str) -> String {
        let mut out = format!("{}:  {}", self.severity, self.message);
        if let Some(excerpt) = self.position.and_then(|p| line_excerpt(query, p)) {
            out.push('\n');
            out.push_str(&excerpt);
        }
        self.write_details(&mut out);
        out
    }

    fn write_details(&self, out: &mut String) {
        let lines = [
            ("DETAIL", &self.detail),
            ("HINT", &self.hint),
            ("QUERY", &self.internal_query),
            ("CONTEXT", &self.where_),
        ];
        for (label, value) in lines {
            if let Some(v) = value {
                out.push_str(&format!("\n{label}:  {v}"));
            }
        }
    }
}

/// psql's `LINE n: text` plus a caret under the 1-based character `position`.
fn line_excerpt(query: &str, position: u32) -> Option<String> {
    let target = usize::try_from(position).ok()?.checked_sub(1)?;
    let mut seen = 0usize;
    for (number, line) in query.split('\n').enumerate() {
        let chars = line.chars().count();
        if target <= seen + chars {
            let prefix = format!("LINE {}: ", number + 1);
            let pad = prefix.chars().count() + (target - seen);
            return Some(format!("{prefix}{line}\n{:pad$}^", ""));
        }
        seen += chars + 1;
    }
    None
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("{}:  {}", self.severity, self.message);
        if let Some(p) = self.position {
            out.push_str(&format!(" (at character {p})"));
        }
        self.write_details(&mut out);
        f.write_str(&out)
    }
}

impl std::error::Error for DbError {}
