//! What a read_committed reader may see of transactions, value by value.
//!
//! - **no-aborted-read** (Jepsen's G1a): a read_committed poll returned a
//!   value whose transaction aborted, or whose plain send definitely failed.
//! - **no-precommitted-read**: a read_committed poll returned a value of a
//!   transaction that did not abort, and completed before the transaction's
//!   commit was asked for (`end-txn` with commit invoked), or the commit
//!   was never asked for. Jepsen's form — a transaction's poll seeing its
//!   own uncommitted sends — is the case where the reader is the writer.
//!   A value of a transaction that definitely aborted is an aborted read
//!   instead, so no read counts twice.
//! - **no-lost-committed-write**: an acked send of a committed transaction
//!   that the drain never read, judged only when the drain reads committed
//!   (a drain that reads uncommitted would see it either way).
//!
//! Reads by read_uncommitted consumers (Kafka's default) are not judged:
//! they may see open and aborted transactions' records below the high watermark.

use super::evidence::{op_label, Findings, Millis};
use super::log_view::LogView;
use super::txn::{CommittedRead, Fate, Txns};
use super::Invariant;
use crate::history::{History, Outcome, Polled};

pub(crate) fn check(history: &History, view: &LogView<'_>, txns: &Txns<'_>, findings: &mut Findings) {
    for read in txns.committed_reads() {
        for record in read.records {
            judge_read(history, txns, read, record, findings);
        }
    }
    lost_committed_writes(history, view, txns, findings);
}

fn judge_read(history: &History, txns: &Txns<'_>, read: &CommittedRead<'_>, record: &Polled, findings: &mut Findings) {
    let Some(writer) = txns.writer(record.value) else { return };
    let reader = || {
        format!(
            "partition {} offset {}: {} (read_committed) read {}",
            record.partition,
            record.offset,
            op_label(history, read.op.id),
            record.value
        )
    };
    let Some(t) = writer.txn() else {
        // A plain send: visible once appended, unless it definitely was not.
        if let Some(Outcome::SendFail { error }) = &history.ops[writer.send() as usize].outcome {
            findings.found(Invariant::NoAbortedRead, || {
                format!("{}, whose send {} definitely failed ({error})", reader(), op_label(history, writer.send()))
            });
        }
        return;
    };
    let txn = &txns.txns[t];
    let written = || format!("written by {} in {}", op_label(history, writer.send()), txn.describe(history));
    if txn.fate == Fate::Aborted {
        findings.found(Invariant::NoAbortedRead, || format!("{}, {}", reader(), written()));
        return;
    }
    let own = if read.txn == Some(t) { "; the reader's own transaction" } else { "" };
    let read_done_ns = read.op.complete_ns().unwrap_or(u64::MAX);
    match txn.commit_asked {
        Some(end) if end.invoke_ns <= read_done_ns => {}
        Some(end) => findings.found(Invariant::NoPrecommittedRead, || {
            format!(
                "{}, {}; the poll completed at {}, before the commit was asked for ({}){own}",
                reader(),
                written(),
                Millis(read_done_ns),
                op_label(history, end.id)
            )
        }),
        None => findings.found(Invariant::NoPrecommittedRead, || {
            format!("{}, {}; its commit was never asked for{own}", reader(), written())
        }),
    }
}

fn lost_committed_writes(history: &History, view: &LogView<'_>, txns: &Txns<'_>, findings: &mut Findings) {
    let Some(drained) = txns.drained() else { return };
    for txn in txns.txns.iter().filter(|txn| txn.fate == Fate::Committed) {
        for write in &txn.writes {
            let Some((partition, offset)) = write.landed() else { continue };
            if drained.read(write.value) {
                continue;
            }
            findings.found(Invariant::NoLostCommittedWrite, || {
                let reached = match drained.highest(partition) {
                    Some(highest) => format!("it read the partition up to offset {highest}"),
                    None => "it read nothing of the partition".to_string(),
                };
                format!(
                    "partition {} value {} acked at offset {offset} to {} in {} was never read by the read_committed drain ({reached})",
                    view.name(partition),
                    write.value,
                    op_label(history, write.op()),
                    txn.describe(history)
                )
            });
        }
    }
}
