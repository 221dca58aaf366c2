//! A consumer's group membership, classic protocol: the client half of
//! consumer groups (Kafka's `AbstractCoordinator` + `ConsumerCoordinator`),
//! sans-IO.
//!
//! The member finds its coordinator (FindCoordinator), joins (JoinGroup,
//! rejoining at once with the id a MEMBER_ID_REQUIRED answer hands out),
//! computes the assignment when it is the leader (the chosen
//! [`assignor`](crate::group::assignor)), syncs (SyncGroup) and heartbeats.
//! It reports what it owns through [`MemberEvent`]s and commits offsets for
//! its host, fenced by the generation and member id it holds.
//!
//! **Revocation before rejoin.** Under an eager assignor a member gives up
//! everything it owns before it rejoins; under cooperative-sticky (KIP-429)
//! it keeps what it owns through the join and gives up only what the new
//! assignment moves, then rejoins at once so that a second rebalance hands
//! those partitions out. Either way it emits [`MemberEvent::Revoke`] and
//! waits for [`Member::revocation_done`]: the host stops processing those
//! partitions and commits what it processed first (Kafka's
//! `onPartitionsRevoked`). A member that learns it is no longer in the group
//! (its generation or id refused) has already lost its partitions
//! ([`MemberEvent::Lost`]: it must not commit them).
//!
//! A host that does not call [`Member::poll`] within `max_poll_interval_ms`
//! leaves the group (LeaveGroup), as Kafka's heartbeat thread does, and
//! rejoins at its next poll.
//!
//! Correlation ids: the member numbers its requests from
//! [`MEMBER_CORRELATION_BASE`] so that a host sharing its connections can
//! route answers by id ([`Member::owns`]).

use super::inflight::{InFlight, MIN_RETRY_BACKOFF_MS};
use crate::group::api::{
    CommittedOffset, GroupRequest, GroupResponse, Heartbeat, JoinGroup, JoinGroupResponse, LeaveGroup, OffsetCommit,
    OffsetFetch, SyncGroup, SyncGroupResponse,
};
use crate::group::assignor::{self, PartitionCounts};
use crate::group::{Assignment, AssignorKind, GenerationId, GroupId, InstanceId, MemberId, Subscription};
use crate::protocol::{ErrorCode, Request, Response};
use crate::types::{BrokerId, TopicId, TopicPartition};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// The member's correlation ids start here; its host's stay below.
pub const MEMBER_CORRELATION_BASE: u64 = 1 << 48;

/// Kafka's consumer group settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    pub group: GroupId,
    /// `group.instance.id`: a static member (KIP-345).
    pub instance: Option<InstanceId>,
    pub client_id: Arc<str>,
    /// `session.timeout.ms` (Kafka: 45,000).
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms` (Kafka: 3,000).
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms` (Kafka: 300,000); also the rebalance timeout.
    pub max_poll_interval_ms: u64,
    /// `partition.assignment.strategy`, in order of preference.
    pub assignors: Vec<AssignorKind>,
    /// `request.timeout.ms` of group requests (JoinGroup adds the rebalance
    /// timeout: the coordinator may hold it that long).
    pub request_timeout_ms: u64,
    /// `retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// Planted bug `stuck-after-fence`: told it is out of the group, the
    /// member drops its partitions and never rejoins.
    pub stuck_after_fence: bool,
    /// Planted bug `cooperative-direct-handover`: as the leader of a
    /// cooperative-sticky group, the member assigns with the eager sticky
    /// assignor.
    pub direct_handover: bool,
    /// OffsetFetch asks for stable offsets (KIP-447; Kafka's consumer does
    /// under read_committed): a partition whose offset an undecided
    /// transaction holds is answered UNSTABLE_OFFSET_COMMIT, and the fetch
    /// is reported failed for the application to retry.
    pub require_stable_offsets: bool,
}

impl MemberConfig {
    /// Kafka's defaults for `group`.
    pub fn new(group: GroupId, client_id: &str) -> MemberConfig {
        MemberConfig {
            group,
            instance: None,
            client_id: Arc::from(client_id),
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            assignors: vec![AssignorKind::Range, AssignorKind::CooperativeSticky],
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            stuck_after_fence: false,
            direct_handover: false,
            require_stable_offsets: false,
        }
    }

    fn validate(&self) {
        assert!(!self.assignors.is_empty(), "a member needs an assignor");
        assert!(self.heartbeat_interval_ms > 0 && self.heartbeat_interval_ms < self.session_timeout_ms);
        assert!(self.request_timeout_ms > 0 && self.max_poll_interval_ms > 0);
    }
}

/// What the member tells its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// Joined `generation` as `member` (the leader if `leader`), assigned
    /// `assignment` (everything it owns now).
    Joined { generation: GenerationId, member: MemberId, leader: bool, assignment: Vec<TopicPartition> },
    /// Newly owned partitions: fetch their committed offsets and start.
    Assigned { partitions: Vec<TopicPartition> },
    /// Stop processing these and commit what was processed, then call
    /// [`Member::revocation_done`]; the member waits until then.
    Revoke { partitions: Vec<TopicPartition> },
    /// No longer owned, and not to be committed: the member was fenced or
    /// dropped from the group.
    Lost { partitions: Vec<TopicPartition> },
    /// A commit finished: every partition's error (none = committed).
    Committed { commit: u64, partitions: Vec<(TopicPartition, Option<ErrorCode>)> },
    /// Committed offsets fetched (`None`: none committed). With `error`
    /// the fetch failed (no coordinator, a lost request, an unstable
    /// offset) and every offset is `None`: not known, rather than none.
    Fetched { offsets: Vec<(TopicPartition, Option<CommittedOffset>)>, error: Option<ErrorCode> },
    /// The member cannot go on (FENCED_INSTANCE_ID, INCONSISTENT_GROUP_PROTOCOL, ...).
    Fatal { error: ErrorCode },
}

/// Where the member stands in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Not in a generation; (re)joins when it can.
    Unjoined,
    /// Waiting for the host to finish a revocation.
    Revoking,
    /// A JoinGroup is in flight.
    Joining,
    /// A SyncGroup is in flight.
    Syncing,
    /// In a generation, with an assignment.
    Stable,
    /// Stopped for good (a fatal error).
    Failed,
}

#[derive(Clone, Debug)]
enum Pending {
    FindCoordinator,
    Join,
    Sync,
    Heartbeat,
    Leave,
    Commit { commit: u64, partitions: Vec<TopicPartition> },
    Fetch { partitions: Vec<TopicPartition> },
}

/// A commit asked for while the coordinator was unknown: its number, its
/// offsets, and when it gives up waiting.
type QueuedCommit = (u64, Vec<(TopicPartition, CommittedOffset)>, u64);

pub struct Member {
    config: MemberConfig,
    /// Brokers to ask for the coordinator, in turn.
    brokers: Vec<BrokerId>,
    next_broker: usize,
    coordinator: Option<BrokerId>,
    state: MemberState,
    member: Option<MemberId>,
    generation: GenerationId,
    protocol: Option<AssignorKind>,
    leader: bool,
    /// What the member owns (processes and may commit).
    owned: BTreeSet<TopicPartition>,
    /// The generation `owned` was assigned in (sent as the owned-partitions claim).
    owned_generation: GenerationId,
    /// Topics subscribed to, resolved by the host.
    subscription: Vec<TopicId>,
    /// A rebalance is needed: the member rejoins at its host's next poll
    /// (heartbeats go on meanwhile, keeping it in its generation).
    rejoin_needed: bool,
    /// A join round under way (started by a poll): retries and the rejoin a
    /// MEMBER_ID_REQUIRED asks for go on without waiting for another poll.
    joining: bool,
    in_flight: InFlight<Pending>,
    outputs: VecDeque<(BrokerId, u64, Request)>,
    events: VecDeque<MemberEvent>,
    /// Nothing is retried before this (after an error).
    retry_at_ms: u64,
    next_heartbeat_ms: Option<u64>,
    heartbeat_in_flight: bool,
    /// Last heartbeat answered without error (or join): the session as the member sees it.
    last_heartbeat_ok_ms: u64,
    last_poll_ms: u64,
    /// Left for exceeding the poll interval: rejoins at the next poll.
    left_for_poll_interval: bool,
    next_commit: u64,
    /// Commits waiting for the coordinator to be found.
    queued_commits: Vec<QueuedCommit>,
    now_ms: u64,
}

impl Member {
    pub fn new(config: MemberConfig, brokers: Vec<BrokerId>, start: usize) -> Member {
        config.validate();
        assert!(!brokers.is_empty(), "a member needs a broker to ask");
        let mut in_flight = InFlight::new();
        in_flight.skip_to(MEMBER_CORRELATION_BASE);
        Member {
            config,
            next_broker: start % brokers.len(),
            brokers,
            coordinator: None,
            state: MemberState::Unjoined,
            member: None,
            generation: GenerationId::NONE,
            protocol: None,
            leader: false,
            owned: BTreeSet::new(),
            owned_generation: GenerationId::NONE,
            subscription: Vec::new(),
            rejoin_needed: false,
            joining: false,
            in_flight,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            retry_at_ms: 0,
            next_heartbeat_ms: None,
            heartbeat_in_flight: false,
            last_heartbeat_ok_ms: 0,
            last_poll_ms: 0,
            left_for_poll_interval: false,
            next_commit: 0,
            queued_commits: Vec::new(),
            now_ms: 0,
        }
    }

    /// Whether `correlation_id` is one of the member's requests.
    pub fn owns(correlation_id: u64) -> bool {
        correlation_id >= MEMBER_CORRELATION_BASE
    }

    pub fn state(&self) -> MemberState {
        self.state
    }

    pub fn generation(&self) -> GenerationId {
        self.generation
    }

    pub fn member_id(&self) -> Option<&MemberId> {
        self.member.as_ref()
    }

    pub fn owned(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    pub fn coordinator(&self) -> Option<BrokerId> {
        self.coordinator
    }

    /// The topics to subscribe to (sorted ids, as the host resolved them).
    /// A change rejoins.
    pub fn subscribe(&mut self, now_ms: u64, mut topics: Vec<TopicId>) {
        topics.sort();
        topics.dedup();
        if topics != self.subscription {
            self.subscription = topics;
            self.rejoin_needed = true;
        }
        self.drive_app(now_ms);
    }

    /// The host's poll loop came round: the member is alive (see `max_poll_interval_ms`).
    pub fn poll(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.last_poll_ms = self.now_ms;
        self.left_for_poll_interval = false;
        self.drive_app(now_ms);
    }

    /// The host has stopped processing the revoked partitions and committed
    /// what it processed.
    pub fn revocation_done(&mut self, now_ms: u64) {
        if self.state == MemberState::Revoking {
            self.state = if self.in_generation() { MemberState::Stable } else { MemberState::Unjoined };
            self.rejoin_needed = true;
        }
        self.drive_app(now_ms);
    }

    /// Holds a generation and an id the coordinator gave it.
    fn in_generation(&self) -> bool {
        self.generation.0 >= 0 && self.member.is_some()
    }

    /// Sends heartbeats (in a generation, not between a join and its sync).
    fn heartbeating(&self) -> bool {
        self.in_generation() && matches!(self.state, MemberState::Stable | MemberState::Revoking)
    }

    /// Commits `offsets` under the generation and member id the member holds
    /// when the commit is sent; the outcome comes as
    /// [`MemberEvent::Committed`] with the returned number. With the
    /// coordinator unknown, the commit waits for it to be found again (up to
    /// `request_timeout_ms`, then COORDINATOR_NOT_AVAILABLE), as Kafka's
    /// `commitSync` does; outside a generation it is refused at once
    /// (REBALANCE_IN_PROGRESS).
    pub fn commit(&mut self, now_ms: u64, offsets: Vec<(TopicPartition, CommittedOffset)>) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        let commit = self.next_commit;
        self.next_commit += 1;
        if self.coordinator.is_none() {
            let deadline = self.now_ms + self.config.request_timeout_ms;
            self.queued_commits.push((commit, offsets, deadline));
            self.drive(now_ms);
        } else {
            self.send_commit(commit, offsets);
        }
        commit
    }

    fn send_commit(&mut self, commit: u64, offsets: Vec<(TopicPartition, CommittedOffset)>) {
        let partitions: Vec<TopicPartition> = offsets.iter().map(|(tp, _)| *tp).collect();
        let coordinator = self.coordinator.expect("sent to a known coordinator");
        if self.generation.0 < 0 || self.member.is_none() {
            let partitions = partitions.iter().map(|tp| (*tp, Some(ErrorCode::RebalanceInProgress))).collect();
            self.events.push_back(MemberEvent::Committed { commit, partitions });
            return;
        }
        let request = GroupRequest::OffsetCommit(OffsetCommit {
            group: self.config.group.clone(),
            generation: self.generation,
            member: self.member.clone(),
            instance: self.config.instance.clone(),
            offsets,
        });
        self.send(coordinator, request, Pending::Commit { commit, partitions }, 0);
    }

    /// Asks for the committed offsets of `partitions` ([`MemberEvent::Fetched`]).
    pub fn fetch_committed(&mut self, now_ms: u64, partitions: Vec<TopicPartition>) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(coordinator) = self.coordinator else {
            let offsets = partitions.iter().map(|tp| (*tp, None)).collect();
            let error = Some(ErrorCode::CoordinatorNotAvailable);
            self.events.push_back(MemberEvent::Fetched { offsets, error });
            return;
        };
        let request = GroupRequest::OffsetFetch(OffsetFetch {
            group: self.config.group.clone(),
            partitions: Some(partitions.clone()),
            require_stable: self.config.require_stable_offsets,
        });
        self.send(coordinator, request, Pending::Fetch { partitions }, 0);
    }

    pub fn poll_output(&mut self) -> Option<(BrokerId, u64, Request)> {
        self.outputs.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// When the member next needs [`Member::handle_timeout`]; never in the
    /// past unless something is due now.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        if self.state == MemberState::Failed {
            return self.in_flight.next_deadline_ms();
        }
        let mut due = vec![self.in_flight.next_deadline_ms()];
        if self.heartbeating() && self.coordinator.is_some() && !self.heartbeat_in_flight {
            due.push(self.next_heartbeat_ms);
        }
        if self.member.is_some() && !self.left_for_poll_interval {
            due.push(Some(self.last_poll_ms + self.config.max_poll_interval_ms));
        }
        if self.heartbeating() {
            due.push(Some(self.last_heartbeat_ok_ms + self.config.session_timeout_ms));
        }
        if self.retry_at_ms > self.now_ms {
            due.push(Some(self.retry_at_ms));
        }
        due.extend(self.queued_commits.iter().map(|(_, _, deadline)| Some(*deadline)));
        due.into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        while let Some(broker) = self.in_flight.expired_broker(now) {
            self.fail_broker(broker);
        }
        let (expired, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.queued_commits).into_iter().partition(|(_, _, deadline)| *deadline <= now);
        self.queued_commits = waiting;
        for (commit, offsets, _) in expired {
            let partitions = offsets.iter().map(|(tp, _)| (*tp, Some(ErrorCode::CoordinatorNotAvailable))).collect();
            self.events.push_back(MemberEvent::Committed { commit, partitions });
        }
        let polled_in_time = now < self.last_poll_ms + self.config.max_poll_interval_ms;
        if self.member.is_some() && !polled_in_time && !self.left_for_poll_interval {
            // The host stopped polling: leave, so the group moves on without it.
            self.leave_group();
            self.left_for_poll_interval = true;
        } else if self.heartbeating() && now >= self.last_heartbeat_ok_ms + self.config.session_timeout_ms {
            // No heartbeat got through for a session: the coordinator is
            // presumed gone (looked up again); the member stays in its
            // generation until the coordinator says otherwise.
            self.coordinator_unknown();
            self.last_heartbeat_ok_ms = now;
        }
        self.drive(now_ms);
    }

    pub fn handle_disconnect(&mut self, now_ms: u64, broker: BrokerId) {
        self.now_ms = self.now_ms.max(now_ms);
        self.fail_broker(broker);
        self.drive(now_ms);
    }

    pub fn handle_response(
        &mut self,
        now_ms: u64,
        broker: BrokerId,
        correlation_id: u64,
        response: Response,
        counts: &PartitionCounts,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some(pending) = self.in_flight.take(broker, correlation_id) else { return };
        match (pending, response) {
            (Pending::FindCoordinator, Response::FindCoordinator { error, coordinator }) => {
                match (error, coordinator) {
                    (None, Some(c)) => self.coordinator = Some(c),
                    _ => self.back_off(),
                }
            }
            (Pending::Join, Response::Group(GroupResponse::JoinGroup(answer))) => self.on_join(answer, counts),
            (Pending::Sync, Response::Group(GroupResponse::SyncGroup(answer))) => self.on_sync(answer),
            (Pending::Heartbeat, Response::Group(GroupResponse::Heartbeat { error })) => self.on_heartbeat(error),
            (Pending::Leave, Response::Group(GroupResponse::LeaveGroup { .. })) => {}
            (Pending::Commit { commit, .. }, Response::Group(GroupResponse::OffsetCommit { partitions })) => {
                if partitions.iter().any(|(_, e)| e.is_some_and(is_coordinator_error)) {
                    self.coordinator_unknown();
                }
                self.events.push_back(MemberEvent::Committed { commit, partitions });
            }
            (Pending::Fetch { partitions }, Response::Group(GroupResponse::OffsetFetch { error, offsets })) => {
                let offsets = match error {
                    None => offsets,
                    Some(e) => {
                        if is_coordinator_error(e) {
                            self.coordinator_unknown();
                        }
                        partitions.iter().map(|tp| (*tp, None)).collect()
                    }
                };
                self.events.push_back(MemberEvent::Fetched { offsets, error });
            }
            (pending, response) => panic!("{pending:?} answered with {:?}", response.kind()),
        }
        self.drive(now_ms);
    }

    fn on_join(&mut self, answer: JoinGroupResponse, counts: &PartitionCounts) {
        if self.state != MemberState::Joining {
            return;
        }
        self.state = MemberState::Unjoined;
        match answer.error {
            None => {
                self.member = answer.member.clone();
                self.generation = answer.generation;
                self.protocol = answer.protocol;
                self.leader = answer.leader.is_some() && answer.leader == answer.member;
                self.last_heartbeat_ok_ms = self.now_ms;
                let assignments = if self.leader { self.assign(&answer, counts) } else { Vec::new() };
                let coordinator = self.coordinator.expect("a join answer came from it");
                let request = GroupRequest::SyncGroup(SyncGroup {
                    group: self.config.group.clone(),
                    generation: self.generation,
                    member: self.member.clone().expect("joined"),
                    instance: self.config.instance.clone(),
                    protocol: self.protocol,
                    assignments,
                });
                self.state = MemberState::Syncing;
                self.send(coordinator, request, Pending::Sync, 0);
            }
            Some(ErrorCode::MemberIdRequired) => {
                // KIP-394: rejoin at once with the id handed out.
                self.member = answer.member;
            }
            Some(error) => self.on_group_error(error),
        }
    }

    /// The leader's assignment of every member, with the chosen assignor.
    fn assign(&self, answer: &JoinGroupResponse, counts: &PartitionCounts) -> Vec<(MemberId, Assignment)> {
        let mut kind = answer.protocol.expect("a successful join names its protocol");
        if kind == AssignorKind::CooperativeSticky && self.config.direct_handover {
            kind = AssignorKind::Sticky;
        }
        let members = answer.members.iter().map(|m| (m.member.clone(), m.subscription.clone())).collect();
        assignor::assign(kind, counts, &members).into_iter().collect()
    }

    fn on_sync(&mut self, answer: SyncGroupResponse) {
        if self.state != MemberState::Syncing {
            return;
        }
        self.state = MemberState::Unjoined;
        if let Some(error) = answer.error {
            return self.on_group_error(error);
        }
        let assigned: BTreeSet<TopicPartition> = answer.assignment.partitions.iter().copied().collect();
        let revoked: Vec<TopicPartition> = self.owned.difference(&assigned).copied().collect();
        let added: Vec<TopicPartition> = assigned.difference(&self.owned).copied().collect();
        self.state = MemberState::Stable;
        self.joining = false;
        self.rejoin_needed = false;
        self.next_heartbeat_ms = Some(self.now_ms + self.config.heartbeat_interval_ms);
        self.last_heartbeat_ok_ms = self.now_ms;
        let member = self.member.clone().expect("synced");
        // Cooperative: what the new assignment moves away is revoked now, and a
        // second rebalance hands it to its new owner.
        let kept: BTreeSet<TopicPartition> = self.owned.intersection(&assigned).copied().collect();
        self.owned = kept;
        self.owned.extend(added.iter().copied());
        self.owned_generation = self.generation;
        self.events.push_back(MemberEvent::Joined {
            generation: self.generation,
            member,
            leader: self.leader,
            assignment: self.owned.iter().copied().collect(),
        });
        if !added.is_empty() {
            self.events.push_back(MemberEvent::Assigned { partitions: added });
        }
        if !revoked.is_empty() {
            self.events.push_back(MemberEvent::Revoke { partitions: revoked });
            self.state = MemberState::Revoking;
        }
    }

    fn on_heartbeat(&mut self, error: Option<ErrorCode>) {
        self.heartbeat_in_flight = false;
        if !self.heartbeating() {
            return;
        }
        match error {
            None => {
                self.last_heartbeat_ok_ms = self.now_ms;
                self.next_heartbeat_ms = Some(self.now_ms + self.config.heartbeat_interval_ms);
            }
            Some(ErrorCode::RebalanceInProgress) => {
                // Still in the generation: rejoin at the next poll, heartbeat until then.
                self.last_heartbeat_ok_ms = self.now_ms;
                self.next_heartbeat_ms = Some(self.now_ms + self.config.heartbeat_interval_ms);
                self.rejoin_needed = true;
            }
            // The coordinator moved: find it and carry on heartbeating in this generation.
            Some(error) if is_coordinator_error(error) || error == ErrorCode::CoordinatorLoadInProgress => {
                if error != ErrorCode::CoordinatorLoadInProgress {
                    self.coordinator_unknown();
                }
                self.back_off();
                self.next_heartbeat_ms = Some(self.retry_at_ms);
            }
            Some(error) => self.on_group_error(error),
        }
    }

    /// An error answer to a join, sync or heartbeat.
    fn on_group_error(&mut self, error: ErrorCode) {
        match error {
            ErrorCode::RebalanceInProgress => self.rejoin_needed = true,
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration => {
                // Out of the group: what it owned is gone.
                if error == ErrorCode::UnknownMemberId {
                    self.member = None;
                }
                self.generation = GenerationId::NONE;
                self.lose_all();
                self.state = MemberState::Unjoined;
                self.rejoin_needed = true;
                if self.config.stuck_after_fence {
                    self.state = MemberState::Failed;
                }
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress => {
                if error != ErrorCode::CoordinatorLoadInProgress {
                    self.coordinator_unknown();
                }
                self.rejoin_needed = true;
                self.back_off();
            }
            ErrorCode::NetworkException | ErrorCode::RequestTimedOut => {
                self.rejoin_needed = true;
                self.back_off();
            }
            fatal => {
                self.lose_all();
                self.state = MemberState::Failed;
                self.joining = false;
                self.events.push_back(MemberEvent::Fatal { error: fatal });
            }
        }
    }

    fn lose_all(&mut self) {
        self.next_heartbeat_ms = None;
        if !self.owned.is_empty() {
            let partitions = std::mem::take(&mut self.owned).into_iter().collect();
            self.events.push_back(MemberEvent::Lost { partitions });
        }
        self.owned_generation = GenerationId::NONE;
    }

    fn leave_group(&mut self) {
        if let (Some(coordinator), Some(member)) = (self.coordinator, self.member.clone()) {
            let request = GroupRequest::LeaveGroup(LeaveGroup {
                group: self.config.group.clone(),
                member,
                instance: self.config.instance.clone(),
            });
            self.send(coordinator, request, Pending::Leave, 0);
        }
        if self.config.instance.is_none() {
            self.member = None;
        }
        self.generation = GenerationId::NONE;
        self.lose_all();
        self.state = MemberState::Unjoined;
        self.joining = false;
        self.rejoin_needed = true;
    }

    fn coordinator_unknown(&mut self) {
        if let Some(c) = self.coordinator.take() {
            // Requests in flight to it will not be answered usefully.
            for (_, pending) in self.in_flight.take_broker(c) {
                self.abandon(pending);
            }
        }
        self.heartbeat_in_flight = false;
    }

    fn fail_broker(&mut self, broker: BrokerId) {
        let lost = self.in_flight.take_broker(broker);
        if !lost.is_empty() && self.coordinator == Some(broker) {
            self.coordinator = None;
        }
        for (_, pending) in lost {
            self.abandon(pending);
        }
        self.back_off();
    }

    /// A request that will get no answer.
    fn abandon(&mut self, pending: Pending) {
        match pending {
            Pending::FindCoordinator | Pending::Leave => {}
            Pending::Join | Pending::Sync => {
                if matches!(self.state, MemberState::Joining | MemberState::Syncing) {
                    self.state = MemberState::Unjoined;
                    self.rejoin_needed = true;
                }
            }
            Pending::Heartbeat => {
                self.heartbeat_in_flight = false;
                if self.heartbeating() {
                    self.next_heartbeat_ms = Some(self.now_ms + self.config.retry_backoff_ms.max(MIN_RETRY_BACKOFF_MS));
                }
            }
            Pending::Commit { commit, partitions } => {
                let partitions = partitions.into_iter().map(|tp| (tp, Some(ErrorCode::NetworkException))).collect();
                self.events.push_back(MemberEvent::Committed { commit, partitions });
            }
            Pending::Fetch { partitions } => {
                let offsets = partitions.into_iter().map(|tp| (tp, None)).collect();
                self.events.push_back(MemberEvent::Fetched { offsets, error: Some(ErrorCode::NetworkException) });
            }
        }
    }

    fn back_off(&mut self) {
        self.retry_at_ms = self.now_ms + self.config.retry_backoff_ms.max(MIN_RETRY_BACKOFF_MS);
    }

    /// A turn of the host's poll loop: the member may start a join round.
    fn drive_app(&mut self, now_ms: u64) {
        self.drive_as(now_ms, true);
    }

    fn drive(&mut self, now_ms: u64) {
        self.drive_as(now_ms, false);
    }

    /// `app_turn`: called from the host's poll loop, where Kafka's consumer
    /// revokes and joins; other inputs only carry a join round on.
    fn drive_as(&mut self, now_ms: u64, app_turn: bool) {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        if self.state == MemberState::Failed || self.left_for_poll_interval {
            return;
        }
        let finding = self.in_flight.values().any(|p| matches!(p.payload, Pending::FindCoordinator));
        if self.coordinator.is_none() {
            if !finding && now >= self.retry_at_ms {
                let broker = self.brokers[self.next_broker];
                self.next_broker = (self.next_broker + 1) % self.brokers.len();
                let request = Request::FindCoordinator { group: self.config.group.clone() };
                let id = self.in_flight.next_id();
                self.in_flight.insert(id, broker, now + self.config.request_timeout_ms, Pending::FindCoordinator);
                self.outputs.push_back((broker, id, request));
            }
            return;
        }
        let coordinator = self.coordinator.expect("known");
        for (commit, offsets, _) in std::mem::take(&mut self.queued_commits) {
            self.send_commit(commit, offsets);
        }
        let wants_join =
            self.state == MemberState::Unjoined || (self.state == MemberState::Stable && self.rejoin_needed);
        let may_join = (app_turn || self.joining) && now >= self.retry_at_ms && !self.subscription.is_empty();
        if wants_join && may_join {
            let cooperative = self.protocol.is_some_and(AssignorKind::is_cooperative);
            let unsubscribed: Vec<TopicPartition> =
                self.owned.iter().filter(|tp| self.subscription.binary_search(&tp.topic).is_err()).copied().collect();
            if !cooperative && !self.owned.is_empty() {
                // Eager: everything is given up before the join (Kafka's onJoinPrepare).
                let partitions: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
                self.events.push_back(MemberEvent::Revoke { partitions });
                self.state = MemberState::Revoking;
            } else if !unsubscribed.is_empty() {
                // Cooperative: partitions of topics no longer subscribed to go
                // before the join — the assignor ignores claims on them and may
                // hand them to another member in this very round.
                for tp in &unsubscribed {
                    self.owned.remove(tp);
                }
                self.events.push_back(MemberEvent::Revoke { partitions: unsubscribed });
                self.state = MemberState::Revoking;
            } else {
                let request = GroupRequest::JoinGroup(self.join_request());
                self.state = MemberState::Joining;
                self.joining = true;
                self.rejoin_needed = false;
                // The coordinator may hold a join for the whole rebalance timeout.
                self.send(coordinator, request, Pending::Join, self.config.max_poll_interval_ms);
            }
        }
        let heartbeat_due = self.next_heartbeat_ms.is_some_and(|d| d <= now);
        if self.heartbeating() && !self.heartbeat_in_flight && heartbeat_due {
            let request = GroupRequest::Heartbeat(Heartbeat {
                group: self.config.group.clone(),
                generation: self.generation,
                member: self.member.clone().expect("stable"),
                instance: self.config.instance.clone(),
            });
            self.heartbeat_in_flight = true;
            self.next_heartbeat_ms = None;
            self.send(coordinator, request, Pending::Heartbeat, 0);
        }
    }

    fn join_request(&self) -> JoinGroup {
        let owned: Vec<TopicPartition> = self.owned.iter().copied().collect();
        let protocols = self
            .config
            .assignors
            .iter()
            .map(|kind| {
                let subscription = Subscription {
                    topics: self.subscription.clone(),
                    owned_partitions: owned.clone(),
                    generation: self.owned_generation,
                };
                (*kind, subscription)
            })
            .collect();
        JoinGroup {
            group: self.config.group.clone(),
            member: self.member.clone(),
            instance: self.config.instance.clone(),
            client_id: self.config.client_id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.max_poll_interval_ms,
            protocols,
        }
    }

    fn send(&mut self, broker: BrokerId, request: GroupRequest, pending: Pending, extra_timeout_ms: u64) {
        let id = self.in_flight.next_id();
        let deadline = self.now_ms + self.config.request_timeout_ms + extra_timeout_ms;
        self.in_flight.insert(id, broker, deadline, pending);
        self.outputs.push_back((broker, id, Request::Group(request)));
    }
}

/// Errors that say the coordinator moved or is not there.
fn is_coordinator_error(error: ErrorCode) -> bool {
    matches!(error, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
}
