//! Transactions, the coordinator's half (KIP-98, KIP-447, KIP-890), sans-IO.
//!
//! A `transactional.id` belongs to one partition of `__transaction_state`
//! (by the same string hash Kafka uses for groups), and the broker leading
//! that partition coordinates it. The coordinator's state *is* that
//! partition: every transition is written there first (an explicit
//! [`coordinator::TxnOutput::Write`], appended with acks=all) and applied
//! only when the write commits, so the state moves and recovers with the
//! partition's leadership ([`coordinator::TxnCoordinator::load`]).
//!
//! Ending a transaction is two-phase: `PrepareCommit`/`PrepareAbort` is
//! written (the decision), the client is answered, markers go to every
//! partition of the transaction ([`coordinator::TxnOutput::Markers`]), and
//! `CompleteCommit`/`CompleteAbort` is written once they are all in. Every
//! ending bumps the producer epoch (KIP-890 part 2), so a late EndTxn or
//! produce of the previous transaction is fenced.
//!
//! Files: `api` (requests and answers), `records` (the `__transaction_state`
//! records), `coordinator` (the state machine).

pub mod api;
pub mod coordinator;
pub mod records;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A transactional producer's `transactional.id`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransactionalId(pub Arc<str>);

impl TransactionalId {
    pub fn new(id: &str) -> TransactionalId {
        TransactionalId(Arc::from(id))
    }
}

impl fmt::Display for TransactionalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The partition of `__transaction_state` that holds `id` (Kafka's
/// `abs(transactionalId.hashCode) % transaction.state.log.num.partitions`).
pub fn partition_for(id: &TransactionalId, partitions: u32) -> u32 {
    assert!(partitions > 0, "__transaction_state needs a partition");
    let hash = id.0.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) as u32 % partitions
}

/// Where a transaction stands (Kafka's `TransactionState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open (a fresh id, or after InitProducerId).
    Empty,
    /// Partitions have been added: a transaction is open.
    Ongoing,
    /// The commit is decided; markers are being written.
    PrepareCommit,
    /// The abort is decided; markers are being written.
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Markers are on their way: nothing else may happen to the id until they are in.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction is open and none is ending: a new one may start.
    pub fn is_idle(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}
