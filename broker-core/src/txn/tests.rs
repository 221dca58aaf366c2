//! The transaction coordinator, driven by hand: a harness plays the broker
//! (committing or failing writes, delivering markers) and records answers.

use super::api::{TxnRequest, TxnResponse};
use super::coordinator::{MarkerId, TxnConfig, TxnCoordinator, TxnOutput, TxnWriteId};
use super::{TransactionalId, TxnState};
use crate::protocol::ErrorCode;
use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, StoredRecord, TopicId, TopicPartition};

const T0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
const T1: TopicPartition = TopicPartition { topic: TopicId(0), partition: 1 };

struct Harness {
    c: TxnCoordinator<u32>,
    now: u64,
    next_pid: i64,
    /// Writes not yet committed, and every record committed (the partition's log).
    writes: Vec<(TxnWriteId, Vec<crate::types::Record>)>,
    log: Vec<StoredRecord>,
    markers: Vec<(MarkerId, ProducerEpoch, bool, Vec<TopicPartition>)>,
    replies: Vec<(u32, TxnResponse)>,
    next_reply: u32,
}

fn id() -> TransactionalId {
    TransactionalId::new("app")
}

impl Harness {
    fn new(config: TxnConfig) -> Harness {
        let mut c = TxnCoordinator::new(TxnConfig { state_partitions: 1, ..config });
        assert_eq!(c.load(0, LeaderEpoch(3), &[]), 0);
        Harness {
            c,
            now: 1_000,
            next_pid: 500,
            writes: vec![],
            log: vec![],
            markers: vec![],
            replies: vec![],
            next_reply: 0,
        }
    }

    fn pump(&mut self) {
        while let Some(o) = self.c.poll_output() {
            match o {
                TxnOutput::Reply { to, response } => self.replies.push((to, response)),
                TxnOutput::Write { id, partition, records } => {
                    assert_eq!(partition, 0);
                    self.writes.push((id, records));
                }
                TxnOutput::Markers { id, epoch, commit, coordinator_epoch, partitions, .. } => {
                    assert_eq!(coordinator_epoch, LeaderEpoch(3));
                    self.markers.push((id, epoch, commit, partitions));
                }
            }
        }
    }

    /// Sends `request`; returns its answer once every write it causes commits.
    fn ask(&mut self, request: TxnRequest) -> TxnResponse {
        let to = self.send(request);
        self.commit_writes();
        self.answer_of(to)
    }

    fn send(&mut self, request: TxnRequest) -> u32 {
        self.next_reply += 1;
        let to = self.next_reply;
        let mut next_pid = self.next_pid;
        self.c.handle_request(self.now, to, request, &mut || {
            next_pid += 1;
            Some(ProducerId(next_pid))
        });
        self.next_pid = next_pid;
        self.pump();
        to
    }

    fn answer_of(&mut self, to: u32) -> TxnResponse {
        let at = self.replies.iter().position(|(t, _)| *t == to).expect("answered");
        self.replies.remove(at).1
    }

    fn commit_writes(&mut self) {
        while !self.writes.is_empty() {
            let (write, records) = self.writes.remove(0);
            for r in records {
                let offset = Offset(self.log.len() as i64);
                self.log.push(StoredRecord::stored(r, offset, LeaderEpoch(3)));
            }
            self.c.write_done(0, write, Ok(()));
            self.pump();
        }
    }

    /// Delivers every round of markers sent so far; returns them.
    fn deliver_markers(&mut self) -> Vec<(ProducerEpoch, bool, Vec<TopicPartition>)> {
        let rounds = std::mem::take(&mut self.markers);
        for (id, ..) in &rounds {
            self.c.markers_done(self.now, *id);
            self.pump();
            self.commit_writes();
        }
        rounds.into_iter().map(|(_, e, c, p)| (e, c, p)).collect()
    }

    fn state(&self) -> TxnState {
        self.c.metadata(&id()).expect("known").state
    }
}

fn init(h: &mut Harness) -> (ProducerId, ProducerEpoch) {
    let request = TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 10_000, current: None };
    match h.ask(request) {
        TxnResponse::InitProducerId(Ok(pe)) => pe,
        other => panic!("init answered {other:?}"),
    }
}

fn add(h: &mut Harness, (pid, epoch): (ProducerId, ProducerEpoch), tps: &[TopicPartition]) -> TxnResponse {
    let request =
        TxnRequest::AddPartitions { transactional_id: id(), producer_id: pid, epoch, partitions: tps.to_vec() };
    h.ask(request)
}

fn end(h: &mut Harness, (pid, epoch): (ProducerId, ProducerEpoch), commit: bool) -> TxnResponse {
    h.ask(TxnRequest::EndTxn { transactional_id: id(), producer_id: pid, epoch, commit })
}

#[test]
fn a_transaction_commits_in_two_phases_and_bumps_the_epoch() {
    let mut h = Harness::new(TxnConfig::default());
    let (pid, e0) = init(&mut h);
    assert_eq!(e0, ProducerEpoch(0));
    assert_eq!(init(&mut h), (pid, ProducerEpoch(1)), "a restart bumps the epoch");
    let p = (pid, ProducerEpoch(1));
    assert_eq!(add(&mut h, p, &[T0, T1]), TxnResponse::AddPartitions(Ok(())));
    assert_eq!(h.state(), TxnState::Ongoing);
    // The EndTxn is answered once the decision is written, before the markers.
    let to = h.send(TxnRequest::EndTxn { transactional_id: id(), producer_id: pid, epoch: p.1, commit: true });
    h.commit_writes();
    assert_eq!(h.answer_of(to), TxnResponse::EndTxn(Ok(ProducerEpoch(2))));
    assert_eq!(h.state(), TxnState::PrepareCommit);
    assert_eq!(h.deliver_markers(), vec![(ProducerEpoch(2), true, vec![T0, T1])]);
    assert_eq!(h.state(), TxnState::CompleteCommit);
    assert!(h.c.metadata(&id()).unwrap().partitions.is_empty());
    // A retry of that EndTxn (its answer lost) is answered as before...
    assert_eq!(end(&mut h, p, true), TxnResponse::EndTxn(Ok(ProducerEpoch(2))));
    assert_eq!(end(&mut h, p, false), TxnResponse::EndTxn(Err(ErrorCode::InvalidTxnState)));
    // ...and the next transaction writes with the bumped epoch.
    assert_eq!(add(&mut h, p, &[T0]), TxnResponse::AddPartitions(Err(ErrorCode::ProducerFenced)));
    assert_eq!(add(&mut h, (pid, ProducerEpoch(2)), &[T0]), TxnResponse::AddPartitions(Ok(())));
}

/// KAFKA-17754: an EndTxn of the previous transaction arrives late, after
/// the producer began the next one. With the per-transaction epoch bump it
/// is fenced; without it (the planted bug) it ends the wrong transaction.
#[test]
fn a_late_end_txn_is_fenced_unless_epochs_stay_put() {
    for bump in [true, false] {
        let mut h = Harness::new(TxnConfig { bump_epoch_per_txn: bump, ..TxnConfig::default() });
        let p = init(&mut h);
        add(&mut h, p, &[T0]);
        let TxnResponse::EndTxn(Ok(next)) = end(&mut h, p, false) else { panic!("abort refused") };
        h.deliver_markers();
        let p2 = (p.0, next);
        add(&mut h, p2, &[T1]);
        // The first transaction's EndTxn(commit), delayed in the network.
        let late = end(&mut h, p, true);
        if bump {
            assert_eq!(late, TxnResponse::EndTxn(Err(ErrorCode::ProducerFenced)));
            assert_eq!(h.state(), TxnState::Ongoing, "the open transaction is untouched");
        } else {
            assert_eq!(late, TxnResponse::EndTxn(Ok(p.1)), "the bug: the late commit is taken for this one");
            assert_eq!(h.state(), TxnState::PrepareCommit);
        }
    }
}

#[test]
fn a_new_incarnation_fences_the_old_and_aborts_its_transaction() {
    let mut h = Harness::new(TxnConfig::default());
    let old = init(&mut h);
    add(&mut h, old, &[T0]);
    let request = TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 10_000, current: None };
    assert_eq!(h.ask(request.clone()), TxnResponse::InitProducerId(Err(ErrorCode::ConcurrentTransactions)));
    assert_eq!(h.state(), TxnState::PrepareAbort);
    let markers = h.deliver_markers();
    assert_eq!(markers, vec![(ProducerEpoch(1), false, vec![T0])], "aborted in a newer epoch");
    assert_eq!(h.ask(request), TxnResponse::InitProducerId(Ok((old.0, ProducerEpoch(2)))));
    assert_eq!(add(&mut h, old, &[T1]), TxnResponse::AddPartitions(Err(ErrorCode::ProducerFenced)));
    assert_eq!(end(&mut h, old, true), TxnResponse::EndTxn(Err(ErrorCode::ProducerFenced)));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new(TxnConfig::default());
    let p = init(&mut h);
    add(&mut h, p, &[T0]);
    assert_eq!(h.c.next_deadline_ms(), Some(h.now + 10_000));
    h.now += 10_000;
    h.c.handle_timeout(h.now);
    h.pump();
    h.commit_writes();
    assert_eq!(h.deliver_markers(), vec![(ProducerEpoch(1), false, vec![T0])]);
    assert_eq!(h.state(), TxnState::CompleteAbort);
    assert_eq!(end(&mut h, p, true), TxnResponse::EndTxn(Err(ErrorCode::ProducerFenced)));
}

/// The planted bug `txn-timeout-never-aborts`: no abort is ever due, so a
/// transaction whose producer went away stays open.
#[test]
fn a_timed_out_transaction_stays_open_when_timeouts_never_abort() {
    let mut h = Harness::new(TxnConfig { leave_timed_out_txns_open: true, ..TxnConfig::default() });
    let p = init(&mut h);
    add(&mut h, p, &[T0]);
    assert_eq!(h.c.next_deadline_ms(), None, "no timeout is armed");
    h.now += 60_000;
    h.c.handle_timeout(h.now);
    h.pump();
    assert!(h.writes.is_empty() && h.deliver_markers().is_empty(), "nothing is aborted");
    assert_eq!(h.state(), TxnState::Ongoing);
}

#[test]
fn requests_wait_for_the_transition_in_flight_and_verify_reads_state() {
    let mut h = Harness::new(TxnConfig::default());
    let (pid, e) = init(&mut h);
    let verify =
        |h: &mut Harness, tp| h.ask(TxnRequest::Verify { transactional_id: id(), producer_id: pid, epoch: e, tp });
    assert_eq!(verify(&mut h, T0), TxnResponse::Verify(Err(ErrorCode::InvalidTxnState)));
    let to =
        h.send(TxnRequest::AddPartitions { transactional_id: id(), producer_id: pid, epoch: e, partitions: vec![T0] });
    let busy = h.send(TxnRequest::EndTxn { transactional_id: id(), producer_id: pid, epoch: e, commit: true });
    assert_eq!(h.answer_of(busy), TxnResponse::EndTxn(Err(ErrorCode::ConcurrentTransactions)));
    h.commit_writes();
    assert_eq!(h.answer_of(to), TxnResponse::AddPartitions(Ok(())));
    assert_eq!(verify(&mut h, T0), TxnResponse::Verify(Ok(())));
    assert_eq!(verify(&mut h, T1), TxnResponse::Verify(Err(ErrorCode::InvalidTxnState)));
    let stranger = TxnRequest::Verify { transactional_id: id(), producer_id: ProducerId(1), epoch: e, tp: T0 };
    assert_eq!(h.ask(stranger), TxnResponse::Verify(Err(ErrorCode::InvalidProducerIdMapping)));
}

#[test]
fn state_is_rebuilt_from_the_log_and_prepared_markers_sent_again() {
    let mut h = Harness::new(TxnConfig::default());
    let p = init(&mut h);
    add(&mut h, p, &[T0, T1]);
    let to = h.send(TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: true });
    h.commit_writes();
    h.answer_of(to);
    assert_eq!(h.markers.len(), 1);
    // The coordinator moves before the markers are in.
    h.c.unload(0);
    h.markers.clear();
    assert!(h.c.metadata(&id()).is_none());
    assert_eq!(h.c.load(0, LeaderEpoch(3), &h.log.clone()), 0);
    h.pump();
    assert_eq!(h.state(), TxnState::PrepareCommit);
    assert_eq!(h.deliver_markers(), vec![(ProducerEpoch(1), true, vec![T0, T1])]);
    assert_eq!(h.state(), TxnState::CompleteCommit);
}

#[test]
fn unload_answers_waiting_requests_and_failed_first_writes_are_forgotten() {
    let mut h = Harness::new(TxnConfig::default());
    let to = h.send(TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 10_000, current: None });
    let (write, _) = h.writes.remove(0);
    h.c.write_done(0, write, Err(ErrorCode::NotEnoughReplicas));
    h.pump();
    assert_eq!(h.answer_of(to), TxnResponse::InitProducerId(Err(ErrorCode::CoordinatorNotAvailable)));
    assert!(h.c.metadata(&id()).is_none(), "never written, so never known");
    let to = h.send(TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 10_000, current: None });
    h.c.unload(0);
    h.pump();
    assert_eq!(h.answer_of(to), TxnResponse::InitProducerId(Err(ErrorCode::NotCoordinator)));
    let request = TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 10_000, current: None };
    assert_eq!(h.ask(request), TxnResponse::InitProducerId(Err(ErrorCode::NotCoordinator)));
    let too_long = TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 1 << 40, current: None };
    h.c.load(0, LeaderEpoch(4), &[]);
    assert_eq!(h.ask(too_long), TxnResponse::InitProducerId(Err(ErrorCode::InvalidTransactionTimeout)));
}

#[test]
fn a_failed_complete_write_is_retried_after_a_pause_not_at_once() {
    let mut h = Harness::new(TxnConfig::default());
    let p = init(&mut h);
    add(&mut h, p, &[T0]);
    let to = h.send(TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: true });
    h.commit_writes();
    h.answer_of(to);
    let (markers, ..) = h.markers.remove(0);
    h.c.markers_done(h.now, markers);
    h.pump();
    // The Complete write fails (its partition short of in-sync replicas).
    let (write, _) = h.writes.remove(0);
    h.c.write_done(h.now, write, Err(ErrorCode::NotEnoughReplicas));
    h.pump();
    assert_eq!(h.c.next_deadline_ms(), Some(h.now + 100), "not due at once: that would spin");
    h.now += 100;
    h.c.handle_timeout(h.now);
    h.pump();
    h.commit_writes();
    assert_eq!(h.state(), TxnState::CompleteCommit);
}

#[test]
fn a_failed_timeout_abort_is_retried_after_a_pause_not_at_once() {
    let mut h = Harness::new(TxnConfig::default());
    let p = init(&mut h);
    add(&mut h, p, &[T0]);
    h.now += 10_000;
    h.c.handle_timeout(h.now);
    h.pump();
    let (write, _) = h.writes.remove(0);
    h.c.write_done(h.now, write, Err(ErrorCode::NotEnoughReplicas));
    h.pump();
    assert_eq!(h.state(), TxnState::Ongoing, "the abort was not written");
    assert_eq!(h.c.next_deadline_ms(), Some(h.now + 100), "not due at once: that would spin");
    h.now += 100;
    h.c.handle_timeout(h.now);
    h.pump();
    h.commit_writes();
    assert_eq!(h.state(), TxnState::PrepareAbort);
}
