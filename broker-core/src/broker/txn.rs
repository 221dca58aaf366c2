//! The broker's side of transactions.
//!
//! - **As coordinator** of the `__transaction_state` partitions it leads: requests go to its
//!   [`TxnCoordinator`]; the coordinator's writes are appended here with acks=all and handed back once
//!   committed; its marker rounds are carried out — a marker per partition, written locally when this
//!   broker leads the partition, else sent to the leader in WriteTxnMarkers, and retried (with the
//!   leader looked up afresh) until each is in.
//! - **As partition leader**: WriteTxnMarkers appends markers (answered once committed, as Kafka
//!   appends them with acks=all), and a producer's first transactional write to a partition is
//!   verified with the coordinator first (KIP-890 part 1), so a late produce cannot open a
//!   transaction the coordinator already ended (KAFKA-14402).

use super::produce::{ProduceCall, Requester};
use super::{Broker, ConnId, Outstanding, Role};
use crate::plant::Plant;
use crate::protocol::{CorrelationId, ErrorCode, MarkerRequest, Peer, ProduceBatch, Request, Response};
use crate::txn::api::{TxnRequest, TxnResponse};
use crate::txn::coordinator::{MarkerId, TxnConfig, TxnCoordinator, TxnOutput, TxnWriteId};
use crate::txn::TransactionalId;
use crate::types::{BrokerId, LeaderEpoch, Offset, ProducerEpoch, ProducerId, TopicId, TopicPartition, TxnMarker};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The internal topic holding transactional ids' state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// How long a coordinator write may wait for the HW.
pub const TXN_WRITE_TIMEOUT_MS: u64 = 5_000;

/// Pause before a marker that could not be written is tried again.
const MARKER_RETRY_MS: u64 = 100;

/// Most produce requests parked for verification at once (ksim's bound);
/// past it, transactional writes needing verification are refused
/// COORDINATOR_NOT_AVAILABLE (retriable).
pub const MAX_VERIFYING: usize = 10_000;

/// Where a coordinator's answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TxnReply {
    Client(ConnId, CorrelationId),
    /// This broker's own verification of a transactional write.
    Verify(u64),
}

/// One round of markers: what is left to write.
#[derive(Clone, Debug)]
struct MarkerRound {
    producer_id: ProducerId,
    epoch: ProducerEpoch,
    marker: TxnMarker,
    /// Partitions whose marker is not in yet.
    pending: BTreeSet<TopicPartition>,
    /// Partitions whose marker is being written (locally or remotely).
    in_flight: BTreeSet<TopicPartition>,
    retry_at_ms: u64,
}

/// A produce request waiting for its transactional batches to be verified.
#[derive(Clone, Debug)]
struct Verifying {
    call: ProduceCall,
    batches: Vec<ProduceBatch>,
    /// Partitions still waiting for the coordinator's answer.
    waiting: BTreeSet<TopicPartition>,
    /// Partitions the coordinator refused, with why.
    refused: BTreeMap<TopicPartition, ErrorCode>,
}

pub(super) struct TxnSide {
    pub coordinator: TxnCoordinator<TxnReply>,
    /// `__transaction_state`, if the layout has it.
    pub state_topic: Option<TopicId>,
    /// Coordinator writes whose outcome is known, not yet handed back.
    pub writes_done: VecDeque<(TxnWriteId, Result<(), ErrorCode>)>,
    rounds: BTreeMap<MarkerId, MarkerRound>,
    /// Local marker appends whose outcome is known.
    pub markers_done: VecDeque<(MarkerId, TopicPartition, Option<ErrorCode>)>,
    verifying: BTreeMap<u64, Verifying>,
    /// Verification id → (parked request, partition).
    checks: BTreeMap<u64, (u64, TopicPartition)>,
    next_id: u64,
}

impl TxnSide {
    pub fn new(config: TxnConfig, layout: &super::ClusterLayout, offsets: Option<(TopicId, u32)>) -> TxnSide {
        let state = layout.topic_by_name(TRANSACTION_STATE_TOPIC).map(|t| (t.id, t.replicas.len() as u32));
        let config =
            TxnConfig { state_partitions: state.map_or(1, |(_, n)| n.max(1)), offsets_topic: offsets, ..config };
        TxnSide {
            coordinator: TxnCoordinator::new(config),
            state_topic: state.map(|(id, _)| id),
            writes_done: VecDeque::new(),
            rounds: BTreeMap::new(),
            markers_done: VecDeque::new(),
            verifying: BTreeMap::new(),
            checks: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        let retries = self.rounds.values().filter(|r| r.in_flight.len() < r.pending.len()).map(|r| r.retry_at_ms);
        retries.chain(self.coordinator.next_deadline_ms()).min()
    }
}

impl Broker {
    fn txn_state_partition(&self, id: &TransactionalId) -> Option<TopicPartition> {
        let topic = self.txn.state_topic?;
        Some(TopicPartition::new(topic, self.txn.coordinator.partition_for(id)))
    }

    /// The current leader of `tp`, as this broker's metadata has it.
    fn leader_of(&self, tp: TopicPartition) -> Option<BrokerId> {
        self.control.image.as_ref().and_then(|i| i.partitions.get(&tp)).and_then(|s| s.leader)
    }

    /// FindCoordinator for a transactional id.
    pub(super) fn find_txn_coordinator(&self, id: &TransactionalId) -> Response {
        self.coordinator_answer(self.txn_state_partition(id))
    }

    pub(super) fn handle_txn_request(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        correlation_id: CorrelationId,
        request: TxnRequest,
    ) {
        self.coordinate_txn(now_ms, TxnReply::Client(conn, correlation_id), request);
    }

    fn coordinate_txn(&mut self, now_ms: u64, reply: TxnReply, request: TxnRequest) {
        if self.txn.state_topic.is_none() {
            let response = TxnResponse::error_for(&request, ErrorCode::CoordinatorNotAvailable);
            self.txn_reply(now_ms, reply, response);
        } else {
            let ids = &mut self.producer_ids;
            self.txn.coordinator.handle_request(now_ms, reply, request, &mut || ids.take());
        }
        self.drain_txn(now_ms);
    }

    /// Carries out what the coordinator and the marker rounds want, and
    /// hands back finished writes and markers, until nothing is left.
    pub(super) fn drain_txn(&mut self, now_ms: u64) {
        loop {
            while let Some(output) = self.txn.coordinator.poll_output() {
                match output {
                    TxnOutput::Reply { to, response } => self.txn_reply(now_ms, to, response),
                    TxnOutput::Write { id, partition, records } => {
                        let topic = self.txn.state_topic.expect("writes only for a loaded partition");
                        let tp = TopicPartition::new(topic, partition);
                        self.append_for(now_ms, Requester::TxnCoordinator(id), tp, records, TXN_WRITE_TIMEOUT_MS);
                    }
                    TxnOutput::Markers { id, producer_id, epoch, commit, coordinator_epoch, partitions } => {
                        let marker = TxnMarker { commit, coordinator_epoch };
                        let pending: BTreeSet<TopicPartition> = partitions.into_iter().collect();
                        let round = MarkerRound {
                            producer_id,
                            epoch,
                            marker,
                            pending,
                            in_flight: BTreeSet::new(),
                            retry_at_ms: now_ms,
                        };
                        self.txn.rounds.insert(id, round);
                    }
                }
            }
            if self.halted.is_some() {
                return;
            }
            if let Some((write, result)) = self.txn.writes_done.pop_front() {
                self.txn.coordinator.write_done(now_ms, write, result);
                continue;
            }
            if let Some((round, tp, error)) = self.txn.markers_done.pop_front() {
                self.marker_answered(now_ms, round, tp, error);
                continue;
            }
            if !self.send_due_markers(now_ms) {
                return;
            }
        }
    }

    fn txn_reply(&mut self, now_ms: u64, to: TxnReply, response: TxnResponse) {
        match to {
            TxnReply::Client(conn, correlation_id) => self.respond(conn, correlation_id, Response::Txn(response)),
            TxnReply::Verify(check) => self.verified(now_ms, check, response.error()),
        }
    }

    // ---- coordinator leadership -----------------------------------------

    /// This broker now leads `tp`: if it is a partition of
    /// `__transaction_state`, its transactional ids are loaded from its log.
    pub(super) fn coordinate_txn_partition(&mut self, now_ms: u64, tp: TopicPartition, leader_epoch: LeaderEpoch) {
        if Some(tp.topic) != self.txn.state_topic {
            return;
        }
        if let Some(records) = self.coordinator_log(tp, "transactions") {
            self.txn.coordinator.load(tp.partition, leader_epoch, &records);
            self.drain_txn(now_ms);
        }
    }

    /// This broker no longer leads `tp`: if it is a partition of
    /// `__transaction_state`, its ids are unloaded (their answers go out at
    /// the next drive) and their marker rounds dropped.
    pub(super) fn resign_txn_partition(&mut self, tp: TopicPartition) {
        if Some(tp.topic) != self.txn.state_topic {
            return;
        }
        self.txn.coordinator.unload(tp.partition);
        let coordinator = &self.txn.coordinator;
        self.txn.rounds.retain(|id, _| coordinator.marker_round_live(*id));
    }

    // ---- marker rounds ----------------------------------------------------

    /// Starts every marker write that is due. Returns whether any local one
    /// finished at once (so the caller loops).
    fn send_due_markers(&mut self, now_ms: u64) -> bool {
        // Most calls (every drive) find nothing due: a round waits on its answers.
        let due = |r: &MarkerRound| r.retry_at_ms <= now_ms && r.pending.iter().any(|tp| !r.in_flight.contains(tp));
        if !self.txn.rounds.values().any(due) {
            return !self.txn.markers_done.is_empty();
        }
        let live: Vec<MarkerId> = self.txn.rounds.keys().copied().collect();
        let mut remote: BTreeMap<BrokerId, Vec<(MarkerId, TopicPartition)>> = BTreeMap::new();
        for id in live {
            let round = &self.txn.rounds[&id];
            if round.retry_at_ms > now_ms {
                continue;
            }
            let due: Vec<TopicPartition> = round.pending.difference(&round.in_flight).copied().collect();
            for tp in due {
                match self.leader_of(tp) {
                    Some(leader) if leader == self.id => {
                        self.txn.rounds.get_mut(&id).expect("listed").in_flight.insert(tp);
                        self.write_local_marker(now_ms, id, tp);
                    }
                    Some(leader) => {
                        self.txn.rounds.get_mut(&id).expect("listed").in_flight.insert(tp);
                        remote.entry(leader).or_default().push((id, tp));
                    }
                    None => self.txn.rounds.get_mut(&id).expect("listed").retry_at_ms = now_ms + MARKER_RETRY_MS,
                }
            }
        }
        for (leader, writes) in remote {
            let mut markers: Vec<MarkerRequest> = Vec::new();
            for (id, tp) in &writes {
                let round = &self.txn.rounds[id];
                markers.push(MarkerRequest {
                    producer_id: round.producer_id,
                    epoch: round.epoch,
                    marker: round.marker,
                    partitions: vec![*tp],
                });
            }
            let request = Request::WriteTxnMarkers { markers };
            self.send(now_ms, Peer::Broker(leader), Outstanding::TxnMarkers { writes }, request);
        }
        !self.txn.markers_done.is_empty()
    }

    /// Appends a marker of round `id` to `tp`, which this broker leads; its
    /// outcome arrives in `markers_done` once committed (or refused).
    fn write_local_marker(&mut self, now_ms: u64, id: MarkerId, tp: TopicPartition) {
        let round = &self.txn.rounds[&id];
        let (producer_id, epoch, marker) = (round.producer_id, round.epoch, round.marker);
        let requester = Requester::LocalMarker { round: id, tp, producer_id, commit: marker.commit };
        self.append_marker_for(now_ms, requester, tp, producer_id, epoch, marker);
    }

    /// The answers to a WriteTxnMarkers this broker sent.
    pub(super) fn on_txn_markers(
        &mut self,
        now_ms: u64,
        writes: Vec<(MarkerId, TopicPartition)>,
        results: Vec<(ProducerId, TopicPartition, Option<ErrorCode>)>,
    ) {
        for (id, tp) in writes {
            let error =
                results.iter().find(|(_, rtp, _)| *rtp == tp).map_or(Some(ErrorCode::NetworkException), |r| r.2);
            self.txn.markers_done.push_back((id, tp, error));
        }
        self.drain_txn(now_ms);
    }

    /// A WriteTxnMarkers this broker sent was lost: its markers are tried again.
    pub(super) fn on_txn_markers_lost(&mut self, now_ms: u64, writes: Vec<(MarkerId, TopicPartition)>) {
        for (id, tp) in writes {
            self.txn.markers_done.push_back((id, tp, Some(ErrorCode::NetworkException)));
        }
        self.drain_txn(now_ms);
    }

    fn marker_answered(&mut self, now_ms: u64, id: MarkerId, tp: TopicPartition, error: Option<ErrorCode>) {
        let ignore_errors = self.plants.on(Plant::MarkerErrorsIgnored);
        let Some(round) = self.txn.rounds.get_mut(&id) else { return };
        round.in_flight.remove(&tp);
        match error {
            // A marker refused because the producer already moved on (a newer
            // epoch wrote there) or a newer coordinator wrote one: this round's
            // decision was superseded there, and nothing is left to write.
            None | Some(ErrorCode::InvalidProducerEpoch) | Some(ErrorCode::TransactionCoordinatorFenced) => {
                round.pending.remove(&tp);
            }
            // Planted bug `marker-errors-ignored`: the failed marker counts as written.
            Some(_) if ignore_errors => {
                round.pending.remove(&tp);
            }
            Some(_) => round.retry_at_ms = now_ms + MARKER_RETRY_MS,
        }
        if round.pending.is_empty() {
            self.txn.rounds.remove(&id);
            self.txn.coordinator.markers_done(now_ms, id);
        }
    }

    // ---- as partition leader ---------------------------------------------

    /// WriteTxnMarkers from a coordinator: each marker is appended to the
    /// partition (which this broker must lead) and the request answered
    /// once all are committed.
    pub(super) fn write_txn_markers(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        correlation_id: CorrelationId,
        markers: Vec<MarkerRequest>,
    ) {
        let mut answers = Vec::new();
        let mut waiting = Vec::new();
        let mut producers = Vec::new();
        for m in markers {
            for tp in m.partitions {
                if self.halted.is_some() {
                    return;
                }
                let answer = match self.append_marker_as_leader(now_ms, tp, m.producer_id, m.epoch, m.marker) {
                    Ok((base_offset, leader_epoch, needed)) => {
                        if self.replicas[&tp].high_watermark < needed {
                            waiting.push((answers.len(), tp, leader_epoch, needed));
                        }
                        crate::protocol::ProducePartitionResponse { tp, error: None, base_offset }
                    }
                    Err(error) => {
                        crate::protocol::ProducePartitionResponse { tp, error: Some(error), base_offset: Offset(-1) }
                    }
                };
                answers.push(answer);
                producers.push((m.producer_id, m.marker));
            }
        }
        if self.halted.is_some() {
            return;
        }
        let requester = Requester::Markers { conn, correlation_id, producers };
        self.answer_or_park(now_ms, requester, TXN_WRITE_TIMEOUT_MS, answers, waiting);
    }

    /// Parks `batches` until the coordinator confirms that each transactional
    /// batch's partition is in its producer's open transaction, when this
    /// is the producer's first write to the partition. Returns the request
    /// back when nothing needs verifying.
    pub(super) fn verify_or_pass(
        &mut self,
        now_ms: u64,
        call: ProduceCall,
        batches: Vec<ProduceBatch>,
    ) -> Option<Vec<ProduceBatch>> {
        let needs: Vec<(TopicPartition, TransactionalId, ProducerId, ProducerEpoch)> = batches
            .iter()
            .filter_map(|b| {
                let (id, stamp) = (b.transactional_id.clone()?, b.producer?);
                let r = self.replicas.get(&b.tp)?;
                (matches!(r.role, Role::Leader(_)) && !r.log.has_open_txn(stamp.id)).then_some((
                    b.tp,
                    id,
                    stamp.id,
                    stamp.epoch,
                ))
            })
            .collect();
        if needs.is_empty() {
            return Some(batches);
        }
        let park = self.txn.next_id;
        self.txn.next_id += 1;
        let mut parked = Verifying { call, batches, waiting: BTreeSet::new(), refused: BTreeMap::new() };
        if self.txn.verifying.len() >= MAX_VERIFYING {
            for (tp, ..) in needs {
                parked.refused.insert(tp, ErrorCode::CoordinatorNotAvailable);
            }
            self.finish_verifying(now_ms, parked);
            return None;
        }
        parked.waiting = needs.iter().map(|n| n.0).collect();
        self.txn.verifying.insert(park, parked);
        for (tp, transactional_id, producer_id, epoch) in needs {
            let check = self.txn.next_id;
            self.txn.next_id += 1;
            self.txn.checks.insert(check, (park, tp));
            let request = TxnRequest::Verify { transactional_id: transactional_id.clone(), producer_id, epoch, tp };
            let coordinator = self.txn_state_partition(&transactional_id).and_then(|stp| self.leader_of(stp));
            match coordinator {
                Some(broker) if broker == self.id => self.coordinate_txn(now_ms, TxnReply::Verify(check), request),
                Some(broker) => {
                    self.send(now_ms, Peer::Broker(broker), Outstanding::TxnVerify { check }, Request::Txn(request))
                }
                None => self.verified(now_ms, check, Some(ErrorCode::CoordinatorNotAvailable)),
            }
        }
        None
    }

    /// The coordinator's answer to verification `check` (`None`: the
    /// partition is in the producer's open transaction).
    pub(super) fn verified(&mut self, now_ms: u64, check: u64, error: Option<ErrorCode>) {
        let Some((park, tp)) = self.txn.checks.remove(&check) else { return };
        let Some(parked) = self.txn.verifying.get_mut(&park) else { return };
        parked.waiting.remove(&tp);
        if let Some(error) = error {
            // Kafka answers a failed verification INVALID_TXN_STATE; a
            // coordinator that could not be asked is retriable; a producer
            // of an older epoch is fenced.
            let error = match error {
                ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch | ErrorCode::InvalidProducerIdMapping => {
                    ErrorCode::InvalidProducerEpoch
                }
                ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::NetworkException => {
                    ErrorCode::NotEnoughReplicas
                }
                ErrorCode::ConcurrentTransactions | ErrorCode::CoordinatorLoadInProgress => {
                    ErrorCode::ConcurrentTransactions
                }
                _ => ErrorCode::InvalidTxnState,
            };
            parked.refused.insert(tp, error);
        }
        if parked.waiting.is_empty() {
            let parked = self.txn.verifying.remove(&park).expect("present");
            self.finish_verifying(now_ms, parked);
        }
    }

    fn finish_verifying(&mut self, now_ms: u64, parked: Verifying) {
        let Verifying { call, batches, refused, .. } = parked;
        self.produce_verified(now_ms, call, batches, &refused);
    }

    /// The connection of parked requests broke: they are forgotten.
    pub(super) fn drop_verifying(&mut self, conn: ConnId) {
        self.txn.verifying.retain(|_, v| v.call.conn != conn);
        let verifying = &self.txn.verifying;
        self.txn.checks.retain(|_, (park, _)| verifying.contains_key(park));
    }
}
