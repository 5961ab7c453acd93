//! The PMDK side end to end, through pmbench's own executable: a round really runs the
//! operations it was given, bad pool paths are typed errors, and `PMEM_NO_FLUSH` reaches
//! libpmem in the child (the whole reason PMDK rounds run in child processes).
#![cfg(feature = "pmdk")]

use std::path::{Path, PathBuf};

use pmbench::count::count_one;
use pmbench::harness::{run_child, ChildSpec, HarnessError, PmdkMode};
use pmbench::{Metric, WorkloadId};

fn pool(name: &str) -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("pmbench-test-{}-{name}.pool", std::process::id()))
}

fn spec(workload: WorkloadId, pool: PathBuf) -> ChildSpec {
    ChildSpec {
        workload,
        quick: true,
        ops: Some(300),
        pool,
        build: false,
        marks: false,
    }
}

// `current_exe` of an integration test is the test binary, not pmbench: point the
// harness at the real executable.
// Set once, before any test spawns a process, so no thread reads the environment while
// another writes it.
fn with_pmbench_exe<R>(f: impl FnOnce() -> R) -> R {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| std::env::set_var("PMBENCH_EXE", env!("CARGO_BIN_EXE_pmbench")));
    f()
}

#[test]
fn a_round_times_exactly_the_operations_it_was_given() {
    with_pmbench_exe(|| {
        for id in [
            WorkloadId::W1,
            WorkloadId::W4,
            WorkloadId::W5,
            WorkloadId::W7,
            WorkloadId::Mixed,
        ] {
            let p = pool(id.name());
            let r = run_child(&spec(id, p.clone()), PmdkMode::Flush).unwrap();
            assert_eq!(r.timings.len(), 1, "{id}");
            assert_eq!(r.timings[0].metric, Metric::Op);
            assert_eq!(r.timings[0].units, 300, "{id}");
            assert!(r.timings[0].ns > 0);
            assert!(!p.exists(), "{id}: the round removes its pool");
        }
    });
}

#[test]
fn recover_rolls_back_the_crashed_transaction() {
    with_pmbench_exe(|| {
        // The shim checks every byte of the object after the recovering open; a
        // failed rollback is an error, so success means the log was processed.
        let r = run_child(&spec(WorkloadId::Recover, pool("recover")), PmdkMode::Flush).unwrap();
        let metrics: Vec<Metric> = r.timings.iter().map(|t| t.metric).collect();
        assert_eq!(metrics, [Metric::RecoverOpen, Metric::CleanOpen]);
    });
}

#[test]
fn an_unusable_pool_path_is_a_typed_child_failure() {
    with_pmbench_exe(|| {
        let bad = PathBuf::from("/nonexistent-dir/x.pool");
        match run_child(&spec(WorkloadId::W1, bad), PmdkMode::Flush) {
            Err(HarnessError::Child { stderr, .. }) => {
                assert!(stderr.contains("Create"), "{stderr}");
            }
            other => panic!("expected a child failure, got {other:?}"),
        }
    });
}

#[test]
fn no_flush_reaches_libpmem_in_the_child() {
    with_pmbench_exe(|| {
        let dir = pool("count").parent().unwrap().to_path_buf();
        let flush = count_one(WorkloadId::W1, PmdkMode::Flush, 200, true, &dir).unwrap();
        let no_flush = count_one(WorkloadId::W1, PmdkMode::NoFlush, 200, true, &dir).unwrap();
        assert_eq!(flush[0].units, 200);
        assert!(flush[0].lines_flushed >= 200, "{flush:?}");
        assert!(flush[0].fences >= 200, "{flush:?}");
        assert_eq!(no_flush[0].lines_flushed, 0, "{no_flush:?}");
        assert!(
            no_flush[0].fences >= 200,
            "fences stay without flushes: {no_flush:?}"
        );
    });
}
