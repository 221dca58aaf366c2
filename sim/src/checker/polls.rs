//! Each consumer's walk through each partition, over its ok polls in op
//! order. nonmonotonic-poll: a step that does not move forward. poll-skip: a
//! step that jumps over an offset some client observed to exist. Both are
//! judged between successive polls (an Assign listing the partition or a Seek
//! on it breaks the chain) and between consecutive records of one poll.

use super::evidence::{op_label, Findings};
use super::log_view::{LogView, OpId};
use super::Invariant;
use crate::history::{Call, History, Op, Outcome, Partition, Polled, ProcessId};
use std::collections::BTreeMap;

/// Where one consumer's previous ok poll left one partition.
#[derive(Clone, Copy)]
struct Cursor {
    offset: i64,
    op: OpId,
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
    let mut cursors: BTreeMap<(ProcessId, &Partition), Cursor> = BTreeMap::new();
    for op in &history.ops {
        match (&op.call, &op.outcome) {
            // Invoked is enough: an assign or seek may take effect without an ack.
            (Call::Assign { partitions }, _) => {
                for partition in partitions {
                    cursors.remove(&(op.process, partition));
                }
            }
            (Call::Seek { partition, .. }, _) => {
                cursors.remove(&(op.process, partition));
            }
            (Call::Poll, Some(Outcome::PollOk { records })) => {
                walk_poll(history, view, op, records, &mut cursors, findings);
            }
            _ => {}
        }
    }
}

fn walk_poll<'h>(
    history: &History,
    view: &LogView<'_>,
    op: &Op,
    records: &'h [Polled],
    cursors: &mut BTreeMap<(ProcessId, &'h Partition), Cursor>,
    findings: &mut Findings,
) {
    // Where this poll has got to in each partition it returned.
    let mut reached: BTreeMap<&'h Partition, Cursor> = BTreeMap::new();
    for record in records {
        let to = Cursor { offset: record.offset, op: op.id };
        let (from, within_one_poll) = match reached.get(&record.partition) {
            Some(&previous) => (Some(previous), true),
            None => (cursors.get(&(op.process, &record.partition)).copied(), false),
        };
        if let Some(from) = from {
            let step = Step { partition: &record.partition, process: op.process, from, to, within_one_poll };
            judge(history, view, &step, findings);
        }
        reached.insert(&record.partition, to);
    }
    for (partition, cursor) in reached {
        cursors.insert((op.process, partition), cursor);
    }
}

fn judge(history: &History, view: &LogView<'_>, step: &Step<'_>, findings: &mut Findings) {
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
    let Some(log) = view.partition(step.partition) else { return };
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
        if self.within_one_poll {
            let poll = op_label(history, self.to.op);
            format!("{prefix}: within one poll {poll}, offset {from} was followed by offset {to}")
        } else {
            let (previous, next) = (op_label(history, self.from.op), op_label(history, self.to.op));
            format!("{prefix}: poll {previous} ended at offset {from} and the next poll {next} started at offset {to}")
        }
    }
}
