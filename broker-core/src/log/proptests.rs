//! Random appends, truncations, retention passes, reopens and torn writes
//! against a plain model: a Vec of records from the log start offset.

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
    Append {
        count: usize,
        value_len: usize,
        keyed: bool,
    },
    Truncate {
        pick: u16,
    },
    Retention {
        advance_ms: u64,
    },
    Reopen,
    /// A crash mid-append: tear fewer bytes than a batch header off the active
    /// segment (so only its last batch is damaged), then reopen.
    TearAndReopen {
        bytes: u64,
    },
    /// `from` and `span` pick offsets relative to the model's range.
    Read {
        from: u16,
        span: u16,
        max_bytes: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1..6usize, 0..40usize, any::<bool>())
            .prop_map(|(count, value_len, keyed)| Op::Append { count, value_len, keyed }),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        1 => (0..40u64).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => Just(Op::Reopen),
        1 => (1..61u64).prop_map(|bytes| Op::TearAndReopen { bytes }),
        2 => (any::<u16>(), any::<u16>(), any::<u16>())
            .prop_map(|(from, span, max_bytes)| Op::Read { from, span, max_bytes }),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    let retention_bytes = proptest::option::of(0..1500u64);
    let retention_ms = proptest::option::of(0..60u64);
    (150..800u64, 0..300u64, retention_bytes, retention_ms).prop_map(
        |(segment_bytes, index_interval_bytes, retention_bytes, retention_ms)| LogConfig {
            segment_bytes,
            index_interval_bytes,
            retention_bytes,
            retention_ms,
        },
    )
}

#[derive(Default)]
struct Model {
    start: i64,
    /// `records[i]` is offset `start + i`: (key, value, timestamp).
    records: Vec<(Option<Bytes>, Bytes, u64)>,
    /// Base offsets of the batches holding `records`, to know what a tear loses.
    batch_bases: Vec<i64>,
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
            *self = Model { start: offset, ..Model::default() };
            return;
        }
        self.records.truncate((offset - self.start) as usize);
        self.batch_bases.retain(|&base| base < offset); // a split batch keeps its base
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
            let (key, value, _) = &self.records[(offset - self.start) as usize];
            used += RECORD_OVERHEAD_BYTES + key.as_ref().map_or(0, |k| k.len()) + value.len();
            if used > max_bytes as usize && !out.is_empty() {
                break;
            }
            out.push(offset);
        }
        out
    }
}

struct Run {
    config: LogConfig,
    storage: MemStorage,
    log: PartitionLog,
    model: Model,
    now_ms: u64,
    serial: u64,
}

impl Run {
    fn new(config: LogConfig) -> Run {
        let mut storage = MemStorage::new();
        let log = PartitionLog::open(DIR, config.clone(), &Plants::none(), &mut storage).unwrap();
        Run { config, storage, log, model: Model::default(), now_ms: 0, serial: 0 }
    }

    fn reopen(&mut self) {
        self.log = PartitionLog::open(DIR, self.config.clone(), &Plants::none(), &mut self.storage).unwrap();
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { count, value_len, keyed } => self.append(count, value_len, keyed),
            Op::Truncate { pick } => {
                let span = self.model.records.len() as i64 + 3; // below start .. past LEO
                let offset = (self.model.start - 1 + i64::from(pick) % span).max(0);
                self.log.truncate_to(&mut self.storage, Offset(offset));
                self.model.truncate(offset);
            }
            Op::Retention { advance_ms } => self.retention(advance_ms),
            Op::Reopen => self.reopen(),
            Op::TearAndReopen { bytes } => self.tear(bytes),
            Op::Read { from, span, max_bytes } => {
                let len = self.model.records.len() as i64;
                let from = self.model.start + i64::from(from) % (len + 1);
                let max_offset = from + i64::from(span) % (len + 2);
                let got = self.log.read(Offset(from), Offset(max_offset), u32::from(max_bytes));
                let got: Vec<i64> = got.unwrap().iter().map(|r| r.offset.0).collect();
                assert_eq!(got, self.model.read(from, max_offset, u32::from(max_bytes)));
                if self.model.start > 0 {
                    let below = Offset(self.model.start - 1);
                    assert!(self.log.read(below, Offset(i64::MAX), 100).is_err());
                }
                assert!(self.log.read(Offset(self.model.end() + 1), Offset(i64::MAX), 100).is_err());
            }
        }
        self.check();
    }

    fn append(&mut self, count: usize, value_len: usize, keyed: bool) {
        self.now_ms += 1;
        let records: Vec<Record> = (0..count)
            .map(|_| {
                self.serial += 1;
                let value = format!("{}:{}", self.serial, "x".repeat(value_len));
                let key = keyed.then(|| Bytes::from(format!("k{}", self.serial)));
                Record { key, value: Bytes::from(value), timestamp_ms: 0 }
            })
            .collect();
        let info = self.log.append(&mut self.storage, self.now_ms, 3, &records);
        assert_eq!(info.base_offset.0, self.model.end());
        assert_eq!(info.last_offset.0, self.model.end() + count as i64 - 1);
        self.model.batch_bases.push(info.base_offset.0);
        for r in records {
            self.model.records.push((r.key, r.value, self.now_ms));
        }
    }

    fn retention(&mut self, advance_ms: u64) {
        self.now_ms += advance_ms;
        let before = self.log.segment_count();
        let deleted = self.log.apply_retention(&mut self.storage, self.now_ms);
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

    fn tear(&mut self, bytes: u64) {
        let active = self.log.active();
        let Some(last_batch) = active.batches.last() else {
            return;
        };
        assert_eq!(Some(&last_batch.base_offset.0), self.model.batch_bases.last());
        let last_base = last_batch.base_offset.0;
        let file = active.log_file.clone();
        let len = self.storage.len(&file).unwrap();
        self.storage.truncate(&file, len - bytes);
        self.reopen();
        self.model.truncate(last_base);
    }

    fn check(&self) {
        let (log, model) = (&self.log, &self.model);
        assert_eq!((log.log_start_offset().0, log.log_end_offset().0), (model.start, model.end()));
        let all = log.read(log.log_start_offset(), log.log_end_offset(), u32::MAX).unwrap();
        assert_eq!(all.len(), model.records.len());
        for (record, (key, value, timestamp_ms)) in all.iter().zip(&model.records) {
            assert_eq!((&record.key, &record.value, record.timestamp_ms), (key, value, *timestamp_ms));
        }
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
