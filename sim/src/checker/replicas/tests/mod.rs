//! Replica checker tests as data: one clean replication story, and cases
//! that each change it one way and name the report they expect, rendered as
//! text. `generated` builds random correct stories and mutates them.

mod generated;

use super::*;
use crate::history::{Call, History, Outcome, Partition, Polled, ProcessId, Value};
use std::fmt::Write as _;

const MS: u64 = 1_000_000;
/// The acks=all producer; process 2 produces with acks=1.
const PRODUCER: ProcessId = 1;
const DRAIN: ProcessId = 99;

fn b(broker: u32) -> BrokerId {
    BrokerId(broker)
}

fn e(epoch: i32) -> LeaderEpoch {
    LeaderEpoch(epoch)
}

fn v(process: ProcessId, counter: u32) -> Value {
    Value::new(process, counter)
}

fn rec(offset: i64, value: Value, epoch: i32) -> ReplicaRecord {
    ReplicaRecord { offset, leader_epoch: e(epoch), value }
}

fn brokers(list: &[u32]) -> Vec<BrokerId> {
    list.iter().copied().map(b).collect()
}

fn t0() -> Partition {
    Partition { topic: "t".into(), partition: 0 }
}

const P0: PartitionIndex = PartitionIndex(0);

/// The clean story's log: three records written in e0, one in e1.
fn log() -> Vec<ReplicaRecord> {
    vec![rec(0, v(1, 0), 0), rec(1, v(1, 1), 0), rec(2, v(1, 2), 0), rec(3, v(1, 3), 1)]
}

/// Observations and history of one run, on a clock of 10ms per step.
struct Story {
    history: History,
    replication: Replication,
    now_ns: u64,
}

impl Story {
    /// Partition t-0 on brokers 1..=3; unclean elections disabled.
    fn new() -> Story {
        let partitions = vec![ReplicatedPartition { partition: t0(), replicas: brokers(&[1, 2, 3]) }];
        let mut history = History::default();
        history.drain_processes.push(DRAIN);
        Story { history, replication: Replication::new(partitions, false, vec![PRODUCER]), now_ns: 0 }
    }

    fn tick(&mut self) -> u64 {
        self.now_ns += 10 * MS;
        self.now_ns
    }

    fn event(&mut self, kind: ReplicaEventKind) {
        let now = self.tick();
        self.replication.record(now, P0, kind);
    }

    fn elect(&mut self, leader: u32, epoch: i32, isr: &[u32]) {
        self.event(ReplicaEventKind::Elected {
            leader: Some(b(leader)),
            leader_epoch: e(epoch),
            isr: brokers(isr),
            clean: true,
        });
    }

    /// `broker` takes over with `records` as its whole log.
    fn lead(&mut self, broker: u32, epoch: i32, records: &[ReplicaRecord], hw: i64) {
        let log_end = records.last().map_or(0, |r| r.offset + 1);
        self.event(ReplicaEventKind::BecameLeader {
            broker: b(broker),
            leader_epoch: e(epoch),
            log_start: 0,
            log_end,
            hw,
            records_from: 0,
            records: records.to_vec(),
        });
    }

    fn commit(&mut self, broker: u32, epoch: i32, hw: i64, committed: &[ReplicaRecord]) {
        self.event(ReplicaEventKind::HighWatermark {
            broker: b(broker),
            leader_epoch: e(epoch),
            hw,
            committed: committed.to_vec(),
        });
    }

    fn serve(&mut self, broker: u32, epoch: i32, hw: i64) {
        self.event(ReplicaEventKind::ServedHw { broker: b(broker), leader_epoch: e(epoch), hw });
    }

    fn send_ok(&mut self, value: Value, offset: i64) -> u64 {
        let call = Call::Send { topic: "t".into(), partition: Some(0), value };
        let invoked = self.tick();
        let op = self.history.invoke(value.process(), invoked, call);
        let completed = self.tick();
        self.history.complete(op, completed, Outcome::SendOk { partition: t0(), offset });
        op
    }

    fn drain(&mut self, records: &[ReplicaRecord]) {
        let invoked = self.tick();
        let op = self.history.invoke(DRAIN, invoked, Call::Poll);
        let records = records.iter().map(|r| Polled { partition: t0(), offset: r.offset, value: r.value }).collect();
        let completed = self.tick();
        self.history.complete(op, completed, Outcome::PollOk { records });
    }

    fn snapshot(&mut self, broker: u32, leader: bool, epoch: i32, records: &[ReplicaRecord], hw: i64, isr: &[u32]) {
        self.replication.snapshots.push(ReplicaSnapshot {
            broker: b(broker),
            partition: P0,
            is_leader: leader,
            leader_epoch: e(epoch),
            log_start: 0,
            log_end: records.last().map_or(0, |r| r.offset + 1),
            hw,
            isr: brokers(isr),
            live: true,
            lso: hw,
            open_txns: Vec::new(),
            records: records.to_vec(),
        });
    }

    fn snapshot_of(&mut self, broker: u32) -> &mut ReplicaSnapshot {
        self.replication.snapshots.iter_mut().find(|s| s.broker == b(broker)).expect("a snapshot of the broker")
    }

    /// The events of one kind, by position among them.
    fn events_where(&mut self, kind: &str) -> Vec<&mut ReplicaEvent> {
        let named = |event: &ReplicaEvent| match event.kind {
            ReplicaEventKind::Elected { .. } => "elected",
            ReplicaEventKind::BecameLeader { .. } => "lead",
            ReplicaEventKind::HighWatermark { .. } => "commit",
            ReplicaEventKind::ServedHw { .. } => "serve",
            ReplicaEventKind::ServedLso { .. } => "serve-lso",
        };
        self.replication.events.iter_mut().filter(|event| named(event) == kind).collect()
    }

    /// Adds an event at `time_ms` (between the story's events, which are
    /// 10ms apart): the checkers sort events by time.
    fn insert(&mut self, time_ms: u64, kind: ReplicaEventKind) {
        self.replication.events.push(ReplicaEvent { time_ns: time_ms * MS, partition: P0, kind });
    }

    fn check(&self) -> String {
        render(&check_replicas(&self.history, &self.replication))
    }
}

/// The history checkers' test rendering: every listed violation, then every non-zero count.
pub(super) use crate::checker::tests::render;

/// Broker 1 leads in e0 and commits three records; it crashes, and the
/// controller elects broker 2 in e1. Event times: 10ms apart; each send and
/// poll takes two steps.
fn first_leader() -> Story {
    let log = log();
    let mut s = Story::new();
    s.elect(1, 0, &[1, 2, 3]); // 10ms
    s.lead(1, 0, &[], 0); // 20ms
    s.send_ok(v(1, 0), 0); // op 0: 30..40ms
    s.send_ok(v(1, 1), 1); // op 1: 50..60ms
    s.commit(1, 0, 2, &log[0..2]); // 70ms
    s.serve(1, 0, 2); // 80ms
    s.send_ok(v(1, 2), 2); // op 2: 90..100ms
    s.commit(1, 0, 3, &log[2..3]); // 110ms
    s.serve(1, 0, 3); // 120ms
    s.elect(2, 1, &[2, 3]); // 130ms
    s
}

/// The clean story: broker 2 takes over with a lagging HW (and serves it:
/// legal), catches up, writes a fourth record and commits it; everyone
/// converges, and the drain reads it all.
fn clean() -> Story {
    let log = log();
    let mut s = first_leader();
    s.lead(2, 1, &log[0..3], 2); // 140ms
    s.serve(2, 1, 2); // 150ms
    s.commit(2, 1, 3, &log[2..3]); // 160ms
    s.send_ok(v(1, 3), 3); // op 3: 170..180ms
    s.commit(2, 1, 4, &log[3..4]); // 190ms
    s.serve(2, 1, 4); // 200ms
    s.drain(&log); // op 4: 210..220ms
    s.snapshot(2, true, 1, &log, 4, &[1, 2, 3]);
    s.snapshot(1, false, 1, &log, 4, &[]);
    // A follower's HW lags the leader's: legal.
    s.snapshot(3, false, 1, &log, 3, &[]);
    s
}

#[test]
fn the_clean_story_passes_and_reports_every_judged_invariant() {
    let report = check_replicas(&clean().history, &clean().replication);
    assert_eq!(render(&report), "");
    assert_eq!(report.counts.keys().copied().collect::<Vec<_>>(), JUDGED);
}

#[test]
fn empty_observations_are_clean() {
    assert_eq!(render(&check_replicas(&History::default(), &Replication::default())), "");
}

/// A case: its name, how it changes the clean story, the report expected.
type Case = (&'static str, fn(&mut Story), &'static str);

const CASES: &[Case] = &[
    // ---- no-lost-acked-write ----
    (
        "acked offset missing",
        |s| {
            s.send_ok(v(1, 4), 4);
        },
        "no-lost-acked-write: partition t-0 value p1:4 acked at offset 4 to op 5 (process 1, 230ms..240ms): \
         the final leader broker-2 (e1, log [0, 4)) has no record there; the drain never read offset 4\n\
         count no-lost-acked-write = 1\n",
    ),
    (
        "acked offset holding a different value",
        |s| {
            s.send_ok(v(1, 9), 2);
        },
        "no-lost-acked-write: partition t-0 value p1:9 acked at offset 2 to op 5 (process 1, 230ms..240ms): \
         the final leader broker-2 (e1, log [0, 4)) holds p1:2 (e0) there; \
         the drain read p1:2 there (op 4 (process 99, 210ms..220ms))\n\
         count no-lost-acked-write = 1\n",
    ),
    (
        "acked value in the log but not drained",
        |s| {
            let Some(Outcome::PollOk { records }) = &mut s.history.ops[4].outcome else { unreachable!() };
            records.remove(1);
        },
        "no-lost-acked-write: partition t-0 value p1:1 acked at offset 1 to op 1 (process 1, 50ms..60ms): \
         the final leader broker-2 (e1, log [0, 4)) holds it there; the drain never read offset 1\n\
         count no-lost-acked-write = 1\n",
    ),
    (
        "an acks=1 value lost is not judged",
        |s| {
            s.send_ok(v(2, 0), 4);
        },
        "",
    ),
    // ---- hw-consistency: log matching at the end ----
    (
        "ISR member differs from the leader below its HW",
        |s| s.snapshot_of(3).records[1].value = v(7, 7),
        "hw-consistency: partition t-0: ISR member broker-3 differs from the leader broker-2 (e1, hw 4) below the \
         leader's HW: 1 offset differs, the first 1: broker-2 holds p1:1 (e0), broker-3 p7:7 (e0)\n\
         hw-consistency: partition t-0: replicas broker-1 (hw 4) and broker-3 (hw 3) differ below HW 3: 1 offset \
         differs, the first 1: broker-1 holds p1:1 (e0), broker-3 p7:7 (e0)\n\
         count hw-consistency = 2\n",
    ),
    (
        "ISR member short of the leader's HW",
        |s| {
            let follower = s.snapshot_of(1);
            follower.records.truncate(2);
            follower.log_end = 2;
            follower.hw = 2;
        },
        "hw-consistency: partition t-0: ISR member broker-1 differs from the leader broker-2 (e1, hw 4) below the \
         leader's HW: 2 offsets differ, the first 2: broker-2 holds p1:2 (e0), broker-1 nothing\n\
         replication-liveness: partition t-0: live follower broker-1 ends at 2, the leader broker-2 at 4\n\
         count hw-consistency = 1\n\
         count replication-liveness = 1\n",
    ),
    (
        "replicas outside the ISR differ below the smaller HW",
        |s| {
            for broker in [1, 3] {
                s.snapshot_of(2).isr = brokers(&[2]);
                s.snapshot_of(broker).live = false;
            }
            s.snapshot_of(3).records[0].leader_epoch = e(5);
        },
        "hw-consistency: partition t-0: replicas broker-2 (hw 4) and broker-3 (hw 3) differ below HW 3: 1 offset \
         differs, the first 0: broker-2 holds p1:0 (e0), broker-3 p1:0 (e5)\n\
         hw-consistency: partition t-0: replicas broker-1 (hw 4) and broker-3 (hw 3) differ below HW 3: 1 offset \
         differs, the first 0: broker-1 holds p1:0 (e0), broker-3 p1:0 (e5)\n\
         count hw-consistency = 2\n",
    ),
    (
        "a replica's HW above its log end",
        |s| s.snapshot_of(3).hw = 5,
        "hw-consistency: partition t-0: broker-3's HW 5 is above its log end 4\n\
         count hw-consistency = 1\n",
    ),
    // ---- hw-consistency: committed is forever ----
    (
        "a new leader holds a different record at a committed offset",
        |s| {
            let ReplicaEventKind::BecameLeader { records, .. } = &mut s.events_where("lead")[1].kind else {
                unreachable!()
            };
            records[1] = rec(1, v(2, 7), 0);
        },
        "hw-consistency: partition t-0: broker-2 became leader at e1 with log [0, 3) and hw 2 (140ms), holding \
         records that disagree with the committed log: 1 committed offset changed: offset 1 committed p1:1 (e0) \
         when broker-1, leader at e0, advanced the HW to 2 (70ms), now p2:7 (e0)\n\
         hw-consistency: partition t-0: the final leader broker-2 (e1, log [0, 4)) disagrees with the committed \
         log: 1 committed offset changed or missing: offset 1 committed p2:7 (e0) when broker-2 became leader at \
         e1 with log [0, 3) and hw 2 (140ms), now p1:1 (e0)\n\
         count hw-consistency = 2\n",
    ),
    (
        "a later HW advance commits a different record at a committed offset",
        |s| {
            let ReplicaEventKind::HighWatermark { committed, .. } = &mut s.events_where("commit")[2].kind else {
                unreachable!()
            };
            committed[0] = rec(2, v(2, 7), 1);
        },
        "hw-consistency: partition t-0: broker-2, leader at e1, advanced the HW to 3 (160ms) with records that \
         disagree with the committed log: 1 committed offset changed: offset 2 committed p1:2 (e0) when broker-1, \
         leader at e0, advanced the HW to 3 (110ms), now p2:7 (e1)\n\
         hw-consistency: partition t-0: the final leader broker-2 (e1, log [0, 4)) disagrees with the committed \
         log: 1 committed offset changed or missing: offset 2 committed p2:7 (e1) when broker-2, leader at e1, \
         advanced the HW to 3 (160ms), now p1:2 (e0)\n\
         count hw-consistency = 2\n",
    ),
    (
        "the final leader lost a committed record",
        |s| {
            let leader = s.snapshot_of(2);
            leader.records.remove(3);
            leader.log_end = 3;
            (leader.hw, leader.lso) = (3, 3);
        },
        "no-lost-acked-write: partition t-0 value p1:3 acked at offset 3 to op 3 (process 1, \
         170ms..180ms): the final leader broker-2 (e1, log [0, 3)) has no record there; the drain read it there\n\
         hw-consistency: partition t-0: the final leader broker-2 (e1, log [0, 3)) disagrees with the committed \
         log: 1 committed offset changed or missing: offset 3 committed p1:3 (e1) when broker-2, leader at e1, \
         advanced the HW to 4 (190ms), now missing\n\
         replication-liveness: partition t-0: live follower broker-1 ends at 4, the leader broker-2 at 3\n\
         replication-liveness: partition t-0: live follower broker-3 ends at 4, the leader broker-2 at 3\n\
         count no-lost-acked-write = 1\n\
         count hw-consistency = 1\n\
         count replication-liveness = 2\n",
    ),
    (
        "a leader's HW goes backwards",
        |s| {
            s.insert(
                195,
                ReplicaEventKind::HighWatermark { broker: b(2), leader_epoch: e(1), hw: 3, committed: vec![] },
            )
        },
        "hw-consistency: partition t-0: a leader's HW went backwards: broker-2, leader at e1, advanced the HW to 3 \
         (195ms) after broker-2, leader at e1, advanced the HW to 4 (190ms)\n\
         count hw-consistency = 1\n",
    ),
    // ---- hw-consistency: what consumers were served ----
    (
        "the served HW goes backwards within one leadership",
        |s| s.insert(125, ReplicaEventKind::ServedHw { broker: b(1), leader_epoch: e(0), hw: 2 }),
        "hw-consistency: partition t-0: the served HW went backwards within one leadership: broker-1, leader at \
         e0, served HW 2 (125ms) after broker-1, leader at e0, served HW 3 (120ms) (3)\n\
         count hw-consistency = 1\n",
    ),
    (
        "a leader serves a HW above its own",
        |s| s.insert(75, ReplicaEventKind::ServedHw { broker: b(1), leader_epoch: e(0), hw: 3 }),
        "hw-consistency: partition t-0: broker-1, leader at e0, served HW 3 (75ms) above the leader's own HW 2 \
         (set when broker-1, leader at e0, advanced the HW to 2 (70ms)): consumers could read uncommitted records\n\
         hw-consistency: partition t-0: the served HW went backwards within one leadership: broker-1, leader at \
         e0, served HW 2 (80ms) after broker-1, leader at e0, served HW 3 (75ms) (3)\n\
         count hw-consistency = 2\n",
    ),
    (
        "a deposed leader serving its old HW late is legal",
        |s| s.insert(165, ReplicaEventKind::ServedHw { broker: b(1), leader_epoch: e(0), hw: 3 }),
        "",
    ),
    (
        "a new leader that caught up serves a HW below one served in an older epoch",
        short_new_leader,
        "no-lost-acked-write: partition t-0 value p1:2 acked at offset 2 to op 2 (process 1, \
         90ms..100ms): the final leader broker-2 (e1, log [0, 2)) has no record there; the drain never read \
         offset 2\n\
         hw-consistency: partition t-0: the served HW went backwards across leaders: broker-2, leader at e1, \
         served HW 2 (150ms), at or above its epoch's start offset 2, is below HW 3 served earlier in a lower \
         epoch: broker-1, leader at e0, served HW 3 (120ms)\n\
         leadership: partition t-0: broker-2 became leader at e1 with log [0, 2) and hw 2 (140ms) after the \
         controller elected broker-2 at e1 from isr [broker-2, broker-3] (130ms), lacks committed records: the \
         committed log reaches 3; 1 committed offset missing: offset 2 committed p1:2 (e0) when broker-1, leader \
         at e0, advanced the HW to 3 (110ms), now missing\n\
         count no-lost-acked-write = 1\n\
         count hw-consistency = 1\n\
         count leadership = 1\n",
    ),
    (
        "the same after an unclean election: the loss is reported, the served HW not judged",
        |s| {
            short_new_leader(s);
            s.replication.unclean_elections_enabled = true;
            let ReplicaEventKind::Elected { clean, isr, .. } = &mut s.events_where("elected")[1].kind else {
                unreachable!()
            };
            (*clean, *isr) = (false, brokers(&[2]));
        },
        "no-lost-acked-write: partition t-0 value p1:2 acked at offset 2 to op 2 (process 1, \
         90ms..100ms): the final leader broker-2 (e1, log [0, 2)) has no record there; the drain never read \
         offset 2; the partition had an unclean election: the controller uncleanly elected broker-2 at e1, isr \
         [broker-2] (130ms)\n\
         hw-consistency: partition t-0: committed records lost in an unclean election: broker-2 became leader at \
         e1 with log [0, 2) and hw 2 (140ms) after the controller uncleanly elected broker-2 at e1, isr [broker-2] \
         (130ms); the committed log reached 3; 1 committed offset missing: offset 2 committed p1:2 (e0) when \
         broker-1, leader at e0, advanced the HW to 3 (110ms), now missing\n\
         count no-lost-acked-write = 1\n\
         count hw-consistency = 1\n",
    ),
    // ---- leadership ----
    (
        "two leaders in one epoch",
        |s| s.insert(145, became_leader(3, 1, 3)),
        "leadership: partition t-0: broker-3 became leader at e1 with log [0, 3) and hw 3 (145ms) without being \
         elected: the controller's decision at e1 was: the controller elected broker-2 at e1 from isr [broker-2, \
         broker-3] (130ms)\n\
         leadership: partition t-0: two leaders in epoch e1: broker-2 became leader at e1 with log [0, 3) and hw 2 \
         (140ms) and broker-3 became leader at e1 with log [0, 3) and hw 3 (145ms); the controller elected \
         broker-2 at e1 from isr [broker-2, broker-3] (130ms)\n\
         count leadership = 2\n",
    ),
    (
        "the controller's epochs go backwards",
        |s| {
            s.insert(
                135,
                ReplicaEventKind::Elected {
                    leader: Some(b(3)),
                    leader_epoch: e(0),
                    isr: brokers(&[2, 3]),
                    clean: true,
                },
            )
        },
        "leadership: partition t-0: the leader epoch did not grow: the controller elected broker-3 at e0 from isr \
         [broker-2, broker-3] (135ms) came after the controller elected broker-2 at e1 from isr [broker-2, \
         broker-3] (130ms) at e1\n\
         count leadership = 1\n",
    ),
    (
        "a broker goes back to an older epoch",
        |s| {
            s.insert(
                205,
                ReplicaEventKind::Elected {
                    leader: Some(b(3)),
                    leader_epoch: e(2),
                    isr: brokers(&[1, 2, 3]),
                    clean: true,
                },
            );
            s.insert(206, became_leader(3, 2, 4));
            s.insert(207, became_leader(3, 0, 4));
            s.snapshot_of(2).is_leader = false;
            let leader = s.snapshot_of(3);
            (leader.is_leader, leader.leader_epoch, leader.isr) = (true, e(2), brokers(&[1, 2, 3]));
            (leader.hw, leader.lso) = (4, 4);
        },
        "leadership: partition t-0: broker-3 became leader at e0 with log [0, 4) and hw 3 (207ms) without being \
         elected: the controller's decision at e0 was: the controller elected broker-1 at e0 from isr [broker-1, \
         broker-2, broker-3] (10ms)\n\
         leadership: partition t-0: two leaders in epoch e0: broker-1 became leader at e0 with log [0, 0) and hw 0 \
         (20ms) and broker-3 became leader at e0 with log [0, 4) and hw 3 (207ms); the controller elected broker-1 \
         at e0 from isr [broker-1, broker-2, broker-3] (10ms)\n\
         leadership: partition t-0: broker-3 went back to an older epoch: broker-3 became leader at e0 with log \
         [0, 4) and hw 3 (207ms) after broker-3 became leader at e2 with log [0, 4) and hw 3 (206ms)\n\
         count leadership = 3\n",
    ),
    (
        "an unclean election while they are disabled",
        |s| {
            let ReplicaEventKind::Elected { clean, .. } = &mut s.events_where("elected")[1].kind else {
                unreachable!()
            };
            *clean = false;
        },
        "leadership: partition t-0: the controller uncleanly elected broker-2 at e1, isr [broker-2, broker-3] \
         (130ms), though unclean elections are disabled\n\
         count leadership = 1\n",
    ),
    (
        "a clean election of a leader outside the ISR, or of a non-replica",
        |s| {
            let ReplicaEventKind::Elected { isr, .. } = &mut s.events_where("elected")[1].kind else { unreachable!() };
            *isr = brokers(&[3]);
            s.replication.partitions[0].replicas = brokers(&[1, 3, 4]);
        },
        "leadership: partition t-0: the controller elected broker-2 at e1 from isr [broker-3] (130ms): a clean \
         election of a leader outside the ISR\n\
         leadership: partition t-0: the controller elected broker-2 at e1 from isr [broker-3] (130ms): broker-2 is \
         not one of its replicas [broker-1, broker-3, broker-4]\n\
         replication-liveness: partition t-0: no final snapshot of its replica broker-4\n\
         count leadership = 2\n\
         count replication-liveness = 1\n",
    ),
    (
        "a broker acts as leader in an epoch it does not lead",
        |s| {
            s.insert(155, ReplicaEventKind::ServedHw { broker: b(3), leader_epoch: e(1), hw: 2 });
            s.insert(
                165,
                ReplicaEventKind::HighWatermark { broker: b(1), leader_epoch: e(1), hw: 3, committed: vec![] },
            );
        },
        "leadership: partition t-0: broker-3, leader at e1, served HW 2 (155ms) without leading in e1: it never \
         became leader\n\
         leadership: partition t-0: broker-1, leader at e1, advanced the HW to 3 (165ms) without leading in e1: its \
         latest leadership began when broker-1 became leader at e0 with log [0, 0) and hw 0 (20ms)\n\
         count leadership = 2\n",
    ),
    // ---- replication-liveness ----
    (
        "a follower behind, an ISR missing a live replica, a HW below the log end",
        |s| {
            let follower = s.snapshot_of(3);
            follower.records.truncate(3);
            (follower.log_end, follower.hw) = (3, 3);
            let leader = s.snapshot_of(2);
            (leader.isr, leader.hw, leader.lso) = (brokers(&[1, 2]), 3, 3);
        },
        "replication-liveness: partition t-0: the leader broker-2's ISR [broker-1, broker-2] lacks live replicas \
         [broker-3]\n\
         replication-liveness: partition t-0: the leader broker-2's HW 3 is not its log end 4\n\
         replication-liveness: partition t-0: live follower broker-3 ends at 3, the leader broker-2 at 4\n\
         count replication-liveness = 3\n",
    ),
    (
        "no leader at the end",
        |s| {
            s.snapshot_of(2).live = false;
            s.event(ReplicaEventKind::Elected { leader: None, leader_epoch: e(2), isr: brokers(&[2]), clean: true });
        },
        "replication-liveness: partition t-0: no live replica leads at the end; 4 acknowledged values \
         could not be verified; the controller's latest decision: the controller left the partition without a \
         leader at e2 (230ms)\n\
         count replication-liveness = 1\n",
    ),
    (
        "two live leaders, the older not the controller's choice",
        |s| {
            let stale = s.snapshot_of(1);
            (stale.is_leader, stale.leader_epoch, stale.isr) = (true, e(0), brokers(&[1]));
            s.event(ReplicaEventKind::Elected {
                leader: Some(b(3)),
                leader_epoch: e(2),
                isr: brokers(&[1, 2, 3]),
                clean: true,
            });
        },
        "replication-liveness: partition t-0: 2 live replicas lead at the end: broker-2 (e1), broker-1 (e0); the \
         controller's latest decision: the controller elected broker-3 at e2 from isr [broker-1, broker-2, \
         broker-3] (230ms)\n\
         replication-liveness: partition t-0: the final leader is broker-2 at e1, not the controller's latest \
         choice: the controller elected broker-3 at e2 from isr [broker-1, broker-2, broker-3] (230ms)\n\
         count replication-liveness = 2\n",
    ),
    // ---- lso ----
    (
        "a read_committed fetch served an LSO below the HW, records below it",
        |s| {
            let kind =
                ReplicaEventKind::ServedLso { broker: b(2), leader_epoch: e(1), lso: 3, hw: 4, read_to: Some(3) };
            s.insert(205, kind);
        },
        "",
    ),
    (
        "a read_committed fetch served records at the LSO",
        |s| {
            let kind =
                ReplicaEventKind::ServedLso { broker: b(2), leader_epoch: e(1), lso: 3, hw: 4, read_to: Some(4) };
            s.insert(205, kind);
        },
        "lso: partition t-0: a read_committed fetch returned records up to offset 3, at or beyond the LSO 3: \
         broker-2, leader at e1, served read_committed records up to 4 with LSO 3 and HW 4 (205ms)\n\
         count lso = 1\n",
    ),
    (
        "a served LSO above the HW",
        |s| {
            let kind =
                ReplicaEventKind::ServedLso { broker: b(2), leader_epoch: e(1), lso: 5, hw: 4, read_to: Some(4) };
            s.insert(205, kind);
        },
        "lso: partition t-0: the LSO 5 served is above the HW 4: \
         broker-2, leader at e1, served read_committed records up to 4 with LSO 5 and HW 4 (205ms)\n\
         count lso = 1\n",
    ),
    (
        "a transaction left open at the end",
        |s| {
            let leader = s.snapshot_of(2);
            leader.lso = 3;
            leader.open_txns = vec![(3, 1001)];
        },
        "lso: partition t-0: after the heal and the drain the leader broker-2's LSO 3 is not its HW 4: \
         transactions left open: producer 1001 from offset 3\n\
         count lso = 1\n",
    ),
    (
        "a consumer waiting past a new leader's lagging LSO got no records",
        |s| {
            let kind = ReplicaEventKind::ServedLso { broker: b(2), leader_epoch: e(1), lso: 2, hw: 3, read_to: None };
            s.insert(145, kind);
        },
        "",
    ),
    (
        "a follower's LSO below its HW is not judged",
        |s| {
            s.snapshot_of(3).lso = 1;
        },
        "",
    ),
];

/// Instead of the clean story: broker 2 takes over in e1 without offset 2
/// (committed in e0), serves HW 2 and writes nothing more; broker 1 stays
/// down with the record.
fn short_new_leader(s: &mut Story) {
    let log = log();
    *s = first_leader();
    s.lead(2, 1, &log[0..2], 2); // 140ms
    s.serve(2, 1, 2); // 150ms
    s.drain(&log[0..2]); // op 3: 160..170ms
    s.snapshot(2, true, 1, &log[0..2], 2, &[2, 3]);
    s.snapshot(3, false, 1, &log[0..2], 2, &[]);
    s.snapshot(1, false, 0, &log[0..3], 3, &[]);
    s.snapshot_of(1).live = false;
}

fn became_leader(broker: u32, epoch: i32, log_end: usize) -> ReplicaEventKind {
    let records = log()[..log_end].to_vec();
    let log_end = log_end as i64;
    ReplicaEventKind::BecameLeader {
        broker: b(broker),
        leader_epoch: e(epoch),
        log_start: 0,
        log_end,
        hw: log_end.min(3),
        records_from: 0,
        records,
    }
}

#[test]
fn cases() {
    let mut failures = String::new();
    for (name, change, expected) in CASES {
        let mut story = clean();
        change(&mut story);
        let found = story.check();
        if found != *expected {
            writeln!(failures, "--- {name}\nexpected:\n{expected}found:\n{found}").unwrap();
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
