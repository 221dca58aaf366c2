//! The leader epoch cache: for every leader epoch that wrote to this log, the
//! offset of its first record (Kafka's `LeaderEpochFileCache`). Followers use it
//! to answer and ask OffsetsForLeaderEpoch (KIP-101, KIP-279) and so find where
//! their log diverged from the leader's.
//!
//! Kafka persists it as `leader-epoch-checkpoint`; so does the
//! [`PartitionLog`] (`epoch_checkpoint`), whenever it changes. At open the
//! log rebuilds it from the batch headers it reads (every batch carries its
//! epoch), which is exact because an entry is only ever made by an append,
//! and checks the file against it.
//!
//! [`PartitionLog`]: super::PartitionLog

use crate::types::{LeaderEpoch, Offset};

/// One epoch and the offset of the first record written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// Entries in strictly increasing epoch order with non-decreasing start
/// offsets; every epoch is at least [`LeaderEpoch::FIRST`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, `None` when the cache is empty (Kafka's
    /// UNDEFINED_EPOCH).
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, if `epoch` is newer than
    /// the latest entry. Returns whether an entry was added. As in Kafka
    /// (`LeaderEpochFileCache.assign`, 1.x), the latest epoch again is a no-op
    /// (the common case: every append calls this), and an older epoch or an
    /// offset below the latest entry's start is ignored; Kafka logs a warning.
    /// The log never asks for either: it refuses such appends before they
    /// reach the cache.
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        assert!(epoch >= LeaderEpoch::FIRST, "invalid leader epoch {epoch}");
        assert!(start_offset.0 >= 0, "invalid epoch start offset {start_offset}");
        let newer =
            self.entries.last().is_none_or(|latest| epoch > latest.epoch && start_offset >= latest.start_offset);
        if newer {
            self.entries.push(EpochEntry { epoch, start_offset });
        }
        newer
    }

    /// OffsetsForLeaderEpoch: the largest epoch ≤ `requested` and its end
    /// offset, which is the start offset of the next epoch in the cache, or
    /// `log_end` if it is the latest epoch (so asking for any epoch above the
    /// latest answers the latest and `log_end`).
    ///
    /// `None` is Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET answer: the
    /// cache is empty, or `requested` is below its first epoch (including
    /// [`LeaderEpoch::NONE`]), so this log knows nothing about that epoch.
    pub fn end_offset_for(&self, requested: LeaderEpoch, log_end: Offset) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.entries.last()?;
        assert!(latest.start_offset <= log_end, "log end {log_end} below the latest epoch's start {latest:?}");
        let after = self.entries.partition_point(|e| e.epoch <= requested);
        let floor = self.entries[..after].last()?;
        let end = self.entries.get(after).map_or(log_end, |next| next.start_offset);
        assert!(floor.epoch <= requested && floor.start_offset <= end);
        Some((floor.epoch, end))
    }

    /// The epoch a record at `offset` was written in, as far as the cache
    /// says: the latest entry starting at or below it (`None` below them all).
    pub fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        let after = self.entries.partition_point(|e| e.start_offset <= offset);
        after.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Forgets the epochs that start at or after `end_offset`: the log was
    /// truncated there (Kafka's `truncateFromEnd`).
    pub fn truncate_from_end(&mut self, end_offset: Offset) {
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        self.entries.truncate(keep);
        assert!(self.entries.last().is_none_or(|e| e.start_offset < end_offset));
    }

    /// The log start moved up to `start_offset` (retention): entries wholly
    /// below it go, and the epoch that holds `start_offset` now starts there
    /// (Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start_offset: Offset) {
        let at_or_below = self.entries.partition_point(|e| e.start_offset <= start_offset);
        let Some(holder) = at_or_below.checked_sub(1) else {
            return; // every epoch starts above it already
        };
        self.entries.drain(..holder);
        self.entries[0].start_offset = start_offset;
        assert!(self.entries.get(1).is_none_or(|next| next.start_offset > start_offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_of(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(cache.assign(LeaderEpoch(epoch), Offset(start)), "fixture entry ({epoch}, {start})");
        }
        cache
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache.entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect()
    }

    /// `end_offset_for(requested, log_end)` as plain numbers; `None` = undefined.
    fn check(cache: &LeaderEpochCache, log_end: i64, cases: &[(i32, Option<(i32, i64)>)]) {
        for &(requested, expected) in cases {
            let got = cache.end_offset_for(LeaderEpoch(requested), Offset(log_end));
            assert_eq!(got.map(|(e, o)| (e.0, o.0)), expected, "end_offset_for({requested}) with log end {log_end}");
        }
    }

    #[test]
    fn epoch_at_is_the_entry_covering_the_offset() {
        let cache = cache_of(&[(1, 5), (4, 5), (6, 12)]);
        let cases = [(0, None), (4, None), (5, Some(4)), (11, Some(4)), (12, Some(6)), (99, Some(6))];
        for (offset, epoch) in cases {
            assert_eq!(cache.epoch_at(Offset(offset)), epoch.map(LeaderEpoch), "epoch_at({offset})");
        }
        assert_eq!(LeaderEpochCache::default().epoch_at(Offset(0)), None);
    }

    #[test]
    fn end_offset_for_answers_the_largest_epoch_not_above_the_request() {
        let cache = cache_of(&[(0, 0), (2, 10), (5, 20)]);
        let cases = [
            (-1, None),
            (0, Some((0, 10))),
            (1, Some((0, 10))),
            (2, Some((2, 20))),
            (3, Some((2, 20))),
            (4, Some((2, 20))),
            (5, Some((5, 30))),
            (7, Some((5, 30))),
            (i32::MAX, Some((5, 30))),
        ];
        check(&cache, 30, &cases);
        check(&cache, 20, &[(5, Some((5, 20))), (4, Some((2, 20)))]); // the latest epoch may be empty
    }

    #[test]
    fn below_the_first_epoch_or_on_an_empty_cache_is_undefined() {
        check(&LeaderEpochCache::default(), 0, &[(-1, None), (0, None), (3, None)]);
        check(
            &cache_of(&[(3, 100)]),
            150,
            &[(-1, None), (0, None), (2, None), (3, Some((3, 150))), (4, Some((3, 150)))],
        );
    }

    #[test]
    fn assign_takes_only_newer_epochs() {
        let mut cache = cache_of(&[(1, 5)]);
        assert!(!cache.assign(LeaderEpoch(1), Offset(9)), "the latest epoch again");
        assert!(!cache.assign(LeaderEpoch(1), Offset(2)), "the latest epoch, lower offset");
        assert!(!cache.assign(LeaderEpoch(0), Offset(9)), "an older epoch");
        assert!(!cache.assign(LeaderEpoch(2), Offset(4)), "a newer epoch starting before the latest");
        assert_eq!(pairs(&cache), vec![(1, 5)]);
        assert!(cache.assign(LeaderEpoch(4), Offset(5)), "a newer epoch where the latest wrote nothing");
        assert!(cache.assign(LeaderEpoch(6), Offset(12)));
        assert_eq!(pairs(&cache), vec![(1, 5), (4, 5), (6, 12)]);
        assert_eq!(cache.latest_epoch(), Some(LeaderEpoch(6)));
        assert_eq!(LeaderEpochCache::default().latest_epoch(), None);
        check(&cache, 20, &[(1, Some((1, 5))), (3, Some((1, 5))), (4, Some((4, 12))), (9, Some((6, 20)))]);
    }

    #[test]
    #[should_panic(expected = "invalid leader epoch")]
    fn assign_of_no_epoch_panics() {
        LeaderEpochCache::default().assign(LeaderEpoch::NONE, Offset(0));
    }

    #[test]
    fn truncate_from_end_drops_epochs_starting_at_or_after_the_offset() {
        let mut cache = cache_of(&[(0, 0), (2, 10), (5, 20)]);
        cache.truncate_from_end(Offset(25));
        assert_eq!(pairs(&cache), vec![(0, 0), (2, 10), (5, 20)], "inside the latest epoch");
        cache.truncate_from_end(Offset(20));
        assert_eq!(pairs(&cache), vec![(0, 0), (2, 10)], "at an epoch's start");
        check(&cache, 20, &[(5, Some((2, 20)))]);
        cache.truncate_from_end(Offset(11));
        assert_eq!(pairs(&cache), vec![(0, 0), (2, 10)]);
        assert!(cache.assign(LeaderEpoch(7), Offset(11)), "a new epoch after the cut");
        cache.truncate_from_end(Offset(0));
        assert_eq!(pairs(&cache), vec![]);
    }

    #[test]
    fn truncate_from_start_clamps_the_epoch_holding_the_new_start() {
        let mut cache = cache_of(&[(0, 0), (2, 10), (5, 20)]);
        cache.truncate_from_start(Offset(0));
        assert_eq!(pairs(&cache), vec![(0, 0), (2, 10), (5, 20)], "no move");
        cache.truncate_from_start(Offset(4));
        assert_eq!(pairs(&cache), vec![(0, 4), (2, 10), (5, 20)]);
        cache.truncate_from_start(Offset(10));
        assert_eq!(pairs(&cache), vec![(2, 10), (5, 20)], "exactly at an epoch's start");
        cache.truncate_from_start(Offset(27));
        assert_eq!(pairs(&cache), vec![(5, 27)]);
        check(&cache, 30, &[(2, None), (5, Some((5, 30)))]);
        let mut empty_epochs = cache_of(&[(1, 3), (2, 3), (3, 8)]);
        empty_epochs.truncate_from_start(Offset(3));
        assert_eq!(pairs(&empty_epochs), vec![(2, 3), (3, 8)], "an epoch that wrote nothing goes");
        let mut above = cache_of(&[(4, 50)]);
        above.truncate_from_start(Offset(40));
        assert_eq!(pairs(&above), vec![(4, 50)], "a start below every epoch changes nothing");
    }
}
