//! Cooperative-sticky (KIP-429): the sticky assignment, minus every
//! partition that would move from one member to another. Such a partition
//! goes to nobody this round: its owner, not finding it in its assignment,
//! revokes it and rejoins, and in the follow-up rebalance nobody owns it any
//! more, so the sticky assignment hands it to its new member then. A
//! partition therefore never goes straight from one owner to another, and
//! members keep consuming what does not move throughout.
//!
//! "Owns" means a valid claim (see `claims`): a member whose claims do not
//! count is expected to have given them up already — a consumer revokes the
//! partitions of topics it unsubscribes from before rejoining, and treats
//! its partitions as lost when its generation is fenced.

use super::claims::valid_owners;
use super::{sticky, Draft, MemberId, PartitionCounts, Subscription};
use std::collections::BTreeMap;

pub(super) fn assign(counts: &PartitionCounts, members: &BTreeMap<MemberId, Subscription>) -> Draft {
    let owners = valid_owners(counts, members);
    let mut draft = sticky::assign(counts, members, &owners);
    for (member, partitions) in draft.iter_mut().enumerate() {
        partitions.retain(|tp| owners.get(tp).is_none_or(|&owner| owner == member));
    }
    draft
}
