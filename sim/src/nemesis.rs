//! Fault verbs and the random nemesis. Every fault is a named verb applied
//! through madsim (kill, restart, pause, resume, link clogging, network
//! config) or ksim's clocks (skew), traced, and undoable by `heal_all`.

use crate::checker::recovery::BootEnd;
use crate::disk::{Disk, DiskFaults};
use crate::rng::{stream, Purpose};
use crate::scenario::{Fault, NemesisSpec};
use crate::trace::TraceEvent;
use crate::world::{NodeKind, World, SUPERVISOR};
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::Duration;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct Nemesis {
    world: Arc<World>,
    handle: Handle,
    node_ids: Vec<NodeId>,
    /// Clogged directed links with how many active faults want each.
    clogged: BTreeMap<(usize, usize), u32>,
    paused: BTreeSet<usize>,
    crashed: BTreeSet<usize>,
    /// Down nodes whose program ended by itself (a `stop`) rather than by a
    /// kill: madsim must still kill them (releasing their addresses and
    /// running the plugins' reset hooks) before they boot again.
    exited: BTreeSet<usize>,
}

impl Nemesis {
    pub fn new(world: Arc<World>, node_ids: Vec<NodeId>) -> Nemesis {
        Nemesis {
            world,
            handle: Handle::current(),
            node_ids,
            clogged: BTreeMap::new(),
            paused: BTreeSet::new(),
            crashed: BTreeSet::new(),
            exited: BTreeSet::new(),
        }
    }

    fn node(&self, name: &str) -> usize {
        self.world.node_index(name).expect("scenario validated node names")
    }

    /// Applies one fault; returns what undoes it.
    pub fn apply(&mut self, fault: &Fault) -> Undo {
        self.world.trace(SUPERVISOR, TraceEvent::Fault { what: fault.to_string() });
        tracing::info!(%fault, "nemesis");
        match fault {
            Fault::Crash { node } => {
                let n = self.node(node);
                if self.crashed.insert(n) {
                    self.kill(n);
                }
                Undo::Fault(Fault::Restart { node: node.clone() })
            }
            Fault::Stop { node } => {
                let n = self.node(node);
                match self.world.nodes[n].1 {
                    // It stopped itself already: it is down, and stays down
                    // until a restart (which kills the exited process first).
                    NodeKind::Broker(_) if !self.crashed.contains(&n) && self.world.take_halted(n) => {
                        self.crashed.insert(n);
                        self.exited.insert(n);
                    }
                    NodeKind::Broker(b) if !self.crashed.contains(&n) => {
                        self.crashed.insert(n);
                        self.exited.insert(n);
                        if self.paused.remove(&n) {
                            self.handle.resume(self.node_ids[n]);
                        }
                        self.world.request_stop(broker_core::types::BrokerId(b));
                    }
                    // The controller's metadata is synced at every change: a
                    // stop is a crash.
                    _ => return self.apply(&Fault::Crash { node: node.clone() }),
                }
                Undo::Fault(Fault::Restart { node: node.clone() })
            }
            Fault::Restart { node } => {
                // Only a crashed node restarts; a running one is left alone (a
                // crash and a restart are two verbs, so schedules say which).
                // A node that halted itself is as good as crashed.
                let n = self.node(node);
                if self.crashed.remove(&n) {
                    self.boot(n);
                } else if self.world.take_halted(n) {
                    self.exited.insert(n);
                    self.boot(n);
                }
                Undo::Nothing
            }
            Fault::Pause { node } => {
                let n = self.node(node);
                if !self.crashed.contains(&n) && self.paused.insert(n) {
                    self.handle.pause(self.node_ids[n]);
                }
                Undo::Fault(Fault::Resume { node: node.clone() })
            }
            Fault::Resume { node } => {
                let n = self.node(node);
                if self.paused.remove(&n) {
                    self.handle.resume(self.node_ids[n]);
                }
                Undo::Nothing
            }
            Fault::Isolate { node } => {
                let n = self.node(node);
                let links: Vec<(usize, usize)> =
                    (0..self.node_ids.len()).filter(|&o| o != n).flat_map(|o| [(n, o), (o, n)]).collect();
                self.clog_links(links)
            }
            Fault::Partition { groups, one_way } => {
                let groups: Vec<Vec<usize>> =
                    groups.iter().map(|g| g.iter().map(|name| self.node(name)).collect()).collect();
                let mut links = Vec::new();
                for (i, a) in groups.iter().enumerate() {
                    for (j, b) in groups.iter().enumerate() {
                        if i == j || (*one_way && i != 0) {
                            continue;
                        }
                        links.extend(a.iter().flat_map(|&x| b.iter().map(move |&y| (x, y))));
                    }
                }
                self.clog_links(links)
            }
            Fault::Heal => {
                self.unclog_all();
                Undo::Nothing
            }
            Fault::Latency { min_ms, max_ms } => {
                set_latency(*min_ms, *max_ms);
                let (lo, hi) = self.world.scenario.network.latency_ms;
                Undo::Fault(Fault::Latency { min_ms: lo, max_ms: hi })
            }
            Fault::Loss { rate } => {
                let rate = *rate;
                NetSim::current().update_config(|c| c.packet_loss_rate = rate);
                Undo::Fault(Fault::Loss { rate: self.world.scenario.network.loss })
            }
            Fault::Skew { node, skew_ms } => {
                let n = self.node(node);
                self.world.clocks.set_skew(n, *skew_ms);
                Undo::Fault(Fault::Skew { node: node.clone(), skew_ms: 0 })
            }
            Fault::PowerLoss { nodes, torn } => {
                // All at the same instant: the processes die, then the page
                // caches go (a correlated loss when several are named).
                let ns: Vec<usize> = nodes.iter().map(|name| self.node(name)).collect();
                for &n in &ns {
                    if self.crashed.insert(n) {
                        self.kill(n);
                    }
                }
                for &n in &ns {
                    self.disk(n).with(|d| d.power_loss(*torn));
                }
                match nodes.as_slice() {
                    [one] => Undo::Fault(Fault::Restart { node: one.clone() }),
                    _ => Undo::Faults(nodes.iter().map(|node| Fault::Restart { node: node.clone() }).collect()),
                }
            }
            Fault::DiskFault { node, faults } => {
                let faults = DiskFaults {
                    bit_flip_read: faults.bit_flip_read,
                    bit_flip_write: faults.bit_flip_write,
                    lost_write: faults.lost_write,
                    misdirected_write: faults.misdirected_write,
                };
                self.disk(self.node(node)).with(|d| d.set_faults(faults));
                Undo::Fault(Fault::DiskHeal { node: node.clone() })
            }
            Fault::DiskFull { node } => {
                self.disk(self.node(node)).with(Disk::fill);
                Undo::Fault(Fault::DiskHeal { node: node.clone() })
            }
            Fault::DiskHeal { node } => {
                let n = self.node(node);
                self.heal_disk(n);
                Undo::Nothing
            }
        }
    }

    fn disk(&self, node: usize) -> &crate::disk::SharedDisk {
        self.world.disk_of(node).expect("scenario validated: only brokers and the controller have disks")
    }

    /// Ends a disk's faults and fullness; a node that halted on it boots again
    /// (as an operator would restart Kafka after freeing space).
    fn heal_disk(&mut self, n: usize) {
        self.disk(n).with(|d| {
            d.set_faults(DiskFaults::default());
            d.unfill();
        });
        if self.world.take_halted(n) && !self.crashed.contains(&n) {
            self.exited.insert(n);
            self.boot(n);
        }
    }

    /// Kills node `n`'s process (madsim's reset hook records the crash on its
    /// disk: `DiskSim`), ending its current boot unless it ended already.
    fn kill(&mut self, n: usize) {
        self.paused.remove(&n);
        self.world.take_halted(n);
        self.world.node_ended(n, BootEnd::Killed);
        self.world.member_died(n);
        self.handle.kill(self.node_ids[n]);
    }

    /// Boots a down node again; one that exited by itself is killed first
    /// (usually its boot ended already, stopped or halted; if a stop was
    /// still pending, the process dies here).
    fn boot(&mut self, n: usize) {
        if self.exited.remove(&n) {
            self.kill(n);
        }
        // A stop asked of the previous process is not the new one's.
        if let NodeKind::Broker(b) = self.world.nodes[n].1 {
            self.world.take_stop(broker_core::types::BrokerId(b));
        }
        self.handle.restart(self.node_ids[n]);
    }

    fn clog_links(&mut self, links: Vec<(usize, usize)>) -> Undo {
        let net = NetSim::current();
        for &(src, dst) in &links {
            let count = self.clogged.entry((src, dst)).or_insert(0);
            *count += 1;
            if *count == 1 {
                net.clog_link(self.node_ids[src], self.node_ids[dst]);
            }
        }
        Undo::Unclog(links)
    }

    /// Undoes one fault (links another active fault also cut stay cut).
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::Fault(fault) => {
                self.apply(&fault);
            }
            Undo::Faults(faults) => {
                for fault in faults {
                    self.apply(&fault);
                }
            }
            Undo::Unclog(links) => {
                self.world.trace(SUPERVISOR, TraceEvent::Fault { what: format!("unclog {} links", links.len()) });
                let net = NetSim::current();
                for link in links {
                    if let Some(count) = self.clogged.get_mut(&link) {
                        *count -= 1;
                        if *count == 0 {
                            self.clogged.remove(&link);
                            net.unclog_link(self.node_ids[link.0], self.node_ids[link.1]);
                        }
                    }
                }
            }
        }
    }

    fn unclog_all(&mut self) {
        let net = NetSim::current();
        for (src, dst) in std::mem::take(&mut self.clogged).into_keys() {
            net.unclog_link(self.node_ids[src], self.node_ids[dst]);
        }
    }

    /// Ends every fault: links, pauses, crashes, network settings and skews.
    pub fn heal_all(&mut self) {
        self.world.trace(SUPERVISOR, TraceEvent::Fault { what: "heal-all".into() });
        self.unclog_all();
        for n in std::mem::take(&mut self.paused) {
            self.handle.resume(self.node_ids[n]);
        }
        for n in std::mem::take(&mut self.crashed) {
            self.boot(n);
        }
        let with_disks: Vec<usize> = self.world.all_disks().map(|(n, _)| n).collect();
        for n in with_disks {
            self.heal_disk(n);
        }
        let network = &self.world.scenario.network;
        set_latency(network.latency_ms.0, network.latency_ms.1);
        let loss = network.loss;
        NetSim::current().update_config(|c| c.packet_loss_rate = loss);
        for n in 0..self.world.nodes.len() {
            self.world.clocks.set_skew(n, 0);
        }
    }
}

/// What undoes an applied fault.
pub enum Undo {
    Nothing,
    Fault(Fault),
    Faults(Vec<Fault>),
    /// Uncut the links this fault cut.
    Unclog(Vec<(usize, usize)>),
}

/// Sets the network-wide latency range (madsim wants a non-empty range).
pub fn set_latency(min_ms: u64, max_ms: u64) {
    let range = Duration::from_millis(min_ms)..Duration::from_millis(max_ms.max(min_ms) + 1);
    NetSim::current().update_config(|c| c.send_latency = range);
}

/// The random nemesis: each interval, each fault kind starts with its
/// probability, drawn from the nemesis stream; each fault is undone after a
/// drawn duration.
pub struct RandomNemesis {
    spec: NemesisSpec,
    rng: ChaCha8Rng,
    brokers: Vec<String>,
    clients: Vec<String>,
}

impl RandomNemesis {
    pub fn new(world: &World, spec: NemesisSpec) -> RandomNemesis {
        let names = |pred: fn(&NodeKind) -> bool| -> Vec<String> {
            world.nodes.iter().filter(|(_, k)| pred(k)).map(|(n, _)| n.clone()).collect()
        };
        let mut rng = stream(world.seed, Purpose::Nemesis, 0);
        let spec = if spec.swarm { swarm(spec, &mut rng) } else { spec };
        RandomNemesis {
            rng,
            // The controller is a server like the brokers: it crashes, pauses
            // and is cut off too.
            brokers: names(|k| matches!(k, NodeKind::Broker(_) | NodeKind::Controller)),
            clients: names(|k| matches!(k, NodeKind::Producer(_) | NodeKind::Consumer(_))),
            spec,
        }
    }

    /// The fault mix this run uses (after the swarm draw), for the trace and the report.
    pub fn describe(&self) -> String {
        let s = &self.spec;
        let kinds = [
            ("crash", s.crash),
            ("pause", s.pause),
            ("partition", s.partition),
            ("isolate", s.isolate),
            ("loss", s.loss),
            ("latency", s.latency),
            ("skew", s.skew),
            ("power-loss", s.power_loss),
            ("disk-fault", s.disk_fault),
        ];
        let on: Vec<String> = kinds.iter().filter(|(_, p)| *p > 0.0).map(|(k, p)| format!("{k} {p:.3}")).collect();
        if on.is_empty() {
            "no faults".to_string()
        } else {
            on.join(", ")
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.spec.interval_ms)
    }

    /// The faults to start this interval, each with how long it lasts.
    pub fn draw(&mut self) -> Vec<(Fault, Duration)> {
        let mut out = Vec::new();
        let s = self.spec.clone();
        let roll = |rng: &mut ChaCha8Rng, p: f64| p > 0.0 && rng.gen_bool(p.min(1.0));
        let (lo, hi) = s.fault_duration_ms;
        if roll(&mut self.rng, s.crash) {
            let node = self.brokers.choose(&mut self.rng).expect("a broker").clone();
            out.push(Fault::Crash { node });
        }
        if roll(&mut self.rng, s.pause) {
            let all: Vec<&String> = self.brokers.iter().chain(&self.clients).collect();
            let node = (*all.choose(&mut self.rng).expect("a node")).clone();
            out.push(Fault::Pause { node });
        }
        if roll(&mut self.rng, s.partition) && self.brokers.len() + self.clients.len() >= 2 {
            let mut all: Vec<String> = self.brokers.iter().chain(&self.clients).cloned().collect();
            all.shuffle(&mut self.rng);
            let cut = self.rng.gen_range(1..all.len());
            let b = all.split_off(cut);
            out.push(Fault::Partition { groups: vec![all, b], one_way: self.rng.gen_bool(0.25) });
        }
        if roll(&mut self.rng, s.isolate) {
            let node = self.brokers.choose(&mut self.rng).expect("a broker").clone();
            out.push(Fault::Isolate { node });
        }
        if roll(&mut self.rng, s.loss) {
            out.push(Fault::Loss { rate: s.loss_rate });
        }
        if roll(&mut self.rng, s.latency) {
            let max_ms = self.rng.gen_range(1..=s.max_latency_ms.max(1));
            out.push(Fault::Latency { min_ms: 1, max_ms });
        }
        if roll(&mut self.rng, s.skew) {
            let all: Vec<&String> = self.brokers.iter().chain(&self.clients).collect();
            let node = (*all.choose(&mut self.rng).expect("a node")).clone();
            let skew_ms = self.rng.gen_range(-s.max_skew_ms..=s.max_skew_ms);
            out.push(Fault::Skew { node, skew_ms });
        }
        // Kinds added later come last, and `roll` draws nothing for a kind
        // at 0, so scenarios without them keep their seeds' faults.
        if roll(&mut self.rng, s.power_loss) {
            // Brokers and the controller have disks; the undo restarts it.
            let node = self.brokers.choose(&mut self.rng).expect("a broker").clone();
            out.push(Fault::PowerLoss { nodes: vec![node], torn: self.rng.gen_bool(0.5) });
        }
        if roll(&mut self.rng, s.disk_fault) {
            let node = self.brokers.choose(&mut self.rng).expect("a broker").clone();
            let faults = crate::scenario::DiskFaultSpec { bit_flip_read: s.disk_fault_rate, ..Default::default() };
            out.push(Fault::DiskFault { node, faults });
        }
        out.into_iter().map(|f| (f, Duration::from_millis(self.rng.gen_range(lo..=hi.max(lo))))).collect()
    }
}

/// Swarm testing (Groce et al.): a seed runs with a random subset of the
/// fault kinds, each kept with probability 1/2 (at least one), at a rate
/// scaled by a factor from 0.5 to 2 — so some seeds hammer one kind of fault
/// and others mix, instead of every seed getting the same blend.
fn swarm(mut spec: NemesisSpec, rng: &mut ChaCha8Rng) -> NemesisSpec {
    let rates = [
        &mut spec.crash,
        &mut spec.pause,
        &mut spec.partition,
        &mut spec.isolate,
        &mut spec.loss,
        &mut spec.latency,
        &mut spec.skew,
        &mut spec.power_loss,
        &mut spec.disk_fault,
    ];
    // The first `ORIGINAL` kinds draw whether configured or not (as they
    // always have); kinds added since draw only when configured, so seeds of
    // scenarios without them draw the same mix as before.
    const ORIGINAL: usize = 7;
    let draws = |i: usize, rate: f64| i < ORIGINAL || rate > 0.0;
    let configured: Vec<usize> = (0..rates.len()).filter(|&i| *rates[i] > 0.0).collect();
    let mut kept: Vec<bool> = (0..rates.len()).map(|i| draws(i, *rates[i]) && rng.gen_bool(0.5)).collect();
    if !configured.iter().any(|&i| kept[i]) {
        if let Some(&i) = configured.choose(rng) {
            kept[i] = true;
        }
    }
    for (i, rate) in rates.into_iter().enumerate() {
        if !draws(i, *rate) {
            continue;
        }
        let factor: f64 = rng.gen_range(0.5..2.0);
        *rate = if kept[i] { (*rate * factor).min(1.0) } else { 0.0 };
    }
    spec
}
