//! Checker tests as data: a handmade history, the report rendered as text,
//! the expected text. Each anomaly has a firing history and a near-identical
//! clean twin; a model-generated clean history is then mutated one way at a
//! time and must fire the matching invariant.

use super::{check_history, CheckReport, Invariant, MAX_EVIDENCE};
use crate::history::{Call, History, Outcome, Partition, Polled, ProcessId, SeekCause, Value};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub(super) const MS: u64 = 1_000_000;

/// Builds histories on a clock that moves 5ms per event.
#[derive(Default)]
struct Script {
    history: History,
    now_ns: u64,
}

pub(super) fn part(partition: u32) -> Partition {
    Partition { topic: "t".into(), partition }
}

fn v(process: ProcessId, counter: u32) -> Value {
    Value::new(process, counter)
}

impl Script {
    fn tick(&mut self) -> u64 {
        self.now_ns += 5 * MS;
        self.now_ns
    }

    fn invoke(&mut self, process: ProcessId, call: Call) -> u64 {
        let now = self.tick();
        self.history.invoke(process, now, call)
    }

    fn complete(&mut self, op: u64, outcome: Outcome) {
        let now = self.tick();
        self.history.complete(op, now, outcome);
    }

    /// Invokes a send of `value` to partition `partition` (no completion yet).
    fn send(&mut self, value: Value, partition: u32) -> u64 {
        let call = Call::Send { topic: "t".into(), partition: Some(partition), value };
        self.invoke(value.process(), call)
    }

    fn ack(&mut self, op: u64, partition: u32, offset: i64) {
        self.complete(op, Outcome::SendOk { partition: part(partition), offset });
    }

    fn send_ok(&mut self, value: Value, partition: u32, offset: i64) -> u64 {
        let op = self.send(value, partition);
        self.ack(op, partition, offset);
        op
    }

    /// One ok poll returning `records` of partition `partition`.
    fn poll(&mut self, process: ProcessId, partition: u32, records: &[(i64, Value)]) -> u64 {
        let records = records.iter().map(|&(offset, value)| Polled { partition: part(partition), offset, value });
        self.poll_records(process, records.collect())
    }

    fn poll_records(&mut self, process: ProcessId, records: Vec<Polled>) -> u64 {
        let op = self.invoke(process, Call::Poll);
        self.complete(op, Outcome::PollOk { records });
        op
    }

    fn assign(&mut self, process: ProcessId, partitions: &[u32]) {
        let op = self.invoke(process, Call::Assign { partitions: partitions.iter().map(|&p| part(p)).collect() });
        self.complete(op, Outcome::Ok);
    }

    fn seek(&mut self, process: ProcessId, partition: u32, offset: i64) {
        self.seek_for(process, partition, offset, SeekCause::Explicit);
    }

    fn seek_for(&mut self, process: ProcessId, partition: u32, offset: i64, cause: SeekCause) {
        let op = self
            .invoke(process, Call::Seek(Box::new(crate::history::Seek { partition: part(partition), offset, cause })));
        self.complete(op, Outcome::Ok);
    }

    /// The report without no-corrupt-read: these hand-made histories read
    /// values they never bothered to send (that checker has its own tests).
    fn check(&self) -> String {
        let mut report = check_history(&self.history);
        report.violations.retain(|v| v.invariant != Invariant::NoCorruptRead);
        report.counts.remove(&Invariant::NoCorruptRead);
        render(&report)
    }
}

/// Every listed violation, then every non-zero count (shared with the replica checkers' tests).
pub(super) fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    for violation in &report.violations {
        writeln!(out, "{}: {}", violation.invariant, violation.detail).unwrap();
    }
    for (invariant, count) in report.counts.iter().filter(|(_, &n)| n > 0) {
        writeln!(out, "count {invariant} = {count}").unwrap();
    }
    if report.reordered_sends > 0 {
        writeln!(out, "reordered sends = {}", report.reordered_sends).unwrap();
    }
    if report.truncations_detected > 0 {
        writeln!(out, "truncations detected = {}", report.truncations_detected).unwrap();
    }
    out
}

/// Three acked values on partition 0 at offsets 0..3, as the base of most cases.
fn three_acked() -> Script {
    let mut s = Script::default();
    for counter in 0..3 {
        s.send_ok(v(1, counter), 0, counter as i64);
    }
    s
}

#[test]
fn empty_history_is_clean_and_reports_every_judged_invariant() {
    let report = check_history(&History::default());
    assert!(report.violations.is_empty());
    assert_eq!(report.counts.len(), 25);
    assert!(report.counts.values().all(|&n| n == 0));
    assert!(!report.counts.contains_key(&Invariant::DrainIncomplete));
    assert!(!report.counts.contains_key(&Invariant::Crash));
}

#[test]
fn inconsistent_offsets_names_both_values_and_their_witnesses() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(2, 7)), (2, v(1, 2))]);
    s.poll(8, 0, &[(0, v(1, 0)), (1, v(2, 7))]);
    s.poll(7, 0, &[(1, v(1, 1))]);
    insta::assert_snapshot!(s.check(), @r"
    inconsistent-offsets: partition t-0 offset 1 holds 2 values: p1:1 (read by op 5 (process 7, 55ms..60ms), acked to op 1 (process 1, 15ms..20ms)); p2:7 (read by op 3 (process 9, 35ms..40ms) and 1 more read)
    count inconsistent-offsets = 1
    ");
}

#[test]
fn consistent_offsets_are_clean() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    s.poll(8, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    assert_eq!(s.check(), "");
}

#[test]
fn inconsistent_offsets_from_acks_alone() {
    let mut s = Script::default();
    s.send_ok(v(1, 0), 0, 0);
    s.send_ok(v(2, 0), 0, 0);
    s.poll(9, 0, &[(0, v(1, 0))]);
    // p2:0 also sits at or below the highest read, and no poll returned it.
    assert_eq!(
        s.check(),
        "inconsistent-offsets: partition t-0 offset 0 holds 2 values: \
         p1:0 (read by op 2 (process 9, 25ms..30ms), acked to op 0 (process 1, 5ms..10ms)); \
         p2:0 (acked to op 1 (process 2, 15ms..20ms))\n\
         lost-write: partition t-0 value p2:0 acked at offset 0 to op 1 (process 2, 15ms..20ms) was never read, \
         though reads reached offset 0 (op 2 (process 9, 25ms..30ms))\n\
         count inconsistent-offsets = 1\n\
         count lost-write = 1\n"
    );
}

#[test]
fn duplicate_counts_each_value_once() {
    let mut s = three_acked();
    s.send_ok(v(1, 3), 0, 3);
    // p1:1 also shows up at offsets 3 and 4: one duplicate value, three offsets.
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    s.poll(8, 0, &[(3, v(1, 1)), (4, v(1, 1))]);
    // Offset 3 was acked as p1:3 but read as p1:1, so p1:3 is also lost.
    assert_eq!(
        s.check(),
        "inconsistent-offsets: partition t-0 offset 3 holds 2 values: \
         p1:1 (read by op 5 (process 8, 55ms..60ms)); p1:3 (acked to op 3 (process 1, 35ms..40ms))\n\
         duplicate: partition t-0 value p1:1 at 3 offsets: \
         1 (read by op 4 (process 9, 45ms..50ms), acked to op 1 (process 1, 15ms..20ms)); \
         3 (read by op 5 (process 8, 55ms..60ms)); 4 (read by op 5 (process 8, 55ms..60ms))\n\
         lost-write: partition t-0 value p1:3 acked at offset 3 to op 3 (process 1, 35ms..40ms) was never read, \
         though reads reached offset 4 (op 5 (process 8, 55ms..60ms))\n\
         count inconsistent-offsets = 1\n\
         count duplicate = 1\n\
         count lost-write = 1\n"
    );
}

#[test]
fn a_duplicate_of_an_idempotent_producer_is_judged_no_duplicate() {
    let mut s = three_acked();
    s.history.idempotent_producers.push(1);
    // A retry written twice: p1:2 at offsets 2 and 3.
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2)), (3, v(1, 2))]);
    assert_eq!(
        s.check(),
        "duplicate: partition t-0 value p1:2 at 2 offsets: \
         2 (read by op 3 (process 9, 35ms..40ms), acked to op 2 (process 1, 25ms..30ms)); \
         3 (read by op 3 (process 9, 35ms..40ms))\n\
         no-duplicate: partition t-0 value p1:2 at 2 offsets: \
         2 (read by op 3 (process 9, 35ms..40ms), acked to op 2 (process 1, 25ms..30ms)); \
         3 (read by op 3 (process 9, 35ms..40ms)); its producer (process 1) is idempotent\n\
         count duplicate = 1\n\
         count no-duplicate = 1\n"
    );
}

#[test]
fn value_read_again_at_its_own_offset_is_no_duplicate() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    s.assign(9, &[0]);
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    assert_eq!(s.check(), "");
}

#[test]
fn lost_write_below_the_highest_read() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0))]);
    s.seek(8, 0, 2);
    s.poll(8, 0, &[(2, v(1, 2))]);
    assert_eq!(
        s.check(),
        "lost-write: partition t-0 value p1:1 acked at offset 1 to op 1 (process 1, 15ms..20ms) was never read, \
         though reads reached offset 2 (op 5 (process 8, 55ms..60ms))\n\
         count lost-write = 1\n"
    );
}

#[test]
fn value_read_by_anyone_is_not_lost() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0))]);
    s.seek(8, 0, 2);
    s.poll(8, 0, &[(2, v(1, 2))]);
    s.seek(7, 0, 1);
    s.poll(7, 0, &[(1, v(1, 1))]);
    assert_eq!(s.check(), "");
}

#[test]
fn unseen_above_the_highest_read_is_not_also_lost() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    s.send_ok(v(2, 0), 1, 0);
    assert_eq!(
        s.check(),
        "unseen: partition t-0 value p1:2 acked at offset 2 to op 2 (process 1, 25ms..30ms) was never read; \
         reads reached only offset 1 (op 3 (process 9, 35ms..40ms))\n\
         unseen: partition t-1 value p2:0 acked at offset 0 to op 4 (process 2, 45ms..50ms) was never read; \
         no poll returned any record of the partition\n\
         count unseen = 2\n"
    );
}

#[test]
fn unacked_sends_are_never_lost_or_unseen() {
    let mut s = Script::default();
    let failed = s.send(v(1, 0), 0);
    s.complete(failed, Outcome::SendFail { error: "NOT_ENOUGH_REPLICAS".into() });
    let unknown = s.send(v(1, 1), 0);
    s.complete(unknown, Outcome::SendInfo { reason: "timeout".into() });
    s.send(v(1, 2), 0);
    s.send_ok(v(1, 3), 0, 0);
    s.poll(9, 0, &[(0, v(1, 3))]);
    assert_eq!(s.check(), "");
}

#[test]
fn nonmonotonic_poll_across_polls() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    s.poll(9, 0, &[(1, v(1, 1)), (2, v(1, 2))]);
    assert_eq!(
        s.check(),
        "nonmonotonic-poll: partition t-0 process 9: poll op 3 (process 9, 35ms..40ms) ended at offset 1 \
         and the next poll op 4 (process 9, 45ms..50ms) started at offset 1, repeating it\n\
         count nonmonotonic-poll = 1\n"
    );
}

#[test]
fn nonmonotonic_poll_within_one_poll() {
    let mut s = three_acked();
    s.poll(9, 0, &[(1, v(1, 1)), (2, v(1, 2)), (0, v(1, 0))]);
    assert_eq!(
        s.check(),
        "nonmonotonic-poll: partition t-0 process 9: within one poll op 3 (process 9, 35ms..40ms), \
         offset 2 was followed by offset 0, going backwards\n\
         count nonmonotonic-poll = 1\n"
    );
}

#[test]
fn seek_or_assign_of_the_partition_resets_continuity() {
    for reset in ["seek", "assign"] {
        let mut s = three_acked();
        s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
        match reset {
            "seek" => s.seek(9, 0, 0),
            _ => s.assign(9, &[1, 0]),
        }
        s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
        assert_eq!(s.check(), "", "after {reset}");
    }
}

#[test]
fn a_move_back_on_detected_truncation_is_counted_not_judged_a_nonmonotonic_poll() {
    // The consumer read 0..3, then learned the log was cut at 1 (an unclean
    // election) and read the new leader's 1 and 2: the offsets now hold other
    // values, which inconsistent-offsets reports; the walk itself is fine.
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    s.seek_for(9, 0, 1, SeekCause::Truncation { from: 3 });
    s.poll(9, 0, &[(1, v(2, 0)), (2, v(2, 1))]);
    let report = s.check();
    assert!(!report.contains("nonmonotonic-poll") && !report.contains("poll-skip"), "{report}");
    assert!(report.contains("count inconsistent-offsets = 2\n"), "{report}");
    assert!(report.ends_with("truncations detected = 1\n"), "{report}");
    // Resets after OFFSET_OUT_OF_RANGE also break the walk, but are not truncations.
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    s.seek_for(9, 0, 0, SeekCause::OutOfRange { from: 3 });
    s.poll(9, 0, &[(0, v(1, 0))]);
    assert_eq!(s.check(), "");
}

#[test]
fn reset_is_per_partition_and_per_process() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    s.seek(9, 1, 0);
    s.assign(9, &[1]);
    s.seek(8, 0, 0);
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2))]);
    assert!(s.check().contains("count nonmonotonic-poll = 1\n"));
}

#[test]
fn poll_skip_across_polls_over_an_offset_another_reader_saw() {
    let mut s = Script::default();
    s.poll(8, 0, &[(2, v(1, 2))]);
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    s.poll(9, 0, &[(3, v(1, 3))]);
    assert_eq!(
        s.check(),
        "poll-skip: partition t-0 process 9: poll op 1 (process 9, 15ms..20ms) ended at offset 1 \
         and the next poll op 2 (process 9, 25ms..30ms) started at offset 3, \
         skipping 1 known offset in 2..=2 (offset 2 holds p1:2)\n\
         count poll-skip = 1\n"
    );
}

#[test]
fn gap_over_offsets_nobody_observed_is_no_skip() {
    let mut s = Script::default();
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    s.poll(9, 0, &[(3, v(1, 3)), (6, v(1, 6))]);
    assert_eq!(s.check(), "");
}

#[test]
fn seek_past_known_offsets_is_no_skip() {
    let mut s = Script::default();
    s.poll(8, 0, &[(2, v(1, 2))]);
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1))]);
    s.seek(9, 0, 3);
    s.poll(9, 0, &[(3, v(1, 3))]);
    s.assign(9, &[0]);
    s.poll(9, 0, &[(9, v(1, 9))]);
    assert_eq!(s.check(), "");
}

#[test]
fn poll_skip_within_one_poll_over_an_acked_offset() {
    let mut s = Script::default();
    for counter in 0..6 {
        s.send_ok(v(1, counter), 0, counter as i64);
    }
    // Offsets 2..=4 are acked; 3 and 4 are read elsewhere, 2 nowhere (a lost write).
    s.poll(8, 0, &[(3, v(1, 3)), (4, v(1, 4))]);
    s.poll_records(
        9,
        vec![
            Polled { partition: part(0), offset: 0, value: v(1, 0) },
            Polled { partition: part(1), offset: 0, value: v(2, 0) },
            Polled { partition: part(0), offset: 1, value: v(1, 1) },
            Polled { partition: part(0), offset: 5, value: v(1, 5) },
        ],
    );
    assert_eq!(
        s.check(),
        "lost-write: partition t-0 value p1:2 acked at offset 2 to op 2 (process 1, 25ms..30ms) was never read, \
         though reads reached offset 5 (op 7 (process 9, 75ms..80ms))\n\
         poll-skip: partition t-0 process 9: within one poll op 7 (process 9, 75ms..80ms), \
         offset 1 was followed by offset 5, skipping 3 known offsets in 2..=4 (offset 2 holds p1:2)\n\
         count lost-write = 1\n\
         count poll-skip = 1\n"
    );
}

#[test]
fn nonmonotonic_send_in_real_time_order() {
    let mut s = Script::default();
    s.send_ok(v(1, 0), 0, 5);
    s.send_ok(v(1, 1), 0, 3);
    s.poll(9, 0, &[(3, v(1, 1)), (5, v(1, 0))]);
    assert_eq!(
        s.check(),
        "nonmonotonic-send: partition t-0 process 1: p1:1 (op 1 (process 1, 15ms..20ms)) landed at offset 3, \
         below offset 5 where the earlier-invoked p1:0 (op 0 (process 1, 5ms..10ms)) landed, \
         which had completed before p1:1 was invoked\n\
         count nonmonotonic-send = 1\n"
    );
}

/// Two sends in flight together; the later-invoked one lands first.
fn overlapping_sends() -> Script {
    let mut s = Script::default();
    let first = s.send(v(1, 0), 0);
    let second = s.send(v(1, 1), 0);
    s.ack(second, 0, 0);
    s.ack(first, 0, 1);
    s.poll(9, 0, &[(0, v(1, 1)), (1, v(1, 0))]);
    s
}

#[test]
fn reordering_in_flight_is_counted_apart() {
    let report = check_history(&overlapping_sends().history);
    assert_eq!(render(&report), "reordered sends = 1\n");
}

#[test]
fn reordering_by_an_ordered_producer_is_a_violation() {
    let mut s = overlapping_sends();
    s.history.ordered_producers.push(1);
    assert_eq!(
        s.check(),
        "nonmonotonic-send: partition t-0 process 1: p1:1 (op 1 (process 1, 10ms..15ms)) landed at offset 0, \
         below offset 1 where the earlier-invoked p1:0 (op 0 (process 1, 5ms..20ms)) landed, \
         and this producer promises send order\n\
         count nonmonotonic-send = 1\n"
    );
}

#[test]
fn completion_at_the_instant_of_the_next_invocation_orders_them() {
    let mut s = Script::default();
    let first = s.send(v(1, 0), 0);
    s.history.complete(first, 50 * MS, Outcome::SendOk { partition: part(0), offset: 1 });
    let second = s.history.invoke(1, 50 * MS, Call::Send { topic: "t".into(), partition: Some(0), value: v(1, 1) });
    s.history.complete(second, 60 * MS, Outcome::SendOk { partition: part(0), offset: 0 });
    s.now_ns = 60 * MS;
    s.poll(9, 0, &[(0, v(1, 1)), (1, v(1, 0))]);
    assert!(s.check().contains("count nonmonotonic-send = 1\n"));
}

#[test]
fn sends_to_different_partitions_are_independent() {
    let mut s = Script::default();
    s.send_ok(v(1, 0), 0, 5);
    s.send_ok(v(1, 1), 1, 0);
    s.poll(9, 0, &[(5, v(1, 0))]);
    s.poll(9, 1, &[(0, v(1, 1))]);
    assert_eq!(s.check(), "");
}

#[test]
fn evidence_is_capped_but_every_instance_counted() {
    let mut s = Script::default();
    let total = MAX_EVIDENCE as i64 + 5;
    for offset in 0..total {
        s.send(v(1, offset as u32), 0);
        s.send(v(2, offset as u32), 0);
        s.poll(9, 0, &[(offset, v(1, offset as u32))]);
        s.poll(8, 0, &[(offset, v(2, offset as u32))]);
    }
    let report = check_history(&s.history);
    assert_eq!(report.violations.len(), MAX_EVIDENCE);
    assert_eq!(report.count(Invariant::InconsistentOffsets), total as u64);
    assert!(report.violations[0].detail.starts_with("partition t-0 offset 0 holds 2 values"));
}

#[test]
fn many_values_at_one_offset_are_summarised() {
    let mut s = Script::default();
    for counter in 0..6 {
        s.poll(9, 0, &[(0, v(1, counter))]);
        s.assign(9, &[0]);
    }
    let report = check_history(&s.history);
    assert_eq!(report.count(Invariant::InconsistentOffsets), 1);
    let detail = &report.violations[0].detail;
    assert!(detail.starts_with("partition t-0 offset 0 holds 6 values: p1:0 (read by op 0"), "{detail}");
    assert!(detail.ends_with("; and 2 more values"), "{detail}");
}

#[test]
fn report_round_trips_through_json() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0))]);
    let report = check_history(&s.history);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"unseen\":2"), "{json}");
    assert_eq!(serde_json::from_str::<CheckReport>(&json).unwrap(), report);
}

#[test]
fn realistic_clean_history_has_no_violations() {
    let mut s = Script::default();
    let mut logs: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    // Three producers, two partitions; producer 3 keeps two sends in flight
    // and its retried first send lands second (legal).
    for round in 0..10u32 {
        for producer in 1..=2 {
            let partition = (round + producer) % 2;
            let log = logs.entry(partition).or_default();
            s.send_ok(v(producer, round), partition, log.len() as i64);
            log.push(v(producer, round));
        }
        let first = s.send(v(3, 2 * round), 0);
        let second = s.send(v(3, 2 * round + 1), 0);
        let log = logs.entry(0).or_default();
        s.ack(second, 0, log.len() as i64);
        s.ack(first, 0, log.len() as i64 + 1);
        log.extend([v(3, 2 * round + 1), v(3, 2 * round)]);
    }
    let records = |partition: u32, from: usize, to: usize| -> Vec<Polled> {
        let log = &logs[&partition];
        (from..to.min(log.len()))
            .map(|i| Polled { partition: part(partition), offset: i as i64, value: log[i] })
            .collect()
    };
    // Consumer 10 reads both partitions in chunks; consumer 11 re-reads after a seek.
    s.assign(10, &[0, 1]);
    for chunk in 0..6 {
        let mut polled = records(0, chunk * 5, chunk * 5 + 5);
        polled.extend(records(1, chunk * 3, chunk * 3 + 3));
        s.poll_records(10, polled);
    }
    s.assign(11, &[0]);
    s.poll_records(11, records(0, 0, 7));
    s.seek(11, 0, 2);
    s.poll_records(11, records(0, 2, 12));
    s.poll_records(11, vec![]);
    s.poll_records(11, records(0, 12, 13));
    // The drain reads everything from the start.
    s.history.drain_processes.push(99);
    s.assign(99, &[0, 1]);
    for chunk in 0..10 {
        let mut polled = records(0, chunk * 4, chunk * 4 + 4);
        polled.extend(records(1, chunk * 4, chunk * 4 + 4));
        s.poll_records(99, polled);
    }
    assert_eq!(s.check(), "reordered sends = 10\n");
}

// ---------------------------------------------------------------------------
// Model-based: a clean history from a model log, then one mutation at a time.

/// A clean history: producers append to per-partition model logs (acked at
/// dense offsets, some sends failing or timing out without landing),
/// consumers assign, seek and read contiguous ranges of what is acked, and a
/// drain reads every partition from the start.
fn model_history(seed: u64, steps: usize) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let partitions = rng.gen_range(1..=3u32);
    let mut s = Script::default();
    let mut logs: Vec<Vec<Value>> = vec![Vec::new(); partitions as usize];
    let mut counters = [0u32; 4];
    // Per consumer (processes 10..13): partition -> next offset.
    let mut positions: Vec<BTreeMap<u32, usize>> = vec![BTreeMap::new(); 3];
    for _ in 0..steps {
        match rng.gen_range(0..10) {
            0..=4 => {
                let producer = rng.gen_range(1..=3u32);
                let partition = rng.gen_range(0..partitions);
                let value = v(producer, counters[producer as usize]);
                counters[producer as usize] += 1;
                let op = s.send(value, partition);
                match rng.gen_range(0..10) {
                    0 => s.complete(op, Outcome::SendFail { error: "NOT_ENOUGH_REPLICAS".into() }),
                    1 => s.complete(op, Outcome::SendInfo { reason: "timeout".into() }),
                    _ => {
                        let log = &mut logs[partition as usize];
                        s.ack(op, partition, log.len() as i64);
                        log.push(value);
                    }
                }
            }
            action => {
                let consumer = rng.gen_range(0..3usize);
                let process = 10 + consumer as u32;
                let position = &mut positions[consumer];
                if position.is_empty() || action == 5 {
                    let chosen: Vec<u32> = (0..partitions).filter(|_| rng.gen_bool(0.6)).collect();
                    s.assign(process, &chosen);
                    *position = chosen.iter().map(|&p| (p, rng.gen_range(0..=logs[p as usize].len()))).collect();
                } else if action == 6 {
                    let (&partition, at) = position.iter_mut().next().unwrap();
                    *at = rng.gen_range(0..=logs[partition as usize].len());
                    s.seek(process, partition, *at as i64);
                } else {
                    let mut records = Vec::new();
                    for (&partition, at) in position.iter_mut() {
                        let log = &logs[partition as usize];
                        let end = (*at + rng.gen_range(0..5)).min(log.len());
                        records.extend((*at..end).map(|i| Polled {
                            partition: part(partition),
                            offset: i as i64,
                            value: log[i],
                        }));
                        *at = end.max(*at);
                    }
                    s.poll_records(process, records);
                }
            }
        }
    }
    s.history.drain_processes.push(99);
    s.assign(99, &(0..partitions).collect::<Vec<_>>());
    let mut at = 0;
    while logs.iter().any(|log| at < log.len()) {
        let records = logs.iter().enumerate().flat_map(|(p, log)| {
            (at..(at + 7).min(log.len())).map(move |i| Polled {
                partition: part(p as u32),
                offset: i as i64,
                value: log[i],
            })
        });
        s.poll_records(99, records.collect());
        at += 7;
    }
    s.history
}

/// Mutable access to every ok poll's records.
fn polls_mut(history: &mut History) -> impl Iterator<Item = &mut Vec<Polled>> {
    history.ops.iter_mut().filter_map(|op| match &mut op.outcome {
        Some(Outcome::PollOk { records }) => Some(records),
        _ => None,
    })
}

fn nonzero(report: &CheckReport) -> BTreeMap<Invariant, u64> {
    report.counts.iter().filter(|(_, &n)| n > 0).map(|(&i, &n)| (i, n)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn model_histories_are_clean(seed in any::<u64>(), steps in 0..300usize) {
        let report = check_history(&model_history(seed, steps));
        prop_assert_eq!(render(&report), "");
    }

    #[test]
    fn dropping_a_record_mid_poll_is_a_skip(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let mut history = model_history(seed, 200);
        // (poll, record) pairs whose neighbours on both sides share its partition.
        let mut candidates = Vec::new();
        for (poll, records) in polls_mut(&mut history).enumerate() {
            for i in 1..records.len().saturating_sub(1) {
                if records[i - 1].partition == records[i].partition && records[i + 1].partition == records[i].partition {
                    candidates.push((poll, i));
                }
            }
        }
        prop_assume!(!candidates.is_empty());
        let (poll, i) = candidates[pick.index(candidates.len())];
        polls_mut(&mut history).nth(poll).unwrap().remove(i);
        let report = check_history(&history);
        let found = nonzero(&report);
        // The dropped value may also have had no other reader: then it is lost too.
        prop_assert_eq!(found.get(&Invariant::PollSkip), Some(&1), "{}", render(&report));
        prop_assert!(found.keys().all(|i| matches!(i, Invariant::PollSkip | Invariant::LostWrite)), "{}", render(&report));
    }

    #[test]
    fn two_values_at_one_offset_are_inconsistent(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let mut history = model_history(seed, 200);
        let total: usize = polls_mut(&mut history).map(|records| records.len()).sum();
        prop_assume!(total > 0);
        let target = pick.index(total);
        let record = polls_mut(&mut history).flat_map(|records| records.iter_mut()).nth(target).unwrap();
        record.value = v(77, 0);
        let report = check_history(&history);
        let found = nonzero(&report);
        prop_assert_eq!(found.get(&Invariant::InconsistentOffsets), Some(&1), "{}", render(&report));
        prop_assert!(report.violations[0].detail.contains("p77:0 (read by"), "{}", render(&report));
        // p77:0 was never sent: a corrupt read too.
        prop_assert_eq!(found.get(&Invariant::NoCorruptRead), Some(&1), "{}", render(&report));
        let expected = |i: &Invariant| {
            matches!(i, Invariant::InconsistentOffsets | Invariant::LostWrite | Invariant::NoCorruptRead)
        };
        prop_assert!(found.keys().all(expected), "{}", render(&report));
    }

    #[test]
    fn a_value_no_poll_returns_is_lost_or_unseen(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let mut history = model_history(seed, 200);
        let acked: Vec<(Value, Partition, i64)> = history.ops.iter().filter_map(|op| match (&op.call, &op.outcome) {
            (Call::Send { value, .. }, Some(Outcome::SendOk { partition, offset })) => Some((*value, partition.clone(), *offset)),
            _ => None,
        }).collect();
        prop_assume!(!acked.is_empty());
        let (value, partition, offset) = acked[pick.index(acked.len())].clone();
        for records in polls_mut(&mut history) {
            records.retain(|r| r.value != value);
        }
        let highest_read = polls_mut(&mut history)
            .flat_map(|records| records.iter())
            .filter(|r| r.partition == partition)
            .map(|r| r.offset)
            .max();
        let expected = if highest_read.is_some_and(|h| offset <= h) { Invariant::LostWrite } else { Invariant::Unseen };
        let report = check_history(&history);
        let found = nonzero(&report);
        prop_assert_eq!(found.get(&expected), Some(&1), "{}", render(&report));
        let listed = report.violations.iter().find(|v| v.invariant == expected).unwrap();
        let needle = format!("value {value} acked at offset {offset}");
        prop_assert!(listed.detail.contains(&needle), "{}", render(&report));
        prop_assert!(found.keys().all(|i| *i == expected || *i == Invariant::PollSkip), "{}", render(&report));
    }
}

#[test]
fn large_model_history_is_clean() {
    // Well under a second; a quadratic step would take minutes here.
    let history = model_history(7, 200_000);
    assert!(history.ops.len() > 200_000);
    assert_eq!(render(&check_history(&history)), "");
}

// ---------------------------------------------------------------------------
// Speed: not a test of time (no wall-clock assertion), a measurement to read
// with `cargo test --release -p sim --lib checker -- --nocapture`.

/// A clean history shaped like the standard scenario's: one topic with a
/// realistic name and six partitions, two producers keeping up to three sends
/// in flight (some retried out of order, some failing), two consumers each
/// reading half the partitions in small polls (many empty), then a drain that
/// reads every partition from the start. About `ops` operations in all.
fn standard_shaped_history(seed: u64, ops: usize) -> History {
    const PARTITIONS: u32 = 6;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let partition = |p: u32| Partition { topic: "events".into(), partition: p };
    let mut history = History::default();
    let mut now_ns = 0;
    let mut logs: Vec<Vec<Value>> = vec![Vec::new(); PARTITIONS as usize];
    // Per producer: its next counter and its sends in flight (op, partition).
    let mut producers: Vec<(u32, Vec<(u64, u32)>)> = vec![(0, Vec::new()); 2];
    // Per consumer: its partitions and the next offset in each.
    let mut consumers: Vec<Vec<(u32, usize)>> = (0..2).map(|c| (0..3).map(|i| (c * 3 + i, 0)).collect()).collect();
    for (c, owned) in consumers.iter().enumerate() {
        let partitions = owned.iter().map(|&(p, _)| partition(p)).collect();
        let op = history.invoke(10 + c as u32, now_ns, Call::Assign { partitions });
        history.complete(op, now_ns, Outcome::Ok);
    }
    while history.ops.len() < ops {
        now_ns += rng.gen_range(100_000..1_000_000);
        if rng.gen_bool(0.45) {
            let process = rng.gen_range(0..2u32);
            let (counter, in_flight) = &mut producers[process as usize];
            if in_flight.len() < 3 && rng.gen_bool(0.6) {
                let (p, value) = (rng.gen_range(0..PARTITIONS), Value::new(process + 1, *counter));
                *counter += 1;
                let call = Call::Send { topic: "events".into(), partition: Some(p), value };
                in_flight.push((history.invoke(process + 1, now_ns, call), p));
            } else if !in_flight.is_empty() {
                // Mostly the oldest completes first; now and then a retry reorders.
                let index = if in_flight.len() > 1 && rng.gen_bool(0.05) { 1 } else { 0 };
                let (op, p) = in_flight.remove(index);
                let outcome = match rng.gen_range(0..50) {
                    0 => Outcome::SendFail { error: "NOT_ENOUGH_REPLICAS".into() },
                    1 => Outcome::SendInfo { reason: "timeout".into() },
                    _ => {
                        let Call::Send { value, .. } = history.ops[op as usize].call else { unreachable!() };
                        let log = &mut logs[p as usize];
                        log.push(value);
                        Outcome::SendOk { partition: partition(p), offset: log.len() as i64 - 1 }
                    }
                };
                history.complete(op, now_ns, outcome);
            }
        } else {
            let c = rng.gen_range(0..2usize);
            let mut records = Vec::new();
            for (p, at) in consumers[c].iter_mut() {
                let log = &logs[*p as usize];
                let end = (*at + rng.gen_range(0..3)).min(log.len());
                records.extend((*at..end).map(|i| Polled {
                    partition: partition(*p),
                    offset: i as i64,
                    value: log[i],
                }));
                *at = end;
            }
            let op = history.invoke(10 + c as u32, now_ns, Call::Poll);
            history.complete(op, now_ns + 50_000, Outcome::PollOk { records });
        }
    }
    history.drain_processes.push(99);
    let op = history.invoke(99, now_ns, Call::Assign { partitions: (0..PARTITIONS).map(partition).collect() });
    history.complete(op, now_ns, Outcome::Ok);
    let mut at = 0;
    while logs.iter().any(|log| at < log.len()) {
        now_ns += 1_000_000;
        let records = logs.iter().enumerate().flat_map(|(p, log)| {
            (at..(at + 100).min(log.len())).map(move |i| Polled {
                partition: partition(p as u32),
                offset: i as i64,
                value: log[i],
            })
        });
        let op = history.invoke(99, now_ns, Call::Poll);
        history.complete(op, now_ns + 50_000, Outcome::PollOk { records: records.collect() });
        at += 100;
    }
    history
}

#[test]
fn timing_the_stages_changes_no_report() {
    for seed in 0..20 {
        let history = model_history(seed, 300);
        let (report, stages) = super::check_history_timed(&history);
        assert_eq!(report, check_history(&history));
        assert_eq!(stages.iter().map(|lap| lap.stage).collect::<Vec<_>>(), super::HISTORY_STAGES);
    }
}

#[test]
fn checker_speed_on_a_standard_shaped_history() {
    let history = standard_shaped_history(1, 100_000);
    let records: usize = history
        .ops
        .iter()
        .map(|op| match &op.outcome {
            Some(Outcome::PollOk { records }) => records.len(),
            _ => 0,
        })
        .sum();
    let sends = history.ops.iter().filter(|op| matches!(op.call, Call::Send { .. })).count();
    let mut report = None;
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = std::time::Instant::now();
        report = Some(check_history(&history));
        times.push(start.elapsed());
    }
    times.sort();
    let report = report.expect("ran at least once");
    assert_eq!(render(&report), format!("reordered sends = {}\n", report.reordered_sends));
    assert!(report.reordered_sends > 0, "the history should exercise in-flight reordering");
    println!(
        "check_history: {} ops, {records} polled records, {sends} sends: median {:?}, min {:?} ({:.1} ns per record)",
        history.ops.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() / 2].as_nanos() as f64 / records as f64,
    );
}

// ---------------------------------------------------------------------------
// Offsets far from the rest, and partitions told apart by name alone: the
// log view tallies dense offsets in a window and the rest in a map, and
// compares topic names word by word.

fn offsets_at_the_ends_of_i64() -> Script {
    let mut s = Script::default();
    s.send_ok(v(1, 0), 0, i64::MAX);
    s.send_ok(v(1, 1), 0, i64::MIN);
    s.send_ok(v(1, 2), 0, 0);
    s.poll(8, 0, &[(i64::MAX - 1, v(1, 3)), (i64::MAX, v(1, 0))]);
    s.poll(7, 0, &[(i64::MIN, v(1, 1)), (i64::MIN + 1, v(1, 4)), (i64::MAX, v(2, 0))]);
    s.poll(6, 0, &[(0, v(1, 2)), (i64::MAX, v(1, 2))]);
    s
}

/// A pair first seen far from the window (so kept apart), seen again once
/// enough observations let the window reach it, next to a second value.
fn outlier_the_window_later_reaches() -> Script {
    let mut s = Script::default();
    s.poll(9, 0, &[(0, v(1, 0))]);
    s.poll(8, 0, &[(2_000, v(1, 2_000))]);
    s.assign(9, &[0]);
    for offset in 1..400 {
        s.poll(9, 0, &[(offset, v(1, offset as u32))]);
    }
    s.poll(7, 0, &[(2_000, v(1, 2_000)), (2_001, v(1, 2_001))]);
    s.poll(6, 0, &[(2_000, v(2, 0)), (1_999, v(1, 1_999))]);
    s
}

/// Offsets arriving from the top down, so the window grows downwards, each
/// read by a consumer of its own.
fn offsets_walking_down() -> Script {
    let mut s = Script::default();
    for counter in (0..50).rev() {
        s.poll(100 + counter, 0, &[(1_000 + counter as i64, v(1, counter))]);
    }
    s.poll(8, 0, &[(1_021, v(2, 21))]);
    s.poll(7, 0, &[(900, v(1, 0))]);
    s.poll(6, 0, &[(-5_000, v(1, 7))]);
    s
}

fn topics_alike() -> Script {
    let mut s = Script::default();
    let names = [
        "events",
        "eventt",
        "abcdefgh",
        "abcdefgi",
        "topic-name-1",
        "topic-name-2",
        "a-much-longer-topic-name",
        "a-much-longer-topic-namf",
    ];
    let records = |offset: i64| -> Vec<Polled> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Polled {
                partition: Partition { topic: (*name).into(), partition: 0 },
                offset,
                value: v(i as u32 + 1, offset as u32),
            })
            .collect()
    };
    s.poll_records(9, records(0));
    s.poll_records(9, records(1));
    let mut last = records(3);
    last.swap(0, 7);
    s.poll_records(9, last);
    s
}

#[test]
fn offsets_at_the_ends_of_i64_are_kept_apart_and_compared_exactly() {
    assert_eq!(
        offsets_at_the_ends_of_i64().check(),
        "inconsistent-offsets: partition t-0 offset 9223372036854775807 holds 3 values: \
         p1:0 (read by op 3 (process 8, 35ms..40ms), acked to op 0 (process 1, 5ms..10ms)); \
         p1:2 (read by op 5 (process 6, 55ms..60ms)); p2:0 (read by op 4 (process 7, 45ms..50ms))\n\
         duplicate: partition t-0 value p1:2 at 2 offsets: \
         0 (read by op 5 (process 6, 55ms..60ms), acked to op 2 (process 1, 25ms..30ms)); \
         9223372036854775807 (read by op 5 (process 6, 55ms..60ms))\n\
         poll-skip: partition t-0 process 7: within one poll op 4 (process 7, 45ms..50ms), \
         offset -9223372036854775807 was followed by offset 9223372036854775807, \
         skipping 2 known offsets in -9223372036854775806..=9223372036854775806 (offset 0 holds p1:2)\n\
         poll-skip: partition t-0 process 6: within one poll op 5 (process 6, 55ms..60ms), \
         offset 0 was followed by offset 9223372036854775807, \
         skipping 1 known offset in 1..=9223372036854775806 (offset 9223372036854775806 holds p1:3)\n\
         nonmonotonic-send: partition t-0 process 1: p1:1 (op 1 (process 1, 15ms..20ms)) \
         landed at offset -9223372036854775808, below offset 9223372036854775807 where the earlier-invoked \
         p1:0 (op 0 (process 1, 5ms..10ms)) landed, which had completed before p1:1 was invoked\n\
         nonmonotonic-send: partition t-0 process 1: p1:2 (op 2 (process 1, 25ms..30ms)) \
         landed at offset 0, below offset 9223372036854775807 where the earlier-invoked \
         p1:0 (op 0 (process 1, 5ms..10ms)) landed, which had completed before p1:2 was invoked\n\
         count inconsistent-offsets = 1\n\
         count duplicate = 1\n\
         count poll-skip = 2\n\
         count nonmonotonic-send = 2\n"
    );
}

#[test]
fn a_pair_seen_far_off_and_again_once_in_reach_is_one_pair() {
    assert_eq!(
        outlier_the_window_later_reaches().check(),
        "inconsistent-offsets: partition t-0 offset 2000 holds 2 values: \
         p1:2000 (read by op 1 (process 8, 15ms..20ms) and 1 more read); p2:0 (read by op 403 (process 6, 4035ms..4040ms))\n\
         nonmonotonic-poll: partition t-0 process 6: within one poll op 403 (process 6, 4035ms..4040ms), \
         offset 2000 was followed by offset 1999, going backwards\n\
         count inconsistent-offsets = 1\n\
         count nonmonotonic-poll = 1\n"
    );
}

#[test]
fn offsets_arriving_downwards_and_far_below() {
    assert_eq!(
        offsets_walking_down().check(),
        "inconsistent-offsets: partition t-0 offset 1021 holds 2 values: \
         p1:21 (read by op 28 (process 121, 285ms..290ms)); p2:21 (read by op 50 (process 8, 505ms..510ms))\n\
         duplicate: partition t-0 value p1:0 at 2 offsets: \
         900 (read by op 51 (process 7, 515ms..520ms)); 1000 (read by op 49 (process 100, 495ms..500ms))\n\
         duplicate: partition t-0 value p1:7 at 2 offsets: \
         -5000 (read by op 52 (process 6, 525ms..530ms)); 1007 (read by op 42 (process 107, 425ms..430ms))\n\
         count inconsistent-offsets = 1\n\
         count duplicate = 2\n"
    );
}

#[test]
fn topics_differing_in_one_byte_are_different_partitions() {
    // Were any two taken for one, their offsets would hold two values each.
    assert_eq!(topics_alike().check(), "");
}

#[test]
fn corrupt_reads_are_values_no_producer_sent() {
    let mut s = three_acked();
    s.poll(9, 0, &[(0, v(1, 0)), (1, Value::CORRUPT), (2, v(1, 2))]);
    s.poll(8, 0, &[(2, v(3, 9))]);
    let report = check_history(&s.history);
    assert_eq!(report.count(Invariant::NoCorruptRead), 2, "{}", render(&report));
    let text = render(&report);
    assert!(text.contains("no-corrupt-read: partition t-0 offset 1: op 3 (process 9, 35ms..40ms) received bytes that are no value the workload writes"), "{text}");
    assert!(text.contains("no-corrupt-read: partition t-0 offset 2: op 4 (process 8, 45ms..50ms) received value p3:9, which no producer sent"), "{text}");
}

#[test]
fn reads_of_sent_values_are_not_corrupt_even_unacked() {
    let mut s = three_acked();
    s.send(v(4, 0), 0); // never acked: still sent
    s.poll(9, 0, &[(0, v(1, 0)), (1, v(1, 1)), (2, v(1, 2)), (3, v(4, 0))]);
    assert_eq!(check_history(&s.history).count(Invariant::NoCorruptRead), 0);
}

#[test]
fn a_value_survives_its_bytes_and_a_flipped_bit_does_not() {
    let value = v(7, 123_456);
    assert_eq!(Value::from_bytes(&value.to_bytes()), Some(value));
    for bit in 0..64 {
        let mut bytes = value.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(Value::from_bytes(&bytes), None, "bit {bit} flipped went unnoticed");
    }
    assert_eq!(Value::from_bytes(&[0; 7]), None, "short");
}
