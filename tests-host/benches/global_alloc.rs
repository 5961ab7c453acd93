//! `VolatileHeap` as a `GlobalAlloc` against `linked_list_allocator` and the system
//! allocator (glibc malloc), on one realistic mix: `LIVE` blocks of 64..4096 bytes
//! (uniform), and per iteration one random block freed and replaced by a new one of a
//! random size. One thread, and two threads (each with its own blocks, both on the same
//! allocator at once; the time is the wall time until both finish, per pair).
//!
//! `cargo bench -p tests-host --bench global_alloc`. Sizes and slots come from one
//! `SplitMix64` sequence shared by every allocator.
// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pmalloc::VolatileHeap;

/// Live blocks per thread.
const LIVE: usize = 10_000;
/// Bytes of the region given to the region allocators (per allocator).
const REGION: usize = 256 << 20;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn size(&mut self) -> usize {
        64 + (self.next() % 4033) as usize
    }
}

/// One thread's blocks on allocator `a`.
struct Blocks<'a, A: GlobalAlloc> {
    a: &'a A,
    live: Vec<(NonNull<u8>, Layout)>,
    rng: SplitMix,
}

impl<'a, A: GlobalAlloc> Blocks<'a, A> {
    fn new(a: &'a A, seed: u64) -> Self {
        let mut rng = SplitMix(seed);
        let live = (0..LIVE)
            .map(|_| {
                let l = Layout::from_size_align(rng.size(), 8).unwrap();
                (alloc(a, l), l)
            })
            .collect();
        Blocks { a, live, rng }
    }

    /// Frees a random block and allocates one of a random size in its place.
    #[inline]
    fn replace(&mut self) {
        let i = (self.rng.next() % LIVE as u64) as usize;
        let l = Layout::from_size_align(self.rng.size(), 8).unwrap();
        let (p, old) = self.live[i];
        // SAFETY: `p` was allocated by `self.a` with `old` and is freed once.
        unsafe { self.a.dealloc(p.as_ptr(), old) };
        let q = alloc(self.a, l);
        // Touch the block, as a program would.
        // SAFETY: `q` is a fresh block of at least 64 bytes.
        unsafe { q.as_ptr().write_volatile(1) };
        self.live[i] = (q, l);
    }
}

impl<A: GlobalAlloc> Drop for Blocks<'_, A> {
    fn drop(&mut self) {
        for &(p, l) in &self.live {
            // SAFETY: every live block was allocated by `self.a` with `l`.
            unsafe { self.a.dealloc(p.as_ptr(), l) };
        }
    }
}

fn alloc<A: GlobalAlloc>(a: &A, l: Layout) -> NonNull<u8> {
    // SAFETY: `l` has a non-zero size.
    NonNull::new(unsafe { a.alloc(l) }).expect("allocator out of memory")
}

/// A leaked, page-aligned region for the region allocators.
fn region() -> NonNull<u8> {
    let mem: &'static mut [u64] = Vec::leak(vec![0u64; REGION / 8]);
    NonNull::new(mem.as_mut_ptr().cast()).unwrap()
}

fn volatile_heap() -> &'static VolatileHeap {
    // SAFETY: the region is leaked, so it outlives the heap, and nothing else uses it.
    Box::leak(Box::new(unsafe { VolatileHeap::new(region(), REGION) }))
}

fn linked_list() -> &'static linked_list_allocator::LockedHeap {
    let h = Box::leak(Box::new(linked_list_allocator::LockedHeap::empty()));
    // SAFETY: as for `volatile_heap`.
    unsafe { h.lock().init(region().as_ptr(), REGION) };
    h
}

fn one_thread<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    let mut b = Blocks::new(a, 1);
    let start = Instant::now();
    for _ in 0..iters {
        b.replace();
    }
    let t = start.elapsed();
    black_box(&b.live);
    t
}

fn two_threads<A: GlobalAlloc + Sync>(a: &A, iters: u64) -> Duration {
    let barrier = Barrier::new(3);
    let per = iters.div_ceil(2);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let barrier = &barrier;
            s.spawn(move || {
                let mut b = Blocks::new(a, 10 + t);
                barrier.wait();
                for _ in 0..per {
                    b.replace();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let vh = volatile_heap();
    let ll = linked_list();
    let mut g = c.benchmark_group("free+alloc pair, 10,000 live, 64..4096 B");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function(BenchmarkId::new("1 thread", "VolatileHeap"), |b| {
        b.iter_custom(|n| one_thread(vh, n));
    });
    g.bench_function(BenchmarkId::new("1 thread", "system"), |b| {
        b.iter_custom(|n| one_thread(&System, n));
    });
    g.bench_function(BenchmarkId::new("1 thread", "linked_list_allocator"), |b| {
        b.iter_custom(|n| one_thread(ll, n));
    });
    g.bench_function(BenchmarkId::new("2 threads", "VolatileHeap"), |b| {
        b.iter_custom(|n| two_threads(vh, n));
    });
    g.bench_function(BenchmarkId::new("2 threads", "system"), |b| {
        b.iter_custom(|n| two_threads(&System, n));
    });
    g.bench_function(
        BenchmarkId::new("2 threads", "linked_list_allocator"),
        |b| {
            b.iter_custom(|n| two_threads(ll, n));
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
