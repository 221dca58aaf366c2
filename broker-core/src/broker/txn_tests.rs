//! A broker as transaction coordinator and partition leader at once (one
//! broker leads `events-0` and `__transaction_state-0`): a transaction from
//! InitProducerId to its markers, read_committed fetches before and after,
//! an abort's records listed as aborted, and KIP-890's verification of a
//! write to a partition the transaction never added. It leads
//! `__consumer_offsets-0` too (`txn_offsets_tests` commits offsets in
//! transactions).

use super::*;
use crate::controller::{ControllerRequest, ControllerResponse, MetadataImage, ProducerIdBlock};
use crate::plant::Plant;
use crate::protocol::{Acks, FetchPartition, Isolation, ProduceBatch};
use crate::storage::SharedMemStorage;
use crate::txn::api::{TxnRequest, TxnResponse};
use crate::txn::{TransactionalId, TxnState};
use crate::types::{BatchKind, ProducerEpoch, ProducerId, ProducerStamp, Record, TopicId};
use bytes::Bytes;

const EVENTS: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };

fn layout() -> ClusterLayout {
    let topics = [("events", 1), (TRANSACTION_STATE_TOPIC, 1), (CONSUMER_OFFSETS_TOPIC, 1)];
    ClusterLayout::single_replica(1, &topics.map(|(name, partitions)| (name.to_string(), partitions)))
}

pub(super) fn id() -> TransactionalId {
    TransactionalId::new("app")
}

pub(super) struct Harness {
    pub(super) b: Broker,
    pub(super) now: u64,
    next_correlation: u64,
}

impl Harness {
    /// Broker 0, registered, holding a block of producer ids, leading everything.
    pub(super) fn new() -> Harness {
        Harness::start(layout(), Plants::none())
    }

    /// Broker 0 of `layout` with `plants` on, registered, holding a block of producer ids.
    pub(super) fn start(layout: ClusterLayout, plants: Plants) -> Harness {
        let disk = SharedMemStorage::default();
        let b = Broker::start(BrokerId(0), BrokerConfig::default(), layout.clone(), plants, Box::new(disk), 0, 7)
            .expect("starts");
        let mut h = Harness { b, now: 0, next_correlation: 100 };
        h.b.apply_image(0, MetadataImage::initial(&layout));
        for _ in 0..3 {
            h.answer_controller();
        }
        h
    }

    /// Answers the broker's registration, heartbeats and producer-id request.
    fn answer_controller(&mut self) {
        for o in std::iter::from_fn(|| self.b.poll_output()).collect::<Vec<_>>() {
            let BrokerOutput::Send { correlation_id, request: Request::Controller(request), .. } = o else { continue };
            let response = match request {
                ControllerRequest::Register { .. } => ControllerResponse::Register(Ok(BrokerEpoch(1))),
                ControllerRequest::Heartbeat { .. } => ControllerResponse::Heartbeat(Ok(None)),
                ControllerRequest::AllocateProducerIds { .. } => {
                    ControllerResponse::AllocateProducerIds(Ok(ProducerIdBlock { first: ProducerId(1_000), count: 10 }))
                }
                ControllerRequest::AlterPartition { .. } => continue,
            };
            self.b.handle_response(self.now, Peer::Controller, correlation_id, Response::Controller(response));
        }
    }

    /// Sends `request` and returns the answer to it (skipping everything else).
    pub(super) fn ask(&mut self, request: Request) -> Response {
        self.next_correlation += 1;
        let correlation = self.next_correlation;
        self.b.handle_request(self.now, 1, correlation, request);
        let outputs: Vec<BrokerOutput> = std::iter::from_fn(|| self.b.poll_output()).collect();
        outputs
            .into_iter()
            .find_map(|o| match o {
                BrokerOutput::Respond { correlation_id, response, .. } if correlation_id == correlation => {
                    Some(response)
                }
                _ => None,
            })
            .expect("answered")
    }

    pub(super) fn txn(&mut self, request: TxnRequest) -> TxnResponse {
        match self.ask(Request::Txn(request)) {
            Response::Txn(r) => r,
            other => panic!("answered {other:?}"),
        }
    }

    fn produce(&mut self, stamp: ProducerStamp, values: &[u8]) -> Option<ErrorCode> {
        self.produce_as(stamp, Some(id()), values)
    }

    /// A batch of `values` from `stamp`'s producer, transactional if it names a transactional id.
    fn produce_as(&mut self, stamp: ProducerStamp, txn: Option<TransactionalId>, values: &[u8]) -> Option<ErrorCode> {
        let records = values
            .iter()
            .map(|v| Record { key: None, value: Bytes::copy_from_slice(&[*v]), timestamp_ms: 0 })
            .collect();
        let batch = ProduceBatch { tp: EVENTS, records, producer: Some(stamp), transactional_id: txn };
        match self.ask(Request::Produce { acks: Acks::All, timeout_ms: 1_000, batches: vec![batch] }) {
            Response::Produce { partitions } => partitions[0].error,
            other => panic!("answered {other:?}"),
        }
    }

    /// A fetch of `events-0` from 0: (values, last stable offset, aborted first offsets).
    fn fetch(&mut self, isolation: Isolation) -> (Vec<u8>, Offset, Vec<Offset>) {
        let partition = FetchPartition {
            tp: EVENTS,
            fetch_offset: Offset(0),
            partition_max_bytes: 1 << 20,
            current_leader_epoch: LeaderEpoch::NONE,
        };
        let request = Request::Fetch {
            replica: None,
            isolation,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partitions: vec![partition],
        };
        match self.ask(request) {
            Response::Fetch { mut partitions } => {
                let p = partitions.remove(0);
                let values =
                    p.records.iter().filter(|r| !matches!(r.kind, BatchKind::Marker(_))).map(|r| r.value[0]).collect();
                (values, p.last_stable_offset, p.aborted.iter().map(|a| a.first_offset).collect())
            }
            other => panic!("answered {other:?}"),
        }
    }
}

pub(super) fn init(h: &mut Harness) -> (ProducerId, ProducerEpoch) {
    match h.txn(TxnRequest::InitProducerId { transactional_id: id(), timeout_ms: 60_000, current: None }) {
        TxnResponse::InitProducerId(Ok(pe)) => pe,
        other => panic!("{other:?}"),
    }
}

fn stamp((pid, epoch): (ProducerId, ProducerEpoch), base_sequence: i32) -> ProducerStamp {
    ProducerStamp { id: pid, epoch, base_sequence }
}

#[test]
fn a_committed_transaction_becomes_visible_to_read_committed_readers() {
    let mut h = Harness::new();
    let p = init(&mut h);
    assert_eq!(p, (ProducerId(1_000), ProducerEpoch(0)));
    let add =
        TxnRequest::AddPartitions { transactional_id: id(), producer_id: p.0, epoch: p.1, partitions: vec![EVENTS] };
    assert_eq!(h.txn(add), TxnResponse::AddPartitions(Ok(())));
    assert_eq!(h.produce(stamp(p, 0), &[1, 2]), None);
    assert_eq!(h.fetch(Isolation::ReadUncommitted).0, vec![1, 2], "read_uncommitted sees the open transaction");
    assert_eq!(h.fetch(Isolation::ReadCommitted), (vec![], Offset(0), vec![]), "read_committed stops at the LSO");
    let end = TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: true };
    assert_eq!(h.txn(end), TxnResponse::EndTxn(Ok(ProducerEpoch(1))));
    // The marker is written (locally, at once), so the LSO passes it.
    let (values, lso, aborted) = h.fetch(Isolation::ReadCommitted);
    assert_eq!((values, lso, aborted), (vec![1, 2], Offset(3), vec![]));
    // A straggler of the ended transaction, in its old epoch, is fenced.
    assert_eq!(h.produce(stamp(p, 2), &[3]), Some(ErrorCode::InvalidProducerEpoch));
}

/// ListOffsets(latest) of `events-0`: where a consumer of `isolation` resetting to latest starts.
fn latest(h: &mut Harness, isolation: Isolation) -> Offset {
    let partition =
        ListOffsetsPartition { tp: EVENTS, spec: OffsetSpec::Latest, current_leader_epoch: LeaderEpoch::NONE };
    match h.ask(Request::ListOffsets { isolation, partitions: vec![partition] }) {
        Response::ListOffsets { partitions } => {
            assert_eq!(partitions[0].error, None);
            partitions[0].offset
        }
        other => panic!("answered {other:?}"),
    }
}

/// A transaction open in `events-0` with records 1 and 2 at offsets 0 and 1.
fn open_two(h: &mut Harness) -> (ProducerId, ProducerEpoch) {
    let p = init(h);
    let add =
        TxnRequest::AddPartitions { transactional_id: id(), producer_id: p.0, epoch: p.1, partitions: vec![EVENTS] };
    h.txn(add);
    h.produce(stamp(p, 0), &[1, 2]);
    p
}

#[test]
fn list_offsets_latest_is_the_lso_for_read_committed_consumers() {
    let mut h = Harness::new();
    let p = open_two(&mut h);
    // A read_committed consumer starting at the HW would never read the
    // open transaction's records once it commits.
    assert_eq!(latest(&mut h, Isolation::ReadUncommitted), Offset(2));
    assert_eq!(latest(&mut h, Isolation::ReadCommitted), Offset(0));
    let end = TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: true };
    h.txn(end);
    assert_eq!(latest(&mut h, Isolation::ReadCommitted), Offset(3), "past the marker once decided");
    assert_eq!(latest(&mut h, Isolation::ReadUncommitted), Offset(3));
}

#[test]
fn list_offsets_latest_is_the_hw_for_read_committed_consumers_with_the_plant() {
    let mut h = Harness::start(layout(), Plants::none().with(Plant::ReadCommittedToHw));
    open_two(&mut h);
    assert_eq!(latest(&mut h, Isolation::ReadCommitted), Offset(2));
}

#[test]
fn an_aborted_transaction_is_listed_for_read_committed_readers_to_skip() {
    let mut h = Harness::new();
    let p = init(&mut h);
    let add =
        TxnRequest::AddPartitions { transactional_id: id(), producer_id: p.0, epoch: p.1, partitions: vec![EVENTS] };
    h.txn(add);
    h.produce(stamp(p, 0), &[7]);
    let end = TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: false };
    assert_eq!(h.txn(end), TxnResponse::EndTxn(Ok(ProducerEpoch(1))));
    let (values, lso, aborted) = h.fetch(Isolation::ReadCommitted);
    assert_eq!((values, lso, aborted), (vec![7], Offset(2), vec![Offset(0)]), "the consumer filters by the list");
}

#[test]
fn a_write_to_a_partition_the_transaction_never_added_is_refused() {
    let mut h = Harness::new();
    let p = init(&mut h);
    assert_eq!(h.produce(stamp(p, 0), &[1]), Some(ErrorCode::InvalidTxnState), "KIP-890 part 1");
    assert_eq!(h.fetch(Isolation::ReadUncommitted).0, Vec::<u8>::new(), "nothing was written");
}

#[test]
fn a_plain_batch_of_a_producer_whose_transaction_is_open_is_refused() {
    let mut h = Harness::new();
    let p = open_two(&mut h);
    assert_eq!(h.produce_as(stamp(p, 2), None, &[9]), Some(ErrorCode::InvalidTxnState));
    assert_eq!(h.fetch(Isolation::ReadUncommitted).0, vec![1, 2], "nothing more was written");
    let end = TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: true };
    let TxnResponse::EndTxn(Ok(next_epoch)) = h.txn(end) else { panic!("ended") };
    // Decided: the producer's plain batches are its own business again.
    assert_eq!(h.produce_as(stamp((p.0, next_epoch), 0), None, &[9]), None);
}

/// The broker leads `events-0` again, in a newer leader epoch (a failover
/// back to it, as far as the partition can tell).
fn lead_events_again(h: &mut Harness) {
    h.b.apply_image(h.now, super::tests::image_leading_again(&layout(), EVENTS));
    std::iter::from_fn(|| h.b.poll_output()).for_each(drop);
}

/// A transaction open in `events-0` with two records; then a new leader epoch.
fn open_transaction_then_failover(h: &mut Harness) {
    let p = init(h);
    let add =
        TxnRequest::AddPartitions { transactional_id: id(), producer_id: p.0, epoch: p.1, partitions: vec![EVENTS] };
    assert_eq!(h.txn(add), TxnResponse::AddPartitions(Ok(())));
    assert_eq!(h.produce(stamp(p, 0), &[1, 2]), None);
    assert_eq!(h.fetch(Isolation::ReadCommitted), (vec![], Offset(0), vec![]), "held at the open transaction");
    lead_events_again(h);
}

#[test]
fn a_new_leader_keeps_readers_back_at_a_transaction_it_replicated_open() {
    let mut h = Harness::new();
    open_transaction_then_failover(&mut h);
    assert_eq!(h.fetch(Isolation::ReadCommitted), (vec![], Offset(0), vec![]), "still held: nothing ended it");
}

#[test]
fn the_planted_bug_makes_a_new_leader_forget_open_transactions() {
    let mut h = Harness::start(layout(), [Plant::OpenTxnsLostOnFailover].into_iter().collect());
    open_transaction_then_failover(&mut h);
    let (values, lso, _) = h.fetch(Isolation::ReadCommitted);
    assert_eq!((values, lso), (vec![1, 2], Offset(2)), "the LSO passes a transaction never committed");
}

/// Broker 0 coordinates (`__transaction_state-0`); `events-0` is led by
/// broker 1, so its marker goes out in WriteTxnMarkers. A transaction on
/// it is committed, and the marker request is answered NOT_LEADER_OR_FOLLOWER.
/// Returns the harness and the state the coordinator then holds.
fn commit_with_a_refused_marker(plants: Plants) -> (Harness, TxnState) {
    let layout =
        ClusterLayout::single_replica(2, &[(TRANSACTION_STATE_TOPIC.to_string(), 1), ("events".to_string(), 1)]);
    let remote = TopicPartition { topic: TopicId(1), partition: 0 };
    let mut h = Harness::start(layout, plants);
    let p = init(&mut h);
    let add =
        TxnRequest::AddPartitions { transactional_id: id(), producer_id: p.0, epoch: p.1, partitions: vec![remote] };
    assert_eq!(h.txn(add), TxnResponse::AddPartitions(Ok(())));
    let end = TxnRequest::EndTxn { transactional_id: id(), producer_id: p.0, epoch: p.1, commit: true };
    h.b.handle_request(h.now, 1, 1, Request::Txn(end));
    let sends: Vec<CorrelationId> = std::iter::from_fn(|| h.b.poll_output())
        .filter_map(|o| match o {
            BrokerOutput::Send {
                to: Peer::Broker(BrokerId(1)),
                correlation_id,
                request: Request::WriteTxnMarkers { .. },
            } => Some(correlation_id),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "one marker request to events-0's leader");
    let results = vec![(p.0, remote, Some(ErrorCode::NotLeaderOrFollower))];
    h.b.handle_response(h.now, Peer::Broker(BrokerId(1)), sends[0], Response::WriteTxnMarkers { results });
    std::iter::from_fn(|| h.b.poll_output()).for_each(drop);
    let state = h.b.txn.coordinator.metadata(&id()).expect("known").state;
    (h, state)
}

#[test]
fn a_refused_marker_is_retried_and_the_transaction_stays_prepared() {
    let (mut h, state) = commit_with_a_refused_marker(Plants::none());
    assert_eq!(state, TxnState::PrepareCommit, "not complete without its marker");
    h.now += 1_000;
    h.b.handle_timeout(h.now);
    let retried = std::iter::from_fn(|| h.b.poll_output())
        .any(|o| matches!(o, BrokerOutput::Send { request: Request::WriteTxnMarkers { .. }, .. }));
    assert!(retried, "the marker is sent again");
}

#[test]
fn the_planted_bug_completes_a_transaction_whose_marker_was_refused() {
    let (_, state) = commit_with_a_refused_marker([Plant::MarkerErrorsIgnored].into_iter().collect());
    assert_eq!(state, TxnState::CompleteCommit, "completed with events-0 still open");
}
