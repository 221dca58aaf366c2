//! The history: every client operation, recorded at invocation and at
//! completion with simulated timestamps. Checkers read only this (and replica
//! snapshots); `--history PATH` writes it as JSON lines.

pub use broker_core::types::TopicName;
use serde::{Deserialize, Serialize};

/// A workload process: one producer, one consumer, or the drain reader.
pub type ProcessId = u32;

/// A unique value: `process << 32 | counter`, so every value traces to one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Value(pub u64);

impl Value {
    /// What a consumer records for bytes that do not decode as a value
    /// (corrupt): no producer ever sends it.
    pub const CORRUPT: Value = Value(u64::MAX);

    pub fn new(process: ProcessId, counter: u32) -> Value {
        assert!(process < 1 << 16, "process {process} does not fit a value's 16 process bits");
        Value(((process as u64) << 32) | counter as u64)
    }
    pub fn process(self) -> ProcessId {
        (self.0 >> 32) as ProcessId
    }
    /// The sending process's count of values before this one.
    pub fn counter(self) -> u32 {
        self.0 as u32
    }
    /// Eight self-checking bytes: process (16 bits), counter (32), and a
    /// 16-bit check of those six bytes (folded CRC-32C), so a flipped bit
    /// reads as garbage rather than as another value (all but 1 in 65,536
    /// corruptions are caught; see `no-corrupt-read`).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut bytes = [0u8; 8];
        bytes[..2].copy_from_slice(&(self.process() as u16).to_be_bytes());
        bytes[2..6].copy_from_slice(&(self.0 as u32).to_be_bytes());
        let check = check16(&bytes[..6]);
        bytes[6..].copy_from_slice(&check.to_be_bytes());
        bytes
    }
    /// The value as a record's bytes. One allocation that clones share
    /// (`Bytes::from_owner`): a copied slice allocated again at its first
    /// clone, and a producer clones every record it sends.
    pub fn to_record_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self.to_bytes())
    }

    /// `None` when the bytes are not a value the workload wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<Value> {
        let bytes: [u8; 8] = bytes.try_into().ok()?;
        if u16::from_be_bytes([bytes[6], bytes[7]]) != check16(&bytes[..6]) {
            return None;
        }
        let process = u16::from_be_bytes([bytes[0], bytes[1]]);
        let counter = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        Some(Value::new(ProcessId::from(process), counter))
    }
}

fn check16(bytes: &[u8]) -> u16 {
    let crc = crc32c_short(bytes);
    (crc >> 16) as u16 ^ crc as u16
}

/// CRC-32C (Castagnoli, reflected), one table lookup per byte. Every
/// value written, read and observed is checked, and on six bytes the
/// `crc32c` crate's entry point (which picks its implementation per call)
/// costs about four times this.
fn crc32c_short(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC32C_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC32C_TABLE: [u32; 256] = {
    const POLYNOMIAL: u32 = 0x82F6_3B78;
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLYNOMIAL } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}:{}", self.process(), self.counter())
    }
}

/// A topic's name as the history's partitions hold it: one pointer (a
/// `TopicName` is two), shared by every record of the topic — a partition
/// is named in every polled record and every ok send, and the history is
/// the run's largest structure. Compares, orders, hashes, prints and
/// serializes as the name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(std::sync::Arc<String>);

impl Topic {
    pub fn new(name: &str) -> Topic {
        Topic(std::sync::Arc::new(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Topic {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Topic {
        Topic::new(name)
    }
}

impl PartialEq<TopicName> for Topic {
    fn eq(&self, other: &TopicName) -> bool {
        self.as_str() == &**other
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Topic, D::Error> {
        String::deserialize(deserializer).map(|name| Topic(std::sync::Arc::new(name)))
    }
}

/// A partition named as `topic-partition` by topic name in the history.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Partition {
    pub topic: Topic,
    pub partition: u32,
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One record returned by a poll.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Polled {
    pub partition: Partition,
    pub offset: i64,
    pub value: Value,
}

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Call {
    /// A producer sends one value (partition known when chosen explicitly).
    Send { topic: Topic, partition: Option<u32>, value: Value },
    /// A consumer polls; records arrive in the completion.
    Poll,
    /// A consumer takes these partitions (resets its positions' continuity).
    Assign { partitions: Vec<Partition> },
    /// A consumer's position moves other than by reading: to `offset`, for `cause`.
    Seek(Box<Seek>),
    /// A group member completed a rebalance: it is `member` in `generation`
    /// of `group` and owns `partitions` (everything it owns now). A fact,
    /// recorded as a zero-length operation when the member learns it.
    Joined(Box<Joined>),
    /// A group member stopped owning `partitions`: revoked (it committed
    /// what it processed first, as the mode says) or `lost` (it learned it
    /// was fenced or left; nothing may be committed for them).
    Revoked(Box<Revoked>),
    /// A group member commits next offsets to consume, under the generation
    /// and member id it holds (`None`: outside any generation).
    Commit(Box<Commit>),
    /// A group member processes records it polled: invoked when processing
    /// starts, completed when it is done (a crash in between leaves it
    /// unfinished: not processed).
    Process { records: Vec<Polled> },
    /// A transactional producer's transaction, as Jepsen records one: invoked
    /// at beginTransaction, completed when commitTransaction or
    /// abortTransaction is answered (`TxnCommitted`, `TxnAborted`, or
    /// `TxnInfo` when the outcome is unknown). The sends — and, in a
    /// consume-transform-produce application, the polls and the offset
    /// commit — that the same process invokes while it is open belong to it.
    /// `producer_id` and `epoch` are what its batches carry; `intent` is what
    /// the application meant to do at the end.
    Txn { transactional_id: TopicName, producer_id: i64, epoch: i16, intent: TxnIntent },
    /// The application asks to end its open transaction (commitTransaction
    /// or abortTransaction): invoked when it asks, completed with the same
    /// outcome as its `Txn`. Nothing of the transaction may be visible to a
    /// read_committed reader before a commit is asked for.
    EndTxn { transactional_id: TopicName, commit: bool },
    /// A consume-transform-produce application (a pipeline) commits its
    /// consumer offsets in its open transaction (sendOffsetsToTransaction),
    /// as `member` of `generation` of `group`: `offsets` are the next
    /// offsets to consume; `transformed` pairs each input value it consumed
    /// with the output value it sent for it in this transaction. Invoked
    /// right after those sends and completed at once: it belongs to the
    /// transaction and shares its fate. `polled` is the poll op whose
    /// records the transaction consumed: invoked before the transaction
    /// began, it is the transaction's read all the same (the checkers take
    /// it as one, as Kafka's exactly-once makes it).
    TxnOffsets(Box<TxnOffsets>),
    /// The drain read `group`'s committed offsets (stable: no transaction
    /// holding one undecided) after every pipeline stopped: a fact, for the
    /// exactly-once-pipeline checker.
    GroupOffsets(Box<GroupOffsets>),
    /// A transactional producer's InitProducerId was answered: from now on
    /// this incarnation of `transactional_id` writes as `producer_id` in
    /// `epoch`, and every older incarnation is fenced. A fact, recorded as a
    /// zero-length operation when the producer learns it (`zombie-fenced`
    /// judges older incarnations' commits against its time).
    ProducerInit { transactional_id: TopicName, producer_id: i64, epoch: i16 },
}

// The rare, large calls are boxed so that every `Op` (most are sends) stays
// small: the history is the run's largest structure. Serialized, a boxed
// call's fields sit beside its tag exactly as a struct variant's would.

/// `Call::Seek`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Seek {
    pub partition: Partition,
    pub offset: i64,
    pub cause: SeekCause,
}

/// `Call::Revoked`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revoked {
    pub group: TopicName,
    pub partitions: Vec<Partition>,
    pub lost: bool,
}

/// `Call::GroupOffsets`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupOffsets {
    pub group: TopicName,
    pub offsets: Vec<(Partition, i64)>,
}

/// `Call::Joined`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Joined {
    pub group: TopicName,
    pub generation: i32,
    pub member: TopicName,
    pub partitions: Vec<Partition>,
}

/// `Call::Commit`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Commit {
    pub group: TopicName,
    pub generation: i32,
    pub member: Option<TopicName>,
    pub offsets: Vec<(Partition, i64)>,
}

/// `Call::TxnOffsets`'s fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxnOffsets {
    pub group: TopicName,
    pub generation: i32,
    pub member: Option<TopicName>,
    pub offsets: Vec<(Partition, i64)>,
    pub transformed: Vec<(Value, Value)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polled: Option<u64>,
}

/// What a transaction's application meant to do when it was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnIntent {
    Commit,
    /// Aborted on purpose (the workload aborts some transactions).
    Abort,
}

/// Why a consumer's position moved (`Call::Seek`): always deliberate, so
/// checkers judge a consumer's walk through a partition only between moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SeekCause {
    /// The application asked.
    #[default]
    Explicit,
    /// The position `from` was out of range (OFFSET_OUT_OF_RANGE) and was
    /// reset per `auto_offset_reset`.
    OutOfRange { from: i64 },
    /// Validation after a leader change found the log truncated below the
    /// position `from` (KIP-320, an unclean election): the consumer moved to
    /// where the leader's log and what it read last agree (or, when the
    /// leader knew no epoch that old, per `auto_offset_reset`).
    Truncation { from: i64 },
    /// A group member took the partition and resumed at the group's committed offset.
    Committed,
}

/// How an operation ended. `ok` definitely happened, `fail` definitely did
/// not, `info` is unknown (timeout, disconnect, an error after which the
/// write may still have landed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Outcome {
    SendOk {
        partition: Partition,
        offset: i64,
    },
    SendFail {
        error: String,
    },
    SendInfo {
        reason: String,
    },
    PollOk {
        records: Vec<Polled>,
    },
    PollFail {
        error: String,
    },
    /// A commit refused or not known to have landed (the error says which).
    CommitFail {
        error: String,
    },
    Ok,
    /// The transaction committed: its writes are visible to read_committed readers.
    TxnCommitted,
    /// The transaction aborted (on purpose, or after an error): none of its
    /// writes may be visible to read_committed readers.
    TxnAborted {
        reason: String,
    },
    /// The transaction's fate is unknown (EndTxn timed out, the producer was
    /// fenced or crashed): it may have committed or aborted.
    TxnInfo {
        reason: String,
    },
}

/// One history line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Invoke { op: u64, process: ProcessId, time_ns: u64, call: Call },
    Complete { op: u64, process: ProcessId, time_ns: u64, outcome: Outcome },
}

/// A whole operation: its call and (if it finished before the run ended) its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op {
    pub id: u64,
    pub process: ProcessId,
    pub invoke_ns: u64,
    pub call: Call,
    /// When it completed, `NOT_COMPLETED` until then (`complete_ns()`): an
    /// `Option` would add eight bytes to every op.
    #[serde(rename = "complete_ns", with = "completion")]
    complete: u64,
    pub outcome: Option<Outcome>,
}

const NOT_COMPLETED: u64 = u64::MAX;

impl Op {
    /// When the op completed, if it did.
    pub fn complete_ns(&self) -> Option<u64> {
        (self.complete != NOT_COMPLETED).then_some(self.complete)
    }
}

/// An op's completion time serialized as the `Option` it reads as.
mod completion {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(complete: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        (*complete != super::NOT_COMPLETED).then_some(*complete).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(super::NOT_COMPLETED))
    }
}

/// The recorded history of one run.
#[derive(Clone, Debug, Default, Hash, Serialize, Deserialize)]
pub struct History {
    /// Operations in invocation order (ids are dense, starting at 0).
    pub ops: Vec<Op>,
    /// The processes that belong to the drain phase.
    pub drain_processes: Vec<ProcessId>,
    /// Producer processes whose configuration promises per-partition send order
    /// (max in-flight 1, or no retries, or idempotence): for them
    /// nonmonotonic-send is a violation.
    pub ordered_producers: Vec<ProcessId>,
    /// Idempotent producer processes: a value of theirs at two offsets is a
    /// no-duplicate violation.
    #[serde(default)]
    pub idempotent_producers: Vec<ProcessId>,
    /// Consumer processes that read with isolation.level=read_committed
    /// (the others read uncommitted, Kafka's default).
    #[serde(default)]
    pub read_committed_consumers: Vec<ProcessId>,
    /// The consume-transform-produce applications of the run, one per group.
    #[serde(default)]
    pub pipelines: Vec<PipelineInfo>,
}

/// One group of consume-transform-produce processes: they read `inputs`
/// read_committed, write each input value's transformation to `output` in a
/// transaction, and commit their offsets in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PipelineInfo {
    pub group: TopicName,
    pub inputs: Vec<TopicName>,
    pub output: TopicName,
    pub processes: Vec<ProcessId>,
    /// Whether every process of the group had caught up (its last polls
    /// empty, no transaction open) within the bound after the heal, when
    /// they were stopped. If not, the committed offsets need not reach the
    /// input's end (a liveness finding of its own).
    pub caught_up: bool,
}

impl History {
    pub fn with_capacity(ops: usize) -> History {
        History { ops: Vec::with_capacity(ops), ..History::default() }
    }

    pub fn invoke(&mut self, process: ProcessId, time_ns: u64, call: Call) -> u64 {
        let id = self.ops.len() as u64;
        self.ops.push(Op { id, process, invoke_ns: time_ns, call, complete: NOT_COMPLETED, outcome: None });
        id
    }

    pub fn complete(&mut self, op: u64, time_ns: u64, outcome: Outcome) {
        let slot = &mut self.ops[op as usize];
        debug_assert!(slot.outcome.is_none(), "op {op} completed twice");
        slot.complete = time_ns.min(NOT_COMPLETED - 1);
        slot.outcome = Some(outcome);
    }

    /// The history as Jepsen-style events (invocations and completions) in time order.
    pub fn events(&self) -> Vec<Event> {
        let mut events = Vec::with_capacity(self.ops.len() * 2);
        for op in &self.ops {
            events.push(Event::Invoke { op: op.id, process: op.process, time_ns: op.invoke_ns, call: op.call.clone() });
            if let (Some(t), Some(o)) = (op.complete_ns(), &op.outcome) {
                events.push(Event::Complete { op: op.id, process: op.process, time_ns: t, outcome: o.clone() });
            }
        }
        // Stable: invocations precede their completions at equal times.
        events.sort_by_key(|e| match e {
            Event::Invoke { time_ns, .. } | Event::Complete { time_ns, .. } => *time_ns,
        });
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most ops are sends, and the history is a run's largest structure:
    /// a large call must go behind a box rather than widen every op.
    #[test]
    fn an_op_stays_small() {
        assert!(std::mem::size_of::<Op>() <= 96, "Op is {} bytes", std::mem::size_of::<Op>());
    }

    /// An op's completion time reads and serializes as an `Option`, though
    /// it is stored without one.
    #[test]
    fn an_unfinished_op_has_no_completion_time() {
        let mut history = History::default();
        let done = history.invoke(1, 5, Call::Poll);
        let open = history.invoke(1, 7, Call::Poll);
        history.complete(done, 9, Outcome::Ok);
        assert_eq!(history.ops[done as usize].complete_ns(), Some(9));
        assert_eq!(history.ops[open as usize].complete_ns(), None);
        for op in &history.ops {
            let json = serde_json::to_string(op).expect("serializes");
            assert!(json
                .contains(&format!(r#""complete_ns":{}"#, op.complete_ns().map_or("null".into(), |t| t.to_string()))));
            assert_eq!(&serde_json::from_str::<Op>(&json).expect("parses"), op);
        }
    }

    /// The table CRC is CRC-32C: it agrees with the crc32c crate on every
    /// length a value can have around it and on many inputs.
    #[test]
    fn the_short_crc_is_crc32c() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let bytes = state.to_le_bytes();
            let len = round % 9;
            assert_eq!(crc32c_short(&bytes[..len]), crc32c::crc32c(&bytes[..len]), "{:?}", &bytes[..len]);
        }
    }

    /// A boxed call serializes exactly as a struct variant: its fields beside the tag.
    #[test]
    fn a_boxed_call_keeps_its_json_shape() {
        let call = Call::Commit(Box::new(Commit {
            group: "g".into(),
            generation: 3,
            member: None,
            offsets: vec![(Partition { topic: "t".into(), partition: 1 }, 7)],
        }));
        let json = serde_json::to_string(&call).expect("serializes");
        assert_eq!(
            json,
            r#"{"f":"commit","group":"g","generation":3,"member":null,"offsets":[[{"topic":"t","partition":1},7]]}"#
        );
        assert_eq!(serde_json::from_str::<Call>(&json).expect("parses"), call);
        let seek = Call::Seek(Box::new(Seek {
            partition: Partition { topic: "events".into(), partition: 4 },
            offset: 954,
            cause: SeekCause::Committed,
        }));
        let revoked = Call::Revoked(Box::new(Revoked {
            group: "readers".into(),
            partitions: vec![Partition { topic: "events".into(), partition: 2 }],
            lost: true,
        }));
        let group_offsets = Call::GroupOffsets(Box::new(GroupOffsets {
            group: "g".into(),
            offsets: vec![(Partition { topic: "in".into(), partition: 0 }, 12)],
        }));
        for (call, expected) in [
            (
                seek,
                r#"{"f":"seek","partition":{"topic":"events","partition":4},"offset":954,"cause":{"kind":"committed"}}"#,
            ),
            (
                revoked,
                r#"{"f":"revoked","group":"readers","partitions":[{"topic":"events","partition":2}],"lost":true}"#,
            ),
            (group_offsets, r#"{"f":"group-offsets","group":"g","offsets":[[{"topic":"in","partition":0},12]]}"#),
        ] {
            assert_eq!(serde_json::to_string(&call).expect("serializes"), expected);
            assert_eq!(serde_json::from_str::<Call>(expected).expect("parses"), call);
        }
    }
}
