//! Transactional offset commits (TxnOffsetCommit, KIP-447): pending until
//! their transaction's marker, fenced by generation, rebuilt from the log,
//! and reported unstable to a fetch that asks for stable offsets.

use super::tests::{group, tp, Harness};
use super::*;
use crate::group::api::{CommittedOffset, OffsetFetch, TxnOffsetCommit};
use crate::group::GenerationId;
use crate::txn::TransactionalId;
use crate::types::{LeaderEpoch, Offset, ProducerStamp, TxnMarker};

const PID: ProducerId = ProducerId(40);
const EPOCH: ProducerEpoch = ProducerEpoch(3);

impl Harness {
    fn txn_commit(&mut self, member: Option<&MemberId>, generation: GenerationId, offset: i64) -> u64 {
        self.send(GroupRequest::TxnOffsetCommit(TxnOffsetCommit {
            group: group(),
            transactional_id: TransactionalId::new("pipeline-1"),
            producer_id: PID,
            epoch: EPOCH,
            generation,
            member: member.cloned(),
            instance: None,
            offsets: vec![(tp(0), CommittedOffset { offset: Offset(offset), leader_epoch: LeaderEpoch(0) })],
        }))
    }

    fn txn_errors(&mut self, token: u64) -> Vec<Option<ErrorCode>> {
        match self.answer(token) {
            GroupResponse::TxnOffsetCommit { partitions } => partitions.into_iter().map(|(_, e)| e).collect(),
            other => panic!("not a txn offset commit answer: {other:?}"),
        }
    }

    fn fetch_stable(&mut self) -> Result<Option<CommittedOffset>, ErrorCode> {
        let token = self.send(GroupRequest::OffsetFetch(OffsetFetch {
            group: group(),
            partitions: Some(vec![tp(0)]),
            require_stable: true,
        }));
        match self.answer(token) {
            GroupResponse::OffsetFetch { error: None, offsets } => Ok(offsets[0].1),
            GroupResponse::OffsetFetch { error: Some(e), .. } => Err(e),
            other => panic!("not an offset fetch answer: {other:?}"),
        }
    }

    /// The transaction's marker is committed in the group's partition.
    fn marker(&mut self, commit: bool) {
        let offset = Offset(self.log.len() as i64);
        let marker = TxnMarker { commit, coordinator_epoch: LeaderEpoch(0) };
        self.log.push(StoredRecord {
            offset,
            timestamp_ms: self.now,
            leader_epoch: LeaderEpoch(0),
            key: None,
            value: bytes::Bytes::new(),
            producer: Some(ProducerStamp { id: PID, epoch: EPOCH, base_sequence: -1 }),
            kind: BatchKind::Marker(marker),
        });
        let partition = self.coord.partition_for(&group());
        self.coord.txn_completed(partition, PID, commit);
    }
}

#[test]
fn a_transactional_commit_takes_effect_only_at_its_commit_marker() {
    let mut h = Harness::new();
    let (leader, _) = h.stable_pair();
    let c = h.commit(Some(&leader), GenerationId(1), 5);
    h.complete_writes(Ok(()));
    assert_eq!(h.commit_errors(c), vec![None]);
    let t = h.txn_commit(Some(&leader), GenerationId(1), 9);
    assert_eq!(h.writes.len(), 1);
    assert_eq!(h.writes[0].3, Some((PID, EPOCH)), "written as the producer's transactional batch");
    assert!(!h.answers.contains_key(&t), "answered once written");
    h.complete_writes(Ok(()));
    assert_eq!(h.txn_errors(t), vec![None]);
    assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(5)), "undecided: the old offset");
    assert_eq!(h.fetch_stable(), Err(ErrorCode::UnstableOffsetCommit));
    h.marker(true);
    assert_eq!(h.fetch_stable().map(|c| c.map(|c| c.offset)), Ok(Some(Offset(9))));
}

#[test]
fn an_abort_marker_drops_the_transactions_offsets() {
    let mut h = Harness::new();
    let (leader, _) = h.stable_pair();
    let t = h.txn_commit(Some(&leader), GenerationId(1), 9);
    h.complete_writes(Ok(()));
    assert_eq!(h.txn_errors(t), vec![None]);
    h.marker(false);
    assert_eq!(h.fetch_stable(), Ok(None));
}

#[test]
fn a_transactional_commit_of_a_stale_generation_is_fenced_unless_planted() {
    let mut h = Harness::new();
    let (_, follower) = h.stable_pair();
    let stale = h.txn_commit(Some(&follower), GenerationId(0), 3);
    assert_eq!(h.txn_errors(stale), vec![Some(ErrorCode::IllegalGeneration)]);
    let stranger = h.txn_commit(Some(&MemberId::new("x")), GenerationId(1), 3);
    assert_eq!(h.txn_errors(stranger), vec![Some(ErrorCode::UnknownMemberId)]);
    assert!(h.writes.is_empty());
    // Without a generation (the pre-KIP-447 form) nothing is fenced.
    let unfenced = h.txn_commit(None, GenerationId::NONE, 3);
    h.complete_writes(Ok(()));
    assert_eq!(h.txn_errors(unfenced), vec![None]);

    let mut planted = Harness::with(true);
    let (_, follower) = planted.stable_pair();
    let stale = planted.txn_commit(Some(&follower), GenerationId(0), 3);
    planted.complete_writes(Ok(()));
    assert_eq!(planted.txn_errors(stale), vec![None], "stale-generation-commit lets it through");
}

#[test]
fn a_new_coordinator_replays_decided_and_undecided_transactional_commits() {
    let mut h = Harness::new();
    let (leader, _) = h.stable_pair();
    let t = h.txn_commit(Some(&leader), GenerationId(1), 9);
    h.complete_writes(Ok(()));
    assert_eq!(h.txn_errors(t), vec![None]);
    let config = GroupConfig { offsets_topic_partitions: 4, ..GroupConfig::default() };
    let partition = h.coord.partition_for(&group());

    // Undecided in the log: still pending at the new coordinator.
    let mut next: GroupCoordinator<u64> = GroupCoordinator::new(config.clone(), 2, false);
    next.load(100, partition, &h.log);
    let log = h.log.clone();
    h.coord = next;
    assert_eq!(h.fetch_stable(), Err(ErrorCode::UnstableOffsetCommit));
    // Its marker arrives at the new coordinator.
    h.marker(true);
    assert_eq!(h.fetch_stable().map(|c| c.map(|c| c.offset)), Ok(Some(Offset(9))));

    // Decided in the log: replayed as committed.
    let mut again: GroupCoordinator<u64> = GroupCoordinator::new(config.clone(), 3, false);
    let stats = again.load(200, partition, &h.log);
    assert_eq!(stats.bad_records, 0);
    h.coord = again;
    assert_eq!(h.fetch_stable().map(|c| c.map(|c| c.offset)), Ok(Some(Offset(9))));

    // An abort marker in the log: dropped at replay.
    let mut aborted_log = log;
    aborted_log.push(StoredRecord {
        offset: Offset(aborted_log.len() as i64),
        timestamp_ms: 0,
        leader_epoch: LeaderEpoch(0),
        key: None,
        value: bytes::Bytes::new(),
        producer: Some(ProducerStamp { id: PID, epoch: EPOCH, base_sequence: -1 }),
        kind: BatchKind::Marker(TxnMarker { commit: false, coordinator_epoch: LeaderEpoch(0) }),
    });
    let mut third: GroupCoordinator<u64> = GroupCoordinator::new(config, 4, false);
    third.load(300, partition, &aborted_log);
    h.coord = third;
    assert_eq!(h.fetch_stable(), Ok(None));
}

/// A transactional commit of 9, then a plain commit of 5 appended after it
/// and before the marker (`plain_after`), or the other way round.
fn plain_and_transactional(plain_after: bool) -> Harness {
    let mut h = Harness::new();
    let (leader, _) = h.stable_pair();
    if !plain_after {
        h.commit(Some(&leader), GenerationId(1), 5);
        h.complete_writes(Ok(()));
    }
    h.txn_commit(Some(&leader), GenerationId(1), 9);
    h.complete_writes(Ok(()));
    if plain_after {
        h.commit(Some(&leader), GenerationId(1), 5);
        h.complete_writes(Ok(()));
    }
    h.marker(true);
    h
}

#[test]
fn a_committed_transaction_keeps_a_plain_commit_appended_after_its_own() {
    // Kafka's `olderThan`: the later append stands, live and at replay.
    let config = GroupConfig { offsets_topic_partitions: 4, ..GroupConfig::default() };
    for (plain_after, expected) in [(true, 5), (false, 9)] {
        let mut h = plain_and_transactional(plain_after);
        assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(expected)), "plain after: {plain_after}");
        let partition = h.coord.partition_for(&group());
        let mut next: GroupCoordinator<u64> = GroupCoordinator::new(config.clone(), 2, false);
        next.load(100, partition, &h.log);
        h.coord = next;
        assert_eq!(h.fetched().map(|c| c.offset), Some(Offset(expected)), "replayed, plain after: {plain_after}");
    }
}
