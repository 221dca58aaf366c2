//! The broker's two offset checkpoint files, at the root of its storage, in
//! Kafka's text format (`CheckpointFile` with `OffsetCheckpointFile`'s
//! entries): the version `0`, the entry count, then one
//! `topic partition offset` line per partition.
//!
//! - `replication-offset-checkpoint`: each replica's high watermark, every
//!   `replica_high_watermark_checkpoint_interval_ms`; a restarted broker
//!   starts each replica at min(checkpointed HW, recovered log end).
//! - `recovery-point-offset-checkpoint`: each log's `flushed_to`, every
//!   `log_flush_offset_checkpoint_interval_ms`; `PartitionLog::open` walks
//!   the segments below it instead of validating them.
//!
//! Both are also written by a controlled shutdown. A partition's name is its
//! directory's, `tp.to_string()` (`t0-3`), split at the last `-` as Kafka
//! splits a log directory's name into topic and partition: the line is
//! `t0 3 120` (topic `t0`, partition 3). A file is rewritten whole with
//! `write_durably` and only when its content changed since the last write.
//! A file that does not parse is treated as absent, never a panic.

use crate::storage::CHECKPOINT_VERSION as VERSION;
use crate::storage::{write_durably, Storage, StorageError};
use crate::types::{Offset, TopicId, TopicPartition};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";

/// Largest file `decode` reads: far more partitions than a broker holds.
const MAX_FILE_BYTES: usize = 16 << 20;

/// One checkpoint file: when it is next due and what it holds.
pub(super) struct OffsetCheckpoint {
    file: &'static str,
    interval_ms: u64,
    next_due_ms: u64,
    /// What the file holds, in partition order (its parsed content at boot):
    /// a tick whose offsets equal it writes nothing.
    written: Vec<(TopicPartition, Offset)>,
}

impl OffsetCheckpoint {
    /// Reads `file` at boot. Returns its offsets (empty if absent or garbled).
    pub fn load(
        storage: &dyn Storage,
        file: &'static str,
        interval_ms: u64,
        now_ms: u64,
    ) -> (OffsetCheckpoint, BTreeMap<TopicPartition, Offset>) {
        let held = storage.read(file).and_then(|bytes| decode(&bytes)).unwrap_or_default();
        let written = held.iter().map(|(tp, offset)| (*tp, *offset)).collect();
        let checkpoint =
            OffsetCheckpoint { file, interval_ms, next_due_ms: now_ms.saturating_add(interval_ms), written };
        (checkpoint, held)
    }

    /// Whether the timer has come round.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_due_ms
    }

    pub fn next_due_ms(&self) -> u64 {
        self.next_due_ms
    }

    /// Writes `offsets` (in partition order) if the timer has come round,
    /// `now_ms` (`None`: now, whatever the timer), and reschedules it.
    pub fn write_if_due<I>(&mut self, now_ms: Option<u64>, storage: &mut dyn Storage, offsets: I) -> Result<(), String>
    where
        I: Iterator<Item = (TopicPartition, Offset)> + Clone,
    {
        if let Some(now_ms) = now_ms {
            if !self.due(now_ms) {
                return Ok(());
            }
            self.next_due_ms = now_ms.saturating_add(self.interval_ms);
        }
        self.write(storage, offsets).map_err(|e| format!("writing {}: {e}", self.file))
    }

    /// Writes `offsets` (in partition order) unless the file holds them
    /// already: the common tick compares a few numbers and allocates nothing.
    fn write<I>(&mut self, storage: &mut dyn Storage, offsets: I) -> Result<(), StorageError>
    where
        I: Iterator<Item = (TopicPartition, Offset)> + Clone,
    {
        if offsets.clone().eq(self.written.iter().copied()) {
            return Ok(());
        }
        let entries: Vec<(TopicPartition, Offset)> = offsets.collect();
        assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "partitions in order, once each");
        write_durably(storage, self.file, &encode(&entries))?;
        self.written = entries;
        Ok(())
    }
}

pub(super) fn encode(entries: &[(TopicPartition, Offset)]) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(out, "{VERSION}");
    let _ = writeln!(out, "{}", entries.len());
    for (tp, offset) in entries {
        let _ = writeln!(out, "t{} {} {}", tp.topic.0, tp.partition, offset.0);
    }
    out.into_bytes()
}

/// The offsets a file `encode` wrote holds; `None` if the bytes are not
/// such a file (wrong version, a count that does not match the lines, a
/// malformed line, a negative offset, a partition twice).
pub(super) fn decode(bytes: &[u8]) -> Option<BTreeMap<TopicPartition, Offset>> {
    let entries = crate::storage::checkpoint_entries::<3>(bytes, MAX_FILE_BYTES)?;
    let mut offsets = BTreeMap::new();
    for [topic, partition, offset] in entries {
        let topic = TopicId(topic.strip_prefix('t')?.parse().ok()?);
        let tp = TopicPartition::new(topic, partition.parse().ok()?);
        let offset = Offset(offset.parse().ok().filter(|&o: &i64| o >= 0)?);
        if offsets.insert(tp, offset).is_some() {
            return None;
        }
    }
    Some(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn tp(topic: u16, partition: u32) -> TopicPartition {
        TopicPartition::new(TopicId(topic), partition)
    }

    #[test]
    fn round_trips_in_kafkas_format_named_as_the_log_directories() {
        let entries = vec![(tp(0, 3), Offset(120)), (tp(0, 10), Offset(0)), (tp(2, 1), Offset(7))];
        let bytes = encode(&entries);
        assert_eq!(bytes, b"0\n3\nt0 3 120\nt0 10 0\nt2 1 7\n");
        // The directory `t0-3`, split at its last '-', is topic `t0`, partition 3.
        assert_eq!(tp(0, 3).to_string(), "t0-3");
        assert_eq!(decode(&bytes), Some(entries.into_iter().collect()));
        assert_eq!(decode(b"0\n0\n"), Some(BTreeMap::new()));
    }

    #[test]
    fn garbled_files_are_refused() {
        let garbled: &[&[u8]] = &[
            b"",
            b"0\n",
            b"1\n0\n",
            b"0\n2\nt0 0 5\n",
            b"0\n1\nt0 0\n",
            b"0\n1\nt0 0 5 5\n",
            b"0\n1\n0 0 5\n",
            b"0\n1\nt0 -1 5\n",
            b"0\n1\nt0 0 -5\n",
            b"0\n1\nt99999 0 5\n",
            b"0\n2\nt0 0 5\nt0 0 6\n",
            b"0\n1\nt0 0 5x\n",
            b"\x80\n",
        ];
        for bytes in garbled {
            assert_eq!(decode(bytes), None, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn writes_only_what_changed_and_reloads_it() {
        let mut storage = MemStorage::new();
        let (mut checkpoint, held) = OffsetCheckpoint::load(&storage, HIGH_WATERMARK_CHECKPOINT_FILE, 5_000, 100);
        assert!(held.is_empty());
        assert!(!checkpoint.due(5_099) && checkpoint.due(5_100));
        let offsets = [(tp(0, 0), Offset(4)), (tp(0, 1), Offset(9))];
        checkpoint.write(&mut storage, offsets.iter().copied()).unwrap();
        let fsyncs = storage.fsyncs();
        checkpoint.write(&mut storage, offsets.iter().copied()).unwrap();
        assert_eq!(storage.fsyncs(), fsyncs, "nothing changed, nothing written");
        let (reloaded, held) = OffsetCheckpoint::load(&storage, HIGH_WATERMARK_CHECKPOINT_FILE, 5_000, 0);
        assert_eq!(held, offsets.into_iter().collect());
        assert_eq!(reloaded.written, offsets);
        storage.write_all(HIGH_WATERMARK_CHECKPOINT_FILE, b"0\n7\ngarbage").unwrap();
        let (_, held) = OffsetCheckpoint::load(&storage, HIGH_WATERMARK_CHECKPOINT_FILE, 5_000, 0);
        assert!(held.is_empty(), "a garbled file is absent");
    }
}
