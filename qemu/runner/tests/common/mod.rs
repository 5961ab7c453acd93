//! Shared by the QEMU integration tests: skip without QEMU, build the kernel once, and
//! the helpers most test files use (each test crate uses only some of them, hence the
//! `dead_code` allowance).
#![allow(dead_code)]

use pm_qemu_proto::{BootArgs, Mode, Suite};
use pm_qemu_runner::{
    crash_cycles, qemu_available, qemu_program, run_suite, BootOutcome, CycleConfig, CyclesReport,
    Images, Kernel, SuiteError, Workload, IMAGE_SIZE,
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

/// Boots `suite` on `nvdimms` fresh images and demands a pass with at least `min`
/// tests, each of `names` among them.
pub fn suite_passes(
    kernel: &Kernel,
    suite: Suite,
    seed: u64,
    nvdimms: u32,
    min: u32,
    names: &[&str],
) -> BootOutcome {
    let images = Images::create(nvdimms as usize, IMAGE_SIZE).unwrap();
    let o =
        run_suite(kernel, &images, args(suite, seed, nvdimms)).unwrap_or_else(|e| panic!("{e}"));
    let s = o.summary().unwrap();
    assert!(s.passed >= min, "{}", o.serial);
    for name in names {
        assert!(o.serial.contains(&format!("test {name} ... ok")), "{name}");
    }
    println!(
        "{} suite: {s} in {} ms",
        suite.name(),
        o.elapsed.as_millis()
    );
    o
}

/// Boots a suite that needs two NVDIMMs with one: only `test` (its two-NVDIMM test)
/// may fail, and it must say why.
pub fn only_the_two_nvdimm_test_fails_with_one(
    kernel: &Kernel,
    suite: Suite,
    seed: u64,
    test: &str,
) {
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    let o = expect_failed(run_suite(kernel, &images, args(suite, seed, 1)), &[test]);
    assert!(
        o.serial.contains("expected 2 NVDIMMs, found 1"),
        "{}",
        o.serial
    );
}

/// [`twenty_cycles`] of `workload` in `mode` from `default_seed` (or `PM_QEMU_SEED`),
/// kills in the workload's own window; nothing without QEMU.
pub fn twenty_cycles_of<W: Workload>(workload: &W, mode: Mode, default_seed: u64) {
    let Some(kernel) = kernel() else {
        return;
    };
    let cfg = CycleConfig::of(workload, default_seed, 20, mode);
    twenty_cycles(kernel, workload, &cfg);
}
