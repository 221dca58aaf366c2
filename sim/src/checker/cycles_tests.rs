//! The cycle finder: on handmade transactional histories (each anomaly
//! with a firing history and a clean twin), and on generated graphs against
//! a brute-force oracle.

use super::cycles::{find, Anomaly, Cycle, Dep, Graph};
use super::txn_tests::{committed, v, Script};
use super::Invariant;
use proptest::prelude::*;

const CYCLES: &[Invariant] = &[Invariant::G0, Invariant::G1c, Invariant::GSingle, Invariant::G2];

fn check(s: &Script) -> String {
    s.check_only(CYCLES)
}

// ---------------------------------------------------------------------------
// On histories.

/// Processes 1 and 2 each commit a transaction writing t-0 and t-1, at
/// the offsets given as (process 1's in t-0, in t-1, process 2's in t-0, in t-1).
fn two_writers(offsets: [i64; 4]) -> Script {
    let mut s = Script::default();
    let a = s.at(10).begin(1);
    let b = s.at(11).begin(2);
    s.at(12).send_ok(v(1, 0), 0, offsets[0]);
    s.at(13).send_ok(v(1, 1), 1, offsets[1]);
    s.at(14).send_ok(v(2, 0), 0, offsets[2]);
    s.at(15).send_ok(v(2, 1), 1, offsets[3]);
    s.at(20).end(a, true, committed());
    s.at(30).end(b, true, committed());
    s
}

#[test]
fn transactions_interleaved_in_opposite_orders_in_two_partitions_are_g0() {
    // t-0: process 1 then 2; t-1: process 2 then 1. Kafka allows it (its
    // transactions do not isolate writes); this is what g0 reports.
    assert_eq!(
        check(&two_writers([0, 1, 1, 0])),
        "g0: a cycle of 2: transaction op 0 (process 1, 10ms..22ms) -[ww t-0: offset 0 then 1]-> \
         transaction op 1 (process 2, 11ms..32ms) -[ww t-1: offset 0 then 1]-> transaction op 0 (process 1, 10ms..22ms)\n\
         count g0 = 1\n"
    );
}

#[test]
fn a_plain_record_between_two_of_a_transactions_records_is_g0() {
    // One partition: the transaction, a plain send, the transaction again.
    let mut s = Script::default();
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(2, 0), 0, 1);
    s.at(13).send_ok(v(1, 1), 0, 2);
    s.at(20).end(t, true, committed());
    assert_eq!(
        check(&s),
        "g0: a cycle of 2: transaction op 0 (process 1, 10ms..22ms) -[ww t-0: offset 0 then 1]-> \
         send op 2 (process 2, 12ms..13ms) -[ww t-0: offset 1 then 2]-> transaction op 0 (process 1, 10ms..22ms)\n\
         count g0 = 1\n"
    );
}

/// A pipeline's transaction (process 1) consumes a poll made before it
/// began — t-0 offset 0, a plain send — and writes t-1 offset 1. Process
/// 2's transaction wrote t-1 offset 0, then t-0 offset 1: what the pipeline
/// read was not its latest. With the poll named by the pipeline's
/// `txn-offsets` op (`named`), the poll is the transaction's read.
fn consumed_before_it_began(named: bool) -> Script {
    let mut s = Script::default();
    s.read_committed(1);
    s.at(10).send_ok(v(3, 0), 0, 0);
    let poll = s.at(20).poll(1, &[(0, 0, v(3, 0))]);
    let b = s.at(21).begin(2);
    s.at(22).send_ok(v(2, 0), 1, 0);
    s.at(23).send_ok(v(2, 1), 0, 1);
    s.at(24).end(b, true, committed());
    let a = s.at(30).begin(1);
    s.at(31).send_ok(v(1, 0), 1, 1);
    if named {
        s.at(32).consumed(1, poll);
    }
    s.at(33).end(a, true, committed());
    s
}

#[test]
fn a_poll_a_pipeline_transaction_consumed_is_the_transactions_read() {
    assert_eq!(check(&consumed_before_it_began(false)), "", "a poll of its own: no cycle");
    assert_eq!(
        check(&consumed_before_it_began(true)),
        "g-single: a cycle of 2: transaction op 6 (process 1, 30ms..35ms) -[rw t-0: read up to offset 0, next \
         written at 1]-> transaction op 2 (process 2, 21ms..26ms) -[ww t-1: offset 0 then 1]-> transaction op 6 \
         (process 1, 30ms..35ms)\n\
         count g-single = 1\n"
    );
}

#[test]
fn a_write_order_the_same_in_every_partition_is_no_cycle() {
    assert_eq!(check(&two_writers([0, 0, 1, 1])), "");
}

/// Processes 1 and 2 (both reading committed) each commit a transaction
/// that writes one partition and polls the other's.
fn reading_each_other(both_ways: bool) -> Script {
    let mut s = Script::default();
    s.read_committed(1).read_committed(2);
    let a = s.at(10).begin(1);
    let b = s.at(11).begin(2);
    s.at(12).send_ok(v(1, 0), 0, 0);
    s.at(13).send_ok(v(2, 0), 1, 0);
    s.at(14).poll(2, &[(0, 0, v(1, 0))]);
    if both_ways {
        s.at(15).poll(1, &[(1, 0, v(2, 0))]);
    }
    s.at(20).end(a, true, committed());
    s.at(30).end(b, true, committed());
    s
}

#[test]
fn two_transactions_that_read_each_other_are_g1c() {
    assert_eq!(
        check(&reading_each_other(true)),
        "g1c: a cycle of 2: transaction op 0 (process 1, 10ms..22ms) -[wr t-0: p1:0 at offset 0]-> \
         transaction op 1 (process 2, 11ms..32ms) -[wr t-1: p2:0 at offset 0]-> transaction op 0 (process 1, 10ms..22ms)\n\
         count g1c = 1\n"
    );
}

#[test]
fn a_read_one_way_only_is_no_cycle() {
    assert_eq!(check(&reading_each_other(false)), "");
}

/// Plain p3:0 at t-1 offset 0; process 1's transaction writes p1:0 at t-0
/// offset 0 and p1:1 at t-1 offset 1; then reader 9 (read_committed) polls
/// t-0 and `t1` of t-1.
fn read_skew(t1: &[(u32, i64, crate::history::Value)]) -> Script {
    let mut s = Script::default();
    s.read_committed(9);
    s.at(5).send_ok(v(3, 0), 1, 0);
    let t = s.at(10).begin(1);
    s.at(11).send_ok(v(1, 0), 0, 0);
    s.at(12).send_ok(v(1, 1), 1, 1);
    s.at(20).end(t, true, committed());
    let mut records = vec![(0, 0, v(1, 0))];
    records.extend_from_slice(t1);
    s.at(30).poll(9, &records);
    s
}

#[test]
fn a_poll_that_saw_a_transaction_in_one_partition_and_not_in_another_is_g_single() {
    assert_eq!(
        check(&read_skew(&[(1, 0, v(3, 0))])),
        "g-single: a cycle of 2: poll op 5 (process 9, 30ms..31ms) -[rw t-1: read up to offset 0, next written at 1]-> \
         transaction op 1 (process 1, 10ms..22ms) -[wr t-0: p1:0 at offset 0]-> poll op 5 (process 9, 30ms..31ms)\n\
         count g-single = 1\n"
    );
}

#[test]
fn the_drains_poll_makes_no_cycle_but_still_orders_the_writers() {
    // The same read skew by the drain: where its poll ended says nothing
    // of isolation (it reads after every transaction was decided).
    let mut s = read_skew(&[(1, 0, v(3, 0))]);
    s.drain(9);
    assert_eq!(check(&s), "");
    // What it read still orders the writers: it alone saw both
    // transactions in both partitions, in opposite orders (g0).
    let mut s = two_writers([0, 1, 1, 0]);
    s.read_committed(9).drain(9);
    s.at(40).poll(9, &[(0, 0, v(1, 0)), (0, 1, v(2, 0)), (1, 0, v(2, 1)), (1, 1, v(1, 1))]);
    assert!(check(&s).starts_with("g0: a cycle of 2:"), "{}", check(&s));
}

#[test]
fn a_poll_that_saw_the_whole_transaction_is_no_cycle() {
    assert_eq!(check(&read_skew(&[(1, 0, v(3, 0)), (1, 1, v(1, 1))])), "");
}

/// Write skew: plain p3:0 at t-0 offset 0 and p4:0 at t-1 offset 0; process
/// 1's transaction reads t-0 and writes t-1 offset 1, process 2's reads t-1
/// and writes t-0 offset 1. `sees` lets process 1 also read process 2's write.
fn write_skew(sees: bool) -> Script {
    let mut s = Script::default();
    s.read_committed(1).read_committed(2);
    s.at(5).send_ok(v(3, 0), 0, 0);
    s.at(6).send_ok(v(4, 0), 1, 0);
    let a = s.at(10).begin(1);
    let b = s.at(11).begin(2);
    s.at(12).poll(2, &[(1, 0, v(4, 0))]);
    s.at(13).send_ok(v(2, 0), 0, 1);
    s.at(30).end(b, true, committed());
    let mut read = vec![(0, 0, v(3, 0))];
    if sees {
        read.push((0, 1, v(2, 0)));
    }
    s.at(40).poll(1, &read);
    s.at(41).send_ok(v(1, 0), 1, 1);
    s.at(50).end(a, true, committed());
    s
}

#[test]
fn two_transactions_each_missing_the_others_write_are_g2() {
    assert_eq!(
        check(&write_skew(false)),
        "g2: a cycle of 2: transaction op 2 (process 1, 10ms..52ms) -[rw t-0: read up to offset 0, next written at 1]-> \
         transaction op 3 (process 2, 11ms..32ms) -[rw t-1: read up to offset 0, next written at 1]-> \
         transaction op 2 (process 1, 10ms..52ms)\n\
         count g2 = 1\n"
    );
}

#[test]
fn a_transaction_that_saw_the_others_write_is_no_write_skew() {
    assert_eq!(check(&write_skew(true)), "");
}

#[test]
fn aborted_transactions_and_read_uncommitted_reads_make_no_edges() {
    // The g1c history, with process 2's transaction aborted: its write is a
    // gap, its read no edge.
    let mut s = Script::default();
    s.read_committed(1);
    let a = s.at(10).begin(1);
    let b = s.at(11).begin(2);
    s.at(12).send_ok(v(1, 0), 0, 0);
    s.at(13).send_ok(v(2, 0), 1, 0);
    s.at(14).poll(2, &[(0, 0, v(1, 0))]);
    s.at(15).poll(1, &[(1, 0, v(2, 0))]);
    s.at(20).end(a, true, committed());
    s.at(30).end(b, false, super::txn_tests::aborted());
    assert_eq!(check(&s), "");
    // And with both committed but process 2 reading uncommitted.
    assert_eq!(check(&reading_each_other(true)).lines().count(), 2);
    let mut s = reading_each_other(true);
    s.history.read_committed_consumers.retain(|&p| p != 2);
    assert_eq!(check(&s), "");
}

#[test]
fn a_long_cycle_is_summarised() {
    // Ten transactions, each writing offset 0 of its own partition and
    // offset 1 of the next one's: each precedes the one before it.
    let mut s = Script::default();
    let txns: Vec<u64> = (0..10).map(|p| s.at(10 + p as u64).begin(p + 1)).collect();
    for p in 0..10u32 {
        s.at(30 + p as u64).send_ok(v(p + 1, 0), p, 0);
        s.at(50 + p as u64).send_ok(v(p + 1, 1), (p + 1) % 10, 1);
    }
    for (i, &t) in txns.iter().enumerate() {
        s.at(100 + 10 * i as u64).end(t, true, committed());
    }
    let report = super::check_history(&s.history);
    assert_eq!(report.count(Invariant::G0), 1);
    let detail = &report.violations.iter().find(|v| v.invariant == Invariant::G0).unwrap().detail;
    assert!(detail.starts_with("a cycle of 10: transaction op "), "{detail}");
    assert!(detail.contains(" -> (2 more steps) -> transaction op "), "{detail}");
    assert_eq!(detail.matches("-[ww ").count(), 8, "{detail}");
}

// ---------------------------------------------------------------------------
// On graphs.

/// Whether `cycle` is a cycle of `edges` of the class it claims.
fn assert_valid(edges: &[(u32, u32, Dep)], cycle: &Cycle) {
    let steps: Vec<(u32, u32, Dep)> = cycle.edges.iter().map(|&e| edges[e]).collect();
    assert!(!steps.is_empty());
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step.1, steps[(i + 1) % steps.len()].0, "not a cycle: {steps:?}");
    }
    let count = |dep: Dep| steps.iter().filter(|s| s.2 == dep).count();
    let class = match (count(Dep::Wr), count(Dep::Rw)) {
        (0, 0) => Anomaly::G0,
        (_, 0) => Anomaly::G1c,
        (_, 1) => Anomaly::GSingle,
        _ => Anomaly::G2,
    };
    assert_eq!(class, cycle.anomaly, "{steps:?}");
}

/// Whether `to` is reachable from `from` over edges whose kind `allowed` takes.
fn reaches(edges: &[(u32, u32, Dep)], from: u32, to: u32, allowed: impl Fn(Dep) -> bool) -> bool {
    let mut seen = vec![from];
    let mut frontier = vec![from];
    while let Some(node) = frontier.pop() {
        if node == to {
            return true;
        }
        for &(a, b, dep) in edges {
            if a == node && allowed(dep) && !seen.contains(&b) {
                seen.push(b);
                frontier.push(b);
            }
        }
    }
    false
}

/// The classes a graph with at most one non-trivial component must report:
/// a class whose defining edge closes a cycle over the edges it allows.
fn oracle(edges: &[(u32, u32, Dep)]) -> Vec<Anomaly> {
    let closes = |dep: Dep, allowed: &dyn Fn(Dep) -> bool| {
        edges.iter().any(|&(a, b, d)| d == dep && a != b && reaches(edges, b, a, allowed))
    };
    let mut classes = Vec::new();
    if closes(Dep::Ww, &|d| d == Dep::Ww) {
        classes.push(Anomaly::G0);
    }
    if closes(Dep::Wr, &|d| d != Dep::Rw) {
        classes.push(Anomaly::G1c);
    }
    if closes(Dep::Rw, &|d| d != Dep::Rw) {
        classes.push(Anomaly::GSingle);
    } else if closes(Dep::Rw, &|_| true) {
        classes.push(Anomaly::G2);
    }
    classes
}

fn dep(kind: u8) -> Dep {
    [Dep::Ww, Dep::Wr, Dep::Rw][kind as usize % 3]
}

/// A random DAG: edges only from lower to higher nodes.
fn dag() -> impl Strategy<Value = (u32, Vec<(u32, u32, Dep)>)> {
    (2..12u32).prop_flat_map(|nodes| {
        let edge = (0..nodes, 0..nodes, 0..3u8).prop_map(|(a, b, k)| (a.min(b), a.max(b), dep(k)));
        (Just(nodes), prop::collection::vec(edge, 0..30))
    })
}

proptest! {
    #[test]
    fn acyclic_graphs_have_no_cycles((nodes, edges) in dag()) {
        prop_assert!(find(&Graph::new(nodes as usize, &edges)).is_empty());
    }

    #[test]
    fn a_back_edge_makes_the_cycles_the_oracle_finds(
        (nodes, mut edges) in dag(),
        pick in any::<prop::sample::Index>(),
        kind in 0..3u8,
    ) {
        // Close a cycle: from a node some other node reaches, back to it.
        let pairs: Vec<(u32, u32)> = (0..nodes)
            .flat_map(|a| (a + 1..nodes).map(move |b| (a, b)))
            .filter(|&(a, b)| reaches(&edges, a, b, |_| true))
            .collect();
        prop_assume!(!pairs.is_empty());
        let (low, high) = pairs[pick.index(pairs.len())];
        let back = edges.len();
        edges.push((high, low, dep(kind)));
        let cycles = find(&Graph::new(nodes as usize, &edges));
        prop_assert!(!cycles.is_empty());
        for cycle in &cycles {
            assert_valid(&edges, cycle);
            // Every cycle of a DAG plus one edge goes through that edge.
            prop_assert!(cycle.edges.contains(&back));
        }
        let found: Vec<Anomaly> = cycles.iter().map(|c| c.anomaly).collect();
        prop_assert_eq!(found, oracle(&edges));
    }
}

#[test]
fn a_self_loop_is_no_cycle() {
    assert!(find(&Graph::new(1, &[(0, 0, Dep::Ww)])).is_empty());
}

#[test]
fn a_ring_of_a_million_edges_needs_no_deep_stack() {
    // A recursive Tarjan would overflow the stack here.
    let nodes = 1_000_000u32;
    let edges: Vec<(u32, u32, Dep)> = (0..nodes).map(|n| (n, (n + 1) % nodes, Dep::Ww)).collect();
    let cycles = find(&Graph::new(nodes as usize, &edges));
    assert_eq!(cycles.len(), 1);
    assert_eq!((cycles[0].anomaly, cycles[0].edges.len()), (Anomaly::G0, nodes as usize));
    let path: Vec<(u32, u32, Dep)> = edges[..nodes as usize - 1].to_vec();
    assert!(find(&Graph::new(nodes as usize, &path)).is_empty());
}

#[test]
fn g_single_is_preferred_over_g2_in_one_component() {
    // 0 -rw-> 1 -rw-> 0 is write skew, but 0 -rw-> 1 -ww-> 2 -wr-> 0 is read skew
    // in the same component: report the one with one anti-dependency.
    let edges = [(0, 1, Dep::Rw), (1, 0, Dep::Rw), (1, 2, Dep::Ww), (2, 0, Dep::Wr), (2, 3, Dep::Rw), (3, 0, Dep::Rw)];
    let cycles = find(&Graph::new(4, &edges));
    let classes: Vec<Anomaly> = cycles.iter().map(|c| c.anomaly).collect();
    assert_eq!(classes, [Anomaly::GSingle]);
    assert_valid(&edges, &cycles[0]);
}
