//! Which fetched records the application sees (Kafka's
//! `CompletedFetch.nextFetchedRecord`): never a transaction marker, and
//! under read_committed never a record of an aborted transaction.
//!
//! A read_committed fetch stops at the last stable offset, so every
//! transaction that wrote into the fetched range has ended there; the broker
//! lists the aborted ones (producer, first offset, ABORT marker offset). The
//! records of a committed transaction need no list: they pass as they are.

use crate::protocol::Isolation;
use crate::types::{AbortedTxn, BatchKind, Offset, ProducerId, StoredRecord};
use std::collections::{BTreeSet, VecDeque};

/// The filter over one fetch answer's records, fed in offset order.
pub(super) struct TxnFilter {
    read_committed: bool,
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producers whose aborted transaction the walk is inside of.
    aborted: BTreeSet<ProducerId>,
}

impl TxnFilter {
    /// A filter for a fetch made under `isolation` that listed `aborted`
    /// (read_uncommitted ignores the list: it sees aborted records too).
    pub(super) fn new(isolation: Isolation, mut aborted: Vec<AbortedTxn>) -> TxnFilter {
        let read_committed = isolation == Isolation::ReadCommitted;
        if !read_committed {
            aborted.clear();
        }
        // Brokers list aborted transactions in their index's order, which is
        // by ABORT marker; a transaction starts being skipped at its first
        // offset, so the walk needs them by that (Kafka's consumer keeps a
        // priority queue).
        aborted.sort_by_key(|a| (a.first_offset, a.producer_id));
        TxnFilter { read_committed, pending: aborted.into(), aborted: BTreeSet::new() }
    }

    /// Whether the application sees `record`, the next record of the fetch.
    pub(super) fn passes(&mut self, record: &StoredRecord) -> bool {
        if self.read_committed {
            self.reach(record.offset);
        }
        match record.kind {
            BatchKind::Data => true,
            BatchKind::Transactional => !self.read_committed || !self.aborted.contains(&producer_of(record)),
            BatchKind::Marker(marker) => {
                // The ABORT marker ends its producer's aborted transaction:
                // what that producer writes next is a new transaction.
                if self.read_committed && !marker.commit {
                    self.aborted.remove(&producer_of(record));
                }
                false
            }
        }
    }

    /// Marks aborted the producers whose aborted transaction has begun by `offset`.
    fn reach(&mut self, offset: Offset) {
        while let Some(txn) = self.pending.front().filter(|t| t.first_offset <= offset) {
            assert!(txn.first_offset <= txn.last_offset, "aborted transaction {txn:?} ends before it begins");
            self.aborted.insert(txn.producer_id);
            self.pending.pop_front();
        }
    }
}

/// The producer of a transactional record or marker: its batch always has one.
fn producer_of(record: &StoredRecord) -> ProducerId {
    let stamp =
        record.producer.unwrap_or_else(|| panic!("{:?} record at {} without a producer", record.kind, record.offset));
    stamp.id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LeaderEpoch, ProducerEpoch, ProducerStamp, TxnMarker};
    use bytes::Bytes;

    fn record(offset: i64, producer: Option<i64>, kind: BatchKind) -> StoredRecord {
        StoredRecord {
            offset: Offset(offset),
            timestamp_ms: 0,
            leader_epoch: LeaderEpoch::FIRST,
            key: None,
            value: Bytes::new(),
            producer: producer.map(|id| ProducerStamp {
                id: ProducerId(id),
                epoch: ProducerEpoch(0),
                base_sequence: 0,
            }),
            kind,
        }
    }

    fn marker(commit: bool) -> BatchKind {
        BatchKind::Marker(TxnMarker { commit, coordinator_epoch: LeaderEpoch::FIRST })
    }

    fn aborted(producer: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn { producer_id: ProducerId(producer), first_offset: Offset(first), last_offset: Offset(last) }
    }

    /// Offsets that pass, out of a log of (producer, kind) at offsets 0, 1, ...
    fn passing(isolation: Isolation, listed: Vec<AbortedTxn>, log: &[(Option<i64>, BatchKind)]) -> Vec<i64> {
        let mut filter = TxnFilter::new(isolation, listed);
        let records = log.iter().enumerate().map(|(i, &(p, kind))| record(i as i64, p, kind));
        records.filter(|r| filter.passes(r)).map(|r| r.offset.0).collect()
    }

    #[test]
    fn aborted_transactions_are_skipped_from_their_first_offset_to_their_marker() {
        let t = BatchKind::Transactional;
        // p1 aborts 0..4 around p2's committed 1..3; p1 then commits 5..6;
        // the list comes in marker order (p1's abort is listed after p2's commit).
        let log = [
            (Some(1), t),
            (Some(2), t),
            (None, BatchKind::Data),
            (Some(2), marker(true)),
            (Some(1), marker(false)),
            (Some(1), t),
            (Some(1), marker(true)),
        ];
        let list = vec![aborted(1, 0, 4)];
        assert_eq!(passing(Isolation::ReadCommitted, list.clone(), &log), vec![1, 2, 5]);
        assert_eq!(passing(Isolation::ReadUncommitted, list, &log), vec![0, 1, 2, 5]);
    }

    #[test]
    fn the_list_is_walked_by_first_offset_whatever_its_order() {
        let t = BatchKind::Transactional;
        // p1's transaction begins first but ends last.
        let log = [(Some(1), t), (Some(2), t), (Some(2), marker(false)), (Some(3), t), (Some(1), marker(false))];
        let list = vec![aborted(2, 1, 2), aborted(1, 0, 4)];
        assert_eq!(passing(Isolation::ReadCommitted, list, &log), vec![3]);
    }

    #[test]
    fn a_transaction_begun_before_the_fetch_is_skipped_from_its_first_record() {
        let t = BatchKind::Transactional;
        // The fetch starts at 10, inside p1's transaction that began at 4.
        let mut filter = TxnFilter::new(Isolation::ReadCommitted, vec![aborted(1, 4, 11), aborted(1, 13, 14)]);
        let fetched = [
            record(10, Some(1), t),
            record(11, Some(1), marker(false)),
            record(12, None, BatchKind::Data),
            record(13, Some(1), t),
            record(14, Some(1), marker(false)),
            record(15, Some(1), BatchKind::Data),
        ];
        let got: Vec<i64> = fetched.iter().filter(|r| filter.passes(r)).map(|r| r.offset.0).collect();
        assert_eq!(got, vec![12, 15]);
    }
}
