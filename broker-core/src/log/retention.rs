//! Retention: deleting whole oldest segments by age and by total size.

use super::PartitionLog;
use crate::storage::{Storage, StorageError};

impl PartitionLog {
    /// Deletes oldest segments, never the active (last) one, advancing the log
    /// start offset, and returns how many went. As Kafka does, by age first
    /// (newest record older than `now_ms - retention_ms`), then by size: a segment
    /// goes only if the log would still hold at least `retention_bytes` without
    /// it, so retention never cuts below the configured size. The epoch cache
    /// forgets epochs below the new log start. When segments went, the new
    /// first segment is flushed unless it already is: the deletes are durable
    /// at once and the log start lives only in that segment's name, so a power
    /// loss that took its file (the never-synced active segment, say) would
    /// reopen the log below its start (empty at offset 0). Then
    /// `leader-epoch-checkpoint` is rewritten (Kafka's `truncateFromStart`);
    /// a failed write (a full disk) is an error: the broker stops.
    pub fn apply_retention(&mut self, storage: &mut dyn Storage, now_ms: u64) -> Result<usize, StorageError> {
        let start_before = self.log_start_offset();
        let mut deleted = 0;
        if let Some(retention_ms) = self.config.retention_ms {
            let cutoff_ms = now_ms.saturating_sub(retention_ms);
            while self.segments.len() > 1 && self.segments[0].max_timestamp_ms.is_some_and(|newest| newest < cutoff_ms)
            {
                self.delete_oldest_segment(storage);
                deleted += 1;
            }
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            while self.segments.len() > 1 && self.size_bytes - self.segments[0].size_bytes >= retention_bytes {
                self.delete_oldest_segment(storage);
                deleted += 1;
            }
        }
        assert!(self.log_start_offset() >= start_before && self.log_start_offset() <= self.log_end);
        if deleted > 0 {
            // `flushed_to` past the log start means this incarnation synced the first segment.
            if self.flushed_to <= self.log_start_offset() {
                self.flush_below(storage, 1);
            }
            self.epochs.truncate_from_start(self.log_start_offset());
            let first = self.epochs.entries().first().map(|e| e.start_offset);
            assert_eq!(first, Some(self.log_start_offset()), "a segment with records remains");
            self.sync_epoch_checkpoint(storage)?;
        }
        Ok(deleted)
    }

    fn delete_oldest_segment(&mut self, storage: &mut dyn Storage) {
        assert!(self.segments.len() > 1, "the active segment is never deleted");
        let segment = self.segments.remove(0);
        assert!(!segment.is_empty() && segment.end_offset() == self.log_start_offset());
        segment.delete_files(storage);
        self.size_bytes -= segment.size_bytes;
    }
}
