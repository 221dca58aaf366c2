//! Which broker holds which partition. Static in this version: the controller
//! that elects leaders arrives with replication.

use crate::types::{BrokerId, TopicId, TopicPartition};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicLayout {
    pub name: String,
    pub id: TopicId,
    /// Replicas per partition; the first is the leader.
    pub replicas: Vec<Vec<BrokerId>>,
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
        assert!(broker_count > 0, "a cluster needs a broker");
        assert!(topics.len() <= u16::MAX as usize, "topic ids are u16");
        let brokers: Vec<BrokerId> = (0..broker_count).map(BrokerId).collect();
        let topics = topics
            .iter()
            .enumerate()
            .map(|(t, (name, partitions))| TopicLayout {
                name: name.clone(),
                id: TopicId(t as u16),
                replicas: (0..*partitions).map(|p| vec![BrokerId((t as u32 + p) % broker_count)]).collect(),
            })
            .collect();
        ClusterLayout { brokers, topics }
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
}
