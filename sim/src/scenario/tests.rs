//! Scenario parsing: a full file, the defaults, one test per class of bad
//! input (exact position and a key phrase), the docs kept in step with the
//! limits, and a property that no input makes `parse` panic.

use super::*;
use crate::checker::Invariant;
use crate::disk::{LatencySpec, ServiceTime};
use broker_core::group::AssignorKind;
use broker_core::plant::Plant;
use broker_core::protocol::Acks;
use proptest::prelude::*;

/// The smallest useful scenario: 8 lines, the topic's partitions on line 8.
const MIN: &str = r#"duration_ms = 10000

[cluster]
brokers = 3

[[topics]]
name = "orders"
partitions = 3
"#;

const FULL: &str = r#"name = "full-example"
description = "Every key, to pin the parser."
duration_ms = 30_000
drain_timeout_ms = 20000
recovery_bound_ms = 30000
seeds = 25
plant = ["fetch-skips-record"]

[cluster]
brokers = 3
unclean_leader_election = true
offsets_topic_partitions = 8

[cluster.broker]
log_segment_bytes = 1048576
log_index_interval_bytes = 1024
log_retention_bytes = 10485760
log_retention_ms = 600000
log_retention_check_interval_ms = 5000
fetch_purgatory_limit = 100
replica_lag_time_max_ms = 5000
replica_fetch_wait_max_ms = 250
log_flush = "interval"
log_flush_interval_ms = 250
log_flush_offset_checkpoint_interval_ms = 10000
replica_high_watermark_checkpoint_interval_ms = 2000

[cluster.controller]
session_timeout_ms = 3000
heartbeat_interval_ms = 500

[cluster.disk]
writeback_expire_ms = 0
capacity_bytes = 67108864
read_latency_us = [100, 2000]
write_latency_us = [0, 0]
fsync_latency_us = [1500, 1500]
bandwidth_mb_per_s = 250

[network]
latency_ms = [2, 20]
loss = 0.01

[[topics]]
name = "orders"
partitions = 4
replication_factor = 3
min_insync_replicas = 2

[[topics]]
name = "audit.log_v2"
partitions = 1

[[workload.producers]]
count = 2
topic = "orders"
rate_per_s = 500
keys = { random = 100 }
acks = "1"
linger_ms = 0
batch_size_bytes = 1024
max_in_flight = 1
request_timeout_ms = 2000
retries = 3
retry_backoff_ms = 50
delivery_timeout_ms = 10000
partitioner = "round-robin"

[[workload.producers]]
topic = "audit.log_v2"
rate_per_s = 10
keys = { partition = 0 }
acks = "0"

[[workload.consumers]]
count = 2
topics = ["orders", "audit.log_v2"]
assignment = "split"
auto_offset_reset = "latest"
poll_timeout_ms = 50
max_poll_records = 100
fetch_max_wait_ms = 200
fetch_min_bytes = 10
fetch_max_bytes = 1000000
max_partition_fetch_bytes = 100000
request_timeout_ms = 5000

[[workload.consumers]]
topics = ["orders"]
group = "billing"
assignor = ["cooperative-sticky", "roundrobin", "sticky", "range"]
session_timeout_ms = 10_000
heartbeat_interval_ms = 1000
max_poll_interval_ms = 60_000
commit = "auto"
auto_commit_interval_ms = 250
processing_ms = 5

[[workload.consumers]]
count = 2
topics = ["audit.log_v2", "orders"]
group = "billing"
assignor = "sticky"
commit = "commit-then-process"

[[faults]]
at_ms = 9000
verb = "partition"
groups = [["broker-0"], ["broker-1", "broker-2"]]
one_way = true

[[faults]]
at_ms = 1000
verb = "crash"
node = "broker-1"

[[faults]]
at_ms = 2000
verb = "restart"
node = "broker-1"

[[faults]]
at_ms = 3000
verb = "pause"
node = "producer-2"

[[faults]]
at_ms = 4000
verb = "resume"
node = "producer-2"

[[faults]]
at_ms = 5000
verb = "isolate"
node = "consumer-1"

[[faults]]
at_ms = 6000
verb = "heal"

[[faults]]
at_ms = 7000
verb = "latency"
min_ms = 5
max_ms = 50

[[faults]]
at_ms = 8000
verb = "loss"
rate = 0.2

[[faults]]
at_ms = 9000
verb = "skew"
node = "broker-0"
skew_ms = -1500

[[faults]]
at_ms = 9500
verb = "power-loss"
nodes = ["broker-1", "controller"]
torn = true

[[faults]]
at_ms = 9600
verb = "disk-fault"
node = "broker-2"
bit_flip_read = 0.01
bit_flip_write = 0.02
lost_write = 0.03
misdirected_write = 1

[[faults]]
at_ms = 9700
verb = "disk-full"
node = "controller"

[[faults]]
at_ms = 9800
verb = "disk-heal"
node = "broker-2"

[[faults]]
at_ms = 9900
verb = "power-loss"
node = "broker-0"

[nemesis]
interval_ms = 500
fault_duration_ms = [200, 800]
crash = 0.1
pause = 0.2
partition = 0.3
isolate = 0.4
loss = 0.5
latency = 0.6
skew = 1
power_loss = 0.05
disk_fault = 0.07
disk_fault_rate = 0.5
loss_rate = 0.3
max_latency_ms = 100
max_skew_ms = 250
swarm = true

[expect]
must_hold = ["lost-write", "crash"]
expected = ["poll-skip"]
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, "t.toml")
}

/// The one entry point for bad input: the error sits at `line:column` and says `phrase`.
#[track_caller]
fn check(text: &str, line: usize, column: usize, phrase: &str) {
    let error = match parse(text) {
        Ok(_) => panic!("expected an error containing {phrase:?}, but the scenario parsed"),
        Err(e) => e,
    };
    let shown = error.to_string();
    assert_eq!((error.line, error.column), (Some(line), Some(column)), "wrong position in: {shown}");
    assert!(shown.starts_with(&format!("t.toml:{line}:{column}: ")), "{shown}");
    assert!(shown.contains(phrase), "{shown:?} does not contain {phrase:?}");
    assert!(!error.message.contains('\n'), "message spans lines: {shown}");
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn full_scenario_reads_every_key() {
    let s = parse(FULL).unwrap();
    let expected = Scenario {
        name: "full-example".into(),
        description: "Every key, to pin the parser.".into(),
        file: "t.toml".into(),
        duration_ms: 30_000,
        drain_timeout_ms: 20_000,
        recovery_bound_ms: 30_000,
        seeds: 25,
        plant: vec![Plant::FetchSkipsRecord],
        cluster: ClusterSpec {
            brokers: 3,
            unclean_leader_election: true,
            offsets_topic_partitions: 8,
            transaction_state_partitions: 3,
            controller: ControllerSpec { session_timeout_ms: 3000, heartbeat_interval_ms: 500 },
            broker: BrokerSpec {
                log_segment_bytes: 1_048_576,
                log_index_interval_bytes: 1024,
                log_retention_bytes: Some(10_485_760),
                log_retention_ms: Some(600_000),
                log_retention_check_interval_ms: 5000,
                fetch_purgatory_limit: 100,
                replica_lag_time_max_ms: 5000,
                replica_fetch_wait_max_ms: 250,
                request_timeout_ms: 30_000,
                log_flush: FlushSpec::IntervalMs(250),
                log_flush_offset_checkpoint_interval_ms: 10_000,
                replica_high_watermark_checkpoint_interval_ms: 2000,
            },
            disk: DiskSpec {
                writeback_expire_ms: None,
                capacity_bytes: Some(64 << 20),
                latency: LatencySpec {
                    read: Some(ServiceTime { median_us: 100, p99_us: 2000 }),
                    write: Some(ServiceTime { median_us: 0, p99_us: 0 }),
                    fsync: Some(ServiceTime { median_us: 1500, p99_us: 1500 }),
                    bandwidth_bytes_per_ms: Some(250_000),
                },
            },
        },
        network: NetworkSpec { latency_ms: (2, 20), loss: 0.01 },
        topics: vec![
            TopicSpec { name: "orders".into(), partitions: 4, replication_factor: 3, min_insync_replicas: 2 },
            TopicSpec { name: "audit.log_v2".into(), partitions: 1, replication_factor: 1, min_insync_replicas: 1 },
        ],
        workload: WorkloadSpec {
            producers: vec![
                ProducerSpec {
                    count: 2,
                    topic: "orders".into(),
                    rate_per_s: 500,
                    keys: KeyMode::Random { key_count: 100 },
                    acks: Acks::Leader,
                    linger_ms: 0,
                    batch_size_bytes: 1024,
                    max_in_flight: 1,
                    request_timeout_ms: 2000,
                    retries: 3,
                    retry_backoff_ms: 50,
                    delivery_timeout_ms: 10_000,
                    partitioner: PartitionerSpec::RoundRobin,
                    idempotence: false,
                    transactions: None,
                    start_ms: 0,
                },
                ProducerSpec {
                    count: 1,
                    topic: "audit.log_v2".into(),
                    rate_per_s: 10,
                    keys: KeyMode::Partition(0),
                    acks: Acks::None,
                    linger_ms: 5,
                    batch_size_bytes: 16_384,
                    max_in_flight: 5,
                    request_timeout_ms: 30_000,
                    retries: 2_147_483_647,
                    retry_backoff_ms: 100,
                    delivery_timeout_ms: 120_000,
                    partitioner: PartitionerSpec::Sticky,
                    idempotence: false,
                    transactions: None,
                    start_ms: 0,
                },
            ],
            consumers: vec![
                ConsumerSpec {
                    count: 2,
                    topics: strings(&["orders", "audit.log_v2"]),
                    assignment: AssignmentSpec::Split,
                    auto_offset_reset: ResetSpec::Latest,
                    poll_timeout_ms: 50,
                    max_poll_records: 100,
                    fetch_max_wait_ms: 200,
                    fetch_min_bytes: 10,
                    fetch_max_bytes: 1_000_000,
                    max_partition_fetch_bytes: 100_000,
                    request_timeout_ms: 5000,
                    isolation: IsolationSpec::ReadUncommitted,
                    group: None,
                    pipeline: None,
                },
                ConsumerSpec {
                    count: 1,
                    topics: strings(&["orders"]),
                    group: Some(GroupSpec {
                        id: "billing".into(),
                        assignors: vec![
                            AssignorKind::CooperativeSticky,
                            AssignorKind::RoundRobin,
                            AssignorKind::Sticky,
                            AssignorKind::Range,
                        ],
                        session_timeout_ms: 10_000,
                        heartbeat_interval_ms: 1000,
                        max_poll_interval_ms: 60_000,
                        commit: CommitMode::Auto,
                        auto_commit_interval_ms: 250,
                        processing_ms: 5,
                        static_membership: false,
                    }),
                    ..default_consumer()
                },
                ConsumerSpec {
                    count: 2,
                    topics: strings(&["audit.log_v2", "orders"]),
                    group: Some(GroupSpec {
                        assignors: vec![AssignorKind::Sticky],
                        commit: CommitMode::CommitThenProcess,
                        ..default_group("billing")
                    }),
                    ..default_consumer()
                },
            ],
        },
        faults: vec![
            TimedFault { at_ms: 1000, fault: Fault::Crash { node: "broker-1".into() }, line: 112 },
            TimedFault { at_ms: 2000, fault: Fault::Restart { node: "broker-1".into() }, line: 117 },
            TimedFault { at_ms: 3000, fault: Fault::Pause { node: "producer-2".into() }, line: 122 },
            TimedFault { at_ms: 4000, fault: Fault::Resume { node: "producer-2".into() }, line: 127 },
            TimedFault { at_ms: 5000, fault: Fault::Isolate { node: "consumer-1".into() }, line: 132 },
            TimedFault { at_ms: 6000, fault: Fault::Heal, line: 137 },
            TimedFault { at_ms: 7000, fault: Fault::Latency { min_ms: 5, max_ms: 50 }, line: 141 },
            TimedFault { at_ms: 8000, fault: Fault::Loss { rate: 0.2 }, line: 147 },
            // Equal times keep file order: the partition (line 106) before the skew.
            TimedFault {
                at_ms: 9000,
                fault: Fault::Partition {
                    groups: vec![strings(&["broker-0"]), strings(&["broker-1", "broker-2"])],
                    one_way: true,
                },
                line: 106,
            },
            TimedFault { at_ms: 9000, fault: Fault::Skew { node: "broker-0".into(), skew_ms: -1500 }, line: 152 },
            TimedFault {
                at_ms: 9500,
                fault: Fault::PowerLoss { nodes: strings(&["broker-1", "controller"]), torn: true },
                line: 158,
            },
            TimedFault {
                at_ms: 9600,
                fault: Fault::DiskFault {
                    node: "broker-2".into(),
                    faults: DiskFaultSpec {
                        bit_flip_read: 0.01,
                        bit_flip_write: 0.02,
                        lost_write: 0.03,
                        misdirected_write: 1.0,
                    },
                },
                line: 164,
            },
            TimedFault { at_ms: 9700, fault: Fault::DiskFull { node: "controller".into() }, line: 173 },
            TimedFault { at_ms: 9800, fault: Fault::DiskHeal { node: "broker-2".into() }, line: 178 },
            TimedFault {
                at_ms: 9900,
                fault: Fault::PowerLoss { nodes: strings(&["broker-0"]), torn: false },
                line: 183,
            },
        ],
        nemesis: Some(NemesisSpec {
            interval_ms: 500,
            fault_duration_ms: (200, 800),
            crash: 0.1,
            pause: 0.2,
            partition: 0.3,
            isolate: 0.4,
            loss: 0.5,
            latency: 0.6,
            skew: 1.0,
            power_loss: 0.05,
            disk_fault: 0.07,
            disk_fault_rate: 0.5,
            loss_rate: 0.3,
            max_latency_ms: 100,
            max_skew_ms: 250,
            swarm: true,
        }),
        expect: ExpectSpec {
            must_hold: vec![Invariant::LostWrite, Invariant::Crash],
            expected: vec![Invariant::PollSkip],
        },
    };
    assert_eq!(s, expected);
}

#[test]
fn full_scenario_names_its_nodes() {
    let s = parse(FULL).unwrap();
    assert_eq!(s.broker_names(), strings(&["broker-0", "broker-1", "broker-2"]));
    assert_eq!((s.producer_count(), s.consumer_count()), (3, 5));
    assert_eq!(
        s.node_names(),
        strings(&[
            "broker-0",
            "broker-1",
            "broker-2",
            "controller",
            "producer-0",
            "producer-1",
            "producer-2",
            "consumer-0",
            "consumer-1",
            "consumer-2",
            "consumer-3",
            "consumer-4"
        ])
    );
    let producers: Vec<(String, String)> = s.producers().into_iter().map(|(n, p)| (n, p.topic.clone())).collect();
    assert_eq!(producers[2], ("producer-2".to_string(), "audit.log_v2".to_string()));
    // Split deals orders-0..3 and audit.log_v2-0 round-robin over two consumers.
    let consumers = s.consumers();
    let (name, spec, index) = &consumers[1];
    assert_eq!((name.as_str(), *index), ("consumer-1", 1));
    let tp = |t: &str, p| (t.to_string(), p);
    assert_eq!(spec.partitions_for(0, &s.topics), vec![tp("orders", 0), tp("orders", 2), tp("audit.log_v2", 0)]);
    assert_eq!(spec.partitions_for(1, &s.topics), vec![tp("orders", 1), tp("orders", 3)]);
    assert_eq!(
        s.faults.iter().map(|f| f.fault.to_string()).collect::<Vec<_>>()[6..],
        [
            "latency 5..50ms",
            "loss 0.2",
            "partition [broker-0] | [broker-1 broker-2] (one-way)",
            "skew broker-0 -1500ms",
            "power-loss broker-1 controller (torn)",
            "disk-fault broker-2 bit_flip_read=0.01 bit_flip_write=0.02 lost_write=0.03 misdirected_write=1",
            "disk-full controller",
            "disk-heal broker-2",
            "power-loss broker-0",
        ]
    );
}

#[test]
fn minimal_scenario_gets_the_documented_defaults() {
    let s = Scenario::parse(MIN, "scenarios/minimal.toml").unwrap();
    assert_eq!(s.name, "minimal");
    assert_eq!(s.file, "scenarios/minimal.toml");
    assert_eq!(s.description, "");
    assert_eq!((s.duration_ms, s.drain_timeout_ms, s.seeds), (10_000, 60_000, 10));
    assert!(s.plant.is_empty());
    assert_eq!(
        s.cluster,
        ClusterSpec {
            brokers: 3,
            unclean_leader_election: false,
            broker: BrokerSpec::default(),
            controller: ControllerSpec { session_timeout_ms: 9000, heartbeat_interval_ms: 2000 },
            disk: DiskSpec::default(),
            offsets_topic_partitions: 3,
            transaction_state_partitions: 3,
        }
    );
    assert_eq!(
        BrokerSpec::default(),
        BrokerSpec {
            log_segment_bytes: 1_073_741_824,
            log_index_interval_bytes: 4096,
            log_retention_bytes: None,
            log_retention_ms: None,
            log_retention_check_interval_ms: 300_000,
            fetch_purgatory_limit: 10_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            request_timeout_ms: 30_000,
            log_flush: FlushSpec::Never,
            log_flush_offset_checkpoint_interval_ms: 60_000,
            replica_high_watermark_checkpoint_interval_ms: 5000,
        }
    );
    assert_eq!(DiskSpec::default(), s.cluster.disk);
    assert_eq!(s.network, NetworkSpec { latency_ms: (1, 10), loss: 0.0 });
    assert_eq!(
        s.topics,
        vec![TopicSpec { name: "orders".into(), partitions: 3, replication_factor: 1, min_insync_replicas: 1 }]
    );
    assert_eq!(s.workload, WorkloadSpec::default());
    assert!(s.faults.is_empty());
    assert_eq!(s.nemesis, None);
    let every_default: Vec<Invariant> = Invariant::ALL.iter().copied().filter(|i| i.holds_by_default()).collect();
    assert_eq!(s.expect, ExpectSpec { must_hold: every_default, expected: vec![] });
    assert_eq!(s.node_names(), strings(&["broker-0", "broker-1", "broker-2", "controller"]));
}

#[test]
fn workload_and_nemesis_defaults() {
    let text = format!(
        "{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 10\n\n\
         [[workload.consumers]]\ntopics = [\"orders\"]\n\n[nemesis]\n\n[expect]\nexpected = [\"lost-write\"]\n"
    );
    let s = parse(&text).unwrap();
    let p = &s.workload.producers[0];
    assert_eq!((p.count, p.keys, p.acks, p.partitioner), (1, KeyMode::None, Acks::All, PartitionerSpec::Sticky));
    assert_eq!((p.linger_ms, p.batch_size_bytes, p.max_in_flight), (5, 16_384, 5));
    assert_eq!(
        (p.request_timeout_ms, p.retries, p.retry_backoff_ms, p.delivery_timeout_ms),
        (30_000, 2_147_483_647, 100, 120_000)
    );
    let c = &s.workload.consumers[0];
    assert_eq!((c.count, c.assignment, c.auto_offset_reset), (1, AssignmentSpec::All, ResetSpec::Earliest));
    assert_eq!((c.poll_timeout_ms, c.max_poll_records, c.fetch_max_wait_ms), (100, 500, 500));
    assert_eq!(
        (c.fetch_min_bytes, c.fetch_max_bytes, c.max_partition_fetch_bytes, c.request_timeout_ms),
        (1, 52_428_800, 1_048_576, 30_000)
    );
    assert_eq!(s.nemesis, Some(NemesisSpec::default()));
    let n = NemesisSpec::default();
    assert_eq!((n.interval_ms, n.fault_duration_ms, n.crash, n.skew), (1000, (1000, 5000), 0.0, 0.0));
    assert_eq!((n.loss_rate, n.max_latency_ms, n.max_skew_ms), (0.1, 200, 1000));
    // Power loss and disk faults are off unless asked for: with log_flush =
    // "never" a power loss may lose acknowledged writes, legitimately.
    assert_eq!((n.power_loss, n.disk_fault, n.disk_fault_rate), (0.0, 0.0, 0.01));
    // must_hold left out: the defaults minus what is expected.
    assert!(!s.expect.must_hold.contains(&Invariant::LostWrite));
    assert!(s.expect.must_hold.contains(&Invariant::Unseen));
    assert_eq!(s.expect.expected, vec![Invariant::LostWrite]);
}

// ---- syntax, keys and types: the toml crate's errors, made one line ------

#[test]
fn malformed_toml() {
    check(&format!("{MIN}\n[workload\n"), 10, 10, "invalid table header");
}

#[test]
fn unknown_key_top_level() {
    check(&format!("{MIN}seed = 3\n"), 9, 1, "unknown key `seed`");
}

#[test]
fn unknown_key_nested() {
    check(&format!("{MIN}\n[cluster.broker]\nlog_segment_size = 1\n"), 11, 1, "unknown key `log_segment_size`");
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"heal\"\nhost = \"broker-0\"\n"),
        13,
        1,
        "unknown key `host`",
    );
}

#[test]
fn wrong_type() {
    check("duration_ms = 10\n[cluster]\nbrokers = \"three\"\n", 3, 11, "expected an integer");
    check(&format!("{MIN}\n[network]\nloss = \"none\"\n"), 11, 8, "expected a number");
    check(
        &format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 1\nacks = 1\n"),
        13,
        8,
        "\"0\", \"1\" or \"all\"",
    );
}

#[test]
fn missing_required_key() {
    let e = parse("[cluster]\nbrokers = 3\n").unwrap_err();
    assert_eq!(e.to_string(), "t.toml: missing required key `duration_ms`");
    check(&format!("{MIN}\n[[faults]]\nat_ms = 1\n"), 10, 1, "missing required key `verb`");
}

#[test]
fn duplicate_key() {
    check("duration_ms = 1\nduration_ms = 2\n", 2, 1, "duplicate key");
}

// ---- ranges -----------------------------------------------------------------

#[test]
fn zero_brokers() {
    check("duration_ms = 10\n[cluster]\nbrokers = 0\n", 3, 11, "cluster.brokers must be between 1 and 64, got 0");
}

#[test]
fn negative_duration() {
    check("duration_ms = -5\n[cluster]\nbrokers = 1\n", 1, 15, "duration_ms must be between 1 and 3_600_000, got -5");
}

#[test]
fn absurd_duration() {
    check("duration_ms = 1_000_000_000\n[cluster]\nbrokers = 1\n", 1, 15, "must be between 1 and 3_600_000");
    check("duration_ms = 99999999999999999999\n[cluster]\nbrokers = 1\n", 1, 15, "too large");
}

#[test]
fn negative_size_in_a_nested_table() {
    check(&format!("{MIN}\n[[workload.consumers]]\ntopics = [\"orders\"]\nfetch_max_bytes = -1\n"), 12, 19, "got -1");
}

#[test]
fn reversed_latency_range() {
    check(&format!("{MIN}\n[network]\nlatency_ms = [50, 10]\n"), 11, 14, "network.latency_ms is reversed");
    check(&format!("{MIN}\n[network]\nlatency_ms = [1, 2, 3]\n"), 11, 14, "must be [min, max], got 3 values");
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"latency\"\nmin_ms = 30\nmax_ms = 20\n"),
        14,
        10,
        "max_ms (20) is below min_ms (30)",
    );
}

#[test]
fn segment_bytes_past_the_limit() {
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_segment_bytes = 2_000_000_000\n"),
        11,
        21,
        "cluster.broker.log_segment_bytes must be between 1024 and 1_073_741_824",
    );
}

#[test]
fn index_interval_past_the_segment() {
    check(&format!("{MIN}\n[cluster.broker]\nlog_segment_bytes = 2048\n"), 11, 21, "must not exceed log_segment_bytes");
}

#[test]
fn delivery_timeout_below_linger_plus_request_timeout() {
    check(
        &format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 1\ndelivery_timeout_ms = 1000\n"),
        13,
        23,
        "as Kafka requires",
    );
}

#[test]
fn idempotence_with_settings_kafka_refuses() {
    let producer = |extra: &str| {
        format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 1\n{extra}\nidempotence = true\n")
    };
    check(&producer("acks = \"1\""), 13, 8, "idempotence = true needs acks = \"all\", as Kafka requires");
    check(&producer("max_in_flight = 6"), 13, 17, "idempotence = true needs max_in_flight <= 5");
    check(&producer("retries = 0"), 13, 11, "idempotence = true needs retries > 0");
    let ok = parse(&producer("max_in_flight = 5")).expect("a valid idempotent producer");
    assert!(ok.workload.producers[0].idempotence);
}

#[test]
fn too_many_partitions() {
    let mut text = String::from("duration_ms = 10\n[cluster]\nbrokers = 1\n");
    for i in 0..5 {
        text.push_str(&format!("[[topics]]\nname = \"t{i}\"\npartitions = 1000\n"));
    }
    check(&text, 18, 14, "topics have 5000 partitions in all; the limit is 4096");
}

// ---- names ------------------------------------------------------------------

#[test]
fn fault_names_a_missing_broker() {
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"crash\"\nnode = \"broker-7\"\n"),
        13,
        8,
        "fault names node \"broker-7\", but the cluster has brokers broker-0..broker-2",
    );
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"pause\"\nnode = \"producer-0\"\n"),
        13,
        8,
        "the workload has no producers",
    );
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"pause\"\nnode = \"zookeeper-0\"\n"),
        13,
        8,
        "unknown node \"zookeeper-0\"; nodes are named broker-N, controller, producer-N and consumer-N",
    );
    check(&format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"pause\"\nnode = \"broker-01\"\n"), 13, 8, "broker-01");
}

#[test]
fn producers_crash_but_do_not_restart() {
    let producer = format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 10\n");
    let crash = format!("{producer}\n[[faults]]\nat_ms = 1\nverb = \"crash\"\nnode = \"producer-0\"\n");
    let scenario = Scenario::parse(&crash, "t.toml").expect("parses");
    assert_eq!(scenario.faults[0].fault.to_string(), "crash producer-0");
    check(
        &format!("{crash}\n[[faults]]\nat_ms = 2\nverb = \"restart\"\nnode = \"producer-0\"\n"),
        22,
        8,
        "restart applies to brokers, the controller and consumers, but \"producer-0\" is a producer \
         (a crashed producer stays down until the heal)",
    );
}

#[test]
fn consumers_crash_and_restart() {
    let text = format!(
        "{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 10\n\n[[workload.consumers]]\ntopics = [\"orders\"]\n\n\
         [[faults]]\nat_ms = 1\nverb = \"crash\"\nnode = \"consumer-0\"\n\n\
         [[faults]]\nat_ms = 2\nverb = \"restart\"\nnode = \"consumer-0\"\n"
    );
    let scenario = Scenario::parse(&text, "t.toml").expect("parses");
    assert_eq!(scenario.faults.len(), 2);
}

#[test]
fn fault_at_ms_past_duration() {
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 10001\nverb = \"heal\"\n"),
        11,
        9,
        "at_ms 10001 is past duration_ms (10000)",
    );
}

#[test]
fn fault_verb_and_its_keys() {
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"explode\"\n"),
        12,
        8,
        "unknown fault verb `explode`; expected one of: crash,",
    );
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"heal\"\nnode = \"broker-0\"\n"),
        13,
        8,
        "`node` does not apply to verb \"heal\"",
    );
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"skew\"\nnode = \"broker-0\"\n"),
        12,
        8,
        "verb \"skew\" needs `skew_ms`",
    );
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"loss\"\nrate = 0.95\n"),
        13,
        8,
        "rate must be between 0.0 and 0.9, got 0.95",
    );
}

#[test]
fn unknown_planted_bug() {
    check(&format!("plant = [\"offset-reuse\", \"no-such-bug\"]\n{MIN}"), 1, 26, "unknown planted bug `no-such-bug`");
    check(&format!("plant = [\"offset-reuse\", \"offset-reuse\"]\n{MIN}"), 1, 26, "plant lists \"offset-reuse\" twice");
}

#[test]
fn unknown_invariant() {
    check(&format!("{MIN}\n[expect]\nmust_hold = [\"lost-writes\"]\n"), 11, 14, "unknown invariant `lost-writes`");
}

#[test]
fn overlapping_expect_lists() {
    check(
        &format!("{MIN}\n[expect]\nmust_hold = [\"lost-write\", \"unseen\"]\nexpected = [\"duplicate\", \"unseen\"]\n"),
        12,
        26,
        "\"unseen\" is in both expect.must_hold and expect.expected",
    );
}

#[test]
fn unknown_topic() {
    check(
        &format!("{MIN}\n[[workload.producers]]\ntopic = \"order\"\nrate_per_s = 1\n"),
        11,
        9,
        "unknown topic \"order\"; the [[topics]] are \"orders\"",
    );
    check(&format!("{MIN}\n[[workload.consumers]]\ntopics = [\"orders\", \"x\"]\n"), 11, 21, "unknown topic \"x\"");
}

#[test]
fn key_partition_outside_the_topic() {
    check(
        &format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 1\nkeys = {{ partition = 3 }}\n"),
        13,
        22,
        "keys.partition is 3, but topic \"orders\" has 3 partition(s), 0..=2",
    );
    check(
        &format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 1\nkeys = 7\n"),
        13,
        8,
        "\"none\", { random = N } or { partition = N }",
    );
}

#[test]
fn replication_factor_past_the_brokers() {
    check(&format!("{MIN}replication_factor = 4\n"), 9, 22, "replication_factor 4 exceeds the cluster's 3 broker(s)");
    check(
        &format!("{MIN}replication_factor = 0\n"),
        9,
        22,
        "topics.replication_factor must be between 1 and 16, got 0",
    );
}

#[test]
fn min_insync_replicas_past_the_replication_factor() {
    check(
        &format!("{MIN}replication_factor = 2\nmin_insync_replicas = 3\n"),
        10,
        23,
        "min_insync_replicas 3 exceeds replication_factor 2: acks=all could never succeed",
    );
    // Left-out replication factor is 1.
    check(&format!("{MIN}min_insync_replicas = 2\n"), 9, 23, "min_insync_replicas 2 exceeds replication_factor 1");
}

#[test]
fn heartbeat_not_below_the_session_timeout() {
    check(
        &format!("{MIN}\n[cluster.controller]\nsession_timeout_ms = 1000\nheartbeat_interval_ms = 1000\n"),
        12,
        25,
        "heartbeat_interval_ms (1000) must be below session_timeout_ms (1000)",
    );
}

#[test]
fn controller_is_a_node() {
    let crash = parse(&format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"crash\"\nnode = \"controller\"\n")).unwrap();
    assert_eq!(crash.faults[0].fault.to_string(), "crash controller");
    check(&format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"pause\"\nnode = \"controller-0\"\n"), 13, 8, "unknown node");
}

#[test]
fn duplicate_topic_name() {
    check(
        &format!("{MIN}\n[[topics]]\nname = \"orders\"\npartitions = 1\n"),
        11,
        8,
        "topic \"orders\" is defined twice (first at line 7)",
    );
}

#[test]
fn bad_topic_name() {
    check(&format!("{MIN}\n[[topics]]\nname = \"a b\"\npartitions = 1\n"), 11, 8, "contains ' '");
    check(&format!("{MIN}\n[[topics]]\nname = \"..\"\npartitions = 1\n"), 11, 8, "may not be \"..\"");
}

#[test]
fn one_way_partition_with_fewer_than_2_groups() {
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"partition\"\ngroups = [[\"broker-0\", \"broker-1\"]]\none_way = true\n"),
        13,
        10,
        "a one-way partition cuts groups[0] off from the other groups, so it needs at least 2 groups, got 1",
    );
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"partition\"\ngroups = [[\"broker-0\"], []]\n"),
        13,
        25,
        "partition group 2 is empty",
    );
}

#[test]
fn node_in_two_groups() {
    check(
        &format!("{MIN}\n[[faults]]\nat_ms = 1\nverb = \"partition\"\ngroups = [[\"broker-0\", \"broker-1\"], [\"broker-2\", \"broker-1\"]]\n"),
        13,
        50,
        "node \"broker-1\" is in group 1 and group 2",
    );
}

// ---- the disk ---------------------------------------------------------------

/// MIN with one `[[faults]]` entry at 1 ms; `keys` start on line 12.
fn with_fault(keys: &str) -> String {
    format!("{MIN}\n[[faults]]\nat_ms = 1\n{keys}")
}

/// The one fault of `with_fault(keys)`.
fn only_fault(keys: &str) -> Fault {
    parse(&with_fault(keys)).unwrap().faults.remove(0).fault
}

#[test]
fn flush_policies() {
    let flush = |keys: &str| parse(&format!("{MIN}\n[cluster.broker]\n{keys}")).unwrap().cluster.broker.log_flush;
    assert_eq!(flush(""), FlushSpec::Never);
    assert_eq!(flush("log_flush = \"never\"\n"), FlushSpec::Never);
    assert_eq!(flush("log_flush = \"every-batch\"\n"), FlushSpec::EveryBatch);
    assert_eq!(flush("log_flush = \"interval\"\n"), FlushSpec::IntervalMs(1000));
    assert_eq!(
        flush("log_flush = \"interval\"\nlog_flush_interval_ms = 3_600_000\n"),
        FlushSpec::IntervalMs(3_600_000)
    );
    let b = parse(&format!(
        "{MIN}\n[cluster.broker]\nlog_flush_offset_checkpoint_interval_ms = 100\n\
         replica_high_watermark_checkpoint_interval_ms = 3_600_000\n"
    ))
    .unwrap()
    .cluster
    .broker;
    assert_eq!(
        (b.log_flush_offset_checkpoint_interval_ms, b.replica_high_watermark_checkpoint_interval_ms),
        (100, 3_600_000)
    );
}

#[test]
fn flush_interval_without_the_interval_policy() {
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_flush = \"never\"\nlog_flush_interval_ms = 100\n"),
        12,
        25,
        "log_flush_interval_ms applies only to log_flush = \"interval\", but log_flush is \"never\"",
    );
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_flush = \"every-batch\"\nlog_flush_interval_ms = 100\n"),
        12,
        25,
        "but log_flush is \"every-batch\"",
    );
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_flush_interval_ms = 100\n"),
        11,
        25,
        "but log_flush is left out (\"never\"); set log_flush = \"interval\"",
    );
}

#[test]
fn flush_policy_and_intervals_out_of_range() {
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_flush = \"always\"\n"),
        11,
        13,
        "unknown log_flush policy `always`; expected one of: never, every-batch, interval",
    );
    check(&format!("{MIN}\n[cluster.broker]\nlog_flush = 1\n"), 11, 13, "\"never\", \"every-batch\" or \"interval\"");
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_flush = \"interval\"\nlog_flush_interval_ms = 0\n"),
        12,
        25,
        "cluster.broker.log_flush_interval_ms must be between 1 and 3_600_000, got 0",
    );
    check(
        &format!("{MIN}\n[cluster.broker]\nlog_flush_offset_checkpoint_interval_ms = 99\n"),
        11,
        43,
        "cluster.broker.log_flush_offset_checkpoint_interval_ms must be between 100 and 3_600_000, got 99",
    );
    check(
        &format!("{MIN}\n[cluster.broker]\nreplica_high_watermark_checkpoint_interval_ms = 3_600_001\n"),
        11,
        49,
        "cluster.broker.replica_high_watermark_checkpoint_interval_ms must be between 100 and 3_600_000, got 3600001",
    );
}

#[test]
fn disk_table() {
    let disk = |keys: &str| parse(&format!("{MIN}\n[cluster.disk]\n{keys}")).unwrap().cluster.disk;
    assert_eq!(
        disk(""),
        DiskSpec { writeback_expire_ms: Some(30_000), capacity_bytes: None, latency: LatencySpec::default() }
    );
    assert_eq!(
        disk("writeback_expire_ms = 5000\ncapacity_bytes = 1_048_576\n"),
        DiskSpec { writeback_expire_ms: Some(5000), capacity_bytes: Some(1 << 20), latency: LatencySpec::default() }
    );
    // 0 is Linux's "never": only fsync makes data durable.
    assert_eq!(
        disk("writeback_expire_ms = 0\ncapacity_bytes = 4_294_967_296\n"),
        DiskSpec { writeback_expire_ms: None, capacity_bytes: Some(4 << 30), latency: LatencySpec::default() }
    );
}

#[test]
fn disk_table_out_of_range() {
    check(
        &format!("{MIN}\n[cluster.disk]\nwriteback_expire_ms = -1\n"),
        11,
        23,
        "cluster.disk.writeback_expire_ms must be between 0 and 3_600_000, got -1",
    );
    check(
        &format!("{MIN}\n[cluster.disk]\ncapacity_bytes = 1000\n"),
        11,
        18,
        "cluster.disk.capacity_bytes must be between 1_048_576 and 4_294_967_296, got 1000",
    );
    check(&format!("{MIN}\n[cluster.disk]\ncapacity_bytes = 4_294_967_297\n"), 11, 18, "got 4294967297");
    check(&format!("{MIN}\n[cluster.disk]\nfsync = true\n"), 11, 1, "unknown key `fsync`");
    check(
        &format!("{MIN}\n[cluster.disk]\nfsync_latency_us = [2000, 100]\n"),
        11,
        20,
        "cluster.disk.fsync_latency_us has its p99 100 below its median 2000; write [median, p99]",
    );
    check(
        &format!("{MIN}\n[cluster.disk]\nread_latency_us = [5]\n"),
        11,
        19,
        "cluster.disk.read_latency_us must be [median, p99] in microseconds, got 1 values",
    );
    check(
        &format!("{MIN}\n[cluster.disk]\nwrite_latency_us = [1, 10_000_001]\n"),
        11,
        24,
        "cluster.disk.write_latency_us must be between 0 and 10_000_000, got 10000001",
    );
    check(
        &format!("{MIN}\n[cluster.disk]\nbandwidth_mb_per_s = 0\n"),
        11,
        22,
        "cluster.disk.bandwidth_mb_per_s must be between 1 and 100_000, got 0",
    );
}

#[test]
fn power_loss() {
    assert_eq!(
        only_fault("verb = \"power-loss\"\nnode = \"broker-1\"\n"),
        Fault::PowerLoss { nodes: strings(&["broker-1"]), torn: false }
    );
    let correlated =
        only_fault("verb = \"power-loss\"\nnodes = [\"broker-0\", \"broker-2\", \"controller\"]\ntorn = true\n");
    assert_eq!(correlated, Fault::PowerLoss { nodes: strings(&["broker-0", "broker-2", "controller"]), torn: true });
    assert_eq!(correlated.verb(), "power-loss");
    assert_eq!(correlated.to_string(), "power-loss broker-0 broker-2 controller (torn)");
    let controller = only_fault("verb = \"power-loss\"\nnode = \"controller\"\ntorn = false\n");
    assert_eq!(controller.to_string(), "power-loss controller");
}

#[test]
fn power_loss_names_its_nodes_once() {
    check(
        &with_fault("verb = \"power-loss\"\nnode = \"broker-0\"\nnodes = [\"broker-1\"]\n"),
        14,
        9,
        "power-loss takes `node` or `nodes`, not both",
    );
    check(
        &with_fault("verb = \"power-loss\"\ntorn = true\n"),
        12,
        8,
        "verb \"power-loss\" needs `node` or `nodes`; power-loss takes `node` or `nodes`, optionally `torn`",
    );
    check(
        &with_fault("verb = \"power-loss\"\nnodes = []\n"),
        13,
        9,
        "nodes is empty; power-loss names at least one broker or the controller",
    );
    check(
        &with_fault("verb = \"power-loss\"\nnodes = [\"broker-0\", \"controller\", \"broker-0\"]\n"),
        13,
        36,
        "nodes lists \"broker-0\" twice",
    );
    check(
        &with_fault("verb = \"power-loss\"\nnodes = [\"broker-0\", \"broker-3\"]\n"),
        13,
        22,
        "fault names node \"broker-3\", but the cluster has brokers broker-0..broker-2",
    );
    check(
        &with_fault("verb = \"power-loss\"\nnode = \"broker-0\"\ntorn = \"yes\"\n"),
        14,
        8,
        "invalid type: string \"yes\", expected a boolean",
    );
    check(
        &with_fault("verb = \"crash\"\nnode = \"broker-0\"\ntorn = true\n"),
        14,
        8,
        "`torn` does not apply to verb \"crash\"; crash takes `node`",
    );
}

#[test]
fn disk_verbs_on_a_client() {
    check(
        &format!(
            "{MIN}\n[[workload.consumers]]\ntopics = [\"orders\"]\n\n\
             [[faults]]\nat_ms = 1\nverb = \"power-loss\"\nnodes = [\"broker-0\", \"consumer-0\"]\n"
        ),
        16,
        22,
        "power-loss applies to brokers and the controller only, but \"consumer-0\" is a consumer, which has no disk",
    );
    for verb in ["power-loss", "disk-full", "disk-heal"] {
        check(
            &with_fault(&format!("verb = \"{verb}\"\nnode = \"producer-0\"\n")),
            13,
            8,
            &format!("{verb} applies to brokers and the controller only, but \"producer-0\" is a producer, which has no disk"),
        );
    }
    check(
        &with_fault("verb = \"disk-fault\"\nnode = \"consumer-0\"\nlost_write = 0.5\n"),
        13,
        8,
        "\"consumer-0\" is a consumer, which has no disk",
    );
    check(&with_fault("verb = \"disk-full\"\nnode = \"broker-9\"\n"), 13, 8, "fault names node \"broker-9\"");
    check(&with_fault("verb = \"disk-heal\"\nnode = \"disk-0\"\n"), 13, 8, "unknown node \"disk-0\"");
}

#[test]
fn disk_fault_full_and_heal() {
    let fault = only_fault("verb = \"disk-fault\"\nnode = \"controller\"\nlost_write = 0.25\n");
    let faults = DiskFaultSpec { lost_write: 0.25, ..DiskFaultSpec::default() };
    assert_eq!(fault, Fault::DiskFault { node: "controller".into(), faults });
    assert_eq!((fault.verb(), fault.to_string().as_str()), ("disk-fault", "disk-fault controller lost_write=0.25"));
    let every = only_fault(
        "verb = \"disk-fault\"\nnode = \"broker-0\"\nbit_flip_read = 1\nbit_flip_write = 0\n\
         lost_write = 0.5\nmisdirected_write = 0.001\n",
    );
    let faults = DiskFaultSpec { bit_flip_read: 1.0, bit_flip_write: 0.0, lost_write: 0.5, misdirected_write: 0.001 };
    assert_eq!(every, Fault::DiskFault { node: "broker-0".into(), faults });
    let full = only_fault("verb = \"disk-full\"\nnode = \"broker-2\"\n");
    assert_eq!((full.verb(), full.to_string().as_str()), ("disk-full", "disk-full broker-2"));
    assert_eq!(full, Fault::DiskFull { node: "broker-2".into() });
    let heal = only_fault("verb = \"disk-heal\"\nnode = \"controller\"\n");
    assert_eq!((heal.verb(), heal.to_string().as_str()), ("disk-heal", "disk-heal controller"));
    assert_eq!(heal, Fault::DiskHeal { node: "controller".into() });
}

#[test]
fn disk_fault_probabilities() {
    check(
        &with_fault("verb = \"disk-fault\"\nnode = \"broker-0\"\nbit_flip_read = 1.5\n"),
        14,
        17,
        "bit_flip_read must be between 0.0 and 1.0, got 1.5",
    );
    check(
        &with_fault("verb = \"disk-fault\"\nnode = \"broker-0\"\nmisdirected_write = -0.1\n"),
        14,
        21,
        "misdirected_write must be between 0.0 and 1.0, got -0.1",
    );
    check(&with_fault("verb = \"disk-fault\"\nnode = \"broker-0\"\nbit_flip_write = nan\n"), 14, 18, "got NaN");
    check(
        &with_fault("verb = \"disk-fault\"\nnode = \"broker-0\"\nlost_write = \"often\"\n"),
        14,
        14,
        "expected a number",
    );
    // All 0 (or none given) would change nothing: blame the first one written, else the verb.
    check(
        &with_fault("verb = \"disk-fault\"\nnode = \"broker-0\"\nlost_write = 0.0\nbit_flip_write = 0\n"),
        14,
        14,
        "disk-fault needs at least one of `bit_flip_read`, `bit_flip_write`, `lost_write`, `misdirected_write` above 0",
    );
    check(&with_fault("verb = \"disk-fault\"\nnode = \"broker-0\"\n"), 12, 8, "disk-fault needs at least one of");
}

#[test]
fn disk_verbs_and_their_keys() {
    check(&with_fault("verb = \"disk-fault\"\nlost_write = 0.5\n"), 12, 8, "verb \"disk-fault\" needs `node`");
    check(&with_fault("verb = \"disk-heal\"\n"), 12, 8, "verb \"disk-heal\" needs `node`; disk-heal takes `node`");
    check(
        &with_fault("verb = \"disk-full\"\nnode = \"broker-0\"\nlost_write = 0.5\n"),
        14,
        14,
        "`lost_write` does not apply to verb \"disk-full\"; disk-full takes `node`",
    );
    check(
        &with_fault("verb = \"disk-fault\"\nnodes = [\"broker-0\"]\nlost_write = 0.5\n"),
        13,
        9,
        "`nodes` does not apply to verb \"disk-fault\"; disk-fault takes `node`, optionally `bit_flip_read`",
    );
    check(
        &with_fault("verb = \"heal\"\nbit_flip_read = 0.5\n"),
        13,
        17,
        "`bit_flip_read` does not apply to verb \"heal\"",
    );
    check(
        &with_fault("verb = \"power-outage\"\n"),
        12,
        8,
        "unknown fault verb `power-outage`; expected one of: crash, stop, restart, pause, resume, isolate, partition, \
         heal, latency, loss, skew, power-loss, disk-fault, disk-full, disk-heal",
    );
}

#[test]
fn nemesis_power_loss_and_disk_faults() {
    let n = parse(&format!("{MIN}\n[nemesis]\npower_loss = 0.1\ndisk_fault = 1\ndisk_fault_rate = 0\n"))
        .unwrap()
        .nemesis
        .unwrap();
    assert_eq!((n.power_loss, n.disk_fault, n.disk_fault_rate), (0.1, 1.0, 0.0));
    assert_eq!((n.crash, n.skew, n.loss_rate), (0.0, 0.0, 0.1));
    check(
        &format!("{MIN}\n[nemesis]\npower_loss = 1.5\n"),
        11,
        14,
        "nemesis.power_loss must be between 0.0 and 1.0, got 1.5",
    );
    check(
        &format!("{MIN}\n[nemesis]\ndisk_fault = -1\n"),
        11,
        14,
        "nemesis.disk_fault must be between 0.0 and 1.0, got -1.0",
    );
    check(
        &format!("{MIN}\n[nemesis]\ndisk_fault_rate = 2\n"),
        11,
        19,
        "nemesis.disk_fault_rate must be between 0.0 and 1.0, got 2.0",
    );
}

// ---- consumer groups ------------------------------------------------------------

/// MIN with one `[[workload.consumers]]` entry reading "orders"; `keys` start on line 12.
fn with_consumer(keys: &str) -> String {
    format!("{MIN}\n[[workload.consumers]]\ntopics = [\"orders\"]\n{keys}")
}

/// The group of the one consumer entry of `with_consumer(keys)`.
fn only_group(keys: &str) -> Option<GroupSpec> {
    parse(&with_consumer(keys)).unwrap().workload.consumers.remove(0).group
}

/// A consumer entry with every key left out (and no topics).
fn default_consumer() -> ConsumerSpec {
    ConsumerSpec {
        count: 1,
        topics: vec![],
        assignment: AssignmentSpec::All,
        auto_offset_reset: ResetSpec::Earliest,
        poll_timeout_ms: 100,
        max_poll_records: 500,
        fetch_max_wait_ms: 500,
        fetch_min_bytes: 1,
        fetch_max_bytes: 52_428_800,
        max_partition_fetch_bytes: 1_048_576,
        request_timeout_ms: 30_000,
        isolation: IsolationSpec::ReadUncommitted,
        group: None,
        pipeline: None,
    }
}

/// `group = id` and nothing else: Kafka's consumer defaults.
fn default_group(id: &str) -> GroupSpec {
    GroupSpec {
        id: id.into(),
        assignors: vec![AssignorKind::Range, AssignorKind::CooperativeSticky],
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 3000,
        max_poll_interval_ms: 300_000,
        commit: CommitMode::Auto,
        auto_commit_interval_ms: 5000,
        processing_ms: 0,
        static_membership: false,
    }
}

#[test]
fn group_member_reads_every_group_key() {
    let group = only_group(
        "group = \"billing-v2\"\nassignor = [\"roundrobin\", \"cooperative-sticky\"]\nsession_timeout_ms = 6_000\n\
         heartbeat_interval_ms = 5_999\nmax_poll_interval_ms = 1\ncommit = \"process-then-commit\"\n\
         processing_ms = 600_000\nstatic_membership = true\n",
    );
    let expected = GroupSpec {
        id: "billing-v2".into(),
        assignors: vec![AssignorKind::RoundRobin, AssignorKind::CooperativeSticky],
        session_timeout_ms: 6000,
        heartbeat_interval_ms: 5999,
        max_poll_interval_ms: 1,
        commit: CommitMode::ProcessThenCommit,
        auto_commit_interval_ms: 5000,
        processing_ms: 600_000,
        static_membership: true,
    };
    assert_eq!(group, Some(expected));
    let auto = only_group("group = \"g\"\ncommit = \"auto\"\nauto_commit_interval_ms = 3_600_000\n").unwrap();
    assert_eq!((auto.commit, auto.auto_commit_interval_ms), (CommitMode::Auto, 3_600_000));
    let s = parse("duration_ms = 1\n[cluster]\nbrokers = 1\noffsets_topic_partitions = 64\n").unwrap();
    assert_eq!(s.cluster.offsets_topic_partitions, 64);
}

#[test]
fn group_defaults() {
    assert_eq!(only_group(""), None);
    assert_eq!(only_group("group = \"g\"\n"), Some(default_group("g")));
    let consumer = parse(&with_consumer("group = \"g\"\n")).unwrap().workload.consumers.remove(0);
    assert_eq!(
        consumer,
        ConsumerSpec { topics: strings(&["orders"]), group: Some(default_group("g")), ..default_consumer() }
    );
    // One name is a list of one.
    assert_eq!(only_group("group = \"g\"\nassignor = \"sticky\"\n").unwrap().assignors, vec![AssignorKind::Sticky]);
    for mode in CommitMode::ALL {
        let group = only_group(&format!("group = \"g\"\ncommit = \"{}\"\n", mode.name())).unwrap();
        assert_eq!(group.commit, *mode);
    }
    for kind in AssignorKind::ALL {
        let group = only_group(&format!("group = \"g\"\nassignor = [\"{}\"]\n", kind.name())).unwrap();
        assert_eq!(group.assignors, vec![*kind]);
    }
    // Kafka's offsets.topic.num.partitions is 50; ksim's default is 3.
    assert_eq!(parse(MIN).unwrap().cluster.offsets_topic_partitions, 3);
}

#[test]
fn entries_may_share_a_group_with_different_topics() {
    let text = format!(
        "{MIN}\n[[topics]]\nname = \"audit\"\npartitions = 1\n\n\
         [[workload.consumers]]\ntopics = [\"orders\"]\ngroup = \"g\"\nassignor = [\"range\", \"sticky\"]\n\n\
         [[workload.consumers]]\ncount = 2\ntopics = [\"audit\", \"orders\"]\ngroup = \"g\"\nassignor = \"sticky\"\n\n\
         [[workload.consumers]]\ntopics = [\"orders\"]\ngroup = \"other\"\nassignor = \"roundrobin\"\n"
    );
    let s = parse(&text).unwrap();
    let ids: Vec<&str> = s.workload.consumers.iter().map(|c| c.group.as_ref().unwrap().id.as_str()).collect();
    assert_eq!(ids, ["g", "g", "other"]);
    assert_eq!(s.consumer_count(), 4);
}

#[test]
fn entries_of_one_group_share_an_assignor() {
    let text = |second: &str| {
        format!(
            "{MIN}\n[[workload.consumers]]\ntopics = [\"orders\"]\ngroup = \"g\"\nassignor = [\"range\", \"sticky\"]\n\n\
             [[workload.consumers]]\ntopics = [\"orders\"]\ngroup = \"g\"\n{second}"
        )
    };
    check(
        &text("assignor = \"roundrobin\"\n"),
        18,
        12,
        "group \"g\" (also named at line 12) would have no assignor every member supports: this entry offers \
         roundrobin, the earlier entries share range, sticky; the coordinator would refuse its members \
         (INCONSISTENT_GROUP_PROTOCOL)",
    );
    // Left out, the default (range, cooperative-sticky) shares range; a third
    // entry must share what all the earlier ones have in common.
    let third = "\n[[workload.consumers]]\ntopics = [\"orders\"]\ngroup = \"g\"\nassignor = \"sticky\"\n";
    assert!(parse(&text("")).is_ok());
    check(&text(third), 22, 12, "this entry offers sticky, the earlier entries share range;");
    // No `assignor` on the entry to blame: its `group`.
    let first_sticky = text("").replace("[\"range\", \"sticky\"]", "\"sticky\"");
    check(&first_sticky, 17, 9, "this entry offers range, cooperative-sticky");
}

#[test]
fn assignment_with_group() {
    check(
        &with_consumer("group = \"g\"\nassignment = \"split\"\n"),
        13,
        14,
        "`assignment` does not apply with `group`: the group's assignor divides the partitions among its members",
    );
    check(&with_consumer("assignment = \"all\"\ngroup = \"g\"\n"), 12, 14, "`assignment` does not apply with `group`");
}

#[test]
fn group_keys_without_group() {
    for (key, value) in [
        ("assignor", "\"range\""),
        ("session_timeout_ms", "10_000"),
        ("heartbeat_interval_ms", "100"),
        ("max_poll_interval_ms", "1000"),
        ("commit", "\"auto\""),
        ("auto_commit_interval_ms", "100"),
        ("processing_ms", "0"),
    ] {
        check(
            &with_consumer(&format!("{key} = {value}\n")),
            12,
            key.len() + 4,
            &format!(
                "`{key}` needs `group`: it configures a consumer group's members, and without `group` a consumer \
                 reads fixed partitions (`assignment`)"
            ),
        );
    }
    // The first one written is to blame.
    check(&with_consumer("processing_ms = 5\ncommit = \"auto\"\n"), 12, 17, "`processing_ms` needs `group`");
}

#[test]
fn heartbeat_not_below_the_group_session_timeout() {
    check(
        &with_consumer("group = \"g\"\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 6000\n"),
        14,
        25,
        "heartbeat_interval_ms (6000) must be below session_timeout_ms (6000), or the coordinator expires members \
         between two heartbeats",
    );
    // Against the default session timeout, and the session timeout blamed when it is all there is to blame.
    check(
        &with_consumer("group = \"g\"\nheartbeat_interval_ms = 45_000\n"),
        13,
        25,
        "heartbeat_interval_ms (45000) must be below session_timeout_ms (45000)",
    );
    check(
        &with_consumer("session_timeout_ms = 7000\nheartbeat_interval_ms = 7001\ngroup = \"g\"\n"),
        13,
        25,
        "heartbeat_interval_ms (7001) must be below session_timeout_ms (7000)",
    );
}

#[test]
fn unknown_and_duplicate_assignors() {
    let group = |keys: &str| with_consumer(&format!("group = \"g\"\n{keys}"));
    check(
        &group("assignor = \"fair\"\n"),
        13,
        12,
        "unknown assignor `fair`; expected one of: range, roundrobin, sticky, cooperative-sticky",
    );
    check(&group("assignor = [\"range\", \"round-robin\"]\n"), 13, 22, "unknown assignor `round-robin`");
    check(&group("assignor = [\"range\", \"sticky\", \"range\"]\n"), 13, 32, "assignor lists \"range\" twice");
    check(
        &group("assignor = []\n"),
        13,
        12,
        "assignor is empty; name at least one of: range, roundrobin, sticky, cooperative-sticky",
    );
    check(&group("assignor = 1\n"), 13, 12, "expected an assignor name (a string) or an array of them");
    check(
        &group("assignor = [\"range\", 2]\n"),
        13,
        22,
        "\"range\", \"roundrobin\", \"sticky\" or \"cooperative-sticky\"",
    );
}

#[test]
fn bad_group_names() {
    check(&with_consumer("group = \"\"\n"), 12, 9, "group is empty; a group id (Kafka's group.id) is 1 to 255 bytes");
    let longest = "g".repeat(255);
    assert_eq!(only_group(&format!("group = \"{longest}\"\n")).unwrap().id, longest);
    check(
        &with_consumer(&format!("group = \"{}\"\n", "g".repeat(256))),
        12,
        9,
        "group is 256 bytes long; the limit is 255",
    );
    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    check(&with_consumer(&format!("group = \"{}\"\n", "ü".repeat(128))), 12, 9, "group is 256 bytes long");
    check(&with_consumer("group = \"a\\tb\"\n"), 12, 9, "group \"a\\tb\" contains the control character '\\t'");
    check(&with_consumer("group = 7\n"), 12, 9, "expected a string");
    // Anything else goes, as in Kafka.
    assert_eq!(only_group("group = \"billing team/ü 1\"\n").unwrap().id, "billing team/ü 1");
}

#[test]
fn commit_modes() {
    check(
        &with_consumer("group = \"g\"\ncommit = \"sometimes\"\n"),
        13,
        10,
        "unknown commit mode `sometimes`; expected one of: auto, process-then-commit, commit-then-process",
    );
    check(
        &with_consumer("group = \"g\"\ncommit = true\n"),
        13,
        10,
        "\"auto\", \"process-then-commit\" or \"commit-then-process\"",
    );
    check(
        &with_consumer("group = \"g\"\ncommit = \"commit-then-process\"\nauto_commit_interval_ms = 100\n"),
        14,
        27,
        "auto_commit_interval_ms applies only to commit = \"auto\", but commit is \"commit-then-process\"",
    );
}

#[test]
fn group_values_out_of_range() {
    let group = |keys: &str| with_consumer(&format!("group = \"g\"\n{keys}"));
    for (keys, column, phrase) in [
        (
            "session_timeout_ms = 5999\n",
            22,
            "workload.consumers.session_timeout_ms must be between 6000 and 1_800_000, got 5999",
        ),
        ("session_timeout_ms = 1_800_001\n", 22, "got 1800001"),
        (
            "heartbeat_interval_ms = 0\n",
            25,
            "workload.consumers.heartbeat_interval_ms must be between 1 and 1_800_000, got 0",
        ),
        (
            "max_poll_interval_ms = 0\n",
            24,
            "workload.consumers.max_poll_interval_ms must be between 1 and 3_600_000, got 0",
        ),
        ("max_poll_interval_ms = 3_600_001\n", 24, "got 3600001"),
        (
            "auto_commit_interval_ms = 0\n",
            27,
            "workload.consumers.auto_commit_interval_ms must be between 1 and 3_600_000, got 0",
        ),
        ("processing_ms = -1\n", 17, "workload.consumers.processing_ms must be between 0 and 600_000, got -1"),
        ("processing_ms = 600_001\n", 17, "got 600001"),
    ] {
        check(&group(keys), 13, column, phrase);
    }
    check(
        "duration_ms = 1\n[cluster]\nbrokers = 1\noffsets_topic_partitions = 0\n",
        4,
        28,
        "cluster.offsets_topic_partitions must be between 1 and 64, got 0",
    );
    check("duration_ms = 1\n[cluster]\nbrokers = 1\noffsets_topic_partitions = 65\n", 4, 28, "got 65");
    check(&with_consumer("group = \"g\"\ngroup_id = \"g\"\n"), 13, 1, "unknown key `group_id`");
}

// ---- files ------------------------------------------------------------------

#[test]
fn columns_count_characters_not_bytes() {
    check("description = \"ümlaut\" ; x\n", 1, 24, "expected newline");
}

#[test]
fn load_names_the_file() {
    let missing = std::path::Path::new("scenarios/no-such-file.toml");
    let e = Scenario::load(missing).unwrap_err();
    assert!(e.to_string().starts_with("scenarios/no-such-file.toml: cannot read scenario file: "), "{e}");

    let dir = std::env::temp_dir().join(format!("ksim-scenario-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, MIN).unwrap();
    let s = Scenario::load(&good).unwrap();
    assert_eq!((s.name.as_str(), s.file.clone()), ("good", good.display().to_string()));

    let binary = dir.join("binary.toml");
    std::fs::write(&binary, b"duration_ms = 1\nname = \"\xff\"\n").unwrap();
    let e = Scenario::load(&binary).unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e}");
    assert!(e.message.contains("not UTF-8"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_text_is_refused_before_parsing() {
    let text = format!("{MIN}#{}\n", "x".repeat(MAX_FILE_BYTES));
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("the limit is 1048576"), "{e}");
}

// ---- the docs -------------------------------------------------------------------

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCENARIOS.md");

fn docs() -> String {
    std::fs::read_to_string(DOCS).expect("docs/SCENARIOS.md")
}

/// `docs` with the text between `<!-- {marker}:begin -->` and `<!-- {marker}:end -->` replaced.
fn splice(docs: &str, marker: &str, content: &str) -> String {
    let (begin, end) = (format!("<!-- {marker}:begin -->\n"), format!("<!-- {marker}:end -->"));
    let start = docs.find(&begin).expect("begin marker") + begin.len();
    let stop = docs.find(&end).expect("end marker");
    format!("{}{content}{}", &docs[..start], &docs[stop..])
}

/// The limits table and rules list in docs/SCENARIOS.md are generated from
/// `limits`; `KSIM_BLESS_DOCS=1 cargo test -p sim --lib scenario` rewrites them.
#[test]
fn docs_list_the_current_limits_and_rules() {
    let docs = docs();
    let current = splice(&docs, "limits", &limits::limits_markdown());
    let current = splice(&current, "rules", &limits::rules_markdown());
    if std::env::var_os("KSIM_BLESS_DOCS").is_some() {
        std::fs::write(DOCS, &current).unwrap();
    } else {
        assert!(docs == current, "docs/SCENARIOS.md is stale: run KSIM_BLESS_DOCS=1 cargo test -p sim --lib scenario");
    }
}

#[test]
fn docs_examples_parse() {
    let docs = docs();
    let blocks: Vec<&str> = docs.split("```toml\n").skip(1).filter_map(|b| b.split("```").next()).collect();
    assert!(!blocks.is_empty());
    for block in blocks {
        if let Err(e) = parse(block) {
            panic!("docs example does not parse: {e}\n{block}");
        }
    }
}

// ---- never panic --------------------------------------------------------------

/// Pieces that stress the parser and the validator when spliced into a file.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    ",",
    ".",
    "\n",
    "#",
    "-1",
    "0",
    "nan",
    "inf",
    "1e400",
    "99999999999999999999",
    "-9223372036854775808",
    "\"broker-99\"",
    "\"producer-0\"",
    "[[faults]]\nat_ms = 1\nverb = \"heal\"\n",
    "verb = \"partition\"",
    "groups = [[]]",
    "keys = { partition = 9 }",
    "ü",
    "\u{0}",
    "\r",
    "true",
    "[nemesis]\n",
    "[expect]\n",
    "[cluster.disk]\n",
    "verb = \"power-loss\"",
    "verb = \"disk-fault\"",
    "nodes = []",
    "\"controller\"",
    "1.5",
    "group = \"g\"\n",
    "assignor = []",
    "\"cooperative-sticky\"",
    "commit = \"commit-then-process\"\n",
    "[[workload.consumers]]\ntopics = [\"orders\"]\ngroup = \"billing\"\nassignor = \"roundrobin\"\n",
];

fn mutate(base: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut text = base.to_string();
    for &(at, delete, token) in edits {
        let mut start = at % (text.len() + 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + delete % 8).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        text.replace_range(start..end, TOKENS[token % TOKENS.len()]);
    }
    text
}

/// Whatever parses is well-formed: what validation promises, the runner may rely on.
fn assert_well_formed(s: &Scenario) {
    let nodes = s.node_names();
    for f in &s.faults {
        assert!(f.at_ms <= s.duration_ms);
        match &f.fault {
            Fault::Crash { node } | Fault::Stop { node } | Fault::Restart { node } => assert!(has_disk(s, node)),
            Fault::Pause { node } | Fault::Resume { node } | Fault::Isolate { node } | Fault::Skew { node, .. } => {
                assert!(nodes.contains(node))
            }
            Fault::Partition { groups, .. } => {
                assert!(groups.len() >= 2 && groups.iter().all(|g| !g.is_empty()))
            }
            Fault::Latency { min_ms, max_ms } => assert!(min_ms <= max_ms),
            Fault::Loss { rate } => assert!((0.0..=0.9).contains(rate)),
            Fault::Heal => {}
            Fault::PowerLoss { nodes, .. } => {
                assert!(!nodes.is_empty() && nodes.iter().all(|n| has_disk(s, n)));
                assert!(nodes.iter().enumerate().all(|(i, n)| !nodes[..i].contains(n)));
            }
            Fault::DiskFault { node, faults } => {
                assert!(has_disk(s, node) && faults.any());
                assert!(faults.named().iter().all(|(_, p)| (0.0..=1.0).contains(p)));
            }
            Fault::DiskFull { node } | Fault::DiskHeal { node } => assert!(has_disk(s, node)),
        }
    }
    for p in &s.workload.producers {
        assert!(s.topic(&p.topic).is_some());
    }
    for c in &s.workload.consumers {
        let Some(g) = &c.group else { continue };
        assert_eq!(c.assignment, AssignmentSpec::All);
        assert!(!g.id.is_empty() && g.id.len() <= 255 && !g.id.contains(char::is_control));
        assert!(0 < g.heartbeat_interval_ms && g.heartbeat_interval_ms < g.session_timeout_ms);
        assert!(!g.assignors.is_empty() && g.assignors.iter().enumerate().all(|(i, a)| !g.assignors[..i].contains(a)));
    }
    assert!((1..=64).contains(&s.cluster.offsets_topic_partitions));
    assert!(s.expect.must_hold.iter().all(|i| !s.expect.expected.contains(i)));
}

fn has_disk(s: &Scenario, node: &str) -> bool {
    node == CONTROLLER_NODE || s.broker_names().iter().any(|b| b == node)
}

fn check_no_panic(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(s) => assert_well_formed(&s),
        Err(e) => {
            let lines = text.split('\n').count();
            prop_assert!(e.line.is_none_or(|l| l >= 1 && l <= lines), "{e}");
            prop_assert!(!e.message.contains('\n'), "{e}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_mutated_scenarios(
        edits in prop::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..6)
    ) {
        check_no_panic(&mutate(FULL, &edits))?;
    }

    #[test]
    fn parse_never_panics_on_random_text(text in "(\\PC|\n){0,300}") {
        check_no_panic(&text)?;
    }
}

#[test]
fn stop_is_a_controlled_shutdown_of_a_broker_or_the_controller() {
    assert_eq!(only_fault("verb = \"stop\"\nnode = \"broker-0\"\n"), Fault::Stop { node: "broker-0".into() });
    assert_eq!(only_fault("verb = \"stop\"\nnode = \"controller\"\n"), Fault::Stop { node: "controller".into() });
    assert_eq!(Fault::Stop { node: "broker-1".into() }.to_string(), "stop broker-1");
    check(
        &with_fault("verb = \"stop\"\nnode = \"producer-0\"\n"),
        13,
        8,
        "stop applies to brokers and the controller only, but \"producer-0\" is a producer",
    );
    check(&with_fault("verb = \"stop\"\n"), 12, 8, "verb \"stop\" needs `node`");
}

// ---- pipelines (transform_to) ----------------------------------------------------

/// MIN plus a `results` topic and one consumer entry reading "orders"; `keys` start on line 16.
fn with_pipeline(keys: &str) -> String {
    format!("{MIN}\n[[topics]]\nname = \"results\"\npartitions = 2\n\n[[workload.consumers]]\ntopics = [\"orders\"]\n{keys}")
}

#[test]
fn a_pipeline_reads_committed_and_takes_its_transaction_settings() {
    let consumer = parse(&with_pipeline(
        "group = \"p\"\ntransform_to = \"results\"\nabort_rate = 0.25\ntransaction_timeout_ms = 5000\n",
    ))
    .unwrap()
    .workload
    .consumers
    .remove(0);
    assert_eq!(consumer.isolation, IsolationSpec::ReadCommitted, "read_committed is a pipeline's default");
    assert_eq!(
        consumer.pipeline,
        Some(PipelineSpec { output: "results".into(), abort_ppm: 250_000, transaction_timeout_ms: 5000 })
    );
    let plain = parse(&with_pipeline("group = \"p\"\n")).unwrap().workload.consumers.remove(0);
    assert_eq!((plain.pipeline, plain.isolation), (None, IsolationSpec::ReadUncommitted));
}

#[test]
fn pipeline_keys_are_checked() {
    check(&with_pipeline("transform_to = \"results\"\n"), 16, 16, "transform_to needs `group`");
    check(&with_pipeline("group = \"p\"\ntransform_to = \"orders\"\n"), 17, 16, "which this entry also reads");
    check(&with_pipeline("group = \"p\"\ntransform_to = \"nope\"\n"), 17, 16, "nope");
    check(
        &with_pipeline("group = \"p\"\ntransform_to = \"results\"\ncommit = \"auto\"\n"),
        18,
        10,
        "`commit` does not apply to a pipeline",
    );
    check(
        &with_pipeline("group = \"p\"\ntransform_to = \"results\"\nisolation = \"read_uncommitted\"\n"),
        18,
        13,
        "a pipeline (transform_to) reads with isolation = \"read_committed\"",
    );
    check(&with_pipeline("group = \"p\"\nabort_rate = 0.5\n"), 17, 14, "abort_rate only applies to a pipeline");
    check(
        &with_pipeline("group = \"p\"\ntransform_to = \"results\"\nabort_rate = 1.5\n"),
        18,
        14,
        "abort_rate must be between 0.0 and 1.0",
    );
}

#[test]
fn a_shared_transactional_id_and_a_standby_start() {
    let producer =
        |extra: &str| format!("{MIN}\n[[workload.producers]]\ntopic = \"orders\"\nrate_per_s = 1\n{extra}\n");
    let ok = parse(&producer("transactional = true\ntransactional_id = \"orders-app\"\nstart_ms = 500"))
        .expect("a standby sharing a transactional id");
    let spec = &ok.workload.producers[0];
    assert_eq!(spec.transactions.as_ref().and_then(|t| t.transactional_id.as_deref()), Some("orders-app"));
    assert_eq!(spec.start_ms, 500);
    check(&producer("transactional_id = \"x\""), 13, 20, "transactional_id only applies with transactional = true");
    check(&producer("transactional = true\ntransactional_id = \"producer-3\""), 14, 20, "is a producer's node name");
    check(&producer("transactional = true\ntransactional_id = \"\""), 14, 20, "1 to 255 bytes");
    check(&producer("transactional = true\ntransactional_id = \"a\\u0007\""), 14, 20, "control character");
    check(&producer("start_ms = 60000"), 13, 12, "start_ms 60000 is not before duration_ms");
}
