//! Deliberate protocol bugs for the crash explorer's self-test (feature `seeded-bugs`).
//! Off unless a test switches one on; each must make the transaction crash tests fail.

use core::sync::atomic::{AtomicU8, Ordering};

/// A bug to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Bug {
    /// No bug.
    None = 0,
    /// Commit issues no fence after appending its record.
    DropCommitFence = 1,
    /// Deferred homes are stored before the record is appended (data before commit
    /// mark).
    HomesBeforeRecord = 2,
    /// Recovery trusts records without checking their checksum.
    SkipRecordCheck = 3,
    /// Recovery trusts a live word whatever its tag (a torn append's stale word).
    TrustStaleLive = 4,
    /// In-place (undo) writes without fencing the undo record first.
    UndoUnfenced = 5,
    /// Write-through homes stored in the commit batch, before the commit fence.
    WriteThroughInBatch = 6,
    /// A group written behind is retired by its own commit, before a fence has made
    /// its flushed homes durable.
    RetireBeforeFence = 7,
    /// A tail move passes records newer than other lanes' lazy dead-marks without
    /// holding back or making those marks durable (an older group of an object can
    /// then replay over a newer write-back whose record is gone).
    PassOverLazyMarks = 8,
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

/// `true` unless `bug` is on (for protocol steps the bug removes).
#[inline]
pub fn keep(bug: Bug) -> bool {
    !on(bug)
}
