//! Choosing a partition for a record: Kafka's murmur2 key hash for keyed
//! records, and the keyless strategies — sticky (KIP-480) and round-robin.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Seed of Kafka's `Utils.murmur2`.
pub const MURMUR2_SEED: u32 = 0x9747_b28c;

/// Kafka's `Utils.murmur2`, bit for bit: MurmurHash2, 32 bit, little-endian
/// words, with the tail bytes mixed in unsigned (`& 0xff`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java computes `seed ^ length` on an int; lengths beyond i32 cannot occur there.
    let mut h: u32 = MURMUR2_SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    // Java's switch falls through from case 3 to case 1.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows).
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> u32 {
    assert!(num_partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % num_partitions
}

/// How a producer places records without a key (keyed records always hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PartitionerKind {
    /// KIP-480: stick to one random partition until its batch is closed or
    /// sent, then pick another (a different one when there is a choice).
    #[default]
    Sticky,
    /// Cycle through the partitions, one record each.
    RoundRobin,
}

/// Per-topic state of the keyless strategies.
#[derive(Clone, Debug)]
pub(crate) struct KeylessPartitioner {
    kind: PartitionerKind,
    sticky: BTreeMap<String, u32>,
    round_robin: BTreeMap<String, u64>,
    /// Reused candidate list, so choosing allocates nothing.
    candidates: Vec<u32>,
}

impl KeylessPartitioner {
    pub(crate) fn new(kind: PartitionerKind) -> KeylessPartitioner {
        KeylessPartitioner { kind, sticky: BTreeMap::new(), round_robin: BTreeMap::new(), candidates: Vec::new() }
    }

    /// Picks a partition of `topic` for a keyless record. `available` fills its
    /// (cleared) argument with the partitions with a leader (preferred, like Kafka; all partitions are used
    /// when none has one). `needs_new_batch(p)` tells whether appending the
    /// record to `p` would open a new batch — the sticky strategy's cue to move.
    pub(crate) fn choose(
        &mut self,
        rng: &mut ChaCha8Rng,
        topic: &str,
        num_partitions: u32,
        available: impl FnOnce(&mut Vec<u32>),
        needs_new_batch: impl Fn(u32) -> bool,
    ) -> u32 {
        assert!(num_partitions > 0, "a topic has at least one partition");
        // The sticky fast path needs no candidate list.
        if self.kind == PartitionerKind::Sticky {
            if let Some(p) = self.sticky.get(topic).copied().filter(|&p| p < num_partitions && !needs_new_batch(p)) {
                return p;
            }
        }
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        available(&mut candidates);
        debug_assert!(candidates.iter().all(|&p| p < num_partitions));
        debug_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "candidates are distinct and sorted");
        if candidates.is_empty() {
            candidates.extend(0..num_partitions);
        }
        let chosen = match self.kind {
            PartitionerKind::Sticky => {
                let current = self.sticky.get(topic).copied().filter(|&p| p < num_partitions);
                match current {
                    Some(p) if !needs_new_batch(p) => p,
                    _ => {
                        let p = pick_other(rng, &candidates, current);
                        set_topic_state(&mut self.sticky, topic, p);
                        p
                    }
                }
            }
            PartitionerKind::RoundRobin => {
                let counter = self.round_robin.get(topic).copied().unwrap_or(0);
                let p = candidates[(counter % candidates.len() as u64) as usize];
                set_topic_state(&mut self.round_robin, topic, counter.wrapping_add(1));
                p
            }
        };
        self.candidates = candidates;
        assert!(chosen < num_partitions);
        chosen
    }
}

/// A uniform pick among `candidates` other than `current` (among all of them
/// when there is no other), drawing exactly as indexing a filtered copy would.
fn pick_other(rng: &mut ChaCha8Rng, candidates: &[u32], current: Option<u32>) -> u32 {
    let skipped = current.and_then(|c| candidates.iter().position(|&p| p == c)).filter(|_| candidates.len() > 1);
    let pool_len = candidates.len() - usize::from(skipped.is_some());
    let i = rng.gen_range(0..pool_len);
    match skipped {
        Some(s) if i >= s => candidates[i + 1],
        _ => candidates[i],
    }
}

/// Sets a topic's entry, allocating its name only the first time.
fn set_topic_state<V>(map: &mut BTreeMap<String, V>, topic: &str, value: V) {
    match map.get_mut(topic) {
        Some(slot) => *slot = value,
        None => {
            map.insert(topic.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn murmur2_matches_kafka_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: &[(&str, i32)] = &[
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for &(input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn murmur2_high_bytes_mix_in_unsigned() {
        // Computed with Kafka's Java code (javac, Utils.murmur2 transliterated):
        // bytes >= 0x80 enter as 0x80..=0xff, in the 4-byte words and in the tail.
        let cases: &[(&[u8], i32)] = &[
            (&[], 275646681),
            (&[0xff], -311467685),
            (&[0xff, 0xfe], 1717632651),
            (&[0xff, 0xfe, 0xfd], 998637092),
            (&[0x80, 0x81, 0x82, 0x83, 0xf0], -1870174944),
        ];
        for &(input, expected) in cases {
            assert_eq!(murmur2(input), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn to_positive_clears_sign_bit() {
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(5), 5);
        // murmur2("21") is negative: Kafka maps it through toPositive, not abs.
        assert_eq!(partition_for_key(b"21", 1_000_000_007), to_positive(-973932308) % 1_000_000_007);
    }

    #[test]
    fn partition_for_key_spreads_keys_evenly() {
        const N: u32 = 10;
        const KEYS: u32 = 20_000;
        let mut counts = [0u32; N as usize];
        for i in 0..KEYS {
            let key = format!("key-{i}");
            let p = partition_for_key(key.as_bytes(), N);
            assert_eq!(p, partition_for_key(key.as_bytes(), N), "stable");
            counts[p as usize] += 1;
        }
        let expected = KEYS / N;
        for (p, &c) in counts.iter().enumerate() {
            assert!(c > expected * 9 / 10 && c < expected * 11 / 10, "partition {p} got {c} of {KEYS}");
        }
    }

    #[test]
    fn sticky_keeps_partition_until_a_new_batch_is_needed() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut part = KeylessPartitioner::new(PartitionerKind::Sticky);
        let first = part.choose(&mut rng, "t", 4, |v| v.extend([0, 1, 2, 3]), |_| true);
        for _ in 0..10 {
            assert_eq!(part.choose(&mut rng, "t", 4, |v| v.extend([0, 1, 2, 3]), |_| false), first);
        }
        let second = part.choose(&mut rng, "t", 4, |v| v.extend([0, 1, 2, 3]), |_| true);
        assert_ne!(first, second, "moves to a different partition when it can");
        // Only partitions with a leader are chosen when some have one.
        for _ in 0..20 {
            assert_eq!(part.choose(&mut rng, "t", 4, |v| v.push(2), |_| true), 2);
        }
    }

    #[test]
    fn round_robin_cycles_over_available_partitions() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut part = KeylessPartitioner::new(PartitionerKind::RoundRobin);
        let got: Vec<u32> = (0..6).map(|_| part.choose(&mut rng, "t", 3, |_| {}, |_| false)).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2]);
        let got: Vec<u32> = (0..4).map(|_| part.choose(&mut rng, "u", 3, |v| v.extend([0, 2]), |_| false)).collect();
        assert_eq!(got, vec![0, 2, 0, 2]);
    }
}
