//! The simulated disk: each node's files sit behind a page cache.
//!
//! madsim's own filesystem writes everything durably at once, so ksim keeps
//! its own. Every file has what reads see (the page cache over the media)
//! and what would survive a power loss (the durable part). A process crash
//! (madsim's kill) keeps the page cache; [`Disk::power_loss`] drops what was
//! not made durable by `fsync` or by the kernel's writeback, optionally
//! keeping a torn prefix of the unsynced tail. Faults drawn from the disk's
//! own seeded stream: bit flips on read or write, lost and misdirected
//! writes, and a full disk. Optional service times (`latency`): the node
//! pays them in simulated time. Directory operations (create, delete, rename)
//! are durable at once, as on a journaling filesystem; a new file's bytes
//! are not until synced.
//!
//! [`DiskSim`] is the madsim plugin that owns one disk per node: madsim
//! creates it with the node and calls its reset hook on every kill, which
//! counts the crash and keeps the cache.

mod latency;

pub use latency::{LatencySpec, ServiceTime, MAX_OP_NS};

use broker_core::storage::{Storage, StorageError};
use latency::{DiskLatency, Op};
use madsim::plugin::Simulator;
use madsim::task::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Most bytes a disk holds, whatever capacity a scenario gives it: a bound,
/// so a runaway workload is an error message and not an out-of-memory.
pub const MAX_DISK_BYTES: u64 = 4 << 30;

/// What survives a power loss of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Durable {
    /// Nothing: the file was created and never synced.
    Nothing,
    /// The first `n` bytes of what reads see (only appends since the sync).
    Prefix(usize),
    /// These bytes (the file was cut or overwritten since the sync).
    Copy(Vec<u8>),
}

#[derive(Clone, Debug)]
struct SimFile {
    /// What reads see.
    data: Vec<u8>,
    durable: Durable,
    /// When the oldest write not yet durable happened (for writeback).
    dirty_since_ms: Option<u64>,
}

impl SimFile {
    fn is_dirty(&self) -> bool {
        match &self.durable {
            Durable::Nothing => true,
            Durable::Prefix(n) => *n < self.data.len(),
            Durable::Copy(_) => true,
        }
    }

    /// The durable part stops being a prefix of `data` before `data` changes
    /// at `position` (a cut or an overwrite): keep a copy of it.
    fn preserve_durable_before_change(&mut self, position: usize) {
        if let Durable::Prefix(n) = self.durable {
            if position < n {
                self.durable = Durable::Copy(self.data[..n].to_vec());
            }
        }
    }

    fn sync(&mut self) {
        self.durable = Durable::Prefix(self.data.len());
        self.dirty_since_ms = None;
    }
}

/// Per-operation fault probabilities (each 0.0..=1.0), from the scenario's
/// `disk-fault` verb.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskFaults {
    /// A read returns its bytes with one bit flipped (the media is intact).
    pub bit_flip_read: f64,
    /// A write stores its bytes with one bit flipped.
    pub bit_flip_write: f64,
    /// A write never reaches the media: its range reads as zeros.
    pub lost_write: f64,
    /// A write lands at another position of the same file; its own range
    /// reads as zeros.
    pub misdirected_write: f64,
}

impl DiskFaults {
    pub fn any(&self) -> bool {
        self.bit_flip_read > 0.0 || self.bit_flip_write > 0.0 || self.lost_write > 0.0 || self.misdirected_write > 0.0
    }
}

/// What a disk did, for run reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    pub bytes_written: u64,
    pub fsyncs: u64,
    /// Files made durable by the kernel's writeback rather than by fsync.
    pub writebacks: u64,
    pub process_crashes: u64,
    pub power_losses: u64,
    /// Bytes that reads saw before a power loss and not after it.
    pub bytes_lost_to_power_loss: u64,
    pub bit_flips: u64,
    pub lost_writes: u64,
    pub misdirected_writes: u64,
    /// Writes refused (in part or whole) because the disk was full.
    pub full_writes: u64,
    /// Simulated time the disk's operations took (0 without a latency model).
    pub io_ns: u64,
}

impl std::ops::Add for DiskStats {
    type Output = DiskStats;
    fn add(self, o: DiskStats) -> DiskStats {
        DiskStats {
            bytes_written: self.bytes_written + o.bytes_written,
            fsyncs: self.fsyncs + o.fsyncs,
            writebacks: self.writebacks + o.writebacks,
            process_crashes: self.process_crashes + o.process_crashes,
            power_losses: self.power_losses + o.power_losses,
            bytes_lost_to_power_loss: self.bytes_lost_to_power_loss + o.bytes_lost_to_power_loss,
            bit_flips: self.bit_flips + o.bit_flips,
            lost_writes: self.lost_writes + o.lost_writes,
            misdirected_writes: self.misdirected_writes + o.misdirected_writes,
            full_writes: self.full_writes + o.full_writes,
            io_ns: self.io_ns + o.io_ns,
        }
    }
}

/// One node's disk.
pub struct Disk {
    files: BTreeMap<String, SimFile>,
    used_bytes: u64,
    /// Writes past this many bytes fail with [`StorageError::DiskFull`].
    capacity_bytes: u64,
    faults: DiskFaults,
    /// Some fault has been on since the disk was made: bytes read once may
    /// read otherwise later (a misdirected write lands on them), so reads
    /// are never pure again (`Storage::reads_are_pure`).
    faulted: bool,
    /// Unsynced writes older than this become durable on their own
    /// (Linux's `dirty_expire_centisecs`); `None`: only fsync makes data durable.
    writeback_expire_ms: Option<u64>,
    rng: ChaCha8Rng,
    stats: DiskStats,
    /// Simulated ms since the run started, as last told by the world.
    now_ms: u64,
    /// The simulator is recording what the node's files hold (for the
    /// checkers): read faults, which the node would suffer, do not apply.
    observing: bool,
    /// Service times, when the scenario gives the disk any.
    latency: Option<DiskLatency>,
}

impl Disk {
    pub fn new(rng: ChaCha8Rng) -> Disk {
        Disk {
            files: BTreeMap::new(),
            used_bytes: 0,
            capacity_bytes: MAX_DISK_BYTES,
            faults: DiskFaults::default(),
            faulted: false,
            writeback_expire_ms: None,
            rng,
            stats: DiskStats::default(),
            now_ms: 0,
            observing: false,
            latency: None,
        }
    }

    pub fn stats(&self) -> DiskStats {
        DiskStats { io_ns: self.latency.as_ref().map_or(0, DiskLatency::total_ns), ..self.stats }
    }

    /// Gives the disk service times, drawn from `rng` (its own stream, so
    /// a latency model does not move the fault draws).
    pub fn set_latency(&mut self, spec: LatencySpec, rng: ChaCha8Rng) {
        self.latency = spec.any().then(|| DiskLatency::new(spec, rng));
    }

    /// The simulated time the node's operations took since it last asked:
    /// the node sleeps it before acting on their results.
    pub fn take_busy_ns(&mut self) -> u64 {
        self.latency.as_mut().map_or(0, DiskLatency::take_busy_ns)
    }

    fn charge(&mut self, op: Op, bytes: u64) {
        if let (Some(latency), false) = (self.latency.as_mut(), self.observing) {
            latency.charge(op, bytes);
        }
    }

    /// Drops every file's bytes, keeping the counters: for a run that is
    /// over, whose disks are read no more.
    pub fn release_files(&mut self) {
        self.files = BTreeMap::new();
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn set_faults(&mut self, faults: DiskFaults) {
        self.faulted |= faults.any();
        self.faults = faults;
    }

    /// Reads return what was written, draw nothing from the fault stream
    /// and take no simulated time: no fault has ever been on and there is
    /// no latency model. Then skipping a read changes nothing.
    pub fn reads_are_pure(&self) -> bool {
        !self.faulted && self.latency.is_none()
    }

    pub fn set_writeback_expire_ms(&mut self, expire_ms: Option<u64>) {
        self.writeback_expire_ms = expire_ms;
    }

    /// Caps the disk at `capacity_bytes` (never above [`MAX_DISK_BYTES`]).
    pub fn set_capacity(&mut self, capacity_bytes: u64) {
        self.capacity_bytes = capacity_bytes.min(MAX_DISK_BYTES);
    }

    /// The disk is full from now on: no write that grows it succeeds.
    pub fn fill(&mut self) {
        self.capacity_bytes = self.used_bytes;
    }

    pub fn unfill(&mut self) {
        self.capacity_bytes = MAX_DISK_BYTES;
    }

    /// Bytes not yet durable, over every file.
    pub fn dirty_bytes(&self) -> u64 {
        self.files
            .values()
            .map(|f| match &f.durable {
                Durable::Nothing => f.data.len() as u64,
                Durable::Prefix(n) => (f.data.len() - n) as u64,
                Durable::Copy(_) => f.data.len() as u64,
            })
            .sum()
    }

    /// The process died: the page cache outlives it, so nothing changes on
    /// the disk.
    pub fn process_crash(&mut self) {
        self.stats.process_crashes += 1;
        // The dead process owes nothing: its operations died with it.
        self.take_busy_ns();
    }

    /// The power went: every file falls back to its durable part. With
    /// `torn`, a dirty file keeps a random prefix of its unsynced tail (the
    /// kernel had started writing it back), cut at an arbitrary byte.
    pub fn power_loss(&mut self, torn: bool) {
        self.stats.power_losses += 1;
        let before = self.used_bytes;
        let mut lost_files = Vec::new();
        for (name, file) in self.files.iter_mut() {
            match std::mem::replace(&mut file.durable, Durable::Nothing) {
                Durable::Nothing => lost_files.push(name.clone()),
                Durable::Prefix(n) => {
                    let unsynced = file.data.len() - n;
                    let kept = if torn && unsynced > 0 { self.rng.gen_range(0..=unsynced) } else { 0 };
                    file.data.truncate(n + kept);
                }
                Durable::Copy(bytes) => file.data = bytes,
            }
            file.sync();
        }
        for name in lost_files {
            self.files.remove(&name);
        }
        self.used_bytes = self.files.values().map(|f| f.data.len() as u64).sum();
        self.stats.bytes_lost_to_power_loss += before.saturating_sub(self.used_bytes);
    }

    /// The kernel's writeback at `now_ms`: files dirty for longer than the
    /// expiry become durable.
    pub fn writeback(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let Some(expire) = self.writeback_expire_ms else { return };
        for file in self.files.values_mut() {
            if file.dirty_since_ms.is_some_and(|since| since + expire <= now_ms) {
                file.sync();
                self.stats.writebacks += 1;
            }
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    /// Writes `data` at `position` of `file` (creating it; `position` at most
    /// its length), applying the write faults and the capacity.
    fn write_at(&mut self, name: &str, position: usize, data: &[u8]) -> Result<(), StorageError> {
        let file = self.files.get(name).map_or(0, |f| f.data.len());
        assert!(position <= file, "write at {position} past the end {file} of {name}");
        let growth = (position + data.len()).saturating_sub(file) as u64;
        let room = self.capacity_bytes.saturating_sub(self.used_bytes);
        let (data, full) = if growth > room {
            // ENOSPC after a short write: what fits reaches the file.
            let fits = data.len() - (growth - room) as usize;
            (&data[..fits], true)
        } else {
            (data, false)
        };
        self.charge(Op::Write, data.len() as u64);
        // Copied only when a fault changes what lands.
        let mut bytes = std::borrow::Cow::Borrowed(data);
        let mut target = position;
        if !bytes.is_empty() {
            if self.chance(self.faults.bit_flip_write) {
                let bit = self.rng.gen_range(0..bytes.len() * 8);
                bytes.to_mut()[bit / 8] ^= 1 << (bit % 8);
                self.stats.bit_flips += 1;
            }
            if self.chance(self.faults.lost_write) {
                bytes.to_mut().fill(0);
                self.stats.lost_writes += 1;
            } else if file > 0 && self.chance(self.faults.misdirected_write) {
                target = self.rng.gen_range(0..file);
                self.stats.misdirected_writes += 1;
            }
        }
        let now_ms = self.now_ms;
        if !self.files.contains_key(name) {
            let new = SimFile { data: Vec::new(), durable: Durable::Nothing, dirty_since_ms: None };
            self.files.insert(name.to_string(), new);
        }
        let entry = self.files.get_mut(name).expect("inserted above");
        entry.preserve_durable_before_change(position.min(target));
        let end = position + bytes.len();
        if end > entry.data.len() {
            entry.data.resize(end, 0);
        }
        if target == position {
            entry.data[position..end].copy_from_slice(&bytes);
        } else {
            // Misdirected: the intended range keeps zeros (or old bytes),
            // the bytes land over `target..`, clipped to the file.
            let land = (target + bytes.len()).min(entry.data.len()) - target;
            entry.data[target..target + land].copy_from_slice(&bytes[..land]);
        }
        entry.dirty_since_ms.get_or_insert(now_ms);
        self.used_bytes += growth.min(room);
        self.stats.bytes_written += bytes.len() as u64;
        if full {
            self.stats.full_writes += 1;
            return Err(StorageError::DiskFull { file: name.to_string() });
        }
        Ok(())
    }

    fn read_range(&mut self, name: &str, position: u64, len: u64) -> Option<Vec<u8>> {
        let file = self.files.get(name)?;
        let start = (position as usize).min(file.data.len());
        let end = position.saturating_add(len).min(file.data.len() as u64) as usize;
        let mut bytes = file.data[start..end].to_vec();
        self.charge(Op::Read, bytes.len() as u64);
        if !bytes.is_empty() && !self.observing && self.chance(self.faults.bit_flip_read) {
            let bit = self.rng.gen_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            self.stats.bit_flips += 1;
        }
        Some(bytes)
    }
}

/// The file operations, as [`SharedDisk`] offers them through [`Storage`].
impl Disk {
    pub fn append(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        let end = self.files.get(file).map_or(0, |f| f.data.len());
        self.write_at(file, end, data)
    }

    pub fn write_all(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.truncate(file, 0);
        self.write_at(file, 0, data)
    }

    pub fn read(&mut self, file: &str) -> Option<Vec<u8>> {
        self.read_range(file, 0, u64::MAX)
    }

    pub fn read_at(&mut self, file: &str, position: u64, len: u64) -> Option<Vec<u8>> {
        self.read_range(file, position, len)
    }

    pub fn len(&self, file: &str) -> Option<u64> {
        self.files.get(file).map(|f| f.data.len() as u64)
    }

    pub fn truncate(&mut self, file: &str, len: u64) {
        let now_ms = self.now_ms;
        if let Some(f) = self.files.get_mut(file) {
            let len = len as usize;
            if len < f.data.len() {
                f.preserve_durable_before_change(len);
                self.used_bytes -= (f.data.len() - len) as u64;
                f.data.truncate(len);
                if f.is_dirty() {
                    f.dirty_since_ms.get_or_insert(now_ms);
                }
            }
        }
    }

    pub fn delete(&mut self, file: &str) {
        if let Some(f) = self.files.remove(file) {
            self.used_bytes -= f.data.len() as u64;
        }
    }

    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(f) = self.files.remove(from) {
            if let Some(old) = self.files.insert(to.to_string(), f) {
                self.used_bytes -= old.data.len() as u64;
            }
        }
    }

    pub fn fsync(&mut self, file: &str) {
        if let Some(f) = self.files.get_mut(file) {
            f.sync();
            self.stats.fsyncs += 1;
            self.charge(Op::Fsync, 0);
        }
    }

    pub fn list(&self, prefix: &str) -> Vec<String> {
        broker_core::storage::names_with_prefix(&self.files, prefix)
    }
}

/// A node's disk as its incarnations share it: a restarted broker recovers
/// what its predecessor wrote (and what the page cache still held).
#[derive(Clone)]
pub struct SharedDisk(Arc<Mutex<Disk>>);

impl SharedDisk {
    pub fn new(disk: Disk) -> SharedDisk {
        SharedDisk(Arc::new(Mutex::new(disk)))
    }

    /// Runs `f` with read faults suspended: the simulator's own look at the
    /// node's files for the checkers must see the media as it is.
    pub fn observing<T>(&self, f: impl FnOnce() -> T) -> T {
        self.with(|d| d.observing = true);
        let result = f();
        self.with(|d| d.observing = false);
        result
    }

    /// Runs `f` on the disk (for the nemesis, writeback and reports).
    pub fn with<T>(&self, f: impl FnOnce(&mut Disk) -> T) -> T {
        f(&mut self.0.lock().expect("disk lock"))
    }
}

impl Storage for SharedDisk {
    fn append(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.with(|d| d.append(file, data))
    }
    fn write_all(&mut self, file: &str, data: &[u8]) -> Result<(), StorageError> {
        self.with(|d| d.write_all(file, data))
    }
    fn read(&self, file: &str) -> Option<Vec<u8>> {
        self.with(|d| d.read(file))
    }
    fn read_at(&self, file: &str, position: u64, len: u64) -> Option<Vec<u8>> {
        self.with(|d| d.read_at(file, position, len))
    }
    fn reads_are_pure(&self) -> bool {
        self.with(|d| d.reads_are_pure())
    }
    fn len(&self, file: &str) -> Option<u64> {
        self.with(|d| d.len(file))
    }
    fn truncate(&mut self, file: &str, len: u64) {
        self.with(|d| d.truncate(file, len))
    }
    fn delete(&mut self, file: &str) {
        self.with(|d| d.delete(file))
    }
    fn rename(&mut self, from: &str, to: &str) {
        self.with(|d| d.rename(from, to))
    }
    fn fsync(&mut self, file: &str) {
        self.with(|d| d.fsync(file))
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        self.with(|d| d.list(prefix))
    }
}

/// The madsim plugin holding every node's disk, keyed by madsim node id.
/// Disks are attached by the world when it builds a node that has one
/// (brokers and the controller); madsim's reset hook, run on every kill,
/// records the process crash on that node's disk.
#[derive(Default)]
pub struct DiskSim {
    disks: Mutex<BTreeMap<NodeId, SharedDisk>>,
}

impl DiskSim {
    pub fn attach(&self, node: NodeId, disk: SharedDisk) {
        self.disks.lock().expect("disks lock").insert(node, disk);
    }

    pub fn disk(&self, node: NodeId) -> Option<SharedDisk> {
        self.disks.lock().expect("disks lock").get(&node).cloned()
    }
}

impl Simulator for DiskSim {
    fn new(_rand: &madsim::rand::GlobalRng, _time: &madsim::time::TimeHandle, _config: &madsim::Config) -> Self {
        // Disks draw from ksim's own per-disk streams (rng::Purpose::Disk),
        // handed over by the world, not from madsim's global RNG.
        DiskSim::default()
    }

    fn reset_node(&self, id: NodeId) {
        if let Some(disk) = self.disk(id) {
            disk.with(Disk::process_crash);
        }
    }
}

#[cfg(test)]
mod tests;
