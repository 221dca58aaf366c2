//! Offset commits and fetches. A commit is validated against the group's
//! membership (Kafka's classic `handleCommitOffsets`), written, and applied
//! and acknowledged only once the write is committed.

use super::group::{Group, GroupState};
use super::{GroupCoordinator, WriteKind};
use crate::group::api::{GroupResponse, OffsetCommit, OffsetFetch};
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
    let offsets = match (group, &req.partitions) {
        (None, None) => Vec::new(),
        (None, Some(tps)) => tps.iter().map(|tp| (*tp, None)).collect(),
        (Some(g), None) => g.offsets.iter().map(|(tp, c)| (*tp, Some(*c))).collect(),
        (Some(g), Some(tps)) => tps.iter().map(|tp| (*tp, g.offsets.get(tp).copied())).collect(),
    };
    GroupResponse::OffsetFetch { error: None, offsets }
}
