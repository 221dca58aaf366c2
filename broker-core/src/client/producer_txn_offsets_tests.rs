//! sendOffsetsToTransaction through the real transaction and group
//! coordinators (`txn_tests`'s world): AddOffsetsToTxn, the group's
//! coordinator found and sent TxnOffsetCommit, EndTxn only once both are
//! answered, and a fenced member's offsets making the commit refused.

use super::txn_tests::{config, record, World};
use super::*;
use crate::client::transactional::TxnOutcome;
use crate::group::api::{CommittedOffset, GroupRequest};
use crate::group::{GenerationId, GroupId, MemberId};
use crate::txn::api::TxnRequest;
use crate::types::LeaderEpoch;

fn group() -> GroupId {
    GroupId::new("pipeline")
}

/// The consumed partition the offsets are of.
fn input(w: &World) -> TopicPartition {
    w.cluster.tp("t", 1)
}

fn next(offset: i64) -> CommittedOffset {
    CommittedOffset { offset: Offset(offset), leader_epoch: LeaderEpoch(0) }
}

/// The transactional requests in `w.log` from index `from`, named.
fn calls(w: &World, from: usize) -> Vec<String> {
    w.log[from..]
        .iter()
        .filter_map(|(_, r)| match r {
            Request::Txn(TxnRequest::AddPartitions { .. }) => Some("add-partitions".to_string()),
            Request::Txn(TxnRequest::AddOffsets { group, .. }) => Some(format!("add-offsets({group})")),
            Request::FindCoordinator { group } => Some(format!("find-coordinator({group})")),
            Request::Group(GroupRequest::TxnOffsetCommit(c)) => {
                Some(format!("txn-offset-commit({}@{})", c.offsets[0].1.offset.0, c.epoch.0))
            }
            Request::Txn(TxnRequest::EndTxn { commit, .. }) => Some(format!("end({commit})")),
            Request::Produce { .. } => Some("produce".to_string()),
            _ => None,
        })
        .collect()
}

/// A ready producer and the index of its first request after InitProducerId.
fn ready(w: &mut World) -> (Producer, usize) {
    let mut p = Producer::new(config("app"), w.cluster.brokers.clone(), 1);
    w.pump(&mut [&mut p]);
    assert!(p.transaction_ready());
    let from = w.log.len();
    (p, from)
}

#[test]
fn offsets_are_added_then_committed_and_end_txn_waits_for_both() {
    let mut w = World::new();
    let (mut p, from) = ready(&mut w);
    let tp = input(&w);
    w.hold_group_writes = true;
    p.begin_transaction(w.now);
    p.send(w.now, record(1, 0));
    p.send_offsets_to_transaction(w.now, group(), GenerationId::NONE, None, None, vec![(tp, next(5))]);
    p.end_transaction(w.now, true);
    w.pump(&mut [&mut p]);
    // The TxnOffsetCommit is not answered until its write commits: no EndTxn yet.
    let before = calls(&w, from);
    assert_eq!(before.last().map(String::as_str), Some("txn-offset-commit(5@0)"), "{before:?}");
    assert!(!before.iter().any(|c| c.starts_with("end")), "EndTxn waits for the offsets: {before:?}");
    assert!(w.ended(0).is_empty());
    w.release_group_writes(0, &mut p);
    w.pump(&mut [&mut p]);
    let all = calls(&w, from);
    let at = |name: &str| all.iter().position(|c| c.starts_with(name)).unwrap_or_else(|| panic!("no {name}: {all:?}"));
    assert!(at("add-offsets(pipeline)") < at("find-coordinator(pipeline)"), "{all:?}");
    assert!(at("find-coordinator(pipeline)") < at("txn-offset-commit"), "{all:?}");
    assert!(at("produce") < at("end(true)") && at("txn-offset-commit") < at("end(true)"), "{all:?}");
    assert_eq!(all.iter().filter(|c| c.starts_with("end")).count(), 1, "{all:?}");
    assert_eq!(w.ended(0), vec![TxnOutcome::Committed]);
    assert_eq!(w.group_offset(&group(), tp), Ok(Some(5)), "the commit marker made the offset the group's");
}

#[test]
fn a_transaction_of_offsets_alone_still_ends_at_the_coordinator() {
    // A pipeline transaction whose inputs produced no output: only offsets.
    let mut w = World::new();
    let (mut p, from) = ready(&mut w);
    let tp = input(&w);
    p.begin_transaction(w.now);
    p.send_offsets_to_transaction(w.now, group(), GenerationId::NONE, None, None, vec![(tp, next(3))]);
    p.end_transaction(w.now, true);
    w.pump(&mut [&mut p]);
    let all = calls(&w, from);
    assert_eq!(
        all,
        ["add-offsets(pipeline)", "find-coordinator(pipeline)", "txn-offset-commit(3@0)", "end(true)"],
        "the offsets partition is in the transaction: only EndTxn decides it"
    );
    assert_eq!(w.ended(0), vec![TxnOutcome::Committed]);
    assert_eq!(w.group_offset(&group(), tp), Ok(Some(3)));
    // The next transaction runs in the epoch EndTxn bumped to.
    p.begin_transaction(w.now);
    p.send_offsets_to_transaction(w.now, group(), GenerationId::NONE, None, None, vec![(tp, next(4))]);
    p.end_transaction(w.now, false);
    w.pump(&mut [&mut p]);
    assert_eq!(calls(&w, from)[4..], ["add-offsets(pipeline)", "end(false)"]);
    assert!(matches!(&w.ended(0)[..], [TxnOutcome::Committed, TxnOutcome::Aborted { .. }]));
    assert_eq!(w.group_offset(&group(), tp), Ok(Some(3)), "nothing pending, nothing changed");
}

#[test]
fn a_fenced_members_offsets_make_the_commit_refused_and_the_application_aborts() {
    let mut w = World::new();
    let (mut p, from) = ready(&mut w);
    let tp = input(&w);
    p.begin_transaction(w.now);
    p.send(w.now, record(1, 0));
    // KIP-447: a generation the group coordinator does not know (the member
    // was fenced by a rebalance) is ILLEGAL_GENERATION.
    let member = Some(MemberId::new("gone"));
    p.send_offsets_to_transaction(w.now, group(), GenerationId(3), member, None, vec![(tp, next(5))]);
    p.end_transaction(w.now, true);
    w.pump(&mut [&mut p]);
    // The refusal made the transaction abortable; the commit is refused after the retry backoff.
    w.now += 1_000;
    w.pump(&mut [&mut p]);
    match &w.ended(0)[..] {
        [TxnOutcome::CommitRefused { reason }] => assert_eq!(reason, "ILLEGAL_GENERATION"),
        other => panic!("commit answered {other:?}"),
    }
    assert!(!calls(&w, from).iter().any(|c| c.starts_with("end")), "no EndTxn asked to commit");
    assert!(!p.transaction_ready(), "the transaction is still open, abortable");
    p.end_transaction(w.now, false);
    w.pump(&mut [&mut p]);
    let all = calls(&w, from);
    assert_eq!(all.last().map(String::as_str), Some("end(false)"), "{all:?}");
    assert!(matches!(&w.ended(0)[..], [TxnOutcome::CommitRefused { .. }, TxnOutcome::Aborted { .. }]));
    assert!(p.transaction_ready());
    assert_eq!(w.group_offset(&group(), tp), Ok(None), "no offset was committed");
}
