//! `AdrMedia`: the ADR persistence model made real on top of an NVDIMM.
//!
//! A kill of QEMU keeps every store already made to the NVDIMM (the image is a shared
//! file mapping), so on plain NVDIMM media a crash never loses an unflushed line, and a
//! missing flush goes unnoticed. `AdrMedia` keeps the program's view in a DRAM working
//! copy and lets only flushes reach the NVDIMM:
//!
//! * `read`/`write`/`read_u64`/`write_u64` use the DRAM copy (the "cache");
//! * `flush(range)` copies the covered lines to the NVDIMM and flushes them there
//!   (the write-back);
//! * `fence` fences the NVDIMM;
//! * `write_nt` stores to both: a non-temporal store bypasses the cache;
//! * construction loads the DRAM copy from the NVDIMM (what survived the last run).
//!
//! A kill therefore loses exactly the lines never flushed: the ADR model end to end.
//! What it does not model is the cache evicting a line on its own (an unflushed line
//! that happens to survive); the host crash explorer covers that.

use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use arch::{
    line_range, CounterCell, Counters, Media, MediaInfo, PersistMode, RawMedia, CACHE_LINE,
};

/// The DRAM copy could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdrError {
    /// Bytes asked for.
    pub bytes: usize,
}

impl fmt::Display for AdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot allocate a {} byte DRAM working copy", self.bytes)
    }
}

impl core::error::Error for AdrError {}

/// ADR-model media: a DRAM working copy of `backing` whose flushes write lines back.
#[derive(Debug)]
pub struct AdrMedia<M: Media> {
    /// The DRAM copy, as media (eADR mode: flushing DRAM would be pointless).
    cache: RawMedia,
    /// The allocation behind `cache`, freed on drop.
    dram: NonNull<[u64]>,
    backing: M,
    counters: CounterCell,
}

// SAFETY: `dram` is reached only through `cache`, which is Send + Sync (atomics).
unsafe impl<M: Media> Send for AdrMedia<M> {}
// SAFETY: as for Send.
unsafe impl<M: Media> Sync for AdrMedia<M> {}

impl<M: Media> AdrMedia<M> {
    /// A working copy of all of `backing`, loaded from it.
    pub fn new(backing: M) -> Result<Self, AdrError> {
        let len = backing.len();
        let words = len.div_ceil(8);
        let mut v: Vec<u64> = Vec::new();
        v.try_reserve_exact(words)
            .map_err(|_| AdrError { bytes: words * 8 })?;
        v.resize(words, 0);
        let dram = NonNull::from(alloc::boxed::Box::leak(v.into_boxed_slice()));
        // SAFETY: the allocation is `words * 8 >= len` bytes, 8-aligned, lives until
        // `drop` (after `cache`'s last use), and from here on is reached only through
        // `cache` (no reference to it is kept).
        let cache = unsafe { RawMedia::new(dram.cast::<u8>(), len, PersistMode::Eadr) }
            .with_kind("adr-dram");
        let media = AdrMedia {
            cache,
            dram,
            backing,
            counters: CounterCell::new(),
        };
        let mut buf = [0u8; 4096];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(buf.len());
            media.backing.read(off, &mut buf[..n]);
            media.cache.write(off, &buf[..n]);
            off += n;
        }
        Ok(media)
    }

    /// The NVDIMM-side media: what survives a crash.
    pub fn backing(&self) -> &M {
        &self.backing
    }
}

impl<M: Media> Drop for AdrMedia<M> {
    fn drop(&mut self) {
        // SAFETY: `dram` came from `Box::leak` in `new` and is freed only here; `cache`
        // is not used after this.
        drop(unsafe { alloc::boxed::Box::from_raw(self.dram.as_ptr()) });
    }
}

impl<M: Media> Media for AdrMedia<M> {
    fn len(&self) -> usize {
        self.cache.len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        self.cache.read(off, buf);
    }

    fn write(&self, off: usize, data: &[u8]) {
        self.cache.write(off, data);
        self.counters.add_written(data.len() as u64);
    }

    fn read_u64(&self, off: usize) -> u64 {
        self.cache.read_u64(off)
    }

    fn write_u64(&self, off: usize, v: u64) {
        self.cache.write_u64(off, v);
        self.counters.add_written(8);
    }

    fn write_nt(&self, off: usize, data: &[u8]) {
        self.cache.write(off, data);
        self.backing.write_nt(off, data);
        self.counters.add_nt(data.len() as u64);
    }

    fn flush(&self, off: usize, len: usize) {
        // Range check (panics on a caller bug, like every media).
        self.cache.flush(off, len);
        let mut line = [0u8; CACHE_LINE];
        let lines = line_range(off, len);
        let n = lines.len() as u64;
        for l in lines {
            let start = l * CACHE_LINE;
            let bytes = &mut line[..(self.len() - start).min(CACHE_LINE)];
            self.cache.read(start, bytes);
            self.backing.write(start, bytes);
            self.backing.flush(start, bytes.len());
        }
        self.counters.add_flushed(n);
    }

    fn fence(&self) {
        self.backing.fence();
        self.counters.add_fence();
    }

    fn counters(&self) -> Counters {
        self.counters.get()
    }

    fn info(&self) -> MediaInfo {
        MediaInfo {
            kind: "adr",
            flush: self.backing.info().flush,
            eadr: false,
        }
    }

    fn base_ptr(&self) -> Option<NonNull<u8>> {
        self.cache.base_ptr()
    }
}
