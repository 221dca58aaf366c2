//! The group requests and their answers (Kafka's JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch), as closed enums. They
//! travel as objects; the coordinator answers each exactly once, some of them
//! (JoinGroup, SyncGroup, OffsetCommit) only when a rebalance phase or a
//! write to `__consumer_offsets` completes.

use super::{Assignment, AssignorKind, GenerationId, GroupId, InstanceId, MemberId, Subscription};
use crate::protocol::ErrorCode;
use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, TopicPartition};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroup {
    pub group: GroupId,
    /// `None` on a member's first join (KIP-394: answered MEMBER_ID_REQUIRED
    /// with an id to rejoin with, unless the member is static).
    pub member: Option<MemberId>,
    pub instance: Option<InstanceId>,
    pub client_id: Arc<str>,
    pub session_timeout_ms: u64,
    /// How long the coordinator waits for members to rejoin once a
    /// rebalance starts (the consumer sends `max.poll.interval.ms`).
    pub rebalance_timeout_ms: u64,
    /// In the member's order of preference; not empty.
    pub protocols: Vec<(AssignorKind, Subscription)>,
}

/// One member as the group leader sees it in its JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member: MemberId,
    pub instance: Option<InstanceId>,
    /// Its subscription for the chosen protocol.
    pub subscription: Subscription,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinGroupResponse {
    pub error: Option<ErrorCode>,
    pub generation: GenerationId,
    pub protocol: Option<AssignorKind>,
    pub leader: Option<MemberId>,
    /// The member's id: fresh with MEMBER_ID_REQUIRED, else the one joined with.
    pub member: Option<MemberId>,
    /// Every member, sorted by id — for the leader only; empty for the others.
    pub members: Vec<JoinedMember>,
}

impl JoinGroupResponse {
    pub fn error(error: ErrorCode, member: Option<MemberId>) -> JoinGroupResponse {
        JoinGroupResponse {
            error: Some(error),
            generation: GenerationId::NONE,
            protocol: None,
            leader: None,
            member,
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    pub group: GroupId,
    pub generation: GenerationId,
    pub member: MemberId,
    pub instance: Option<InstanceId>,
    pub protocol: Option<AssignorKind>,
    /// The leader's assignment of every member; empty from the others.
    pub assignments: Vec<(MemberId, Assignment)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroupResponse {
    pub error: Option<ErrorCode>,
    pub protocol: Option<AssignorKind>,
    pub assignment: Assignment,
}

impl SyncGroupResponse {
    pub fn error(error: ErrorCode) -> SyncGroupResponse {
        SyncGroupResponse { error: Some(error), protocol: None, assignment: Assignment::default() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub group: GroupId,
    pub generation: GenerationId,
    pub member: MemberId,
    pub instance: Option<InstanceId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveGroup {
    pub group: GroupId,
    pub member: MemberId,
    pub instance: Option<InstanceId>,
}

/// A committed position: the next offset to consume, and the leader epoch
/// of the record before it (KIP-320, so a consumer resuming from it can
/// detect truncation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: Offset,
    pub leader_epoch: LeaderEpoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: GroupId,
    /// [`GenerationId::NONE`] with no member: a commit from outside any
    /// group (assign mode), accepted only while the group is empty.
    pub generation: GenerationId,
    pub member: Option<MemberId>,
    pub instance: Option<InstanceId>,
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
}

/// TxnOffsetCommit: a transactional producer commits `group`'s offsets in
/// its open transaction (after AddOffsetsToTxn put the group's partition
/// in it). They are written at once but take effect only when the
/// transaction's COMMIT marker reaches the partition; an ABORT drops them.
/// With a generation and member (KIP-447) the commit is fenced like a
/// group member's, so a consumer that lost its partitions in a rebalance
/// cannot commit output for them; with [`GenerationId::NONE`] and no member
/// it is not (the pre-KIP-447 form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOffsetCommit {
    pub group: GroupId,
    pub transactional_id: crate::txn::TransactionalId,
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    pub generation: GenerationId,
    pub member: Option<MemberId>,
    pub instance: Option<InstanceId>,
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetFetch {
    pub group: GroupId,
    /// `None`: every partition the group has an offset for.
    pub partitions: Option<Vec<TopicPartition>>,
    /// KIP-447: answer UNSTABLE_OFFSET_COMMIT while a transaction holding
    /// an offset of a requested partition is undecided, instead of the
    /// offset committed before it (which that transaction may replace).
    pub require_stable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRequest {
    JoinGroup(JoinGroup),
    SyncGroup(SyncGroup),
    Heartbeat(Heartbeat),
    LeaveGroup(LeaveGroup),
    OffsetCommit(OffsetCommit),
    OffsetFetch(OffsetFetch),
    TxnOffsetCommit(TxnOffsetCommit),
}

impl GroupRequest {
    pub fn group(&self) -> &GroupId {
        match self {
            GroupRequest::JoinGroup(r) => &r.group,
            GroupRequest::SyncGroup(r) => &r.group,
            GroupRequest::Heartbeat(r) => &r.group,
            GroupRequest::LeaveGroup(r) => &r.group,
            GroupRequest::OffsetCommit(r) => &r.group,
            GroupRequest::OffsetFetch(r) => &r.group,
            GroupRequest::TxnOffsetCommit(r) => &r.group,
        }
    }

    /// The answer carrying `error` alone (a coordinator that cannot serve the group).
    pub fn refusal(&self, error: ErrorCode) -> GroupResponse {
        match self {
            GroupRequest::JoinGroup(r) => GroupResponse::JoinGroup(JoinGroupResponse::error(error, r.member.clone())),
            GroupRequest::SyncGroup(_) => GroupResponse::SyncGroup(SyncGroupResponse::error(error)),
            GroupRequest::Heartbeat(_) => GroupResponse::Heartbeat { error: Some(error) },
            GroupRequest::LeaveGroup(_) => GroupResponse::LeaveGroup { error: Some(error) },
            GroupRequest::OffsetCommit(r) => {
                GroupResponse::OffsetCommit { partitions: r.offsets.iter().map(|(tp, _)| (*tp, Some(error))).collect() }
            }
            GroupRequest::OffsetFetch(_) => GroupResponse::OffsetFetch { error: Some(error), offsets: Vec::new() },
            GroupRequest::TxnOffsetCommit(r) => GroupResponse::TxnOffsetCommit {
                partitions: r.offsets.iter().map(|(tp, _)| (*tp, Some(error))).collect(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupResponse {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat { error: Option<ErrorCode> },
    LeaveGroup { error: Option<ErrorCode> },
    OffsetCommit { partitions: Vec<(TopicPartition, Option<ErrorCode>)> },
    OffsetFetch { error: Option<ErrorCode>, offsets: Vec<(TopicPartition, Option<CommittedOffset>)> },
    TxnOffsetCommit { partitions: Vec<(TopicPartition, Option<ErrorCode>)> },
}
