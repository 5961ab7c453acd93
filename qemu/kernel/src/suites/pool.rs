//! The seeded pool pattern across boots (`pm_qemu_pool::pattern`): boot 1
//! (`suite=pool-create seed=S`) formats all of NVDIMM 0 as a pool and writes the
//! pattern; boot 2 (`suite=pool-verify seed=S`) on the same images opens the pool and
//! verifies it. `pool-verify` also checks pools the host made in the image file, and
//! the host checks what `pool-create` made: one format everywhere. The pool covers the
//! whole NVDIMM, so NVDIMM offset `N` is pool offset `N` is image file offset `N`.

use arch::Media;
use pm_qemu_pool::pattern::PoolPattern;

use crate::testing::{Env, Test, TestFailure};

/// Boot 1.
pub fn create_tests() -> &'static [Test] {
    &[Test {
        name: "pattern_pool_created_on_nvdimm_0",
        run: create,
    }]
}

/// Boot 2.
pub fn verify_tests() -> &'static [Test] {
    &[Test {
        name: "pattern_pool_verified_on_nvdimm_0",
        run: verify,
    }]
}

/// Creates the pool, writes the pattern, closes, and verifies it once in this boot.
fn create(env: &Env) -> Result<(), TestFailure> {
    let nv = &env.nvdimms()?[0];
    let pattern = PoolPattern::new(env.args.seed);
    let media = pattern.create(nv.media())?.close();
    println!(
        "pool: {} bytes on NVDIMM 0, pattern seed {:#x}",
        media.len(),
        env.args.seed
    );
    let (heap, _, summary) = pattern.open_and_verify(media)?;
    heap.close();
    println!("pool: {summary}");
    Ok(())
}

/// Opens the pool (recovering it if it was left unclosed) and verifies the pattern.
fn verify(env: &Env) -> Result<(), TestFailure> {
    let nv = &env.nvdimms()?[0];
    let (heap, report, summary) = PoolPattern::new(env.args.seed).open_and_verify(nv.media())?;
    println!(
        "pool: opened ({} replayed, {} torn); {summary}",
        report.replayed, report.torn
    );
    heap.close();
    Ok(())
}
