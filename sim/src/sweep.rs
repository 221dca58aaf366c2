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
    /// Invariant -> anomalies found over every seed (e.g. acknowledged values lost).
    pub totals: BTreeMap<Invariant, u64>,
    /// Sends acknowledged over every seed.
    pub acked_sends: u64,
    pub failures: Vec<SeedFailure>,
    /// Expected violations (research scenarios) that no seed found.
    pub expected_missing: Vec<Invariant>,
    pub sim_seconds: f64,
    pub messages: u64,
    pub reordered_sends: u64,
    /// Consumer truncation detections over every seed, and the seeds with any.
    pub truncations_detected: u64,
    pub seeds_with_truncations: u64,
    /// The slowest broker recovery (boot to serving, simulated ms) over every seed.
    pub slowest_recovery_ms: Option<u64>,
    /// Per group, records processed, lost and processed again, over every seed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_delivery: BTreeMap<String, crate::checker::Delivery>,
    /// Per group, its rebalances' partition pauses over every seed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rebalance_pauses: BTreeMap<String, crate::rebalance::PauseSummary>,
    /// Per invariant found: how many seeds a search starting at a random seed
    /// needs until it catches it (median and worst over every start in range).
    pub seeds_to_catch: BTreeMap<Invariant, CatchStats>,
    #[serde(skip)]
    pub wall_seconds: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CatchStats {
    pub median: f64,
    pub worst: u64,
}

/// Seeds-to-catch from the sorted list of seeds (offsets into the range) that
/// caught an invariant: for each start, the distance to the next catching seed
/// (inclusive); starts after the last catch are left out, since the range says
/// nothing about them.
pub fn seeds_to_catch(catching: &[u64], range_len: u64) -> Option<CatchStats> {
    let last = *catching.last()?;
    let mut distances = Vec::with_capacity(last as usize + 1);
    let mut next = catching.iter().peekable();
    for start in 0..=last.min(range_len.saturating_sub(1)) {
        while next.peek().is_some_and(|&&c| c < start) {
            next.next();
        }
        let catch = **next.peek().expect("a catch at or after every start up to the last");
        distances.push(catch - start + 1);
    }
    distances.sort_unstable();
    let n = distances.len();
    let median =
        if n % 2 == 1 { distances[n / 2] as f64 } else { (distances[n / 2 - 1] + distances[n / 2]) as f64 / 2.0 };
    Some(CatchStats { median, worst: *distances.last().expect("non-empty") })
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
    let mut totals = BTreeMap::new();
    for r in results {
        for invariant in r.found() {
            *counts.entry(invariant).or_insert(0) += 1;
            *totals.entry(invariant).or_insert(0) += r.counts.get(&invariant).copied().unwrap_or(0);
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
    let mut seeds_to_catch = BTreeMap::new();
    for invariant in counts.keys() {
        let catching: Vec<u64> =
            results.iter().filter(|r| r.counts.get(invariant).is_some_and(|n| *n > 0)).map(|r| r.seed - from).collect();
        if let Some(stats) = self::seeds_to_catch(&catching, to - from) {
            seeds_to_catch.insert(*invariant, stats);
        }
    }
    SweepResult {
        scenario: scenario.name.clone(),
        seeds: [from, to],
        runs: results.len() as u64,
        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
        counts,
        totals,
        acked_sends: results.iter().map(|r| r.acked_sends).sum(),
        failures,
        expected_missing,
        sim_seconds: results.iter().map(|r| r.sim_seconds).sum(),
        messages: results.iter().map(|r| r.messages).sum(),
        reordered_sends: results.iter().map(|r| r.reordered_sends).sum(),
        truncations_detected: results.iter().map(|r| r.truncations_detected).sum(),
        seeds_with_truncations: results.iter().filter(|r| r.truncations_detected > 0).count() as u64,
        slowest_recovery_ms: results.iter().filter_map(|r| r.slowest_recovery_ms).max(),
        rebalance_pauses: crate::rebalance::summarise(results.iter().map(|r| &r.rebalance_pauses_ms)),
        group_delivery: results.iter().flat_map(|r| &r.group_delivery).fold(BTreeMap::new(), |mut all, (g, d)| {
            let sum: &mut crate::checker::Delivery = all.entry(g.clone()).or_default();
            sum.processed += d.processed;
            sum.lost += d.lost;
            sum.reprocessed += d.reprocessed;
            all
        }),
        seeds_to_catch,
        wall_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_to_catch_counts_from_every_start() {
        // Catches at offsets 2 and 3 of 10: starts 0,1,2 need 3,2,1; start 3 needs 1.
        let stats = seeds_to_catch(&[2, 3], 10).unwrap();
        assert_eq!(stats.worst, 3);
        assert_eq!(stats.median, 1.5);
        let every = seeds_to_catch(&[0, 1, 2, 3], 4).unwrap();
        assert_eq!((every.median, every.worst), (1.0, 1));
        assert_eq!(seeds_to_catch(&[], 5), None);
    }
}
