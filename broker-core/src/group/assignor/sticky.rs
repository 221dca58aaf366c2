//! Sticky (KIP-54, KIP-341): balance first, then keep as much of what each
//! member validly owned (see `claims`) as that balance permits.
//!
//! Balanced means as even as the subscriptions allow: no partition can move
//! from a member with `n` partitions to one with `n - 2` or fewer, neither
//! directly nor along a chain of moves (each move to a member subscribed to
//! the moved partition's topic; only the chain's two ends change count).
//! With no such move left the sum of squared counts is as small as any
//! assignment's. In particular members with identical subscriptions end up
//! within one partition of each other.
//!
//! Two algorithms, as in Kafka's `AbstractStickyAssignor`:
//! - `constrained`: every member subscribes to the same topics (the common
//!   case). Quotas are known up front (`P / M`, and `P % M` members with one
//!   more), so claims are kept up to quota and the rest dealt out:
//!   O(P log P + M), and it keeps the most claims any balanced assignment
//!   can.
//! - `general`: different subscriptions. Keep every claim, hand out the rest
//!   to the lightest subscriber, then move partitions from heavy to light
//!   members until no move helps — first moving only partitions their
//!   holder did not claim, so that whenever some balanced assignment keeps
//!   every claim, one is found that does. `holdings` is its bookkeeping.

mod constrained;
mod general;
mod holdings;

use super::claims::Owners;
use super::{Draft, MemberId, PartitionCounts, Subscription};
use crate::types::TopicId;
use std::collections::BTreeMap;

pub(super) fn assign(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>, owners: &Owners) -> Draft {
    if members.is_empty() {
        return Draft::new();
    }
    let topics = existing_topics(counts, members);
    let draft = if topics.iter().all(|member_topics| *member_topics == topics[0]) {
        constrained::assign(counts, &topics[0], members.len(), owners)
    } else {
        general::assign(counts, &topics, owners)
    };
    assert_alike_within_one(&topics, &draft);
    draft
}

/// Each member's subscribed topics that exist and have partitions: the
/// subscriptions that matter for the assignment.
fn existing_topics(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Vec<Vec<TopicId>> {
    let exists = |topic: &TopicId| counts.get(topic).is_some_and(|&count| count > 0);
    members.values().map(|subscription| subscription.topics.iter().copied().filter(exists).collect()).collect()
}

/// The balance promise in its simplest form: members subscribed to the same
/// topics differ by at most one partition.
fn assert_alike_within_one(topics: &[Vec<TopicId>], draft: &Draft) {
    let mut spread: BTreeMap<&[TopicId], (usize, usize)> = BTreeMap::new();
    for (member_topics, partitions) in topics.iter().zip(draft) {
        let (least, most) = spread.entry(member_topics).or_insert((usize::MAX, 0));
        *least = (*least).min(partitions.len());
        *most = (*most).max(partitions.len());
    }
    for (member_topics, (least, most)) in spread {
        assert!(most <= least + 1, "sticky: members subscribed to {member_topics:?} hold {least} to {most} partitions");
    }
}
