//! The broker as group coordinator: requests routed to the coordinator of
//! the `__consumer_offsets` partitions it leads, writes appended with
//! acks=all and answered once committed, groups reloaded from the log by the
//! next incarnation.

use super::*;
use crate::group::api::{
    CommittedOffset, GroupRequest, GroupResponse, Heartbeat, JoinGroup, OffsetCommit, OffsetFetch, SyncGroup,
};
use crate::group::coordinator::partition_for;
use crate::group::{Assignment, AssignorKind, GenerationId, GroupId, MemberId, Subscription};
use crate::types::TopicId;
use std::sync::Arc;

const OFFSETS_PARTITIONS: u32 = 4;
const EVENTS_0: TopicPartition = TopicPartition { topic: TopicId(0), partition: 0 };

fn layout() -> ClusterLayout {
    let topic = |name: &str, partitions| TopicRequest {
        name: name.to_string(),
        partitions,
        replication_factor: 1,
        min_insync_replicas: 1,
    };
    ClusterLayout::new(2, &[topic("events", 2), topic(CONSUMER_OFFSETS_TOPIC, OFFSETS_PARTITIONS)])
}

/// A group whose `__consumer_offsets` partition broker `b` leads (with one
/// replica per partition, partition p of topic 1 is led by broker (1 + p) % 2).
fn group_led_by(b: u32) -> GroupId {
    (0..)
        .map(|i| GroupId::new(&format!("group-{i}")))
        .find(|g| (1 + partition_for(g, OFFSETS_PARTITIONS)) % 2 == b)
        .expect("some group")
}

fn start(disk: &tests::Disk) -> Broker {
    let mut b =
        Broker::start(BrokerId(0), BrokerConfig::default(), layout(), Plants::default(), Box::new(disk.clone()), 0, 7)
            .expect("starts");
    b.apply_image(0, MetadataImage::initial(&layout()));
    b
}

/// Sends `request` on connection 1 and returns the answer, if one comes at once.
fn ask(b: &mut Broker, now: u64, correlation_id: u64, request: Request) -> Option<Response> {
    b.handle_request(now, 1, correlation_id, request);
    answer(b, correlation_id)
}

fn answer(b: &mut Broker, correlation_id: u64) -> Option<Response> {
    let mut found = None;
    while let Some(output) = b.poll_output() {
        if let BrokerOutput::Respond { correlation_id: c, response, .. } = output {
            assert_eq!(c, correlation_id, "an answer to another request");
            found = Some(response);
        }
    }
    found
}

fn join(group: &GroupId, member: Option<MemberId>) -> Request {
    Request::Group(GroupRequest::JoinGroup(JoinGroup {
        group: group.clone(),
        member,
        instance: None,
        client_id: Arc::from("consumer-0"),
        session_timeout_ms: 45_000,
        rebalance_timeout_ms: 60_000,
        protocols: vec![(AssignorKind::Range, Subscription { topics: vec![TopicId(0)], ..Subscription::default() })],
    }))
}

fn fetch_offset(b: &mut Broker, now: u64, group: &GroupId) -> Option<CommittedOffset> {
    let request = GroupRequest::OffsetFetch(OffsetFetch {
        group: group.clone(),
        partitions: Some(vec![EVENTS_0]),
        require_stable: false,
    });
    match ask(b, now, 50, Request::Group(request)) {
        Some(Response::Group(GroupResponse::OffsetFetch { error: None, offsets })) => offsets[0].1,
        other => panic!("offset fetch answered {other:?}"),
    }
}

#[test]
fn find_coordinator_names_the_leader_of_the_groups_partition() {
    let disk = tests::Disk::default();
    let mut b = start(&disk);
    for owner in [0, 1] {
        let response = ask(&mut b, 0, 1, Request::FindCoordinator { group: group_led_by(owner) });
        assert_eq!(response, Some(Response::FindCoordinator { error: None, coordinator: Some(BrokerId(owner)) }));
    }
    let elsewhere = Request::Group(GroupRequest::Heartbeat(Heartbeat {
        group: group_led_by(1),
        generation: GenerationId(1),
        member: MemberId::new("m"),
        instance: None,
    }));
    let response = ask(&mut b, 0, 2, elsewhere);
    assert_eq!(response, Some(Response::Group(GroupResponse::Heartbeat { error: Some(ErrorCode::NotCoordinator) })));
}

#[test]
fn a_group_forms_commits_and_survives_a_restart_of_its_coordinator() {
    let disk = tests::Disk::default();
    let group = group_led_by(0);
    let mut b = start(&disk);
    let Some(Response::Group(GroupResponse::JoinGroup(first))) = ask(&mut b, 0, 1, join(&group, None)) else {
        panic!("MEMBER_ID_REQUIRED at once")
    };
    assert_eq!(first.error, Some(ErrorCode::MemberIdRequired));
    let member = first.member.expect("an id");
    assert_eq!(ask(&mut b, 0, 2, join(&group, Some(member.clone()))), None, "held for the initial delay");
    b.handle_timeout(3_000);
    let Some(Response::Group(GroupResponse::JoinGroup(joined))) = answer(&mut b, 2) else { panic!("joined") };
    assert_eq!((joined.error, joined.generation, joined.leader.as_ref()), (None, GenerationId(1), Some(&member)));
    let sync = Request::Group(GroupRequest::SyncGroup(SyncGroup {
        group: group.clone(),
        generation: GenerationId(1),
        member: member.clone(),
        instance: None,
        protocol: Some(AssignorKind::Range),
        assignments: vec![(member.clone(), Assignment { partitions: vec![EVENTS_0] })],
    }));
    // One replica: the metadata write commits at its append, so the answer comes at once.
    let Some(Response::Group(GroupResponse::SyncGroup(synced))) = ask(&mut b, 3_000, 3, sync) else { panic!("synced") };
    assert_eq!((synced.error, synced.assignment.partitions), (None, vec![EVENTS_0]));
    let commit = Request::Group(GroupRequest::OffsetCommit(OffsetCommit {
        group: group.clone(),
        generation: GenerationId(1),
        member: Some(member.clone()),
        instance: None,
        offsets: vec![(EVENTS_0, CommittedOffset { offset: Offset(17), leader_epoch: LeaderEpoch(0) })],
    }));
    let committed = ask(&mut b, 3_100, 4, commit);
    assert_eq!(committed, Some(Response::Group(GroupResponse::OffsetCommit { partitions: vec![(EVENTS_0, None)] })));
    assert_eq!(fetch_offset(&mut b, 3_200, &group).map(|c| c.offset), Some(Offset(17)));

    // The next incarnation reads the group and its offsets back from the log.
    drop(b);
    let mut b = start(&disk);
    assert_eq!(fetch_offset(&mut b, 10_000, &group).map(|c| c.offset), Some(Offset(17)));
    let heartbeat = Request::Group(GroupRequest::Heartbeat(Heartbeat {
        group: group.clone(),
        generation: GenerationId(1),
        member,
        instance: None,
    }));
    let response = ask(&mut b, 10_000, 6, heartbeat);
    assert_eq!(response, Some(Response::Group(GroupResponse::Heartbeat { error: None })), "the member is still known");
}
