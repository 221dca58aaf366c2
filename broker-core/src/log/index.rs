//! A segment's sparse offset index in Kafka's `.index` layout: 8-byte entries of
//! (batch last offset relative to the segment base: u32 BE, batch byte position: u32 BE).
//! As in Kafka's `LogSegment.append`, an entry names the *last* offset of the batch
//! that starts at its position.

pub(super) const INDEX_ENTRY_BYTES: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry {
    pub fn to_bytes(self) -> [u8; INDEX_ENTRY_BYTES as usize] {
        let mut bytes = [0; INDEX_ENTRY_BYTES as usize];
        bytes[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        bytes[4..].copy_from_slice(&self.position.to_be_bytes());
        bytes
    }
}

/// Entries strictly increasing in both offset and position.
#[derive(Clone, Debug, Default)]
pub(super) struct OffsetIndex {
    entries: Vec<IndexEntry>,
}

impl OffsetIndex {
    #[cfg(test)]
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn len_bytes(&self) -> u64 {
        self.entries.len() as u64 * INDEX_ENTRY_BYTES
    }

    /// Whether a batch starting at `position` earns an entry: a segment's first
    /// batch does, then the first batch after `interval_bytes` of log data have
    /// accumulated since the last entry. A pure function of batch positions, so
    /// recovery rebuilds exactly the index that appends wrote.
    pub fn wants_entry(&self, position: u64, interval_bytes: u64) -> bool {
        self.entries.last().is_none_or(|last| position - u64::from(last.position) >= interval_bytes)
    }

    pub fn push(&mut self, entry: IndexEntry) {
        if let Some(last) = self.entries.last() {
            assert!(entry.relative_offset > last.relative_offset, "index offsets must increase");
            assert!(entry.position > last.position, "index positions must increase");
        }
        self.entries.push(entry);
    }

    /// Byte position to start scanning from for `relative_offset`: the entry with
    /// the largest offset not above it, or the segment start if there is none.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let after = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }

    /// Drops the entries of batches at or beyond byte `position`.
    pub fn truncate_at_position(&mut self, position: u64) {
        let keep = self.entries.partition_point(|e| u64::from(e.position) < position);
        self.entries.truncate(keep);
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        for entry in &self.entries {
            out.extend_from_slice(&entry.to_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relative_offset: u32, position: u32) -> IndexEntry {
        IndexEntry { relative_offset, position }
    }

    #[test]
    fn lookup_takes_the_last_entry_not_above_the_offset() {
        let mut index = OffsetIndex::default();
        assert_eq!(index.lookup(5), 0);
        assert!(index.wants_entry(0, 100));
        index.push(entry(3, 0));
        assert!(!index.wants_entry(99, 100));
        assert!(index.wants_entry(100, 100));
        index.push(entry(9, 150));
        index.push(entry(20, 400));
        let cases = [(0, 0), (3, 0), (4, 0), (9, 150), (19, 150), (20, 400), (u32::MAX, 400)];
        for (offset, position) in cases {
            assert_eq!(index.lookup(offset), position, "lookup({offset})");
        }
        let mut bytes = Vec::new();
        index.encode(&mut bytes);
        assert_eq!(&bytes[8..16], &[0, 0, 0, 9, 0, 0, 0, 150]);
        index.truncate_at_position(150);
        assert_eq!(index.entries(), &[entry(3, 0)]);
        assert_eq!(index.len_bytes(), 8);
    }
}
