//! Clients as sans-IO state machines: a producer and an assign-mode consumer.
//!
//! Both follow quinn-proto's shape. The caller (the simulator) feeds inputs —
//! `send`/`poll`/`assign`, `handle_response`, `handle_disconnect`,
//! `handle_timeout`, each with `now_ms` — then drains `poll_output()` until it
//! returns `None` and arms one timer at `next_timeout_ms()` (absolute). A
//! `Send` output goes over the client's connection to that broker; a
//! `CloseConnection` output asks the caller to drop that connection so that no
//! late response arrives. The clients read no clock, draw randomness only from
//! a `ChaCha8Rng` seeded by `new`, and iterate only ordered collections.
//!
//! Code map: `partitioner` (murmur2, keyless strategies), `metadata` (the
//! cluster view and its refresh schedule), `inflight` (correlation ids and
//! request deadlines), `producer` (with `idempotence`: producer id, epoch and
//! sequences; `transactional` and `producer_txn`: the transactional
//! producer), `consumer` (with `read_committed`: markers never returned,
//! aborted transactions skipped). Their tests live in
//! `producer_tests.rs` / `consumer_tests.rs` and run against `testkit`'s fake
//! cluster, including proptest scripts of losses, disconnects and timeouts.
//!
//! The clients' clocks are monotonic views of the `now_ms` they are given: if
//! a caller's clock steps back (a skewed node), time stands still for their
//! timers until it catches up. Record timestamps take `now_ms` as given.

pub mod consumer;
mod idempotence;
mod inflight;
pub mod membership;
#[cfg(test)]
mod membership_tests;
pub mod metadata;
pub mod partitioner;
pub mod producer;
#[cfg(test)]
mod testkit;
mod transactional;

pub use consumer::{AutoOffsetReset, ConsumedRecord, Consumer, ConsumerConfig, ConsumerOutput};
pub use idempotence::MAX_IN_FLIGHT_PER_PARTITION;
pub use inflight::{MAX_IN_FLIGHT_REQUESTS, MIN_RETRY_BACKOFF_MS};
pub use metadata::ClientMetadata;
pub use partitioner::{murmur2, partition_for_key, PartitionerKind};
pub use producer::{Producer, ProducerConfig, ProducerOutput, ProducerRecord, RecordId, SendOutcome};
pub use transactional::TxnOutcome;
