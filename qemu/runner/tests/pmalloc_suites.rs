//! The pmalloc suite passes under QEMU with two NVDIMMs, and needs them (with one, the
//! two-pool test fails); a pool pattern written in one boot verifies in the next, and
//! a wrong seed fails, so the passes mean something.

mod common;

use common::args;
use pm_qemu_proto::Suite;
use pm_qemu_runner::{run_suite, Images, IMAGE_SIZE};

#[test]
fn pmalloc_suite_passes_on_raw_and_adr_media_with_two_nvdimms() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    common::suite_passes(
        kernel,
        Suite::Pmalloc,
        31,
        2,
        19,
        &[
            "two_nvdimms_hold_two_independent_pools",
            "sizes_from_1_byte_to_multi_chunk_extents_adr",
            "pool_dropped_unclosed_recovers_from_the_nvdimm_adr",
        ],
    );
}

#[test]
fn pmalloc_suite_with_one_nvdimm_fails_only_the_two_pool_test() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    common::only_the_two_nvdimm_test_fails_with_one(
        kernel,
        Suite::Pmalloc,
        32,
        "two_nvdimms_hold_two_independent_pools",
    );
}

#[test]
fn pattern_pool_created_in_one_boot_verifies_in_the_next_and_a_wrong_seed_fails() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    let images = Images::create(1, IMAGE_SIZE).unwrap();
    let created = run_suite(kernel, &images, args(Suite::PoolCreate, 33, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = run_suite(kernel, &images, args(Suite::PoolVerify, 33, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        verified
            .serial
            .contains("pool: opened (0 replayed, 0 torn)"),
        "{}",
        verified.serial
    );
    let o = common::expect_failed(
        run_suite(kernel, &images, args(Suite::PoolVerify, 34, 1)),
        &["pattern_pool_verified_on_nvdimm_0"],
    );
    assert!(o.serial.contains("pool pattern: "), "{}", o.serial);
    println!(
        "pool pair: create {} ms, verify {} ms",
        created.elapsed.as_millis(),
        verified.elapsed.as_millis()
    );
}
