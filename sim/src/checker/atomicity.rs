//! txn-atomicity: to a read_committed reader, a transaction's writes are
//! all visible or none are.
//!
//! - **Fractured read**: a read_committed reader read a value of transaction
//!   T, and its walk through a partition (one step, with no seek or assign
//!   of the partition between) went over an offset holding another of T's
//!   values, which it never read. Whether the step came before or after the
//!   read of T does not matter: a read_committed reader gets past T's record
//!   only once T's marker is in that partition (the LSO holds it back
//!   before), so T had committed there (and the record must be returned) or
//!   aborted (and nothing of T may be returned anywhere).
//! - **Partial drain**: the read_committed drain read some of a committed or
//!   unknown-fate transaction's writes and missed an acked one. A
//!   transaction of unknown fate may have gone either way, but only all or
//!   none of it. (The missing writes of a committed transaction are also
//!   `no-lost-committed-write` findings, one per value; this is one per
//!   transaction.)

use super::evidence::{op_label, Findings};
use super::log_view::{LogView, OpId};
use super::txn::{Fate, TxnIndex, TxnView, Txns, Write};
use super::visibility::Visibility;
use super::Invariant;
use crate::history::{History, Polled, ProcessId, Value};

/// How many values one finding spells out before summarising.
const LISTED: usize = 4;

pub(crate) fn check(
    history: &History,
    view: &LogView<'_>,
    txns: &Txns<'_>,
    visibility: &Visibility<'_, '_>,
    findings: &mut Findings,
) {
    fractured_reads(history, view, txns, visibility, findings);
    partial_drain(history, view, txns, findings);
}

/// What read_committed readers read of transactions.
struct Seen<'h> {
    /// Per (reader, transaction), the first poll that returned one of its
    /// values, and that record; by reader then transaction.
    first: Vec<(ProcessId, TxnIndex, OpId, &'h Polled)>,
    /// Every (reader, transactional value) read, ascending.
    values: Vec<(ProcessId, Value)>,
}

impl<'h> Seen<'h> {
    fn collect(txns: &Txns<'h>) -> Seen<'h> {
        let (mut first, mut values) = (Vec::new(), Vec::new());
        for read in txns.committed_reads() {
            for record in read.records {
                let Some(t) = txns.writer(record.value).and_then(|w| w.txn()) else { continue };
                first.push((read.op.process, t, read.op.id, record));
                values.push((read.op.process, record.value));
            }
        }
        // Stable: within one poll the first record stays first.
        first.sort_by_key(|&(process, t, op, _)| (process, t, op));
        first.dedup_by_key(|&mut (process, t, _, _)| (process, t));
        values.sort_unstable();
        values.dedup();
        Seen { first, values }
    }

    fn first_read(&self, process: ProcessId, t: TxnIndex) -> Option<(OpId, &'h Polled)> {
        let at = self.first.partition_point(|&(p, u, _, _)| (p, u) < (process, t));
        self.first.get(at).filter(|&&(p, u, _, _)| (p, u) == (process, t)).map(|&(_, _, op, record)| (op, record))
    }

    fn read(&self, process: ProcessId, value: Value) -> bool {
        self.values.binary_search(&(process, value)).is_ok()
    }
}

fn fractured_reads(
    history: &History,
    view: &LogView<'_>,
    txns: &Txns<'_>,
    visibility: &Visibility<'_, '_>,
    findings: &mut Findings,
) {
    let seen = Seen::collect(txns);
    if seen.first.is_empty() {
        return;
    }
    for step in view.poll_steps() {
        let (from, to) = step.offsets();
        if from.checked_add(1).is_none_or(|next| to <= next) {
            continue;
        }
        // Every transactional value observed in the partition, by offset.
        let list = visibility.txn_values(step.partition());
        let (low, high) = (list.partition_point(|e| e.0 <= from), list.partition_point(|e| e.0 < to));
        for &(offset, value, t) in &list[low..high.max(low)] {
            let Some((op, record)) = seen.first_read(step.process(), t) else { continue };
            if seen.read(step.process(), value) {
                continue;
            }
            findings.found(Invariant::TxnAtomicity, || {
                let txn = &txns.txns[t];
                let (_, to_poll) = step.polls();
                format!(
                    "process {} read {} of {} (partition {} offset {}, {}), but its walk through partition {} went from offset {from} to offset {to} ({}) over the transaction's {value} at offset {offset}, which it never read",
                    step.process(),
                    record.value,
                    txn.describe(history),
                    record.partition,
                    record.offset,
                    op_label(history, op),
                    view.name(step.partition()),
                    op_label(history, history.ops[to_poll].id),
                )
            });
        }
    }
}

fn partial_drain(history: &History, view: &LogView<'_>, txns: &Txns<'_>, findings: &mut Findings) {
    let Some(drained) = txns.drained() else { return };
    for txn in txns.txns.iter().filter(|txn| txn.fate != Fate::Aborted) {
        let (read, unread): (Vec<&Write>, Vec<&Write>) = txn.writes.iter().partition(|w| drained.read(w.value));
        let missed: Vec<&Write> = unread.into_iter().filter(|w| w.landed().is_some()).collect();
        if read.is_empty() || missed.is_empty() {
            continue;
        }
        findings.found(Invariant::TxnAtomicity, || describe_partial(history, view, txn, &read, &missed));
    }
}

/// `transaction op 3 (...) of tx-1 (producer 7, epoch 0), committed: the read_committed drain read
/// 1 of its writes (p1:3 at t-0 offset 4) but not 1 acked one (p1:4 acked at t-1 offset 2 to op 5 (...))`
fn describe_partial(
    history: &History,
    view: &LogView<'_>,
    txn: &TxnView<'_>,
    read: &[&Write],
    missed: &[&Write],
) -> String {
    let place = |w: &Write| match w.landed() {
        Some((partition, offset)) => format!("{} at {} offset {offset}", w.value, view.name(partition)),
        None => format!("{} (not acked)", w.value),
    };
    let read_list = listed(read.iter().map(|w| place(w)), read.len());
    let missed_list =
        listed(missed.iter().map(|w| format!("{} acked to {}", place(w), op_label(history, w.op()))), missed.len());
    format!(
        "{}: the read_committed drain read {} of its writes ({read_list}) but not {} acked one{} ({missed_list})",
        txn.describe(history),
        read.len(),
        missed.len(),
        if missed.len() == 1 { "" } else { "s" },
    )
}

fn listed(items: impl Iterator<Item = String>, total: usize) -> String {
    let mut text: Vec<String> = items.take(LISTED).collect();
    if total > LISTED {
        text.push(format!("and {} more", total - LISTED));
    }
    text.join("; ")
}
