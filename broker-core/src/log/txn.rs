//! The partition side of transactions: transactional batches, markers
//! (COMMIT / ABORT control batches, validated as Kafka's
//! `ProducerStateManager` does), the last stable offset and the
//! aborted-transaction index (`txn_index`).

use super::codec::{marker_key_value, BatchHeader};
use super::producer_snapshot::load_newest;
use super::txn_index::TxnIndex;
use super::{AppendInfo, LogError, PartitionLog, ProducerStateTable};
use crate::protocol::ErrorCode;
use crate::storage::Storage;
use crate::types::{
    AbortedTxn, BatchKind, LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, Record, TxnMarker,
};
use bytes::Bytes;

impl PartitionLog {
    /// [`PartitionLog::append_from`] for a transactional batch of
    /// `producer`: the first one of its transaction in this partition opens
    /// it here, which holds the last stable offset back until its marker.
    /// The caller has asked [`PartitionLog::check_producer`] first.
    pub fn append_transactional(
        &mut self,
        storage: &mut dyn Storage,
        now_ms: u64,
        leader_epoch: LeaderEpoch,
        producer: ProducerStamp,
        records: &[Record],
    ) -> Result<AppendInfo, LogError> {
        let header = BatchHeader {
            leader_epoch,
            timestamp_ms: now_ms,
            producer: Some(producer),
            kind: BatchKind::Transactional,
        };
        let info = self.append_batch(storage, header, records)?;
        assert!(self.has_open_txn(producer.id), "a transactional batch leaves its transaction open");
        Ok(info)
    }

    /// Whether a marker from `producer_id` in `epoch`, written by a
    /// coordinator in `marker.coordinator_epoch`, may be appended: not from
    /// an older producer epoch (INVALID_PRODUCER_EPOCH) nor an older
    /// coordinator than the producer's last marker here
    /// (TRANSACTION_COORDINATOR_FENCED); negative ids or epochs are
    /// INVALID_REQUEST. A producer with no transaction open here may get
    /// one (Kafka writes it; it ends nothing).
    pub fn check_marker(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        marker: TxnMarker,
    ) -> Result<(), ErrorCode> {
        self.producers.check_marker(producer_id, epoch, marker)
    }

    /// Appends a transaction marker (a control batch of one record) for
    /// `producer_id` in `epoch`, stamped `now_ms`, as leader in
    /// `leader_epoch`. It ends the producer's open transaction here, if
    /// any (an ABORT then enters the aborted-transaction index), and moves
    /// the producer to `epoch`: above its current one (KIP-890), its next
    /// batch starts at sequence 0. The caller has asked
    /// [`PartitionLog::check_marker`] first.
    pub fn append_marker(
        &mut self,
        storage: &mut dyn Storage,
        now_ms: u64,
        leader_epoch: LeaderEpoch,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        marker: TxnMarker,
    ) -> Result<AppendInfo, LogError> {
        assert_eq!(self.check_marker(producer_id, epoch, marker), Ok(()), "an unchecked marker");
        let (key, value) = marker_key_value(marker);
        let record = Record {
            key: Some(Bytes::copy_from_slice(&key)),
            value: Bytes::copy_from_slice(&value),
            timestamp_ms: now_ms,
        };
        let producer = Some(ProducerStamp { id: producer_id, epoch, base_sequence: -1 });
        let header = BatchHeader { leader_epoch, timestamp_ms: now_ms, producer, kind: BatchKind::Marker(marker) };
        let info = self.append_batch(storage, header, std::slice::from_ref(&record))?;
        assert!(!self.has_open_txn(producer_id) && info.base_offset == info.last_offset);
        Ok(info)
    }

    /// Every transaction open in this partition: (first offset, producer), earliest first.
    pub fn open_transactions(&self) -> Vec<(Offset, ProducerId)> {
        self.producers.open_txns().collect()
    }

    /// Whether `producer_id` has a transaction open in this partition.
    pub fn has_open_txn(&self, producer_id: ProducerId) -> bool {
        self.producers.has_open_txn(producer_id)
    }

    /// The last stable offset (LSO) for `high_watermark`: where
    /// read_committed readers stop. The high watermark, or the first offset
    /// of the earliest transaction not yet decided below it: one still open
    /// here, or one whose marker is at or above the high watermark (Kafka's
    /// first unstable offset: it counts unreplicated markers too). Never
    /// below the log start (Kafka clamps there too): a transaction whose
    /// first records retention deleted holds it at the log start.
    pub fn last_stable_offset(&self, high_watermark: Offset) -> Offset {
        let open = self.producers.first_open_txn_offset();
        let unreplicated = self.txns.first_unreplicated(high_watermark);
        let unstable = open.into_iter().chain(unreplicated).min();
        let lso = unstable.map_or(high_watermark, |first| first.max(self.log_start_offset()).min(high_watermark));
        assert!(lso <= high_watermark);
        lso
    }

    /// The aborted transactions that may have records in `[from, to)` (begun
    /// below `to`, their ABORT marker at or after `from`), by first offset:
    /// what a read_committed fetch of that range hands its reader to filter.
    pub fn aborted_txns(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        self.txns.aborted(from, to)
    }

    /// Rebuilds the transaction index from the producer snapshot at the log
    /// start (its open transactions; none without one: a log starting at 0,
    /// or reset) and every batch after it, as the appends built it.
    pub(super) fn rebuild_txn_index(&mut self, storage: &mut dyn Storage) {
        let (log_start, log_end) = (self.log_start_offset(), self.log_end);
        let seed = load_newest(storage, &self.dir, log_start, self.producer_window);
        let mut table = seed.map_or_else(|| ProducerStateTable::new(self.producer_window), |(_, table)| table);
        let mut index = TxnIndex::default();
        self.replay_batches_with(&mut table, log_start, log_end, |txn| index.complete(txn));
        self.txns = index;
    }
}
