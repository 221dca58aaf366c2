//! Idempotent and transactional producers' state on one partition (Kafka's
//! `ProducerStateManager`): for every producer id, its current epoch and its
//! last five batches' sequence ranges and offsets, the first offset of its
//! open transaction here (if any) and the coordinator epoch of the last
//! transaction marker it got here. A batch that repeats one of those is a
//! retry of a batch already in the log (answered with the original offsets,
//! not appended again); a batch that skips ahead is a gap
//! (OUT_OF_ORDER_SEQUENCE_NUMBER); an older epoch is fenced
//! (INVALID_PRODUCER_EPOCH); an unknown producer must start at sequence 0
//! (UNKNOWN_PRODUCER_ID). A marker from an older producer epoch is fenced
//! (INVALID_PRODUCER_EPOCH), one from an older coordinator
//! (TRANSACTION_COORDINATOR_FENCED).
//!
//! A producer's first transactional batch opens its transaction at that
//! batch's offset; its marker (COMMIT or ABORT) closes it. The open
//! transactions bound the last stable offset. A marker may carry an epoch
//! above the producer's (KIP-890 part 2: the coordinator bumps the epoch
//! at every transaction's end): the producer moves to it with no batches,
//! so its next batch starts at sequence 0.
//!
//! Every `PartitionLog` keeps one, fed by every batch it appends (as leader
//! or follower), so a new leader has the state its log implies. At open and
//! after a truncation it is rebuilt from the newest producer snapshot
//! (`producer_snapshot`, written at every roll) and the batches after it: a
//! producer whose batches retention deleted lives on in the snapshots.

use crate::protocol::ErrorCode;
use crate::types::{BatchKind, LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, TxnMarker};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Batches remembered per producer (Kafka's
/// `max.in.flight.requests.per.connection` bound for idempotence).
pub const RETAINED_BATCHES: usize = 5;

/// Most producers one partition tracks (ksim's bound).
pub const MAX_PRODUCERS: usize = 100_000;

/// One batch as a producer wrote it: its sequence range and where it landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSeq {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

/// What a leader does with a batch from an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendCheck {
    /// New and in order: append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets.
    Duplicate {
        first_offset: Offset,
        last_offset: Offset,
    },
    Refuse(ErrorCode),
}

/// A transaction a marker ended in this partition: its producer's records
/// from `first_offset` (its first transactional batch here) up to the
/// marker at `last_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    pub last_offset: Offset,
    pub commit: bool,
}

/// One producer's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: ProducerEpoch,
    /// Oldest first, at most the table's window long. Empty only after a
    /// marker moved the producer to a new epoch.
    pub batches: VecDeque<BatchSeq>,
    /// The coordinator epoch of the last marker seen ([`LeaderEpoch::NONE`]: none).
    pub coordinator_epoch: LeaderEpoch,
    /// The first offset of its open transaction in this partition.
    pub txn_first_offset: Option<Offset>,
}

impl ProducerEntry {
    fn new(epoch: ProducerEpoch) -> ProducerEntry {
        ProducerEntry { epoch, batches: VecDeque::new(), coordinator_epoch: LeaderEpoch::NONE, txn_first_offset: None }
    }

    /// Moves to `epoch` if it is another one: sequences start over. (An
    /// older one only reaches here on a follower copying a log written
    /// under a planted bug, or a leader with forgotten state: the log is the
    /// truth.) An open transaction stays open: only a marker ends it.
    fn move_to(&mut self, epoch: ProducerEpoch) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: BTreeMap<ProducerId, ProducerEntry>,
    /// `(first offset, producer)` of every open transaction, so the
    /// earliest is found without a scan (Kafka's `ongoingTxns`). Always
    /// what the entries' `txn_first_offset`s say.
    open_txns: BTreeSet<(Offset, ProducerId)>,
    /// Batches kept per producer: `RETAINED_BATCHES`, or 1 under the planted
    /// bug `idempotence-window-1`.
    window: usize,
}

impl Default for ProducerStateTable {
    fn default() -> Self {
        ProducerStateTable::new(RETAINED_BATCHES)
    }
}

/// The sequence after `seq` (sequences wrap at `i32::MAX`, as in Kafka).
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStateTable {
    pub fn new(window: usize) -> ProducerStateTable {
        assert!((1..=RETAINED_BATCHES).contains(&window), "a window of {window} batches");
        ProducerStateTable { producers: BTreeMap::new(), open_txns: BTreeSet::new(), window }
    }

    /// How a batch of `count` records stamped `stamp` is to be handled.
    pub fn check_batch(&self, stamp: ProducerStamp, count: usize) -> AppendCheck {
        self.check(stamp.id, stamp.epoch, stamp.base_sequence, stamp.last_sequence(count))
    }

    /// Remembers a (non-transactional) batch of `count` records stamped
    /// `stamp` at `first_offset..`.
    pub fn record_batch(&mut self, stamp: ProducerStamp, count: usize, first_offset: Offset) {
        self.record(stamp.id, stamp.epoch, batch_seq(stamp, count, first_offset));
    }

    /// Remembers a transactional batch: as [`ProducerStateTable::record_batch`],
    /// and it opens its producer's transaction here unless one is open.
    pub fn record_transactional(&mut self, stamp: ProducerStamp, count: usize, first_offset: Offset) {
        self.record(stamp.id, stamp.epoch, batch_seq(stamp, count, first_offset));
        let entry = self.producers.get_mut(&stamp.id).expect("just recorded");
        if entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(first_offset);
            self.open_txns.insert((first_offset, stamp.id));
        }
    }

    /// Remembers a batch as the log holds it (`kind`, `producer`, offsets
    /// `first_offset..first_offset + count`): what appends and replays share.
    /// Returns the transaction a marker completed, if it ended one.
    pub fn record_kind(
        &mut self,
        kind: BatchKind,
        producer: Option<ProducerStamp>,
        count: usize,
        first_offset: Offset,
    ) -> Option<CompletedTxn> {
        match (kind, producer) {
            (_, None) => {
                assert_eq!(kind, BatchKind::Data, "the codec refuses a {kind:?} batch without a producer");
                None
            }
            (BatchKind::Data, Some(stamp)) => {
                self.record_batch(stamp, count, first_offset);
                None
            }
            (BatchKind::Transactional, Some(stamp)) => {
                self.record_transactional(stamp, count, first_offset);
                None
            }
            (BatchKind::Marker(marker), Some(stamp)) => {
                assert_eq!(count, 1, "a marker batch holds one record");
                self.record_marker(stamp.id, stamp.epoch, marker, first_offset)
            }
        }
    }

    /// The epoch `pid` last wrote here in, if this table knows it.
    pub fn epoch_of(&self, pid: ProducerId) -> Option<ProducerEpoch> {
        self.producers.get(&pid).map(|e| e.epoch)
    }

    /// Whether a marker from `pid` in `epoch` written by a coordinator in
    /// `marker.coordinator_epoch` may be appended (Kafka's
    /// `ProducerAppendInfo.appendEndTxnMarker` checks). A marker for a
    /// producer with no transaction open here is accepted: Kafka writes it
    /// too, and it ends nothing.
    pub fn check_marker(&self, pid: ProducerId, epoch: ProducerEpoch, marker: TxnMarker) -> Result<(), ErrorCode> {
        if pid.0 < 0 || epoch.0 < 0 || marker.coordinator_epoch < LeaderEpoch::FIRST {
            return Err(ErrorCode::InvalidRequest);
        }
        let Some(entry) = self.producers.get(&pid) else { return Ok(()) };
        if epoch < entry.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(ErrorCode::TransactionCoordinatorFenced);
        }
        Ok(())
    }

    /// A marker from `pid` in `epoch` was appended at `offset`: its open
    /// transaction (if any) ends there, it moves to `epoch`, and the
    /// marker's coordinator epoch is the last one seen. An unknown producer
    /// gets an entry (so its older epoch stays fenced), unless the table is
    /// full: it has no transaction here to end.
    pub fn record_marker(
        &mut self,
        pid: ProducerId,
        epoch: ProducerEpoch,
        marker: TxnMarker,
        offset: Offset,
    ) -> Option<CompletedTxn> {
        if !self.producers.contains_key(&pid) && self.producers.len() >= MAX_PRODUCERS {
            return None;
        }
        let entry = self.producers.entry(pid).or_insert_with(|| ProducerEntry::new(epoch));
        entry.move_to(epoch);
        entry.coordinator_epoch = marker.coordinator_epoch;
        let first_offset = entry.txn_first_offset.take()?;
        assert!(first_offset < offset, "a transaction ends after it starts");
        assert!(self.open_txns.remove(&(first_offset, pid)), "open_txns follows the entries");
        Some(CompletedTxn { producer_id: pid, first_offset, last_offset: offset, commit: marker.commit })
    }

    /// Forgets every producer (what the planted bug
    /// `producer-state-lost-on-failover` does to a new leader), their open
    /// transactions included.
    pub fn clear(&mut self) {
        self.producers.clear();
        self.open_txns.clear();
    }

    /// Forgets every open transaction but keeps the producers (what the
    /// planted bug `open-txns-lost-on-failover` does to a new leader): their
    /// markers then end nothing here.
    pub fn forget_open_txns(&mut self) {
        for entry in self.producers.values_mut() {
            entry.txn_first_offset = None;
        }
        self.open_txns.clear();
    }

    /// How a batch of sequences `first_seq..=last_seq` from `pid` in `epoch` is to be handled.
    pub fn check(&self, pid: ProducerId, epoch: ProducerEpoch, first_seq: i32, last_seq: i32) -> AppendCheck {
        assert!(first_seq >= 0 && last_seq >= 0, "sequences are non-negative");
        let Some(entry) = self.producers.get(&pid) else {
            if self.producers.len() >= MAX_PRODUCERS {
                return AppendCheck::Refuse(ErrorCode::InvalidRequest);
            }
            return match first_seq {
                0 => AppendCheck::Append,
                _ => AppendCheck::Refuse(ErrorCode::UnknownProducerId),
            };
        };
        if epoch < entry.epoch {
            return AppendCheck::Refuse(ErrorCode::InvalidProducerEpoch);
        }
        if epoch > entry.epoch {
            // A bumped epoch starts its sequences over.
            return match first_seq {
                0 => AppendCheck::Append,
                _ => AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber),
            };
        }
        if let Some(b) = entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
            return AppendCheck::Duplicate { first_offset: b.first_offset, last_offset: b.last_offset };
        }
        // No batch in this epoch yet (a marker moved the producer to it): from 0.
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if first_seq == expected {
            AppendCheck::Append
        } else {
            AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber)
        }
    }

    /// A batch was appended (by the leader, or replicated to a follower):
    /// remember it, forgetting the producer's oldest beyond the window.
    pub fn record(&mut self, pid: ProducerId, epoch: ProducerEpoch, batch: BatchSeq) {
        let entry = self.producers.entry(pid).or_insert_with(|| ProducerEntry::new(epoch));
        entry.move_to(epoch);
        entry.batches.push_back(batch);
        while entry.batches.len() > self.window {
            entry.batches.pop_front();
        }
    }

    /// Restores `pid`'s entry from a snapshot, its batches kept to the
    /// window. `None` if the producer is already there.
    pub(super) fn restore(&mut self, pid: ProducerId, mut entry: ProducerEntry) -> Option<()> {
        while entry.batches.len() > self.window {
            entry.batches.pop_front();
        }
        if let Some(first_offset) = entry.txn_first_offset {
            self.open_txns.insert((first_offset, pid));
        }
        self.producers.insert(pid, entry).is_none().then_some(())
    }

    /// The log was cut at `offset` (a test broker's truncation): batches at
    /// or past it are forgotten, so is a transaction opened there, and
    /// producers left with no batch are dropped. (The log itself rebuilds
    /// from a snapshot and its batches instead: a cut can also undo a
    /// marker, which this cannot.)
    pub fn truncate_to(&mut self, offset: Offset) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
            entry.txn_first_offset = entry.txn_first_offset.filter(|&first| first < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
        self.open_txns = self.producers.iter().filter_map(|(&pid, e)| Some((e.txn_first_offset?, pid))).collect();
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Batches kept per producer.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Every producer, by id.
    pub fn producers(&self) -> impl ExactSizeIterator<Item = (ProducerId, &ProducerEntry)> {
        self.producers.iter().map(|(&pid, entry)| (pid, entry))
    }

    /// Whether `pid` has a transaction open in this partition.
    pub fn has_open_txn(&self, pid: ProducerId) -> bool {
        self.producers.get(&pid).is_some_and(|e| e.txn_first_offset.is_some())
    }

    /// The first offset of the earliest open transaction (Kafka's first
    /// undecided offset).
    pub fn first_open_txn_offset(&self) -> Option<Offset> {
        self.open_txns.first().map(|&(offset, _)| offset)
    }

    /// Every open transaction: `(first offset, producer)`, earliest first.
    pub fn open_txns(&self) -> impl ExactSizeIterator<Item = (Offset, ProducerId)> + '_ {
        self.open_txns.iter().copied()
    }
}

fn batch_seq(stamp: ProducerStamp, count: usize, first_offset: Offset) -> BatchSeq {
    let last_offset = Offset(first_offset.0 + count as i64 - 1);
    BatchSeq { first_seq: stamp.base_sequence, last_seq: stamp.last_sequence(count), first_offset, last_offset }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId(7);
    const E0: ProducerEpoch = ProducerEpoch(0);
    const E1: ProducerEpoch = ProducerEpoch(1);

    fn batch(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchSeq {
        let last_offset = Offset(first_offset + i64::from(last_seq - first_seq));
        BatchSeq { first_seq, last_seq, first_offset: Offset(first_offset), last_offset }
    }

    /// Appends `first_seq..=last_seq` at `first_offset` if the table says to.
    fn append(t: &mut ProducerStateTable, epoch: ProducerEpoch, first_seq: i32, last_seq: i32, at: i64) -> AppendCheck {
        let check = t.check(P, epoch, first_seq, last_seq);
        if check == AppendCheck::Append {
            t.record(P, epoch, batch(first_seq, last_seq, at));
        }
        check
    }

    #[test]
    fn in_order_batches_append_and_retries_return_their_offsets() {
        let mut t = ProducerStateTable::default();
        assert_eq!(append(&mut t, E0, 0, 2, 10), AppendCheck::Append);
        assert_eq!(append(&mut t, E0, 3, 3, 13), AppendCheck::Append);
        assert_eq!(
            append(&mut t, E0, 0, 2, 99),
            AppendCheck::Duplicate { first_offset: Offset(10), last_offset: Offset(12) }
        );
        assert_eq!(append(&mut t, E0, 5, 5, 14), AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber), "a gap");
        assert_eq!(append(&mut t, E0, 4, 4, 14), AppendCheck::Append);
    }

    #[test]
    fn five_batches_are_remembered_and_a_window_of_one_forgets_retries() {
        let mut t = ProducerStateTable::default();
        for seq in 0..6 {
            assert_eq!(append(&mut t, E0, seq, seq, i64::from(seq)), AppendCheck::Append);
        }
        assert!(matches!(t.check(P, E0, 1, 1), AppendCheck::Duplicate { .. }), "the fifth newest is still known");
        assert_eq!(t.check(P, E0, 0, 0), AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber), "the sixth is not");
        // With a window of one (the planted bug idempotence-window-1), a retry
        // of the batch before last is no longer known: it is refused as out of
        // order, and a client that recovers by bumping its epoch (KIP-360)
        // writes it again — the duplicate the plant is about.
        let mut one = ProducerStateTable::new(1);
        append(&mut one, E0, 0, 0, 0);
        append(&mut one, E0, 1, 1, 1);
        assert_eq!(one.check(P, E0, 0, 0), AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber));
    }

    #[test]
    fn epochs_fence_older_writers_and_restart_sequences() {
        let mut t = ProducerStateTable::default();
        append(&mut t, E1, 0, 4, 0);
        assert_eq!(t.check(P, E0, 5, 5), AppendCheck::Refuse(ErrorCode::InvalidProducerEpoch));
        assert_eq!(t.check(P, ProducerEpoch(2), 5, 5), AppendCheck::Refuse(ErrorCode::OutOfOrderSequenceNumber));
        assert_eq!(append(&mut t, ProducerEpoch(2), 0, 0, 5), AppendCheck::Append);
        assert_eq!(t.check(P, E1, 5, 5), AppendCheck::Refuse(ErrorCode::InvalidProducerEpoch), "now fenced");
    }

    #[test]
    fn an_unknown_producer_starts_at_zero() {
        let t = ProducerStateTable::default();
        assert_eq!(t.check(P, E0, 3, 3), AppendCheck::Refuse(ErrorCode::UnknownProducerId));
        assert_eq!(t.check(P, E0, 0, 3), AppendCheck::Append);
    }

    #[test]
    fn sequences_wrap_and_truncation_forgets_cut_batches() {
        let mut t = ProducerStateTable::default();
        t.record(P, E0, batch(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(t.check(P, E0, 0, 0), AppendCheck::Append, "after i32::MAX comes 0");
        append(&mut t, E0, 0, 0, 2);
        t.truncate_to(Offset(2));
        assert_eq!(t.check(P, E0, 0, 0), AppendCheck::Append, "the cut batch is new again");
        t.truncate_to(Offset(0));
        assert_eq!(t.producer_count(), 0);
    }
}
