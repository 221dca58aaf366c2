//! Retention: deleting whole oldest segments by age and by total size.

use super::{producer_snapshot, PartitionLog};
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
    ///
    /// The producer state keeps every producer, those whose batches all went
    /// included (Kafka expires producers by time, not with their segments).
    /// What carries them through a later open or truncation is the producer
    /// snapshot at the new log start, made sure of before anything is
    /// deleted (a failed write deletes nothing); older snapshots go with
    /// their segments. Open transactions are kept too (their first offset
    /// may now be below the log start: the last stable offset is then the
    /// log start); aborted transactions whose marker went are dropped.
    pub fn apply_retention(&mut self, storage: &mut dyn Storage, now_ms: u64) -> Result<usize, StorageError> {
        let start_before = self.log_start_offset();
        let doomed = self.segments_past_retention(now_ms);
        if doomed == 0 {
            return Ok(0);
        }
        let new_start = self.segments[doomed].base_offset;
        self.ensure_producer_snapshot_at(storage, new_start)?;
        for _ in 0..doomed {
            self.delete_oldest_segment(storage);
        }
        assert_eq!(self.log_start_offset(), new_start);
        assert!(self.log_start_offset() > start_before && self.log_start_offset() <= self.log_end);
        producer_snapshot::delete_where(storage, &self.dir, |offset| offset < new_start);
        self.txns.drop_below(new_start);
        // `flushed_to` past the log start means this incarnation synced the first segment.
        if self.flushed_to <= self.log_start_offset() {
            self.flush_below(storage, 1);
        }
        self.epochs.truncate_from_start(self.log_start_offset());
        let first = self.epochs.entries().first().map(|e| e.start_offset);
        assert_eq!(first, Some(self.log_start_offset()), "a segment with records remains");
        self.sync_epoch_checkpoint(storage)?;
        Ok(doomed)
    }

    /// How many oldest segments retention deletes now: by age, then by size,
    /// never the active one.
    pub(super) fn segments_past_retention(&self, now_ms: u64) -> usize {
        let mut doomed = 0;
        let deletable = |doomed: usize| self.segments.len() - doomed > 1;
        if let Some(retention_ms) = self.config.retention_ms {
            let cutoff_ms = now_ms.saturating_sub(retention_ms);
            while deletable(doomed) && self.segments[doomed].max_timestamp_ms.is_some_and(|newest| newest < cutoff_ms) {
                doomed += 1;
            }
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            let mut size_bytes = self.size_bytes - self.segments[..doomed].iter().map(|s| s.size_bytes).sum::<u64>();
            while deletable(doomed) && size_bytes - self.segments[doomed].size_bytes >= retention_bytes {
                size_bytes -= self.segments[doomed].size_bytes;
                doomed += 1;
            }
        }
        doomed
    }

    fn delete_oldest_segment(&mut self, storage: &mut dyn Storage) {
        assert!(self.segments.len() > 1, "the active segment is never deleted");
        let segment = self.segments.remove(0);
        self.decoded.get_mut().clear();
        assert!(!segment.is_empty() && segment.end_offset() == self.log_start_offset());
        segment.delete_files(storage);
        self.size_bytes -= segment.size_bytes;
    }
}
