//! Leader election and ISR shrinking when a broker is fenced or unfenced.
//! Pure functions of one partition and of who is eligible, so the rules can be
//! read (and tested) apart from the bookkeeping around them.

use super::image::PartitionState;
use crate::types::BrokerId;

/// What the rules allow: the config's switch and the planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ElectionPolicy {
    /// `unclean.leader.election.enable`: fall back to any live replica.
    pub unclean: bool,
    /// Planted bug `unclean-always`: ignore the ISR altogether.
    pub unclean_always: bool,
}

/// The leader and ISR one partition should move to, and whether the new
/// leader came from the ISR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    pub leader: Option<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub clean: bool,
}

/// Elects a leader for `p` among eligible replicas other than `outgoing` (the
/// broker being fenced, if any). Candidates are tried in replica order, so the
/// preferred replica wins whenever it may.
pub(super) fn elect(
    p: &PartitionState,
    outgoing: Option<BrokerId>,
    eligible: impl Fn(BrokerId) -> bool,
    policy: ElectionPolicy,
) -> Outcome {
    let remaining_isr: Vec<BrokerId> = p.isr.iter().copied().filter(|&r| Some(r) != outgoing).collect();
    let mut candidates = p.replicas.iter().copied().filter(|&r| Some(r) != outgoing && eligible(r));
    if policy.unclean_always {
        if let Some(leader) = candidates.next() {
            return with_leader(leader, remaining_isr);
        }
    }
    // KIP-966: the last ISR member came back from an unclean shutdown and may
    // have lost committed records; an eligible leader replica (which holds
    // them all) leads instead, and while one may still come back, we wait.
    if p.last_member_unclean {
        if let Some(leader) = candidates.clone().find(|r| p.elr.contains(r)) {
            return Outcome { leader: Some(leader), isr: vec![leader], clean: true };
        }
    }
    let isr_trusted = !p.last_member_unclean || p.elr.is_empty();
    if let Some(leader) = candidates.clone().find(|r| isr_trusted && remaining_isr.contains(r)) {
        return Outcome { leader: Some(leader), isr: remaining_isr, clean: true };
    }
    if policy.unclean {
        if let Some(leader) = candidates.next() {
            return with_leader(leader, remaining_isr);
        }
    }
    // Offline. KRaft keeps the last ISR member (rather than emptying the ISR)
    // so that it, and only it, can lead again without losing committed data.
    let isr = if remaining_isr.is_empty() { p.isr.clone() } else { remaining_isr };
    Outcome { leader: None, isr, clean: true }
}

/// `leader` leads; a leader from outside the ISR starts a new ISR of itself
/// alone, since nobody else is known to share its log.
fn with_leader(leader: BrokerId, remaining_isr: Vec<BrokerId>) -> Outcome {
    if remaining_isr.contains(&leader) {
        Outcome { leader: Some(leader), isr: remaining_isr, clean: true }
    } else {
        Outcome { leader: Some(leader), isr: vec![leader], clean: false }
    }
}

/// What fencing `broker` does to `p`: a new election where it led, removal
/// from the ISR where it followed (never emptying the ISR). `None`: untouched.
pub(super) fn on_fenced(
    p: &PartitionState,
    broker: BrokerId,
    eligible: impl Fn(BrokerId) -> bool,
    policy: ElectionPolicy,
) -> Option<Outcome> {
    debug_assert!(!eligible(broker), "a fenced broker is not eligible");
    if p.leader == Some(broker) {
        return Some(elect(p, Some(broker), eligible, policy));
    }
    if p.isr.contains(&broker) && p.isr.len() > 1 {
        let isr = p.isr.iter().copied().filter(|&r| r != broker).collect();
        return Some(Outcome { leader: p.leader, isr, clean: true });
    }
    None
}

/// What a broker becoming eligible does to `p`: an offline partition may get
/// a leader again. `None` when `p` has a leader or still cannot elect one.
pub(super) fn on_unfenced(
    p: &PartitionState,
    eligible: impl Fn(BrokerId) -> bool,
    policy: ElectionPolicy,
) -> Option<Outcome> {
    if p.leader.is_some() {
        return None;
    }
    let outcome = elect(p, None, eligible, policy);
    outcome.leader.is_some().then_some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LeaderEpoch;

    const CLEAN: ElectionPolicy = ElectionPolicy { unclean: false, unclean_always: false };
    const UNCLEAN: ElectionPolicy = ElectionPolicy { unclean: true, unclean_always: false };
    const ALWAYS: ElectionPolicy = ElectionPolicy { unclean: false, unclean_always: true };

    fn b(ids: &[u32]) -> Vec<BrokerId> {
        ids.iter().copied().map(BrokerId).collect()
    }

    fn state(replicas: &[u32], leader: Option<u32>, isr: &[u32]) -> PartitionState {
        PartitionState {
            replicas: b(replicas),
            leader: leader.map(BrokerId),
            leader_epoch: LeaderEpoch(3),
            partition_epoch: 7,
            isr: b(isr),
            elr: Vec::new(),
            last_member_unclean: false,
        }
    }

    fn alive(ids: &'static [u32]) -> impl Fn(BrokerId) -> bool {
        move |r| ids.contains(&r.0)
    }

    #[test]
    fn clean_election_takes_the_first_live_isr_member_in_replica_order() {
        let p = state(&[0, 1, 2, 3], Some(0), &[0, 2, 3]);
        let out = on_fenced(&p, BrokerId(0), alive(&[1, 2, 3]), CLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(2)), isr: b(&[2, 3]), clean: true });
        // The first ISR member is dead: the next one leads, the dead one stays
        // in the ISR until it is fenced itself.
        let out = on_fenced(&p, BrokerId(0), alive(&[1, 3]), CLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(3)), isr: b(&[2, 3]), clean: true });
    }

    #[test]
    fn no_live_isr_member_means_offline_keeping_the_last_member() {
        let p = state(&[0, 1, 2], Some(0), &[0]);
        let out = on_fenced(&p, BrokerId(0), alive(&[1, 2]), CLEAN).unwrap();
        assert_eq!(out, Outcome { leader: None, isr: b(&[0]), clean: true });
        let p = state(&[0, 1, 2], Some(0), &[0, 1]);
        let out = on_fenced(&p, BrokerId(0), alive(&[2]), CLEAN).unwrap();
        assert_eq!(out, Outcome { leader: None, isr: b(&[1]), clean: true });
    }

    #[test]
    fn unclean_election_falls_back_to_any_live_replica() {
        let p = state(&[0, 1, 2], Some(0), &[0]);
        let out = on_fenced(&p, BrokerId(0), alive(&[2]), UNCLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(2)), isr: b(&[2]), clean: false });
        // Still prefers the ISR.
        let p = state(&[0, 1, 2], Some(0), &[0, 2]);
        let out = on_fenced(&p, BrokerId(0), alive(&[1, 2]), UNCLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(2)), isr: b(&[2]), clean: true });
    }

    #[test]
    fn planted_unclean_always_ignores_the_isr() {
        let p = state(&[0, 1, 2], Some(0), &[0, 2]);
        let out = on_fenced(&p, BrokerId(0), alive(&[1, 2]), ALWAYS).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(1)), isr: b(&[1]), clean: false });
    }

    #[test]
    fn fenced_follower_leaves_the_isr_but_never_empties_it() {
        let p = state(&[0, 1, 2], Some(0), &[0, 1]);
        let out = on_fenced(&p, BrokerId(1), alive(&[0, 2]), CLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(0)), isr: b(&[0]), clean: true });
        assert_eq!(on_fenced(&p, BrokerId(2), alive(&[0, 1]), CLEAN), None);
        let offline = state(&[0, 1], None, &[1]);
        assert_eq!(on_fenced(&offline, BrokerId(1), alive(&[0]), CLEAN), None);
    }

    #[test]
    fn unfencing_revives_offline_partitions_only() {
        let offline = state(&[0, 1, 2], None, &[1]);
        assert_eq!(on_unfenced(&offline, alive(&[0, 2]), CLEAN), None);
        let out = on_unfenced(&offline, alive(&[1]), CLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(1)), isr: b(&[1]), clean: true });
        let out = on_unfenced(&offline, alive(&[2]), UNCLEAN).unwrap();
        assert_eq!(out, Outcome { leader: Some(BrokerId(2)), isr: b(&[2]), clean: false });
        let online = state(&[0, 1, 2], Some(0), &[0]);
        assert_eq!(on_unfenced(&online, alive(&[0, 1, 2]), UNCLEAN), None);
    }
}
