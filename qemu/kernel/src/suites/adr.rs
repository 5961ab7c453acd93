//! `AdrMedia`: only flushed lines reach the NVDIMM, the working copy starts as the
//! NVDIMM's contents, and the crash hook counts fences.

use arch::{Counters, Media, RawMedia, CACHE_LINE};
use pm_qemu_proto::mix64;

use crate::adr::AdrMedia;
use crate::crash::CrashAt;
use crate::testing::{expect_counters, expect_eq, Env, Test, TestFailure};

/// The suite.
pub fn tests() -> &'static [Test] {
    &[
        Test {
            name: "adr_working_copy_starts_as_nvdimm_contents",
            run: loads_contents,
        },
        Test {
            name: "adr_flush_writes_back_only_flushed_lines",
            run: flush_writes_back_only_flushed,
        },
        Test {
            name: "adr_nt_write_reaches_nvdimm_without_flush",
            run: nt_reaches_nvdimm,
        },
        Test {
            name: "adr_flushes_and_fences_are_counted",
            run: counts,
        },
        Test {
            name: "crash_hook_counts_fences_and_passes_them_on",
            run: crash_hook_counts,
        },
    ]
}

/// Bytes of NVDIMM 0 the tests use (from offset 0).
const WINDOW: u64 = 64 << 10;

/// Two views of the start of NVDIMM 0: the raw NVDIMM (to look behind the working
/// copy) and the one the `AdrMedia` gets.
fn views(env: &Env) -> Result<(RawMedia, RawMedia), TestFailure> {
    let nv = &env.nvdimms()?[0];
    Ok((nv.window(0, WINDOW)?, nv.window(0, WINDOW)?))
}

fn word(env: &Env, salt: u64, off: usize) -> u64 {
    mix64(env.args.seed ^ salt << 40 ^ off as u64)
}

/// Words of a known pattern on the NVDIMM appear in a new working copy.
fn loads_contents(env: &Env) -> Result<(), TestFailure> {
    let (raw, backing) = views(env)?;
    for off in (0..raw.len()).step_by(8) {
        raw.write_u64(off, word(env, 1, off));
    }
    raw.persist(0, raw.len());
    let adr = AdrMedia::new(backing)?;
    for off in (0..adr.len()).step_by(8) {
        expect_eq("loaded word", 0, off, word(env, 1, off), adr.read_u64(off))?;
    }
    Ok(())
}

/// Four written lines, two flushed: the NVDIMM holds exactly the two flushed ones,
/// the working copy all four. A kill now would lose lines 0 and 3.
fn flush_writes_back_only_flushed(env: &Env) -> Result<(), TestFailure> {
    let (raw, backing) = views(env)?;
    raw.fill(0, 4 * CACHE_LINE, 0);
    raw.persist(0, 4 * CACHE_LINE);
    let adr = AdrMedia::new(backing)?;
    for off in (0..4 * CACHE_LINE).step_by(8) {
        adr.write_u64(off, word(env, 2, off));
    }
    adr.flush(CACHE_LINE + 10, CACHE_LINE); // lines 1 and 2
    adr.fence();
    for off in (0..4 * CACHE_LINE).step_by(8) {
        let line = off / CACHE_LINE;
        let on_nvdimm = if line == 1 || line == 2 {
            word(env, 2, off)
        } else {
            0
        };
        expect_eq("NVDIMM word", 0, off, on_nvdimm, raw.read_u64(off))?;
        expect_eq(
            "working copy word",
            0,
            off,
            word(env, 2, off),
            adr.read_u64(off),
        )?;
    }
    Ok(())
}

/// A non-temporal store goes to the NVDIMM directly (and to the working copy).
fn nt_reaches_nvdimm(env: &Env) -> Result<(), TestFailure> {
    let (raw, backing) = views(env)?;
    raw.fill(0, 1024, 0);
    raw.persist(0, 1024);
    let adr = AdrMedia::new(backing)?;
    let data: [u8; 128] = core::array::from_fn(|i| word(env, 3, i) as u8);
    adr.write_nt(8, &data);
    adr.fence();
    let (mut on_nvdimm, mut in_copy) = ([0u8; 128], [0u8; 128]);
    raw.read(8, &mut on_nvdimm);
    adr.read(8, &mut in_copy);
    for i in 0..data.len() {
        expect_eq(
            "NVDIMM byte",
            0,
            8 + i,
            u64::from(data[i]),
            u64::from(on_nvdimm[i]),
        )?;
        expect_eq(
            "working copy byte",
            0,
            8 + i,
            u64::from(data[i]),
            u64::from(in_copy[i]),
        )?;
    }
    Ok(())
}

/// The ADR media counts its own flushes (lines), fences and bytes.
fn counts(env: &Env) -> Result<(), TestFailure> {
    let (_, backing) = views(env)?;
    let adr = AdrMedia::new(backing)?;
    adr.write(60, &[7; 8]);
    adr.flush(60, 8); // lines 0 and 1
    adr.fence();
    adr.write_nt(256, &[9; 64]);
    adr.persist(512, 128); // 2 lines, 1 fence
    expect_counters(
        Counters {
            lines_flushed: 4,
            fences: 2,
            nt_bytes: 64,
            bytes_written: 72,
        },
        adr.counters(),
    )
}

/// Without a crash point (or before reaching it) fences are counted and performed.
fn crash_hook_counts(env: &Env) -> Result<(), TestFailure> {
    let (raw, backing) = views(env)?;
    let m = CrashAt::new(backing, Some(1000));
    for i in 0..3u64 {
        m.write_u64(0, word(env, 4, i as usize));
        m.persist(0, 8);
    }
    expect_counters(
        Counters {
            lines_flushed: 3,
            fences: 3,
            nt_bytes: 0,
            bytes_written: 24,
        },
        m.counters(),
    )?;
    expect_eq("fences seen", 0, 0, 3, m.fences())?;
    expect_eq("last word", 0, 0, word(env, 4, 2), raw.read_u64(0))
}
