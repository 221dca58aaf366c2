//! The producer state a log keeps for idempotent producers, through rolls
//! (which write snapshots), reopens, truncations, retention, damaged
//! snapshots and replication. The reference everywhere is the table that
//! recording the log's idempotent batches in order builds, retention-deleted
//! ones included.

use super::producer_snapshot;
use super::producer_state::RETAINED_BATCHES;
use super::tests::{check_invariants, open_log, read_all, small_config, DIR};
use super::*;
use crate::plant::{Plant, Plants};
use crate::protocol::ErrorCode;
use crate::storage::{MemStorage, Storage, TestDisk};
use crate::types::{ProducerEpoch, ProducerId};
use bytes::Bytes;
use std::collections::BTreeMap;

fn stamp(id: i64, epoch: i16, base_sequence: i32) -> ProducerStamp {
    ProducerStamp { id: ProducerId(id), epoch: ProducerEpoch(epoch), base_sequence }
}

/// One batch a test appended: enough to append it again elsewhere.
#[derive(Clone, Copy, Debug)]
struct Sent {
    now_ms: u64,
    leader_epoch: i32,
    producer: Option<ProducerStamp>,
    base: Offset,
    count: usize,
}

/// Idempotent producers as clients: each id's epoch and next sequence.
#[derive(Default)]
struct Producers(BTreeMap<i64, (i16, i32)>);

impl Producers {
    /// The stamp of `id`'s next batch of `count` records.
    fn next(&mut self, id: i64, count: usize) -> ProducerStamp {
        let (epoch, seq) = self.0.entry(id).or_insert((0, 0));
        let next = stamp(id, *epoch, *seq);
        *seq = next.last_sequence(count) + 1;
        next
    }

    /// A new epoch for `id` (as after InitProducerId again): sequences restart.
    fn bump(&mut self, id: i64) {
        let (epoch, seq) = self.0.entry(id).or_insert((0, 0));
        *epoch += 1;
        *seq = 0;
    }
}

/// Appends `count` records from `producer` (`None`: a plain producer).
fn send(
    log: &mut PartitionLog,
    storage: &mut dyn Storage,
    now_ms: u64,
    leader_epoch: i32,
    producer: Option<ProducerStamp>,
    count: usize,
) -> Sent {
    let base = log.log_end_offset();
    let records: Vec<Record> = (base.0..base.0 + count as i64)
        .map(|o| Record { key: None, value: Bytes::from(format!("v{o}")), timestamp_ms: 0 })
        .collect();
    let info = log.append_from(storage, now_ms, LeaderEpoch(leader_epoch), producer, &records).expect("append");
    assert_eq!(info.base_offset, base);
    Sent { now_ms, leader_epoch, producer, base, count }
}

/// `batches` batches from producers 1, 2 and 3 and a plain one in turn,
/// 1 to 3 records each; producer 2 bumps its epoch halfway, and the leader
/// epoch goes up by one a third of the way, from `leader_epoch`.
fn workload_from(
    log: &mut PartitionLog,
    storage: &mut dyn Storage,
    producers: &mut Producers,
    leader_epoch: i32,
    batches: usize,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    for i in 0..batches {
        if i == batches / 2 {
            producers.bump(2);
        }
        let count = 1 + i % 3;
        let producer = [Some(1), Some(2), None, Some(3)][i % 4].map(|id| producers.next(id, count));
        let leader_epoch = leader_epoch + i32::from(i >= batches / 3);
        sent.push(send(log, storage, i as u64, leader_epoch, producer, count));
    }
    sent
}

/// [`workload_from`] on a new log, from leader epoch 0.
fn workload(log: &mut PartitionLog, storage: &mut dyn Storage, batches: usize) -> Vec<Sent> {
    workload_from(log, storage, &mut Producers::default(), 0, batches)
}

/// The table recording `sent` in order builds.
fn table_of(sent: &[Sent], window: usize) -> ProducerStateTable {
    let mut table = ProducerStateTable::new(window);
    for s in sent {
        if let Some(stamp) = s.producer {
            table.record_batch(stamp, s.count, s.base);
        }
    }
    table
}

/// `sent` as a log cut at `offset` holds it: later batches gone, the one
/// across the cut shortened (it keeps its base sequence).
fn cut(sent: &[Sent], offset: Offset) -> Vec<Sent> {
    let kept = sent.iter().filter(|s| s.base < offset);
    kept.map(|s| Sent { count: s.count.min((offset.0 - s.base.0) as usize), ..*s }).collect()
}

/// The offsets of the producer snapshots under `DIR`.
fn snapshots(storage: &dyn Storage) -> Vec<i64> {
    producer_snapshot::list(storage, DIR).into_iter().map(|o| o.0).collect()
}

fn reopen(storage: &mut dyn Storage, config: LogConfig, recovery_point: Option<Offset>) -> PartitionLog {
    PartitionLog::open(DIR, config, &Plants::none(), recovery_point, storage).expect("open")
}

#[test]
fn reopen_rebuilds_the_producer_state_across_rolls_and_epoch_bumps() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    let sent = workload(&mut log, &mut storage, 40);
    assert!(log.segment_count() >= 5, "fixture: several rolls");
    // One snapshot per roll, at each segment's base but the first.
    let bases: Vec<i64> = log.segments[1..].iter().map(|s| s.base_offset.0).collect();
    assert_eq!(snapshots(&storage), bases);
    let expected = table_of(&sent, RETAINED_BATCHES);
    assert_eq!(log.producer_state(), &expected);
    assert_eq!(expected.producer_count(), 3);
    let old_epoch = stamp(2, 0, 0);
    assert_eq!(log.check_producer(old_epoch, 1), AppendCheck::Refuse(ErrorCode::InvalidProducerEpoch));
    for recovery_point in [None, Some(log.log_end_offset()), Some(Offset(7))] {
        let reopened = reopen(&mut storage, small_config(), recovery_point);
        assert_eq!(reopened.producer_state(), &expected, "recovery point {recovery_point:?}");
        check_invariants(&reopened, &storage);
    }
}

#[test]
fn truncation_leaves_the_state_of_a_log_that_never_had_the_cut_batches() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    let sent = workload(&mut log, &mut storage, 30);
    let snapshots_before = snapshots(&storage);
    assert!(snapshots_before.len() >= 3, "fixture: cuts below several snapshots");
    let mid_batch = sent.iter().find(|s| s.producer.is_some() && s.count == 3).expect("fixture").base.next();
    for offset in (0..=log.log_end_offset().0).map(Offset) {
        let (mut storage, mut log) = (storage.clone(), log.clone());
        log.truncate_to(&mut storage, offset).expect("truncate");
        assert_eq!(log.log_end_offset(), offset);
        let kept = cut(&sent, offset);
        // A log that never had the cut batches, appended afresh.
        let mut fresh_storage = MemStorage::new();
        let mut fresh = open_log(&mut fresh_storage, small_config());
        for s in &kept {
            send(&mut fresh, &mut fresh_storage, s.now_ms, s.leader_epoch, s.producer, s.count);
        }
        assert_eq!(log.producer_state(), fresh.producer_state(), "cut at {offset}");
        assert_eq!(log.producer_state(), &table_of(&kept, RETAINED_BATCHES), "cut at {offset}");
        let kept_snapshots: Vec<i64> = snapshots_before.iter().copied().filter(|&o| o <= offset.0).collect();
        assert_eq!(snapshots(&storage), kept_snapshots, "snapshots past the cut at {offset} go");
        check_invariants(&log, &storage);
        let reopened = reopen(&mut storage, small_config(), None);
        assert_eq!(reopened.producer_state(), log.producer_state(), "reopened after the cut at {offset}");
        if offset == mid_batch {
            let split = log.segments.iter().flat_map(|s| &s.batches).last().expect("a batch");
            let one_kept = (offset.0 - 1, offset.0 - 1);
            assert_eq!((split.base_offset.0, split.last_offset.0), one_kept, "the batch keeps one record");
            assert!(split.producer.is_some(), "and its stamp");
        }
    }
}

#[test]
fn retention_keeps_a_producer_whose_batches_it_deleted() {
    let config = LogConfig { retention_bytes: Some(500), ..small_config() };
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config.clone());
    let mut producers = Producers::default();
    let mut sent = Vec::new();
    for now_ms in 0..3 {
        sent.push(send(&mut log, &mut storage, now_ms, 0, Some(producers.next(7, 2)), 2));
    }
    let last = *sent.last().expect("sent");
    for now_ms in 3..30 {
        sent.push(send(&mut log, &mut storage, now_ms, 0, Some(producers.next(8, 1)), 1));
    }
    assert!(log.apply_retention(&mut storage, 30).expect("retention") > 0);
    let start = log.log_start_offset();
    assert!(start > last.base, "fixture: producer 7's batches are all deleted");
    assert_eq!(snapshots(&storage).first(), Some(&start.0), "the snapshot at the log start is kept, none below");
    check_invariants(&log, &storage);
    let retry = last.producer.expect("idempotent");
    let duplicate = AppendCheck::Duplicate { first_offset: last.base, last_offset: last.base.next() };
    let next = producers.next(7, 1);
    let known = |log: &PartitionLog| {
        assert_eq!(log.check_producer(retry, 2), duplicate, "a retry of the last batch");
        assert_eq!(log.check_producer(next, 1), AppendCheck::Append, "the next sequence");
        assert_eq!(log.producer_state(), &table_of(&sent, RETAINED_BATCHES));
    };
    known(&log);
    let mut reopened = reopen(&mut storage, config.clone(), None);
    known(&reopened);
    // A truncation above the log start rebuilds from that snapshot too.
    let mut cut_storage = storage.clone();
    reopened.truncate_to(&mut cut_storage, start.next()).expect("truncate");
    assert_eq!(reopened.check_producer(retry, 2), duplicate);
    send(&mut reopened, &mut cut_storage, 40, 0, Some(next), 1);
    check_invariants(&reopened, &cut_storage);

    // Without the snapshots the state would come from the batches alone:
    // producer 7 is forgotten, and its next batch refused.
    for offset in snapshots(&storage) {
        storage.delete(&producer_snapshot::snapshot_file(DIR, Offset(offset)));
    }
    let bare = reopen(&mut storage, config, None);
    assert_eq!(bare.check_producer(next, 1), AppendCheck::Refuse(ErrorCode::UnknownProducerId));
    assert_eq!(bare.producer_state().producer_count(), 1, "only producer 8 is left");
}

#[test]
fn a_snapshot_missing_at_the_new_log_start_is_written_before_retention() {
    let config = LogConfig { retention_bytes: Some(500), ..small_config() };
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, config.clone());
    let sent = workload(&mut log, &mut storage, 30);
    // Lost (say, a damaged file deleted at open): rebuilt from the older ones.
    let doomed = log.segments_past_retention(30);
    assert!(doomed >= 2, "fixture: retention deletes past a snapshot");
    let new_start = log.segments[doomed].base_offset;
    storage.delete(&producer_snapshot::snapshot_file(DIR, new_start));
    assert_eq!(log.apply_retention(&mut storage, 30), Ok(doomed));
    assert_eq!(snapshots(&storage).first(), Some(&new_start.0));
    check_invariants(&log, &storage);
    let reopened = reopen(&mut storage, config, None);
    assert_eq!(reopened.producer_state(), &table_of(&sent, RETAINED_BATCHES));
}

#[test]
fn a_damaged_newest_snapshot_is_ignored_for_an_older_one() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    let sent = workload(&mut log, &mut storage, 40);
    let expected = table_of(&sent, RETAINED_BATCHES);
    let all = snapshots(&storage);
    let newest = producer_snapshot::snapshot_file(DIR, Offset(*all.last().expect("fixture")));
    let bytes = storage.read(&newest).expect("written at the roll");
    let flipped = {
        let mut b = bytes.clone();
        b[bytes.len() / 2] ^= 0x04;
        b
    };
    for damaged in [flipped, bytes[..bytes.len() - 1].to_vec(), Vec::new()] {
        let mut storage = storage.clone();
        storage.write_all(&newest, &damaged).unwrap();
        let reopened = reopen(&mut storage, small_config(), None);
        assert_eq!(reopened.producer_state(), &expected);
        assert_eq!(snapshots(&storage), all[..all.len() - 1], "the damaged one is deleted, the others kept");
    }
    // A transient read error is read again: the snapshot is kept.
    let mut flaky = TestDisk::flaky(storage.clone(), &newest, None, 1);
    let reopened = PartitionLog::open(DIR, small_config(), &Plants::none(), None, &mut flaky).expect("open");
    assert_eq!(reopened.producer_state(), &expected);
    assert_eq!(flaky.flips_left.get(), 0, "fixture: the read was flipped");
    assert_eq!(snapshots(&flaky), all);
    // Every snapshot damaged: the batches alone (all still here) give it too.
    for offset in &all {
        storage.write_all(&producer_snapshot::snapshot_file(DIR, Offset(*offset)), b"junk").unwrap();
    }
    let mut cut_log = reopen(&mut storage, small_config(), None);
    assert_eq!(cut_log.producer_state(), &expected);
    assert_eq!(snapshots(&storage), Vec::<i64>::new());
    let cut_at = Offset(all[1] + 1);
    cut_log.truncate_to(&mut storage, cut_at).expect("truncate");
    assert_eq!(cut_log.producer_state(), &table_of(&cut(&sent, cut_at), RETAINED_BATCHES));
}

#[test]
fn open_deletes_snapshots_past_the_recovered_end_and_stale_temp_files() {
    let mut storage = MemStorage::new();
    let mut log = open_log(&mut storage, small_config());
    let sent = workload(&mut log, &mut storage, 40);
    let all = snapshots(&storage);
    // A crash took the last two segments (never flushed, say).
    let lost: Vec<_> = log.segments[log.segments.len() - 2..].iter().map(|s| s.base_offset).collect();
    for base in &lost {
        let (log_file, index_file) = segment::file_names(DIR, *base);
        storage.delete(&log_file);
        storage.delete(&index_file);
    }
    let tmp = format!("{}.tmp", producer_snapshot::snapshot_file(DIR, log.log_end_offset()));
    storage.write_all(&tmp, b"half a snapshot").unwrap();
    let reopened = reopen(&mut storage, small_config(), None);
    assert_eq!(reopened.log_end_offset(), lost[0]);
    let kept: Vec<i64> = all.iter().copied().filter(|&o| o <= lost[0].0).collect();
    assert_eq!(snapshots(&storage), kept);
    assert_eq!(storage.len(&tmp), None);
    assert_eq!(reopened.producer_state(), &table_of(&cut(&sent, lost[0]), RETAINED_BATCHES));
    check_invariants(&reopened, &storage);
}

#[test]
fn a_follower_ends_with_the_leaders_producer_state_and_batch_boundaries() {
    let (mut leader_storage, config) = (MemStorage::new(), small_config());
    let mut leader = open_log(&mut leader_storage, config.clone());
    let mut producers = Producers::default();
    let mut sent = workload_from(&mut leader, &mut leader_storage, &mut producers, 0, 20);
    // Two batches of producer 5 in a row, at one time and in one epoch: only
    // their stamps tell them apart.
    for count in [3, 2] {
        sent.push(send(&mut leader, &mut leader_storage, 99, 1, Some(producers.next(5, count)), count));
    }
    sent.extend(workload_from(&mut leader, &mut leader_storage, &mut producers, 2, 6));
    let boundaries = |log: &PartitionLog| -> Vec<(i64, i64, i32, u64, Option<ProducerStamp>)> {
        let batches = log.segments.iter().flat_map(|s| &s.batches);
        batches.map(|b| (b.base_offset.0, b.last_offset.0, b.leader_epoch.0, b.max_timestamp_ms, b.producer)).collect()
    };
    let fetched = read_all(&leader, &leader_storage);
    // In one go, and in fetches that end at the leader's batch boundaries.
    let whole = [fetched.len()];
    let in_batches: Vec<usize> = boundaries(&leader).iter().map(|b| (b.1 - b.0 + 1) as usize).collect();
    for fetches in [&whole[..], &in_batches[..]] {
        let mut storage = MemStorage::new();
        let mut follower = open_log(&mut storage, config.clone());
        let mut from = 0;
        for len in fetches {
            follower.append_replicated(&mut storage, &fetched[from..from + len]).expect("follower append");
            from += len;
        }
        assert_eq!(boundaries(&follower), boundaries(&leader));
        assert_eq!(follower.producer_state(), leader.producer_state());
        assert_eq!(follower.producer_state(), &table_of(&sent, RETAINED_BATCHES));
        assert_eq!(read_all(&follower, &storage), fetched);
        assert_eq!(snapshots(&storage), snapshots(&leader_storage), "the same rolls, the same snapshots");
        check_invariants(&follower, &storage);
    }
    let fives: Vec<_> =
        boundaries(&leader).into_iter().filter(|b| b.4.is_some_and(|p| p.id == ProducerId(5))).collect();
    assert_eq!(fives.len(), 2, "fixture: two batches of producer 5");
    assert_eq!((fives[0].2, fives[0].3), (fives[1].2, fives[1].3), "fixture: same epoch and time");
    assert_eq!(fives[0].1 + 1, fives[1].0, "fixture: in a row");
}

#[test]
fn idempotence_window_1_refuses_a_retry_of_the_second_last_batch() {
    let plants = Plants::none().with(Plant::IdempotenceWindow1);
    for (plants, window) in [(Plants::none(), RETAINED_BATCHES), (plants, 1)] {
        let mut storage = MemStorage::new();
        let mut log = PartitionLog::open(DIR, small_config(), &plants, None, &mut storage).expect("open");
        let mut producers = Producers::default();
        let first = send(&mut log, &mut storage, 0, 0, Some(producers.next(1, 2)), 2);
        let second = send(&mut log, &mut storage, 1, 0, Some(producers.next(1, 1)), 1);
        let retry_last = log.check_producer(second.producer.expect("idempotent"), 1);
        assert_eq!(retry_last, AppendCheck::Duplicate { first_offset: second.base, last_offset: second.base });
        let retry_first = log.check_producer(first.producer.expect("idempotent"), 2);
        let expected = if window == 1 {
            AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber)
        } else {
            AppendCheck::Duplicate { first_offset: first.base, last_offset: first.base.next() }
        };
        assert_eq!(retry_first, expected, "window {window}");
        assert_eq!(log.producer_state(), &table_of(&[first, second], window));
        // The same after a reopen with the same switches.
        let reopened = PartitionLog::open(DIR, small_config(), &plants, None, &mut storage).expect("open");
        assert_eq!(reopened.check_producer(first.producer.expect("idempotent"), 2), expected);
    }
}
