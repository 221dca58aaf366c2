//! Group state as records of `__consumer_offsets`, in the shape of Kafka's
//! (`GroupMetadataManager`): a key names what the record is about — key
//! version 1 an offset (group, topic, partition), version 2 a group's
//! metadata (group) — and the latest record of a key wins when a new
//! coordinator replays the log. Big-endian, strings as an i16 length and
//! UTF-8, nullable strings with length -1, as Kafka writes them; topics are
//! ksim's numeric ids (u16) where Kafka writes names.

use super::api::CommittedOffset;
use super::{Assignment, AssignorKind, GenerationId, GroupId, InstanceId, MemberId, Subscription};
use crate::types::{LeaderEpoch, Offset, Record, StoredRecord, TopicId, TopicPartition};
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Longest string a record holds (Kafka's i16 length).
pub const MAX_STRING_BYTES: usize = i16::MAX as usize;
/// Most members, topics or partitions one record lists.
pub const MAX_LIST_LEN: usize = 1 << 20;

/// One member of a generation, as its group's metadata record keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member: MemberId,
    pub instance: Option<InstanceId>,
    pub client_id: Arc<str>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// For the generation's protocol.
    pub subscription: Subscription,
    pub assignment: Assignment,
}

/// A group's state as of a completed rebalance (or an emptied group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadata {
    pub generation: GenerationId,
    pub protocol: Option<AssignorKind>,
    pub leader: Option<MemberId>,
    /// Sorted by member id.
    pub members: Vec<MemberMetadata>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRecord {
    Offset { group: GroupId, tp: TopicPartition, committed: CommittedOffset },
    Metadata { group: GroupId, metadata: GroupMetadata },
}

impl GroupRecord {
    pub fn group(&self) -> &GroupId {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Metadata { group, .. } => group,
        }
    }

    /// The record to append, stamped `now_ms`.
    pub fn encode(&self, now_ms: u64) -> Record {
        let mut key = Writer::default();
        let mut value = Writer::default();
        match self {
            GroupRecord::Offset { group, tp, committed } => {
                key.i16(OFFSET_KEY_VERSION);
                key.string(&group.0);
                key.u16(tp.topic.0);
                key.i32(i32::try_from(tp.partition).expect("partition fits i32"));
                value.i16(OFFSET_VALUE_VERSION);
                value.i64(committed.offset.0);
                value.i32(committed.leader_epoch.0);
                value.string(""); // metadata
                value.i64(timestamp(now_ms));
            }
            GroupRecord::Metadata { group, metadata } => {
                key.i16(GROUP_KEY_VERSION);
                key.string(&group.0);
                value.i16(GROUP_VALUE_VERSION);
                value.string(CONSUMER_PROTOCOL_TYPE);
                value.i32(metadata.generation.0);
                value.nullable_string(metadata.protocol.map(|p| p.name()));
                value.nullable_string(metadata.leader.as_ref().map(|m| &*m.0));
                value.i64(timestamp(now_ms)); // current state timestamp
                value.len(metadata.members.len());
                for m in &metadata.members {
                    value.string(&m.member.0);
                    value.nullable_string(m.instance.as_ref().map(|i| &*i.0));
                    value.string(&m.client_id);
                    value.string(""); // client host
                    value.i32(millis(m.rebalance_timeout_ms));
                    value.i32(millis(m.session_timeout_ms));
                    value.subscription(&m.subscription);
                    value.assignment(&m.assignment);
                }
            }
        }
        Record { key: Some(Bytes::from(key.0)), value: Bytes::from(value.0), timestamp_ms: now_ms }
    }

    /// Reads a record of `__consumer_offsets` back.
    pub fn decode(record: &StoredRecord) -> Result<GroupRecord, RecordError> {
        let key = record.key.as_deref().ok_or(RecordError("a record without a key"))?;
        let mut key = Reader(key);
        let mut value = Reader(&record.value);
        let decoded = match key.i16()? {
            OFFSET_KEY_VERSION => {
                let group = GroupId(key.string()?);
                let topic = TopicId(key.u16()?);
                let partition = u32::try_from(key.i32()?).map_err(|_| RecordError("negative partition"))?;
                if value.i16()? != OFFSET_VALUE_VERSION {
                    return Err(RecordError("unknown offset value version"));
                }
                let offset = Offset(value.i64()?);
                let leader_epoch = LeaderEpoch(value.i32()?);
                value.string()?;
                value.i64()?;
                let committed = CommittedOffset { offset, leader_epoch };
                GroupRecord::Offset { group, tp: TopicPartition::new(topic, partition), committed }
            }
            GROUP_KEY_VERSION => {
                let group = GroupId(key.string()?);
                if value.i16()? != GROUP_VALUE_VERSION {
                    return Err(RecordError("unknown group value version"));
                }
                if &*value.string()? != CONSUMER_PROTOCOL_TYPE {
                    return Err(RecordError("not a consumer group"));
                }
                let generation = GenerationId(value.i32()?);
                let protocol = match value.nullable_string()? {
                    None => None,
                    Some(name) => Some(
                        AssignorKind::ALL
                            .iter()
                            .copied()
                            .find(|k| k.name() == &*name)
                            .ok_or(RecordError("unknown protocol"))?,
                    ),
                };
                let leader = value.nullable_string()?.map(MemberId);
                value.i64()?;
                let count = value.len()?;
                let mut members = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let member = MemberId(value.string()?);
                    let instance = value.nullable_string()?.map(InstanceId);
                    let client_id = value.string()?;
                    value.string()?;
                    let rebalance_timeout_ms = value.millis()?;
                    let session_timeout_ms = value.millis()?;
                    let subscription = value.subscription()?;
                    let assignment = value.assignment()?;
                    members.push(MemberMetadata {
                        member,
                        instance,
                        client_id,
                        session_timeout_ms,
                        rebalance_timeout_ms,
                        subscription,
                        assignment,
                    });
                }
                GroupRecord::Metadata { group, metadata: GroupMetadata { generation, protocol, leader, members } }
            }
            _ => return Err(RecordError("unknown key version")),
        };
        if !key.0.is_empty() || !value.0.is_empty() {
            return Err(RecordError("trailing bytes"));
        }
        Ok(decoded)
    }
}

/// Why a record of `__consumer_offsets` could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordError(pub &'static str);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad __consumer_offsets record: {}", self.0)
    }
}

pub(crate) fn timestamp(now_ms: u64) -> i64 {
    i64::try_from(now_ms).expect("timestamp fits i64")
}

fn millis(ms: u64) -> i32 {
    i32::try_from(ms).expect("timeouts are bounded below i32::MAX ms")
}

/// Big-endian fields in Kafka's record layout (shared with the transaction
/// coordinator's records).
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn len(&mut self, n: usize) {
        assert!(n <= MAX_LIST_LEN, "a list of {n} entries in a group record");
        self.i32(n as i32);
    }
    pub(crate) fn string(&mut self, s: &str) {
        assert!(s.len() <= MAX_STRING_BYTES, "a string of {} bytes in a group record", s.len());
        self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
    }
    pub(crate) fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
    pub(crate) fn partitions(&mut self, partitions: &[TopicPartition]) {
        // Grouped by topic, as the consumer protocol lists them.
        let topics = partitions.chunk_by(|a, b| a.topic == b.topic);
        self.len(topics.clone().count());
        for run in topics {
            self.u16(run[0].topic.0);
            self.len(run.len());
            for tp in run {
                self.i32(i32::try_from(tp.partition).expect("partition fits i32"));
            }
        }
    }
    /// The consumer protocol's Subscription (v2: owned partitions and generation).
    pub(crate) fn subscription(&mut self, s: &Subscription) {
        let mut inner = Writer::default();
        inner.i16(2);
        inner.len(s.topics.len());
        for t in &s.topics {
            inner.u16(t.0);
        }
        inner.i32(-1); // user data
        inner.partitions(&s.owned_partitions);
        inner.i32(s.generation.0);
        self.bytes(&inner.0);
    }
    pub(crate) fn assignment(&mut self, a: &Assignment) {
        let mut inner = Writer::default();
        inner.i16(0);
        inner.partitions(&a.partitions);
        inner.i32(-1); // user data
        self.bytes(&inner.0);
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.i32(i32::try_from(b.len()).expect("group record below 2 GiB"));
        self.0.extend_from_slice(b);
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    pub(crate) fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    pub(crate) fn millis(&mut self) -> Result<u64, RecordError> {
        u64::try_from(self.i32()?).map_err(|_| RecordError("negative timeout"))
    }
    pub(crate) fn len(&mut self) -> Result<usize, RecordError> {
        usize::try_from(self.i32()?)
            .ok()
            .filter(|&n| n <= MAX_LIST_LEN && n <= self.0.len())
            .ok_or(RecordError("bad list length"))
    }
    pub(crate) fn string(&mut self) -> Result<Arc<str>, RecordError> {
        self.nullable_string()?.ok_or(RecordError("null string"))
    }
    pub(crate) fn nullable_string(&mut self) -> Result<Option<Arc<str>>, RecordError> {
        let len = self.i16()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| RecordError("bad string length"))?;
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| RecordError("string not UTF-8"))?;
        Ok(Some(Arc::from(s)))
    }
    pub(crate) fn partitions(&mut self) -> Result<Vec<TopicPartition>, RecordError> {
        let mut out = Vec::new();
        for _ in 0..self.len()? {
            let topic = TopicId(self.u16()?);
            for _ in 0..self.len()? {
                let partition = u32::try_from(self.i32()?).map_err(|_| RecordError("negative partition"))?;
                out.push(TopicPartition::new(topic, partition));
            }
        }
        Ok(out)
    }
    pub(crate) fn bytes(&mut self) -> Result<Reader<'a>, RecordError> {
        let len = usize::try_from(self.i32()?).map_err(|_| RecordError("bad bytes length"))?;
        Ok(Reader(self.take(len)?))
    }
    pub(crate) fn subscription(&mut self) -> Result<Subscription, RecordError> {
        let mut inner = self.bytes()?;
        if inner.i16()? != 2 {
            return Err(RecordError("unknown subscription version"));
        }
        let mut topics = Vec::new();
        for _ in 0..inner.len()? {
            topics.push(TopicId(inner.u16()?));
        }
        if inner.i32()? != -1 {
            return Err(RecordError("subscription user data"));
        }
        let owned_partitions = inner.partitions()?;
        let generation = GenerationId(inner.i32()?);
        inner.end()?;
        Ok(Subscription { topics, owned_partitions, generation })
    }
    pub(crate) fn assignment(&mut self) -> Result<Assignment, RecordError> {
        let mut inner = self.bytes()?;
        if inner.i16()? != 0 {
            return Err(RecordError("unknown assignment version"));
        }
        let partitions = inner.partitions()?;
        if inner.i32()? != -1 {
            return Err(RecordError("assignment user data"));
        }
        inner.end()?;
        Ok(Assignment { partitions })
    }
    pub(crate) fn end(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(record: Record) -> StoredRecord {
        StoredRecord::stored(record, Offset(7), LeaderEpoch(1))
    }

    fn tp(topic: u16, partition: u32) -> TopicPartition {
        TopicPartition::new(TopicId(topic), partition)
    }

    #[test]
    fn offset_records_read_back() {
        let record = GroupRecord::Offset {
            group: GroupId::new("g"),
            tp: tp(3, 9),
            committed: CommittedOffset { offset: Offset(42), leader_epoch: LeaderEpoch(5) },
        };
        assert_eq!(GroupRecord::decode(&stored(record.encode(1_000))), Ok(record));
    }

    #[test]
    fn group_metadata_reads_back() {
        let member = |id: &str, instance: Option<&str>| MemberMetadata {
            member: MemberId::new(id),
            instance: instance.map(|i| InstanceId(Arc::from(i))),
            client_id: Arc::from("consumer-0"),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            subscription: Subscription {
                topics: vec![TopicId(0), TopicId(2)],
                owned_partitions: vec![tp(0, 1), tp(0, 3), tp(2, 0)],
                generation: GenerationId(4),
            },
            assignment: Assignment { partitions: vec![tp(0, 0), tp(2, 1), tp(2, 2)] },
        };
        let record = GroupRecord::Metadata {
            group: GroupId::new("orders"),
            metadata: GroupMetadata {
                generation: GenerationId(5),
                protocol: Some(AssignorKind::CooperativeSticky),
                leader: Some(MemberId::new("a")),
                members: vec![member("a", None), member("b", Some("static-1"))],
            },
        };
        assert_eq!(GroupRecord::decode(&stored(record.encode(9))), Ok(record));
        let empty = GroupRecord::Metadata {
            group: GroupId::new("orders"),
            metadata: GroupMetadata { generation: GenerationId(6), protocol: None, leader: None, members: Vec::new() },
        };
        assert_eq!(GroupRecord::decode(&stored(empty.encode(9))), Ok(empty));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let record = GroupRecord::Offset {
            group: GroupId::new("g"),
            tp: tp(0, 0),
            committed: CommittedOffset { offset: Offset(1), leader_epoch: LeaderEpoch(0) },
        }
        .encode(0);
        let mut s = stored(record);
        for cut in 0..s.value.len() {
            let short = StoredRecord { value: s.value.slice(..cut), ..s.clone() };
            assert!(GroupRecord::decode(&short).is_err(), "value cut at {cut}");
        }
        let key = s.key.clone().unwrap();
        for cut in 0..key.len() {
            s.key = Some(key.slice(..cut));
            assert!(GroupRecord::decode(&s).is_err(), "key cut at {cut}");
        }
        s.key = None;
        assert_eq!(GroupRecord::decode(&s), Err(RecordError("a record without a key")));
    }
}
