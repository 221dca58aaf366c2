//! Cycles in a dependency graph, classified as Adya classifies them (and
//! Elle finds them): **G0**, a cycle of write-write (ww) edges only; **G1c**,
//! ww and write-read (wr) edges with at least one wr; **G-single**, exactly
//! one read-write anti-dependency (rw); **G2**, two or more.
//!
//! Near-linear in the graph: strongly connected components (Tarjan's
//! algorithm, iterative: histories are large and a recursion per node would
//! overflow the stack) over three edge sets — ww; ww+wr; all — then, in each
//! component with an edge of the kind that defines the anomaly, a
//! breadth-first search for a shortest path back from that edge's target to
//! its source: one cycle to report per component and anomaly. Each search
//! stays inside its component and touches only the nodes it visits, so the
//! searches together cost O(V + E).
//!
//! Telling G-single from G2 exactly means asking, for every rw edge u → v,
//! whether v reaches u over ww and wr edges alone: in general that is as hard
//! as a transitive closure. So each component gets the searches a shared
//! budget of O(V + E) steps allows (an rw edge whose ends share a ww+wr
//! component needs none); when none finds one, the component is reported by
//! a shortest cycle through its first rw edge, classified by the rw edges it
//! actually holds. A reported cycle is always of the class it is reported
//! as; a G2 report may hide a G-single the budget did not reach.

/// A dependency between two nodes (transactions, or single sends or polls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Dep {
    /// The source wrote a version, the target the next one.
    Ww,
    /// The target read what the source wrote.
    Wr,
    /// The source read a version, the target wrote the next one.
    Rw,
}

impl Dep {
    fn bit(self) -> u8 {
        match self {
            Dep::Ww => 1,
            Dep::Wr => 2,
            Dep::Rw => 4,
        }
    }
}

const WW: u8 = 1;
const WW_WR: u8 = 1 | 2;
const ALL: u8 = 1 | 2 | 4;

/// The anomaly a cycle shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Anomaly {
    G0,
    G1c,
    GSingle,
    G2,
}

/// One cycle: the caller's edge indices, in order around it (each edge's
/// target is the next one's source; the last one's is the first one's source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cycle {
    pub(crate) anomaly: Anomaly,
    pub(crate) edges: Vec<usize>,
}

/// A graph over nodes `0..nodes`: each node's out-edges together (CSR).
pub(crate) struct Graph {
    /// Node `n`'s out-edges are `out[start[n]..start[n + 1]]`.
    start: Vec<u32>,
    out: Vec<Out>,
}

#[derive(Clone, Copy, Debug)]
struct Out {
    to: u32,
    dep: Dep,
    /// The edge's index in the caller's list.
    edge: u32,
}

const NONE: u32 = u32::MAX;

impl Graph {
    /// `edges` as (from, to, dependency). A self-loop is dropped: a
    /// transaction depending on itself is no anomaly.
    #[cfg(test)]
    pub(crate) fn new(nodes: usize, edges: &[(u32, u32, Dep)]) -> Graph {
        Graph::from_edges(nodes, edges, |&edge| edge)
    }

    /// The same, over any list of edges that `key` reads as (from, to,
    /// dependency): the caller's own edges, not a copy of them (on a large
    /// history the copy was the cycle checker's memory peak).
    pub(crate) fn from_edges<E>(nodes: usize, edges: &[E], key: impl Fn(&E) -> (u32, u32, Dep)) -> Graph {
        assert!(nodes < NONE as usize && edges.len() < NONE as usize, "graph indices are u32");
        let mut start = vec![0u32; nodes + 1];
        for (from, to, _) in edges.iter().map(&key).filter(|e| e.0 != e.1) {
            assert!((from as usize) < nodes && (to as usize) < nodes, "edge {from} -> {to} outside {nodes} nodes");
            start[from as usize + 1] += 1;
        }
        for n in 0..nodes {
            start[n + 1] += start[n];
        }
        let mut next = start.clone();
        let mut out = vec![Out { to: 0, dep: Dep::Ww, edge: 0 }; start[nodes] as usize];
        for (index, (from, to, dep)) in edges.iter().map(&key).enumerate().filter(|(_, e)| e.0 != e.1) {
            let slot = &mut next[from as usize];
            out[*slot as usize] = Out { to, dep, edge: index as u32 };
            *slot += 1;
        }
        Graph { start, out }
    }

    fn nodes(&self) -> usize {
        self.start.len() - 1
    }

    fn out(&self, node: u32) -> &[Out] {
        &self.out[self.start[node as usize] as usize..self.start[node as usize + 1] as usize]
    }

    /// A cycle given as out-edge slots, as the caller's edge indices.
    fn cycle(&self, anomaly: Anomaly, slots: &[usize]) -> Cycle {
        Cycle { anomaly, edges: slots.iter().map(|&slot| self.out[slot].edge as usize).collect() }
    }

    /// Out-edge slots of `node` (indices into `out`).
    fn slots(&self, node: u32) -> std::ops::Range<usize> {
        self.start[node as usize] as usize..self.start[node as usize + 1] as usize
    }
}

/// Every anomaly in `graph`: per strongly connected component, one G0 cycle
/// if it has a ww cycle, one G1c cycle if it has a ww+wr cycle through a wr
/// edge, and one G-single or G2 cycle if it has a cycle through an rw edge.
/// In that order, each by component (deterministic for a given graph).
pub(crate) fn find(graph: &Graph) -> Vec<Cycle> {
    let mut search = Search::new(graph.nodes());
    let mut cycles = Vec::new();
    let ww = Components::of(graph, WW);
    for (from, slot) in ww.first_internal(graph, Dep::Ww) {
        let found = search.cycle_through(graph, from, slot, &ww, WW);
        cycles.extend(found.map(|slots| graph.cycle(Anomaly::G0, &slots)));
    }
    let ww_wr = Components::of(graph, WW_WR);
    for (from, slot) in ww_wr.first_internal(graph, Dep::Wr) {
        let found = search.cycle_through(graph, from, slot, &ww_wr, WW_WR);
        cycles.extend(found.map(|slots| graph.cycle(Anomaly::G1c, &slots)));
    }
    let all = Components::of(graph, ALL);
    let mut budget = 4 * (graph.nodes() + graph.out.len()) + 1024;
    for rw in all.internal(graph, Dep::Rw) {
        cycles.extend(anti_dependency_cycle(graph, &rw, &all, &ww_wr, &mut search, &mut budget));
    }
    cycles
}

/// A cycle through one of a component's rw edges (`rw`, as (source, slot)):
/// one with exactly one rw edge if the searches find one, else a shortest
/// cycle through the first.
fn anti_dependency_cycle(
    graph: &Graph,
    rw: &[(u32, usize)],
    all: &Components,
    ww_wr: &Components,
    search: &mut Search,
    budget: &mut usize,
) -> Option<Cycle> {
    // Free: both ends in one ww+wr component, so the target reaches the source.
    let same = rw.iter().find(|&&(from, slot)| ww_wr.comp[from as usize] == ww_wr.comp[graph.out[slot].to as usize]);
    if let Some(&(from, slot)) = same {
        let slots = search.cycle_through(graph, from, slot, ww_wr, WW_WR)?;
        return Some(graph.cycle(Anomaly::GSingle, &slots));
    }
    for &(from, slot) in rw {
        if *budget == 0 {
            break;
        }
        let found = search.cycle_through(graph, from, slot, all, WW_WR);
        *budget = budget.saturating_sub(search.work);
        if let Some(slots) = found {
            return Some(graph.cycle(Anomaly::GSingle, &slots));
        }
    }
    let &(from, slot) = rw.first()?;
    let slots = search.cycle_through(graph, from, slot, all, ALL)?;
    let rw_edges = slots.iter().filter(|&&s| graph.out[s].dep == Dep::Rw).count();
    Some(graph.cycle(if rw_edges == 1 { Anomaly::GSingle } else { Anomaly::G2 }, &slots))
}

/// Strongly connected components over the edges whose kind is in a mask.
struct Components {
    /// Each node's component, numbered in the order Tarjan completes them.
    comp: Vec<u32>,
    size: Vec<u32>,
}

impl Components {
    /// Tarjan's algorithm with an explicit stack of (node, next out-edge slot).
    fn of(graph: &Graph, mask: u8) -> Components {
        let mut tarjan = Tarjan::new(graph.nodes());
        for root in 0..graph.nodes() as u32 {
            if tarjan.index[root as usize] == NONE {
                tarjan.run(graph, mask, root);
            }
        }
        Components { comp: tarjan.comp, size: tarjan.size }
    }

    /// Whether an out-edge stays inside a component of more than one node.
    fn inside(&self, from: u32, to: u32) -> bool {
        let c = self.comp[from as usize];
        c == self.comp[to as usize] && self.size[c as usize] > 1
    }

    /// Per component, every internal edge of kind `want`, as
    /// (source, slot), components in order of their first such edge.
    fn internal(&self, graph: &Graph, want: Dep) -> Vec<Vec<(u32, usize)>> {
        let mut by_comp: Vec<Option<usize>> = vec![None; self.size.len()];
        let mut lists: Vec<Vec<(u32, usize)>> = Vec::new();
        for from in 0..graph.nodes() as u32 {
            for slot in graph.slots(from) {
                let out = graph.out[slot];
                if out.dep != want || !self.inside(from, out.to) {
                    continue;
                }
                let c = self.comp[from as usize] as usize;
                let list = *by_comp[c].get_or_insert_with(|| {
                    lists.push(Vec::new());
                    lists.len() - 1
                });
                lists[list].push((from, slot));
            }
        }
        lists
    }

    /// Per component, its first internal edge of kind `want`.
    fn first_internal(&self, graph: &Graph, want: Dep) -> Vec<(u32, usize)> {
        let mut seen = vec![false; self.size.len()];
        let mut firsts = Vec::new();
        for from in 0..graph.nodes() as u32 {
            for (slot, out) in graph.slots(from).zip(graph.out(from)) {
                let c = self.comp[from as usize] as usize;
                if out.dep == want && self.inside(from, out.to) && !std::mem::replace(&mut seen[c], true) {
                    firsts.push((from, slot));
                }
            }
        }
        firsts
    }
}

/// Tarjan's state: discovery index and low-link per node, the stack of
/// nodes not yet in a component, and the components found.
struct Tarjan {
    index: Vec<u32>,
    low: Vec<u32>,
    on_stack: Vec<bool>,
    stack: Vec<u32>,
    /// The depth-first path: each node with the next out-edge slot to look at.
    calls: Vec<(u32, usize)>,
    counter: u32,
    comp: Vec<u32>,
    size: Vec<u32>,
}

impl Tarjan {
    fn new(nodes: usize) -> Tarjan {
        Tarjan {
            index: vec![NONE; nodes],
            low: vec![0; nodes],
            on_stack: vec![false; nodes],
            stack: Vec::new(),
            calls: Vec::new(),
            counter: 0,
            comp: vec![NONE; nodes],
            size: Vec::new(),
        }
    }

    fn visit(&mut self, graph: &Graph, node: u32) {
        self.index[node as usize] = self.counter;
        self.low[node as usize] = self.counter;
        self.counter += 1;
        self.stack.push(node);
        self.on_stack[node as usize] = true;
        self.calls.push((node, graph.slots(node).start));
    }

    /// Every component reachable from `root` (not yet visited).
    fn run(&mut self, graph: &Graph, mask: u8, root: u32) {
        self.visit(graph, root);
        while let Some(&(node, slot)) = self.calls.last() {
            if slot < graph.slots(node).end {
                self.calls.last_mut().expect("not empty").1 += 1;
                let out = graph.out[slot];
                if out.dep.bit() & mask == 0 {
                    continue;
                }
                let to = out.to as usize;
                if self.index[to] == NONE {
                    self.visit(graph, out.to);
                } else if self.on_stack[to] {
                    self.low[node as usize] = self.low[node as usize].min(self.index[to]);
                }
                continue;
            }
            self.calls.pop();
            if let Some(&(parent, _)) = self.calls.last() {
                self.low[parent as usize] = self.low[parent as usize].min(self.low[node as usize]);
            }
            if self.low[node as usize] == self.index[node as usize] {
                self.close(node);
            }
        }
    }

    /// `node` is its component's root: the stack down to it is the component.
    fn close(&mut self, node: u32) {
        let id = self.size.len() as u32;
        let mut members = 0;
        while let Some(member) = self.stack.pop() {
            self.on_stack[member as usize] = false;
            self.comp[member as usize] = id;
            members += 1;
            if member == node {
                break;
            }
        }
        self.size.push(members);
    }
}

/// Breadth-first search state, reused across searches: a node counts as
/// visited only if stamped with the current search's number, so a search
/// costs what it visits, not the graph's size.
struct Search {
    stamp: Vec<u32>,
    current: u32,
    /// The out-edge slot a node was reached by in the current search, and
    /// the node it left from.
    via: Vec<(u32, u32)>,
    queue: Vec<u32>,
    /// Nodes and edges the last search looked at.
    work: usize,
}

impl Search {
    fn new(nodes: usize) -> Search {
        Search { stamp: vec![0; nodes], current: 0, via: vec![(NONE, NONE); nodes], queue: Vec::new(), work: 0 }
    }

    /// A shortest cycle through out-edge `slot` of `from`: the edge, then a
    /// shortest path back from its target over edges in `mask`, within
    /// `from`'s component in `within`. As out-edge slots.
    fn cycle_through(
        &mut self,
        graph: &Graph,
        from: u32,
        slot: usize,
        within: &Components,
        mask: u8,
    ) -> Option<Vec<usize>> {
        let path = self.path(graph, graph.out[slot].to, from, within, mask)?;
        let mut slots = Vec::with_capacity(path.len() + 1);
        slots.push(slot);
        slots.extend(path);
        Some(slots)
    }

    /// Out-edge slots of a shortest path from `source` to `target`.
    fn path(&mut self, graph: &Graph, source: u32, target: u32, within: &Components, mask: u8) -> Option<Vec<usize>> {
        self.current += 1;
        if self.current == u32::MAX {
            self.stamp.fill(0);
            self.current = 1;
        }
        let comp = within.comp[source as usize];
        self.queue.clear();
        self.queue.push(source);
        self.stamp[source as usize] = self.current;
        self.work = 0;
        let mut head = 0;
        while head < self.queue.len() && self.stamp[target as usize] != self.current {
            let node = self.queue[head];
            head += 1;
            self.work += 1;
            for slot in graph.slots(node) {
                self.work += 1;
                let out = graph.out[slot];
                let to = out.to as usize;
                if out.dep.bit() & mask == 0 || within.comp[to] != comp || self.stamp[to] == self.current {
                    continue;
                }
                self.stamp[to] = self.current;
                self.via[to] = (slot as u32, node);
                self.queue.push(out.to);
            }
        }
        if self.stamp[target as usize] != self.current {
            return None;
        }
        let mut slots = Vec::new();
        let mut node = target;
        while node != source {
            let (slot, parent) = self.via[node as usize];
            slots.push(slot as usize);
            node = parent;
        }
        slots.reverse();
        Some(slots)
    }
}
