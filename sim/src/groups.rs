//! Group liveness: after the heal, every consumer group must settle — all
//! its members in one generation, every partition of its topics owned by
//! exactly one of them — within a bound (Kafka's rebalance and session
//! timeouts, the initial delay, two heartbeats, and slack). Group members
//! report what they learn here as they record it in the history; the
//! supervisor waits for every group to settle (or its bound to pass) after
//! the drain, and a group that did not is a `group-liveness` finding.

use crate::history::{Partition, ProcessId};
use crate::scenario::Scenario;
use std::collections::{BTreeMap, BTreeSet};

/// The coordinator's initial rebalance delay (`group.initial.rebalance.delay.ms`).
const INITIAL_DELAY_MS: u64 = 3_000;
/// Room for requests in flight and poll loops coming round.
const SLACK_MS: u64 = 10_000;

/// What one member last learned: its generation (`None` when it knows it is
/// out) and what it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    pub generation: Option<i32>,
    pub owned: BTreeSet<Partition>,
}

/// Per group, per member process.
pub type GroupViews = BTreeMap<String, BTreeMap<ProcessId, MemberView>>;

/// One group as the scenario defines it: its member processes, the
/// partitions they subscribe to, and how long it may take to settle.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    pub id: String,
    pub members: Vec<ProcessId>,
    pub partitions: BTreeSet<Partition>,
    pub bound_ms: u64,
}

/// Every group of the scenario, with its member processes (`process_of`
/// maps a consumer's index to its process).
pub fn plans(scenario: &Scenario, process_of: impl Fn(u32) -> ProcessId) -> Vec<GroupPlan> {
    let mut plans: BTreeMap<String, GroupPlan> = BTreeMap::new();
    for (c, (_, spec, _)) in scenario.consumers().into_iter().enumerate() {
        let Some(group) = &spec.group else { continue };
        let plan = plans.entry(group.id.clone()).or_insert_with(|| GroupPlan {
            id: group.id.clone(),
            members: Vec::new(),
            partitions: BTreeSet::new(),
            bound_ms: 0,
        });
        plan.members.push(process_of(c as u32));
        for topic in &spec.topics {
            let partitions = scenario.topic(topic).map_or(0, |t| t.partitions);
            plan.partitions.extend((0..partitions).map(|p| Partition { topic: topic.as_str().into(), partition: p }));
        }
        let bound = group.max_poll_interval_ms
            + group.session_timeout_ms
            + 2 * group.heartbeat_interval_ms
            + INITIAL_DELAY_MS
            + SLACK_MS;
        plan.bound_ms = plan.bound_ms.max(bound);
    }
    plans.into_values().collect()
}

/// Whether the group has settled: every member in one generation, owning
/// together every partition exactly once.
pub fn settled(plan: &GroupPlan, views: &GroupViews) -> bool {
    let Some(members) = views.get(&plan.id) else { return false };
    let mut generation = None;
    let mut owned = BTreeSet::new();
    for process in &plan.members {
        let Some(view) = members.get(process) else { return false };
        let Some(g) = view.generation else { return false };
        if generation.is_some_and(|x| x != g) {
            return false;
        }
        generation = Some(g);
        for p in &view.owned {
            if !owned.insert(p.clone()) {
                return false;
            }
        }
    }
    owned == plan.partitions
}

/// What the group looks like, for a finding.
pub fn describe(plan: &GroupPlan, views: &GroupViews) -> String {
    let empty = BTreeMap::new();
    let members = views.get(&plan.id).unwrap_or(&empty);
    let parts: Vec<String> = plan
        .members
        .iter()
        .map(|process| match members.get(process) {
            None => format!("process {process} never joined"),
            Some(v) => format!(
                "process {process} in generation {} owning {}",
                v.generation.map_or("none".to_string(), |g| g.to_string()),
                v.owned.len()
            ),
        })
        .collect();
    format!(
        "{} of {} partitions owned; {}",
        members.values().map(|v| v.owned.len()).sum::<usize>(),
        plan.partitions.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: u32) -> Partition {
        Partition { topic: "t".into(), partition }
    }

    fn view(generation: Option<i32>, owned: &[u32]) -> MemberView {
        MemberView { generation, owned: owned.iter().map(|&n| p(n)).collect() }
    }

    #[test]
    fn a_group_settles_with_one_generation_and_every_partition_owned_once() {
        let plan = GroupPlan { id: "g".into(), members: vec![1, 2], partitions: (0..4).map(p).collect(), bound_ms: 0 };
        let views = |a: MemberView, b: MemberView| -> GroupViews {
            BTreeMap::from([("g".to_string(), BTreeMap::from([(1, a), (2, b)]))])
        };
        assert!(settled(&plan, &views(view(Some(3), &[0, 1]), view(Some(3), &[2, 3]))));
        assert!(!settled(&plan, &views(view(Some(3), &[0, 1]), view(Some(2), &[2, 3]))), "two generations");
        assert!(!settled(&plan, &views(view(Some(3), &[0, 1, 2]), view(Some(3), &[2, 3]))), "p2 owned twice");
        assert!(!settled(&plan, &views(view(Some(3), &[0, 1]), view(Some(3), &[2]))), "p3 unowned");
        assert!(!settled(&plan, &views(view(Some(3), &[0, 1, 2, 3]), view(None, &[]))), "a member out");
        assert!(!settled(&plan, &GroupViews::new()), "nobody joined");
    }
}
