//! Consumer-group invariants, judged from what group members recorded:
//! `joined` (a generation and what the member owns in it), `revoked`,
//! `commit` and `process`.
//!
//! - **committed-offsets-monotonic**: per group and partition, an
//!   acknowledged commit never lands below one acknowledged before it was
//!   invoked (real-time order; concurrent commits are not ordered).
//! - **no-stale-commit**: no commit is acknowledged whose generation is
//!   older than one some member had already joined when the commit was
//!   invoked. A member learns a generation only after its assignment was
//!   written, so the coordinator stood at that generation or later: it had
//!   to refuse the older one.
//! - **single-owner**: in one generation no partition is handed to two
//!   members; and when a partition passes from member A (generation G) to
//!   member B (generation G' > G) while A is still in the group at G', A
//!   gave it up before anyone learned G' — eagerly before rejoining, or
//!   cooperatively between the two rebalances. A member dropped from the
//!   group (its session expired: a zombie) may learn it late; its
//!   stale commits are `no-stale-commit`'s to judge.
//! - **at-least-once-consumption**: per group and partition, every offset
//!   known to hold a record, from the first one the group processed up to
//!   the final acknowledged committed offset, was processed by a member
//!   (a `process` operation that completed). A group with a read_committed
//!   member need not process offsets that hold only values of aborted
//!   transactions or of undecided ones (`Visibility`): such a member is
//!   never served the former and may not be served the latter (in a group
//!   mixing isolation levels, the offset is excused for all).

use super::evidence::{op_label, Findings};
use super::log_view::LogView;
use super::visibility::Visibility;
use super::Invariant;
use crate::history::{Call, History, Op, Outcome, Partition, ProcessId, TopicName};
use std::collections::{BTreeMap, BTreeSet};

/// One `joined` operation: a member's generation and what it owns.
struct Joined<'h> {
    op: &'h Op,
    generation: i32,
    partitions: &'h [Partition],
}

/// An acknowledged commit of one partition.
struct Commit<'h> {
    op: &'h Op,
    generation: i32,
    offset: i64,
}

#[derive(Default)]
struct Group<'h> {
    /// In history order.
    joined: Vec<Joined<'h>>,
    /// By partition, acknowledged commits in history order.
    commits: BTreeMap<&'h Partition, Vec<Commit<'h>>>,
    /// Every commit op (acknowledged or not), for no-stale-commit.
    commit_ops: Vec<&'h Op>,
    /// Per member process, its `joined` and `revoked` ops in history order.
    membership_ops: BTreeMap<ProcessId, Vec<&'h Op>>,
}

/// What a group's members did with the records, for research output:
/// records processed (processing finished), lost (below the final committed
/// offset, never processed: at-least-once-consumption's anomalies) and
/// processed again (processing started more than once, finished or cut
/// short by a crash: the duplicate effects at-least-once allows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub processed: u64,
    pub lost: u64,
    pub reprocessed: u64,
}

/// Records the group's members finished processing, and records whose
/// processing started more than once.
fn processing(history: &History, name: &TopicName, group_of: &BTreeMap<ProcessId, &TopicName>) -> (u64, u64) {
    let mut started: BTreeSet<(&Partition, i64)> = BTreeSet::new();
    let (mut processed, mut again) = (0, 0);
    for op in &history.ops {
        let Call::Process { records } = &op.call else { continue };
        if group_of.get(&op.process) != Some(&name) {
            continue;
        }
        for r in records {
            processed += u64::from(op.outcome.is_some());
            again += u64::from(!started.insert((&r.partition, r.offset)));
        }
    }
    (processed, again)
}

struct Collected<'h> {
    groups: BTreeMap<&'h TopicName, Group<'h>>,
    group_of: BTreeMap<ProcessId, &'h TopicName>,
}

/// Judges every group; returns each group's [`Delivery`] (the losses are
/// at-least-once-consumption's findings, counted in the same pass).
pub(super) fn check(
    history: &History,
    view: &LogView,
    visibility: &Visibility<'_, '_>,
    findings: &mut Findings,
) -> BTreeMap<String, Delivery> {
    let Collected { groups, group_of } = collect(history);
    let mut delivery = BTreeMap::new();
    for (name, group) in &groups {
        monotonic(history, name, group, findings);
        no_stale_commit(history, name, group, findings);
        single_owner(history, name, group, findings);
        let lost = at_least_once(history, view, visibility, name, group, &group_of, findings);
        // A pipeline's delivery is exactly-once-pipeline's to judge: its
        // members record transactions, not `process` operations.
        if history.pipelines.iter().any(|p| &*p.group == name.as_ref() as &str) {
            continue;
        }
        let (processed, reprocessed) = processing(history, name, &group_of);
        delivery.insert(name.to_string(), Delivery { processed, lost, reprocessed });
    }
    delivery
}

fn collect(history: &History) -> Collected<'_> {
    let mut groups: BTreeMap<&TopicName, Group> = BTreeMap::new();
    let mut group_of: BTreeMap<ProcessId, &TopicName> = BTreeMap::new();
    for op in &history.ops {
        match &op.call {
            Call::Joined(joined) => {
                let crate::history::Joined { group, generation, partitions, .. } = &**joined;
                group_of.insert(op.process, group);
                let g = groups.entry(group).or_default();
                g.membership_ops.entry(op.process).or_default().push(op);
                g.joined.push(Joined { op, generation: *generation, partitions });
            }
            Call::Revoked(revoked) => {
                let g = groups.entry(&revoked.group).or_default();
                g.membership_ops.entry(op.process).or_default().push(op);
            }
            Call::Commit(commit) => {
                let crate::history::Commit { group, generation, offsets, .. } = &**commit;
                group_of.insert(op.process, group);
                let g = groups.entry(group).or_default();
                g.commit_ops.push(op);
                if op.outcome == Some(Outcome::Ok) {
                    for (partition, offset) in offsets {
                        let commit = Commit { op, generation: *generation, offset: *offset };
                        g.commits.entry(partition).or_default().push(commit);
                    }
                }
            }
            _ => {}
        }
    }
    Collected { groups, group_of }
}

fn complete_ns(op: &Op) -> u64 {
    op.complete_ns().unwrap_or(u64::MAX)
}

fn monotonic(history: &History, name: &TopicName, group: &Group, findings: &mut Findings) {
    for (partition, commits) in &group.commits {
        // The highest acknowledged offset among commits completed so far,
        // swept in invocation order against completion times.
        let mut by_completion: Vec<&Commit> = commits.iter().collect();
        by_completion.sort_by_key(|c| complete_ns(c.op));
        let mut done = 0;
        let mut highest: Option<&Commit> = None;
        let mut by_invocation: Vec<&Commit> = commits.iter().collect();
        by_invocation.sort_by_key(|c| c.op.invoke_ns);
        for commit in by_invocation {
            while done < by_completion.len() && complete_ns(by_completion[done].op) < commit.op.invoke_ns {
                let c = by_completion[done];
                if highest.is_none_or(|h| c.offset > h.offset) {
                    highest = Some(c);
                }
                done += 1;
            }
            if let Some(h) = highest.filter(|h| commit.offset < h.offset) {
                findings.found(Invariant::CommittedOffsetsMonotonic, || {
                    format!(
                        "group {name} partition {partition}: {} committed {} (generation {}) after {} had committed {} (generation {})",
                        op_label(history, commit.op.id),
                        commit.offset,
                        commit.generation,
                        op_label(history, h.op.id),
                        h.offset,
                        h.generation
                    )
                });
            }
        }
    }
}

fn no_stale_commit(history: &History, name: &TopicName, group: &Group, findings: &mut Findings) {
    // Joined ops are zero-length and in time order: the highest generation
    // joined by each instant.
    let mut joined: Vec<(u64, i32, u64)> =
        group.joined.iter().map(|j| (j.op.invoke_ns, j.generation, j.op.id)).collect();
    joined.sort();
    let mut best: Vec<(u64, i32, u64)> = Vec::with_capacity(joined.len());
    for (t, generation, op) in joined {
        if best.last().is_none_or(|&(_, g, _)| generation > g) {
            best.push((t, generation, op));
        }
    }
    for op in &group.commit_ops {
        let Call::Commit(commit) = &op.call else { continue };
        let crate::history::Commit { generation, member, .. } = &**commit;
        if op.outcome != Some(Outcome::Ok) || *generation < 0 {
            continue;
        }
        // The latest generation joined strictly before the commit was invoked.
        let before = best.partition_point(|&(t, _, _)| t < op.invoke_ns);
        let Some(&(_, newer, joined_op)) = before.checked_sub(1).map(|i| &best[i]) else { continue };
        if newer > *generation {
            findings.found(Invariant::NoStaleCommit, || {
                format!(
                    "group {name}: {} by member {} in generation {generation} was acknowledged, though {} had joined generation {newer} before it was sent",
                    op_label(history, op.id),
                    member.as_deref().unwrap_or("(none)"),
                    op_label(history, joined_op)
                )
            });
        }
    }
}

fn single_owner(history: &History, name: &TopicName, group: &Group, findings: &mut Findings) {
    // Who owns what in each generation, and when each generation was first learned.
    let mut owners: BTreeMap<(&Partition, i32), Vec<&Joined>> = BTreeMap::new();
    let mut first_learned: BTreeMap<i32, u64> = BTreeMap::new();
    let mut members_of: BTreeMap<i32, BTreeSet<ProcessId>> = BTreeMap::new();
    for j in &group.joined {
        first_learned.entry(j.generation).and_modify(|t| *t = (*t).min(j.op.invoke_ns)).or_insert(j.op.invoke_ns);
        members_of.entry(j.generation).or_default().insert(j.op.process);
        for p in j.partitions {
            owners.entry((p, j.generation)).or_default().push(j);
        }
    }
    for ((partition, generation), holders) in &owners {
        let processes: BTreeSet<ProcessId> = holders.iter().map(|j| j.op.process).collect();
        if processes.len() > 1 {
            findings.found(Invariant::SingleOwner, || {
                let ops: Vec<String> = holders.iter().map(|j| op_label(history, j.op.id).to_string()).collect();
                format!(
                    "group {name} partition {partition}: generation {generation} given to several members: {}",
                    ops.join(", ")
                )
            });
        }
    }
    // Hand-overs: for each owner A of p in generation G, and each later
    // generation G' in which another member B owns p while A is a member of
    // G' too, A's revocation of p must come before G' was first learned.
    for ((partition, generation), holders) in &owners {
        for a in holders {
            let later = owners.range((*partition, generation + 1)..=(*partition, i32::MAX));
            for ((_, g2), next) in later {
                let Some(b) = next.iter().find(|b| b.op.process != a.op.process) else { continue };
                if !members_of.get(g2).is_some_and(|m| m.contains(&a.op.process)) {
                    continue; // A was dropped from G': it is no owner there
                }
                let learned = first_learned[g2];
                let released = released_at(group, a, partition);
                if released.is_none_or(|t| t > learned) {
                    findings.found(Invariant::SingleOwner, || {
                        let when = released.map_or("never".to_string(), |t| format!("at {}ms", t / 1_000_000));
                        format!(
                            "group {name} partition {partition}: {} owned it in generation {generation} and gave it up {when}, but {} owns it in generation {g2}, first learned at {}ms, with the first member still in the group",
                            op_label(history, a.op.id),
                            op_label(history, b.op.id),
                            learned / 1_000_000
                        )
                    });
                }
                break; // the next owner is enough: later ones hand over from it
            }
        }
    }
}

/// When member `a` (as of its `joined` op) gave `partition` up: its first
/// `revoked` of it, or its first later `joined` without it.
fn released_at(group: &Group, a: &Joined, partition: &Partition) -> Option<u64> {
    let ops = &group.membership_ops[&a.op.process];
    let after = ops.partition_point(|op| op.id <= a.op.id);
    ops[after..].iter().find_map(|op| match &op.call {
        Call::Revoked(revoked) if revoked.partitions.contains(partition) => Some(op.invoke_ns),
        Call::Joined(joined) if !joined.partitions.contains(partition) => Some(op.invoke_ns),
        _ => None,
    })
}

fn at_least_once(
    history: &History,
    view: &LogView,
    visibility: &Visibility<'_, '_>,
    name: &TopicName,
    group: &Group,
    group_of: &BTreeMap<ProcessId, &TopicName>,
    findings: &mut Findings,
) -> u64 {
    let mut lost = 0;
    // Offsets processed (completed) by the group's members, per partition.
    let mut processed: BTreeMap<&Partition, BTreeSet<i64>> = BTreeMap::new();
    for op in &history.ops {
        let Call::Process { records } = &op.call else { continue };
        if op.outcome.is_none() || group_of.get(&op.process) != Some(&name) {
            continue;
        }
        for r in records {
            processed.entry(&r.partition).or_default().insert(r.offset);
        }
    }
    let reads_committed = group_of.iter().any(|(&p, &g)| g == name && visibility.reads_committed(p));
    for (partition, commits) in &group.commits {
        let Some(last) = commits.iter().max_by_key(|c| (complete_ns(c.op), c.offset)) else { continue };
        let done = processed.get(partition);
        let Some(&first) = done.and_then(|d| d.first()) else { continue };
        let Some(id) = view.id(partition) else { continue };
        let known = view.log(id).known_offsets();
        let from = known.partition_point(|&o| o < first);
        let to = known.partition_point(|&o| o < last.offset);
        for &offset in &known[from..to.max(from)] {
            if done.is_some_and(|d| d.contains(&offset)) || (reads_committed && visibility.is_hidden(id, offset)) {
                continue;
            }
            lost += 1;
            findings.found(Invariant::AtLeastOnceConsumption, || {
                format!(
                    "group {name} partition {partition}: offset {offset} is below the committed offset {} ({}) but no member finished processing it",
                    last.offset,
                    op_label(history, last.op.id)
                )
            });
        }
    }
    lost
}
