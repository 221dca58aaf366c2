use super::*;
use crate::rng::{stream, Purpose};

fn disk() -> Disk {
    Disk::new(stream(1, Purpose::Disk, 0))
}

#[test]
fn process_crash_keeps_the_page_cache() {
    let mut d = disk();
    d.append("a.log", b"hello").unwrap();
    d.process_crash();
    assert_eq!(d.read("a.log"), Some(b"hello".to_vec()));
    assert_eq!(d.stats().process_crashes, 1);
}

#[test]
fn power_loss_keeps_exactly_what_was_synced() {
    let mut d = disk();
    d.append("a.log", b"durable").unwrap();
    d.fsync("a.log");
    d.append("a.log", b"-volatile").unwrap();
    d.append("new.log", b"never synced").unwrap();
    assert_eq!(d.dirty_bytes(), 9 + 12);
    d.power_loss(false);
    assert_eq!(d.read("a.log"), Some(b"durable".to_vec()));
    assert_eq!(d.read("new.log"), None, "a never-synced file is gone");
    assert_eq!(d.used_bytes(), 7);
    assert_eq!(d.stats().bytes_lost_to_power_loss, 21);
    assert_eq!(d.dirty_bytes(), 0);
}

#[test]
fn torn_power_loss_keeps_a_prefix_of_the_unsynced_tail() {
    let mut kept_lengths = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let mut d = Disk::new(stream(seed, Purpose::Disk, 0));
        d.append("a.log", b"0123").unwrap();
        d.fsync("a.log");
        d.append("a.log", b"456789").unwrap();
        d.power_loss(true);
        let got = d.read("a.log").unwrap();
        assert!(b"0123456789".starts_with(&got) && got.len() >= 4, "{got:?}");
        kept_lengths.insert(got.len());
    }
    assert!(kept_lengths.len() > 3, "tears land at different bytes: {kept_lengths:?}");
}

#[test]
fn truncate_below_the_durable_prefix_is_undone_by_power_loss() {
    let mut d = disk();
    d.append("a.log", b"abcdef").unwrap();
    d.fsync("a.log");
    d.truncate("a.log", 2);
    d.append("a.log", b"XY").unwrap();
    assert_eq!(d.read("a.log"), Some(b"abXY".to_vec()));
    d.power_loss(false);
    assert_eq!(d.read("a.log"), Some(b"abcdef".to_vec()), "the cut was never synced");
}

#[test]
fn rename_is_atomic_and_carries_the_file_durability() {
    let mut d = disk();
    d.write_all("cp", b"old").unwrap();
    d.fsync("cp");
    d.write_all("cp.tmp", b"new").unwrap();
    d.fsync("cp.tmp");
    d.rename("cp.tmp", "cp");
    d.power_loss(false);
    assert_eq!(d.read("cp"), Some(b"new".to_vec()));
    assert_eq!(d.read("cp.tmp"), None);

    // Renamed without syncing its bytes: after power loss neither the old
    // nor the new content is there (why Kafka syncs before renaming).
    d.write_all("cp.tmp", b"newer").unwrap();
    d.rename("cp.tmp", "cp");
    d.power_loss(false);
    assert_eq!(d.read("cp"), None);
}

#[test]
fn writeback_makes_old_dirty_data_durable() {
    let mut d = disk();
    d.set_writeback_expire_ms(Some(30_000));
    d.writeback(1_000);
    d.append("a.log", b"early").unwrap();
    d.writeback(20_000);
    d.append("a.log", b"-late").unwrap();
    d.writeback(30_999);
    assert_eq!(d.dirty_bytes(), 10, "not expired yet");
    d.writeback(31_000);
    assert_eq!(d.dirty_bytes(), 0, "the file's oldest dirty write expired: the file is written back");
    assert_eq!(d.stats().writebacks, 1);
    d.power_loss(false);
    assert_eq!(d.read("a.log"), Some(b"early-late".to_vec()));
}

#[test]
fn full_disk_makes_a_short_write_and_says_so() {
    let mut d = disk();
    d.set_capacity(10);
    d.append("a.log", b"0123456").unwrap();
    let err = d.append("a.log", b"789ABC").unwrap_err();
    assert_eq!(err, StorageError::DiskFull { file: "a.log".to_string() });
    assert_eq!(d.read("a.log"), Some(b"0123456789".to_vec()), "what fits reaches the file");
    assert_eq!(d.stats().full_writes, 1);
    d.unfill();
    d.append("a.log", b"X").unwrap();
    d.fill();
    assert!(d.append("a.log", b"Y").is_err());
    d.truncate("a.log", 5);
    d.append("a.log", b"Y").unwrap();
}

#[test]
fn read_bit_flip_is_transient_and_write_bit_flip_persists() {
    let mut d = disk();
    d.append("a.log", &[0u8; 64]).unwrap();
    d.set_faults(DiskFaults { bit_flip_read: 1.0, ..DiskFaults::default() });
    let flipped = d.read("a.log").unwrap();
    assert_eq!(flipped.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    d.set_faults(DiskFaults::default());
    assert_eq!(d.read("a.log"), Some(vec![0u8; 64]), "the media is intact");

    d.set_faults(DiskFaults { bit_flip_write: 1.0, ..DiskFaults::default() });
    d.append("b.log", &[0u8; 64]).unwrap();
    d.set_faults(DiskFaults::default());
    let stored = d.read("b.log").unwrap();
    assert_eq!(stored.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    assert_eq!(d.read("b.log").unwrap(), stored, "the flip is on the media");
}

#[test]
fn lost_and_misdirected_writes_leave_zeros_where_the_data_was_due() {
    let mut d = disk();
    d.set_faults(DiskFaults { lost_write: 1.0, ..DiskFaults::default() });
    d.append("a.log", b"abc").unwrap();
    assert_eq!(d.read("a.log"), Some(vec![0, 0, 0]));

    let mut d = disk();
    d.append("a.log", b"abcdefgh").unwrap();
    d.set_faults(DiskFaults { misdirected_write: 1.0, ..DiskFaults::default() });
    d.append("a.log", b"XY").unwrap();
    let got = d.read("a.log").unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(&got[8..], &[0, 0], "the intended range holds no data");
    assert_ne!(&got[..8], b"abcdefgh", "the bytes landed over older data");
    assert_eq!(d.stats().misdirected_writes, 1);
}

#[test]
fn same_seed_same_faults() {
    let run = |seed| {
        let mut d = Disk::new(stream(seed, Purpose::Disk, 3));
        d.set_faults(DiskFaults { bit_flip_write: 0.5, lost_write: 0.2, ..DiskFaults::default() });
        for i in 0..50u8 {
            d.append("a.log", &[i; 16]).unwrap();
        }
        d.read("a.log").unwrap()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

fn slow_disk() -> Disk {
    let mut d = disk();
    let fixed = |us| Some(ServiceTime { median_us: us, p99_us: us });
    let spec =
        LatencySpec { read: fixed(100), write: fixed(10), fsync: fixed(2_000), bandwidth_bytes_per_ms: Some(1_000) };
    d.set_latency(spec, stream(1, Purpose::DiskLatency, 0));
    d
}

#[test]
fn operations_cost_their_service_time_and_the_node_pays_it_once() {
    let mut d = slow_disk();
    d.append("a.log", &[7; 500]).unwrap(); // 10 us + 500 B at 1000 B/ms
    d.fsync("a.log"); // 2 ms
    d.read("a.log").unwrap(); // 100 us + 500 us
    assert_eq!(d.take_busy_ns(), 10_000 + 500_000 + 2_000_000 + 100_000 + 500_000);
    assert_eq!(d.take_busy_ns(), 0);
    assert_eq!(d.stats().io_ns, 3_110_000);
    // Directory operations are free.
    d.rename("a.log", "b.log");
    d.truncate("b.log", 10);
    d.delete("b.log");
    assert_eq!(d.take_busy_ns(), 0);
}

#[test]
fn the_simulators_own_reads_cost_the_node_nothing() {
    let shared = SharedDisk::new(slow_disk());
    shared.with(|d| d.append("a.log", b"x").unwrap());
    shared.with(|d| d.take_busy_ns());
    shared.observing(|| shared.clone().read("a.log"));
    assert_eq!(shared.with(|d| d.take_busy_ns()), 0);
}

#[test]
fn a_latency_model_does_not_move_the_fault_draws() {
    let faults = DiskFaults { bit_flip_read: 0.5, ..DiskFaults::default() };
    let reads = |mut d: Disk| {
        d.append("a.log", &[0; 64]).unwrap();
        d.set_faults(faults);
        (0..32).map(|_| d.read("a.log").unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(reads(disk()), reads(slow_disk()));
}

#[test]
fn reads_are_pure_only_on_a_disk_no_fault_ever_touched_and_without_service_times() {
    let mut d = disk();
    assert!(d.reads_are_pure(), "a plain disk");
    d.set_faults(DiskFaults { misdirected_write: 0.1, ..Default::default() });
    assert!(!d.reads_are_pure(), "a misdirected write may land on bytes already read");
    d.set_faults(DiskFaults::default());
    assert!(!d.reads_are_pure(), "what the fault did stays on the disk");
    let mut read_flips = disk();
    read_flips.set_faults(DiskFaults { bit_flip_read: 0.1, ..Default::default() });
    assert!(!read_flips.reads_are_pure());
    assert!(!slow_disk().reads_are_pure(), "a read takes simulated time");
}
