//! zombie-fenced: once a newer incarnation of a transactional id has
//! initialised (its InitProducerId answered, a `producer-init` fact), no
//! transaction of an older epoch of that id commits.
//!
//! What the history shows of a commit's time: the coordinator can decide to
//! commit a transaction only once it has the application's EndTxn, and the
//! producer sends EndTxn only after the application asked (`end-txn`
//! invoked) and every batch of the transaction was answered. So a
//! transaction decided at all was decided after its `end-txn` (commit)
//! invocation and after its latest acknowledged send: the later of the two
//! is a lower bound on its commit. And a newer incarnation's
//! InitProducerId is answered only after the coordinator recorded the newer
//! epoch, from when it refuses the older one (it first aborts the older
//! incarnation's open transaction; one already prepared is completed
//! before the init is answered).
//!
//! A finding: a transaction of `transactional_id` as producer `p` in epoch
//! `e` that committed — a read_committed reader (or the drain) returned one
//! of its values, or its application was told it committed and one of its
//! sends was acknowledged (so the commit went through the coordinator) —
//! whose lower bound lies after an InitProducerId of the same id answered
//! `p` with an epoch above `e`. A transaction committed before the newer
//! incarnation initialised is fine.
//!
//! Not judged: an incarnation under another producer id (the coordinator
//! hands out a fresh id only when an epoch runs out, which ksim's runs do
//! not reach); and a transaction of an older incarnation read while its
//! commit was never asked for, when none of its sends was acknowledged
//! after the newer init (no-precommitted-read reports that read).

use super::evidence::{op_label, Findings, Millis};
use super::txn::{Fate, Init, TxnIndex, TxnView, Txns};
use super::Invariant;
use crate::history::{History, Op, Polled, TopicName};
use std::collections::BTreeMap;

pub(crate) fn check(history: &History, txns: &Txns<'_>, findings: &mut Findings) {
    if txns.inits().is_empty() {
        return;
    }
    let incarnations = Incarnations::build(txns.inits());
    let seen = first_committed_reads(txns);
    for (t, txn) in txns.txns.iter().enumerate() {
        let committed = match (seen.get(&t), committed_by_coordinator(txn)) {
            (Some(&(read, record)), _) => Committed::Read(read, record),
            (None, true) => Committed::Told,
            (None, false) => continue,
        };
        let Some(last) = last_step(history, txn) else { continue };
        let Some(init) = incarnations.first_newer(txn.transactional_id, txn.producer_id, txn.epoch) else { continue };
        let init_ns = init.op.complete_ns().expect("an answered init");
        if last.ns <= init_ns {
            continue;
        }
        findings.found(Invariant::ZombieFenced, || {
            format!(
                "{}: it committed ({}), yet {} at {}, after a newer incarnation of {} initialised in epoch {} ({}, answered at {})",
                txn.describe(history),
                committed.words(history),
                last.words(history),
                Millis(last.ns),
                txn.transactional_id,
                init.epoch,
                op_label(history, init.op.id),
                Millis(init_ns)
            )
        });
    }
}

/// How a transaction is known to have committed.
enum Committed<'h> {
    /// A read_committed poll (or the drain) returned one of its values.
    Read(&'h Op, &'h Polled),
    /// Its application was told so, and one of its sends was acknowledged.
    Told,
}

impl Committed<'_> {
    fn words(&self, history: &History) -> String {
        match self {
            Committed::Read(op, record) => format!(
                "{} read committed {} at partition {} offset {}",
                op_label(history, op.id),
                record.value,
                record.partition,
                record.offset
            ),
            Committed::Told => "its commit was answered".to_string(),
        }
    }
}

/// The latest step the transaction's commit had to wait for.
struct Step<'h> {
    ns: u64,
    op: &'h Op,
    /// An acknowledged send (else: the commit being asked for).
    ack: bool,
}

impl Step<'_> {
    fn words(&self, history: &History) -> String {
        if self.ack {
            let Some(crate::history::Outcome::SendOk { partition, offset }) = &self.op.outcome else {
                unreachable!("an acknowledged send")
            };
            format!(
                "its send {} was acknowledged at partition {partition} offset {offset}",
                op_label(history, self.op.id)
            )
        } else {
            format!("its commit was asked for ({})", op_label(history, self.op.id))
        }
    }
}

/// The later of the commit being asked for and the latest acknowledgement.
fn last_step<'h>(history: &'h History, txn: &TxnView<'h>) -> Option<Step<'h>> {
    let asked = txn.commit_asked.map(|op| Step { ns: op.invoke_ns, op, ack: false });
    let acked = txn
        .writes
        .iter()
        .filter(|write| write.landed().is_some())
        .map(|write| &history.ops[write.op() as usize])
        .filter_map(|op| op.complete_ns().map(|ns| Step { ns, op, ack: true }))
        .max_by_key(|step| step.ns);
    match (asked, acked) {
        (Some(a), Some(b)) => Some(if b.ns > a.ns { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Its application was told it committed, and a send of it was acknowledged:
/// a partition was added, so the commit was the coordinator's (a
/// transaction that wrote nothing ends in the producer alone).
fn committed_by_coordinator(txn: &TxnView<'_>) -> bool {
    txn.fate == Fate::Committed && txn.writes.iter().any(|write| write.landed().is_some())
}

/// Per transaction, the first read_committed poll that returned one of its values.
fn first_committed_reads<'h>(txns: &Txns<'h>) -> BTreeMap<TxnIndex, (&'h Op, &'h Polled)> {
    let mut seen = BTreeMap::new();
    for read in txns.committed_reads() {
        for record in read.records {
            if let Some(t) = txns.writer(record.value).and_then(|writer| writer.txn()) {
                seen.entry(t).or_insert((read.op, record));
            }
        }
    }
    seen
}

/// Per transactional id and producer id, the answered inits by epoch,
/// each with the earliest-answered init of that epoch or a higher one.
struct Incarnations<'a, 'h> {
    by_producer: BTreeMap<(&'h TopicName, i64), Vec<(i16, &'a Init<'h>)>>,
}

impl<'a, 'h> Incarnations<'a, 'h> {
    fn build(inits: &'a [Init<'h>]) -> Incarnations<'a, 'h> {
        let mut by_producer: BTreeMap<(&'h TopicName, i64), Vec<(i16, &'a Init<'h>)>> = BTreeMap::new();
        for init in inits {
            by_producer.entry((init.transactional_id, init.producer_id)).or_default().push((init.epoch, init));
        }
        for list in by_producer.values_mut() {
            list.sort_by_key(|&(epoch, init)| (epoch, init.op.id));
            // Suffix minimum: each entry names the earliest-answered init at its epoch or above.
            for i in (0..list.len().saturating_sub(1)).rev() {
                let later = list[i + 1].1;
                if answered(later) < answered(list[i].1) {
                    list[i].1 = later;
                }
            }
        }
        Incarnations { by_producer }
    }

    /// The earliest-answered init of `id` as `producer_id` in an epoch above `epoch`.
    fn first_newer(&self, id: &TopicName, producer_id: i64, epoch: i16) -> Option<&'a Init<'h>> {
        let list = self.by_producer.get(&(id, producer_id))?;
        let at = list.partition_point(|&(e, _)| e <= epoch);
        list.get(at).map(|&(_, init)| init)
    }
}

fn answered(init: &Init<'_>) -> u64 {
    init.op.complete_ns().unwrap_or(u64::MAX)
}
