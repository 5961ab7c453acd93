//! The kernel's global allocator: `pmalloc`'s [`VolatileHeap`] over the largest DRAM
//! region of the PVH memory map.
//!
//! `kmain` calls [`init`] as soon as the start info (and with it the memory map) has
//! been read; nothing allocates before that (the start info, the command line and the
//! NVDIMM list are fixed-capacity `heapless` values), so no bootstrap heap is needed:
//! an allocation before `init` fails, which panics with the allocation's size.
//!
//! The region is the largest piece of a RAM entry (type 1) of the memory map that lies
//! between 1 MiB (below it: BIOS data and the start info) and 4 GiB (what the boot stub
//! maps), with the kernel image (`.bss` included: stack, page tables) cut out. ACPI
//! tables sit in reserved entries and are never part of it.
//!
//! This module is the only place that names the global allocator: putting it on a pool
//! region instead (a `VolatileHeap` over a window of an NVDIMM) changes this file only.
//! Every allocation and free is counted ([`stats`]), so tests can show that `alloc`
//! collections are served from here.

use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pmalloc::VolatileHeap;

use crate::start_info::MemoryRegion;

/// E820 type of usable RAM.
const RAM: u32 = 1;
/// Below this, BIOS data and the firmware's start info: never heap.
const LOW_LIMIT: u64 = 1 << 20;
/// Regions start and end on page boundaries (`VolatileHeap` would round them anyway).
const PAGE: u64 = 4096;
/// What the boot stub identity-maps.
const MAPPED_END: u64 = 1 << 32;
/// The smallest region worth a heap: room for an ADR working copy of a heap-workload
/// pool (16 MiB) and the test buffers.
pub const MIN_REGION: u64 = 32 << 20;

/// The global allocator: a `VolatileHeap` that counts its calls.
struct CountingHeap {
    heap: VolatileHeap,
    region: spin::Once<Region>,
    allocs: AtomicU64,
    frees: AtomicU64,
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap {
    heap: VolatileHeap::empty(),
    region: spin::Once::new(),
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
};

// SAFETY: forwards to `VolatileHeap`, whose `GlobalAlloc` contract holds; the counters
// are plain atomics and change nothing about the blocks.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocs.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.heap.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.frees.fetch_add(1, Relaxed);
        // SAFETY: as above; every block came from `self.heap`.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

/// A physical (= virtual) address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// Bytes.
    pub len: u64,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// Whether `[addr, addr + len)` lies inside.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.end())
    }
}

/// Why the heap could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapError {
    /// No RAM region of at least [`MIN_REGION`] bytes outside the kernel image.
    NoRegion {
        /// The largest region found (0: none).
        largest: u64,
    },
    /// `init` was called twice.
    AlreadyInitialised,
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::NoRegion { largest } => write!(
                f,
                "no RAM region of {MIN_REGION:#x} bytes for the heap (largest {largest:#x})"
            ),
            HeapError::AlreadyInitialised => write!(f, "the heap was already initialised"),
        }
    }
}

impl core::error::Error for HeapError {}

/// The largest page-aligned piece of RAM in `memmap` between 1 MiB and 4 GiB that does
/// not overlap `image` (`[start, end)`), or `None` if there is no RAM there.
pub fn dram_region(memmap: &[MemoryRegion], image: (u64, u64)) -> Option<Region> {
    let mut best: Option<Region> = None;
    let mut offer = |start: u64, end: u64| {
        let (start, end) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if end > start && best.is_none_or(|b| end - start > b.len) {
            best = Some(Region {
                start,
                len: end - start,
            });
        }
    };
    for r in memmap.iter().filter(|r| r.kind == RAM) {
        let start = r.base.max(LOW_LIMIT);
        let end = r.base.saturating_add(r.size).min(MAPPED_END);
        if image.1 <= start || image.0 >= end {
            offer(start, end);
        } else {
            offer(start, image.0);
            offer(image.1, end);
        }
    }
    best
}

/// Gives the heap the largest DRAM region of `memmap` (see the module docs); returns
/// it. Call once, before anything allocates.
pub fn init(memmap: &[MemoryRegion]) -> Result<Region, HeapError> {
    let best = dram_region(memmap, crate::firmware::kernel_image());
    let region = best
        .filter(|r| r.len >= MIN_REGION)
        .ok_or(HeapError::NoRegion {
            largest: best.map_or(0, |r| r.len),
        })?;
    if HEAP.region.is_completed() {
        return Err(HeapError::AlreadyInitialised);
    }
    HEAP.region.call_once(|| region);
    let start = NonNull::new(region.start as *mut u8).ok_or(HeapError::NoRegion { largest: 0 })?;
    // SAFETY: the region is RAM by the firmware's memory map, identity-mapped by the
    // boot stub (below 4 GiB), outside the kernel image and above the firmware's low
    // memory, so nothing else uses it; it stays mapped for the kernel's life; and the
    // `Once` above lets this run once only, before any allocation.
    unsafe { HEAP.heap.init(start, region.len as usize) };
    Ok(region)
}

/// What the global allocator has done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUse {
    /// The DRAM region (empty before `init`).
    pub region: Region,
    /// Bytes of the region not yet carved into blocks.
    pub uncarved: u64,
    /// `alloc` calls so far (including ones that failed).
    pub allocs: u64,
    /// `dealloc` calls so far.
    pub frees: u64,
}

/// The allocator's counters and region.
pub fn stats() -> HeapUse {
    HeapUse {
        region: HEAP
            .region
            .get()
            .copied()
            .unwrap_or(Region { start: 0, len: 0 }),
        uncarved: HEAP.heap.uncarved() as u64,
        allocs: HEAP.allocs.load(Relaxed),
        frees: HEAP.frees.load(Relaxed),
    }
}
