//! Shared by the QEMU integration tests: skip without QEMU, build the kernel once, and
//! the helpers most test files use (each test crate uses only some of them, hence the
//! `dead_code` allowance).
#![allow(dead_code)]

use pm_qemu_proto::{BootArgs, Suite};
use pm_qemu_runner::{
    crash_cycles, qemu_available, qemu_program, BootOutcome, CycleConfig, CyclesReport, Kernel,
    SuiteError, Workload,
};

/// The kernel, or `None` (with the reason printed) when QEMU is not installed. CI
/// installs QEMU (`.ci/run`, `cargo xtask setup`), so there these tests always run.
/// A failed kernel build fails the test.
pub fn kernel() -> Option<&'static Kernel> {
    if !qemu_available() {
        println!(
            "skipping: {} not found (apt-get install -y qemu-system-x86)",
            qemu_program()
        );
        return None;
    }
    match Kernel::shared() {
        Ok(k) => Some(k),
        Err(e) => panic!("{e}"),
    }
}

/// Boot arguments for `suite` with `seed`, demanding `nvdimms` NVDIMMs.
pub fn args(suite: Suite, seed: u64, nvdimms: u32) -> BootArgs {
    BootArgs {
        suite,
        seed,
        nvdimms: Some(nvdimms),
        ..BootArgs::default()
    }
}

/// The outcome of a suite that must have failed exactly the tests `failed`.
pub fn expect_failed(result: Result<BootOutcome, SuiteError>, failed: &[&str]) -> BootOutcome {
    match result {
        Err(SuiteError::Failed(o)) => {
            assert_eq!(o.failed_tests(), failed, "{}", o.serial);
            *o
        }
        other => panic!("expected {failed:?} to fail, got {other:?}"),
    }
}

/// Base seed of a run of cycles: `PM_QEMU_SEED` to replay a failure, else `default`
/// (kill timing still varies run to run; the seed is printed either way).
pub fn seed(default: u64) -> u64 {
    std::env::var("PM_QEMU_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs 20 cycles of `workload` in `cfg`'s mode and demands that all pass and that at
/// least half crashed the writer mid-workload (else the cycles prove little).
pub fn twenty_cycles<W: Workload>(
    kernel: &Kernel,
    workload: &W,
    cfg: &CycleConfig,
) -> CyclesReport {
    let cfg = CycleConfig {
        cycles: 20,
        seed: seed(cfg.seed),
        ..cfg.clone()
    };
    println!(
        "{} crash cycles, mode {}, base seed {}",
        workload.name(),
        cfg.mode.name(),
        cfg.seed
    );
    let report = crash_cycles(kernel, workload, &cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.cycles, 20);
    assert!(
        report.killed + report.fence_crashes >= 10,
        "most cycles must crash the writer: {report:?}"
    );
    println!("{report}");
    report
}
