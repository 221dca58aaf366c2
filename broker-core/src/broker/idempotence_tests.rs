//! The broker's side of idempotence: InitProducerId from a controller
//! block, and a leader's answers to idempotent batches — retries answered
//! with the original offsets, gaps, old epochs and unknown producers
//! refused — through restarts and leadership changes.

use super::*;
use crate::controller::{ControllerRequest, ControllerResponse, MetadataImage, ProducerIdBlock};
use crate::protocol::{Acks, ProduceBatch, ProducePartitionResponse};
use crate::storage::SharedMemStorage;
use crate::types::{ProducerEpoch, ProducerId, ProducerStamp, Record, TopicId};
use bytes::Bytes;

const T0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
const PID: ProducerId = ProducerId(7);

fn layout() -> ClusterLayout {
    // Two brokers; partition 0 on broker 0 (the one under test), alone.
    ClusterLayout::single_replica(2, &[("events".to_string(), 2)])
}

/// Broker 0 booted on `disk` and handed the initial image: it leads partition 0.
fn start(disk: &SharedMemStorage, plants: Plants) -> Broker {
    let mut b = Broker::start(BrokerId(0), BrokerConfig::default(), layout(), plants, Box::new(disk.clone()), 1_000, 7)
        .expect("starts");
    b.apply_image(1_000, MetadataImage::initial(&layout()));
    drain(&mut b);
    b
}

fn drain(b: &mut Broker) -> Vec<BrokerOutput> {
    std::iter::from_fn(|| b.poll_output()).collect()
}

fn stamp(epoch: i16, base_sequence: i32) -> ProducerStamp {
    ProducerStamp { id: PID, epoch: ProducerEpoch(epoch), base_sequence }
}

/// Sends one idempotent batch of `count` records (acks=all, a lone replica
/// commits at once) and returns the answer.
fn produce(b: &mut Broker, producer: ProducerStamp, count: u64) -> ProducePartitionResponse {
    let records = (0..count)
        .map(|v| Record { key: None, value: Bytes::copy_from_slice(&v.to_be_bytes()), timestamp_ms: 0 })
        .collect();
    let batch = ProduceBatch { tp: T0, records, producer: Some(producer), transactional_id: None };
    b.handle_request(1_000, 1, 5, Request::Produce { acks: Acks::All, timeout_ms: 1_000, batches: vec![batch] });
    let answers: Vec<ProducePartitionResponse> = drain(b)
        .into_iter()
        .filter_map(|o| match o {
            BrokerOutput::Respond { response: Response::Produce { mut partitions }, .. } => Some(partitions.remove(0)),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "one answer");
    answers.into_iter().next().expect("checked")
}

fn log_end(b: &Broker) -> Offset {
    b.replicas[&T0].log.log_end_offset()
}

fn ok(base: i64) -> (Option<ErrorCode>, Offset) {
    (None, Offset(base))
}

fn answer(r: ProducePartitionResponse) -> (Option<ErrorCode>, Offset) {
    (r.error, r.base_offset)
}

#[test]
fn retries_are_answered_with_the_original_offsets_and_gaps_fenced_epochs_refused() {
    let disk = SharedMemStorage::default();
    let mut b = start(&disk, Plants::none());
    assert_eq!(answer(produce(&mut b, stamp(0, 0), 3)), ok(0));
    assert_eq!(answer(produce(&mut b, stamp(0, 3), 2)), ok(3));
    assert_eq!(answer(produce(&mut b, stamp(0, 0), 3)), ok(0), "a retry of the first batch");
    assert_eq!(log_end(&b), Offset(5), "nothing written twice");
    let refused = |r: ProducePartitionResponse| r.error;
    assert_eq!(refused(produce(&mut b, stamp(0, 9), 1)), Some(ErrorCode::OutOfOrderSequenceNumber));
    assert_eq!(answer(produce(&mut b, stamp(1, 0), 1)), ok(5), "a bumped epoch starts at 0");
    assert_eq!(refused(produce(&mut b, stamp(0, 5), 1)), Some(ErrorCode::InvalidProducerEpoch));
    let stranger = ProducerStamp { id: ProducerId(8), epoch: ProducerEpoch(0), base_sequence: 4 };
    assert_eq!(refused(produce(&mut b, stranger, 1)), Some(ErrorCode::UnknownProducerId));
    assert_eq!(log_end(&b), Offset(6));
}

#[test]
fn producer_state_survives_a_restart_and_a_new_leader_epoch() {
    let disk = SharedMemStorage::default();
    let mut b = start(&disk, Plants::none());
    produce(&mut b, stamp(0, 0), 2);
    produce(&mut b, stamp(0, 2), 2);
    drop(b);
    // A crash: the next incarnation rebuilds the state from its log.
    let mut b = start(&disk, Plants::none());
    assert_eq!(answer(produce(&mut b, stamp(0, 2), 2)), ok(2), "a retry after the restart");
    assert_eq!(answer(produce(&mut b, stamp(0, 4), 1)), ok(4));
    lead_again(&mut b);
    assert_eq!(answer(produce(&mut b, stamp(0, 4), 1)), ok(4), "a retry to the re-elected leader");
    assert_eq!(log_end(&b), Offset(5));
}

#[test]
fn the_planted_bug_makes_a_new_leader_forget_its_producers() {
    let disk = SharedMemStorage::default();
    let mut b = start(&disk, [Plant::ProducerStateLostOnFailover].into_iter().collect());
    produce(&mut b, stamp(0, 0), 2);
    lead_again(&mut b);
    assert_eq!(answer(produce(&mut b, stamp(0, 0), 2)), ok(2), "the retry is written again");
    assert_eq!(produce(&mut b, stamp(0, 9), 1).error, Some(ErrorCode::OutOfOrderSequenceNumber));
}

/// Hands the broker an image in which it leads partition 0 in a newer epoch.
fn lead_again(b: &mut Broker) {
    b.apply_image(1_000, super::tests::image_leading_again(&layout(), T0));
    drain(b);
}

#[test]
fn init_producer_id_hands_out_the_controllers_block_once_registered() {
    let disk = SharedMemStorage::default();
    let mut b = Broker::start(BrokerId(0), BrokerConfig::default(), layout(), Plants::none(), Box::new(disk), 0, 7)
        .expect("starts");
    let mut pending: Vec<BrokerOutput> = Vec::new();
    let init = |b: &mut Broker, pending: &mut Vec<BrokerOutput>| {
        b.handle_request(0, 1, 9, Request::InitProducerId);
        let mut result = None;
        for o in drain(b) {
            match o {
                BrokerOutput::Respond { response: Response::InitProducerId { result: r }, .. } => result = Some(r),
                other => pending.push(other),
            }
        }
        result.expect("an answer")
    };
    assert_eq!(init(&mut b, &mut pending), Err(ErrorCode::CoordinatorLoadInProgress), "no block yet");
    // Answer the broker's registration and heartbeats; hold its request for a block.
    let mut allocate = None;
    for _ in 0..3 {
        pending.extend(drain(&mut b));
        for o in std::mem::take(&mut pending) {
            let BrokerOutput::Send { correlation_id, request: Request::Controller(request), .. } = o else { continue };
            let response = match request {
                ControllerRequest::Register { .. } => ControllerResponse::Register(Ok(BrokerEpoch(3))),
                ControllerRequest::Heartbeat { .. } => ControllerResponse::Heartbeat(Ok(None)),
                ControllerRequest::AllocateProducerIds { broker_epoch, .. } => {
                    assert_eq!(broker_epoch, BrokerEpoch(3));
                    allocate = Some(correlation_id);
                    continue;
                }
                ControllerRequest::AlterPartition { .. } => continue,
            };
            b.handle_response(0, Peer::Controller, correlation_id, Response::Controller(response));
        }
    }
    assert_eq!(init(&mut b, &mut pending), Err(ErrorCode::CoordinatorLoadInProgress), "registered, block on its way");
    let allocate = allocate.expect("the broker asked for a block");
    let block = ProducerIdBlock { first: ProducerId(2_000), count: 2 };
    b.handle_response(
        0,
        Peer::Controller,
        allocate,
        Response::Controller(ControllerResponse::AllocateProducerIds(Ok(block))),
    );
    assert_eq!(init(&mut b, &mut pending), Ok((ProducerId(2_000), ProducerEpoch(0))));
    assert_eq!(init(&mut b, &mut pending), Ok((ProducerId(2_001), ProducerEpoch(0))));
    assert_eq!(init(&mut b, &mut pending), Err(ErrorCode::CoordinatorLoadInProgress), "the block ran out");
    assert!(b.in_flight(|o| matches!(o, Outstanding::ProducerIds)), "and the broker asks for the next");
}
