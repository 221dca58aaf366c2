//! Small newtypes shared by every state machine. Units live in names.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A topic name as clients and the history carry it: shared, so copying one
/// per record is a reference-count increment rather than an allocation.
pub type TopicName = std::sync::Arc<str>;

/// A record's position in a partition's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Offset(pub i64);

impl Offset {
    pub const ZERO: Offset = Offset(0);
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A broker's id in the cluster (`broker-N` in the simulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BrokerId(pub u32);

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker-{}", self.0)
    }
}

/// A partition's leader epoch: bumped by the controller at every leader
/// change; every batch carries the epoch it was written in. Kafka's -1
/// ("no epoch") is `LeaderEpoch::NONE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    pub const NONE: LeaderEpoch = LeaderEpoch(-1);
    pub const FIRST: LeaderEpoch = LeaderEpoch(0);
    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// A broker's registration epoch: fresh (strictly larger) every time the
/// broker registers with the controller, i.e. once per process start.
/// Requests carrying a stale one are rejected (KIP-903).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BrokerEpoch(pub u64);

/// A topic's numeric id (its index in the cluster's topic list; Kafka's KIP-516 topic id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub u16);

/// One partition of one topic. `Copy`, so hot paths never clone topic names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: TopicId,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: TopicId, partition: u32) -> Self {
        TopicPartition { topic, partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}-{}", self.topic.0, self.partition)
    }
}

/// An idempotent producer's id (Kafka's PID), handed out by InitProducerId
/// from blocks the controller allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerId(pub i64);

impl fmt::Display for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid{}", self.0)
    }
}

/// A producer id's epoch: bumped to fence an older incarnation, or by the
/// producer itself to restart its sequences (KIP-360).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerEpoch(pub i16);

impl fmt::Display for ProducerEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pe{}", self.0)
    }
}

/// What an idempotent producer writes into a batch's header: who it is and
/// the sequence number of the batch's first record (record `i` of the batch
/// has sequence `base_sequence + i`, wrapping after `i32::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerStamp {
    pub id: ProducerId,
    pub epoch: ProducerEpoch,
    pub base_sequence: i32,
}

impl ProducerStamp {
    /// The sequence of the last of `count` records.
    pub fn last_sequence(&self, count: usize) -> i32 {
        assert!(count >= 1);
        ((i64::from(self.base_sequence) + count as i64 - 1) % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// A transaction marker's content (Kafka's control record: COMMIT or ABORT,
/// and the epoch of the coordinator that wrote it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxnMarker {
    pub commit: bool,
    /// The leader epoch of the `__transaction_state` partition its
    /// coordinator led: a deposed coordinator's markers are refused.
    pub coordinator_epoch: LeaderEpoch,
}

/// An aborted transaction of one producer in one partition: its records
/// from `first_offset` up to its ABORT marker at `last_offset` are to be
/// skipped by read_committed readers (Kafka's aborted-transaction index entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

/// What kind of batch a record belongs to (Kafka's batch attributes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatchKind {
    /// An ordinary batch, from a plain or an idempotent producer.
    #[default]
    Data,
    /// Written inside a transaction: a read_committed reader sees it only
    /// once its producer's COMMIT marker follows it, and never after ABORT.
    Transactional,
    /// A transaction marker (a control batch of one record) ending its
    /// producer's transaction in this partition. Never handed to applications.
    Marker(TxnMarker),
}

/// A record as a producer hands it over: key, value and the producer's timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub timestamp_ms: u64,
}

impl Record {
    /// Bytes this record occupies for size limits (batch size, fetch max bytes).
    /// Counts key and value plus a fixed per-record overhead, like Kafka's record framing.
    pub fn size_bytes(&self) -> usize {
        RECORD_OVERHEAD_BYTES + self.key.as_ref().map_or(0, |k| k.len()) + self.value.len()
    }
}

/// Per-record framing overhead used in size accounting (length, attributes, deltas).
pub const RECORD_OVERHEAD_BYTES: usize = 16;

/// A record read back from a log, with the offset the log gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: Offset,
    pub timestamp_ms: u64,
    /// The leader epoch of the batch that holds it (the epoch it was written in).
    pub leader_epoch: LeaderEpoch,
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// The idempotent producer of its batch (`None`: a plain producer). The
    /// same on every record of one batch, so a follower copying records
    /// rebuilds the leader's batch boundaries from it.
    pub producer: Option<ProducerStamp>,
    /// The kind of its batch (the same on every record of one batch).
    pub kind: BatchKind,
}

impl StoredRecord {
    /// `record` as a log holding it at `offset`, written in `leader_epoch`
    /// by a plain (not idempotent) producer.
    pub fn stored(record: Record, offset: Offset, leader_epoch: LeaderEpoch) -> StoredRecord {
        StoredRecord {
            offset,
            timestamp_ms: record.timestamp_ms,
            leader_epoch,
            key: record.key,
            value: record.value,
            producer: None,
            kind: BatchKind::Data,
        }
    }

    pub fn size_bytes(&self) -> usize {
        RECORD_OVERHEAD_BYTES + self.key.as_ref().map_or(0, |k| k.len()) + self.value.len()
    }
}
