//! The group coordinator: the broker-side half of consumer groups, sans-IO.
//!
//! A group belongs to one partition of `__consumer_offsets` (Kafka's
//! `abs(groupId.hashCode) % partitions`), and the broker leading that
//! partition coordinates it: the broker calls [`GroupCoordinator::load`] when
//! it becomes the partition's leader (the groups are rebuilt by replaying
//! the partition's records) and [`GroupCoordinator::unload`] when it stops.
//! Requests for groups of partitions it does not lead are refused
//! NOT_COORDINATOR.
//!
//! **Durability is an explicit output.** Group metadata (after the leader's
//! SyncGroup) and committed offsets are written as records
//! ([`CoordinatorOutput::Write`]); the broker appends them with acks=all and
//! reports the outcome through [`GroupCoordinator::write_done`]. Only then are
//! the SyncGroup answers sent and the offsets applied and acknowledged — a
//! commit is never acknowledged before it is committed in the log.
//!
//! The reply token `R` is whatever the broker needs to route an answer
//! (connection and correlation id); answers leave through
//! [`GroupCoordinator::poll_output`], each request answered exactly once.
//! Time is an argument; timers are [`GroupCoordinator::next_deadline_ms`] and
//! [`GroupCoordinator::handle_timeout`].
//!
//! Files: `group` (one group's membership state machine), `offsets`
//! (commit validation and offset fetches).

mod group;
mod offsets;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_offsets_tests;

pub use group::GroupState;

use super::api::{CommittedOffset, GroupRequest, GroupResponse};
use super::records::{GroupMetadata, GroupRecord};
use super::{GroupId, MemberId};
use crate::protocol::ErrorCode;
use crate::types::{BatchKind, Offset, ProducerEpoch, ProducerId, Record, StoredRecord, TopicPartition};
use group::{Group, PlacedOffsets};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The coordinator's settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions` (Kafka: 50).
    pub offsets_topic_partitions: u32,
    /// `group.min.session.timeout.ms` (Kafka: 6,000).
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms` (Kafka: 1,800,000).
    pub max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms` (Kafka: 3,000): an empty group's
    /// first join phase waits this long for more members, extended while
    /// they keep arriving, up to the rebalance timeout.
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size` (Kafka: unbounded; ksim bounds it): members and
    /// pending member ids together.
    pub max_group_size: usize,
    /// Most groups one coordinator holds (ksim's bound); a join that would
    /// create another is refused COORDINATOR_NOT_AVAILABLE.
    pub max_groups: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_group_size: 1_000,
            max_groups: 10_000,
        }
    }
}

/// Names one write the coordinator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorOutput<R> {
    Reply {
        to: R,
        response: GroupResponse,
    },
    /// Append `records` to partition `partition` of `__consumer_offsets`
    /// with acks=all, then call [`GroupCoordinator::write_done`] with `id`.
    Write {
        id: WriteId,
        partition: u32,
        records: Vec<Record>,
        /// A transactional offset commit's producer: the records go in as a
        /// transactional batch of it (refused if a newer epoch of it wrote
        /// there), and take effect at its transaction's marker.
        producer: Option<(ProducerId, ProducerEpoch)>,
    },
}

/// What a write was for.
#[derive(Clone, Debug)]
enum WriteKind<R> {
    /// A group's metadata (the leader's assignment, or an emptied group).
    Metadata { group: GroupId },
    /// An OffsetCommit, answered when the write completes.
    Offsets { group: GroupId, reply: R, offsets: Vec<(TopicPartition, CommittedOffset)> },
    /// A TxnOffsetCommit, answered when the write completes; its offsets
    /// then wait for the transaction's marker.
    TxnOffsets { group: GroupId, reply: R, producer_id: ProducerId, offsets: Vec<(TopicPartition, CommittedOffset)> },
}

/// Where the state machines put what they want done; owned by the
/// coordinator beside the groups, so a group can write into it.
pub(super) struct Out<R> {
    now_ms: u64,
    outputs: VecDeque<CoordinatorOutput<R>>,
    writes: BTreeMap<WriteId, WriteKind<R>>,
    next_write: u64,
    /// Makes member ids unique across coordinator incarnations.
    member_nonce: u64,
    next_member: u64,
    offsets_topic_partitions: u32,
}

impl<R> Out<R> {
    pub fn reply(&mut self, to: R, response: GroupResponse) {
        self.outputs.push_back(CoordinatorOutput::Reply { to, response });
    }

    /// `{client id}-{nonce}-{sequence}`: unique, and the same in every run of a seed.
    pub fn new_member_id(&mut self, client_id: &str) -> MemberId {
        self.next_member += 1;
        MemberId::new(&format!("{client_id}-{:08x}-{}", self.member_nonce, self.next_member))
    }

    fn write(&mut self, group: &GroupId, records: Vec<GroupRecord>, kind: WriteKind<R>) -> WriteId {
        self.write_as(group, records, kind, None)
    }

    /// [`Out::write`], as `producer`'s transactional batch when given.
    fn write_as(
        &mut self,
        group: &GroupId,
        records: Vec<GroupRecord>,
        kind: WriteKind<R>,
        producer: Option<(ProducerId, ProducerEpoch)>,
    ) -> WriteId {
        let id = WriteId(self.next_write);
        self.next_write += 1;
        let partition = partition_for(group, self.offsets_topic_partitions);
        let records = records.iter().map(|r| r.encode(self.now_ms)).collect();
        self.outputs.push_back(CoordinatorOutput::Write { id, partition, records, producer });
        self.writes.insert(id, kind);
        id
    }

    pub fn write_metadata(&mut self, group: &GroupId, metadata: GroupMetadata) -> WriteId {
        let record = GroupRecord::Metadata { group: group.clone(), metadata };
        self.write(group, vec![record], WriteKind::Metadata { group: group.clone() })
    }
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`, with Java's
/// `String.hashCode` over UTF-16 code units, so a group lands where Kafka
/// would put it.
pub fn partition_for(group: &GroupId, partitions: u32) -> u32 {
    assert!(partitions > 0, "__consumer_offsets needs a partition");
    let hash = group.0.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) as u32 % partitions
}

/// Transactional offset commits awaiting their marker, by producer and group.
type TxnOffsets = BTreeMap<ProducerId, BTreeMap<GroupId, PlacedOffsets>>;

/// What replaying a partition found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub records: u64,
    /// Records that did not decode (skipped).
    pub bad_records: u64,
    pub groups: u64,
}

pub struct GroupCoordinator<R> {
    config: GroupConfig,
    /// `__consumer_offsets` partitions this broker leads, loaded.
    owned: BTreeSet<u32>,
    groups: BTreeMap<GroupId, Group<R>>,
    out: Out<R>,
    /// Planted bug `stale-generation-commit`: commits are not fenced by
    /// generation or member (pre-KIP-447).
    unfenced_commits: bool,
}

impl<R: Clone> GroupCoordinator<R> {
    /// `member_nonce` must differ between the coordinator incarnations of a
    /// run (the broker passes a draw from its seeded stream).
    pub fn new(config: GroupConfig, member_nonce: u64, unfenced_commits: bool) -> GroupCoordinator<R> {
        assert!(config.offsets_topic_partitions > 0 && config.min_session_timeout_ms <= config.max_session_timeout_ms);
        let out = Out {
            now_ms: 0,
            outputs: VecDeque::new(),
            writes: BTreeMap::new(),
            next_write: 0,
            member_nonce,
            next_member: 0,
            offsets_topic_partitions: config.offsets_topic_partitions,
        };
        GroupCoordinator { config, owned: BTreeSet::new(), groups: BTreeMap::new(), out, unfenced_commits }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn partition_for(&self, group: &GroupId) -> u32 {
        partition_for(group, self.config.offsets_topic_partitions)
    }

    pub fn owns(&self, partition: u32) -> bool {
        self.owned.contains(&partition)
    }

    pub fn poll_output(&mut self) -> Option<CoordinatorOutput<R>> {
        self.out.outputs.pop_front()
    }

    /// A group's state, for tests and observers.
    pub fn group_state(&self, group: &GroupId) -> Option<GroupState> {
        self.groups.get(group).map(|g| g.state)
    }

    /// A group's generation and members, for tests and observers.
    pub fn group_metadata(&self, group: &GroupId) -> Option<GroupMetadata> {
        self.groups.get(group).map(|g| g.metadata())
    }

    /// This broker now leads `partition` of `__consumer_offsets`: the groups
    /// stored there are rebuilt from its records (the latest record of each
    /// key wins), every loaded member with a fresh session.
    pub fn load(&mut self, now_ms: u64, partition: u32, records: &[StoredRecord]) -> LoadStats {
        self.unload(partition);
        self.owned.insert(partition);
        let mut stats = LoadStats::default();
        let mut metadata: BTreeMap<GroupId, GroupMetadata> = BTreeMap::new();
        // Each committed offset with where it was appended.
        let mut offsets: BTreeMap<GroupId, PlacedOffsets> = BTreeMap::new();
        // Transactional offset commits whose marker is not (yet) in the log.
        let mut pending: TxnOffsets = BTreeMap::new();
        for record in records {
            stats.records += 1;
            match (record.kind, record.producer) {
                (BatchKind::Marker(marker), Some(stamp)) => {
                    for (group, committed) in pending.remove(&stamp.id).unwrap_or_default() {
                        if marker.commit {
                            group::apply_committed_txn(offsets.entry(group).or_default(), committed);
                        }
                    }
                    continue;
                }
                (BatchKind::Marker(_), None) => {
                    stats.bad_records += 1;
                    continue;
                }
                _ => {}
            }
            match GroupRecord::decode(record) {
                Ok(GroupRecord::Metadata { group, metadata: m }) => {
                    metadata.insert(group, m);
                }
                Ok(GroupRecord::Offset { group, tp, committed }) => match (record.kind, record.producer) {
                    (BatchKind::Transactional, Some(stamp)) => {
                        let pending = pending.entry(stamp.id).or_default().entry(group).or_default();
                        pending.insert(tp, (committed, record.offset));
                    }
                    _ => {
                        offsets.entry(group).or_default().insert(tp, (committed, record.offset));
                    }
                },
                Err(_) => stats.bad_records += 1,
            }
        }
        let mut pending_by_group: BTreeMap<GroupId, BTreeMap<ProducerId, PlacedOffsets>> = BTreeMap::new();
        for (producer, groups) in pending {
            for (group, committed) in groups {
                pending_by_group.entry(group).or_default().insert(producer, committed);
            }
        }
        let ids: BTreeSet<GroupId> =
            metadata.keys().chain(offsets.keys()).chain(pending_by_group.keys()).cloned().collect();
        for id in ids {
            if self.partition_for(&id) != partition {
                stats.bad_records += 1;
                continue;
            }
            let mut group = match metadata.remove(&id) {
                Some(m) => Group::loaded(id.clone(), m, now_ms),
                None => Group::new(id.clone()),
            };
            group.offsets = offsets.remove(&id).unwrap_or_default();
            group.pending_txn_offsets = pending_by_group.remove(&id).unwrap_or_default();
            self.groups.insert(id, group);
            stats.groups += 1;
        }
        stats
    }

    /// This broker no longer leads `partition`: its groups go, and every
    /// answer they held is NOT_COORDINATOR. Writes still in flight will be
    /// failed by the broker through `write_done`.
    pub fn unload(&mut self, partition: u32) {
        if !self.owned.remove(&partition) {
            return;
        }
        let gone: Vec<GroupId> = self.groups.keys().filter(|g| self.partition_for(g) == partition).cloned().collect();
        for id in gone {
            let mut group = self.groups.remove(&id).expect("listed");
            group.unload(&mut self.out);
        }
    }

    pub fn handle_request(&mut self, now_ms: u64, reply: R, request: GroupRequest) {
        self.out.now_ms = now_ms;
        let group_id = request.group().clone();
        if !self.owns(self.partition_for(&group_id)) {
            return self.out.reply(reply, request.refusal(ErrorCode::NotCoordinator));
        }
        let config = &self.config;
        match request {
            GroupRequest::JoinGroup(req) => {
                if !self.groups.contains_key(&group_id) && self.groups.len() >= config.max_groups {
                    let refusal = GroupRequest::JoinGroup(req).refusal(ErrorCode::CoordinatorNotAvailable);
                    return self.out.reply(reply, refusal);
                }
                let group = self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(group_id));
                group.join(now_ms, config, reply, req, &mut self.out);
            }
            GroupRequest::SyncGroup(req) => match self.groups.get_mut(&group_id) {
                Some(group) => group.sync(now_ms, reply, req, &mut self.out),
                None => self.out.reply(reply, GroupRequest::SyncGroup(req).refusal(ErrorCode::UnknownMemberId)),
            },
            GroupRequest::Heartbeat(req) => match self.groups.get_mut(&group_id) {
                Some(group) => group.heartbeat(now_ms, reply, req, &mut self.out),
                None => self.out.reply(reply, GroupResponse::Heartbeat { error: Some(ErrorCode::UnknownMemberId) }),
            },
            GroupRequest::LeaveGroup(req) => match self.groups.get_mut(&group_id) {
                Some(group) => group.leave(now_ms, config, reply, req, &mut self.out),
                None => self.out.reply(reply, GroupResponse::LeaveGroup { error: Some(ErrorCode::UnknownMemberId) }),
            },
            GroupRequest::OffsetCommit(req) => self.commit(now_ms, reply, req),
            GroupRequest::TxnOffsetCommit(req) => self.txn_commit(now_ms, reply, req),
            GroupRequest::OffsetFetch(req) => {
                let response = offsets::fetch(self.groups.get(&group_id), &req);
                self.out.reply(reply, response);
            }
        }
    }

    /// A write asked for by [`CoordinatorOutput::Write`] is committed
    /// (`Ok`, with where it was appended: its batch's base offset) or
    /// failed with the produce error the broker got.
    pub fn write_done(&mut self, now_ms: u64, id: WriteId, result: Result<Offset, ErrorCode>) {
        self.out.now_ms = now_ms;
        let Some(kind) = self.out.writes.remove(&id) else { return };
        let result = result.map_err(coordinator_error);
        match kind {
            WriteKind::Metadata { group } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.sync_written(now_ms, &self.config, id, result.map(|_| ()), &mut self.out);
                }
            }
            WriteKind::Offsets { group, reply, offsets } => {
                let error = match (result, self.groups.get_mut(&group)) {
                    (Ok(at), Some(g)) => {
                        g.commit_offsets(offsets.iter().copied(), at);
                        None
                    }
                    // Written, but the group moved meanwhile: the new coordinator replays it.
                    (Ok(_), None) => None,
                    (Err(e), _) => Some(e),
                };
                let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                self.out.reply(reply, GroupResponse::OffsetCommit { partitions });
            }
            WriteKind::TxnOffsets { group, reply, producer_id, offsets } => {
                let error = match (result, self.groups.get_mut(&group)) {
                    (Ok(at), Some(g)) => {
                        let pending = g.pending_txn_offsets.entry(producer_id).or_default();
                        pending.extend(offsets.iter().map(|&(tp, committed)| (tp, (committed, at))));
                        None
                    }
                    (Ok(_), None) => None,
                    (Err(e), _) => Some(e),
                };
                let partitions = offsets.iter().map(|(tp, _)| (*tp, error)).collect();
                self.out.reply(reply, GroupResponse::TxnOffsetCommit { partitions });
            }
        }
    }

    /// A transaction marker of `producer_id` is committed in `partition` of
    /// `__consumer_offsets` (Kafka's `onTransactionCompleted`): the offsets
    /// its transaction committed there take effect (COMMIT) or are dropped
    /// (ABORT).
    pub fn txn_completed(&mut self, partition: u32, producer_id: ProducerId, commit: bool) {
        if !self.owns(partition) {
            return; // the next coordinator replays the marker
        }
        let offsets_topic_partitions = self.config.offsets_topic_partitions;
        for (id, group) in &mut self.groups {
            if partition_for(id, offsets_topic_partitions) != partition {
                continue;
            }
            group.complete_txn_offsets(producer_id, commit);
        }
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups.values().filter_map(|g| g.next_deadline_ms()).min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.out.now_ms = now_ms;
        for group in self.groups.values_mut() {
            if group.next_deadline_ms().is_some_and(|d| d <= now_ms) {
                group.expire(now_ms, &self.config, &mut self.out);
            }
        }
    }
}

/// Kafka's mapping of a failed append of group records to what the client
/// is told (`GroupMetadataManager`): a lost leadership is NOT_COORDINATOR,
/// a write that could not be replicated is COORDINATOR_NOT_AVAILABLE.
fn coordinator_error(produce_error: ErrorCode) -> ErrorCode {
    match produce_error {
        ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError | ErrorCode::NotCoordinator => {
            ErrorCode::NotCoordinator
        }
        // A TxnOffsetCommit's producer is fenced (a newer epoch wrote the
        // partition): the producer must learn it, not retry elsewhere.
        ErrorCode::InvalidProducerEpoch | ErrorCode::ProducerFenced => produce_error,
        _ => ErrorCode::CoordinatorNotAvailable,
    }
}
