//! Scenario files: a TOML description of a cluster, a workload, a fault
//! schedule and what must hold, validated into a [`Scenario`].
//!
//! Parsing is two steps. `raw` deserializes the file as written, keeping the
//! byte span of every value (syntax errors, unknown keys and wrong types are
//! caught here by the toml crate). `validate` then checks ranges (against
//! `limits`, the one place every bound lives), resolves names (topics, nodes,
//! invariants, planted bugs) and fills in defaults. Any problem becomes one
//! [`ScenarioError`] naming file, line and column. The format is documented
//! in docs/SCENARIOS.md.

mod error;
pub mod limits;
mod raw;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::ScenarioError;
pub use limits::{Limit, LIMITS, MAX_FILE_BYTES};
pub use schema::{
    AssignmentSpec, BrokerSpec, ClusterSpec, CommitMode, ConsumerSpec, ControllerSpec, DiskFaultSpec, DiskSpec,
    ExpectSpec, Fault, FlushSpec, GroupSpec, IsolationSpec, KeyMode, NemesisSpec, NetworkSpec, PartitionerSpec,
    PipelineSpec, ProducerSpec, ResetSpec, Scenario, TimedFault, TopicSpec, TransactionSpec, WorkloadSpec,
    CONTROLLER_NODE,
};

impl Scenario {
    /// Reads and validates a scenario file; `file` in errors and in the
    /// result is `path` as given.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| ScenarioError::whole_file(&file, format!("cannot read scenario file: {e}")))?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(too_large(&file, bytes.len()));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            ScenarioError::at(&file, &prefix, valid, "not UTF-8 text: TOML files are UTF-8")
        })?;
        Scenario::parse(&text, &file)
    }

    /// Validates scenario text; `file` names it in errors and becomes `Scenario::file`.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(too_large(file, text.len()));
        }
        let raw: raw::RawScenario = toml::from_str(text).map_err(|e| ScenarioError::from_toml(&e, text, file))?;
        validate::build(raw, text, file)
    }
}

fn too_large(file: &str, len: usize) -> ScenarioError {
    let msg = format!("scenario file is {len} bytes; the limit is {MAX_FILE_BYTES}");
    ScenarioError::whole_file(file, msg)
}
