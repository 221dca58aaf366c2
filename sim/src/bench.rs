//! `ksim bench`: the substrate's ceiling (bare madsim request/response over
//! the same connections ksim uses) and the standard scenario, measured in one
//! process so their ratio means something. Medians over seeds. Also the
//! checkers' cost per stage (`RunResult::checker_stages`): median wall time
//! per seed, share of the seed's wall time, and time per 1,000 history ops;
//! and where the memory peaks: each phase's resident high-water mark
//! (`memory`), the simulation's and each checker stage's, in the first
//! seed. Only there: in later seeds the allocator still holds pages the
//! earlier ones freed, and every phase reads as the process's peak.

use crate::checker::StageTimes;
use crate::runner::{run_seed, RunOptions};
use crate::scenario::Scenario;
use madsim::net::Endpoint;
use madsim::runtime::{Handle, Runtime};
use serde::Serialize;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Round trips per responder in one substrate run.
const PING_ROUNDS: u64 = 50_000;
/// Substrate runs (the median is reported).
const PING_RUNS: u64 = 5;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Delivered messages per wall second, bare madsim ping-pong between three nodes.
    pub substrate_msgs_per_s: f64,
    /// Simulated seconds per wall second, standard scenario (median over seeds).
    pub sim_speedup: f64,
    /// Seeds of the standard scenario per wall second on one core (1 / median wall).
    pub seeds_per_s: f64,
    /// Simulated messages per wall second in the standard scenario (median).
    pub msgs_per_s: f64,
    /// msgs_per_s / substrate_msgs_per_s.
    pub msgs_ratio: f64,
    /// Peak resident set size of this process.
    pub peak_rss_mib: f64,
    /// The first seed's simulation's peak resident memory, to the end of
    /// the madsim runtime (none where `memory` cannot measure).
    pub simulation_peak_rss_mib: Option<f64>,
    pub scenario: String,
    pub seeds: u64,
    pub median_wall_ms: f64,
    pub median_sim_seconds: f64,
    pub median_messages: f64,
    /// The chaos phase's simulated length (the scenario's, or `--duration-ms`).
    pub duration_ms: u64,
    /// History operations per seed (median): the checkers' input size.
    pub median_ops: f64,
    /// All checker stages together, wall ms per seed (median).
    pub median_checker_ms: f64,
    /// All checker stages' share of the seed's wall time (median over seeds).
    pub checker_share: f64,
    /// All checker stages, wall ms per 1,000 history ops (median over seeds).
    pub checker_ms_per_kop: f64,
    /// Each checker stage, in the order run (history checkers, then
    /// `replicas` and `recovery`).
    pub checker_stages: Vec<StageCost>,
}

/// One checker stage's cost; each figure is a median over seeds, so
/// medians of stages need not add up to the median of the whole.
#[derive(Debug, Serialize)]
pub struct StageCost {
    pub stage: &'static str,
    /// Wall ms per seed.
    pub median_ms: f64,
    /// Share of the seed's whole wall time (run and checks).
    pub share: f64,
    /// Wall ms per 1,000 history operations.
    pub ms_per_kop: f64,
    /// The process's peak resident memory during the stage in the first
    /// seed (the run's history and what earlier stages keep included).
    pub peak_rss_mib: Option<f64>,
}

/// The scenario with its chaos phase `duration_ms` long; timed faults after
/// the new end are dropped (they could not fire: the chaos phase ends first).
pub fn with_duration(scenario: &Scenario, duration_ms: u64) -> Result<Scenario, String> {
    if duration_ms == 0 {
        return Err("--duration-ms must be positive".into());
    }
    if let Some(p) = scenario.workload.producers.iter().find(|p| p.start_ms >= duration_ms) {
        return Err(format!("a producer starts at {} ms, not before --duration-ms {duration_ms}", p.start_ms));
    }
    let mut s = scenario.clone();
    s.duration_ms = duration_ms;
    s.faults.retain(|f| f.at_ms <= duration_ms);
    Ok(s)
}

pub fn cmd_bench(scenario: &Arc<Scenario>, seeds: u64, json: bool) -> ExitCode {
    let report = bench(scenario, seeds);
    if json {
        println!("{}", serde_json::to_string(&report).expect("report serialises"));
    } else {
        println!("substrate (madsim ping-pong, 3 nodes)  {:>12.0} msgs/s", report.substrate_msgs_per_s);
        println!("standard scenario `{}`, {} seeds, medians:", report.scenario, report.seeds);
        println!("  wall per seed                       {:>12.1} ms", report.median_wall_ms);
        println!("  simulated per seed                  {:>12.1} s", report.median_sim_seconds);
        println!("  speed-up over real time             {:>12.0}x", report.sim_speedup);
        println!("  seeds per second (one core)         {:>12.1}", report.seeds_per_s);
        println!("  messages per seed                   {:>12.0}", report.median_messages);
        println!("  messages per wall second            {:>12.0}", report.msgs_per_s);
        println!("  ratio to substrate                  {:>12.1}%", report.msgs_ratio * 100.0);
        println!("peak RSS                              {:>12.1} MiB", report.peak_rss_mib);
        if let Some(mib) = report.simulation_peak_rss_mib {
            println!("  first seed's simulation             {mib:>12.1} MiB");
        }
        println!(
            "checkers, {} ms of chaos, {:.0} history ops per seed (median); medians per seed:",
            report.duration_ms, report.median_ops
        );
        println!("  {:<14} {:>10} {:>8} {:>12} {:>12}", "stage", "wall ms", "share", "ms/1000 ops", "peak MiB (1st)");
        let rows = report.checker_stages.iter().map(|c| (c.stage, c.median_ms, c.share, c.ms_per_kop, c.peak_rss_mib));
        let total = ("all", report.median_checker_ms, report.checker_share, report.checker_ms_per_kop, None);
        for (stage, ms, share, per_kop, peak) in rows.chain([total]) {
            let peak = peak.map_or(String::new(), |mib| format!("{mib:.1}"));
            println!("  {stage:<14} {ms:>10.2} {:>7.1}% {per_kop:>12.3} {peak:>12}", share * 100.0);
        }
    }
    ExitCode::SUCCESS
}

pub fn bench(scenario: &Arc<Scenario>, seeds: u64) -> BenchReport {
    let mut substrate: Vec<f64> = (0..PING_RUNS).map(ping_pong_msgs_per_s).collect();
    let substrate_msgs_per_s = median(&mut substrate);
    let mut walls = Vec::new();
    let mut speedups = Vec::new();
    let mut rates = Vec::new();
    let mut sims = Vec::new();
    let mut msgs = Vec::new();
    let mut ops = Vec::new();
    let mut checks = Vec::new();
    let mut simulation_peak_rss_mib = None;
    for seed in 0..seeds {
        crate::memory::measure_phases(seed == 0);
        let r = run_seed(scenario, seed, &RunOptions::default());
        checks.push(SeedChecks { stages: r.checker_stages.clone(), wall_seconds: r.wall_seconds, ops: r.ops as f64 });
        simulation_peak_rss_mib = simulation_peak_rss_mib.or(r.simulation_peak_rss_mib);
        ops.push(r.ops as f64);
        walls.push(r.wall_seconds);
        speedups.push(r.sim_seconds / r.wall_seconds);
        rates.push(r.messages as f64 / r.wall_seconds);
        sims.push(r.sim_seconds);
        msgs.push(r.messages as f64);
    }
    crate::memory::measure_phases(false);
    let median_wall = median(&mut walls);
    let msgs_per_s = median(&mut rates);
    // Stage names in the order run (a seed that crashed gives none).
    let names: Vec<&'static str> =
        checks.iter().map(|c| c.stages.iter().map(|lap| lap.stage).collect()).max_by_key(Vec::len).unwrap_or_default();
    let checker_stages = names
        .iter()
        .map(|&stage| {
            let (median_ms, share, ms_per_kop) = stage_cost(&checks, Some(stage));
            let first = checks.first().and_then(|c| c.stages.iter().find(|l| l.stage == stage));
            StageCost { stage, median_ms, share, ms_per_kop, peak_rss_mib: first.and_then(|l| l.peak_rss_mib) }
        })
        .collect();
    let (median_checker_ms, checker_share, checker_ms_per_kop) = stage_cost(&checks, None);
    BenchReport {
        substrate_msgs_per_s,
        sim_speedup: median(&mut speedups),
        seeds_per_s: 1.0 / median_wall,
        msgs_per_s,
        msgs_ratio: msgs_per_s / substrate_msgs_per_s,
        peak_rss_mib: crate::memory::process_peak_mib(),
        simulation_peak_rss_mib,
        scenario: scenario.name.clone(),
        seeds,
        median_wall_ms: median_wall * 1e3,
        median_sim_seconds: median(&mut sims),
        median_messages: median(&mut msgs),
        duration_ms: scenario.duration_ms,
        median_ops: median(&mut ops),
        median_checker_ms,
        checker_share,
        checker_ms_per_kop,
        checker_stages,
    }
}

/// One seed's checker stages, wall time and history size.
struct SeedChecks {
    stages: StageTimes,
    wall_seconds: f64,
    ops: f64,
}

impl SeedChecks {
    /// Wall seconds of `stage`, or of every stage.
    fn seconds(&self, stage: Option<&str>) -> f64 {
        let chosen = self.stages.iter().filter(|lap| stage.is_none_or(|s| s == lap.stage));
        chosen.map(|lap| lap.wall.as_secs_f64()).sum()
    }
}

/// Medians over seeds of `stage` (or all stages): wall ms, share of the
/// seed's wall time, wall ms per 1,000 history ops.
fn stage_cost(checks: &[SeedChecks], stage: Option<&str>) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = checks.iter().map(|c| c.seconds(stage) * 1e3).collect();
    let mut shares: Vec<f64> = checks.iter().map(|c| c.seconds(stage) / c.wall_seconds).collect();
    let per_kop = |c: &SeedChecks| if c.ops > 0.0 { c.seconds(stage) * 1e6 / c.ops } else { 0.0 };
    let mut per_kop: Vec<f64> = checks.iter().map(per_kop).collect();
    (median(&mut ms), median(&mut shares), median(&mut per_kop))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// One node pings two responders over madsim connections; returns delivered
/// messages (requests + responses) per wall second.
fn ping_pong_msgs_per_s(seed: u64) -> f64 {
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let wall = std::time::Instant::now();
    let delivered = rt.block_on(async {
        let handle = Handle::current();
        let addrs: Vec<SocketAddr> = vec!["10.9.0.2:1".parse().unwrap(), "10.9.0.3:1".parse().unwrap()];
        for addr in &addrs {
            let addr = *addr;
            handle
                .create_node()
                .ip(addr.ip())
                .init(move || async move {
                    let ep = Endpoint::bind(addr).await.expect("bind");
                    let (tx, mut rx, _) = ep.accept1().await.expect("accept");
                    while let Ok(msg) = rx.recv().await {
                        let n = *msg.downcast::<u64>().expect("u64");
                        if tx.send(Box::new(n)).await.is_err() {
                            break;
                        }
                    }
                })
                .build();
        }
        let (done_tx, done_rx) = futures::channel::oneshot::channel();
        let done_tx = std::sync::Mutex::new(Some(done_tx));
        let client = move || {
            let done_tx = done_tx.lock().expect("once").take();
            let addrs = addrs.clone();
            async move {
                madsim::time::sleep(std::time::Duration::from_millis(10)).await;
                let ep = Endpoint::bind("10.9.0.1:0").await.expect("bind");
                let mut total = 0u64;
                let mut conns = Vec::new();
                for addr in addrs {
                    conns.push(ep.connect1(addr).await.expect("connect"));
                }
                for round in 0..PING_ROUNDS {
                    for (tx, _) in &conns {
                        tx.send(Box::new(round)).await.expect("send");
                    }
                    for (_, rx) in &mut conns {
                        let _ = rx.recv().await.expect("recv");
                    }
                    total += 2 * conns.len() as u64;
                }
                if let Some(tx) = done_tx {
                    let _ = tx.send(total);
                }
            }
        };
        handle.create_node().ip("10.9.0.1".parse().unwrap()).init(client).build();
        done_rx.await.expect("client finished")
    });
    delivered as f64 / wall.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_chaos_phase_drops_the_faults_it_cannot_reach() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/bench/standard.toml");
        let standard = Scenario::load(std::path::Path::new(file)).expect("the standard scenario loads");
        let short = with_duration(&standard, 30_000).expect("valid");
        assert_eq!(short.duration_ms, 30_000);
        assert!(short.faults.iter().all(|f| f.at_ms <= 30_000));
        assert_eq!(short.faults.len(), standard.faults.iter().filter(|f| f.at_ms <= 30_000).count());
        assert_eq!(with_duration(&standard, 120_000).expect("valid").faults, standard.faults);
        assert!(with_duration(&standard, 0).is_err());
    }
}
