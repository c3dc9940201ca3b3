//! Fixed seeds for every scenario, each run twice: it must pass and produce the
//! same transcript both times (determinism).

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
