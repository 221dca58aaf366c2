//! The run's trace: every message sent, every fault, every node boot and the
//! history, each stamped with simulated time and node. The trace hash covers
//! all of it; lines are formatted only when `--trace PATH` asks for them, so
//! hashing stays cheap on the hot path.

use broker_core::protocol::RequestKind;
use serde::Serialize;
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};

/// Everything a trace line can say. Closed: one place to trace, count and hash.
#[derive(Clone, Debug, Hash, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TraceEvent {
    Boot,
    Request { to: u32, correlation_id: u64, kind: RequestKind },
    Response { to: u32, correlation_id: u64, kind: RequestKind },
    ConnectFailed { to: u32 },
    Fault { what: String },
    Phase { name: &'static str },
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

    /// Folds something else that belongs to the run (the history) into the hash.
    pub fn absorb(&mut self, value: &impl Hash) {
        value.hash(&mut self.hasher);
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
