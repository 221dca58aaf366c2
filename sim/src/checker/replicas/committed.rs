//! hw-consistency, committed is forever (Kafka's ConsistentCommittedData,
//! NoCommittedRecordLostGlobally): every record a leader's HW advance
//! commits joins the partition's committed log (offset -> value and epoch);
//! every later observation of a committed offset must agree with it — a
//! later HW advance (by any leader), a new leader's log, the final leader's
//! log. And a leader's HW never goes backwards within its leadership.
//!
//! Each disagreement is reported once, at the first observation that shows
//! it (one finding per observation, naming how many offsets and the first
//! few); the committed log then follows the observed log, so one lost record
//! is not reported again by every later event. Losses after an unclean
//! election are reported too (that is what an unclean-election scenario
//! expects to see), saying the election was unclean. Offsets below a log's
//! start are not judged: retention may delete committed records.

use super::leadership::{Mandate, Tenure};
use super::logs::{OffsetMap, RecordsView};
use super::observations::{LeaderEpoch, RecordLabel, ReplicaRecord, ReplicaSnapshot};
use super::{Ctx, EventId, Observed, PartitionIndex};
use crate::checker::Invariant;
use crate::history::Value;
use std::fmt::Write as _;

/// How many differing offsets one finding spells out.
const LISTED: usize = 3;

/// A committed record, and the event that committed it (or adopted it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Committed {
    value: Value,
    epoch: LeaderEpoch,
    by: u32,
}

impl Committed {
    fn new(record: &ReplicaRecord, by: EventId) -> Committed {
        Committed { value: record.value, epoch: record.leader_epoch, by: u32::try_from(by).unwrap_or(u32::MAX) }
    }

    fn matches(&self, record: &ReplicaRecord) -> bool {
        self.value == record.value && self.epoch == record.leader_epoch
    }

    fn record(&self, offset: i64) -> ReplicaRecord {
        ReplicaRecord { offset, leader_epoch: self.epoch, value: self.value }
    }
}

/// A committed offset an observation disagrees with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Difference {
    offset: i64,
    was: Committed,
    /// What the observed log holds there instead (`None`: nothing).
    now: Option<ReplicaRecord>,
}

/// Every difference counted, the first few kept.
#[derive(Clone, Debug, Default)]
pub(crate) struct Differences {
    pub(crate) count: u64,
    first: Vec<Difference>,
}

impl Differences {
    fn push(&mut self, difference: Difference) {
        self.count += 1;
        if self.first.len() < LISTED {
            self.first.push(difference);
        }
    }

    /// `2 committed offsets changed: offset 5 committed p1:3 (e2) when ..., now p2:9 (e4); ...`
    pub(crate) fn describe(&self, seen: Observed<'_>, what: &str) -> String {
        let plural = if self.count == 1 { "offset" } else { "offsets" };
        let mut detail = format!("{} committed {plural} {what}: ", self.count);
        for (i, d) in self.first.iter().enumerate() {
            if i > 0 {
                detail.push_str("; ");
            }
            let by = seen.event(d.was.by as usize);
            write!(detail, "offset {} committed {} when {by}, ", d.offset, RecordLabel(d.was.record(d.offset)))
                .expect("writing to a String");
            match d.now {
                Some(now) => write!(detail, "now {}", RecordLabel(now)),
                None => write!(detail, "now missing"),
            }
            .expect("writing to a String");
        }
        if self.count > self.first.len() as u64 {
            write!(detail, "; and {} more", self.count - self.first.len() as u64).expect("writing to a String");
        }
        detail
    }
}

/// What a new leader's log showed about the committed log.
#[derive(Debug, Default)]
pub(crate) struct NewLeader {
    /// Committed offsets holding a different record.
    pub(crate) changed: Differences,
    /// Committed offsets it does not hold.
    pub(crate) lacking: Differences,
    /// The committed end, when its log ends below it.
    pub(crate) short_of: Option<i64>,
}

/// One partition's committed log.
#[derive(Debug, Default)]
pub(crate) struct CommittedLog {
    entries: OffsetMap<Committed>,
    /// The highest HW any leader advanced to (lowered when a new leader's log ends below it).
    end: Option<i64>,
}

impl CommittedLog {
    /// A leader's HW advance to `hw`, committing `records`: returns the
    /// committed offsets they disagree with (then adopts them).
    pub(crate) fn advance(&mut self, id: EventId, hw: i64, records: &[ReplicaRecord]) -> Differences {
        let mut changed = Differences::default();
        for record in records {
            match self.entries.get(record.offset) {
                // The first to commit an offset stays its witness.
                Some(was) if was.matches(record) => {}
                Some(was) => {
                    changed.push(Difference { offset: record.offset, was, now: Some(*record) });
                    self.entries.insert(record.offset, Committed::new(record, id));
                }
                None => {
                    self.entries.insert(record.offset, Committed::new(record, id));
                }
            }
        }
        self.end = Some(self.end.map_or(hw, |end| end.max(hw)));
        changed
    }

    /// A new leader's log (`view`, judged in `[from, log_end)`) against the
    /// committed log; then the committed log follows the new leader's.
    pub(crate) fn new_leader(&mut self, id: EventId, from: i64, log_end: i64, view: &RecordsView<'_>) -> NewLeader {
        let mut outcome = NewLeader::default();
        let Some(end) = self.end else { return outcome };
        outcome.short_of = (log_end < end).then_some(end);
        let mut follow = Vec::new();
        for (offset, was) in self.entries.range(from, i64::MAX) {
            match view.get(offset).filter(|_| offset < log_end) {
                Some(now) if was.matches(&now) => {}
                now => {
                    let differences = if now.is_some() { &mut outcome.changed } else { &mut outcome.lacking };
                    differences.push(Difference { offset, was, now });
                    follow.push((offset, now));
                }
            }
        }
        for (offset, now) in follow {
            match now {
                Some(record) => self.entries.insert(offset, Committed::new(&record, id)),
                None => self.entries.remove(offset),
            };
        }
        self.end = Some(end.min(log_end));
        outcome
    }

    /// The final leader's log against the committed log.
    pub(crate) fn check_final_leader(
        &self,
        ctx: &mut Ctx<'_>,
        partition: PartitionIndex,
        leader: &ReplicaSnapshot,
        unclean: Option<EventId>,
    ) {
        let view = RecordsView::new(&leader.records);
        let mut lost = Differences::default();
        for (offset, was) in self.entries.range(leader.log_start, i64::MAX) {
            match view.get(offset).filter(|_| offset < leader.log_end) {
                Some(now) if was.matches(&now) => {}
                now => lost.push(Difference { offset, was, now }),
            }
        }
        if lost.count == 0 {
            return;
        }
        let seen = ctx.seen;
        ctx.findings.found(Invariant::HwConsistency, || {
            format!(
                "partition {}: the final leader {} ({}, log [{}, {})) disagrees with the committed log: {}{}",
                seen.name(partition),
                leader.broker,
                leader.leader_epoch,
                leader.log_start,
                leader.log_end,
                lost.describe(seen, "changed or missing"),
                seen.unclean_note(unclean)
            )
        });
    }
}

/// A leader's HW never goes backwards within its leadership.
pub(crate) fn hw_advance(ctx: &mut Ctx<'_>, partition: PartitionIndex, id: EventId, tenure: &mut Tenure, hw: i64) {
    if hw < tenure.hw {
        let (seen, before) = (ctx.seen, tenure.hw_event);
        ctx.findings.found(Invariant::HwConsistency, || {
            format!(
                "partition {}: a leader's HW went backwards: {} after {}",
                seen.name(partition),
                seen.event(id),
                seen.event(before)
            )
        });
        return;
    }
    tenure.hw = hw;
    tenure.hw_event = id;
}

/// An observation disagreeing with committed records.
pub(crate) fn report_changed(
    ctx: &mut Ctx<'_>,
    partition: PartitionIndex,
    id: EventId,
    changed: &Differences,
    unclean: Option<EventId>,
) {
    if changed.count == 0 {
        return;
    }
    let seen = ctx.seen;
    ctx.findings.found(Invariant::HwConsistency, || {
        format!(
            "partition {}: {} with records that disagree with the committed log: {}{}",
            seen.name(partition),
            seen.event(id),
            changed.describe(seen, "changed"),
            seen.unclean_note(unclean)
        )
    });
}

/// A new leader's log against the committed log: changed records always;
/// after an unclean election, missing ones too (a clean leader's missing
/// records are leader completeness, judged by leadership).
pub(crate) fn report_new_leader(
    ctx: &mut Ctx<'_>,
    partition: PartitionIndex,
    id: EventId,
    mandate: Mandate,
    outcome: &NewLeader,
    unclean_before: Option<EventId>,
) {
    let Mandate::Unclean(election) = mandate else {
        let seen = ctx.seen;
        if outcome.changed.count > 0 {
            ctx.findings.found(Invariant::HwConsistency, || {
                format!(
                    "partition {}: {}, holding records that disagree with the committed log: {}{}",
                    seen.name(partition),
                    seen.event(id),
                    outcome.changed.describe(seen, "changed"),
                    seen.unclean_note(unclean_before)
                )
            });
        }
        return;
    };
    if outcome.changed.count == 0 && outcome.lacking.count == 0 && outcome.short_of.is_none() {
        return;
    }
    let seen = ctx.seen;
    ctx.findings.found(Invariant::HwConsistency, || {
        let mut detail = format!(
            "partition {}: committed records lost in an unclean election: {} after {}",
            seen.name(partition),
            seen.event(id),
            seen.event(election)
        );
        if let Some(end) = outcome.short_of {
            write!(detail, "; the committed log reached {end}").expect("writing to a String");
        }
        for (differences, what) in [(&outcome.lacking, "missing"), (&outcome.changed, "changed")] {
            if differences.count > 0 {
                write!(detail, "; {}", differences.describe(seen, what)).expect("writing to a String");
            }
        }
        detail
    });
}
