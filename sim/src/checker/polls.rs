//! Each consumer's walk through each partition, over its ok polls in op
//! order. nonmonotonic-poll: a step that does not move forward. poll-skip: a
//! step that jumps over an offset some client observed to exist. Both are
//! judged between successive polls (an Assign listing the partition or a Seek
//! on it breaks the chain) and between consecutive records of one poll.

use super::evidence::{op_label, Findings};
use super::log_view::{ConsumerStep, LogView, PartitionId, RecordAt};
use super::per_process::PerProcess;
use super::Invariant;
use crate::history::{History, Partition, ProcessId};

/// Where a consumer's walk through one partition has got to: the record at
/// `offset`, returned by the op at index `op` in `History::ops`.
#[derive(Clone, Copy)]
struct Cursor {
    offset: i64,
    op: usize,
}

/// One step of a consumer through a partition: from `from` to `to`.
struct Step<'h> {
    partition: &'h Partition,
    process: ProcessId,
    from: Cursor,
    to: Cursor,
    /// Both ends in one poll, or across two successive polls.
    within_one_poll: bool,
}

pub(crate) fn check(history: &History, view: &LogView<'_>, findings: &mut Findings) {
    let mut cursors: PerProcess<Option<Cursor>> = PerProcess::new(view.partition_count());
    for step in view.consumer_steps() {
        match step {
            ConsumerStep::Reset { process, partition } => {
                // A process with no cursors yet has nothing to reset.
                if let Some(cursor) = cursors.existing_mut(*process, *partition) {
                    *cursor = None;
                }
            }
            ConsumerStep::Poll { process, index, records } => {
                let cursors = cursors.row_mut(*process);
                walk_poll(history, view, (*process, *index), view.records(records.clone()), cursors, findings);
            }
        }
    }
}

/// Steps the process's cursors through one poll's records. A cursor this
/// very poll set is where the poll has got to, so that step is within it.
fn walk_poll(
    history: &History,
    view: &LogView<'_>,
    (process, index): (ProcessId, usize),
    records: &[RecordAt],
    cursors: &mut [Option<Cursor>],
    findings: &mut Findings,
) {
    for record in records {
        let to = Cursor { offset: record.offset, op: index };
        let cursor = &mut cursors[record.partition.index()];
        if let Some(from) = *cursor {
            let partition = view.name(record.partition);
            let step = Step { partition, process, from, to, within_one_poll: from.op == index };
            judge(history, view, record.partition, &step, findings);
        }
        *cursor = Some(to);
    }
}

fn judge(history: &History, view: &LogView<'_>, id: PartitionId, step: &Step<'_>, findings: &mut Findings) {
    let (from, to) = (step.from.offset, step.to.offset);
    if to <= from {
        findings.found(Invariant::NonmonotonicPoll, || {
            let how = if to == from { "repeating it" } else { "going backwards" };
            format!("{}, {how}", step.describe(history))
        });
        return;
    }
    if to <= from.saturating_add(1) {
        return;
    }
    let log = view.log(id);
    let (skipped, Some(first)) = log.known_between(from, to) else { return };
    findings.found(Invariant::PollSkip, || {
        let holding: Vec<String> = log.values_at(first).map(|(value, _)| value.to_string()).collect();
        format!(
            "{}, skipping {skipped} known offset{} in {}..={} (offset {first} holds {})",
            step.describe(history),
            if skipped == 1 { "" } else { "s" },
            from + 1,
            to - 1,
            holding.join(", ")
        )
    });
}

impl Step<'_> {
    /// `partition t-0 process 4: within one poll op 23 (...), offset 7 was followed by offset 6` or
    /// `partition t-0 process 4: poll op 20 (...) ended at offset 5 and the next poll op 23 (...) started at offset 9`
    fn describe(&self, history: &History) -> String {
        let prefix = format!("partition {} process {}", self.partition, self.process);
        let (from, to) = (self.from.offset, self.to.offset);
        let label = |cursor: Cursor| op_label(history, history.ops[cursor.op].id);
        if self.within_one_poll {
            let poll = label(self.to);
            format!("{prefix}: within one poll {poll}, offset {from} was followed by offset {to}")
        } else {
            let (previous, next) = (label(self.from), label(self.to));
            format!("{prefix}: poll {previous} ended at offset {from} and the next poll {next} started at offset {to}")
        }
    }
}
