//! Each planted bug (feature `__mutants`, switched on one at a time) is found
//! by the scenario meant to guard against it, within a budget of seeds; and the
//! same scenario passes the same seeds with no bug planted (the control), so a
//! find is the bug's doing, not a flaky scenario's. Its own test binary: the
//! switch is process-wide, so nothing else may run beside it.
//!
//! The seeds-to-find table in docs/testing.md comes from the runner:
//! `cargo sim --mutant NAME --scenario S --seeds 2000` (same seeds, base 0x5EED).

use pg_sim::{scenario, seed};
use pg_transport::internal::{Mutant, set_mutant};

/// Each planted bug, the scenario that must find it, and within how many
/// seeds (from base 0x5EED). Budgets are several times the measured
/// first-failing index, so they hold if scenarios' draws shift a little.
const EXPECTED: &[(Mutant, &str, u64)] = &[
    (Mutant::NotificationNoAdvance, "query-stream", 50),
    (Mutant::AcceptBytesAfterS, "net-ssl-inject", 50),
    (Mutant::CopyDoneAfterAbort, "net-copy-in", 50),
    (Mutant::ReuseAfterProtocolError, "corrupt-frame", 50),
    (Mutant::CopyInIgnoresWatch, "net-copy-in", 100),
    (Mutant::HeaderLenUnder4, "corrupt-frame", 100),
    (Mutant::ScramSkipsServerSignature, "net-auth", 100),
    (Mutant::CopyInDropsStartedFrame, "net-copy-in", 100),
    (Mutant::CompactSkipsMove, "copy-out", 100),
    (Mutant::JoinedPastNonCopyData, "net-copy-out", 100),
];

fn scenario(name: &str) -> &'static scenario::Scenario {
    scenario::ALL
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

fn name(m: Mutant) -> &'static str {
    Mutant::ALL
        .iter()
        .find(|(_, x)| *x == m)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// Whether `s` fails on seed index `i` with `m` planted (a panic counts).
/// The switch is process-wide and the harness runs tests in parallel: one
/// run at a time.
fn fails(s: &scenario::Scenario, m: Mutant, i: u64) -> bool {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = seed::Seed::nth(0x5EED, i);
    set_mutant(m);
    let outcome = std::panic::catch_unwind(|| (s.run)(seed));
    set_mutant(Mutant::None);
    !matches!(outcome, Ok(o) if o.result.is_ok())
}

#[test]
fn every_planted_bug_is_found_by_its_scenario_and_the_control_passes() {
    assert_eq!(
        EXPECTED.len(),
        Mutant::ALL.len(),
        "every planted bug needs its scenario here"
    );
    for &(m, scenario_name, budget) in EXPECTED {
        let s = scenario(scenario_name);
        let found = (0..budget).find(|&i| fails(s, m, i));
        let Some(found) = found else {
            panic!("{} survived {budget} seeds of {scenario_name}", name(m));
        };
        // The control: the seeds up to the find pass with nothing planted.
        for i in 0..=found {
            assert!(
                !fails(s, Mutant::None, i),
                "control: {scenario_name} fails seed index {i} with no bug planted"
            );
        }
        eprintln!(
            "{}: found by {scenario_name} at seed index {found}",
            name(m)
        );
    }
}
