//! The controller's durable state in one small text file, rewritten whole
//! after every change:
//!
//! ```text
//! ksim-controller-metadata 3
//! next-broker-epoch 7
//! next-producer-id 2000
//! version 42
//! broker 0 epoch=3 fenced=false
//! partition t0-1 replicas=0,1,2 leader=0 leader-epoch=3 partition-epoch=5 isr=0,1 elr=2 last-unclean=false
//! crc32c 1a2b3c4d
//! ```
//!
//! Text so a failing seed's disk can be read by eye; key=value so a reader
//! can tell fields apart; a CRC-32C over every byte before the last line so a
//! torn or corrupt file is refused rather than silently read as less state
//! (which could hand out a broker epoch twice). The image's structural rules
//! are checked again on load.

use super::image::{BrokerState, MetadataImage, PartitionState};
use super::{MAX_BROKERS, MAX_PARTITIONS};
use crate::types::{BrokerEpoch, BrokerId, LeaderEpoch, TopicId, TopicPartition};
use std::collections::BTreeMap;
use std::fmt::Write;

const HEADER: &str = "ksim-controller-metadata 3";

/// Largest metadata file `decode` accepts: far above what `MAX_BROKERS`
/// brokers and `MAX_PARTITIONS` partitions of a few replicas need.
pub const MAX_METADATA_FILE_BYTES: usize = 64 << 20;

/// What survives a controller restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Durable {
    pub image: MetadataImage,
    /// The next broker epoch to hand out; above every epoch handed out so far.
    pub next_broker_epoch: BrokerEpoch,
    /// The first producer id of the next block handed out (KIP-730): above
    /// every id handed out so far, so no two producers share one.
    pub next_producer_id: i64,
}

pub(super) fn encode(state: &Durable) -> Vec<u8> {
    let mut out = String::new();
    let _ = writeln!(out, "{HEADER}");
    let _ = writeln!(out, "next-broker-epoch {}", state.next_broker_epoch.0);
    let _ = writeln!(out, "next-producer-id {}", state.next_producer_id);
    let _ = writeln!(out, "version {}", state.image.version);
    for (id, b) in &state.image.brokers {
        let _ = writeln!(out, "broker {} epoch={} fenced={}", id.0, b.epoch.0, b.fenced);
    }
    for (tp, p) in &state.image.partitions {
        let leader = p.leader.map_or("none".to_string(), |l| l.0.to_string());
        let _ = writeln!(
            out,
            "partition t{}-{} replicas={} leader={leader} leader-epoch={} partition-epoch={} isr={} elr={} last-unclean={}",
            tp.topic.0,
            tp.partition,
            ids(&p.replicas),
            p.leader_epoch.0,
            p.partition_epoch,
            ids(&p.isr),
            ids(&p.elr),
            p.last_member_unclean
        );
    }
    let crc = crc32c::crc32c(out.as_bytes());
    let _ = writeln!(out, "crc32c {crc:08x}");
    out.into_bytes()
}

fn ids(list: &[BrokerId]) -> String {
    list.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
}

/// Reads a file `encode` wrote. `Err` says what is wrong and on which line.
pub(super) fn decode(bytes: &[u8]) -> Result<Durable, String> {
    if bytes.len() > MAX_METADATA_FILE_BYTES {
        return Err(format!("{} bytes, more than the {MAX_METADATA_FILE_BYTES} allowed", bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let body = verify_crc(text)?;
    let mut lines = body.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, HEADER)) => {}
        other => return Err(format!("line 1: expected `{HEADER}`, found {:?}", other.map(|(_, l)| l))),
    }
    let next_broker_epoch = BrokerEpoch(scalar(lines.next(), "next-broker-epoch")?);
    let next_producer_id = scalar(lines.next(), "next-producer-id")?;
    let next_producer_id = i64::try_from(next_producer_id).map_err(|_| "next-producer-id beyond i64".to_string())?;
    let mut image = MetadataImage { version: scalar(lines.next(), "version")?, ..MetadataImage::default() };
    for (n, line) in lines {
        parse_line(&mut image, line).map_err(|e| format!("line {n}: {e}"))?;
    }
    image.check()?;
    if let Some((id, b)) = image.brokers.iter().find(|(_, b)| b.epoch >= next_broker_epoch) {
        return Err(format!("broker {id} has epoch {} but the next epoch is {}", b.epoch.0, next_broker_epoch.0));
    }
    Ok(Durable { image, next_broker_epoch, next_producer_id })
}

/// The text before the trailing `crc32c` line, if the checksum matches.
fn verify_crc(text: &str) -> Result<&str, String> {
    let trimmed = text.strip_suffix('\n').ok_or("no final newline (torn write?)")?;
    let start = trimmed.rfind('\n').map_or(0, |i| i + 1);
    let stored = trimmed[start..].strip_prefix("crc32c ").ok_or("last line is not the checksum (torn write?)")?;
    let stored = u32::from_str_radix(stored, 16).map_err(|e| format!("bad checksum `{stored}`: {e}"))?;
    let body = &text[..start];
    let actual = crc32c::crc32c(body.as_bytes());
    if stored != actual {
        return Err(format!("checksum mismatch: stored {stored:08x}, computed {actual:08x}"));
    }
    Ok(body)
}

fn scalar(line: Option<(usize, &str)>, key: &str) -> Result<u64, String> {
    let (n, line) = line.ok_or(format!("missing `{key}` line"))?;
    let value =
        line.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).ok_or(format!("line {n}: expected `{key}`"))?;
    value.parse().map_err(|e| format!("line {n}: {key}: {e}"))
}

fn parse_line(image: &mut MetadataImage, line: &str) -> Result<(), String> {
    let mut words = line.split(' ');
    let kind = words.next().unwrap_or_default();
    let name = words.next().ok_or("missing id")?;
    let mut fields = Fields::parse(words)?;
    match kind {
        "broker" => {
            let id = BrokerId(number(name)?);
            let state = BrokerState { epoch: BrokerEpoch(fields.number("epoch")?), fenced: fields.boolean("fenced")? };
            fields.finish()?;
            insert_once(&mut image.brokers, id, state, MAX_BROKERS)
        }
        "partition" => {
            let tp = topic_partition(name)?;
            let state = PartitionState {
                replicas: fields.ids("replicas")?,
                leader: fields.leader()?,
                leader_epoch: LeaderEpoch(fields.number("leader-epoch")?),
                partition_epoch: fields.number("partition-epoch")?,
                isr: fields.ids("isr")?,
                elr: fields.ids("elr")?,
                last_member_unclean: fields.boolean("last-unclean")?,
            };
            fields.finish()?;
            insert_once(&mut image.partitions, tp, state, MAX_PARTITIONS)
        }
        other => Err(format!("unknown record `{other}`")),
    }
}

fn insert_once<K: Ord + std::fmt::Debug, V>(map: &mut BTreeMap<K, V>, k: K, v: V, max: usize) -> Result<(), String> {
    if map.len() >= max {
        return Err(format!("more than {max} entries"));
    }
    if map.contains_key(&k) {
        return Err(format!("{k:?} appears twice"));
    }
    map.insert(k, v);
    Ok(())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("`{s}`: {e}"))
}

fn topic_partition(s: &str) -> Result<TopicPartition, String> {
    let (topic, partition) =
        s.strip_prefix('t').and_then(|s| s.split_once('-')).ok_or(format!("bad partition `{s}`"))?;
    Ok(TopicPartition::new(TopicId(number(topic)?), number(partition)?))
}

/// The key=value words of one line; every key must be used exactly once.
struct Fields<'a>(BTreeMap<&'a str, &'a str>);

impl<'a> Fields<'a> {
    fn parse(words: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for word in words {
            let (k, v) = word.split_once('=').ok_or(format!("`{word}` is not key=value"))?;
            if map.insert(k, v).is_some() {
                return Err(format!("`{k}` appears twice"));
            }
        }
        Ok(Fields(map))
    }
    fn take(&mut self, key: &str) -> Result<&'a str, String> {
        self.0.remove(key).ok_or(format!("missing `{key}`"))
    }
    fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        number(self.take(key)?).map_err(|e| format!("{key}: {e}"))
    }
    fn boolean(&mut self, key: &str) -> Result<bool, String> {
        self.number(key)
    }
    fn ids(&mut self, key: &str) -> Result<Vec<BrokerId>, String> {
        let list = self.take(key)?;
        if list.is_empty() {
            return Ok(Vec::new());
        }
        list.split(',').map(|b| number(b).map(BrokerId).map_err(|e| format!("{key}: {e}"))).collect()
    }
    fn leader(&mut self) -> Result<Option<BrokerId>, String> {
        match self.take("leader")? {
            "none" => Ok(None),
            id => Ok(Some(BrokerId(number(id)?))),
        }
    }
    fn finish(self) -> Result<(), String> {
        match self.0.keys().next() {
            Some(k) => Err(format!("unknown field `{k}`")),
            None => Ok(()),
        }
    }
}
