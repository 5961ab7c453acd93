//! Flush / fence / byte counters that cost nothing when the `counters` feature is off.
//!
//! When on, each counter is spread over cache-line-padded shards; a read sums them.
//!
//! Counting must not disturb what it counts. A locked read-modify-write (`lock add`)
//! is ordered after every earlier `clwb`/`clflushopt` of the same core, so a locked
//! counter update between a flush and its fence waits for the write-back and turns the
//! overlapped write-backs of one fence into serial ones (measured here: three lines
//! and a fence 265 ns; the same with a `lock add` after each flush 540 ns). So with
//! `std` every thread gets a shard of its own (a thread-local index handed out once)
//! and updates it with a plain load and store, which is exact because no other thread
//! writes that shard. Threads beyond the private shards, and `no_std` builds (no
//! thread-local storage), share the last shards, picked by stack address, with locked
//! adds.

#[cfg(feature = "counters")]
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a media's counters. All zero when counting is compiled out
/// (see [`Counters::ENABLED`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Cache lines handed to the flush instruction (a line flushed twice counts twice).
    pub lines_flushed: u64,
    /// Store fences issued.
    pub fences: u64,
    /// Bytes written with non-temporal stores.
    pub nt_bytes: u64,
    /// Bytes written through `Media::write*` (temporal and non-temporal).
    pub bytes_written: u64,
}

impl Counters {
    /// Whether counting is compiled in.
    pub const ENABLED: bool = cfg!(feature = "counters");

    /// Bytes made durable: flushed lines times the line size plus non-temporal bytes.
    pub fn bytes_persisted(&self) -> u64 {
        self.lines_flushed * crate::CACHE_LINE as u64 + self.nt_bytes
    }

    /// Counter growth from `earlier` to `self`.
    #[must_use]
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            lines_flushed: self.lines_flushed.wrapping_sub(earlier.lines_flushed),
            fences: self.fences.wrapping_sub(earlier.fences),
            nt_bytes: self.nt_bytes.wrapping_sub(earlier.nt_bytes),
            bytes_written: self.bytes_written.wrapping_sub(earlier.bytes_written),
        }
    }
}

/// Shards owned by one thread each (`std` only).
#[cfg(all(feature = "counters", feature = "std"))]
const PRIVATE: usize = 16;
#[cfg(all(feature = "counters", not(feature = "std")))]
const PRIVATE: usize = 0;
/// Shards shared by stack address, with locked adds.
#[cfg(feature = "counters")]
const SHARED: usize = 8;
#[cfg(feature = "counters")]
const SHARDS: usize = PRIVATE + SHARED;

/// This thread's private shard index, if it has one.
#[cfg(all(feature = "counters", feature = "std"))]
fn private_index() -> Option<usize> {
    use core::cell::Cell;
    use core::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX
        .try_with(|i| {
            let mut v = i.get();
            if v == usize::MAX {
                v = NEXT.fetch_add(1, Relaxed);
                i.set(v);
            }
            v
        })
        .ok()
        .filter(|&v| v < PRIVATE)
}

#[cfg(all(feature = "counters", not(feature = "std")))]
fn private_index() -> Option<usize> {
    None
}

#[cfg(feature = "counters")]
#[repr(align(64))]
#[derive(Debug, Default)]
struct Shard {
    lines_flushed: AtomicU64,
    fences: AtomicU64,
    nt_bytes: AtomicU64,
    bytes_written: AtomicU64,
}

/// The live counters a media owns. Every method is an empty inline function when the
/// `counters` feature is off.
#[derive(Debug, Default)]
pub struct CounterCell {
    /// Counting stopped ([`CounterCell::set_enabled`]); false, counting, by default.
    #[cfg(feature = "counters")]
    off: core::sync::atomic::AtomicBool,
    #[cfg(feature = "counters")]
    shards: [Shard; SHARDS],
}

impl CounterCell {
    /// New, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to the counter `pick` selects in the caller's shard (module docs).
    #[cfg(feature = "counters")]
    #[inline(always)]
    fn add(&self, pick: impl Fn(&Shard) -> &AtomicU64, n: u64) {
        if self.off.load(Relaxed) {
            return;
        }
        if let Some(i) = private_index() {
            // Only this thread writes shard `i`: a plain load and store is exact.
            let c = pick(&self.shards[i]);
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            // Thread stacks are megabytes apart, so the stack address's 2 MiB bucket
            // spreads threads over the shared shards.
            let marker = 0u8;
            let idx = PRIVATE + (core::ptr::addr_of!(marker) as usize >> 21) % SHARED;
            pick(&self.shards[idx]).fetch_add(n, Relaxed);
        }
    }

    /// Stops (`false`) or resumes (`true`) counting. While stopped an update is one
    /// load and a branch, and [`CounterCell::get`] stands still: a benchmark times its
    /// region with counting stopped and counts in a run of its own, so that the
    /// counting's thread-local lookups and stores are not part of what it times.
    /// Without the `counters` feature there is nothing to stop.
    pub fn set_enabled(&self, on: bool) {
        #[cfg(feature = "counters")]
        self.off.store(!on, Relaxed);
        #[cfg(not(feature = "counters"))]
        let _ = on;
    }

    /// Whether updates are counted: the feature is on and counting is not stopped.
    pub fn enabled(&self) -> bool {
        #[cfg(feature = "counters")]
        {
            !self.off.load(Relaxed)
        }
        #[cfg(not(feature = "counters"))]
        false
    }

    /// Counts `n` flushed lines.
    #[inline(always)]
    pub fn add_flushed(&self, n: u64) {
        #[cfg(feature = "counters")]
        self.add(|s| &s.lines_flushed, n);
        #[cfg(not(feature = "counters"))]
        let _ = n;
    }

    /// Counts one fence.
    #[inline(always)]
    pub fn add_fence(&self) {
        #[cfg(feature = "counters")]
        self.add(|s| &s.fences, 1);
    }

    /// Counts `n` bytes written non-temporally (also counted as written).
    #[inline(always)]
    pub fn add_nt(&self, n: u64) {
        #[cfg(feature = "counters")]
        {
            self.add(|s| &s.nt_bytes, n);
            self.add(|s| &s.bytes_written, n);
        }
        #[cfg(not(feature = "counters"))]
        let _ = n;
    }

    /// Counts `n` bytes written with ordinary stores.
    #[inline(always)]
    pub fn add_written(&self, n: u64) {
        #[cfg(feature = "counters")]
        self.add(|s| &s.bytes_written, n);
        #[cfg(not(feature = "counters"))]
        let _ = n;
    }

    /// The sums over all shards.
    pub fn get(&self) -> Counters {
        #[cfg(feature = "counters")]
        {
            let mut c = Counters::default();
            for s in &self.shards {
                c.lines_flushed += s.lines_flushed.load(Relaxed);
                c.fences += s.fences.load(Relaxed);
                c.nt_bytes += s.nt_bytes.load(Relaxed);
                c.bytes_written += s.bytes_written.load(Relaxed);
            }
            c
        }
        #[cfg(not(feature = "counters"))]
        Counters::default()
    }
}

#[cfg(all(test, feature = "counters"))]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_cell_counts_nothing_until_resumed() {
        let cell = CounterCell::new();
        assert!(cell.enabled());
        cell.add_fence();
        cell.set_enabled(false);
        assert!(!cell.enabled());
        cell.add_fence();
        cell.add_flushed(3);
        cell.add_nt(64);
        cell.add_written(8);
        assert_eq!(
            cell.get(),
            Counters {
                fences: 1,
                ..Counters::default()
            }
        );
        cell.set_enabled(true);
        cell.add_flushed(2);
        let c = cell.get();
        assert_eq!((c.fences, c.lines_flushed), (1, 2));
    }

    #[test]
    fn counts_add_up_across_threads() {
        let cell = std::sync::Arc::new(CounterCell::new());
        // More threads than private shards, so the shared shards are exercised too.
        let threads = PRIVATE as u64 + 4;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        cell.add_fence();
                        cell.add_flushed(2);
                        cell.add_nt(8);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let c = cell.get();
        assert_eq!(c.fences, threads * 1000);
        assert_eq!(c.lines_flushed, threads * 2000);
        assert_eq!(c.nt_bytes, threads * 8000);
        assert_eq!(c.bytes_written, threads * 8000);
        assert_eq!(c.bytes_persisted(), threads * (2000 * 64 + 8000));
    }
}
