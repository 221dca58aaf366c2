//! Planted bugs: named switches, off by default, that re-create known defects so
//! that every checker can be shown to fire. The normal path pays one branch.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Every planted bug ksim knows. Closed: adding one means adding it here,
/// to `ALL`, to `describe`, and a test that the right checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plant {
    /// A fetch response occasionally omits one record from the middle.
    FetchSkipsRecord,
    /// After a restart the log hands out an offset that already exists.
    OffsetReuse,
    /// Pre-KIP-101: a follower truncates to its local high watermark when it
    /// starts following, instead of asking the leader where its epochs end.
    TruncateToHw,
    /// Followers compare offsets only, never leader epochs: a divergent
    /// suffix at offsets the leader also has is kept.
    NoEpochTruncation,
    /// Fetches are not checked against the leader epoch (KIP-320, KAFKA-6880).
    UnfencedFetch,
    /// A follower rejoins the ISR on reaching the HW, without reaching the
    /// start offset of the leader's epoch.
    IsrJoinEarly,
    /// acks=all is answered as soon as the leader has appended.
    AckOnLeaderAppend,
    /// Appends and the HW ignore min.insync.replicas (pre-KAFKA-15583).
    IgnoreMinIsr,
    /// Elections may pick any live replica even with unclean election off.
    UncleanAlways,
    /// No unclean-shutdown detection (pre-KIP-966): the last ISR member is
    /// re-elected after a power loss took its unflushed records.
    LastReplicaStanding,
    /// Reads do not check batch CRCs, so damaged bytes reach clients.
    SkipCrcCheck,
    /// The configured flush policy is silently skipped: appends that should
    /// be fsynced (every batch, or every interval) sit in the page cache.
    FsyncLies,
    /// Recovery treats a torn or corrupt tail as fatal instead of cutting it
    /// off: the broker stops at every boot and never serves again.
    RefuseTornTail,
    /// The group coordinator accepts offset commits without checking the
    /// generation or the member (pre-KIP-447): a zombie's commits land.
    StaleGenerationCommit,
    /// A group member told it is out of the group (UNKNOWN_MEMBER_ID,
    /// ILLEGAL_GENERATION) drops its partitions but never rejoins.
    StuckAfterFence,
    /// The group leader computes a cooperative-sticky group's assignment
    /// with the eager sticky assignor: a partition goes straight to its new
    /// owner while the old one, still in the group, has not given it up.
    CooperativeDirectHandover,
    /// A partition remembers only each idempotent producer's last batch, not
    /// its last five: a retry of an older one in flight is taken for a gap.
    IdempotenceWindow1,
    /// A broker that becomes a partition's leader starts with no producer
    /// state instead of the state rebuilt from its log.
    ProducerStateLostOnFailover,
    /// The transaction coordinator keeps a producer's epoch across its
    /// transactions (no KIP-890 part 2 bump), so a late EndTxn of the
    /// previous transaction ends the current one (KAFKA-17754).
    NoEpochBumpPerTxn,
    /// A read_committed fetch is served like a read_uncommitted one: up to
    /// the high watermark, with no aborted transactions listed.
    ReadCommittedToHw,
    /// A coordinator that takes over a transaction whose commit was decided
    /// (PrepareCommit) but not completed writes ABORT markers for it.
    PreparedCommitAbortedOnFailover,
    /// InitProducerId bumps the epoch but forgets the older incarnation's
    /// open transaction instead of aborting it: no markers, so its
    /// partitions never learn the newer epoch and keep taking its writes.
    InitForgetsOpenTxn,
    /// A new leader of a coordinator partition loads its state at once,
    /// from records above the HW too (found by ksim's pipeline in
    /// random-nemesis).
    CoordinatorLoadsUncommitted,
    /// The group coordinator never learns that a transaction's marker
    /// reached its `__consumer_offsets` partition: transactional offset
    /// commits stay pending (until the partition is loaded again).
    TxnOffsetsNeverComplete,
    /// A broker that becomes a partition's leader keeps its producers'
    /// sequences but forgets their open transactions (Kafka's
    /// `ongoingTxns`): the LSO passes what they wrote under the old leader.
    OpenTxnsLostOnFailover,
    /// A transaction marker that could not be written (refused by the
    /// partition, or its WriteTxnMarkers lost) counts as written: the
    /// coordinator completes the transaction without it.
    MarkerErrorsIgnored,
    /// The transaction coordinator never aborts a transaction open past its
    /// timeout: one whose producer died hangs, holding the LSO of its
    /// partitions back for good (the hanging transaction of KIP-664).
    TxnTimeoutNeverAborts,
}

impl Plant {
    pub const ALL: &'static [Plant] = &[
        Plant::FetchSkipsRecord,
        Plant::OffsetReuse,
        Plant::TruncateToHw,
        Plant::NoEpochTruncation,
        Plant::UnfencedFetch,
        Plant::IsrJoinEarly,
        Plant::AckOnLeaderAppend,
        Plant::IgnoreMinIsr,
        Plant::UncleanAlways,
        Plant::LastReplicaStanding,
        Plant::SkipCrcCheck,
        Plant::FsyncLies,
        Plant::RefuseTornTail,
        Plant::StaleGenerationCommit,
        Plant::StuckAfterFence,
        Plant::CooperativeDirectHandover,
        Plant::IdempotenceWindow1,
        Plant::ProducerStateLostOnFailover,
        Plant::NoEpochBumpPerTxn,
        Plant::ReadCommittedToHw,
        Plant::PreparedCommitAbortedOnFailover,
        Plant::InitForgetsOpenTxn,
        Plant::CoordinatorLoadsUncommitted,
        Plant::TxnOffsetsNeverComplete,
        Plant::OpenTxnsLostOnFailover,
        Plant::MarkerErrorsIgnored,
        Plant::TxnTimeoutNeverAborts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Plant::FetchSkipsRecord => "fetch-skips-record",
            Plant::OffsetReuse => "offset-reuse",
            Plant::TruncateToHw => "truncate-to-hw",
            Plant::NoEpochTruncation => "no-epoch-truncation",
            Plant::UnfencedFetch => "unfenced-fetch",
            Plant::IsrJoinEarly => "isr-join-early",
            Plant::AckOnLeaderAppend => "ack-on-leader-append",
            Plant::IgnoreMinIsr => "ignore-min-isr",
            Plant::UncleanAlways => "unclean-always",
            Plant::LastReplicaStanding => "last-replica-standing",
            Plant::SkipCrcCheck => "skip-crc-check",
            Plant::FsyncLies => "fsync-lies",
            Plant::RefuseTornTail => "refuse-torn-tail",
            Plant::StaleGenerationCommit => "stale-generation-commit",
            Plant::StuckAfterFence => "stuck-after-fence",
            Plant::CooperativeDirectHandover => "cooperative-direct-handover",
            Plant::IdempotenceWindow1 => "idempotence-window-1",
            Plant::ProducerStateLostOnFailover => "producer-state-lost-on-failover",
            Plant::NoEpochBumpPerTxn => "no-epoch-bump-per-txn",
            Plant::ReadCommittedToHw => "read-committed-to-hw",
            Plant::PreparedCommitAbortedOnFailover => "prepared-commit-aborted-on-failover",
            Plant::InitForgetsOpenTxn => "init-forgets-open-txn",
            Plant::CoordinatorLoadsUncommitted => "coordinator-loads-uncommitted",
            Plant::TxnOffsetsNeverComplete => "txn-offsets-never-complete",
            Plant::OpenTxnsLostOnFailover => "open-txns-lost-on-failover",
            Plant::MarkerErrorsIgnored => "marker-errors-ignored",
            Plant::TxnTimeoutNeverAborts => "txn-timeout-never-aborts",
        }
    }

    /// One line: what the switch does and which checker must catch it.
    pub fn describe(self) -> &'static str {
        match self {
            Plant::FetchSkipsRecord => {
                "a fetch response occasionally omits one record (caught by poll-skip, lost-write)"
            }
            Plant::OffsetReuse => "after a restart the log reassigns its last offset (caught by inconsistent-offsets)",
            Plant::TruncateToHw => {
                "a new follower truncates to its local HW instead of by leader epoch (caught by no-lost-acked-write, hw-consistency)"
            }
            Plant::NoEpochTruncation => {
                "followers truncate by offset only, ignoring leader epochs (caught by hw-consistency)"
            }
            Plant::UnfencedFetch => {
                "fetches are not checked against the leader epoch (caught by hw-consistency)"
            }
            Plant::IsrJoinEarly => {
                "a follower rejoins the ISR before reaching the leader's epoch start (caught by no-lost-acked-write, leadership, hw-consistency)"
            }
            Plant::AckOnLeaderAppend => "acks=all is answered at the leader's append (caught by no-lost-acked-write)",
            Plant::IgnoreMinIsr => {
                "acks=all appends and the HW ignore min.insync.replicas (caught with a power loss by no-lost-acked-write, in min-isr-ignored-power-loss)"
            }
            Plant::UncleanAlways => {
                "elections may pick a replica outside the ISR (caught by leadership; the losses by no-lost-acked-write, hw-consistency)"
            }
            Plant::SkipCrcCheck => "reads skip the batch CRC check, so bit rot reaches consumers (caught by no-corrupt-read)",
            Plant::FsyncLies => {
                "the flush policy is silently skipped, so acks=all with fsync per batch loses data in a power loss (caught by no-lost-acked-write)"
            }
            Plant::RefuseTornTail => {
                "recovery halts on a torn tail instead of cutting it, so the broker never serves again (caught by recovery-bounded)"
            }
            Plant::StaleGenerationCommit => {
                "offset commits are not fenced by generation or member, so a zombie member's commit lands (caught by no-stale-commit, committed-offsets-monotonic)"
            }
            Plant::StuckAfterFence => {
                "a group member told it is out of the group never rejoins, so the group never settles with all its members (caught by group-liveness)"
            }
            Plant::CooperativeDirectHandover => {
                "a cooperative group's leader assigns like the eager sticky assignor, so a partition gets a new owner before the old one gave it up (caught by single-owner)"
            }
            Plant::LastReplicaStanding => {
                "the last ISR member is re-elected after an unclean restart, though an ELR member holds the committed records (caught by hw-consistency, with a power loss)"
            }
            Plant::IdempotenceWindow1 => {
                "a partition remembers one batch per idempotent producer instead of five, so a retried older batch is refused as out of order and written again under a new epoch (caught by no-duplicate)"
            }
            Plant::ProducerStateLostOnFailover => {
                "a new leader starts without its log's producer state, so a retry of a batch the old leader appended is written again (caught by no-duplicate)"
            }
            Plant::ReadCommittedToHw => {
                "read_committed fetches are served up to the HW with no aborted list (and ListOffsets answers read_committed consumers with the HW), so open and aborted transactions reach read_committed readers (caught by no-aborted-read, no-precommitted-read, lso)"
            }
            Plant::PreparedCommitAbortedOnFailover => {
                "a new coordinator writes ABORT markers for a transaction already decided to commit, so partitions that got COMMIT from the old one disagree with the rest (caught by txn-atomicity, no-lost-committed-write)"
            }
            Plant::InitForgetsOpenTxn => {
                "a new incarnation's InitProducerId forgets the old one's open transaction instead of aborting it, so the zombie's later writes land and the new incarnation's commit markers commit them (caught by zombie-fenced)"
            }
            Plant::TxnOffsetsNeverComplete => {
                "the group coordinator is not told when a transaction's marker is committed in its __consumer_offsets partition, so transactional offset commits stay pending: stable offset fetches are answered UNSTABLE_OFFSET_COMMIT and a pipeline cannot rewind or start a partition (caught by pipeline-liveness)"
            }
            Plant::CoordinatorLoadsUncommitted => {
                "a new leader of a coordinator partition loads its state at once, uncommitted tail included: a PrepareCommit its predecessor never committed gets markers and answers a retried EndTxn, and a later leader without it aborts the transaction (caught by no-lost-committed-write, exactly-once-pipeline)"
            }
            Plant::NoEpochBumpPerTxn => {
                "the coordinator does not bump the epoch per transaction, so a delayed EndTxn of an earlier transaction ends the current one part-way (KAFKA-17754; caught by txn-atomicity, no-aborted-read, no-precommitted-read, no-lost-committed-write in delayed-endtxn)"
            }
            Plant::OpenTxnsLostOnFailover => {
                "a new leader forgets the open transactions it replicated, so the LSO passes records of transactions not yet committed (caught by no-precommitted-read; no-aborted-read when they then abort)"
            }
            Plant::MarkerErrorsIgnored => {
                "a marker refused or lost counts as written, so a transaction completes with a partition still open there, and that partition's records take the fate of the producer's next marker (caught by txn-atomicity, no-lost-committed-write)"
            }
            Plant::TxnTimeoutNeverAborts => {
                "the transaction coordinator never aborts a transaction open past its timeout, so one whose producer died mid-transaction hangs: the LSO of its partitions stays at its first offset and read_committed readers stop there for good (caught by lso: the LSO never reaches the HW after the heal)"
            }
        }
    }
}

impl fmt::Display for Plant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Plant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plant::ALL.iter().copied().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Plant::ALL.iter().map(|p| p.name()).collect();
            format!("unknown planted bug `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

/// The set of switches that are on for one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plants(BTreeSet<Plant>);

impl Plants {
    pub fn none() -> Self {
        Plants::default()
    }
    pub fn with(mut self, plant: Plant) -> Self {
        self.0.insert(plant);
        self
    }
    pub fn insert(&mut self, plant: Plant) {
        self.0.insert(plant);
    }
    #[inline]
    pub fn on(&self, plant: Plant) -> bool {
        !self.0.is_empty() && self.0.contains(&plant)
    }
    pub fn iter(&self) -> impl Iterator<Item = Plant> + '_ {
        self.0.iter().copied()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Plant> for Plants {
    fn from_iter<T: IntoIterator<Item = Plant>>(iter: T) -> Self {
        Plants(iter.into_iter().collect())
    }
}
