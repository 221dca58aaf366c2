//! From the raw TOML shape to a `Scenario`: range checks against `limits`,
//! names resolved (topics, nodes, invariants), defaults filled in. The first
//! problem found is returned, pointing at the value to blame.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;
use std::path::Path;

use broker_core::group::AssignorKind;
use broker_core::protocol::Acks;

use super::error::{line_column, ScenarioError};
use super::limits::{self, format_int, FloatLimit, IntLimit, PairLimit};
use super::raw::{
    FlushPolicy, Int, Num, Pick, RawAssignors, RawBroker, RawCluster, RawConsumer, RawController, RawDisk, RawExpect,
    RawFault, RawGroups, RawKeys, RawNemesis, RawNetwork, RawProducer, RawScenario, RawTopic, RawWorkload, Verb,
    DISK_FAULT_KEYS, S,
};
use super::schema::PipelineSpec;
use super::schema::CONTROLLER_NODE;
use super::schema::{
    AssignmentSpec, BrokerSpec, ClusterSpec, CommitMode, ConsumerSpec, ControllerSpec, DiskFaultSpec, DiskSpec,
    ExpectSpec, Fault, FlushSpec, GroupSpec, IsolationSpec, KeyMode, NemesisSpec, NetworkSpec, PartitionerSpec,
    ProducerSpec, ResetSpec, Scenario, TimedFault, TopicSpec, TransactionSpec, WorkloadSpec,
};
use crate::checker::Invariant;

type R<T> = Result<T, ScenarioError>;

/// Kafka's default `partition.assignment.strategy`.
const DEFAULT_ASSIGNORS: &[AssignorKind] = &[AssignorKind::Range, AssignorKind::CooperativeSticky];

pub(super) fn build(raw: RawScenario, text: &str, file: &str) -> R<Scenario> {
    Cx { text, file }.scenario(raw)
}

/// The file being validated, to turn spans into positions.
struct Cx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Cx<'_> {
    fn scenario(&self, raw: RawScenario) -> R<Scenario> {
        let name = match &raw.name {
            Some(name) => self.identifier(name, "name", limits::NAME_CHARS)?,
            None => default_name(self.file),
        };
        let description = match &raw.description {
            Some(d) => self.description(d)?,
            None => String::new(),
        };
        let duration_ms = self.int(&raw.duration_ms, limits::DURATION_MS)? as u64;
        let drain_timeout_ms = self.int_or(&raw.drain_timeout_ms, limits::DRAIN_TIMEOUT_MS)? as u64;
        let recovery_bound_ms = self.int_or(&raw.recovery_bound_ms, limits::RECOVERY_BOUND_MS)? as u64;
        let seeds = self.int_or(&raw.seeds, limits::SEEDS)? as u64;
        let plant = self.unique(raw.plant.as_deref().unwrap_or_default(), "plant")?;
        let cluster = self.cluster(&raw.cluster)?;
        let network = match &raw.network {
            Some(n) => self.network(n)?,
            None => NetworkSpec::default(),
        };
        let topics = self.topics(&raw.topics, cluster.brokers)?;
        let workload = match &raw.workload {
            Some(w) => self.workload(w, &topics, duration_ms)?,
            None => WorkloadSpec::default(),
        };
        let nodes = Nodes {
            brokers: cluster.brokers,
            producers: workload.producers.iter().map(|p| p.count).sum(),
            consumers: workload.consumers.iter().map(|c| c.count).sum(),
        };
        let faults = self.faults(&raw.faults, duration_ms, &nodes)?;
        let nemesis = raw.nemesis.as_ref().map(|n| self.nemesis(n)).transpose()?;
        let expect = self.expect(raw.expect.as_ref())?;
        Ok(Scenario {
            name,
            description,
            file: self.file.to_string(),
            duration_ms,
            drain_timeout_ms,
            recovery_bound_ms,
            seeds,
            plant,
            cluster,
            network,
            topics,
            workload,
            faults,
            nemesis,
            expect,
        })
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(self.file, self.text, span.start, message)
    }

    /// An error at the first of `spans` that is present (the value most to blame).
    fn blame(&self, spans: &[Option<Range<usize>>], message: String) -> ScenarioError {
        match spans.iter().flatten().next() {
            Some(span) => self.err(span.clone(), message),
            None => ScenarioError::whole_file(self.file, message),
        }
    }

    // ---- values ---------------------------------------------------------

    fn int(&self, v: &S<Int>, limit: IntLimit) -> R<i64> {
        self.int_as(v, limit, limit.key)
    }

    fn int_as(&self, v: &S<Int>, limit: IntLimit, key: &str) -> R<i64> {
        let x = v.get_ref().0;
        if (limit.min..=limit.max).contains(&x) {
            return Ok(x);
        }
        let (min, max) = (format_int(limit.min), format_int(limit.max));
        Err(self.err(v.span(), format!("{key} must be between {min} and {max}, got {x}")))
    }

    /// The value if given, else the limit's default.
    /// A heartbeat interval and a session timeout, the first below the
    /// second — else `what_fails` between two heartbeats.
    fn heartbeat_and_session(
        &self,
        (heartbeat, heartbeat_limit): (&Option<S<Int>>, IntLimit),
        (session, session_limit): (&Option<S<Int>>, IntLimit),
        what_fails: &str,
    ) -> R<(i64, i64)> {
        let (h, s) = (self.int_or(heartbeat, heartbeat_limit)?, self.int_or(session, session_limit)?);
        if h >= s {
            let msg = format!(
                "heartbeat_interval_ms ({h}) must be below session_timeout_ms ({s}), \
                 or {what_fails} between two heartbeats"
            );
            return Err(self.blame(&[span_of(heartbeat), span_of(session)], msg));
        }
        Ok((h, s))
    }

    fn int_or(&self, v: &Option<S<Int>>, limit: IntLimit) -> R<i64> {
        match v {
            Some(v) => self.int(v, limit),
            None => Ok(limit.default_value()),
        }
    }

    fn int_opt(&self, v: &Option<S<Int>>, limit: IntLimit) -> R<Option<i64>> {
        v.as_ref().map(|v| self.int(v, limit)).transpose()
    }

    fn float_as(&self, v: &S<Num>, limit: FloatLimit, key: &str) -> R<f64> {
        let x = v.get_ref().0;
        if (limit.min..=limit.max).contains(&x) {
            return Ok(x);
        }
        let (min, max) = (limit.min, limit.max);
        Err(self.err(v.span(), format!("{key} must be between {min:?} and {max:?}, got {x:?}")))
    }

    fn float_or(&self, v: &Option<S<Num>>, limit: FloatLimit, key: &str) -> R<f64> {
        match v {
            Some(v) => self.float_as(v, limit, key),
            None => Ok(limit.default_value()),
        }
    }

    /// `[min, max]`: two values, each in bounds, not reversed.
    fn pair_or(&self, v: &Option<S<Vec<S<Int>>>>, limit: PairLimit) -> R<(u64, u64)> {
        let Some(v) = v else {
            let (min, max) = limit.default_value();
            return Ok((min as u64, max as u64));
        };
        let key = limit.key;
        let [lo, hi] = v.get_ref().as_slice() else {
            let n = v.get_ref().len();
            return Err(self.err(v.span(), format!("{key} must be [min, max], got {n} values")));
        };
        let bounds = limits::IntLimit { key, min: limit.min, max: limit.max, presence: limits::Presence::Derived };
        let (lo_ms, hi_ms) = (self.int(lo, bounds)?, self.int(hi, bounds)?);
        if lo_ms > hi_ms {
            return Err(
                self.err(v.span(), format!("{key} is reversed: [{lo_ms}, {hi_ms}]; write [min, max] with min <= max"))
            );
        }
        Ok((lo_ms as u64, hi_ms as u64))
    }

    /// A scenario or topic name: 1..=100 of `A-Za-z0-9._-`, not `.` or `..`.
    fn identifier(&self, v: &S<String>, what: &str, limit: IntLimit) -> R<String> {
        let s = v.get_ref();
        let chars = s.chars().count() as i64;
        if !(limit.min..=limit.max).contains(&chars) {
            let (min, max) = (limit.min, limit.max);
            let msg = format!("{what} must be {min} to {max} characters long, got {chars}");
            return Err(self.err(v.span(), msg));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
            let msg = format!("{what} {s:?} contains {bad:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed");
            return Err(self.err(v.span(), msg));
        }
        if s == "." || s == ".." {
            return Err(self.err(v.span(), format!("{what} may not be {s:?}")));
        }
        Ok(s.clone())
    }

    fn description(&self, v: &S<String>) -> R<String> {
        let chars = v.get_ref().chars().count() as i64;
        let max = limits::DESCRIPTION_CHARS.max;
        if chars > max {
            let msg = format!("description is {chars} characters long; the limit is {max}");
            return Err(self.err(v.span(), msg));
        }
        Ok(v.get_ref().clone())
    }

    /// Names from a closed set, each at most once.
    fn unique<T: Copy + PartialEq + Display>(&self, items: &[S<Pick<T>>], key: &str) -> R<Vec<T>> {
        let mut out: Vec<T> = Vec::with_capacity(items.len());
        for item in items {
            let value = item.get_ref().0;
            if out.contains(&value) {
                return Err(self.err(item.span(), format!("{key} lists \"{value}\" twice")));
            }
            out.push(value);
        }
        Ok(out)
    }

    // ---- tables ---------------------------------------------------------

    fn cluster(&self, c: &RawCluster) -> R<ClusterSpec> {
        let brokers = self.int(&c.brokers, limits::BROKERS)? as u32;
        let broker = match &c.broker {
            Some(b) => self.broker(b)?,
            None => BrokerSpec::default(),
        };
        let controller = match &c.controller {
            Some(raw) => self.controller(raw)?,
            None => ControllerSpec::default(),
        };
        let disk = match &c.disk {
            Some(raw) => self.disk(raw)?,
            None => DiskSpec::default(),
        };
        let unclean_leader_election = c.unclean_leader_election.as_ref().is_some_and(|b| *b.get_ref());
        let offsets_topic_partitions =
            self.int_or(&c.offsets_topic_partitions, limits::OFFSETS_TOPIC_PARTITIONS)? as u32;
        let transaction_state_partitions =
            self.int_or(&c.transaction_state_partitions, limits::TRANSACTION_STATE_PARTITIONS)? as u32;
        Ok(ClusterSpec {
            brokers,
            unclean_leader_election,
            broker,
            controller,
            disk,
            offsets_topic_partitions,
            transaction_state_partitions,
        })
    }

    fn disk(&self, d: &RawDisk) -> R<DiskSpec> {
        // 0 is Linux's "never expire": only fsync makes data durable.
        let expire = self.int_or(&d.writeback_expire_ms, limits::DISK_WRITEBACK_EXPIRE_MS)?;
        let bandwidth = self.int_opt(&d.bandwidth_mb_per_s, limits::DISK_BANDWIDTH_MB_PER_S)?;
        let latency = crate::disk::LatencySpec {
            read: self.service_time(&d.read_latency_us, limits::DISK_READ_LATENCY_US)?,
            write: self.service_time(&d.write_latency_us, limits::DISK_WRITE_LATENCY_US)?,
            fsync: self.service_time(&d.fsync_latency_us, limits::DISK_FSYNC_LATENCY_US)?,
            // MB/s is bytes per microsecond: 1 MB/s moves 1000 bytes per ms.
            bandwidth_bytes_per_ms: bandwidth.map(|mb| mb as u64 * 1_000),
        };
        Ok(DiskSpec {
            writeback_expire_ms: (expire > 0).then_some(expire as u64),
            capacity_bytes: self.int_opt(&d.capacity_bytes, limits::DISK_CAPACITY_BYTES)?.map(|v| v as u64),
            latency,
        })
    }

    /// `[median, p99]` in microseconds: each in bounds, the p99 not below the median.
    fn service_time(&self, v: &Option<S<Vec<S<Int>>>>, limit: PairLimit) -> R<Option<crate::disk::ServiceTime>> {
        let Some(v) = v else { return Ok(None) };
        let key = limit.key;
        let [median, p99] = v.get_ref().as_slice() else {
            let n = v.get_ref().len();
            return Err(self.err(v.span(), format!("{key} must be [median, p99] in microseconds, got {n} values")));
        };
        let bounds = limits::IntLimit { key, min: limit.min, max: limit.max, presence: limits::Presence::Derived };
        let (median_us, p99_us) = (self.int(median, bounds)? as u64, self.int(p99, bounds)? as u64);
        if p99_us < median_us {
            let msg = format!("{key} has its p99 {p99_us} below its median {median_us}; write [median, p99]");
            return Err(self.err(v.span(), msg));
        }
        Ok(Some(crate::disk::ServiceTime { median_us, p99_us }))
    }

    /// `log_flush` with its `log_flush_interval_ms`, which only `"interval"` takes.
    fn flush(&self, b: &RawBroker) -> R<FlushSpec> {
        let policy = b.log_flush.as_ref().map_or(FlushPolicy::Never, |p| p.get_ref().0);
        if policy != FlushPolicy::Interval {
            if let Some(interval) = &b.log_flush_interval_ms {
                let given = match &b.log_flush {
                    Some(_) => format!("log_flush is \"{}\"", policy.name()),
                    None => "log_flush is left out (\"never\")".to_string(),
                };
                let msg = format!(
                    "log_flush_interval_ms applies only to log_flush = \"interval\", but {given}; \
                     set log_flush = \"interval\" or drop log_flush_interval_ms"
                );
                return Err(self.err(interval.span(), msg));
            }
        }
        Ok(match policy {
            FlushPolicy::Never => FlushSpec::Never,
            FlushPolicy::EveryBatch => FlushSpec::EveryBatch,
            FlushPolicy::Interval => {
                FlushSpec::IntervalMs(self.int_or(&b.log_flush_interval_ms, limits::LOG_FLUSH_INTERVAL_MS)? as u64)
            }
        })
    }

    fn controller(&self, c: &RawController) -> R<ControllerSpec> {
        let (heartbeat, session) = self.heartbeat_and_session(
            (&c.heartbeat_interval_ms, limits::HEARTBEAT_INTERVAL_MS),
            (&c.session_timeout_ms, limits::SESSION_TIMEOUT_MS),
            "every broker is fenced",
        )?;
        Ok(ControllerSpec { session_timeout_ms: session as u64, heartbeat_interval_ms: heartbeat as u64 })
    }

    fn broker(&self, b: &RawBroker) -> R<BrokerSpec> {
        let segment = self.int_or(&b.log_segment_bytes, limits::LOG_SEGMENT_BYTES)?;
        let interval = self.int_or(&b.log_index_interval_bytes, limits::LOG_INDEX_INTERVAL_BYTES)?;
        if interval > segment {
            let msg = format!("log_index_interval_bytes ({interval}) must not exceed log_segment_bytes ({segment})");
            let spans = [span_of(&b.log_index_interval_bytes), span_of(&b.log_segment_bytes)];
            return Err(self.blame(&spans, msg));
        }
        Ok(BrokerSpec {
            log_segment_bytes: segment as u64,
            log_index_interval_bytes: interval as u64,
            log_retention_bytes: self.int_opt(&b.log_retention_bytes, limits::LOG_RETENTION_BYTES)?.map(|v| v as u64),
            log_retention_ms: self.int_opt(&b.log_retention_ms, limits::LOG_RETENTION_MS)?.map(|v| v as u64),
            log_retention_check_interval_ms: self
                .int_or(&b.log_retention_check_interval_ms, limits::LOG_RETENTION_CHECK_INTERVAL_MS)?
                as u64,
            fetch_purgatory_limit: self.int_or(&b.fetch_purgatory_limit, limits::FETCH_PURGATORY_LIMIT)? as u32,
            replica_lag_time_max_ms: self.int_or(&b.replica_lag_time_max_ms, limits::REPLICA_LAG_TIME_MAX_MS)? as u64,
            replica_fetch_wait_max_ms: self.int_or(&b.replica_fetch_wait_max_ms, limits::REPLICA_FETCH_WAIT_MAX_MS)?
                as u64,
            request_timeout_ms: self.int_or(&b.request_timeout_ms, limits::BROKER_REQUEST_TIMEOUT_MS)? as u64,
            log_flush: self.flush(b)?,
            log_flush_offset_checkpoint_interval_ms: self
                .int_or(&b.log_flush_offset_checkpoint_interval_ms, limits::LOG_FLUSH_OFFSET_CHECKPOINT_INTERVAL_MS)?
                as u64,
            replica_high_watermark_checkpoint_interval_ms: self.int_or(
                &b.replica_high_watermark_checkpoint_interval_ms,
                limits::REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS,
            )? as u64,
        })
    }

    fn network(&self, n: &RawNetwork) -> R<NetworkSpec> {
        Ok(NetworkSpec {
            latency_ms: self.pair_or(&n.latency_ms, limits::NETWORK_LATENCY_MS)?,
            loss: self.float_or(&n.loss, limits::NETWORK_LOSS, limits::NETWORK_LOSS.key)?,
        })
    }

    fn topics(&self, raw: &[S<RawTopic>], brokers: u32) -> R<Vec<TopicSpec>> {
        let mut out: Vec<TopicSpec> = Vec::with_capacity(raw.len());
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        let mut total: i64 = 0;
        for t in raw {
            let t = t.get_ref();
            let name = self.identifier(&t.name, "topic name", limits::TOPIC_NAME_CHARS)?;
            if let Some(line) = first_line.get(&name) {
                let msg = format!("topic {name:?} is defined twice (first at line {line})");
                return Err(self.err(t.name.span(), msg));
            }
            first_line.insert(name.clone(), line_column(self.text, t.name.span().start).0);
            let partitions = self.int(&t.partitions, limits::PARTITIONS)?;
            total += partitions;
            if total > limits::TOTAL_PARTITIONS.max {
                let max = limits::TOTAL_PARTITIONS.max;
                let msg = format!("topics have {total} partitions in all; the limit is {max}");
                return Err(self.err(t.partitions.span(), msg));
            }
            let replication_factor = self.int_or(&t.replication_factor, limits::REPLICATION_FACTOR)?;
            if replication_factor > i64::from(brokers) {
                let msg = format!(
                    "replication_factor {replication_factor} exceeds the cluster's {brokers} broker(s): \
                     each replica of a partition lives on a different broker"
                );
                return Err(self.blame(&[span_of(&t.replication_factor)], msg));
            }
            let min_insync = self.int_or(&t.min_insync_replicas, limits::MIN_INSYNC_REPLICAS)?;
            if min_insync > replication_factor {
                let msg = format!(
                    "min_insync_replicas {min_insync} exceeds replication_factor {replication_factor}: \
                     acks=all could never succeed"
                );
                return Err(self.blame(&[span_of(&t.min_insync_replicas)], msg));
            }
            out.push(TopicSpec {
                name,
                partitions: partitions as u32,
                replication_factor: replication_factor as u32,
                min_insync_replicas: min_insync as u32,
            });
        }
        Ok(out)
    }

    fn topic<'t>(&self, name: &S<String>, topics: &'t [TopicSpec]) -> R<&'t TopicSpec> {
        let wanted = name.get_ref();
        topics.iter().find(|t| &t.name == wanted).ok_or_else(|| {
            let known = if topics.is_empty() {
                "no [[topics]] are defined".to_string()
            } else {
                let names: Vec<String> = topics.iter().map(|t| format!("{:?}", t.name)).collect();
                format!("the [[topics]] are {}", names.join(", "))
            };
            self.err(name.span(), format!("unknown topic {wanted:?}; {known}"))
        })
    }

    fn workload(&self, w: &RawWorkload, topics: &[TopicSpec], duration_ms: u64) -> R<WorkloadSpec> {
        let mut producers = Vec::with_capacity(w.producers.len());
        let mut total = 0;
        for p in &w.producers {
            let spec = self.producer(p.get_ref(), topics, duration_ms)?;
            total += i64::from(spec.count);
            if total > limits::TOTAL_PRODUCERS.max {
                let max = limits::TOTAL_PRODUCERS.max;
                let msg = format!("the workload has {total} producers in all; the limit is {max}");
                return Err(self.blame(&[span_of(&p.get_ref().count), Some(p.span())], msg));
            }
            producers.push(spec);
        }
        let mut consumers = Vec::with_capacity(w.consumers.len());
        let mut total = 0;
        let mut groups = BTreeMap::new();
        for c in &w.consumers {
            let spec = self.consumer(c.get_ref(), topics)?;
            if let Some(group) = &spec.group {
                self.shared_group(group, c.get_ref(), &mut groups)?;
            }
            total += i64::from(spec.count);
            if total > limits::TOTAL_CONSUMERS.max {
                let max = limits::TOTAL_CONSUMERS.max;
                let msg = format!("the workload has {total} consumers in all; the limit is {max}");
                return Err(self.blame(&[span_of(&c.get_ref().count), Some(c.span())], msg));
            }
            consumers.push(spec);
        }
        Ok(WorkloadSpec { producers, consumers })
    }

    fn producer(&self, p: &RawProducer, topics: &[TopicSpec], duration_ms: u64) -> R<ProducerSpec> {
        let count = self.int_or(&p.count, limits::PRODUCER_COUNT)? as u32;
        let topic = self.topic(&p.topic, topics)?;
        let rate_per_s = self.int(&p.rate_per_s, limits::RATE_PER_S)? as u32;
        let keys = match &p.keys {
            Some(k) => self.keys(k, topic)?,
            None => KeyMode::None,
        };
        let linger_ms = self.int_or(&p.linger_ms, limits::LINGER_MS)?;
        let request_timeout_ms = self.int_or(&p.request_timeout_ms, limits::PRODUCER_REQUEST_TIMEOUT_MS)?;
        let delivery_timeout_ms = self.int_or(&p.delivery_timeout_ms, limits::DELIVERY_TIMEOUT_MS)?;
        if delivery_timeout_ms < linger_ms + request_timeout_ms {
            let msg = format!(
                "delivery_timeout_ms ({delivery_timeout_ms}) must be at least linger_ms + \
                 request_timeout_ms ({linger_ms} + {request_timeout_ms}), as Kafka requires"
            );
            let spans = [span_of(&p.delivery_timeout_ms), span_of(&p.request_timeout_ms), span_of(&p.linger_ms)];
            return Err(self.blame(&spans, msg));
        }
        let acks = p.acks.as_ref().map_or(Acks::All, |a| a.get_ref().0);
        let max_in_flight = self.int_or(&p.max_in_flight, limits::MAX_IN_FLIGHT)? as u32;
        let retries = self.int_or(&p.retries, limits::RETRIES)? as u32;
        let transactional = p.transactional.as_ref().is_some_and(|b| *b.get_ref());
        if transactional && p.idempotence.as_ref().is_some_and(|b| !*b.get_ref()) {
            let msg = "transactional = true needs idempotence; remove idempotence = false";
            return Err(self.blame(&[span_of(&p.idempotence), span_of(&p.transactional)], msg.to_string()));
        }
        let idempotence = transactional || p.idempotence.as_ref().is_some_and(|b| *b.get_ref());
        let transactions = if transactional {
            Some(TransactionSpec {
                records: self.int_or(&p.transaction_records, limits::TRANSACTION_RECORDS)? as u32,
                abort_ppm: (self.float_or(&p.abort_rate, limits::ABORT_RATE, limits::ABORT_RATE.key)? * 1e6).round()
                    as u32,
                timeout_ms: self.int_or(&p.transaction_timeout_ms, limits::TRANSACTION_TIMEOUT_MS)? as u64,
                transactional_id: p.transactional_id.as_ref().map(|id| self.transactional_id(id)).transpose()?,
            })
        } else {
            let only = [
                ("transaction_records", span_of(&p.transaction_records)),
                ("abort_rate", span_of(&p.abort_rate)),
                ("transaction_timeout_ms", span_of(&p.transaction_timeout_ms)),
                ("transactional_id", span_of(&p.transactional_id)),
            ];
            if let Some((key, Some(span))) = only.into_iter().find(|(_, s)| s.is_some()) {
                return Err(self.err(span, format!("{key} only applies with transactional = true")));
            }
            None
        };
        if idempotence {
            let limit = broker_core::client::MAX_IN_FLIGHT_PER_PARTITION as u32;
            let conflict = if acks != Acks::All {
                Some((span_of(&p.acks), "acks = \"all\"".to_string()))
            } else if retries == 0 {
                Some((span_of(&p.retries), "retries > 0".to_string()))
            } else if max_in_flight > limit {
                Some((span_of(&p.max_in_flight), format!("max_in_flight <= {limit}")))
            } else {
                None
            };
            if let Some((span, needs)) = conflict {
                let msg = format!("idempotence = true needs {needs}, as Kafka requires");
                return Err(self.blame(&[span, span_of(&p.idempotence)], msg));
            }
        }
        let start_ms = self.int_or(&p.start_ms, limits::PRODUCER_START_MS)? as u64;
        if start_ms >= duration_ms {
            let msg = format!(
                "start_ms {start_ms} is not before duration_ms ({duration_ms}): a producer starts during the \
                 chaos phase, at 0..{duration_ms} ms"
            );
            return Err(self.err(span_of(&p.start_ms).expect("a start past 0 was written"), msg));
        }
        Ok(ProducerSpec {
            count,
            topic: topic.name.clone(),
            rate_per_s,
            keys,
            acks,
            linger_ms: linger_ms as u64,
            batch_size_bytes: self.int_or(&p.batch_size_bytes, limits::BATCH_SIZE_BYTES)? as u64,
            max_in_flight,
            request_timeout_ms: request_timeout_ms as u64,
            retries,
            retry_backoff_ms: self.int_or(&p.retry_backoff_ms, limits::RETRY_BACKOFF_MS)? as u64,
            delivery_timeout_ms: delivery_timeout_ms as u64,
            partitioner: p.partitioner.as_ref().map_or(PartitionerSpec::Sticky, |x| x.get_ref().0),
            idempotence,
            transactions,
            start_ms,
        })
    }

    /// An explicit `transactional.id`: 1 to 255 bytes, no control
    /// characters, and not `producer-N` (a producer's own default id, which
    /// would share it without saying so).
    fn transactional_id(&self, v: &S<String>) -> R<String> {
        let (id, max) = (v.get_ref(), limits::TRANSACTIONAL_ID_BYTES.max);
        let bytes = id.len() as i64;
        if id.is_empty() || bytes > max {
            let msg = format!("transactional_id is {bytes} bytes long; a transactional.id here is 1 to {max} bytes");
            return Err(self.err(v.span(), msg));
        }
        if let Some(bad) = id.chars().find(|c| c.is_control()) {
            let msg = format!("transactional_id {id:?} contains the control character {bad:?}");
            return Err(self.err(v.span(), msg));
        }
        let numbered =
            id.strip_prefix("producer-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            let msg = format!(
                "transactional_id {id:?} is a producer's node name, which is that producer's own transactional id; \
                 name the shared id otherwise"
            );
            return Err(self.err(v.span(), msg));
        }
        Ok(id.clone())
    }

    fn keys(&self, k: &S<RawKeys>, topic: &TopicSpec) -> R<KeyMode> {
        match k.get_ref() {
            RawKeys::None => Ok(KeyMode::None),
            RawKeys::Random(n) => Ok(KeyMode::Random { key_count: self.int(n, limits::KEYS_RANDOM)? as u32 }),
            RawKeys::Partition(n) => {
                let partition = self.int(n, limits::KEYS_PARTITION)?;
                let partitions = i64::from(topic.partitions);
                if partition >= partitions {
                    let msg = format!(
                        "keys.partition is {partition}, but topic {:?} has {partitions} \
                         partition(s), 0..={}",
                        topic.name,
                        partitions - 1
                    );
                    return Err(self.err(n.span(), msg));
                }
                Ok(KeyMode::Partition(partition as u32))
            }
        }
    }

    fn consumer(&self, c: &RawConsumer, topics: &[TopicSpec]) -> R<ConsumerSpec> {
        let count = self.int_or(&c.count, limits::CONSUMER_COUNT)? as u32;
        if c.topics.get_ref().is_empty() {
            let msg = "topics is empty; a consumer reads at least one topic";
            return Err(self.err(c.topics.span(), msg));
        }
        let mut names: Vec<String> = Vec::with_capacity(c.topics.get_ref().len());
        for name in c.topics.get_ref() {
            let topic = self.topic(name, topics)?;
            if names.contains(&topic.name) {
                return Err(self.err(name.span(), format!("topics lists {:?} twice", topic.name)));
            }
            names.push(topic.name.clone());
        }
        let fetch_min_bytes = self.int_or(&c.fetch_min_bytes, limits::FETCH_MIN_BYTES)?;
        let fetch_max_bytes = self.int_or(&c.fetch_max_bytes, limits::FETCH_MAX_BYTES)?;
        if fetch_min_bytes > fetch_max_bytes {
            let msg =
                format!("fetch_min_bytes ({fetch_min_bytes}) must not exceed fetch_max_bytes ({fetch_max_bytes})");
            return Err(self.blame(&[span_of(&c.fetch_min_bytes), span_of(&c.fetch_max_bytes)], msg));
        }
        let group = self.group(c)?;
        let pipeline = self.pipeline(c, &names, group.is_some(), topics)?;
        let isolation = match (&c.isolation, &pipeline) {
            (Some(i), _) => i.get_ref().0,
            (None, Some(_)) => IsolationSpec::ReadCommitted,
            (None, None) => IsolationSpec::ReadUncommitted,
        };
        Ok(ConsumerSpec {
            count,
            topics: names,
            assignment: c.assignment.as_ref().map_or(AssignmentSpec::All, |a| a.get_ref().0),
            auto_offset_reset: c.auto_offset_reset.as_ref().map_or(ResetSpec::Earliest, |r| r.get_ref().0),
            poll_timeout_ms: self.int_or(&c.poll_timeout_ms, limits::POLL_TIMEOUT_MS)? as u64,
            max_poll_records: self.int_or(&c.max_poll_records, limits::MAX_POLL_RECORDS)? as u32,
            fetch_max_wait_ms: self.int_or(&c.fetch_max_wait_ms, limits::FETCH_MAX_WAIT_MS)? as u64,
            fetch_min_bytes: fetch_min_bytes as u32,
            fetch_max_bytes: fetch_max_bytes as u32,
            max_partition_fetch_bytes: self.int_or(&c.max_partition_fetch_bytes, limits::MAX_PARTITION_FETCH_BYTES)?
                as u32,
            request_timeout_ms: self.int_or(&c.request_timeout_ms, limits::CONSUMER_REQUEST_TIMEOUT_MS)? as u64,
            isolation,
            group,
            pipeline,
        })
    }

    /// `transform_to` and the keys only a pipeline takes.
    fn pipeline(
        &self,
        c: &RawConsumer,
        inputs: &[String],
        grouped: bool,
        topics: &[TopicSpec],
    ) -> R<Option<PipelineSpec>> {
        let Some(output) = &c.transform_to else {
            let only = [
                ("abort_rate", span_of(&c.abort_rate)),
                ("transaction_timeout_ms", span_of(&c.transaction_timeout_ms)),
            ];
            if let Some((key, Some(span))) = only.into_iter().find(|(_, s)| s.is_some()) {
                let msg = format!("{key} only applies to a pipeline (a consumer with transform_to)");
                return Err(self.err(span, msg));
            }
            return Ok(None);
        };
        if !grouped {
            let msg = "transform_to needs `group`: a pipeline's members commit their offsets to their group \
                       in each transaction";
            return Err(self.err(output.span(), msg));
        }
        let topic = self.topic(output, topics)?;
        if inputs.contains(&topic.name) {
            let msg = format!(
                "transform_to names {:?}, which this entry also reads; a pipeline writes to another topic",
                topic.name
            );
            return Err(self.err(output.span(), msg));
        }
        if let Some(commit) = &c.commit {
            let msg = "`commit` does not apply to a pipeline (transform_to): its offsets commit in its transactions";
            return Err(self.err(commit.span(), msg));
        }
        if let Some(isolation) = c.isolation.as_ref().filter(|i| i.get_ref().0 != IsolationSpec::ReadCommitted) {
            let msg = "a pipeline (transform_to) reads with isolation = \"read_committed\" (its default); \
                       read_uncommitted would transform records of transactions that abort";
            return Err(self.err(isolation.span(), msg));
        }
        let abort_rate = self.float_or(&c.abort_rate, limits::PIPELINE_ABORT_RATE, limits::PIPELINE_ABORT_RATE.key)?;
        Ok(Some(PipelineSpec {
            output: topic.name.clone(),
            abort_ppm: (abort_rate * 1e6).round() as u32,
            transaction_timeout_ms: self.int_or(&c.transaction_timeout_ms, limits::PIPELINE_TRANSACTION_TIMEOUT_MS)?
                as u64,
        }))
    }

    /// `group` and the keys only a group member takes (subscribe mode);
    /// without `group`, none of them (assign mode).
    fn group(&self, c: &RawConsumer) -> R<Option<GroupSpec>> {
        let Some(id) = &c.group else {
            return self.no_group_keys(c).map(|()| None);
        };
        if let Some(assignment) = &c.assignment {
            let msg = "`assignment` does not apply with `group`: the group's assignor divides the partitions \
                       among its members; drop `assignment` or `group`";
            return Err(self.err(assignment.span(), msg));
        }
        let id = self.group_id(id)?;
        let assignors = self.assignors(&c.assignor)?;
        let (heartbeat, session) = self.heartbeat_and_session(
            (&c.heartbeat_interval_ms, limits::GROUP_HEARTBEAT_INTERVAL_MS),
            (&c.session_timeout_ms, limits::GROUP_SESSION_TIMEOUT_MS),
            "the coordinator expires members",
        )?;
        Ok(Some(GroupSpec {
            id,
            assignors,
            session_timeout_ms: session as u64,
            heartbeat_interval_ms: heartbeat as u64,
            max_poll_interval_ms: self.int_or(&c.max_poll_interval_ms, limits::MAX_POLL_INTERVAL_MS)? as u64,
            commit: self.commit(c)?,
            auto_commit_interval_ms: self.int_or(&c.auto_commit_interval_ms, limits::AUTO_COMMIT_INTERVAL_MS)? as u64,
            processing_ms: self.int_or(&c.processing_ms, limits::PROCESSING_MS)? as u64,
            static_membership: c.static_membership.as_ref().is_some_and(|b| *b.get_ref()),
        }))
    }

    /// Assign mode: a group-only key is an error at the first one written.
    fn no_group_keys(&self, c: &RawConsumer) -> R<()> {
        let given = group_only_keys(c).into_iter().filter_map(|(key, span)| Some((key, span?)));
        let Some((key, span)) = given.min_by_key(|(_, span)| span.start) else { return Ok(()) };
        let msg = format!(
            "`{key}` needs `group`: it configures a consumer group's members, and without `group` \
             a consumer reads fixed partitions (`assignment`)"
        );
        Err(self.err(span, msg))
    }

    /// `commit` with its `auto_commit_interval_ms`, which only `"auto"` takes.
    fn commit(&self, c: &RawConsumer) -> R<CommitMode> {
        let commit = c.commit.as_ref().map_or(CommitMode::Auto, |m| m.get_ref().0);
        if commit != CommitMode::Auto {
            if let Some(interval) = &c.auto_commit_interval_ms {
                let msg = format!(
                    "auto_commit_interval_ms applies only to commit = \"auto\", but commit is \"{}\"; \
                     drop auto_commit_interval_ms or set commit = \"auto\"",
                    commit.name()
                );
                return Err(self.err(interval.span(), msg));
            }
        }
        Ok(commit)
    }

    /// A `group.id`: 1 to 255 bytes, no control characters (ids appear in
    /// one-line traces and reports). Kafka itself takes any string.
    fn group_id(&self, v: &S<String>) -> R<String> {
        let (id, max) = (v.get_ref(), limits::GROUP_ID_BYTES.max);
        let bytes = id.len() as i64;
        if id.is_empty() {
            return Err(
                self.err(v.span(), format!("group is empty; a group id (Kafka's group.id) is 1 to {max} bytes"))
            );
        }
        if bytes > max {
            return Err(self.err(v.span(), format!("group is {bytes} bytes long; the limit is {max}")));
        }
        if let Some(bad) = id.chars().find(|c| c.is_control()) {
            let msg = format!("group {id:?} contains the control character {bad:?}");
            return Err(self.err(v.span(), msg));
        }
        Ok(id.clone())
    }

    /// `assignor`: one name or a non-empty list, no name twice, in order of preference.
    fn assignors(&self, v: &Option<S<RawAssignors>>) -> R<Vec<AssignorKind>> {
        let Some(v) = v else { return Ok(DEFAULT_ASSIGNORS.to_vec()) };
        let list = match v.get_ref() {
            RawAssignors::One(kind) => return Ok(vec![*kind]),
            RawAssignors::Many(list) => list,
        };
        if list.is_empty() {
            let msg = format!("assignor is empty; name at least one of: {}", assignor_names(AssignorKind::ALL));
            return Err(self.err(v.span(), msg));
        }
        let mut out: Vec<AssignorKind> = Vec::with_capacity(list.len());
        for item in list {
            let kind = item.get_ref().0;
            if out.contains(&kind) {
                return Err(self.err(item.span(), format!("assignor lists \"{}\" twice", kind.name())));
            }
            out.push(kind);
        }
        Ok(out)
    }

    /// Entries naming the same group share it, each with its own topics and
    /// settings (as Kafka allows), but the coordinator refuses a member that
    /// shares no assignor with the group (INCONSISTENT_GROUP_PROTOCOL), so
    /// that is an error here rather than a run that never forms the group.
    fn shared_group(&self, g: &GroupSpec, c: &RawConsumer, seen: &mut BTreeMap<String, SharedGroup>) -> R<()> {
        let Some(id_span) = span_of(&c.group) else { return Ok(()) };
        let Some(earlier) = seen.get_mut(&g.id) else {
            let line = line_column(self.text, id_span.start).0;
            seen.insert(g.id.clone(), SharedGroup { line, common: g.assignors.clone() });
            return Ok(());
        };
        let common: Vec<AssignorKind> = earlier.common.iter().copied().filter(|a| g.assignors.contains(a)).collect();
        if common.is_empty() {
            let msg = format!(
                "group {:?} (also named at line {}) would have no assignor every member supports: this entry \
                 offers {}, the earlier entries share {}; the coordinator would refuse its members \
                 (INCONSISTENT_GROUP_PROTOCOL)",
                g.id,
                earlier.line,
                assignor_names(&g.assignors),
                assignor_names(&earlier.common)
            );
            return Err(self.blame(&[span_of(&c.assignor), Some(id_span)], msg));
        }
        earlier.common = common;
        Ok(())
    }

    // ---- faults ---------------------------------------------------------

    fn faults(&self, raw: &[S<RawFault>], duration_ms: u64, nodes: &Nodes) -> R<Vec<TimedFault>> {
        let max = limits::FAULTS.max as usize;
        if let Some(extra) = raw.get(max) {
            let msg = format!("more than {max} [[faults]] entries; use [nemesis] for long random schedules");
            return Err(self.err(extra.span(), msg));
        }
        let mut out = raw.iter().map(|f| self.fault(f, duration_ms, nodes)).collect::<R<Vec<TimedFault>>>()?;
        // Stable: equal times keep file order.
        out.sort_by_key(|f| f.at_ms);
        Ok(out)
    }

    fn fault(&self, f: &S<RawFault>, duration_ms: u64, nodes: &Nodes) -> R<TimedFault> {
        let r = f.get_ref();
        let at_ms = self.int(&r.at_ms, limits::AT_MS)? as u64;
        if at_ms > duration_ms {
            let msg = format!(
                "at_ms {at_ms} is past duration_ms ({duration_ms}): faults happen during the \
                 chaos phase, at 0..={duration_ms} ms; the heal after it is automatic"
            );
            return Err(self.err(r.at_ms.span(), msg));
        }
        let verb = r.verb.get_ref().0;
        self.fault_keys(r, verb)?;
        let need = |key: &str| {
            let msg = format!("verb \"{}\" needs `{key}`; {}", verb.name(), takes(verb));
            self.err(r.verb.span(), msg)
        };
        let node = || r.node.as_ref().ok_or_else(|| need("node"));
        let fault = match verb {
            Verb::Crash => Fault::Crash { node: self.crashable_node(node()?, nodes, verb)? },
            Verb::Stop => Fault::Stop { node: self.broker_node(node()?, nodes, verb)? },
            Verb::Restart => Fault::Restart { node: self.crashable_node(node()?, nodes, verb)? },
            Verb::Pause => Fault::Pause { node: self.any_node(node()?, nodes)? },
            Verb::Resume => Fault::Resume { node: self.any_node(node()?, nodes)? },
            Verb::Isolate => Fault::Isolate { node: self.any_node(node()?, nodes)? },
            Verb::Partition => {
                let groups = r.groups.as_ref().ok_or_else(|| need("groups"))?;
                let one_way = r.one_way.as_ref().is_some_and(|b| *b.get_ref());
                self.partition(groups, one_way, nodes)?
            }
            Verb::Heal => Fault::Heal,
            Verb::Latency => {
                let min = r.min_ms.as_ref().ok_or_else(|| need("min_ms"))?;
                let max = r.max_ms.as_ref().ok_or_else(|| need("max_ms"))?;
                let min_ms = self.int_as(min, limits::FAULT_LATENCY_MS, "min_ms")?;
                let max_ms = self.int_as(max, limits::FAULT_LATENCY_MS, "max_ms")?;
                if min_ms > max_ms {
                    let msg = format!("max_ms ({max_ms}) is below min_ms ({min_ms})");
                    return Err(self.err(max.span(), msg));
                }
                Fault::Latency { min_ms: min_ms as u64, max_ms: max_ms as u64 }
            }
            Verb::Loss => {
                let rate = r.rate.as_ref().ok_or_else(|| need("rate"))?;
                Fault::Loss { rate: self.float_as(rate, limits::FAULT_LOSS_RATE, "rate")? }
            }
            Verb::Skew => {
                let node = self.any_node(node()?, nodes)?;
                let skew = r.skew_ms.as_ref().ok_or_else(|| need("skew_ms"))?;
                Fault::Skew { node, skew_ms: self.int_as(skew, limits::SKEW_MS, "skew_ms")? }
            }
            Verb::PowerLoss => {
                let torn = r.torn.as_ref().is_some_and(|b| *b.get_ref());
                let nodes = match (&r.node, &r.nodes) {
                    (Some(_), Some(nodes)) => {
                        let msg = format!("power-loss takes `node` or `nodes`, not both; {}", takes(verb));
                        return Err(self.err(nodes.span(), msg));
                    }
                    (Some(node), None) => vec![self.disk_node(node, nodes, verb)?],
                    (None, Some(list)) => self.disk_nodes(list, nodes, verb)?,
                    (None, None) => return Err(need("node` or `nodes")),
                };
                Fault::PowerLoss { nodes, torn }
            }
            Verb::DiskFault => {
                let node = self.disk_node(node()?, nodes, verb)?;
                Fault::DiskFault { node, faults: self.disk_faults(r)? }
            }
            Verb::DiskFull => Fault::DiskFull { node: self.disk_node(node()?, nodes, verb)? },
            Verb::DiskHeal => Fault::DiskHeal { node: self.disk_node(node()?, nodes, verb)? },
        };
        let line = line_column(self.text, f.span().start).0;
        Ok(TimedFault { at_ms, fault, line })
    }

    /// A key the verb does not take is an error at that key's value.
    fn fault_keys(&self, r: &RawFault, verb: Verb) -> R<()> {
        let present = [
            ("node", span_of(&r.node)),
            ("groups", span_of(&r.groups)),
            ("one_way", span_of(&r.one_way)),
            ("min_ms", span_of(&r.min_ms)),
            ("max_ms", span_of(&r.max_ms)),
            ("rate", span_of(&r.rate)),
            ("skew_ms", span_of(&r.skew_ms)),
            ("nodes", span_of(&r.nodes)),
            ("torn", span_of(&r.torn)),
            ("bit_flip_read", span_of(&r.bit_flip_read)),
            ("bit_flip_write", span_of(&r.bit_flip_write)),
            ("lost_write", span_of(&r.lost_write)),
            ("misdirected_write", span_of(&r.misdirected_write)),
        ];
        let (required, optional) = verb.keys();
        for (key, span) in present {
            if let Some(span) = span {
                if !required.contains(&key) && !optional.contains(&key) {
                    let msg = format!("`{key}` does not apply to verb \"{}\"; {}", verb.name(), takes(verb));
                    return Err(self.err(span, msg));
                }
            }
        }
        Ok(())
    }

    fn any_node(&self, v: &S<String>, nodes: &Nodes) -> R<String> {
        nodes.resolve(v.get_ref()).map_err(|msg| self.err(v.span(), msg))?;
        Ok(v.get_ref().clone())
    }

    fn broker_node(&self, v: &S<String>, nodes: &Nodes, verb: Verb) -> R<String> {
        let name = v.get_ref();
        match kind_of(name) {
            Some(kind) if !matches!(kind, NodeKind::Broker | NodeKind::Controller) => {
                let msg = format!(
                    "{} applies to brokers and the controller only, but {name:?} is a {}; {}",
                    verb.name(),
                    kind.noun(),
                    nodes.describe(NodeKind::Broker)
                );
                Err(self.err(v.span(), msg))
            }
            _ => self.any_node(v, nodes),
        }
    }

    /// A node a crash can kill and a restart boot again: a broker, the
    /// controller, or a consumer (a new process that rejoins its group or
    /// takes its partitions again). A producer can be killed but not
    /// restarted: a new process would send its values again. It stays down
    /// until the heal, which boots it to find the workload over.
    fn crashable_node(&self, v: &S<String>, nodes: &Nodes, verb: Verb) -> R<String> {
        let name = v.get_ref();
        if kind_of(name) == Some(NodeKind::Producer) && verb == Verb::Restart {
            let msg = format!(
                "restart applies to brokers, the controller and consumers, but {name:?} is a producer \
                 (a crashed producer stays down until the heal); {}",
                nodes.describe(NodeKind::Broker)
            );
            return Err(self.err(v.span(), msg));
        }
        self.any_node(v, nodes)
    }

    /// A node with a disk: a broker or the controller.
    fn disk_node(&self, v: &S<String>, nodes: &Nodes, verb: Verb) -> R<String> {
        let name = v.get_ref();
        match kind_of(name) {
            Some(kind) if !matches!(kind, NodeKind::Broker | NodeKind::Controller) => {
                let msg = format!(
                    "{} applies to brokers and the controller only, but {name:?} is a {}, which has no disk; {}",
                    verb.name(),
                    kind.noun(),
                    nodes.describe(NodeKind::Broker)
                );
                Err(self.err(v.span(), msg))
            }
            _ => self.any_node(v, nodes),
        }
    }

    /// `nodes = [...]`: at least one node with a disk, each at most once.
    fn disk_nodes(&self, list: &S<Vec<S<String>>>, nodes: &Nodes, verb: Verb) -> R<Vec<String>> {
        if list.get_ref().is_empty() {
            let msg = format!("nodes is empty; {} names at least one broker or the controller", verb.name());
            return Err(self.err(list.span(), msg));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.get_ref().len());
        for node in list.get_ref() {
            let name = self.disk_node(node, nodes, verb)?;
            if out.contains(&name) {
                return Err(self.err(node.span(), format!("nodes lists {name:?} twice")));
            }
            out.push(name);
        }
        Ok(out)
    }

    /// The four probabilities of `disk-fault`, each in range, at least one above 0.
    fn disk_faults(&self, r: &RawFault) -> R<DiskFaultSpec> {
        let p = |v: &Option<S<Num>>, key: &str| self.float_or(v, limits::FAULT_DISK_PROBABILITY, key);
        let [read, write, lost, misdirected] = DISK_FAULT_KEYS;
        let faults = DiskFaultSpec {
            bit_flip_read: p(&r.bit_flip_read, read)?,
            bit_flip_write: p(&r.bit_flip_write, write)?,
            lost_write: p(&r.lost_write, lost)?,
            misdirected_write: p(&r.misdirected_write, misdirected)?,
        };
        if !faults.any() {
            let msg = format!(
                "disk-fault needs at least one of {} above 0, or it changes nothing",
                DISK_FAULT_KEYS.map(|k| format!("`{k}`")).join(", ")
            );
            // The first probability written (all 0), else the verb.
            let given = [&r.bit_flip_read, &r.bit_flip_write, &r.lost_write, &r.misdirected_write];
            let first = given.into_iter().filter_map(span_of).min_by_key(|span| span.start);
            return Err(self.blame(&[first, Some(r.verb.span())], msg));
        }
        Ok(faults)
    }

    fn partition(&self, groups: &RawGroups, one_way: bool, nodes: &Nodes) -> R<Fault> {
        for (i, group) in groups.get_ref().iter().enumerate() {
            if group.get_ref().is_empty() {
                let msg = format!("partition group {} is empty; name at least one node", i + 1);
                return Err(self.err(group.span(), msg));
            }
        }
        let n = groups.get_ref().len();
        if n < 2 {
            let what = if one_way {
                "a one-way partition cuts groups[0] off from the other groups, so it needs"
            } else {
                "a partition needs"
            };
            let msg = format!("{what} at least 2 groups, got {n}: groups = [[\"broker-0\"], [\"broker-1\"]]");
            return Err(self.err(groups.span(), msg));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, group) in groups.get_ref().iter().enumerate() {
            for node in group.get_ref() {
                self.any_node(node, nodes)?;
                if let Some(first) = seen.insert(node.get_ref(), i + 1) {
                    let msg = if first == i + 1 {
                        format!("node {:?} is named twice in group {first}", node.get_ref())
                    } else {
                        format!(
                            "node {:?} is in group {first} and group {}; a node may be in one group at most",
                            node.get_ref(),
                            i + 1
                        )
                    };
                    return Err(self.err(node.span(), msg));
                }
            }
        }
        let groups =
            groups.get_ref().iter().map(|g| g.get_ref().iter().map(|n| n.get_ref().clone()).collect()).collect();
        Ok(Fault::Partition { groups, one_way })
    }

    // ---- nemesis and expectations -----------------------------------------

    fn nemesis(&self, n: &RawNemesis) -> R<NemesisSpec> {
        let p = |v: &Option<S<Num>>, key: &str| self.float_or(v, limits::NEMESIS_PROBABILITY, key);
        Ok(NemesisSpec {
            interval_ms: self.int_or(&n.interval_ms, limits::NEMESIS_INTERVAL_MS)? as u64,
            fault_duration_ms: self.pair_or(&n.fault_duration_ms, limits::NEMESIS_FAULT_DURATION_MS)?,
            crash: p(&n.crash, "nemesis.crash")?,
            pause: p(&n.pause, "nemesis.pause")?,
            partition: p(&n.partition, "nemesis.partition")?,
            isolate: p(&n.isolate, "nemesis.isolate")?,
            loss: p(&n.loss, "nemesis.loss")?,
            latency: p(&n.latency, "nemesis.latency")?,
            skew: p(&n.skew, "nemesis.skew")?,
            power_loss: self.float_or(&n.power_loss, limits::NEMESIS_POWER_LOSS, limits::NEMESIS_POWER_LOSS.key)?,
            disk_fault: self.float_or(&n.disk_fault, limits::NEMESIS_DISK_FAULT, limits::NEMESIS_DISK_FAULT.key)?,
            disk_fault_rate: self.float_or(
                &n.disk_fault_rate,
                limits::NEMESIS_DISK_FAULT_RATE,
                limits::NEMESIS_DISK_FAULT_RATE.key,
            )?,
            loss_rate: self.float_or(&n.loss_rate, limits::NEMESIS_LOSS_RATE, limits::NEMESIS_LOSS_RATE.key)?,
            max_latency_ms: self.int_or(&n.max_latency_ms, limits::NEMESIS_MAX_LATENCY_MS)? as u64,
            max_skew_ms: self.int_or(&n.max_skew_ms, limits::NEMESIS_MAX_SKEW_MS)?,
            swarm: n.swarm.as_ref().is_some_and(|b| *b.get_ref()),
        })
    }

    /// `must_hold` left out means every default invariant not listed in `expected`.
    fn expect(&self, raw: Option<&RawExpect>) -> R<ExpectSpec> {
        let raw_expected = raw.and_then(|e| e.expected.as_deref()).unwrap_or_default();
        let expected = self.unique(raw_expected, "expect.expected")?;
        let must_hold = match raw.and_then(|e| e.must_hold.as_deref()) {
            Some(list) => {
                let must_hold = self.unique(list, "expect.must_hold")?;
                if let Some(both) = raw_expected.iter().find(|i| must_hold.contains(&i.get_ref().0)) {
                    let msg = format!(
                        "\"{}\" is in both expect.must_hold and expect.expected; an invariant \
                         either must hold or is expected to be violated",
                        both.get_ref().0
                    );
                    return Err(self.err(both.span(), msg));
                }
                must_hold
            }
            None => ExpectSpec::default().must_hold.into_iter().filter(|i: &Invariant| !expected.contains(i)).collect(),
        };
        Ok(ExpectSpec { must_hold, expected })
    }
}

fn span_of<T>(v: &Option<S<T>>) -> Option<Range<usize>> {
    v.as_ref().map(|v| v.span())
}

/// The consumer keys that configure group membership, with their spans if given.
fn group_only_keys(c: &RawConsumer) -> [(&'static str, Option<Range<usize>>); 8] {
    [
        ("assignor", span_of(&c.assignor)),
        ("session_timeout_ms", span_of(&c.session_timeout_ms)),
        ("heartbeat_interval_ms", span_of(&c.heartbeat_interval_ms)),
        ("max_poll_interval_ms", span_of(&c.max_poll_interval_ms)),
        ("commit", span_of(&c.commit)),
        ("auto_commit_interval_ms", span_of(&c.auto_commit_interval_ms)),
        ("processing_ms", span_of(&c.processing_ms)),
        ("static_membership", span_of(&c.static_membership)),
    ]
}

/// "range, cooperative-sticky".
fn assignor_names(kinds: &[AssignorKind]) -> String {
    kinds.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// What the entries naming one group so far have in common.
struct SharedGroup {
    /// Line of the first entry's `group`.
    line: usize,
    /// The assignors every entry so far offers.
    common: Vec<AssignorKind>,
}

fn default_name(file: &str) -> String {
    match Path::new(file).file_stem() {
        Some(stem) if !stem.is_empty() => stem.to_string_lossy().into_owned(),
        _ => "scenario".to_string(),
    }
}

/// "crash takes `node`", for messages about a verb's keys.
fn takes(verb: Verb) -> String {
    if verb == Verb::PowerLoss {
        return "power-loss takes `node` or `nodes`, optionally `torn`".to_string();
    }
    let (required, optional) = verb.keys();
    let mut keys: Vec<String> = required.iter().map(|k| format!("`{k}`")).collect();
    keys.extend(optional.iter().map(|k| format!("optionally `{k}`")));
    match keys.len() {
        0 => format!("{} takes no keys besides at_ms and verb", verb.name()),
        _ => format!("{} takes {}", verb.name(), keys.join(", ")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeKind {
    Broker,
    Controller,
    Producer,
    Consumer,
}

impl NodeKind {
    fn noun(self) -> &'static str {
        match self {
            NodeKind::Broker => "broker",
            NodeKind::Controller => "controller",
            NodeKind::Producer => "producer",
            NodeKind::Consumer => "consumer",
        }
    }
}

/// The kind a node name claims by its prefix (`broker-7` claims a broker, whether or not it exists).
fn kind_of(name: &str) -> Option<NodeKind> {
    if name == CONTROLLER_NODE {
        return Some(NodeKind::Controller);
    }
    let (prefix, _) = name.rsplit_once('-')?;
    match prefix {
        "broker" => Some(NodeKind::Broker),
        "producer" => Some(NodeKind::Producer),
        "consumer" => Some(NodeKind::Consumer),
        _ => None,
    }
}

/// How many nodes of each kind the scenario has.
struct Nodes {
    brokers: u32,
    producers: u32,
    consumers: u32,
}

impl Nodes {
    fn count(&self, kind: NodeKind) -> u32 {
        match kind {
            NodeKind::Broker => self.brokers,
            NodeKind::Controller => 1,
            NodeKind::Producer => self.producers,
            NodeKind::Consumer => self.consumers,
        }
    }

    /// The node's kind if it exists, else a message saying which nodes do.
    fn resolve(&self, name: &str) -> Result<NodeKind, String> {
        let Some(kind) = kind_of(name) else {
            return Err(format!(
                "unknown node {name:?}; nodes are named broker-N, controller, producer-N and consumer-N, \
                 and this scenario has {}, controller, {}, {}",
                self.range(NodeKind::Broker),
                self.range(NodeKind::Producer),
                self.range(NodeKind::Consumer)
            ));
        };
        if kind == NodeKind::Controller {
            return Ok(kind);
        }
        let index = name.rsplit_once('-').map_or("", |(_, i)| i);
        let canonical =
            !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) && (index == "0" || !index.starts_with('0'));
        match index.parse::<u32>() {
            Ok(i) if canonical && i < self.count(kind) => Ok(kind),
            _ => Err(format!("fault names node {name:?}, but {}", self.describe(kind))),
        }
    }

    /// "broker-0..broker-2", "producer-0", "no consumers".
    fn range(&self, kind: NodeKind) -> String {
        let noun = kind.noun();
        match self.count(kind) {
            0 => format!("no {noun}s"),
            1 => format!("{noun}-0"),
            n => format!("{noun}-0..{noun}-{}", n - 1),
        }
    }

    /// "the cluster has brokers broker-0..broker-2".
    fn describe(&self, kind: NodeKind) -> String {
        let whose = match kind {
            NodeKind::Broker | NodeKind::Controller => "the cluster",
            NodeKind::Producer | NodeKind::Consumer => "the workload",
        };
        match self.count(kind) {
            0 => format!("{whose} has no {}s", kind.noun()),
            1 => format!("{whose} has one {}, {}", kind.noun(), self.range(kind)),
            _ => format!("{whose} has {}s {}", kind.noun(), self.range(kind)),
        }
    }
}
