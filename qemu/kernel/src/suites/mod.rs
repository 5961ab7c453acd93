//! The test suites. A suite is a module with a `tests()` list; [`tests`] picks the
//! lists a boot runs.

/// Which media a suite's pool runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The NVDIMM itself, flushes and fences for real.
    Raw,
    /// A DRAM working copy of the NVDIMM's bytes, written back line by line at flushes
    /// ([`AdrMedia`](crate::adr::AdrMedia)).
    Adr,
}

/// Test entries `<name>_raw` and `<name>_adr` (both names given) running
/// `$wrap(env, kind, body)` for each body.
macro_rules! on_both {
    ($wrap:path; $($body:ident: $raw:literal, $adr:literal;)*) => {
        &[$(
            $crate::testing::Test {
                name: $raw,
                run: |env| $wrap(env, $crate::suites::Kind::Raw, $body),
            },
            $crate::testing::Test {
                name: $adr,
                run: |env| $wrap(env, $crate::suites::Kind::Adr, $body),
            },
        )*]
    };
}

/// Test entries running `$wrap(env, Kind::$kind, body)` for each body.
macro_rules! on {
    ($wrap:path, $kind:ident; $($body:ident: $name:literal;)*) => {
        &[$(
            $crate::testing::Test {
                name: $name,
                run: |env| $wrap(env, $crate::suites::Kind::$kind, $body),
            },
        )*]
    };
}

mod adr;
mod boot;
mod heap;
mod log;
mod media;
mod nvdimm;
mod persist;
mod pmalloc;
mod pmrt;
mod pool;
mod tx;

use alloc::vec::Vec;

use arch::Media;
use pm_qemu_proto::{Mode, Suite};

use crate::adr::AdrMedia;
use crate::crash::CrashAt;
use crate::testing::{Env, Test, TestFailure};

/// Runs a crash workload's boot: `body` gets the media (see
/// [`with_workload_media`]), the seed, `ops=`, the fence counter and a printer for the
/// lines it reports.
pub fn workload_boot<L: core::fmt::Display, E>(
    env: &Env,
    len: u64,
    body: impl Fn(&WorkloadMedia<'_>, u64, u32, &dyn Fn() -> u64, &mut dyn FnMut(L)) -> Result<(), E>,
) -> Result<(), TestFailure>
where
    TestFailure: From<E>,
{
    with_workload_media(env, len, &mut |media| {
        let fences = || media.fences();
        let mut print = |line: L| println!("{line}");
        Ok(body(
            media,
            env.args.seed,
            env.args.ops,
            &fences,
            &mut print,
        )?)
    })
}

/// A crash workload's media as its boots see it: behind the crash hook.
pub type WorkloadMedia<'a> = CrashAt<&'a dyn Media>;

/// Runs `f` on the first `len` bytes of NVDIMM 0 as the boot's `mode=` says (the
/// NVDIMM, or an [`AdrMedia`] copy of it, so a kill loses whatever was not flushed),
/// behind the crash hook (`crash_at=`).
fn with_workload_media(
    env: &Env,
    len: u64,
    f: &mut dyn FnMut(&WorkloadMedia<'_>) -> Result<(), TestFailure>,
) -> Result<(), TestFailure> {
    let window = env.nvdimms()?[0].window(0, len)?;
    match env.args.mode {
        Mode::Direct => f(&CrashAt::new(&window, env.args.crash_at)),
        Mode::Adr => f(&CrashAt::new(&AdrMedia::new(window)?, env.args.crash_at)),
    }
}

/// The tests `suite` runs, in order.
pub fn tests(suite: Suite) -> Vec<Test> {
    let lists: &[&[Test]] = match suite {
        Suite::All => &[boot::tests(), nvdimm::tests(), media::tests(), adr::tests()],
        Suite::Persist => &[persist::write_tests()],
        Suite::Verify => &[persist::verify_tests()],
        Suite::Log => &[log::append_tests()],
        Suite::LogVerify => &[log::verify_tests()],
        Suite::Pmalloc => &[nvdimm::tests(), pmalloc::tests()],
        Suite::PoolCreate => &[pool::create_tests()],
        Suite::PoolVerify => &[pool::verify_tests()],
        Suite::Heap => &[heap::writer_tests()],
        Suite::HeapVerify => &[heap::verifier_tests()],
        Suite::Pmrt => &[nvdimm::tests(), pmrt::tests()],
        Suite::Tx => &[tx::writer_tests()],
        Suite::TxVerify => &[tx::verifier_tests()],
    };
    lists.iter().flat_map(|l| l.iter().copied()).collect()
}
