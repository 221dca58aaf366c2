//! leadership: the controller's epochs only grow (MonotonicEpoch); it elects
//! replicas of the partition, from the ISR when it says the election is
//! clean, and uncleanly only when that is enabled; a broker leads only in an
//! epoch the controller elected it in, and only one broker leads in one
//! epoch (SingleLeader); a broker never goes back to an older epoch; a
//! broker advances its HW or serves a fetch only in the epoch it leads in;
//! and a cleanly elected leader holds every committed record when it takes
//! over (leader completeness).
//!
//! Leader completeness judges absence (the new leader's log ends below the
//! committed end, or lacks a committed offset it should hold); a committed
//! offset holding a different record is hw-consistency's (committed is
//! forever), so one observation is counted once. After an unclean election,
//! absence is expected and reported as hw-consistency (lost committed data).

use super::committed::{Differences, NewLeader};
use super::observations::{BrokerId, Brokers, LeaderEpoch};
use super::{Ctx, EventId, PartitionIndex, ReplicaEventKind};
use crate::checker::Invariant;
use std::collections::BTreeMap;

/// The state of one partition's leadership, as the walk has seen it.
#[derive(Debug, Default)]
pub(crate) struct Leadership {
    /// The highest epoch elected so far, and the election.
    latest_election: Option<(LeaderEpoch, EventId)>,
    /// Per epoch, the first election to it.
    elections: BTreeMap<LeaderEpoch, EventId>,
    /// Per epoch, the first broker that became leader in it.
    leaders: BTreeMap<LeaderEpoch, (BrokerId, EventId)>,
    /// The partition's first unclean election.
    pub(crate) first_unclean: Option<EventId>,
    /// Per broker, its latest leadership of the partition.
    tenures: BTreeMap<BrokerId, Tenure>,
}

/// One broker's leadership of a partition, from its `BecameLeader` on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tenure {
    /// The `BecameLeader` event.
    pub(crate) event: EventId,
    pub(crate) epoch: LeaderEpoch,
    /// Its log end as it took over: the first offset of its epoch.
    pub(crate) epoch_start: i64,
    /// Its HW now, and the event that set it (`BecameLeader` or `HighWatermark`).
    pub(crate) hw: i64,
    pub(crate) hw_event: EventId,
    /// The HW it served last, and when.
    pub(crate) last_served: Option<(i64, EventId)>,
}

/// Why a broker leads: the election that chose it, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mandate {
    Clean(EventId),
    Unclean(EventId),
    Unelected,
}

impl Leadership {
    /// The controller's latest decision (the highest epoch it elected).
    pub(crate) fn latest_election(&self) -> Option<EventId> {
        self.latest_election.map(|(_, id)| id)
    }

    pub(crate) fn elected(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: EventId,
        leader: Option<BrokerId>,
        epoch: LeaderEpoch,
        isr: &[BrokerId],
        clean: bool,
    ) {
        let seen = ctx.seen;
        let partition = seen.replication.events[id].partition;
        let note = seen.unclean_note(self.first_unclean);
        let name = seen.name(partition);
        if let Some((latest, previous)) = self.latest_election.filter(|&(latest, _)| epoch <= latest) {
            ctx.findings.found(Invariant::Leadership, || {
                format!(
                    "partition {name}: the leader epoch did not grow: {} came after {} at {latest}{note}",
                    seen.event(id),
                    seen.event(previous)
                )
            });
        }
        if let Some(leader) = leader {
            if !clean && !seen.replication.unclean_elections_enabled {
                ctx.findings.found(Invariant::Leadership, || {
                    format!("partition {name}: {}, though unclean elections are disabled", seen.event(id))
                });
            }
            if clean && !isr.contains(&leader) {
                ctx.findings.found(Invariant::Leadership, || {
                    format!("partition {name}: {}: a clean election of a leader outside the ISR{note}", seen.event(id))
                });
            }
            let replicas = seen.replication.partitions.get(partition.index()).map(|p| p.replicas.as_slice());
            if let Some(replicas) = replicas.filter(|r| !r.is_empty() && !r.contains(&leader)) {
                ctx.findings.found(Invariant::Leadership, || {
                    format!(
                        "partition {name}: {}: {leader} is not one of its replicas {}",
                        seen.event(id),
                        Brokers(replicas)
                    )
                });
            }
            if !clean && self.first_unclean.is_none() {
                self.first_unclean = Some(id);
            }
        }
        self.elections.entry(epoch).or_insert(id);
        if self.latest_election.is_none_or(|(latest, _)| epoch > latest) {
            self.latest_election = Some((epoch, id));
        }
    }

    /// Judges a broker taking over and starts its tenure; returns the
    /// election that chose it.
    pub(crate) fn became_leader(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: EventId,
        broker: BrokerId,
        epoch: LeaderEpoch,
        log_end: i64,
        hw: i64,
    ) -> Mandate {
        let seen = ctx.seen;
        let name = seen.name(seen.replication.events[id].partition);
        let note = seen.unclean_note(self.first_unclean);
        let election = self.elections.get(&epoch).copied();
        let mandate = match election.map(|e| (e, &seen.replication.events[e].kind)) {
            Some((e, ReplicaEventKind::Elected { leader: Some(chosen), clean, .. })) if *chosen == broker => {
                if *clean {
                    Mandate::Clean(e)
                } else {
                    Mandate::Unclean(e)
                }
            }
            _ => {
                ctx.findings.found(Invariant::Leadership, || {
                    let decision = match election {
                        Some(e) => format!("the controller's decision at {epoch} was: {}", seen.event(e)),
                        None => format!("the controller never elected anyone at {epoch}"),
                    };
                    format!("partition {name}: {} without being elected: {decision}{note}", seen.event(id))
                });
                Mandate::Unelected
            }
        };
        match self.leaders.get(&epoch) {
            Some(&(first, first_id)) if first != broker => {
                ctx.findings.found(Invariant::Leadership, || {
                    format!(
                        "partition {name}: two leaders in epoch {epoch}: {} and {}{}{note}",
                        seen.event(first_id),
                        seen.event(id),
                        election.map(|e| format!("; {}", seen.event(e))).unwrap_or_default()
                    )
                });
            }
            Some(_) => {}
            None => {
                self.leaders.insert(epoch, (broker, id));
            }
        }
        if let Some(previous) = self.tenures.get(&broker).filter(|t| t.epoch > epoch) {
            let previous = previous.event;
            ctx.findings.found(Invariant::Leadership, || {
                format!(
                    "partition {name}: {broker} went back to an older epoch: {} after {}{note}",
                    seen.event(id),
                    seen.event(previous)
                )
            });
        }
        let tenure = Tenure { event: id, epoch, epoch_start: log_end, hw, hw_event: id, last_served: None };
        self.tenures.insert(broker, tenure);
        mandate
    }

    /// The tenure of a broker acting as leader in `epoch` (advancing its HW,
    /// serving a fetch); a finding if its latest leadership is not in that epoch.
    pub(crate) fn acting(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: EventId,
        broker: BrokerId,
        epoch: LeaderEpoch,
    ) -> Option<&mut Tenure> {
        let latest = self.tenures.get(&broker).map(|t| (t.epoch, t.event));
        if latest.is_some_and(|(leading, _)| leading == epoch) {
            return self.tenures.get_mut(&broker);
        }
        let seen = ctx.seen;
        let name = seen.name(seen.replication.events[id].partition);
        let note = seen.unclean_note(self.first_unclean);
        ctx.findings.found(Invariant::Leadership, || {
            let latest = match latest {
                Some((_, event)) => format!("its latest leadership began when {}", seen.event(event)),
                None => "it never became leader".to_string(),
            };
            format!("partition {name}: {} without leading in {epoch}: {latest}{note}", seen.event(id))
        });
        None
    }
}

/// Leader completeness: a leader not chosen by an unclean election must hold
/// every committed record (at or above `records_from`) as it takes over.
pub(crate) fn report_incomplete(
    ctx: &mut Ctx<'_>,
    partition: PartitionIndex,
    id: EventId,
    mandate: Mandate,
    outcome: &NewLeader,
    unclean_before: Option<EventId>,
) {
    if outcome.short_of.is_none() && outcome.lacking.count == 0 {
        return;
    }
    let seen = ctx.seen;
    ctx.findings.found(Invariant::Leadership, || {
        let how = match mandate {
            Mandate::Clean(election) => format!("after {}", seen.event(election)),
            _ => "without being elected".to_string(),
        };
        let mut detail =
            format!("partition {}: {} {how}, lacks committed records", seen.name(partition), seen.event(id));
        if let Some(end) = outcome.short_of {
            detail.push_str(&format!(": the committed log reaches {end}"));
        }
        if outcome.lacking.count > 0 {
            detail.push_str(&format!("; {}", Differences::describe(&outcome.lacking, seen, "missing")));
        }
        detail + &seen.unclean_note(unclean_before)
    });
}
