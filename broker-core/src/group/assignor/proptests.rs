//! Properties of every assignor over random groups, checked against plain
//! statements of the rules (a reference for valid claims, a naive
//! round-robin, and for small groups a brute force over every possible
//! assignment). Two kinds of input: members with random subscriptions and
//! random claims (stale, conflicting, of unknown topics), and groups that
//! evolve from a real previous assignment (members leave and join,
//! subscriptions change, a member misses a generation).

use super::*;
use crate::group::GenerationId;
use proptest::prelude::*;

/// Topics t0..t3 may exist; t4 never does (but is subscribed to and claimed).
const TOPICS: u16 = 4;

fn counts() -> impl Strategy<Value = PartitionCounts> {
    prop::collection::btree_map((0..TOPICS).prop_map(TopicId), 0..7u32, 0..=TOPICS as usize)
}

fn topics() -> impl Strategy<Value = Vec<TopicId>> {
    prop::collection::btree_set((0..=TOPICS).prop_map(TopicId), 0..=3).prop_map(|topics| topics.into_iter().collect())
}

fn subscription() -> impl Strategy<Value = Subscription> {
    let partition = (0..=TOPICS, 0..8u32).prop_map(|(topic, partition)| TopicPartition::new(TopicId(topic), partition));
    let owned = prop::collection::btree_set(partition, 0..6);
    (topics(), owned, -1..3i32).prop_map(|(topics, owned, generation)| Subscription {
        topics,
        owned_partitions: owned.into_iter().collect(),
        generation: GenerationId(generation),
    })
}

fn member_id() -> impl Strategy<Value = MemberId> {
    (0..8u8).prop_map(|n| MemberId::new(&format!("C{n}")))
}

fn random_group() -> impl Strategy<Value = (PartitionCounts, BTreeMap<MemberId, Subscription>)> {
    (counts(), prop::collection::btree_map(member_id(), subscription(), 0..6))
}

/// What happens to one member between the previous rebalance and this one.
#[derive(Clone, Debug)]
enum Change {
    Stays,
    Leaves,
    Resubscribes(Vec<TopicId>),
    /// Missed the last rebalance: still reports an older generation.
    MissesAGeneration,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => Just(Change::Stays),
        1 => Just(Change::Leaves),
        1 => topics().prop_map(Change::Resubscribes),
        1 => Just(Change::MissesAGeneration),
    ]
}

/// A group whose claims come from a real assignment of the previous
/// generation, then changed: some members leave, resubscribe or fall a
/// generation behind, new ones join, and the topics' partition counts may
/// change too.
fn evolved_group() -> impl Strategy<Value = (PartitionCounts, BTreeMap<MemberId, Subscription>)> {
    let before = prop::collection::btree_map(member_id(), topics(), 1..6);
    let joiners = prop::collection::btree_map((8..11u8).prop_map(|n| MemberId::new(&format!("C{n}"))), topics(), 0..3);
    let kind = prop::sample::select(AssignorKind::ALL);
    let changes = prop::collection::vec(change(), 6);
    (counts(), counts(), prop::bool::weighted(0.2), before, joiners, kind, changes).prop_map(
        |(counts_before, counts_after, counts_change, before, joiners, kind, changes)| {
            let generation = GenerationId(3);
            let previous: BTreeMap<MemberId, Subscription> = before
                .into_iter()
                .map(|(member, topics)| (member, Subscription { topics, ..Subscription::default() }))
                .collect();
            let assignment = assign(kind, &counts_before, &previous);
            let mut members = BTreeMap::new();
            for ((member, subscription), change) in previous.into_iter().zip(changes) {
                let mut now = Subscription {
                    owned_partitions: assignment[&member].partitions.clone(),
                    generation,
                    ..subscription
                };
                match change {
                    Change::Stays => {}
                    Change::Leaves => continue,
                    Change::Resubscribes(topics) => now.topics = topics,
                    Change::MissesAGeneration => now.generation = GenerationId(generation.0 - 1),
                }
                members.insert(member, now);
            }
            for (member, topics) in joiners {
                members.insert(member, Subscription { topics, ..Subscription::default() });
            }
            (if counts_change { counts_after } else { counts_before }, members)
        },
    )
}

/// Members in a line, member `i` subscribed to topics `i` and `i + 1`,
/// each claiming some of its topics' partitions: only chains of moves
/// along the line can even out lopsided claims.
fn ladder_group() -> impl Strategy<Value = (PartitionCounts, BTreeMap<MemberId, Subscription>)> {
    let claims = prop::collection::vec(prop::collection::btree_set(0..7u32, 0..5), TOPICS as usize);
    (counts(), claims).prop_map(|(counts, claims)| {
        let members = claims
            .into_iter()
            .enumerate()
            .map(|(rung, claims)| {
                let topics = vec![TopicId(rung as u16), TopicId(rung as u16 + 1)];
                let mut owned_partitions: Vec<TopicPartition> = claims
                    .into_iter()
                    .map(|partition| TopicPartition::new(topics[partition as usize % 2], partition))
                    .collect();
                owned_partitions.sort_unstable();
                (
                    MemberId::new(&format!("C{rung}")),
                    Subscription { topics, owned_partitions, generation: GenerationId(1) },
                )
            })
            .collect();
        (counts, members)
    })
}

fn any_group() -> impl Strategy<Value = (PartitionCounts, BTreeMap<MemberId, Subscription>)> {
    prop_oneof![random_group(), evolved_group(), ladder_group()]
}

/// The claim rules stated plainly: among members of the newest generation,
/// the first (smallest id) that still subscribes to an existing partition's
/// topic and reports owning it.
fn reference_owner<'a>(
    counts: &PartitionCounts,
    members: &'a BTreeMap<MemberId, Subscription>,
    tp: TopicPartition,
) -> Option<&'a MemberId> {
    let newest = members.values().map(|subscription| subscription.generation).max()?;
    let exists = counts.get(&tp.topic).is_some_and(|&count| tp.partition < count);
    let claims = |subscription: &Subscription| {
        subscription.generation == newest
            && subscription.topics.contains(&tp.topic)
            && subscription.owned_partitions.contains(&tp)
    };
    members.iter().find(|(_, subscription)| exists && claims(subscription)).map(|(member, _)| member)
}

fn subscribed_partitions(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Vec<TopicPartition> {
    let subscribed = |topic: &TopicId| members.values().any(|subscription| subscription.topics.contains(topic));
    let topics = counts.iter().filter(|(topic, _)| subscribed(topic));
    topics.flat_map(|(&topic, &count)| partitions_of(topic, count)).collect()
}

fn holder(assignment: &BTreeMap<MemberId, Assignment>, tp: TopicPartition) -> Vec<&MemberId> {
    let holds = |assignment: &Assignment| assignment.partitions.contains(&tp);
    assignment.iter().filter(|(_, assignment)| holds(assignment)).map(|(member, _)| member).collect()
}

fn loads(assignment: &BTreeMap<MemberId, Assignment>) -> Vec<usize> {
    assignment.values().map(|assignment| assignment.partitions.len()).collect()
}

/// The properties every assignor promises, in the cooperative form where
/// it differs.
fn check_contract(
    kind: AssignorKind,
    counts: &PartitionCounts,
    members: &BTreeMap<MemberId, Subscription>,
    assignment: &BTreeMap<MemberId, Assignment>,
) -> Result<(), TestCaseError> {
    prop_assert!(assignment.keys().eq(members.keys()), "every member, and only members, get an entry");
    for (member, assigned) in assignment {
        prop_assert!(assigned.partitions.windows(2).all(|pair| pair[0] < pair[1]), "{member}: not sorted");
        for tp in &assigned.partitions {
            prop_assert!(members[member].topics.contains(&tp.topic), "{tp} to {member}, not subscribed");
        }
    }
    let subscribed = subscribed_partitions(counts, members);
    let assigned_total: usize = loads(assignment).iter().sum();
    let mut assigned_subscribed = 0;
    for &tp in &subscribed {
        let holders = holder(assignment, tp);
        prop_assert!(holders.len() <= 1, "{tp} to {holders:?}");
        assigned_subscribed += holders.len();
        let owner = reference_owner(counts, members, tp);
        if !kind.is_cooperative() {
            prop_assert_eq!(holders.len(), 1, "{} unassigned", tp);
        } else if holders.is_empty() {
            prop_assert!(owner.is_some(), "{tp} unassigned, and nobody owns it");
        } else {
            prop_assert!(owner.is_none_or(|owner| owner == holders[0]), "{tp} from {owner:?} to {holders:?}");
        }
    }
    prop_assert_eq!(assigned_total, assigned_subscribed, "a partition that does not exist was assigned");
    Ok(())
}

/// Sticky's balance, checked locally: no partition can move straight to a
/// member subscribed to its topic that holds two fewer; in particular
/// members with identical subscriptions differ by at most one.
fn check_no_direct_move_helps(
    members: &BTreeMap<MemberId, Subscription>,
    assignment: &BTreeMap<MemberId, Assignment>,
) -> Result<(), TestCaseError> {
    for (giver, given) in assignment {
        for (taker, taken) in assignment {
            let could_take = given.partitions.iter().any(|tp| members[taker].topics.contains(&tp.topic));
            prop_assert!(
                !could_take || given.partitions.len() <= taken.partitions.len() + 1,
                "{giver} holds {}, {taker} could take one and holds {}",
                given.partitions.len(),
                taken.partitions.len()
            );
            if members[giver].topics == members[taker].topics {
                prop_assert!(given.partitions.len() <= taken.partitions.len() + 1, "{giver} and {taker} alike");
            }
        }
    }
    Ok(())
}

fn partitions_of_topic(assignment: &Assignment, topic: TopicId) -> Vec<u32> {
    assignment.partitions.iter().filter(|tp| tp.topic == topic).map(|tp| tp.partition).collect()
}

/// How many ways there are to assign the subscribed partitions (none if
/// that overflows): what a brute force would have to try.
fn possible_assignments(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Option<usize> {
    let subscribers = |tp: &TopicPartition| members.values().filter(|s| s.topics.contains(&tp.topic)).count();
    subscribed_partitions(counts, members).iter().try_fold(1usize, |product, tp| product.checked_mul(subscribers(tp)))
}

/// Every assignment of the subscribed partitions (each to a member
/// subscribed to it), as (sum of squared loads, claims kept): the best
/// balance, and the most claims kept at that balance. Only for small groups.
fn brute_force_best(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> (usize, usize) {
    let ids: Vec<&MemberId> = members.keys().collect();
    let choices: Vec<(TopicPartition, Vec<usize>, Option<usize>)> = subscribed_partitions(counts, members)
        .into_iter()
        .map(|tp| {
            let eligible = ids.iter().enumerate().filter(|(_, id)| members[**id].topics.contains(&tp.topic));
            let owner =
                reference_owner(counts, members, tp).map(|owner| ids.iter().position(|id| *id == owner).unwrap());
            (tp, eligible.map(|(index, _)| index).collect(), owner)
        })
        .collect();
    let mut best = (usize::MAX, 0);
    let mut pick = vec![0; choices.len()];
    loop {
        let mut load = vec![0; ids.len()];
        let mut kept = 0;
        for ((_, eligible, owner), &choice) in choices.iter().zip(&pick) {
            load[eligible[choice]] += 1;
            kept += usize::from(*owner == Some(eligible[choice]));
        }
        let squares = load.iter().map(|load| load * load).sum();
        if squares < best.0 || (squares == best.0 && kept > best.1) {
            best = (squares, kept);
        }
        // Next combination, odometer style.
        let Some(digit) = (0..pick.len()).find(|&digit| pick[digit] + 1 < choices[digit].1.len()) else {
            return best;
        };
        pick[digit] += 1;
        pick[..digit].fill(0);
    }
}

fn squares_and_kept(
    counts: &PartitionCounts,
    members: &BTreeMap<MemberId, Subscription>,
    assignment: &BTreeMap<MemberId, Assignment>,
) -> (usize, usize) {
    let squares = loads(assignment).iter().map(|load| load * load).sum();
    let kept = subscribed_partitions(counts, members)
        .into_iter()
        .filter(|&tp| reference_owner(counts, members, tp).is_some_and(|owner| holder(assignment, tp) == [owner]))
        .count();
    (squares, kept)
}

/// Members' subscriptions, restricted to topics with partitions, all the same.
fn subscriptions_alike(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> bool {
    let existing = |subscription: &Subscription| -> Vec<TopicId> {
        subscription.topics.iter().copied().filter(|topic| counts.get(topic).is_some_and(|&count| count > 0)).collect()
    };
    let mut all = members.values().map(existing);
    let first = all.next();
    all.all(|topics| Some(topics) == first)
}

/// Round-robin the slow obvious way: walk the circle member by member.
fn naive_round_robin(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Vec<Vec<TopicPartition>> {
    let subscriptions: Vec<&Subscription> = members.values().collect();
    let mut out = vec![Vec::new(); subscriptions.len()];
    let mut cursor = 0;
    for tp in subscribed_partitions(counts, members) {
        while !subscriptions[cursor].topics.contains(&tp.topic) {
            cursor = (cursor + 1) % subscriptions.len();
        }
        out[cursor].push(tp);
        cursor = (cursor + 1) % subscriptions.len();
    }
    out
}

/// The group after a cooperative round settles: everyone owns what it was
/// just given, in the next generation.
fn next_generation(
    members: &BTreeMap<MemberId, Subscription>,
    assignment: &BTreeMap<MemberId, Assignment>,
) -> BTreeMap<MemberId, Subscription> {
    let newest = members.values().map(|subscription| subscription.generation).max().unwrap_or(GenerationId::NONE);
    let settle = |(member, subscription): (&MemberId, &Subscription)| {
        let owned_partitions = assignment[member].partitions.clone();
        (member.clone(), Subscription { owned_partitions, generation: newest.next(), ..subscription.clone() })
    };
    members.iter().map(settle).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_assignor_keeps_its_contract((counts, members) in any_group()) {
        for &kind in AssignorKind::ALL {
            let assignment = assign(kind, &counts, &members);
            check_contract(kind, &counts, &members, &assignment)?;
            prop_assert_eq!(&assignment, &assign(kind, &counts, &members), "{} is not deterministic", kind.name());
        }
    }

    #[test]
    fn range_gives_contiguous_runs_earlier_members_first((counts, members) in any_group()) {
        let assignment = assign(AssignorKind::Range, &counts, &members);
        for (&topic, &count) in &counts {
            let runs: Vec<Vec<u32>> = members
                .iter()
                .filter(|(_, subscription)| subscription.topics.contains(&topic))
                .map(|(member, _)| partitions_of_topic(&assignment[member], topic))
                .collect();
            let in_order: Vec<u32> = runs.iter().flatten().copied().collect();
            prop_assert!(runs.is_empty() || in_order == (0..count).collect::<Vec<_>>(), "{topic:?}: {runs:?}");
            prop_assert!(runs.windows(2).all(|pair| pair[0].len() >= pair[1].len()), "{topic:?}: {runs:?}");
            prop_assert!(runs.iter().all(|run| run.len() + 1 >= runs[0].len()), "{topic:?}: {runs:?}");
        }
    }

    #[test]
    fn round_robin_matches_the_naive_deal((counts, members) in any_group()) {
        let assignment = assign(AssignorKind::RoundRobin, &counts, &members);
        let dealt: Vec<Vec<TopicPartition>> = assignment.into_values().map(|assigned| assigned.partitions).collect();
        let mut naive = naive_round_robin(&counts, &members);
        naive.iter_mut().for_each(|partitions| partitions.sort_unstable());
        prop_assert_eq!(dealt, naive);
    }

    #[test]
    fn sticky_is_balanced((counts, members) in any_group()) {
        let assignment = assign(AssignorKind::Sticky, &counts, &members);
        check_no_direct_move_helps(&members, &assignment)?;
    }

    #[test]
    fn sticky_is_as_balanced_and_sticky_as_brute_force((counts, members) in any_group()) {
        prop_assume!(possible_assignments(&counts, &members).is_some_and(|count| count <= 20_000));
        let assignment = assign(AssignorKind::Sticky, &counts, &members);
        let (squares, kept) = squares_and_kept(&counts, &members, &assignment);
        let (best_squares, most_kept) = brute_force_best(&counts, &members);
        prop_assert_eq!(squares, best_squares, "not as balanced as possible: {:?}", assignment);
        if subscriptions_alike(&counts, &members) {
            prop_assert_eq!(kept, most_kept, "not as sticky as possible: {:?}", assignment);
        }
    }

    #[test]
    fn sticky_keeps_a_balanced_assignment_whole(
        counts in counts(),
        topics in prop::collection::btree_map(member_id(), topics(), 1..6),
        generation in -1..3i32,
        alike in any::<bool>(),
    ) {
        // Previous round: sticky itself, or round-robin over identical subscriptions.
        let mut members: BTreeMap<MemberId, Subscription> = topics
            .into_iter()
            .map(|(member, topics)| (member, Subscription { topics, ..Subscription::default() }))
            .collect();
        let first_topics = members.values().next().unwrap().topics.clone();
        let kind = if alike {
            members.values_mut().for_each(|subscription| subscription.topics = first_topics.clone());
            AssignorKind::RoundRobin
        } else {
            AssignorKind::Sticky
        };
        let previous = assign(kind, &counts, &members);
        for (member, subscription) in &mut members {
            subscription.owned_partitions = previous[member].partitions.clone();
            subscription.generation = GenerationId(generation);
        }
        prop_assert_eq!(&assign(AssignorKind::Sticky, &counts, &members), &previous);
        prop_assert_eq!(&assign(AssignorKind::CooperativeSticky, &counts, &members), &previous);
    }

    #[test]
    fn cooperative_settles_in_a_second_round((counts, members) in any_group()) {
        let first = assign(AssignorKind::CooperativeSticky, &counts, &members);
        let settled = next_generation(&members, &first);
        let second = assign(AssignorKind::CooperativeSticky, &counts, &settled);
        check_contract(AssignorKind::Sticky, &counts, &settled, &second)?;
        for (member, assignment) in &first {
            let kept = assignment.partitions.iter().all(|tp| second[member].partitions.contains(tp));
            prop_assert!(kept, "{member} lost a partition in the second round: {first:?} then {second:?}");
        }
        prop_assert_eq!(&second, &assign(AssignorKind::Sticky, &counts, &settled));
    }
}
