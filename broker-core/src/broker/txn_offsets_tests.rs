//! Transactional offset commits through one broker that is transaction
//! coordinator, group coordinator and leader of `__consumer_offsets-0` at
//! once (`txn_tests`'s harness): AddOffsetsToTxn, TxnOffsetCommit appended
//! as the producer's transactional batch, and the offsets taking effect
//! only when EndTxn's marker lands in the offsets partition.

use super::txn_tests::{id, init, Harness};
use super::*;
use crate::group::api::{CommittedOffset, GroupRequest, GroupResponse, OffsetCommit, OffsetFetch, TxnOffsetCommit};
use crate::group::{GenerationId, GroupId};
use crate::txn::api::{TxnRequest, TxnResponse};
use crate::types::{ProducerEpoch, ProducerId, TopicId};

/// The input partition whose offsets the group commits.
const INPUT: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };

fn group() -> GroupId {
    GroupId::new("pipeline")
}

fn committed(offset: i64) -> CommittedOffset {
    CommittedOffset { offset: Offset(offset), leader_epoch: LeaderEpoch(0) }
}

impl Harness {
    fn group(&mut self, request: GroupRequest) -> GroupResponse {
        match self.ask(Request::Group(request)) {
            Response::Group(r) => r,
            other => panic!("answered {other:?}"),
        }
    }

    /// A plain commit outside any generation (the group has no members).
    fn plain_commit(&mut self, offset: i64) {
        let commit = OffsetCommit {
            group: group(),
            generation: GenerationId::NONE,
            member: None,
            instance: None,
            offsets: vec![(INPUT, committed(offset))],
        };
        let answer = self.group(GroupRequest::OffsetCommit(commit));
        assert_eq!(answer, GroupResponse::OffsetCommit { partitions: vec![(INPUT, None)] });
    }

    fn add_offsets(&mut self, (producer_id, epoch): (ProducerId, ProducerEpoch)) -> TxnResponse {
        self.txn(TxnRequest::AddOffsets { transactional_id: id(), producer_id, epoch, group: group() })
    }

    /// TxnOffsetCommit in the pre-KIP-447 form (no generation): only the
    /// producer's epoch can refuse it. Its partition's error.
    fn txn_commit(&mut self, (producer_id, epoch): (ProducerId, ProducerEpoch), offset: i64) -> Option<ErrorCode> {
        let commit = TxnOffsetCommit {
            group: group(),
            transactional_id: id(),
            producer_id,
            epoch,
            generation: GenerationId::NONE,
            member: None,
            instance: None,
            offsets: vec![(INPUT, committed(offset))],
        };
        match self.group(GroupRequest::TxnOffsetCommit(commit)) {
            GroupResponse::TxnOffsetCommit { partitions } => {
                assert_eq!(partitions.len(), 1);
                partitions[0].1
            }
            other => panic!("answered {other:?}"),
        }
    }

    fn end(&mut self, (producer_id, epoch): (ProducerId, ProducerEpoch), commit: bool) -> ProducerEpoch {
        match self.txn(TxnRequest::EndTxn { transactional_id: id(), producer_id, epoch, commit }) {
            TxnResponse::EndTxn(Ok(next)) => next,
            other => panic!("EndTxn answered {other:?}"),
        }
    }

    /// OffsetFetch of the input partition: its offset, or the fetch's error.
    fn fetch_offset(&mut self, require_stable: bool) -> Result<Option<i64>, ErrorCode> {
        let fetch = OffsetFetch { group: group(), partitions: Some(vec![INPUT]), require_stable };
        match self.group(GroupRequest::OffsetFetch(fetch)) {
            GroupResponse::OffsetFetch { error: None, offsets } => Ok(offsets[0].1.map(|c| c.offset.0)),
            GroupResponse::OffsetFetch { error: Some(e), .. } => Err(e),
            other => panic!("answered {other:?}"),
        }
    }
}

/// A group with offset 5 committed plainly, and an open transaction that
/// added the group's offsets partition and committed offset 9 in it.
fn offsets_in_open_transaction() -> (Harness, (ProducerId, ProducerEpoch)) {
    let mut h = Harness::new();
    h.plain_commit(5);
    let p = init(&mut h);
    assert_eq!(h.add_offsets(p), TxnResponse::AddOffsets(Ok(())));
    assert_eq!(h.txn_commit(p, 9), None, "written as the producer's transactional batch");
    (h, p)
}

#[test]
fn transactional_offsets_become_the_groups_at_the_commit_marker_and_are_unstable_before() {
    let (mut h, p) = offsets_in_open_transaction();
    assert_eq!(h.fetch_offset(true), Err(ErrorCode::UnstableOffsetCommit), "KIP-447: the transaction is undecided");
    assert_eq!(h.fetch_offset(false), Ok(Some(5)), "a fetch that does not ask for stable offsets sees the old one");
    assert_eq!(h.end(p, true), ProducerEpoch(p.1 .0 + 1));
    // The marker is written to __consumer_offsets-0 at once (one replica), and decides the offset.
    assert_eq!(h.fetch_offset(true), Ok(Some(9)));
    assert_eq!(h.fetch_offset(false), Ok(Some(9)));
}

#[test]
fn an_aborted_transactions_offsets_are_dropped_and_the_old_offset_stays() {
    let (mut h, p) = offsets_in_open_transaction();
    h.end(p, false);
    assert_eq!(h.fetch_offset(true), Ok(Some(5)), "stable again, and the offset committed before");
    assert_eq!(h.fetch_offset(false), Ok(Some(5)));
}

#[test]
fn a_transactional_commit_in_an_epoch_older_than_a_marker_in_the_partition_is_fenced() {
    let (mut h, p) = offsets_in_open_transaction();
    let next = (p.0, h.end(p, true));
    assert!(next.1 > p.1, "KIP-890: each ending bumps the epoch");
    // A straggling TxnOffsetCommit of the ended transaction: left pending,
    // the next transaction's marker would commit it.
    assert_eq!(h.txn_commit(p, 7), Some(ErrorCode::InvalidProducerEpoch));
    assert_eq!(h.fetch_offset(true), Ok(Some(9)), "nothing pending, nothing changed");
    // The next transaction, in the bumped epoch, commits offsets again: accepted.
    assert_eq!(h.add_offsets(next), TxnResponse::AddOffsets(Ok(())));
    assert_eq!(h.txn_commit(next, 12), None);
    h.end(next, true);
    assert_eq!(h.fetch_offset(true), Ok(Some(12)));
    // Still fenced once the partition holds a newer epoch's batch and marker.
    assert_eq!(h.txn_commit(p, 7), Some(ErrorCode::InvalidProducerEpoch));
    assert_eq!(h.fetch_offset(true), Ok(Some(12)), "nothing pending, nothing changed");
}
