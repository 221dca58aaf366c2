//! One segment: a `.log` file of v2 batches plus its `.index`. Memory holds
//! only where each batch sits; reads decode the batches from storage.

use super::codec::{decode_batch_checked, encode_batch, visit_batch_checked, BatchHeader, DecodeError, DecodedBatch};
use super::index::{IndexEntry, OffsetIndex};
use super::LogError;
use crate::storage::{Storage, StorageError};
use crate::types::{BatchKind, LeaderEpoch, Offset, ProducerStamp, StoredRecord};
use bytes::Bytes;

/// Where one batch sits in the segment file, and what recovery needs to redo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchMeta {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub position: u64,
    pub size_bytes: u64,
    pub leader_epoch: LeaderEpoch,
    pub max_timestamp_ms: u64,
    /// The idempotent producer that wrote the batch, if any: what the log's
    /// producer state is rebuilt from without reading the file again.
    pub producer: Option<ProducerStamp>,
    /// Data, transactional data or a transaction marker (with its
    /// content): what the open transactions and the aborted-transaction
    /// index are rebuilt from, again without reading the file.
    pub kind: BatchKind,
}

impl BatchMeta {
    /// How many records the batch holds.
    pub fn count(&self) -> usize {
        (self.last_offset.0 - self.base_offset.0 + 1) as usize
    }
}

#[derive(Clone, Debug)]
pub(super) struct Segment {
    pub base_offset: Offset,
    pub log_file: String,
    pub index_file: String,
    /// In file order and dense: each starts where the one before ends, the
    /// first at `base_offset`, and they tile the file from position 0.
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
            batches: Vec::new(),
            index: OffsetIndex::default(),
            size_bytes: 0,
            max_timestamp_ms: None,
        }
    }

    /// One past the last offset held (the base offset when empty).
    pub fn end_offset(&self) -> Offset {
        self.batches.last().map_or(self.base_offset, |b| b.last_offset.next())
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The index of the batch holding `offset`, which must be inside this segment.
    pub fn batch_holding(&self, offset: Offset) -> usize {
        assert!(offset >= self.base_offset && offset < self.end_offset());
        self.batches.partition_point(|b| b.last_offset < offset)
    }

    /// Reads `batches[range]` from storage in one call and decodes them onto
    /// `out`. Every batch must decode (length, magic, CRC-32C) to exactly the
    /// offsets and epoch it was written with; anything else is `Corrupt`,
    /// and corrupt bytes are never returned.
    pub fn read_batches(
        &self,
        storage: &dyn Storage,
        range: std::ops::Range<usize>,
        out: &mut Vec<StoredRecord>,
        verify_crc: bool,
    ) -> Result<(), LogError> {
        let before = out.len();
        let result =
            self.walk_batches(storage, range, &mut |bytes, pos| decode_batch_checked(bytes, pos, out, verify_crc));
        if result.is_err() {
            out.truncate(before);
        }
        result
    }

    /// [`Segment::read_batches`] without building records: `visit` sees
    /// each record's offset, leader epoch and value. On an error it may
    /// have seen records of the batches read, which the caller must drop.
    pub fn visit_batches(
        &self,
        storage: &dyn Storage,
        range: std::ops::Range<usize>,
        verify_crc: bool,
        visit: &mut dyn FnMut(Offset, LeaderEpoch, &[u8]),
    ) -> Result<(), LogError> {
        self.walk_batches(storage, range, &mut |bytes, pos| visit_batch_checked(bytes, pos, verify_crc, visit))
    }

    /// Reads `batches[range]` in one call and has `decode` check each; a
    /// batch must decode to exactly what was written there.
    fn walk_batches(
        &self,
        storage: &dyn Storage,
        range: std::ops::Range<usize>,
        decode: &mut dyn FnMut(&Bytes, usize) -> Result<DecodedBatch, DecodeError>,
    ) -> Result<(), LogError> {
        let metas = &self.batches[range];
        let (Some(first), Some(last)) = (metas.first(), metas.last()) else { return Ok(()) };
        let len = last.position + last.size_bytes - first.position;
        let corrupt = |detail: String| LogError::Corrupt { file: self.log_file.clone(), detail };
        let bytes = storage
            .read_at(&self.log_file, first.position, len)
            .ok_or_else(|| corrupt(format!("shorter than its batches (wanted {len} bytes at {})", first.position)))?;
        let bytes = Bytes::from(bytes);
        let mut pos = 0;
        for meta in metas {
            let decoded =
                decode(&bytes, pos).map_err(|e| corrupt(format!("batch at position {}: {e:?}", meta.position)))?;
            // The producer and kind too: a walked segment's headers were not CRC-checked.
            let as_written =
                (
                    decoded.base_offset,
                    decoded.last_offset,
                    decoded.leader_epoch,
                    decoded.size_bytes as u64,
                    decoded.producer,
                    decoded.kind,
                ) == (meta.base_offset, meta.last_offset, meta.leader_epoch, meta.size_bytes, meta.producer, meta.kind);
            if !as_written {
                return Err(corrupt(format!("batch at position {} is not the batch written there", meta.position)));
            }
            pos += decoded.size_bytes;
        }
        Ok(())
    }

    /// Accounts for a batch whose bytes are the next `size_bytes` of the file.
    /// Returns the index entry it earned.
    pub fn track_batch(&mut self, meta: BatchMeta, index_interval_bytes: u64) -> Option<IndexEntry> {
        assert_eq!(meta.base_offset, self.end_offset(), "batches must be dense");
        assert!(meta.last_offset >= meta.base_offset && meta.position == self.size_bytes);
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

    /// Writes `encoded` (one batch of the offsets `[end_offset(), last_offset]`,
    /// with `header`) to storage and tracks it. On a storage error the batch may be partly
    /// (or, if its index entry failed, wholly) in the file and is not tracked,
    /// so the segment still agrees with the log; the broker stops (recovery
    /// cuts a partial batch).
    pub fn append_batch(
        &mut self,
        storage: &mut dyn Storage,
        encoded: &[u8],
        last_offset: Offset,
        header: BatchHeader,
        index_interval_bytes: u64,
    ) -> Result<(), StorageError> {
        let meta = BatchMeta {
            base_offset: self.end_offset(),
            last_offset,
            position: self.size_bytes,
            size_bytes: encoded.len() as u64,
            leader_epoch: header.leader_epoch,
            max_timestamp_ms: header.timestamp_ms,
            producer: header.producer,
            kind: header.kind,
        };
        storage.append(&self.log_file, encoded)?;
        let max_timestamp_before = self.max_timestamp_ms;
        if let Some(entry) = self.track_batch(meta, index_interval_bytes) {
            if let Err(e) = storage.append(&self.index_file, &entry.to_bytes()) {
                // Untracked again: the segment must not hold a batch the log does not.
                self.batches.pop();
                self.index.truncate_at_position(meta.position);
                self.size_bytes = meta.position;
                self.max_timestamp_ms = max_timestamp_before;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Keeps only offsets below `offset`, which must lie strictly inside this
    /// segment. The batch holding `offset` is cut from the file; if it also held
    /// earlier offsets, those are re-encoded as a shorter batch (same base offset,
    /// epoch and timestamp), so the file is byte-identical to one that never held
    /// the removed records. The cut batch is read back first; if it is corrupt
    /// the whole batch goes (the log then ends at its base offset).
    ///
    /// A re-written batch is fsynced at once: its records may have been
    /// durable before the cut, and a truncation must not leave the records it
    /// keeps in the page cache only (the log's recovery point may lie past
    /// them, and a reopened log cannot tell whether it does).
    pub fn truncate_to(
        &mut self,
        storage: &mut dyn Storage,
        offset: Offset,
        index_interval_bytes: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), StorageError> {
        assert!(self.base_offset < offset && offset < self.end_offset());
        let cut = self.batch_holding(offset);
        let split = self.batches[cut];
        assert!(split.base_offset <= offset && offset <= split.last_offset);
        let mut kept = Vec::new();
        if split.base_offset < offset && self.read_batches(storage, cut..cut + 1, &mut kept, true).is_ok() {
            kept.truncate((offset.0 - split.base_offset.0) as usize);
        }
        self.batches.truncate(cut);
        self.index.truncate_at_position(split.position);
        self.size_bytes = split.position;
        self.max_timestamp_ms = self.batches.iter().map(|b| b.max_timestamp_ms).max();
        storage.truncate(&self.log_file, split.position);
        storage.truncate(&self.index_file, self.index.len_bytes());
        if let Some(last) = kept.last() {
            scratch.clear();
            // The kept records are the batch's first ones: its base sequence
            // stands. A marker (one record) is never split.
            assert!(!matches!(split.kind, BatchKind::Marker(_)), "a marker batch cut inside");
            let header = BatchHeader {
                leader_epoch: split.leader_epoch,
                timestamp_ms: split.max_timestamp_ms,
                producer: split.producer,
                kind: split.kind,
            };
            encode_batch(scratch, split.base_offset, header, &kept);
            self.append_batch(storage, scratch, last.offset, header, index_interval_bytes)?;
            self.fsync(storage);
        }
        assert!(self.end_offset() <= offset);
        Ok(())
    }

    /// Creates the segment's files empty, so an empty log still records its base offset.
    pub fn create_files(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        assert!(self.is_empty());
        storage.write_all(&self.log_file, &[])?;
        storage.write_all(&self.index_file, &[])
    }

    /// Makes the segment's files durable.
    pub fn fsync(&self, storage: &mut dyn Storage) {
        storage.fsync(&self.log_file);
        storage.fsync(&self.index_file);
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
