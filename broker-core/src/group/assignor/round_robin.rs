//! Round-robin: every subscribed partition, sorted by (topic, partition), is
//! dealt to the members in id order, going round in a circle; a member not
//! subscribed to the partition's topic is skipped (and the deal continues
//! after the member that took it). With identical subscriptions the counts
//! differ by at most one; with different ones they need not.

use super::{partitions_of, subscribers_by_topic, Draft, MemberId, PartitionCounts, Subscription};
use std::collections::BTreeMap;

pub(super) fn assign(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Draft {
    let mut draft: Draft = vec![Vec::new(); members.len()];
    // The member the dealer looks at first for the next partition.
    let mut cursor = 0;
    for (topic, subscribers) in subscribers_by_topic(counts, members) {
        for tp in partitions_of(topic, counts[&topic]) {
            let member = first_at_or_after(&subscribers, cursor);
            draft[member].push(tp);
            cursor = (member + 1) % members.len();
        }
    }
    draft
}

/// The first of `subscribers` (sorted, not empty) at or after `cursor`,
/// wrapping around: a binary search rather than a walk past every member
/// that is not subscribed.
fn first_at_or_after(subscribers: &[usize], cursor: usize) -> usize {
    assert!(!subscribers.is_empty(), "round-robin: a topic without subscribers");
    let at = subscribers.partition_point(|&member| member < cursor);
    subscribers.get(at).copied().unwrap_or(subscribers[0])
}
