//! Fetch handling: reads bounded by bytes, and long polls parked in a
//! purgatory until enough bytes arrive or their wait expires.

use super::{Broker, ConnId};
use crate::log::LogError;
use crate::plant::Plant;
use crate::protocol::{CorrelationId, ErrorCode, FetchPartition, FetchPartitionResponse, Response};
use crate::types::{Offset, TopicPartition};
use rand::Rng;

/// Probability that the `fetch-skips-record` plant drops a record from a
/// partition's response (when it has at least three).
const SKIP_RECORD_PROBABILITY: f64 = 0.05;

#[derive(Clone, Debug)]
pub(super) struct PendingFetch {
    pub conn: ConnId,
    pub correlation_id: CorrelationId,
    pub deadline_ms: u64,
    pub min_bytes: u32,
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

/// Parked long-poll fetches, bounded.
pub struct FetchPurgatory {
    parked: Vec<PendingFetch>,
    limit: usize,
}

impl FetchPurgatory {
    pub(super) fn new(limit: usize) -> Self {
        FetchPurgatory { parked: Vec::new(), limit }
    }

    pub fn len(&self) -> usize {
        self.parked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        self.parked.iter().map(|f| f.deadline_ms).min()
    }

    pub(super) fn take_expired(&mut self, now_ms: u64) -> Vec<PendingFetch> {
        let (expired, waiting) = self.parked.drain(..).partition(|f| f.deadline_ms <= now_ms);
        self.parked = waiting;
        expired
    }

    pub(super) fn drop_connection(&mut self, conn: ConnId) {
        self.parked.retain(|f| f.conn != conn);
    }
}

impl Broker {
    pub(super) fn fetch_or_park(&mut self, fetch: PendingFetch) {
        let (partitions, bytes, has_error) = self.read_partitions(&fetch);
        let satisfied = bytes >= fetch.min_bytes as usize || has_error;
        let room = self.purgatory.parked.len() < self.purgatory.limit;
        if satisfied || !room || fetch.deadline_ms == 0 || fetch.min_bytes == 0 {
            self.respond(fetch.conn, fetch.correlation_id, Response::Fetch { partitions });
        } else {
            self.purgatory.parked.push(fetch);
        }
    }

    /// Answers a fetch with whatever is readable now.
    pub(super) fn complete_fetch(&mut self, fetch: PendingFetch) {
        let (partitions, _, _) = self.read_partitions(&fetch);
        self.respond(fetch.conn, fetch.correlation_id, Response::Fetch { partitions });
    }

    /// New data on `tp`: answer parked fetches that now have enough bytes.
    pub(super) fn wake_fetches(&mut self, tp: TopicPartition) {
        if self.purgatory.parked.is_empty() {
            return;
        }
        // Taken out while reading (reads need `&mut self`); nothing parks meanwhile.
        let mut parked = std::mem::take(&mut self.purgatory.parked);
        let mut i = 0;
        while i < parked.len() {
            let wants = parked[i].partitions.iter().any(|p| p.tp == tp);
            if wants {
                let (partitions, bytes, has_error) = self.read_partitions(&parked[i]);
                if bytes >= parked[i].min_bytes as usize || has_error {
                    // Order among parked fetches does not matter: each has its own connection.
                    let fetch = parked.swap_remove(i);
                    self.respond(fetch.conn, fetch.correlation_id, Response::Fetch { partitions });
                    continue;
                }
            }
            i += 1;
        }
        assert!(self.purgatory.parked.is_empty(), "a fetch parked while parked fetches were woken");
        self.purgatory.parked = parked;
    }

    /// Reads every requested partition within the request's byte budget.
    /// Returns the responses, the bytes read, and whether any partition erred.
    fn read_partitions(&mut self, fetch: &PendingFetch) -> (Vec<FetchPartitionResponse>, usize, bool) {
        let mut remaining = fetch.max_bytes as usize;
        let mut total = 0usize;
        let mut has_error = false;
        let mut out = Vec::with_capacity(fetch.partitions.len());
        for p in &fetch.partitions {
            let response = self.read_partition(p, &mut remaining);
            total += response.records.iter().map(|r| r.size_bytes()).sum::<usize>();
            has_error |= response.error.is_some();
            out.push(response);
        }
        (out, total, has_error)
    }

    fn read_partition(&mut self, p: &FetchPartition, remaining: &mut usize) -> FetchPartitionResponse {
        let log = match self.led_log(p.tp) {
            Ok(log) => log,
            Err(error) => return fetch_error(p.tp, error, Offset(-1), Offset(-1)),
        };
        // One replica: the high watermark is the log end.
        let hw = log.log_end_offset();
        let start = log.log_start_offset();
        let budget = (p.partition_max_bytes as usize).min(*remaining);
        if budget == 0 {
            return FetchPartitionResponse {
                tp: p.tp,
                error: None,
                high_watermark: hw,
                log_start_offset: start,
                records: Vec::new(),
            };
        }
        match log.read(p.fetch_offset, hw, budget as u32) {
            Ok(mut records) => {
                let bytes: usize = records.iter().map(|r| r.size_bytes()).sum();
                *remaining = remaining.saturating_sub(bytes);
                if self.plants.on(Plant::FetchSkipsRecord)
                    && records.len() >= 3
                    && self.rng.gen_bool(SKIP_RECORD_PROBABILITY)
                {
                    let victim = self.rng.gen_range(1..records.len() - 1);
                    records.remove(victim);
                }
                FetchPartitionResponse { tp: p.tp, error: None, high_watermark: hw, log_start_offset: start, records }
            }
            Err(LogError::OffsetOutOfRange { .. }) => fetch_error(p.tp, ErrorCode::OffsetOutOfRange, hw, start),
            Err(LogError::Corrupt { .. }) => fetch_error(p.tp, ErrorCode::KafkaStorageError, hw, start),
        }
    }
}

fn fetch_error(tp: TopicPartition, error: ErrorCode, hw: Offset, start: Offset) -> FetchPartitionResponse {
    FetchPartitionResponse { tp, error: Some(error), high_watermark: hw, log_start_offset: start, records: Vec::new() }
}
