//! The choices a network scenario makes (TLS or not, the authentication
//! method, where the connection ends, how many messages or rows), as values.
//! The CLI runner draws them from the seed (`from_seed`, the same draws in the
//! same order as before they were values, so a seed replays what it always
//! did). Property tests generate them instead: shrinking a failing seed
//! re-draws every choice and lands on an unrelated case, while shrinking a
//! variant keeps what failed and only makes it smaller.
//!
//! The seed still picks what is left: message contents, the link's latency
//! and holds, and (outside property tests) the fault plan.

use pg_transport::CopyInOptions;

use super::net::{copy_in_data_len, copy_reply, rows_reply};
use crate::chop::End;
use crate::seed::{Rng, Seed};
use crate::server::auth::{Auth, Twist};
use crate::server::encode::Sent;
use crate::server::pg::Ssl;

/// Each scenario draws from the seed xored with its own salt, so two
/// scenarios run on one seed do not make the same choices.
pub(super) const QUERY_SALT: u64 = 0x51;
const COPY_IN_SALT: u64 = 0xC0;
pub(super) const COPY_OUT_SALT: u64 = 0x0C;
const AUTH_SALT: u64 = 0xA7;
pub(super) const CUT_SALT: u64 = 0xE0;

/// `sslmode` and `channel_binding` values, in the order seeds index them.
pub const MODES: [&str; 3] = ["disable", "prefer", "require"];

/// `net::query`: a reply of `messages` rows, notices, notifications and
/// ParameterStatus after the RowDescription.
#[derive(Debug, Clone, Copy)]
pub struct QueryVariant {
    /// The server accepts SSL (TLS).
    pub tls: bool,
    /// Messages after the RowDescription.
    pub messages: usize,
}

impl QueryVariant {
    /// The choices `seed` makes (the CLI runner's).
    pub fn from_seed(seed: Seed) -> Self {
        let mut rng = Rng::new(Seed(seed.0 ^ QUERY_SALT));
        let messages = rows_reply(&mut rng, None).len() - 1;
        let tls = rng.one_in(3);
        Self { tls, messages }
    }
}

/// `net::copy_in`: what the client sends and when the server aborts.
#[derive(Debug, Clone, Copy)]
pub struct CopyInVariant {
    /// The server aborts once this many bytes of COPY data arrived (maybe
    /// beyond the data: then the COPY completes).
    pub abort_at: Option<usize>,
    /// Rows the client sends.
    pub total_rows: u64,
    /// Rows in each chunk the source hands over.
    pub chunk_rows: u64,
    /// The server's 08P01 + ReadyForQuery follow its abort.
    pub stray: bool,
    /// `CopyInOptions::batch_size`.
    pub batch_size: usize,
}

impl CopyInVariant {
    /// The choices `seed` makes (the CLI runner's).
    pub fn from_seed(seed: Seed) -> Self {
        let mut rng = Rng::new(Seed(seed.0 ^ COPY_IN_SALT));
        // About 50-250 KB of COPY data: enough for several batches, few
        // enough simulated segments to run thousands of seeds.
        let abort_at = (!rng.one_in(4)).then(|| 1 + rng.below(150_000));
        let total_rows = 2_000 + rng.below(8_000) as u64;
        let chunk_rows = 1 + rng.below(500) as u64;
        let stray = rng.one_in(3);
        // The default batch, or small ones (many batches, so "one batch" is a
        // tight bound on what may follow the server's error).
        let batch_size = match rng.below(3) {
            0 => CopyInOptions::default().batch_size,
            1 => 1 + rng.below(16 * 1024),
            _ => 1 + rng.below(2 * 1024),
        };
        Self {
            abort_at,
            total_rows,
            chunk_rows,
            stray,
            batch_size,
        }
    }
}

/// How `net::copy_out` takes the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutForm {
    /// `copy_out`, a callback per CopyData.
    Callback,
    /// `copy_out_joined`.
    Joined,
    /// `copy_out_stream`.
    Stream,
}

/// `net::copy_out`: `messages` CopyData, notices and notifications.
#[derive(Debug, Clone, Copy)]
pub struct CopyOutVariant {
    /// The server accepts SSL (TLS).
    pub tls: bool,
    /// How the client takes the data.
    pub form: CopyOutForm,
    /// CopyData, notices and notifications sent.
    pub messages: usize,
}

impl CopyOutVariant {
    /// The choices `seed` makes (the CLI runner's).
    pub fn from_seed(seed: Seed) -> Self {
        let mut rng = Rng::new(Seed(seed.0 ^ COPY_OUT_SALT));
        let messages = copy_reply(&mut rng, None).len();
        let tls = rng.one_in(3);
        let form = [
            CopyOutForm::Callback,
            CopyOutForm::Joined,
            CopyOutForm::Stream,
        ][rng.below(3)];
        Self {
            tls,
            form,
            messages,
        }
    }
}

/// `net::auth`: the server's answer to SSLRequest and its authentication,
/// the client's modes and password.
#[derive(Debug, Clone, Copy)]
pub struct AuthVariant {
    /// `Accept` (TLS), `Refuse`, or `Error` (a server too old for
    /// SSLRequest); never `Inject`, which is `net::ssl_injection`'s.
    pub ssl: Ssl,
    /// The client's `sslmode`, one of [`MODES`].
    pub sslmode: &'static str,
    /// The client's `channel_binding`, one of [`MODES`].
    pub binding: &'static str,
    /// The server's authentication.
    pub auth: Auth,
    /// The client gives the right password.
    pub right_password: bool,
}

impl AuthVariant {
    /// The choices `seed` makes (the CLI runner's).
    pub fn from_seed(seed: Seed) -> Self {
        let mut rng = Rng::new(Seed(seed.0 ^ AUTH_SALT));
        let server_tls = rng.one_in(2);
        let sslmode = MODES[rng.below(3)];
        let binding = MODES[rng.below(3)];
        // The forged server signature is the twist a skipped check lets
        // through silently (every other one fails loudly anyway): three
        // seeds in ten.
        let auth = match rng.below(10) {
            0 => Auth::Trust,
            1 => Auth::Cleartext,
            2 => Auth::Md5,
            3 => Auth::Scram(Twist::OkWithoutFinal),
            4..=6 => Auth::Scram(Twist::BadSignature),
            _ => Auth::Scram(Twist::None),
        };
        // Rarer departures from the exchange's order (drawn last: the draws
        // above, and so every earlier seed's combination, stay as they were).
        let auth = match (auth, rng.below(6)) {
            (Auth::Scram(Twist::None), 0) => Auth::Scram(Twist::FinalFirst),
            (Auth::Scram(Twist::None), 1) => Auth::Scram(Twist::ContinueTwice),
            (auth, _) => auth,
        };
        // A wrong password ends a forged server's exchange before its signature.
        let right_password = !rng.one_in(if auth == Auth::Scram(Twist::BadSignature) {
            10
        } else {
            4
        });
        // A server too old for SSLRequest answers it with an error.
        let ssl = match (server_tls, !server_tls && rng.one_in(5)) {
            (true, _) => Ssl::Accept,
            (false, true) => Ssl::Error,
            (false, false) => Ssl::Refuse,
        };
        Self {
            ssl,
            sslmode,
            binding,
            auth,
            right_password,
        }
    }
}

/// `net::cut`: what runs, and where the connection ends.
#[derive(Debug, Clone, Copy)]
pub enum CutVariant {
    /// A query reply (`copy: false`) or COPY OUT of `messages` messages; the
    /// connection ends per `end` (a write end is always a reset).
    Reply {
        /// COPY OUT rather than a query.
        copy: bool,
        /// Messages in the reply (after the RowDescription of a query).
        messages: usize,
        /// Where the connection ends.
        end: End,
    },
    /// COPY IN of `total_rows` rows in chunks of `chunk_rows`, reset after
    /// `at` bytes the client writes (startup and the query included).
    CopyIn {
        /// Rows the client sends.
        total_rows: u64,
        /// Rows in each chunk the source hands over.
        chunk_rows: u64,
        /// Bytes written before the reset.
        at: usize,
    },
}

impl CutVariant {
    /// The choices `seed` makes (the CLI runner's).
    pub fn from_seed(seed: Seed) -> Self {
        let mut rng = Rng::new(Seed(seed.0 ^ CUT_SALT));
        if rng.one_in(3) {
            let total_rows = 1 + rng.below(600) as u64;
            // Startup and the query take about 70 bytes; then the data, framed.
            let at = rng.below(copy_in_data_len(total_rows) + 200);
            let chunk_rows = 1 + rng.below(50) as u64;
            return Self::CopyIn {
                total_rows,
                chunk_rows,
                at,
            };
        }
        let copy = rng.one_in(2);
        let sent = if copy {
            copy_reply(&mut rng, None)
        } else {
            rows_reply(&mut rng, None)
        };
        // rows_reply's RowDescription is not one of its drawn messages.
        let messages = sent.len() - usize::from(!copy);
        let mut encoded = Vec::new();
        sent.iter().for_each(|m: &Sent| m.encode(&mut encoded));
        let reads = !rng.one_in(4);
        // Startup takes about 60 bytes each way; the reply follows.
        let at = if reads {
            rng.below(encoded.len() + 160)
        } else {
            rng.below(120)
        };
        let end = End {
            reads,
            at,
            reset: !reads || rng.one_in(2),
        };
        Self::Reply {
            copy,
            messages,
            end,
        }
    }
}
