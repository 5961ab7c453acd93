//! Transactions.
//!
//! A transaction collects its changes in DRAM: a *shadow* copy per object opened with
//! [`Tx::open_mut`] (diffed at commit against a pristine copy to find dirty lines and
//! runs), or explicit range writes ([`Tx::write`]). Nothing touches the pool before
//! commit, so aborting (an `Err`, or an unwind dropping the `Tx`) only gives back
//! reservations.
//!
//! Commit, for redo-logged objects (Delta, Full, fresh objects, allocation metadata):
//! 1. build the log record(s) in DRAM; take a sequence number;
//! 2. append to the lane log and flush;
//! 3. **one fence**: the transaction is committed;
//! 4. store the new bytes in the homes (cache only: coalescing writes them back); for
//!    Critical-Section objects store them, flush them and fence again (write-through:
//!    their homes are durable when commit returns).
//!
//! Objects larger than `SHADOW_MAX` (not new) are updated in place with undo logging:
//! undo record (old bytes) → fence → new bytes in place → fence → commit record →
//! fence → undo record marked dead → fence. New objects larger than `SHADOW_MAX` are
//! initialised in place and made durable by a fence before the commit record.

use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;

use arch::Media;
use pmalloc::layout::ROOT_SLOT;
use pmalloc::{bytes_of, from_bytes, Freeing, PPtr, Persistent, Reserved};

use crate::area::LINE;
use crate::coalesce::{Committed, Trigger};
use crate::dirty_map::{dirty_runs, DirtyMap};
use crate::error::Error;
use crate::log::{Lane, LaneLog, Room};
use crate::mode::{Mode, ModeInput, SHADOW_MAX};
use crate::pending::GroupRef;
use crate::pool::Pool;
use crate::record::{Builder, F_UNDO, G_ABS, G_REL, LIVE_OFF, MAX_GROUPS};

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A 64-byte-aligned byte buffer (shadows hold `&mut T` for any `T` aligned to 64 or
/// less).
#[derive(Clone)]
struct Buf {
    lines: Vec<Line>,
    len: usize,
}

impl Buf {
    fn zeroed(len: usize) -> Self {
        Buf {
            lines: alloc::vec![Line([0; 64]); len.div_ceil(64)],
            len,
        }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` initialised bytes, contiguous (repr C,
        // no padding between array elements of a 64-byte type).
        unsafe { core::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, uniquely borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

struct TxObj {
    obj: u64,
    size: u64,
    type_num: u32,
    /// Index into `allocs` when allocated by this transaction.
    fresh: Option<usize>,
    shadow: Option<Buf>,
    pristine: Option<Buf>,
    /// Explicit writes (when there is no shadow): `(offset, length)`, bytes in `data`.
    writes: Vec<(u32, u32)>,
    data: Vec<u8>,
    mode: Option<Mode>,
}

/// What commit does with one object.
enum Plan<'a> {
    /// Redo-log these runs of `new` (offsets into the object).
    Redo {
        mode: Mode,
        runs: Vec<(u32, u32)>,
        new: &'a [u8],
    },
    /// Explicit writes redo-logged as they are.
    Writes {
        mode: Mode,
        writes: &'a [(u32, u32)],
        data: &'a [u8],
    },
    /// Undo-log the old bytes of these runs, then write `new` in place.
    Undo { runs: Vec<(u32, u32)>, new: Vec<u8> },
    /// A new object too large to log: written in place before the commit record.
    FreshInPlace { new: &'a [u8] },
}

/// A transaction on a [`Pool`]. See the module documentation.
pub struct Tx<'p, M: Media> {
    pool: &'p Pool<M>,
    lane: &'p Lane,
    log: spin::MutexGuard<'p, LaneLog>,
    objs: Vec<TxObj>,
    allocs: Vec<Reserved>,
    frees: Vec<Freeing>,
    root: Option<u64>,
    done: bool,
}

impl<M: Media> core::fmt::Debug for Tx<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tx")
            .field("lane", &self.log.idx)
            .field("objects", &self.objs.len())
            .finish_non_exhaustive()
    }
}

impl<'p, M: Media> Tx<'p, M> {
    /// On a lane: the first free one from `start`, else waiting for `start`.
    pub(crate) fn begin(pool: &'p Pool<M>, start: usize) -> Self {
        let n = pool.lanes.len();
        let (lane, log) = (0..n)
            .find_map(|k| {
                let lane = &pool.lanes[(start + k) % n];
                lane.log.try_lock().map(|g| (lane, g))
            })
            .unwrap_or_else(|| {
                let lane = &pool.lanes[start];
                (lane, lane.log.lock())
            });
        Self::with(pool, lane, log)
    }

    /// On lane `k`, waiting for it if busy.
    pub(crate) fn begin_on(pool: &'p Pool<M>, k: usize) -> Self {
        let lane = &pool.lanes[k];
        Self::with(pool, lane, lane.log.lock())
    }

    fn with(pool: &'p Pool<M>, lane: &'p Lane, log: spin::MutexGuard<'p, LaneLog>) -> Self {
        Tx {
            pool,
            lane,
            log,
            objs: Vec::new(),
            allocs: Vec::new(),
            frees: Vec::new(),
            root: None,
            done: false,
        }
    }

    /// Runs `f` inside this transaction (nested transactions flatten: an `Err` from
    /// `f` aborts the whole transaction when the outer closure returns it).
    pub fn nested<R, E>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, E>) -> Result<R, E> {
        f(self)
    }

    fn find(&mut self, obj: u64) -> Result<usize, Error> {
        if let Some(i) = self.objs.iter().position(|o| o.obj == obj) {
            return Ok(i);
        }
        if self.frees.iter().any(|f| f.obj == obj) {
            return Err(Error::Freed { obj });
        }
        let info = self.pool.heap.info(obj)?;
        self.objs.push(TxObj {
            obj,
            size: info.size,
            type_num: info.type_num,
            fresh: None,
            shadow: None,
            pristine: None,
            writes: Vec::new(),
            data: Vec::new(),
            mode: None,
        });
        Ok(self.objs.len() - 1)
    }

    fn typed<T: Persistent>(&mut self, p: PPtr<T>) -> Result<usize, Error> {
        let i = self.find(p.raw())?;
        let o = &self.objs[i];
        if T::TYPE_NUM != 0 && o.type_num != T::TYPE_NUM {
            return Err(Error::BadPointer(pmalloc::PtrError::WrongType {
                offset: o.obj,
                expected: T::TYPE_NUM,
                found: o.type_num,
            }));
        }
        if (o.size as usize) < core::mem::size_of::<T>() {
            return Err(Error::BadPointer(pmalloc::PtrError::TooSmall {
                offset: o.obj,
                size: o.size,
                need: core::mem::size_of::<T>(),
            }));
        }
        Ok(i)
    }

    fn shadow(&mut self, i: usize) -> &mut Buf {
        let media = self.pool.media();
        let o = &mut self.objs[i];
        if o.shadow.is_none() {
            let mut s = Buf::zeroed(o.size as usize);
            media.read(o.obj as usize, s.bytes_mut());
            o.pristine = Some(s.clone());
            let mut at = 0;
            for &(off, len) in &o.writes {
                s.bytes_mut()[off as usize..(off + len) as usize]
                    .copy_from_slice(&o.data[at..at + len as usize]);
                at += len as usize;
            }
            o.writes.clear();
            o.data.clear();
            o.shadow = Some(s);
        }
        o.shadow
            .as_mut()
            .unwrap_or_else(|| unreachable!("shadow just made"))
    }

    /// A mutable reference to the `T` that `p` points to, in this transaction's copy.
    /// The changes are logged (only the lines that differ) and applied at commit.
    pub fn open_mut<T: Persistent>(&mut self, p: PPtr<T>) -> Result<&mut T, Error> {
        if core::mem::align_of::<T>() > 64 {
            return Err(Error::Alignment {
                align: core::mem::align_of::<T>(),
            });
        }
        let i = self.typed(p)?;
        let s = self.shadow(i);
        // SAFETY: the shadow is 64-byte aligned, at least size_of::<T>() long (checked
        // in `typed`), and borrowed mutably with `self`; `Persistent` types accept every
        // bit pattern.
        Ok(unsafe { &mut *s.bytes_mut().as_mut_ptr().cast::<T>() })
    }

    /// All bytes of the object `p` points to, mutably, in this transaction's copy.
    pub fn open_bytes_mut<T>(&mut self, p: PPtr<T>) -> Result<&mut [u8], Error> {
        let i = self.find(p.raw())?;
        Ok(self.shadow(i).bytes_mut())
    }

    /// Writes `bytes` at `off` inside the object `p` (like PMDK's add-range then
    /// store): logged at commit without copying the object.
    pub fn write_bytes<T>(&mut self, p: PPtr<T>, off: usize, bytes: &[u8]) -> Result<(), Error> {
        let i = self.find(p.raw())?;
        let o = &mut self.objs[i];
        if off as u64 + bytes.len() as u64 > o.size {
            return Err(Error::OutOfBounds {
                obj: o.obj,
                off: off as u64,
                len: bytes.len() as u64,
            });
        }
        if let Some(s) = o.shadow.as_mut() {
            s.bytes_mut()[off..off + bytes.len()].copy_from_slice(bytes);
        } else {
            o.writes.push((off as u32, bytes.len() as u32));
            o.data.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Writes `v` at byte `off` of the object `p` (for example a field at
    /// `offset_of!(Node, next)`).
    pub fn write<T, V: Persistent>(&mut self, p: PPtr<T>, off: usize, v: &V) -> Result<(), Error> {
        self.write_bytes(p, off, bytes_of(v))
    }

    /// Reads bytes of the object `p` as this transaction sees it (its own writes
    /// included).
    pub fn read_bytes<T>(&mut self, p: PPtr<T>, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        let i = self.find(p.raw())?;
        let o = &self.objs[i];
        if off as u64 + buf.len() as u64 > o.size {
            return Err(Error::OutOfBounds {
                obj: o.obj,
                off: off as u64,
                len: buf.len() as u64,
            });
        }
        if let Some(s) = &o.shadow {
            buf.copy_from_slice(&s.bytes()[off..off + buf.len()]);
            return Ok(());
        }
        self.pool.media().read(o.obj as usize + off, buf);
        let mut at = 0;
        for &(wo, wl) in &o.writes {
            let (ws, we) = (wo as usize, (wo + wl) as usize);
            let (s, e) = (ws.max(off), we.min(off + buf.len()));
            if s < e {
                buf[s - off..e - off].copy_from_slice(&o.data[at + (s - ws)..at + (e - ws)]);
            }
            at += wl as usize;
        }
        Ok(())
    }

    /// Reads the `T` that `p` points to as this transaction sees it.
    pub fn read<T: Persistent>(&mut self, p: PPtr<T>) -> Result<T, Error> {
        let i = self.typed(p)?;
        self.pool.note_read(p.raw());
        if let Some(s) = &self.objs[i].shadow {
            return Ok(from_bytes(s.bytes()));
        }
        let mut b = alloc::vec![0u8; core::mem::size_of::<T>()];
        self.read_bytes(p, 0, &mut b)?;
        Ok(from_bytes(&b))
    }

    /// Allocates a new object holding `value`; it exists only if the transaction
    /// commits.
    pub fn alloc<T: Persistent>(&mut self, value: T) -> Result<PPtr<T>, Error> {
        let p = self.alloc_bytes(
            core::mem::size_of::<T>().max(1),
            core::mem::align_of::<T>(),
            T::TYPE_NUM,
            bytes_of(&value),
        )?;
        Ok(p.cast())
    }

    /// Allocates `size` bytes (zeroed, then `init` at the start) with `type_num`.
    pub fn alloc_bytes(
        &mut self,
        size: usize,
        align: usize,
        type_num: u32,
        init: &[u8],
    ) -> Result<PPtr<()>, Error> {
        let r = self.pool.heap.reserve(size, align, type_num)?;
        let mut shadow = Buf::zeroed(size);
        let n = init.len().min(size);
        shadow.bytes_mut()[..n].copy_from_slice(&init[..n]);
        let obj = r.obj;
        self.objs.push(TxObj {
            obj,
            size: size as u64,
            type_num,
            fresh: Some(self.allocs.len()),
            shadow: Some(shadow),
            pristine: None,
            writes: Vec::new(),
            data: Vec::new(),
            mode: None,
        });
        self.allocs.push(r);
        Ok(PPtr::from_raw(obj))
    }

    /// Frees the object `p` points to when the transaction commits.
    pub fn free<T>(&mut self, p: PPtr<T>) -> Result<(), Error> {
        let obj = p.raw();
        if let Some(i) = self.objs.iter().position(|o| o.obj == obj) {
            let o = self.objs.swap_remove(i);
            if let Some(a) = o.fresh {
                // Allocated and freed in this transaction: nothing to log.
                self.pool.heap.cancel(&self.allocs[a]);
                self.allocs[a].obj = 0;
                return Ok(());
            }
        }
        if self.frees.iter().any(|f| f.obj == obj) {
            return Err(Error::Freed { obj });
        }
        self.frees.push(self.pool.heap.prepare_free(obj)?);
        Ok(())
    }

    /// Publishes `p` as the pool's root object at commit.
    pub fn set_root<T>(&mut self, p: PPtr<T>) {
        self.root = Some(p.raw());
    }

    /// Forces the persistence mode of `p`'s object in this transaction.
    pub fn set_mode<T>(&mut self, p: PPtr<T>, mode: Mode) -> Result<(), Error> {
        let i = self.find(p.raw())?;
        self.objs[i].mode = Some(mode);
        Ok(())
    }
}

/// Per-group bookkeeping for the pending index, in record order.
struct GroupInfo {
    key: u64,
    ranges: Vec<(u64, u32)>,
    volume: u64,
}

fn runs32(runs: &[(usize, usize)]) -> Vec<(u32, u32)> {
    runs.iter().map(|&(o, l)| (o as u32, l as u32)).collect()
}

/// Makes room for `bytes` of records in a lane log: advances the persisted tail over
/// dead records, and applies back-pressure (coalescing the objects that hold the oldest
/// live record) until they fit. A full log delays a transaction, never fails it, unless
/// the transaction alone exceeds the log.
fn make_room<M: Media>(
    pool: &Pool<M>,
    log: &mut LaneLog,
    lane: &Lane,
    bytes: usize,
) -> Result<(), Error> {
    if bytes + 2 * LINE > log.len {
        return Err(Error::TooLarge {
            bytes,
            lane_bytes: log.len,
        });
    }
    loop {
        if let Room::Fits = log.room(bytes) {
            return Ok(());
        }
        if pool.advance_tail(log, lane) || log.rewind_empty(pool.media(), &pool.area, &lane.recs) {
            continue;
        }
        if !pool.coalesce_front(log.idx) {
            return Err(Error::TooLarge {
                bytes,
                lane_bytes: log.len,
            });
        }
    }
}

impl<M: Media> Tx<'_, M> {
    /// Commits (module docs). On `Err` nothing was written and the transaction aborts.
    #[allow(clippy::too_many_lines)] // one protocol, step by step, reads best in one place
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        let pool = self.pool;
        let media = pool.media();
        let salt = pool.salt();
        let lane = self.log.idx;
        let objs = core::mem::take(&mut self.objs);
        let mut user_bytes = 0u64;

        // 1. What changed, and how each object is made durable.
        let mut plans: Vec<(&TxObj, Plan<'_>)> = Vec::with_capacity(objs.len());
        for o in &objs {
            let lines = (o.size as usize).div_ceil(64);
            if o.fresh.is_some() {
                let new = o.shadow.as_ref().map_or(&[][..], Buf::bytes);
                user_bytes += new.len() as u64;
                if o.size > SHADOW_MAX {
                    plans.push((o, Plan::FreshInPlace { new }));
                } else {
                    plans.push((
                        o,
                        Plan::Redo {
                            mode: Mode::Full,
                            runs: alloc::vec![(0, o.size as u32)],
                            new,
                        },
                    ));
                }
                continue;
            }
            if let (Some(s), Some(p)) = (&o.shadow, &o.pristine) {
                let dirty = DirtyMap::diff(p.bytes(), s.bytes());
                if dirty.count() == 0 {
                    continue;
                }
                let input = ModeInput {
                    obj: o.obj,
                    size: o.size,
                    type_num: o.type_num,
                    dirty_lines: dirty.count(),
                    lines,
                };
                let mode = o.mode.unwrap_or_else(|| pool.policy.choose(&input));
                let runs = dirty_runs(p.bytes(), s.bytes(), &dirty, 16);
                user_bytes += runs.iter().map(|r| r.1 as u64).sum::<u64>();
                if o.size > SHADOW_MAX {
                    plans.push((
                        o,
                        Plan::Undo {
                            runs: runs32(&runs),
                            new: s.bytes().to_vec(),
                        },
                    ));
                } else if mode == Mode::Full {
                    plans.push((
                        o,
                        Plan::Redo {
                            mode,
                            runs: alloc::vec![(0, o.size as u32)],
                            new: s.bytes(),
                        },
                    ));
                } else {
                    plans.push((
                        o,
                        Plan::Redo {
                            mode,
                            runs: runs32(&runs),
                            new: s.bytes(),
                        },
                    ));
                }
            } else if !o.writes.is_empty() {
                user_bytes += o.writes.iter().map(|w| u64::from(w.1)).sum::<u64>();
                let mut dm = DirtyMap::new(o.size as usize);
                for &(off, len) in &o.writes {
                    dm.mark(off as usize, len as usize);
                }
                let input = ModeInput {
                    obj: o.obj,
                    size: o.size,
                    type_num: o.type_num,
                    dirty_lines: dm.count(),
                    lines,
                };
                let mode = o.mode.unwrap_or_else(|| pool.policy.choose(&input));
                if o.size > SHADOW_MAX {
                    // In place: the new bytes are the writes, applied over the old.
                    let mut new = alloc::vec![0u8; o.size as usize];
                    media.read(o.obj as usize, &mut new);
                    let mut at = 0;
                    for &(off, len) in &o.writes {
                        new[off as usize..(off + len) as usize]
                            .copy_from_slice(&o.data[at..at + len as usize]);
                        at += len as usize;
                    }
                    plans.push((
                        o,
                        Plan::Undo {
                            runs: o.writes.clone(),
                            new,
                        },
                    ));
                } else {
                    plans.push((
                        o,
                        Plan::Writes {
                            mode,
                            writes: &o.writes,
                            data: &o.data,
                        },
                    ));
                }
            }
        }
        let allocs: Vec<&Reserved> = self.allocs.iter().filter(|a| a.obj != 0).collect();
        if plans.is_empty() && allocs.is_empty() && self.frees.is_empty() && self.root.is_none() {
            self.done = true;
            return Ok(());
        }

        // 2. Build the undo and redo records in DRAM.
        let seq = pool.next_seq();
        let has_undo = plans.iter().any(|(_, p)| matches!(p, Plan::Undo { .. }));
        let undo_parts = if has_undo {
            let mut b = Builder::new();
            for (o, p) in &plans {
                if let Plan::Undo { runs, .. } = p {
                    b.group(o.obj, G_REL, 0);
                    for &(off, len) in runs {
                        let mut old = alloc::vec![0u8; len as usize];
                        media.read(o.obj as usize + off as usize, &mut old);
                        b.rel(off, &old);
                    }
                }
            }
            b.finish(seq, F_UNDO, false, lane, salt)
        } else {
            Vec::new()
        };
        let mut b = Builder::new();
        let mut groups: Vec<GroupInfo> = Vec::new();
        for (o, p) in &plans {
            let (mode, entries): (Mode, Vec<(u32, &[u8])>) = match p {
                Plan::Redo { mode, runs, new } => (
                    *mode,
                    runs.iter()
                        .map(|&(off, len)| (off, &new[off as usize..(off + len) as usize]))
                        .collect(),
                ),
                Plan::Writes { mode, writes, data } => {
                    let mut at = 0;
                    let e = writes
                        .iter()
                        .map(|&(off, len)| {
                            let d = &data[at..at + len as usize];
                            at += len as usize;
                            (off, d)
                        })
                        .collect();
                    (*mode, e)
                }
                Plan::Undo { .. } | Plan::FreshInPlace { .. } => continue,
            };
            b.group(o.obj, G_REL, mode as u8);
            let mut g = GroupInfo {
                key: o.obj,
                ranges: Vec::new(),
                volume: 0,
            };
            for (off, d) in entries {
                b.rel(off, d);
                g.volume += d.len() as u64;
                // Write-through objects are durable at commit: nothing to write back.
                if mode != Mode::CriticalSection {
                    g.ranges.push((o.obj + u64::from(off), d.len() as u32));
                }
            }
            groups.push(g);
        }
        let meta = |b: &mut Builder,
                    groups: &mut Vec<GroupInfo>,
                    obj: u64,
                    hdr_off: u64,
                    header: &[u8; 16],
                    words: &[(u64, u64)]| {
            b.group(obj, G_ABS, 0);
            b.abs(hdr_off, header);
            let mut g = GroupInfo {
                key: obj,
                ranges: alloc::vec![(hdr_off, 16)],
                volume: 16,
            };
            for &(off, w) in words {
                b.abs(off, &w.to_le_bytes());
                g.ranges.push((off, 8));
                g.volume += 8;
            }
            groups.push(g);
        };
        for a in &allocs {
            meta(
                &mut b,
                &mut groups,
                a.obj,
                a.hdr_off,
                &a.header,
                &a.chunk_words,
            );
        }
        for f in &self.frees {
            meta(
                &mut b,
                &mut groups,
                f.obj,
                f.hdr_off,
                &f.header,
                &f.chunk_words,
            );
        }
        if let Some(r) = self.root {
            b.group(ROOT_SLOT as u64, G_ABS, 0);
            b.abs(ROOT_SLOT as u64, &r.to_le_bytes());
            groups.push(GroupInfo {
                key: ROOT_SLOT as u64,
                ranges: alloc::vec![(ROOT_SLOT as u64, 8)],
                volume: 8,
            });
        }
        let redo_parts = b.finish(seq, 0, true, lane, salt);

        // 3. Room for everything at once (plus one padding record), so no append below
        //    can fail halfway.
        let total: usize = undo_parts
            .iter()
            .chain(redo_parts.iter())
            .map(|(p, _)| p.len())
            .sum();
        let largest = undo_parts
            .iter()
            .chain(redo_parts.iter())
            .map(|(p, _)| p.len())
            .max()
            .unwrap_or(0);
        make_room(pool, &mut self.log, self.lane, total + largest)?;
        self.done = true;

        let mut lines = 0u64;
        let mut fences = 0u64;
        // In-place writes must not be overwritten by a replay of older records: write
        // those objects back and make their dead-marks durable first.
        let in_place: Vec<u64> = plans
            .iter()
            .filter(|(_, p)| matches!(p, Plan::Undo { .. } | Plan::FreshInPlace { .. }))
            .map(|(o, _)| o.obj)
            .collect();
        if !in_place.is_empty() {
            pool.coalesce_keys(&in_place, Trigger::Explicit, true);
        }
        // 4. In-place objects: undo first, then their new bytes.
        let mut undo_recs = Vec::new();
        if has_undo {
            for (p, _) in &undo_parts {
                let (recno, pos) = self
                    .log
                    .append(media, &self.lane.recs, p, 1, Vec::new(), seq);
                undo_recs.push((recno, pos));
                lines += (p.len() / LINE) as u64;
            }
            if crate::keep_step(5) {
                media.fence();
            }
            for (o, p) in &plans {
                if let Plan::Undo { runs, new } = p {
                    for &(off, len) in runs {
                        let at = o.obj as usize + off as usize;
                        media.write(at, &new[off as usize..(off + len) as usize]);
                        media.flush(at, len as usize);
                        lines += arch::line_range(at, len as usize).len() as u64;
                    }
                }
            }
            media.fence();
            fences += 2;
        }
        let mut fresh_in_place = false;
        for (o, p) in &plans {
            if let Plan::FreshInPlace { new } = p {
                media.write_nt(o.obj as usize, new);
                fresh_in_place = true;
            }
        }
        if fresh_in_place {
            media.fence();
            fences += 1;
        }

        if !crate::keep_step(2) {
            for (o, p) in &plans {
                for (at, d) in plan_bytes(o, p) {
                    media.write(at, d);
                    media.flush(at, d.len());
                }
            }
        }
        if !crate::keep_step(6) {
            for (o, p) in &plans {
                if matches!(
                    p,
                    Plan::Redo {
                        mode: Mode::CriticalSection,
                        ..
                    } | Plan::Writes {
                        mode: Mode::CriticalSection,
                        ..
                    }
                ) {
                    for (at, d) in plan_bytes(o, p) {
                        media.write(at, d);
                        media.flush(at, d.len());
                    }
                }
            }
        }
        // 5. The redo record.
        let mut recnos = Vec::with_capacity(redo_parts.len());
        for (k, (p, _)) in redo_parts.iter().enumerate() {
            let live = u64::from_le_bytes(p[LIVE_OFF..LIVE_OFF + 8].try_into().unwrap_or([0; 8]));
            let keys = groups
                .iter()
                .skip(k * MAX_GROUPS)
                .take(MAX_GROUPS)
                .map(|g| g.key)
                .collect();
            recnos.push(
                self.log
                    .append(media, &self.lane.recs, p, live, keys, seq)
                    .0,
            );
            lines += (p.len() / LINE) as u64;
        }
        // 6. One fence: committed.
        if crate::keep_step(1) {
            media.fence();
        }
        fences += 1;
        media.crash_point("pmrt.tx.committed");

        // 7. Write-through objects: stored in place and made durable now (after the
        //    record: stored before it, a torn record would leave them half new with
        //    nothing to roll either way).
        let mut through = false;
        for (o, p) in &plans {
            let cs = matches!(
                p,
                Plan::Redo {
                    mode: Mode::CriticalSection,
                    ..
                } | Plan::Writes {
                    mode: Mode::CriticalSection,
                    ..
                }
            );
            if cs {
                for (at, d) in plan_bytes(o, p) {
                    media.write(at, d);
                    media.flush(at, d.len());
                    lines += arch::line_range(at, d.len()).len() as u64;
                }
                through = true;
            }
        }
        if through {
            media.fence();
            fences += 1;
        }
        // Homes of deferred objects, in cache; coalescing writes them back.
        for (o, p) in &plans {
            let deferred = matches!(
                p,
                Plan::Redo {
                    mode: Mode::Delta | Mode::Full,
                    ..
                } | Plan::Writes {
                    mode: Mode::Delta | Mode::Full,
                    ..
                }
            );
            if deferred {
                for (at, d) in plan_bytes(o, p) {
                    media.write(at, d);
                }
            }
        }
        for a in &allocs {
            apply_meta(media, a.hdr_off, &a.header, &a.chunk_words);
        }
        for f in &self.frees {
            apply_meta(media, f.hdr_off, &f.header, &f.chunk_words);
        }
        if let Some(r) = self.root {
            media.write_u64(ROOT_SLOT, r);
        }
        // 8. The undo records are dead now that the commit record is durable.
        if has_undo {
            for &(_, pos) in &undo_recs {
                media.write_u64(
                    self.log.base + pos + LIVE_OFF,
                    crate::record::live_tag(seq, lane, salt),
                );
                media.flush(self.log.base + pos + LIVE_OFF, 8);
            }
            media.fence();
            fences += 1;
            let mut recs = self.lane.recs.lock();
            for &(recno, _) in &undo_recs {
                if let Some(r) = recs.get_mut(recno) {
                    r.live = 0;
                }
            }
            recs.pop_dead();
        }

        // 9. Pending chains, and the freed objects they now hold back.
        for (i, g) in groups.iter().enumerate() {
            let gr = GroupRef {
                lane,
                recno: recnos[i / MAX_GROUPS],
                group: (i % MAX_GROUPS) as u8,
            };
            pool.pending.with(g.key, |p| {
                p.chain.groups.push(gr);
                for &(o, l) in &g.ranges {
                    p.chain.add_range(o, l);
                }
                p.chain.count += 1;
                p.chain.volume += g.volume;
            });
        }
        for f in core::mem::take(&mut self.frees) {
            pool.pending.with(f.obj, |p| p.chain.freeing = Some(f));
        }
        let c = &pool.counters;
        c.commits.fetch_add(1, Relaxed);
        c.commit_lines.fetch_add(lines, Relaxed);
        c.commit_fences.fetch_add(fences, Relaxed);
        c.logged_bytes
            .fetch_add(groups.iter().map(|g| g.volume).sum(), Relaxed);
        c.user_bytes.fetch_add(user_bytes, Relaxed);
        let sizes: Vec<(u64, u64)> = objs.iter().map(|o| (o.obj, o.size)).collect();
        let committed: Vec<Committed> = groups
            .iter()
            .map(|g| Committed {
                key: g.key,
                volume: g.volume,
                lines: g
                    .ranges
                    .iter()
                    .map(|&(o, l)| arch::line_range(o as usize, l as usize).len() as u64)
                    .sum(),
                size: sizes
                    .iter()
                    .find(|s| s.0 == g.key)
                    .map_or(g.volume, |s| s.1),
            })
            .collect();
        let free_q8 = self.log.free_q8();
        drop(self);
        pool.after_commit(&committed, free_q8);
        Ok(())
    }
}

/// The `(pool offset, bytes)` a redo plan stores.
fn plan_bytes<'a>(o: &TxObj, p: &'a Plan<'a>) -> Vec<(usize, &'a [u8])> {
    match p {
        Plan::Redo { runs, new, .. } => runs
            .iter()
            .map(|&(off, len)| {
                (
                    o.obj as usize + off as usize,
                    &new[off as usize..(off + len) as usize],
                )
            })
            .collect(),
        Plan::Writes { writes, data, .. } => {
            let mut at = 0;
            writes
                .iter()
                .map(|&(off, len)| {
                    let d = &data[at..at + len as usize];
                    at += len as usize;
                    (o.obj as usize + off as usize, d)
                })
                .collect()
        }
        Plan::Undo { .. } | Plan::FreshInPlace { .. } => Vec::new(),
    }
}

fn apply_meta<M: Media>(media: &M, hdr_off: u64, header: &[u8; 16], words: &[(u64, u64)]) {
    for &(off, w) in words {
        media.write_u64(off as usize, w);
    }
    media.write(hdr_off as usize, header);
}

impl<M: Media> Drop for Tx<'_, M> {
    fn drop(&mut self) {
        if !self.done {
            for a in &self.allocs {
                if a.obj != 0 {
                    self.pool.heap.cancel(a);
                }
            }
            self.pool.counters.aborts.fetch_add(1, Relaxed);
        }
    }
}
