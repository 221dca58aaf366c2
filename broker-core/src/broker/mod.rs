//! The broker: request handling over a set of partition logs.
//!
//! Sans-IO: requests arrive through [`Broker::handle_request`] with the time
//! as an argument, timers through [`Broker::handle_timeout`]; responses leave
//! through [`Broker::poll_output`]. Storage goes through the [`Storage`] seam.
//! Partitions have a single replica in this version, so the high watermark is
//! the log end offset and acks=all equals acks=1.

mod fetch;
mod layout;

pub use fetch::FetchPurgatory;
pub use layout::{ClusterLayout, TopicLayout};

use crate::log::{LogConfig, LogError, PartitionLog};
use crate::plant::{Plant, Plants};
use crate::protocol::{
    Acks, CorrelationId, ErrorCode, ListOffsetsPartitionResponse, OffsetSpec, PartitionMetadata,
    ProducePartitionResponse, Request, Response, TopicMetadata,
};
use crate::storage::Storage;
use crate::types::{BrokerId, Offset, Record, TopicPartition};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// A client connection as the simulator numbers it on this broker.
pub type ConnId = u64;

/// Largest produce batch a broker accepts, in records (ksim's bound).
pub const MAX_BATCH_RECORDS: usize = 100_000;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub log: LogConfig,
    /// How often retention runs (Kafka's log.retention.check.interval.ms).
    pub retention_check_interval_ms: u64,
    /// Bound on parked long-poll fetches; past it, fetches are answered at once.
    pub fetch_purgatory_limit: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig { log: LogConfig::default(), retention_check_interval_ms: 300_000, fetch_purgatory_limit: 10_000 }
    }
}

/// What the broker asks the simulator to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerOutput {
    Respond { conn: ConnId, correlation_id: CorrelationId, response: Response },
}

pub struct Broker {
    id: BrokerId,
    config: BrokerConfig,
    layout: ClusterLayout,
    plants: Plants,
    logs: BTreeMap<TopicPartition, PartitionLog>,
    storage: Box<dyn Storage>,
    purgatory: FetchPurgatory,
    outputs: VecDeque<BrokerOutput>,
    next_retention_ms: u64,
    /// Choices planted bugs make; seeded by the simulator.
    rng: ChaCha8Rng,
}

impl Broker {
    /// Boots a broker: opens (recovers) every partition log it leads from storage.
    pub fn start(
        id: BrokerId,
        config: BrokerConfig,
        layout: ClusterLayout,
        plants: Plants,
        mut storage: Box<dyn Storage>,
        now_ms: u64,
        rng_seed: u64,
    ) -> Result<Broker, LogError> {
        let mut logs = BTreeMap::new();
        for tp in layout.partitions_led_by(id) {
            let dir = tp.to_string();
            let log = PartitionLog::open(&dir, config.log.clone(), &plants, storage.as_mut())?;
            logs.insert(tp, log);
        }
        let purgatory = FetchPurgatory::new(config.fetch_purgatory_limit);
        Ok(Broker {
            id,
            next_retention_ms: now_ms + config.retention_check_interval_ms,
            config,
            layout,
            plants,
            logs,
            storage,
            purgatory,
            outputs: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
        })
    }

    pub fn id(&self) -> BrokerId {
        self.id
    }

    /// Log end offset of every partition this broker holds (a replica snapshot for checkers).
    pub fn log_end_offsets(&self) -> impl Iterator<Item = (TopicPartition, Offset)> + '_ {
        self.logs.iter().map(|(tp, log)| (*tp, log.log_end_offset()))
    }

    pub fn handle_request(&mut self, now_ms: u64, conn: ConnId, correlation_id: CorrelationId, request: Request) {
        match request {
            Request::Produce { acks, timeout_ms: _, batches } => {
                let partitions =
                    batches.into_iter().map(|(tp, records)| self.produce_one(now_ms, tp, records)).collect();
                if acks != Acks::None {
                    self.respond(conn, correlation_id, Response::Produce { partitions });
                }
            }
            Request::Fetch { max_wait_ms, min_bytes, max_bytes, partitions } => {
                let fetch = fetch::PendingFetch {
                    conn,
                    correlation_id,
                    deadline_ms: now_ms.saturating_add(max_wait_ms),
                    min_bytes,
                    max_bytes,
                    partitions,
                };
                self.fetch_or_park(fetch);
            }
            Request::ListOffsets { partitions } => {
                let partitions = partitions.into_iter().map(|(tp, spec)| self.list_offset(tp, spec)).collect();
                self.respond(conn, correlation_id, Response::ListOffsets { partitions });
            }
            Request::Metadata { topics } => {
                let response = self.metadata(topics);
                self.respond(conn, correlation_id, response);
            }
        }
    }

    /// Fires due timers: expired long-poll fetches and retention.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        for fetch in self.purgatory.take_expired(now_ms) {
            self.complete_fetch(fetch);
        }
        if now_ms >= self.next_retention_ms {
            for log in self.logs.values_mut() {
                log.apply_retention(self.storage.as_mut(), now_ms);
            }
            self.next_retention_ms = now_ms + self.config.retention_check_interval_ms;
        }
    }

    /// A client connection closed: its parked fetches will never be answered.
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.purgatory.drop_connection(conn);
    }

    pub fn poll_output(&mut self) -> Option<BrokerOutput> {
        self.outputs.pop_front()
    }

    pub fn next_timeout_ms(&self) -> Option<u64> {
        let fetch = self.purgatory.next_deadline_ms();
        Some(fetch.map_or(self.next_retention_ms, |f| f.min(self.next_retention_ms)))
    }

    fn respond(&mut self, conn: ConnId, correlation_id: CorrelationId, response: Response) {
        self.outputs.push_back(BrokerOutput::Respond { conn, correlation_id, response });
    }

    /// The log for `tp` if this broker leads it, else the error Kafka would give.
    fn led_log(&self, tp: TopicPartition) -> Result<&PartitionLog, ErrorCode> {
        match self.logs.get(&tp) {
            Some(log) => Ok(log),
            None if self.layout.replicas(tp).is_some() => Err(ErrorCode::NotLeaderOrFollower),
            None => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    fn produce_one(&mut self, now_ms: u64, tp: TopicPartition, records: Vec<Record>) -> ProducePartitionResponse {
        let refuse = |error| ProducePartitionResponse { tp, error: Some(error), base_offset: Offset(-1) };
        if let Err(error) = self.led_log(tp) {
            return refuse(error);
        }
        if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
            return refuse(ErrorCode::InvalidRequest);
        }
        let log = self.logs.get_mut(&tp).expect("led_log checked");
        let leo_before = log.log_end_offset();
        let count = records.len() as i64;
        let info = log.append_owned(self.storage.as_mut(), now_ms, 0, records);
        assert_eq!(info.last_offset.0 - info.base_offset.0 + 1, count);
        assert!(
            self.plants.on(Plant::OffsetReuse) || info.base_offset == leo_before,
            "append must start at the log end"
        );
        self.wake_fetches(tp);
        ProducePartitionResponse { tp, error: None, base_offset: info.base_offset }
    }

    fn list_offset(&self, tp: TopicPartition, spec: OffsetSpec) -> ListOffsetsPartitionResponse {
        match self.led_log(tp) {
            Ok(log) => {
                let offset = match spec {
                    OffsetSpec::Earliest => log.log_start_offset(),
                    OffsetSpec::Latest => log.log_end_offset(),
                };
                ListOffsetsPartitionResponse { tp, error: None, offset }
            }
            Err(error) => ListOffsetsPartitionResponse { tp, error: Some(error), offset: Offset(-1) },
        }
    }

    fn metadata(&self, topics: Option<Vec<String>>) -> Response {
        let wanted: Vec<String> = match topics {
            Some(names) => names,
            None => self.layout.topics.iter().map(|t| t.name.clone()).collect(),
        };
        let topics = wanted
            .into_iter()
            .map(|name| match self.layout.topic_by_name(&name) {
                Some(topic) => TopicMetadata {
                    name,
                    id: topic.id,
                    error: None,
                    partitions: (0..topic.replicas.len() as u32)
                        .map(|p| {
                            let replicas = topic.replicas[p as usize].clone();
                            PartitionMetadata { partition: p, leader: replicas.first().copied(), replicas }
                        })
                        .collect(),
                },
                None => TopicMetadata {
                    name,
                    id: crate::types::TopicId(u16::MAX),
                    error: Some(ErrorCode::UnknownTopicOrPartition),
                    partitions: Vec::new(),
                },
            })
            .collect();
        Response::Metadata { brokers: self.layout.brokers.clone(), topics }
    }
}

#[cfg(test)]
mod tests;
