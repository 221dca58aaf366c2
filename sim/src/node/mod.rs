//! The node programs: what runs inside each simulated node. Each is a loop
//! that waits for a network event or its timer, feeds the event to its
//! broker-core state machine with the node's clock, and carries out the
//! machine's outputs.

pub mod broker;
pub mod consumer;
pub mod controller;
pub mod drain;
pub mod group_consumer;
pub mod pipeline;
pub mod producer;

use crate::world::World;
use broker_core::types::TopicPartition;
use madsim::time::Instant;
use std::future::Future;
use std::task::{Context, Poll};

/// What woke a node loop.
pub enum Wake<E> {
    Net(E),
    Timer,
}

/// Waits for the next network event or the timer, whichever comes first.
pub fn next_wake<'a, E>(
    mut poll_net: impl FnMut(&mut Context<'_>) -> Poll<E> + 'a,
    timer: &'a mut crate::timer::Timer,
) -> impl Future<Output = Wake<E>> + 'a {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(event) = poll_net(cx) {
            return Poll::Ready(Wake::Net(event));
        }
        if timer.poll_expired(cx).is_ready() {
            return Poll::Ready(Wake::Timer);
        }
        Poll::Pending
    })
}

/// A partition as the history names it (by topic name).
pub fn partition_name(world: &World, tp: TopicPartition) -> crate::history::Partition {
    crate::history::Partition { topic: world.topics[tp.topic.0 as usize].clone(), partition: tp.partition }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps the simulated time the node's disk operations took since the last
/// call (nothing without a latency model): what those operations produced —
/// an ack after an fsync, a registration after recovery — waits for them.
pub async fn pay_disk_time(disk: &crate::disk::SharedDisk) {
    let ns = disk.with(crate::disk::Disk::take_busy_ns);
    if ns > 0 {
        madsim::time::sleep(std::time::Duration::from_nanos(ns)).await;
    }
}

/// A node stops itself: its disk failed a write. Traced and remembered, so a
/// `disk-heal` or the end-of-run heal restarts it; the caller returns from
/// the node's program, dropping its connections as a dead process would.
pub fn halt(world: &World, node: usize, reason: String) {
    tracing::warn!(node = %world.nodes[node].0, %reason, "halted");
    world.node_ended(node, crate::checker::recovery::BootEnd::Halted(reason.clone()));
    world.trace(node, crate::trace::TraceEvent::Halted { reason });
    world.mark_halted(node);
}
