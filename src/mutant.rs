//! The planted-bug switch (the simulation's self-test, `docs/testing.md`): a
//! leaf that depends on nothing, so every layer may carry a hook without
//! breaking the dependency rule. Re-exported through `internal`.

/// Planted bugs the simulation must find (its self-test). They exist only with
/// the private `__mutants` feature, and even then stay off until switched on
/// with `set_mutant`; without the feature, [`mutant`] is a constant `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mutant {
    /// No planted bug.
    None = 0,
    /// A NotificationResponse is dispatched but the read position is not moved
    /// past it.
    NotificationNoAdvance = 1,
    /// Bytes already waiting after the server's `S` are not refused.
    AcceptBytesAfterS = 2,
    /// CopyDone is sent after the server aborted a COPY IN.
    CopyDoneAfterAbort = 3,
    /// A protocol error does not close the session, so it can be reused.
    ReuseAfterProtocolError = 4,
    /// The COPY IN write loop does not watch for the server's error while it
    /// writes (only the last look before CopyDone remains).
    CopyInIgnoresWatch = 5,
    /// A backend header whose length field is below 4 is accepted.
    HeaderLenUnder4 = 6,
    /// The SCRAM server signature (server-final `v=`) is not checked.
    ScramSkipsServerSignature = 7,
    /// After an abort, the COPY IN frame already partly written is dropped
    /// instead of finished.
    CopyInDropsStartedFrame = 8,
    /// `RecvBuf::compact` forgets to move the unread bytes to the front.
    CompactSkipsMove = 9,
    /// `Session::next_copy_data_joined` joins past a message that is not
    /// CopyData.
    JoinedPastNonCopyData = 10,
}

impl Mutant {
    /// Every planted bug, with the name the simulation runner takes.
    pub const ALL: [(&'static str, Self); 10] = [
        ("notification-no-advance", Self::NotificationNoAdvance),
        ("accept-bytes-after-s", Self::AcceptBytesAfterS),
        ("copy-done-after-abort", Self::CopyDoneAfterAbort),
        ("reuse-after-protocol-error", Self::ReuseAfterProtocolError),
        ("copy-in-ignores-watch", Self::CopyInIgnoresWatch),
        ("header-len-under-4", Self::HeaderLenUnder4),
        (
            "scram-skips-server-signature",
            Self::ScramSkipsServerSignature,
        ),
        ("copy-in-drops-started-frame", Self::CopyInDropsStartedFrame),
        ("compact-skips-move", Self::CompactSkipsMove),
        ("joined-past-non-copy-data", Self::JoinedPastNonCopyData),
    ];
}

#[cfg(feature = "__mutants")]
static ACTIVE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Switches a planted bug on (process-wide). Needs the `__mutants` feature.
#[cfg(feature = "__mutants")]
pub fn set_mutant(m: Mutant) {
    ACTIVE.store(m as u8, std::sync::atomic::Ordering::SeqCst);
}

/// Whether the planted bug `m` is on.
#[cfg(feature = "__mutants")]
#[inline]
pub fn mutant(m: Mutant) -> bool {
    m != Mutant::None && ACTIVE.load(std::sync::atomic::Ordering::Relaxed) == m as u8
}

/// Whether the planted bug `m` is on: never, without the `__mutants` feature.
#[cfg(not(feature = "__mutants"))]
#[inline]
pub const fn mutant(_m: Mutant) -> bool {
    false
}
