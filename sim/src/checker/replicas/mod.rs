//! Replica-level checkers: they judge what the simulator observed of the
//! replicas (controller decisions, leaders taking over, HW advances, the HW
//! consumers were served, every replica's final state) against Kafka's
//! replication invariants (see docs in `observations` for the data). Like
//! the history checkers they observe and never steer: plain data in, a
//! `CheckReport` out, with the same counting and evidence.
//!
//! - no-lost-acked-write (`acked`): every acks=all acknowledgement is in the
//!   final leader's log at its offset, and the drain read it there.
//! - hw-consistency (`committed`, `matching`, `served`): committed is
//!   forever, log matching at the end, and what consumers were served.
//! - leadership (`leadership`): one leader per epoch, epochs grow, leaders
//!   are elected, and a cleanly elected leader holds everything committed.
//! - replication-liveness (`liveness`): after heal and drain, one leader
//!   whose ISR holds every live replica, HW = LEO, followers caught up.
//! - lso (`lso`, the replica half): what read_committed readers were
//!   served against the LSO and HW, and after heal and drain no
//!   transaction left open (LSO = HW on every final leader).
//!
//! One walk over the events in time order keeps, per partition, the
//! committed log (offset -> record) and the leadership state; then the
//! final snapshots are judged. Everything is linear in the records and
//! events observed (a log factor for per-broker and per-epoch maps).

mod acked;
mod committed;
mod leadership;
mod liveness;
mod logs;
mod lso;
mod matching;
mod observations;
mod served;
#[cfg(test)]
mod tests;

pub use observations::{
    BrokerId, LeaderEpoch, PartitionIndex, ReplicaEvent, ReplicaEventKind, ReplicaRecord, ReplicaSnapshot,
    ReplicatedPartition, Replication,
};

use super::evidence::{Findings, Millis};
use super::{CheckReport, Invariant};
use crate::history::History;
use committed::CommittedLog;
use leadership::{Leadership, Mandate};
use logs::RecordsView;
use observations::{Brokers, PartitionName};
use served::ServedHws;
use std::fmt;

/// The invariants `check_replicas` judges: every one appears in its counts.
pub(crate) const JUDGED: &[Invariant] = &[
    Invariant::NoLostAckedWrite,
    Invariant::HwConsistency,
    Invariant::Leadership,
    Invariant::ReplicationLiveness,
    Invariant::Lso,
];

/// Runs every replica checker over one run's observations.
pub fn check_replicas(history: &History, replication: &Replication) -> CheckReport {
    let mut ctx = Ctx { seen: Observed { history, replication }, findings: Findings::judging(JUDGED) };
    let mut partitions: Vec<PartitionState> = served::epochs_per_partition(replication)
        .into_iter()
        .map(|epochs| PartitionState {
            leadership: Leadership::default(),
            committed: CommittedLog::default(),
            served: ServedHws::new(epochs),
        })
        .collect();
    for id in in_time_order(replication) {
        let event = &replication.events[id];
        partitions[event.partition.index()].observe(&mut ctx, id);
    }
    let finals = Finals::build(replication);
    for (index, state) in partitions.iter().enumerate() {
        let partition = PartitionIndex(index as u32);
        let unclean = state.leadership.first_unclean;
        matching::check(&mut ctx, partition, &finals, unclean);
        if let Some(leader) = finals.leader(partition) {
            state.committed.check_final_leader(&mut ctx, partition, leader, unclean);
        }
    }
    let unverified = acked::check(&mut ctx, &finals, &partitions);
    liveness::check(&mut ctx, &finals, &partitions, &unverified);
    lso::check_final(&mut ctx, &finals);
    let (violations, counts) = ctx.findings.into_parts();
    CheckReport { violations, counts, ..CheckReport::default() }
}

/// Adds a replica report to a history report (their invariants are
/// disjoint but for `lso`, judged on both sides: its counts add up).
pub fn merge(into: &mut CheckReport, replicas: CheckReport) {
    into.violations.extend(replicas.violations);
    into.violations.sort_by_key(|v| v.invariant);
    for (invariant, count) in replicas.counts {
        *into.counts.entry(invariant).or_insert(0) += count;
    }
    into.reordered_sends += replicas.reordered_sends;
}

/// An event's index in `Replication::events`.
pub(crate) type EventId = usize;

/// What every check reads (`Copy`, so evidence closures can hold it while
/// findings are added).
#[derive(Clone, Copy)]
pub(crate) struct Observed<'a> {
    pub(crate) history: &'a History,
    pub(crate) replication: &'a Replication,
}

impl<'a> Observed<'a> {
    pub(crate) fn name(self, partition: PartitionIndex) -> PartitionName<'a> {
        self.replication.name(partition)
    }

    pub(crate) fn event(self, id: EventId) -> EventLabel<'a> {
        EventLabel(&self.replication.events[id])
    }

    /// `; the partition had an unclean election: ...`, or nothing.
    pub(crate) fn unclean_note(self, unclean: Option<EventId>) -> String {
        match unclean {
            Some(id) => format!("; the partition had an unclean election: {}", self.event(id)),
            None => String::new(),
        }
    }
}

/// What every check reads, and where findings go.
pub(crate) struct Ctx<'a> {
    pub(crate) seen: Observed<'a>,
    pub(crate) findings: Findings,
}

/// Event ids in time order: as recorded, or sorted stably if they were not.
fn in_time_order(replication: &Replication) -> Vec<EventId> {
    let mut ids: Vec<EventId> = (0..replication.events.len()).collect();
    if !replication.events.is_sorted_by_key(|e| e.time_ns) {
        ids.sort_by_key(|&id| replication.events[id].time_ns);
    }
    ids
}

/// Per partition, what the walk keeps.
pub(crate) struct PartitionState {
    pub(crate) leadership: Leadership,
    pub(crate) committed: CommittedLog,
    served: ServedHws,
}

impl PartitionState {
    fn observe(&mut self, ctx: &mut Ctx<'_>, id: EventId) {
        let event = &ctx.seen.replication.events[id];
        let partition = event.partition;
        match &event.kind {
            ReplicaEventKind::Elected { leader, leader_epoch, isr, clean } => {
                self.leadership.elected(ctx, id, *leader, *leader_epoch, isr, *clean);
            }
            ReplicaEventKind::BecameLeader {
                broker,
                leader_epoch,
                log_start,
                log_end,
                hw,
                records_from,
                records,
                ..
            } => {
                let unclean_before = self.leadership.first_unclean;
                let mandate = self.leadership.became_leader(ctx, id, *broker, *leader_epoch, *log_end, *hw);
                let view = RecordsView::new(records);
                let from = (*records_from).max(*log_start);
                let outcome = self.committed.new_leader(id, from, *log_end, &view);
                committed::report_new_leader(ctx, partition, id, mandate, &outcome, unclean_before);
                if let Mandate::Clean(_) | Mandate::Unelected = mandate {
                    leadership::report_incomplete(ctx, partition, id, mandate, &outcome, unclean_before);
                }
            }
            ReplicaEventKind::HighWatermark { broker, leader_epoch, hw, committed } => {
                if let Some(tenure) = self.leadership.acting(ctx, id, *broker, *leader_epoch) {
                    committed::hw_advance(ctx, partition, id, tenure, *hw);
                }
                let changed = self.committed.advance(id, *hw, committed);
                committed::report_changed(ctx, partition, id, &changed, self.leadership.first_unclean);
            }
            ReplicaEventKind::ServedHw { broker, leader_epoch, hw } => {
                let unclean = self.leadership.first_unclean;
                if let Some(tenure) = self.leadership.acting(ctx, id, *broker, *leader_epoch) {
                    self.served.check(ctx, partition, id, tenure, *hw, unclean);
                }
            }
            ReplicaEventKind::ServedLso { lso, hw, read_to, .. } => {
                lso::served(ctx, partition, id, *lso, *hw, *read_to)
            }
        }
    }
}

/// The final snapshots, by partition, and each partition's final leader.
pub(crate) struct Finals<'r> {
    /// Per partition index, its snapshots in the order given.
    snapshots: Vec<Vec<&'r ReplicaSnapshot>>,
    /// Per partition index, the live leader with the highest epoch.
    leaders: Vec<Option<&'r ReplicaSnapshot>>,
}

impl<'r> Finals<'r> {
    fn build(replication: &'r Replication) -> Finals<'r> {
        let count = replication.partition_count();
        let mut snapshots: Vec<Vec<&ReplicaSnapshot>> = vec![Vec::new(); count];
        for snapshot in &replication.snapshots {
            snapshots[snapshot.partition.index()].push(snapshot);
        }
        let leaders = snapshots
            .iter()
            .map(|replicas| {
                let mut leaders = replicas.iter().copied().filter(|s| s.is_leader && s.live);
                let first = leaders.next()?;
                Some(leaders.fold(first, |best, s| if s.leader_epoch > best.leader_epoch { s } else { best }))
            })
            .collect();
        Finals { snapshots, leaders }
    }

    pub(crate) fn snapshots(&self, partition: PartitionIndex) -> &[&'r ReplicaSnapshot] {
        self.snapshots.get(partition.index()).map_or(&[], |s| s.as_slice())
    }

    pub(crate) fn leader(&self, partition: PartitionIndex) -> Option<&'r ReplicaSnapshot> {
        self.leaders.get(partition.index()).copied().flatten()
    }
}

/// `the controller elected broker-2 at e4 from isr [broker-1, broker-2] (120ms)`
pub(crate) struct EventLabel<'r>(&'r ReplicaEvent);

impl fmt::Display for EventLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = Millis(self.0.time_ns);
        match &self.0.kind {
            ReplicaEventKind::Elected { leader: None, leader_epoch, .. } => {
                write!(f, "the controller left the partition without a leader at {leader_epoch} ({time})")
            }
            ReplicaEventKind::Elected { leader: Some(leader), leader_epoch, isr, clean: true } => {
                write!(f, "the controller elected {leader} at {leader_epoch} from isr {} ({time})", Brokers(isr))
            }
            ReplicaEventKind::Elected { leader: Some(leader), leader_epoch, isr, clean: false } => {
                write!(f, "the controller uncleanly elected {leader} at {leader_epoch}, isr {} ({time})", Brokers(isr))
            }
            ReplicaEventKind::BecameLeader { broker, leader_epoch, log_start, log_end, hw, .. } => {
                write!(
                    f,
                    "{broker} became leader at {leader_epoch} with log [{log_start}, {log_end}) and hw {hw} ({time})"
                )
            }
            ReplicaEventKind::HighWatermark { broker, leader_epoch, hw, .. } => {
                write!(f, "{broker}, leader at {leader_epoch}, advanced the HW to {hw} ({time})")
            }
            ReplicaEventKind::ServedHw { broker, leader_epoch, hw } => {
                write!(f, "{broker}, leader at {leader_epoch}, served HW {hw} ({time})")
            }
            ReplicaEventKind::ServedLso { broker, leader_epoch, lso, hw, read_to } => {
                let records = read_to.map_or("no records".to_string(), |to| format!("records up to {to}"));
                write!(f, "{broker}, leader at {leader_epoch}, served read_committed {records} with LSO {lso} and HW {hw} ({time})")
            }
        }
    }
}
