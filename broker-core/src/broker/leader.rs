//! A partition leader's view of its followers: their log end offsets, when
//! each was last caught up, the ISR it proposes to the controller, and the
//! high watermark that follows from them.
//!
//! Kafka's rules (Partition.scala, KIP-101, KAFKA-15583), in one place:
//! - A follower's LEO is the offset it fetches from: fetching from `o` means
//!   it holds everything below `o`.
//! - A follower is *caught up* at a fetch that reaches the leader's LEO at
//!   that moment, or at the previous fetch's time if this fetch reaches the
//!   LEO the leader had then (it was behind only by what arrived since).
//! - ISR shrink: members not caught up for `replica_lag_time_max_ms` are
//!   proposed for removal.
//! - ISR expand: a non-member whose LEO has reached the HW and the start of
//!   the leader's current epoch, and that has fetched in this epoch, is
//!   proposed for addition.
//! - The controller is the source of truth: a proposal is in flight until
//!   the controller answers; meanwhile the *maximal* ISR (committed ISR plus
//!   pending additions) decides the HW, so an addition never lets the HW
//!   skip a member that might already count.
//! - HW = min LEO over the maximal ISR (the leader included), and it only
//!   advances while the committed ISR has at least min.insync.replicas
//!   members (KAFKA-15583).
//!
//! Sans-IO: the broker feeds fetches, time and controller answers in; the
//! ISR proposal and the new HW come out as return values.

use crate::types::{BrokerId, LeaderEpoch, Offset};
use std::collections::BTreeMap;

/// Pause after a refused or lost ISR proposal before proposing again.
pub const PROPOSAL_BACKOFF_MS: u64 = 100;

/// Switches for planted bugs that live in the leader's bookkeeping. The
/// broker maps its `Plants` onto these; all off is Kafka's behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderPlants {
    /// `isr-join-early`: a follower rejoins the ISR as soon as it reaches
    /// the HW, without reaching the epoch's start offset or fetching in
    /// this epoch.
    pub isr_join_early: bool,
    /// `ignore-min-isr`: the HW advances whatever the ISR's size.
    pub ignore_min_isr: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Kafka's replica.lag.time.max.ms (default 30 s).
    pub replica_lag_time_max_ms: u64,
    /// Effective min.insync.replicas: min(configured, replication factor).
    pub min_insync_replicas: u32,
    pub plants: LeaderPlants,
}

/// What the leader knows about one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Follower {
    /// Its log end offset, as its last fetch told (`None` before any fetch
    /// in this leadership).
    leo: Option<Offset>,
    /// Last time it was caught up (starts at the leadership's start for ISR
    /// members, so a member gets a full lag window before it is dropped).
    last_caught_up_ms: u64,
    /// The leader's LEO and the time at its previous fetch.
    last_fetch_leader_leo: Offset,
    last_fetch_ms: u64,
}

/// An ISR change proposed to the controller and not yet answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrProposal {
    pub isr: Vec<BrokerId>,
    pub partition_epoch: u32,
}

/// A leader's state for one partition, for one leader epoch.
#[derive(Clone, Debug)]
pub struct LeaderState {
    config: LeaderConfig,
    me: BrokerId,
    leader_epoch: LeaderEpoch,
    /// The controller's ISR and the partition epoch it was committed in.
    isr: Vec<BrokerId>,
    partition_epoch: u32,
    pending: Option<IsrProposal>,
    /// After a refused or lost proposal, no new one before this time.
    next_proposal_ms: u64,
    /// The pending proposal's request was lost (timed out, disconnected):
    /// its outcome is unknown, so it stays pending and is sent again then.
    resend_at_ms: Option<u64>,
    /// The leader's LEO when it became leader: the start offset of its epoch.
    epoch_start_offset: Offset,
    high_watermark: Offset,
    followers: BTreeMap<BrokerId, Follower>,
}

impl LeaderState {
    /// Becoming leader of a partition with `replicas`, the controller's
    /// `isr` and epochs, holding a log that ends at `log_end` and a local
    /// `high_watermark` (learned as a follower; it may lag the old leader's).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: LeaderConfig,
        me: BrokerId,
        replicas: &[BrokerId],
        isr: Vec<BrokerId>,
        leader_epoch: LeaderEpoch,
        partition_epoch: u32,
        log_end: Offset,
        high_watermark: Offset,
        now_ms: u64,
    ) -> LeaderState {
        assert!(replicas.contains(&me), "{me} leads a partition it does not replicate");
        assert!(isr.contains(&me), "{me} leads but is not in the ISR {isr:?}");
        assert!(high_watermark <= log_end, "HW {high_watermark} beyond the log end {log_end}");
        let followers = replicas
            .iter()
            .filter(|&&b| b != me)
            .map(|&b| {
                let follower = Follower {
                    leo: None,
                    last_caught_up_ms: now_ms,
                    last_fetch_leader_leo: Offset::ZERO,
                    last_fetch_ms: now_ms,
                };
                (b, follower)
            })
            .collect();
        LeaderState {
            config,
            me,
            leader_epoch,
            isr,
            partition_epoch,
            pending: None,
            next_proposal_ms: 0,
            resend_at_ms: None,
            epoch_start_offset: log_end,
            high_watermark,
            followers,
        }
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The leader's log end when it became leader: its epoch's first offset.
    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    /// Whether the HW has reached the epoch's start: until then a new
    /// leader's HW may lag what the previous leader had committed, so it is
    /// not shown to consumers as the end of the log (Kafka answers
    /// ListOffsets with OFFSET_NOT_AVAILABLE meanwhile).
    pub fn high_watermark_known(&self) -> bool {
        self.high_watermark >= self.epoch_start_offset
    }

    /// The controller's ISR (not counting a pending proposal).
    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    pub fn partition_epoch(&self) -> u32 {
        self.partition_epoch
    }

    pub fn pending_proposal(&self) -> Option<&IsrProposal> {
        self.pending.as_ref()
    }

    /// The ISR the HW is computed over: the committed ISR plus members a
    /// pending proposal adds.
    pub fn maximal_isr(&self) -> Vec<BrokerId> {
        self.maximal_isr_members().collect()
    }

    /// [`LeaderState::maximal_isr`] without building it (the HW is
    /// recomputed on every fetch and append).
    fn maximal_isr_members(&self) -> impl Iterator<Item = BrokerId> + '_ {
        let pending = self.pending.iter().flat_map(|p| p.isr.iter().filter(|b| !self.isr.contains(b)));
        self.isr.iter().chain(pending).copied()
    }

    /// Whether an acks=all append may start: the ISR has at least
    /// min.insync.replicas members (else NOT_ENOUGH_REPLICAS, before append).
    pub fn enough_replicas(&self) -> bool {
        self.isr.len() as u32 >= self.config.min_insync_replicas
    }

    /// A follower fetched from `fetch_offset` while the leader's log ended at
    /// `leader_leo`. Returns an ISR expansion to propose, if any.
    pub fn on_follower_fetch(
        &mut self,
        now_ms: u64,
        follower: BrokerId,
        fetch_offset: Offset,
        leader_leo: Offset,
    ) -> Option<IsrProposal> {
        let state = self.followers.get_mut(&follower)?;
        assert!(
            fetch_offset <= leader_leo,
            "{follower} fetched from {fetch_offset}, past the leader's end {leader_leo}"
        );
        if fetch_offset >= leader_leo {
            state.last_caught_up_ms = now_ms;
        } else if fetch_offset >= state.last_fetch_leader_leo {
            state.last_caught_up_ms = state.last_caught_up_ms.max(state.last_fetch_ms);
        }
        state.leo = Some(fetch_offset);
        state.last_fetch_leader_leo = leader_leo;
        state.last_fetch_ms = now_ms;
        self.maybe_expand(now_ms, follower)
    }

    fn maybe_expand(&mut self, now_ms: u64, follower: BrokerId) -> Option<IsrProposal> {
        if self.pending.is_some() || now_ms < self.next_proposal_ms || self.isr.contains(&follower) {
            return None;
        }
        let state = self.followers[&follower];
        // Fetched in this epoch: any fetch since this leadership began counts,
        // because a follower only fetches from the leader of its known epoch.
        let leo = state.leo?;
        let eligible = if self.config.plants.isr_join_early {
            leo >= self.high_watermark
        } else {
            leo >= self.high_watermark && leo >= self.epoch_start_offset
        };
        if !eligible {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.push(follower);
        self.propose(isr)
    }

    /// ISR members that have not been caught up for the lag window. Returns
    /// the shrink to propose, if any.
    pub fn maybe_shrink(&mut self, now_ms: u64) -> Option<IsrProposal> {
        if self.pending.is_some() || now_ms < self.next_proposal_ms {
            return None;
        }
        let lag = self.config.replica_lag_time_max_ms;
        let stale: Vec<BrokerId> = self
            .isr
            .iter()
            .copied()
            .filter(|b| *b != self.me)
            .filter(|b| self.followers.get(b).is_some_and(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag))
            .collect();
        if stale.is_empty() {
            return None;
        }
        let isr = self.isr.iter().copied().filter(|b| !stale.contains(b)).collect();
        self.propose(isr)
    }

    /// When the next shrink check could find something (the earliest moment
    /// an ISR member's lag window runs out).
    pub fn next_shrink_check_ms(&self) -> Option<u64> {
        self.isr
            .iter()
            .filter_map(|b| self.followers.get(b))
            .map(|f| f.last_caught_up_ms.saturating_add(self.config.replica_lag_time_max_ms).saturating_add(1))
            .min()
            .map(|at| at.max(self.next_proposal_ms))
    }

    fn propose(&mut self, isr: Vec<BrokerId>) -> Option<IsrProposal> {
        let proposal = IsrProposal { isr, partition_epoch: self.partition_epoch };
        self.pending = Some(proposal.clone());
        Some(proposal)
    }

    /// The controller accepted an ISR change (or pushed a newer state for
    /// this same leader epoch): adopt it and drop any pending proposal.
    pub fn on_isr_committed(&mut self, isr: Vec<BrokerId>, partition_epoch: u32) {
        assert!(isr.contains(&self.me), "the committed ISR {isr:?} lacks its leader {}", self.me);
        if partition_epoch < self.partition_epoch {
            return; // stale news
        }
        self.isr = isr;
        self.partition_epoch = partition_epoch;
        self.pending = None;
        self.resend_at_ms = None;
    }

    /// The controller refused the proposal (or it was lost): forget it, so a
    /// later fetch or shrink check proposes again from the current state —
    /// not before `PROPOSAL_BACKOFF_MS`, so a refusal is not retried in a loop.
    pub fn on_proposal_rejected(&mut self, now_ms: u64) {
        self.pending = None;
        self.resend_at_ms = None;
        self.next_proposal_ms = now_ms.saturating_add(PROPOSAL_BACKOFF_MS);
    }

    /// The proposal's request got no answer (timed out or disconnected): the
    /// controller may have applied it. It stays pending — an addition keeps
    /// counting in the maximal ISR, so the HW never passes the added
    /// member's log end on the assumption that it failed — and is sent again
    /// after `PROPOSAL_BACKOFF_MS` (Kafka's AlterPartitionManager retries).
    pub fn on_proposal_lost(&mut self, now_ms: u64) {
        if self.pending.is_some() {
            self.resend_at_ms = Some(now_ms.saturating_add(PROPOSAL_BACKOFF_MS));
        }
    }

    /// The controller holds a newer partition epoch than the proposal named
    /// (Kafka's INVALID_UPDATE_VERSION): perhaps an earlier copy of this very
    /// proposal was applied. The proposal stays pending until the metadata
    /// brings the partition's state (`on_isr_committed`).
    pub fn on_proposal_stale(&mut self) {
        self.resend_at_ms = None;
    }

    /// The pending proposal, if its resend is due at `now_ms`.
    pub fn take_resend(&mut self, now_ms: u64) -> Option<IsrProposal> {
        if self.resend_at_ms.is_some_and(|at| at <= now_ms) {
            self.resend_at_ms = None;
            return self.pending.clone();
        }
        None
    }

    /// When a lost proposal is due to be sent again.
    pub fn resend_at_ms(&self) -> Option<u64> {
        self.resend_at_ms
    }

    /// Recomputes the HW from the maximal ISR's LEOs and the leader's own
    /// `leader_leo`. Returns the new HW if it advanced. It never moves back.
    pub fn update_high_watermark(&mut self, leader_leo: Offset) -> Option<Offset> {
        if !self.config.plants.ignore_min_isr && (self.isr.len() as u32) < self.config.min_insync_replicas {
            return None;
        }
        let mut candidate = leader_leo;
        for member in self.maximal_isr_members() {
            if member == self.me {
                continue;
            }
            // A member that has not fetched in this leadership holds the HW
            // where it is: nothing proves it has more.
            let leo = self.followers.get(&member).and_then(|f| f.leo).unwrap_or(self.high_watermark);
            candidate = candidate.min(leo);
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }

    /// The follower's LEO as last reported (for snapshots and tests).
    pub fn follower_leo(&self, follower: BrokerId) -> Option<Offset> {
        self.followers.get(&follower).and_then(|f| f.leo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: u64 = 10_000;
    const B0: BrokerId = BrokerId(0);
    const B1: BrokerId = BrokerId(1);
    const B2: BrokerId = BrokerId(2);

    fn config(min_isr: u32) -> LeaderConfig {
        LeaderConfig { replica_lag_time_max_ms: LAG, min_insync_replicas: min_isr, plants: LeaderPlants::default() }
    }

    /// Leader B0 of [B0, B1, B2], all in the ISR, log end and HW given.
    fn leader(min_isr: u32, log_end: i64, hw: i64) -> LeaderState {
        LeaderState::new(
            config(min_isr),
            B0,
            &[B0, B1, B2],
            vec![B0, B1, B2],
            LeaderEpoch(3),
            7,
            Offset(log_end),
            Offset(hw),
            0,
        )
    }

    #[test]
    fn hw_is_the_minimum_leo_over_the_isr() {
        let mut l = leader(1, 10, 0);
        l.on_follower_fetch(1, B1, Offset(10), Offset(10));
        assert_eq!(l.update_high_watermark(Offset(10)), None, "B2 has not fetched: it holds the HW");
        l.on_follower_fetch(2, B2, Offset(6), Offset(10));
        assert_eq!(l.update_high_watermark(Offset(10)), Some(Offset(6)));
        l.on_follower_fetch(3, B2, Offset(10), Offset(10));
        assert_eq!(l.update_high_watermark(Offset(10)), Some(Offset(10)));
        assert_eq!(l.update_high_watermark(Offset(10)), None, "no change, no news");
    }

    #[test]
    fn hw_never_moves_back() {
        let mut l = leader(1, 10, 8);
        l.on_follower_fetch(1, B1, Offset(2), Offset(10));
        l.on_follower_fetch(1, B2, Offset(3), Offset(10));
        assert_eq!(l.update_high_watermark(Offset(10)), None);
        assert_eq!(l.high_watermark(), Offset(8));
    }

    #[test]
    fn hw_waits_for_min_isr_unless_planted() {
        let mut l = leader(2, 10, 0);
        l.on_isr_committed(vec![B0], 8);
        assert!(!l.enough_replicas());
        assert_eq!(l.update_high_watermark(Offset(10)), None, "ISR of 1 < min.insync.replicas 2");
        let mut planted = leader(2, 10, 0);
        planted.config.plants.ignore_min_isr = true;
        planted.on_isr_committed(vec![B0], 8);
        assert_eq!(planted.update_high_watermark(Offset(10)), Some(Offset(10)));
    }

    #[test]
    fn lagging_member_is_proposed_for_removal_after_the_lag_window() {
        let mut l = leader(1, 10, 0);
        l.on_follower_fetch(100, B1, Offset(10), Offset(10));
        l.on_follower_fetch(100, B2, Offset(4), Offset(10));
        assert_eq!(l.maybe_shrink(LAG), None, "B2's window started at the leadership's start");
        let shrink = l.maybe_shrink(LAG + 1).expect("B2 has lagged past the window");
        assert_eq!(shrink.isr, vec![B0, B1]);
        assert_eq!(shrink.partition_epoch, 7);
        assert_eq!(l.maybe_shrink(LAG + 2), None, "one proposal in flight at a time");
        l.on_isr_committed(vec![B0, B1], 8);
        assert_eq!(l.isr(), &[B0, B1]);
        assert_eq!(l.pending_proposal(), None);
    }

    #[test]
    fn caught_up_at_the_previous_fetch_when_only_new_data_is_missing() {
        let mut l = leader(1, 10, 0);
        l.on_follower_fetch(5_000, B1, Offset(10), Offset(10));
        // New data arrived: this fetch reaches the end the leader had at the
        // previous fetch (10) but not the current one (12): caught up as of 5_000.
        l.on_follower_fetch(9_000, B1, Offset(10), Offset(12));
        // Likewise: reaches 12, the end at the previous fetch: caught up as of 9_000.
        l.on_follower_fetch(14_000, B1, Offset(12), Offset(15));
        l.on_follower_fetch(14_000, B2, Offset(15), Offset(15));
        assert_eq!(l.maybe_shrink(9_000 + LAG), None, "B1 was caught up at 9_000");
        assert_eq!(l.maybe_shrink(9_000 + LAG + 1).map(|p| p.isr), Some(vec![B0, B2]));
    }

    #[test]
    fn follower_rejoins_only_past_the_epoch_start() {
        // Leader's epoch starts at 10 (its log end when elected); HW 4.
        let mut l = leader(1, 10, 4);
        l.on_isr_committed(vec![B0, B1], 8);
        l.on_follower_fetch(1, B1, Offset(10), Offset(10));
        assert_eq!(l.on_follower_fetch(1, B2, Offset(6), Offset(10)), None, "at the HW but short of the epoch start");
        let expand = l.on_follower_fetch(2, B2, Offset(10), Offset(10)).expect("caught up to the epoch start");
        assert_eq!(expand.isr, vec![B0, B1, B2]);
        assert_eq!(l.maximal_isr(), vec![B0, B1, B2], "a pending addition counts for the HW");
    }

    #[test]
    fn isr_join_early_plant_skips_the_epoch_start_check() {
        let mut l = leader(1, 10, 4);
        l.config.plants.isr_join_early = true;
        l.on_isr_committed(vec![B0, B1], 8);
        let expand = l.on_follower_fetch(1, B2, Offset(6), Offset(10)).expect("planted: joins at the HW");
        assert_eq!(expand.isr, vec![B0, B1, B2]);
    }

    /// random-nemesis-groups seed 700: an addition whose request was lost
    /// (the leader paused past its timeout) had been applied by the
    /// controller, which then elected the added member; the leader, taking
    /// the loss for a refusal, committed on the smaller ISR records the new
    /// leader did not have. A lost or stale-epoch proposal stays pending.
    #[test]
    fn a_lost_or_stale_addition_keeps_counting_for_the_hw() {
        // The epoch starts at 4 (the log end at election); the leader has appended to 10 since.
        let mut l = leader(2, 4, 4);
        l.on_isr_committed(vec![B0, B1], 8);
        l.on_follower_fetch(1, B1, Offset(4), Offset(10));
        let expand = l.on_follower_fetch(1, B2, Offset(4), Offset(10)).expect("B2 at the HW and the epoch start");
        assert_eq!(expand.isr, vec![B0, B1, B2]);
        l.on_proposal_lost(5);
        assert_eq!(l.maximal_isr(), vec![B0, B1, B2], "the lost addition may have been applied");
        l.on_follower_fetch(6, B1, Offset(10), Offset(10));
        assert_eq!(l.update_high_watermark(Offset(10)), None, "B2's log end (4) holds the HW");
        assert_eq!(l.take_resend(5 + PROPOSAL_BACKOFF_MS - 1), None);
        assert_eq!(l.take_resend(5 + PROPOSAL_BACKOFF_MS), Some(expand.clone()), "sent again");
        l.on_proposal_stale();
        assert_eq!(l.maximal_isr(), vec![B0, B1, B2], "kept until the metadata says");
        assert_eq!(l.update_high_watermark(Offset(10)), None);
        l.on_isr_committed(vec![B0, B1, B2], 9);
        assert_eq!(l.pending_proposal(), None);
    }

    #[test]
    fn rejected_proposal_is_retried_from_current_state() {
        let mut l = leader(1, 10, 0);
        l.on_follower_fetch(1, B1, Offset(10), Offset(10));
        l.on_follower_fetch(1, B2, Offset(0), Offset(10));
        assert!(l.maybe_shrink(LAG + 2).is_some());
        l.on_proposal_rejected(LAG + 2);
        l.on_follower_fetch(LAG + 2, B1, Offset(10), Offset(10));
        assert_eq!(l.maybe_shrink(LAG + 3), None, "backing off after the refusal");
        let at = LAG + 2 + PROPOSAL_BACKOFF_MS;
        assert_eq!(l.next_shrink_check_ms(), Some(at));
        l.on_follower_fetch(at, B1, Offset(10), Offset(10));
        assert_eq!(l.maybe_shrink(at).map(|p| p.isr), Some(vec![B0, B1]));
    }

    #[test]
    fn stale_isr_news_is_ignored() {
        let mut l = leader(1, 10, 0);
        l.on_isr_committed(vec![B0, B1], 9);
        l.on_isr_committed(vec![B0, B1, B2], 8);
        assert_eq!(l.isr(), &[B0, B1]);
        assert_eq!(l.partition_epoch(), 9);
    }

    #[test]
    fn next_shrink_check_is_the_earliest_window_end() {
        let mut l = leader(1, 10, 0);
        l.on_follower_fetch(500, B1, Offset(10), Offset(10));
        assert_eq!(l.next_shrink_check_ms(), Some(LAG + 1), "B2's window from the start");
        l.on_follower_fetch(700, B2, Offset(10), Offset(10));
        assert_eq!(l.next_shrink_check_ms(), Some(500 + LAG + 1));
    }

    #[test]
    fn a_fetch_from_a_non_replica_changes_nothing() {
        let mut l = leader(1, 10, 0);
        assert_eq!(l.on_follower_fetch(1, BrokerId(9), Offset(10), Offset(10)), None);
        assert_eq!(l.follower_leo(BrokerId(9)), None);
    }
}
