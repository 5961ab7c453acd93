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
    /// Home lines to write back near the object: bit `l` is the line `l` lines after
    /// the one holding the key (objects up to 16 KiB need nothing else).
    pub lines: [u64; NEAR_WORDS],
    /// Other home byte ranges to write back, `(pool offset, length)` (allocation
    /// metadata, lines of larger objects), merged when they touch.
    pub ranges: Vec<(u64, u32)>,
    /// Records (transactions) pending.
    pub count: u32,
    /// Bytes logged and pending.
    pub volume: u64,
    /// The object was freed: once its groups are dead its space is released.
    pub freeing: Option<Box<Freeing>>,
}

/// What [`PendingIndex::drain`] took from a non-empty chain besides its groups and
/// ranges.
#[derive(Debug)]
pub(crate) struct Drained {
    /// The free the chain held back, if any.
    pub freeing: Option<Freeing>,
}

/// Words of a chain's near-line bitmap.
const NEAR_WORDS: usize = 4;
/// Lines the bitmap covers.
const NEAR_LINES: u64 = 64 * NEAR_WORDS as u64;

impl Chain {
    /// Adds the home range `[off, off + len)` of the object at `key` to write back:
    /// into the line bitmap when it lies within its reach, else to the range list
    /// (merging with the last range when they touch).
    pub fn add_range(&mut self, key: u64, off: u64, len: u32) {
        if len == 0 {
            return;
        }
        let base = key / 64;
        let (first, last) = (off / 64, (off + u64::from(len) - 1) / 64);
        if first >= base && last - base < NEAR_LINES {
            for l in first - base..=last - base {
                self.lines[(l / 64) as usize] |= 1 << (l % 64);
            }
            return;
        }
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
    /// Home lines the last write-back of the chain flushed (0: none yet), for the
    /// object's count threshold (`coalesce::count_threshold`).
    pub spread: u32,
    /// The volume threshold last computed (0: none yet), with the free-log bucket
    /// (free share / 32) and the read count it was computed from.
    pub thresh: u64,
    pub thresh_free: u8,
    pub thresh_reads: u32,
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

    /// Moves `key`'s pending chain out: its groups and home ranges are appended to
    /// `groups` and `ranges` (the object keeps its buffers for the next chain). Returns
    /// `None` when nothing was pending, else what the chain held back.
    pub fn drain(
        &self,
        key: u64,
        groups: &mut Vec<GroupRef>,
        ranges: &mut Vec<(u64, u32)>,
    ) -> Option<Drained> {
        let mut s = self.shard(key).lock();
        let st = s.get_mut(&key)?;
        st.queued = false;
        if st.chain.is_empty() {
            return None;
        }
        let c = &mut st.chain;
        groups.extend_from_slice(&c.groups);
        let base = key / 64 * 64;
        let first = ranges.len();
        for (w, bits) in c.lines.iter().enumerate() {
            let mut b = *bits;
            while b != 0 {
                // One range per run of set bits.
                let start = b.trailing_zeros();
                let run = (b >> start).trailing_ones();
                let at = base + (w as u64 * 64 + u64::from(start)) * 64;
                match ranges[first..].last_mut() {
                    // A run continuing across a word boundary.
                    Some((o, n)) if *o + u64::from(*n) == at => *n += run * 64,
                    _ => ranges.push((at, run * 64)),
                }
                b &= if start + run >= 64 {
                    0
                } else {
                    !(((1u64 << run) - 1) << start)
                };
            }
        }
        ranges.extend_from_slice(&c.ranges);
        let near: u32 = c.lines.iter().map(|w| w.count_ones()).sum();
        let far: usize = c
            .ranges
            .iter()
            .map(|&(o, n)| arch::line_range(o as usize, n as usize).len())
            .sum();
        st.spread = near.saturating_add(u32::try_from(far).unwrap_or(u32::MAX));
        // The count threshold may have moved: recompute the volume threshold too.
        st.thresh = 0;
        let c = &mut st.chain;
        c.groups.clear();
        c.lines = [0; NEAR_WORDS];
        c.ranges.clear();
        c.count = 0;
        c.volume = 0;
        Some(Drained {
            freeing: c.freeing.take().map(|f| *f),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_lines_drain_as_merged_runs_and_far_ranges_stay_ranges() {
        let idx = PendingIndex::new();
        let key = 64 * 1000 + 16;
        idx.with(key, |st| {
            st.chain.groups.push(GroupRef {
                lane: 0,
                recno: 1,
                group: 0,
            });
            st.chain.add_range(key, key, 8); // line 0
            st.chain.add_range(key, key + 60, 8); // lines 0 and 1
            st.chain.add_range(key, key + 64 * 63, 130); // lines 63..=65
            st.chain.add_range(key, key + 64 * 255 - 16, 8); // the last near line
            st.chain.add_range(key, key + 64 * 300, 8); // beyond: a range
            st.chain.add_range(key, 4096, 16); // before the key: a range
        });
        let (mut g, mut r) = (Vec::new(), Vec::new());
        assert!(idx.drain(key, &mut g, &mut r).is_some());
        let base = 64 * 1000;
        assert_eq!(
            r,
            vec![
                (base, 128),
                (base + 64 * 63, 3 * 64),
                (base + 64 * 255, 64),
                (key + 64 * 300, 8),
                (4096, 16)
            ]
        );
        assert_eq!(g.len(), 1);
        // Lines flushed: 2 + 3 + 1 near, 1 + 1 far.
        assert_eq!(idx.with(key, |st| st.spread), 8);
        assert!(idx.drain(key, &mut g, &mut r).is_none(), "drained");
    }
}
