//! A transactional producer's bookkeeping (Kafka's `TransactionManager` with
//! a `transactional.id`): its coordinator, where its transaction stands,
//! and which partitions the coordinator has added to it.
//!
//! Life of a transaction: `init` finds the coordinator (FindCoordinator)
//! and gets the id's producer id and a bumped epoch (InitProducerId), which
//! fences every older incarnation; `begin` opens a transaction locally; a
//! batch for a partition not yet in the transaction waits until
//! AddPartitionsToTxn adds it; `commit`/`abort` waits until every batch of
//! the transaction has its answer, then sends EndTxn, whose answer carries
//! the epoch of the next transaction (KIP-890 part 2: sequences restart).
//!
//! Errors: a batch that fails makes the transaction *abortable* (it can
//! only be aborted); being fenced (a newer epoch exists) is *fatal*: this
//! producer can do nothing more, as in Kafka.

use crate::group::api::CommittedOffset;
use crate::group::{GenerationId, GroupId, InstanceId, MemberId};
use crate::protocol::ErrorCode;
use crate::txn::TransactionalId;
use crate::types::{BrokerId, TopicPartition};
use std::collections::BTreeSet;

/// How a transaction ended, as the application learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    Committed,
    Aborted {
        reason: String,
    },
    /// Not known: the producer was fenced (or timed out) before EndTxn was
    /// answered, so the coordinator may have committed it or aborted it.
    Unknown {
        reason: String,
    },
    /// `commit` was refused because the transaction is abortable: the
    /// application must abort it.
    CommitRefused {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No producer id yet (finding the coordinator, InitProducerId).
    Initializing,
    /// Ready to begin a transaction.
    Ready,
    /// A transaction is open. `abortable`: a batch failed; it can only abort.
    Open { abortable: Option<String> },
    /// The application asked to end it; EndTxn goes once every batch is answered.
    Ending { commit: bool, abortable: Option<String> },
    /// Fenced or otherwise dead: nothing more can be done.
    Fatal(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Transactions {
    pub id: TransactionalId,
    pub timeout_ms: u64,
    pub phase: Phase,
    /// The coordinator, once found.
    pub coordinator: Option<BrokerId>,
    /// A transactional request (FindCoordinator, InitProducerId,
    /// AddPartitions, EndTxn) is in flight: one at a time, as in Kafka.
    pub request_in_flight: bool,
    /// No transactional request before this (after a retriable failure).
    pub retry_at_ms: u64,
    /// Requests so far: a coordinator search asks the next known broker.
    pub attempts: usize,
    /// Partitions the coordinator has in the open transaction.
    pub added: BTreeSet<TopicPartition>,
    /// Partitions whose AddPartitions is in flight.
    pub adding: BTreeSet<TopicPartition>,
    /// The EndTxn was sent at least once (so a retry must keep its decision).
    pub end_sent: bool,
    /// The open transaction's consumer offsets (sendOffsetsToTransaction),
    /// until they are in it.
    pub offsets: Option<SentOffsets>,
    /// The coordinator of the offsets' group, once found.
    pub group_coordinator: Option<BrokerId>,
}

/// Offsets a consume-transform-produce application commits in its
/// transaction, as the group member it consumed them as (KIP-447).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentOffsets {
    pub group: GroupId,
    pub generation: GenerationId,
    pub member: Option<MemberId>,
    pub instance: Option<InstanceId>,
    pub offsets: Vec<(TopicPartition, CommittedOffset)>,
    pub(crate) step: OffsetsStep,
}

/// How far the offsets have got: AddOffsetsToTxn to the transaction
/// coordinator, then TxnOffsetCommit to the group's coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OffsetsStep {
    AddToTxn,
    Commit,
    Done,
}

impl Transactions {
    pub fn new(id: TransactionalId, timeout_ms: u64) -> Transactions {
        Transactions {
            id,
            timeout_ms,
            phase: Phase::Initializing,
            coordinator: None,
            request_in_flight: false,
            retry_at_ms: 0,
            attempts: 0,
            added: BTreeSet::new(),
            adding: BTreeSet::new(),
            end_sent: false,
            offsets: None,
            group_coordinator: None,
        }
    }

    /// Whether the transaction's offsets still have a request to make.
    pub fn offsets_pending(&self) -> bool {
        self.offsets.as_ref().is_some_and(|o| o.step != OffsetsStep::Done)
    }

    /// Whether AddOffsetsToTxn put the group's offsets partition in the
    /// open transaction: only EndTxn may end it then, even with no records
    /// (the offsets would otherwise stay pending until the transaction timed out).
    pub fn offsets_added(&self) -> bool {
        self.offsets.as_ref().is_some_and(|o| o.step != OffsetsStep::AddToTxn)
    }

    /// Whether batches may be sent for partitions of the open transaction.
    pub fn writing(&self) -> bool {
        matches!(self.phase, Phase::Open { .. } | Phase::Ending { .. })
    }

    /// A batch of the transaction failed: it can only be aborted now.
    pub fn make_abortable(&mut self, reason: &str) {
        match &mut self.phase {
            Phase::Open { abortable } | Phase::Ending { abortable, .. } => {
                abortable.get_or_insert_with(|| reason.to_string());
            }
            _ => {}
        }
    }

    /// What an error answer to a transactional request means.
    pub fn classify(error: ErrorCode) -> Failure {
        match error {
            // A lost request (disconnect) looks the coordinator up again, as
            // Kafka's TxnRequestHandler does: it may be gone for good.
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::NetworkException => {
                Failure::FindCoordinator
            }
            ErrorCode::ConcurrentTransactions | ErrorCode::CoordinatorLoadInProgress | ErrorCode::RequestTimedOut => {
                Failure::Retry
            }
            ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch | ErrorCode::InvalidProducerIdMapping => {
                Failure::Fatal
            }
            _ => Failure::Abortable,
        }
    }

    /// The transaction ended (or was never opened at the coordinator):
    /// ready for the next.
    pub fn ended(&mut self) {
        self.phase = Phase::Ready;
        self.added.clear();
        self.adding.clear();
        self.end_sent = false;
        self.offsets = None;
    }
}

/// What to do after a transactional request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The coordinator moved or is unknown: find it again, then retry.
    FindCoordinator,
    /// Retry after the backoff.
    Retry,
    /// The transaction can only be aborted.
    Abortable,
    /// Fenced: nothing more can be done.
    Fatal,
}
