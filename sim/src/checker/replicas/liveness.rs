//! replication-liveness: after every fault is healed and the drain is done,
//! each partition has converged: every assigned replica has a snapshot;
//! exactly one live replica leads (a crashed replica's stale belief does not
//! count), and it is the controller's latest choice; its ISR holds every
//! live replica; its HW equals its log end; every live follower's log ends
//! where the leader's does. (A follower's own HW is not judged: it learns
//! the leader's HW one fetch late.)

use super::observations::{BrokerId, Brokers};
use super::{Ctx, Finals, PartitionIndex, PartitionState, ReplicaEventKind};
use crate::checker::Invariant;

pub(crate) fn check(ctx: &mut Ctx<'_>, finals: &Finals<'_>, partitions: &[PartitionState], unverified: &[u64]) {
    for (index, state) in partitions.iter().enumerate() {
        let partition = PartitionIndex(index as u32);
        let seen = ctx.seen;
        let name = seen.name(partition);
        let replicas = finals.snapshots(partition);
        let assigned = seen.replication.partitions.get(index).map_or(&[][..], |p| p.replicas.as_slice());
        for broker in assigned.iter().filter(|b| !replicas.iter().any(|r| r.broker == **b)) {
            ctx.findings.found(Invariant::ReplicationLiveness, || {
                format!("partition {name}: no final snapshot of its replica {broker}")
            });
        }
        let latest = state.leadership.latest_election();
        let decision = || latest.map(|e| format!("; the controller's latest decision: {}", seen.event(e)));
        let leaders: Vec<String> = replicas
            .iter()
            .filter(|r| r.is_leader && r.live)
            .map(|r| format!("{} ({})", r.broker, r.leader_epoch))
            .collect();
        if leaders.len() != 1 {
            let unjudged = unverified.get(index).copied().unwrap_or(0);
            ctx.findings.found(Invariant::ReplicationLiveness, || {
                let mut detail = match leaders.len() {
                    0 => format!("partition {name}: no live replica leads at the end"),
                    n => format!("partition {name}: {n} live replicas lead at the end: {}", leaders.join(", ")),
                };
                if unjudged > 0 && leaders.is_empty() {
                    detail.push_str(&format!("; {unjudged} acknowledged values could not be verified"));
                }
                detail + &decision().unwrap_or_default()
            });
        }
        let Some(leader) = finals.leader(partition) else { continue };
        if let Some(e) = latest {
            if let ReplicaEventKind::Elected { leader: chosen, leader_epoch, .. } = &seen.replication.events[e].kind {
                if *chosen != Some(leader.broker) || *leader_epoch != leader.leader_epoch {
                    ctx.findings.found(Invariant::ReplicationLiveness, || {
                        format!(
                            "partition {name}: the final leader is {} at {}, not the controller's latest choice: {}",
                            leader.broker,
                            leader.leader_epoch,
                            seen.event(e)
                        )
                    });
                }
            }
        }
        let outside: Vec<BrokerId> =
            replicas.iter().filter(|r| r.live && !leader.isr.contains(&r.broker)).map(|r| r.broker).collect();
        if !outside.is_empty() {
            ctx.findings.found(Invariant::ReplicationLiveness, || {
                format!(
                    "partition {name}: the leader {}'s ISR {} lacks live replicas {}",
                    leader.broker,
                    Brokers(&leader.isr),
                    Brokers(&outside)
                )
            });
        }
        if leader.hw != leader.log_end {
            ctx.findings.found(Invariant::ReplicationLiveness, || {
                format!(
                    "partition {name}: the leader {}'s HW {} is not its log end {}",
                    leader.broker, leader.hw, leader.log_end
                )
            });
        }
        for follower in replicas.iter().filter(|r| r.live && !std::ptr::eq(**r, leader)) {
            if follower.log_end != leader.log_end {
                ctx.findings.found(Invariant::ReplicationLiveness, || {
                    format!(
                        "partition {name}: live follower {} ends at {}, the leader {} at {}",
                        follower.broker, follower.log_end, leader.broker, leader.log_end
                    )
                });
            }
        }
    }
}
