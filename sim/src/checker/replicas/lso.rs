//! lso, the replica half (the history half is `checker::lso`):
//!
//! - what a leader served a read_committed consumer: an LSO at most its HW,
//!   and no record at or beyond that LSO (`ServedLso`);
//! - liveness: after the heal and the drain, every final leader's LSO is
//!   its HW: no transaction stayed open. The finding names the producers
//!   whose transactions are open and where they begin.
//!
//! Each served event is judged on its own, O(1); the final check is one
//! pass over the final leaders.

use super::{Ctx, EventId, Finals, PartitionIndex};
use crate::checker::Invariant;

pub(crate) fn served(
    ctx: &mut Ctx<'_>,
    partition: PartitionIndex,
    id: EventId,
    lso: i64,
    hw: i64,
    read_to: Option<i64>,
) {
    let seen = ctx.seen;
    if lso > hw {
        ctx.findings.found(Invariant::Lso, || {
            format!("partition {}: the LSO {lso} served is above the HW {hw}: {}", seen.name(partition), seen.event(id))
        });
    }
    if let Some(read_to) = read_to.filter(|&to| to > lso) {
        ctx.findings.found(Invariant::Lso, || {
            format!(
                "partition {}: a read_committed fetch returned records up to offset {}, at or beyond the LSO {lso}: {}",
                seen.name(partition),
                read_to - 1,
                seen.event(id)
            )
        });
    }
}

pub(crate) fn check_final(ctx: &mut Ctx<'_>, finals: &Finals<'_>) {
    let seen = ctx.seen;
    for index in 0..seen.replication.partition_count() {
        let partition = PartitionIndex(index as u32);
        let Some(leader) = finals.leader(partition) else { continue };
        if leader.lso == leader.hw {
            continue;
        }
        ctx.findings.found(Invariant::Lso, || {
            let open: Vec<String> = leader
                .open_txns
                .iter()
                .map(|&(first, producer)| format!("producer {producer} from offset {first}"))
                .collect();
            let open = if open.is_empty() {
                "none open; a marker is not yet below the HW".to_string()
            } else {
                open.join(", ")
            };
            format!(
                "partition {}: after the heal and the drain the leader {}'s LSO {} is not its HW {}: transactions left open: {open}",
                seen.name(partition),
                leader.broker,
                leader.lso,
                leader.hw
            )
        });
    }
}
