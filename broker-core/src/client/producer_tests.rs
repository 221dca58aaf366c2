//! Tests of the producer, driven against `testkit::FakeCluster`.

use super::*;
use crate::client::partitioner::partition_for_key;
use crate::client::testkit::FakeCluster;
use crate::protocol::{ErrorCode, ProduceBatch};

const T: &str = "t";

fn config() -> ProducerConfig {
    ProducerConfig { linger_ms: 0, ..ProducerConfig::default() }
}

/// Value = id as 8 bytes, so every record is 24 bytes.
fn rec(id: u64, partition: Option<u32>) -> ProducerRecord {
    ProducerRecord {
        id: RecordId(id),
        topic: T.into(),
        partition,
        key: None,
        value: Bytes::copy_from_slice(&id.to_be_bytes()),
    }
}

const REC_BYTES: usize = 24;

#[derive(Debug, Default)]
struct Out {
    sends: Vec<(BrokerId, u64, Request)>,
    closes: Vec<BrokerId>,
    done: Vec<(RecordId, SendOutcome)>,
    all: Vec<ProducerOutput>,
}

impl Out {
    fn produces(&self) -> Vec<&(BrokerId, u64, Request)> {
        self.sends.iter().filter(|s| matches!(s.2, Request::Produce { .. })).collect()
    }
    fn metadata_requests(&self) -> Vec<&(BrokerId, u64, Request)> {
        self.sends.iter().filter(|s| matches!(s.2, Request::Metadata { .. })).collect()
    }
}

fn outputs(p: &mut Producer) -> Out {
    let mut out = Out::default();
    while let Some(o) = p.poll_output() {
        match &o {
            ProducerOutput::Send { broker, correlation_id, request } => {
                out.sends.push((*broker, *correlation_id, request.clone()))
            }
            ProducerOutput::CloseConnection { broker } => out.closes.push(*broker),
            ProducerOutput::Completed { id, outcome } => out.done.push((*id, outcome.clone())),
            ProducerOutput::TxnReady { .. } | ProducerOutput::TxnEnded { .. } => {
                unreachable!("only transactional producers say so")
            }
        }
        out.all.push(o);
    }
    if let Some(t) = p.next_timeout_ms() {
        assert!(t > p.now_ms, "timer {t} not in the future of {}", p.now_ms);
    }
    out
}

/// Record ids per batch of a Produce request, by partition.
fn batch_ids(request: &Request) -> Vec<(u32, Vec<u64>)> {
    let Request::Produce { batches, .. } = request else { panic!("not a produce: {request:?}") };
    batches
        .iter()
        .map(|ProduceBatch { tp, records, .. }| {
            let ids = records.iter().map(|r| u64::from_be_bytes(r.value[..].try_into().unwrap())).collect();
            (tp.partition, ids)
        })
        .collect()
}

/// A producer at `now_ms` that has fetched metadata from `cluster`.
fn ready_producer(config: ProducerConfig, cluster: &FakeCluster, now_ms: u64) -> Producer {
    let mut p = Producer::new(config, cluster.brokers.clone(), 1);
    p.handle_timeout(now_ms);
    let out = outputs(&mut p);
    assert_eq!(out.sends.len(), 1);
    let (broker, id, request) = &out.sends[0];
    assert_eq!(request, &Request::Metadata { topics: None });
    p.handle_response(now_ms, *broker, *id, cluster.metadata());
    assert!(outputs(&mut p).all.is_empty());
    p
}

fn answer(p: &mut Producer, cluster: &mut FakeCluster, now_ms: u64, send: &(BrokerId, u64, Request)) {
    let response = cluster.answer(send.0, &send.2).expect("a response");
    p.handle_response(now_ms, send.0, send.1, response);
}

fn produce_error(request: &Request, error: ErrorCode) -> Response {
    let Request::Produce { batches, .. } = request else { panic!("not a produce") };
    Response::Produce {
        partitions: batches
            .iter()
            .map(|b| ProducePartitionResponse { tp: b.tp, error: Some(error), base_offset: Offset(-1) })
            .collect(),
    }
}

#[test]
fn defaults_are_kafkas() {
    let c = ProducerConfig::default();
    assert_eq!(c.acks, Acks::All);
    assert_eq!((c.linger_ms, c.batch_size_bytes, c.max_in_flight_per_broker), (5, 16_384, 5));
    assert_eq!((c.request_timeout_ms, c.retries, c.retry_backoff_ms), (30_000, 2_147_483_647, 100));
    assert_eq!((c.delivery_timeout_ms, c.metadata_max_age_ms), (120_000, 300_000));
    assert_eq!((c.partitioner, c.max_queued_records), (PartitionerKind::Sticky, 100_000));
}

#[test]
fn metadata_is_fetched_before_anything_is_produced() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = Producer::new(config(), vec![BrokerId(0)], 1);
    assert_eq!(p.next_timeout_ms(), Some(0), "wants to start at once");
    p.send(3, rec(1, None));
    let out = outputs(&mut p);
    assert_eq!(out.sends.len(), 1);
    assert_eq!(out.metadata_requests().len(), 1);
    assert_eq!(p.queued_records(), 1);
    answer(&mut p, &mut cluster, 4, &out.sends[0]);
    let out = outputs(&mut p);
    let produces = out.produces();
    assert_eq!(produces.len(), 1);
    assert_eq!(batch_ids(&produces[0].2), vec![(0, vec![1])]);
    let Request::Produce { batches, acks, .. } = &produces[0].2 else { unreachable!() };
    assert_eq!(*acks, Acks::All);
    assert_eq!(batches[0].records[0].timestamp_ms, 3, "timestamp is the send() time");
    answer(&mut p, &mut cluster, 5, produces[0]);
    let out = outputs(&mut p);
    let tp = cluster.tp(T, 0);
    assert_eq!(out.done, vec![(RecordId(1), SendOutcome::Ok { tp, offset: Offset(0) })]);
    assert_eq!(p.queued_records(), 0);
}

#[test]
fn batches_close_when_full_and_otherwise_after_linger() {
    let cluster = FakeCluster::new(1, &[(T, 1)]);
    let cfg = ProducerConfig { linger_ms: 10, batch_size_bytes: 3 * REC_BYTES, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    for id in 0..7 {
        p.send(2, rec(id, Some(0)));
    }
    let out = outputs(&mut p);
    let sent: Vec<_> = out.produces().iter().map(|s| batch_ids(&s.2)).collect();
    assert_eq!(sent, vec![vec![(0, vec![0, 1, 2])], vec![(0, vec![3, 4, 5])]], "full batches go at once");
    assert_eq!(p.next_timeout_ms(), Some(12), "the partial batch lingers");
    p.handle_timeout(11);
    assert!(outputs(&mut p).sends.is_empty());
    p.handle_timeout(12);
    let sent: Vec<_> = outputs(&mut p).produces().iter().map(|s| batch_ids(&s.2)).collect();
    assert_eq!(sent, vec![vec![(0, vec![6])]]);
}

#[test]
fn ready_batches_are_grouped_per_leader() {
    let cluster = FakeCluster::new(2, &[(T, 4)]);
    let cfg = ProducerConfig { linger_ms: 10, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    for id in 0..8 {
        p.send(0, rec(id, Some(id as u32 % 4)));
    }
    assert!(outputs(&mut p).sends.is_empty());
    p.handle_timeout(10);
    let out = outputs(&mut p);
    let sent: Vec<_> = out.produces().iter().map(|s| (s.0, batch_ids(&s.2))).collect();
    assert_eq!(
        sent,
        vec![
            (BrokerId(0), vec![(0, vec![0, 4]), (2, vec![2, 6])]),
            (BrokerId(1), vec![(1, vec![1, 5]), (3, vec![3, 7])]),
        ]
    );
}

#[test]
fn in_flight_requests_per_broker_are_limited() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let cfg = ProducerConfig { max_in_flight_per_broker: 2, batch_size_bytes: 1, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    for id in 0..5 {
        p.send(0, rec(id, Some(0)));
    }
    let out = outputs(&mut p);
    let produces: Vec<_> = out.produces().into_iter().cloned().collect();
    assert_eq!(produces.len(), 2);
    assert_eq!(batch_ids(&produces[0].2), vec![(0, vec![0])]);
    answer(&mut p, &mut cluster, 1, &produces[0]);
    let out = outputs(&mut p);
    assert_eq!(out.done.len(), 1);
    assert_eq!(out.produces().len(), 1, "one slot freed, one request sent");
    assert_eq!(batch_ids(&out.produces()[0].2), vec![(0, vec![2])]);
}

#[test]
fn a_response_completes_every_record_at_base_plus_index() {
    let cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(ProducerConfig { linger_ms: 10, ..config() }, &cluster, 0);
    for id in 0..3 {
        p.send(0, rec(id, Some(0)));
    }
    p.handle_timeout(10);
    let out = outputs(&mut p);
    let (broker, corr, _) = out.produces()[0].clone();
    let tp = cluster.tp(T, 0);
    let response =
        Response::Produce { partitions: vec![ProducePartitionResponse { tp, error: None, base_offset: Offset(40) }] };
    p.handle_response(11, broker, corr, response);
    let done = outputs(&mut p).done;
    let expected: Vec<_> =
        (0..3).map(|i| (RecordId(i), SendOutcome::Ok { tp, offset: Offset(40 + i as i64) })).collect();
    assert_eq!(done, expected);
}

#[test]
fn retriable_error_is_retried_after_backoff() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(config(), &cluster, 0);
    p.send(0, rec(7, Some(0)));
    let first = outputs(&mut p).produces()[0].clone();
    p.handle_response(5, first.0, first.1, produce_error(&first.2, ErrorCode::NotEnoughReplicas));
    let out = outputs(&mut p);
    assert!(out.all.is_empty(), "nothing before the backoff: {:?}", out.all);
    assert_eq!(p.next_timeout_ms(), Some(105));
    p.handle_timeout(105);
    let out = outputs(&mut p);
    let retry = out.produces()[0].clone();
    assert_eq!(batch_ids(&retry.2), vec![(0, vec![7])], "the same batch");
    assert_ne!(retry.1, first.1, "a new correlation id");
    answer(&mut p, &mut cluster, 106, &retry);
    let tp = cluster.tp(T, 0);
    assert_eq!(outputs(&mut p).done, vec![(RecordId(7), SendOutcome::Ok { tp, offset: Offset(0) })]);
}

#[test]
fn a_clock_stepping_back_stalls_timers_but_stamps_records_as_given() {
    let cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(ProducerConfig { linger_ms: 10, ..config() }, &cluster, 0);
    p.send(1000, rec(1, Some(0)));
    assert_eq!(p.next_timeout_ms(), Some(1010));
    p.send(400, rec(2, Some(0))); // the node's clock stepped back 600 ms
    p.handle_timeout(1005);
    assert!(outputs(&mut p).produces().is_empty(), "linger runs on the monotonic clock");
    p.handle_timeout(1010);
    let out = outputs(&mut p);
    let Request::Produce { batches, .. } = &out.produces()[0].2 else { unreachable!() };
    let stamps: Vec<u64> = batches[0].records.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(stamps, vec![1000, 400], "timestamps are the wall clock as given");
}

#[test]
fn zero_backoff_still_waits_a_millisecond() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(ProducerConfig { retry_backoff_ms: 0, ..config() }, &cluster, 0);
    p.send(10, rec(1, Some(0)));
    let s = outputs(&mut p).produces()[0].clone();
    p.handle_response(10, s.0, s.1, produce_error(&s.2, ErrorCode::NotEnoughReplicas));
    assert!(outputs(&mut p).produces().is_empty());
    assert_eq!(p.next_timeout_ms(), Some(11));
    p.handle_timeout(11);
    let retry = outputs(&mut p).produces()[0].clone();
    answer(&mut p, &mut cluster, 11, &retry);
    assert!(matches!(&outputs(&mut p).done[..], [(_, SendOutcome::Ok { .. })]));
}

#[test]
fn request_timeout_closes_the_connection_retries_and_ends_in_info() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let cfg = ProducerConfig { request_timeout_ms: 1000, delivery_timeout_ms: 2500, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    p.send(0, rec(1, Some(0)));
    assert_eq!(outputs(&mut p).produces().len(), 1);
    assert_eq!(p.next_timeout_ms(), Some(1000));
    p.handle_timeout(1000);
    let out = outputs(&mut p);
    assert_eq!(out.closes, vec![BrokerId(0)]);
    assert!(out.produces().is_empty() && out.done.is_empty());
    // A refresh goes out too (the broker may be gone); answer it.
    for m in out.metadata_requests() {
        answer(&mut p, &mut cluster, 1000, m);
    }
    assert_eq!(p.next_timeout_ms(), Some(1100));
    p.handle_timeout(1100);
    let out = outputs(&mut p);
    assert_eq!(out.produces().len(), 1, "retried after the backoff");
    // Never answer produces again: the record gives up at its delivery timeout.
    let mut now;
    let outcome = loop {
        now = p.next_timeout_ms().expect("a timer while records are queued");
        p.handle_timeout(now);
        let out = outputs(&mut p);
        for m in out.metadata_requests() {
            answer(&mut p, &mut cluster, now, m);
        }
        if let Some((_, outcome)) = out.done.into_iter().next() {
            break outcome;
        }
    };
    assert_eq!(now, 2500);
    assert!(matches!(outcome, SendOutcome::Info { tp: Some(_), .. }), "{outcome:?}");
    assert!(cluster.log(cluster.tp(T, 0)).is_empty());
}

#[test]
fn definite_error_fails_at_once() {
    let cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(config(), &cluster, 0);
    p.send(0, rec(1, Some(0)));
    let s = outputs(&mut p).produces()[0].clone();
    p.handle_response(1, s.0, s.1, produce_error(&s.2, ErrorCode::MessageTooLarge));
    let done = outputs(&mut p).done;
    assert!(matches!(&done[..], [(RecordId(1), SendOutcome::Fail { error })] if error.contains("MESSAGE_TOO_LARGE")));
    assert_eq!(p.queued_records(), 0);
}

/// Answers each attempt with the next error; returns the outcome.
fn outcome_after_errors(errors: &[ErrorCode], retries: u32) -> SendOutcome {
    let cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(ProducerConfig { retries, ..config() }, &cluster, 0);
    p.send(0, rec(1, Some(0)));
    let mut now = 0;
    for &error in errors {
        let out = outputs(&mut p);
        assert!(out.done.is_empty());
        let s = out.produces()[0].clone();
        p.handle_response(now, s.0, s.1, produce_error(&s.2, error));
        now = p.next_timeout_ms().unwrap();
        p.handle_timeout(now);
    }
    let out = outputs(&mut p);
    assert_eq!(out.done.len(), 1, "{out:?}");
    out.done[0].1.clone()
}

#[test]
fn exhausted_retries_fail_only_if_every_attempt_was_definite() {
    let nee = ErrorCode::NotEnoughReplicas;
    let outcome = outcome_after_errors(&[nee, nee, nee], 2);
    assert!(matches!(&outcome, SendOutcome::Fail { error } if error.contains("NOT_ENOUGH_REPLICAS")));
    let outcome = outcome_after_errors(&[ErrorCode::RequestTimedOut, nee, nee], 2);
    assert!(matches!(outcome, SendOutcome::Info { .. }), "{outcome:?}");
    // A non-retriable error after an ambiguous attempt is still unknown.
    let outcome = outcome_after_errors(&[ErrorCode::NetworkException, ErrorCode::InvalidRequest], 5);
    assert!(matches!(outcome, SendOutcome::Info { .. }), "{outcome:?}");
}

#[test]
fn records_never_sent_fail_at_their_delivery_timeout() {
    // No broker ever answers metadata.
    let cfg = ProducerConfig { delivery_timeout_ms: 1000, ..config() };
    let mut p = Producer::new(cfg.clone(), vec![BrokerId(0), BrokerId(1)], 1);
    p.send(0, rec(1, None));
    let outcome = loop {
        let out = outputs(&mut p);
        for s in &out.sends {
            p.handle_disconnect(p.now_ms, s.0);
        }
        if let Some((_, outcome)) = out.done.into_iter().next() {
            break outcome;
        }
        let t = p.next_timeout_ms().unwrap();
        p.handle_timeout(t);
    };
    assert_eq!(p.now_ms, 1000);
    assert!(matches!(outcome, SendOutcome::Fail { .. }), "{outcome:?}");

    // A partition without a leader: queued, never sent, failed.
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    cluster.set_leader(cluster.tp(T, 0), None);
    let mut p = ready_producer(cfg, &cluster, 0);
    p.send(0, rec(2, Some(0)));
    let outcome = loop {
        let out = outputs(&mut p);
        assert!(out.produces().is_empty());
        let now = p.now_ms;
        for m in out.metadata_requests() {
            answer(&mut p, &mut cluster, now, m);
        }
        if let Some((_, outcome)) = out.done.into_iter().next() {
            break outcome;
        }
        let t = p.next_timeout_ms().unwrap();
        p.handle_timeout(t);
    };
    assert!(matches!(outcome, SendOutcome::Fail { .. }), "{outcome:?}");
}

#[test]
fn acks_zero_completes_as_info_once_written() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(ProducerConfig { acks: Acks::None, ..config() }, &cluster, 0);
    p.send(0, rec(1, Some(0)));
    let out = outputs(&mut p);
    assert!(matches!(
        &out.all[..],
        [
            ProducerOutput::Send { request: Request::Produce { acks: Acks::None, .. }, .. },
            ProducerOutput::Completed { id: RecordId(1), outcome: SendOutcome::Info { .. } },
        ]
    ));
    assert_eq!(p.queued_records(), 0);
    // A response nobody asked for is ignored.
    let s = &out.sends[0];
    assert!(cluster.answer(s.0, &s.2).is_none());
    p.handle_response(1, s.0, s.1, produce_error(&s.2, ErrorCode::NotLeaderOrFollower));
    assert!(outputs(&mut p).all.is_empty());
}

#[test]
fn full_queue_and_oversized_records_fail_at_once() {
    let mut p = Producer::new(ProducerConfig { max_queued_records: 2, ..config() }, vec![BrokerId(0)], 1);
    for id in 0..3 {
        p.send(0, rec(id, None));
    }
    let out = outputs(&mut p);
    assert!(matches!(&out.done[..], [(RecordId(2), SendOutcome::Fail { error })] if error.contains("queue full")));
    assert_eq!(p.queued_records(), 2);
    let mut big = rec(9, None);
    big.value = Bytes::from(vec![0u8; MAX_REQUEST_SIZE_BYTES]);
    let mut p = Producer::new(config(), vec![BrokerId(0)], 1);
    p.send(0, big);
    let out = outputs(&mut p);
    assert!(matches!(&out.done[..], [(RecordId(9), SendOutcome::Fail { error })] if error.contains("TOO_LARGE")));
}

#[test]
fn not_leader_refreshes_metadata_and_retries_at_the_new_leader() {
    let mut cluster = FakeCluster::new(2, &[(T, 1)]);
    let mut p = ready_producer(config(), &cluster, 0);
    let tp = cluster.tp(T, 0);
    p.send(1000, rec(1, Some(0)));
    let s = outputs(&mut p).produces()[0].clone();
    assert_eq!(s.0, BrokerId(0));
    cluster.set_leader(tp, Some(BrokerId(1)));
    answer(&mut p, &mut cluster, 1001, &s); // NOT_LEADER_OR_FOLLOWER
    let out = outputs(&mut p);
    assert!(out.done.is_empty());
    assert_eq!(out.metadata_requests().len(), 1, "refreshes at once (last attempt long ago)");
    answer(&mut p, &mut cluster, 1002, out.metadata_requests()[0]);
    assert!(outputs(&mut p).all.is_empty());
    assert_eq!(p.next_timeout_ms(), Some(1101));
    p.handle_timeout(1101);
    let out = outputs(&mut p);
    let retry = out.produces()[0].clone();
    assert_eq!(retry.0, BrokerId(1));
    answer(&mut p, &mut cluster, 1102, &retry);
    assert_eq!(outputs(&mut p).done, vec![(RecordId(1), SendOutcome::Ok { tp, offset: Offset(0) })]);
}

#[test]
fn keyed_records_hash_and_explicit_partitions_win() {
    let mut cluster = FakeCluster::new(1, &[(T, 8)]);
    let mut p = ready_producer(ProducerConfig { max_in_flight_per_broker: 50, ..config() }, &cluster, 0);
    let mut expected = Vec::new();
    for id in 0..20u64 {
        let mut r = rec(id, None);
        let key = format!("k{id}");
        r.key = Some(Bytes::from(key.clone()));
        if id % 5 == 0 {
            r.partition = Some(3);
        }
        expected.push(if id % 5 == 0 { 3 } else { partition_for_key(key.as_bytes(), 8) });
        p.send(0, r);
    }
    let out = outputs(&mut p);
    let mut got = vec![u32::MAX; 20];
    for s in out.produces() {
        for (partition, ids) in batch_ids(&s.2) {
            for id in ids {
                got[id as usize] = partition;
            }
        }
        answer(&mut p, &mut cluster, 0, s);
    }
    assert_eq!(got, expected);
    let mut bad = rec(99, Some(8));
    bad.key = None;
    p.send(1, bad);
    let out = outputs(&mut p);
    assert!(out.done.iter().any(|(id, o)| *id == RecordId(99)
        && matches!(o, SendOutcome::Fail { error } if error.contains("invalid partition"))));
}

fn keyless_partitions(kind: PartitionerKind) -> Vec<Vec<u32>> {
    let cluster = FakeCluster::new(1, &[(T, 4)]);
    let cfg = ProducerConfig { linger_ms: 10, partitioner: kind, max_in_flight_per_broker: 50, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    let mut rounds = Vec::new();
    for round in 0..3u64 {
        for i in 0..4 {
            p.send(round * 10, rec(round * 4 + i, None));
        }
        p.handle_timeout(round * 10 + 10);
        let out = outputs(&mut p);
        let mut partitions: Vec<u32> = out
            .produces()
            .iter()
            .flat_map(|s| batch_ids(&s.2))
            .flat_map(|(p, ids)| std::iter::repeat_n(p, ids.len()))
            .collect();
        partitions.sort_unstable();
        rounds.push(partitions);
    }
    rounds
}

#[test]
fn keyless_records_stick_until_sent_or_go_round_robin() {
    let rounds = keyless_partitions(PartitionerKind::Sticky);
    for r in &rounds {
        assert!(r.iter().all(|&p| p == r[0]), "one partition per linger round: {rounds:?}");
    }
    assert!(rounds.windows(2).all(|w| w[0][0] != w[1][0]), "moves after each send: {rounds:?}");
    let rounds = keyless_partitions(PartitionerKind::RoundRobin);
    assert!(rounds.iter().all(|r| r == &vec![0, 1, 2, 3]), "{rounds:?}");
}

#[test]
fn max_in_flight_one_keeps_a_partition_to_one_batch_in_flight() {
    let mut cluster = FakeCluster::new(2, &[(T, 2)]);
    let cfg = ProducerConfig { max_in_flight_per_broker: 1, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    let tp = cluster.tp(T, 0);
    p.send(1000, rec(1, Some(0)));
    let first = outputs(&mut p).produces()[0].clone();
    assert_eq!(first.0, BrokerId(0));
    // The leader moves to broker 1, and the producer learns it.
    cluster.set_leader(tp, Some(BrokerId(1)));
    p.handle_disconnect(1001, BrokerId(1));
    let out = outputs(&mut p);
    answer(&mut p, &mut cluster, 1001, out.metadata_requests()[0]);
    // Broker 1 has room, but partition 0 has a batch in flight: held back.
    p.send(1002, rec(2, Some(0)));
    assert!(outputs(&mut p).produces().is_empty());
    answer(&mut p, &mut cluster, 1200, &first); // NOT_LEADER_OR_FOLLOWER from broker 0
    let out = outputs(&mut p);
    assert!(out.produces().is_empty(), "record 1 is in backoff and goes first");
    for m in out.metadata_requests() {
        answer(&mut p, &mut cluster, 1200, m);
    }
    p.handle_timeout(1300);
    let out = outputs(&mut p);
    let produces: Vec<_> = out.produces().iter().map(|s| (s.0, batch_ids(&s.2))).collect();
    assert_eq!(produces, vec![(BrokerId(1), vec![(0, vec![1])])]);
    answer(&mut p, &mut cluster, 1301, out.produces()[0]);
    let out = outputs(&mut p);
    assert_eq!(out.done, vec![(RecordId(1), SendOutcome::Ok { tp, offset: Offset(0) })]);
    answer(&mut p, &mut cluster, 1302, out.produces()[0]);
    assert_eq!(outputs(&mut p).done, vec![(RecordId(2), SendOutcome::Ok { tp, offset: Offset(1) })]);
}

#[test]
fn in_flight_record_past_delivery_timeout_is_info_and_late_answer_ignored() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let cfg = ProducerConfig { delivery_timeout_ms: 500, request_timeout_ms: 1000, ..config() };
    let mut p = ready_producer(cfg, &cluster, 0);
    p.send(0, rec(1, Some(0)));
    let s = outputs(&mut p).produces()[0].clone();
    assert_eq!(p.next_timeout_ms(), Some(500));
    p.handle_timeout(500);
    let out = outputs(&mut p);
    assert!(matches!(&out.done[..], [(RecordId(1), SendOutcome::Info { .. })]), "{out:?}");
    answer(&mut p, &mut cluster, 600, &s);
    assert!(outputs(&mut p).all.is_empty());
    assert_eq!(p.queued_records(), 0);
}

#[test]
fn disconnect_fails_in_flight_requests_as_ambiguous_and_retries() {
    let mut cluster = FakeCluster::new(1, &[(T, 1)]);
    let mut p = ready_producer(ProducerConfig { retries: 1, ..config() }, &cluster, 0);
    p.send(0, rec(1, Some(0)));
    let _lost = outputs(&mut p).produces()[0].clone();
    p.handle_disconnect(10, BrokerId(0));
    let out = outputs(&mut p);
    assert!(out.done.is_empty() && out.closes.is_empty());
    for m in out.metadata_requests() {
        answer(&mut p, &mut cluster, 10, m);
    }
    p.handle_timeout(110);
    let retry = outputs(&mut p).produces()[0].clone();
    p.handle_disconnect(111, BrokerId(0));
    let out = outputs(&mut p);
    assert!(matches!(&out.done[..], [(RecordId(1), SendOutcome::Info { .. })]), "{out:?}");
    // A late answer to a failed request is never matched.
    answer(&mut p, &mut cluster, 112, &retry);
    assert!(outputs(&mut p).done.is_empty());
}

mod script {
    //! Every record ends in exactly one outcome, and the outcome is true,
    //! under a random script of sends, answers, losses and disconnects.
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;
    use std::collections::BTreeMap;

    const BROKERS: u32 = 3;
    const PARTITIONS: u32 = 4;

    #[derive(Clone, Debug)]
    enum Fate {
        Ok,
        AppendThenError(ErrorCode),
        RejectWith(ErrorCode),
        AppendAndLose,
        Lose,
    }

    #[derive(Clone, Debug)]
    enum Action {
        Send {
            key: Option<u8>,
            partition: Option<u32>,
        },
        Answer {
            pick: usize,
            fate: Fate,
        },
        Disconnect {
            broker: u32,
        },
        Advance {
            ms: u64,
        },
        MoveLeader {
            partition: u32,
            leader: Option<u32>,
        },
        /// An input whose clock reads earlier than the last one (skew).
        ClockStepsBack {
            ms: u64,
        },
    }

    fn error_code() -> impl Strategy<Value = ErrorCode> {
        select(vec![
            ErrorCode::NotLeaderOrFollower,
            ErrorCode::RequestTimedOut,
            ErrorCode::NetworkException,
            ErrorCode::NotEnoughReplicas,
            ErrorCode::UnknownTopicOrPartition,
            ErrorCode::KafkaStorageError,
            ErrorCode::CorruptMessage,
            ErrorCode::MessageTooLarge,
            ErrorCode::InvalidRequest,
        ])
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![
            4 => Just(Fate::Ok),
            // A broker that appended can only answer with an indefinite error.
            1 => select(vec![ErrorCode::NotLeaderOrFollower, ErrorCode::RequestTimedOut, ErrorCode::NetworkException])
                .prop_map(Fate::AppendThenError),
            2 => error_code().prop_map(Fate::RejectWith),
            1 => Just(Fate::AppendAndLose),
            1 => Just(Fate::Lose),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (proptest::option::of(0u8..6), proptest::option::weighted(0.3, 0..PARTITIONS))
                .prop_map(|(key, partition)| Action::Send { key, partition }),
            5 => (any::<usize>(), fate()).prop_map(|(pick, fate)| Action::Answer { pick, fate }),
            1 => (0..BROKERS).prop_map(|broker| Action::Disconnect { broker }),
            3 => prop_oneof![0u64..20, 0u64..3000].prop_map(|ms| Action::Advance { ms }),
            1 => (0..PARTITIONS, proptest::option::weighted(0.8, 0..BROKERS))
                .prop_map(|(partition, leader)| Action::MoveLeader { partition, leader }),
            1 => (1u64..5_000).prop_map(|ms| Action::ClockStepsBack { ms }),
        ]
    }

    fn producer_config() -> impl Strategy<Value = ProducerConfig> {
        (
            select(vec![Acks::All, Acks::Leader, Acks::None]),
            select(vec![1usize, 2, 5]),
            select(vec![0u64, 5, 50]),
            select(vec![REC_BYTES, 100, 16_384]),
            select(vec![0u32, 2, i32::MAX as u32]),
            select(vec![300u64, 2_000, 10_000]),
            select(vec![100u64, 1_000]),
            select(vec![PartitionerKind::Sticky, PartitionerKind::RoundRobin]),
            any::<bool>(),
        )
            .prop_map(
                |(acks, in_flight, linger, batch, retries, delivery, request, partitioner, idempotence)| {
                    // Idempotence takes acks=all and retries, as Kafka insists.
                    let (acks, retries) = if idempotence { (Acks::All, retries.max(2)) } else { (acks, retries) };
                    ProducerConfig {
                        acks,
                        linger_ms: linger,
                        batch_size_bytes: batch,
                        max_in_flight_per_broker: in_flight,
                        request_timeout_ms: request,
                        retries,
                        retry_backoff_ms: 50,
                        delivery_timeout_ms: delivery,
                        metadata_max_age_ms: 5_000,
                        partitioner,
                        max_queued_records: 30,
                        idempotence,
                        ..ProducerConfig::default()
                    }
                },
            )
    }

    struct World {
        p: Producer,
        cluster: FakeCluster,
        now: u64,
        outstanding: Vec<(BrokerId, u64, Request)>,
        next_id: u64,
        outcomes: BTreeMap<RecordId, SendOutcome>,
        appended: BTreeMap<RecordId, Vec<(TopicPartition, Offset)>>,
    }

    impl World {
        fn pump(&mut self) {
            while let Some(o) = self.p.poll_output() {
                match o {
                    ProducerOutput::Send { broker, correlation_id, request } => {
                        for (_, ids) in batch_ids_if_produce(&request) {
                            for id in ids {
                                assert!(!self.outcomes.contains_key(&RecordId(id)), "sent after completion");
                            }
                        }
                        self.outstanding.push((broker, correlation_id, request));
                    }
                    ProducerOutput::CloseConnection { broker } => self.outstanding.retain(|s| s.0 != broker),
                    ProducerOutput::TxnReady { .. } | ProducerOutput::TxnEnded { .. } => {
                        unreachable!("not transactional")
                    }
                    ProducerOutput::Completed { id, outcome } => {
                        assert!(id.0 < self.next_id, "completed a record never sent");
                        assert!(self.outcomes.insert(id, outcome).is_none(), "{id:?} completed twice");
                    }
                }
            }
            if let Some(t) = self.p.next_timeout_ms() {
                assert!(t > self.now, "timer {t} not after now {}", self.now);
            }
        }

        /// The leader handles the request's batches (an idempotent retry or
        /// gap is answered, not appended).
        fn append(&mut self, request: &Request) -> Vec<ProducePartitionResponse> {
            let Request::Produce { batches, .. } = request else { unreachable!() };
            let mut answers = Vec::new();
            for ProduceBatch { tp, records, producer, .. } in batches {
                let end_before = self.cluster.log(*tp).last().map(|r| r.offset);
                let answer = match self.cluster.produce(*tp, records, *producer) {
                    Ok(base) => ProducePartitionResponse { tp: *tp, error: None, base_offset: base },
                    Err(e) => ProducePartitionResponse { tp: *tp, error: Some(e), base_offset: Offset(-1) },
                };
                if self.cluster.log(*tp).last().map(|r| r.offset) != end_before {
                    for (i, r) in records.iter().enumerate() {
                        let id = RecordId(u64::from_be_bytes(r.value[..].try_into().unwrap()));
                        self.appended.entry(id).or_default().push((*tp, Offset(answer.base_offset.0 + i as i64)));
                    }
                }
                answers.push(answer);
            }
            answers
        }

        fn answer(&mut self, pick: usize, fate: Fate) {
            if self.outstanding.is_empty() {
                return;
            }
            let (broker, id, request) = self.outstanding.remove(pick % self.outstanding.len());
            let response = match (&request, fate) {
                (_, Fate::Lose) => None,
                (Request::Metadata { .. }, Fate::AppendAndLose) => None,
                (Request::Metadata { .. }, _) => Some(self.cluster.metadata()),
                (Request::InitProducerId, Fate::Ok | Fate::AppendThenError(_)) => self.cluster.answer(broker, &request),
                (Request::InitProducerId, Fate::RejectWith(_)) => {
                    Some(Response::InitProducerId { result: Err(ErrorCode::CoordinatorLoadInProgress) })
                }
                (Request::InitProducerId, _) => None,
                (Request::Produce { .. }, Fate::AppendAndLose) => {
                    self.append(&request);
                    None
                }
                (Request::Produce { .. }, Fate::Ok) => Some(Response::Produce { partitions: self.append(&request) }),
                (Request::Produce { .. }, Fate::AppendThenError(e)) => {
                    // A batch refused (a gap) gets its refusal, not the error.
                    let answers = self.append(&request);
                    let partitions = answers
                        .into_iter()
                        .map(|a| {
                            if a.error.is_some() {
                                a
                            } else {
                                ProducePartitionResponse { error: Some(e), base_offset: Offset(-1), ..a }
                            }
                        })
                        .collect();
                    Some(Response::Produce { partitions })
                }
                (Request::Produce { .. }, Fate::RejectWith(e)) => Some(produce_error(&request, e)),
                _ => unreachable!("the producer sends only metadata, InitProducerId and produce requests"),
            };
            if let Some(response) = response {
                // Also for acks=0: the producer must ignore it.
                self.p.handle_response(self.now, broker, id, response);
            }
            self.pump();
        }

        fn advance(&mut self, ms: u64) {
            let target = self.now + ms;
            while let Some(t) = self.p.next_timeout_ms().filter(|&t| t <= target) {
                self.now = self.now.max(t);
                self.p.handle_timeout(self.now);
                self.pump();
            }
            self.now = target;
            // Let the producer see the time too: its timers are judged against it.
            self.p.handle_timeout(target);
            self.pump();
        }

        fn apply(&mut self, action: Action) {
            match action {
                Action::Send { key, partition } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let mut r = rec(id, partition);
                    r.key = key.map(|k| Bytes::from(vec![k]));
                    self.p.send(self.now, r);
                    self.pump();
                }
                Action::Answer { pick, fate } => self.answer(pick, fate),
                Action::Disconnect { broker } => {
                    self.outstanding.retain(|s| s.0 != BrokerId(broker));
                    self.p.handle_disconnect(self.now, BrokerId(broker));
                    self.pump();
                }
                Action::Advance { ms } => self.advance(ms),
                Action::MoveLeader { partition, leader } => {
                    let tp = self.cluster.tp(T, partition);
                    self.cluster.set_leader(tp, leader.map(BrokerId));
                }
                Action::ClockStepsBack { ms } => {
                    self.p.handle_timeout(self.now.saturating_sub(ms));
                    self.pump();
                }
            }
        }

        /// Heal: every leader present, every request answered Ok.
        fn settle(&mut self) {
            for partition in 0..PARTITIONS {
                let tp = self.cluster.tp(T, partition);
                self.cluster.set_leader(tp, Some(BrokerId(partition % BROKERS)));
            }
            for _ in 0..10_000 {
                if self.p.queued_records() == 0 {
                    return;
                }
                if self.outstanding.is_empty() {
                    let t = self.p.next_timeout_ms().expect("queued records need a timer");
                    self.advance(t.saturating_sub(self.now));
                } else {
                    self.answer(0, Fate::Ok);
                }
            }
            panic!("records still queued after settling: {}", self.p.queued_records());
        }
    }

    fn batch_ids_if_produce(request: &Request) -> Vec<(u32, Vec<u64>)> {
        match request {
            Request::Produce { .. } => batch_ids(request),
            _ => vec![],
        }
    }

    /// Found by the script below: a batch appended with its answer lost,
    /// while the four after it are acknowledged and a sixth is written, is
    /// out of the broker's window when retried. The producer must not take
    /// the refusal for a gap (and write it again under a bumped epoch).
    #[test]
    fn a_retry_out_of_the_window_after_a_later_ack_is_not_written_again() {
        use Action::*;
        let config = ProducerConfig {
            acks: Acks::All,
            linger_ms: 0,
            batch_size_bytes: 24,
            max_in_flight_per_broker: 5,
            request_timeout_ms: 100,
            retries: 2,
            retry_backoff_ms: 50,
            delivery_timeout_ms: 10000,
            metadata_max_age_ms: 5000,
            partitioner: PartitionerKind::RoundRobin,
            max_queued_records: 30,
            idempotence: true,
            ..ProducerConfig::default()
        };
        let actions = vec![
            Send { key: None, partition: None },
            Send { key: Some(3), partition: None },
            Answer { pick: 3468925478569162021, fate: Fate::Ok },
            Answer { pick: 0, fate: Fate::RejectWith(ErrorCode::NotLeaderOrFollower) },
            Send { key: None, partition: None },
            Send { key: Some(1), partition: None },
            Send { key: None, partition: Some(1) },
            Send { key: Some(1), partition: None },
            Advance { ms: 17 },
            Send { key: None, partition: None },
            Send { key: Some(3), partition: None },
            Advance { ms: 1436 },
            Send { key: Some(1), partition: None },
            Send { key: None, partition: None },
            Advance { ms: 1847 },
            Answer { pick: 6555396698116405093, fate: Fate::Ok },
            Disconnect { broker: 0 },
            Answer { pick: 9180426094819388649, fate: Fate::AppendAndLose },
            Send { key: Some(1), partition: None },
        ];
        let cluster = FakeCluster::new(BROKERS, &[(T, PARTITIONS)]);
        let p = Producer::new(config, cluster.brokers.clone(), 80134556948658816);
        let mut w = World {
            p,
            cluster,
            now: 0,
            outstanding: vec![],
            next_id: 0,
            outcomes: BTreeMap::new(),
            appended: BTreeMap::new(),
        };
        w.advance(0);
        for action in actions {
            w.apply(action);
        }
        w.settle();
        for (id, appended) in &w.appended {
            assert_eq!(appended.len(), 1, "{id:?} written more than once: {appended:?}");
        }
        assert!(matches!(w.outcomes[&RecordId(2)], SendOutcome::Info { .. }), "appended, offset unknown");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn every_record_completes_once_and_truthfully(
            config in producer_config(),
            seed in any::<u64>(),
            actions in proptest::collection::vec(action(), 0..80),
        ) {
            // Idempotence keeps each partition's order through retries.
            let ordered = config.max_in_flight_per_broker == 1 || config.idempotence;
            let idempotent = config.idempotence;
            let cluster = FakeCluster::new(BROKERS, &[(T, PARTITIONS)]);
            let p = Producer::new(config, cluster.brokers.clone(), seed);
            let mut w = World {
                p, cluster, now: 0, outstanding: vec![], next_id: 0,
                outcomes: BTreeMap::new(), appended: BTreeMap::new(),
            };
            w.advance(0);
            for action in actions {
                w.apply(action);
            }
            w.settle();
            prop_assert_eq!(w.outcomes.len() as u64, w.next_id, "every record completed");
            let mut ok_by_tp: BTreeMap<TopicPartition, Vec<(RecordId, Offset)>> = BTreeMap::new();
            for (id, outcome) in &w.outcomes {
                let appended = w.appended.get(id).cloned().unwrap_or_default();
                if idempotent {
                    prop_assert!(appended.len() <= 1, "{:?} written more than once: {:?}", id, appended);
                }
                match outcome {
                    SendOutcome::Ok { tp, offset } => {
                        prop_assert!(appended.contains(&(*tp, *offset)), "{:?} Ok at {}:{} not in log", id, tp, offset);
                        ok_by_tp.entry(*tp).or_default().push((*id, *offset));
                    }
                    SendOutcome::Fail { error } => {
                        prop_assert!(appended.is_empty(), "{:?} failed ({}) but was appended at {:?}", id, error, appended);
                    }
                    SendOutcome::Info { .. } => {}
                }
            }
            if ordered {
                for (tp, oks) in ok_by_tp {
                    let offsets: Vec<Offset> = oks.iter().map(|(_, o)| *o).collect();
                    prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{} acked out of send order: {:?}", tp, oks);
                }
            }
        }
    }
}
