//! Coalescing: by record count, by record volume, and back-pressure from a small log.

use arch::Media;
use pmrt::{CoalesceConfig, Error, PoolStats};

use super::{accounts, balance, expect_word, Site};
use crate::suites::Kind;
use crate::testing::{expect, expect_at_least, expect_eq, TestFailure};

/// With a count threshold of 4 (volume off, batches of one), three Delta updates of
/// one account queue nothing and leave its home unwritten (on ADR media the NVDIMM
/// still holds the old balance); the fourth coalesces it: one count trigger, one
/// round, its lines written back (on the NVDIMM), nothing pending.
pub fn by_count(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?[0];
    pool.set_coalesce_config(CoalesceConfig {
        volume: false,
        batch: 1,
        behind_age: 0,
        ..CoalesceConfig::frequent()
    });
    let nv = site.nvdimm()?;
    let home = || nv.read_u64(a.raw() as usize + 8);
    let s0 = pool.stats().coalescing;
    for n in 1..=4u64 {
        pool.transaction(|tx| tx.write(a, 8, &(500 + n)))?;
        let s = pool.stats();
        let c = s.coalescing;
        if n < 4 {
            expect_eq(
                "count triggers before the 4th record",
                0,
                n as usize,
                0,
                c.by_count - s0.by_count,
            )?;
            expect_eq("objects pending", 0, n as usize, 1, s.pending_objects)?;
            if site.kind == Kind::Adr {
                expect_word("home on the NVDIMM before write-back", a.raw(), 100, home())?;
            }
        } else {
            expect_eq("count triggers", 0, 0, 1, c.by_count - s0.by_count)?;
            expect_eq("rounds", 0, 0, 1, c.rounds - s0.rounds)?;
            expect_at_least(
                "lines written back",
                1,
                c.lines_written_back - s0.lines_written_back,
            )?;
            expect_eq(
                "objects pending after the round",
                0,
                0,
                0,
                s.pending_objects,
            )?;
            expect_eq("volume triggers", 0, 0, 0, c.by_volume - s0.by_volume)?;
            expect_word("home on the NVDIMM after write-back", a.raw(), 504, home())?;
        }
    }
    Ok(())
}

/// With the count threshold out of reach and volume thresholds on, whole-object (Full)
/// rewrites of one account pile up volume until it is coalesced by volume, not count;
/// no object's pending volume ever exceeds its threshold by more than one record, and
/// the last value survives a crash.
pub fn by_volume(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?[1];
    pool.set_coalesce_config(CoalesceConfig {
        count_threshold: 1 << 20,
        batch: 16,
        behind_age: 0,
        ..CoalesceConfig::frequent()
    });
    let s0 = pool.stats().coalescing;
    for n in 0..64u64 {
        pool.transaction(|tx| {
            let acc = tx.open_mut(a)?;
            acc.balance = n;
            acc.history.fill(n);
            tx.set_mode(a, pmrt::Mode::Full)
        })?;
    }
    let c = pool.stats().coalescing;
    expect_at_least("volume triggers", 1, c.by_volume - s0.by_volume)?;
    expect_eq("count triggers", 0, 0, 0, c.by_count - s0.by_count)?;
    expect_at_least(
        "lines written back",
        16,
        c.lines_written_back - s0.lines_written_back,
    )?;
    expect(
        "pending volume stays within a record of its threshold",
        c.over_threshold_max <= c.largest_record,
    )?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    expect_word("balance after a crash", a.raw(), 63, balance(&pool, a)?)?;
    expect_word(
        "history after a crash",
        a.raw(),
        63,
        pool.read(a)?.history[125],
    )
}

/// Two lanes of 24 KiB and no coalescing except what a full log forces: 1200
/// transactions of two lines each all commit, back-pressure rounds ran, and the last
/// value of every account survives a crash.
pub fn back_pressure(site: &Site<'_>) -> Result<(), TestFailure> {
    const N: u64 = 1200;
    let media = site.media()?;
    let mut opts = site.options();
    opts.heap.runtime_len = Some(8192 + 2 * 24 * 1024);
    opts.lanes = 2;
    let (pool, root) = Site::create(&*media, &opts)?;
    let a = accounts(&pool, root)?;
    for n in 0..N {
        pool.transaction(|tx| {
            let acc = tx.open_mut(a[(n % 8) as usize])?;
            acc.balance = n;
            acc.history[(n % 126) as usize] = n;
            Ok::<_, Error>(())
        })?;
    }
    let s: PoolStats = pool.stats();
    expect_at_least("back-pressure rounds", 1, s.coalescing.by_backpressure)?;
    expect_eq("aborts", 0, 0, 0, s.aborts)?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, report) = Site::open(&*media)?;
    expect_at_least("records scanned", 1, report.records)?;
    for n in N - 8..N {
        let i = (n % 8) as usize;
        let acc = pool.read(a[i])?;
        expect_word("balance after a crash", a[i].raw(), n, acc.balance)?;
        expect_word(
            "history after a crash",
            a[i].raw(),
            n,
            acc.history[(n % 126) as usize],
        )?;
    }
    Ok(())
}
