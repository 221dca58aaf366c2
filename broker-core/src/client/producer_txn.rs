//! The producer's transactional half: the requests a transactional producer
//! sends to its coordinator, and the application's begin / commit / abort.
//! The bookkeeping lives in `transactional.rs`; this is the glue to the
//! producer's batches and connections.

use super::*;
use crate::client::transactional::{Failure, OffsetsStep, Phase, SentOffsets};
use crate::group::api::{GroupRequest, GroupResponse, TxnOffsetCommit};
use crate::group::{GenerationId, GroupId, InstanceId, MemberId};
use crate::txn::api::{TxnRequest, TxnResponse};

/// A transactional request in flight.
#[derive(Clone, Debug)]
pub(super) enum TxnCall {
    FindCoordinator,
    Init,
    AddPartitions(Vec<TopicPartition>),
    /// AddOffsetsToTxn.
    AddOffsets,
    /// FindCoordinator for the offsets' group.
    FindGroupCoordinator,
    /// TxnOffsetCommit.
    CommitOffsets,
    End {
        commit: bool,
    },
}

impl Producer {
    /// Whether a transactional producer may begin a transaction now (it has
    /// its producer id, and no transaction is open or ending).
    pub fn transaction_ready(&self) -> bool {
        self.transactions.as_ref().is_some_and(|t| t.phase == Phase::Ready)
    }

    /// The producer id and epoch batches are written with now (idempotent
    /// and transactional producers, once they have one).
    pub fn producer_id_and_epoch(&self) -> Option<(crate::types::ProducerId, crate::types::ProducerEpoch)> {
        self.idempotence.as_ref().and_then(|i| i.id)
    }

    /// A transactional producer's `transactional.id`.
    pub fn transactional_id(&self) -> Option<&str> {
        self.transactions.as_ref().map(|t| &*t.id.0)
    }

    /// Why a transactional producer cannot, if it cannot: it was fenced.
    pub fn transaction_fatal(&self) -> Option<&str> {
        match &self.transactions.as_ref()?.phase {
            Phase::Fatal(why) => Some(why),
            _ => None,
        }
    }

    /// Opens a transaction (locally: the coordinator learns of it with the
    /// first AddPartitions). Panics unless [`Producer::transaction_ready`].
    pub fn begin_transaction(&mut self, now_ms: u64) {
        self.advance_clock(now_ms);
        let txn = self.transactions.as_mut().expect("a transactional producer");
        assert_eq!(txn.phase, Phase::Ready, "begin_transaction while not ready");
        txn.phase = Phase::Open { abortable: None };
    }

    /// Kafka's `sendOffsetsToTransaction`: `offsets` of `group` (the next
    /// offsets to consume, as the member `member` of `generation` consumed
    /// them) are committed with the open transaction, or not at all. They
    /// go to the transaction coordinator (AddOffsetsToTxn) and then to the
    /// group's coordinator (TxnOffsetCommit); a commit waits for both. A
    /// refusal because the member was fenced makes the transaction
    /// abortable. Offsets sent again in the same transaction replace those
    /// not yet committed. Panics without an open transaction.
    pub fn send_offsets_to_transaction(
        &mut self,
        now_ms: u64,
        group: GroupId,
        generation: GenerationId,
        member: Option<MemberId>,
        instance: Option<InstanceId>,
        offsets: Vec<(TopicPartition, crate::group::api::CommittedOffset)>,
    ) {
        let now_ms = self.advance_clock(now_ms);
        let txn = self.transactions.as_mut().expect("a transactional producer");
        assert!(matches!(txn.phase, Phase::Open { .. }), "send_offsets_to_transaction without an open transaction");
        let step = match &txn.offsets {
            // The group is in the transaction already: only the commit is left.
            Some(o) if o.group == group && o.step != OffsetsStep::AddToTxn => OffsetsStep::Commit,
            _ => OffsetsStep::AddToTxn,
        };
        if txn.offsets.as_ref().is_some_and(|o| o.group != group) {
            txn.group_coordinator = None;
        }
        txn.offsets = Some(SentOffsets { group, generation, member, instance, offsets, step });
        self.drive(now_ms);
    }

    /// Asks to commit (`true`) or abort the open transaction. Its end comes
    /// out as [`ProducerOutput::TxnEnded`]. A commit waits for every record
    /// sent in the transaction; an abort drops those not yet sent (they fail).
    pub fn end_transaction(&mut self, now_ms: u64, commit: bool) {
        let now_ms = self.advance_clock(now_ms);
        let txn = self.transactions.as_mut().expect("a transactional producer");
        let Phase::Open { abortable } = &txn.phase else { panic!("end_transaction without an open transaction") };
        txn.phase = Phase::Ending { commit, abortable: abortable.clone() };
        if !commit {
            self.drop_unsent("the transaction was aborted");
        }
        self.drive(now_ms);
    }

    /// `Some(why)` when a record may not be sent now: a transactional
    /// producer sends only inside an open transaction.
    pub(super) fn refuses_send(&self) -> Option<String> {
        let txn = self.transactions.as_ref()?;
        match &txn.phase {
            Phase::Open { .. } => None,
            Phase::Fatal(why) => Some(format!("the producer is fenced: {why}")),
            other => Some(format!("no transaction open ({other:?})")),
        }
    }

    /// Whether the transactional side has a request to send.
    pub(super) fn txn_wants_request(&self) -> bool {
        let Some(txn) = &self.transactions else { return false };
        match &txn.phase {
            Phase::Initializing => true,
            Phase::Open { abortable } => {
                !self.partitions_to_add().is_empty() || (abortable.is_none() && txn.offsets_pending())
            }
            Phase::Ending { commit, abortable } => {
                !self.partitions_to_add().is_empty()
                    || (*commit && abortable.is_none() && txn.offsets_pending())
                    || self.ready_to_end()
            }
            Phase::Ready | Phase::Fatal(_) => false,
        }
    }

    /// Partitions with batches of the transaction that the coordinator
    /// has not added yet (nor is adding).
    fn partitions_to_add(&self) -> Vec<TopicPartition> {
        let Some(txn) = &self.transactions else { return Vec::new() };
        self.batches
            .iter()
            .filter(|(tp, deque)| !deque.is_empty() && !txn.added.contains(tp) && !txn.adding.contains(tp))
            .map(|(tp, _)| *tp)
            .collect()
    }

    /// An ending transaction whose every batch is answered may send EndTxn.
    fn ready_to_end(&self) -> bool {
        let Some(txn) = &self.transactions else { return false };
        // A commit waits for the offsets; an abort (or a commit that will be
        // refused as abortable) does not.
        let offsets_wait =
            matches!(&txn.phase, Phase::Ending { commit: true, abortable: None }) && txn.offsets_pending();
        matches!(txn.phase, Phase::Ending { .. })
            && self.unplaced.is_empty()
            && self.batches.values().all(VecDeque::is_empty)
            && !self.produce_in_flight()
            && txn.adding.is_empty()
            && !offsets_wait
    }

    /// Sends the next transactional request, if one is due.
    pub(super) fn drive_transactions(&mut self, now_ms: u64) {
        let Some(txn) = &self.transactions else { return };
        if txn.request_in_flight || now_ms < txn.retry_at_ms || !self.txn_wants_request() {
            return;
        }
        let (id, timeout_ms, phase, attempts) = (txn.id.clone(), txn.timeout_ms, txn.phase.clone(), txn.attempts);
        let Some(coordinator) = txn.coordinator else {
            let broker = self.metadata.broker_at(attempts);
            let request = Request::FindTxnCoordinator { transactional_id: id };
            return self.send_txn(now_ms, broker, request, TxnCall::FindCoordinator);
        };
        let current = self.idempotence.as_ref().and_then(|i| i.id);
        match phase {
            Phase::Initializing => {
                let request = TxnRequest::InitProducerId { transactional_id: id, timeout_ms, current: None };
                self.send_txn(now_ms, coordinator, Request::Txn(request), TxnCall::Init);
            }
            Phase::Open { .. } | Phase::Ending { .. }
                if self.partitions_to_add().is_empty() && self.offsets_request_due() =>
            {
                let (producer_id, epoch) = current.expect("a producer id once ready");
                self.send_offsets_request(now_ms, id, coordinator, producer_id, epoch);
            }
            Phase::Open { .. } | Phase::Ending { .. } if !self.partitions_to_add().is_empty() => {
                let partitions = self.partitions_to_add();
                let (producer_id, epoch) = current.expect("a producer id once ready");
                let txn = self.transactions.as_mut().expect("checked");
                txn.adding.extend(partitions.iter().copied());
                let request = TxnRequest::AddPartitions {
                    transactional_id: id,
                    producer_id,
                    epoch,
                    partitions: partitions.clone(),
                };
                self.send_txn(now_ms, coordinator, Request::Txn(request), TxnCall::AddPartitions(partitions));
            }
            Phase::Ending { commit, abortable } => {
                let txn = self.transactions.as_mut().expect("checked");
                if commit && abortable.is_some() {
                    // Kafka's commitTransaction throws the abortable error:
                    // the application must abort.
                    let reason = abortable.clone().expect("checked");
                    txn.phase = Phase::Open { abortable };
                    let outcome = TxnOutcome::CommitRefused { reason };
                    self.outputs.push_back(ProducerOutput::TxnEnded { commit, outcome });
                } else if txn.added.is_empty() && !txn.offsets_added() && !txn.end_sent {
                    // Nothing reached the coordinator: the transaction ends here.
                    txn.ended();
                    let outcome = if commit { TxnOutcome::Committed } else { aborted("nothing was written") };
                    self.outputs.push_back(ProducerOutput::TxnEnded { commit, outcome });
                } else {
                    txn.end_sent = true;
                    let (producer_id, epoch) = current.expect("a producer id once ready");
                    let request = TxnRequest::EndTxn { transactional_id: id, producer_id, epoch, commit };
                    self.send_txn(now_ms, coordinator, Request::Txn(request), TxnCall::End { commit });
                }
            }
            Phase::Open { .. } | Phase::Ready | Phase::Fatal(_) => {}
        }
    }

    /// Whether the open transaction's offsets have a request to make now
    /// (not once the transaction is abortable: they could never commit).
    fn offsets_request_due(&self) -> bool {
        let Some(txn) = &self.transactions else { return false };
        let live = match &txn.phase {
            Phase::Open { abortable } => abortable.is_none(),
            Phase::Ending { commit, abortable } => *commit && abortable.is_none(),
            _ => false,
        };
        live && txn.offsets_pending()
    }

    /// The next request of the transaction's offsets: AddOffsetsToTxn, the
    /// group coordinator's lookup, or TxnOffsetCommit.
    fn send_offsets_request(
        &mut self,
        now_ms: u64,
        transactional_id: crate::txn::TransactionalId,
        coordinator: BrokerId,
        producer_id: crate::types::ProducerId,
        epoch: crate::types::ProducerEpoch,
    ) {
        let txn = self.transactions.as_ref().expect("checked");
        let sent = txn.offsets.clone().expect("checked");
        match (sent.step, txn.group_coordinator) {
            (OffsetsStep::AddToTxn, _) => {
                let request = TxnRequest::AddOffsets { transactional_id, producer_id, epoch, group: sent.group };
                self.send_txn(now_ms, coordinator, Request::Txn(request), TxnCall::AddOffsets);
            }
            (OffsetsStep::Commit, None) => {
                let broker = self.metadata.broker_at(txn.attempts);
                let request = Request::FindCoordinator { group: sent.group };
                self.send_txn(now_ms, broker, request, TxnCall::FindGroupCoordinator);
            }
            (OffsetsStep::Commit, Some(group_coordinator)) => {
                let request = GroupRequest::TxnOffsetCommit(TxnOffsetCommit {
                    group: sent.group,
                    transactional_id,
                    producer_id,
                    epoch,
                    generation: sent.generation,
                    member: sent.member,
                    instance: sent.instance,
                    offsets: sent.offsets,
                });
                self.send_txn(now_ms, group_coordinator, Request::Group(request), TxnCall::CommitOffsets);
            }
            (OffsetsStep::Done, _) => unreachable!("offsets_request_due checked"),
        }
    }

    fn send_txn(&mut self, now_ms: u64, broker: BrokerId, request: Request, call: TxnCall) {
        let txn = self.transactions.as_mut().expect("transactional");
        txn.request_in_flight = true;
        txn.attempts += 1;
        self.send_request(now_ms, broker, request, Pending::Txn(call));
    }

    /// The answer to a transactional request (`None`: it was lost).
    pub(super) fn on_txn_answer(&mut self, now_ms: u64, call: TxnCall, response: Option<Response>) {
        let backoff = self.backoff_ms();
        let txn = self.transactions.as_mut().expect("transactional");
        txn.request_in_flight = false;
        if let TxnCall::AddPartitions(partitions) = &call {
            for tp in partitions {
                txn.adding.remove(tp);
            }
        }
        let error = match (&call, response) {
            (_, None) => Some(ErrorCode::NetworkException),
            (TxnCall::FindCoordinator, Some(Response::FindCoordinator { error, coordinator })) => {
                txn.coordinator = coordinator;
                error.or(coordinator.is_none().then_some(ErrorCode::CoordinatorNotAvailable))
            }
            (TxnCall::Init, Some(Response::Txn(TxnResponse::InitProducerId(result)))) => match result {
                Ok((producer_id, epoch)) => {
                    txn.ended();
                    self.idempotence.as_mut().expect("transactional is idempotent").adopt(producer_id, epoch);
                    self.outputs.push_back(ProducerOutput::TxnReady { producer_id, epoch });
                    None
                }
                Err(e) => Some(e),
            },
            (TxnCall::AddPartitions(partitions), Some(Response::Txn(TxnResponse::AddPartitions(result)))) => {
                match result {
                    Ok(()) => {
                        txn.added.extend(partitions.iter().copied());
                        None
                    }
                    Err(e) => Some(e),
                }
            }
            (TxnCall::AddOffsets, Some(Response::Txn(TxnResponse::AddOffsets(result)))) => match result {
                Ok(()) => {
                    if let Some(o) = &mut txn.offsets {
                        o.step = OffsetsStep::Commit;
                    }
                    None
                }
                Err(e) => Some(e),
            },
            (TxnCall::FindGroupCoordinator, Some(Response::FindCoordinator { error, coordinator })) => {
                txn.group_coordinator = coordinator;
                error.or(coordinator.is_none().then_some(ErrorCode::CoordinatorNotAvailable))
            }
            (TxnCall::CommitOffsets, Some(Response::Group(GroupResponse::TxnOffsetCommit { partitions }))) => {
                match partitions.iter().find_map(|(_, e)| *e) {
                    None => {
                        if let Some(o) = &mut txn.offsets {
                            o.step = OffsetsStep::Done;
                        }
                        None
                    }
                    Some(e) => Some(e),
                }
            }
            (TxnCall::End { commit }, Some(Response::Txn(TxnResponse::EndTxn(result)))) => match result {
                Ok(next_epoch) => {
                    let commit = *commit;
                    txn.ended();
                    let idem = self.idempotence.as_mut().expect("transactional is idempotent");
                    let (producer_id, epoch) = idem.id.expect("a producer id");
                    // KIP-890 part 2: the next transaction writes in the bumped
                    // epoch, its sequences from 0. A coordinator that does not
                    // bump (before KIP-890) leaves the sequences running on.
                    if next_epoch != epoch {
                        idem.adopt(producer_id, next_epoch);
                    }
                    let outcome = if commit { TxnOutcome::Committed } else { aborted("aborted as asked") };
                    self.outputs.push_back(ProducerOutput::TxnEnded { commit, outcome });
                    None
                }
                Err(e) => Some(e),
            },
            (call, Some(response)) => panic!("transactional {call:?} answered with {:?}", response.kind()),
        };
        if let Some(error) = error {
            self.txn_failed(now_ms, call, error, backoff);
        }
    }

    fn txn_failed(&mut self, now_ms: u64, call: TxnCall, error: ErrorCode, backoff: u64) {
        let failure = crate::client::transactional::Transactions::classify(error);
        let txn = self.transactions.as_mut().expect("transactional");
        let group_call = matches!(call, TxnCall::FindGroupCoordinator | TxnCall::CommitOffsets);
        match failure {
            // The group's coordinator moved: find it again.
            Failure::FindCoordinator if group_call => {
                txn.group_coordinator = None;
                txn.retry_at_ms = now_ms + backoff;
            }
            Failure::FindCoordinator => {
                txn.coordinator = None;
                txn.retry_at_ms = now_ms + backoff;
            }
            // A TxnOffsetCommit timed out at the coordinator's append.
            Failure::Retry if matches!(call, TxnCall::CommitOffsets) && error == ErrorCode::RequestTimedOut => {
                txn.group_coordinator = None;
                txn.retry_at_ms = now_ms + backoff;
            }
            Failure::Retry => txn.retry_at_ms = now_ms + backoff,
            Failure::Abortable => match call {
                // A refused AddPartitions or EndTxn ends the transaction's
                // hopes of committing; a refused InitProducerId is retried.
                TxnCall::AddPartitions(_) => {
                    txn.make_abortable(error.name());
                    txn.retry_at_ms = now_ms + backoff;
                    // Its batches can never be written: they fail.
                    let stuck: Vec<TopicPartition> = self.partitions_to_add();
                    self.drop_batches_of(&stuck, "the partition could not be added to the transaction");
                }
                TxnCall::End { commit } => self.end_unknown(commit, error.name()),
                // Offsets refused (the member was fenced: KIP-447) cannot
                // commit with the transaction: it can only be aborted.
                TxnCall::AddOffsets | TxnCall::CommitOffsets => {
                    txn.make_abortable(error.name());
                    txn.retry_at_ms = now_ms + backoff;
                }
                TxnCall::Init | TxnCall::FindCoordinator | TxnCall::FindGroupCoordinator => {
                    txn.retry_at_ms = now_ms + backoff
                }
            },
            Failure::Fatal => {
                let commit = match (&call, &txn.phase) {
                    (TxnCall::End { commit }, _) | (_, Phase::Ending { commit, .. }) => Some(*commit),
                    _ => None,
                };
                txn.phase = Phase::Fatal(error.name().to_string());
                self.drop_unsent("the producer was fenced");
                if let Some(commit) = commit {
                    let outcome = TxnOutcome::Unknown { reason: format!("fenced while ending ({})", error.name()) };
                    self.outputs.push_back(ProducerOutput::TxnEnded { commit, outcome });
                }
            }
        }
    }

    /// EndTxn was refused for a reason that says nothing of the outcome.
    fn end_unknown(&mut self, commit: bool, why: &str) {
        let txn = self.transactions.as_mut().expect("transactional");
        txn.ended();
        let outcome = TxnOutcome::Unknown { reason: why.to_string() };
        self.outputs.push_back(ProducerOutput::TxnEnded { commit, outcome });
    }

    /// Fails every queued batch not yet sent (an aborted or fenced
    /// transaction); one sent before waits for nothing more either: its
    /// outcome is unknown.
    fn drop_unsent(&mut self, why: &str) {
        // Records still waiting for their topic's metadata belong to this
        // transaction too: left queued, they would be placed into the next
        // one's batches (seen in random-nemesis seed 419).
        let unplaced: Vec<_> = std::mem::take(&mut self.unplaced).into_values().flatten().collect();
        for u in unplaced {
            self.complete(u.id, SendOutcome::Fail { error: why.to_string() });
        }
        let all: Vec<TopicPartition> = self.batches.keys().copied().collect();
        self.drop_batches_of(&all, why);
    }

    fn drop_batches_of(&mut self, partitions: &[TopicPartition], why: &str) {
        for tp in partitions {
            let Some(deque) = self.batches.get_mut(tp) else { continue };
            let dropped: Vec<Batch> = deque.drain(..).collect();
            for batch in dropped {
                self.give_up(batch, why);
            }
        }
        self.deadline_floor_stale = true;
    }
}

fn aborted(reason: &str) -> TxnOutcome {
    TxnOutcome::Aborted { reason: reason.to_string() }
}
