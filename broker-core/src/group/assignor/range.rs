//! Range (Kafka's default before 3.0): topic by topic, the members subscribed
//! to it, in member id order, each take a contiguous run of its partitions;
//! when the partitions do not divide evenly the first members take one
//! more. With several topics the same members come first every time, so
//! they end up with one extra partition per topic: range balances each
//! topic, not the whole group.

use super::{subscribers_by_topic, Draft, MemberId, PartitionCounts, Subscription};
use crate::types::TopicPartition;
use std::collections::BTreeMap;

pub(super) fn assign(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Draft {
    let mut draft: Draft = vec![Vec::new(); members.len()];
    for (topic, subscribers) in subscribers_by_topic(counts, members) {
        let count = counts[&topic];
        let shares = subscribers.len() as u32; // at most MAX_MEMBERS
        let (share, remainder) = (count / shares, count % shares);
        let mut next = 0;
        for (rank, &member) in subscribers.iter().enumerate() {
            let len = share + u32::from((rank as u32) < remainder);
            draft[member].extend((next..next + len).map(|partition| TopicPartition::new(topic, partition)));
            next += len;
        }
        assert_eq!(next, count, "range: {topic:?} not split exactly");
    }
    draft
}
