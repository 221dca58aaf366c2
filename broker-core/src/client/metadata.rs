//! The cluster view a client keeps: topic names and ids, partition counts,
//! partition leaders and the brokers to ask. Both clients share it, along
//! with the rules for when to refresh it and whom to ask.
//!
//! Refresh rules (Kafka's `Metadata` + `DefaultMetadataUpdater`):
//! - a refresh is *wanted* before the first successful answer, whenever a
//!   client calls [`ClientMetadata::request_refresh`] (unknown topic or leader,
//!   NOT_LEADER_OR_FOLLOWER, a disconnect), and once the view is older than
//!   `metadata_max_age_ms`;
//! - attempts are spaced by `retry_backoff_ms` (measured from the previous
//!   attempt's start), at most one is in flight;
//! - a failed attempt rotates to the next candidate broker.

use crate::protocol::{Request, TopicMetadata};
use crate::types::{BrokerId, LeaderEpoch, TopicId, TopicPartition};
use std::collections::{BTreeMap, BTreeSet};

/// Upper bound on the brokers a client remembers (bootstrap plus discovered).
pub const MAX_KNOWN_BROKERS: usize = 1024;
/// Upper bound on the topics a client remembers from one metadata answer.
pub const MAX_KNOWN_TOPICS: usize = 65_536;
/// Upper bound on partitions per topic a client accepts from a metadata answer.
pub const MAX_PARTITIONS_PER_TOPIC: usize = 65_536;

/// What the client knows about one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: TopicId,
    /// Leader per partition, indexed by partition number; `None` = no leader now.
    pub leaders: Vec<Option<BrokerId>>,
    /// Each partition's leader epoch as the answer gave it (KIP-320: fetches carry it).
    pub leader_epochs: Vec<LeaderEpoch>,
}

/// A client's cluster view plus its refresh schedule.
#[derive(Clone, Debug)]
pub struct ClientMetadata {
    bootstrap: Vec<BrokerId>,
    /// Brokers listed by the last metadata answer.
    brokers: BTreeSet<BrokerId>,
    /// Topic ids by name, and each topic's name and info by id: the hot
    /// per-partition lookups (`leader`) go by id without comparing strings.
    topic_ids: BTreeMap<String, TopicId>,
    topics: BTreeMap<TopicId, (String, TopicInfo)>,
    needs_refresh: bool,
    last_refresh_ms: Option<u64>,
    last_attempt_ms: Option<u64>,
    /// Index into [`ClientMetadata::candidates`] of the broker to ask next.
    next_broker: usize,
    /// The broker the current attempt went to.
    in_flight_to: Option<BrokerId>,
    /// Counts answers applied: topics and leaders change only when it does,
    /// so clients may cache lookups made under one version.
    version: u64,
}

impl ClientMetadata {
    /// `start` picks the first bootstrap broker to ask (clients derive it from
    /// their seed so that not every client hammers the same broker).
    pub fn new(bootstrap: Vec<BrokerId>, start: usize) -> ClientMetadata {
        assert!(!bootstrap.is_empty(), "a client needs at least one bootstrap broker");
        assert!(bootstrap.len() <= MAX_KNOWN_BROKERS, "too many bootstrap brokers");
        ClientMetadata {
            bootstrap,
            brokers: BTreeSet::new(),
            topic_ids: BTreeMap::new(),
            topics: BTreeMap::new(),
            needs_refresh: true,
            last_refresh_ms: None,
            last_attempt_ms: None,
            next_broker: start,
            in_flight_to: None,
            version: 0,
        }
    }

    /// The view's version: 0 before any answer (no topics), then one more per answer.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn bootstrap(&self) -> &[BrokerId] {
        &self.bootstrap
    }

    /// Brokers listed by the last metadata answer.
    pub fn brokers(&self) -> &BTreeSet<BrokerId> {
        &self.brokers
    }

    /// Asks for a refresh at the next allowed time.
    pub fn request_refresh(&mut self) {
        self.needs_refresh = true;
    }

    pub fn needs_refresh(&self) -> bool {
        self.needs_refresh
    }

    /// When the last successful answer arrived.
    pub fn last_refresh_ms(&self) -> Option<u64> {
        self.last_refresh_ms
    }

    /// Whether an answer has ever arrived.
    pub fn is_known(&self) -> bool {
        self.last_refresh_ms.is_some()
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight_to.is_some()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        let id = self.topic_ids.get(name)?;
        self.topics.get(id).map(|(_, info)| info)
    }

    pub fn topic_id(&self, name: &str) -> Option<TopicId> {
        self.topic_ids.get(name).copied()
    }

    pub fn topic_name(&self, id: TopicId) -> Option<&str> {
        self.topics.get(&id).map(|(name, _)| name.as_str())
    }

    pub fn partition_count(&self, name: &str) -> Option<u32> {
        self.topic(name).map(|t| t.leaders.len() as u32)
    }

    /// The partition, if the topic is known and has that many partitions.
    pub fn topic_partition(&self, name: &str, partition: u32) -> Option<TopicPartition> {
        let topic = self.topic(name)?;
        ((partition as usize) < topic.leaders.len()).then(|| TopicPartition::new(topic.id, partition))
    }

    pub fn leader(&self, tp: TopicPartition) -> Option<BrokerId> {
        let (_, info) = self.topics.get(&tp.topic)?;
        info.leaders.get(tp.partition as usize).copied().flatten()
    }

    /// The leader epoch the last answer gave for `tp` (`NONE` when unknown).
    pub fn leader_epoch(&self, tp: TopicPartition) -> LeaderEpoch {
        self.topics
            .get(&tp.topic)
            .and_then(|(_, info)| info.leader_epochs.get(tp.partition as usize).copied())
            .unwrap_or(LeaderEpoch::NONE)
    }

    /// Partitions of `name` that have a leader now (Kafka's `availablePartitionsForTopic`).
    pub fn available_partitions(&self, name: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.available_partitions_into(name, &mut out);
        out
    }

    /// [`ClientMetadata::available_partitions`] into a reused buffer (cleared first).
    pub fn available_partitions_into(&self, name: &str, out: &mut Vec<u32>) {
        out.clear();
        if let Some(t) = self.topic(name) {
            out.extend((0..t.leaders.len() as u32).filter(|&p| t.leaders[p as usize].is_some()));
        }
    }

    /// Bootstrap and discovered brokers, sorted, without duplicates.
    fn candidates(&self) -> Vec<BrokerId> {
        let all: BTreeSet<BrokerId> = self.bootstrap.iter().chain(self.brokers.iter()).copied().collect();
        all.into_iter().collect()
    }

    /// The broker the next attempt will ask.
    pub fn next_broker(&self) -> BrokerId {
        let candidates = self.candidates();
        assert!(!candidates.is_empty());
        candidates[self.next_broker % candidates.len()]
    }

    /// The `n`th known broker (bootstrap and discovered, in id order, round
    /// and round): whom a client asks for something any broker answers.
    pub fn broker_at(&self, n: usize) -> BrokerId {
        let candidates = self.candidates();
        candidates[n % candidates.len()]
    }

    /// When the next attempt should start; `None` while one is in flight.
    pub fn refresh_due_ms(&self, max_age_ms: u64, backoff_ms: u64) -> Option<u64> {
        if self.in_flight() {
            return None;
        }
        let earliest = self.last_attempt_ms.map_or(0, |t| t.saturating_add(backoff_ms));
        match self.last_refresh_ms {
            Some(refreshed) if !self.needs_refresh => Some(earliest.max(refreshed.saturating_add(max_age_ms))),
            _ => Some(earliest),
        }
    }

    /// Starts an attempt: the caller sends the returned request to the returned broker.
    pub fn start_refresh(&mut self, now_ms: u64) -> (BrokerId, Request) {
        assert!(!self.in_flight(), "one metadata request at a time");
        let broker = self.next_broker();
        self.in_flight_to = Some(broker);
        self.last_attempt_ms = Some(now_ms);
        (broker, Request::Metadata { topics: None })
    }

    /// Applies an answer to the attempt in flight. An answer to `topics: None`
    /// lists every topic, so the view is replaced, not merged — except that a
    /// partition's leader never moves back to an older leader epoch (KIP-320):
    /// a broker with stale metadata, or a deposed leader that has not heard of
    /// its successor, may answer, and its view must not override a newer one.
    pub fn handle_response(&mut self, now_ms: u64, brokers: Vec<BrokerId>, topics: Vec<TopicMetadata>) {
        assert!(self.in_flight(), "metadata answer without a request");
        self.in_flight_to = None;
        assert!(brokers.len() <= MAX_KNOWN_BROKERS, "metadata lists {} brokers", brokers.len());
        assert!(topics.len() <= MAX_KNOWN_TOPICS, "metadata lists {} topics", topics.len());
        self.brokers = brokers.into_iter().collect();
        self.topic_ids.clear();
        let known = std::mem::take(&mut self.topics);
        for topic in topics {
            if topic.error.is_some() {
                continue;
            }
            let count = topic.partitions.iter().map(|p| p.partition as usize + 1).max().unwrap_or(0);
            assert!(count <= MAX_PARTITIONS_PER_TOPIC, "topic {} has {count} partitions", topic.name);
            let mut leaders = vec![None; count];
            let mut leader_epochs = vec![LeaderEpoch::NONE; count];
            let previous = known.get(&topic.id).map(|(_, info)| info);
            for p in topic.partitions {
                let i = p.partition as usize;
                let newer_known = previous.and_then(|info| Some((info.leaders.get(i)?, *info.leader_epochs.get(i)?)));
                match newer_known {
                    Some((leader, epoch)) if epoch > p.leader_epoch => {
                        leaders[i] = *leader;
                        leader_epochs[i] = epoch;
                    }
                    _ => {
                        leaders[i] = p.leader;
                        leader_epochs[i] = p.leader_epoch;
                    }
                }
            }
            self.topic_ids.insert(topic.name.clone(), topic.id);
            self.topics.insert(topic.id, (topic.name, TopicInfo { id: topic.id, leaders, leader_epochs }));
        }
        assert_eq!(self.topics.len(), self.topic_ids.len(), "topic names and ids must map one to one");
        self.needs_refresh = false;
        self.last_refresh_ms = Some(now_ms);
        self.version += 1;
    }

    /// The attempt in flight failed (timeout, disconnect): ask the next broker next time.
    pub fn handle_failure(&mut self) {
        assert!(self.in_flight(), "metadata failure without a request");
        self.in_flight_to = None;
        self.needs_refresh = true;
        self.next_broker = self.next_broker.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PartitionMetadata;

    fn topic(name: &str, id: u16, leaders: &[Option<u32>]) -> TopicMetadata {
        TopicMetadata {
            name: name.to_string(),
            id: TopicId(id),
            error: None,
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(p, l)| PartitionMetadata {
                    partition: p as u32,
                    leader: l.map(BrokerId),
                    leader_epoch: LeaderEpoch(0),
                    replicas: vec![],
                    isr: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn a_partition_leader_never_moves_back_to_an_older_epoch() {
        let mut md = ClientMetadata::new(vec![BrokerId(0)], 0);
        let answer = |leader: u32, epoch: i32| TopicMetadata {
            name: "t".into(),
            id: TopicId(0),
            error: None,
            partitions: vec![PartitionMetadata {
                partition: 0,
                leader: Some(BrokerId(leader)),
                leader_epoch: LeaderEpoch(epoch),
                replicas: vec![],
                isr: vec![],
            }],
        };
        let tp = TopicPartition::new(TopicId(0), 0);
        md.start_refresh(0);
        md.handle_response(0, vec![BrokerId(0)], vec![answer(2, 3)]);
        md.start_refresh(1);
        md.handle_response(1, vec![BrokerId(0)], vec![answer(1, 2)]);
        assert_eq!((md.leader(tp), md.leader_epoch(tp)), (Some(BrokerId(2)), LeaderEpoch(3)), "stale answer ignored");
        md.start_refresh(2);
        md.handle_response(2, vec![BrokerId(0)], vec![answer(0, 4)]);
        assert_eq!((md.leader(tp), md.leader_epoch(tp)), (Some(BrokerId(0)), LeaderEpoch(4)));
    }

    #[test]
    fn answer_replaces_view_and_maps_names_both_ways() {
        let mut md = ClientMetadata::new(vec![BrokerId(1)], 0);
        assert_eq!(md.refresh_due_ms(300_000, 100), Some(0));
        let (broker, req) = md.start_refresh(10);
        assert_eq!(broker, BrokerId(1));
        assert_eq!(req, Request::Metadata { topics: None });
        assert_eq!(md.refresh_due_ms(300_000, 100), None);
        md.handle_response(12, vec![BrokerId(1), BrokerId(2)], vec![topic("a", 0, &[Some(1), None, Some(2)])]);
        assert!(!md.needs_refresh());
        assert_eq!(md.partition_count("a"), Some(3));
        assert_eq!(md.topic_name(TopicId(0)), Some("a"));
        assert_eq!(md.leader(TopicPartition::new(TopicId(0), 2)), Some(BrokerId(2)));
        assert_eq!(md.leader(TopicPartition::new(TopicId(0), 1)), None);
        assert_eq!(md.available_partitions("a"), vec![0, 2]);
        assert_eq!(md.topic_partition("a", 3), None);
        // Max age counts from the answer; backoff from the attempt.
        assert_eq!(md.refresh_due_ms(1000, 100), Some(1012));
        md.request_refresh();
        assert_eq!(md.refresh_due_ms(1000, 100), Some(110));
        // A later answer without the topic forgets it.
        md.start_refresh(200);
        md.handle_response(201, vec![BrokerId(1)], vec![]);
        assert_eq!(md.topic_id("a"), None);
        assert_eq!(md.topic_name(TopicId(0)), None);
    }

    #[test]
    fn failure_rotates_over_bootstrap_and_known_brokers() {
        let mut md = ClientMetadata::new(vec![BrokerId(3), BrokerId(1)], 0);
        md.start_refresh(0);
        md.handle_response(0, vec![BrokerId(2)], vec![]);
        let mut asked = vec![];
        for t in 0..4 {
            let (b, _) = md.start_refresh(t);
            asked.push(b.0);
            md.handle_failure();
        }
        assert_eq!(asked, vec![1, 2, 3, 1]);
    }
}
