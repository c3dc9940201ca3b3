//! Scenarios: each builds a server conversation from the seed, delivers it to a
//! client `Session` in seeded chunks (with seeded faults), and checks what the
//! client saw against what the server sent.

pub mod net;
mod stream;
pub mod variant;

use crate::seed::Seed;

/// What one run of one scenario produced.
#[derive(Debug)]
pub struct Outcome {
    /// Faults injected (corruptions, EOFs, FIN/RST, aborts, forged auth, wrong
    /// passwords, cancellations).
    pub faults: u32,
    /// Reads and writes the fault layer split (delivered in pieces).
    pub splits: u32,
    /// Every event, for the same-seed-same-transcript check.
    pub transcript: Vec<String>,
    /// `Err` names the first invariant broken.
    pub result: Result<(), String>,
}

/// A named scenario.
pub struct Scenario {
    /// What `--scenario` and replay lines call it.
    pub name: &'static str,
    /// One line for `--list`: what it does and what it checks.
    pub about: &'static str,
    /// Runs it on one seed.
    pub run: fn(Seed) -> Outcome,
}

/// Every scenario, in the order the runner cycles through them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "query-stream",
        about: "rows, notices, notifications, ParameterStatus; reads cut at seeded sizes down to 1 byte",
        run: stream::query_stream,
    },
    Scenario {
        name: "copy-out",
        about: "CopyData as owned Bytes with notices/notifications between; seeded cuts",
        run: stream::copy_out,
    },
    Scenario {
        name: "corrupt-frame",
        about: "one header corrupted (bad tag, length < 4, over the cap): protocol error, Closed, no growth",
        run: stream::corrupt_frame,
    },
    Scenario {
        name: "net-query",
        about: "turmoil: a query reply with notices/notifications/ParameterStatus, chopped reads and writes",
        run: net::query,
    },
    Scenario {
        name: "net-copy-in",
        about: "turmoil: COPY IN aborted by the server at a seeded byte (or not): no CopyDone after abort, rows all or none",
        run: net::copy_in,
    },
    Scenario {
        name: "net-copy-out",
        about: "turmoil: COPY OUT with notifications between CopyData, chopped",
        run: net::copy_out,
    },
    Scenario {
        name: "net-ssl-inject",
        about: "turmoil: S followed by plaintext (same or later segment): refused, no TLS byte sent",
        run: net::ssl_injection,
    },
    Scenario {
        name: "net-auth",
        about: "turmoil: SSL refused or TLS (rustls), trust/cleartext/MD5/SCRAM(-PLUS), wrong passwords, channel_binding, SCRAM servers that skip or forge their proof",
        run: net::auth,
    },
    Scenario {
        name: "net-cut",
        about: "turmoil: FIN or RST at a seeded byte of what the client reads or writes: right result, or Closed/Io and never reused",
        run: net::cut,
    },
    Scenario {
        name: "net-listen",
        about: "turmoil: notifications behind a ReadyForQuery in the same segment, then while idle; waits with short timeouts: all arrive, in order, once",
        run: net::listen,
    },
    Scenario {
        name: "net-cancel",
        about: "turmoil: a query dropped at a seeded instant: Closed and never reused, or complete and correct",
        run: net::cancel,
    },
    Scenario {
        name: "net-idle-close",
        about: "turmoil: the server closes an idle connection (FIN, with or without FATAL): probe sees it, next operation fails, Closed",
        run: net::idle_close,
    },
    Scenario {
        name: "eof-mid-stream",
        about: "server stream ends at a seeded byte: only complete messages seen, then Closed",
        run: stream::eof_mid_stream,
    },
    Scenario {
        name: "net-pipeline",
        about: "turmoil: extended-protocol queries pipelined, the server's error at a seeded message or the Sync: it fails its request, the rest skipped, no hang, Ready",
        run: net::pipeline,
    },
];

/// Finds a scenario by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}
