//! `Heap` as an `allocator_api2::alloc::Allocator`: transient use of pool memory
//! (`allocator_api2::vec::Vec::new_in(&heap)`), on addressable media.
//!
//! Blocks are taken from the heap's volatile free state only: no header is written and
//! no record is made, so a block is free again after the pool is reopened. A run
//! created for such a block has its chunk entries made durable at once, so the
//! persistent heap's view of chunks never lags its volatile one.

use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Layout};
use arch::Media;

use crate::class::{placement, Placement};
use crate::heap::{Heap, Home, Loc};
use crate::layout::CHUNK;

// SAFETY: blocks are disjoint slots/extents reserved in the volatile state (never handed
// out twice until deallocated), aligned per `placement`, valid while the heap lives.
unsafe impl<M: Media> Allocator for Heap<M> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let base = self.media.base_ptr().ok_or(AllocError)?;
        let res = match placement(layout.size().max(1), layout.align()).ok_or(AllocError)? {
            Placement::Run(c) => {
                let mut lane = self.lane();
                let r = self
                    .reserve_slot_transient(&mut lane, c)
                    .map_err(|_| AllocError)?;
                drop(lane);
                r
            }
            Placement::Extent(n) => {
                let n = u32::try_from(n).map_err(|_| AllocError)?;
                let head = self.space.lock().take(n).ok_or(AllocError)?;
                Loc {
                    obj: self.layout.chunk_off(head as usize) as u64,
                    hdr_off: 0,
                    home: Home::Extent { head, len: n },
                    capacity: u64::from(n) * CHUNK as u64,
                }
            }
        };
        // SAFETY: the block lies inside the media's range.
        let p = unsafe { base.as_ptr().add(res.obj as usize) };
        let len = res.capacity as usize;
        NonNull::new(core::ptr::slice_from_raw_parts_mut(p, len)).ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        let Some(base) = self.media.base_ptr() else {
            return;
        };
        let off = (ptr.as_ptr() as usize - base.as_ptr() as usize) as u64;
        match placement(layout.size().max(1), layout.align()) {
            Some(Placement::Run(_)) => {
                if let Some(loc) = self.slot_containing(off) {
                    self.release_transient(&loc);
                }
            }
            Some(Placement::Extent(n)) => {
                if let Some(c) = self.layout.chunk_of(off as usize) {
                    self.space.lock().give(c as u32, n as u32);
                }
            }
            None => {}
        }
    }
}
