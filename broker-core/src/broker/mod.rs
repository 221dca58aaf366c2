//! The broker: replicas of partitions, led or followed as the controller
//! decides, serving clients and other brokers.
//!
//! Sans-IO: requests arrive through [`Broker::handle_request`], answers to the
//! broker's own requests (to the controller and to leaders) through
//! [`Broker::handle_response`], timers through [`Broker::handle_timeout`],
//! all with the time as an argument. What the broker wants done leaves through
//! [`Broker::poll_output`]; what it did, for observers (the simulator's
//! replica checkers), through [`Broker::poll_event`]. Storage goes through
//! the [`Storage`] seam.
//!
//! Module map: `control` (registration, heartbeats, applying the controller's
//! image, AlterPartition), `produce` (appends, acks and the acks=all
//! purgatory), `fetch` (consumer and replica fetches, long polls),
//! `follower` (the fetcher side: truncation and replication), `leader`
//! (ISR and high watermark bookkeeping), `truncation` (where a follower cuts),
//! `checkpoint` (the high watermark and recovery point files).

mod checkpoint;
mod control;
mod fetch;
mod follower;
mod group;
mod layout;
mod leader;
mod produce;
mod producer_ids;
mod txn;

pub mod truncation;

pub use checkpoint::{HIGH_WATERMARK_CHECKPOINT_FILE, RECOVERY_POINT_CHECKPOINT_FILE};
pub use fetch::FetchPurgatory;
pub use group::{CONSUMER_OFFSETS_TOPIC, OFFSET_COMMIT_TIMEOUT_MS};
pub use txn::{TRANSACTION_STATE_TOPIC, TXN_WRITE_TIMEOUT_MS};

/// Kafka's internal topics: coordinators' state, not workload records.
pub const INTERNAL_TOPICS: &[&str] = &[CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC];
pub use layout::{ClusterLayout, TopicLayout, TopicRequest};
pub use leader::{IsrProposal, LeaderConfig, LeaderPlants, LeaderState};

use crate::controller::MetadataImage;
use crate::group::coordinator::{GroupConfig, GroupCoordinator, WriteId};
use crate::log::{FlushPolicy, LogConfig, LogError, PartitionLog, RecoveryStats};
use crate::plant::{Plant, Plants};
use crate::protocol::{
    CorrelationId, ErrorCode, Isolation, ListOffsetsPartition, ListOffsetsPartitionResponse, OffsetSpec,
    PartitionMetadata, Peer, Request, Response, TopicMetadata,
};
use crate::storage::Storage;
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, Offset, ProducerId, StoredRecord, TopicId, TopicPartition};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// A client connection as the simulator numbers it on this broker.
pub type ConnId = u64;

/// Largest produce batch a broker accepts, in records (ksim's bound).
pub const MAX_BATCH_RECORDS: usize = 100_000;

/// Most requests of its own a broker keeps in flight (ksim's bound).
pub const MAX_OWN_REQUESTS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub log: LogConfig,
    /// How often retention runs (Kafka's log.retention.check.interval.ms).
    pub retention_check_interval_ms: u64,
    /// Bound on parked long-poll fetches; past it, fetches are answered at once.
    pub fetch_purgatory_limit: usize,
    /// replica.lag.time.max.ms: an ISR member not caught up this long is dropped.
    pub replica_lag_time_max_ms: u64,
    /// replica.fetch.wait.max.ms: how long a replica fetch may wait at the leader.
    pub replica_fetch_wait_max_ms: u64,
    /// replica.fetch.max.bytes (per partition) and replica.fetch.response.max.bytes.
    pub replica_fetch_max_bytes: u32,
    /// replica.fetch.backoff.ms: pause after a failed replica fetch.
    pub replica_fetch_backoff_ms: u64,
    /// broker.heartbeat.interval.ms.
    pub heartbeat_interval_ms: u64,
    /// How long the broker waits for an answer to a request of its own.
    pub request_timeout_ms: u64,
    /// replica.high.watermark.checkpoint.interval.ms: how often every
    /// replica's HW is written to `replication-offset-checkpoint`.
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// log.flush.offset.checkpoint.interval.ms: how often every log's
    /// recovery point is written to `recovery-point-offset-checkpoint`.
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// The group coordinator's settings; its partition count is the
    /// layout's `__consumer_offsets`.
    pub group: GroupConfig,
    /// The transaction coordinator's settings; its partition count is the
    /// layout's `__transaction_state`.
    pub txn: crate::txn::coordinator::TxnConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            log: LogConfig::default(),
            retention_check_interval_ms: 300_000,
            fetch_purgatory_limit: 10_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_backoff_ms: 1_000,
            heartbeat_interval_ms: 2_000,
            request_timeout_ms: 30_000,
            replica_high_watermark_checkpoint_interval_ms: 5_000,
            log_flush_offset_checkpoint_interval_ms: 60_000,
            group: GroupConfig::default(),
            txn: crate::txn::coordinator::TxnConfig::default(),
        }
    }
}

/// What the broker asks the simulator to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerOutput {
    /// Answer a client's (or another broker's) request.
    Respond { conn: ConnId, correlation_id: CorrelationId, response: Response },
    /// Send a request of the broker's own; the answer comes back through
    /// [`Broker::handle_response`] with the same correlation id.
    Send { to: Peer, correlation_id: CorrelationId, request: Request },
    /// Drop the connection to `to`: a request on it timed out, and what
    /// follows it on the same connection would wait behind it (Kafka's
    /// NetworkClient disconnects on a request timeout too).
    CloseConnection { to: Peer },
    /// The broker cannot go on (a write to its log directory failed) and
    /// stops, as Kafka does when its only log directory goes offline. Its
    /// last output: after it, every input is ignored.
    Halt { reason: String },
}

/// What a replica did, for observers. Reported in order; the simulator turns
/// these into replica observations for the checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerEvent {
    Registered {
        broker_epoch: BrokerEpoch,
    },
    BecameLeader {
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        log_end: Offset,
        high_watermark: Offset,
    },
    BecameFollower {
        tp: TopicPartition,
        leader: BrokerId,
        leader_epoch: LeaderEpoch,
    },
    /// The leader's high watermark advanced from `from` to `to`.
    HighWatermark {
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        from: Offset,
        to: Offset,
    },
    /// A consumer fetch was answered with this high watermark (reported when
    /// it differs from the last one served for the partition).
    ServedHighWatermark {
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        high_watermark: Offset,
    },
    /// A read_committed consumer fetch was answered with this last stable
    /// offset and high watermark, and records up to `read_to` (exclusive;
    /// `None`: no records — a consumer may wait at a position past the LSO
    /// of a new leader whose HW lags). Reported when the LSO differs from
    /// the last one served for the partition, and whenever records reach past it.
    ServedLastStableOffset {
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
        last_stable_offset: Offset,
        high_watermark: Offset,
        read_to: Option<Offset>,
    },
    /// A follower cut its log.
    Truncated {
        tp: TopicPartition,
        from: Offset,
        to: Offset,
    },
}

/// This broker's part in one partition.
#[derive(Clone, Debug)]
enum Role {
    /// No metadata yet, or the partition has no leader.
    Idle,
    Leader(Box<LeaderState>),
    Follower(follower::FollowerState),
}

struct Replica {
    log: PartitionLog,
    /// The local high watermark: the leader's own, or what a follower last
    /// heard from its leader (it lags; not monotonic across restarts).
    high_watermark: Offset,
    role: Role,
    /// The last HW reported as served to a consumer (for `ServedHighWatermark`).
    last_served_hw: Option<Offset>,
    /// The last LSO reported as served to a read_committed consumer (for `ServedLastStableOffset`).
    last_served_lso: Option<Offset>,
}

/// A request of the broker's own, awaiting its answer.
#[derive(Clone, Debug)]
enum Outstanding {
    Register,
    Heartbeat,
    AlterPartition {
        tp: TopicPartition,
        leader_epoch: LeaderEpoch,
    },
    ReplicaFetch {
        leader: BrokerId,
        offsets: Vec<(TopicPartition, Offset, LeaderEpoch)>,
    },
    EpochQuery {
        leader: BrokerId,
        asked: Vec<(TopicPartition, LeaderEpoch, LeaderEpoch)>,
    },
    ProducerIds,
    /// Markers this broker, as transaction coordinator, asked a leader to write.
    TxnMarkers {
        writes: Vec<(crate::txn::coordinator::MarkerId, TopicPartition)>,
    },
    /// A verification of a transactional write, asked of the coordinator.
    TxnVerify {
        check: u64,
    },
}

pub struct Broker {
    id: BrokerId,
    config: BrokerConfig,
    layout: ClusterLayout,
    plants: Plants,
    replicas: BTreeMap<TopicPartition, Replica>,
    storage: Box<dyn Storage>,
    purgatory: FetchPurgatory,
    produce_purgatory: produce::ProducePurgatory,
    outputs: VecDeque<BrokerOutput>,
    events: VecDeque<BrokerEvent>,
    next_retention_ms: u64,
    /// Choices planted bugs make; seeded by the simulator.
    rng: ChaCha8Rng,
    control: control::ControlState,
    /// The block of producer ids InitProducerId hands out from.
    producer_ids: producer_ids::ProducerIds,
    own: BTreeMap<CorrelationId, (Peer, Outstanding, u64)>,
    next_correlation_id: CorrelationId,
    /// Leaders whose fetcher backs off until the given time.
    fetch_backoff: BTreeMap<BrokerId, u64>,
    /// When the interval flush policy next flushes every log.
    next_flush_ms: Option<u64>,
    /// `replication-offset-checkpoint` and `recovery-point-offset-checkpoint`.
    hw_checkpoint: checkpoint::OffsetCheckpoint,
    recovery_checkpoint: checkpoint::OffsetCheckpoint,
    /// Why the broker stopped, once it has.
    halted: Option<String>,
    /// The previous process shut down cleanly: it found the marker at boot.
    clean_shutdown: bool,
    /// The groups of the `__consumer_offsets` partitions this broker leads.
    groups: GroupCoordinator<group::GroupReply>,
    /// `__consumer_offsets`, if the layout has it.
    offsets_topic: Option<TopicId>,
    /// Coordinator writes whose outcome is known, not yet handed back.
    group_writes_done: VecDeque<(WriteId, Result<Offset, ErrorCode>)>,
    /// The transaction coordinator of the `__transaction_state` partitions
    /// this broker leads, its marker rounds, and verifications in flight.
    txn: txn::TxnSide,
    /// Coordinator partitions this broker leads whose state is not loaded
    /// yet: loaded once the HW reaches the log end it had when it became
    /// leader (with that leader epoch), so that a coordinator never acts on
    /// records a later leader may not have.
    coordinator_loads: BTreeMap<TopicPartition, (Offset, LeaderEpoch)>,
}

/// Written by a controlled shutdown after everything is flushed, removed at
/// boot: a broker that does not find it restarted from a crash or power loss
/// (Kafka's `.kafka_cleanshutdown`).
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

impl Broker {
    /// Boots a broker: opens (recovers) the log of every partition it holds a
    /// replica of, from its checkpointed recovery point, then registers with
    /// the controller. Each replica's HW starts at its checkpointed HW, capped
    /// at the recovered log end (0 without a checkpoint).
    ///
    /// A new leader starts from that HW too (Kafka does the same), and may
    /// serve it at once, even with an ISR below min.insync.replicas: that is
    /// no HW advance. Every HW this broker ever held, and so checkpointed,
    /// was a leader's, which advanced it only with min.insync.replicas
    /// members holding everything below it (KAFKA-15583), and a follower
    /// learns it capped at its own log end. So the records below it were
    /// committed under min-ISR replication already; the cap keeps it within
    /// what this log holds after a power loss. What the cap cannot see is a
    /// power loss undoing a follower's unsynced truncation: the old divergent
    /// suffix comes back below the HW. Kafka shares that exposure; it is the
    /// unclean-shutdown case KIP-966 keeps from being elected.
    pub fn start(
        id: BrokerId,
        config: BrokerConfig,
        layout: ClusterLayout,
        plants: Plants,
        mut storage: Box<dyn Storage>,
        now_ms: u64,
        rng_seed: u64,
    ) -> Result<Broker, LogError> {
        // Read before anything is written; removed once the logs are open, so
        // that a crash from here on is unclean.
        let clean_shutdown = storage.read(CLEAN_SHUTDOWN_FILE).is_some();
        let (hw_checkpoint, hws) = checkpoint::OffsetCheckpoint::load(
            storage.as_ref(),
            HIGH_WATERMARK_CHECKPOINT_FILE,
            config.replica_high_watermark_checkpoint_interval_ms,
            now_ms,
        );
        let (recovery_checkpoint, recovery_points) = checkpoint::OffsetCheckpoint::load(
            storage.as_ref(),
            RECOVERY_POINT_CHECKPOINT_FILE,
            config.log_flush_offset_checkpoint_interval_ms,
            now_ms,
        );
        let mut replicas = BTreeMap::new();
        for tp in layout.partitions_on(id) {
            let dir = tp.to_string();
            let recovery_point = recovery_points.get(&tp).copied();
            let mut log = PartitionLog::open(&dir, config.log.clone(), &plants, recovery_point, storage.as_mut())?;
            if clean_shutdown {
                log.mark_flushed_by_clean_shutdown();
            }
            let high_watermark = hws.get(&tp).map_or(Offset::ZERO, |&hw| hw.min(log.log_end_offset()));
            replicas.insert(
                tp,
                Replica { log, high_watermark, role: Role::Idle, last_served_hw: None, last_served_lso: None },
            );
        }
        let purgatory = FetchPurgatory::new(config.fetch_purgatory_limit);
        let offsets = Broker::offsets_topic_id(&layout);
        let unfenced_commits = plants.on(Plant::StaleGenerationCommit);
        let groups = group::new_coordinator(config.group.clone(), offsets.map(|(_, n)| n), rng_seed, unfenced_commits);
        let txn_config = crate::txn::coordinator::TxnConfig {
            bump_epoch_per_txn: config.txn.bump_epoch_per_txn && !plants.on(Plant::NoEpochBumpPerTxn),
            abort_prepared_commits_at_load: plants.on(Plant::PreparedCommitAbortedOnFailover),
            forget_open_txn_at_init: plants.on(Plant::InitForgetsOpenTxn),
            leave_timed_out_txns_open: plants.on(Plant::TxnTimeoutNeverAborts),
            ..config.txn.clone()
        };
        let txn = txn::TxnSide::new(txn_config, &layout, offsets);
        let mut broker = Broker {
            id,
            next_retention_ms: now_ms + config.retention_check_interval_ms,
            config,
            layout,
            plants,
            replicas,
            storage,
            purgatory,
            produce_purgatory: produce::ProducePurgatory::default(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            control: control::ControlState::default(),
            producer_ids: producer_ids::ProducerIds::default(),
            own: BTreeMap::new(),
            next_correlation_id: 0,
            fetch_backoff: BTreeMap::new(),
            next_flush_ms: None,
            hw_checkpoint,
            recovery_checkpoint,
            halted: None,
            clean_shutdown,
            groups,
            offsets_topic: offsets.map(|(id, _)| id),
            group_writes_done: VecDeque::new(),
            coordinator_loads: BTreeMap::new(),
            txn,
        };
        broker.storage.delete(CLEAN_SHUTDOWN_FILE);
        if let FlushPolicy::IntervalMs(interval) = broker.config.log.flush {
            broker.next_flush_ms = Some(now_ms + interval);
        }
        broker.drive(now_ms);
        Ok(broker)
    }

    pub fn id(&self) -> BrokerId {
        self.id
    }

    /// Log end offset of every partition this broker holds (a replica snapshot for checkers).
    pub fn log_end_offsets(&self) -> impl Iterator<Item = (TopicPartition, Offset)> + '_ {
        self.replicas.iter().map(|(tp, r)| (*tp, r.log.log_end_offset()))
    }

    /// A replica's state for snapshots: (log start, log end, local HW,
    /// leader epoch if leading, ISR if leading).
    pub fn replica_state(&self, tp: TopicPartition) -> Option<ReplicaView> {
        let r = self.replicas.get(&tp)?;
        let (leading, leader_epoch, isr) = match &r.role {
            Role::Leader(l) => (true, Some(l.leader_epoch()), l.isr().to_vec()),
            Role::Follower(f) => (false, Some(f.leader_epoch), Vec::new()),
            Role::Idle => (false, None, Vec::new()),
        };
        Some(ReplicaView {
            log_start: r.log.log_start_offset(),
            log_end: r.log.log_end_offset(),
            high_watermark: r.high_watermark,
            last_stable_offset: r.log.last_stable_offset(r.high_watermark),
            open_txns: r.log.open_transactions(),
            leading,
            leader_epoch,
            isr,
        })
    }

    /// Records of a replica in `[from, to)` (a snapshot for checkers).
    pub fn replica_records(&self, tp: TopicPartition, from: Offset, to: Offset) -> Vec<StoredRecord> {
        let Some(r) = self.replicas.get(&tp) else { return Vec::new() };
        let from = from.max(r.log.log_start_offset());
        let to = to.min(r.log.log_end_offset());
        if from >= to {
            return Vec::new();
        }
        r.log.read(self.storage.as_ref(), from, to, u32::MAX).unwrap_or_default()
    }

    /// [`Broker::replica_records`] handed to `visit` (offset, leader epoch,
    /// value) instead of built. `false` if the read failed (a corrupt
    /// segment): `visit` may then have seen part of the range, which the
    /// caller drops, as `replica_records` returns nothing then.
    pub fn visit_replica_records(
        &self,
        tp: TopicPartition,
        from: Offset,
        to: Offset,
        visit: &mut dyn FnMut(Offset, LeaderEpoch, &[u8]),
    ) -> bool {
        let Some(r) = self.replicas.get(&tp) else { return true };
        let from = from.max(r.log.log_start_offset());
        let to = to.min(r.log.log_end_offset());
        from >= to || r.log.visit(self.storage.as_ref(), from, to, visit).is_ok()
    }

    /// Partitions this broker holds, in order.
    pub fn partitions(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        self.replicas.keys().copied()
    }

    /// What recovering each log read at boot (bytes walked and validated).
    pub fn recovery_stats(&self) -> impl Iterator<Item = (TopicPartition, RecoveryStats)> + '_ {
        self.replicas.iter().map(|(tp, r)| (*tp, r.log.recovery_stats()))
    }

    pub fn handle_request(&mut self, now_ms: u64, conn: ConnId, correlation_id: CorrelationId, request: Request) {
        if self.halted.is_some() {
            return;
        }
        match request {
            Request::Produce { acks, timeout_ms, batches } => {
                self.produce(now_ms, produce::ProduceCall { conn, correlation_id, acks, timeout_ms }, batches);
            }
            Request::InitProducerId => self.init_producer_id(conn, correlation_id),
            Request::Fetch { replica, isolation, max_wait_ms, min_bytes, max_bytes, partitions } => {
                let fetch = fetch::PendingFetch {
                    conn,
                    correlation_id,
                    replica,
                    isolation,
                    deadline_ms: now_ms.saturating_add(max_wait_ms),
                    min_bytes,
                    max_bytes,
                    partitions,
                };
                self.fetch_or_park(now_ms, fetch);
            }
            Request::OffsetsForLeaderEpoch { partitions } => {
                let partitions = partitions.iter().map(|q| self.epoch_end(q)).collect();
                self.respond(conn, correlation_id, Response::OffsetsForLeaderEpoch { partitions });
            }
            Request::ListOffsets { isolation, partitions } => {
                let partitions = partitions.iter().map(|p| self.list_offset(p, isolation)).collect();
                self.respond(conn, correlation_id, Response::ListOffsets { partitions });
            }
            Request::Metadata { topics } => {
                let response = self.metadata(topics);
                self.respond(conn, correlation_id, response);
            }
            Request::FindCoordinator { group } => {
                let response = self.find_coordinator(&group);
                self.respond(conn, correlation_id, response);
            }
            Request::Group(request) => self.handle_group_request(now_ms, conn, correlation_id, request),
            Request::FindTxnCoordinator { transactional_id } => {
                let response = self.find_txn_coordinator(&transactional_id);
                self.respond(conn, correlation_id, response);
            }
            Request::Txn(request) => self.handle_txn_request(now_ms, conn, correlation_id, request),
            Request::WriteTxnMarkers { markers } => self.write_txn_markers(now_ms, conn, correlation_id, markers),
            // Controller requests go to the controller; a broker ignores them.
            Request::Controller(_) => {}
        }
        self.drive(now_ms);
    }

    /// The answer to a request of the broker's own.
    pub fn handle_response(&mut self, now_ms: u64, from: Peer, correlation_id: CorrelationId, response: Response) {
        if self.halted.is_some() {
            return;
        }
        let Some((peer, outstanding, _)) = self.own.remove(&correlation_id) else {
            return; // timed out or abandoned
        };
        debug_assert_eq!(peer, from, "answer {correlation_id} from {from}, asked {peer}");
        match (outstanding, response) {
            (Outstanding::Register, Response::Controller(r)) => self.on_register(now_ms, r),
            (Outstanding::Heartbeat, Response::Controller(r)) => self.on_heartbeat(now_ms, r),
            (Outstanding::ProducerIds, Response::Controller(r)) => self.on_producer_ids(now_ms, r),
            (Outstanding::TxnMarkers { writes }, Response::WriteTxnMarkers { results }) => {
                self.on_txn_markers(now_ms, writes, results)
            }
            (Outstanding::TxnVerify { check }, Response::Txn(response)) => {
                self.verified(now_ms, check, response.error())
            }
            (Outstanding::AlterPartition { tp, leader_epoch }, Response::Controller(r)) => {
                self.on_alter_partition(now_ms, tp, leader_epoch, r)
            }
            (Outstanding::ReplicaFetch { leader, offsets }, Response::Fetch { partitions }) => {
                self.on_replica_fetch(now_ms, leader, offsets, partitions)
            }
            (Outstanding::EpochQuery { leader, asked }, Response::OffsetsForLeaderEpoch { partitions }) => {
                self.on_epoch_answers(now_ms, leader, asked, partitions)
            }
            (outstanding, response) => {
                panic!("{from} answered {outstanding:?} with {:?}", response.kind())
            }
        }
        self.drive(now_ms);
    }

    /// The connection to `peer` broke: requests in flight on it are lost.
    pub fn handle_disconnect(&mut self, now_ms: u64, peer: Peer) {
        if self.halted.is_some() {
            return;
        }
        let lost: Vec<CorrelationId> = self.own.iter().filter(|(_, (p, _, _))| *p == peer).map(|(c, _)| *c).collect();
        for c in lost {
            let (_, outstanding, _) = self.own.remove(&c).expect("listed above");
            self.on_lost(now_ms, outstanding);
        }
        self.drive(now_ms);
    }

    /// Fires due timers: expired long polls and produces, request timeouts,
    /// heartbeats, ISR checks and retention.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.halted.is_some() {
            return;
        }
        for fetch in self.purgatory.take_expired(now_ms) {
            self.complete_fetch(fetch);
        }
        self.expire_produces(now_ms);
        let timed_out: std::collections::BTreeSet<Peer> =
            self.own.values().filter(|(_, _, deadline)| *deadline <= now_ms).map(|(peer, _, _)| *peer).collect();
        for peer in timed_out {
            // Everything in flight to that peer shares the abandoned connection.
            let lost: Vec<CorrelationId> =
                self.own.iter().filter(|(_, (p, _, _))| *p == peer).map(|(c, _)| *c).collect();
            for c in lost {
                let (_, outstanding, _) = self.own.remove(&c).expect("listed above");
                self.on_lost(now_ms, outstanding);
            }
            self.outputs.push_back(BrokerOutput::CloseConnection { to: peer });
        }
        self.check_isrs(now_ms);
        // Backoffs of leaders no longer followed would otherwise stay due forever.
        self.fetch_backoff.retain(|_, until| *until > now_ms);
        if let (Some(due), FlushPolicy::IntervalMs(interval)) = (self.next_flush_ms, self.config.log.flush) {
            if now_ms >= due {
                if !self.plants.on(Plant::FsyncLies) {
                    self.flush_all();
                }
                self.next_flush_ms = Some(now_ms + interval);
            }
        }
        if now_ms >= self.next_retention_ms {
            for (tp, r) in &mut self.replicas {
                if let Err(e) = r.log.apply_retention(self.storage.as_mut(), now_ms) {
                    let reason = format!("retention of {tp} failed: {e}");
                    self.halt(reason);
                    return;
                }
            }
            self.next_retention_ms = now_ms + self.config.retention_check_interval_ms;
        }
        if let Err(e) = self.write_checkpoints(Some(now_ms)) {
            return self.halt(e);
        }
        self.groups.handle_timeout(now_ms);
        self.txn.coordinator.handle_timeout(now_ms);
        self.drive(now_ms);
    }

    /// Writes `replication-offset-checkpoint` and
    /// `recovery-point-offset-checkpoint`, each if its timer has come round
    /// (`now_ms`; `None`: both now) and its content changed since its last
    /// write. `Err` says which write failed.
    fn write_checkpoints(&mut self, now_ms: Option<u64>) -> Result<(), String> {
        let hws = self.replicas.iter().map(|(tp, r)| (*tp, r.high_watermark));
        self.hw_checkpoint.write_if_due(now_ms, self.storage.as_mut(), hws)?;
        let points = self.replicas.iter().map(|(tp, r)| (*tp, r.log.flushed_to()));
        self.recovery_checkpoint.write_if_due(now_ms, self.storage.as_mut(), points)
    }

    /// A client connection closed: its parked fetches and produces will never be answered.
    pub fn connection_closed(&mut self, conn: ConnId) {
        self.purgatory.drop_connection(conn);
        self.produce_purgatory.drop_connection(conn);
        self.drop_verifying(conn);
    }

    pub fn poll_output(&mut self) -> Option<BrokerOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    pub fn next_timeout_ms(&self) -> Option<u64> {
        let candidates = [
            self.purgatory.next_deadline_ms(),
            self.produce_purgatory.next_deadline_ms(),
            self.own.values().map(|(_, _, d)| *d).min(),
            self.next_control_ms(),
            self.next_isr_check_ms(),
            self.fetch_backoff.values().copied().min(),
            Some(self.next_retention_ms),
            self.next_flush_ms,
            Some(self.hw_checkpoint.next_due_ms()),
            Some(self.recovery_checkpoint.next_due_ms()),
            self.groups.next_deadline_ms(),
            self.next_producer_ids_ms(),
            self.txn.next_deadline_ms(),
        ];
        if self.halted.is_some() {
            return None;
        }
        candidates.into_iter().flatten().min()
    }

    /// Sends whatever is due: registration, heartbeat, replica fetches and
    /// epoch queries. Called after every input.
    fn drive(&mut self, now_ms: u64) {
        if self.halted.is_some() {
            return;
        }
        self.drive_control(now_ms);
        self.drive_producer_ids(now_ms);
        self.drive_followers(now_ms);
        self.load_committed_coordinators(now_ms);
        self.drain_coordinator(now_ms);
        self.drain_txn(now_ms);
    }

    /// Fsyncs every log with unflushed data.
    pub fn flush_all(&mut self) {
        for r in self.replicas.values_mut() {
            if r.log.has_unflushed() {
                r.log.flush(self.storage.as_mut());
            }
        }
    }

    /// Whether this process found its predecessor's clean-shutdown marker.
    pub fn clean_shutdown(&self) -> bool {
        self.clean_shutdown
    }

    /// A controlled shutdown: every log is flushed, the recovery points (now
    /// every log's end) and HWs are checkpointed, then the clean-shutdown
    /// marker is written durably, and the broker stops (as after a halt,
    /// inputs are ignored). A failed checkpoint write halts the broker
    /// without the marker; a failed marker write leaves the shutdown
    /// unclean. Either only costs the next boot its trust.
    pub fn shutdown(&mut self) {
        if self.halted.is_some() {
            return;
        }
        self.flush_all();
        if let Err(e) = self.write_checkpoints(None) {
            return self.halt(format!("controlled shutdown failed {e}"));
        }
        let marked = crate::storage::write_durably(self.storage.as_mut(), CLEAN_SHUTDOWN_FILE, b"");
        self.halted = Some(match marked {
            Ok(()) => "controlled shutdown".to_string(),
            Err(e) => format!("controlled shutdown without its marker: {e}"),
        });
    }

    /// Whether the broker stopped after a storage error.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// A read found a segment that does not read back as written: the log
    /// directory has failed and the broker stops (see `halt`). The damage may
    /// lie below a log's recovery point, where the next boot would only walk
    /// the headers and keep it, and halt again at the next read of it, boot
    /// after boot. So the recovery-point checkpoint goes first (a delete is
    /// durable at once and needs no space): the next boot validates every
    /// segment and cuts the log at the damage. Kafka has no such loop (its
    /// brokers do not check CRCs on fetch; consumers do), hence no such step.
    fn halt_on_corrupt_log(&mut self, reason: String) {
        self.storage.delete(RECOVERY_POINT_CHECKPOINT_FILE);
        self.halt(reason);
    }

    /// Stops the broker: what it answered so far stands, nothing after.
    fn halt(&mut self, reason: String) {
        if self.halted.is_none() {
            self.outputs.push_back(BrokerOutput::Halt { reason: reason.clone() });
            self.halted = Some(reason);
        }
    }

    fn respond(&mut self, conn: ConnId, correlation_id: CorrelationId, response: Response) {
        self.outputs.push_back(BrokerOutput::Respond { conn, correlation_id, response });
    }

    /// Sends a request of the broker's own, remembering what it was for.
    fn send(&mut self, now_ms: u64, to: Peer, outstanding: Outstanding, request: Request) {
        assert!(self.own.len() < MAX_OWN_REQUESTS, "{} has {MAX_OWN_REQUESTS} requests in flight", self.id);
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let deadline = now_ms.saturating_add(self.config.request_timeout_ms);
        self.own.insert(correlation_id, (to, outstanding, deadline));
        self.outputs.push_back(BrokerOutput::Send { to, correlation_id, request });
    }

    fn in_flight(&self, matches: impl Fn(&Outstanding) -> bool) -> bool {
        self.own.values().any(|(_, o, _)| matches(o))
    }

    /// A request of the broker's own got no answer (timeout or broken connection).
    fn on_lost(&mut self, now_ms: u64, outstanding: Outstanding) {
        match outstanding {
            Outstanding::Register | Outstanding::Heartbeat => {}
            Outstanding::ProducerIds => self.on_producer_ids_lost(now_ms),
            Outstanding::TxnMarkers { writes } => self.on_txn_markers_lost(now_ms, writes),
            Outstanding::TxnVerify { check } => self.verified(now_ms, check, Some(ErrorCode::NetworkException)),
            Outstanding::AlterPartition { tp, leader_epoch } => {
                if let Some(Role::Leader(l)) = self.replicas.get_mut(&tp).map(|r| &mut r.role) {
                    if l.leader_epoch() == leader_epoch {
                        l.on_proposal_lost(now_ms);
                    }
                }
            }
            Outstanding::ReplicaFetch { leader, .. } | Outstanding::EpochQuery { leader, .. } => {
                self.fetch_backoff.insert(leader, now_ms + self.config.replica_fetch_backoff_ms);
            }
        }
    }

    /// The replica of `tp` if this broker leads it in the current epoch,
    /// else the error Kafka would give.
    fn led(&self, tp: TopicPartition) -> Result<&Replica, ErrorCode> {
        match self.replicas.get(&tp) {
            Some(r) if matches!(r.role, Role::Leader(_)) => Ok(r),
            Some(_) => Err(ErrorCode::NotLeaderOrFollower),
            None if self.layout.replicas(tp).is_some() => Err(ErrorCode::NotLeaderOrFollower),
            None => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    /// KIP-320: a request naming a leader epoch must name this leader's.
    fn check_epoch(&self, r: &Replica, current: LeaderEpoch) -> Result<(), ErrorCode> {
        let Role::Leader(l) = &r.role else { return Err(ErrorCode::NotLeaderOrFollower) };
        if current == LeaderEpoch::NONE || current == l.leader_epoch() {
            Ok(())
        } else if current < l.leader_epoch() {
            Err(ErrorCode::FencedLeaderEpoch)
        } else {
            Err(ErrorCode::UnknownLeaderEpoch)
        }
    }

    fn epoch_end(&self, q: &crate::protocol::EpochQuery) -> crate::protocol::EpochEnd {
        let answer = |error, end| crate::protocol::EpochEnd { tp: q.tp, error, end };
        let r = match self.led(q.tp) {
            Ok(r) => r,
            Err(e) => return answer(Some(e), None),
        };
        if let Err(e) = self.check_epoch(r, q.current_leader_epoch) {
            return answer(Some(e), None);
        }
        answer(None, r.log.end_offset_for_epoch(q.leader_epoch))
    }

    fn list_offset(&self, p: &ListOffsetsPartition, isolation: Isolation) -> ListOffsetsPartitionResponse {
        let tp = p.tp;
        let answer = |error, offset, leader_epoch| ListOffsetsPartitionResponse { tp, error, offset, leader_epoch };
        // KIP-320: fenced by the sender's leader epoch, as fetches are.
        let r = match self.led(tp).and_then(|r| self.check_epoch(r, p.current_leader_epoch).map(|()| r)) {
            Ok(r) => r,
            Err(error) => return answer(Some(error), Offset(-1), LeaderEpoch::NONE),
        };
        let Role::Leader(l) = &r.role else { unreachable!("led") };
        assert!(p.current_leader_epoch == LeaderEpoch::NONE || p.current_leader_epoch == l.leader_epoch());
        // The latest offset is where a consumer's reads end: the high
        // watermark read_uncommitted, the last stable offset read_committed
        // (a consumer starting at the high watermark would skip the records
        // of transactions still open below it, should they commit).
        let read_committed = isolation == Isolation::ReadCommitted && !self.plants.on(Plant::ReadCommittedToHw);
        match p.spec {
            OffsetSpec::Earliest => answer(None, r.log.log_start_offset(), l.leader_epoch()),
            OffsetSpec::Latest if !l.high_watermark_known() => {
                answer(Some(ErrorCode::OffsetNotAvailable), Offset(-1), l.leader_epoch())
            }
            OffsetSpec::Latest if read_committed => {
                answer(None, r.log.last_stable_offset(r.high_watermark), l.leader_epoch())
            }
            OffsetSpec::Latest => answer(None, r.high_watermark, l.leader_epoch()),
        }
    }

    fn metadata(&self, topics: Option<Vec<String>>) -> Response {
        let wanted: Vec<String> = match topics {
            Some(names) => names,
            None => self.layout.topics.iter().map(|t| t.name.clone()).collect(),
        };
        let image = self.control.image.as_ref();
        let topics = wanted
            .into_iter()
            .map(|name| match self.layout.topic_by_name(&name) {
                Some(topic) => TopicMetadata {
                    name,
                    id: topic.id,
                    error: None,
                    partitions: (0..topic.replicas.len() as u32)
                        .map(|p| partition_metadata(image, TopicPartition::new(topic.id, p), &topic.replicas))
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

    fn plant(&self, plant: Plant) -> bool {
        self.plants.on(plant)
    }
}

/// One partition's metadata as this broker knows it from the controller's
/// image; before any image, no leader (clients retry).
fn partition_metadata(
    image: Option<&MetadataImage>,
    tp: TopicPartition,
    replicas: &[Vec<BrokerId>],
) -> PartitionMetadata {
    let assigned = replicas[tp.partition as usize].clone();
    match image.and_then(|i| i.partitions.get(&tp)) {
        Some(state) => PartitionMetadata {
            partition: tp.partition,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            replicas: assigned,
            isr: state.isr.clone(),
        },
        None => PartitionMetadata {
            partition: tp.partition,
            leader: None,
            leader_epoch: LeaderEpoch::NONE,
            replicas: assigned,
            isr: Vec::new(),
        },
    }
}

/// A replica's state, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    pub log_start: Offset,
    pub log_end: Offset,
    pub high_watermark: Offset,
    /// `last_stable_offset(high_watermark)`: where read_committed readers stop.
    pub last_stable_offset: Offset,
    /// Transactions open in the log: (first offset, producer), earliest first.
    pub open_txns: Vec<(Offset, ProducerId)>,
    pub leading: bool,
    pub leader_epoch: Option<LeaderEpoch>,
    pub isr: Vec<BrokerId>,
}

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod coordinator_load_tests;
#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod idempotence_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_offsets_tests;
#[cfg(test)]
mod txn_tests;
