//! Acked values that no poll ever returned. lost-write: the ack's offset is
//! at or below the highest offset any read reached, so a reader passed over
//! it (Jepsen's definition). unseen: the ack's offset is above every read;
//! after the drain read every partition to its end, that is a definite loss
//! too. The two split on the offset so no value counts twice.
//!
//! Only values that read_committed readers must see are judged (`Visibility`):
//! an aborted transaction's value is never expected to be read (a
//! read_uncommitted reader may read it, and need not), and one of a
//! transaction of unknown fate may legitimately be invisible.

use super::evidence::{op_label, Findings};
use super::log_view::{LogView, OpId};
use super::visibility::{Shown, Visibility};
use super::Invariant;
use crate::history::{History, Partition, Value};

pub(crate) fn check(history: &History, view: &LogView<'_>, visibility: &Visibility<'_, '_>, findings: &mut Findings) {
    for ack in view.acks() {
        let log = view.log(ack.partition);
        // Usually read at the acked offset itself: one lookup, no search by value.
        let read_there = log.sighting(ack.offset, ack.value).is_some_and(|s| s.reads > 0);
        if read_there || log.was_read(ack.value) || visibility.of(ack.value) != Shown::Visible {
            continue;
        }
        let acked = Acked { partition: view.name(ack.partition), offset: ack.offset, value: ack.value, op: ack.op() };
        let describe = || acked.describe(history, visibility);
        match log.highest_read() {
            Some((highest, reader)) if ack.offset <= highest => {
                findings.found(Invariant::LostWrite, || {
                    format!("{}, though reads reached offset {highest} ({})", describe(), op_label(history, reader))
                });
            }
            Some((highest, reader)) => findings.found(Invariant::Unseen, || {
                format!("{}; reads reached only offset {highest} ({})", describe(), op_label(history, reader))
            }),
            None => findings
                .found(Invariant::Unseen, || format!("{}; no poll returned any record of the partition", describe())),
        }
    }
}

struct Acked<'h> {
    partition: &'h Partition,
    offset: i64,
    value: Value,
    op: OpId,
}

impl Acked<'_> {
    /// `partition t-0 value p1:3 acked at offset 5 to op 7 (...) was never read`, with
    /// `in transaction op 2 (...) of tx-1 (producer 7, epoch 0), committed` before
    /// `was` if a transaction wrote it.
    fn describe(&self, history: &History, visibility: &Visibility<'_, '_>) -> String {
        let txn = visibility.txn_of(self.value).map(|txn| format!(" in {}", txn.describe(history)));
        format!(
            "partition {} value {} acked at offset {} to {}{} was never read",
            self.partition,
            self.value,
            self.offset,
            op_label(history, self.op),
            txn.unwrap_or_default()
        )
    }
}
