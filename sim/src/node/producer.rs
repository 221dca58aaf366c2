//! A producer process: sends unique values at the scenario's rate (Poisson
//! arrivals from its own workload stream) and records every send in the
//! history, from invocation to its ok / fail / info outcome.

use super::{earliest, next_wake, partition_name, Wake};
use crate::history::{Call, Outcome, TopicName, Value};
use crate::net::{ClientNet, ClientNetEvent};
use crate::rng::{core_seed, stream, Purpose};
use crate::scenario::{KeyMode, PartitionerSpec, ProducerSpec};
use crate::timer::Timer;
use crate::trace::TraceEvent;
use crate::world::{Phase, World};
use broker_core::client::partitioner::PartitionerKind;
use broker_core::client::producer::{Producer, ProducerConfig, ProducerOutput, ProducerRecord, RecordId, SendOutcome};
use broker_core::protocol::Peer;
use bytes::Bytes;
use madsim::time::{Duration, Instant};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn producer_config(spec: &ProducerSpec) -> ProducerConfig {
    ProducerConfig {
        acks: spec.acks,
        linger_ms: spec.linger_ms,
        batch_size_bytes: spec.batch_size_bytes as usize,
        max_in_flight_per_broker: spec.max_in_flight as usize,
        request_timeout_ms: spec.request_timeout_ms,
        retries: spec.retries,
        retry_backoff_ms: spec.retry_backoff_ms,
        delivery_timeout_ms: spec.delivery_timeout_ms,
        partitioner: match spec.partitioner {
            PartitionerSpec::Sticky => PartitionerKind::Sticky,
            PartitionerSpec::RoundRobin => PartitionerKind::RoundRobin,
        },
        ..ProducerConfig::default()
    }
}

/// The spec producer `p` (numbered across all producer specs) follows.
pub fn spec_of(world: &World, p: u32) -> &ProducerSpec {
    world.scenario.producers().into_iter().nth(p as usize).map(|(_, spec)| spec).expect("producer is in the scenario")
}

/// Whether this producer's configuration promises per-partition send order.
pub fn promises_order(spec: &ProducerSpec) -> bool {
    spec.max_in_flight == 1 || spec.retries == 0
}

struct Workload {
    /// The topic's shared name (one per producer, not one per record).
    topic: TopicName,
    rng: ChaCha8Rng,
    rate_per_s: f64,
    next_send: Instant,
    counter: u32,
}

impl Workload {
    /// Poisson arrivals: exponential gaps with the configured mean.
    fn schedule_next(&mut self) {
        let u: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
        let gap_s = -u.ln() / self.rate_per_s;
        self.next_send += Duration::from_nanos((gap_s * 1e9) as u64);
    }
}

pub async fn run(world: Arc<World>, p: u32) {
    let node = world.producer_node(p);
    let process = world.producer_process(p);
    world.trace(node, TraceEvent::Boot);
    let spec = spec_of(&world, p).clone();
    let mut net = ClientNet::bind(world.clone(), node).await;
    let mut producer = Producer::new(producer_config(&spec), world.all_brokers(), core_seed(world.seed, node as u64));
    let mut workload = Workload {
        topic: world.topic_name(&spec.topic),
        rng: stream(world.seed, Purpose::Workload, process as u64),
        rate_per_s: f64::from(spec.rate_per_s),
        next_send: Instant::now(),
        counter: 0,
    };
    workload.schedule_next();
    let mut ops: BTreeMap<RecordId, u64> = BTreeMap::new();
    let mut timer = Timer::default();
    loop {
        let chaos = world.phase() == Phase::Chaos;
        if !chaos && producer.queued_records() == 0 {
            break;
        }
        let core_deadline = producer.next_timeout_ms().map(|ms| world.clocks.instant_for(node, ms));
        let send_deadline = chaos.then_some(workload.next_send);
        timer.set(earliest(core_deadline, send_deadline));
        let wake = next_wake(|cx| net.poll_event(cx), &mut timer).await;
        let now_ms = world.clocks.node_now_ms(node);
        match wake {
            Wake::Net(ClientNetEvent::Response { peer: Peer::Broker(broker), correlation_id, response }) => {
                producer.handle_response(now_ms, broker, correlation_id, response)
            }
            Wake::Net(ClientNetEvent::Disconnected { peer: Peer::Broker(broker) }) => {
                producer.handle_disconnect(now_ms, broker)
            }
            // A producer talks to brokers only.
            Wake::Net(_) => {}
            Wake::Timer => {
                producer.handle_timeout(now_ms);
                while world.phase() == Phase::Chaos && Instant::now() >= workload.next_send {
                    send_one(&world, &spec, &mut workload, &mut producer, &mut ops, process, now_ms);
                    workload.schedule_next();
                }
            }
        }
        while let Some(output) = producer.poll_output() {
            match output {
                ProducerOutput::Send { broker, correlation_id, request } => net.send(broker, correlation_id, request),
                ProducerOutput::CloseConnection { broker } => net.close(broker),
                ProducerOutput::Completed { id, outcome } => {
                    let op = ops.remove(&id).expect("every completion has an invocation");
                    world.complete(op, outcome_of(&world, outcome));
                }
            }
        }
    }
    assert!(ops.is_empty(), "producer-{p} stopped with sends in flight");
    world.producer_finished();
}

fn send_one(
    world: &World,
    spec: &ProducerSpec,
    workload: &mut Workload,
    producer: &mut Producer,
    ops: &mut BTreeMap<RecordId, u64>,
    process: u32,
    now_ms: u64,
) {
    let value = Value::new(process, workload.counter);
    workload.counter += 1;
    let (partition, key) = match spec.keys {
        KeyMode::None => (None, None),
        KeyMode::Random { key_count } => {
            let k = workload.rng.gen_range(0..key_count.max(1));
            (None, Some(Bytes::from(format!("k{k}"))))
        }
        KeyMode::Partition(partition) => (Some(partition), None),
    };
    let op = world.invoke(process, Call::Send { topic: workload.topic.clone(), partition, value });
    let id = RecordId(value.0);
    ops.insert(id, op);
    let record = ProducerRecord {
        id,
        topic: workload.topic.clone(),
        partition,
        key,
        value: Bytes::copy_from_slice(&value.to_bytes()),
    };
    producer.send(now_ms, record);
}

fn outcome_of(world: &World, outcome: SendOutcome) -> Outcome {
    match outcome {
        SendOutcome::Ok { tp, offset } => Outcome::SendOk { partition: partition_name(world, tp), offset: offset.0 },
        SendOutcome::Fail { error } => Outcome::SendFail { error },
        SendOutcome::Info { reason, .. } => Outcome::SendInfo { reason },
    }
}
