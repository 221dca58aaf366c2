//! Replica observations: what the simulator records about replicas as the
//! run goes (elections, leaderships, HW advances, HWs served to consumers)
//! and the replicas' final state. The replica checkers judge these; they
//! are facts read off the nodes, never verdicts asked of broker-core.

use crate::checker::replicas::{
    PartitionIndex, ReplicaEventKind, ReplicaRecord, ReplicaSnapshot, ReplicatedPartition, Replication,
};
use crate::history::{Partition, ProcessId, Topic, Value};
use broker_core::broker::{Broker, BrokerEvent, ClusterLayout, INTERNAL_TOPICS};
use broker_core::controller::ControllerEvent;
use broker_core::types::{LeaderEpoch, Offset, TopicPartition};
use std::collections::BTreeMap;

pub struct Recorder {
    replication: Replication,
    index: BTreeMap<TopicPartition, PartitionIndex>,
    /// Set when the final snapshots are taken: what happens after them (a
    /// late request arriving) is outside the judged run.
    closed: bool,
}

impl Recorder {
    pub fn new(layout: &ClusterLayout, topics: &[Topic], unclean_elections_enabled: bool) -> Recorder {
        let mut partitions = Vec::new();
        let mut index = BTreeMap::new();
        // `__consumer_offsets` holds group records, not workload values: the
        // replica checkers judge the workload's topics.
        let internal: Vec<_> = INTERNAL_TOPICS.iter().filter_map(|n| layout.topic_by_name(n)).map(|t| t.id).collect();
        for tp in layout.partitions().filter(|tp| !internal.contains(&tp.topic)) {
            index.insert(tp, PartitionIndex(partitions.len() as u32));
            let partition = Partition { topic: topics[tp.topic.0 as usize].clone(), partition: tp.partition };
            let replicas = layout.replicas(tp).expect("listed by the layout").to_vec();
            partitions.push(ReplicatedPartition { partition, replicas });
        }
        Recorder {
            replication: Replication::new(partitions, unclean_elections_enabled, Vec::new()),
            index,
            closed: false,
        }
    }

    /// `None` for a partition the checkers do not judge (`__consumer_offsets`).
    fn index_of(&self, tp: TopicPartition) -> Option<PartitionIndex> {
        self.index.get(&tp).copied()
    }

    /// A controller decision that bumped a leader epoch.
    pub fn controller_event(&mut self, time_ns: u64, event: &ControllerEvent) {
        if self.closed {
            return;
        }
        if let ControllerEvent::LeaderElected { tp, leader, leader_epoch, isr, clean, .. } = event {
            let kind = ReplicaEventKind::Elected {
                leader: *leader,
                leader_epoch: *leader_epoch,
                isr: isr.clone(),
                clean: *clean,
            };
            if let Some(partition) = self.index_of(*tp) {
                self.replication.record(time_ns, partition, kind);
            }
        }
    }

    /// What a broker reported doing, with the records it concerns read off its log.
    pub fn broker_event(&mut self, time_ns: u64, broker: &Broker, event: &BrokerEvent) {
        if self.closed {
            return;
        }
        let id = broker.id();
        let judged = match *event {
            BrokerEvent::BecameLeader { tp, .. }
            | BrokerEvent::HighWatermark { tp, .. }
            | BrokerEvent::ServedHighWatermark { tp, .. }
            | BrokerEvent::ServedLastStableOffset { tp, .. } => self.index_of(tp).is_some(),
            _ => false,
        };
        if !judged {
            return;
        }
        let (tp, kind) = match *event {
            BrokerEvent::BecameLeader { tp, leader_epoch, log_end, high_watermark } => {
                let view = broker.replica_state(tp).expect("a replica of the broker");
                let records = read_records(broker, tp, view.log_start, log_end);
                let kind = ReplicaEventKind::BecameLeader {
                    broker: id,
                    leader_epoch,
                    log_start: view.log_start.0,
                    log_end: log_end.0,
                    hw: high_watermark.0,
                    records_from: view.log_start.0,
                    records,
                };
                (tp, kind)
            }
            BrokerEvent::HighWatermark { tp, leader_epoch, from, to } => {
                let committed = read_records(broker, tp, from, to);
                (tp, ReplicaEventKind::HighWatermark { broker: id, leader_epoch, hw: to.0, committed })
            }
            BrokerEvent::ServedHighWatermark { tp, leader_epoch, high_watermark } => {
                (tp, ReplicaEventKind::ServedHw { broker: id, leader_epoch, hw: high_watermark.0 })
            }
            BrokerEvent::ServedLastStableOffset { tp, leader_epoch, last_stable_offset, high_watermark, read_to } => {
                let kind = ReplicaEventKind::ServedLso {
                    broker: id,
                    leader_epoch,
                    lso: last_stable_offset.0,
                    hw: high_watermark.0,
                    read_to: read_to.map(|to| to.0),
                };
                (tp, kind)
            }
            BrokerEvent::Registered { .. } | BrokerEvent::BecameFollower { .. } | BrokerEvent::Truncated { .. } => {
                return
            }
        };
        let partition = self.index_of(tp).expect("judged");
        self.replication.record(time_ns, partition, kind);
    }

    /// No more events: the final snapshots are being taken.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The final state of a running broker's replica of `tp`.
    pub fn snapshot(&mut self, broker: &Broker, tp: TopicPartition) {
        let Some(view) = broker.replica_state(tp) else { return };
        let Some(partition) = self.index_of(tp) else { return };
        let records = read_records(broker, tp, view.log_start, view.log_end);
        self.replication.snapshots.push(ReplicaSnapshot {
            broker: broker.id(),
            partition,
            is_leader: view.leading,
            leader_epoch: view.leader_epoch.unwrap_or(LeaderEpoch::NONE),
            log_start: view.log_start.0,
            log_end: view.log_end.0,
            hw: view.high_watermark.0,
            isr: view.isr,
            // Only running brokers answer the snapshot request.
            live: true,
            lso: view.last_stable_offset.0,
            open_txns: view.open_txns.iter().map(|&(first, producer)| (first.0, producer.0)).collect(),
            records,
        });
    }

    /// Everything recorded, for the checkers.
    pub fn finish(&mut self, acks_all_processes: Vec<ProcessId>) -> Replication {
        let mut replication = std::mem::take(&mut self.replication);
        replication.acks_all_processes = acks_all_processes;
        replication
    }
}

/// Records read in windows of this many offsets: a window whose read fails
/// (a corrupt segment) is dropped, and the read stops there.
const READ_WINDOW: i64 = 4096;

/// A replica's records in `[from, to)` as the checkers see them: visited
/// in the log, never built as the broker's records.
fn read_records(broker: &Broker, tp: TopicPartition, from: Offset, to: Offset) -> Vec<ReplicaRecord> {
    let mut out = Vec::with_capacity(usize::try_from(to.0.saturating_sub(from.0)).unwrap_or(0));
    let mut start = from;
    while start < to {
        let end = Offset((start.0 + READ_WINDOW).min(to.0));
        let window_start = out.len();
        let mut last = None;
        let read = broker.visit_replica_records(tp, start, end, &mut |offset, leader_epoch, value| {
            last = Some(offset);
            if let Some(value) = Value::from_bytes(value) {
                out.push(ReplicaRecord { offset: offset.0, leader_epoch, value });
            }
        });
        let Some(last) = last.filter(|_| read) else {
            out.truncate(window_start);
            break;
        };
        start = last.next();
    }
    out
}
