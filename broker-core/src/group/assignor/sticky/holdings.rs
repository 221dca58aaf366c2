//! Who holds what while the general sticky assignor works, indexed the ways
//! it asks: each member's partitions by topic (split into the ones it
//! claimed and the rest), each topic's subscribers lightest first, and all
//! members heaviest first. `give` and `take` keep the indexes in step.

use super::super::claims::Owners;
use super::super::Draft;
use crate::types::{TopicId, TopicPartition};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Which partitions a balancing pass may take from their holder.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Movable {
    /// Only partitions the holder did not claim: moving them costs no stickiness.
    Unclaimed,
    Any,
}

/// One member's partitions of one topic.
#[derive(Default)]
pub(super) struct Held {
    /// Partitions the member validly claimed.
    claimed: BTreeSet<u32>,
    /// Partitions it did not claim (handed to it in this rebalance).
    pub(super) unclaimed: BTreeSet<u32>,
}

impl Held {
    pub(super) fn has_movable(&self, movable: Movable) -> bool {
        !self.unclaimed.is_empty() || (movable == Movable::Any && !self.claimed.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.claimed.is_empty() && self.unclaimed.is_empty()
    }
}

pub(super) struct Holdings<'a> {
    /// Each member's existing subscribed topics, sorted.
    topics: &'a [Vec<TopicId>],
    owners: &'a Owners,
    held: Vec<BTreeMap<TopicId, Held>>,
    load: Vec<usize>,
    /// Per subscribed topic, its subscribers as (load, member).
    by_load: BTreeMap<TopicId, BTreeSet<(usize, usize)>>,
    /// Every member as (load, member), the heaviest first.
    by_weight: BTreeSet<(Reverse<usize>, usize)>,
}

impl<'a> Holdings<'a> {
    /// Nobody holds anything yet.
    pub(super) fn new(topics: &'a [Vec<TopicId>], owners: &'a Owners) -> Holdings<'a> {
        let mut by_load: BTreeMap<TopicId, BTreeSet<(usize, usize)>> = BTreeMap::new();
        for (member, member_topics) in topics.iter().enumerate() {
            assert!(member_topics.windows(2).all(|pair| pair[0] < pair[1]), "sticky: topics not sorted");
            for &topic in member_topics {
                by_load.entry(topic).or_default().insert((0, member));
            }
        }
        Holdings {
            topics,
            owners,
            held: topics.iter().map(|_| BTreeMap::new()).collect(),
            load: vec![0; topics.len()],
            by_load,
            by_weight: (0..topics.len()).map(|member| (Reverse(0), member)).collect(),
        }
    }

    pub(super) fn member_count(&self) -> usize {
        self.load.len()
    }

    pub(super) fn load(&self, member: usize) -> usize {
        self.load[member]
    }

    pub(super) fn subscribes(&self, member: usize, topic: TopicId) -> bool {
        self.topics[member].binary_search(&topic).is_ok()
    }

    pub(super) fn topics_of(&self, member: usize) -> &'a [TopicId] {
        &self.topics[member]
    }

    /// What `member` holds, by topic.
    pub(super) fn held(&self, member: usize) -> &BTreeMap<TopicId, Held> {
        &self.held[member]
    }

    /// Every topic someone subscribes to, with how many do.
    pub(super) fn subscribed_topics(&self) -> impl Iterator<Item = (TopicId, usize)> + '_ {
        self.by_load.iter().map(|(&topic, subscribers)| (topic, subscribers.len()))
    }

    pub(super) fn subscriber_count(&self, topic: TopicId) -> usize {
        self.by_load[&topic].len()
    }

    /// The lightest subscriber of `topic` other than `except`, as (load, member).
    pub(super) fn lightest_subscriber(&self, topic: TopicId, except: Option<usize>) -> Option<(usize, usize)> {
        self.by_load[&topic].iter().find(|&&(_, member)| Some(member) != except).copied()
    }

    /// Every member as (load, member), the heaviest first.
    pub(super) fn heaviest_first(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.by_weight.iter().map(|&(Reverse(load), member)| (load, member))
    }

    pub(super) fn lightest_load(&self) -> Option<usize> {
        self.by_weight.last().map(|&(Reverse(load), _)| load)
    }

    pub(super) fn give(&mut self, member: usize, tp: TopicPartition) {
        self.give_all(member, [tp]);
    }

    /// Several at once: the load indexes are updated once, not per partition.
    pub(super) fn give_all(&mut self, member: usize, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut given = 0;
        for tp in partitions {
            assert!(self.subscribes(member, tp.topic), "sticky: {tp} given to member #{member}, not subscribed");
            let claimed = self.owners.get(&tp) == Some(&member);
            let held = self.held[member].entry(tp.topic).or_default();
            let new = if claimed { held.claimed.insert(tp.partition) } else { held.unclaimed.insert(tp.partition) };
            assert!(new, "sticky: {tp} given twice to member #{member}");
            given += 1;
        }
        self.set_load(member, self.load[member] + given);
    }

    /// One movable partition of `topic` from `member`: an unclaimed one if
    /// there is one (moving it costs no stickiness), the highest numbered.
    pub(super) fn take(&mut self, member: usize, topic: TopicId, movable: Movable) -> TopicPartition {
        let held = self.held[member].get_mut(&topic).expect("sticky: taking a topic the member does not hold");
        let partition = match held.unclaimed.pop_last() {
            Some(partition) => partition,
            None => {
                assert_eq!(movable, Movable::Any, "sticky: taking a claimed partition in the unclaimed-only pass");
                held.claimed.pop_last().expect("sticky: taking from an empty holding")
            }
        };
        self.after_take(member, topic);
        TopicPartition::new(topic, partition)
    }

    /// `tp` itself from `member`, which holds it without having claimed it.
    pub(super) fn take_unclaimed(&mut self, member: usize, tp: TopicPartition) {
        let held = self.held[member].get_mut(&tp.topic).expect("sticky: taking a topic the member does not hold");
        assert!(held.unclaimed.remove(&tp.partition), "sticky: member #{member} does not hold {tp} unclaimed");
        self.after_take(member, tp.topic);
    }

    fn after_take(&mut self, member: usize, topic: TopicId) {
        if self.held[member][&topic].is_empty() {
            self.held[member].remove(&topic);
        }
        self.set_load(member, self.load[member] - 1);
    }

    fn set_load(&mut self, member: usize, load: usize) {
        let before = self.load[member];
        for topic in &self.topics[member] {
            let subscribers = self.by_load.get_mut(topic).expect("sticky: a subscribed topic is indexed");
            assert!(subscribers.remove(&(before, member)), "sticky: load index out of step");
            subscribers.insert((load, member));
        }
        assert!(self.by_weight.remove(&(Reverse(before), member)), "sticky: weight index out of step");
        self.by_weight.insert((Reverse(load), member));
        self.load[member] = load;
    }

    pub(super) fn into_draft(self) -> Draft {
        let partitions_of = |held: BTreeMap<TopicId, Held>| -> Vec<TopicPartition> {
            let by_topic = held.into_iter().flat_map(|(topic, held)| {
                let partitions = held.claimed.into_iter().chain(held.unclaimed);
                partitions.map(move |partition| TopicPartition::new(topic, partition))
            });
            by_topic.collect()
        };
        self.held.into_iter().map(partitions_of).collect()
    }
}
