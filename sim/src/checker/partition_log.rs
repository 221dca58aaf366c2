//! One partition's derived log: every distinct (offset, value) pair clients
//! observed, with who observed it, in one Vec sorted by offset then value,
//! and the same pairs indexed by value.
//!
//! Offsets in a history are small and dense (a log counts up from zero), so
//! the pairs are ordered by a counting sort over the partition's offset
//! range and an offset finds its pairs by direct index. A range much wider
//! than the observations (offsets a broken broker made up) falls back to a
//! comparison sort and binary search: same results, a log factor slower.

use super::log_view::OpId;
use crate::history::Value;
use std::ops::Range;

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

/// One partition's observations in op order, as the view's single pass
/// over the history collects them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observations {
    list: Vec<Observation>,
    /// The lowest and highest offset observed.
    bounds: Option<(i64, i64)>,
    highest_read: Option<(i64, OpId)>,
}

#[derive(Clone, Copy, Debug)]
struct Observation {
    offset: i64,
    value: Value,
    op: OpId,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A record an ok poll returned.
    Read,
    /// The offset an ok send's ack named.
    Ack,
}

impl Observations {
    pub(crate) fn read(&mut self, offset: i64, value: Value, op: OpId) {
        self.push(Observation { offset, value, op, kind: Kind::Read });
        if self.highest_read.is_none_or(|(highest, _)| offset > highest) {
            self.highest_read = Some((offset, op));
        }
    }

    pub(crate) fn ack(&mut self, offset: i64, value: Value, op: OpId) {
        self.push(Observation { offset, value, op, kind: Kind::Ack });
    }

    fn push(&mut self, observation: Observation) {
        let offset = observation.offset;
        self.bounds = Some(match self.bounds {
            Some((lowest, highest)) => (lowest.min(offset), highest.max(offset)),
            None => (offset, offset),
        });
        self.list.push(observation);
    }
}

/// One distinct (offset, value) pair.
#[derive(Clone, Debug)]
struct Entry {
    offset: i64,
    value: Value,
    sighting: Sighting,
}

/// One partition's derived log.
#[derive(Clone, Debug, Default)]
pub struct PartitionLog {
    /// Every distinct (offset, value) observed, by offset then value.
    entries: Vec<Entry>,
    /// Where each offset's entries are.
    by_offset: OffsetIndex,
    /// Entry indices by value then offset: where each value was seen.
    by_value: Vec<(Value, u32)>,
    /// The highest offset an ok poll returned, and the first poll that did.
    highest_read: Option<(i64, OpId)>,
    /// Distinct observed offsets, ascending.
    known_offsets: Vec<i64>,
}

/// Finds the entries at one offset.
#[derive(Clone, Debug, Default)]
enum OffsetIndex {
    /// Offset `lowest + k` has entries `starts[k]..starts[k + 1]`.
    Dense { lowest: i64, starts: Vec<u32> },
    /// Too sparse for a table: binary search.
    #[default]
    Sparse,
}

/// The offset range's length if a table over it costs O(observations), so
/// huge or negative offsets cannot blow up memory.
fn dense_span(bounds: Option<(i64, i64)>, observations: usize) -> Option<usize> {
    let (lowest, highest) = bounds?;
    let span = i128::from(highest) - i128::from(lowest) + 1;
    let limit = 4 * observations as i128 + 1024;
    (span <= limit).then_some(span as usize)
}

impl PartitionLog {
    /// O(n + span) for n observations over a dense offset range, else O(n log n).
    pub(crate) fn build(observations: Observations) -> PartitionLog {
        let Observations { list, bounds, highest_read } = observations;
        assert!(list.len() < u32::MAX as usize, "entry indices are u32");
        let span = dense_span(bounds, list.len());
        let sorted = match (span, bounds) {
            (Some(span), Some((lowest, _))) => counting_sort(&list, lowest, span),
            _ => {
                let mut list = list;
                list.sort_by_key(|o| (o.offset, o.value));
                list
            }
        };
        let entries = aggregate(&sorted);
        drop(sorted);
        let by_offset = match (span, bounds) {
            (Some(span), Some((lowest, _))) => {
                OffsetIndex::Dense { lowest, starts: bucket_starts(entries.iter().map(|e| e.offset), lowest, span) }
            }
            _ => OffsetIndex::Sparse,
        };
        let mut by_value: Vec<(Value, u32)> = entries.iter().zip(0..).map(|(e, index)| (e.value, index)).collect();
        by_value.sort_unstable();
        let mut known_offsets: Vec<i64> = entries.iter().map(|e| e.offset).collect();
        known_offsets.dedup();
        PartitionLog { entries, by_offset, by_value, highest_read, known_offsets }
    }

    /// Every (offset, value) observed, by offset then value.
    pub fn sightings(&self) -> impl Iterator<Item = (i64, Value, &Sighting)> + '_ {
        self.entries.iter().map(|e| (e.offset, e.value, &e.sighting))
    }

    /// Every (value, offset) observed, by value then offset.
    pub fn placements(&self) -> impl Iterator<Item = (Value, i64)> + '_ {
        self.by_value.iter().map(|&(value, index)| (value, self.entries[index as usize].offset))
    }

    /// Each observed offset with how many values it holds, by offset.
    pub fn values_per_offset(&self) -> impl Iterator<Item = (i64, usize)> + '_ {
        self.entries.chunk_by(|a, b| a.offset == b.offset).map(|run| (run[0].offset, run.len()))
    }

    /// Each observed value with how many offsets it was seen at, by value.
    pub fn offsets_per_value(&self) -> impl Iterator<Item = (Value, usize)> + '_ {
        self.by_value.chunk_by(|a, b| a.0 == b.0).map(|run| (run[0].0, run.len()))
    }

    /// The offsets `value` was observed at, ascending.
    pub fn offsets_of(&self, value: Value) -> impl Iterator<Item = i64> + '_ {
        self.placements_of(value).iter().map(|&(_, index)| self.entries[index as usize].offset)
    }

    /// The values observed at `offset`, ascending.
    pub fn values_at(&self, offset: i64) -> impl Iterator<Item = (Value, &Sighting)> + '_ {
        self.entries[self.entries_at(offset)].iter().map(|e| (e.value, &e.sighting))
    }

    pub fn sighting(&self, offset: i64, value: Value) -> Option<&Sighting> {
        let at = &self.entries[self.entries_at(offset)];
        at.binary_search_by_key(&value, |e| e.value).ok().map(|index| &at[index].sighting)
    }

    /// Whether any ok poll returned `value` in this partition, at any offset.
    pub fn was_read(&self, value: Value) -> bool {
        self.placements_of(value).iter().any(|&(_, index)| self.entries[index as usize].sighting.reads > 0)
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

    fn entries_at(&self, offset: i64) -> Range<usize> {
        match &self.by_offset {
            OffsetIndex::Dense { lowest, starts } => {
                let slot = usize::try_from(i128::from(offset) - i128::from(*lowest)).ok();
                match slot.filter(|&slot| slot + 1 < starts.len()) {
                    Some(slot) => starts[slot] as usize..starts[slot + 1] as usize,
                    None => 0..0,
                }
            }
            OffsetIndex::Sparse => {
                self.entries.partition_point(|e| e.offset < offset)..self.entries.partition_point(|e| e.offset <= offset)
            }
        }
    }

    fn placements_of(&self, value: Value) -> &[(Value, u32)] {
        let start = self.by_value.partition_point(|&(v, _)| v < value);
        let end = start + self.by_value[start..].partition_point(|&(v, _)| v == value);
        &self.by_value[start..end]
    }
}

/// `list` stably sorted by offset then value, for offsets in
/// `lowest..lowest + span`: a counting sort by offset, then a sort of the
/// rare offset that holds more than one value.
fn counting_sort(list: &[Observation], lowest: i64, span: usize) -> Vec<Observation> {
    let slot = |o: &Observation| (o.offset - lowest) as usize;
    let mut next = bucket_starts(list.iter().map(|o| o.offset), lowest, span);
    let mut sorted = list.to_vec();
    for observation in list {
        let at = &mut next[slot(observation)];
        sorted[*at as usize] = *observation;
        *at += 1;
    }
    for run in sorted.chunk_by_mut(|a, b| a.offset == b.offset) {
        if run.iter().any(|o| o.value != run[0].value) {
            run.sort_by_key(|o| o.value);
        }
    }
    sorted
}

/// For offsets in `lowest..lowest + span`, where each offset's items start
/// once sorted by offset: `span + 1` prefix sums of their counts.
fn bucket_starts(offsets: impl Iterator<Item = i64>, lowest: i64, span: usize) -> Vec<u32> {
    let mut starts = vec![0u32; span + 1];
    for offset in offsets {
        starts[(offset - lowest) as usize + 1] += 1;
    }
    for slot in 1..starts.len() {
        starts[slot] += starts[slot - 1];
    }
    starts
}

/// One entry per run of equal (offset, value); the first read and the first
/// ack of a run are the first in op order, since the sort was stable.
fn aggregate(sorted: &[Observation]) -> Vec<Entry> {
    let runs = sorted.chunk_by(|a, b| a.offset == b.offset && a.value == b.value);
    let mut entries = Vec::with_capacity(sorted.len() / 2);
    for run in runs {
        let mut sighting = Sighting::default();
        for observation in run {
            match observation.kind {
                Kind::Read => {
                    sighting.first_read.get_or_insert(observation.op);
                    sighting.reads += 1;
                }
                Kind::Ack => {
                    sighting.acked_by.get_or_insert(observation.op);
                }
            }
        }
        entries.push(Entry { offset: run[0].offset, value: run[0].value, sighting });
    }
    entries
}
