//! Offset commits and fetches. A commit is validated against the group's
//! membership (Kafka's classic `handleCommitOffsets`), written, and applied
//! and acknowledged only once the write is committed. A transactional
//! commit (TxnOffsetCommit) is validated the same way when it names a
//! generation (KIP-447), written as its producer's transactional batch, and
//! held pending until the transaction's marker decides it.

use super::group::{Group, GroupState};
use super::{GroupCoordinator, WriteKind};
use crate::group::api::{GroupResponse, OffsetCommit, OffsetFetch, TxnOffsetCommit};
use crate::group::records::GroupRecord;
use crate::group::GenerationId;
use crate::protocol::ErrorCode;

impl<R: Clone> GroupCoordinator<R> {
    pub(super) fn commit(&mut self, now_ms: u64, reply: R, req: OffsetCommit) {
        let verdict = match self.groups.get(&req.group) {
            Some(group) => validate(group, &req, self.unfenced_commits),
            // No such group: only a commit from outside any group creates one.
            None if req.generation.0 < 0 || self.unfenced_commits => Ok(()),
            None => Err(ErrorCode::IllegalGeneration),
        };
        if let Err(error) = verdict {
            let partitions = req.offsets.iter().map(|(tp, _)| (*tp, Some(error))).collect();
            return self.out.reply(reply, GroupResponse::OffsetCommit { partitions });
        }
        if !self.groups.contains_key(&req.group) && self.groups.len() >= self.config.max_groups {
            let partitions =
                req.offsets.iter().map(|(tp, _)| (*tp, Some(ErrorCode::CoordinatorNotAvailable))).collect();
            return self.out.reply(reply, GroupResponse::OffsetCommit { partitions });
        }
        let group = self.groups.entry(req.group.clone()).or_insert_with(|| Group::new(req.group.clone()));
        if let Some(member) = &req.member {
            group.touch_member(now_ms, member);
        }
        if req.offsets.is_empty() {
            return self.out.reply(reply, GroupResponse::OffsetCommit { partitions: Vec::new() });
        }
        let records = req
            .offsets
            .iter()
            .map(|(tp, committed)| GroupRecord::Offset { group: req.group.clone(), tp: *tp, committed: *committed })
            .collect();
        let kind = WriteKind::Offsets { group: req.group.clone(), reply, offsets: req.offsets };
        self.out.write(&req.group, records, kind);
    }
}

impl<R: Clone> GroupCoordinator<R> {
    pub(super) fn txn_commit(&mut self, now_ms: u64, reply: R, req: TxnOffsetCommit) {
        // KIP-447: fenced by generation and member when it names them; the
        // planted `stale-generation-commit` skips the check here too.
        let fenced = req.generation.0 >= 0 || req.member.is_some();
        let verdict = match self.groups.get(&req.group) {
            Some(group) if group.state == GroupState::Dead => Err(ErrorCode::CoordinatorNotAvailable),
            Some(group) if fenced && !self.unfenced_commits => {
                let member = req.member.clone().unwrap_or_else(|| crate::group::MemberId::new(""));
                group.check_member(&member, req.instance.as_ref(), req.generation)
            }
            Some(_) => Ok(()),
            None if fenced && !self.unfenced_commits => Err(ErrorCode::IllegalGeneration),
            None => Ok(()),
        };
        let refuse = |error: ErrorCode| GroupResponse::TxnOffsetCommit {
            partitions: req.offsets.iter().map(|(tp, _)| (*tp, Some(error))).collect(),
        };
        if let Err(error) = verdict {
            return self.out.reply(reply, refuse(error));
        }
        if !self.groups.contains_key(&req.group) && self.groups.len() >= self.config.max_groups {
            return self.out.reply(reply, refuse(ErrorCode::CoordinatorNotAvailable));
        }
        let group = self.groups.entry(req.group.clone()).or_insert_with(|| Group::new(req.group.clone()));
        if let Some(member) = &req.member {
            group.touch_member(now_ms, member);
        }
        if req.offsets.is_empty() {
            return self.out.reply(reply, GroupResponse::TxnOffsetCommit { partitions: Vec::new() });
        }
        let records = req
            .offsets
            .iter()
            .map(|(tp, committed)| GroupRecord::Offset { group: req.group.clone(), tp: *tp, committed: *committed })
            .collect();
        let producer = Some((req.producer_id, req.epoch));
        let kind = WriteKind::TxnOffsets {
            group: req.group.clone(),
            reply,
            producer_id: req.producer_id,
            offsets: req.offsets,
        };
        self.out.write_as(&req.group, records, kind, producer);
    }
}

/// Kafka's classic checks, in its order. `unfenced` skips the membership
/// and generation checks (the planted bug).
fn validate<R: Clone>(group: &Group<R>, req: &OffsetCommit, unfenced: bool) -> Result<(), ErrorCode> {
    if group.state == GroupState::Dead {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    if unfenced {
        return Ok(());
    }
    if req.generation.0 < 0 && group.state == GroupState::Empty {
        return Ok(()); // a consumer outside any group, and nobody inside it
    }
    let member = req.member.clone().unwrap_or_else(|| crate::group::MemberId::new(""));
    let generation = if req.generation.0 < 0 { GenerationId::NONE } else { req.generation };
    group.check_member(&member, req.instance.as_ref(), generation)?;
    match group.state {
        GroupState::Stable | GroupState::PreparingRebalance => Ok(()),
        GroupState::CompletingRebalance => Err(ErrorCode::RebalanceInProgress),
        GroupState::Empty | GroupState::Dead => Err(ErrorCode::UnknownMemberId),
    }
}

pub(super) fn fetch<R: Clone>(group: Option<&Group<R>>, req: &OffsetFetch) -> GroupResponse {
    if let (true, Some(g)) = (req.require_stable, group) {
        let undecided = g.pending_txn_offsets.values().flat_map(|offsets| offsets.keys());
        let mut asked = undecided.filter(|tp| req.partitions.as_ref().is_none_or(|tps| tps.contains(tp)));
        if asked.next().is_some() {
            return GroupResponse::OffsetFetch { error: Some(ErrorCode::UnstableOffsetCommit), offsets: Vec::new() };
        }
    }
    let offsets = match (group, &req.partitions) {
        (None, None) => Vec::new(),
        (None, Some(tps)) => tps.iter().map(|tp| (*tp, None)).collect(),
        (Some(g), None) => g.offsets.iter().map(|(tp, &(c, _))| (*tp, Some(c))).collect(),
        (Some(g), Some(tps)) => tps.iter().map(|tp| (*tp, g.offsets.get(tp).map(|&(c, _)| c))).collect(),
    };
    GroupResponse::OffsetFetch { error: None, offsets }
}
