//! `RawMedia`: a raw memory range running the real persistence instructions.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::instr;
use crate::media::{check_disjoint, check_range};
use crate::{cpu, CounterCell, Counters, FlushKind, Media, MediaInfo, CACHE_LINE, WORD};

/// How stores are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersistMode {
    /// Flush instruction plus fence (ADR platforms: the cache is volatile).
    #[default]
    Adr,
    /// Caches are in the persistence domain (eADR): flushes are skipped, fences stay.
    Eadr,
}

/// A memory range (NVDIMM, DAX mapping, or DRAM standing in for one) accessed directly.
///
/// Copies go word by word with relaxed atomics, which compile to plain moves on x86_64,
/// or from 512 bytes with `rep movsb` in inline assembly: either keeps concurrent
/// access to the same bytes free of undefined behaviour.
#[derive(Debug)]
pub struct RawMedia {
    base: NonNull<u8>,
    len: usize,
    flush: Option<FlushKind>,
    kind: &'static str,
    counters: CounterCell,
}

// SAFETY: RawMedia only accesses its range through atomics and the flush instructions;
// the constructor's contract makes the range valid for the media's lifetime on any
// thread.
unsafe impl Send for RawMedia {}
// SAFETY: as for Send: all access is through `&self` methods that use atomics.
unsafe impl Sync for RawMedia {}

impl RawMedia {
    /// Wraps `[base, base + len)`.
    ///
    /// # Safety
    /// The range is mapped, readable and writable for as long as the `RawMedia` lives,
    /// 8-byte aligned at `base`, and no Rust reference to any of it exists while the
    /// media is in use (other code may access it only through raw pointers or atomics).
    pub unsafe fn new(base: NonNull<u8>, len: usize, mode: PersistMode) -> Self {
        assert_eq!(
            base.as_ptr() as usize % WORD,
            0,
            "media base must be 8-byte aligned"
        );
        let flush = match mode {
            PersistMode::Adr => Some(cpu::features().flush),
            PersistMode::Eadr => None,
        };
        RawMedia {
            base,
            len,
            flush,
            kind: "raw",
            counters: CounterCell::new(),
        }
    }

    /// Stops or resumes counting flushes, fences and bytes
    /// ([`CounterCell::set_enabled`]); a benchmark stops it while it times.
    pub fn set_counting(&self, on: bool) {
        self.counters.set_enabled(on);
    }

    /// Whether flushes, fences and bytes are being counted (the `counters` feature is
    /// on and counting is not stopped).
    pub fn counting(&self) -> bool {
        self.counters.enabled()
    }

    /// Names what backs the range in [`MediaInfo::kind`].
    #[must_use]
    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    #[inline(always)]
    fn at(&self, off: usize) -> *mut u8 {
        // SAFETY: callers checked `off <= len`, so the result stays in (or one past) the
        // range given to `new`.
        unsafe { self.base.as_ptr().add(off) }
    }

    #[inline(always)]
    fn flush_lines(&self, off: usize, len: usize) {
        let Some(kind) = self.flush else { return };
        if len == 0 {
            return;
        }
        let start = self.base.as_ptr() as usize + off;
        let first = start & !(CACHE_LINE - 1);
        let end = start + len;
        let mut line = first;
        let mut n = 0u64;
        while line < end {
            let p = line as *const u8;
            // SAFETY: `p` lies in a line overlapping the checked range, hence mapped
            // (the range is mapped at page granularity and lines never cross pages);
            // the flush kind came from CPUID, so the instruction exists.
            unsafe {
                match kind {
                    FlushKind::Clwb => instr::clwb(p),
                    FlushKind::Clflushopt => instr::clflushopt(p),
                    FlushKind::Clflush => instr::clflush(p),
                }
            }
            line += CACHE_LINE;
            n += 1;
        }
        self.counters.add_flushed(n);
    }
}

/// Copies of at least this many bytes go through [`instr::copy_bytes`] (`rep movsb`),
/// not word by word: a record or object rewrite of a KiB, a 64 KiB chunk of an undo
/// image. Below it the word loop wins (fast-string moves have a start-up cost).
const BULK: usize = 512;

/// Copies `src` to `dst` with relaxed atomic stores (words where aligned), or
/// [`instr::copy_bytes`] from [`BULK`] bytes.
///
/// # Safety
/// `dst..dst+src.len()` is valid for writes and only accessed through atomics or raw
/// pointers by others.
// Word accesses happen only after the loop has aligned the pointer.
#[allow(clippy::cast_ptr_alignment)]
#[inline(always)]
unsafe fn atomic_store_bytes(dst: *mut u8, src: &[u8]) {
    let mut i = 0;
    let n = src.len();
    if n >= BULK {
        // SAFETY: the caller vouches for `dst..dst+n`; `src` is a slice of `n` bytes and
        // cannot overlap memory only reached through raw pointers.
        unsafe { instr::copy_bytes(dst, src.as_ptr(), n) };
        return;
    }
    // SAFETY: (whole body) every pointer formed is `dst + i` with `i < n`,
    // inside the range the caller vouched for; `from_ptr` needs alignment, which the
    // loop conditions establish before each word access.
    unsafe {
        while i < n && !(dst as usize + i).is_multiple_of(WORD) {
            AtomicU8::from_ptr(dst.add(i)).store(src[i], Relaxed);
            i += 1;
        }
        while i + WORD <= n {
            let v = src.as_ptr().add(i).cast::<u64>().read_unaligned();
            AtomicU64::from_ptr(dst.add(i).cast::<u64>()).store(v, Relaxed);
            i += WORD;
        }
        while i < n {
            AtomicU8::from_ptr(dst.add(i)).store(src[i], Relaxed);
            i += 1;
        }
    }
}

/// Copies from `src` into `dst` with relaxed atomic loads, or [`instr::copy_bytes`] from
/// [`BULK`] bytes.
///
/// # Safety
/// `src..src+dst.len()` is valid for reads and only accessed through atomics or raw
/// pointers by others.
#[allow(clippy::cast_ptr_alignment)]
#[inline(always)]
unsafe fn atomic_load_bytes(src: *const u8, dst: &mut [u8]) {
    let mut i = 0;
    let n = dst.len();
    if n >= BULK {
        // SAFETY: as in `atomic_store_bytes`, with reads.
        unsafe { instr::copy_bytes(dst.as_mut_ptr(), src, n) };
        return;
    }
    // SAFETY: (whole body) as in `atomic_store_bytes`, with reads.
    unsafe {
        while i < n && !(src as usize + i).is_multiple_of(WORD) {
            dst[i] = AtomicU8::from_ptr(src.add(i).cast_mut()).load(Relaxed);
            i += 1;
        }
        while i + WORD <= n {
            let v = AtomicU64::from_ptr(src.add(i).cast::<u64>().cast_mut()).load(Relaxed);
            dst.as_mut_ptr().add(i).cast::<u64>().write_unaligned(v);
            i += WORD;
        }
        while i < n {
            dst[i] = AtomicU8::from_ptr(src.add(i).cast_mut()).load(Relaxed);
            i += 1;
        }
    }
}

// Word accesses are asserted aligned (base is 8-aligned, offsets checked).
#[allow(clippy::cast_ptr_alignment)]
impl Media for RawMedia {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn read(&self, off: usize, buf: &mut [u8]) {
        check_range(self.len, off, buf.len());
        // SAFETY: range checked; the constructor's contract covers concurrent access.
        unsafe { atomic_load_bytes(self.at(off), buf) }
    }

    #[inline(always)]
    fn write(&self, off: usize, data: &[u8]) {
        check_range(self.len, off, data.len());
        // SAFETY: range checked; the constructor's contract covers concurrent access.
        unsafe { atomic_store_bytes(self.at(off), data) }
        self.counters.add_written(data.len() as u64);
    }

    #[inline(always)]
    fn prefetch_write(&self, off: usize) {
        if off < self.len {
            instr::prefetch_w(self.at(off));
        }
    }

    #[inline(always)]
    fn read_u64(&self, off: usize) -> u64 {
        check_range(self.len, off, WORD);
        assert_eq!(off % WORD, 0, "unaligned word read at {off:#x}");
        // SAFETY: in range and aligned (base is 8-aligned and off % 8 == 0).
        u64::from_le(unsafe { AtomicU64::from_ptr(self.at(off).cast::<u64>()) }.load(Relaxed))
    }

    #[inline(always)]
    fn write_u64(&self, off: usize, v: u64) {
        check_range(self.len, off, WORD);
        assert_eq!(off % WORD, 0, "unaligned word write at {off:#x}");
        // SAFETY: in range and aligned.
        unsafe { AtomicU64::from_ptr(self.at(off).cast::<u64>()) }.store(v.to_le(), Relaxed);
        self.counters.add_written(WORD as u64);
    }

    fn write_nt(&self, off: usize, data: &[u8]) {
        if self.flush.is_none() {
            // eADR: the caches are persistent, so bypassing them buys no durability
            // and costs the lines' next reads.
            self.write(off, data);
            return;
        }
        check_range(self.len, off, data.len());
        let n = data.len();
        let (dst, src) = (self.at(off), data.as_ptr());
        let head = ((WORD - dst as usize % WORD) % WORD).min(n);
        let words = (n - head) / WORD;
        let tail_start = head + words * WORD;
        if head > 0 {
            self.write(off, &data[..head]);
            self.flush_lines(off, head);
        }
        // Raw pointers below, not slices: every log and op record comes through here,
        // and a bounds check per piece had made a one-line record 134 instructions.
        // Every piece stored lies below `tail_start <= n`, so `dst + i` is in the
        // checked range and `src + i` in `data`; `dst + i` is 8-aligned by
        // construction of `head`.
        let word = |i: usize| {
            // SAFETY: callers pass `i + 8 <= tail_start`, so the bytes are in `data`.
            unsafe { src.add(i).cast::<u64>().read_unaligned() }
        };
        let mut i = head;
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            if i < tail_start && !(dst as usize + i).is_multiple_of(16) {
                // SAFETY: `i + 8 <= tail_start` (words are whole); see above.
                unsafe { instr::movnti(dst.add(i).cast::<u64>(), word(i)) }
                i += WORD;
            }
            while i + 16 <= tail_start {
                // SAFETY: `i + 16 <= tail_start` and `dst + i` is 16-aligned (just
                // above); see above.
                unsafe { instr::movntdq(dst.add(i), src.add(i)) }
                i += 16;
            }
        }
        while i < tail_start {
            // SAFETY: `i + 8 <= tail_start` (words are whole); see above.
            unsafe { instr::movnti(dst.add(i).cast::<u64>(), word(i)) }
            i += WORD;
        }
        self.counters.add_nt((words * WORD) as u64);
        if tail_start < n {
            self.write(off + tail_start, &data[tail_start..]);
            self.flush_lines(off + tail_start, n - tail_start);
        }
    }

    fn copy_nt(&self, dst: usize, src: usize, len: usize) {
        check_range(self.len, dst, len);
        check_range(self.len, src, len);
        check_disjoint(dst, src, len);
        if self.flush.is_none() {
            // eADR: ordinary stores, as `write_nt` does.
            // SAFETY: both ranges checked and disjoint; the constructor's contract
            // covers concurrent access.
            unsafe { instr::copy_bytes(self.at(dst), self.at(src), len) };
            self.counters.add_written(len as u64);
            return;
        }
        // Whole destination lines in one loop; the partial lines at either end go
        // through `write_nt` (stored and flushed).
        let head =
            ((CACHE_LINE - (self.base.as_ptr() as usize + dst) % CACHE_LINE) % CACHE_LINE).min(len);
        let body = (len - head) / CACHE_LINE * CACHE_LINE;
        let mut buf = [0u8; CACHE_LINE];
        let mut edge = |at: usize, n: usize| {
            if n > 0 {
                self.read(src + at, &mut buf[..n]);
                self.write_nt(dst + at, &buf[..n]);
            }
        };
        edge(0, head);
        // SAFETY: `[dst + head, + body)` and its source are inside the checked, disjoint
        // ranges; `dst + head` is line aligned in memory and `body` whole lines.
        unsafe { instr::copy_nt(self.at(dst + head), self.at(src + head), body) };
        self.counters.add_nt(body as u64);
        edge(head + body, len - head - body);
    }

    unsafe fn read_in_place(&self, off: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        check_range(self.len, off, len);
        // SAFETY: the range is checked, so the slice lies inside the mapping; the
        // caller promises no store to it while `f` runs, so the shared slice aliases
        // no write.
        f(unsafe { core::slice::from_raw_parts(self.at(off), len) });
    }

    #[inline(always)]
    fn flush(&self, off: usize, len: usize) {
        check_range(self.len, off, len);
        self.flush_lines(off, len);
    }

    #[inline(always)]
    fn fence(&self) {
        instr::sfence();
        self.counters.add_fence();
    }

    fn counters(&self) -> Counters {
        self.counters.get()
    }

    fn info(&self) -> MediaInfo {
        MediaInfo {
            kind: self.kind,
            flush: self.flush,
            eadr: self.flush.is_none(),
        }
    }

    fn base_ptr(&self) -> Option<NonNull<u8>> {
        Some(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache line of memory, so media offsets and lines agree.
    #[repr(C, align(64))]
    struct Line([u64; 8]);

    fn with_media(len: usize, mode: PersistMode, f: impl FnOnce(&RawMedia)) {
        let mut buf: Vec<Line> = (0..len.div_ceil(64)).map(|_| Line([0; 8])).collect();
        let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `buf` outlives `m` and is only accessed through `m` meanwhile.
        let m = unsafe { RawMedia::new(base, len, mode) };
        f(&m);
    }

    #[test]
    fn unaligned_writes_read_back() {
        with_media(4096, PersistMode::Adr, |m| {
            let data: Vec<u8> = (0..200u8).collect();
            for off in [0, 1, 7, 8, 63, 100] {
                m.write(off, &data);
                let mut back = vec![0; 200];
                m.read(off, &mut back);
                assert_eq!(back, data, "offset {off}");
            }
        });
    }

    #[test]
    fn flush_lines_once_flushes_each_line_of_overlapping_ranges_once() {
        with_media(4096, PersistMode::Adr, |m| {
            let mut ranges = vec![
                (130, 8),
                (64, 8),
                (70, 100),
                (1000, 8),
                (1020, 8),
                (192, 64),
            ];
            let before = m.counters();
            crate::flush_lines_once(m, &mut ranges);
            if Counters::ENABLED {
                // Lines 1 and 2 (64..170, three ranges), 3 (adjacent), 15 and 16
                // (1000..1028, two ranges).
                assert_eq!(m.counters().since(&before).lines_flushed, 5);
            }
        });
    }

    #[test]
    fn bulk_copies_at_odd_offsets_read_back_exactly_and_touch_nothing_else() {
        with_media(8192, PersistMode::Adr, |m| {
            for (off, len) in [(0usize, BULK), (3, BULK + 5), (17, 4000), (4095, 4090)] {
                m.fill(0, 8192, 0xEE);
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + off) as u8).collect();
                m.write(off, &data);
                let mut back = vec![0; len + 2];
                m.read(off.saturating_sub(1), &mut back);
                let lead = usize::from(off > 0);
                assert_eq!(&back[lead..lead + len], &data[..], "off {off} len {len}");
                if off > 0 {
                    assert_eq!(back[0], 0xEE, "before, off {off}");
                }
                assert_eq!(back[lead + len], 0xEE, "after, off {off} len {len}");
            }
        });
    }

    #[test]
    fn nt_writes_at_every_alignment_and_length_read_back_exactly() {
        with_media(4096, PersistMode::Adr, |m| {
            for off in [0usize, 1, 7, 8, 9, 16, 24, 32, 63, 64] {
                for len in [0usize, 1, 8, 15, 16, 17, 24, 40, 64, 100, 257, 320] {
                    m.fill(0, 1024, 0xEE);
                    let data: Vec<u8> = (0..len).map(|i| (i * 13 + off) as u8).collect();
                    m.write_nt(off, &data);
                    m.fence();
                    let mut back = vec![0; 1024];
                    m.read(0, &mut back);
                    assert_eq!(&back[off..off + len], &data[..], "off {off} len {len}");
                    assert!(
                        back[..off].iter().all(|&b| b == 0xEE),
                        "before, off {off} len {len}"
                    );
                    assert!(
                        back[off + len..].iter().all(|&b| b == 0xEE),
                        "after, off {off} len {len}"
                    );
                }
            }
        });
    }

    #[test]
    fn nt_copies_at_every_alignment_and_length_match_the_source_and_touch_nothing_else() {
        for mode in [PersistMode::Adr, PersistMode::Eadr] {
            with_media(8192, mode, |m| {
                for src in [4096usize, 4097, 4100, 4159] {
                    for dst in [0usize, 1, 8, 63, 64, 100] {
                        for len in [0usize, 1, 63, 64, 65, 128, 200, 1000, 2500] {
                            m.fill(0, 4096, 0xEE);
                            let data: Vec<u8> = (0..len).map(|i| (i * 11 + src) as u8).collect();
                            m.write(src, &data);
                            let before = m.counters();
                            m.copy_nt(dst, src, len);
                            m.fence();
                            let mut back = vec![0; 4096];
                            m.read(0, &mut back);
                            let case = format!("{mode:?} src {src} dst {dst} len {len}");
                            assert_eq!(&back[dst..dst + len], &data[..], "{case}");
                            assert!(back[..dst].iter().all(|&b| b == 0xEE), "before, {case}");
                            assert!(
                                back[dst + len..].iter().all(|&b| b == 0xEE),
                                "after, {case}"
                            );
                            if Counters::ENABLED && mode == PersistMode::Adr {
                                // Every whole line of the destination bypasses the cache.
                                let lines =
                                    (dst + len) / 64 - dst.div_ceil(64).min((dst + len) / 64);
                                assert!(
                                    m.counters().since(&before).nt_bytes >= lines as u64 * 64,
                                    "{case}"
                                );
                            }
                        }
                    }
                }
            });
        }
    }

    #[test]
    #[should_panic(expected = "overlapping media copy")]
    fn an_overlapping_nt_copy_panics() {
        with_media(4096, PersistMode::Adr, |m| m.copy_nt(64, 100, 200));
    }

    #[test]
    fn reading_in_place_sees_the_bytes_in_order() {
        with_media(4096, PersistMode::Adr, |m| {
            let data: Vec<u8> = (0..3000u32).map(|i| (i * 5) as u8).collect();
            m.write(77, &data);
            let mut seen = Vec::new();
            // SAFETY: nothing stores to the media while the closure runs.
            unsafe { m.read_in_place(77, 3000, &mut |p| seen.extend_from_slice(p)) };
            assert_eq!(seen, data);
        });
    }

    #[test]
    fn nt_write_is_visible_and_counted() {
        with_media(4096, PersistMode::Adr, |m| {
            let before = m.counters();
            let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
            m.write_nt(3, &data);
            m.fence();
            let mut back = vec![0; 300];
            m.read(3, &mut back);
            assert_eq!(back, data);
            let d = m.counters().since(&before);
            if Counters::ENABLED {
                // 5 head bytes to reach alignment, 36 words, 7 tail bytes.
                assert_eq!(d.nt_bytes, 36 * 8);
                assert_eq!(d.fences, 1);
            }
        });
    }

    #[test]
    fn words_are_little_endian() {
        with_media(64, PersistMode::Eadr, |m| {
            m.write_u64(8, 0x0102_0304_0506_0708);
            let mut b = [0u8; 8];
            m.read(8, &mut b);
            assert_eq!(b, [8, 7, 6, 5, 4, 3, 2, 1]);
            assert_eq!(m.read_u64(8), 0x0102_0304_0506_0708);
        });
    }

    #[test]
    fn flush_counts_each_overlapping_line() {
        with_media(4096, PersistMode::Adr, |m| {
            let before = m.counters();
            m.flush(60, 8); // lines 0 and 1
            m.flush(128, 64); // line 2
            let d = m.counters().since(&before);
            if Counters::ENABLED {
                assert_eq!(d.lines_flushed, 3);
            }
        });
    }

    #[test]
    fn eadr_skips_flushes() {
        with_media(4096, PersistMode::Eadr, |m| {
            let before = m.counters();
            m.flush(0, 4096);
            m.fence();
            let d = m.counters().since(&before);
            assert_eq!(d.lines_flushed, 0);
            assert!(m.info().eadr);
        });
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn out_of_range_access_panics_not_corrupts() {
        with_media(64, PersistMode::Adr, |m| m.write(60, &[0; 8]));
    }
}
