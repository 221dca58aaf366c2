//! Deferred coordinator loading: a broker that becomes leader of a
//! `__transaction_state` or `__consumer_offsets` partition loads its state
//! only once the HW reaches the log end it took over, so that it never acts
//! on records its predecessor appended and never committed (a later leader
//! may not have them).
//!
//! Two real brokers and a hand-run network: broker 1 leads every partition
//! first (leader epoch 1) with broker 0 following in the ISR. Broker 1
//! appends a coordinator record, broker 0 replicates it, and broker 1 crashes
//! before broker 0's next fetch can tell it so: the record sits above the HW
//! on broker 0. The controller (here: images handed to the brokers) then
//! makes broker 0 leader with broker 1 still in the ISR; the HW moves only
//! once broker 1 comes back (restarted on its disk) and fetches. With two
//! brokers the "later leader without the record" of the original bug cannot
//! be shown here; what these tests pin is the broker's side of it: nothing
//! is served or acted on from the uncommitted tail until it is committed.

use super::*;
use crate::controller::{ControllerRequest, ControllerResponse, MetadataImage, ProducerIdBlock};
use crate::group::api::{CommittedOffset, GroupRequest, GroupResponse, OffsetCommit, OffsetFetch};
use crate::group::{GenerationId, GroupId};
use crate::protocol::{Acks, MarkerRequest, ProduceBatch};
use crate::storage::SharedMemStorage;
use crate::txn::api::{TxnRequest, TxnResponse};
use crate::txn::records::TxnMetadata;
use crate::txn::{TransactionalId, TxnState};
use crate::types::{BatchKind, ProducerEpoch, ProducerId, ProducerStamp, Record, TopicId, TxnMarker};
use bytes::Bytes;

const EVENTS: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
const TXN_STATE: TopicPartition = TopicPartition { topic: TopicId(1), partition: 0 };
const OFFSETS: TopicPartition = TopicPartition { topic: TopicId(2), partition: 0 };
const ALL: [TopicPartition; 3] = [EVENTS, TXN_STATE, OFFSETS];

/// The connection clients use; broker `b`'s requests arrive on `PEER + b`.
const CLIENT: ConnId = 1;
const PEER: ConnId = 100;

fn layout() -> ClusterLayout {
    let topic = |name: &str| TopicRequest {
        name: name.to_string(),
        partitions: 1,
        replication_factor: 2,
        min_insync_replicas: 1,
    };
    ClusterLayout::new(2, &[topic("events"), topic(TRANSACTION_STATE_TOPIC), topic(CONSUMER_OFFSETS_TOPIC)])
}

/// The controller's image at `version`: each listed partition led by
/// `leader` (`None`: offline) in `leader_epoch` with ISR `isr`.
fn image(version: u64, partitions: &[(TopicPartition, Option<u32>, i32, &[u32])]) -> MetadataImage {
    let mut image = MetadataImage::initial(&layout());
    image.version = version;
    for &(tp, leader, epoch, isr) in partitions {
        let p = image.partitions.get_mut(&tp).expect("in the layout");
        p.leader = leader.map(BrokerId);
        p.leader_epoch = LeaderEpoch(epoch);
        p.partition_epoch = version as u32;
        p.isr = p.in_replica_order(&isr.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>());
        assert_eq!(p.check(), Ok(()), "{tp}");
    }
    image
}

/// Every partition led by `leader` in `leader_epoch`, both brokers in sync.
fn all_led_by(version: u64, leader: u32, leader_epoch: i32) -> MetadataImage {
    image(version, &ALL.map(|tp| (tp, Some(leader), leader_epoch, &[0, 1][..])))
}

fn app() -> TransactionalId {
    TransactionalId::new("app")
}

fn group() -> GroupId {
    GroupId::new("pipeline")
}

/// A message between the brokers.
enum Wire {
    Request { from: BrokerId, to: BrokerId, correlation_id: CorrelationId, request: Request },
    Response { from: BrokerId, to: BrokerId, correlation_id: CorrelationId, response: Response },
}

impl Wire {
    fn involves(&self, b: BrokerId) -> bool {
        match self {
            Wire::Request { from, to, .. } | Wire::Response { from, to, .. } => *from == b || *to == b,
        }
    }
}

struct Cluster {
    /// `None`: crashed.
    brokers: Vec<Option<Broker>>,
    disks: Vec<SharedMemStorage>,
    plants: Plants,
    now: u64,
    /// Messages in flight, delivered in order.
    wire: VecDeque<Wire>,
    /// Answers to the client, by correlation id.
    answers: BTreeMap<CorrelationId, Response>,
    /// Every WriteTxnMarkers a broker sent, with its sender.
    marker_requests: Vec<(BrokerId, MarkerRequest)>,
    next_correlation: CorrelationId,
}

impl Cluster {
    /// Brokers 0 and 1 started with `plants`, broker 1 leading everything in
    /// epoch 1 and broker 0 following, caught up.
    fn new(plants: Plants) -> Cluster {
        let mut c = Cluster {
            brokers: vec![None, None],
            disks: vec![SharedMemStorage::default(), SharedMemStorage::default()],
            plants,
            now: 1_000,
            wire: VecDeque::new(),
            answers: BTreeMap::new(),
            marker_requests: Vec::new(),
            next_correlation: 1,
        };
        for b in 0..2 {
            c.start(b, all_led_by(2, 1, 1));
        }
        c.settle();
        c
    }

    /// Boots broker `b` on its disk and hands it `image`.
    fn start(&mut self, b: usize, image: MetadataImage) {
        let id = BrokerId(b as u32);
        let disk = Box::new(self.disks[b].clone());
        let broker = Broker::start(id, BrokerConfig::default(), layout(), self.plants.clone(), disk, self.now, 7)
            .expect("starts");
        self.brokers[b] = Some(broker);
        self.apply(b, image);
    }

    /// Broker `b` stops at once: whatever it did not send is lost, and so is
    /// whatever is on its way to it.
    fn crash(&mut self, b: usize) {
        self.collect();
        self.brokers[b] = None;
        self.wire.retain(|m| !m.involves(BrokerId(b as u32)));
    }

    fn broker(&self, b: usize) -> &Broker {
        self.brokers[b].as_ref().expect("running")
    }

    /// Hands broker `b` the controller's `image`, then drives it as the
    /// heartbeat answer bringing the image would (`apply_image` alone does
    /// not send the follower's fetches).
    fn apply(&mut self, b: usize, image: MetadataImage) {
        let now = self.now;
        let broker = self.brokers[b].as_mut().expect("running");
        broker.apply_image(now, image);
        broker.handle_timeout(now);
        self.collect();
    }

    /// Takes every broker's outputs: the controller's part is answered at
    /// once, messages to the other broker go on the wire, answers to the
    /// client are kept.
    fn collect(&mut self) {
        let Cluster { brokers, wire, answers, marker_requests, now, .. } = self;
        for (i, slot) in brokers.iter_mut().enumerate() {
            let Some(b) = slot else { continue };
            let me = BrokerId(i as u32);
            while let Some(output) = b.poll_output() {
                match output {
                    BrokerOutput::Send { to: Peer::Controller, correlation_id, request: Request::Controller(r) } => {
                        let response = match r {
                            ControllerRequest::Register { .. } => ControllerResponse::Register(Ok(BrokerEpoch(1))),
                            ControllerRequest::Heartbeat { .. } => ControllerResponse::Heartbeat(Ok(None)),
                            ControllerRequest::AllocateProducerIds { .. } => {
                                let first = ProducerId(1_000 * (i as i64 + 1));
                                ControllerResponse::AllocateProducerIds(Ok(ProducerIdBlock { first, count: 10 }))
                            }
                            // No ISR changes but the images the tests hand out.
                            ControllerRequest::AlterPartition { .. } => continue,
                        };
                        b.handle_response(*now, Peer::Controller, correlation_id, Response::Controller(response));
                    }
                    BrokerOutput::Send { to: Peer::Broker(to), correlation_id, request } => {
                        if let Request::WriteTxnMarkers { markers } = &request {
                            marker_requests.extend(markers.iter().map(|m| (me, m.clone())));
                        }
                        wire.push_back(Wire::Request { from: me, to, correlation_id, request });
                    }
                    BrokerOutput::Respond { conn: CLIENT, correlation_id, response } => {
                        answers.insert(correlation_id, response);
                    }
                    BrokerOutput::Respond { conn, correlation_id, response } => {
                        let to = BrokerId((conn - PEER) as u32);
                        wire.push_back(Wire::Response { from: me, to, correlation_id, response });
                    }
                    BrokerOutput::CloseConnection { .. } => {}
                    other => panic!("{me}: {other:?}"),
                }
            }
        }
    }

    /// Delivers messages one by one until `stop` holds (true) or none is
    /// left (false).
    fn run_until(&mut self, stop: impl Fn(&Cluster) -> bool) -> bool {
        loop {
            self.collect();
            if stop(self) {
                return true;
            }
            let Some(message) = self.wire.pop_front() else { return false };
            let now = self.now;
            match message {
                Wire::Request { from, to, correlation_id, request } => {
                    if let Some(b) = self.brokers[to.0 as usize].as_mut() {
                        b.handle_request(now, PEER + from.0 as u64, correlation_id, request);
                    }
                }
                Wire::Response { from, to, correlation_id, response } => {
                    if let Some(b) = self.brokers[to.0 as usize].as_mut() {
                        b.handle_response(now, Peer::Broker(from), correlation_id, response);
                    }
                }
            }
        }
    }

    /// Delivers everything there is to deliver (parked fetches stay parked:
    /// the clock does not move).
    fn settle(&mut self) {
        self.run_until(|_| false);
    }

    /// Sends `request` to broker `b` as a client; its correlation id.
    fn send(&mut self, b: usize, request: Request) -> CorrelationId {
        self.next_correlation += 1;
        let correlation = self.next_correlation;
        let now = self.now;
        self.brokers[b].as_mut().expect("running").handle_request(now, CLIENT, correlation, request);
        self.collect();
        correlation
    }

    /// Sends `request` to broker `b`, lets the brokers settle, and returns
    /// the answer if there is one by then.
    fn ask(&mut self, b: usize, request: Request) -> Option<Response> {
        let correlation = self.send(b, request);
        self.settle();
        self.answers.remove(&correlation)
    }

    fn txn(&mut self, b: usize, request: TxnRequest) -> Option<TxnResponse> {
        self.ask(b, Request::Txn(request)).map(|r| match r {
            Response::Txn(r) => r,
            other => panic!("answered {other:?}"),
        })
    }

    fn group(&mut self, b: usize, request: GroupRequest) -> Option<GroupResponse> {
        self.ask(b, Request::Group(request)).map(|r| match r {
            Response::Group(r) => r,
            other => panic!("answered {other:?}"),
        })
    }

    fn log_end(&self, b: usize, tp: TopicPartition) -> Offset {
        self.broker(b).replica_state(tp).expect("a replica").log_end
    }

    /// The transaction markers in broker `b`'s replica of `events-0`.
    fn markers(&self, b: usize) -> Vec<TxnMarker> {
        let records = self.broker(b).replica_records(EVENTS, Offset(0), Offset(i64::MAX));
        records.iter().filter_map(|r| if let BatchKind::Marker(m) = r.kind { Some(m) } else { None }).collect()
    }

    /// The markers broker 0 wrote to `events-0` itself or asked another
    /// broker to write: what it did as coordinator (broker 1 never ended a
    /// transaction in these tests).
    fn markers_of_0(&self) -> Vec<TxnMarker> {
        let sent = self.marker_requests.iter().filter(|(from, _)| *from == BrokerId(0)).map(|(_, m)| m.marker);
        self.markers(0).into_iter().chain(sent).collect()
    }

    /// The retry of the EndTxn(commit) of `app`'s transaction in `epoch`.
    fn end_txn_retry(&mut self, b: usize, (producer_id, epoch): (ProducerId, ProducerEpoch)) -> Option<TxnResponse> {
        self.txn(b, TxnRequest::EndTxn { transactional_id: app(), producer_id, epoch, commit: true })
    }

    /// OffsetFetch of `events-0` for `group()`: its offset, or the error.
    fn fetch_offset(&mut self, b: usize) -> Result<Option<i64>, ErrorCode> {
        let fetch = OffsetFetch { group: group(), partitions: Some(vec![EVENTS]), require_stable: false };
        match self.group(b, GroupRequest::OffsetFetch(fetch)) {
            Some(GroupResponse::OffsetFetch { error: None, offsets }) => Ok(offsets[0].1.map(|c| c.offset.0)),
            Some(GroupResponse::OffsetFetch { error: Some(e), .. }) => Err(e),
            other => panic!("answered {other:?}"),
        }
    }
}

/// A commit of `events-0`'s offset from outside any generation.
fn offset_commit(offset: i64) -> GroupRequest {
    GroupRequest::OffsetCommit(OffsetCommit {
        group: group(),
        generation: GenerationId::NONE,
        member: None,
        instance: None,
        offsets: vec![(EVENTS, CommittedOffset { offset: Offset(offset), leader_epoch: LeaderEpoch(1) })],
    })
}

/// Sends `request` to broker 1, delivers messages until broker 0's replica
/// of `tp` holds everything broker 1's does, and crashes broker 1 there:
/// broker 0 has the record `request` made broker 1 append, and the HW it
/// learned is below it. The request is never answered.
fn replicate_then_crash_broker_1(c: &mut Cluster, tp: TopicPartition, request: Request) {
    let before = c.log_end(1, tp);
    let correlation = c.send(1, request);
    let appended = c.log_end(1, tp);
    assert!(appended > before, "broker 1 appended a record to {tp}");
    assert!(c.run_until(|c| c.log_end(0, tp) == appended), "broker 0 replicates it");
    c.crash(1);
    assert_eq!(c.answers.remove(&correlation), None, "not committed, not answered");
    let state = c.broker(0).replica_state(tp).expect("a replica");
    assert!(state.high_watermark < state.log_end, "above broker 0's HW: {state:?}");
}

/// `app`'s transaction of `[1, 2]` in `events-0` through coordinator broker
/// 1, whose EndTxn(commit) appended a PrepareCommit that only broker 0
/// replicated before broker 1 crashed. Returns the cluster and the
/// transaction's producer id and epoch.
fn prepare_commit_above_the_hw(plants: Plants) -> (Cluster, (ProducerId, ProducerEpoch)) {
    let mut c = Cluster::new(plants);
    let init = TxnRequest::InitProducerId { transactional_id: app(), timeout_ms: 60_000, current: None };
    let Some(TxnResponse::InitProducerId(Ok(p))) = c.txn(1, init) else { panic!("initialized") };
    let add =
        TxnRequest::AddPartitions { transactional_id: app(), producer_id: p.0, epoch: p.1, partitions: vec![EVENTS] };
    assert_eq!(c.txn(1, add), Some(TxnResponse::AddPartitions(Ok(()))));
    let records = [1u8, 2].map(|v| Record { key: None, value: Bytes::copy_from_slice(&[v]), timestamp_ms: 0 }).to_vec();
    let stamp = ProducerStamp { id: p.0, epoch: p.1, base_sequence: 0 };
    let batch = ProduceBatch { tp: EVENTS, records, producer: Some(stamp), transactional_id: Some(app()) };
    let produced = c.ask(1, Request::Produce { acks: Acks::All, timeout_ms: 1_000, batches: vec![batch] });
    let Some(Response::Produce { partitions }) = produced else { panic!("produce answered {produced:?}") };
    assert_eq!(partitions[0].error, None);
    let end = TxnRequest::EndTxn { transactional_id: app(), producer_id: p.0, epoch: p.1, commit: true };
    replicate_then_crash_broker_1(&mut c, TXN_STATE, Request::Txn(end));
    // The tail above broker 0's HW is that PrepareCommit.
    let state = c.broker(0).replica_state(TXN_STATE).expect("a replica");
    let tail = c.broker(0).replica_records(TXN_STATE, state.high_watermark, state.log_end);
    let decoded: Vec<(TransactionalId, TxnState)> =
        tail.iter().map(|r| TxnMetadata::decode(r).map(|(id, m)| (id, m.state)).expect("decodes")).collect();
    assert_eq!(decoded, vec![(app(), TxnState::PrepareCommit)]);
    (c, p)
}

/// Broker 0 leading every partition in epoch 2, broker 1 still in the ISR.
fn broker_0_leads(version: u64) -> MetadataImage {
    all_led_by(version, 0, 2)
}

/// The answer to an EndTxn while the id's partition is not loaded.
fn not_coordinator() -> Option<TxnResponse> {
    Some(TxnResponse::EndTxn(Err(ErrorCode::NotCoordinator)))
}

#[test]
fn a_new_transaction_coordinator_serves_nothing_until_its_hw_reaches_the_log_end_it_took_over() {
    let (mut c, p) = prepare_commit_above_the_hw(Plants::none());
    c.apply(0, broker_0_leads(3));
    let took_over = c.log_end(0, TXN_STATE);
    let state = c.broker(0).replica_state(TXN_STATE).expect("a replica");
    assert!(state.leading && state.high_watermark < took_over, "{state:?}");
    // The client's EndTxn was never answered: it finds broker 0 and retries there.
    let find = c.ask(0, Request::FindTxnCoordinator { transactional_id: app() });
    assert_eq!(find, Some(Response::FindCoordinator { error: None, coordinator: Some(BrokerId(0)) }));
    assert_eq!(c.end_txn_retry(0, p), not_coordinator(), "the PrepareCommit is not committed yet");
    let init = TxnRequest::InitProducerId { transactional_id: app(), timeout_ms: 60_000, current: Some(p) };
    assert_eq!(c.txn(0, init), Some(TxnResponse::InitProducerId(Err(ErrorCode::NotCoordinator))));
    assert_eq!(c.markers_of_0(), vec![], "no markers from an uncommitted decision");

    // Broker 1 comes back, follows broker 0 and fetches: the HW reaches the
    // log end broker 0 took over, and the PrepareCommit is loaded from it.
    c.start(1, broker_0_leads(3));
    c.settle();
    assert!(c.broker(0).replica_state(TXN_STATE).expect("a replica").high_watermark >= took_over);
    let next = ProducerEpoch(p.1 .0 + 1);
    assert_eq!(c.end_txn_retry(0, p), Some(TxnResponse::EndTxn(Ok(next))), "answered as committed");
    let commit = TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(2) };
    assert_eq!(c.markers(0), vec![commit], "the loaded PrepareCommit's markers");
    assert_eq!(c.markers(1), vec![commit], "replicated");
}

#[test]
fn with_coordinator_loads_uncommitted_the_new_coordinator_acts_on_the_uncommitted_tail_at_once() {
    let (mut c, p) = prepare_commit_above_the_hw(Plants::none().with(Plant::CoordinatorLoadsUncommitted));
    c.apply(0, broker_0_leads(3));
    let state = c.broker(0).replica_state(TXN_STATE).expect("a replica");
    assert!(state.leading && state.high_watermark < state.log_end, "{state:?}");
    // The old behaviour: the uncommitted PrepareCommit answers the retry and gets markers.
    let next = ProducerEpoch(p.1 .0 + 1);
    assert_eq!(c.end_txn_retry(0, p), Some(TxnResponse::EndTxn(Ok(next))));
    // (Written locally or sent to the leader of events-0 that the broker's
    // image named when the load ran.)
    assert_eq!(c.markers_of_0(), vec![TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(2) }]);
    let still = c.broker(0).replica_state(TXN_STATE).expect("a replica");
    assert!(still.high_watermark < state.log_end, "while the PrepareCommit is still uncommitted: {still:?}");
}

/// Offset 5 committed on both brokers, then an OffsetCommit of 9 that only
/// broker 0 replicated before broker 1 crashed; broker 0 then leads.
fn offset_commit_above_the_hw(plants: Plants) -> Cluster {
    let mut c = Cluster::new(plants);
    let committed = c.group(1, offset_commit(5));
    assert_eq!(committed, Some(GroupResponse::OffsetCommit { partitions: vec![(EVENTS, None)] }));
    replicate_then_crash_broker_1(&mut c, OFFSETS, Request::Group(offset_commit(9)));
    c.apply(0, broker_0_leads(3));
    c
}

#[test]
fn a_new_group_coordinator_serves_no_group_until_its_hw_reaches_the_log_end_it_took_over() {
    let mut c = offset_commit_above_the_hw(Plants::none());
    let took_over = c.log_end(0, OFFSETS);
    assert_eq!(c.fetch_offset(0), Err(ErrorCode::NotCoordinator));
    let refused = Some(GroupResponse::OffsetCommit { partitions: vec![(EVENTS, Some(ErrorCode::NotCoordinator))] });
    assert_eq!(c.group(0, offset_commit(11)), refused);
    assert_eq!(c.log_end(0, OFFSETS), took_over, "nothing written meanwhile");
    c.start(1, broker_0_leads(3));
    c.settle();
    assert_eq!(c.fetch_offset(0), Ok(Some(9)), "the formerly uncommitted commit, committed now");
}

#[test]
fn with_coordinator_loads_uncommitted_a_new_group_coordinator_serves_the_uncommitted_offset_at_once() {
    let mut c = offset_commit_above_the_hw(Plants::none().with(Plant::CoordinatorLoadsUncommitted));
    let state = c.broker(0).replica_state(OFFSETS).expect("a replica");
    assert_eq!(c.fetch_offset(0), Ok(Some(9)), "an offset a later leader may not have");
    assert!(state.high_watermark < state.log_end, "{state:?}");
}

#[test]
fn a_coordinator_that_loses_leadership_before_its_hw_catches_up_never_loads_and_the_next_leadership_loads_afresh() {
    // Between the leaderships the partition goes offline (broker 0 idle), or
    // broker 1 leads it (broker 0 follows, and hears nothing: broker 1 is down).
    for interlude in [None, Some(1)] {
        let (mut c, p) = prepare_commit_above_the_hw(Plants::none());
        // Broker 0 leads events-0 and __consumer_offsets-0 alone throughout:
        // markers commit at their append.
        let image = |version, txn_state| {
            image(version, &[(EVENTS, Some(0), 2, &[0][..]), (OFFSETS, Some(0), 2, &[0][..]), txn_state])
        };
        c.apply(0, image(3, (TXN_STATE, Some(0), 2, &[0, 1][..])));
        assert_eq!(c.end_txn_retry(0, p), not_coordinator());
        c.apply(0, image(4, (TXN_STATE, interlude, 3, &[0, 1][..])));
        assert!(c.broker(0).coordinator_loads.is_empty(), "{interlude:?}: the pending load is dropped");
        assert_eq!(c.end_txn_retry(0, p), not_coordinator(), "{interlude:?}");
        assert_eq!(c.markers_of_0(), vec![], "{interlude:?}: never loaded, never acted on");

        // Leader again, alone in the ISR: the HW is the log end at once, so
        // it loads at once, in the new epoch.
        c.apply(0, image(5, (TXN_STATE, Some(0), 4, &[0][..])));
        let next = ProducerEpoch(p.1 .0 + 1);
        assert_eq!(c.end_txn_retry(0, p), Some(TxnResponse::EndTxn(Ok(next))), "{interlude:?}");
        let commit = TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(4) };
        assert_eq!(c.markers(0), vec![commit], "{interlude:?}");
    }
}

/// The same broker leading again in a newer epoch with no image in
/// between (the controller moved leadership away and back while its
/// heartbeats went unanswered) takes over a log end just as a new leader
/// does: the state loaded in the old epoch must not go on serving until
/// the HW reaches it, or a write made from it meanwhile (appended above the
/// HW) would be read back by the load as if committed.
#[test]
fn a_coordinator_reelected_in_a_newer_epoch_serves_nothing_until_its_hw_reaches_the_new_log_end() {
    let mut c = Cluster::new(Plants::none());
    for b in 0..2 {
        c.apply(b, broker_0_leads(3));
    }
    c.settle();
    let init = TxnRequest::InitProducerId { transactional_id: app(), timeout_ms: 60_000, current: None };
    let answer = c.txn(0, init);
    let Some(TxnResponse::InitProducerId(Ok(p))) = answer else { panic!("initialized by broker 0: {answer:?}") };
    let add =
        TxnRequest::AddPartitions { transactional_id: app(), producer_id: p.0, epoch: p.1, partitions: vec![EVENTS] };
    assert_eq!(c.txn(0, add), Some(TxnResponse::AddPartitions(Ok(()))));
    // Broker 1, in the ISR, goes down: broker 0's PrepareCommit stays above the HW.
    c.crash(1);
    let end = TxnRequest::EndTxn { transactional_id: app(), producer_id: p.0, epoch: p.1, commit: true };
    let first = c.send(0, Request::Txn(end));
    c.settle();
    assert_eq!(c.answers.remove(&first), None);
    c.apply(0, all_led_by(4, 0, 4));
    assert_eq!(c.answers.remove(&first), Some(Response::Txn(not_coordinator().expect("some"))), "its write failed");
    let took_over = c.log_end(0, TXN_STATE);
    let state = c.broker(0).replica_state(TXN_STATE).expect("a replica");
    assert!(state.leading && state.high_watermark < took_over, "{state:?}");
    assert_eq!(c.end_txn_retry(0, p), not_coordinator(), "the epoch-2 state (Ongoing) does not answer");
    assert_eq!(c.log_end(0, TXN_STATE), took_over, "and writes nothing");
    assert_eq!(c.markers_of_0(), vec![]);
    c.start(1, all_led_by(4, 0, 4));
    c.settle();
    let next = ProducerEpoch(p.1 .0 + 1);
    assert_eq!(c.end_txn_retry(0, p), Some(TxnResponse::EndTxn(Ok(next))), "loaded in epoch 4, PrepareCommit and all");
    assert_eq!(c.markers_of_0(), vec![TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(4) }]);
}
