//! Crash-reboot cycles of the log workload, direct and ADR mode: every record the
//! kernel reported committed survives a kill or a crash at a fence, no torn record is
//! accepted, and nothing survives that was not written. The crashes must land inside
//! the workload (not all before or after it), or the cycles would prove nothing. And a
//! missing flush, invisible in direct mode, loses a committed record in ADR mode.

mod common;

use pm_qemu_proto::Mode;
use std::time::Duration;

use pm_qemu_proto::log::LogError;
use pm_qemu_runner::{crash_cycles, CycleConfig, CycleFailure, LogWorkload};

fn cycles(mode: Mode, default_seed: u64) {
    let Some(kernel) = common::kernel() else {
        return;
    };
    common::twenty_cycles(
        kernel,
        &LogWorkload::new(4096),
        &CycleConfig::new(default_seed, 20, mode),
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

/// A writer that leaves one committed record unflushed: in direct mode the record
/// still reaches the image (a kill keeps every store), so the check cannot see the bug;
/// in ADR mode it is lost and the check must say so. Kills are pushed past the end of
/// the workload and fence crashes fall after the record for this seed, so both runs
/// are deterministic.
#[test]
fn adr_mode_catches_a_missing_flush_that_direct_mode_cannot_see() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let workload = LogWorkload {
        records: 256,
        skip_flush: Some(4),
    };
    let cfg = |mode| CycleConfig {
        kill_window: (Duration::from_secs(20), Duration::from_secs(20)),
        ..CycleConfig::new(0x5eed_0003, 2, mode)
    };
    crash_cycles(kernel, &workload, &cfg(Mode::Direct)).unwrap_or_else(|e| panic!("{e}"));
    let err = crash_cycles(kernel, &workload, &cfg(Mode::Adr))
        .expect_err("ADR mode must lose the unflushed record");
    assert!(
        matches!(
            err.failure,
            CycleFailure::Log(LogError::Lost { valid: 4, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("survived"), "{err}");
}
