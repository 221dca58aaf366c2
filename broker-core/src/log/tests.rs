use super::codec::decode_batch;
use super::*;
use crate::plant::{Plant, Plants};
use crate::storage::{MemStorage, Storage, TestDisk};
use bytes::Bytes;
use std::collections::BTreeSet;

pub(super) const DIR: &str = "t0-3";

/// Small segments and a dense index so a few dozen records exercise rolling.
pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 150,
        retention_bytes: None,
        retention_ms: None,
        flush: FlushPolicy::Never,
    }
}

pub(super) fn open_log(storage: &mut MemStorage, config: LogConfig) -> PartitionLog {
    PartitionLog::open(DIR, config, &Plants::none(), None, storage).expect("open")
}

/// Value `"{tag}-{offset}"`, so a record names the append that wrote it.
fn value_at(tag: &str, offset: i64) -> Bytes {
    Bytes::from(format!("{tag}-{offset}"))
}

/// Appends `count` records (keys on even offsets) as one batch.
fn append(log: &mut PartitionLog, storage: &mut MemStorage, now_ms: u64, tag: &str, count: usize) -> AppendInfo {
    let base = log.log_end_offset().0;
    let records: Vec<Record> = (0..count as i64)
        .map(|i| Record {
            key: ((base + i) % 2 == 0).then(|| Bytes::from(format!("k{}", base + i))),
            value: value_at(tag, base + i),
            timestamp_ms: 999, // the producer's time; the log stamps its own
        })
        .collect();
    log.append(storage, now_ms, LeaderEpoch(1), &records).expect("append")
}

/// Appends `batches` batches of `per_batch` records, at times 0, 1, 2, ...
pub(super) fn fill(log: &mut PartitionLog, storage: &mut MemStorage, tag: &str, batches: usize, per_batch: usize) {
    for now_ms in 0..batches as u64 {
        append(log, storage, now_ms, tag, per_batch);
    }
}

pub(super) fn read_all(log: &PartitionLog, storage: &dyn Storage) -> Vec<StoredRecord> {
    log.read(storage, log.log_start_offset(), log.log_end_offset(), u32::MAX).expect("read all")
}

pub(super) fn offsets(records: &[StoredRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset.0).collect()
}

/// The epoch cache that appending `records` one by one builds.
pub(super) fn epochs_of(records: &[StoredRecord]) -> LeaderEpochCache {
    let mut cache = LeaderEpochCache::default();
    for record in records {
        cache.assign(record.leader_epoch, record.offset);
    }
    cache
}

pub(super) fn epoch_pairs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.epoch_cache().entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect()
}

/// Everything that must hold between the in-memory log (batch positions,
/// index, epoch cache) and its files.
pub(super) fn check_invariants(log: &PartitionLog, storage: &MemStorage) {
    let mut expected_files = BTreeSet::new();
    let mut next = log.log_start_offset();
    let mut records = Vec::new();
    for (i, segment) in log.segments.iter().enumerate() {
        assert_eq!(segment.base_offset, next, "segments contiguous");
        assert!(!segment.is_empty() || log.segments.len() == 1, "only a lone segment may be empty");
        // What the segment's file holds, decoded batch by batch as reads do.
        let mut held = Vec::new();
        for (b, batch) in segment.batches.iter().enumerate() {
            let before = held.len();
            segment.read_batches(storage, b..b + 1, &mut held, true).expect("every batch reads back");
            let batch_records = &held[before..];
            let batch_offsets: Vec<i64> = batch_records.iter().map(|r| r.offset.0).collect();
            assert_eq!(batch_offsets, (batch.base_offset.0..=batch.last_offset.0).collect::<Vec<_>>());
            assert!(batch_records.iter().all(|r| r.leader_epoch == batch.leader_epoch), "a batch has one epoch");
        }
        for (j, record) in held.iter().enumerate() {
            assert_eq!(record.offset.0, segment.base_offset.0 + j as i64, "records dense");
        }
        let mut whole = Vec::new();
        segment.read_batches(storage, 0..segment.batches.len(), &mut whole, true).expect("the segment reads back");
        assert_eq!(whole, held, "one read of all batches decodes as reads of each");
        records.extend(held);
        let batch_bytes: u64 = segment.batches.iter().map(|b| b.size_bytes).sum();
        assert_eq!(batch_bytes, segment.size_bytes);
        let last_covered = segment.batches.last().map_or(segment.base_offset, |b| b.last_offset.next());
        assert_eq!(last_covered, segment.end_offset(), "batches cover the records");
        assert_eq!(storage.len(&segment.log_file), Some(segment.size_bytes), "segment {i} file size");
        let mut index_bytes = Vec::new();
        segment.index.encode(&mut index_bytes);
        assert_eq!(storage.read(&segment.index_file), Some(index_bytes), "segment {i} index file");
        expected_files.insert(segment.log_file.clone());
        expected_files.insert(segment.index_file.clone());
        next = segment.end_offset();
    }
    assert_eq!(next, log.log_end_offset());
    assert_eq!(log.size_bytes(), log.segments.iter().map(|s| s.size_bytes).sum::<u64>());
    assert_eq!(records, read_all(log, storage), "a read of the whole log returns what the files hold");
    assert!(records.windows(2).all(|w| w[0].leader_epoch <= w[1].leader_epoch), "epochs never go back");
    assert_eq!(log.epoch_cache(), &epochs_of(&records), "the cache agrees with the records");
    let first_start = log.epoch_cache().entries().first().map(|e| e.start_offset);
    assert_eq!(first_start, (!records.is_empty()).then(|| log.log_start_offset()));
    // leader-epoch-checkpoint holds the cache (absent: no epoch yet).
    match storage.read(&log.epoch_checkpoint_file) {
        Some(bytes) => {
            assert_eq!(epoch_checkpoint::decode(&bytes).as_ref(), Some(log.epoch_cache()), "the epoch checkpoint");
            expected_files.insert(log.epoch_checkpoint_file.clone());
        }
        None => assert!(log.epoch_cache().entries().is_empty(), "epochs but no checkpoint"),
    }
    // Producer snapshots lie within the log, decode, and each with the
    // batches after it gives the log's producer state.
    for offset in producer_snapshot::list(storage, &log.dir) {
        let path = producer_snapshot::snapshot_file(&log.dir, offset);
        assert!(log.log_start_offset() <= offset && offset <= log.log_end_offset(), "{path} outside the log");
        let bytes = storage.read(&path).expect("listed");
        let mut table = producer_snapshot::decode(&bytes, offset, log.producer_window).expect("a snapshot decodes");
        log.replay_batches(&mut table, offset, log.log_end_offset());
        assert_eq!(&table, log.producer_state(), "{path} and the batches after it");
        expected_files.insert(path);
    }
    check_txn_index(log, storage);
    let files: BTreeSet<String> = storage.list(&format!("{}/", log.dir)).into_iter().collect();
    assert_eq!(files, expected_files);
}

/// The transaction index is what the batches from the log start imply,
/// with the open transactions of the snapshot there (if any), and the
/// LSO never passes an open transaction nor the high watermark.
fn check_txn_index(log: &PartitionLog, storage: &MemStorage) {
    let start = log.log_start_offset();
    let seed = producer_snapshot::list(storage, &log.dir).into_iter().rev().find(|&o| o <= start);
    let decode = |offset| {
        producer_snapshot::decode(
            &storage.read(&producer_snapshot::snapshot_file(&log.dir, offset))?,
            offset,
            log.producer_window,
        )
    };
    let mut table = seed.and_then(decode).unwrap_or_else(|| ProducerStateTable::new(log.producer_window));
    let mut index = txn_index::TxnIndex::default();
    log.replay_batches_with(&mut table, start, log.log_end_offset(), |txn| index.complete(txn));
    assert_eq!(index, log.txns, "the transaction index is what the batches imply");
    let open: Vec<_> = log.producer_state().open_txns().collect();
    assert_eq!(table.open_txns().collect::<Vec<_>>(), open, "both lineages agree on the open transactions");
    for hw in [start, log.log_end_offset()] {
        let lso = log.last_stable_offset(hw);
        assert!(lso <= hw && lso >= start.min(hw), "LSO {lso} at HW {hw}");
        assert!(open.iter().all(|&(first, _)| lso <= first.max(start)), "LSO {lso} past an open transaction");
    }
}

#[test]
fn empty_dir_opens_an_empty_log_at_zero() {
    let mut storage = MemStorage::new();
    let log = open_log(&mut storage, LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(0), Offset(0)));
    assert_eq!((log.segment_count(), log.size_bytes()), (1, 0));
    assert_eq!(log.read(&storage, Offset(0), Offset(100), 1000), Ok(vec![]));
    assert_eq!(log.index_lookup(Offset(0)), None);
    check_invariants(&log, &storage);
}

#[test]
fn append_then_read_round_trips() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    assert_eq!(
        append(&mut log, &mut storage, 10, "a", 3),
        AppendInfo { base_offset: Offset(0), last_offset: Offset(2) }
    );
    assert_eq!(
        append(&mut log, &mut storage, 20, "a", 1),
        AppendInfo { base_offset: Offset(3), last_offset: Offset(3) }
    );
    assert_eq!(log.log_end_offset(), Offset(4));
    let records = read_all(&log, &storage);
    assert_eq!(offsets(&records), vec![0, 1, 2, 3]);
    for r in &records {
        assert_eq!(r.value, value_at("a", r.offset.0));
        assert_eq!(r.key, (r.offset.0 % 2 == 0).then(|| Bytes::from(format!("k{}", r.offset.0))));
        assert_eq!(r.timestamp_ms, if r.offset.0 < 3 { 10 } else { 20 }, "LogAppendTime");
    }
    assert_eq!(offsets(&log.read(&storage, Offset(2), Offset(4), u32::MAX).unwrap()), vec![2, 3]);
    assert_eq!(log.size_bytes(), storage.len(&format!("{DIR}/00000000000000000000.log")).unwrap());
    check_invariants(&log, &storage);
}

#[test]
#[should_panic(expected = "append of an empty batch")]
fn append_of_nothing_panics() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    log.append(&mut storage, 0, LeaderEpoch::FIRST, &[]).expect("append");
}

#[test]
fn read_honours_max_bytes_but_always_returns_one() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    append(&mut log, &mut storage, 0, "a", 10);
    let one = read_all(&log, &storage)[0].size_bytes() as u32; // every record here is about this size
    assert_eq!(offsets(&log.read(&storage, Offset(0), Offset(10), 3 * one).unwrap()), vec![0, 1, 2]);
    assert_eq!(offsets(&log.read(&storage, Offset(4), Offset(10), 2 * one + 1).unwrap()), vec![4, 5]);
    assert_eq!(offsets(&log.read(&storage, Offset(7), Offset(10), 1).unwrap()), vec![7], "at least one");
    assert_eq!(offsets(&log.read(&storage, Offset(7), Offset(10), 0).unwrap()), vec![7], "at least one");
    let budget: usize = read_all(&log, &storage)[..6].iter().map(|r| r.size_bytes()).sum();
    assert_eq!(log.read(&storage, Offset(0), Offset(10), budget as u32).unwrap().len(), 6, "exact fit");
}

#[test]
fn read_stops_before_max_offset() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    fill(&mut log, &mut storage, "a", 10, 3);
    assert!(log.segment_count() > 2);
    assert_eq!(offsets(&log.read(&storage, Offset(2), Offset(20), u32::MAX).unwrap()), (2..20).collect::<Vec<_>>());
    assert_eq!(log.read(&storage, Offset(5), Offset(5), u32::MAX), Ok(vec![]));
    assert_eq!(log.read(&storage, Offset(6), Offset(5), u32::MAX), Ok(vec![]));
    assert_eq!(
        offsets(&log.read(&storage, Offset(28), Offset(1000), u32::MAX).unwrap()),
        vec![28, 29],
        "capped at LEO"
    );
    assert_eq!(log.read(&storage, Offset(30), Offset(1000), u32::MAX), Ok(vec![]), "from == LEO");
}

#[test]
fn reads_outside_the_log_are_out_of_range() {
    let mut storage = MemStorage::new();
    let config = LogConfig { retention_bytes: Some(0), ..small_config() };
    let mut log = open_log(&mut storage, config.clone());
    fill(&mut log, &mut storage, "a", 10, 3);
    assert!(log.apply_retention(&mut storage, 100).expect("retention") > 0);
    let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
    assert!(log_start > Offset(0));
    let below = Offset(log_start.0 - 1);
    assert_eq!(
        log.read(&storage, below, log_end, 100),
        Err(LogError::OffsetOutOfRange { requested: below, log_start, log_end })
    );
    let above = log_end.next();
    assert_eq!(
        log.read(&storage, above, Offset(100), 100),
        Err(LogError::OffsetOutOfRange { requested: above, log_start, log_end })
    );
    assert_eq!(log.read(&storage, log_start, log_end, u32::MAX).unwrap()[0].offset, log_start);
    let message = log.read(&storage, above, Offset(100), 100).unwrap_err().to_string();
    assert_eq!(message, format!("offset {above} is outside the log [{log_start}, {log_end}]"));
}

#[test]
fn segments_roll_by_size() {
    let mut storage = MemStorage::new();
    let config = small_config();
    let mut log = open_log(&mut storage, config.clone());
    fill(&mut log, &mut storage, "a", 20, 3);
    assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
    for pair in log.segments.windows(2) {
        assert!(pair[0].size_bytes <= config.segment_bytes);
        let next_batch = pair[1].batches[0].size_bytes;
        assert!(pair[0].size_bytes + next_batch > config.segment_bytes, "rolled only when full");
    }
    let names: Vec<String> = storage.list(&format!("{DIR}/")).into_iter().filter(|f| f.ends_with(".log")).collect();
    let bases: Vec<String> = log.segments.iter().map(|s| format!("{DIR}/{:020}.log", s.base_offset.0)).collect();
    assert_eq!(names, bases);
    assert_eq!(offsets(&read_all(&log, &storage)), (0..60).collect::<Vec<_>>());
    check_invariants(&log, &storage);
}

#[test]
fn a_batch_bigger_than_a_segment_gets_a_segment_of_its_own() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig { segment_bytes: 100, ..small_config() });
    append(&mut log, &mut storage, 0, "a", 10);
    append(&mut log, &mut storage, 0, "a", 10);
    append(&mut log, &mut storage, 0, "a", 1);
    assert_eq!(log.segment_count(), 3);
    assert!(log.segments[0].size_bytes > 100);
    assert_eq!(offsets(&read_all(&log, &storage)), (0..21).collect::<Vec<_>>());
    check_invariants(&log, &storage);
}

#[test]
fn index_lookup_agrees_with_a_linear_scan_of_the_files() {
    let mut storage = MemStorage::new();
    let config = LogConfig { segment_bytes: 2000, index_interval_bytes: 300, ..small_config() };
    let mut log = open_log(&mut storage, config.clone());
    for i in 0..60 {
        append(&mut log, &mut storage, i, "a", 1 + (i as usize * 7) % 5);
    }
    assert!(log.segment_count() > 2);
    let full_segments = &log.segments[..log.segment_count() - 1];
    assert!(full_segments.iter().all(|s| s.index.entries().len() > 1), "sparse, not empty");
    let max_batch = log.segments.iter().flat_map(|s| &s.batches).map(|b| b.size_bytes).max().unwrap();
    for offset in 0..log.log_end_offset().0 {
        let (base, position) = log.index_lookup(Offset(offset)).expect("in range");
        // Linear scan 1: the segment whose range holds the offset.
        let segment = log.segments.iter().find(|s| s.base_offset.0 <= offset && offset < s.end_offset().0).unwrap();
        assert_eq!(base, segment.base_offset);
        // Linear scan 2: the last index entry at or below the offset.
        let entry = segment.index.entries().iter().rev().find(|e| base.0 + i64::from(e.relative_offset) <= offset);
        assert_eq!(position, entry.map_or(0, |e| u64::from(e.position)));
        // Scanning the file from there reaches the offset, within the interval.
        let file = Bytes::from(storage.read(&segment.log_file).unwrap());
        let (mut pos, mut records) = (position as usize, Vec::new());
        loop {
            let batch = decode_batch(&file, pos, &mut records).expect("a batch boundary");
            if batch.last_offset.0 >= offset {
                assert!(batch.base_offset.0 <= offset);
                assert!(pos as u64 - position < config.index_interval_bytes + max_batch);
                break;
            }
            pos += batch.size_bytes;
        }
    }
    assert_eq!(log.index_lookup(log.log_end_offset()), None);
}

#[test]
fn index_gets_an_entry_per_interval_and_first_batch() {
    let mut storage = MemStorage::new();
    let mut log =
        open_log(&mut storage, LogConfig { segment_bytes: 10_000, index_interval_bytes: 250, ..small_config() });
    fill(&mut log, &mut storage, "a", 30, 2);
    let segment = &log.segments[0];
    let mut last_entry: Option<u64> = None;
    let mut expected = Vec::new();
    for batch in &segment.batches {
        if last_entry.is_none_or(|at| batch.position - at >= 250) {
            expected.push(((batch.last_offset.0 - segment.base_offset.0) as u32, batch.position as u32));
            last_entry = Some(batch.position);
        }
    }
    let got: Vec<_> = segment.index.entries().iter().map(|e| (e.relative_offset, e.position)).collect();
    assert_eq!(got, expected);
    assert_eq!(got[0], (1, 0), "first batch, keyed by its last offset");
    assert_eq!(storage.len(&segment.index_file), Some(8 * got.len() as u64));
}

#[test]
fn truncate_mid_segment_then_append_continues() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    fill(&mut log, &mut storage, "a", 11, 3);
    let segments = log.segment_count();
    assert!(log.active().batches.len() >= 2, "fixture: room for a cut in the active segment");
    let cut = log.active().batches[1].base_offset; // a batch boundary, not the segment base
    log.truncate_to(&mut storage, cut).expect("truncate");
    assert_eq!((log.log_end_offset(), log.segment_count()), (cut, segments));
    check_invariants(&log, &storage);
    assert_eq!(append(&mut log, &mut storage, 50, "b", 2).base_offset, cut);
    let records = read_all(&log, &storage);
    assert_eq!(offsets(&records), (0..cut.0 + 2).collect::<Vec<_>>());
    assert_eq!(records[cut.0 as usize - 1].value, value_at("a", cut.0 - 1));
    assert_eq!(records[cut.0 as usize].value, value_at("b", cut.0));
    log.truncate_to(&mut storage, Offset(1000)).expect("truncate");
    assert_eq!(log.log_end_offset(), Offset(cut.0 + 2), "beyond LEO is a no-op");
    check_invariants(&log, &storage);
}

#[test]
fn truncate_inside_a_batch_keeps_its_prefix() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    append(&mut log, &mut storage, 5, "a", 4);
    append(&mut log, &mut storage, 6, "a", 5);
    log.truncate_to(&mut storage, Offset(6)).expect("truncate");
    assert_eq!(offsets(&read_all(&log, &storage)), vec![0, 1, 2, 3, 4, 5]);
    check_invariants(&log, &storage);
    // The file is byte-identical to one where the batch was that short to begin with.
    let mut direct_storage = MemStorage::new();
    let mut direct = open_log(&mut direct_storage, LogConfig::default());
    append(&mut direct, &mut direct_storage, 5, "a", 4);
    append(&mut direct, &mut direct_storage, 6, "a", 2);
    let file = format!("{DIR}/00000000000000000000.log");
    assert_eq!(storage.read(&file), direct_storage.read(&file));
    let reopened = open_log(&mut storage, LogConfig::default());
    assert_eq!(read_all(&reopened, &storage), read_all(&log, &storage));
    assert_eq!(read_all(&reopened, &storage)[5].timestamp_ms, 6);
}

#[test]
fn truncate_across_segments_deletes_their_files() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    fill(&mut log, &mut storage, "a", 20, 3);
    let second_base = log.segments[1].base_offset;
    let doomed: Vec<String> = log.segments[2..].iter().map(|s| s.log_file.clone()).collect();
    let cut = Offset(second_base.0 + 2); // inside the second segment, inside a batch
    log.truncate_to(&mut storage, cut).expect("truncate");
    assert_eq!((log.segment_count(), log.log_end_offset()), (2, cut));
    assert!(doomed.iter().all(|f| storage.len(f).is_none()));
    check_invariants(&log, &storage);
    // Exactly at a segment's base: that segment goes entirely.
    log.truncate_to(&mut storage, second_base).expect("truncate");
    assert_eq!((log.segment_count(), log.log_end_offset()), (1, second_base));
    check_invariants(&log, &storage);
    append(&mut log, &mut storage, 99, "b", 3);
    assert_eq!(read_all(&log, &storage).last().unwrap().value, value_at("b", second_base.0 + 2));
    check_invariants(&log, &storage);
}

#[test]
fn truncate_at_or_below_log_start_empties_the_log_there() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig { retention_bytes: Some(0), ..small_config() });
    fill(&mut log, &mut storage, "a", 10, 3);
    log.apply_retention(&mut storage, 100).expect("retention");
    let start = log.log_start_offset();
    log.truncate_to(&mut storage, Offset(start.0 - 2)).expect("truncate");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (Offset(start.0 - 2), Offset(start.0 - 2)));
    assert_eq!((log.segment_count(), log.size_bytes()), (1, 0));
    check_invariants(&log, &storage);
    let reopened = open_log(&mut storage, small_config());
    assert_eq!((reopened.log_start_offset(), reopened.log_end_offset()), (Offset(start.0 - 2), Offset(start.0 - 2)));
    assert_eq!(append(&mut log, &mut storage, 0, "b", 1).base_offset, Offset(start.0 - 2));
    check_invariants(&log, &storage);
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig { retention_bytes: Some(1000), ..small_config() });
    fill(&mut log, &mut storage, "a", 30, 3);
    let before: Vec<(Offset, u64, String)> =
        log.segments.iter().map(|s| (s.base_offset, s.size_bytes, s.log_file.clone())).collect();
    let total = log.size_bytes();
    let deleted = log.apply_retention(&mut storage, 0).expect("retention");
    // Expected: the longest prefix whose removal leaves >= 1000 bytes.
    let mut expected = 0;
    let mut left = total;
    while expected + 1 < before.len() && left - before[expected].1 >= 1000 {
        left -= before[expected].1;
        expected += 1;
    }
    assert!(expected > 0);
    assert_eq!(deleted, expected);
    assert_eq!(log.size_bytes(), left);
    assert!(log.size_bytes() >= 1000 && log.size_bytes() - log.segments[0].size_bytes < 1000);
    assert_eq!(log.log_start_offset(), before[deleted].0);
    assert!(before[..deleted].iter().all(|(_, _, file)| storage.len(file).is_none()));
    assert_eq!(read_all(&log, &storage)[0].offset, log.log_start_offset());
    assert_eq!(log.apply_retention(&mut storage, 0).expect("retention"), 0, "idempotent");
    check_invariants(&log, &storage);
}

#[test]
fn retention_by_age_deletes_only_segments_wholly_older() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig { retention_ms: Some(100), ..small_config() });
    for now_ms in 0..30 {
        append(&mut log, &mut storage, now_ms * 10, "a", 3); // times 0, 10, .., 290
    }
    let newest: Vec<u64> = log.segments.iter().map(|s| s.max_timestamp_ms.unwrap()).collect();
    assert_eq!(log.apply_retention(&mut storage, 100 + newest[0]).expect("retention"), 0, "not strictly older yet");
    let deleted = log.apply_retention(&mut storage, 101 + newest[1]).expect("retention");
    assert_eq!(deleted, 2);
    assert_eq!(log.segments[0].max_timestamp_ms, Some(newest[2]));
    check_invariants(&log, &storage);
    // Even when everything has expired, the active segment stays.
    log.apply_retention(&mut storage, 1_000_000).expect("retention");
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), log.active().base_offset);
    assert!(log.size_bytes() > 0);
    check_invariants(&log, &storage);
}

#[test]
fn reopen_reads_back_exactly_what_was_written() {
    let mut storage = MemStorage::new();
    let config = LogConfig { retention_bytes: Some(800), ..small_config() };
    let mut log = open_log(&mut storage, config.clone());
    fill(&mut log, &mut storage, "a", 25, 3);
    log.truncate_to(&mut storage, Offset(70)).expect("truncate");
    log.apply_retention(&mut storage, 0).expect("retention");
    let files_before = storage.clone();
    let reopened = open_log(&mut storage, config.clone());
    assert_eq!(read_all(&reopened, &storage), read_all(&log, &storage));
    assert_eq!(
        (reopened.log_start_offset(), reopened.log_end_offset()),
        (log.log_start_offset(), log.log_end_offset())
    );
    assert_eq!((reopened.segment_count(), reopened.size_bytes()), (log.segment_count(), log.size_bytes()));
    for offset in log.log_start_offset().0..log.log_end_offset().0 {
        assert_eq!(reopened.index_lookup(Offset(offset)), log.index_lookup(Offset(offset)));
    }
    assert_eq!(storage.list(""), files_before.list(""), "a clean open writes nothing");
    for file in storage.list("") {
        assert_eq!(storage.read(&file), files_before.read(&file));
    }
    check_invariants(&reopened, &storage);
}

fn last_log_file(log: &PartitionLog) -> String {
    log.active().log_file.clone()
}

#[test]
fn recovery_cuts_a_torn_tail_batch() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    fill(&mut log, &mut storage, "a", 4, 3);
    let file = last_log_file(&log);
    let full = storage.len(&file).unwrap();
    let last_batch = *log.active().batches.last().unwrap();
    for tear in [1, 5, 30, last_batch.size_bytes - 1] {
        let mut torn = storage.clone();
        torn.truncate(&file, full - tear);
        let reopened = open_log(&mut torn, LogConfig::default());
        assert_eq!(reopened.log_end_offset(), Offset(9), "tear of {tear} bytes");
        assert_eq!(read_all(&reopened, &torn), read_all(&log, &storage)[..9].to_vec());
        assert_eq!(torn.len(&file), Some(last_batch.position), "file cut at the batch boundary");
        check_invariants(&reopened, &torn);
    }
}

#[test]
fn recovery_drops_a_batch_whose_crc_fails() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    fill(&mut log, &mut storage, "a", 4, 3);
    let file = last_log_file(&log);
    let last_batch = *log.active().batches.last().unwrap();
    let written = read_all(&log, &storage);
    let mut bytes = storage.read(&file).unwrap();
    let flip_at = (last_batch.position + last_batch.size_bytes - 3) as usize; // inside a value
    bytes[flip_at] ^= 0x01;
    storage.write_all(&file, &bytes).expect("storage");
    let reopened = open_log(&mut storage, LogConfig::default());
    assert_eq!(reopened.log_end_offset(), Offset(9));
    assert_eq!(read_all(&reopened, &storage), written[..9].to_vec());
    check_invariants(&reopened, &storage);
}

#[test]
fn recovery_after_corruption_mid_log_drops_everything_after_it() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    fill(&mut log, &mut storage, "a", 20, 3);
    assert!(log.segment_count() >= 4);
    let victim = &log.segments[1];
    let second_batch = victim.batches[1];
    let written = read_all(&log, &storage);
    let mut bytes = storage.read(&victim.log_file).unwrap();
    bytes[second_batch.position as usize + 30] ^= 0xff; // in the CRC-covered header
    storage.write_all(&victim.log_file, &bytes).expect("storage");
    let reopened = open_log(&mut storage, small_config());
    assert_eq!(reopened.segment_count(), 2);
    assert_eq!(reopened.log_end_offset(), second_batch.base_offset);
    assert_eq!(read_all(&reopened, &storage), written[..second_batch.base_offset.0 as usize].to_vec());
    check_invariants(&reopened, &storage);
}

#[test]
fn recovery_rebuilds_a_missing_or_short_index() {
    let mut storage = MemStorage::new();
    let config = LogConfig { index_interval_bytes: 100, ..small_config() };
    let mut log = open_log(&mut storage, config.clone());
    fill(&mut log, &mut storage, "a", 20, 3);
    let first_index = log.segments[0].index_file.clone();
    let last_index = log.active().index_file.clone();
    let (first, last) = (storage.read(&first_index).unwrap(), storage.read(&last_index).unwrap());
    assert!(last.len() >= 8);
    storage.delete(&first_index);
    storage.truncate(&last_index, last.len() as u64 - 3);
    storage.write_all(&format!("{DIR}/00000000000000099999.index"), b"orphan").expect("storage");
    let reopened = open_log(&mut storage, config.clone());
    assert_eq!(storage.read(&first_index), Some(first));
    assert_eq!(storage.read(&last_index), Some(last));
    for offset in 0..log.log_end_offset().0 {
        assert_eq!(reopened.index_lookup(Offset(offset)), log.index_lookup(Offset(offset)));
    }
    check_invariants(&reopened, &storage);
}

#[test]
fn recovery_drops_an_empty_segment_left_by_a_torn_roll() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    for now_ms in 0..100 {
        append(&mut log, &mut storage, now_ms, "a", 3);
        if log.segment_count() > 2 && log.active().batches.len() == 1 {
            break; // the last append rolled
        }
    }
    let active = log.active().clone();
    assert_eq!(active.batches.len(), 1);
    storage.truncate(&active.log_file, 20);
    let reopened = open_log(&mut storage, small_config());
    assert_eq!(reopened.log_end_offset(), active.base_offset);
    assert_eq!(reopened.segment_count(), log.segment_count() - 1);
    check_invariants(&reopened, &storage);
}

#[test]
fn recovery_rejects_misnamed_segments_and_ignores_other_files() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    append(&mut log, &mut storage, 0, "a", 2);
    storage.write_all(&format!("{DIR}/leader-epoch-checkpoint"), b"0\n").expect("storage");
    storage.write_all("t0-30/00000000000000000000.log", b"another partition").expect("storage");
    let reopened = open_log(&mut storage, LogConfig::default());
    assert_eq!(read_all(&reopened, &storage), read_all(&log, &storage));
    storage.write_all(&format!("{DIR}/12.log"), b"").expect("storage");
    let err = PartitionLog::open(DIR, LogConfig::default(), &Plants::none(), None, &mut storage).unwrap_err();
    assert!(matches!(&err, LogError::Corrupt { file, .. } if file == "t0-3/12.log"), "{err}");
    assert!(err.to_string().starts_with("corrupt log file t0-3/12.log: "));
}

#[test]
fn offset_reuse_plant_hands_out_the_last_offset_again() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    fill(&mut log, &mut storage, "a", 3, 2);
    let written = read_all(&log, &storage);
    let plants = Plants::none().with(Plant::OffsetReuse);
    let mut planted = PartitionLog::open(DIR, small_config(), &plants, None, &mut storage).unwrap();
    assert_eq!(planted.log_end_offset(), Offset(5));
    assert_eq!(append(&mut planted, &mut storage, 9, "b", 1).base_offset, Offset(5));
    assert_ne!(read_all(&planted, &storage)[5].value, written[5].value, "offset 5 now names another record");
    check_invariants(&planted, &storage);
    // Without the plant the same files reopen with every offset fresh.
    let clean = open_log(&mut storage, small_config());
    assert_eq!(clean.log_end_offset(), Offset(6));
    // An empty log has no offset to reuse.
    let mut empty = MemStorage::new();
    let fresh = PartitionLog::open(DIR, small_config(), &plants, None, &mut empty).unwrap();
    assert_eq!(fresh.log_end_offset(), Offset(0));
}

// ---- Leader epochs ----

/// Appends `count` records (value `"{tag}-{offset}"`) in `epoch` at `now_ms`.
pub(super) fn append_in(
    log: &mut PartitionLog,
    storage: &mut MemStorage,
    epoch: i32,
    now_ms: u64,
    count: usize,
) -> AppendInfo {
    let base = log.log_end_offset().0;
    let records: Vec<Record> = (base..base + count as i64)
        .map(|o| Record { key: None, value: value_at(&format!("e{epoch}"), o), timestamp_ms: 0 })
        .collect();
    log.append(storage, now_ms, LeaderEpoch(epoch), &records).expect("append")
}

/// (offset, epoch) of every record.
pub(super) fn record_epochs(log: &PartitionLog, storage: &dyn Storage) -> Vec<(i64, i32)> {
    read_all(log, storage).iter().map(|r| (r.offset.0, r.leader_epoch.0)).collect()
}

/// `end_offset_for_epoch` as plain numbers; `None` = undefined.
fn end_for(log: &PartitionLog, requested: i32) -> Option<(i32, i64)> {
    log.end_offset_for_epoch(LeaderEpoch(requested)).map(|(epoch, end)| (epoch.0, end.0))
}

/// The Kafka example: epochs 0, 2 and 5 starting at 0, 10 and 20; log end 30.
fn kafka_example(storage: &mut MemStorage, config: LogConfig) -> PartitionLog {
    let mut log = open_log(storage, config);
    for (epoch, batches) in [(0, 2), (2, 2), (5, 2)] {
        for now_ms in 0..batches {
            append_in(&mut log, storage, epoch, now_ms, 5);
        }
    }
    log
}

#[test]
fn epochs_are_kept_per_record_and_in_the_cache() {
    let mut storage = MemStorage::new();
    let log = kafka_example(&mut storage, small_config());
    assert!(log.segment_count() >= 2, "fixture: epochs span segments");
    let expected: Vec<(i64, i32)> = (0..30).map(|o| (o, [0, 2, 5][o as usize / 10])).collect();
    assert_eq!(record_epochs(&log, &storage), expected);
    assert_eq!(epoch_pairs(&log), vec![(0, 0), (2, 10), (5, 20)]);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(5)));
    let cases = [(-1, None), (0, Some((0, 10))), (1, Some((0, 10))), (2, Some((2, 20))), (4, Some((2, 20)))];
    for (requested, answer) in cases.into_iter().chain([(5, Some((5, 30))), (7, Some((5, 30)))]) {
        assert_eq!(end_for(&log, requested), answer, "end_offset_for_epoch({requested})");
    }
    check_invariants(&log, &storage);
    let empty = open_log(&mut MemStorage::new(), small_config());
    assert_eq!((empty.latest_epoch(), end_for(&empty, 0)), (None, None));
}

#[test]
fn reopen_rebuilds_the_cache_the_appends_built() {
    let mut storage = MemStorage::new();
    let mut log = kafka_example(&mut storage, small_config());
    append_in(&mut log, &mut storage, 8, 9, 1);
    let reopened = open_log(&mut storage, small_config());
    assert_eq!(reopened.epoch_cache(), log.epoch_cache());
    assert_eq!(epoch_pairs(&reopened), vec![(0, 0), (2, 10), (5, 20), (8, 30)]);
    assert_eq!(read_all(&reopened, &storage), read_all(&log, &storage), "epochs included");
    check_invariants(&reopened, &storage);
}

#[test]
#[should_panic(expected = "append in epoch e1 after epoch e2")]
fn a_leader_append_in_an_older_epoch_panics() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    append_in(&mut log, &mut storage, 2, 0, 1);
    append_in(&mut log, &mut storage, 1, 0, 1);
}

#[test]
fn append_replicated_keeps_the_leaders_offsets_timestamps_and_epochs() {
    let (mut leader_storage, config) = (MemStorage::new(), small_config());
    let mut leader = open_log(&mut leader_storage, config.clone());
    for (i, epoch) in [0, 0, 1, 1, 1, 4, 6, 6].into_iter().enumerate() {
        append_in(&mut leader, &mut leader_storage, epoch, 100 + i as u64, 1 + i % 3);
    }
    let all = read_all(&leader, &leader_storage);
    // In one go: the follower's files are the leader's, byte for byte.
    let mut storage = MemStorage::new();
    let mut follower = open_log(&mut storage, config.clone());
    let info = follower.append_replicated(&mut storage, &all).unwrap();
    assert_eq!(info, AppendInfo { base_offset: Offset(0), last_offset: Offset(all.len() as i64 - 1) });
    assert_eq!(read_all(&follower, &storage), all);
    assert_eq!(follower.epoch_cache(), leader.epoch_cache());
    assert_eq!(storage.list(""), leader_storage.list(""));
    for file in storage.list("") {
        assert_eq!(storage.read(&file), leader_storage.read(&file), "{file}");
    }
    check_invariants(&follower, &storage);
    // In small fetches that cut batches: the same records and epochs.
    let mut storage = MemStorage::new();
    let mut follower = open_log(&mut storage, config.clone());
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched = leader.read(&leader_storage, follower.log_end_offset(), leader.log_end_offset(), 40).unwrap();
        follower.append_replicated(&mut storage, &fetched).unwrap();
        check_invariants(&follower, &storage);
    }
    assert_eq!(read_all(&follower, &storage), all);
    assert_eq!(epoch_pairs(&follower), vec![(0, 0), (1, 3), (4, 9), (6, 12)]);
    let reopened = open_log(&mut storage, config);
    assert_eq!(read_all(&reopened, &storage), all, "and after a reopen");
}

#[test]
fn append_replicated_rejects_what_does_not_continue_the_log() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    append_in(&mut log, &mut storage, 3, 0, 4);
    let record = |offset: i64, epoch: i32| StoredRecord {
        offset: Offset(offset),
        timestamp_ms: 7,
        leader_epoch: LeaderEpoch(epoch),
        key: None,
        value: Bytes::from_static(b"v"),
        producer: None,
        kind: crate::types::BatchKind::Data,
    };
    let (e3, e4) = (LeaderEpoch(3), LeaderEpoch(4));
    let cases = [
        (vec![record(5, 3)], AppendError::NonContiguous { expected: Offset(4), got: Offset(5) }),
        (vec![record(3, 3)], AppendError::NonContiguous { expected: Offset(4), got: Offset(3) }),
        (vec![record(4, 3), record(6, 3)], AppendError::NonContiguous { expected: Offset(5), got: Offset(6) }),
        (vec![record(4, 2)], AppendError::EpochRegression { offset: Offset(4), epoch: LeaderEpoch(2), min_epoch: e3 }),
        (
            vec![record(4, 4), record(5, 3)],
            AppendError::EpochRegression { offset: Offset(5), epoch: e3, min_epoch: e4 },
        ),
        (
            vec![record(4, -1)],
            AppendError::EpochRegression { offset: Offset(4), epoch: LeaderEpoch::NONE, min_epoch: e3 },
        ),
    ];
    let before = storage.clone();
    for (records, error) in cases {
        assert_eq!(log.append_replicated(&mut storage, &records), Err(error));
        assert_eq!((log.log_end_offset(), log.latest_epoch()), (Offset(4), Some(e3)), "nothing appended");
        for file in before.list("") {
            assert_eq!(storage.read(&file), before.read(&file), "nothing written");
        }
    }
    let message = AppendError::NonContiguous { expected: Offset(4), got: Offset(5) }.to_string();
    assert_eq!(message, "follower append of offset 5 where the log expects 4");
    let message = AppendError::EpochRegression { offset: Offset(4), epoch: LeaderEpoch(2), min_epoch: e3 }.to_string();
    assert_eq!(message, "follower append of offset 4 in epoch e2, below epoch e3");
    assert!(log.append_replicated(&mut storage, &[record(4, 3), record(5, 4)]).is_ok());
    let mut empty = open_log(&mut MemStorage::new(), LogConfig::default());
    let error =
        AppendError::EpochRegression { offset: Offset(0), epoch: LeaderEpoch::NONE, min_epoch: LeaderEpoch::FIRST };
    assert_eq!(empty.append_replicated(&mut MemStorage::new(), &[record(0, -1)]), Err(error), "batches have an epoch");
    check_invariants(&log, &storage);
}

#[test]
fn truncation_forgets_later_epochs_and_new_ones_append_after_it() {
    let mut storage = MemStorage::new();
    let mut log = kafka_example(&mut storage, small_config());
    log.truncate_to(&mut storage, Offset(25)).expect("truncate");
    assert_eq!(epoch_pairs(&log), vec![(0, 0), (2, 10), (5, 20)], "inside the latest epoch");
    assert_eq!(end_for(&log, 5), Some((5, 25)));
    log.truncate_to(&mut storage, Offset(20)).expect("truncate");
    assert_eq!(epoch_pairs(&log), vec![(0, 0), (2, 10)], "at an epoch's first offset");
    assert_eq!(end_for(&log, 5), Some((2, 20)));
    log.truncate_to(&mut storage, Offset(13)).expect("truncate");
    check_invariants(&log, &storage);
    // A follower's path: take the new leader's epoch 7, then epoch 9.
    append_in(&mut log, &mut storage, 7, 50, 2);
    let replicated = StoredRecord {
        offset: Offset(15),
        timestamp_ms: 60,
        leader_epoch: LeaderEpoch(9),
        key: None,
        value: Bytes::from_static(b"e9"),
        producer: None,
        kind: crate::types::BatchKind::Data,
    };
    log.append_replicated(&mut storage, &[replicated]).unwrap();
    assert_eq!(epoch_pairs(&log), vec![(0, 0), (2, 10), (7, 13), (9, 15)]);
    let epochs: Vec<i32> = record_epochs(&log, &storage).iter().map(|&(_, epoch)| epoch).collect();
    assert_eq!(epochs, [vec![0; 10], vec![2; 3], vec![7; 2], vec![9]].concat());
    assert_eq!(read_all(&log, &storage)[12].value, value_at("e2", 12), "the kept records are untouched");
    assert_eq!(end_for(&log, 8), Some((7, 15)));
    check_invariants(&log, &storage);
    assert_eq!(open_log(&mut storage, small_config()).epoch_cache(), log.epoch_cache());
    // Truncating the whole log forgets every epoch.
    log.truncate_to(&mut storage, Offset(0)).expect("truncate");
    assert_eq!((log.latest_epoch(), end_for(&log, 9)), (None, None));
    check_invariants(&log, &storage);
}

#[test]
fn retention_forgets_epochs_below_the_new_log_start() {
    let mut storage = MemStorage::new();
    let config = LogConfig { retention_bytes: Some(0), ..small_config() };
    let mut log = kafka_example(&mut storage, config.clone());
    assert!(log.apply_retention(&mut storage, 0).expect("retention") > 0);
    let start = log.log_start_offset();
    assert!(start > Offset(10) && start < Offset(30), "fixture: the log now starts inside epoch 2 or 5");
    let expected = if start < Offset(20) { vec![(2, start.0), (5, 20)] } else { vec![(5, start.0)] };
    assert_eq!(epoch_pairs(&log), expected);
    assert_eq!(end_for(&log, 1), None, "epoch 0 is gone");
    assert_eq!(end_for(&log, 5), Some((5, 30)));
    check_invariants(&log, &storage);
    assert_eq!(open_log(&mut storage, config).epoch_cache(), log.epoch_cache());
}

#[test]
fn recovery_cuts_a_batch_whose_epoch_goes_back() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    append_in(&mut log, &mut storage, 2, 0, 3);
    append_in(&mut log, &mut storage, 4, 1, 3);
    append_in(&mut log, &mut storage, 4, 2, 3);
    let file = last_log_file(&log);
    let last = *log.active().batches.last().unwrap();
    // The epoch field lies outside the CRC, so only the order check catches this.
    let mut bytes = storage.read(&file).unwrap();
    bytes[last.position as usize + 12..last.position as usize + 16].copy_from_slice(&3i32.to_be_bytes());
    storage.write_all(&file, &bytes).expect("storage");
    let reopened = open_log(&mut storage, LogConfig::default());
    assert_eq!(reopened.log_end_offset(), Offset(6));
    assert_eq!(epoch_pairs(&reopened), vec![(2, 0), (4, 3)]);
    check_invariants(&reopened, &storage);
}

// ---- Durability: flushing, power loss, full disks ----

use crate::storage::StorageError;

/// `count` records continuing at `base`, values `"{tag}-{offset}"`.
fn batch_at(base: Offset, tag: &str, count: usize) -> Vec<Record> {
    (base.0..base.0 + count as i64).map(|o| Record { key: None, value: value_at(tag, o), timestamp_ms: 0 }).collect()
}

/// What survives if the power fails now: a copy of `storage` cut back to
/// what was fsynced, with the log reopened (recovered) from it.
fn after_power_loss(storage: &MemStorage, config: LogConfig) -> (PartitionLog, MemStorage) {
    let mut cut = storage.clone();
    cut.power_loss();
    let log = open_log(&mut cut, config);
    (log, cut)
}

#[test]
fn every_batch_fsyncs_each_append_before_it_returns() {
    let config = LogConfig { flush: FlushPolicy::EveryBatch, ..small_config() };
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config.clone());
    let leader_appends = 15u64;
    for step in 0..leader_appends + 5 {
        let fsyncs = storage.fsyncs();
        if step < leader_appends {
            append(&mut log, &mut storage, step, "a", 3);
        } else {
            // A follower's append: runs in two epochs, cut into two batches.
            let base = log.log_end_offset().0;
            let records: Vec<StoredRecord> = (base..base + 4)
                .map(|o| StoredRecord {
                    offset: Offset(o),
                    timestamp_ms: 100 + step,
                    leader_epoch: LeaderEpoch(if o < base + 2 { 2 + step as i32 } else { 3 + step as i32 }),
                    key: None,
                    value: value_at("r", o),
                    producer: None,
                    kind: crate::types::BatchKind::Data,
                })
                .collect();
            log.append_replicated(&mut storage, &records).unwrap();
        }
        assert!(storage.fsyncs() > fsyncs, "step {step}: the append fsynced");
        assert_eq!(log.flushed_to(), log.log_end_offset(), "step {step}");
        assert!(!log.has_unflushed());
        let (survivor, cut) = after_power_loss(&storage, config.clone());
        assert_eq!(survivor.log_end_offset(), log.log_end_offset(), "step {step}: nothing appended is lost");
        assert_eq!(read_all(&survivor, &cut), read_all(&log, &storage), "step {step}");
        check_invariants(&survivor, &cut);
    }
    assert!(log.segment_count() >= 3, "fixture: the appends rolled segments");
}

#[test]
fn never_flushes_rolled_segments_and_a_power_loss_leaves_a_valid_prefix() {
    let config = small_config();
    assert_eq!(config.flush, FlushPolicy::Never);
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config.clone());
    let mut lost_some = false;
    for now_ms in 0..25 {
        append(&mut log, &mut storage, now_ms, "a", 3);
        // Every segment a roll left behind is flushed, the active one is not.
        let rolled_below = log.active().base_offset;
        assert_eq!(log.flushed_to(), rolled_below, "after append {now_ms}");
        assert!(log.has_unflushed());
        let written = read_all(&log, &storage);
        let (mut survivor, mut cut) = after_power_loss(&storage, config.clone());
        let kept = read_all(&survivor, &cut);
        assert!(kept.len() as i64 >= rolled_below.0, "the rolled segments survive");
        assert_eq!(kept[..], written[..kept.len()], "a prefix of what was written");
        // MemStorage keeps exactly what was fsynced: the never-synced active segment is gone.
        assert_eq!(survivor.log_end_offset(), rolled_below);
        assert_eq!(survivor.log_start_offset(), Offset(0));
        assert_eq!(survivor.flushed_to(), survivor.log_start_offset(), "a reopened log knows nothing flushed");
        check_invariants(&survivor, &cut);
        lost_some |= kept.len() < written.len();
        // The recovered log goes on: appends continue at its end.
        let end = survivor.log_end_offset();
        assert_eq!(append(&mut survivor, &mut cut, 1_000, "b", 2).base_offset, end);
        let after = read_all(&survivor, &cut);
        assert_eq!(after[..kept.len()], kept[..]);
        assert_eq!(offsets(&after[kept.len()..]), vec![end.0, end.0 + 1]);
        assert_eq!(after[kept.len()].value, value_at("b", end.0));
        check_invariants(&survivor, &cut);
    }
    assert!(lost_some && log.segment_count() >= 3, "fixture: rolls, and unflushed data lost");
    // An explicit flush makes everything durable.
    log.flush(&mut storage);
    assert_eq!(log.flushed_to(), log.log_end_offset());
    let (survivor, cut) = after_power_loss(&storage, config.clone());
    assert_eq!(read_all(&survivor, &cut), read_all(&log, &storage));
}

#[test]
fn truncation_lowers_flushed_to_to_the_new_end_and_keeps_what_it_claims() {
    for flush in [FlushPolicy::Never, FlushPolicy::EveryBatch] {
        let config = LogConfig { flush, ..small_config() };
        // 36 records in batches of 3; offsets 1, 19, 22 and 34 are inside batches.
        for cut in [40, 36, 35, 34, 30, 22, 21, 19, 18, 12, 1, 0] {
            let mut storage = MemStorage::new();
            let mut log = open_log(&mut storage, config.clone());
            fill(&mut log, &mut storage, "a", 12, 3);
            assert!(log.segment_count() >= 3, "fixture: several segments");
            let before = log.flushed_to();
            let expected = read_all(&log, &storage).into_iter().take(cut).collect::<Vec<_>>();
            log.truncate_to(&mut storage, Offset(cut as i64)).expect("truncate");
            assert_eq!(log.log_end_offset(), Offset(cut.min(36) as i64));
            assert_eq!(log.flushed_to(), before.min(log.log_end_offset()), "{flush:?}, cut at {cut}");
            assert_eq!(log.has_unflushed(), log.flushed_to() < log.log_end_offset());
            check_invariants(&log, &storage);
            // What flushed_to claims survives a power loss, the kept records included.
            let (survivor, lost) = after_power_loss(&storage, config.clone());
            let kept = read_all(&survivor, &lost);
            let claimed = log.flushed_to();
            assert!(survivor.log_end_offset() >= claimed, "{flush:?}, cut at {cut}: {:?}", offsets(&kept));
            assert_eq!(kept[..], expected[..kept.len()]);
            if flush == FlushPolicy::EveryBatch {
                assert_eq!(kept, expected, "cut at {cut}: every kept record was flushed");
            }
            check_invariants(&survivor, &lost);
        }
    }
}

#[test]
fn a_power_loss_never_moves_the_log_start_back() {
    for flush in [FlushPolicy::Never, FlushPolicy::EveryBatch] {
        let config = LogConfig { retention_bytes: Some(0), flush, ..small_config() };
        let mut storage = MemStorage::new();
        let mut log = open_log(&mut storage, config.clone());
        fill(&mut log, &mut storage, "a", 12, 3);
        // Retention deletes every segment but the active one.
        assert!(log.apply_retention(&mut storage, 100).expect("retention") > 0);
        let start = log.log_start_offset();
        assert!(start > Offset(0) && log.segment_count() == 1);
        let (survivor, cut) = after_power_loss(&storage, config.clone());
        assert_eq!(survivor.log_start_offset(), start, "{flush:?}: after retention");
        let written = read_all(&log, &storage);
        assert_eq!(read_all(&survivor, &cut)[..], written[..(survivor.log_end_offset().0 - start.0) as usize]);
        check_invariants(&survivor, &cut);
        // A truncation below the log start restarts the log there.
        let restart = Offset(start.0 - 2);
        log.truncate_to(&mut storage, restart).expect("truncate");
        assert_eq!(log.flushed_to(), restart);
        let (survivor, cut) = after_power_loss(&storage, config.clone());
        assert_eq!((survivor.log_start_offset(), survivor.log_end_offset()), (restart, restart), "{flush:?}");
        check_invariants(&survivor, &cut);
        append(&mut log, &mut storage, 200, "b", 2);
        let (survivor, cut) = after_power_loss(&storage, config.clone());
        assert_eq!(survivor.log_start_offset(), restart, "{flush:?}: after an append");
        check_invariants(&survivor, &cut);
    }
}

#[test]
fn a_full_disk_fails_the_append_and_recovery_keeps_exactly_what_succeeded() {
    let config = LogConfig { flush: FlushPolicy::EveryBatch, ..small_config() };
    let appends = 12;
    // The bytes all the appends write, on a disk with room for them.
    let needed = {
        let mut storage = MemStorage::new();
        let mut log = open_log(&mut storage, config.clone());
        for _ in 0..appends {
            let end = log.log_end_offset();
            log.append(&mut storage, end.0 as u64, LeaderEpoch(1), &batch_at(end, "a", 3)).expect("append");
        }
        storage.total_bytes()
    };
    let (mut in_segment, mut in_index, mut in_checkpoint, mut in_snapshot) = (0, 0, 0, 0);
    for room in 0..needed {
        let mut disk = TestDisk::with_room(MemStorage::new(), room);
        let mut log =
            PartitionLog::open(DIR, config.clone(), &Plants::none(), None, &mut disk).expect("opening writes no bytes");
        let error = loop {
            let end = log.log_end_offset();
            assert!(end.0 < 3 * appends as i64, "room {room}: the disk never filled");
            match log.append(&mut disk, end.0 as u64, LeaderEpoch(1), &batch_at(end, "a", 3)) {
                Ok(info) => assert_eq!(info.base_offset, end),
                Err(e) => break e,
            }
        };
        let failed = disk.first_full.clone().expect("a write failed");
        assert_eq!(error, LogError::Storage(StorageError::DiskFull { file: failed.clone() }), "room {room}");
        // The failed append left the log as it was.
        let succeeded = log.log_end_offset();
        let written = log.read(&disk, Offset(0), succeeded, u32::MAX).expect("the appends that succeeded read back");
        assert_eq!(offsets(&written), (0..succeeded.0).collect::<Vec<_>>());
        assert_eq!(log.active().end_offset(), succeeded, "room {room}: the failed batch is not tracked");
        assert_eq!(log.size_bytes(), log.segments.iter().map(|s| s.size_bytes).sum::<u64>());
        // Reopened (the broker restarting with the disk as it is): the
        // partial batch is cut; only a batch whose every byte reached the
        // segment (the index entry after it failed) may be recovered whole.
        let failed_batch: Vec<i64> = (succeeded.0..succeeded.0 + 3).collect();
        let mut storage = disk.inner;
        let (survivor, cut) = after_power_loss(&storage, config.clone());
        assert_eq!(read_all(&survivor, &cut), written, "room {room}: a power loss keeps exactly the fsynced appends");
        check_invariants(&survivor, &cut);
        let mut reopened = open_log(&mut storage, config.clone());
        let recovered = read_all(&reopened, &storage);
        if failed.ends_with("leader-epoch-checkpoint.tmp") {
            // The epoch's first append checkpoints the epoch before writing
            // the batch: nothing of it reached the segment.
            in_checkpoint += 1;
            assert_eq!((succeeded, recovered.clone()), (Offset(0), written.clone()), "room {room}");
        } else if failed.ends_with(".snapshot.tmp") {
            // A roll writes the producer snapshot before the new segment:
            // nothing of the batch was written, and open deletes the temp file.
            in_snapshot += 1;
            assert_eq!(recovered, written, "room {room}");
            assert_eq!(storage.len(&failed), None, "room {room}: the temp file is gone");
        } else if failed.ends_with(".index") {
            in_index += 1;
            assert_eq!(recovered[..written.len()], written[..]);
            assert_eq!(offsets(&recovered[written.len()..]), failed_batch, "room {room}");
        } else {
            in_segment += 1;
            assert!(failed.ends_with(".log"), "{failed}");
            assert_eq!(recovered, written, "room {room}: the partial batch is cut");
        }
        check_invariants(&reopened, &storage);
        let end = reopened.log_end_offset();
        assert_eq!(append(&mut reopened, &mut storage, 99, "b", 1).base_offset, end, "appends go on");
        check_invariants(&reopened, &storage);
    }
    let kinds = (in_segment, in_index, in_checkpoint, in_snapshot);
    let every_kind = in_segment > 0 && in_index > 0 && in_checkpoint > 0 && in_snapshot > 0;
    assert!(every_kind, "fixture: every kind of failed write {kinds:?}");
}

#[test]
fn a_full_disk_fails_a_follower_append_too() {
    let mut leader_storage = MemStorage::new();
    let mut leader = open_log(&mut leader_storage, small_config());
    fill(&mut leader, &mut leader_storage, "a", 3, 3);
    let fetched = read_all(&leader, &leader_storage);
    // Room for the epoch checkpoint the first append writes, and 30 bytes more.
    let checkpoint = epoch_checkpoint::encode(&epochs_of(&fetched[..1]));
    let mut disk = TestDisk::with_room(MemStorage::new(), checkpoint.len() as u64 + 30);
    let mut follower = PartitionLog::open(DIR, small_config(), &Plants::none(), None, &mut disk).expect("open");
    let error = follower.append_replicated(&mut disk, &fetched).unwrap_err();
    let file = format!("{DIR}/00000000000000000000.log");
    assert_eq!(error, AppendError::Storage(StorageError::DiskFull { file: file.clone() }));
    assert_eq!(error.to_string(), format!("no space left on device writing {file}"));
    assert_eq!(follower.log_end_offset(), Offset(0));
    let mut storage = disk.inner;
    assert_eq!(storage.read(&follower.epoch_checkpoint_file), Some(checkpoint), "checkpointed before the batch");
    assert_eq!(storage.len(&file), Some(30), "what fitted was written");
    let reopened = open_log(&mut storage, small_config());
    assert_eq!(reopened.log_end_offset(), Offset(0), "and cut by recovery");
    check_invariants(&reopened, &storage);
}

#[test]
fn replica_reads_never_split_a_batch() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig { segment_bytes: 1 << 20, ..small_config() });
    append(&mut log, &mut storage, 0, "a", 3); // offsets 0..=2
    append(&mut log, &mut storage, 1, "b", 3); // offsets 3..=5
    let one_record = log.read(&storage, Offset(0), Offset(6), 1).unwrap()[0].size_bytes() as u32;
    let offsets = |records: Vec<StoredRecord>| records.iter().map(|r| r.offset.0).collect::<Vec<_>>();
    // A budget of four records ends inside the second batch: it is left out.
    let budget = 4 * one_record;
    assert_eq!(offsets(log.read(&storage, Offset(0), Offset(6), budget).unwrap()), vec![0, 1, 2, 3]);
    assert_eq!(offsets(log.read_whole_batches(&storage, Offset(0), Offset(6), budget).unwrap()), vec![0, 1, 2]);
    // A budget below one batch still returns the first batch, whole.
    assert_eq!(offsets(log.read_whole_batches(&storage, Offset(3), Offset(6), 1).unwrap()), vec![3, 4, 5]);
    assert!(log.read_whole_batches(&storage, Offset(6), Offset(6), 1).unwrap().is_empty());
}
