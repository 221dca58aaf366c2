//! AlterPartition validation: may this leader replace this ISR?
//!
//! Checks run in the order of Kafka's `ReplicationControlManager`
//! (`alterPartition`, then `validateAlterPartitionData`), so that a request
//! wrong in several ways gets the error Kafka would give: broker epoch, unknown
//! partition, epochs newer than ours, stale leader epoch, not the leader,
//! stale partition epoch, malformed ISR, ineligible new members.

use super::api::ControllerError;
use super::image::{MetadataImage, PartitionState};
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, TopicPartition};

/// The fields of an AlterPartition request.
#[derive(Clone, Copy, Debug)]
pub(super) struct AlterRequest<'a> {
    pub broker: BrokerId,
    pub broker_epoch: BrokerEpoch,
    pub tp: TopicPartition,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: u32,
    pub new_isr: &'a [(BrokerId, BrokerEpoch)],
}

/// The broker is registered and `epoch` is its current registration.
pub(super) fn check_broker_epoch(
    image: &MetadataImage,
    broker: BrokerId,
    epoch: BrokerEpoch,
) -> Result<(), ControllerError> {
    match image.brokers.get(&broker) {
        None => Err(ControllerError::BrokerNotRegistered),
        Some(state) if state.epoch != epoch => Err(ControllerError::StaleBrokerEpoch),
        Some(_) => Ok(()),
    }
}

/// The new ISR, in replica order, if the request may be applied.
pub(super) fn validate(image: &MetadataImage, req: AlterRequest<'_>) -> Result<Vec<BrokerId>, ControllerError> {
    check_broker_epoch(image, req.broker, req.broker_epoch)?;
    let p = image.partitions.get(&req.tp).ok_or(ControllerError::UnknownTopicOrPartition)?;
    check_epochs(p, req)?;
    let members: Vec<BrokerId> = req.new_isr.iter().map(|(b, _)| *b).collect();
    let isr = p.in_replica_order(&members);
    // Losing anything in `in_replica_order` means a duplicate or a non-replica.
    if isr.len() != members.len() || isr.is_empty() || !isr.contains(&req.broker) {
        return Err(ControllerError::InvalidRequest);
    }
    for &(member, epoch) in req.new_isr {
        // Current members are vouched for by the ISR itself: fencing or
        // re-registering a member removes it, bumping the partition epoch the
        // request has just matched. New members must prove their incarnation.
        if !p.isr.contains(&member) && !is_eligible(image, member, epoch) {
            return Err(ControllerError::IneligibleReplica);
        }
    }
    Ok(isr)
}

fn check_epochs(p: &PartitionState, req: AlterRequest<'_>) -> Result<(), ControllerError> {
    if req.leader_epoch > p.leader_epoch || req.partition_epoch > p.partition_epoch {
        return Err(ControllerError::NotController);
    }
    if req.leader_epoch < p.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch);
    }
    if p.leader != Some(req.broker) {
        return Err(ControllerError::NotLeader);
    }
    if req.partition_epoch < p.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion);
    }
    debug_assert!(req.leader_epoch == p.leader_epoch && req.partition_epoch == p.partition_epoch);
    Ok(())
}

/// KIP-903: a replica joins the ISR only as the incarnation the leader saw
/// catch up; an unfenced registration with exactly that epoch.
fn is_eligible(image: &MetadataImage, member: BrokerId, epoch: BrokerEpoch) -> bool {
    image.brokers.get(&member).is_some_and(|s| !s.fenced && s.epoch == epoch)
}
