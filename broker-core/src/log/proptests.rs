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

use super::tests::check_invariants;
use super::*;
use crate::plant::Plants;
use crate::storage::{MemStorage, Storage};
use crate::types::RECORD_OVERHEAD_BYTES;
use bytes::Bytes;
use proptest::prelude::*;

const DIR: &str = "t1-0";

#[derive(Clone, Debug)]
enum Op {
    /// A leader append; `bump` starts a new epoch first.
    Append {
        count: usize,
        value_len: usize,
        keyed: bool,
        bump: bool,
    },
    /// A follower append of runs of (new epoch?, new timestamp?, records).
    AppendReplicated {
        runs: Vec<(bool, bool, usize)>,
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
        5 => (1..6usize, 0..40usize, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(count, value_len, keyed, bump)| Op::Append { count, value_len, keyed, bump }),
        2 => (prop::collection::vec((prop::bool::weighted(0.3), any::<bool>(), 1..4usize), 1..4), 0..40usize)
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
}

impl Model {
    fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }

    fn truncate(&mut self, offset: i64) {
        if offset >= self.end() {
            return;
        }
        if offset <= self.start {
            *self = Model { start: offset, durable: offset, ..Model::default() };
            return;
        }
        self.records.truncate((offset - self.start) as usize);
        self.batch_bases.retain(|&base| base < offset); // a split batch keeps its base
        self.durable = self.durable.min(offset);
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
}

impl Run {
    fn new(config: LogConfig) -> Run {
        let mut storage = MemStorage::new();
        let log = PartitionLog::open(DIR, config.clone(), &Plants::none(), None, &mut storage).unwrap();
        Run { config, storage, log, model: Model::default(), now_ms: 0, serial: 0, epoch: 0 }
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

    fn value(&mut self, value_len: usize) -> Bytes {
        self.serial += 1;
        Bytes::from(format!("{}:{}", self.serial, "x".repeat(value_len)))
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { count, value_len, keyed, bump } => {
                self.epoch += i32::from(bump);
                self.append(count, value_len, keyed);
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
                if self.model.start > 0 {
                    let below = Offset(self.model.start - 1);
                    assert!(self.log.read(&self.storage, below, Offset(i64::MAX), 100).is_err());
                }
                assert!(self.log.read(&self.storage, Offset(self.model.end() + 1), Offset(i64::MAX), 100).is_err());
            }
        }
        self.check();
    }

    fn append(&mut self, count: usize, value_len: usize, keyed: bool) {
        self.now_ms += 1;
        let records: Vec<Record> = (0..count)
            .map(|_| {
                let value = self.value(value_len);
                let key = keyed.then(|| Bytes::from(format!("k{}", self.serial)));
                Record { key, value, timestamp_ms: 0 }
            })
            .collect();
        let info = self.log.append(&mut self.storage, self.now_ms, LeaderEpoch(self.epoch), &records).expect("append");
        assert_eq!(info.base_offset.0, self.model.end());
        assert_eq!(info.last_offset.0, self.model.end() + count as i64 - 1);
        self.model.batch_bases.push(info.base_offset.0);
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
        self.model.truncate(end);
        self.model.durable = end; // what survived a power loss is durable
    }

    fn append_replicated(&mut self, runs: &[(bool, bool, usize)], value_len: usize) {
        let mut records = Vec::new();
        for &(bump, tick, count) in runs {
            self.epoch += i32::from(bump);
            self.now_ms += u64::from(tick);
            for _ in 0..count {
                let offset = Offset(self.model.end() + records.len() as i64);
                let (timestamp_ms, leader_epoch) = (self.now_ms, LeaderEpoch(self.epoch));
                records.push(StoredRecord {
                    offset,
                    timestamp_ms,
                    leader_epoch,
                    key: None,
                    value: self.value(value_len),
                });
            }
        }
        let info = self.log.append_replicated(&mut self.storage, &records).unwrap();
        assert_eq!((info.base_offset, Some(info.last_offset)), (records[0].offset, records.last().map(|r| r.offset)));
        // One batch per run of equal epoch and timestamp.
        let batches = records.chunk_by(|a, b| (a.leader_epoch, a.timestamp_ms) == (b.leader_epoch, b.timestamp_ms));
        self.model.batch_bases.extend(batches.map(|batch| batch[0].offset.0));
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
        self.model.truncate(last_base);
    }

    fn check(&self) {
        let (log, model) = (&self.log, &self.model);
        assert_eq!((log.log_start_offset().0, log.log_end_offset().0), (model.start, model.end()));
        let all = log.read(&self.storage, log.log_start_offset(), log.log_end_offset(), u32::MAX).unwrap();
        assert_eq!(all.len(), model.records.len());
        for (record, (key, value, timestamp_ms, epoch)) in all.iter().zip(&model.records) {
            let got = (&record.key, &record.value, record.timestamp_ms, record.leader_epoch.0);
            assert_eq!(got, (key, value, *timestamp_ms, *epoch));
        }
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
        let mut run = Run::new(config);
        for op in ops {
            run.apply(op);
        }
    }
}
