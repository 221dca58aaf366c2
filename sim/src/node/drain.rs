//! The drain: after every fault is healed and producers are done, one fresh
//! reader learns each partition's end offset and reads every partition from
//! the start up to it. Its polls go into the history like any other, so that
//! absence can be judged; how far it got is reported for the liveness check.

use super::consumer::ConsumerDriver;
use super::partition_name;
use super::{next_wake, Wake};
use crate::history::Partition;
use crate::history::{Call, Outcome};
use crate::net::ClientNetEvent;
use crate::timer::Timer;
use crate::world::World;
use broker_core::client::consumer::{AutoOffsetReset, ConsumerConfig};
use broker_core::group::api::{GroupRequest, GroupResponse, OffsetFetch};
use broker_core::group::GroupId;
use broker_core::protocol::{
    Isolation, ListOffsetsPartition, ListOffsetsPartitionResponse, OffsetSpec, Request, Response,
};
use broker_core::types::{BrokerId, LeaderEpoch, Offset, TopicPartition};
use madsim::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How long the drain waits for one ListOffsets answer before asking again.
const LIST_OFFSETS_RETRY: Duration = Duration::from_secs(1);
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// The drain's max.partition.fetch.bytes. It reads every partition from the
/// start at once, so Kafka's 1 MiB would buffer a megabyte of decoded records
/// per partition (the run's memory peak); smaller fetches only take more
/// round trips of simulated time, which the drain has plenty of.
const DRAIN_PARTITION_FETCH_BYTES: u32 = 64 * 1024;

/// Where the drain stands: per partition, (position reached, end offset if known).
pub type DrainProgress = BTreeMap<Partition, (i64, Option<i64>)>;

pub async fn run(world: Arc<World>) {
    let node = world.drain_node();
    // With transactions the drain reads committed: what it must find is what
    // committed, and an aborted or unresolved transaction's records are not.
    let isolation = if world.has_transactions() { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let config = ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        isolation,
        max_partition_fetch_bytes: DRAIN_PARTITION_FETCH_BYTES,
        ..ConsumerConfig::default()
    };
    let mut driver = ConsumerDriver::start(world.clone(), node, world.drain_process(), config).await;
    let partitions: Vec<TopicPartition> = world.workload_partitions().collect();
    for tp in &partitions {
        world.drain_progress.lock().expect("drain lock").insert(partition_name(&world, *tp), (0, None));
    }
    let ends = end_offsets(&mut driver, &partitions).await;
    for (tp, end) in &ends {
        world.drain_progress.lock().expect("drain lock").insert(partition_name(&world, *tp), (0, Some(end.0)));
    }
    let names: Vec<(String, u32)> = partitions
        .iter()
        .map(|tp| {
            let p = partition_name(&world, *tp);
            (p.topic.to_string(), p.partition)
        })
        .collect();
    driver.assign(names.clone());
    loop {
        let mut done = true;
        for (tp, (topic, p)) in partitions.iter().zip(&names) {
            let position = driver.consumer.position(topic, *p).map_or(0, |o| o.0);
            let end = ends[tp].0;
            world.drain_progress.lock().expect("drain lock").insert(partition_name(&world, *tp), (position, Some(end)));
            done &= position >= end;
        }
        if done {
            break;
        }
        driver.poll_op(Instant::now() + DRAIN_POLL, |_| false).await;
    }
    group_offsets(&mut driver).await;
    world.drain_finished();
}

/// Records each pipeline group's final committed offsets (a `group-offsets`
/// op), asked of its coordinator with `require_stable` until answered
/// without error: the pipelines were stopped before the drain, so every
/// transaction holding an offset gets decided.
async fn group_offsets(driver: &mut ConsumerDriver) {
    let world = driver.world.clone();
    let groups: BTreeSet<String> = world
        .scenario
        .consumers()
        .into_iter()
        .filter(|(_, spec, _)| spec.pipeline.is_some())
        .filter_map(|(_, spec, _)| spec.group.as_ref().map(|g| g.id.clone()))
        .collect();
    let brokers = world.all_brokers();
    let mut correlation = 1u64 << 44; // apart from the consumer's and end_offsets' ids
    let mut timer = Timer::default();
    for group in groups {
        let id = GroupId::new(&group);
        let mut attempt = 0usize;
        let offsets = loop {
            attempt += 1;
            correlation += 1;
            let broker = brokers[attempt % brokers.len()];
            driver.net.send(broker, correlation, Request::FindCoordinator { group: id.clone() });
            let coordinator = match answer(driver, &mut timer, correlation).await {
                Some(Response::FindCoordinator { error: None, coordinator: Some(c) }) => c,
                _ => {
                    pause(driver, &mut timer).await;
                    continue;
                }
            };
            correlation += 1;
            let fetch = OffsetFetch { group: id.clone(), partitions: None, require_stable: true };
            driver.net.send(coordinator, correlation, Request::Group(GroupRequest::OffsetFetch(fetch)));
            match answer(driver, &mut timer, correlation).await {
                Some(Response::Group(GroupResponse::OffsetFetch { error: None, offsets })) => break offsets,
                _ => pause(driver, &mut timer).await,
            }
        };
        let offsets = offsets
            .into_iter()
            .filter_map(|(tp, c)| Some((partition_name(&world, tp), c?.offset.0)))
            .filter(|(_, o)| *o >= 0)
            .collect();
        let op = world.invoke(
            driver.process,
            Call::GroupOffsets(Box::new(crate::history::GroupOffsets { group: group.as_str().into(), offsets })),
        );
        world.complete(op, Outcome::Ok);
    }
}

/// The answer to request `correlation`, or `None` if it does not come
/// within a second (or its connection broke).
async fn answer(driver: &mut ConsumerDriver, timer: &mut Timer, correlation: u64) -> Option<Response> {
    timer.set(Some(Instant::now() + LIST_OFFSETS_RETRY));
    loop {
        match next_wake(|cx| driver.net.poll_event(cx), timer).await {
            Wake::Net(ClientNetEvent::Response { correlation_id, response, .. }) if correlation_id == correlation => {
                return Some(response)
            }
            Wake::Net(ClientNetEvent::Disconnected { .. }) | Wake::Timer => return None,
            Wake::Net(_) => {}
        }
    }
}

/// Waits a moment before asking again.
async fn pause(driver: &mut ConsumerDriver, timer: &mut Timer) {
    timer.set(Some(Instant::now() + DRAIN_POLL));
    wait_out(driver, timer).await;
}

/// Waits until `timer` fires, dropping whatever arrives meanwhile.
async fn wait_out(driver: &mut ConsumerDriver, timer: &mut Timer) {
    while !matches!(next_wake(|cx| driver.net.poll_event(cx), timer).await, Wake::Timer) {}
}

/// Asks each partition's replicas for its end offset (the high watermark:
/// what is committed) until a round in which every replica answered gives
/// the partition's end. Every replica is asked because leaders move, and a
/// deposed leader that has not heard the news yet still answers: of the
/// answers, the one with the highest leader epoch speaks for the partition,
/// and only if it is not an error (a new leader answers OFFSET_NOT_AVAILABLE
/// until its high watermark has caught up). Since it asks every replica and
/// arbitrates by the answering leader's epoch, the drain names no leader epoch
/// of its own (`LeaderEpoch::NONE`, as a client before KIP-320), so it is
/// never fenced; any error leaves the partition to the next round.
async fn end_offsets(driver: &mut ConsumerDriver, partitions: &[TopicPartition]) -> BTreeMap<TopicPartition, Offset> {
    let world = driver.world.clone();
    let mut ends = BTreeMap::new();
    let mut correlation = 1u64 << 40; // apart from the consumer's own correlation ids
    let mut timer = Timer::default();
    while ends.len() < partitions.len() {
        let mut by_broker: BTreeMap<BrokerId, Vec<ListOffsetsPartition>> = BTreeMap::new();
        // Per partition: replicas still to answer, and the best answer so far.
        let mut round: BTreeMap<TopicPartition, (usize, Option<ListOffsetsPartitionResponse>)> = BTreeMap::new();
        for tp in partitions.iter().filter(|tp| !ends.contains_key(*tp)) {
            let replicas = world.layout.replicas(*tp).expect("a partition of the layout");
            for replica in replicas {
                let asked =
                    ListOffsetsPartition { tp: *tp, spec: OffsetSpec::Latest, current_leader_epoch: LeaderEpoch::NONE };
                by_broker.entry(*replica).or_default().push(asked);
            }
            round.insert(*tp, (replicas.len(), None));
        }
        for (broker, partitions) in by_broker {
            correlation += 1;
            // The log's end, whatever the drain's isolation: it reads until its
            // position passes it (a read_committed position steps over
            // aborted records and markers too).
            let isolation = Isolation::ReadUncommitted;
            driver.net.send(broker, correlation, Request::ListOffsets { isolation, partitions });
        }
        timer.set(Some(Instant::now() + LIST_OFFSETS_RETRY));
        let mut timed_out = false;
        while round.values().any(|(waiting, _)| *waiting > 0) {
            match next_wake(|cx| driver.net.poll_event(cx), &mut timer).await {
                Wake::Net(ClientNetEvent::Response {
                    response: Response::ListOffsets { partitions: answers }, ..
                }) => {
                    for answer in answers {
                        let Some((waiting, best)) = round.get_mut(&answer.tp) else { continue };
                        *waiting = waiting.saturating_sub(1);
                        if best.as_ref().is_none_or(|b| answer.leader_epoch > b.leader_epoch) {
                            *best = Some(answer);
                        }
                    }
                }
                Wake::Net(_) => {}
                Wake::Timer => {
                    timed_out = true;
                    break;
                }
            }
        }
        for (tp, (waiting, best)) in round {
            if let (0, Some(ListOffsetsPartitionResponse { error: None, offset, .. })) = (waiting, best) {
                ends.insert(tp, offset);
            }
        }
        if ends.len() < partitions.len() && !timed_out {
            // Wait out the round before asking again.
            wait_out(driver, &mut timer).await;
        }
    }
    ends
}
