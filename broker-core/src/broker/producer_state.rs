//! Idempotent producers' state on one partition (Kafka's
//! `ProducerStateManager`): for every producer id, its current epoch and its
//! last five batches' sequence ranges and offsets. A batch that repeats one
//! of those is a retry of a batch already in the log (answered with the
//! original offsets, not appended again); a batch that skips ahead is a gap
//! (OUT_OF_ORDER_SEQUENCE_NUMBER); an older epoch is fenced
//! (INVALID_PRODUCER_EPOCH); an unknown producer must start at sequence 0
//! (UNKNOWN_PRODUCER_ID).
//!
//! Groundwork for the exactly-once issue: not yet wired into the broker's
//! produce path, the batch codec or recovery (which must rebuild this table
//! from the log on followers and after restarts).

use crate::protocol::ErrorCode;
use crate::types::Offset;
use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer (Kafka's
/// `max.in.flight.requests.per.connection` bound for idempotence).
pub const RETAINED_BATCHES: usize = 5;

/// Most producers one partition tracks (ksim's bound).
pub const MAX_PRODUCERS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub i64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerEpoch(pub i16);

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

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    epoch: ProducerEpoch,
    /// Oldest first, at most `window` long.
    batches: VecDeque<BatchSeq>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: BTreeMap<ProducerId, Entry>,
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
        ProducerStateTable { producers: BTreeMap::new(), window }
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
        let entry = self.producers.entry(pid).or_insert(Entry { epoch, batches: VecDeque::new() });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        assert!(epoch == entry.epoch, "a batch of {pid:?} in epoch {epoch:?} recorded after epoch {:?}", entry.epoch);
        entry.batches.push_back(batch);
        while entry.batches.len() > self.window {
            entry.batches.pop_front();
        }
    }

    /// The log was cut at `offset` (a follower's truncation): batches at or
    /// past it are forgotten, and producers left with none are dropped.
    /// (Kafka rebuilds from a snapshot and the log; what a cut removes is
    /// all this table can lose.)
    pub fn truncate_to(&mut self, offset: Offset) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
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
