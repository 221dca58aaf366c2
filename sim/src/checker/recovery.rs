//! recovery-bounded: a broker that boots serves again within a bounded
//! simulated time. "Serves" is its registration being accepted by the
//! controller: recovery (opening every log) is done and the controller
//! unfenced it, so leaders and clients can use it again.
//!
//! Two-phase, like every liveness check: during the chaos the controller may
//! be down or unreachable, so the clock of a boot starts at the later of its
//! boot and the heal. A boot is excused if the nemesis ended it (crash,
//! power loss, controlled shutdown) before its deadline, or if the run ended
//! first while it was still recovering. A boot that stopped itself (its disk
//! failed or its log could not be recovered) before serving is judged: if
//! that happened before the heal, the heal's restart is the next boot and is
//! judged in its turn; after the heal nothing excuses it.

use super::evidence::Findings;
use super::{CheckReport, Invariant};
use serde::{Deserialize, Serialize};

/// How one broker boot ended, if it did before the run's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootEnd {
    /// Killed by the nemesis (crash or power loss).
    Killed,
    /// A controlled shutdown (the `stop` verb).
    Stopped,
    /// The broker stopped itself; the reason it gave.
    Halted(String),
}

/// One boot of one broker, as the simulator saw it (times in simulated ns).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerBoot {
    pub broker: u32,
    pub boot_ns: u64,
    /// When the controller first accepted this boot's registration.
    pub registered_ns: Option<u64>,
    pub ended: Option<(u64, BootEnd)>,
}

/// Everything the check needs: every boot, when the heal began, when the run
/// ended, and the bound.
#[derive(Clone, Debug, Default)]
pub struct Recoveries {
    pub boots: Vec<BrokerBoot>,
    /// Start of the liveness phase; `None` if the run never got there.
    pub heal_ns: Option<u64>,
    pub end_ns: u64,
    pub bound_ns: u64,
}

impl Recoveries {
    /// The longest time from a boot to its registration, in simulated ms,
    /// over the boots that registered (for the report).
    pub fn slowest_ms(&self) -> Option<u64> {
        self.boots.iter().filter_map(|b| Some(b.registered_ns? - b.boot_ns)).max().map(|ns| ns / 1_000_000)
    }
}

/// Judges every boot; the report counts `recovery-bounded` (zero if clean).
pub fn check_recoveries(recoveries: &Recoveries) -> CheckReport {
    let mut findings = Findings::judging(&[Invariant::RecoveryBounded]);
    check(recoveries, &mut findings);
    let (violations, counts) = findings.into_parts();
    CheckReport { violations, counts, ..CheckReport::default() }
}

fn check(recoveries: &Recoveries, findings: &mut Findings) {
    // Without a heal there is no liveness phase to judge against.
    let Some(heal_ns) = recoveries.heal_ns else { return };
    let bound_ms = recoveries.bound_ns / 1_000_000;
    for boot in &recoveries.boots {
        let deadline = boot.boot_ns.max(heal_ns) + recoveries.bound_ns;
        let at = |ns: u64| format!("{:.3} s", ns as f64 / 1e9);
        let late = match (boot.registered_ns, &boot.ended) {
            (Some(registered), _) if registered <= deadline => continue,
            (Some(registered), _) => format!("it registered only at {}", at(registered)),
            (None, Some((ended, BootEnd::Halted(reason)))) => {
                if *ended < heal_ns {
                    continue; // the heal restarted it: that boot is judged
                }
                format!("it stopped itself at {} before serving: {reason}", at(*ended))
            }
            (None, Some((ended, _))) if *ended < deadline => continue,
            (None, Some((ended, how))) => format!("it had not registered when it ended ({how:?}) at {}", at(*ended)),
            (None, None) if recoveries.end_ns < deadline => continue,
            (None, None) => "it never registered".to_string(),
        };
        findings.found(Invariant::RecoveryBounded, || {
            format!(
                "broker {} booted at {} and did not serve again within {bound_ms} ms of {}: {late}",
                boot.broker,
                at(boot.boot_ns),
                if boot.boot_ns >= heal_ns { "its boot" } else { "the heal" },
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn boot(broker: u32, boot_s: u64, registered_s: Option<u64>, ended: Option<(u64, BootEnd)>) -> BrokerBoot {
        let ended = ended.map(|(s, how)| (s * S, how));
        BrokerBoot { broker, boot_ns: boot_s * S, registered_ns: registered_s.map(|s| s * S), ended }
    }

    fn judge(boots: Vec<BrokerBoot>, heal_s: Option<u64>, end_s: u64) -> Vec<String> {
        let recoveries = Recoveries { boots, heal_ns: heal_s.map(|s| s * S), end_ns: end_s * S, bound_ns: 10 * S };
        let report = check_recoveries(&recoveries);
        assert_eq!(report.counts[&Invariant::RecoveryBounded], report.violations.len() as u64);
        report.violations.into_iter().map(|v| v.detail).collect()
    }

    #[test]
    fn prompt_registrations_pass() {
        assert!(judge(vec![boot(0, 0, Some(1), None), boot(1, 50, Some(59), None)], Some(40), 100).is_empty());
    }

    #[test]
    fn the_clock_of_a_boot_in_the_chaos_starts_at_the_heal() {
        // Booted at 5 s with the controller down; registered 3 s after the heal at 40 s.
        assert!(judge(vec![boot(0, 5, Some(43), None)], Some(40), 100).is_empty());
        let late = judge(vec![boot(0, 5, Some(51), None)], Some(40), 100);
        assert_eq!(late.len(), 1);
        assert!(late[0].contains("broker 0") && late[0].contains("of the heal"), "{late:?}");
    }

    #[test]
    fn a_boot_after_the_heal_must_serve_within_the_bound() {
        let late = judge(vec![boot(2, 45, Some(56), None)], Some(40), 100);
        assert_eq!(late.len(), 1, "{late:?}");
        assert!(late[0].contains("of its boot") && late[0].contains("registered only at 56.000 s"), "{late:?}");
        assert_eq!(judge(vec![boot(2, 45, None, None)], Some(40), 100).len(), 1);
    }

    #[test]
    fn a_halt_before_the_heal_is_excused_one_after_it_is_not() {
        let disk_full = BootEnd::Halted("disk full".into());
        assert!(judge(vec![boot(0, 5, None, Some((6, disk_full.clone())))], Some(40), 100).is_empty());
        let refused = judge(vec![boot(0, 41, None, Some((41, disk_full)))], Some(40), 100);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].contains("stopped itself") && refused[0].contains("disk full"), "{refused:?}");
    }

    #[test]
    fn boots_the_nemesis_ended_or_the_run_cut_short_are_not_judged() {
        assert!(judge(vec![boot(0, 5, None, Some((20, BootEnd::Killed)))], Some(40), 100).is_empty());
        assert!(judge(vec![boot(0, 5, None, Some((30, BootEnd::Stopped)))], Some(40), 100).is_empty());
        assert!(judge(vec![boot(0, 95, None, None)], Some(40), 100).is_empty());
        // Nothing is judged in a run that never healed.
        assert!(judge(vec![boot(0, 5, None, None)], None, 100).is_empty());
    }

    #[test]
    fn slowest_recovery_is_reported() {
        let r = Recoveries {
            boots: vec![boot(0, 0, Some(2), None), boot(1, 10, Some(17), None), boot(2, 3, None, None)],
            ..Recoveries::default()
        };
        assert_eq!(r.slowest_ms(), Some(7_000));
    }
}
