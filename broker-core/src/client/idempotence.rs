//! The idempotent producer's bookkeeping (Kafka's `TransactionManager` for a
//! producer without a transactional id): its producer id and epoch, the
//! next sequence per partition, and when the epoch must be bumped.
//!
//! A batch gets its sequence when first sent and keeps it through retries,
//! so a retry the leader already appended is recognised as a duplicate.
//! The leader refusing a batch as out of order (or not knowing the producer)
//! is trusted to mean the batch is not in its log — with at most
//! [`MAX_IN_FLIGHT_PER_PARTITION`] batches in flight a partition's five-batch
//! window always covers a retry. If an earlier batch of the same partition is
//! still unresolved the refusal just means "not yet" and the batch waits its
//! turn; otherwise the sequences have a gap only a fresh epoch can close
//! (KIP-360): the producer stops sending, waits for every request in flight,
//! bumps its epoch itself (as Kafka's idempotent producer does; it asks for a
//! new id only when the epoch would overflow) and restarts every partition's
//! sequences at 0. A batch that may already be in a log under the old epoch
//! is not sent again under the new one — that would write it twice — but
//! given up with an unknown outcome.
//!
//! A leader appends a producer's batches of one partition in sequence
//! order, so once a batch is acknowledged every earlier batch of its
//! partition and epoch is in the log too. A retry of such a batch that the
//! leader refuses as out of order was not a gap: it fell out of the
//! five-batch window while its own answer was late (a broker may answer a
//! connection's requests out of order when they wait on different
//! partitions). It ends with an unknown outcome — it is in the log, at an
//! offset the producer never learned — and nothing is bumped.

use crate::types::{ProducerEpoch, ProducerId, ProducerStamp, TopicPartition};
use std::collections::BTreeMap;

/// Batches of one partition in flight at once (Kafka's bound for
/// idempotence: `max.in.flight.requests.per.connection` ≤ 5, the size of
/// the brokers' per-producer window).
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

#[derive(Clone, Debug, Default)]
pub(crate) struct Idempotence {
    /// The id and epoch batches are written with; `None` until
    /// InitProducerId answers (and again when the epoch ran out).
    pub id: Option<(ProducerId, ProducerEpoch)>,
    /// An InitProducerId is in flight.
    pub init_in_flight: bool,
    /// No InitProducerId before this (after a failed one).
    pub init_after_ms: u64,
    /// InitProducerId attempts so far: each asks the next known broker.
    pub init_attempts: usize,
    /// The next sequence per partition in the current epoch.
    next_sequence: BTreeMap<TopicPartition, i32>,
    /// Per partition, the epoch and creation number of the newest batch
    /// acknowledged: every batch of that epoch created before it is in the log.
    acked: BTreeMap<TopicPartition, (ProducerEpoch, u64)>,
    /// A gap was found: nothing is sent until the epoch is bumped.
    pub bump_wanted: bool,
}

impl Idempotence {
    /// Whether batches may be sent now.
    pub fn ready(&self) -> bool {
        self.id.is_some() && !self.bump_wanted
    }

    /// The stamp for a new batch of `count` records to `tp`, advancing its sequence.
    pub fn stamp(&mut self, tp: TopicPartition, count: usize) -> ProducerStamp {
        let (id, epoch) = self.id.expect("stamped only when ready");
        let next = self.next_sequence.entry(tp).or_insert(0);
        let stamp = ProducerStamp { id, epoch, base_sequence: *next };
        *next = next_after(stamp.last_sequence(count));
        stamp
    }

    /// Whether `stamp` is of the current epoch (a batch stamped under an
    /// older one is stamped afresh, or given up, before it is sent again).
    pub fn current(&self, stamp: ProducerStamp) -> bool {
        self.id == Some((stamp.id, stamp.epoch))
    }

    /// A batch of `tp` stamped `stamp`, created `created`-th, was acknowledged.
    pub fn acknowledged(&mut self, tp: TopicPartition, stamp: ProducerStamp, created: u64) {
        let newest = self.acked.entry(tp).or_insert((stamp.epoch, created));
        if (stamp.epoch, created) > *newest {
            *newest = (stamp.epoch, created);
        }
    }

    /// Whether a batch of `tp` stamped `stamp`, created `created`-th, is
    /// known to be in the log because a later one of its epoch was acknowledged.
    pub fn overtaken(&self, tp: TopicPartition, stamp: ProducerStamp, created: u64) -> bool {
        self.acked.get(&tp).is_some_and(|&(epoch, newest)| epoch == stamp.epoch && newest > created)
    }

    /// Bumps the epoch and restarts every sequence. Returns false when the
    /// epoch is exhausted: then a new producer id is needed.
    pub fn bump_epoch(&mut self) -> bool {
        assert!(self.bump_wanted, "a bump nobody asked for");
        self.bump_wanted = false;
        self.next_sequence.clear();
        self.acked.clear();
        let (id, epoch) = self.id.expect("bumped only with an id");
        if epoch.0 >= i16::MAX - 1 {
            self.id = None;
            return false;
        }
        self.id = Some((id, ProducerEpoch(epoch.0 + 1)));
        true
    }

    /// InitProducerId answered with a fresh id: sequences start at 0.
    pub fn adopt(&mut self, id: ProducerId, epoch: ProducerEpoch) {
        self.id = Some((id, epoch));
        self.init_in_flight = false;
        self.next_sequence.clear();
        self.acked.clear();
    }
}

/// The sequence after `seq` (they wrap after `i32::MAX`, as in Kafka).
fn next_after(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}
