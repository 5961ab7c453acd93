//! Per-object runtime state: the pending chain (committed log groups not yet written
//! back) and the statistics coalescing decides from.
//!
//! Built at commit (volatile), drained by coalescing, rebuilt by recovery (which writes
//! everything back, so it starts empty). Sharded by object so committing threads rarely
//! meet on a lock.

use alloc::boxed::Box;
use alloc::vec::Vec;

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicPtr, AtomicUsize};

use pmalloc::Freeing;

use crate::coalesce::SizeMonitor;

/// A group of a record in a lane log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GroupRef {
    /// The lane (at most 256 of them).
    pub lane: u16,
    pub group: u8,
    /// In a coalescing round's list: the newest group of its object in its lane (the
    /// one whose dead mark goes to the log; see `coalesce`). False in chains.
    pub newest: bool,
    /// The record's line in its lane log (`u32::MAX`: beyond 256 GiB, unknown), where
    /// coalescing prefetches its live word before marking it.
    pub line: u32,
    pub recno: u64,
}

impl GroupRef {
    /// The group `group` of record `recno` at byte `pos` of lane `lane`'s log.
    pub fn new(lane: u32, recno: u64, group: u8, pos: usize) -> Self {
        GroupRef {
            lane: lane as u16,
            group,
            newest: false,
            line: u32::try_from(pos / 64).unwrap_or(u32::MAX),
            recno,
        }
    }
}
const _: () = assert!(core::mem::size_of::<GroupRef>() == 16);

/// A chain's groups, oldest first: the first two in place (most chains never hold
/// more), so adding and draining them touch only the object's slot.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    head: [GroupRef; 2],
    len: u32,
    more: Vec<GroupRef>,
}

impl Groups {
    /// Adds the newest group.
    pub fn push(&mut self, g: GroupRef) {
        match self.head.get_mut(self.len as usize) {
            Some(slot) => *slot = g,
            None => self.more.push(g),
        }
        self.len += 1;
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends them, oldest first, to `out`.
    pub fn append_to(&self, out: &mut Vec<GroupRef>) {
        out.extend_from_slice(&self.head[..(self.len as usize).min(2)]);
        out.extend_from_slice(&self.more);
    }

    /// Forgets them (keeping memory).
    pub fn clear(&mut self) {
        self.len = 0;
        self.more.clear();
    }
}

/// A chain's home byte ranges outside its near lines, merged when they touch: the
/// first in place (most chains hold one, an object header's word), so draining it
/// reads no other memory; a list on the heap cost a cache miss per drain.
#[derive(Debug, Default)]
pub(crate) struct Ranges {
    /// The first range; a length of 0 means none.
    first: (u64, u32),
    more: Vec<(u64, u32)>,
}

impl Ranges {
    /// Adds `len` (> 0) bytes at `off`, merged into the newest range when they touch.
    fn add(&mut self, off: u64, len: u32) {
        let last = match self.more.last_mut() {
            Some(r) => r,
            None if self.first.1 == 0 => {
                self.first = (off, len);
                return;
            }
            None => &mut self.first,
        };
        let (o, l) = (last.0, u64::from(last.1));
        if off >= o && off <= o + l {
            let end = (off + u64::from(len)).max(o + l);
            if let Ok(n) = u32::try_from(end - o) {
                last.1 = n;
                return;
            }
        }
        self.more.push((off, len));
    }

    /// The ranges, oldest first.
    fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        core::iter::once(self.first)
            .filter(|r| r.1 != 0)
            .chain(self.more.iter().copied())
    }

    /// Forgets them (keeping memory).
    fn clear(&mut self) {
        self.first = (0, 0);
        self.more.clear();
    }
}

/// The part of an object's state that coalescing takes away.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// Live groups, oldest first.
    pub groups: Groups,
    /// Home lines to write back near the object: bit `l` is the line `l` lines after
    /// the one holding the key (objects up to 16 KiB need nothing else).
    pub lines: [u64; NEAR_WORDS],
    /// Other home byte ranges to write back, `(pool offset, length)` (allocation
    /// metadata, lines of larger objects), merged when they touch.
    pub ranges: Ranges,
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
        self.ranges.add(off, len);
    }

    /// Home lines to write back (what a write-back of the chain flushes).
    pub fn home_lines(&self) -> u32 {
        let near: u32 = self.lines.iter().map(|w| w.count_ones()).sum();
        let far: usize = self
            .ranges
            .iter()
            .map(|(o, n)| arch::line_range(o as usize, n as usize).len())
            .sum();
        near.saturating_add(u32::try_from(far).unwrap_or(u32::MAX))
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

impl ObjState {
    /// Empties the chain once its home lines are durable (a drain's or a retire's
    /// write-back), keeping what it held back to release, and records the lines as
    /// the object's spread; returns them. A new spread moves the count threshold, so
    /// the volume threshold is recomputed at the next commit; the same spread keeps
    /// it (the common case, and a recompute costs a w1 commit 5%).
    fn written_back(&mut self) -> u32 {
        let c = &mut self.chain;
        let lines = c.home_lines();
        c.groups.clear();
        c.lines = [0; NEAR_WORDS];
        c.ranges.clear();
        c.count = 0;
        c.volume = 0;
        if lines != self.spread {
            self.spread = lines;
            self.thresh = 0;
        }
        lines
    }
}

const SHARDS: usize = 16;

/// Key of an empty slot (no object or metadata key is this offset).
pub(crate) const EMPTY: u64 = u64::MAX;

/// An object's state in its own 64-byte-aligned lines, so a prefetch of the slot
/// fetches all of it.
#[derive(Default)]
#[repr(align(64))]
struct Slot(ObjState);

const _: () = assert!(core::mem::size_of::<Slot>() <= 256);

/// One shard: open addressing with linear probing over a key array (eight keys a
/// line, so a probe rarely leaves the first line) and a parallel slot array. At most
/// half full, so a key is mostly in its home slot, which [`PendingIndex::prefetch`]
/// fetches ahead of the lookup.
#[derive(Default)]
struct Table {
    keys: Vec<u64>,
    slots: Vec<Slot>,
    len: usize,
}

impl Table {
    fn find(&self, key: u64, h: u64) -> Result<usize, usize> {
        let mask = self.keys.len() - 1;
        let mut i = home(h, mask);
        loop {
            match self.keys[i] {
                k if k == key => return Ok(i),
                EMPTY => return Err(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The slot of `key`, inserted (default state) if absent.
    fn entry(&mut self, key: u64, h: u64) -> &mut ObjState {
        // Keys are pool offsets, far below the empty marker.
        debug_assert_ne!(key, EMPTY);
        if (self.len + 1) * 2 > self.keys.len() {
            self.rebuild((self.len + 1) * 2, |_| true);
        }
        let i = match self.find(key, h) {
            Ok(i) => i,
            Err(i) => {
                self.keys[i] = key;
                self.len += 1;
                i
            }
        };
        &mut self.slots[i].0
    }

    fn get_mut(&mut self, key: u64, h: u64) -> Option<&mut ObjState> {
        if self.len == 0 {
            return None;
        }
        let i = self.find(key, h).ok()?;
        Some(&mut self.slots[i].0)
    }

    /// Re-lays the table for at least `want` slots (a power of two, at least 16),
    /// keeping the entries `keep` accepts.
    fn rebuild(&mut self, want: usize, mut keep: impl FnMut(&ObjState) -> bool) {
        let cap = want.next_power_of_two().max(16);
        let old_keys = core::mem::replace(&mut self.keys, alloc::vec![EMPTY; cap]);
        let mut old_slots = core::mem::take(&mut self.slots);
        self.slots.resize_with(cap, Slot::default);
        self.len = 0;
        for (k, slot) in old_keys.into_iter().zip(old_slots.iter_mut()) {
            if k != EMPTY && keep(&slot.0) {
                let Err(i) = self.find(k, hash(k)) else {
                    unreachable!("keys are unique");
                };
                self.keys[i] = k;
                self.slots[i] = core::mem::take(slot);
                self.len += 1;
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &ObjState)> {
        self.keys
            .iter()
            .zip(&self.slots)
            .filter(|(k, _)| **k != EMPTY)
            .map(|(k, s)| (*k, &s.0))
    }
}

/// Fibonacci hash of a key (object offsets are 16-aligned: their low bits carry
/// nothing); the top bits are the well-mixed ones.
pub(crate) fn hash(key: u64) -> u64 {
    (key >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The shard: the top bits of the (Fibonacci) hash.
fn shard_of(h: u64) -> usize {
    (h >> 60) as usize % SHARDS
}

/// The home slot: the hash's next bits.
fn home(h: u64, mask: usize) -> usize {
    ((h << 4) >> 32) as usize & mask
}

/// A shard and where its arrays are, for lock-free prefetches (a stale address from
/// a concurrent rebuild only makes a prefetch useless: prefetches never fault).
struct Shard {
    table: spin::Mutex<Table>,
    keys_at: AtomicPtr<u64>,
    slots_at: AtomicPtr<Slot>,
    mask: AtomicUsize,
}

/// One object's shard, locked ([`PendingIndex::lock`]); the shard's arrays are
/// published for prefetches when it drops.
pub(crate) struct Locked<'a> {
    shard: &'a Shard,
    t: spin::MutexGuard<'a, Table>,
    key: u64,
    h: u64,
}

impl Locked<'_> {
    /// The object's state, created if absent.
    pub fn state(&mut self) -> &mut ObjState {
        self.t.entry(self.key, self.h)
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.shard.publish(&mut self.t);
    }
}

/// All objects' runtime state.
pub(crate) struct PendingIndex {
    shards: Box<[Shard]>,
}

impl core::fmt::Debug for PendingIndex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingIndex").finish_non_exhaustive()
    }
}

impl Shard {
    /// Publishes where `t` (this shard's table, locked) now keeps its arrays, for
    /// [`PendingIndex::prefetch`]; called after anything that may rebuild it.
    fn publish(&self, t: &mut Table) {
        if self.keys_at.load(Relaxed) != t.keys.as_mut_ptr() {
            self.keys_at.store(t.keys.as_mut_ptr(), Relaxed);
            self.slots_at.store(t.slots.as_mut_ptr(), Relaxed);
            self.mask.store(t.keys.len().saturating_sub(1), Relaxed);
        }
    }
}

impl PendingIndex {
    pub fn new() -> Self {
        PendingIndex {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    table: spin::Mutex::new(Table::default()),
                    keys_at: AtomicPtr::new(core::ptr::null_mut()),
                    slots_at: AtomicPtr::new(core::ptr::null_mut()),
                    mask: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    fn shard(&self, h: u64) -> &Shard {
        &self.shards[shard_of(h)]
    }

    /// Starts fetching `key`'s home slot (its key line and state), without the lock,
    /// so that a lookup soon after finds it in the cache.
    pub fn prefetch(&self, key: u64) {
        let h = hash(key);
        let s = self.shard(h);
        let (keys, slots) = (s.keys_at.load(Relaxed), s.slots_at.load(Relaxed));
        if keys.is_null() {
            return;
        }
        let i = home(h, s.mask.load(Relaxed));
        // Addresses only: nothing is dereferenced, so a stale base is harmless.
        arch::instr::prefetch_w(keys.wrapping_add(i).cast());
        let slot = slots.wrapping_add(i).cast::<u8>();
        for line in 0..core::mem::size_of::<Slot>() / 64 {
            arch::instr::prefetch_w(slot.wrapping_add(line * 64));
        }
    }

    /// Runs `f` on `key`'s state, creating it if absent.
    pub fn with<R>(&self, key: u64, f: impl FnOnce(&mut ObjState) -> R) -> R {
        f(self.lock(key).state())
    }

    /// `key`'s shard, locked until the guard drops: for a commit that must take the
    /// lock before its record's non-temporal stores (see `Tx::commit_small`).
    pub fn lock(&self, key: u64) -> Locked<'_> {
        let h = hash(key);
        let shard = self.shard(h);
        Locked {
            shard,
            t: shard.table.lock(),
            key,
            h,
        }
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
        let h = hash(key);
        let mut t = self.shard(h).table.lock();
        let st = t.get_mut(key, h)?;
        st.queued = false;
        if st.chain.is_empty() {
            return None;
        }
        let c = &mut st.chain;
        c.groups.append_to(groups);
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
        ranges.extend(c.ranges.iter());
        st.written_back();
        Some(Drained {
            freeing: st.chain.freeing.take().map(|f| *f),
        })
    }

    /// Takes `key`'s chain away if it holds exactly the group `g` and nothing to
    /// release: a group written behind, whose home lines are durable now. Returns
    /// the home lines it held if it did (the caller then marks `g` dead).
    pub fn retire(&self, key: u64, g: GroupRef) -> Option<u32> {
        let h = hash(key);
        let mut t = self.shard(h).table.lock();
        let st = t.get_mut(key, h)?;
        let c = &mut st.chain;
        if c.freeing.is_some() || c.groups.len != 1 || c.groups.head[0] != g {
            return None;
        }
        Some(st.written_back())
    }

    /// Every key with a pending chain.
    pub fn keys(&self) -> Vec<u64> {
        let mut keys = Vec::new();
        for s in &*self.shards {
            let t = s.table.lock();
            keys.extend(
                t.iter()
                    .filter(|(_, v)| !v.chain.is_empty())
                    .map(|(k, _)| k),
            );
        }
        keys
    }

    /// Objects pending and their total pending bytes.
    pub fn totals(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(n, v), s| {
            let t = s.table.lock();
            let pending = t.iter().filter(|(_, p)| !p.chain.is_empty());
            let (a, b) = pending.fold((0u64, 0u64), |(a, b), (_, p)| (a + 1, b + p.chain.volume));
            (n + a, v + b)
        })
    }

    /// Drops statistics of objects with nothing pending and no recent access, when the
    /// index holds more than `cap` objects (bounds memory on huge pools).
    pub fn trim(&self, cap: usize, now: u64) {
        for s in &*self.shards {
            let mut t = s.table.lock();
            if t.len * SHARDS > cap {
                let keep = |v: &ObjState| {
                    !v.chain.is_empty() || v.queued || now.saturating_sub(v.last_tick) < 4096
                };
                let kept = t.iter().filter(|(_, v)| keep(v)).count();
                t.rebuild(kept * 2, keep);
                s.publish(&mut t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_keep_the_first_in_place_and_merge_only_touching_ones() {
        let mut r = Ranges::default();
        assert_eq!(r.iter().count(), 0);
        r.add(4096, 16);
        assert!(r.more.is_empty(), "the first range lives in place");
        // Touching (starts at its end) and overlapping ranges merge into the newest.
        r.add(4112, 16);
        r.add(4100, 4);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(4096, 32)]);
        // A gap starts a new range; later ones merge into that one, not the first.
        r.add(8192, 8);
        r.add(8200, 8);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(4096, 32), (8192, 16)]);
        // A merge whose length would not fit 32 bits is kept as a range of its own.
        r.add(8200, u32::MAX);
        assert_eq!(r.iter().count(), 3);
        r.clear();
        assert_eq!(r.iter().count(), 0);
        r.add(64, 8);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(64, 8)]);
    }

    #[test]
    fn near_lines_drain_as_merged_runs_and_far_ranges_stay_ranges() {
        let idx = PendingIndex::new();
        let key = 64 * 1000 + 16;
        idx.with(key, |st| {
            st.chain.groups.push(GroupRef::new(0, 1, 0, 0));
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

    #[test]
    fn groups_keep_their_order_in_place_and_spilled() {
        let mut g = Groups::default();
        let refs: Vec<GroupRef> = (0..5)
            .map(|i| GroupRef::new(i, u64::from(i) * 7, 1, 64))
            .collect();
        for &r in &refs {
            g.push(r);
        }
        let mut out = Vec::new();
        g.append_to(&mut out);
        assert_eq!(out, refs);
        g.clear();
        assert!(g.is_empty());
        g.push(refs[3]);
        out.clear();
        g.append_to(&mut out);
        assert_eq!(
            out,
            [refs[3]],
            "a cleared list does not bring back spilled groups"
        );
    }

    #[test]
    fn index_finds_every_key_through_growth_and_trim_keeps_what_is_pending() {
        let idx = PendingIndex::new();
        idx.prefetch(4096); // empty: nothing to fetch, nothing to fault
                            // Object-like keys: 16 past a 1040-byte stride, plus the root slot's.
        let keys: Vec<u64> = (0..20_000u64).map(|i| 8192 + i * 1040 + 16).collect();
        for (i, &k) in keys.iter().enumerate() {
            idx.prefetch(k);
            idx.with(k, |st| {
                assert_eq!(st.writes, 0, "a new key starts empty");
                st.writes = i as u32 + 1;
                st.last_tick = if i % 3 == 0 { 100_000 } else { 0 };
                if i % 5 == 0 {
                    st.chain.groups.push(GroupRef::new(0, i as u64, 0, 0));
                    st.chain.volume = 8;
                }
            });
        }
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(idx.with(k, |st| st.writes), i as u32 + 1, "key {k:#x}");
        }
        assert_eq!(idx.totals(), (4000, 4000 * 8));
        // Drop idle objects: the pending (every fifth) and recent (every third) stay.
        idx.trim(16, 100_000 + 10);
        let mut pending = idx.keys();
        pending.sort_unstable();
        let want: Vec<u64> = keys.iter().copied().step_by(5).collect();
        assert_eq!(pending, want);
        for (i, &k) in keys.iter().enumerate() {
            let kept = i % 5 == 0 || i % 3 == 0;
            let writes = idx.with(k, |st| st.writes);
            assert_eq!(writes, if kept { i as u32 + 1 } else { 0 }, "key {k:#x}");
        }
        let (mut g, mut r) = (Vec::new(), Vec::new());
        assert!(idx.drain(keys[5], &mut g, &mut r).is_some());
        assert_eq!(g, [GroupRef::new(0, 5, 0, 0)]);
        assert!(
            idx.drain(keys[1], &mut g, &mut r).is_none(),
            "nothing pending"
        );
        assert!(idx.drain(1, &mut g, &mut r).is_none(), "never seen");
    }
}
