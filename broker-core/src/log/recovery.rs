//! Opening a log: walk the segments the recovery point vouches for, decode
//! and validate the rest, keep the longest valid prefix, cut the rest off in
//! storage, rebuild any index that does not match its segment, reconcile
//! the leader epoch cache with `leader-epoch-checkpoint`, and load the
//! producer state from the newest producer snapshot and the batches after it.
//!
//! Kafka (`LogLoader`) recovers only the segments at or past the recovery
//! point and does not read the others at all: it loads them lazily through
//! their indexes. ksim keeps every batch's position in memory, so it must
//! read something of every segment; below the recovery point it reads the
//! batch headers only (`walk_segment`: no CRC, no record decoded), and
//! takes their epochs from `leader-epoch-checkpoint` as Kafka does, checked
//! against the headers. Reads still check every CRC, so damage in a walked
//! segment is found when read, never served.

use super::codec::{decode_batch, decode_header, DecodeError};
use super::epoch_checkpoint::{self, OnDisk, EPOCH_CHECKPOINT_FILE};
use super::producer_state::{ProducerStateTable, RETAINED_BATCHES};
use super::segment::{BatchMeta, Segment};
use super::txn_index::TxnIndex;
use super::{LeaderEpochCache, LogConfig, LogError, PartitionLog, RecoveryStats};
use crate::plant::{Plant, Plants};
use crate::storage::Storage;
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use std::collections::BTreeSet;

/// Bytes one read of a header walk asks for at most: the headers of small
/// batches come many to a read (a disk reads whole pages anyway), and the
/// records of a batch bigger than this are skipped, not read.
const WALK_CHUNK_BYTES: u64 = 64 * 1024;

impl PartitionLog {
    /// Opens (recovers) the log under `dir`. Segments wholly below
    /// `recovery_point` (every offset they hold is below it: the broker's
    /// `recovery-point-offset-checkpoint` says they were fsynced) are walked
    /// header by header: offsets dense and continuing, the headers tiling
    /// the file, each batch in the epoch `leader-epoch-checkpoint` gives its
    /// offset (with a garbled checkpoint nothing is walked). A walk that
    /// fails validates the segment instead. The segment holding the recovery
    /// point and every later one are validated batch by batch (length,
    /// magic, CRC-32C, dense offsets continuing the previous batch and
    /// segment, a leader epoch not below the previous batch's); at the first
    /// bad or torn batch the file is truncated there and every later segment
    /// deleted, so the log is the longest valid prefix of what was written.
    /// `None` validates everything. An empty `dir` is a new log at offset 0.
    /// Files other than `*.log`/`*.index`, the checkpoint and producer
    /// snapshots are ignored; a `.log`/`.index` not named by a 20-digit
    /// offset is `Corrupt` (reported before anything is changed).
    ///
    /// The leader epoch cache is rebuilt from the epochs of the batches read
    /// (walked or validated: every header carries one), so it agrees with the
    /// batches whatever the disk lost; below the recovery point that is what
    /// the checkpoint says, since the walk checked it. The checkpoint is then
    /// reconciled with the recovered log as Kafka does (entries at or past
    /// the log end dropped, the first clamped to the log start) and compared
    /// with it; where they disagree the batches win and the file is
    /// rewritten. How it went is in [`RecoveryStats::epoch_checkpoint`].
    ///
    /// The producer state comes from the snapshots (`producer_snapshot`):
    /// those past the recovered log end go (a crash took batches they
    /// describe), the newest one left that decodes is loaded (a damaged one
    /// is deleted and the next older tried; none: empty at the log start),
    /// and the batches from its offset on are replayed from memory. The
    /// transaction index is rebuilt from the snapshot at the log start and
    /// every batch (`txn_index`).
    ///
    /// With `Plant::OffsetReuse`, a non-empty log drops its last record, so the
    /// next append reuses that offset.
    pub fn open(
        dir: &str,
        config: LogConfig,
        plants: &Plants,
        recovery_point: Option<Offset>,
        storage: &mut dyn Storage,
    ) -> Result<PartitionLog, LogError> {
        assert!(!dir.is_empty() && !dir.ends_with('/'), "bad log dir {dir:?}");
        assert!((1..=i32::MAX as u64).contains(&config.segment_bytes), "bad segment_bytes");
        let bases: Vec<Offset> = list_segments(dir, storage)?.into_iter().collect();
        let epoch_checkpoint_file = format!("{dir}/{EPOCH_CHECKPOINT_FILE}");
        // A write that crashed before its rename leaves its temporary file.
        let stale_tmp = format!("{epoch_checkpoint_file}.tmp");
        if storage.len(&stale_tmp).is_some() {
            storage.delete(&stale_tmp);
        }
        let on_disk = OnDisk::parse(storage.read(&epoch_checkpoint_file).as_deref());
        // A walk needs the checkpoint to vouch for the epochs it reads; a
        // missing one vouches for empty segments only.
        let no_epochs = LeaderEpochCache::default();
        let witness = match &on_disk {
            OnDisk::Missing => Some(&no_epochs),
            on_disk => on_disk.held(),
        };
        let trust = recovery_point.zip(witness);
        // The checkpoint is made durable before a new epoch's first batch is
        // written, so no valid batch carries an epoch above its latest. The
        // epoch field is outside the CRC: this is what catches a flip there.
        let max_epoch = on_disk.held().and_then(LeaderEpochCache::latest_epoch);
        let refuse_torn_tail = plants.on(Plant::RefuseTornTail);
        let (segments, epochs, mut stats) =
            recover_segments(dir, &bases, &config, trust, max_epoch, refuse_torn_tail, storage)?;
        let log_end = segments.last().expect("not empty").end_offset();
        let log_start = segments[0].base_offset;
        let (outcome, epochs_on_disk) = epoch_checkpoint::judge(on_disk, &epochs, log_start, log_end);
        stats.epoch_checkpoint = outcome;
        let size_bytes = segments.iter().map(|s| s.size_bytes).sum();
        let mut log = PartitionLog {
            dir: dir.to_string(),
            config,
            segments,
            log_end,
            size_bytes,
            epochs,
            epoch_checkpoint_file,
            epochs_on_disk,
            // Not the recovery point: see `flushed_to`.
            flushed_to: log_start,
            skip_crc_on_read: plants.on(Plant::SkipCrcCheck),
            fsync_lies: plants.on(Plant::FsyncLies),
            producers: ProducerStateTable::default(),
            producer_window: if plants.on(Plant::IdempotenceWindow1) { 1 } else { RETAINED_BATCHES },
            txns: TxnIndex::default(),
            scratch: Vec::new(),
            recovery: stats,
            decoded: Default::default(),
        };
        log.load_producer_state(storage);
        assert!(log.log_start_offset() <= log.log_end);
        assert_eq!(log.epochs.entries().is_empty(), log.log_start_offset() == log.log_end);
        assert_eq!(log.epochs.entries().first().map(|e| e.start_offset), (log_start < log_end).then_some(log_start));
        log.sync_epoch_checkpoint(storage)?;
        if plants.on(Plant::OffsetReuse) && log.log_end > log.log_start_offset() {
            let reused = Offset(log.log_end.0 - 1);
            log.truncate_to(storage, reused)?;
        }
        Ok(log)
    }
}

/// The segments at `bases` as recovery keeps them (never none), the epochs
/// their batches carry, and what was read. `trust`: the recovery point and
/// the epoch checkpoint vouching for the segments below it.
fn recover_segments(
    dir: &str,
    bases: &[Offset],
    config: &LogConfig,
    trust: Option<(Offset, &LeaderEpochCache)>,
    max_epoch: Option<LeaderEpoch>,
    refuse_torn_tail: bool,
    storage: &mut dyn Storage,
) -> Result<(Vec<Segment>, LeaderEpochCache, RecoveryStats), LogError> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut epochs = LeaderEpochCache::default();
    let mut stats = RecoveryStats::default();
    let mut intact = true;
    // Trust ends at the first segment that is validated: every later one is too.
    let mut trusted_below = trust;
    for (i, &base) in bases.iter().enumerate() {
        let continues = segments.last().is_none_or(|prev| prev.end_offset() == base);
        if !(intact && continues) {
            intact = false;
            Segment::new(dir, base).delete_files(storage);
            continue;
        }
        if let Some((point, witness)) = trusted_below {
            // A segment with a successor ends at the successor's base.
            let wholly_below = bases.get(i + 1).map_or(base <= point, |&next| next <= point);
            let walk = || walk_segment(dir, base, config, witness, point, storage);
            if let Some(segment) = wholly_below.then(walk).flatten() {
                for batch in &segment.batches {
                    epochs.assign(batch.leader_epoch, batch.base_offset);
                }
                stats.segments_walked += 1;
                stats.bytes_walked += segment.size_bytes;
                segments.push(segment);
                continue;
            }
            trusted_below = None;
        }
        let (segment, clean, read) =
            recover_segment(dir, base, config, &mut epochs, max_epoch, refuse_torn_tail, storage)?;
        stats.segments_validated += 1;
        stats.bytes_validated += read;
        intact = clean;
        segments.push(segment);
    }
    // A crash right after a roll leaves an empty segment behind a full one.
    while segments.len() > 1 && segments.last().is_some_and(Segment::is_empty) {
        segments.pop().expect("len > 1").delete_files(storage);
    }
    if segments.is_empty() {
        let segment = Segment::new(dir, Offset::ZERO);
        segment.create_files(storage)?;
        segments.push(segment);
    }
    for segment in &segments {
        sync_index(segment, storage)?;
    }
    Ok((segments, epochs, stats))
}

/// Base offsets of the `.log` files under `dir/`, in order. Deletes `.index`
/// files whose `.log` is gone. Other files (the epoch checkpoint, producer
/// snapshots `*.snapshot` and their temp files) are not segments: skipped.
fn list_segments(dir: &str, storage: &mut dyn Storage) -> Result<BTreeSet<Offset>, LogError> {
    let prefix = format!("{dir}/");
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    for path in storage.list(&prefix) {
        let name = &path[prefix.len()..];
        let (stem, is_log) = match (name.strip_suffix(".log"), name.strip_suffix(".index")) {
            _ if name.contains('/') => continue,
            (Some(stem), _) => (stem, true),
            (_, Some(stem)) => (stem, false),
            _ => continue,
        };
        let Some(base) = parse_base_offset(stem) else {
            let detail = "segment file not named by a 20-digit base offset".to_string();
            return Err(LogError::Corrupt { file: path, detail });
        };
        if is_log {
            logs.insert(base);
        } else {
            indexes.push((base, path));
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            storage.delete(&path);
        }
    }
    Ok(logs)
}

pub(super) fn parse_base_offset(stem: &str) -> Option<Offset> {
    let digits = stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| stem.parse::<i64>().ok().map(Offset)).flatten()
}

/// Walks the batch headers of a segment the recovery point vouches for,
/// decoding only the fixed header of each batch (reads of up to
/// [`WALK_CHUNK_BYTES`], from one header on), and the whole of a marker's
/// (its content is in its record; see `codec::decode_header`). `None` (validate it
/// instead) unless the headers tile the file exactly, the offsets are dense
/// from `base`, each batch's epoch is the one `witness` (the epoch
/// checkpoint) gives its base offset, and the segment ends at or below
/// `recovery_point`. The epoch is outside the CRC, and a header read here is
/// not checked against one, so the checkpoint is what catches a flipped
/// epoch (and a segment the checkpoint does not describe: a power loss that
/// undid a truncation). ksim writes a batch's base timestamp equal to its
/// max timestamp, which retention trusts: a max below the base is a flipped
/// bit. Changes nothing.
fn walk_segment(
    dir: &str,
    base: Offset,
    config: &LogConfig,
    witness: &LeaderEpochCache,
    recovery_point: Offset,
    storage: &dyn Storage,
) -> Option<Segment> {
    let mut segment = Segment::new(dir, base);
    let len = storage.len(&segment.log_file)?;
    let (mut chunk, mut chunk_start) = (Vec::new(), 0);
    let mut position = 0;
    while position < len {
        // The header at `position` (a marker's whole batch): in the chunk in
        // hand, or read from there on.
        let in_hand = |chunk: &[u8], chunk_start: u64| {
            let at = usize::try_from(position - chunk_start).unwrap_or(usize::MAX);
            decode_header(chunk.get(at..).unwrap_or_default())
        };
        let batch = match in_hand(&chunk, chunk_start) {
            Err(DecodeError::Incomplete) => {
                chunk = storage.read_at(&segment.log_file, position, WALK_CHUNK_BYTES.min(len - position))?;
                chunk_start = position;
                // Still short from its start: a torn tail.
                in_hand(&chunk, chunk_start).ok()?
            }
            decoded => decoded.ok()?,
        };
        let size_bytes = batch.size_bytes as u64;
        let fits = position.checked_add(size_bytes).is_some_and(|end| end <= len);
        let vouched = witness.epoch_at(batch.base_offset) == Some(batch.leader_epoch);
        let sane_time = i64::try_from(batch.max_timestamp_ms).is_ok_and(|max| batch.base_timestamp <= max);
        if !fits || batch.base_offset != segment.end_offset() || !vouched || !sane_time {
            return None;
        }
        let meta = BatchMeta {
            base_offset: batch.base_offset,
            last_offset: batch.last_offset,
            position,
            size_bytes,
            leader_epoch: batch.leader_epoch,
            max_timestamp_ms: batch.max_timestamp_ms,
            producer: batch.producer,
            kind: batch.kind,
        };
        segment.track_batch(meta, config.index_interval_bytes);
        position += size_bytes;
    }
    assert_eq!(segment.size_bytes, len);
    (segment.end_offset() <= recovery_point).then_some(segment)
}

/// Decodes one segment file, assigning each batch's epoch in `epochs`. Returns
/// the segment, whether the whole file was valid and how many bytes were
/// read; if not valid, the file has been truncated after the last valid
/// batch. With `refuse_torn_tail` (planted bug), an invalid tail is an error
/// instead, and the file is left alone.
fn recover_segment(
    dir: &str,
    base: Offset,
    config: &LogConfig,
    epochs: &mut LeaderEpochCache,
    max_epoch: Option<LeaderEpoch>,
    refuse_torn_tail: bool,
    storage: &mut dyn Storage,
) -> Result<(Segment, bool, u64), LogError> {
    let log_file = Segment::new(dir, base).log_file;
    let mut file = Bytes::from(storage.read(&log_file).unwrap_or_default());
    // A bad batch makes the file be read again before the tail is cut: a
    // transient read error (the media intact, bytes flipped on their way)
    // must not cost committed records. If the bytes differ, the segment is
    // scanned again from its start, with the epochs as they were before it
    // (a flip in an earlier batch's epoch, outside the CRC, shows only at a
    // later batch). What reads back the same is on the media. A batch in an
    // epoch the checkpoint does not hold is suspect too (the checkpoint is
    // made durable before a new epoch's first batch), but if it reads back
    // the same, the batches win, as everywhere in recovery.
    let epochs_before = epochs.clone();
    let mut rereads_left = MAX_REREADS;
    let mut bound = max_epoch;
    let (segment, position) = loop {
        let (segment, position) = scan_segment(dir, base, config, &file, epochs, bound);
        if position == file.len() {
            break (segment, position);
        }
        let again = if rereads_left > 0 {
            rereads_left -= 1;
            Some(Bytes::from(storage.read(&log_file).unwrap_or_default()))
        } else {
            None
        };
        match again {
            Some(again) if again != file => file = again,
            // Stable bytes (or no reads left): judge them without the bound.
            _ if bound.is_some() => bound = None,
            _ => break (segment, position),
        }
        *epochs = epochs_before.clone();
    };
    let clean = position == file.len();
    if !clean {
        if refuse_torn_tail {
            let detail = format!("invalid batch at byte {position} of {}", file.len());
            return Err(LogError::Corrupt { file: log_file, detail });
        }
        storage.truncate(&log_file, position as u64);
    }
    assert_eq!(segment.size_bytes, position as u64);
    Ok((segment, clean, file.len() as u64))
}

/// How many times recovery reads a segment again after finding a bad batch.
pub(super) const MAX_REREADS: u32 = 3;

/// Validates the batches of `file` in order, assigning their epochs; returns
/// the segment of the valid prefix and where that prefix ends.
fn scan_segment(
    dir: &str,
    base: Offset,
    config: &LogConfig,
    file: &Bytes,
    epochs: &mut LeaderEpochCache,
    max_epoch: Option<LeaderEpoch>,
) -> (Segment, usize) {
    let mut segment = Segment::new(dir, base);
    let mut position = 0;
    // Records are decoded only to validate them; reads decode again from storage.
    let mut records = Vec::new();
    while position < file.len() {
        let expected = segment.end_offset();
        records.clear();
        let Ok(batch) = decode_batch(file, position, &mut records) else { break };
        // The epoch field is outside the CRC; no append ever wrote an epoch
        // below the one before it, nor one its checkpoint does not hold.
        let epoch_went_back = epochs.latest_epoch().is_some_and(|latest| batch.leader_epoch < latest);
        let epoch_unknown = max_epoch.is_some_and(|max| batch.leader_epoch > max);
        if batch.base_offset != expected || epoch_went_back || epoch_unknown {
            break;
        }
        epochs.assign(batch.leader_epoch, batch.base_offset);
        let meta = BatchMeta {
            base_offset: batch.base_offset,
            last_offset: batch.last_offset,
            position: position as u64,
            size_bytes: batch.size_bytes as u64,
            leader_epoch: batch.leader_epoch,
            max_timestamp_ms: batch.max_timestamp_ms,
            producer: batch.producer,
            kind: batch.kind,
        };
        segment.track_batch(meta, config.index_interval_bytes);
        position += batch.size_bytes;
    }
    (segment, position)
}

/// Rewrites the `.index` file if it is missing, short or differs from the index
/// rebuilt from the segment.
fn sync_index(segment: &Segment, storage: &mut dyn Storage) -> Result<(), LogError> {
    let mut expected = Vec::with_capacity(segment.index.len_bytes() as usize);
    segment.index.encode(&mut expected);
    if storage.read(&segment.index_file).as_deref() != Some(&expected[..]) {
        storage.write_all(&segment.index_file, &expected)?;
    }
    Ok(())
}
