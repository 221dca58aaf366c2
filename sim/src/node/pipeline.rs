//! A consume-transform-produce application (a pipeline member): a group
//! member that reads its input read_committed and, for each polled batch,
//! opens a transaction, sends one output value per input record to the
//! output topic (after `processing_ms` of transforming, with the
//! transaction open), commits its consumer positions in the transaction
//! (sendOffsetsToTransaction, as the group member it is: KIP-447), and
//! commits — or, at the scenario's abort rate, aborts on purpose.
//!
//! Kafka does not rewind a consumer after an aborted transaction: the
//! application must. After an abort (or an unknown outcome, or being
//! fenced) the member seeks every partition it consumed in the transaction
//! back to the group's committed offset, fetched stable (no transaction
//! holding one undecided), or — when none was ever committed — to the first
//! offset the transaction consumed there. A fenced producer (a newer
//! incarnation of its transactional id, or a timed-out transaction) is
//! replaced by a new one with the same id, as the producer node does.
//!
//! Every step is in the history: the poll, the `txn`, its sends, a
//! `txn-offsets` pairing each input value with its output value, the
//! `end-txn`, and the seeks of a rewind. After the chaos phase the member
//! reports when it has caught up (producers done, its last polls empty);
//! the supervisor stops every pipeline once all have, or at its bound, so
//! that the drain reads a final output and final committed offsets.

use super::consumer::ConsumerDriver;
use super::group_consumer::GroupConsumer;
use super::{earliest, next_wake, partition_name, Wake};
use crate::history::{Call, Outcome, Polled, SeekCause, TopicName, TxnIntent, Value};
use crate::net::{ClientNet, ClientNetEvent};
use crate::rng::{core_seed, stream, Purpose};
use crate::scenario::{ConsumerSpec, PipelineSpec};
use crate::timer::Timer;
use crate::world::{Phase, World};
use broker_core::client::producer::{Producer, ProducerConfig, ProducerOutput, ProducerRecord, RecordId};
use broker_core::client::TxnOutcome;
use broker_core::group::api::CommittedOffset;
use broker_core::group::GroupId;
use broker_core::protocol::Peer;
use broker_core::txn::TransactionalId;
use broker_core::types::{LeaderEpoch, Offset, TopicPartition};
use madsim::time::{Duration, Instant};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Empty polls in a row, after the chaos phase with every producer done,
/// after which a member reports itself caught up.
const IDLE_POLLS: u32 = 3;

/// Output values one incarnation of a member may send (the counter's low
/// bits; the boot number takes the high ones, so a restarted member never
/// sends a value an earlier incarnation sent).
const VALUES_PER_BOOT: u32 = 1 << 22;

/// The member's transactional producer, its connections, and its history bookkeeping.
struct Transformer {
    world: Arc<World>,
    node: usize,
    process: u32,
    config: ProducerConfig,
    net: ClientNet,
    producer: Producer,
    incarnation: u64,
    timer: Timer,
    /// Open sends: the history op of each record.
    ops: BTreeMap<RecordId, u64>,
    /// The end of the transaction being ended, once the producer reports it.
    ended: Option<(bool, TxnOutcome)>,
    output: TopicName,
    /// The same, as the history names it.
    history_output: crate::history::Topic,
    rng: ChaCha8Rng,
    abort_ppm: u32,
    counter_base: u32,
    counter: u32,
}

/// What woke the member: its consumer's connections, its producer's, or its timer.
enum Woke {
    Consumer(ClientNetEvent),
    Producer(ClientNetEvent),
}

pub(super) async fn run(mut g: GroupConsumer<'_>, spec: &ConsumerSpec, pipeline: &PipelineSpec) {
    let world = g.driver.world.clone();
    let (node, process) = (g.driver.node, g.driver.process);
    let boot = world.next_boot(node);
    let config = ProducerConfig {
        request_timeout_ms: spec.request_timeout_ms,
        delivery_timeout_ms: pipeline.transaction_timeout_ms.max(spec.request_timeout_ms + 1_000),
        idempotence: true,
        transactional_id: Some(TransactionalId::new(world.node_name(node))),
        transaction_timeout_ms: pipeline.transaction_timeout_ms,
        ..ProducerConfig::default()
    };
    let mut t = Transformer {
        net: ClientNet::bind(world.clone(), node).await,
        producer: Producer::new(config.clone(), world.all_brokers(), core_seed(world.seed, node as u64) ^ boot),
        config,
        incarnation: 0,
        timer: Timer::default(),
        ops: BTreeMap::new(),
        ended: None,
        output: world.topic_name(&pipeline.output),
        history_output: world.topic(&pipeline.output),
        rng: stream(world.seed, Purpose::Workload, u64::from(process) ^ (boot << 32)),
        abort_ppm: pipeline.abort_ppm,
        counter_base: u32::try_from(boot).ok().and_then(|b| b.checked_mul(VALUES_PER_BOOT)).unwrap_or(u32::MAX),
        counter: 0,
        world,
        node,
        process,
    };
    let poll_timeout = Duration::from_millis(spec.poll_timeout_ms);
    let mut empty_polls = 0u32;
    // When the member first saw the chaos over and every producer done (on
    // its consumer's clock): only fetches answered since know every input.
    let mut settled_at_ms: Option<u64> = None;
    let mut owned = g.owned.clone();
    // Like every group member, it goes on to the end of the run (its group
    // must settle); once the pipelines are stopped it only stays a member.
    loop {
        g.app_turn().await;
        t.replace_if_fenced();
        let stopped = t.world.pipelines_stopped();
        if stopped || !t.producer.transaction_ready() {
            t.wait(&mut g.driver, Some(Instant::now() + poll_timeout)).await;
            continue;
        }
        if g.owned != owned {
            // A new assignment: caught up only once it has been read too.
            owned = g.owned.clone();
            empty_polls = 0;
        }
        let (poll, records) = g.driver.poll_op(Instant::now() + poll_timeout, |_| false).await;
        if records.is_empty() {
            empty_polls = empty_polls.saturating_add(1);
            if settled_at_ms.is_none() && t.world.phase() != Phase::Chaos && t.world.all_producers_finished() {
                settled_at_ms = Some(g.driver.now_ms());
            }
            // A fetch answered before the producers' last writes (or while
            // their transactions' markers were still on the way) knows
            // nothing of them: caught up only on a fetch answered since.
            let read_all = settled_at_ms.is_some_and(|since| {
                g.owned.iter().all(|tp| {
                    let p = partition_name(&t.world, *tp);
                    g.driver.consumer.caught_up(&p.topic, p.partition, since)
                })
            });
            t.world.pipeline_idle(process, read_all && empty_polls >= IDLE_POLLS);
            continue;
        }
        empty_polls = 0;
        t.world.pipeline_idle(process, false);
        if t.world.pipelines_stopped() {
            continue; // stopped during the poll: nothing more is transformed
        }
        let consumed = consumed_from(&g, &records);
        // The group membership the records were consumed under (Kafka's
        // `consumer.groupMetadata()` at poll time): the offsets are committed
        // as that member, so a member fenced while it transforms is refused.
        let member = g.member();
        let consumed_as = (member.generation(), member.member_id().cloned());
        if consumed_as.0 .0 < 0 {
            // Outside any generation: nothing may be committed for them.
            t.rewind(&mut g, consumed).await;
            continue;
        }
        if !t.transact(&mut g, poll, records, consumed_as).await {
            t.rewind(&mut g, consumed).await;
        }
        // The checkers give a transaction what its process invokes up to the
        // instant it completes: the next poll starts a moment later, so it
        // is not taken for a read of the transaction that just ended.
        madsim::time::sleep(Duration::from_micros(1)).await;
    }
}

/// Per partition, the first offset `records` hold there.
fn consumed_from(g: &GroupConsumer<'_>, records: &[Polled]) -> BTreeMap<TopicPartition, Offset> {
    let mut first = BTreeMap::new();
    for r in records {
        let Some(tp) = g.driver.consumer.topic_partition(&r.partition.topic, r.partition.partition) else { continue };
        let offset = first.entry(tp).or_insert(Offset(r.offset));
        *offset = (*offset).min(Offset(r.offset));
    }
    first
}

impl Transformer {
    /// A fenced producer can do nothing more: a new one takes its
    /// transactional id (and fences it for good).
    fn replace_if_fenced(&mut self) {
        if self.producer.transaction_fatal().is_none() {
            return;
        }
        super::producer::abandon_sends(&self.world, &mut self.ops);
        self.incarnation += 1;
        self.producer = super::producer::next_incarnation(&self.world, self.node, &self.config, self.incarnation);
    }

    /// One transaction over `records`, which poll op `poll` returned.
    /// Returns whether it committed.
    async fn transact(
        &mut self,
        g: &mut GroupConsumer<'_>,
        poll: u64,
        records: Vec<Polled>,
        (generation, member_id): (broker_core::group::GenerationId, Option<broker_core::group::MemberId>),
    ) -> bool {
        let now = self.world.clocks.node_now_ms(self.node);
        let (producer_id, epoch) = self.producer.producer_id_and_epoch().expect("ready: it has a producer id");
        self.producer.begin_transaction(now);
        let commit = self.rng.gen_range(0..1_000_000) >= self.abort_ppm;
        let transactional_id = TopicName::from(self.producer.transactional_id().expect("transactional"));
        let intent = if commit { TxnIntent::Commit } else { TxnIntent::Abort };
        let call = Call::Txn {
            transactional_id: transactional_id.clone(),
            producer_id: producer_id.0,
            epoch: epoch.0,
            intent,
        };
        let txn_op = self.world.invoke(self.process, call);
        // Transforming takes the group's `processing_ms`, with the
        // transaction open (the member keeps heartbeating meanwhile).
        if g.group.processing_ms > 0 {
            let done = Instant::now() + Duration::from_millis(g.group.processing_ms);
            while Instant::now() < done {
                self.wait(&mut g.driver, Some(done)).await;
            }
        }
        let now = self.world.clocks.node_now_ms(self.node);
        let mut transformed = Vec::with_capacity(records.len());
        for r in &records {
            let output = self.next_value();
            let op = self.world.invoke(
                self.process,
                Call::Send { topic: self.history_output.clone(), partition: None, value: output },
            );
            let id = RecordId(output.0);
            self.ops.insert(id, op);
            let record = ProducerRecord {
                id,
                topic: self.output.clone(),
                partition: None,
                key: None,
                value: output.to_record_bytes(),
            };
            self.producer.send(now, record);
            transformed.push((r.value, output));
        }
        // The next offsets to consume: the consumer's positions, which also
        // step over what read_committed skipped.
        let mut offsets: Vec<(TopicPartition, Offset)> = Vec::new();
        for tp in consumed_from(g, &records).into_keys() {
            let p = partition_name(&self.world, tp);
            if let Some(position) = g.driver.consumer.position(&p.topic, p.partition) {
                offsets.push((tp, position));
            }
        }
        let instance = None;
        let call = Call::TxnOffsets(Box::new(crate::history::TxnOffsets {
            group: g.name.clone(),
            generation: generation.0,
            member: member_id.as_ref().map(|m| m.0.as_ref().into()),
            offsets: offsets.iter().map(|(tp, o)| (partition_name(&self.world, *tp), o.0)).collect(),
            transformed,
            polled: Some(poll),
        }));
        let op = self.world.invoke(self.process, call);
        self.world.complete(op, Outcome::Ok);
        if self.producer.transaction_fatal().is_none() {
            let committed = offsets
                .into_iter()
                .map(|(tp, offset)| (tp, CommittedOffset { offset, leader_epoch: LeaderEpoch::NONE }));
            let group = GroupId::new(&g.group.id);
            self.producer.send_offsets_to_transaction(now, group, generation, member_id, instance, committed.collect());
        }
        let end_op = self.world.invoke(self.process, Call::EndTxn { transactional_id, commit });
        if self.producer.transaction_fatal().is_none() {
            self.producer.end_transaction(now, commit);
        }
        let outcome = loop {
            self.flush();
            if let Some((_, outcome)) = self.ended.take() {
                match outcome {
                    TxnOutcome::Committed => break Outcome::TxnCommitted,
                    TxnOutcome::Aborted { reason } => break Outcome::TxnAborted { reason },
                    TxnOutcome::Unknown { reason } => break Outcome::TxnInfo { reason },
                    TxnOutcome::CommitRefused { .. } => {
                        // The transaction is abortable (a send failed, or the
                        // member was fenced): the application must abort it.
                        let now = self.world.clocks.node_now_ms(self.node);
                        self.producer.end_transaction(now, false);
                        continue;
                    }
                }
            }
            if let Some(why) = self.producer.transaction_fatal() {
                break Outcome::TxnInfo { reason: format!("the producer was fenced: {why}") };
            }
            self.wait(&mut g.driver, None).await;
        };
        let committed = outcome == Outcome::TxnCommitted;
        self.world.complete(end_op, outcome.clone());
        self.world.complete(txn_op, outcome);
        committed
    }

    /// A new output value, unique in the run.
    fn next_value(&mut self) -> Value {
        assert!(self.counter < VALUES_PER_BOOT, "a pipeline member sent {VALUES_PER_BOOT} values in one boot");
        let value = Value::new(self.process, self.counter_base.saturating_add(self.counter));
        self.counter += 1;
        value
    }

    /// After a transaction that did not commit: each partition it consumed
    /// that the member still owns goes back to the group's committed offset
    /// (stable), or to where the transaction began reading it if none is
    /// committed.
    async fn rewind(&mut self, g: &mut GroupConsumer<'_>, consumed: BTreeMap<TopicPartition, Offset>) {
        self.replace_if_fenced();
        let owned: Vec<TopicPartition> = consumed.keys().filter(|tp| g.owned.contains(tp)).copied().collect();
        if owned.is_empty() {
            return;
        }
        let committed = g.fetch_stable(&owned).await;
        for (tp, offset) in committed {
            if !g.owned.contains(&tp) {
                continue;
            }
            let (to, cause) = match offset.filter(|c| c.offset.0 >= 0) {
                Some(c) => (c.offset, SeekCause::Committed),
                None => (consumed[&tp], SeekCause::Explicit),
            };
            let p = partition_name(&self.world, tp);
            g.driver.consumer.seek(&p.topic, p.partition, to);
            g.driver.record_move(tp, to, cause);
        }
    }

    /// Waits for one event of the consumer's or the producer's connections,
    /// or a timer, and feeds it to its machine.
    async fn wait(&mut self, driver: &mut ConsumerDriver, until: Option<Instant>) {
        self.flush();
        let producer = self.producer.next_timeout_ms().map(|ms| self.world.clocks.instant_for(self.node, ms));
        self.timer.set(earliest(earliest(driver.next_deadline(), producer), until));
        let (consumer_net, producer_net) = (&mut driver.net, &mut self.net);
        let woke = next_wake(
            |cx| {
                if let std::task::Poll::Ready(e) = consumer_net.poll_event(cx) {
                    return std::task::Poll::Ready(Woke::Consumer(e));
                }
                producer_net.poll_event(cx).map(Woke::Producer)
            },
            &mut self.timer,
        )
        .await;
        let now = self.world.clocks.node_now_ms(self.node);
        match woke {
            Wake::Net(Woke::Consumer(event)) => driver.handle_wake(Wake::Net(event)),
            Wake::Net(Woke::Producer(ClientNetEvent::Response {
                peer: Peer::Broker(broker),
                correlation_id,
                response,
            })) => self.producer.handle_response(now, broker, correlation_id, response),
            Wake::Net(Woke::Producer(ClientNetEvent::Disconnected { peer: Peer::Broker(broker) })) => {
                self.producer.handle_disconnect(now, broker)
            }
            // A producer talks to brokers only.
            Wake::Net(Woke::Producer(_)) => {}
            Wake::Timer => {
                driver.handle_wake(Wake::Timer);
                self.producer.handle_timeout(now);
            }
        }
        self.flush();
    }

    /// Carries out the producer's outputs.
    fn flush(&mut self) {
        while let Some(output) = self.producer.poll_output() {
            match output {
                ProducerOutput::Send { broker, correlation_id, request } => {
                    self.net.send(broker, correlation_id, request)
                }
                ProducerOutput::CloseConnection { broker } => self.net.close(broker),
                ProducerOutput::Completed { id, outcome } => {
                    let op = self.ops.remove(&id).expect("every completion has an invocation");
                    self.world.complete(op, super::producer::outcome_of(&self.world, outcome));
                }
                ProducerOutput::TxnReady { producer_id, epoch } => {
                    super::producer::record_init(&self.world, self.process, &self.producer, producer_id, epoch)
                }
                ProducerOutput::TxnEnded { commit, outcome } => self.ended = Some((commit, outcome)),
            }
        }
    }
}
