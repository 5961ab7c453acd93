//! The runtime (`pmrt`) suite passes under QEMU with two NVDIMMs, on raw and ADR
//! media, and needs them (with one, only the two-pool test fails, so the passes mean
//! something).

mod common;

use pm_qemu_proto::Suite;

#[test]
fn pmrt_suite_passes_on_raw_and_adr_media_with_two_nvdimms() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    common::suite_passes(
        kernel,
        Suite::Pmrt,
        41,
        2,
        27,
        &[
            "delta_full_and_critical_section_log_and_persist_as_specified_adr",
            "a_large_object_is_updated_in_place_under_undo_raw",
            "coalescing_is_triggered_by_the_record_count_adr",
            "coalescing_is_triggered_by_the_record_volume_raw",
            "a_full_log_delays_transactions_and_never_fails_one_adr",
            "recovery_rolls_back_an_uncommitted_undo_at_every_fence_adr",
            "recovery_cut_at_every_fence_then_rerun_gives_the_same_state_adr",
            "hash_map_entries_survive_close_and_crash_adr",
            "two_nvdimms_hold_two_transactional_pools",
        ],
    );
}

#[test]
fn pmrt_suite_with_one_nvdimm_fails_only_the_two_pool_test() {
    let Some(kernel) = common::kernel() else {
        return;
    };
    common::only_the_two_nvdimm_test_fails_with_one(
        kernel,
        Suite::Pmrt,
        42,
        "two_nvdimms_hold_two_transactional_pools",
    );
}
