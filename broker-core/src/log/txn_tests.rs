//! Transactions in one partition log: transactional batches and markers
//! among plain and idempotent batches, the last stable offset, the
//! aborted-transaction index and marker validation, through reopens,
//! truncations, retention and replication. The reference is a model
//! computed from the batches the test sent (`Expected`), and a log that
//! never had what a cut removed.

use super::producer_snapshot;
use super::tests::{check_invariants, open_log, read_all, small_config, DIR};
use super::*;
use crate::plant::Plants;
use crate::protocol::ErrorCode;
use crate::storage::MemStorage;
use crate::types::{AbortedTxn, ProducerEpoch, ProducerId, TxnMarker};
use bytes::Bytes;
use std::collections::BTreeMap;

/// One batch a test appended: enough to append it again elsewhere. A
/// marker's producer has base sequence -1.
#[derive(Clone, Copy, Debug)]
struct Sent {
    now_ms: u64,
    leader_epoch: i32,
    producer: Option<ProducerStamp>,
    kind: BatchKind,
    base: Offset,
    count: usize,
}

fn stamp(id: i64, epoch: i16, base_sequence: i32) -> ProducerStamp {
    ProducerStamp { id: ProducerId(id), epoch: ProducerEpoch(epoch), base_sequence }
}

fn marker(commit: bool, coordinator_epoch: i32) -> TxnMarker {
    TxnMarker { commit, coordinator_epoch: LeaderEpoch(coordinator_epoch) }
}

/// Appends `sent` again (its base must be the log end).
fn resend(log: &mut PartitionLog, storage: &mut MemStorage, sent: Sent) {
    assert_eq!(log.log_end_offset(), sent.base, "resent at its offset");
    let records: Vec<Record> = (sent.base.0..sent.base.0 + sent.count as i64)
        .map(|o| Record { key: None, value: Bytes::from(format!("v{o}")), timestamp_ms: 0 })
        .collect();
    let (now_ms, epoch) = (sent.now_ms, LeaderEpoch(sent.leader_epoch));
    let info = match (sent.kind, sent.producer) {
        (BatchKind::Data, producer) => log.append_from(storage, now_ms, epoch, producer, &records),
        (BatchKind::Transactional, Some(p)) => log.append_transactional(storage, now_ms, epoch, p, &records),
        (BatchKind::Marker(m), Some(p)) => log.append_marker(storage, now_ms, epoch, p.id, p.epoch, m),
        (kind, None) => panic!("a {kind:?} batch without a producer"),
    };
    assert_eq!(info.expect("append").base_offset, sent.base);
}

/// A log and the clients writing to it: each producer id's epoch and next
/// sequence, the coordinator's epochs as given.
struct Writer {
    storage: MemStorage,
    log: PartitionLog,
    config: LogConfig,
    sent: Vec<Sent>,
    now_ms: u64,
    leader_epoch: i32,
    producers: BTreeMap<i64, (i16, i32)>,
}

impl Writer {
    fn new(config: LogConfig) -> Writer {
        let mut storage = MemStorage::new();
        let log = open_log(&mut storage, config.clone());
        Writer { storage, log, config, sent: Vec::new(), now_ms: 0, leader_epoch: 0, producers: BTreeMap::new() }
    }

    fn send(&mut self, producer: Option<ProducerStamp>, kind: BatchKind, count: usize) -> Sent {
        self.now_ms += 1;
        let (now_ms, leader_epoch, base) = (self.now_ms, self.leader_epoch, self.log.log_end_offset());
        let sent = Sent { now_ms, leader_epoch, producer, kind, base, count };
        resend(&mut self.log, &mut self.storage, sent);
        self.sent.push(sent);
        sent
    }

    /// The stamp of `id`'s next batch of `count` records, checked by the log.
    fn next_stamp(&mut self, id: i64, count: usize) -> ProducerStamp {
        let (epoch, seq) = self.producers.entry(id).or_insert((0, 0));
        let next = stamp(id, *epoch, *seq);
        *seq = next.last_sequence(count) + 1;
        assert_eq!(self.log.check_producer(next, count), AppendCheck::Append, "{next:?}");
        next
    }

    fn plain(&mut self, count: usize) -> Sent {
        self.send(None, BatchKind::Data, count)
    }

    fn idempotent(&mut self, id: i64, count: usize) -> Sent {
        let producer = self.next_stamp(id, count);
        self.send(Some(producer), BatchKind::Data, count)
    }

    fn txn(&mut self, id: i64, count: usize) -> Sent {
        let producer = self.next_stamp(id, count);
        self.send(Some(producer), BatchKind::Transactional, count)
    }

    /// `id`'s marker from coordinator epoch `coordinator_epoch`; `bump`: in
    /// the next producer epoch (KIP-890), so its sequences start over.
    fn end(&mut self, id: i64, commit: bool, coordinator_epoch: i32, bump: bool) -> Sent {
        let (epoch, seq) = self.producers.entry(id).or_insert((0, 0));
        if bump {
            (*epoch, *seq) = (*epoch + 1, 0);
        }
        let (pid, epoch, marker) = (ProducerId(id), ProducerEpoch(*epoch), marker(commit, coordinator_epoch));
        assert_eq!(self.log.check_marker(pid, epoch, marker), Ok(()));
        self.send(Some(stamp(id, epoch.0, -1)), BatchKind::Marker(marker), 1)
    }

    fn reopen(&mut self, recovery_point: Option<Offset>) -> PartitionLog {
        PartitionLog::open(DIR, self.config.clone(), &Plants::none(), recovery_point, &mut self.storage).expect("open")
    }
}

/// What the sent batches imply from `log_start` on, computed the obvious way.
struct Expected {
    log_start: Offset,
    /// Open transactions: producer → first offset.
    open: BTreeMap<ProducerId, Offset>,
    /// Every completed transaction: (first offset, marker offset, commit).
    completed: Vec<(ProducerId, Offset, Offset, bool)>,
}

impl Expected {
    fn of(sent: &[Sent], log_start: Offset) -> Expected {
        let (mut open, mut completed) = (BTreeMap::new(), Vec::new());
        for s in sent {
            let Some(p) = s.producer else { continue };
            match s.kind {
                BatchKind::Data => {}
                BatchKind::Transactional => {
                    open.entry(p.id).or_insert(s.base);
                }
                BatchKind::Marker(m) => {
                    if let Some(first) = open.remove(&p.id) {
                        completed.push((p.id, first, s.base, m.commit));
                    }
                }
            }
        }
        Expected { log_start, open, completed }
    }

    fn lso(&self, hw: Offset) -> Offset {
        let open = self.open.values().copied();
        let unreplicated = self.completed.iter().filter(|t| t.2 >= hw).map(|t| t.1);
        open.chain(unreplicated).min().map_or(hw, |first| first.max(self.log_start).min(hw))
    }

    fn aborted(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        let aborted = self.completed.iter().filter(|t| !t.3 && t.2 >= self.log_start);
        let overlapping = aborted.filter(|t| t.1 < to && t.2 >= from);
        let mut found: Vec<AbortedTxn> = overlapping
            .map(|&(producer_id, first_offset, last_offset, _)| AbortedTxn { producer_id, first_offset, last_offset })
            .collect();
        found.sort_by_key(|t| (t.first_offset, t.producer_id));
        found
    }
}

/// The log's LSO at every high watermark, its aborted transactions over
/// every range, and its open transactions agree with `sent`.
fn check_txns(log: &PartitionLog, sent: &[Sent]) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let expected = Expected::of(sent, start);
    for hw in start.0..=end.0 {
        assert_eq!(log.last_stable_offset(Offset(hw)), expected.lso(Offset(hw)), "LSO at HW {hw}");
    }
    for from in start.0..=end.0 {
        for to in from..=end.0 + 1 {
            let (from, to) = (Offset(from), Offset(to));
            assert_eq!(log.aborted_txns(from, to), expected.aborted(from, to), "aborted in [{from}, {to})");
        }
    }
    for id in 0..20 {
        let open = expected.open.contains_key(&ProducerId(id));
        assert_eq!(log.has_open_txn(ProducerId(id)), open, "producer {id} open");
    }
}

/// Everything transactional a log holds in memory, to compare two logs.
fn txn_state(log: &PartitionLog) -> (ProducerStateTable, txn_index::TxnIndex, Vec<Offset>) {
    let lsos = (log.log_start_offset().0..=log.log_end_offset().0).map(|hw| log.last_stable_offset(Offset(hw)));
    (log.producer_state().clone(), log.txns.clone(), lsos.collect())
}

/// (base, last, epoch, timestamp, producer, kind) of every batch.
type Boundary = (i64, i64, i32, u64, Option<ProducerStamp>, BatchKind);

fn boundaries(log: &PartitionLog) -> Vec<Boundary> {
    let batches = log.segments.iter().flat_map(|s| &s.batches);
    let fields = |b: &segment::BatchMeta| {
        (b.base_offset.0, b.last_offset.0, b.leader_epoch.0, b.max_timestamp_ms, b.producer, b.kind)
    };
    batches.map(fields).collect()
}

const P1: ProducerId = ProducerId(1);
const P2: ProducerId = ProducerId(2);

fn aborted(pid: i64, first: i64, last: i64) -> AbortedTxn {
    AbortedTxn { producer_id: ProducerId(pid), first_offset: Offset(first), last_offset: Offset(last) }
}

#[test]
fn a_committed_and_an_aborted_transaction_among_plain_batches() {
    let mut w = Writer::new(LogConfig::default());
    let lso = |w: &Writer, hw: i64| w.log.last_stable_offset(Offset(hw)).0;
    w.plain(2); // 0-1
    w.txn(1, 2); // 2-3
    assert!(w.log.has_open_txn(P1) && !w.log.has_open_txn(P2));
    assert_eq!((lso(&w, 4), lso(&w, 2), lso(&w, 1)), (2, 2, 1), "held at the open transaction, never above the HW");
    w.txn(2, 1); // 4
    w.plain(1); // 5
    w.txn(1, 2); // 6-7: the same transaction goes on
    assert_eq!(lso(&w, 8), 2);
    w.end(1, true, 0, true); // 8: COMMIT
    assert!(!w.log.has_open_txn(P1) && w.log.has_open_txn(P2));
    assert_eq!(lso(&w, 9), 4, "producer 2 is still open");
    assert_eq!(lso(&w, 8), 2, "a commit not yet below the HW still holds the LSO");
    w.txn(2, 2); // 9-10
    w.end(2, false, 1, true); // 11: ABORT
    assert_eq!((lso(&w, 12), lso(&w, 11), lso(&w, 10)), (12, 4, 4));
    assert_eq!(w.log.aborted_txns(Offset(0), Offset(12)), [aborted(2, 4, 11)]);
    // KIP-890: the COMMIT moved producer 1 to epoch 1, from sequence 0.
    assert_eq!(w.log.check_producer(stamp(1, 1, 4), 1), AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber));
    assert_eq!(w.log.check_producer(stamp(1, 0, 4), 1), AppendCheck::Refuse(ErrorCode::InvalidProducerEpoch));
    w.txn(1, 2); // 12-13, epoch 1 from sequence 0
    w.end(1, false, 1, true); // 14: ABORT
    w.plain(2); // 15-16
    let all = w.log.aborted_txns(Offset(0), Offset(17));
    assert_eq!(all, [aborted(2, 4, 11), aborted(1, 12, 14)]);
    let cases = [(12, 13, vec![aborted(1, 12, 14)]), (5, 6, vec![aborted(2, 4, 11)]), (15, 17, vec![])];
    for (from, to, want) in cases.into_iter().chain([(11, 12, vec![aborted(2, 4, 11)]), (0, 4, vec![])]) {
        assert_eq!(w.log.aborted_txns(Offset(from), Offset(to)), want, "[{from}, {to})");
    }
    assert_eq!(lso(&w, 17), 17);
    check_txns(&w.log, &w.sent);

    // Marker validation: an older producer epoch, an older coordinator.
    let check = |w: &Writer, pid: i64, epoch: i16, coordinator_epoch: i32| {
        w.log.check_marker(ProducerId(pid), ProducerEpoch(epoch), marker(false, coordinator_epoch))
    };
    assert_eq!(check(&w, 1, 1, 5), Err(ErrorCode::InvalidProducerEpoch), "producer 1 is in epoch 2");
    assert_eq!(check(&w, 2, 1, 0), Err(ErrorCode::TransactionCoordinatorFenced), "producer 2's last marker: epoch 1");
    assert_eq!((check(&w, 2, 1, 1), check(&w, 2, 3, 2)), (Ok(()), Ok(())));
    assert_eq!(check(&w, 9, 0, 0), Ok(()), "an unknown producer");
    assert_eq!(check(&w, -1, 0, 0), Err(ErrorCode::InvalidRequest));
    assert_eq!(check(&w, 1, 2, -1), Err(ErrorCode::InvalidRequest));

    // A marker for a producer with nothing open here: written, ends nothing.
    let retry = w.end(2, false, 1, false); // 17
    assert_eq!((retry.base, lso(&w, 18)), (Offset(17), 18));
    assert_eq!(w.log.aborted_txns(Offset(0), Offset(18)), all);
    // A marker in the producer's own epoch (no bump) keeps its sequences.
    w.txn(3, 2); // 18-19
    w.end(3, true, 0, false); // 20
    assert_eq!(w.log.check_producer(stamp(3, 0, 2), 1), AppendCheck::Append);
    let duplicate = AppendCheck::Duplicate { first_offset: Offset(18), last_offset: Offset(19) };
    assert_eq!(w.log.check_producer(stamp(3, 0, 0), 2), duplicate);
    // A marker fences the producer's older epoch even where it never wrote.
    w.end(4, false, 0, true);
    assert_eq!(w.log.check_producer(stamp(4, 0, 0), 1), AppendCheck::Refuse(ErrorCode::InvalidProducerEpoch));
    check_txns(&w.log, &w.sent);
    check_invariants(&w.log, &w.storage);

    // A read returns the markers as records of their kind.
    let records = read_all(&w.log, &w.storage);
    let kinds: Vec<BatchKind> = records[..9].iter().map(|r| r.kind).collect();
    let (d, t) = (BatchKind::Data, BatchKind::Transactional);
    assert_eq!(kinds, [d, d, t, t, t, d, t, t, BatchKind::Marker(marker(true, 0))]);
    assert_eq!(records[8].producer, Some(stamp(1, 1, -1)));

    // Reopened, validating or walking: the same state.
    let before = txn_state(&w.log);
    for recovery_point in [None, Some(w.log.log_end_offset())] {
        let reopened = w.reopen(recovery_point);
        assert_eq!(txn_state(&reopened), before, "recovery point {recovery_point:?}");
        assert_eq!(reopened.recovery_stats().segments_walked, u64::from(recovery_point.is_some()));
        assert_eq!(read_all(&reopened, &w.storage), records);
    }
}

/// Three transactional producers (1, 2, 3), one idempotent (5) and a plain
/// one, with transactions spanning several batches and segments; producer
/// 9's transaction opens early and stays open.
fn workload(w: &mut Writer, rounds: usize) {
    w.plain(1);
    w.txn(9, 2);
    for i in 0..rounds {
        let id = 1 + (i % 3) as i64;
        w.txn(id, 1 + i % 3);
        if i % 4 == 1 {
            w.leader_epoch += 1;
        }
        w.plain(1 + i % 2);
        w.idempotent(5, 2);
        if i % 3 == 2 {
            // Every producer's transaction ends, alternately committed and
            // aborted, from a coordinator whose epoch rises now and then.
            for id in 1..=3 {
                w.end(id, (i / 3 + id as usize).is_multiple_of(2), (i / 6) as i32, true);
            }
        }
    }
}

#[test]
fn state_and_index_survive_reopen_and_every_truncation() {
    let mut w = Writer::new(small_config());
    workload(&mut w, 18);
    assert!(w.log.segment_count() >= 5, "fixture: transactions span rolls");
    let expected = Expected::of(&w.sent, Offset(0));
    assert!(expected.completed.iter().filter(|t| !t.3).count() >= 4, "fixture: aborted transactions");
    assert!(expected.completed.iter().any(|t| t.3), "fixture: committed ones");
    check_txns(&w.log, &w.sent);
    check_invariants(&w.log, &w.storage);
    let before = txn_state(&w.log);
    let end = w.log.log_end_offset();
    for recovery_point in [None, Some(end), Some(Offset(end.0 / 2))] {
        let reopened = w.reopen(recovery_point);
        assert_eq!(txn_state(&reopened), before, "recovery point {recovery_point:?}");
        check_invariants(&reopened, &w.storage);
    }
    let snapshot = producer_snapshot::list(&w.storage, DIR).into_iter().next_back().expect("rolls write snapshots");
    let bytes = w.storage.read(&producer_snapshot::snapshot_file(DIR, snapshot)).expect("listed");
    let table = producer_snapshot::decode(&bytes, snapshot, producer_state::RETAINED_BATCHES).expect("decodes");
    assert!(table.has_open_txn(ProducerId(9)), "a snapshot carries the open transactions");

    let markers: Vec<Offset> =
        w.sent.iter().filter(|s| matches!(s.kind, BatchKind::Marker(_))).map(|s| s.base).collect();
    let (mut before_marker, mut inside_txn) = (0, 0);
    for offset in (0..=end.0).map(Offset) {
        let (mut storage, mut log) = (w.storage.clone(), w.log.clone());
        log.truncate_to(&mut storage, offset).expect("truncate");
        let kept: Vec<Sent> = w
            .sent
            .iter()
            .filter(|s| s.base < offset)
            .map(|s| Sent { count: s.count.min((offset.0 - s.base.0) as usize), ..*s })
            .collect();
        check_txns(&log, &kept);
        check_invariants(&log, &storage);
        // A log that never had the cut batches.
        let mut fresh_storage = MemStorage::new();
        let mut fresh = open_log(&mut fresh_storage, small_config());
        for s in &kept {
            resend(&mut fresh, &mut fresh_storage, *s);
        }
        assert_eq!(txn_state(&log), txn_state(&fresh), "cut at {offset}");
        let reopened = PartitionLog::open(DIR, small_config(), &Plants::none(), None, &mut storage).expect("open");
        assert_eq!(txn_state(&reopened), txn_state(&log), "reopened after the cut at {offset}");
        before_marker += usize::from(markers.contains(&offset));
        // Producer 9's transaction is always open; another's is when the cut
        // came before its marker.
        inside_txn += usize::from(Expected::of(&kept, Offset(0)).open.keys().any(|p| p.0 != 9));
    }
    assert!(before_marker >= 6 && inside_txn > 0, "fixture: cuts before markers and inside transactions");
}

#[test]
fn retention_keeps_an_open_transaction_and_drops_aborts_below_the_log_start() {
    let config = LogConfig { retention_bytes: Some(1_200), ..small_config() };
    let mut w = Writer::new(config.clone());
    workload(&mut w, 18);
    let deleted = w.log.apply_retention(&mut w.storage, w.now_ms).expect("retention");
    let start = w.log.log_start_offset();
    assert!(deleted >= 2, "fixture: several segments go");
    let expected = Expected::of(&w.sent, start);
    let gone = expected.completed.iter().filter(|t| !t.3 && t.2 < start).count();
    assert!(gone >= 1 && expected.open[&ProducerId(9)] < start, "fixture: an abort and producer 9's start went");
    assert_eq!(w.log.last_stable_offset(w.log.log_end_offset()), start, "held at the log start by producer 9");
    assert_eq!(w.log.txns.all_aborted().filter(|t| t.last_offset < start).count(), 0, "dropped");
    check_txns(&w.log, &w.sent);
    check_invariants(&w.log, &w.storage);
    let before = txn_state(&w.log);
    let reopened = w.reopen(None);
    assert_eq!(txn_state(&reopened), before, "reopened");
    // Producer 9's transaction ends: its abort begins below the log start.
    let abort = w.end(9, false, 9, true);
    let first = expected.open[&ProducerId(9)];
    let spans_start = AbortedTxn { producer_id: ProducerId(9), first_offset: first, last_offset: abort.base };
    assert!(w.log.aborted_txns(start, abort.base.next()).contains(&spans_start));
    w.plain(2);
    check_txns(&w.log, &w.sent);
    // The snapshot at the log start knows where it began: after a reopen and
    // after a truncation too.
    let before = txn_state(&w.log);
    assert_eq!(txn_state(&w.reopen(Some(w.log.log_end_offset()))), before);
    let mut cut = w.log.clone();
    cut.truncate_to(&mut w.storage, abort.base.next()).expect("truncate");
    assert!(cut.aborted_txns(start, abort.base.next()).contains(&spans_start));
    check_invariants(&cut, &w.storage);
    // Cut before that marker: open again, from below the log start.
    cut.truncate_to(&mut w.storage, abort.base).expect("truncate");
    assert!(cut.has_open_txn(ProducerId(9)));
    assert_eq!(cut.last_stable_offset(cut.log_end_offset()), start);
    check_invariants(&cut, &w.storage);
}

#[test]
fn a_follower_ends_with_the_leaders_kinds_lso_and_index() {
    let mut w = Writer::new(small_config());
    workload(&mut w, 12);
    // A coordinator's retry: the same marker twice in a row, at one time.
    w.txn(6, 1);
    let first = w.end(6, true, 3, false);
    w.now_ms -= 1;
    let second = w.end(6, true, 3, false);
    assert_eq!((first.now_ms, first.producer, first.kind), (second.now_ms, second.producer, second.kind));
    w.plain(1);
    let fetched = read_all(&w.log, &w.storage);
    for max_bytes in [u32::MAX, 200, 1] {
        let mut storage = MemStorage::new();
        let mut follower = open_log(&mut storage, small_config());
        while follower.log_end_offset() < w.log.log_end_offset() {
            let from = follower.log_end_offset();
            let batches = w.log.read_whole_batches(&w.storage, from, w.log.log_end_offset(), max_bytes).unwrap();
            follower.append_replicated(&mut storage, &batches).expect("follower append");
        }
        assert_eq!(boundaries(&follower), boundaries(&w.log), "max bytes {max_bytes}");
        assert_eq!(txn_state(&follower), txn_state(&w.log));
        assert_eq!(read_all(&follower, &storage), fetched);
        check_txns(&follower, &w.sent);
        check_invariants(&follower, &storage);
    }
    let markers = boundaries(&w.log).into_iter().filter(|b| matches!(b.5, BatchKind::Marker(_))).count();
    assert!(markers >= 12, "fixture: markers to copy");
}
