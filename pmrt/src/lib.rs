//! `pmrt`: the persistent-memory runtime.
//!
//! Failure-atomic transactions over a [`pmalloc`] heap ([`Pool::transaction`]), with
//! per-object cache-line dirty maps and three persistence modes ([`Mode`]): delta and
//! full redo logging with deferred write-back, and write-through critical sections;
//! undo logging for objects too large to copy. Redo commits cost one fence. Committed
//! records stay in per-object pending chains until coalescing ([`coalesce`]) writes
//! the homes back for many transactions at once. Recovery ([`recover`]) replays what
//! was not written back, in commit order, objects in parallel.
//!
//! Protocol details, byte tables and crash arguments: `docs/transactions.md` and
//! `docs/coalescing.md`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

extern crate alloc;
// The derive names `::pmrt::...`; this lets the crate's own types use it.
extern crate self as pmrt;

pub mod area;
pub mod coalesce;
pub mod collections;
pub mod dirty_map;
mod error;
mod log;
pub mod mode;
mod pending;
mod pool;
pub mod record;
pub mod recover;
#[cfg(feature = "seeded-bugs")]
pub mod seeded_bug;

/// Whether a protocol step stays (always, unless the `seeded-bugs` self-test removes it).
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn keep_step(bug: u8) -> bool {
    #[cfg(feature = "seeded-bugs")]
    {
        seeded_bug::keep(match bug {
            1 => seeded_bug::Bug::DropCommitFence,
            2 => seeded_bug::Bug::HomesBeforeRecord,
            3 => seeded_bug::Bug::SkipRecordCheck,
            4 => seeded_bug::Bug::TrustStaleLive,
            5 => seeded_bug::Bug::UndoUnfenced,
            6 => seeded_bug::Bug::WriteThroughInBatch,
            7 => seeded_bug::Bug::RetireBeforeFence,
            8 => seeded_bug::Bug::PassOverLazyMarks,
            _ => seeded_bug::Bug::None,
        })
    }
    #[cfg(not(feature = "seeded-bugs"))]
    true
}
mod tx;

pub use coalesce::{CoalesceConfig, CoalesceStats, BEHIND_AGE_EADR, LANE_TURN};
pub use error::{Error, PoolError, TxError};
pub use mode::{Mode, ModeInput, ModePolicy, StaticPolicy};
pub use pmalloc::{Init, PPtr, Persistent};
pub use pmrt_derive::Persistent;

/// A type number from a type's path (what `#[derive(Persistent)]` uses by default): a
/// 24-bit FNV-1a hash, never 0 (0 means "untyped").
pub const fn type_num_of(path: &str) -> u32 {
    let b = path.as_bytes();
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    let t = (h ^ (h >> 24)) & 0x00FF_FFFF;
    if t == 0 {
        1
    } else {
        t
    }
}
pub use pool::{Pool, PoolOptions, PoolStats};
pub use recover::{LogDamage, LogFault, RecoveryReport};
pub use tx::Tx;

#[cfg(test)]
mod tests;
