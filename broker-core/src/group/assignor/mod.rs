//! Client-side partition assignors: the group leader runs one over every
//! member's [`Subscription`] and hands the result to the coordinator in
//! SyncGroup. Pure functions of their input, deterministic (members and
//! partitions are iterated in sorted order), no randomness.
//!
//! Files: `range`, `round_robin`, `sticky` (shared by sticky and
//! cooperative-sticky; `sticky/constrained` when every member subscribes to
//! the same topics, `sticky/general` otherwise), `claims` (which
//! previously-owned partitions count), `cooperative` (KIP-429's revoke-first
//! step).
//!
//! Inside this module members are numbered by their position in the
//! `members` map (member id order), so the assignors index plain vectors;
//! [`assign`] turns the numbers back into ids.
//!
//! Bounds: at most [`MAX_PARTITIONS`] partitions in `counts` (and in any
//! member's owned partitions) and [`MAX_MEMBERS`] members. Callers (the
//! consumer that leads the group, the coordinator that admits members)
//! enforce them earlier; past them `assign` panics rather than grinding
//! through an input nobody meant to build.

mod claims;
mod cooperative;
mod range;
mod round_robin;
mod sticky;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use super::{Assignment, AssignorKind, MemberId, Subscription};
use crate::types::{TopicId, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};

/// The leader's view of the cluster: how many partitions each subscribed
/// topic has (topics the leader's metadata does not know are absent, and
/// their subscriptions are ignored, as Kafka does).
pub type PartitionCounts = BTreeMap<TopicId, u32>;

/// Most partitions `counts` may hold, summed over its topics.
pub const MAX_PARTITIONS: u64 = 65_536;
/// Most members a group may hand to an assignor.
pub const MAX_MEMBERS: usize = 10_000;

/// What an assignor computes before [`assign`] checks and sorts it: each
/// member's partitions, indexed by the member's position in id order.
type Draft = Vec<Vec<TopicPartition>>;

/// Every member gets an entry (possibly empty), its partitions sorted. Each
/// partition of a topic some member subscribes to goes to exactly one member
/// subscribed to it — except under [`AssignorKind::CooperativeSticky`],
/// where a partition that must move from one member to another is left
/// unassigned in this round (its owner revokes it and a follow-up rebalance
/// assigns it), so no partition ever goes straight from one owner to another.
///
/// Previously-owned partitions (the sticky assignors) count only when valid:
/// the partition exists, its member still subscribes to its topic, and the
/// member's generation is the newest any member reports (KAFKA-12984); a
/// partition claimed by several members of that generation goes to the
/// smallest member id.
///
/// Cost: range and round-robin O(P log M + E) with `E` the (member, topic)
/// subscription pairs; sticky with identical subscriptions O(P log P + M);
/// sticky with different ones, see `sticky/general`.
///
/// Panics past [`MAX_PARTITIONS`] or [`MAX_MEMBERS`], or when a
/// subscription's lists are not sorted and free of duplicates.
pub fn assign(
    kind: AssignorKind,
    counts: &PartitionCounts,
    members: &BTreeMap<MemberId, Subscription>,
) -> BTreeMap<MemberId, Assignment> {
    check_input(counts, members);
    let draft = match kind {
        AssignorKind::Range => range::assign(counts, members),
        AssignorKind::RoundRobin => round_robin::assign(counts, members),
        AssignorKind::Sticky => sticky::assign(counts, members, &claims::valid_owners(counts, members)),
        AssignorKind::CooperativeSticky => cooperative::assign(counts, members),
    };
    finish(kind, counts, members, draft)
}

fn check_input(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) {
    let total: u64 = counts.values().map(|&count| u64::from(count)).sum();
    assert!(total <= MAX_PARTITIONS, "assignor: {total} partitions, more than the limit of {MAX_PARTITIONS}");
    assert!(members.len() <= MAX_MEMBERS, "assignor: {} members, more than the limit of {MAX_MEMBERS}", members.len());
    for (member, subscription) in members {
        let owned = subscription.owned_partitions.len();
        assert!(
            owned as u64 <= MAX_PARTITIONS,
            "assignor: {member} owns {owned} partitions, more than the limit of {MAX_PARTITIONS}"
        );
        assert!(strictly_sorted(&subscription.topics), "assignor: {member}'s topics are not sorted and unique");
        assert!(
            strictly_sorted(&subscription.owned_partitions),
            "assignor: {member}'s owned partitions are not sorted and unique"
        );
    }
}

/// Sorts each member's partitions and checks what every assignor promises:
/// each partition exists, goes to a member subscribed to its topic, and goes
/// to one member only; outside cooperative rounds, every subscribed
/// partition is assigned.
fn finish(
    kind: AssignorKind,
    counts: &PartitionCounts,
    members: &BTreeMap<MemberId, Subscription>,
    draft: Draft,
) -> BTreeMap<MemberId, Assignment> {
    assert_eq!(draft.len(), members.len(), "assignor: a member has no entry");
    let mut assigned = BTreeSet::new();
    let mut out = BTreeMap::new();
    for ((member, subscription), mut partitions) in members.iter().zip(draft) {
        partitions.sort_unstable();
        for &tp in &partitions {
            assert!(exists(counts, tp) && subscribes(subscription, tp.topic), "assignor: {tp} given to {member}");
            assert!(assigned.insert(tp), "assignor: {tp} given to two members");
        }
        out.insert(member.clone(), Assignment { partitions });
    }
    if !kind.is_cooperative() {
        assert_eq!(assigned.len(), subscribed_partition_count(counts, members), "assignor: a partition left out");
    }
    out
}

fn strictly_sorted<T: Ord>(items: &[T]) -> bool {
    items.windows(2).all(|pair| pair[0] < pair[1])
}

fn subscribes(subscription: &Subscription, topic: TopicId) -> bool {
    subscription.topics.binary_search(&topic).is_ok()
}

fn exists(counts: &PartitionCounts, tp: TopicPartition) -> bool {
    counts.get(&tp.topic).is_some_and(|&count| tp.partition < count)
}

fn partitions_of(topic: TopicId, count: u32) -> impl Iterator<Item = TopicPartition> {
    (0..count).map(move |partition| TopicPartition::new(topic, partition))
}

/// Each topic that exists, has partitions and has subscribers, with its
/// subscribers' positions in member id order.
fn subscribers_by_topic(
    counts: &PartitionCounts,
    members: &BTreeMap<MemberId, Subscription>,
) -> BTreeMap<TopicId, Vec<usize>> {
    let mut subscribers: BTreeMap<TopicId, Vec<usize>> = BTreeMap::new();
    for (index, subscription) in members.values().enumerate() {
        for &topic in &subscription.topics {
            if counts.get(&topic).is_some_and(|&count| count > 0) {
                subscribers.entry(topic).or_default().push(index);
            }
        }
    }
    subscribers
}

fn subscribed_partition_count(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> usize {
    subscribers_by_topic(counts, members).keys().map(|topic| counts[topic] as usize).sum()
}
