//! The dependency graph between transactions, and its cycles (`cycles`):
//! **g0**, **g1c** (judged by default), **g-single** and **g2** (counted, not
//! judged: Kafka promises read_committed isolation, not serializability,
//! so a read_committed reader may see one partition before a transaction's
//! marker lands and another after).
//!
//! Nodes, as Jepsen takes them: committed transactions, and unknown-fate
//! ones that a read_committed read observed (they must have committed);
//! each plain send that was acked or read (a one-write transaction; a
//! definitely failed one never happened); and each read_committed poll
//! outside any transaction (a read-only one). A poll a pipeline's
//! transaction consumed (its `txn-offsets` op names it) is that
//! transaction's read, though it came before the transaction began. Aborted transactions and
//! unobserved unknown-fate ones are left out, their records gaps in the log.
//!
//! Edges, per partition, over the offsets observed to hold a node's value
//! (each value at the lowest offset it was seen at, so a retry written twice
//! does not make a cycle of its own; aborted records and control markers
//! are gaps):
//! - **ww**: the writer at one offset → the writer at the next;
//! - **wr**: the writer of a value → a read_committed reader of it;
//! - **rw** (the anti-dependency Jepsen leaves out): a reader → the writer
//!   at the next offset after the highest it read in the partition.
//!
//! Only read_committed reads make wr and rw edges: a read_uncommitted
//! reader may see what never commits. The drain's polls are not nodes:
//! it reads after every transaction was decided, each partition from its
//! start in fetch-sized chunks, so a cycle through one of its polls says
//! only where a chunk ended (it read part of a transaction's records in a
//! partition, the rest in its next poll). What the drain saw still orders
//! the writers (ww), as every read does.
//!
//! Kafka does not isolate a transaction's writes from other producers'
//! (Jepsen's Kafka workload can leave ww edges out for that reason,
//! `--no-ww-deps`): another producer's record between two of a
//! transaction's in one partition, or two transactions in opposite orders
//! in two partitions, is a g0 here, and a ww edge can close a g1c. Both are
//! judged by default all the same; a scenario whose producers share
//! partitions while transactions are open leaves them out of `must_hold`.

use super::cycles::{self, Anomaly, Cycle, Dep, Graph};
use super::evidence::{op_label, Findings};
use super::log_view::{LogView, OpId, PartitionId};
use super::txn::{TxnIndex, Txns, Writer};
use super::visibility::{Shown, Visibility};
use super::Invariant;
use crate::history::{History, Outcome, Partition, Value};

/// How many steps of a cycle the evidence spells out before summarising.
const LISTED: usize = 8;

pub(crate) fn check(
    history: &History,
    view: &LogView<'_>,
    txns: &Txns<'_>,
    visibility: &Visibility<'_, '_>,
    findings: &mut Findings,
) {
    if txns.is_empty() {
        return;
    }
    let deps = Dependencies::build(history, view, txns, visibility);
    let graph = Graph::from_edges(deps.nodes.len(), &deps.edges, |e| (e.from, e.to, e.dep()));
    for cycle in cycles::find(&graph) {
        let invariant = match cycle.anomaly {
            Anomaly::G0 => Invariant::G0,
            Anomaly::G1c => Invariant::G1c,
            Anomaly::GSingle => Invariant::GSingle,
            Anomaly::G2 => Invariant::G2,
        };
        findings.found(invariant, || deps.describe(&cycle));
    }
}

#[derive(Clone, Copy, Debug)]
enum Node {
    Txn(TxnIndex),
    /// A plain send.
    Send(OpId),
    /// A read_committed poll outside any transaction.
    Poll(OpId),
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    from: u32,
    to: u32,
    /// Its place in the order edges were found (for an unstable sort that
    /// keeps the first of equal ones).
    seq: u32,
    /// The dependency (top two bits) and the partition it was seen in.
    dep_and_partition: u32,
    /// Where in the partition: for ww, the offset written first; for wr,
    /// the offset read (the value is the one there that `from` wrote); for
    /// rw, the highest offset read. The rest of the evidence (the next
    /// offset written, the value) is found again for a reported cycle: an
    /// edge is kept for every dependency, and storing it all made edges two
    /// thirds larger.
    at: i64,
}

const PARTITION_BITS: u32 = 30;

impl Edge {
    fn dep(&self) -> Dep {
        match self.dep_and_partition >> PARTITION_BITS {
            0 => Dep::Ww,
            1 => Dep::Wr,
            _ => Dep::Rw,
        }
    }

    fn partition(&self) -> PartitionId {
        PartitionId::new(self.dep_and_partition & ((1 << PARTITION_BITS) - 1))
    }
}

/// (from, to, kind, seq) packed into one integer, in that order of significance.
fn sort_key(e: &Edge) -> u128 {
    u128::from(e.from) << 96 | u128::from(e.to) << 64 | u128::from(e.dep() as u8) << 32 | u128::from(e.seq)
}

fn push_edge(edges: &mut Vec<Edge>, from: u32, to: u32, dep: Dep, partition: PartitionId, at: i64) {
    let seq = u32::try_from(edges.len()).expect("fewer than 2^32 edges");
    let partition = partition.raw();
    assert!(partition < 1 << PARTITION_BITS, "fewer than 2^30 partitions");
    edges.push(Edge { from, to, seq, dep_and_partition: (dep as u32) << PARTITION_BITS | partition, at });
}

struct Dependencies<'a, 'h> {
    history: &'h History,
    view: &'a LogView<'h>,
    txns: &'a Txns<'h>,
    nodes: Vec<Node>,
    txn_node: Vec<Option<u32>>,
    /// By writer index: the node of a plain send, made when first observed.
    send_node: Vec<Option<u32>>,
    edges: Vec<Edge>,
    /// Per partition (by id), (offset, writer node) by offset: the chain
    /// ww edges follow and rw edges look up (while the edges are found).
    chains: Vec<Vec<(i64, u32)>>,
}

impl<'a, 'h> Dependencies<'a, 'h> {
    /// O(n log n) in observations and reads: writer lookups by binary search,
    /// and one sort of the edges.
    fn build(history: &'h History, view: &'a LogView<'h>, txns: &'a Txns<'h>, visibility: &Visibility<'_, '_>) -> Self {
        let mut deps = Dependencies {
            history,
            view,
            txns,
            nodes: Vec::new(),
            txn_node: vec![None; txns.txns.len()],
            send_node: vec![None; txns.writer_count()],
            edges: Vec::new(),
            chains: vec![Vec::new(); view.partition_count()],
        };
        deps.transactions(visibility);
        for id in view.ids() {
            deps.write_order(id);
        }
        deps.reads();
        // Freed before the graph is built: only a reported cycle's evidence
        // needs a chain again (`next_written` walks the partition's log).
        deps.chains = Vec::new();
        // One edge per (from, to, kind): the first seen, for the evidence.
        // In place (a sorted copy was the checker's memory peak), by one
        // packed key rather than a tuple.
        deps.edges.sort_unstable_by_key(sort_key);
        deps.edges.dedup_by_key(|e| sort_key(e) >> 32);
        // The duplicates' room goes back before the graph is built.
        deps.edges.shrink_to_fit();
        deps
    }

    fn add(&mut self, node: Node) -> u32 {
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    /// Committed transactions, and unknown-fate ones a read_committed read
    /// observed: those whose values are visible.
    fn transactions(&mut self, visibility: &Visibility<'_, '_>) {
        for t in 0..self.txns.txns.len() {
            if visibility.txn(t) == Shown::Visible {
                self.txn_node[t] = Some(self.add(Node::Txn(t)));
            }
        }
    }

    /// The node that wrote `value`, if its writer is one.
    fn writer_node(&mut self, value: Value) -> Option<u32> {
        let (index, writer) = self.txns.writer_index(value)?;
        // A transaction's node is made up front, or never.
        if writer.txn().is_some() || self.send_node[index].is_some() {
            return self.node_of(index, writer);
        }
        if matches!(self.history.ops[writer.send() as usize].outcome, Some(Outcome::SendFail { .. })) {
            return None;
        }
        let node = self.add(Node::Send(writer.send()));
        self.send_node[index] = Some(node);
        Some(node)
    }

    /// The partition's chain of node writers, and ww edges along it. Where
    /// one offset holds several values (an inconsistent offset), each
    /// writer there follows each one at the offset before.
    fn write_order(&mut self, partition: PartitionId) {
        let log = self.view.log(partition);
        let mut chain = Vec::new();
        // A value seen at several offsets counts at its lowest.
        for (offset, value) in log.lowest_sightings() {
            if let Some(node) = self.writer_node(value) {
                chain.push((offset, node));
            }
        }
        let groups: Vec<&[(i64, u32)]> = chain.chunk_by(|a, b| a.0 == b.0).collect();
        for pair in groups.windows(2) {
            for &(from_offset, from) in pair[0] {
                for &(_, to) in pair[1] {
                    if from != to {
                        push_edge(&mut self.edges, from, to, Dep::Ww, partition, from_offset);
                    }
                }
            }
        }
        self.chains[partition.index()] = chain;
    }

    /// wr edges into every read_committed reader, and rw edges out of it
    /// from the highest offset it read in each partition.
    fn reads(&mut self) {
        // (reader, partition, the highest offset one read reached there).
        let mut reached: Vec<(u32, PartitionId, i64)> = Vec::new();
        // This read's highest offset per partition (a read spans a few).
        let mut highest: Vec<(PartitionId, i64)> = Vec::new();
        let mut last: Option<(&Partition, PartitionId)> = None;
        for read in self.txns.committed_reads() {
            if read.txn.is_none() && self.history.drain_processes.contains(&read.op.process) {
                continue;
            }
            let reader = match read.txn {
                Some(t) => match self.txn_node[t] {
                    Some(node) => node,
                    // Its transaction aborted, or is not known to have committed.
                    None => continue,
                },
                None => self.add(Node::Poll(read.op.id)),
            };
            for record in read.records {
                let partition = match last {
                    Some((name, id)) if *name == record.partition => id,
                    _ => {
                        let id = self.view.id(&record.partition).expect("every polled partition is in the view");
                        last = Some((&record.partition, id));
                        id
                    }
                };
                match highest.iter_mut().find(|(p, _)| *p == partition) {
                    Some((_, offset)) => *offset = (*offset).max(record.offset),
                    None => highest.push((partition, record.offset)),
                }
                let Some(writer) = self.writer_node(record.value) else { continue };
                // A transaction's records read in a row make one edge (the
                // final dedup would drop the rest; fewer to sort).
                let repeat = self.edges.last().is_some_and(|e| (e.from, e.to, e.dep()) == (writer, reader, Dep::Wr));
                if writer != reader && !repeat {
                    push_edge(&mut self.edges, writer, reader, Dep::Wr, partition, record.offset);
                }
            }
            reached.extend(highest.drain(..).map(|(partition, offset)| (reader, partition, offset)));
        }
        reached.sort_unstable();
        for run in reached.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (reader, partition, highest) = run[run.len() - 1];
            let chain = &self.chains[partition.index()];
            let at = chain.partition_point(|&(offset, _)| offset <= highest);
            let Some(&(next, _)) = chain.get(at) else { continue };
            for &(_, writer) in chain[at..].iter().take_while(|(offset, _)| *offset == next) {
                if writer != reader {
                    push_edge(&mut self.edges, reader, writer, Dep::Rw, partition, highest);
                }
            }
        }
    }

    fn label(&self, node: u32) -> String {
        match self.nodes[node as usize] {
            Node::Txn(t) => self.txns.txns[t].label(self.history),
            Node::Send(op) => format!("send {}", op_label(self.history, op)),
            Node::Poll(op) => format!("poll {}", op_label(self.history, op)),
        }
    }

    /// `-[ww t-0: offset 2 then 3]-> transaction op 8 (...)`
    fn step(&self, edge: &Edge) -> String {
        let (partition, at) = (edge.partition(), edge.at);
        let name = self.view.name(partition);
        let why = match edge.dep() {
            Dep::Ww => format!("ww {name}: offset {at} then {}", self.next_written(partition, at)),
            Dep::Wr => {
                let mut values = self.view.log(partition).values_at(at).map(|(value, _)| value);
                let value = values.find(|&value| self.made_node(value) == Some(edge.from));
                let value = value.expect("a wr edge's value is in the log at its offset");
                format!("wr {name}: {value} at offset {at}")
            }
            Dep::Rw => {
                format!("rw {name}: read up to offset {at}, next written at {}", self.next_written(partition, at))
            }
        };
        format!(" -[{why}]-> {}", self.label(edge.to))
    }

    /// The chain's first offset past `offset` (a ww or rw edge's target
    /// wrote there), found again as `write_order` found it: the lowest
    /// offset of each value, kept where the value's writer is a node.
    fn next_written(&self, partition: PartitionId, offset: i64) -> i64 {
        let mut sightings = self.view.log(partition).lowest_sightings();
        let next = sightings.find(|&(at, value)| at > offset && self.made_node(value).is_some());
        next.expect("a ww or rw edge's target wrote past its offset").0
    }

    /// The node of `value`'s writer, if it was made one (`writer_node`
    /// makes them).
    fn made_node(&self, value: Value) -> Option<u32> {
        self.txns.writer_index(value).and_then(|(index, writer)| self.node_of(index, writer))
    }

    /// The node of a writer, if it was made one.
    fn node_of(&self, index: usize, writer: Writer) -> Option<u32> {
        match writer.txn() {
            Some(t) => self.txn_node[t],
            None => self.send_node[index],
        }
    }

    /// `a cycle of 2: transaction op 3 (...) -[ww t-0: offset 2 then 3]-> transaction op 8 (...) -[...]-> transaction op 3 (...)`
    fn describe(&self, cycle: &Cycle) -> String {
        let edges: Vec<&Edge> = cycle.edges.iter().map(|&e| &self.edges[e]).collect();
        let mut text = format!("a cycle of {}: {}", edges.len(), self.label(edges[0].from));
        if edges.len() <= LISTED {
            edges.iter().for_each(|edge| text.push_str(&self.step(edge)));
            return text;
        }
        edges[..LISTED - 1].iter().for_each(|edge| text.push_str(&self.step(edge)));
        let last = edges[edges.len() - 1];
        let skipped = edges.len() - LISTED;
        text.push_str(&format!(" -> ({skipped} more steps) -> {}{}", self.label(last.from), self.step(last)));
        text
    }
}
