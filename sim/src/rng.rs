//! Every random stream of a run, derived from the run seed: one stream per
//! purpose and per process, so that adding a fault does not reshuffle the
//! workload and a new producer does not change the nemesis.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is for. The discriminant is part of the stream id: never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// What producers send and when; consumers' choices.
    Workload = 1,
    /// Which faults the random nemesis draws.
    Nemesis = 2,
    /// Seeds handed to broker-core state machines (partitioner, planted bugs).
    Core = 3,
    /// Each simulated disk's faults and torn writes.
    Disk = 4,
    /// Each simulated disk's service times.
    DiskLatency = 5,
}

/// The stream for `purpose`, instance `index`, of run `seed`.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((purpose as u64) << 32) | (index & 0xffff_ffff));
    rng
}

/// A seed for a broker-core state machine, drawn from the `Core` stream.
pub fn core_seed(seed: u64, index: u64) -> u64 {
    use rand::RngCore;
    stream(seed, Purpose::Core, index).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_are_independent_and_repeatable() {
        let a = stream(7, Purpose::Workload, 0).next_u64();
        assert_eq!(a, stream(7, Purpose::Workload, 0).next_u64());
        assert_ne!(a, stream(7, Purpose::Nemesis, 0).next_u64());
        assert_ne!(a, stream(7, Purpose::Workload, 1).next_u64());
        assert_ne!(a, stream(8, Purpose::Workload, 0).next_u64());
    }
}
