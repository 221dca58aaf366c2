//! One error type for every way a scenario file can be wrong: unreadable,
//! malformed TOML, or well-formed but meaningless. Each names the file and,
//! where a value is to blame, its line and column.

use std::fmt;

/// What is wrong with a scenario file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The path as given to `Scenario::load` (or the name given to `parse`).
    pub file: String,
    /// 1-based line of the offending value, when one is to blame.
    pub line: Option<usize>,
    /// 1-based column, counted in characters.
    pub column: Option<usize>,
    /// What is wrong and what is expected instead; one line.
    pub message: String,
}

impl ScenarioError {
    /// An error about the file as a whole (unreadable, a required key missing).
    pub fn whole_file(file: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError { file: file.to_string(), line: None, column: None, message: message.into() }
    }

    /// An error about the value starting at byte `offset` of `text`.
    pub(super) fn at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(text, offset);
        ScenarioError { file: file.to_string(), line: Some(line), column: Some(column), message: message.into() }
    }

    /// Converts the toml crate's error: its message, reworded to speak of
    /// keys rather than fields, at its byte span.
    pub(super) fn from_toml(error: &toml::de::Error, text: &str, file: &str) -> ScenarioError {
        let message = reword(error.message());
        match error.span() {
            Some(span) if !(span.start == 0 && misses_root_key(&message)) => {
                ScenarioError::at(file, text, span.start, message)
            }
            // A top-level key is missing: the document as a whole is to blame
            // (toml reports its span, which starts at 0).
            _ => ScenarioError::whole_file(file, message),
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

/// 1-based (line, column) of byte `offset`; the column counts characters.
/// Total: an offset past the end or inside a character is clamped, never a panic.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    // Count characters by counting bytes that are not UTF-8 continuation bytes.
    let column = 1 + before[line_start..].iter().filter(|&&b| b & 0xC0 != 0x80).count();
    (line, column)
}

/// The top-level keys without a default.
const ROOT_REQUIRED: &[&str] = &["duration_ms", "cluster"];

fn misses_root_key(message: &str) -> bool {
    ROOT_REQUIRED.iter().any(|key| message == format!("missing required key `{key}`"))
}

/// toml's messages speak serde ("field", "sequence", "struct RawCluster");
/// scenario files speak TOML ("key", "array", "table"). Multi-line messages
/// (syntax errors) are joined into one line.
fn reword(message: &str) -> String {
    let mut out = message.trim().lines().map(str::trim).collect::<Vec<_>>().join(": ");
    for (serde, toml) in [
        ("missing field ", "missing required key "),
        ("unknown field ", "unknown key "),
        ("expected a sequence", "expected an array"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: map", "invalid type: table"),
        ("expected a map", "expected a table"),
    ] {
        out = out.replace(serde, toml);
    }
    // "expected struct RawCluster" names a type of ours, not of the file.
    if let Some(at) = out.find("expected struct ") {
        let rest = &out[at + "expected struct ".len()..];
        let name_len = rest.find(|c: char| !c.is_alphanumeric()).unwrap_or(rest.len());
        out = format!("{}expected a table{}", &out[..at], &rest[name_len..]);
    }
    out
}
