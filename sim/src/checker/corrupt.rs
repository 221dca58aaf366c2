//! no-corrupt-read: every value a consumer received is one a producer sent.
//! Values check themselves (`Value::from_bytes`), so a flipped bit arrives
//! as `Value::CORRUPT` rather than as another plausible value; bytes that
//! decode but were never sent are caught here too.

use super::evidence::{op_label, Findings};
use super::value_index::ValueIndex;
use super::Invariant;
use crate::history::{Call, History, Outcome, Value};

pub(super) fn check(history: &History, findings: &mut Findings) {
    let mut sent: Vec<u64> = history
        .ops
        .iter()
        .filter_map(|op| match op.call {
            Call::Send { value, .. } => Some(value.0),
            _ => None,
        })
        .collect();
    sent.sort_unstable();
    let index = ValueIndex::new(&sent, |&v| Value(v));
    for op in &history.ops {
        let Some(Outcome::PollOk { records }) = &op.outcome else { continue };
        for record in records {
            let known = record.value != Value::CORRUPT && index.find(&sent, |&v| Value(v), record.value).is_some();
            if !known {
                findings.found(Invariant::NoCorruptRead, || {
                    let what = match record.value {
                        Value::CORRUPT => "bytes that are no value the workload writes (a failed check)".to_string(),
                        v => format!("value {v}, which no producer sent"),
                    };
                    format!(
                        "partition {} offset {}: {} received {what}",
                        record.partition,
                        record.offset,
                        op_label(history, op.id)
                    )
                });
            }
        }
    }
}
