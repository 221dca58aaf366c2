//! The transaction checkers on handmade histories: each invariant has a
//! firing history and a near-identical clean twin.

use super::log_view::LogView;
use super::tests::{part, render, MS};
use super::txn::{Fate, Txns};
use super::{check_history, Invariant};
use crate::history::{Call, History, Outcome, Polled, ProcessId, TxnIntent, Value};

/// Transactional histories at chosen times (`at`, in ms). Ops must be
/// invoked in time order, as the recorder invokes them.
#[derive(Default)]
pub(super) struct Script {
    pub(super) history: History,
    now_ns: u64,
}

pub(super) fn v(process: ProcessId, counter: u32) -> Value {
    Value::new(process, counter)
}

pub(super) fn committed() -> Outcome {
    Outcome::TxnCommitted
}

pub(super) fn aborted() -> Outcome {
    Outcome::TxnAborted { reason: "aborted on purpose".into() }
}

pub(super) fn unknown() -> Outcome {
    Outcome::TxnInfo { reason: "EndTxn timed out".into() }
}

impl Script {
    pub(super) fn at(&mut self, ms: u64) -> &mut Self {
        self.now_ns = ms * MS;
        self
    }

    /// beginTransaction by `process` (transactional id `tx-{process}`,
    /// producer id `1000 + process`, epoch 0).
    pub(super) fn begin(&mut self, process: ProcessId) -> u64 {
        let call = Call::Txn {
            transactional_id: format!("tx-{process}").as_str().into(),
            producer_id: 1000 + i64::from(process),
            epoch: 0,
            intent: TxnIntent::Commit,
        };
        self.history.invoke(process, self.now_ns, call)
    }

    /// beginTransaction by `process` as an incarnation of `transactional_id`
    /// writing as `producer_id` in `epoch`.
    pub(super) fn begin_as(&mut self, process: ProcessId, transactional_id: &str, producer_id: i64, epoch: i16) -> u64 {
        let call =
            Call::Txn { transactional_id: transactional_id.into(), producer_id, epoch, intent: TxnIntent::Commit };
        self.history.invoke(process, self.now_ns, call)
    }

    /// `process`'s InitProducerId for `transactional_id` answered now (a fact).
    pub(super) fn init(&mut self, process: ProcessId, transactional_id: &str, producer_id: i64, epoch: i16) -> u64 {
        let call = Call::ProducerInit { transactional_id: transactional_id.into(), producer_id, epoch };
        let op = self.history.invoke(process, self.now_ns, call);
        self.history.complete(op, self.now_ns, Outcome::Ok);
        op
    }

    /// A send of `value` by its process, answered 1ms later with `outcome`.
    pub(super) fn send(&mut self, value: Value, partition: u32, outcome: Outcome) -> u64 {
        let call = Call::Send { topic: "t".into(), partition: Some(partition), value };
        let op = self.history.invoke(value.process(), self.now_ns, call);
        self.history.complete(op, self.now_ns + MS, outcome);
        op
    }

    pub(super) fn send_ok(&mut self, value: Value, partition: u32, offset: i64) -> u64 {
        self.send(value, partition, Outcome::SendOk { partition: part(partition), offset })
    }

    /// An ok poll by `process` of `records` as (partition, offset, value), answered 1ms later.
    pub(super) fn poll(&mut self, process: ProcessId, records: &[(u32, i64, Value)]) -> u64 {
        let records = records.iter().map(|&(p, offset, value)| Polled { partition: part(p), offset, value }).collect();
        let op = self.history.invoke(process, self.now_ns, Call::Poll);
        self.history.complete(op, self.now_ns + MS, Outcome::PollOk { records });
        op
    }

    /// commitTransaction (or abort) asked now; the `end-txn` and the
    /// transaction are answered 2ms later with `outcome`.
    pub(super) fn end(&mut self, txn: u64, commit: bool, outcome: Outcome) {
        let process = self.history.ops[txn as usize].process;
        let call = Call::EndTxn { transactional_id: format!("tx-{process}").as_str().into(), commit };
        let op = self.history.invoke(process, self.now_ns, call);
        self.history.complete(op, self.now_ns + 2 * MS, outcome.clone());
        self.history.complete(txn, self.now_ns + 2 * MS, outcome);
    }

    /// A pipeline's sendOffsetsToTransaction by `process` now, naming `poll`
    /// as the poll its open transaction consumed.
    pub(super) fn consumed(&mut self, process: ProcessId, poll: u64) {
        let call = Call::TxnOffsets(Box::new(crate::history::TxnOffsets {
            group: "g".into(),
            generation: 1,
            member: None,
            offsets: Vec::new(),
            transformed: Vec::new(),
            polled: Some(poll),
        }));
        let op = self.history.invoke(process, self.now_ns, call);
        self.history.complete(op, self.now_ns, Outcome::Ok);
    }

    pub(super) fn seek(&mut self, process: ProcessId, partition: u32, offset: i64) {
        let call = Call::Seek(Box::new(crate::history::Seek {
            partition: part(partition),
            offset,
            cause: Default::default(),
        }));
        let op = self.history.invoke(process, self.now_ns, call);
        self.history.complete(op, self.now_ns, Outcome::Ok);
    }

    pub(super) fn read_committed(&mut self, process: ProcessId) -> &mut Self {
        self.history.read_committed_consumers.push(process);
        self
    }

    pub(super) fn drain(&mut self, process: ProcessId) -> &mut Self {
        self.history.drain_processes.push(process);
        self
    }

    /// The findings of `invariants` only.
    pub(super) fn check_only(&self, invariants: &[Invariant]) -> String {
        let mut report = check_history(&self.history);
        report.violations.retain(|v| invariants.contains(&v.invariant));
        report.counts.retain(|i, _| invariants.contains(i));
        render(&report)
    }

    /// The transaction checkers' findings (not the cycles').
    fn check(&self) -> String {
        self.check_only(&[
            Invariant::NoAbortedRead,
            Invariant::NoPrecommittedRead,
            Invariant::NoLostCommittedWrite,
            Invariant::TxnAtomicity,
        ])
    }
}

// ---------------------------------------------------------------------------
// Grouping ops into transactions.

#[test]
fn a_transaction_holds_its_process_ops_while_open_and_nothing_else() {
    let mut s = Script::default();
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(2, 0), 0, 1); // another process: plain
    s.at(13).poll(1, &[(1, 0, v(3, 0))]);
    s.at(20).end(t, true, committed());
    s.at(22).send_ok(v(1, 1), 0, 2); // answered at 22, the instant the transaction was: still in it
    s.at(23).send_ok(v(1, 2), 0, 3); // after: plain
    let t2 = s.at(30).begin(1);
    s.at(31).send_ok(v(1, 3), 0, 4); // never completed: open to the end
    let view = LogView::build(&s.history);
    let txns = Txns::build(&s.history, &view);
    assert_eq!(txns.txns.len(), 2);
    let (first, second) = (&txns.txns[0], &txns.txns[1]);
    assert_eq!((first.fate, second.fate), (Fate::Committed, Fate::Unknown));
    assert_eq!(first.writes.iter().map(|w| w.value).collect::<Vec<_>>(), [v(1, 0), v(1, 1)]);
    assert_eq!(first.reads.len(), 1);
    assert_eq!(first.commit_asked.map(|op| op.invoke_ns), Some(20 * MS));
    assert_eq!(second.writes.iter().map(|w| w.value).collect::<Vec<_>>(), [v(1, 3)]);
    assert!(second.commit_asked.is_none());
    assert_eq!(txns.writer(v(2, 0)).map(|w| w.txn()), Some(None));
    assert_eq!(txns.writer(v(1, 2)).map(|w| w.txn()), Some(None));
    assert_eq!(txns.writer(v(1, 3)).and_then(|w| w.txn()), Some(1));
    assert_eq!(t2, 7);
}

#[test]
fn a_history_without_transactions_or_read_committed_readers_is_not_walked() {
    let mut s = Script::default();
    s.at(10).send_ok(v(1, 0), 0, 0);
    s.at(20).poll(9, &[(0, 0, v(1, 0))]);
    let view = LogView::build(&s.history);
    assert!(Txns::build(&s.history, &view).is_empty());
}

// ---------------------------------------------------------------------------
// no-aborted-read

/// Process 1's transaction writes p1:0 to t-0 offset 0 and aborts; process 9 reads it.
fn aborted_then_read() -> Script {
    let mut s = Script::default();
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(20).end(t, false, aborted());
    s.at(30).poll(9, &[(0, 0, v(1, 0))]);
    s
}

#[test]
fn a_read_committed_poll_of_an_aborted_transaction_is_an_aborted_read_and_only_that() {
    let mut s = aborted_then_read();
    s.read_committed(9);
    assert_eq!(
        s.check(),
        "no-aborted-read: partition t-0 offset 0: op 3 (process 9, 30ms..31ms) (read_committed) read p1:0, \
         written by op 1 (process 1, 11ms..12ms) in transaction op 0 (process 1, 10ms..22ms) of tx-1 \
         (producer 1001, epoch 0), aborted (aborted on purpose)\n\
         count no-aborted-read = 1\n"
    );
}

#[test]
fn a_read_uncommitted_poll_of_an_aborted_transaction_is_not_judged() {
    let s = aborted_then_read();
    assert_eq!(s.check(), "");
}

#[test]
fn a_read_committed_poll_of_a_failed_plain_send_is_an_aborted_read() {
    let mut s = Script::default();
    s.read_committed(9);
    s.at(10).send(v(1, 0), 0, Outcome::SendFail { error: "NOT_ENOUGH_REPLICAS".into() });
    s.at(20).poll(9, &[(0, 0, v(1, 0))]);
    assert_eq!(
        s.check(),
        "no-aborted-read: partition t-0 offset 0: op 1 (process 9, 20ms..21ms) (read_committed) read p1:0, \
         whose send op 0 (process 1, 10ms..11ms) definitely failed (NOT_ENOUGH_REPLICAS)\n\
         count no-aborted-read = 1\n"
    );
}

#[test]
fn a_read_committed_poll_of_a_plain_send_of_unknown_outcome_is_fine() {
    let mut s = Script::default();
    s.read_committed(9);
    s.at(10).send(v(1, 0), 0, Outcome::SendInfo { reason: "timeout".into() });
    s.at(20).poll(9, &[(0, 0, v(1, 0))]);
    assert_eq!(s.check(), "");
}

// ---------------------------------------------------------------------------
// no-precommitted-read

/// Process 1's transaction writes p1:0 at 11ms and asks to commit at 20ms;
/// process 9 (read_committed) polls it at `read_ms`.
fn read_around_the_commit(read_ms: u64) -> Script {
    let mut s = Script::default();
    s.read_committed(9);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    if read_ms < 20 {
        s.at(read_ms).poll(9, &[(0, 0, v(1, 0))]);
    }
    s.at(20).end(t, true, committed());
    if read_ms >= 20 {
        s.at(read_ms).poll(9, &[(0, 0, v(1, 0))]);
    }
    s
}

#[test]
fn a_read_completed_before_the_commit_was_asked_for_is_precommitted() {
    assert_eq!(
        read_around_the_commit(15).check(),
        "no-precommitted-read: partition t-0 offset 0: op 2 (process 9, 15ms..16ms) (read_committed) read p1:0, \
         written by op 1 (process 1, 11ms..12ms) in transaction op 0 (process 1, 10ms..22ms) of tx-1 \
         (producer 1001, epoch 0), committed; the poll completed at 16ms, before the commit was asked for \
         (op 3 (process 1, 20ms..22ms))\n\
         count no-precommitted-read = 1\n"
    );
}

#[test]
fn a_read_completed_once_the_commit_was_asked_for_is_fine() {
    // Invoked at the instant the commit is asked, answered after it: fine,
    // even before the commit is answered.
    assert_eq!(read_around_the_commit(20).check(), "");
    assert_eq!(read_around_the_commit(40).check(), "");
}

/// Process 1's transaction writes p1:0 and stays open; process 9 reads it.
fn open_then_read() -> Script {
    let mut s = Script::default();
    s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(30).poll(9, &[(0, 0, v(1, 0))]);
    s
}

#[test]
fn a_read_committed_poll_of_an_open_transaction_is_precommitted() {
    let mut s = open_then_read();
    s.read_committed(9);
    assert_eq!(
        s.check(),
        "no-precommitted-read: partition t-0 offset 0: op 2 (process 9, 30ms..31ms) (read_committed) read p1:0, \
         written by op 1 (process 1, 11ms..12ms) in transaction op 0 (process 1, 10ms..?) of tx-1 \
         (producer 1001, epoch 0), of unknown fate (never completed); its commit was never asked for\n\
         count no-precommitted-read = 1\n"
    );
}

#[test]
fn a_read_uncommitted_poll_of_an_open_transaction_is_not_judged() {
    assert_eq!(open_then_read().check(), "");
}

#[test]
fn a_transaction_polling_its_own_uncommitted_send_is_precommitted() {
    // A consume-transform-produce process (1) reading committed sees its own send.
    let mut s = Script::default();
    s.read_committed(1);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(13).poll(1, &[(0, 0, v(1, 0))]);
    s.at(20).end(t, true, committed());
    assert_eq!(
        s.check(),
        "no-precommitted-read: partition t-0 offset 0: op 2 (process 1, 13ms..14ms) (read_committed) read p1:0, \
         written by op 1 (process 1, 11ms..12ms) in transaction op 0 (process 1, 10ms..22ms) of tx-1 \
         (producer 1001, epoch 0), committed; the poll completed at 14ms, before the commit was asked for \
         (op 3 (process 1, 20ms..22ms)); the reader's own transaction\n\
         count no-precommitted-read = 1\n"
    );
}

// ---------------------------------------------------------------------------
// no-lost-committed-write, and the drain's half of txn-atomicity

/// Process 1's transaction writes p1:0 (t-0 offset 0) and p1:1 (t-1 offset
/// 0) and ends with `outcome`; the drain (99) reads `drained` of them.
fn drained(outcome: Outcome, drained: &[(u32, i64, Value)]) -> Script {
    let mut s = Script::default();
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(1, 1), 1, 0);
    s.at(20).end(t, true, outcome);
    if !drained.is_empty() {
        s.at(100).poll(99, drained);
    }
    s.drain(99);
    s
}

#[test]
fn a_committed_write_the_read_committed_drain_missed_is_lost_and_breaks_atomicity() {
    let mut s = drained(committed(), &[(0, 0, v(1, 0))]);
    s.read_committed(99);
    assert_eq!(
        s.check(),
        "no-lost-committed-write: partition t-1 value p1:1 acked at offset 0 to op 2 (process 1, 12ms..13ms) in \
         transaction op 0 (process 1, 10ms..22ms) of tx-1 (producer 1001, epoch 0), committed was never read by \
         the read_committed drain (it read nothing of the partition)\n\
         txn-atomicity: transaction op 0 (process 1, 10ms..22ms) of tx-1 (producer 1001, epoch 0), committed: \
         the read_committed drain read 1 of its writes (p1:0 at t-0 offset 0) but not 1 acked one \
         (p1:1 at t-1 offset 0 acked to op 2 (process 1, 12ms..13ms))\n\
         count no-lost-committed-write = 1\n\
         count txn-atomicity = 1\n"
    );
}

#[test]
fn losses_are_not_judged_without_a_read_committed_drain() {
    assert_eq!(drained(committed(), &[(0, 0, v(1, 0))]).check(), "");
}

#[test]
fn a_committed_transaction_the_drain_read_whole_is_fine_and_an_aborted_one_is_not_lost() {
    let mut s = drained(committed(), &[(0, 0, v(1, 0)), (1, 0, v(1, 1))]);
    s.read_committed(99);
    assert_eq!(s.check(), "");
    let mut s = drained(aborted(), &[]);
    s.read_committed(99);
    assert_eq!(s.check(), "");
}

#[test]
fn an_unknown_fate_transaction_must_be_drained_all_or_none() {
    let mut s = drained(unknown(), &[(1, 0, v(1, 1))]);
    s.read_committed(99);
    assert_eq!(
        s.check(),
        "txn-atomicity: transaction op 0 (process 1, 10ms..22ms) of tx-1 (producer 1001, epoch 0), of unknown fate \
         (EndTxn timed out): the read_committed drain read 1 of its writes (p1:1 at t-1 offset 0) but not 1 acked \
         one (p1:0 at t-0 offset 0 acked to op 1 (process 1, 11ms..12ms))\n\
         count txn-atomicity = 1\n"
    );
    for reads in [&[][..], &[(0, 0, v(1, 0)), (1, 0, v(1, 1))][..]] {
        let mut s = drained(unknown(), reads);
        s.read_committed(99);
        assert_eq!(s.check(), "", "drained {reads:?}");
    }
}

// ---------------------------------------------------------------------------
// txn-atomicity: a reader that saw part of a transaction and stepped over the rest

/// Plain p2:0 at t-0 offset 0 and p2:1 at t-1 offset 0; process 1's
/// transaction (ending with `outcome`) writes p1:0 at t-0 offset 1 and
/// p1:1 at t-1 offset 1; plain p2:2 at t-1 offset 2.
fn two_partitions(outcome: Outcome) -> Script {
    let mut s = Script::default();
    s.read_committed(9);
    s.at(5).send_ok(v(2, 0), 0, 0);
    s.at(6).send_ok(v(2, 1), 1, 0);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 1);
    s.at(12).send_ok(v(1, 1), 1, 1);
    s.at(20).end(t, true, outcome);
    s.at(25).send_ok(v(2, 2), 1, 2);
    s
}

#[test]
fn a_reader_that_saw_part_of_a_transaction_and_stepped_over_the_rest_breaks_atomicity() {
    let mut s = two_partitions(committed());
    s.at(30).poll(9, &[(0, 0, v(2, 0)), (0, 1, v(1, 0)), (1, 0, v(2, 1))]);
    s.at(40).poll(9, &[(1, 2, v(2, 2))]);
    assert_eq!(
        s.check(),
        "txn-atomicity: process 9 read p1:0 of transaction op 2 (process 1, 10ms..22ms) of tx-1 (producer 1001, \
         epoch 0), committed (partition t-0 offset 1, op 7 (process 9, 30ms..31ms)), but its walk through \
         partition t-1 went from offset 0 to offset 2 (op 8 (process 9, 40ms..41ms)) over the transaction's \
         p1:1 at offset 1, which it never read\n\
         count txn-atomicity = 1\n"
    );
}

#[test]
fn a_reader_that_read_the_whole_transaction_or_sought_past_it_is_fine() {
    let mut s = two_partitions(committed());
    s.at(30).poll(9, &[(0, 0, v(2, 0)), (0, 1, v(1, 0)), (1, 0, v(2, 1))]);
    s.at(40).poll(9, &[(1, 1, v(1, 1)), (1, 2, v(2, 2))]);
    assert_eq!(s.check(), "");
    let mut s = two_partitions(committed());
    s.at(30).poll(9, &[(0, 0, v(2, 0)), (0, 1, v(1, 0)), (1, 0, v(2, 1))]);
    s.at(35).seek(9, 1, 2);
    s.at(40).poll(9, &[(1, 2, v(2, 2))]);
    assert_eq!(s.check(), "");
}

#[test]
fn stepping_over_an_aborted_transaction_it_did_not_read_is_fine() {
    let mut s = two_partitions(aborted());
    s.at(30).poll(9, &[(0, 0, v(2, 0)), (1, 0, v(2, 1))]);
    s.at(40).poll(9, &[(1, 2, v(2, 2))]);
    assert_eq!(s.check(), "");
}

// ---------------------------------------------------------------------------
// The checkers of absence and gaps (lost-write, unseen, poll-skip,
// at-least-once-consumption) on transactional histories: an aborted
// transaction's values are never expected, an unknown-fate one's are not
// judged, and a read_committed reader steps over both.

const GAPS: &[Invariant] = &[
    Invariant::LostWrite,
    Invariant::Unseen,
    Invariant::PollSkip,
    Invariant::NoLostCommittedWrite,
    Invariant::AtLeastOnceConsumption,
];

/// In t-0: plain p2:0 at offset 0; process 1's first transaction writes
/// p1:0 at 1 (its marker at 2); plain p2:1 at 3; its second writes p1:1 at
/// 4 (marker at 5), the end of the log. Both transactions end with
/// `outcome` (asked to commit unless it is an abort).
fn transactions_between(outcome: Outcome) -> Script {
    let commit = !matches!(outcome, Outcome::TxnAborted { .. });
    let mut s = Script::default();
    s.at(5).send_ok(v(2, 0), 0, 0);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 1);
    s.at(20).end(t, commit, outcome.clone());
    s.at(25).send_ok(v(2, 1), 0, 3);
    let t = s.at(30).begin(1);
    s.at(31).send_ok(v(1, 1), 0, 4);
    s.at(40).end(t, commit, outcome);
    s
}

/// `transactions_between`, read as a read_committed reader reads it when
/// the transactions did not commit: process 9 polls offset 0, then offset
/// 3; the drain (99, reading committed) reads 0 and 3 in one poll.
fn read_around_transactions(outcome: Outcome) -> Script {
    let mut s = transactions_between(outcome);
    s.read_committed(9).read_committed(99).drain(99);
    s.at(50).poll(9, &[(0, 0, v(2, 0))]);
    s.at(60).poll(9, &[(0, 3, v(2, 1))]);
    s.at(100).poll(99, &[(0, 0, v(2, 0)), (0, 3, v(2, 1))]);
    s
}

#[test]
fn an_aborted_or_unknown_fate_transactions_unread_sends_are_neither_lost_nor_skipped_by_read_committed_readers() {
    assert_eq!(read_around_transactions(aborted()).check_only(GAPS), "");
    assert_eq!(read_around_transactions(unknown()).check_only(GAPS), "");
}

#[test]
fn a_committed_transactions_unread_sends_are_lost_unseen_and_skipped() {
    assert_eq!(
        read_around_transactions(committed()).check_only(GAPS),
        "lost-write: partition t-0 value p1:0 acked at offset 1 to op 2 (process 1, 11ms..12ms) in transaction \
         op 1 (process 1, 10ms..22ms) of tx-1 (producer 1001, epoch 0), committed was never read, though reads \
         reached offset 3 (op 9 (process 9, 60ms..61ms))\n\
         unseen: partition t-0 value p1:1 acked at offset 4 to op 6 (process 1, 31ms..32ms) in transaction \
         op 5 (process 1, 30ms..42ms) of tx-1 (producer 1001, epoch 0), committed was never read; reads reached \
         only offset 3 (op 9 (process 9, 60ms..61ms))\n\
         poll-skip: partition t-0 process 9: poll op 8 (process 9, 50ms..51ms) ended at offset 0 and the next \
         poll op 9 (process 9, 60ms..61ms) started at offset 3, skipping 1 known offset in 1..=2 (offset 1 holds p1:0)\n\
         poll-skip: partition t-0 process 99: within one poll op 10 (process 99, 100ms..101ms), offset 0 was \
         followed by offset 3, skipping 1 known offset in 1..=2 (offset 1 holds p1:0)\n\
         no-lost-committed-write: partition t-0 value p1:0 acked at offset 1 to op 2 (process 1, 11ms..12ms) in \
         transaction op 1 (process 1, 10ms..22ms) of tx-1 (producer 1001, epoch 0), committed was never read by \
         the read_committed drain (it read the partition up to offset 3)\n\
         no-lost-committed-write: partition t-0 value p1:1 acked at offset 4 to op 6 (process 1, 31ms..32ms) in \
         transaction op 5 (process 1, 30ms..42ms) of tx-1 (producer 1001, epoch 0), committed was never read by \
         the read_committed drain (it read the partition up to offset 3)\n\
         count lost-write = 1\n\
         count unseen = 1\n\
         count poll-skip = 2\n\
         count no-lost-committed-write = 2\n"
    );
}

#[test]
fn an_unknown_fate_transaction_a_read_committed_reader_saw_has_committed() {
    // The drain returned p1:0, so the first transaction committed and
    // process 9 skipped it; the second stays undecided.
    let mut s = transactions_between(unknown());
    s.read_committed(9).read_committed(99).drain(99);
    s.at(50).poll(9, &[(0, 0, v(2, 0))]);
    s.at(60).poll(9, &[(0, 3, v(2, 1))]);
    s.at(100).poll(99, &[(0, 0, v(2, 0)), (0, 1, v(1, 0)), (0, 3, v(2, 1))]);
    assert_eq!(
        s.check_only(GAPS),
        "poll-skip: partition t-0 process 9: poll op 8 (process 9, 50ms..51ms) ended at offset 0 and the next \
         poll op 9 (process 9, 60ms..61ms) started at offset 3, skipping 1 known offset in 1..=2 (offset 1 holds p1:0)\n\
         count poll-skip = 1\n"
    );
    assert_eq!(s.check(), "");
}

#[test]
fn a_read_uncommitted_reader_jumping_over_an_aborted_transaction_skips() {
    // Process 8 reads uncommitted: it is served p1:0 at offset 1, so
    // stepping over it is a skip; not reading it loses nothing.
    let mut s = transactions_between(aborted());
    s.at(50).poll(8, &[(0, 0, v(2, 0))]);
    s.at(60).poll(8, &[(0, 3, v(2, 1))]);
    assert_eq!(
        s.check_only(GAPS),
        "poll-skip: partition t-0 process 8: poll op 8 (process 8, 50ms..51ms) ended at offset 0 and the next \
         poll op 9 (process 8, 60ms..61ms) started at offset 3, skipping 1 known offset in 1..=2 (offset 1 holds p1:0)\n\
         count poll-skip = 1\n"
    );
}

#[test]
fn a_read_committed_reader_stepping_over_aborted_records_and_a_visible_one_skips_the_visible_one() {
    let mut s = transactions_between(aborted());
    s.read_committed(9);
    s.at(45).send_ok(v(2, 2), 0, 6);
    s.at(50).poll(9, &[(0, 0, v(2, 0))]);
    s.at(60).poll(9, &[(0, 6, v(2, 2))]);
    s.at(70).poll(7, &[(0, 3, v(2, 1))]);
    assert_eq!(
        s.check_only(GAPS),
        "poll-skip: partition t-0 process 9: poll op 9 (process 9, 50ms..51ms) ended at offset 0 and the next \
         poll op 10 (process 9, 60ms..61ms) started at offset 6, skipping 1 known offset in 1..=5 (offset 3 holds \
         p2:1); it reads committed, and 2 more offsets held only values of transactions not known to have committed\n\
         count poll-skip = 1\n"
    );
}

/// `transactions_between`, consumed by group member 5: it processes what
/// a read_committed reader is served (offsets 0 and 3) and commits offset
/// 6, past both transactions.
fn group_around_transactions(outcome: Outcome) -> Script {
    let mut s = transactions_between(outcome);
    let partitions = vec![part(0)];
    let joined = Call::Joined(Box::new(crate::history::Joined {
        group: "g".into(),
        generation: 1,
        member: "m5".into(),
        partitions,
    }));
    let op = s.history.invoke(5, 45 * MS, joined);
    s.history.complete(op, 45 * MS, Outcome::Ok);
    let records = [(0, 0, v(2, 0)), (0, 3, v(2, 1))];
    s.at(50).poll(5, &records);
    let records: Vec<Polled> =
        records.iter().map(|&(p, offset, value)| Polled { partition: part(p), offset, value }).collect();
    let op = s.history.invoke(5, 52 * MS, Call::Process { records });
    s.history.complete(op, 53 * MS, Outcome::Ok);
    let commit = Call::Commit(Box::new(crate::history::Commit {
        group: "g".into(),
        generation: 1,
        member: Some("m5".into()),
        offsets: vec![(part(0), 6)],
    }));
    let op = s.history.invoke(5, 55 * MS, commit);
    s.history.complete(op, 56 * MS, Outcome::Ok);
    s
}

#[test]
fn a_read_committed_group_need_not_process_records_of_transactions_not_known_to_have_committed() {
    for outcome in [aborted(), unknown()] {
        let mut s = group_around_transactions(outcome);
        s.read_committed(5);
        assert_eq!(s.check_only(GAPS), "");
    }
}

#[test]
fn a_read_uncommitted_group_or_a_committed_transaction_must_have_its_records_processed() {
    let expected = "at-least-once-consumption: group g partition t-0: offset 1 is below the committed offset 6 \
                    (op 11 (process 5, 55ms..56ms)) but no member finished processing it\n\
                    at-least-once-consumption: group g partition t-0: offset 4 is below the committed offset 6 \
                    (op 11 (process 5, 55ms..56ms)) but no member finished processing it\n\
                    count at-least-once-consumption = 2\n";
    // Reading uncommitted, the member was served the aborted records: it
    // skipped them (a poll-skip too).
    let s = group_around_transactions(aborted());
    assert_eq!(s.check_only(&[Invariant::AtLeastOnceConsumption]), expected);
    // Reading committed, it was served the committed ones.
    let mut s = group_around_transactions(committed());
    s.read_committed(5);
    assert_eq!(s.check_only(&[Invariant::AtLeastOnceConsumption]), expected);
}

// ---------------------------------------------------------------------------
// Model-based: a clean transactional history, then one mutation.

/// One slot of a model partition log.
#[derive(Clone, Copy)]
enum Slot {
    /// A value, and the transaction (index) that wrote it.
    Record(Value, Option<usize>),
    /// A transaction's commit or abort marker: an offset with no value.
    Marker,
}

/// A clean history: transactional producers (processes 1..=3) run one
/// transaction at a time, each sending to random partitions and ending in
/// a commit (most) or an abort, with markers written where it wrote (a
/// few are recorded as of unknown fate, `TxnInfo`, and the last may never
/// complete); a plain producer (4) sends between transactions (a plain
/// record landing between two of a transaction's records is a ww cycle,
/// which Kafka allows: see `dependencies`); consumer 9 reads committed — up
/// to the LSO, skipping aborted records and markers —, consumer 8 reads
/// uncommitted — up to the log end, skipping only markers —, and the drain
/// (99) reads committed from the start at the end.
pub(super) fn model_txn_history(seed: u64, steps: usize) -> History {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    const PARTITIONS: usize = 3;
    let mut s = Script::default();
    s.read_committed(9).read_committed(99).drain(99);
    let mut logs: Vec<Vec<Slot>> = vec![Vec::new(); PARTITIONS];
    // Per transaction: committed (true), aborted (false), open (none).
    let mut fates: Vec<Option<bool>> = Vec::new();
    // The open transaction: its op, its index, and per partition its first offset there.
    let mut open: Option<(u64, usize, [Option<usize>; PARTITIONS])> = None;
    let mut counters = [0u32; 5];
    // Per consumer (9, then 8), its position in each partition.
    let mut positions = [[0usize; PARTITIONS]; 2];
    let mut now = 0;
    let mut tick = |by: u64| {
        now += by;
        now
    };
    // Ends the open transaction, with a marker where it wrote; `told`:
    // whether its producer learns the outcome (else it is of unknown fate).
    let end = |s: &mut Script, logs: &mut [Vec<Slot>], fates: &mut [Option<bool>], txn, commit: bool, told: bool| {
        let (op, t, first): (u64, usize, [Option<usize>; PARTITIONS]) = txn;
        let outcome = match (told, commit) {
            (false, _) => unknown(),
            (true, true) => committed(),
            (true, false) => aborted(),
        };
        s.end(op, commit, outcome);
        fates[t] = Some(commit);
        for (log, wrote) in logs.iter_mut().zip(first) {
            if wrote.is_some() {
                log.push(Slot::Marker);
            }
        }
    };
    for _ in 0..steps {
        match rng.gen_range(0..4) {
            0 => match open.take() {
                None => {
                    let process = rng.gen_range(1..=3u32);
                    open = Some((s.at(tick(1)).begin(process), fates.len(), [None; PARTITIONS]));
                    fates.push(None);
                }
                Some(txn) => {
                    let (commit, told) = (rng.gen_bool(0.75), rng.gen_bool(0.9));
                    end(s.at(tick(1)), &mut logs, &mut fates, txn, commit, told)
                }
            },
            1 | 2 => {
                let p = rng.gen_range(0..PARTITIONS);
                let (process, txn) = match &mut open {
                    Some((op, t, first)) if rng.gen_bool(0.8) => {
                        first[p].get_or_insert(logs[p].len());
                        (s.history.ops[*op as usize].process, Some(*t))
                    }
                    None => (4, None),
                    Some(_) => continue,
                };
                let value = v(process, counters[process as usize]);
                counters[process as usize] += 1;
                s.at(tick(1)).send_ok(value, p as u32, logs[p].len() as i64);
                tick(1);
                logs[p].push(Slot::Record(value, txn));
            }
            _ => {
                let read_committed = rng.gen_bool(0.7);
                let position = &mut positions[usize::from(!read_committed)];
                let mut records = Vec::new();
                for (p, log) in logs.iter().enumerate() {
                    // The LSO (the open transaction's first record here), or the log end.
                    let lso = open.and_then(|(_, _, first)| first[p]).filter(|_| read_committed);
                    let end = lso.unwrap_or(log.len()).min(position[p] + rng.gen_range(0..4)).max(position[p]);
                    for (offset, slot) in log.iter().enumerate().take(end).skip(position[p]) {
                        match *slot {
                            Slot::Record(_, Some(t)) if read_committed && fates[t] != Some(true) => {}
                            Slot::Record(value, _) => records.push((p as u32, offset as i64, value)),
                            Slot::Marker => {}
                        }
                    }
                    position[p] = end;
                }
                s.at(tick(1)).poll(if read_committed { 9 } else { 8 }, &records);
                tick(1);
            }
        }
    }
    // The last transaction commits, or never completes (its records stay
    // above the LSO).
    if let Some(txn) = open.filter(|_| rng.gen_bool(0.5)) {
        end(s.at(tick(1)), &mut logs, &mut fates, txn, true, true);
    }
    let at = tick(10);
    let mut records = Vec::new();
    for (p, log) in logs.iter().enumerate() {
        for (offset, slot) in log.iter().enumerate() {
            match *slot {
                Slot::Record(value, None) => records.push((p as u32, offset as i64, value)),
                Slot::Record(value, Some(t)) if fates[t] == Some(true) => {
                    records.push((p as u32, offset as i64, value))
                }
                _ => {}
            }
        }
    }
    s.at(at).poll(99, &records);
    s.history
}

const TXN_INVARIANTS: &[Invariant] = &[
    Invariant::NoAbortedRead,
    Invariant::NoPrecommittedRead,
    Invariant::NoLostCommittedWrite,
    Invariant::TxnAtomicity,
    Invariant::G0,
    Invariant::G1c,
    Invariant::GSingle,
    Invariant::G2,
];

/// The judged transaction invariants' non-zero counts. g-single and g2 are
/// left out: the model's consumer reads a few records of each partition per
/// poll, so it may see a transaction in one partition and not yet in
/// another — read skew, which read_committed allows.
fn txn_counts(history: &History) -> Vec<(Invariant, u64)> {
    let report = check_history(history);
    let judged = TXN_INVARIANTS.iter().filter(|i| i.holds_by_default());
    judged.map(|&i| (i, report.count(i))).filter(|&(_, n)| n > 0).collect()
}

/// Every invariant's non-zero count but g-single's and g2's (read skew, as
/// above), with the evidence: the checkers written before transactions
/// (lost-write, unseen, poll-skip, ...) must be as clean as the
/// transaction checkers on a clean transactional history.
fn all_counts(history: &History) -> (Vec<(Invariant, u64)>, String) {
    let report = check_history(history);
    let counted = Invariant::ALL.iter().filter(|&&i| !matches!(i, Invariant::GSingle | Invariant::G2));
    let counts = counted.map(|&i| (i, report.count(i))).filter(|&(_, n)| n > 0).collect();
    (counts, render(&report))
}

proptest::proptest! {
    #[test]
    fn model_transactional_histories_are_clean(seed in proptest::prelude::any::<u64>(), steps in 0..200usize) {
        let history = model_txn_history(seed, steps);
        let (counts, report) = all_counts(&history);
        proptest::prop_assert_eq!(counts, vec![], "{}", report);
    }

    #[test]
    fn a_committed_transaction_recorded_as_aborted_is_an_aborted_read(seed in proptest::prelude::any::<u64>()) {
        let mut history = model_txn_history(seed, 200);
        // The first committed transaction that wrote something (the drain read it).
        let txn = history.ops.iter().position(|op| {
            op.outcome == Some(Outcome::TxnCommitted)
                && matches!(op.call, Call::Txn { .. })
                && history.ops.iter().any(|o| o.process == op.process && matches!(o.call, Call::Send { .. }) && o.invoke_ns > op.invoke_ns && o.invoke_ns < op.complete_ns().unwrap())
        });
        proptest::prop_assume!(txn.is_some());
        history.ops[txn.unwrap()].outcome = Some(aborted());
        let counts = txn_counts(&history);
        proptest::prop_assert!(counts.iter().any(|&(i, _)| i == Invariant::NoAbortedRead), "{counts:?}");
    }
}

#[test]
fn large_model_transactional_history_is_clean() {
    // Sub-second; a quadratic step would take minutes here. Measured, not
    // timed: read with `cargo test --release -p sim --lib large_model_transactional -- --nocapture`.
    let history = model_txn_history(11, 200_000);
    assert!(history.ops.len() > 150_000);
    let start = std::time::Instant::now();
    let (counts, report) = all_counts(&history);
    assert_eq!(counts, vec![], "{report}");
    let report = check_history(&history);
    println!(
        "check_history: {} ops, {} transactions: {:?} (g-single {}, g2 {})",
        history.ops.len(),
        history.ops.iter().filter(|op| matches!(op.call, Call::Txn { .. })).count(),
        start.elapsed() / 2,
        report.count(Invariant::GSingle),
        report.count(Invariant::G2),
    );
}
