//! Findings and how they are worded: every anomaly is counted, the first
//! `MAX_EVIDENCE` of each invariant are listed, and every checker names an
//! operation the same way so a person can follow one op across findings.

use super::{Invariant, Violation};
use crate::history::History;
use std::collections::BTreeMap;
use std::fmt;

/// How many findings of one invariant are listed with evidence; the rest are
/// only counted (a broken run can produce millions).
pub const MAX_EVIDENCE: usize = 20;

/// The invariants `check_history` judges (the runner owns the others).
pub(crate) const JUDGED: &[Invariant] = &[
    Invariant::InconsistentOffsets,
    Invariant::Duplicate,
    Invariant::NoDuplicate,
    Invariant::LostWrite,
    Invariant::Unseen,
    Invariant::NonmonotonicPoll,
    Invariant::PollSkip,
    Invariant::NonmonotonicSend,
    Invariant::NoCorruptRead,
    Invariant::CommittedOffsetsMonotonic,
    Invariant::NoStaleCommit,
    Invariant::SingleOwner,
    Invariant::AtLeastOnceConsumption,
    Invariant::NoAbortedRead,
    Invariant::NoPrecommittedRead,
    Invariant::NoLostCommittedWrite,
    Invariant::TxnAtomicity,
    Invariant::ZombieFenced,
    Invariant::Lso,
    Invariant::ExactlyOncePipeline,
    Invariant::PipelineLiveness,
    Invariant::G0,
    Invariant::G1c,
    Invariant::GSingle,
    Invariant::G2,
];

pub(crate) struct Findings {
    pub(crate) violations: Vec<Violation>,
    pub(crate) counts: BTreeMap<Invariant, u64>,
}

impl Findings {
    /// Every judged invariant starts at zero, so a report shows what was checked.
    pub(crate) fn new() -> Findings {
        Findings::judging(JUDGED)
    }

    /// Findings of a checker that judges `invariants` (each counted from zero).
    pub(crate) fn judging(invariants: &[Invariant]) -> Findings {
        Findings { violations: Vec::new(), counts: invariants.iter().map(|&i| (i, 0)).collect() }
    }

    /// Counts one anomaly; formats its evidence only while under the cap.
    pub(crate) fn found(&mut self, invariant: Invariant, detail: impl FnOnce() -> String) {
        let count = self.counts.entry(invariant).or_insert(0);
        *count += 1;
        if *count <= MAX_EVIDENCE as u64 {
            self.violations.push(Violation { invariant, detail: detail() });
        }
    }

    /// Violations grouped by invariant, each group in the order found.
    pub(crate) fn into_parts(mut self) -> (Vec<Violation>, BTreeMap<Invariant, u64>) {
        self.violations.sort_by_key(|v| v.invariant);
        (self.violations, self.counts)
    }
}

/// `op 12 (process 3, 100ms..120ms)`; an op that never completed ends in `?`.
pub(crate) struct OpLabel<'h> {
    history: &'h History,
    id: u64,
}

pub(crate) fn op_label(history: &History, id: u64) -> OpLabel<'_> {
    OpLabel { history, id }
}

impl fmt::Display for OpLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are dense indices into `ops`; a malformed history still prints the id.
        let Some(op) =
            usize::try_from(self.id).ok().and_then(|i| self.history.ops.get(i)).filter(|op| op.id == self.id)
        else {
            return write!(f, "op {}", self.id);
        };
        write!(f, "op {} (process {}, {}..", op.id, op.process, Millis(op.invoke_ns))?;
        match op.complete_ns() {
            Some(ns) => write!(f, "{})", Millis(ns)),
            None => f.write_str("?)"),
        }
    }
}

/// Simulated time in milliseconds, exact: `120ms`, `120.5ms`, `120.000001ms`.
pub(crate) struct Millis(pub u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ms, rest_ns) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if rest_ns == 0 {
            return write!(f, "{ms}ms");
        }
        let fraction = format!("{rest_ns:06}");
        write!(f, "{ms}.{}ms", fraction.trim_end_matches('0'))
    }
}
