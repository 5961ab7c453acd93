//! The bootstrap heap: `linked_list_allocator` over a static DRAM arena, as the
//! global allocator.
//!
//! This module is the only place that names the global allocator, so replacing it with
//! a `pmalloc` pool (or putting one beside it) changes this file only.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use linked_list_allocator::LockedHeap;

/// Size of the arena: room for an ADR working copy of a large log plus test buffers.
pub const HEAP_SIZE: usize = 32 << 20;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[MaybeUninit<u8>; HEAP_SIZE]>);

// SAFETY: the arena is handed out once, to the allocator, whose lock serialises use.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([MaybeUninit::uninit(); HEAP_SIZE]));
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Gives the arena to the allocator. Later calls do nothing.
pub fn init() {
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the flag above lets exactly one caller through, so this is the only
    // reference ever made to the arena, and it lives as long as the static.
    let arena: &'static mut [MaybeUninit<u8>] = unsafe { &mut *ARENA.0.get() };
    ALLOCATOR.lock().init_from_slice(arena);
}

/// Whether `[addr, addr + len)` lies inside the arena.
pub fn contains(addr: u64, len: usize) -> bool {
    let start = ARENA.0.get() as u64;
    addr >= start && addr.saturating_add(len as u64) <= start + HEAP_SIZE as u64
}
