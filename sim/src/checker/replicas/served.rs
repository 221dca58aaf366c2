//! hw-consistency, what consumers were served (`ServedHw`).
//!
//! "The consumer-visible HW never goes backwards" would flag legal Kafka: a
//! newly elected leader's HW lags the old leader's until its followers fetch
//! from it (it learned the HW as a follower, one fetch late), and it serves
//! that lagging HW in fetch responses (KIP-207 only holds back ListOffsets);
//! and a deposed leader that has not yet heard of the new epoch keeps
//! serving its old HW to consumers that still fetch from it. So this judges
//! the weakest correct form:
//!
//! - within one leadership (a `BecameLeader` and what follows it), the
//!   served HW never goes backwards, and never exceeds the leader's own HW
//!   (above it, consumers would read uncommitted records);
//! - once a leader of epoch `e` serves a HW at or above its epoch's start
//!   offset (its log end when it took over: it has committed in its own
//!   epoch, so it has caught up with everything committed before), that HW
//!   is at least every HW served in an epoch below `e`. In a clean history
//!   the epoch's start offset is at least the committed end, which is at
//!   least every HW served before.
//!
//! The second holds only while elections are clean: after a partition's
//! first unclean election it is not judged (loss is expected).

use super::leadership::Tenure;
use super::observations::LeaderEpoch;
use super::{Ctx, EventId, PartitionIndex, ReplicaEventKind, Replication};
use crate::checker::Invariant;

/// Per partition, the highest HW served in each epoch, as a Fenwick tree of
/// prefix maxima over the epochs leaders took over in: "the highest HW
/// served in any epoch below `e`" costs a log factor, however many epochs
/// and however late a deposed leader serves.
#[derive(Debug)]
pub(crate) struct ServedHws {
    /// Every epoch some broker became leader in, ascending.
    epochs: Vec<LeaderEpoch>,
    /// 1-based Fenwick tree: the highest (hw, event) in its range of epochs.
    tree: Vec<Option<(i64, EventId)>>,
}

/// Per partition index, every epoch a `BecameLeader` names, ascending.
pub(crate) fn epochs_per_partition(replication: &Replication) -> Vec<Vec<LeaderEpoch>> {
    let mut epochs = vec![Vec::new(); replication.partition_count()];
    for event in &replication.events {
        if let ReplicaEventKind::BecameLeader { leader_epoch, .. } = event.kind {
            epochs[event.partition.index()].push(leader_epoch);
        }
    }
    for list in &mut epochs {
        list.sort_unstable();
        list.dedup();
    }
    epochs
}

impl ServedHws {
    pub(crate) fn new(epochs: Vec<LeaderEpoch>) -> ServedHws {
        let tree = vec![None; epochs.len() + 1];
        ServedHws { epochs, tree }
    }

    /// The highest HW served in an epoch below the `rank`-th.
    fn highest_below(&self, rank: usize) -> Option<(i64, EventId)> {
        let (mut i, mut best) = (rank, None);
        while i > 0 {
            best = higher(best, self.tree[i]);
            i &= i - 1;
        }
        best
    }

    fn served(&mut self, rank: usize, hw: i64, id: EventId) {
        let mut i = rank + 1;
        while i < self.tree.len() {
            self.tree[i] = higher(self.tree[i], Some((hw, id)));
            i += i & i.wrapping_neg();
        }
    }

    /// Judges one served HW by the leadership `tenure` it was served in.
    pub(crate) fn check(
        &mut self,
        ctx: &mut Ctx<'_>,
        partition: PartitionIndex,
        id: EventId,
        tenure: &mut Tenure,
        hw: i64,
        unclean: Option<EventId>,
    ) {
        let seen = ctx.seen;
        let name = seen.name(partition);
        if hw > tenure.hw {
            let own = tenure.hw_event;
            ctx.findings.found(Invariant::HwConsistency, || {
                format!(
                    "partition {name}: {} above the leader's own HW {} (set when {}): consumers could read uncommitted records",
                    seen.event(id),
                    tenure.hw,
                    seen.event(own)
                )
            });
        }
        if let Some((last, last_id)) = tenure.last_served.filter(|&(last, _)| hw < last) {
            ctx.findings.found(Invariant::HwConsistency, || {
                format!(
                    "partition {name}: the served HW went backwards within one leadership: {} after {} ({last})",
                    seen.event(id),
                    seen.event(last_id)
                )
            });
        }
        tenure.last_served = Some((hw, id));
        let Ok(rank) = self.epochs.binary_search(&tenure.epoch) else { return };
        if unclean.is_none() && hw >= tenure.epoch_start {
            if let Some((before, before_id)) = self.highest_below(rank).filter(|&(before, _)| hw < before) {
                let start = tenure.epoch_start;
                ctx.findings.found(Invariant::HwConsistency, || {
                    format!(
                        "partition {name}: the served HW went backwards across leaders: {}, at or above its epoch's \
                         start offset {start}, is below HW {before} served earlier in a lower epoch: {}",
                        seen.event(id),
                        seen.event(before_id)
                    )
                });
            }
        }
        self.served(rank, hw, id);
    }
}

fn higher(a: Option<(i64, EventId)>, b: Option<(i64, EventId)>) -> Option<(i64, EventId)> {
    match (a, b) {
        (Some(x), Some(y)) if y.0 > x.0 => Some(y),
        (Some(x), _) => Some(x),
        (None, y) => y,
    }
}
