//! Members against a real [`GroupCoordinator`], in process: a harness carries
//! requests and answers in order (one coordinator on broker 0), commits the
//! coordinator's writes at once, and plays each member's host: it polls on
//! time (unless the host is stalled: the application stops polling while
//! the member runs on), acknowledges revocations, and checks after every
//! step that no partition has two owners. A frozen host is a paused
//! process: nothing of it runs and its answers wait for it.

use super::membership::*;
use crate::group::api::CommittedOffset;
use crate::group::assignor::PartitionCounts;
use crate::group::coordinator::{CoordinatorOutput, GroupConfig, GroupCoordinator};
use crate::group::{AssignorKind, GenerationId, GroupId};
use crate::protocol::{ErrorCode, Request, Response};
use crate::types::{BrokerId, LeaderEpoch, Offset, StoredRecord, TopicId, TopicPartition};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const COORDINATOR: BrokerId = BrokerId(0);
const TOPIC: TopicId = TopicId(0);
const PARTITIONS: u32 = 6;

struct Host {
    member: Member,
    /// The application stopped polling (the member itself runs on).
    stalled: bool,
    /// The whole process is paused.
    frozen: bool,
    /// Answers that reached a frozen host.
    inbox: VecDeque<(u64, Response)>,
    /// Woken from a freeze (or a stall) and not yet told it is out: it may
    /// still believe it owns what others now own (the zombie window).
    zombie: bool,
    /// `events.len()` when it woke.
    woke_at_event: usize,
    events: Vec<MemberEvent>,
}

struct World {
    now: u64,
    coordinator: GroupCoordinator<(usize, u64)>,
    hosts: Vec<Host>,
    /// Requests on their way to the coordinator, answers on their way back, in order.
    to_coordinator: VecDeque<(usize, u64, Request)>,
    to_members: VecDeque<(usize, u64, Response)>,
    counts: PartitionCounts,
    assignors: Vec<AssignorKind>,
    log: Vec<StoredRecord>,
    /// Deliver the highest member's answers first (else in arrival order).
    flip: bool,
    /// Switch between the two orders at every pass.
    alternate: bool,
}

fn group() -> GroupId {
    GroupId::new("g")
}

impl World {
    fn new(assignors: Vec<AssignorKind>) -> World {
        let config = GroupConfig { offsets_topic_partitions: 1, ..GroupConfig::default() };
        let mut coordinator = GroupCoordinator::new(config, 9, false);
        coordinator.load(0, 0, &[]);
        World {
            now: 0,
            coordinator,
            hosts: Vec::new(),
            to_coordinator: VecDeque::new(),
            to_members: VecDeque::new(),
            counts: [(TOPIC, PARTITIONS)].into_iter().collect(),
            assignors,
            log: Vec::new(),
            flip: false,
            alternate: true,
        }
    }

    fn add_member(&mut self) -> usize {
        let mut config = MemberConfig::new(group(), &format!("consumer-{}", self.hosts.len()));
        config.assignors = self.assignors.clone();
        config.session_timeout_ms = 10_000;
        config.max_poll_interval_ms = 20_000;
        let mut member = Member::new(config, vec![COORDINATOR], 0);
        member.subscribe(self.now, vec![TOPIC]);
        self.hosts.push(Host {
            member,
            stalled: false,
            frozen: false,
            inbox: VecDeque::new(),
            zombie: false,
            woke_at_event: 0,
            events: Vec::new(),
        });
        self.hosts.len() - 1
    }

    /// Carries everything in flight, then lets time pass to `until` in steps
    /// of due timers, polling live members every second.
    fn run_until(&mut self, until: u64) {
        loop {
            self.settle();
            let next_poll = (self.now / 1_000 + 1) * 1_000;
            let next_timer = self
                .hosts
                .iter()
                .filter(|h| !h.frozen)
                .filter_map(|h| h.member.next_timeout_ms())
                .chain(self.coordinator.next_deadline_ms())
                .min()
                .unwrap_or(u64::MAX);
            let next = next_poll.min(next_timer).max(self.now);
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            self.coordinator.handle_timeout(self.now);
            for i in 0..self.hosts.len() {
                let h = &mut self.hosts[i];
                if h.frozen {
                    continue;
                }
                if h.member.next_timeout_ms().is_some_and(|d| d <= self.now) {
                    h.member.handle_timeout(self.now);
                }
                if self.now.is_multiple_of(1_000) && !h.stalled {
                    // A revocation left pending while the host stalled runs in its next poll.
                    if h.member.state() == MemberState::Revoking {
                        h.member.revocation_done(self.now);
                    }
                    h.member.poll(self.now);
                }
            }
        }
    }

    /// Delivers messages and handles events until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.hosts.len() {
                if self.hosts[i].frozen {
                    continue;
                }
                while let Some((id, response)) = self.hosts[i].inbox.pop_front() {
                    self.hosts[i].member.handle_response(self.now, COORDINATOR, id, response, &self.counts);
                }
                while let Some((broker, id, request)) = self.hosts[i].member.poll_output() {
                    assert_eq!(broker, COORDINATOR);
                    self.to_coordinator.push_back((i, id, request));
                    moved = true;
                }
                while let Some(event) = self.hosts[i].member.poll_event() {
                    moved = true;
                    if matches!(event, MemberEvent::Revoke { .. }) && !self.hosts[i].stalled {
                        self.hosts[i].member.revocation_done(self.now);
                    }
                    if matches!(event, MemberEvent::Lost { .. }) {
                        self.hosts[i].zombie = false;
                    }
                    self.hosts[i].events.push(event);
                }
            }
            while let Some((i, id, request)) = self.to_coordinator.pop_front() {
                moved = true;
                match request {
                    Request::FindCoordinator { .. } => {
                        let answer = Response::FindCoordinator { error: None, coordinator: Some(COORDINATOR) };
                        self.to_members.push_back((i, id, answer));
                    }
                    Request::Group(r) => self.coordinator.handle_request(self.now, (i, id), r),
                    other => panic!("a member sent {other:?}"),
                }
            }
            while let Some(output) = self.coordinator.poll_output() {
                moved = true;
                match output {
                    CoordinatorOutput::Reply { to: (i, id), response } => {
                        self.to_members.push_back((i, id, Response::Group(response)))
                    }
                    CoordinatorOutput::Write { id, records, .. } => {
                        let base = Offset(self.log.len() as i64);
                        for r in records {
                            let offset = Offset(self.log.len() as i64);
                            self.log.push(StoredRecord::stored(r, offset, LeaderEpoch(0)));
                        }
                        self.coordinator.write_done(self.now, id, Ok(base));
                    }
                }
            }
            // Answers to different members may arrive in any order; each
            // member's in order: by arrival, or highest member first.
            if self.alternate {
                self.flip = !self.flip;
            }
            if self.flip {
                let mut answers: Vec<_> = self.to_members.drain(..).collect();
                answers.sort_by_key(|(i, ..)| std::cmp::Reverse(*i));
                self.to_members.extend(answers);
            }
            while let Some((i, id, response)) = self.to_members.pop_front() {
                moved = true;
                if self.hosts[i].frozen {
                    self.hosts[i].inbox.push_back((id, response));
                } else {
                    self.hosts[i].member.handle_response(self.now, COORDINATOR, id, response, &self.counts);
                }
                // After every answer: members learn of a new generation one by one.
                self.check_single_owner();
            }
            self.check_single_owner();
            if !moved {
                return;
            }
        }
        panic!("no quiescence");
    }

    /// No partition is owned by two members that both still think they own it.
    fn check_single_owner(&self) {
        let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            // A stalled or frozen host processes nothing; a woken one is judged
            // once it knows where it stands (Kafka has the same window: a
            // member kicked out while its application was busy learns so at
            // its next heartbeat).
            if h.stalled || h.frozen || h.zombie {
                continue;
            }
            for tp in h.member.owned() {
                if let Some(other) = owner.insert(*tp, i) {
                    panic!("{tp} owned by members {other} and {i} at {}", self.now);
                }
            }
        }
    }

    fn stable_generation(&self) -> Option<GenerationId> {
        let live: Vec<&Host> = self.hosts.iter().filter(|h| !h.stalled && !h.frozen).collect();
        let generation = live.first()?.member.generation();
        live.iter()
            .all(|h| h.member.state() == MemberState::Stable && h.member.generation() == generation)
            .then_some(generation)
    }

    /// Every partition owned by exactly one live member.
    fn fully_assigned(&self) -> bool {
        let owned: BTreeSet<TopicPartition> = self
            .hosts
            .iter()
            .filter(|h| !h.stalled && !h.frozen)
            .flat_map(|h| h.member.owned().iter().copied())
            .collect();
        owned.len() == PARTITIONS as usize
    }
}

fn converges(assignors: Vec<AssignorKind>) {
    let mut w = World::new(assignors);
    for _ in 0..3 {
        w.add_member();
    }
    w.run_until(30_000);
    let first = w.stable_generation().expect("three members settle into one generation");
    assert!(w.fully_assigned(), "every partition has an owner");
    let counts: Vec<usize> = w.hosts.iter().map(|h| h.member.owned().len()).collect();
    assert_eq!(counts, vec![2, 2, 2], "six partitions over three members");
    // Scale out.
    w.add_member();
    w.run_until(60_000);
    let second = w.stable_generation().expect("four members settle");
    assert!(second > first);
    assert!(w.fully_assigned());
    // Scale in: member 1 leaves by stalling past its poll interval.
    w.hosts[1].stalled = true;
    w.run_until(120_000);
    assert!(w.stable_generation().is_some_and(|g| g > second), "the other three settle without it");
    assert!(w.fully_assigned());
}

#[test]
fn members_converge_under_every_assignor() {
    for kind in AssignorKind::ALL {
        converges(vec![*kind]);
    }
}

#[test]
fn cooperative_members_keep_what_does_not_move() {
    let mut w = World::new(vec![AssignorKind::CooperativeSticky]);
    for _ in 0..2 {
        w.add_member();
    }
    w.run_until(30_000);
    let before: Vec<BTreeSet<TopicPartition>> = w.hosts.iter().map(|h| h.member.owned().clone()).collect();
    w.add_member();
    w.run_until(60_000);
    assert!(w.fully_assigned());
    for (i, owned) in before.iter().enumerate() {
        assert!(w.hosts[i].member.owned().is_subset(owned), "member {i} only gave partitions up");
        let revoked: Vec<&TopicPartition> = w.hosts[i]
            .events
            .iter()
            .filter_map(|e| match e {
                MemberEvent::Revoke { partitions } => Some(partitions),
                _ => None,
            })
            .flatten()
            .collect();
        let moved: BTreeSet<&TopicPartition> = owned.difference(w.hosts[i].member.owned()).collect();
        assert_eq!(revoked.into_iter().collect::<BTreeSet<_>>(), moved, "only moved partitions are revoked");
    }
}

#[test]
fn a_zombie_learns_it_was_fenced_and_its_stale_commit_is_refused() {
    let mut w = World::new(vec![AssignorKind::Range]);
    for _ in 0..2 {
        w.add_member();
    }
    w.run_until(30_000);
    let old_generation = w.hosts[0].member.generation();
    let zombie_owned: Vec<TopicPartition> = w.hosts[0].member.owned().iter().copied().collect();
    // Member 0's process pauses past its session timeout.
    w.hosts[0].frozen = true;
    w.run_until(60_000);
    assert!(w.hosts[1].member.generation() > old_generation, "the other moved on");
    assert_eq!(w.hosts[1].member.owned().len(), PARTITIONS as usize);
    // The zombie wakes, still believing in its generation, and commits.
    w.hosts[0].frozen = false;
    w.hosts[0].zombie = true;
    let offsets =
        zombie_owned.iter().map(|tp| (*tp, CommittedOffset { offset: Offset(1), leader_epoch: LeaderEpoch(0) }));
    let commit = w.hosts[0].member.commit(w.now, offsets.collect());
    w.settle();
    let answer = w.hosts[0].events.iter().find_map(|e| match e {
        MemberEvent::Committed { commit: c, partitions } if *c == commit => Some(partitions.clone()),
        _ => None,
    });
    let errors: BTreeSet<Option<ErrorCode>> = answer.expect("answered").into_iter().map(|(_, e)| e).collect();
    assert_eq!(errors, [Some(ErrorCode::UnknownMemberId)].into_iter().collect());
    // Its next heartbeat tells it it is out: its partitions are lost, then it rejoins.
    w.run_until(120_000);
    assert!(w.hosts[0].events.iter().any(|e| matches!(e, MemberEvent::Lost { .. })));
    assert!(w.stable_generation().is_some());
    assert!(w.fully_assigned());
}

mod random {
    //! Random schedules of members arriving, stalling, freezing (a paused
    //! process), losing their connection, and the coordinator failing over
    //! (unloaded, then reloaded from its log). After every step no partition
    //! has two owners among members that are not frozen and not zombies (a
    //! woken member is a zombie until it hears it is out, or is back in the
    //! current generation); once everything resumes, the group settles with
    //! every partition owned.

    use super::*;
    use crate::group::coordinator::GroupState;
    use proptest::prelude::*;

    const MAX_MEMBERS: usize = 4;

    #[derive(Clone, Debug)]
    enum Op {
        Add,
        Stall(usize),
        Resume(usize),
        Freeze(usize),
        Thaw(usize),
        Disconnect(usize),
        Failover,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let m = 0..MAX_MEMBERS;
        prop_oneof![
            2 => Just(Op::Add),
            1 => m.clone().prop_map(Op::Stall),
            2 => m.clone().prop_map(Op::Resume),
            1 => m.clone().prop_map(Op::Freeze),
            2 => m.clone().prop_map(Op::Thaw),
            1 => m.prop_map(Op::Disconnect),
            1 => Just(Op::Failover),
            4 => prop_oneof![100u64..2_000, 2_000u64..15_000, 15_000u64..40_000].prop_map(Op::Advance),
        ]
    }

    fn wake(h: &mut Host) {
        h.zombie = true;
        h.woke_at_event = h.events.len();
    }

    fn unzombie(w: &mut World) {
        let current = w.coordinator.group_metadata(&group()).map(|m| m.generation);
        let stable = w.coordinator.group_state(&group()) == Some(GroupState::Stable);
        for h in &mut w.hosts {
            let told = h.events[h.woke_at_event..].iter().any(|e| matches!(e, MemberEvent::Lost { .. }));
            if h.zombie && (told || (stable && Some(h.member.generation()) == current)) {
                h.zombie = false;
            }
        }
    }

    fn run(kind: AssignorKind, ops: &[Op]) {
        let mut w = World::new(vec![kind]);
        w.add_member();
        for op in ops {
            match *op {
                Op::Add if w.hosts.len() < MAX_MEMBERS => {
                    w.add_member();
                }
                Op::Add => {}
                Op::Stall(i) => w.hosts.get_mut(i).into_iter().for_each(|h| h.stalled = true),
                Op::Resume(i) => w.hosts.get_mut(i).into_iter().filter(|h| h.stalled).for_each(|h| {
                    h.stalled = false;
                    wake(h);
                }),
                Op::Freeze(i) => w.hosts.get_mut(i).into_iter().for_each(|h| h.frozen = true),
                Op::Thaw(i) => w.hosts.get_mut(i).into_iter().filter(|h| h.frozen).for_each(|h| {
                    h.frozen = false;
                    wake(h);
                }),
                Op::Disconnect(i) => {
                    if i < w.hosts.len() && !w.hosts[i].frozen {
                        w.to_coordinator.retain(|(m, ..)| *m != i);
                        w.to_members.retain(|(m, ..)| *m != i);
                        let now = w.now;
                        w.hosts[i].member.handle_disconnect(now, COORDINATOR);
                    }
                }
                Op::Failover => {
                    w.coordinator.unload(0);
                    let log = w.log.clone();
                    w.coordinator.load(w.now, 0, &log);
                }
                Op::Advance(ms) => {
                    let until = w.now + ms;
                    w.run_until(until);
                }
            }
            w.settle();
            unzombie(&mut w);
        }
        for h in &mut w.hosts {
            if h.frozen || h.stalled {
                h.frozen = false;
                h.stalled = false;
                wake(h);
            }
        }
        for _ in 0..6 {
            let until = w.now + 40_000;
            w.run_until(until);
            unzombie(&mut w);
        }
        assert!(w.hosts.iter().all(|h| !h.zombie), "every woken member heard where it stands");
        assert!(w.stable_generation().is_some(), "the group settles");
        assert!(w.fully_assigned(), "every partition is owned");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn one_owner_per_partition_and_the_group_settles(
            kind in prop::sample::select(AssignorKind::ALL.to_vec()),
            ops in prop::collection::vec(op(), 1..40),
        ) {
            run(kind, &ops);
        }
    }
}

#[test]
fn a_cooperative_member_gives_up_an_unsubscribed_topic_before_it_rejoins() {
    // In both delivery orders: the member that gains the partitions may hear first.
    for flip in [false, true] {
        let other = TopicId(1);
        let mut w = World::new(vec![AssignorKind::CooperativeSticky]);
        (w.flip, w.alternate) = (flip, false);
        w.counts.insert(other, PARTITIONS);
        for _ in 0..2 {
            let i = w.add_member();
            let now = w.now;
            w.hosts[i].member.subscribe(now, vec![TOPIC, other]);
        }
        w.run_until(30_000);
        assert!(w.hosts[0].member.owned().iter().any(|tp| tp.topic == other));
        let now = w.now;
        w.hosts[0].member.subscribe(now, vec![TOPIC]);
        // The harness checks a single owner after every answer of the two rebalances.
        w.run_until(60_000);
        assert!(w.stable_generation().is_some());
        assert!(w.hosts[0].member.owned().iter().all(|tp| tp.topic == TOPIC));
        let owned: usize = w.hosts.iter().map(|h| h.member.owned().len()).sum();
        assert_eq!(owned, 2 * PARTITIONS as usize, "every partition of both topics owned");
    }
}
