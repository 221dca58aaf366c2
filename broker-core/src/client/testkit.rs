//! A tiny fake cluster for the client tests: in-memory logs, one leader per
//! partition with its leader epoch (bumped at every leader change, checked
//! as KIP-320 says), answers computed at once. Tests decide what gets lost.
//! Idempotent batches go through the brokers' own producer-state table, so
//! the fake recognises retries and gaps as a broker would. Tests write
//! transactions straight into a log (`append_txn`, then `end_txn`'s marker);
//! fetches answer by isolation level: read_uncommitted up to the log end,
//! read_committed up to the last stable offset with the aborted
//! transactions in range, both worked out from the log itself (so they
//! follow truncations and retention).

use crate::log::{AppendCheck, ProducerStateTable};
use crate::protocol::{
    Acks, EpochEnd, ErrorCode, FetchPartition, FetchPartitionResponse, Isolation, ListOffsetsPartitionResponse,
    OffsetSpec, PartitionMetadata, ProduceBatch, ProducePartitionResponse, Request, Response, TopicMetadata,
};
use crate::types::{
    AbortedTxn, BatchKind, BrokerId, LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, Record,
    StoredRecord, TopicId, TopicPartition, TxnMarker,
};
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
    /// Idempotent producers per partition (kept across leader changes, as a
    /// new leader rebuilds them from its log).
    pub producers: BTreeMap<TopicPartition, ProducerStateTable>,
    /// The next id InitProducerId hands out.
    pub next_producer_id: i64,
}

impl FakeCluster {
    /// Brokers `0..brokers`; partition `p` of every topic led by broker `p % brokers`.
    pub fn new(brokers: u32, topics: &[(&str, u32)]) -> FakeCluster {
        let brokers: Vec<BrokerId> = (0..brokers).map(BrokerId).collect();
        let topics = topics
            .iter()
            .map(|&(name, n)| (name.to_string(), (0..n).map(|p| Some(brokers[p as usize % brokers.len()])).collect()))
            .collect();
        FakeCluster {
            brokers,
            topics,
            logs: BTreeMap::new(),
            log_start: BTreeMap::new(),
            epochs: BTreeMap::new(),
            producers: BTreeMap::new(),
            next_producer_id: 0,
        }
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
        self.producers.entry(tp).or_default().truncate_to(Offset(end));
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

    /// A leader's answer to a batch: an idempotent one is checked against
    /// the partition's producer state first (a retry returns the original
    /// offset, unwritten). Returns its base offset.
    pub fn produce(
        &mut self,
        tp: TopicPartition,
        records: &[Record],
        producer: Option<ProducerStamp>,
    ) -> Result<Offset, ErrorCode> {
        let Some(stamp) = producer else { return Ok(self.append(tp, records)) };
        let table = self.producers.entry(tp).or_default();
        match table.check_batch(stamp, records.len()) {
            AppendCheck::Duplicate { first_offset, .. } => Ok(first_offset),
            AppendCheck::Refuse(error) => Err(error),
            AppendCheck::Append => {
                let base = self.append(tp, records);
                self.producers.entry(tp).or_default().record_batch(stamp, records.len(), base);
                Ok(base)
            }
        }
    }

    /// Appends a batch; returns its base offset.
    pub fn append(&mut self, tp: TopicPartition, records: &[Record]) -> Offset {
        self.append_batch(tp, records, None, BatchKind::Data)
    }

    /// Appends a batch of `kind` from `producer`; returns its base offset.
    fn append_batch(
        &mut self,
        tp: TopicPartition,
        records: &[Record],
        producer: Option<ProducerStamp>,
        kind: BatchKind,
    ) -> Offset {
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
                producer,
                kind,
            });
        }
        Offset(base)
    }

    /// Appends a batch that `producer` writes inside its transaction (which
    /// this opens if none is); returns its base offset.
    pub fn append_txn(&mut self, tp: TopicPartition, producer: ProducerId, records: &[Record]) -> Offset {
        assert!(!records.is_empty(), "an empty transactional batch");
        let written = self.log(tp).iter().filter(|r| r.kind == BatchKind::Transactional);
        let base_sequence = written.filter(|r| r.producer.is_some_and(|s| s.id == producer)).count() as i32;
        let stamp = ProducerStamp { id: producer, epoch: ProducerEpoch(0), base_sequence };
        self.append_batch(tp, records, Some(stamp), BatchKind::Transactional)
    }

    /// Appends `producer`'s COMMIT or ABORT marker, ending its transaction
    /// in `tp`; returns the marker's offset.
    pub fn end_txn(&mut self, tp: TopicPartition, producer: ProducerId, commit: bool) -> Offset {
        let stamp = ProducerStamp { id: producer, epoch: ProducerEpoch(0), base_sequence: -1 };
        let marker = BatchKind::Marker(TxnMarker { commit, coordinator_epoch: LeaderEpoch::FIRST });
        let control = Record { key: None, value: bytes::Bytes::new(), timestamp_ms: 0 };
        self.append_batch(tp, &[control], Some(stamp), marker)
    }

    /// The last stable offset (the first offset of the earliest open
    /// transaction, else the log end: the fake's HW) and the aborted
    /// transactions in marker order, as a leader's aborted-transaction index
    /// holds them.
    pub fn txn_state(&self, tp: TopicPartition) -> (Offset, Vec<AbortedTxn>) {
        let mut open: BTreeMap<ProducerId, Offset> = BTreeMap::new();
        let mut aborted = Vec::new();
        for r in self.log(tp) {
            let Some(stamp) = r.producer else { continue };
            match r.kind {
                BatchKind::Data => {}
                BatchKind::Transactional => {
                    open.entry(stamp.id).or_insert(r.offset);
                }
                // A marker without an open transaction ends nothing (a retry).
                BatchKind::Marker(marker) => match open.remove(&stamp.id) {
                    Some(first_offset) if !marker.commit => {
                        aborted.push(AbortedTxn { producer_id: stamp.id, first_offset, last_offset: r.offset })
                    }
                    _ => {}
                },
            }
        }
        let lso = open.values().min().map_or(self.end(tp), |&first| first.0);
        (Offset(lso), aborted)
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

    /// One partition of a consumer fetch: read_uncommitted up to the log end,
    /// read_committed up to the last stable offset, listing the aborted
    /// transactions that may have records among those returned (as Kafka's
    /// `collectAbortedTransactions`: ended at or after the fetch offset,
    /// begun before the end of what is returned).
    fn fetch_partition(&self, broker: BrokerId, fp: &FetchPartition, isolation: Isolation) -> FetchPartitionResponse {
        let tp = fp.tp;
        let (start, end) = (self.start(tp), self.end(tp));
        let (lso, aborted) = self.txn_state(tp);
        let mut answer = FetchPartitionResponse {
            tp,
            error: None,
            high_watermark: Offset(end),
            log_start_offset: Offset(start),
            log_end_offset: Offset(end),
            last_stable_offset: lso,
            aborted: vec![],
            records: vec![],
        };
        if let Some(error) = self.refusal(broker, tp, fp.current_leader_epoch) {
            answer.error = Some(error);
            return answer;
        }
        if fp.fetch_offset.0 < start || fp.fetch_offset.0 > end {
            answer.error = Some(ErrorCode::OffsetOutOfRange);
            return answer;
        }
        let read_committed = isolation == Isolation::ReadCommitted;
        let upper = if read_committed { lso } else { Offset(end) };
        let mut bytes = 0usize;
        for r in self.log(tp).iter().filter(|r| r.offset >= fp.fetch_offset && r.offset < upper) {
            if !answer.records.is_empty() && bytes + r.size_bytes() > fp.partition_max_bytes as usize {
                break;
            }
            bytes += r.size_bytes();
            answer.records.push(r.clone());
        }
        if read_committed {
            let returned_end = answer.records.last().map_or(fp.fetch_offset, |r| r.offset.next());
            answer.aborted = aborted
                .into_iter()
                .filter(|a| a.last_offset >= fp.fetch_offset && a.first_offset < returned_end)
                .collect();
        }
        answer
    }

    /// The answer `broker` gives right away; `None` for acks=0 produces.
    pub fn answer(&mut self, broker: BrokerId, request: &Request) -> Option<Response> {
        match request {
            // Clients never send these; group clients have a testkit of their own.
            Request::Controller(_)
            | Request::FindCoordinator { .. }
            | Request::Group(_)
            | Request::FindTxnCoordinator { .. }
            | Request::Txn(_)
            | Request::WriteTxnMarkers { .. } => None,
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
            Request::InitProducerId => {
                let id = ProducerId(self.next_producer_id);
                self.next_producer_id += 1;
                Some(Response::InitProducerId { result: Ok((id, ProducerEpoch(0))) })
            }
            Request::Produce { acks, batches, .. } => {
                let mut partitions = Vec::new();
                for ProduceBatch { tp, records, producer, .. } in batches {
                    let (error, base_offset) = if self.leader(*tp) != Some(broker) {
                        (Some(ErrorCode::NotLeaderOrFollower), Offset(-1))
                    } else {
                        match self.produce(*tp, records, *producer) {
                            Ok(base) => (None, base),
                            Err(error) => (Some(error), Offset(-1)),
                        }
                    };
                    partitions.push(ProducePartitionResponse { tp: *tp, error, base_offset });
                }
                (*acks != Acks::None).then_some(Response::Produce { partitions })
            }
            Request::Fetch { partitions, isolation, .. } => {
                let partitions = partitions.iter().map(|fp| self.fetch_partition(broker, fp, *isolation)).collect();
                Some(Response::Fetch { partitions })
            }
            Request::ListOffsets { isolation, partitions } => {
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
                            OffsetSpec::Latest if *isolation == Isolation::ReadCommitted => self.txn_state(tp).0 .0,
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
