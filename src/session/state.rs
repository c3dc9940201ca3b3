//! The connection state machine, as one flat table.
//!
//! ```text
//!  Connecting --StartupSent--> Authenticating --ReadyForQuery--> Ready
//!                                                                 |  ^
//!                                                     RequestSent |  | ReadyForQuery
//!                                                                 v  |
//!          CopyIn <--CopyInResponse-- Busy --CopyOutResponse--> CopyOut
//!            |                        ^  ^                          |
//!            +--------CopyEnded-------+  +---------CopyEnded--------+
//!  (CopyIn and CopyOut also go straight to Ready on ReadyForQuery.)
//!
//!  any --Close--> Closed; Closed is sticky: every event leaves it Closed.
//! ```

use std::fmt;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Dialling, negotiating TLS; nothing sent to PostgreSQL yet.
    Connecting,
    /// StartupMessage sent; authenticating and waiting for the first ReadyForQuery.
    Authenticating,
    /// Idle: a new operation may start.
    Ready,
    /// An operation is in flight.
    Busy,
    /// The server is receiving COPY data from us.
    CopyIn,
    /// The server is sending COPY data to us.
    CopyOut,
    /// Unusable: closed by either side, or the byte stream can no longer be trusted.
    Closed,
}

/// What moves the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// We sent the StartupMessage.
    StartupSent,
    /// The server sent ReadyForQuery.
    ReadyForQuery,
    /// We queued a request (query, COPY, extended-protocol batch).
    RequestSent,
    /// The server sent CopyInResponse.
    CopyInResponse,
    /// The server sent CopyOutResponse.
    CopyOutResponse,
    /// The COPY sub-protocol ended (CopyDone from the server, CommandComplete or ErrorResponse).
    CopyEnded,
    /// The connection is closed or its stream is no longer trusted.
    Close,
}

/// An event that is not allowed in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    /// The state the machine was in.
    pub state: State,
    /// The event that arrived.
    pub event: Event,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not expected in state {:?}",
            self.event, self.state
        )
    }
}

impl State {
    /// Every state, for exhaustive tests and tables.
    pub const ALL: [Self; 7] = [
        Self::Connecting,
        Self::Authenticating,
        Self::Ready,
        Self::Busy,
        Self::CopyIn,
        Self::CopyOut,
        Self::Closed,
    ];

    /// The state after `event`.
    ///
    /// # Errors
    /// [`InvalidTransition`] if the event cannot happen in this state; for an
    /// event from the server that means the server and we disagree about the
    /// conversation, and the caller closes the connection.
    pub fn on(self, event: Event) -> Result<Self, InvalidTransition> {
        use Event as E;
        match (self, event) {
            (Self::Closed, _) | (_, E::Close) => Ok(Self::Closed),
            (Self::Connecting, E::StartupSent) => Ok(Self::Authenticating),
            (
                Self::Authenticating | Self::Busy | Self::CopyIn | Self::CopyOut,
                E::ReadyForQuery,
            ) => Ok(Self::Ready),
            (Self::Ready, E::RequestSent) => Ok(Self::Busy),
            (Self::Busy, E::CopyInResponse) => Ok(Self::CopyIn),
            (Self::Busy, E::CopyOutResponse) => Ok(Self::CopyOut),
            (Self::CopyIn | Self::CopyOut, E::CopyEnded) => Ok(Self::Busy),
            (state, event) => Err(InvalidTransition { state, event }),
        }
    }
}

impl Event {
    /// Every event, for exhaustive tests and tables.
    pub const ALL: [Self; 7] = [
        Self::StartupSent,
        Self::ReadyForQuery,
        Self::RequestSent,
        Self::CopyInResponse,
        Self::CopyOutResponse,
        Self::CopyEnded,
        Self::Close,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, rendered. A change to the machine shows up here as a diff.
    const GOLDEN: &str = "\
Connecting      StartupSent->Authenticating ReadyForQuery->! RequestSent->! CopyInResponse->! CopyOutResponse->! CopyEnded->! Close->Closed
Authenticating  StartupSent->! ReadyForQuery->Ready RequestSent->! CopyInResponse->! CopyOutResponse->! CopyEnded->! Close->Closed
Ready           StartupSent->! ReadyForQuery->! RequestSent->Busy CopyInResponse->! CopyOutResponse->! CopyEnded->! Close->Closed
Busy            StartupSent->! ReadyForQuery->Ready RequestSent->! CopyInResponse->CopyIn CopyOutResponse->CopyOut CopyEnded->! Close->Closed
CopyIn          StartupSent->! ReadyForQuery->Ready RequestSent->! CopyInResponse->! CopyOutResponse->! CopyEnded->Busy Close->Closed
CopyOut         StartupSent->! ReadyForQuery->Ready RequestSent->! CopyInResponse->! CopyOutResponse->! CopyEnded->Busy Close->Closed
Closed          StartupSent->Closed ReadyForQuery->Closed RequestSent->Closed CopyInResponse->Closed CopyOutResponse->Closed CopyEnded->Closed Close->Closed
";

    #[test]
    fn transition_table_matches_golden() {
        let mut out = String::new();
        for state in State::ALL {
            out.push_str(&format!("{:<15}", format!("{state:?}")));
            let cells: Vec<String> = Event::ALL
                .iter()
                .map(|&event| match state.on(event) {
                    Ok(next) => format!("{event:?}->{next:?}"),
                    Err(_) => format!("{event:?}->!"),
                })
                .collect();
            out.push(' ');
            out.push_str(&cells.join(" "));
            out.push('\n');
        }
        assert_eq!(out, GOLDEN);
    }
}
