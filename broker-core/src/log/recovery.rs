//! Opening a log: decode every segment, keep the longest valid prefix, cut the
//! rest off in storage, rebuild any index that does not match its segment, and
//! rebuild the leader epoch cache from the batches' epochs.

use super::codec::decode_batch;
use super::segment::{BatchMeta, Segment};
use super::{LeaderEpochCache, LogConfig, LogError, PartitionLog};
use crate::plant::{Plant, Plants};
use crate::storage::Storage;
use crate::types::Offset;
use bytes::Bytes;
use std::collections::BTreeSet;

impl PartitionLog {
    /// Opens (recovers) the log under `dir`. Batches are validated in order (length,
    /// magic, CRC-32C, dense offsets continuing the previous batch and segment, a
    /// leader epoch not below the previous batch's); at the first bad or torn batch
    /// the file is truncated there and every later segment deleted, so the log is
    /// the longest valid prefix of what was written.
    /// An empty `dir` is a new log at offset 0. Files other than `*.log`/`*.index`
    /// are ignored; a `.log`/`.index` not named by a 20-digit offset is `Corrupt`
    /// (reported before anything is changed).
    ///
    /// The leader epoch cache is rebuilt from the batches' epochs. Kafka reads it
    /// from `leader-epoch-checkpoint` instead, which can also hold an epoch that
    /// wrote nothing yet; until the disk issue adds that file, the cache knows
    /// only epochs with records, which is exactly what appends put in it.
    ///
    /// With `Plant::OffsetReuse`, a non-empty log drops its last record, so the
    /// next append reuses that offset.
    pub fn open(
        dir: &str,
        config: LogConfig,
        plants: &Plants,
        storage: &mut dyn Storage,
    ) -> Result<PartitionLog, LogError> {
        assert!(!dir.is_empty() && !dir.ends_with('/'), "bad log dir {dir:?}");
        assert!((1..=i32::MAX as u64).contains(&config.segment_bytes), "bad segment_bytes");
        let bases = list_segments(dir, storage)?;
        let mut segments: Vec<Segment> = Vec::new();
        let mut epochs = LeaderEpochCache::default();
        let mut intact = true;
        for base in bases {
            let continues = segments.last().is_none_or(|prev| prev.end_offset() == base);
            if !(intact && continues) {
                intact = false;
                Segment::new(dir, base).delete_files(storage);
                continue;
            }
            let refuse_torn_tail = plants.on(Plant::RefuseTornTail);
            let (segment, clean) = recover_segment(dir, base, &config, &mut epochs, refuse_torn_tail, storage)?;
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
        let log_end = segments.last().expect("not empty").end_offset();
        let size_bytes = segments.iter().map(|s| s.size_bytes).sum();
        let dir = dir.to_string();
        let flushed_to = segments[0].base_offset;
        let scratch = Vec::new();
        let skip_crc_on_read = plants.on(Plant::SkipCrcCheck);
        let fsync_lies = plants.on(Plant::FsyncLies);
        let mut log = PartitionLog {
            dir,
            config,
            segments,
            log_end,
            size_bytes,
            epochs,
            flushed_to,
            skip_crc_on_read,
            fsync_lies,
            scratch,
        };
        assert!(log.log_start_offset() <= log.log_end);
        assert_eq!(log.epochs.entries().is_empty(), log.log_start_offset() == log.log_end);
        if plants.on(Plant::OffsetReuse) && log.log_end > log.log_start_offset() {
            let reused = Offset(log.log_end.0 - 1);
            log.truncate_to(storage, reused)?;
        }
        Ok(log)
    }
}

/// Base offsets of the `.log` files under `dir/`, in order. Deletes `.index`
/// files whose `.log` is gone.
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

fn parse_base_offset(stem: &str) -> Option<Offset> {
    let digits = stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| stem.parse::<i64>().ok().map(Offset)).flatten()
}

/// Decodes one segment file, assigning each batch's epoch in `epochs`. Returns
/// the segment and whether the whole file was valid; if not, the file has been
/// truncated after the last valid batch. With `refuse_torn_tail` (planted
/// bug), an invalid tail is an error instead, and the file is left alone.
fn recover_segment(
    dir: &str,
    base: Offset,
    config: &LogConfig,
    epochs: &mut LeaderEpochCache,
    refuse_torn_tail: bool,
    storage: &mut dyn Storage,
) -> Result<(Segment, bool), LogError> {
    let mut segment = Segment::new(dir, base);
    let file = Bytes::from(storage.read(&segment.log_file).unwrap_or_default());
    let mut position = 0;
    // Records are decoded only to validate them; reads decode again from storage.
    let mut records = Vec::new();
    while position < file.len() {
        let expected = segment.end_offset();
        records.clear();
        let decoded = decode_batch(&file, position, &mut records);
        let Ok(batch) = decoded else { break };
        // The epoch field is outside the CRC; no append ever wrote an epoch
        // below the one before it.
        let epoch_went_back = epochs.latest_epoch().is_some_and(|latest| batch.leader_epoch < latest);
        if batch.base_offset != expected || epoch_went_back {
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
        };
        segment.track_batch(meta, config.index_interval_bytes);
        position += batch.size_bytes;
    }
    let clean = position == file.len();
    if !clean {
        if refuse_torn_tail {
            let detail = format!("invalid batch at byte {position} of {}", file.len());
            return Err(LogError::Corrupt { file: segment.log_file.clone(), detail });
        }
        storage.truncate(&segment.log_file, position as u64);
    }
    assert_eq!(segment.size_bytes, position as u64);
    Ok((segment, clean))
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
