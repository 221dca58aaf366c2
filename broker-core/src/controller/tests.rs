use super::*;
use crate::storage::MemStorage;
use crate::types::{LeaderEpoch, TopicId};

/// Storage shared between two incarnations (a restart).
pub(super) type Disk = crate::storage::SharedMemStorage;

/// Replicas [0, 1, 2].
pub(super) const P0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
/// Replicas [1, 2, 0].
pub(super) const P1: TopicPartition = TopicPartition { topic: TopicId(0), partition: 1 };
/// Replicas [2, 0, 1].
pub(super) const P2: TopicPartition = TopicPartition { topic: TopicId(0), partition: 2 };
pub(super) const TIMEOUT_MS: u64 = 9_000;

/// Three brokers, one topic of three partitions, replication factor 3, each
/// partition preferring a different broker.
pub(super) fn layout() -> ClusterLayout {
    let replicas = (0..3).map(|p| (0..3).map(|i| BrokerId((p + i) % 3)).collect()).collect();
    layout_with(3, replicas)
}

/// `brokers` brokers and one topic `t` with these replica lists. Built by
/// editing a single-replica layout so tests do not depend on every field.
pub(super) fn layout_with(brokers: u32, replicas: Vec<Vec<BrokerId>>) -> ClusterLayout {
    let mut layout = ClusterLayout::single_replica(brokers, &[("t".into(), replicas.len() as u32)]);
    layout.topics[0].replicas = replicas;
    layout
}

pub(super) fn b(ids: &[u32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

/// A controller on a shared disk, with the latest epoch of every broker.
pub(super) struct Harness {
    pub ctl: Controller,
    pub disk: Disk,
    pub now: u64,
    pub epochs: BTreeMap<BrokerId, BrokerEpoch>,
}

impl Harness {
    pub fn new(config: ControllerConfig) -> Harness {
        let disk = Disk::default();
        let ctl = Controller::start(config, &layout(), Box::new(disk.clone()), 1_000).unwrap();
        Harness { ctl, disk, now: 1_000, epochs: BTreeMap::new() }
    }

    pub fn handle(&mut self, request: ControllerRequest) -> ControllerResponse {
        let response = self.ctl.handle(self.now, request);
        self.ctl.check_invariants();
        response
    }

    pub fn register(&mut self, broker: u32) -> BrokerEpoch {
        let ControllerResponse::Register(Ok(epoch)) =
            self.handle(ControllerRequest::Register { broker: BrokerId(broker), clean_shutdown: true })
        else {
            panic!("registration of {broker} failed")
        };
        self.epochs.insert(BrokerId(broker), epoch);
        epoch
    }

    pub fn heartbeat_with(&mut self, broker: u32, epoch: BrokerEpoch, known_version: u64) -> ControllerResponse {
        self.handle(ControllerRequest::Heartbeat { broker: BrokerId(broker), broker_epoch: epoch, known_version })
    }

    pub fn heartbeat(&mut self, broker: u32) -> Result<Option<MetadataImage>, ControllerError> {
        let epoch = self.epochs[&BrokerId(broker)];
        match self.heartbeat_with(broker, epoch, 0) {
            ControllerResponse::Heartbeat(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Registers and unfences.
    pub fn up(&mut self, brokers: &[u32]) {
        for &broker in brokers {
            self.register(broker);
            self.heartbeat(broker).unwrap();
        }
    }

    /// Lets `broker`'s session expire while every other unfenced broker heartbeats.
    pub fn expire(&mut self, broker: u32) {
        self.now = self.now.max(self.ctl.last_contact_ms[&BrokerId(broker)] + TIMEOUT_MS);
        let others: Vec<u32> =
            self.ctl.image.brokers.iter().filter(|(id, s)| id.0 != broker && !s.fenced).map(|(id, _)| id.0).collect();
        for other in others {
            self.heartbeat(other).unwrap();
        }
        self.ctl.handle_timeout(self.now);
        self.ctl.check_invariants();
        assert!(self.ctl.image.brokers[&BrokerId(broker)].fenced);
    }

    pub fn p(&self, tp: TopicPartition) -> PartitionState {
        self.ctl.partition(tp).unwrap().clone()
    }

    /// AlterPartition from `leader` with the current epochs of everything.
    pub fn alter(&mut self, leader: u32, tp: TopicPartition, isr: &[u32]) -> Result<PartitionState, ControllerError> {
        let p = self.p(tp);
        self.alter_with(leader, self.epochs[&BrokerId(leader)], tp, p.leader_epoch, p.partition_epoch, isr)
    }

    pub fn alter_with(
        &mut self,
        leader: u32,
        broker_epoch: BrokerEpoch,
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        partition_epoch: u32,
        isr: &[u32],
    ) -> Result<PartitionState, ControllerError> {
        let new_isr =
            isr.iter().map(|&m| (BrokerId(m), self.epochs.get(&BrokerId(m)).copied().unwrap_or(BrokerEpoch(0))));
        let request = ControllerRequest::AlterPartition {
            broker: BrokerId(leader),
            broker_epoch,
            tp,
            leader_epoch,
            partition_epoch,
            new_isr: new_isr.collect(),
        };
        match self.handle(request) {
            ControllerResponse::AlterPartition(r) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn events(&mut self) -> Vec<ControllerEvent> {
        std::iter::from_fn(|| self.ctl.poll_event()).collect()
    }

    pub fn restart(&mut self, config: ControllerConfig) {
        self.ctl = Controller::start(config, &layout(), Box::new(self.disk.clone()), self.now).unwrap();
        self.ctl.check_invariants();
    }
}

fn elected(tp: TopicPartition, leader: Option<u32>, epoch: i32, pe: u32, isr: &[u32], clean: bool) -> ControllerEvent {
    ControllerEvent::LeaderElected {
        tp,
        leader: leader.map(BrokerId),
        leader_epoch: LeaderEpoch(epoch),
        partition_epoch: pe,
        isr: b(isr),
        clean,
    }
}

fn isr_changed(tp: TopicPartition, isr: &[u32], partition_epoch: u32) -> ControllerEvent {
    ControllerEvent::IsrChanged { tp, isr: b(isr), partition_epoch }
}

fn unclean() -> ControllerConfig {
    ControllerConfig { unclean_leader_election: true, ..ControllerConfig::default() }
}

#[test]
fn initial_state_follows_the_layout() {
    let mut h = Harness::new(ControllerConfig::default());
    let image = h.ctl.image().clone();
    assert_eq!(image.version, 1);
    assert!(image.brokers.is_empty());
    assert_eq!(image.partitions.len(), 3);
    assert_eq!(
        h.p(P1),
        PartitionState {
            replicas: b(&[1, 2, 0]),
            leader: Some(BrokerId(1)),
            leader_epoch: LeaderEpoch::FIRST,
            partition_epoch: 0,
            isr: b(&[1, 2, 0]),
            elr: Vec::new(),
            last_member_unclean: false,
        }
    );
    assert_eq!(h.ctl.next_timeout_ms(), None);
    assert!(h.disk.read(METADATA_FILE).is_some(), "the initial image is written at once");
    assert!(h.events().is_empty());
    assert_eq!(h.ctl.effective_min_insync_replicas(P0), Some(1));
    let h = Harness::new(ControllerConfig { min_insync_replicas: 5, ..ControllerConfig::default() });
    assert_eq!(h.ctl.effective_min_insync_replicas(P0), Some(3), "capped at the replication factor");
}

#[test]
fn register_starts_fenced_and_the_first_heartbeat_unfences() {
    let mut h = Harness::new(ControllerConfig::default());
    let epoch = h.register(0);
    assert_eq!(h.ctl.image().brokers[&BrokerId(0)], BrokerState { epoch, fenced: true });
    assert_eq!(h.ctl.next_timeout_ms(), None, "fenced brokers have no session to lose");
    let image = h.heartbeat(0).unwrap().expect("a broker knowing version 0 gets the image");
    assert!(!image.brokers[&BrokerId(0)].fenced);
    assert_eq!(image, *h.ctl.image());
    assert_eq!(h.ctl.next_timeout_ms(), Some(1_000 + TIMEOUT_MS));
    let version = h.ctl.image().version;
    assert_eq!(h.heartbeat_with(0, epoch, version), ControllerResponse::Heartbeat(Ok(None)));
    assert_eq!(
        h.events(),
        vec![
            ControllerEvent::BrokerRegistered { broker: BrokerId(0), broker_epoch: epoch },
            ControllerEvent::BrokerUnfenced { broker: BrokerId(0), broker_epoch: epoch },
        ]
    );
}

#[test]
fn heartbeats_and_registrations_are_checked() {
    let mut h = Harness::new(ControllerConfig::default());
    let resp = h.heartbeat_with(1, BrokerEpoch(1), 0);
    assert_eq!(resp.error(), Some(ControllerError::BrokerNotRegistered));
    let old = h.register(1);
    h.register(1);
    assert_eq!(h.heartbeat_with(1, old, 0).error(), Some(ControllerError::StaleBrokerEpoch));
    let resp = h.handle(ControllerRequest::Register { broker: BrokerId(7), clean_shutdown: true });
    assert_eq!(resp, ControllerResponse::Register(Err(ControllerError::InvalidRequest)));
    assert_eq!(ControllerError::StaleBrokerEpoch.name(), "STALE_BROKER_EPOCH");
    assert_eq!(ControllerError::BrokerNotRegistered.to_string(), "BROKER_ID_NOT_REGISTERED");
    assert_eq!(ControllerError::IneligibleReplica.name(), "INELIGIBLE_REPLICA");
}

#[test]
fn session_expiry_elects_from_the_isr_in_replica_order() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.events();
    // No expiry one millisecond before the deadline.
    let deadline = h.ctl.next_timeout_ms().unwrap();
    h.ctl.handle_timeout(deadline - 1);
    assert!(h.events().is_empty());
    h.expire(0);
    let e0 = h.epochs[&BrokerId(0)];
    assert_eq!(
        h.events(),
        vec![
            ControllerEvent::BrokerFenced { broker: BrokerId(0), broker_epoch: e0 },
            elected(P0, Some(1), 1, 1, &[1, 2], true),
            isr_changed(P1, &[1, 2], 1),
            isr_changed(P2, &[2, 1], 1),
        ]
    );
    assert_eq!(h.p(P2).isr, b(&[2, 1]), "ISR stays in replica order [2, 0, 1]");
    // Broker 2 goes next: P0's ISR [1, 2] loses it; P2 [2, 0, 1] with ISR
    // [2, 1] elects 1, skipping the fenced 0 that comes first in replica order.
    h.expire(2);
    assert_eq!(h.p(P2).leader, Some(BrokerId(1)));
    assert_eq!(h.p(P2).isr, b(&[1]));
    assert_eq!(h.p(P0).isr, b(&[1]));
    assert_eq!(h.ctl.next_timeout_ms(), Some(h.now + TIMEOUT_MS), "only broker 1's session is left");
}

#[test]
fn without_unclean_election_the_partition_goes_offline_keeping_its_last_isr_member() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.alter(0, P0, &[0]).unwrap();
    h.events();
    h.expire(0);
    let p = h.p(P0);
    assert_eq!((p.leader, p.isr.clone()), (None, b(&[0])), "1 and 2 are alive but were not in sync");
    assert_eq!((p.leader_epoch, p.partition_epoch), (LeaderEpoch(1), 2));
    assert!(h.events().contains(&elected(P0, None, 1, 2, &[0], true)));
    // A later unfence of an out-of-sync replica does not elect it either.
    h.register(1);
    h.heartbeat(1).unwrap();
    assert_eq!(h.p(P0).leader, None);
}

#[test]
fn with_unclean_election_a_live_out_of_sync_replica_leads() {
    let mut h = Harness::new(unclean());
    h.up(&[0, 1, 2]);
    h.alter(0, P0, &[0]).unwrap();
    h.events();
    h.expire(0);
    let p = h.p(P0);
    assert_eq!((p.leader, p.isr.clone()), (Some(BrokerId(1)), b(&[1])));
    assert!(h.events().contains(&elected(P0, Some(1), 1, 2, &[1], false)));
}

#[test]
fn unclean_election_revives_an_offline_partition_when_any_replica_unfences() {
    let mut h = Harness::new(unclean());
    h.up(&[0]);
    // Brokers 1 and 2 never started: P0 [0, 1, 2] has nobody else to elect.
    h.expire(0);
    assert_eq!(h.p(P0).leader, None);
    h.up(&[2]);
    assert_eq!(h.p(P0).leader, Some(BrokerId(2)), "2 was in the ISR: a clean election");
    assert_eq!(h.p(P0).isr, b(&[1, 2]));
}

#[test]
fn an_offline_partition_comes_back_when_its_isr_member_unfences() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.alter(0, P0, &[0]).unwrap();
    h.expire(0);
    h.events();
    let before = h.p(P0);
    // The same incarnation heartbeats again (it was only slow).
    h.heartbeat(0).unwrap();
    let after = h.p(P0);
    assert_eq!((after.leader, after.isr.clone()), (Some(BrokerId(0)), b(&[0])));
    assert_eq!(after.leader_epoch, before.leader_epoch.next());
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    let e0 = h.epochs[&BrokerId(0)];
    assert_eq!(
        h.events(),
        vec![
            ControllerEvent::BrokerUnfenced { broker: BrokerId(0), broker_epoch: e0 },
            elected(P0, Some(0), 2, 3, &[0], true)
        ]
    );
    // And after a crash and re-registration the new incarnation takes it back too.
    h.expire(0);
    h.register(0);
    assert_eq!(h.p(P0).leader, None, "a fresh registration is fenced until its heartbeat");
    h.heartbeat(0).unwrap();
    assert_eq!(h.p(P0).leader, Some(BrokerId(0)));
}

#[test]
fn alter_partition_shrinks_and_expands_the_isr() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.events();
    let version = h.ctl.image().version;
    let shrunk = h.alter(1, P1, &[1, 0]).unwrap();
    assert_eq!(shrunk.isr, b(&[1, 0]));
    assert_eq!((shrunk.leader_epoch, shrunk.partition_epoch), (LeaderEpoch::FIRST, 1));
    assert_eq!(h.ctl.image().version, version + 1);
    // Given out of order, kept in replica order [1, 2, 0].
    let expanded = h.alter(1, P1, &[0, 2, 1]).unwrap();
    assert_eq!((expanded.isr.clone(), expanded.partition_epoch), (b(&[1, 2, 0]), 2));
    assert_eq!(h.p(P1), expanded);
    assert_eq!(h.events(), vec![isr_changed(P1, &[1, 0], 1), isr_changed(P1, &[1, 2, 0], 2)]);
    // An unchanged ISR is answered without a new epoch, as Kafka does.
    assert_eq!(h.alter(1, P1, &[1, 2, 0]).unwrap().partition_epoch, 2);
    assert!(h.events().is_empty());
}

/// AlterPartition that must fail; its error.
fn reject(
    h: &mut Harness,
    leader: u32,
    epoch: BrokerEpoch,
    tp: TopicPartition,
    leader_epoch: LeaderEpoch,
    partition_epoch: u32,
    isr: &[u32],
) -> ControllerError {
    h.alter_with(leader, epoch, tp, leader_epoch, partition_epoch, isr).unwrap_err()
}

#[test]
fn alter_partition_rejections() {
    use ControllerError::*;
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.alter(0, P0, &[0]).unwrap();
    let p = h.p(P0);
    let (e0, e1) = (h.epochs[&BrokerId(0)], h.epochs[&BrokerId(1)]);
    let (le, pe) = (p.leader_epoch, p.partition_epoch);
    let version = h.ctl.image().version;
    assert_eq!(reject(&mut h, 0, BrokerEpoch(e0.0 + 100), P0, le, pe, &[0, 1]), StaleBrokerEpoch);
    assert_eq!(reject(&mut h, 1, e1, P0, le, pe, &[0, 1]), NotLeader);
    let unknown = TopicPartition::new(TopicId(0), 9);
    assert_eq!(reject(&mut h, 0, e0, unknown, le, pe, &[0]), UnknownTopicOrPartition);
    assert_eq!(reject(&mut h, 0, e0, P0, le, pe - 1, &[0, 1]), InvalidUpdateVersion);
    assert_eq!(reject(&mut h, 0, e0, P0, le, pe + 1, &[0, 1]), NotController);
    assert_eq!(reject(&mut h, 0, e0, P0, le, pe, &[1]), InvalidRequest, "the leader must stay in the ISR");
    assert_eq!(reject(&mut h, 0, e0, P0, le, pe, &[0, 0]), InvalidRequest, "duplicate member");
    assert_eq!(reject(&mut h, 1, e1, P1, LeaderEpoch::FIRST, 0, &[1, 5]), InvalidRequest, "not a replica");
    assert_eq!(h.ctl.image().version, version, "rejections change nothing");
    // Broker 2 restarted: the leader's view of it is stale (KIP-903).
    let stale_e2 = h.epochs[&BrokerId(2)];
    h.register(2);
    let req = ControllerRequest::AlterPartition {
        broker: BrokerId(0),
        broker_epoch: e0,
        tp: P0,
        leader_epoch: le,
        partition_epoch: pe,
        new_isr: vec![(BrokerId(0), e0), (BrokerId(2), stale_e2)],
    };
    assert_eq!(h.handle(req).error(), Some(IneligibleReplica));
    // With its current epoch it is still fenced until it heartbeats.
    assert_eq!(h.alter(0, P0, &[0, 2]).unwrap_err(), IneligibleReplica);
    h.heartbeat(2).unwrap();
    // Broker 1 is fenced: it cannot be added.
    h.expire(1);
    let p = h.p(P0);
    assert_eq!(h.alter(0, P0, &[0, 1]).unwrap_err(), IneligibleReplica);
    assert_eq!(h.p(P0), p);
    // P2's leadership moved from 2 to 0 when 2 re-registered. Broker 2 quoting
    // its old leader epoch is fenced by that epoch, which Kafka checks before
    // asking whether the sender leads.
    assert_eq!(h.p(P2).leader, Some(BrokerId(0)));
    let e2 = h.epochs[&BrokerId(2)];
    assert_eq!(reject(&mut h, 2, e2, P2, LeaderEpoch::FIRST, 0, &[2]), FencedLeaderEpoch);
    // Happy path still works after all that.
    assert_eq!(h.alter(0, P0, &[0, 2]).unwrap().isr, b(&[0, 2]));
}

#[test]
fn re_registration_fences_the_old_incarnation_and_moves_leadership() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.events();
    let old = h.epochs[&BrokerId(0)];
    let new = h.register(0);
    assert!(new > old);
    assert_eq!(
        h.events(),
        vec![
            ControllerEvent::BrokerFenced { broker: BrokerId(0), broker_epoch: old },
            elected(P0, Some(1), 1, 1, &[1, 2], true),
            isr_changed(P1, &[1, 2], 1),
            isr_changed(P2, &[2, 1], 1),
            ControllerEvent::BrokerRegistered { broker: BrokerId(0), broker_epoch: new },
        ]
    );
    assert_eq!(h.ctl.image().brokers[&BrokerId(0)], BrokerState { epoch: new, fenced: true });
    assert_eq!(h.heartbeat_with(0, old, 0).error(), Some(ControllerError::StaleBrokerEpoch));
    // A second registration before any heartbeat: nothing left to fence.
    let newer = h.register(0);
    assert!(newer > new);
    assert_eq!(h.events(), vec![ControllerEvent::BrokerRegistered { broker: BrokerId(0), broker_epoch: newer }]);
}

#[test]
fn epochs_strictly_increase_through_everything() {
    let mut h = Harness::new(ControllerConfig::default());
    let mut broker_epochs = Vec::new();
    let mut last: BTreeMap<TopicPartition, (LeaderEpoch, u32, Option<BrokerId>)> = BTreeMap::new();
    let mut versions = vec![h.ctl.image().version];
    for round in 0..6u32 {
        for broker in 0..3 {
            broker_epochs.push(h.register(broker));
            h.heartbeat(broker).unwrap();
        }
        let victim = round % 3;
        if round % 2 == 0 {
            let leader = h.p(P0).leader.unwrap().0;
            h.alter(leader, P0, &[leader]).unwrap();
        }
        h.expire(victim);
        if round == 3 {
            h.restart(ControllerConfig::default());
        }
        versions.push(h.ctl.image().version);
        for (tp, p) in &h.ctl.image().partitions {
            if let Some(&(le, pe, leader)) = last.get(tp) {
                assert!(p.leader_epoch >= le && p.partition_epoch > pe, "{tp} round {round}");
                assert!(p.leader == leader || p.leader_epoch > le, "{tp}: leader change without an epoch bump");
            }
            last.insert(*tp, (p.leader_epoch, p.partition_epoch, p.leader));
        }
    }
    assert!(broker_epochs.windows(2).all(|w| w[0] < w[1]), "{broker_epochs:?}");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

#[test]
fn restart_recovers_the_image_and_keeps_broker_epochs_growing() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.alter(0, P0, &[0, 2]).unwrap();
    h.expire(1);
    let image = h.ctl.image().clone();
    let highest = *h.epochs.values().max().unwrap();
    h.now += 60_000;
    h.restart(ControllerConfig::default());
    assert_eq!(*h.ctl.image(), image);
    assert!(h.events().is_empty());
    // Everyone gets a fresh session rather than being fenced at once.
    assert_eq!(h.ctl.next_timeout_ms(), Some(h.now + TIMEOUT_MS));
    h.ctl.handle_timeout(h.now);
    assert_eq!(*h.ctl.image(), image);
    // The same incarnations carry on.
    h.heartbeat(0).unwrap();
    h.heartbeat(1).unwrap();
    assert_eq!(h.alter(0, P0, &[0, 1, 2]).unwrap().isr, b(&[0, 1, 2]));
    assert!(h.register(2) > highest);
    // And that survives another restart.
    let image = h.ctl.image().clone();
    h.restart(ControllerConfig::default());
    assert_eq!(*h.ctl.image(), image);
}

#[test]
fn restart_refuses_a_corrupt_file_or_another_layout() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0]);
    let good = h.disk.read(METADATA_FILE).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    h.disk.write_all(METADATA_FILE, &bad).expect("storage");
    let err = Controller::start(ControllerConfig::default(), &layout(), Box::new(h.disk.clone()), 0).err().unwrap();
    assert!(err.contains("checksum"), "{err}");
    h.disk.write_all(METADATA_FILE, &good[..good.len() - 5]).expect("storage");
    assert!(Controller::start(ControllerConfig::default(), &layout(), Box::new(h.disk.clone()), 0).is_err());
    h.disk.write_all(METADATA_FILE, &good).expect("storage");
    let other = ClusterLayout::single_replica(3, &[("t".into(), 3)]);
    let err = Controller::start(ControllerConfig::default(), &other, Box::new(h.disk.clone()), 0).err().unwrap();
    assert!(err.contains("replicas"), "{err}");
}

#[test]
fn the_file_round_trips_and_reads_as_text() {
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1]);
    h.alter(0, P0, &[0, 1]).unwrap();
    h.alter(1, P1, &[1]).unwrap();
    h.expire(1);
    let bytes = h.disk.read(METADATA_FILE).unwrap();
    let durable = persist::decode(&bytes).unwrap();
    assert_eq!(durable.image, *h.ctl.image());
    assert_eq!(durable.next_broker_epoch, h.ctl.next_broker_epoch);
    assert_eq!(persist::encode(&durable), bytes);
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains("\npartition t0-1 replicas=1,2,0 leader=none leader-epoch=1 partition-epoch=2 isr=1 elr= last-unclean=false\n"),
        "{text}"
    );
    assert!(text.contains("\nbroker 1 epoch=2 fenced=true\n"), "{text}");
}

#[test]
fn planted_unclean_always_elects_outside_the_isr() {
    let config = ControllerConfig { unclean_always: true, ..ControllerConfig::default() };
    let mut h = Harness::new(config);
    h.up(&[0, 1, 2]);
    // P0 [0, 1, 2] with ISR [0, 2]: a clean election would pick 2.
    h.alter(0, P0, &[0, 2]).unwrap();
    h.events();
    h.expire(0);
    let p = h.p(P0);
    assert_eq!((p.leader, p.isr.clone()), (Some(BrokerId(1)), b(&[1])));
    assert!(h.events().contains(&elected(P0, Some(1), 1, 2, &[1], false)));
    // Without the plant: the ISR member.
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.alter(0, P0, &[0, 2]).unwrap();
    h.expire(0);
    assert_eq!(h.p(P0).leader, Some(BrokerId(2)));
}

#[test]
fn config_and_layout_bounds_are_errors() {
    let start =
        |config, layout: &ClusterLayout| Controller::start(config, layout, Box::new(MemStorage::new()), 0).err();
    let zero = ControllerConfig { session_timeout_ms: 0, ..ControllerConfig::default() };
    assert!(start(zero, &layout()).is_some());
    let no_min = ControllerConfig { min_insync_replicas: 0, ..ControllerConfig::default() };
    assert!(start(no_min, &layout()).is_some());
    let mut dup = layout();
    dup.topics[0].replicas[1] = b(&[1, 1]);
    assert!(start(ControllerConfig::default(), &dup).is_some());
    let mut stranger = layout();
    stranger.topics[0].replicas[1] = b(&[1, 9]);
    assert!(start(ControllerConfig::default(), &stranger).is_some());
    let huge = ClusterLayout::single_replica(MAX_BROKERS as u32 + 1, &[]);
    assert!(start(ControllerConfig::default(), &huge).is_some());
    assert!(start(ControllerConfig::default(), &layout()).is_none());
}

#[test]
fn producer_id_blocks_are_disjoint_durable_and_only_for_current_brokers() {
    let mut h = Harness::new(ControllerConfig::default());
    let e0 = h.register(0);
    let e1 = h.register(1);
    let allocate = |h: &mut Harness, broker: u32, epoch: BrokerEpoch| match h
        .handle(ControllerRequest::AllocateProducerIds { broker: BrokerId(broker), broker_epoch: epoch })
    {
        ControllerResponse::AllocateProducerIds(r) => r,
        other => panic!("answered {other:?}"),
    };
    let a = allocate(&mut h, 0, e0).unwrap();
    let b = allocate(&mut h, 1, e1).unwrap();
    assert_eq!((a.first, a.count), (crate::types::ProducerId(0), PRODUCER_ID_BLOCK_SIZE));
    assert_eq!(b.first.0, a.first.0 + i64::from(a.count), "the next block follows");
    assert_eq!(allocate(&mut h, 2, BrokerEpoch(99)), Err(ControllerError::BrokerNotRegistered));
    assert_eq!(allocate(&mut h, 0, BrokerEpoch(e0.0 + 100)), Err(ControllerError::StaleBrokerEpoch));
    // A restarted controller goes on after the last block it handed out.
    h.restart(ControllerConfig::default());
    let e0 = h.register(0);
    let c = allocate(&mut h, 0, e0).unwrap();
    assert_eq!(c.first.0, b.first.0 + i64::from(b.count));
}
