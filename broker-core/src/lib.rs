//! broker-core: sans-IO state machines for a Kafka-style broker and its clients.
//!
//! Everything here is a pure state machine: inputs are requests, responses,
//! timer expiries and the current time (`now_ms`, always an argument); outputs
//! are messages to send, timers to arm and storage writes performed through the
//! narrow [`storage::Storage`] seam. Nothing here reads a clock, draws its own
//! random numbers, spawns a thread or touches the network — the simulator in
//! `sim` owns all of that.

pub mod broker;
pub mod client;
pub mod controller;
pub mod group;
pub mod log;
pub mod plant;
pub mod protocol;
pub mod storage;
pub mod txn;
pub mod types;
