//! Per-object runtime state: the pending chain (committed log groups not yet written
//! back) and the statistics coalescing decides from.
//!
//! Built at commit (volatile), drained by coalescing, rebuilt by recovery (which writes
//! everything back, so it starts empty). Sharded by object so committing threads rarely
//! meet on a lock.

use alloc::boxed::Box;
use alloc::vec::Vec;

use hashbrown::HashMap;
use pmalloc::Freeing;

use crate::coalesce::SizeMonitor;

/// A group of a record in a lane log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupRef {
    pub lane: u32,
    pub recno: u64,
    pub group: u8,
}

/// The part of an object's state that coalescing takes away.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// Live groups, oldest first.
    pub groups: Vec<GroupRef>,
    /// Home byte ranges to write back, `(pool offset, length)`, merged when they touch.
    pub ranges: Vec<(u64, u32)>,
    /// Records (transactions) pending.
    pub count: u32,
    /// Bytes logged and pending.
    pub volume: u64,
    /// The object was freed: once its groups are dead its space is released.
    pub freeing: Option<Freeing>,
}

impl Chain {
    /// Adds a home range to write back (merging with the last one when they touch).
    pub fn add_range(&mut self, off: u64, len: u32) {
        if let Some((o, l)) = self.ranges.last_mut() {
            if off >= *o && off <= *o + u64::from(*l) {
                let end = (off + u64::from(len)).max(*o + u64::from(*l));
                *l = (end - *o) as u32;
                return;
            }
        }
        self.ranges.push((off, len));
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.freeing.is_none()
    }
}

/// One object's runtime state.
#[derive(Debug, Default)]
pub(crate) struct ObjState {
    pub chain: Chain,
    /// Record sizes by operation kind.
    pub monitor: SizeMonitor,
    /// Transactional reads and committed writes (for the read/write ratio).
    pub reads: u32,
    pub writes: u32,
    /// Access frequency, decayed: higher is hotter.
    pub freq: u32,
    /// Commit tick of the last access (for the decay).
    pub last_tick: u64,
    /// Waiting in the coalescing queue.
    pub queued: bool,
}

const SHARDS: usize = 16;

/// All objects' runtime state.
pub(crate) struct PendingIndex {
    shards: Box<[spin::Mutex<HashMap<u64, ObjState>>]>,
}

impl core::fmt::Debug for PendingIndex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingIndex").finish_non_exhaustive()
    }
}

impl PendingIndex {
    pub fn new() -> Self {
        PendingIndex {
            shards: (0..SHARDS)
                .map(|_| spin::Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(&self, key: u64) -> &spin::Mutex<HashMap<u64, ObjState>> {
        &self.shards[((key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS]
    }

    /// Runs `f` on `key`'s state, creating it if absent.
    pub fn with<R>(&self, key: u64, f: impl FnOnce(&mut ObjState) -> R) -> R {
        f(self.shard(key).lock().entry(key).or_default())
    }

    /// Takes `key`'s pending chain (leaving its statistics).
    pub fn take(&self, key: u64) -> Chain {
        let mut s = self.shard(key).lock();
        match s.get_mut(&key) {
            Some(st) => {
                st.queued = false;
                core::mem::take(&mut st.chain)
            }
            None => Chain::default(),
        }
    }

    /// Every key with a pending chain.
    pub fn keys(&self) -> Vec<u64> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .filter(|(_, v)| !v.chain.is_empty())
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Objects pending and their total pending bytes.
    pub fn totals(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(n, v), s| {
            let s = s.lock();
            let pending = s.values().filter(|p| !p.chain.is_empty());
            let (a, b) = pending.fold((0u64, 0u64), |(a, b), p| (a + 1, b + p.chain.volume));
            (n + a, v + b)
        })
    }

    /// Drops statistics of objects with nothing pending and no recent access, when the
    /// index holds more than `cap` objects (bounds memory on huge pools).
    pub fn trim(&self, cap: usize, now: u64) {
        for s in &*self.shards {
            let mut s = s.lock();
            if s.len() * SHARDS > cap {
                s.retain(|_, v| {
                    !v.chain.is_empty() || v.queued || now.saturating_sub(v.last_tick) < 4096
                });
            }
        }
    }
}
