//! Simulated clocks. The run's true time is madsim's; each node sees that
//! time plus its own skew (a nemesis verb). broker-core only ever receives
//! `now_ms` from here.

use madsim::time::{Duration, Instant, TimeHandle};
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall-clock epoch the simulated clocks start from (ms), so timestamps look real
/// and negative skew never underflows.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

pub struct Clocks {
    /// The runtime's clock, held so a reading costs one lock rather than
    /// the intercepted `clock_gettime` (a thread-local lookup and a handle
    /// clone per call).
    time: TimeHandle,
    start: Instant,
    skew_ms: Vec<AtomicI64>,
}

impl Clocks {
    /// Starts the clocks now (call inside the runtime).
    pub fn new(nodes: usize) -> Clocks {
        let time = TimeHandle::current();
        Clocks { start: time.now_instant(), time, skew_ms: (0..nodes).map(|_| AtomicI64::new(0)).collect() }
    }

    /// True simulated time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.time.now_instant().duration_since(self.start)
    }

    pub fn elapsed_ns(&self) -> u64 {
        self.elapsed().as_nanos() as u64
    }

    /// Node `node`'s wall clock in ms (true time + its skew).
    pub fn node_now_ms(&self, node: usize) -> u64 {
        let true_ms = EPOCH_MS + self.elapsed().as_millis() as u64;
        true_ms.saturating_add_signed(self.skew_ms[node].load(Ordering::Relaxed))
    }

    /// The true instant at which node `node`'s clock reads `at_ms`.
    pub fn instant_for(&self, node: usize, at_ms: u64) -> Instant {
        let true_ms = at_ms.saturating_add_signed(-self.skew_ms[node].load(Ordering::Relaxed));
        self.start + Duration::from_millis(true_ms.saturating_sub(EPOCH_MS))
    }

    pub fn set_skew(&self, node: usize, skew_ms: i64) {
        self.skew_ms[node].store(skew_ms, Ordering::Relaxed);
    }

    pub fn skew(&self, node: usize) -> i64 {
        self.skew_ms[node].load(Ordering::Relaxed)
    }
}
