//! Produce: appends on the leader, and acks.
//!
//! acks=0 gets no answer, acks=1 is answered at the leader's append (its
//! documented weakness: a leader crash can lose it), acks=all once the high
//! watermark covers the batch. acks=all is refused before the append with
//! NOT_ENOUGH_REPLICAS when the ISR is below min.insync.replicas; a batch
//! whose HW arrives while the ISR is below the minimum is answered
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka's DelayedProduce check); one the HW
//! never reaches in time gets REQUEST_TIMED_OUT; one whose leader steps down
//! first gets NOT_LEADER_OR_FOLLOWER. The last three are indefinite for the
//! client: the batch is in a log and may yet be committed.
//!
//! A batch from an idempotent producer is first checked against the log's
//! producer state: a retry of one of the producer's last five batches is
//! not appended again but answered with the original offsets (once the HW
//! covers them, for acks=all); a gap, an old epoch or an unknown producer
//! is refused (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH,
//! UNKNOWN_PRODUCER_ID) before anything is written.

use super::{Broker, BrokerEvent, ConnId, Role, MAX_BATCH_RECORDS};
use crate::group::coordinator::WriteId;
use crate::log::{AppendCheck, AppendInfo, LogError};
use crate::plant::Plant;
use crate::protocol::{Acks, CorrelationId, ErrorCode, ProduceBatch, ProducePartitionResponse, Response};
use crate::txn::coordinator::{MarkerId, TxnWriteId};
use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, Record, TopicPartition, TxnMarker};
use std::collections::BTreeMap;

/// Most acks=all requests parked at once (ksim's bound); past it new ones
/// are answered REQUEST_TIMED_OUT at once.
pub const PRODUCE_PURGATORY_LIMIT: usize = 100_000;

/// Who waits for an acks=all append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Requester {
    Client {
        conn: ConnId,
        correlation_id: CorrelationId,
    },
    /// The group coordinator's write of group metadata or offsets.
    Coordinator(WriteId),
    /// The transaction coordinator's write of a transactional id's state.
    TxnCoordinator(TxnWriteId),
    /// A coordinator's WriteTxnMarkers: one answer per marker, whose
    /// producers and markers are `producers` (in order).
    Markers {
        conn: ConnId,
        correlation_id: CorrelationId,
        producers: Vec<(ProducerId, TxnMarker)>,
    },
    /// A marker this broker, as coordinator, wrote to a partition it leads.
    LocalMarker {
        round: MarkerId,
        tp: TopicPartition,
        producer_id: ProducerId,
        commit: bool,
    },
}

/// What a batch appended as leader is (Kafka's append origin and
/// transactional flag together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AppendKind {
    /// A plain or idempotent client batch, or a coordinator's own records.
    Data,
    /// A transactional producer's batch: sequence-checked, opens its
    /// transaction here.
    Transactional,
    /// A group coordinator's transactional offset commit on a producer's
    /// behalf: as Kafka appends a coordinator's batch, its sequence is not
    /// checked, only its epoch.
    CoordinatorTransactional,
}

/// An acks=all request waiting for the high watermark.
#[derive(Clone, Debug)]
struct PendingProduce {
    requester: Requester,
    deadline_ms: u64,
    /// One answer per batch, in request order; `waiting` indexes into it.
    answers: Vec<ProducePartitionResponse>,
    /// Batches still waiting: (index in `answers`, partition, leader epoch, HW needed).
    waiting: Vec<(usize, TopicPartition, LeaderEpoch, Offset)>,
}

#[derive(Default)]
pub(super) struct ProducePurgatory {
    parked: Vec<PendingProduce>,
}

impl ProducePurgatory {
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.parked.iter().map(|p| p.deadline_ms).min()
    }

    pub fn drop_connection(&mut self, conn: ConnId) {
        self.parked.retain(|p| match &p.requester {
            Requester::Client { conn: c, .. } | Requester::Markers { conn: c, .. } => *c != conn,
            _ => true,
        });
    }
}

/// A Produce request's envelope: whom to answer, and how.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProduceCall {
    pub conn: ConnId,
    pub correlation_id: CorrelationId,
    pub acks: Acks,
    pub timeout_ms: u64,
}

impl Broker {
    pub(super) fn produce(&mut self, now_ms: u64, call: ProduceCall, batches: Vec<ProduceBatch>) {
        let Some(batches) = self.verify_or_pass(now_ms, call, batches) else {
            return; // parked until the transaction coordinator answers
        };
        self.produce_verified(now_ms, call, batches, &BTreeMap::new());
    }

    /// Appends `batches` (their transactional writes verified, those in
    /// `refused` refused with the error given) and answers or parks.
    pub(super) fn produce_verified(
        &mut self,
        now_ms: u64,
        call: ProduceCall,
        batches: Vec<ProduceBatch>,
        refused: &BTreeMap<TopicPartition, ErrorCode>,
    ) {
        let ProduceCall { conn, correlation_id, acks, timeout_ms } = call;
        let mut answers = Vec::with_capacity(batches.len());
        let mut waiting = Vec::new();
        for ProduceBatch { tp, records, producer, transactional_id } in batches {
            if self.halted.is_some() {
                return; // an append failed: the broker stopped, nothing more is answered
            }
            let appended = match refused.get(&tp) {
                Some(&error) => Err(error),
                None => {
                    let kind = if transactional_id.is_some() { AppendKind::Transactional } else { AppendKind::Data };
                    self.append_as_leader(now_ms, tp, acks, producer, kind, records)
                }
            };
            match appended {
                Ok((base_offset, leader_epoch, needed)) => {
                    let acked_at_append = acks != Acks::All || self.plant(Plant::AckOnLeaderAppend);
                    let covered = self.replicas[&tp].high_watermark >= needed;
                    if !acked_at_append && !covered {
                        waiting.push((answers.len(), tp, leader_epoch, needed));
                    }
                    answers.push(ProducePartitionResponse { tp, error: None, base_offset });
                }
                Err(error) => {
                    answers.push(ProducePartitionResponse { tp, error: Some(error), base_offset: Offset(-1) })
                }
            }
        }
        if acks == Acks::None || self.halted.is_some() {
            return;
        }
        self.answer_or_park(now_ms, Requester::Client { conn, correlation_id }, timeout_ms, answers, waiting);
    }

    /// Answers an acks=all request whose batches are all committed (or
    /// refused), or parks it until the HW covers them.
    pub(super) fn answer_or_park(
        &mut self,
        now_ms: u64,
        requester: Requester,
        timeout_ms: u64,
        mut answers: Vec<ProducePartitionResponse>,
        waiting: Vec<(usize, TopicPartition, LeaderEpoch, Offset)>,
    ) {
        if waiting.is_empty() {
            self.answer(requester, answers);
        } else if self.produce_purgatory.parked.len() >= PRODUCE_PURGATORY_LIMIT {
            for (i, ..) in waiting {
                answers[i].error = Some(ErrorCode::RequestTimedOut);
            }
            self.answer(requester, answers);
        } else {
            let deadline_ms = now_ms.saturating_add(timeout_ms);
            self.produce_purgatory.parked.push(PendingProduce { requester, deadline_ms, answers, waiting });
        }
    }

    /// Appends a coordinator's records to `tp` (a partition of
    /// `__consumer_offsets` or `__transaction_state`) with acks=all; the
    /// outcome reaches the coordinator through [`Broker::answer`] once the
    /// HW covers them.
    pub(super) fn append_for(
        &mut self,
        now_ms: u64,
        requester: Requester,
        tp: TopicPartition,
        records: Vec<Record>,
        timeout_ms: u64,
    ) {
        let appended = self.append_as_leader(now_ms, tp, Acks::All, None, AppendKind::Data, records);
        self.park_one(now_ms, requester, tp, appended, timeout_ms);
    }

    /// Appends a group coordinator's transactional offset commit to `tp` (a
    /// partition of `__consumer_offsets`) as a transactional batch of
    /// `producer_id` in `epoch`, with acks=all. As Kafka appends a
    /// coordinator's batch, its sequence is not checked, but its epoch is:
    /// a producer that a newer epoch of its id wrote here after is fenced
    /// (INVALID_PRODUCER_EPOCH).
    pub(super) fn append_txn_offsets_for(
        &mut self,
        now_ms: u64,
        requester: Requester,
        tp: TopicPartition,
        records: Vec<Record>,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
    ) {
        let stamp = Some(ProducerStamp { id: producer_id, epoch, base_sequence: 0 });
        let appended =
            self.append_as_leader(now_ms, tp, Acks::All, stamp, AppendKind::CoordinatorTransactional, records);
        self.park_one(now_ms, requester, tp, appended, crate::broker::group::OFFSET_COMMIT_TIMEOUT_MS);
    }

    /// Appends a transaction marker to `tp` for `requester` (a local marker
    /// round), answered once committed.
    pub(super) fn append_marker_for(
        &mut self,
        now_ms: u64,
        requester: Requester,
        tp: TopicPartition,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        marker: TxnMarker,
    ) {
        let appended = self.append_marker_as_leader(now_ms, tp, producer_id, epoch, marker);
        self.park_one(now_ms, requester, tp, appended, crate::broker::txn::TXN_WRITE_TIMEOUT_MS);
    }

    /// Answers or parks one acks=all append made on behalf of `requester`.
    fn park_one(
        &mut self,
        now_ms: u64,
        requester: Requester,
        tp: TopicPartition,
        appended: Result<(Offset, LeaderEpoch, Offset), ErrorCode>,
        timeout_ms: u64,
    ) {
        let mut waiting = Vec::new();
        let answer = match appended {
            Ok((base_offset, leader_epoch, needed)) => {
                if self.halted.is_some() {
                    return;
                }
                if self.replicas[&tp].high_watermark < needed && !self.plant(Plant::AckOnLeaderAppend) {
                    waiting.push((0, tp, leader_epoch, needed));
                }
                ProducePartitionResponse { tp, error: None, base_offset }
            }
            Err(error) => ProducePartitionResponse { tp, error: Some(error), base_offset: Offset(-1) },
        };
        self.answer_or_park(now_ms, requester, timeout_ms, vec![answer], waiting);
    }

    /// A finished acks=all request: the client's answer, or the coordinator's write outcome.
    fn answer(&mut self, requester: Requester, answers: Vec<ProducePartitionResponse>) {
        match requester {
            Requester::Client { conn, correlation_id } => {
                self.respond(conn, correlation_id, Response::Produce { partitions: answers })
            }
            Requester::Coordinator(write) => {
                // One batch: where it was appended is its base offset.
                let result = match answers.iter().find_map(|a| a.error) {
                    None => Ok(answers.first().map_or(Offset(-1), |a| a.base_offset)),
                    Some(error) => Err(error),
                };
                self.group_writes_done.push_back((write, result));
            }
            Requester::TxnCoordinator(write) => {
                let result = match answers.iter().find_map(|a| a.error) {
                    None => Ok(()),
                    Some(error) => Err(error),
                };
                self.txn.writes_done.push_back((write, result));
            }
            Requester::LocalMarker { round, tp, producer_id, commit } => {
                let error = answers.first().and_then(|a| a.error);
                if error.is_none() {
                    self.offsets_marker_committed(tp, producer_id, commit);
                }
                self.txn.markers_done.push_back((round, tp, error));
            }
            Requester::Markers { conn, correlation_id, producers } => {
                for ((producer_id, marker), a) in producers.iter().zip(&answers) {
                    if a.error.is_none() {
                        self.offsets_marker_committed(a.tp, *producer_id, marker.commit);
                    }
                }
                let results = producers.into_iter().zip(answers).map(|((pid, _), a)| (pid, a.tp, a.error)).collect();
                self.respond(conn, correlation_id, Response::WriteTxnMarkers { results });
            }
        }
    }

    /// Appends a batch as leader. Returns its base offset, the epoch it was
    /// written in and the high watermark that commits it. A retry of a
    /// batch the log holds returns the original's offsets, unwritten.
    fn append_as_leader(
        &mut self,
        now_ms: u64,
        tp: TopicPartition,
        acks: Acks,
        producer: Option<ProducerStamp>,
        kind: AppendKind,
        records: Vec<Record>,
    ) -> Result<(Offset, LeaderEpoch, Offset), ErrorCode> {
        let transactional = kind != AppendKind::Data;
        let r = self.led(tp)?;
        if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
            return Err(ErrorCode::InvalidRequest);
        }
        let Role::Leader(l) = &r.role else { unreachable!("led() checked") };
        let ignore_min_isr = self.plants.on(Plant::IgnoreMinIsr);
        if acks == Acks::All && !l.enough_replicas() && !ignore_min_isr {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        let leader_epoch = l.leader_epoch();
        let offset_reuse = self.plants.on(Plant::OffsetReuse);
        if transactional && producer.is_none() {
            return Err(ErrorCode::InvalidRequest);
        }
        let r = self.replicas.get_mut(&tp).expect("led() checked");
        if let (Some(stamp), AppendKind::CoordinatorTransactional) = (producer, kind) {
            // A coordinator's batch: no sequence to check, but an epoch a
            // newer one of its producer has written here since is fenced.
            if r.log.producer_state().epoch_of(stamp.id).is_some_and(|e| e > stamp.epoch) {
                return Err(ErrorCode::InvalidProducerEpoch);
            }
        } else if let Some(stamp) = producer {
            match r.log.check_producer(stamp, records.len()) {
                // A plain batch of a producer whose transaction is open
                // here (Kafka's ProducerAppendInfo refuses it the same way).
                AppendCheck::Append if !transactional && r.log.producer_state().has_open_txn(stamp.id) => {
                    return Err(ErrorCode::InvalidTxnState);
                }
                AppendCheck::Append => {}
                AppendCheck::Duplicate { first_offset, last_offset } => {
                    assert_eq!(last_offset.0 - first_offset.0 + 1, records.len() as i64, "a retry of {stamp:?}");
                    return Ok((first_offset, leader_epoch, last_offset.next()));
                }
                AppendCheck::Refuse(error) => return Err(error),
            }
        }
        let leo_before = r.log.log_end_offset();
        let count = records.len() as i64;
        let storage = self.storage.as_mut();
        let appended = match (producer, transactional) {
            (Some(stamp), true) => r.log.append_transactional(storage, now_ms, leader_epoch, stamp, &records),
            _ => r.log.append_from(storage, now_ms, leader_epoch, producer, &records),
        };
        let info = self.appended(tp, appended)?;
        assert_eq!(info.last_offset.0 - info.base_offset.0 + 1, count);
        assert!(offset_reuse || info.base_offset == leo_before, "append must start at the log end");
        self.wake_fetches(tp);
        self.update_high_watermark(tp);
        Ok((info.base_offset, leader_epoch, info.last_offset.next()))
    }

    /// Appends a transaction marker as leader (for WriteTxnMarkers or this
    /// broker's own coordinator). Returns as [`Broker::append_as_leader`].
    pub(super) fn append_marker_as_leader(
        &mut self,
        now_ms: u64,
        tp: TopicPartition,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        marker: TxnMarker,
    ) -> Result<(Offset, LeaderEpoch, Offset), ErrorCode> {
        let r = self.led(tp)?;
        let Role::Leader(l) = &r.role else { unreachable!("led() checked") };
        let leader_epoch = l.leader_epoch();
        r.log.check_marker(producer_id, epoch, marker)?;
        let r = self.replicas.get_mut(&tp).expect("led() checked");
        let appended = r.log.append_marker(self.storage.as_mut(), now_ms, leader_epoch, producer_id, epoch, marker);
        let info = self.appended(tp, appended)?;
        self.wake_fetches(tp);
        self.update_high_watermark(tp);
        Ok((info.base_offset, leader_epoch, info.last_offset.next()))
    }

    /// A failed append stops the broker (its only log directory failed).
    fn appended(
        &mut self,
        tp: TopicPartition,
        appended: Result<AppendInfo, LogError>,
    ) -> Result<AppendInfo, ErrorCode> {
        appended.map_err(|e| {
            self.halt(format!("append to {tp} failed: {e}"));
            ErrorCode::KafkaStorageError
        })
    }

    /// Recomputes a leader's high watermark; when it advances, reports it,
    /// answers the produces it completes and wakes consumer fetches.
    pub(super) fn update_high_watermark(&mut self, tp: TopicPartition) {
        let Some(r) = self.replicas.get_mut(&tp) else { return };
        let Role::Leader(l) = &mut r.role else { return };
        let Some(new) = l.update_high_watermark(r.log.log_end_offset()) else { return };
        let from = r.high_watermark;
        r.high_watermark = new;
        let leader_epoch = l.leader_epoch();
        self.events.push_back(BrokerEvent::HighWatermark { tp, leader_epoch, from, to: new });
        self.complete_produces(tp);
        self.wake_fetches(tp);
    }

    /// Answers parked produces whose batches on `tp` the HW now covers.
    fn complete_produces(&mut self, tp: TopicPartition) {
        if self.produce_purgatory.parked.is_empty() {
            return;
        }
        let (hw, epoch, enough) = match &self.replicas[&tp].role {
            Role::Leader(l) => (l.high_watermark(), l.leader_epoch(), l.enough_replicas()),
            _ => return,
        };
        let ignore_min_isr = self.plants.on(Plant::IgnoreMinIsr);
        let mut done = Vec::new();
        for (i, p) in self.produce_purgatory.parked.iter_mut().enumerate() {
            let answers = &mut p.answers;
            p.waiting.retain(|&(index, wtp, wepoch, needed)| {
                if wtp != tp || hw < needed {
                    return true;
                }
                if wepoch != epoch {
                    answers[index].error = Some(ErrorCode::NotLeaderOrFollower);
                } else if !enough && !ignore_min_isr {
                    answers[index].error = Some(ErrorCode::NotEnoughReplicasAfterAppend);
                }
                false
            });
            if p.waiting.is_empty() {
                done.push(i);
            }
        }
        self.answer_done(done);
    }

    /// Leadership of `tp` ended: its waiting batches get `error`.
    pub(super) fn fail_produces(&mut self, tp: TopicPartition, error: ErrorCode) {
        let mut done = Vec::new();
        for (i, p) in self.produce_purgatory.parked.iter_mut().enumerate() {
            let answers = &mut p.answers;
            p.waiting.retain(|&(index, wtp, ..)| {
                if wtp == tp {
                    answers[index].error = Some(error);
                }
                wtp != tp
            });
            if p.waiting.is_empty() {
                done.push(i);
            }
        }
        self.answer_done(done);
    }

    pub(super) fn expire_produces(&mut self, now_ms: u64) {
        let mut done = Vec::new();
        for (i, p) in self.produce_purgatory.parked.iter_mut().enumerate() {
            if p.deadline_ms <= now_ms {
                for &(index, ..) in &p.waiting {
                    p.answers[index].error = Some(ErrorCode::RequestTimedOut);
                }
                p.waiting.clear();
                done.push(i);
            }
        }
        self.answer_done(done);
    }

    /// Sends the answers of the parked produces at `indices` (ascending) and
    /// removes them, keeping the others in arrival order.
    fn answer_done(&mut self, indices: Vec<usize>) {
        let mut removed: Vec<PendingProduce> =
            indices.into_iter().rev().map(|i| self.produce_purgatory.parked.remove(i)).collect();
        // Answered in arrival order, as Kafka answers a connection's requests.
        while let Some(p) = removed.pop() {
            debug_assert!(p.waiting.is_empty());
            self.answer(p.requester, p.answers);
        }
    }
}
