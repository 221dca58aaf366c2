//! Where a follower truncates its log after a leader change (KIP-101,
//! KIP-279), as a pure decision over the follower's epoch cache and the
//! leader's OffsetsForLeaderEpoch answers.
//!
//! The follower asks the leader for the end offset of its own latest epoch.
//! The leader answers with the largest epoch it knows that is ≤ the one
//! asked, and that epoch's end offset. If the leader answered the same epoch,
//! both logs agree up to the smaller end: truncate there. If it answered an
//! older epoch, the follower's log diverged inside or after that epoch: look
//! up the follower's own end for the leader's epoch; if the follower has that
//! epoch, truncate to the smaller of the two ends; if not, truncate to where
//! the follower's largest epoch below it ends and ask again with that epoch.
//! Asking again after every epoch change — not only leader changes — is what
//! KAFKA-7164 fixed.
//!
//! Planted bugs replace the decision: `truncate-to-hw` (pre-KIP-101: cut to
//! the local high watermark) and `no-epoch-truncation` (compare offsets only:
//! cut to the leader's end if the follower is longer).

use crate::types::{LeaderEpoch, Offset};

/// The leader's OffsetsForLeaderEpoch answer: the largest epoch it knows
/// that is ≤ the one asked, and where that epoch ends in its log. `None`:
/// the leader knows no epoch that old (Kafka's UNDEFINED_EPOCH).
pub type EpochAnswer = Option<(LeaderEpoch, Offset)>;

/// The follower's side of the exchange: what its own log knows.
pub trait FollowerEpochs {
    /// The follower's latest epoch (`None` for an empty log with no epochs).
    fn latest_epoch(&self) -> Option<LeaderEpoch>;
    /// OffsetsForLeaderEpoch over the follower's own cache: the largest epoch
    /// ≤ `epoch` and its end offset.
    fn end_offset_for(&self, epoch: LeaderEpoch) -> EpochAnswer;
    fn log_end(&self) -> Offset;
    fn high_watermark(&self) -> Offset;
}

/// What the follower does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TruncationStep {
    /// Cut the log to this offset (may equal the log end: nothing to cut)
    /// and start fetching from it.
    TruncateTo(Offset),
    /// Cut to this offset, then ask the leader about `epoch` again.
    TruncateAndAsk { offset: Offset, epoch: LeaderEpoch },
}

/// Which truncation rule applies: Kafka's, or a planted pre-KIP-101 one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TruncationRule {
    #[default]
    LeaderEpoch,
    /// Planted `truncate-to-hw`.
    ToHighWatermark,
    /// Planted `no-epoch-truncation`.
    OffsetOnly,
}

/// The epoch to ask the leader about first, or `None` when the rule needs no
/// question (the planted offset-only and HW rules; an empty epoch cache).
pub fn first_question(rule: TruncationRule, follower: &dyn FollowerEpochs) -> Option<LeaderEpoch> {
    match rule {
        TruncationRule::LeaderEpoch => follower.latest_epoch(),
        TruncationRule::ToHighWatermark | TruncationRule::OffsetOnly => None,
    }
}

/// Truncation without a question (rules that need none, or an empty cache).
/// `leader_end` is the leader's log end, known from metadata or a fetch.
pub fn without_question(rule: TruncationRule, follower: &dyn FollowerEpochs, leader_end: Offset) -> Offset {
    match rule {
        TruncationRule::ToHighWatermark => follower.high_watermark().min(follower.log_end()),
        // With no epochs to compare there is nothing to keep safely but the HW.
        TruncationRule::LeaderEpoch => follower.high_watermark().min(follower.log_end()),
        TruncationRule::OffsetOnly => follower.log_end().min(leader_end),
    }
}

/// The next step after the leader answered the question about `asked`.
pub fn after_answer(follower: &dyn FollowerEpochs, asked: LeaderEpoch, answer: EpochAnswer) -> TruncationStep {
    let log_end = follower.log_end();
    let Some((leader_epoch, leader_end)) = answer else {
        // The leader has nothing that old: keep only what is known committed.
        return TruncationStep::TruncateTo(follower.high_watermark().min(log_end));
    };
    if leader_epoch == asked {
        return TruncationStep::TruncateTo(leader_end.min(log_end));
    }
    assert!(leader_epoch < asked, "the leader answered epoch {leader_epoch}, newer than the {asked} asked");
    match follower.end_offset_for(leader_epoch) {
        Some((mine, my_end)) if mine == leader_epoch => TruncationStep::TruncateTo(leader_end.min(my_end)),
        // The follower never had the leader's epoch: everything from its own
        // next epoch on diverges. Cut to where its epoch below ends, ask about that.
        Some((mine, my_end)) => TruncationStep::TruncateAndAsk { offset: my_end.min(log_end), epoch: mine },
        // Every epoch the follower has is newer than anything the leader has
        // up to its answer: the whole log diverges. Offset zero means "to the
        // log start"; the log clamps it.
        None => TruncationStep::TruncateTo(Offset::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower log described by its epoch cache (epoch, start offset).
    struct Log {
        epochs: Vec<(i32, i64)>,
        end: i64,
        hw: i64,
    }

    impl FollowerEpochs for Log {
        fn latest_epoch(&self) -> Option<LeaderEpoch> {
            self.epochs.last().map(|&(e, _)| LeaderEpoch(e))
        }
        fn end_offset_for(&self, epoch: LeaderEpoch) -> EpochAnswer {
            let i = self.epochs.iter().rposition(|&(e, _)| e <= epoch.0)?;
            let end = self.epochs.get(i + 1).map_or(self.end, |&(_, start)| start);
            Some((LeaderEpoch(self.epochs[i].0), Offset(end)))
        }
        fn log_end(&self) -> Offset {
            Offset(self.end)
        }
        fn high_watermark(&self) -> Offset {
            Offset(self.hw)
        }
    }

    fn answer(epoch: i32, end: i64) -> EpochAnswer {
        Some((LeaderEpoch(epoch), Offset(end)))
    }

    /// (case, follower epochs, follower end, hw, asked, leader answer, expected step)
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &[(i32, i64)], i64, i64, i32, Option<(i32, i64)>, TruncationStep)] = &[
        (
            "same epoch, follower longer: cut to the leader's end",
            &[(0, 0), (1, 10)],
            15,
            5,
            1,
            Some((1, 12)),
            TruncationStep::TruncateTo(Offset(12)),
        ),
        (
            "same epoch, follower shorter: keep everything",
            &[(0, 0), (1, 10)],
            11,
            5,
            1,
            Some((1, 12)),
            TruncationStep::TruncateTo(Offset(11)),
        ),
        (
            "leader never had the follower's epoch 2 (it was elected in 3 from epoch 1)",
            &[(0, 0), (1, 10), (2, 20)],
            25,
            5,
            2,
            Some((1, 18)),
            TruncationStep::TruncateTo(Offset(18)),
        ),
        (
            "follower lacks the leader's epoch: cut to its own older epoch's end and ask again",
            &[(0, 0), (2, 10)],
            25,
            5,
            2,
            Some((1, 8)),
            TruncationStep::TruncateAndAsk { offset: Offset(10), epoch: LeaderEpoch(0) },
        ),
        ("leader has no epoch that old: keep the HW", &[(3, 0)], 9, 4, 3, None, TruncationStep::TruncateTo(Offset(4))),
        (
            "every follower epoch is newer than the leader's answer: cut everything",
            &[(4, 0), (5, 6)],
            9,
            4,
            5,
            Some((2, 3)),
            TruncationStep::TruncateTo(Offset(0)),
        ),
    ];

    #[test]
    fn truncation_decisions() {
        for &(case, epochs, end, hw, asked, leader, expected) in CASES {
            let log = Log { epochs: epochs.to_vec(), end, hw };
            let answer = leader.and_then(|(e, o)| answer(e, o));
            assert_eq!(after_answer(&log, LeaderEpoch(asked), answer), expected, "{case}");
        }
    }

    #[test]
    fn second_round_converges() {
        // After cutting to 10 and asking about epoch 0, the leader answers (0, 10).
        let log = Log { epochs: vec![(0, 0)], end: 10, hw: 5 };
        assert_eq!(after_answer(&log, LeaderEpoch(0), answer(0, 10)), TruncationStep::TruncateTo(Offset(10)));
    }

    #[test]
    fn planted_rules_need_no_question() {
        let log = Log { epochs: vec![(0, 0), (1, 10)], end: 15, hw: 7 };
        assert_eq!(first_question(TruncationRule::LeaderEpoch, &log), Some(LeaderEpoch(1)));
        assert_eq!(first_question(TruncationRule::ToHighWatermark, &log), None);
        assert_eq!(without_question(TruncationRule::ToHighWatermark, &log, Offset(20)), Offset(7));
        assert_eq!(without_question(TruncationRule::OffsetOnly, &log, Offset(12)), Offset(12));
        assert_eq!(without_question(TruncationRule::OffsetOnly, &log, Offset(20)), Offset(15));
    }
}
