//! Tests of the consumer, driven against `testkit::FakeCluster`.

use super::*;
use crate::client::testkit::FakeCluster;
use crate::types::{LeaderEpoch, ProducerId, Record};
use bytes::Bytes;

const T: &str = "t";

fn config(reset: AutoOffsetReset) -> ConsumerConfig {
    ConsumerConfig { auto_offset_reset: reset, ..ConsumerConfig::default() }
}

fn records(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record { key: None, value: Bytes::from(vec![i as u8]), timestamp_ms: 0 }).collect()
}

/// A consumer talking to a fake cluster that answers at once, except that
/// fetches with nothing to return are parked (the broker's long poll).
struct World {
    c: Consumer,
    cluster: FakeCluster,
    now: u64,
    parked: Vec<(BrokerId, u64, Request)>,
    /// Sends the consumer made, in order.
    sent: Vec<(BrokerId, Request)>,
    /// Every output but `Send`, in order.
    events: Vec<ConsumerOutput>,
    /// Sends `hold` selects are kept here unanswered.
    held: Vec<(BrokerId, u64, Request)>,
    hold: fn(&Request) -> bool,
}

impl World {
    fn new(reset: AutoOffsetReset, brokers: u32, partitions: u32) -> World {
        let cluster = FakeCluster::new(brokers, &[(T, partitions)]);
        let c = Consumer::new(config(reset), cluster.brokers.clone(), 3);
        World { c, cluster, now: 0, parked: vec![], sent: vec![], events: vec![], held: vec![], hold: |_| false }
    }

    fn with_config(mut self, config: ConsumerConfig) -> World {
        self.c = Consumer::new(config, self.cluster.brokers.clone(), 3);
        self
    }

    fn assign(&mut self, partitions: &[u32]) {
        self.c.assign(self.now, partitions.iter().map(|&p| (T.to_string(), p)).collect());
        self.pump();
    }

    fn tp(&self, partition: u32) -> TopicPartition {
        self.cluster.tp(T, partition)
    }

    /// Answers every send (parking empty fetches) until the consumer is quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut sends = Vec::new();
            while let Some(o) = self.c.poll_output() {
                match o {
                    ConsumerOutput::Send { broker, correlation_id, request } => {
                        self.sent.push((broker, request.clone()));
                        sends.push((broker, correlation_id, request));
                    }
                    ConsumerOutput::CloseConnection { broker } => {
                        self.parked.retain(|s| s.0 != broker);
                        self.events.push(o);
                    }
                    other => self.events.push(other),
                }
            }
            if let Some(t) = self.c.next_timeout_ms() {
                assert!(t > self.now || self.c.seeked, "timer {t} not after {}", self.now);
            }
            if sends.is_empty() {
                return;
            }
            for (broker, id, request) in sends {
                if (self.hold)(&request) {
                    self.held.push((broker, id, request));
                    continue;
                }
                let response = self.cluster.answer(broker, &request).expect("consumers always get answers");
                if let Response::Fetch { partitions } = &response {
                    if partitions.iter().all(|p| p.error.is_none() && p.records.is_empty()) {
                        self.parked.push((broker, id, request));
                        continue;
                    }
                }
                self.c.handle_response(self.now, broker, id, response);
            }
        }
        panic!("consumer never went quiet");
    }

    /// Answers parked fetches now (new data, or their max wait ran out).
    fn release(&mut self) {
        for (broker, id, request) in std::mem::take(&mut self.parked) {
            let response = self.cluster.answer(broker, &request).unwrap();
            self.c.handle_response(self.now, broker, id, response);
        }
        self.pump();
    }

    fn advance_to(&mut self, t: u64) {
        while let Some(next) = self.c.next_timeout_ms().filter(|&n| n <= t) {
            self.now = self.now.max(next);
            self.c.handle_timeout(self.now);
            self.pump();
        }
        self.now = t;
    }

    fn poll(&mut self) -> Vec<(u32, i64)> {
        let got = self.c.poll(self.now);
        self.pump();
        got.iter().map(|r| (r.tp.partition, r.record.offset.0)).collect()
    }

    fn fetches_sent(&self) -> Vec<(BrokerId, Vec<(u32, i64)>)> {
        self.sent
            .iter()
            .filter_map(|(b, r)| match r {
                Request::Fetch { partitions, .. } => {
                    Some((*b, partitions.iter().map(|p| (p.tp.partition, p.fetch_offset.0)).collect()))
                }
                _ => None,
            })
            .collect()
    }

    /// OffsetsForLeaderEpoch queries sent, as (broker, partition, current epoch, epoch asked).
    fn validations_sent(&self) -> Vec<(BrokerId, u32, i32, i32)> {
        let mut out = Vec::new();
        for (b, r) in &self.sent {
            if let Request::OffsetsForLeaderEpoch { partitions } = r {
                let queries =
                    partitions.iter().map(|q| (*b, q.tp.partition, q.current_leader_epoch.0, q.leader_epoch.0));
                out.extend(queries);
            }
        }
        out
    }

    /// Answers the held sends with `answer(request)`, or as the cluster
    /// would where that is `None`, and pumps.
    fn answer_held(&mut self, answer: impl Fn(&Request) -> Option<Response>) {
        for (broker, id, request) in std::mem::take(&mut self.held) {
            let response = answer(&request).or_else(|| self.cluster.answer(broker, &request)).expect("answered");
            self.c.handle_response(self.now, broker, id, response);
        }
        self.pump();
    }

    /// Sends of each kind, in order: `M`etadata, `L`istOffsets, `F`etch, `V`alidation.
    fn kinds_sent(&self) -> String {
        self.sent
            .iter()
            .map(|(_, r)| match r {
                Request::Metadata { .. } => 'M',
                Request::ListOffsets { .. } => 'L',
                Request::Fetch { .. } => 'F',
                Request::OffsetsForLeaderEpoch { .. } => 'V',
                other => panic!("a consumer sent {other:?}"),
            })
            .collect()
    }

    fn list_offsets_sent(&self) -> Vec<Vec<(u32, OffsetSpec)>> {
        self.sent
            .iter()
            .filter_map(|(_, r)| match r {
                Request::ListOffsets { partitions, .. } => {
                    Some(partitions.iter().map(|p| (p.tp.partition, p.spec)).collect())
                }
                _ => None,
            })
            .collect()
    }
}

#[test]
fn defaults_are_kafkas() {
    let c = ConsumerConfig::default();
    assert_eq!(c.auto_offset_reset, AutoOffsetReset::Latest);
    assert_eq!((c.fetch_max_wait_ms, c.fetch_min_bytes), (500, 1));
    assert_eq!((c.fetch_max_bytes, c.max_partition_fetch_bytes, c.max_poll_records), (52_428_800, 1_048_576, 500));
    assert_eq!((c.request_timeout_ms, c.retry_backoff_ms, c.metadata_max_age_ms), (30_000, 100, 300_000));
}

#[test]
fn earliest_reset_starts_at_the_log_start() {
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(5));
    w.cluster.truncate_front(tp, 2);
    assert_eq!(w.c.topic_partition(T, 0), None, "no metadata yet");
    w.assign(&[0]);
    assert_eq!(w.c.topic_partition(T, 0), Some(tp));
    assert_eq!(w.list_offsets_sent(), vec![vec![(0, OffsetSpec::Earliest)]]);
    assert_eq!(w.fetches_sent(), vec![(BrokerId(0), vec![(0, 2)])]);
    assert_eq!(w.c.position(T, 0), Some(Offset(2)));
    assert!(w.c.has_buffered());
    assert_eq!(w.poll(), vec![(0, 2), (0, 3), (0, 4)]);
    assert_eq!(w.c.position(T, 0), Some(Offset(5)));
    assert!(!w.c.has_buffered());
}

#[test]
fn latest_reset_sees_only_new_records() {
    let mut w = World::new(AutoOffsetReset::Latest, 1, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(5));
    w.assign(&[0]);
    assert_eq!(w.list_offsets_sent(), vec![vec![(0, OffsetSpec::Latest)]]);
    assert_eq!(w.c.position(T, 0), Some(Offset(5)));
    assert_eq!(w.poll(), vec![]);
    assert_eq!(w.parked.len(), 1, "a long poll waits at the end");
    w.cluster.append(tp, &records(2));
    w.release();
    assert_eq!(w.poll(), vec![(0, 5), (0, 6)]);
}

#[test]
fn no_reset_policy_waits_for_seek() {
    let mut w = World::new(AutoOffsetReset::None, 1, 1);
    w.cluster.append(w.tp(0), &records(3));
    w.assign(&[0]);
    assert!(w.list_offsets_sent().is_empty() && w.fetches_sent().is_empty());
    assert_eq!(w.c.position(T, 0), None);
    w.c.seek(T, 0, Offset(1));
    assert_eq!(w.c.next_timeout_ms(), Some(w.now), "a seek asks to be driven");
    w.advance_to(w.now);
    assert_eq!(w.poll(), vec![(0, 1), (0, 2)]);
}

#[test]
fn fetch_loop_covers_a_brokers_partitions_and_respects_max_poll_records() {
    let cfg = ConsumerConfig { max_poll_records: 3, ..config(AutoOffsetReset::Earliest) };
    let mut w = World::new(AutoOffsetReset::Earliest, 2, 3).with_config(cfg);
    for p in 0..3 {
        let tp = w.tp(p);
        w.cluster.append(tp, &records(5));
    }
    w.assign(&[0, 1, 2]);
    // Partitions 0 and 2 are led by broker 0: one fetch covers both.
    assert_eq!(w.fetches_sent(), vec![(BrokerId(0), vec![(0, 0), (2, 0)]), (BrokerId(1), vec![(1, 0)])]);
    let mut consumed: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for _ in 0..20 {
        let got = w.poll();
        assert!(got.len() <= 3);
        for (p, o) in got {
            consumed.entry(p).or_default().push(o);
        }
    }
    for p in 0..3 {
        assert_eq!(consumed[&p], vec![0, 1, 2, 3, 4], "partition {p}");
        assert_eq!(w.c.position(T, p), Some(Offset(5)));
    }
    // Every fetch went out only after the partition's buffer was empty.
    let mut last: BTreeMap<u32, i64> = BTreeMap::new();
    for (_, parts) in w.fetches_sent() {
        for (p, o) in parts {
            assert!(last.get(&p).is_none_or(|&prev| o > prev), "refetched {p} at {o}");
            last.insert(p, o);
        }
    }
}

#[test]
fn seek_discards_buffered_and_in_flight_data() {
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(5));
    let cfg = ConsumerConfig { max_poll_records: 2, ..config(AutoOffsetReset::Earliest) };
    w = w.with_config(cfg);
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![(0, 0), (0, 1)]);
    w.c.seek(T, 0, Offset(1));
    assert!(!w.c.has_buffered(), "buffered records dropped");
    assert_eq!(w.c.position(T, 0), Some(Offset(1)));
    assert_eq!(w.poll(), vec![], "refetches first");
    assert_eq!(w.poll(), vec![(0, 1), (0, 2)]);
    assert_eq!(w.poll(), vec![(0, 3), (0, 4)]);
    w.poll();
    // A fetch at 5 is parked; seek back while it is in flight.
    assert_eq!(w.parked.len(), 1);
    w.c.seek(T, 0, Offset(0));
    w.advance_to(w.now);
    assert_eq!(w.fetches_sent().len(), 3, "no second fetch while one is in flight");
    w.cluster.append(tp, &records(2));
    w.release(); // answers the fetch at 5 with 5..7: stale, dropped
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(w.poll().into_iter().map(|(_, o)| o));
    }
    assert_eq!(all, (0..7).collect::<Vec<i64>>());
}

#[test]
fn seek_supersedes_a_reset_in_flight() {
    let mut w = World::new(AutoOffsetReset::Latest, 1, 1);
    w.cluster.append(w.tp(0), &records(4));
    // Metadata first, then hold the ListOffsets.
    w.c.assign(0, vec![(T.to_string(), 0)]);
    let metadata = w.c.poll_output().unwrap();
    let ConsumerOutput::Send { broker, correlation_id, request } = metadata else { panic!() };
    let response = w.cluster.answer(broker, &request).unwrap();
    w.c.handle_response(0, broker, correlation_id, response);
    let Some(ConsumerOutput::Send { broker, correlation_id, request }) = w.c.poll_output() else { panic!() };
    assert!(matches!(request, Request::ListOffsets { .. }));
    w.c.seek(T, 0, Offset(1));
    let response = w.cluster.answer(broker, &request).unwrap();
    w.c.handle_response(0, broker, correlation_id, response);
    assert_eq!(w.c.position(T, 0), Some(Offset(1)), "the reset answer (4) is ignored");
    w.pump();
    assert_eq!(w.poll(), vec![(0, 1), (0, 2), (0, 3)]);
}

#[test]
fn out_of_range_resets_per_policy() {
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(3));
    w.assign(&[0]);
    w.c.seek(T, 0, Offset(100));
    w.advance_to(w.now);
    assert_eq!(w.list_offsets_sent().len(), 2, "reset again after OFFSET_OUT_OF_RANGE");
    assert_eq!(w.poll(), vec![(0, 0), (0, 1), (0, 2)]);
    assert_eq!(
        w.events,
        vec![ConsumerOutput::PositionReset { tp, from: Offset(100), to: Offset(0) }],
        "the jump is reported, not silent"
    );

    let mut w = World::new(AutoOffsetReset::None, 1, 1);
    w.cluster.append(tp, &records(3));
    w.assign(&[0]);
    w.c.seek(T, 0, Offset(100));
    w.advance_to(w.now);
    assert_eq!(w.events, vec![ConsumerOutput::Error { tp, error: ErrorCode::OffsetOutOfRange }]);
    assert_eq!(w.c.position(T, 0), Some(Offset(100)), "the position stays where it was");
    let fetches = w.fetches_sent().len();
    w.advance_to(w.now + 10_000);
    assert_eq!(w.poll(), vec![]);
    assert_eq!(w.fetches_sent().len(), fetches, "paused until seek");
    w.c.seek(T, 0, Offset(2));
    w.advance_to(w.now);
    assert_eq!(w.poll(), vec![(0, 2)]);
}

#[test]
fn disconnect_refetches_after_backoff() {
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 1);
    w.assign(&[0]);
    assert_eq!(w.parked.len(), 1);
    w.now = 1000;
    w.parked.clear();
    w.c.handle_disconnect(1000, BrokerId(0));
    w.pump();
    let fetches = w.fetches_sent().len();
    assert_eq!(w.c.next_timeout_ms(), Some(1100));
    w.cluster.append(w.tp(0), &records(1));
    w.advance_to(1100);
    assert_eq!(w.fetches_sent().len(), fetches + 1);
    assert_eq!(w.poll(), vec![(0, 0)]);
}

#[test]
fn request_timeout_closes_the_connection_and_refetches() {
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 1);
    w.assign(&[0]);
    let (_, lost_id, lost) = w.parked[0].clone();
    w.parked.clear();
    // A fetch may be held for fetch_max_wait_ms on top of the request timeout.
    assert_eq!(w.c.next_timeout_ms(), Some(30_500));
    w.advance_to(30_500);
    assert_eq!(w.events, vec![ConsumerOutput::CloseConnection { broker: BrokerId(0) }]);
    w.cluster.append(w.tp(0), &records(2));
    w.advance_to(30_600);
    assert_eq!(w.poll(), vec![(0, 0), (0, 1)]);
    // The lost request's late answer is never matched.
    let late = w.cluster.answer(BrokerId(0), &lost).unwrap();
    w.c.handle_response(30_700, BrokerId(0), lost_id, late);
    assert!(!w.c.has_buffered());
}

#[test]
fn not_leader_refreshes_metadata_and_fetches_from_the_new_leader() {
    let mut w = World::new(AutoOffsetReset::Earliest, 2, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(1));
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![(0, 0)]);
    w.now = 1000;
    w.cluster.set_leader(tp, Some(BrokerId(1)));
    w.cluster.append(tp, &records(1));
    w.release(); // broker 0 answers NOT_LEADER_OR_FOLLOWER
    w.advance_to(1100);
    assert_eq!(w.fetches_sent().last().unwrap(), &(BrokerId(1), vec![(0, 1)]));
    assert_eq!(w.poll(), vec![(0, 1)]);
}

#[test]
fn records_below_the_position_are_dropped_and_gaps_passed_through() {
    let mut w = World::new(AutoOffsetReset::None, 1, 1);
    w.assign(&[0]);
    w.c.seek(T, 0, Offset(3));
    w.c.handle_timeout(0);
    let Some(ConsumerOutput::Send { broker, correlation_id, .. }) = w.c.poll_output() else { panic!() };
    let tp = w.tp(0);
    let stored = |o: i64| StoredRecord {
        offset: Offset(o),
        timestamp_ms: 0,
        leader_epoch: LeaderEpoch::FIRST,
        key: None,
        value: Bytes::new(),
        producer: None,
        kind: crate::types::BatchKind::Data,
    };
    // A fetch answered from an earlier batch start, with a hole at 5.
    let response = Response::Fetch {
        partitions: vec![FetchPartitionResponse {
            tp,
            error: None,
            high_watermark: Offset(7),
            log_start_offset: Offset(0),
            log_end_offset: Offset(7),
            last_stable_offset: Offset(7),
            aborted: vec![],
            records: [1, 2, 3, 4, 6].into_iter().map(stored).collect(),
        }],
    };
    w.c.handle_response(0, broker, correlation_id, response);
    assert_eq!(w.poll(), vec![(0, 3), (0, 4), (0, 6)]);
    assert_eq!(w.c.position(T, 0), Some(Offset(7)), "the position moved only over returned records");
}

#[test]
fn reassignment_keeps_positions_of_kept_partitions() {
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 2);
    for p in 0..2 {
        let tp = w.tp(p);
        w.cluster.append(tp, &records(2));
    }
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![(0, 0), (0, 1)]);
    w.assign(&[0, 1]);
    assert_eq!(w.c.position(T, 0), Some(Offset(2)));
    // Partition 1 joins the next fetch to broker 0, after the long poll in flight.
    assert_eq!(w.poll(), vec![]);
    w.release();
    assert_eq!(w.poll(), vec![(1, 0), (1, 1)]);
    w.assign(&[1]);
    assert_eq!(w.c.position(T, 0), None);
}

// ---- KIP-320: positions validated after leader changes ----------------------

/// Broker 0 leads partition 0 in epoch 0 and has written `written` records;
/// the consumer (under `reset`) has returned them all.
fn consumed_in_epoch_zero(reset: AutoOffsetReset, written: usize) -> World {
    let mut w = World::new(reset, 2, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(written));
    w.assign(&[0]);
    if reset != AutoOffsetReset::Earliest {
        w.c.seek(T, 0, Offset(0));
        w.advance_to(w.now);
        w.release(); // a long poll at the latest offset, now stale
    }
    let all: Vec<(u32, i64)> = (0..written as i64).map(|o| (0, o)).collect();
    assert_eq!(w.poll(), all);
    assert_eq!(w.parked.len(), 1, "a long poll waits at broker 0");
    w
}

#[test]
fn a_new_leader_epoch_validates_the_position_before_fetching_again() {
    let mut w = consumed_in_epoch_zero(AutoOffsetReset::Earliest, 3);
    let tp = w.tp(0);
    w.now = 1_000;
    w.cluster.set_leader(tp, Some(BrokerId(1))); // epoch 1, nothing lost
    w.cluster.append(tp, &records(2));
    w.release(); // broker 0: NOT_LEADER_OR_FOLLOWER; metadata names epoch 1
    w.advance_to(1_100);
    // Asked broker 1, in epoch 1, where epoch 0 (the last record's) ends.
    assert_eq!(w.validations_sent(), vec![(BrokerId(1), 0, 1, 0)]);
    assert!(w.kinds_sent().ends_with("FMVF"), "validated before fetching: {}", w.kinds_sent());
    assert_eq!(w.fetches_sent().last().unwrap(), &(BrokerId(1), vec![(0, 3)]));
    assert_eq!(w.poll(), vec![(0, 3), (0, 4)]);
    assert!(w.events.is_empty(), "no truncation: {:?}", w.events);
    // Records of epoch 1 now: the next change asks about epoch 1.
    w.cluster.set_leader(tp, Some(BrokerId(0)));
    w.release();
    w.advance_to(1_200);
    assert_eq!(w.validations_sent().last(), Some(&(BrokerId(0), 0, 2, 1)));
}

#[test]
fn truncation_moves_the_position_back_to_the_divergence_under_either_reset_policy() {
    for reset in [AutoOffsetReset::Earliest, AutoOffsetReset::Latest] {
        let mut w = consumed_in_epoch_zero(reset, 5);
        let tp = w.tp(0);
        w.now = 1_000;
        // Broker 1 is elected uncleanly with only 0..3; it writes 3..5 anew.
        w.cluster.unclean_election(tp, BrokerId(1), 3);
        w.cluster.append(tp, &records(2));
        w.release();
        w.advance_to(1_100);
        assert_eq!(w.validations_sent(), vec![(BrokerId(1), 0, 1, 0)]);
        assert_eq!(w.events, vec![ConsumerOutput::TruncationDetected { tp, from: Offset(5), to: Offset(3) }]);
        assert_eq!(w.c.position(T, 0), Some(Offset(3)));
        // The new leader's records at 3 and 4 are read, not skipped.
        assert_eq!(w.poll(), vec![(0, 3), (0, 4)], "under {reset:?}");
        assert_eq!(w.c.position(T, 0), Some(Offset(5)));
    }
}

#[test]
fn a_leader_that_knows_no_epoch_that_old_resets_per_policy() {
    let mut w = consumed_in_epoch_zero(AutoOffsetReset::Earliest, 4);
    let tp = w.tp(0);
    w.now = 1_000;
    // Broker 1 had nothing; everything it holds is from epoch 1.
    w.cluster.unclean_election(tp, BrokerId(1), 0);
    w.cluster.append(tp, &records(2));
    w.release();
    w.advance_to(1_200);
    assert_eq!(w.list_offsets_sent().last(), Some(&vec![(0, OffsetSpec::Earliest)]));
    assert_eq!(w.events, vec![ConsumerOutput::TruncationDetected { tp, from: Offset(4), to: Offset(0) }]);
    assert_eq!(w.poll(), vec![(0, 0), (0, 1)]);
}

#[test]
fn truncation_without_a_reset_policy_pauses_until_seek() {
    let mut w = consumed_in_epoch_zero(AutoOffsetReset::None, 5);
    let tp = w.tp(0);
    w.now = 1_000;
    w.cluster.unclean_election(tp, BrokerId(1), 3);
    w.cluster.append(tp, &records(2));
    w.release();
    w.advance_to(1_100);
    let truncation = ConsumerOutput::LogTruncation { tp, position: Offset(5), divergent: Some(Offset(3)) };
    assert_eq!(w.events, vec![truncation]);
    assert_eq!(w.c.position(T, 0), Some(Offset(5)), "nothing moves without a policy");
    let fetches = w.fetches_sent().len();
    w.advance_to(20_000);
    assert_eq!((w.poll(), w.fetches_sent().len()), (vec![], fetches), "paused until seek");
    w.c.seek(T, 0, Offset(3));
    w.advance_to(w.now);
    assert_eq!(w.poll(), vec![(0, 3), (0, 4)]);
}

#[test]
fn no_fetch_while_awaiting_validation_and_fenced_or_unknown_answers_retry() {
    let mut w = consumed_in_epoch_zero(AutoOffsetReset::Earliest, 2);
    let tp = w.tp(0);
    w.hold = |r| matches!(r, Request::OffsetsForLeaderEpoch { .. });
    w.now = 1_000;
    // Same leader, new epoch: the fetch in flight is answered FENCED_LEADER_EPOCH.
    w.cluster.bump_epoch(tp);
    w.cluster.append(tp, &records(1));
    w.release();
    w.advance_to(1_100);
    assert_eq!(w.held.len(), 1, "validation sent after the metadata named epoch 1");
    let fetches = w.fetches_sent().len();
    w.advance_to(10_000);
    assert_eq!((w.poll(), w.fetches_sent().len()), (vec![], fetches), "no fetch while awaiting validation");
    // The leader answers FENCED, then UNKNOWN: refresh the metadata, ask again.
    for error in [ErrorCode::FencedLeaderEpoch, ErrorCode::UnknownLeaderEpoch] {
        let metadata_requests = w.kinds_sent().matches('M').count();
        w.answer_held(|_| {
            Some(Response::OffsetsForLeaderEpoch { partitions: vec![EpochEnd { tp, error: Some(error), end: None }] })
        });
        assert!(w.held.is_empty(), "retried only after the backoff");
        w.advance_to(w.now + 100);
        assert_eq!(w.kinds_sent().matches('M').count(), metadata_requests + 1, "metadata refreshed after {error}");
        assert_eq!(w.held.len(), 1, "validation retried after {error}");
    }
    assert_eq!(w.fetches_sent().len(), fetches);
    w.hold = |_| false;
    w.answer_held(|_| None);
    assert_eq!(w.poll(), vec![(0, 2)]);
    assert!(w.events.is_empty(), "{:?}", w.events);
}

#[test]
fn list_offsets_carries_the_leader_epoch_and_retries_when_fenced_or_unknown() {
    let mut w = World::new(AutoOffsetReset::Latest, 1, 1);
    let tp = w.tp(0);
    w.cluster.bump_epoch(tp);
    w.cluster.append(tp, &records(3));
    w.hold = |r| matches!(r, Request::ListOffsets { .. });
    w.assign(&[0]);
    let Request::ListOffsets { partitions, .. } = &w.held[0].2 else { panic!() };
    assert_eq!(partitions[0].current_leader_epoch, LeaderEpoch(1), "the epoch the metadata named");
    for error in [ErrorCode::FencedLeaderEpoch, ErrorCode::UnknownLeaderEpoch] {
        let metadata_requests = w.kinds_sent().matches('M').count();
        let refused = ListOffsetsPartitionResponse {
            tp,
            error: Some(error),
            offset: Offset(-1),
            leader_epoch: LeaderEpoch::NONE,
        };
        w.answer_held(|_| Some(Response::ListOffsets { partitions: vec![refused.clone()] }));
        assert_eq!(w.c.position(T, 0), None);
        w.advance_to(w.now + 100);
        assert_eq!(w.kinds_sent().matches('M').count(), metadata_requests + 1, "metadata refreshed after {error}");
        assert_eq!(w.held.len(), 1, "ListOffsets retried after {error}");
    }
    w.hold = |_| false;
    w.answer_held(|_| None);
    assert_eq!(w.c.position(T, 0), Some(Offset(3)));
}

#[test]
fn a_position_no_record_set_needs_no_validation() {
    let mut w = World::new(AutoOffsetReset::Latest, 2, 1);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(3));
    w.assign(&[0]);
    assert_eq!(w.c.position(T, 0), Some(Offset(3)));
    w.now = 1_000;
    w.cluster.set_leader(tp, Some(BrokerId(1)));
    w.cluster.append(tp, &records(1));
    w.release();
    w.advance_to(1_100);
    assert!(w.validations_sent().is_empty());
    assert_eq!(w.poll(), vec![(0, 3)]);
}

#[test]
fn records_buffered_under_the_old_epoch_are_dropped_and_refetched() {
    let config =
        ConsumerConfig { max_poll_records: 2, metadata_max_age_ms: 1_000, ..config(AutoOffsetReset::Earliest) };
    let mut w = World::new(AutoOffsetReset::Earliest, 1, 1).with_config(config);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(5));
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![(0, 0), (0, 1)]);
    assert!(w.c.has_buffered());
    w.cluster.bump_epoch(tp);
    w.advance_to(1_500); // the periodic refresh names epoch 1
    assert_eq!(w.validations_sent(), vec![(BrokerId(0), 0, 1, 0)]);
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.extend(w.poll());
    }
    assert_eq!(rest, vec![(0, 2), (0, 3), (0, 4)], "each record once, in order");
    assert!(w.fetches_sent().contains(&(BrokerId(0), vec![(0, 2)])), "refetched from the position");
}

// ---- transactions: isolation levels ------------------------------------------

/// One write into a log: a plain record, a record in producer `p`'s
/// transaction, or `p`'s COMMIT / ABORT marker.
#[derive(Clone, Copy, Debug)]
enum Step {
    Plain,
    Write(i64),
    Commit(i64),
    Abort(i64),
}

fn write(cluster: &mut FakeCluster, tp: TopicPartition, steps: &[Step]) {
    for &step in steps {
        match step {
            Step::Plain => cluster.append(tp, &records(1)),
            Step::Write(p) => cluster.append_txn(tp, ProducerId(p), &records(1)),
            Step::Commit(p) => cluster.end_txn(tp, ProducerId(p), true),
            Step::Abort(p) => cluster.end_txn(tp, ProducerId(p), false),
        };
    }
}

/// One broker, one partition, the consumer reading from the earliest offset.
fn txn_world(isolation: Isolation, max_poll_records: usize, max_partition_fetch_bytes: u32) -> World {
    let cfg =
        ConsumerConfig { isolation, max_poll_records, max_partition_fetch_bytes, ..config(AutoOffsetReset::Earliest) };
    World::new(AutoOffsetReset::Earliest, 1, 1).with_config(cfg)
}

/// Polls until a poll returns nothing and nothing is buffered: the offsets
/// of each poll, with the position after it.
fn poll_all(w: &mut World) -> Vec<(Vec<i64>, i64)> {
    let mut polls = Vec::new();
    for _ in 0..100 {
        let got: Vec<i64> = w.poll().into_iter().map(|(_, o)| o).collect();
        if got.is_empty() && !w.c.has_buffered() {
            return polls;
        }
        polls.push((got, w.c.position(T, 0).expect("a position").0));
    }
    panic!("still polling: {polls:?}");
}

fn offsets(polls: &[(Vec<i64>, i64)]) -> Vec<i64> {
    polls.iter().flat_map(|(got, _)| got.iter().copied()).collect()
}

fn fetch_offsets(w: &World) -> Vec<i64> {
    w.fetches_sent().into_iter().flat_map(|(_, parts)| parts.into_iter().map(|(_, o)| o)).collect()
}

/// Two producers' transactions interleaved with plain records: p1 commits
/// 0, 3 and aborts 8; p2 aborts 1 and commits 6, 7.
const INTERLEAVED: [Step; 13] = [
    Step::Write(1),
    Step::Write(2),
    Step::Plain,
    Step::Write(1),
    Step::Abort(2),
    Step::Commit(1),
    Step::Write(2),
    Step::Write(2),
    Step::Write(1),
    Step::Commit(2),
    Step::Plain,
    Step::Abort(1),
    Step::Plain,
];

#[test]
fn read_committed_returns_plain_and_committed_records_only() {
    for max_poll_records in [1, 2, 500] {
        let mut w = txn_world(Isolation::ReadCommitted, max_poll_records, 1 << 20);
        let tp = w.tp(0);
        write(&mut w.cluster, tp, &INTERLEAVED);
        w.assign(&[0]);
        let polls = poll_all(&mut w);
        assert_eq!(offsets(&polls), vec![0, 2, 3, 6, 7, 10, 12], "max_poll_records {max_poll_records}");
        assert_eq!(w.c.position(T, 0), Some(Offset(13)));
        let read_committed = |r: &Request| matches!(r, Request::Fetch { isolation: Isolation::ReadCommitted, .. });
        assert!(w.sent.iter().all(|(_, r)| !matches!(r, Request::Fetch { .. }) || read_committed(r)));
    }
}

#[test]
fn read_uncommitted_sees_everything_but_markers() {
    let mut w = txn_world(Isolation::ReadUncommitted, 500, 1 << 20);
    let tp = w.tp(0);
    write(&mut w.cluster, tp, &INTERLEAVED);
    // An open transaction does not hold read_uncommitted back.
    write(&mut w.cluster, tp, &[Step::Write(3), Step::Plain]);
    w.assign(&[0]);
    assert_eq!(offsets(&poll_all(&mut w)), vec![0, 1, 2, 3, 6, 7, 8, 10, 12, 13, 14]);
    assert_eq!(w.c.position(T, 0), Some(Offset(15)));
}

#[test]
fn a_transaction_becomes_visible_only_with_its_commit_marker() {
    let mut w = txn_world(Isolation::ReadCommitted, 500, 1 << 20);
    let tp = w.tp(0);
    write(&mut w.cluster, tp, &[Step::Write(1), Step::Write(1), Step::Plain]);
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![], "p1's open transaction holds the LSO at 0");
    assert_eq!(w.c.position(T, 0), Some(Offset(0)));
    // p2 opens one at 3; p1's COMMIT at 4 moves the LSO to 3.
    write(&mut w.cluster, tp, &[Step::Write(2), Step::Commit(1), Step::Plain]);
    w.release();
    assert_eq!(w.poll(), vec![(0, 0), (0, 1), (0, 2)]);
    assert_eq!(w.c.position(T, 0), Some(Offset(3)), "stopped at the LSO, before p1's marker");
    assert_eq!(w.poll(), vec![], "p2's transaction is still open");
    // p2 aborts: its record at 3 is skipped, as are both markers.
    write(&mut w.cluster, tp, &[Step::Abort(2)]);
    w.release();
    assert_eq!(w.poll(), vec![(0, 5)]);
    assert_eq!(w.c.position(T, 0), Some(Offset(7)), "past p2's ABORT marker at 6");
    assert_eq!(fetch_offsets(&w), vec![0, 3, 7], "markers are never fetched twice");
}

#[test]
fn a_read_committed_consumer_reset_to_latest_starts_at_the_lso() {
    for (isolation, start) in [(Isolation::ReadCommitted, 1), (Isolation::ReadUncommitted, 3)] {
        let cfg = ConsumerConfig { isolation, ..config(AutoOffsetReset::Latest) };
        let mut w = World::new(AutoOffsetReset::Latest, 1, 1).with_config(cfg);
        let tp = w.tp(0);
        // p1's transaction is open from offset 1.
        write(&mut w.cluster, tp, &[Step::Plain, Step::Write(1), Step::Write(1)]);
        w.assign(&[0]);
        w.poll();
        assert_eq!(w.c.position(T, 0), Some(Offset(start)), "{isolation:?}");
        write(&mut w.cluster, tp, &[Step::Commit(1), Step::Plain]);
        w.release();
        let got: Vec<i64> = offsets(&poll_all(&mut w));
        // Starting at the HW, read_committed would never see p1's records.
        let expected = if isolation == Isolation::ReadCommitted { vec![1, 2, 4] } else { vec![4] };
        assert_eq!(got, expected, "{isolation:?}");
    }
}

#[test]
fn a_read_committed_consumer_held_at_the_lso_has_not_caught_up() {
    let mut w = txn_world(Isolation::ReadCommitted, 500, 1 << 20);
    let tp = w.tp(0);
    write(&mut w.cluster, tp, &[Step::Plain, Step::Write(1), Step::Plain]);
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![(0, 0)]);
    w.poll();
    assert_eq!(w.c.position(T, 0), Some(Offset(1)), "held at the LSO");
    assert!(!w.c.caught_up(T, 0, 0), "p1's transaction is undecided below the HW");
    write(&mut w.cluster, tp, &[Step::Commit(1)]);
    w.release();
    assert_eq!(offsets(&poll_all(&mut w)), vec![1, 2]);
    w.poll();
    assert_eq!(w.c.position(T, 0), Some(Offset(4)), "past the marker");
    assert!(w.c.caught_up(T, 0, 0));
    assert!(!w.c.caught_up(T, 0, u64::MAX), "not by a fetch answered that late");
}

#[test]
fn an_aborted_transaction_spanning_fetches_is_skipped_in_each() {
    // 40 bytes: two records of 17 bytes per fetch.
    let mut w = txn_world(Isolation::ReadCommitted, 500, 40);
    let tp = w.tp(0);
    let steps =
        [Step::Write(1), Step::Write(1), Step::Write(1), Step::Plain, Step::Write(1), Step::Abort(1), Step::Plain];
    write(&mut w.cluster, tp, &steps);
    w.assign(&[0]);
    let polls = poll_all(&mut w);
    // Fetches at 0 (p1's 0, 1), 2 (2 and the plain 3), 4 (4 and the marker), 6.
    assert_eq!(polls, vec![(vec![], 2), (vec![3], 4), (vec![], 6), (vec![6], 7)]);
    assert_eq!(fetch_offsets(&w), vec![0, 2, 4, 6, 7]);
}

#[test]
fn max_poll_records_cuts_inside_a_transaction_and_the_position_follows() {
    // p1 commits 0..3 around p2's aborted 3; a plain record after p1's marker.
    let steps =
        [Step::Write(1), Step::Write(1), Step::Write(1), Step::Write(2), Step::Abort(2), Step::Commit(1), Step::Plain];
    let expected = [
        // Skipped records right after a poll's last record are passed with it.
        (1, vec![(vec![0], 1), (vec![1], 2), (vec![2], 6), (vec![6], 7)]),
        (2, vec![(vec![0, 1], 2), (vec![2, 6], 7)]),
    ];
    for (max_poll_records, polls) in expected {
        let mut w = txn_world(Isolation::ReadCommitted, max_poll_records, 1 << 20);
        let tp = w.tp(0);
        write(&mut w.cluster, tp, &steps);
        w.assign(&[0]);
        assert_eq!(poll_all(&mut w), polls, "max_poll_records {max_poll_records}");
        assert_eq!(fetch_offsets(&w), vec![0, 7], "one fetch served them all");
    }
}

#[test]
fn a_marker_ending_a_fetch_moves_the_position_past_it() {
    for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
        // The marker shares a fetch with the record before it.
        let mut w = txn_world(isolation, 500, 1 << 20);
        let tp = w.tp(0);
        write(&mut w.cluster, tp, &[Step::Write(1), Step::Commit(1)]);
        w.assign(&[0]);
        assert_eq!(w.poll(), vec![(0, 0)]);
        assert_eq!(w.c.position(T, 0), Some(Offset(2)), "{isolation:?}");
        // The marker is all a fetch returns: one record per fetch.
        let mut w = txn_world(isolation, 500, 1);
        let tp = w.tp(0);
        write(&mut w.cluster, tp, &[Step::Write(1), Step::Commit(1)]);
        w.assign(&[0]);
        assert_eq!(w.poll(), vec![(0, 0)]);
        assert!(w.c.has_buffered(), "the marker waits for the next poll");
        assert_eq!(w.poll(), vec![], "{isolation:?}");
        assert_eq!(w.c.position(T, 0), Some(Offset(2)));
        assert!(!w.c.has_buffered());
        assert_eq!(fetch_offsets(&w), vec![0, 1, 2], "the next fetch starts after the marker");
        write(&mut w.cluster, tp, &[Step::Plain]);
        w.release();
        assert_eq!(w.poll(), vec![(0, 2)]);
    }
}

#[test]
fn a_fetch_of_only_skipped_records_moves_the_position_to_its_end() {
    let mut w = txn_world(Isolation::ReadCommitted, 500, 1 << 20);
    let tp = w.tp(0);
    write(&mut w.cluster, tp, &[Step::Write(1), Step::Write(1), Step::Abort(1)]);
    w.assign(&[0]);
    assert!(w.c.has_buffered(), "three records to skip");
    assert_eq!(w.poll(), vec![]);
    assert_eq!(w.c.position(T, 0), Some(Offset(3)));
    assert_eq!(fetch_offsets(&w), vec![0, 3]);
    // A seek back reads them again, and skips them again.
    w.c.seek(T, 0, Offset(1));
    w.advance_to(w.now);
    w.release(); // the parked fetch at 3 is stale now
    assert_eq!(w.poll(), vec![]);
    assert_eq!(w.c.position(T, 0), Some(Offset(3)));
}

#[test]
fn a_position_set_by_skipped_records_is_validated_with_their_epoch() {
    let cfg = ConsumerConfig { isolation: Isolation::ReadCommitted, ..config(AutoOffsetReset::Earliest) };
    let mut w = World::new(AutoOffsetReset::Earliest, 2, 1).with_config(cfg);
    let tp = w.tp(0);
    w.cluster.append(tp, &records(1));
    w.assign(&[0]);
    assert_eq!(w.poll(), vec![(0, 0)]);
    // Broker 1 leads in epoch 1, where p1 writes 1, 2 and aborts them at 3.
    w.now = 1_000;
    w.cluster.set_leader(tp, Some(BrokerId(1)));
    write(&mut w.cluster, tp, &[Step::Write(1), Step::Write(1), Step::Abort(1)]);
    w.release();
    w.advance_to(1_100);
    assert_eq!(w.validations_sent(), vec![(BrokerId(1), 0, 1, 0)], "the returned record's epoch");
    assert_eq!(w.poll(), vec![]);
    assert_eq!(w.c.position(T, 0), Some(Offset(4)));
    // Epoch 0 ends at 1, below the position: only the skipped records'
    // epoch 1 (ending at 4) validates it without a false truncation.
    w.cluster.set_leader(tp, Some(BrokerId(0)));
    w.release();
    w.advance_to(1_200);
    assert_eq!(w.validations_sent().last(), Some(&(BrokerId(0), 0, 2, 1)));
    assert!(w.events.is_empty(), "no truncation: {:?}", w.events);
    assert_eq!(w.c.position(T, 0), Some(Offset(4)));
    w.cluster.append(tp, &records(1));
    w.release();
    assert_eq!(w.poll(), vec![(0, 4)]);
}

mod script {
    //! Under random losses, disconnects, leader moves and appends — plain
    //! records and transactions, committed, aborted or left open — the
    //! consumer returns every record its isolation level lets it see, of
    //! every partition, exactly once, in order, and nothing else.
    use super::*;
    use crate::types::BatchKind;
    use proptest::prelude::*;

    const BROKERS: u32 = 2;
    const PARTITIONS: u32 = 3;

    #[derive(Clone, Debug)]
    enum Action {
        Append { partition: u32, count: usize },
        TxnWrite { partition: u32, producer: i64, count: usize },
        TxnEnd { partition: u32, producer: i64, commit: bool },
        Answer { pick: usize, lose: bool },
        Disconnect { broker: u32 },
        MoveLeader { partition: u32, leader: Option<u32> },
        Poll,
        Advance { ms: u64 },
        ClockStepsBack { ms: u64 },
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            3 => (0..PARTITIONS, 1usize..4).prop_map(|(partition, count)| Action::Append { partition, count }),
            2 => (0..PARTITIONS, 1i64..3, 1usize..4)
                .prop_map(|(partition, producer, count)| Action::TxnWrite { partition, producer, count }),
            1 => (0..PARTITIONS, 1i64..3, any::<bool>())
                .prop_map(|(partition, producer, commit)| Action::TxnEnd { partition, producer, commit }),
            5 => (any::<usize>(), proptest::bool::weighted(0.15)).prop_map(|(pick, lose)| Action::Answer { pick, lose }),
            1 => (0..BROKERS).prop_map(|broker| Action::Disconnect { broker }),
            1 => (0..PARTITIONS, proptest::option::weighted(0.8, 0..BROKERS))
                .prop_map(|(partition, leader)| Action::MoveLeader { partition, leader }),
            3 => Just(Action::Poll),
            2 => prop_oneof![0u64..50, 0u64..2_000].prop_map(|ms| Action::Advance { ms }),
            1 => (1u64..5_000).prop_map(|ms| Action::ClockStepsBack { ms }),
        ]
    }

    /// What a consumer under `isolation` must return of `log`, and where its
    /// position ends: under read_uncommitted every record but markers, up to
    /// the log end; under read_committed plain records and those of
    /// committed transactions, below the last stable offset (where the
    /// earliest open transaction begins). Worked out by collecting each
    /// transaction until its marker, not from the aborted list.
    fn visible(log: &[StoredRecord], isolation: Isolation) -> (Vec<StoredRecord>, Offset) {
        let end = log.last().map_or(Offset(0), |r| r.offset.next());
        let is_marker = |r: &&StoredRecord| matches!(r.kind, BatchKind::Marker(_));
        if isolation == Isolation::ReadUncommitted {
            return (log.iter().filter(|r| !is_marker(r)).cloned().collect(), end);
        }
        let mut open: BTreeMap<ProducerId, Vec<&StoredRecord>> = BTreeMap::new();
        let mut seen = Vec::new();
        for r in log {
            let producer = r.producer.map(|s| s.id);
            match r.kind {
                BatchKind::Data => seen.push(r),
                BatchKind::Transactional => open.entry(producer.unwrap()).or_default().push(r),
                BatchKind::Marker(marker) => {
                    let txn = open.remove(&producer.unwrap()).unwrap_or_default();
                    if marker.commit {
                        seen.extend(txn);
                    }
                }
            }
        }
        let lso = open.values().map(|txn| txn[0].offset).min().unwrap_or(end);
        seen.sort_by_key(|r| r.offset);
        (seen.into_iter().filter(|r| r.offset < lso).cloned().collect(), lso)
    }

    struct Script {
        c: Consumer,
        isolation: Isolation,
        cluster: FakeCluster,
        now: u64,
        outstanding: Vec<(BrokerId, u64, Request)>,
        consumed: BTreeMap<u32, Vec<StoredRecord>>,
    }

    impl Script {
        fn pump(&mut self) {
            while let Some(o) = self.c.poll_output() {
                match o {
                    ConsumerOutput::Send { broker, correlation_id, request } => {
                        self.outstanding.push((broker, correlation_id, request))
                    }
                    ConsumerOutput::CloseConnection { broker } => self.outstanding.retain(|s| s.0 != broker),
                    ConsumerOutput::Error { tp, error } => panic!("unexpected error {error} on {tp}"),
                    ConsumerOutput::PositionReset { tp, from, to } => {
                        panic!("unexpected reset of {tp} from {from} to {to}")
                    }
                    // The fake's logs only grow: every validation must pass.
                    ConsumerOutput::TruncationDetected { tp, from, to } => {
                        panic!("false truncation of {tp} from {from} to {to}")
                    }
                    ConsumerOutput::LogTruncation { tp, position, .. } => {
                        panic!("false truncation of {tp} at {position}")
                    }
                }
            }
            if let Some(t) = self.c.next_timeout_ms() {
                assert!(t > self.now, "timer {t} not after {}", self.now);
            }
        }

        fn answer(&mut self, pick: usize, lose: bool) {
            if self.outstanding.is_empty() {
                return;
            }
            let (broker, id, request) = self.outstanding.remove(pick % self.outstanding.len());
            if !lose {
                let response = self.cluster.answer(broker, &request).unwrap();
                self.c.handle_response(self.now, broker, id, response);
            }
            self.pump();
        }

        fn poll(&mut self) {
            for r in self.c.poll(self.now) {
                self.consumed.entry(r.tp.partition).or_default().push(r.record);
            }
            self.pump();
        }

        fn advance(&mut self, ms: u64) {
            let target = self.now + ms;
            while let Some(t) = self.c.next_timeout_ms().filter(|&t| t <= target) {
                self.now = self.now.max(t);
                self.c.handle_timeout(self.now);
                self.pump();
            }
            self.now = target;
        }

        fn apply(&mut self, action: Action) {
            match action {
                Action::Append { partition, count } => {
                    let tp = self.cluster.tp(T, partition);
                    self.cluster.append(tp, &records(count));
                }
                Action::TxnWrite { partition, producer, count } => {
                    let tp = self.cluster.tp(T, partition);
                    self.cluster.append_txn(tp, ProducerId(producer), &records(count));
                }
                Action::TxnEnd { partition, producer, commit } => {
                    let tp = self.cluster.tp(T, partition);
                    self.cluster.end_txn(tp, ProducerId(producer), commit);
                }
                Action::Answer { pick, lose } => self.answer(pick, lose),
                Action::Disconnect { broker } => {
                    self.outstanding.retain(|s| s.0 != BrokerId(broker));
                    self.c.handle_disconnect(self.now, BrokerId(broker));
                    self.pump();
                }
                Action::MoveLeader { partition, leader } => {
                    let tp = self.cluster.tp(T, partition);
                    self.cluster.set_leader(tp, leader.map(BrokerId));
                }
                Action::Poll => self.poll(),
                Action::Advance { ms } => self.advance(ms),
                Action::ClockStepsBack { ms } => {
                    self.c.handle_timeout(self.now.saturating_sub(ms));
                    self.pump();
                }
            }
        }

        /// Whether the broker would park this request (a fetch with nothing to return).
        fn is_long_poll(&mut self, broker: BrokerId, request: &Request) -> bool {
            matches!(request, Request::Fetch { .. })
                && matches!(self.cluster.answer(broker, request),
                    Some(Response::Fetch { partitions }) if partitions.iter().all(|p| p.error.is_none() && p.records.is_empty()))
        }

        fn caught_up(&self) -> bool {
            (0..PARTITIONS).all(|p| {
                let (expected, end) = visible(self.cluster.log(self.cluster.tp(T, p)), self.isolation);
                self.consumed.get(&p).map_or(0, Vec::len) == expected.len() && self.c.position(T, p) == Some(end)
            })
        }

        /// Heal every fault and let the consumer catch up: answer what the
        /// broker would answer at once; long polls after their max wait.
        fn settle(&mut self) {
            for p in 0..PARTITIONS {
                let tp = self.cluster.tp(T, p);
                self.cluster.set_leader(tp, Some(BrokerId(p % BROKERS)));
            }
            for _ in 0..10_000 {
                if self.caught_up() {
                    return;
                }
                self.poll();
                let outstanding = std::mem::take(&mut self.outstanding);
                let mut immediate = None;
                for (i, (broker, _, request)) in outstanding.iter().enumerate() {
                    if immediate.is_none() && !self.is_long_poll(*broker, request) {
                        immediate = Some(i);
                    }
                }
                self.outstanding = outstanding;
                match immediate {
                    Some(i) => self.answer(i, false),
                    None => {
                        let wake = self.c.next_timeout_ms().unwrap_or(u64::MAX).min(self.now + 500);
                        self.advance(wake - self.now);
                        for _ in 0..self.outstanding.len() {
                            self.answer(0, false);
                        }
                    }
                }
            }
            panic!("not caught up after settling: {:?}", self.c.assigned);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn every_visible_record_is_returned_once_in_order(
            seed in any::<u64>(),
            max_poll_records in 1usize..6,
            read_committed in any::<bool>(),
            // 40 bytes: two records per fetch, so transactions span fetches.
            max_partition_fetch_bytes in prop_oneof![Just(40u32), Just(1u32 << 20)],
            actions in proptest::collection::vec(action(), 0..80),
        ) {
            let cluster = FakeCluster::new(BROKERS, &[(T, PARTITIONS)]);
            let isolation = if read_committed { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
            let config = ConsumerConfig {
                auto_offset_reset: AutoOffsetReset::Earliest,
                max_poll_records,
                max_partition_fetch_bytes,
                request_timeout_ms: 1_000,
                metadata_max_age_ms: 5_000,
                isolation,
                ..ConsumerConfig::default()
            };
            let c = Consumer::new(config, cluster.brokers.clone(), seed);
            let mut s = Script { c, isolation, cluster, now: 0, outstanding: vec![], consumed: BTreeMap::new() };
            s.c.assign(0, (0..PARTITIONS).map(|p| (T.to_string(), p)).collect());
            s.pump();
            for action in actions {
                s.apply(action);
            }
            s.settle();
            for p in 0..PARTITIONS {
                let (expected, end) = visible(s.cluster.log(s.cluster.tp(T, p)), isolation);
                let got = s.consumed.get(&p).cloned().unwrap_or_default();
                prop_assert_eq!(got, expected, "partition {}", p);
                prop_assert_eq!(s.c.position(T, p), Some(end));
            }
        }
    }
}
