//! Per-lane logs: a ring of 64-byte lines holding records back to back.
//!
//! The writer (the transaction holding the lane) appends at `head`. Space up to the
//! *persisted* tail (`ptail`) is free; the tail only moves over records whose every
//! group is durably dead (written back by coalescing). Recovery scans from the
//! persisted tail: records in order of non-decreasing sequence numbers, wrapping at a
//! padding record, until a record fails its check or its sequence goes backwards.
//! Writing only below the persisted tail keeps that scan from ever meeting new records
//! before old live ones.

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arch::Media;

use crate::area::{encode_tail, Area, LINE};
use crate::record;

/// Writer state of one lane (held by the transaction using the lane).
#[derive(Debug)]
pub(crate) struct LaneLog {
    pub idx: u32,
    /// Pool offset of the log.
    pub base: usize,
    /// Log bytes.
    pub len: usize,
    /// Next write position.
    pub head: usize,
    /// Persisted tail position.
    pub ptail: usize,
    /// Number of the next record.
    pub next_recno: u64,
    /// The pool salt (records' checks).
    pub salt: u64,
    /// `2^32 * 256 / len`: the free share by a multiply (every commit asks for it).
    q8_mul: u64,
    /// The group the last commit wrote behind (its object's home lines flushed, no
    /// fence of their own): retired after the next commit's fence.
    pub behind: Option<(u64, crate::pending::GroupRef)>,
    /// Buffers of this lane's transactions, kept between them (taken by the running
    /// transaction).
    pub scratch: Option<alloc::boxed::Box<crate::tx::Scratch>>,
    /// The lanes' turn this lane last took a transaction in (`Pool::turn`; `u64::MAX`:
    /// none yet).
    pub turn: u64,
    /// The first sequence number of that turn here: records before it are older than
    /// the turn.
    pub turn_seq: u64,
    /// The front record's sequence number as of the last tail move (`u64::MAX`: none
    /// listed then, so every later record is newer than any turn begun before it).
    /// Only a tail move drops records from the front.
    pub front_seq: u64,
}

/// What the runtime remembers about a record in the log.
#[derive(Debug, Clone)]
pub(crate) struct RecMeta {
    pub pos: usize,
    /// The record's sequence number (a lane's records are in sequence order).
    pub seq: u64,
    /// Live groups (a cleared bit may not be durable yet: see `coalesce`).
    pub live: u64,
    /// The record's live-word tag (written back with every mask change).
    pub tag: u64,
    /// The object of each group.
    pub keys: Keys,
}

/// The objects of a record's groups; one or two (almost every record) without an
/// allocation.
#[derive(Debug, Clone)]
pub(crate) enum Keys {
    /// Up to two keys.
    Inline(u8, [u64; 2]),
    /// More.
    Heap(alloc::boxed::Box<[u64]>),
}

impl Keys {
    pub fn new(keys: &[u64]) -> Self {
        match *keys {
            [] => Keys::Inline(0, [0; 2]),
            [a] => Keys::Inline(1, [a, 0]),
            [a, b] => Keys::Inline(2, [a, b]),
            _ => Keys::Heap(keys.into()),
        }
    }

    pub fn as_slice(&self) -> &[u64] {
        match self {
            Keys::Inline(n, k) => &k[..usize::from(*n)],
            Keys::Heap(k) => k,
        }
    }
}

/// Records of one lane from its persisted tail (dead ones stay listed until a tail move
/// passes them): shared with coalescers.
#[derive(Debug, Default)]
pub(crate) struct LaneRecs {
    pub recs: VecDeque<RecMeta>,
    /// Number of the front record (every record before it is dead and passed).
    pub front_recno: u64,
    /// Sequence number of the last record dropped from the front: a tail moved to the
    /// front passes no newer record.
    pub passed_seq: u64,
}

impl LaneRecs {
    /// Starts fetching record `recno`'s entry for a later [`LaneRecs::get_mut`] (old
    /// records' entries are long out of the cache when coalescing reaches them).
    pub fn prefetch(&self, recno: u64) {
        let i = recno.checked_sub(self.front_recno).map(usize::try_from);
        if let Some(Ok(i)) = i {
            if let Some(r) = self.recs.get(i) {
                arch::instr::prefetch_w(core::ptr::from_ref(r).cast());
            }
        }
    }

    /// The record numbered `recno`, if still tracked.
    pub fn get_mut(&mut self, recno: u64) -> Option<&mut RecMeta> {
        let i = recno.checked_sub(self.front_recno)?;
        self.recs.get_mut(usize::try_from(i).ok()?)
    }

    /// Drops dead records from the front while they are older than `limit` (a
    /// sequence number; `u64::MAX`: every dead one). Only a tail move does this: a
    /// record stays listed until the tail that passes it is about to persist.
    pub fn pop_passable(&mut self, limit: u64) {
        while let Some(r) = self.recs.front().filter(|r| r.live == 0 && r.seq < limit) {
            self.passed_seq = r.seq;
            self.recs.pop_front();
            self.front_recno += 1;
        }
    }

    /// The front record's sequence number (`None`: no record listed).
    pub fn front_seq(&self) -> Option<u64> {
        self.recs.front().map(|r| r.seq)
    }

    /// Whether the front record is dead (a tail held back by [`LaneRecs::pop_passable`]'s
    /// limit stopped there).
    pub fn front_dead(&self) -> bool {
        self.recs.front().is_some_and(|r| r.live == 0)
    }

    /// Where the front record starts, or `head` when none is listed.
    pub fn vtail(&self, head: usize) -> usize {
        self.recs.front().map_or(head, |r| r.pos)
    }
}

/// One lane: its writer state and its record list.
#[derive(Debug)]
pub(crate) struct Lane {
    pub log: spin::Mutex<LaneLog>,
    pub recs: spin::Mutex<LaneRecs>,
    /// Counters of this lane's transactions.
    pub stats: LaneStats,
}

/// Counters written only by the transaction holding the lane (plain load and store,
/// no locked instruction on the commit path), read by anyone.
#[derive(Debug, Default)]
pub(crate) struct LaneStats {
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub commit_lines: AtomicU64,
    pub commit_fences: AtomicU64,
    pub logged_bytes: AtomicU64,
    pub user_bytes: AtomicU64,
    pub lines_eager: AtomicU64,
    pub by_volume: AtomicU64,
    pub by_count: AtomicU64,
    pub largest_record: AtomicU64,
    pub pending_hwm: AtomicU64,
    pub behind: AtomicU64,
    pub behind_lines: AtomicU64,
    pub over_threshold_max: AtomicU64,
}

impl LaneStats {
    /// Adds `v` (the caller holds the lane: the only writer).
    pub fn add(c: &AtomicU64, v: u64) {
        c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
    }

    /// Raises `c` to `v` (the caller holds the lane).
    pub fn max(c: &AtomicU64, v: u64) {
        if v > c.load(Relaxed) {
            c.store(v, Relaxed);
        }
    }
}

/// Outcome of an attempt to find room.
pub(crate) enum Room {
    /// The record fits at `head` (after an optional padding record).
    Fits,
    /// Not enough space before the persisted tail.
    Full,
}

impl LaneLog {
    pub fn new(area: &Area, idx: u32, head: usize, salt: u64) -> Self {
        LaneLog {
            idx,
            base: area.log_off(idx),
            len: area.lane_bytes,
            head,
            ptail: head,
            next_recno: 0,
            salt,
            q8_mul: (256u64 << 32) / area.lane_bytes.max(1) as u64,
            behind: None,
            scratch: None,
            turn: u64::MAX,
            turn_seq: 0,
            front_seq: u64::MAX,
        }
    }

    /// `pos` (below twice the log's length) brought into the ring: a compare where
    /// a remainder would divide (several times a commit).
    fn wrap(&self, pos: usize) -> usize {
        if pos >= self.len {
            pos - self.len
        } else {
            pos
        }
    }

    fn used(&self) -> usize {
        self.wrap(self.head + self.len - self.ptail)
    }

    /// Whether `bytes` fit (counting a wrap's padding), keeping one line free so a full
    /// ring is never mistaken for an empty one.
    pub fn room(&self, bytes: usize) -> Room {
        let free = self.len - self.used() - LINE;
        let need = if self.head + bytes > self.len {
            self.len - self.head + bytes
        } else {
            bytes
        };
        if need <= free {
            Room::Fits
        } else {
            Room::Full
        }
    }

    /// Persists the tail at `pos` (one fence), freeing the space before it.
    pub fn persist_tail<M: Media>(&mut self, media: &M, area: &Area, pos: usize) {
        if pos == self.ptail {
            return;
        }
        if pos == self.head {
            // An empty log: a scan from here must stop at once, so the line at the head
            // (possibly an old record, valid but stale) is cleared first.
            media.fill(self.base + pos, LINE, 0);
            media.persist(self.base + pos, LINE);
        }
        let off = area.tail_off(self.idx);
        media.write_u64(off, encode_tail(pos as u64, self.idx, self.salt));
        media.persist(off, 8);
        self.ptail = pos;
    }

    /// Starts an empty log over at position 0 (the persisted tail already at the head,
    /// no record live): a record larger than both the space to the end and the space
    /// before the tail then still fits. False if the log is not empty or already at 0.
    pub fn rewind_empty<M: Media>(
        &mut self,
        media: &M,
        area: &Area,
        recs: &spin::Mutex<LaneRecs>,
    ) -> bool {
        if self.head == 0 || self.ptail != self.head || !recs.lock().recs.is_empty() {
            return false;
        }
        // persist_tail clears line 0 before the tail moves there.
        self.head = 0;
        self.persist_tail(media, area, 0);
        true
    }

    /// Appends `rec` (whole lines, already sealed): [`LaneLog::reserve`], then the
    /// record stored there. Returns the record number and position.
    pub fn append<M: Media>(
        &mut self,
        media: &M,
        recs: &spin::Mutex<LaneRecs>,
        rec: &[u8],
        live: u64,
        keys: &[u64],
        seq: u64,
    ) -> (u64, usize) {
        let (recno, pos) = self.reserve(media, recs, rec.len(), live, keys, seq);
        self.store(media, pos, rec);
        (recno, pos)
    }

    /// Registers a record of `len` bytes at the head, wrapping with a padding record
    /// if it does not fit before the end, without storing it yet (the caller then
    /// [`stores`](LaneLog::store) it). The caller checked [`LaneLog::room`]. Returns
    /// the record number and position; a padding record, if written, is registered as
    /// dead.
    pub fn reserve<M: Media>(
        &mut self,
        media: &M,
        recs: &spin::Mutex<LaneRecs>,
        len: usize,
        live: u64,
        keys: &[u64],
        seq: u64,
    ) -> (u64, usize) {
        if self.head + len > self.len {
            let lines = (self.len - self.head) / LINE;
            let pad = record::pad(lines, seq, self.idx, self.salt);
            media.write(self.base + self.head, &pad);
            media.flush(self.base + self.head, LINE);
            self.push(recs, 0, &[], seq);
            self.head = 0;
        }
        let pos = self.head;
        // Registered before it is written: the lock's atomic would otherwise wait for
        // the record's stores. No one marks its groups before the commit adds them to
        // the pending chains, so the early entry is never acted on.
        let recno = self.push(recs, live, keys, seq);
        self.head = self.wrap(pos + len);
        (recno, pos)
    }

    /// Stores `rec` at `pos` (from [`LaneLog::reserve`]) with non-temporal stores:
    /// durable at the next fence.
    pub fn store<M: Media>(&self, media: &M, pos: usize, rec: &[u8]) {
        // Every record goes to the log with non-temporal stores: its lines were written
        // a whole lap of the ring ago (out of the cache, so ordinary stores would first
        // read each from memory), and a fence waits less for write-combined lines than
        // for flushed ones: one line plus fence 95 ns against 160 ns here (EPYC;
        // w1 500 -> 385-440 ns per transaction). Nothing reads a record again before
        // the round that marks it dead, long after.
        media.write_nt(self.base + pos, rec);
    }

    #[inline(always)]
    fn push(&mut self, recs: &spin::Mutex<LaneRecs>, live: u64, keys: &[u64], seq: u64) -> u64 {
        let recno = self.next_recno;
        self.next_recno += 1;
        let mut r = recs.lock();
        if r.recs.is_empty() {
            r.front_recno = recno;
        }
        r.recs.push_back(RecMeta {
            pos: self.head,
            seq,
            live: live & record::LIVE_MASK,
            tag: live & !record::LIVE_MASK,
            keys: Keys::new(keys),
        });
        recno
    }

    /// Free share of the log, out of 256 (rounded down).
    pub fn free_q8(&self) -> u32 {
        let free = (self.len - self.used()) as u64;
        // The multiply gives the quotient or one below it; one compare corrects it.
        let q = (free * self.q8_mul) >> 32;
        let q = if (q + 1) * self.len as u64 <= free * 256 {
            q + 1
        } else {
            q
        };
        q.min(256) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_share_is_the_exact_quotient() {
        for lanes in [1, 3, 7] {
            let area = Area::compute(1 << 20, (1 << 20) + 977 * 4096, lanes).unwrap();
            let mut log = LaneLog::new(&area, 0, 0, 1);
            for used in (0..area.lane_bytes).step_by(64 * 7) {
                log.head = used;
                let exact = ((area.lane_bytes - used) * 256 / area.lane_bytes) as u32;
                assert_eq!(log.free_q8(), exact, "{used} used");
            }
            log.head = log.len - LINE;
            log.ptail = LINE;
            assert_eq!(log.used(), log.len - 2 * LINE, "wraps");
        }
    }
}
