//! The log as clients saw it: per partition, which values were observed at
//! which offsets, by ok polls (records) and by ok sends (the ack names the
//! offset). Jepsen derives its version order the same way.
//!
//! Building the view is the checkers' only walk over the history's ops: a
//! history is large and scattered in memory (every op and every record owns
//! heap data), so the walk also keeps what each checker needs in compact,
//! interned form — the ok sends, and each consumer's assigns, seeks and
//! polled offsets — and the checkers read those instead of the ops.
//!
//! Partitions are interned to dense `PartitionId`s on the way: consecutive
//! records usually share a partition, so most lookups compare with the
//! previous one only, and per-partition state then lives in Vecs indexed by
//! id. No partition name is cloned or compared after the walk.

use super::partition_log::{Observations, PartitionLog};
use crate::history::{Call, History, Outcome, Partition, ProcessId, Value};
use std::collections::BTreeMap;
use std::ops::Range;

/// An operation's id in `History::ops`.
pub type OpId = u64;

/// A partition's index in one `LogView`, in order of first appearance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(u32);

impl PartitionId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One ok send: its op, and where its ack placed its value.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub op: OpId,
    pub process: ProcessId,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    pub partition: PartitionId,
    pub offset: i64,
    pub value: Value,
}

/// What a consumer did to its walk through the partitions, in op order.
#[derive(Clone, Debug)]
pub enum ConsumerStep {
    /// An assign listing the partition, or a seek on it: continuity ends.
    Reset { process: ProcessId, partition: PartitionId },
    /// An ok poll: the op at `index` in `History::ops`, and its records in
    /// `LogView::records`.
    Poll { process: ProcessId, index: usize, records: Range<usize> },
}

/// Where one polled record sits.
#[derive(Clone, Copy, Debug)]
pub struct RecordAt {
    pub partition: PartitionId,
    pub offset: i64,
}

/// Every partition's derived log, and the history's sends and consumer
/// steps with their partitions interned.
#[derive(Clone, Debug, Default)]
pub struct LogView<'h> {
    /// By id.
    names: Vec<&'h Partition>,
    logs: Vec<PartitionLog>,
    ids: BTreeMap<&'h Partition, PartitionId>,
    /// Ids in the order of the partitions' names.
    ordered: Vec<PartitionId>,
    acks: Vec<Ack>,
    steps: Vec<ConsumerStep>,
    records: Vec<RecordAt>,
}

impl<'h> LogView<'h> {
    /// One walk over the ops, then O(r) per partition for r observations
    /// over a dense offset range (O(r log r) otherwise).
    pub fn build(history: &'h History) -> LogView<'h> {
        let t = std::time::Instant::now();
        let mut walk = Walk::default();
        for (index, op) in history.ops.iter().enumerate() {
            match (&op.call, &op.outcome) {
                (Call::Poll, Some(Outcome::PollOk { records })) => {
                    let start = walk.records.len();
                    for record in records {
                        let partition = walk.intern(&record.partition);
                        walk.observed[partition.index()].read(record.offset, record.value, op.id);
                        walk.records.push(RecordAt { partition, offset: record.offset });
                    }
                    // An empty poll moves no cursor.
                    if !records.is_empty() {
                        let records = start..walk.records.len();
                        walk.steps.push(ConsumerStep::Poll { process: op.process, index, records });
                    }
                }
                (Call::Send { value, .. }, Some(Outcome::SendOk { partition, offset })) => {
                    let partition = walk.intern(partition);
                    walk.observed[partition.index()].ack(*offset, *value, op.id);
                    walk.acks.push(Ack {
                        op: op.id,
                        process: op.process,
                        invoke_ns: op.invoke_ns,
                        complete_ns: op.complete_ns,
                        partition,
                        offset: *offset,
                        value: *value,
                    });
                }
                // Invoked is enough: an assign or seek may take effect without an ack.
                (Call::Assign { partitions }, _) => {
                    for partition in partitions {
                        let partition = walk.intern(partition);
                        walk.steps.push(ConsumerStep::Reset { process: op.process, partition });
                    }
                }
                (Call::Seek { partition, .. }, _) => {
                    let partition = walk.intern(partition);
                    walk.steps.push(ConsumerStep::Reset { process: op.process, partition });
                }
                _ => {}
            }
        }
        let Walk { partitions: Interner { names, .. }, observed, acks, steps, records } = walk;
        let ids: BTreeMap<&'h Partition, PartitionId> = names.iter().copied().zip((0..).map(PartitionId)).collect();
        // The map is keyed by name, so its ids come out in name order.
        let ordered = ids.values().copied().collect();
        let t1 = t.elapsed();
        let logs = observed.into_iter().map(PartitionLog::build).collect();
        if history.ops.len() > 50000 && std::env::var("PHASES").is_ok() { eprintln!("walk {t1:?} logs {:?}", t.elapsed() - t1); }
        LogView { names, logs, ids, ordered, acks, steps, records }
    }

    /// How many partitions the history names (ids are `0..count`): in
    /// records, acks, assigns or seeks.
    pub fn partition_count(&self) -> usize {
        self.names.len()
    }

    pub fn id(&self, partition: &Partition) -> Option<PartitionId> {
        self.ids.get(partition).copied()
    }

    pub fn name(&self, id: PartitionId) -> &'h Partition {
        self.names[id.index()]
    }

    pub fn log(&self, id: PartitionId) -> &PartitionLog {
        &self.logs[id.index()]
    }

    /// A partition's log (empty if the history only assigned or sought it).
    pub fn partition(&self, partition: &Partition) -> Option<&PartitionLog> {
        self.id(partition).map(|id| self.log(id))
    }

    /// Every partition's id, by partition name.
    pub fn ids(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.ordered.iter().copied()
    }

    /// Every partition's log, by partition name.
    pub fn partitions(&self) -> impl Iterator<Item = (&'h Partition, &PartitionLog)> + '_ {
        self.ids().map(|id| (self.name(id), self.log(id)))
    }

    /// Every ok send, in op order.
    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// Every consumer's resets and ok polls, in op order.
    pub fn consumer_steps(&self) -> &[ConsumerStep] {
        &self.steps
    }

    /// Records of ok polls, in op and record order (a `ConsumerStep::Poll` names its range).
    pub fn records(&self, range: Range<usize>) -> &[RecordAt] {
        &self.records[range]
    }
}

/// What the walk over the ops has gathered so far.
#[derive(Default)]
struct Walk<'h> {
    partitions: Interner<'h>,
    /// By id.
    observed: Vec<Observations>,
    acks: Vec<Ack>,
    steps: Vec<ConsumerStep>,
    records: Vec<RecordAt>,
}

impl<'h> Walk<'h> {
    /// A new partition gets an empty slot in `observed` too.
    fn intern(&mut self, partition: &'h Partition) -> PartitionId {
        let id = self.partitions.intern(partition);
        if id.index() == self.observed.len() {
            self.observed.push(Observations::default());
        }
        id
    }
}

/// Dense ids for partitions, by reference: no name is cloned. A topic is
/// looked up by name once per run of records that share it (usually every
/// record has the one topic), then a partition by number, with no further
/// string comparison.
#[derive(Default)]
struct Interner<'h> {
    /// By id.
    names: Vec<&'h Partition>,
    topics: BTreeMap<&'h str, usize>,
    last_topic: Option<(&'h str, usize)>,
    /// Per topic, by partition number (numbers are small in practice).
    dense: Vec<Vec<Option<PartitionId>>>,
    /// (topic, number) for numbers too large for `dense`.
    sparse: BTreeMap<(usize, u32), PartitionId>,
}

/// Partition numbers below this get a table slot per topic.
const DENSE_PARTITION_NUMBERS: u32 = 1 << 12;

impl<'h> Interner<'h> {
    fn intern(&mut self, partition: &'h Partition) -> PartitionId {
        let topic = self.topic(&partition.topic);
        let next = PartitionId(u32::try_from(self.names.len()).expect("fewer than 2^32 partitions"));
        let id = if partition.partition < DENSE_PARTITION_NUMBERS {
            let numbers = &mut self.dense[topic];
            let number = partition.partition as usize;
            if numbers.len() <= number {
                numbers.resize(number + 1, None);
            }
            *numbers[number].get_or_insert(next)
        } else {
            *self.sparse.entry((topic, partition.partition)).or_insert(next)
        };
        if id == next {
            self.names.push(partition);
        }
        id
    }

    fn topic(&mut self, topic: &'h str) -> usize {
        if let Some((last, index)) = self.last_topic {
            if last == topic {
                return index;
            }
        }
        let next = self.topics.len();
        let index = *self.topics.entry(topic).or_insert(next);
        if index == next {
            self.dense.push(Vec::new());
        }
        self.last_topic = Some((topic, index));
        index
    }
}
