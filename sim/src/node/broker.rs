//! A broker node: boots (recovering its logs from its disk) on every start.

use super::{next_wake, Wake};
use crate::net::{BrokerNet, BrokerNetEvent};
use crate::rng::core_seed;
use crate::timer::Timer;
use crate::trace::TraceEvent;
use crate::world::World;
use broker_core::broker::{Broker, BrokerConfig, BrokerOutput};
use broker_core::log::LogConfig;
use broker_core::types::BrokerId;
use std::sync::Arc;

pub fn broker_config(world: &World) -> BrokerConfig {
    let spec = &world.scenario.cluster.broker;
    BrokerConfig {
        log: LogConfig {
            segment_bytes: spec.log_segment_bytes,
            index_interval_bytes: spec.log_index_interval_bytes,
            retention_bytes: spec.log_retention_bytes,
            retention_ms: spec.log_retention_ms,
        },
        retention_check_interval_ms: spec.log_retention_check_interval_ms,
        fetch_purgatory_limit: spec.fetch_purgatory_limit as usize,
    }
}

pub async fn run(world: Arc<World>, id: BrokerId) {
    let node = world.broker_node(id);
    world.trace(node, TraceEvent::Boot);
    let mut net = BrokerNet::bind(world.clone(), node, world.broker_addr(id)).await;
    // Each incarnation gets a fresh seed for its planted-bug choices, derived
    // from the run seed and how many boots happened so far.
    let boot = world.next_boot(node);
    let mut broker = Broker::start(
        id,
        broker_config(&world),
        world.layout.clone(),
        world.plants.clone(),
        Box::new(world.disks[id.0 as usize].clone()),
        world.clocks.node_now_ms(node),
        core_seed(world.seed, (u64::from(id.0) << 16) | boot),
    )
    .unwrap_or_else(|e| panic!("{id} failed to recover its log: {e}"));
    let mut timer = Timer::default();
    loop {
        timer.set(broker.next_timeout_ms().map(|ms| world.clocks.instant_for(node, ms)));
        let wake = next_wake(|cx| net.poll_event(cx), &mut timer).await;
        let now_ms = world.clocks.node_now_ms(node);
        match wake {
            Wake::Net(BrokerNetEvent::Request { conn, correlation_id, request }) => {
                broker.handle_request(now_ms, conn, correlation_id, request)
            }
            Wake::Net(BrokerNetEvent::Closed { conn }) => broker.connection_closed(conn),
            Wake::Timer => broker.handle_timeout(now_ms),
        }
        while let Some(BrokerOutput::Respond { conn, correlation_id, response }) = broker.poll_output() {
            net.respond(conn, correlation_id, response);
        }
    }
}
