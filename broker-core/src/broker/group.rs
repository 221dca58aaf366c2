//! The broker as group coordinator: it coordinates the groups of the
//! `__consumer_offsets` partitions it leads. Requests go to its
//! [`GroupCoordinator`]; the coordinator's writes are appended here with
//! acks=all and their outcome is handed back once the high watermark covers
//! them (or the append fails, times out, or leadership moves). Becoming the
//! leader of such a partition loads its groups from the log; losing it
//! unloads them.

use super::{Broker, ConnId, Role};
use crate::group::api::GroupRequest;
use crate::group::coordinator::{CoordinatorOutput, GroupConfig, GroupCoordinator};
use crate::group::GroupId;
use crate::protocol::{CorrelationId, ErrorCode, Response};
use crate::types::{ProducerId, StoredRecord, TopicId, TopicPartition};

/// The internal topic holding group metadata and committed offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a coordinator write may wait for the HW (`offsets.commit.timeout.ms`).
pub const OFFSET_COMMIT_TIMEOUT_MS: u64 = 5_000;

/// Where a coordinator's answer goes.
pub(super) type GroupReply = (ConnId, CorrelationId);

/// The coordinator of a broker whose layout has `offsets_topic` with that many partitions.
pub(super) fn new_coordinator(
    config: GroupConfig,
    offsets_partitions: Option<u32>,
    member_nonce: u64,
    unfenced_commits: bool,
) -> GroupCoordinator<GroupReply> {
    let config = GroupConfig { offsets_topic_partitions: offsets_partitions.unwrap_or(1).max(1), ..config };
    GroupCoordinator::new(config, member_nonce, unfenced_commits)
}

impl Broker {
    fn offsets_partition(&self, group: &GroupId) -> Option<TopicPartition> {
        let topic = self.offsets_topic?;
        Some(TopicPartition::new(topic, self.groups.partition_for(group)))
    }

    /// FindCoordinator: the current leader of the group's partition, as this
    /// broker's metadata has it.
    pub(super) fn find_coordinator(&self, group: &GroupId) -> Response {
        self.coordinator_answer(self.offsets_partition(group))
    }

    /// FindCoordinator's answer: the current leader of the coordinator's
    /// partition `tp` (of `__consumer_offsets` or `__transaction_state`).
    pub(super) fn coordinator_answer(&self, tp: Option<TopicPartition>) -> Response {
        let leader = tp.and_then(|tp| self.control.image.as_ref()?.partitions.get(&tp)).and_then(|s| s.leader);
        match leader {
            Some(broker) => Response::FindCoordinator { error: None, coordinator: Some(broker) },
            None => Response::FindCoordinator { error: Some(ErrorCode::CoordinatorNotAvailable), coordinator: None },
        }
    }

    pub(super) fn handle_group_request(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        correlation_id: CorrelationId,
        request: GroupRequest,
    ) {
        if self.offsets_topic.is_none() {
            let refusal = request.refusal(ErrorCode::CoordinatorNotAvailable);
            return self.respond(conn, correlation_id, Response::Group(refusal));
        }
        self.groups.handle_request(now_ms, (conn, correlation_id), request);
        self.drain_coordinator(now_ms);
    }

    /// Carries out what the coordinator wants: answers and writes; and hands
    /// it the outcomes of finished writes, until neither side has more.
    pub(super) fn drain_coordinator(&mut self, now_ms: u64) {
        loop {
            while let Some(output) = self.groups.poll_output() {
                match output {
                    CoordinatorOutput::Reply { to: (conn, correlation_id), response } => {
                        self.respond(conn, correlation_id, Response::Group(response));
                    }
                    CoordinatorOutput::Write { id, partition, records, producer } => {
                        let topic = self.offsets_topic.expect("writes only for a loaded partition");
                        let tp = TopicPartition::new(topic, partition);
                        let requester = super::produce::Requester::Coordinator(id);
                        match producer {
                            None => self.append_for(now_ms, requester, tp, records, OFFSET_COMMIT_TIMEOUT_MS),
                            Some((producer_id, epoch)) => {
                                self.append_txn_offsets_for(now_ms, requester, tp, records, producer_id, epoch)
                            }
                        }
                    }
                }
            }
            if self.halted.is_some() {
                return;
            }
            let Some((write, result)) = self.group_writes_done.pop_front() else { return };
            self.groups.write_done(now_ms, write, result);
        }
    }

    /// This broker now leads `tp`: if it is a partition of
    /// `__consumer_offsets`, its groups are loaded from its log.
    pub(super) fn coordinate_partition(&mut self, now_ms: u64, tp: TopicPartition) {
        if Some(tp.topic) != self.offsets_topic {
            return;
        }
        if let Some(records) = self.coordinator_log(tp, "groups") {
            self.groups.load(now_ms, tp.partition, &records);
        }
    }

    /// Every record of `tp`, a coordinator's partition this broker now
    /// leads, to rebuild the coordinator's state (`what` it holds) from;
    /// `None` if the log does not read back (the broker has halted).
    pub(super) fn coordinator_log(&mut self, tp: TopicPartition, what: &str) -> Option<Vec<StoredRecord>> {
        let r = &self.replicas[&tp];
        debug_assert!(matches!(r.role, Role::Leader(_)));
        let (start, end) = (r.log.log_start_offset(), r.log.log_end_offset());
        match r.log.read(self.storage.as_ref(), start, end, u32::MAX) {
            Ok(records) => Some(records),
            Err(e) => {
                self.halt_on_corrupt_log(format!("loading {what} from {tp}: {e}"));
                None
            }
        }
    }

    /// A transaction marker of `producer_id` is committed in `tp`: if `tp`
    /// is a partition of `__consumer_offsets`, the transaction's offset
    /// commits there take effect (COMMIT) or are dropped (ABORT).
    pub(super) fn offsets_marker_committed(&mut self, tp: TopicPartition, producer_id: ProducerId, commit: bool) {
        if Some(tp.topic) == self.offsets_topic && !self.plants.on(crate::plant::Plant::TxnOffsetsNeverComplete) {
            self.groups.txn_completed(tp.partition, producer_id, commit);
        }
    }

    /// This broker no longer leads `tp`: if it is a partition of
    /// `__consumer_offsets`, its groups are unloaded.
    pub(super) fn resign_partition(&mut self, tp: TopicPartition) {
        if Some(tp.topic) == self.offsets_topic {
            self.groups.unload(tp.partition);
        }
    }

    pub(super) fn offsets_topic_id(layout: &super::ClusterLayout) -> Option<(TopicId, u32)> {
        layout.topic_by_name(CONSUMER_OFFSETS_TOPIC).map(|t| (t.id, t.replicas.len() as u32))
    }
}
