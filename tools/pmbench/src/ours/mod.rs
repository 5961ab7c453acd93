//! Our stack's side of every workload.
//!
//! [`OursEngine`] is the one entry point the harness calls; [`Ours`] implements it by
//! dispatching to one module per workload family:
//!
//! | module | workloads | runs on |
//! |---|---|---|
//! | [`update`] | w1, w2, w3, w6, w7, mixed | `pmrt` transactions over `pmalloc` objects |
//! | [`alloc`] | w4, w5 | `pmalloc` atomic allocation; `pmrt` transactional allocation |
//! | [`open`] | open | `pmalloc` pool open and walk |
//! | [`recover`] | recover | `pmrt` recovery after a crash in a child process |
//!
//! A workload whose stack is missing returns [`EngineError::NotBuilt`] and the report
//! says "not built yet" (none today). Each body creates the pool with [`pool_media`]
//! or [`fresh_pool`], runs the job's `warm` operations untimed, then times the `timed`
//! operations with [`timed`], which also takes the `arch` counters of the region
//! (flushed lines, fences, non-temporal bytes) for the report.

pub mod alloc;
pub mod open;
pub mod recover;
pub mod update;

use std::path::{Path, PathBuf};
use std::time::Instant;

use arch::{FileMedia, FileMediaError, FileOptions, Media};

use crate::round::{RoundCounters, RoundResult};
use crate::workload::{Job, Metric, Params, WorkloadId};

/// How our side runs a round.
#[derive(Debug, Clone)]
pub struct OursConfig {
    /// Folder for pool files (`/dev/shm` by default).
    pub pool_dir: PathBuf,
    /// Skip flushes (keep fences), the counterpart of PMDK's `PMEM_NO_FLUSH=1`.
    pub eadr: bool,
    /// The workload's sizes.
    pub params: Params,
    /// Coalescing configuration of `pmrt` pools; `None`: the pool's default (the
    /// ablation sets eager write-back or count-only here).
    pub coalesce: Option<pmrt::CoalesceConfig>,
    /// Lanes of the update workloads' pools; `None`: 8, as PMDK's side has many (the
    /// ablation gives one thread the whole runtime area with 1).
    pub lanes: Option<u32>,
    /// Count flushes, fences and bytes (`arch` counters) over the round. Off, the
    /// pool's media does not count (an update is one load and a branch) and the round
    /// reports no counts: timed rounds run so, as PMDK's do, and one more round of ours
    /// counts (see `harness::run_workload`).
    pub count: bool,
}

/// Why our side produced no result.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The stack this workload needs (`pmalloc`, `pmrt`) is not written yet.
    NotBuilt,
    /// The pool file could not be created or mapped.
    Media(FileMediaError),
    /// The stack reported an error while running the workload.
    Failed {
        /// The workload.
        workload: WorkloadId,
        /// The operation index where it failed.
        op: u64,
        /// The stack's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::NotBuilt => f.write_str("not built yet"),
            EngineError::Media(e) => write!(f, "pool file: {e}"),
            EngineError::Failed {
                workload,
                op,
                source,
            } => write!(f, "{workload} failed at op {op}: {source}"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::NotBuilt => None,
            EngineError::Media(e) => Some(e),
            EngineError::Failed { source, .. } => Some(source.as_ref()),
        }
    }
}

impl From<FileMediaError> for EngineError {
    fn from(e: FileMediaError) -> Self {
        EngineError::Media(e)
    }
}

/// A stack that can run the workloads.
pub trait OursEngine {
    /// Runs one round of `job` (workload `id`): setup and warm-up untimed, then the
    /// timed region(s), one [`crate::round::Timing`] per metric of `id`.
    fn run(&self, id: WorkloadId, job: &Job, cfg: &OursConfig) -> Result<RoundResult, EngineError>;
}

/// This project's stack (`pmalloc` + `pmrt`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ours;

impl OursEngine for Ours {
    fn run(&self, id: WorkloadId, job: &Job, cfg: &OursConfig) -> Result<RoundResult, EngineError> {
        match job {
            Job::Update(j) => update::run(id, j, cfg),
            Job::Alloc(j) => alloc::run_atomic(j, cfg),
            Job::TxAlloc(j) => alloc::run_tx(j, cfg),
            Job::Open(j) => open::run_open(j, cfg),
            Job::Recover(j) => recover::run(j, cfg),
        }
    }
}

/// Creates (truncating) the pool file `name` in the pool folder, `size` bytes, mapped
/// as emulated pmem (real flush instructions, or none with `cfg.eadr`). The same pool
/// size as PMDK's is passed by the callers.
pub fn pool_media(cfg: &OursConfig, name: &str, size: u64) -> Result<FileMedia, EngineError> {
    let len = usize::try_from(size)
        .map_err(|_| EngineError::Media(FileMediaError::BadLength { len: size }))?;
    map_pool(cfg, &pool_path(&cfg.pool_dir, name), Some(len))
}

/// Maps the pool file `path` (created with `create_len` bytes when given) as a timed
/// round's media: emulated pmem, eADR as `cfg` says, counting only when `cfg.count`.
pub fn map_pool(
    cfg: &OursConfig,
    path: &Path,
    create_len: Option<usize>,
) -> Result<FileMedia, EngineError> {
    let media = FileMedia::open(
        path,
        FileOptions {
            create_len,
            force_pmem: true,
            eadr: cfg.eadr,
        },
    )?;
    media.set_counting(cfg.count);
    Ok(media)
}

/// The path of pool `name` in `dir` (process id included, so concurrent runs differ).
pub fn pool_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("pmbench-{}-{name}.pool", std::process::id()))
}

/// Runs `region` and returns its elapsed nanoseconds and, when `media` counts
/// ([`OursConfig::count`]), the growth of its counters over it.
pub fn timed<R>(media: &FileMedia, region: impl FnOnce() -> R) -> (R, u64, Option<RoundCounters>) {
    let before = media.counting().then(|| media.counters());
    let start = Instant::now();
    // Separate functions, so `pmbench instructions` can count either mode's timed
    // region by name, and leave the counted round out.
    let r = if before.is_some() {
        region_counted(region)
    } else if media.info().eadr {
        region_eadr(region)
    } else {
        region_flush(region)
    };
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    (r, ns, before.map(|b| media.counters().since(&b).into()))
}

/// A media's counters since it was created, when it counts (the open workloads' media
/// is new, so that is the open's work).
pub fn counted_since_creation(media: &FileMedia) -> Option<RoundCounters> {
    media.counting().then(|| media.counters().into())
}

/// A round's counts per metric, keeping those that were counted (a media that did not
/// count gives none).
pub fn counted_metrics<const N: usize>(
    counts: [(Metric, Option<RoundCounters>); N],
) -> Vec<(Metric, RoundCounters)> {
    counts
        .into_iter()
        .filter_map(|(m, c)| Some((m, c?)))
        .collect()
}

/// Runs a timed region on a flushing media. Never inlined: `pmbench instructions`
/// counts what runs inside it.
#[inline(never)]
pub fn region_flush<R>(region: impl FnOnce() -> R) -> R {
    let r = region();
    // Unlike its twin's: identical bodies would be folded into one symbol.
    core::hint::black_box(0u8);
    r
}

/// As [`region_flush`], on an eADR media.
#[inline(never)]
pub fn region_eadr<R>(region: impl FnOnce() -> R) -> R {
    let r = region();
    core::hint::black_box(1u8);
    r
}

/// As [`region_flush`], in the round that counts (either mode).
#[inline(never)]
pub fn region_counted<R>(region: impl FnOnce() -> R) -> R {
    let r = region();
    core::hint::black_box(2u8);
    r
}

/// Layout name of our pools.
pub const LAYOUT: &str = "pmbench";

/// A fresh `pmrt` pool named `name` of `size` bytes (PMDK's pool size for the same
/// workload), with `lanes` transaction lanes, the default runtime area (1/16 of the
/// pool) and `cfg.coalesce` applied.
pub fn fresh_pool(
    cfg: &OursConfig,
    workload: WorkloadId,
    name: &str,
    size: u64,
    lanes: u32,
) -> Result<pmrt::Pool<FileMedia>, EngineError> {
    fresh_pool_with_log(cfg, workload, name, size, lanes, None)
}

/// As [`fresh_pool`], with a runtime area of `runtime_len` bytes (the lane logs share
/// it) when given.
pub fn fresh_pool_with_log(
    cfg: &OursConfig,
    workload: WorkloadId,
    name: &str,
    size: u64,
    lanes: u32,
    runtime_len: Option<usize>,
) -> Result<pmrt::Pool<FileMedia>, EngineError> {
    let media = pool_media(cfg, name, size)?;
    let mut opts = pmrt::PoolOptions::new(LAYOUT, *b"pmbench-ours-pmr");
    opts.lanes = lanes;
    opts.heap.runtime_len = runtime_len;
    let pool = pmrt::Pool::create(media, &opts).map_err(|e| failed(workload, 0, e))?;
    if let Some(c) = cfg.coalesce {
        pool.set_coalesce_config(c);
    }
    Ok(pool)
}

/// Runs `f` on a fresh pool (as [`fresh_pool_with_log`]), then closes the pool and
/// removes its file whether or not `f` succeeded.
pub fn on_fresh_pool<R>(
    cfg: &OursConfig,
    workload: WorkloadId,
    lanes: u32,
    runtime_len: Option<usize>,
    f: impl FnOnce(&pmrt::Pool<FileMedia>) -> Result<R, EngineError>,
) -> Result<R, EngineError> {
    let name = round_name(workload, cfg);
    let pool = fresh_pool_with_log(
        cfg,
        workload,
        &name,
        cfg.params.pool_size,
        lanes,
        runtime_len,
    )?;
    let result = f(&pool);
    drop(pool.close());
    let _ = std::fs::remove_file(pool_path(&cfg.pool_dir, &name));
    result
}

/// Maps the existing pool file `name` afresh and opens it with `pmrt` (recovering it),
/// as `pmemobj_open` maps and opens: returns the pool, its recovery report and the
/// nanoseconds of the mapping plus the open.
pub fn open_pool(
    cfg: &OursConfig,
    workload: WorkloadId,
    name: &str,
) -> Result<(pmrt::Pool<FileMedia>, pmrt::RecoveryReport, u64), EngineError> {
    let start = Instant::now();
    let media = map_pool(cfg, &pool_path(&cfg.pool_dir, name), None)?;
    let (pool, _, report) = pmrt::Pool::open(
        media,
        &pmalloc::OpenOptions {
            layout: Some(LAYOUT),
        },
    )
    .map_err(|e| failed(workload, 0, e))?;
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    if let Some(c) = cfg.coalesce {
        pool.set_coalesce_config(c);
    }
    Ok((pool, report, ns))
}

/// An [`EngineError::Failed`] for `workload` at op `op`.
pub fn failed(
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

/// The pool file name of `id` for this configuration (eADR rounds get their own).
pub fn round_name(id: WorkloadId, cfg: &OursConfig) -> String {
    format!("{id}-ours{}", if cfg.eadr { "-eadr" } else { "" })
}
