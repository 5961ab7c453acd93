//! Persistence modes and the one interface that chooses them.
//!
//! Per object per transaction one of:
//! * [`Mode::Delta`]: only the dirty 8-byte runs of dirty lines are logged; the home is
//!   updated in cache at commit and written back later by coalescing.
//! * [`Mode::Full`]: the whole object is logged (cheaper than many small runs when most
//!   lines change); write-back deferred like Delta.
//! * [`Mode::CriticalSection`]: write-through. The new bytes are logged, and once the
//!   commit record is durable they are stored, flushed and fenced in place before
//!   commit returns: the data is durable in its home when the transaction completes,
//!   nothing of it waits for coalescing (a second fence per transaction). For data a
//!   policy marks critical, or when the predicted failure risk is high. Like every
//!   transaction it stays atomic: a failure inside it rolls it back entirely.
//!
//! Objects larger than [`SHADOW_MAX`] are updated in place with undo logging (their old
//! bytes are logged first), whatever the mode, because copying them is too costly.
//!
//! The controller of a later issue plugs in through [`ModePolicy`]; today the choice
//! is explicit: per transaction (`Tx::set_mode`), per type number, or the pool default.

use alloc::collections::BTreeMap;

/// Largest object a transaction shadows (copies) for redo logging.
pub const SHADOW_MAX: u64 = 64 * 1024;

/// How an object's changes are made durable in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Mode {
    /// Dirty runs logged, write-back deferred.
    Delta = 0,
    /// Whole object logged, write-back deferred.
    Full = 1,
    /// Logged and written through before commit returns.
    CriticalSection = 2,
}

impl Mode {
    /// From the byte stored in log records.
    pub fn from_u8(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Delta),
            1 => Some(Mode::Full),
            2 => Some(Mode::CriticalSection),
            _ => None,
        }
    }
}

/// What a policy sees about an object when choosing its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeInput {
    /// The object's offset.
    pub obj: u64,
    /// Its size.
    pub size: u64,
    /// Its type number.
    pub type_num: u32,
    /// Dirty lines this transaction.
    pub dirty_lines: usize,
    /// All lines of the object.
    pub lines: usize,
}

/// Chooses the mode of an object in a transaction (the controller's interface).
pub trait ModePolicy: Send + Sync {
    /// The mode for `input`.
    fn choose(&self, input: &ModeInput) -> Mode;
}

/// The default policy: per-type overrides, else Full when at least `full_ratio`/256 of
/// the lines are dirty, else Delta.
#[derive(Debug, Clone)]
pub struct StaticPolicy {
    /// Modes by type number ("financial records always critical-section").
    pub by_type: BTreeMap<u32, Mode>,
    /// Dirty share (out of 256) from which the whole object is logged.
    pub full_ratio: u32,
}

impl Default for StaticPolicy {
    fn default() -> Self {
        StaticPolicy {
            by_type: BTreeMap::new(),
            full_ratio: 192,
        }
    }
}

impl ModePolicy for StaticPolicy {
    fn choose(&self, i: &ModeInput) -> Mode {
        if let Some(m) = self.by_type.get(&i.type_num) {
            return *m;
        }
        if i.lines > 0 && i.dirty_lines * 256 >= i.lines * self.full_ratio as usize {
            Mode::Full
        } else {
            Mode::Delta
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_policy_prefers_type_overrides_then_dirty_share() {
        let mut p = StaticPolicy::default();
        p.by_type.insert(9, Mode::CriticalSection);
        let i = ModeInput {
            obj: 0,
            size: 1024,
            type_num: 1,
            dirty_lines: 1,
            lines: 16,
        };
        assert_eq!(p.choose(&i), Mode::Delta);
        assert_eq!(
            p.choose(&ModeInput {
                dirty_lines: 13,
                ..i
            }),
            Mode::Full
        );
        assert_eq!(
            p.choose(&ModeInput { type_num: 9, ..i }),
            Mode::CriticalSection
        );
    }
}
