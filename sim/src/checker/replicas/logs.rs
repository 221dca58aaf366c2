//! Two ways to find records by offset in linear time overall: `RecordsView`
//! over one observed log (a sorted slice), and `OffsetMap`, a map the
//! checkers fill as offsets arrive (mostly upwards, mostly dense).

use super::observations::ReplicaRecord;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A replica's records by offset. Logs arrive in offset order; one that
/// does not is sorted once (a malformed observation is still judged).
pub(crate) struct RecordsView<'r> {
    records: Cow<'r, [ReplicaRecord]>,
}

impl<'r> RecordsView<'r> {
    pub(crate) fn new(records: &'r [ReplicaRecord]) -> RecordsView<'r> {
        if records.is_sorted_by_key(|r| r.offset) {
            return RecordsView { records: Cow::Borrowed(records) };
        }
        let mut sorted = records.to_vec();
        sorted.sort_by_key(|r| r.offset);
        RecordsView { records: Cow::Owned(sorted) }
    }

    /// The record at `offset`: one index when the log is dense, else a binary search.
    pub(crate) fn get(&self, offset: i64) -> Option<ReplicaRecord> {
        let first = self.records.first()?.offset;
        let guess = usize::try_from(offset.checked_sub(first)?).ok();
        if let Some(record) = guess.and_then(|i| self.records.get(i)).filter(|r| r.offset == offset) {
            return Some(*record);
        }
        let at = self.records.binary_search_by_key(&offset, |r| r.offset).ok()?;
        Some(self.records[at])
    }

    /// The records at offsets in `[from, to)`, in offset order.
    pub(crate) fn range(&self, from: i64, to: i64) -> &[ReplicaRecord] {
        let start = self.records.partition_point(|r| r.offset < from);
        let end = self.records.partition_point(|r| r.offset < to).max(start);
        &self.records[start..end]
    }
}

/// Offsets a window slot each grows past the window's end before they go to the far map.
const WINDOW_SLACK: i64 = 1 << 16;

/// A map from offset to `T`: a window with a slot per offset, grown upwards
/// as offsets arrive, and an ordered map for offsets below the window or so
/// far above it that the window would outgrow what it holds (a broken
/// broker's made-up offset).
#[derive(Debug)]
pub(crate) struct OffsetMap<T> {
    /// Offset `base + k` in slot `k`.
    base: i64,
    window: Vec<Option<T>>,
    far: BTreeMap<i64, T>,
}

impl<T> Default for OffsetMap<T> {
    fn default() -> Self {
        OffsetMap { base: 0, window: Vec::new(), far: BTreeMap::new() }
    }
}

impl<T: Copy> OffsetMap<T> {
    fn slot(&self, offset: i64) -> Option<usize> {
        usize::try_from(offset.checked_sub(self.base)?).ok().filter(|&k| k < self.window.len())
    }

    pub(crate) fn get(&self, offset: i64) -> Option<T> {
        match self.slot(offset) {
            Some(k) => self.window[k],
            None => self.far.get(&offset).copied(),
        }
    }

    /// Sets the value at `offset`; returns the one it replaced.
    pub(crate) fn insert(&mut self, offset: i64, value: T) -> Option<T> {
        if self.window.is_empty() && self.far.is_empty() {
            self.base = offset;
        }
        if let Some(k) = self.slot(offset) {
            return self.window[k].replace(value);
        }
        let reach = (self.window.len() as i64).saturating_mul(2).saturating_add(WINDOW_SLACK);
        match offset.checked_sub(self.base) {
            Some(k) if k >= 0 && k < reach => {
                let old_end = self.base + self.window.len() as i64;
                self.window.resize(k as usize + 1, None);
                // Offsets kept far while out of reach now belong in the window.
                if !self.far.is_empty() {
                    let reached: Vec<i64> = self.far.range(old_end..=offset).map(|(&o, _)| o).collect();
                    for o in reached {
                        let moved = self.far.remove(&o);
                        self.window[(o - self.base) as usize] = moved;
                    }
                }
                self.window[k as usize].replace(value)
            }
            _ => self.far.insert(offset, value),
        }
    }

    pub(crate) fn remove(&mut self, offset: i64) -> Option<T> {
        match self.slot(offset) {
            Some(k) => self.window[k].take(),
            None => self.far.remove(&offset),
        }
    }

    /// Every entry at an offset in `[from, to)`, in offset order.
    pub(crate) fn range(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, T)> + '_ {
        let to = to.max(from);
        let (start, end) = (self.clamp(from), self.clamp(to));
        let base = self.base;
        let window = self.window[start..end]
            .iter()
            .enumerate()
            .filter_map(move |(k, slot)| slot.map(|value| (base + (start + k) as i64, value)));
        Merge { a: window.peekable(), b: self.far.range(from..to).map(|(&o, &v)| (o, v)).peekable() }
    }

    /// The window slot of `offset`, clamped to the window.
    fn clamp(&self, offset: i64) -> usize {
        match offset.checked_sub(self.base) {
            Some(k) if k <= 0 => 0,
            Some(k) => usize::try_from(k).map_or(self.window.len(), |k| k.min(self.window.len())),
            // Far below a base near i64::MAX.
            None if offset < self.base => 0,
            None => self.window.len(),
        }
    }
}

/// Two offset-ordered iterators merged (their offsets never coincide).
struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<T, A: Iterator<Item = (i64, T)>, B: Iterator<Item = (i64, T)>> Iterator for Merge<A, B> {
    type Item = (i64, T);
    fn next(&mut self) -> Option<(i64, T)> {
        match (self.a.peek(), self.b.peek()) {
            (Some((x, _)), Some((y, _))) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetMap;

    #[test]
    fn offsets_near_and_far_are_one_map_in_offset_order() {
        let mut map = OffsetMap::default();
        for offset in [5, 6, 8, i64::MAX, -3, i64::MIN, 7] {
            assert_eq!(map.insert(offset, offset), None);
        }
        assert_eq!(map.insert(6, 60), Some(6));
        assert_eq!(map.remove(8), Some(8));
        assert_eq!(map.get(i64::MAX), Some(i64::MAX));
        let all: Vec<i64> = map.range(i64::MIN, i64::MAX).map(|(o, _)| o).collect();
        assert_eq!(all, [i64::MIN, -3, 5, 6, 7]);
        let some: Vec<(i64, i64)> = map.range(-3, 7).collect();
        assert_eq!(some, [(-3, -3), (5, 5), (6, 60)]);
        assert_eq!(map.range(7, 5).count(), 0);
    }

    #[test]
    fn offsets_first_kept_far_move_into_the_window_when_reached() {
        let mut map = OffsetMap::default();
        map.insert(0, 0);
        map.insert(100_000, 1);
        map.insert(200_000, 2);
        for offset in 1..60_000 {
            map.insert(offset, 9);
        }
        assert_eq!(map.insert(150_000, 3), None);
        assert_eq!(map.insert(100_000, 4), Some(1));
        assert_eq!(map.get(200_000), Some(2));
        let high: Vec<(i64, i64)> = map.range(60_000, i64::MAX).collect();
        assert_eq!(high, [(100_000, 4), (150_000, 3), (200_000, 2)]);
    }
}
