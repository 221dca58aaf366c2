//! Consumer groups, classic protocol: the shapes the group coordinator (a
//! broker) and the consumer client share.
//!
//! A group's members join (JoinGroup), one of them — the group leader —
//! computes the assignment with a client-side assignor ([`assignor`]), the
//! coordinator hands each member its share (SyncGroup), heartbeats keep
//! membership, and a generation number fences everything a member does
//! against the rebalance it joined. Committed offsets are kept per group and
//! partition, fenced by generation and member. Facts:
//! `shared/notes/kafka-semantics.md` (Consumer groups).
//!
//! Files: `assignor` (range, round-robin, sticky, cooperative-sticky),
//! `coordinator` (the broker side: group state machines and offsets),
//! `records` (group metadata and offsets as records of `__consumer_offsets`).

pub mod api;
pub mod assignor;
pub mod coordinator;
pub mod records;

use crate::types::{TopicId, TopicPartition};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A consumer group's id (`group.id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub Arc<str>);

impl GroupId {
    pub fn new(id: &str) -> GroupId {
        GroupId(Arc::from(id))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member's id, handed out by the coordinator (KIP-394: a first JoinGroup
/// without one is answered MEMBER_ID_REQUIRED with a fresh id to rejoin with).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId(pub Arc<str>);

impl MemberId {
    pub fn new(id: &str) -> MemberId {
        MemberId(Arc::from(id))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A static member's `group.instance.id` (KIP-345).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub Arc<str>);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group's generation: bumped every time a rebalance completes its join
/// phase. Kafka's -1 ("no generation": a consumer outside any group, or one
/// that has not joined yet) is [`GenerationId::NONE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GenerationId(pub i32);

impl GenerationId {
    pub const NONE: GenerationId = GenerationId(-1);
    /// A new group's generation, before its first rebalance.
    pub const INITIAL: GenerationId = GenerationId(0);
    pub fn next(self) -> GenerationId {
        GenerationId(self.0 + 1)
    }
}

impl Default for GenerationId {
    /// No generation.
    fn default() -> Self {
        GenerationId::NONE
    }
}

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// The assignors a consumer can name in JoinGroup (`partition.assignment.strategy`).
/// Closed: the coordinator picks the first one every member supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignorKind {
    Range,
    RoundRobin,
    Sticky,
    CooperativeSticky,
}

impl AssignorKind {
    pub const ALL: &'static [AssignorKind] =
        &[AssignorKind::Range, AssignorKind::RoundRobin, AssignorKind::Sticky, AssignorKind::CooperativeSticky];

    /// Kafka's protocol name for it.
    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
            AssignorKind::Sticky => "sticky",
            AssignorKind::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether members keep the partitions that do not move through a
    /// rebalance (KIP-429) instead of revoking everything first.
    pub fn is_cooperative(self) -> bool {
        self == AssignorKind::CooperativeSticky
    }
}

/// What a member sends in JoinGroup for one assignor (the consumer
/// protocol's `Subscription`): the topics it wants, and what it owned in
/// the generation it last belonged to (sticky assignors keep those).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Sorted, no duplicates.
    pub topics: Vec<TopicId>,
    /// Sorted, no duplicates.
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation `owned_partitions` belong to (KIP-792); a claim from a
    /// generation older than another member's claim on the same partition
    /// loses (KAFKA-12984).
    pub generation: GenerationId,
}

/// What the leader hands a member in SyncGroup: its partitions, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub partitions: Vec<TopicPartition>,
}
