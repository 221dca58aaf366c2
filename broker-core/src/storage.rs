//! The storage seam: a node's files as named byte arrays.
//!
//! The log writes segments and indexes through this trait; the simulator
//! implements it with a per-node disk that outlives process crashes, and the
//! disk-fault work will add page cache, fsync and power loss behind the same
//! calls. `MemStorage` is the plain implementation used by unit tests.

use std::collections::BTreeMap;

/// Files addressed by path (`"t0-3/00000000000000000000.log"`). All calls are
/// synchronous: the simulated disk completes them at once.
pub trait Storage {
    /// Appends to the end of `file`, creating it if absent.
    fn append(&mut self, file: &str, data: &[u8]);
    /// Overwrites `file` with `data`, creating it if absent.
    fn write_all(&mut self, file: &str, data: &[u8]);
    /// The whole content of `file`, or `None` if it does not exist.
    fn read(&self, file: &str) -> Option<Vec<u8>>;
    /// Bytes `[position, position + len)` of `file`, or `None` if it does not
    /// exist or is shorter. The log serves every read through this.
    fn read_at(&self, file: &str, position: u64, len: u64) -> Option<Vec<u8>>;
    /// Length of `file` in bytes, or `None` if it does not exist.
    fn len(&self, file: &str) -> Option<u64>;
    /// Cuts `file` to `len` bytes (no-op if shorter or absent).
    fn truncate(&mut self, file: &str, len: u64);
    /// Removes `file` (no-op if absent).
    fn delete(&mut self, file: &str);
    /// Every file whose path starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Vec<String>;
}

/// An in-memory file store: durable at once, no faults.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }
    /// Total bytes held, for bounds and tests.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }
}

impl Storage for MemStorage {
    fn append(&mut self, file: &str, data: &[u8]) {
        // The hot path appends to an existing file: no path allocation then.
        match self.files.get_mut(file) {
            Some(f) => f.extend_from_slice(data),
            None => {
                self.files.insert(file.to_string(), data.to_vec());
            }
        }
    }
    fn write_all(&mut self, file: &str, data: &[u8]) {
        match self.files.get_mut(file) {
            Some(f) => {
                f.clear();
                f.extend_from_slice(data);
            }
            None => {
                self.files.insert(file.to_string(), data.to_vec());
            }
        }
    }
    fn read(&self, file: &str) -> Option<Vec<u8>> {
        self.files.get(file).cloned()
    }
    fn read_at(&self, file: &str, position: u64, len: u64) -> Option<Vec<u8>> {
        let data = self.files.get(file)?;
        let start = usize::try_from(position).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        data.get(start..end).map(<[u8]>::to_vec)
    }
    fn len(&self, file: &str) -> Option<u64> {
        self.files.get(file).map(|f| f.len() as u64)
    }
    fn truncate(&mut self, file: &str, len: u64) {
        if let Some(f) = self.files.get_mut(file) {
            f.truncate(len as usize);
        }
    }
    fn delete(&mut self, file: &str) {
        self.files.remove(file);
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        self.files
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// A [`MemStorage`] shared between handles: what a test hands to two
/// incarnations of a state machine to model a restart on the same disk.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct SharedMemStorage(std::rc::Rc<std::cell::RefCell<MemStorage>>);

#[cfg(test)]
impl Storage for SharedMemStorage {
    fn append(&mut self, file: &str, data: &[u8]) {
        self.0.borrow_mut().append(file, data)
    }
    fn write_all(&mut self, file: &str, data: &[u8]) {
        self.0.borrow_mut().write_all(file, data)
    }
    fn read(&self, file: &str) -> Option<Vec<u8>> {
        self.0.borrow().read(file)
    }
    fn read_at(&self, file: &str, position: u64, len: u64) -> Option<Vec<u8>> {
        self.0.borrow().read_at(file, position, len)
    }
    fn len(&self, file: &str) -> Option<u64> {
        self.0.borrow().len(file)
    }
    fn truncate(&mut self, file: &str, len: u64) {
        self.0.borrow_mut().truncate(file, len)
    }
    fn delete(&mut self, file: &str) {
        self.0.borrow_mut().delete(file)
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        self.0.borrow().list(prefix)
    }
}
