//! Deliberate protocol bugs for the crash explorer's self-test (feature `seeded-bugs`).
//! Off unless a test switches one on; each must make the crash tests fail.

use core::sync::atomic::{AtomicU8, Ordering};

/// A bug to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Bug {
    /// No bug.
    None = 0,
    /// Commit issues no fence: the op's homes can reach media before its record.
    DropCommitFence = 1,
    /// Commit stores the homes before writing the record (commit mark and data order
    /// swapped).
    ApplyBeforeRecord = 2,
    /// Recovery trusts records without checking their checksum.
    SkipRecordChecksum = 3,
    /// Recovery replays every record, ignoring the staleness guards.
    IgnoreReplayGuards = 4,
    /// A checkpoint frees multi-chunk runs' entries without the chunk-free intent.
    ReleaseWithoutIntent = 5,
    /// A new run's record is written without the fence after its header array is
    /// zeroed.
    NoFenceAfterRunZeroing = 6,
    /// An allocation's record is written without the fence after the object's initial
    /// bytes.
    NoFenceAfterInit = 7,
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Switches `bug` on (process-wide).
pub fn set(bug: Bug) {
    ACTIVE.store(bug as u8, Ordering::SeqCst);
}

/// Whether `bug` is on.
pub fn on(bug: Bug) -> bool {
    ACTIVE.load(Ordering::Relaxed) == bug as u8
}
