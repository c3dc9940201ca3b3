//! Backend message encoding, written from the protocol documentation.

/// What the server sent, kept so the client's view can be checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Text columns of type `text`, with these names.
    RowDescription(Vec<String>),
    /// Column values; `None` is NULL.
    DataRow(Vec<Option<Vec<u8>>>),
    /// The command tag.
    CommandComplete(String),
    /// A NoticeResponse with this message.
    Notice(String),
    /// A NotificationResponse.
    Notification {
        /// The notifying backend's process id.
        pid: i32,
        /// The channel name.
        channel: String,
        /// The payload.
        payload: String,
    },
    /// A ParameterStatus: name, value.
    ParameterStatus(String, String),
    /// COPY data.
    CopyData(Vec<u8>),
    /// EmptyQueryResponse.
    EmptyQuery,
}

impl Sent {
    /// Whether a client session consumes it instead of returning it.
    pub(crate) fn is_internal(&self) -> bool {
        matches!(
            self,
            Self::Notice(_) | Self::Notification { .. } | Self::ParameterStatus(..)
        )
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::RowDescription(names) => frame(out, b'T', |b| {
                b.extend_from_slice(&(names.len() as u16).to_be_bytes());
                for name in names {
                    cstr(b, name.as_bytes());
                    b.extend_from_slice(&[
                        0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
                    ]);
                }
            }),
            Self::DataRow(cols) => frame(out, b'D', |b| {
                b.extend_from_slice(&(cols.len() as u16).to_be_bytes());
                for col in cols {
                    match col {
                        None => b.extend_from_slice(&[0xff; 4]),
                        Some(v) => {
                            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                            b.extend_from_slice(v);
                        }
                    }
                }
            }),
            Self::CommandComplete(tag) => frame(out, b'C', |b| cstr(b, tag.as_bytes())),
            Self::Notice(text) => frame(out, b'N', |b| {
                for (code, value) in [
                    (b'S', "NOTICE"),
                    (b'V', "NOTICE"),
                    (b'C', "00000"),
                    (b'M', text.as_str()),
                ] {
                    b.push(code);
                    cstr(b, value.as_bytes());
                }
                b.push(0);
            }),
            Self::Notification {
                pid,
                channel,
                payload,
            } => frame(out, b'A', |b| {
                b.extend_from_slice(&pid.to_be_bytes());
                cstr(b, channel.as_bytes());
                cstr(b, payload.as_bytes());
            }),
            Self::ParameterStatus(name, value) => frame(out, b'S', |b| {
                cstr(b, name.as_bytes());
                cstr(b, value.as_bytes());
            }),
            Self::CopyData(data) => frame(out, b'd', |b| b.extend_from_slice(data)),
            Self::EmptyQuery => frame(out, b'I', |_| {}),
        }
    }
}

pub(crate) fn ready_for_query(out: &mut Vec<u8>, status: u8) {
    frame(out, b'Z', |b| b.push(status));
}

pub(crate) fn authentication_ok(out: &mut Vec<u8>) {
    authentication(out, 0, &[]);
}

/// AuthenticationRequest `code` with its data.
pub(crate) fn authentication(out: &mut Vec<u8>, code: i32, data: &[u8]) {
    frame(out, b'R', |b| {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(data);
    });
}

/// An ErrorResponse with `severity`, `code` and `message`.
pub(crate) fn error_response(out: &mut Vec<u8>, severity: &str, code: &str, message: &str) {
    frame(out, b'E', |b| {
        for (tag, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ] {
            b.push(tag);
            cstr(b, value.as_bytes());
        }
        b.push(0);
    });
}

fn cstr(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(s);
    b.push(0);
}

fn frame(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}
