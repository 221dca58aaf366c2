//! Random registrations, heartbeats (current and stale), session expiries,
//! AlterPartitions (good and bad) and controller restarts, checking after
//! every step that the controller's rules hold and that its events replay to
//! exactly the state it reports.

use super::tests::Disk;
use super::*;
use crate::types::{LeaderEpoch, TopicId};
use proptest::prelude::*;

const BROKERS: u32 = 4;

/// Four brokers; four partitions of three replicas and one of a single replica.
fn layout() -> ClusterLayout {
    let mut replicas: Vec<Vec<BrokerId>> =
        (0..BROKERS).map(|p| (0..3).map(|i| BrokerId((p + i) % BROKERS)).collect()).collect();
    replicas.push(vec![BrokerId(3)]);
    super::tests::layout_with(BROKERS, replicas)
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        /// Whether the broker's previous process shut down cleanly.
        clean: bool,
        broker: u32,
    },
    /// `stale` quotes an older (or never issued) epoch.
    Heartbeat {
        broker: u32,
        stale: bool,
    },
    /// Time passes, then expired sessions are fenced.
    Advance {
        ms: u64,
    },
    /// `members` is a bitmask over the partition's replicas. `from_leader`
    /// picks the current leader as sender, else `sender`.
    Alter {
        partition: u32,
        from_leader: bool,
        sender: u32,
        members: u8,
        stale_member: bool,
        stale_partition_epoch: bool,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..BROKERS, any::<bool>()).prop_map(|(broker, clean)| Op::Register { broker, clean }),
        6 => (0..BROKERS, proptest::bool::weighted(0.1)).prop_map(|(broker, stale)| Op::Heartbeat { broker, stale }),
        3 => (0..12_000u64).prop_map(|ms| Op::Advance { ms }),
        5 => (0..5u32, proptest::bool::weighted(0.85), 0..BROKERS, any::<u8>(), proptest::bool::weighted(0.1), proptest::bool::weighted(0.1))
            .prop_map(|(partition, from_leader, sender, members, stale_member, stale_partition_epoch)| Op::Alter {
                partition, from_leader, sender, members, stale_member, stale_partition_epoch,
            }),
        1 => Just(Op::Restart),
    ]
}

/// What the events say a partition is; must always equal the image.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shadow {
    leader: Option<BrokerId>,
    leader_epoch: LeaderEpoch,
    partition_epoch: u32,
    isr: Vec<BrokerId>,
}

impl Shadow {
    fn of(p: &PartitionState) -> Shadow {
        Shadow {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: p.isr.clone(),
        }
    }
}

struct World {
    config: ControllerConfig,
    ctl: Controller,
    disk: Disk,
    now: u64,
    /// Every epoch each broker was given, oldest first.
    epochs: BTreeMap<BrokerId, Vec<BrokerEpoch>>,
    shadow: BTreeMap<TopicPartition, Shadow>,
    /// Who led each (partition, leader epoch): never two brokers.
    leaders: BTreeMap<(TopicPartition, LeaderEpoch), Option<BrokerId>>,
}

impl World {
    fn new(config: ControllerConfig) -> World {
        let disk = Disk::default();
        let ctl = Controller::start(config.clone(), &layout(), Box::new(disk.clone()), 0).unwrap();
        let shadow = ctl.image().partitions.iter().map(|(tp, p)| (*tp, Shadow::of(p))).collect();
        World { config, ctl, disk, now: 0, epochs: BTreeMap::new(), shadow, leaders: BTreeMap::new() }
    }

    fn current_epoch(&self, broker: BrokerId) -> BrokerEpoch {
        self.epochs.get(&broker).and_then(|e| e.last().copied()).unwrap_or(BrokerEpoch(0))
    }

    fn stale_epoch(&self, broker: BrokerId) -> BrokerEpoch {
        let issued = self.epochs.get(&broker).map_or(&[][..], |e| e.as_slice());
        match issued.len() {
            0 | 1 => BrokerEpoch(u64::MAX),
            n => issued[n - 2],
        }
    }

    fn step(&mut self, op: Op) {
        let before = self.ctl.image().clone();
        match op {
            Op::Register { broker, clean } => self.register(BrokerId(broker), clean),
            Op::Heartbeat { broker, stale } => self.heartbeat(BrokerId(broker), stale),
            Op::Advance { ms } => {
                // Every deadline lies after the last time the controller saw.
                assert!(self.ctl.next_timeout_ms().is_none_or(|d| d > self.now), "a deadline was missed");
                self.now += ms;
                self.ctl.handle_timeout(self.now);
                assert!(self.ctl.next_timeout_ms().is_none_or(|d| d > self.now), "expired sessions remain");
            }
            Op::Alter { partition, from_leader, sender, members, stale_member, stale_partition_epoch } => {
                let tp = TopicPartition::new(TopicId(0), partition);
                self.alter(tp, from_leader, BrokerId(sender), members, stale_member, stale_partition_epoch);
            }
            Op::Restart => {
                self.ctl = Controller::start(self.config.clone(), &layout(), Box::new(self.disk.clone()), self.now)
                    .expect("recovery");
                assert_eq!(*self.ctl.image(), before, "restart recovers the image");
            }
        }
        self.check(&before);
    }

    fn register(&mut self, broker: BrokerId, clean_shutdown: bool) {
        let request = ControllerRequest::Register { broker, clean_shutdown };
        let ControllerResponse::Register(Ok(epoch)) = self.ctl.handle(self.now, request) else {
            panic!("registration of a layout broker failed")
        };
        let highest = self.epochs.values().flatten().max().copied();
        assert!(highest.is_none_or(|h| epoch > h), "broker epoch {epoch:?} not above {highest:?}");
        self.epochs.entry(broker).or_default().push(epoch);
    }

    fn heartbeat(&mut self, broker: BrokerId, stale: bool) {
        let broker_epoch = if stale { self.stale_epoch(broker) } else { self.current_epoch(broker) };
        let req = ControllerRequest::Heartbeat { broker, broker_epoch, known_version: 0 };
        let ControllerResponse::Heartbeat(result) = self.ctl.handle(self.now, req) else { panic!("wrong response") };
        let registered = self.epochs.contains_key(&broker);
        match result {
            Ok(image) => {
                assert!(registered && !stale);
                assert_eq!(image.as_ref(), Some(self.ctl.image()));
                assert!(!self.ctl.image().brokers[&broker].fenced, "a heartbeat unfences");
            }
            Err(e) => assert!(stale || !registered, "{e}"),
        }
    }

    fn alter(
        &mut self,
        tp: TopicPartition,
        from_leader: bool,
        sender: BrokerId,
        members: u8,
        stale_member: bool,
        stale_pe: bool,
    ) {
        let p = self.ctl.partition(tp).unwrap().clone();
        let sender = if from_leader { p.leader.unwrap_or(sender) } else { sender };
        let mut isr: Vec<BrokerId> =
            p.replicas.iter().enumerate().filter(|(i, _)| members & (1 << i) != 0).map(|(_, r)| *r).collect();
        if from_leader && !isr.contains(&sender) {
            isr.push(sender);
        }
        let new_isr =
            isr.iter().map(|&m| (m, if stale_member { self.stale_epoch(m) } else { self.current_epoch(m) })).collect();
        let partition_epoch = if stale_pe { p.partition_epoch.wrapping_sub(1) } else { p.partition_epoch };
        let req = ControllerRequest::AlterPartition {
            broker: sender,
            broker_epoch: self.current_epoch(sender),
            tp,
            leader_epoch: p.leader_epoch,
            partition_epoch,
            new_isr,
        };
        let ControllerResponse::AlterPartition(result) = self.ctl.handle(self.now, req) else {
            panic!("wrong response")
        };
        match result {
            Ok(state) => {
                assert_eq!(p.leader, Some(sender), "only the leader alters the ISR");
                assert!(!stale_pe, "a stale partition epoch was accepted");
                assert_eq!(state.isr, p.in_replica_order(&isr));
                assert_eq!(&state, self.ctl.partition(tp).unwrap());
                let added = state.isr.iter().filter(|m| !p.isr.contains(m));
                for m in added {
                    let s = self.ctl.image().brokers[m];
                    assert!(!s.fenced && s.epoch == self.current_epoch(*m), "ineligible {m} added");
                }
            }
            Err(_) => assert_eq!(self.ctl.partition(tp).unwrap(), &p, "a rejection changed the partition"),
        }
    }

    /// The rules, and the events replayed onto the shadow state.
    fn check(&mut self, before: &MetadataImage) {
        self.ctl.check_invariants();
        let image = self.ctl.image().clone();
        assert!(image.version >= before.version);
        assert!(image == *before || image.version > before.version, "a change without a version bump");
        while let Some(event) = self.ctl.poll_event() {
            self.replay(event);
        }
        for (tp, p) in &image.partitions {
            let old = &before.partitions[tp];
            assert!(p.leader_epoch >= old.leader_epoch && p.partition_epoch >= old.partition_epoch);
            assert!(p.leader == old.leader || p.leader_epoch > old.leader_epoch, "{tp}: leader change, same epoch");
            assert!(p == old || p.partition_epoch > old.partition_epoch, "{tp}: change, same partition epoch");
            assert_eq!(self.shadow[tp], Shadow::of(p), "{tp}: events disagree with the image");
            let led = *self.leaders.entry((*tp, p.leader_epoch)).or_insert(p.leader);
            assert_eq!(led, p.leader, "{tp}: two leaders in {}", p.leader_epoch);
        }
    }

    fn replay(&mut self, event: ControllerEvent) {
        match event {
            ControllerEvent::LeaderElected { tp, leader, leader_epoch, partition_epoch, isr, clean } => {
                let s = self.shadow.get_mut(&tp).unwrap();
                assert_ne!(leader, s.leader);
                assert_eq!((leader_epoch, partition_epoch), (s.leader_epoch.next(), s.partition_epoch + 1));
                if let Some(l) = leader {
                    // Clean: from the ISR, or from the ELR (KIP-966), which the
                    // shadow does not track; an ISR member is always clean.
                    assert!(clean || !s.isr.contains(&l), "{tp}: an ISR member elected uncleanly");
                    assert!(clean || self.config.unclean_leader_election || self.config.unclean_always);
                }
                *s = Shadow { leader, leader_epoch, partition_epoch, isr };
            }
            ControllerEvent::IsrChanged { tp, isr, partition_epoch } => {
                let s = self.shadow.get_mut(&tp).unwrap();
                assert_eq!(partition_epoch, s.partition_epoch + 1);
                // Equal when only the ELR or the unclean-last-member mark moved.
                s.isr = isr;
                s.partition_epoch = partition_epoch;
            }
            ControllerEvent::BrokerRegistered { .. }
            | ControllerEvent::BrokerFenced { .. }
            | ControllerEvent::BrokerUnfenced { .. } => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn controller_rules_hold(
        unclean in any::<bool>(),
        unclean_always in proptest::bool::weighted(0.2),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let config = ControllerConfig { unclean_leader_election: unclean, unclean_always, ..ControllerConfig::default() };
        let mut world = World::new(config);
        for op in ops {
            world.step(op);
        }
    }
}
