//! Generated replication stories: a model of Kafka's replication that is
//! correct by construction (clean elections from the ISR, a leader's HW the
//! minimum of what its ISR fetched in its own epoch, followers truncating
//! to the leader before they fetch, acks=all acked once committed), with
//! the observations and the history it would record. Every such story must
//! pass; each mutation of one must be caught by its invariant.

use super::{b, brokers, e, render, v, DRAIN, PRODUCER};
use crate::checker::replicas::*;
use crate::history::{Call, History, Outcome, Partition, Polled, ProcessId};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const BROKERS: usize = 3;
/// Produces with acks=1: its values may be lost on failover, and are not judged.
const ACKS_ONE: ProcessId = 2;

/// One partition of the model. Brokers are `0..BROKERS` here, `broker-1..=3` outside.
struct PartitionModel {
    index: PartitionIndex,
    logs: Vec<Vec<ReplicaRecord>>,
    leader: usize,
    epoch: i32,
    isr: Vec<usize>,
    /// The leader's HW, and each follower's (learned one fetch late).
    hw: i64,
    follower_hw: Vec<i64>,
    /// How far each replica fetched in the current epoch, as the leader knows it.
    fetched: Vec<i64>,
    /// acks=all sends appended but not yet committed: (op, offset).
    pending: Vec<(u64, i64)>,
    /// A deposed leader that has not heard of the new epoch yet: (broker, epoch, its HW).
    deposed: Option<(usize, i32, i64)>,
    /// The highest HW any leader advanced to.
    committed_end: i64,
}

/// What a generated story knows about itself, for mutations.
#[derive(Default)]
struct Facts {
    /// Per `BecameLeader` event id: the committed end when it happened.
    committed_end_at_election: BTreeMap<usize, i64>,
}

struct Generator {
    rng: ChaCha8Rng,
    history: History,
    replication: Replication,
    now_ns: u64,
    counters: BTreeMap<ProcessId, u32>,
    facts: Facts,
    /// Records one produce step appends, at most.
    batch_max: usize,
    /// How often a step is a leader change.
    election_rate: f64,
}

fn broker(i: usize) -> BrokerId {
    b(i as u32 + 1)
}

fn name(index: PartitionIndex) -> Partition {
    Partition { topic: "t".into(), partition: index.0 }
}

impl Generator {
    fn tick(&mut self) -> u64 {
        self.now_ns += self.rng.gen_range(1..5) * super::MS;
        self.now_ns
    }

    fn event(&mut self, partition: PartitionIndex, kind: ReplicaEventKind) -> usize {
        let now = self.tick();
        self.replication.record(now, partition, kind);
        self.replication.events.len() - 1
    }

    fn new_partition(&mut self, index: PartitionIndex) -> PartitionModel {
        let mut p = PartitionModel {
            index,
            logs: vec![Vec::new(); BROKERS],
            leader: self.rng.gen_range(0..BROKERS),
            epoch: 0,
            isr: (0..BROKERS).collect(),
            hw: 0,
            follower_hw: vec![0; BROKERS],
            fetched: vec![0; BROKERS],
            pending: Vec::new(),
            deposed: None,
            committed_end: 0,
        };
        let (leader, isr) = (Some(broker(p.leader)), p.isr.iter().map(|&i| broker(i)).collect());
        self.event(index, ReplicaEventKind::Elected { leader, leader_epoch: e(0), isr, clean: true });
        self.became_leader(&mut p);
        p
    }

    fn became_leader(&mut self, p: &mut PartitionModel) {
        let log = &p.logs[p.leader];
        let log_end = log.len() as i64;
        let records_from = if self.rng.gen_bool(0.5) { 0 } else { self.rng.gen_range(0..=log_end) };
        let kind = ReplicaEventKind::BecameLeader {
            broker: broker(p.leader),
            leader_epoch: e(p.epoch),
            log_start: 0,
            log_end,
            hw: p.hw,
            records_from,
            records: log[records_from as usize..].to_vec(),
        };
        let id = self.event(p.index, kind);
        self.facts.committed_end_at_election.insert(id, p.committed_end);
    }

    fn step(&mut self, p: &mut PartitionModel) {
        if self.rng.gen_bool(self.election_rate) {
            return self.elect(p);
        }
        match self.rng.gen_range(0..18) {
            0..=5 => self.produce(p),
            6..=10 => {
                let follower = self.rng.gen_range(0..BROKERS);
                self.replicate(p, follower, false);
            }
            11..=13 => self.advance_hw(p),
            14..=15 => self.serve(p),
            16 => {
                if let Some((old, epoch, hw)) = p.deposed {
                    self.event(p.index, ReplicaEventKind::ServedHw { broker: broker(old), leader_epoch: e(epoch), hw });
                }
            }
            _ => {
                let followers: Vec<usize> = p.isr.iter().copied().filter(|&i| i != p.leader).collect();
                if let Some(&out) = followers.choose(&mut self.rng) {
                    p.isr.retain(|&i| i != out);
                }
            }
        }
    }

    fn produce(&mut self, p: &mut PartitionModel) {
        for _ in 0..self.rng.gen_range(1..=self.batch_max) {
            let process = if self.rng.gen_bool(0.8) { PRODUCER } else { ACKS_ONE };
            let counter = self.counters.entry(process).or_insert(0);
            let value = v(process, *counter);
            *counter += 1;
            let log = &mut p.logs[p.leader];
            let offset = log.len() as i64;
            log.push(ReplicaRecord { offset, leader_epoch: e(p.epoch), value });
            p.fetched[p.leader] = offset + 1;
            let call = Call::Send { topic: "t".into(), partition: Some(p.index.0), value };
            let op = self.history.invoke(process, self.now_ns, call);
            if process == PRODUCER {
                p.pending.push((op, offset));
            } else {
                self.history.complete(op, self.now_ns, Outcome::SendOk { partition: name(p.index), offset });
            }
        }
    }

    /// A follower fetches: it truncates to where its log and the leader's
    /// agree, then copies some of the rest; it learns the leader's HW.
    fn replicate(&mut self, p: &mut PartitionModel, follower: usize, fully: bool) {
        if follower == p.leader {
            return;
        }
        let leader_log = &p.logs[p.leader];
        let log = &p.logs[follower];
        let agree = log.iter().zip(leader_log).take_while(|(a, b)| a == b).count();
        let upto = if fully { leader_log.len() } else { self.rng.gen_range(agree..=leader_log.len()) };
        let copied = leader_log[agree..upto].to_vec();
        let log = &mut p.logs[follower];
        log.truncate(agree);
        log.extend(copied);
        let len = log.len() as i64;
        p.fetched[follower] = len;
        p.follower_hw[follower] = p.hw.min(len);
        if p.deposed.is_some_and(|(old, _, _)| old == follower) {
            p.deposed = None;
        }
        if len == p.logs[p.leader].len() as i64 && !p.isr.contains(&follower) {
            p.isr.push(follower);
            p.isr.sort_unstable();
        }
    }

    fn advance_hw(&mut self, p: &mut PartitionModel) {
        let hw = p.isr.iter().map(|&i| p.fetched[i]).min().expect("the leader is in its ISR");
        if hw <= p.hw {
            return;
        }
        let committed = p.logs[p.leader][p.hw as usize..hw as usize].to_vec();
        let kind =
            ReplicaEventKind::HighWatermark { broker: broker(p.leader), leader_epoch: e(p.epoch), hw, committed };
        self.event(p.index, kind);
        p.hw = hw;
        p.committed_end = p.committed_end.max(hw);
        let (done, waiting): (Vec<_>, Vec<_>) = p.pending.iter().partition(|&&(_, offset)| offset < hw);
        p.pending = waiting;
        for (op, offset) in done {
            let now = self.tick();
            self.history.complete(op, now, Outcome::SendOk { partition: name(p.index), offset });
        }
    }

    fn serve(&mut self, p: &mut PartitionModel) {
        let kind = ReplicaEventKind::ServedHw { broker: broker(p.leader), leader_epoch: e(p.epoch), hw: p.hw };
        self.event(p.index, kind);
    }

    /// A clean election from the ISR; the old leader is fenced out of it.
    fn elect(&mut self, p: &mut PartitionModel) {
        let candidates: Vec<usize> = p.isr.iter().copied().filter(|&i| i != p.leader).collect();
        let Some(&next) = candidates.choose(&mut self.rng) else { return };
        for (op, _) in std::mem::take(&mut p.pending) {
            let now = self.tick();
            self.history.complete(op, now, Outcome::SendInfo { reason: "NOT_LEADER_OR_FOLLOWER".into() });
        }
        p.deposed = Some((p.leader, p.epoch, p.hw));
        p.isr.retain(|&i| i != p.leader);
        p.leader = next;
        p.epoch += 1;
        p.hw = p.follower_hw[next];
        p.fetched = vec![0; BROKERS];
        p.fetched[next] = p.logs[next].len() as i64;
        let isr = p.isr.iter().map(|&i| broker(i)).collect();
        let kind = ReplicaEventKind::Elected { leader: Some(broker(next)), leader_epoch: e(p.epoch), isr, clean: true };
        self.event(p.index, kind);
        self.became_leader(p);
    }

    /// Heal: every follower catches up and rejoins, the HW reaches the end.
    fn heal(&mut self, p: &mut PartitionModel) {
        for follower in 0..BROKERS {
            self.replicate(p, follower, true);
        }
        self.advance_hw(p);
        self.serve(p);
        for follower in 0..BROKERS {
            // One more fetch round for some: their HW may still lag (legal).
            if self.rng.gen_bool(0.5) {
                p.follower_hw[follower] = p.hw.min(p.logs[follower].len() as i64);
            }
        }
    }

    fn snapshots(&mut self, p: &PartitionModel) {
        for i in 0..BROKERS {
            let leads = i == p.leader;
            let records = p.logs[i].clone();
            self.replication.snapshots.push(ReplicaSnapshot {
                broker: broker(i),
                partition: p.index,
                is_leader: leads,
                leader_epoch: e(p.epoch),
                log_start: 0,
                log_end: records.len() as i64,
                hw: if leads { p.hw } else { p.follower_hw[i] },
                isr: if leads { p.isr.iter().map(|&i| broker(i)).collect() } else { Vec::new() },
                live: true,
                lso: if leads { p.hw } else { p.follower_hw[i] },
                open_txns: Vec::new(),
                records,
            });
        }
    }

    fn drain(&mut self, partitions: &[PartitionModel]) {
        let mut at = 0;
        while partitions.iter().any(|p| at < p.logs[p.leader].len()) {
            let mut records = Vec::new();
            for p in partitions {
                let log = &p.logs[p.leader];
                let chunk = &log[at.min(log.len())..(at + 500).min(log.len())];
                records.extend(chunk.iter().map(|r| Polled {
                    partition: name(p.index),
                    offset: r.offset,
                    value: r.value,
                }));
            }
            let now = self.tick();
            let op = self.history.invoke(DRAIN, now, Call::Poll);
            let now = self.tick();
            self.history.complete(op, now, Outcome::PollOk { records });
            at += 500;
        }
    }
}

/// A correct story: `partitions` partitions, about `steps` steps each.
fn story(seed: u64, partitions: u32, steps: usize, batch_max: usize) -> (History, Replication, Facts) {
    story_with(seed, partitions, steps, batch_max, 0.1)
}

fn story_with(
    seed: u64,
    partitions: u32,
    steps: usize,
    batch_max: usize,
    election_rate: f64,
) -> (History, Replication, Facts) {
    let table = (0..partitions)
        .map(|p| ReplicatedPartition { partition: name(PartitionIndex(p)), replicas: brokers(&[1, 2, 3]) })
        .collect();
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(seed),
        history: History::default(),
        replication: Replication::new(table, false, vec![PRODUCER]),
        now_ns: 0,
        counters: BTreeMap::new(),
        facts: Facts::default(),
        batch_max,
        election_rate,
    };
    g.history.drain_processes.push(DRAIN);
    let mut models: Vec<PartitionModel> = (0..partitions).map(|p| g.new_partition(PartitionIndex(p))).collect();
    for _ in 0..steps * partitions as usize {
        let p = g.rng.gen_range(0..models.len());
        g.step(&mut models[p]);
    }
    for p in &mut models {
        g.heal(p);
    }
    for p in &models {
        g.snapshots(p);
    }
    g.drain(&models);
    (g.history, g.replication, g.facts)
}

fn counts(history: &History, replication: &Replication) -> (BTreeMap<Invariant, u64>, String) {
    let report = check_replicas(history, replication);
    let found = report.counts.iter().filter(|(_, &n)| n > 0).map(|(&i, &n)| (i, n)).collect();
    (found, render(&report))
}

/// Event ids of one kind.
fn ids_where(replication: &Replication, wanted: fn(&ReplicaEventKind) -> bool) -> Vec<usize> {
    (0..replication.events.len()).filter(|&i| wanted(&replication.events[i].kind)).collect()
}

/// Inserts an event just after event `after` (1ns later; the checkers sort by time).
fn insert_after(replication: &mut Replication, after: usize, kind: ReplicaEventKind) {
    let (time_ns, partition) = (replication.events[after].time_ns + 1, replication.events[after].partition);
    replication.events.insert(after + 1, ReplicaEvent { time_ns, partition, kind });
}

/// Acked acks=all values: (op index, partition, offset).
fn acked_all(history: &History) -> Vec<(usize, Partition, i64)> {
    let acked = history.ops.iter().enumerate().filter(|(_, op)| op.process == PRODUCER);
    acked
        .filter_map(|(i, op)| match &op.outcome {
            Some(Outcome::SendOk { partition, offset }) => Some((i, partition.clone(), *offset)),
            _ => None,
        })
        .collect()
}

fn is_became_leader(kind: &ReplicaEventKind) -> bool {
    matches!(kind, ReplicaEventKind::BecameLeader { .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn correct_stories_pass(seed in any::<u64>(), partitions in 1..4u32, steps in 0..300usize) {
        let (history, replication, _) = story(seed, partitions, steps, 4);
        let (found, report) = counts(&history, &replication);
        prop_assert!(found.is_empty(), "{}", report);
    }

    #[test]
    fn an_acked_record_missing_from_the_final_leader_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, _) = story(seed, 2, 150, 4);
        let acked = acked_all(&history);
        prop_assume!(!acked.is_empty());
        let (_, partition, offset) = &acked[pick.index(acked.len())];
        let index = replication.index_of(partition).unwrap();
        let leader = replication.snapshots.iter_mut().find(|s| s.partition == index && s.is_leader).unwrap();
        leader.records.retain(|r| r.offset != *offset);
        let (found, report) = counts(&history, &replication);
        prop_assert!(found.contains_key(&Invariant::NoLostAckedWrite), "{}", report);
        prop_assert!(found.contains_key(&Invariant::HwConsistency), "{}", report);
        prop_assert!(!found.contains_key(&Invariant::Leadership), "{}", report);
    }

    #[test]
    fn an_acked_value_the_drain_missed_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (mut history, replication, _) = story(seed, 2, 150, 4);
        let acked = acked_all(&history);
        prop_assume!(!acked.is_empty());
        let (_, partition, offset) = acked[pick.index(acked.len())].clone();
        for op in history.ops.iter_mut().filter(|op| op.process == DRAIN) {
            if let Some(Outcome::PollOk { records }) = &mut op.outcome {
                records.retain(|r| !(r.partition == partition && r.offset == offset));
            }
        }
        let (found, report) = counts(&history, &replication);
        prop_assert_eq!(found, BTreeMap::from([(Invariant::NoLostAckedWrite, 1)]), "{}", report);
    }

    #[test]
    fn a_follower_record_changed_below_the_hws_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, _) = story(seed, 1, 200, 4);
        let leader_hw = replication.snapshots.iter().find(|s| s.is_leader).unwrap().hw;
        let candidates: Vec<(usize, usize)> = replication.snapshots.iter().enumerate()
            .filter(|(_, s)| !s.is_leader)
            .flat_map(|(i, s)| (0..s.hw.min(leader_hw) as usize).map(move |r| (i, r)))
            .collect();
        prop_assume!(!candidates.is_empty());
        let (snapshot, record) = candidates[pick.index(candidates.len())];
        replication.snapshots[snapshot].records[record].value = v(77, 0);
        let (found, report) = counts(&history, &replication);
        prop_assert_eq!(found.keys().copied().collect::<Vec<_>>(), vec![Invariant::HwConsistency], "{}", report);
    }

    #[test]
    fn a_second_leader_in_an_epoch_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>(), other in 1..3usize) {
        let (history, mut replication, _) = story(seed, 1, 200, 4);
        let leads = ids_where(&replication, is_became_leader);
        let id = leads[pick.index(leads.len())];
        let mut kind = replication.events[id].kind.clone();
        if let ReplicaEventKind::BecameLeader { broker: leader, .. } = &mut kind {
            *leader = broker((leader.0 as usize - 1 + other) % BROKERS);
        }
        insert_after(&mut replication, id, kind);
        let (found, report) = counts(&history, &replication);
        prop_assert!(found.get(&Invariant::Leadership) >= Some(&2), "{}", report);
    }

    #[test]
    fn an_election_going_back_an_epoch_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, _) = story(seed, 1, 200, 4);
        let elections = ids_where(&replication, |k| matches!(k, ReplicaEventKind::Elected { .. }));
        prop_assume!(elections.len() > 1);
        let id = elections[1 + pick.index(elections.len() - 1)];
        let mut kind = replication.events[id].kind.clone();
        if let ReplicaEventKind::Elected { leader_epoch, leader, .. } = &mut kind {
            *leader_epoch = LeaderEpoch(leader_epoch.0 - 1);
            *leader = None;
        }
        insert_after(&mut replication, id, kind);
        let (found, report) = counts(&history, &replication);
        prop_assert_eq!(found, BTreeMap::from([(Invariant::Leadership, 1)]), "{}", report);
    }

    #[test]
    fn a_clean_leader_short_of_the_committed_end_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, facts) = story(seed, 1, 200, 4);
        // Elections after which something was committed, whose log the event shows up to the committed end.
        let candidates: Vec<(usize, i64)> = facts.committed_end_at_election.iter()
            .filter(|&(&id, &end)| match &replication.events[id].kind {
                ReplicaEventKind::BecameLeader { records_from, .. } => end > 0 && *records_from < end,
                _ => false,
            })
            .map(|(&id, &end)| (id, end))
            .collect();
        prop_assume!(!candidates.is_empty());
        let (id, end) = candidates[pick.index(candidates.len())];
        if let ReplicaEventKind::BecameLeader { log_end, records, .. } = &mut replication.events[id].kind {
            *log_end = end - 1;
            records.retain(|r| r.offset < end - 1);
        }
        let (found, report) = counts(&history, &replication);
        prop_assert!(found.contains_key(&Invariant::Leadership), "{}", report);
        prop_assert!(report.contains("lacks committed records"), "{}", report);
    }

    #[test]
    fn a_served_hw_going_backwards_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, _) = story(seed, 1, 200, 4);
        let served = ids_where(&replication, |k| matches!(k, ReplicaEventKind::ServedHw { hw, .. } if *hw > 0));
        prop_assume!(!served.is_empty());
        let id = served[pick.index(served.len())];
        let mut kind = replication.events[id].kind.clone();
        if let ReplicaEventKind::ServedHw { hw, .. } = &mut kind {
            *hw -= 1;
        }
        insert_after(&mut replication, id, kind);
        let (found, report) = counts(&history, &replication);
        prop_assert_eq!(found, BTreeMap::from([(Invariant::HwConsistency, 1)]), "{}", report);
        prop_assert!(report.contains("went backwards within one leadership"), "{}", report);
    }

    #[test]
    fn a_committed_record_changed_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, _) = story(seed, 1, 200, 4);
        let commits: Vec<(usize, usize)> = replication.events.iter().enumerate()
            .flat_map(|(id, event)| match &event.kind {
                ReplicaEventKind::HighWatermark { committed, .. } => (0..committed.len()).map(|r| (id, r)).collect(),
                _ => Vec::new(),
            })
            .collect();
        prop_assume!(!commits.is_empty());
        let (id, record) = commits[pick.index(commits.len())];
        if let ReplicaEventKind::HighWatermark { committed, .. } = &mut replication.events[id].kind {
            committed[record].value = v(77, 0);
        }
        let (found, report) = counts(&history, &replication);
        prop_assert_eq!(found.keys().copied().collect::<Vec<_>>(), vec![Invariant::HwConsistency], "{}", report);
    }

    #[test]
    fn a_follower_behind_at_the_end_is_caught(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (history, mut replication, _) = story(seed, 2, 150, 4);
        let followers: Vec<usize> = (0..replication.snapshots.len())
            .filter(|&i| !replication.snapshots[i].is_leader && replication.snapshots[i].log_end > 0)
            .collect();
        prop_assume!(!followers.is_empty());
        let follower = &mut replication.snapshots[followers[pick.index(followers.len())]];
        follower.records.pop();
        follower.log_end -= 1;
        follower.hw = follower.hw.min(follower.log_end);
        let (found, report) = counts(&history, &replication);
        prop_assert_eq!(found.get(&Invariant::ReplicationLiveness), Some(&1), "{}", report);
        prop_assert!(found.keys().all(|&i| i == Invariant::ReplicationLiveness || i == Invariant::HwConsistency), "{}", report);
    }
}

#[test]
fn the_generator_tells_a_varied_story() {
    let (history, replication, _) = story(7, 3, 400, 4);
    let kinds = |wanted: fn(&ReplicaEventKind) -> bool| ids_where(&replication, wanted).len();
    assert!(kinds(|k| matches!(k, ReplicaEventKind::Elected { .. })) > 6);
    assert!(kinds(|k| matches!(k, ReplicaEventKind::ServedHw { .. })) > 20);
    assert!(acked_all(&history).len() > 50);
    let infos = history.ops.iter().filter(|op| matches!(op.outcome, Some(Outcome::SendInfo { .. }))).count();
    assert!(infos > 0, "some sends should be in flight at a failover");
}

#[test]
fn observations_round_trip_through_json() {
    let (_, replication, _) = story(3, 2, 50, 3);
    let json = serde_json::to_string(&replication).unwrap();
    assert_eq!(serde_json::from_str::<Replication>(&json).unwrap(), replication);
    // One event as one JSON line, as `--history` would write it.
    let line = serde_json::to_string(&replication.events[0]).unwrap();
    assert!(line.starts_with(r#"{"time_ns":"#) && line.contains(r#""event":"elected""#), "{line}");
    assert_eq!(serde_json::from_str::<ReplicaEvent>(&line).unwrap(), replication.events[0]);
}

/// About 100k records and 10k events, clean. (Its speed is measured by the
/// standard benchmark, not here: tests are not timed.)
#[test]
fn a_large_clean_story_stays_clean() {
    let (history, replication, _) = story_with(11, 3, 12_000, 12, 0.001);
    let records: usize = replication.snapshots.iter().filter(|s| s.is_leader).map(|s| s.records.len()).sum();
    assert!(records > 50_000, "{records} records");
    assert_eq!(render(&check_replicas(&history, &replication)), "");
}
