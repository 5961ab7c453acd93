//! Crash consistency of atomic allocation and free (DESIGN.md invariants 3-6).
//!
//! A root object holds 16 pointer fields; the workload allocates into null fields and
//! frees non-null ones, with sizes from 16 B to multi-chunk extents. At every crash
//! point and image the recovered heap must: open; pass `check` (metadata agrees with
//! headers); show every completed op and the in-flight op entirely or not at all; hold
//! exactly the root and the objects the fields point to (no leak, no double
//! allocation); allocate and free correctly afterwards; and give the same result when
//! recovery itself is crashed and rerun.

use tests_host::explorer::Config;
use tests_host::heap_scenario::{explore_heap, explore_heap_releasing};

fn run(seed: u64, ops: usize, states: u64) {
    let cfg = Config::from_env(states, seed);
    let report = explore_heap(&cfg, ops);
    // The seed in use (`PM_CRASH_SEED` may replace the default).
    report.assert_ok(&format!("pmalloc crash seed {}", cfg.seed));
    assert!(report.states > 0);
}

#[test]
fn alloc_and_free_are_atomic_at_every_crash_point() {
    run(1, 400, 40_000);
}

#[test]
fn alloc_and_free_are_atomic_at_every_crash_point_second_seed() {
    run(0xfeed, 400, 40_000);
}

/// Empty runs go back to the free chunks at checkpoints (one entry word for a
/// single-chunk run, the chunk-free intent for a multi-chunk one): at every crash point
/// of those checkpoints and of recovery from them, no live object is lost, no chunk is
/// both free and a run's, and the chunk table, span map and headers agree.
#[test]
fn empty_runs_are_released_atomically_at_every_crash_point() {
    let cfg = Config::from_env(40_000, 7);
    let report = explore_heap_releasing(&cfg, 300, 5);
    report.assert_ok(&format!("pmalloc run release seed {}", cfg.seed));
    assert!(report.states > 0);
}
