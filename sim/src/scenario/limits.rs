//! Every bound on a scenario, in one place. Validation checks against these
//! constants and docs/SCENARIOS.md prints them (a test keeps the two equal),
//! so a limit cannot change in one and not the other.

use std::fmt::Write as _;

/// Scenario files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// What happens when a key is left out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Presence<T> {
    /// The file must give it.
    Required,
    /// Left out means "off" (no limit, no value).
    Optional,
    /// Left out means this value.
    Default(T),
    /// Not a key: a count or length derived from the file.
    Derived,
}

/// Bounds on an integer key (both ends inclusive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntLimit {
    pub key: &'static str,
    pub min: i64,
    pub max: i64,
    pub presence: Presence<i64>,
}

/// Bounds on a number key (both ends inclusive; NaN is never allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloatLimit {
    pub key: &'static str,
    pub min: f64,
    pub max: f64,
    pub presence: Presence<f64>,
}

/// Bounds on a `[min, max]` pair of integers: each end within bounds, min <= max.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairLimit {
    pub key: &'static str,
    pub min: i64,
    pub max: i64,
    pub presence: Presence<(i64, i64)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    Int(IntLimit),
    Float(FloatLimit),
    Pair(PairLimit),
}

impl IntLimit {
    /// The value used when the key is left out; only meaningful for `Presence::Default`.
    pub(super) fn default_value(self) -> i64 {
        debug_assert!(matches!(self.presence, Presence::Default(_)), "{} has no default", self.key);
        match self.presence {
            Presence::Default(v) => v,
            _ => self.min,
        }
    }
}

impl FloatLimit {
    pub(super) fn default_value(self) -> f64 {
        debug_assert!(matches!(self.presence, Presence::Default(_)), "{} has no default", self.key);
        match self.presence {
            Presence::Default(v) => v,
            _ => self.min,
        }
    }
}

impl PairLimit {
    pub(super) fn default_value(self) -> (i64, i64) {
        debug_assert!(matches!(self.presence, Presence::Default(_)), "{} has no default", self.key);
        match self.presence {
            Presence::Default(v) => v,
            _ => (self.min, self.max),
        }
    }
}

const fn int(key: &'static str, min: i64, max: i64, presence: Presence<i64>) -> IntLimit {
    IntLimit { key, min, max, presence }
}
const fn float(key: &'static str, min: f64, max: f64, presence: Presence<f64>) -> FloatLimit {
    FloatLimit { key, min, max, presence }
}
const fn pair(key: &'static str, min: i64, max: i64, presence: Presence<(i64, i64)>) -> PairLimit {
    PairLimit { key, min, max, presence }
}

use Presence::{Default as D, Derived, Optional, Required};

const HOUR_MS: i64 = 3_600_000;
const GIB: i64 = 1 << 30;

// Top level.
pub const NAME_CHARS: IntLimit = int("name (characters)", 1, 100, Derived);
pub const DESCRIPTION_CHARS: IntLimit = int("description (characters)", 0, 10_000, Derived);
pub const DURATION_MS: IntLimit = int("duration_ms", 1, HOUR_MS, Required);
pub const DRAIN_TIMEOUT_MS: IntLimit = int("drain_timeout_ms", 1_000, 600_000, D(60_000));
pub const RECOVERY_BOUND_MS: IntLimit = int("recovery_bound_ms", 1_000, 600_000, D(60_000));
pub const SEEDS: IntLimit = int("seeds", 1, 100_000, D(10));

// [cluster] and [cluster.broker]; defaults are Kafka's.
pub const BROKERS: IntLimit = int("cluster.brokers", 1, 64, Required);
// Kafka's offsets.topic.num.partitions is 50; 3 keeps runs small.
pub const OFFSETS_TOPIC_PARTITIONS: IntLimit = int("cluster.offsets_topic_partitions", 1, 64, D(3));
// Kafka's transaction.state.log.num.partitions is 50; 3 keeps runs small.
pub const TRANSACTION_STATE_PARTITIONS: IntLimit = int("cluster.transaction_state_partitions", 1, 64, D(3));
pub const LOG_SEGMENT_BYTES: IntLimit = int("cluster.broker.log_segment_bytes", 1024, GIB, D(1_073_741_824));
pub const LOG_INDEX_INTERVAL_BYTES: IntLimit = int("cluster.broker.log_index_interval_bytes", 1, GIB, D(4096));
pub const LOG_RETENTION_BYTES: IntLimit = int("cluster.broker.log_retention_bytes", 1, 1 << 40, Optional);
pub const LOG_RETENTION_MS: IntLimit = int("cluster.broker.log_retention_ms", 1, 7 * 24 * HOUR_MS, Optional);
pub const LOG_RETENTION_CHECK_INTERVAL_MS: IntLimit =
    int("cluster.broker.log_retention_check_interval_ms", 1, HOUR_MS, D(300_000));
pub const FETCH_PURGATORY_LIMIT: IntLimit = int("cluster.broker.fetch_purgatory_limit", 1, 1_000_000, D(10_000));
pub const REPLICA_LAG_TIME_MAX_MS: IntLimit = int("cluster.broker.replica_lag_time_max_ms", 10, HOUR_MS, D(30_000));
pub const REPLICA_FETCH_WAIT_MAX_MS: IntLimit = int("cluster.broker.replica_fetch_wait_max_ms", 0, 60_000, D(500));
pub const BROKER_REQUEST_TIMEOUT_MS: IntLimit = int("cluster.broker.request_timeout_ms", 100, 600_000, D(30_000));
pub const LOG_FLUSH_INTERVAL_MS: IntLimit = int("cluster.broker.log_flush_interval_ms", 1, HOUR_MS, D(1000));
pub const LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS: IntLimit =
    int("cluster.broker.log_flush_offset_checkpoint_interval_ms", 100, HOUR_MS, D(60_000));
pub const REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: IntLimit =
    int("cluster.broker.replica_high_watermark_checkpoint_interval_ms", 100, HOUR_MS, D(5000));

// [cluster.controller]; defaults are KRaft's broker.session.timeout.ms and broker.heartbeat.interval.ms.
pub const SESSION_TIMEOUT_MS: IntLimit = int("cluster.controller.session_timeout_ms", 10, HOUR_MS, D(9_000));
pub const HEARTBEAT_INTERVAL_MS: IntLimit = int("cluster.controller.heartbeat_interval_ms", 1, 600_000, D(2_000));

// [cluster.disk]; writeback_expire_ms is Linux's dirty_expire_centisecs (0: never).
pub const DISK_WRITEBACK_EXPIRE_MS: IntLimit = int("cluster.disk.writeback_expire_ms", 0, HOUR_MS, D(30_000));
pub const DISK_CAPACITY_BYTES: IntLimit = int("cluster.disk.capacity_bytes", 1 << 20, 4 * GIB, Optional);
pub const DISK_READ_LATENCY_US: PairLimit = pair("cluster.disk.read_latency_us", 0, 10_000_000, Optional);
pub const DISK_WRITE_LATENCY_US: PairLimit = pair("cluster.disk.write_latency_us", 0, 10_000_000, Optional);
pub const DISK_FSYNC_LATENCY_US: PairLimit = pair("cluster.disk.fsync_latency_us", 0, 10_000_000, Optional);
pub const DISK_BANDWIDTH_MB_PER_S: IntLimit = int("cluster.disk.bandwidth_mb_per_s", 1, 100_000, Optional);

// [network]
pub const NETWORK_LATENCY_MS: PairLimit = pair("network.latency_ms", 0, 60_000, D((1, 10)));
pub const NETWORK_LOSS: FloatLimit = float("network.loss", 0.0, 0.9, D(0.0));

// [[topics]]
pub const TOPIC_NAME_CHARS: IntLimit = int("topics.name (characters)", 1, 100, Derived);
pub const PARTITIONS: IntLimit = int("topics.partitions", 1, 1024, Required);
pub const REPLICATION_FACTOR: IntLimit = int("topics.replication_factor", 1, 16, D(1));
pub const MIN_INSYNC_REPLICAS: IntLimit = int("topics.min_insync_replicas", 1, 16, D(1));
pub const TOTAL_PARTITIONS: IntLimit = int("topics (partitions in all)", 0, 4096, Derived);

// [[workload.producers]]; defaults are Kafka's producer defaults.
pub const PRODUCER_COUNT: IntLimit = int("workload.producers.count", 1, 1000, D(1));
pub const TOTAL_PRODUCERS: IntLimit = int("workload.producers (count in all)", 0, 1000, Derived);
pub const RATE_PER_S: IntLimit = int("workload.producers.rate_per_s", 1, 100_000, Required);
pub const KEYS_RANDOM: IntLimit = int("workload.producers.keys.random", 1, 1_000_000, Derived);
pub const KEYS_PARTITION: IntLimit = int("workload.producers.keys.partition", 0, 1023, Derived);
pub const LINGER_MS: IntLimit = int("workload.producers.linger_ms", 0, 60_000, D(5));
pub const BATCH_SIZE_BYTES: IntLimit = int("workload.producers.batch_size_bytes", 1, 16 << 20, D(16_384));
pub const MAX_IN_FLIGHT: IntLimit = int("workload.producers.max_in_flight", 1, 100, D(5));
pub const PRODUCER_REQUEST_TIMEOUT_MS: IntLimit = int("workload.producers.request_timeout_ms", 1, HOUR_MS, D(30_000));
pub const RETRIES: IntLimit = int("workload.producers.retries", 0, 2_147_483_647, D(2_147_483_647));
pub const RETRY_BACKOFF_MS: IntLimit = int("workload.producers.retry_backoff_ms", 0, 600_000, D(100));
pub const DELIVERY_TIMEOUT_MS: IntLimit = int("workload.producers.delivery_timeout_ms", 1, HOUR_MS, D(120_000));
pub const TRANSACTION_RECORDS: IntLimit = int("workload.producers.transaction_records", 1, 10_000, D(10));
pub const ABORT_RATE: FloatLimit = float("workload.producers.abort_rate", 0.0, 1.0, D(0.0));
// Kafka's transaction.max.timeout.ms is 900,000.
pub const TRANSACTION_TIMEOUT_MS: IntLimit = int("workload.producers.transaction_timeout_ms", 1, 900_000, D(60_000));
pub const TRANSACTIONAL_ID_BYTES: IntLimit = int("workload.producers.transactional_id (bytes)", 1, 255, Derived);
pub const PRODUCER_START_MS: IntLimit = int("workload.producers.start_ms", 0, HOUR_MS, D(0));

// [[workload.consumers]]; defaults are Kafka's consumer defaults except auto_offset_reset.
pub const CONSUMER_COUNT: IntLimit = int("workload.consumers.count", 1, 1000, D(1));
pub const TOTAL_CONSUMERS: IntLimit = int("workload.consumers (count in all)", 0, 1000, Derived);
pub const POLL_TIMEOUT_MS: IntLimit = int("workload.consumers.poll_timeout_ms", 0, 600_000, D(100));
pub const MAX_POLL_RECORDS: IntLimit = int("workload.consumers.max_poll_records", 1, 100_000, D(500));
pub const FETCH_MAX_WAIT_MS: IntLimit = int("workload.consumers.fetch_max_wait_ms", 0, 600_000, D(500));
pub const FETCH_MIN_BYTES: IntLimit = int("workload.consumers.fetch_min_bytes", 0, GIB, D(1));
pub const FETCH_MAX_BYTES: IntLimit = int("workload.consumers.fetch_max_bytes", 1, GIB, D(52_428_800));
pub const MAX_PARTITION_FETCH_BYTES: IntLimit =
    int("workload.consumers.max_partition_fetch_bytes", 1, GIB, D(1_048_576));
pub const CONSUMER_REQUEST_TIMEOUT_MS: IntLimit = int("workload.consumers.request_timeout_ms", 1, HOUR_MS, D(30_000));

// Group members (`group = "..."`); defaults are Kafka's. The session timeout's
// bounds are the coordinator's group.min/max.session.timeout.ms defaults.
pub const GROUP_ID_BYTES: IntLimit = int("workload.consumers.group (bytes)", 1, 255, Derived);
pub const GROUP_SESSION_TIMEOUT_MS: IntLimit =
    int("workload.consumers.session_timeout_ms", 6_000, 1_800_000, D(45_000));
pub const GROUP_HEARTBEAT_INTERVAL_MS: IntLimit =
    int("workload.consumers.heartbeat_interval_ms", 1, 1_800_000, D(3_000));
pub const MAX_POLL_INTERVAL_MS: IntLimit = int("workload.consumers.max_poll_interval_ms", 1, HOUR_MS, D(300_000));
pub const AUTO_COMMIT_INTERVAL_MS: IntLimit = int("workload.consumers.auto_commit_interval_ms", 1, HOUR_MS, D(5_000));
pub const PROCESSING_MS: IntLimit = int("workload.consumers.processing_ms", 0, 600_000, D(0));
pub const PIPELINE_ABORT_RATE: FloatLimit = float("workload.consumers.abort_rate", 0.0, 1.0, D(0.0));
pub const PIPELINE_TRANSACTION_TIMEOUT_MS: IntLimit =
    int("workload.consumers.transaction_timeout_ms", 1, 900_000, D(60_000));

// [[faults]]
pub const FAULTS: IntLimit = int("faults (entries)", 0, 10_000, Derived);
pub const AT_MS: IntLimit = int("faults.at_ms", 0, HOUR_MS, Required);
pub const FAULT_LATENCY_MS: IntLimit = int("faults.min_ms (and max_ms)", 0, 60_000, Required);
pub const FAULT_LOSS_RATE: FloatLimit = float("faults.rate", 0.0, 0.9, Required);
pub const SKEW_MS: IntLimit = int("faults.skew_ms", -HOUR_MS, HOUR_MS, Required);
pub const FAULT_DISK_PROBABILITY: FloatLimit =
    float("faults.bit_flip_read (and bit_flip_write, lost_write, misdirected_write)", 0.0, 1.0, D(0.0));

// [nemesis]
pub const NEMESIS_INTERVAL_MS: IntLimit = int("nemesis.interval_ms", 10, 600_000, D(1000));
pub const NEMESIS_FAULT_DURATION_MS: PairLimit = pair("nemesis.fault_duration_ms", 1, HOUR_MS, D((1000, 5000)));
pub const NEMESIS_PROBABILITY: FloatLimit =
    float("nemesis.crash (and pause, partition, isolate, loss, latency, skew)", 0.0, 1.0, D(0.0));
// Not the common default: with log_flush = "never" a power loss may lose acknowledged data.
pub const NEMESIS_POWER_LOSS: FloatLimit = float("nemesis.power_loss", 0.0, 1.0, D(0.0));
pub const NEMESIS_DISK_FAULT: FloatLimit = float("nemesis.disk_fault", 0.0, 1.0, D(0.0));
pub const NEMESIS_DISK_FAULT_RATE: FloatLimit = float("nemesis.disk_fault_rate", 0.0, 1.0, D(0.01));
pub const NEMESIS_LOSS_RATE: FloatLimit = float("nemesis.loss_rate", 0.0, 0.9, D(0.1));
pub const NEMESIS_MAX_LATENCY_MS: IntLimit = int("nemesis.max_latency_ms", 0, 60_000, D(200));
pub const NEMESIS_MAX_SKEW_MS: IntLimit = int("nemesis.max_skew_ms", 0, HOUR_MS, D(1000));

/// Every limit above, in file order.
pub const LIMITS: &[Limit] = &[
    Limit::Int(NAME_CHARS),
    Limit::Int(DESCRIPTION_CHARS),
    Limit::Int(DURATION_MS),
    Limit::Int(DRAIN_TIMEOUT_MS),
    Limit::Int(RECOVERY_BOUND_MS),
    Limit::Int(SEEDS),
    Limit::Int(BROKERS),
    Limit::Int(OFFSETS_TOPIC_PARTITIONS),
    Limit::Int(TRANSACTION_STATE_PARTITIONS),
    Limit::Int(LOG_SEGMENT_BYTES),
    Limit::Int(LOG_INDEX_INTERVAL_BYTES),
    Limit::Int(LOG_RETENTION_BYTES),
    Limit::Int(LOG_RETENTION_MS),
    Limit::Int(LOG_RETENTION_CHECK_INTERVAL_MS),
    Limit::Int(FETCH_PURGATORY_LIMIT),
    Limit::Int(REPLICA_LAG_TIME_MAX_MS),
    Limit::Int(REPLICA_FETCH_WAIT_MAX_MS),
    Limit::Int(BROKER_REQUEST_TIMEOUT_MS),
    Limit::Int(LOG_FLUSH_INTERVAL_MS),
    Limit::Int(LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS),
    Limit::Int(REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS),
    Limit::Int(SESSION_TIMEOUT_MS),
    Limit::Int(HEARTBEAT_INTERVAL_MS),
    Limit::Int(DISK_WRITEBACK_EXPIRE_MS),
    Limit::Int(DISK_CAPACITY_BYTES),
    Limit::Pair(DISK_READ_LATENCY_US),
    Limit::Pair(DISK_WRITE_LATENCY_US),
    Limit::Pair(DISK_FSYNC_LATENCY_US),
    Limit::Int(DISK_BANDWIDTH_MB_PER_S),
    Limit::Pair(NETWORK_LATENCY_MS),
    Limit::Float(NETWORK_LOSS),
    Limit::Int(TOPIC_NAME_CHARS),
    Limit::Int(PARTITIONS),
    Limit::Int(REPLICATION_FACTOR),
    Limit::Int(MIN_INSYNC_REPLICAS),
    Limit::Int(TOTAL_PARTITIONS),
    Limit::Int(PRODUCER_COUNT),
    Limit::Int(TOTAL_PRODUCERS),
    Limit::Int(RATE_PER_S),
    Limit::Int(KEYS_RANDOM),
    Limit::Int(KEYS_PARTITION),
    Limit::Int(LINGER_MS),
    Limit::Int(BATCH_SIZE_BYTES),
    Limit::Int(MAX_IN_FLIGHT),
    Limit::Int(PRODUCER_REQUEST_TIMEOUT_MS),
    Limit::Int(RETRIES),
    Limit::Int(RETRY_BACKOFF_MS),
    Limit::Int(DELIVERY_TIMEOUT_MS),
    Limit::Int(TRANSACTION_RECORDS),
    Limit::Float(ABORT_RATE),
    Limit::Int(TRANSACTION_TIMEOUT_MS),
    Limit::Int(TRANSACTIONAL_ID_BYTES),
    Limit::Int(PRODUCER_START_MS),
    Limit::Int(CONSUMER_COUNT),
    Limit::Int(TOTAL_CONSUMERS),
    Limit::Int(POLL_TIMEOUT_MS),
    Limit::Int(MAX_POLL_RECORDS),
    Limit::Int(FETCH_MAX_WAIT_MS),
    Limit::Int(FETCH_MIN_BYTES),
    Limit::Int(FETCH_MAX_BYTES),
    Limit::Int(MAX_PARTITION_FETCH_BYTES),
    Limit::Int(CONSUMER_REQUEST_TIMEOUT_MS),
    Limit::Int(GROUP_ID_BYTES),
    Limit::Int(GROUP_SESSION_TIMEOUT_MS),
    Limit::Int(GROUP_HEARTBEAT_INTERVAL_MS),
    Limit::Int(MAX_POLL_INTERVAL_MS),
    Limit::Int(AUTO_COMMIT_INTERVAL_MS),
    Limit::Int(PROCESSING_MS),
    Limit::Float(PIPELINE_ABORT_RATE),
    Limit::Int(PIPELINE_TRANSACTION_TIMEOUT_MS),
    Limit::Int(FAULTS),
    Limit::Int(AT_MS),
    Limit::Int(FAULT_LATENCY_MS),
    Limit::Float(FAULT_LOSS_RATE),
    Limit::Int(SKEW_MS),
    Limit::Float(FAULT_DISK_PROBABILITY),
    Limit::Int(NEMESIS_INTERVAL_MS),
    Limit::Pair(NEMESIS_FAULT_DURATION_MS),
    Limit::Float(NEMESIS_PROBABILITY),
    Limit::Float(NEMESIS_POWER_LOSS),
    Limit::Float(NEMESIS_DISK_FAULT),
    Limit::Float(NEMESIS_DISK_FAULT_RATE),
    Limit::Float(NEMESIS_LOSS_RATE),
    Limit::Int(NEMESIS_MAX_LATENCY_MS),
    Limit::Int(NEMESIS_MAX_SKEW_MS),
];

/// Rules that relate one value to another; checked in `validate`, listed here for the docs.
pub const RULES: &[&str] = &[
    "`cluster.broker.log_index_interval_bytes` <= `cluster.broker.log_segment_bytes`",
    "`cluster.broker.log_flush_interval_ms` only with `cluster.broker.log_flush = \"interval\"`",
    "`cluster.controller.heartbeat_interval_ms` < `cluster.controller.session_timeout_ms`",
    "`network.latency_ms`, `nemesis.fault_duration_ms`: first <= second",
    "`topics.name`: only `A-Z a-z 0-9 . _ -`, not `.` or `..`, unique",
    "`topics.replication_factor` <= `cluster.brokers`; `topics.min_insync_replicas` <= `replication_factor`",
    "`workload.producers.topic`, `workload.consumers.topics`: name a topic in `[[topics]]`",
    "`workload.producers.keys.partition` < that topic's `partitions`",
    "`workload.producers.delivery_timeout_ms` >= `linger_ms` + `request_timeout_ms` (as Kafka requires)",
    "`workload.producers.transactional = true` needs idempotence (it is implied; `idempotence = false` beside it is refused); `transaction_records`, `abort_rate`, `transaction_timeout_ms`, `transactional_id` only with it",
    "`workload.producers.transactional_id`: no control characters, not a producer's node name (`producer-N`, that producer's own id); entries sharing it share one transactional id",
    "`workload.producers.start_ms` < `duration_ms`",
    "`workload.producers.idempotence = true` needs `acks = \"all\"`, `retries` > 0 and `max_in_flight` <= 5 (as Kafka requires)",
    "`workload.consumers.fetch_min_bytes` <= `fetch_max_bytes`",
    "`workload.consumers.group`: no control characters; with it, no `assignment` (the group assigns partitions)",
    "`workload.consumers` keys `assignor`, `session_timeout_ms`, `heartbeat_interval_ms`, `max_poll_interval_ms`, \
     `commit`, `auto_commit_interval_ms`, `processing_ms`, `static_membership`: only with `group`",
    "`workload.consumers.heartbeat_interval_ms` < `session_timeout_ms`",
    "`workload.consumers.auto_commit_interval_ms` only with `commit = \"auto\"` (its default)",
    "`workload.consumers.transform_to` (a pipeline): needs `group`, names a topic in `[[topics]]` that the \
     entry does not read; no `commit` (offsets commit in the transactions); `isolation` read_committed (the \
     default with it); `abort_rate`, `transaction_timeout_ms` only with it",
    "`workload.consumers.assignor`: at least one, no name twice; entries naming the same `group` share at least one",
    "`faults.at_ms` <= `duration_ms`",
    "`faults.min_ms` <= `faults.max_ms`",
    "`faults.node`: an existing node (`controller` included); `restart` not a producer (a crashed producer stays down until the heal)",
    "`power-loss`, `disk-fault`, `disk-full`, `disk-heal`: only brokers and the controller (clients have no disk)",
    "`power-loss`: exactly one of `node` and `nodes`; `nodes` non-empty, each node at most once",
    "`disk-fault`: at least one of `bit_flip_read`, `bit_flip_write`, `lost_write`, `misdirected_write` above 0",
    "`faults.groups`: at least 2 non-empty groups, each node at most once",
    "`plant`, `expect.must_hold`, `expect.expected`: no name twice; `must_hold` and `expected` disjoint",
];

/// `1_073_741_824`-style: TOML accepts the underscores, so the docs can be copied.
pub fn format_int(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    if digits.len() <= 4 {
        return v.to_string();
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    if v < 0 {
        out.insert(0, '-');
    }
    out
}

fn format_float(v: f64) -> String {
    format!("{v:?}")
}

fn presence_cell<T>(p: Presence<T>, show: impl Fn(T) -> String) -> String {
    match p {
        Presence::Required => "required".to_string(),
        Presence::Optional => "unset".to_string(),
        Presence::Default(v) => format!("`{}`", show(v)),
        Presence::Derived => "—".to_string(),
    }
}

/// The limits table of docs/SCENARIOS.md.
pub fn limits_markdown() -> String {
    let mut out = String::from("| key | if left out | allowed |\n|---|---|---|\n");
    for limit in LIMITS {
        let (key, default, allowed) = match *limit {
            Limit::Int(l) => (
                l.key,
                presence_cell(l.presence, format_int),
                format!("{} to {}", format_int(l.min), format_int(l.max)),
            ),
            Limit::Float(l) => (
                l.key,
                presence_cell(l.presence, format_float),
                format!("{} to {}", format_float(l.min), format_float(l.max)),
            ),
            Limit::Pair(l) => (
                l.key,
                presence_cell(l.presence, |(a, b)| format!("[{}, {}]", format_int(a), format_int(b))),
                format!("each {} to {}", format_int(l.min), format_int(l.max)),
            ),
        };
        // "`name` (characters)": the code-formatted part is what a file spells.
        let key = match key.split_once(" (") {
            Some((k, note)) => format!("`{k}` ({note}"),
            None => format!("`{key}`"),
        };
        let _ = writeln!(out, "| {key} | {default} | {allowed} |");
    }
    out
}

/// The rules list of docs/SCENARIOS.md.
pub fn rules_markdown() -> String {
    RULES.iter().map(|r| format!("- {r}\n")).collect()
}
