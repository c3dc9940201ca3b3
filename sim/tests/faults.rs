//! proptest drives the network scenarios (queries, COPY both ways, startup
//! and authentication over TLS or not, FIN/RST at a byte) with fault plans it
//! generates and shrinks (read and write sizes down to one byte, `Pending`
//! stalls), so a failure comes back as the smallest plan that breaks it.
//!
//! Each scenario's choices (TLS, the authentication method, where the
//! connection ends, how many messages or rows) are inputs here, not drawn
//! from the seed: shrinking a seed would re-draw them all and report a
//! different case from the one that failed. The seed only picks message
//! contents and the link's latency and holds.
//!
//! Regressions are kept in `proptest-regressions/sim-faults.txt`. Its lines
//! are proptest RNG seeds, not values: one regenerates the case only while
//! the strategies below draw in the same way. Changing them leaves old lines
//! valid but replaying different cases; keep them anyway (they still run).

use pg_sim::chop::{self, End};
use pg_sim::scenario::net;
use pg_sim::scenario::variant::{
    AuthVariant, CopyInVariant, CopyOutForm, CopyOutVariant, CutVariant, MODES, QueryVariant,
};
use pg_sim::seed::Seed;
use pg_sim::server::auth::{Auth, Twist};
use pg_sim::server::pg::Ssl;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// Cases per property, sized to CI's minute for this file in a debug build:
/// measured on a 2-core machine once built, 24-41 s wall (the other core idle
/// or busy) and 37-45 s CPU, so it fits the minute even on one core; 8000
/// cases took 60 s with the other core busy.
const CASES: u32 = 6000;

fn config() -> Config {
    Config {
        cases: CASES,
        // From the manifest, not the working directory: the test binary run
        // by hand from the repository root would write beside the repository.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/sim-faults.txt"
        )))),
        ..Config::default()
    }
}

fn plan() -> impl Strategy<Value = chop::Plan> {
    (
        proptest::collection::vec(1usize..300, 1..6),
        proptest::collection::vec(1usize..300, 1..6),
        0usize..5,
    )
        .prop_map(|(reads, writes, pending_every)| chop::Plan {
            reads,
            writes,
            pending_every,
        })
}

fn query() -> impl Strategy<Value = QueryVariant> {
    (any::<bool>(), 0usize..60).prop_map(|(tls, messages)| QueryVariant { tls, messages })
}

fn copy_in() -> impl Strategy<Value = CopyInVariant> {
    (
        proptest::option::weighted(0.75, 1usize..150_000),
        1u64..10_000,
        1u64..=500,
        any::<bool>(),
        prop_oneof![
            Just(pg_transport::CopyInOptions::default().batch_size),
            1usize..16 * 1024,
        ],
    )
        .prop_map(
            |(abort_at, total_rows, chunk_rows, stray, batch_size)| CopyInVariant {
                abort_at,
                total_rows,
                chunk_rows,
                stray,
                batch_size,
            },
        )
}

fn copy_out() -> impl Strategy<Value = CopyOutVariant> {
    (
        any::<bool>(),
        prop_oneof![
            Just(CopyOutForm::Callback),
            Just(CopyOutForm::Joined),
            Just(CopyOutForm::Stream),
        ],
        0usize..80,
    )
        .prop_map(|(tls, form, messages)| CopyOutVariant {
            tls,
            form,
            messages,
        })
}

/// Simplest first: proptest shrinks a choice towards the first alternative.
fn auth_method() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::Trust),
        Just(Auth::Cleartext),
        Just(Auth::Md5),
        Just(Auth::Scram(Twist::None)),
        Just(Auth::Scram(Twist::OkWithoutFinal)),
        Just(Auth::Scram(Twist::BadSignature)),
        Just(Auth::Scram(Twist::FinalFirst)),
        Just(Auth::Scram(Twist::ContinueTwice)),
    ]
}

fn auth() -> impl Strategy<Value = AuthVariant> {
    (
        prop_oneof![Just(Ssl::Refuse), Just(Ssl::Accept), Just(Ssl::Error)],
        proptest::sample::select(&MODES[..]),
        proptest::sample::select(&MODES[..]),
        auth_method(),
        any::<bool>(),
    )
        .prop_map(
            |(ssl, sslmode, binding, auth, right_password)| AuthVariant {
                ssl,
                sslmode,
                binding,
                auth,
                right_password,
            },
        )
}

/// A FIN or RST after `at` bytes the client reads, or an RST after `at`
/// bytes it writes. Mostly early: startup and small replies are a few
/// hundred bytes to a few KB, COPY OUT up to a few hundred KB.
fn end() -> impl Strategy<Value = End> {
    let read_at = prop_oneof![3 => 0usize..4_000, 1 => 0usize..250_000];
    prop_oneof![
        (read_at, any::<bool>()).prop_map(|(at, reset)| End {
            reads: true,
            at,
            reset,
        }),
        (0usize..120).prop_map(|at| End {
            reads: false,
            at,
            reset: true,
        }),
    ]
}

fn cut() -> impl Strategy<Value = CutVariant> {
    prop_oneof![
        2 => (any::<bool>(), 0usize..80, end()).prop_map(|(copy, messages, end)| {
            CutVariant::Reply {
                copy,
                messages,
                end,
            }
        }),
        1 => (1u64..600, 1u64..50, 0usize..14_000).prop_map(|(total_rows, chunk_rows, at)| {
            CutVariant::CopyIn {
                total_rows,
                chunk_rows,
                at,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query_survives_any_fault_plan(seed in any::<u64>(), v in query(), plan in plan()) {
        let out = net::with_plan(plan, || net::query_with(Seed(seed), v));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn copy_in_survives_any_fault_plan(seed in any::<u64>(), v in copy_in(), plan in plan()) {
        let out = net::with_plan(plan, || net::copy_in_with(Seed(seed), v));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn copy_out_survives_any_fault_plan(seed in any::<u64>(), v in copy_out(), plan in plan()) {
        let out = net::with_plan(plan, || net::copy_out_with(Seed(seed), v));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn startup_and_auth_survive_any_fault_plan(
        seed in any::<u64>(),
        v in auth(),
        plan in plan(),
    ) {
        let out = net::with_plan(plan, || net::auth_with(Seed(seed), v));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn fin_or_rst_at_any_byte_under_any_fault_plan(
        seed in any::<u64>(),
        v in cut(),
        plan in plan(),
    ) {
        let out = net::with_plan(plan, || net::cut_with(Seed(seed), v));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }
}
