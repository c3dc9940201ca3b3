# pg-transport tasks. `just --list` shows them.

# Every test in the workspace.
test:
    cargo test --workspace

# The simulation runner: `just sim`, `just sim --seeds 10000`.
sim *ARGS:
    cargo run --release -q -p pg-sim -- {{ARGS}}

# Replay one seed of one scenario.
replay SEED SCENARIO:
    cargo run --release -q -p pg-sim -- --seed {{SEED}} --scenario {{SCENARIO}}

# Formatting, clippy and rustdoc, all warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace

# Criterion benchmarks.
bench:
    cargo bench --bench parse
    cargo bench --bench copy
