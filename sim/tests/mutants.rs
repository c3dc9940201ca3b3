//! The simulation finds each planted bug (feature `__mutants`, switched on one
//! at a time) within 1,000 seeds. Its own test binary: the switch is
//! process-wide, so nothing else may run beside it.

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

use pg_transport::internal::{Mutant, set_mutant};

/// The first (seed index, scenario) that fails with the current mutant.
fn first_failure() -> Option<(u64, &'static str)> {
    for i in 0..1000 {
        let seed = seed::Seed::nth(0x5EED, i);
        for s in scenario::ALL {
            if (s.run)(seed).result.is_err() {
                return Some((i, s.name));
            }
        }
    }
    None
}

#[test]
fn every_planted_bug_is_found_within_1000_seeds() {
    for (name, mutant) in Mutant::ALL {
        set_mutant(mutant);
        let found = first_failure();
        set_mutant(Mutant::None);
        let (seeds, scenario) =
            found.unwrap_or_else(|| panic!("mutant {name} survived 1000 seeds"));
        eprintln!("mutant {name}: found by {scenario} at seed index {seeds}");
    }
}
