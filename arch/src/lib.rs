//! Persistence primitives for persistent memory on x86_64.
//!
//! Everything above this crate touches the persistence domain through [`Media`]: a byte
//! range with `flush(range)` and `fence()`. The rules it implements are those of x86 with
//! ADR (see `docs/persistence-model.md`):
//!
//! * a store reaches the persistence domain only after its cache line is flushed
//!   ([`Media::flush`]) and a later store fence completes ([`Media::fence`]);
//! * until then it may or may not be durable (the cache can evict the line at any time);
//! * only aligned 8-byte stores are atomic ([`Media::write_u64`]).
//!
//! Implementations:
//! * [`RawMedia`]: a raw memory range (NVDIMM, DAX mapping, DRAM) running the real
//!   instructions, with the flush instruction chosen once by CPUID;
//! * [`FileMedia`] (feature `std`): a memory-mapped file, `MAP_SYNC` on DAX, otherwise
//!   `msync`;
//! * [`sim::SimMedia`] (feature `sim`): a simulated persistence domain that keeps a cache
//!   image and a media image and produces crash images for the crash explorer.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod counters;
pub mod cpu;
#[cfg(feature = "std")]
mod file;
pub mod instr;
mod media;
mod raw;
#[cfg(feature = "sim")]
pub mod sim;

pub use counters::{CounterCell, Counters};
pub use cpu::{FlushKind, PersistFeatures};
#[cfg(feature = "std")]
pub use file::{FileMedia, FileMediaError, FileOptions, SyncMode};
pub use media::{flush_lines_once, line_range, Access, Media, MediaInfo, CACHE_LINE, WORD};
pub use raw::{PersistMode, RawMedia};
