//! What transactional producers (and partition leaders, for KIP-890's
//! verification) ask the transaction coordinator, and its answers.

use super::TransactionalId;
use crate::group::GroupId;
use crate::protocol::ErrorCode;
use crate::types::{ProducerEpoch, ProducerId, TopicPartition};

/// A request to the coordinator of `transactional_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRequest {
    /// A transactional producer starts (or restarts): it gets the id's
    /// producer id and a bumped epoch, which fences every older incarnation;
    /// an open transaction of theirs is aborted first (answered
    /// CONCURRENT_TRANSACTIONS until it is). `current` is the id and epoch
    /// the caller holds, if any (KIP-360: a producer bumping its own epoch
    /// after an abortable error).
    InitProducerId { transactional_id: TransactionalId, timeout_ms: u64, current: Option<(ProducerId, ProducerEpoch)> },
    /// The producer will write to `partitions` in its open transaction
    /// (opening one if none is).
    AddPartitions {
        transactional_id: TransactionalId,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        partitions: Vec<TopicPartition>,
    },
    /// The producer will commit `group`'s offsets in its transaction: the
    /// group's `__consumer_offsets` partition joins it (AddOffsetsToTxn).
    AddOffsets { transactional_id: TransactionalId, producer_id: ProducerId, epoch: ProducerEpoch, group: GroupId },
    /// KIP-890 part 1: a partition leader asks, before a producer's first
    /// transactional write to `tp`, whether `tp` is part of the producer's
    /// open transaction in `epoch`. No state changes.
    Verify { transactional_id: TransactionalId, producer_id: ProducerId, epoch: ProducerEpoch, tp: TopicPartition },
    /// Commit or abort the open transaction.
    EndTxn { transactional_id: TransactionalId, producer_id: ProducerId, epoch: ProducerEpoch, commit: bool },
}

impl TxnRequest {
    pub fn transactional_id(&self) -> &TransactionalId {
        match self {
            TxnRequest::InitProducerId { transactional_id, .. }
            | TxnRequest::AddPartitions { transactional_id, .. }
            | TxnRequest::AddOffsets { transactional_id, .. }
            | TxnRequest::Verify { transactional_id, .. }
            | TxnRequest::EndTxn { transactional_id, .. } => transactional_id,
        }
    }
}

/// The answer to a [`TxnRequest`] of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnResponse {
    InitProducerId(Result<(ProducerId, ProducerEpoch), ErrorCode>),
    AddPartitions(Result<(), ErrorCode>),
    AddOffsets(Result<(), ErrorCode>),
    Verify(Result<(), ErrorCode>),
    /// The epoch the producer's next transaction writes with (bumped by
    /// every ending, KIP-890 part 2).
    EndTxn(Result<ProducerEpoch, ErrorCode>),
}

impl TxnResponse {
    /// The answer of `request`'s kind carrying `error`.
    pub fn error_for(request: &TxnRequest, error: ErrorCode) -> TxnResponse {
        match request {
            TxnRequest::InitProducerId { .. } => TxnResponse::InitProducerId(Err(error)),
            TxnRequest::AddPartitions { .. } => TxnResponse::AddPartitions(Err(error)),
            TxnRequest::AddOffsets { .. } => TxnResponse::AddOffsets(Err(error)),
            TxnRequest::Verify { .. } => TxnResponse::Verify(Err(error)),
            TxnRequest::EndTxn { .. } => TxnResponse::EndTxn(Err(error)),
        }
    }

    /// An answer of the same kind as `response`, carrying `error`.
    pub fn error_for_response(response: &TxnResponse, error: ErrorCode) -> TxnResponse {
        match response {
            TxnResponse::InitProducerId(_) => TxnResponse::InitProducerId(Err(error)),
            TxnResponse::AddPartitions(_) => TxnResponse::AddPartitions(Err(error)),
            TxnResponse::AddOffsets(_) => TxnResponse::AddOffsets(Err(error)),
            TxnResponse::Verify(_) => TxnResponse::Verify(Err(error)),
            TxnResponse::EndTxn(_) => TxnResponse::EndTxn(Err(error)),
        }
    }

    pub fn error(&self) -> Option<ErrorCode> {
        match self {
            TxnResponse::InitProducerId(r) => r.as_ref().err().copied(),
            TxnResponse::AddPartitions(r) | TxnResponse::AddOffsets(r) | TxnResponse::Verify(r) => {
                r.as_ref().err().copied()
            }
            TxnResponse::EndTxn(r) => r.as_ref().err().copied(),
        }
    }
}
