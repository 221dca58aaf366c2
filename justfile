# ksim recipes. Plain cargo works too: see README.md.

# Every test: unit tests, the scenario catalogue, determinism, planted bugs.
test:
    cargo test --workspace

# One seed of one scenario: `just run scenarios/broker-crash-restart.toml 7`
run file seed="0" *flags="":
    cargo run --release -p sim --bin ksim -- run {{file}} --seed {{seed}} {{flags}}

# Many seeds: `just sweep scenarios/random-nemesis.toml 0..1000 2`
sweep file seeds="0..100" jobs="2" *flags="":
    cargo run --release -p sim --bin ksim -- sweep {{file}} --seeds {{seeds}} --jobs {{jobs}} {{flags}}

# Throughput figures (see docs/BENCHMARKS.md).
bench *flags="":
    cargo run --release -p sim --bin ksim -- bench {{flags}}

# What CI checks besides the tests.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
