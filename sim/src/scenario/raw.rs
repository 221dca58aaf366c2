//! The TOML shape of a scenario file, as written. Values keep their byte
//! spans (`Spanned`) so that validation can point at them; nothing here
//! judges a value beyond its type. Integers are read as `i64` (TOML's own
//! integer type) so that a negative duration reaches validation and gets a
//! range message rather than a type error.

use broker_core::group::AssignorKind;
use broker_core::plant::Plant;
use broker_core::protocol::Acks;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use toml::Spanned;

use super::schema::{AssignmentSpec, CommitMode, IsolationSpec, PartitionerSpec, ResetSpec};
use crate::checker::Invariant;

pub(super) type S<T> = Spanned<T>;

/// `groups = [["broker-0"], ["broker-1", "broker-2"]]`, every level spanned.
pub(super) type RawGroups = S<Vec<S<Vec<S<String>>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Option<S<String>>,
    pub description: Option<S<String>>,
    pub duration_ms: S<Int>,
    pub drain_timeout_ms: Option<S<Int>>,
    pub recovery_bound_ms: Option<S<Int>>,
    pub seeds: Option<S<Int>>,
    pub plant: Option<Vec<S<Pick<Plant>>>>,
    pub cluster: RawCluster,
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub topics: Vec<S<RawTopic>>,
    pub workload: Option<RawWorkload>,
    #[serde(default)]
    pub faults: Vec<S<RawFault>>,
    pub nemesis: Option<RawNemesis>,
    pub expect: Option<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub brokers: S<Int>,
    pub unclean_leader_election: Option<S<bool>>,
    pub offsets_topic_partitions: Option<S<Int>>,
    pub transaction_state_partitions: Option<S<Int>>,
    pub broker: Option<RawBroker>,
    pub controller: Option<RawController>,
    pub disk: Option<RawDisk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisk {
    pub writeback_expire_ms: Option<S<Int>>,
    pub capacity_bytes: Option<S<Int>>,
    pub read_latency_us: Option<S<Vec<S<Int>>>>,
    pub write_latency_us: Option<S<Vec<S<Int>>>>,
    pub fsync_latency_us: Option<S<Vec<S<Int>>>>,
    pub bandwidth_mb_per_s: Option<S<Int>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawController {
    pub session_timeout_ms: Option<S<Int>>,
    pub heartbeat_interval_ms: Option<S<Int>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
    pub log_segment_bytes: Option<S<Int>>,
    pub log_index_interval_bytes: Option<S<Int>>,
    pub log_retention_bytes: Option<S<Int>>,
    pub log_retention_ms: Option<S<Int>>,
    pub log_retention_check_interval_ms: Option<S<Int>>,
    pub fetch_purgatory_limit: Option<S<Int>>,
    pub replica_lag_time_max_ms: Option<S<Int>>,
    pub replica_fetch_wait_max_ms: Option<S<Int>>,
    pub request_timeout_ms: Option<S<Int>>,
    pub log_flush: Option<S<Pick<FlushPolicy>>>,
    pub log_flush_interval_ms: Option<S<Int>>,
    pub log_flush_offset_checkpoint_interval_ms: Option<S<Int>>,
    pub replica_high_watermark_checkpoint_interval_ms: Option<S<Int>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub latency_ms: Option<S<Vec<S<Int>>>>,
    pub loss: Option<S<Num>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopic {
    pub name: S<String>,
    pub partitions: S<Int>,
    pub replication_factor: Option<S<Int>>,
    pub min_insync_replicas: Option<S<Int>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    #[serde(default)]
    pub producers: Vec<S<RawProducer>>,
    #[serde(default)]
    pub consumers: Vec<S<RawConsumer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProducer {
    pub count: Option<S<Int>>,
    pub topic: S<String>,
    pub rate_per_s: S<Int>,
    pub keys: Option<S<RawKeys>>,
    pub acks: Option<S<Pick<Acks>>>,
    pub linger_ms: Option<S<Int>>,
    pub batch_size_bytes: Option<S<Int>>,
    pub max_in_flight: Option<S<Int>>,
    pub request_timeout_ms: Option<S<Int>>,
    pub retries: Option<S<Int>>,
    pub retry_backoff_ms: Option<S<Int>>,
    pub delivery_timeout_ms: Option<S<Int>>,
    pub partitioner: Option<S<Pick<PartitionerSpec>>>,
    pub idempotence: Option<S<bool>>,
    pub transactional: Option<S<bool>>,
    pub transaction_records: Option<S<Int>>,
    pub abort_rate: Option<S<Num>>,
    pub transaction_timeout_ms: Option<S<Int>>,
    pub transactional_id: Option<S<String>>,
    pub start_ms: Option<S<Int>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    pub count: Option<S<Int>>,
    pub topics: S<Vec<S<String>>>,
    pub assignment: Option<S<Pick<AssignmentSpec>>>,
    pub auto_offset_reset: Option<S<Pick<ResetSpec>>>,
    pub isolation: Option<S<Pick<IsolationSpec>>>,
    pub poll_timeout_ms: Option<S<Int>>,
    pub max_poll_records: Option<S<Int>>,
    pub fetch_max_wait_ms: Option<S<Int>>,
    pub fetch_min_bytes: Option<S<Int>>,
    pub fetch_max_bytes: Option<S<Int>>,
    pub max_partition_fetch_bytes: Option<S<Int>>,
    pub request_timeout_ms: Option<S<Int>>,
    pub group: Option<S<String>>,
    pub assignor: Option<S<RawAssignors>>,
    pub session_timeout_ms: Option<S<Int>>,
    pub heartbeat_interval_ms: Option<S<Int>>,
    pub max_poll_interval_ms: Option<S<Int>>,
    pub commit: Option<S<Pick<CommitMode>>>,
    pub auto_commit_interval_ms: Option<S<Int>>,
    pub processing_ms: Option<S<Int>>,
    pub static_membership: Option<S<bool>>,
    pub transform_to: Option<S<String>>,
    pub abort_rate: Option<S<Num>>,
    pub transaction_timeout_ms: Option<S<Int>>,
}

/// One `[[faults]]` entry: every key any verb takes. Which keys a verb takes
/// is checked in `validate`, so a stray key gets a message naming the verb.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub at_ms: S<Int>,
    pub verb: S<Pick<Verb>>,
    pub node: Option<S<String>>,
    pub groups: Option<RawGroups>,
    pub one_way: Option<S<bool>>,
    pub min_ms: Option<S<Int>>,
    pub max_ms: Option<S<Int>>,
    pub rate: Option<S<Num>>,
    pub skew_ms: Option<S<Int>>,
    pub nodes: Option<S<Vec<S<String>>>>,
    pub torn: Option<S<bool>>,
    pub bit_flip_read: Option<S<Num>>,
    pub bit_flip_write: Option<S<Num>>,
    pub lost_write: Option<S<Num>>,
    pub misdirected_write: Option<S<Num>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNemesis {
    pub interval_ms: Option<S<Int>>,
    pub fault_duration_ms: Option<S<Vec<S<Int>>>>,
    pub crash: Option<S<Num>>,
    pub pause: Option<S<Num>>,
    pub partition: Option<S<Num>>,
    pub isolate: Option<S<Num>>,
    pub loss: Option<S<Num>>,
    pub latency: Option<S<Num>>,
    pub skew: Option<S<Num>>,
    pub power_loss: Option<S<Num>>,
    pub disk_fault: Option<S<Num>>,
    pub disk_fault_rate: Option<S<Num>>,
    pub loss_rate: Option<S<Num>>,
    pub max_latency_ms: Option<S<Int>>,
    pub max_skew_ms: Option<S<Int>>,
    pub swarm: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub must_hold: Option<Vec<S<Pick<Invariant>>>>,
    pub expected: Option<Vec<S<Pick<Invariant>>>>,
}

/// A TOML integer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v).map(Int).map_err(|_| E::custom(format!("integer {v} is too large")))
            }
        }
        d.deserialize_i64(V)
    }
}

/// A TOML number: a float, or an integer standing for one (`loss = 0`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
        }
        d.deserialize_f64(V)
    }
}

/// A value written as one of a closed set of names.
pub(super) trait Choice: Sized {
    /// What the value is, for type errors: "an acks setting".
    const EXPECTING: &'static str;
    /// Errors name the unknown value and list the known ones.
    fn parse(s: &str) -> Result<Self, String>;
}

/// A `Choice` read from a TOML string; unknown names fail at their position.
pub(super) struct Pick<T>(pub T);

impl<'de, T: Choice> Deserialize<'de> for Pick<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: Choice> Visitor<'_> for V<T> {
            type Value = Pick<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Pick<T>, E> {
                T::parse(v).map(Pick).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// The "unknown X `v`; expected one of: a, b" message, matching `Plant`'s and `Invariant`'s.
fn choose<T: Copy>(what: &str, v: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices.iter().find(|(name, _)| *name == v).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        format!("unknown {what} `{v}`; expected one of: {}", names.join(", "))
    })
}

impl Choice for Plant {
    const EXPECTING: &'static str = "the name of a planted bug (a string)";
    fn parse(s: &str) -> Result<Self, String> {
        Plant::from_str(s)
    }
}

impl Choice for Invariant {
    const EXPECTING: &'static str = "the name of an invariant (a string)";
    fn parse(s: &str) -> Result<Self, String> {
        Invariant::from_str(s)
    }
}

impl Choice for Acks {
    const EXPECTING: &'static str = "a string: \"0\", \"1\" or \"all\"";
    fn parse(s: &str) -> Result<Self, String> {
        choose("acks", s, &[("0", Acks::None), ("1", Acks::Leader), ("all", Acks::All)])
    }
}

impl Choice for PartitionerSpec {
    const EXPECTING: &'static str = "a string: \"sticky\" or \"round-robin\"";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = PartitionerSpec::ALL.iter().map(|p| (p.name(), *p)).collect();
        choose("partitioner", s, &choices)
    }
}

impl Choice for AssignmentSpec {
    const EXPECTING: &'static str = "a string: \"all\" or \"split\"";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = AssignmentSpec::ALL.iter().map(|a| (a.name(), *a)).collect();
        choose("assignment", s, &choices)
    }
}

impl Choice for IsolationSpec {
    const EXPECTING: &'static str = "a string: \"read_uncommitted\" or \"read_committed\"";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = IsolationSpec::ALL.iter().map(|i| (i.name(), *i)).collect();
        choose("isolation", s, &choices)
    }
}

impl Choice for ResetSpec {
    const EXPECTING: &'static str = "a string: \"earliest\", \"latest\" or \"none\"";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = ResetSpec::ALL.iter().map(|r| (r.name(), *r)).collect();
        choose("auto_offset_reset", s, &choices)
    }
}

impl Choice for AssignorKind {
    const EXPECTING: &'static str = "a string: \"range\", \"roundrobin\", \"sticky\" or \"cooperative-sticky\"";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = AssignorKind::ALL.iter().map(|a| (a.name(), *a)).collect();
        choose("assignor", s, &choices)
    }
}

impl Choice for CommitMode {
    const EXPECTING: &'static str = "a string: \"auto\", \"process-then-commit\" or \"commit-then-process\"";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = CommitMode::ALL.iter().map(|c| (c.name(), *c)).collect();
        choose("commit mode", s, &choices)
    }
}

/// `assignor = "range"` or `assignor = ["range", "cooperative-sticky"]`:
/// Kafka's `partition.assignment.strategy` is one name or a list. A lone
/// name is spanned by the key's own `Spanned`; list items each carry theirs.
pub(super) enum RawAssignors {
    One(AssignorKind),
    Many(Vec<S<Pick<AssignorKind>>>),
}

impl<'de> Deserialize<'de> for RawAssignors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAssignors;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an assignor name (a string) or an array of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAssignors, E> {
                <AssignorKind as Choice>::parse(v).map(RawAssignors::One).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAssignors, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(RawAssignors::Many(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `log_flush` policy name, before `log_flush_interval_ms` is joined to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FlushPolicy {
    Never,
    EveryBatch,
    Interval,
}

impl FlushPolicy {
    pub fn name(self) -> &'static str {
        match self {
            FlushPolicy::Never => "never",
            FlushPolicy::EveryBatch => "every-batch",
            FlushPolicy::Interval => "interval",
        }
    }
}

impl Choice for FlushPolicy {
    const EXPECTING: &'static str = "a string: \"never\", \"every-batch\" or \"interval\"";
    fn parse(s: &str) -> Result<Self, String> {
        let all = [FlushPolicy::Never, FlushPolicy::EveryBatch, FlushPolicy::Interval];
        let choices: Vec<_> = all.iter().map(|f| (f.name(), *f)).collect();
        choose("log_flush policy", s, &choices)
    }
}

/// A fault verb, before its keys are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verb {
    Crash,
    Stop,
    Restart,
    Pause,
    Resume,
    Isolate,
    Partition,
    Heal,
    Latency,
    Loss,
    Skew,
    PowerLoss,
    DiskFault,
    DiskFull,
    DiskHeal,
}

impl Verb {
    pub const ALL: &'static [Verb] = &[
        Verb::Crash,
        Verb::Stop,
        Verb::Restart,
        Verb::Pause,
        Verb::Resume,
        Verb::Isolate,
        Verb::Partition,
        Verb::Heal,
        Verb::Latency,
        Verb::Loss,
        Verb::Skew,
        Verb::PowerLoss,
        Verb::DiskFault,
        Verb::DiskFull,
        Verb::DiskHeal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Crash => "crash",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Isolate => "isolate",
            Verb::Partition => "partition",
            Verb::Heal => "heal",
            Verb::Latency => "latency",
            Verb::Loss => "loss",
            Verb::Skew => "skew",
            Verb::PowerLoss => "power-loss",
            Verb::DiskFault => "disk-fault",
            Verb::DiskFull => "disk-full",
            Verb::DiskHeal => "disk-heal",
        }
    }

    /// The keys besides `at_ms` and `verb`: (required, optional).
    /// `power-loss` needs exactly one of its optional `node` and `nodes`.
    pub fn keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Verb::Crash
            | Verb::Stop
            | Verb::Restart
            | Verb::Pause
            | Verb::Resume
            | Verb::Isolate
            | Verb::DiskFull
            | Verb::DiskHeal => (&["node"], &[]),
            Verb::PowerLoss => (&[], &["node", "nodes", "torn"]),
            Verb::DiskFault => (&["node"], &DISK_FAULT_KEYS),
            Verb::Partition => (&["groups"], &["one_way"]),
            Verb::Heal => (&[], &[]),
            Verb::Latency => (&["min_ms", "max_ms"], &[]),
            Verb::Loss => (&["rate"], &[]),
            Verb::Skew => (&["node", "skew_ms"], &[]),
        }
    }
}

/// The probabilities `disk-fault` takes, at least one above 0.
pub(super) const DISK_FAULT_KEYS: [&str; 4] = ["bit_flip_read", "bit_flip_write", "lost_write", "misdirected_write"];

impl Choice for Verb {
    const EXPECTING: &'static str = "a fault verb (a string)";
    fn parse(s: &str) -> Result<Self, String> {
        let choices: Vec<_> = Verb::ALL.iter().map(|v| (v.name(), *v)).collect();
        choose("fault verb", s, &choices)
    }
}

/// `keys = "none" | { random = N } | { partition = N }`.
pub(super) enum RawKeys {
    None,
    Random(S<Int>),
    Partition(S<Int>),
}

const KEYS_EXPECTING: &str = "\"none\", { random = N } or { partition = N }";

impl<'de> Deserialize<'de> for RawKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(KEYS_EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawKeys, E> {
                match v {
                    "none" => Ok(RawKeys::None),
                    _ => Err(E::custom(format!("unknown key mode `{v}`; expected {KEYS_EXPECTING}"))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawKeys, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!("empty key mode; expected {KEYS_EXPECTING}")));
                };
                let keys = match key.as_str() {
                    "random" => RawKeys::Random(map.next_value()?),
                    "partition" => RawKeys::Partition(map.next_value()?),
                    _ => return Err(de::Error::custom(format!("unknown key mode `{key}`; expected {KEYS_EXPECTING}"))),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a key mode is one of `random` or `partition`, got `{key}` and `{extra}`"
                    )));
                }
                Ok(keys)
            }
        }
        d.deserialize_any(V)
    }
}
