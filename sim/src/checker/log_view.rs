//! The log as clients saw it: per partition, which values were observed at
//! which offsets, by ok polls (records) and by ok sends (the ack names the
//! offset). Jepsen derives its version order the same way.
//!
//! Building the view is the checkers' only walk over the history's ops: a
//! history is large and scattered in memory (every op and every record owns
//! heap data), so the walk also keeps, compact and interned, what the other
//! checkers need: the ok sends, and each consumer's steps through each
//! partition (moved along here by `polls::Cursors`).
//!
//! Partitions are interned to dense `PartitionId`s on the way: each lookup
//! compares one topic name, and per-partition state lives in Vecs indexed
//! by id. No partition name is cloned, and none is compared after the walk.

use super::partition_log::{PartitionLog, Tally};
use super::polls::{Cursors, Step};
use crate::history::{Call, History, Op, Outcome, Partition, SeekCause, Value};
use std::collections::BTreeMap;

/// An operation's id in `History::ops`.
pub type OpId = u64;

/// An op id as the checkers' compact records hold it: a history has fewer
/// than 2^32 ops (at about 100 bytes each, that is 400 GB).
pub(crate) fn compact_op(op: OpId) -> u32 {
    u32::try_from(op).expect("fewer than 2^32 ops in a history")
}

/// A partition's index in one `LogView`, in order of first appearance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(u32);

impl PartitionId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id numbered `index` (a checker that packs ids unpacks them so).
    pub(crate) fn new(index: u32) -> PartitionId {
        PartitionId(index)
    }

    /// The id's number, to pack.
    pub(crate) fn raw(self) -> u32 {
        self.0
    }
}

/// One ok send: its op, and where its ack placed its value. The op's
/// process and times are in the history (`History::ops[op]`): an ack is
/// kept for every ok send, and copying them doubled its size.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    /// The op id, compact (24 bytes an ack, not 32).
    op: u32,
    pub partition: PartitionId,
    pub offset: i64,
    pub value: Value,
}

impl Ack {
    pub fn op(&self) -> OpId {
        OpId::from(self.op)
    }
}

/// Every partition's derived log, and the history's ok sends and consumer
/// steps with their partitions interned.
#[derive(Debug, Default)]
pub struct LogView<'h> {
    /// By id.
    names: Vec<&'h Partition>,
    logs: Vec<PartitionLog>,
    ids: BTreeMap<&'h Partition, PartitionId>,
    /// Ids in the order of the partitions' names.
    ordered: Vec<PartitionId>,
    acks: Vec<Ack>,
    poll_steps: Vec<Step>,
    /// Seeks made because a consumer detected truncation under its position.
    truncation_seeks: u64,
    /// Whether any transaction was begun (the transaction checkers skip
    /// histories with none and no read_committed reader).
    has_transactions: bool,
}

impl<'h> LogView<'h> {
    /// One walk over the ops, then O(n) per partition for its n distinct
    /// (offset, value) pairs (O(n log n) for offsets far from the rest).
    pub fn build(history: &'h History) -> LogView<'h> {
        let mut partitions = Interner::default();
        let mut tallies: Vec<Tally> = Vec::new();
        let mut cursors = Cursors::new();
        // At most one per op; pages never written cost nothing.
        let mut acks = Vec::with_capacity(history.ops.len());
        let mut truncation_seeks = 0;
        let mut has_transactions = false;
        for (index, op) in history.ops.iter().enumerate() {
            if index % READ_AHEAD == 0 {
                let ahead = &history.ops[index..(index + READ_AHEAD).min(history.ops.len())];
                std::hint::black_box(touch_names(ahead));
            }
            match (&op.call, &op.outcome) {
                (Call::Poll, Some(Outcome::PollOk { records })) if !records.is_empty() => {
                    let mut poll = cursors.poll(op.process, index);
                    for record in records {
                        let id = partitions.intern(&record.partition, &mut tallies);
                        tallies[id.index()].read(record.offset, record.value, op.id);
                        poll.record(id, record.offset);
                    }
                }
                (Call::Send { value, .. }, Some(Outcome::SendOk { partition, offset })) => {
                    let id = partitions.intern(partition, &mut tallies);
                    tallies[id.index()].ack(*offset, *value, op.id);
                    acks.push(Ack { op: compact_op(op.id), partition: id, offset: *offset, value: *value });
                }
                // Invoked is enough: an assign or seek may take effect without an ack.
                (Call::Assign { partitions: assigned }, _) => {
                    for partition in assigned {
                        cursors.reset(op.process, partitions.intern(partition, &mut tallies));
                    }
                }
                (Call::Joined(joined), _) => {
                    for partition in &joined.partitions {
                        cursors.reset(op.process, partitions.intern(partition, &mut tallies));
                    }
                }
                // Whatever its cause (a reset, detected truncation), a seek is
                // a deliberate move: the walk restarts there.
                (Call::Seek(seek), _) => {
                    let (partition, cause) = (&seek.partition, &seek.cause);
                    truncation_seeks += u64::from(matches!(cause, SeekCause::Truncation { .. }));
                    cursors.reset(op.process, partitions.intern(partition, &mut tallies))
                }
                (Call::Txn { .. }, _) => has_transactions = true,
                _ => {}
            }
        }
        let names = partitions.names;
        let logs = tallies.into_iter().map(PartitionLog::build).collect();
        let ids: BTreeMap<&'h Partition, PartitionId> = names.iter().copied().zip((0..).map(PartitionId)).collect();
        // The map is keyed by name, so its ids come out in name order.
        let ordered = ids.values().copied().collect();
        let poll_steps = cursors.into_steps();
        LogView { names, logs, ids, ordered, acks, poll_steps, truncation_seeks, has_transactions }
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

    /// Whether the history begins any transaction.
    pub fn has_transactions(&self) -> bool {
        self.has_transactions
    }

    /// How many seeks consumers made on detecting truncation under their position.
    pub fn truncation_seeks(&self) -> u64 {
        self.truncation_seeks
    }

    /// Each consumer's steps through each partition that do not move on by
    /// exactly one offset, in op and record order.
    pub(crate) fn poll_steps(&self) -> &[Step] {
        &self.poll_steps
    }
}

/// Ops whose partition names are read ahead at a time.
const READ_AHEAD: usize = 32;

/// Reads a byte of each partition name in `ops` (the first few of a poll's
/// records) and returns their sum, to be discarded (`black_box` keeps the
/// reads). Every record and ack owns its name on the heap, so the walk
/// would otherwise wait out one cache miss at a time; this tight loop has
/// many in flight at once, and the walk then finds the names in cache (on
/// a standard run's history the whole check took a quarter less time).
fn touch_names(ops: &[Op]) -> u64 {
    let first_byte = |partition: &Partition| u64::from(partition.topic.as_bytes().first().copied().unwrap_or(0));
    let mut sum = 0u64;
    for op in ops {
        match &op.outcome {
            Some(Outcome::PollOk { records }) => {
                for record in records.iter().take(8) {
                    sum = sum.wrapping_add(first_byte(&record.partition));
                }
            }
            Some(Outcome::SendOk { partition, .. }) => sum = sum.wrapping_add(first_byte(partition)),
            _ => {}
        }
    }
    sum
}

/// Dense ids for partitions, by reference: no name is cloned. Each lookup
/// compares one topic name, with the previous partition's (usually every
/// record has the one topic); the partition is then found by number.
#[derive(Default)]
struct Interner<'h> {
    /// By id.
    names: Vec<&'h Partition>,
    topics: BTreeMap<&'h str, usize>,
    /// The partition interned last, its topic's index and its id.
    last: Option<(&'h Partition, usize, PartitionId)>,
    /// Per topic, by partition number (numbers are small in practice).
    dense: Vec<Vec<Option<PartitionId>>>,
    /// (topic, number) for numbers too large for `dense`.
    sparse: BTreeMap<(usize, u32), PartitionId>,
}

/// Partition numbers below this get a table slot per topic.
const DENSE_PARTITION_NUMBERS: u32 = 1 << 12;

impl<'h> Interner<'h> {
    /// The common case, inlined into the walk: the previous partition
    /// again. A new partition gets an empty tally.
    #[inline(always)]
    fn intern(&mut self, partition: &'h Partition, tallies: &mut Vec<Tally>) -> PartitionId {
        let id = match self.last {
            Some((last, _, id))
                if last.partition == partition.partition && same_name(&last.topic, &partition.topic) =>
            {
                id
            }
            _ => self.intern_other(partition),
        };
        if id.index() == tallies.len() {
            tallies.push(Tally::default());
        }
        id
    }

    #[inline(never)]
    fn intern_other(&mut self, partition: &'h Partition) -> PartitionId {
        let topic = match self.last {
            Some((last, topic, _)) if same_name(&last.topic, &partition.topic) => topic,
            _ => self.topic(&partition.topic),
        };
        let found = match self.dense[topic].get(partition.partition as usize) {
            Some(&Some(id)) => id,
            _ => self.by_number(topic, partition),
        };
        self.last = Some((partition, topic, found));
        found
    }

    fn topic(&mut self, topic: &'h str) -> usize {
        let next = self.topics.len();
        let index = *self.topics.entry(topic).or_insert(next);
        if index == next {
            self.dense.push(Vec::new());
        }
        index
    }

    /// The id of a number not yet in the dense table: found in the sparse
    /// map, or new.
    fn by_number(&mut self, topic: usize, partition: &'h Partition) -> PartitionId {
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
}

/// Whether two names are equal. Topic names are short, so they are compared
/// here, in at most two word-sized loads each, rather than by a call to
/// `memcmp` for every record.
#[inline(always)]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b, len) = (a.as_bytes(), b.as_bytes(), a.len());
    if len != b.len() {
        return false;
    }
    // Overlapping first and last words cover every byte.
    let word = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |bytes: &[u8], at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    match len {
        8..=16 => word(a, 0) == word(b, 0) && word(a, len - 8) == word(b, len - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, len - 4) == half(b, len - 4),
        _ => a == b,
    }
}
