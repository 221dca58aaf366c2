//! One seed of one scenario, start to verdict.
//!
//! Phase one (chaos): brokers, producers and consumers run while timed faults
//! and the random nemesis strike. Phase two (liveness): every fault is healed,
//! producers finish what they queued, and the drain must read every partition
//! to its end within the scenario's drain timeout. Then the checkers judge the
//! history.

use crate::checker::{check_history_timed, Invariant, StageTimes, Stopwatch, Violation};
use crate::disk::{Disk, DiskStats};
use crate::nemesis::{Nemesis, RandomNemesis, Undo};
use crate::node;
use crate::scenario::Scenario;
use crate::trace::TraceEvent;
use crate::world::{Phase, World, SUPERVISOR};
use broker_core::plant::{Plant, Plants};
use broker_core::types::BrokerId;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use madsim::time::{sleep, sleep_until, Duration, Instant};
use serde::Serialize;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// Simulated time the run may take beyond its phases before madsim stops it.
const TIME_LIMIT_SLACK: Duration = Duration::from_secs(600);
/// How often the supervisor checks whether producers or the drain are done.
const SUPERVISOR_TICK: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Planted bugs switched on in addition to the scenario's own.
    pub extra_plants: Vec<Plant>,
    /// Keep formatted trace lines (for `--trace`).
    pub keep_trace: bool,
    /// Keep the history in the result (for `--history`).
    pub keep_history: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// Violations of invariants the scenario demands (these fail the run).
    pub violations: Vec<Violation>,
    /// Findings of invariants the scenario expects or merely counts.
    pub findings: Vec<Violation>,
    /// Anomaly counts per invariant, whether or not they fail the run.
    pub counts: BTreeMap<Invariant, u64>,
    /// Sends reordered by retries with several requests in flight (Kafka allows it).
    pub reordered_sends: u64,
    /// Times a consumer detected the log truncated under its position and
    /// moved back (KIP-320, after unclean elections): observed, not judged.
    pub truncations_detected: u64,
    /// The longest a broker boot took to serve again (boot to accepted
    /// registration, simulated ms), if any broker booted and registered.
    pub slowest_recovery_ms: Option<u64>,
    /// Sends acknowledged to producers (the denominator of loss rates).
    pub acked_sends: u64,
    /// Per group, every partition pause a rebalance caused (simulated ms; see `rebalance`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rebalance_pauses_ms: BTreeMap<String, Vec<u64>>,
    /// Per group, records processed, lost and processed again.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group_delivery: BTreeMap<String, crate::checker::Delivery>,
    /// What every disk (brokers' and the controller's) did, summed.
    pub disk: crate::disk::DiskStats,
    pub trace_hash: String,
    pub sim_seconds: f64,
    pub events: u64,
    pub messages: u64,
    pub ops: u64,
    pub plants: Vec<Plant>,
    /// The random nemesis's fault mix for this seed (per-interval
    /// probabilities after the swarm draw), when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nemesis: Option<String>,
    #[serde(skip)]
    pub wall_seconds: f64,
    /// Wall time of each checker stage: the history checkers
    /// (`checker::HISTORY_STAGES`), then `replicas` and `recovery`.
    #[serde(skip)]
    pub checker_stages: StageTimes,
    /// The simulation's peak resident memory (to the runtime's end), when
    /// `memory` measures phases; each checker stage's is in its lap.
    #[serde(skip)]
    pub simulation_peak_rss_mib: Option<f64>,
    #[serde(skip)]
    pub trace_lines: Vec<String>,
    #[serde(skip)]
    pub history: Option<crate::history::History>,
}

impl RunResult {
    /// Invariants violated in this run (failing or not).
    pub fn found(&self) -> impl Iterator<Item = Invariant> + '_ {
        self.counts.iter().filter(|(_, n)| **n > 0).map(|(i, _)| *i)
    }
}

/// Runs one seed. Never panics on a finding: a panic inside the simulation is
/// itself reported as a `crash` violation.
pub fn run_seed(scenario: &Arc<Scenario>, seed: u64, options: &RunOptions) -> RunResult {
    let wall = std::time::Instant::now();
    // Starts the simulation's memory phase (when measured; `memory`).
    crate::memory::take_phase_peak_mib();
    let mut plants: Plants = scenario.plant.iter().copied().collect();
    for p in &options.extra_plants {
        plants.insert(*p);
    }
    let mut config = madsim::Config::default();
    let (lo, hi) = scenario.network.latency_ms;
    config.net.send_latency = Duration::from_millis(lo)..Duration::from_millis(hi.max(lo) + 1);
    config.net.packet_loss_rate = scenario.network.loss;
    let mut rt = Runtime::with_seed_and_config(seed, config);
    rt.add_simulator::<crate::disk::DiskSim>();
    let group_bound_ms = crate::groups::plans(scenario, |c| c).iter().map(|p| p.bound_ms).max().unwrap_or(0);
    rt.set_time_limit(
        Duration::from_millis(
            scenario.duration_ms + scenario.drain_timeout_ms + max_delivery_ms(scenario) + group_bound_ms,
        ) + TIME_LIMIT_SLACK,
    );
    let world_slot: Arc<std::sync::Mutex<Option<Arc<World>>>> = Arc::default();
    let slot = world_slot.clone();
    let scenario_arc = scenario.clone();
    let keep_trace = options.keep_trace;
    let outcome = crate::panics::catch(AssertUnwindSafe(|| {
        rt.block_on(async move {
            let world = Arc::new(World::new(scenario_arc, seed, plants, keep_trace));
            *slot.lock().expect("slot") = Some(world.clone());
            supervise(world).await
        })
    }));
    drop(rt);
    let simulation_peak_rss_mib = crate::memory::take_phase_peak_mib();
    let world = world_slot.lock().expect("slot").take();
    let Some(world) = world else {
        let detail = outcome.err().unwrap_or_else(|| "the world was never built".into());
        return crashed(scenario, seed, detail, wall);
    };
    let mut liveness = Vec::new();
    match outcome {
        Ok(Some(detail)) => liveness.push(Violation { invariant: Invariant::DrainIncomplete, detail }),
        Ok(None) => {}
        Err(panic) => liveness.push(Violation { invariant: Invariant::Crash, detail: panic }),
    }
    for detail in world.group_liveness.lock().expect("group liveness lock").drain(..) {
        liveness.push(Violation { invariant: Invariant::GroupLiveness, detail });
    }
    let mut result = judge(scenario, seed, &world, liveness, options, wall);
    result.simulation_peak_rss_mib = simulation_peak_rss_mib;
    result
}

fn max_delivery_ms(scenario: &Scenario) -> u64 {
    scenario.workload.producers.iter().map(|p| p.delivery_timeout_ms).max().unwrap_or(0)
}

/// Drives the run; returns a liveness finding if the drain did not finish.
async fn supervise(world: Arc<World>) -> Option<String> {
    let mut node_ids = spawn_nodes(&world);
    if has_power_loss(&world.scenario) {
        madsim::task::spawn(writeback(world.clone()));
    }
    let finding = supervise_phases(&world, &mut node_ids).await;
    // Stop every node and let the executor drop their tasks before the
    // runtime goes: madsim leaks a task that is still pending when its runtime
    // is dropped (the task and its info point at each other), and with it the
    // node's state and the world (about 15 MB per seed of the standard scenario).
    let handle = Handle::current();
    for id in node_ids {
        handle.kill(id);
    }
    sleep(SUPERVISOR_TICK).await;
    finding
}

async fn supervise_phases(world: &Arc<World>, node_ids: &mut Vec<NodeId>) -> Option<String> {
    world.trace(SUPERVISOR, TraceEvent::Phase { name: "chaos" });
    let start = Instant::now();
    let chaos_end = start + Duration::from_millis(world.scenario.duration_ms);
    let mut nemesis = Nemesis::new(world.clone(), node_ids.clone());
    run_faults(world, &mut nemesis, start, chaos_end).await;

    world.set_phase(Phase::Quiesce);
    world.trace(SUPERVISOR, TraceEvent::Phase { name: "heal" });
    world.mark_heal();
    nemesis.heal_all();
    let producers_deadline = Instant::now() + Duration::from_millis(max_delivery_ms(&world.scenario) + 1_000);
    while !world.all_producers_finished() && Instant::now() < producers_deadline {
        sleep(SUPERVISOR_TICK).await;
    }
    assert!(world.all_producers_finished(), "producers outlived their delivery timeout");
    stop_pipelines(world).await;

    world.set_phase(Phase::Drain);
    world.trace(SUPERVISOR, TraceEvent::Phase { name: "drain" });
    let drain_world = world.clone();
    let drain = Handle::current()
        .create_node()
        .name("drain")
        .ip(world.ip(world.drain_node()))
        .init(move || node::drain::run(drain_world.clone()))
        .build();
    node_ids.push(drain.id());
    let drain_deadline = Instant::now() + Duration::from_millis(world.scenario.drain_timeout_ms);
    while !world.is_drain_finished() && Instant::now() < drain_deadline {
        sleep(SUPERVISOR_TICK).await;
    }
    await_groups(world).await;
    settle_and_snapshot(world).await;
    world.trace(SUPERVISOR, TraceEvent::Phase { name: "end" });
    world.mark_end();
    if world.is_drain_finished() {
        return None;
    }
    let progress = world.drain_progress.lock().expect("drain lock");
    let behind: Vec<String> = progress
        .iter()
        .filter(|(_, (pos, end))| end.is_none_or(|e| *pos < e))
        .map(|(p, (pos, end))| match end {
            Some(e) => format!("{p} at {pos} of {e}"),
            None => format!("{p} end offset never learned"),
        })
        .collect();
    Some(format!(
        "drain did not finish within {} ms after heal: {}",
        world.scenario.drain_timeout_ms,
        behind.join(", ")
    ))
}

/// Waits until every pipeline member has caught up with its input (or
/// the drain timeout has passed), then stops the pipelines, so that the
/// drain reads their final output and committed offsets.
async fn stop_pipelines(world: &World) {
    if world.pipeline_consumers().is_empty() {
        return;
    }
    // A member with no partitions polls nothing: idle means caught up only
    // once its group has settled with every partition owned.
    let plans: Vec<crate::groups::GroupPlan> = crate::groups::plans(&world.scenario, |c| world.consumer_process(c))
        .into_iter()
        .filter(|p| p.members.iter().any(|m| world.pipeline_processes().contains(m)))
        .collect();
    let caught_up = || {
        let views = world.group_views.lock().expect("group views lock");
        world.all_pipelines_idle() && plans.iter().all(|p| crate::groups::settled(p, &views))
    };
    let bound_ms = plans.iter().map(|p| p.bound_ms).max().unwrap_or(0).max(world.scenario.drain_timeout_ms);
    let deadline = Instant::now() + Duration::from_millis(bound_ms);
    while !caught_up() && Instant::now() < deadline {
        sleep(SUPERVISOR_TICK).await;
    }
    world.stop_pipelines(caught_up());
    world.trace(SUPERVISOR, TraceEvent::Phase { name: "pipelines-stopped" });
}

/// Group liveness: waits until every consumer group has settled (one
/// generation, every partition owned once) or its bound after the heal has
/// passed; a group that did not settle is a finding.
async fn await_groups(world: &World) {
    let plans = crate::groups::plans(&world.scenario, |c| world.consumer_process(c));
    if plans.is_empty() {
        return;
    }
    let heal_ns = world.heal_ns();
    let deadline_ns = |plan: &crate::groups::GroupPlan| heal_ns.saturating_add(plan.bound_ms * 1_000_000);
    loop {
        let now_ns = world.clocks.elapsed_ns();
        let views = world.group_views.lock().expect("group views lock").clone();
        let waiting: Vec<&crate::groups::GroupPlan> =
            plans.iter().filter(|p| !crate::groups::settled(p, &views) && now_ns < deadline_ns(p)).collect();
        if waiting.is_empty() {
            let unsettled = plans.iter().filter(|p| !crate::groups::settled(p, &views));
            let findings = unsettled.map(|p| {
                format!(
                    "group {} did not settle within {} ms after the heal: {}",
                    p.id,
                    p.bound_ms,
                    crate::groups::describe(p, &views)
                )
            });
            world.group_liveness.lock().expect("group liveness lock").extend(findings);
            return;
        }
        sleep(SUPERVISOR_TICK).await;
    }
}

/// After the drain: give replication time to settle, then take every live
/// broker's replica snapshot for the checkers. The bound: a request a
/// broker sent into a fault may still be outstanding, so one broker request
/// timeout, then a replica fetch round and two heartbeats (the follower
/// catches up, the ISR re-expands, the controller's image reaches
/// everyone), plus slack.
async fn settle_and_snapshot(world: &World) {
    let cluster = &world.scenario.cluster;
    let settle = Duration::from_millis(
        cluster.broker.request_timeout_ms
            + 2 * cluster.controller.heartbeat_interval_ms
            + cluster.broker.replica_fetch_wait_max_ms
            + SETTLE_SLACK_MS,
    );
    sleep(settle).await;
    world.replication.lock().expect("replication lock").close();
    world.request_snapshots();
    // Brokers publish at their next wake-up, at the latest their next heartbeat.
    let deadline = Instant::now() + Duration::from_millis(cluster.controller.heartbeat_interval_ms + SETTLE_SLACK_MS);
    while world.snapshots_taken() < cluster.brokers as usize && Instant::now() < deadline {
        sleep(SUPERVISOR_TICK).await;
    }
}

/// Slack added to the settle and snapshot waits (simulated ms).
const SETTLE_SLACK_MS: u64 = 1_000;

/// Whether a power loss can happen in this scenario (timed or random).
fn has_power_loss(scenario: &crate::scenario::Scenario) -> bool {
    let timed = scenario.faults.iter().any(|f| matches!(f.fault, crate::scenario::Fault::PowerLoss { .. }));
    timed || scenario.nemesis.as_ref().is_some_and(|n| n.power_loss > 0.0)
}

/// How often the kernel's flusher looks for expired dirty data (Linux's
/// `dirty_writeback_centisecs`).
const WRITEBACK_INTERVAL: Duration = Duration::from_millis(5_000);

/// The kernels' writeback on every disk. Only a power loss can tell what
/// was written back, so runs without one do not tick it (their schedule,
/// and so their traces, stay as they were).
async fn writeback(world: Arc<World>) {
    loop {
        let now_ms = world.clocks.elapsed().as_millis() as u64;
        for (_, disk) in world.all_disks() {
            disk.with(|d| d.writeback(now_ms));
        }
        sleep(WRITEBACK_INTERVAL).await;
    }
}

fn spawn_nodes(world: &Arc<World>) -> Vec<NodeId> {
    let handle = Handle::current();
    let mut ids = Vec::with_capacity(world.nodes.len());
    for (index, (name, kind)) in world.nodes.iter().enumerate() {
        let w = world.clone();
        let builder = handle.create_node().name(name.clone()).ip(world.ip(index));
        let built = match *kind {
            crate::world::NodeKind::Broker(b) => {
                builder.init(move || node::broker::run(w.clone(), BrokerId(b))).build()
            }
            crate::world::NodeKind::Controller => builder.init(move || node::controller::run(w.clone())).build(),
            crate::world::NodeKind::Producer(p) => builder.init(move || node::producer::run(w.clone(), p)).build(),
            crate::world::NodeKind::Consumer(c) => builder.init(move || node::consumer::run(w.clone(), c)).build(),
            // The drain node is created when the drain starts.
            crate::world::NodeKind::Drain => break,
        };
        if let Some(disk) = world.disk_of(index) {
            madsim::plugin::simulator::<crate::disk::DiskSim>().attach(built.id(), disk.clone());
        }
        ids.push(built.id());
    }
    ids
}

/// Applies timed faults and the random nemesis until `chaos_end`.
async fn run_faults(world: &Arc<World>, nemesis: &mut Nemesis, start: Instant, chaos_end: Instant) {
    let mut random = world.scenario.nemesis.clone().map(|spec| RandomNemesis::new(world, spec));
    if let Some(r) = &random {
        let mix = r.describe();
        world.trace(SUPERVISOR, TraceEvent::Fault { what: format!("nemesis mix: {mix}") });
        *world.nemesis_mix.lock().expect("nemesis lock") = Some(mix);
    }
    let mut timed = world.scenario.faults.iter().peekable();
    let mut undos: Vec<(Instant, Undo)> = Vec::new();
    let mut next_random = random.as_ref().map(|r| start + r.interval());
    loop {
        let next_timed = timed.peek().map(|f| start + Duration::from_millis(f.at_ms));
        let next_undo = undos.iter().map(|(t, _)| *t).min();
        let next = [next_timed, next_undo, next_random, Some(chaos_end)].into_iter().flatten().min();
        let next = next.expect("chaos_end is always there");
        sleep_until(next).await;
        let now = Instant::now();
        if now >= chaos_end {
            return;
        }
        while timed.peek().is_some_and(|f| start + Duration::from_millis(f.at_ms) <= now) {
            let fault = timed.next().expect("peeked");
            nemesis.apply(&fault.fault);
        }
        let (due, later): (Vec<_>, Vec<_>) = undos.drain(..).partition(|(t, _)| *t <= now);
        undos = later;
        for (_, undo) in due {
            nemesis.undo(undo);
        }
        if let (Some(r), Some(at)) = (random.as_mut(), next_random) {
            if at <= now {
                for (fault, lasts) in r.draw() {
                    let undo = nemesis.apply(&fault);
                    undos.push((now + lasts, undo));
                }
                next_random = Some(at + r.interval());
            }
        }
    }
}

/// The run's pipelines, one per group, with their member processes.
fn pipelines(scenario: &Scenario, world: &World) -> Vec<crate::history::PipelineInfo> {
    let mut by_group: BTreeMap<String, crate::history::PipelineInfo> = BTreeMap::new();
    for (c, (_, spec, _)) in scenario.consumers().iter().enumerate() {
        let (Some(pipeline), Some(group)) = (&spec.pipeline, &spec.group) else { continue };
        let info = by_group.entry(group.id.clone()).or_insert_with(|| crate::history::PipelineInfo {
            group: group.id.as_str().into(),
            output: world.topic_name(&pipeline.output),
            caught_up: world.pipelines_caught_up(),
            ..Default::default()
        });
        for topic in &spec.topics {
            let name = world.topic_name(topic);
            if !info.inputs.contains(&name) {
                info.inputs.push(name);
            }
        }
        info.processes.push(world.consumer_process(c as u32));
    }
    by_group.into_values().collect()
}

fn judge(
    scenario: &Scenario,
    seed: u64,
    world: &World,
    liveness: Vec<Violation>,
    options: &RunOptions,
    wall: std::time::Instant,
) -> RunResult {
    // The run is over: of the disks only their counters are read from here
    // on, and their files are the largest thing the checkers do not need.
    let disk = world.all_disks().map(|(_, d)| d.with(|d| d.stats())).fold(DiskStats::default(), |a, b| a + b);
    world.all_disks().for_each(|(_, d)| d.with(Disk::release_files));
    let mut history = std::mem::take(&mut *world.history.lock().expect("history lock"));
    // Its slack (the op vector grows by doubling) is the next largest.
    history.ops.shrink_to_fit();
    history.drain_processes = vec![world.drain_process()];
    history.ordered_producers = (0..scenario.producer_count())
        .filter(|p| node::producer::promises_order(node::producer::spec_of(world, *p)))
        .map(|p| world.producer_process(p))
        .collect();
    history.read_committed_consumers = scenario
        .consumers()
        .iter()
        .enumerate()
        .filter(|(_, (_, spec, _))| spec.isolation == crate::scenario::IsolationSpec::ReadCommitted)
        .map(|(c, _)| world.consumer_process(c as u32))
        .chain(world.has_transactions().then(|| world.drain_process()))
        .collect();
    let pipeline_processes = world.pipeline_processes();
    history.idempotent_producers = (0..scenario.producer_count())
        .filter(|p| node::producer::spec_of(world, *p).idempotence)
        .map(|p| world.producer_process(p))
        .chain(pipeline_processes.iter().copied())
        .collect();
    history.pipelines = pipelines(scenario, world);
    // The replica checkers first, so that the replicas' observations (the
    // records of every leader change and final snapshot) are freed before
    // the history checkers build their views; their findings are merged
    // after the history's, as ever.
    let mut clock = Stopwatch::start();
    // Every acknowledging producer's acks are judged: acks=all ones must
    // hold; acks=1 losses are Kafka's documented weakness, which scenarios
    // with acks=1 producers list as expected.
    let acks_all = (0..scenario.producer_count())
        .filter(|p| node::producer::spec_of(world, *p).acks != broker_core::protocol::Acks::None)
        .map(|p| world.producer_process(p))
        .chain(pipeline_processes)
        .collect();
    let replication = world.replication.lock().expect("replication lock").finish(acks_all);
    let replica_report = crate::checker::replicas::check_replicas(&history, &replication);
    drop(replication);
    clock.lap("replicas");
    let replica_laps = clock.laps();
    let (mut report, mut checker_stages) = check_history_timed(&history);
    crate::checker::replicas::merge(&mut report, replica_report);
    checker_stages.extend(replica_laps);
    let mut clock = Stopwatch::start();
    let recoveries = world.recoveries();
    crate::checker::replicas::merge(&mut report, crate::checker::recovery::check_recoveries(&recoveries));
    clock.lap("recovery");
    checker_stages.extend(clock.laps());
    let mut counts = report.counts;
    let mut all = report.violations;
    for v in liveness {
        *counts.entry(v.invariant).or_insert(0) += 1;
        all.push(v);
    }
    let (violations, findings): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|v| scenario.expect.must_hold.contains(&v.invariant));
    let mut trace = world.trace.lock().expect("trace lock");
    trace.absorb_history(&history);
    let plants: Vec<Plant> = world.plants.iter().collect();
    RunResult {
        scenario: scenario.name.clone(),
        seed,
        verdict: if violations.is_empty() { Verdict::Pass } else { Verdict::Fail },
        violations,
        findings,
        counts,
        reordered_sends: report.reordered_sends,
        truncations_detected: report.truncations_detected,
        slowest_recovery_ms: recoveries.slowest_ms(),
        acked_sends: history
            .ops
            .iter()
            .filter(|op| matches!(op.outcome, Some(crate::history::Outcome::SendOk { .. })))
            .count() as u64,
        rebalance_pauses_ms: crate::rebalance::partition_pauses_ms(&history),
        group_delivery: report.group_delivery,
        disk,
        trace_hash: format!("{:016x}", trace.hash()),
        sim_seconds: world.sim_seconds(),
        events: trace.events(),
        messages: world.messages.load(std::sync::atomic::Ordering::Relaxed),
        ops: history.ops.len() as u64,
        plants,
        nemesis: world.nemesis_mix.lock().expect("nemesis lock").clone(),
        wall_seconds: wall.elapsed().as_secs_f64(),
        checker_stages,
        simulation_peak_rss_mib: None,
        trace_lines: trace.take_lines(),
        history: options.keep_history.then_some(history),
    }
}

fn crashed(scenario: &Scenario, seed: u64, detail: String, wall: std::time::Instant) -> RunResult {
    let violation = Violation { invariant: Invariant::Crash, detail };
    RunResult {
        scenario: scenario.name.clone(),
        seed,
        verdict: Verdict::Fail,
        violations: vec![violation],
        findings: Vec::new(),
        counts: BTreeMap::from([(Invariant::Crash, 1)]),
        reordered_sends: 0,
        truncations_detected: 0,
        slowest_recovery_ms: None,
        acked_sends: 0,
        rebalance_pauses_ms: BTreeMap::new(),
        group_delivery: BTreeMap::new(),
        disk: Default::default(),
        trace_hash: "0000000000000000".into(),
        sim_seconds: 0.0,
        events: 0,
        messages: 0,
        ops: 0,
        plants: scenario.plant.clone(),
        nemesis: None,
        wall_seconds: wall.elapsed().as_secs_f64(),
        checker_stages: Vec::new(),
        simulation_peak_rss_mib: None,
        trace_lines: Vec::new(),
        history: None,
    }
}
