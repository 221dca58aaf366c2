//! The producer: a sans-IO state machine in the shape of Kafka's
//! `KafkaProducer` + `RecordAccumulator` + `Sender`, idempotent or not
//! (`idempotence`; the bookkeeping is in `idempotence.rs`).
//!
//! Life of a record: `send()` queues it until the topic's metadata is known,
//! then picks its partition (explicit > key hash > keyless strategy) and
//! appends it to that partition's open batch. A batch is *ready* when it is
//! full or has lingered `linger_ms`; ready batches are drained, at most one
//! per partition per request, into one Produce request per leader broker, with
//! at most `max_in_flight_per_broker` requests in flight to a broker. A failed
//! attempt is retried as a whole batch after `retry_backoff_ms`, while retries
//! remain and the record's delivery timeout (from `send()`) has not passed.
//!
//! Every record ends in exactly one `Completed` output. The outcome is `Fail`
//! only when no attempt could have been appended; once any attempt was
//! ambiguous (request timeout, disconnect, an indefinite error code), giving
//! up yields `Info`.
//!
//! An idempotent producer first gets a producer id (InitProducerId, from any
//! broker); each batch carries it, the epoch and the batch's sequence, and a
//! partition has at most five batches in flight. A retried batch is sent
//! again only once nothing of its partition is in flight, so a partition's
//! batches reach its leader in sequence order and a retry of an appended one
//! is answered with its first offsets instead of being written twice.

use self::txn::TxnCall;
use super::idempotence::{Idempotence, MAX_IN_FLIGHT_PER_PARTITION};
use super::inflight::{InFlight, MIN_RETRY_BACKOFF_MS};
use super::metadata::ClientMetadata;
use super::partitioner::{partition_for_key, KeylessPartitioner, PartitionerKind};
use super::transactional::{Transactions, TxnOutcome};
use crate::protocol::{Acks, ErrorCode, ProduceBatch, ProducePartitionResponse, Request, Response};
use crate::txn::TransactionalId;
use crate::types::{BrokerId, Offset, ProducerStamp, Record, TopicName, TopicPartition};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Largest Produce request (and so largest record) the producer builds:
/// Kafka's `max.request.size` default.
pub const MAX_REQUEST_SIZE_BYTES: usize = 1_048_576;
/// Largest accepted `max_queued_records` (ksim's stand-in for `buffer.memory`).
pub const MAX_QUEUED_RECORDS_LIMIT: usize = 10_000_000;
/// Largest accepted `max_in_flight_per_broker`.
pub const MAX_IN_FLIGHT_PER_BROKER_LIMIT: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub linger_ms: u64,
    /// A batch is full once its records' `Record::size_bytes` reach this.
    pub batch_size_bytes: usize,
    /// Produce requests in flight per broker; 1 also keeps each partition to
    /// one batch in flight, which preserves send order across retries.
    pub max_in_flight_per_broker: usize,
    pub request_timeout_ms: u64,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    /// Upper bound from `send()` to the record's outcome (may be overrun by a
    /// response that arrives at the deadline's tick).
    pub delivery_timeout_ms: u64,
    pub metadata_max_age_ms: u64,
    pub partitioner: PartitionerKind,
    /// Records not yet completed; `send()` beyond this fails at once.
    pub max_queued_records: usize,
    /// `enable.idempotence`: batches carry a producer id, epoch and sequence,
    /// so retries are not written twice and keep their order. Needs acks=all,
    /// retries and at most 5 requests in flight, as in Kafka. Kafka's default
    /// is true; ksim's is false, so that a config written before idempotence
    /// existed keeps its meaning (scenarios say which they want).
    pub idempotence: bool,
    /// `transactional.id`: records are sent inside transactions (`begin`,
    /// `commit`, `abort`). Needs idempotence.
    pub transactional_id: Option<TransactionalId>,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction open longer.
    pub transaction_timeout_ms: u64,
}

impl Default for ProducerConfig {
    /// Kafka's defaults (`max_queued_records` is ksim's bound in place of `buffer.memory`).
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger_ms: 5,
            batch_size_bytes: 16_384,
            max_in_flight_per_broker: 5,
            request_timeout_ms: 30_000,
            retries: i32::MAX as u32,
            retry_backoff_ms: 100,
            delivery_timeout_ms: 120_000,
            metadata_max_age_ms: 300_000,
            partitioner: PartitionerKind::Sticky,
            max_queued_records: 100_000,
            idempotence: false,
            transactional_id: None,
            transaction_timeout_ms: 60_000,
        }
    }
}

impl ProducerConfig {
    fn validate(&self) {
        assert!(self.batch_size_bytes > 0, "batch_size_bytes must be positive");
        assert!(
            (1..=MAX_IN_FLIGHT_PER_BROKER_LIMIT).contains(&self.max_in_flight_per_broker),
            "max_in_flight_per_broker must be in 1..={MAX_IN_FLIGHT_PER_BROKER_LIMIT}"
        );
        assert!(
            (1..=MAX_QUEUED_RECORDS_LIMIT).contains(&self.max_queued_records),
            "max_queued_records must be in 1..={MAX_QUEUED_RECORDS_LIMIT}"
        );
        // Zero would make requests expire in the instant they are sent.
        assert!(self.request_timeout_ms > 0, "request_timeout_ms must be positive");
        assert!(self.transactional_id.is_none() || self.idempotence, "a transactional producer is idempotent");
        assert!(self.transaction_timeout_ms > 0, "transaction_timeout_ms must be positive");
        if self.idempotence {
            assert!(self.acks == Acks::All, "idempotence needs acks=all");
            assert!(self.retries > 0, "idempotence needs retries");
            assert!(
                self.max_in_flight_per_broker <= MAX_IN_FLIGHT_PER_PARTITION,
                "idempotence needs max_in_flight_per_broker <= {MAX_IN_FLIGHT_PER_PARTITION}"
            );
        }
    }
}

/// The caller's name for one `send()`; unique among records not yet completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    pub id: RecordId,
    pub topic: TopicName,
    /// Explicit partition; otherwise the key hash, otherwise the keyless strategy.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
}

/// How one record ended. See the module docs for which outcome when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged; `offset` is the batch's base offset plus the record's index.
    Ok { tp: TopicPartition, offset: Offset },
    /// Definitely not written.
    Fail { error: String },
    /// Unknown: some attempt may have been appended.
    Info { tp: Option<TopicPartition>, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerOutput {
    /// Send `request` to `broker` (connecting first if needed).
    Send { broker: BrokerId, correlation_id: u64, request: Request },
    /// A request to `broker` timed out: drop the connection so that no late
    /// response is delivered. Every request in flight on it has been failed.
    CloseConnection { broker: BrokerId },
    /// The record's final outcome; exactly one per `send()`.
    Completed { id: RecordId, outcome: SendOutcome },
    /// A transactional producer got its producer id and epoch: it may begin
    /// transactions.
    TxnReady { producer_id: crate::types::ProducerId, epoch: crate::types::ProducerEpoch },
    /// The transaction the application asked to end (`commit` says which
    /// way) ended so.
    TxnEnded { commit: bool, outcome: TxnOutcome },
}

/// A record whose partition is not chosen yet (its topic's metadata is unknown).
#[derive(Clone, Debug)]
struct Unplaced {
    id: RecordId,
    topic: TopicName,
    partition: Option<u32>,
    record: Record,
    /// `send()` time on the producer's monotonic clock (the delivery timeout's start).
    send_ms: u64,
}

#[derive(Clone, Debug)]
struct Batch {
    /// Creation order; retried batches go back in front of younger ones.
    seq: u64,
    tp: TopicPartition,
    records: Vec<(RecordId, Record)>,
    size_bytes: usize,
    created_ms: u64,
    /// Earliest record's `send()` time plus the delivery timeout.
    deadline_ms: u64,
    /// Drained at least once: no more appends.
    sealed: bool,
    retries: u32,
    /// Not ready before this (retry backoff); 0 when never failed.
    retry_at_ms: u64,
    /// Some attempt may have been appended.
    ambiguous: bool,
    last_error: Option<String>,
    /// An idempotent producer's id, epoch and sequence for it, from its
    /// first send on (kept by retries within the epoch).
    stamp: Option<ProducerStamp>,
}

#[derive(Clone, Debug)]
enum Pending {
    Metadata,
    InitProducerId,
    /// A transactional producer's FindCoordinator, InitProducerId,
    /// AddPartitions or EndTxn.
    Txn(TxnCall),
    /// `muted` lists partitions held back until this request resolves (only
    /// with `max_in_flight_per_broker == 1`); batches whose delivery timeout
    /// passed while in flight are removed from `batches` early.
    Produce {
        muted: Vec<TopicPartition>,
        batches: Vec<Batch>,
        /// Every partition the request carries a batch for (its batches may
        /// leave `batches` early, but the request stays in flight).
        partitions: Vec<TopicPartition>,
    },
}

/// Why an attempt failed, and what that means for the batch.
struct AttemptFailure {
    ambiguous: bool,
    retriable: bool,
    error: String,
}

pub struct Producer {
    config: ProducerConfig,
    rng: ChaCha8Rng,
    metadata: ClientMetadata,
    partitioner: KeylessPartitioner,
    /// Every record sent and not yet completed.
    live: RecordIdSet,
    /// Per topic, records waiting for its metadata, in send order (so also
    /// in delivery-deadline order: `send_ms` never decreases).
    unplaced: BTreeMap<TopicName, VecDeque<Unplaced>>,
    /// The accumulator: per partition, batches oldest first; only the last may be open.
    batches: BTreeMap<TopicPartition, VecDeque<Batch>>,
    in_flight: InFlight<Pending>,
    muted: BTreeSet<TopicPartition>,
    /// Per broker, the partition drained last, so that a size-limited request
    /// starts after it next time (Kafka's drain index).
    drain_cursor: BTreeMap<BrokerId, TopicPartition>,
    /// The earliest delivery deadline of any batch, queued or in flight
    /// (`u64::MAX` when there is none). Never above the true minimum; exact
    /// after every `drive` (recomputed there when `deadline_floor_stale`).
    deadline_floor_ms: u64,
    /// A batch left the producer since the floor was last computed.
    deadline_floor_stale: bool,
    /// Reused by `drain`: ready partitions with their leader.
    ready_scratch: Vec<(BrokerId, TopicPartition)>,
    next_batch_seq: u64,
    /// `Some` for an idempotent producer.
    idempotence: Option<Idempotence>,
    /// `Some` for a transactional producer.
    transactions: Option<Transactions>,
    outputs: VecDeque<ProducerOutput>,
    now_ms: u64,
    started: bool,
}

impl Producer {
    pub fn new(config: ProducerConfig, bootstrap: Vec<BrokerId>, rng_seed: u64) -> Producer {
        config.validate();
        assert!(!bootstrap.is_empty(), "a producer needs at least one bootstrap broker");
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let start = rng.gen_range(0..bootstrap.len());
        let idempotence = config.idempotence.then(Idempotence::default);
        let transactions =
            config.transactional_id.clone().map(|id| Transactions::new(id, config.transaction_timeout_ms));
        Producer {
            partitioner: KeylessPartitioner::new(config.partitioner),
            config,
            rng,
            metadata: ClientMetadata::new(bootstrap, start),
            live: RecordIdSet::default(),
            unplaced: BTreeMap::new(),
            batches: BTreeMap::new(),
            in_flight: InFlight::new(),
            muted: BTreeSet::new(),
            drain_cursor: BTreeMap::new(),
            deadline_floor_ms: u64::MAX,
            deadline_floor_stale: false,
            ready_scratch: Vec::new(),
            next_batch_seq: 0,
            idempotence,
            transactions,
            outputs: VecDeque::new(),
            now_ms: 0,
            started: false,
        }
    }

    /// The producer's cluster view.
    pub fn metadata(&self) -> &ClientMetadata {
        &self.metadata
    }

    pub fn send(&mut self, now_ms: u64, record: ProducerRecord) {
        // The record carries the wall clock as given; timers use the monotonic view.
        let wall_ms = now_ms;
        let now_ms = self.advance_clock(now_ms);
        let id = record.id;
        let queue_full = self.live.len() >= self.config.max_queued_records;
        assert!(self.live.insert(id), "record {id:?} sent while an earlier send with that id is live");
        let record_out = Record { key: record.key, value: record.value, timestamp_ms: wall_ms };
        let size = record_out.size_bytes();
        if queue_full {
            let error = format!("queue full: {} records not yet completed", self.config.max_queued_records);
            self.complete(id, SendOutcome::Fail { error });
        } else if let Some(error) = self.refuses_send() {
            self.complete(id, SendOutcome::Fail { error });
        } else if size > MAX_REQUEST_SIZE_BYTES {
            let error = format!("RECORD_TOO_LARGE: {size} bytes > {MAX_REQUEST_SIZE_BYTES}");
            self.complete(id, SendOutcome::Fail { error });
        } else if let Some(count) = self.placeable_now(now_ms, &record.topic) {
            // The common case: metadata known and nothing queued ahead, so the
            // record is placed at once, exactly as `drive` would place it.
            let u =
                Unplaced { id, topic: record.topic, partition: record.partition, record: record_out, send_ms: now_ms };
            self.place(now_ms, u, count);
        } else {
            let waiting = self.unplaced.entry(record.topic.clone()).or_default();
            debug_assert!(waiting.back().is_none_or(|u| u.send_ms <= now_ms));
            waiting.push_back(Unplaced {
                id,
                topic: record.topic,
                partition: record.partition,
                record: record_out,
                send_ms: now_ms,
            });
        }
        self.drive(now_ms);
    }

    pub fn handle_response(&mut self, now_ms: u64, broker: BrokerId, correlation_id: u64, response: Response) {
        let now_ms = self.advance_clock(now_ms);
        // Unknown ids: answers to acks=0 requests, or to requests already failed.
        match (self.in_flight.take(broker, correlation_id), response) {
            (None, _) => {}
            (Some(Pending::Metadata), Response::Metadata { brokers, topics }) => {
                self.metadata.handle_response(now_ms, brokers, topics);
            }
            (Some(Pending::InitProducerId), Response::InitProducerId { result }) => {
                self.on_init_producer_id(now_ms, result.ok());
            }
            (Some(Pending::Txn(call)), response) => self.on_txn_answer(now_ms, call, Some(response)),
            (Some(Pending::Produce { muted, batches, .. }), Response::Produce { partitions }) => {
                self.unmute(&muted);
                for batch in batches {
                    let answer = partitions.iter().find(|p| p.tp == batch.tp);
                    self.handle_batch_answer(now_ms, batch, answer);
                }
            }
            (Some(_), response) => {
                panic!("response {correlation_id} from {broker} does not answer its request: {response:?}")
            }
        }
        self.drive(now_ms);
    }

    pub fn handle_disconnect(&mut self, now_ms: u64, broker: BrokerId) {
        let now_ms = self.advance_clock(now_ms);
        self.fail_broker(now_ms, broker, "disconnected");
        self.drive(now_ms);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now_ms = self.advance_clock(now_ms);
        self.drive(now_ms);
    }

    pub fn poll_output(&mut self) -> Option<ProducerOutput> {
        self.outputs.pop_front()
    }

    /// Absolute time of the next wake-up wanted. `Some(0)` before the first
    /// input: the producer wants to start fetching metadata at once.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        if !self.started {
            return Some(0);
        }
        let now = self.now_ms;
        // Anything due at or before `now` was done by the last drive, or waits for an input.
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| {
            if t > now && next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        self.in_flight.next_deadline_ms().into_iter().for_each(&mut consider);
        if let Some(idem) = &self.idempotence {
            if idem.id.is_none() && !idem.init_in_flight && self.transactions.is_none() {
                consider(idem.init_after_ms);
            }
        }
        if let Some(txn) = &self.transactions {
            if !txn.request_in_flight && self.txn_wants_request() {
                consider(txn.retry_at_ms);
            }
        }
        self.metadata
            .refresh_due_ms(self.config.metadata_max_age_ms, self.backoff_ms())
            .into_iter()
            .for_each(&mut consider);
        self.unplaced.values().filter_map(|q| q.front()).for_each(|u| consider(self.delivery_deadline(u.send_ms)));
        // Every batch deadline: after a drive none is due, and the floor is exact.
        debug_assert_eq!(self.deadline_floor_ms, self.earliest_batch_deadline_ms());
        debug_assert!(self.deadline_floor_ms > now);
        if self.deadline_floor_ms != u64::MAX {
            consider(self.deadline_floor_ms);
        }
        for (tp, deque) in &self.batches {
            // A front batch that is ready now waits for capacity or a leader,
            // which only an input brings; one that is not ready wakes us up.
            if let Some(front) = deque.front() {
                if !self.muted.contains(tp) && self.metadata.leader(*tp).is_some() {
                    consider(self.ready_at_ms(front, deque.len()));
                }
            }
        }
        next
    }

    /// Whether outputs wait to be polled.
    pub fn has_pending_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Records sent and not yet completed.
    pub fn queued_records(&self) -> usize {
        self.live.len()
    }

    // ---- the work loop ------------------------------------------------------

    /// The producer's monotonic clock: the caller's clock may step back (a
    /// skewed node); time then stands still until it catches up, as it does
    /// for Kafka's clients, whose timeouts read the wall clock.
    fn advance_clock(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.started = true;
        self.now_ms
    }

    /// Everything that follows from the current state at `now_ms`. After it,
    /// nothing is due at or before `now_ms` that an input is not needed for.
    fn drive(&mut self, now_ms: u64) {
        while let Some(broker) = self.in_flight.expired_broker(now_ms) {
            self.outputs.push_back(ProducerOutput::CloseConnection { broker });
            self.fail_broker(now_ms, broker, "request timeout");
        }
        self.place_records(now_ms);
        self.expire(now_ms);
        self.drive_idempotence(now_ms);
        self.drive_transactions(now_ms);
        self.drain(now_ms);
        if self
            .metadata
            .refresh_due_ms(self.config.metadata_max_age_ms, self.backoff_ms())
            .is_some_and(|due| due <= now_ms)
        {
            let (broker, request) = self.metadata.start_refresh(now_ms);
            self.send_request(now_ms, broker, request, Pending::Metadata);
        }
        if self.deadline_floor_stale {
            self.deadline_floor_ms = self.earliest_batch_deadline_ms();
            self.deadline_floor_stale = false;
        }
        self.check_invariants();
    }

    /// The partition count of `topic` if a record sent now may be placed at
    /// once: nothing waits ahead of it and `drive` would do nothing before
    /// placing it (no request has expired).
    fn placeable_now(&self, now_ms: u64, topic: &str) -> Option<u32> {
        if !self.unplaced.is_empty() || self.in_flight.expired_broker(now_ms).is_some() {
            return None;
        }
        self.metadata.partition_count(topic).filter(|&n| n > 0)
    }

    /// The earliest deadline of any batch, queued or in flight, by a full scan.
    fn earliest_batch_deadline_ms(&self) -> u64 {
        let queued = self.batches.values().flatten();
        let in_flight = self.in_flight.values().flat_map(|p| match &p.payload {
            Pending::Produce { batches, .. } => batches.as_slice(),
            Pending::Metadata | Pending::InitProducerId | Pending::Txn(_) => &[],
        });
        queued.chain(in_flight).map(|b| b.deadline_ms).min().unwrap_or(u64::MAX)
    }

    fn send_request(&mut self, now_ms: u64, broker: BrokerId, request: Request, pending: Pending) -> u64 {
        let correlation_id = self.in_flight.next_id();
        self.outputs.push_back(ProducerOutput::Send { broker, correlation_id, request });
        self.in_flight.insert(correlation_id, broker, now_ms + self.config.request_timeout_ms, pending);
        correlation_id
    }

    fn backoff_ms(&self) -> u64 {
        self.config.retry_backoff_ms.max(MIN_RETRY_BACKOFF_MS)
    }

    fn delivery_deadline(&self, send_ms: u64) -> u64 {
        send_ms.saturating_add(self.config.delivery_timeout_ms)
    }

    /// Chooses partitions for queued records whose topic is known, in send order.
    fn place_records(&mut self, now_ms: u64) {
        if self.unplaced.is_empty() {
            return;
        }
        let topics: Vec<TopicName> = self.unplaced.keys().cloned().collect();
        for topic in topics {
            let Some(count) = self.metadata.partition_count(&topic).filter(|&n| n > 0) else {
                self.metadata.request_refresh();
                continue;
            };
            let waiting = self.unplaced.remove(&topic).expect("listed above");
            for u in waiting {
                self.place(now_ms, u, count);
            }
        }
    }

    fn place(&mut self, now_ms: u64, u: Unplaced, count: u32) {
        let topic_id = self.metadata.topic_id(&u.topic).expect("topic is known");
        let partition = match (u.partition, &u.record.key) {
            (Some(p), _) if p >= count => {
                let error = format!("invalid partition {p}: topic {} has {count} partitions", u.topic);
                self.complete(u.id, SendOutcome::Fail { error });
                return;
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => {
                let size = u.record.size_bytes();
                let (batches, batch_size, metadata) = (&self.batches, self.config.batch_size_bytes, &self.metadata);
                self.partitioner.choose(
                    &mut self.rng,
                    &u.topic,
                    count,
                    |out| metadata.available_partitions_into(&u.topic, out),
                    |p| needs_new_batch(batches, TopicPartition::new(topic_id, p), size, batch_size),
                )
            }
        };
        assert!(partition < count, "partition {partition} chosen beyond {count}");
        let tp = TopicPartition::new(topic_id, partition);
        debug_assert_eq!(self.metadata.topic_partition(&u.topic, partition), Some(tp));
        self.append(now_ms, tp, u.id, u.record, u.send_ms);
    }

    fn append(&mut self, now_ms: u64, tp: TopicPartition, id: RecordId, record: Record, send_ms: u64) {
        let size = record.size_bytes();
        let deadline_ms = self.delivery_deadline(send_ms);
        if needs_new_batch(&self.batches, tp, size, self.config.batch_size_bytes) {
            let seq = self.next_batch_seq;
            self.next_batch_seq += 1;
            let batch = Batch {
                seq,
                tp,
                records: Vec::new(),
                size_bytes: 0,
                created_ms: now_ms,
                deadline_ms,
                sealed: false,
                retries: 0,
                retry_at_ms: 0,
                ambiguous: false,
                last_error: None,
                stamp: None,
            };
            self.batches.entry(tp).or_default().push_back(batch);
        }
        let batch = self.batches.get_mut(&tp).and_then(|d| d.back_mut()).expect("open batch");
        assert!(!batch.sealed, "appending to a sealed batch");
        batch.size_bytes += size;
        batch.deadline_ms = batch.deadline_ms.min(deadline_ms);
        batch.records.push((id, record));
        self.deadline_floor_ms = self.deadline_floor_ms.min(deadline_ms);
    }

    /// Completes records whose delivery timeout has passed, wherever they are.
    fn expire(&mut self, now_ms: u64) {
        if !self.unplaced.is_empty() {
            self.expire_unplaced(now_ms);
        }

        // The hot path: nothing due, known from the floor without a scan.
        if self.deadline_floor_ms > now_ms {
            return;
        }
        let due = |b: &Batch| b.deadline_ms <= now_ms;
        let any_queued_due = self.batches.values().any(|d| d.iter().any(due));
        let any_in_flight_due = self.in_flight.values().any(|p| match &p.payload {
            Pending::Produce { batches, .. } => batches.iter().any(due),
            Pending::Metadata | Pending::InitProducerId | Pending::Txn(_) => false,
        });
        if !any_queued_due && !any_in_flight_due {
            return;
        }
        let mut expired: Vec<Batch> = Vec::new();
        for deque in self.batches.values_mut() {
            let (gone, kept): (Vec<Batch>, Vec<Batch>) = deque.drain(..).partition(|b| b.deadline_ms <= now_ms);
            *deque = kept.into();
            expired.extend(gone);
        }
        for pending in self.in_flight.values_mut() {
            if let Pending::Produce { batches, .. } = &mut pending.payload {
                let (gone, kept): (Vec<Batch>, Vec<Batch>) = batches.drain(..).partition(|b| b.deadline_ms <= now_ms);
                *batches = kept;
                // Its request is still out there: it may yet be appended.
                expired.extend(gone.into_iter().map(|mut b| {
                    b.ambiguous = true;
                    b.last_error.get_or_insert_with(|| "request in flight".to_string());
                    b
                }));
            }
        }
        for batch in expired {
            self.give_up(batch, "delivery timeout expired");
        }
    }

    fn expire_unplaced(&mut self, now_ms: u64) {
        let mut expired_unplaced = Vec::new();
        for waiting in self.unplaced.values_mut() {
            while waiting.front().is_some_and(|u| self.config.delivery_timeout_ms.saturating_add(u.send_ms) <= now_ms) {
                expired_unplaced.push(waiting.pop_front().expect("checked above"));
            }
        }
        self.unplaced.retain(|_, waiting| !waiting.is_empty());
        for u in expired_unplaced {
            let error = format!("delivery timeout expired before the record was sent (topic {} unknown)", u.topic);
            self.complete(u.id, SendOutcome::Fail { error });
        }
    }

    /// Sends every ready batch the in-flight limits allow.
    fn drain(&mut self, now_ms: u64) {
        let mut ready = std::mem::take(&mut self.ready_scratch);
        // Each round sends at least one batch, so rounds <= batches.
        loop {
            self.ready_partitions(now_ms, &mut ready);
            if ready.is_empty() {
                break;
            }
            // By leader, then partition (the sort is stable): one request per leader.
            ready.sort_by_key(|&(broker, _)| broker);
            for group in ready.chunk_by(|a, b| a.0 == b.0) {
                self.send_produce(now_ms, group[0].0, group);
            }
        }
        self.ready_scratch = ready;
    }

    /// Fills `ready` with the partitions whose front batch is ready and whose
    /// leader can take a request, in partition order.
    fn ready_partitions(&mut self, now_ms: u64, ready: &mut Vec<(BrokerId, TopicPartition)>) {
        ready.clear();
        if self.idempotence.as_ref().is_some_and(|i| !i.ready())
            || self.transactions.as_ref().is_some_and(|t| !t.writing())
        {
            return; // no producer id yet, an epoch bump is waiting, or no transaction open
        }
        let partition_in_flight = self.idempotence.is_some().then(|| self.batches_in_flight_per_partition());
        let mut leaderless = false;
        // Capacity per leader, counted once per round (sends come after the round).
        let mut capacities: Vec<(BrokerId, usize)> = Vec::new();
        for (&tp, deque) in &self.batches {
            let Some(front) = deque.front() else { continue };
            if self.muted.contains(&tp) || self.ready_at_ms(front, deque.len()) > now_ms {
                continue;
            }
            if self.transactions.as_ref().is_some_and(|t| !t.added.contains(&tp)) {
                continue; // waits for AddPartitionsToTxn
            }
            if let Some(counts) = &partition_in_flight {
                // A retry goes alone, after everything before it resolved, so
                // a partition's batches reach the leader in sequence order.
                let in_flight = counts.get(&tp).copied().unwrap_or(0);
                if in_flight >= MAX_IN_FLIGHT_PER_PARTITION || (front.stamp.is_some() && in_flight > 0) {
                    continue;
                }
            }
            let Some(leader) = self.metadata.leader(tp) else {
                leaderless = true;
                continue;
            };
            let capacity = match capacities.iter().find(|(b, _)| *b == leader) {
                Some(&(_, c)) => c,
                None => {
                    let c = self.capacity(leader);
                    capacities.push((leader, c));
                    c
                }
            };
            if capacity > 0 {
                ready.push((leader, tp));
            }
        }
        if leaderless {
            self.metadata.request_refresh();
        }
    }

    /// When the batch becomes ready: after its backoff if it is a retry, else
    /// when full (at once) or when its linger has passed.
    /// `deque_len` counts the batches queued for the front's partition.
    fn ready_at_ms(&self, front: &Batch, deque_len: usize) -> u64 {
        if front.sealed {
            return front.retry_at_ms;
        }
        debug_assert_eq!(deque_len, self.batches.get(&front.tp).map_or(0, VecDeque::len));
        let full = deque_len > 1 || front.size_bytes >= self.config.batch_size_bytes;
        if full {
            front.created_ms
        } else {
            front.created_ms.saturating_add(self.config.linger_ms)
        }
    }

    fn capacity(&self, broker: BrokerId) -> usize {
        if self.config.acks == Acks::None {
            return usize::MAX; // nothing stays in flight
        }
        let used = self.in_flight.count(broker, |p| matches!(p, Pending::Produce { .. }));
        assert!(used <= self.config.max_in_flight_per_broker, "in-flight limit exceeded for {broker}");
        self.config.max_in_flight_per_broker - used
    }

    /// One Produce request to `broker`: front batches of `ready` partitions,
    /// starting after the one drained last, up to the request size limit.
    fn send_produce(&mut self, now_ms: u64, broker: BrokerId, ready: &[(BrokerId, TopicPartition)]) {
        assert!(!ready.is_empty() && ready.iter().all(|&(b, _)| b == broker));
        let start = match self.drain_cursor.get(&broker) {
            Some(last) => ready.iter().position(|(_, tp)| tp > last).unwrap_or(0),
            None => 0,
        };
        let mut batches: Vec<Batch> = Vec::with_capacity(ready.len());
        let mut request_bytes = 0;
        for &(_, tp) in ready[start..].iter().chain(&ready[..start]) {
            let deque = self.batches.get_mut(&tp).expect("ready partition has batches");
            let size = deque.front().expect("ready partition has batches").size_bytes;
            if !batches.is_empty() && request_bytes + size > MAX_REQUEST_SIZE_BYTES {
                break;
            }
            // An emptied deque stays, so the next batch for `tp` reuses it.
            let mut batch = deque.pop_front().expect("checked above");
            batch.sealed = true;
            if let Some(idem) = &mut self.idempotence {
                match batch.stamp {
                    Some(stamp) => assert!(idem.current(stamp), "a batch of an older epoch was sent again"),
                    None => batch.stamp = Some(idem.stamp(tp, batch.records.len())),
                }
            }
            request_bytes += size;
            batches.push(batch);
        }
        let last_tp = batches.last().expect("at least one batch").tp;
        self.drain_cursor.insert(broker, last_tp);
        let request = Request::Produce {
            acks: self.config.acks,
            timeout_ms: self.config.request_timeout_ms,
            batches: batches
                .iter()
                .map(|b| ProduceBatch {
                    tp: b.tp,
                    records: b.records.iter().map(|(_, r)| r.clone()).collect(),
                    producer: b.stamp,
                    transactional_id: self.transactions.as_ref().map(|t| t.id.clone()),
                })
                .collect(),
        };
        if self.config.acks == Acks::None {
            // No response will come: the outcome is unknown the moment it leaves.
            self.deadline_floor_stale = true;
            let correlation_id = self.in_flight.next_id();
            self.outputs.push_back(ProducerOutput::Send { broker, correlation_id, request });
            for batch in batches {
                let reason = "acks=0: written to the connection, no acknowledgement".to_string();
                for (id, _) in batch.records {
                    self.complete(id, SendOutcome::Info { tp: Some(batch.tp), reason: reason.clone() });
                }
            }
            return;
        }
        let muted: Vec<TopicPartition> =
            if self.config.max_in_flight_per_broker == 1 { batches.iter().map(|b| b.tp).collect() } else { Vec::new() };
        for tp in &muted {
            assert!(self.muted.insert(*tp), "muted partition {tp} was drained");
        }
        let partitions = batches.iter().map(|b| b.tp).collect();
        self.send_request(now_ms, broker, request, Pending::Produce { muted, batches, partitions });
    }

    // ---- outcomes -----------------------------------------------------------

    fn handle_batch_answer(&mut self, now_ms: u64, batch: Batch, answer: Option<&ProducePartitionResponse>) {
        let Some(answer) = answer else {
            let error = "partition missing from the produce response".to_string();
            self.attempt_failed(now_ms, batch, AttemptFailure { ambiguous: true, retriable: true, error });
            return;
        };
        match answer.error {
            None => {
                assert!(answer.base_offset.0 >= 0, "negative base offset {} for {}", answer.base_offset, batch.tp);
                self.deadline_floor_stale = true;
                if let (Some(idem), Some(stamp)) = (&mut self.idempotence, batch.stamp) {
                    idem.acknowledged(batch.tp, stamp, batch.seq);
                }
                for (index, (id, _)) in batch.records.iter().enumerate() {
                    let offset = Offset(answer.base_offset.0 + index as i64);
                    self.complete(*id, SendOutcome::Ok { tp: batch.tp, offset });
                }
            }
            Some(code @ (ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId))
                if self.idempotence.is_some() && self.transactions.is_none() =>
            {
                self.on_sequence_refused(now_ms, batch, code);
            }
            Some(code) => {
                if code.needs_metadata_refresh() {
                    self.metadata.request_refresh();
                }
                let failure = AttemptFailure {
                    ambiguous: code.is_indefinite_for_produce(),
                    retriable: code.is_retriable(),
                    error: code.name().to_string(),
                };
                self.attempt_failed(now_ms, batch, failure);
            }
        }
    }

    /// Fails every request in flight to `broker` (disconnect or request timeout).
    fn fail_broker(&mut self, now_ms: u64, broker: BrokerId, why: &str) {
        for (_, pending) in self.in_flight.take_broker(broker) {
            match pending {
                Pending::Metadata => self.metadata.handle_failure(),
                Pending::InitProducerId => self.on_init_producer_id(now_ms, None),
                Pending::Txn(call) => self.on_txn_answer(now_ms, call, None),
                Pending::Produce { muted, batches, .. } => {
                    self.unmute(&muted);
                    for batch in batches {
                        let failure = AttemptFailure { ambiguous: true, retriable: true, error: why.to_string() };
                        self.attempt_failed(now_ms, batch, failure);
                    }
                }
            }
        }
        // The broker may be gone: leaders may have moved (Kafka does the same).
        self.metadata.request_refresh();
    }

    // ---- idempotence --------------------------------------------------------

    /// Gets a producer id, or bumps the epoch once nothing is in flight.
    fn drive_idempotence(&mut self, now_ms: u64) {
        let Some(idem) = &self.idempotence else { return };
        if idem.bump_wanted && !self.produce_in_flight() {
            self.bump_epoch();
        }
        let idem = self.idempotence.as_mut().expect("checked above");
        // A transactional producer's id comes from its coordinator instead.
        if self.transactions.is_none() && idem.id.is_none() && !idem.init_in_flight && now_ms >= idem.init_after_ms {
            idem.init_in_flight = true;
            let broker = self.metadata.broker_at(idem.init_attempts);
            self.send_request(now_ms, broker, Request::InitProducerId, Pending::InitProducerId);
        }
    }

    fn produce_in_flight(&self) -> bool {
        self.in_flight.values().any(|p| matches!(p.payload, Pending::Produce { .. }))
    }

    /// The KIP-360 bump: every queued batch stamped in the old epoch is
    /// stamped afresh at its next send — unless an attempt of it may be in
    /// a log already, which makes its outcome unknown for good.
    fn bump_epoch(&mut self) {
        let mut unknown = Vec::new();
        for deque in self.batches.values_mut() {
            let mut kept = VecDeque::with_capacity(deque.len());
            for mut batch in deque.drain(..) {
                if batch.stamp.is_some() && batch.ambiguous {
                    unknown.push(batch);
                } else {
                    batch.stamp = None;
                    kept.push_back(batch);
                }
            }
            *deque = kept;
        }
        let idem = self.idempotence.as_mut().expect("bumped only when idempotent");
        idem.bump_epoch();
        for batch in unknown {
            self.give_up(batch, "the producer bumped its epoch while the batch's outcome was unknown");
        }
    }

    fn on_init_producer_id(
        &mut self,
        now_ms: u64,
        answer: Option<(crate::types::ProducerId, crate::types::ProducerEpoch)>,
    ) {
        let backoff = self.backoff_ms();
        let idem = self.idempotence.as_mut().expect("InitProducerId only when idempotent");
        match answer {
            Some((id, epoch)) => idem.adopt(id, epoch),
            None => {
                idem.init_in_flight = false;
                idem.init_attempts += 1;
                idem.init_after_ms = now_ms + backoff;
            }
        }
    }

    /// The leader refused `batch` as out of order, or did not know the
    /// producer: the batch is not in its log. With an earlier batch of the
    /// partition still unresolved it waits for that one; otherwise the
    /// sequence has a gap, and the epoch is bumped before it goes again.
    fn on_sequence_refused(&mut self, now_ms: u64, mut batch: Batch, code: ErrorCode) {
        let stamp = batch.stamp.expect("an idempotent batch");
        let idem = self.idempotence.as_mut().expect("checked by the caller");
        if idem.overtaken(batch.tp, stamp, batch.seq) {
            batch.ambiguous = true;
            batch.last_error = Some(code.name().to_string());
            self.give_up(batch, "a later batch of its partition was acknowledged, so it is in the log, but its retry fell out of the broker's window and its offset is unknown");
            return;
        }
        if idem.current(stamp) && !self.earlier_unresolved(&batch) {
            self.idempotence.as_mut().expect("checked").bump_wanted = true;
            // The leader answered that no attempt is in its log.
            batch.ambiguous = false;
        }
        let failure = AttemptFailure { ambiguous: false, retriable: true, error: code.name().to_string() };
        self.attempt_failed(now_ms, batch, failure);
    }

    /// Whether a batch of `batch`'s partition created before it, stamped in
    /// the current epoch, is still queued or in flight.
    fn earlier_unresolved(&self, batch: &Batch) -> bool {
        let idem = self.idempotence.as_ref().expect("idempotent");
        let earlier = |b: &Batch| b.tp == batch.tp && b.seq < batch.seq && b.stamp.is_some_and(|s| idem.current(s));
        let queued = self.batches.get(&batch.tp).is_some_and(|d| d.iter().any(earlier));
        queued
            || self.in_flight.values().any(|p| match &p.payload {
                Pending::Produce { batches, .. } => batches.iter().any(earlier),
                _ => false,
            })
    }

    /// Batches in flight per partition (requests still out, whatever their
    /// batches' fate).
    fn batches_in_flight_per_partition(&self) -> BTreeMap<TopicPartition, usize> {
        let mut counts = BTreeMap::new();
        for pending in self.in_flight.values() {
            if let Pending::Produce { partitions, .. } = &pending.payload {
                for tp in partitions {
                    *counts.entry(*tp).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    fn unmute(&mut self, muted: &[TopicPartition]) {
        for tp in muted {
            assert!(self.muted.remove(tp), "partition {tp} was not muted");
        }
    }

    fn attempt_failed(&mut self, now_ms: u64, mut batch: Batch, failure: AttemptFailure) {
        assert!(batch.sealed, "only sent batches fail attempts");
        batch.ambiguous |= failure.ambiguous;
        batch.last_error = Some(failure.error);
        if failure.retriable && batch.retries < self.config.retries && now_ms < batch.deadline_ms {
            batch.retries += 1;
            batch.retry_at_ms = now_ms + self.backoff_ms();
            self.reenqueue(batch);
        } else {
            let why = if failure.retriable { "retries exhausted" } else { "non-retriable error" };
            self.give_up(batch, why);
        }
    }

    /// Puts a retried batch back in creation order, ahead of younger batches.
    fn reenqueue(&mut self, batch: Batch) {
        let deque = self.batches.entry(batch.tp).or_default();
        let at = deque.iter().position(|b| b.seq > batch.seq).unwrap_or(deque.len());
        assert!(deque.iter().all(|b| b.seq != batch.seq), "batch queued twice");
        deque.insert(at, batch);
        assert!(batches_in_order(deque), "retried batch out of order");
    }

    fn give_up(&mut self, batch: Batch, why: &str) {
        self.deadline_floor_stale = true;
        if let Some(txn) = &mut self.transactions {
            txn.make_abortable(why);
        }
        let last = batch.last_error.as_deref().unwrap_or("never sent");
        for (id, _) in &batch.records {
            let outcome = if batch.ambiguous {
                let reason = format!("{why} after an attempt that may have landed (last error: {last})");
                SendOutcome::Info { tp: Some(batch.tp), reason }
            } else {
                SendOutcome::Fail { error: format!("{why} (last error: {last})") }
            };
            self.complete(*id, outcome);
        }
    }

    fn complete(&mut self, id: RecordId, outcome: SendOutcome) {
        assert!(self.live.remove(&id), "record {id:?} completed twice");
        self.outputs.push_back(ProducerOutput::Completed { id, outcome });
    }

    /// Every live record is in exactly one place; nothing is lost.
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut held = 0usize;
        for waiting in self.unplaced.values() {
            assert!(!waiting.is_empty());
            held += waiting.len();
        }
        assert!(self.deadline_floor_ms <= self.earliest_batch_deadline_ms(), "deadline floor above a deadline");
        for deque in self.batches.values() {
            assert!(batches_in_order(deque), "batches out of order");
            held += deque.iter().map(|b| b.records.len()).sum::<usize>();
        }
        for pending in self.in_flight.values() {
            if let Pending::Produce { batches, .. } = &pending.payload {
                held += batches.iter().map(|b| b.records.len()).sum::<usize>();
            }
        }
        assert_eq!(held, self.live.len(), "records lost or duplicated");
    }
}

/// Live record ids: only membership and size are ever asked, never order, so
/// a hash set (with a fixed hasher, so runs stay reproducible) serves.
type RecordIdSet = HashSet<RecordId, BuildHasherDefault<RecordIdHasher>>;

/// Multiplicative (Fx-style) hashing of a record id: ids are often sequential.
#[derive(Default)]
struct RecordIdHasher(u64);

impl Hasher for RecordIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Creation order, and every sent (sealed) batch ahead of every unsent one:
/// a retried batch never overtakes an older one, and appends go to the last.
fn batches_in_order(deque: &VecDeque<Batch>) -> bool {
    deque.iter().zip(deque.iter().skip(1)).all(|(a, b)| a.seq < b.seq && (a.sealed || !b.sealed))
}

/// Whether appending `size` bytes to `tp` opens a new batch (no open batch, or no room).
fn needs_new_batch(
    batches: &BTreeMap<TopicPartition, VecDeque<Batch>>,
    tp: TopicPartition,
    size: usize,
    batch_size_bytes: usize,
) -> bool {
    match batches.get(&tp).and_then(|d| d.back()) {
        Some(open) if !open.sealed => open.size_bytes + size > batch_size_bytes,
        _ => true,
    }
}

#[path = "producer_txn.rs"]
mod txn;

#[cfg(test)]
#[path = "producer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "producer_txn_tests.rs"]
mod txn_tests;

#[cfg(test)]
#[path = "producer_txn_offsets_tests.rs"]
mod txn_offsets_tests;
