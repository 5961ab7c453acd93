//! Recovery: replay of commits never written back, rollback of an uncommitted undo at
//! every fence of its transaction, the same result after a recovery cut at any of its
//! fences, a damaged runtime area; and a hash map across close and crash.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use arch::Media;
use pmalloc::{OpenOptions, PPtr};
use pmrt::area::AreaError;
use pmrt::{Error, Pool, PoolError};

use super::{accounts, balance, digest, expect_word, Site, SitePool, BIG, LAYOUT, POOL};
use crate::testing::{expect, expect_at_least, expect_eq, TestFailure};

/// Delta commits to every account, never coalesced: on ADR media the NVDIMM still
/// holds the old balances when the pool is dropped; recovery replays the records and
/// every new balance is back.
pub fn replay(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?;
    for (i, &acc) in a.iter().enumerate() {
        pool.transaction(|tx| tx.write(acc, 8, &(300 + i as u64)))?;
    }
    let nv = site.nvdimm()?;
    for &acc in &a {
        expect_word(
            "home on the NVDIMM at the crash",
            acc.raw(),
            100,
            nv.read_u64(acc.raw() as usize + 8),
        )?;
    }
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, report) = Site::open(&*media)?;
    expect_at_least("groups replayed", a.len() as u64, report.groups_replayed)?;
    expect_at_least(
        "committed transactions found",
        a.len() as u64,
        report.committed,
    )?;
    for (i, &acc) in a.iter().enumerate() {
        expect_word(
            "balance after recovery",
            acc.raw(),
            300 + i as u64,
            balance(&pool, acc)?,
        )?;
    }
    Ok(())
}

/// The in-place update of the large object, two ranges.
fn big_update(pool: &SitePool<'_>, big: PPtr<()>) -> Result<(), TestFailure> {
    pool.transaction(|tx| {
        tx.write_bytes(big, 80_000, &[0xAB; 5000])?;
        tx.write_bytes(big, 10, &[0xCD; 10])
    })?;
    Ok(())
}

/// Whether the large object holds the update's bytes (`Some(true)`), its old bytes
/// (`Some(false)`), or anything else (`None`: a torn update).
fn big_state(pool: &SitePool<'_>, big: PPtr<()>) -> Result<Option<bool>, TestFailure> {
    let mut b = alloc::vec![0u8; BIG];
    pool.read_bytes(big, 0, &mut b)?;
    let new = |i: usize| (10..20).contains(&i) || (80_000..85_000).contains(&i);
    let old = b.iter().all(|&x| x == 1);
    let updated = b.iter().enumerate().all(|(i, &x)| {
        x == if new(i) {
            if i < 20 {
                0xCD
            } else {
                0xAB
            }
        } else {
            1
        }
    });
    Ok(if updated {
        Some(true)
    } else {
        old.then_some(false)
    })
}

/// The power is cut at each fence of the large object's undo-logged update in turn
/// (a fresh pool each time); every recovery shows the old bytes or the new ones, never
/// a mix; cuts before the commit record roll the in-place bytes back (some recovery
/// reports a rollback), cuts after it keep them.
pub fn undo_rollback(site: &Site<'_>) -> Result<(), TestFailure> {
    let opts = site.options();
    let probe = site.cut_media(None)?;
    let (pool, root) = Site::create(&probe, &opts)?;
    let big = pool.read(root)?.big;
    let f0 = probe.backing().fences();
    big_update(&pool, big)?;
    let fences = probe.backing().fences() - f0;
    drop(pool);
    drop(probe);
    expect_at_least("fences of the update", 4, fences)?;
    let (mut rolled_back, mut old, mut new) = (0, 0, 0);
    for k in 1..=fences {
        let media = site.cut_media(None)?;
        let (pool, root) = Site::create(&media, &opts)?;
        let big = pool.read(root)?.big;
        media.backing().arm(k);
        big_update(&pool, big)?;
        expect("the power was cut", media.backing().was_cut())?;
        drop(pool);
        drop(media);
        let media = site.media()?;
        let (pool, _, report) = Site::open(&*media)?;
        match big_state(&pool, big)? {
            Some(true) => new += 1,
            Some(false) => old += 1,
            None => {
                return Err(TestFailure::Mismatch {
                    what: "large object neither old nor new after a cut at fence",
                    nvdimm: 0,
                    offset: k as usize,
                    expected: 0,
                    found: 1,
                })
            }
        }
        rolled_back += u64::from(report.rolled_back > 0);
    }
    expect_at_least("cuts that rolled back", 1, rolled_back)?;
    expect_at_least("cuts that left the old bytes", 1, old)?;
    expect_at_least("cuts that left the new bytes", 1, new)
}

/// A crash state with pending Delta commits, map entries and a half-done in-place
/// update (cut after its undo record and new bytes reached the NVDIMM); one
/// uninterrupted recovery gives a reference state (rolling the update back and
/// replaying the commits). Then for every fence of recovery: the crash state is
/// restored, recovery is cut at that fence, recovery runs again: the same state.
pub fn idempotent(site: &Site<'_>) -> Result<(), TestFailure> {
    let opts = site.options();
    let media = site.cut_media(None)?;
    let (pool, root) = Site::create(&media, &opts)?;
    let a = accounts(&pool, root)?;
    let map = pool.read(root)?.map;
    for (i, &acc) in a.iter().enumerate() {
        pool.transaction(|tx| {
            tx.write(acc, 8, &(400 + i as u64))?;
            map.insert(tx, i as u64, 40 + i as u64).map(drop)
        })?;
    }
    media.backing().arm(2);
    big_update(&pool, pool.read(root)?.big)?;
    drop(pool);
    drop(media);
    let nv = site.nvdimm()?;
    let mut crash_state = alloc::vec![0u8; POOL as usize];
    nv.read(0, &mut crash_state);
    let restore = || {
        nv.write(0, &crash_state);
        nv.flush(0, crash_state.len());
        nv.fence();
    };
    let probe = site.cut_media(None)?;
    let (pool, root, report) = Site::open(&probe)?;
    let fences = probe.backing().fences();
    let reference = digest(&pool, root)?;
    expect_at_least("transactions rolled back", 1, report.rolled_back)?;
    expect_at_least("groups replayed", a.len() as u64, report.groups_replayed)?;
    expect_word(
        "balance in the reference",
        a[7].raw(),
        407,
        balance(&pool, a[7])?,
    )?;
    drop(pool);
    drop(probe);
    expect_at_least("fences of recovery", 2, fences)?;
    for j in 1..=fences {
        restore();
        let media = site.cut_media(Some(j))?;
        let cut = Pool::open(
            &media as &dyn Media,
            &OpenOptions {
                layout: Some(LAYOUT),
            },
        );
        expect("recovery runs on in DRAM after the cut", cut.is_ok())?;
        expect("the power was cut", media.backing().was_cut())?;
        drop(cut);
        drop(media);
        let media = site.media()?;
        let (pool, root, _) = Site::open(&*media)?;
        expect_eq(
            "state after a recovery cut at fence",
            0,
            j as usize,
            reference,
            digest(&pool, root)?,
        )?;
    }
    Ok(())
}

/// A hash map of 300 keys (every third removed again, in transactions of ten) holds
/// exactly its model after `close` and open; more inserts and removes hold after a
/// crash; and it still takes changes after recovery.
pub fn hash_map(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let map = pool.read(root)?.map;
    let mut model = BTreeMap::new();
    let change = |pool: &SitePool<'_>,
                  model: &mut BTreeMap<u64, u64>,
                  keys: core::ops::Range<u64>,
                  insert: bool| {
        for chunk in keys.collect::<Vec<_>>().chunks(10) {
            pool.transaction(|tx| {
                for &k in chunk {
                    if insert {
                        map.insert(tx, k, k * k + 7)?;
                    } else if k % 3 == 0 {
                        map.remove(tx, &k)?;
                    }
                }
                Ok::<_, Error>(())
            })?;
            for &k in chunk {
                if insert {
                    model.insert(k, k * k + 7);
                } else if k % 3 == 0 {
                    model.remove(&k);
                }
            }
        }
        Ok::<_, TestFailure>(())
    };
    let expect_model = |pool: &SitePool<'_>, model: &BTreeMap<u64, u64>| {
        let found: BTreeMap<u64, u64> = map.entries(&mut &*pool)?.into_iter().collect();
        expect_eq("map entries", 0, 0, model.len() as u64, found.len() as u64)?;
        for (k, v) in model {
            expect_eq(
                "map value",
                0,
                *k as usize,
                *v,
                found.get(k).copied().unwrap_or(u64::MAX),
            )?;
        }
        expect_eq("map len", 0, 0, model.len() as u64, map.len(&mut &*pool)?)
    };
    change(&pool, &mut model, 0..300, true)?;
    change(&pool, &mut model, 0..300, false)?;
    expect_model(&pool, &model)?;
    pool.close();
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    expect_model(&pool, &model)?;
    change(&pool, &mut model, 300..360, true)?;
    change(&pool, &mut model, 300..330, false)?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    expect_model(&pool, &model)?;
    pool.transaction(|tx| map.remove(tx, &1).map(drop))?;
    expect(
        "a key removed after recovery is gone",
        map.get(&mut &pool, &1)?.is_none(),
    )
}

/// A flipped byte in the runtime area's header makes open fail with a typed error
/// naming the area (never a panic); with the byte restored the pool opens again.
pub fn damaged_area(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, _) = Site::create(&*media, &site.options())?;
    let area = pool.heap().runtime_area().0;
    pool.close();
    let nv = site.nvdimm()?;
    let flip = |nv: &dyn Media| {
        let mut b = [0u8; 1];
        nv.read(area + 3, &mut b);
        nv.write(area + 3, &[b[0] ^ 0x10]);
        nv.persist(area + 3, 1);
    };
    flip(&nv);
    let opts = OpenOptions {
        layout: Some(LAYOUT),
    };
    match Pool::open(&*media, &opts) {
        Err(PoolError::Area(AreaError::BadHeader { .. })) => {}
        Err(e) => return Err(e.into()),
        Ok(_) => return Err(TestFailure::Violated("a damaged runtime area opened")),
    }
    flip(&nv);
    drop(Site::open(&*media)?);
    Ok(())
}
