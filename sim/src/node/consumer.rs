//! A consumer process (assign mode): takes its partitions, then polls until
//! the chaos phase ends. Every poll is one history operation whose completion
//! carries the records it returned.

use super::{earliest, partition_name};
use super::{next_wake, Wake};
use crate::history::{Call, Outcome, Partition, Polled, SeekCause, Value};
use crate::net::{ClientNet, ClientNetEvent};
use crate::rng::core_seed;
use crate::scenario::{ConsumerSpec, IsolationSpec, ResetSpec};
use crate::timer::Timer;
use crate::trace::TraceEvent;
use crate::world::{Phase, World};
use broker_core::client::consumer::{AutoOffsetReset, ConsumedRecord, Consumer, ConsumerConfig, ConsumerOutput};
use broker_core::client::membership::{Member, MemberEvent};
use broker_core::group::assignor::PartitionCounts;
use broker_core::protocol::Isolation;
use broker_core::protocol::Peer;
use broker_core::types::{Offset, TopicPartition};
use madsim::time::{Duration, Instant};
use std::collections::VecDeque;
use std::sync::Arc;

pub fn consumer_config(spec: &ConsumerSpec) -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: match spec.auto_offset_reset {
            ResetSpec::Earliest => AutoOffsetReset::Earliest,
            ResetSpec::Latest => AutoOffsetReset::Latest,
            ResetSpec::None => AutoOffsetReset::None,
        },
        fetch_max_wait_ms: spec.fetch_max_wait_ms,
        fetch_min_bytes: spec.fetch_min_bytes,
        fetch_max_bytes: spec.fetch_max_bytes,
        max_partition_fetch_bytes: spec.max_partition_fetch_bytes,
        max_poll_records: spec.max_poll_records as usize,
        request_timeout_ms: spec.request_timeout_ms,
        isolation: match spec.isolation {
            IsolationSpec::ReadUncommitted => Isolation::ReadUncommitted,
            IsolationSpec::ReadCommitted => Isolation::ReadCommitted,
        },
        ..ConsumerConfig::default()
    }
}

/// A consumer node loop shared by workload consumers and the drain.
pub struct ConsumerDriver {
    pub world: Arc<World>,
    pub node: usize,
    pub process: u32,
    pub net: ClientNet,
    pub consumer: Consumer,
    timer: Timer,
    /// The position of some partition moved (a recorded seek) since the
    /// current poll op was invoked.
    moved: bool,
    /// Subscribe mode: the consumer's group membership, sharing its
    /// connections (its correlation ids lie above the consumer's).
    pub member: Option<Member>,
    /// What the member reported, for the group program to act on.
    pub member_events: VecDeque<MemberEvent>,
}

impl ConsumerDriver {
    pub async fn start(world: Arc<World>, node: usize, process: u32, config: ConsumerConfig) -> Self {
        world.trace(node, TraceEvent::Boot);
        let net = ClientNet::bind(world.clone(), node).await;
        let consumer = Consumer::new(config, world.all_brokers(), core_seed(world.seed, node as u64));
        ConsumerDriver {
            world,
            node,
            process,
            net,
            consumer,
            timer: Timer::default(),
            moved: false,
            member: None,
            member_events: VecDeque::new(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.world.clocks.node_now_ms(self.node)
    }

    pub fn assign(&mut self, partitions: Vec<(String, u32)>) {
        let call = Call::Assign {
            partitions: partitions
                .iter()
                .map(|(t, p)| Partition { topic: self.world.topic(t), partition: *p })
                .collect(),
        };
        let op = self.world.invoke(self.process, call);
        let now = self.now_ms();
        self.consumer.assign(now, partitions);
        self.flush();
        self.world.complete(op, Outcome::Ok);
    }

    /// One poll operation: returns as soon as records are available, or
    /// empty-handed at `deadline` (or when `stop` says so).
    /// Returns the poll's op and its records, as the history has them.
    pub async fn poll_op(&mut self, deadline: Instant, stop: impl Fn(&World) -> bool) -> (u64, Vec<Polled>) {
        let mut op = self.world.invoke(self.process, Call::Poll);
        self.moved = false;
        let records = loop {
            let now = self.now_ms();
            let records = self.consumer.poll(now);
            self.flush();
            if !records.is_empty() || Instant::now() >= deadline || stop(&self.world) {
                break records;
            }
            self.wait(Some(deadline)).await;
            if std::mem::take(&mut self.moved) {
                // A position moved while this poll waited (its seek is an op
                // invoked after this one): the poll ends empty, and what is
                // read from the new position belongs to a poll invoked after
                // the move, so that the history's op order is the order things
                // happened in.
                self.world.complete(op, Outcome::PollOk { records: Vec::new() });
                op = self.world.invoke(self.process, Call::Poll);
            }
        };
        let records: Vec<Polled> = records.into_iter().map(|r| polled(&self.world, r)).collect();
        self.world.complete(op, Outcome::PollOk { records: records.clone() });
        (op, records)
    }

    /// Waits for one network event or timer and feeds it to the consumer.
    pub async fn wait(&mut self, until: Option<Instant>) {
        self.timer.set(earliest(self.next_deadline(), until));
        let wake = next_wake(|cx| self.net.poll_event(cx), &mut self.timer).await;
        self.handle_wake(wake);
    }

    /// When the consumer or its member next needs a timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let core = self.consumer.next_timeout_ms().map(|ms| self.world.clocks.instant_for(self.node, ms));
        let member = self.member.as_ref().and_then(Member::next_timeout_ms);
        let member = member.map(|ms| self.world.clocks.instant_for(self.node, ms));
        earliest(core, member)
    }

    /// Feeds what woke the node (an event of this driver's connections, or
    /// a timer) to the consumer and its member, and carries out their outputs.
    pub fn handle_wake(&mut self, wake: Wake<ClientNetEvent>) {
        let now = self.now_ms();
        match wake {
            Wake::Net(ClientNetEvent::Response { peer: Peer::Broker(broker), correlation_id, response }) => {
                match &mut self.member {
                    Some(member) if Member::owns(correlation_id) => {
                        let counts = partition_counts(&self.world, &self.consumer);
                        member.handle_response(now, broker, correlation_id, response, &counts)
                    }
                    _ => self.consumer.handle_response(now, broker, correlation_id, response),
                }
            }
            Wake::Net(ClientNetEvent::Disconnected { peer: Peer::Broker(broker) }) => {
                self.consumer.handle_disconnect(now, broker);
                if let Some(member) = &mut self.member {
                    member.handle_disconnect(now, broker);
                }
            }
            // A consumer talks to brokers only.
            Wake::Net(_) => {}
            Wake::Timer => {
                self.consumer.handle_timeout(now);
                if let Some(member) = &mut self.member {
                    if member.next_timeout_ms().is_some_and(|due| due <= now) {
                        member.handle_timeout(now);
                    }
                }
            }
        }
        self.flush();
    }

    pub fn flush(&mut self) {
        if let Some(member) = &mut self.member {
            while let Some((broker, correlation_id, request)) = member.poll_output() {
                self.net.send(broker, correlation_id, request);
            }
            while let Some(event) = member.poll_event() {
                self.member_events.push_back(event);
            }
        }
        while let Some(output) = self.consumer.poll_output() {
            match output {
                ConsumerOutput::Send { broker, correlation_id, request } => {
                    self.net.send(broker, correlation_id, request)
                }
                ConsumerOutput::CloseConnection { broker } => self.net.close(broker),
                ConsumerOutput::Error { tp, error } => {
                    tracing::debug!(node = self.node, %tp, %error, "consumer error");
                }
                // A reset or a detected truncation is an explicit move of the
                // position in the history (a seek, with its cause), so the
                // checkers see the jump for what it is.
                ConsumerOutput::PositionReset { tp, from, to } => {
                    tracing::debug!(node = self.node, %tp, %from, %to, "position out of range: reset");
                    self.record_move(tp, to, SeekCause::OutOfRange { from: from.0 });
                }
                ConsumerOutput::TruncationDetected { tp, from, to } => {
                    tracing::debug!(node = self.node, %tp, %from, %to, "log truncated under the position: moved");
                    self.record_move(tp, to, SeekCause::Truncation { from: from.0 });
                }
                // auto_offset_reset = none: nothing moves; the partition waits
                // for a seek that no workload consumer makes.
                ConsumerOutput::LogTruncation { tp, position, divergent } => {
                    tracing::debug!(node = self.node, %tp, %position, ?divergent, "log truncated under the position");
                }
            }
        }
    }

    /// Records a move of `tp`'s position to `to` (a seek op, with its cause).
    pub fn record_move(&mut self, tp: TopicPartition, to: Offset, cause: SeekCause) {
        let call = Call::Seek(Box::new(crate::history::Seek {
            partition: partition_name(&self.world, tp),
            offset: to.0,
            cause,
        }));
        let op = self.world.invoke(self.process, call);
        self.world.complete(op, Outcome::Ok);
        self.moved = true;
    }
}

/// What the group leader's assignor sees: the partition count of every topic
/// the consumer's metadata knows.
fn partition_counts(world: &World, consumer: &Consumer) -> PartitionCounts {
    let metadata = consumer.metadata();
    world
        .topic_names
        .iter()
        .filter_map(|name| Some((metadata.topic_id(name)?, metadata.partition_count(name)?)))
        .collect()
}

fn polled(world: &World, r: ConsumedRecord) -> Polled {
    Polled {
        partition: partition_name(world, r.tp),
        offset: r.record.offset.0,
        // Every record in ksim's topics is a workload value; anything else is corruption.
        value: Value::from_bytes(&r.record.value).unwrap_or(Value::CORRUPT),
    }
}

pub async fn run(world: Arc<World>, c: u32) {
    let (spec, index) = world
        .scenario
        .consumers()
        .into_iter()
        .nth(c as usize)
        .map(|(_, spec, index)| (spec.clone(), index))
        .expect("consumer is in the scenario");
    let node = world.consumer_node(c);
    let process = world.consumer_process(c);
    let mut driver = ConsumerDriver::start(world.clone(), node, process, consumer_config(&spec)).await;
    if let Some(group) = &spec.group {
        return super::group_consumer::run(driver, &spec, group).await;
    }
    driver.assign(spec.partitions_for(index, &world.scenario.topics));
    let poll_timeout = Duration::from_millis(spec.poll_timeout_ms);
    while world.phase() == Phase::Chaos {
        driver.poll_op(Instant::now() + poll_timeout, |w| w.phase() != Phase::Chaos).await;
    }
}
