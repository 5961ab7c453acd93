//! open on our stack (recover is in [`super::recover`]).

use std::path::PathBuf;
use std::sync::Mutex;

use arch::{FileMedia, FileOptions, Media};
use pmalloc::{CreateOptions, Heap, Init, OpenOptions};

use super::{
    counted_metrics, counted_since_creation, failed, map_pool, pool_path, timed, EngineError,
    OursConfig, LAYOUT,
};
use crate::round::{RoundResult, Timing};
use crate::workload::{Metric, OpenJob, WorkloadId};

/// Type number of the open workload's objects (PMDK's side uses 1 as well).
const TYPE_NUM: u32 = 1;
/// Type number of its root (one slot for the first allocation after open).
const ROOT_TYPE: u32 = 2;

/// The open workload's pool, built once per process and kept for every round (and
/// both configurations: the pool bytes do not depend on eADR).
static BUILT: Mutex<Option<(PathBuf, OpenJob)>> = Mutex::new(None);

/// The pool file of the open workload, building it first if this process has not.
fn built_pool(job: &OpenJob, cfg: &OursConfig) -> Result<PathBuf, EngineError> {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((path, j)) = &*built {
        if j == job && path.exists() {
            return Ok(path.clone());
        }
    }
    let path = pool_path(&cfg.pool_dir, "open-ours");
    let len = usize::try_from(job.pool_size)
        .map_err(|_| EngineError::Media(arch::FileMediaError::BadLength { len: job.pool_size }))?;
    let media = FileMedia::open(
        &path,
        FileOptions {
            create_len: Some(len),
            force_pmem: true,
            eadr: false,
        },
    )?;
    let w = WorkloadId::Open;
    let heap = Heap::create(media, &CreateOptions::new(LAYOUT, *b"pmbench-ours-opn"))
        .map_err(|e| failed(w, 0, e))?;
    heap.alloc_into(Heap::<FileMedia>::ROOT, 16, 8, ROOT_TYPE, Init::Zeroed)
        .map_err(|e| failed(w, 0, e))?;
    for (i, &size) in job.sizes.iter().enumerate() {
        // No destination: the objects are reached by iterating the pool, as PMDK's
        // build (`pmemobj_alloc` with a null oidp) leaves them.
        heap.alloc(size as usize, 8, TYPE_NUM, Init::Uninit)
            .map_err(|e| failed(w, i as u64, e))?;
    }
    drop(heap.close());
    *built = Some((path.clone(), job.clone()));
    Ok(path)
}

/// Removes the open workload's pool file, if this process built one.
pub fn remove_built_pool() {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((path, _)) = built.take() {
        let _ = std::fs::remove_file(path);
    }
}

/// open: build a pool of `job.pool_size` bytes holding one object per entry of
/// `job.sizes` (once, untimed; keep it between rounds), then per round time three
/// regions in a fresh mapping: the pool open, the first allocation after it (128 B),
/// and a walk over every live object reading its first 8 bytes (units = objects
/// walked). Free the allocation again so every round opens the same pool.
///
/// The open region is `FileMedia::open` (the mapping) plus `Heap::open`, as
/// `pmemobj_open` maps and opens; the first allocation is `alloc_into` the root's slot;
/// the walk is `Heap::objects` reading each object's first word through the mapping.
pub fn run_open(job: &OpenJob, cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    let w = WorkloadId::Open;
    let path = built_pool(job, cfg)?;
    let start = std::time::Instant::now();
    let media = map_pool(cfg, &path, None)?;
    let (heap, report) = Heap::open(
        media,
        &OpenOptions {
            layout: Some(LAYOUT),
        },
    )
    .map_err(|e| failed(w, 0, e))?;
    let open_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    // The media is new: its counters since creation are the open's.
    let open_counters = counted_since_creation(heap.media());
    if report.replayed != 0 || !report.damage.is_empty() {
        return Err(failed(w, 0, NotClean(format!("{report:?}"))));
    }
    let root = heap
        .root()
        .ok_or_else(|| failed(w, 0, NotClean("no root".into())))?;
    let slot = root.field(0);
    let (first, alloc_ns, counters) = timed(heap.media(), || {
        heap.alloc_into(slot, 128, 8, TYPE_NUM, Init::Uninit)
    });
    first.map_err(|e| failed(w, 0, e))?;
    let base = heap.media().base_ptr().map(|p| p.as_ptr() as usize);
    let ((walked, sum), walk_ns, walk_counters) = timed(heap.media(), || {
        let mut n = 0u64;
        let mut sum = 0u64;
        for o in heap.objects() {
            sum = sum.wrapping_add(match base {
                // SAFETY: `o.ptr` is a live object of at least 8 bytes (sizes are 64 B
                // and up) inside the mapping; nothing writes it during the walk. A
                // volatile read, as the C walk does, so the loads are not optimised out.
                Some(b) => unsafe { core::ptr::read_volatile((b + o.ptr as usize) as *const u64) },
                None => heap.media().read_u64(o.ptr as usize),
            });
            n += 1;
        }
        (n, sum)
    });
    std::hint::black_box(sum);
    // The root, the build's objects and the first allocation.
    let expect = job.sizes.len() as u64 + 2;
    if walked != expect {
        return Err(failed(
            w,
            0,
            NotClean(format!("walked {walked} objects, built {expect}")),
        ));
    }
    heap.free_from(slot).map_err(|e| failed(w, 0, e))?;
    drop(heap.close());
    Ok(RoundResult {
        timings: vec![
            Timing {
                metric: Metric::Open,
                ns: open_ns,
                units: 1,
            },
            Timing {
                metric: Metric::FirstAlloc,
                ns: alloc_ns,
                units: 1,
            },
            Timing {
                metric: Metric::Walk,
                ns: walk_ns,
                units: walked,
            },
        ],
        counters: None,
        tx: None,
        by_metric: counted_metrics([
            (Metric::Open, open_counters),
            (Metric::FirstAlloc, counters),
            (Metric::Walk, walk_counters),
        ]),
    })
}

/// The pool was not as the build left it.
#[derive(Debug)]
struct NotClean(String);

impl std::fmt::Display for NotClean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "open workload pool not as built: {}", self.0)
    }
}

impl std::error::Error for NotClean {}
