//! Random clients against one coordinator: joins (with and without ids),
//! syncs from current and stale generations, heartbeats, leaves, commits,
//! time passing, writes committed or failed, and coordinator failovers
//! (unload, then a reload from the committed records). Checked:
//! - every request is answered at most once, and — once the clients stop,
//!   the writes are settled and the sessions have run out — exactly once;
//! - an acknowledged commit came from the group's current generation and
//!   one of its members (or from outside while the group was empty), as the
//!   coordinator stood when it took the commit;
//! - the generation never goes back while one coordinator holds the group,
//!   and a reload never goes below the last generation written to the log
//!   (a generation whose assignment was never written may be lost with the
//!   coordinator, as in Kafka: its members' ids die with it, which is what
//!   keeps them fenced).

use super::tests::Harness;
use super::*;
use crate::group::api::{CommittedOffset, Heartbeat, LeaveGroup, OffsetCommit, SyncGroup};
use crate::group::{Assignment, AssignorKind, GenerationId};
use crate::types::{LeaderEpoch, Offset};
use proptest::prelude::*;

const CLIENTS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Join { client: usize, forget_id: bool },
    Sync { client: usize, stale: bool },
    Heartbeat { client: usize },
    Leave { client: usize },
    Commit { client: usize, stale: bool, outsider: bool },
    Advance { ms: u64 },
    SettleWrites { ok: bool },
    Failover,
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        3 => (client.clone(), any::<bool>()).prop_map(|(client, f)| Op::Join { client, forget_id: f && client == 0 }),
        3 => (client.clone(), prop::bool::weighted(0.2)).prop_map(|(client, stale)| Op::Sync { client, stale }),
        2 => client.clone().prop_map(|client| Op::Heartbeat { client }),
        1 => client.clone().prop_map(|client| Op::Leave { client }),
        3 => (client, prop::bool::weighted(0.3), prop::bool::weighted(0.1))
            .prop_map(|(client, stale, outsider)| Op::Commit { client, stale, outsider }),
        3 => prop_oneof![1u64..100, 1_000u64..4_000, 9_000u64..40_000].prop_map(|ms| Op::Advance { ms }),
        3 => prop::bool::weighted(0.8).prop_map(|ok| Op::SettleWrites { ok }),
        1 => Just(Op::Failover),
    ]
}

/// What one client knows of itself.
#[derive(Clone, Debug, Default)]
struct Client {
    member: Option<MemberId>,
    generation: GenerationId,
    leader: bool,
    /// Its join in flight, if any.
    join: Option<u64>,
}

/// A commit sent, and whether the coordinator should have taken it.
struct SentCommit {
    token: u64,
    acceptable: bool,
}

fn run(ops: &[Op]) {
    let mut h = Harness::new();
    let mut clients = vec![Client::default(); CLIENTS];
    let mut commits = Vec::new();
    let mut sent = Vec::new();
    let mut generation_seen = GenerationId::INITIAL;
    for op in ops {
        match *op {
            Op::Join { client, forget_id } => {
                if forget_id {
                    clients[client].member = None;
                }
                let req = h.join_request(clients[client].member.as_ref(), &format!("c{client}"), None);
                let token = h.send(req);
                clients[client].join = Some(token);
                sent.push(token);
            }
            Op::Sync { client, stale } => {
                let Some(member) = clients[client].member.clone() else { continue };
                let generation =
                    if stale { GenerationId(clients[client].generation.0 - 1) } else { clients[client].generation };
                let assignments = if clients[client].leader {
                    let metadata = h.coord.group_metadata(&super::tests::group());
                    let members = metadata.into_iter().flat_map(|m| m.members).map(|m| m.member);
                    members
                        .enumerate()
                        .map(|(i, m)| (m, Assignment { partitions: vec![super::tests::tp(i as u32)] }))
                        .collect()
                } else {
                    Vec::new()
                };
                sent.push(h.send(GroupRequest::SyncGroup(SyncGroup {
                    group: super::tests::group(),
                    generation,
                    member,
                    instance: None,
                    protocol: Some(AssignorKind::Range),
                    assignments,
                })));
            }
            Op::Heartbeat { client } => {
                let Some(member) = clients[client].member.clone() else { continue };
                let generation = clients[client].generation;
                let req = Heartbeat { group: super::tests::group(), generation, member, instance: None };
                sent.push(h.send(GroupRequest::Heartbeat(req)));
            }
            Op::Leave { client } => {
                let Some(member) = clients[client].member.take() else { continue };
                let req = LeaveGroup { group: super::tests::group(), member, instance: None };
                sent.push(h.send(GroupRequest::LeaveGroup(req)));
            }
            Op::Commit { client, stale, outsider } => {
                let (member, generation) = if outsider {
                    (None, GenerationId::NONE)
                } else {
                    let g = clients[client].generation;
                    (clients[client].member.clone(), if stale { GenerationId(g.0 - 1) } else { g })
                };
                let group = h.coord.group_metadata(&super::tests::group());
                let state = h.coord.group_state(&super::tests::group());
                let acceptable = match (&group, state) {
                    (None, _) => generation.0 < 0,
                    (Some(g), Some(state)) => {
                        (generation.0 < 0 && state == GroupState::Empty)
                            || (generation == g.generation
                                && member.as_ref().is_some_and(|m| g.members.iter().any(|x| &x.member == m))
                                && matches!(state, GroupState::Stable | GroupState::PreparingRebalance))
                    }
                    (Some(_), None) => false,
                };
                let offsets =
                    vec![(super::tests::tp(0), CommittedOffset { offset: Offset(7), leader_epoch: LeaderEpoch(0) })];
                let req = OffsetCommit { group: super::tests::group(), generation, member, instance: None, offsets };
                let token = h.send(GroupRequest::OffsetCommit(req));
                commits.push(SentCommit { token, acceptable });
                sent.push(token);
            }
            Op::Advance { ms } => h.advance(ms),
            Op::SettleWrites { ok } => h.complete_writes(if ok { Ok(()) } else { Err(ErrorCode::NotEnoughReplicas) }),
            Op::Failover => {
                let partition = h.coord.partition_for(&super::tests::group());
                h.coord.unload(partition);
                h.drain();
                h.complete_writes(Err(ErrorCode::NotLeaderOrFollower));
                let log = h.log.clone();
                h.coord.load(h.now, partition, &log);
                generation_seen = log
                    .iter()
                    .filter_map(|r| match GroupRecord::decode(r) {
                        Ok(GroupRecord::Metadata { metadata, .. }) => Some(metadata.generation),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(GenerationId::INITIAL);
            }
        }
        // Clients learn from their join answers.
        for c in clients.iter_mut() {
            let Some(token) = c.join else { continue };
            let Some(GroupResponse::JoinGroup(answer)) = h.answers.get(&token) else { continue };
            c.join = None;
            if answer.member.is_some() {
                c.member = answer.member.clone();
            }
            if answer.error.is_none() {
                c.generation = answer.generation;
                c.leader = answer.leader == answer.member;
            }
        }
        if let Some(g) = h.coord.group_metadata(&super::tests::group()) {
            assert!(
                g.generation >= generation_seen,
                "generation went back: {} after {}",
                g.generation,
                generation_seen
            );
            generation_seen = g.generation;
        }
        for c in &commits {
            if let Some(GroupResponse::OffsetCommit { partitions }) = h.answers.get(&c.token) {
                if partitions.iter().all(|(_, e)| e.is_none()) {
                    assert!(c.acceptable, "commit {} acknowledged though it was not acceptable when sent", c.token);
                }
            }
        }
    }
    // The clients stop: writes settle, sessions and phases run out.
    for _ in 0..4 {
        h.complete_writes(Ok(()));
        h.advance(100_000);
    }
    for token in sent {
        assert!(h.answers.contains_key(&token), "request {token} never answered");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_request_is_answered_once_and_commits_are_fenced(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops);
    }
}
