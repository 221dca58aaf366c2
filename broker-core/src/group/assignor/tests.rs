//! Assignments as data: `check(kind, counts, members, expect)` with a small
//! text notation, so each case reads like the example it comes from.
//!
//! - counts: `"t0:3 t1:2"` (topic 0 has 3 partitions, topic 1 has 2);
//! - members, one a line: `"C0: t0 t1"`, or with a generation and owned
//!   partitions `"C1 g2: t0 t1 owns t0-0 t1-1"` (no `gN` = no generation);
//! - expect, one member a line: `"C0: t0-0 t0-1"`, `"C1:"` when empty.

use super::*;
use crate::group::GenerationId;
use AssignorKind::{CooperativeSticky, Range, RoundRobin, Sticky};

fn parse_counts(text: &str) -> PartitionCounts {
    text.split_whitespace()
        .map(|entry| {
            let (topic, count) = entry.split_once(':').expect("counts: tN:count");
            (parse_topic(topic), count.parse().expect("counts: a partition count"))
        })
        .collect()
}

fn parse_members(text: &str) -> BTreeMap<MemberId, Subscription> {
    let mut members = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let (head, body) = line.split_once(':').expect("member: `id [gN]: topics [owns partitions]`");
        let mut head = head.split_whitespace();
        let id = MemberId::new(head.next().expect("member: an id"));
        let generation = head.next().map_or(GenerationId::NONE, |g| {
            GenerationId(g.strip_prefix('g').and_then(|n| n.parse().ok()).expect("member: generation gN"))
        });
        let (topics, owned) = body.split_once("owns").unwrap_or((body, ""));
        let mut topics: Vec<TopicId> = topics.split_whitespace().map(parse_topic).collect();
        let mut owned_partitions: Vec<TopicPartition> = owned.split_whitespace().map(parse_partition).collect();
        topics.sort_unstable();
        owned_partitions.sort_unstable();
        members.insert(id, Subscription { topics, owned_partitions, generation });
    }
    members
}

fn parse_topic(text: &str) -> TopicId {
    TopicId(text.strip_prefix('t').and_then(|n| n.parse().ok()).expect("a topic: tN"))
}

fn parse_partition(text: &str) -> TopicPartition {
    let (topic, partition) = text.split_once('-').expect("a partition: tN-P");
    TopicPartition::new(parse_topic(topic), partition.parse().expect("a partition number"))
}

fn render(assignment: &BTreeMap<MemberId, Assignment>) -> String {
    let lines = assignment.iter().map(|(member, assignment)| {
        let partitions: Vec<String> = assignment.partitions.iter().map(|tp| format!(" {tp}")).collect();
        format!("{member}:{}", partitions.concat())
    });
    lines.collect::<Vec<_>>().join("\n")
}

#[track_caller]
fn check(kind: AssignorKind, counts: &str, members: &str, expect: &str) {
    let actual = render(&assign(kind, &parse_counts(counts), &parse_members(members)));
    let expect: Vec<&str> = expect.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    assert_eq!(actual, expect.join("\n"), "{}", kind.name());
}

#[track_caller]
fn check_all(kinds: &[AssignorKind], counts: &str, members: &str, expect: &str) {
    for &kind in kinds {
        check(kind, counts, members, expect);
    }
}

// Range and round-robin: Kafka's documented examples.

#[test]
fn range_two_members_two_topics() {
    check(Range, "t0:3 t1:3", "C0: t0 t1\nC1: t0 t1", "C0: t0-0 t0-1 t1-0 t1-1\nC1: t0-2 t1-2");
}

#[test]
fn round_robin_two_members_two_topics() {
    check(RoundRobin, "t0:3 t1:3", "C0: t0 t1\nC1: t0 t1", "C0: t0-0 t0-2 t1-1\nC1: t0-1 t1-0 t1-2");
}

#[test]
fn round_robin_skips_members_not_subscribed() {
    // Kafka's RoundRobinAssignor javadoc, second example.
    check(
        RoundRobin,
        "t0:1 t1:2 t2:3",
        "C0: t0\nC1: t0 t1\nC2: t0 t1 t2",
        "C0: t0-0\nC1: t1-0\nC2: t1-1 t2-0 t2-1 t2-2",
    );
}

#[test]
fn range_splits_each_topic_among_its_own_subscribers() {
    check(Range, "t0:2 t1:5", "C0: t0\nC1: t0 t1\nC2: t1", "C0: t0-0\nC1: t0-1 t1-0 t1-1 t1-2\nC2: t1-3 t1-4");
}

#[test]
fn range_and_round_robin_ignore_owned_partitions() {
    let members = "C0 g3: t0 owns t0-2 t0-3\nC1 g3: t0 owns t0-0 t0-1";
    check(Range, "t0:4", members, "C0: t0-0 t0-1\nC1: t0-2 t0-3");
    check(RoundRobin, "t0:4", members, "C0: t0-0 t0-2\nC1: t0-1 t0-3");
}

// Edges every assignor shares.

#[test]
fn more_members_than_partitions() {
    check_all(AssignorKind::ALL, "t0:2", "C0: t0\nC1: t0\nC2: t0\nC3: t0", "C0: t0-0\nC1: t0-1\nC2:\nC3:");
}

#[test]
fn no_members_no_assignment() {
    check_all(AssignorKind::ALL, "t0:3", "", "");
}

#[test]
fn every_member_gets_an_entry_even_with_nothing_to_assign() {
    check_all(AssignorKind::ALL, "", "C0: t0\nC1:", "C0:\nC1:");
    check_all(AssignorKind::ALL, "t0:0", "C0: t0", "C0:");
    check_all(AssignorKind::ALL, "t0:2", "C0:\nC1: t1", "C0:\nC1:");
}

#[test]
fn unknown_topics_and_their_claims_are_ignored() {
    // t7 is in nobody's metadata: not assigned, and C0's claim on it is void.
    check_all(AssignorKind::ALL, "t0:2", "C0 g1: t0 t7 owns t7-0\nC1 g1: t0", "C0: t0-0\nC1: t0-1");
}

#[test]
fn unsubscribed_topics_are_not_assigned() {
    check_all(AssignorKind::ALL, "t0:1 t1:3", "C0: t0\nC1: t0", "C0: t0-0\nC1:");
}

// Sticky: Kafka's StickyAssignor javadoc examples.

#[test]
fn sticky_keeps_what_stays_when_a_member_leaves() {
    let counts = "t0:2 t1:2 t2:2 t3:2";
    check(
        Sticky,
        counts,
        "C0: t0 t1 t2 t3\nC1: t0 t1 t2 t3\nC2: t0 t1 t2 t3",
        "C0: t0-0 t1-1 t3-0\nC1: t0-1 t2-0 t3-1\nC2: t1-0 t2-1",
    );
    // C1 leaves: C0 and C2 keep everything and split C1's partitions.
    check(
        Sticky,
        counts,
        "C0 g1: t0 t1 t2 t3 owns t0-0 t1-1 t3-0\nC2 g1: t0 t1 t2 t3 owns t1-0 t2-1",
        "C0: t0-0 t0-1 t1-1 t3-0\nC2: t1-0 t2-0 t2-1 t3-1",
    );
}

#[test]
fn sticky_balances_different_subscriptions() {
    let counts = "t0:1 t1:2 t2:3";
    // Round-robin leaves C2 with four of six; sticky balances as far as C2's
    // sole claim on t2 allows.
    check(Sticky, counts, "C0: t0\nC1: t0 t1\nC2: t0 t1 t2", "C0: t0-0\nC1: t1-0 t1-1\nC2: t2-0 t2-1 t2-2");
    // C0 leaves: its partition goes to the lighter C1, nothing else moves.
    check(
        Sticky,
        counts,
        "C1 g1: t0 t1 owns t1-0 t1-1\nC2 g1: t0 t1 t2 owns t2-0 t2-1 t2-2",
        "C1: t0-0 t1-0 t1-1\nC2: t2-0 t2-1 t2-2",
    );
}

#[test]
fn sticky_moves_claims_only_as_balance_requires() {
    // C0 owned all four; C1 joins: C0 keeps its lowest two.
    check(Sticky, "t0:4", "C0 g1: t0 owns t0-0 t0-1 t0-2 t0-3\nC1: t0", "C0: t0-0 t0-1\nC1: t0-2 t0-3");
    // Different subscriptions: C1 can only take t1, so C0 gives up t1 to even the counts.
    check(Sticky, "t0:2 t1:2", "C0 g1: t0 t1 owns t0-0 t0-1 t1-0 t1-1\nC1: t1", "C0: t0-0 t0-1\nC1: t1-0 t1-1");
}

#[test]
fn sticky_balances_along_a_chain() {
    // No single move helps (3 → 2 and 2 → 1 just swap counts), but a chain
    // does: C0 hands a t0 partition to C1, which hands a t1 partition to C2.
    check(
        Sticky,
        "t0:3 t1:2 t2:1",
        "C0 g1: t0 owns t0-0 t0-1 t0-2\nC1 g1: t0 t1 owns t1-0 t1-1\nC2 g1: t1 t2 owns t2-0",
        "C0: t0-0 t0-1\nC1: t0-2 t1-0\nC2: t1-1 t2-0",
    );
}

// Claims: which previously-owned partitions count.

#[test]
fn claims_from_an_older_generation_are_ignored() {
    // KAFKA-12984: C0 missed generation 2; its claim on t0-1 counts for nothing.
    check(Sticky, "t0:2", "C0 g1: t0 owns t0-1\nC1 g2: t0", "C0: t0-0\nC1: t0-1");
    check(Sticky, "t0:2", "C0 g2: t0 owns t0-1\nC1 g2: t0", "C0: t0-1\nC1: t0-0");
    // Claimed in two generations: the newest claim wins.
    check(Sticky, "t0:2", "C0 g1: t0 owns t0-0\nC1 g2: t0 owns t0-0", "C0: t0-1\nC1: t0-0");
}

#[test]
fn a_partition_claimed_twice_in_one_generation_goes_to_the_smallest_id() {
    check_all(&[Sticky, CooperativeSticky], "t0:2", "C0 g1: t0 owns t0-1\nC1 g1: t0 owns t0-1", "C0: t0-1\nC1: t0-0");
}

#[test]
fn claims_of_unsubscribed_topics_or_missing_partitions_are_dropped() {
    // C0 left t1 behind (its claim is void) and claims t0-5, which no longer exists.
    check_all(
        &[Sticky, CooperativeSticky],
        "t0:2 t1:2",
        "C0 g1: t0 owns t0-5 t1-0 t1-1\nC1 g1: t0 t1",
        "C0: t0-0 t0-1\nC1: t1-0 t1-1",
    );
}

// Cooperative-sticky: revoke first, assign in the next round.

#[test]
fn cooperative_revokes_before_moving() {
    let counts = "t0:4";
    // C1 joins: sticky would move t0-2 and t0-3 to it; this round only revokes them.
    check(CooperativeSticky, counts, "C0 g1: t0 owns t0-0 t0-1 t0-2 t0-3\nC1: t0", "C0: t0-0 t0-1\nC1:");
    // The follow-up: C0 no longer owns them, so C1 gets them.
    check(CooperativeSticky, counts, "C0 g2: t0 owns t0-0 t0-1\nC1 g2: t0", "C0: t0-0 t0-1\nC1: t0-2 t0-3");
}

#[test]
fn cooperative_hands_out_unowned_partitions_at_once() {
    // t0-3 was C2's, which left: nobody owns it, so it goes straight to C1.
    check(CooperativeSticky, "t0:4", "C0 g1: t0 owns t0-0 t0-1 t0-2\nC1 g1: t0", "C0: t0-0 t0-1\nC1: t0-3");
}

#[test]
fn cooperative_ignores_stale_owners() {
    // C0's generation-1 claim does not count: t0-1 may go to C1 directly.
    check(CooperativeSticky, "t0:2", "C0 g1: t0 owns t0-0 t0-1\nC1 g2: t0", "C0: t0-0\nC1: t0-1");
}

// Bounds and input contract.

#[test]
#[should_panic(expected = "65537 partitions, more than the limit of 65536")]
fn too_many_partitions_panics() {
    assign(Range, &parse_counts("t0:65000 t1:537"), &parse_members("C0: t0"));
}

#[test]
#[should_panic(expected = "10001 members, more than the limit of 10000")]
fn too_many_members_panics() {
    let members = (0..=MAX_MEMBERS).map(|n| (MemberId::new(&format!("C{n}")), Subscription::default())).collect();
    assign(Range, &PartitionCounts::new(), &members);
}

#[test]
#[should_panic(expected = "C0 owns 65537 partitions, more than the limit of 65536")]
fn too_many_owned_partitions_panics() {
    let mut members = parse_members("C0 g1: t0");
    members.get_mut(&MemberId::new("C0")).unwrap().owned_partitions = partitions_of(TopicId(0), 65_537).collect();
    assign(Sticky, &parse_counts("t0:1"), &members);
}

#[test]
#[should_panic(expected = "C0's topics are not sorted and unique")]
fn unsorted_subscription_panics() {
    let mut members = parse_members("C0: t0 t1");
    members.values_mut().for_each(|subscription| subscription.topics.reverse());
    assign(Sticky, &parse_counts("t0:1 t1:1"), &members);
}

#[test]
#[should_panic(expected = "C0's owned partitions are not sorted and unique")]
fn duplicate_owned_partition_panics() {
    let mut members = parse_members("C0 g1: t0 owns t0-0");
    members
        .values_mut()
        .for_each(|subscription| subscription.owned_partitions.push(TopicPartition::new(TopicId(0), 0)));
    assign(Sticky, &parse_counts("t0:1"), &members);
}

// Scale: well inside a second at the limits' order of magnitude.

/// `members` members over `topics` topics of `partitions` partitions each;
/// member `n` subscribes to topics `n % 3 ..` (so subscriptions differ) and
/// member 0 claims everything it subscribes to.
fn lopsided_group(members: usize, topics: u16, partitions: u32) -> (PartitionCounts, BTreeMap<MemberId, Subscription>) {
    let counts: PartitionCounts = (0..topics).map(|topic| (TopicId(topic), partitions)).collect();
    let group = (0..members)
        .map(|n| {
            let topics: Vec<TopicId> = (n as u16 % 3..topics).map(TopicId).collect();
            let owned_partitions = if n == 0 {
                topics.iter().flat_map(|&topic| partitions_of(topic, partitions)).collect()
            } else {
                Vec::new()
            };
            (MemberId::new(&format!("C{n:05}")), Subscription { topics, owned_partitions, generation: GenerationId(1) })
        })
        .collect();
    (counts, group)
}

#[test]
fn ten_thousand_partitions_with_different_subscriptions() {
    // A scale case for the assignors' contract checks (speed is not timed
    // here: performance lives in benchmarks).
    let (counts, members) = lopsided_group(500, 100, 100);
    for &kind in AssignorKind::ALL {
        let assignment = assign(kind, &counts, &members);
        assert_eq!(assignment.len(), 500);
    }
}

#[test]
fn ten_thousand_partitions_claimed_by_one_of_a_thousand_identical_members() {
    let (counts, mut members) = lopsided_group(1000, 100, 100);
    members.values_mut().for_each(|subscription| subscription.topics = (0..100).map(TopicId).collect());
    let assignment = assign(Sticky, &counts, &members);
    assert!(assignment.values().all(|assignment| assignment.partitions.len() == 10));
}
