//! Checkers: they read the recorded history (and, later, replica snapshots)
//! and report violations with evidence. They never ask broker-core anything.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Every invariant ksim judges. Closed: a new checker adds its name here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// One offset observed holding two different values.
    InconsistentOffsets,
    /// One value observed at more than one offset (counted unless exactly-once is demanded).
    Duplicate,
    /// A value from an idempotent producer observed at more than one offset:
    /// a retry written twice.
    NoDuplicate,
    /// An acked value at or below the highest offset any read reached, never
    /// read (values of aborted transactions, and of undecided ones, are not judged).
    LostWrite,
    /// An acked value never read by the end of the drain (judged as lost-write is).
    Unseen,
    /// A consumer's next poll starts at or before where its previous one ended.
    NonmonotonicPoll,
    /// A consumer's successive polls jump past offsets known to exist (a
    /// read_committed reader may step over offsets holding only values of
    /// transactions not known to have committed).
    PollSkip,
    /// A producer's later send to a partition lands below an earlier one.
    NonmonotonicSend,
    /// Liveness: after heal, the drain did not reach every partition's end in time.
    DrainIncomplete,
    /// A simulated node panicked: a bug found inside broker-core or sim.
    Crash,
    /// An acks=all acknowledged value missing from the final leader's log at
    /// its offset, or not read there by the drain (`replicas`).
    NoLostAckedWrite,
    /// Committed records changed or lost, replicas' logs differing below
    /// their HWs, or a leader's or the served HW going backwards (`replicas`).
    HwConsistency,
    /// Two leaders in one epoch, epochs not growing, an unelected or
    /// incomplete leader, a disabled unclean election (`replicas`).
    Leadership,
    /// Liveness: after heal and drain, replication did not converge (`replicas`).
    ReplicationLiveness,
    /// A consumer received bytes that are not a value any producer sent
    /// (self-checking values: a flipped bit does not read as another value).
    NoCorruptRead,
    /// Liveness: a broker that booted did not serve again (register with
    /// the controller) within the scenario's recovery bound (`recovery`).
    RecoveryBounded,
    /// A group's acknowledged committed offset of a partition went below
    /// one acknowledged before it (`groups`).
    CommittedOffsetsMonotonic,
    /// A commit from a generation older than one already joined was
    /// acknowledged (`groups`).
    NoStaleCommit,
    /// A partition given to two members of one generation, or handed to a
    /// new owner before its old owner, still in the group, gave it up (`groups`).
    SingleOwner,
    /// A record below a group's final committed offset that no member
    /// finished processing (`groups`).
    AtLeastOnceConsumption,
    /// Liveness: after the heal, a consumer group did not settle (one
    /// generation, every partition owned once) within its bound (the runner).
    GroupLiveness,
    /// A read_committed poll returned a value whose transaction aborted, or
    /// whose plain send definitely failed: Jepsen's G1a (`txn_checks`).
    NoAbortedRead,
    /// A read_committed poll returned a value of a transaction before its
    /// commit was asked for, or of one never asked to commit; a
    /// transaction's poll seeing its own sends is one case (`txn_checks`).
    NoPrecommittedRead,
    /// An acked send of a committed transaction that the drain, reading
    /// committed, never read (`txn_checks`).
    NoLostCommittedWrite,
    /// A read_committed reader saw some of a transaction's writes and
    /// stepped over others, or the drain read some but not all (`atomicity`).
    TxnAtomicity,
    /// A transaction of an older epoch of a transactional id committed after
    /// a newer incarnation of the id initialised (`zombie`).
    ZombieFenced,
    /// A read_committed poll returned a record past a transaction still
    /// open below it (at or beyond the last stable offset; `lso`), a leader
    /// served a last stable offset above its high watermark or read
    /// committed past it, or, after the heal, a leader's last stable offset
    /// is not its high watermark: a transaction stayed open (`replicas`).
    Lso,
    /// A consume-transform-produce application's committed output reflects
    /// an input twice, not at all below the group's committed offsets, or
    /// beyond them, or holds an output of no known input (`pipeline`).
    ExactlyOncePipeline,
    /// Liveness: a consume-transform-produce group did not catch up after
    /// the heal, or caught up with committed offsets short of the input it
    /// read (`pipeline`).
    PipelineLiveness,
    /// A cycle of write-write dependencies between transactions (`dependencies`).
    G0,
    /// A cycle of write-write and write-read dependencies with at least one
    /// write-read: circular information flow (`dependencies`).
    G1c,
    /// A dependency cycle with exactly one anti-dependency (read skew).
    /// Counted, not judged: Kafka promises read_committed, not
    /// serializability (`dependencies`).
    GSingle,
    /// A dependency cycle with two or more anti-dependencies (write skew).
    /// Counted, not judged, like g-single (`dependencies`).
    G2,
}

impl Invariant {
    pub const ALL: &'static [Invariant] = &[
        Invariant::InconsistentOffsets,
        Invariant::Duplicate,
        Invariant::NoDuplicate,
        Invariant::LostWrite,
        Invariant::Unseen,
        Invariant::NonmonotonicPoll,
        Invariant::PollSkip,
        Invariant::NonmonotonicSend,
        Invariant::DrainIncomplete,
        Invariant::Crash,
        Invariant::NoLostAckedWrite,
        Invariant::HwConsistency,
        Invariant::Leadership,
        Invariant::ReplicationLiveness,
        Invariant::NoCorruptRead,
        Invariant::RecoveryBounded,
        Invariant::CommittedOffsetsMonotonic,
        Invariant::NoStaleCommit,
        Invariant::SingleOwner,
        Invariant::AtLeastOnceConsumption,
        Invariant::GroupLiveness,
        Invariant::NoAbortedRead,
        Invariant::NoPrecommittedRead,
        Invariant::NoLostCommittedWrite,
        Invariant::TxnAtomicity,
        Invariant::ZombieFenced,
        Invariant::Lso,
        Invariant::ExactlyOncePipeline,
        Invariant::PipelineLiveness,
        Invariant::G0,
        Invariant::G1c,
        Invariant::GSingle,
        Invariant::G2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invariant::InconsistentOffsets => "inconsistent-offsets",
            Invariant::Duplicate => "duplicate",
            Invariant::NoDuplicate => "no-duplicate",
            Invariant::LostWrite => "lost-write",
            Invariant::Unseen => "unseen",
            Invariant::NonmonotonicPoll => "nonmonotonic-poll",
            Invariant::PollSkip => "poll-skip",
            Invariant::NonmonotonicSend => "nonmonotonic-send",
            Invariant::DrainIncomplete => "drain-incomplete",
            Invariant::Crash => "crash",
            Invariant::NoLostAckedWrite => "no-lost-acked-write",
            Invariant::HwConsistency => "hw-consistency",
            Invariant::Leadership => "leadership",
            Invariant::ReplicationLiveness => "replication-liveness",
            Invariant::NoCorruptRead => "no-corrupt-read",
            Invariant::RecoveryBounded => "recovery-bounded",
            Invariant::CommittedOffsetsMonotonic => "committed-offsets-monotonic",
            Invariant::NoStaleCommit => "no-stale-commit",
            Invariant::SingleOwner => "single-owner",
            Invariant::AtLeastOnceConsumption => "at-least-once-consumption",
            Invariant::GroupLiveness => "group-liveness",
            Invariant::NoAbortedRead => "no-aborted-read",
            Invariant::NoPrecommittedRead => "no-precommitted-read",
            Invariant::NoLostCommittedWrite => "no-lost-committed-write",
            Invariant::TxnAtomicity => "txn-atomicity",
            Invariant::ZombieFenced => "zombie-fenced",
            Invariant::Lso => "lso",
            Invariant::ExactlyOncePipeline => "exactly-once-pipeline",
            Invariant::PipelineLiveness => "pipeline-liveness",
            Invariant::G0 => "g0",
            Invariant::G1c => "g1c",
            Invariant::GSingle => "g-single",
            Invariant::G2 => "g2",
        }
    }

    /// Invariants that must hold unless a scenario says otherwise.
    /// `duplicate` is counted, not judged, until a scenario demands
    /// exactly-once; `g-single` and `g2` are counted, not judged, because
    /// Kafka's transactions promise read_committed isolation, not
    /// serializability.
    pub fn holds_by_default(self) -> bool {
        // Kafka isolates neither a transaction's writes from other writers'
        // (offset order across partitions makes ww cycles: g0, and g1c
        // through a ww edge) nor its reads (g-single, g2): counted, and a
        // scenario that makes them meaningful lists them in `must_hold`.
        !matches!(self, Invariant::Duplicate | Invariant::G0 | Invariant::G1c | Invariant::GSingle | Invariant::G2)
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Invariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Invariant::ALL.iter().copied().find(|i| i.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
            format!("unknown invariant `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

/// One finding, with evidence a person can follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// Partition, offsets, values, ops (with process and simulated time).
    pub detail: String,
}

mod atomicity;
mod bucket_sort;
mod corrupt;
mod cycles;
#[cfg(test)]
mod cycles_tests;
mod dependencies;
mod evidence;
mod groups;
#[cfg(test)]
mod groups_tests;
mod log_view;
mod losses;
mod lso;
mod offsets;
mod partition_log;
mod per_process;
mod pipeline;
#[cfg(test)]
mod pipeline_tests;
mod polls;
pub mod recovery;
pub mod replicas;
mod sends;
#[cfg(test)]
mod tests;
mod txn;
mod txn_checks;
#[cfg(test)]
mod txn_tests;
mod value_index;
mod visibility;
mod zombie;
#[cfg(test)]
mod zombie_lso_tests;

pub use evidence::MAX_EVIDENCE;
pub use groups::Delivery;
pub use log_view::{Ack, LogView, OpId, PartitionId};
pub use partition_log::{PartitionLog, Sighting};

/// What the history checkers found in one run. The runner decides which
/// findings fail the run; the report holds every anomaly regardless.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Evidence, grouped by invariant: at most `MAX_EVIDENCE` per invariant.
    pub violations: Vec<Violation>,
    /// Every anomaly found, listed or not; every judged invariant is present (zero if clean).
    pub counts: std::collections::BTreeMap<Invariant, u64>,
    /// Later-invoked sends landing below earlier ones that were still in
    /// flight, from a producer that does not promise order: legal in Kafka.
    pub reordered_sends: u64,
    /// Consumers that detected the log truncated under their position
    /// (KIP-320 validation after an unclean election) and moved back: an
    /// observation, not a violation.
    #[serde(default)]
    pub truncations_detected: u64,
    /// Per consumer group, records processed, lost and processed again.
    #[serde(default)]
    pub group_delivery: std::collections::BTreeMap<String, Delivery>,
}

impl CheckReport {
    pub fn count(&self, invariant: Invariant) -> u64 {
        self.counts.get(&invariant).copied().unwrap_or(0)
    }
}

/// The history checkers' stages, in the order `check_history_timed` runs and
/// names them: building the shared views, each checker, then `finish`
/// (gathering the report and freeing the views).
pub const HISTORY_STAGES: &[&str] = &[
    "log_view",
    "txns",
    "visibility",
    "offsets",
    "losses",
    "polls",
    "corrupt",
    "groups",
    "sends",
    "txn_checks",
    "atomicity",
    "zombie",
    "lso",
    "dependencies",
    "pipeline",
    "finish",
];

/// One checker stage's cost.
#[derive(Clone, Debug)]
pub struct Lap {
    pub stage: &'static str,
    pub wall: std::time::Duration,
    /// The stage's peak resident memory, when `memory` measures phases.
    pub peak_rss_mib: Option<f64>,
}

/// Each checker stage's cost, in the order run.
pub type StageTimes = Vec<Lap>;

/// Laps of a wall clock, one per stage. `std::time::Instant` reads the real
/// clock outside a madsim runtime (the runner checks after dropping it);
/// inside one madsim answers with simulated time, which never feeds a result.
pub struct Stopwatch {
    last: std::time::Instant,
    laps: StageTimes,
}

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch { last: std::time::Instant::now(), laps: Vec::new() }
    }

    /// Ends the stage `name` (begun at the previous lap, or the start).
    pub fn lap(&mut self, name: &'static str) {
        let wall = std::time::Instant::now().saturating_duration_since(self.last);
        let peak_rss_mib = crate::memory::take_phase_peak_mib();
        self.laps.push(Lap { stage: name, wall, peak_rss_mib });
        // The memory reading is no stage's.
        self.last = std::time::Instant::now();
    }

    pub fn laps(self) -> StageTimes {
        self.laps
    }
}

/// Runs every history checker (all but drain-incomplete and crash, which the runner judges).
pub fn check_history(history: &crate::history::History) -> CheckReport {
    check_history_timed(history).0
}

/// `check_history`, with the wall time of each stage (`HISTORY_STAGES`).
/// Timing changes nothing the checkers see or report.
pub fn check_history_timed(history: &crate::history::History) -> (CheckReport, StageTimes) {
    let mut clock = Stopwatch::start();
    let view = LogView::build(history);
    clock.lap("log_view");
    // Nothing to build (and no walk) without transactions or read_committed readers.
    let txns = txn::Txns::build(history, &view);
    clock.lap("txns");
    let visibility = visibility::Visibility::build(history, &view, &txns);
    clock.lap("visibility");
    let mut findings = evidence::Findings::new();
    offsets::check(history, &view, &mut findings);
    clock.lap("offsets");
    losses::check(history, &view, &visibility, &mut findings);
    clock.lap("losses");
    polls::check(history, &view, &visibility, &mut findings);
    clock.lap("polls");
    corrupt::check(history, &mut findings);
    clock.lap("corrupt");
    let group_delivery = groups::check(history, &view, &visibility, &mut findings);
    clock.lap("groups");
    let reordered_sends = sends::check(history, &view, &mut findings);
    clock.lap("sends");
    txn_checks::check(history, &view, &txns, &mut findings);
    clock.lap("txn_checks");
    atomicity::check(history, &view, &txns, &visibility, &mut findings);
    clock.lap("atomicity");
    zombie::check(history, &txns, &mut findings);
    clock.lap("zombie");
    lso::check(history, &view, &txns, &visibility, &mut findings);
    clock.lap("lso");
    dependencies::check(history, &view, &txns, &visibility, &mut findings);
    clock.lap("dependencies");
    pipeline::check(history, &view, &txns, &mut findings);
    clock.lap("pipeline");
    let (violations, counts) = findings.into_parts();
    let report = CheckReport {
        violations,
        counts,
        reordered_sends,
        truncations_detected: view.truncation_seeks(),
        group_delivery,
    };
    // Freeing the views is part of the checkers' cost.
    drop(visibility);
    drop(txns);
    drop(view);
    clock.lap("finish");
    (report, clock.laps())
}
