//! The transaction coordinator: the transactional ids of the
//! `__transaction_state` partitions this broker leads, each a small state
//! machine whose every transition is a record written before it counts.
//!
//! One transition per id is in flight at a time (a write, or the markers of
//! an ending transaction); a request that finds one in flight is answered
//! CONCURRENT_TRANSACTIONS, which clients retry. Answers leave through
//! [`TxnCoordinator::poll_output`], every request answered exactly once.

use super::api::{TxnRequest, TxnResponse};
use super::records::{TxnMetadata, MAX_TXN_PARTITIONS};
use super::{partition_for, TransactionalId, TxnState};
use crate::group::GroupId;
use crate::protocol::ErrorCode;
use crate::types::{LeaderEpoch, ProducerEpoch, ProducerId, Record, StoredRecord, TopicId, TopicPartition};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The coordinator's settings (Kafka's `transaction.*` broker configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions` (Kafka: 50).
    pub state_partitions: u32,
    /// `transaction.max.timeout.ms` (Kafka: 900,000): a producer asking for
    /// a longer transaction timeout is refused.
    pub max_timeout_ms: u64,
    /// `__consumer_offsets`: its topic id and partition count, for
    /// AddOffsetsToTxn (`None`: offsets cannot join transactions).
    pub offsets_topic: Option<(TopicId, u32)>,
    /// Most transactional ids one coordinator holds (ksim's bound).
    pub max_transactional_ids: usize,
    /// KIP-890 part 2: every ending bumps the producer epoch. Off only under
    /// the planted bug `no-epoch-bump-per-txn` (KAFKA-17754).
    pub bump_epoch_per_txn: bool,
    /// Planted bug `prepared-commit-aborted-on-failover`: markers resent at
    /// load for a PrepareCommit transaction say ABORT.
    pub abort_prepared_commits_at_load: bool,
    /// Planted bug `init-forgets-open-txn`: InitProducerId drops an open
    /// transaction instead of aborting it.
    pub forget_open_txn_at_init: bool,
    /// Planted bug `txn-timeout-never-aborts`: a transaction open past its
    /// timeout is never aborted.
    pub leave_timed_out_txns_open: bool,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_partitions: 50,
            max_timeout_ms: 900_000,
            offsets_topic: None,
            max_transactional_ids: 100_000,
            bump_epoch_per_txn: true,
            abort_prepared_commits_at_load: false,
            forget_open_txn_at_init: false,
            leave_timed_out_txns_open: false,
        }
    }
}

/// Names one write the coordinator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnWriteId(pub u64);

/// Names one round of markers the coordinator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkerId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutput<R> {
    Reply {
        to: R,
        response: TxnResponse,
    },
    /// Append `records` to partition `partition` of `__transaction_state`
    /// with acks=all, then call [`TxnCoordinator::write_done`] with `id`.
    Write {
        id: TxnWriteId,
        partition: u32,
        records: Vec<Record>,
    },
    /// Write a COMMIT (or ABORT) marker of `producer_id` at `epoch` into
    /// every one of `partitions` (WriteTxnMarkers to their leaders), trying
    /// until each is in, then call [`TxnCoordinator::markers_done`]. Stop
    /// when the coordinator unloads the id's partition (`markers_done` is
    /// then ignored). `coordinator_epoch` lets leaders refuse a deposed
    /// coordinator's markers.
    Markers {
        id: MarkerId,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        commit: bool,
        coordinator_epoch: LeaderEpoch,
        partitions: Vec<TopicPartition>,
    },
}

/// What happens once a write commits.
#[derive(Clone, Debug)]
enum After<R> {
    /// Answer the request that asked for it.
    Reply(R, TxnResponse),
    /// A Prepare record is in: answer the EndTxn (if one asked) and send the markers.
    SendMarkers(Option<(R, TxnResponse)>),
    /// A Complete record is in: nothing more.
    Complete,
}

#[derive(Clone, Debug)]
enum Pending<R> {
    Write {
        id: TxnWriteId,
        next: TxnMetadata,
        after: After<R>,
    },
    Markers {
        id: MarkerId,
    },
    /// The Complete write failed: it is written again at the entry's `retry_at_ms`.
    CompleteDue,
}

#[derive(Clone, Debug)]
struct Entry<R> {
    meta: TxnMetadata,
    pending: Option<Pending<R>>,
    /// False for a new id whose first record is not yet written: a failed
    /// write forgets it again.
    persisted: bool,
    /// After a failed write, the coordinator's own retries (a Complete
    /// record, a timed-out transaction's abort) wait until this.
    retry_at_ms: u64,
}

pub struct TxnCoordinator<R> {
    config: TxnConfig,
    /// The `__transaction_state` partitions led, with the leader epoch each
    /// is led in (the coordinator epoch markers carry).
    owned: BTreeMap<u32, LeaderEpoch>,
    ids: BTreeMap<TransactionalId, Entry<R>>,
    writes: BTreeMap<TxnWriteId, TransactionalId>,
    markers: BTreeMap<MarkerId, TransactionalId>,
    next_id: u64,
    outputs: VecDeque<TxnOutput<R>>,
}

/// Pause before a failed Complete write is tried again (its partition may
/// be short of in-sync replicas, or moving).
const COMPLETE_RETRY_MS: u64 = 100;

/// The epoch after `epoch`. At the top of the range it stays (ksim's runs
/// end long before a producer id runs 32,766 transactions).
fn bumped(epoch: ProducerEpoch) -> ProducerEpoch {
    ProducerEpoch(epoch.0.saturating_add(1).min(i16::MAX - 1))
}

impl<R: Clone> TxnCoordinator<R> {
    pub fn new(config: TxnConfig) -> TxnCoordinator<R> {
        assert!(config.state_partitions > 0 && config.max_timeout_ms > 0 && config.max_transactional_ids > 0);
        TxnCoordinator {
            config,
            owned: BTreeMap::new(),
            ids: BTreeMap::new(),
            writes: BTreeMap::new(),
            markers: BTreeMap::new(),
            next_id: 0,
            outputs: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    pub fn partition_for(&self, id: &TransactionalId) -> u32 {
        partition_for(id, self.config.state_partitions)
    }

    pub fn owns(&self, partition: u32) -> bool {
        self.owned.contains_key(&partition)
    }

    pub fn poll_output(&mut self) -> Option<TxnOutput<R>> {
        self.outputs.pop_front()
    }

    /// Whether marker round `id` is still wanted (its id not unloaded).
    pub fn marker_round_live(&self, id: MarkerId) -> bool {
        self.markers.contains_key(&id)
    }

    /// An id's committed state, for tests and observers.
    pub fn metadata(&self, id: &TransactionalId) -> Option<&TxnMetadata> {
        self.ids.get(id).map(|e| &e.meta)
    }

    /// This broker now leads `partition` of `__transaction_state` in
    /// `coordinator_epoch`: the ids are rebuilt from its records (the last
    /// of each id wins), and transactions caught between their Prepare and
    /// Complete records get their markers sent again. Returns how many
    /// records did not decode (skipped).
    pub fn load(&mut self, partition: u32, coordinator_epoch: LeaderEpoch, records: &[StoredRecord]) -> u64 {
        self.unload(partition);
        self.owned.insert(partition, coordinator_epoch);
        let mut latest: BTreeMap<TransactionalId, TxnMetadata> = BTreeMap::new();
        let mut bad = 0;
        for record in records {
            match TxnMetadata::decode(record) {
                Ok((id, meta)) if self.partition_for(&id) == partition => {
                    latest.insert(id, meta);
                }
                _ => bad += 1,
            }
        }
        for (id, mut meta) in latest {
            if self.config.abort_prepared_commits_at_load && meta.state == TxnState::PrepareCommit {
                meta.state = TxnState::PrepareAbort;
            }
            let prepared = meta.state.is_prepared();
            self.ids.insert(id.clone(), Entry { meta, pending: None, persisted: true, retry_at_ms: 0 });
            if prepared {
                self.send_markers(&id);
            }
        }
        bad
    }

    /// This broker no longer leads `partition`: its ids are dropped, and
    /// requests waiting on a write are answered NOT_COORDINATOR.
    pub fn unload(&mut self, partition: u32) {
        if self.owned.remove(&partition).is_none() {
            return;
        }
        let gone: Vec<TransactionalId> =
            self.ids.keys().filter(|id| self.partition_for(id) == partition).cloned().collect();
        for id in gone {
            let entry = self.ids.remove(&id).expect("listed");
            if let Some(Pending::Write { after, .. }) = entry.pending {
                match after {
                    After::Reply(to, response) | After::SendMarkers(Some((to, response))) => {
                        let response = TxnResponse::error_for_response(&response, ErrorCode::NotCoordinator);
                        self.outputs.push_back(TxnOutput::Reply { to, response });
                    }
                    After::SendMarkers(None) | After::Complete => {}
                }
            }
        }
        self.writes.retain(|_, id| self.ids.contains_key(id));
        self.markers.retain(|_, id| self.ids.contains_key(id));
    }

    /// Handles one request; its answer comes out of `poll_output`, now or
    /// once a write commits. `new_producer_id` hands out a fresh producer id
    /// (from the broker's block), `None` when it has none left.
    pub fn handle_request(
        &mut self,
        now_ms: u64,
        reply: R,
        request: TxnRequest,
        new_producer_id: &mut dyn FnMut() -> Option<ProducerId>,
    ) {
        let id = request.transactional_id().clone();
        if !self.owns(self.partition_for(&id)) {
            let response = TxnResponse::error_for(&request, ErrorCode::NotCoordinator);
            self.reply(reply, response);
            return;
        }
        let result = match request {
            TxnRequest::InitProducerId { timeout_ms, current, .. } => {
                self.init_producer_id(now_ms, &id, reply.clone(), timeout_ms, current, new_producer_id)
            }
            TxnRequest::AddPartitions { producer_id, epoch, partitions, .. } => {
                let answer = TxnResponse::AddPartitions(Ok(()));
                self.add_partitions(now_ms, &id, reply.clone(), producer_id, epoch, partitions, answer)
            }
            TxnRequest::AddOffsets { producer_id, epoch, group, .. } => match self.offsets_partition(&group) {
                Some(tp) => {
                    let answer = TxnResponse::AddOffsets(Ok(()));
                    self.add_partitions(now_ms, &id, reply.clone(), producer_id, epoch, vec![tp], answer)
                }
                None => Err(TxnResponse::AddOffsets(Err(ErrorCode::InvalidRequest))),
            },
            TxnRequest::Verify { producer_id, epoch, tp, .. } => {
                Err(TxnResponse::Verify(self.verify(&id, producer_id, epoch, tp)))
            }
            TxnRequest::EndTxn { producer_id, epoch, commit, .. } => {
                self.end_txn(now_ms, &id, reply.clone(), producer_id, epoch, commit)
            }
        };
        // `Err` carries an answer to give at once (an error, or a read-only answer).
        if let Err(response) = result {
            self.reply(reply, response);
        }
    }

    /// The write `id` asked for committed (`Ok`) or failed.
    pub fn write_done(&mut self, now_ms: u64, write: TxnWriteId, result: Result<(), ErrorCode>) {
        let Some(id) = self.writes.remove(&write) else { return };
        let entry = self.ids.get_mut(&id).expect("writes of dropped ids are forgotten");
        let Some(Pending::Write { id: pending, next, after }) = entry.pending.take() else {
            unreachable!("a write in flight is the id's pending transition")
        };
        assert_eq!(pending, write);
        match result {
            Ok(()) => {
                entry.meta = next;
                entry.persisted = true;
                match after {
                    After::Reply(to, response) => self.reply(to, response),
                    After::SendMarkers(answer) => {
                        if let Some((to, response)) = answer {
                            self.reply(to, response);
                        }
                        self.send_markers(&id);
                    }
                    After::Complete => {}
                }
            }
            Err(error) => {
                // Nothing changed; Kafka answers a failed log write so.
                let error = match error {
                    ErrorCode::NotLeaderOrFollower | ErrorCode::NotCoordinator => ErrorCode::NotCoordinator,
                    _ => ErrorCode::CoordinatorNotAvailable,
                };
                // The coordinator's own retries (a timed-out transaction's
                // abort) wait a while: the partition may stay short of replicas.
                entry.retry_at_ms = now_ms + COMPLETE_RETRY_MS;
                match after {
                    After::Reply(to, response) | After::SendMarkers(Some((to, response))) => {
                        let response = TxnResponse::error_for_response(&response, error);
                        self.reply(to, response);
                    }
                    After::SendMarkers(None) => {}
                    // The decision stands; only its completion is to be written again.
                    After::Complete => entry.pending = Some(Pending::CompleteDue),
                }
                if !self.ids[&id].persisted {
                    self.ids.remove(&id);
                }
            }
        }
    }

    /// Every marker of round `id` is in: the transaction is complete.
    pub fn markers_done(&mut self, now_ms: u64, markers: MarkerId) {
        let Some(id) = self.markers.remove(&markers) else { return };
        let entry = self.ids.get_mut(&id).expect("markers of dropped ids are forgotten");
        assert!(matches!(entry.pending, Some(Pending::Markers { id }) if id == markers));
        entry.pending = None;
        self.write_complete(now_ms, &id);
    }

    /// The earliest transaction timeout, or a Complete write to retry.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.ids.values().filter_map(|e| self.due_ms(e)).min()
    }

    /// When the coordinator acts on `e` by itself: a failed Complete write
    /// is written again, an open transaction is aborted at its timeout.
    fn due_ms(&self, e: &Entry<R>) -> Option<u64> {
        match (&e.pending, e.meta.state) {
            (Some(Pending::CompleteDue), _) => Some(e.retry_at_ms),
            // Planted bug `txn-timeout-never-aborts`: no abort is ever due.
            (None, TxnState::Ongoing) if !self.config.leave_timed_out_txns_open => {
                Some(e.meta.start_ms.saturating_add(e.meta.timeout_ms).max(e.retry_at_ms))
            }
            _ => None,
        }
    }

    /// Aborts transactions open longer than their timeout, bumping the
    /// epoch so the producer is fenced (Kafka's abort of timed-out
    /// transactions), and retries failed Complete writes.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let due: Vec<TransactionalId> = self
            .ids
            .iter()
            .filter(|(_, e)| self.due_ms(e).is_some_and(|at| at <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let entry = &self.ids[&id];
            if matches!(entry.pending, Some(Pending::CompleteDue)) {
                self.ids.get_mut(&id).expect("listed").pending = None;
                self.write_complete(now_ms, &id);
            } else {
                // `last_epoch` -1: the producer's own EndTxn is not a retry of this one.
                let next = TxnMetadata {
                    state: TxnState::PrepareAbort,
                    epoch: bumped(entry.meta.epoch),
                    last_epoch: ProducerEpoch(-1),
                    ..entry.meta.clone()
                };
                self.write(now_ms, &id, next, After::SendMarkers(None));
            }
        }
    }

    // ---- requests -------------------------------------------------------

    fn init_producer_id(
        &mut self,
        now_ms: u64,
        id: &TransactionalId,
        reply: R,
        timeout_ms: u64,
        current: Option<(ProducerId, ProducerEpoch)>,
        new_producer_id: &mut dyn FnMut() -> Option<ProducerId>,
    ) -> Result<(), TxnResponse> {
        let refuse = |e| Err(TxnResponse::InitProducerId(Err(e)));
        if timeout_ms == 0 || timeout_ms > self.config.max_timeout_ms {
            return refuse(ErrorCode::InvalidTransactionTimeout);
        }
        let Some(entry) = self.ids.get(id) else {
            if self.ids.len() >= self.config.max_transactional_ids {
                return refuse(ErrorCode::CoordinatorNotAvailable);
            }
            let Some(producer_id) = new_producer_id() else { return refuse(ErrorCode::CoordinatorLoadInProgress) };
            let meta = TxnMetadata {
                producer_id,
                epoch: ProducerEpoch(0),
                last_epoch: ProducerEpoch(-1),
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: now_ms,
            };
            self.ids.insert(id.clone(), Entry { meta: meta.clone(), pending: None, persisted: false, retry_at_ms: 0 });
            let answer = TxnResponse::InitProducerId(Ok((producer_id, ProducerEpoch(0))));
            self.write(now_ms, id, meta, After::Reply(reply, answer));
            return Ok(());
        };
        if entry.pending.is_some() || entry.meta.state.is_prepared() {
            return refuse(ErrorCode::ConcurrentTransactions);
        }
        let meta = &entry.meta;
        if let Some((pid, epoch)) = current {
            if pid != meta.producer_id || (epoch != meta.epoch && epoch != meta.last_epoch) {
                return refuse(ErrorCode::ProducerFenced);
            }
        }
        if meta.state == TxnState::Ongoing && !self.config.forget_open_txn_at_init {
            // Fence the old incarnation: abort its transaction in a newer
            // epoch; the new one retries until that is done.
            let next = TxnMetadata {
                state: TxnState::PrepareAbort,
                epoch: bumped(meta.epoch),
                last_epoch: ProducerEpoch(-1),
                ..meta.clone()
            };
            self.write(now_ms, id, next, After::SendMarkers(None));
            return refuse(ErrorCode::ConcurrentTransactions);
        }
        let (producer_id, epoch) = if meta.epoch.0 >= i16::MAX - 2 {
            match new_producer_id() {
                Some(fresh) => (fresh, ProducerEpoch(0)),
                None => return refuse(ErrorCode::CoordinatorLoadInProgress),
            }
        } else {
            (meta.producer_id, bumped(meta.epoch))
        };
        let next = TxnMetadata {
            producer_id,
            epoch,
            last_epoch: ProducerEpoch(-1),
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: now_ms,
        };
        let answer = TxnResponse::InitProducerId(Ok((producer_id, epoch)));
        self.write(now_ms, id, next, After::Reply(reply, answer));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_partitions(
        &mut self,
        now_ms: u64,
        id: &TransactionalId,
        reply: R,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: Vec<TopicPartition>,
        answer: TxnResponse,
    ) -> Result<(), TxnResponse> {
        let refuse = |e| Err(TxnResponse::error_for_response(&answer, e));
        let Some(entry) = self.ids.get(id) else { return refuse(ErrorCode::InvalidProducerIdMapping) };
        if entry.pending.is_some() {
            return refuse(ErrorCode::ConcurrentTransactions);
        }
        let meta = &entry.meta;
        if let Err(e) = check_producer(meta, producer_id, epoch) {
            return refuse(e);
        }
        if meta.state.is_prepared() {
            return refuse(ErrorCode::ConcurrentTransactions);
        }
        let ongoing = meta.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|tp| meta.partitions.contains(tp)) {
            return Err(answer);
        }
        let mut all = if ongoing { meta.partitions.clone() } else { BTreeSet::new() };
        all.extend(partitions);
        if all.len() > MAX_TXN_PARTITIONS {
            return refuse(ErrorCode::InvalidRequest);
        }
        let start_ms = if ongoing { meta.start_ms } else { now_ms };
        let next = TxnMetadata { state: TxnState::Ongoing, partitions: all, start_ms, ..meta.clone() };
        self.write(now_ms, id, next, After::Reply(reply, answer));
        Ok(())
    }

    fn verify(
        &self,
        id: &TransactionalId,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        tp: TopicPartition,
    ) -> Result<(), ErrorCode> {
        let entry = self.ids.get(id).ok_or(ErrorCode::InvalidProducerIdMapping)?;
        check_producer(&entry.meta, producer_id, epoch)?;
        if entry.meta.state == TxnState::Ongoing && entry.meta.partitions.contains(&tp) {
            Ok(())
        } else {
            Err(ErrorCode::InvalidTxnState)
        }
    }

    fn end_txn(
        &mut self,
        now_ms: u64,
        id: &TransactionalId,
        reply: R,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        commit: bool,
    ) -> Result<(), TxnResponse> {
        let refuse = |e| Err(TxnResponse::EndTxn(Err(e)));
        let Some(entry) = self.ids.get(id) else { return refuse(ErrorCode::InvalidProducerIdMapping) };
        let meta = &entry.meta;
        let ended = matches!(
            meta.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::CompleteCommit | TxnState::CompleteAbort
        );
        // KIP-890 part 2: a retry of the EndTxn that ended the last
        // transaction (its answer was lost) is answered as before.
        if ended && producer_id == meta.producer_id && meta.last_epoch.0 >= 0 && epoch == meta.last_epoch {
            let committed = matches!(meta.state, TxnState::PrepareCommit | TxnState::CompleteCommit);
            return Err(TxnResponse::EndTxn(if committed == commit {
                Ok(meta.epoch)
            } else {
                Err(ErrorCode::InvalidTxnState)
            }));
        }
        if entry.pending.is_some() {
            return refuse(ErrorCode::ConcurrentTransactions);
        }
        if let Err(e) = check_producer(meta, producer_id, epoch) {
            return refuse(e);
        }
        match meta.state {
            TxnState::Ongoing => {}
            TxnState::PrepareCommit | TxnState::PrepareAbort => return refuse(ErrorCode::ConcurrentTransactions),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                return refuse(ErrorCode::InvalidTxnState)
            }
        }
        let next_epoch = if self.config.bump_epoch_per_txn { bumped(meta.epoch) } else { meta.epoch };
        let state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        let next = TxnMetadata { state, epoch: next_epoch, last_epoch: meta.epoch, ..meta.clone() };
        let answer = TxnResponse::EndTxn(Ok(next_epoch));
        self.write(now_ms, id, next, After::SendMarkers(Some((reply, answer))));
        Ok(())
    }

    // ---- transitions ----------------------------------------------------

    fn write(&mut self, now_ms: u64, id: &TransactionalId, next: TxnMetadata, after: After<R>) {
        let write = TxnWriteId(self.next_id);
        self.next_id += 1;
        let partition = self.partition_for(id);
        let records = vec![next.encode(id, now_ms)];
        self.outputs.push_back(TxnOutput::Write { id: write, partition, records });
        self.writes.insert(write, id.clone());
        let entry = self.ids.get_mut(id).expect("written ids are known");
        assert!(entry.pending.is_none(), "two transitions of {id} at once");
        entry.pending = Some(Pending::Write { id: write, next, after });
    }

    /// Sends the markers of `id`'s prepared transaction. The epoch they
    /// carry is the one the Prepare record holds (bumped already under
    /// KIP-890 part 2, so they also fence the ended transaction's stragglers).
    fn send_markers(&mut self, id: &TransactionalId) {
        let coordinator_epoch = self.owned[&self.partition_for(id)];
        let entry = self.ids.get_mut(id).expect("known");
        assert!(entry.meta.state.is_prepared() && entry.pending.is_none());
        let markers = MarkerId(self.next_id);
        self.next_id += 1;
        entry.pending = Some(Pending::Markers { id: markers });
        self.markers.insert(markers, id.clone());
        self.outputs.push_back(TxnOutput::Markers {
            id: markers,
            producer_id: entry.meta.producer_id,
            epoch: entry.meta.epoch,
            commit: entry.meta.state == TxnState::PrepareCommit,
            coordinator_epoch,
            partitions: entry.meta.partitions.iter().copied().collect(),
        });
    }

    fn write_complete(&mut self, now_ms: u64, id: &TransactionalId) {
        let meta = &self.ids[id].meta;
        let state = match meta.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => unreachable!("completing a transaction in {}", other.name()),
        };
        let next = TxnMetadata { state, partitions: BTreeSet::new(), ..meta.clone() };
        self.write(now_ms, id, next, After::Complete);
    }

    fn offsets_partition(&self, group: &GroupId) -> Option<TopicPartition> {
        let (topic, partitions) = self.config.offsets_topic?;
        Some(TopicPartition::new(topic, crate::group::coordinator::partition_for(group, partitions)))
    }

    fn reply(&mut self, to: R, response: TxnResponse) {
        self.outputs.push_back(TxnOutput::Reply { to, response });
    }
}

/// Whether `producer_id` at `epoch` is the id's current producer.
fn check_producer(meta: &TxnMetadata, producer_id: ProducerId, epoch: ProducerEpoch) -> Result<(), ErrorCode> {
    if producer_id != meta.producer_id {
        Err(ErrorCode::InvalidProducerIdMapping)
    } else if epoch < meta.epoch {
        Err(ErrorCode::ProducerFenced)
    } else if epoch > meta.epoch {
        Err(ErrorCode::InvalidProducerEpoch)
    } else {
        Ok(())
    }
}
