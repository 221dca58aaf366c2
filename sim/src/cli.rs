//! The `ksim` command line. Exit codes: 0 pass, 1 violation (or an expected
//! violation never found), 2 bad input or usage.

use crate::checker::Invariant;
use crate::runner::{run_seed, RunOptions, RunResult, Verdict};
use crate::scenario::Scenario;
use crate::sweep::{sweep, SweepResult, MAX_JOBS, MAX_SWEEP_SEEDS};
use broker_core::plant::Plant;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Findings of each counted (not judged) invariant printed in text mode.
const FINDINGS_SHOWN: usize = 3;

/// How a replay command starts (from the workspace root).
pub const REPLAY_PREFIX: &str = "cargo run --release -p sim --bin ksim --";

#[derive(Parser, Debug)]
#[command(name = "ksim", version, about = "Deterministic simulation testbed for a Kafka-style broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one seed of a scenario and judge it.
    Run {
        /// Scenario file (TOML).
        file: PathBuf,
        /// The seed: same seed, scenario and binary give the same run.
        #[arg(long)]
        seed: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Write the trace (JSON lines, stamped with simulated time and node).
        #[arg(long, value_name = "PATH")]
        trace: Option<PathBuf>,
        /// Write the history (JSON lines: invocations and completions).
        #[arg(long, value_name = "PATH")]
        history: Option<PathBuf>,
        /// Switch on a planted bug (repeatable); see `ksim list-plants`.
        #[arg(long = "plant", value_name = "NAME", value_parser = parse_plant)]
        plants: Vec<Plant>,
        /// Run the seed twice in this process and fail if the trace hashes differ.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Run a range of seeds and summarise.
    Sweep {
        file: PathBuf,
        /// Seeds `A..B` (B excluded) or `A..=B`.
        #[arg(long, value_parser = parse_seed_range)]
        seeds: (u64, u64),
        /// Parallel jobs (OS threads, one runtime per seed); results do not depend on it.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[arg(long)]
        json: bool,
        #[arg(long = "plant", value_name = "NAME", value_parser = parse_plant)]
        plants: Vec<Plant>,
    },
    /// List the planted bugs.
    ListPlants,
    /// Measure the substrate and the standard scenario.
    Bench {
        #[arg(long)]
        json: bool,
        /// Seeds of the standard scenario to time.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// The standard scenario file.
        #[arg(long, default_value = "scenarios/bench/standard.toml")]
        scenario: PathBuf,
        /// Override the chaos phase's length (simulated ms), to measure how
        /// the checkers scale with history size; timed faults after the new
        /// end are dropped.
        #[arg(long)]
        duration_ms: Option<u64>,
    },
}

fn parse_plant(s: &str) -> Result<Plant, String> {
    s.parse()
}

/// `A..B` (half-open) or `A..=B`; empty or reversed ranges are errors.
pub fn parse_seed_range(s: &str) -> Result<(u64, u64), String> {
    let expected = "expected a seed range like 0..100 or 0..=99";
    let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        return Err(format!("`{s}`: {expected}"));
    };
    let parse = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("`{s}`: `{x}` is not a seed; {expected}"));
    let (from, mut to) = (parse(a)?, parse(b)?);
    if inclusive {
        to = to.checked_add(1).ok_or_else(|| format!("`{s}`: range end too large"))?;
    }
    if to <= from {
        return Err(format!("`{s}`: the range is empty or reversed; {expected}"));
    }
    if to - from > MAX_SWEEP_SEEDS {
        return Err(format!("`{s}`: at most {MAX_SWEEP_SEEDS} seeds per sweep"));
    }
    Ok((from, to))
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    match cli.command {
        Command::Run { file, seed, json, trace, history, plants, check_determinism } => {
            let scenario = match load(&file) {
                Ok(s) => s,
                Err(code) => return code,
            };
            cmd_run(&scenario, &file, seed, json, trace, history, plants, check_determinism)
        }
        Command::Sweep { file, seeds, jobs, json, plants } => {
            if jobs == 0 || jobs > MAX_JOBS {
                eprintln!("error: --jobs must be between 1 and {MAX_JOBS}");
                return ExitCode::from(2);
            }
            let scenario = match load(&file) {
                Ok(s) => s,
                Err(code) => return code,
            };
            cmd_sweep(&scenario, &file, seeds, jobs, json, plants)
        }
        Command::ListPlants => {
            for p in Plant::ALL {
                println!("{:<22} {}", p.name(), p.describe());
            }
            ExitCode::SUCCESS
        }
        Command::Bench { json, seeds, scenario, duration_ms } => {
            let mut loaded = match load(&scenario) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Some(ms) = duration_ms {
                match crate::bench::with_duration(&loaded, ms) {
                    Ok(s) => loaded = Arc::new(s),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            crate::bench::cmd_bench(&loaded, seeds.clamp(1, 100_000), json)
        }
    }
}

/// Logs for people (`KSIM_LOG=debug`), stamped with simulated time.
fn init_logging() {
    if let Ok(filter) = std::env::var("KSIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimTime)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match madsim::time::TimeHandle::try_current() {
            Some(t) => write!(w, "t={:.3}s", t.elapsed().as_secs_f64()),
            None => write!(w, "t=-"),
        }
    }
}

fn load(file: &Path) -> Result<Arc<Scenario>, ExitCode> {
    Scenario::load(file).map(Arc::new).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// The exact command that replays a seed.
pub fn replay_command(file: &Path, seed: u64, plants: &[Plant]) -> String {
    let mut cmd = format!("{REPLAY_PREFIX} run {} --seed {seed}", file.display());
    for p in plants {
        cmd.push_str(&format!(" --plant {p}"));
    }
    cmd
}

#[allow(clippy::too_many_arguments)]
fn cmd_run(
    scenario: &Arc<Scenario>,
    file: &Path,
    seed: u64,
    json: bool,
    trace: Option<PathBuf>,
    history: Option<PathBuf>,
    plants: Vec<Plant>,
    check_determinism: bool,
) -> ExitCode {
    let options =
        RunOptions { extra_plants: plants.clone(), keep_trace: trace.is_some(), keep_history: history.is_some() };
    let result = run_seed(scenario, seed, &options);
    if check_determinism {
        let again = run_seed(scenario, seed, &options);
        if again.trace_hash != result.trace_hash {
            eprintln!(
                "NONDETERMINISM: seed {seed} gave trace hash {} then {} in the same process",
                result.trace_hash, again.trace_hash
            );
            return ExitCode::from(1);
        }
    }
    if let Some(path) = &trace {
        if let Err(e) = write_lines(path, result.trace_lines.iter().cloned()) {
            eprintln!("error: cannot write trace to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let (Some(path), Some(h)) = (&history, &result.history) {
        let lines = h.events().into_iter().map(|e| serde_json::to_string(&e).expect("history serialises"));
        if let Err(e) = write_lines(path, lines) {
            eprintln!("error: cannot write history to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let replay = replay_command(file, seed, &plants);
    if json {
        let mut value = serde_json::to_value(&result).expect("result serialises");
        value["replay"] = serde_json::Value::String(replay);
        value["deterministic"] = serde_json::Value::Bool(check_determinism);
        println!("{value}");
    } else {
        print_run(&result, file, &replay, check_determinism);
    }
    match result.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
    }
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn print_run(r: &RunResult, file: &Path, replay: &str, checked: bool) {
    let plants: Vec<String> = r.plants.iter().map(|p| p.to_string()).collect();
    println!("scenario    {} ({})", r.scenario, file.display());
    println!("seed        {}", r.seed);
    println!("plants      {}", if plants.is_empty() { "none".to_string() } else { plants.join(", ") });
    if let Some(mix) = &r.nemesis {
        println!("nemesis     {mix}");
    }
    println!("verdict     {}", if r.verdict == Verdict::Pass { "PASS" } else { "FAIL" });
    println!(
        "simulated   {:.2} s in {:.3} s wall ({:.0}x)",
        r.sim_seconds,
        r.wall_seconds,
        r.sim_seconds / r.wall_seconds.max(1e-9)
    );
    println!("events      {}   messages {}   ops {}", r.events, r.messages, r.ops);
    println!("trace hash  {}{}", r.trace_hash, if checked { " (checked: identical on a second run)" } else { "" });
    let counts: Vec<String> = r.counts.iter().filter(|(_, n)| **n > 0).map(|(i, n)| format!("{i}={n}")).collect();
    println!("anomalies   {}", if counts.is_empty() { "none".to_string() } else { counts.join(" ") });
    if r.reordered_sends > 0 {
        println!("            {} sends reordered by retries (allowed with several in flight)", r.reordered_sends);
    }
    if r.truncations_detected > 0 {
        println!("            {} truncations detected by consumers (moved back, KIP-320)", r.truncations_detected);
    }
    if let Some(ms) = r.slowest_recovery_ms {
        println!("recovery    slowest broker boot to serving: {ms} ms (simulated)");
    }
    for (group, pauses) in crate::rebalance::summarise(std::iter::once(&r.rebalance_pauses_ms)) {
        println!("rebalance   group {group}: {pauses}");
    }
    for (group, d) in &r.group_delivery {
        println!("delivery    group {group}: {}", describe_delivery(d));
    }
    let d = &r.disk;
    println!(
        "disk        {} B written, {} fsyncs, {} power losses ({} B lost), {} faulted I/Os, {:.3} s busy",
        d.bytes_written,
        d.fsyncs,
        d.power_losses,
        d.bytes_lost_to_power_loss,
        d.bit_flips + d.lost_writes + d.misdirected_writes + d.full_writes,
        d.io_ns as f64 / 1e9
    );
    if !r.violations.is_empty() {
        println!("violations:");
        for v in &r.violations {
            println!("  [{}] {}", v.invariant, v.detail);
        }
    }
    if !r.findings.is_empty() {
        println!("findings (expected or counted, not failures; first {FINDINGS_SHOWN} of each, all with --json):");
        let mut shown: std::collections::BTreeMap<_, usize> = std::collections::BTreeMap::new();
        for v in &r.findings {
            let n = shown.entry(v.invariant).or_insert(0);
            *n += 1;
            if *n <= FINDINGS_SHOWN {
                println!("  [{}] {}", v.invariant, v.detail);
            }
        }
    }
    println!("replay      {replay}");
}

fn cmd_sweep(
    scenario: &Arc<Scenario>,
    file: &Path,
    (from, to): (u64, u64),
    jobs: usize,
    json: bool,
    plants: Vec<Plant>,
) -> ExitCode {
    let options = RunOptions { extra_plants: plants.clone(), ..RunOptions::default() };
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(to - from);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {per_sec} eta {eta} {msg}")
                .expect("valid template"),
        );
        bar
    };
    let failed = std::sync::atomic::AtomicU64::new(0);
    let result = sweep(scenario, from, to, jobs, &options, &|r| {
        if r.verdict == Verdict::Fail {
            let n = failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            bar.set_message(format!("{n} failing"));
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    if json {
        let mut value = serde_json::to_value(&result).expect("sweep serialises");
        if let Some(failures) = value["failures"].as_array_mut() {
            for f in failures {
                let seed = f["seed"].as_u64().unwrap_or(0);
                f["replay"] = serde_json::Value::String(replay_command(file, seed, &plants));
            }
        }
        println!("{value}");
    } else {
        print_sweep(&result, file, &plants);
    }
    match result.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
    }
}

fn print_sweep(r: &SweepResult, file: &Path, plants: &[Plant]) {
    println!("scenario    {} ({})", r.scenario, file.display());
    println!("seeds       {}..{} ({} runs)", r.seeds[0], r.seeds[1], r.runs);
    println!("verdict     {}", if r.verdict == Verdict::Pass { "PASS" } else { "FAIL" });
    println!(
        "simulated   {:.0} s in {:.2} s wall ({:.1} seeds/s)",
        r.sim_seconds,
        r.wall_seconds,
        r.runs as f64 / r.wall_seconds.max(1e-9)
    );
    println!("{:<24} {:>8} {:>10}   seeds-to-catch", "invariant", "seeds", "anomalies");
    for (invariant, n) in &r.counts {
        let catch =
            r.seeds_to_catch.get(invariant).map_or(String::new(), |c| format!("median {} worst {}", c.median, c.worst));
        let total = r.totals.get(invariant).copied().unwrap_or(0);
        println!("{:<24} {:>8} {:>10}   {}", invariant.name(), n, total, catch);
    }
    if let Some(lost) = r.totals.get(&Invariant::NoLostAckedWrite) {
        println!(
            "acknowledged sends {}; no-lost-acked-write anomalies {} ({:.3} % of them)",
            r.acked_sends,
            lost,
            100.0 * *lost as f64 / r.acked_sends.max(1) as f64
        );
    }
    if r.counts.is_empty() {
        println!("{:<24} {:>8}", "(no anomaly found)", 0);
    }
    if r.truncations_detected > 0 {
        println!(
            "consumers detected truncation {} times in {} seeds (moved back, KIP-320; observed, not judged)",
            r.truncations_detected, r.seeds_with_truncations
        );
    }
    if let Some(ms) = r.slowest_recovery_ms {
        println!("slowest broker recovery (boot to serving): {ms} ms simulated");
    }
    for (group, pauses) in &r.rebalance_pauses {
        println!("rebalances of group {group}: {pauses}");
    }
    for (group, d) in &r.group_delivery {
        println!("delivery of group {group}: {}", describe_delivery(d));
    }
    for missing in &r.expected_missing {
        println!("expected violation never found: {missing}");
    }
    if !r.failures.is_empty() {
        println!("failing seeds:");
        for f in &r.failures {
            // Each invariant once, in the order found (evidence is grouped by invariant).
            let mut names: Vec<&str> = f.violations.iter().map(|v| v.invariant.name()).collect();
            names.dedup();
            println!("  seed {} [{}]: {}", f.seed, names.join(", "), replay_command(file, f.seed, plants));
        }
    }
}

/// "12,000 records processed, 3 lost, 40 processed again".
fn describe_delivery(d: &crate::checker::Delivery) -> String {
    format!(
        "{} records processed, {} lost (below the committed offset, never processed), {} processed again",
        d.processed, d.lost, d.reprocessed
    )
}
