//! The broker's checkpoint files across restarts: the high watermark comes
//! back (capped at what the log kept), the recovery point spares the next
//! boot its validation, files are written only when they change, and a
//! garbled file, a failed write or a corrupt read are handled.

use super::durability_tests::{drain, produce, start, T0};
use super::*;
use crate::log::EpochCheckpointOutcome;
use crate::protocol::{FetchPartition, Isolation};
use crate::storage::SharedMemStorage;
use crate::storage::TestDisk;
use std::cell::Cell;
use std::rc::Rc;

const SEGMENT: &str = "t0-0/00000000000000000000.log";

fn hw(b: &Broker) -> Offset {
    b.replica_state(T0).expect("a replica").high_watermark
}

fn text(disk: &SharedMemStorage, file: &str) -> Option<String> {
    disk.read(file).map(|bytes| String::from_utf8(bytes).expect("text"))
}

fn stats(b: &Broker) -> RecoveryStats {
    b.recovery_stats().find(|(tp, _)| *tp == T0).expect("a replica").1
}

/// Fires the broker's timers at `now_ms`; returns what it output.
fn tick(b: &mut Broker, now_ms: u64) -> Vec<BrokerOutput> {
    b.handle_timeout(now_ms);
    drain(b)
}

fn halt_reason(outputs: &[BrokerOutput]) -> Option<&str> {
    outputs.iter().find_map(|o| if let BrokerOutput::Halt { reason } = o { Some(reason.as_str()) } else { None })
}

#[test]
fn the_hw_checkpoint_restores_the_hw_after_a_restart() {
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 1_000);
    assert_eq!(produce(&mut b, 1_000, &[1, 2, 3]).error, None);
    assert_eq!(hw(&b), Offset(3), "a lone replica commits at once");
    assert!(b.next_timeout_ms().is_some_and(|t| t <= 6_000), "the HW checkpoint is due at 6,000");
    tick(&mut b, 5_999);
    assert_eq!(text(&disk, HIGH_WATERMARK_CHECKPOINT_FILE), None);
    tick(&mut b, 6_000);
    assert_eq!(text(&disk, HIGH_WATERMARK_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 3\n"));
    // A process crash: the page cache survives, and so does the HW.
    drop(b);
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 10_000);
    assert_eq!(hw(&b), Offset(3));
    let became = std::iter::from_fn(|| b.poll_event()).find(|e| matches!(e, BrokerEvent::BecameLeader { .. }));
    assert!(
        matches!(became, Some(BrokerEvent::BecameLeader { high_watermark: Offset(3), log_end: Offset(3), .. })),
        "{became:?}"
    );
    // A power loss takes the unflushed records: the HW comes back capped at the log end.
    b.flush_all();
    assert_eq!(produce(&mut b, 10_000, &[4, 5]).error, None);
    tick(&mut b, 15_000);
    assert_eq!(text(&disk, HIGH_WATERMARK_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 5\n"));
    drop(b);
    disk.power_loss();
    let b = start(Box::new(disk.clone()), FlushPolicy::Never, 20_000);
    assert_eq!(b.log_end_offsets().next(), Some((T0, Offset(3))));
    assert_eq!(hw(&b), Offset(3), "min(checkpointed 5, log end 3)");
}

#[test]
fn checkpoint_files_are_written_only_when_they_change() {
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 0);
    assert_eq!(produce(&mut b, 0, &[1, 2]).error, None);
    tick(&mut b, 5_000);
    let fsyncs = disk.fsyncs();
    for now_ms in (10_000..=55_000).step_by(5_000) {
        tick(&mut b, now_ms);
    }
    assert_eq!(disk.fsyncs(), fsyncs, "the HW stood still: no rewrite");
    assert_eq!(produce(&mut b, 55_000, &[3]).error, None);
    tick(&mut b, 60_000);
    assert_eq!(text(&disk, HIGH_WATERMARK_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 3\n"));
    // The recovery point (nothing flushed: the log start) first goes out at 60,000.
    assert_eq!(text(&disk, RECOVERY_POINT_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 0\n"));
    assert_eq!(disk.fsyncs(), fsyncs + 2, "one write of each file");
    tick(&mut b, 120_000);
    assert_eq!(disk.fsyncs(), fsyncs + 2, "neither changed");
    b.flush_all();
    tick(&mut b, 180_000);
    assert_eq!(text(&disk, RECOVERY_POINT_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 3\n"));
}

#[test]
fn a_clean_shutdown_checkpoints_and_the_restart_validates_nothing() {
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 0);
    for i in 0..5 {
        assert_eq!(produce(&mut b, i, &[i, i + 1]).error, None);
    }
    b.shutdown();
    assert_eq!(b.halted(), Some("controlled shutdown"));
    assert_eq!(text(&disk, RECOVERY_POINT_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 10\n"));
    assert_eq!(text(&disk, HIGH_WATERMARK_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 10\n"));
    assert!(disk.read(CLEAN_SHUTDOWN_FILE).is_some());
    drop(b);
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 1_000);
    assert!(b.clean_shutdown());
    let recovered = stats(&b);
    assert_eq!((recovered.segments_validated, recovered.bytes_validated), (0, 0), "{recovered:?}");
    assert_eq!(recovered.bytes_walked, disk.len(SEGMENT).expect("segment"));
    assert_eq!(hw(&b), Offset(10));
    // After a clean shutdown everything is durable: the recovery point stays at the end.
    let fsyncs = disk.fsyncs();
    tick(&mut b, 61_000);
    assert_eq!(disk.fsyncs(), fsyncs, "both checkpoints still hold");
    // A crash now (no marker): the point still vouches for the whole log.
    drop(b);
    let b = start(Box::new(disk.clone()), FlushPolicy::Never, 70_000);
    assert!(!b.clean_shutdown());
    assert_eq!(stats(&b).segments_validated, 0);
    // Without the recovery-point file, everything is validated again.
    drop(b);
    disk.clone().delete(RECOVERY_POINT_CHECKPOINT_FILE);
    let b = start(Box::new(disk.clone()), FlushPolicy::Never, 80_000);
    assert_eq!((stats(&b).segments_walked, stats(&b).segments_validated), (0, 1));
}

#[test]
fn garbled_checkpoint_files_are_ignored_and_rewritten() {
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 0);
    assert_eq!(produce(&mut b, 0, &[1, 2]).error, None);
    b.shutdown();
    drop(b);
    let mut files = disk.clone();
    files.write_all(HIGH_WATERMARK_CHECKPOINT_FILE, b"0\n1\nt0 0 x\n").expect("storage");
    files.write_all(RECOVERY_POINT_CHECKPOINT_FILE, b"\xff\xfe garbage").expect("storage");
    files.write_all("t0-0/leader-epoch-checkpoint", b"0\n9\n").expect("storage");
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 1_000);
    assert_eq!(hw(&b), Offset(2), "the lone replica recommits; the checkpoint said nothing");
    let recovered = stats(&b);
    assert_eq!((recovered.segments_walked, recovered.segments_validated), (0, 1), "no recovery point");
    assert_eq!(recovered.epoch_checkpoint, EpochCheckpointOutcome::Garbled);
    assert_eq!(text(&disk, "t0-0/leader-epoch-checkpoint").as_deref(), Some("0\n1\n0 0\n"), "rewritten at open");
    tick(&mut b, 61_000);
    assert_eq!(text(&disk, HIGH_WATERMARK_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 2\n"));
    assert_eq!(text(&disk, RECOVERY_POINT_CHECKPOINT_FILE).as_deref(), Some("0\n1\nt0 0 2\n"));
}

#[test]
fn a_failed_checkpoint_write_halts_the_broker() {
    let disk = SharedMemStorage::default();
    let room = Rc::new(Cell::new(None));
    let mut b = start(Box::new(TestDisk { room: room.clone(), ..TestDisk::new(disk.clone()) }), FlushPolicy::Never, 0);
    assert_eq!(produce(&mut b, 0, &[1, 2]).error, None);
    room.set(Some(3));
    let outputs = tick(&mut b, 5_000);
    let reason = halt_reason(&outputs).expect("halted");
    assert!(reason.contains(HIGH_WATERMARK_CHECKPOINT_FILE) && reason.contains("no space"), "{reason}");
    assert_eq!(b.halted(), Some(reason));
    assert_eq!(disk.read(HIGH_WATERMARK_CHECKPOINT_FILE), None, "the old file (none) stands");
    // A controlled shutdown whose checkpoints cannot be written leaves no marker.
    let disk = SharedMemStorage::default();
    let room = Rc::new(Cell::new(None));
    let mut b = start(Box::new(TestDisk { room: room.clone(), ..TestDisk::new(disk.clone()) }), FlushPolicy::Never, 0);
    assert_eq!(produce(&mut b, 0, &[1, 2]).error, None);
    room.set(Some(0));
    b.shutdown();
    assert!(b.halted().is_some_and(|r| r.contains("controlled shutdown failed")), "{:?}", b.halted());
    assert_eq!(disk.read(CLEAN_SHUTDOWN_FILE), None);
}

#[test]
fn a_corrupt_read_drops_the_recovery_point_so_the_next_boot_validates() {
    let disk = SharedMemStorage::default();
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 0);
    assert_eq!(produce(&mut b, 0, &[1, 2]).error, None);
    assert_eq!(produce(&mut b, 1, &[3]).error, None);
    b.shutdown();
    drop(b);
    // A bit of the first record rots on the platter.
    let mut files = disk.clone();
    let mut bytes = files.read(SEGMENT).expect("segment");
    bytes[64] ^= 0x04;
    files.write_all(SEGMENT, &bytes).expect("storage");
    let mut b = start(Box::new(disk.clone()), FlushPolicy::Never, 1_000);
    assert_eq!(stats(&b).segments_validated, 0, "trusted after a clean shutdown");
    assert_eq!(b.log_end_offsets().next(), Some((T0, Offset(3))), "the damage is not found at boot");
    let partition = FetchPartition {
        tp: T0,
        fetch_offset: Offset(0),
        partition_max_bytes: 1 << 20,
        current_leader_epoch: LeaderEpoch::NONE,
    };
    let fetch = Request::Fetch {
        replica: None,
        isolation: Isolation::ReadUncommitted,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![partition],
    };
    b.handle_request(1_000, 1, 7, fetch);
    let outputs = drain(&mut b);
    assert!(halt_reason(&outputs).is_some_and(|r| r.contains("corrupt")), "{outputs:?}");
    for output in &outputs {
        if let BrokerOutput::Respond { response: Response::Fetch { partitions }, .. } = output {
            assert!(partitions.iter().all(|p| p.records.is_empty()), "nothing damaged is served");
        }
    }
    assert_eq!(disk.read(RECOVERY_POINT_CHECKPOINT_FILE), None, "the recovery point went with the halt");
    drop(b);
    let b = start(Box::new(disk.clone()), FlushPolicy::Never, 2_000);
    assert_eq!(stats(&b).segments_validated, 1);
    assert_eq!(b.log_end_offsets().next(), Some((T0, Offset(0))), "the next boot cuts at the damage");
    assert_eq!(hw(&b), Offset(0));
}
