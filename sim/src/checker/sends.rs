//! nonmonotonic-send: one producer's ok sends to one partition, taken in
//! invocation order, land at a lower offset than an earlier-invoked one.
//!
//! With several requests in flight and retries, Kafka documents that such
//! reordering is legal, so it is a violation only when the producer promises
//! order (`History::ordered_producers`) or when the earlier send had already
//! completed when the later one was invoked (real-time order: no retry can
//! explain it). The legal kind is only counted, as `reordered_sends`.

use super::evidence::{op_label, Findings};
use super::log_view::{Ack, LogView, PartitionId};
use super::per_process::PerProcess;
use super::Invariant;
use crate::history::{History, Partition, ProcessId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::ops::Range;

/// One ok send, with what the check compares copied out of its `Ack`, so
/// one producer's sends to one partition sit together in memory.
#[derive(Clone, Copy)]
struct Landed {
    invoke_ns: u64,
    /// `u64::MAX` if the send never completed.
    complete_ns: u64,
    offset: i64,
    /// Its index in `LogView::acks`, for the evidence.
    ack: u32,
}

/// What one producer's sends to one partition are judged with.
struct Producer<'v> {
    history: &'v History,
    acks: &'v [Ack],
    partition: &'v Partition,
    /// Whether the producer promises send order.
    ordered: bool,
}

/// Returns how many legal reorderings were seen (not violations).
pub(crate) fn check(history: &History, view: &LogView<'_>, findings: &mut Findings) -> u64 {
    let ordered: BTreeSet<ProcessId> = history.ordered_producers.iter().copied().collect();
    let (sends, groups) = ok_sends(history, view);
    let mut in_flight = InFlight::default();
    let mut reordered = 0;
    for group in groups {
        let ordered = ordered.contains(&group.process);
        let producer = Producer { history, acks: view.acks(), partition: view.name(group.partition), ordered };
        reordered += producer.check(&sends[group.sends], &mut in_flight, findings);
    }
    reordered
}

/// One producer's ok sends to one partition: a range of the list.
#[derive(Clone)]
struct Group {
    process: ProcessId,
    partition: PartitionId,
    sends: Range<usize>,
}

/// Every ok send in one list, grouped by producer then partition name (a
/// counting sort, so the list is allocated once), each group in invocation order.
fn ok_sends(history: &History, view: &LogView<'_>) -> (Vec<Landed>, Vec<Group>) {
    let acks = view.acks();
    assert!(acks.len() < u32::MAX as usize, "ack indices are u32");
    let (group_of, mut groups) = number_groups(history, acks);
    let order = lay_out(view, &mut groups);
    let mut next: Vec<usize> = groups.iter().map(|group| group.sends.start).collect();
    let unset = Landed { invoke_ns: 0, complete_ns: 0, offset: 0, ack: u32::MAX };
    let mut sends = vec![unset; acks.len()];
    for ((ack, index), &number) in acks.iter().zip(0..).zip(&group_of) {
        let op = &history.ops[ack.op() as usize];
        let complete_ns = op.complete_ns().unwrap_or(u64::MAX);
        sends[next[number]] = Landed { invoke_ns: op.invoke_ns, complete_ns, offset: ack.offset, ack: index };
        next[number] += 1;
    }
    // `ops` is already in invocation order; a history read back from JSON may not be.
    let key = |send: &Landed| (send.invoke_ns, acks[send.ack as usize].op());
    for group in &groups {
        let list = &mut sends[group.sends.clone()];
        if !list.is_sorted_by(|a, b| a.invoke_ns < b.invoke_ns || key(a) <= key(b)) {
            list.sort_by_key(key);
        }
    }
    (sends, order.into_iter().map(|number| groups[number].clone()).collect())
}

/// Each ack's group, numbered in order of first appearance, and the groups
/// with their sizes (as `0..size`).
fn number_groups(history: &History, acks: &[Ack]) -> (Vec<usize>, Vec<Group>) {
    let mut numbers: PerProcess<Option<usize>> = PerProcess::new();
    let mut groups: Vec<Group> = Vec::new();
    let group_of = acks
        .iter()
        .map(|ack| {
            let process = history.ops[ack.op() as usize].process;
            let number = *numbers.cell_mut(process, ack.partition).get_or_insert_with(|| {
                groups.push(Group { process, partition: ack.partition, sends: 0..0 });
                groups.len() - 1
            });
            groups[number].sends.end += 1;
            number
        })
        .collect();
    (group_of, groups)
}

/// Gives each group its place in the list, by producer then partition
/// name, and returns the group numbers in that order.
fn lay_out(view: &LogView<'_>, groups: &mut [Group]) -> Vec<usize> {
    let mut rank = vec![0; view.partition_count()];
    for (position, id) in view.ids().enumerate() {
        rank[id.index()] = position;
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&number| (groups[number].process, rank[groups[number].partition.index()]));
    let mut start = 0;
    for &number in &order {
        let size = groups[number].sends.end;
        groups[number].sends = start..start + size;
        start += size;
    }
    order
}

impl Producer<'_> {
    fn check(&self, sends: &[Landed], in_flight: &mut InFlight, findings: &mut Findings) -> u64 {
        let mut reordered = 0;
        // The highest landing among every earlier-invoked send, and among those
        // that had completed by the current send's invocation.
        let mut highest_invoked: Option<Highest> = None;
        let mut highest_completed: Option<Highest> = None;
        // Earlier sends not yet known to be complete, by completion time.
        in_flight.clear();
        for (index, send) in sends.iter().enumerate() {
            // Completed at the same instant counts as before: its append preceded
            // the ack, and this send cannot append before it is invoked.
            while let Some(earlier) = in_flight.pop_done_by(send.invoke_ns) {
                highest_completed =
                    higher(highest_completed, Highest { offset: sends[earlier].offset, index: earlier });
            }
            let witness = if self.ordered { highest_invoked } else { highest_completed };
            match witness.filter(|w| w.offset > send.offset) {
                Some(earlier) => {
                    findings.found(Invariant::NonmonotonicSend, || self.describe(send, &sends[earlier.index]))
                }
                None if highest_invoked.is_some_and(|w| w.offset > send.offset) => reordered += 1,
                None => {}
            }
            highest_invoked = higher(highest_invoked, Highest { offset: send.offset, index });
            in_flight.push((send.complete_ns, index));
        }
        reordered
    }

    /// `partition t-0 process 1: p1:8 (op 30 (...)) landed at offset 4, below offset 7 where the
    /// earlier-invoked p1:5 (op 25 (...)) landed, which had completed before p1:8 was invoked`
    fn describe(&self, later: &Landed, earlier: &Landed) -> String {
        let (later, earlier) = (&self.acks[later.ack as usize], &self.acks[earlier.ack as usize]);
        let why = if self.ordered {
            "and this producer promises send order".to_string()
        } else {
            format!("which had completed before {} was invoked", later.value)
        };
        format!(
            "partition {} process {}: {} ({}) landed at offset {}, below offset {} where the earlier-invoked {} ({}) landed, {why}",
            self.partition,
            self.history.ops[later.op() as usize].process,
            later.value,
            op_label(self.history, later.op()),
            later.offset,
            earlier.offset,
            earlier.value,
            op_label(self.history, earlier.op()),
        )
    }
}

/// Where the highest of some sends landed, and which of them (an index into
/// the producer's sends) landed there first.
#[derive(Clone, Copy)]
struct Highest {
    offset: i64,
    index: usize,
}

fn higher(current: Option<Highest>, candidate: Highest) -> Option<Highest> {
    match current {
        Some(c) if c.offset >= candidate.offset => Some(c),
        _ => Some(candidate),
    }
}

/// Sends not yet known to be complete, taken out by (completion time,
/// index): a min-heap in effect. Sends mostly complete in the order they
/// were invoked, so those wait in a list kept in order, at O(1) each; only
/// the stragglers a later send overtakes go to a heap.
#[derive(Default)]
struct InFlight {
    /// Ascending from `next`; those before it are taken.
    in_order: Vec<(u64, usize)>,
    next: usize,
    stragglers: BinaryHeap<Reverse<(u64, usize)>>,
}

impl InFlight {
    fn clear(&mut self) {
        self.in_order.clear();
        self.next = 0;
        self.stragglers.clear();
    }

    fn push(&mut self, send: (u64, usize)) {
        while self.in_order.len() > self.next && self.in_order[self.in_order.len() - 1] > send {
            let last = self.in_order.pop().expect("not empty");
            self.stragglers.push(Reverse(last));
        }
        self.in_order.push(send);
    }

    /// The index of the first send, by (completion, index), that completed
    /// at or before `ns`, taken out.
    fn pop_done_by(&mut self, ns: u64) -> Option<usize> {
        let first = self.in_order.get(self.next).copied().filter(|&(done_ns, _)| done_ns <= ns);
        let straggler = self.stragglers.peek().map(|&Reverse(send)| send).filter(|&(done_ns, _)| done_ns <= ns);
        match (first, straggler) {
            (Some(first), Some(straggler)) if straggler < first => {
                self.stragglers.pop().map(|Reverse((_, index))| index)
            }
            (Some((_, index)), _) => {
                self.next += 1;
                Some(index)
            }
            (None, Some(_)) => self.stragglers.pop().map(|Reverse((_, index))| index),
            (None, None) => None,
        }
    }
}
