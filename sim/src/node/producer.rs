//! A producer process: sends unique values at the scenario's rate (Poisson
//! arrivals from its own workload stream) and records every send in the
//! history, from invocation to its ok / fail / info outcome.
//!
//! A transactional producer (its `transactional.id` is its node's name)
//! sends its records in transactions of the scenario's size: it begins one
//! when its producer is ready, sends that many records at the same rate,
//! then commits — or, with the scenario's abort rate, aborts on purpose —
//! and records each transaction as a `txn` operation (and the request to
//! end it as an `end-txn` operation) beside its sends. A commit refused
//! because the transaction became abortable is followed by an abort, as a
//! Kafka application must. Fenced (a newer incarnation, or a transaction
//! timed out), it starts a new producer with the same transactional id —
//! unless the id is a shared `transactional_id`: then another instance
//! took it over, and this one stops. Each answered InitProducerId is
//! recorded as a `producer-init` fact. A producer with a `start_ms` (a
//! standby) starts that late.

use super::{earliest, next_wake, partition_name, Wake};
use crate::history::{Call, Outcome, TopicName, TxnIntent, Value};
use crate::net::{ClientNet, ClientNetEvent};
use crate::rng::{core_seed, stream, Purpose};
use crate::scenario::{KeyMode, PartitionerSpec, ProducerSpec};
use crate::timer::Timer;
use crate::trace::TraceEvent;
use crate::world::{Phase, World};
use broker_core::client::partitioner::PartitionerKind;
use broker_core::client::producer::{Producer, ProducerConfig, ProducerOutput, ProducerRecord, RecordId, SendOutcome};
use broker_core::client::TxnOutcome;
use broker_core::protocol::Peer;
use broker_core::txn::TransactionalId;
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
        idempotence: spec.idempotence,
        ..ProducerConfig::default()
    }
}

/// The config of producer node `node`: transactional ones take the shared
/// `transactional_id` or else their node's name as `transactional.id`.
fn node_config(world: &World, spec: &ProducerSpec, node: usize) -> ProducerConfig {
    let mut config = producer_config(spec);
    if let Some(t) = &spec.transactions {
        let id = t.transactional_id.clone().unwrap_or_else(|| world.node_name(node).to_string());
        config.transactional_id = Some(TransactionalId::new(&id));
        config.transaction_timeout_ms = t.timeout_ms;
    }
    config
}

/// Where a transactional producer's current transaction stands.
#[derive(Debug)]
enum TxnStep {
    /// None open; one begins when the producer is ready and a send is due.
    Idle,
    /// Open, with its `txn` operation, the records sent so far, and whether
    /// it is to be committed (drawn when it began).
    Sending { txn_op: u64, sent: u32, commit: bool },
    /// All its records are sent; it waits for their answers before it is
    /// aborted on purpose (an application aborts what it wrote, so the
    /// abort reaches the coordinator and the partitions).
    Flushing { txn_op: u64 },
    /// Ending: its `end-txn` operation waits for the answer.
    Ending { txn_op: u64, end_op: u64, commit: bool },
}

/// The spec producer `p` (numbered across all producer specs) follows.
pub fn spec_of(world: &World, p: u32) -> &ProducerSpec {
    world.scenario.producers().into_iter().nth(p as usize).map(|(_, spec)| spec).expect("producer is in the scenario")
}

/// Whether this producer's configuration promises per-partition send order.
pub fn promises_order(spec: &ProducerSpec) -> bool {
    spec.max_in_flight == 1 || spec.retries == 0 || spec.idempotence
}

struct Workload {
    /// The topic's shared name (one per producer, not one per record).
    topic: TopicName,
    /// The same, as the history names it.
    history_topic: crate::history::Topic,
    rng: ChaCha8Rng,
    rate_per_s: f64,
    next_send: Instant,
    /// A due send found no transaction to go into: it waits for one.
    waiting: bool,
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
    if spec.start_ms > 0 && world.phase() == Phase::Chaos {
        // A standby: it starts later (during the chaos phase, as validated;
        // booted again by the heal after a crash, it finds the workload over).
        madsim::time::sleep(Duration::from_millis(spec.start_ms)).await;
    }
    // Shared with other processes: fenced, this one was replaced and stops.
    let shared_id = spec.transactions.as_ref().is_some_and(|t| t.transactional_id.is_some());
    let mut net = ClientNet::bind(world.clone(), node).await;
    let config = node_config(&world, &spec, node);
    let mut incarnation = 0u64;
    let mut producer = Producer::new(config.clone(), world.all_brokers(), core_seed(world.seed, node as u64));
    let mut step = TxnStep::Idle;
    let mut workload = Workload {
        topic: world.topic_name(&spec.topic),
        history_topic: world.topic(&spec.topic),
        rng: stream(world.seed, Purpose::Workload, process as u64),
        rate_per_s: f64::from(spec.rate_per_s),
        next_send: Instant::now(),
        waiting: false,
        counter: 0,
    };
    workload.schedule_next();
    let mut ops: BTreeMap<RecordId, u64> = BTreeMap::new();
    let mut timer = Timer::default();
    loop {
        let chaos = world.phase() == Phase::Chaos;
        if !chaos && producer.queued_records() == 0 && matches!(step, TxnStep::Idle) {
            break;
        }
        if spec.transactions.is_some() {
            if let TxnStep::Flushing { txn_op } = step {
                if producer.queued_records() == 0 {
                    let now_ms = world.clocks.node_now_ms(node);
                    step = end_transaction(&world, &mut producer, txn_op, false, process, now_ms);
                }
            }
            if !chaos {
                end_early(&world, &mut producer, &mut step, process, world.clocks.node_now_ms(node));
            }
            if producer.transaction_fatal().is_some() {
                // Fenced: this incarnation is done; a new one takes the id.
                abandon(&world, &mut step, "the producer was fenced");
                abandon_sends(&world, &mut ops);
                if shared_id {
                    break;
                }
                incarnation += 1;
                producer = next_incarnation(&world, node, &config, incarnation);
            }
        }
        let core_deadline = producer.next_timeout_ms().map(|ms| world.clocks.instant_for(node, ms));
        // A transactional producer takes a send only into an open transaction,
        // or when it can begin one: otherwise the send waits, unarmed, for the
        // producer's answers (which wake this loop), and resumes from now.
        let can_send = spec.transactions.is_none()
            || matches!(step, TxnStep::Sending { .. })
            || (matches!(step, TxnStep::Idle) && producer.transaction_ready());
        if can_send && workload.waiting {
            workload.waiting = false;
            workload.next_send = workload.next_send.max(Instant::now());
        }
        let send_deadline = (chaos && can_send).then_some(workload.next_send);
        timer.set(earliest(core_deadline, send_deadline));
        // What the loop's top asked of the producer goes out before waiting.
        let wake = if producer.has_pending_output() {
            None
        } else {
            Some(next_wake(|cx| net.poll_event(cx), &mut timer).await)
        };
        let now_ms = world.clocks.node_now_ms(node);
        if let Some(wake) = wake {
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
                        if let Some(t) = &spec.transactions {
                            if !in_transaction(
                                &world,
                                &mut producer,
                                &mut step,
                                &mut workload,
                                t.abort_ppm,
                                process,
                                now_ms,
                            ) {
                                // Not ready for a transaction: the send waits for the producer.
                                workload.waiting = true;
                                break;
                            }
                        }
                        send_one(&world, &spec, &mut workload, &mut producer, &mut ops, process, now_ms);
                        workload.schedule_next();
                        if let (Some(t), TxnStep::Sending { txn_op, sent, commit }) = (&spec.transactions, &mut step) {
                            *sent += 1;
                            if *sent >= t.records {
                                let (txn_op, commit) = (*txn_op, *commit);
                                step = if commit {
                                    end_transaction(&world, &mut producer, txn_op, commit, process, now_ms)
                                } else {
                                    TxnStep::Flushing { txn_op }
                                };
                            }
                        }
                    }
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
                ProducerOutput::TxnReady { producer_id, epoch } => {
                    record_init(&world, process, &producer, producer_id, epoch)
                }
                ProducerOutput::TxnEnded { commit, outcome } => {
                    let now_ms = world.clocks.node_now_ms(node);
                    step = transaction_ended(&world, &mut producer, step, commit, outcome, now_ms);
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
    let op = world.invoke(process, Call::Send { topic: workload.history_topic.clone(), partition, value });
    let id = RecordId(value.0);
    ops.insert(id, op);
    let record = ProducerRecord { id, topic: workload.topic.clone(), partition, key, value: value.to_record_bytes() };
    producer.send(now_ms, record);
}

/// Makes sure a transaction is open for the next send, beginning one if the
/// producer is ready (and drawing whether it will commit). Returns whether one is open.
#[allow(clippy::too_many_arguments)]
fn in_transaction(
    world: &World,
    producer: &mut Producer,
    step: &mut TxnStep,
    workload: &mut Workload,
    abort_ppm: u32,
    process: u32,
    now_ms: u64,
) -> bool {
    match step {
        TxnStep::Sending { .. } => true,
        TxnStep::Flushing { .. } | TxnStep::Ending { .. } => false,
        TxnStep::Idle => {
            let Some((producer_id, epoch)) = producer.producer_id_and_epoch().filter(|_| producer.transaction_ready())
            else {
                return false;
            };
            producer.begin_transaction(now_ms);
            let commit = workload.rng.gen_range(0..1_000_000) >= abort_ppm;
            let intent = if commit { TxnIntent::Commit } else { TxnIntent::Abort };
            let transactional_id = TopicName::from(producer.transactional_id().expect("transactional"));
            let call = Call::Txn { transactional_id, producer_id: producer_id.0, epoch: epoch.0, intent };
            *step = TxnStep::Sending { txn_op: world.invoke(process, call), sent: 0, commit };
            true
        }
    }
}

/// Asks to end the open transaction; records the request as an `end-txn` operation.
fn end_transaction(
    world: &World,
    producer: &mut Producer,
    txn_op: u64,
    commit: bool,
    process: u32,
    now_ms: u64,
) -> TxnStep {
    let transactional_id = TopicName::from(producer.transactional_id().expect("transactional"));
    let end_op = world.invoke(process, Call::EndTxn { transactional_id, commit });
    producer.end_transaction(now_ms, commit);
    TxnStep::Ending { txn_op, end_op, commit }
}

/// The producer reported the end of the transaction it was asked to end.
fn transaction_ended(
    world: &World,
    producer: &mut Producer,
    step: TxnStep,
    commit: bool,
    outcome: TxnOutcome,
    now_ms: u64,
) -> TxnStep {
    let TxnStep::Ending { txn_op, end_op, commit: asked } = step else {
        panic!("a transaction ended that was not ending: {step:?}")
    };
    assert_eq!(asked, commit);
    let outcome = match outcome {
        TxnOutcome::Committed => Outcome::TxnCommitted,
        TxnOutcome::Aborted { reason } => Outcome::TxnAborted { reason },
        TxnOutcome::Unknown { reason } => Outcome::TxnInfo { reason },
        TxnOutcome::CommitRefused { .. } => {
            // Kafka's application must abort; the same request goes on.
            producer.end_transaction(now_ms, false);
            return TxnStep::Ending { txn_op, end_op, commit: false };
        }
    };
    world.complete(end_op, outcome.clone());
    world.complete(txn_op, outcome);
    TxnStep::Idle
}

/// The chaos phase is over: an open transaction is ended (committed) with
/// the records it has; one not yet begun is not begun.
fn end_early(world: &World, producer: &mut Producer, step: &mut TxnStep, process: u32, now_ms: u64) {
    match *step {
        TxnStep::Sending { txn_op, commit, .. } => {
            *step = end_transaction(world, producer, txn_op, commit, process, now_ms)
        }
        TxnStep::Flushing { txn_op } => *step = end_transaction(world, producer, txn_op, false, process, now_ms),
        TxnStep::Idle | TxnStep::Ending { .. } => {}
    }
}

/// The producer was fenced: its open operations end with an unknown outcome.
fn abandon(world: &World, step: &mut TxnStep, why: &str) {
    let outcome = Outcome::TxnInfo { reason: why.to_string() };
    match std::mem::replace(step, TxnStep::Idle) {
        TxnStep::Idle => {}
        TxnStep::Sending { txn_op, .. } | TxnStep::Flushing { txn_op } => world.complete(txn_op, outcome),
        TxnStep::Ending { txn_op, end_op, .. } => {
            world.complete(end_op, outcome.clone());
            world.complete(txn_op, outcome);
        }
    }
}

/// A fenced producer's sends still unanswered end unknown: they may have landed.
pub(super) fn abandon_sends(world: &World, ops: &mut BTreeMap<RecordId, u64>) {
    for (_, op) in std::mem::take(ops) {
        let reason = "its producer was fenced and replaced before an answer".to_string();
        world.complete(op, Outcome::SendInfo { reason });
    }
}

/// The producer that takes over a fenced one's transactional id on node
/// `node`: its `incarnation`-th, with a seed of its own.
pub(super) fn next_incarnation(world: &World, node: usize, config: &ProducerConfig, incarnation: u64) -> Producer {
    let seed = core_seed(world.seed, node as u64) ^ incarnation.rotate_left(32);
    Producer::new(config.clone(), world.all_brokers(), seed)
}

/// Records an answered InitProducerId as a `producer-init` fact.
pub(super) fn record_init(
    world: &World,
    process: u32,
    producer: &Producer,
    producer_id: broker_core::types::ProducerId,
    epoch: broker_core::types::ProducerEpoch,
) {
    let transactional_id = TopicName::from(producer.transactional_id().expect("transactional"));
    let call = Call::ProducerInit { transactional_id, producer_id: producer_id.0, epoch: epoch.0 };
    let op = world.invoke(process, call);
    world.complete(op, Outcome::Ok);
}

pub(super) fn outcome_of(world: &World, outcome: SendOutcome) -> Outcome {
    match outcome {
        SendOutcome::Ok { tp, offset } => Outcome::SendOk { partition: partition_name(world, tp), offset: offset.0 },
        SendOutcome::Fail { error } => Outcome::SendFail { error },
        SendOutcome::Info { reason, .. } => Outcome::SendInfo { reason },
    }
}
