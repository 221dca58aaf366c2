use super::*;
use crate::controller::MetadataImage;
use crate::protocol::{Acks, FetchPartition, Isolation, ListOffsetsPartition, ProduceBatch, ProducePartitionResponse};
use crate::types::{Record, TopicId};
use bytes::Bytes;

/// Storage shared between two incarnations (a restart).
pub(super) type Disk = crate::storage::SharedMemStorage;

const T0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };
const T1: TopicPartition = TopicPartition { topic: TopicId(0), partition: 1 };

fn layout() -> ClusterLayout {
    // Two brokers; partition 0 on broker 0, partition 1 on broker 1.
    ClusterLayout::single_replica(2, &[("events".to_string(), 2)])
}

/// Broker 0, started and handed the initial image (no controller in these
/// tests): it leads partition 0 alone.
fn start(disk: &Disk, plants: Plants) -> Broker {
    let mut b = Broker::start(BrokerId(0), BrokerConfig::default(), layout(), plants, Box::new(disk.clone()), 1_000, 7)
        .expect("starts");
    b.apply_image(1_000, MetadataImage::initial(&layout()));
    b
}

/// The next answer to a client, skipping the broker's own requests (its
/// registration and heartbeats go nowhere here).
fn next_response(b: &mut Broker) -> Option<BrokerOutput> {
    loop {
        match b.poll_output() {
            Some(BrokerOutput::Send { .. }) => continue,
            other => return other,
        }
    }
}

fn records(values: &[u64]) -> Vec<Record> {
    values
        .iter()
        .map(|v| Record { key: None, value: Bytes::copy_from_slice(&v.to_be_bytes()), timestamp_ms: 0 })
        .collect()
}

fn produce(b: &mut Broker, now: u64, tp: TopicPartition, values: &[u64]) -> ProducePartitionResponse {
    let request =
        Request::Produce { acks: Acks::All, timeout_ms: 1000, batches: vec![ProduceBatch::plain(tp, records(values))] };
    b.handle_request(now, 1, 99, request);
    match next_response(b) {
        Some(BrokerOutput::Respond { response: Response::Produce { mut partitions }, correlation_id: 99, .. }) => {
            partitions.remove(0)
        }
        other => panic!("expected a produce response, got {other:?}"),
    }
}

fn fetch_request(offset: i64, max_wait_ms: u64) -> Request {
    Request::Fetch {
        replica: None,
        isolation: Isolation::ReadUncommitted,
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition {
            tp: T0,
            fetch_offset: Offset(offset),
            partition_max_bytes: 1 << 20,
            current_leader_epoch: LeaderEpoch::NONE,
        }],
    }
}

fn fetched(output: Option<BrokerOutput>) -> FetchPartitionResponse {
    match output {
        Some(BrokerOutput::Respond { response: Response::Fetch { mut partitions }, .. }) => partitions.remove(0),
        other => panic!("expected a fetch response, got {other:?}"),
    }
}

use crate::protocol::FetchPartitionResponse;

#[test]
fn produce_assigns_dense_offsets_and_fetch_reads_them() {
    let disk = Disk::default();
    let mut b = start(&disk, Plants::none());
    assert_eq!(produce(&mut b, 1_000, T0, &[1, 2, 3]).base_offset, Offset(0));
    assert_eq!(produce(&mut b, 1_001, T0, &[4]).base_offset, Offset(3));
    b.handle_request(1_002, 2, 5, fetch_request(1, 0));
    let p = fetched(next_response(&mut b));
    assert_eq!(p.error, None);
    assert_eq!(p.high_watermark, Offset(4));
    let offsets: Vec<i64> = p.records.iter().map(|r| r.offset.0).collect();
    assert_eq!(offsets, vec![1, 2, 3]);
}

#[test]
fn produce_to_a_partition_led_elsewhere_or_unknown_is_refused() {
    let mut b = start(&Disk::default(), Plants::none());
    assert_eq!(produce(&mut b, 1_000, T1, &[1]).error, Some(ErrorCode::NotLeaderOrFollower));
    let unknown = TopicPartition::new(TopicId(9), 0);
    assert_eq!(produce(&mut b, 1_000, unknown, &[1]).error, Some(ErrorCode::UnknownTopicOrPartition));
}

#[test]
fn acks_zero_gets_no_response() {
    let mut b = start(&Disk::default(), Plants::none());
    let request =
        Request::Produce { acks: Acks::None, timeout_ms: 1000, batches: vec![ProduceBatch::plain(T0, records(&[1]))] };
    b.handle_request(1_000, 1, 1, request);
    assert_eq!(next_response(&mut b), None);
    assert_eq!(b.log_end_offsets().next(), Some((T0, Offset(1))));
}

#[test]
fn long_poll_parks_until_data_arrives() {
    let mut b = start(&Disk::default(), Plants::none());
    b.handle_request(1_000, 2, 5, fetch_request(0, 500));
    assert_eq!(next_response(&mut b), None, "nothing to read: the fetch waits");
    assert_eq!(b.next_timeout_ms(), Some(1_500));
    let request =
        Request::Produce { acks: Acks::All, timeout_ms: 1000, batches: vec![ProduceBatch::plain(T0, records(&[42]))] };
    b.handle_request(1_100, 1, 99, request);
    // The parked fetch is answered as part of the append, before the produce's own answer.
    let p = fetched(next_response(&mut b));
    assert_eq!(p.records.len(), 1);
    assert!(matches!(next_response(&mut b), Some(BrokerOutput::Respond { response: Response::Produce { .. }, .. })));
    assert!(b.next_timeout_ms() > Some(1_500), "the parked fetch's deadline is gone");
}

#[test]
fn long_poll_expires_empty() {
    let mut b = start(&Disk::default(), Plants::none());
    b.handle_request(1_000, 2, 5, fetch_request(0, 500));
    b.handle_timeout(1_499);
    assert_eq!(next_response(&mut b), None);
    b.handle_timeout(1_500);
    assert!(fetched(next_response(&mut b)).records.is_empty());
}

#[test]
fn closed_connection_drops_its_parked_fetch() {
    let mut b = start(&Disk::default(), Plants::none());
    b.handle_request(1_000, 2, 5, fetch_request(0, 500));
    b.connection_closed(2);
    produce(&mut b, 1_100, T0, &[42]);
    assert_eq!(next_response(&mut b), None);
}

#[test]
fn fetch_past_the_end_is_out_of_range() {
    let mut b = start(&Disk::default(), Plants::none());
    produce(&mut b, 1_000, T0, &[1]);
    b.handle_request(1_000, 2, 5, fetch_request(5, 0));
    assert_eq!(fetched(next_response(&mut b)).error, Some(ErrorCode::OffsetOutOfRange));
}

#[test]
fn list_offsets_and_metadata() {
    let mut b = start(&Disk::default(), Plants::none());
    produce(&mut b, 1_000, T0, &[1, 2]);
    let request = Request::ListOffsets {
        isolation: Isolation::ReadUncommitted,
        partitions: vec![
            list_at(OffsetSpec::Earliest, LeaderEpoch::NONE),
            list_at(OffsetSpec::Latest, LeaderEpoch::FIRST),
        ],
    };
    b.handle_request(1_000, 1, 3, request);
    match next_response(&mut b) {
        Some(BrokerOutput::Respond { response: Response::ListOffsets { partitions }, .. }) => {
            assert_eq!(partitions[0].offset, Offset(0));
            assert_eq!(partitions[1].offset, Offset(2));
        }
        other => panic!("{other:?}"),
    }
    b.handle_request(1_000, 1, 4, Request::Metadata { topics: Some(vec!["events".into(), "nope".into()]) });
    match next_response(&mut b) {
        Some(BrokerOutput::Respond { response: Response::Metadata { brokers, topics }, .. }) => {
            assert_eq!(brokers.len(), 2);
            assert_eq!(topics[0].partitions[1].leader, Some(BrokerId(1)));
            assert_eq!(topics[1].error, Some(ErrorCode::UnknownTopicOrPartition));
        }
        other => panic!("{other:?}"),
    }
}

fn list_at(spec: OffsetSpec, current_leader_epoch: LeaderEpoch) -> ListOffsetsPartition {
    ListOffsetsPartition { tp: T0, spec, current_leader_epoch }
}

#[test]
fn list_offsets_is_fenced_by_leader_epoch_both_ways() {
    let mut b = start(&Disk::default(), Plants::none());
    produce(&mut b, 1_000, T0, &[1, 2]);
    // Broker 0 still leads partition 0, now in epoch 2.
    let mut image = MetadataImage::initial(&layout());
    image.version = 2;
    image.partitions.get_mut(&T0).expect("in the layout").leader_epoch = LeaderEpoch(2);
    b.apply_image(1_001, image);
    let asked = [LeaderEpoch(1), LeaderEpoch(3), LeaderEpoch(2), LeaderEpoch::NONE];
    let request = Request::ListOffsets {
        isolation: Isolation::ReadUncommitted,
        partitions: asked.iter().map(|&e| list_at(OffsetSpec::Earliest, e)).collect(),
    };
    b.handle_request(1_002, 1, 3, request);
    let Some(BrokerOutput::Respond { response: Response::ListOffsets { partitions }, .. }) = next_response(&mut b)
    else {
        panic!("expected a ListOffsets answer")
    };
    let got: Vec<(Option<ErrorCode>, Offset)> = partitions.iter().map(|p| (p.error, p.offset)).collect();
    assert_eq!(
        got,
        vec![
            (Some(ErrorCode::FencedLeaderEpoch), Offset(-1)),
            (Some(ErrorCode::UnknownLeaderEpoch), Offset(-1)),
            (None, Offset(0)),
            (None, Offset(0)),
        ]
    );
    // The same rule as a fetch's.
    for (epoch, expected) in [(1, Some(ErrorCode::FencedLeaderEpoch)), (3, Some(ErrorCode::UnknownLeaderEpoch))] {
        let Request::Fetch { mut partitions, replica, isolation, max_wait_ms, min_bytes, max_bytes } =
            fetch_request(0, 0)
        else {
            unreachable!()
        };
        partitions[0].current_leader_epoch = LeaderEpoch(epoch);
        b.handle_request(
            1_003,
            2,
            4,
            Request::Fetch { replica, isolation, max_wait_ms, min_bytes, max_bytes, partitions },
        );
        assert_eq!(fetched(next_response(&mut b)).error, expected, "fetch in epoch {epoch}");
    }
}

#[test]
fn restart_recovers_the_log_from_storage() {
    let disk = Disk::default();
    let mut b = start(&disk, Plants::none());
    produce(&mut b, 1_000, T0, &[1, 2, 3]);
    drop(b);
    let mut b = start(&disk, Plants::none());
    assert_eq!(produce(&mut b, 2_000, T0, &[4]).base_offset, Offset(3));
}

#[test]
fn offset_reuse_plant_hands_out_an_existing_offset_after_restart() {
    let disk = Disk::default();
    let mut b = start(&disk, Plants::none().with(Plant::OffsetReuse));
    produce(&mut b, 1_000, T0, &[1, 2, 3]);
    drop(b);
    let mut b = start(&disk, Plants::none().with(Plant::OffsetReuse));
    assert_eq!(produce(&mut b, 2_000, T0, &[4]).base_offset, Offset(2));
}

#[test]
fn fetch_skips_record_plant_drops_records_sometimes_and_only_then() {
    let run = |plants: Plants| {
        let mut b = start(&Disk::default(), plants);
        produce(&mut b, 1_000, T0, &(0..10).collect::<Vec<_>>());
        (0..200)
            .filter(|i| {
                b.handle_request(1_000, 2, *i, fetch_request(0, 0));
                fetched(next_response(&mut b)).records.len() < 10
            })
            .count()
    };
    assert_eq!(run(Plants::none()), 0);
    let skipped = run(Plants::none().with(Plant::FetchSkipsRecord));
    assert!(skipped > 0 && skipped < 50, "skipped {skipped} of 200");
}

/// An image of `layout` in which the broker leading `tp` leads it again in a
/// newer leader epoch (a failover back to it, as far as the partition can tell).
pub(super) fn image_leading_again(layout: &ClusterLayout, tp: TopicPartition) -> MetadataImage {
    let mut image = MetadataImage::initial(layout);
    image.version += 10;
    let state = image.partitions.get_mut(&tp).expect("a partition of the layout");
    state.leader_epoch = state.leader_epoch.next();
    state.partition_epoch += 1;
    image
}
