//! Sticky when every member subscribes to the same topics. With `P`
//! partitions and `M` members each member gets `P / M` (the floor quota) and
//! `P % M` of them one more (the ceiling quota), so:
//!
//! 1. each member keeps its claims, lowest partitions first, up to the
//!    ceiling quota;
//! 2. if more members keep the ceiling than `P % M` allows, the later ones
//!    (in id order) give back their last claim;
//! 3. the partitions nobody kept are dealt, in (topic, partition) order and
//!    one at a time around the members below the floor quota, until every
//!    member has the floor; what is left goes one each, in id order, to
//!    members at the floor.
//!
//! A member keeps `min(claims, floor)` claims plus one more where a ceiling
//! slot is left for it, which is the most any balanced assignment keeps.

use super::super::claims::Owners;
use super::super::{partitions_of, Draft, PartitionCounts};
use crate::types::{TopicId, TopicPartition};
use std::collections::{BTreeSet, VecDeque};

pub(super) fn assign(counts: &PartitionCounts, topics: &[TopicId], member_count: usize, owners: &Owners) -> Draft {
    assert!(member_count > 0, "sticky: no members");
    let partitions: Vec<TopicPartition> =
        topics.iter().flat_map(|&topic| partitions_of(topic, counts[&topic])).collect();
    let floor = partitions.len() / member_count;
    let ceiling_slots = partitions.len() % member_count;
    let ceiling = floor + usize::from(ceiling_slots > 0);

    let mut draft = keep_claims(owners, topics, member_count, ceiling);
    give_back_extra_ceilings(&mut draft, ceiling, ceiling_slots);
    let kept: BTreeSet<TopicPartition> = draft.iter().flatten().copied().collect();
    let free: Vec<TopicPartition> = partitions.into_iter().filter(|tp| !kept.contains(tp)).collect();
    deal(&mut draft, free, floor);
    draft
}

/// Step 1: claims in partition order, so each member keeps its lowest ones.
fn keep_claims(owners: &Owners, topics: &[TopicId], member_count: usize, ceiling: usize) -> Draft {
    let mut draft: Draft = vec![Vec::new(); member_count];
    for (&tp, &owner) in owners {
        // Valid claims are of subscribed topics, and everyone subscribes to `topics`.
        assert!(topics.binary_search(&tp.topic).is_ok(), "sticky: claim of {tp} outside the subscription");
        if draft[owner].len() < ceiling {
            draft[owner].push(tp);
        }
    }
    draft
}

/// Step 2: only `ceiling_slots` members may hold the ceiling quota.
fn give_back_extra_ceilings(draft: &mut Draft, ceiling: usize, ceiling_slots: usize) {
    if ceiling_slots == 0 {
        return; // the ceiling is the floor: everyone may hold it
    }
    let mut at_ceiling = 0;
    for partitions in draft.iter_mut().filter(|partitions| partitions.len() == ceiling) {
        at_ceiling += 1;
        if at_ceiling > ceiling_slots {
            partitions.pop();
        }
    }
}

/// Step 3: bring everyone to the floor, then the remainder one each.
fn deal(draft: &mut Draft, free: Vec<TopicPartition>, floor: usize) {
    let mut free = free.into_iter();
    let mut below_floor: VecDeque<usize> = (0..draft.len()).filter(|&member| draft[member].len() < floor).collect();
    while let Some(member) = below_floor.pop_front() {
        draft[member].push(free.next().expect("sticky: too few partitions to reach the floor quota"));
        if draft[member].len() < floor {
            below_floor.push_back(member);
        }
    }
    let at_floor: Vec<usize> = (0..draft.len()).filter(|&member| draft[member].len() == floor).collect();
    let remainder: Vec<TopicPartition> = free.collect();
    assert!(remainder.len() <= at_floor.len(), "sticky: more partitions left than ceiling slots");
    for (tp, member) in remainder.into_iter().zip(at_floor) {
        draft[member].push(tp);
    }
}
