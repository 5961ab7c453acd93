//! Volatile per-run state: which slots are free, who allocates from the run.
//!
//! A run's state is built the first time it is needed, by reading its header array
//! (the headers are the persistent truth). Slots are claimed and returned with atomic
//! bit operations, so a lane allocating from its run and other lanes freeing into it
//! never take a lock. Only the owning lane clears bits, so a claim never races another
//! claim.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use crate::class::GEOMETRY;

/// No lane owns the run.
pub const NO_OWNER: u32 = u32::MAX;

/// Volatile state of one run.
#[derive(Debug)]
pub struct RunState {
    /// Head chunk index.
    pub head: u32,
    /// Size-class index.
    pub class: u8,
    /// Bit set = slot free.
    bits: Box<[AtomicU64]>,
    free: AtomicU32,
    owner: AtomicU32,
    queued: AtomicBool,
    hint: AtomicU32,
}

impl RunState {
    /// A run of `class` whose slot `i` is free iff `is_free(i)`.
    pub fn new(head: u32, class: u8, mut is_free: impl FnMut(usize) -> bool) -> Self {
        let n = GEOMETRY[class as usize].nslots;
        let mut free = 0u32;
        let bits: Vec<AtomicU64> = (0..n.div_ceil(64))
            .map(|w| {
                let mut v = 0u64;
                for b in 0..64 {
                    let i = w * 64 + b;
                    if i < n && is_free(i) {
                        v |= 1 << b;
                        free += 1;
                    }
                }
                AtomicU64::new(v)
            })
            .collect();
        RunState {
            head,
            class,
            bits: bits.into_boxed_slice(),
            free: AtomicU32::new(free),
            owner: AtomicU32::new(NO_OWNER),
            queued: AtomicBool::new(false),
            hint: AtomicU32::new(0),
        }
    }

    /// Free slots now.
    pub fn free_count(&self) -> u32 {
        self.free.load(Relaxed)
    }

    /// Whether slot `i` is free.
    pub fn is_free(&self, i: usize) -> bool {
        self.bits[i / 64].load(Relaxed) & (1 << (i % 64)) != 0
    }

    /// Claims a free slot (owner only).
    pub fn take(&self) -> Option<usize> {
        let words = self.bits.len();
        let start = self.hint.load(Relaxed) as usize % words;
        for k in 0..words {
            let w = (start + k) % words;
            let v = self.bits[w].load(Acquire);
            if v != 0 {
                let b = v.trailing_zeros() as usize;
                // Only the owner clears bits, so the bit seen set is still set.
                self.bits[w].fetch_and(!(1u64 << b), AcqRel);
                self.free.fetch_sub(1, Relaxed);
                self.hint.store(w as u32, Relaxed);
                return Some(w * 64 + b);
            }
        }
        None
    }

    /// Returns slot `i`; true if the run had no free slot before.
    pub fn put(&self, i: usize) -> bool {
        let bit = 1 << (i % 64);
        let prev = self.bits[i / 64].fetch_or(bit, AcqRel);
        debug_assert_eq!(prev & bit, 0, "double free of slot {i}");
        // Keep the count exact even if a bug returned a free slot.
        prev & bit == 0 && self.free.fetch_add(1, Relaxed) == 0
    }

    /// Tries to become the run's owner.
    pub fn try_own(&self, lane: u32) -> bool {
        self.owner
            .compare_exchange(NO_OWNER, lane, AcqRel, Relaxed)
            .is_ok()
    }

    /// Gives up ownership.
    pub fn disown(&self) {
        self.owner.store(NO_OWNER, Release);
    }

    /// Whether some lane owns the run.
    pub fn owned(&self) -> bool {
        self.owner.load(Acquire) != NO_OWNER
    }

    /// Marks the run queued; true if it was not.
    pub fn mark_queued(&self) -> bool {
        !self.queued.swap(true, AcqRel)
    }

    /// Marks the run not queued.
    pub fn unmark_queued(&self) {
        self.queued.store(false, Release);
    }
}

const BLOCK: usize = 1024;

struct Block {
    runs: Box<[spin::Once<RunState>]>,
}

/// Run states by head chunk, created on demand in blocks of 1024 chunks so that memory
/// follows the part of the heap in use, and never moved or freed before the heap is
/// dropped (so `&RunState` can be handed out for the heap's lifetime).
pub struct RunTable {
    dir: Box<[AtomicPtr<Block>]>,
}

impl core::fmt::Debug for RunTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RunTable")
            .field("blocks", &self.dir.len())
            .finish()
    }
}

impl RunTable {
    /// A table for `nchunks` chunks.
    pub fn new(nchunks: usize) -> Self {
        let dir: Vec<AtomicPtr<Block>> = (0..nchunks.div_ceil(BLOCK))
            .map(|_| AtomicPtr::new(core::ptr::null_mut()))
            .collect();
        RunTable {
            dir: dir.into_boxed_slice(),
        }
    }

    fn block(&self, head: u32) -> &Block {
        let slot = &self.dir[head as usize / BLOCK];
        let mut p = slot.load(Acquire);
        if p.is_null() {
            let runs: Vec<spin::Once<RunState>> = (0..BLOCK).map(|_| spin::Once::new()).collect();
            let fresh = Box::into_raw(Box::new(Block {
                runs: runs.into_boxed_slice(),
            }));
            match slot.compare_exchange(core::ptr::null_mut(), fresh, AcqRel, Acquire) {
                Ok(_) => p = fresh,
                Err(existing) => {
                    // SAFETY: `fresh` came from Box::into_raw above and was never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                    p = existing;
                }
            }
        }
        // SAFETY: non-null pointers in `dir` come from Box::into_raw and are freed only
        // in Drop, which needs `&mut self`, so the block outlives `&self`.
        unsafe { &*p }
    }

    /// The run headed at `head` if its state exists.
    pub fn get(&self, head: u32) -> Option<&RunState> {
        let p = self.dir.get(head as usize / BLOCK)?.load(Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: as in `block`.
        unsafe { &*p }.runs[head as usize % BLOCK].get()
    }

    /// The run headed at `head`, building its state with `load` if needed.
    pub fn get_or_load(&self, head: u32, load: impl FnOnce() -> RunState) -> &RunState {
        self.block(head).runs[head as usize % BLOCK].call_once(load)
    }
}

impl Drop for RunTable {
    fn drop(&mut self) {
        for p in &*self.dir {
            let p = p.load(Acquire);
            if !p.is_null() {
                // SAFETY: created by Box::into_raw in `block`, dropped once here.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_put_track_free_slots() {
        let r = RunState::new(0, 3, |i| i % 2 == 0);
        let n = GEOMETRY[3].nslots;
        assert_eq!(r.free_count() as usize, n.div_ceil(2));
        let mut got = Vec::new();
        while let Some(i) = r.take() {
            assert_eq!(i % 2, 0);
            got.push(i);
        }
        assert_eq!(got.len(), n.div_ceil(2));
        assert_eq!(r.free_count(), 0);
        assert!(r.put(got[0]));
        assert!(!r.put(got[1]));
        assert_eq!(r.free_count(), 2);
    }

    #[test]
    fn ownership_is_exclusive() {
        let r = RunState::new(0, 0, |_| true);
        assert!(r.try_own(1));
        assert!(!r.try_own(2));
        r.disown();
        assert!(r.try_own(2));
    }

    #[test]
    fn table_loads_once_and_lists_loaded_runs() {
        let t = RunTable::new(3000);
        assert!(t.get(2500).is_none());
        let a = t.get_or_load(2500, || RunState::new(2500, 1, |_| true));
        let b = t.get_or_load(2500, || unreachable!("loaded twice"));
        assert!(core::ptr::eq(a, b));
        t.get_or_load(7, || RunState::new(7, 2, |_| false));
        assert_eq!(t.get(7).map(|r| r.head), Some(7));
    }
}
