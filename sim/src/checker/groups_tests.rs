//! The group checkers on handmade histories: each invariant has a firing
//! history and a near-identical clean twin.

use super::tests::{part, render, MS};
use super::{check_history, Invariant};
use crate::history::{Call, History, Outcome, Polled, ProcessId, Value};

/// Group members' facts at chosen times (`at`), unlike the history
/// checkers' script, whose clock ticks by itself.
#[derive(Default)]
struct Script {
    history: History,
    now_ns: u64,
}

impl Script {
    fn at(&mut self, ms: u64) -> &mut Self {
        self.now_ns = ms * MS;
        self
    }

    fn fact(&mut self, process: ProcessId, call: Call) {
        let op = self.history.invoke(process, self.now_ns, call);
        self.history.complete(op, self.now_ns, Outcome::Ok);
    }

    fn joined(&mut self, process: ProcessId, generation: i32, partitions: &[u32]) {
        let partitions = partitions.iter().map(|&p| part(p)).collect();
        let member = format!("m{process}").as_str().into();
        self.fact(
            process,
            Call::Joined(Box::new(crate::history::Joined { group: "g".into(), generation, member, partitions })),
        );
    }

    fn revoked(&mut self, process: ProcessId, partitions: &[u32], lost: bool) {
        let partitions = partitions.iter().map(|&p| part(p)).collect();
        self.fact(process, Call::Revoked(Box::new(crate::history::Revoked { group: "g".into(), partitions, lost })));
    }

    /// A commit invoked now and completed `takes_ms` later with `outcome`.
    fn commit(&mut self, process: ProcessId, generation: i32, partition: u32, offset: i64, takes_ms: u64, ok: bool) {
        let member = Some(format!("m{process}").as_str().into());
        let call = Call::Commit(Box::new(crate::history::Commit {
            group: "g".into(),
            generation,
            member,
            offsets: vec![(part(partition), offset)],
        }));
        let op = self.history.invoke(process, self.now_ns, call);
        let outcome = if ok { Outcome::Ok } else { Outcome::CommitFail { error: "ILLEGAL_GENERATION".into() } };
        self.history.complete(op, self.now_ns + takes_ms * MS, outcome);
    }

    /// A poll returning offsets `offsets` of `partition`, then their processing.
    fn consume(&mut self, process: ProcessId, partition: u32, offsets: &[i64]) {
        let records: Vec<Polled> = offsets
            .iter()
            .map(|&offset| Polled { partition: part(partition), offset, value: Value::new(9, offset as u32) })
            .collect();
        let op = self.history.invoke(process, self.now_ns, Call::Poll);
        self.history.complete(op, self.now_ns, Outcome::PollOk { records: records.clone() });
        self.fact(process, Call::Process { records });
    }

    /// The group findings only.
    fn check(&self) -> String {
        let mut report = check_history(&self.history);
        let group = [
            Invariant::CommittedOffsetsMonotonic,
            Invariant::NoStaleCommit,
            Invariant::SingleOwner,
            Invariant::AtLeastOnceConsumption,
        ];
        report.violations.retain(|v| group.contains(&v.invariant));
        report.counts.retain(|i, _| group.contains(i));
        render(&report)
    }
}

/// Two members of generation 1, p0 and p1 apart, each consuming and committing.
fn two_members() -> Script {
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0]);
    s.at(10).joined(2, 1, &[1]);
    s.at(20).consume(1, 0, &[0, 1, 2]);
    s.at(30).commit(1, 1, 0, 3, 5, true);
    s.at(20).consume(2, 1, &[0, 1]);
    s.at(40).commit(2, 1, 1, 2, 5, true);
    s
}

#[test]
fn a_clean_group_has_no_findings() {
    assert_eq!(two_members().check(), "");
}

#[test]
fn a_commit_below_an_earlier_acknowledged_one_fires_but_concurrent_ones_do_not() {
    let mut s = two_members();
    s.at(100).commit(1, 1, 0, 2, 5, true);
    assert_eq!(
        s.check(),
        "committed-offsets-monotonic: group g partition t-0: op 8 (process 1, 100ms..105ms) committed 2 (generation 1) after op 4 (process 1, 30ms..35ms) had committed 3 (generation 1)\n\
         count committed-offsets-monotonic = 1\n"
    );
    // Invoked before the higher one completed: not ordered.
    let mut s = two_members();
    s.at(31).commit(2, 1, 0, 2, 1, true);
    assert!(!s.check().contains("committed-offsets-monotonic:"), "{}", s.check());
}

#[test]
fn an_acknowledged_commit_from_an_older_generation_fires_a_refused_one_does_not() {
    let mut s = two_members();
    s.at(200).joined(2, 2, &[0, 1]);
    s.at(300).commit(1, 1, 0, 9, 5, false);
    assert_eq!(s.check(), "");
    s.at(400).commit(1, 1, 0, 9, 5, true);
    assert_eq!(
        s.check(),
        "no-stale-commit: group g: op 10 (process 1, 400ms..405ms) by member m1 in generation 1 was acknowledged, though op 8 (process 2, 200ms..200ms) had joined generation 2 before it was sent\n\
         count no-stale-commit = 1\n"
    );
}

#[test]
fn one_partition_given_to_two_members_of_a_generation_fires() {
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0, 1]);
    s.at(10).joined(2, 1, &[1]);
    assert_eq!(
        s.check(),
        "single-owner: group g partition t-1: generation 1 given to several members: op 0 (process 1, 10ms..10ms), op 1 (process 2, 10ms..10ms)\n\
         count single-owner = 1\n"
    );
}

#[test]
fn a_hand_over_before_the_old_owner_gave_the_partition_up_fires() {
    // Correct cooperative: A (1) keeps p0 through generation 2, revokes it
    // after learning generation 2, and B (2) gets it in generation 3.
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0, 1]);
    s.at(100).joined(1, 2, &[1]);
    s.at(100).revoked(1, &[0], false);
    s.at(101).joined(2, 2, &[]);
    s.at(200).joined(1, 3, &[1]);
    s.at(201).joined(2, 3, &[0]);
    assert_eq!(s.check(), "");
    // Buggy: B gets p0 in generation 2 itself, A revoking only after.
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0, 1]);
    s.at(100).joined(2, 2, &[0]);
    s.at(101).joined(1, 2, &[1]);
    s.at(101).revoked(1, &[0], false);
    assert_eq!(
        s.check(),
        "single-owner: group g partition t-0: op 0 (process 1, 10ms..10ms) owned it in generation 1 and gave it up at 101ms, but op 1 (process 2, 100ms..100ms) owns it in generation 2, first learned at 100ms, with the first member still in the group\n\
         count single-owner = 1\n"
    );
    // A dropped from generation 2 (a zombie) learns late: not its hand-over.
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0, 1]);
    s.at(100).joined(2, 2, &[0, 1]);
    s.at(300).revoked(1, &[0, 1], true);
    assert_eq!(s.check(), "");
}

#[test]
fn a_record_below_the_committed_offset_that_nobody_processed_fires() {
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0]);
    // Offsets 0..=4 are known to exist (a poll saw them); 2 was never processed.
    let op = s.history.invoke(3, 15 * MS, Call::Poll);
    let records = (0..5).map(|o| Polled { partition: part(0), offset: o, value: Value::new(9, o as u32) }).collect();
    s.history.complete(op, 15 * MS, Outcome::PollOk { records });
    s.at(20).consume(1, 0, &[0, 1]);
    s.at(30).consume(1, 0, &[3, 4]);
    s.at(40).commit(1, 1, 0, 5, 5, true);
    assert_eq!(
        s.check(),
        "at-least-once-consumption: group g partition t-0: offset 2 is below the committed offset 5 (op 6 (process 1, 40ms..45ms)) but no member finished processing it\n\
         count at-least-once-consumption = 1\n"
    );
    s.at(50).consume(1, 0, &[2]);
    assert_eq!(s.check(), "");
}

#[test]
fn delivery_counts_processed_lost_and_started_again() {
    let mut s = Script::default();
    s.at(10).joined(1, 1, &[0]);
    let op = s.history.invoke(3, 15 * MS, Call::Poll);
    let records = (0..4).map(|o| Polled { partition: part(0), offset: o, value: Value::new(9, o as u32) }).collect();
    s.history.complete(op, 15 * MS, Outcome::PollOk { records });
    s.at(20).consume(1, 0, &[0, 1]);
    // A batch whose processing a crash cut short, then processed by the next owner.
    let cut: Vec<Polled> =
        [1].iter().map(|&o| Polled { partition: part(0), offset: o, value: Value::new(9, 1) }).collect();
    s.history.invoke(1, 25 * MS, Call::Process { records: cut });
    s.at(30).consume(1, 0, &[3]);
    s.at(40).commit(1, 1, 0, 4, 5, true);
    let d = check_history(&s.history).group_delivery["g"];
    assert_eq!((d.processed, d.lost, d.reprocessed), (3, 1, 1), "offset 2 lost, offset 1 started twice");
}
