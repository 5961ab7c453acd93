//! Crash consistency of transactions in every mode and mixes of modes (DESIGN.md
//! invariants 1, 2, 4, 5); see `tests_host::tx_scenario`.

use tests_host::explorer::Config;
use tests_host::tx_scenario::explore_tx;

fn run(seed: u64, steps: usize, states: u64) {
    let mut cfg = Config::from_env(states, seed);
    // More crash points rather than more images per point.
    cfg.images.max_images = 24;
    let report = explore_tx(&cfg, steps);
    // The seed in use (`PM_CRASH_SEED` may replace the default).
    report.assert_ok(&format!("tx crash seed {}", cfg.seed));
    assert!(report.states > 0);
}

#[test]
fn transactions_are_atomic_and_durable_at_every_crash_point() {
    run(11, 400, 80_000);
}

#[test]
fn transactions_are_atomic_and_durable_at_every_crash_point_second_seed() {
    run(0x00C0_FFEE, 400, 80_000);
}

/// Redo only, on two lanes at random, dead-marks left lazy: tails pass records newer
/// than the other lane's lazy marks (see `explore_tx_cross_lane`).
#[test]
fn lanes_passing_newer_records_keep_older_groups_from_replaying() {
    let mut cfg = Config::from_env(40_000, 5);
    cfg.images.max_images = 24;
    let report = tests_host::tx_scenario::explore_tx_cross_lane(&cfg, 400);
    report.assert_ok(&format!("tx cross-lane seed {}", cfg.seed));
    assert!(report.states > 0);
}
