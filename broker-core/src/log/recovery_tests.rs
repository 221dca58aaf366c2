//! Opening a log from a recovery point (segments below it walked, not
//! validated) and the `leader-epoch-checkpoint` file: written when the
//! cache changes, reconciled at open.

use super::codec::BATCH_HEADER_BYTES;
use super::epoch_checkpoint::EPOCH_CHECKPOINT_FILE;
use super::recovery::MAX_REREADS;
use super::tests::{append_in, check_invariants, epoch_pairs, fill, open_log, read_all, small_config, DIR};
use super::*;
use crate::plant::{Plant, Plants};
use crate::storage::{MemStorage, Storage, TestDisk};
use EpochCheckpointOutcome::{Garbled, Matched, Overruled, Reconciled};

fn open_from(storage: &mut MemStorage, recovery_point: Option<Offset>) -> PartitionLog {
    PartitionLog::open(DIR, small_config(), &Plants::none(), recovery_point, storage).expect("open")
}

fn checkpoint_file() -> String {
    format!("{DIR}/{EPOCH_CHECKPOINT_FILE}")
}

fn checkpoint_text(storage: &MemStorage) -> String {
    String::from_utf8(storage.read(&checkpoint_file()).expect("a checkpoint")).expect("text")
}

/// Flips one bit of byte `at` of `file`.
fn flip(storage: &mut MemStorage, file: &str, at: u64) {
    let mut bytes = storage.read(file).expect("the file");
    bytes[at as usize] ^= 0x01;
    storage.write_all(file, &bytes).expect("storage");
}

#[test]
fn the_epoch_checkpoint_is_kafkas_file_and_follows_the_cache() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    assert_eq!(storage.read(&checkpoint_file()), None, "no epoch, no file");
    append_in(&mut log, &mut storage, 1, 0, 5);
    append_in(&mut log, &mut storage, 3, 1, 5);
    append_in(&mut log, &mut storage, 3, 2, 5);
    assert_eq!(checkpoint_text(&storage), "0\n2\n1 0\n3 5\n");
    let reopened = open_log(&mut storage, small_config());
    assert_eq!(reopened.recovery_stats().epoch_checkpoint, Matched);
    assert_eq!(reopened.epoch_cache(), log.epoch_cache());
    log.truncate_to(&mut storage, Offset(5)).expect("truncate");
    assert_eq!(checkpoint_text(&storage), "0\n1\n1 0\n", "truncateFromEnd");
    log.truncate_to(&mut storage, Offset(0)).expect("truncate");
    assert_eq!(checkpoint_text(&storage), "0\n0\n", "no epochs left");
    check_invariants(&log, &storage);
    // Retention (truncateFromStart): the first epoch now starts at the log start.
    let config = LogConfig { retention_bytes: Some(0), ..small_config() };
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config);
    fill(&mut log, &mut storage, "a", 12, 3);
    assert!(log.apply_retention(&mut storage, 100).expect("retention") > 0);
    assert_eq!(checkpoint_text(&storage), format!("0\n1\n1 {}\n", log.log_start_offset()));
    check_invariants(&log, &storage);
}

#[test]
fn the_epoch_checkpoint_is_written_only_when_the_cache_changes() {
    // No rolls and no flush policy: only the checkpoint fsyncs (its temp file).
    let config = LogConfig { segment_bytes: 1 << 20, ..small_config() };
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config.clone());
    append_in(&mut log, &mut storage, 1, 0, 2);
    assert_eq!(storage.fsyncs(), 1, "a new epoch: written");
    for now_ms in 1..20 {
        append_in(&mut log, &mut storage, 1, now_ms, 2);
    }
    assert_eq!(storage.fsyncs(), 1, "the same epoch: not rewritten");
    log.truncate_to(&mut storage, Offset(30)).expect("truncate");
    assert_eq!(storage.fsyncs(), 1, "a cut inside the latest epoch changes no entry");
    assert_eq!(log.apply_retention(&mut storage, 1_000).expect("retention"), 0);
    append_in(&mut log, &mut storage, 4, 20, 2);
    assert_eq!(storage.fsyncs(), 2, "epoch 4: written");
    let reopened = open_log(&mut storage, config);
    assert_eq!(reopened.recovery_stats().epoch_checkpoint, Matched);
    assert_eq!(storage.fsyncs(), 2, "a reopen that agrees writes nothing");
    log.truncate_to(&mut storage, Offset(30)).expect("truncate");
    assert_eq!(storage.fsyncs(), 3, "epoch 4 cut off: written");
    check_invariants(&log, &storage);
}

#[test]
fn a_power_loss_below_a_checkpointed_epoch_is_reconciled() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    append_in(&mut log, &mut storage, 1, 0, 5);
    append_in(&mut log, &mut storage, 2, 1, 5);
    log.flush(&mut storage);
    // Epoch 5 is checkpointed (durably) before its batch, which is never fsynced.
    append_in(&mut log, &mut storage, 5, 2, 5);
    assert_eq!(checkpoint_text(&storage), "0\n3\n1 0\n2 5\n5 10\n");
    // The same loss, reopened from the recovery point at the durable end.
    let mut cut = storage.clone();
    cut.power_loss();
    let from_point = open_from(&mut cut, Some(Offset(10)));
    assert_eq!(from_point.recovery_stats().segments_validated, 0);
    assert_eq!((from_point.log_end_offset(), from_point.recovery_stats().epoch_checkpoint), (Offset(10), Reconciled));
    check_invariants(&from_point, &cut);
    storage.power_loss();
    let reopened = open_log(&mut storage, small_config());
    assert_eq!(reopened.log_end_offset(), Offset(10), "epoch 5's batch is lost");
    assert_eq!(reopened.recovery_stats().epoch_checkpoint, Reconciled, "truncateFromEnd(10)");
    assert_eq!(epoch_pairs(&reopened), vec![(1, 0), (2, 5)]);
    assert_eq!(checkpoint_text(&storage), "0\n2\n1 0\n2 5\n", "rewritten as reconciled");
    check_invariants(&reopened, &storage);
    let again = open_log(&mut storage, small_config());
    assert_eq!(again.recovery_stats().epoch_checkpoint, Matched);
}

#[test]
fn a_checkpoint_the_batches_contradict_or_that_does_not_parse_is_rewritten() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    append_in(&mut log, &mut storage, 1, 0, 5);
    append_in(&mut log, &mut storage, 3, 1, 5);
    let good = checkpoint_text(&storage);
    let files: [(&[u8], EpochCheckpointOutcome); 6] = [
        (b"0\n2\n1 0\n2 5\n", Overruled),       // another epoch at 5
        (b"0\n1\n1 0\n", Overruled),            // epoch 3 missing
        (b"0\n3\n0 0\n1 0\n3 5\n", Reconciled), // epoch 0 wrote nothing: clamped away
        (b"garbage\x00\xff", Garbled),
        (b"0\n1\n1 0 0\n", Garbled),
        (b"", Garbled),
    ];
    for (file, outcome) in files {
        storage.write_all(&checkpoint_file(), file).expect("storage");
        storage.write_all(&format!("{}.tmp", checkpoint_file()), b"a write that never got renamed").expect("storage");
        let reopened = open_log(&mut storage, small_config());
        assert_eq!(reopened.recovery_stats().epoch_checkpoint, outcome, "{:?}", String::from_utf8_lossy(file));
        assert_eq!(reopened.epoch_cache(), log.epoch_cache(), "the batches win");
        assert_eq!(checkpoint_text(&storage), good);
        check_invariants(&reopened, &storage); // the stale temporary file is gone too
    }
}

/// Records in epoch 1 over several segments, then a batch in epoch 2.
fn segmented(storage: &mut MemStorage) -> PartitionLog {
    let mut log = open_log(storage, small_config());
    fill(&mut log, storage, "a", 20, 3);
    append_in(&mut log, storage, 2, 20, 3);
    assert!(log.segment_count() >= 4 && log.segments[..3].iter().all(|s| s.batches.len() >= 2), "fixture");
    log
}

fn sizes(log: &PartitionLog, segments: std::ops::Range<usize>) -> u64 {
    log.segments[segments].iter().map(|s| s.size_bytes).sum()
}

#[test]
fn segments_wholly_below_the_recovery_point_are_walked_not_validated() {
    let mut storage = MemStorage::new();
    let log = segmented(&mut storage);
    let count = log.segment_count();
    let point = log.segments[2].base_offset;
    // At a segment's base, or inside it: that segment holds the point and is validated.
    for point in [point, point.next()] {
        let reopened = open_from(&mut storage, Some(point));
        let stats = reopened.recovery_stats();
        assert_eq!((stats.segments_walked, stats.bytes_walked), (2, sizes(&log, 0..2)), "{point}");
        assert_eq!((stats.segments_validated, stats.bytes_validated), (count as u64 - 2, sizes(&log, 2..count)));
        assert_eq!(read_all(&reopened, &storage), read_all(&log, &storage));
        assert_eq!(reopened.epoch_cache(), log.epoch_cache());
        check_invariants(&reopened, &storage);
    }
    let everything = open_from(&mut storage, None).recovery_stats();
    assert_eq!((everything.segments_walked, everything.segments_validated), (0, count as u64));
    assert_eq!(everything.bytes_validated, log.size_bytes());
}

#[test]
fn a_recovery_point_at_the_log_end_validates_nothing() {
    // What a clean shutdown leaves: everything flushed, the point at the end.
    let mut storage = MemStorage::new();
    let mut log = segmented(&mut storage);
    log.flush(&mut storage);
    let reopened = open_from(&mut storage, Some(log.flushed_to()));
    let stats = reopened.recovery_stats();
    assert_eq!((stats.segments_validated, stats.bytes_validated), (0, 0));
    assert_eq!((stats.segments_walked, stats.bytes_walked), (log.segment_count() as u64, log.size_bytes()));
    assert_eq!(reopened.flushed_to(), reopened.log_start_offset(), "open itself vouches for nothing");
    check_invariants(&reopened, &storage);
    // The planted offset reuse works from a recovery point too.
    let plants = Plants::none().with(Plant::OffsetReuse);
    let planted = PartitionLog::open(DIR, small_config(), &plants, Some(log.log_end_offset()), &mut storage);
    assert_eq!(planted.expect("open").log_end_offset(), Offset(log.log_end_offset().0 - 1));
}

#[test]
fn damage_below_the_recovery_point_is_found_by_reads_and_past_it_cut_at_open() {
    let mut storage = MemStorage::new();
    let log = segmented(&mut storage);
    let point = log.segments[2].base_offset;
    let written = read_all(&log, &storage);
    let end = log.log_end_offset();
    // A bit inside a record (covered by the CRC, not in the header) of a walked segment.
    let victim = log.segments[1].batches[1];
    let mut trusted = storage.clone();
    flip(&mut trusted, &log.segments[1].log_file, victim.position + BATCH_HEADER_BYTES as u64 + 2);
    let reopened = open_from(&mut trusted, Some(point));
    assert_eq!(reopened.log_end_offset(), end, "walked: kept at open");
    let read = reopened.read(&trusted, victim.base_offset, end, u32::MAX);
    assert!(matches!(read, Err(LogError::Corrupt { .. })), "but never served: {read:?}");
    let before = reopened.read(&trusted, Offset(0), victim.base_offset, u32::MAX).expect("before the damage");
    assert_eq!(before, written[..victim.base_offset.0 as usize]);
    // Validated (no recovery point), the same damage is cut at open.
    let validated = open_from(&mut trusted.clone(), None);
    assert_eq!(validated.log_end_offset(), victim.base_offset);
    // Past the recovery point it is cut at open.
    let victim = log.segments[2].batches[1];
    let mut untrusted = storage.clone();
    flip(&mut untrusted, &log.segments[2].log_file, victim.position + BATCH_HEADER_BYTES as u64 + 2);
    let reopened = open_from(&mut untrusted, Some(point));
    assert_eq!(reopened.log_end_offset(), victim.base_offset);
    assert_eq!(read_all(&reopened, &untrusted), written[..victim.base_offset.0 as usize]);
    check_invariants(&reopened, &untrusted);
}

#[test]
fn a_walk_that_does_not_hold_up_validates_instead() {
    let mut storage = MemStorage::new();
    let log = segmented(&mut storage);
    let count = log.segment_count() as u64;
    let last = *log.active().batches.last().expect("a batch");
    // A torn tail under a point past the end (a stale or bit-flipped checkpoint).
    let mut torn = storage.clone();
    let file = log.active().log_file.clone();
    torn.truncate(&file, torn.len(&file).expect("file") - 5);
    let reopened = open_from(&mut torn.clone(), Some(Offset(i64::MAX)));
    assert_eq!(reopened.log_end_offset(), last.base_offset, "cut as without a recovery point");
    let stats = reopened.recovery_stats();
    assert_eq!((stats.segments_walked, stats.segments_validated), (count - 1, 1));
    // The planted refuse-torn-tail still refuses it.
    let plants = Plants::none().with(Plant::RefuseTornTail);
    let refused = PartitionLog::open(DIR, small_config(), &plants, Some(Offset(i64::MAX)), &mut torn);
    assert!(matches!(refused, Err(LogError::Corrupt { .. })), "{refused:?}");
    // A batch zeroed in a walked segment (a lost write): validated, cut there.
    let victim = log.segments[1].batches[1];
    let mut lost = storage.clone();
    let mut bytes = lost.read(&log.segments[1].log_file).expect("file");
    bytes[victim.position as usize..(victim.position + victim.size_bytes) as usize].fill(0);
    lost.write_all(&log.segments[1].log_file, &bytes).expect("storage");
    let reopened = open_from(&mut lost, Some(log.log_end_offset()));
    assert_eq!(reopened.log_end_offset(), victim.base_offset);
    assert_eq!(reopened.recovery_stats().segments_walked, 1);
    check_invariants(&reopened, &lost);
    // An epoch going back in a walked header (the field is outside the CRC).
    let mut back = storage.clone();
    let mut bytes = back.read(&log.segments[1].log_file).expect("file");
    assert_eq!(victim.leader_epoch, LeaderEpoch(1));
    bytes[victim.position as usize + 15] = 7; // epoch 1 -> 7: the next batch goes back
    back.write_all(&log.segments[1].log_file, &bytes).expect("storage");
    let reopened = open_from(&mut back, Some(log.log_end_offset()));
    assert_eq!(reopened.log_end_offset(), victim.last_offset.next(), "cut after the batch that claims epoch 7");
    assert_eq!(reopened.recovery_stats().segments_walked, 1);
    check_invariants(&reopened, &back);
}

#[test]
fn the_epoch_checkpoint_vouches_for_the_epochs_a_walk_reads() {
    let mut storage = MemStorage::new();
    let log = segmented(&mut storage);
    let count = log.segment_count() as u64;
    let end = log.log_end_offset();
    let epoch_2_at = log.epoch_cache().entries()[1].start_offset;
    assert_eq!(log.segments.iter().rposition(|s| s.base_offset <= epoch_2_at), Some(count as usize - 1), "fixture");
    // A checkpoint that does not know epoch 2: its segment is validated, and the batches win.
    let mut stale = storage.clone();
    stale.write_all(&checkpoint_file(), b"0\n1\n1 0\n").expect("storage");
    let reopened = open_from(&mut stale, Some(end));
    let stats = reopened.recovery_stats();
    assert_eq!((stats.segments_walked, stats.segments_validated, stats.epoch_checkpoint), (count - 1, 1, Overruled));
    assert_eq!((reopened.log_end_offset(), reopened.epoch_cache()), (end, log.epoch_cache()));
    check_invariants(&reopened, &stale);
    // A garbled checkpoint vouches for nothing: everything is validated.
    let mut garbled = storage.clone();
    garbled.write_all(&checkpoint_file(), b"0\n2\n1 0\n").expect("storage");
    let reopened = open_from(&mut garbled, Some(end));
    assert_eq!((reopened.recovery_stats().segments_walked, reopened.recovery_stats().epoch_checkpoint), (0, Garbled));
    check_invariants(&reopened, &garbled);
    // A max timestamp below the base timestamp (ksim writes them equal) is a
    // flipped bit that retention would trust: validated (and cut: the CRC covers it).
    let victim = *log.segments[1].batches.iter().find(|b| b.max_timestamp_ms % 2 == 1).expect("an odd timestamp");
    let mut flipped = storage.clone();
    flip(&mut flipped, &log.segments[1].log_file, victim.position + 42); // the max timestamp's last byte
    let reopened = open_from(&mut flipped, Some(end));
    assert_eq!(reopened.recovery_stats().segments_walked, 1);
    assert_eq!(reopened.log_end_offset(), victim.base_offset);
    check_invariants(&reopened, &flipped);
}

#[test]
fn a_walk_reads_headers_not_the_records_of_big_batches() {
    let config = LogConfig { segment_bytes: 1 << 24, ..small_config() };
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config.clone());
    for now_ms in 0..4 {
        let value = bytes::Bytes::from(vec![b'v'; 200_000]);
        log.append(&mut storage, now_ms, LeaderEpoch(1), &[Record { key: None, value, timestamp_ms: 0 }]).unwrap();
    }
    let size = log.size_bytes();
    let mut counting = TestDisk::new(storage);
    let walked = PartitionLog::open(DIR, config.clone(), &Plants::none(), Some(log.log_end_offset()), &mut counting);
    assert_eq!(walked.expect("open").recovery_stats().bytes_walked, size);
    let read = counting.log_bytes_read.replace(0);
    assert!(read <= 4 * 64 * 1024 && read < size / 3, "walking read {read} of {size} bytes");
    let validated = PartitionLog::open(DIR, config, &Plants::none(), None, &mut counting).expect("open");
    assert_eq!(validated.recovery_stats().bytes_validated, size);
    assert_eq!(counting.log_bytes_read.get(), size, "validating reads everything");
}

#[test]
fn a_transient_read_error_at_open_is_read_again_not_cut() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, LogConfig::default());
    fill(&mut log, &mut storage, "v", 40, 4);
    let end = log.log_end_offset();
    let file = format!("{DIR}/{:020}.log", 0);
    let open = |flaky: &mut TestDisk<MemStorage>| {
        PartitionLog::open(DIR, LogConfig::default(), &Plants::none(), None, flaky).expect("open")
    };
    // Bad reads, then a clean one within the re-reads: nothing is cut and
    // the file is untouched. (Identical bad reads are all recovery can see
    // of media damage, so the bound is on the reads, not the flips.)
    for flips in 1..MAX_REREADS {
        let mut flaky = TestDisk::flaky(storage.clone(), &file, None, flips);
        assert_eq!(open(&mut flaky).log_end_offset(), end, "{flips} bad reads");
        assert_eq!(flaky.inner.read(&file), storage.read(&file), "the file is untouched");
    }
    // A flip in an early batch's epoch field (outside the CRC) shows only at
    // the next batch; the clean re-read is scanned from the start, with the
    // epochs as they were, so the cache is right too.
    let early = log.segments[0].batches[3];
    let epoch_byte = early.position as usize + 15; // the low byte of partitionLeaderEpoch
    let mut flaky = TestDisk::flaky(storage.clone(), &file, Some(epoch_byte), 1);
    let reopened = open(&mut flaky);
    assert_eq!((reopened.log_end_offset(), reopened.epoch_cache()), (end, log.epoch_cache()));
    // The same in the last batch, which nothing after it contradicts: the
    // checkpoint does not hold that epoch, so it is read again.
    let last = *log.segments[0].batches.last().expect("batches");
    let epoch_byte = last.position as usize + 15;
    let mut flaky = TestDisk::flaky(storage.clone(), &file, Some(epoch_byte), 1);
    let reopened = open(&mut flaky);
    assert_eq!((reopened.log_end_offset(), reopened.epoch_cache()), (end, log.epoch_cache()));
    // Damage that reads back alike every time is on the media: cut, as before.
    let mut flaky = TestDisk::flaky(storage.clone(), &file, None, u32::MAX);
    assert!(open(&mut flaky).log_end_offset() < end, "persistent damage: the tail is cut");
}
