//! One partition's derived log: every distinct (offset, value) pair clients
//! observed, with who observed it, in one Vec sorted by offset then value,
//! and the same pairs indexed by value.
//!
//! Offsets in a history are small and dense (a log counts up from zero) and
//! an offset almost always holds one value, so observations are tallied in a
//! window with a slot per offset, grown as offsets arrive, which then
//! compacts in place into the sorted Vec; an offset in the window finds its
//! pairs by direct index. A second value at an offset, and an offset so far
//! from the others that the window would outgrow the observations (one a
//! broken broker made up), goes to an ordered map instead: the same
//! results, a log factor slower.

use super::log_view::{compact_op, OpId};
use crate::history::Value;
use std::collections::BTreeMap;
use std::ops::Range;

/// Who observed one value at one offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// The first ok poll (in op order) that returned this record.
    pub first_read: Option<OpId>,
    /// How many returned records (across all ok polls) carried it.
    pub reads: u64,
    /// The ok send whose ack placed this value at this offset.
    pub acked_by: Option<OpId>,
}

/// One distinct (offset, value) pair and who observed it: a `Sighting`
/// packed into 32 bytes (op ids fit 32 bits), as a partition's tally
/// window and its log are made of these.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: i64,
    value: Value,
    /// How many reads, and `ACKED` once acked: zero for a free slot.
    reads_and_acked: u64,
    /// Meaningful once read.
    first_read: u32,
    /// Meaningful once acked.
    acked_by: u32,
}

/// Fewer than 2^63 records fit in memory, so the top bit of a read count is free.
const ACKED: u64 = 1 << 63;

/// One observation of a pair.
#[derive(Clone, Copy)]
enum Observation {
    Read(OpId),
    Ack(OpId),
}

impl Entry {
    fn free(offset: i64) -> Entry {
        Entry { offset, value: Value(0), first_read: 0, acked_by: 0, reads_and_acked: 0 }
    }

    /// Every observation is a read or an ack, so a free entry saw nothing.
    fn is_free(&self) -> bool {
        self.reads_and_acked == 0
    }

    fn observe(&mut self, observation: Observation) {
        match observation {
            Observation::Read(op) => {
                if self.reads_and_acked & !ACKED == 0 {
                    self.first_read = compact_op(op);
                }
                self.reads_and_acked += 1;
            }
            // Values are unique, so one ack per value; keep the first if not.
            Observation::Ack(op) if self.reads_and_acked & ACKED == 0 => {
                self.acked_by = compact_op(op);
                self.reads_and_acked |= ACKED;
            }
            Observation::Ack(_) => {}
        }
    }

    fn sighting(&self) -> Sighting {
        let reads = self.reads_and_acked & !ACKED;
        Sighting {
            first_read: (reads > 0).then_some(OpId::from(self.first_read)),
            reads,
            acked_by: (self.reads_and_acked & ACKED != 0).then_some(OpId::from(self.acked_by)),
        }
    }
}

/// Tallies one partition's observations as the view's walk makes them.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The highest offset an ok poll returned, and the first poll that did.
    highest_read: Option<(i64, OpId)>,
    observations: usize,
    /// Offset `lowest + k` in slot `k`, with the first value seen there.
    lowest: i64,
    window: Vec<Entry>,
    /// Every pair no slot holds.
    others: BTreeMap<(i64, Value), Entry>,
}

impl Tally {
    #[inline]
    pub(crate) fn read(&mut self, offset: i64, value: Value, op: OpId) {
        if self.highest_read.is_none_or(|(highest, _)| offset > highest) {
            self.highest_read = Some((offset, op));
        }
        self.entry(offset, value).observe(Observation::Read(op));
    }

    #[inline]
    pub(crate) fn ack(&mut self, offset: i64, value: Value, op: OpId) {
        self.entry(offset, value).observe(Observation::Ack(op));
    }

    #[inline(always)]
    fn entry(&mut self, offset: i64, value: Value) -> &mut Entry {
        self.observations += 1;
        match self.slot(offset) {
            Some(at) if self.slot_holds(at, offset, value) => {
                let slot = &mut self.window[at];
                slot.value = value;
                slot
            }
            _ => self.other(offset, value),
        }
    }

    /// Whether slot `at` (for `offset`) holds the pair, or is free to take
    /// it. A pair lives in one place: one that went to the map while its
    /// offset was outside the window stays there.
    #[inline]
    fn slot_holds(&self, at: usize, offset: i64, value: Value) -> bool {
        let slot = &self.window[at];
        if slot.is_free() {
            self.others.is_empty() || !self.others.contains_key(&(offset, value))
        } else {
            slot.value == value
        }
    }

    /// A pair no slot holds: rare, so kept out of line.
    #[cold]
    #[inline(never)]
    fn other(&mut self, offset: i64, value: Value) -> &mut Entry {
        let mut free = Entry::free(offset);
        free.value = value;
        self.others.entry((offset, value)).or_insert(free)
    }

    /// The window's slot for `offset`, growing the window to take it if
    /// the window stays within O(observations).
    #[inline(always)]
    fn slot(&mut self, offset: i64) -> Option<usize> {
        // Exact even where the subtraction wraps: the window lies within i64.
        let (at, len) = (offset.wrapping_sub(self.lowest) as u64, self.window.len());
        if at < len as u64 {
            return Some(at as usize);
        }
        // Offsets mostly arrive in order: the next one past the top (not
        // one that only looks so because the subtraction wrapped).
        if at == len as u64 && offset > self.lowest && len < 4 * self.observations + 1024 {
            self.window.push(Entry::free(offset));
            return Some(len);
        }
        self.grow_to(offset)?;
        Some(offset.wrapping_sub(self.lowest) as usize)
    }

    #[inline(never)]
    fn grow_to(&mut self, offset: i64) -> Option<()> {
        let (len, budget) = (self.window.len() as i128, 4 * self.observations as i128 + 1024);
        let at = i128::from(offset) - i128::from(self.lowest);
        if self.window.is_empty() {
            self.lowest = offset;
            self.window.push(Entry::free(offset));
        } else if at < 0 {
            // Room below for as much again as the window, so a walk
            // downwards moves the window a logarithmic number of times.
            let floor = i128::from(self.lowest) - i128::from(i64::MIN);
            let room = (-at).max(len).min(budget - len).min(floor);
            if room < -at {
                return None;
            }
            let lowest = self.lowest - room as i64;
            self.window.splice(0..0, (lowest..self.lowest).map(Entry::free));
            self.lowest = lowest;
        } else if at < budget {
            let end = self.lowest + len as i64;
            self.window.extend((end..=offset).map(Entry::free));
        } else {
            return None;
        }
        Some(())
    }

    /// Every pair, by offset then value: the taken slots, compacted in
    /// place, merged with the map.
    fn into_entries(self) -> Vec<Entry> {
        let mut entries = self.window;
        entries.retain(|entry| !entry.is_free());
        if self.others.is_empty() {
            return entries;
        }
        let mut merged = Vec::with_capacity(entries.len() + self.others.len());
        let mut others = self.others.into_values().peekable();
        for entry in entries {
            while let Some(other) = others.next_if(|o| (o.offset, o.value) < (entry.offset, entry.value)) {
                merged.push(other);
            }
            merged.push(entry);
        }
        merged.extend(others);
        merged
    }
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

/// Finds the entries at one offset: by direct index in the tally's window,
/// by binary search outside it.
#[derive(Clone, Debug, Default)]
struct OffsetIndex {
    window: Range<i64>,
    /// Offset `window.start + k` has entries `starts[k]..starts[k + 1]`.
    starts: Vec<u32>,
}

impl OffsetIndex {
    fn new(entries: &[Entry], window: Range<i64>) -> OffsetIndex {
        let below = entries.partition_point(|e| e.offset < window.start) as u32;
        let mut starts = vec![0u32; window.end.abs_diff(window.start) as usize + 1];
        for entry in entries.iter().filter(|e| window.contains(&e.offset)) {
            starts[(entry.offset - window.start) as usize + 1] += 1;
        }
        starts[0] = below;
        for slot in 1..starts.len() {
            starts[slot] += starts[slot - 1];
        }
        OffsetIndex { window, starts }
    }

    fn entries_at(&self, entries: &[Entry], offset: i64) -> Range<usize> {
        if self.window.contains(&offset) {
            let slot = (offset - self.window.start) as usize;
            return self.starts[slot] as usize..self.starts[slot + 1] as usize;
        }
        entries.partition_point(|e| e.offset < offset)..entries.partition_point(|e| e.offset <= offset)
    }
}

impl PartitionLog {
    /// O(n + w) for n distinct pairs, w of them in a window of w slots;
    /// O(n log n) for pairs outside it.
    pub(crate) fn build(tally: Tally) -> PartitionLog {
        let window = tally.lowest..tally.lowest.saturating_add(tally.window.len() as i64);
        let highest_read = tally.highest_read;
        let entries = tally.into_entries();
        assert!(entries.len() < u32::MAX as usize, "entry indices are u32");
        let by_offset = OffsetIndex::new(&entries, window);
        let by_value = sort_by_value(entries.iter().zip(0..).map(|(e, index)| (e.value, index)).collect());
        let mut known_offsets: Vec<i64> = entries.iter().map(|e| e.offset).collect();
        known_offsets.dedup();
        PartitionLog { entries, by_offset, by_value, highest_read, known_offsets }
    }

    /// Every (offset, value) observed, by offset then value.
    pub fn sightings(&self) -> impl Iterator<Item = (i64, Value, Sighting)> + '_ {
        self.entries.iter().map(|e| (e.offset, e.value, e.sighting()))
    }

    /// Every (offset, value) observed where the offset is the lowest the
    /// value was seen at, by offset then value.
    pub fn lowest_sightings(&self) -> impl Iterator<Item = (i64, Value)> + '_ {
        let mut lowest = vec![false; self.entries.len()];
        for run in self.by_value.chunk_by(|a, b| a.0 == b.0) {
            lowest[run[0].1 as usize] = true;
        }
        self.entries.iter().zip(lowest).filter(|(_, lowest)| *lowest).map(|(e, _)| (e.offset, e.value))
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
    pub fn values_at(&self, offset: i64) -> impl Iterator<Item = (Value, Sighting)> + '_ {
        self.entries[self.entries_at(offset)].iter().map(|e| (e.value, e.sighting()))
    }

    pub fn sighting(&self, offset: i64, value: Value) -> Option<Sighting> {
        let at = &self.entries[self.entries_at(offset)];
        at.binary_search_by_key(&value, |e| e.value).ok().map(|index| at[index].sighting())
    }

    /// Whether any ok poll returned `value` in this partition, at any offset.
    pub fn was_read(&self, value: Value) -> bool {
        self.placements_of(value).iter().any(|&(_, index)| self.entries[index as usize].reads_and_acked & !ACKED > 0)
    }

    /// The highest offset any ok poll returned, with the first poll to reach it.
    pub fn highest_read(&self) -> Option<(i64, OpId)> {
        self.highest_read
    }

    /// Distinct observed offsets, ascending.
    pub fn known_offsets(&self) -> &[i64] {
        &self.known_offsets
    }

    /// The observed offsets strictly between `low` and `high`, ascending.
    /// O(log n), so a wide gap costs no more than a narrow one.
    pub fn known_between(&self, low: i64, high: i64) -> &[i64] {
        let start = self.known_offsets.partition_point(|&o| o <= low);
        let end = self.known_offsets.partition_point(|&o| o < high).max(start);
        &self.known_offsets[start..end]
    }

    fn entries_at(&self, offset: i64) -> Range<usize> {
        self.by_offset.entries_at(&self.entries, offset)
    }

    fn placements_of(&self, value: Value) -> &[(Value, u32)] {
        let start = self.by_value.partition_point(|&(v, _)| v < value);
        let end = start + self.by_value[start..].partition_point(|&(v, _)| v == value);
        &self.by_value[start..end]
    }
}

/// `pairs`, in ascending index order, sorted by value then index: a stable
/// LSD radix sort over only the bytes in which values differ. A value is a
/// process and its counter, so a partition's values usually differ in two
/// or three bytes: a few linear passes instead of a comparison sort.
fn sort_by_value(mut pairs: Vec<(Value, u32)>) -> Vec<(Value, u32)> {
    let Some(&(first, _)) = pairs.first() else { return pairs };
    let differing = pairs.iter().fold(0, |bits, &(value, _)| bits | (value.0 ^ first.0));
    let mut scratch = pairs.clone();
    for shift in (0..64).step_by(8).filter(|shift| (differing >> shift) & 0xff != 0) {
        let digit = |&(value, _): &(Value, u32)| ((value.0 >> shift) & 0xff) as usize;
        let mut next = [0u32; 256];
        for pair in &pairs {
            next[digit(pair)] += 1;
        }
        let mut start = 0;
        for slot in &mut next {
            (*slot, start) = (start, start + *slot);
        }
        for pair in &pairs {
            let at = &mut next[digit(pair)];
            scratch[*at as usize] = *pair;
            *at += 1;
        }
        std::mem::swap(&mut pairs, &mut scratch);
    }
    pairs
}
