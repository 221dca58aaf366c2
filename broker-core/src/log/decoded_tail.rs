//! The newest batches of a log's active segment, kept decoded.
//!
//! Fetches (followers' and consumers') and the simulator's observer read a
//! log's tail again and again — a leader's batch about five times — and
//! each read copied the bytes out of storage, checked the CRC and decoded
//! the records anew: an eighth of a standard run. When the storage promises
//! that its reads are pure ([`Storage::reads_are_pure`]: no fault can make a
//! read return other bytes than were written, and a read takes no
//! simulated time), a batch read back once reads back the same every time
//! until the log cuts or deletes it, so the log serves it from here.
//!
//! Filled only by reads (what is kept is what a read decoded, never what an
//! append meant to write), only with the last [`DecodedTail::BATCHES`]
//! batches of the active segment, and emptied on every truncation and
//! segment deletion.
//!
//! [`Storage::reads_are_pure`]: crate::storage::Storage::reads_are_pure

use crate::types::{Offset, StoredRecord};
use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub(super) struct DecodedTail {
    /// (base offset, the batch's records), ascending by base offset.
    batches: VecDeque<(Offset, Vec<StoredRecord>)>,
}

impl DecodedTail {
    /// How many of the active segment's newest batches are kept.
    pub(super) const BATCHES: usize = 32;

    /// The records of the batch starting at `base_offset`, if kept.
    pub(super) fn get(&self, base_offset: Offset) -> Option<&[StoredRecord]> {
        let at = self.batches.binary_search_by_key(&base_offset, |(base, _)| *base).ok()?;
        Some(&self.batches[at].1)
    }

    /// Keeps `records`, the batch starting at `base_offset`, and forgets
    /// every batch starting below `keep_from`.
    pub(super) fn insert(&mut self, base_offset: Offset, records: &[StoredRecord], keep_from: Offset) {
        assert_eq!(records.first().map(|r| r.offset), Some(base_offset), "a batch's first record");
        while self.batches.front().is_some_and(|(base, _)| *base < keep_from) {
            self.batches.pop_front();
        }
        if base_offset < keep_from {
            return;
        }
        if let Err(at) = self.batches.binary_search_by_key(&base_offset, |(base, _)| *base) {
            self.batches.insert(at, (base_offset, records.to_vec()));
        }
        assert!(self.batches.len() <= Self::BATCHES, "bounded by keep_from");
    }

    /// Forgets everything: the log cut or deleted batches.
    pub(super) fn clear(&mut self) {
        self.batches.clear();
    }
}
