//! `pg-sim`: runs pg-transport scenarios from seeds and prints a summary.
//!
//! ```text
//! cargo sim                         # 1000 seeds over every scenario
//! cargo sim --seeds 10000           # more
//! cargo sim --seed 0x1234abcd --scenario query-stream   # replay one
//! ```
//! Every failure prints the exact command that replays it. The summary goes
//! to stdout; the progress bar to stderr, only when it is a terminal (never in
//! CI, nor with `--quiet`).

use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pg_sim::scenario::{self, ALL, Scenario};
use pg_sim::seed::Seed;

struct Args {
    seeds: u64,
    seed: Option<Seed>,
    base: u64,
    scenario: Option<&'static Scenario>,
    quiet: bool,
    verbose: bool,
}

const USAGE: &str =
    "usage: pg-sim [--seeds N] [--seed S] [--base B] [--scenario NAME] [--quiet] [--list]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 1000,
        seed: None,
        base: 0x5EED,
        scenario: None,
        quiet: false,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--seeds" => args.seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--seed" => {
                let v = value()?;
                args.seed =
                    Some(Seed::parse(&v).ok_or_else(|| format!("--seed: not a number: {v}"))?);
            }
            "--base" => {
                let v = value()?;
                args.base = Seed::parse(&v)
                    .ok_or_else(|| format!("--base: not a number: {v}"))?
                    .0;
            }
            "--scenario" => {
                let v = value()?;
                args.scenario = Some(scenario::find(&v).ok_or_else(|| {
                    let names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
                    format!("unknown scenario {v:?}; known: {}", names.join(", "))
                })?);
            }
            "--mutant" => {
                let v = value()?;
                let (_, m) = pg_transport::internal::Mutant::ALL
                    .iter()
                    .find(|(n, _)| *n == v)
                    .ok_or_else(|| {
                        let names: Vec<&str> = pg_transport::internal::Mutant::ALL
                            .iter()
                            .map(|(n, _)| *n)
                            .collect();
                        format!("unknown mutant {v:?}; known: {}", names.join(", "))
                    })?;
                pg_transport::internal::set_mutant(*m);
            }
            "--quiet" => args.quiet = true,
            "--verbose" => args.verbose = true,
            "--list" => {
                for s in ALL {
                    println!("{:<16} {}", s.name, s.about);
                }
                std::process::exit(0);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The commit replay lines name (set by `build.rs`).
const COMMIT: &str = env!("PG_SIM_COMMIT");

/// Runs, faults, splits and failures of one scenario.
#[derive(Default)]
struct Tally {
    runs: u64,
    faults: u64,
    splits: u64,
    failures: u64,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let scenarios: Vec<&Scenario> = match args.scenario {
        Some(s) => vec![s],
        None => ALL.iter().collect(),
    };
    let seeds: Vec<Seed> = match args.seed {
        Some(s) => vec![s],
        None => (0..args.seeds).map(|i| Seed::nth(args.base, i)).collect(),
    };
    println!(
        "pg-sim: {} seed(s) from base 0x{:x} over {} scenario(s)",
        seeds.len(),
        args.base,
        scenarios.len()
    );
    let started = Instant::now();
    let (tallies, replays) = run_all(&args, &scenarios, &seeds);
    print_table(&scenarios, &tallies);
    let failed: u64 = tallies.iter().map(|t| t.failures).sum();
    let runs: u64 = tallies.iter().map(|t| t.runs).sum();
    println!("\n{runs} runs in {:.2?}", started.elapsed());
    for r in replays.iter().take(20) {
        println!("{r}");
    }
    if replays.len() > 20 {
        println!("... and {} more failures", replays.len() - 20);
    }
    if failed == 0 {
        println!("sim: {runs} passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("sim: {} passed, {failed} failed", runs - failed);
        ExitCode::FAILURE
    }
}

/// Runs each seed over every scenario (seed by seed, so the progress bar
/// means seeds), with a tally per scenario and a replay line per failure.
fn run_all(args: &Args, scenarios: &[&Scenario], seeds: &[Seed]) -> (Vec<Tally>, Vec<String>) {
    let mut tallies: Vec<Tally> = scenarios.iter().map(|_| Tally::default()).collect();
    let mut replays = Vec::new();
    let bar = progress_bar(args.quiet, seeds.len());
    for seed in seeds {
        for (scenario, tally) in scenarios.iter().zip(&mut tallies) {
            replays.extend(run_one(args, &bar, scenario, *seed, tally));
        }
        bar.inc(1);
    }
    bar.finish();
    if !bar.is_hidden() {
        // Ends the bar's line, which indicatif leaves open.
        eprintln!();
    }
    (tallies, replays)
}

/// The bar over `seeds` seeds, on stderr. indicatif hides it when stderr is
/// not a terminal (or `TERM` is unset or `dumb`), so a piped or CI run gets
/// no escape codes; `--quiet` hides it everywhere.
fn progress_bar(quiet: bool, seeds: usize) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "[{bar:20}] {percent:>3}% {pos}/{len} seeds, {elapsed} (eta {eta})",
    )
    .expect("the template is a constant that parses")
    .progress_chars("## ");
    ProgressBar::new(u64::try_from(seeds).unwrap_or(u64::MAX)).with_style(style)
}

/// Runs `scenario` on `seed` into `tally`, printing its transcript when one
/// seed is replayed; its replay line if it failed. What it prints goes around
/// `bar` (`suspend`), so the bar is not torn on a terminal.
fn run_one(
    args: &Args,
    bar: &ProgressBar,
    scenario: &Scenario,
    seed: Seed,
    tally: &mut Tally,
) -> Option<String> {
    if args.verbose {
        bar.suspend(|| eprintln!("run {} seed {seed}", scenario.name));
    }
    let outcome = (scenario.run)(seed);
    if args.seed.is_some() {
        bar.suspend(|| {
            println!("-- {} seed {seed}: transcript", scenario.name);
            for line in &outcome.transcript {
                println!("   {line}");
            }
        });
    }
    tally.runs += 1;
    tally.faults += u64::from(outcome.faults);
    tally.splits += u64::from(outcome.splits);
    let why = outcome.result.err()?;
    tally.failures += 1;
    Some(format!(
        "FAIL {} seed {seed}: {why}\n  replay: cargo sim --seed {seed} --scenario {}  # commit {COMMIT}",
        scenario.name, scenario.name
    ))
}

/// The per-scenario table of the summary.
fn print_table(scenarios: &[&Scenario], tallies: &[Tally]) {
    println!(
        "\n{:<16} {:>8} {:>8} {:>10} {:>9}",
        "scenario", "runs", "faults", "splits", "failures"
    );
    for (scenario, t) in scenarios.iter().zip(tallies) {
        println!(
            "{:<16} {:>8} {:>8} {:>10} {:>9}",
            scenario.name, t.runs, t.faults, t.splits, t.failures
        );
    }
}
