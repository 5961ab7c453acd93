//! Volatile per-run state: which slots are free, who allocates from the run.
//!
//! A run's state is built the first time it is needed, by reading its header array
//! (the headers are the persistent truth). Slots are claimed and returned with atomic
//! bit operations, so a lane allocating from its run and other lanes freeing into it
//! never take a lock. Only the owning lane clears bits, so a claim never races another
//! claim.
//!
//! A run whose slots are all free can be handed back to the free chunks at a
//! checkpoint; its state is then dropped from the [`RunTable`] ([`RunTable::reset`]).
//! That is why every `&RunState` the table hands out is used only while the caller
//! holds a lane lock (or every lane lock), and never kept past it: the checkpoint that
//! resets states holds every lane lock.

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
///
/// Free slots are kept in two bitmaps. `local` belongs to the owning lane: only a
/// thread holding that lane's lock reads or writes it, with plain loads and stores.
/// `remote` takes frees from every other lane (and all frees while no lane owns the
/// run) with atomic ORs, and the owner moves it into `local` with a swap when `local`
/// runs dry. So the owner's claims and its own frees use no locked instruction: a
/// locked read-modify-write would wait for the op's earlier cache-line flushes and
/// expose their write-back before the fence that is meant to overlap it (see `op`).
/// A slot is free iff its bit is set in one of the two (never both). Ownership moves
/// with a release store and an acquiring compare-exchange, which hand `local` over.
#[derive(Debug)]
pub struct RunState {
    /// Head chunk index.
    pub head: u32,
    /// Size-class index.
    pub class: u8,
    /// Bit set = slot free; the owner's (see above).
    local: Box<[AtomicU64]>,
    /// Bit set = slot freed by a non-owner, not yet moved to `local`.
    remote: Box<[AtomicU64]>,
    local_free: AtomicU32,
    remote_free: AtomicU32,
    owner: AtomicU32,
    queued: AtomicBool,
    hint: AtomicU32,
}

impl RunState {
    /// A run of `class` whose slot `i` is free iff `is_free(i)`.
    pub fn new(head: u32, class: u8, mut is_free: impl FnMut(usize) -> bool) -> Self {
        let n = GEOMETRY[class as usize].nslots;
        let mut free = 0u32;
        let local: Vec<AtomicU64> = (0..n.div_ceil(64))
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
        let remote: Vec<AtomicU64> = (0..local.len()).map(|_| AtomicU64::new(0)).collect();
        RunState {
            head,
            class,
            local: local.into_boxed_slice(),
            remote: remote.into_boxed_slice(),
            local_free: AtomicU32::new(free),
            remote_free: AtomicU32::new(0),
            owner: AtomicU32::new(NO_OWNER),
            queued: AtomicBool::new(false),
            hint: AtomicU32::new(0),
        }
    }

    /// Free slots now (exact when no lane is working on the run).
    pub fn free_count(&self) -> u32 {
        self.local_free.load(Relaxed) + self.remote_free.load(Relaxed)
    }

    /// Whether slot `i` is free.
    pub fn is_free(&self, i: usize) -> bool {
        (self.local[i / 64].load(Relaxed) | self.remote[i / 64].load(Relaxed)) & (1 << (i % 64))
            != 0
    }

    /// Claims a free slot. Only the owner calls it, holding its lane lock.
    pub fn take(&self) -> Option<usize> {
        if let Some(i) = self.take_local() {
            return Some(i);
        }
        if self.remote_free.load(Relaxed) == 0 {
            return None;
        }
        // Move the remote frees into `local` (the one locked path, once per refill).
        let mut moved = 0;
        for (l, r) in self.local.iter().zip(&*self.remote) {
            if r.load(Relaxed) != 0 {
                let bits = r.swap(0, Acquire);
                l.store(l.load(Relaxed) | bits, Relaxed);
                moved += bits.count_ones();
            }
        }
        self.remote_free.fetch_sub(moved, Relaxed);
        self.local_free
            .store(self.local_free.load(Relaxed) + moved, Relaxed);
        self.take_local()
    }

    fn take_local(&self) -> Option<usize> {
        let words = self.local.len();
        // The hint is always a word index (stored below); the compares spare a divide
        // per word looked at.
        let start = (self.hint.load(Relaxed) as usize).min(words.saturating_sub(1));
        for k in 0..words {
            let w = if start + k >= words {
                start + k - words
            } else {
                start + k
            };
            let v = self.local[w].load(Relaxed);
            if v != 0 {
                let b = v.trailing_zeros() as usize;
                self.local[w].store(v & !(1u64 << b), Relaxed);
                self.local_free
                    .store(self.local_free.load(Relaxed) - 1, Relaxed);
                self.hint.store(w as u32, Relaxed);
                return Some(w * 64 + b);
            }
        }
        None
    }

    /// The slot the next [`RunState::take`] will most likely return (the lowest free
    /// slot of the hint's word), for a prefetch of its header: a free can still put a
    /// lower one before it.
    pub fn peek(&self) -> Option<usize> {
        let w = self.hint.load(Relaxed) as usize;
        let v = self.local.get(w)?.load(Relaxed);
        (v != 0).then(|| w * 64 + v.trailing_zeros() as usize)
    }

    /// Returns slot `i` on behalf of lane `lane` (whose lock the caller holds); the
    /// number of free slots after it.
    pub fn put(&self, i: usize, lane: u32) -> u32 {
        let bit = 1 << (i % 64);
        debug_assert_eq!(
            (self.local[i / 64].load(Relaxed) | self.remote[i / 64].load(Relaxed)) & bit,
            0,
            "double free of slot {i}"
        );
        // The owner cannot change under us when it is us: we hold our lane's lock.
        if self.owner.load(Acquire) == lane {
            let l = &self.local[i / 64];
            l.store(l.load(Relaxed) | bit, Relaxed);
            let n = self.local_free.load(Relaxed) + 1;
            self.local_free.store(n, Relaxed);
            n + self.remote_free.load(Relaxed)
        } else {
            let prev = self.remote[i / 64].fetch_or(bit, Release);
            // Keep the count exact even if a bug returned a free slot.
            let r = if prev & bit == 0 {
                self.remote_free.fetch_add(1, Relaxed) + 1
            } else {
                self.remote_free.load(Relaxed)
            };
            r + self.local_free.load(Relaxed)
        }
    }

    /// Whether every slot is free (exact when no lane is working on the run).
    pub fn is_empty(&self) -> bool {
        self.free_count() as usize == GEOMETRY[self.class as usize].nslots
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

    /// Marks the run queued; true if it was not. (A plain load first: a run that is
    /// already queued, the common case on frees, costs no locked instruction.)
    pub fn mark_queued(&self) -> bool {
        !self.queued.load(Relaxed) && !self.queued.swap(true, AcqRel)
    }

    /// Marks the run not queued.
    pub fn unmark_queued(&self) {
        self.queued.store(false, Release);
    }
}

const BLOCK: usize = 1024;

struct Block {
    runs: Box<[AtomicPtr<RunState>]>,
}

/// Run states by head chunk, created on demand in blocks of 1024 chunks so that memory
/// follows the part of the heap in use. A state lives until its run is freed
/// ([`RunTable::reset`], at a checkpoint holding every lane) or the heap is dropped.
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
        let p = install(&self.dir[head as usize / BLOCK], || {
            let runs: Vec<AtomicPtr<RunState>> = (0..BLOCK)
                .map(|_| AtomicPtr::new(core::ptr::null_mut()))
                .collect();
            Block {
                runs: runs.into_boxed_slice(),
            }
        });
        // SAFETY: non-null pointers in `dir` come from Box::into_raw and are freed only
        // in Drop, which needs `&mut self`, so the block outlives `&self`.
        unsafe { &*p }
    }

    /// The slot of `head`, if its block exists.
    #[inline(always)]
    fn slot(&self, head: u32) -> Option<&AtomicPtr<RunState>> {
        let p = self.dir.get(head as usize / BLOCK)?.load(Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: as in `block`.
        Some(&unsafe { &*p }.runs[head as usize % BLOCK])
    }

    /// The run headed at `head` if its state exists. Use the reference only while
    /// holding a lane lock (module docs).
    #[inline(always)]
    pub fn get(&self, head: u32) -> Option<&RunState> {
        let p = self.slot(head)?.load(Acquire);
        // SAFETY: non-null states come from Box::into_raw in `get_or_load` and are freed
        // only by `reset` (whose callers hold every lane lock, so no user of this
        // reference, who holds one, can be running) or by Drop (`&mut self`).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The run headed at `head`, building its state with `load` if needed. Use the
    /// reference only while holding a lane lock (module docs).
    #[inline(always)]
    pub fn get_or_load(&self, head: u32, load: impl FnOnce() -> RunState) -> &RunState {
        // Every op looks its run up: the common case (the state exists) without a call.
        match self.get(head) {
            Some(r) => r,
            None => self.load_new(head, load),
        }
    }

    #[cold]
    #[inline(never)]
    fn load_new(&self, head: u32, load: impl FnOnce() -> RunState) -> &RunState {
        // Two loaders may race; both read the same headers, so the winner's state is as
        // good as the loser's (a free applied after the winner installed its state
        // cannot have been read by the loser, which would then lose the exchange).
        let p = install(&self.block(head).runs[head as usize % BLOCK], load);
        // SAFETY: as in `get`.
        unsafe { &*p }
    }

    /// Drops the state of the run headed at `head` (the run was freed).
    ///
    /// # Safety
    /// No reference to that state obtained from [`RunTable::get`] or
    /// [`RunTable::get_or_load`] is in use or will be used: the caller holds every lane
    /// lock, and every user of such a reference holds a lane lock while using it.
    pub unsafe fn reset(&self, head: u32) {
        let Some(slot) = self.slot(head) else {
            return;
        };
        let p = slot.swap(core::ptr::null_mut(), AcqRel);
        if !p.is_null() {
            // SAFETY: created by Box::into_raw in `get_or_load`; unreachable from the
            // table now, and the caller guarantees no reference to it is live.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// The pointer in `slot`, installing a boxed `make()` first if it is null (if another
/// thread installs one meanwhile, ours is dropped and theirs returned).
fn install<T>(slot: &AtomicPtr<T>, make: impl FnOnce() -> T) -> *mut T {
    let p = slot.load(Acquire);
    if !p.is_null() {
        return p;
    }
    let fresh = Box::into_raw(Box::new(make()));
    match slot.compare_exchange(core::ptr::null_mut(), fresh, AcqRel, Acquire) {
        Ok(_) => fresh,
        Err(existing) => {
            // SAFETY: `fresh` came from Box::into_raw above and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            existing
        }
    }
}

impl Drop for RunTable {
    fn drop(&mut self) {
        for p in &*self.dir {
            let p = p.load(Acquire);
            if !p.is_null() {
                // SAFETY: created by Box::into_raw in `block`, dropped once here; its
                // run states likewise, in `get_or_load`.
                let block = unsafe { Box::from_raw(p) };
                for r in &*block.runs {
                    let r = r.load(Acquire);
                    if !r.is_null() {
                        // SAFETY: as above; `&mut self` excludes every other user.
                        drop(unsafe { Box::from_raw(r) });
                    }
                }
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
        assert_eq!(r.put(got[0], 9), 1, "a non-owner's free");
        assert!(r.try_own(9));
        assert_eq!(r.put(got[1], 9), 2, "the owner's free");
        assert_eq!(r.free_count(), 2);
        assert!(r.is_free(got[0]) && r.is_free(got[1]));
        assert!(!r.is_empty());
        // The owner takes its own free first, then the remote one.
        assert_eq!(r.take(), Some(got[1]));
        assert_eq!(r.take(), Some(got[0]));
        assert_eq!(r.take(), None);
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
        // SAFETY: no reference into the table is held here.
        unsafe { t.reset(7) };
        assert!(t.get(7).is_none());
        let c = t.get_or_load(7, || RunState::new(7, 5, |_| true));
        assert_eq!(
            (c.class, c.is_empty()),
            (5, true),
            "reloaded with its new class"
        );
    }
}
