//! `VolatileHeap`: a fast `GlobalAlloc` over a memory region (DRAM, or a pool region
//! used as scratch), for bare-metal and unikernel programs. Nothing is persistent and
//! nothing is flushed; the region is simply the heap.
//!
//! Small blocks use the same size classes as the persistent heap. Each of a few caches
//! (picked by the caller's stack address, so threads mostly keep to their own) keeps an
//! intrusive free list per class and a bump range to carve fresh blocks from; a cache
//! whose list grows long spills half to a shared per-class list that refills others.
//! Blocks above the largest class come in 4 KiB multiples from an address-ordered free
//! list that merges neighbours. `dealloc` learns the class from the `Layout`, so no
//! per-block header exists.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{
    AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use crate::class::{placement, Placement, CLASSES, NCLASSES};
use crate::layout::PAGE;

const NCACHES: usize = 8;
/// Bytes of free blocks of one class a cache keeps before it hands half to the shared
/// list (at least 16 blocks): what a cache can hoard while its thread is away.
const SPILL_BYTES: usize = 128 * 1024;
const CARVE: usize = 64 * 1024;

/// Free blocks of `class` a cache keeps before spilling.
fn spill_limit(class: usize) -> u32 {
    (SPILL_BYTES / CLASSES[class]).max(16) as u32
}

/// Cuts the list at `head` after its `n`-th block (`n >= 1`); returns the rest.
///
/// # Safety
/// `head` starts a list of at least `n` free blocks of the heap, linked through their
/// first words.
unsafe fn split_list(head: usize, n: u32) -> usize {
    let mut tail = head;
    for _ in 1..n {
        // SAFETY: within the first `n` blocks of the list (caller).
        tail = unsafe { ptr::read(tail as *const usize) };
    }
    // SAFETY: `tail` is the `n`-th block.
    let rest = unsafe { ptr::read(tail as *const usize) };
    // SAFETY: as above.
    unsafe { ptr::write(tail as *mut usize, 0) };
    rest
}

/// Links `rest` behind the last block of the list at `head`.
///
/// # Safety
/// `head` starts a null-terminated list of free blocks of the heap.
unsafe fn append_list(head: usize, rest: usize) {
    let mut last = head;
    loop {
        // SAFETY: walking the list (caller).
        let next = unsafe { ptr::read(last as *const usize) };
        if next == 0 {
            break;
        }
        last = next;
    }
    // SAFETY: `last` ends the list.
    unsafe { ptr::write(last as *mut usize, rest) };
}

#[derive(Debug, Clone, Copy)]
struct ClassCache {
    head: usize,
    count: u32,
    carve: usize,
    carve_end: usize,
}

#[repr(align(128))]
#[derive(Debug)]
struct Cache(spin::Mutex<[ClassCache; NCLASSES]>);

/// A `GlobalAlloc` over one memory region. Use as a `static` with
/// [`VolatileHeap::empty`] and [`VolatileHeap::init`], or build with
/// [`VolatileHeap::new`].
#[derive(Debug)]
pub struct VolatileHeap {
    bump: AtomicUsize,
    end: AtomicUsize,
    caches: [Cache; NCACHES],
    shared: [spin::Mutex<(usize, u32)>; NCLASSES],
    large: spin::Mutex<usize>,
}

const EMPTY_CLASS: ClassCache = ClassCache {
    head: 0,
    count: 0,
    carve: 0,
    carve_end: 0,
};

// SAFETY: all state is behind atomics and spin locks; blocks handed out are disjoint.
unsafe impl Sync for VolatileHeap {}
// SAFETY: the heap refers to its region by address only; moving it between threads is
// fine.
unsafe impl Send for VolatileHeap {}

impl VolatileHeap {
    /// A heap with no region yet (every allocation fails until `init`).
    pub const fn empty() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const C: Cache = Cache(spin::Mutex::new([EMPTY_CLASS; NCLASSES]));
        #[allow(clippy::declare_interior_mutable_const)]
        const S: spin::Mutex<(usize, u32)> = spin::Mutex::new((0, 0));
        VolatileHeap {
            bump: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            caches: [C; NCACHES],
            shared: [S; NCLASSES],
            large: spin::Mutex::new(0),
        }
    }

    /// A heap over `[start, start + len)`.
    ///
    /// # Safety
    /// The region is valid for reads and writes, unused by anything else, and outlives
    /// the heap and every block it hands out.
    pub unsafe fn new(start: NonNull<u8>, len: usize) -> Self {
        let h = Self::empty();
        // SAFETY: forwarded from the caller.
        unsafe { h.init(start, len) };
        h
    }

    /// Gives the heap its region (once).
    ///
    /// # Safety
    /// As for [`VolatileHeap::new`]; call once, before any allocation.
    pub unsafe fn init(&self, start: NonNull<u8>, len: usize) {
        let s = (start.as_ptr() as usize).next_multiple_of(PAGE);
        let e = (start.as_ptr() as usize + len) / PAGE * PAGE;
        self.bump.store(s, Release);
        self.end.store(e.max(s), Release);
    }

    /// Bytes not yet carved from the region (free blocks not counted).
    pub fn uncarved(&self) -> usize {
        self.end
            .load(Acquire)
            .saturating_sub(self.bump.load(Acquire))
    }

    fn carve(&self, len: usize) -> Option<usize> {
        let mut cur = self.bump.load(Relaxed);
        loop {
            let next = cur.checked_add(len)?;
            if next > self.end.load(Acquire) {
                return None;
            }
            match self.bump.compare_exchange_weak(cur, next, AcqRel, Relaxed) {
                Ok(_) => return Some(cur),
                Err(c) => cur = c,
            }
        }
    }

    fn cache(&self) -> spin::MutexGuard<'_, [ClassCache; NCLASSES]> {
        let marker = 0u8;
        let start =
            (core::ptr::addr_of!(marker) as usize >> 21).wrapping_mul(0x9E37_79B9) % NCACHES;
        // Unit tests pick the cache, to play threads that land on different ones.
        #[cfg(test)]
        let start = tests::FORCE_CACHE
            .with(core::cell::Cell::get)
            .unwrap_or(start);
        for k in 0..NCACHES {
            if let Some(g) = self.caches[(start + k) % NCACHES].0.try_lock() {
                return g;
            }
        }
        self.caches[start].0.lock()
    }

    fn alloc_small(&self, class: usize) -> *mut u8 {
        let p = self.alloc_small_once(class);
        if !p.is_null() {
            return p;
        }
        // The region is carved up, but free blocks may sit in other caches' lists (a
        // thread that stopped, or moved to another cache, left them there): move every
        // list to the shared ones and try again.
        self.reclaim();
        self.alloc_small_once(class)
    }

    /// Moves every cache's free lists to the shared lists.
    fn reclaim(&self) {
        for cache in &self.caches {
            let mut caches = cache.0.lock();
            for (class, c) in caches.iter_mut().enumerate() {
                if c.head == 0 {
                    continue;
                }
                let mut sh = self.shared[class].lock();
                // SAFETY: `c.head` starts this cache's null-terminated free list.
                unsafe { append_list(c.head, sh.0) };
                *sh = (c.head, sh.1 + c.count);
                c.head = 0;
                c.count = 0;
            }
        }
    }

    fn alloc_small_once(&self, class: usize) -> *mut u8 {
        let size = CLASSES[class];
        let mut caches = self.cache();
        let c = &mut caches[class];
        if c.head == 0 {
            // Refill from the shared list, a batch at a time so that one cache does not
            // take every block other caches gave up.
            let mut sh = self.shared[class].lock();
            if sh.0 != 0 {
                let n = sh.1.min(spill_limit(class) / 2).max(1);
                // SAFETY: the shared list holds `sh.1 >= n` free blocks of this heap.
                let rest = unsafe { split_list(sh.0, n) };
                *c = ClassCache {
                    head: sh.0,
                    count: n,
                    ..*c
                };
                *sh = (rest, sh.1 - n);
            }
        }
        if c.head != 0 {
            let b = c.head;
            // SAFETY: `b` is a free block of this heap; its first word holds the next link.
            c.head = unsafe { ptr::read(b as *const usize) };
            c.count -= 1;
            return b as *mut u8;
        }
        if c.carve + size > c.carve_end {
            let len = CARVE.max(size).next_multiple_of(PAGE);
            let Some(s) = self.carve(len) else {
                return ptr::null_mut();
            };
            c.carve = s;
            c.carve_end = s + len;
        }
        let b = c.carve;
        c.carve += size;
        b as *mut u8
    }

    fn free_small(&self, p: *mut u8, class: usize) {
        let mut caches = self.cache();
        let c = &mut caches[class];
        // SAFETY: `p` is a block of at least 16 bytes (aligned to 16) being freed: it is
        // ours to reuse.
        unsafe { ptr::write((p as usize) as *mut usize, c.head) };
        c.head = p as usize;
        c.count += 1;
        let limit = spill_limit(class);
        if c.count >= limit {
            // Hand half of the list to the shared one so other caches can reuse it.
            let n = limit / 2;
            let moved = c.head;
            // SAFETY: our list holds `c.count >= n` blocks.
            let rest = unsafe { split_list(moved, n) };
            c.head = rest;
            c.count -= n;
            let mut sh = self.shared[class].lock();
            // SAFETY: `moved` heads a list of `n` blocks ending in a null link.
            unsafe { append_list(moved, sh.0) };
            *sh = (moved, sh.1 + n);
        }
    }

    // Large blocks: address-ordered list of [size, next] headers in the free blocks.
    fn alloc_large(&self, size: usize) -> *mut u8 {
        let size = size.next_multiple_of(PAGE);
        let mut head = self.large.lock();
        let mut prev: *mut usize = &raw mut *head;
        // SAFETY: the list holds free blocks of this heap; each starts with [size, next].
        unsafe {
            let mut cur = *prev;
            while cur != 0 {
                let bsize = ptr::read(cur as *const usize);
                let next = ptr::read((cur as *const usize).add(1));
                if bsize >= size {
                    if bsize - size >= PAGE {
                        let rest = cur + size;
                        ptr::write(rest as *mut usize, bsize - size);
                        ptr::write((rest as *mut usize).add(1), next);
                        *prev = rest;
                    } else {
                        *prev = next;
                    }
                    return cur as *mut u8;
                }
                prev = (cur as *mut usize).add(1);
                cur = next;
            }
        }
        drop(head);
        self.carve(size).map_or(ptr::null_mut(), |b| b as *mut u8)
    }

    fn free_large(&self, p: *mut u8, size: usize) {
        let size = size.next_multiple_of(PAGE);
        let addr = p as usize;
        let mut head = self.large.lock();
        // SAFETY: as in alloc_large; `p` is a large block being returned.
        unsafe {
            let mut prev_link: *mut usize = &raw mut *head;
            let mut prev_block = 0usize;
            while *prev_link != 0 && *prev_link < addr {
                prev_block = *prev_link;
                prev_link = (prev_block as *mut usize).add(1);
            }
            let next = *prev_link;
            let (mut start, mut len) = (addr, size);
            let mut after = next;
            if next != 0 && addr + size == next {
                len += ptr::read(next as *const usize);
                after = ptr::read((next as *const usize).add(1));
            }
            if prev_block != 0 && prev_block + ptr::read(prev_block as *const usize) == addr {
                start = prev_block;
                len += ptr::read(prev_block as *const usize);
                ptr::write(start as *mut usize, len);
                ptr::write((start as *mut usize).add(1), after);
            } else {
                ptr::write(start as *mut usize, len);
                ptr::write((start as *mut usize).add(1), after);
                *prev_link = start;
            }
        }
    }
}

// SAFETY: blocks are disjoint, at least `layout.size()` bytes, aligned as `placement`
// requires (slot sizes are multiples of the alignment and carve ranges are page
// aligned; large blocks are page aligned), and stay allocated until dealloc.
unsafe impl GlobalAlloc for VolatileHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match placement(layout.size().max(1), layout.align()) {
            Some(Placement::Run(c)) => self.alloc_small(c),
            Some(Placement::Extent(_)) => self.alloc_large(layout.size()),
            None => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match placement(layout.size().max(1), layout.align()) {
            Some(Placement::Run(c)) => self.free_small(p, c),
            Some(Placement::Extent(_)) => self.free_large(p, layout.size()),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(len: usize) -> (Vec<u8>, VolatileHeap) {
        let mut mem = vec![0u8; len];
        let start = NonNull::new(mem.as_mut_ptr()).unwrap();
        // SAFETY: `mem` is returned with the heap and outlives every use in the tests.
        let heap = unsafe { VolatileHeap::new(start, len) };
        (mem, heap)
    }

    #[test]
    fn blocks_are_disjoint_aligned_and_reused() {
        let (_mem, heap) = region(8 << 20);
        let mut live: Vec<(usize, Layout)> = Vec::new();
        let mut seed = 7u64;
        for step in 0..20_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let size = 1 + (seed >> 33) as usize % 5000;
            let align = 1 << ((seed >> 20) % 13);
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size layout.
            let block = unsafe { heap.alloc(layout) };
            assert!(!block.is_null(), "oom at {step}");
            assert_eq!(block as usize % align, 0);
            // SAFETY: the block is ours and `size` long.
            unsafe { ptr::write_bytes(block, u8::try_from(step % 251).unwrap(), size) };
            live.push((block as usize, layout));
            if live.len() > 300 {
                let victim = (seed >> 40) as usize % live.len();
                let (addr, old) = live.swap_remove(victim);
                // SAFETY: allocated above with `old`.
                unsafe { heap.dealloc(addr as *mut u8, old) };
            }
        }
        live.sort_unstable_by_key(|(addr, _)| *addr);
        for pair in live.windows(2) {
            assert!(pair[0].0 + pair[0].1.size() <= pair[1].0, "overlap");
        }
    }

    #[test]
    fn large_blocks_merge_when_freed() {
        let (_mem, h) = region(4 << 20);
        let l = Layout::from_size_align(300 * 1024, 8).unwrap();
        // SAFETY: valid layouts; blocks freed once.
        unsafe {
            let first = h.alloc(l);
            let second = h.alloc(l);
            let third = h.alloc(l);
            assert!(!first.is_null() && !second.is_null() && !third.is_null());
            h.dealloc(first, l);
            h.dealloc(third, l);
            h.dealloc(second, l);
            let big = Layout::from_size_align(900 * 1024, 8).unwrap();
            assert_eq!(
                h.alloc(big),
                first,
                "three neighbours merged into one block"
            );
        }
    }

    std::thread_local! {
        /// The cache `VolatileHeap::cache` starts from, when set.
        pub(super) static FORCE_CACHE: core::cell::Cell<Option<usize>> =
            const { core::cell::Cell::new(None) };
    }

    /// A bug this caught: each thread keeps its frees in the cache its stack address
    /// picks, so threads that came and went left up to 511 blocks per class in caches
    /// no one used, and a region ran out with most of it free (2 threads x 10,000 live
    /// blocks ran a 256 MiB region dry within 17 rounds of new threads). Now a cache
    /// keeps at most 128 KiB per class, refills take batches from the shared lists, and
    /// running out first moves every cache's blocks to the shared lists.
    #[test]
    fn blocks_left_in_other_caches_are_reused_before_running_out() {
        let (_mem, h) = region(16 << 20);
        // Rounds of 1.5 MiB live, each round as a "thread" on another cache, with a
        // class that changes too: 72 (cache, class) pairs to leave blocks in.
        for round in 0..72usize {
            FORCE_CACHE.with(|c| c.set(Some(round % NCACHES)));
            let l = Layout::from_size_align(512 + 64 * (round / NCACHES), 8).unwrap();
            let n = (3 << 19) / l.size();
            // SAFETY: valid layout; every block freed once, with it.
            let blocks: Vec<_> = (0..n).map(|_| unsafe { h.alloc(l) }).collect();
            assert!(
                blocks.iter().all(|b| !b.is_null()),
                "out of memory in round {round}"
            );
            for b in blocks {
                // SAFETY: as above.
                unsafe { h.dealloc(b, l) };
            }
        }
        FORCE_CACHE.with(|c| c.set(None));
    }

    #[test]
    fn exhaustion_returns_null() {
        let (_mem, h) = region(1 << 20);
        let l = Layout::from_size_align(200 * 1024, 8).unwrap();
        let n = (0..100)
            .take_while(|_| {
                // SAFETY: `l` is a valid, non-zero layout; the blocks are never used.
                !unsafe { h.alloc(l) }.is_null()
            })
            .count();
        assert!((3..=5).contains(&n), "{n}");
    }
}
