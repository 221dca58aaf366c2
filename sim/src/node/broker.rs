//! A broker node: boots (recovering its logs from its disk) on every start,
//! serves clients and other brokers, and talks to the controller and to
//! leaders over connections of its own.

use super::{next_wake, Wake};
use crate::net::{BrokerNet, BrokerNetEvent, ClientNet, ClientNetEvent};
use crate::rng::core_seed;
use crate::scenario::FlushSpec;
use crate::timer::Timer;
use crate::trace::TraceEvent;
use crate::world::World;
use broker_core::broker::{Broker, BrokerConfig, BrokerEvent, BrokerOutput};
use broker_core::log::{FlushPolicy, LogConfig, LogError};
use broker_core::types::BrokerId;
use std::sync::Arc;
use std::task::Poll;

pub fn broker_config(world: &World) -> BrokerConfig {
    let spec = &world.scenario.cluster.broker;
    BrokerConfig {
        log: LogConfig {
            segment_bytes: spec.log_segment_bytes,
            index_interval_bytes: spec.log_index_interval_bytes,
            retention_bytes: spec.log_retention_bytes,
            retention_ms: spec.log_retention_ms,
            flush: match spec.log_flush {
                FlushSpec::Never => FlushPolicy::Never,
                FlushSpec::EveryBatch => FlushPolicy::EveryBatch,
                FlushSpec::IntervalMs(ms) => FlushPolicy::IntervalMs(ms),
            },
        },
        retention_check_interval_ms: spec.log_retention_check_interval_ms,
        fetch_purgatory_limit: spec.fetch_purgatory_limit as usize,
        replica_lag_time_max_ms: spec.replica_lag_time_max_ms,
        replica_fetch_wait_max_ms: spec.replica_fetch_wait_max_ms,
        request_timeout_ms: spec.request_timeout_ms,
        heartbeat_interval_ms: world.scenario.cluster.controller.heartbeat_interval_ms,
        replica_high_watermark_checkpoint_interval_ms: spec.replica_high_watermark_checkpoint_interval_ms,
        log_flush_offset_checkpoint_interval_ms: spec.log_flush_offset_checkpoint_interval_ms,
        ..BrokerConfig::default()
    }
}

/// What woke the broker: a request to it, or news on its own connections.
enum Net {
    Served(BrokerNetEvent),
    Own(ClientNetEvent),
    /// The supervisor wants this broker's final replica state.
    Snapshot,
    /// The nemesis asks for a controlled shutdown.
    Stop,
}

pub async fn run(world: Arc<World>, id: BrokerId) {
    let node = world.broker_node(id);
    world.trace(node, TraceEvent::Boot);
    world.broker_booted(id);
    let mut server = BrokerNet::bind(world.clone(), node, world.broker_addr(id)).await;
    let mut client = ClientNet::bind(world.clone(), node).await;
    // Each incarnation gets a fresh seed for its planted-bug choices, derived
    // from the run seed and how many boots happened so far.
    let boot = world.next_boot(node);
    let started = Broker::start(
        id,
        broker_config(&world),
        world.layout.clone(),
        world.plants.clone(),
        Box::new(world.disks[id.0 as usize].clone()),
        world.clocks.node_now_ms(node),
        core_seed(world.seed, (u64::from(id.0) << 16) | boot),
    );
    let mut broker = match started {
        Ok(broker) => broker,
        // Recovery needed space the disk does not have: Kafka fails to start.
        Err(LogError::Storage(e)) => return super::halt(&world, node, format!("recovery failed: {e}")),
        // A log recovery refuses to repair: Kafka fails to start.
        Err(e @ LogError::Corrupt { .. }) => return super::halt(&world, node, format!("recovery failed: {e}")),
        Err(e) => panic!("{id} failed to recover its log: {e}"),
    };
    let mut timer = Timer::default();
    // The loop's task (and so its waker) is the same for the whole boot:
    // hand it to the snapshot request once.
    let mut snapshot_waker_given = false;
    let disk = world.disks[id.0 as usize].clone();
    loop {
        super::pay_disk_time(&disk).await;
        if let Some(reason) = carry_out(&world, node, &mut broker, &mut server, &mut client) {
            return super::halt(&world, node, reason);
        }
        timer.set(broker.next_timeout_ms().map(|ms| world.clocks.instant_for(node, ms)));
        let wake = next_wake(
            |cx| {
                if world.snapshot_wanted(id) {
                    return Poll::Ready(Net::Snapshot);
                }
                if world.take_stop(id) {
                    return Poll::Ready(Net::Stop);
                }
                if !snapshot_waker_given {
                    world.on_snapshot_request(id, cx.waker());
                    snapshot_waker_given = true;
                }
                match server.poll_event(cx) {
                    Poll::Ready(e) => Poll::Ready(Net::Served(e)),
                    Poll::Pending => client.poll_event(cx).map(Net::Own),
                }
            },
            &mut timer,
        )
        .await;
        let now_ms = world.clocks.node_now_ms(node);
        match wake {
            Wake::Net(Net::Served(BrokerNetEvent::Request { conn, correlation_id, request })) => {
                broker.handle_request(now_ms, conn, correlation_id, request)
            }
            Wake::Net(Net::Served(BrokerNetEvent::Closed { conn })) => broker.connection_closed(conn),
            Wake::Net(Net::Own(ClientNetEvent::Response { peer, correlation_id, response })) => {
                broker.handle_response(now_ms, peer, correlation_id, response)
            }
            Wake::Net(Net::Own(ClientNetEvent::Disconnected { peer })) => broker.handle_disconnect(now_ms, peer),
            Wake::Net(Net::Snapshot) => publish_snapshot(&world, &broker),
            Wake::Net(Net::Stop) => {
                broker.shutdown();
                // The flush and the checkpoints take their disk time before the process is gone.
                super::pay_disk_time(&disk).await;
                world.node_ended(node, crate::checker::recovery::BootEnd::Stopped);
                world.trace(node, TraceEvent::Halted { reason: broker.halted().unwrap_or_default().to_string() });
                return; // the connections close with the process
            }
            Wake::Timer => broker.handle_timeout(now_ms),
        }
    }
}

/// Sends what the broker asked for and records what it reported. Returns
/// why the broker halted, if it did (nothing after its halt is sent).
fn carry_out(
    world: &World,
    node: usize,
    broker: &mut Broker,
    server: &mut BrokerNet,
    client: &mut ClientNet,
) -> Option<String> {
    let mut halted = None;
    while let Some(output) = broker.poll_output() {
        match output {
            _ if halted.is_some() => {}
            BrokerOutput::Respond { conn, correlation_id, response } => server.respond(conn, correlation_id, response),
            BrokerOutput::Send { to, correlation_id, request } => client.send(to, correlation_id, request),
            BrokerOutput::CloseConnection { to } => client.close(to),
            BrokerOutput::Halt { reason } => halted = Some(reason),
        }
    }
    while let Some(event) = broker.poll_event() {
        let time_ns = world.clocks.elapsed_ns();
        if let BrokerEvent::Registered { .. } = &event {
            world.broker_registered(broker.id());
        }
        if let BrokerEvent::BecameLeader { tp, leader_epoch, .. } = &event {
            let partition = super::partition_name(world, *tp).to_string();
            world.trace(node, TraceEvent::BecameLeader { partition, leader_epoch: leader_epoch.0 });
        }
        world.disks[broker.id().0 as usize]
            .observing(|| world.replication.lock().expect("replication lock").broker_event(time_ns, broker, &event));
    }
    halted
}

/// At the end of the run the supervisor asks every live broker for the
/// state of its replicas (the checkers' final snapshot).
fn publish_snapshot(world: &World, broker: &Broker) {
    world.disks[broker.id().0 as usize].observing(|| {
        let mut recorder = world.replication.lock().expect("replication lock");
        for tp in broker.partitions() {
            recorder.snapshot(broker, tp);
        }
    });
    world.snapshot_taken(broker.id());
}
