//! Recovery's work on several threads (feature `std`): the check of a record of
//! megabytes and the copy of an undo image of megabytes, cut into contiguous parts.
//! On this machine one core reads the log at 3.5-9 GB/s and two at 7-16 GB/s.

use alloc::vec::Vec;
use core::ops::Range;

/// Bytes at and above which a check or a copy is cut into parts, one per thread: a
/// thread costs tens of microseconds to start, a mebibyte about a hundred to read.
pub(super) const MIN: usize = 1 << 20;

/// Threads recovery uses: the machine's, at most 8; 1 without `std`.
pub(super) fn threads() -> usize {
    #[cfg(feature = "std")]
    {
        // `available_parallelism` reads cgroup files on Linux: once per process.
        static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *N.get_or_init(|| {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(8)
        })
    }
    #[cfg(not(feature = "std"))]
    1
}

/// Whether work of `n` bytes is cut into parts: [`MIN`] bytes or more, and more than
/// one thread.
pub(super) fn splits(n: usize) -> bool {
    n >= MIN && threads() > 1
}

/// `0..n` cut into at most `parts` contiguous ranges, each but the last a whole number
/// of `unit`s; none empty unless `n` is 0.
fn cut(n: usize, unit: usize, parts: usize) -> Vec<Range<usize>> {
    let per = n
        .div_ceil(parts.max(1))
        .next_multiple_of(unit.max(1))
        .max(1);
    let mut out = Vec::with_capacity(parts);
    let mut at = 0;
    while at < n || out.is_empty() {
        let end = (at + per).min(n);
        out.push(at..end);
        at = end;
    }
    out
}

/// `f` over `0..n` cut into one contiguous part per thread (whole `unit`s each), on
/// scoped threads when `n` is at least [`MIN`] and there is more than one thread, else
/// `f(0..n)` alone; the results in the order of the parts. A worker's panic is a bug,
/// never a reaction to pool bytes: it is passed on.
pub(super) fn split<T: Send>(
    n: usize,
    unit: usize,
    f: impl Fn(Range<usize>) -> T + Sync,
) -> Vec<T> {
    if !splits(n) {
        return alloc::vec![f(0..n)];
    }
    let parts = cut(n, unit, threads());
    #[cfg(feature = "std")]
    {
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = parts[1..]
                .iter()
                .map(|r| {
                    let r = r.clone();
                    s.spawn(move || f(r))
                })
                .collect();
            let mut out = Vec::with_capacity(parts.len());
            out.push(f(parts[0].clone()));
            for h in handles {
                out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            out
        })
    }
    #[cfg(not(feature = "std"))]
    parts.into_iter().map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_cover_the_range_in_order_in_whole_units() {
        for (n, unit, parts) in [
            (0, 64, 2),
            (1, 64, 2),
            (64, 64, 2),
            (1000, 64, 2),
            (1 << 20, 64, 3),
        ] {
            let c = cut(n, unit, parts);
            assert!(
                !c.is_empty() && c.len() <= parts.max(1),
                "{n} {unit} {parts}: {c:?}"
            );
            assert_eq!(c[0].start, 0);
            assert_eq!(c.last().unwrap().end, n);
            for w in c.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len().is_multiple_of(unit) && !w[0].is_empty());
            }
        }
    }

    #[test]
    fn split_results_come_in_the_order_of_the_parts() {
        let n = 3 * MIN + 100;
        let parts = split(n, 64, |r| r);
        assert_eq!(parts.first().map(|r| r.start), Some(0));
        assert_eq!(parts.last().map(|r| r.end), Some(n));
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }
}
