//! A tiny fake cluster for the client tests: in-memory logs, one leader per
//! partition with its leader epoch (bumped at every leader change, checked
//! as KIP-320 says), answers computed at once. Tests decide what gets lost.

use crate::protocol::{
    Acks, EpochEnd, ErrorCode, FetchPartitionResponse, ListOffsetsPartitionResponse, OffsetSpec, PartitionMetadata,
    ProducePartitionResponse, Request, Response, TopicMetadata,
};
use crate::types::{BrokerId, LeaderEpoch, Offset, Record, StoredRecord, TopicId, TopicPartition};
use std::collections::BTreeMap;

pub(crate) struct FakeCluster {
    pub brokers: Vec<BrokerId>,
    /// Indexed by `TopicId`: name and leader per partition.
    pub topics: Vec<(String, Vec<Option<BrokerId>>)>,
    pub logs: BTreeMap<TopicPartition, Vec<StoredRecord>>,
    /// First offset still in the log (retention moved it).
    pub log_start: BTreeMap<TopicPartition, i64>,
    /// Current leader epoch per partition; `LeaderEpoch::FIRST` if absent.
    pub epochs: BTreeMap<TopicPartition, LeaderEpoch>,
}

impl FakeCluster {
    /// Brokers `0..brokers`; partition `p` of every topic led by broker `p % brokers`.
    pub fn new(brokers: u32, topics: &[(&str, u32)]) -> FakeCluster {
        let brokers: Vec<BrokerId> = (0..brokers).map(BrokerId).collect();
        let topics = topics
            .iter()
            .map(|&(name, n)| (name.to_string(), (0..n).map(|p| Some(brokers[p as usize % brokers.len()])).collect()))
            .collect();
        FakeCluster { brokers, topics, logs: BTreeMap::new(), log_start: BTreeMap::new(), epochs: BTreeMap::new() }
    }

    pub fn tp(&self, name: &str, partition: u32) -> TopicPartition {
        let id = self.topics.iter().position(|(n, _)| n == name).expect("known topic");
        TopicPartition::new(TopicId(id as u16), partition)
    }

    pub fn leader(&self, tp: TopicPartition) -> Option<BrokerId> {
        self.topics[tp.topic.0 as usize].1[tp.partition as usize]
    }

    /// Moves the leadership; a change of leader bumps the leader epoch.
    pub fn set_leader(&mut self, tp: TopicPartition, leader: Option<BrokerId>) {
        let slot = &mut self.topics[tp.topic.0 as usize].1[tp.partition as usize];
        if *slot != leader {
            *slot = leader;
            self.bump_epoch(tp);
        }
    }

    pub fn epoch(&self, tp: TopicPartition) -> LeaderEpoch {
        self.epochs.get(&tp).copied().unwrap_or(LeaderEpoch::FIRST)
    }

    /// A new leader epoch (an election), whoever leads.
    pub fn bump_epoch(&mut self, tp: TopicPartition) {
        let next = self.epoch(tp).next();
        self.epochs.insert(tp, next);
    }

    /// An unclean election: `leader` takes over in a new epoch with a log
    /// that ends at `end` (what the old leader had from there is gone).
    pub fn unclean_election(&mut self, tp: TopicPartition, leader: BrokerId, end: i64) {
        assert!(end >= self.start(tp) && end <= self.end(tp));
        self.logs.entry(tp).or_default().retain(|r| r.offset.0 < end);
        self.topics[tp.topic.0 as usize].1[tp.partition as usize] = Some(leader);
        self.bump_epoch(tp);
    }

    pub fn log(&self, tp: TopicPartition) -> &[StoredRecord] {
        self.logs.get(&tp).map_or(&[], Vec::as_slice)
    }

    fn end(&self, tp: TopicPartition) -> i64 {
        self.log(tp).last().map_or(self.start(tp), |r| r.offset.0 + 1)
    }

    fn start(&self, tp: TopicPartition) -> i64 {
        self.log_start.get(&tp).copied().unwrap_or(0)
    }

    /// Appends a batch; returns its base offset.
    pub fn append(&mut self, tp: TopicPartition, records: &[Record]) -> Offset {
        let base = self.end(tp);
        let leader_epoch = self.epoch(tp);
        let log = self.logs.entry(tp).or_default();
        for (i, r) in records.iter().enumerate() {
            log.push(StoredRecord {
                offset: Offset(base + i as i64),
                timestamp_ms: r.timestamp_ms,
                leader_epoch,
                key: r.key.clone(),
                value: r.value.clone(),
            });
        }
        Offset(base)
    }

    /// Drops records below `offset` (retention).
    pub fn truncate_front(&mut self, tp: TopicPartition, offset: i64) {
        let end = self.end(tp);
        self.logs.entry(tp).or_default().retain(|r| r.offset.0 >= offset);
        self.log_start.insert(tp, offset.min(end));
    }

    pub fn metadata(&self) -> Response {
        Response::Metadata {
            brokers: self.brokers.clone(),
            topics: self
                .topics
                .iter()
                .enumerate()
                .map(|(id, (name, leaders))| TopicMetadata {
                    name: name.clone(),
                    id: TopicId(id as u16),
                    error: None,
                    partitions: leaders
                        .iter()
                        .enumerate()
                        .map(|(p, &leader)| PartitionMetadata {
                            partition: p as u32,
                            leader,
                            leader_epoch: self.epoch(TopicPartition::new(TopicId(id as u16), p as u32)),
                            replicas: leader.into_iter().collect(),
                            isr: leader.into_iter().collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Why `broker` refuses a request for `tp` naming `current` as the leader
    /// epoch: not the leader, or KIP-320's fence.
    fn refusal(&self, broker: BrokerId, tp: TopicPartition, current: LeaderEpoch) -> Option<ErrorCode> {
        let epoch = self.epoch(tp);
        if self.leader(tp) != Some(broker) {
            Some(ErrorCode::NotLeaderOrFollower)
        } else if current == LeaderEpoch::NONE || current == epoch {
            None
        } else if current < epoch {
            Some(ErrorCode::FencedLeaderEpoch)
        } else {
            Some(ErrorCode::UnknownLeaderEpoch)
        }
    }

    /// OffsetsForLeaderEpoch over the epochs of the records in the log (as
    /// ksim's epoch cache: an epoch is known once it wrote a record).
    fn epoch_end(&self, tp: TopicPartition, requested: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let log = self.log(tp);
        let floor = log.iter().rev().find(|r| r.leader_epoch <= requested)?.leader_epoch;
        let end = log.iter().find(|r| r.leader_epoch > floor).map_or(self.end(tp), |r| r.offset.0);
        Some((floor, Offset(end)))
    }

    /// The answer `broker` gives right away; `None` for acks=0 produces.
    pub fn answer(&mut self, broker: BrokerId, request: &Request) -> Option<Response> {
        match request {
            // Clients never send these; group clients have a testkit of their own.
            Request::Controller(_) | Request::FindCoordinator { .. } | Request::Group(_) => None,
            Request::OffsetsForLeaderEpoch { partitions } => {
                let partitions = partitions
                    .iter()
                    .map(|q| match self.refusal(broker, q.tp, q.current_leader_epoch) {
                        Some(error) => EpochEnd { tp: q.tp, error: Some(error), end: None },
                        None => EpochEnd { tp: q.tp, error: None, end: self.epoch_end(q.tp, q.leader_epoch) },
                    })
                    .collect();
                Some(Response::OffsetsForLeaderEpoch { partitions })
            }
            Request::Metadata { .. } => Some(self.metadata()),
            Request::Produce { acks, batches, .. } => {
                let mut partitions = Vec::new();
                for (tp, records) in batches {
                    let (error, base_offset) = if self.leader(*tp) != Some(broker) {
                        (Some(ErrorCode::NotLeaderOrFollower), Offset(-1))
                    } else {
                        (None, self.append(*tp, records))
                    };
                    partitions.push(ProducePartitionResponse { tp: *tp, error, base_offset });
                }
                (*acks != Acks::None).then_some(Response::Produce { partitions })
            }
            Request::Fetch { partitions, .. } => {
                let partitions = partitions
                    .iter()
                    .map(|fp| {
                        let tp = fp.tp;
                        let (start, end) = (self.start(tp), self.end(tp));
                        let mut answer = FetchPartitionResponse {
                            tp,
                            error: None,
                            high_watermark: Offset(end),
                            log_start_offset: Offset(start),
                            log_end_offset: Offset(end),
                            records: vec![],
                        };
                        if let Some(error) = self.refusal(broker, tp, fp.current_leader_epoch) {
                            answer.error = Some(error);
                        } else if fp.fetch_offset.0 < start || fp.fetch_offset.0 > end {
                            answer.error = Some(ErrorCode::OffsetOutOfRange);
                        } else {
                            let mut bytes = 0usize;
                            for r in self.log(tp).iter().filter(|r| r.offset >= fp.fetch_offset) {
                                if !answer.records.is_empty()
                                    && bytes + r.size_bytes() > fp.partition_max_bytes as usize
                                {
                                    break;
                                }
                                bytes += r.size_bytes();
                                answer.records.push(r.clone());
                            }
                        }
                        answer
                    })
                    .collect();
                Some(Response::Fetch { partitions })
            }
            Request::ListOffsets { partitions } => {
                let partitions = partitions
                    .iter()
                    .map(|p| {
                        let tp = p.tp;
                        if let Some(error) = self.refusal(broker, tp, p.current_leader_epoch) {
                            return ListOffsetsPartitionResponse {
                                tp,
                                error: Some(error),
                                offset: Offset(-1),
                                leader_epoch: LeaderEpoch::NONE,
                            };
                        }
                        let offset = match p.spec {
                            OffsetSpec::Earliest => self.start(tp),
                            OffsetSpec::Latest => self.end(tp),
                        };
                        ListOffsetsPartitionResponse {
                            tp,
                            error: None,
                            offset: Offset(offset),
                            leader_epoch: self.epoch(tp),
                        }
                    })
                    .collect();
                Some(Response::ListOffsets { partitions })
            }
        }
    }
}
