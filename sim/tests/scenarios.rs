//! Fixed seeds for every scenario, each run twice: it must pass and produce the
//! same transcript both times (determinism).

use pg_sim::{scenario, seed};

#[test]
fn fixed_seeds_pass_and_replay_identically() {
    for s in scenario::ALL {
        for i in 0..200 {
            let seed = seed::Seed::nth(0xC1, i);
            let a = (s.run)(seed);
            let b = (s.run)(seed);
            assert_eq!(a.result, Ok(()), "{} seed {seed}", s.name);
            assert_eq!(
                a.transcript, b.transcript,
                "{} seed {seed}: transcript differs between runs",
                s.name
            );
            assert_eq!(a.faults, b.faults);
        }
    }
}
