//! What a read_committed reader must make of each value, for the checkers
//! that judge absence and gaps (lost-write, unseen, poll-skip,
//! at-least-once-consumption):
//!
//! - a plain send's value, and a committed transaction's, must be returned
//!   (`Shown::Visible`);
//! - an aborted transaction's never is (`Shown::Hidden`): nobody is
//!   expected to read it (a read_uncommitted reader may, which is fine);
//! - one of a transaction of unknown fate may go either way
//!   (`Shown::Undecided`): not judged. Unless a read_committed reader
//!   returned one of the transaction's values: then it committed (as
//!   `dependencies` takes it too), and all its values are visible.
//!
//! A read_committed reader steps over offsets that hold only such values
//! (and over control markers, which no client ever observes: offsets with
//! no known value, gaps already).
//!
//! Built once per check from `Txns` and the view's logs, with no walk over
//! the history of its own. A history without transactions builds nothing
//! and every value is visible, so the checkers before transactions pay for
//! a branch.

use super::log_view::{LogView, PartitionId};
use super::txn::{Fate, TxnIndex, TxnView, Txns};
use crate::history::{History, ProcessId, Value};

/// What a read_committed reader must make of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shown {
    /// A plain send's, or a committed transaction's: it must be returned.
    Visible,
    /// An aborted transaction's: never returned, never expected.
    Hidden,
    /// A transaction's of unknown fate that no read_committed reader saw:
    /// either way, not judged.
    Undecided,
}

/// Every value's visibility to read_committed readers, and per partition
/// the offsets they step over.
#[derive(Debug)]
pub(crate) struct Visibility<'a, 'h> {
    txns: &'a Txns<'h>,
    /// Per transaction (by index), what its values are.
    shown: Vec<Shown>,
    /// Ascending.
    read_committed: Vec<ProcessId>,
    /// Per partition (by id), every transactional value observed there, as
    /// (offset, value, transaction), by offset then value. Empty without
    /// transactions.
    txn_values: Vec<Vec<(i64, Value, TxnIndex)>>,
    /// Per partition (by id), the observed offsets that hold no visible
    /// value, ascending. Empty without transactions.
    hidden: Vec<Vec<i64>>,
}

impl<'a, 'h> Visibility<'a, 'h> {
    /// O(n log w) for n observed (offset, value) pairs and w sends (and
    /// the same for read_committed reads if a transaction's fate is
    /// unknown), and only if the history has transactions.
    pub(crate) fn build(history: &History, view: &LogView<'h>, txns: &'a Txns<'h>) -> Visibility<'a, 'h> {
        let mut read_committed = history.read_committed_consumers.clone();
        read_committed.sort_unstable();
        read_committed.dedup();
        let shown = txn_shown(txns);
        let mut visibility = Visibility { txns, shown, read_committed, txn_values: Vec::new(), hidden: Vec::new() };
        if txns.txns.is_empty() {
            return visibility;
        }
        let partitions = view.partition_count();
        visibility.txn_values = vec![Vec::new(); partitions];
        visibility.hidden = vec![Vec::new(); partitions];
        for id in view.ids() {
            let (mut txn_values, mut hidden) = (Vec::new(), Vec::new());
            // The offset being looked at, and whether no value there so far is visible.
            let mut current: Option<(i64, bool)> = None;
            for (offset, value, _) in view.log(id).sightings() {
                let txn = txns.writer(value).and_then(|writer| writer.txn());
                if let Some(t) = txn {
                    txn_values.push((offset, value, t));
                }
                let invisible = txn.is_some_and(|t| visibility.shown[t] != Shown::Visible);
                current = match current {
                    Some((at, none)) if at == offset => Some((at, none && invisible)),
                    previous => {
                        hidden.extend(previous.filter(|&(_, none)| none).map(|(at, _)| at));
                        Some((offset, invisible))
                    }
                };
            }
            hidden.extend(current.filter(|&(_, none)| none).map(|(at, _)| at));
            visibility.txn_values[id.index()] = txn_values;
            visibility.hidden[id.index()] = hidden;
        }
        visibility
    }

    /// What a read_committed reader must make of `value` (a value no send
    /// wrote is judged as a plain one).
    pub(crate) fn of(&self, value: Value) -> Shown {
        if self.txns.txns.is_empty() {
            return Shown::Visible;
        }
        match self.txns.writer(value).and_then(|writer| writer.txn()) {
            Some(t) => self.shown[t],
            None => Shown::Visible,
        }
    }

    /// What transaction `t`'s values are.
    pub(crate) fn txn(&self, t: TxnIndex) -> Shown {
        self.shown[t]
    }

    /// The transaction that wrote `value`, if a transaction did.
    pub(crate) fn txn_of(&self, value: Value) -> Option<&'a TxnView<'h>> {
        let t = self.txns.writer(value)?.txn()?;
        Some(&self.txns.txns[t])
    }

    /// Whether `process` reads with isolation.level=read_committed.
    pub(crate) fn reads_committed(&self, process: ProcessId) -> bool {
        self.read_committed.binary_search(&process).is_ok()
    }

    /// Whether no value observed at `offset` is visible (false for an
    /// offset with no observed value).
    pub(crate) fn is_hidden(&self, partition: PartitionId, offset: i64) -> bool {
        self.hidden_offsets(partition).binary_search(&offset).is_ok()
    }

    /// The observed offsets strictly between `low` and `high` that hold no
    /// visible value, ascending. O(log n).
    pub(crate) fn hidden_between(&self, partition: PartitionId, low: i64, high: i64) -> &[i64] {
        let hidden = self.hidden_offsets(partition);
        let start = hidden.partition_point(|&o| o <= low);
        let end = hidden.partition_point(|&o| o < high).max(start);
        &hidden[start..end]
    }

    /// Every transactional value observed in `partition`, as (offset,
    /// value, transaction), by offset then value.
    pub(crate) fn txn_values(&self, partition: PartitionId) -> &[(i64, Value, TxnIndex)] {
        self.txn_values.get(partition.index()).map_or(&[], Vec::as_slice)
    }

    fn hidden_offsets(&self, partition: PartitionId) -> &[i64] {
        self.hidden.get(partition.index()).map_or(&[], Vec::as_slice)
    }
}

/// Per transaction, what its values are: by its fate, and an unknown fate
/// taken as committed once a read_committed reader returned one of its values.
fn txn_shown(txns: &Txns<'_>) -> Vec<Shown> {
    let mut shown: Vec<Shown> = txns
        .txns
        .iter()
        .map(|txn| match txn.fate {
            Fate::Committed => Shown::Visible,
            Fate::Aborted => Shown::Hidden,
            Fate::Unknown => Shown::Undecided,
        })
        .collect();
    if !shown.contains(&Shown::Undecided) {
        return shown;
    }
    for read in txns.committed_reads() {
        for record in read.records {
            if let Some(t) = txns.writer(record.value).and_then(|writer| writer.txn()) {
                if shown[t] == Shown::Undecided {
                    shown[t] = Shown::Visible;
                }
            }
        }
    }
    shown
}
