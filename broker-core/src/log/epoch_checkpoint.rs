//! `leader-epoch-checkpoint`: the leader epoch cache on disk, in Kafka's
//! text format (`LeaderEpochCheckpointFile`): the version `0`, the entry
//! count, then one `epoch startOffset` line per entry.
//!
//! ```text
//! 0
//! 2
//! 0 0
//! 3 120
//! ```
//!
//! The log rewrites it whole (`write_durably`: temp file, fsync, rename)
//! whenever the cache changes, which is rare: a new epoch's first append, a
//! truncation that drops an epoch, retention moving the first epoch's start.
//! At open it vouches for the epochs of the segments below the recovery
//! point (their walked headers must agree with it) and is reconciled with
//! the recovered log (`recovery`). A file that does not parse is ignored
//! (the batches rebuild the cache, every segment validated), never a panic.

use super::LeaderEpochCache;
use crate::storage::CHECKPOINT_VERSION as VERSION;
use crate::types::{LeaderEpoch, Offset};
use std::fmt::Write;

/// The file's name inside the partition directory, as Kafka names it.
pub(super) const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Largest file `decode` reads: far more epochs than any ksim run makes.
const MAX_FILE_BYTES: usize = 1 << 20;

pub(super) fn encode(cache: &LeaderEpochCache) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(out, "{VERSION}");
    let _ = writeln!(out, "{}", cache.entries().len());
    for entry in cache.entries() {
        let _ = writeln!(out, "{} {}", entry.epoch.0, entry.start_offset.0);
    }
    out.into_bytes()
}

/// The cache a file `encode` wrote holds; `None` if the bytes are not such a
/// file (wrong version, a count that does not match the lines, a malformed
/// line, epochs not increasing or start offsets going back).
pub(super) fn decode(bytes: &[u8]) -> Option<LeaderEpochCache> {
    let entries = crate::storage::checkpoint_entries::<2>(bytes, MAX_FILE_BYTES)?;
    let mut cache = LeaderEpochCache::default();
    for [epoch, start] in entries {
        let epoch = LeaderEpoch(epoch.parse().ok()?);
        let start_offset = Offset(start.parse().ok()?);
        // `assign` asserts these; a file is checked, not trusted.
        if epoch < LeaderEpoch::FIRST || start_offset.0 < 0 || !cache.assign(epoch, start_offset) {
            return None;
        }
    }
    Some(cache)
}

/// How `leader-epoch-checkpoint` compared with the cache the recovered
/// batches give (which wins whenever they differ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EpochCheckpointOutcome {
    /// No file: a log that never had an epoch, or one written before there
    /// were checkpoints. Written if the batches give any epoch.
    #[default]
    Missing,
    /// The file did not parse; ignored and rewritten.
    Garbled,
    /// The file held exactly the recovered cache.
    Matched,
    /// The file held more than the recovered log, as Kafka expects after a
    /// crash: epochs starting at or past the log end (the records that began
    /// them were lost or cut) or before the log start (retention). With
    /// those dropped it matched; rewritten.
    Reconciled,
    /// Even reconciled, the file disagreed with the batches (a file older or
    /// newer than the segments: a power loss undid a truncation, say). The
    /// batches win; rewritten.
    Overruled,
}

/// What `leader-epoch-checkpoint` held at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum OnDisk {
    Missing,
    Garbled,
    Held(LeaderEpochCache),
}

impl OnDisk {
    pub fn parse(file: Option<&[u8]>) -> OnDisk {
        match file.map(decode) {
            None => OnDisk::Missing,
            Some(None) => OnDisk::Garbled,
            Some(Some(cache)) => OnDisk::Held(cache),
        }
    }

    pub fn held(&self) -> Option<&LeaderEpochCache> {
        match self {
            OnDisk::Held(cache) => Some(cache),
            OnDisk::Missing | OnDisk::Garbled => None,
        }
    }
}

/// How the file compares with the cache `batches` rebuilt from a log
/// `[log_start, log_end)`, and what it holds as a cache (absent = empty;
/// `None` for garbage).
pub(super) fn judge(
    file: OnDisk,
    batches: &LeaderEpochCache,
    log_start: Offset,
    log_end: Offset,
) -> (EpochCheckpointOutcome, Option<LeaderEpochCache>) {
    let held = match file {
        OnDisk::Missing => return (EpochCheckpointOutcome::Missing, Some(LeaderEpochCache::default())),
        OnDisk::Garbled => return (EpochCheckpointOutcome::Garbled, None),
        OnDisk::Held(held) => held,
    };
    let outcome = if held == *batches {
        EpochCheckpointOutcome::Matched
    } else if reconcile(held.clone(), log_start, log_end) == *batches {
        EpochCheckpointOutcome::Reconciled
    } else {
        EpochCheckpointOutcome::Overruled
    };
    (outcome, Some(held))
}

/// Kafka's reconciliation at load: `truncateFromEnd(log end)`, then
/// `truncateFromStart(log start)`. ksim's cache is empty exactly when the
/// log is (an entry is only ever made by an append), so an empty log keeps
/// no entry, where Kafka would keep one clamped to the start.
fn reconcile(mut cache: LeaderEpochCache, log_start: Offset, log_end: Offset) -> LeaderEpochCache {
    if log_start >= log_end {
        return LeaderEpochCache::default();
    }
    cache.truncate_from_end(log_end);
    cache.truncate_from_start(log_start);
    cache
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_of(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(cache.assign(LeaderEpoch(epoch), Offset(start)));
        }
        cache
    }

    #[test]
    fn round_trips_in_kafkas_format() {
        let cache = cache_of(&[(0, 0), (3, 120), (4, 120), (7, 9_000_000_000)]);
        let bytes = encode(&cache);
        assert_eq!(bytes, b"0\n4\n0 0\n3 120\n4 120\n7 9000000000\n");
        assert_eq!(decode(&bytes), Some(cache));
        let empty = LeaderEpochCache::default();
        assert_eq!(encode(&empty), b"0\n0\n");
        assert_eq!(decode(&encode(&empty)), Some(empty));
        assert_eq!(decode(b"0\r\n1\r\n2  5\r\n"), Some(cache_of(&[(2, 5)])), "whitespace as Kafka splits it");
    }

    #[test]
    fn garbled_files_are_refused_not_trusted() {
        let garbled: &[&[u8]] = &[
            b"",
            b"0\n",
            b"1\n1\n0 0\n",        // another version
            b"0\n2\n0 0\n",        // fewer entries than counted
            b"0\n0\n0 0\n",        // more
            b"0\n1\n0\n",          // a field missing
            b"0\n1\n0 0 0\n",      // one too many
            b"0\n1\nx 0\n",        // not a number
            b"0\n1\n-1 0\n",       // no epoch
            b"0\n1\n0 -5\n",       // negative offset
            b"0\n2\n3 10\n3 20\n", // an epoch twice
            b"0\n2\n3 10\n2 20\n", // epochs going back
            b"0\n2\n3 10\n4 5\n",  // start offsets going back
            b"0\n1\n0 99999999999999999999\n",
            b"\xff\xfe\n",
        ];
        for bytes in garbled {
            assert_eq!(decode(bytes), None, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert_eq!(decode(&vec![b'0'; MAX_FILE_BYTES + 1]), None, "too big to read");
    }

    #[test]
    fn judge_reconciles_as_kafka_loads_and_lets_the_batches_win() {
        use EpochCheckpointOutcome::*;
        let batches = cache_of(&[(1, 10), (3, 40)]);
        let (start, end) = (Offset(10), Offset(60));
        let judged = |file: &[u8]| judge(OnDisk::parse(Some(file)), &batches, start, end).0;
        assert_eq!(judge(OnDisk::parse(None), &batches, start, end), (Missing, Some(LeaderEpochCache::default())));
        assert_eq!(judge(OnDisk::parse(Some(b"junk")), &batches, start, end), (Garbled, None));
        assert_eq!(judged(&encode(&batches)), Matched);
        // Epoch 5 began at 60, past the recovered end; epoch 0 before the start.
        assert_eq!(judged(&encode(&cache_of(&[(0, 0), (1, 5), (3, 40), (5, 60), (6, 70)]))), Reconciled);
        assert_eq!(judged(&encode(&cache_of(&[(1, 10), (2, 40)]))), Overruled, "another epoch at 40");
        assert_eq!(judged(&encode(&cache_of(&[(1, 10)]))), Overruled, "epoch 3 missing");
        let empty = LeaderEpochCache::default();
        let an_empty_log = judge(OnDisk::parse(Some(&encode(&batches))), &empty, end, end).0;
        assert_eq!(an_empty_log, Reconciled, "an empty log keeps nothing");
    }
}
