//! Our stack's side of every workload.
//!
//! [`OursEngine`] is the one entry point the harness calls; [`Ours`] implements it by
//! dispatching to one module per workload family:
//!
//! | module | workloads | fill in with |
//! |---|---|---|
//! | [`update`] | w1, w2, w3, w6, w7 | `pmrt` transactions over `pmalloc` objects |
//! | [`alloc`] | w4, w5 | `pmalloc` atomic allocation; `pmrt` transactional allocation |
//! | [`open`] | open, recover | `pmalloc` pool open and walk; `pmrt` recovery |
//!
//! Until `pmalloc` and `pmrt` exist each function returns [`EngineError::NotBuilt`]
//! and the report says "not built yet". To plug a stack in, replace a body: create the
//! pool with [`pool_media`], run the job's `warm` operations untimed, then time the
//! `timed` operations with [`timed`], which also takes the `arch` counters of the
//! region (flushed lines, fences, non-temporal bytes) for the report.

pub mod alloc;
pub mod open;
pub mod update;

use std::path::{Path, PathBuf};
use std::time::Instant;

use arch::{FileMedia, FileMediaError, FileOptions, Media};

use crate::round::{RoundCounters, RoundResult};
use crate::workload::{Job, Params, WorkloadId};

/// How our side runs a round.
#[derive(Debug, Clone)]
pub struct OursConfig {
    /// Folder for pool files (`/dev/shm` by default).
    pub pool_dir: PathBuf,
    /// Skip flushes (keep fences), the counterpart of PMDK's `PMEM_NO_FLUSH=1`.
    pub eadr: bool,
    /// The workload's sizes.
    pub params: Params,
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
            Job::Recover(j) => open::run_recover(j, cfg),
        }
    }
}

/// Creates (truncating) the pool file `name` in the pool folder, `size` bytes, mapped
/// as emulated pmem (real flush instructions, or none with `cfg.eadr`). The same pool
/// size as PMDK's is passed by the callers.
pub fn pool_media(cfg: &OursConfig, name: &str, size: u64) -> Result<FileMedia, EngineError> {
    let path = pool_path(&cfg.pool_dir, name);
    let len = usize::try_from(size)
        .map_err(|_| EngineError::Media(FileMediaError::BadLength { len: size }))?;
    Ok(FileMedia::open(
        &path,
        FileOptions {
            create_len: Some(len),
            force_pmem: true,
            eadr: cfg.eadr,
        },
    )?)
}

/// The path of pool `name` in `dir` (process id included, so concurrent runs differ).
pub fn pool_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("pmbench-{}-{name}.pool", std::process::id()))
}

/// Runs `region` and returns its elapsed nanoseconds and the growth of `media`'s
/// counters over it.
pub fn timed<M: Media + ?Sized, R>(
    media: &M,
    region: impl FnOnce() -> R,
) -> (R, u64, RoundCounters) {
    let before = media.counters();
    let start = Instant::now();
    let r = region();
    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    (r, ns, media.counters().since(&before).into())
}

/// A fresh `pmrt` pool named `name` of `size` bytes (PMDK's pool size for the same
/// workload), with `lanes` transaction lanes.
pub fn fresh_pool(
    cfg: &OursConfig,
    workload: WorkloadId,
    name: &str,
    size: u64,
    lanes: u32,
) -> Result<pmrt::Pool<FileMedia>, EngineError> {
    let media = pool_media(cfg, name, size)?;
    let mut opts = pmrt::PoolOptions::new("pmbench", *b"pmbench-ours-pmr");
    opts.lanes = lanes;
    pmrt::Pool::create(media, &opts).map_err(|e| failed(workload, 0, e))
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
