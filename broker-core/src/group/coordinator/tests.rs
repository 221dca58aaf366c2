//! The coordinator driven by hand: a harness plays the broker (answers go to
//! numbered reply tokens, writes are committed to an in-memory log or
//! failed on demand).

use super::*;
use crate::group::api::{
    CommittedOffset, Heartbeat, JoinGroup, JoinGroupResponse, LeaveGroup, OffsetCommit, OffsetFetch, SyncGroup,
    SyncGroupResponse,
};
use crate::group::{Assignment, AssignorKind, GenerationId, InstanceId, Subscription};
use crate::types::{LeaderEpoch, Offset, TopicId};
use std::sync::Arc;

const SESSION_MS: u64 = 10_000;
const REBALANCE_MS: u64 = 30_000;

/// A write the coordinator asked for: its id, partition, records, and the
/// producer of a transactional offset commit.
pub(super) type AskedWrite = (WriteId, u32, Vec<Record>, Option<(ProducerId, ProducerEpoch)>);

pub(super) struct Harness {
    pub coord: GroupCoordinator<u64>,
    pub now: u64,
    next_token: u64,
    pub answers: BTreeMap<u64, GroupResponse>,
    /// Writes asked for and not yet completed, with the producer of a
    /// transactional offset commit.
    pub(super) writes: Vec<AskedWrite>,
    /// Records of committed writes, in order, as the partition's log holds them.
    pub log: Vec<StoredRecord>,
}

pub(super) fn group() -> GroupId {
    GroupId::new("orders")
}

pub(super) fn tp(partition: u32) -> TopicPartition {
    TopicPartition::new(TopicId(0), partition)
}

fn subscription() -> Subscription {
    Subscription { topics: vec![TopicId(0)], ..Subscription::default() }
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::with(false)
    }

    pub(super) fn with(unfenced_commits: bool) -> Harness {
        let config = GroupConfig { offsets_topic_partitions: 4, ..GroupConfig::default() };
        let mut coord = GroupCoordinator::new(config, 0xabc, unfenced_commits);
        let partition = coord.partition_for(&group());
        coord.load(0, partition, &[]);
        Harness { coord, now: 0, next_token: 0, answers: BTreeMap::new(), writes: Vec::new(), log: Vec::new() }
    }

    pub(super) fn send(&mut self, request: GroupRequest) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.coord.handle_request(self.now, token, request);
        self.drain();
        token
    }

    pub(super) fn drain(&mut self) {
        while let Some(output) = self.coord.poll_output() {
            match output {
                CoordinatorOutput::Reply { to, response } => {
                    assert!(self.answers.insert(to, response).is_none(), "token {to} answered twice");
                }
                CoordinatorOutput::Write { id, partition, records, producer } => {
                    self.writes.push((id, partition, records, producer))
                }
            }
        }
    }

    pub(super) fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        while let Some(deadline) = self.coord.next_deadline_ms().filter(|&d| d <= until) {
            self.now = self.now.max(deadline);
            self.coord.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// Completes every outstanding write with `result` (`Ok`: appended at
    /// the end of the harness's log).
    pub(super) fn complete_writes(&mut self, result: Result<(), ErrorCode>) {
        for (id, _, records, producer) in std::mem::take(&mut self.writes) {
            let at = Offset(self.log.len() as i64);
            if result.is_ok() {
                for r in records {
                    let offset = Offset(self.log.len() as i64);
                    let mut stored = StoredRecord::stored(r, offset, LeaderEpoch(0));
                    if let Some((pid, epoch)) = producer {
                        stored.producer = Some(crate::types::ProducerStamp { id: pid, epoch, base_sequence: 0 });
                        stored.kind = BatchKind::Transactional;
                    }
                    self.log.push(stored);
                }
            }
            self.coord.write_done(self.now, id, result.map(|()| at));
            self.drain();
        }
    }

    pub(super) fn answer(&mut self, token: u64) -> GroupResponse {
        self.answers.remove(&token).unwrap_or_else(|| panic!("token {token} not answered"))
    }

    fn join_answer(&mut self, token: u64) -> JoinGroupResponse {
        match self.answer(token) {
            GroupResponse::JoinGroup(a) => a,
            other => panic!("not a join answer: {other:?}"),
        }
    }

    fn sync_answer(&mut self, token: u64) -> SyncGroupResponse {
        match self.answer(token) {
            GroupResponse::SyncGroup(a) => a,
            other => panic!("not a sync answer: {other:?}"),
        }
    }

    pub(super) fn join_request(&self, member: Option<&MemberId>, client: &str, instance: Option<&str>) -> GroupRequest {
        GroupRequest::JoinGroup(JoinGroup {
            group: group(),
            member: member.cloned(),
            instance: instance.map(|i| InstanceId(Arc::from(i))),
            client_id: Arc::from(client),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocols: vec![(AssignorKind::Range, subscription())],
        })
    }

    /// A dynamic member's first join: MEMBER_ID_REQUIRED, then the join
    /// with its id (held). Returns the id and the held join's token.
    fn join_new(&mut self, client: &str) -> (MemberId, u64) {
        let first = self.send(self.join_request(None, client, None));
        let answer = self.join_answer(first);
        assert_eq!(answer.error, Some(ErrorCode::MemberIdRequired));
        let id = answer.member.expect("an id to rejoin with");
        let token = self.send(self.join_request(Some(&id), client, None));
        (id, token)
    }

    fn sync(&mut self, member: &MemberId, generation: GenerationId, assignments: Vec<(MemberId, Assignment)>) -> u64 {
        self.send(GroupRequest::SyncGroup(SyncGroup {
            group: group(),
            generation,
            member: member.clone(),
            instance: None,
            protocol: Some(AssignorKind::Range),
            assignments,
        }))
    }

    fn heartbeat(&mut self, member: &MemberId, generation: GenerationId) -> Option<ErrorCode> {
        let token = self.send(GroupRequest::Heartbeat(Heartbeat {
            group: group(),
            generation,
            member: member.clone(),
            instance: None,
        }));
        match self.answer(token) {
            GroupResponse::Heartbeat { error } => error,
            other => panic!("not a heartbeat answer: {other:?}"),
        }
    }

    pub(super) fn commit(&mut self, member: Option<&MemberId>, generation: GenerationId, offset: i64) -> u64 {
        self.send(GroupRequest::OffsetCommit(OffsetCommit {
            group: group(),
            generation,
            member: member.cloned(),
            instance: None,
            offsets: vec![(tp(0), CommittedOffset { offset: Offset(offset), leader_epoch: LeaderEpoch(0) })],
        }))
    }

    pub(super) fn commit_errors(&mut self, token: u64) -> Vec<Option<ErrorCode>> {
        match self.answer(token) {
            GroupResponse::OffsetCommit { partitions } => partitions.into_iter().map(|(_, e)| e).collect(),
            other => panic!("not a commit answer: {other:?}"),
        }
    }

    pub(super) fn fetched(&mut self) -> Option<CommittedOffset> {
        let token = self.send(GroupRequest::OffsetFetch(OffsetFetch {
            group: group(),
            partitions: Some(vec![tp(0)]),
            require_stable: false,
        }));
        match self.answer(token) {
            GroupResponse::OffsetFetch { error: None, offsets } => offsets[0].1,
            other => panic!("not an offset fetch answer: {other:?}"),
        }
    }

    fn state(&self) -> GroupState {
        self.coord.group_state(&group()).expect("the group exists")
    }

    /// Two members joined and synced: generation 1, Stable, `a` leads.
    pub(super) fn stable_pair(&mut self) -> (MemberId, MemberId) {
        let (a, ja) = self.join_new("a");
        let (b, jb) = self.join_new("b");
        // The initial delay, extended once: b arrived during it.
        self.advance(2 * GroupConfig::default().initial_rebalance_delay_ms);
        let (ja, jb) = (self.join_answer(ja), self.join_answer(jb));
        assert_eq!((ja.error, jb.error), (None, None));
        let (leader, follower) = if ja.leader.as_ref() == Some(&a) { (a, b) } else { (b, a) };
        let generation = ja.generation;
        let assignments = vec![
            (leader.clone(), Assignment { partitions: vec![tp(0)] }),
            (follower.clone(), Assignment { partitions: vec![tp(1)] }),
        ];
        let sf = self.sync(&follower, generation, Vec::new());
        let sl = self.sync(&leader, generation, assignments);
        self.complete_writes(Ok(()));
        assert_eq!(self.sync_answer(sl).assignment.partitions, vec![tp(0)]);
        assert_eq!(self.sync_answer(sf).assignment.partitions, vec![tp(1)]);
        assert_eq!(self.state(), GroupState::Stable);
        (leader, follower)
    }
}

#[test]
fn group_ids_land_where_kafka_puts_them() {
    // Java: "orders".hashCode() == -1008770331; abs & 0x7fffffff % 50.
    let hash: i32 = -1008770331;
    assert_eq!(partition_for(&GroupId::new("orders"), 50), (hash & 0x7fff_ffff) as u32 % 50);
    assert_eq!(partition_for(&GroupId::new(""), 50), 0);
}

#[test]
fn a_broker_that_does_not_lead_the_partition_is_not_the_coordinator() {
    let mut coord: GroupCoordinator<u64> = GroupCoordinator::new(GroupConfig::default(), 1, false);
    let h = Harness::new();
    coord.handle_request(0, 7, h.join_request(None, "a", None));
    let Some(CoordinatorOutput::Reply { to: 7, response: GroupResponse::JoinGroup(answer) }) = coord.poll_output()
    else {
        panic!("answered at once")
    };
    assert_eq!(answer.error, Some(ErrorCode::NotCoordinator));
}

#[test]
fn two_members_join_sync_and_become_stable() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("a");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let (_b, jb) = h.join_new("b");
    // The initial rebalance delay holds both joins.
    assert!(!h.answers.contains_key(&ja) && !h.answers.contains_key(&jb));
    h.advance(2_999);
    assert!(!h.answers.contains_key(&ja));
    // b arrived during the delay: it is extended once more (Kafka's InitialDelayedJoin).
    h.advance(3_000);
    assert!(!h.answers.contains_key(&ja));
    h.advance(1);
    let (ja, jb) = (h.join_answer(ja), h.join_answer(jb));
    assert_eq!(ja.generation, GenerationId(1));
    assert_eq!(ja.leader, Some(a.clone()));
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty(), "followers see none");
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let (_leader, _follower) = (a, jb.member.unwrap());
}

#[test]
fn the_leaders_assignment_is_answered_only_once_written() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    assert_eq!(h.log.len(), 1, "one group metadata record");
    let decoded = GroupRecord::decode(&h.log[0]).unwrap();
    let GroupRecord::Metadata { metadata, .. } = decoded else { panic!("metadata") };
    assert_eq!(metadata.generation, GenerationId(1));
    assert_eq!(metadata.leader, Some(leader));
    assert_eq!(metadata.members.len(), 2);
    assert!(metadata.members.iter().any(|m| m.member == follower && m.assignment.partitions == vec![tp(1)]));
}

#[test]
fn a_failed_assignment_write_sends_the_group_back_to_rebalance() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("a");
    h.advance(3_000);
    let generation = h.join_answer(ja).generation;
    let s = h.sync(&a, generation, vec![(a.clone(), Assignment { partitions: vec![tp(0)] })]);
    h.complete_writes(Err(ErrorCode::NotEnoughReplicas));
    assert_eq!(h.sync_answer(s).error, Some(ErrorCode::CoordinatorNotAvailable));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn heartbeats_are_fenced_by_generation_and_member() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    assert_eq!(h.heartbeat(&leader, GenerationId(1)), None);
    assert_eq!(h.heartbeat(&follower, GenerationId(0)), Some(ErrorCode::IllegalGeneration));
    assert_eq!(h.heartbeat(&MemberId::new("nobody"), GenerationId(1)), Some(ErrorCode::UnknownMemberId));
}

#[test]
fn an_expired_session_rebalances_the_others() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    // Only the leader heartbeats; the follower's session (10 s) ends between the third and the fourth.
    for _ in 0..3 {
        h.advance(3_000);
        assert_eq!(h.heartbeat(&leader, GenerationId(1)), None, "at {}", h.now);
    }
    h.advance(3_000);
    assert_eq!(h.heartbeat(&leader, GenerationId(1)), Some(ErrorCode::RebalanceInProgress));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let rejoin = h.send(h.join_request(Some(&leader), "a", None));
    let answer = h.join_answer(rejoin);
    assert_eq!(answer.generation, GenerationId(2), "the only member rejoined: the phase ends at once");
    assert_eq!(answer.members.iter().map(|m| m.member.clone()).collect::<Vec<_>>(), vec![leader]);
    assert_eq!(h.heartbeat(&follower, GenerationId(1)), Some(ErrorCode::UnknownMemberId));
}

#[test]
fn a_member_that_does_not_rejoin_in_the_rebalance_timeout_is_dropped() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    let rejoin = h.send(h.join_request(Some(&leader), "a", None));
    // The follower keeps heartbeating but never rejoins.
    for _ in 0..9 {
        h.advance(3_000);
        assert_eq!(h.heartbeat(&follower, GenerationId(1)), Some(ErrorCode::RebalanceInProgress));
    }
    assert!(!h.answers.contains_key(&rejoin));
    h.advance(REBALANCE_MS);
    let answer = h.join_answer(rejoin);
    assert_eq!(answer.generation, GenerationId(2));
    assert_eq!(answer.members.len(), 1);
}

#[test]
fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    let leave = |h: &mut Harness, m: &MemberId| {
        let t = h.send(GroupRequest::LeaveGroup(LeaveGroup { group: group(), member: m.clone(), instance: None }));
        h.answer(t)
    };
    assert_eq!(leave(&mut h, &follower), GroupResponse::LeaveGroup { error: None });
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(leave(&mut h, &leader), GroupResponse::LeaveGroup { error: None });
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.coord.group_metadata(&group()).unwrap().generation, GenerationId(2));
    assert_eq!(leave(&mut h, &leader), GroupResponse::LeaveGroup { error: Some(ErrorCode::UnknownMemberId) });
}

#[test]
fn commits_are_acknowledged_once_written_and_fenced_by_generation() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    let c = h.commit(Some(&leader), GenerationId(1), 10);
    assert!(!h.answers.contains_key(&c), "held until the write commits");
    assert_eq!(h.fetched(), None);
    h.complete_writes(Ok(()));
    assert_eq!(h.commit_errors(c), vec![None]);
    assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(10)));
    let stale = h.commit(Some(&follower), GenerationId(0), 3);
    assert_eq!(h.commit_errors(stale), vec![Some(ErrorCode::IllegalGeneration)]);
    let stranger = h.commit(Some(&MemberId::new("x")), GenerationId(1), 3);
    assert_eq!(h.commit_errors(stranger), vec![Some(ErrorCode::UnknownMemberId)]);
    let outsider = h.commit(None, GenerationId::NONE, 3);
    assert_eq!(h.commit_errors(outsider), vec![Some(ErrorCode::UnknownMemberId)]);
    assert!(h.writes.is_empty(), "refused commits write nothing");
    assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(10)));
}

#[test]
fn commits_during_the_sync_phase_are_refused_and_failed_writes_are_not_applied() {
    let mut h = Harness::new();
    let (leader, _follower) = h.stable_pair();
    let rejoin = h.send(h.join_request(Some(&leader), "a", None));
    // The follower neither rejoins nor heartbeats: its session ends, and the phase with it.
    h.advance(SESSION_MS);
    let generation = h.join_answer(rejoin).generation;
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let c = h.commit(Some(&leader), generation, 5);
    assert_eq!(h.commit_errors(c), vec![Some(ErrorCode::RebalanceInProgress)]);
    let s = h.sync(&leader, generation, vec![(leader.clone(), Assignment { partitions: vec![tp(0), tp(1)] })]);
    h.complete_writes(Ok(()));
    assert_eq!(h.sync_answer(s).error, None);
    let c = h.commit(Some(&leader), generation, 7);
    h.complete_writes(Err(ErrorCode::NotLeaderOrFollower));
    assert_eq!(h.commit_errors(c), vec![Some(ErrorCode::NotCoordinator)]);
    assert_eq!(h.fetched(), None);
}

#[test]
fn the_planted_bug_accepts_a_stale_generations_commit() {
    let mut h = Harness::with(true);
    let (_leader, follower) = h.stable_pair();
    let stale = h.commit(Some(&follower), GenerationId(0), 3);
    h.complete_writes(Ok(()));
    assert_eq!(h.commit_errors(stale), vec![None]);
    assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(3)));
}

#[test]
fn a_commit_from_outside_any_group_is_accepted_while_the_group_is_empty() {
    let mut h = Harness::new();
    let c = h.commit(None, GenerationId::NONE, 4);
    h.complete_writes(Ok(()));
    assert_eq!(h.commit_errors(c), vec![None]);
    let c = h.commit(Some(&MemberId::new("m")), GenerationId(3), 4);
    assert_eq!(h.commit_errors(c), vec![Some(ErrorCode::UnknownMemberId)]);
}

#[test]
fn a_new_coordinator_rebuilds_groups_and_offsets_from_the_log() {
    let mut h = Harness::new();
    let (leader, follower) = h.stable_pair();
    let c = h.commit(Some(&follower), GenerationId(1), 21);
    h.complete_writes(Ok(()));
    assert_eq!(h.commit_errors(c), vec![None]);
    let mut next: GroupCoordinator<u64> =
        GroupCoordinator::new(GroupConfig { offsets_topic_partitions: 4, ..GroupConfig::default() }, 2, false);
    let partition = next.partition_for(&group());
    let stats = next.load(100, partition, &h.log);
    assert_eq!(stats, LoadStats { records: 2, bad_records: 0, groups: 1 });
    assert_eq!(next.group_state(&group()), Some(GroupState::Stable));
    assert_eq!(next.group_metadata(&group()), h.coord.group_metadata(&group()));
    // Members carry on with the new coordinator: heartbeats and offsets.
    h.coord = next;
    h.now = 100;
    assert_eq!(h.heartbeat(&leader, GenerationId(1)), None);
    assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(21)));
}

#[test]
fn unloading_answers_held_requests_not_coordinator() {
    let mut h = Harness::new();
    let (_a, ja) = h.join_new("a");
    let partition = h.coord.partition_for(&group());
    h.coord.unload(partition);
    h.drain();
    assert_eq!(h.join_answer(ja).error, Some(ErrorCode::NotCoordinator));
    assert_eq!(h.heartbeat(&MemberId::new("a"), GenerationId(1)), Some(ErrorCode::NotCoordinator));
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_assignment() {
    let mut h = Harness::new();
    let first = h.send(h.join_request(None, "s", Some("instance-1")));
    h.advance(3_000);
    let joined = h.join_answer(first);
    assert_eq!(joined.error, None, "static members skip MEMBER_ID_REQUIRED");
    let old = joined.member.unwrap();
    let s = h.sync(&old, joined.generation, vec![(old.clone(), Assignment { partitions: vec![tp(0)] })]);
    h.complete_writes(Ok(()));
    assert_eq!(h.sync_answer(s).error, None);
    // Restarted: joins again without a member id.
    let again = h.send(h.join_request(None, "s", Some("instance-1")));
    let rejoined = h.join_answer(again);
    assert_eq!((rejoined.error, rejoined.generation), (None, joined.generation), "no rebalance");
    let new = rejoined.member.unwrap();
    assert_ne!(new, old);
    assert_eq!(h.state(), GroupState::Stable);
    let s = h.sync(&new, joined.generation, Vec::new());
    assert_eq!(h.sync_answer(s).assignment.partitions, vec![tp(0)]);
    // The old incarnation is fenced.
    let t = h.send(GroupRequest::Heartbeat(Heartbeat {
        group: group(),
        generation: joined.generation,
        member: old,
        instance: Some(InstanceId(Arc::from("instance-1"))),
    }));
    assert_eq!(h.answer(t), GroupResponse::Heartbeat { error: Some(ErrorCode::FencedInstanceId) });
}

#[test]
fn joins_with_bad_settings_are_refused() {
    let mut h = Harness::new();
    let mut req = h.join_request(None, "a", None);
    if let GroupRequest::JoinGroup(j) = &mut req {
        j.session_timeout_ms = 10;
    }
    let t = h.send(req);
    assert_eq!(h.join_answer(t).error, Some(ErrorCode::InvalidSessionTimeout));
    let (_a, _ja) = h.join_new("a");
    let mut req = h.join_request(None, "b", None);
    if let GroupRequest::JoinGroup(j) = &mut req {
        j.protocols = vec![(AssignorKind::RoundRobin, subscription())];
    }
    let t = h.send(req);
    assert_eq!(h.join_answer(t).error, Some(ErrorCode::InconsistentGroupProtocol));
}

#[test]
fn a_member_id_never_used_holds_a_join_phase_only_until_it_lapses() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new("a");
    h.advance(3_000);
    let generation = h.join_answer(ja).generation;
    let s = h.sync(&a, generation, vec![(a.clone(), Assignment { partitions: vec![tp(0)] })]);
    h.complete_writes(Ok(()));
    assert_eq!(h.sync_answer(s).error, None);
    let t = h.send(h.join_request(None, "b", None));
    assert_eq!(h.join_answer(t).error, Some(ErrorCode::MemberIdRequired));
    assert_eq!(h.state(), GroupState::Stable, "an id handed out is not a member yet");
    // The leader rejoins: the phase waits for b's pending id...
    let rejoin = h.send(h.join_request(Some(&a), "a", None));
    h.advance(SESSION_MS - 1);
    assert!(!h.answers.contains_key(&rejoin));
    // ...until it lapses, a session timeout after it was handed out.
    h.advance(1);
    let answer = h.join_answer(rejoin);
    assert_eq!(answer.generation, generation.next());
    assert_eq!(answer.members.iter().map(|m| m.member.clone()).collect::<Vec<_>>(), vec![a]);
}
