//! Serving fetches: consumers read below the high watermark, followers up to
//! the log end (and their fetch offset tells the leader their LEO). Reads are
//! bounded by bytes; long polls wait in a purgatory until enough bytes
//! arrive or their wait expires.

use super::{Broker, BrokerEvent, ConnId, Role};
use crate::log::LogError;
use crate::plant::Plant;
use crate::protocol::{
    CorrelationId, ErrorCode, FetchPartition, FetchPartitionResponse, Isolation, ReplicaId, Response,
};
use crate::types::{LeaderEpoch, Offset, TopicPartition};
use rand::Rng;

/// Probability that the `fetch-skips-record` plant drops a record from a
/// partition's response (when it has at least three).
const SKIP_RECORD_PROBABILITY: f64 = 0.05;

#[derive(Clone, Debug)]
pub(super) struct PendingFetch {
    pub conn: ConnId,
    pub correlation_id: CorrelationId,
    pub replica: Option<ReplicaId>,
    pub isolation: Isolation,
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
    pub(super) fn fetch_or_park(&mut self, now_ms: u64, fetch: PendingFetch) {
        // A follower's fetch is checked once, on arrival: noting its position
        // and then reading cannot change who leads, so the read reuses it.
        let checked = fetch.replica.map(|replica| self.note_follower_fetch(now_ms, replica, &fetch.partitions));
        let (partitions, bytes, has_error) = self.read_partitions(&fetch, checked.as_deref());
        let satisfied = bytes >= fetch.min_bytes as usize || has_error;
        let room = self.purgatory.parked.len() < self.purgatory.limit;
        if satisfied || !room || fetch.deadline_ms <= now_ms || fetch.min_bytes == 0 {
            self.respond(fetch.conn, fetch.correlation_id, Response::Fetch { partitions });
        } else {
            self.purgatory.parked.push(fetch);
        }
    }

    /// A follower's fetch offset is its log end: the leader updates what it
    /// knows of the follower, proposes an ISR expansion when due, and moves
    /// the high watermark. Returns each partition's refusal, if any.
    fn note_follower_fetch(
        &mut self,
        now_ms: u64,
        replica: ReplicaId,
        partitions: &[FetchPartition],
    ) -> Vec<Option<ErrorCode>> {
        let mut checked = Vec::with_capacity(partitions.len());
        for p in partitions {
            let refused = self.replica_fetch_error(replica, p);
            checked.push(refused);
            if refused.is_some() {
                continue;
            }
            let r = self.replicas.get_mut(&p.tp).expect("checked");
            let leo = r.log.log_end_offset();
            if p.fetch_offset > leo {
                continue;
            }
            let Role::Leader(l) = &mut r.role else { continue };
            if let Some(proposal) = l.on_follower_fetch(now_ms, replica.broker, p.fetch_offset, leo) {
                self.propose_isr(now_ms, p.tp, proposal);
            }
            self.update_high_watermark(p.tp);
        }
        checked
    }

    /// Why a follower's fetch of `p` is refused, if it is.
    fn replica_fetch_error(&self, replica: ReplicaId, p: &FetchPartition) -> Option<ErrorCode> {
        let r = match self.led(p.tp) {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let assigned = self.layout.replicas(p.tp).is_some_and(|a| a.contains(&replica.broker));
        if !assigned || replica.broker == self.id {
            return Some(ErrorCode::NotLeaderOrFollower);
        }
        if !self.plant(Plant::UnfencedFetch) {
            if let Err(e) = self.check_epoch(r, p.current_leader_epoch) {
                return Some(e);
            }
        }
        // KIP-903: a replica fetch from an incarnation the controller replaced.
        let current = self.control.image.as_ref().and_then(|i| i.brokers.get(&replica.broker)).map(|s| s.epoch);
        if current.is_some_and(|epoch| epoch != replica.broker_epoch) {
            return Some(ErrorCode::StaleBrokerEpoch);
        }
        None
    }

    /// Answers a fetch with whatever is readable now.
    pub(super) fn complete_fetch(&mut self, fetch: PendingFetch) {
        let (partitions, _, _) = self.read_partitions(&fetch, None);
        self.respond(fetch.conn, fetch.correlation_id, Response::Fetch { partitions });
    }

    /// New data (or a higher HW) on `tp`: answer parked fetches that now have enough bytes.
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
                let (partitions, bytes, has_error) = self.read_partitions(&parked[i], None);
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

    /// Reads every requested partition within the request's byte budget;
    /// `checked` holds each partition's refusal when already known.
    /// Returns the responses, the bytes read, and whether any partition erred.
    fn read_partitions(
        &mut self,
        fetch: &PendingFetch,
        checked: Option<&[Option<ErrorCode>]>,
    ) -> (Vec<FetchPartitionResponse>, usize, bool) {
        let mut remaining = fetch.max_bytes as usize;
        let mut total = 0usize;
        let mut has_error = false;
        let mut out = Vec::with_capacity(fetch.partitions.len());
        for (i, p) in fetch.partitions.iter().enumerate() {
            let refused = match (checked, fetch.replica) {
                (Some(checked), _) => checked[i],
                (None, Some(replica)) => self.replica_fetch_error(replica, p),
                (None, None) => match self.led(p.tp) {
                    Ok(_) if self.plant(Plant::UnfencedFetch) => None,
                    Ok(r) => self.check_epoch(r, p.current_leader_epoch).err(),
                    Err(e) => Some(e),
                },
            };
            let response = match refused {
                Some(error) => fetch_error(p.tp, error, Offset(-1), Offset(-1), Offset(-1)),
                None => self.read_partition(p, fetch.replica.is_some(), fetch.isolation, &mut remaining),
            };
            total += response.records.iter().map(|r| r.size_bytes()).sum::<usize>();
            has_error |= response.error.is_some();
            out.push(response);
        }
        (out, total, has_error)
    }

    /// Reads one partition this broker leads (the fetch was checked).
    fn read_partition(
        &mut self,
        p: &FetchPartition,
        replica: bool,
        isolation: Isolation,
        remaining: &mut usize,
    ) -> FetchPartitionResponse {
        let r = self.replicas.get(&p.tp).expect("led");
        let Role::Leader(l) = &r.role else { unreachable!("led") };
        let (hw, start, end) = (r.high_watermark, r.log.log_start_offset(), r.log.log_end_offset());
        let lso = r.log.last_stable_offset(hw);
        // Consumers read committed records only — read_committed ones only
        // below the last stable offset, where every transaction has ended;
        // followers read everything.
        let read_committed =
            !replica && isolation == Isolation::ReadCommitted && !self.plants.on(Plant::ReadCommittedToHw);
        let upper = match (replica, read_committed) {
            (true, _) => end,
            (false, true) => lso,
            (false, false) => hw,
        };
        let aborted = if read_committed { r.log.aborted_txns(p.fetch_offset, upper) } else { Vec::new() };
        let leader_epoch = l.leader_epoch();
        // A new leader's HW may lag until it commits in its own epoch; it is
        // reported as served (consumer-visible) only from then on.
        let report_hw = !replica && l.high_watermark_known() && r.last_served_hw != Some(hw);
        let budget = (p.partition_max_bytes as usize).min(*remaining);
        let result = if budget == 0 {
            Ok(Vec::new())
        } else {
            if replica {
                r.log.read_whole_batches(self.storage.as_ref(), p.fetch_offset, upper, budget as u32)
            } else {
                r.log.read(self.storage.as_ref(), p.fetch_offset, upper, budget as u32)
            }
        };
        if report_hw {
            self.replicas.get_mut(&p.tp).expect("led").last_served_hw = Some(hw);
            self.events.push_back(BrokerEvent::ServedHighWatermark { tp: p.tp, leader_epoch, high_watermark: hw });
        }
        let result = match result {
            // Past the HW but within the log: a consumer waits, as Kafka lets it.
            Err(LogError::OffsetOutOfRange { requested, .. }) if !replica && requested <= end => Ok(Vec::new()),
            other => other,
        };
        match result {
            Ok(mut records) => {
                if !replica && isolation == Isolation::ReadCommitted {
                    let read_to = records.last().map(|r| r.offset.next());
                    self.report_served_lso(p.tp, leader_epoch, lso, hw, read_to);
                }
                let bytes: usize = records.iter().map(|r| r.size_bytes()).sum();
                *remaining = remaining.saturating_sub(bytes);
                if !replica
                    && self.plants.on(Plant::FetchSkipsRecord)
                    && records.len() >= 3
                    && self.rng.gen_bool(SKIP_RECORD_PROBABILITY)
                {
                    let victim = self.rng.gen_range(1..records.len() - 1);
                    records.remove(victim);
                }
                FetchPartitionResponse {
                    tp: p.tp,
                    error: None,
                    high_watermark: hw,
                    log_start_offset: start,
                    log_end_offset: end,
                    last_stable_offset: lso,
                    aborted,
                    records,
                }
            }
            Err(LogError::OffsetOutOfRange { .. }) => fetch_error(p.tp, ErrorCode::OffsetOutOfRange, hw, start, end),
            Err(e @ (LogError::Corrupt { .. } | LogError::Storage(_))) => {
                // A segment that does not read back as written is a failed
                // disk: the log directory goes offline and, as it is the only
                // one, the broker stops; recovery at its next boot cuts the
                // log at the damage and it fetches the rest again. Nothing
                // corrupt is ever served.
                self.halt_on_corrupt_log(format!("reading {}: {e}", p.tp));
                fetch_error(p.tp, ErrorCode::KafkaStorageError, hw, start, end)
            }
        }
    }
}

impl Broker {
    /// Reports a read_committed answer's LSO when it changed, or when the
    /// records served reach past it (which they never may).
    fn report_served_lso(
        &mut self,
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        lso: Offset,
        hw: Offset,
        read_to: Option<Offset>,
    ) {
        let r = self.replicas.get_mut(&tp).expect("led");
        if r.last_served_lso == Some(lso) && read_to.is_none_or(|to| to <= lso) {
            return;
        }
        r.last_served_lso = Some(lso);
        let event = BrokerEvent::ServedLastStableOffset {
            tp,
            leader_epoch,
            last_stable_offset: lso,
            high_watermark: hw,
            read_to,
        };
        self.events.push_back(event);
    }
}

fn fetch_error(tp: TopicPartition, error: ErrorCode, hw: Offset, start: Offset, end: Offset) -> FetchPartitionResponse {
    FetchPartitionResponse {
        tp,
        error: Some(error),
        high_watermark: hw,
        log_start_offset: start,
        log_end_offset: end,
        last_stable_offset: hw,
        aborted: Vec::new(),
        records: Vec::new(),
    }
}
