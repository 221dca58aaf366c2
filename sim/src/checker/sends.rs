//! nonmonotonic-send: one producer's ok sends to one partition, taken in
//! invocation order, land at a lower offset than an earlier-invoked one.
//!
//! With several requests in flight and retries, Kafka documents that such
//! reordering is legal, so it is a violation only when the producer promises
//! order (`History::ordered_producers`) or when the earlier send had already
//! completed when the later one was invoked (real-time order: no retry can
//! explain it). The legal kind is only counted, as `reordered_sends`.

use super::evidence::{op_label, Findings};
use super::Invariant;
use crate::history::{Call, History, Op, Outcome, Partition, ProcessId, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// One ok send: what landed where.
#[derive(Clone, Copy)]
struct Landed<'h> {
    op: &'h Op,
    value: Value,
    offset: i64,
}

/// Returns how many legal reorderings were seen (not violations).
pub(crate) fn check(history: &History, findings: &mut Findings) -> u64 {
    let ordered: BTreeSet<ProcessId> = history.ordered_producers.iter().copied().collect();
    let mut reordered = 0;
    for ((process, partition), sends) in ok_sends(history) {
        reordered += check_producer(history, partition, ordered.contains(&process), &sends, findings);
    }
    reordered
}

/// Ok sends per (producer, partition), in invocation order.
fn ok_sends(history: &History) -> BTreeMap<(ProcessId, &Partition), Vec<Landed<'_>>> {
    let mut sends: BTreeMap<(ProcessId, &Partition), Vec<Landed<'_>>> = BTreeMap::new();
    for op in &history.ops {
        if let (Call::Send { value, .. }, Some(Outcome::SendOk { partition, offset })) = (&op.call, &op.outcome) {
            sends.entry((op.process, partition)).or_default().push(Landed { op, value: *value, offset: *offset });
        }
    }
    for list in sends.values_mut() {
        // `ops` is already in invocation order; a history read back from JSON may not be.
        list.sort_by_key(|s| (s.op.invoke_ns, s.op.id));
    }
    sends
}

fn check_producer(
    history: &History,
    partition: &Partition,
    ordered: bool,
    sends: &[Landed<'_>],
    findings: &mut Findings,
) -> u64 {
    let mut reordered = 0;
    // The highest landing among every earlier-invoked send, and among those
    // that had completed by the current send's invocation.
    let mut highest_invoked: Option<Landed<'_>> = None;
    let mut highest_completed: Option<Landed<'_>> = None;
    // Earlier sends not yet known to be complete, by completion time.
    let mut in_flight: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    for (index, &send) in sends.iter().enumerate() {
        // Completed at the same instant counts as before: its append preceded
        // the ack, and this send cannot append before it is invoked.
        while let Some(&Reverse((done_ns, earlier))) = in_flight.peek() {
            if done_ns > send.op.invoke_ns {
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
        in_flight.push(Reverse((send.op.complete_ns.unwrap_or(u64::MAX), index)));
    }
    reordered
}

fn higher<'h>(current: Option<Landed<'h>>, candidate: Landed<'h>) -> Option<Landed<'h>> {
    match current {
        Some(c) if c.offset >= candidate.offset => Some(c),
        _ => Some(candidate),
    }
}

/// `partition t-0 process 1: p1:8 (op 30 (...)) landed at offset 4, below offset 7 where the
/// earlier-invoked p1:5 (op 25 (...)) landed, which had completed before p1:8 was invoked`
fn describe(history: &History, partition: &Partition, ordered: bool, later: Landed<'_>, earlier: Landed<'_>) -> String {
    let why = if ordered {
        "and this producer promises send order".to_string()
    } else {
        format!("which had completed before {} was invoked", later.value)
    };
    format!(
        "partition {partition} process {}: {} ({}) landed at offset {}, below offset {} where the earlier-invoked {} ({}) landed, {why}",
        later.op.process,
        later.value,
        op_label(history, later.op.id),
        later.offset,
        earlier.offset,
        earlier.value,
        op_label(history, earlier.op.id),
    )
}
