//! What the simulator records about replicas, for the replica checkers: plain
//! data, serde-serialisable, appended as things happen. Nothing here is a
//! broker-core object; brokers and epochs reuse broker-core's newtypes
//! (`BrokerId`, `LeaderEpoch`), which serialise as bare numbers.
//!
//! Offsets are `i64`, as in the history, so a replica's record and a client's
//! observation of it compare without conversion.

use crate::history::{Partition, ProcessId, Value};
pub use broker_core::types::{BrokerId, LeaderEpoch};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A partition's index in `Replication::partitions`. Events and snapshots
/// name partitions by index, so recording one costs four bytes, not a topic
/// name; the table gives the name back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionIndex(pub u32);

impl PartitionIndex {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One record of a replica's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub offset: i64,
    /// The leader epoch the record was written in (its batch's partition leader epoch).
    pub leader_epoch: LeaderEpoch,
    /// The workload's value (unique per send, see `history::Value`).
    pub value: Value,
}

/// One partition as the cluster was configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicatedPartition {
    pub partition: Partition,
    /// The assigned replicas (Kafka's AR); its length is the replication factor.
    pub replicas: Vec<BrokerId>,
}

/// One replica-level event, recorded when it happens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaEvent {
    /// True simulated time. Events are recorded in time order; the checkers
    /// sort them (stably) if they are not.
    pub time_ns: u64,
    pub partition: PartitionIndex,
    #[serde(flatten)]
    pub kind: ReplicaEventKind,
}

/// What happened. Closed: a new kind of observation is a new variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ReplicaEventKind {
    /// The controller decided a partition's leadership: recorded every time
    /// it bumps the partition's leader epoch, including the partition's
    /// first leader and every change to no leader. ISR-only changes (which
    /// keep the epoch) are not elections.
    Elected {
        /// `None`: the partition is offline (no eligible replica).
        leader: Option<BrokerId>,
        leader_epoch: LeaderEpoch,
        /// The ISR after the election (for a clean election it holds the leader).
        isr: Vec<BrokerId>,
        /// The leader was chosen from the ISR. `false` only for an unclean
        /// election; `true` when `leader` is `None`.
        clean: bool,
    },
    /// A broker started acting as the partition's leader in `leader_epoch`
    /// (it applied the controller's decision). Recorded before it appends,
    /// advances its HW or serves a fetch in that epoch.
    BecameLeader {
        broker: BrokerId,
        leader_epoch: LeaderEpoch,
        log_start: i64,
        /// Its log end offset (LEO): the start offset of its epoch.
        log_end: i64,
        /// Its high watermark as it took over (its follower HW: it may lag).
        hw: i64,
        /// `records` holds the leader's log in `[records_from, log_end)`;
        /// `log_start <= records_from <= log_end`. The checkers judge every
        /// committed offset in that range (leader completeness, committed is
        /// forever); offsets below it are judged at the end instead (final
        /// leader snapshot). `log_start` is exact and costs one log copy per
        /// election; a simulator that must save memory may start higher,
        /// e.g. at the partition's committed end at its previous election.
        records_from: i64,
        /// In offset order.
        records: Vec<ReplicaRecord>,
    },
    /// A leader's HW advanced (strictly). Recorded for every advance, in the
    /// leader's current epoch.
    HighWatermark {
        broker: BrokerId,
        leader_epoch: LeaderEpoch,
        hw: i64,
        /// The leader's records in `[previous hw, hw)`, in offset order (the
        /// previous hw is the last one recorded for this leadership, or
        /// `BecameLeader::hw`): the records this advance commits. Offsets
        /// below the leader's log start are left out.
        committed: Vec<ReplicaRecord>,
    },
    /// The HW a leader put into a fetch response to a consumer (what a
    /// consumer can see). A simulator may record only changes: a repeat of
    /// the previous value served by the same leadership adds nothing.
    ServedHw { broker: BrokerId, leader_epoch: LeaderEpoch, hw: i64 },
    /// The last stable offset and HW a leader put into a fetch response to
    /// a read_committed consumer, and where the records it returned ended
    /// (`read_to`, exclusive; `None`: it returned none). Recorded when the
    /// LSO changed for the partition, and whenever the records reach past it.
    ServedLso { broker: BrokerId, leader_epoch: LeaderEpoch, lso: i64, hw: i64, read_to: Option<i64> },
}

/// One replica's final state, after the heal and the drain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaSnapshot {
    pub broker: BrokerId,
    pub partition: PartitionIndex,
    /// Whether the replica believes it is the leader.
    pub is_leader: bool,
    /// The latest leader epoch the replica knows.
    pub leader_epoch: LeaderEpoch,
    pub log_start: i64,
    pub log_end: i64,
    pub hw: i64,
    /// The ISR as the leader sees it; empty for a follower.
    pub isr: Vec<BrokerId>,
    /// The broker is running (a crashed broker's snapshot is its disk state).
    pub live: bool,
    /// Its last stable offset (read_committed readers stop there): its HW
    /// unless a transaction is open below it.
    #[serde(default)]
    pub lso: i64,
    /// The transactions open in its log: (first offset, producer id), earliest first.
    #[serde(default)]
    pub open_txns: Vec<(i64, i64)>,
    /// Its whole log, `[log_start, log_end)`, in offset order.
    pub records: Vec<ReplicaRecord>,
}

/// Everything the replica checkers need besides the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replication {
    /// Every replicated partition; `PartitionIndex(i)` is `partitions[i]`.
    pub partitions: Vec<ReplicatedPartition>,
    /// `unclean.leader.election.enable`: when false, an unclean election is a violation.
    pub unclean_elections_enabled: bool,
    /// Producer processes whose acknowledgements no-lost-acked-write judges:
    /// the acks=all producers (only their acks promise durability). A
    /// scenario may list acks=1 producers too, and expect the violation.
    pub acks_all_processes: Vec<ProcessId>,
    /// In time order.
    pub events: Vec<ReplicaEvent>,
    /// One per (partition, assigned replica), taken at the end of the run.
    pub snapshots: Vec<ReplicaSnapshot>,
}

impl Replication {
    pub fn new(
        partitions: Vec<ReplicatedPartition>,
        unclean_elections_enabled: bool,
        acks_all_processes: Vec<ProcessId>,
    ) -> Replication {
        Replication { partitions, unclean_elections_enabled, acks_all_processes, ..Replication::default() }
    }

    /// The index of a partition in the table (a linear scan: call it once per partition, not per record).
    pub fn index_of(&self, partition: &Partition) -> Option<PartitionIndex> {
        let position = self.partitions.iter().position(|p| &p.partition == partition)?;
        Some(PartitionIndex(u32::try_from(position).expect("fewer than 2^32 partitions")))
    }

    /// Appends an event (the checkers sort events by time if they must).
    pub fn record(&mut self, time_ns: u64, partition: PartitionIndex, kind: ReplicaEventKind) {
        self.events.push(ReplicaEvent { time_ns, partition, kind });
    }

    /// How many partitions the observations name: the table, and any index beyond it.
    pub(crate) fn partition_count(&self) -> usize {
        let named = self.events.iter().map(|e| e.partition).chain(self.snapshots.iter().map(|s| s.partition));
        named.map(|p| p.index() + 1).max().unwrap_or(0).max(self.partitions.len())
    }

    /// `t-0`; an index missing from the table prints as `#7`.
    pub(crate) fn name(&self, partition: PartitionIndex) -> PartitionName<'_> {
        PartitionName(self.partitions.get(partition.index()).map(|p| &p.partition), partition)
    }
}

pub(crate) struct PartitionName<'r>(Option<&'r Partition>, PartitionIndex);

impl fmt::Display for PartitionName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(partition) => write!(f, "{partition}"),
            None => write!(f, "#{}", self.1 .0),
        }
    }
}

impl ReplicaEventKind {
    /// The epoch the event is about.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        match self {
            ReplicaEventKind::Elected { leader_epoch, .. }
            | ReplicaEventKind::BecameLeader { leader_epoch, .. }
            | ReplicaEventKind::HighWatermark { leader_epoch, .. }
            | ReplicaEventKind::ServedHw { leader_epoch, .. }
            | ReplicaEventKind::ServedLso { leader_epoch, .. } => *leader_epoch,
        }
    }
}

/// `p1:3 (e2)`: a record's value and epoch.
pub(crate) struct RecordLabel(pub ReplicaRecord);

impl fmt::Display for RecordLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.value, self.0.leader_epoch)
    }
}

/// `[broker-1, broker-2]`
pub(crate) struct Brokers<'a>(pub &'a [BrokerId]);

impl fmt::Display for Brokers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, broker) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{broker}")?;
        }
        f.write_str("]")
    }
}
