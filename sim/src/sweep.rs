//! Many seeds of one scenario, on `jobs` OS threads (each seed its own
//! runtime), with results ordered by seed so the output is identical for any
//! number of jobs.

use crate::checker::{Invariant, Violation};
use crate::runner::{run_seed, RunOptions, RunResult, Verdict};
use crate::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most seeds one sweep may run (ksim's bound).
pub const MAX_SWEEP_SEEDS: u64 = 10_000_000;
/// Most parallel jobs.
pub const MAX_JOBS: usize = 256;

#[derive(Clone, Debug, Serialize)]
pub struct SeedFailure {
    pub seed: u64,
    pub violations: Vec<Violation>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepResult {
    pub scenario: String,
    /// `[from, to)`: the seeds run.
    pub seeds: [u64; 2],
    pub runs: u64,
    pub verdict: Verdict,
    /// Invariant -> number of seeds in which it was found (violated or expected).
    pub counts: BTreeMap<Invariant, u64>,
    pub failures: Vec<SeedFailure>,
    /// Expected violations (research scenarios) that no seed found.
    pub expected_missing: Vec<Invariant>,
    pub sim_seconds: f64,
    pub messages: u64,
    pub reordered_sends: u64,
    #[serde(skip)]
    pub wall_seconds: f64,
}

/// Runs seeds `from..to`, calling `progress` after each finished seed.
pub fn sweep(
    scenario: &Arc<Scenario>,
    from: u64,
    to: u64,
    jobs: usize,
    options: &RunOptions,
    progress: &(dyn Fn(&RunResult) + Sync),
) -> SweepResult {
    assert!(from < to, "sweep needs a non-empty seed range");
    let wall = std::time::Instant::now();
    let next = AtomicU64::new(from);
    let results: Mutex<Vec<RunResult>> = Mutex::new(Vec::with_capacity((to - from) as usize));
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, MAX_JOBS) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= to {
                    break;
                }
                let mut result = run_seed(scenario, seed, options);
                result.trace_lines.clear();
                result.history = None;
                progress(&result);
                results.lock().expect("results lock").push(result);
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|r| r.seed);
    summarise(scenario, from, to, &results, wall.elapsed().as_secs_f64())
}

pub fn summarise(scenario: &Scenario, from: u64, to: u64, results: &[RunResult], wall_seconds: f64) -> SweepResult {
    let mut counts = BTreeMap::new();
    for r in results {
        for invariant in r.found() {
            *counts.entry(invariant).or_insert(0) += 1;
        }
    }
    let failures: Vec<SeedFailure> = results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| SeedFailure { seed: r.seed, violations: r.violations.clone() })
        .collect();
    let expected_missing: Vec<Invariant> =
        scenario.expect.expected.iter().copied().filter(|i| !counts.contains_key(i)).collect();
    let pass = failures.is_empty() && expected_missing.is_empty();
    SweepResult {
        scenario: scenario.name.clone(),
        seeds: [from, to],
        runs: results.len() as u64,
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        counts,
        failures,
        expected_missing,
        sim_seconds: results.iter().map(|r| r.sim_seconds).sum(),
        messages: results.iter().map(|r| r.messages).sum(),
        reordered_sends: results.iter().map(|r| r.reordered_sends).sum(),
        wall_seconds,
    }
}
