//! One segment: a `.log` file of v2 batches plus its `.index`, mirrored in memory.
//! The in-memory records serve reads; the files are the durable copy.

use super::codec::encode_batch;
use super::index::{IndexEntry, OffsetIndex};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Offset, StoredRecord};

/// Where one batch sits in the segment file, and what recovery needs to redo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchMeta {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub position: u64,
    pub size_bytes: u64,
    pub leader_epoch: LeaderEpoch,
    pub max_timestamp_ms: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Segment {
    pub base_offset: Offset,
    pub log_file: String,
    pub index_file: String,
    /// Dense: `records[i].offset == base_offset + i`.
    pub records: Vec<StoredRecord>,
    /// In file order; together they cover `records` exactly.
    pub batches: Vec<BatchMeta>,
    pub index: OffsetIndex,
    pub size_bytes: u64,
    pub max_timestamp_ms: Option<u64>,
}

impl Segment {
    pub fn new(dir: &str, base_offset: Offset) -> Segment {
        assert!(base_offset.0 >= 0, "negative segment base offset {base_offset}");
        let (log_file, index_file) = file_names(dir, base_offset);
        Segment {
            base_offset,
            log_file,
            index_file,
            records: Vec::new(),
            batches: Vec::new(),
            index: OffsetIndex::default(),
            size_bytes: 0,
            max_timestamp_ms: None,
        }
    }

    /// One past the last offset held (the base offset when empty).
    pub fn end_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.records.len() as i64)
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records from `from` (which must be inside this segment) to the end.
    pub fn records_from(&self, from: Offset) -> &[StoredRecord] {
        assert!(from >= self.base_offset && from <= self.end_offset());
        &self.records[(from.0 - self.base_offset.0) as usize..]
    }

    /// Accounts for a batch whose bytes are the next `size_bytes` of the file and
    /// whose records are already in `records`. Returns the index entry it earned.
    pub fn track_batch(&mut self, meta: BatchMeta, index_interval_bytes: u64) -> Option<IndexEntry> {
        let expected_base = self.batches.last().map_or(self.base_offset, |b| b.last_offset.next());
        assert_eq!(meta.base_offset, expected_base, "batches must be dense");
        assert!(meta.last_offset < self.end_offset() && meta.position == self.size_bytes);
        self.batches.push(meta);
        self.size_bytes += meta.size_bytes;
        self.max_timestamp_ms = self.max_timestamp_ms.max(Some(meta.max_timestamp_ms));
        if !self.index.wants_entry(meta.position, index_interval_bytes) {
            return None;
        }
        let entry = IndexEntry {
            relative_offset: u32::try_from(meta.last_offset.0 - self.base_offset.0)
                .expect("relative offset beyond u32: the segment should have rolled"),
            position: u32::try_from(meta.position).expect("segment position beyond u32"),
        };
        self.index.push(entry);
        Some(entry)
    }

    /// Writes `encoded` (one batch covering the records past the last tracked
    /// batch, already pushed to `records`) to storage and tracks it.
    pub fn append_batch(
        &mut self,
        storage: &mut dyn Storage,
        encoded: &[u8],
        leader_epoch: LeaderEpoch,
        timestamp_ms: u64,
        index_interval_bytes: u64,
    ) {
        let meta = BatchMeta {
            base_offset: self.batches.last().map_or(self.base_offset, |b| b.last_offset.next()),
            last_offset: Offset(self.end_offset().0 - 1),
            position: self.size_bytes,
            size_bytes: encoded.len() as u64,
            leader_epoch,
            max_timestamp_ms: timestamp_ms,
        };
        storage.append(&self.log_file, encoded);
        if let Some(entry) = self.track_batch(meta, index_interval_bytes) {
            storage.append(&self.index_file, &entry.to_bytes());
        }
    }

    /// Keeps only offsets below `offset`, which must lie strictly inside this
    /// segment. The batch holding `offset` is cut from the file; if it also held
    /// earlier offsets, those are re-encoded as a shorter batch (same base offset,
    /// epoch and timestamp), so the file is byte-identical to one that never held
    /// the removed records.
    pub fn truncate_to(
        &mut self,
        storage: &mut dyn Storage,
        offset: Offset,
        index_interval_bytes: u64,
        scratch: &mut Vec<u8>,
    ) {
        assert!(self.base_offset < offset && offset < self.end_offset());
        let cut = self.batches.partition_point(|b| b.last_offset < offset);
        let split = self.batches[cut];
        assert!(split.base_offset <= offset && offset <= split.last_offset);
        self.batches.truncate(cut);
        self.records.truncate((offset.0 - self.base_offset.0) as usize);
        self.index.truncate_at_position(split.position);
        self.size_bytes = split.position;
        self.max_timestamp_ms = self.batches.iter().map(|b| b.max_timestamp_ms).max();
        storage.truncate(&self.log_file, split.position);
        storage.truncate(&self.index_file, self.index.len_bytes());
        if split.base_offset < offset {
            let kept = self.records_from(split.base_offset);
            scratch.clear();
            encode_batch(scratch, split.base_offset, split.leader_epoch, split.max_timestamp_ms, kept);
            let (epoch, timestamp_ms) = (split.leader_epoch, split.max_timestamp_ms);
            self.append_batch(storage, scratch, epoch, timestamp_ms, index_interval_bytes);
        }
        assert_eq!(self.end_offset(), offset);
    }

    /// Creates the segment's files empty, so an empty log still records its base offset.
    pub fn create_files(&self, storage: &mut dyn Storage) {
        assert!(self.is_empty());
        storage.write_all(&self.log_file, &[]);
        storage.write_all(&self.index_file, &[]);
    }

    pub fn delete_files(&self, storage: &mut dyn Storage) {
        storage.delete(&self.log_file);
        storage.delete(&self.index_file);
    }
}

/// `{dir}/{base offset, 20 digits}.log` and `.index`, as Kafka names them.
pub(super) fn file_names(dir: &str, base_offset: Offset) -> (String, String) {
    (format!("{dir}/{:020}.log", base_offset.0), format!("{dir}/{:020}.index", base_offset.0))
}
