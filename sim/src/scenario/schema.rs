//! A validated scenario: every value in range, every name resolved, every
//! default filled in. The runner reads only these types.

use crate::checker::Invariant;
use broker_core::plant::Plant;
use broker_core::protocol::Acks;
use std::fmt;

use super::limits;

/// One scenario file, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Defaults to the file's stem.
    pub name: String,
    pub description: String,
    /// The path it was loaded from, as given.
    pub file: String,
    /// Length of the chaos phase, simulated.
    pub duration_ms: u64,
    /// After the heal, every partition must be read to its end within this.
    pub drain_timeout_ms: u64,
    /// A booted broker must serve again (register) within this, counted
    /// from its boot or the heal, whichever is later (recovery-bounded).
    pub recovery_bound_ms: u64,
    /// How many seeds `cargo test` runs.
    pub seeds: u64,
    /// Planted bugs switched on.
    pub plant: Vec<Plant>,
    pub cluster: ClusterSpec,
    pub network: NetworkSpec,
    pub topics: Vec<TopicSpec>,
    pub workload: WorkloadSpec,
    /// In `at_ms` order; entries with equal `at_ms` keep file order.
    pub faults: Vec<TimedFault>,
    pub nemesis: Option<NemesisSpec>,
    pub expect: ExpectSpec,
}

/// The controller's node name (there is one controller).
pub const CONTROLLER_NODE: &str = "controller";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub brokers: u32,
    /// Kafka's unclean.leader.election.enable (default false), for every topic.
    pub unclean_leader_election: bool,
    pub broker: BrokerSpec,
    pub controller: ControllerSpec,
    /// Every node's simulated disk (brokers and the controller have one).
    pub disk: DiskSpec,
    /// Partitions of `__consumer_offsets` (Kafka's
    /// `offsets.topic.num.partitions`), created when a consumer is in a
    /// group; replication factor min(3, brokers), as Kafka's default.
    pub offsets_topic_partitions: u32,
    /// `__transaction_state`'s partitions (created when a producer is transactional).
    pub transaction_state_partitions: u32,
}

/// The simulated disks (`[cluster.disk]`), alike on every node that has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// Linux's dirty_expire: data not fsynced for this long is written back
    /// by the kernel on its own (and so survives a power loss). `None`:
    /// never written back, only fsync makes data durable.
    pub writeback_expire_ms: Option<u64>,
    /// Usable bytes per disk. `None`: the simulated maximum, 4 GiB.
    pub capacity_bytes: Option<u64>,
    /// Service times of reads, writes and fsyncs, and a bandwidth; none by
    /// default (every operation completes at once).
    pub latency: crate::disk::LatencySpec,
}

impl Default for DiskSpec {
    fn default() -> Self {
        DiskSpec {
            writeback_expire_ms: Some(limits::DISK_WRITEBACK_EXPIRE_MS.default_value() as u64),
            capacity_bytes: None,
            latency: crate::disk::LatencySpec::default(),
        }
    }
}

/// When a broker fsyncs its log (Kafka's log.flush.interval.messages and
/// log.flush.interval.ms, reduced to the three policies that matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushSpec {
    /// Leave it to the kernel's writeback (Kafka's default: durability comes
    /// from replication, not fsync).
    Never,
    /// Fsync after every appended batch, before it is acknowledged.
    EveryBatch,
    /// Fsync when this long has passed since the last flush.
    IntervalMs(u64),
}

impl FlushSpec {
    /// The policy as written in `log_flush`.
    pub fn name(self) -> &'static str {
        match self {
            FlushSpec::Never => "never",
            FlushSpec::EveryBatch => "every-batch",
            FlushSpec::IntervalMs(_) => "interval",
        }
    }
}

/// The controller's broker-liveness settings; defaults are KRaft's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerSpec {
    /// A broker not heard from for this long is fenced (broker.session.timeout.ms).
    pub session_timeout_ms: u64,
    /// How often brokers heartbeat (broker.heartbeat.interval.ms).
    pub heartbeat_interval_ms: u64,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        ControllerSpec {
            session_timeout_ms: limits::SESSION_TIMEOUT_MS.default_value() as u64,
            heartbeat_interval_ms: limits::HEARTBEAT_INTERVAL_MS.default_value() as u64,
        }
    }
}

/// Per-broker configuration; defaults are Kafka's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSpec {
    pub log_segment_bytes: u64,
    pub log_index_interval_bytes: u64,
    /// `None`: no size limit.
    pub log_retention_bytes: Option<u64>,
    /// `None`: no age limit.
    pub log_retention_ms: Option<u64>,
    pub log_retention_check_interval_ms: u64,
    /// Parked long-poll fetches per broker.
    pub fetch_purgatory_limit: u32,
    /// A follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// How long a follower's fetch may wait at the leader for new data.
    pub replica_fetch_wait_max_ms: u64,
    /// How long a broker waits for answers to its own requests (replica
    /// fetches, controller requests) before giving up and retrying.
    pub request_timeout_ms: u64,
    /// When the log is fsynced; Kafka's default is never.
    pub log_flush: FlushSpec,
    /// How often the recovery-point checkpoint is written
    /// (log.flush.offset.checkpoint.interval.ms).
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// How often the high-watermark checkpoint is written
    /// (replica.high.watermark.checkpoint.interval.ms).
    pub replica_high_watermark_checkpoint_interval_ms: u64,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            log_segment_bytes: limits::LOG_SEGMENT_BYTES.default_value() as u64,
            log_index_interval_bytes: limits::LOG_INDEX_INTERVAL_BYTES.default_value() as u64,
            log_retention_bytes: None,
            log_retention_ms: None,
            log_retention_check_interval_ms: limits::LOG_RETENTION_CHECK_INTERVAL_MS.default_value() as u64,
            fetch_purgatory_limit: limits::FETCH_PURGATORY_LIMIT.default_value() as u32,
            replica_lag_time_max_ms: limits::REPLICA_LAG_TIME_MAX_MS.default_value() as u64,
            replica_fetch_wait_max_ms: limits::REPLICA_FETCH_WAIT_MAX_MS.default_value() as u64,
            request_timeout_ms: limits::BROKER_REQUEST_TIMEOUT_MS.default_value() as u64,
            log_flush: FlushSpec::Never,
            log_flush_offset_checkpoint_interval_ms: limits::LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS.default_value()
                as u64,
            replica_high_watermark_checkpoint_interval_ms: limits::REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS
                .default_value() as u64,
        }
    }
}

/// The network at the start of a run (faults may change it).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    /// Send latency range (min, max), drawn per message.
    pub latency_ms: (u64, u64),
    /// Probability that a datagram is dropped.
    pub loss: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        let (min, max) = limits::NETWORK_LATENCY_MS.default_value();
        NetworkSpec { latency_ms: (min as u64, max as u64), loss: limits::NETWORK_LOSS.default_value() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// Replicas per partition (at most the number of brokers).
    pub replication_factor: u32,
    /// Kafka's min.insync.replicas for acks=all (at most the replication factor).
    pub min_insync_replicas: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub producers: Vec<ProducerSpec>,
    pub consumers: Vec<ConsumerSpec>,
}

/// `count` producers, each configured alike. Defaults are Kafka's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerSpec {
    pub count: u32,
    pub topic: String,
    /// Records per second, per producer.
    pub rate_per_s: u32,
    pub keys: KeyMode,
    pub acks: Acks,
    pub linger_ms: u64,
    pub batch_size_bytes: u64,
    pub max_in_flight: u32,
    pub request_timeout_ms: u64,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub delivery_timeout_ms: u64,
    pub partitioner: PartitionerSpec,
    /// `enable.idempotence` (default false in ksim, true in Kafka): needs
    /// acks=all, retries > 0 and max_in_flight <= 5.
    pub idempotence: bool,
    /// A transactional producer (`transactional.id` = its node's name, or the shared `transactional_id`):
    /// records go out in transactions of `records` each, some aborted on purpose.
    pub transactions: Option<TransactionSpec>,
    /// When the producer starts (simulated ms; 0: at once). A later start
    /// makes a standby: with a shared `transactional_id`, a replacement
    /// instance that takes the id over from a stalled one.
    pub start_ms: u64,
}

/// How a transactional producer groups its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionSpec {
    /// Records per transaction.
    pub records: u32,
    /// The chance, in parts per million, that a transaction is aborted on
    /// purpose once its records are sent (`abort_rate` × 10⁶).
    pub abort_ppm: u32,
    /// `transaction.timeout.ms` (Kafka: 60,000).
    pub timeout_ms: u64,
    /// An explicit `transactional.id`, which every process of the entry
    /// (and of any other entry naming it) shares: each one's
    /// InitProducerId fences the others' older incarnations. A fenced
    /// process does not start again (it was replaced) but stops producing.
    /// `None`: the id is the process's node name, its own, and a fenced
    /// process starts a new incarnation.
    pub transactional_id: Option<String>,
}

/// A consumer's `isolation.level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IsolationSpec {
    /// Kafka's default: everything below the high watermark.
    #[default]
    ReadUncommitted,
    /// Only committed transactions' records (and plain ones), below the last stable offset.
    ReadCommitted,
}

impl IsolationSpec {
    pub const ALL: &'static [IsolationSpec] = &[IsolationSpec::ReadUncommitted, IsolationSpec::ReadCommitted];
    pub fn name(self) -> &'static str {
        match self {
            IsolationSpec::ReadUncommitted => "read_uncommitted",
            IsolationSpec::ReadCommitted => "read_committed",
        }
    }
}

/// How a producer keys (and so places) its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// No key: the partitioner places the record.
    None,
    /// A key drawn uniformly from `key_count` keys; placed by key hash.
    Random { key_count: u32 },
    /// Every record goes to this partition.
    Partition(u32),
}

/// Where unkeyed records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionerSpec {
    /// One partition until the batch is sent, then another (Kafka's default since 2.4).
    Sticky,
    /// Each record to the next partition in turn.
    RoundRobin,
}

impl PartitionerSpec {
    pub const ALL: &'static [PartitionerSpec] = &[PartitionerSpec::Sticky, PartitionerSpec::RoundRobin];
    pub fn name(self) -> &'static str {
        match self {
            PartitionerSpec::Sticky => "sticky",
            PartitionerSpec::RoundRobin => "round-robin",
        }
    }
}

/// `count` consumers, each configured alike. Defaults are Kafka's, except
/// `auto_offset_reset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub count: u32,
    pub topics: Vec<String>,
    pub assignment: AssignmentSpec,
    pub auto_offset_reset: ResetSpec,
    pub poll_timeout_ms: u64,
    pub max_poll_records: u32,
    pub fetch_max_wait_ms: u64,
    pub fetch_min_bytes: u32,
    pub fetch_max_bytes: u32,
    pub max_partition_fetch_bytes: u32,
    pub request_timeout_ms: u64,
    pub isolation: IsolationSpec,
    /// Subscribe mode: the consumers of this spec form (or join) a group
    /// and get their partitions from it; `None`: assign mode (`assignment`).
    pub group: Option<GroupSpec>,
    /// A consume-transform-produce application (`transform_to`): each
    /// member writes every record it consumes, transformed, to the output
    /// topic and commits its offsets, all in one transaction.
    pub pipeline: Option<PipelineSpec>,
}

/// What a pipeline member does with what it consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineSpec {
    /// The output topic.
    pub output: String,
    /// The chance, in parts per million, that a transaction is aborted on
    /// purpose (its input is then consumed again from the committed offsets).
    pub abort_ppm: u32,
    /// The member's producer's `transaction.timeout.ms`.
    pub transaction_timeout_ms: u64,
}

/// A consumer group (`group = "..."` on a consumer entry) and how its
/// members commit and process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// `group.id`.
    pub id: String,
    /// `partition.assignment.strategy`, in order of preference (Kafka's
    /// default: range, cooperative-sticky).
    pub assignors: Vec<broker_core::group::AssignorKind>,
    /// `session.timeout.ms` (Kafka: 45,000).
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms` (Kafka: 3,000); below the session timeout.
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms` (Kafka: 300,000): also the rebalance timeout.
    pub max_poll_interval_ms: u64,
    pub commit: CommitMode,
    /// `auto.commit.interval.ms` (Kafka: 5,000), for `CommitMode::Auto`.
    pub auto_commit_interval_ms: u64,
    /// Simulated time each polled batch takes to process (0: instant).
    pub processing_ms: u64,
    /// Static members (KIP-345): each member's `group.instance.id` is its
    /// node's name, so a restart within the session timeout takes its old
    /// place without a rebalance.
    pub static_membership: bool,
}

/// When a group member commits what it consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// `enable.auto.commit=true` (Kafka's default): every
    /// `auto_commit_interval_ms`, at a poll, the positions of the records
    /// the previous polls returned; and before a revocation.
    Auto,
    /// Process the batch, then commit its positions (at-least-once: a
    /// crash in between re-delivers the batch).
    ProcessThenCommit,
    /// Commit the batch's positions, then process it (at-most-once: a
    /// crash in between loses the batch).
    CommitThenProcess,
}

impl CommitMode {
    pub const ALL: &'static [CommitMode] =
        &[CommitMode::Auto, CommitMode::ProcessThenCommit, CommitMode::CommitThenProcess];
    pub fn name(self) -> &'static str {
        match self {
            CommitMode::Auto => "auto",
            CommitMode::ProcessThenCommit => "process-then-commit",
            CommitMode::CommitThenProcess => "commit-then-process",
        }
    }
}

impl ConsumerSpec {
    /// The partitions consumer `index` (0-based within this spec) reads:
    /// with `All` every partition of every listed topic, with `Split` every
    /// `count`-th of that list starting at `index`. In topic order, then
    /// partition order.
    pub fn partitions_for(&self, index: u32, topics: &[TopicSpec]) -> Vec<(String, u32)> {
        let all = self.topics.iter().flat_map(|name| {
            let partitions = topics.iter().find(|t| &t.name == name).map_or(0, |t| t.partitions);
            (0..partitions).map(move |p| (name.clone(), p))
        });
        match self.assignment {
            AssignmentSpec::All => all.collect(),
            AssignmentSpec::Split => all
                .enumerate()
                .filter(|(i, _)| *i as u64 % u64::from(self.count.max(1)) == u64::from(index))
                .map(|(_, tp)| tp)
                .collect(),
        }
    }
}

/// Which partitions the consumers of one spec read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignmentSpec {
    /// Each consumer reads every partition of its topics.
    All,
    /// The partitions are dealt round-robin among this spec's consumers.
    Split,
}

impl AssignmentSpec {
    pub const ALL: &'static [AssignmentSpec] = &[AssignmentSpec::All, AssignmentSpec::Split];
    pub fn name(self) -> &'static str {
        match self {
            AssignmentSpec::All => "all",
            AssignmentSpec::Split => "split",
        }
    }
}

/// Where a consumer starts a partition it has no position for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSpec {
    Earliest,
    Latest,
    /// Fail instead of guessing.
    None,
}

impl ResetSpec {
    pub const ALL: &'static [ResetSpec] = &[ResetSpec::Earliest, ResetSpec::Latest, ResetSpec::None];
    pub fn name(self) -> &'static str {
        match self {
            ResetSpec::Earliest => "earliest",
            ResetSpec::Latest => "latest",
            ResetSpec::None => "none",
        }
    }
}

/// A fault and when it happens.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedFault {
    /// Simulated time since the start of the run.
    pub at_ms: u64,
    pub fault: Fault,
    /// 1-based line of the `[[faults]]` entry, for messages.
    pub line: usize,
}

/// The fault verbs. Node names are `broker-N`, `controller`, `producer-N`,
/// `consumer-N`; the disk verbs name brokers or the controller (clients have
/// no disk).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Kill a broker's (or the controller's) process: its tasks stop; its
    /// page cache survives, so nothing it wrote is lost (see `PowerLoss`).
    Crash {
        node: String,
    },
    /// A controlled shutdown: a broker flushes every log, writes its
    /// clean-shutdown marker and exits, so its next boot registers as clean
    /// (the controller, whose metadata is always synced, just stops).
    /// Down until `restart`, like a crash.
    Stop {
        node: String,
    },
    /// Boot a crashed broker again; it recovers from its storage.
    Restart {
        node: String,
    },
    /// Freeze any node; messages to it queue up.
    Pause {
        node: String,
    },
    Resume {
        node: String,
    },
    /// Cut a node from every other node, both ways.
    Isolate {
        node: String,
    },
    /// Cut links between nodes of different groups (only from `groups[0]`
    /// towards the others when `one_way`). Unnamed nodes stay connected.
    Partition {
        groups: Vec<Vec<String>>,
        one_way: bool,
    },
    /// Undo every partition and isolation.
    Heal,
    /// Network-wide send latency range.
    Latency {
        min_ms: u64,
        max_ms: u64,
    },
    /// Network-wide datagram loss probability.
    Loss {
        rate: f64,
    },
    /// That node's clock reads simulated time + `skew_ms`.
    Skew {
        node: String,
        skew_ms: i64,
    },
    /// These nodes lose power at the same instant (a correlated loss when
    /// several are named): each one's page cache — everything not fsynced
    /// and not yet written back — is lost; with `torn`, the last write to an
    /// unsynced file may survive only in part (a torn write). The node is
    /// down until `restart` (or the heal at the end of the chaos phase).
    PowerLoss {
        nodes: Vec<String>,
        torn: bool,
    },
    /// From now on, each disk operation on that node fails in the given ways
    /// with the given probabilities (until `disk-heal`).
    DiskFault {
        node: String,
        faults: DiskFaultSpec,
    },
    /// From now on, writes that need space on that node's disk fail; the
    /// broker stops, as Kafka does on an I/O error in its only log dir.
    DiskFull {
        node: String,
    },
    /// Ends that node's disk faults and fullness.
    DiskHeal {
        node: String,
    },
}

/// Per-operation probabilities of the disk faults, each 0.0..=1.0.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct DiskFaultSpec {
    /// A read returns data with one bit flipped.
    pub bit_flip_read: f64,
    /// A write stores data with one bit flipped.
    pub bit_flip_write: f64,
    /// A write is acknowledged but never stored.
    pub lost_write: f64,
    /// A write lands in another file.
    pub misdirected_write: f64,
}

impl Fault {
    /// The verb as written in scenario files.
    pub fn verb(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Stop { .. } => "stop",
            Fault::Restart { .. } => "restart",
            Fault::Pause { .. } => "pause",
            Fault::Resume { .. } => "resume",
            Fault::Isolate { .. } => "isolate",
            Fault::Partition { .. } => "partition",
            Fault::Heal => "heal",
            Fault::Latency { .. } => "latency",
            Fault::Loss { .. } => "loss",
            Fault::Skew { .. } => "skew",
            Fault::PowerLoss { .. } => "power-loss",
            Fault::DiskFault { .. } => "disk-fault",
            Fault::DiskFull { .. } => "disk-full",
            Fault::DiskHeal { .. } => "disk-heal",
        }
    }
}

/// `crash broker-1`, `partition [broker-0] | [broker-1 broker-2]`, `latency 5..50ms`,
/// `power-loss broker-1 broker-2 (torn)`, `disk-fault broker-0 bit_flip_read=0.01`: for traces.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = self.verb();
        match self {
            Fault::Crash { node }
            | Fault::Stop { node }
            | Fault::Restart { node }
            | Fault::Pause { node }
            | Fault::Resume { node }
            | Fault::Isolate { node }
            | Fault::DiskFull { node }
            | Fault::DiskHeal { node } => write!(f, "{verb} {node}"),
            Fault::Partition { groups, one_way } => {
                let groups: Vec<String> = groups.iter().map(|g| format!("[{}]", g.join(" "))).collect();
                let one_way = if *one_way { " (one-way)" } else { "" };
                write!(f, "{verb} {}{one_way}", groups.join(" | "))
            }
            Fault::Heal => f.write_str(verb),
            Fault::Latency { min_ms, max_ms } => write!(f, "{verb} {min_ms}..{max_ms}ms"),
            Fault::Loss { rate } => write!(f, "{verb} {rate}"),
            Fault::Skew { node, skew_ms } => write!(f, "{verb} {node} {skew_ms:+}ms"),
            Fault::PowerLoss { nodes, torn } => {
                let torn = if *torn { " (torn)" } else { "" };
                write!(f, "{verb} {}{torn}", nodes.join(" "))
            }
            Fault::DiskFault { node, faults } => {
                write!(f, "{verb} {node}")?;
                for (key, p) in faults.named() {
                    if p > 0.0 {
                        write!(f, " {key}={p}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl DiskFaultSpec {
    /// Each probability with its key, in file order.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("bit_flip_read", self.bit_flip_read),
            ("bit_flip_write", self.bit_flip_write),
            ("lost_write", self.lost_write),
            ("misdirected_write", self.misdirected_write),
        ]
    }

    pub fn any(&self) -> bool {
        self.named().iter().any(|(_, p)| *p > 0.0)
    }
}

/// A random nemesis: every `interval_ms` it draws, from its own seeded
/// stream, whether each kind of fault starts; each fault it starts is undone
/// after a duration drawn from `fault_duration_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct NemesisSpec {
    pub interval_ms: u64,
    pub fault_duration_ms: (u64, u64),
    /// Per-interval probabilities, each 0.0..=1.0.
    pub crash: f64,
    pub pause: f64,
    pub partition: f64,
    pub isolate: f64,
    pub loss: f64,
    pub latency: f64,
    pub skew: f64,
    /// Power loss of one random server (broker or controller), torn on a
    /// fair coin, undone by restarting it. Default 0: with the default
    /// `log_flush = "never"` a power loss can legitimately lose data.
    pub power_loss: f64,
    /// Bit flips on read on one random server's disk, at `disk_fault_rate`
    /// per read, undone by `disk-heal`.
    pub disk_fault: f64,
    /// Per-operation probability a drawn disk fault uses.
    pub disk_fault_rate: f64,
    /// Loss rate of a loss fault.
    pub loss_rate: f64,
    /// Upper end of a latency fault's range.
    pub max_latency_ms: u64,
    /// A skew fault draws from -max..=max.
    pub max_skew_ms: i64,
    /// Swarm testing: each seed keeps each fault kind with probability 1/2
    /// (at least one) and scales its rate by a factor drawn from 0.5..2.
    pub swarm: bool,
}

impl Default for NemesisSpec {
    fn default() -> Self {
        let (min, max) = limits::NEMESIS_FAULT_DURATION_MS.default_value();
        let p = limits::NEMESIS_PROBABILITY.default_value();
        NemesisSpec {
            interval_ms: limits::NEMESIS_INTERVAL_MS.default_value() as u64,
            fault_duration_ms: (min as u64, max as u64),
            crash: p,
            pause: p,
            partition: p,
            isolate: p,
            loss: p,
            latency: p,
            skew: p,
            power_loss: limits::NEMESIS_POWER_LOSS.default_value(),
            disk_fault: limits::NEMESIS_DISK_FAULT.default_value(),
            disk_fault_rate: limits::NEMESIS_DISK_FAULT_RATE.default_value(),
            loss_rate: limits::NEMESIS_LOSS_RATE.default_value(),
            max_latency_ms: limits::NEMESIS_MAX_LATENCY_MS.default_value() as u64,
            max_skew_ms: limits::NEMESIS_MAX_SKEW_MS.default_value(),
            swarm: false,
        }
    }
}

/// What a run is judged against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectSpec {
    /// A seed fails if any of these is violated.
    pub must_hold: Vec<Invariant>,
    /// Violations this research scenario expects to find in at least one seed.
    pub expected: Vec<Invariant>,
}

impl Default for ExpectSpec {
    fn default() -> Self {
        ExpectSpec {
            must_hold: Invariant::ALL.iter().copied().filter(|i| i.holds_by_default()).collect(),
            expected: Vec::new(),
        }
    }
}

impl Scenario {
    /// `broker-0`..`broker-{brokers-1}`.
    pub fn broker_names(&self) -> Vec<String> {
        numbered("broker", self.cluster.brokers)
    }

    /// Producers across every `[[workload.producers]]` entry.
    pub fn producer_count(&self) -> u32 {
        self.workload.producers.iter().map(|p| p.count).sum()
    }

    /// Whether any producer is transactional or any consumer a pipeline
    /// (whose members write in transactions).
    pub fn has_transactions(&self) -> bool {
        self.workload.producers.iter().any(|p| p.transactions.is_some())
            || self.workload.consumers.iter().any(|c| c.pipeline.is_some())
    }

    pub fn consumer_count(&self) -> u32 {
        self.workload.consumers.iter().map(|c| c.count).sum()
    }

    /// `producer-0`.., numbered across the producer entries in file order.
    pub fn producer_names(&self) -> Vec<String> {
        numbered("producer", self.producer_count())
    }

    pub fn consumer_names(&self) -> Vec<String> {
        numbered("consumer", self.consumer_count())
    }

    /// Brokers, then producers, then consumers.
    pub fn node_names(&self) -> Vec<String> {
        let mut names = self.broker_names();
        names.push(CONTROLLER_NODE.to_string());
        names.extend(self.producer_names());
        names.extend(self.consumer_names());
        names
    }

    /// Each producer's name with the entry that configures it.
    pub fn producers(&self) -> Vec<(String, &ProducerSpec)> {
        let specs = self.workload.producers.iter().flat_map(|p| (0..p.count).map(move |_| p));
        self.producer_names().into_iter().zip(specs).collect()
    }

    /// Each consumer's name, the entry that configures it and its index within that entry.
    pub fn consumers(&self) -> Vec<(String, &ConsumerSpec, u32)> {
        let specs = self.workload.consumers.iter().flat_map(|c| (0..c.count).map(move |i| (c, i)));
        self.consumer_names().into_iter().zip(specs).map(|(n, (c, i))| (n, c, i)).collect()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }
}

fn numbered(kind: &str, count: u32) -> Vec<String> {
    (0..count).map(|i| format!("{kind}-{i}")).collect()
}
