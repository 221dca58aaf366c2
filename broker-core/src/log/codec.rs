//! Kafka record batch v2, byte for byte (big-endian, CRC-32C), as `DefaultRecordBatch`
//! lays it out. We write uncompressed batches with LogAppendTime timestamps, of
//! three kinds ([`BatchKind`]): data, with or without an idempotent producer's
//! id, epoch and base sequence; transactional data (attribute bit 4, always
//! with a producer); and transaction markers (control batches, bits 4 and 5:
//! one record whose key is `[version i16 = 0][type i16: 0 ABORT, 1 COMMIT]`
//! and value `[version i16 = 0][coordinator epoch i32]`, Kafka's
//! `EndTransactionMarker`, with base sequence -1). The decoder accepts exactly
//! what a v2 writer of such batches produces.

use super::varint::{read_varint, read_varlong, varlong_len, write_varlong};
use crate::types::{
    BatchKind, LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, Record, StoredRecord, TxnMarker,
};
use bytes::Bytes;

/// Base offset (i64) + batch length (i32): the bytes `batch length` does not count.
pub(super) const LOG_OVERHEAD_BYTES: usize = 12;
/// The fixed v2 header, up to and including the record count.
pub(super) const BATCH_HEADER_BYTES: usize = 61;

const MAGIC_V2: u8 = 2;
const EPOCH_POS: usize = 12;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TIMESTAMP_POS: usize = 27;
const MAX_TIMESTAMP_POS: usize = 35;
const PRODUCER_ID_POS: usize = 43;
const PRODUCER_EPOCH_POS: usize = 51;
const BASE_SEQUENCE_POS: usize = 53;
const RECORD_COUNT_POS: usize = 57;
/// Attributes bit 3: timestamps are LogAppendTime (set by the broker).
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attributes bit 4: written inside a transaction.
const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attributes bit 5: a control batch (here: a transaction marker).
const ATTR_CONTROL: i16 = 0x20;
/// A control record's key and value versions (Kafka's only ones).
const CONTROL_VERSION: i16 = 0;
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;
/// A marker's key: version, type.
pub(super) const MARKER_KEY_BYTES: usize = 2 + 2;
/// A marker's value: version, coordinator epoch.
pub(super) const MARKER_VALUE_BYTES: usize = 2 + 4;
/// The largest control batch accepted: a marker batch is 78 bytes as
/// Kafka and ksim write it; the slack covers varints a writer may size
/// differently. Anything longer is damage, and a header walk never reads
/// more than this to learn a marker's content.
pub(super) const MAX_CONTROL_BATCH_BYTES: usize = 128;
/// Producer id (-1), producer epoch (-1), base sequence (-1): no idempotence.
const NO_PRODUCER: [u8; 14] = [0xff; 14];

/// What the encoder needs from a record, so appends and rewrites share one path.
pub(super) trait RecordView {
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> &[u8];
}

impl RecordView for Record {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
}

impl RecordView for StoredRecord {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
}

/// What every record of a batch shares, as its header holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchHeader {
    pub leader_epoch: LeaderEpoch,
    /// LogAppendTime: the batch's one timestamp.
    pub timestamp_ms: u64,
    /// The producer: `None` for a plain producer's data; always set for
    /// transactional batches and markers (a marker's base sequence is -1).
    pub producer: Option<ProducerStamp>,
    pub kind: BatchKind,
}

/// A marker's control record key and value, as Kafka writes them.
pub(super) fn marker_key_value(marker: TxnMarker) -> ([u8; MARKER_KEY_BYTES], [u8; MARKER_VALUE_BYTES]) {
    let kind = if marker.commit { CONTROL_TYPE_COMMIT } else { CONTROL_TYPE_ABORT };
    let mut key = [0; MARKER_KEY_BYTES];
    key[..2].copy_from_slice(&CONTROL_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&kind.to_be_bytes());
    let mut value = [0; MARKER_VALUE_BYTES];
    value[..2].copy_from_slice(&CONTROL_VERSION.to_be_bytes());
    value[2..].copy_from_slice(&marker.coordinator_epoch.0.to_be_bytes());
    (key, value)
}

/// The marker a control record's key and value hold; `None` unless they
/// are exactly what [`marker_key_value`] writes (another control type, a
/// version ksim does not know, trailing bytes, a negative coordinator epoch).
fn parse_marker(key: Option<&[u8]>, value: &[u8]) -> Option<TxnMarker> {
    let key: [u8; MARKER_KEY_BYTES] = key?.try_into().ok()?;
    let value: [u8; MARKER_VALUE_BYTES] = value.try_into().ok()?;
    if be_i16(&key, 0) != CONTROL_VERSION || be_i16(&value, 0) != CONTROL_VERSION {
        return None;
    }
    let commit = match be_i16(&key, 2) {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return None,
    };
    let coordinator_epoch = LeaderEpoch(be_i32(&value, 2));
    (coordinator_epoch >= LeaderEpoch::FIRST).then_some(TxnMarker { commit, coordinator_epoch })
}

/// The attributes ksim writes for a batch of `kind`.
fn attributes_of(kind: BatchKind) -> i16 {
    ATTR_LOG_APPEND_TIME
        | match kind {
            BatchKind::Data => 0,
            BatchKind::Transactional => ATTR_TRANSACTIONAL,
            BatchKind::Marker(_) => ATTR_TRANSACTIONAL | ATTR_CONTROL,
        }
}

/// Checks that `producer` fits a batch of `kind` (the decoder refuses
/// anything else, so the encoder must never write it).
fn assert_producer_fits(kind: BatchKind, producer: Option<ProducerStamp>) {
    let Some(p) = producer else {
        assert_eq!(kind, BatchKind::Data, "a {kind:?} batch without a producer");
        return;
    };
    assert!(p.id.0 >= 0 && p.epoch.0 >= 0, "producer fields of {p:?}");
    match kind {
        BatchKind::Marker(m) => {
            assert_eq!(p.base_sequence, -1, "a marker's base sequence");
            assert!(m.coordinator_epoch >= LeaderEpoch::FIRST, "a marker's coordinator epoch");
        }
        _ => assert!(p.base_sequence >= 0, "producer fields of {p:?}"),
    }
}

/// Appends one batch holding `records` (offsets `base_offset..`, all sharing
/// `header`) to `out`. A log's batches always carry a real epoch, never
/// Kafka's -1 ([`LeaderEpoch::NONE`]). A marker batch holds exactly its
/// control record (see [`marker_key_value`]).
pub(super) fn encode_batch<R: RecordView>(out: &mut Vec<u8>, base_offset: Offset, header: BatchHeader, records: &[R]) {
    let BatchHeader { leader_epoch, timestamp_ms, producer, kind } = header;
    assert!(!records.is_empty() && records.len() <= i32::MAX as usize);
    assert!(base_offset.0 >= 0 && leader_epoch >= LeaderEpoch::FIRST, "batch at {base_offset} in epoch {leader_epoch}");
    assert_producer_fits(kind, producer);
    if let BatchKind::Marker(marker) = kind {
        let (key, value) = marker_key_value(marker);
        assert_eq!(records.len(), 1, "a marker batch holds one record");
        assert!(records[0].key() == Some(&key[..]) && records[0].value() == value, "a marker's control record");
    }
    let timestamp = i64::try_from(timestamp_ms).expect("timestamp beyond i64");
    let start = out.len();
    out.extend_from_slice(&base_offset.0.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // batch length, patched below
    out.extend_from_slice(&leader_epoch.0.to_be_bytes());
    out.push(MAGIC_V2);
    out.extend_from_slice(&[0; 4]); // CRC, patched below
    out.extend_from_slice(&attributes_of(kind).to_be_bytes());
    out.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes()); // base timestamp
    out.extend_from_slice(&timestamp.to_be_bytes()); // max timestamp
    match producer {
        None => out.extend_from_slice(&NO_PRODUCER),
        Some(p) => {
            out.extend_from_slice(&p.id.0.to_be_bytes());
            out.extend_from_slice(&p.epoch.0.to_be_bytes());
            out.extend_from_slice(&p.base_sequence.to_be_bytes());
        }
    }
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    debug_assert_eq!(out.len() - start, BATCH_HEADER_BYTES);
    for (delta, record) in records.iter().enumerate() {
        encode_record(out, delta as i64, record);
    }
    let batch_len = i32::try_from(out.len() - start - LOG_OVERHEAD_BYTES).expect("batch > 2 GiB");
    out[start + 8..start + 12].copy_from_slice(&batch_len.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_POS..]);
    out[start + CRC_POS..start + ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
    debug_assert!(!matches!(kind, BatchKind::Marker(_)) || out.len() - start <= MAX_CONTROL_BATCH_BYTES);
}

fn encode_record<R: RecordView>(out: &mut Vec<u8>, offset_delta: i64, record: &R) {
    let key_len = record.key().map_or(-1, |k| k.len() as i64);
    let value_len = record.value().len() as i64;
    let body_len = 1 // attributes
        + varlong_len(0) // timestamp delta: every record carries the batch's time
        + varlong_len(offset_delta)
        + varlong_len(key_len)
        + key_len.max(0) as usize
        + varlong_len(value_len)
        + value_len as usize
        + varlong_len(0); // header count
    write_varlong(out, body_len as i64);
    out.push(0);
    write_varlong(out, 0);
    write_varlong(out, offset_delta);
    write_varlong(out, key_len);
    out.extend_from_slice(record.key().unwrap_or_default());
    write_varlong(out, value_len);
    out.extend_from_slice(record.value());
    write_varlong(out, 0);
}

/// One decoded batch's header facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DecodedBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub leader_epoch: LeaderEpoch,
    /// The first record's timestamp; ksim's batches (LogAppendTime) carry
    /// the max timestamp here too.
    pub base_timestamp: i64,
    pub max_timestamp_ms: u64,
    pub size_bytes: usize,
    pub producer: Option<ProducerStamp>,
    pub kind: BatchKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DecodeError {
    /// The file ends before the batch does: a torn write.
    Incomplete,
    /// The bytes are all there but are not a valid batch.
    Invalid(&'static str),
}

/// Decodes the batch at `pos` in `file`, pushing its records onto `out`
/// (zero-copy slices of `file`). On error `out` is left as it was.
pub(super) fn decode_batch(file: &Bytes, pos: usize, out: &mut Vec<StoredRecord>) -> Result<DecodedBatch, DecodeError> {
    decode_batch_checked(file, pos, out, true)
}

/// [`decode_batch`], with the CRC-32C check skipped when `verify_crc` is
/// false (only the planted bug `skip-crc-check` asks for that).
pub(super) fn decode_batch_checked(
    file: &Bytes,
    pos: usize,
    out: &mut Vec<StoredRecord>,
    verify_crc: bool,
) -> Result<DecodedBatch, DecodeError> {
    let records_before = out.len();
    let result = walk_batch(file, pos, verify_crc, &mut |header, parts| out.push(parts.stored(file, header)));
    if result.is_err() {
        out.truncate(records_before);
    }
    result
}

/// [`decode_batch_checked`] without building records: `visit` sees each
/// record's offset, its batch's leader epoch and its value's bytes. The
/// batch is checked exactly as a decode checks it, but `visit` may have
/// seen some of its records before an error is found.
pub(super) fn visit_batch_checked(
    file: &[u8],
    pos: usize,
    verify_crc: bool,
    visit: &mut dyn FnMut(Offset, LeaderEpoch, &[u8]),
) -> Result<DecodedBatch, DecodeError> {
    walk_batch(file, pos, verify_crc, &mut |header, parts| visit(parts.offset, header.leader_epoch, &file[parts.value]))
}

/// Checks the batch at `pos` in `file` and hands each record to `emit`.
fn walk_batch(
    file: &[u8],
    pos: usize,
    verify_crc: bool,
    emit: &mut dyn FnMut(&Header, RecordParts),
) -> Result<DecodedBatch, DecodeError> {
    assert!(pos <= file.len());
    let rest = &file[pos..];
    if rest.len() < LOG_OVERHEAD_BYTES {
        return Err(DecodeError::Incomplete);
    }
    let batch_len = be_i32(rest, 8);
    if batch_len < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(DecodeError::Invalid("batch length shorter than the v2 header"));
    }
    let size_bytes = LOG_OVERHEAD_BYTES + batch_len as usize;
    if rest.len() < size_bytes {
        return Err(DecodeError::Incomplete);
    }
    let batch = &rest[..size_bytes];
    let mut header = check_header(batch, size_bytes, verify_crc)?;
    walk_records(file, pos, &mut header, emit)?;
    Ok(header.decoded())
}

/// The facts of the batch whose first bytes are `bytes` (at least
/// [`BATCH_HEADER_BYTES`] of them), from its fixed header alone: no CRC
/// check, no record decoded, so the batch's other bytes need not be read.
/// What recovery needs of a segment below the recovery point, which it
/// trusts (reads check the CRC later). The header is still checked for
/// sense (length, magic, offsets, epoch, timestamp, attributes): garbage is
/// `Invalid`, never a panic, and `size_bytes` may run past the end of the
/// file (the caller checks).
///
/// A marker's content (commit or abort, coordinator epoch) is in its
/// record, not its header: for a control batch `bytes` must hold the whole
/// batch (at most [`MAX_CONTROL_BATCH_BYTES`]; fewer is `Incomplete`), which
/// is decoded in full, CRC included.
pub(super) fn decode_header(bytes: &[u8]) -> Result<DecodedBatch, DecodeError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(DecodeError::Incomplete);
    }
    let batch_len = be_i32(bytes, 8);
    if batch_len < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(DecodeError::Invalid("batch length shorter than the v2 header"));
    }
    let size_bytes = LOG_OVERHEAD_BYTES + batch_len as usize;
    let header = check_header(&bytes[..BATCH_HEADER_BYTES], size_bytes, false)?;
    // Every record takes at least one byte after the header, so a count the
    // length cannot hold is damage (and would stretch the batch's offsets
    // past what the segment's index can address).
    if header.count as usize > header.size_bytes - BATCH_HEADER_BYTES {
        return Err(DecodeError::Invalid("more records than the batch length can hold"));
    }
    if !header.control {
        return Ok(header.decoded());
    }
    // Checked not longer than MAX_CONTROL_BATCH_BYTES by `check_header`.
    let whole = bytes.get(..size_bytes).ok_or(DecodeError::Incomplete)?;
    decode_batch(&Bytes::copy_from_slice(whole), 0, &mut Vec::with_capacity(1))
}

struct Header {
    base_offset: Offset,
    leader_epoch: LeaderEpoch,
    log_append_time: bool,
    base_timestamp: i64,
    max_timestamp_ms: u64,
    count: i32,
    size_bytes: usize,
    producer: Option<ProducerStamp>,
    /// A control batch: `kind` is known once its record is decoded.
    control: bool,
    /// For a control batch, `Data` until its record is decoded.
    kind: BatchKind,
}

impl Header {
    fn decoded(&self) -> DecodedBatch {
        DecodedBatch {
            base_offset: self.base_offset,
            last_offset: Offset(self.base_offset.0 + i64::from(self.count) - 1),
            leader_epoch: self.leader_epoch,
            base_timestamp: self.base_timestamp,
            max_timestamp_ms: self.max_timestamp_ms,
            size_bytes: self.size_bytes,
            producer: self.producer,
            kind: self.kind,
        }
    }
}

/// Validates the fixed header of a batch of `size_bytes` (its bytes
/// start `batch`: the whole batch if `verify_crc`, else at least the
/// header), and its CRC if asked.
fn check_header(batch: &[u8], size_bytes: usize, verify_crc: bool) -> Result<Header, DecodeError> {
    use DecodeError::Invalid;
    assert!(batch.len() >= BATCH_HEADER_BYTES && (!verify_crc || batch.len() == size_bytes));
    if batch[MAGIC_POS] != MAGIC_V2 {
        return Err(Invalid("magic is not 2"));
    }
    if verify_crc && be_u32(batch, CRC_POS) != crc32c::crc32c(&batch[ATTRIBUTES_POS..]) {
        return Err(Invalid("CRC-32C mismatch"));
    }
    let attributes = be_i16(batch, ATTRIBUTES_POS);
    if attributes & !(ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
        return Err(Invalid("compressed batch or unknown attributes"));
    }
    let (transactional, control) = (attributes & ATTR_TRANSACTIONAL != 0, attributes & ATTR_CONTROL != 0);
    if control && !transactional {
        return Err(Invalid("control batch outside a transaction"));
    }
    let producer = check_producer(batch, control)?;
    if transactional && producer.is_none() {
        return Err(Invalid("transactional batch without a producer"));
    }
    if control && size_bytes > MAX_CONTROL_BATCH_BYTES {
        return Err(Invalid("control batch longer than a marker"));
    }
    let base_offset = be_i64(batch, 0);
    let leader_epoch = be_i32(batch, EPOCH_POS);
    let count = be_i32(batch, RECORD_COUNT_POS);
    let max_timestamp = be_i64(batch, MAX_TIMESTAMP_POS);
    if base_offset < 0 || leader_epoch < 0 || max_timestamp < 0 {
        return Err(Invalid("negative base offset, leader epoch or timestamp"));
    }
    if count < 1 || be_i32(batch, LAST_OFFSET_DELTA_POS) != count - 1 {
        return Err(Invalid("record count does not match last offset delta"));
    }
    if base_offset.checked_add(i64::from(count)).is_none() {
        return Err(Invalid("offsets overflow i64"));
    }
    if control && count != 1 {
        return Err(Invalid("control batch of more than one record"));
    }
    Ok(Header {
        base_offset: Offset(base_offset),
        leader_epoch: LeaderEpoch(leader_epoch),
        log_append_time: attributes & ATTR_LOG_APPEND_TIME != 0,
        base_timestamp: be_i64(batch, BASE_TIMESTAMP_POS),
        max_timestamp_ms: max_timestamp as u64,
        count,
        size_bytes,
        producer,
        control,
        kind: if transactional && !control { BatchKind::Transactional } else { BatchKind::Data },
    })
}

/// The producer fields of a batch's header: all -1 (none), or an id and
/// epoch with a base sequence that is -1 for a control batch and
/// non-negative for any other.
fn check_producer(batch: &[u8], control: bool) -> Result<Option<ProducerStamp>, DecodeError> {
    if batch[PRODUCER_ID_POS..RECORD_COUNT_POS] == NO_PRODUCER {
        return Ok(None);
    }
    let stamp = ProducerStamp {
        id: ProducerId(be_i64(batch, PRODUCER_ID_POS)),
        epoch: ProducerEpoch(be_i16(batch, PRODUCER_EPOCH_POS)),
        base_sequence: be_i32(batch, BASE_SEQUENCE_POS),
    };
    let sequence_fits = if control { stamp.base_sequence == -1 } else { stamp.base_sequence >= 0 };
    if stamp.id.0 < 0 || stamp.epoch.0 < 0 || !sequence_fits {
        return Err(DecodeError::Invalid("producer id, epoch or sequence partly set"));
    }
    Ok(Some(stamp))
}

/// Hands the records of the batch at `batch_pos` to `emit`; a control
/// batch's record becomes its marker, which sets `header.kind` (and so the
/// kind every record is emitted with) before it is emitted.
fn walk_records(
    file: &[u8],
    batch_pos: usize,
    header: &mut Header,
    emit: &mut dyn FnMut(&Header, RecordParts),
) -> Result<(), DecodeError> {
    let end = batch_pos + header.size_bytes;
    let mut pos = batch_pos + BATCH_HEADER_BYTES;
    // A control batch's one record is emitted once its marker is known.
    let mut control = None;
    for delta in 0..header.count {
        let len = read_varint(&file[..end], &mut pos).ok_or(DecodeError::Invalid("record length"))?;
        let record_end = usize::try_from(len)
            .ok()
            .and_then(|len| pos.checked_add(len))
            .filter(|&record_end| record_end <= end)
            .ok_or(DecodeError::Invalid("record length beyond the batch"))?;
        let parts =
            parse_record(file, &mut pos, record_end, delta, header).ok_or(DecodeError::Invalid("malformed record"))?;
        if pos != record_end {
            return Err(DecodeError::Invalid("record length does not match its fields"));
        }
        if header.control {
            control = Some(parts);
        } else {
            emit(header, parts);
        }
    }
    if pos != end {
        return Err(DecodeError::Invalid("bytes after the last record"));
    }
    if let Some(parts) = control {
        let key = parts.key.clone().map(|key| &file[key]);
        let marker = parse_marker(key, &file[parts.value.clone()])
            .ok_or(DecodeError::Invalid("control record is not a transaction marker"))?;
        header.kind = BatchKind::Marker(marker);
        emit(header, parts);
    }
    Ok(())
}

/// One record's fields, its key and value as ranges of the batch's file.
struct RecordParts {
    offset: Offset,
    timestamp_ms: u64,
    key: Option<std::ops::Range<usize>>,
    value: std::ops::Range<usize>,
}

impl RecordParts {
    /// The record, its key and value zero-copy slices of `file`.
    fn stored(self, file: &Bytes, header: &Header) -> StoredRecord {
        StoredRecord {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            leader_epoch: header.leader_epoch,
            key: self.key.map(|key| file.slice(key)),
            value: file.slice(self.value),
            producer: header.producer,
            kind: header.kind,
        }
    }
}

/// One record whose bytes are `file[*pos..end]`; `None` if malformed.
fn parse_record(file: &[u8], pos: &mut usize, end: usize, offset_delta: i32, header: &Header) -> Option<RecordParts> {
    let buf = &file[..end];
    let _attributes = *buf.get(*pos)?;
    *pos += 1;
    let timestamp_delta = read_varlong(buf, pos)?;
    if read_varint(buf, pos)? != offset_delta {
        return None; // offsets are dense: no compaction here
    }
    let key = match read_varint(buf, pos)? {
        -1 => None,
        len => Some(take(pos, end, len)?),
    };
    let value_len = read_varint(buf, pos)?;
    let value = take(pos, end, value_len)?; // -1 (a null value) is rejected
    let header_count = read_varint(buf, pos)?;
    for _ in 0..usize::try_from(header_count).ok()? {
        let key_len = read_varint(buf, pos)?;
        take(pos, end, key_len)?;
        match read_varint(buf, pos)? {
            -1 => {}
            len => {
                take(pos, end, len)?;
            }
        }
    }
    let timestamp_ms = if header.log_append_time {
        header.max_timestamp_ms
    } else {
        u64::try_from(header.base_timestamp.checked_add(timestamp_delta)?).ok()?
    };
    let offset = Offset(header.base_offset.0 + i64::from(offset_delta));
    Some(RecordParts { offset, timestamp_ms, key, value })
}

/// The next `len` bytes' range; `None` if negative or past `end`.
fn take(pos: &mut usize, end: usize, len: i32) -> Option<std::ops::Range<usize>> {
    let len = usize::try_from(len).ok()?;
    let stop = pos.checked_add(len).filter(|&stop| stop <= end)?;
    let range = *pos..stop;
    *pos = stop;
    Some(range)
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(buf[at..at + 2].try_into().expect("2 bytes"))
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&'static [u8]>, value: &'static [u8]) -> Record {
        Record { key: key.map(Bytes::from_static), value: Bytes::from_static(value), timestamp_ms: 1 }
    }

    /// The header of a plain producer's batch.
    fn plain(leader_epoch: i32, timestamp_ms: u64) -> BatchHeader {
        BatchHeader { leader_epoch: LeaderEpoch(leader_epoch), timestamp_ms, producer: None, kind: BatchKind::Data }
    }

    #[test]
    fn header_is_laid_out_as_kafka_v2() {
        let mut out = vec![0xaa]; // encoding appends after existing bytes
        let records = [record(Some(b"k"), b"value"), record(None, b"")];
        encode_batch(&mut out, Offset(42), plain(7, 1_000), &records);
        let batch = &out[1..];
        assert_eq!(be_i64(batch, 0), 42);
        assert_eq!(be_i32(batch, 8) as usize, batch.len() - LOG_OVERHEAD_BYTES);
        assert_eq!(be_i32(batch, EPOCH_POS), 7);
        assert_eq!(batch[MAGIC_POS], 2);
        assert_eq!(be_u32(batch, CRC_POS), crc32c::crc32c(&batch[ATTRIBUTES_POS..]));
        assert_eq!(be_i16(batch, ATTRIBUTES_POS), 0x08);
        assert_eq!(be_i32(batch, LAST_OFFSET_DELTA_POS), 1);
        assert_eq!(be_i64(batch, BASE_TIMESTAMP_POS), 1_000);
        assert_eq!(be_i64(batch, MAX_TIMESTAMP_POS), 1_000);
        assert_eq!(be_i64(batch, PRODUCER_ID_POS), -1);
        assert_eq!(be_i16(batch, 51), -1);
        assert_eq!(be_i32(batch, 53), -1);
        assert_eq!(be_i32(batch, RECORD_COUNT_POS), 2);
        // Record 0: length 12 (0x18), attributes 0, ts delta 0, offset delta 0, key len 1 "k",
        // value len 5 "value", 0 headers (varints zig-zag: 1 -> 0x02, 5 -> 0x0a).
        let first: &[u8] = &[24, 0, 0, 0, 2, b'k', 10, b'v', b'a', b'l', b'u', b'e', 0];
        assert_eq!(&batch[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + first.len()], first);
        // Record 1: null key (-1 -> 0x01), empty value.
        let second: &[u8] = &[12, 0, 0, 2, 1, 0, 0];
        assert_eq!(&batch[BATCH_HEADER_BYTES + first.len()..], second);
    }

    #[test]
    fn decode_round_trips_and_leaves_out_untouched_on_error() {
        let mut buf = Vec::new();
        let records = [record(Some(b"a"), b"1"), record(None, b"22"), record(Some(b""), b"")];
        encode_batch(&mut buf, Offset(5), plain(3, 77), &records);
        let first_len = buf.len();
        encode_batch(&mut buf, Offset(8), plain(4, 78), &records[..1]);
        let file = Bytes::from(buf);
        let mut out = Vec::new();
        let first = decode_batch(&file, 0, &mut out).unwrap();
        assert_eq!((first.base_offset, first.last_offset), (Offset(5), Offset(7)));
        assert_eq!((first.leader_epoch, first.max_timestamp_ms, first.size_bytes), (LeaderEpoch(3), 77, first_len));
        let second = decode_batch(&file, first_len, &mut out).unwrap();
        assert_eq!((second.base_offset, second.last_offset), (Offset(8), Offset(8)));
        let got: Vec<_> = out
            .iter()
            .map(|r| (r.offset.0, r.timestamp_ms, r.leader_epoch.0, r.key.clone(), r.value.clone()))
            .collect();
        let want: Vec<_> = records
            .iter()
            .chain(&records[..1])
            .enumerate()
            .map(|(i, r)| {
                let (timestamp_ms, epoch) = if i < 3 { (77, 3) } else { (78, 4) };
                (5 + i as i64, timestamp_ms, epoch, r.key.clone(), r.value.clone())
            })
            .collect();
        assert_eq!(got, want);

        let torn = file.slice(..file.len() - 1);
        assert_eq!(decode_batch(&torn, first_len, &mut out), Err(DecodeError::Incomplete));
        let mut flipped = file.to_vec();
        flipped[first_len + BATCH_HEADER_BYTES + 2] ^= 0x10;
        let flipped = Bytes::from(flipped);
        assert_eq!(decode_batch(&flipped, first_len, &mut out), Err(DecodeError::Invalid("CRC-32C mismatch")));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn header_decode_agrees_with_the_full_decode_and_skips_the_crc() {
        let mut buf = Vec::new();
        let records = [record(Some(b"a"), b"1"), record(None, b"22")];
        encode_batch(&mut buf, Offset(5), plain(3, 77), &records);
        let file = Bytes::from(buf.clone());
        let full = decode_batch(&file, 0, &mut Vec::new()).unwrap();
        assert_eq!(decode_header(&buf[..BATCH_HEADER_BYTES]), Ok(full), "the header alone is enough");
        assert_eq!(decode_header(&buf[..BATCH_HEADER_BYTES - 1]), Err(DecodeError::Incomplete));
        // A damaged record: the full decode refuses it, the header walk does not look.
        let mut damaged = buf.clone();
        damaged[BATCH_HEADER_BYTES + 3] ^= 0x01;
        assert_eq!(decode_header(&damaged), Ok(full));
        assert!(decode_batch(&Bytes::from(damaged), 0, &mut Vec::new()).is_err());
        // Garbage in the header is refused, not trusted (and never a panic).
        let mut zeros = vec![0u8; BATCH_HEADER_BYTES];
        assert!(matches!(decode_header(&zeros), Err(DecodeError::Invalid(_))));
        zeros[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        zeros[MAGIC_POS] = MAGIC_V2;
        assert!(matches!(decode_header(&zeros), Err(DecodeError::Invalid(_))));
        let mut bad_magic = buf.clone();
        bad_magic[MAGIC_POS] = 1;
        assert_eq!(decode_header(&bad_magic), Err(DecodeError::Invalid("magic is not 2")));
    }

    const STAMP: ProducerStamp = ProducerStamp { id: ProducerId(9), epoch: ProducerEpoch(2), base_sequence: 4 };

    /// A marker batch as `append_marker` writes it.
    fn marker_batch(base_offset: i64, marker: TxnMarker) -> Vec<u8> {
        let (key, value) = marker_key_value(marker);
        let record =
            Record { key: Some(Bytes::copy_from_slice(&key)), value: Bytes::copy_from_slice(&value), timestamp_ms: 0 };
        let producer = Some(ProducerStamp { base_sequence: -1, ..STAMP });
        let header =
            BatchHeader { leader_epoch: LeaderEpoch(1), timestamp_ms: 50, producer, kind: BatchKind::Marker(marker) };
        let mut buf = Vec::new();
        encode_batch(&mut buf, Offset(base_offset), header, &[record]);
        buf
    }

    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
        batch[CRC_POS..ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn transactional_and_marker_batches_round_trip() {
        let mut buf = Vec::new();
        let records = [record(Some(b"a"), b"1"), record(None, b"22")];
        let header = BatchHeader {
            leader_epoch: LeaderEpoch(1),
            timestamp_ms: 40,
            producer: Some(STAMP),
            kind: BatchKind::Transactional,
        };
        encode_batch(&mut buf, Offset(3), header, &records);
        assert_eq!(be_i16(&buf, ATTRIBUTES_POS), 0x18, "LogAppendTime and transactional");
        let data_len = buf.len();
        let commit = TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(6) };
        let abort = TxnMarker { commit: false, coordinator_epoch: LeaderEpoch(0) };
        buf.extend(marker_batch(5, commit));
        let commit_len = buf.len() - data_len;
        buf.extend(marker_batch(6, abort));
        let marker = &buf[data_len..data_len + commit_len];
        assert_eq!(be_i16(marker, ATTRIBUTES_POS), 0x38, "LogAppendTime, transactional and control");
        assert_eq!((be_i64(marker, PRODUCER_ID_POS), be_i16(marker, PRODUCER_EPOCH_POS)), (9, 2));
        assert_eq!((be_i32(marker, BASE_SEQUENCE_POS), be_i32(marker, RECORD_COUNT_POS)), (-1, 1));
        // The control record: key [0, 1] (version 0, COMMIT), value [0, 6] (version 0, epoch 6).
        let control: &[u8] = &[32, 0, 0, 0, 8, 0, 0, 0, 1, 12, 0, 0, 0, 0, 0, 6, 0];
        assert_eq!(&marker[BATCH_HEADER_BYTES..], control);
        assert!(commit_len <= MAX_CONTROL_BATCH_BYTES);

        let file = Bytes::from(buf.clone());
        let mut out = Vec::new();
        let data = decode_batch(&file, 0, &mut out).unwrap();
        assert_eq!((data.kind, data.producer), (BatchKind::Transactional, Some(STAMP)));
        let first = decode_batch(&file, data_len, &mut out).unwrap();
        let second = decode_batch(&file, data_len + commit_len, &mut out).unwrap();
        let marker_stamp = Some(ProducerStamp { base_sequence: -1, ..STAMP });
        assert_eq!(
            (first.kind, first.producer, first.last_offset),
            (BatchKind::Marker(commit), marker_stamp, Offset(5))
        );
        assert_eq!((second.kind, second.last_offset), (BatchKind::Marker(abort), Offset(6)));
        let kinds: Vec<_> = out.iter().map(|r| (r.offset.0, r.kind, r.producer)).collect();
        let want = [
            (3, BatchKind::Transactional, Some(STAMP)),
            (4, BatchKind::Transactional, Some(STAMP)),
            (5, BatchKind::Marker(commit), marker_stamp),
            (6, BatchKind::Marker(abort), marker_stamp),
        ];
        assert_eq!(kinds, want);
        // The header walk knows a data batch's kind from its header, and
        // reads a marker's whole batch to know its content.
        assert_eq!(decode_header(&buf[..BATCH_HEADER_BYTES]), Ok(data));
        assert_eq!(decode_header(&buf[data_len..data_len + BATCH_HEADER_BYTES]), Err(DecodeError::Incomplete));
        assert_eq!(decode_header(&buf[data_len..data_len + commit_len - 1]), Err(DecodeError::Incomplete));
        assert_eq!(decode_header(&buf[data_len..]), Ok(first), "more bytes than the batch are fine");
    }

    /// A one-record batch of producer `STAMP` with `key` and `value`, its
    /// attributes and base sequence then set as given (CRC fixed): a
    /// control batch if `attributes` says so, whatever its record holds.
    fn patched(
        key: Option<&'static [u8]>,
        value: &'static [u8],
        count: usize,
        attributes: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let records: Vec<Record> = (0..count).map(|_| record(key, value)).collect();
        let header =
            BatchHeader { leader_epoch: LeaderEpoch(1), timestamp_ms: 5, producer: Some(STAMP), kind: BatchKind::Data };
        let mut buf = Vec::new();
        encode_batch(&mut buf, Offset(3), header, &records);
        buf[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
        buf[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&base_sequence.to_be_bytes());
        fix_crc(&mut buf);
        buf
    }

    #[test]
    fn garbage_transactional_or_control_batches_are_invalid() {
        const COMMIT_KEY: &[u8] = &[0, 0, 0, 1];
        const VALUE: &[u8] = &[0, 0, 0, 0, 0, 3];
        let control = 0x38;
        let good = patched(Some(COMMIT_KEY), VALUE, 1, control, -1);
        let marker = TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(3) };
        assert_eq!(
            decode_batch(&Bytes::from(good.clone()), 0, &mut Vec::new()).map(|b| b.kind),
            Ok(BatchKind::Marker(marker))
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("control without transactional", patched(Some(COMMIT_KEY), VALUE, 1, 0x28, -1)),
            ("two control records", patched(Some(COMMIT_KEY), VALUE, 2, control, -1)),
            ("control type 2 (leader change)", patched(Some(&[0, 0, 0, 2]), VALUE, 1, control, -1)),
            ("negative control type", patched(Some(&[0, 0, 0xff, 0xff]), VALUE, 1, control, -1)),
            ("key version 1", patched(Some(&[0, 1, 0, 1]), VALUE, 1, control, -1)),
            ("value version 1", patched(Some(COMMIT_KEY), &[0, 1, 0, 0, 0, 3], 1, control, -1)),
            ("short key", patched(Some(&[0, 0, 0]), VALUE, 1, control, -1)),
            ("long value", patched(Some(COMMIT_KEY), &[0, 0, 0, 0, 0, 3, 0], 1, control, -1)),
            ("null key", patched(None, VALUE, 1, control, -1)),
            ("negative coordinator epoch", patched(Some(COMMIT_KEY), &[0, 0, 0xff, 0xff, 0xff, 0xff], 1, control, -1)),
            ("marker with a sequence", patched(Some(COMMIT_KEY), VALUE, 1, control, 0)),
            ("data with sequence -1", patched(None, b"v", 1, 0x18, -1)),
            ("compressed transactional", patched(None, b"v", 1, 0x19, 0)),
            ("delete horizon", patched(None, b"v", 1, 0x48, 0)),
            ("control batch too long", patched(Some(COMMIT_KEY), &[7; MAX_CONTROL_BATCH_BYTES], 1, control, -1)),
        ];
        for (what, bytes) in cases {
            let file = Bytes::from(bytes.clone());
            let mut out = Vec::new();
            assert!(matches!(decode_batch(&file, 0, &mut out), Err(DecodeError::Invalid(_))), "{what}");
            assert!(out.is_empty(), "{what}");
            assert!(matches!(decode_header(&bytes), Err(DecodeError::Invalid(_))), "{what}: the header walk");
        }
        // A transactional batch without a producer.
        let mut buf = Vec::new();
        encode_batch(&mut buf, Offset(0), plain(1, 5), &[record(None, b"v")]);
        buf[ATTRIBUTES_POS + 1] |= 0x10;
        fix_crc(&mut buf);
        assert_eq!(decode_header(&buf), Err(DecodeError::Invalid("transactional batch without a producer")));
        // Every bit of a marker batch flipped (CRC fixed after): never a panic.
        for at in ATTRIBUTES_POS..good.len() {
            for bit in 0..8 {
                let mut flipped = good.clone();
                flipped[at] ^= 1 << bit;
                fix_crc(&mut flipped);
                let _ = decode_batch(&Bytes::from(flipped.clone()), 0, &mut Vec::new());
                let _ = decode_header(&flipped);
            }
        }
    }
}
