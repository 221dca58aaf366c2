//! The shared state of one run: who the nodes are, their disks (which outlive
//! crashes), the clocks, the history and the trace. Node tasks reach it through
//! an `Arc`; a run is single-threaded, so the mutexes are never contended.

use crate::checker::recovery::{BootEnd, BrokerBoot, Recoveries};
use crate::clock::Clocks;
use crate::disk::{Disk, SharedDisk};
use crate::history::{Call, History, Outcome, ProcessId};
use crate::scenario::Scenario;
use crate::trace::{Trace, TraceEvent};
use broker_core::broker::{
    ClusterLayout, TopicRequest, CONSUMER_OFFSETS_TOPIC, INTERNAL_TOPICS, TRANSACTION_STATE_TOPIC,
};
use broker_core::plant::Plants;
use broker_core::protocol::Peer;
use broker_core::types::{BrokerId, TopicPartition};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// The node index the supervisor (the nemesis, the runner) traces under.
pub const SUPERVISOR: usize = u32::MAX as usize;

/// The port every broker listens on.
pub const BROKER_PORT: u16 = 9092;

/// What a node is. Node indexes: brokers first, then the controller,
/// producers, consumers, the drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Broker(u32),
    Controller,
    Producer(u32),
    Consumer(u32),
    Drain,
}

/// The run's phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Workload and faults.
    Chaos = 0,
    /// Faults healed; producers finish what they queued, consumers stop.
    Quiesce = 1,
    /// The drain reads every partition from the start.
    Drain = 2,
}

pub struct World {
    pub scenario: Arc<Scenario>,
    pub seed: u64,
    pub plants: Plants,
    pub layout: ClusterLayout,
    /// Topic names by topic id, shared by every history entry that names them.
    pub topic_names: Vec<crate::history::TopicName>,
    /// The same names as the history's partitions hold them, by topic id.
    pub topics: Vec<crate::history::Topic>,
    pub nodes: Vec<(String, NodeKind)>,
    pub clocks: Clocks,
    pub history: Mutex<History>,
    pub trace: Mutex<Trace>,
    /// One disk per broker; survives kill and restart (the page cache too),
    /// not power loss.
    pub disks: Vec<SharedDisk>,
    /// The controller's disk (its metadata survives its restarts).
    pub controller_disk: SharedDisk,
    /// Replica observations for the replica checkers.
    pub replication: Mutex<crate::observe::Recorder>,
    pub messages: AtomicU64,
    phase: AtomicU8,
    boots: Vec<AtomicU64>,
    /// How far the drain got (for the liveness verdict).
    pub drain_progress: Mutex<crate::node::drain::DrainProgress>,
    drain_finished: std::sync::atomic::AtomicBool,
    producers_done: AtomicU64,
    /// Simulated time at which the run ended (set by the supervisor).
    end_ns: AtomicU64,
    /// Set at the end of the run: brokers publish their replicas' state, once.
    snapshots_wanted: std::sync::atomic::AtomicBool,
    snapshots_taken: Mutex<std::collections::BTreeSet<BrokerId>>,
    /// Each broker loop's waker, so a snapshot request wakes every live
    /// broker at the same simulated instant (consistent snapshots).
    snapshot_wakers: Mutex<std::collections::BTreeMap<BrokerId, std::task::Waker>>,
    /// The random nemesis's fault mix for this seed, for the report.
    pub nemesis_mix: Mutex<Option<String>>,
    /// Nodes that stopped themselves (a failed disk write) and stay down
    /// until a `disk-heal` or the end-of-run heal restarts them.
    halted: Mutex<std::collections::BTreeSet<usize>>,
    /// Brokers asked for a controlled shutdown (the `stop` verb).
    stops_wanted: Mutex<std::collections::BTreeSet<BrokerId>>,
    /// Every broker boot, for recovery-bounded.
    broker_boots: Mutex<Vec<BrokerBoot>>,
    /// When the heal began (simulated ns); `u64::MAX` before it.
    heal_ns: AtomicU64,
    /// Per group, what each member last learned (generation, what it owns),
    /// for group liveness: the supervisor waits for every group to settle.
    pub group_views: Mutex<crate::groups::GroupViews>,
    /// Group liveness findings, written by the supervisor.
    pub group_liveness: Mutex<Vec<String>>,
    /// Per pipeline member process, whether it last reported itself caught up.
    pipelines_idle: Mutex<std::collections::BTreeMap<ProcessId, bool>>,
    pipelines_stopped: std::sync::atomic::AtomicBool,
    pipelines_caught_up: std::sync::atomic::AtomicBool,
}

impl World {
    /// The shared name of topic `name` (a scenario topic).
    pub fn topic_name(&self, name: &str) -> crate::history::TopicName {
        self.topic_names.iter().find(|t| &***t == name).cloned().unwrap_or_else(|| name.into())
    }

    /// Topic `name` as the history's partitions hold it (shared).
    pub fn topic(&self, name: &str) -> crate::history::Topic {
        self.topics.iter().find(|t| t.as_str() == name).cloned().unwrap_or_else(|| name.into())
    }

    pub fn new(scenario: Arc<Scenario>, seed: u64, plants: Plants, keep_trace_lines: bool) -> World {
        let mut nodes = Vec::new();
        for b in 0..scenario.cluster.brokers {
            nodes.push((format!("broker-{b}"), NodeKind::Broker(b)));
        }
        nodes.push((crate::scenario::CONTROLLER_NODE.to_string(), NodeKind::Controller));
        for p in 0..scenario.producer_count() {
            nodes.push((format!("producer-{p}"), NodeKind::Producer(p)));
        }
        for c in 0..scenario.consumer_count() {
            nodes.push((format!("consumer-{c}"), NodeKind::Consumer(c)));
        }
        nodes.push(("drain".to_string(), NodeKind::Drain));
        let topics: Vec<TopicRequest> = scenario
            .topics
            .iter()
            .map(|t| TopicRequest {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                min_insync_replicas: t.min_insync_replicas,
            })
            .chain(offsets_topic(&scenario))
            .chain(transaction_state_topic(&scenario))
            .collect();
        let layout = ClusterLayout::new(scenario.cluster.brokers, &topics);
        let names = nodes.iter().map(|(n, _)| n.clone()).collect();
        let topic_names: Vec<crate::history::TopicName> =
            layout.topics.iter().map(|t| t.name.as_str().into()).collect();
        let topics: Vec<crate::history::Topic> = layout.topics.iter().map(|t| t.name.as_str().into()).collect();
        World {
            disks: (0..scenario.cluster.brokers).map(|b| new_disk(&scenario, seed, u64::from(b))).collect(),
            controller_disk: new_disk(&scenario, seed, u64::from(scenario.cluster.brokers)),
            halted: Mutex::default(),
            stops_wanted: Mutex::default(),
            broker_boots: Mutex::default(),
            heal_ns: AtomicU64::new(u64::MAX),
            group_views: Mutex::default(),
            group_liveness: Mutex::default(),
            pipelines_idle: Mutex::default(),
            pipelines_stopped: std::sync::atomic::AtomicBool::new(false),
            pipelines_caught_up: std::sync::atomic::AtomicBool::new(false),
            clocks: Clocks::new(nodes.len()),
            trace: Mutex::new(Trace::new(names, keep_trace_lines)),
            history: Mutex::new(History::with_capacity(expected_sends(&scenario))),
            messages: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Chaos as u8),
            boots: (0..nodes.len()).map(|_| AtomicU64::new(0)).collect(),
            drain_progress: Mutex::default(),
            drain_finished: std::sync::atomic::AtomicBool::new(false),
            producers_done: AtomicU64::new(0),
            end_ns: AtomicU64::new(0),
            snapshots_wanted: std::sync::atomic::AtomicBool::new(false),
            snapshots_taken: Mutex::default(),
            snapshot_wakers: Mutex::default(),
            nemesis_mix: Mutex::default(),
            replication: Mutex::new(crate::observe::Recorder::new(
                &layout,
                &topics,
                scenario.cluster.unclean_leader_election,
            )),
            nodes,
            topic_names,
            topics,
            layout,
            plants,
            seed,
            scenario,
        }
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|(n, _)| n == name)
    }

    pub fn node_name(&self, node: usize) -> &str {
        &self.nodes[node].0
    }

    pub fn broker_node(&self, broker: BrokerId) -> usize {
        broker.0 as usize
    }

    pub fn controller_node(&self) -> usize {
        self.scenario.cluster.brokers as usize
    }

    pub fn producer_node(&self, p: u32) -> usize {
        self.controller_node() + 1 + p as usize
    }

    pub fn consumer_node(&self, c: u32) -> usize {
        self.producer_node(self.scenario.producer_count()) + c as usize
    }

    pub fn drain_node(&self) -> usize {
        self.nodes.len() - 1
    }

    /// History process ids: producers first, then consumers, then the drain.
    pub fn producer_process(&self, p: u32) -> ProcessId {
        p
    }

    pub fn consumer_process(&self, c: u32) -> ProcessId {
        self.scenario.producer_count() + c
    }

    pub fn drain_process(&self) -> ProcessId {
        self.scenario.producer_count() + self.scenario.consumer_count()
    }

    pub fn ip(&self, node: usize) -> IpAddr {
        let (group, n) = match self.nodes[node].1 {
            NodeKind::Broker(b) => (0, b),
            NodeKind::Controller => (4, 0),
            NodeKind::Producer(p) => (1, p),
            NodeKind::Consumer(c) => (2, c),
            NodeKind::Drain => (3, 0),
        };
        IpAddr::V4(Ipv4Addr::new(10, 0, group, n as u8 + 1))
    }

    pub fn broker_addr(&self, broker: BrokerId) -> SocketAddr {
        SocketAddr::new(self.ip(self.broker_node(broker)), BROKER_PORT)
    }

    /// The node a peer (a broker or the controller) runs on.
    pub fn peer_node(&self, peer: Peer) -> usize {
        match peer {
            Peer::Broker(b) => self.broker_node(b),
            Peer::Controller => self.controller_node(),
        }
    }

    pub fn peer_addr(&self, peer: Peer) -> SocketAddr {
        SocketAddr::new(self.ip(self.peer_node(peer)), BROKER_PORT)
    }

    /// The workload's partitions: every partition but the internal topics'.
    pub fn workload_partitions(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        let internal: Vec<_> =
            INTERNAL_TOPICS.iter().filter_map(|n| self.layout.topic_by_name(n)).map(|t| t.id).collect();
        self.layout.partitions().filter(move |tp| !internal.contains(&tp.topic))
    }

    /// Whether any producer of the scenario is transactional.
    pub fn has_transactions(&self) -> bool {
        self.scenario.has_transactions()
    }

    /// The consumer numbers of pipeline members (consumers with `transform_to`).
    pub fn pipeline_consumers(&self) -> Vec<u32> {
        let consumers = self.scenario.consumers();
        consumers
            .iter()
            .enumerate()
            .filter(|(_, (_, spec, _))| spec.pipeline.is_some())
            .map(|(c, _)| c as u32)
            .collect()
    }

    /// The processes of pipeline members.
    pub fn pipeline_processes(&self) -> Vec<ProcessId> {
        self.pipeline_consumers().into_iter().map(|c| self.consumer_process(c)).collect()
    }

    /// A pipeline member reports whether it has caught up (after the chaos
    /// phase, with producers done: its last polls empty, no transaction open).
    pub fn pipeline_idle(&self, process: ProcessId, idle: bool) {
        self.pipelines_idle.lock().expect("pipelines lock").insert(process, idle);
    }

    /// Whether every pipeline member has reported itself caught up.
    pub fn all_pipelines_idle(&self) -> bool {
        let idle = self.pipelines_idle.lock().expect("pipelines lock");
        self.pipeline_consumers().iter().all(|c| idle.get(&self.consumer_process(*c)).copied().unwrap_or(false))
    }

    /// The supervisor stops the pipelines before the drain: from now on they
    /// begin no transaction. `caught_up`: they had all caught up by then.
    pub fn stop_pipelines(&self, caught_up: bool) {
        self.pipelines_caught_up.store(caught_up, Ordering::Relaxed);
        self.pipelines_stopped.store(true, Ordering::Relaxed);
    }

    pub fn pipelines_stopped(&self) -> bool {
        self.pipelines_stopped.load(Ordering::Relaxed)
    }

    pub fn pipelines_caught_up(&self) -> bool {
        self.pipelines_caught_up.load(Ordering::Relaxed)
    }

    pub fn all_brokers(&self) -> Vec<BrokerId> {
        self.layout.brokers.clone()
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Chaos,
            1 => Phase::Quiesce,
            _ => Phase::Drain,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn trace(&self, node: usize, event: TraceEvent) {
        let t = self.clocks.elapsed_ns();
        self.end_ns.store(t, Ordering::Relaxed);
        self.trace.lock().expect("trace lock").record(t, node as u32, event);
    }

    /// How many times `node` booted before this boot.
    pub fn next_boot(&self, node: usize) -> u64 {
        self.boots[node].fetch_add(1, Ordering::Relaxed)
    }

    /// A broker's process started (before it recovers its logs).
    pub fn broker_booted(&self, broker: BrokerId) {
        let boot = BrokerBoot { broker: broker.0, boot_ns: self.clocks.elapsed_ns(), registered_ns: None, ended: None };
        self.broker_boots.lock().expect("boots lock").push(boot);
    }

    /// The controller accepted a broker's registration (only a boot's first counts).
    pub fn broker_registered(&self, broker: BrokerId) {
        let now = self.clocks.elapsed_ns();
        let mut boots = self.broker_boots.lock().expect("boots lock");
        if let Some(boot) = boots.iter_mut().rev().find(|b| b.broker == broker.0) {
            boot.registered_ns.get_or_insert(now);
        }
    }

    /// A node's process ended; recorded for the current boot of a broker
    /// (the first end counts: killing a halted broker changes nothing).
    pub fn node_ended(&self, node: usize, how: BootEnd) {
        let NodeKind::Broker(b) = self.nodes[node].1 else { return };
        let now = self.clocks.elapsed_ns();
        let mut boots = self.broker_boots.lock().expect("boots lock");
        if let Some(boot) = boots.iter_mut().rev().find(|boot| boot.broker == b) {
            boot.ended.get_or_insert((now, how));
        }
    }

    /// The liveness phase begins: every fault is healed.
    /// A node was killed: if it was a group member, its process owns
    /// nothing from now on (recorded as a `revoked` with `lost`, at the
    /// moment of death, so the checkers do not count a dead process as an
    /// owner until its next incarnation learns where it stands).
    pub fn member_died(&self, node: usize) {
        let NodeKind::Consumer(c) = self.nodes[node].1 else { return };
        let Some((_, spec, _)) = self.scenario.consumers().into_iter().nth(c as usize) else { return };
        let Some(group) = &spec.group else { return };
        let process = self.consumer_process(c);
        let mut views = self.group_views.lock().expect("group views lock");
        let Some(view) = views.get_mut(&group.id).and_then(|members| members.get_mut(&process)) else { return };
        view.generation = None;
        let owned = std::mem::take(&mut view.owned);
        drop(views);
        if !owned.is_empty() {
            let revoked = crate::history::Revoked {
                group: group.id.as_str().into(),
                partitions: owned.into_iter().collect(),
                lost: true,
            };
            let call = Call::Revoked(Box::new(revoked));
            let op = self.invoke(process, call);
            self.complete(op, Outcome::Ok);
        }
    }

    /// When the heal began (simulated ns); `u64::MAX` before it.
    pub fn heal_ns(&self) -> u64 {
        self.heal_ns.load(Ordering::Relaxed)
    }

    pub fn mark_heal(&self) {
        self.heal_ns.store(self.clocks.elapsed_ns(), Ordering::Relaxed);
    }

    /// The broker boots for recovery-bounded (call after `mark_end`).
    pub fn recoveries(&self) -> Recoveries {
        let heal_ns = self.heal_ns.load(Ordering::Relaxed);
        Recoveries {
            boots: self.broker_boots.lock().expect("boots lock").clone(),
            heal_ns: (heal_ns != u64::MAX).then_some(heal_ns),
            end_ns: self.end_ns.load(Ordering::Relaxed),
            bound_ns: self.scenario.recovery_bound_ms * 1_000_000,
        }
    }

    /// Marks the end of the run: call inside the runtime.
    pub fn mark_end(&self) {
        self.end_ns.store(self.clocks.elapsed_ns(), Ordering::Relaxed);
    }

    /// Simulated seconds from start to `mark_end` (or to the last trace event).
    pub fn sim_seconds(&self) -> f64 {
        self.end_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    pub fn producer_finished(&self) {
        self.producers_done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn all_producers_finished(&self) -> bool {
        self.producers_done.load(Ordering::Relaxed) == u64::from(self.scenario.producer_count())
    }

    pub fn drain_finished(&self) {
        self.drain_finished.store(true, Ordering::Relaxed);
    }

    pub fn is_drain_finished(&self) -> bool {
        self.drain_finished.load(Ordering::Relaxed)
    }

    /// Asks every live broker for its replicas' final state, waking them all
    /// now so that they answer at this same simulated instant.
    pub fn request_snapshots(&self) {
        self.snapshots_wanted.store(true, Ordering::Relaxed);
        let wakers = std::mem::take(&mut *self.snapshot_wakers.lock().expect("lock"));
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// A broker loop (one per boot): wake it when snapshots are requested.
    pub fn on_snapshot_request(&self, broker: BrokerId, waker: &std::task::Waker) {
        self.snapshot_wakers.lock().expect("lock").insert(broker, waker.clone());
    }

    /// Whether `broker` should publish its snapshot now.
    pub fn snapshot_wanted(&self, broker: BrokerId) -> bool {
        self.snapshots_wanted.load(Ordering::Relaxed) && !self.snapshots_taken.lock().expect("lock").contains(&broker)
    }

    pub fn snapshot_taken(&self, broker: BrokerId) {
        self.snapshots_taken.lock().expect("lock").insert(broker);
    }

    /// Asks `broker` for a controlled shutdown, waking its loop.
    pub fn request_stop(&self, broker: BrokerId) {
        self.stops_wanted.lock().expect("lock").insert(broker);
        if let Some(waker) = self.snapshot_wakers.lock().expect("lock").get(&broker) {
            waker.wake_by_ref();
        }
    }

    /// Whether `broker` should shut down now (forgotten once asked: a
    /// restarted broker runs on).
    pub fn take_stop(&self, broker: BrokerId) -> bool {
        self.stops_wanted.lock().expect("lock").remove(&broker)
    }

    /// Every disk with its node index (brokers, then the controller).
    pub fn all_disks(&self) -> impl Iterator<Item = (usize, &SharedDisk)> {
        let controller = (self.controller_node(), &self.controller_disk);
        self.disks.iter().enumerate().chain(std::iter::once(controller))
    }

    /// The disk of node `node`, if it has one.
    pub fn disk_of(&self, node: usize) -> Option<&SharedDisk> {
        self.all_disks().find(|(n, _)| *n == node).map(|(_, d)| d)
    }

    /// Node `node` stopped itself after a failed disk write.
    pub fn mark_halted(&self, node: usize) {
        self.halted.lock().expect("halted lock").insert(node);
    }

    /// Whether node `node` had halted (and forgets it: it is being restarted).
    pub fn take_halted(&self, node: usize) -> bool {
        self.halted.lock().expect("halted lock").remove(&node)
    }

    pub fn snapshots_taken(&self) -> usize {
        self.snapshots_taken.lock().expect("lock").len()
    }

    pub fn count_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    pub fn invoke(&self, process: ProcessId, call: Call) -> u64 {
        let t = self.clocks.elapsed_ns();
        self.history.lock().expect("history lock").invoke(process, t, call)
    }

    pub fn complete(&self, op: u64, outcome: Outcome) {
        let t = self.clocks.elapsed_ns();
        self.history.lock().expect("history lock").complete(op, t, outcome);
    }
}

/// A node's disk, drawing its faults from its own stream of the run seed.
fn new_disk(scenario: &Scenario, seed: u64, index: u64) -> SharedDisk {
    let mut disk = Disk::new(crate::rng::stream(seed, crate::rng::Purpose::Disk, index));
    disk.set_writeback_expire_ms(scenario.cluster.disk.writeback_expire_ms);
    if let Some(capacity) = scenario.cluster.disk.capacity_bytes {
        disk.set_capacity(capacity);
    }
    disk.set_latency(scenario.cluster.disk.latency, crate::rng::stream(seed, crate::rng::Purpose::DiskLatency, index));
    SharedDisk::new(disk)
}

/// Sends the workload will make (the history's size, roughly), so the history
/// is allocated once instead of grown by copying; capped so an extreme
/// scenario does not reserve memory it may never use.
fn expected_sends(scenario: &Scenario) -> usize {
    const MAX_RESERVED_OPS: u64 = 1 << 20;
    let per_s: u64 = scenario.producers().iter().map(|(_, spec)| u64::from(spec.rate_per_s)).sum();
    let sends = per_s.saturating_mul(scenario.duration_ms) / 1000;
    (sends + sends / 4 + 1024).min(MAX_RESERVED_OPS) as usize
}

/// `__transaction_state`, when a producer is transactional: Kafka's defaults
/// of replication factor 3 (at most the cluster's size) and
/// min.insync.replicas 2 (at most that).
fn transaction_state_topic(scenario: &Scenario) -> Option<TopicRequest> {
    let transactional = scenario.has_transactions();
    let replication_factor = scenario.cluster.brokers.min(3);
    transactional.then(|| TopicRequest {
        name: TRANSACTION_STATE_TOPIC.to_string(),
        partitions: scenario.cluster.transaction_state_partitions,
        replication_factor,
        min_insync_replicas: replication_factor.min(2),
    })
}

/// `__consumer_offsets`, when a consumer is in a group: Kafka's defaults of
/// replication factor 3 (at most the cluster's size) and min.insync.replicas 1.
fn offsets_topic(scenario: &Scenario) -> Option<TopicRequest> {
    let grouped = scenario.workload.consumers.iter().any(|c| c.group.is_some());
    grouped.then(|| TopicRequest {
        name: CONSUMER_OFFSETS_TOPIC.to_string(),
        partitions: scenario.cluster.offsets_topic_partitions,
        replication_factor: scenario.cluster.brokers.min(3),
        min_insync_replicas: 1,
    })
}
