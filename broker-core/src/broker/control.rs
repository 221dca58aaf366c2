//! The broker's side of the controller: registration (a fresh broker epoch
//! per start), heartbeats that bring the metadata image, applying the image
//! (which partitions to lead or follow, in which epoch), and the leader's ISR
//! proposals (AlterPartition).

use super::follower::{FollowerState, Phase};
use super::leader::{IsrProposal, LeaderConfig, LeaderPlants, LeaderState};
use super::{Broker, BrokerEvent, Outstanding, Role};
use crate::controller::{ControllerError, ControllerRequest, ControllerResponse, MetadataImage};
use crate::plant::Plant;
use crate::protocol::{ErrorCode, Peer, Request};
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, TopicPartition};

/// Pause before registering again after a refusal.
const REGISTER_BACKOFF_MS: u64 = 100;

#[derive(Default)]
pub(super) struct ControlState {
    /// This incarnation's registration; `None` until the controller answers.
    pub broker_epoch: Option<BrokerEpoch>,
    /// The controller's image as last received.
    pub image: Option<MetadataImage>,
    next_heartbeat_ms: u64,
    register_after_ms: u64,
}

impl Broker {
    /// When the next registration or heartbeat is due (none while one is in flight).
    pub(super) fn next_control_ms(&self) -> Option<u64> {
        let pending = self.in_flight(|o| matches!(o, Outstanding::Register | Outstanding::Heartbeat));
        match (pending, self.control.broker_epoch) {
            (true, _) => None,
            (false, Some(_)) => Some(self.control.next_heartbeat_ms),
            (false, None) => Some(self.control.register_after_ms),
        }
    }

    pub(super) fn drive_control(&mut self, now_ms: u64) {
        match self.control.broker_epoch {
            None => {
                let pending = self.in_flight(|o| matches!(o, Outstanding::Register));
                if !pending && now_ms >= self.control.register_after_ms {
                    let request = Request::Controller(ControllerRequest::Register {
                        broker: self.id,
                        clean_shutdown: self.clean_shutdown,
                    });
                    self.send(now_ms, Peer::Controller, Outstanding::Register, request);
                }
            }
            Some(broker_epoch) => {
                let pending = self.in_flight(|o| matches!(o, Outstanding::Heartbeat));
                if !pending && now_ms >= self.control.next_heartbeat_ms {
                    let known_version = self.control.image.as_ref().map_or(0, |i| i.version);
                    let request = Request::Controller(ControllerRequest::Heartbeat {
                        broker: self.id,
                        broker_epoch,
                        known_version,
                    });
                    self.send(now_ms, Peer::Controller, Outstanding::Heartbeat, request);
                    self.control.next_heartbeat_ms = now_ms + self.config.heartbeat_interval_ms;
                }
            }
        }
    }

    pub(super) fn on_register(&mut self, now_ms: u64, response: ControllerResponse) {
        match response {
            ControllerResponse::Register(Ok(epoch)) => {
                self.control.broker_epoch = Some(epoch);
                // The first heartbeat unfences the broker: send it at once.
                self.control.next_heartbeat_ms = now_ms;
                self.events.push_back(BrokerEvent::Registered { broker_epoch: epoch });
            }
            _ => self.control.register_after_ms = now_ms + REGISTER_BACKOFF_MS,
        }
    }

    pub(super) fn on_heartbeat(&mut self, now_ms: u64, response: ControllerResponse) {
        match response {
            ControllerResponse::Heartbeat(Ok(Some(image))) => self.apply_image(now_ms, image),
            ControllerResponse::Heartbeat(Ok(None)) => {}
            ControllerResponse::Heartbeat(Err(
                ControllerError::StaleBrokerEpoch | ControllerError::BrokerNotRegistered,
            )) => {
                // The controller replaced this incarnation: register afresh.
                self.control.broker_epoch = None;
                self.control.register_after_ms = now_ms;
            }
            _ => {}
        }
    }

    /// Adopts the controller's image: lead, follow or idle each replica as it
    /// says. Public so tests can hand a broker an image without a controller.
    pub fn apply_image(&mut self, now_ms: u64, image: MetadataImage) {
        if self.control.image.as_ref().is_some_and(|known| known.version > image.version) {
            return; // older news
        }
        let tps: Vec<TopicPartition> = self.replicas.keys().copied().collect();
        for tp in tps {
            let Some(state) = image.partitions.get(&tp) else { continue };
            match state.leader {
                Some(leader) if leader == self.id => {
                    let same =
                        matches!(&self.replicas[&tp].role, Role::Leader(l) if l.leader_epoch() == state.leader_epoch);
                    if same {
                        if let Role::Leader(l) = &mut self.replicas.get_mut(&tp).expect("listed").role {
                            l.on_isr_committed(state.isr.clone(), state.partition_epoch);
                        }
                        self.update_high_watermark(tp);
                    } else {
                        self.become_leader(
                            now_ms,
                            tp,
                            &state.replicas,
                            state.isr.clone(),
                            state.leader_epoch,
                            state.partition_epoch,
                        );
                    }
                }
                Some(leader) => {
                    let same = matches!(&self.replicas[&tp].role,
                        Role::Follower(f) if f.leader == leader && f.leader_epoch == state.leader_epoch);
                    if !same {
                        self.become_follower(tp, leader, state.leader_epoch);
                    }
                }
                None => self.become_idle(tp),
            }
        }
        self.control.image = Some(image);
    }

    fn leader_config(&self, tp: TopicPartition) -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: self.config.replica_lag_time_max_ms,
            min_insync_replicas: self.layout.min_insync_replicas(tp),
            plants: LeaderPlants {
                isr_join_early: self.plant(Plant::IsrJoinEarly),
                ignore_min_isr: self.plant(Plant::IgnoreMinIsr),
            },
        }
    }

    fn become_leader(
        &mut self,
        now_ms: u64,
        tp: TopicPartition,
        replicas: &[BrokerId],
        isr: Vec<BrokerId>,
        leader_epoch: LeaderEpoch,
        partition_epoch: u32,
    ) {
        self.fail_produces(tp, ErrorCode::NotLeaderOrFollower);
        let config = self.leader_config(tp);
        let forget_producers = self.plants.on(Plant::ProducerStateLostOnFailover);
        let forget_open_txns = self.plants.on(Plant::OpenTxnsLostOnFailover);
        let r = self.replicas.get_mut(&tp).expect("a replica of ours");
        if forget_producers {
            r.log.forget_producers();
        }
        if forget_open_txns {
            r.log.forget_open_txns();
        }
        let log_end = r.log.log_end_offset();
        let hw = r.high_watermark.min(log_end);
        r.high_watermark = hw;
        let state =
            LeaderState::new(config, self.id, replicas, isr, leader_epoch, partition_epoch, log_end, hw, now_ms);
        r.role = Role::Leader(Box::new(state));
        self.events.push_back(BrokerEvent::BecameLeader { tp, leader_epoch, log_end, high_watermark: hw });
        // A single-member ISR commits everything at once.
        self.update_high_watermark(tp);
        if Some(tp.topic) == self.offsets_topic || Some(tp.topic) == self.txn.state_topic {
            // A leader re-elected in a newer epoch with no image in between
            // takes over a log end too: what it loaded in the old epoch must
            // not serve (and write) until the HW reaches it.
            self.resign_partition(tp);
            self.resign_txn_partition(tp);
            self.coordinator_loads.insert(tp, (log_end, leader_epoch));
            self.load_committed_coordinators(now_ms);
        }
    }

    /// Loads the coordinator state (groups, transactional ids) of every
    /// coordinator partition this broker leads whose HW has reached the log
    /// end it had when it became leader. Until then the partition's groups
    /// and ids are answered NOT_COORDINATOR: the tail of a new leader's log
    /// may be records its predecessor wrote and never committed, and a
    /// leader elected after this one may not have them. Acting on them — a
    /// PrepareCommit's markers, a retried EndTxn answered from it — could
    /// decide a transaction one way here and the other way there.
    pub(super) fn load_committed_coordinators(&mut self, now_ms: u64) {
        if self.coordinator_loads.is_empty() {
            return;
        }
        let ready: Vec<(TopicPartition, LeaderEpoch)> = self
            .coordinator_loads
            .iter()
            .filter_map(|(tp, (log_end, epoch))| {
                let r = self.replicas.get(tp)?;
                let Role::Leader(l) = &r.role else { return None };
                let committed = r.high_watermark >= *log_end || self.plants.on(Plant::CoordinatorLoadsUncommitted);
                (l.leader_epoch() == *epoch && committed).then_some((*tp, *epoch))
            })
            .collect();
        for (tp, epoch) in ready {
            self.coordinator_loads.remove(&tp);
            self.coordinate_partition(now_ms, tp);
            self.coordinate_txn_partition(now_ms, tp, epoch);
        }
    }

    fn become_follower(&mut self, tp: TopicPartition, leader: BrokerId, leader_epoch: LeaderEpoch) {
        self.fail_produces(tp, ErrorCode::NotLeaderOrFollower);
        let r = self.replicas.get_mut(&tp).expect("a replica of ours");
        r.role = Role::Follower(FollowerState { leader, leader_epoch, phase: Phase::NeedsTruncation });
        self.events.push_back(BrokerEvent::BecameFollower { tp, leader, leader_epoch });
        self.coordinator_loads.remove(&tp);
        self.resign_partition(tp);
        self.resign_txn_partition(tp);
    }

    fn become_idle(&mut self, tp: TopicPartition) {
        self.fail_produces(tp, ErrorCode::NotLeaderOrFollower);
        self.replicas.get_mut(&tp).expect("a replica of ours").role = Role::Idle;
        self.coordinator_loads.remove(&tp);
        self.resign_partition(tp);
        self.resign_txn_partition(tp);
    }

    /// Periodic ISR shrink check of every led partition.
    pub(super) fn check_isrs(&mut self, now_ms: u64) {
        let led: Vec<TopicPartition> =
            self.replicas.iter().filter(|(_, r)| matches!(r.role, Role::Leader(_))).map(|(tp, _)| *tp).collect();
        for tp in led {
            let proposal = match &mut self.replicas.get_mut(&tp).expect("listed").role {
                Role::Leader(l) => l.take_resend(now_ms).or_else(|| l.maybe_shrink(now_ms)),
                _ => None,
            };
            if let Some(p) = proposal {
                self.propose_isr(now_ms, tp, p);
            }
        }
    }

    pub(super) fn next_isr_check_ms(&self) -> Option<u64> {
        self.replicas
            .values()
            .filter_map(|r| match &r.role {
                Role::Leader(l) if l.pending_proposal().is_none() => l.next_shrink_check_ms(),
                Role::Leader(l) => l.resend_at_ms(),
                _ => None,
            })
            .min()
    }

    /// Sends an ISR proposal to the controller, with each member's broker
    /// epoch as the image gives it (KIP-903).
    pub(super) fn propose_isr(&mut self, now_ms: u64, tp: TopicPartition, proposal: IsrProposal) {
        let (Some(broker_epoch), Some(image)) = (self.control.broker_epoch, self.control.image.as_ref()) else {
            if let Role::Leader(l) = &mut self.replicas.get_mut(&tp).expect("a replica of ours").role {
                l.on_proposal_rejected(now_ms);
            }
            return;
        };
        let Role::Leader(l) = &self.replicas[&tp].role else { return };
        let leader_epoch = l.leader_epoch();
        let new_isr = proposal
            .isr
            .iter()
            .map(|b| {
                let epoch =
                    if *b == self.id { broker_epoch } else { image.brokers.get(b).map_or(BrokerEpoch(0), |s| s.epoch) };
                (*b, epoch)
            })
            .collect();
        let request = Request::Controller(ControllerRequest::AlterPartition {
            broker: self.id,
            broker_epoch,
            tp,
            leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr,
        });
        self.send(now_ms, Peer::Controller, Outstanding::AlterPartition { tp, leader_epoch }, request);
    }

    pub(super) fn on_alter_partition(
        &mut self,
        now_ms: u64,
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        response: ControllerResponse,
    ) {
        let Some(r) = self.replicas.get_mut(&tp) else { return };
        let Role::Leader(l) = &mut r.role else { return };
        if l.leader_epoch() != leader_epoch {
            return; // answers a proposal of an earlier leadership
        }
        match response {
            ControllerResponse::AlterPartition(Ok(state)) if state.leader == Some(self.id) => {
                if state.leader_epoch == leader_epoch {
                    l.on_isr_committed(state.isr, state.partition_epoch);
                } else {
                    l.on_proposal_rejected(now_ms);
                }
            }
            // The controller knows a newer partition or leader epoch: this
            // leader's view is stale. Kafka keeps the pending state until the
            // metadata brings the news (a deposed leader must not fall back
            // to a smaller ISR and commit on it meanwhile).
            ControllerResponse::AlterPartition(Err(
                ControllerError::InvalidUpdateVersion | ControllerError::FencedLeaderEpoch | ControllerError::NotLeader,
            )) => l.on_proposal_stale(),
            _ => l.on_proposal_rejected(now_ms),
        }
        self.update_high_watermark(tp);
    }
}
