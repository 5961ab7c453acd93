//! Crash-reboot cycles of the log workload, direct and ADR mode: every record the
//! kernel reported committed survives a kill or a crash at a fence, no torn record is
//! accepted, and nothing survives that was not written. The crashes must land inside
//! the workload (not all before or after it), or the cycles would prove nothing.

mod common;

use pm_qemu_proto::Mode;
use pm_qemu_runner::{crash_cycles, CycleConfig, LogWorkload, KILL_WINDOW};

/// Base seed: `PM_QEMU_SEED` to replay a failure, else a fixed one per mode (kill
/// timing still varies run to run; the seed is printed either way).
fn seed(default: u64) -> u64 {
    std::env::var("PM_QEMU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn cycles(mode: Mode, default_seed: u64) {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let cfg = CycleConfig {
        seed: seed(default_seed),
        cycles: 20,
        mode,
        nvdimms: 1,
        kill_window: KILL_WINDOW,
        verbose: true,
    };
    println!("crash cycles, mode {}, base seed {}", mode.name(), cfg.seed);
    let report = crash_cycles(kernel, &LogWorkload { records: 4096 }, &cfg)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.cycles, 20);
    assert!(
        report.killed + report.fence_crashes >= 10,
        "most cycles must crash the writer: {report:?}"
    );
    println!(
        "{report:?}; mean boot {} ms",
        report.boot_time.as_millis() / u128::from(report.boots)
    );
}

#[test]
fn committed_log_records_survive_crashes_in_direct_mode() {
    cycles(Mode::Direct, 0x5eed_0001);
}

#[test]
fn committed_log_records_survive_crashes_in_adr_mode() {
    cycles(Mode::Adr, 0x5eed_0002);
}
