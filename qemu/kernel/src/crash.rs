//! Planned crashes: `crash_at=<n>` stops the kernel at the n-th fence, without cleanup.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arch::{Counters, Media, MediaInfo};
use pm_qemu_proto::report::FenceCrash;
use pm_qemu_proto::GuestExit;

/// Media that counts fences and, at fence number `crash_at` (1-based), exits QEMU
/// *before* issuing it: the flushes since the previous fence may or may not be
/// durable, which is the state a power cut there leaves. Everything else is passed
/// through unchanged.
#[derive(Debug)]
pub struct CrashAt<M: Media> {
    inner: M,
    at: Option<u64>,
    fences: AtomicU64,
}

impl<M: Media> CrashAt<M> {
    /// Wraps `inner`; `None` never crashes.
    pub fn new(inner: M, crash_at: Option<u64>) -> Self {
        CrashAt {
            inner,
            at: crash_at,
            fences: AtomicU64::new(0),
        }
    }

    /// Fences seen so far.
    pub fn fences(&self) -> u64 {
        self.fences.load(Relaxed)
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
        self.inner.write(off, data);
    }

    fn read_u64(&self, off: usize) -> u64 {
        self.inner.read_u64(off)
    }

    fn write_u64(&self, off: usize, v: u64) {
        self.inner.write_u64(off, v);
    }

    fn write_nt(&self, off: usize, data: &[u8]) {
        self.inner.write_nt(off, data);
    }

    fn flush(&self, off: usize, len: usize) {
        self.inner.flush(off, len);
    }

    fn fence(&self) {
        let n = self.fences.fetch_add(1, Relaxed) + 1;
        if self.at == Some(n) {
            println!("{}", FenceCrash(n));
            crate::exit::exit(GuestExit::Crash);
        }
        self.inner.fence();
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
