//! `pmalloc`: the pool format and the crash-consistent persistent heap.
//!
//! A pool is a [`arch::Media`] formatted by [`Heap::create`]: two header copies, op
//! record lanes, a runtime area for `pmrt`, a chunk table, and the heap. Small objects
//! live in runs of a size class (16 B to 128 KiB), large ones in extents of whole
//! 256 KiB chunks. Every object has a 16-byte header (size, type number, generation,
//! flags, CRC-32C) that is the persistent truth about its allocation; everything else
//! the allocator keeps (free bitmaps, free span index, per-lane current runs) is
//! volatile and rebuilt on open, lazily for runs.
//!
//! [`Heap::alloc_into`] and [`Heap::free_from`] publish to (or clear) a destination
//! word atomically with the heap change, with one fence per operation (PMDK needs about
//! four): see the `record` module for the protocol and `docs/pool-format.md` for every
//! byte.
//!
//! Front ends: [`PPtr<T>`] typed offsets with checked access; [`VolatileHeap`], a
//! `GlobalAlloc` over a memory region for bare-metal programs; and `Heap` as an
//! `allocator_api2::alloc::Allocator` for transient use of pool memory.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

extern crate alloc;

/// Whether the test-only seeded bug `Bug::$bug` is switched on; always false without
/// the `seeded-bugs` feature (see `seeded_bug`).
macro_rules! seeded {
    ($bug:ident) => {{
        #[cfg(feature = "seeded-bugs")]
        let on = crate::seeded_bug::on(crate::seeded_bug::Bug::$bug);
        #[cfg(not(feature = "seeded-bugs"))]
        let on = false;
        on
    }};
}

mod api2;
pub mod checksum;
pub mod chunk;
pub mod class;
pub mod error;
pub mod header;
mod heap;
pub mod intent;
pub mod layout;
mod op;
pub mod pool_header;
mod pptr;
pub mod record;
mod recover;
mod reserve;
mod run;
#[cfg(feature = "seeded-bugs")]
pub mod seeded_bug;
mod space;
mod volatile;
mod walk;

pub use error::{AllocError, CreateError, DestFault, FreeError, OpenError, PtrError};
pub use heap::{CreateOptions, Damage, Heap, ObjInfo, ObjSlot, OpenOptions, OpenReport, Repaired};
pub use op::{Claim, Init, CHECKPOINT_OPS};
pub use pptr::{bytes_of, from_bytes, PPtr, Persistent};
pub use reserve::{ChunkWord, Freeing, Reserved};
pub use volatile::VolatileHeap;
pub use walk::{CheckError, HeapStats, Objects};

#[cfg(test)]
mod tests;
