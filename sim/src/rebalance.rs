//! Rebalance pauses, measured from the history: how long each partition of
//! a group went without an owner because of a rebalance — from the moment
//! its last owner gave it up (`revoked`, or a `joined` that no longer lists
//! it) to the moment a member took it again (`joined` listing it). Under an
//! eager assignor every partition pauses at every rebalance; under
//! cooperative-sticky only the partitions that move do, so the two can be
//! compared on the same faults. A measurement, not an invariant.
//!
//! Only what members record counts: the partitions of a member that
//! vanished (its process paused or crashed) have no observable release —
//! they are taken over while it still believes it owns them — so their gap
//! is not among the pauses.

use crate::history::{Call, History, Partition, ProcessId, TopicName};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Every finished pause of each group's partitions in one run, in
/// simulated milliseconds, in the order they ended.
pub fn partition_pauses_ms(history: &History) -> BTreeMap<String, Vec<u64>> {
    let mut owners: BTreeMap<(&TopicName, &Partition), BTreeSet<ProcessId>> = BTreeMap::new();
    let mut owned_by: BTreeMap<ProcessId, Vec<&Partition>> = BTreeMap::new();
    let mut since: BTreeMap<(&TopicName, &Partition), u64> = BTreeMap::new();
    let mut pauses: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ops: Vec<_> =
        history.ops.iter().filter(|op| matches!(op.call, Call::Joined { .. } | Call::Revoked(_))).collect();
    ops.sort_by_key(|op| (op.invoke_ns, op.id));
    for op in ops {
        let now = op.invoke_ns;
        match &op.call {
            Call::Joined(joined) => {
                let (group, partitions) = (&joined.group, &joined.partitions);
                let before = owned_by.insert(op.process, partitions.iter().collect()).unwrap_or_default();
                for p in before.into_iter().filter(|p| !partitions.contains(p)) {
                    give_up(&mut owners, &mut since, (group, p), op.process, now);
                }
                for p in partitions {
                    owners.entry((group, p)).or_default().insert(op.process);
                    if let Some(start) = since.remove(&(group, p)) {
                        pauses.entry(group.to_string()).or_default().push((now - start) / 1_000_000);
                    }
                }
            }
            Call::Revoked(revoked) => {
                let crate::history::Revoked { group, partitions, .. } = &**revoked;
                let owned = owned_by.entry(op.process).or_default();
                owned.retain(|p| !partitions.contains(p));
                for p in partitions {
                    give_up(&mut owners, &mut since, (group, p), op.process, now);
                }
            }
            _ => unreachable!("filtered"),
        }
    }
    pauses
}

fn give_up<'h>(
    owners: &mut BTreeMap<(&'h TopicName, &'h Partition), BTreeSet<ProcessId>>,
    since: &mut BTreeMap<(&'h TopicName, &'h Partition), u64>,
    key: (&'h TopicName, &'h Partition),
    process: ProcessId,
    now: u64,
) {
    let holders = owners.entry(key).or_default();
    if holders.remove(&process) && holders.is_empty() {
        since.entry(key).or_insert(now);
    }
}

/// Pauses summarised: how many, and the median, 99th percentile and
/// longest, in simulated milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PauseSummary {
    pub count: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl PauseSummary {
    /// Over every pause given (`None` when there is none).
    pub fn of<'a>(pauses: impl IntoIterator<Item = &'a u64>) -> Option<PauseSummary> {
        // Three significant figures; pauses are bounded by a run's length.
        let mut h = Histogram::<u64>::new(3).expect("a valid precision");
        for &ms in pauses {
            h.record(ms).expect("auto-resizing histogram");
        }
        (!h.is_empty()).then(|| PauseSummary {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.5),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        })
    }
}

/// Per group, the pauses of every run merged.
pub fn summarise<'a>(runs: impl Iterator<Item = &'a BTreeMap<String, Vec<u64>>>) -> BTreeMap<String, PauseSummary> {
    let mut merged: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for run in runs {
        for (group, pauses) in run {
            merged.entry(group).or_default().extend(pauses);
        }
    }
    merged.into_iter().filter_map(|(g, p)| Some((g.to_string(), PauseSummary::of(&p)?))).collect()
}

impl std::fmt::Display for PauseSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} partition pauses: p50 {} ms, p99 {} ms, max {} ms (simulated)",
            self.count, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;

    fn fact(h: &mut History, process: ProcessId, ms: u64, call: Call) {
        let op = h.invoke(process, ms * 1_000_000, call);
        h.complete(op, ms * 1_000_000, Outcome::Ok);
    }

    fn joined(h: &mut History, process: ProcessId, ms: u64, partitions: &[u32]) {
        let partitions = partitions.iter().map(|&partition| Partition { topic: "t".into(), partition }).collect();
        fact(
            h,
            process,
            ms,
            Call::Joined(Box::new(crate::history::Joined {
                group: "g".into(),
                generation: 0,
                member: "m".into(),
                partitions,
            })),
        );
    }

    fn revoked(h: &mut History, process: ProcessId, ms: u64, partitions: &[u32]) {
        let partitions = partitions.iter().map(|&partition| Partition { topic: "t".into(), partition }).collect();
        fact(
            h,
            process,
            ms,
            Call::Revoked(Box::new(crate::history::Revoked { group: "g".into(), partitions, lost: false })),
        );
    }

    #[test]
    fn eager_pauses_every_partition_cooperative_only_the_moved_ones() {
        // Eager: both partitions revoked at 100 and 110, reassigned at 300 and 310.
        let mut h = History::default();
        joined(&mut h, 1, 0, &[0, 1]);
        revoked(&mut h, 1, 100, &[0, 1]);
        joined(&mut h, 1, 300, &[0]);
        joined(&mut h, 2, 310, &[1]);
        assert_eq!(partition_pauses_ms(&h), BTreeMap::from([("g".to_string(), vec![200, 210])]));
        // Cooperative: member 1 keeps p0; its generation at 300 no longer
        // lists p1 (the revocation follows), and member 2 takes it at 500.
        let mut h = History::default();
        joined(&mut h, 1, 0, &[0, 1]);
        joined(&mut h, 1, 300, &[0]);
        revoked(&mut h, 1, 320, &[1]);
        joined(&mut h, 2, 500, &[1]);
        assert_eq!(partition_pauses_ms(&h), BTreeMap::from([("g".to_string(), vec![200])]));
        let summary = PauseSummary::of(&[180, 200, 210]).unwrap();
        assert_eq!((summary.count, summary.p50_ms, summary.max_ms), (3, 200, 210));
    }
}
