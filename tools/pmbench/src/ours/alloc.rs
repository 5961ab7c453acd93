//! w4 and w5 on our stack: allocation and free.

use arch::FileMedia;
use pmalloc::{CreateOptions, Heap, Init};
use pmrt::{PPtr, Pool};

use super::{failed, on_fresh_pool, pool_media, timed, EngineError, OursConfig};
use crate::round::{RoundResult, Timing, TxCounters};
use crate::workload::{AllocJob, Metric, TxAllocJob, WorkloadId};

/// Type number of the w4 and w5 objects (PMDK's side uses 1 as well).
const TYPE_NUM: u32 = 1;
/// Type number of the root array (w4) and the slot arrays (w5).
const ROOT_TYPE: u32 = 2;
/// Slots per w5 slot array: 8 KiB objects. Our transactions log objects up to 64 KiB
/// and update larger ones in place under undo logging (4 fences), so one array of
/// 10,000 slots (80 KB, as PMDK's root) would measure that path instead of PMDK's
/// 16-byte snapshot of the slot.
const SLOTS_PER_ARRAY: u32 = 1024;
/// Objects allocated per setup transaction.
const SETUP_BATCH: usize = 100;

/// A fresh pool of `cfg.params.pool_size` bytes (PMDK's size) formatted as a heap.
pub(crate) fn fresh_heap(
    cfg: &OursConfig,
    name: &str,
    size: u64,
) -> Result<Heap<FileMedia>, EngineError> {
    let media = pool_media(cfg, name, size)?;
    Heap::create(media, &CreateOptions::new("pmbench", *b"pmbench-ours-w4\0"))
        .map_err(|e| failed(WorkloadId::W4, 0, e))
}

/// w4: a root array of `job.initial_sizes.len()` slots, each holding an object of its
/// initial size (setup, untimed); then per operation `(slot, size)`: free the slot's
/// object and allocate one of `size` bytes into the slot, with the atomic
/// (non-transactional) API, publishing the slot crash-consistently.
///
/// The slots' pool offsets are computed once (the DRAM table PMDK's loop uses too);
/// each operation is `free_from(slot)` then `alloc_into(slot, size, 8, 1,
/// Init::Uninit)`, as PMDK's `pmemobj_free` + `pmemobj_alloc` with no constructor.
pub fn run_atomic(job: &AllocJob, cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    let path_name = if cfg.eadr { "w4-ours-eadr" } else { "w4-ours" };
    let heap = fresh_heap(cfg, path_name, cfg.params.pool_size)?;
    let result = run_atomic_on(&heap, job);
    let media = heap.close();
    drop(media);
    let _ = std::fs::remove_file(super::pool_path(&cfg.pool_dir, path_name));
    result
}

fn run_atomic_on(heap: &Heap<FileMedia>, job: &AllocJob) -> Result<RoundResult, EngineError> {
    let w = WorkloadId::W4;
    let nslots = job.initial_sizes.len();
    let root = heap
        .alloc_into(
            Heap::<FileMedia>::ROOT,
            nslots * 8,
            8,
            ROOT_TYPE,
            Init::Zeroed,
        )
        .map_err(|e| failed(w, 0, e))?;
    let slots: Vec<u64> = (0..nslots).map(|i| root.field(i * 8)).collect();
    for (i, (&dest, &size)) in slots.iter().zip(&job.initial_sizes).enumerate() {
        heap.alloc_into(dest, size as usize, 8, TYPE_NUM, Init::Uninit)
            .map_err(|e| failed(w, i as u64, e))?;
    }
    let realloc = |ops: &(Vec<u32>, Vec<u32>)| -> Result<(), EngineError> {
        for (i, (&slot, &size)) in ops.0.iter().zip(&ops.1).enumerate() {
            let dest = slots[slot as usize];
            heap.free_from(dest).map_err(|e| failed(w, i as u64, e))?;
            heap.alloc_into(dest, size as usize, 8, TYPE_NUM, Init::Uninit)
                .map_err(|e| failed(w, i as u64, e))?;
        }
        Ok(())
    };
    realloc(&job.warm)?;
    let (r, ns, counters) = timed(heap.media(), || realloc(&job.timed));
    r?;
    // Every slot still holds one live object, and the heap agrees with its headers.
    heap.check().map_err(|e| failed(w, 0, e))?;
    let live = heap.objects_of_type(TYPE_NUM).count();
    if live != nslots {
        return Err(failed(w, 0, Mismatch::Count { live, nslots }));
    }
    Ok(RoundResult {
        timings: vec![Timing {
            metric: Metric::Op,
            ns,
            units: job.timed.0.len() as u64,
        }],
        counters,
        tx: None,
        by_metric: Vec::new(),
    })
}

/// The heap after a round differs from what the operations left.
#[derive(Debug)]
enum Mismatch {
    /// w4: the number of live objects is not the number of slots.
    Count {
        /// Live objects of the workload's type.
        live: usize,
        /// Slots.
        nslots: usize,
    },
    /// w5: a slot does not hold the object the DRAM model says it does.
    Slot {
        /// The slot.
        slot: usize,
        /// The pointer in the pool.
        found: u64,
        /// The pointer the model holds.
        expected: u64,
    },
    /// w5: the live objects are not exactly the slots' objects.
    LiveSet {
        /// Live objects of the workload's type.
        live: usize,
        /// Slots.
        nslots: usize,
        /// A live object no slot holds, or a slot's object that is not live.
        stray: u64,
    },
    /// w5: an object has another size than the one allocated.
    Size {
        /// The object.
        obj: u64,
        /// Its size.
        size: u64,
        /// The size allocated.
        expected: u64,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Count { live, nslots } => {
                write!(f, "{live} live objects for {nslots} slots")
            }
            Mismatch::Slot {
                slot,
                found,
                expected,
            } => write!(f, "slot {slot} holds {found:#x}, the model {expected:#x}"),
            Mismatch::LiveSet {
                live,
                nslots,
                stray,
            } => write!(
                f,
                "{live} live objects for {nslots} slots; {stray:#x} is in one set only"
            ),
            Mismatch::Size {
                obj,
                size,
                expected,
            } => write!(f, "object {obj:#x} has {size} bytes, allocated {expected}"),
        }
    }
}

impl std::error::Error for Mismatch {}

/// w5: `job.slots` slots holding one object of `job.size` bytes each (setup, untimed);
/// then per operation one transaction on slot `s` that, as PMDK's `TX_BEGIN`,
/// `pmemobj_tx_add_range_direct(slot)`, `pmemobj_tx_free(*slot)`, `*slot =
/// pmemobj_tx_alloc(size)`: reads the slot (`Tx::read_bytes`), frees its object
/// (`Tx::free`), allocates a new one (`Tx::alloc_bytes`, zeroed: our transactional
/// allocation has no uninitialised variant) and stores it in the slot (`Tx::write`).
///
/// The setup is written back (`Pool::coalesce`) before the warm-up. The slots live in
/// arrays of [`SLOTS_PER_ARRAY`] (see there why not one array); the
/// slots' locations are computed once, as PMDK's loop indexes its root directly. A
/// DRAM model keeps each slot's pointer (one store per operation). After the round
/// (untimed): everything is written back (`Pool::coalesce`, so freed objects are
/// released), then every slot must hold the model's object, the live objects of the
/// workload's type must be exactly the slots' objects, each of `job.size` bytes, and the
/// heap must check clean, or the round fails.
pub fn run_tx(job: &TxAllocJob, cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    on_fresh_pool(cfg, WorkloadId::W5, 8, None, |pool| run_tx_on(pool, job))
}

/// Where each w5 slot is: its array and its byte offset there.
fn slot_arrays(pool: &Pool<FileMedia>, nslots: u32) -> Result<Vec<(PPtr<()>, usize)>, EngineError> {
    let w = WorkloadId::W5;
    let arrays = pool
        .transaction(|tx| {
            (0..nslots.div_ceil(SLOTS_PER_ARRAY))
                .map(|a| {
                    let n = (nslots - a * SLOTS_PER_ARRAY).min(SLOTS_PER_ARRAY);
                    tx.alloc_bytes(n as usize * 8, 8, ROOT_TYPE, &[])
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| failed(w, 0, pmrt::Error::from(e)))?;
    let per = SLOTS_PER_ARRAY as usize;
    Ok((0..nslots as usize)
        .map(|s| (arrays[s / per], (s % per) * 8))
        .collect())
}

fn run_tx_on(pool: &Pool<FileMedia>, job: &TxAllocJob) -> Result<RoundResult, EngineError> {
    let w = WorkloadId::W5;
    let size = job.size as usize;
    let slots = slot_arrays(pool, job.slots)?;
    let mut model = vec![0u64; slots.len()];
    for (k, chunk) in slots.chunks(SETUP_BATCH).enumerate() {
        let objs = pool
            .transaction(|tx| {
                chunk
                    .iter()
                    .map(|&(arr, off)| {
                        let p = tx.alloc_bytes(size, 8, TYPE_NUM, &[])?;
                        tx.write(arr, off, &p.raw())?;
                        Ok(p.raw())
                    })
                    .collect::<Result<Vec<_>, pmrt::Error>>()
            })
            .map_err(|e| failed(w, (k * SETUP_BATCH) as u64, pmrt::Error::from(e)))?;
        model[k * SETUP_BATCH..][..objs.len()].copy_from_slice(&objs);
    }
    // The setup's records are written back now, as PMDK's allocations are durable when
    // they return (see `update::run`).
    pool.coalesce();
    let realloc = |ops: &[u32], model: &mut [u64]| -> Result<(), EngineError> {
        for (i, &slot) in ops.iter().enumerate() {
            let (arr, off) = slots[slot as usize];
            let new = pool
                .transaction(|tx| {
                    let mut old = [0u8; 8];
                    tx.read_bytes(arr, off, &mut old)?;
                    tx.free(PPtr::<()>::from_raw(u64::from_le_bytes(old)))?;
                    let p = tx.alloc_bytes(size, 8, TYPE_NUM, &[])?;
                    tx.write(arr, off, &p.raw())?;
                    Ok::<_, pmrt::Error>(p.raw())
                })
                .map_err(|e| failed(w, i as u64, pmrt::Error::from(e)))?;
            model[slot as usize] = new;
        }
        Ok(())
    };
    realloc(&job.warm, &mut model)?;
    let before = pool.stats();
    let (r, ns, counters) = timed(pool.heap().media(), || realloc(&job.timed, &mut model));
    r?;
    let tx = TxCounters::since(pool, &before);
    verify_slots(pool, &slots, &model, job.size)?;
    Ok(RoundResult {
        timings: vec![Timing {
            metric: Metric::Op,
            ns,
            units: job.timed.len() as u64,
        }],
        counters,
        tx: Some(tx),
        by_metric: Vec::new(),
    })
}

/// Checks the slots and the live objects against `model` (see [`run_tx`]).
fn verify_slots(
    pool: &Pool<FileMedia>,
    slots: &[(PPtr<()>, usize)],
    model: &[u64],
    size: u32,
) -> Result<(), EngineError> {
    let fail = |e: Mismatch| failed(WorkloadId::W5, 0, e);
    pool.coalesce();
    for (slot, (&(arr, off), &expected)) in slots.iter().zip(model).enumerate() {
        let mut b = [0u8; 8];
        pool.read_bytes(arr, off, &mut b)
            .map_err(|e| failed(WorkloadId::W5, slot as u64, e))?;
        let found = u64::from_le_bytes(b);
        if found != expected {
            return Err(fail(Mismatch::Slot {
                slot,
                found,
                expected,
            }));
        }
    }
    let mut live = Vec::with_capacity(model.len());
    for o in pool.heap().objects_of_type(TYPE_NUM) {
        if o.size != u64::from(size) {
            return Err(fail(Mismatch::Size {
                obj: o.ptr,
                size: o.size,
                expected: size.into(),
            }));
        }
        live.push(o.ptr);
    }
    live.sort_unstable();
    let mut want = model.to_vec();
    want.sort_unstable();
    if live != want {
        let stray = live.iter().zip(&want).find(|(a, b)| a != b).map_or_else(
            || match live.len().cmp(&want.len()) {
                std::cmp::Ordering::Greater => live[want.len()],
                _ => want[live.len()],
            },
            |(a, _)| *a,
        );
        return Err(fail(Mismatch::LiveSet {
            live: live.len(),
            nslots: want.len(),
            stray,
        }));
    }
    pool.heap()
        .check()
        .map_err(|e| failed(WorkloadId::W5, 0, e))?;
    Ok(())
}
