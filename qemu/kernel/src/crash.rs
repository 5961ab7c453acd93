//! Planned crashes at a fence: `crash_at=<n>` stops the kernel at the n-th fence,
//! without cleanup; a power cut ([`CrashAt::power_cut`]) lets the program run on but
//! drops every later store, so a suite can make a crash state inside one boot.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use arch::{Counters, Media, MediaInfo};
use pm_qemu_proto::report::FenceCrash;
use pm_qemu_proto::GuestExit;

/// Media that counts fences and, at fence number `at` (1-based), crashes *before*
/// issuing it: the flushes since the previous fence may or may not be durable, which
/// is the state a power cut there leaves (here they are). Made with [`CrashAt::new`]
/// the crash exits QEMU; made with [`CrashAt::power_cut`] the program runs on and
/// every later store, flush and fence is dropped before it reaches `inner` (under an
/// [`AdrMedia`](crate::adr::AdrMedia), whose DRAM copy keeps the program's view, this
/// is a crash the same boot can recover from). Everything else is passed through.
#[derive(Debug)]
pub struct CrashAt<M: Media> {
    inner: M,
    /// The crash fence; 0: none.
    at: AtomicU64,
    fences: AtomicU64,
    exit: bool,
    cut: AtomicBool,
}

impl<M: Media> CrashAt<M> {
    /// Wraps `inner`, exiting QEMU at fence `crash_at`; `None` never crashes.
    pub fn new(inner: M, crash_at: Option<u64>) -> Self {
        Self::with(inner, crash_at, true)
    }

    /// Wraps `inner`, cutting the power at fence `at` (see the type); `None` never
    /// cuts unless [`CrashAt::arm`] asks later.
    pub fn power_cut(inner: M, at: Option<u64>) -> Self {
        Self::with(inner, at, false)
    }

    fn with(inner: M, at: Option<u64>, exit: bool) -> Self {
        CrashAt {
            inner,
            at: AtomicU64::new(at.unwrap_or(0)),
            fences: AtomicU64::new(0),
            exit,
            cut: AtomicBool::new(false),
        }
    }

    /// Crash at the `n`-th fence from now (`n >= 1`).
    pub fn arm(&self, n: u64) {
        self.at.store(self.fences() + n, Relaxed);
    }

    /// Fences seen so far.
    pub fn fences(&self) -> u64 {
        self.fences.load(Relaxed)
    }

    /// Whether the power was cut.
    pub fn was_cut(&self) -> bool {
        self.cut.load(Relaxed)
    }
}

impl<M: Media> Media for CrashAt<M> {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        self.inner.read(off, buf);
    }

    fn write(&self, off: usize, data: &[u8]) {
        if self.was_cut() {
            return;
        }
        self.inner.write(off, data);
    }

    fn read_u64(&self, off: usize) -> u64 {
        self.inner.read_u64(off)
    }

    fn write_u64(&self, off: usize, v: u64) {
        if self.was_cut() {
            return;
        }
        self.inner.write_u64(off, v);
    }

    fn write_nt(&self, off: usize, data: &[u8]) {
        if self.was_cut() {
            return;
        }
        self.inner.write_nt(off, data);
    }

    fn flush(&self, off: usize, len: usize) {
        if self.was_cut() {
            return;
        }
        self.inner.flush(off, len);
    }

    fn fence(&self) {
        let n = self.fences.fetch_add(1, Relaxed) + 1;
        if self.at.load(Relaxed) == n {
            if self.exit {
                println!("{}", FenceCrash(n));
                crate::exit::exit(GuestExit::Crash);
            }
            self.cut.store(true, Relaxed);
        }
        if !self.was_cut() {
            self.inner.fence();
        }
    }

    fn crash_point(&self, name: &'static str) {
        self.inner.crash_point(name);
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
