//! proptest drives the network scenarios (queries, COPY both ways, startup
//! and authentication over TLS or not, FIN/RST at a byte) with fault plans it generates and
//! shrinks (read and write sizes down to one byte, `Pending` stalls), so a
//! failure comes back as the smallest plan that breaks it. Regressions are
//! kept in `proptest-regressions/sim-faults.txt`.

#[path = "../src/chop.rs"]
mod chop;
#[path = "../src/scenario/mod.rs"]
#[allow(dead_code, reason = "the CLI's lookup helpers are unused here")]
mod scenario;
#[path = "../src/seed.rs"]
#[allow(dead_code, reason = "the CLI's seed parsing is unused here")]
mod seed;
#[path = "../src/server/mod.rs"]
mod server;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn config() -> Config {
    Config {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "../proptest-regressions/sim-faults.txt",
        ))),
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query_survives_any_fault_plan(seed in any::<u64>(), plan in plan()) {
        let out = scenario::net::with_plan(plan, || scenario::net::query(seed::Seed(seed)));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn copy_in_survives_any_fault_plan(seed in any::<u64>(), plan in plan()) {
        let out = scenario::net::with_plan(plan, || scenario::net::copy_in(seed::Seed(seed)));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn copy_out_survives_any_fault_plan(seed in any::<u64>(), plan in plan()) {
        let out = scenario::net::with_plan(plan, || scenario::net::copy_out(seed::Seed(seed)));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn startup_and_auth_survive_any_fault_plan(seed in any::<u64>(), plan in plan()) {
        let out = scenario::net::with_plan(plan, || scenario::net::auth(seed::Seed(seed)));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }

    #[test]
    fn fin_or_rst_at_any_byte_under_any_fault_plan(seed in any::<u64>(), plan in plan()) {
        let out = scenario::net::with_plan(plan, || scenario::net::cut(seed::Seed(seed)));
        prop_assert!(out.result.is_ok(), "{:?}", out.result);
    }
}
