//! The storage seam: a node's files as named byte arrays.
//!
//! The log writes segments, indexes and checkpoints through this trait. The
//! simulator implements it with a per-node disk that has a page cache in
//! front of durable media: a write is visible to reads at once but survives
//! a power loss only after [`Storage::fsync`] (or the kernel's writeback).
//! Writes can fail (a full disk); the broker treats that as Kafka treats an
//! IOException in its only log directory: it stops. `MemStorage` is the plain
//! implementation used by unit tests: durable at once, never full.

use std::collections::BTreeMap;
use std::fmt;

/// Why a write did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// No space left on the device (ENOSPC). Part of the data may have
    /// reached the file before the disk filled up.
    DiskFull { file: String },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::DiskFull { file } => write!(f, "no space left on device writing {file}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// Files addressed by path (`"t0-3/00000000000000000000.log"`). All calls are
/// synchronous: the simulated disk completes them at once (a write lands in
/// the page cache; `fsync` makes the file durable).
pub trait Storage {
    /// Appends to the end of `file`, creating it if absent.
    fn append(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Overwrites `file` with `data`, creating it if absent.
    fn write_all(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError>;
    /// The whole content of `file`, or `None` if it does not exist.
    fn read(&self, file: &str) -> Option<Vec<u8>>;
    /// Bytes `[position, position + len)` of `file`, or `None` if it does not
    /// exist or is shorter. The log serves every read through this.
    fn read_at(&self, file: &str, position: u64, len: u64) -> Option<Vec<u8>>;
    /// Length of `file` in bytes, or `None` if it does not exist.
    fn len(&self, file: &str) -> Option<u64>;
    /// Cuts `file` to `len` bytes (no-op if shorter or absent).
    fn truncate(&mut self, file: &str, len: u64);
    /// Removes `file` (no-op if absent). Durable at once.
    fn delete(&mut self, file: &str);
    /// Moves `from` over `to` atomically, replacing `to`. Durable at once as
    /// a name change; the bytes are as durable as `from`'s were.
    fn rename(&mut self, from: &str, to: &str);
    /// Makes everything written to `file` so far survive a power loss.
    fn fsync(&mut self, file: &str);
    /// Every file whose path starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Vec<String>;
    /// Whether reads are pure at present: no fault can make a read return
    /// other bytes than were written (none has been able to since the node
    /// started), and a read takes no simulated time. Then a reader may keep
    /// what it read instead of reading it again (the log's decoded tail).
    /// The default, false, is always safe.
    fn reads_are_pure(&self) -> bool {
        false
    }
}

/// The entries of a checkpoint file in Kafka's text format — version `0`, the
/// entry count, then one line per entry — each split into exactly `N`
/// whitespace-separated fields. `None` if the bytes are not such a file:
/// longer than `max_bytes`, not UTF-8, another version, a line with another
/// number of fields, or a count that does not match the lines. (Shared by
/// `leader-epoch-checkpoint` and the broker's offset checkpoints.)
pub fn checkpoint_entries<const N: usize>(bytes: &[u8], max_bytes: usize) -> Option<Vec<[&str; N]>> {
    if bytes.len() > max_bytes {
        return None;
    }
    let mut lines = std::str::from_utf8(bytes).ok()?.lines();
    if lines.next()? != CHECKPOINT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for line in lines {
        let mut fields = line.split_whitespace();
        let entry: [&str; N] = std::array::from_fn(|_| fields.next().unwrap_or(""));
        if entry.iter().any(|f| f.is_empty()) || fields.next().is_some() {
            return None;
        }
        entries.push(entry);
    }
    (entries.len() == count).then_some(entries)
}

/// The version line of the checkpoint files ksim writes (Kafka's current one).
pub const CHECKPOINT_VERSION: &str = "0";

/// The names in `files` that start with `prefix`, sorted: `Storage::list`
/// over a map of files.
pub fn names_with_prefix<V>(files: &BTreeMap<String, V>, prefix: &str) -> Vec<String> {
    files.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect()
}

/// Replaces `file` with `data` so that a power loss leaves either the old or
/// the new content, never a mix or nothing: write a temporary file, sync it,
/// rename it over `file` (how Kafka writes its checkpoint files).
pub fn write_durably(storage: &mut dyn Storage, file: &str, data: &[u8]) -> Result<(), StorageError> {
    let tmp = format!("{file}.tmp");
    storage.write_all(&tmp, data)?;
    storage.fsync(&tmp);
    storage.rename(&tmp, file);
    Ok(())
}

/// An in-memory file store: never full, no faults. Everything written is
/// kept through a process crash; [`MemStorage::power_loss`] cuts each file
/// back to what was last synced (a simple model for unit tests; the
/// simulator's disk is the full one).
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    files: BTreeMap<String, Vec<u8>>,
    /// Per file, the length at its last fsync (absent: never synced).
    synced_len: BTreeMap<String, usize>,
    fsyncs: u64,
    /// What [`Storage::reads_are_pure`] answers: false unless a test asks
    /// (tests that damage bytes in place would read them through a cache).
    pure_reads: bool,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }
    /// Total bytes held, for bounds and tests.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }
    /// How many fsyncs were made.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }
    /// A store whose reads are pure ([`Storage::reads_are_pure`]).
    pub fn with_pure_reads() -> Self {
        MemStorage { pure_reads: true, ..Self::default() }
    }
    /// Every file falls back to its length at its last fsync; never-synced
    /// files vanish.
    pub fn power_loss(&mut self) {
        let synced = &self.synced_len;
        self.files.retain(|name, data| match synced.get(name) {
            Some(&len) => {
                data.truncate(len);
                true
            }
            None => false,
        });
    }
}

impl Storage for MemStorage {
    fn append(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        // The hot path appends to an existing file: no path allocation then.
        match self.files.get_mut(file) {
            Some(f) => f.extend_from_slice(data),
            None => {
                self.files.insert(file.to_string(), data.to_vec());
            }
        }
        Ok(())
    }
    fn write_all(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        match self.files.get_mut(file) {
            Some(f) => {
                f.clear();
                f.extend_from_slice(data);
            }
            None => {
                self.files.insert(file.to_string(), data.to_vec());
            }
        }
        if let Some(len) = self.synced_len.get_mut(file) {
            *len = (*len).min(data.len());
        }
        Ok(())
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
        if let Some(synced) = self.synced_len.get_mut(file) {
            *synced = (*synced).min(len as usize);
        }
    }
    fn delete(&mut self, file: &str) {
        self.files.remove(file);
        self.synced_len.remove(file);
    }
    fn rename(&mut self, from: &str, to: &str) {
        if let Some(data) = self.files.remove(from) {
            self.files.insert(to.to_string(), data);
            match self.synced_len.remove(from) {
                Some(len) => self.synced_len.insert(to.to_string(), len),
                None => self.synced_len.remove(to),
            };
        }
    }
    fn fsync(&mut self, file: &str) {
        if let Some(f) = self.files.get(file) {
            self.synced_len.insert(file.to_string(), f.len());
            self.fsyncs += 1;
        }
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        names_with_prefix(&self.files, prefix)
    }
    fn reads_are_pure(&self) -> bool {
        self.pure_reads
    }
}

/// A [`MemStorage`] shared between handles: what a test hands to two
/// incarnations of a state machine to model a restart on the same disk.
#[cfg(test)]
#[derive(Clone, Default)]
pub struct SharedMemStorage(std::rc::Rc<std::cell::RefCell<MemStorage>>);

#[cfg(test)]
impl SharedMemStorage {
    /// [`MemStorage::power_loss`] on the shared disk.
    pub fn power_loss(&self) {
        self.0.borrow_mut().power_loss()
    }
    /// [`MemStorage::fsyncs`] of the shared disk.
    pub fn fsyncs(&self) -> u64 {
        self.0.borrow().fsyncs()
    }
}

#[cfg(test)]
impl Storage for SharedMemStorage {
    fn append(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().append(file, data)
    }
    fn write_all(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
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
    fn rename(&mut self, from: &str, to: &str) {
        self.0.borrow_mut().rename(from, to)
    }
    fn fsync(&mut self, file: &str) {
        self.0.borrow_mut().fsync(file)
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        self.0.borrow().list(prefix)
    }
}

/// A test store over another: writes can run out of room (the part that fits
/// lands, then ENOSPC), whole-file reads of one file can come back with a bit
/// flipped (a transient read error, the media intact), and the bytes reads of
/// `.log` files return are counted. One wrapper for every such test.
#[cfg(test)]
pub struct TestDisk<S> {
    pub inner: S,
    /// Bytes writes may still add; `None`: unlimited. Shared, so a test can
    /// fill the disk while a state machine owns it.
    pub room: std::rc::Rc<std::cell::Cell<Option<u64>>>,
    /// The file of the first write that did not fit.
    pub first_full: Option<String>,
    pub log_bytes_read: std::cell::Cell<u64>,
    /// `(file, byte)`: reads of `file` flip `byte` (`None`: the middle) while `flips_left` lasts.
    pub flip: Option<(String, Option<usize>)>,
    pub flips_left: std::cell::Cell<u32>,
}

#[cfg(test)]
impl<S: Storage> TestDisk<S> {
    pub fn new(inner: S) -> TestDisk<S> {
        TestDisk {
            inner,
            room: Default::default(),
            first_full: None,
            log_bytes_read: Default::default(),
            flip: None,
            flips_left: Default::default(),
        }
    }

    /// Full once `room` more bytes are written.
    pub fn with_room(inner: S, room: u64) -> TestDisk<S> {
        let disk = TestDisk::new(inner);
        disk.room.set(Some(room));
        disk
    }

    /// The next `flips` reads of `file` flip byte `at` (`None`: the middle).
    pub fn flaky(inner: S, file: &str, at: Option<usize>, flips: u32) -> TestDisk<S> {
        let disk = TestDisk { flip: Some((file.to_string(), at)), ..TestDisk::new(inner) };
        disk.flips_left.set(flips);
        disk
    }

    /// The part of `data` that fits, and whether all of it did.
    fn fit<'a>(&mut self, file: &str, data: &'a [u8]) -> (&'a [u8], Result<(), StorageError>) {
        let Some(room) = self.room.get() else { return (data, Ok(())) };
        let fits = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.room.set(Some(room - fits as u64));
        if fits == data.len() {
            return (data, Ok(()));
        }
        self.first_full.get_or_insert_with(|| file.to_string());
        (&data[..fits], Err(StorageError::DiskFull { file: file.to_string() }))
    }

    fn count(&self, file: &str, bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if file.ends_with(".log") {
            let read = bytes.as_ref().map_or(0, |b| b.len() as u64);
            self.log_bytes_read.set(self.log_bytes_read.get() + read);
        }
        bytes
    }
}

#[cfg(test)]
impl<S: Storage> Storage for TestDisk<S> {
    fn append(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        let (fits, result) = self.fit(file, data);
        self.inner.append(file, fits).expect("the inner store never fills");
        result
    }
    fn write_all(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        let (fits, result) = self.fit(file, data);
        self.inner.write_all(file, fits).expect("the inner store never fills");
        result
    }
    fn read(&self, file: &str) -> Option<Vec<u8>> {
        let mut bytes = self.inner.read(file);
        let flipped = self.flip.as_ref().filter(|(f, _)| f == file && self.flips_left.get() > 0);
        if let (Some((_, at)), Some(bytes)) = (flipped, bytes.as_mut().filter(|b| !b.is_empty())) {
            self.flips_left.set(self.flips_left.get() - 1);
            let at = at.unwrap_or(bytes.len() / 2);
            bytes[at] ^= 0x10;
        }
        self.count(file, bytes)
    }
    fn read_at(&self, file: &str, position: u64, len: u64) -> Option<Vec<u8>> {
        self.count(file, self.inner.read_at(file, position, len))
    }
    fn len(&self, file: &str) -> Option<u64> {
        self.inner.len(file)
    }
    fn truncate(&mut self, file: &str, len: u64) {
        self.inner.truncate(file, len)
    }
    fn delete(&mut self, file: &str) {
        self.inner.delete(file)
    }
    fn rename(&mut self, from: &str, to: &str) {
        self.inner.rename(from, to)
    }
    fn fsync(&mut self, file: &str) {
        self.inner.fsync(file)
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        self.inner.list(prefix)
    }
}
