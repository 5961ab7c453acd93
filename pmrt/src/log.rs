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
use alloc::vec::Vec;

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
}

/// What the runtime remembers about a record in the log.
#[derive(Debug, Clone)]
pub(crate) struct RecMeta {
    pub pos: usize,
    /// Live groups (a cleared bit may not be durable yet: see `coalesce`).
    pub live: u64,
    /// The record's live-word tag (written back with every mask change).
    pub tag: u64,
    /// The object of each group.
    pub keys: Vec<u64>,
}

/// Records of one lane from its oldest live one: shared with coalescers.
#[derive(Debug, Default)]
pub(crate) struct LaneRecs {
    pub recs: VecDeque<RecMeta>,
    pub front_recno: u64,
    /// Dead records popped from the front but not yet behind the persisted tail:
    /// `(record number, keys)`.
    pub passed: Vec<(u64, Vec<u64>)>,
}

impl LaneRecs {
    /// The record numbered `recno`, if still tracked.
    pub fn get_mut(&mut self, recno: u64) -> Option<&mut RecMeta> {
        let i = recno.checked_sub(self.front_recno)?;
        self.recs.get_mut(usize::try_from(i).ok()?)
    }

    /// Moves fully dead records from the front to `passed`.
    pub fn pop_dead(&mut self) {
        while self.recs.front().is_some_and(|r| r.live == 0) {
            if let Some(r) = self.recs.pop_front() {
                self.passed.push((self.front_recno, r.keys));
            }
            self.front_recno += 1;
        }
    }

    /// Where the oldest live record starts, or `head` when none is live.
    pub fn vtail(&self, head: usize) -> usize {
        self.recs.front().map_or(head, |r| r.pos)
    }
}

/// One lane: its writer state and its record list.
#[derive(Debug)]
pub(crate) struct Lane {
    pub log: spin::Mutex<LaneLog>,
    pub recs: spin::Mutex<LaneRecs>,
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
        }
    }

    fn used(&self) -> usize {
        (self.head + self.len - self.ptail) % self.len
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

    /// Appends `rec` (whole lines, already sealed), wrapping with a padding record if
    /// it does not fit before the end; flushes it (no fence). The caller checked
    /// [`LaneLog::room`]. Returns the record number and position; a padding record, if
    /// written, is registered as dead.
    pub fn append<M: Media>(
        &mut self,
        media: &M,
        recs: &spin::Mutex<LaneRecs>,
        rec: &[u8],
        live: u64,
        keys: Vec<u64>,
        seq: u64,
    ) -> (u64, usize) {
        if self.head + rec.len() > self.len {
            let lines = (self.len - self.head) / LINE;
            let pad = record::pad(lines, seq, self.idx, self.salt);
            media.write(self.base + self.head, &pad);
            media.flush(self.base + self.head, LINE);
            self.push(recs, 0, Vec::new());
            self.head = 0;
        }
        let pos = self.head;
        if rec.len() >= 4096 {
            media.write_nt(self.base + pos, rec);
        } else {
            media.write(self.base + pos, rec);
            media.flush(self.base + pos, rec.len());
        }
        let recno = self.push(recs, live, keys);
        self.head = (pos + rec.len()) % self.len;
        (recno, pos)
    }

    fn push(&mut self, recs: &spin::Mutex<LaneRecs>, live: u64, keys: Vec<u64>) -> u64 {
        let recno = self.next_recno;
        self.next_recno += 1;
        let mut r = recs.lock();
        if r.recs.is_empty() {
            r.front_recno = recno;
        }
        r.recs.push_back(RecMeta {
            pos: self.head,
            live: live & record::LIVE_MASK,
            tag: live & !record::LIVE_MASK,
            keys,
        });
        recno
    }

    /// Free share of the log, out of 256.
    pub fn free_q8(&self) -> u32 {
        ((self.len - self.used()) * 256 / self.len) as u32
    }
}
