//! Flush / fence / byte counters that cost nothing when the `counters` feature is off.
//!
//! When on, each counter is spread over a few cache-line-padded shards picked by the
//! caller's stack address, so two threads rarely bounce one line; a read sums them.

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

#[cfg(feature = "counters")]
const SHARDS: usize = 8;

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
    #[cfg(feature = "counters")]
    shards: [Shard; SHARDS],
}

impl CounterCell {
    /// New, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(feature = "counters")]
    #[inline(always)]
    fn shard(&self) -> &Shard {
        // Thread stacks are megabytes apart, so the stack address's 2 MiB bucket spreads
        // threads over shards without thread-local storage (absent in no_std).
        let marker = 0u8;
        let idx = (core::ptr::addr_of!(marker) as usize >> 21) % SHARDS;
        &self.shards[idx]
    }

    /// Counts `n` flushed lines.
    #[inline(always)]
    pub fn add_flushed(&self, n: u64) {
        #[cfg(feature = "counters")]
        self.shard().lines_flushed.fetch_add(n, Relaxed);
        #[cfg(not(feature = "counters"))]
        let _ = n;
    }

    /// Counts one fence.
    #[inline(always)]
    pub fn add_fence(&self) {
        #[cfg(feature = "counters")]
        self.shard().fences.fetch_add(1, Relaxed);
    }

    /// Counts `n` bytes written non-temporally (also counted as written).
    #[inline(always)]
    pub fn add_nt(&self, n: u64) {
        #[cfg(feature = "counters")]
        {
            let s = self.shard();
            s.nt_bytes.fetch_add(n, Relaxed);
            s.bytes_written.fetch_add(n, Relaxed);
        }
        #[cfg(not(feature = "counters"))]
        let _ = n;
    }

    /// Counts `n` bytes written with ordinary stores.
    #[inline(always)]
    pub fn add_written(&self, n: u64) {
        #[cfg(feature = "counters")]
        self.shard().bytes_written.fetch_add(n, Relaxed);
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
    fn counts_add_up_across_threads() {
        let cell = std::sync::Arc::new(CounterCell::new());
        let handles: Vec<_> = (0..4)
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
        assert_eq!(c.fences, 4000);
        assert_eq!(c.lines_flushed, 8000);
        assert_eq!(c.nt_bytes, 32_000);
        assert_eq!(c.bytes_written, 32_000);
        assert_eq!(c.bytes_persisted(), 8000 * 64 + 32_000);
    }
}
