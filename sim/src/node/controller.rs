//! The controller node: one controller (not a quorum), holding the cluster
//! metadata on its own disk. It answers brokers' registrations, heartbeats
//! and AlterPartition requests, and fences brokers whose sessions expire.
//! While it is down the brokers keep the leaders they have: no elections.

use super::{next_wake, Wake};
use crate::net::{BrokerNet, BrokerNetEvent};
use crate::timer::Timer;
use crate::trace::TraceEvent;
use crate::world::World;
use broker_core::controller::{Controller, ControllerConfig, ControllerEvent};
use broker_core::plant::Plant;
use broker_core::protocol::{Request, Response};
use std::sync::Arc;

pub fn controller_config(world: &World) -> ControllerConfig {
    let cluster = &world.scenario.cluster;
    ControllerConfig {
        session_timeout_ms: cluster.controller.session_timeout_ms,
        unclean_leader_election: cluster.unclean_leader_election,
        unclean_always: world.plants.on(Plant::UncleanAlways),
        trust_unclean_restarts: world.plants.on(Plant::LastReplicaStanding),
        ..ControllerConfig::default()
    }
}

pub async fn run(world: Arc<World>) {
    let node = world.controller_node();
    world.trace(node, TraceEvent::Boot);
    let mut net = BrokerNet::bind(world.clone(), node, world.peer_addr(broker_core::protocol::Peer::Controller)).await;
    let started = Controller::start(
        controller_config(&world),
        &world.layout,
        Box::new(world.controller_disk.clone()),
        world.clocks.node_now_ms(node),
    );
    let mut controller = match started {
        Ok(controller) => controller,
        // Its metadata file cannot be read back whole (a disk fault) or
        // written (a full disk): it stops, as a KRaft controller with a
        // damaged log would. A transient read fault clears at the next boot.
        Err(e) if e.contains(broker_core::controller::METADATA_FILE) => return super::halt(&world, node, e),
        Err(e) => panic!("the controller failed to recover its metadata: {e}"),
    };
    if world.next_boot(node) == 0 {
        record_initial_leaders(&world, &controller);
    }
    let mut timer = Timer::default();
    loop {
        super::pay_disk_time(&world.controller_disk).await;
        record_events(&world, node, &mut controller);
        timer.set(controller.next_timeout_ms().map(|ms| world.clocks.instant_for(node, ms)));
        let wake = next_wake(|cx| net.poll_event(cx), &mut timer).await;
        let now_ms = world.clocks.node_now_ms(node);
        match wake {
            Wake::Net(BrokerNetEvent::Request { conn, correlation_id, request: Request::Controller(request) }) => {
                let response = controller.handle(now_ms, request);
                if let Some(reason) = controller.halted() {
                    // The change behind this answer is not on disk: never send it.
                    return super::halt(&world, node, reason.to_string());
                }
                super::pay_disk_time(&world.controller_disk).await;
                net.respond(conn, correlation_id, Response::Controller(response));
            }
            // Only brokers connect here, and only with controller requests.
            Wake::Net(BrokerNetEvent::Request { .. }) => {}
            Wake::Net(BrokerNetEvent::Closed { .. }) => {}
            Wake::Timer => {
                controller.handle_timeout(now_ms);
                if let Some(reason) = controller.halted() {
                    return super::halt(&world, node, reason.to_string());
                }
            }
        }
    }
}

/// The first boot's image names every partition's first leader (epoch 0):
/// an election as far as the checkers are concerned.
fn record_initial_leaders(world: &World, controller: &Controller) {
    let time_ns = world.clocks.elapsed_ns();
    let mut recorder = world.replication.lock().expect("replication lock");
    for (tp, state) in &controller.image().partitions {
        let event = ControllerEvent::LeaderElected {
            tp: *tp,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr: state.isr.clone(),
            clean: true,
        };
        recorder.controller_event(time_ns, &event);
    }
}

fn record_events(world: &World, node: usize, controller: &mut Controller) {
    while let Some(event) = controller.poll_event() {
        let time_ns = world.clocks.elapsed_ns();
        if let ControllerEvent::LeaderElected { tp, leader, leader_epoch, clean, .. } = &event {
            let partition = super::partition_name(world, *tp).to_string();
            world.trace(
                node,
                TraceEvent::Elected {
                    partition,
                    leader: leader.map(|b| b.0),
                    leader_epoch: leader_epoch.0,
                    clean: *clean,
                },
            );
        }
        world.replication.lock().expect("replication lock").controller_event(time_ns, &event);
    }
}
