//! The consumer in assign mode (no groups yet): a sans-IO state machine in the
//! shape of Kafka's `KafkaConsumer` + `Fetcher` + `OffsetFetcher`.
//!
//! Each assigned partition has a position (the next offset to return). A new
//! partition's position is unknown until a ListOffsets to its leader resets it
//! per `auto_offset_reset`, or until `seek()`. The consumer keeps one Fetch in
//! flight per broker, covering that broker's partitions that have a position,
//! no buffered records and no fetch in flight. `poll()` returns buffered
//! records and advances positions over exactly those records and the ones
//! skipped around them (see below).
//!
//! **Isolation levels** (`ConsumerConfig::isolation`, Kafka's
//! `isolation.level`). Under read_uncommitted (the default) a fetch reads up
//! to the high watermark and the application sees every record, including
//! those of open and aborted transactions. Under read_committed a fetch reads
//! only up to the last stable offset (the first offset of the earliest open
//! transaction), where every transaction in range has ended, and the broker
//! lists the aborted ones; the records of an aborted transaction are skipped
//! (`read_committed.rs`). Under both, transaction markers (control records)
//! are never returned. Skipped records and markers still move the position:
//! `poll()` passes over those it meets before, between and right after the
//! records it returns, so the position is always one past the last record
//! returned or skipped, and the next fetch starts after a marker instead of
//! fetching it forever. A fetch that brought only skipped records leaves
//! them to the next `poll()`, which returns nothing but moves the position,
//! as Kafka's does.
//!
//! Positions are validated after leader changes (KIP-320, Kafka's
//! `SubscriptionState` AWAIT_VALIDATION): a position remembers the leader
//! epoch of the last record `poll()` returned and the leader epoch it was
//! validated under. When the metadata names a newer leader epoch (a fetch
//! answered FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH only refreshes the
//! metadata, as in Kafka), the partition stops fetching, drops its buffer and
//! asks the leader OffsetsForLeaderEpoch where that record's epoch ends. An
//! end at or past the position validates it; an end below it is truncation
//! (an unclean election cut the log under the position): under
//! `Earliest`/`Latest` the position moves back to that end, the first offset
//! known to diverge (`TruncationDetected`); if the leader knows no epoch that
//! old, the position is reset per policy (also reported as
//! `TruncationDetected`); under `None` nothing moves and the partition pauses
//! until `seek()` (`LogTruncation`, Kafka's LogTruncationException). A
//! position that no record set (after assign, reset or seek) needs no
//! validation. A skipped record or marker counts as consumed: the position
//! it sets carries its leader epoch (as Kafka's position takes the epoch of
//! the last batch its fetch walked, returned or skipped). Validation asks
//! where that epoch ends, and the skipped record at position − 1 was written
//! in it; the epoch of an earlier returned record could end before the
//! position on an intact log (a false truncation, moving the position back),
//! and a position that only skipped records set would not be validated at all.
//!
//! **Invariant: the position only moves over records `poll()` returned or
//! skipped**, or
//! by an explicit `seek()`, or by an offset reset (`assign`, or
//! OFFSET_OUT_OF_RANGE under `Earliest`/`Latest`), or by detected truncation.
//! A fetch answer is kept only if the partition's position still equals the
//! offset the fetch asked for and is not awaiting validation.

use super::inflight::{InFlight, MIN_RETRY_BACKOFF_MS};
use super::metadata::ClientMetadata;
use crate::protocol::{
    EpochEnd, EpochQuery, ErrorCode, FetchPartition, FetchPartitionResponse, Isolation, ListOffsetsPartition,
    ListOffsetsPartitionResponse, OffsetSpec, Request, Response,
};
use crate::types::{BrokerId, LeaderEpoch, Offset, StoredRecord, TopicPartition};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use read_committed::TxnFilter;
use std::collections::{BTreeMap, VecDeque};

/// Largest assignment a consumer accepts.
pub const MAX_ASSIGNED_PARTITIONS: usize = 65_536;
/// Largest accepted `max_poll_records`.
pub const MAX_POLL_RECORDS_LIMIT: usize = 1_000_000;

/// What to do when a partition has no valid position (Kafka's `auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    Earliest,
    #[default]
    Latest,
    /// No reset: a new partition waits for `seek()`; OFFSET_OUT_OF_RANGE is
    /// reported as an `Error` output and the partition pauses until `seek()`.
    None,
}

impl AutoOffsetReset {
    fn spec(self) -> Option<OffsetSpec> {
        match self {
            AutoOffsetReset::Earliest => Some(OffsetSpec::Earliest),
            AutoOffsetReset::Latest => Some(OffsetSpec::Latest),
            AutoOffsetReset::None => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub auto_offset_reset: AutoOffsetReset,
    pub fetch_max_wait_ms: u64,
    pub fetch_min_bytes: u32,
    pub fetch_max_bytes: u32,
    pub max_partition_fetch_bytes: u32,
    pub max_poll_records: usize,
    /// A Fetch's deadline is this plus `fetch_max_wait_ms` (the broker may
    /// legitimately hold it that long); other requests get this alone.
    pub request_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    pub metadata_max_age_ms: u64,
    /// `isolation.level`: read_uncommitted (Kafka's default) or read_committed.
    pub isolation: Isolation,
}

impl Default for ConsumerConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            max_poll_records: 500,
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            metadata_max_age_ms: 300_000,
            isolation: Isolation::ReadUncommitted,
        }
    }
}

impl ConsumerConfig {
    fn validate(&self) {
        assert!(
            (1..=MAX_POLL_RECORDS_LIMIT).contains(&self.max_poll_records),
            "max_poll_records must be in 1..={MAX_POLL_RECORDS_LIMIT}"
        );
        assert!(self.fetch_max_bytes > 0 && self.max_partition_fetch_bytes > 0, "fetch sizes must be positive");
        assert!(self.request_timeout_ms > 0, "request_timeout_ms must be positive");
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub tp: TopicPartition,
    pub record: StoredRecord,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerOutput {
    /// Send `request` to `broker` (connecting first if needed).
    Send { broker: BrokerId, correlation_id: u64, request: Request },
    /// A request to `broker` timed out: drop the connection so that no late
    /// response is delivered. Every request in flight on it has been failed.
    CloseConnection { broker: BrokerId },
    /// An error the application must see. OFFSET_OUT_OF_RANGE under
    /// `AutoOffsetReset::None`: the partition is paused until `seek()`.
    Error { tp: TopicPartition, error: ErrorCode },
    /// The position was out of range (the log was truncated under it, e.g.
    /// after an unclean election, or retention passed it) and
    /// `auto_offset_reset` moved it from `from` to `to`: reported, never
    /// silent, so the application (and the history) sees the jump.
    PositionReset { tp: TopicPartition, from: Offset, to: Offset },
    /// Validation after a leader change found the log truncated below the
    /// position (KIP-320; an unclean election): the position moved from
    /// `from` to `to`, the end of the last leader epoch the consumer and the
    /// leader share (back, so what the new leader holds there is read), or,
    /// when the leader knows no epoch that old, to where `auto_offset_reset`
    /// points. Never under `AutoOffsetReset::None` (see `LogTruncation`).
    TruncationDetected { tp: TopicPartition, from: Offset, to: Offset },
    /// Truncation detected under `AutoOffsetReset::None` (Kafka's
    /// LogTruncationException): the position stays at `position` and the
    /// partition is paused until `seek()`. `divergent` is the first offset
    /// known to diverge, `None` when the leader knows no epoch that old.
    LogTruncation { tp: TopicPartition, position: Offset, divergent: Option<Offset> },
}

/// An assigned partition, by topic name and partition number.
type Key = (String, u32);

/// What a fetch left for `poll()`.
#[derive(Clone, Debug)]
enum Buffered {
    /// A record for the application.
    Record(ConsumedRecord),
    /// Records the application never sees (markers; under read_committed,
    /// aborted transactions' records), up to `last`, the last of them written
    /// in `leader_epoch`: `poll()` moves the position past them. A run of them
    /// is one entry, as only where it ends matters.
    Skipped { last: Offset, leader_epoch: LeaderEpoch },
}

impl Buffered {
    /// The offset of the last record this entry covers.
    fn last_offset(&self) -> Offset {
        match self {
            Buffered::Record(consumed) => consumed.record.offset,
            Buffered::Skipped { last, .. } => *last,
        }
    }
}

#[derive(Clone, Debug)]
struct PartitionState {
    position: Option<Offset>,
    /// A ListOffsets is wanted to set the position.
    reset: Option<OffsetSpec>,
    reset_in_flight: Option<u64>,
    /// The position a pending reset replaces, and why.
    displaced: Option<Displaced>,
    /// The leader epoch of the last record `poll()` returned or skipped
    /// (Kafka's offset epoch): what validation asks about. `None` after
    /// assign, reset or seek.
    last_epoch: Option<LeaderEpoch>,
    /// The leader epoch the position was validated under, as the metadata
    /// gave it; fetches and ListOffsets carry it (KIP-320).
    leader_epoch: LeaderEpoch,
    /// The metadata names a newer leader epoch: no fetch until an
    /// OffsetsForLeaderEpoch answer validates the position.
    awaiting_validation: bool,
    validation_in_flight: Option<u64>,
    fetch_in_flight: Option<u64>,
    /// Fetched, not yet returned or skipped; offsets ascending, all >= position.
    buffered: VecDeque<Buffered>,
    /// No fetch or reset before this (after an error).
    retry_at_ms: u64,
    /// OFFSET_OUT_OF_RANGE or truncation without a reset policy: nothing until `seek()`.
    paused: bool,
    /// The high watermark the last successful fetch reported (under
    /// read_committed too: see `caught_up`), and when it was answered.
    fetched_hw: Option<(Offset, u64)>,
    /// The partition's id under metadata version `tp_version` (version 0,
    /// the default, knows no topics, so `None` is right for it).
    tp: Option<TopicPartition>,
    tp_version: u64,
}

impl Default for PartitionState {
    fn default() -> Self {
        PartitionState {
            position: None,
            reset: None,
            reset_in_flight: None,
            displaced: None,
            last_epoch: None,
            leader_epoch: LeaderEpoch::NONE,
            awaiting_validation: false,
            validation_in_flight: None,
            fetch_in_flight: None,
            buffered: VecDeque::new(),
            retry_at_ms: 0,
            paused: false,
            fetched_hw: None,
            tp: None,
            tp_version: 0,
        }
    }
}

impl PartitionState {
    /// Whether a fetch may be sent for this partition now (leader aside).
    fn fetchable(&self) -> bool {
        self.position.is_some()
            && self.reset.is_none()
            && !self.awaiting_validation
            && !self.paused
            && self.buffered.is_empty()
            && self.fetch_in_flight.is_none()
    }
}

/// Why a reset replaces a position: reported with the move once it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Displaced {
    /// OFFSET_OUT_OF_RANGE at this position.
    OutOfRange(Offset),
    /// Truncation detected at this position; the leader knew no epoch to say where.
    Truncated(Offset),
}

/// A position under validation as asked: where it was, and under which leader epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Asked {
    position: Offset,
    leader_epoch: LeaderEpoch,
}

#[derive(Clone, Debug)]
enum Pending {
    Metadata,
    Fetch { partitions: Vec<(TopicPartition, Key, Offset)> },
    ListOffsets { partitions: Vec<(TopicPartition, Key)> },
    Validation { partitions: Vec<(TopicPartition, Key, Asked)> },
}

pub struct Consumer {
    config: ConsumerConfig,
    metadata: ClientMetadata,
    assigned: BTreeMap<Key, PartitionState>,
    in_flight: InFlight<Pending>,
    outputs: VecDeque<ConsumerOutput>,
    /// Where the next `poll()` starts, for fairness across partitions.
    poll_cursor: Option<Key>,
    now_ms: u64,
    started: bool,
    /// A `seek()` (which has no `now_ms`) left work for the next drive.
    seeked: bool,
}

impl Consumer {
    pub fn new(config: ConsumerConfig, bootstrap: Vec<BrokerId>, rng_seed: u64) -> Consumer {
        config.validate();
        assert!(!bootstrap.is_empty(), "a consumer needs at least one bootstrap broker");
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let start = rng.gen_range(0..bootstrap.len());
        Consumer {
            config,
            metadata: ClientMetadata::new(bootstrap, start),
            assigned: BTreeMap::new(),
            in_flight: InFlight::new(),
            outputs: VecDeque::new(),
            poll_cursor: None,
            now_ms: 0,
            started: false,
            seeked: false,
        }
    }

    /// The consumer's cluster view.
    pub fn metadata(&self) -> &ClientMetadata {
        &self.metadata
    }

    /// Replaces the assignment. Partitions kept keep their position and
    /// buffer; new ones start without a position (reset per policy).
    pub fn assign(&mut self, now_ms: u64, partitions: Vec<(String, u32)>) {
        let now_ms = self.advance_clock(now_ms);
        assert!(partitions.len() <= MAX_ASSIGNED_PARTITIONS, "assignment too large");
        let mut old = std::mem::take(&mut self.assigned);
        for key in partitions {
            let state = old.remove(&key).unwrap_or_else(|| PartitionState {
                reset: self.config.auto_offset_reset.spec(),
                ..PartitionState::default()
            });
            self.assigned.insert(key, state);
        }
        self.drive(now_ms);
    }

    /// Sets the position and drops buffered records of that partition. Takes
    /// effect at the next input; until then `next_timeout_ms()` asks for one now.
    pub fn seek(&mut self, tp_topic: &str, partition: u32, offset: Offset) {
        assert!(offset.0 >= 0, "seek to negative offset {offset}");
        let key = (tp_topic.to_string(), partition);
        let state = self.assigned.get_mut(&key).unwrap_or_else(|| panic!("seek on unassigned {tp_topic}-{partition}"));
        state.position = Some(offset);
        state.buffered.clear();
        state.paused = false;
        state.reset = None;
        state.displaced = None;
        // A sought position has no record behind it to validate (as Kafka's
        // seek without a leader epoch).
        state.last_epoch = None;
        state.awaiting_validation = false;
        // A reset or validation answer in flight is ignored; a fetch answer in
        // flight is kept only if it asked for this very offset.
        state.reset_in_flight = None;
        state.validation_in_flight = None;
        self.seeked = true;
    }

    /// Whether the partition is read to its end as far as the consumer
    /// knows since `since_ms`: it has a position, nothing buffered, and the
    /// position is at or past the high watermark its last fetch reported,
    /// which was answered at or after `since_ms` (a fetch answered before
    /// the last writes knows nothing of them). Under read_committed
    /// too, unlike Kafka's `currentLag` (measured from the last stable
    /// offset): a position held at the LSO by a transaction still undecided
    /// below the high watermark has not read what that transaction's
    /// marker, when it lands, may make readable. (A read_committed position
    /// steps over aborted records and markers, so it reaches the high
    /// watermark once every transaction below it is decided.)
    pub fn caught_up(&self, topic: &str, partition: u32, since_ms: u64) -> bool {
        self.assigned.get(&(topic.to_string(), partition)).is_some_and(|s| {
            s.buffered.is_empty()
                && matches!((s.position, s.fetched_hw), (Some(position), Some((hw, at_ms)))
                    if position >= hw && at_ms >= since_ms)
        })
    }

    pub fn position(&self, topic: &str, partition: u32) -> Option<Offset> {
        self.assigned.get(&(topic.to_string(), partition)).and_then(|s| s.position)
    }

    pub fn topic_partition(&self, topic: &str, partition: u32) -> Option<TopicPartition> {
        self.metadata.topic_partition(topic, partition)
    }

    /// Returns up to `max_poll_records` fetched records, in offset order per
    /// partition, advancing positions over them and the skipped records
    /// around them; then issues fetches.
    pub fn poll(&mut self, now_ms: u64) -> Vec<ConsumedRecord> {
        let now_ms = self.advance_clock(now_ms);
        let max = self.config.max_poll_records;
        let buffered: usize = self.assigned.values().map(|s| s.buffered.len()).sum();
        let mut out = Vec::with_capacity(buffered.min(max));
        // Assigned partitions in key order, starting at the cursor and wrapping.
        let cursor = self.poll_cursor.take();
        let stopped_at = match &cursor {
            Some(c) => take_buffered(self.assigned.range_mut(c..), max, &mut out)
                .or_else(|| take_buffered(self.assigned.range_mut(..c), max, &mut out)),
            None => take_buffered(self.assigned.iter_mut(), max, &mut out),
        };
        // The cursor moves only when a poll fills up before a partition.
        self.poll_cursor = stopped_at.or(cursor);
        assert!(out.len() <= max);
        self.drive(now_ms);
        out
    }

    /// Whether a fetch left something for `poll()`: records to return, or
    /// skipped ones to move the position past.
    pub fn has_buffered(&self) -> bool {
        self.assigned.values().any(|s| !s.buffered.is_empty())
    }

    pub fn handle_response(&mut self, now_ms: u64, broker: BrokerId, correlation_id: u64, response: Response) {
        let now_ms = self.advance_clock(now_ms);
        match (self.in_flight.take(broker, correlation_id), response) {
            (None, _) => {} // the request was already failed
            (Some(Pending::Metadata), Response::Metadata { brokers, topics }) => {
                self.metadata.handle_response(now_ms, brokers, topics);
            }
            (Some(Pending::Fetch { partitions }), Response::Fetch { partitions: mut answers }) => {
                for (tp, key, fetch_offset) in partitions {
                    // Each partition is in a fetch once, so its records can be moved out.
                    let answer = answers.iter_mut().find(|a| a.tp == tp);
                    self.handle_fetch_answer(now_ms, correlation_id, tp, key, fetch_offset, answer);
                }
            }
            (Some(Pending::ListOffsets { partitions }), Response::ListOffsets { partitions: answers }) => {
                for (tp, key) in partitions {
                    let answer = answers.iter().find(|a| a.tp == tp);
                    self.handle_list_offsets_answer(now_ms, correlation_id, key, answer);
                }
            }
            (Some(Pending::Validation { partitions }), Response::OffsetsForLeaderEpoch { partitions: answers }) => {
                for (tp, key, asked) in partitions {
                    let answer = answers.iter().find(|a| a.tp == tp);
                    self.handle_validation_answer(now_ms, correlation_id, tp, key, asked, answer);
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
        self.fail_broker(now_ms, broker);
        self.drive(now_ms);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now_ms = self.advance_clock(now_ms);
        self.drive(now_ms);
    }

    pub fn poll_output(&mut self) -> Option<ConsumerOutput> {
        self.outputs.pop_front()
    }

    /// Absolute time of the next wake-up wanted: `Some(0)` before the first
    /// input, the current time after a `seek()`.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        if !self.started {
            return Some(0);
        }
        let now = self.now_ms;
        if self.seeked {
            return Some(now);
        }
        let refresh = self.metadata.refresh_due_ms(self.config.metadata_max_age_ms, self.backoff_ms());
        let retries = self.assigned.values().map(|s| s.retry_at_ms);
        self.in_flight.next_deadline_ms().into_iter().chain(refresh).chain(retries).filter(|&t| t > now).min()
    }

    // ---- the work loop ------------------------------------------------------

    /// The consumer's monotonic clock: when the caller's clock steps back,
    /// time stands still until it catches up (see `Producer`).
    fn advance_clock(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.started = true;
        self.now_ms
    }

    fn drive(&mut self, now_ms: u64) {
        self.seeked = false;
        while let Some(broker) = self.in_flight.expired_broker(now_ms) {
            self.outputs.push_back(ConsumerOutput::CloseConnection { broker });
            self.fail_broker(now_ms, broker);
        }
        self.resolve_partitions();
        let unknown_leader = self.assigned.values().any(|s| s.tp.and_then(|tp| self.metadata.leader(tp)).is_none());
        if unknown_leader {
            self.metadata.request_refresh();
        }
        self.note_leader_epochs();
        self.send_validations(now_ms);
        self.send_list_offsets(now_ms);
        self.send_fetches(now_ms);
        if self
            .metadata
            .refresh_due_ms(self.config.metadata_max_age_ms, self.backoff_ms())
            .is_some_and(|due| due <= now_ms)
        {
            let (broker, request) = self.metadata.start_refresh(now_ms);
            self.send_request(now_ms, broker, request, Pending::Metadata);
        }
    }

    /// Brings each assigned partition's cached `tp` up to the metadata's
    /// version (names are looked up only when the metadata changed).
    fn resolve_partitions(&mut self) {
        let version = self.metadata.version();
        for ((topic, partition), state) in &mut self.assigned {
            if state.tp_version != version {
                state.tp = self.metadata.topic_partition(topic, *partition);
                state.tp_version = version;
            }
            debug_assert_eq!(state.tp, self.metadata.topic_partition(topic, *partition));
        }
    }

    /// KIP-320: a partition whose leader epoch in the metadata differs from
    /// the one its position was validated under takes the new one, and its
    /// position, if a consumed record set it, awaits validation (Kafka's
    /// `maybeValidatePositionForCurrentLeader`). Without a leader nothing
    /// changes yet: the next leader's epoch is what counts.
    fn note_leader_epochs(&mut self) {
        for state in self.assigned.values_mut() {
            let Some(tp) = state.tp else { continue };
            let epoch = self.metadata.leader_epoch(tp);
            if epoch == state.leader_epoch || epoch == LeaderEpoch::NONE || self.metadata.leader(tp).is_none() {
                continue;
            }
            state.leader_epoch = epoch;
            if state.position.is_some() && state.last_epoch.is_some() && state.reset.is_none() && !state.paused {
                // What was fetched under the old leader is not returned until
                // the position is known to be on the new leader's log.
                state.awaiting_validation = true;
                state.buffered.clear();
            }
        }
    }

    fn backoff_ms(&self) -> u64 {
        self.config.retry_backoff_ms.max(MIN_RETRY_BACKOFF_MS)
    }

    fn send_request(&mut self, now_ms: u64, broker: BrokerId, request: Request, pending: Pending) -> u64 {
        let correlation_id = self.in_flight.next_id();
        self.outputs.push_back(ConsumerOutput::Send { broker, correlation_id, request });
        self.in_flight.insert(correlation_id, broker, now_ms + self.config.request_timeout_ms, pending);
        correlation_id
    }

    /// Assigned partitions with a known leader that `wanted` selects, grouped by leader.
    fn by_leader(
        &self,
        now_ms: u64,
        wanted: impl Fn(&PartitionState) -> bool,
    ) -> BTreeMap<BrokerId, Vec<(TopicPartition, Key)>> {
        let mut groups: BTreeMap<BrokerId, Vec<(TopicPartition, Key)>> = BTreeMap::new();
        for (key, state) in &self.assigned {
            if state.retry_at_ms > now_ms || !wanted(state) {
                continue;
            }
            let Some(tp) = state.tp else { continue };
            if let Some(leader) = self.metadata.leader(tp) {
                groups.entry(leader).or_default().push((tp, key.clone()));
            }
        }
        groups
    }

    /// One ListOffsets per leader (none while one is in flight to it).
    fn send_list_offsets(&mut self, now_ms: u64) {
        let groups = self.by_leader(now_ms, |s| s.reset.is_some() && s.reset_in_flight.is_none());
        for (broker, partitions) in groups {
            if self.in_flight.count(broker, |p| matches!(p, Pending::ListOffsets { .. })) > 0 {
                continue;
            }
            let correlation_id = self.in_flight.next_id();
            let mut request_partitions = Vec::with_capacity(partitions.len());
            for (tp, key) in &partitions {
                let state = self.assigned.get_mut(key).expect("grouped above");
                request_partitions.push(ListOffsetsPartition {
                    tp: *tp,
                    spec: state.reset.expect("wanted above"),
                    current_leader_epoch: state.leader_epoch,
                });
                state.reset_in_flight = Some(correlation_id);
            }
            let request = Request::ListOffsets { isolation: self.config.isolation, partitions: request_partitions };
            self.outputs.push_back(ConsumerOutput::Send { broker, correlation_id, request });
            let deadline = now_ms + self.config.request_timeout_ms;
            self.in_flight.insert(correlation_id, broker, deadline, Pending::ListOffsets { partitions });
        }
    }

    /// One OffsetsForLeaderEpoch per leader for positions awaiting validation
    /// (none while one is in flight to it): where does the epoch of the last
    /// consumed record end in the leader's log?
    fn send_validations(&mut self, now_ms: u64) {
        let groups = self.by_leader(now_ms, |s| s.awaiting_validation && s.validation_in_flight.is_none());
        for (broker, partitions) in groups {
            if self.in_flight.count(broker, |p| matches!(p, Pending::Validation { .. })) > 0 {
                continue;
            }
            let correlation_id = self.in_flight.next_id();
            let mut queries = Vec::with_capacity(partitions.len());
            let mut pending = Vec::with_capacity(partitions.len());
            for (tp, key) in partitions {
                let state = self.assigned.get_mut(&key).expect("grouped above");
                let position = state.position.expect("a position awaiting validation exists");
                let last_epoch = state.last_epoch.expect("only a consumed record's epoch is validated");
                assert_ne!(state.leader_epoch, LeaderEpoch::NONE, "{tp} validated without a leader epoch");
                state.validation_in_flight = Some(correlation_id);
                queries.push(EpochQuery { tp, current_leader_epoch: state.leader_epoch, leader_epoch: last_epoch });
                pending.push((tp, key, Asked { position, leader_epoch: state.leader_epoch }));
            }
            let request = Request::OffsetsForLeaderEpoch { partitions: queries };
            self.outputs.push_back(ConsumerOutput::Send { broker, correlation_id, request });
            let deadline = now_ms + self.config.request_timeout_ms;
            self.in_flight.insert(correlation_id, broker, deadline, Pending::Validation { partitions: pending });
        }
    }

    /// One Fetch per leader (none while one is in flight to it).
    fn send_fetches(&mut self, now_ms: u64) {
        let groups = self.by_leader(now_ms, PartitionState::fetchable);
        for (broker, partitions) in groups {
            if self.in_flight.count(broker, |p| matches!(p, Pending::Fetch { .. })) > 0 {
                continue;
            }
            let correlation_id = self.in_flight.next_id();
            let mut fetch_partitions = Vec::with_capacity(partitions.len());
            let mut pending = Vec::with_capacity(partitions.len());
            for (tp, key) in partitions {
                let state = self.assigned.get_mut(&key).expect("grouped above");
                let fetch_offset = state.position.expect("wanted above");
                assert!(state.fetch_in_flight.is_none(), "{tp} fetched twice at once");
                state.fetch_in_flight = Some(correlation_id);
                fetch_partitions.push(FetchPartition {
                    tp,
                    fetch_offset,
                    partition_max_bytes: self.config.max_partition_fetch_bytes,
                    current_leader_epoch: state.leader_epoch,
                });
                pending.push((tp, key, fetch_offset));
            }
            let request = Request::Fetch {
                replica: None,
                isolation: self.config.isolation,
                max_wait_ms: self.config.fetch_max_wait_ms,
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_max_bytes,
                partitions: fetch_partitions,
            };
            self.outputs.push_back(ConsumerOutput::Send { broker, correlation_id, request });
            let deadline = now_ms + self.config.request_timeout_ms + self.config.fetch_max_wait_ms;
            self.in_flight.insert(correlation_id, broker, deadline, Pending::Fetch { partitions: pending });
        }
    }

    // ---- answers ------------------------------------------------------------

    fn handle_fetch_answer(
        &mut self,
        now_ms: u64,
        correlation_id: u64,
        tp: TopicPartition,
        key: Key,
        fetch_offset: Offset,
        answer: Option<&mut FetchPartitionResponse>,
    ) {
        let backoff = self.backoff_ms();
        let policy = self.config.auto_offset_reset;
        let isolation = self.config.isolation;
        // Unassigned since, or reassigned afresh: the answer is not for this state.
        let Some(state) = self.assigned.get_mut(&key) else { return };
        if state.fetch_in_flight != Some(correlation_id) {
            return;
        }
        state.fetch_in_flight = None;
        let current = state.position == Some(fetch_offset)
            && !state.paused
            && state.reset.is_none()
            && !state.awaiting_validation;
        let Some(answer) = answer else {
            state.retry_at_ms = now_ms + backoff;
            return;
        };
        if answer.error.is_none() && current {
            state.fetched_hw = Some((answer.high_watermark, now_ms));
        }
        match answer.error {
            None if current => {
                assert!(state.buffered.is_empty(), "fetched {tp} while records were buffered");
                buffer_fetched(&mut state.buffered, tp, fetch_offset, answer, isolation);
            }
            None => {} // stale: a seek or reset moved the position meanwhile, or it awaits validation
            Some(error) if error.needs_metadata_refresh() => {
                self.metadata.request_refresh();
                state.retry_at_ms = now_ms + backoff;
            }
            Some(ErrorCode::OffsetOutOfRange) if current => match policy.spec() {
                Some(spec) => {
                    state.displaced = Some(Displaced::OutOfRange(fetch_offset));
                    state.position = None;
                    state.last_epoch = None;
                    state.reset = Some(spec);
                }
                None => {
                    state.paused = true;
                    self.outputs.push_back(ConsumerOutput::Error { tp, error: ErrorCode::OffsetOutOfRange });
                }
            },
            Some(error) => {
                state.retry_at_ms = now_ms + backoff;
                if !error.is_retriable() && current {
                    self.outputs.push_back(ConsumerOutput::Error { tp, error });
                }
            }
        }
    }

    fn handle_list_offsets_answer(
        &mut self,
        now_ms: u64,
        correlation_id: u64,
        key: Key,
        answer: Option<&ListOffsetsPartitionResponse>,
    ) {
        let backoff = self.backoff_ms();
        let Some(state) = self.assigned.get_mut(&key) else { return };
        if state.reset_in_flight != Some(correlation_id) {
            return; // a seek superseded this reset
        }
        state.reset_in_flight = None;
        assert!(state.reset.is_some(), "a reset in flight implies a reset wanted");
        match answer {
            Some(ListOffsetsPartitionResponse { error: None, offset, .. }) => {
                assert!(offset.0 >= 0, "negative offset {offset} from ListOffsets");
                assert!(state.buffered.is_empty(), "records buffered before the position was known");
                assert!(!state.awaiting_validation && state.last_epoch.is_none(), "a reset position has no epoch");
                state.position = Some(*offset);
                state.reset = None;
                let tp = answer.map(|a| a.tp).expect("answered");
                match state.displaced.take() {
                    Some(Displaced::OutOfRange(from)) => {
                        self.outputs.push_back(ConsumerOutput::PositionReset { tp, from, to: *offset })
                    }
                    Some(Displaced::Truncated(from)) => {
                        self.outputs.push_back(ConsumerOutput::TruncationDetected { tp, from, to: *offset })
                    }
                    None => {}
                }
            }
            Some(ListOffsetsPartitionResponse { error, .. }) => {
                retry_later(&mut self.metadata, state, *error, now_ms + backoff)
            }
            None => retry_later(&mut self.metadata, state, None, now_ms + backoff),
        }
    }

    fn handle_validation_answer(
        &mut self,
        now_ms: u64,
        correlation_id: u64,
        tp: TopicPartition,
        key: Key,
        asked: Asked,
        answer: Option<&EpochEnd>,
    ) {
        let backoff = self.backoff_ms();
        let Some(state) = self.assigned.get_mut(&key) else { return };
        if state.validation_in_flight != Some(correlation_id) {
            return; // a seek superseded this validation
        }
        state.validation_in_flight = None;
        // A newer leader epoch meanwhile: the position is validated again under it.
        let current = state.awaiting_validation
            && state.position == Some(asked.position)
            && state.leader_epoch == asked.leader_epoch;
        if !current {
            return;
        }
        match answer {
            Some(EpochEnd { error: None, end, .. }) => self.complete_validation(tp, &key, asked.position, *end),
            Some(EpochEnd { error: Some(error), .. }) => {
                // FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH: the metadata is
                // behind or ahead of the leader; refresh and ask again.
                retry_later(&mut self.metadata, state, Some(*error), now_ms + backoff);
                if !error.is_retriable() {
                    self.outputs.push_back(ConsumerOutput::Error { tp, error: *error });
                }
            }
            None => retry_later(&mut self.metadata, state, None, now_ms + backoff),
        }
    }

    /// The leader says where the epoch of the last consumed record ends
    /// (`None`: it knows no epoch that old). Kafka's `maybeCompleteValidation`.
    fn complete_validation(
        &mut self,
        tp: TopicPartition,
        key: &Key,
        position: Offset,
        end: Option<(LeaderEpoch, Offset)>,
    ) {
        let policy = self.config.auto_offset_reset;
        let state = self.assigned.get_mut(key).expect("validated above");
        assert!(state.awaiting_validation && state.buffered.is_empty(), "{tp} validated while fetchable");
        state.awaiting_validation = false;
        let output = match (end, policy.spec()) {
            (Some((_, end)), _) if end >= position => None,
            (Some((epoch, end)), Some(_)) => {
                assert!(end.0 >= 0, "negative epoch end {end} for {tp}");
                state.position = Some(end);
                state.last_epoch = Some(epoch);
                Some(ConsumerOutput::TruncationDetected { tp, from: position, to: end })
            }
            (None, Some(spec)) => {
                state.position = None;
                state.last_epoch = None;
                state.reset = Some(spec);
                state.displaced = Some(Displaced::Truncated(position));
                None // reported once the reset has found where to go
            }
            (end, None) => {
                state.paused = true;
                Some(ConsumerOutput::LogTruncation { tp, position, divergent: end.map(|(_, offset)| offset) })
            }
        };
        self.outputs.extend(output);
    }

    /// Fails every request in flight to `broker` (disconnect or request timeout).
    fn fail_broker(&mut self, now_ms: u64, broker: BrokerId) {
        let retry_at_ms = now_ms + self.backoff_ms();
        for (correlation_id, pending) in self.in_flight.take_broker(broker) {
            match pending {
                Pending::Metadata => self.metadata.handle_failure(),
                Pending::Fetch { partitions } => {
                    for (_, key, _) in partitions {
                        if let Some(state) = self.assigned.get_mut(&key) {
                            if state.fetch_in_flight == Some(correlation_id) {
                                state.fetch_in_flight = None;
                                state.retry_at_ms = retry_at_ms;
                            }
                        }
                    }
                }
                Pending::ListOffsets { partitions } => {
                    for (_, key) in partitions {
                        if let Some(state) = self.assigned.get_mut(&key) {
                            if state.reset_in_flight == Some(correlation_id) {
                                state.reset_in_flight = None;
                                state.retry_at_ms = retry_at_ms;
                            }
                        }
                    }
                }
                Pending::Validation { partitions } => {
                    for (_, key, _) in partitions {
                        if let Some(state) = self.assigned.get_mut(&key) {
                            if state.validation_in_flight == Some(correlation_id) {
                                state.validation_in_flight = None;
                                state.retry_at_ms = retry_at_ms;
                            }
                        }
                    }
                }
            }
        }
        self.metadata.request_refresh();
    }
}

/// Buffers a fetch answer's records for `poll()`. Records below the position
/// (an earlier batch start) and any out-of-order repeats are dropped; gaps
/// are passed through so that checkers see them; what the application must
/// not see becomes a skip.
fn buffer_fetched(
    buffered: &mut VecDeque<Buffered>,
    tp: TopicPartition,
    fetch_offset: Offset,
    answer: &mut FetchPartitionResponse,
    isolation: Isolation,
) {
    let mut filter = TxnFilter::new(isolation, std::mem::take(&mut answer.aborted));
    buffered.reserve(answer.records.len());
    let mut next = fetch_offset;
    for record in std::mem::take(&mut answer.records) {
        if record.offset < next {
            continue;
        }
        next = record.offset.next();
        if filter.passes(&record) {
            buffered.push_back(Buffered::Record(ConsumedRecord { tp, record }));
        } else if let Some(Buffered::Skipped { last, leader_epoch }) = buffered.back_mut() {
            (*last, *leader_epoch) = (record.offset, record.leader_epoch);
        } else {
            buffered.push_back(Buffered::Skipped { last: record.offset, leader_epoch: record.leader_epoch });
        }
    }
    debug_assert!(buffered.iter().zip(buffered.iter().skip(1)).all(|(a, b)| a.last_offset() < b.last_offset()));
}

/// Moves buffered records into `out` from each partition in turn, advancing
/// positions, until `out` holds `max`. Returns the first partition it did not
/// reach because `out` was full.
fn take_buffered<'a>(
    partitions: impl Iterator<Item = (&'a Key, &'a mut PartitionState)>,
    max: usize,
    out: &mut Vec<ConsumedRecord>,
) -> Option<Key> {
    for (key, state) in partitions {
        if out.len() == max {
            return Some(key.clone());
        }
        take_from(state, max, out);
    }
    None
}

/// Moves one partition's buffered records into `out` until it holds `max`,
/// and skips what it meets on the way, up to the next record that does not
/// fit: skipped records right after the last one returned are passed too, so
/// that a poll returning a transaction's last record also moves past its
/// marker.
fn take_from(state: &mut PartitionState, max: usize, out: &mut Vec<ConsumedRecord>) {
    while let Some(front) = state.buffered.front() {
        if matches!(front, Buffered::Record(_)) && out.len() == max {
            return;
        }
        let position = state.position.expect("buffered records imply a position");
        assert!(front.last_offset() >= position, "buffered record below the position");
        assert!(!state.awaiting_validation, "records consumed while awaiting validation");
        match state.buffered.pop_front().expect("looked at above") {
            Buffered::Record(consumed) => {
                state.position = Some(consumed.record.offset.next());
                state.last_epoch = Some(consumed.record.leader_epoch);
                out.push(consumed);
            }
            Buffered::Skipped { last, leader_epoch } => {
                state.position = Some(last.next());
                state.last_epoch = Some(leader_epoch);
            }
        }
    }
    // A queue never gives back its capacity, and one large fetch (a lagging
    // consumer gets up to max.partition.fetch.bytes) would otherwise pin
    // that much memory per partition for the rest of the run.
    if state.buffered.is_empty() && state.buffered.capacity() > RETAINED_BUFFER_CAPACITY {
        state.buffered = VecDeque::new();
    }
}

/// Buffered records a drained partition keeps room for (a typical fetch's worth).
const RETAINED_BUFFER_CAPACITY: usize = 256;

#[path = "read_committed.rs"]
mod read_committed;

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;

/// A partition's ListOffsets or validation failed (`error`) or got no answer
/// (`None`): refresh the metadata if the error says it is stale, and ask
/// again at `retry_at_ms`.
fn retry_later(metadata: &mut ClientMetadata, state: &mut PartitionState, error: Option<ErrorCode>, retry_at_ms: u64) {
    if error.is_some_and(ErrorCode::needs_metadata_refresh) {
        metadata.request_refresh();
    }
    state.retry_at_ms = retry_at_ms;
}
