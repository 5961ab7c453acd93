//! recover on our stack: the open after a crash inside a transaction that had logged
//! `log_bytes` (16 MiB) of undo, the counterpart of the PMDK shim's
//! `pmb_recover_prepare` / `pmb_recover_measure`.
//!
//! PMDK snapshots 256 ranges of 64 KiB of one 16 MiB object into its undo log, stores
//! the new bytes in place and the process exits before the commit. Ours: one
//! transaction writes the same 256 ranges of one 16 MiB object (`Tx::write_bytes`);
//! objects above 64 KiB are updated in place under undo logging, so its commit logs
//! the 16 MiB of old bytes (fence), stores the new bytes in place (fence), and the
//! crashing child exits right there, before the commit record. Nothing of the
//! transaction touches the pool before commit, so exiting inside the closure would log
//! nothing: the crash is placed by a media wrapper ([`CrashAfterStores`]) that ends the
//! process at the first fence after every byte of the object was stored.

use std::convert::Infallible;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use arch::{Counters, FileMedia, FileOptions, Media, MediaInfo};
use pmrt::{PPtr, Pool};

use super::{
    counted_metrics, counted_since_creation, failed, fresh_pool_with_log, open_pool, pool_path,
    round_name, EngineError, OursConfig, LAYOUT,
};
use crate::round::{RoundResult, Timing};
use crate::workload::{Metric, RecoverJob, WorkloadId};

/// Fill byte of the committed data (the shim's `RECOVER_OLD`).
const OLD: u8 = 0xA5;
/// Fill byte of the crashed transaction's writes (the shim's `RECOVER_NEW`).
const NEW: u8 = 0x5A;
/// Type number of the object (PMDK's side uses 1 as well).
const TYPE_NUM: u32 = 1;
const MIB: usize = 1 << 20;

/// What went wrong in the recover workload besides the stack's own errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecoverError {
    /// The crashing child could not be started.
    Spawn(std::io::Error),
    /// The crashing child failed before its crash point.
    Child {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last line it wrote to stderr.
        stderr: String,
    },
    /// The transaction committed without storing the object in place first: the crash
    /// point was never reached.
    NoCrash,
    /// The pool has no root object (the prepared object).
    NoObject,
    /// The recovering open did not roll back exactly the crashed transaction.
    NotRolledBack {
        /// Its recovery report.
        report: String,
    },
    /// A byte of the object is not the committed pattern after recovery.
    Byte {
        /// Offset in the object.
        offset: usize,
        /// The byte found.
        found: u8,
    },
    /// The clean open after recovery found work to do.
    NotClean {
        /// Its recovery report.
        report: String,
    },
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Spawn(e) => write!(f, "cannot run the crashing child: {e}"),
            RecoverError::Child { status, stderr } => {
                write!(f, "the crashing child failed ({status}): {stderr}")
            }
            RecoverError::NoCrash => {
                f.write_str("the transaction committed without storing the object in place")
            }
            RecoverError::NoObject => f.write_str("the pool has no root object"),
            RecoverError::NotRolledBack { report } => {
                write!(f, "recovery did not roll back one transaction: {report}")
            }
            RecoverError::Byte { offset, found } => write!(
                f,
                "byte {offset} is {found:#04x} after recovery, committed {OLD:#04x}"
            ),
            RecoverError::NotClean { report } => {
                write!(f, "the clean open found work: {report}")
            }
        }
    }
}

impl std::error::Error for RecoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoverError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

fn fail(e: RecoverError) -> EngineError {
    failed(WorkloadId::Recover, 0, e)
}

/// Bytes of the runtime area (one lane log) for `job`: a commit makes room for its
/// records plus its largest record (so `2 × log_bytes` for one undo record of the whole
/// object), and 1 MiB to spare.
pub fn runtime_len(job: &RecoverJob) -> usize {
    usize::try_from(job.log_bytes).unwrap_or(usize::MAX / 4) * 2 + MIB
}

/// One round (see the module docs): prepare the pool (untimed), crash a child inside
/// the transaction, then time the recovering open (mapping included, as
/// `pmemobj_open`), check every byte of the object is the committed pattern again
/// (untimed), close, and time a clean open of the same pool. Counters: each open's
/// `arch` counts (`RoundResult::by_metric`).
pub fn run(job: &RecoverJob, cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    let name = round_name(WorkloadId::Recover, cfg);
    let result = prepare(job, cfg, &name)
        .and_then(|()| crash_in_child(job, cfg, &name))
        .and_then(|()| measure(job, cfg, &name));
    let _ = std::fs::remove_file(pool_path(&cfg.pool_dir, &name));
    result
}

/// A pool of `job.pool_size` bytes, one lane whose log holds the crashed transaction,
/// and one object of `job.log_bytes` bytes of [`OLD`] as its root; closed.
fn prepare(job: &RecoverJob, cfg: &OursConfig, name: &str) -> Result<(), EngineError> {
    let w = WorkloadId::Recover;
    let len = usize::try_from(job.log_bytes)
        .map_err(|_| EngineError::Media(arch::FileMediaError::BadLength { len: job.log_bytes }))?;
    let pool = fresh_pool_with_log(cfg, w, name, job.pool_size, 1, Some(runtime_len(job)))?;
    let init = vec![OLD; len];
    pool.transaction(|tx| {
        let p = tx.alloc_bytes(len, 64, TYPE_NUM, &init)?;
        tx.set_root(p);
        Ok::<_, pmrt::Error>(())
    })
    .map_err(|e| failed(w, 0, pmrt::Error::from(e)))?;
    drop(pool.close());
    Ok(())
}

/// Runs pmbench's hidden `__ours-crash` subcommand ([`crash_child`]) on the pool.
fn crash_in_child(job: &RecoverJob, cfg: &OursConfig, name: &str) -> Result<(), EngineError> {
    let exe = crate::harness::pmbench_exe().map_err(|e| fail(RecoverError::Spawn(e)))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__ours-crash")
        .arg("--pool")
        .arg(pool_path(&cfg.pool_dir, name))
        .arg("--log-bytes")
        .arg(job.log_bytes.to_string())
        .arg("--chunk")
        .arg(job.chunk.to_string());
    if cfg.eadr {
        cmd.arg("--eadr");
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(RecoverError::Spawn(e)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(RecoverError::Child {
            status: out.status,
            stderr: stderr.lines().last().unwrap_or("").to_owned(),
        }));
    }
    Ok(())
}

fn measure(job: &RecoverJob, cfg: &OursConfig, name: &str) -> Result<RoundResult, EngineError> {
    let w = WorkloadId::Recover;
    let (pool, report, recover_ns) = open_pool(cfg, w, name)?;
    // The media is new: its counters since creation are the open's.
    let recover_counters = counted_since_creation(pool.heap().media());
    if report.rolled_back != 1 || report.incomplete != 1 {
        return Err(fail(RecoverError::NotRolledBack {
            report: format!("{report:?}"),
        }));
    }
    check_pattern(&pool, job)?;
    drop(pool.close());

    let (pool, report, clean_ns) = open_pool(cfg, w, name)?;
    let clean_counters = counted_since_creation(pool.heap().media());
    drop(pool.close());
    if report.incomplete != 0 || report.rolled_back != 0 || report.groups_replayed != 0 {
        return Err(fail(RecoverError::NotClean {
            report: format!("{report:?}"),
        }));
    }
    Ok(RoundResult {
        timings: vec![
            Timing {
                metric: Metric::RecoverOpen,
                ns: recover_ns,
                units: 1,
            },
            Timing {
                metric: Metric::CleanOpen,
                ns: clean_ns,
                units: 1,
            },
        ],
        counters: None,
        tx: None,
        by_metric: counted_metrics([
            (Metric::RecoverOpen, recover_counters),
            (Metric::CleanOpen, clean_counters),
        ]),
    })
}

/// Every byte of the root object is [`OLD`].
fn check_pattern(pool: &Pool<FileMedia>, job: &RecoverJob) -> Result<(), EngineError> {
    let obj: PPtr<()> = pool.root().ok_or_else(|| fail(RecoverError::NoObject))?;
    let len = usize::try_from(job.log_bytes).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; MIB.min(len)];
    let mut at = 0;
    while at < len {
        let n = buf.len().min(len - at);
        pool.read_bytes(obj, at, &mut buf[..n])
            .map_err(|e| failed(WorkloadId::Recover, 0, e))?;
        if let Some(i) = buf[..n].iter().position(|&b| b != OLD) {
            return Err(fail(RecoverError::Byte {
                offset: at + i,
                found: buf[i],
            }));
        }
        at += n;
    }
    Ok(())
}

/// The crashing child (pmbench's hidden `__ours-crash` subcommand): opens the pool at
/// `path`, and in one transaction on lane 0 writes [`NEW`] over its root object in
/// `chunk`-byte ranges, `log_bytes` in all. The process exits with status 0 inside
/// the commit, at the first fence after every byte of the object was stored in place
/// (the undo record is durable by then, the commit record not yet written). Returns
/// only when that point was not reached.
pub fn crash_child(
    path: &Path,
    log_bytes: u64,
    chunk: u64,
    eadr: bool,
) -> Result<Infallible, EngineError> {
    let w = WorkloadId::Recover;
    let media = FileMedia::open(
        path,
        FileOptions {
            create_len: None,
            force_pmem: true,
            eadr,
        },
    )?;
    let (pool, _, _) = Pool::open(
        CrashAfterStores::new(media),
        &pmalloc::OpenOptions {
            layout: Some(LAYOUT),
        },
    )
    .map_err(|e| failed(w, 0, e))?;
    let obj: PPtr<()> = pool.root().ok_or_else(|| fail(RecoverError::NoObject))?;
    let len = usize::try_from(log_bytes).unwrap_or(usize::MAX);
    let chunk = usize::try_from(chunk)
        .unwrap_or(usize::MAX)
        .clamp(8, len.max(8));
    let start = usize::try_from(obj.raw()).unwrap_or(usize::MAX);
    pool.heap().media().arm(start..start + len);
    let data = vec![NEW; chunk];
    pool.transaction_in(0, |tx| {
        let mut off = 0;
        while off < len {
            let n = chunk.min(len - off);
            tx.write_bytes(obj, off, &data[..n])?;
            off += n;
        }
        Ok::<_, pmrt::Error>(())
    })
    .map_err(|e| failed(w, 0, pmrt::Error::from(e)))?;
    Err(fail(RecoverError::NoCrash))
}

/// A [`FileMedia`] that ends the process (`_exit(0)`, no unwinding, no unmapping: what
/// a crash leaves in a tmpfs file) at the first fence after every byte of an armed
/// range was stored.
#[derive(Debug)]
pub struct CrashAfterStores {
    inner: FileMedia,
    /// The watched range (`start`, `end`; empty: not armed).
    start: AtomicUsize,
    end: AtomicUsize,
    /// Bytes of it stored so far (overlapping stores count twice; the commit stores
    /// each byte once).
    stored: AtomicUsize,
}

impl CrashAfterStores {
    /// Wraps `inner`, not armed.
    pub fn new(inner: FileMedia) -> Self {
        CrashAfterStores {
            inner,
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            stored: AtomicUsize::new(0),
        }
    }

    /// Watches `range`: the process ends at the first fence after all of it was stored.
    pub fn arm(&self, range: Range<usize>) {
        self.stored.store(0, Relaxed);
        self.start.store(range.start, Relaxed);
        self.end.store(range.end, Relaxed);
    }

    fn note(&self, off: usize, len: usize) {
        let (s, e) = (self.start.load(Relaxed), self.end.load(Relaxed));
        let (a, b) = (off.max(s), (off + len).min(e));
        if a < b {
            self.stored.fetch_add(b - a, Relaxed);
        }
    }
}

impl Media for CrashAfterStores {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        self.inner.read(off, buf);
    }

    fn write(&self, off: usize, data: &[u8]) {
        self.inner.write(off, data);
        self.note(off, data.len());
    }

    fn fill(&self, off: usize, len: usize, byte: u8) {
        self.inner.fill(off, len, byte);
        self.note(off, len);
    }

    fn read_u64(&self, off: usize) -> u64 {
        self.inner.read_u64(off)
    }

    fn write_u64(&self, off: usize, v: u64) {
        self.inner.write_u64(off, v);
        self.note(off, 8);
    }

    fn write_nt(&self, off: usize, data: &[u8]) {
        self.inner.write_nt(off, data);
        self.note(off, data.len());
    }

    fn flush(&self, off: usize, len: usize) {
        self.inner.flush(off, len);
    }

    fn fence(&self) {
        self.inner.fence();
        let (s, e) = (self.start.load(Relaxed), self.end.load(Relaxed));
        if s < e && self.stored.load(Relaxed) >= e - s {
            // SAFETY: `_exit` ends the process at once; nothing runs after it.
            unsafe { libc::_exit(0) };
        }
    }

    fn prefetch_write(&self, off: usize) {
        self.inner.prefetch_write(off);
    }
    fn populate(&self, off: usize, len: usize, access: arch::Access) {
        self.inner.populate(off, len, access);
    }

    fn counters(&self) -> Counters {
        self.inner.counters()
    }

    fn info(&self) -> MediaInfo {
        self.inner.info()
    }

    fn base_ptr(&self) -> Option<core::ptr::NonNull<u8>> {
        self.inner.base_ptr()
    }
}
