//! lso, as the history shows it: a read_committed poll never returns a
//! record at or beyond the last stable offset.
//!
//! The LSO of a partition is at most the first offset of every transaction
//! still open there. A transaction that its own application ended — it
//! committed (its application was told so, or a read_committed reader
//! returned one of its values), or it was aborted as asked — stayed open in
//! every partition it wrote until the coordinator had its EndTxn, so at
//! least until its `end-txn` was invoked. A read_committed poll that
//! completed before that, yet returned a record of the partition above the
//! transaction's first offset there, was served past the LSO: the record
//! was readable only if that transaction had been decided.
//!
//! A record of the open transaction itself is no-precommitted-read's;
//! here only other writers' records count. Transactions ended by the
//! coordinator alone (a timeout, a newer incarnation) have no observable
//! end and are not used. The replica half of `lso` (the LSO served against
//! the HW, and the LSO reaching the HW after the heal) is in
//! `replicas::lso`.
//!
//! Per partition the open windows are sorted by first offset with a running
//! top two of their end times, so each returned record costs O(log n).

use super::evidence::{op_label, Findings, Millis};
use super::log_view::LogView;
use super::txn::{Fate, TxnIndex, Txns};
use super::visibility::{Shown, Visibility};
use super::Invariant;
use crate::history::History;
use std::collections::BTreeMap;

pub(crate) fn check(
    history: &History,
    view: &LogView<'_>,
    txns: &Txns<'_>,
    visibility: &Visibility<'_, '_>,
    findings: &mut Findings,
) {
    if txns.txns.is_empty() {
        return;
    }
    let mut windows: Vec<Windows> = (0..view.partition_count()).map(|_| Windows::default()).collect();
    for id in view.ids() {
        windows[id.index()] = Windows::build(txns, visibility, id);
    }
    for read in txns.committed_reads() {
        let done_ns = read.op.complete_ns().unwrap_or(u64::MAX);
        for record in read.records {
            let Some(id) = view.id(&record.partition) else { continue };
            let own = txns.writer(record.value).and_then(|writer| writer.txn());
            let Some(open) = windows[id.index()].open_below(record.offset, own) else { continue };
            if open.until_ns <= done_ns {
                continue;
            }
            findings.found(Invariant::Lso, || {
                let txn = &txns.txns[open.txn];
                let end = txn.end_asked.expect("windows have an end");
                format!(
                    "partition {} offset {}: {} (read_committed, completed at {}) read {}, past {} whose record at offset {} \
                     stayed open until its end was asked for at {} ({}): the last stable offset was at most {}",
                    record.partition,
                    record.offset,
                    op_label(history, read.op.id),
                    Millis(done_ns),
                    record.value,
                    txn.describe(history),
                    open.first,
                    Millis(open.until_ns),
                    op_label(history, end.id),
                    open.first
                )
            });
        }
    }
}

/// A transaction open in one partition from its first offset there until
/// (at least) its end was asked for.
#[derive(Clone, Copy, Debug)]
struct Window {
    first: i64,
    until_ns: u64,
    txn: TxnIndex,
}

/// One partition's windows by first offset, with per prefix the two latest
/// ends of distinct transactions.
#[derive(Debug, Default)]
struct Windows {
    by_first: Vec<Window>,
    /// `top[i]`: among `by_first[..=i]`, the window open longest, and the
    /// longest of another transaction.
    top: Vec<(Window, Option<Window>)>,
}

impl Windows {
    fn build(txns: &Txns<'_>, visibility: &Visibility<'_, '_>, id: super::log_view::PartitionId) -> Windows {
        let mut first: BTreeMap<TxnIndex, i64> = BTreeMap::new();
        for &(offset, _, t) in visibility.txn_values(id) {
            first.entry(t).and_modify(|f| *f = (*f).min(offset)).or_insert(offset);
        }
        let mut by_first: Vec<Window> = first
            .into_iter()
            .filter_map(|(t, first)| {
                let txn = &txns.txns[t];
                let ended_by_its_application =
                    matches!(txn.fate, Fate::Committed | Fate::Aborted) || visibility.txn(t) == Shown::Visible;
                let end = txn.end_asked.filter(|_| ended_by_its_application)?;
                Some(Window { first, until_ns: end.invoke_ns, txn: t })
            })
            .collect();
        by_first.sort_by_key(|w| (w.first, w.txn));
        let mut top: Vec<(Window, Option<Window>)> = Vec::with_capacity(by_first.len());
        for &w in &by_first {
            let next = match top.last().copied() {
                None => (w, None),
                Some((best, _)) if w.until_ns > best.until_ns => (w, Some(best)),
                Some((best, second)) => {
                    let second = match second {
                        Some(s) if s.until_ns >= w.until_ns => Some(s),
                        _ => Some(w),
                    };
                    (best, second)
                }
            };
            top.push(next);
        }
        Windows { by_first, top }
    }

    /// Of the windows beginning below `offset`, the one open longest that
    /// is not transaction `own`'s.
    fn open_below(&self, offset: i64, own: Option<TxnIndex>) -> Option<Window> {
        let below = self.by_first.partition_point(|w| w.first < offset);
        let (best, second) = *self.top.get(below.checked_sub(1)?)?;
        if Some(best.txn) == own {
            second
        } else {
            Some(best)
        }
    }
}
