//! sim: the seeded world ksim runs broker-core in — nodes, connections,
//! clocks, disks, nemesis, workload, history, checkers, scenarios, runner.

pub mod bench;
pub mod checker;
pub mod cli;
pub mod clock;
pub mod disk;
pub mod groups;
pub mod history;
pub mod memory;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod observe;
pub mod panics;
pub mod rebalance;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod sweep;
pub mod timer;
pub mod trace;
pub mod world;

pub use broker_core;
