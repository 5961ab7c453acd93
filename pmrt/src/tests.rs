//! Unit tests of transactions on simulated media. Crash exploration of every mode lives
//! in `tests-host`.

use arch::sim::SimMedia;
use arch::Media;
use pmalloc::OpenOptions;

use crate::*;

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Account {
    id: u64,
    balance: u64,
    history: [u64; 126],
}

// SAFETY: u64 fields and an array of u64: no padding, any bit pattern valid.
unsafe impl Persistent for Account {
    const TYPE_NUM: u32 = 42;
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Root {
    accounts: [PPtr<Account>; 8],
    big: PPtr<()>,
}

// SAFETY: PPtrs (u64) only.
unsafe impl Persistent for Root {
    const TYPE_NUM: u32 = 1;
}

const POOL: usize = 16 << 20;

fn pool() -> Pool<SimMedia> {
    Pool::create(SimMedia::new(POOL), &PoolOptions::new("pmrt-test", [4; 16])).unwrap()
}

fn crash_reopen(p: &Pool<SimMedia>) -> (Pool<SimMedia>, RecoveryReport) {
    let img = p.heap().media().durable_image();
    let (p, _, r) = Pool::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    p.heap().check().unwrap();
    assert!(
        r.bad_entries == 0 && r.damage.is_empty(),
        "a crash of a working pool left a damaged log: {r:?}"
    );
    (p, r)
}

/// Coalescing only by back-pressure (no count or volume trigger).
fn coalesce_only_when_full(p: &Pool<SimMedia>) {
    p.set_coalesce_config(CoalesceConfig::deferred());
}

fn account(id: u64) -> Account {
    Account {
        id,
        balance: 100,
        history: [0; 126],
    }
}

fn setup(p: &Pool<SimMedia>) -> PPtr<Root> {
    let root = p
        .root_or_init(|| Root {
            accounts: [PPtr::NULL; 8],
            big: PPtr::NULL,
        })
        .unwrap();
    p.transaction(|tx| {
        for i in 0..8 {
            let a = tx.alloc(account(i as u64))?;
            tx.write(root, i * 8, &a)?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
    root
}

#[test]
fn committed_transactions_survive_a_crash_before_write_back() {
    let p = pool();
    let root = setup(&p);
    let a0 = p.read(root).unwrap().accounts[0];
    p.transaction(|tx| {
        tx.open_mut(a0)?.balance = 777;
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(p.read(a0).unwrap().balance, 777);
    let (q, r) = crash_reopen(&p);
    assert!(r.groups_replayed > 0, "{r:?}");
    assert_eq!(q.read(q.root::<Root>().unwrap()).unwrap().accounts[0], a0);
    assert_eq!(q.read(a0).unwrap().balance, 777);
    for i in 0..8 {
        assert_eq!(
            q.read(q.read(root).unwrap().accounts[i]).unwrap().id,
            i as u64
        );
    }
}

#[test]
fn aborted_and_unwound_transactions_leave_nothing() {
    let p = pool();
    let root = setup(&p);
    let a1 = p.read(root).unwrap().accounts[1];
    let before = p.heap().stats().objects;
    let r: Result<(), TxError<&str>> = p.transaction(|tx| {
        tx.open_mut(a1).map_err(|_| "x")?.balance = 1;
        tx.alloc(account(99)).map_err(|_| "x")?;
        Err("no")
    });
    assert_eq!(r, Err(TxError::Aborted("no")));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = p.transaction(|tx| {
            tx.open_mut(a1)?.balance = 2;
            tx.alloc(account(98))?;
            panic!("unwind inside a transaction");
            #[allow(unreachable_code)]
            Ok::<_, Error>(())
        });
    }));
    assert!(unwound.is_err());
    assert_eq!(p.read(a1).unwrap().balance, 100);
    assert_eq!(p.heap().stats().objects, before);
    let (q, _) = crash_reopen(&p);
    assert_eq!(q.read(a1).unwrap().balance, 100);
    assert_eq!(q.heap().stats().objects, before);
}

#[test]
fn an_eight_byte_update_costs_one_fence_and_one_log_line() {
    let p = pool();
    let root = setup(&p);
    let a2 = p.read(root).unwrap().accounts[2];
    coalesce_only_when_full(&p);
    let before = p.heap().media().counters();
    let s0 = p.stats();
    let n = 100u64;
    for i in 0..n {
        p.transaction(|tx| tx.write(a2, 8, &i)).unwrap();
    }
    let d = p.heap().media().counters().since(&before);
    assert_eq!(d.fences, n, "{d:?}");
    // The record goes with non-temporal stores: nothing to flush.
    assert_eq!(d.nt_bytes, 64 * n, "one record line each: {d:?}");
    assert_eq!(d.lines_flushed, 0, "{d:?}");
    let s = p.stats();
    assert_eq!(
        s.logged_bytes - s0.logged_bytes,
        8 * n,
        "8 bytes logged per 8 bytes changed"
    );
    assert_eq!(s.user_bytes - s0.user_bytes, 8 * n);
}

#[test]
fn a_cold_object_is_written_behind_and_retired_at_the_lanes_next_fence() {
    let p = pool();
    let root = setup(&p);
    let a = p.read(root).unwrap().accounts;
    p.set_coalesce_config(CoalesceConfig {
        behind_age: 2,
        ..CoalesceConfig::default()
    });
    // Age the accounts past the threshold, then start with nothing pending.
    for i in 0..2u64 {
        p.transaction(|tx| tx.write(a[7], 8, &i)).unwrap();
    }
    p.coalesce();
    let durable_u64 = |p: &Pool<SimMedia>, at: u64| {
        let img = p.heap().media().durable_image();
        u64::from_le_bytes(img[at as usize..at as usize + 8].try_into().unwrap())
    };
    let before = p.heap().media().counters();
    p.transaction_in(0, |tx| tx.write(a[2], 8, &555u64))
        .unwrap();
    // Committed, its home line flushed but not fenced: still pending.
    assert_ne!(durable_u64(&p, a[2].raw() + 8), 555);
    assert_eq!(p.stats().pending_objects, 1);
    let d = p.heap().media().counters().since(&before);
    assert_eq!(
        (d.fences, d.nt_bytes, d.lines_flushed),
        (1, 64, 1),
        "record line (non-temporal) and home line: {d:?}"
    );
    // The lane's next commit fences it: durable, retired, its group dead.
    p.transaction_in(0, |tx| tx.write(a[3], 8, &666u64))
        .unwrap();
    assert_eq!(durable_u64(&p, a[2].raw() + 8), 555);
    assert_eq!(p.stats().pending_objects, 1, "only the second object");
    assert_eq!(p.stats().coalescing.written_behind, 1);
    let (q, _) = crash_reopen(&p);
    assert_eq!(q.read(a[2]).unwrap().balance, 555);
    assert_eq!(q.read(a[3]).unwrap().balance, 666);
    // A crash before the next fence replays the group instead.
    p.transaction_in(0, |tx| tx.write(a[4], 8, &777u64))
        .unwrap();
    let (q, _) = crash_reopen(&p);
    assert_eq!(q.read(a[4]).unwrap().balance, 777);
    // Recently written objects keep their chains for coalescing.
    p.transaction_in(0, |tx| tx.write(a[4], 16, &1u64)).unwrap();
    p.transaction_in(0, |tx| tx.write(a[5], 8, &1u64)).unwrap();
    assert_eq!(
        p.stats().pending_objects,
        2,
        "a[4] written again at once keeps its chain, a[5] waits for the next fence"
    );
}

#[test]
fn small_transactions_leave_the_pool_the_general_path_leaves() {
    // The same writes on identical pools: alone in their transaction and with a second
    // object read (both the small path), and with a second object opened for writing
    // but left unchanged (the general path). All pools must end byte for byte the same,
    // log records included, and count the same.
    let run = |other: u8| {
        let p = pool();
        let root = setup(&p);
        let a = p.read(root).unwrap().accounts;
        coalesce_only_when_full(&p);
        for i in 0..40u64 {
            p.transaction(|tx| {
                match other {
                    1 => tx.read_bytes(a[7], 0, &mut [0; 8])?,
                    2 => {
                        tx.open_bytes_mut(a[7])?;
                    }
                    _ => {}
                }
                let o = a[(i % 3) as usize];
                tx.write(o, 8, &i)?;
                tx.write_bytes(o, 100 + i as usize, &[i as u8; 13])?;
                tx.write_bytes(o, 96, &[7; 3])?;
                if i % 4 == 0 {
                    tx.set_mode(o, Mode::Full)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        }
        let s = p.stats();
        let counts = [
            s.commits,
            s.logged_bytes,
            s.user_bytes,
            s.commit_fences,
            s.commit_lines_durable,
            s.pending_objects,
            s.pending_bytes,
        ];
        (p.heap().media().durable_image(), counts)
    };
    let (alone, read, general) = (run(0), run(1), run(2));
    assert!(alone.0 == general.0, "durable images differ");
    assert_eq!(alone.1, general.1);
    assert!(
        read.0 == general.0,
        "durable images differ (a second object read)"
    );
    assert_eq!(read.1, general.1);
}

#[test]
fn delta_logs_dirty_runs_full_logs_the_object_and_critical_sections_write_through() {
    let p = pool();
    let root = setup(&p);
    let a = p.read(root).unwrap().accounts;
    coalesce_only_when_full(&p);
    let logged = |p: &Pool<SimMedia>| p.stats().logged_bytes;
    let l0 = logged(&p);
    p.transaction(|tx| {
        let acc = tx.open_mut(a[3])?;
        acc.balance = 5;
        acc.history[100] = 9;
        tx.set_mode(a[3], Mode::Delta)
    })
    .unwrap();
    assert_eq!(logged(&p) - l0, 16, "two 8-byte runs");
    let l1 = logged(&p);
    p.transaction(|tx| {
        tx.open_mut(a[4])?.balance = 6;
        tx.set_mode(a[4], Mode::Full)
    })
    .unwrap();
    assert_eq!(logged(&p) - l1, 1024, "the whole object");
    // Write-through: durable in place when commit returns, before any coalescing.
    p.transaction(|tx| {
        tx.open_mut(a[5])?.balance = 7;
        tx.set_mode(a[5], Mode::CriticalSection)
    })
    .unwrap();
    let img = p.heap().media().durable_image();
    let at = a[5].raw() as usize + 8;
    assert_eq!(u64::from_le_bytes(img[at..at + 8].try_into().unwrap()), 7);
    // Delta's home is not durable yet (only its record is).
    let at = a[3].raw() as usize + 8;
    assert_ne!(u64::from_le_bytes(img[at..at + 8].try_into().unwrap()), 5);
    let (q, _) = crash_reopen(&p);
    assert_eq!(q.read(a[3]).unwrap().balance, 5);
    assert_eq!(q.read(a[3]).unwrap().history[100], 9);
    assert_eq!(q.read(a[4]).unwrap().balance, 6);
    assert_eq!(q.read(a[5]).unwrap().balance, 7);
}

#[test]
fn frees_are_quarantined_until_written_back_then_reused() {
    let p = pool();
    let root = setup(&p);
    let a6 = p.read(root).unwrap().accounts[6];
    p.transaction(|tx| {
        tx.free(a6)?;
        tx.write(root, 6 * 8, &PPtr::<Account>::NULL)
    })
    .unwrap();
    assert!(p.read(a6).is_err());
    // Not reusable before coalescing...
    let b = p.transaction(|tx| tx.alloc(account(1))).unwrap();
    assert_ne!(b, a6);
    p.coalesce();
    // ...and reusable after.
    let c = p.transaction(|tx| tx.alloc(account(2))).unwrap();
    let d = p.transaction(|tx| tx.alloc(account(3))).unwrap();
    assert!(c == a6 || d == a6, "freed slot reused after write-back");
    let (q, _) = crash_reopen(&p);
    assert!(q.read(a6).is_ok(), "reused");
    assert_eq!(q.read(b).unwrap().id, 1);
}

/// A 200 000-byte object (an extent, written in place) in the root's `big` field.
fn alloc_big(p: &Pool<SimMedia>, root: PPtr<Root>) -> PPtr<()> {
    p.transaction(|tx| {
        let b = tx.alloc_bytes(200_000, 64, 7, &[1; 64])?;
        tx.write(root, 64, &b)?;
        Ok::<_, Error>(b)
    })
    .unwrap()
}

#[test]
fn large_objects_are_updated_in_place_with_undo() {
    let p = pool();
    let root = setup(&p);
    let big = alloc_big(&p, root);
    let before = p.heap().media().counters();
    p.transaction(|tx| {
        tx.write_bytes(big, 150_000, &[0xAB; 5000])?;
        tx.write_bytes(big, 10, &[0xCD; 10])
    })
    .unwrap();
    let d = p.heap().media().counters().since(&before);
    assert!(d.fences >= 3, "undo, data, commit: {d:?}");
    let (q, _) = crash_reopen(&p);
    let mut b = [0u8; 5000];
    q.read_bytes(big, 150_000, &mut b).unwrap();
    assert_eq!(b, [0xAB; 5000]);
    let mut c = [0u8; 12];
    q.read_bytes(big, 8, &mut c).unwrap();
    assert_eq!(
        c,
        [1, 1, 0xCD, 0xCD, 0xCD, 0xCD, 0xCD, 0xCD, 0xCD, 0xCD, 0xCD, 0xCD]
    );
}

#[test]
fn nested_transactions_flatten() {
    let p = pool();
    let root = setup(&p);
    let a7 = p.read(root).unwrap().accounts[7];
    let r: Result<(), TxError<Error>> = p.transaction(|tx| {
        tx.open_mut(a7)?.balance = 1;
        tx.nested(|tx| {
            tx.open_mut(a7)?.history[0] = 2;
            Ok::<_, Error>(())
        })?;
        assert_eq!(tx.read(a7)?.history[0], 2);
        Ok(())
    });
    r.unwrap();
    let acc = p.read(a7).unwrap();
    assert_eq!((acc.balance, acc.history[0]), (1, 2));
}

#[test]
fn the_log_wraps_and_back_pressure_never_fails_a_transaction() {
    let (p, a) = small_log_pool(64);
    for i in 0..3000u64 {
        p.transaction(|tx| {
            let acc = tx.open_mut(a[(i % 8) as usize])?;
            acc.balance = i;
            acc.history[(i % 126) as usize] = i;
            Ok::<_, Error>(())
        })
        .unwrap();
    }
    let s = p.stats();
    assert!(s.coalescing.by_backpressure > 0, "{s:?}");
    let (q, r) = crash_reopen(&p);
    assert!(r.records > 0);
    for i in 2992..3000u64 {
        let acc = q.read(a[(i % 8) as usize]).unwrap();
        assert_eq!(acc.balance, i);
        assert_eq!(acc.history[(i % 126) as usize], i);
    }
}

#[test]
fn close_writes_everything_back_and_reopen_replays_nothing() {
    let p = pool();
    let root = setup(&p);
    let a0 = p.read(root).unwrap().accounts[0];
    p.transaction(|tx| tx.write(a0, 8, &55u64)).unwrap();
    let img = p.close().durable_image();
    let (q, _, r) = Pool::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert_eq!(r.groups_replayed, 0, "{r:?}");
    assert_eq!(q.read(a0).unwrap().balance, 55);
}

#[test]
fn bad_pointers_and_bounds_are_typed_errors() {
    let p = pool();
    let root = setup(&p);
    let a0 = p.read(root).unwrap().accounts[0];
    let e = p
        .transaction(|tx| tx.write_bytes(a0, 1020, &[0; 8]))
        .unwrap_err();
    assert!(
        matches!(e, TxError::Aborted(Error::OutOfBounds { .. })),
        "{e:?}"
    );
    let wrong: PPtr<Root> = a0.cast();
    let e = p
        .transaction(|tx| tx.open_mut(wrong).map(|_| ()))
        .unwrap_err();
    assert!(matches!(e, TxError::Aborted(Error::BadPointer(_))), "{e:?}");
    let e = p
        .transaction(|tx| tx.open_mut(PPtr::<Account>::from_raw(12345)).map(|_| ()))
        .unwrap_err();
    assert!(matches!(e, TxError::Aborted(Error::BadPointer(_))), "{e:?}");
    let e = p.transaction(|tx| {
        tx.free(a0)?;
        tx.free(a0)
    });
    assert!(
        matches!(e, Err(TxError::Aborted(Error::Freed { .. }))),
        "{e:?}"
    );
    assert!(p.read(a0).is_ok(), "the failed transaction freed nothing");
}

/// Found by `tests-host/tests/pmrt_model.rs`: a coalescing round marked a freed
/// extent's groups dead only in the cache, then released the extent; its chunk became a
/// run of small objects (whose chunk entry the heap writes directly, not through the
/// log). After a crash the lost dead mark made recovery replay the old free, whose
/// chunk word (`Free`) erased the run: its objects were "outside the heap".
#[test]
fn a_released_extent_reused_as_a_run_survives_a_crash() {
    let p = pool();
    let root = setup(&p);
    let big = alloc_big(&p, root);
    p.coalesce();
    p.transaction(|tx| {
        tx.free(big)?;
        tx.write(root, 64, &PPtr::<()>::NULL)
    })
    .unwrap();
    p.coalesce();
    // Small objects of a new class: a new run, in the first free chunk, the extent's.
    let mut small = Vec::new();
    for i in 0..4u64 {
        small.push(
            p.transaction(|tx| tx.alloc_bytes(4000, 8, 9, &i.to_le_bytes()))
                .unwrap(),
        );
    }
    let chunk = |o: u64| p.heap().layout().chunk_of(o as usize);
    assert!(
        small.iter().any(|s| chunk(s.raw()) == chunk(big.raw())),
        "the test needs a run in the freed extent's chunk"
    );
    let (q, _) = crash_reopen(&p);
    for (i, s) in small.iter().enumerate() {
        let mut b = [0u8; 8];
        q.read_bytes(s.cast::<u8>(), 0, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i as u64);
    }
}

/// A pool with two lanes of `kib` KiB of log each, the accounts set up, and coalescing
/// only when a log is short of space.
fn small_log_pool(kib: usize) -> (Pool<SimMedia>, [PPtr<Account>; 8]) {
    let mut opts = PoolOptions::new("wrap", [8; 16]);
    opts.heap.runtime_len = Some(8192 + 2 * kib * 1024);
    opts.lanes = 2;
    let p = Pool::create(SimMedia::new(POOL), &opts).unwrap();
    let root = setup(&p);
    let a = p.read(root).unwrap().accounts;
    coalesce_only_when_full(&p);
    (p, a)
}

/// A lane that wrapped, with records of 1 line each, so a scan that runs past the
/// newest record lands on an old record's header.
fn wrapped_pool() -> (Pool<SimMedia>, [PPtr<Account>; 8]) {
    let (p, a) = small_log_pool(40);
    for i in 0..1000u64 {
        p.transaction_in(0, |tx| tx.write(a[0], 8, &i)).unwrap();
    }
    (p, a)
}

/// Found by the pmrt model test (`Burst`, then `Reopen`): sequence numbers restarted at 1 on every
/// open. After a clean reopen the first new records were followed in the log by the
/// previous session's records, with higher numbers, so a scan after a crash ran on into
/// them: 640 stale records, whose dead groups then hid the new ones (committed updates
/// lost).
#[test]
fn transactions_after_a_reopen_survive_a_crash() {
    let (p, a) = wrapped_pool();
    let img = p.close().durable_image();
    let (q, _, r) = Pool::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert!(!r.seq_reset, "{r:?}");
    for i in 0..3u64 {
        q.transaction_in(0, |tx| tx.write(a[0], 8, &(5000 + i)))
            .unwrap();
    }
    let (q2, r2) = crash_reopen(&q);
    assert_eq!(r2.records, 3, "only this session's records: {r2:?}");
    assert_eq!(q2.read(a[0]).unwrap().balance, 5002);
}

/// A damaged sequence reservation cannot say which old records are stale: the logs are
/// cleared after recovery and numbering starts over, and new transactions still
/// survive a crash.
#[test]
fn a_damaged_sequence_reservation_clears_the_logs() {
    let (p, a) = wrapped_pool();
    let mut img = p.heap().media().durable_image();
    let at = p.area().off + area::SEQ_OFF;
    img[at] ^= 0x40;
    let (q, _, r) = Pool::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert!(r.seq_reset, "{r:?}");
    assert_eq!(
        q.read(a[0]).unwrap().balance,
        999,
        "recovery ran before the reset"
    );
    for i in 0..3u64 {
        q.transaction_in(0, |tx| tx.write(a[0], 8, &(7000 + i)))
            .unwrap();
    }
    let (q2, r2) = crash_reopen(&q);
    assert!(!r2.seq_reset, "{r2:?}");
    assert_eq!(r2.records, 3, "{r2:?}");
    assert_eq!(q2.read(a[0]).unwrap().balance, 7002);
}

/// Found by the pmrt model test: a record that fits in an empty lane log (with room
/// for a wrap) failed with `TooLarge` when the empty log's head sat mid-ring, since
/// neither the space to the end nor the space before the tail (both about half) could
/// hold it, and an empty log has nothing to coalesce. An empty log now starts over at 0.
#[test]
fn a_record_that_fits_an_empty_log_never_fails_wherever_the_head_is() {
    let (p, a) = small_log_pool(24);
    // Head to the middle of lane 0's ring (one line per transaction), then all dead.
    for i in 0..190u64 {
        p.transaction_in(0, |tx| tx.write(a[0], 8, &i)).unwrap();
    }
    p.coalesce();
    let big = p
        .transaction_in(0, |tx| tx.alloc_bytes(10_000, 8, 5, &[7; 64]))
        .unwrap();
    let (q, _) = crash_reopen(&p);
    let mut b = [0u8; 64];
    q.read_bytes(big.cast::<u8>(), 0, &mut b).unwrap();
    assert_eq!(b, [7; 64]);
    assert_eq!(q.read(a[0]).unwrap().balance, 189);
}

#[test]
fn a_pool_made_again_with_the_same_uuid_never_replays_the_old_pools_records() {
    // Pool A: the root, then a second transaction whose record follows the root's.
    let media = SimMedia::new(POOL);
    let opts = PoolOptions::new("again", [9; 16]);
    let a = Pool::create(&media, &opts).unwrap();
    let root = a.root_or_init(|| [0u64; 4]).unwrap();
    a.transaction(|tx| tx.write(root, 8, &2u64)).unwrap();
    drop(a);
    // Pool B over A's bytes, same UUID (same salt), same first transaction: its record
    // is byte for byte A's first one, so A's second record follows it in the log.
    let b = Pool::create(SimMedia::from_image(media.durable_image()), &opts).unwrap();
    let root_b = b.root_or_init(|| [0u64; 4]).unwrap();
    assert_eq!(root_b, root);
    let (q, r) = crash_reopen(&b);
    assert_eq!(r.committed, 1, "only B's own transaction: {r:?}");
    assert_eq!(
        q.read(root_b).unwrap()[1],
        0,
        "A's second transaction replayed into B"
    );
}

/// Recovery replays allocation metadata before the heap re-indexes its chunk table, so
/// its checks must read the table on media: a root that is an extent allocated in the
/// log (its chunk words only there) is an object by then, though not in the heap's
/// span map built at open.
#[test]
fn an_extent_root_allocated_in_the_log_survives_a_crash() {
    let p = pool();
    coalesce_only_when_full(&p);
    let big = p
        .transaction(|tx| {
            let o = tx.alloc_bytes(300_000, 8, 9, &[0x5A; 64])?;
            tx.set_root(o);
            Ok::<_, Error>(o)
        })
        .unwrap();
    assert!(p.heap().info(big.raw()).unwrap().extent);
    let (q, r) = crash_reopen(&p);
    assert!(r.groups_replayed >= 2, "the allocation was replayed: {r:?}");
    assert_eq!(q.heap().root().map(PPtr::raw), Some(big.raw()));
    let mut b = [0u8; 64];
    q.read_bytes(big, 0, &mut b).unwrap();
    assert_eq!(b, [0x5A; 64]);
}

#[test]
fn a_transaction_of_more_writes_than_a_group_counts_survives_a_crash() {
    // 70,000 explicit writes to one object: more entries than a record group's 16-bit
    // count holds, so they cannot be logged one entry each.
    let p = pool();
    coalesce_only_when_full(&p);
    let obj = p
        .transaction(|tx| tx.alloc_bytes(60 * 1024, 8, 7, &[]))
        .unwrap();
    p.transaction(|tx| {
        for i in 0..70_000u32 {
            let off = (i as usize * 8) % (60 * 1024);
            tx.write(obj, off, &u64::from(i))?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
    let expect = |q: &Pool<SimMedia>| {
        let mut b = vec![0u8; 60 * 1024];
        q.read_bytes(obj, 0, &mut b).unwrap();
        for k in 0..60 * 1024 / 8 {
            let last = (k..70_000).step_by(60 * 1024 / 8).next_back().unwrap();
            assert_eq!(
                b[k * 8..k * 8 + 8],
                u64::from(last as u32).to_le_bytes(),
                "word {k}"
            );
        }
    };
    expect(&p);
    let (q, r) = crash_reopen(&p);
    assert!(r.groups_replayed > 0, "{r:?}");
    expect(&q);
}

/// Two lanes hold groups of one object; a round marks both dead lazily. The newer
/// group's lane may not pass it while the older group's mark could still be lost
/// (recovery would replay the older group over the newer write-back): a held-back tail
/// stays, and a tail that must move makes the other lane's mark durable first.
#[test]
fn a_tail_passing_a_newer_group_first_makes_older_marks_of_other_lanes_durable() {
    let p = pool();
    let root = setup(&p);
    let a = p.read(root).unwrap().accounts[3];
    p.set_coalesce_config(CoalesceConfig {
        lane_turn: 0,
        ..CoalesceConfig::deferred()
    });
    p.coalesce_all();
    p.transaction_in(1, |tx| tx.write(a, 8, &1u64)).unwrap();
    p.transaction_in(0, |tx| tx.write(a, 8, &2u64)).unwrap();
    p.coalesce();
    {
        let lane = &p.lanes[0];
        let mut log = lane.log.lock();
        let before = log.ptail;
        assert!(!p.advance_tail(&mut log, lane, true), "held back");
        assert_eq!(log.ptail, before);
        assert!(p.advance_tail(&mut log, lane, false));
    }
    let (q, _) = crash_reopen(&p);
    assert_eq!(
        q.read(a).unwrap().balance,
        2,
        "the older group was replayed"
    );
}

/// One thread, records left pending: with turns it fills every lane's log before any
/// back-pressure; keeping to one lane, it meets back-pressure after that lane's share.
#[test]
fn one_thread_taking_turns_fills_every_lane_log_before_back_pressure() {
    for turns in [true, false] {
        let mut opts = PoolOptions::new("pmrt-test", [4; 16]);
        opts.heap.runtime_len = Some(8192 + 8 * 32 * 1024);
        let p = Pool::create(SimMedia::new(POOL), &opts).unwrap();
        let root = setup(&p);
        let a = p.read(root).unwrap().accounts;
        p.set_coalesce_config(CoalesceConfig {
            lane_turn: if turns { LANE_TURN } else { 0 },
            ..CoalesceConfig::deferred()
        });
        p.coalesce_all();
        let area = p.area().lane_bytes * p.area().lanes as usize;
        // One-line records for 13/16 of the whole runtime area: more than 7 lanes' 7/8
        // (a turn ends when an eighth is left), less than all 8 lanes' 7/8.
        for i in 0..area * 13 / 16 / 64 {
            p.transaction(|tx| tx.write(a[i % 8], 16 + 8 * (i % 64), &(i as u64)))
                .unwrap();
        }
        let used = p
            .lanes
            .iter()
            .filter(|l| !l.recs.lock().recs.is_empty())
            .count();
        let bp = p.stats().coalescing.by_backpressure;
        if turns {
            assert_eq!((used, bp), (8, 0), "every lane used, no back-pressure");
        } else {
            assert!(
                used == 1 && bp > 0,
                "{used} lanes, {bp} back-pressure rounds"
            );
        }
        let (q, _) = crash_reopen(&p);
        assert_eq!(q.read(a[0]).unwrap().id, 0);
    }
}

#[test]
fn a_transaction_that_moves_an_atomically_published_pointer_stays_so_after_a_crash() {
    let (p, a) = small_log_pool(40);
    let root = p.root::<Root>().unwrap();
    let big = root.raw() + 64;
    // An atomic publication: its `pmalloc` op record stays valid after it returns.
    let x = p.alloc_into(big, 256, 8, 9, pmalloc::Init::Zeroed).unwrap();
    // A transaction moves the pointer into an account (a word the program owns) and
    // clears `big`. Then the lane's log wraps, so the transaction's record is gone and
    // its bytes are only in their homes.
    p.transaction_in(0, |tx| {
        tx.write(a[1], 16, &x.raw())?;
        tx.write(root, 64, &PPtr::<()>::NULL)
    })
    .unwrap();
    for i in 0..1000u64 {
        p.transaction_in(0, |tx| tx.write(a[0], 8, &i)).unwrap();
    }
    let (q, _) = crash_reopen(&p);
    assert_eq!(q.read(a[1]).unwrap().history[0], x.raw());
    assert_eq!(
        q.read(root).unwrap().big,
        PPtr::NULL,
        "the allocation's record was replayed over the transaction's committed write"
    );
}

#[test]
fn an_atomic_publication_into_a_word_a_pending_transaction_wrote_survives_a_crash() {
    let p = pool();
    coalesce_only_when_full(&p);
    let root = setup(&p);
    // A transaction clears `big` (already null: the record still carries the word),
    // and its record stays pending.
    p.transaction(|tx| tx.write(root, 64, &PPtr::<()>::NULL))
        .unwrap();
    // Through the heap directly, this publication was lost after the crash: recovery
    // replayed the transaction's record over it. The pool's own wrapper writes the
    // word's object back first.
    let big = root.raw() + 64;
    let x = p.alloc_into(big, 256, 8, 9, pmalloc::Init::Zeroed).unwrap();
    let (q, _) = crash_reopen(&p);
    assert_eq!(
        q.read(root).unwrap().big.raw(),
        x.raw(),
        "replay of the older transaction undid the publication"
    );
}

#[test]
fn an_object_freed_atomically_with_pending_records_is_not_replayed_into_its_reuse() {
    let p = pool();
    coalesce_only_when_full(&p);
    let root = setup(&p);
    let big = root.raw() + 64;
    let x = p.alloc_into(big, 256, 8, 9, pmalloc::Init::Zeroed).unwrap();
    // A transaction writes the object; its record stays pending.
    p.transaction(|tx| tx.write_bytes(x, 0, &[0xAB; 64]))
        .unwrap();
    // Freed and its slot reused at once, outside any transaction.
    p.free_from(big).unwrap();
    let y = p
        .alloc_into(big, 256, 8, 9, pmalloc::Init::Bytes(&[0x11; 256]))
        .unwrap();
    let (q, _) = crash_reopen(&p);
    let yq = q.read(root).unwrap().big;
    assert_eq!(yq.raw(), y.raw());
    let mut got = [0u8; 256];
    q.read_bytes(PPtr::<u8>::from_raw(y.raw()), 0, &mut got)
        .unwrap();
    assert_eq!(got, [0x11; 256], "x = {:#x}, y = {:#x}", x.raw(), y.raw());
}

#[test]
fn the_pools_atomic_ops_give_typed_errors_for_bad_destinations_and_change_nothing() {
    use pmalloc::{AllocError, DestFault, FreeError};
    let p = pool();
    let root = setup(&p);
    let big = root.raw() + 64;
    let before = p.read(root).unwrap();
    let alloc = |dest| p.alloc_into(dest, 64, 8, 9, pmalloc::Init::Zeroed);
    for (dest, why) in [
        (big + 3, DestFault::Misaligned),
        (u64::MAX - 7, DestFault::OutOfRange),
        (POOL as u64, DestFault::OutOfRange),
    ] {
        assert_eq!(p.heap().container_of(dest), Err(why), "{dest:#x}");
        assert!(
            matches!(alloc(dest), Err(AllocError::BadDest { offset, why: w }) if offset == dest && w == why),
            "{dest:#x}"
        );
        assert!(
            matches!(p.free_from(dest), Err(FreeError::BadDest { offset, why: w }) if offset == dest && w == why),
            "{dest:#x}"
        );
    }
    // A null destination to free, and a destination that holds no object.
    assert!(matches!(p.free_from(big), Err(FreeError::DestNull { offset }) if offset == big));
    p.transaction(|tx| tx.write(root, 64, &PPtr::<()>::from_raw(root.raw() + 8)))
        .unwrap();
    assert!(matches!(p.free_from(big), Err(FreeError::NotAnObject(_))));
    // Publishing over a non-null word is refused too.
    assert!(matches!(alloc(big), Err(AllocError::DestNotNull { .. })));
    p.transaction(|tx| tx.write(root, 64, &PPtr::<()>::NULL))
        .unwrap();
    assert_eq!(p.read(root).unwrap(), before);
    p.heap().check().unwrap();
}

#[test]
fn an_atomic_op_on_a_word_no_pending_transaction_touched_costs_only_its_own_fence() {
    use pmalloc::Init;
    let p = pool();
    let root = setup(&p);
    let big = root.raw() + 64;
    // Every transaction's records written back and their dead marks durable.
    p.coalesce();
    p.alloc_into(big, 64, 8, 9, Init::Uninit).unwrap();
    let before = p.heap().media().counters();
    let n = 20u64;
    for _ in 0..n {
        p.free_from(big).unwrap();
        p.alloc_into(big, 64, 8, 9, Init::Uninit).unwrap();
    }
    let d = p.heap().media().counters().since(&before);
    assert_eq!(d.fences, 2 * n, "one per op, as the heap's own: {d:?}");
    // A transaction on the root leaves a pending record of the word: the next
    // publication writes it back first, with a fence of its own.
    let a7 = p.read(root).unwrap().accounts[7];
    p.transaction(|tx| tx.write(root, 56, &a7)).unwrap();
    let before = p.heap().media().counters();
    p.free_from(big).unwrap();
    let d = p.heap().media().counters().since(&before);
    assert!(d.fences > 1, "the root's record written back first: {d:?}");
    let before = p.heap().media().counters();
    p.alloc_into(big, 64, 8, 9, Init::Uninit).unwrap();
    let d = p.heap().media().counters().since(&before);
    assert_eq!(d.fences, 1, "written back by the free just before: {d:?}");
    let (q, _) = crash_reopen(&p);
    let r = q.read(root).unwrap();
    assert_ne!(r.big, PPtr::NULL);
    assert_eq!(r.accounts[7], a7);
}

#[test]
fn the_pools_heap_refuses_atomic_ops_that_bypass_the_pool() {
    use pmalloc::{AllocError, FreeError, Init};
    let p = pool();
    let root = setup(&p);
    let big = root.raw() + 64;
    let before = p.read(root).unwrap();
    let objects = p.heap().objects().count();
    assert!(p.heap().claim().is_none(), "the pool holds the claim");
    assert_eq!(
        p.heap().alloc_into(big, 64, 8, 9, Init::Zeroed),
        Err(AllocError::Claimed)
    );
    let q = p.alloc_into(big, 64, 8, 9, Init::Zeroed).unwrap();
    assert_eq!(p.heap().free_from(big), Err(FreeError::Claimed));
    assert_eq!(p.heap().free(q), Err(FreeError::Claimed));
    assert_eq!(p.heap().objects().count(), objects + 1);
    p.free_from(big).unwrap();
    assert_eq!(p.read(root).unwrap(), before);
    assert_eq!(p.heap().objects().count(), objects);
    p.heap().check().unwrap();
}
