//! Peak resident memory by phase of a run, for `ksim bench`: the kernel's
//! resident high-water mark (`VmHWM` in `/proc/self/status`), reset at each
//! phase boundary by writing `5` to `/proc/self/clear_refs`, so each phase
//! reports its own peak. Linux only; elsewhere (or where the reset is
//! refused) nothing is reported. Off unless `ksim bench` turns it on: a
//! reading costs tens of microseconds, and it is observation only — it
//! changes nothing a run does or reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static MEASURING: AtomicBool = AtomicBool::new(false);
/// The highest mark taken in this process (KiB): resets hide earlier peaks
/// from `VmHWM`, so the process's peak is the larger of this and it.
static HIGHEST_KIB: AtomicU64 = AtomicU64::new(0);

/// Turns phase measurement on or off for this process.
pub fn measure_phases(on: bool) {
    MEASURING.store(on, Ordering::Relaxed);
}

/// The resident high-water mark since the previous call (MiB), then starts
/// the next phase's; `None` when measurement is off or unsupported.
pub fn take_phase_peak_mib() -> Option<f64> {
    if !MEASURING.load(Ordering::Relaxed) {
        return None;
    }
    let kib = high_water_kib()?;
    HIGHEST_KIB.fetch_max(kib, Ordering::Relaxed);
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    Some(kib as f64 / 1024.0)
}

/// This process's peak resident set size (MiB; 0 where unavailable),
/// including peaks that a phase reset hid from the kernel's mark.
pub fn process_peak_mib() -> f64 {
    let kib = high_water_kib().unwrap_or(0).max(HIGHEST_KIB.load(Ordering::Relaxed));
    kib as f64 / 1024.0
}

fn high_water_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
