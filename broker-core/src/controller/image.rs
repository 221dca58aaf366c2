//! The metadata image: brokers, leaders, ISRs and epochs. The controller owns
//! the only authoritative copy; brokers receive it whole (it is small) and
//! learn leaders and epochs from it.

use crate::broker::ClusterLayout;
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, TopicPartition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A registered broker: its current registration and whether it is fenced
/// (not allowed to lead or join an ISR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub epoch: BrokerEpoch,
    pub fenced: bool,
}

/// One partition as the controller decides it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Assigned replicas (AR); the first is the preferred leader. Fixed.
    pub replicas: Vec<BrokerId>,
    /// `None`: offline, no eligible replica.
    pub leader: Option<BrokerId>,
    /// Bumped at every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Bumped at every change of leader or ISR; AlterPartition must quote it.
    pub partition_epoch: u32,
    /// In-sync replicas, in replica order; never empty.
    pub isr: Vec<BrokerId>,
    /// Eligible leader replicas (KIP-966), in replica order, disjoint from
    /// the ISR: replicas that left the ISR while it was below
    /// min.insync.replicas. The HW cannot advance then, so each holds every
    /// committed record and may lead when no ISR member can.
    pub elr: Vec<BrokerId>,
    /// The partition is offline and its last ISR member registered again
    /// after an unclean shutdown (KIP-966): it leads again only if no ELR
    /// member is left to wait for. Cleared by the next leader or ISR change.
    pub last_member_unclean: bool,
}

impl PartitionState {
    /// A new partition: the preferred replica leads, every replica is in sync.
    pub fn initial(replicas: &[BrokerId]) -> PartitionState {
        assert!(!replicas.is_empty(), "a partition needs a replica");
        let state = PartitionState {
            replicas: replicas.to_vec(),
            leader: Some(replicas[0]),
            leader_epoch: LeaderEpoch::FIRST,
            partition_epoch: 0,
            isr: replicas.to_vec(),
            elr: Vec::new(),
            last_member_unclean: false,
        };
        debug_assert_eq!(state.check(), Ok(()));
        state
    }

    /// The structural rules every state obeys. `Err` names the broken rule;
    /// used by assertions and to validate a recovered file.
    pub fn check(&self) -> Result<(), String> {
        if self.replicas.is_empty() {
            return Err("no replicas".into());
        }
        if (1..self.replicas.len()).any(|i| self.replicas[..i].contains(&self.replicas[i])) {
            return Err(format!("duplicate replica in {:?}", self.replicas));
        }
        if self.isr.is_empty() {
            return Err("empty ISR".into());
        }
        // Replica order also rules out duplicates and members outside AR.
        if self.in_replica_order(&self.isr) != self.isr {
            return Err(format!("ISR {:?} is not a subset of {:?} in replica order", self.isr, self.replicas));
        }
        if self.in_replica_order(&self.elr) != self.elr || self.elr.iter().any(|r| self.isr.contains(r)) {
            return Err(format!(
                "ELR {:?} is not a subset of {:?} outside the ISR {:?}",
                self.elr, self.replicas, self.isr
            ));
        }
        if let Some(leader) = self.leader {
            if !self.isr.contains(&leader) {
                return Err(format!("leader {leader} not in ISR {:?}", self.isr));
            }
        }
        if self.leader_epoch < LeaderEpoch::FIRST {
            return Err(format!("leader epoch {} below the first", self.leader_epoch));
        }
        Ok(())
    }

    /// The replicas among `members`, in replica order (duplicates and
    /// non-replicas dropped).
    pub fn in_replica_order(&self, members: &[BrokerId]) -> Vec<BrokerId> {
        self.replicas.iter().copied().filter(|r| members.contains(r)).collect()
    }

    /// This state with a new leader and ISR and the epochs bumped as Kafka
    /// does: a leader change bumps both epochs, an ISR change the partition
    /// epoch. `None` when nothing changes.
    pub fn transition(&self, leader: Option<BrokerId>, isr: Vec<BrokerId>) -> Option<PartitionState> {
        let leader_changed = leader != self.leader;
        if !leader_changed && isr == self.isr {
            return None;
        }
        let next = PartitionState {
            replicas: self.replicas.clone(),
            leader,
            leader_epoch: if leader_changed { self.leader_epoch.next() } else { self.leader_epoch },
            partition_epoch: self.partition_epoch.checked_add(1).expect("partition epoch overflow"),
            elr: self.elr.iter().copied().filter(|r| !isr.contains(r)).collect(),
            isr,
            last_member_unclean: false,
        };
        assert_eq!(next.check(), Ok(()), "transition of {self:?}");
        Some(next)
    }
}

/// Everything brokers need to know about the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Bumped at every change. The initial image has version 1, so a broker
    /// that knows nothing (version 0) is always sent one.
    pub version: u64,
    /// Brokers that registered at least once.
    pub brokers: BTreeMap<BrokerId, BrokerState>,
    pub partitions: BTreeMap<TopicPartition, PartitionState>,
}

impl MetadataImage {
    /// No broker registered yet; every partition as [`PartitionState::initial`].
    pub fn initial(layout: &ClusterLayout) -> MetadataImage {
        let partitions = layout
            .partitions()
            .map(|tp| (tp, PartitionState::initial(layout.replicas(tp).expect("layout lists its partitions"))))
            .collect();
        MetadataImage { version: 1, brokers: BTreeMap::new(), partitions }
    }

    /// Registered and not fenced: may lead and may join an ISR.
    pub fn is_unfenced(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    /// Every partition's structural rules; `Err` names the first broken one.
    pub fn check(&self) -> Result<(), String> {
        for (tp, p) in &self.partitions {
            p.check().map_err(|e| format!("{tp}: {e}"))?;
        }
        Ok(())
    }
}
