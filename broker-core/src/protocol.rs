//! The wire protocol between clients and brokers, as closed enums.
//!
//! Messages travel inside the simulator as objects (no serialisation); their
//! shapes follow Kafka's requests closely enough that the names carry over.

use crate::types::{BrokerId, Offset, Record, StoredRecord, TopicId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Correlates a response with its request on one connection.
pub type CorrelationId = u64;

/// Errors as Kafka names them. Closed: a new one is added here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    UnknownTopicOrPartition,
    OffsetOutOfRange,
    NotLeaderOrFollower,
    RequestTimedOut,
    MessageTooLarge,
    InvalidRequest,
    NetworkException,
    NotEnoughReplicas,
    CorruptMessage,
    KafkaStorageError,
}

impl ErrorCode {
    /// Kafka's own name for the error.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::NetworkException => "NETWORK_EXCEPTION",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::CorruptMessage => "CORRUPT_MESSAGE",
            ErrorCode::KafkaStorageError => "KAFKA_STORAGE_ERROR",
        }
    }

    /// Whether a client may retry the request (Kafka's RetriableException family).
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::UnknownTopicOrPartition
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::RequestTimedOut
                | ErrorCode::NetworkException
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::CorruptMessage
                | ErrorCode::KafkaStorageError
        )
    }

    /// Whether a produce that got this error may still have been appended.
    /// Kafka's KAFKA-13574 discussion treats NOT_LEADER_OR_FOLLOWER and timeouts
    /// as indefinite; errors returned before the append are definite.
    pub fn is_indefinite_for_produce(self) -> bool {
        matches!(self, ErrorCode::NotLeaderOrFollower | ErrorCode::RequestTimedOut | ErrorCode::NetworkException)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many replicas must have a batch before the produce is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// acks=0: no response at all.
    None,
    /// acks=1: the leader appended.
    Leader,
    /// acks=all (-1): every in-sync replica has it (below the high watermark).
    All,
}

/// Which offset ListOffsets asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetSpec {
    Earliest,
    Latest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub tp: TopicPartition,
    pub fetch_offset: Offset,
    pub partition_max_bytes: u32,
}

/// A request from a client to a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// One batch per partition. `timeout_ms` bounds how long the broker may wait for acks.
    Produce {
        acks: Acks,
        timeout_ms: u64,
        batches: Vec<(TopicPartition, Vec<Record>)>,
    },
    /// Long-polls up to `max_wait_ms` until `min_bytes` are available.
    Fetch {
        max_wait_ms: u64,
        min_bytes: u32,
        max_bytes: u32,
        partitions: Vec<FetchPartition>,
    },
    ListOffsets {
        partitions: Vec<(TopicPartition, OffsetSpec)>,
    },
    /// `None` asks for every topic.
    Metadata {
        topics: Option<Vec<String>>,
    },
}

impl Request {
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Produce { .. } => RequestKind::Produce,
            Request::Fetch { .. } => RequestKind::Fetch,
            Request::ListOffsets { .. } => RequestKind::ListOffsets,
            Request::Metadata { .. } => RequestKind::Metadata,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RequestKind {
    Produce,
    Fetch,
    ListOffsets,
    Metadata,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub tp: TopicPartition,
    pub error: Option<ErrorCode>,
    /// Offset of the batch's first record when `error` is `None`.
    pub base_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub tp: TopicPartition,
    pub error: Option<ErrorCode>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub records: Vec<StoredRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub tp: TopicPartition,
    pub error: Option<ErrorCode>,
    pub offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub leader: Option<BrokerId>,
    pub replicas: Vec<BrokerId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: TopicId,
    pub error: Option<ErrorCode>,
    pub partitions: Vec<PartitionMetadata>,
}

/// A broker's answer. Each variant answers the request of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Produce { partitions: Vec<ProducePartitionResponse> },
    Fetch { partitions: Vec<FetchPartitionResponse> },
    ListOffsets { partitions: Vec<ListOffsetsPartitionResponse> },
    Metadata { brokers: Vec<BrokerId>, topics: Vec<TopicMetadata> },
}

impl Response {
    pub fn kind(&self) -> RequestKind {
        match self {
            Response::Produce { .. } => RequestKind::Produce,
            Response::Fetch { .. } => RequestKind::Fetch,
            Response::ListOffsets { .. } => RequestKind::ListOffsets,
            Response::Metadata { .. } => RequestKind::Metadata,
        }
    }
}

/// What crosses a client-broker connection, in either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Request { correlation_id: CorrelationId, request: Request },
    Response { correlation_id: CorrelationId, response: Response },
}
