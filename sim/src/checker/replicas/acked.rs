//! no-lost-acked-write: every value a judged producer (a process in
//! `acks_all_processes`: the acks=all ones) had acknowledged ok sits at
//! exactly its acknowledged offset in the final leader's log, and the drain
//! read it there. Judged whether or not elections were clean (an
//! unclean-election scenario expects it to fire; the evidence says so). A
//! value acknowledged below the final leader's log start is reported too
//! (retention may have deleted it: a scenario with retention expects that).
//! A partition with no final leader is left to replication-liveness, which
//! counts the values it could not verify.
//!
//! A value sent in a transaction that did not commit (aborted, or of
//! unknown fate) must still sit at its offset — acks=all acknowledged it —
//! but a drain that reads committed is right not to return it.

use super::logs::{OffsetMap, RecordsView};
use super::observations::{RecordLabel, ReplicaSnapshot};
use super::{Ctx, Finals, Observed, PartitionIndex, PartitionState};
use crate::checker::evidence::op_label;
use crate::checker::log_view::{compact_op, OpId};
use crate::checker::Invariant;
use crate::history::{Call, History, Outcome, Partition, ProcessId, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Judges every judged producer's ack; returns, per partition index, how many acked
/// values could not be judged because the partition has no final leader.
pub(crate) fn check(ctx: &mut Ctx<'_>, finals: &Finals<'_>, partitions: &[PartitionState]) -> Vec<u64> {
    let seen = ctx.seen;
    let history = seen.history;
    let mut unverified = vec![0; partitions.len()];
    let acks_all: BTreeSet<ProcessId> = seen.replication.acks_all_processes.iter().copied().collect();
    if acks_all.is_empty() {
        return unverified;
    }
    let (acks, drained) = walk(seen, &acks_all, partitions.len());
    let drain_reads_committed = history.drain_processes.iter().any(|p| history.read_committed_consumers.contains(p));
    let leaders: Vec<Option<(&ReplicaSnapshot, RecordsView<'_>)>> = (0..partitions.len())
        .map(|p| finals.leader(PartitionIndex(p as u32)).map(|l| (l, RecordsView::new(&l.records))))
        .collect();
    for acked in acks {
        let Some(index) = acked.index() else {
            ctx.findings.found(Invariant::NoLostAckedWrite, || {
                format!("{}: no replica of the partition was observed", acked.describe(history))
            });
            continue;
        };
        let Some((leader, log)) = &leaders[index.index()] else {
            unverified[index.index()] += 1;
            continue;
        };
        let held = log.get(acked.offset).filter(|r| r.offset < leader.log_end);
        let read = drained[index.index()].get(acked.offset);
        let need_read = !(acked.uncommitted && drain_reads_committed);
        let read_ok = !need_read || read.is_some_and(|(v, _)| v == acked.value);
        if held.is_some_and(|r| r.value == acked.value) && read_ok {
            continue;
        }
        let unclean = partitions[index.index()].leadership.first_unclean;
        ctx.findings.found(Invariant::NoLostAckedWrite, || {
            let in_log = match held {
                Some(r) if r.value == acked.value => "holds it there".to_string(),
                Some(r) => format!("holds {} there", RecordLabel(r)),
                None if acked.offset < leader.log_start => "starts above it".to_string(),
                None => "has no record there".to_string(),
            };
            let by_drain = match read {
                Some((v, _)) if v == acked.value => "the drain read it there".to_string(),
                Some((v, reader)) => format!("the drain read {v} there ({})", op_label(history, reader)),
                None => format!("the drain never read offset {}", acked.offset),
            };
            format!(
                "{}: the final leader {} ({}, log [{}, {})) {in_log}; {by_drain}{}",
                acked.describe(history),
                leader.broker,
                leader.leader_epoch,
                leader.log_start,
                leader.log_end,
                seen.unclean_note(unclean)
            )
        });
    }
    unverified
}

/// One judged ack, compact (32 bytes: one per ok send of a judged
/// producer); the partition's name is the op's, found again for evidence.
struct Acked {
    op: u32,
    /// The partition's index in the replication table, or `UNOBSERVED`.
    index: u32,
    offset: i64,
    value: Value,
    /// Sent in a transaction that did not commit (aborted, unknown, or never ended).
    uncommitted: bool,
}

const UNOBSERVED: u32 = u32::MAX;

impl Acked {
    fn op(&self) -> OpId {
        OpId::from(self.op)
    }

    /// None if no replica of the partition was observed.
    fn index(&self) -> Option<PartitionIndex> {
        (self.index != UNOBSERVED).then_some(PartitionIndex(self.index))
    }

    /// `partition t-0 value p1:3 acked at offset 5 to op 7 (...)`
    fn describe(&self, history: &History) -> String {
        let partition = match &history.ops[self.op as usize].outcome {
            Some(Outcome::SendOk { partition, .. }) => partition,
            _ => unreachable!("an ack is an ok send"),
        };
        format!(
            "partition {} value {} acked at offset {} to {}",
            partition,
            self.value,
            self.offset,
            op_label(history, self.op())
        )
    }
}

/// The drain's reads: per partition index, the value it first read at each offset, and the poll.
type Drained = Vec<OffsetMap<(Value, OpId)>>;

/// One walk over the history's ops (they are many and scattered in memory):
/// the judged producers' acks, with their partitions' indices, and the drain's reads.
fn walk<'h>(seen: Observed<'h>, acks_all: &BTreeSet<ProcessId>, count: usize) -> (Vec<Acked>, Drained) {
    let history = seen.history;
    let mut lookup = Lookup::new(seen);
    let mut acks = Vec::new();
    let mut drained: Drained = (0..count).map(|_| OffsetMap::default()).collect();
    // Per process, its latest transaction: open until (completion time), committed?
    let mut txns: BTreeMap<ProcessId, (u64, bool)> = BTreeMap::new();
    for op in &history.ops {
        match (&op.call, &op.outcome) {
            (Call::Txn { .. }, outcome) => {
                let committed = matches!(outcome, Some(Outcome::TxnCommitted));
                txns.insert(op.process, (op.complete_ns().unwrap_or(u64::MAX), committed));
            }
            (Call::Send { value, .. }, Some(Outcome::SendOk { partition, offset }))
                if acks_all.contains(&op.process) =>
            {
                // Ops are in invocation order: a send invoked while its
                // process's latest transaction was open belongs to it.
                let uncommitted =
                    txns.get(&op.process).is_some_and(|&(until, committed)| op.invoke_ns <= until && !committed);
                let op = compact_op(op.id);
                let index = lookup.index(partition).map_or(UNOBSERVED, |index| index.0);
                acks.push(Acked { op, index, offset: *offset, value: *value, uncommitted });
            }
            (Call::Poll, Some(Outcome::PollOk { records })) if history.drain_processes.contains(&op.process) => {
                for record in records {
                    let Some(index) = lookup.index(&record.partition) else { continue };
                    let map = &mut drained[index.index()];
                    if map.get(record.offset).is_none() {
                        map.insert(record.offset, (record.value, op.id));
                    }
                }
            }
            _ => {}
        }
    }
    (acks, drained)
}

/// Partition names to indices. Consecutive lookups mostly name one
/// partition, so the last one found is tried first (no name is cloned).
struct Lookup<'r> {
    names: Vec<&'r Partition>,
    table: BTreeMap<&'r Partition, PartitionIndex>,
    last: Option<PartitionIndex>,
}

impl<'r> Lookup<'r> {
    fn new(seen: Observed<'r>) -> Lookup<'r> {
        let names: Vec<&Partition> = seen.replication.partitions.iter().map(|p| &p.partition).collect();
        let table = names.iter().enumerate().map(|(i, &p)| (p, PartitionIndex(i as u32))).collect();
        Lookup { names, table, last: None }
    }

    fn index(&mut self, partition: &Partition) -> Option<PartitionIndex> {
        if let Some(last) = self.last.filter(|last| self.names[last.index()] == partition) {
            return Some(last);
        }
        let found = self.table.get(partition).copied();
        self.last = found.or(self.last);
        found
    }
}
