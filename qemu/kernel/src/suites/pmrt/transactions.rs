//! Transactions: commit, abort, the three modes, the undo path, allocation and free,
//! nesting; and one pool on each of two NVDIMMs.

use alloc::vec::Vec;

use arch::{Media, RawMedia};
use pmrt::{Error, Mode, Pool, PoolOptions, TxError};

use super::{
    accounts, balance, expect_same_objects, expect_word, objects, Account, Site, BIG, BIG_OFF,
    LAYOUT,
};
use super::{Root, SitePool};
use crate::suites::Kind;
use crate::testing::{expect, expect_at_least, expect_eq, Env, TestFailure};
use pmalloc::{OpenOptions, PPtr};

/// A commit is visible after `close` and open (which then replays nothing), and after
/// a crash (the pool dropped unclosed), where recovery replays its records.
pub fn commit_reopen(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?;
    pool.transaction(|tx| {
        tx.open_mut(a[0])?.balance = 777;
        Ok::<_, Error>(())
    })?;
    pool.close();
    drop(media);
    let media = site.media()?;
    let (pool, root, report) = Site::open(&*media)?;
    expect_eq(
        "groups replayed after close",
        0,
        0,
        0,
        report.groups_replayed,
    )?;
    expect_word(
        "balance after close",
        a[0].raw(),
        777,
        balance(&pool, a[0])?,
    )?;
    pool.transaction(|tx| {
        tx.open_mut(a[0])?.balance = 778;
        tx.open_mut(a[1])?.history[5] = 9;
        Ok::<_, Error>(())
    })?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, report) = Site::open(&*media)?;
    expect_at_least("groups replayed after a crash", 1, report.groups_replayed)?;
    expect_word(
        "balance after a crash",
        a[0].raw(),
        778,
        balance(&pool, a[0])?,
    )?;
    expect_word(
        "history after a crash",
        a[1].raw(),
        9,
        pool.read(a[1])?.history[5],
    )?;
    expect_word(
        "root after a crash",
        0,
        root.raw(),
        pool.root::<Root>().map_or(0, PPtr::raw),
    )
}

/// A transaction whose closure returns `Err` changes nothing: not its shadow writes,
/// not its explicit writes to the large object, not its allocation, its free or its map
/// insert; before and after a crash, and the pool counts the abort.
pub fn abort(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?;
    let r = pool.read(root)?;
    let before = objects(&pool);
    let result: Result<(), TxError<Error>> = pool.transaction(|tx| {
        tx.open_mut(a[1])?.balance = 1;
        tx.write_bytes(r.big, 500, &[9; 300])?;
        let fresh = tx.alloc(super::account(99))?;
        tx.write(root, 0, &fresh)?;
        tx.free(a[2])?;
        r.map.insert(tx, 5, 55)?;
        Err(Error::Freed { obj: 0 })
    });
    expect(
        "the closure's error aborts",
        result == Err(TxError::Aborted(Error::Freed { obj: 0 })),
    )?;
    expect_eq("aborts counted", 0, 0, 1, pool.stats().aborts)?;
    let check = |pool: &SitePool<'_>| -> Result<(), TestFailure> {
        expect_word("balance", a[1].raw(), 100, balance(pool, a[1])?)?;
        expect_word(
            "root field 0",
            root.raw(),
            a[0].raw(),
            accounts(pool, root)?[0].raw(),
        )?;
        expect_word("freed account", a[2].raw(), 2, pool.read(a[2])?.id)?;
        let mut b = [0u8; 1];
        pool.read_bytes(r.big, 600, &mut b)?;
        expect_word("large object byte", r.big.raw(), 1, b[0].into())?;
        expect("map stays empty", r.map.get(&mut &*pool, &5)?.is_none())?;
        expect_same_objects("objects", &before, &objects(pool))
    };
    check(&pool)?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    check(&pool)
}

/// Each mode, forced with `set_mode`, logs what it says: Delta the dirty runs (two
/// 8-byte runs: 16 bytes), Full the whole 1 KiB object, Critical-Section the dirty
/// runs; Delta and Full cost one fence, Critical-Section two (write-through). On ADR
/// media the NVDIMM holds a Critical-Section home when its commit returns, and not yet
/// a Delta home (written back later by coalescing). All survive a crash.
pub fn modes(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?;
    let cases: [(Mode, usize, u64, u64); 3] = [
        (Mode::Delta, 3, 16, 1),
        (Mode::Full, 4, 1024, 1),
        (Mode::CriticalSection, 5, 16, 2),
    ];
    for (mode, i, logged, fences) in cases {
        let s0 = pool.stats();
        pool.transaction(|tx| {
            let acc = tx.open_mut(a[i])?;
            acc.balance = 1000 + i as u64;
            acc.history[100] = 9;
            tx.set_mode(a[i], mode)
        })?;
        let s = pool.stats();
        expect_eq(
            "bytes logged",
            0,
            i,
            logged,
            s.logged_bytes - s0.logged_bytes,
        )?;
        expect_eq(
            "commit fences",
            0,
            i,
            fences,
            s.commit_fences - s0.commit_fences,
        )?;
    }
    if site.kind == Kind::Adr {
        let nv = site.nvdimm()?;
        let home = |i: usize| nv.read_u64(a[i].raw() as usize + 8);
        expect_word(
            "critical-section home on the NVDIMM",
            a[5].raw(),
            1005,
            home(5),
        )?;
        expect_word(
            "delta home on the NVDIMM before write-back",
            a[3].raw(),
            100,
            home(3),
        )?;
    }
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    for (_, i, _, _) in cases {
        let acc = pool.read(a[i])?;
        expect_word(
            "balance after a crash",
            a[i].raw(),
            1000 + i as u64,
            acc.balance,
        )?;
        expect_word("history after a crash", a[i].raw(), 9, acc.history[100])?;
    }
    Ok(())
}

/// The large object (above the shadow limit) is written in place under undo logging:
/// at least four fences (undo record, new bytes, commit record, undo record retired);
/// an aborted update leaves its bytes; a committed one survives a crash.
pub fn large_undo(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let big = pool.read(root)?.big;
    let r: Result<(), TxError<Error>> = pool.transaction(|tx| {
        tx.write_bytes(big, 1000, &[0xEE; 64])?;
        Err(Error::Freed { obj: 0 })
    });
    expect("aborted", r.is_err())?;
    let s0 = pool.stats();
    pool.transaction(|tx| {
        tx.write_bytes(big, 80_000, &[0xAB; 5000])?;
        tx.write_bytes(big, 10, &[0xCD; 10])
    })?;
    expect_at_least(
        "fences of an undo commit",
        4,
        pool.stats().commit_fences - s0.commit_fences,
    )?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    let mut b = alloc::vec![0u8; BIG];
    pool.read_bytes(big, 0, &mut b)?;
    for (off, expected) in [
        (9, 1),
        (10, 0xCD),
        (19, 0xCD),
        (20, 1),
        (1000, 1),
        (79_999, 1),
    ]
    .into_iter()
    .chain((80_000..85_000).step_by(499).map(|o| (o, 0xAB)))
    .chain([(85_000, 1), (BIG - 1, 1)])
    {
        expect_word(
            "large object byte",
            big.raw() + off as u64,
            expected,
            b[off].into(),
        )?;
    }
    Ok(())
}

/// Allocations (a small object, and one too large to log, written in place) and a
/// free inside an aborted transaction are undone: the same objects before and after,
/// the freed one still readable, also after a crash; an object allocated and freed in
/// one committed transaction leaves nothing; a committed free is gone after a crash.
pub fn alloc_free_abort(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?;
    let before = objects(&pool);
    let r: Result<(), TxError<Error>> = pool.transaction(|tx| {
        let small = tx.alloc(super::account(50))?;
        tx.write(root, 8, &small)?;
        let large = tx.alloc_bytes(200_000, 64, 9, &[3; 64])?;
        tx.write(root, BIG_OFF, &large)?;
        tx.free(a[6])?;
        Err(Error::Freed { obj: 0 })
    });
    expect("aborted", r.is_err())?;
    expect_same_objects("objects after the abort", &before, &objects(&pool))?;
    expect_word("freed account", a[6].raw(), 6, pool.read(a[6])?.id)?;
    pool.transaction(|tx| {
        let p = tx.alloc(super::account(51))?;
        tx.free(p)
    })?;
    expect_same_objects("objects after alloc+free", &before, &objects(&pool))?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, root, _) = Site::open(&*media)?;
    expect_same_objects("objects after a crash", &before, &objects(&pool))?;
    pool.transaction(|tx| {
        tx.free(a[6])?;
        tx.write(root, 6 * 8, &PPtr::<Account>::NULL)
    })?;
    drop(pool);
    drop(media);
    let media = site.media()?;
    let (pool, _, _) = Site::open(&*media)?;
    expect(
        "a committed free is gone after a crash",
        pool.read(a[6]).is_err(),
    )?;
    expect_eq(
        "objects",
        0,
        0,
        before.len() as u64 - 1,
        objects(&pool).len() as u64,
    )
}

/// A nested transaction is part of the enclosing one: its writes are seen inside and
/// commit with it (one commit); its error, passed on, aborts the whole.
pub fn nested(site: &Site<'_>) -> Result<(), TestFailure> {
    let media = site.media()?;
    let (pool, root) = Site::create(&*media, &site.options())?;
    let a = accounts(&pool, root)?[7];
    let commits = pool.stats().commits;
    let seen = pool.transaction(|tx| {
        tx.open_mut(a)?.balance = 1;
        tx.nested(|tx| {
            tx.open_mut(a)?.history[0] = 2;
            Ok::<_, Error>(())
        })?;
        Ok::<_, Error>(tx.read(a)?.history[0])
    })?;
    expect_word("nested write seen inside", a.raw(), 2, seen)?;
    expect_eq("commits", 0, 0, commits + 1, pool.stats().commits)?;
    let r: Result<(), TxError<Error>> = pool.transaction(|tx| {
        tx.open_mut(a)?.balance = 3;
        tx.nested(|tx| {
            tx.open_mut(a)?.history[1] = 4;
            Err(Error::Freed { obj: 0 })
        })
    });
    expect("the nested error aborts", r.is_err())?;
    let acc = pool.read(a)?;
    expect_word("balance", a.raw(), 1, acc.balance)?;
    expect_word("history[0]", a.raw(), 2, acc.history[0])?;
    expect_word("history[1]", a.raw(), 0, acc.history[1])
}

/// A pool on each of two NVDIMMs, transactions alternating between them, both crashed:
/// each recovers its own commits and keeps its own identity.
pub fn two_pools(env: &Env) -> Result<(), TestFailure> {
    let list = env.nvdimms()?;
    if list.len() < 2 {
        return Err(TestFailure::NvdimmCount {
            expected: 2,
            found: list.len(),
        });
    }
    let media: Vec<RawMedia> = list[..2]
        .iter()
        .map(|nv| nv.window(0, super::POOL))
        .collect::<Result<_, _>>()?;
    let sites: Vec<Site<'_>> = list[..2]
        .iter()
        .map(|nv| Site {
            env,
            kind: Kind::Raw,
            nv,
        })
        .collect();
    let mut pools = Vec::new();
    for (k, (site, m)) in sites.iter().zip(&media).enumerate() {
        let mut opts: PoolOptions<'_> = site.options();
        opts.heap.uuid[9] = k as u8 + 1;
        pools.push(Site::create(m, &opts)?.0);
    }
    for n in 0..40u64 {
        for (k, pool) in pools.iter().enumerate() {
            let a = pool_accounts(pool)?;
            pool.transaction(|tx| {
                tx.open_mut(a[(n % 8) as usize])?.balance = 1000 * (k as u64 + 1) + n;
                Ok::<_, Error>(())
            })?;
        }
    }
    drop(pools);
    for (k, m) in media.iter().enumerate() {
        let (pool, _, _) = Pool::open(
            m as &dyn Media,
            &OpenOptions {
                layout: Some(LAYOUT),
            },
        )?;
        pool.heap().check()?;
        expect_eq(
            "pool UUID byte",
            k,
            9,
            k as u64 + 1,
            pool.heap().pool_header().uuid[9].into(),
        )?;
        let a = pool_accounts(&pool)?;
        for n in 32..40u64 {
            let i = (n % 8) as usize;
            expect_eq(
                "balance",
                k,
                i,
                1000 * (k as u64 + 1) + n,
                balance(&pool, a[i])?,
            )?;
        }
    }
    Ok(())
}

/// The accounts of a pool's root.
fn pool_accounts<M: Media>(pool: &Pool<M>) -> Result<[PPtr<Account>; 8], TestFailure> {
    let root = pool
        .root::<Root>()
        .ok_or(TestFailure::Violated("no root"))?;
    accounts(pool, root)
}
