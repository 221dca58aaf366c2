//! The follower side of replication: after every epoch change a follower
//! first finds where its log diverges from the new leader's (OffsetsForLeaderEpoch,
//! see `truncation`), cuts there, then fetches from its log end. One request
//! per leader is in flight at a time, covering every partition that broker
//! leads for us, as Kafka's replica fetcher threads do.

use super::truncation::{self, FollowerEpochs, TruncationRule, TruncationStep};
use super::{Broker, BrokerEvent, Outstanding, Role};
use crate::log::{AppendError, PartitionLog};
use crate::plant::Plant;
use crate::protocol::{
    EpochEnd, EpochQuery, ErrorCode, FetchPartition, FetchPartitionResponse, Isolation, Peer, ReplicaId, Request,
};
use crate::types::{BrokerId, LeaderEpoch, Offset, TopicPartition};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Must agree with the leader on where the logs diverge before fetching.
    NeedsTruncation,
    Fetching,
}

#[derive(Clone, Debug)]
pub(super) struct FollowerState {
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub phase: Phase,
}

/// A follower's log and HW as the truncation rules see them.
struct LogEpochs<'a> {
    log: &'a PartitionLog,
    high_watermark: Offset,
}

impl FollowerEpochs for LogEpochs<'_> {
    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.log.latest_epoch()
    }
    fn end_offset_for(&self, epoch: LeaderEpoch) -> truncation::EpochAnswer {
        self.log.end_offset_for_epoch(epoch)
    }
    fn log_end(&self) -> Offset {
        self.log.log_end_offset()
    }
    fn high_watermark(&self) -> Offset {
        self.high_watermark
    }
}

impl Broker {
    fn truncation_rule(&self) -> TruncationRule {
        if self.plant(Plant::TruncateToHw) {
            TruncationRule::ToHighWatermark
        } else if self.plant(Plant::NoEpochTruncation) {
            TruncationRule::OffsetOnly
        } else {
            TruncationRule::LeaderEpoch
        }
    }

    /// Partitions followed from each leader, with their state.
    fn followed(&self) -> BTreeMap<BrokerId, Vec<(TopicPartition, LeaderEpoch, Phase)>> {
        let mut by_leader: BTreeMap<BrokerId, Vec<_>> = BTreeMap::new();
        for (tp, r) in &self.replicas {
            if let Role::Follower(f) = &r.role {
                by_leader.entry(f.leader).or_default().push((*tp, f.leader_epoch, f.phase));
            }
        }
        by_leader
    }

    /// Whether a fetch or epoch query may go to `leader` now: none in
    /// flight to it, and no backoff after a failed one.
    fn leader_ready(&self, leader: BrokerId, now_ms: u64) -> bool {
        let busy = self.in_flight(|o| {
            matches!(o, Outstanding::ReplicaFetch { leader: l, .. } | Outstanding::EpochQuery { leader: l, .. } if *l == leader)
        });
        !busy && self.fetch_backoff.get(&leader).is_none_or(|&until| now_ms >= until)
    }

    pub(super) fn drive_followers(&mut self, now_ms: u64) {
        let Some(broker_epoch) = self.control.broker_epoch else { return };
        // Most calls find every leader's fetch in flight (a replica fetch
        // long-polls): look before building the per-leader lists.
        let ready = |f: &FollowerState| self.leader_ready(f.leader, now_ms);
        if !self.replicas.values().any(|r| matches!(&r.role, Role::Follower(f) if ready(f))) {
            return;
        }
        let rule = self.truncation_rule();
        for (leader, partitions) in self.followed() {
            if !self.leader_ready(leader, now_ms) {
                continue;
            }
            self.fetch_backoff.remove(&leader);
            // Truncation first: partitions needing it get a question, or are cut at once.
            let mut asked = Vec::new();
            for &(tp, epoch, phase) in &partitions {
                if phase != Phase::NeedsTruncation {
                    continue;
                }
                let r = &self.replicas[&tp];
                let view = LogEpochs { log: &r.log, high_watermark: r.high_watermark };
                match truncation::first_question(rule, &view) {
                    Some(mine) => asked.push((tp, epoch, mine)),
                    None => {
                        // Planted rules and empty caches: cut without asking.
                        // The leader's end is unknown here; offset-only cuts later,
                        // when a fetch reports it.
                        let to = match rule {
                            TruncationRule::OffsetOnly => view.log_end(),
                            _ => truncation::without_question(rule, &view, view.log_end()),
                        };
                        self.truncate(tp, to);
                        self.set_phase(tp, Phase::Fetching);
                    }
                }
            }
            if !asked.is_empty() {
                let queries = asked
                    .iter()
                    .map(|&(tp, current, mine)| EpochQuery { tp, current_leader_epoch: current, leader_epoch: mine })
                    .collect();
                let request = Request::OffsetsForLeaderEpoch { partitions: queries };
                self.send(now_ms, Peer::Broker(leader), Outstanding::EpochQuery { leader, asked }, request);
                continue;
            }
            let fetching: Vec<(TopicPartition, Offset, LeaderEpoch)> = partitions
                .iter()
                .filter(
                    |&&(tp, ..)| matches!(&self.replicas[&tp].role, Role::Follower(f) if f.phase == Phase::Fetching),
                )
                .map(|&(tp, epoch, _)| (tp, self.replicas[&tp].log.log_end_offset(), epoch))
                .collect();
            if fetching.is_empty() {
                continue;
            }
            let max = self.config.replica_fetch_max_bytes;
            let request = Request::Fetch {
                replica: Some(ReplicaId { broker: self.id, broker_epoch }),
                isolation: Isolation::ReadUncommitted,
                max_wait_ms: self.config.replica_fetch_wait_max_ms,
                min_bytes: 1,
                max_bytes: max.saturating_mul(fetching.len() as u32),
                partitions: fetching
                    .iter()
                    .map(|&(tp, fetch_offset, epoch)| FetchPartition {
                        tp,
                        fetch_offset,
                        partition_max_bytes: max,
                        current_leader_epoch: epoch,
                    })
                    .collect(),
            };
            self.send(now_ms, Peer::Broker(leader), Outstanding::ReplicaFetch { leader, offsets: fetching }, request);
        }
    }

    /// Whether `tp` is still followed from `leader` in `epoch` (answers to
    /// requests of an earlier leadership are dropped).
    fn still_following(&self, tp: TopicPartition, leader: BrokerId, epoch: LeaderEpoch, phase: Phase) -> bool {
        matches!(self.replicas.get(&tp).map(|r| &r.role),
            Some(Role::Follower(f)) if f.leader == leader && f.leader_epoch == epoch && f.phase == phase)
    }

    fn set_phase(&mut self, tp: TopicPartition, phase: Phase) {
        if let Some(Role::Follower(f)) = self.replicas.get_mut(&tp).map(|r| &mut r.role) {
            f.phase = phase;
        }
    }

    /// Cuts a follower's log at `to` (nothing when it already ends there).
    fn truncate(&mut self, tp: TopicPartition, to: Offset) {
        let r = self.replicas.get_mut(&tp).expect("a replica of ours");
        let from = r.log.log_end_offset();
        if to >= from {
            return;
        }
        if let Err(e) = r.log.truncate_to(self.storage.as_mut(), to) {
            self.halt(format!("truncation of {tp} failed: {e}"));
            return;
        }
        r.high_watermark = r.high_watermark.min(r.log.log_end_offset());
        self.events.push_back(BrokerEvent::Truncated { tp, from, to });
    }

    pub(super) fn on_epoch_answers(
        &mut self,
        now_ms: u64,
        leader: BrokerId,
        asked: Vec<(TopicPartition, LeaderEpoch, LeaderEpoch)>,
        answers: Vec<EpochEnd>,
    ) {
        for (tp, current, mine) in asked {
            if !self.still_following(tp, leader, current, Phase::NeedsTruncation) {
                continue;
            }
            let Some(answer) = answers.iter().find(|a| a.tp == tp) else { continue };
            if answer.error.is_some() {
                // Fenced or not (yet) leader: wait for the controller's news.
                self.fetch_backoff.insert(leader, now_ms + self.config.replica_fetch_backoff_ms);
                continue;
            }
            let r = &self.replicas[&tp];
            let view = LogEpochs { log: &r.log, high_watermark: r.high_watermark };
            match truncation::after_answer(&view, mine, answer.end) {
                TruncationStep::TruncateTo(offset) => {
                    self.truncate(tp, offset);
                    self.set_phase(tp, Phase::Fetching);
                }
                // Cut, and ask again next time about the follower's (new) latest epoch.
                TruncationStep::TruncateAndAsk { offset, .. } => self.truncate(tp, offset),
            }
        }
    }

    pub(super) fn on_replica_fetch(
        &mut self,
        now_ms: u64,
        leader: BrokerId,
        offsets: Vec<(TopicPartition, Offset, LeaderEpoch)>,
        answers: Vec<FetchPartitionResponse>,
    ) {
        let offset_only = self.truncation_rule() == TruncationRule::OffsetOnly;
        let mut back_off = false;
        for (tp, fetch_offset, epoch) in offsets {
            if !self.still_following(tp, leader, epoch, Phase::Fetching) {
                continue;
            }
            let Some(answer) = answers.iter().find(|a| a.tp == tp) else { continue };
            if self.replicas[&tp].log.log_end_offset() != fetch_offset {
                continue; // the log moved meanwhile (a truncation): this answer is stale
            }
            match answer.error {
                None => {
                    if !answer.records.is_empty() {
                        let r = self.replicas.get_mut(&tp).expect("followed");
                        match r.log.append_replicated(self.storage.as_mut(), &answer.records) {
                            Ok(_) => {}
                            Err(AppendError::Storage(e)) => {
                                self.halt(format!("replica append to {tp} failed: {e}"));
                                return;
                            }
                            Err(AppendError::NonContiguous { .. } | AppendError::EpochRegression { .. }) => {
                                // Epochs do not line up: find the divergence again.
                                self.set_phase(tp, Phase::NeedsTruncation);
                                continue;
                            }
                        }
                    }
                    if offset_only && self.replicas[&tp].log.log_end_offset() > answer.log_end_offset {
                        self.truncate(tp, answer.log_end_offset);
                    }
                    let r = self.replicas.get_mut(&tp).expect("followed");
                    r.high_watermark = answer.high_watermark.min(r.log.log_end_offset());
                }
                Some(ErrorCode::OffsetOutOfRange)
                    if fetch_offset > answer.log_end_offset && answer.log_end_offset.0 >= 0 =>
                {
                    // Ahead of the leader: only possible without epoch truncation
                    // (or after an unclean election). Cut to the leader's end.
                    self.truncate(tp, answer.log_end_offset);
                }
                Some(ErrorCode::OffsetOutOfRange) => self.set_phase(tp, Phase::NeedsTruncation),
                Some(_) => back_off = true,
            }
        }
        if back_off {
            self.fetch_backoff.insert(leader, now_ms + self.config.replica_fetch_backoff_ms);
        }
    }
}
