//! w4 and w5 on our stack: allocation and free.

use arch::FileMedia;
use pmalloc::{CreateOptions, Heap, Init};

use super::{pool_media, timed, EngineError, OursConfig};
use crate::round::{RoundResult, Timing};
use crate::workload::{AllocJob, Metric, TxAllocJob, WorkloadId};

/// Type number of the w4 objects (PMDK's side uses 1 as well).
const TYPE_NUM: u32 = 1;
/// Type number of the root array.
const ROOT_TYPE: u32 = 2;

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

/// An [`EngineError::Failed`] for `workload` at op `op`.
pub(crate) fn failed(
    workload: WorkloadId,
    op: u64,
    e: impl std::error::Error + Send + Sync + 'static,
) -> EngineError {
    EngineError::Failed {
        workload,
        op,
        source: Box::new(e),
    }
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
        return Err(failed(w, 0, CountMismatch { live, nslots }));
    }
    Ok(RoundResult {
        timings: vec![Timing {
            metric: Metric::Op,
            ns,
            units: job.timed.0.len() as u64,
        }],
        counters: Some(counters),
        tx: None,
        by_metric: Vec::new(),
    })
}

/// The heap held a different number of objects than slots after a round.
#[derive(Debug)]
struct CountMismatch {
    live: usize,
    nslots: usize,
}

impl std::fmt::Display for CountMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} live objects for {} slots", self.live, self.nslots)
    }
}

impl std::error::Error for CountMismatch {}

/// w5: `job.slots` slots with objects of `job.size` bytes (setup); then per operation one
/// transaction that frees the object in `slot`, allocates a new one of `job.size` bytes
/// and stores it in the slot. Needs `pmrt` transactions.
pub fn run_tx(_job: &TxAllocJob, _cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    Err(EngineError::NotBuilt)
}
