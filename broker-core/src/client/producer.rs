//! The producer: a sans-IO state machine in the shape of Kafka's
//! `KafkaProducer` + `RecordAccumulator` + `Sender` (without idempotence).
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

use super::inflight::{InFlight, MIN_RETRY_BACKOFF_MS};
use super::metadata::ClientMetadata;
use super::partitioner::{partition_for_key, KeylessPartitioner, PartitionerKind};
use crate::protocol::{Acks, ErrorCode, ProducePartitionResponse, Request, Response};
use crate::types::{BrokerId, Offset, Record, TopicPartition};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    }
}

/// The caller's name for one `send()`; unique among records not yet completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    pub id: RecordId,
    pub topic: String,
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
}

/// A record whose partition is not chosen yet (its topic's metadata is unknown).
#[derive(Clone, Debug)]
struct Unplaced {
    id: RecordId,
    topic: String,
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
}

#[derive(Clone, Debug)]
enum Pending {
    Metadata,
    /// `muted` lists partitions held back until this request resolves (only
    /// with `max_in_flight_per_broker == 1`); batches whose delivery timeout
    /// passed while in flight are removed from `batches` early.
    Produce {
        muted: Vec<TopicPartition>,
        batches: Vec<Batch>,
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
    live: BTreeSet<RecordId>,
    unplaced: VecDeque<Unplaced>,
    /// The accumulator: per partition, batches oldest first; only the last may be open.
    batches: BTreeMap<TopicPartition, VecDeque<Batch>>,
    in_flight: InFlight<Pending>,
    muted: BTreeSet<TopicPartition>,
    /// Per broker, the partition drained last, so that a size-limited request
    /// starts after it next time (Kafka's drain index).
    drain_cursor: BTreeMap<BrokerId, TopicPartition>,
    next_batch_seq: u64,
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
        Producer {
            partitioner: KeylessPartitioner::new(config.partitioner),
            config,
            rng,
            metadata: ClientMetadata::new(bootstrap, start),
            live: BTreeSet::new(),
            unplaced: VecDeque::new(),
            batches: BTreeMap::new(),
            in_flight: InFlight::new(),
            muted: BTreeSet::new(),
            drain_cursor: BTreeMap::new(),
            next_batch_seq: 0,
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
        } else if size > MAX_REQUEST_SIZE_BYTES {
            let error = format!("RECORD_TOO_LARGE: {size} bytes > {MAX_REQUEST_SIZE_BYTES}");
            self.complete(id, SendOutcome::Fail { error });
        } else {
            let unplaced =
                Unplaced { id, topic: record.topic, partition: record.partition, record: record_out, send_ms: now_ms };
            self.unplaced.push_back(unplaced);
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
            (Some(Pending::Produce { muted, batches }), Response::Produce { partitions }) => {
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
        let mut times: Vec<u64> = Vec::new();
        times.extend(self.in_flight.next_deadline_ms());
        times.extend(self.metadata.refresh_due_ms(self.config.metadata_max_age_ms, self.backoff_ms()));
        times.extend(self.unplaced.iter().map(|u| self.delivery_deadline(u.send_ms)));
        for pending in self.in_flight.values() {
            if let Pending::Produce { batches, .. } = &pending.payload {
                times.extend(batches.iter().map(|b| b.deadline_ms));
            }
        }
        for (tp, deque) in &self.batches {
            times.extend(deque.iter().map(|b| b.deadline_ms));
            // A front batch that is ready now waits for capacity or a leader,
            // which only an input brings; one that is not ready wakes us up.
            if let Some(front) = deque.front() {
                if !self.muted.contains(tp) && self.metadata.leader(*tp).is_some() {
                    times.push(self.ready_at_ms(front));
                }
            }
        }
        let next = times.into_iter().filter(|&t| t > now).min();
        debug_assert!(next.is_none_or(|t| t > now));
        next
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
        self.drain(now_ms);
        if self
            .metadata
            .refresh_due_ms(self.config.metadata_max_age_ms, self.backoff_ms())
            .is_some_and(|due| due <= now_ms)
        {
            let (broker, request) = self.metadata.start_refresh(now_ms);
            self.send_request(now_ms, broker, request, Pending::Metadata);
        }
        self.check_invariants();
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
        let mut still_unplaced = VecDeque::new();
        while let Some(u) = self.unplaced.pop_front() {
            let Some(count) = self.metadata.partition_count(&u.topic).filter(|&n| n > 0) else {
                self.metadata.request_refresh();
                still_unplaced.push_back(u);
                continue;
            };
            let partition = match (u.partition, &u.record.key) {
                (Some(p), _) if p >= count => {
                    let error = format!("invalid partition {p}: topic {} has {count} partitions", u.topic);
                    self.complete(u.id, SendOutcome::Fail { error });
                    continue;
                }
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => {
                    let topic_id = self.metadata.topic_id(&u.topic).expect("counted above");
                    let available = self.metadata.available_partitions(&u.topic);
                    let size = u.record.size_bytes();
                    let (batches, batch_size) = (&self.batches, self.config.batch_size_bytes);
                    self.partitioner.choose(&mut self.rng, &u.topic, count, &available, |p| {
                        needs_new_batch(batches, TopicPartition::new(topic_id, p), size, batch_size)
                    })
                }
            };
            let tp = self.metadata.topic_partition(&u.topic, partition).expect("partition < count");
            self.append(now_ms, tp, u.id, u.record, u.send_ms);
        }
        self.unplaced = still_unplaced;
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
            };
            self.batches.entry(tp).or_default().push_back(batch);
        }
        let batch = self.batches.get_mut(&tp).and_then(|d| d.back_mut()).expect("open batch");
        assert!(!batch.sealed, "appending to a sealed batch");
        batch.size_bytes += size;
        batch.deadline_ms = batch.deadline_ms.min(deadline_ms);
        batch.records.push((id, record));
    }

    /// Completes records whose delivery timeout has passed, wherever they are.
    fn expire(&mut self, now_ms: u64) {
        let timeout = self.config.delivery_timeout_ms;
        let (expired, kept): (Vec<Unplaced>, Vec<Unplaced>) =
            self.unplaced.drain(..).partition(|u| u.send_ms.saturating_add(timeout) <= now_ms);
        self.unplaced = kept.into();
        for u in expired {
            let error = format!("delivery timeout expired before the record was sent (topic {} unknown)", u.topic);
            self.complete(u.id, SendOutcome::Fail { error });
        }

        let mut expired: Vec<Batch> = Vec::new();
        for deque in self.batches.values_mut() {
            let (gone, kept): (Vec<Batch>, Vec<Batch>) = deque.drain(..).partition(|b| b.deadline_ms <= now_ms);
            *deque = kept.into();
            expired.extend(gone);
        }
        self.batches.retain(|_, d| !d.is_empty());
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

    /// Sends every ready batch the in-flight limits allow.
    fn drain(&mut self, now_ms: u64) {
        // Each round sends at least one batch, so rounds <= batches.
        loop {
            let ready = self.ready_partitions(now_ms);
            if ready.is_empty() {
                break;
            }
            for (broker, tps) in ready {
                self.send_produce(now_ms, broker, tps);
            }
        }
    }

    /// Partitions whose front batch is ready, grouped by leaders that can take a request.
    fn ready_partitions(&mut self, now_ms: u64) -> BTreeMap<BrokerId, Vec<TopicPartition>> {
        let mut ready: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
        let mut leaderless = false;
        for (&tp, deque) in &self.batches {
            let front = deque.front().expect("empty deques are removed");
            if self.muted.contains(&tp) || self.ready_at_ms(front) > now_ms {
                continue;
            }
            match self.metadata.leader(tp) {
                Some(leader) if self.capacity(leader) > 0 => ready.entry(leader).or_default().push(tp),
                Some(_) => {}
                None => leaderless = true,
            }
        }
        if leaderless {
            self.metadata.request_refresh();
        }
        ready
    }

    /// When the batch becomes ready: after its backoff if it is a retry, else
    /// when full (at once) or when its linger has passed.
    fn ready_at_ms(&self, front: &Batch) -> u64 {
        if front.sealed {
            return front.retry_at_ms;
        }
        let deque_len = self.batches.get(&front.tp).map_or(0, VecDeque::len);
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
    fn send_produce(&mut self, now_ms: u64, broker: BrokerId, mut ready: Vec<TopicPartition>) {
        assert!(!ready.is_empty());
        if let Some(last) = self.drain_cursor.get(&broker) {
            let start = ready.iter().position(|tp| tp > last).unwrap_or(0);
            ready.rotate_left(start);
        }
        let mut batches: Vec<Batch> = Vec::new();
        let mut request_bytes = 0;
        for tp in ready {
            let deque = self.batches.get_mut(&tp).expect("ready partition has batches");
            let size = deque.front().expect("ready partition has batches").size_bytes;
            if !batches.is_empty() && request_bytes + size > MAX_REQUEST_SIZE_BYTES {
                break;
            }
            let mut batch = deque.pop_front().expect("checked above");
            if deque.is_empty() {
                self.batches.remove(&tp);
            }
            batch.sealed = true;
            request_bytes += size;
            batches.push(batch);
        }
        let last_tp = batches.last().expect("at least one batch").tp;
        self.drain_cursor.insert(broker, last_tp);
        let request = Request::Produce {
            acks: self.config.acks,
            timeout_ms: self.config.request_timeout_ms,
            batches: batches.iter().map(|b| (b.tp, b.records.iter().map(|(_, r)| r.clone()).collect())).collect(),
        };
        if self.config.acks == Acks::None {
            // No response will come: the outcome is unknown the moment it leaves.
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
        self.send_request(now_ms, broker, request, Pending::Produce { muted, batches });
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
                for (index, (id, _)) in batch.records.iter().enumerate() {
                    let offset = Offset(answer.base_offset.0 + index as i64);
                    self.complete(*id, SendOutcome::Ok { tp: batch.tp, offset });
                }
            }
            Some(code) => {
                if matches!(code, ErrorCode::NotLeaderOrFollower | ErrorCode::UnknownTopicOrPartition) {
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
                Pending::Produce { muted, batches } => {
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
        held += self.unplaced.len();
        for deque in self.batches.values() {
            assert!(!deque.is_empty());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::partitioner::partition_for_key;
    use crate::client::testkit::FakeCluster;

    const T: &str = "t";

    fn config() -> ProducerConfig {
        ProducerConfig { linger_ms: 0, ..ProducerConfig::default() }
    }

    /// Value = id as 8 bytes, so every record is 24 bytes.
    fn rec(id: u64, partition: Option<u32>) -> ProducerRecord {
        ProducerRecord {
            id: RecordId(id),
            topic: T.to_string(),
            partition,
            key: None,
            value: Bytes::copy_from_slice(&id.to_be_bytes()),
        }
    }

    const REC_BYTES: usize = 24;

    #[derive(Debug, Default)]
    struct Out {
        sends: Vec<(BrokerId, u64, Request)>,
        closes: Vec<BrokerId>,
        done: Vec<(RecordId, SendOutcome)>,
        all: Vec<ProducerOutput>,
    }

    impl Out {
        fn produces(&self) -> Vec<&(BrokerId, u64, Request)> {
            self.sends.iter().filter(|s| matches!(s.2, Request::Produce { .. })).collect()
        }
        fn metadata_requests(&self) -> Vec<&(BrokerId, u64, Request)> {
            self.sends.iter().filter(|s| matches!(s.2, Request::Metadata { .. })).collect()
        }
    }

    fn outputs(p: &mut Producer) -> Out {
        let mut out = Out::default();
        while let Some(o) = p.poll_output() {
            match &o {
                ProducerOutput::Send { broker, correlation_id, request } => {
                    out.sends.push((*broker, *correlation_id, request.clone()))
                }
                ProducerOutput::CloseConnection { broker } => out.closes.push(*broker),
                ProducerOutput::Completed { id, outcome } => out.done.push((*id, outcome.clone())),
            }
            out.all.push(o);
        }
        if let Some(t) = p.next_timeout_ms() {
            assert!(t > p.now_ms, "timer {t} not in the future of {}", p.now_ms);
        }
        out
    }

    /// Record ids per batch of a Produce request, by partition.
    fn batch_ids(request: &Request) -> Vec<(u32, Vec<u64>)> {
        let Request::Produce { batches, .. } = request else { panic!("not a produce: {request:?}") };
        batches
            .iter()
            .map(|(tp, records)| {
                let ids = records.iter().map(|r| u64::from_be_bytes(r.value[..].try_into().unwrap())).collect();
                (tp.partition, ids)
            })
            .collect()
    }

    /// A producer at `now_ms` that has fetched metadata from `cluster`.
    fn ready_producer(config: ProducerConfig, cluster: &FakeCluster, now_ms: u64) -> Producer {
        let mut p = Producer::new(config, cluster.brokers.clone(), 1);
        p.handle_timeout(now_ms);
        let out = outputs(&mut p);
        assert_eq!(out.sends.len(), 1);
        let (broker, id, request) = &out.sends[0];
        assert_eq!(request, &Request::Metadata { topics: None });
        p.handle_response(now_ms, *broker, *id, cluster.metadata());
        assert!(outputs(&mut p).all.is_empty());
        p
    }

    fn answer(p: &mut Producer, cluster: &mut FakeCluster, now_ms: u64, send: &(BrokerId, u64, Request)) {
        let response = cluster.answer(send.0, &send.2).expect("a response");
        p.handle_response(now_ms, send.0, send.1, response);
    }

    fn produce_error(request: &Request, error: ErrorCode) -> Response {
        let Request::Produce { batches, .. } = request else { panic!("not a produce") };
        Response::Produce {
            partitions: batches
                .iter()
                .map(|(tp, _)| ProducePartitionResponse { tp: *tp, error: Some(error), base_offset: Offset(-1) })
                .collect(),
        }
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = ProducerConfig::default();
        assert_eq!(c.acks, Acks::All);
        assert_eq!((c.linger_ms, c.batch_size_bytes, c.max_in_flight_per_broker), (5, 16_384, 5));
        assert_eq!((c.request_timeout_ms, c.retries, c.retry_backoff_ms), (30_000, 2_147_483_647, 100));
        assert_eq!((c.delivery_timeout_ms, c.metadata_max_age_ms), (120_000, 300_000));
        assert_eq!((c.partitioner, c.max_queued_records), (PartitionerKind::Sticky, 100_000));
    }

    #[test]
    fn metadata_is_fetched_before_anything_is_produced() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = Producer::new(config(), vec![BrokerId(0)], 1);
        assert_eq!(p.next_timeout_ms(), Some(0), "wants to start at once");
        p.send(3, rec(1, None));
        let out = outputs(&mut p);
        assert_eq!(out.sends.len(), 1);
        assert_eq!(out.metadata_requests().len(), 1);
        assert_eq!(p.queued_records(), 1);
        answer(&mut p, &mut cluster, 4, &out.sends[0]);
        let out = outputs(&mut p);
        let produces = out.produces();
        assert_eq!(produces.len(), 1);
        assert_eq!(batch_ids(&produces[0].2), vec![(0, vec![1])]);
        let Request::Produce { batches, acks, .. } = &produces[0].2 else { unreachable!() };
        assert_eq!(*acks, Acks::All);
        assert_eq!(batches[0].1[0].timestamp_ms, 3, "timestamp is the send() time");
        answer(&mut p, &mut cluster, 5, produces[0]);
        let out = outputs(&mut p);
        let tp = cluster.tp(T, 0);
        assert_eq!(out.done, vec![(RecordId(1), SendOutcome::Ok { tp, offset: Offset(0) })]);
        assert_eq!(p.queued_records(), 0);
    }

    #[test]
    fn batches_close_when_full_and_otherwise_after_linger() {
        let cluster = FakeCluster::new(1, &[(T, 1)]);
        let cfg = ProducerConfig { linger_ms: 10, batch_size_bytes: 3 * REC_BYTES, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        for id in 0..7 {
            p.send(2, rec(id, Some(0)));
        }
        let out = outputs(&mut p);
        let sent: Vec<_> = out.produces().iter().map(|s| batch_ids(&s.2)).collect();
        assert_eq!(sent, vec![vec![(0, vec![0, 1, 2])], vec![(0, vec![3, 4, 5])]], "full batches go at once");
        assert_eq!(p.next_timeout_ms(), Some(12), "the partial batch lingers");
        p.handle_timeout(11);
        assert!(outputs(&mut p).sends.is_empty());
        p.handle_timeout(12);
        let sent: Vec<_> = outputs(&mut p).produces().iter().map(|s| batch_ids(&s.2)).collect();
        assert_eq!(sent, vec![vec![(0, vec![6])]]);
    }

    #[test]
    fn ready_batches_are_grouped_per_leader() {
        let cluster = FakeCluster::new(2, &[(T, 4)]);
        let cfg = ProducerConfig { linger_ms: 10, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        for id in 0..8 {
            p.send(0, rec(id, Some(id as u32 % 4)));
        }
        assert!(outputs(&mut p).sends.is_empty());
        p.handle_timeout(10);
        let out = outputs(&mut p);
        let sent: Vec<_> = out.produces().iter().map(|s| (s.0, batch_ids(&s.2))).collect();
        assert_eq!(
            sent,
            vec![
                (BrokerId(0), vec![(0, vec![0, 4]), (2, vec![2, 6])]),
                (BrokerId(1), vec![(1, vec![1, 5]), (3, vec![3, 7])]),
            ]
        );
    }

    #[test]
    fn in_flight_requests_per_broker_are_limited() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let cfg = ProducerConfig { max_in_flight_per_broker: 2, batch_size_bytes: 1, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        for id in 0..5 {
            p.send(0, rec(id, Some(0)));
        }
        let out = outputs(&mut p);
        let produces: Vec<_> = out.produces().into_iter().cloned().collect();
        assert_eq!(produces.len(), 2);
        assert_eq!(batch_ids(&produces[0].2), vec![(0, vec![0])]);
        answer(&mut p, &mut cluster, 1, &produces[0]);
        let out = outputs(&mut p);
        assert_eq!(out.done.len(), 1);
        assert_eq!(out.produces().len(), 1, "one slot freed, one request sent");
        assert_eq!(batch_ids(&out.produces()[0].2), vec![(0, vec![2])]);
    }

    #[test]
    fn a_response_completes_every_record_at_base_plus_index() {
        let cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(ProducerConfig { linger_ms: 10, ..config() }, &cluster, 0);
        for id in 0..3 {
            p.send(0, rec(id, Some(0)));
        }
        p.handle_timeout(10);
        let out = outputs(&mut p);
        let (broker, corr, _) = out.produces()[0].clone();
        let tp = cluster.tp(T, 0);
        let response = Response::Produce {
            partitions: vec![ProducePartitionResponse { tp, error: None, base_offset: Offset(40) }],
        };
        p.handle_response(11, broker, corr, response);
        let done = outputs(&mut p).done;
        let expected: Vec<_> =
            (0..3).map(|i| (RecordId(i), SendOutcome::Ok { tp, offset: Offset(40 + i as i64) })).collect();
        assert_eq!(done, expected);
    }

    #[test]
    fn retriable_error_is_retried_after_backoff() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(config(), &cluster, 0);
        p.send(0, rec(7, Some(0)));
        let first = outputs(&mut p).produces()[0].clone();
        p.handle_response(5, first.0, first.1, produce_error(&first.2, ErrorCode::NotEnoughReplicas));
        let out = outputs(&mut p);
        assert!(out.all.is_empty(), "nothing before the backoff: {:?}", out.all);
        assert_eq!(p.next_timeout_ms(), Some(105));
        p.handle_timeout(105);
        let out = outputs(&mut p);
        let retry = out.produces()[0].clone();
        assert_eq!(batch_ids(&retry.2), vec![(0, vec![7])], "the same batch");
        assert_ne!(retry.1, first.1, "a new correlation id");
        answer(&mut p, &mut cluster, 106, &retry);
        let tp = cluster.tp(T, 0);
        assert_eq!(outputs(&mut p).done, vec![(RecordId(7), SendOutcome::Ok { tp, offset: Offset(0) })]);
    }

    #[test]
    fn a_clock_stepping_back_stalls_timers_but_stamps_records_as_given() {
        let cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(ProducerConfig { linger_ms: 10, ..config() }, &cluster, 0);
        p.send(1000, rec(1, Some(0)));
        assert_eq!(p.next_timeout_ms(), Some(1010));
        p.send(400, rec(2, Some(0))); // the node's clock stepped back 600 ms
        p.handle_timeout(1005);
        assert!(outputs(&mut p).produces().is_empty(), "linger runs on the monotonic clock");
        p.handle_timeout(1010);
        let out = outputs(&mut p);
        let Request::Produce { batches, .. } = &out.produces()[0].2 else { unreachable!() };
        let stamps: Vec<u64> = batches[0].1.iter().map(|r| r.timestamp_ms).collect();
        assert_eq!(stamps, vec![1000, 400], "timestamps are the wall clock as given");
    }

    #[test]
    fn zero_backoff_still_waits_a_millisecond() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(ProducerConfig { retry_backoff_ms: 0, ..config() }, &cluster, 0);
        p.send(10, rec(1, Some(0)));
        let s = outputs(&mut p).produces()[0].clone();
        p.handle_response(10, s.0, s.1, produce_error(&s.2, ErrorCode::NotEnoughReplicas));
        assert!(outputs(&mut p).produces().is_empty());
        assert_eq!(p.next_timeout_ms(), Some(11));
        p.handle_timeout(11);
        let retry = outputs(&mut p).produces()[0].clone();
        answer(&mut p, &mut cluster, 11, &retry);
        assert!(matches!(&outputs(&mut p).done[..], [(_, SendOutcome::Ok { .. })]));
    }

    #[test]
    fn request_timeout_closes_the_connection_retries_and_ends_in_info() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let cfg = ProducerConfig { request_timeout_ms: 1000, delivery_timeout_ms: 2500, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        p.send(0, rec(1, Some(0)));
        assert_eq!(outputs(&mut p).produces().len(), 1);
        assert_eq!(p.next_timeout_ms(), Some(1000));
        p.handle_timeout(1000);
        let out = outputs(&mut p);
        assert_eq!(out.closes, vec![BrokerId(0)]);
        assert!(out.produces().is_empty() && out.done.is_empty());
        // A refresh goes out too (the broker may be gone); answer it.
        for m in out.metadata_requests() {
            answer(&mut p, &mut cluster, 1000, m);
        }
        assert_eq!(p.next_timeout_ms(), Some(1100));
        p.handle_timeout(1100);
        let out = outputs(&mut p);
        assert_eq!(out.produces().len(), 1, "retried after the backoff");
        // Never answer produces again: the record gives up at its delivery timeout.
        let mut now;
        let outcome = loop {
            now = p.next_timeout_ms().expect("a timer while records are queued");
            p.handle_timeout(now);
            let out = outputs(&mut p);
            for m in out.metadata_requests() {
                answer(&mut p, &mut cluster, now, m);
            }
            if let Some((_, outcome)) = out.done.into_iter().next() {
                break outcome;
            }
        };
        assert_eq!(now, 2500);
        assert!(matches!(outcome, SendOutcome::Info { tp: Some(_), .. }), "{outcome:?}");
        assert!(cluster.log(cluster.tp(T, 0)).is_empty());
    }

    #[test]
    fn definite_error_fails_at_once() {
        let cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(config(), &cluster, 0);
        p.send(0, rec(1, Some(0)));
        let s = outputs(&mut p).produces()[0].clone();
        p.handle_response(1, s.0, s.1, produce_error(&s.2, ErrorCode::MessageTooLarge));
        let done = outputs(&mut p).done;
        assert!(
            matches!(&done[..], [(RecordId(1), SendOutcome::Fail { error })] if error.contains("MESSAGE_TOO_LARGE"))
        );
        assert_eq!(p.queued_records(), 0);
    }

    /// Answers each attempt with the next error; returns the outcome.
    fn outcome_after_errors(errors: &[ErrorCode], retries: u32) -> SendOutcome {
        let cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(ProducerConfig { retries, ..config() }, &cluster, 0);
        p.send(0, rec(1, Some(0)));
        let mut now = 0;
        for &error in errors {
            let out = outputs(&mut p);
            assert!(out.done.is_empty());
            let s = out.produces()[0].clone();
            p.handle_response(now, s.0, s.1, produce_error(&s.2, error));
            now = p.next_timeout_ms().unwrap();
            p.handle_timeout(now);
        }
        let out = outputs(&mut p);
        assert_eq!(out.done.len(), 1, "{out:?}");
        out.done[0].1.clone()
    }

    #[test]
    fn exhausted_retries_fail_only_if_every_attempt_was_definite() {
        let nee = ErrorCode::NotEnoughReplicas;
        let outcome = outcome_after_errors(&[nee, nee, nee], 2);
        assert!(matches!(&outcome, SendOutcome::Fail { error } if error.contains("NOT_ENOUGH_REPLICAS")));
        let outcome = outcome_after_errors(&[ErrorCode::RequestTimedOut, nee, nee], 2);
        assert!(matches!(outcome, SendOutcome::Info { .. }), "{outcome:?}");
        // A non-retriable error after an ambiguous attempt is still unknown.
        let outcome = outcome_after_errors(&[ErrorCode::NetworkException, ErrorCode::InvalidRequest], 5);
        assert!(matches!(outcome, SendOutcome::Info { .. }), "{outcome:?}");
    }

    #[test]
    fn records_never_sent_fail_at_their_delivery_timeout() {
        // No broker ever answers metadata.
        let cfg = ProducerConfig { delivery_timeout_ms: 1000, ..config() };
        let mut p = Producer::new(cfg.clone(), vec![BrokerId(0), BrokerId(1)], 1);
        p.send(0, rec(1, None));
        let outcome = loop {
            let out = outputs(&mut p);
            for s in &out.sends {
                p.handle_disconnect(p.now_ms, s.0);
            }
            if let Some((_, outcome)) = out.done.into_iter().next() {
                break outcome;
            }
            let t = p.next_timeout_ms().unwrap();
            p.handle_timeout(t);
        };
        assert_eq!(p.now_ms, 1000);
        assert!(matches!(outcome, SendOutcome::Fail { .. }), "{outcome:?}");

        // A partition without a leader: queued, never sent, failed.
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        cluster.set_leader(cluster.tp(T, 0), None);
        let mut p = ready_producer(cfg, &cluster, 0);
        p.send(0, rec(2, Some(0)));
        let outcome = loop {
            let out = outputs(&mut p);
            assert!(out.produces().is_empty());
            let now = p.now_ms;
            for m in out.metadata_requests() {
                answer(&mut p, &mut cluster, now, m);
            }
            if let Some((_, outcome)) = out.done.into_iter().next() {
                break outcome;
            }
            let t = p.next_timeout_ms().unwrap();
            p.handle_timeout(t);
        };
        assert!(matches!(outcome, SendOutcome::Fail { .. }), "{outcome:?}");
    }

    #[test]
    fn acks_zero_completes_as_info_once_written() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(ProducerConfig { acks: Acks::None, ..config() }, &cluster, 0);
        p.send(0, rec(1, Some(0)));
        let out = outputs(&mut p);
        assert!(matches!(
            &out.all[..],
            [
                ProducerOutput::Send { request: Request::Produce { acks: Acks::None, .. }, .. },
                ProducerOutput::Completed { id: RecordId(1), outcome: SendOutcome::Info { .. } },
            ]
        ));
        assert_eq!(p.queued_records(), 0);
        // A response nobody asked for is ignored.
        let s = &out.sends[0];
        assert!(cluster.answer(s.0, &s.2).is_none());
        p.handle_response(1, s.0, s.1, produce_error(&s.2, ErrorCode::NotLeaderOrFollower));
        assert!(outputs(&mut p).all.is_empty());
    }

    #[test]
    fn full_queue_and_oversized_records_fail_at_once() {
        let mut p = Producer::new(ProducerConfig { max_queued_records: 2, ..config() }, vec![BrokerId(0)], 1);
        for id in 0..3 {
            p.send(0, rec(id, None));
        }
        let out = outputs(&mut p);
        assert!(matches!(&out.done[..], [(RecordId(2), SendOutcome::Fail { error })] if error.contains("queue full")));
        assert_eq!(p.queued_records(), 2);
        let mut big = rec(9, None);
        big.value = Bytes::from(vec![0u8; MAX_REQUEST_SIZE_BYTES]);
        let mut p = Producer::new(config(), vec![BrokerId(0)], 1);
        p.send(0, big);
        let out = outputs(&mut p);
        assert!(matches!(&out.done[..], [(RecordId(9), SendOutcome::Fail { error })] if error.contains("TOO_LARGE")));
    }

    #[test]
    fn not_leader_refreshes_metadata_and_retries_at_the_new_leader() {
        let mut cluster = FakeCluster::new(2, &[(T, 1)]);
        let mut p = ready_producer(config(), &cluster, 0);
        let tp = cluster.tp(T, 0);
        p.send(1000, rec(1, Some(0)));
        let s = outputs(&mut p).produces()[0].clone();
        assert_eq!(s.0, BrokerId(0));
        cluster.set_leader(tp, Some(BrokerId(1)));
        answer(&mut p, &mut cluster, 1001, &s); // NOT_LEADER_OR_FOLLOWER
        let out = outputs(&mut p);
        assert!(out.done.is_empty());
        assert_eq!(out.metadata_requests().len(), 1, "refreshes at once (last attempt long ago)");
        answer(&mut p, &mut cluster, 1002, out.metadata_requests()[0]);
        assert!(outputs(&mut p).all.is_empty());
        assert_eq!(p.next_timeout_ms(), Some(1101));
        p.handle_timeout(1101);
        let out = outputs(&mut p);
        let retry = out.produces()[0].clone();
        assert_eq!(retry.0, BrokerId(1));
        answer(&mut p, &mut cluster, 1102, &retry);
        assert_eq!(outputs(&mut p).done, vec![(RecordId(1), SendOutcome::Ok { tp, offset: Offset(0) })]);
    }

    #[test]
    fn keyed_records_hash_and_explicit_partitions_win() {
        let mut cluster = FakeCluster::new(1, &[(T, 8)]);
        let mut p = ready_producer(ProducerConfig { max_in_flight_per_broker: 50, ..config() }, &cluster, 0);
        let mut expected = Vec::new();
        for id in 0..20u64 {
            let mut r = rec(id, None);
            let key = format!("k{id}");
            r.key = Some(Bytes::from(key.clone()));
            if id % 5 == 0 {
                r.partition = Some(3);
            }
            expected.push(if id % 5 == 0 { 3 } else { partition_for_key(key.as_bytes(), 8) });
            p.send(0, r);
        }
        let out = outputs(&mut p);
        let mut got = vec![u32::MAX; 20];
        for s in out.produces() {
            for (partition, ids) in batch_ids(&s.2) {
                for id in ids {
                    got[id as usize] = partition;
                }
            }
            answer(&mut p, &mut cluster, 0, s);
        }
        assert_eq!(got, expected);
        let mut bad = rec(99, Some(8));
        bad.key = None;
        p.send(1, bad);
        let out = outputs(&mut p);
        assert!(out.done.iter().any(|(id, o)| *id == RecordId(99)
            && matches!(o, SendOutcome::Fail { error } if error.contains("invalid partition"))));
    }

    fn keyless_partitions(kind: PartitionerKind) -> Vec<Vec<u32>> {
        let cluster = FakeCluster::new(1, &[(T, 4)]);
        let cfg = ProducerConfig { linger_ms: 10, partitioner: kind, max_in_flight_per_broker: 50, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        let mut rounds = Vec::new();
        for round in 0..3u64 {
            for i in 0..4 {
                p.send(round * 10, rec(round * 4 + i, None));
            }
            p.handle_timeout(round * 10 + 10);
            let out = outputs(&mut p);
            let mut partitions: Vec<u32> = out
                .produces()
                .iter()
                .flat_map(|s| batch_ids(&s.2))
                .flat_map(|(p, ids)| std::iter::repeat_n(p, ids.len()))
                .collect();
            partitions.sort_unstable();
            rounds.push(partitions);
        }
        rounds
    }

    #[test]
    fn keyless_records_stick_until_sent_or_go_round_robin() {
        let rounds = keyless_partitions(PartitionerKind::Sticky);
        for r in &rounds {
            assert!(r.iter().all(|&p| p == r[0]), "one partition per linger round: {rounds:?}");
        }
        assert!(rounds.windows(2).all(|w| w[0][0] != w[1][0]), "moves after each send: {rounds:?}");
        let rounds = keyless_partitions(PartitionerKind::RoundRobin);
        assert!(rounds.iter().all(|r| r == &vec![0, 1, 2, 3]), "{rounds:?}");
    }

    #[test]
    fn max_in_flight_one_keeps_a_partition_to_one_batch_in_flight() {
        let mut cluster = FakeCluster::new(2, &[(T, 2)]);
        let cfg = ProducerConfig { max_in_flight_per_broker: 1, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        let tp = cluster.tp(T, 0);
        p.send(1000, rec(1, Some(0)));
        let first = outputs(&mut p).produces()[0].clone();
        assert_eq!(first.0, BrokerId(0));
        // The leader moves to broker 1, and the producer learns it.
        cluster.set_leader(tp, Some(BrokerId(1)));
        p.handle_disconnect(1001, BrokerId(1));
        let out = outputs(&mut p);
        answer(&mut p, &mut cluster, 1001, out.metadata_requests()[0]);
        // Broker 1 has room, but partition 0 has a batch in flight: held back.
        p.send(1002, rec(2, Some(0)));
        assert!(outputs(&mut p).produces().is_empty());
        answer(&mut p, &mut cluster, 1200, &first); // NOT_LEADER_OR_FOLLOWER from broker 0
        let out = outputs(&mut p);
        assert!(out.produces().is_empty(), "record 1 is in backoff and goes first");
        for m in out.metadata_requests() {
            answer(&mut p, &mut cluster, 1200, m);
        }
        p.handle_timeout(1300);
        let out = outputs(&mut p);
        let produces: Vec<_> = out.produces().iter().map(|s| (s.0, batch_ids(&s.2))).collect();
        assert_eq!(produces, vec![(BrokerId(1), vec![(0, vec![1])])]);
        answer(&mut p, &mut cluster, 1301, out.produces()[0]);
        let out = outputs(&mut p);
        assert_eq!(out.done, vec![(RecordId(1), SendOutcome::Ok { tp, offset: Offset(0) })]);
        answer(&mut p, &mut cluster, 1302, out.produces()[0]);
        assert_eq!(outputs(&mut p).done, vec![(RecordId(2), SendOutcome::Ok { tp, offset: Offset(1) })]);
    }

    #[test]
    fn in_flight_record_past_delivery_timeout_is_info_and_late_answer_ignored() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let cfg = ProducerConfig { delivery_timeout_ms: 500, request_timeout_ms: 1000, ..config() };
        let mut p = ready_producer(cfg, &cluster, 0);
        p.send(0, rec(1, Some(0)));
        let s = outputs(&mut p).produces()[0].clone();
        assert_eq!(p.next_timeout_ms(), Some(500));
        p.handle_timeout(500);
        let out = outputs(&mut p);
        assert!(matches!(&out.done[..], [(RecordId(1), SendOutcome::Info { .. })]), "{out:?}");
        answer(&mut p, &mut cluster, 600, &s);
        assert!(outputs(&mut p).all.is_empty());
        assert_eq!(p.queued_records(), 0);
    }

    #[test]
    fn disconnect_fails_in_flight_requests_as_ambiguous_and_retries() {
        let mut cluster = FakeCluster::new(1, &[(T, 1)]);
        let mut p = ready_producer(ProducerConfig { retries: 1, ..config() }, &cluster, 0);
        p.send(0, rec(1, Some(0)));
        let _lost = outputs(&mut p).produces()[0].clone();
        p.handle_disconnect(10, BrokerId(0));
        let out = outputs(&mut p);
        assert!(out.done.is_empty() && out.closes.is_empty());
        for m in out.metadata_requests() {
            answer(&mut p, &mut cluster, 10, m);
        }
        p.handle_timeout(110);
        let retry = outputs(&mut p).produces()[0].clone();
        p.handle_disconnect(111, BrokerId(0));
        let out = outputs(&mut p);
        assert!(matches!(&out.done[..], [(RecordId(1), SendOutcome::Info { .. })]), "{out:?}");
        // A late answer to a failed request is never matched.
        answer(&mut p, &mut cluster, 112, &retry);
        assert!(outputs(&mut p).done.is_empty());
    }

    mod script {
        //! Every record ends in exactly one outcome, and the outcome is true,
        //! under a random script of sends, answers, losses and disconnects.
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::select;
        use std::collections::BTreeMap;

        const BROKERS: u32 = 3;
        const PARTITIONS: u32 = 4;

        #[derive(Clone, Debug)]
        enum Fate {
            Ok,
            AppendThenError(ErrorCode),
            RejectWith(ErrorCode),
            AppendAndLose,
            Lose,
        }

        #[derive(Clone, Debug)]
        enum Action {
            Send {
                key: Option<u8>,
                partition: Option<u32>,
            },
            Answer {
                pick: usize,
                fate: Fate,
            },
            Disconnect {
                broker: u32,
            },
            Advance {
                ms: u64,
            },
            MoveLeader {
                partition: u32,
                leader: Option<u32>,
            },
            /// An input whose clock reads earlier than the last one (skew).
            ClockStepsBack {
                ms: u64,
            },
        }

        fn error_code() -> impl Strategy<Value = ErrorCode> {
            select(vec![
                ErrorCode::NotLeaderOrFollower,
                ErrorCode::RequestTimedOut,
                ErrorCode::NetworkException,
                ErrorCode::NotEnoughReplicas,
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::KafkaStorageError,
                ErrorCode::CorruptMessage,
                ErrorCode::MessageTooLarge,
                ErrorCode::InvalidRequest,
            ])
        }

        fn fate() -> impl Strategy<Value = Fate> {
            prop_oneof![
                4 => Just(Fate::Ok),
                // A broker that appended can only answer with an indefinite error.
                1 => select(vec![ErrorCode::NotLeaderOrFollower, ErrorCode::RequestTimedOut, ErrorCode::NetworkException])
                    .prop_map(Fate::AppendThenError),
                2 => error_code().prop_map(Fate::RejectWith),
                1 => Just(Fate::AppendAndLose),
                1 => Just(Fate::Lose),
            ]
        }

        fn action() -> impl Strategy<Value = Action> {
            prop_oneof![
                4 => (proptest::option::of(0u8..6), proptest::option::weighted(0.3, 0..PARTITIONS))
                    .prop_map(|(key, partition)| Action::Send { key, partition }),
                5 => (any::<usize>(), fate()).prop_map(|(pick, fate)| Action::Answer { pick, fate }),
                1 => (0..BROKERS).prop_map(|broker| Action::Disconnect { broker }),
                3 => prop_oneof![0u64..20, 0u64..3000].prop_map(|ms| Action::Advance { ms }),
                1 => (0..PARTITIONS, proptest::option::weighted(0.8, 0..BROKERS))
                    .prop_map(|(partition, leader)| Action::MoveLeader { partition, leader }),
                1 => (1u64..5_000).prop_map(|ms| Action::ClockStepsBack { ms }),
            ]
        }

        fn producer_config() -> impl Strategy<Value = ProducerConfig> {
            (
                select(vec![Acks::All, Acks::Leader, Acks::None]),
                select(vec![1usize, 2, 5]),
                select(vec![0u64, 5, 50]),
                select(vec![REC_BYTES, 100, 16_384]),
                select(vec![0u32, 2, i32::MAX as u32]),
                select(vec![300u64, 2_000, 10_000]),
                select(vec![100u64, 1_000]),
                select(vec![PartitionerKind::Sticky, PartitionerKind::RoundRobin]),
            )
                .prop_map(|(acks, in_flight, linger, batch, retries, delivery, request, partitioner)| {
                    ProducerConfig {
                        acks,
                        linger_ms: linger,
                        batch_size_bytes: batch,
                        max_in_flight_per_broker: in_flight,
                        request_timeout_ms: request,
                        retries,
                        retry_backoff_ms: 50,
                        delivery_timeout_ms: delivery,
                        metadata_max_age_ms: 5_000,
                        partitioner,
                        max_queued_records: 30,
                    }
                })
        }

        struct World {
            p: Producer,
            cluster: FakeCluster,
            now: u64,
            outstanding: Vec<(BrokerId, u64, Request)>,
            next_id: u64,
            outcomes: BTreeMap<RecordId, SendOutcome>,
            appended: BTreeMap<RecordId, Vec<(TopicPartition, Offset)>>,
        }

        impl World {
            fn pump(&mut self) {
                while let Some(o) = self.p.poll_output() {
                    match o {
                        ProducerOutput::Send { broker, correlation_id, request } => {
                            for (_, ids) in batch_ids_if_produce(&request) {
                                for id in ids {
                                    assert!(!self.outcomes.contains_key(&RecordId(id)), "sent after completion");
                                }
                            }
                            self.outstanding.push((broker, correlation_id, request));
                        }
                        ProducerOutput::CloseConnection { broker } => self.outstanding.retain(|s| s.0 != broker),
                        ProducerOutput::Completed { id, outcome } => {
                            assert!(id.0 < self.next_id, "completed a record never sent");
                            assert!(self.outcomes.insert(id, outcome).is_none(), "{id:?} completed twice");
                        }
                    }
                }
                if let Some(t) = self.p.next_timeout_ms() {
                    assert!(t > self.now, "timer {t} not after now {}", self.now);
                }
            }

            fn append(&mut self, request: &Request) -> Vec<ProducePartitionResponse> {
                let Request::Produce { batches, .. } = request else { unreachable!() };
                let mut answers = Vec::new();
                for (tp, records) in batches {
                    let base = self.cluster.append(*tp, records);
                    for (i, r) in records.iter().enumerate() {
                        let id = RecordId(u64::from_be_bytes(r.value[..].try_into().unwrap()));
                        self.appended.entry(id).or_default().push((*tp, Offset(base.0 + i as i64)));
                    }
                    answers.push(ProducePartitionResponse { tp: *tp, error: None, base_offset: base });
                }
                answers
            }

            fn answer(&mut self, pick: usize, fate: Fate) {
                if self.outstanding.is_empty() {
                    return;
                }
                let (broker, id, request) = self.outstanding.remove(pick % self.outstanding.len());
                let response = match (&request, fate) {
                    (_, Fate::Lose) => None,
                    (Request::Metadata { .. }, Fate::AppendAndLose) => None,
                    (Request::Metadata { .. }, _) => Some(self.cluster.metadata()),
                    (Request::Produce { .. }, Fate::AppendAndLose) => {
                        self.append(&request);
                        None
                    }
                    (Request::Produce { .. }, Fate::Ok) => {
                        Some(Response::Produce { partitions: self.append(&request) })
                    }
                    (Request::Produce { .. }, Fate::AppendThenError(e)) => {
                        self.append(&request);
                        Some(produce_error(&request, e))
                    }
                    (Request::Produce { .. }, Fate::RejectWith(e)) => Some(produce_error(&request, e)),
                    _ => unreachable!("the producer sends only metadata and produce requests"),
                };
                if let Some(response) = response {
                    // Also for acks=0: the producer must ignore it.
                    self.p.handle_response(self.now, broker, id, response);
                }
                self.pump();
            }

            fn advance(&mut self, ms: u64) {
                let target = self.now + ms;
                while let Some(t) = self.p.next_timeout_ms().filter(|&t| t <= target) {
                    self.now = self.now.max(t);
                    self.p.handle_timeout(self.now);
                    self.pump();
                }
                self.now = target;
            }

            fn apply(&mut self, action: Action) {
                match action {
                    Action::Send { key, partition } => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let mut r = rec(id, partition);
                        r.key = key.map(|k| Bytes::from(vec![k]));
                        self.p.send(self.now, r);
                        self.pump();
                    }
                    Action::Answer { pick, fate } => self.answer(pick, fate),
                    Action::Disconnect { broker } => {
                        self.outstanding.retain(|s| s.0 != BrokerId(broker));
                        self.p.handle_disconnect(self.now, BrokerId(broker));
                        self.pump();
                    }
                    Action::Advance { ms } => self.advance(ms),
                    Action::MoveLeader { partition, leader } => {
                        let tp = self.cluster.tp(T, partition);
                        self.cluster.set_leader(tp, leader.map(BrokerId));
                    }
                    Action::ClockStepsBack { ms } => {
                        self.p.handle_timeout(self.now.saturating_sub(ms));
                        self.pump();
                    }
                }
            }

            /// Heal: every leader present, every request answered Ok.
            fn settle(&mut self) {
                for partition in 0..PARTITIONS {
                    let tp = self.cluster.tp(T, partition);
                    self.cluster.set_leader(tp, Some(BrokerId(partition % BROKERS)));
                }
                for _ in 0..10_000 {
                    if self.p.queued_records() == 0 {
                        return;
                    }
                    if self.outstanding.is_empty() {
                        let t = self.p.next_timeout_ms().expect("queued records need a timer");
                        self.advance(t.saturating_sub(self.now));
                    } else {
                        self.answer(0, Fate::Ok);
                    }
                }
                panic!("records still queued after settling: {}", self.p.queued_records());
            }
        }

        fn batch_ids_if_produce(request: &Request) -> Vec<(u32, Vec<u64>)> {
            match request {
                Request::Produce { .. } => batch_ids(request),
                _ => vec![],
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
            #[test]
            fn every_record_completes_once_and_truthfully(
                config in producer_config(),
                seed in any::<u64>(),
                actions in proptest::collection::vec(action(), 0..80),
            ) {
                let ordered = config.max_in_flight_per_broker == 1;
                let cluster = FakeCluster::new(BROKERS, &[(T, PARTITIONS)]);
                let p = Producer::new(config, cluster.brokers.clone(), seed);
                let mut w = World {
                    p, cluster, now: 0, outstanding: vec![], next_id: 0,
                    outcomes: BTreeMap::new(), appended: BTreeMap::new(),
                };
                w.advance(0);
                for action in actions {
                    w.apply(action);
                }
                w.settle();
                prop_assert_eq!(w.outcomes.len() as u64, w.next_id, "every record completed");
                let mut ok_by_tp: BTreeMap<TopicPartition, Vec<(RecordId, Offset)>> = BTreeMap::new();
                for (id, outcome) in &w.outcomes {
                    let appended = w.appended.get(id).cloned().unwrap_or_default();
                    match outcome {
                        SendOutcome::Ok { tp, offset } => {
                            prop_assert!(appended.contains(&(*tp, *offset)), "{:?} Ok at {}:{} not in log", id, tp, offset);
                            ok_by_tp.entry(*tp).or_default().push((*id, *offset));
                        }
                        SendOutcome::Fail { error } => {
                            prop_assert!(appended.is_empty(), "{:?} failed ({}) but was appended at {:?}", id, error, appended);
                        }
                        SendOutcome::Info { .. } => {}
                    }
                }
                if ordered {
                    for (tp, oks) in ok_by_tp {
                        let offsets: Vec<Offset> = oks.iter().map(|(_, o)| *o).collect();
                        prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{} acked out of send order: {:?}", tp, oks);
                    }
                }
            }
        }
    }
}
