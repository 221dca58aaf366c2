//! Planted bugs: named switches, off by default, that re-create known defects so
//! that every checker can be shown to fire. The normal path pays one branch.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Every planted bug ksim knows. Closed: adding one means adding it here,
/// to `ALL`, to `describe`, and a test that the right checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plant {
    /// A fetch response occasionally omits one record from the middle.
    FetchSkipsRecord,
    /// After a restart the log hands out an offset that already exists.
    OffsetReuse,
}

impl Plant {
    pub const ALL: &'static [Plant] = &[Plant::FetchSkipsRecord, Plant::OffsetReuse];

    pub fn name(self) -> &'static str {
        match self {
            Plant::FetchSkipsRecord => "fetch-skips-record",
            Plant::OffsetReuse => "offset-reuse",
        }
    }

    /// One line: what the switch does and which checker must catch it.
    pub fn describe(self) -> &'static str {
        match self {
            Plant::FetchSkipsRecord => {
                "a fetch response occasionally omits one record (caught by poll-skip, lost-write)"
            }
            Plant::OffsetReuse => "after a restart the log reassigns its last offset (caught by inconsistent-offsets)",
        }
    }
}

impl fmt::Display for Plant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Plant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plant::ALL.iter().copied().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Plant::ALL.iter().map(|p| p.name()).collect();
            format!("unknown planted bug `{s}`; expected one of: {}", names.join(", "))
        })
    }
}

/// The set of switches that are on for one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plants(BTreeSet<Plant>);

impl Plants {
    pub fn none() -> Self {
        Plants::default()
    }
    pub fn with(mut self, plant: Plant) -> Self {
        self.0.insert(plant);
        self
    }
    pub fn insert(&mut self, plant: Plant) {
        self.0.insert(plant);
    }
    #[inline]
    pub fn on(&self, plant: Plant) -> bool {
        !self.0.is_empty() && self.0.contains(&plant)
    }
    pub fn iter(&self) -> impl Iterator<Item = Plant> + '_ {
        self.0.iter().copied()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Plant> for Plants {
    fn from_iter<T: IntoIterator<Item = Plant>>(iter: T) -> Self {
        Plants(iter.into_iter().collect())
    }
}
