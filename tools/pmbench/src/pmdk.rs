//! PMDK's side: the C shim (`csrc/pmbench_shim.c`) behind safe wrappers.
//!
//! These functions run inside a child process of pmbench (see [`crate::harness`]), so
//! that `PMEM_IS_PMEM_FORCE` and `PMEM_NO_FLUSH`, which libpmem reads once when it is
//! loaded, are set before the library is.

use std::ffi::{c_int, CStr, CString};
use std::path::Path;

use crate::round::{RoundResult, Timing};
use crate::workload::{AllocJob, Job, Metric, OpenJob, RecoverJob, TxAllocJob, UpdateJob};

mod ffi {
    use std::ffi::{c_char, c_int};

    #[repr(C)]
    pub struct Pool {
        _opaque: [u8; 0],
    }

    extern "C" {
        pub fn pmb_pool_create(
            path: *const c_char,
            pool_size: u64,
            nslots: u32,
            sizes: *const u32,
            out: *mut *mut Pool,
        ) -> c_int;
        pub fn pmb_pool_close(p: *mut Pool);
        pub fn pmb_tx_update(
            p: *mut Pool,
            obj: *const u32,
            off: *const u32,
            lens: *const u32,
            n: u64,
            len: u32,
            threads: u32,
            first_value: u64,
            elapsed_ns: *mut u64,
        ) -> c_int;
        pub fn pmb_atomic_realloc(
            p: *mut Pool,
            slot: *const u32,
            size: *const u32,
            n: u64,
            elapsed_ns: *mut u64,
        ) -> c_int;
        pub fn pmb_tx_realloc(
            p: *mut Pool,
            slot: *const u32,
            n: u64,
            size: u32,
            elapsed_ns: *mut u64,
        ) -> c_int;
        pub fn pmb_open_build(
            path: *const c_char,
            pool_size: u64,
            sizes: *const u32,
            n: u64,
        ) -> c_int;
        pub fn pmb_open_measure(
            path: *const c_char,
            mark: Option<extern "C" fn()>,
            open_ns: *mut u64,
            alloc_ns: *mut u64,
            walk_ns: *mut u64,
            walked: *mut u64,
        ) -> c_int;
        pub fn pmb_recover_prepare(
            path: *const c_char,
            pool_size: u64,
            log_bytes: u64,
            chunk: u64,
        ) -> c_int;
        pub fn pmb_recover_measure(
            path: *const c_char,
            mark: Option<extern "C" fn()>,
            log_bytes: u64,
            recover_ns: *mut u64,
            clean_open_ns: *mut u64,
        ) -> c_int;
        pub fn pmb_errormsg() -> *const c_char;
        pub fn pmb_failed_op() -> u64;
    }
}

/// The step of the shim that failed (the `PMB_E_*` codes of `pmbench_shim.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// `pmemobj_create`.
    Create,
    /// `pmemobj_open`.
    Open,
    /// `pmemobj_root`.
    Root,
    /// An atomic allocation.
    Alloc,
    /// A transaction aborted.
    Tx,
    /// The pool is not treated as pmem (`PMEM_IS_PMEM_FORCE` was not set).
    NotPmem,
    /// An argument was out of range.
    Argument,
    /// The crashing child of the recover workload.
    Fork,
    /// Data read back differs from what was written or should have been restored.
    Verify,
    /// A worker thread could not be started.
    Thread,
    /// A code the shim does not define.
    Unknown(i32),
}

impl Step {
    fn from_code(code: c_int) -> Step {
        match code {
            -1 => Step::Create,
            -2 => Step::Open,
            -3 => Step::Root,
            -4 => Step::Alloc,
            -5 => Step::Tx,
            -6 => Step::NotPmem,
            -7 => Step::Argument,
            -8 => Step::Fork,
            -9 => Step::Verify,
            -10 => Step::Thread,
            c => Step::Unknown(c),
        }
    }
}

/// A failure of a PMDK workload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PmdkError {
    /// The shim returned an error.
    Shim {
        /// The step that failed.
        step: Step,
        /// The operation index, for failures inside a loop (else 0).
        op: u64,
        /// PMDK's message (`pmemobj_errormsg`).
        message: String,
    },
    /// The pool path contains a NUL byte.
    BadPath(std::path::PathBuf),
    /// The job is larger than the shim's 32-bit counts allow.
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        value: u64,
    },
}

impl std::fmt::Display for PmdkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PmdkError::Shim { step, op, message } => {
                write!(f, "PMDK step {step:?} failed (op {op}): {message}")
            }
            PmdkError::BadPath(p) => write!(f, "pool path {} contains NUL", p.display()),
            PmdkError::TooLarge { what, value } => write!(f, "{what} = {value} is too large"),
        }
    }
}

impl std::error::Error for PmdkError {}

fn check(rc: c_int) -> Result<(), PmdkError> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: both read thread-local state of the shim; the message pointer is a
    // NUL-terminated string owned by PMDK (or a static literal), valid until the next
    // PMDK call on this thread, and copied right away.
    let (msg, op) = unsafe {
        let p = ffi::pmb_errormsg();
        let msg = if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        (msg, ffi::pmb_failed_op())
    };
    Err(PmdkError::Shim {
        step: Step::from_code(rc),
        op,
        message: msg,
    })
}

fn c_path(path: &Path) -> Result<CString, PmdkError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| PmdkError::BadPath(path.into()))
}

fn count32(what: &'static str, n: usize) -> Result<u32, PmdkError> {
    u32::try_from(n).map_err(|_| PmdkError::TooLarge {
        what,
        value: n as u64,
    })
}

/// An open PMDK pool with one object per slot of its root object.
#[derive(Debug)]
struct Pool(*mut ffi::Pool);

impl Pool {
    fn create(path: &Path, pool_size: u64, sizes: &[u32]) -> Result<Pool, PmdkError> {
        let cpath = c_path(path)?;
        let n = count32("slots", sizes.len())?;
        let mut out = std::ptr::null_mut();
        // SAFETY: `cpath` is NUL-terminated, `sizes` holds `n` values, and `out` is a
        // valid out-pointer; the shim copies what it keeps.
        check(unsafe {
            ffi::pmb_pool_create(cpath.as_ptr(), pool_size, n, sizes.as_ptr(), &raw mut out)
        })?;
        Ok(Pool(out))
    }

    /// Runs the update loop over the warm-up or the timed operations (on two threads
    /// when `j.threads == 2`; per-operation lengths when the job has them).
    fn update(&mut self, j: &UpdateJob, warm: bool, first_value: u64) -> Result<u64, PmdkError> {
        let ops = if warm { &j.warm } else { &j.timed };
        let mut n = ops.obj.len().min(ops.off.len());
        let lens = if ops.lens.is_empty() {
            std::ptr::null()
        } else {
            n = n.min(ops.lens.len());
            ops.lens.as_ptr()
        };
        let mut ns = 0;
        // SAFETY: `self.0` is a live pool from `pmb_pool_create`; `obj`, `off` and (when
        // not null) `lens` hold at least `n` values each (the shim checks every index
        // and range before using them).
        check(unsafe {
            ffi::pmb_tx_update(
                self.0,
                ops.obj.as_ptr(),
                ops.off.as_ptr(),
                lens,
                n as u64,
                j.len,
                j.threads,
                first_value,
                &raw mut ns,
            )
        })?;
        Ok(ns)
    }

    fn atomic_realloc(&mut self, (slot, size): &(Vec<u32>, Vec<u32>)) -> Result<u64, PmdkError> {
        let mut ns = 0;
        // SAFETY: live pool; both arrays hold `n` values; the shim checks the slots.
        check(unsafe {
            ffi::pmb_atomic_realloc(
                self.0,
                slot.as_ptr(),
                size.as_ptr(),
                slot.len().min(size.len()) as u64,
                &raw mut ns,
            )
        })?;
        Ok(ns)
    }

    fn tx_realloc(&mut self, slot: &[u32], size: u32) -> Result<u64, PmdkError> {
        let mut ns = 0;
        // SAFETY: live pool; `slot` holds `n` values, checked by the shim.
        check(unsafe {
            ffi::pmb_tx_realloc(self.0, slot.as_ptr(), slot.len() as u64, size, &raw mut ns)
        })?;
        Ok(ns)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `pmb_pool_create` and is closed only here.
        unsafe { ffi::pmb_pool_close(self.0) };
    }
}

/// Where the instruction counter wants the child to stop: before and after each timed
/// region (the tracer takes its counts at each stop).
pub type Mark = Option<extern "C" fn()>;

/// Never inlined: `pmbench instructions` finds PMDK's timed region by this name.
#[inline(never)]
fn marked<R>(mark: Mark, f: impl FnOnce() -> R) -> R {
    if let Some(m) = mark {
        m();
    }
    let r = f();
    if let Some(m) = mark {
        m();
    }
    r
}

fn op_timing(ns: u64, units: u64) -> RoundResult {
    RoundResult {
        timings: vec![Timing {
            metric: Metric::Op,
            ns,
            units,
        }],
        counters: None,
        tx: None,
        by_metric: Vec::new(),
    }
}

/// Runs one round of `job` on PMDK with its pool at `path` (created here and removed
/// afterwards, except the open workload's, which [`build_open`] made).
pub fn run(job: &Job, pool_size: u64, path: &Path, mark: Mark) -> Result<RoundResult, PmdkError> {
    let result = match job {
        Job::Update(j) => run_update(j, pool_size, path, mark),
        Job::Alloc(j) => run_alloc(j, pool_size, path, mark),
        Job::TxAlloc(j) => run_tx_alloc(j, pool_size, path, mark),
        Job::Open(_) => return run_open(path, mark),
        Job::Recover(j) => run_recover(j, path, mark),
    };
    // The pool is scratch: remove it whether or not the round succeeded.
    let _ = std::fs::remove_file(path);
    result
}

fn run_update(
    j: &UpdateJob,
    pool_size: u64,
    path: &Path,
    mark: Mark,
) -> Result<RoundResult, PmdkError> {
    let sizes = vec![j.object_size; j.objects as usize];
    let mut pool = Pool::create(path, pool_size, &sizes)?;
    pool.update(j, true, 1)?;
    let first = j.warm.obj.len() as u64 + 1;
    let ns = marked(mark, || pool.update(j, false, first))?;
    Ok(op_timing(ns, j.timed.obj.len() as u64))
}

fn run_alloc(
    j: &AllocJob,
    pool_size: u64,
    path: &Path,
    mark: Mark,
) -> Result<RoundResult, PmdkError> {
    let mut pool = Pool::create(path, pool_size, &j.initial_sizes)?;
    pool.atomic_realloc(&j.warm)?;
    let ns = marked(mark, || pool.atomic_realloc(&j.timed))?;
    Ok(op_timing(ns, j.timed.0.len() as u64))
}

fn run_tx_alloc(
    j: &TxAllocJob,
    pool_size: u64,
    path: &Path,
    mark: Mark,
) -> Result<RoundResult, PmdkError> {
    let sizes = vec![j.size; j.slots as usize];
    let mut pool = Pool::create(path, pool_size, &sizes)?;
    pool.tx_realloc(&j.warm, j.size)?;
    let ns = marked(mark, || pool.tx_realloc(&j.timed, j.size))?;
    Ok(op_timing(ns, j.timed.len() as u64))
}

/// Builds the open workload's pool at `path` (untimed; once per run).
pub fn build_open(j: &OpenJob, path: &Path) -> Result<(), PmdkError> {
    let cpath = c_path(path)?;
    // SAFETY: NUL-terminated path; `sizes` holds `n` values.
    check(unsafe {
        ffi::pmb_open_build(
            cpath.as_ptr(),
            j.pool_size,
            j.sizes.as_ptr(),
            j.sizes.len() as u64,
        )
    })
}

fn run_open(path: &Path, mark: Mark) -> Result<RoundResult, PmdkError> {
    let cpath = c_path(path)?;
    let (mut open, mut alloc, mut walk, mut walked) = (0, 0, 0, 0);
    // SAFETY: NUL-terminated path; four valid out-pointers; `mark` is a plain function.
    check(unsafe {
        ffi::pmb_open_measure(
            cpath.as_ptr(),
            mark,
            &raw mut open,
            &raw mut alloc,
            &raw mut walk,
            &raw mut walked,
        )
    })?;
    Ok(RoundResult {
        timings: vec![
            Timing {
                metric: Metric::Open,
                ns: open,
                units: 1,
            },
            Timing {
                metric: Metric::FirstAlloc,
                ns: alloc,
                units: 1,
            },
            Timing {
                metric: Metric::Walk,
                ns: walk,
                units: walked,
            },
        ],
        counters: None,
        tx: None,
        by_metric: Vec::new(),
    })
}

fn run_recover(j: &RecoverJob, path: &Path, mark: Mark) -> Result<RoundResult, PmdkError> {
    let cpath = c_path(path)?;
    // SAFETY: NUL-terminated path. The shim forks; this child process of pmbench runs
    // only its main thread, so the forked process may go on using PMDK.
    check(unsafe { ffi::pmb_recover_prepare(cpath.as_ptr(), j.pool_size, j.log_bytes, j.chunk) })?;
    let (mut recover, mut clean) = (0, 0);
    // SAFETY: NUL-terminated path; two valid out-pointers; `mark` is a plain function.
    check(unsafe {
        ffi::pmb_recover_measure(
            cpath.as_ptr(),
            mark,
            j.log_bytes,
            &raw mut recover,
            &raw mut clean,
        )
    })?;
    Ok(RoundResult {
        timings: vec![
            Timing {
                metric: Metric::RecoverOpen,
                ns: recover,
                units: 1,
            },
            Timing {
                metric: Metric::CleanOpen,
                ns: clean,
                units: 1,
            },
        ],
        counters: None,
        tx: None,
        by_metric: Vec::new(),
    })
}
