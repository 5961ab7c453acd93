//! Transactions from several threads on small lane logs: back-pressure on one lane
//! while another thread's coalescing round is writing back the same lane's records
//! (it took their chains, it has not marked them yet) must wait, never fail.

use std::sync::atomic::{AtomicBool, Ordering};

use arch::sim::SimMedia;
use pmrt::{CoalesceConfig, PPtr, Pool, PoolOptions};

const OBJECTS: usize = 64;

#[test]
fn threads_under_back_pressure_never_see_a_full_log_fail_a_transaction() {
    // Each thread on its own lane, then both following the lanes' turns.
    for turns in [false, true] {
        run(turns);
    }
}

fn run(turns: bool) {
    let mut opts = PoolOptions::new("pmrt-threads", [9; 16]);
    opts.heap.runtime_len = Some(8192 + 2 * 16 * 1024);
    opts.lanes = 2;
    let pool = Pool::create(SimMedia::new(8 << 20), &opts).unwrap();
    pool.set_coalesce_config(CoalesceConfig {
        behind_age: 0,
        lane_turn: if turns { pmrt::LANE_TURN } else { 0 },
        ..CoalesceConfig::frequent()
    });
    let objs: Vec<PPtr<[u64; 16]>> = (0..OBJECTS)
        .map(|_| pool.transaction(|tx| tx.alloc([0u64; 16])).unwrap())
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // A third thread on two cores: the workers get preempted, some of them in the
        // middle of a coalescing round.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                let (pool, objs) = (&pool, &objs);
                s.spawn(move || {
                    for i in 0..40_000u64 {
                        // Both threads write every object.
                        let o = objs[((i * 7 + t * 13) % OBJECTS as u64) as usize];
                        let write = |tx: &mut pmrt::Tx<'_, SimMedia>| {
                            tx.write(o, 8 * (i % 16) as usize, &i)
                        };
                        let r = if turns {
                            pool.transaction(write)
                        } else {
                            pool.transaction_in(t as usize, write)
                        };
                        r.unwrap_or_else(|e| {
                            panic!("turns {turns}, thread {t}, transaction {i}: {e}")
                        });
                    }
                })
            })
            .collect();
        let results: Vec<_> = workers
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect();
        stop.store(true, Ordering::Relaxed);
        for r in results {
            if let Err(e) = r {
                std::panic::resume_unwind(e);
            }
        }
    });
    pool.coalesce();
    assert_eq!(pool.stats().aborts, 0);
}

/// One thread publishes and frees with `pmalloc`'s atomic ops (`Pool::alloc_into`,
/// `free_from`) while another runs transactions that allocate, free and write: the
/// settles this brings into coalescing rounds and into the transactions' allocations
/// take every `pmalloc` lane, so this checks they neither deadlock nor break the heap.
#[test]
fn atomic_ops_and_transactions_from_two_threads_settle_without_deadlock() {
    let mut opts = PoolOptions::new("pmrt-mixed", [7; 16]);
    opts.heap.runtime_len = Some(8192 + 2 * 16 * 1024);
    opts.lanes = 2;
    // A small pool: the transactions' allocations run out of chunks while empty runs
    // wait for a checkpoint, and must take one instead of failing.
    let pool = Pool::create(SimMedia::new(8 << 20), &opts).unwrap();
    pool.set_coalesce_config(CoalesceConfig::frequent());
    let root = pool.root_or_init(|| [0u64; 16]).unwrap();
    std::thread::scope(|s| {
        let atomic = s.spawn(|| {
            for i in 0..4_000u64 {
                let dest = root.raw() + 8 * (i % 8);
                if pool.read(root).unwrap()[(i % 8) as usize] == 0 {
                    pool.alloc_into(dest, 64, 8, 5, pmalloc::Init::Zeroed)
                        .unwrap();
                } else {
                    pool.free_from(dest).unwrap();
                }
            }
        });
        let tx = s.spawn(|| {
            for i in 0..4_000u64 {
                // Fields 8.. belong to this thread.
                let f = 8 + (i % 8) as usize;
                pool.transaction_in(1, |tx| {
                    let cur = tx.read(root)?[f];
                    if cur == 0 {
                        let p = tx.alloc([i; 8])?;
                        tx.write(root, f * 8, &p.raw())
                    } else if i % 3 == 0 {
                        tx.free(PPtr::<[u64; 8]>::from_raw(cur))?;
                        tx.write(root, f * 8, &0u64)
                    } else {
                        tx.write(PPtr::<[u64; 8]>::from_raw(cur), 8, &i)
                    }
                })
                .unwrap();
            }
        });
        atomic.join().unwrap();
        tx.join().unwrap();
    });
    pool.coalesce();
    pool.heap().check().unwrap();
}
