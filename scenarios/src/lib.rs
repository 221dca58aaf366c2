//! The scenario catalogue: every `*.toml` in this directory (and `bench/`)
//! is a scenario, and `tests/catalogue.rs` makes each one a cargo test.

use std::path::{Path, PathBuf};

/// The directory holding the catalogue.
pub fn catalogue_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every scenario file of the catalogue, sorted: top level first, then `bench/`.
pub fn scenario_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [catalogue_dir().to_path_buf(), catalogue_dir().join("bench")] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.ends_with("Cargo.toml"))
            .collect();
        here.sort();
        files.extend(here);
    }
    files
}

/// A path relative to the workspace root, as replay commands print it.
pub fn display_path(file: &Path) -> PathBuf {
    let root = catalogue_dir().parent().expect("scenarios/ sits in the workspace");
    file.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| file.to_path_buf())
}
