//! The kernel's self-tests pass under QEMU with one and with two NVDIMMs, what one boot
//! persists the next boot finds, and the verdicts can fail (a wrong seed, a bad command
//! line), so a pass means something.

mod common;

use common::args;
use pm_qemu_proto::{BootArgs, GuestExit, Suite};
use pm_qemu_runner::{boot, run_suite, BootOutcome, BootSpec, Exit, Images, Kernel, IMAGE_SIZE};
use std::time::Duration;

/// One boot on fresh single-NVDIMM images with a raw command line and a time limit.
fn boot_raw(kernel: &Kernel, raw_append: Option<&str>, timeout: Duration) -> BootOutcome {
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    boot(&BootSpec {
        kernel,
        images: &images,
        args: BootArgs::default(),
        raw_append,
        timeout,
        kill_after: None,
    })
    .unwrap()
}

#[test]
fn suite_passes_with_one_nvdimm() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    let o = run_suite(kernel, &images, args(Suite::All, 11, 1)).unwrap_or_else(|e| panic!("{e}"));
    let s = o.summary().unwrap();
    assert!(s.passed >= 15, "{}", o.serial);
    println!("one NVDIMM: {s} in {} ms", o.elapsed.as_millis());
}

#[test]
fn suite_passes_with_two_distinct_nvdimms() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(2, IMAGE_SIZE).unwrap();
    let o = run_suite(kernel, &images, args(Suite::All, 12, 2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.serial.matches("nvdimm ").count(), 2, "{}", o.serial);
    println!(
        "two NVDIMMs: {} in {} ms",
        o.summary().unwrap(),
        o.elapsed.as_millis()
    );
}

#[test]
fn nvdimm_count_mismatch_fails_the_suite() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    let o = common::expect_failed(
        run_suite(kernel, &images, args(Suite::All, 13, 2)),
        &["nvdimm_found_via_nfit"],
    );
    assert_eq!(o.exit, Exit::Guest(GuestExit::Fail));
}

#[test]
fn pattern_persisted_in_one_boot_is_found_by_the_next_and_a_wrong_seed_is_caught() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(2, IMAGE_SIZE).unwrap();
    run_suite(kernel, &images, args(Suite::Persist, 77, 2)).unwrap_or_else(|e| panic!("{e}"));
    run_suite(kernel, &images, args(Suite::Verify, 77, 2)).unwrap_or_else(|e| panic!("{e}"));
    let o = common::expect_failed(
        run_suite(kernel, &images, args(Suite::Verify, 78, 2)),
        &["seeded_pattern_survived_reboot"],
    );
    assert_eq!(o.summary().map(|s| (s.passed, s.failed)), Some((0, 1)));
    // The host sees what the guest persisted: NVDIMM 1's pattern is in image 1, not 0.
    let first_word =
        |i: usize| u64::from_le_bytes(images.read(i, 0, 8).unwrap().try_into().unwrap());
    assert_eq!(first_word(0), pm_qemu_proto::mix64(0x4d));
    assert_eq!(first_word(1), pm_qemu_proto::mix64(0x4d ^ 1 << 56));
}

#[test]
fn bad_command_line_fails_the_boot_and_names_the_word() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let o = boot_raw(kernel, Some("suite=all sed=3"), Duration::from_secs(30));
    assert_eq!(o.exit, Exit::Guest(GuestExit::Fail), "{}", o.serial);
    assert!(o.serial.contains("unknown option"), "{}", o.serial);
    assert!(o.serial.contains("\"sed=3\""), "{}", o.serial);
    assert!(o.summary().is_none());
}

#[test]
fn a_hung_boot_is_killed_at_the_wall_clock_limit() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let o = boot_raw(kernel, None, Duration::from_millis(20));
    assert_eq!(o.exit, Exit::TimedOut);
    assert!(!o.passed());
}
