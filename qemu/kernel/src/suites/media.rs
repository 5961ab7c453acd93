//! `RawMedia` on every NVDIMM: what is written reads back, at any alignment and across
//! the whole mapped range, and the counters count what was done.

use arch::{Counters, Media, RawMedia};
use pm_qemu_proto::mix64;

use crate::nvdimm::Nvdimm;
use crate::testing::{expect_counters, expect_eq, Env, Test, TestFailure};

/// The suite.
pub fn tests() -> &'static [Test] {
    &[
        Test {
            name: "raw_patterns_read_back_over_whole_range",
            run: patterns_over_whole_range,
        },
        Test {
            name: "raw_unaligned_writes_read_back",
            run: unaligned,
        },
        Test {
            name: "raw_words_are_little_endian",
            run: little_endian,
        },
        Test {
            name: "raw_nt_write_then_fence_reads_back",
            run: nt_write,
        },
        Test {
            name: "raw_flushes_and_fences_are_counted",
            run: counters,
        },
    ]
}

/// Runs `f` on each NVDIMM's whole-range media.
fn each(
    env: &Env,
    f: impl Fn(&Nvdimm, &RawMedia) -> Result<(), TestFailure>,
) -> Result<(), TestFailure> {
    for n in env.nvdimms()? {
        f(n, &n.media())?;
    }
    Ok(())
}

fn byte_pattern(seed: u64, i: usize) -> u8 {
    mix64(seed ^ i as u64) as u8
}

/// Compares `len` bytes at `off` with the pattern of `seed`.
fn check_bytes(
    n: &Nvdimm,
    m: &RawMedia,
    off: usize,
    len: usize,
    seed: u64,
) -> Result<(), TestFailure> {
    let mut buf = [0u8; 512];
    m.read(off, &mut buf[..len]);
    for (i, &b) in buf[..len].iter().enumerate() {
        expect_eq(
            "bytes",
            n.index,
            off + i,
            u64::from(byte_pattern(seed, i)),
            u64::from(b),
        )?;
    }
    Ok(())
}

/// One word in the middle of every 64 KiB over the whole NVDIMM (32 per 2 MiB page: the
/// mapping's unit), plus whole lines straddling each 2 MiB page boundary: catches a
/// partial mapping and address aliasing. Not every 4 KiB: each first touch of a page
/// costs QEMU a page fault on the image file, and that would dominate the boot.
fn patterns_over_whole_range(env: &Env) -> Result<(), TestFailure> {
    const STRIDE: usize = 64 << 10;
    const PAGE: usize = 2 << 20;
    each(env, |n, m| {
        let word = |off: usize| mix64(env.args.seed ^ (n.index as u64) << 48 ^ off as u64);
        let words = (STRIDE / 2..m.len()).step_by(STRIDE);
        for off in words.clone() {
            m.write_u64(off, word(off));
            m.flush(off, 8);
        }
        m.fence();
        let seed = env.args.seed ^ 0x5a;
        let straddles = (PAGE..m.len()).step_by(PAGE).map(|b| b - 32);
        for off in straddles.clone() {
            let data: [u8; 64] = core::array::from_fn(|i| byte_pattern(seed, i));
            m.write(off, &data);
            m.persist(off, data.len());
        }
        for off in words {
            // The straddling lines (32 bytes either side of a 2 MiB boundary) overwrite
            // no stride word (those sit mid-page).
            expect_eq("stride word", n.index, off, word(off), m.read_u64(off))?;
        }
        for off in straddles {
            check_bytes(n, m, off, 64, seed)?;
        }
        Ok(())
    })
}

/// Copies starting and ending at every alignment read back exactly, and leave their
/// neighbours alone.
fn unaligned(env: &Env) -> Result<(), TestFailure> {
    each(env, |n, m| {
        let len = 200;
        let data: [u8; 200] = core::array::from_fn(|i| byte_pattern(env.args.seed, i));
        for off in [1, 3, 7, 9, 63, 65, 4095, m.len() - len - 3] {
            m.write(off - 1, &[0xee]);
            m.write(off + len, &[0xee]);
            m.write(off, &data);
            m.persist(off - 1, len + 2);
            check_bytes(n, m, off, len, env.args.seed)?;
            let mut guard = [0u8; 1];
            for g in [off - 1, off + len] {
                m.read(g, &mut guard);
                expect_eq("guard byte", n.index, g, 0xee, u64::from(guard[0]))?;
            }
        }
        Ok(())
    })
}

/// `write_u64` stores little-endian and `read_u64` reads it back atomically.
fn little_endian(env: &Env) -> Result<(), TestFailure> {
    each(env, |n, m| {
        let off = 4096 + 8;
        let v = 0x0102_0304_0506_0708 ^ env.args.seed;
        m.write_u64(off, v);
        m.persist(off, 8);
        let mut b = [0u8; 8];
        m.read(off, &mut b);
        expect_eq("word bytes", n.index, off, v, u64::from_le_bytes(b))?;
        m.write(off + 8, &v.to_le_bytes());
        expect_eq("word read", n.index, off + 8, v, m.read_u64(off + 8))
    })
}

/// A non-temporal copy (unaligned head and tail) plus a fence reads back, and counts
/// its aligned words as non-temporal bytes.
fn nt_write(env: &Env) -> Result<(), TestFailure> {
    each(env, |n, m| {
        let seed = env.args.seed ^ 0x77;
        let data: [u8; 300] = core::array::from_fn(|i| byte_pattern(seed, i));
        let before = m.counters();
        m.write_nt(8192 + 3, &data);
        m.fence();
        let d = m.counters().since(&before);
        check_bytes(n, m, 8192 + 3, data.len(), seed)?;
        // 5 head bytes to alignment, 36 words, 7 tail bytes; the head and tail lines
        // are flushed normally.
        expect_counters(
            Counters {
                lines_flushed: 2,
                fences: 1,
                nt_bytes: 36 * 8,
                bytes_written: 300,
            },
            d,
        )
    })
}

/// Flushes count every overlapping line, fences count once each.
fn counters(env: &Env) -> Result<(), TestFailure> {
    each(env, |_, m| {
        let before = m.counters();
        m.write(60, &[1; 8]);
        m.flush(60, 8); // lines 0 and 1
        m.flush(128, 64); // line 2
        m.fence();
        m.persist(4096, 4096); // 64 lines, 1 fence
        expect_counters(
            Counters {
                lines_flushed: 67,
                fences: 2,
                nt_bytes: 0,
                bytes_written: 8,
            },
            m.counters().since(&before),
        )
    })
}
