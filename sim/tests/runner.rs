//! The runner binary's output where no one watches it (CI, a pipe): the
//! summary on stdout as before, and no progress bar at all, so logs carry no
//! escape codes or carriage returns.

use std::process::{Command, Output};

/// Runs `pg-sim` with `args`, stdout and stderr piped (not terminals), and
/// `TERM` set so that only the missing terminal can hide the bar.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pg-sim"))
        .args(args)
        .env("TERM", "xterm-256color")
        .output()
        .expect("pg-sim starts")
}

/// stdout without the one line that holds a wall-clock time.
fn summary(output: &Output) -> Vec<String> {
    String::from_utf8(output.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .filter(|l| !l.contains(" runs in "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn piped_runs_print_the_summary_and_no_bar() {
    let args = ["--seeds", "3", "--scenario", "query-stream"];
    let plain = run(&args);
    assert!(plain.status.success(), "{plain:?}");
    assert_eq!(String::from_utf8_lossy(&plain.stderr), "");
    let lines = summary(&plain);
    assert_eq!(
        lines,
        [
            "pg-sim: 3 seed(s) from base 0x5eed over 1 scenario(s)",
            "",
            "scenario             runs   faults     splits  failures",
            &lines[3],
            "",
            "sim: 3 passed, 0 failed",
        ]
    );
    // The scenario's row: its faults and splits depend on the seeds.
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[4]),
        ("query-stream", "3", "0"),
        "{row:?}"
    );
    // `--quiet` changes nothing here but the bar, which is already hidden.
    let quiet = run(&[&args[..], &["--quiet"]].concat());
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
    assert_eq!(summary(&quiet), summary(&plain));
}
