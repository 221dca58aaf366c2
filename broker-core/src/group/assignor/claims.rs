//! Which previously-owned partitions count as owned going into a rebalance.
//!
//! A member reports what it owned in the generation it last belonged to.
//! The sticky assignors keep those where they can, and cooperative-sticky
//! must not hand one to anybody else before its owner gives it up, so the
//! claims are filtered first:
//!
//! - a partition that no longer exists, or of a topic the member no longer
//!   subscribes to, is dropped (its owner gives it up on its own);
//! - a member whose generation is older than the newest any member reports
//!   missed a rebalance: what it claims may since have gone to someone
//!   else, so none of its claims count (KAFKA-12984, where trusting such a
//!   claim made the cooperative assignor hand one partition to two members);
//!   this also settles a partition claimed in several generations in favour
//!   of the newest;
//! - a partition claimed by several members of the newest generation (which
//!   a correct group never produces) goes to the smallest member id. Kafka
//!   drops such a claim altogether; keeping one means the partition is
//!   never handed to a third member while two still hold it.

use super::{exists, subscribes, MemberId, PartitionCounts, Subscription};
use crate::types::TopicPartition;
use std::collections::BTreeMap;

/// Each validly owned partition's owner, by position in member id order.
pub(super) type Owners = BTreeMap<TopicPartition, usize>;

pub(super) fn valid_owners(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Owners {
    let Some(newest) = members.values().map(|subscription| subscription.generation).max() else {
        return Owners::new();
    };
    let mut owners = Owners::new();
    // Id order, so the first claimant of a partition is the smallest id.
    for (index, subscription) in members.values().enumerate() {
        if subscription.generation < newest {
            continue;
        }
        for &tp in &subscription.owned_partitions {
            if exists(counts, tp) && subscribes(subscription, tp.topic) {
                owners.entry(tp).or_insert(index);
            }
        }
    }
    owners
}
