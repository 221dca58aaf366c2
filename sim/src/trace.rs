//! The run's trace: every message sent, every fault, every node boot and the
//! history, each stamped with simulated time and node. The trace hash covers
//! all of it; lines are formatted only when `--trace PATH` asks for them, so
//! hashing stays cheap on the hot path.

use crate::history::{Call, History, Outcome, SeekCause};
use broker_core::protocol::RequestKind;
use rustc_hash::FxHasher;
use serde::Serialize;
use std::hash::{Hash, Hasher};

/// Everything a trace line can say. Closed: one place to trace, count and hash.
#[derive(Clone, Debug, Hash, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TraceEvent {
    Boot,
    Request {
        to: u32,
        correlation_id: u64,
        kind: RequestKind,
    },
    Response {
        to: u32,
        correlation_id: u64,
        kind: RequestKind,
    },
    ConnectFailed {
        to: u32,
    },
    Fault {
        what: String,
    },
    Phase {
        name: &'static str,
    },
    /// The controller chose a partition's leader (`None`: offline).
    Elected {
        partition: String,
        leader: Option<u32>,
        leader_epoch: i32,
        clean: bool,
    },
    /// A broker started leading a partition.
    BecameLeader {
        partition: String,
        leader_epoch: i32,
    },
    /// A node stopped itself after a failed disk write.
    Halted {
        reason: String,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    t_ms: f64,
    node: &'a str,
    #[serde(flatten)]
    event: &'a TraceEvent,
}

pub struct Trace {
    // FxHash: fixed, fast, deterministic across processes (no random keys).
    hasher: FxHasher,
    events: u64,
    lines: Option<Vec<String>>,
    node_names: Vec<String>,
}

impl Trace {
    pub fn new(node_names: Vec<String>, keep_lines: bool) -> Trace {
        Trace { hasher: FxHasher::default(), events: 0, lines: keep_lines.then(Vec::new), node_names }
    }

    pub fn record(&mut self, time_ns: u64, node: u32, event: TraceEvent) {
        time_ns.hash(&mut self.hasher);
        node.hash(&mut self.hasher);
        event.hash(&mut self.hasher);
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            let name = self.node_names.get(node as usize).map_or("supervisor", |s| s.as_str());
            let line = Line { t_ms: time_ns as f64 / 1e6, node: name, event: &event };
            lines.push(serde_json::to_string(&line).expect("trace lines serialise"));
        }
    }

    /// Folds the history into the hash: every op's process, times, call kind
    /// and outcome down to each (partition, offset, value). Numbers only: the
    /// names in it (topics, error texts) follow from the scenario and the
    /// messages already hashed, and hashing strings would dominate the cost.
    pub fn absorb_history(&mut self, history: &History) {
        let h = &mut self.hasher;
        for op in &history.ops {
            h.write_u64(op.id);
            h.write_u32(op.process);
            h.write_u64(op.invoke_ns);
            h.write_u64(op.complete_ns().unwrap_or(u64::MAX));
            match &op.call {
                Call::Send { partition, value, .. } => {
                    h.write_u8(1);
                    h.write_u32(partition.unwrap_or(u32::MAX));
                    h.write_u64(value.0);
                }
                Call::Poll => h.write_u8(2),
                Call::Assign { partitions } => {
                    h.write_u8(3);
                    partitions.iter().for_each(|p| h.write_u32(p.partition));
                }
                Call::Seek(seek) => {
                    let crate::history::Seek { partition, offset, cause } = &**seek;
                    h.write_u8(4);
                    h.write_u32(partition.partition);
                    h.write_i64(*offset);
                    match cause {
                        SeekCause::Explicit => h.write_u8(0),
                        SeekCause::OutOfRange { from } => {
                            h.write_u8(1);
                            h.write_i64(*from);
                        }
                        SeekCause::Truncation { from } => {
                            h.write_u8(2);
                            h.write_i64(*from);
                        }
                        SeekCause::Committed => h.write_u8(3),
                    }
                }
                Call::Joined(joined) => {
                    let crate::history::Joined { generation, partitions, .. } = &**joined;
                    h.write_u8(5);
                    h.write_i32(*generation);
                    partitions.iter().for_each(|p| h.write_u32(p.partition));
                }
                Call::Revoked(revoked) => {
                    let crate::history::Revoked { partitions, lost, .. } = &**revoked;
                    h.write_u8(6);
                    h.write_u8(u8::from(*lost));
                    partitions.iter().for_each(|p| h.write_u32(p.partition));
                }
                Call::Commit(commit) => {
                    let crate::history::Commit { generation, offsets, .. } = &**commit;
                    h.write_u8(7);
                    h.write_i32(*generation);
                    offsets.iter().for_each(|(p, o)| {
                        h.write_u32(p.partition);
                        h.write_i64(*o);
                    });
                }
                Call::Process { records } => {
                    h.write_u8(8);
                    records.iter().for_each(|r| h.write_i64(r.offset));
                }
                Call::Txn { producer_id, epoch, intent, .. } => {
                    h.write_u8(9);
                    h.write_i64(*producer_id);
                    h.write_i16(*epoch);
                    h.write_u8(*intent as u8);
                }
                Call::EndTxn { commit, .. } => {
                    h.write_u8(10);
                    h.write_u8(u8::from(*commit));
                }
                Call::TxnOffsets(commit) => {
                    let crate::history::TxnOffsets { generation, offsets, transformed, .. } = &**commit;
                    h.write_u8(11);
                    h.write_i32(*generation);
                    offsets.iter().for_each(|(p, o)| {
                        h.write_u32(p.partition);
                        h.write_i64(*o);
                    });
                    transformed.iter().for_each(|(i, o)| {
                        h.write_u64(i.0);
                        h.write_u64(o.0);
                    });
                }
                Call::GroupOffsets(group_offsets) => {
                    let offsets = &group_offsets.offsets;
                    h.write_u8(12);
                    offsets.iter().for_each(|(p, o)| {
                        h.write_u32(p.partition);
                        h.write_i64(*o);
                    });
                }
                Call::ProducerInit { producer_id, epoch, .. } => {
                    h.write_u8(13);
                    h.write_i64(*producer_id);
                    h.write_i16(*epoch);
                }
            }
            match &op.outcome {
                None => h.write_u8(0),
                Some(Outcome::SendOk { partition, offset }) => {
                    h.write_u8(1);
                    h.write_u32(partition.partition);
                    h.write_i64(*offset);
                }
                Some(Outcome::SendFail { error }) => {
                    h.write_u8(2);
                    h.write_usize(error.len());
                }
                Some(Outcome::SendInfo { reason }) => {
                    h.write_u8(3);
                    h.write_usize(reason.len());
                }
                Some(Outcome::PollOk { records }) => {
                    h.write_u8(4);
                    for r in records {
                        h.write_u32(r.partition.partition);
                        h.write_i64(r.offset);
                        h.write_u64(r.value.0);
                    }
                }
                Some(Outcome::PollFail { error }) => {
                    h.write_u8(5);
                    h.write_usize(error.len());
                }
                Some(Outcome::Ok) => h.write_u8(6),
                Some(Outcome::CommitFail { error }) => {
                    h.write_u8(7);
                    h.write_usize(error.len());
                }
                Some(Outcome::TxnCommitted) => h.write_u8(8),
                Some(Outcome::TxnAborted { reason }) => {
                    h.write_u8(9);
                    h.write_usize(reason.len());
                }
                Some(Outcome::TxnInfo { reason }) => {
                    h.write_u8(10);
                    h.write_usize(reason.len());
                }
            }
        }
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.take().unwrap_or_default()
    }
}
