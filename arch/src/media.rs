//! The `Media` abstraction: the only way code above `arch` touches the persistence domain.

use crate::{Counters, FlushKind};

/// Cache-line size: the unit of flushing and of dirty tracking.
pub const CACHE_LINE: usize = 64;
/// Size of the largest store the hardware makes atomic (aligned).
pub const WORD: usize = 8;

/// Static facts about a media, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaInfo {
    /// What backs it: "raw", "file-dax", "file-emulated", "file-msync", "sim".
    pub kind: &'static str,
    /// The flush instruction executed, or `None` when flushes are skipped (eADR) or
    /// simulated.
    pub flush: Option<FlushKind>,
    /// Caches are inside the persistence domain: flushes are no-ops, fences stay.
    pub eadr: bool,
}

/// A byte range in (possibly) persistent memory, plus the operations that make stores
/// durable.
///
/// Offsets are relative to the start of the range. Every method checks its range and
/// panics when it is out of bounds: callers validate untrusted offsets (pool bytes)
/// *before* calling, so a panic here is a bug in the caller, never a reaction to pool
/// contents.
///
/// Concurrency: the methods take `&self` and are safe to call from several threads. Two
/// threads writing the same bytes at once get one of the values per aligned 8-byte word
/// (stores are done word by word with relaxed atomics), never undefined behaviour.
pub trait Media: Send + Sync {
    /// Length of the range in bytes.
    fn len(&self) -> usize;

    /// Whether the range is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes starting at `off` into `buf`.
    fn read(&self, off: usize, buf: &mut [u8]);

    /// Stores `data` at `off` (ordinary stores: durable only after flush + fence).
    fn write(&self, off: usize, data: &[u8]);

    /// Stores `len` copies of `byte` at `off`.
    fn fill(&self, off: usize, len: usize, byte: u8) {
        let chunk = [byte; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len());
            self.write(off + done, &chunk[..n]);
            done += n;
        }
    }

    /// Loads the aligned 8-byte little-endian word at `off`, atomically.
    fn read_u64(&self, off: usize) -> u64;

    /// Stores the aligned 8-byte little-endian word at `off` atomically: the store used
    /// to publish pointers and commit marks (a crash sees the old or the new word).
    fn write_u64(&self, off: usize, v: u64);

    /// Stores `data` at `off` with non-temporal stores where aligned: durable after the
    /// next [`Media::fence`] with no flush (unaligned head and tail bytes are stored and
    /// flushed normally).
    fn write_nt(&self, off: usize, data: &[u8]);

    /// Copies the `len` bytes at `src` to `dst` as [`Media::write_nt`] stores them:
    /// durable after the next [`Media::fence`]. The ranges must not overlap (a bug in
    /// the caller: panics). Default: through a buffer; ordinary memory copies directly,
    /// with no pass through DRAM for the buffer (recovery moves megabytes of undo
    /// images from the log to their homes this way).
    fn copy_nt(&self, dst: usize, src: usize, len: usize) {
        check_disjoint(dst, src, len);
        let mut done = 0;
        // SAFETY: the only stores while the pieces are out go to `dst`, which does not
        // overlap `src` (asserted above).
        unsafe {
            self.read_in_place(src, len, &mut |piece| {
                self.write_nt(dst + done, piece);
                done += piece.len();
            });
        }
    }

    /// Calls `f` on the `len` bytes at `off`, in one or more pieces in order: where
    /// they lie when the media is ordinary memory, else through a buffer. For reading
    /// megabytes without copying them (recovery checks a large record in the log).
    ///
    /// # Safety
    /// No store to `[off, off + len)`, by any thread, happens while `f` runs (the
    /// pieces may be the media's own bytes, lent as `&[u8]`).
    unsafe fn read_in_place(&self, off: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        let mut buf = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            self.read(off + done, &mut buf[..n]);
            f(&buf[..n]);
            done += n;
        }
    }

    /// Starts write-back of every cache line overlapping `[off, off + len)`.
    fn flush(&self, off: usize, len: usize);

    /// Waits until every earlier flush and non-temporal store is durable.
    fn fence(&self);

    /// `flush` then `fence`.
    fn persist(&self, off: usize, len: usize) {
        self.flush(off, len);
        self.fence();
    }

    /// A named crash point for the crash explorer (`crash_at("tx.commit.marked")`); a
    /// no-op on real media.
    fn crash_point(&self, _name: &'static str) {}

    /// A hint that the line holding byte `off` will be written soon (so the store
    /// does not wait for it); no effect on contents or durability. Default: nothing.
    fn prefetch_write(&self, _off: usize) {}

    /// A hint that `[off, off + len)` is about to be read or written in bulk: a mapped
    /// file maps those pages in one call instead of taking a page fault on each (a
    /// recovery that rolls back 16 MiB would take 8,192). No effect on contents or
    /// durability; out-of-range parts are ignored. Default: nothing.
    fn populate(&self, _off: usize, _len: usize, _access: Access) {}

    /// Counters since creation (all zero when counting is compiled out).
    fn counters(&self) -> Counters;

    /// Static facts for reports.
    fn info(&self) -> MediaInfo;

    /// Address of byte 0 when the range is ordinary addressable memory, for front ends
    /// that must hand out real pointers (`GlobalAlloc`). `None` for simulated media.
    fn base_ptr(&self) -> Option<core::ptr::NonNull<u8>> {
        None
    }
}

/// What a [`Media::populate`] range is about to be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Loads only.
    Read,
    /// Stores (a mapped file makes the pages writable up front).
    Write,
}

/// The cache-line indices `[first, last]` overlapping `[off, off + len)`; empty when
/// `len == 0`.
pub fn line_range(off: usize, len: usize) -> core::ops::Range<usize> {
    if len == 0 {
        return 0..0;
    }
    off / CACHE_LINE..(off + len - 1) / CACHE_LINE + 1
}

/// Flushes every cache line of `ranges` once, in runs of adjacent lines (sorts
/// `ranges`): a line many stores went to is written back once, not once per store.
pub fn flush_lines_once<M: Media + ?Sized>(media: &M, ranges: &mut [(usize, usize)]) {
    ranges.sort_unstable();
    let mut run: Option<core::ops::Range<usize>> = None;
    for &(off, len) in ranges.iter() {
        let lines = line_range(off, len);
        match &mut run {
            Some(r) if lines.start <= r.end => r.end = r.end.max(lines.end),
            _ => {
                if let Some(r) = run.replace(lines) {
                    media.flush(r.start * CACHE_LINE, r.len() * CACHE_LINE);
                }
            }
        }
    }
    if let Some(r) = run {
        media.flush(r.start * CACHE_LINE, r.len() * CACHE_LINE);
    }
}

/// A copy between overlapping ranges is a caller bug: panics.
pub(crate) fn check_disjoint(dst: usize, src: usize, len: usize) {
    assert!(
        dst.saturating_add(len) <= src || src.saturating_add(len) <= dst,
        "overlapping media copy {src:#x} -> {dst:#x} of {len:#x}"
    );
}

#[inline(always)]
pub(crate) fn check_range(media_len: usize, off: usize, len: usize) {
    assert!(
        off <= media_len && len <= media_len - off,
        "media access out of range: {off:#x}+{len:#x} > {media_len:#x}"
    );
}

/// A shared reference to a media is a media (so a heap can run on a borrowed one, as the
/// crash explorer does to reuse one simulated media for many crash states).
impl<T: Media + ?Sized> Media for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        (**self).read(off, buf);
    }
    fn write(&self, off: usize, data: &[u8]) {
        (**self).write(off, data);
    }
    fn fill(&self, off: usize, len: usize, byte: u8) {
        (**self).fill(off, len, byte);
    }
    fn read_u64(&self, off: usize) -> u64 {
        (**self).read_u64(off)
    }
    fn write_u64(&self, off: usize, v: u64) {
        (**self).write_u64(off, v);
    }
    fn write_nt(&self, off: usize, data: &[u8]) {
        (**self).write_nt(off, data);
    }
    fn copy_nt(&self, dst: usize, src: usize, len: usize) {
        (**self).copy_nt(dst, src, len);
    }
    unsafe fn read_in_place(&self, off: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { (**self).read_in_place(off, len, f) }
    }
    fn flush(&self, off: usize, len: usize) {
        (**self).flush(off, len);
    }
    fn fence(&self) {
        (**self).fence();
    }
    fn persist(&self, off: usize, len: usize) {
        (**self).persist(off, len);
    }
    fn prefetch_write(&self, off: usize) {
        (**self).prefetch_write(off);
    }
    fn populate(&self, off: usize, len: usize, access: Access) {
        (**self).populate(off, len, access);
    }
    fn crash_point(&self, name: &'static str) {
        (**self).crash_point(name);
    }
    fn counters(&self) -> Counters {
        (**self).counters()
    }
    fn info(&self) -> MediaInfo {
        (**self).info()
    }
    fn base_ptr(&self) -> Option<core::ptr::NonNull<u8>> {
        (**self).base_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_range_covers_partial_lines() {
        assert_eq!(line_range(0, 0), 0..0);
        assert_eq!(line_range(0, 1), 0..1);
        assert_eq!(line_range(63, 2), 0..2);
        assert_eq!(line_range(64, 64), 1..2);
        assert_eq!(line_range(65, 128), 1..4);
    }
}
