//! The wire protocol between clients and brokers, as closed enums.
//!
//! Messages travel inside the simulator as objects (no serialisation); their
//! shapes follow Kafka's requests closely enough that the names carry over.

use crate::group::api::{GroupRequest, GroupResponse};
use crate::group::GroupId;
use crate::txn::TransactionalId;
use crate::types::{
    AbortedTxn, BrokerEpoch, BrokerId, LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, Record,
    StoredRecord, TopicId, TopicPartition,
};
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
    /// The request's leader epoch is older than the replica's (KIP-320).
    FencedLeaderEpoch,
    /// The request's leader epoch is newer than the replica knows (KIP-320).
    UnknownLeaderEpoch,
    /// acks=all: appended, but the ISR shrank below min.insync.replicas before it was committed.
    NotEnoughReplicasAfterAppend,
    /// A replica fetch or AlterPartition from a broker incarnation the controller has replaced (KIP-903).
    StaleBrokerEpoch,
    /// ListOffsets on a new leader whose high watermark has not yet reached
    /// the start of its epoch: the end of the committed log is not known yet.
    OffsetNotAvailable,
    // Consumer groups.
    /// This broker does not coordinate the group (it does not lead its
    /// `__consumer_offsets` partition).
    NotCoordinator,
    /// The group's coordinator cannot serve it now (a failed write, an unloaded group).
    CoordinatorNotAvailable,
    /// The coordinator is still replaying the group's partition.
    CoordinatorLoadInProgress,
    /// The request's generation is not the group's.
    IllegalGeneration,
    UnknownMemberId,
    /// The group is rebalancing: rejoin.
    RebalanceInProgress,
    /// KIP-394: rejoin with the member id in this answer.
    MemberIdRequired,
    /// Another member has taken over this static member's instance id (KIP-345).
    FencedInstanceId,
    /// The member supports none of the group's protocols.
    InconsistentGroupProtocol,
    /// The session timeout is outside the coordinator's bounds.
    InvalidSessionTimeout,
    GroupMaxSizeReached,
    /// OffsetFetch with `require_stable` (KIP-447): a transaction holding an
    /// offset commit for the partition is not decided yet; ask again.
    UnstableOffsetCommit,
    // Idempotent and transactional producers.
    /// A batch's sequence does not follow the producer's last one (a gap).
    OutOfOrderSequenceNumber,
    /// The batch's producer epoch is older than the producer's current one.
    InvalidProducerEpoch,
    /// The leader holds no state for the producer id and the sequence is not 0.
    UnknownProducerId,
    /// Another transition of the transactional id is in flight: retry.
    ConcurrentTransactions,
    /// The request does not fit the transaction's state (an EndTxn with no
    /// transaction open, a transactional write to a partition not added).
    InvalidTxnState,
    /// The producer id is not the transactional id's.
    InvalidProducerIdMapping,
    /// A newer epoch of the transactional id exists: this producer is a zombie.
    ProducerFenced,
    /// The transaction timeout is above `transaction.max.timeout.ms`.
    InvalidTransactionTimeout,
    /// A transaction marker from a coordinator older than the last one that
    /// wrote a marker for the producer here: the coordinator was deposed.
    TransactionCoordinatorFenced,
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
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ErrorCode::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::MemberIdRequired => "MEMBER_ID_REQUIRED",
            ErrorCode::FencedInstanceId => "FENCED_INSTANCE_ID",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            ErrorCode::UnstableOffsetCommit => "UNSTABLE_OFFSET_COMMIT",
            ErrorCode::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            ErrorCode::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            ErrorCode::InvalidTxnState => "INVALID_TXN_STATE",
            ErrorCode::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            ErrorCode::ProducerFenced => "PRODUCER_FENCED",
            ErrorCode::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            ErrorCode::TransactionCoordinatorFenced => "TRANSACTION_COORDINATOR_FENCED",
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
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::OffsetNotAvailable
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::ConcurrentTransactions
                | ErrorCode::UnstableOffsetCommit
        )
    }

    /// Whether the client's metadata is stale: refresh it before retrying.
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
        )
    }

    /// Whether a produce that got this error may still have been appended.
    /// Kafka's KAFKA-13574 discussion treats NOT_LEADER_OR_FOLLOWER and timeouts
    /// as indefinite; errors returned before the append are definite.
    pub fn is_indefinite_for_produce(self) -> bool {
        // NOT_ENOUGH_REPLICAS_AFTER_APPEND: the batch is in the leader's log and
        // may yet be committed (or lost with the leader).
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::RequestTimedOut
                | ErrorCode::NetworkException
                | ErrorCode::NotEnoughReplicasAfterAppend
        )
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

/// One partition of a ListOffsets request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub tp: TopicPartition,
    pub spec: OffsetSpec,
    /// The leader epoch the sender believes current (KIP-320), checked as a
    /// fetch's is; `LeaderEpoch::NONE` skips the check.
    pub current_leader_epoch: LeaderEpoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub tp: TopicPartition,
    pub fetch_offset: Offset,
    pub partition_max_bytes: u32,
    /// The leader epoch the sender believes current (KIP-320); `LeaderEpoch::NONE`
    /// skips the check, as clients before KIP-320 did.
    pub current_leader_epoch: LeaderEpoch,
}

/// Who sends a replica fetch: a follower broker, in its current incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaId {
    pub broker: BrokerId,
    pub broker_epoch: BrokerEpoch,
}

/// One partition of an OffsetsForLeaderEpoch request: "where does `leader_epoch` end in your log?"
/// Followers ask it to find where to truncate; consumers to validate their
/// position after a leader change (KIP-320).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochQuery {
    pub tp: TopicPartition,
    pub current_leader_epoch: LeaderEpoch,
    pub leader_epoch: LeaderEpoch,
}

/// The answer: the largest epoch ≤ the one asked and its end offset;
/// `None` when the leader knows no epoch that old (Kafka's UNDEFINED_EPOCH).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    pub tp: TopicPartition,
    pub error: Option<ErrorCode>,
    pub end: Option<(LeaderEpoch, Offset)>,
}

/// One partition's batch in a Produce request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceBatch {
    pub tp: TopicPartition,
    pub records: Vec<Record>,
    /// Set by an idempotent producer: its id, epoch and the batch's base sequence.
    pub producer: Option<ProducerStamp>,
    /// Set by a transactional producer: the batch belongs to its open
    /// transaction (and carries `producer`).
    pub transactional_id: Option<TransactionalId>,
}

impl ProduceBatch {
    /// A plain (not idempotent) producer's batch.
    pub fn plain(tp: TopicPartition, records: Vec<Record>) -> ProduceBatch {
        ProduceBatch { tp, records, producer: None, transactional_id: None }
    }
}

/// Which records a consumer fetch may return (`isolation.level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Isolation {
    /// Everything below the high watermark (Kafka's default), including
    /// open and aborted transactions' records.
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions in
    /// range listed so the consumer can skip their records.
    ReadCommitted,
}

/// One transaction's markers for WriteTxnMarkers: COMMIT or ABORT of
/// `producer_id`'s transaction, written at `epoch`, into each of `partitions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerRequest {
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    pub marker: crate::types::TxnMarker,
    pub partitions: Vec<TopicPartition>,
}

/// A request from a client to a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// One batch per partition. `timeout_ms` bounds how long the broker may wait for acks.
    Produce { acks: Acks, timeout_ms: u64, batches: Vec<ProduceBatch> },
    /// An idempotent producer asks for a producer id: any broker answers
    /// with a fresh one at epoch 0 from its block (Kafka answers a
    /// non-transactional InitProducerId the same way). The producer bumps
    /// its epoch itself to restart its sequences (KIP-360), and asks again
    /// only when the epoch would overflow.
    InitProducerId,
    /// Long-polls up to `max_wait_ms` until `min_bytes` are available.
    Fetch {
        /// `Some` for a follower's replica fetch; `None` for a consumer.
        replica: Option<ReplicaId>,
        /// A consumer's `isolation.level` (replica fetches read everything).
        isolation: Isolation,
        max_wait_ms: u64,
        min_bytes: u32,
        max_bytes: u32,
        partitions: Vec<FetchPartition>,
    },
    /// A follower asks where its epochs end in the leader's log (KIP-101/279);
    /// a consumer asks where the epoch of its last consumed record ends (KIP-320).
    OffsetsForLeaderEpoch { partitions: Vec<EpochQuery> },
    /// Broker ↔ controller traffic (registration, heartbeats, AlterPartition).
    Controller(crate::controller::ControllerRequest),
    ListOffsets {
        /// The consumer's `isolation.level` (ListOffsets v2+): the latest
        /// offset a read_committed consumer may start at is the last stable
        /// offset, not the high watermark.
        isolation: Isolation,
        partitions: Vec<ListOffsetsPartition>,
    },
    /// `None` asks for every topic.
    Metadata { topics: Option<Vec<String>> },
    /// Which broker coordinates `group` (the leader of its `__consumer_offsets` partition).
    FindCoordinator { group: GroupId },
    /// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch.
    Group(GroupRequest),
    /// Which broker coordinates `transactional_id` (the leader of its
    /// `__transaction_state` partition); answered with `FindCoordinator`.
    FindTxnCoordinator { transactional_id: TransactionalId },
    /// InitProducerId (transactional), AddPartitionsToTxn, AddOffsetsToTxn,
    /// EndTxn, and KIP-890's verification.
    Txn(crate::txn::api::TxnRequest),
    /// A transaction coordinator's markers, to the leader of each partition.
    WriteTxnMarkers { markers: Vec<MarkerRequest> },
}

impl Request {
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Produce { .. } => RequestKind::Produce,
            Request::InitProducerId => RequestKind::InitProducerId,
            Request::Fetch { replica: None, .. } => RequestKind::Fetch,
            Request::Fetch { replica: Some(_), .. } => RequestKind::ReplicaFetch,
            Request::OffsetsForLeaderEpoch { .. } => RequestKind::OffsetsForLeaderEpoch,
            Request::Controller(_) => RequestKind::Controller,
            Request::ListOffsets { .. } => RequestKind::ListOffsets,
            Request::Metadata { .. } => RequestKind::Metadata,
            Request::FindCoordinator { .. } => RequestKind::FindCoordinator,
            Request::Group(_) => RequestKind::Group,
            Request::FindTxnCoordinator { .. } => RequestKind::FindCoordinator,
            Request::Txn(_) => RequestKind::Txn,
            Request::WriteTxnMarkers { .. } => RequestKind::WriteTxnMarkers,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RequestKind {
    Produce,
    InitProducerId,
    Fetch,
    ReplicaFetch,
    OffsetsForLeaderEpoch,
    Controller,
    ListOffsets,
    Metadata,
    FindCoordinator,
    Group,
    Txn,
    WriteTxnMarkers,
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
    /// The leader's log end (for replica fetches; followers truncate to it
    /// when they are ahead and do not use leader epochs).
    pub log_end_offset: Offset,
    /// The first offset of the earliest open transaction, or the HW if none
    /// (read_committed fetches stop here).
    pub last_stable_offset: Offset,
    /// For a read_committed fetch: the aborted transactions whose records
    /// may be among `records` (the consumer skips them).
    pub aborted: Vec<AbortedTxn>,
    pub records: Vec<StoredRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub tp: TopicPartition,
    pub error: Option<ErrorCode>,
    pub offset: Offset,
    /// The answering leader's epoch (`NONE` from a non-leader), as Kafka's
    /// ListOffsets v4+ carries it: of two brokers that both believe they
    /// lead, the higher epoch is the current leader.
    pub leader_epoch: LeaderEpoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub leader: Option<BrokerId>,
    pub leader_epoch: LeaderEpoch,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
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
    Produce {
        partitions: Vec<ProducePartitionResponse>,
    },
    /// The producer id and epoch to write with, or why not.
    InitProducerId {
        result: Result<(ProducerId, ProducerEpoch), ErrorCode>,
    },
    Fetch {
        partitions: Vec<FetchPartitionResponse>,
    },
    ListOffsets {
        partitions: Vec<ListOffsetsPartitionResponse>,
    },
    Metadata {
        brokers: Vec<BrokerId>,
        topics: Vec<TopicMetadata>,
    },
    OffsetsForLeaderEpoch {
        partitions: Vec<EpochEnd>,
    },
    Controller(crate::controller::ControllerResponse),
    FindCoordinator {
        error: Option<ErrorCode>,
        coordinator: Option<BrokerId>,
    },
    Group(GroupResponse),
    Txn(crate::txn::api::TxnResponse),
    /// Per marker request, per partition: written (`None`) or why not.
    WriteTxnMarkers {
        results: Vec<(ProducerId, TopicPartition, Option<ErrorCode>)>,
    },
}

impl Response {
    pub fn kind(&self) -> RequestKind {
        match self {
            Response::Produce { .. } => RequestKind::Produce,
            Response::InitProducerId { .. } => RequestKind::InitProducerId,
            Response::Fetch { .. } => RequestKind::Fetch,
            Response::OffsetsForLeaderEpoch { .. } => RequestKind::OffsetsForLeaderEpoch,
            Response::Controller(_) => RequestKind::Controller,
            Response::ListOffsets { .. } => RequestKind::ListOffsets,
            Response::Metadata { .. } => RequestKind::Metadata,
            Response::FindCoordinator { .. } => RequestKind::FindCoordinator,
            Response::Group(_) => RequestKind::Group,
            Response::Txn(_) => RequestKind::Txn,
            Response::WriteTxnMarkers { .. } => RequestKind::WriteTxnMarkers,
        }
    }
}

/// Whom a node sends its own requests to: a broker, or the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Broker(BrokerId),
    Controller,
}

impl From<BrokerId> for Peer {
    fn from(broker: BrokerId) -> Peer {
        Peer::Broker(broker)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Broker(b) => write!(f, "{b}"),
            Peer::Controller => f.write_str("controller"),
        }
    }
}

/// What crosses a client-broker connection, in either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Request { correlation_id: CorrelationId, request: Request },
    Response { correlation_id: CorrelationId, response: Response },
}
