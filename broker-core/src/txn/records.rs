//! A transactional id's state as a record of `__transaction_state`, in the
//! shape of Kafka's `TransactionLog`: the key is the transactional id, the
//! value the id's metadata, and the latest record of a key wins when a new
//! coordinator replays the partition. Big-endian, Kafka's string and list
//! encodings (shared with the group records); topics are ksim's numeric ids.

use super::{TransactionalId, TxnState};
use crate::group::records::{timestamp, Reader, RecordError, Writer};
use crate::types::{ProducerEpoch, ProducerId, Record, StoredRecord, TopicPartition};
use bytes::Bytes;
use std::collections::BTreeSet;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 1;

/// Most partitions one transaction may span (ksim's bound).
pub const MAX_TXN_PARTITIONS: usize = 10_000;

/// Everything the coordinator keeps about one transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: ProducerId,
    /// The epoch the producer writes with now.
    pub epoch: ProducerEpoch,
    /// The epoch of the transaction that ended last (KIP-890 part 2: an
    /// EndTxn retried with it is answered as before), or -1.
    pub last_epoch: ProducerEpoch,
    pub timeout_ms: u64,
    pub state: TxnState,
    /// The partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the open transaction started (its timeout counts from here).
    pub start_ms: u64,
}

fn state_code(state: TxnState) -> i8 {
    match state {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
    }
}

fn state_of(code: i8) -> Result<TxnState, RecordError> {
    Ok(match code {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        _ => return Err(RecordError("unknown transaction state")),
    })
}

impl TxnMetadata {
    /// The record that sets `id` to this state, stamped `now_ms`.
    pub fn encode(&self, id: &TransactionalId, now_ms: u64) -> Record {
        assert!(self.partitions.len() <= MAX_TXN_PARTITIONS, "a transaction of {} partitions", self.partitions.len());
        let mut key = Writer::default();
        key.i16(KEY_VERSION);
        key.string(&id.0);
        let mut value = Writer::default();
        value.i16(VALUE_VERSION);
        value.i64(self.producer_id.0);
        value.i16(self.epoch.0);
        value.i16(self.last_epoch.0);
        value.i64(timestamp(self.timeout_ms));
        value.0.push(state_code(self.state) as u8);
        let partitions: Vec<TopicPartition> = self.partitions.iter().copied().collect();
        value.partitions(&partitions);
        value.i64(timestamp(self.start_ms));
        value.i64(timestamp(now_ms)); // last update
        Record { key: Some(Bytes::from(key.0)), value: Bytes::from(value.0), timestamp_ms: now_ms }
    }

    /// Reads a record of `__transaction_state` back.
    pub fn decode(record: &StoredRecord) -> Result<(TransactionalId, TxnMetadata), RecordError> {
        let key = record.key.as_deref().ok_or(RecordError("a record without a key"))?;
        let mut key = Reader(key);
        if key.i16()? != KEY_VERSION {
            return Err(RecordError("unknown transaction key version"));
        }
        let id = TransactionalId(key.string()?);
        key.end()?;
        let mut value = Reader(&record.value);
        if value.i16()? != VALUE_VERSION {
            return Err(RecordError("unknown transaction value version"));
        }
        let producer_id = ProducerId(value.i64()?);
        let epoch = ProducerEpoch(value.i16()?);
        let last_epoch = ProducerEpoch(value.i16()?);
        let timeout_ms = u64::try_from(value.i64()?).map_err(|_| RecordError("negative timeout"))?;
        let state = state_of(value.take(1)?[0] as i8)?;
        let partitions: BTreeSet<TopicPartition> = value.partitions()?.into_iter().collect();
        let start_ms = u64::try_from(value.i64()?).map_err(|_| RecordError("negative start time"))?;
        value.i64()?;
        value.end()?;
        if producer_id.0 < 0 || epoch.0 < 0 || partitions.len() > MAX_TXN_PARTITIONS {
            return Err(RecordError("bad producer id, epoch or partitions"));
        }
        Ok((id, TxnMetadata { producer_id, epoch, last_epoch, timeout_ms, state, partitions, start_ms }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LeaderEpoch, Offset, TopicId};

    #[test]
    fn metadata_round_trips_and_garbage_is_refused() {
        let meta = TxnMetadata {
            producer_id: ProducerId(4_001),
            epoch: ProducerEpoch(7),
            last_epoch: ProducerEpoch(6),
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [TopicPartition::new(TopicId(0), 3), TopicPartition::new(TopicId(2), 0)].into(),
            start_ms: 12_345,
        };
        let id = TransactionalId::new("app-1");
        let record = meta.encode(&id, 99);
        let stored = StoredRecord::stored(record, Offset(0), LeaderEpoch(0));
        assert_eq!(TxnMetadata::decode(&stored), Ok((id, meta)));
        let short = StoredRecord { value: stored.value.slice(..stored.value.len() - 3), ..stored.clone() };
        assert!(TxnMetadata::decode(&short).is_err());
        let keyless = StoredRecord { key: None, ..stored };
        assert!(TxnMetadata::decode(&keyless).is_err());
    }
}
