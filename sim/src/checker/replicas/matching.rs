//! hw-consistency, log matching at the end (Kafka's StrongIsr and log
//! matching): every member of the final leader's ISR holds the leader's
//! records below the leader's HW; any two replicas (live or not) hold the
//! same records below the smaller of their HWs; no replica's HW is above
//! its log end. Records match when offset, value and epoch are equal.
//! One finding per replica (or pair), naming the first difference.

use super::logs::RecordsView;
use super::observations::{RecordLabel, ReplicaRecord, ReplicaSnapshot};
use super::{Ctx, EventId, Finals, Observed, PartitionIndex};
use crate::checker::Invariant;

pub(crate) fn check(ctx: &mut Ctx<'_>, partition: PartitionIndex, finals: &Finals<'_>, unclean: Option<EventId>) {
    let seen = ctx.seen;
    let replicas = finals.snapshots(partition);
    for replica in replicas.iter().filter(|r| r.hw > r.log_end) {
        ctx.findings.found(Invariant::HwConsistency, || {
            format!(
                "partition {}: {}'s HW {} is above its log end {}",
                seen.name(partition),
                replica.broker,
                replica.hw,
                replica.log_end
            )
        });
    }
    let views: Vec<RecordsView<'_>> = replicas.iter().map(|r| RecordsView::new(&r.records)).collect();
    let leader = finals.leader(partition).and_then(|l| replicas.iter().position(|r| std::ptr::eq(*r, l)));
    // Pairs already judged against the leader's (higher) HW.
    let mut judged = Vec::new();
    if let Some(l) = leader {
        let lead = replicas[l];
        for member in &lead.isr {
            let Some(m) = replicas.iter().position(|r| r.broker == *member).filter(|&m| m != l) else { continue };
            judged.push((l.min(m), l.max(m)));
            let Some(diff) = compare(&views[l], &views[m], lo(lead, replicas[m]), lead.hw) else { continue };
            ctx.findings.found(Invariant::HwConsistency, || {
                format!(
                    "partition {}: ISR member {} differs from the leader {} ({}, hw {}) below the leader's HW: {}{}",
                    seen.name(partition),
                    replicas[m].broker,
                    lead.broker,
                    lead.leader_epoch,
                    lead.hw,
                    diff.describe(lead, replicas[m]),
                    seen.unclean_note(unclean)
                )
            });
        }
    }
    for a in 0..replicas.len() {
        for b in a + 1..replicas.len() {
            if judged.contains(&(a, b)) {
                continue;
            }
            let (x, y) = (replicas[a], replicas[b]);
            let below = x.hw.min(y.hw);
            let Some(diff) = compare(&views[a], &views[b], lo(x, y), below) else { continue };
            ctx.findings.found(Invariant::HwConsistency, || pair_detail(seen, partition, x, y, below, &diff, unclean));
        }
    }
}

fn pair_detail(
    seen: Observed<'_>,
    partition: PartitionIndex,
    x: &ReplicaSnapshot,
    y: &ReplicaSnapshot,
    below: i64,
    diff: &Mismatch,
    unclean: Option<EventId>,
) -> String {
    format!(
        "partition {}: replicas {} (hw {}) and {} (hw {}) differ below HW {below}: {}{}",
        seen.name(partition),
        x.broker,
        x.hw,
        y.broker,
        y.hw,
        diff.describe(x, y),
        seen.unclean_note(unclean)
    )
}

/// Where two logs are both judged from: the higher log start (retention).
fn lo(x: &ReplicaSnapshot, y: &ReplicaSnapshot) -> i64 {
    x.log_start.max(y.log_start)
}

/// How two logs differ in a range: how many offsets, and the first.
struct Mismatch {
    offsets: u64,
    first: (i64, Option<ReplicaRecord>, Option<ReplicaRecord>),
}

impl Mismatch {
    /// `3 offsets differ, the first 5: broker-1 holds p1:3 (e2), broker-2 nothing`
    fn describe(&self, x: &ReplicaSnapshot, y: &ReplicaSnapshot) -> String {
        let (offset, a, b) = self.first;
        let holds = |r: Option<ReplicaRecord>| r.map_or("nothing".to_string(), |r| RecordLabel(r).to_string());
        let plural = if self.offsets == 1 { "offset differs" } else { "offsets differ" };
        format!(
            "{} {plural}, the first {offset}: {} holds {}, {} {}",
            self.offsets,
            x.broker,
            holds(a),
            y.broker,
            holds(b)
        )
    }
}

/// Walks both logs' records in `[from, to)` together.
fn compare(x: &RecordsView<'_>, y: &RecordsView<'_>, from: i64, to: i64) -> Option<Mismatch> {
    let (xs, ys) = (x.range(from, to), y.range(from, to));
    let (mut i, mut j) = (0, 0);
    let mut mismatch: Option<Mismatch> = None;
    let mut differ = |offset: i64, a: Option<ReplicaRecord>, b: Option<ReplicaRecord>| match &mut mismatch {
        Some(m) => m.offsets += 1,
        None => mismatch = Some(Mismatch { offsets: 1, first: (offset, a, b) }),
    };
    loop {
        let (a, b) = (xs.get(i).copied(), ys.get(j).copied());
        let (take_a, take_b) = match (a, b) {
            (Some(a), Some(b)) => (a.offset <= b.offset, b.offset <= a.offset),
            (a, b) => (a.is_some(), b.is_some()),
        };
        match (take_a, take_b) {
            (true, true) if a == b => {}
            (false, false) => break,
            _ => {
                let offset = if take_a { a } else { b }.expect("a record on the side taken").offset;
                differ(offset, a.filter(|_| take_a), b.filter(|_| take_b));
            }
        }
        i += usize::from(take_a);
        j += usize::from(take_b);
    }
    mismatch
}
