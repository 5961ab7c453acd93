//! The heap crash-cycle workload (`pm_qemu_proto::heap`, `pm_qemu_pool::workload`):
//! boot 1 (`suite=heap`) creates a pool over the first `POOL_LEN` bytes of NVDIMM 0
//! and runs seeded atomic allocations and frees on the root's fields, printing each as
//! it returns; it is killed, or crashes itself at a fence (`crash_at=`). Boot 2
//! (`suite=heap-verify`) opens (recovers) the pool and prints what it holds; the runner
//! judges that against the ops boot 1 reported.
//!
//! `mode=direct` runs on the NVDIMM; `mode=adr` on an [`AdrMedia`] working copy, so a
//! kill loses whatever was not flushed.

use pm_qemu_pool::workload::{self, Verified, WorkloadError};
use pm_qemu_proto::heap::POOL_LEN;

use super::workload_boot;
use crate::testing::{Env, Test, TestFailure};

/// Boot 1.
pub fn writer_tests() -> &'static [Test] {
    &[Test {
        name: "heap_ops",
        run: write,
    }]
}

/// Boot 2.
pub fn verifier_tests() -> &'static [Test] {
    &[Test {
        name: "heap_recovered",
        run: verify,
    }]
}

/// Creates the pool and runs `ops=` ops, printing `heap ready` and one `heap op` line
/// per op as it returns. The heap is dropped unclosed (see `workload::write`).
fn write(env: &Env) -> Result<(), TestFailure> {
    workload_boot(env, POOL_LEN, |media, seed, ops, fences, out| {
        workload::write(media, seed, ops, fences, out).map(drop)
    })
}

/// Opens the pool and prints what recovery left (see `workload::verify`); a missing
/// pool is reported, not failed: only the runner knows whether create had finished.
fn verify(env: &Env) -> Result<(), TestFailure> {
    workload_boot(env, POOL_LEN, |media, _, _, _, out| {
        if let Verified::NoPool(e) = workload::verify(media, out)? {
            println!("heap: no valid pool: {e}");
        }
        Ok::<_, WorkloadError>(())
    })
}
