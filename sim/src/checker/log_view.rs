//! The log as clients saw it: per partition, which values were observed at
//! which offsets, by ok polls (records) and by ok sends (the ack names the
//! offset). Jepsen derives its version order the same way; every other
//! history checker reads this view instead of re-walking the ops.
//!
//! Everything is keyed by `(offset, value)` pairs in ordered maps, so one
//! offset holding many values (or one value at many offsets) costs a log
//! factor, never a quadratic scan.

use crate::history::{Call, History, Outcome, Partition, Value};
use std::collections::{BTreeMap, BTreeSet};

/// An operation's id in `History::ops`.
pub type OpId = u64;

/// Who observed one value at one offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// The first ok poll (in op order) that returned this record.
    pub first_read: Option<OpId>,
    /// How many returned records (across all ok polls) carried it.
    pub reads: u64,
    /// The ok send whose ack placed this value at this offset.
    pub acked_by: Option<OpId>,
}

/// One partition's derived log.
#[derive(Clone, Debug, Default)]
pub struct PartitionLog {
    sightings: BTreeMap<(i64, Value), Sighting>,
    /// The same pairs, value first: where each value was seen.
    placements: BTreeSet<(Value, i64)>,
    read_values: BTreeSet<Value>,
    /// The highest offset an ok poll returned, and the first poll that did.
    highest_read: Option<(i64, OpId)>,
    /// Distinct observed offsets, ascending (filled once the view is built).
    known_offsets: Vec<i64>,
}

/// Every partition's derived log, keyed by the history's own partition names.
#[derive(Clone, Debug, Default)]
pub struct LogView<'h> {
    partitions: BTreeMap<&'h Partition, PartitionLog>,
}

impl<'h> LogView<'h> {
    /// One pass over the history: O(r log r) for r observed records.
    pub fn build(history: &'h History) -> LogView<'h> {
        let mut partitions: BTreeMap<&'h Partition, PartitionLog> = BTreeMap::new();
        for op in &history.ops {
            match (&op.call, &op.outcome) {
                (Call::Poll, Some(Outcome::PollOk { records })) => {
                    for record in records {
                        let log = partitions.entry(&record.partition).or_default();
                        log.observe_read(record.offset, record.value, op.id);
                    }
                }
                (Call::Send { value, .. }, Some(Outcome::SendOk { partition, offset })) => {
                    let log = partitions.entry(partition).or_default();
                    log.observe_ack(*offset, *value, op.id);
                }
                _ => {}
            }
        }
        for log in partitions.values_mut() {
            log.known_offsets = log.sightings.keys().map(|&(offset, _)| offset).collect();
            log.known_offsets.dedup();
        }
        LogView { partitions }
    }

    pub fn partition(&self, partition: &Partition) -> Option<&PartitionLog> {
        self.partitions.get(partition)
    }

    pub fn partitions(&self) -> impl Iterator<Item = (&'h Partition, &PartitionLog)> + '_ {
        self.partitions.iter().map(|(p, log)| (*p, log))
    }
}

impl PartitionLog {
    fn observe_read(&mut self, offset: i64, value: Value, op: OpId) {
        let sighting = self.sighting_mut(offset, value);
        sighting.first_read.get_or_insert(op);
        sighting.reads += 1;
        self.read_values.insert(value);
        if self.highest_read.is_none_or(|(highest, _)| offset > highest) {
            self.highest_read = Some((offset, op));
        }
    }

    fn observe_ack(&mut self, offset: i64, value: Value, op: OpId) {
        // Values are unique, so one ack per value; keep the first if not.
        self.sighting_mut(offset, value).acked_by.get_or_insert(op);
    }

    fn sighting_mut(&mut self, offset: i64, value: Value) -> &mut Sighting {
        self.placements.insert((value, offset));
        self.sightings.entry((offset, value)).or_default()
    }

    /// Every (offset, value) observed, by offset then value.
    pub fn sightings(&self) -> impl Iterator<Item = (i64, Value, &Sighting)> + '_ {
        self.sightings.iter().map(|(&(offset, value), s)| (offset, value, s))
    }

    /// Every (value, offset) observed, by value then offset.
    pub fn placements(&self) -> impl Iterator<Item = (Value, i64)> + '_ {
        self.placements.iter().copied()
    }

    /// The offsets `value` was observed at, ascending.
    pub fn offsets_of(&self, value: Value) -> impl Iterator<Item = i64> + '_ {
        self.placements.range((value, i64::MIN)..=(value, i64::MAX)).map(|&(_, offset)| offset)
    }

    /// The values observed at `offset`, ascending.
    pub fn values_at(&self, offset: i64) -> impl Iterator<Item = (Value, &Sighting)> + '_ {
        let range = (offset, Value(u64::MIN))..=(offset, Value(u64::MAX));
        self.sightings.range(range).map(|(&(_, value), s)| (value, s))
    }

    pub fn sighting(&self, offset: i64, value: Value) -> Option<&Sighting> {
        self.sightings.get(&(offset, value))
    }

    /// Whether any ok poll returned `value` in this partition, at any offset.
    pub fn was_read(&self, value: Value) -> bool {
        self.read_values.contains(&value)
    }

    /// The highest offset any ok poll returned, with the first poll to reach it.
    pub fn highest_read(&self) -> Option<(i64, OpId)> {
        self.highest_read
    }

    /// Distinct observed offsets, ascending.
    pub fn known_offsets(&self) -> &[i64] {
        &self.known_offsets
    }

    /// The observed offsets strictly between `low` and `high`: how many, and
    /// the lowest. O(log n), so a wide gap costs no more than a narrow one.
    pub fn known_between(&self, low: i64, high: i64) -> (usize, Option<i64>) {
        let start = self.known_offsets.partition_point(|&o| o <= low);
        let end = self.known_offsets.partition_point(|&o| o < high).max(start);
        (end - start, self.known_offsets.get(start).copied().filter(|_| end > start))
    }
}
