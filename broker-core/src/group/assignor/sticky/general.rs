//! Sticky when members subscribe to different topics. Quotas are not known
//! up front (a member alone on a topic may have to take all of it), so:
//!
//! 1. every valid claim stays with its owner;
//! 2. every other partition goes to the lightest member subscribed to its
//!    topic, topics with the fewest subscribers first (they have the least
//!    choice);
//! 3. partitions move from heavy to light members until no move helps: a
//!    move goes from a member with `n` partitions to one with `n - 2` or
//!    fewer, directly or along a chain (each link hands one partition of a
//!    topic the next member subscribes to, so only the two ends change
//!    count). Chains are found for all members at once: members in
//!    increasing count order each search backwards for who can reach them,
//!    so every member learns the lightest member it can reach.
//!
//!    Step 3 runs twice: first moving only partitions their holder did not
//!    claim, then any. A chain that lowers the sum of squared counts exists
//!    exactly when the assignment is not as balanced as possible (the
//!    semi-matching optimality condition of Harvey, Ladner, Lovász and
//!    Tamir), so the first pass reaches the best balance that keeps every
//!    claim, and the second moves claims only when balance needs it;
//! 4. greedy moves can strand a claim that another choice would have kept:
//!    claims go back to their owners where that leaves the counts as
//!    balanced (a swap, or a move that trades two counts).
//!
//! Step 4 is a heuristic: with different subscriptions the most claims a
//! balanced assignment can keep is a min-cost-flow question, and this may
//! keep a claim or two fewer (in about one of 35,000 of the property tests'
//! small random groups; Kafka's general sticky path is a heuristic too).
//! With identical subscriptions `constrained` is exact.
//!
//! Cost, with `T` topics per subscription: claims O(P log P); each
//! partition handed out and each direct move O(T log M) (the giver's and
//! the taker's entries in the per-topic indexes); each chain search
//! O(P + M + E), `E` the (member, topic) subscription pairs. Direct moves
//! do the bulk, so chain searches only mop up, but a pathological input
//! (claims far out of balance along a line of overlapping subscriptions)
//! can need one per moved partition. Measured in a release build, all
//! partitions claimed by one member: 1,000 members on 100 topics of 100
//! partitions, 0.3 s; at the limits, 10,000 members on 256 topics of 256
//! partitions, 7 s.

use super::super::claims::Owners;
use super::super::{partitions_of, Draft, PartitionCounts};
use super::holdings::{Holdings, Movable};
use crate::types::{TopicId, TopicPartition};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub(super) fn assign(counts: &PartitionCounts, topics: &[Vec<TopicId>], owners: &Owners) -> Draft {
    let mut state = State::new(counts, topics, owners);
    state.keep_claims();
    state.hand_out_unclaimed(counts);
    for movable in [Movable::Unclaimed, Movable::Any] {
        state.move_directly(movable);
        state.move_along_chains(movable);
    }
    state.return_claims();
    state.holdings.into_draft()
}

/// The next link of a member's chain towards the lightest member it can reach.
#[derive(Clone, Copy)]
struct Link {
    /// The lightest member reachable.
    target: usize,
    /// Whom to hand a partition of which topic (none at the target itself).
    next: Option<(usize, TopicId)>,
}

struct State<'a> {
    holdings: Holdings<'a>,
    owners: &'a Owners,
    /// Balancing moves so far: each lowers the sum of squared counts by at
    /// least two, which bounds them by `P² / 2`.
    moves: u64,
    move_limit: u64,
}

impl<'a> State<'a> {
    fn new(counts: &PartitionCounts, topics: &'a [Vec<TopicId>], owners: &'a Owners) -> State<'a> {
        let holdings = Holdings::new(topics, owners);
        let partitions: u64 = holdings.subscribed_topics().map(|(topic, _)| u64::from(counts[&topic])).sum();
        State { holdings, owners, moves: 0, move_limit: partitions * partitions / 2 }
    }

    /// Step 1.
    fn keep_claims(&mut self) {
        let mut claims: Vec<Vec<TopicPartition>> = vec![Vec::new(); self.holdings.member_count()];
        for (&tp, &owner) in self.owners {
            claims[owner].push(tp);
        }
        for (owner, claims) in claims.into_iter().enumerate() {
            self.holdings.give_all(owner, claims);
        }
    }

    /// Step 2.
    fn hand_out_unclaimed(&mut self, counts: &PartitionCounts) {
        let mut fewest_subscribers_first: Vec<(usize, TopicId)> =
            self.holdings.subscribed_topics().map(|(topic, subscribers)| (subscribers, topic)).collect();
        fewest_subscribers_first.sort_unstable();
        for (_, topic) in fewest_subscribers_first {
            for tp in partitions_of(topic, counts[&topic]) {
                if !self.owners.contains_key(&tp) {
                    let (_, lightest) = self.holdings.lightest_subscriber(topic, None).expect("a subscribed topic");
                    self.holdings.give(lightest, tp);
                }
            }
        }
    }

    /// Step 3, direct moves: one partition at a time from the heaviest
    /// member that can give one, until none can. Cheap, and does the bulk
    /// of the balancing. Always taking from the heaviest levels the top
    /// down evenly, so when several members must give up claims, each gives
    /// up as few as it can.
    fn move_directly(&mut self, movable: Movable) {
        while let Some((giver, topic, taker)) = self.heaviest_direct_move(movable) {
            let tp = self.holdings.take(giver, topic, movable);
            self.holdings.give(taker, tp);
            self.count_move();
        }
    }

    fn heaviest_direct_move(&self, movable: Movable) -> Option<(usize, TopicId, usize)> {
        let lightest = self.holdings.lightest_load()?;
        for (load, giver) in self.holdings.heaviest_first() {
            if load < lightest + 2 {
                return None; // nobody is light enough to take from this one or anyone lighter
            }
            if let Some((topic, taker)) = self.direct_taker(giver, movable) {
                return Some((giver, topic, taker));
            }
        }
        None
    }

    /// The lightest member, two or more partitions lighter than `giver`,
    /// subscribed to a topic of which `giver` holds a movable partition.
    /// Among equally light ones: one that costs no claim, then a topic with
    /// fewer subscribers (its partitions have fewer other places to go).
    fn direct_taker(&self, giver: usize, movable: Movable) -> Option<(TopicId, usize)> {
        let mut best: Option<(usize, bool, usize, usize, TopicId)> = None;
        for (&topic, held) in self.holdings.held(giver) {
            if !held.has_movable(movable) {
                continue;
            }
            let Some((load, taker)) = self.holdings.lightest_subscriber(topic, Some(giver)) else { continue };
            let subscribers = self.holdings.subscriber_count(topic);
            let candidate = (load, held.unclaimed.is_empty(), subscribers, taker, topic);
            if load + 2 <= self.holdings.load(giver) && best.is_none_or(|best| candidate < best) {
                best = Some(candidate);
            }
        }
        best.map(|(_, _, _, taker, topic)| (topic, taker))
    }

    /// Step 3, chains: one partition along a chain at a time, each time
    /// from the heaviest member that can reach a member two lighter, until
    /// none can.
    fn move_along_chains(&mut self, movable: Movable) {
        loop {
            let links = self.lightest_reachable(movable);
            let load = |member: usize| self.holdings.load(member);
            let giver = (0..self.holdings.member_count())
                .filter(|&member| load(member) >= load(links[member].target) + 2)
                .min_by_key(|&member| (Reverse(load(member)), member));
            let Some(giver) = giver else { return };
            let mut member = giver;
            while let Some((taker, topic)) = links[member].next {
                let tp = self.holdings.take(member, topic, movable);
                self.holdings.give(taker, tp);
                member = taker;
            }
            self.count_move();
        }
    }

    /// For every member, the lightest member it can reach along a chain and
    /// the first link towards it. Members are visited lightest first; each
    /// searches backwards (who holds a movable partition of a topic I
    /// subscribe to?) and claims everyone not yet claimed by a lighter one.
    /// A topic is expanded once in all: whoever holds it was claimed the
    /// first time round, by the lightest member it leads to.
    fn lightest_reachable(&self, movable: Movable) -> Vec<Link> {
        let members = self.holdings.member_count();
        let mut holders: BTreeMap<TopicId, Vec<usize>> = BTreeMap::new();
        for member in 0..members {
            for (&topic, held) in self.holdings.held(member) {
                if held.has_movable(movable) {
                    holders.entry(topic).or_default().push(member);
                }
            }
        }
        let mut lightest_first: Vec<usize> = (0..members).collect();
        lightest_first.sort_by_key(|&member| (self.holdings.load(member), member));
        let mut links: Vec<Option<Link>> = vec![None; members];
        let mut expanded: BTreeSet<TopicId> = BTreeSet::new();
        let mut queue = VecDeque::new();
        for target in lightest_first {
            if links[target].is_some() {
                continue;
            }
            links[target] = Some(Link { target, next: None });
            queue.push_back(target);
            while let Some(taker) = queue.pop_front() {
                for &topic in self.holdings.topics_of(taker) {
                    if !expanded.insert(topic) {
                        continue;
                    }
                    for &giver in holders.get(&topic).into_iter().flatten() {
                        if links[giver].is_none() {
                            links[giver] = Some(Link { target, next: Some((taker, topic)) });
                            queue.push_back(giver);
                        }
                    }
                }
            }
        }
        links.into_iter().map(|link| link.expect("every member is its own target at worst")).collect()
    }

    fn count_move(&mut self) {
        self.moves += 1;
        assert!(self.moves <= self.move_limit, "sticky: balancing does not converge");
    }

    /// Step 4. Each return keeps one more claim, which bounds the rounds.
    fn return_claims(&mut self) {
        for _round in 0..=self.owners.len() {
            let mut returned = false;
            for (tp, holder, claimant) in self.claims_held_elsewhere() {
                returned |= self.return_claim(tp, holder, claimant);
            }
            if !returned {
                return;
            }
        }
        panic!("sticky: returning claims does not converge");
    }

    /// (partition, holder, claimant) for every claim its claimant lost.
    fn claims_held_elsewhere(&self) -> Vec<(TopicPartition, usize, usize)> {
        let mut lost = Vec::new();
        for holder in 0..self.holdings.member_count() {
            for (&topic, held) in self.holdings.held(holder) {
                for &partition in &held.unclaimed {
                    let tp = TopicPartition::new(topic, partition);
                    if let Some(&claimant) = self.owners.get(&tp) {
                        lost.push((tp, holder, claimant));
                    }
                }
            }
        }
        lost
    }

    /// Back to `claimant`, if the counts stay as balanced: in exchange for
    /// a partition `claimant` holds but did not claim, or alone when the
    /// holder has exactly one more than the claimant.
    fn return_claim(&mut self, tp: TopicPartition, holder: usize, claimant: usize) -> bool {
        let held = self.holdings.held(holder).get(&tp.topic);
        if !held.is_some_and(|held| held.unclaimed.contains(&tp.partition)) {
            return false; // an earlier return in this round moved it
        }
        let swap_topic = self.holdings.held(claimant).iter().find_map(|(&topic, held)| {
            let swappable = !held.unclaimed.is_empty() && self.holdings.subscribes(holder, topic);
            swappable.then_some(topic)
        });
        if let Some(topic) = swap_topic {
            let swapped = self.holdings.take(claimant, topic, Movable::Unclaimed);
            self.holdings.give(holder, swapped);
        } else if self.holdings.load(holder) != self.holdings.load(claimant) + 1 {
            return false;
        }
        self.holdings.take_unclaimed(holder, tp);
        self.holdings.give(claimant, tp);
        true
    }
}
