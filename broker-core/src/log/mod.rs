//! The partition log: an append-only sequence of records with dense offsets,
//! split into segments (`{dir}/{base offset:020}.log` + `.index`) written through
//! the [`Storage`] seam in Kafka's record batch v2 format.
//!
//! Memory holds where each batch sits (offsets, position, epoch, producer,
//! kind), not the records: every read decodes the batches it needs from
//! storage and checks their CRCs, so what a reader gets is what the disk
//! holds. Every batch carries the leader epoch it was written in, and the
//! log keeps a [`LeaderEpochCache`] of where each epoch starts, written to
//! `{dir}/leader-epoch-checkpoint` whenever it changes.
//!
//! Batches are of three kinds ([`BatchKind`]): data (from a plain or an
//! idempotent producer), transactional data, and transaction markers
//! (COMMIT / ABORT control batches a coordinator writes, validated by
//! [`PartitionLog::check_marker`]). A producer's first transactional batch
//! opens its transaction in this partition, its marker ends it. The last
//! stable offset ([`PartitionLog::last_stable_offset`]) is the high
//! watermark held back at the first offset of the earliest transaction not
//! yet decided below it; read_committed readers stop there, and skip the
//! records of the aborted transactions [`PartitionLog::aborted_txns`] lists.
//! Kafka keeps those in a `.txnindex` file per segment; ksim keeps them in
//! memory and rebuilds them with the producer state (`txn_index`).
//!
//! Files: `codec` (batch v2 bytes, markers' control records), `varint`,
//! `index` (sparse offset index), `segment`, `epoch_cache`,
//! `epoch_checkpoint` (its file), `recovery` (open, from the recovery
//! point), `truncate`, `retention`, `producer_state` (producers' last
//! batches, epochs, open transactions and coordinator epochs, fed by every
//! append), `producer_snapshot` (`{dir}/{offset:020}.snapshot`, the producer
//! state as of a segment's base offset, written durably at every roll; at
//! open and after a truncation the state is the newest snapshot plus the
//! batches after it, so producers whose batches retention deleted are not
//! forgotten), `txn` (transactional appends, markers, the LSO) and
//! `txn_index` (the aborted transactions and the recently completed ones,
//! rebuilt at open and after a truncation from the snapshot at the log
//! start plus every batch, trimmed by retention).

mod codec;
mod decoded_tail;
mod epoch_cache;
mod epoch_checkpoint;
mod index;
mod producer_snapshot;
pub mod producer_state;
mod recovery;
mod retention;
mod segment;
mod truncate;
mod txn;
mod txn_index;
mod varint;

#[cfg(test)]
mod producer_state_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;

pub use epoch_cache::{EpochEntry, LeaderEpochCache};
pub use epoch_checkpoint::EpochCheckpointOutcome;
pub use producer_state::{AppendCheck, CompletedTxn, ProducerStateTable};
pub use txn_index::{MAX_ABORTED_TXNS, MAX_RECENT_TXNS};

use crate::storage::{write_durably, Storage, StorageError};
use crate::types::{BatchKind, LeaderEpoch, Offset, ProducerStamp, Record, StoredRecord, RECORD_OVERHEAD_BYTES};
use codec::{encode_batch, BatchHeader, RecordView};
use decoded_tail::DecodedTail;
use segment::Segment;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;
use txn_index::TxnIndex;

/// Segment, index and retention settings (Kafka's `log.*` broker configs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this (`log.segment.bytes`).
    /// At most `i32::MAX`, as in Kafka, so index positions fit in u32.
    pub segment_bytes: u64,
    /// One sparse index entry per this many bytes of log data (`log.index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// Delete oldest whole segments while the log would stay at least this big
    /// without them (`log.retention.bytes`; `None` = unlimited).
    pub retention_bytes: Option<u64>,
    /// Delete whole segments whose newest record is older than `now - retention_ms`
    /// (`log.retention.ms`; `None` = forever).
    pub retention_ms: Option<u64>,
    /// When appended data is fsynced (`log.flush.interval.messages` / `.ms`).
    pub flush: FlushPolicy,
}

/// When a log makes its appends durable. Whatever the policy, a segment is
/// flushed when the log rolls past it (as Kafka does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushPolicy {
    /// Never by itself: acks come from the page cache, and durability from
    /// the kernel's writeback, rolls and controlled shutdown (Kafka's default).
    Never,
    /// Every append is fsynced before it returns (`log.flush.interval.messages=1`):
    /// nothing is acknowledged that a power loss can take.
    EveryBatch,
    /// The broker flushes every log with unflushed data this often (`log.flush.interval.ms`).
    IntervalMs(u64),
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            flush: FlushPolicy::Never,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    Corrupt {
        file: String,
        detail: String,
    },
    /// A write failed (the disk is full): the broker must stop.
    Storage(StorageError),
}

impl From<StorageError> for LogError {
    fn from(e: StorageError) -> Self {
        LogError::Storage(e)
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::OffsetOutOfRange { requested, log_start, log_end } => {
                write!(f, "offset {requested} is outside the log [{log_start}, {log_end}]")
            }
            LogError::Corrupt { file, detail } => write!(f, "corrupt log file {file}: {detail}"),
            LogError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LogError {}

/// Why [`PartitionLog::append_replicated`] refused records fetched from the
/// leader. Apart from [`LogError`] so that callers of `read` and `open` need
/// not handle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The records do not continue the log densely: `got` came where
    /// `expected` was due.
    NonContiguous { expected: Offset, got: Offset },
    /// Record `offset` has an epoch below `min_epoch`: the log's latest epoch,
    /// or the epoch of the record before it. Epochs never go back in a log.
    EpochRegression { offset: Offset, epoch: LeaderEpoch, min_epoch: LeaderEpoch },
    /// A write failed (the disk is full): the broker must stop.
    Storage(StorageError),
}

impl From<StorageError> for AppendError {
    fn from(e: StorageError) -> Self {
        AppendError::Storage(e)
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::NonContiguous { expected, got } => {
                write!(f, "follower append of offset {got} where the log expects {expected}")
            }
            AppendError::EpochRegression { offset, epoch, min_epoch } => {
                write!(f, "follower append of offset {offset} in epoch {epoch}, below epoch {min_epoch}")
            }
            AppendError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// The offsets one append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
}

/// What opening a log read: segments below the recovery point are walked
/// (batch headers only), the rest validated (every batch decoded and its
/// CRC checked). A log opened from an empty directory read nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    pub segments_walked: u64,
    /// Bytes of the walked segments (only their batch headers were read).
    pub bytes_walked: u64,
    pub segments_validated: u64,
    /// Bytes read and checked in full, including any torn tail cut off.
    pub bytes_validated: u64,
    /// How `leader-epoch-checkpoint` compared with the batches.
    pub epoch_checkpoint: EpochCheckpointOutcome,
}

/// Bytes of batches one storage read asks for at most (one batch at least).
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// One past the last batch of the storage read that starts at `first`: the
/// batches after it up to [`READ_CHUNK_BYTES`], none at or past `end`.
fn batch_run_end(batches: &[segment::BatchMeta], first: usize, end: Offset) -> usize {
    let mut bytes = batches[first].size_bytes;
    let mut last = first + 1;
    while let Some(b) = batches.get(last) {
        if b.base_offset >= end || bytes + b.size_bytes > READ_CHUNK_BYTES {
            break;
        }
        bytes += b.size_bytes;
        last += 1;
    }
    last
}

#[derive(Clone)]
pub struct PartitionLog {
    dir: String,
    config: LogConfig,
    /// Sorted by base offset and contiguous (each ends where the next begins).
    /// Never empty; only the last (active) one may hold no records, and then it
    /// is the only one.
    segments: Vec<Segment>,
    log_end: Offset,
    size_bytes: u64,
    /// Where each epoch with records in the log starts: empty exactly when the
    /// log is, and always agrees with the batches' epochs.
    epochs: LeaderEpochCache,
    /// `{dir}/leader-epoch-checkpoint`.
    epoch_checkpoint_file: String,
    /// What that file holds (absent = empty), so it is written only when the
    /// cache changed; `None` when unknown (garbled at open).
    epochs_on_disk: Option<LeaderEpochCache>,
    /// Every offset below this is durable (Kafka's recovery point): flushed
    /// by this incarnation. A reopened log starts at its log start, since
    /// what recovery read may still sit in the page cache only — even below
    /// the checkpointed recovery point it opened with, which may be stale: a
    /// cut below it and the appends after it need not have been fsynced
    /// before a process crash. Only a clean shutdown vouches for all of it
    /// ([`PartitionLog::mark_flushed_by_clean_shutdown`]).
    flushed_to: Offset,
    /// Planted bug `skip-crc-check`: reads do not verify batch CRCs.
    skip_crc_on_read: bool,
    /// Planted bug `fsync-lies`: the flush policy is skipped.
    fsync_lies: bool,
    /// Idempotent producers' last batches in this log (Kafka's
    /// `ProducerStateManager`): always what the batches imply, those
    /// retention deleted included (their producers live on in the snapshot
    /// at the log start).
    producers: ProducerStateTable,
    /// Planted bug `idempotence-window-1`: the table keeps one batch per producer.
    producer_window: usize,
    /// The aborted transactions and the recently completed ones (`txn_index`):
    /// always what the batches from the log start imply.
    txns: TxnIndex,
    /// Reused encode buffer: the append path allocates nothing per call.
    scratch: Vec<u8>,
    /// What `open` read.
    recovery: RecoveryStats,
    /// The active segment's newest batches as reads decoded them, served
    /// again while the storage's reads are pure. A cache behind `&self`
    /// reads: what it holds never changes what a read returns.
    decoded: RefCell<DecodedTail>,
}

impl fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("log_start", &self.log_start_offset())
            .field("log_end", &self.log_end)
            .field("segments", &self.segments.len())
            .field("size_bytes", &self.size_bytes)
            .field("latest_epoch", &self.latest_epoch())
            .finish()
    }
}

impl PartitionLog {
    /// Appends `records` as one batch at `log_end_offset()`, stamped `now_ms`
    /// (LogAppendTime) and written in `leader_epoch` (the leader's current
    /// epoch). Rolls a new segment first if the active one is non-empty and the
    /// batch would push it past `segment_bytes`.
    ///
    /// Panics if `leader_epoch` is below [`PartitionLog::latest_epoch`]: a
    /// leader with a stale epoch is fenced before it reaches the log.
    pub fn append(
        &mut self,
        storage: &mut dyn Storage,
        now_ms: u64,
        leader_epoch: LeaderEpoch,
        records: &[Record],
    ) -> Result<AppendInfo, LogError> {
        self.append_from(storage, now_ms, leader_epoch, None, records)
    }

    /// [`PartitionLog::append`] for a batch from `producer`, an idempotent
    /// producer (`None`: a plain one). The caller has asked
    /// [`PartitionLog::check_producer`] first: the log does not judge
    /// sequences, it records them.
    pub fn append_from(
        &mut self,
        storage: &mut dyn Storage,
        now_ms: u64,
        leader_epoch: LeaderEpoch,
        producer: Option<ProducerStamp>,
        records: &[Record],
    ) -> Result<AppendInfo, LogError> {
        let header = BatchHeader { leader_epoch, timestamp_ms: now_ms, producer, kind: BatchKind::Data };
        self.append_batch(storage, header, records)
    }

    /// Appends `records` as one batch with `header` (timestamp: now), as a
    /// leader does, and flushes per the policy.
    fn append_batch(
        &mut self,
        storage: &mut dyn Storage,
        header: BatchHeader,
        records: &[Record],
    ) -> Result<AppendInfo, LogError> {
        let (base_offset, last_offset) = self.encode_for_append(storage, header, records)?;
        let info = self.finish_append(storage, header, base_offset, last_offset)?;
        self.flush_per_policy(storage);
        Ok(info)
    }

    /// What a leader is to do with a batch of `count` records from `producer`.
    pub fn check_producer(&self, producer: ProducerStamp, count: usize) -> AppendCheck {
        self.producers.check_batch(producer, count)
    }

    /// The idempotent producers this log has seen.
    pub fn producer_state(&self) -> &ProducerStateTable {
        &self.producers
    }

    /// Forgets every producer: only the planted bug
    /// `producer-state-lost-on-failover` calls this, on a new leader.
    pub fn forget_producers(&mut self) {
        self.producers.clear();
    }

    /// Forgets every open transaction, keeping the producers' sequences:
    /// only the planted bug `open-txns-lost-on-failover` calls this, on a
    /// new leader.
    pub fn forget_open_txns(&mut self) {
        self.producers.forget_open_txns();
    }

    /// Appends records fetched from the leader, keeping the leader's offsets,
    /// timestamps and epochs. The first must be at `log_end_offset()` and the
    /// rest dense after it, else [`AppendError::NonContiguous`]; their epochs
    /// must not go back, from the log's latest epoch on, else
    /// [`AppendError::EpochRegression`]. On error nothing is written.
    ///
    /// Written as one batch per run of records with equal epoch, timestamp,
    /// producer stamp and kind: a batch has one epoch, and a LogAppendTime
    /// batch one timestamp, so the leader's batches come out as they were
    /// (merged only where neighbours agree on all four; a marker is always
    /// a batch of its own). Panics on no records, as [`PartitionLog::append`]
    /// does, and on records no log read returns (a marker whose record is
    /// not its control record, a transactional record without a producer).
    pub fn append_replicated(
        &mut self,
        storage: &mut dyn Storage,
        records: &[StoredRecord],
    ) -> Result<AppendInfo, AppendError> {
        assert!(!records.is_empty(), "append of an empty batch");
        self.check_replicated(records)?;
        let base_offset = self.log_end;
        // An idempotent producer's batches differ in their stamps (each has
        // its own base sequence), so they come out as the leader wrote them.
        // Two markers in a row can be alike in everything (a coordinator's
        // retry): each is its own batch.
        let header = |r: &StoredRecord| BatchHeader {
            leader_epoch: r.leader_epoch,
            timestamp_ms: r.timestamp_ms,
            producer: r.producer,
            kind: r.kind,
        };
        let same_batch =
            |a: &StoredRecord, b: &StoredRecord| header(a) == header(b) && !matches!(a.kind, BatchKind::Marker(_));
        for run in records.chunk_by(same_batch) {
            let run_header = header(&run[0]);
            let (run_base, run_last) = self.encode_for_append(storage, run_header, run)?;
            assert_eq!(run_base, run[0].offset, "checked dense");
            self.finish_append(storage, run_header, run_base, run_last)?;
        }
        self.flush_per_policy(storage);
        let last_offset = Offset(self.log_end.0 - 1);
        assert_eq!(Some(last_offset), records.last().map(|r| r.offset));
        Ok(AppendInfo { base_offset, last_offset })
    }

    /// Why `records` cannot follow this log as they are, if they cannot.
    fn check_replicated(&self, records: &[StoredRecord]) -> Result<(), AppendError> {
        let mut min_epoch = self.latest_epoch().unwrap_or(LeaderEpoch::FIRST);
        for (expected, record) in (self.log_end.0..).map(Offset).zip(records) {
            if record.offset != expected {
                return Err(AppendError::NonContiguous { expected, got: record.offset });
            }
            if record.leader_epoch < min_epoch {
                let (offset, epoch) = (record.offset, record.leader_epoch);
                return Err(AppendError::EpochRegression { offset, epoch, min_epoch });
            }
            min_epoch = record.leader_epoch;
        }
        Ok(())
    }

    /// Encodes `records` as the next batch into `scratch` and rolls a segment
    /// if needed. Returns the batch's base offset (the log end) and last
    /// offset. A roll writes a producer snapshot; if that fails, nothing
    /// has changed and the broker stops.
    fn encode_for_append<R: RecordView>(
        &mut self,
        storage: &mut dyn Storage,
        header: BatchHeader,
        records: &[R],
    ) -> Result<(Offset, Offset), StorageError> {
        assert!(!records.is_empty(), "append of an empty batch");
        let (leader_epoch, latest) = (header.leader_epoch, self.latest_epoch().unwrap_or(LeaderEpoch::FIRST));
        assert!(leader_epoch >= latest, "append in epoch {leader_epoch} after epoch {latest}");
        let base_offset = self.log_end;
        let last_offset = Offset(base_offset.0 + records.len() as i64 - 1);
        self.scratch.clear();
        encode_batch(&mut self.scratch, base_offset, header, records);
        if self.should_roll(self.scratch.len() as u64, last_offset) {
            self.roll(storage, base_offset)?;
        }
        assert_eq!(self.active().end_offset(), base_offset, "offsets must stay dense");
        Ok((base_offset, last_offset))
    }

    /// Writes the batch encoded in `scratch` to the active segment, and starts
    /// its epoch in the cache if it is a new one. A new epoch is checkpointed
    /// before the batch is written, as Kafka assigns it: a crash in between
    /// leaves an entry at the log end, which `open` drops, while the other
    /// order could leave a batch whose epoch no checkpoint names. Then the
    /// producer state and the transaction index take the batch in.
    fn finish_append(
        &mut self,
        storage: &mut dyn Storage,
        header: BatchHeader,
        base_offset: Offset,
        last_offset: Offset,
    ) -> Result<AppendInfo, StorageError> {
        let leader_epoch = header.leader_epoch;
        // Kafka flushes the segments a roll left behind.
        if self.flushed_to < self.active().base_offset {
            self.flush_below(storage, self.segments.len() - 1);
        }
        if self.latest_epoch() != Some(leader_epoch) {
            let mut next = self.epochs.clone();
            assert!(next.assign(leader_epoch, base_offset), "checked newer by encode_for_append");
            self.write_epoch_checkpoint(storage, next)?;
        }
        let active = self.segments.last_mut().expect("a log always has a segment");
        assert_eq!(active.end_offset(), base_offset, "the batch continues the segment");
        let interval = self.config.index_interval_bytes;
        active.append_batch(storage, &self.scratch, last_offset, header, interval)?;
        self.size_bytes += self.scratch.len() as u64;
        self.log_end = last_offset.next();
        assert_eq!(active.end_offset(), self.log_end);
        self.epochs.assign(leader_epoch, base_offset);
        assert_eq!(self.latest_epoch(), Some(leader_epoch));
        let count = (last_offset.0 - base_offset.0 + 1) as usize;
        if let Some(txn) = self.producers.record_kind(header.kind, header.producer, count, base_offset) {
            self.txns.complete(txn);
        }
        Ok(AppendInfo { base_offset, last_offset })
    }

    /// Fsyncs every segment holding unflushed data; afterwards everything in
    /// the log survives a power loss.
    pub fn flush(&mut self, storage: &mut dyn Storage) {
        if self.flushed_to < self.log_end {
            self.flush_below(storage, self.segments.len());
        }
        assert_eq!(self.flushed_to, self.log_end);
    }

    /// Whether some appended data is not yet durable.
    pub fn has_unflushed(&self) -> bool {
        self.flushed_to < self.log_end
    }

    /// The recovery point: every offset below it is durable.
    pub fn flushed_to(&self) -> Offset {
        self.flushed_to
    }

    /// The previous process shut down cleanly (it flushed every log, then
    /// wrote the clean-shutdown marker) and nothing has been appended since
    /// this open: everything the files hold is durable, so the recovery point
    /// is the log end (Kafka's `LogLoader` does the same). Anything `open`
    /// cut only shortened durable files.
    pub fn mark_flushed_by_clean_shutdown(&mut self) {
        self.flushed_to = self.log_end;
    }

    /// What `open` read to recover this log.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.recovery
    }

    /// Rewrites `leader-epoch-checkpoint` if the cache differs from what it
    /// holds. Called after every change of the cache but an append's (which
    /// writes before it changes the cache).
    fn sync_epoch_checkpoint(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        self.write_epoch_checkpoint(storage, self.epochs.clone())
    }

    /// Writes `cache` to `leader-epoch-checkpoint` (temp file, fsync,
    /// rename), unless the file holds it already.
    fn write_epoch_checkpoint(
        &mut self,
        storage: &mut dyn Storage,
        cache: LeaderEpochCache,
    ) -> Result<(), StorageError> {
        if self.epochs_on_disk.as_ref() == Some(&cache) {
            return Ok(());
        }
        write_durably(storage, &self.epoch_checkpoint_file, &epoch_checkpoint::encode(&cache))?;
        self.epochs_on_disk = Some(cache);
        Ok(())
    }

    fn flush_per_policy(&mut self, storage: &mut dyn Storage) {
        if self.config.flush == FlushPolicy::EveryBatch && !self.fsync_lies {
            self.flush(storage);
        }
    }

    /// Fsyncs `segments[..end]` from the first one holding unflushed data.
    fn flush_below(&mut self, storage: &mut dyn Storage, end: usize) {
        let first = if self.flushed_to <= self.log_start_offset() { 0 } else { self.segment_index(self.flushed_to) };
        for segment in &self.segments[first..end] {
            segment.fsync(storage);
        }
        self.flushed_to = self.segments.get(end).map_or(self.log_end, |s| s.base_offset);
    }

    fn should_roll(&self, batch_bytes: u64, last_offset: Offset) -> bool {
        let active = self.active();
        let too_big = active.size_bytes + batch_bytes > self.config.segment_bytes;
        // Index entries hold offsets relative to the base as u32 (Kafka rolls here too).
        let too_far = last_offset.0 - active.base_offset.0 > i64::from(u32::MAX);
        !active.is_empty() && (too_big || too_far)
    }

    /// Records in `[from, max_offset)`, at most `max_bytes` of them by
    /// `StoredRecord::size_bytes`, but always at least one if any is available.
    /// Decoded from storage, a run of batches per storage read; a batch that
    /// does not read back as written is `Corrupt`.
    pub fn read(
        &self,
        storage: &dyn Storage,
        from: Offset,
        max_offset: Offset,
        max_bytes: u32,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let end = self.read_end(from, max_offset)?;
        if from >= end {
            return Ok(Vec::new());
        }
        // Sized once for the most records the range and the byte budget
        // allow (every record counts at least its overhead against the
        // budget, and the first is returned whatever its size): a lagging
        // reader's large fetch was copied again at every doubling.
        let range = (end.0 - from.0) as usize;
        let presize = range.min(max_bytes as usize / RECORD_OVERHEAD_BYTES + 1);
        let mut out = Vec::with_capacity(presize);
        let mut budget = max_bytes as usize;
        for (segment, run) in self.runs(from, end) {
            let decoded_from = out.len();
            self.read_run(storage, segment, run, &mut out)?;
            // Only the first batch of a read can start before `from`.
            let before = out[decoded_from..].iter().take_while(|r| r.offset < from).count();
            out.drain(decoded_from..decoded_from + before);
            for i in decoded_from..out.len() {
                let size = out[i].size_bytes();
                if out[i].offset >= end || (size > budget && i > 0) {
                    out.truncate(i);
                    return Ok(out);
                }
                budget = budget.saturating_sub(size);
            }
        }
        assert!(out.last().is_some_and(|r| r.offset.next() == end), "a read ends where asked");
        Ok(out)
    }

    /// Where a read from `from` up to `to` ends: `to` within the log, or
    /// OFFSET_OUT_OF_RANGE if `from` is outside it.
    fn read_end(&self, from: Offset, to: Offset) -> Result<Offset, LogError> {
        let log_start = self.log_start_offset();
        if from < log_start || from > self.log_end {
            let (requested, log_end) = (from, self.log_end);
            return Err(LogError::OffsetOutOfRange { requested, log_start, log_end });
        }
        Ok(to.min(self.log_end))
    }

    /// The runs of batches, segment by segment, that hold `[from, end)`
    /// (`from < end <= log_end`): a read's storage calls, in order.
    fn runs(&self, from: Offset, end: Offset) -> impl Iterator<Item = (&Segment, std::ops::Range<usize>)> + '_ {
        let first = self.segment_index(from);
        let segments = self.segments[first..].iter().enumerate();
        // Segments are dense: past the first, a segment's records start at its base offset.
        segments.take_while(move |(i, segment)| *i == 0 || segment.base_offset < end).flat_map(move |(i, segment)| {
            let mut batch = if i == 0 { segment.batch_holding(from) } else { 0 };
            std::iter::from_fn(move || {
                let more = batch < segment.batches.len() && segment.batches[batch].base_offset < end;
                more.then(|| {
                    let run = batch..batch_run_end(&segment.batches, batch, end);
                    batch = run.end;
                    (segment, run)
                })
            })
        })
    }

    /// The records in `[from, to)` as [`PartitionLog::read`] would return
    /// them without a byte limit, handed to `visit` (offset, leader epoch,
    /// value) instead of built: what an observer that keeps only that
    /// needs. On an error `visit` may have seen some of the range; the
    /// caller drops what it kept of it, as a failed read returns nothing.
    pub fn visit(
        &self,
        storage: &dyn Storage,
        from: Offset,
        to: Offset,
        visit: &mut dyn FnMut(Offset, LeaderEpoch, &[u8]),
    ) -> Result<(), LogError> {
        let end = self.read_end(from, to)?;
        if from >= end {
            return Ok(());
        }
        let mut in_range = |offset: Offset, epoch: LeaderEpoch, value: &[u8]| {
            if offset >= from && offset < end {
                visit(offset, epoch, value);
            }
        };
        for (segment, run) in self.runs(from, end) {
            self.visit_run(storage, segment, run, &mut in_range)?;
        }
        Ok(())
    }

    /// [`PartitionLog::read_run`] for [`PartitionLog::visit`]: the decoded
    /// tail's batches where it holds them (it is not filled from here).
    fn visit_run(
        &self,
        storage: &dyn Storage,
        segment: &Segment,
        run: std::ops::Range<usize>,
        visit: &mut dyn FnMut(Offset, LeaderEpoch, &[u8]),
    ) -> Result<(), LogError> {
        let next = self.serve_from_tail(storage, segment, run.clone(), |records| {
            records.iter().for_each(|r| visit(r.offset, r.leader_epoch, &r.value))
        });
        segment.visit_batches(storage, next..run.end, !self.skip_crc_on_read, visit)
    }

    /// Whether reads of `segment` may go through the decoded tail: reads
    /// are pure and it is the active segment.
    fn tail_usable(&self, storage: &dyn Storage, segment: &Segment) -> bool {
        storage.reads_are_pure() && std::ptr::eq(segment, self.active())
    }

    /// Hands `each` the decoded tail's records of `segment`'s batches `run`
    /// from its start, while the tail may be used (reads are pure, the
    /// segment is the active one) and holds them. Returns the first batch
    /// it did not hold.
    fn serve_from_tail(
        &self,
        storage: &dyn Storage,
        segment: &Segment,
        run: std::ops::Range<usize>,
        mut each: impl FnMut(&[StoredRecord]),
    ) -> usize {
        if !self.tail_usable(storage, segment) {
            return run.start;
        }
        let tail = self.decoded.borrow();
        let mut next = run.start;
        while let Some(records) = segment.batches[next..run.end].first().and_then(|b| tail.get(b.base_offset)) {
            each(records);
            next += 1;
        }
        next
    }

    /// Appends the records of `segment`'s batches `run` to `out`: those the
    /// decoded tail holds from there, the rest read from storage (and, if
    /// the storage's reads are pure and they are among the active segment's
    /// newest, kept in the tail).
    fn read_run(
        &self,
        storage: &dyn Storage,
        segment: &Segment,
        run: std::ops::Range<usize>,
        out: &mut Vec<StoredRecord>,
    ) -> Result<(), LogError> {
        let verify_crc = !self.skip_crc_on_read;
        if !self.tail_usable(storage, segment) {
            return segment.read_batches(storage, run, out, verify_crc);
        }
        let next = self.serve_from_tail(storage, segment, run.clone(), |records| out.extend_from_slice(records));
        if next == run.end {
            return Ok(());
        }
        let mut at = out.len();
        segment.read_batches(storage, next..run.end, out, verify_crc)?;
        let newest = segment.batches.len().saturating_sub(DecodedTail::BATCHES);
        let keep_from = segment.batches[newest].base_offset;
        let mut tail = self.decoded.borrow_mut();
        for meta in &segment.batches[next..run.end] {
            let count = (meta.last_offset.0 - meta.base_offset.0 + 1) as usize;
            tail.insert(meta.base_offset, &out[at..at + count], keep_from);
            at += count;
        }
        assert_eq!(at, out.len(), "every batch's records, densely");
        Ok(())
    }

    /// [`PartitionLog::read`] in whole batches, as a replica fetch needs
    /// them: a batch is never split (a follower rebuilds the leader's batches,
    /// and an idempotent producer's sequences, from what it is sent). A read
    /// that the byte budget cut inside a batch ends before that batch —
    /// unless it is the first, which is then returned whole, over the budget
    /// (Kafka's fetches always make progress the same way).
    pub fn read_whole_batches(
        &self,
        storage: &dyn Storage,
        from: Offset,
        max_offset: Offset,
        max_bytes: u32,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let mut out = self.read(storage, from, max_offset, max_bytes)?;
        let Some(last) = out.last().map(|r| r.offset) else { return Ok(out) };
        let segment = &self.segments[self.segment_index(last)];
        let batch = segment.batches[segment.batch_holding(last)];
        let end = batch.last_offset.next().min(max_offset);
        if last.next() >= end {
            return Ok(out);
        }
        if batch.base_offset > from {
            out.retain(|r| r.offset < batch.base_offset);
        } else {
            out.extend(self.read(storage, last.next(), end, u32::MAX)?);
        }
        Ok(out)
    }

    pub fn log_start_offset(&self) -> Offset {
        self.segments[0].base_offset
    }

    /// The next offset to be written (LEO).
    pub fn log_end_offset(&self) -> Offset {
        self.log_end
    }

    /// The newest epoch with records in the log; `None` when it holds none.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    /// OffsetsForLeaderEpoch over this log: the largest epoch ≤ `requested`
    /// and where it ends (the next epoch's start offset, or the log end for
    /// the latest epoch); `None` (Kafka's UNDEFINED_EPOCH and
    /// UNDEFINED_EPOCH_OFFSET) if the log holds no epoch that old. See
    /// [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(requested, self.log_end)
    }

    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The (segment base offset, byte position) to start scanning the files from
    /// to find `offset`: binary search over segments, then over that segment's
    /// sparse index. `None` outside `[log start, log end)`.
    pub fn index_lookup(&self, offset: Offset) -> Option<(Offset, u64)> {
        if offset < self.log_start_offset() || offset >= self.log_end {
            return None;
        }
        let segment = &self.segments[self.segment_index(offset)];
        let relative = u32::try_from(offset.0 - segment.base_offset.0).expect("rolled at u32");
        Some((segment.base_offset, u64::from(segment.index.lookup(relative))))
    }

    /// The segment holding `offset` (binary search by base offset).
    fn segment_index(&self, offset: Offset) -> usize {
        assert!(offset >= self.log_start_offset() && offset <= self.log_end);
        self.segments.partition_point(|s| s.base_offset <= offset) - 1
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has a segment")
    }
}
