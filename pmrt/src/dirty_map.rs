//! Dirty maps: which 64-byte lines of an object a transaction changed, and within them
//! which bytes (at 8-byte granularity), found by comparing the transaction's copy with
//! the object's committed image.
//!
//! The compare uses AVX2 (32 bytes at a time) when the CPU and OS support it (chosen at
//! run time on the host: the seed's hardware acceleration), 8-byte words otherwise (the
//! soft-float kernel target, where SIMD state is not set up).

use alloc::vec::Vec;

/// Words kept inline: objects up to 256 lines (16 KiB) need no allocation.
const INLINE: usize = 4;

/// One bit per 64-byte line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyMap {
    inline: [u64; INLINE],
    heap: Vec<u64>,
    n: usize,
}

impl DirtyMap {
    /// A map for an object of `len` bytes, all clean.
    pub fn new(len: usize) -> Self {
        let n = len.div_ceil(64).div_ceil(64);
        DirtyMap {
            inline: [0; INLINE],
            heap: if n > INLINE {
                alloc::vec![0; n]
            } else {
                Vec::new()
            },
            n,
        }
    }

    fn words(&self) -> &[u64] {
        if self.n > INLINE {
            &self.heap
        } else {
            &self.inline[..self.n]
        }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        if self.n > INLINE {
            &mut self.heap
        } else {
            &mut self.inline[..self.n]
        }
    }

    fn set(&mut self, l: usize) {
        self.words_mut()[l / 64] |= 1 << (l % 64);
    }

    /// Marks the lines overlapping `[off, off + len)`.
    pub fn mark(&mut self, off: usize, len: usize) {
        if len == 0 {
            return;
        }
        for l in off / 64..=(off + len - 1) / 64 {
            self.set(l);
        }
    }

    /// Whether line `l` is dirty.
    pub fn is_dirty(&self, l: usize) -> bool {
        self.words()
            .get(l / 64)
            .is_some_and(|w| w & (1 << (l % 64)) != 0)
    }

    /// Dirty lines.
    pub fn count(&self) -> usize {
        self.words().iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The dirty line indices.
    pub fn lines(&self) -> impl Iterator<Item = usize> + '_ {
        self.words().iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            core::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + b
                })
            })
        })
    }

    /// Compares `new` with `old` (same length) and marks every line that differs.
    pub fn diff(old: &[u8], new: &[u8]) -> Self {
        assert_eq!(old.len(), new.len(), "diff of different lengths");
        let mut m = DirtyMap::new(old.len());
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if arch::cpu::features().avx2 {
            // SAFETY: AVX2 support (CPU and OS) was checked at run time.
            unsafe { diff_avx2(old, new, &mut m) };
            return m;
        }
        diff_words(old, new, &mut m);
        m
    }
}

fn line_differs(a: &[u8], b: &[u8]) -> bool {
    a.chunks_exact(8)
        .zip(b.chunks_exact(8))
        .any(|(x, y)| x != y)
        || !a.len().is_multiple_of(8) && a[a.len() / 8 * 8..] != b[b.len() / 8 * 8..]
}

fn diff_words(old: &[u8], new: &[u8], m: &mut DirtyMap) {
    for (l, (a, b)) in old.chunks(64).zip(new.chunks(64)).enumerate() {
        if line_differs(a, b) {
            m.set(l);
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "avx2")]
unsafe fn diff_avx2(old: &[u8], new: &[u8], m: &mut DirtyMap) {
    use core::arch::x86_64::{_mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8};
    let full = old.len() / 64;
    for l in 0..full {
        let o = old[l * 64..].as_ptr().cast();
        let n = new[l * 64..].as_ptr().cast();
        // SAFETY: each line has 64 readable bytes in both slices (l < full); unaligned
        // loads need no alignment; AVX2 is enabled for this function.
        let same = unsafe {
            let a = _mm256_cmpeq_epi8(_mm256_loadu_si256(o), _mm256_loadu_si256(n));
            let b = _mm256_cmpeq_epi8(_mm256_loadu_si256(o.add(1)), _mm256_loadu_si256(n.add(1)));
            (_mm256_movemask_epi8(a) & _mm256_movemask_epi8(b)) == -1
        };
        if !same {
            m.set(l);
        }
    }
    if old.len() > full * 64 && line_differs(&old[full * 64..], &new[full * 64..]) {
        m.set(full);
    }
}

/// The byte runs that differ between `old` and `new` inside the dirty lines, at 8-byte
/// granularity, merging runs separated by less than `gap` equal bytes (a separate run
/// costs an 8-byte entry header). Appends `(offset, length)` pairs in order to `runs`.
pub fn dirty_runs(old: &[u8], new: &[u8], map: &DirtyMap, gap: usize, runs: &mut Vec<(u32, u32)>) {
    let first = runs.len();
    let len = old.len();
    for l in map.lines() {
        let mut w = l * 64;
        let end = ((l + 1) * 64).min(len);
        while w < end {
            let we = (w + 8).min(end);
            if old[w..we] != new[w..we] {
                match runs[first..].last_mut() {
                    Some((s, n)) if (*s + *n) as usize + gap >= w => *n = (we - *s as usize) as u32,
                    _ => runs.push((w as u32, (we - w) as u32)),
                }
            }
            w = we;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn marks_and_lists_lines() {
        let mut m = DirtyMap::new(1000);
        m.mark(60, 8);
        m.mark(900, 1);
        assert_eq!(m.lines().collect::<Vec<_>>(), vec![0, 1, 14]);
        assert_eq!(m.count(), 3);
    }

    #[test]
    fn maps_beyond_the_inline_words_work_the_same() {
        for len in [16 * 1024, 16 * 1024 + 1, 64 * 1024] {
            let old = vec![0u8; len];
            let mut new = old.clone();
            new[len - 1] = 1;
            new[5000] = 2;
            let m = DirtyMap::diff(&old, &new);
            assert_eq!(
                m.lines().collect::<Vec<_>>(),
                vec![5000 / 64, (len - 1) / 64]
            );
            let mut k = DirtyMap::new(len);
            k.mark(len - 1, 1);
            k.mark(5000, 1);
            assert_eq!(k, m);
        }
    }

    proptest! {
        #[test]
        fn diff_finds_exactly_the_changed_lines_and_runs(len in 1usize..700, changes in proptest::collection::vec((0usize..700, 1u8..=255), 0..12)) {
            let old: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut new = old.clone();
            for (at, v) in &changes {
                if *at < len {
                    new[*at] = old[*at] ^ v;
                }
            }
            let m = DirtyMap::diff(&old, &new);
            let mut want = DirtyMap::new(len);
            diff_words(&old, &new, &mut want);
            prop_assert_eq!(&m, &want, "simd and scalar agree");
            for l in 0..len.div_ceil(64) {
                let r = l * 64..((l + 1) * 64).min(len);
                prop_assert_eq!(m.is_dirty(l), old[r.clone()] != new[r]);
            }
            // Applying the runs to old gives new, and runs touch only dirty lines.
            let mut runs = Vec::new();
            dirty_runs(&old, &new, &m, 16, &mut runs);
            let mut back = old.clone();
            for &(s, n) in &runs {
                let (s, n) = (s as usize, n as usize);
                back[s..s + n].copy_from_slice(&new[s..s + n]);
                prop_assert!(s % 8 == 0);
            }
            prop_assert_eq!(back, new);
        }
    }
}
