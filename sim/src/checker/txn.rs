//! Transactions as the history records them, for the transaction checkers
//! (`txn_checks`, `atomicity`, `dependencies`, `pipeline`).
//!
//! A `txn` operation is invoked at beginTransaction and completed with the
//! transaction's fate. The sends, polls and offset commits (`txn-offsets`)
//! that its process invokes while it is open (from its invocation to its
//! completion, or on to the end if it never completed) belong to it, and so
//! does the `end-txn` that asks to commit. A process has at most one open transaction, so the last `txn`
//! its process invoked is the only candidate for each op.
//!
//! Values are unique per send, so a read value names its send, and the send
//! its transaction (or none: a plain send). Only reads by read_committed
//! consumers are judged here: the others may see aborted and open
//! transactions' records, as Kafka's default isolation allows.

use super::bucket_sort::{sort_by_bucket, PROCESS_BUCKETS};
use super::evidence::op_label;
use super::log_view::{compact_op, LogView, OpId, PartitionId};
use super::value_index::ValueIndex;
use crate::history::{Call, History, Op, Outcome, Polled, ProcessId, TopicName, Value};
use std::collections::BTreeMap;

/// An index into `Txns::txns`.
pub(crate) type TxnIndex = usize;

/// How a transaction ended, as its `txn` operation's completion says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Committed,
    Aborted,
    /// `TxnInfo`, or never completed (a crash, the end of the run): it may
    /// have gone either way.
    Unknown,
}

/// One send of a transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Write {
    pub(crate) value: Value,
    /// Where its ack placed it (meaningful when `partition` is not `NOT_LANDED`).
    offset: i64,
    /// Compact, as `Writer`'s: the checkers keep one per transactional send.
    op: u32,
    partition: u32,
}

const NOT_LANDED: u32 = u32::MAX;

impl Write {
    fn new(op: OpId, value: Value, landed: Option<(PartitionId, i64)>) -> Write {
        let op = compact_op(op);
        let (partition, offset) = landed.map_or((NOT_LANDED, 0), |(partition, offset)| {
            assert!(partition.raw() != NOT_LANDED, "fewer than 2^32 - 1 partitions");
            (partition.raw(), offset)
        });
        Write { value, offset, op, partition }
    }

    /// The send op.
    pub(crate) fn op(&self) -> OpId {
        OpId::from(self.op)
    }

    /// Where its ack placed it (none if it was not acked).
    pub(crate) fn landed(&self) -> Option<(PartitionId, i64)> {
        (self.partition != NOT_LANDED).then_some((PartitionId::new(self.partition), self.offset))
    }
}

/// One transaction and what belongs to it.
#[derive(Debug)]
pub(crate) struct TxnView<'h> {
    /// Its `txn` operation.
    pub(crate) op: &'h Op,
    pub(crate) transactional_id: &'h TopicName,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) fate: Fate,
    /// The first `end-txn` asking to commit it: before that, none of its
    /// records may be visible to a read_committed reader.
    pub(crate) commit_asked: Option<&'h Op>,
    /// The first `end-txn` (commit or abort): until the coordinator has it,
    /// nobody but the coordinator (a timeout, a newer incarnation) can end
    /// the transaction.
    pub(crate) end_asked: Option<&'h Op>,
    /// Its sends, in op order.
    pub(crate) writes: Vec<Write>,
    /// Its ok polls that returned records, in op order: those invoked while
    /// it was open, and the poll a pipeline's transaction consumed (named by
    /// its `txn-offsets` op; invoked before the transaction began).
    pub(crate) reads: Vec<OpId>,
}

impl TxnView<'_> {
    /// Whether an op invoked at `ns` by the same process belongs to it.
    fn holds(&self, ns: u64) -> bool {
        holds(self.op, ns)
    }

    /// `transaction op 3 (process 1, 10ms..50ms)`: how cycles name it.
    pub(crate) fn label(&self, history: &History) -> String {
        format!("transaction {}", op_label(history, self.op.id))
    }

    /// The label with its transactional id, producer id and epoch, and its fate.
    pub(crate) fn describe(&self, history: &History) -> String {
        format!(
            "{} of {} (producer {}, epoch {}), {}",
            self.label(history),
            self.transactional_id,
            self.producer_id,
            self.epoch,
            self.fate_words()
        )
    }

    /// `committed`, `aborted (reason)`, `of unknown fate (reason)`.
    pub(crate) fn fate_words(&self) -> String {
        match &self.op.outcome {
            Some(Outcome::TxnCommitted) => "committed".to_string(),
            Some(Outcome::TxnAborted { reason }) => format!("aborted ({reason})"),
            Some(Outcome::TxnInfo { reason }) => format!("of unknown fate ({reason})"),
            Some(other) => format!("of unknown fate ({other:?})"),
            None => "of unknown fate (never completed)".to_string(),
        }
    }
}

/// Who wrote a value: its send, and the transaction the send belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Writer {
    /// Compact (op ids and transaction indices fit 32 bits): the checkers
    /// keep a writer for every send.
    send: u32,
    /// `NO_TXN` for a send outside any transaction.
    txn: u32,
}

const NO_TXN: u32 = u32::MAX;

impl Writer {
    fn new(send: OpId, txn: Option<TxnIndex>) -> Writer {
        let send = compact_op(send);
        let txn = txn.map_or(NO_TXN, |t| {
            u32::try_from(t).ok().filter(|&t| t != NO_TXN).expect("fewer than 2^32 - 1 transactions")
        });
        Writer { send, txn }
    }

    /// The send op.
    pub(crate) fn send(&self) -> OpId {
        OpId::from(self.send)
    }

    /// The transaction the send belongs to, if any.
    pub(crate) fn txn(&self) -> Option<TxnIndex> {
        (self.txn != NO_TXN).then_some(self.txn as TxnIndex)
    }
}

/// One ok poll by a read_committed consumer that returned records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommittedRead<'h> {
    pub(crate) op: &'h Op,
    /// The transaction the poll belongs to (its reader's own).
    pub(crate) txn: Option<TxnIndex>,
    pub(crate) records: &'h [Polled],
}

/// What the read_committed drain read: judged only if the drain reads committed.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Every value it read, ascending.
    values: Vec<Value>,
    /// Per partition (by id), the highest offset it read.
    highest: Vec<Option<i64>>,
}

impl Drained {
    pub(crate) fn read(&self, value: Value) -> bool {
        self.values.binary_search(&value).is_ok()
    }

    pub(crate) fn highest(&self, partition: PartitionId) -> Option<i64> {
        self.highest.get(partition.index()).copied().flatten()
    }
}

/// An answered InitProducerId (`producer-init`): a new incarnation of a
/// transactional id, which fences every older one from that time on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Init<'h> {
    pub(crate) op: &'h Op,
    pub(crate) transactional_id: &'h TopicName,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
}

/// One `txn-offsets` operation (sendOffsetsToTransaction) and the
/// transaction it belongs to (none if its process had none open, which a
/// pipeline never does).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OffsetCommit<'h> {
    pub(crate) op: &'h Op,
    pub(crate) txn: Option<TxnIndex>,
}

/// Every transaction, every value's writer and every read_committed read.
#[derive(Debug, Default)]
pub(crate) struct Txns<'h> {
    pub(crate) txns: Vec<TxnView<'h>>,
    /// Every `txn-offsets` op, in op order.
    offset_commits: Vec<OffsetCommit<'h>>,
    /// Every `group-offsets` op (the drain reading a group's final committed
    /// offsets), in op order.
    group_offsets: Vec<&'h Op>,
    /// Every send's value and writer, by value (then send, if a value was
    /// sent twice: the first send names it).
    writers: Vec<(Value, Writer)>,
    /// Finds a value in `writers`.
    index: ValueIndex,
    /// In op order.
    committed_reads: Vec<CommittedRead<'h>>,
    /// `None` unless some drain process reads committed.
    drained: Option<Drained>,
    /// Every answered InitProducerId, in op order.
    inits: Vec<Init<'h>>,
}

impl<'h> Txns<'h> {
    /// One walk over the ops, then a sort of the sends by value. A history
    /// with no transaction and no read_committed consumer has nothing to
    /// judge here, and costs nothing (the view's walk noted whether it has one).
    pub(crate) fn build(history: &'h History, view: &LogView<'h>) -> Txns<'h> {
        if !view.has_transactions() && history.read_committed_consumers.is_empty() {
            return Txns::default();
        }
        let read_committed: Vec<ProcessId> = sorted(history.read_committed_consumers.iter().copied());
        let is_read_committed = |process: ProcessId| read_committed.binary_search(&process).is_ok();
        let mut txns: Vec<TxnView<'h>> = Vec::new();
        let mut writers = Vec::new();
        let mut committed_reads = Vec::new();
        let mut inits = Vec::new();
        let (mut offset_commits, mut group_offsets) = (Vec::new(), Vec::new());
        let consumed = consumed_polls(history);
        // Per process, its last transaction.
        let mut last: BTreeMap<ProcessId, TxnIndex> = BTreeMap::new();
        for op in &history.ops {
            if let Some(txn) = txn_view(op) {
                last.insert(op.process, txns.len());
                txns.push(txn);
                continue;
            }
            let txn = last.get(&op.process).copied().filter(|&t| txns[t].holds(op.invoke_ns));
            match (&op.call, &op.outcome) {
                (Call::Send { value, .. }, outcome) => {
                    writers.push((*value, Writer::new(op.id, txn)));
                    if let Some(t) = txn {
                        let landed = match outcome {
                            Some(Outcome::SendOk { partition, offset }) => view.id(partition).map(|id| (id, *offset)),
                            _ => None,
                        };
                        txns[t].writes.push(Write::new(op.id, *value, landed));
                    }
                }
                (Call::Poll, Some(Outcome::PollOk { records })) if !records.is_empty() => {
                    // A poll a pipeline's transaction consumed, invoked before
                    // it began, is that transaction's: it comes later in op
                    // order (its reads are completed after this walk).
                    let consumed_by =
                        consumed.binary_search_by_key(&op.id, |&(poll, _)| poll).ok().map(|at| consumed[at].1);
                    if let (Some(t), None) = (txn, consumed_by) {
                        txns[t].reads.push(op.id);
                    }
                    let txn = consumed_by.or(txn);
                    if is_read_committed(op.process) {
                        committed_reads.push(CommittedRead { op, txn, records });
                    }
                }
                (Call::EndTxn { commit, .. }, _) => {
                    if let Some(t) = txn {
                        txns[t].end_asked.get_or_insert(op);
                        if *commit {
                            txns[t].commit_asked.get_or_insert(op);
                        }
                    }
                }
                (Call::ProducerInit { transactional_id, producer_id, epoch }, Some(_)) => {
                    inits.push(Init { op, transactional_id, producer_id: *producer_id, epoch: *epoch })
                }
                (Call::TxnOffsets { .. }, _) => offset_commits.push(OffsetCommit { op, txn }),
                (Call::GroupOffsets { .. }, Some(Outcome::Ok)) => group_offsets.push(op),
                _ => {}
            }
        }
        for &(poll, t) in &consumed {
            txns[t].reads.push(poll);
            txns[t].reads.sort_unstable();
        }
        // Unique keys (a send is one op), so the order is the stable one;
        // by process first, whose values the history has in counter order.
        sort_by_bucket(
            &mut writers,
            PROCESS_BUCKETS,
            |&(value, _)| value.process() as usize,
            |&(value, writer)| (value, writer.send),
        );
        let drained = drained(history, view, &committed_reads, &is_read_committed);
        let index = ValueIndex::new(&writers, |&(value, _)| value);
        Txns { txns, offset_commits, group_offsets, writers, index, committed_reads, drained, inits }
    }

    /// Who wrote `value` (none if no send in the history did).
    pub(crate) fn writer(&self, value: Value) -> Option<Writer> {
        self.writer_index(value).map(|(_, writer)| writer)
    }

    /// `value`'s writer and its index among the writers (`0..writer_count()`,
    /// for state a checker keeps per writer).
    pub(crate) fn writer_index(&self, value: Value) -> Option<(usize, Writer)> {
        let at = self.index.find(&self.writers, |&(value, _)| value, value)?;
        Some((at, self.writers[at].1))
    }

    pub(crate) fn writer_count(&self) -> usize {
        self.writers.len()
    }

    /// The ok polls of read_committed consumers that returned records, in op order.
    pub(crate) fn committed_reads(&self) -> &[CommittedRead<'h>] {
        &self.committed_reads
    }

    /// Every answered InitProducerId, in op order.
    pub(crate) fn inits(&self) -> &[Init<'h>] {
        &self.inits
    }

    /// Every `txn-offsets` op with its transaction, in op order.
    pub(crate) fn offset_commits(&self) -> &[OffsetCommit<'h>] {
        &self.offset_commits
    }

    /// Every ok `group-offsets` op, in op order.
    pub(crate) fn group_offsets(&self) -> &[&'h Op] {
        &self.group_offsets
    }

    /// What the drain read, if it reads committed.
    pub(crate) fn drained(&self) -> Option<&Drained> {
        self.drained.as_ref()
    }

    /// Whether there is anything to judge: a transaction or a read_committed read.
    pub(crate) fn is_empty(&self) -> bool {
        self.txns.is_empty() && self.committed_reads.is_empty()
    }
}

/// A `txn` operation's view, with nothing belonging to it yet.
fn txn_view(op: &Op) -> Option<TxnView<'_>> {
    let Call::Txn { transactional_id, producer_id, epoch, .. } = &op.call else { return None };
    let fate = match op.outcome {
        Some(Outcome::TxnCommitted) => Fate::Committed,
        Some(Outcome::TxnAborted { .. }) => Fate::Aborted,
        _ => Fate::Unknown,
    };
    Some(TxnView {
        op,
        transactional_id,
        producer_id: *producer_id,
        epoch: *epoch,
        fate,
        commit_asked: None,
        end_asked: None,
        writes: Vec::new(),
        reads: Vec::new(),
    })
}

/// Whether an op invoked at `ns` by the process of transaction `txn` belongs to it.
fn holds(txn: &Op, ns: u64) -> bool {
    txn.invoke_ns <= ns && txn.complete_ns().is_none_or(|end| ns <= end)
}

/// (poll op, transaction) for every poll a pipeline's transaction consumed
/// (its `txn-offsets` op names it), by poll op. Transactions are numbered
/// as `Txns::build` numbers them: in op order.
fn consumed_polls(history: &History) -> Vec<(OpId, TxnIndex)> {
    let mut consumed = Vec::new();
    // Per process, its last transaction: its index and its op.
    let mut last: BTreeMap<ProcessId, (TxnIndex, &Op)> = BTreeMap::new();
    let mut count = 0;
    for op in &history.ops {
        match &op.call {
            Call::Txn { .. } => {
                last.insert(op.process, (count, op));
                count += 1;
            }
            Call::TxnOffsets(commit) => {
                let (Some(poll), Some(&(t, txn))) = (commit.polled, last.get(&op.process)) else { continue };
                // The poll's own process, before the transaction.
                let polled = history.ops.get(poll as usize).filter(|p| p.process == op.process && p.id < txn.id);
                if let (true, Some(polled)) = (holds(txn, op.invoke_ns), polled) {
                    consumed.push((polled.id, t));
                }
            }
            _ => {}
        }
    }
    consumed.sort_unstable();
    consumed
}

/// What the drain processes that read committed read, if there are any.
fn drained(
    history: &History,
    view: &LogView<'_>,
    committed_reads: &[CommittedRead<'_>],
    is_read_committed: &impl Fn(ProcessId) -> bool,
) -> Option<Drained> {
    let drain: Vec<ProcessId> = sorted(history.drain_processes.iter().copied().filter(|&p| is_read_committed(p)));
    if drain.is_empty() {
        return None;
    }
    let mut values = Vec::new();
    let mut highest = vec![None; view.partition_count()];
    for read in committed_reads.iter().filter(|read| drain.binary_search(&read.op.process).is_ok()) {
        for record in read.records {
            values.push(record.value);
            if let Some(id) = view.id(&record.partition) {
                let top: &mut Option<i64> = &mut highest[id.index()];
                *top = Some(top.map_or(record.offset, |t: i64| t.max(record.offset)));
            }
        }
    }
    values.sort_unstable();
    values.dedup();
    Some(Drained { values, highest })
}

fn sorted(processes: impl Iterator<Item = ProcessId>) -> Vec<ProcessId> {
    let mut list: Vec<ProcessId> = processes.collect();
    list.sort_unstable();
    list.dedup();
    list
}
