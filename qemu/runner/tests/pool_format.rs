//! One pool format everywhere: a pool the kernel makes on an emulated NVDIMM opens on
//! the host from the image file (with `pmalloc` and with `pmpool check`), and a pool
//! the host makes in the image file (closed, or left with op records to replay) opens
//! and verifies in the kernel. NVDIMM address `base + N` is file offset `N`, and the
//! pool covers the whole NVDIMM, so pool offsets are file offsets.

mod common;

use std::path::Path;

use arch::{FileMedia, FileOptions};
use clap::Parser as _;
use pm_qemu_pool::pattern::{PoolPattern, FIELDS};
use pm_qemu_proto::Suite;
use pm_qemu_runner::{run_suite, Images, IMAGE_SIZE};

fn args(suite: Suite, seed: u64) -> pm_qemu_proto::BootArgs {
    common::args(suite, seed, 1)
}

fn image_media(path: &Path) -> FileMedia {
    FileMedia::open(path, FileOptions::default()).unwrap()
}

/// `pmpool <words>` through the library; (outcome, report).
fn pmpool(words: &[&str]) -> (pmpool::Outcome, String) {
    let cli = pmpool::Cli::parse_from(std::iter::once("pmpool").chain(words.iter().copied()));
    let mut out = Vec::new();
    let outcome = pmpool::run(&cli, &mut out).unwrap_or_else(|e| panic!("{e}"));
    (outcome, String::from_utf8(out).unwrap())
}

#[test]
fn a_pool_made_in_qemu_opens_and_verifies_on_the_host() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    run_suite(kernel, &images, args(Suite::PoolCreate, 41)).unwrap_or_else(|e| panic!("{e}"));
    let image = images.paths()[0].to_str().unwrap();
    let (outcome, report) = pmpool(&["check", image]);
    assert_eq!(outcome, pmpool::Outcome::Clean, "{report}");
    let (_, objects) = pmpool(&["objects", image]);
    let pattern = PoolPattern::new(41);
    let (heap, open, summary) = pattern
        .open_and_verify(image_media(&images.paths()[0]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((open.replayed, open.torn), (0, 0));
    assert_eq!(
        heap.layout().pool_size as u64,
        IMAGE_SIZE,
        "the pool is the NVDIMM"
    );
    assert!(summary.live > 0 && summary.live < FIELDS, "{summary}");
    assert!(
        objects.contains(&format!("{} objects", summary.live + 1)),
        "{objects}"
    );
    // And a wrong seed is caught on the host too.
    assert!(PoolPattern::new(42).verify(&heap).is_err());
}

#[test]
fn a_pool_made_on_the_host_verifies_in_qemu_and_a_wrong_seed_fails() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    let heap = PoolPattern::new(43)
        .create(image_media(&images.paths()[0]))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(heap.close());
    let o =
        run_suite(kernel, &images, args(Suite::PoolVerify, 43)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        o.serial.contains("pool: opened (0 replayed"),
        "{}",
        o.serial
    );
    common::expect_failed(
        run_suite(kernel, &images, args(Suite::PoolVerify, 44)),
        &["pattern_pool_verified_on_nvdimm_0"],
    );
}

#[test]
fn op_records_a_host_pool_left_are_replayed_by_the_kernel() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    // Dropped without close: the last ops live only in their op records.
    drop(
        PoolPattern::new(45)
            .create(image_media(&images.paths()[0]))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let (_, report) = pmpool(&["check", images.paths()[0].to_str().unwrap()]);
    assert!(!report.contains(" 0 replayed"), "{report}");
    let o =
        run_suite(kernel, &images, args(Suite::PoolVerify, 45)).unwrap_or_else(|e| panic!("{e}"));
    let line = o
        .serial
        .lines()
        .find(|l| l.starts_with("pool: opened ("))
        .unwrap_or_else(|| panic!("{}", o.serial));
    assert!(!line.starts_with("pool: opened (0 replayed"), "{line}");
}
