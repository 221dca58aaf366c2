//! Byte compatibility of ksim's log files with an independent implementation
//! of Kafka's record batch v2: the `kafka-protocol` crate (a dev-dependency
//! only), both ways.
//!
//! - ksim → Kafka: segments written by [`PartitionLog::append`] decode with
//!   kafka-protocol's `RecordBatchDecoder` (which verifies each batch's
//!   CRC-32C) to exactly the offsets, keys, values, timestamps and leader
//!   epochs appended, and each batch is byte-identical to the one
//!   kafka-protocol's encoder writes for the same records once it is marked
//!   LogAppendTime (the one header bit that encoder cannot set).
//! - Kafka → ksim: batches from kafka-protocol's encoder, written straight
//!   into segment files, are recovered by [`PartitionLog::open`] and read back.
//! - Corruption: a flipped byte anywhere under a batch's CRC is refused by
//!   both decoders.
//! - Idempotent producers: their id, epoch and base sequence travel in the
//!   batch header both ways (`idempotent_batches_carry_their_producer_both_ways`).
//! - Transactions: transactional batches (attribute bit 4) and transaction
//!   markers (control batches, bits 4 and 5, whose one record's key is the
//!   control type and value an `EndTxnMarker`, kafka-protocol's message for
//!   it) both ways (`transactional_and_control_batches_both_ways`).
//!
//! What ksim's codec accepts is narrower than Kafka's format: uncompressed
//! batches — plain, idempotent, transactional, or COMMIT/ABORT markers — with
//! dense offsets, non-null values and a real leader epoch.
//! `legal_kafka_batches_ksim_does_not_support` pins where that boundary lies.
//!
//! Differences between the two implementations that the tests work around:
//! - kafka-protocol's encoder always writes CreateTime batches (it never sets
//!   attribute bit 3) and its decoder always returns `base timestamp + delta`,
//!   whereas Kafka's readers return the batch's max timestamp for every record
//!   of a LogAppendTime batch. ksim writes LogAppendTime batches with base =
//!   max timestamp and zero deltas, so both rules give the same answer for
//!   them; the max timestamp field, which kafka-protocol skips, is checked
//!   from the raw bytes.
//! - kafka-protocol's decoder does not check a batch's last offset delta nor
//!   that the records fill the batch exactly; the byte-for-byte comparison
//!   with its encoder covers those.

use broker_core::log::{AppendCheck, FlushPolicy, LogConfig, LogError, PartitionLog};
use broker_core::plant::Plants;
use broker_core::storage::{MemStorage, Storage};
use broker_core::types::{
    AbortedTxn, BatchKind, LeaderEpoch, Offset, ProducerEpoch, ProducerId, ProducerStamp, Record, StoredRecord,
    TxnMarker,
};
use bytes::Bytes;
use kafka_protocol::messages::EndTxnMarker;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::{
    BatchDecodeInfo, Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

const DIR: &str = "t0-0";

/// Offsets of the v2 header fields (Kafka's `DefaultRecordBatch`).
const EPOCH_POS: usize = 12;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TIMESTAMP_POS: usize = 27;
const MAX_TIMESTAMP_POS: usize = 35;
const PRODUCER_ID_POS: usize = 43;
const PRODUCER_EPOCH_POS: usize = 51;
const BASE_SEQUENCE_POS: usize = 53;
const BATCH_HEADER_BYTES: usize = 61;
const ATTR_LOG_APPEND_TIME: u8 = 0x08;

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        retention_bytes: None,
        retention_ms: None,
        flush: FlushPolicy::Never,
    }
}

/// `len` deterministic bytes, different per `seed`.
fn payload(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().unwrap())
}

fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

/// The `(path, base offset)` of every segment file under `DIR`, in order.
fn segment_files(storage: &MemStorage) -> Vec<(String, i64)> {
    let prefix = format!("{DIR}/");
    storage
        .list(&prefix)
        .into_iter()
        .filter_map(|path| {
            let stem = path.strip_prefix(&prefix)?.strip_suffix(".log")?;
            assert_eq!(stem.len(), 20, "segment name {path}");
            let base = stem.parse().unwrap();
            Some((path, base))
        })
        .collect()
}

/// Splits a segment file into its batches' bytes by their length fields.
fn split_batches(file: &[u8]) -> Vec<&[u8]> {
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < file.len() {
        let len = 12 + usize::try_from(be_i32(file, pos + 8)).unwrap();
        batches.push(&file[pos..pos + len]);
        pos += len;
    }
    assert_eq!(pos, file.len(), "the file ends inside a batch");
    batches
}

/// Recomputes the CRC-32C of a batch (over attributes .. end) into its header.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
    batch[CRC_POS..ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
}

/// A record for kafka-protocol's encoder with no producer id, epoch or
/// sequence (a non-idempotent producer). Its sequence is chosen so that the
/// batch's base sequence comes out as -1 (the encoder derives it from
/// `sequence - offset delta`).
fn kafka_record(
    offset: i64,
    offset_delta: i32,
    epoch: i32,
    timestamp: i64,
    key: Option<Bytes>,
    value: Bytes,
) -> KafkaRecord {
    KafkaRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: epoch,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: NO_SEQUENCE.wrapping_add(offset_delta),
        timestamp,
        key,
        value: Some(value),
        headers: Default::default(),
    }
}

/// kafka-protocol's encoding of `records` as exactly one v2 uncompressed batch.
fn kafka_encode(records: &[KafkaRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, records, &options).unwrap();
    let infos = RecordBatchDecoder::decode_batch_info(&mut Bytes::from(out.clone())).unwrap();
    assert_eq!(infos.len(), 1, "the encoder split the records into several batches");
    out
}

/// One `PartitionLog::append` call.
struct Appended {
    epoch: i32,
    now_ms: u64,
    records: Vec<Record>,
}

/// Batches with keys present, absent and empty; values from empty to 3000
/// bytes, around the 1- to 2-byte varint boundary (63/64) and the 2- to
/// 3-byte one (8191/8192 zig-zagged: 8192 is the first 3-byte length); two
/// leader epochs. Producer timestamps are deliberately unlike the append
/// times: ksim stamps LogAppendTime.
fn appended_batches() -> Vec<Appended> {
    let rec = |key: Option<&str>, value: Bytes| Record {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value,
        timestamp_ms: 42,
    };
    vec![
        Appended {
            epoch: 0,
            now_ms: 1_700_000_000_000,
            records: vec![rec(Some("k0"), payload(0, 0)), rec(None, payload(1, 1)), rec(Some(""), payload(63, 2))],
        },
        Appended { epoch: 0, now_ms: 1_700_000_000_001, records: vec![rec(None, payload(64, 3))] },
        Appended {
            epoch: 0,
            now_ms: 1_700_000_000_001,
            records: (0..70).map(|i| rec(Some(&format!("key-{i}")), payload(i, i as u8))).collect(),
        },
        // Rolls: pushes the first segment past `segment_bytes`.
        Appended {
            epoch: 3,
            now_ms: 1_700_000_000_500,
            records: vec![rec(Some("big"), payload(3_000, 4)), rec(None, payload(300, 5))],
        },
        Appended { epoch: 3, now_ms: 1_700_000_000_501, records: vec![rec(Some("last"), payload(8_192, 6))] },
        Appended { epoch: 3, now_ms: 1_700_000_000_502, records: vec![rec(None, payload(10, 7))] },
    ]
}

/// Appends `appended_batches()` through a fresh `PartitionLog`.
fn ksim_log() -> (PartitionLog, MemStorage, Vec<Appended>) {
    let mut storage = MemStorage::new();
    let mut log = PartitionLog::open(DIR, config(4_096), &Plants::none(), None, &mut storage).unwrap();
    let batches = appended_batches();
    let mut next = 0;
    for batch in &batches {
        let info = log.append(&mut storage, batch.now_ms, LeaderEpoch(batch.epoch), &batch.records).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (Offset(next), Offset(next + batch.records.len() as i64 - 1)));
        next += batch.records.len() as i64;
    }
    assert!(log.segment_count() >= 2, "the test must cover a roll");
    (log, storage, batches)
}

/// Checks every `.index` entry of a segment against its batches as Kafka lays
/// them out: 8 bytes, (last offset of the batch at the position relative to
/// the segment base, position), both u32 BE, strictly increasing.
fn check_index(storage: &MemStorage, log_path: &str, base: i64) {
    let file = storage.read(log_path).unwrap();
    let mut batch_at = std::collections::BTreeMap::new();
    let mut pos = 0;
    for batch in split_batches(&file) {
        let last = be_i64(batch, 0) + i64::from(be_i32(batch, LAST_OFFSET_DELTA_POS));
        batch_at.insert(pos as u32, last);
        pos += batch.len();
    }
    let index_path = log_path.replace(".log", ".index");
    let index = storage.read(&index_path).unwrap_or_else(|| panic!("{index_path} missing"));
    assert_eq!(index.len() % 8, 0, "{index_path} holds whole entries");
    let entries: Vec<(u32, u32)> = index.chunks(8).map(|e| (be_u32(e, 0), be_u32(e, 4))).collect();
    assert!(!entries.is_empty() || file.is_empty(), "{index_path} has no entry for a non-empty segment");
    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1), "{index_path} not increasing");
    for (relative, position) in entries {
        let last = batch_at.get(&position).unwrap_or_else(|| panic!("{index_path}: no batch at {position}"));
        assert_eq!(base + i64::from(relative), *last, "{index_path}: entry at {position}");
    }
}

/// Checks the batch header facts kafka-protocol exposes for a ksim batch.
fn check_ksim_header(info: &BatchDecodeInfo, base_offset: i64, appended: &Appended) {
    assert_eq!(info.version, 2);
    assert_eq!(info.min_offset, base_offset);
    assert_eq!(info.partition_leader_epoch, appended.epoch);
    assert_eq!(info.record_count, appended.records.len() as i32);
    assert_eq!(info.compression, Compression::None);
    assert_eq!(info.timestamp_type, TimestampType::LogAppend);
    assert_eq!(info.min_timestamp, appended.now_ms as i64);
    assert!(!info.transactional && !info.control && !info.delete_horizon);
    assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (-1, -1, -1));
}

#[test]
fn ksim_segments_decode_with_kafka_protocol() {
    let (log, storage, appended) = ksim_log();
    let files = segment_files(&storage);
    assert_eq!(files.len(), log.segment_count());
    assert!(files.len() >= 2);
    let mut expected = appended.iter();
    let mut next_offset = 0i64;
    for (path, base) in &files {
        let file = Bytes::from(storage.read(path).unwrap());
        // The decoder checks magic and CRC-32C of every batch; `decode_all`
        // must consume the file exactly.
        let infos = RecordBatchDecoder::decode_batch_info(&mut file.clone()).unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut file.clone()).unwrap();
        let raw = split_batches(&file);
        assert_eq!((infos.len(), sets.len()), (raw.len(), raw.len()));
        assert_eq!(*base, next_offset, "{path} is named by its first offset");
        for ((info, set), bytes) in infos.iter().zip(&sets).zip(raw) {
            let want = expected.next().expect("more batches than appended");
            check_ksim_header(info, next_offset, want);
            assert_eq!((set.version, set.compression), (2, Compression::None));
            // Fields kafka-protocol skips, and an independent CRC.
            assert_eq!(bytes[MAGIC_POS], 2);
            assert_eq!(be_i32(bytes, LAST_OFFSET_DELTA_POS), want.records.len() as i32 - 1);
            assert_eq!(be_i64(bytes, BASE_TIMESTAMP_POS), want.now_ms as i64);
            assert_eq!(be_i64(bytes, MAX_TIMESTAMP_POS), want.now_ms as i64);
            assert_eq!(be_u32(bytes, CRC_POS), crc32c::crc32c(&bytes[ATTRIBUTES_POS..]));
            assert_eq!(set.records.len(), want.records.len());
            for (i, (got, sent)) in set.records.iter().zip(&want.records).enumerate() {
                let offset = next_offset + i as i64;
                assert_eq!(got.offset, offset);
                assert_eq!(got.key, sent.key, "key of offset {offset}");
                assert_eq!(got.value.as_ref(), Some(&sent.value), "value of offset {offset}");
                assert_eq!(got.timestamp, want.now_ms as i64, "LogAppendTime of offset {offset}");
                assert_eq!(got.partition_leader_epoch, want.epoch);
                assert!(got.headers.is_empty());
            }
            // Byte for byte what kafka-protocol writes for the same records,
            // once marked LogAppendTime (which its encoder cannot do).
            let records: Vec<KafkaRecord> = want
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let offset = next_offset + i as i64;
                    kafka_record(offset, i as i32, want.epoch, want.now_ms as i64, r.key.clone(), r.value.clone())
                })
                .collect();
            let mut theirs = kafka_encode(&records);
            theirs[ATTRIBUTES_POS + 1] |= ATTR_LOG_APPEND_TIME;
            fix_crc(&mut theirs);
            assert_eq!(bytes, &theirs[..], "batch at offset {next_offset} differs from kafka-protocol's");
            next_offset += want.records.len() as i64;
        }
        check_index(&storage, path, *base);
    }
    assert!(expected.next().is_none(), "appended batches missing from the files");
    assert_eq!(log.log_end_offset(), Offset(next_offset));

    // And ksim reads back what kafka-protocol decoded.
    let read = log.read(&storage, Offset(0), log.log_end_offset(), u32::MAX).unwrap();
    let want: Vec<StoredRecord> = appended
        .iter()
        .flat_map(|a| a.records.iter().map(move |r| (a, r)))
        .enumerate()
        .map(|(i, (a, r))| StoredRecord {
            offset: Offset(i as i64),
            timestamp_ms: a.now_ms,
            leader_epoch: LeaderEpoch(a.epoch),
            key: r.key.clone(),
            value: r.value.clone(),
            producer: None,
            kind: broker_core::types::BatchKind::Data,
        })
        .collect();
    assert_eq!(read, want);
}

/// One batch as a Kafka writer makes it: CreateTime, timestamps not in
/// order (kafka-protocol bases them on the smallest, so deltas vary).
struct KafkaBatch {
    epoch: i32,
    /// (timestamp, key, value) per record.
    records: Vec<(i64, Option<Bytes>, Bytes)>,
}

fn kafka_batches() -> Vec<KafkaBatch> {
    let key = |k: &str| Some(Bytes::copy_from_slice(k.as_bytes()));
    vec![
        KafkaBatch {
            epoch: 0,
            records: vec![
                (5_000, key("a"), payload(0, 10)),
                (5_003, None, payload(64, 11)),
                (4_999, key(""), payload(300, 12)),
            ],
        },
        KafkaBatch { epoch: 0, records: vec![(6_000, None, payload(10_000, 13))] },
        KafkaBatch {
            epoch: 2,
            records: (0..5).map(|i| (7_000 + i * 1_000_000, key(&format!("k{i}")), payload(i as usize, 14))).collect(),
        },
        // Second segment file.
        KafkaBatch { epoch: 2, records: vec![(1_700_000_000_000, key("x"), payload(127, 15))] },
        KafkaBatch {
            epoch: 5,
            records: vec![(1_700_000_000_100, None, payload(1, 16)), (1_700_000_000_050, key("y"), payload(2, 17))],
        },
    ]
}

/// The batches encoded by kafka-protocol at offsets from 0, split into
/// segment files before batch `second_segment_from`, appended to `storage`.
/// Returns the expected records.
fn write_kafka_segments(
    storage: &mut MemStorage,
    batches: &[KafkaBatch],
    second_segment_from: usize,
) -> Vec<StoredRecord> {
    let mut expected = Vec::new();
    let mut segment = format!("{DIR}/{:020}.log", 0);
    for (b, batch) in batches.iter().enumerate() {
        let base = expected.len() as i64;
        if b == second_segment_from {
            segment = format!("{DIR}/{base:020}.log");
        }
        let records: Vec<KafkaRecord> = batch
            .records
            .iter()
            .enumerate()
            .map(|(i, (ts, k, v))| kafka_record(base + i as i64, i as i32, batch.epoch, *ts, k.clone(), v.clone()))
            .collect();
        storage.append(&segment, &kafka_encode(&records)).unwrap();
        for (i, (ts, key, value)) in batch.records.iter().enumerate() {
            expected.push(StoredRecord {
                offset: Offset(base + i as i64),
                timestamp_ms: *ts as u64,
                leader_epoch: LeaderEpoch(batch.epoch),
                key: key.clone(),
                value: value.clone(),
                producer: None,
                kind: broker_core::types::BatchKind::Data,
            });
        }
    }
    expected
}

#[test]
fn kafka_protocol_batches_recover_and_read_in_ksim() {
    let mut storage = MemStorage::new();
    let batches = kafka_batches();
    let expected = write_kafka_segments(&mut storage, &batches, 3);
    let files_before: Vec<_> =
        segment_files(&storage).into_iter().map(|(p, _)| (p.clone(), storage.read(&p))).collect();

    let mut log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.log_end_offset(), Offset(expected.len() as i64));
    // Recovery kept every byte (nothing truncated) and wrote Kafka-layout indexes.
    for (path, bytes) in &files_before {
        assert_eq!(&storage.read(path), bytes, "recovery changed {path}");
    }
    for (path, base) in segment_files(&storage) {
        check_index(&storage, &path, base);
    }
    let epochs: Vec<(i32, i64)> = log.epoch_cache().entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect();
    assert_eq!(epochs, [(0, 0), (2, 4), (5, 10)]);

    // CreateTime: every record keeps its own timestamp (base + delta).
    let read = log.read(&storage, Offset(0), log.log_end_offset(), u32::MAX).unwrap();
    assert_eq!(read, expected);
    // Reads that start inside a Kafka-written batch.
    for from in 0..expected.len() {
        let tail = log.read(&storage, Offset(from as i64), log.log_end_offset(), u32::MAX).unwrap();
        assert_eq!(tail, expected[from..], "read from {from}");
    }

    // ksim continues the log, and the mixed file still decodes as Kafka's.
    let more = [Record { key: None, value: payload(5, 18), timestamp_ms: 0 }];
    let info = log.append(&mut storage, 1_800_000_000_000, LeaderEpoch(5), &more).unwrap();
    assert_eq!(info.base_offset, Offset(expected.len() as i64));
    let (last_path, _) = segment_files(&storage).pop().unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(storage.read(&last_path).unwrap())).unwrap();
    let offsets: Vec<i64> = sets.iter().flat_map(|s| s.records.iter().map(|r| r.offset)).collect();
    assert_eq!(offsets, [9, 10, 11, 12]);
    let appended = &sets.last().unwrap().records[0];
    assert_eq!((appended.timestamp, appended.partition_leader_epoch), (1_800_000_000_000, 5));
    assert_eq!(appended.timestamp_type, TimestampType::LogAppend);
}

/// A Kafka broker configured with `log.message.timestamp.type=LogAppendTime`
/// rewrites a producer's batch in place: attribute bit 3, max timestamp = the
/// append time, new CRC; base timestamp and deltas stay. Kafka's readers then
/// give every record the max timestamp. kafka-protocol's encoder cannot make
/// such a batch, so the test patches one it made.
#[test]
fn kafka_log_append_time_batch_reads_as_its_max_timestamp() {
    let mut storage = MemStorage::new();
    let records = [
        kafka_record(0, 0, 1, 5_000, None, payload(3, 20)),
        kafka_record(1, 1, 1, 5_007, Some(Bytes::from_static(b"k")), payload(200, 21)),
    ];
    let mut batch = kafka_encode(&records);
    batch[ATTRIBUTES_POS + 1] |= ATTR_LOG_APPEND_TIME;
    batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&9_999i64.to_be_bytes());
    fix_crc(&mut batch);
    storage.append(&format!("{DIR}/{:020}.log", 0), &batch).unwrap();

    let log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    assert_eq!(log.log_end_offset(), Offset(2));
    let read = log.read(&storage, Offset(0), Offset(2), u32::MAX).unwrap();
    let timestamps: Vec<u64> = read.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(timestamps, [9_999, 9_999]);
    assert_eq!(read[1].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(read[1].value, payload(200, 21));
    // kafka-protocol accepts the batch too (but reports base + delta).
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(batch)).unwrap();
    assert_eq!(sets[0].records[0].timestamp_type, TimestampType::LogAppend);
}

/// Flips each byte under the CRC (the CRC field itself, the header from the
/// attributes on, every record byte) of the first two batches of a
/// ksim-written segment: kafka-protocol's decoder reports a CRC failure, a
/// ksim read of the batch is `Corrupt` with a CRC mismatch, and recovery
/// keeps the log only up to the batch before. (Base offset, length, leader
/// epoch and magic are outside the CRC in Kafka's format too.)
#[test]
fn corrupt_batch_is_refused_by_both() {
    let (log, storage, _) = ksim_log();
    let (path, _) = segment_files(&storage).remove(0);
    let file = storage.read(&path).unwrap();
    let batches = split_batches(&file);
    let mut batch_pos = 0;
    let mut flips = 0;
    for batch in &batches[..2] {
        let base_offset = Offset(be_i64(batch, 0));
        assert!(batch.len() > BATCH_HEADER_BYTES + 10);
        for at in CRC_POS..batch.len() {
            let mut corrupt = storage.clone();
            let mut bytes = file.clone();
            bytes[batch_pos + at] ^= 0x20;
            corrupt.write_all(&path, &bytes).unwrap();

            let err = RecordBatchDecoder::decode_all(&mut Bytes::from(bytes.clone())).unwrap_err();
            assert!(err.to_string().contains("Cyclic redundancy check failed"), "kafka-protocol at {at}: {err}");

            match log.read(&corrupt, base_offset, log.log_end_offset(), u32::MAX) {
                Err(LogError::Corrupt { file, detail }) => {
                    assert_eq!(file, path);
                    assert!(detail.contains("CRC-32C mismatch"), "ksim at {at}: {detail}");
                }
                other => panic!("ksim read a batch with byte {at} flipped: {other:?}"),
            }

            let reopened = PartitionLog::open(DIR, config(4_096), &Plants::none(), None, &mut corrupt).unwrap();
            assert_eq!(reopened.log_end_offset(), base_offset, "recovery with byte {at} flipped");
            assert_eq!(corrupt.len(&path), Some(batch_pos as u64), "recovery cuts the file at the bad batch");
            assert_eq!(segment_files(&corrupt).len(), 1, "recovery drops the later segments");
            flips += 1;
        }
        batch_pos += batch.len();
    }
    assert!(flips > 200);

    // The leader epoch is outside the CRC in Kafka's format: a changed epoch
    // passes both decoders (ksim's recovery refuses one only if it goes back).
    let (last_path, _) = segment_files(&storage).pop().unwrap();
    let mut corrupt = storage.clone();
    let mut bytes = corrupt.read(&last_path).unwrap();
    let last_batch_pos = bytes.len() - split_batches(&bytes).last().unwrap().len();
    bytes[last_batch_pos + EPOCH_POS..][..4].copy_from_slice(&9i32.to_be_bytes());
    corrupt.write_all(&last_path, &bytes).unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(bytes)).unwrap();
    assert_eq!(sets.last().unwrap().records[0].partition_leader_epoch, 9);
    let reopened = PartitionLog::open(DIR, config(4_096), &Plants::none(), None, &mut corrupt).unwrap();
    assert_eq!(reopened.log_end_offset(), log.log_end_offset());
    assert_eq!(reopened.latest_epoch(), Some(LeaderEpoch(9)));
}

/// Legal Kafka v2 batches, from kafka-protocol's encoder, that ksim's codec
/// refuses. These are features ksim does not implement, not encoding bugs:
/// ksim has idempotent producers (Kafka >= 3.0's default, accepted: see
/// `idempotent_batches_carry_their_producer_both_ways`) and transactions
/// (accepted: see `transactional_and_control_batches_both_ways`), but no
/// control records other than COMMIT and ABORT (KRaft's leader-change
/// records, which a partition log never holds), no compaction, no
/// tombstones and no record headers (nor compression, which needs
/// kafka-protocol features this test leaves off). Recovery treats a batch it
/// refuses as corruption and keeps the log up to the batch before, so a
/// segment written by a real Kafka broker with any of these would be cut
/// there. Headers are the one lossy case: accepted, and dropped on read.
#[test]
fn legal_kafka_batches_ksim_does_not_support() {
    let plain = |offset: i64, delta: i32| kafka_record(offset, delta, 0, 1_000, None, payload(8, 30));
    // A control record of type 2 (LEADER_CHANGE), in a transactional control batch.
    let leader_change = KafkaRecord {
        key: Some(Bytes::from_static(&[0, 0, 0, 2])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        ..control_record(0, true, 7, 0)
    };
    let refused: Vec<(&str, Vec<KafkaRecord>)> = vec![
        ("leader change control record", vec![leader_change]),
        (
            "control batch outside a transaction",
            vec![KafkaRecord { transactional: false, ..control_record(0, true, 7, 0) }],
        ),
        ("null value (tombstone)", vec![KafkaRecord { value: None, ..plain(0, 0) }]),
        // A compacted batch keeps its offsets: 0 and 2 with 1 cleaned away.
        ("offsets with a gap (compacted)", vec![plain(0, 0), plain(2, 2)]),
        ("no leader epoch (-1)", vec![KafkaRecord { partition_leader_epoch: -1, ..plain(0, 0) }]),
    ];
    for (what, records) in refused {
        let mut storage = MemStorage::new();
        let path = format!("{DIR}/{:020}.log", 0);
        let good = kafka_encode(&[plain(0, 0)]);
        let mut shifted = records.clone();
        for r in &mut shifted {
            r.offset += 1; // after one supported batch
        }
        storage.append(&path, &good).unwrap();
        storage.append(&path, &kafka_encode(&shifted)).unwrap();
        // kafka-protocol itself reads the batch fine...
        let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(storage.read(&path).unwrap())).unwrap();
        assert_eq!(sets.len(), 2, "{what}");
        // ...ksim keeps only the batch before it.
        let log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
        assert_eq!(log.log_end_offset(), Offset(1), "{what}");
        assert_eq!(storage.len(&path), Some(good.len() as u64), "{what}");
    }

    let mut with_header = plain(0, 0);
    with_header.headers.insert("trace".into(), Some(Bytes::from_static(b"abc")));
    let mut storage = MemStorage::new();
    storage.append(&format!("{DIR}/{:020}.log", 0), &kafka_encode(&[with_header])).unwrap();
    let log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    let read = log.read(&storage, Offset(0), Offset(1), u32::MAX).unwrap();
    assert_eq!((read.len(), &read[0].value), (1, &payload(8, 30)), "headers are skipped, the record kept");
}

/// A record of an idempotent batch from producer id 7, epoch 3, whose
/// sequences start at 10 at the batch's first record (`offset_delta` 0).
fn idempotent_record(offset: i64, offset_delta: i32, epoch: i32, timestamp: i64, value: Bytes) -> KafkaRecord {
    let plain = kafka_record(offset, offset_delta, epoch, timestamp, None, value);
    KafkaRecord { producer_id: 7, producer_epoch: 3, sequence: 10 + offset_delta, ..plain }
}

/// Idempotent, non-transactional batches (what Kafka >= 3.0 producers write
/// by default) both ways. Kafka → ksim: a batch kafka-protocol encodes for
/// producer id 7, epoch 3, base sequence 10 recovers, reads with that
/// producer on every record, and is in the recovered producer state (a
/// retry of it is a duplicate). ksim → Kafka: a batch appended from that
/// producer decodes in kafka-protocol with its id, epoch and the sequences
/// 10, 11, 12, and is byte for byte kafka-protocol's own once marked
/// LogAppendTime.
#[test]
fn idempotent_batches_carry_their_producer_both_ways() {
    let stamp = ProducerStamp { id: ProducerId(7), epoch: ProducerEpoch(3), base_sequence: 10 };

    let theirs: Vec<KafkaRecord> =
        (0..3).map(|i| idempotent_record(i, i as i32, 1, 5_000 + i, payload(4, 40))).collect();
    let batch = kafka_encode(&theirs);
    let header =
        (be_i64(&batch, PRODUCER_ID_POS), &batch[PRODUCER_EPOCH_POS..][..2], be_i32(&batch, BASE_SEQUENCE_POS));
    assert_eq!(header, (7, &3i16.to_be_bytes()[..], 10), "fixture: the header kafka-protocol wrote");
    let mut storage = MemStorage::new();
    storage.append(&format!("{DIR}/{:020}.log", 0), &batch).unwrap();
    let log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    assert_eq!(log.log_end_offset(), Offset(3), "recovery keeps the batch");
    let want: Vec<StoredRecord> = (0..3)
        .map(|i| StoredRecord {
            offset: Offset(i),
            timestamp_ms: 5_000 + i as u64,
            leader_epoch: LeaderEpoch(1),
            key: None,
            value: payload(4, 40),
            producer: Some(stamp),
            kind: broker_core::types::BatchKind::Data,
        })
        .collect();
    assert_eq!(log.read(&storage, Offset(0), Offset(3), u32::MAX).unwrap(), want);
    let duplicate = AppendCheck::Duplicate { first_offset: Offset(0), last_offset: Offset(2) };
    assert_eq!(log.check_producer(stamp, 3), duplicate);

    let mut storage = MemStorage::new();
    let mut log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    let now_ms = 1_700_000_000_000;
    let plain = [Record { key: None, value: payload(2, 41), timestamp_ms: 0 }];
    log.append(&mut storage, now_ms, LeaderEpoch(1), &plain).unwrap();
    let ours: Vec<Record> = (0..3).map(|i| Record { key: None, value: payload(4, 42 + i), timestamp_ms: 0 }).collect();
    let info = log.append_from(&mut storage, now_ms, LeaderEpoch(1), Some(stamp), &ours).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (Offset(1), Offset(3)));
    let (path, _) = segment_files(&storage).remove(0);
    let file = storage.read(&path).unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(file.clone())).unwrap();
    let decoded: Vec<&KafkaRecord> = sets.iter().flat_map(|s| &s.records).collect();
    assert_eq!(decoded[0].producer_id, NO_PRODUCER_ID, "the plain batch has no producer");
    for (i, record) in decoded[1..].iter().enumerate() {
        let got = (record.producer_id, record.producer_epoch, record.sequence, record.transactional);
        assert_eq!(got, (7, 3, 10 + i as i32, false), "record at offset {}", record.offset);
        assert_eq!(record.value.as_ref(), Some(&ours[i].value));
    }
    let expected: Vec<KafkaRecord> =
        (0..3).map(|i| idempotent_record(1 + i, i as i32, 1, now_ms as i64, ours[i as usize].value.clone())).collect();
    let mut theirs = kafka_encode(&expected);
    theirs[ATTRIBUTES_POS + 1] |= ATTR_LOG_APPEND_TIME;
    fix_crc(&mut theirs);
    assert_eq!(split_batches(&file)[1], &theirs[..], "the idempotent batch differs from kafka-protocol's");
}

/// A transactional record of producer 7 (epoch `epoch`) whose sequence is
/// `sequence` (a batch's base sequence: that of its first record).
fn transactional_record(offset: i64, sequence: i32, epoch: i16, timestamp: i64, value: Bytes) -> KafkaRecord {
    let plain = kafka_record(offset, 0, 1, timestamp, None, value);
    KafkaRecord { transactional: true, producer_id: 7, producer_epoch: epoch, sequence, ..plain }
}

/// The control record of a transaction marker as Kafka writes it: key
/// `[version 0][type: 0 ABORT, 1 COMMIT]`, value `[version 0]` then an
/// `EndTxnMarker` (version 0: the coordinator epoch), all i16/i32 big-endian.
fn control_record(offset: i64, commit: bool, coordinator_epoch: i32, timestamp: i64) -> KafkaRecord {
    let mut value = 0i16.to_be_bytes().to_vec();
    EndTxnMarker::default().with_coordinator_epoch(coordinator_epoch).encode(&mut value, 0).unwrap();
    let key = [0i16.to_be_bytes(), i16::from(commit).to_be_bytes()].concat();
    KafkaRecord {
        transactional: true,
        control: true,
        producer_id: 7,
        producer_epoch: 3,
        sequence: NO_SEQUENCE,
        ..kafka_record(offset, 0, 1, timestamp, Some(key.into()), value.into())
    }
}

/// The marker a control record holds, parsed with kafka-protocol's `EndTxnMarker`.
fn parse_control(record: &KafkaRecord) -> (bool, i32) {
    let key = record.key.as_ref().expect("a control record has a key");
    assert_eq!((key.len(), &key[..2]), (4, &[0u8, 0][..]), "key version 0");
    let commit = match key[2..] {
        [0, 0] => false,
        [0, 1] => true,
        _ => panic!("not a transaction marker: {key:?}"),
    };
    let mut value = record.value.clone().expect("a control record has a value");
    assert_eq!(&value[..2], &[0, 0], "value version 0");
    let mut body = value.split_off(2);
    let marker = EndTxnMarker::decode(&mut body, 0).unwrap();
    assert!(body.is_empty(), "nothing after the EndTxnMarker");
    (commit, marker.coordinator_epoch)
}

/// Transactions both ways. Kafka → ksim: a transaction of producer 7 in two
/// batches and its COMMIT (coordinator epoch 5), then one batch and its
/// ABORT, then a batch of a transaction left open, all from kafka-protocol's
/// encoder, recover in ksim (validated, and walked below a recovery
/// point) and read with their kinds; the log knows the open transaction
/// (LSO) and the aborted one. ksim → Kafka: `append_transactional` and
/// `append_marker` batches decode in kafka-protocol with the transactional
/// and control attributes, the producer's id, epoch and sequences (-1 for
/// the marker), and the control key and value, and are byte for byte
/// kafka-protocol's own once marked LogAppendTime.
#[test]
fn transactional_and_control_batches_both_ways() {
    let value = |seed: u8| payload(3, 50 + seed);
    let theirs: Vec<Vec<KafkaRecord>> = vec![
        vec![transactional_record(0, 0, 3, 5_000, value(0)), transactional_record(1, 1, 3, 5_001, value(1))],
        vec![transactional_record(2, 2, 3, 5_002, value(2))],
        vec![control_record(3, true, 5, 5_003)],
        vec![transactional_record(4, 3, 3, 5_004, value(3))],
        vec![control_record(5, false, 5, 5_005)],
        vec![transactional_record(6, 4, 3, 5_006, value(4))],
    ];
    let mut storage = MemStorage::new();
    for records in &theirs {
        storage.append(&format!("{DIR}/{:020}.log", 0), &kafka_encode(records)).unwrap();
    }
    let stamp = |base_sequence| Some(ProducerStamp { id: ProducerId(7), epoch: ProducerEpoch(3), base_sequence });
    let commit = TxnMarker { commit: true, coordinator_epoch: LeaderEpoch(5) };
    let abort = TxnMarker { commit: false, coordinator_epoch: LeaderEpoch(5) };
    let (txn, control) = (BatchKind::Transactional, |m| BatchKind::Marker(m));
    let want = [
        (stamp(0), txn),
        (stamp(0), txn),
        (stamp(2), txn),
        (stamp(-1), control(commit)),
        (stamp(3), txn),
        (stamp(-1), control(abort)),
        (stamp(4), txn),
    ];
    let recovered = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    let read = recovered.read(&storage, Offset(0), Offset(7), u32::MAX).unwrap();
    assert_eq!(read.iter().map(|r| (r.producer, r.kind)).collect::<Vec<_>>(), want);
    assert_eq!(read[0].value, value(0));
    let walked = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), Some(Offset(7)), &mut storage).unwrap();
    assert_eq!(walked.recovery_stats().segments_walked, 1, "the header walk reads the markers");
    for log in [&recovered, &walked] {
        assert_eq!(log.read(&storage, Offset(0), Offset(7), u32::MAX).unwrap(), read);
        assert!(log.has_open_txn(ProducerId(7)), "the last transaction is open");
        assert_eq!((log.last_stable_offset(Offset(7)), log.last_stable_offset(Offset(5))), (Offset(6), Offset(4)));
        let aborted = AbortedTxn { producer_id: ProducerId(7), first_offset: Offset(4), last_offset: Offset(5) };
        assert_eq!(log.aborted_txns(Offset(0), Offset(7)), [aborted]);
        assert_eq!(
            log.check_marker(
                ProducerId(7),
                ProducerEpoch(3),
                TxnMarker { coordinator_epoch: LeaderEpoch(4), ..commit }
            ),
            Err(broker_core::protocol::ErrorCode::TransactionCoordinatorFenced)
        );
    }

    let mut storage = MemStorage::new();
    let mut log = PartitionLog::open(DIR, config(1 << 20), &Plants::none(), None, &mut storage).unwrap();
    let now_ms = 1_700_000_000_000;
    let ours: Vec<Record> = (0..2).map(|i| Record { key: None, value: value(10 + i), timestamp_ms: 0 }).collect();
    let producer = ProducerStamp { id: ProducerId(7), epoch: ProducerEpoch(3), base_sequence: 10 };
    log.append_transactional(&mut storage, now_ms, LeaderEpoch(1), producer, &ours).unwrap();
    log.append_marker(&mut storage, now_ms, LeaderEpoch(1), ProducerId(7), ProducerEpoch(3), commit).unwrap();
    let (path, _) = segment_files(&storage).remove(0);
    let file = storage.read(&path).unwrap();
    let infos = RecordBatchDecoder::decode_batch_info(&mut Bytes::from(file.clone())).unwrap();
    let flags: Vec<_> =
        infos.iter().map(|i| (i.transactional, i.control, i.producer_id, i.producer_epoch, i.base_sequence)).collect();
    assert_eq!(flags, [(true, false, 7, 3, 10), (true, true, 7, 3, -1)]);
    let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(file.clone())).unwrap();
    let records: Vec<&KafkaRecord> = sets.iter().flat_map(|s| &s.records).collect();
    for (i, record) in records[..2].iter().enumerate() {
        let got = (record.transactional, record.control, record.producer_id, record.producer_epoch, record.sequence);
        assert_eq!(got, (true, false, 7, 3, 10 + i as i32));
        assert_eq!(record.value.as_ref(), Some(&ours[i].value));
    }
    let marker = records[2];
    assert_eq!((marker.transactional, marker.control, marker.producer_id, marker.sequence), (true, true, 7, -1));
    assert_eq!((marker.offset, parse_control(marker)), (2, (true, 5)));
    // Byte for byte kafka-protocol's, once marked LogAppendTime.
    let expected = [
        vec![
            transactional_record(0, 10, 3, now_ms as i64, ours[0].value.clone()),
            KafkaRecord {
                offset: 1,
                sequence: 11,
                ..transactional_record(0, 10, 3, now_ms as i64, ours[1].value.clone())
            },
        ],
        vec![control_record(2, true, 5, now_ms as i64)],
    ];
    for (batch, records) in split_batches(&file).into_iter().zip(expected) {
        let mut theirs = kafka_encode(&records);
        theirs[ATTRIBUTES_POS + 1] |= ATTR_LOG_APPEND_TIME;
        fix_crc(&mut theirs);
        assert_eq!(batch, &theirs[..], "a batch differs from kafka-protocol's");
    }
}
