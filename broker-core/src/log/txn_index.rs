//! The transactions a partition's markers ended: the aborted-transaction
//! index read_committed fetches filter with, and the recently completed
//! transactions that still hold the last stable offset back.
//!
//! Kafka persists the aborted transactions in a `.txnindex` file per
//! segment. ksim keeps them in memory only and rebuilds them whenever the
//! producer state is rebuilt (open, truncation): from the producer
//! snapshot at the log start (which carries each producer's open
//! transaction, so an ABORT after the log start gets the first offset of a
//! transaction that began before it) plus every batch the log holds, whose
//! kinds and producers memory already has. Nothing extra is read from the
//! segments, and nothing can disagree with them.
//!
//! A completed transaction still holds the last stable offset back while
//! its marker is at or above the high watermark (Kafka's
//! `unreplicatedTxns`): a new leader without the marker would find the
//! transaction open again, and the LSO must not move back.

use super::producer_state::CompletedTxn;
use crate::types::{AbortedTxn, Offset};
use std::collections::VecDeque;

/// Most aborted transactions a partition remembers; beyond, the oldest is
/// forgotten (its records would then read as committed). Retention drops
/// entries below the log start long before this in any run ksim makes.
pub const MAX_ABORTED_TXNS: usize = 100_000;

/// Most completed transactions remembered for the last stable offset: only
/// those whose marker is not yet below the high watermark matter, and a
/// leader's high watermark is never this many markers behind its log end
/// in any run ksim makes.
pub const MAX_RECENT_TXNS: usize = 1_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TxnIndex {
    /// Aborted transactions in marker order (so by `last_offset`), as Kafka's
    /// `.txnindex` files hold them.
    aborted: VecDeque<AbortedTxn>,
    /// The latest completed transactions, committed or aborted, in marker order.
    recent: VecDeque<CompletedTxn>,
}

impl TxnIndex {
    /// A marker ended `txn`, after every transaction already here.
    pub fn complete(&mut self, txn: CompletedTxn) {
        assert!(self.recent.back().is_none_or(|last| last.last_offset < txn.last_offset), "markers in log order");
        assert!(txn.first_offset < txn.last_offset);
        if !txn.commit {
            let (producer_id, first_offset, last_offset) = (txn.producer_id, txn.first_offset, txn.last_offset);
            self.aborted.push_back(AbortedTxn { producer_id, first_offset, last_offset });
            if self.aborted.len() > MAX_ABORTED_TXNS {
                self.aborted.pop_front();
            }
        }
        self.recent.push_back(txn);
        if self.recent.len() > MAX_RECENT_TXNS {
            self.recent.pop_front();
        }
    }

    /// Retention moved the log start to `log_start`: transactions whose
    /// marker went with the deleted segments are of no reader's concern.
    pub fn drop_below(&mut self, log_start: Offset) {
        while self.aborted.front().is_some_and(|t| t.last_offset < log_start) {
            self.aborted.pop_front();
        }
        while self.recent.front().is_some_and(|t| t.last_offset < log_start) {
            self.recent.pop_front();
        }
    }

    /// The aborted transactions that may have records in `[from, to)`:
    /// begun below `to` and ended at or after `from`, by first offset.
    pub fn aborted(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        // In marker order, so those ending before `from` are a prefix.
        let start = self.aborted.partition_point(|t| t.last_offset < from);
        let mut found: Vec<AbortedTxn> = self.aborted.range(start..).filter(|t| t.first_offset < to).copied().collect();
        found.sort_by_key(|t| (t.first_offset, t.producer_id));
        found
    }

    /// The first offset of the earliest completed transaction whose marker
    /// is at or above `high_watermark`.
    pub fn first_unreplicated(&self, high_watermark: Offset) -> Option<Offset> {
        let above = self.recent.iter().rev().take_while(|t| t.last_offset >= high_watermark);
        above.map(|t| t.first_offset).min()
    }

    /// Every aborted transaction remembered, in marker order.
    #[cfg(test)]
    pub fn all_aborted(&self) -> impl Iterator<Item = &AbortedTxn> {
        self.aborted.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ProducerId;

    fn txn(pid: i64, first: i64, last: i64, commit: bool) -> CompletedTxn {
        let (producer_id, first_offset, last_offset) = (ProducerId(pid), Offset(first), Offset(last));
        CompletedTxn { producer_id, first_offset, last_offset, commit }
    }

    fn aborted(index: &TxnIndex, from: i64, to: i64) -> Vec<(i64, i64, i64)> {
        let found = index.aborted(Offset(from), Offset(to));
        found.iter().map(|t| (t.producer_id.0, t.first_offset.0, t.last_offset.0)).collect()
    }

    #[test]
    fn aborted_ranges_overlap_the_fetch_and_come_by_first_offset() {
        let mut index = TxnIndex::default();
        // Producer 2's transaction spans producer 1's two.
        index.complete(txn(1, 0, 3, false));
        index.complete(txn(1, 4, 6, true));
        index.complete(txn(1, 7, 9, false));
        index.complete(txn(2, 2, 12, false));
        assert_eq!(aborted(&index, 0, 100), [(1, 0, 3), (2, 2, 12), (1, 7, 9)]);
        assert_eq!(aborted(&index, 4, 7), [(2, 2, 12)], "the committed one is not listed");
        assert_eq!(aborted(&index, 3, 4), [(1, 0, 3), (2, 2, 12)], "a marker at `from` counts");
        assert_eq!(aborted(&index, 10, 12), [(2, 2, 12)]);
        assert_eq!(aborted(&index, 13, 20), []);
        assert_eq!(aborted(&index, 0, 2), [(1, 0, 3)], "one beginning at `to` does not");
        index.drop_below(Offset(4));
        assert_eq!(aborted(&index, 0, 100), [(2, 2, 12), (1, 7, 9)]);
    }

    #[test]
    fn a_completed_transaction_holds_the_lso_until_the_hw_passes_its_marker() {
        let mut index = TxnIndex::default();
        index.complete(txn(1, 5, 8, true));
        index.complete(txn(2, 2, 10, false));
        assert_eq!(index.first_unreplicated(Offset(3)), Some(Offset(2)));
        assert_eq!(index.first_unreplicated(Offset(9)), Some(Offset(2)), "producer 2's marker is at 10");
        assert_eq!(index.first_unreplicated(Offset(10)), Some(Offset(2)));
        assert_eq!(index.first_unreplicated(Offset(11)), None);
    }

    #[test]
    fn both_lists_are_bounded() {
        let mut index = TxnIndex::default();
        for i in 0..MAX_ABORTED_TXNS as i64 + 5 {
            index.complete(txn(1, 2 * i, 2 * i + 1, false));
        }
        assert_eq!(index.aborted.len(), MAX_ABORTED_TXNS);
        assert_eq!(index.recent.len(), MAX_RECENT_TXNS);
        assert_eq!(index.aborted.front().map(|t| t.first_offset), Some(Offset(10)), "the oldest went");
    }
}
