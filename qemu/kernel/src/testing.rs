//! The in-kernel test runner: a suite is a list of named test functions.
//!
//! Each test gets one line, `test <name> ... ok` or `test <name> ... FAILED (<reason>)`,
//! printed when it returns (so lines a test prints itself, such as `committed <i>`,
//! stand alone); the run ends with exactly `N passed, N failed` alone on a line. A
//! panic or a CPU exception inside a test names the test ([`current`]) and ends the
//! run with the failure exit code and no summary, which the runner reports as a
//! failure too.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use arch::Counters;
use pm_qemu_pool::pattern::PatternError;
use pm_qemu_pool::tx::TxWorkloadError;
use pm_qemu_pool::workload::WorkloadError;
use pm_qemu_proto::log::LogError;
use pm_qemu_proto::report::{Summary, TestStart};
use pm_qemu_proto::BootArgs;

use pmalloc::{AllocError, CheckError, CreateError, FreeError, OpenError, PtrError};
use pmrt::{PoolError, TxError};

use crate::adr::AdrError;
use crate::nvdimm::{DiscoveryError, Nvdimm, NvdimmList, WindowError};

/// What every test gets: the boot arguments and the NVDIMMs (or why there are none).
#[derive(Debug)]
pub struct Env {
    /// The parsed command line.
    pub args: BootArgs,
    /// The NVDIMMs found at boot.
    pub nvdimms: Result<NvdimmList, DiscoveryError>,
}

impl Env {
    /// The NVDIMMs; at least one, else the discovery error (or an empty-list failure).
    pub fn nvdimms(&self) -> Result<&[Nvdimm], TestFailure> {
        match &self.nvdimms {
            Ok(list) if !list.is_empty() => Ok(list),
            Ok(_) => Err(TestFailure::NvdimmCount {
                expected: self.args.nvdimms.unwrap_or(1),
                found: 0,
            }),
            Err(e) => Err(TestFailure::Discovery(*e)),
        }
    }
}

/// One test.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// Its name, as printed.
    pub name: &'static str,
    /// The test itself.
    pub run: fn(&Env) -> Result<(), TestFailure>,
}

/// Why a test failed. Payloads say what was expected and what was found where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TestFailure {
    /// NVDIMM discovery failed.
    Discovery(DiscoveryError),
    /// A different number of NVDIMMs than `nvdimms=` asked for.
    NvdimmCount {
        /// Expected.
        expected: u32,
        /// Found.
        found: usize,
    },
    /// Two NVDIMMs overlap or alias each other.
    NotDistinct {
        /// One NVDIMM's index.
        first: usize,
        /// The other's.
        second: usize,
    },
    /// A value read back differs from the one written.
    Mismatch {
        /// Which access.
        what: &'static str,
        /// NVDIMM (or media) index.
        nvdimm: usize,
        /// Byte offset in the media.
        offset: usize,
        /// Expected value.
        expected: u64,
        /// Value found.
        found: u64,
    },
    /// A counter moved by a different amount than expected.
    Counter {
        /// Which counter.
        what: &'static str,
        /// Expected growth.
        expected: u64,
        /// Observed growth.
        found: u64,
    },
    /// An address is mapped where it should not be, or the reverse.
    Mapping {
        /// Which address.
        what: &'static str,
        /// The address.
        addr: u64,
        /// Whether it should be identity-mapped.
        expected: bool,
    },
    /// A media window could not be made.
    Window(WindowError),
    /// The ADR working copy could not be made.
    Adr(AdrError),
    /// The log broke an invariant.
    Log(LogError),
    /// `records=` asks for more log than the NVDIMM holds.
    LogTooLong {
        /// Records asked for.
        records: u32,
        /// Bytes available.
        capacity: u64,
    },
    /// A pool could not be created.
    Create(CreateError),
    /// A pool could not be opened.
    Open(OpenError),
    /// An allocation that should have succeeded failed.
    Alloc(AllocError),
    /// A free that should have succeeded failed.
    Free(FreeError),
    /// A pointer that should name an object does not.
    Ptr(PtrError),
    /// The heap's invariant check failed.
    Check(CheckError),
    /// An allocation returned something else than the expected error.
    AllocResult {
        /// Which call.
        what: &'static str,
        /// The error expected.
        expected: AllocError,
        /// What it returned: the object's offset, or another error.
        found: Result<u64, AllocError>,
    },
    /// A free returned something else than the expected error.
    FreeResult {
        /// Which call.
        what: &'static str,
        /// The error expected.
        expected: FreeError,
        /// What it returned.
        found: Result<(), FreeError>,
    },
    /// The seeded pool pattern was not written or did not verify.
    Pattern(PatternError),
    /// The heap crash workload failed.
    Workload(WorkloadError),
    /// A `pmrt` pool could not be created or opened.
    Pool(PoolError),
    /// A transaction or a runtime read failed.
    Runtime(pmrt::Error),
    /// The transaction crash workload failed.
    TxWorkload(TxWorkloadError),
    /// A count that must reach a minimum did not.
    AtLeast {
        /// What was counted.
        what: &'static str,
        /// The minimum.
        min: u64,
        /// The count.
        found: u64,
    },
    /// A property did not hold.
    Violated(&'static str),
}

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestFailure::Discovery(e) => write!(f, "discovery: {e}"),
            TestFailure::NvdimmCount { expected, found } => {
                write!(f, "expected {expected} NVDIMMs, found {found}")
            }
            TestFailure::NotDistinct { first, second } => {
                write!(f, "NVDIMMs {first} and {second} are not distinct")
            }
            TestFailure::Mismatch {
                what,
                nvdimm,
                offset,
                expected,
                found,
            } => write!(
                f,
                "{what}: media {nvdimm} offset {offset:#x}: expected {expected:#x}, found {found:#x}"
            ),
            TestFailure::Counter {
                what,
                expected,
                found,
            } => write!(f, "counter {what}: expected +{expected}, found +{found}"),
            TestFailure::Mapping {
                what,
                addr,
                expected,
            } => write!(
                f,
                "{what}: {addr:#x} should {}be identity-mapped",
                if *expected { "" } else { "not " }
            ),
            TestFailure::Window(e) => write!(f, "{e}"),
            TestFailure::Adr(e) => write!(f, "{e}"),
            TestFailure::Log(e) => write!(f, "log: {e}"),
            TestFailure::LogTooLong { records, capacity } => {
                write!(f, "{records} records do not fit {capacity} bytes")
            }
            TestFailure::Create(e) => write!(f, "create: {e}"),
            TestFailure::Open(e) => write!(f, "open: {e}"),
            TestFailure::Alloc(e) => write!(f, "alloc: {e}"),
            TestFailure::Free(e) => write!(f, "free: {e}"),
            TestFailure::Ptr(e) => write!(f, "{e}"),
            TestFailure::Check(e) => write!(f, "{e}"),
            TestFailure::AllocResult {
                what,
                expected,
                found,
            } => match found {
                Ok(ptr) => write!(f, "{what}: expected \"{expected}\", allocated {ptr:#x}"),
                Err(e) => write!(f, "{what}: expected \"{expected}\", got \"{e}\""),
            },
            TestFailure::FreeResult {
                what,
                expected,
                found,
            } => match found {
                Ok(()) => write!(f, "{what}: expected \"{expected}\", freed"),
                Err(e) => write!(f, "{what}: expected \"{expected}\", got \"{e}\""),
            },
            TestFailure::Pattern(e) => write!(f, "pool pattern: {e}"),
            TestFailure::Workload(e) => write!(f, "heap workload: {e}"),
            TestFailure::Pool(e) => write!(f, "pmrt pool: {e}"),
            TestFailure::Runtime(e) => write!(f, "pmrt: {e}"),
            TestFailure::TxWorkload(e) => write!(f, "tx workload: {e}"),
            TestFailure::AtLeast { what, min, found } => {
                write!(f, "{what}: expected at least {min}, found {found}")
            }
            TestFailure::Violated(what) => write!(f, "{what}"),
        }
    }
}

impl core::error::Error for TestFailure {}

/// `From` impls that wrap an error in its variant, so tests can use `?`.
macro_rules! wrap {
    ($($error:ty => $variant:ident),* $(,)?) => {$(
        impl From<$error> for TestFailure {
            fn from(e: $error) -> Self {
                TestFailure::$variant(e)
            }
        }
    )*};
}

wrap!(
    WindowError => Window,
    AdrError => Adr,
    LogError => Log,
    CreateError => Create,
    OpenError => Open,
    AllocError => Alloc,
    FreeError => Free,
    PtrError => Ptr,
    CheckError => Check,
    PatternError => Pattern,
    WorkloadError => Workload,
    PoolError => Pool,
    pmrt::Error => Runtime,
    TxWorkloadError => TxWorkload,
);

impl From<TxError<pmrt::Error>> for TestFailure {
    fn from(e: TxError<pmrt::Error>) -> Self {
        TestFailure::Runtime(e.into())
    }
}

/// `Err(AtLeast)` unless `found >= min`.
pub fn expect_at_least(what: &'static str, min: u64, found: u64) -> Result<(), TestFailure> {
    if found >= min {
        Ok(())
    } else {
        Err(TestFailure::AtLeast { what, min, found })
    }
}

/// `Err(Violated(what))` unless `holds`.
pub fn expect(what: &'static str, holds: bool) -> Result<(), TestFailure> {
    if holds {
        Ok(())
    } else {
        Err(TestFailure::Violated(what))
    }
}

/// `Err(Mismatch)` unless `found == expected`.
pub fn expect_eq(
    what: &'static str,
    nvdimm: usize,
    offset: usize,
    expected: u64,
    found: u64,
) -> Result<(), TestFailure> {
    if found == expected {
        Ok(())
    } else {
        Err(TestFailure::Mismatch {
            what,
            nvdimm,
            offset,
            expected,
            found,
        })
    }
}

/// Compares the counter growth `found` with `expected`, field by field. With counting
/// compiled out every counter must stay zero.
pub fn expect_counters(expected: Counters, found: Counters) -> Result<(), TestFailure> {
    let expected = if Counters::ENABLED {
        expected
    } else {
        Counters::default()
    };
    for (what, e, f) in [
        ("lines_flushed", expected.lines_flushed, found.lines_flushed),
        ("fences", expected.fences, found.fences),
        ("nt_bytes", expected.nt_bytes, found.nt_bytes),
        ("bytes_written", expected.bytes_written, found.bytes_written),
    ] {
        if e != f {
            return Err(TestFailure::Counter {
                what,
                expected: e,
                found: f,
            });
        }
    }
    Ok(())
}

/// The running test's name as a `&'static str` split in pointer and length (0 when
/// none), for the panic and exception paths, which must not take locks.
static CURRENT_PTR: AtomicUsize = AtomicUsize::new(0);
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);

fn set_current(name: &'static str) {
    CURRENT_LEN.store(name.len(), Ordering::Relaxed);
    CURRENT_PTR.store(name.as_ptr() as usize, Ordering::Relaxed);
}

/// The test running now, if any.
pub fn current() -> Option<&'static str> {
    let ptr = CURRENT_PTR.load(Ordering::Relaxed);
    if ptr == 0 {
        return None;
    }
    let len = CURRENT_LEN.load(Ordering::Relaxed);
    // SAFETY: ptr and len were taken together from a `&'static str` by `set_current`
    // (single CPU, no interrupts: no torn update can be observed), and static strings
    // live and stay valid UTF-8 forever.
    Some(unsafe {
        core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr as *const u8, len))
    })
}

/// Runs every test in order, printing one line each and the summary.
pub fn run(tests: &[Test], env: &Env) -> Summary {
    let mut summary = Summary {
        passed: 0,
        failed: 0,
    };
    for t in tests {
        set_current(t.name);
        match (t.run)(env) {
            Ok(()) => {
                println!("{}ok", TestStart(t.name));
                summary.passed += 1;
            }
            Err(e) => {
                println!("{}FAILED ({e})", TestStart(t.name));
                summary.failed += 1;
            }
        }
    }
    CURRENT_PTR.store(0, Ordering::Relaxed);
    println!("{summary}");
    summary
}
