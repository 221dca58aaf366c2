//! One group's membership: the classic protocol's state machine (Kafka's
//! `GroupMetadata` plus the membership half of `GroupCoordinator`).
//!
//! Empty → PreparingRebalance (a member joins; the first join waits the
//! initial rebalance delay for others) → CompletingRebalance (every member
//! has rejoined, or the rebalance timeout dropped those that did not: the
//! generation is bumped and the leader gets the member list) → Stable (the
//! leader's SyncGroup assignment is durable in `__consumer_offsets`: every
//! member gets its share). A join with new metadata, a leave, or an expired
//! session sends the group back to PreparingRebalance; an answer that has
//! to wait for a phase to end is held (`join_reply`, `sync_reply`) and sent
//! when it ends.

use super::{GroupConfig, Out, WriteId};
use crate::group::api::{CommittedOffset, GroupResponse};
use crate::group::api::{
    Heartbeat, JoinGroup, JoinGroupResponse, JoinedMember, LeaveGroup, SyncGroup, SyncGroupResponse,
};
use crate::group::records::{GroupMetadata, MemberMetadata};
use crate::group::{Assignment, AssignorKind, GenerationId, GroupId, InstanceId, MemberId, Subscription};
use crate::protocol::ErrorCode;
use crate::types::{Offset, ProducerId, TopicPartition};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Unloaded (the coordinator moved) — kept only until its last answers go.
    Dead,
}

#[derive(Clone, Debug)]
pub(super) struct Member<R> {
    pub id: MemberId,
    pub instance: Option<InstanceId>,
    pub client_id: Arc<str>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocols: Vec<(AssignorKind, Subscription)>,
    pub assignment: Assignment,
    /// A JoinGroup waiting for the join phase to end.
    pub join_reply: Option<R>,
    /// A SyncGroup waiting for the leader's assignment to be written.
    pub sync_reply: Option<R>,
    pub session_deadline_ms: u64,
}

impl<R> Member<R> {
    fn subscription(&self, protocol: AssignorKind) -> Subscription {
        self.protocols.iter().find(|(k, _)| *k == protocol).map(|(_, s)| s.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: AssignorKind) -> bool {
        self.protocols.iter().any(|(k, _)| *k == protocol)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Group<R> {
    pub id: GroupId,
    pub state: GroupState,
    pub generation: GenerationId,
    pub protocol: Option<AssignorKind>,
    pub leader: Option<MemberId>,
    pub members: BTreeMap<MemberId, Member<R>>,
    pub statics: BTreeMap<InstanceId, MemberId>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not joined with yet, and
    /// when they lapse. They count towards the group's size, and a join
    /// phase waits for them (KIP-394).
    pub pending: BTreeMap<MemberId, u64>,
    /// PreparingRebalance: when the join phase ends regardless;
    /// CompletingRebalance: when members that have not synced are dropped.
    pub phase_deadline_ms: Option<u64>,
    /// The initial rebalance delay of an empty group's first join: the
    /// latest the join phase may be extended to, and whether a member
    /// arrived since the last extension.
    pub initial_delay: Option<(u64, bool)>,
    /// The leader's assignment being written, and the generation it is for.
    pub sync_write: Option<(WriteId, GenerationId)>,
    /// Committed offsets, applied when their write is durable, each with
    /// where in `__consumer_offsets` it was appended (its batch's base
    /// offset): a committed transaction's offset replaces only an older one.
    pub offsets: PlacedOffsets,
    /// Transactional offset commits written but not yet decided, by
    /// producer, each with where it was appended: applied at their
    /// transaction's COMMIT marker, dropped at its ABORT.
    pub pending_txn_offsets: BTreeMap<ProducerId, PlacedOffsets>,
}

impl<R: Clone> Group<R> {
    pub fn new(id: GroupId) -> Group<R> {
        Group {
            id,
            state: GroupState::Empty,
            generation: GenerationId::INITIAL,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            statics: BTreeMap::new(),
            pending: BTreeMap::new(),
            phase_deadline_ms: None,
            initial_delay: None,
            sync_write: None,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    /// Plain commits appended at `at` and now durable: they take effect.
    pub fn commit_offsets(&mut self, offsets: impl IntoIterator<Item = (TopicPartition, CommittedOffset)>, at: Offset) {
        self.offsets.extend(offsets.into_iter().map(|(tp, committed)| (tp, (committed, at))));
    }

    /// `producer`'s transaction ended: at COMMIT its offsets take effect (see
    /// [`apply_committed_txn`]), at ABORT they are dropped.
    pub fn complete_txn_offsets(&mut self, producer: ProducerId, commit: bool) {
        if let Some(pending) = self.pending_txn_offsets.remove(&producer).filter(|_| commit) {
            apply_committed_txn(&mut self.offsets, pending);
        }
    }

    /// A group as a replayed metadata record leaves it: Stable with its
    /// members (each with a fresh session), or Empty.
    pub fn loaded(id: GroupId, metadata: GroupMetadata, now_ms: u64) -> Group<R> {
        let mut group = Group::new(id);
        group.generation = metadata.generation;
        group.protocol = metadata.protocol;
        group.leader = metadata.leader;
        for m in metadata.members {
            if let Some(instance) = &m.instance {
                group.statics.insert(instance.clone(), m.member.clone());
            }
            let protocols = metadata.protocol.map(|p| vec![(p, m.subscription)]).unwrap_or_default();
            let member = Member {
                id: m.member.clone(),
                instance: m.instance,
                client_id: m.client_id,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols,
                assignment: m.assignment,
                join_reply: None,
                sync_reply: None,
                session_deadline_ms: now_ms + m.session_timeout_ms,
            };
            group.members.insert(m.member, member);
        }
        group.state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group
    }

    /// Protocols every member supports, in the order of the first member's preference.
    fn common_protocols(&self) -> Vec<AssignorKind> {
        AssignorKind::ALL.iter().copied().filter(|p| self.members.values().all(|m| m.supports(*p))).collect()
    }

    /// The largest rebalance timeout among members (Kafka's group rebalance timeout).
    fn rebalance_timeout_ms(&self) -> u64 {
        self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }

    pub fn join(&mut self, now_ms: u64, config: &GroupConfig, reply: R, req: JoinGroup, out: &mut Out<R>) {
        let respond = |out: &mut Out<R>, error, member| {
            out.reply(reply.clone(), GroupResponse::JoinGroup(JoinGroupResponse::error(error, member)))
        };
        if !(config.min_session_timeout_ms..=config.max_session_timeout_ms).contains(&req.session_timeout_ms) {
            return respond(out, ErrorCode::InvalidSessionTimeout, req.member);
        }
        let consistent = req.protocols.iter().any(|(p, _)| self.common_protocols().contains(p));
        if req.protocols.is_empty() || (!self.members.is_empty() && !consistent) {
            return respond(out, ErrorCode::InconsistentGroupProtocol, req.member);
        }
        if self.state == GroupState::Dead {
            return respond(out, ErrorCode::CoordinatorNotAvailable, req.member);
        }
        match req.member.clone() {
            None => match req.instance.clone() {
                Some(instance) => self.join_static_unknown(now_ms, config, reply, req, instance, out),
                None => {
                    if self.members.len() + self.pending.len() >= config.max_group_size {
                        return respond(out, ErrorCode::GroupMaxSizeReached, None);
                    }
                    let id = out.new_member_id(&req.client_id);
                    self.pending.insert(id.clone(), now_ms + req.session_timeout_ms);
                    respond(out, ErrorCode::MemberIdRequired, Some(id));
                }
            },
            Some(id) => {
                if let Err(error) = self.check_instance(&id, req.instance.as_ref()) {
                    return respond(out, error, Some(id));
                }
                if self.pending.remove(&id).is_some() {
                    self.add_member(now_ms, config, id, reply, req, out);
                } else if !self.members.contains_key(&id) {
                    respond(out, ErrorCode::UnknownMemberId, Some(id));
                } else {
                    self.rejoin(now_ms, config, id, reply, req, out);
                }
            }
        }
    }

    /// A static member joining without a member id: a new one, or a restart
    /// of a known instance, which takes over its old id's place (fencing it).
    fn join_static_unknown(
        &mut self,
        now_ms: u64,
        config: &GroupConfig,
        reply: R,
        req: JoinGroup,
        instance: InstanceId,
        out: &mut Out<R>,
    ) {
        let new_id = out.new_member_id(&req.client_id);
        let Some(old_id) = self.statics.get(&instance).cloned() else {
            if self.members.len() + self.pending.len() >= config.max_group_size {
                let answer = JoinGroupResponse::error(ErrorCode::GroupMaxSizeReached, None);
                return out.reply(reply, GroupResponse::JoinGroup(answer));
            }
            return self.add_member(now_ms, config, new_id, reply, req, out);
        };
        let mut member = self.members.remove(&old_id).expect("a static member's id is a member");
        // The old incarnation's held answers: it has been replaced.
        if let Some(r) = member.join_reply.take() {
            out.reply(r, GroupResponse::JoinGroup(JoinGroupResponse::error(ErrorCode::FencedInstanceId, None)));
        }
        if let Some(r) = member.sync_reply.take() {
            out.reply(r, GroupResponse::SyncGroup(SyncGroupResponse::error(ErrorCode::FencedInstanceId)));
        }
        let same_protocols = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols.clone();
        member.session_deadline_ms = now_ms + req.session_timeout_ms;
        if self.leader.as_ref() == Some(&old_id) {
            self.leader = Some(new_id.clone());
        }
        self.statics.insert(instance, new_id.clone());
        self.members.insert(new_id.clone(), member);
        match self.state {
            // KIP-345: a static member back within its session, unchanged, keeps
            // its assignment without a rebalance.
            GroupState::Stable | GroupState::CompletingRebalance if same_protocols => {
                let answer = self.join_answer(&new_id, false);
                out.reply(reply, GroupResponse::JoinGroup(answer));
            }
            GroupState::PreparingRebalance => {
                self.members.get_mut(&new_id).expect("inserted").join_reply = Some(reply);
                self.try_complete_join(now_ms, out);
            }
            _ => {
                self.members.get_mut(&new_id).expect("inserted").join_reply = Some(reply);
                self.prepare_rebalance(now_ms, config, out);
            }
        }
    }

    fn add_member(
        &mut self,
        now_ms: u64,
        config: &GroupConfig,
        id: MemberId,
        reply: R,
        req: JoinGroup,
        out: &mut Out<R>,
    ) {
        if let Some(instance) = &req.instance {
            self.statics.insert(instance.clone(), id.clone());
        }
        let member = Member {
            id: id.clone(),
            instance: req.instance,
            client_id: req.client_id,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Assignment::default(),
            join_reply: Some(reply),
            sync_reply: None,
            session_deadline_ms: now_ms + req.session_timeout_ms,
        };
        self.members.insert(id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(id);
        }
        if let Some((_, added)) = &mut self.initial_delay {
            *added = true;
        }
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now_ms, out);
        } else {
            self.prepare_rebalance(now_ms, config, out);
        }
    }

    /// A member's join (first after MEMBER_ID_REQUIRED, or a rejoin).
    fn rejoin(&mut self, now_ms: u64, config: &GroupConfig, id: MemberId, reply: R, req: JoinGroup, out: &mut Out<R>) {
        let is_leader = self.leader.as_ref() == Some(&id);
        let member = self.members.get_mut(&id).expect("checked");
        let same_protocols = member.protocols == req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_deadline_ms = now_ms + member.session_timeout_ms;
        if let Some(old) = member.join_reply.replace(reply.clone()) {
            // A retried join: the earlier copy will not be waited for.
            let answer = JoinGroupResponse::error(ErrorCode::RebalanceInProgress, Some(id.clone()));
            out.reply(old, GroupResponse::JoinGroup(answer));
        }
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            // The member lost the answer to its join: the current one again.
            GroupState::CompletingRebalance if same_protocols => self.answer_join_now(&id, out),
            GroupState::Stable if same_protocols && !is_leader => self.answer_join_now(&id, out),
            _ => self.prepare_rebalance(now_ms, config, out),
        }
    }

    fn answer_join_now(&mut self, id: &MemberId, out: &mut Out<R>) {
        let answer = self.join_answer(id, true);
        let reply = self.members.get_mut(id).and_then(|m| m.join_reply.take()).expect("held");
        out.reply(reply, GroupResponse::JoinGroup(answer));
    }

    fn join_answer(&self, id: &MemberId, with_members: bool) -> JoinGroupResponse {
        let protocol = self.protocol.expect("a generation with members has a protocol");
        let is_leader = self.leader.as_ref() == Some(id);
        let members = if is_leader && with_members {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member: m.id.clone(),
                    instance: m.instance.clone(),
                    subscription: m.subscription(protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse {
            error: None,
            generation: self.generation,
            protocol: Some(protocol),
            leader: self.leader.clone(),
            member: Some(id.clone()),
            members,
        }
    }

    /// Starts (or restarts) a join phase.
    pub fn prepare_rebalance(&mut self, now_ms: u64, config: &GroupConfig, out: &mut Out<R>) {
        if self.state == GroupState::CompletingRebalance {
            // Kafka's resetAndPropagateAssignmentError: held syncs learn to rejoin.
            for m in self.members.values_mut() {
                if let Some(r) = m.sync_reply.take() {
                    out.reply(r, GroupResponse::SyncGroup(SyncGroupResponse::error(ErrorCode::RebalanceInProgress)));
                }
            }
        }
        self.sync_write = None;
        let timeout = self.rebalance_timeout_ms();
        if self.state == GroupState::Empty {
            let delay = config.initial_rebalance_delay_ms.min(timeout);
            self.initial_delay = Some((now_ms + timeout, false));
            self.phase_deadline_ms = Some(now_ms + delay);
        } else {
            self.initial_delay = None;
            self.phase_deadline_ms = Some(now_ms + timeout);
        }
        self.state = GroupState::PreparingRebalance;
        self.try_complete_join(now_ms, out);
    }

    /// Ends the join phase early once every member (and every pending id) has joined.
    fn try_complete_join(&mut self, now_ms: u64, out: &mut Out<R>) {
        let all_joined = self.members.values().all(|m| m.join_reply.is_some()) && self.pending.is_empty();
        if self.state == GroupState::PreparingRebalance && self.initial_delay.is_none() && all_joined {
            self.complete_join(now_ms, out);
        }
    }

    /// The join phase ends: members that did not rejoin go (static ones stay),
    /// the generation is bumped and every held join is answered.
    fn complete_join(&mut self, now_ms: u64, out: &mut Out<R>) {
        let gone: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| m.join_reply.is_none() && m.instance.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, out);
        }
        self.phase_deadline_ms = None;
        self.initial_delay = None;
        self.generation = self.generation.next();
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            out.write_metadata(&self.id, self.metadata());
            return;
        }
        self.protocol = Some(self.select_protocol());
        let leader_rejoined =
            self.leader.as_ref().and_then(|l| self.members.get(l)).is_some_and(|m| m.join_reply.is_some());
        if !leader_rejoined {
            let joined = self.members.values().find(|m| m.join_reply.is_some()).or(self.members.values().next());
            self.leader = joined.map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        self.phase_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
        let ids: Vec<MemberId> = self.members.keys().cloned().collect();
        for id in ids {
            let m = self.members.get_mut(&id).expect("listed");
            m.session_deadline_ms = now_ms + m.session_timeout_ms;
            m.assignment = Assignment::default();
            if m.join_reply.is_some() {
                self.answer_join_now(&id, out);
            }
        }
    }

    /// Kafka's vote: each member votes for its most preferred protocol
    /// among those every member supports; most votes wins (ties: the
    /// earlier in [`AssignorKind::ALL`]).
    fn select_protocol(&self) -> AssignorKind {
        let common = self.common_protocols();
        let mut votes: BTreeMap<AssignorKind, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| common.contains(p)) {
                *votes.entry(*p).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().expect("members share a protocol (checked at join)");
        *votes.iter().find(|(_, n)| **n == best).expect("a maximum").0
    }

    pub fn sync(&mut self, now_ms: u64, reply: R, req: SyncGroup, out: &mut Out<R>) {
        let refuse = |out: &mut Out<R>, error| {
            out.reply(reply.clone(), GroupResponse::SyncGroup(SyncGroupResponse::error(error)))
        };
        if let Err(error) = self.check_member(&req.member, req.instance.as_ref(), req.generation) {
            return refuse(out, error);
        }
        if req.protocol.is_some_and(|p| Some(p) != self.protocol) {
            return refuse(out, ErrorCode::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => refuse(out, ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => refuse(out, ErrorCode::RebalanceInProgress),
            GroupState::Stable => {
                let m = self.members.get_mut(&req.member).expect("checked");
                m.session_deadline_ms = now_ms + m.session_timeout_ms;
                let answer =
                    SyncGroupResponse { error: None, protocol: self.protocol, assignment: m.assignment.clone() };
                out.reply(reply, GroupResponse::SyncGroup(answer));
            }
            GroupState::CompletingRebalance => {
                let m = self.members.get_mut(&req.member).expect("checked");
                m.session_deadline_ms = now_ms + m.session_timeout_ms;
                if let Some(old) = m.sync_reply.replace(reply) {
                    out.reply(old, GroupResponse::SyncGroup(SyncGroupResponse::error(ErrorCode::RebalanceInProgress)));
                }
                let from_leader = self.leader.as_ref() == Some(&req.member);
                if from_leader && self.sync_write.is_none() {
                    let mut assigned: BTreeMap<MemberId, Assignment> = req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = assigned.remove(&m.id).unwrap_or_default();
                    }
                    let id = out.write_metadata(&self.id, self.metadata());
                    self.sync_write = Some((id, self.generation));
                }
            }
        }
    }

    /// The leader's assignment is durable (or the write failed).
    pub fn sync_written(
        &mut self,
        now_ms: u64,
        config: &GroupConfig,
        id: WriteId,
        result: Result<(), ErrorCode>,
        out: &mut Out<R>,
    ) {
        if self.sync_write.map(|(w, _)| w) != Some(id) {
            return; // a write for a rebalance that has since restarted
        }
        self.sync_write = None;
        assert_eq!(self.state, GroupState::CompletingRebalance);
        match result {
            Ok(()) => {
                self.state = GroupState::Stable;
                self.phase_deadline_ms = None;
                for m in self.members.values_mut() {
                    if let Some(r) = m.sync_reply.take() {
                        let answer = SyncGroupResponse {
                            error: None,
                            protocol: self.protocol,
                            assignment: m.assignment.clone(),
                        };
                        out.reply(r, GroupResponse::SyncGroup(answer));
                    }
                }
            }
            Err(error) => {
                for m in self.members.values_mut() {
                    m.assignment = Assignment::default();
                    if let Some(r) = m.sync_reply.take() {
                        out.reply(r, GroupResponse::SyncGroup(SyncGroupResponse::error(error)));
                    }
                }
                self.prepare_rebalance(now_ms, config, out);
            }
        }
    }

    pub fn heartbeat(&mut self, now_ms: u64, reply: R, req: Heartbeat, out: &mut Out<R>) {
        let error = match self.check_member(&req.member, req.instance.as_ref(), req.generation) {
            Err(e) => Some(e),
            Ok(()) => match self.state {
                GroupState::Empty | GroupState::Dead => Some(ErrorCode::UnknownMemberId),
                GroupState::PreparingRebalance => {
                    self.touch(now_ms, &req.member);
                    Some(ErrorCode::RebalanceInProgress)
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    self.touch(now_ms, &req.member);
                    None
                }
            },
        };
        out.reply(reply, GroupResponse::Heartbeat { error });
    }

    pub fn leave(&mut self, now_ms: u64, config: &GroupConfig, reply: R, req: LeaveGroup, out: &mut Out<R>) {
        let error = if self.state == GroupState::Dead {
            Some(ErrorCode::CoordinatorNotAvailable)
        } else if let Err(e) = self.check_instance(&req.member, req.instance.as_ref()) {
            Some(e)
        } else if self.pending.remove(&req.member).is_some() {
            self.try_complete_join(now_ms, out);
            None
        } else if self.members.contains_key(&req.member) {
            self.remove_member(&req.member, out);
            self.membership_changed(now_ms, config, out);
            None
        } else {
            Some(ErrorCode::UnknownMemberId)
        };
        out.reply(reply, GroupResponse::LeaveGroup { error });
    }

    /// After a member left or expired.
    fn membership_changed(&mut self, now_ms: u64, config: &GroupConfig, out: &mut Out<R>) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms, config, out),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Drops a member; its held answers learn it is gone.
    fn remove_member(&mut self, id: &MemberId, out: &mut Out<R>) {
        let Some(m) = self.members.remove(id) else { return };
        if let Some(instance) = &m.instance {
            if self.statics.get(instance) == Some(id) {
                self.statics.remove(instance);
            }
        }
        if let Some(r) = m.join_reply {
            out.reply(
                r,
                GroupResponse::JoinGroup(JoinGroupResponse::error(ErrorCode::UnknownMemberId, Some(id.clone()))),
            );
        }
        if let Some(r) = m.sync_reply {
            out.reply(r, GroupResponse::SyncGroup(SyncGroupResponse::error(ErrorCode::UnknownMemberId)));
        }
        if self.leader.as_ref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    fn touch(&mut self, now_ms: u64, id: &MemberId) {
        if let Some(m) = self.members.get_mut(id) {
            m.session_deadline_ms = now_ms + m.session_timeout_ms;
        }
    }

    /// A valid commit from a member of the current generation also keeps
    /// its session alive (Kafka does the same).
    pub fn touch_member(&mut self, now_ms: u64, id: &MemberId) {
        self.touch(now_ms, id);
    }

    /// A static member's request must come from the id that holds its instance.
    fn check_instance(&self, id: &MemberId, instance: Option<&InstanceId>) -> Result<(), ErrorCode> {
        match instance.and_then(|i| self.statics.get(i)) {
            Some(holder) if holder != id => Err(ErrorCode::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// The member is known, not fenced, and in the current generation.
    pub fn check_member(
        &self,
        id: &MemberId,
        instance: Option<&InstanceId>,
        generation: GenerationId,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        self.check_instance(id, instance)?;
        if !self.members.contains_key(id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// The earliest time [`Group::expire`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self.members.values().filter(|m| !self.kept_alive(m)).map(|m| m.session_deadline_ms);
        sessions.chain(self.pending.values().copied()).chain(self.phase_deadline_ms).min()
    }

    /// A member waiting for a phase to end is not expected to heartbeat.
    fn kept_alive(&self, m: &Member<R>) -> bool {
        (self.state == GroupState::PreparingRebalance && m.join_reply.is_some())
            || (self.state == GroupState::CompletingRebalance && m.sync_reply.is_some())
    }

    /// Expires sessions, pending ids and phase deadlines due at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, config: &GroupConfig, out: &mut Out<R>) {
        self.pending.retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| !self.kept_alive(m) && m.session_deadline_ms <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, out);
        }
        if !expired.is_empty() {
            self.membership_changed(now_ms, config, out);
        }
        if self.phase_deadline_ms.is_some_and(|d| d <= now_ms) {
            match self.state {
                GroupState::PreparingRebalance => match self.initial_delay {
                    Some((limit, true)) if limit > now_ms => {
                        // Members are still arriving: wait another delay, within the rebalance timeout.
                        let next = (now_ms + config.initial_rebalance_delay_ms).min(limit);
                        self.initial_delay = Some((limit, false));
                        self.phase_deadline_ms = Some(next);
                    }
                    _ => {
                        self.initial_delay = None;
                        self.complete_join(now_ms, out);
                    }
                },
                GroupState::CompletingRebalance => {
                    // Members that never synced are dropped, and the group rebalances without them.
                    let unsynced: Vec<MemberId> =
                        self.members.values().filter(|m| m.sync_reply.is_none()).map(|m| m.id.clone()).collect();
                    for id in &unsynced {
                        self.remove_member(id, out);
                    }
                    self.prepare_rebalance(now_ms, config, out);
                }
                _ => self.phase_deadline_ms = None,
            }
        } else if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now_ms, out);
        }
    }

    /// The coordinator moved: every held answer learns so.
    pub fn unload(&mut self, out: &mut Out<R>) {
        for m in self.members.values_mut() {
            if let Some(r) = m.join_reply.take() {
                out.reply(
                    r,
                    GroupResponse::JoinGroup(JoinGroupResponse::error(ErrorCode::NotCoordinator, Some(m.id.clone()))),
                );
            }
            if let Some(r) = m.sync_reply.take() {
                out.reply(r, GroupResponse::SyncGroup(SyncGroupResponse::error(ErrorCode::NotCoordinator)));
            }
        }
        self.state = GroupState::Dead;
    }

    /// The group as its metadata record keeps it.
    pub fn metadata(&self) -> GroupMetadata {
        let protocol = self.protocol;
        let members = self
            .members
            .values()
            .map(|m| MemberMetadata {
                member: m.id.clone(),
                instance: m.instance.clone(),
                client_id: m.client_id.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                subscription: protocol.map(|p| m.subscription(p)).unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        GroupMetadata { generation: self.generation, protocol, leader: self.leader.clone(), members }
    }
}

/// Committed offsets by partition, each with where it was appended.
pub type PlacedOffsets = BTreeMap<TopicPartition, (CommittedOffset, Offset)>;

/// A committed transaction's offsets take effect in `held`, each unless the
/// offset held for its partition was appended after it: a plain commit
/// written while the transaction was open stands (Kafka's `olderThan`).
/// Live and at load alike.
pub fn apply_committed_txn(held: &mut PlacedOffsets, committed: PlacedOffsets) {
    for (tp, (offset, at)) in committed {
        if held.get(&tp).is_none_or(|&(_, held_at)| held_at < at) {
            held.insert(tp, (offset, at));
        }
    }
}
