//! The crash explorer's self-test for the transaction runtime (CRASH-TESTING.md,
//! "Harness self-test"). Its own test binary: the bug switches are process-wide.

use tests_host::explorer::Config;

/// The same for the transaction runtime: each deliberate protocol bug (three of them are
/// bugs the explorer found in development) must be caught.
#[test]
fn seeded_transaction_bugs_are_caught() {
    use pmrt::seeded_bug::{set, Bug};
    use tests_host::tx_scenario::explore_tx;
    for bug in [
        Bug::DropCommitFence,
        Bug::HomesBeforeRecord,
        Bug::SkipRecordCheck,
        Bug::TrustStaleLive,
        Bug::UndoUnfenced,
        Bug::WriteThroughInBatch,
        Bug::RetireBeforeFence,
    ] {
        set(bug);
        let mut caught = None;
        // Fixed seeds: the run is reproducible. A torn append that keeps a stale live
        // word (TrustStaleLive) needs per-word tearing over a durable dead mask, which
        // only records coalesced from the other lane, undo records, or rounds that
        // release a freed object (their marks are made durable first) leave, as the
        // committer's own marks stay lazy. A seed's transactions change with the
        // scenario and the runtime: seeds 2 and 4 met it within 400 transactions, then
        // 3 and 4 once a quarter of them became small updates, and seed 1 since
        // write-behind retires groups.
        for seed in [1, 2, 3, 4, 6, 9, 11] {
            let mut cfg = Config::from_env(40_000, seed);
            cfg.only_point = None;
            // Torn appends (a stale live word under new words) come from per-word tearing.
            cfg.images.max_images = 96;
            cfg.images.random_words = 64;
            let report = explore_tx(&cfg, 400);
            if let Some(f) = report.failure {
                caught = Some((seed, report.states, f.message));
                break;
            }
        }
        set(Bug::None);
        let (seed, states, msg) =
            caught.unwrap_or_else(|| panic!("seeded transaction bug {bug:?} was not caught"));
        println!(
            "seeded bug {bug:?}: caught with seed {seed} after {states} states: {}",
            msg.lines().next().unwrap_or("")
        );
    }
}
