//! A consumer in a group (subscribe mode): its partitions come from the
//! group (broker-core's `Member`, sharing the consumer's connections), its
//! positions from the group's committed offsets, and it commits as its
//! scenario says — automatically every interval, after processing a batch
//! (at-least-once), or before processing it (at-most-once).
//!
//! The program is Kafka's poll loop: each turn polls the member (the
//! application is alive), acts on what the member reported — a new
//! generation, partitions assigned (their committed offsets fetched first),
//! revoked (committed first, unless already committed) or lost — then polls
//! records and processes them for `processing_ms` of simulated time, during
//! which the member's heartbeats go on but nothing is polled. Every step is
//! in the history: `Joined`, `Revoked`, `Commit`, `Process`, and a `Seek`
//! (cause `Committed`) for each position taken from a committed offset.

use super::consumer::ConsumerDriver;
use super::partition_name;
use crate::groups::MemberView;
use crate::history::{Call, Outcome, Partition, Polled, SeekCause, TopicName};
use crate::scenario::{CommitMode, ConsumerSpec, GroupSpec};
use broker_core::client::membership::{Member, MemberConfig, MemberEvent};
use broker_core::group::api::CommittedOffset;
use broker_core::group::GroupId;
use broker_core::protocol::ErrorCode;
use broker_core::types::{LeaderEpoch, Offset, TopicId, TopicPartition};
use madsim::time::{Duration, Instant};
use std::collections::BTreeSet;

/// Pause before a pipeline asks again for committed offsets it could not get.
const FETCH_RETRY_MS: u64 = 100;

pub(super) struct GroupConsumer<'a> {
    pub driver: ConsumerDriver,
    pub group: &'a GroupSpec,
    pub name: TopicName,
    pub owned: BTreeSet<TopicPartition>,
    next_auto_commit_ms: u64,
    /// A pipeline member: it commits its offsets in its transactions, not
    /// here, and takes a partition only from a known committed offset.
    transactional: bool,
}

pub async fn run(driver: ConsumerDriver, spec: &ConsumerSpec, group: &GroupSpec) {
    let mut g = start(driver, spec, group);
    if let Some(pipeline) = &spec.pipeline {
        return super::pipeline::run(g, spec, pipeline).await;
    }
    let poll_timeout = Duration::from_millis(spec.poll_timeout_ms);
    // Unlike assign-mode consumers, members go on after the chaos phase: the
    // supervisor waits for their group to settle (group liveness), and the
    // run's end stops them.
    loop {
        g.app_turn().await;
        let (_, records) = g.driver.poll_op(Instant::now() + poll_timeout, |_| false).await;
        if records.is_empty() {
            continue;
        }
        match group.commit {
            CommitMode::CommitThenProcess => {
                g.commit_batch(&records).await;
                g.process(records).await;
            }
            CommitMode::ProcessThenCommit => {
                let batch = records.clone();
                g.process(records).await;
                g.commit_batch(&batch).await;
            }
            CommitMode::Auto => g.process(records).await,
        }
    }
}

/// The member joins its group (subscribes).
fn start<'a>(mut driver: ConsumerDriver, spec: &ConsumerSpec, group: &'a GroupSpec) -> GroupConsumer<'a> {
    let world = driver.world.clone();
    let mut config = MemberConfig::new(GroupId::new(&group.id), world.node_name(driver.node));
    config.assignors = group.assignors.clone();
    config.session_timeout_ms = group.session_timeout_ms;
    config.heartbeat_interval_ms = group.heartbeat_interval_ms;
    config.max_poll_interval_ms = group.max_poll_interval_ms;
    config.request_timeout_ms = spec.request_timeout_ms;
    if group.static_membership {
        config.instance = Some(broker_core::group::InstanceId(world.node_name(driver.node).into()));
    }
    config.stuck_after_fence = world.plants.on(broker_core::plant::Plant::StuckAfterFence);
    config.direct_handover = world.plants.on(broker_core::plant::Plant::CooperativeDirectHandover);
    config.require_stable_offsets = spec.pipeline.is_some();
    let mut member = Member::new(config, world.all_brokers(), driver.node);
    let topics: Vec<TopicId> = spec.topics.iter().filter_map(|t| world.layout.topic_by_name(t).map(|t| t.id)).collect();
    let now = driver.now_ms();
    member.subscribe(now, topics);
    driver.member = Some(member);
    driver.flush();
    GroupConsumer {
        driver,
        group,
        name: group.id.as_str().into(),
        owned: BTreeSet::new(),
        next_auto_commit_ms: now + group.auto_commit_interval_ms,
        transactional: spec.pipeline.is_some(),
    }
}

impl GroupConsumer<'_> {
    pub fn member(&mut self) -> &mut Member {
        self.driver.member.as_mut().expect("a group consumer has a member")
    }

    /// One turn of the application's poll loop.
    pub async fn app_turn(&mut self) {
        let now = self.driver.now_ms();
        self.member().poll(now);
        self.driver.flush();
        while let Some(event) = self.driver.member_events.pop_front() {
            match event {
                MemberEvent::Joined { generation, member, assignment, .. } => {
                    let call = Call::Joined(Box::new(crate::history::Joined {
                        group: self.name.clone(),
                        generation: generation.0,
                        member: member.0.as_ref().into(),
                        partitions: self.names(&assignment),
                    }));
                    let op = self.driver.world.invoke(self.driver.process, call);
                    self.driver.world.complete(op, Outcome::Ok);
                    let view = MemberView {
                        generation: Some(generation.0),
                        owned: self.names(&assignment).into_iter().collect(),
                    };
                    self.report(view);
                }
                MemberEvent::Assigned { partitions } => self.take(partitions).await,
                MemberEvent::Revoke { partitions } => {
                    // A pipeline has nothing to commit here: its offsets
                    // went with its last transaction.
                    if self.group.commit != CommitMode::CommitThenProcess && !self.transactional {
                        self.commit_positions(&partitions).await;
                    }
                    self.give_up(&partitions, false);
                    let now = self.driver.now_ms();
                    self.member().revocation_done(now);
                    self.driver.flush();
                }
                MemberEvent::Lost { partitions } => self.give_up(&partitions, true),
                // Answers nobody waits for any more (a commit or fetch abandoned).
                MemberEvent::Committed { .. } | MemberEvent::Fetched { .. } => {}
                MemberEvent::Fatal { error } => {
                    tracing::warn!(node = self.driver.node, %error, "group member stopped");
                }
            }
        }
        if self.group.commit == CommitMode::Auto && !self.transactional && now >= self.next_auto_commit_ms {
            self.next_auto_commit_ms = now + self.group.auto_commit_interval_ms;
            let owned: Vec<TopicPartition> = self.owned.iter().copied().collect();
            self.commit_positions(&owned).await;
        }
    }

    /// Newly assigned partitions: their committed offsets first, then the
    /// consumer reads them from there (or per `auto_offset_reset` where none
    /// is committed).
    async fn take(&mut self, partitions: Vec<TopicPartition>) {
        let offsets = if self.transactional {
            self.fetch_stable(&partitions).await
        } else {
            self.fetch_committed(&partitions).await.0
        };
        self.owned.extend(partitions.iter().copied());
        self.reassign();
        for (tp, committed) in offsets {
            let Some(committed) = committed.filter(|c| c.offset.0 >= 0) else { continue };
            if !self.owned.contains(&tp) {
                continue;
            }
            let p = partition_name(&self.driver.world, tp);
            self.driver.consumer.seek(&p.topic, p.partition, committed.offset);
            self.driver.record_move(tp, committed.offset, SeekCause::Committed);
        }
    }

    /// The committed offsets of `partitions`, and the fetch's error (with
    /// which every offset is `None`: unknown).
    async fn fetch_committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> (Vec<(TopicPartition, Option<CommittedOffset>)>, Option<ErrorCode>) {
        let now = self.driver.now_ms();
        self.member().fetch_committed(now, partitions.to_vec());
        self.driver.flush();
        let MemberEvent::Fetched { offsets, error } =
            self.await_event(|e| matches!(e, MemberEvent::Fetched { .. })).await
        else {
            unreachable!("awaited a fetch")
        };
        (offsets, error)
    }

    /// The committed offsets of `partitions`, asked for until the answer
    /// is known and stable (no transaction holding one undecided, KIP-447):
    /// a pipeline must not guess where its input stands.
    pub async fn fetch_stable(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Option<CommittedOffset>)> {
        loop {
            let (offsets, error) = self.fetch_committed(partitions).await;
            let Some(error) = error else { return offsets };
            tracing::debug!(node = self.driver.node, %error, "committed offsets not known yet: asking again");
            let retry = Instant::now() + Duration::from_millis(FETCH_RETRY_MS);
            while Instant::now() < retry {
                self.driver.wait(Some(retry)).await;
            }
        }
    }

    fn give_up(&mut self, partitions: &[TopicPartition], lost: bool) {
        for tp in partitions {
            self.owned.remove(tp);
        }
        let generation = if lost { None } else { self.driver.member.as_ref().map(|m| m.generation().0) };
        let owned: Vec<TopicPartition> = self.owned.iter().copied().collect();
        self.report(MemberView { generation, owned: self.names(&owned).into_iter().collect() });
        self.reassign();
        let call = Call::Revoked(Box::new(crate::history::Revoked {
            group: self.name.clone(),
            partitions: self.names(partitions),
            lost,
        }));
        let op = self.driver.world.invoke(self.driver.process, call);
        self.driver.world.complete(op, Outcome::Ok);
    }

    /// The consumer reads exactly what the member owns.
    fn reassign(&mut self) {
        let names: Vec<(String, u32)> = self
            .owned
            .iter()
            .map(|tp| {
                let p = partition_name(&self.driver.world, *tp);
                (p.topic.to_string(), p.partition)
            })
            .collect();
        let now = self.driver.now_ms();
        self.driver.consumer.assign(now, names);
        self.driver.flush();
    }

    /// Commits the positions of the partitions `records` came from.
    async fn commit_batch(&mut self, records: &[Polled]) {
        let partitions: BTreeSet<TopicPartition> = records.iter().filter_map(|r| self.tp(&r.partition)).collect();
        let partitions: Vec<TopicPartition> = partitions.into_iter().collect();
        self.commit_positions(&partitions).await;
    }

    /// Commits the consumer's positions of `partitions` (those it has one
    /// for) and waits for the answer.
    async fn commit_positions(&mut self, partitions: &[TopicPartition]) {
        let offsets: Vec<(TopicPartition, Offset)> = partitions
            .iter()
            .filter_map(|tp| {
                let p = partition_name(&self.driver.world, *tp);
                Some((*tp, self.driver.consumer.position(&p.topic, p.partition)?))
            })
            .collect();
        if offsets.is_empty() {
            return;
        }
        let member = self.driver.member.as_ref().expect("a member");
        let (generation, member_id) = (member.generation(), member.member_id().map(|m| m.0.as_ref().into()));
        let call = Call::Commit(Box::new(crate::history::Commit {
            group: self.name.clone(),
            generation: generation.0,
            member: member_id,
            offsets: offsets.iter().map(|(tp, o)| (partition_name(&self.driver.world, *tp), o.0)).collect(),
        }));
        let op = self.driver.world.invoke(self.driver.process, call);
        let now = self.driver.now_ms();
        // KIP-320 would carry the epoch of the last record consumed; ksim's
        // consumer resumes from a committed offset without validating it.
        let offsets =
            offsets.into_iter().map(|(tp, offset)| (tp, CommittedOffset { offset, leader_epoch: LeaderEpoch::NONE }));
        let commit = self.member().commit(now, offsets.collect());
        self.driver.flush();
        let MemberEvent::Committed { partitions: errors, .. } =
            self.await_event(|e| matches!(e, MemberEvent::Committed { commit: c, .. } if *c == commit)).await
        else {
            unreachable!("awaited this commit")
        };
        let error: Option<ErrorCode> = errors.iter().find_map(|(_, e)| *e);
        let outcome = match error {
            None => Outcome::Ok,
            Some(error) => Outcome::CommitFail { error: error.name().to_string() },
        };
        self.driver.world.complete(op, outcome);
    }

    /// The first queued member event `wanted` picks, taken out of the queue,
    /// waiting for it; the others stay queued for the next turn. The member
    /// answers every fetch and commit (at the latest when its request times
    /// out), so the wait is bounded.
    pub async fn await_event(&mut self, wanted: impl Fn(&MemberEvent) -> bool) -> MemberEvent {
        loop {
            if let Some(i) = self.driver.member_events.iter().position(&wanted) {
                return self.driver.member_events.remove(i).expect("found");
            }
            self.driver.wait(None).await;
        }
    }

    /// Processes a polled batch for `processing_ms`; the member keeps
    /// heartbeating meanwhile.
    async fn process(&mut self, records: Vec<Polled>) {
        let op = self.driver.world.invoke(self.driver.process, Call::Process { records });
        if self.group.processing_ms > 0 {
            let deadline = Instant::now() + Duration::from_millis(self.group.processing_ms);
            while Instant::now() < deadline {
                self.driver.wait(Some(deadline)).await;
            }
        }
        self.driver.world.complete(op, Outcome::Ok);
    }

    /// Tells the supervisor what the member now knows (group liveness).
    fn report(&self, view: MemberView) {
        if self.transactional {
            // What it owns changed: a pipeline member has not caught up
            // with it until it says so again.
            self.driver.world.pipeline_idle(self.driver.process, false);
        }
        let mut views = self.driver.world.group_views.lock().expect("group views lock");
        views.entry(self.group.id.clone()).or_default().insert(self.driver.process, view);
    }

    pub fn names(&self, partitions: &[TopicPartition]) -> Vec<Partition> {
        partitions.iter().map(|tp| partition_name(&self.driver.world, *tp)).collect()
    }

    fn tp(&self, partition: &Partition) -> Option<TopicPartition> {
        let topic = self.driver.world.layout.topic_by_name(&partition.topic)?;
        Some(TopicPartition::new(topic.id, partition.partition))
    }
}
