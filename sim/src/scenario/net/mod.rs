//! Scenarios over turmoil's simulated network: the real `Connection` code over
//! `SimTransport`, behind the seeded `Chop` fault layer, against the simulated
//! server of `server/pg.rs`. One file per scenario; `harness.rs` runs a
//! simulation, `reply.rs` draws the server's replies.

mod auth;
mod cancel;
mod copy_in;
mod copy_out;
mod cut;
mod harness;
mod idle_close;
mod listen;
mod pipeline;
mod query;
mod reply;
mod ssl_inject;

pub use auth::{auth, auth_with};
pub use cancel::cancel;
pub use copy_in::{copy_in, copy_in_with};
pub use copy_out::{copy_out, copy_out_with};
pub(super) use cut::copy_in_data_len;
pub use cut::{cut, cut_with};
pub use harness::with_plan;
pub use idle_close::idle_close;
pub use listen::listen;
pub use pipeline::pipeline;
pub use query::{query, query_with};
pub(super) use reply::{copy_reply, rows_reply};
pub use ssl_inject::ssl_injection;
