//! End-to-end exactly-once of consume-transform-produce applications
//! (`History::pipelines`), judged per pipeline group from what the
//! read_committed drain read and from the pairs the pipeline's processes
//! recorded in their transactions' `txn-offsets` ops (each names an input
//! value and the output value sent for it).
//!
//! The drain read every partition from its start, committed only, so its
//! reads of the output topic are the committed output, and its reads of the
//! input topics place every input value at a (partition, offset). After the
//! pipelines stopped it read the group's committed offsets (`group-offsets`):
//! c_p per input partition p. No offset committed for p (absent, or Kafka's
//! -1) means nothing is consumed: c_p is 0, below every offset the drain
//! read (it read from the log start, so nothing below the log start is judged).
//!
//! - **exactly-once-pipeline**:
//!   1. every output record the drain read is the output of some
//!      transformed pair (output of unknown origin, else);
//!   2. no input is reflected twice in the drained output: at most one
//!      output per input record the drain read (a value the drain read at
//!      k offsets, a plain producer's retry written twice, may have k);
//!   3. with the group's committed offsets read: every input record the
//!      drain read below c_p has an output in the drained output (else it
//!      is lost), and every drained output's input lies below c_p (else
//!      output and offsets disagree: output committed for input the group
//!      will consume again). An output whose input the drain never read
//!      cannot be placed, and is judged by 1 and 2 only (the input's loss
//!      is the drain checkers' to find).
//! - **pipeline-liveness**: a pipeline group that had not caught up when
//!   stopped (one finding); and one that had, whose committed offset c_p
//!   lies below the end of what the drain read of p (the offset after the
//!   last input record it read there). c_p above that end is not judged:
//!   the trailing offsets may hold only aborted or undecided transactions'
//!   records and control markers, which a read_committed consumer's
//!   position passes but no read shows, so the log end is not known here.
//!
//! Without a `group-offsets` op for the group (the drain did not finish),
//! 1 and 2 only. Without a read_committed drain there is no committed
//! output to judge: only a group that had not caught up is reported.
//! Near-linear: the drain's records and the pairs are sorted once, by value,
//! and walked in step.

use super::bucket_sort::sort_by_bucket;
use super::evidence::{op_label, Findings};
use super::log_view::{compact_op, LogView, OpId, PartitionId};
use super::txn::{OffsetCommit, Txns};
use super::Invariant;
use crate::history::{Call, History, Op, PipelineInfo, ProcessId, Value};

/// One distinct record the drain read, and the first poll that returned it.
/// The checker holds a few of these per record the drain read (24 bytes:
/// an op id fits 32 bits, as `Origin`'s do).
#[derive(Clone, Copy, Debug)]
struct Record {
    partition: PartitionId,
    read_by: u32,
    offset: i64,
    value: Value,
}

impl Record {
    fn read_by(&self) -> OpId {
        OpId::from(self.read_by)
    }
}

/// A transformed pair: the input value, and the `txn-offsets` op that named
/// it (an index of `Txns::offset_commits`).
#[derive(Clone, Copy, Debug)]
struct Origin {
    input: Value,
    output: Value,
    commit: u32,
}

impl Origin {
    fn commit<'h>(&self, txns: &Txns<'h>) -> OffsetCommit<'h> {
        txns.offset_commits()[self.commit as usize]
    }

    fn group<'h>(&self, txns: &Txns<'h>) -> &'h str {
        match &self.commit(txns).op.call {
            Call::TxnOffsets(commit) => &commit.group,
            _ => unreachable!("origins come from txn-offsets ops"),
        }
    }
}

/// What a partition is to the pipeline being judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Input,
    Output,
    Other,
}

/// What every pipeline's judgement reads.
struct Shared<'a, 'h> {
    history: &'h History,
    view: &'a LogView<'h>,
    txns: &'a Txns<'h>,
    /// The drain's records, by partition then offset.
    records: Vec<Record>,
    /// Every transformed pair, by output value (one per output).
    origins: Vec<Origin>,
}

impl<'h> Shared<'_, 'h> {
    /// The transformed pair whose output is `output`, if any.
    fn origin(&self, output: Value) -> Option<&Origin> {
        self.origins.binary_search_by_key(&output, |origin| origin.output).ok().map(|at| &self.origins[at])
    }
}

pub(crate) fn check(history: &History, view: &LogView<'_>, txns: &Txns<'_>, findings: &mut Findings) {
    if history.pipelines.is_empty() {
        return;
    }
    let drain: Vec<ProcessId> =
        history.drain_processes.iter().copied().filter(|p| history.read_committed_consumers.contains(p)).collect();
    let shared = Shared { history, view, txns, records: drained_records(view, txns, &drain), origins: origins(txns) };
    for (index, pipeline) in history.pipelines.iter().enumerate() {
        if !pipeline.caught_up {
            findings.found(Invariant::PipelineLiveness, || {
                format!(
                    "group {} (processes {:?}): not every process had caught up (its last polls empty, no \
                     transaction open) when the pipelines were stopped, within the bound after the heal",
                    pipeline.group, pipeline.processes
                )
            });
        }
        if drain.is_empty() {
            continue;
        }
        // Two pipelines writing one topic: the first reports its unknown outputs.
        let first_of_output = history.pipelines[..index].iter().all(|p| p.output != pipeline.output);
        Judge::new(&shared, pipeline, first_of_output, findings).run(findings);
    }
}

/// The drain's records, distinct by (partition, offset, value), by partition then offset.
fn drained_records(view: &LogView<'_>, txns: &Txns<'_>, drain: &[ProcessId]) -> Vec<Record> {
    let mut records = Vec::new();
    for read in txns.committed_reads().iter().filter(|read| drain.contains(&read.op.process)) {
        for polled in read.records {
            let Some(partition) = view.id(&polled.partition) else { continue };
            let read_by = compact_op(read.op.id);
            records.push(Record { partition, read_by, offset: polled.offset, value: polled.value });
        }
    }
    // By partition first: the drain reads each from its start, in order.
    let partitions = view.partition_count();
    sort_by_bucket(&mut records, partitions, |r| r.partition.index(), |r| (r.offset, r.value, r.read_by));
    records.dedup_by_key(|r| (r.partition, r.offset, r.value));
    records
}

/// Every transformed pair of every `txn-offsets` op, in op order.
fn transforms<'t>(txns: &'t Txns<'_>) -> impl Iterator<Item = Origin> + 't {
    // Fewer txn-offsets ops than ops, so their indices fit as op ids do.
    (txns.offset_commits().iter().zip(0u64..)).flat_map(|(commit, index)| {
        let at = compact_op(index);
        pairs(commit.op).iter().map(move |&(input, output)| Origin { input, output, commit: at })
    })
}

/// The pairs one op transformed (none for any other op).
fn pairs(op: &Op) -> &[(Value, Value)] {
    match &op.call {
        Call::TxnOffsets(commit) => &commit.transformed,
        _ => &[],
    }
}

/// Every transformed pair of every `txn-offsets` op, by output value (the
/// first pair naming an output, in op order, is its origin).
fn origins(txns: &Txns<'_>) -> Vec<Origin> {
    let mut origins: Vec<Origin> = transforms(txns).collect();
    // Each output's first pair in op order leads its run and is kept (an
    // output is sent once, so one op never pairs it twice; commits are in
    // op order).
    origins.sort_unstable_by_key(|origin| (origin.output, origin.commit));
    origins.dedup_by_key(|origin| origin.output);
    origins
}

/// One pipeline group's judgement. Sorted vectors, not maps: a standard
/// seed's pipeline has tens of thousands of inputs, and a map entry (with
/// its own vector) per input cost more than the rest of the checker.
struct Judge<'s, 'a, 'h> {
    shared: &'s Shared<'a, 'h>,
    pipeline: &'h PipelineInfo,
    /// The drain's records in the input topics, by value (then partition and offset).
    inputs: Vec<Record>,
    /// The drain's records in the output topic that are the group's outputs,
    /// with their origins, by input value (then partition and offset).
    outputs: Vec<(Record, Origin)>,
    /// The drain's last `group-offsets` op for the group, and c_p by
    /// partition index (`None`: no offset committed).
    committed: Option<(&'h Op, Vec<Option<i64>>)>,
}

impl<'s, 'a, 'h> Judge<'s, 'a, 'h> {
    /// Sorts the drain's records by role and reports outputs of unknown
    /// origin (if this pipeline reports its output topic's).
    fn new(
        shared: &'s Shared<'a, 'h>,
        pipeline: &'h PipelineInfo,
        report_unknown: bool,
        findings: &mut Findings,
    ) -> Judge<'s, 'a, 'h> {
        let Shared { history, view, txns, .. } = *shared;
        let mut roles = vec![Role::Other; view.partition_count()];
        for id in view.ids() {
            let topic = &view.name(id).topic;
            if *topic == pipeline.output {
                roles[id.index()] = Role::Output;
            } else if pipeline.inputs.iter().any(|input| *topic == *input) {
                roles[id.index()] = Role::Input;
            }
        }
        let mut inputs: Vec<Record> = Vec::new();
        let mut outputs: Vec<(Record, Origin)> = Vec::new();
        let group: &str = &pipeline.group;
        for &record in &shared.records {
            match roles[record.partition.index()] {
                Role::Input => inputs.push(record),
                Role::Output => match shared.origin(record.value) {
                    Some(origin) if origin.group(txns) == group => outputs.push((record, *origin)),
                    Some(_) => {} // another pipeline's output
                    None if report_unknown => findings.found(Invariant::ExactlyOncePipeline, || {
                        format!(
                            "group {group}: output of unknown origin: the drain read {} at {} ({}), and no \
                             txn-offsets op pairs it with an input",
                            record.value,
                            position(view, &record),
                            op_label(history, record.read_by())
                        )
                    }),
                    None => {}
                },
                Role::Other => {}
            }
        }
        // Each value's records by partition then offset (unique keys). In
        // place: a bucket sort's copy of these was the stage's memory peak.
        inputs.sort_unstable_by_key(|record| (record.value, record.partition, record.offset));
        outputs.sort_unstable_by_key(|(record, origin)| (origin.input, record.partition, record.offset));
        let committed = txns.group_offsets().iter().rev().find_map(|&op| match &op.call {
            Call::GroupOffsets(committed) if &*committed.group == group => {
                let offsets = &committed.offsets;
                let mut by_index = vec![None; view.partition_count()];
                for (partition, offset) in offsets {
                    if let Some(id) = view.id(partition) {
                        by_index[id.index()] = Some(*offset);
                    }
                }
                Some((op, by_index))
            }
            _ => None,
        });
        Judge { shared, pipeline, inputs, outputs, committed }
    }

    fn run(&self, findings: &mut Findings) {
        // Every input value with a record or an output, once, ascending:
        // a merge of the two sorted vectors.
        let (mut i, mut o) = (0, 0);
        while i < self.inputs.len() || o < self.outputs.len() {
            let value = match (self.inputs.get(i), self.outputs.get(o)) {
                (Some(record), Some((_, origin))) => record.value.min(origin.input),
                (Some(record), None) => record.value,
                (None, Some((_, origin))) => origin.input,
                (None, None) => unreachable!("the loop's condition"),
            };
            let records_end = i + self.inputs[i..].iter().take_while(|r| r.value == value).count();
            let outputs_end = o + self.outputs[o..].iter().take_while(|(_, origin)| origin.input == value).count();
            self.judge_input(value, &self.inputs[i..records_end], &self.outputs[o..outputs_end], findings);
            (i, o) = (records_end, outputs_end);
        }
        if self.pipeline.caught_up {
            self.judge_ends(findings);
        }
    }

    /// Checks 2 and 3 for one input value: the drain's records of it, and its outputs.
    fn judge_input(&self, input: Value, records: &[Record], outputs: &[(Record, Origin)], findings: &mut Findings) {
        let allowed = records.len().max(1);
        let group = &self.pipeline.group;
        if outputs.len() > allowed {
            findings.found(Invariant::ExactlyOncePipeline, || {
                format!(
                    "group {group}: input {input} ({}) is reflected {} times in the committed output: {}",
                    self.positions(records),
                    outputs.len(),
                    self.describe_outputs(outputs)
                )
            });
        }
        let Some((op, _)) = &self.committed else { return };
        if records.is_empty() {
            return;
        }
        let is_below = |record: &&Record| record.offset < self.committed_offset(record.partition);
        let below = records.iter().filter(is_below).count();
        let reflected = outputs.len().min(allowed);
        // The evidence's record lists are built only for a finding.
        let split = || -> (Vec<Record>, Vec<Record>) { records.iter().partition(is_below) };
        if below > reflected {
            findings.found(Invariant::ExactlyOncePipeline, || {
                let (below, _) = split();
                let has = match reflected {
                    0 => "no output".to_string(),
                    n => format!("only {n} output(s)"),
                };
                format!(
                    "group {group}: input {input} lost: at {}, below the group's committed offsets ({}; {}), it \
                     has {has} in the committed output; {}",
                    self.positions(&below),
                    self.committed_words(&below),
                    op_label(self.shared.history, op.id),
                    self.describe_transforms(input)
                )
            });
        } else if reflected > below {
            findings.found(Invariant::ExactlyOncePipeline, || {
                let (_, above) = split();
                format!(
                    "group {group}: offsets and output disagree: input {input} at {} lies at or above the \
                     group's committed offsets ({}; {}), yet its output is committed: {}",
                    self.positions(&above),
                    self.committed_words(&above),
                    op_label(self.shared.history, op.id),
                    self.describe_outputs(&outputs[below..reflected])
                )
            });
        }
    }

    /// Check 4 for a group that caught up: c_p reaches the end of what the drain read of p.
    fn judge_ends(&self, findings: &mut Findings) {
        let Some((op, _)) = &self.committed else { return };
        // The drain's last input record per partition.
        let mut last: Vec<Option<Record>> = vec![None; self.shared.view.partition_count()];
        for record in &self.inputs {
            let top = &mut last[record.partition.index()];
            if top.is_none_or(|top| record.offset > top.offset) {
                *top = Some(*record);
            }
        }
        for record in last.into_iter().flatten() {
            let committed = self.committed_offset(record.partition);
            if committed <= record.offset {
                findings.found(Invariant::PipelineLiveness, || {
                    format!(
                        "group {}: every process had caught up, but its {} ({}): short of the end of what the \
                         drain read there, {} (it read {} at offset {}, {})",
                        self.pipeline.group,
                        self.committed_words(&[record]),
                        op_label(self.shared.history, op.id),
                        record.offset + 1,
                        record.value,
                        record.offset,
                        op_label(self.shared.history, record.read_by())
                    )
                });
            }
        }
    }

    /// c_p: the group's committed offset of `partition` (0 if none).
    fn committed_offset(&self, partition: PartitionId) -> i64 {
        let committed = self.committed.as_ref().and_then(|(_, offsets)| offsets[partition.index()]);
        committed.filter(|&offset| offset >= 0).unwrap_or(0)
    }

    /// `committed offset of in-0 is 5` or `no committed offset of in-0`, per distinct partition.
    fn committed_words(&self, records: &[Record]) -> String {
        let mut partitions: Vec<PartitionId> = records.iter().map(|r| r.partition).collect();
        partitions.dedup();
        let words: Vec<String> = partitions
            .into_iter()
            .map(|partition| {
                let name = self.shared.view.name(partition);
                match self.committed.as_ref().and_then(|(_, offsets)| offsets[partition.index()]) {
                    Some(offset) if offset >= 0 => format!("committed offset of {name} is {offset}"),
                    _ => format!("no committed offset of {name}"),
                }
            })
            .collect();
        words.join(", ")
    }

    /// `in-0 offset 3 (read by op 7 (...))`, comma-separated; `not read by the drain` for none.
    fn positions(&self, records: &[Record]) -> String {
        if records.is_empty() {
            return "not read by the drain".to_string();
        }
        let each: Vec<String> = records
            .iter()
            .map(|r| {
                format!("{} (read by {})", position(self.shared.view, r), op_label(self.shared.history, r.read_by()))
            })
            .collect();
        each.join(", ")
    }

    /// `p10:0 at out-0 offset 4, transformed by op 12 (...) in generation 3 in transaction ...`, `; `-separated.
    fn describe_outputs(&self, outputs: &[(Record, Origin)]) -> String {
        let each: Vec<String> = outputs
            .iter()
            .map(|(record, origin)| {
                format!("{} at {}, transformed {}", record.value, position(self.shared.view, record), self.by(origin))
            })
            .collect();
        each.join("; ")
    }

    /// What became of an input: every pair of the group that transformed it.
    fn describe_transforms(&self, input: Value) -> String {
        let group: &str = &self.pipeline.group;
        let each: Vec<String> = transforms(self.shared.txns)
            .filter(|origin| origin.input == input && origin.group(self.shared.txns) == group)
            .map(|origin| format!("transformed into {} {}", origin.output, self.by(&origin)))
            .collect();
        if each.is_empty() {
            return "no txn-offsets op of the group transformed it".to_string();
        }
        each.join("; ")
    }

    /// `by op 12 (...) in generation 3 in transaction op 10 (...) of tx-1 (producer 1001, epoch 0), committed`.
    fn by(&self, origin: &Origin) -> String {
        let commit = origin.commit(self.shared.txns);
        let generation = match &commit.op.call {
            Call::TxnOffsets(commit) => commit.generation,
            _ => unreachable!("origins come from txn-offsets ops"),
        };
        let txn = match commit.txn {
            Some(t) => format!("in {}", self.shared.txns.txns[t].describe(self.shared.history)),
            None => "outside any transaction".to_string(),
        };
        format!("by {} in generation {generation} {txn}", op_label(self.shared.history, commit.op.id))
    }
}

/// `out-0 offset 4`.
fn position(view: &LogView<'_>, record: &Record) -> String {
    format!("{} offset {}", view.name(record.partition), record.offset)
}
