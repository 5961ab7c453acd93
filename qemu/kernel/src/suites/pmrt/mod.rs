//! The runtime (`pmrt`) on NVDIMM pools: transactions (commit, abort, every mode, the
//! undo path of a large object, allocation and free, nesting), coalescing (by record
//! count, by record volume, back-pressure from a small log), recovery (replay of
//! committed records not written back, rollback of an uncommitted undo at every fence
//! of its transaction, idempotence at every fence of recovery, a damaged runtime area)
//! and a `PHashMap` across reopen; one pool on each of two NVDIMMs.
//!
//! Most tests run twice: on `RawMedia` over the first [`POOL`] bytes of NVDIMM 0
//! (`_raw`), and on an `AdrMedia` working copy of them (`_adr`), where only flushed
//! lines reach the NVDIMM. A *crash* is dropping the pool without `close` and opening
//! new media on the same bytes: on raw media every store survives it (as with a kill of
//! QEMU), on ADR media only what was flushed. Tests that cut the power at a chosen
//! fence (`CrashAt::power_cut` under an `AdrMedia`) run on ADR media only: its DRAM
//! copy keeps the program's view while the NVDIMM stops taking stores. The suite needs
//! two NVDIMMs (`nvdimms=2`).

mod coalescing;
mod recovery;
mod transactions;

use alloc::boxed::Box;
use alloc::vec::Vec;

use arch::{Media, RawMedia};
use pmalloc::{ObjInfo, OpenOptions, PPtr};
use pmrt::collections::PHashMap;
use pmrt::{CoalesceConfig, Error, Pool, PoolOptions, RecoveryReport};

use super::Kind;
use crate::adr::AdrMedia;
use crate::crash::CrashAt;
use crate::nvdimm::Nvdimm;
use crate::testing::{expect_eq, Env, Test, TestFailure};

/// Bytes of NVDIMM 0 a suite pool covers (an ADR pool's DRAM copy is as large).
pub const POOL: u64 = pmalloc::layout::MIN_POOL as u64;
/// Layout name of the suite's pools.
const LAYOUT: &str = "pm-kernel-pmrt";
/// Accounts in the root.
const ACCOUNTS: usize = 8;
/// Size of the large object: above the 64 KiB shadow limit, so it is updated in place
/// under undo logging.
const BIG: usize = 100 * 1024;

/// A 1 KiB object (16 lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, pmrt::Persistent)]
#[repr(C)]
#[persistent(type_num = 0x52_0001)]
struct Account {
    id: u64,
    balance: u64,
    history: [u64; 126],
}

/// The suite pools' root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, pmrt::Persistent)]
#[repr(C)]
#[persistent(type_num = 0x52_0002)]
struct Root {
    accounts: [PPtr<Account>; ACCOUNTS],
    big: PPtr<()>,
    map: PHashMap<u64, u64>,
}

/// Byte offset of `Root::big`.
const BIG_OFF: usize = ACCOUNTS * 8;

/// The suite.
pub fn tests() -> &'static [Test] {
    use coalescing::{back_pressure, by_count, by_volume};
    use recovery::{damaged_area, hash_map, idempotent, replay, undo_rollback};
    use transactions::{
        abort, alloc_free_abort, commit_reopen, large_undo, modes, nested, two_pools,
    };
    const TESTS: &[Test] = on_both! {
        with_site;
        commit_reopen: "commits_are_visible_after_close_and_after_a_crash_raw",
            "commits_are_visible_after_close_and_after_a_crash_adr";
        abort: "an_aborted_transaction_leaves_nothing_raw",
            "an_aborted_transaction_leaves_nothing_adr";
        modes: "delta_full_and_critical_section_log_and_persist_as_specified_raw",
            "delta_full_and_critical_section_log_and_persist_as_specified_adr";
        large_undo: "a_large_object_is_updated_in_place_under_undo_raw",
            "a_large_object_is_updated_in_place_under_undo_adr";
        alloc_free_abort: "allocs_and_frees_of_an_aborted_transaction_are_undone_raw",
            "allocs_and_frees_of_an_aborted_transaction_are_undone_adr";
        nested: "nested_transactions_flatten_into_one_raw",
            "nested_transactions_flatten_into_one_adr";
        by_count: "coalescing_is_triggered_by_the_record_count_raw",
            "coalescing_is_triggered_by_the_record_count_adr";
        by_volume: "coalescing_is_triggered_by_the_record_volume_raw",
            "coalescing_is_triggered_by_the_record_volume_adr";
        back_pressure: "a_full_log_delays_transactions_and_never_fails_one_raw",
            "a_full_log_delays_transactions_and_never_fails_one_adr";
        hash_map: "hash_map_entries_survive_close_and_crash_raw",
            "hash_map_entries_survive_close_and_crash_adr";
    };
    const ADR_ONLY: &[Test] = on! {
        with_site, Adr;
        replay: "recovery_replays_commits_that_were_never_written_back_adr";
        undo_rollback: "recovery_rolls_back_an_uncommitted_undo_at_every_fence_adr";
        idempotent: "recovery_cut_at_every_fence_then_rerun_gives_the_same_state_adr";
    };
    const RAW_ONLY: &[Test] = on! {
        with_site, Raw;
        damaged_area: "a_damaged_runtime_area_is_a_typed_error_raw";
    };
    const TWO: &[Test] = &[Test {
        name: "two_nvdimms_hold_two_transactional_pools",
        run: two_pools,
    }];
    static ALL: spin::Once<Vec<Test>> = spin::Once::new();
    ALL.call_once(|| {
        [TESTS, ADR_ONLY, RAW_ONLY, TWO]
            .iter()
            .flat_map(|l| l.iter().copied())
            .collect()
    })
}

/// Where a test's pools live: NVDIMM 0's first [`POOL`] bytes, on raw or ADR media.
#[derive(Debug, Clone, Copy)]
struct Site<'e> {
    env: &'e Env,
    kind: Kind,
    nv: &'e Nvdimm,
}

/// A suite pool on media borrowed from the test.
type SitePool<'m> = Pool<&'m dyn Media>;

/// Runs `body` on the site of `kind`.
fn with_site(
    env: &Env,
    kind: Kind,
    body: fn(&Site<'_>) -> Result<(), TestFailure>,
) -> Result<(), TestFailure> {
    let nv = &env.nvdimms()?[0];
    body(&Site { env, kind, nv })
}

impl Site<'_> {
    /// The NVDIMM bytes themselves: what survives a crash.
    fn nvdimm(&self) -> Result<RawMedia, TestFailure> {
        Ok(self.nv.window(0, POOL)?)
    }

    /// Fresh media over the site (on ADR media, loaded from the NVDIMM: opening a pool
    /// left unclosed on it is recovering from a crash).
    fn media(&self) -> Result<Box<dyn Media>, TestFailure> {
        let window = self.nvdimm()?;
        Ok(match self.kind {
            Kind::Raw => Box::new(window),
            Kind::Adr => Box::new(AdrMedia::new(window)?),
        })
    }

    /// ADR media whose NVDIMM side loses power at fence `at` (or when armed).
    fn cut_media(&self, at: Option<u64>) -> Result<AdrMedia<CrashAt<RawMedia>>, TestFailure> {
        Ok(AdrMedia::new(CrashAt::power_cut(self.nvdimm()?, at))?)
    }

    /// Options of a suite pool: its UUID from the seed.
    fn options(&self) -> PoolOptions<'static> {
        let mut uuid = [0u8; 16];
        uuid[..8]
            .copy_from_slice(&pm_qemu_proto::mix64(self.env.args.seed ^ 0x706d_7274).to_le_bytes());
        uuid[8] = self.kind as u8;
        PoolOptions::new(LAYOUT, uuid)
    }

    /// A new pool on `media` with coalescing off (every test that wants it sets it),
    /// holding [`Root`]: eight accounts (`id` = index, `balance` 100), a [`BIG`]-byte
    /// object of bytes `1`, and an empty map; written back, so nothing is pending.
    fn create<'m>(
        media: &'m dyn Media,
        opts: &PoolOptions<'_>,
    ) -> Result<(SitePool<'m>, PPtr<Root>), TestFailure> {
        let pool = Pool::create(media, opts)?;
        no_coalescing(&pool);
        let root = pool.transaction(|tx| {
            let mut accounts = [PPtr::NULL; ACCOUNTS];
            for (i, a) in accounts.iter_mut().enumerate() {
                *a = tx.alloc(account(i as u64))?;
            }
            let big = tx.alloc_bytes(BIG, 64, 7, &alloc::vec![1u8; BIG])?;
            let map = PHashMap::new(tx)?;
            let root = tx.alloc(Root { accounts, big, map })?;
            tx.set_root(root);
            Ok::<_, Error>(root)
        })?;
        pool.coalesce();
        Ok((pool, root))
    }

    /// Opens (recovers) the pool on `media`; checks the heap.
    fn open(media: &dyn Media) -> Result<(SitePool<'_>, PPtr<Root>, RecoveryReport), TestFailure> {
        let opts = OpenOptions {
            layout: Some(LAYOUT),
        };
        let (pool, heap_report, report) = Pool::open(media, &opts)?;
        expect_eq(
            "damage found at open",
            0,
            0,
            0,
            heap_report.damage.len() as u64,
        )?;
        pool.heap().check()?;
        let root = pool
            .root::<Root>()
            .ok_or(TestFailure::Violated("no root after open"))?;
        Ok((pool, root, report))
    }
}

/// Coalescing only when asked (`Pool::coalesce`) or forced by back-pressure.
fn no_coalescing<M: Media>(pool: &Pool<M>) {
    pool.set_coalesce_config(CoalesceConfig::deferred());
}

fn account(id: u64) -> Account {
    Account {
        id,
        balance: 100,
        history: [0; 126],
    }
}

/// The accounts of `root`.
fn accounts<M: Media>(
    pool: &Pool<M>,
    root: PPtr<Root>,
) -> Result<[PPtr<Account>; ACCOUNTS], TestFailure> {
    Ok(pool.read(root)?.accounts)
}

/// `expect_eq` for a pool word, located by its object.
fn expect_word(what: &'static str, obj: u64, expected: u64, found: u64) -> Result<(), TestFailure> {
    expect_eq(what, 0, obj as usize, expected, found)
}

/// The balance of account `a`.
fn balance<M: Media>(pool: &Pool<M>, a: PPtr<Account>) -> Result<u64, TestFailure> {
    Ok(pool.read(a)?.balance)
}

/// The heap's objects, in pool order.
fn objects<M: Media>(pool: &Pool<M>) -> Vec<ObjInfo> {
    pool.heap().objects().collect()
}

/// `found` lists the same objects as `expected`.
fn expect_same_objects(
    what: &'static str,
    expected: &[ObjInfo],
    found: &[ObjInfo],
) -> Result<(), TestFailure> {
    expect_eq(what, 0, 0, expected.len() as u64, found.len() as u64)?;
    for (e, f) in expected.iter().zip(found) {
        expect_eq(what, 0, e.ptr as usize, e.ptr, f.ptr)?;
        expect_eq(what, 0, e.ptr as usize, e.size, f.size)?;
    }
    Ok(())
}

/// A digest (FNV-1a) of everything a suite pool holds: the accounts, the large object
/// and the map's entries.
fn digest<M: Media>(pool: &Pool<M>, root: PPtr<Root>) -> Result<u64, TestFailure> {
    let r = pool.read(root)?;
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    let mut buf = alloc::vec![0u8; BIG];
    for a in r.accounts {
        pool.read_bytes(a, 0, &mut buf[..core::mem::size_of::<Account>()])?;
        eat(&buf[..core::mem::size_of::<Account>()]);
    }
    pool.read_bytes(r.big, 0, &mut buf)?;
    eat(&buf);
    let mut entries = r.map.entries(&mut &*pool)?;
    entries.sort_unstable();
    for (k, v) in entries {
        eat(&k.to_le_bytes());
        eat(&v.to_le_bytes());
    }
    Ok(h)
}
