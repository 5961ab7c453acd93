//! w1, w2, w3, w6, w7 and mixed on our stack: transactional updates of existing objects.

use arch::FileMedia;
use pmrt::{PPtr, Pool};

use super::{failed, on_fresh_pool, timed, EngineError, OursConfig};
use crate::round::{RoundResult, Timing, TxCounters};
use crate::workload::{Metric, UpdateJob, UpdateOps, WorkloadId};

/// Type number of the updated objects.
const TYPE_NUM: u32 = 1;

/// One round: allocate `job.objects` objects of `job.object_size` bytes in a pool of
/// `cfg.params.pool_size`, run `job.warm` untimed, then time `job.timed`. Operation `i`
/// is one transaction that updates `[off[i], off[i] + len)` (`len` = `job.len`, or the
/// operation's own length for mixed) of object `obj[i]` with
/// 8-byte words of value `first + i` (`first` = 1 for warm-up, warm-up length + 1 for
/// the timed ops), as the PMDK shim does: `Tx::write_bytes`, the counterpart of
/// `pmemobj_tx_add_range_direct` plus the stores. With `job.threads == 2` the first
/// half of the operations runs on one thread and the second half on another,
/// concurrently; the region then lasts until both finish.
///
/// The allocations are written back (`Pool::coalesce`) before the warm-up. After the
/// round every object is compared with a DRAM model of the updates, so a round that
/// lost or misplaced a write fails instead of reporting a time.
pub fn run(id: WorkloadId, job: &UpdateJob, cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    on_fresh_pool(cfg, id, cfg.lanes.unwrap_or(8), None, |pool| {
        run_on(id, pool, job)
    })
}

fn run_on(
    id: WorkloadId,
    pool: &Pool<FileMedia>,
    job: &UpdateJob,
) -> Result<RoundResult, EngineError> {
    let objs = alloc_objects(id, pool, job.objects, job.object_size)?;
    // The allocations' records are written back now, as PMDK's allocations are durable
    // when they return: the timed region measures the updates, not the setup's debt.
    pool.coalesce();
    let mut model = vec![0u64; job.objects as usize * job.object_size as usize / 8];
    let warm_n = job.warm.obj.len() as u64;
    updates(id, pool, &objs, job, &job.warm, 1)?;
    apply(&mut model, job, &job.warm, 1);
    let before = pool.stats();
    let (r, ns, counters) = timed(pool.heap().media(), || {
        updates(id, pool, &objs, job, &job.timed, warm_n + 1)
    });
    r?;
    let tx = TxCounters::since(pool, &before);
    apply(&mut model, job, &job.timed, warm_n + 1);
    verify(id, pool, &objs, job, &model)?;
    Ok(RoundResult {
        timings: vec![Timing {
            metric: Metric::Op,
            ns,
            units: job.timed.obj.len() as u64,
        }],
        counters,
        tx: Some(tx),
        by_metric: Vec::new(),
    })
}

/// `n` zeroed objects of `size` bytes, allocated 100 per transaction.
pub(crate) fn alloc_objects(
    id: WorkloadId,
    pool: &Pool<FileMedia>,
    n: u32,
    size: u32,
) -> Result<Vec<PPtr<()>>, EngineError> {
    let mut objs = Vec::with_capacity(n as usize);
    while objs.len() < n as usize {
        let batch = (n as usize - objs.len()).min(100);
        let got = pool
            .transaction(|tx| {
                (0..batch)
                    .map(|_| tx.alloc_bytes(size as usize, 8, TYPE_NUM, &[]))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| failed(id, objs.len() as u64, pmrt::Error::from(e)))?;
        objs.extend(got);
    }
    Ok(objs)
}

/// Runs `ops` (split over `job.threads` threads); op `i` stores `first + i`.
pub(crate) fn updates(
    id: WorkloadId,
    pool: &Pool<FileMedia>,
    objs: &[PPtr<()>],
    job: &UpdateJob,
    ops: &UpdateOps,
    first: u64,
) -> Result<(), EngineError> {
    let n = ops.obj.len();
    if job.threads < 2 {
        return update_range(id, pool, objs, job.len, ops, 0..n, first);
    }
    let half = n / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| update_range(id, pool, objs, job.len, ops, 0..half, first));
        let b = update_range(id, pool, objs, job.len, ops, half..n, first);
        a.join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
            .and(b)
    })
}

fn update_range(
    id: WorkloadId,
    pool: &Pool<FileMedia>,
    objs: &[PPtr<()>],
    len: u32,
    ops: &UpdateOps,
    range: std::ops::Range<usize>,
    first: u64,
) -> Result<(), EngineError> {
    let mut buf = vec![0u8; len as usize];
    for i in range {
        let v = first + i as u64;
        let data = &mut buf[..ops.len_of(i, len) as usize];
        for w in data.chunks_exact_mut(8) {
            w.copy_from_slice(&v.to_le_bytes());
        }
        let p = objs[ops.obj[i] as usize];
        pool.transaction(|tx| tx.write_bytes(p, ops.off[i] as usize, data))
            .map_err(|e| failed(id, i as u64, pmrt::Error::from(e)))?;
    }
    Ok(())
}

/// Applies `ops` (op `i` stores `first + i`) to `model`, the DRAM image of the objects
/// (`job.object_size / 8` words each).
pub(crate) fn apply(model: &mut [u64], job: &UpdateJob, ops: &UpdateOps, first: u64) {
    let words = job.object_size as usize / 8;
    for (i, (&o, &off)) in ops.obj.iter().zip(&ops.off).enumerate() {
        let at = o as usize * words + off as usize / 8;
        model[at..at + ops.len_of(i, job.len) as usize / 8].fill(first + i as u64);
    }
}

/// Compares every object with `model`.
pub(crate) fn verify(
    id: WorkloadId,
    pool: &Pool<FileMedia>,
    objs: &[PPtr<()>],
    job: &UpdateJob,
    model: &[u64],
) -> Result<(), EngineError> {
    let size = job.object_size as usize;
    let mut buf = vec![0u8; size];
    for (k, p) in objs.iter().enumerate() {
        pool.heap()
            .read_bytes(p.cast::<u8>(), 0, &mut buf)
            .map_err(|e| failed(id, k as u64, e))?;
        let want = &model[k * size / 8..(k + 1) * size / 8];
        let same = buf
            .chunks_exact(8)
            .zip(want)
            .all(|(b, w)| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) == *w);
        if !same {
            return Err(failed(id, k as u64, Mismatch { object: k }));
        }
    }
    Ok(())
}

/// An object's bytes differed from the model after a round.
#[derive(Debug)]
pub(crate) struct Mismatch {
    /// Index of the object.
    pub object: usize,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "object {} differs from the model after the round",
            self.object
        )
    }
}

impl std::error::Error for Mismatch {}
