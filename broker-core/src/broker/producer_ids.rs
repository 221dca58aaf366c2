//! InitProducerId for idempotent producers: every broker answers it, with
//! an id from a block the controller allocated to it (KIP-730), at epoch 0.
//! A broker asks for its first block once registered, and for the next one
//! when the current one runs out; until a block arrives InitProducerId is
//! answered COORDINATOR_LOAD_IN_PROGRESS, which the producer retries.

use super::{Broker, ConnId, Outstanding};
use crate::controller::{ControllerRequest, ControllerResponse};
use crate::protocol::{CorrelationId, ErrorCode, Peer, Request, Response};
use crate::types::{ProducerEpoch, ProducerId};

/// Pause before asking the controller again after a refusal or a loss.
const ALLOCATE_BACKOFF_MS: u64 = 100;

#[derive(Default)]
pub(super) struct ProducerIds {
    /// The ids left in the current block: `next..end`.
    next: i64,
    end: i64,
    /// No request for a block before this (after a refusal or a loss).
    ask_after_ms: u64,
}

impl ProducerIds {
    /// The next id of the block, if any is left.
    pub(super) fn take(&mut self) -> Option<ProducerId> {
        (self.next < self.end).then(|| {
            self.next += 1;
            ProducerId(self.next - 1)
        })
    }
}

impl Broker {
    pub(super) fn init_producer_id(&mut self, conn: ConnId, correlation_id: CorrelationId) {
        let result = match self.producer_ids.take() {
            Some(id) => Ok((id, ProducerEpoch(0))),
            None => Err(ErrorCode::CoordinatorLoadInProgress),
        };
        self.respond(conn, correlation_id, Response::InitProducerId { result });
    }

    /// Asks the controller for a block when the broker is registered, has
    /// none left and is not already asking.
    pub(super) fn drive_producer_ids(&mut self, now_ms: u64) {
        let Some(broker_epoch) = self.control.broker_epoch else { return };
        let ids = &self.producer_ids;
        if ids.next < ids.end || now_ms < ids.ask_after_ms || self.in_flight(|o| matches!(o, Outstanding::ProducerIds))
        {
            return;
        }
        let request = Request::Controller(ControllerRequest::AllocateProducerIds { broker: self.id, broker_epoch });
        self.send(now_ms, Peer::Controller, Outstanding::ProducerIds, request);
    }

    /// When the next request for a block is due, if one is wanted.
    pub(super) fn next_producer_ids_ms(&self) -> Option<u64> {
        let ids = &self.producer_ids;
        let wanted = self.control.broker_epoch.is_some() && ids.next >= ids.end;
        (wanted && !self.in_flight(|o| matches!(o, Outstanding::ProducerIds))).then_some(ids.ask_after_ms)
    }

    pub(super) fn on_producer_ids(&mut self, now_ms: u64, response: ControllerResponse) {
        match response {
            ControllerResponse::AllocateProducerIds(Ok(block)) => {
                assert!(block.first.0 >= 0 && block.count > 0, "a block of producer ids: {block:?}");
                self.producer_ids.next = block.first.0;
                self.producer_ids.end = block.first.0 + i64::from(block.count);
            }
            _ => self.on_producer_ids_lost(now_ms),
        }
    }

    pub(super) fn on_producer_ids_lost(&mut self, now_ms: u64) {
        self.producer_ids.ask_after_ms = now_ms + ALLOCATE_BACKOFF_MS;
    }
}
