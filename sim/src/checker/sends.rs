//! nonmonotonic-send: one producer's ok sends to one partition, taken in
//! invocation order, land at a lower offset than an earlier-invoked one.
//!
//! With several requests in flight and retries, Kafka documents that such
//! reordering is legal, so it is a violation only when the producer promises
//! order (`History::ordered_producers`) or when the earlier send had already
//! completed when the later one was invoked (real-time order: no retry can
//! explain it). The legal kind is only counted, as `reordered_sends`.

use super::evidence::{op_label, Findings};
use super::log_view::{Ack, LogView};
use super::per_process::PerProcess;
use super::Invariant;
use crate::history::{History, Partition, ProcessId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Returns how many legal reorderings were seen (not violations).
pub(crate) fn check(history: &History, view: &LogView<'_>, findings: &mut Findings) -> u64 {
    let ordered: BTreeSet<ProcessId> = history.ordered_producers.iter().copied().collect();
    let sends = ok_sends(view);
    let mut in_flight = BinaryHeap::new();
    let mut reordered = 0;
    // By producer, then by partition name.
    for (process, row) in sends.rows() {
        let ordered = ordered.contains(&process);
        for id in view.ids() {
            let sends = &row[id.index()];
            if !sends.is_empty() {
                reordered += check_producer(history, view.name(id), ordered, sends, &mut in_flight, findings);
            }
        }
    }
    reordered
}

/// Ok sends per (producer, partition), in invocation order.
fn ok_sends<'v>(view: &'v LogView<'_>) -> PerProcess<Vec<&'v Ack>> {
    let mut sends: PerProcess<Vec<&Ack>> = PerProcess::new(view.partition_count());
    for ack in view.acks() {
        sends.row_mut(ack.process)[ack.partition.index()].push(ack);
    }
    for list in sends.cells_mut() {
        // `ops` is already in invocation order; a history read back from JSON may not be.
        if !list.is_sorted_by_key(|s| (s.invoke_ns, s.op)) {
            list.sort_by_key(|s| (s.invoke_ns, s.op));
        }
    }
    sends
}

fn check_producer(
    history: &History,
    partition: &Partition,
    ordered: bool,
    sends: &[&Ack],
    in_flight: &mut BinaryHeap<Reverse<(u64, usize)>>,
    findings: &mut Findings,
) -> u64 {
    let mut reordered = 0;
    // The highest landing among every earlier-invoked send, and among those
    // that had completed by the current send's invocation.
    let mut highest_invoked: Option<&Ack> = None;
    let mut highest_completed: Option<&Ack> = None;
    // Earlier sends not yet known to be complete, by completion time.
    in_flight.clear();
    for (index, &send) in sends.iter().enumerate() {
        // Completed at the same instant counts as before: its append preceded
        // the ack, and this send cannot append before it is invoked.
        while let Some(&Reverse((done_ns, earlier))) = in_flight.peek() {
            if done_ns > send.invoke_ns {
                break;
            }
            in_flight.pop();
            highest_completed = higher(highest_completed, sends[earlier]);
        }
        let witness = if ordered { highest_invoked } else { highest_completed };
        match witness.filter(|w| w.offset > send.offset) {
            Some(earlier) => {
                findings.found(Invariant::NonmonotonicSend, || describe(history, partition, ordered, send, earlier))
            }
            None if highest_invoked.is_some_and(|w| w.offset > send.offset) => reordered += 1,
            None => {}
        }
        highest_invoked = higher(highest_invoked, send);
        in_flight.push(Reverse((send.complete_ns.unwrap_or(u64::MAX), index)));
    }
    reordered
}

fn higher<'v>(current: Option<&'v Ack>, candidate: &'v Ack) -> Option<&'v Ack> {
    match current {
        Some(c) if c.offset >= candidate.offset => Some(c),
        _ => Some(candidate),
    }
}

/// `partition t-0 process 1: p1:8 (op 30 (...)) landed at offset 4, below offset 7 where the
/// earlier-invoked p1:5 (op 25 (...)) landed, which had completed before p1:8 was invoked`
fn describe(history: &History, partition: &Partition, ordered: bool, later: &Ack, earlier: &Ack) -> String {
    let why = if ordered {
        "and this producer promises send order".to_string()
    } else {
        format!("which had completed before {} was invoked", later.value)
    };
    format!(
        "partition {partition} process {}: {} ({}) landed at offset {}, below offset {} where the earlier-invoked {} ({}) landed, {why}",
        later.process,
        later.value,
        op_label(history, later.op),
        later.offset,
        earlier.offset,
        earlier.value,
        op_label(history, earlier.op),
    )
}
