//! How long the disk takes: a service time per operation, drawn from the
//! disk's own latency stream, that the node pays by sleeping before it acts
//! on what the operations produced.
//!
//! Each kind of operation (read, write, fsync) has a log-normal service time
//! fitted to a median and a 99th percentile — the shape measured disk
//! latencies have: most calls near the median, a long tail. An optional
//! bandwidth adds `bytes / bandwidth` to reads and writes, so reading a large
//! log at recovery takes time in proportion to its size. Directory
//! operations (create, delete, rename, truncate, list) are free, as on a
//! journaling filesystem whose journal is in memory.
//!
//! The node pays the accumulated time ([`DiskLatency::take_busy_ns`]) after
//! each step of its state machine, before its outputs leave: one I/O queue
//! per node, operations one after another. So an fsync before an ack delays
//! the ack, and a recovery that reads every segment delays registration.

use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

/// The z-score of the 99th percentile of a standard normal distribution.
const Z_P99: f64 = 2.326_347_874;

/// Longest one operation may take, however the tail is drawn: a bound, so a
/// p99 far above the median cannot stall a node for simulated hours.
pub const MAX_OP_NS: u64 = 10_000_000_000;

/// A log-normal service time with the given median and p99 (microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceTime {
    pub median_us: u64,
    pub p99_us: u64,
}

impl ServiceTime {
    fn distribution(self) -> Option<LogNormal<f64>> {
        if self.median_us == 0 {
            return None;
        }
        assert!(self.p99_us >= self.median_us, "p99 {} below the median {}", self.p99_us, self.median_us);
        let mu = (self.median_us as f64).ln();
        let sigma = ((self.p99_us as f64) / (self.median_us as f64)).ln() / Z_P99;
        Some(LogNormal::new(mu, sigma).expect("sigma is finite and not negative"))
    }
}

/// The disk's latency settings (`[cluster.disk]`); every part optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySpec {
    pub read: Option<ServiceTime>,
    pub write: Option<ServiceTime>,
    pub fsync: Option<ServiceTime>,
    /// Bytes per simulated millisecond, for reads and writes.
    pub bandwidth_bytes_per_ms: Option<u64>,
}

impl LatencySpec {
    pub fn any(&self) -> bool {
        self.read.is_some() || self.write.is_some() || self.fsync.is_some() || self.bandwidth_bytes_per_ms.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Fsync,
}

/// One disk's latency model and the time its node owes.
pub struct DiskLatency {
    read: Option<LogNormal<f64>>,
    write: Option<LogNormal<f64>>,
    fsync: Option<LogNormal<f64>>,
    bandwidth_bytes_per_ms: Option<u64>,
    rng: ChaCha8Rng,
    busy_ns: u64,
    /// Every operation's time, for the run's disk statistics.
    total_ns: u64,
}

impl DiskLatency {
    pub fn new(spec: LatencySpec, rng: ChaCha8Rng) -> DiskLatency {
        DiskLatency {
            read: spec.read.and_then(ServiceTime::distribution),
            write: spec.write.and_then(ServiceTime::distribution),
            fsync: spec.fsync.and_then(ServiceTime::distribution),
            bandwidth_bytes_per_ms: spec.bandwidth_bytes_per_ms.filter(|b| *b > 0),
            rng,
            busy_ns: 0,
            total_ns: 0,
        }
    }

    /// Charges one operation moving `bytes`.
    pub fn charge(&mut self, op: Op, bytes: u64) {
        let service = match op {
            Op::Read => self.read,
            Op::Write => self.write,
            Op::Fsync => self.fsync,
        };
        let mut ns = service.map_or(0, |d| (d.sample(&mut self.rng) * 1_000.0).round() as u64);
        if op != Op::Fsync {
            if let Some(rate) = self.bandwidth_bytes_per_ms {
                ns = ns.saturating_add(bytes.saturating_mul(1_000_000) / rate);
            }
        }
        let ns = ns.min(MAX_OP_NS);
        self.busy_ns = self.busy_ns.saturating_add(ns);
        self.total_ns = self.total_ns.saturating_add(ns);
    }

    /// The time owed since the last call; the node sleeps it.
    pub fn take_busy_ns(&mut self) -> u64 {
        std::mem::take(&mut self.busy_ns)
    }

    pub fn total_ns(&self) -> u64 {
        self.total_ns
    }

    /// A draw that keeps the stream's use visible in tests.
    #[cfg(test)]
    fn next_u32(&mut self) -> u32 {
        rand::Rng::gen(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn latency(spec: LatencySpec) -> DiskLatency {
        DiskLatency::new(spec, ChaCha8Rng::seed_from_u64(7))
    }

    #[test]
    fn samples_fit_the_median_and_the_p99() {
        let spec = ServiceTime { median_us: 100, p99_us: 2_000 };
        let mut l = latency(LatencySpec { fsync: Some(spec), ..LatencySpec::default() });
        let mut samples: Vec<u64> = (0..20_000)
            .map(|_| {
                l.charge(Op::Fsync, 0);
                l.take_busy_ns()
            })
            .collect();
        samples.sort_unstable();
        let median = samples[samples.len() / 2] as f64 / 1_000.0;
        let p99 = samples[samples.len() * 99 / 100] as f64 / 1_000.0;
        assert!((90.0..110.0).contains(&median), "median {median} us");
        assert!((1_700.0..2_300.0).contains(&p99), "p99 {p99} us");
    }

    #[test]
    fn bandwidth_charges_bytes_and_busy_time_is_paid_once() {
        let mut l = latency(LatencySpec { bandwidth_bytes_per_ms: Some(1_000), ..LatencySpec::default() });
        l.charge(Op::Read, 5_000);
        l.charge(Op::Write, 1_000);
        l.charge(Op::Fsync, 1_000_000); // fsync moves no bytes of its own
        assert_eq!(l.take_busy_ns(), 6_000_000);
        assert_eq!(l.take_busy_ns(), 0);
        assert_eq!(l.total_ns(), 6_000_000);
    }

    #[test]
    fn a_median_of_zero_is_instant_and_draws_nothing() {
        let mut with =
            latency(LatencySpec { read: Some(ServiceTime { median_us: 0, p99_us: 0 }), ..LatencySpec::default() });
        let mut without = latency(LatencySpec::default());
        with.charge(Op::Read, 10);
        assert_eq!(with.take_busy_ns(), 0);
        assert_eq!(with.next_u32(), without.next_u32());
    }

    #[test]
    fn one_operation_is_bounded() {
        let tail = ServiceTime { median_us: 1_000_000, p99_us: 10_000_000 };
        let mut l =
            latency(LatencySpec { write: Some(tail), bandwidth_bytes_per_ms: Some(1), ..LatencySpec::default() });
        l.charge(Op::Write, u64::MAX / 2);
        assert_eq!(l.take_busy_ns(), MAX_OP_NS);
    }
}
