//! The heap crash-cycle workload (`pm_qemu_proto::heap`, `pm_qemu_pool::workload`):
//! boot 1 (`suite=heap`) creates a pool over the first `POOL_LEN` bytes of NVDIMM 0
//! and runs seeded atomic allocations and frees on the root's fields, printing each as
//! it returns; it is killed, or crashes itself at a fence (`crash_at=`). Boot 2
//! (`suite=heap-verify`) opens (recovers) the pool and prints what it holds; the runner
//! judges that against the ops boot 1 reported.
//!
//! `mode=direct` runs on the NVDIMM; `mode=adr` on an [`AdrMedia`] working copy, so a
//! kill loses whatever was not flushed.

use arch::Media;
use pm_qemu_pool::workload::{self, Verified};
use pm_qemu_proto::heap::POOL_LEN;
use pm_qemu_proto::Mode;

use crate::adr::AdrMedia;
use crate::crash::CrashAt;
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

/// The pool's media as a test sees it: behind the crash hook.
type PoolMedia<'a> = CrashAt<&'a dyn Media>;

/// Runs `f` on the pool window of NVDIMM 0, as the mode says, behind the crash hook.
fn with_pool_media(
    env: &Env,
    f: &mut dyn FnMut(&PoolMedia<'_>) -> Result<(), TestFailure>,
) -> Result<(), TestFailure> {
    let window = env.nvdimms()?[0].window(0, POOL_LEN)?;
    match env.args.mode {
        Mode::Direct => f(&CrashAt::new(&window, env.args.crash_at)),
        Mode::Adr => f(&CrashAt::new(&AdrMedia::new(window)?, env.args.crash_at)),
    }
}

/// Creates the pool and runs `ops=` ops, printing `heap ready` and one `heap op` line
/// per op as it returns. The heap is dropped unclosed (see `workload::write`).
fn write(env: &Env) -> Result<(), TestFailure> {
    with_pool_media(env, &mut |media| {
        let heap = workload::write(
            media,
            env.args.seed,
            env.args.ops,
            &|| media.fences(),
            &mut |line| println!("{line}"),
        )?;
        drop(heap);
        Ok(())
    })
}

/// Opens the pool and prints what recovery left (see `workload::verify`); a missing
/// pool is reported, not failed: only the runner knows whether create had finished.
fn verify(env: &Env) -> Result<(), TestFailure> {
    with_pool_media(env, &mut |media| {
        if let Verified::NoPool(e) = workload::verify(media, &mut |line| println!("{line}"))? {
            println!("heap: no valid pool: {e}");
        }
        Ok(())
    })
}
