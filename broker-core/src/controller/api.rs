//! What goes into the controller and what comes out: config, requests,
//! responses, errors and events. Closed enums, so the simulator has one place
//! to log, count and replay controller traffic.

use super::image::{MetadataImage, PartitionState};
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, ProducerId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Controller settings. Defaults are Kafka's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// A broker whose last heartbeat is this old is fenced (`broker.session.timeout.ms`).
    pub session_timeout_ms: u64,
    /// Whether an election may pick a replica outside the ISR when no ISR member
    /// is alive (`unclean.leader.election.enable`). Such an election may lose
    /// committed records.
    pub unclean_leader_election: bool,
    /// `min.insync.replicas`. The controller does not enforce it (leaders do, on
    /// acks=all produce); it hands out the effective value, min(this, RF).
    pub min_insync_replicas: u32,
    /// Planted bug `unclean-always`: elections may pick any unfenced replica even
    /// when unclean election is disabled — when set, the election ignores the ISR
    /// and picks the first unfenced replica other than the old leader.
    /// A plain switch here because the controller's planted bugs are not yet in
    /// `plant::Plant`; the simulator maps the plant onto this field.
    pub unclean_always: bool,
    /// Planted bug `last-replica-standing`: a broker registering after an
    /// unclean shutdown is trusted like any other (no KIP-966 detection), so
    /// the last ISR member is re-elected after losing unflushed records.
    pub trust_unclean_restarts: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            session_timeout_ms: 9_000,
            unclean_leader_election: false,
            min_insync_replicas: 1,
            unclean_always: false,
            trust_unclean_restarts: false,
        }
    }
}

/// A request to the controller. Every one is answered synchronously by
/// [`super::Controller::handle`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A broker process starts: it gets a fresh broker epoch and starts fenced.
    /// `clean_shutdown`: its previous process shut down cleanly (it found its
    /// clean-shutdown marker), so it lost nothing it had written.
    Register { broker: BrokerId, clean_shutdown: bool },
    /// Keeps the session alive; the first one of a registration unfences it.
    /// `known_version` is the image version the broker holds (0: none).
    Heartbeat { broker: BrokerId, broker_epoch: BrokerEpoch, known_version: u64 },
    /// The leader proposes a new ISR (Kafka's AlterPartition). `new_isr` carries
    /// each member's broker epoch as the leader knows it (KIP-903).
    AlterPartition {
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        partition_epoch: u32,
        new_isr: Vec<(BrokerId, BrokerEpoch)>,
    },
    /// A broker asks for a block of producer ids to hand to idempotent
    /// producers (KIP-730).
    AllocateProducerIds { broker: BrokerId, broker_epoch: BrokerEpoch },
}

/// Producer ids a broker may hand out: `first..first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub first: ProducerId,
    pub count: u32,
}

/// Producer ids per block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: u32 = 1000;

/// The answer to one [`ControllerRequest`], of the same kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    Register(Result<BrokerEpoch, ControllerError>),
    /// `Ok(Some(image))` when the broker's known version is not the current one.
    Heartbeat(Result<Option<MetadataImage>, ControllerError>),
    /// The partition's state after the change.
    AlterPartition(Result<PartitionState, ControllerError>),
    AllocateProducerIds(Result<ProducerIdBlock, ControllerError>),
}

impl ControllerResponse {
    pub fn error(&self) -> Option<ControllerError> {
        match self {
            ControllerResponse::Register(r) => r.as_ref().err().copied(),
            ControllerResponse::Heartbeat(r) => r.as_ref().err().copied(),
            ControllerResponse::AlterPartition(r) => r.as_ref().err().copied(),
            ControllerResponse::AllocateProducerIds(r) => r.as_ref().err().copied(),
        }
    }
}

/// Why the controller rejected a request. Variants are Kafka's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ControllerError {
    /// The request carries a broker epoch that is not the broker's current one.
    StaleBrokerEpoch,
    /// The broker has never registered.
    BrokerNotRegistered,
    /// The requester's leader epoch is older than the partition's.
    FencedLeaderEpoch,
    /// The requester's partition epoch is older than the partition's.
    InvalidUpdateVersion,
    /// The requester is not the partition's current leader. Kafka answers
    /// INVALID_REQUEST here; ksim names the cause so logs and checkers can tell.
    NotLeader,
    /// The new ISR adds a replica that is unregistered, fenced, or whose broker
    /// epoch is not the one given (KIP-903).
    IneligibleReplica,
    /// The partition does not exist.
    UnknownTopicOrPartition,
    /// The requester has seen a newer leader or partition epoch than this
    /// controller holds: the controller lost state (Kafka: a stale controller).
    NotController,
    /// Malformed: an ISR without the leader, with non-replicas or duplicates;
    /// a registration for a broker that is not in the cluster layout.
    InvalidRequest,
}

impl ControllerError {
    /// Kafka's own name for the error.
    pub fn name(self) -> &'static str {
        match self {
            ControllerError::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ControllerError::BrokerNotRegistered => "BROKER_ID_NOT_REGISTERED",
            ControllerError::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ControllerError::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            ControllerError::NotLeader => "NOT_LEADER_OR_FOLLOWER",
            ControllerError::IneligibleReplica => "INELIGIBLE_REPLICA",
            ControllerError::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ControllerError::NotController => "NOT_CONTROLLER",
            ControllerError::InvalidRequest => "INVALID_REQUEST",
        }
    }
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened inside the controller, in order, for the simulator's log and
/// the checkers. Drained with [`super::Controller::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerEvent {
    BrokerRegistered {
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    /// Session expiry, or a re-registration that declared the old incarnation dead.
    BrokerFenced {
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    BrokerUnfenced {
        broker: BrokerId,
        broker_epoch: BrokerEpoch,
    },
    /// The leader changed (to `None`: the partition is offline). `clean` is
    /// false when the new leader was not in the ISR, which may lose records.
    LeaderElected {
        tp: TopicPartition,
        leader: Option<BrokerId>,
        leader_epoch: LeaderEpoch,
        partition_epoch: u32,
        isr: Vec<BrokerId>,
        clean: bool,
    },
    /// The ISR changed under the same leader.
    IsrChanged {
        tp: TopicPartition,
        isr: Vec<BrokerId>,
        partition_epoch: u32,
    },
}
