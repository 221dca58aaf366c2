//! Removing a suffix of the log (followers do this after a leader change).

use super::segment::Segment;
use super::txn_index::TxnIndex;
use super::{producer_snapshot, PartitionLog, ProducerStateTable};
use crate::storage::{Storage, StorageError};
use crate::types::Offset;

impl PartitionLog {
    /// Removes every record at `offset` or above, in memory and in storage, and
    /// forgets the epochs that started there or later. No-op if
    /// `offset >= log_end_offset()`. At or below the log start the whole log goes
    /// and it restarts empty at `offset` (start = end = `offset`, no epochs).
    /// When epochs went, `leader-epoch-checkpoint` is rewritten after the
    /// cut, as Kafka does (a crash in between leaves entries past the log
    /// end, which `open` drops). A storage error (the disk filled up while
    /// re-writing a cut batch or the checkpoint) leaves the log to be
    /// recovered: the broker stops.
    ///
    /// The producer state is rebuilt as Kafka does: producer snapshots past
    /// the new log end are deleted (they describe cut batches), and the
    /// state is the newest one left plus the batches after it. Not from the
    /// batches alone: that would forget producers whose batches retention
    /// deleted. A whole-log reset deletes every snapshot and forgets every
    /// producer. The transaction index is rebuilt the same way (a cut
    /// marker's transaction is open again; see `txn_index`).
    pub fn truncate_to(&mut self, storage: &mut dyn Storage, offset: Offset) -> Result<(), StorageError> {
        assert!(offset.0 >= 0, "truncate to negative offset {offset}");
        if offset >= self.log_end {
            return Ok(());
        }
        self.decoded.get_mut().clear();
        self.epochs.truncate_from_end(offset);
        if offset <= self.log_start_offset() {
            producer_snapshot::delete_where(storage, &self.dir, |_| true);
            self.producers = ProducerStateTable::new(self.producer_window);
            self.txns = TxnIndex::default();
            self.reset_to(storage, offset)?;
            return self.sync_epoch_checkpoint(storage);
        }
        while self.active().base_offset >= offset {
            let segment = self.segments.pop().expect("the first segment starts below offset");
            segment.delete_files(storage);
            self.size_bytes -= segment.size_bytes;
        }
        let interval = self.config.index_interval_bytes;
        let active = self.segments.last_mut().expect("the first segment starts below offset");
        if offset < active.end_offset() {
            self.size_bytes -= active.size_bytes;
            active.truncate_to(storage, offset, interval, &mut self.scratch)?;
            self.size_bytes += active.size_bytes;
        }
        // A cut batch that no longer reads back intact goes whole, so the log
        // may end below `offset`; then a segment it emptied goes too.
        if self.segments.len() > 1 && self.active().is_empty() {
            self.segments.pop().expect("len > 1").delete_files(storage);
        }
        self.log_end = self.active().end_offset();
        assert!(self.log_end <= offset);
        if self.log_end < offset {
            self.epochs.truncate_from_end(self.log_end);
        }
        assert!(self.log_start_offset() <= self.log_end);
        let empty = self.log_start_offset() == self.log_end;
        assert_eq!(self.epochs.latest_epoch().is_none(), empty, "the epoch of the records kept is kept");
        self.flushed_to = self.flushed_to.min(self.log_end);
        self.reload_producer_state_after_cut(storage);
        self.sync_epoch_checkpoint(storage)
    }

    /// Deletes every segment and starts an empty one at `offset`. The new
    /// segment's files are fsynced: the deletes are durable at once, and the
    /// log start lives only in the segment's name, so a power loss that took
    /// the new files would reopen the log empty at offset 0.
    fn reset_to(&mut self, storage: &mut dyn Storage, offset: Offset) -> Result<(), StorageError> {
        assert!(offset <= self.log_start_offset());
        for segment in self.segments.drain(..) {
            segment.delete_files(storage);
        }
        let segment = Segment::new(&self.dir, offset);
        segment.create_files(storage)?;
        segment.fsync(storage);
        self.segments.push(segment);
        self.log_end = offset;
        self.size_bytes = 0;
        self.flushed_to = offset;
        assert_eq!(self.log_start_offset(), self.log_end);
        assert!(self.epochs.entries().is_empty(), "an empty log has no epochs");
        Ok(())
    }
}
