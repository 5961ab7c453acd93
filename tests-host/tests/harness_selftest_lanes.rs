//! The crash explorer's self-test for tail moves across lanes (CRASH-TESTING.md,
//! "Harness self-test"). Its own test binary: the bug switches are process-wide.

use tests_host::explorer::Config;

/// A tail that passes records newer than another lane's lazy dead-marks without
/// holding back or flushing them: only the cross-lane scenario leaves marks lazy long
/// enough (the main one's frees and in-place writes make them durable first).
#[test]
fn a_tail_passing_over_lazy_marks_is_caught() {
    use pmrt::seeded_bug::{set, Bug};
    use tests_host::tx_scenario::explore_tx_cross_lane;
    set(Bug::PassOverLazyMarks);
    let mut caught = None;
    for seed in [5, 6, 7] {
        let mut cfg = Config::from_env(40_000, seed);
        cfg.only_point = None;
        let report = explore_tx_cross_lane(&cfg, 400);
        if let Some(f) = report.failure {
            caught = Some((seed, report.states, f.message));
            break;
        }
    }
    set(Bug::None);
    let (seed, states, msg) = caught.expect("seeded bug PassOverLazyMarks was not caught");
    println!(
        "seeded bug PassOverLazyMarks: caught with seed {seed} after {states} states: {}",
        msg.lines().next().unwrap_or("")
    );
}
