//! What a broker's answers promise about durability: under each flush policy,
//! which acknowledged records a power loss can take; and what a full disk does
//! to the broker (it halts without acknowledging the write that failed).

use super::*;
use crate::controller::MetadataImage;
use crate::protocol::{Acks, ProduceBatch, ProducePartitionResponse};
use crate::storage::{SharedMemStorage, TestDisk};
use crate::types::{Record, TopicId};
use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;

pub(super) const T0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };

pub(super) fn layout() -> ClusterLayout {
    // Two brokers; partition 0 on broker 0 (the one under test), alone.
    ClusterLayout::single_replica(2, &[("events".to_string(), 2)])
}

pub(super) fn config(flush: FlushPolicy) -> BrokerConfig {
    BrokerConfig { log: LogConfig { flush, ..LogConfig::default() }, ..BrokerConfig::default() }
}

/// Broker 0 booted at `now_ms` on `storage` and handed the initial image (no
/// controller here): it leads partition 0 alone.
pub(super) fn start(storage: Box<dyn Storage>, flush: FlushPolicy, now_ms: u64) -> Broker {
    let mut b =
        Broker::start(BrokerId(0), config(flush), layout(), Plants::none(), storage, now_ms, 7).expect("starts");
    b.apply_image(now_ms, MetadataImage::initial(&layout()));
    drain(&mut b);
    b
}

/// Every output but the broker's own requests (its registration and
/// heartbeats go nowhere here).
pub(super) fn drain(b: &mut Broker) -> Vec<BrokerOutput> {
    std::iter::from_fn(|| b.poll_output()).filter(|o| !matches!(o, BrokerOutput::Send { .. })).collect()
}

pub(super) fn produce_request(acks: Acks, values: &[u64]) -> Request {
    let records = values
        .iter()
        .map(|v| Record { key: None, value: Bytes::copy_from_slice(&v.to_be_bytes()), timestamp_ms: 0 })
        .collect();
    Request::Produce { acks, timeout_ms: 1_000, batches: vec![ProduceBatch::plain(T0, records)] }
}

/// Produces `values` to partition 0 with acks=1; returns the answer.
pub(super) fn produce(b: &mut Broker, now_ms: u64, values: &[u64]) -> ProducePartitionResponse {
    b.handle_request(now_ms, 1, 42, produce_request(Acks::Leader, values));
    match drain(b).as_mut_slice() {
        [BrokerOutput::Respond { correlation_id: 42, response: Response::Produce { partitions }, .. }] => {
            partitions.remove(0)
        }
        other => panic!("expected one produce answer, got {other:?}"),
    }
}

/// The values partition 0 holds on a broker booted from `disk` as it is now.
fn values_after_restart(disk: &SharedMemStorage, flush: FlushPolicy) -> Vec<u64> {
    let b = start(Box::new(disk.clone()), flush, 1_000_000);
    b.replica_records(T0, Offset(0), Offset(i64::MAX))
        .iter()
        .map(|r| u64::from_be_bytes(r.value.as_ref().try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn every_batch_acks_1_only_what_a_power_loss_cannot_take() {
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::EveryBatch, 1_000);
    let mut acked = Vec::new();
    for i in 0..3u64 {
        let fsyncs = disk.fsyncs();
        let values = [10 * i, 10 * i + 1];
        let answer = produce(&mut b, 1_000 + i, &values);
        assert_eq!((answer.error, answer.base_offset), (None, Offset(2 * i as i64)));
        assert!(disk.fsyncs() > fsyncs, "produce {i} was answered with its batch fsynced");
        acked.extend(values);
    }
    // The power fails the moment the last answer leaves: a restart recovers every acked record.
    disk.power_loss();
    drop(b);
    assert_eq!(values_after_restart(&disk, FlushPolicy::EveryBatch), acked);
}

#[test]
fn never_acks_1_from_the_page_cache_and_a_power_loss_takes_it() {
    // The counterpart of the test above: without fsyncs the same answers
    // promise nothing a power loss must respect (Kafka's default).
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 1_000);
    let fsyncs = disk.fsyncs();
    assert_eq!(produce(&mut b, 1_000, &[1, 2]).error, None);
    // The epoch's first append writes leader-epoch-checkpoint durably; the
    // segment is not fsynced.
    assert_eq!(disk.fsyncs(), fsyncs + 1, "no fsync of the data before the answer");
    disk.power_loss();
    drop(b);
    assert_eq!(values_after_restart(&disk, FlushPolicy::Never), Vec::<u64>::new());
}

/// Interval flushing every 1,000 ms from a boot at 1,000: [1, 2, 3] appended
/// at 1,000 and [4] at 2,100, the timer fired every 100 ms and at `until`,
/// then the power fails. Returns what a restart recovers.
fn interval_run(until: u64) -> Vec<u64> {
    let flush = FlushPolicy::IntervalMs(1_000);
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), flush, 1_000);
    assert!(b.next_timeout_ms().is_some_and(|t| t <= 2_000), "the first flush is due at 2,000");
    assert_eq!(produce(&mut b, 1_000, &[1, 2, 3]).error, None);
    let ticks = (1_100..until).step_by(100).chain([until]);
    for now_ms in ticks {
        if now_ms >= 2_100 && b.log_end_offsets().next() == Some((T0, Offset(3))) {
            assert_eq!(produce(&mut b, 2_100, &[4]).error, None);
        }
        b.handle_timeout(now_ms);
        drain(&mut b);
    }
    disk.power_loss();
    drop(b);
    values_after_restart(&disk, flush)
}

#[test]
fn interval_flush_makes_an_append_durable_at_the_next_tick_and_not_before() {
    assert_eq!(interval_run(1_999), Vec::<u64>::new(), "not before the first flush");
    assert_eq!(interval_run(2_000), vec![1, 2, 3], "flushed at 1,000 ms after the append");
    assert_eq!(interval_run(2_999), vec![1, 2, 3], "the later append waits for the next flush");
    assert_eq!(interval_run(3_000), vec![1, 2, 3, 4]);
}

#[test]
fn a_full_disk_halts_the_broker_without_acking_the_write() {
    for acks in [Acks::Leader, Acks::All] {
        let disk = SharedMemStorage::default();
        let room = Rc::new(Cell::new(None));
        let storage = TestDisk { room: room.clone(), ..TestDisk::new(disk.clone()) };
        let mut b = start(Box::new(storage), FlushPolicy::EveryBatch, 1_000);
        assert_eq!(produce(&mut b, 1_000, &[1, 2]).error, None);
        // The disk fills up 10 bytes into the next batch.
        room.set(Some(10));
        b.handle_request(1_001, 1, 43, produce_request(acks, &[3, 4, 5]));
        let outputs = drain(&mut b);
        let halts: Vec<&String> = outputs
            .iter()
            .filter_map(|o| if let BrokerOutput::Halt { reason } = o { Some(reason) } else { None })
            .collect();
        assert_eq!(halts.len(), 1, "{acks:?}: {outputs:?}");
        assert!(halts[0].contains("no space left on device"), "{}", halts[0]);
        assert_eq!(b.halted(), Some(halts[0].as_str()));
        for output in &outputs {
            if let BrokerOutput::Respond { response: Response::Produce { partitions }, .. } = output {
                assert!(
                    partitions.iter().all(|p| p.error.is_some()),
                    "{acks:?}: the failed write was acked: {output:?}"
                );
            }
        }
        // Halted: nothing it is asked or told any more gets an answer or an effect.
        room.set(None);
        b.handle_request(1_002, 1, 44, produce_request(acks, &[6]));
        b.handle_request(1_002, 1, 45, Request::Metadata { topics: None });
        b.handle_disconnect(1_003, Peer::Controller);
        b.handle_timeout(1_000_000);
        assert_eq!(drain(&mut b), vec![], "{acks:?}");
        assert_eq!(b.next_timeout_ms(), None, "no timers");
        assert_eq!(b.log_end_offsets().next(), Some((T0, Offset(2))), "nothing appended after the halt");
        // A restart on the same disk: the acked batch is there, the partial one cut.
        drop(b);
        assert_eq!(values_after_restart(&disk, FlushPolicy::EveryBatch), vec![1, 2], "{acks:?}");
    }
}
