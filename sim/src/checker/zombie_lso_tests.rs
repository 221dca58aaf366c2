//! zombie-fenced and the history half of lso on handmade histories: each
//! finding has a firing history and a near-identical clean twin.

use super::txn_tests::{committed, unknown, v, Script};
use super::Invariant;

const ZOMBIE: &[Invariant] = &[Invariant::ZombieFenced];
const LSO: &[Invariant] = &[Invariant::Lso];

/// `expected` with each line's indentation trimmed, blank lines dropped.
fn lines(expected: &str) -> String {
    expected.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect()
}

/// Process 1 initialises `orders` (producer 7, epoch 0), begins a
/// transaction at 10ms and writes p1:0 to t-0 offset 0; process 2
/// initialises epoch 1 at 20ms. Returns the script and the transaction.
fn fenced_at_20ms() -> (Script, u64) {
    let mut s = Script::default();
    s.read_committed(9);
    s.at(0).init(1, "orders", 7, 0);
    let t = s.at(10).begin_as(1, "orders", 7, 0);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(20).init(2, "orders", 7, 1);
    (s, t)
}

#[test]
fn a_commit_after_a_newer_incarnation_initialised_is_a_zombie() {
    // The zombie's second write is acked at 31ms, after epoch 1 initialised at 20ms,
    // and its application is told it committed.
    let (mut s, t) = fenced_at_20ms();
    s.at(30).send_ok(v(1, 1), 0, 1);
    s.at(32).end(t, true, committed());
    assert_eq!(
        s.check_only(ZOMBIE),
        lines(
            r#"
        zombie-fenced: transaction op 1 (process 1, 10ms..34ms) of orders (producer 7, epoch 0), committed: it committed (its commit was answered), yet its commit was asked for (op 5 (process 1, 32ms..34ms)) at 32ms, after a newer incarnation of orders initialised in epoch 1 (op 3 (process 2, 20ms..20ms), answered at 20ms)
        count zombie-fenced = 1
    "#
        )
    );
    // Its twin committed before the newer incarnation initialised.
    let mut s = Script::default();
    s.read_committed(9);
    s.at(0).init(1, "orders", 7, 0);
    let t = s.at(10).begin_as(1, "orders", 7, 0);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(1, 1), 0, 1);
    s.at(14).end(t, true, committed());
    s.at(20).init(2, "orders", 7, 1);
    s.at(40).poll(9, &[(0, 0, v(1, 0)), (0, 1, v(1, 1))]);
    assert_eq!(s.check_only(ZOMBIE), "");
}

#[test]
fn a_zombie_write_read_committed_is_found_though_its_fate_is_unknown() {
    // Fenced at EndTxn (unknown fate), but a read_committed reader returned
    // the write acked after the newer init: something committed it.
    let (mut s, t) = fenced_at_20ms();
    s.at(30).send_ok(v(1, 1), 1, 0);
    s.at(32).end(t, true, unknown());
    s.at(50).poll(9, &[(1, 0, v(1, 1))]);
    assert_eq!(
        s.check_only(ZOMBIE),
        lines(
            r#"
        zombie-fenced: transaction op 1 (process 1, 10ms..34ms) of orders (producer 7, epoch 0), of unknown fate (EndTxn timed out): it committed (op 6 (process 9, 50ms..51ms) read committed p1:1 at partition t-1 offset 0), yet its commit was asked for (op 5 (process 1, 32ms..34ms)) at 32ms, after a newer incarnation of orders initialised in epoch 1 (op 3 (process 2, 20ms..20ms), answered at 20ms)
        count zombie-fenced = 1
    "#
        )
    );
    // Unread and of unknown fate: nothing says it committed.
    let mut s = Script::default();
    s.read_committed(9);
    s.at(0).init(1, "orders", 7, 0);
    let t = s.at(10).begin_as(1, "orders", 7, 0);
    s.at(20).init(2, "orders", 7, 1);
    s.at(30).send_ok(v(1, 1), 1, 0);
    s.at(32).end(t, true, unknown());
    assert_eq!(s.check_only(ZOMBIE), "");
}

#[test]
fn only_a_newer_epoch_of_the_same_producer_fences() {
    // Process 1's incarnation is epoch 1 of producer 7; process 3's init at
    // 20ms is the only other one; the transaction commits at 32ms.
    let fenced_by = |id: &str, producer_id: i64, epoch: i16| {
        let mut s = Script::default();
        s.at(0).init(2, "orders", 7, 0);
        s.at(5).init(1, "orders", 7, 1);
        let t = s.at(10).begin_as(1, "orders", 7, 1);
        s.at(20).init(3, id, producer_id, epoch);
        s.at(30).send_ok(v(1, 0), 0, 0);
        s.at(32).end(t, true, committed());
        s.check_only(ZOMBIE)
    };
    // Its own epoch, an older one, another producer id, another transactional id: not newer.
    assert_eq!(fenced_by("orders", 7, 1), "");
    assert_eq!(fenced_by("orders", 7, 0), "");
    assert_eq!(fenced_by("orders", 8, 5), "");
    assert_eq!(fenced_by("payments", 7, 2), "");
    assert!(fenced_by("orders", 7, 2).contains("count zombie-fenced = 1"));
}

#[test]
fn a_committed_transaction_that_wrote_nothing_is_not_judged() {
    // Its commit never reached the coordinator (no partition was added).
    let mut s = Script::default();
    s.at(0).init(1, "orders", 7, 0);
    let t = s.at(10).begin_as(1, "orders", 7, 0);
    s.at(20).init(2, "orders", 7, 1);
    s.at(32).end(t, true, committed());
    assert_eq!(s.check_only(ZOMBIE), "");
}

// ---------------------------------------------------------------------------
// lso: reads past a transaction still open below.

#[test]
fn a_read_committed_poll_past_an_open_transaction_is_past_the_lso() {
    // Transaction of process 1 holds offset 0 from 10ms until its commit is
    // asked at 20ms; process 2's plain value sits at offset 1. A
    // read_committed poll returning offset 1 at 16ms read past the LSO.
    let story = |poll_ms: u64| {
        let mut s = Script::default();
        s.read_committed(9);
        let t = s.at(10).begin(1);
        s.at(11).send_ok(v(1, 0), 0, 0);
        s.at(12).send_ok(v(2, 0), 0, 1);
        s.at(poll_ms).poll(9, &[(0, 1, v(2, 0))]);
        s.at(20).end(t, true, committed());
        s
    };
    assert_eq!(
        story(15).check_only(LSO),
        lines(
            r#"
        lso: partition t-0 offset 1: op 3 (process 9, 15ms..16ms) (read_committed, completed at 16ms) read p2:0, past transaction op 0 (process 1, 10ms..22ms) of tx-1 (producer 1001, epoch 0), committed whose record at offset 0 stayed open until its end was asked for at 20ms (op 4 (process 1, 20ms..22ms)): the last stable offset was at most 0
        count lso = 1
    "#
        )
    );
    // The same poll after the commit was asked for: the LSO may have passed.
    let mut s = Script::default();
    s.read_committed(9);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(2, 0), 0, 1);
    s.at(20).end(t, true, committed());
    s.at(25).poll(9, &[(0, 1, v(2, 0))]);
    assert_eq!(s.check_only(LSO), "");
}

#[test]
fn lso_uses_only_transactions_their_application_ended() {
    // Process 1's transaction writes to `partition` at 11ms and ends at
    // 20ms with `outcome`; a read_committed poll returns process 2's plain
    // value at t-0 offset 1 at 15ms.
    let story = |partition: u32, commit: bool, outcome: super::super::history::Outcome| {
        let mut s = Script::default();
        s.read_committed(9);
        let t = s.at(10).begin(1);
        s.at(11).send_ok(v(1, 0), partition, 0);
        s.at(12).send_ok(v(2, 0), 0, 1);
        s.at(15).poll(9, &[(0, 1, v(2, 0))]);
        s.at(20).end(t, commit, outcome);
        s.check_only(LSO)
    };
    // Of unknown fate and never read: the coordinator may have aborted it
    // early (a timeout), moving the LSO on; not judged.
    assert_eq!(story(0, true, unknown()), "");
    // Aborted as asked: it was open until then.
    assert!(story(0, false, super::txn_tests::aborted()).contains("count lso = 1"));
    // Another partition's open transaction says nothing of this one.
    assert_eq!(story(1, true, committed()), "");
}

#[test]
fn a_transaction_read_before_its_commit_is_precommitted_not_past_the_lso() {
    // Its own second record read early is no-precommitted-read's finding.
    let mut s = Script::default();
    s.read_committed(9);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(1, 1), 0, 1);
    s.at(15).poll(9, &[(0, 0, v(1, 0)), (0, 1, v(1, 1))]);
    s.at(20).end(t, true, committed());
    let found = s.check_only(&[Invariant::Lso, Invariant::NoPrecommittedRead]);
    assert!(!found.contains("count lso"), "{found}");
    assert!(found.contains("count no-precommitted-read = 2"), "{found}");
}
