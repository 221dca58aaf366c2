//! `sim::memory` reads the kernel's resident high-water mark per phase. Its
//! own test binary: a test running beside it in the same process would
//! move the mark.

use sim::memory::{measure_phases, process_peak_mib, take_phase_peak_mib};

/// A phase's peak covers what it held; the next phase, reset, reports less
/// (where the kernel supports the reset: elsewhere nothing is reported).
#[test]
fn a_phase_reports_its_own_peak() {
    measure_phases(true);
    if take_phase_peak_mib().is_none() {
        return;
    }
    let big: Vec<u8> = vec![1; 64 << 20];
    std::hint::black_box(&big);
    drop(big);
    let holding = take_phase_peak_mib().expect("supported");
    let after = take_phase_peak_mib().expect("supported");
    measure_phases(false);
    assert_eq!(take_phase_peak_mib(), None, "off again");
    assert!(holding >= 64.0, "the phase that held 64 MiB reports {holding} MiB");
    assert!(after < holding - 32.0, "the next phase reports {after} MiB, not its own peak");
    assert!(process_peak_mib() >= holding, "the process's peak includes the reset phases'");
}
