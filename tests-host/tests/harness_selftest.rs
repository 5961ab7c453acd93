//! The crash explorer's self-test (CRASH-TESTING.md, "Harness self-test"): each
//! deliberate protocol bug must be caught within a small budget. Its own test binary,
//! because the bug switch is process-wide.

use arch::sim::ImageOptions;
use tests_host::explorer::Config;
use tests_host::heap_scenario::{explore_heap, explore_heap_releasing};

/// The explorer's self-test: each deliberate protocol bug must be caught within a small
/// budget (CRASH-TESTING.md, "Harness self-test"). One test, because the bug switch is
/// process-wide.
#[test]
fn seeded_protocol_bugs_are_caught() {
    use pmalloc::seeded_bug::{set, Bug};
    for bug in [
        Bug::DropCommitFence,
        Bug::ApplyBeforeRecord,
        Bug::SkipRecordChecksum,
        Bug::IgnoreReplayGuards,
        Bug::ReleaseWithoutIntent,
        Bug::NoFenceAfterRunZeroing,
        Bug::NoFenceAfterInit,
    ] {
        set(bug);
        let mut caught = None;
        for seed in 1..=4 {
            // Replay without guards shows as non-idempotent recovery: sample crashes inside
            // recovery densely.
            let mut cfg = Config {
                only_point: None,
                recovery_stride: 4,
                ..Config::from_env(20_000, seed)
            };
            cfg.recovery_images = ImageOptions {
                exhaustive_limit: 8,
                random_lines: 2,
                random_words: 1,
                family_positions: 4,
                max_images: 4,
            };
            // Run release happens only in the releasing workload.
            let report = match bug {
                Bug::ReleaseWithoutIntent | Bug::NoFenceAfterRunZeroing => {
                    explore_heap_releasing(&cfg, 300, 5)
                }
                _ => explore_heap(&cfg, 300),
            };
            if let Some(f) = report.failure {
                caught = Some((seed, report.states, f.message));
                break;
            }
        }
        set(Bug::None);
        let (seed, states, msg) =
            caught.unwrap_or_else(|| panic!("seeded bug {bug:?} was not caught"));
        println!("seeded bug {bug:?}: caught with seed {seed} after {states} states: {msg}");
    }
}
