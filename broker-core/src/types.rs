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
}

impl StoredRecord {
    /// `record` as a log holding it at `offset`, written in `leader_epoch`.
    pub fn stored(record: Record, offset: Offset, leader_epoch: LeaderEpoch) -> StoredRecord {
        StoredRecord { offset, timestamp_ms: record.timestamp_ms, leader_epoch, key: record.key, value: record.value }
    }

    pub fn size_bytes(&self) -> usize {
        RECORD_OVERHEAD_BYTES + self.key.as_ref().map_or(0, |k| k.len()) + self.value.len()
    }
}
