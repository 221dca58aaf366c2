//! Each consumer's walk through each partition, over its ok polls in op
//! order. nonmonotonic-poll: a step that does not move forward. poll-skip: a
//! step that jumps over an offset some client observed to exist. Both are
//! judged between successive polls (an Assign listing the partition or a Seek
//! on it breaks the chain) and between consecutive records of one poll.
//!
//! A read_committed reader (`History::read_committed_consumers`) may step
//! over offsets that hold only values of aborted transactions or of ones of
//! unknown fate (`Visibility`); markers are never observed, so their
//! offsets are gaps for every reader. A read_uncommitted reader sees
//! everything, so for it such a step is a skip.
//!
//! The log view's walk over the ops moves the cursors (`Cursors`) and keeps
//! only the steps that do not move on by exactly one offset; they are judged
//! here, once the view knows every offset any client observed.

use super::evidence::{op_label, Findings};
use super::log_view::{LogView, PartitionId};
use super::per_process::{PerProcess, Row};
use super::visibility::Visibility;
use super::Invariant;
use crate::history::{History, ProcessId};

/// Where a consumer's walk through one partition has got to: the record at
/// `offset`, returned by the op at index `op` in `History::ops`.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    offset: i64,
    op: usize,
}

/// One step of a consumer through a partition, from the record at `from`
/// to the next one it returned, at `to`.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    partition: PartitionId,
    process: ProcessId,
    from: Cursor,
    to: Cursor,
}

impl Step {
    /// Both ends in one poll, or across two successive polls.
    fn within_one_poll(&self) -> bool {
        self.from.op == self.to.op
    }

    pub(crate) fn process(&self) -> ProcessId {
        self.process
    }

    pub(crate) fn partition(&self) -> PartitionId {
        self.partition
    }

    /// The offsets it went from and to.
    pub(crate) fn offsets(&self) -> (i64, i64) {
        (self.from.offset, self.to.offset)
    }

    /// The polls that returned its two ends (indices into `History::ops`).
    pub(crate) fn polls(&self) -> (usize, usize) {
        (self.from.op, self.to.op)
    }
}

/// Every consumer's cursor in every partition, moved along by the view's
/// walk over the ops. Only steps that do not move on by exactly one offset
/// are kept, to be judged once the log view is complete.
pub(crate) struct Cursors {
    cursors: PerProcess<Option<Cursor>>,
    steps: Vec<Step>,
}

/// The cursors of the process whose ok poll the walk is in.
pub(crate) struct PollWalk<'a> {
    process: ProcessId,
    op: usize,
    cursors: Row<'a, Option<Cursor>>,
    steps: &'a mut Vec<Step>,
}

impl Cursors {
    pub(crate) fn new() -> Cursors {
        Cursors { cursors: PerProcess::new(), steps: Vec::new() }
    }

    /// An assign listing the partition, or a seek on it: continuity ends.
    pub(crate) fn reset(&mut self, process: ProcessId, partition: PartitionId) {
        // A cell not yet created holds no cursor.
        if let Some(cursor) = self.cursors.existing_mut(process, partition) {
            *cursor = None;
        }
    }

    /// The ok poll at index `op` in `History::ops`, whose records follow.
    pub(crate) fn poll(&mut self, process: ProcessId, op: usize) -> PollWalk<'_> {
        PollWalk { process, op, cursors: self.cursors.row_mut(process), steps: &mut self.steps }
    }

    pub(crate) fn into_steps(self) -> Vec<Step> {
        self.steps
    }
}

impl PollWalk<'_> {
    /// The poll's next record. A cursor this very poll set is where the
    /// poll has got to, so that step is within it.
    #[inline]
    pub(crate) fn record(&mut self, partition: PartitionId, offset: i64) {
        let to = Cursor { offset, op: self.op };
        let cursor = self.cursors.cell(partition);
        if let Some(from) = cursor.replace(to) {
            if from.offset.checked_add(1) != Some(offset) {
                self.steps.push(Step { partition, process: self.process, from, to });
            }
        }
    }
}

pub(crate) fn check(history: &History, view: &LogView<'_>, visibility: &Visibility<'_, '_>, findings: &mut Findings) {
    for step in view.poll_steps() {
        judge(history, view, visibility, step, findings);
    }
}

fn judge(history: &History, view: &LogView<'_>, visibility: &Visibility<'_, '_>, step: &Step, findings: &mut Findings) {
    let (from, to) = (step.from.offset, step.to.offset);
    if to <= from {
        findings.found(Invariant::NonmonotonicPoll, || {
            let how = if to == from { "repeating it" } else { "going backwards" };
            format!("{}, {how}", step.describe(history, view))
        });
        return;
    }
    if to <= from.saturating_add(1) {
        return;
    }
    let log = view.log(step.partition);
    let known = log.known_between(from, to);
    if known.is_empty() {
        return;
    }
    // A read_committed reader steps over offsets that hold only values of
    // transactions not known to have committed (a subset of `known`).
    let stepped_over: &[i64] = if visibility.reads_committed(step.process) {
        visibility.hidden_between(step.partition, from, to)
    } else {
        &[]
    };
    let skipped = known.len() - stepped_over.len();
    if skipped == 0 {
        return;
    }
    findings.found(Invariant::PollSkip, || {
        // The first known offset not stepped over: both lists ascend, the
        // second a subset of the first, so it is where they first differ.
        let first = known[known.iter().zip(stepped_over).take_while(|(a, b)| a == b).count()];
        let holding: Vec<String> = log.values_at(first).map(|(value, _)| value.to_string()).collect();
        let besides = match stepped_over.len() {
            0 => String::new(),
            n => format!(
                "; it reads committed, and {n} more offset{} held only values of transactions not known to have committed",
                if n == 1 { "" } else { "s" }
            ),
        };
        format!(
            "{}, skipping {skipped} known offset{} in {}..={} (offset {first} holds {}){besides}",
            step.describe(history, view),
            if skipped == 1 { "" } else { "s" },
            from + 1,
            to - 1,
            holding.join(", ")
        )
    });
}

impl Step {
    /// `partition t-0 process 4: within one poll op 23 (...), offset 7 was followed by offset 6` or
    /// `partition t-0 process 4: poll op 20 (...) ended at offset 5 and the next poll op 23 (...) started at offset 9`
    fn describe(&self, history: &History, view: &LogView<'_>) -> String {
        let prefix = format!("partition {} process {}", view.name(self.partition), self.process);
        let (from, to) = (self.from.offset, self.to.offset);
        let label = |cursor: Cursor| op_label(history, history.ops[cursor.op].id);
        if self.within_one_poll() {
            let poll = label(self.to);
            format!("{prefix}: within one poll {poll}, offset {from} was followed by offset {to}")
        } else {
            let (previous, next) = (label(self.from), label(self.to));
            format!("{prefix}: poll {previous} ended at offset {from} and the next poll {next} started at offset {to}")
        }
    }
}
