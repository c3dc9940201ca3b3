//! The sans-IO core against SCENARIOS.md groups A (parser), B (next_message),
//! C/D (buffer and state, where no socket is needed) and E (notifications).
//! Each test names its scenario number.

#[path = "../support/mod.rs"]
mod support;

mod buffer;
mod builder;
mod config;
mod copy;
mod errors;
mod next_message;
mod notifications;
mod options;
mod parser;
mod pipeline;
mod query;
mod versions;
