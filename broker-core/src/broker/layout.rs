//! Which brokers hold which partition (the assigned replicas, fixed for a
//! run) and each topic's min.insync.replicas. Leaders and ISRs change; the
//! controller decides them, starting from the first replica of each list.

use crate::types::{BrokerId, TopicId, TopicPartition};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicLayout {
    pub name: String,
    pub id: TopicId,
    /// Replicas per partition; the first is the preferred leader.
    pub replicas: Vec<Vec<BrokerId>>,
    /// Kafka's min.insync.replicas, already capped at the replication factor.
    pub min_insync_replicas: u32,
}

/// A topic as a scenario asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterLayout {
    pub brokers: Vec<BrokerId>,
    pub topics: Vec<TopicLayout>,
}

impl ClusterLayout {
    /// One replica per partition, spread round-robin over the brokers with each
    /// topic starting one broker further on (as Kafka's assignment does).
    pub fn single_replica(broker_count: u32, topics: &[(String, u32)]) -> ClusterLayout {
        let requests: Vec<TopicRequest> = topics
            .iter()
            .map(|(name, partitions)| TopicRequest {
                name: name.clone(),
                partitions: *partitions,
                replication_factor: 1,
                min_insync_replicas: 1,
            })
            .collect();
        ClusterLayout::new(broker_count, &requests)
    }

    /// Kafka's rack-unaware assignment, simplified: partition `p` of topic
    /// `t` has replicas `(t + p + i) % brokers` for `i` in `0..rf`, so
    /// leaders and followers spread evenly.
    pub fn new(broker_count: u32, topics: &[TopicRequest]) -> ClusterLayout {
        assert!(broker_count > 0, "a cluster needs a broker");
        assert!(topics.len() <= u16::MAX as usize, "topic ids are u16");
        let brokers: Vec<BrokerId> = (0..broker_count).map(BrokerId).collect();
        let topics = topics
            .iter()
            .enumerate()
            .map(|(t, req)| {
                assert!(
                    (1..=broker_count).contains(&req.replication_factor),
                    "topic {}: replication factor {} with {broker_count} brokers",
                    req.name,
                    req.replication_factor
                );
                TopicLayout {
                    name: req.name.clone(),
                    id: TopicId(t as u16),
                    replicas: (0..req.partitions)
                        .map(|p| {
                            (0..req.replication_factor).map(|i| BrokerId((t as u32 + p + i) % broker_count)).collect()
                        })
                        .collect(),
                    min_insync_replicas: req.min_insync_replicas.clamp(1, req.replication_factor),
                }
            })
            .collect();
        ClusterLayout { brokers, topics }
    }

    /// Effective min.insync.replicas of `tp`'s topic.
    pub fn min_insync_replicas(&self, tp: TopicPartition) -> u32 {
        self.topics.get(tp.topic.0 as usize).map_or(1, |t| t.min_insync_replicas)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicLayout> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn replicas(&self, tp: TopicPartition) -> Option<&[BrokerId]> {
        let topic = self.topics.get(tp.topic.0 as usize)?;
        topic.replicas.get(tp.partition as usize).map(|r| r.as_slice())
    }

    pub fn leader(&self, tp: TopicPartition) -> Option<BrokerId> {
        self.replicas(tp).and_then(|r| r.first().copied())
    }

    /// Every partition, in (topic, partition) order.
    pub fn partitions(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        self.topics.iter().flat_map(|t| (0..t.replicas.len() as u32).map(move |p| TopicPartition::new(t.id, p)))
    }

    pub fn partitions_led_by(&self, broker: BrokerId) -> Vec<TopicPartition> {
        self.partitions().filter(|tp| self.leader(*tp) == Some(broker)).collect()
    }

    /// Every partition `broker` holds a replica of.
    pub fn partitions_on(&self, broker: BrokerId) -> Vec<TopicPartition> {
        self.partitions().filter(|tp| self.replicas(*tp).is_some_and(|r| r.contains(&broker))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_replica_spreads_leaders() {
        let layout = ClusterLayout::single_replica(3, &[("a".into(), 4), ("b".into(), 2)]);
        let a0 = TopicPartition::new(TopicId(0), 0);
        let b0 = TopicPartition::new(TopicId(1), 0);
        assert_eq!(layout.leader(a0), Some(BrokerId(0)));
        assert_eq!(layout.leader(b0), Some(BrokerId(1)));
        assert_eq!(layout.partitions().count(), 6);
        let led: usize = (0..3).map(|b| layout.partitions_led_by(BrokerId(b)).len()).sum();
        assert_eq!(led, 6);
        assert_eq!(layout.replicas(TopicPartition::new(TopicId(2), 0)), None);
    }

    #[test]
    fn replicas_spread_over_distinct_brokers() {
        let request = |name: &str, partitions, rf, min_isr| TopicRequest {
            name: name.into(),
            partitions,
            replication_factor: rf,
            min_insync_replicas: min_isr,
        };
        let layout = ClusterLayout::new(3, &[request("a", 3, 3, 2), request("b", 1, 2, 5)]);
        let a1 = TopicPartition::new(TopicId(0), 1);
        assert_eq!(layout.replicas(a1), Some(&[BrokerId(1), BrokerId(2), BrokerId(0)][..]));
        assert_eq!(layout.min_insync_replicas(a1), 2);
        let b0 = TopicPartition::new(TopicId(1), 0);
        assert_eq!(layout.replicas(b0), Some(&[BrokerId(1), BrokerId(2)][..]));
        assert_eq!(layout.min_insync_replicas(b0), 2, "capped at the replication factor");
        for b in 0..3 {
            assert_eq!(layout.partitions_on(BrokerId(b)).len(), 3 + usize::from(b != 0));
        }
    }
}
