//! Is the derived log a function both ways? inconsistent-offsets: one offset
//! holding two values. duplicate: one value at two offsets (Jepsen's pair),
//! counted for every producer; no-duplicate judges the same for the values
//! of idempotent producers, which promise to write each record once.

use super::evidence::{op_label, Findings};
use super::log_view::LogView;
use super::partition_log::{PartitionLog, Sighting};
use super::Invariant;
use crate::history::{History, Partition, ProcessId, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// How many values (or offsets) one finding spells out before summarising.
const LISTED: usize = 4;

pub(crate) fn check(history: &History, view: &LogView<'_>, findings: &mut Findings) {
    let idempotent: BTreeSet<ProcessId> = history.idempotent_producers.iter().copied().collect();
    for (partition, log) in view.partitions() {
        inconsistent_offsets(history, partition, log, findings);
        duplicates(history, partition, log, &idempotent, findings);
    }
}

fn inconsistent_offsets(history: &History, partition: &Partition, log: &PartitionLog, findings: &mut Findings) {
    for (offset, total) in log.values_per_offset() {
        if total < 2 {
            continue;
        }
        findings.found(Invariant::InconsistentOffsets, || {
            let mut detail = format!("partition {partition} offset {offset} holds {total} values: ");
            let listed =
                log.values_at(offset).take(LISTED).map(|(value, s)| format!("{value} ({})", witnesses(history, &s)));
            detail.push_str(&listed.collect::<Vec<_>>().join("; "));
            more(&mut detail, total, "values");
            detail
        });
    }
}

fn duplicates(
    history: &History,
    partition: &Partition,
    log: &PartitionLog,
    idempotent: &BTreeSet<ProcessId>,
    findings: &mut Findings,
) {
    for (value, offsets) in log.offsets_per_value() {
        if offsets > 1 {
            findings.found(Invariant::Duplicate, || duplicate_detail(history, partition, log, value, offsets));
            if idempotent.contains(&value.process()) {
                let detail = || {
                    let what = duplicate_detail(history, partition, log, value, offsets);
                    format!("{what}; its producer (process {}) is idempotent", value.process())
                };
                findings.found(Invariant::NoDuplicate, detail);
            }
        }
    }
}

fn duplicate_detail(
    history: &History,
    partition: &Partition,
    log: &PartitionLog,
    value: Value,
    total: usize,
) -> String {
    let mut detail = format!("partition {partition} value {value} at {total} offsets: ");
    let listed = log.offsets_of(value).take(LISTED).map(|offset| {
        let seen = log.sighting(offset, value).map(|s| witnesses(history, &s)).unwrap_or_default();
        format!("{offset} ({seen})")
    });
    detail.push_str(&listed.collect::<Vec<_>>().join("; "));
    more(&mut detail, total, "offsets");
    detail
}

/// `read by op 12 (...) and 3 more reads, acked to op 7 (...)`
fn witnesses(history: &History, sighting: &Sighting) -> String {
    let mut parts = Vec::with_capacity(2);
    if let Some(op) = sighting.first_read {
        let mut read = format!("read by {}", op_label(history, op));
        match sighting.reads.saturating_sub(1) {
            0 => {}
            1 => read.push_str(" and 1 more read"),
            others => write!(read, " and {others} more reads").expect("writing to a String"),
        }
        parts.push(read);
    }
    if let Some(op) = sighting.acked_by {
        parts.push(format!("acked to {}", op_label(history, op)));
    }
    parts.join(", ")
}

fn more(detail: &mut String, total: usize, what: &str) {
    if total > LISTED {
        write!(detail, "; and {} more {what}", total - LISTED).expect("writing to a String");
    }
}
