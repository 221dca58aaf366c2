//! KIP-966: eligible leader replicas and unclean-shutdown awareness.

use super::tests::{b, Harness, P0};
use super::*;

fn min_isr_2() -> ControllerConfig {
    ControllerConfig { min_insync_replicas: 2, ..ControllerConfig::default() }
}

/// P0 (replicas [0, 1, 2], led by 0) shrinks to ISR [0]: 2 leaves while the
/// ISR stays at min.insync.replicas, 1 leaves below it and becomes an ELR.
/// Then 0 dies too: offline, ISR [0] (the last member is kept).
fn shrink_to_last_standing(h: &mut Harness) {
    h.up(&[0, 1, 2]);
    h.expire(2);
    assert_eq!((h.p(P0).isr, h.p(P0).elr), (b(&[0, 1]), b(&[])), "ISR at min ISR: no ELR");
    h.expire(1);
    assert_eq!((h.p(P0).isr, h.p(P0).elr), (b(&[0]), b(&[1])), "below min ISR: the leaver is an ELR");
    h.expire(0);
    let p = h.p(P0);
    assert_eq!((p.leader, p.isr, p.elr), (None, b(&[0]), b(&[1])));
}

fn register(h: &mut Harness, broker: u32, clean_shutdown: bool) {
    let request = ControllerRequest::Register { broker: BrokerId(broker), clean_shutdown };
    let ControllerResponse::Register(Ok(epoch)) = h.handle(request) else { panic!("register {broker}") };
    h.epochs.insert(BrokerId(broker), epoch);
}

#[test]
fn an_unclean_last_member_waits_for_an_eligible_leader_replica() {
    let mut h = Harness::new(min_isr_2());
    shrink_to_last_standing(&mut h);
    register(&mut h, 0, false);
    assert!(h.p(P0).last_member_unclean);
    h.heartbeat(0).unwrap();
    assert_eq!(h.p(P0).leader, None, "0 may have lost committed records: wait for the ELR");
    register(&mut h, 1, true);
    h.heartbeat(1).unwrap();
    let p = h.p(P0);
    assert_eq!((p.leader, p.isr.clone(), p.elr.clone()), (Some(BrokerId(1)), b(&[1]), b(&[])));
    assert!(!p.last_member_unclean, "an election clears the mark");
    let clean_election = h.events().into_iter().any(
        |e| matches!(e, ControllerEvent::LeaderElected { tp, leader: Some(BrokerId(1)), clean: true, .. } if tp == P0),
    );
    assert!(clean_election, "an ELR member is a clean choice");
}

#[test]
fn a_clean_last_member_leads_again() {
    let mut h = Harness::new(min_isr_2());
    shrink_to_last_standing(&mut h);
    register(&mut h, 0, true);
    assert!(!h.p(P0).last_member_unclean);
    h.heartbeat(0).unwrap();
    assert_eq!(h.p(P0).leader, Some(BrokerId(0)));
}

#[test]
fn with_no_elr_the_unclean_last_member_is_the_best_there_is() {
    // min.insync.replicas 1: nobody left the ISR below it, so no ELR.
    let mut h = Harness::new(ControllerConfig::default());
    h.up(&[0, 1, 2]);
    h.expire(2);
    h.expire(1);
    h.expire(0);
    assert_eq!((h.p(P0).isr, h.p(P0).elr), (b(&[0]), b(&[])));
    register(&mut h, 0, false);
    h.heartbeat(0).unwrap();
    assert_eq!(h.p(P0).leader, Some(BrokerId(0)));
}

#[test]
fn an_unclean_restart_leaves_every_elr() {
    let mut h = Harness::new(min_isr_2());
    shrink_to_last_standing(&mut h);
    register(&mut h, 1, false);
    assert_eq!(h.p(P0).elr, b(&[]), "1 may have lost what made it eligible");
    register(&mut h, 0, false);
    h.heartbeat(0).unwrap();
    assert_eq!(h.p(P0).leader, Some(BrokerId(0)), "no trusted replica left: 0 leads");
}

#[test]
fn planted_last_replica_standing_trusts_the_unclean_restart() {
    let config = ControllerConfig { trust_unclean_restarts: true, ..min_isr_2() };
    let mut h = Harness::new(config);
    shrink_to_last_standing(&mut h);
    register(&mut h, 0, false);
    h.heartbeat(0).unwrap();
    assert_eq!(h.p(P0).leader, Some(BrokerId(0)), "re-elected after losing unflushed records");
}

#[test]
fn elr_empties_when_the_isr_is_back_at_min_isr_and_survives_restarts() {
    let mut h = Harness::new(min_isr_2());
    h.up(&[0, 1, 2]);
    h.expire(2);
    h.expire(1);
    assert_eq!(h.p(P0).elr, b(&[1]));
    h.restart(min_isr_2());
    assert_eq!(h.p(P0).elr, b(&[1]), "the ELR is persisted");
    h.up(&[1]);
    h.alter(0, P0, &[0, 1]).unwrap();
    assert_eq!((h.p(P0).isr, h.p(P0).elr), (b(&[0, 1]), b(&[])));
}
