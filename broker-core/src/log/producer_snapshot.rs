//! Producer state snapshots (Kafka's `ProducerStateManager` snapshot files):
//! `{dir}/{offset:020}.snapshot` holds the [`ProducerStateTable`] as of
//! `offset`, that is, what every batch below `offset` implies. One is
//! written durably whenever a segment rolls, named by the new segment's base
//! offset.
//!
//! Why they exist: the table is rebuilt at open and after a truncation, and
//! the batches alone do not hold it. Retention deletes whole segments; a
//! producer whose batches were all in them would be forgotten at the next
//! open or truncation, and its next batch refused UNKNOWN_PRODUCER_ID (or a
//! retry of its last batch written again). So the state is rebuilt from the
//! newest snapshot at or below the log end plus the batches from its offset
//! on, and retention keeps the snapshot at the new log start.
//!
//! The file, big-endian, laid out as Kafka's (a version, then a CRC of the
//! rest):
//!
//! ```text
//! version              i16   2
//! crc                  u32   CRC-32C of every byte after this field
//! offset               i64   the snapshot's offset (also the file's name)
//! producer count       i32   at most MAX_PRODUCERS
//! per producer, by increasing id:
//!   producer id        i64
//!   epoch              i16
//!   coordinator epoch  i32   of its last marker; -1: none seen
//!   txn first offset   i64   of its open transaction; -1: none open
//!   batch count        u8    0..=RETAINED_BATCHES (0 only after a marker)
//!   per batch, oldest first:
//!     first seq        i32
//!     last seq         i32
//!     first offset     i64
//!     last offset      i64
//! ```
//!
//! Version 2 added the coordinator epoch and the open transaction (Kafka's
//! snapshots carry both too): the open transactions bound the last stable
//! offset, and the snapshot at the log start seeds the rebuild of the
//! aborted-transaction index (`txn_index`). Version 1 files are refused
//! like damaged ones: the state then comes from the batches the log still
//! holds.
//!
//! A file that does not decode exactly — another size, version, CRC or
//! offset, counts out of bounds, a batch or transaction no append could
//! have recorded — is ignored: the loader deletes it and tries the next
//! older one. None left means the state starts empty at the log start.

use super::producer_state::{
    BatchSeq, CompletedTxn, ProducerEntry, ProducerStateTable, MAX_PRODUCERS, RETAINED_BATCHES,
};
use super::recovery::{parse_base_offset, MAX_REREADS};
use super::segment::Segment;
use super::PartitionLog;
use crate::storage::{write_durably, Storage, StorageError};
use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp};
use std::collections::{BTreeSet, VecDeque};

/// The suffix of snapshot files (Kafka's).
const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// The temporary file [`write_durably`] renames over a snapshot.
const SNAPSHOT_TMP_SUFFIX: &str = ".snapshot.tmp";

const VERSION: i16 = 2;

/// Version, CRC, offset, producer count.
const HEADER_BYTES: usize = 2 + 4 + 8 + 4;
/// Where the bytes the CRC covers start.
const CRC_FROM: usize = 2 + 4;
/// Producer id, epoch, coordinator epoch, transaction first offset, batch count.
const PRODUCER_BYTES: usize = 8 + 2 + 4 + 8 + 1;
/// First and last sequence, first and last offset.
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;

/// The largest snapshot a table can make: anything longer is not one, and
/// is not even read.
pub(super) const MAX_SNAPSHOT_BYTES: usize =
    HEADER_BYTES + MAX_PRODUCERS * (PRODUCER_BYTES + RETAINED_BATCHES * BATCH_BYTES);

/// `{dir}/{offset, 20 digits}.snapshot`, as Kafka names them.
pub(super) fn snapshot_file(dir: &str, offset: Offset) -> String {
    format!("{dir}/{:020}{SNAPSHOT_SUFFIX}", offset.0)
}

/// `table` as the snapshot at `offset`.
pub(super) fn encode(offset: Offset, table: &ProducerStateTable) -> Vec<u8> {
    let producers = table.producers();
    assert!(producers.len() <= MAX_PRODUCERS, "the table is bounded by MAX_PRODUCERS");
    let mut out = Vec::with_capacity(HEADER_BYTES + producers.len() * (PRODUCER_BYTES + BATCH_BYTES));
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // the CRC, once the rest is known
    out.extend_from_slice(&offset.0.to_be_bytes());
    out.extend_from_slice(&(producers.len() as i32).to_be_bytes());
    for (pid, entry) in producers {
        let batches = &entry.batches;
        assert!(batches.len() <= RETAINED_BATCHES, "a producer keeps up to 5 batches");
        assert!(
            !batches.is_empty() || entry.coordinator_epoch >= LeaderEpoch::FIRST,
            "only a marker empties a producer"
        );
        assert!(entry.txn_first_offset.is_none_or(|first| first < offset), "a snapshot's transactions start below it");
        out.extend_from_slice(&pid.0.to_be_bytes());
        out.extend_from_slice(&entry.epoch.0.to_be_bytes());
        out.extend_from_slice(&entry.coordinator_epoch.0.to_be_bytes());
        out.extend_from_slice(&entry.txn_first_offset.map_or(-1, |o| o.0).to_be_bytes());
        out.push(batches.len() as u8);
        for b in batches {
            assert!(b.last_offset < offset, "a snapshot holds only batches below its offset");
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.first_offset.0.to_be_bytes());
            out.extend_from_slice(&b.last_offset.0.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&out[CRC_FROM..]);
    out[2..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
    assert!(out.len() <= MAX_SNAPSHOT_BYTES);
    out
}

/// Reads big-endian fields off a byte slice; `None` past its end.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// The table the snapshot `bytes` holds, if they are exactly the snapshot at
/// `offset` (see the module docs), kept with `window` batches per producer.
pub(super) fn decode(bytes: &[u8], offset: Offset, window: usize) -> Option<ProducerStateTable> {
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        return None;
    }
    let mut fields = Fields { bytes };
    let (version, crc) = (fields.i16()?, fields.u32()?);
    if version != VERSION || crc != crc32c::crc32c(fields.bytes) {
        return None;
    }
    let (at, count) = (fields.i64()?, fields.i32()?);
    if at != offset.0 || !(0..=MAX_PRODUCERS as i32).contains(&count) {
        return None;
    }
    let mut table = ProducerStateTable::new(window);
    let mut previous = None;
    for _ in 0..count {
        let pid = ProducerId(fields.i64()?);
        // Ids strictly increasing: each producer once, as the table writes them.
        if pid.0 < 0 || previous.is_some_and(|p| p >= pid) {
            return None;
        }
        previous = Some(pid);
        table.restore(pid, decode_entry(&mut fields, offset)?)?;
    }
    fields.bytes.is_empty().then_some(table)
}

/// One producer's entry of a snapshot at `offset` (after its id), if a
/// table could have held it: a non-negative epoch, a coordinator epoch of
/// -1 or more, no batches only after a marker, a transaction opened below
/// `offset` and not after the producer's newest batch.
fn decode_entry(fields: &mut Fields<'_>, offset: Offset) -> Option<ProducerEntry> {
    let (epoch, coordinator_epoch) = (ProducerEpoch(fields.i16()?), LeaderEpoch(fields.i32()?));
    let txn_first_offset = match fields.i64()? {
        -1 => None,
        first => Some(Offset(first)),
    };
    let count = fields.u8()?;
    if epoch.0 < 0 || coordinator_epoch < LeaderEpoch::NONE || count > RETAINED_BATCHES as u8 {
        return None;
    }
    let mut batches = VecDeque::with_capacity(count.into());
    for _ in 0..count {
        let batch = decode_batch(fields, offset, batches.back().map(|b: &BatchSeq| b.last_offset))?;
        batches.push_back(batch);
    }
    let txn_fits = txn_first_offset.is_none_or(|first| {
        let newest = batches.back().map(|b| b.first_offset);
        first.0 >= 0 && first < offset && newest.is_some_and(|newest| first <= newest)
    });
    let emptied_by_marker = !batches.is_empty() || coordinator_epoch >= LeaderEpoch::FIRST;
    (txn_fits && emptied_by_marker).then_some(ProducerEntry { epoch, batches, coordinator_epoch, txn_first_offset })
}

/// One batch of a snapshot at `offset`, if an append could have recorded it
/// there: offsets below `offset` and after `after` (the producer's batch
/// before), sequences non-negative and spanning as many as its offsets.
fn decode_batch(fields: &mut Fields<'_>, offset: Offset, after: Option<Offset>) -> Option<BatchSeq> {
    let (first_seq, last_seq) = (fields.i32()?, fields.i32()?);
    let (first_offset, last_offset) = (Offset(fields.i64()?), Offset(fields.i64()?));
    let in_order = first_offset.0 >= 0 && after.is_none_or(|a| a < first_offset);
    // A batch's last offset delta is an i32.
    let span = last_offset.0.checked_sub(first_offset.0).filter(|s| (0..=i64::from(i32::MAX)).contains(s))?;
    if !in_order || last_offset >= offset || first_seq < 0 || last_seq < 0 {
        return None;
    }
    let stamp = ProducerStamp { id: ProducerId(0), epoch: ProducerEpoch(0), base_sequence: first_seq };
    (stamp.last_sequence(span as usize + 1) == last_seq).then_some(BatchSeq {
        first_seq,
        last_seq,
        first_offset,
        last_offset,
    })
}

/// The offsets of the snapshot files under `dir`, in order. Files named
/// otherwise are not the log's and are left alone.
pub(super) fn list(storage: &dyn Storage, dir: &str) -> BTreeSet<Offset> {
    let prefix = format!("{dir}/");
    let stem = |path: &str| path.strip_prefix(&prefix)?.strip_suffix(SNAPSHOT_SUFFIX).and_then(parse_base_offset);
    storage.list(&prefix).iter().filter_map(|path| stem(path)).collect()
}

/// Writes the snapshot of `table` at `offset` (temp file, fsync, rename): a
/// crash leaves the old file or the new one, and the temp file, which
/// [`delete_stale_temps`] removes at open.
pub(super) fn write(
    storage: &mut dyn Storage,
    dir: &str,
    offset: Offset,
    table: &ProducerStateTable,
) -> Result<(), StorageError> {
    write_durably(storage, &snapshot_file(dir, offset), &encode(offset, table))
}

/// Deletes the temp files of snapshot writes that crashed before their rename.
pub(super) fn delete_stale_temps(storage: &mut dyn Storage, dir: &str) {
    let prefix = format!("{dir}/");
    for path in storage.list(&prefix) {
        if path.ends_with(SNAPSHOT_TMP_SUFFIX) && !path[prefix.len()..].contains('/') {
            storage.delete(&path);
        }
    }
}

/// Deletes every snapshot whose offset `doomed` picks.
pub(super) fn delete_where(storage: &mut dyn Storage, dir: &str, doomed: impl Fn(Offset) -> bool) {
    for offset in list(storage, dir) {
        if doomed(offset) {
            storage.delete(&snapshot_file(dir, offset));
        }
    }
}

/// The newest snapshot at or below `at_or_below` that decodes, with its
/// offset. Those newer that do not are deleted: they would fail every later
/// load too.
pub(super) fn load_newest(
    storage: &mut dyn Storage,
    dir: &str,
    at_or_below: Offset,
    window: usize,
) -> Option<(Offset, ProducerStateTable)> {
    for offset in list(storage, dir).into_iter().rev().filter(|&o| o <= at_or_below) {
        let path = snapshot_file(dir, offset);
        match read_table(storage, &path, offset, window) {
            Some(table) => return Some((offset, table)),
            None => storage.delete(&path),
        }
    }
    None
}

/// The table the snapshot file `path` holds. Bytes that do not decode are
/// read again while they change (up to [`MAX_REREADS`] times), as recovery
/// does with segments: a transient read error must not cost a good snapshot.
fn read_table(storage: &dyn Storage, path: &str, offset: Offset, window: usize) -> Option<ProducerStateTable> {
    if storage.len(path)? > MAX_SNAPSHOT_BYTES as u64 {
        return None;
    }
    let mut bytes = storage.read(path)?;
    for _ in 0..MAX_REREADS {
        if let Some(table) = decode(&bytes, offset, window) {
            return Some(table);
        }
        let again = storage.read(path)?;
        if again == bytes {
            return None;
        }
        bytes = again;
    }
    decode(&bytes, offset, window)
}

impl PartitionLog {
    /// Starts a new segment at `base_offset` (the log end), first writing
    /// the producer snapshot there: the table holds exactly the batches
    /// below it. A failed write is the broker's to stop on; the log is
    /// unchanged (a temp file may be left, which the next open deletes).
    pub(super) fn roll(&mut self, storage: &mut dyn Storage, base_offset: Offset) -> Result<(), StorageError> {
        assert_eq!(base_offset, self.log_end, "a roll starts at the log end");
        write(storage, &self.dir, base_offset, &self.producers)?;
        self.segments.push(Segment::new(&self.dir, base_offset));
        Ok(())
    }

    /// The producer state as of `end` (a batch boundary, at most the log
    /// end), and the offset of the snapshot it came from: the newest one at
    /// or below `end` that decodes, plus the batches from its offset up to
    /// `end`. Without one, the batches from the log start (which forgets the
    /// producers of deleted segments: see the module docs).
    pub(super) fn producer_state_at(
        &self,
        storage: &mut dyn Storage,
        end: Offset,
    ) -> (Option<Offset>, ProducerStateTable) {
        assert!(end <= self.log_end);
        let window = self.producer_window;
        let (from, mut table) = match load_newest(storage, &self.dir, end, window) {
            Some((offset, table)) => (Some(offset), table),
            None => (None, ProducerStateTable::new(window)),
        };
        self.replay_batches(&mut table, from.unwrap_or(Offset::ZERO), end);
        (from, table)
    }

    /// Records into `table` the idempotent and transactional batches and
    /// markers in `[from, end)` that the log still holds. `from` and `end`
    /// are batch boundaries.
    pub(super) fn replay_batches(&self, table: &mut ProducerStateTable, from: Offset, end: Offset) {
        self.replay_batches_with(table, from, end, |_| {});
    }

    /// [`PartitionLog::replay_batches`], handing every transaction a marker
    /// completes to `completed`, in marker order.
    pub(super) fn replay_batches_with(
        &self,
        table: &mut ProducerStateTable,
        from: Offset,
        end: Offset,
        mut completed: impl FnMut(CompletedTxn),
    ) {
        let from = from.max(self.log_start_offset());
        if from >= end {
            return;
        }
        let batches = self.segments[self.segment_index(from)..].iter().flat_map(|s| &s.batches);
        for batch in batches.skip_while(|b| b.base_offset < from).take_while(|b| b.base_offset < end) {
            assert!(batch.last_offset < end, "replay ends at a batch boundary");
            if let Some(txn) = table.record_kind(batch.kind, batch.producer, batch.count(), batch.base_offset) {
                completed(txn);
            }
        }
    }

    /// Sets the producer state of a log just recovered: stale temp files and
    /// snapshots past the recovered log end (whose batches a crash took) go,
    /// then the state is the newest snapshot plus the batches after it, and
    /// the transaction index is rebuilt.
    pub(super) fn load_producer_state(&mut self, storage: &mut dyn Storage) {
        delete_stale_temps(storage, &self.dir);
        self.reload_producer_state_after_cut(storage);
    }

    /// Rebuilds the producer state and the transaction index after a
    /// truncation cut the log to its current end: snapshots past it
    /// describe cut batches and go first.
    pub(super) fn reload_producer_state_after_cut(&mut self, storage: &mut dyn Storage) {
        let log_end = self.log_end;
        delete_where(storage, &self.dir, |offset| offset > log_end);
        self.producers = self.producer_state_at(storage, log_end).1;
        self.rebuild_txn_index(storage);
    }

    /// Makes sure a snapshot that decodes sits at `offset`, where retention
    /// is about to move the log start: it is what keeps the producers of the
    /// segments about to go. The roll wrote it; if it is missing or damaged
    /// (segments recovered from elsewhere, a snapshot lost to corruption),
    /// it is rebuilt from the newest older one and the batches below
    /// `offset`, still in memory.
    pub(super) fn ensure_producer_snapshot_at(
        &mut self,
        storage: &mut dyn Storage,
        offset: Offset,
    ) -> Result<(), StorageError> {
        let (from, table) = self.producer_state_at(storage, offset);
        if from != Some(offset) {
            write(storage, &self.dir, offset, &table)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TxnMarker;

    fn sample() -> ProducerStateTable {
        let mut table = ProducerStateTable::default();
        let stamp =
            |id, epoch, base_sequence| ProducerStamp { id: ProducerId(id), epoch: ProducerEpoch(epoch), base_sequence };
        for (i, seq) in (0..7).map(|i| (i, i * 3)) {
            table.record_batch(stamp(3, 1, seq), 3, Offset(i64::from(i) * 10));
        }
        // Producer 3's transaction is open from offset 70.
        table.record_transactional(stamp(3, 1, 21), 2, Offset(70));
        table.record_batch(stamp(9, 0, i32::MAX - 1), 4, Offset(100));
        // Producer 9 got a marker that ended nothing; producer 12 only one
        // that moved it to epoch 5 (no batches).
        table.record_marker(ProducerId(9), ProducerEpoch(0), marker(4), Offset(105));
        table.record_marker(ProducerId(12), ProducerEpoch(5), marker(7), Offset(106));
        table.record_batch(stamp(0, 2, 0), 1, Offset(110));
        table
    }

    fn marker(coordinator_epoch: i32) -> TxnMarker {
        TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(coordinator_epoch) }
    }

    #[test]
    fn a_snapshot_round_trips_and_its_size_is_its_entries() {
        let table = sample();
        assert_eq!(table.open_txns().collect::<Vec<_>>(), [(Offset(70), ProducerId(3))], "fixture");
        let bytes = encode(Offset(111), &table);
        assert_eq!(bytes.len(), HEADER_BYTES + 4 * PRODUCER_BYTES + (1 + 5 + 1) * BATCH_BYTES);
        let decoded = decode(&bytes, Offset(111), RETAINED_BATCHES);
        assert_eq!(decoded, Some(table.clone()));
        assert_eq!(decoded.unwrap().first_open_txn_offset(), Some(Offset(70)), "open transactions come back");
        // A window of one keeps each producer's newest batch.
        let one = decode(&bytes, Offset(111), 1).unwrap();
        assert!(one.producers().all(|(_, e)| e.batches.len() <= 1));
        assert!(one.has_open_txn(ProducerId(3)));
        // Version 1 (no transaction fields) is refused, like damage.
        let mut v1 = bytes.clone();
        v1[..2].copy_from_slice(&1i16.to_be_bytes());
        assert_eq!(decode(&v1, Offset(111), RETAINED_BATCHES), None);
        let empty = ProducerStateTable::default();
        assert_eq!(decode(&encode(Offset(0), &empty), Offset(0), RETAINED_BATCHES), Some(empty));
    }

    #[test]
    fn any_damage_or_another_offset_is_refused() {
        let bytes = encode(Offset(111), &sample());
        for at in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = bytes.clone();
                flipped[at] ^= bit;
                assert_eq!(decode(&flipped, Offset(111), RETAINED_BATCHES), None, "bit {bit:#x} of byte {at}");
            }
        }
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len], Offset(111), RETAINED_BATCHES), None, "cut to {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, Offset(111), RETAINED_BATCHES), None);
        assert_eq!(decode(&bytes, Offset(112), RETAINED_BATCHES), None, "a file under another offset's name");
    }

    /// Entries with a valid CRC that no table could have written.
    #[test]
    fn impossible_entries_are_refused_even_with_a_good_crc() {
        // The first producer (id 0): one batch at offset 110, no marker, no transaction.
        let base = encode(Offset(111), &sample());
        let first_batch = HEADER_BYTES + PRODUCER_BYTES;
        let (coordinator_epoch, txn_first) = (HEADER_BYTES + 8 + 2, HEADER_BYTES + 8 + 2 + 4);
        let patches: [(usize, &[u8]); 10] = [
            (HEADER_BYTES - 4, &(MAX_PRODUCERS as i32 + 1).to_be_bytes()), // count
            (HEADER_BYTES + PRODUCER_BYTES - 1, &[6]),                     // six batches
            (HEADER_BYTES, &(-1i64).to_be_bytes()),                        // producer id
            (first_batch, &(-1i32).to_be_bytes()),                         // first seq
            (first_batch + 4, &7i32.to_be_bytes()),                        // last seq off its span
            (first_batch + 16, &111i64.to_be_bytes()),                     // last offset at the snapshot's
            (coordinator_epoch, &(-2i32).to_be_bytes()),                   // below "none"
            (txn_first, &111i64.to_be_bytes()),                            // a transaction at the snapshot's offset
            (txn_first, &(-2i64).to_be_bytes()),                           // a negative one
            (HEADER_BYTES + 8, &(-1i16).to_be_bytes()),                    // producer epoch
        ];
        let refuse = |bytes: &mut Vec<u8>, what: &str| {
            let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
            bytes[2..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
            assert_eq!(decode(bytes, Offset(111), RETAINED_BATCHES), None, "{what}");
        };
        for (at, patch) in patches {
            let mut bytes = base.clone();
            bytes[at..at + patch.len()].copy_from_slice(patch);
            refuse(&mut bytes, &format!("patch at {at}"));
        }
        // A transaction opened after the producer's newest batch.
        let mut table = ProducerStateTable::default();
        let stamp = ProducerStamp { id: ProducerId(1), epoch: ProducerEpoch(0), base_sequence: 0 };
        table.record_transactional(stamp, 1, Offset(5));
        let mut bytes = encode(Offset(111), &table);
        assert!(decode(&bytes, Offset(111), RETAINED_BATCHES).is_some());
        bytes[txn_first..txn_first + 8].copy_from_slice(&6i64.to_be_bytes());
        refuse(&mut bytes, "a transaction after the last batch");
        // No batches without a marker.
        let mut table = ProducerStateTable::default();
        table.record_marker(ProducerId(1), ProducerEpoch(0), marker(0), Offset(5));
        let mut bytes = encode(Offset(111), &table);
        assert!(decode(&bytes, Offset(111), RETAINED_BATCHES).is_some());
        bytes[coordinator_epoch..coordinator_epoch + 4].copy_from_slice(&(-1i32).to_be_bytes());
        refuse(&mut bytes, "no batches and no marker");
    }

    #[test]
    fn the_largest_table_fits_the_bound() {
        let batch = |i: i64| BatchSeq { first_seq: 0, last_seq: 0, first_offset: Offset(i), last_offset: Offset(i) };
        let mut table = ProducerStateTable::default();
        for pid in 0..MAX_PRODUCERS as i64 {
            for i in 0..RETAINED_BATCHES as i64 {
                table.record(ProducerId(pid), ProducerEpoch(0), batch(pid * 5 + i));
            }
        }
        let offset = Offset(MAX_PRODUCERS as i64 * 5);
        let bytes = encode(offset, &table);
        assert_eq!(bytes.len(), MAX_SNAPSHOT_BYTES);
        assert_eq!(decode(&bytes, offset, RETAINED_BATCHES).as_ref(), Some(&table));
    }
}
