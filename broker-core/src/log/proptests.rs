//! Random appends (as leader, in rising epochs, and as follower), truncations,
//! retention passes, reopens, torn writes, flushes and power losses against a
//! plain model: a Vec of records from the log start offset. The epoch cache is checked against the
//! cache rebuilt from the records (`check_invariants`, which also checks
//! `leader-epoch-checkpoint` against it) and its answers against
//! OffsetsForLeaderEpoch computed from the model's records. Reopens start
//! from a recovery point: none, the log's `flushed_to` just before (what a
//! checkpoint written then holds), or any offset at all (a stale or
//! bit-flipped checkpoint): nothing here damages a batch, so what the walk
//! trusts must come out as validation would have it.
//!
//! Some appends come from idempotent producers: after every step the log's
//! producer state must be the table the model's idempotent batches build,
//! those retention deleted included (the producer snapshots keep them) and
//! those cut or lost excluded.
//!
//! Some come from transactional producers, and some are their markers
//! (COMMIT or ABORT, in the producer's epoch or a bumped one): after every
//! step the last stable offset at every high watermark and the aborted
//! transactions over the whole log must be what the model's batches imply.

use super::codec::marker_key_value;
use super::tests::check_invariants;
use super::*;
use crate::plant::Plants;
use crate::storage::{MemStorage, Storage};
use crate::types::{AbortedTxn, ProducerEpoch, ProducerId, TxnMarker, RECORD_OVERHEAD_BYTES};
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::BTreeMap;

const DIR: &str = "t1-0";

/// Transactional producers' ids start here (idempotent ones are 0..3).
const TXN_PRODUCER: i64 = 10;

/// A completed transaction: producer, first offset, marker offset, commit.
type Completed = (i64, i64, i64, bool);

#[derive(Clone, Debug)]
enum Op {
    /// A leader append; `bump` starts a new epoch first. `idempotent`:
    /// from that producer (bumping its epoch first if asked).
    Append {
        count: usize,
        value_len: usize,
        keyed: bool,
        bump: bool,
        idempotent: Option<Idempotent>,
    },
    /// A transactional batch from producer `TXN_PRODUCER + id`.
    TxnAppend {
        id: i64,
        count: usize,
        value_len: usize,
    },
    /// That producer's marker, in its next epoch if `bump`, from the
    /// coordinator's current epoch (a newer one first if `new_coordinator`).
    Marker {
        id: i64,
        commit: bool,
        bump: bool,
        new_coordinator: bool,
    },
    /// A follower append of runs of (new epoch?, new timestamp?, records,
    /// producer).
    AppendReplicated {
        runs: Vec<(bool, bool, usize, Option<Idempotent>)>,
        value_len: usize,
    },
    /// A follower append that must be refused: 0 = a gap, 1 = an epoch going
    /// back inside it, 2 = an epoch below the log's latest.
    BadReplicated {
        kind: u8,
    },
    Truncate {
        pick: u16,
    },
    Retention {
        advance_ms: u64,
    },
    Reopen {
        point: Point,
    },
    /// A crash mid-append: tear fewer bytes than a batch header off the active
    /// segment (so only its last batch is damaged), then reopen.
    TearAndReopen {
        bytes: u64,
        point: Point,
    },
    /// Every file falls back to what was last fsynced, then a reopen.
    PowerLossReopen {
        point: Point,
    },
    /// An explicit flush (as the broker's interval flush or a controlled shutdown).
    Flush,
    /// `from` and `span` pick offsets relative to the model's range.
    Read {
        from: u16,
        span: u16,
        max_bytes: u16,
    },
}

/// A batch from idempotent producer `id`, which first bumps its epoch
/// (sequences start over) if `bump`.
#[derive(Clone, Copy, Debug)]
struct Idempotent {
    id: i64,
    bump: bool,
}

fn idempotent() -> impl Strategy<Value = Option<Idempotent>> {
    let producer = (0..3i64, prop::bool::weighted(0.1)).prop_map(|(id, bump)| Idempotent { id, bump });
    proptest::option::weighted(0.5, producer)
}

/// The recovery point a reopen starts from.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// None: validate everything.
    Validate,
    /// The log's `flushed_to` before the reopen (and before a power loss).
    FlushedTo,
    /// An offset picked from around the log's range, past its end included.
    Any(u16),
}

fn point() -> impl Strategy<Value = Point> {
    prop_oneof![Just(Point::Validate), Just(Point::FlushedTo), any::<u16>().prop_map(Point::Any)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1..6usize, 0..40usize, any::<bool>(), prop::bool::weighted(0.2), idempotent()).prop_map(
            |(count, value_len, keyed, bump, idempotent)| Op::Append { count, value_len, keyed, bump, idempotent }
        ),
        2 => (0..3i64, 1..4usize, 0..40usize).prop_map(|(id, count, value_len)| Op::TxnAppend { id, count, value_len }),
        1 => (0..3i64, any::<bool>(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(id, commit, bump, new_coordinator)| Op::Marker { id, commit, bump, new_coordinator }),
        2 => (prop::collection::vec((prop::bool::weighted(0.3), any::<bool>(), 1..4usize, idempotent()), 1..4), 0..40usize)
            .prop_map(|(runs, value_len)| Op::AppendReplicated { runs, value_len }),
        1 => (0..3u8).prop_map(|kind| Op::BadReplicated { kind }),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        1 => (0..40u64).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => point().prop_map(|point| Op::Reopen { point }),
        1 => (1..61u64, point()).prop_map(|(bytes, point)| Op::TearAndReopen { bytes, point }),
        1 => point().prop_map(|point| Op::PowerLossReopen { point }),
        1 => Just(Op::Flush),
        2 => (any::<u16>(), any::<u16>(), any::<u16>())
            .prop_map(|(from, span, max_bytes)| Op::Read { from, span, max_bytes }),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    let retention_bytes = proptest::option::of(0..1500u64);
    let retention_ms = proptest::option::of(0..60u64);
    let flush = prop_oneof![Just(FlushPolicy::Never), Just(FlushPolicy::EveryBatch)];
    (150..800u64, 0..300u64, retention_bytes, retention_ms, flush).prop_map(
        |(segment_bytes, index_interval_bytes, retention_bytes, retention_ms, flush)| LogConfig {
            segment_bytes,
            index_interval_bytes,
            retention_bytes,
            retention_ms,
            flush,
        },
    )
}

#[derive(Default)]
struct Model {
    start: i64,
    /// `records[i]` is offset `start + i`: (key, value, timestamp, epoch).
    records: Vec<(Option<Bytes>, Bytes, u64, i32)>,
    /// Base offsets of the batches holding `records`, to know what a tear loses.
    batch_bases: Vec<i64>,
    /// Every offset below this is durable as far as the test knows: it saw
    /// the flushes happen (every append under `EveryBatch`, the segments left
    /// behind by a roll, explicit flushes). MemStorage makes truncations and
    /// deletes durable at once, so only cuts lower it. Unlike the log's own
    /// `flushed_to`, a reopen does not reset it: the files stay synced.
    durable: i64,
    /// The batches with a producer appended, in order: (stamp, base offset,
    /// records, kind). Retention keeps them (so do the log's snapshots);
    /// cuts and losses remove them.
    idempotent: Vec<(ProducerStamp, i64, usize, BatchKind)>,
}

impl Model {
    fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }

    /// `truncate_to(offset)`: at or below the start, the log restarts empty
    /// there and forgets every producer.
    fn truncate(&mut self, offset: i64) {
        if offset >= self.end() {
            return;
        }
        if offset <= self.start {
            *self = Model { start: offset, durable: offset, ..Model::default() };
            return;
        }
        self.lose_from(offset);
    }

    /// Recovery kept the log up to `offset` (a torn tail, a power loss): the
    /// log start, and the producers of deleted segments, stay.
    fn lose_from(&mut self, offset: i64) {
        assert!(self.start <= offset && offset <= self.end());
        self.records.truncate((offset - self.start) as usize);
        self.batch_bases.retain(|&base| base < offset); // a split batch keeps its base
        self.durable = self.durable.min(offset);
        self.idempotent.retain(|&(_, base, _, _)| base < offset);
        if let Some((_, base, count, _)) = self.idempotent.last_mut() {
            *count = (*count).min((offset - *base) as usize); // a split batch keeps its base sequence
        }
    }

    /// The producer state the idempotent and transactional batches imply.
    fn producers(&self) -> ProducerStateTable {
        let mut table = ProducerStateTable::default();
        for &(stamp, base, count, kind) in &self.idempotent {
            table.record_kind(kind, Some(stamp), count, Offset(base));
        }
        table
    }

    /// The open transactions (producer → first offset) and the completed
    /// ones, the obvious way.
    fn txns(&self) -> (BTreeMap<i64, i64>, Vec<Completed>) {
        let (mut open, mut completed) = (BTreeMap::new(), Vec::new());
        for &(stamp, base, _, kind) in &self.idempotent {
            match kind {
                BatchKind::Data => {}
                BatchKind::Transactional => {
                    open.entry(stamp.id.0).or_insert(base);
                }
                BatchKind::Marker(marker) => {
                    if let Some(first) = open.remove(&stamp.id.0) {
                        completed.push((stamp.id.0, first, base, marker.commit));
                    }
                }
            }
        }
        (open, completed)
    }

    /// The LSO at `hw`: held at the first offset of an open transaction or
    /// of one whose marker is not below `hw`, but not below the log start.
    fn lso(&self, hw: i64) -> i64 {
        let (open, completed) = self.txns();
        let unstable = open.into_values().chain(completed.iter().filter(|t| t.2 >= hw).map(|t| t.1)).min();
        unstable.map_or(hw, |first| first.max(self.start).min(hw))
    }

    /// The aborted transactions whose marker the log still holds, by first offset.
    fn aborted(&self) -> Vec<AbortedTxn> {
        let (_, completed) = self.txns();
        let aborted = completed.into_iter().filter(|t| !t.3 && t.2 >= self.start);
        let mut all: Vec<AbortedTxn> = aborted
            .map(|(pid, first, last, _)| AbortedTxn {
                producer_id: ProducerId(pid),
                first_offset: Offset(first),
                last_offset: Offset(last),
            })
            .collect();
        all.sort_by_key(|t| t.first_offset);
        all
    }

    /// The producer stamp of every record held that has one.
    fn stamps(&self) -> BTreeMap<i64, ProducerStamp> {
        let held = |&(stamp, base, count, _): &(ProducerStamp, i64, usize, BatchKind)| {
            (base..base + count as i64).filter(|&o| o >= self.start).map(move |o| (o, stamp))
        };
        self.idempotent.iter().flat_map(held).collect()
    }

    fn advance_start(&mut self, start: i64) {
        assert!(self.start <= start && start <= self.end(), "log start moved backwards or past LEO");
        self.records.drain(..(start - self.start) as usize);
        self.batch_bases.retain(|&base| base >= start);
        self.start = start;
        if !self.records.is_empty() {
            assert_eq!(self.batch_bases.first(), Some(&start), "retention cut inside a batch");
        }
    }

    /// What `read` must return, computed the slow obvious way.
    fn read(&self, from: i64, max_offset: i64, max_bytes: u32) -> Vec<i64> {
        let mut out = Vec::new();
        let mut used = 0;
        for offset in from..max_offset.min(self.end()) {
            let (key, value, _, _) = &self.records[(offset - self.start) as usize];
            used += RECORD_OVERHEAD_BYTES + key.as_ref().map_or(0, |k| k.len()) + value.len();
            if used > max_bytes as usize && !out.is_empty() {
                break;
            }
            out.push(offset);
        }
        out
    }

    /// OffsetsForLeaderEpoch the slow obvious way: the largest epoch of a
    /// record that is ≤ `requested`, and the offset of the first record of a
    /// later epoch (or the end).
    fn end_offset_for(&self, requested: i32) -> Option<(i32, i64)> {
        let epoch = self.records.iter().map(|r| r.3).filter(|&e| e <= requested).max()?;
        let later = self.records.iter().position(|r| r.3 > epoch);
        Some((epoch, later.map_or(self.end(), |i| self.start + i as i64)))
    }
}

struct Run {
    config: LogConfig,
    storage: MemStorage,
    log: PartitionLog,
    model: Model,
    now_ms: u64,
    serial: u64,
    /// The epoch the next append is written in: never below the log's latest.
    epoch: i32,
    /// Per idempotent producer id, its epoch and next sequence.
    producers: BTreeMap<i64, (i16, i32)>,
    /// The transaction coordinator's epoch: markers never go back.
    coordinator_epoch: i32,
}

impl Run {
    /// `pure_reads`: the storage's reads are pure, so the log serves its
    /// active segment's newest batches from its decoded tail.
    fn new(config: LogConfig, pure_reads: bool) -> Run {
        let mut storage = if pure_reads { MemStorage::with_pure_reads() } else { MemStorage::new() };
        let log = PartitionLog::open(DIR, config.clone(), &Plants::none(), None, &mut storage).unwrap();
        let (model, producers) = (Model::default(), BTreeMap::new());
        Run { config, storage, log, model, now_ms: 0, serial: 0, epoch: 0, producers, coordinator_epoch: 0 }
    }

    /// The offset `point` names now (before the reopen it is for).
    fn recovery_point(&self, point: Point) -> Option<Offset> {
        match point {
            Point::Validate => None,
            Point::FlushedTo => Some(self.log.flushed_to()),
            Point::Any(pick) => {
                let span = self.model.records.len() as i64 + 3;
                Some(Offset((self.model.start - 1 + i64::from(pick) % span).max(0)))
            }
        }
    }

    fn reopen(&mut self, recovery_point: Option<Offset>) {
        let config = self.config.clone();
        self.log = PartitionLog::open(DIR, config, &Plants::none(), recovery_point, &mut self.storage).unwrap();
    }

    /// The stamp of the next batch of `count` records from `producer`.
    fn stamp(&mut self, producer: Option<Idempotent>, count: usize) -> Option<ProducerStamp> {
        let Idempotent { id, bump } = producer?;
        let (epoch, seq) = self.producers.entry(id).or_insert((0, 0));
        if bump {
            (*epoch, *seq) = (*epoch + 1, 0);
        }
        let stamp = ProducerStamp { id: ProducerId(id), epoch: ProducerEpoch(*epoch), base_sequence: *seq };
        *seq = stamp.last_sequence(count) + 1;
        Some(stamp)
    }

    fn value(&mut self, value_len: usize) -> Bytes {
        self.serial += 1;
        Bytes::from(format!("{}:{}", self.serial, "x".repeat(value_len)))
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { count, value_len, keyed, bump, idempotent } => {
                self.epoch += i32::from(bump);
                let producer = self.stamp(idempotent, count);
                self.append(count, value_len, keyed, producer);
            }
            Op::TxnAppend { id, count, value_len } => {
                let producer = self.stamp(Some(Idempotent { id: TXN_PRODUCER + id, bump: false }), count);
                self.append_kind(count, value_len, producer, BatchKind::Transactional);
            }
            Op::Marker { id, commit, bump, new_coordinator } => {
                self.marker(TXN_PRODUCER + id, commit, bump, new_coordinator)
            }
            Op::AppendReplicated { runs, value_len } => self.append_replicated(&runs, value_len),
            Op::BadReplicated { kind } => self.bad_replicated(kind),
            Op::Truncate { pick } => {
                let span = self.model.records.len() as i64 + 3; // below start .. past LEO
                let offset = (self.model.start - 1 + i64::from(pick) % span).max(0);
                let flushed_before = self.log.flushed_to();
                self.log.truncate_to(&mut self.storage, Offset(offset)).expect("truncate");
                self.model.truncate(offset);
                let end = self.log.log_end_offset();
                // Below the log start the log restarts empty (and durable) at the offset.
                let flushed = if offset > self.model.start { flushed_before.min(end) } else { end };
                assert_eq!(self.log.flushed_to(), flushed, "flushed_to after truncate_to({offset})");
            }
            Op::Retention { advance_ms } => self.retention(advance_ms),
            Op::Reopen { point } => {
                let before = self.log.epoch_cache().clone();
                let recovery_point = self.recovery_point(point);
                self.reopen(recovery_point);
                assert_eq!(self.log.epoch_cache(), &before, "reopen rebuilds the same cache");
                // Nothing was cut: the segments ending at or below the point
                // were walked, the rest validated, every byte one or the other.
                let stats = self.log.recovery_stats();
                assert_eq!(stats.bytes_walked + stats.bytes_validated, self.log.size_bytes());
                let below = |p: Offset| self.log.segments.iter().take_while(|s| s.end_offset() <= p).count();
                assert_eq!(stats.segments_walked as usize, recovery_point.map_or(0, below), "{recovery_point:?}");
            }
            Op::TearAndReopen { bytes, point } => self.tear(bytes, point),
            Op::PowerLossReopen { point } => self.power_loss(point),
            Op::Flush => {
                self.log.flush(&mut self.storage);
                assert_eq!(self.log.flushed_to(), self.log.log_end_offset());
                assert!(!self.log.has_unflushed());
                self.model.durable = self.model.end();
            }
            Op::Read { from, span, max_bytes } => {
                let len = self.model.records.len() as i64;
                let from = self.model.start + i64::from(from) % (len + 1);
                let max_offset = from + i64::from(span) % (len + 2);
                let got = self.log.read(&self.storage, Offset(from), Offset(max_offset), u32::from(max_bytes));
                let got: Vec<i64> = got.unwrap().iter().map(|r| r.offset.0).collect();
                assert_eq!(got, self.model.read(from, max_offset, u32::from(max_bytes)));
                // A visit sees what an unlimited read returns, field for field.
                let whole = self.log.read(&self.storage, Offset(from), Offset(max_offset), u32::MAX).unwrap();
                let whole: Vec<_> = whole.iter().map(|r| (r.offset, r.leader_epoch, r.value.to_vec())).collect();
                let mut visited = Vec::new();
                let mut visit = |offset, epoch, value: &[u8]| visited.push((offset, epoch, value.to_vec()));
                self.log.visit(&self.storage, Offset(from), Offset(max_offset), &mut visit).unwrap();
                assert_eq!(visited, whole);
                if self.model.start > 0 {
                    let below = Offset(self.model.start - 1);
                    assert!(self.log.read(&self.storage, below, Offset(i64::MAX), 100).is_err());
                }
                assert!(self.log.read(&self.storage, Offset(self.model.end() + 1), Offset(i64::MAX), 100).is_err());
            }
        }
        self.check();
    }

    fn append_kind(&mut self, count: usize, value_len: usize, producer: Option<ProducerStamp>, kind: BatchKind) {
        let stamp = producer.expect("transactional");
        assert_eq!(kind, BatchKind::Transactional);
        self.now_ms += 1;
        let records: Vec<Record> =
            (0..count).map(|_| Record { key: None, value: self.value(value_len), timestamp_ms: 0 }).collect();
        let epoch = LeaderEpoch(self.epoch);
        let info =
            self.log.append_transactional(&mut self.storage, self.now_ms, epoch, stamp, &records).expect("append");
        assert_eq!(info.base_offset.0, self.model.end());
        assert!(self.log.has_open_txn(stamp.id));
        self.model.batch_bases.push(info.base_offset.0);
        self.model.idempotent.push((stamp, info.base_offset.0, count, kind));
        for r in records {
            self.model.records.push((r.key, r.value, self.now_ms, self.epoch));
        }
        self.appended();
    }

    /// A marker for producer `id`, as a coordinator writes it (always
    /// accepted: its epochs never go back).
    fn marker(&mut self, id: i64, commit: bool, bump: bool, new_coordinator: bool) {
        let (epoch, seq) = self.producers.entry(id).or_insert((0, 0));
        if bump {
            (*epoch, *seq) = (*epoch + 1, 0);
        }
        let epoch = ProducerEpoch(*epoch);
        self.coordinator_epoch += i32::from(new_coordinator);
        let marker = TxnMarker { commit, coordinator_epoch: LeaderEpoch(self.coordinator_epoch) };
        let pid = ProducerId(id);
        assert_eq!(self.log.check_marker(pid, epoch, marker), Ok(()));
        if self.coordinator_epoch > 0 {
            let deposed = TxnMarker { coordinator_epoch: LeaderEpoch(self.coordinator_epoch - 1), ..marker };
            let known = self
                .log
                .producer_state()
                .producers()
                .any(|(p, e)| p == pid && e.coordinator_epoch == marker.coordinator_epoch);
            if known {
                assert_eq!(
                    self.log.check_marker(pid, epoch, deposed),
                    Err(crate::protocol::ErrorCode::TransactionCoordinatorFenced)
                );
            }
        }
        self.now_ms += 1;
        let info = self.log.append_marker(&mut self.storage, self.now_ms, LeaderEpoch(self.epoch), pid, epoch, marker);
        let info = info.expect("append");
        assert_eq!((info.base_offset.0, info.last_offset.0), (self.model.end(), self.model.end()));
        assert!(!self.log.has_open_txn(pid));
        let stamp = ProducerStamp { id: pid, epoch, base_sequence: -1 };
        self.model.batch_bases.push(info.base_offset.0);
        self.model.idempotent.push((stamp, info.base_offset.0, 1, BatchKind::Marker(marker)));
        let (key, value) = marker_key_value(marker);
        let key = Some(Bytes::copy_from_slice(&key));
        self.model.records.push((key, Bytes::copy_from_slice(&value), self.now_ms, self.epoch));
        self.appended();
    }

    fn append(&mut self, count: usize, value_len: usize, keyed: bool, producer: Option<ProducerStamp>) {
        self.now_ms += 1;
        let records: Vec<Record> = (0..count)
            .map(|_| {
                let value = self.value(value_len);
                let key = keyed.then(|| Bytes::from(format!("k{}", self.serial)));
                Record { key, value, timestamp_ms: 0 }
            })
            .collect();
        let epoch = LeaderEpoch(self.epoch);
        let info = self.log.append_from(&mut self.storage, self.now_ms, epoch, producer, &records).expect("append");
        assert_eq!(info.base_offset.0, self.model.end());
        assert_eq!(info.last_offset.0, self.model.end() + count as i64 - 1);
        self.model.batch_bases.push(info.base_offset.0);
        if let Some(stamp) = producer {
            self.model.idempotent.push((stamp, info.base_offset.0, count, BatchKind::Data));
        }
        for r in records {
            self.model.records.push((r.key, r.value, self.now_ms, self.epoch));
        }
        self.appended();
    }

    /// What an append makes durable, whatever the policy: the segments a roll
    /// left behind; with `EveryBatch`, everything.
    fn appended(&mut self) {
        let rolled_below = self.log.active().base_offset;
        assert!(self.log.flushed_to() >= rolled_below, "the segments left behind by a roll are flushed");
        self.model.durable = self.model.durable.max(rolled_below.0);
        if self.config.flush == FlushPolicy::EveryBatch {
            assert_eq!(self.log.flushed_to(), self.log.log_end_offset(), "every batch is flushed");
            assert!(!self.log.has_unflushed());
            self.model.durable = self.model.end();
        }
    }

    /// A power loss and a reopen. With `EveryBatch` nothing appended is lost;
    /// with `Never` the log comes back as a prefix of the model from the same
    /// start, no shorter than what the test or the log knew to be flushed and
    /// cut at a batch boundary; the model becomes that prefix.
    fn power_loss(&mut self, point: Point) {
        let claimed = self.log.flushed_to().0;
        let durable = self.model.durable.max(claimed).max(self.model.start);
        let recovery_point = self.recovery_point(point);
        self.storage.power_loss();
        self.reopen(recovery_point);
        let (start, end) = (self.log.log_start_offset().0, self.log.log_end_offset().0);
        assert_eq!(start, self.model.start, "a power loss never moves the log start");
        assert_eq!(self.log.flushed_to().0, start, "a reopened log knows nothing flushed");
        if self.config.flush == FlushPolicy::EveryBatch {
            assert_eq!(end, self.model.end(), "every append was flushed");
        }
        assert!(durable <= end && end <= self.model.end(), "kept [{start}, {end}), durable to {durable}");
        assert!(end == self.model.end() || self.model.batch_bases.contains(&end), "cut at a batch boundary");
        self.model.lose_from(end);
        self.model.durable = end; // what survived a power loss is durable
    }

    fn append_replicated(&mut self, runs: &[(bool, bool, usize, Option<Idempotent>)], value_len: usize) {
        let mut records = Vec::new();
        for &(bump, tick, count, idempotent) in runs {
            self.epoch += i32::from(bump);
            self.now_ms += u64::from(tick);
            let producer = self.stamp(idempotent, count);
            for _ in 0..count {
                let offset = Offset(self.model.end() + records.len() as i64);
                let (timestamp_ms, leader_epoch) = (self.now_ms, LeaderEpoch(self.epoch));
                records.push(StoredRecord {
                    offset,
                    timestamp_ms,
                    leader_epoch,
                    key: None,
                    value: self.value(value_len),
                    producer,
                    kind: crate::types::BatchKind::Data,
                });
            }
        }
        let info = self.log.append_replicated(&mut self.storage, &records).unwrap();
        assert_eq!((info.base_offset, Some(info.last_offset)), (records[0].offset, records.last().map(|r| r.offset)));
        // One batch per run of equal epoch, timestamp and producer stamp.
        let key = |r: &StoredRecord| (r.leader_epoch, r.timestamp_ms, r.producer);
        for batch in records.chunk_by(|a, b| key(a) == key(b)) {
            self.model.batch_bases.push(batch[0].offset.0);
            if let Some(stamp) = batch[0].producer {
                self.model.idempotent.push((stamp, batch[0].offset.0, batch.len(), BatchKind::Data));
            }
        }
        for r in records {
            self.model.records.push((r.key, r.value, r.timestamp_ms, r.leader_epoch.0));
        }
        self.appended();
    }

    fn bad_replicated(&mut self, kind: u8) {
        let end = self.model.end();
        let latest = self.log.latest_epoch().unwrap_or(LeaderEpoch::FIRST).0;
        let (epochs, error) = match kind {
            0 => ([self.epoch, self.epoch], AppendError::NonContiguous { expected: Offset(end), got: Offset(end + 1) }),
            1 => {
                let (offset, epoch, min_epoch) = (Offset(end + 1), LeaderEpoch(latest), LeaderEpoch(latest + 1));
                ([latest + 1, latest], AppendError::EpochRegression { offset, epoch, min_epoch })
            }
            _ => {
                let (offset, epoch, min_epoch) = (Offset(end), LeaderEpoch(latest - 1), LeaderEpoch(latest));
                ([latest - 1, latest], AppendError::EpochRegression { offset, epoch, min_epoch })
            }
        };
        let first = if kind == 0 { end + 1 } else { end };
        let records: Vec<StoredRecord> = (first..)
            .zip(epochs)
            .map(|(offset, epoch)| StoredRecord {
                offset: Offset(offset),
                timestamp_ms: self.now_ms,
                leader_epoch: LeaderEpoch(epoch),
                key: None,
                value: Bytes::from_static(b"refused"),
                producer: None,
                kind: crate::types::BatchKind::Data,
            })
            .collect();
        assert_eq!(self.log.append_replicated(&mut self.storage, &records), Err(error));
    }

    fn retention(&mut self, advance_ms: u64) {
        self.now_ms += advance_ms;
        let before = self.log.segment_count();
        let deleted = self.log.apply_retention(&mut self.storage, self.now_ms).expect("retention");
        assert_eq!(self.log.segment_count(), before - deleted);
        self.model.advance_start(self.log.log_start_offset().0);
        // Nothing deletable is left behind.
        if self.log.segment_count() > 1 {
            let oldest = &self.log.segments[0];
            if let Some(retention_bytes) = self.config.retention_bytes {
                assert!(self.log.size_bytes() - oldest.size_bytes < retention_bytes);
            }
            if let Some(retention_ms) = self.config.retention_ms {
                let newest = oldest.max_timestamp_ms.unwrap();
                assert!(newest >= self.now_ms.saturating_sub(retention_ms));
            }
        }
    }

    fn tear(&mut self, bytes: u64, point: Point) {
        let active = self.log.active();
        let Some(last_batch) = active.batches.last() else {
            return;
        };
        assert_eq!(Some(&last_batch.base_offset.0), self.model.batch_bases.last());
        let last_base = last_batch.base_offset.0;
        let file = active.log_file.clone();
        let len = self.storage.len(&file).unwrap();
        let recovery_point = self.recovery_point(point);
        self.storage.truncate(&file, len - bytes);
        self.reopen(recovery_point);
        self.model.lose_from(last_base);
    }

    fn check(&self) {
        let (log, model) = (&self.log, &self.model);
        assert_eq!((log.log_start_offset().0, log.log_end_offset().0), (model.start, model.end()));
        let all = log.read(&self.storage, log.log_start_offset(), log.log_end_offset(), u32::MAX).unwrap();
        assert_eq!(all.len(), model.records.len());
        let stamps = model.stamps();
        for (record, (key, value, timestamp_ms, epoch)) in all.iter().zip(&model.records) {
            let got = (&record.key, &record.value, record.timestamp_ms, record.leader_epoch.0);
            assert_eq!(got, (key, value, *timestamp_ms, *epoch));
            assert_eq!(record.producer, stamps.get(&record.offset.0).copied(), "producer of {}", record.offset);
        }
        assert_eq!(log.producer_state(), &model.producers(), "the producer state");
        for hw in model.start..=model.end() {
            assert_eq!(log.last_stable_offset(Offset(hw)).0, model.lso(hw), "LSO at HW {hw}");
        }
        let (start, end) = (Offset(model.start), Offset(model.end() + 1));
        assert_eq!(log.aborted_txns(start, end), model.aborted(), "the aborted transactions");
        for requested in -1..=self.epoch + 1 {
            let got = log.end_offset_for_epoch(LeaderEpoch(requested)).map(|(epoch, end)| (epoch.0, end.0));
            assert_eq!(got, model.end_offset_for(requested), "end_offset_for_epoch({requested})");
        }
        assert_eq!(log.latest_epoch().map(|e| e.0), model.records.last().map(|r| r.3));
        for offset in [model.start, (model.start + model.end()) / 2, model.end() - 1] {
            if let Some((base, position)) = log.index_lookup(Offset(offset)) {
                let segment = log.segments.iter().find(|s| s.base_offset == base).unwrap();
                assert!(base.0 <= offset && offset < segment.end_offset().0);
                let batch = segment.batches.iter().find(|b| b.position == position).unwrap();
                assert!(batch.base_offset.0 <= offset, "lookup lands at or before the offset");
            }
        }
        check_invariants(log, &self.storage);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_a_vec_model(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new(config, false);
        for op in ops {
            run.apply(op);
        }
    }

    /// The same, reading through the decoded tail: every read is checked
    /// against the model, so a batch served from the tail after a
    /// truncation, a roll or a retention pass changed the log would show.
    #[test]
    fn log_with_pure_reads_agrees_with_a_vec_model(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new(config, true);
        for op in ops {
            run.apply(op);
        }
    }
}
