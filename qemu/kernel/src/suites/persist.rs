//! Persistence across boots: boot 1 (`suite=persist seed=S`) writes a seeded pattern
//! over every NVDIMM and persists it; boot 2 (`suite=verify seed=S`) on the same images
//! finds it. A wrong seed in boot 2 must fail (the runner checks that too).

use arch::{Media, CACHE_LINE};
use pm_qemu_proto::mix64;

use crate::nvdimm::Nvdimm;
use crate::testing::{expect_eq, Env, Test, TestFailure};

/// Boot 1.
pub fn write_tests() -> &'static [Test] {
    &[Test {
        name: "seeded_pattern_persisted",
        run: write_pattern,
    }]
}

/// Boot 2.
pub fn verify_tests() -> &'static [Test] {
    &[Test {
        name: "seeded_pattern_survived_reboot",
        run: verify_pattern,
    }]
}

/// One line every 64 KiB, and the last line.
fn lines(n: &Nvdimm) -> impl Iterator<Item = usize> {
    let len = n.len as usize;
    (0..len)
        .step_by(64 << 10)
        .chain(core::iter::once(len - CACHE_LINE))
}

/// The offset of every word of every pattern line.
fn words(n: &Nvdimm) -> impl Iterator<Item = usize> {
    lines(n).flat_map(|line| (line..line + CACHE_LINE).step_by(8))
}

fn word(seed: u64, n: &Nvdimm, off: usize) -> u64 {
    mix64(seed ^ (n.index as u64) << 56 ^ off as u64)
}

fn write_pattern(env: &Env) -> Result<(), TestFailure> {
    for n in env.nvdimms()? {
        let m = n.media();
        for off in words(n) {
            m.write_u64(off, word(env.args.seed, n, off));
        }
        for line in lines(n) {
            m.flush(line, CACHE_LINE);
        }
        m.fence();
    }
    verify_pattern(env)
}

fn verify_pattern(env: &Env) -> Result<(), TestFailure> {
    for n in env.nvdimms()? {
        let m = n.media();
        for off in words(n) {
            expect_eq(
                "pattern word",
                n.index,
                off,
                word(env.args.seed, n, off),
                m.read_u64(off),
            )?;
        }
    }
    Ok(())
}
