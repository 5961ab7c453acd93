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
//!
//! The small functions a transaction passes through (`begin`, `find`, `small`, `close`,
//! the scratch's `clear` and `push_obj`, and their helpers in other modules) are
//! `#[inline(always)]`: stores after a commit's fence wait in the store buffer until
//! it completes, and call prologues were a good part of them (w1 to mixed 1-4% faster;
//! `docs/benchmarks.md`, thirteenth session).

use alloc::vec::Vec;

use arch::Media;
use pmalloc::layout::ROOT_SLOT;
use pmalloc::{bytes_of, from_bytes, Freeing, PPtr, Persistent, Reserved};

use crate::area::LINE;
use crate::coalesce::{Batch, CommitView, Committed, Sched, Trigger};
use crate::dirty_map::{dirty_runs, DirtyMap};
use crate::error::Error;
use crate::log::{Lane, LaneLog, LaneStats, Room};
use crate::mode::{Mode, ModeInput, SHADOW_MAX};
use crate::pending::{GroupRef, ObjState};
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
    /// `len` long again, reusing the allocation where it is large enough; the bytes
    /// are left as they were (the caller overwrites them all).
    fn resize(&mut self, len: usize) {
        self.lines.resize(len.div_ceil(64), Line([0; 64]));
        self.len = len;
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

impl TxObj {
    /// Each explicit write with its bytes.
    fn each_write(&self) -> impl Iterator<Item = (u32, &[u8])> + Clone + '_ {
        let mut at = 0;
        self.writes.iter().map(move |&(off, len)| {
            let d = &self.data[at..at + len as usize];
            at += len as usize;
            (off, d)
        })
    }
}

/// How commit makes one object durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Redo-log runs of the shadow.
    Redo(Mode),
    /// Redo-log the explicit writes as they are.
    Writes(Mode),
    /// Undo-log the old bytes of the runs, then write the new bytes in place.
    Undo,
    /// A new object too large to log: written in place before the commit record.
    FreshInPlace,
}

impl Kind {
    fn mode(self) -> Option<Mode> {
        match self {
            Kind::Redo(m) | Kind::Writes(m) => Some(m),
            Kind::Undo | Kind::FreshInPlace => None,
        }
    }
}

/// What commit does with one object: `runs` index `Scratch::runs`.
struct Plan {
    obj: usize,
    kind: Kind,
    runs: core::ops::Range<usize>,
    /// The object's new bytes for an undo plan built from explicit writes.
    undo_new: Option<Vec<u8>>,
}

/// A redo group of the record being built: its object, home ranges (indexing
/// `Scratch::ranges`; none for write-through objects), bytes logged, home lines, and
/// the object's size.
struct GroupInfo {
    key: u64,
    src: Src,
    ranges: core::ops::Range<usize>,
    volume: u64,
    size: u64,
}

/// What a redo group logs: a plan's object, an allocation's or a free's metadata, or
/// the root slot.
#[derive(Clone, Copy)]
enum Src {
    Plan(usize),
    Alloc(usize),
    Free(usize),
    Root,
}

/// A lane's transaction buffers, kept in the lane between transactions so the commit
/// path allocates nothing once they have grown.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The transaction's objects are `objs[..n]`; the rest are cleared slots (with
    /// their write buffers) for the next objects, reused in place.
    objs: Vec<TxObj>,
    n: usize,
    allocs: Vec<Reserved>,
    frees: Vec<Freeing>,
    plans: Vec<Plan>,
    runs: Vec<(u32, u32)>,
    undo: Builder,
    redo: Builder,
    groups: Vec<GroupInfo>,
    ranges: Vec<(u64, u32)>,
    keys: Vec<u64>,
    /// The redo records appended: record number and position in the lane log.
    appended: Vec<(u64, usize)>,
    undo_recs: Vec<(u64, usize)>,
    queued: Vec<(u32, u64)>,
    old: Vec<u8>,
    /// Shadow buffers of past transactions, for reuse: a fresh 64-byte-aligned
    /// allocation per object per transaction was a twentieth of w5.
    bufs: Vec<Buf>,
}

/// Most home lines a commit writes behind: the lane's next commit fence waits for
/// them, and more lines there cost more than a back-pressure round does per line
/// (w3's 16 lines behind were slower; w1's one line faster).
const BEHIND_LINES: u64 = 2;

/// Explicit writes an object of at most [`SHADOW_MAX`] bytes collects in a transaction
/// before it is copied instead (logged by difference, at most one entry per 32 bytes).
pub(crate) const WRITES_MAX: usize = 1024;

/// Shadow buffers a lane keeps, and the largest it keeps.
const SPARE_BUFS: usize = 16;
const SPARE_BUF_MAX: usize = 64 * 1024;

/// A buffer of `len` bytes, from `bufs` when one is kept, for the caller to overwrite
/// whole: its contents are unspecified (a kept one holds an earlier transaction's).
fn take_buf(bufs: &mut Vec<Buf>, len: usize) -> Buf {
    match bufs.pop() {
        Some(mut b) => {
            b.resize(len);
            b
        }
        None => Buf::zeroed(len),
    }
}

/// Keeps `b` in `bufs` for a later [`take_buf`], within the bounds.
fn keep_buf(bufs: &mut Vec<Buf>, b: Option<Buf>) {
    if let Some(b) = b {
        if bufs.len() < SPARE_BUFS && b.lines.capacity() * 64 <= SPARE_BUF_MAX {
            bufs.push(b);
        }
    }
}

impl core::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scratch").finish_non_exhaustive()
    }
}

/// Object slots a lane keeps between transactions.
const SPARE: usize = 64;

impl Scratch {
    /// The transaction's objects.
    fn live(&self) -> &[TxObj] {
        &self.objs[..self.n]
    }

    /// A cleared slot for a new object (reusing a kept one), now live.
    #[inline(always)]
    fn push_obj(&mut self, obj: u64, size: u64, type_num: u32) -> usize {
        if self.n == self.objs.len() {
            self.objs.push(TxObj {
                obj,
                size,
                type_num,
                fresh: None,
                shadow: None,
                pristine: None,
                writes: Vec::new(),
                data: Vec::new(),
                mode: None,
            });
        }
        let o = &mut self.objs[self.n];
        o.obj = obj;
        o.size = size;
        o.type_num = type_num;
        o.fresh = None;
        o.shadow = None;
        o.pristine = None;
        o.writes.clear();
        o.data.clear();
        o.mode = None;
        self.n += 1;
        self.n - 1
    }

    /// Drops live object `i` (the last live one takes its index).
    fn remove_obj(&mut self, i: usize) {
        self.objs.swap(i, self.n - 1);
        self.n -= 1;
    }

    /// Empties everything for the next transaction, keeping memory. It runs right
    /// after a commit fence, where every store waits in the store buffer until the
    /// fence completes and a full buffer stalls: what is already empty is only read.
    #[inline(always)]
    fn clear(&mut self) {
        fn empty<T>(v: &mut Vec<T>) {
            if !v.is_empty() {
                v.clear();
            }
        }
        for o in &mut self.objs[..self.n] {
            // Shadows are per transaction (their buffers are kept for the next ones);
            // write buffers keep their capacity.
            if o.shadow.is_some() || o.pristine.is_some() {
                keep_buf(&mut self.bufs, o.shadow.take());
                keep_buf(&mut self.bufs, o.pristine.take());
            }
        }
        self.n = 0;
        self.objs.truncate(SPARE);
        empty(&mut self.allocs);
        empty(&mut self.frees);
        empty(&mut self.plans);
        empty(&mut self.runs);
        empty(&mut self.groups);
        empty(&mut self.ranges);
        empty(&mut self.keys);
        empty(&mut self.appended);
        empty(&mut self.undo_recs);
        empty(&mut self.queued);
    }
}

/// A transaction on a [`Pool`]. See the module documentation.
pub struct Tx<'p, M: Media> {
    pool: &'p Pool<M>,
    lane: &'p Lane,
    log: spin::MutexGuard<'p, LaneLog>,
    /// The lane's buffers, handed back in `Drop` (boxed: moving a `Tx` stays cheap).
    s: core::mem::ManuallyDrop<alloc::boxed::Box<Scratch>>,
    root: Option<u64>,
    done: bool,
    /// The lanes' turn this transaction started in (`None`: on a lane of the caller's
    /// choosing, outside the turns).
    turn: Option<u64>,
}

impl<M: Media> core::fmt::Debug for Tx<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tx")
            .field("lane", &self.log.idx)
            .field("objects", &self.s.n)
            .finish_non_exhaustive()
    }
}

impl<'p, M: Media> Tx<'p, M> {
    /// On a lane: with a `turn`, the first free one from `start`, else waiting for
    /// `start`; without, lane `start`, waiting for it if busy.
    #[inline(always)]
    pub(crate) fn begin(pool: &'p Pool<M>, start: usize, turn: Option<u64>) -> Self {
        let n = pool.lanes.len();
        let (lane, mut log) = turn
            .and_then(|_| {
                (0..n).find_map(|k| {
                    let lane = &pool.lanes[(start + k) % n];
                    lane.log.try_lock().map(|g| (lane, g))
                })
            })
            .unwrap_or_else(|| {
                let lane = &pool.lanes[start];
                (lane, lane.log.lock())
            });
        if let Some(t) = turn {
            if log.turn != t {
                // The lane's first transaction of this turn: what died since its last
                // turn is given back now, so its free share (thresholds, back-pressure)
                // is what the log really holds.
                log.turn = t;
                log.turn_seq = pool.seq.load(core::sync::atomic::Ordering::Relaxed);
                pool.advance_tail(&mut log, lane, true);
            }
        }
        let s = log.scratch.take().unwrap_or_default();
        Tx {
            pool,
            lane,
            log,
            s: core::mem::ManuallyDrop::new(s),
            root: None,
            done: false,
            turn,
        }
    }

    /// Runs `f` inside this transaction (nested transactions flatten: an `Err` from
    /// `f` aborts the whole transaction when the outer closure returns it).
    pub fn nested<R, E>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, E>) -> Result<R, E> {
        f(self)
    }

    #[inline(always)]
    fn find(&mut self, obj: u64) -> Result<usize, Error> {
        if let Some(i) = self.s.live().iter().position(|o| o.obj == obj) {
            return Ok(i);
        }
        if self.s.frees.iter().any(|f| f.obj == obj) {
            return Err(Error::Freed { obj });
        }
        let info = self.pool.heap.info(obj)?;
        // Its index slot is looked up at commit: fetch it while the transaction runs.
        self.pool.pending.prefetch(obj);
        Ok(self.s.push_obj(obj, info.size, info.type_num))
    }

    fn typed<T: Persistent>(&mut self, p: PPtr<T>) -> Result<usize, Error> {
        let i = self.find(p.raw())?;
        let o = &self.s.objs[i];
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
        let sc = &mut **self.s;
        let o = &mut sc.objs[i];
        if o.shadow.is_none() {
            let mut s = take_buf(&mut sc.bufs, o.size as usize);
            media.read(o.obj as usize, s.bytes_mut());
            let mut pristine = take_buf(&mut sc.bufs, o.size as usize);
            pristine.bytes_mut().copy_from_slice(s.bytes());
            o.pristine = Some(pristine);
            for (off, d) in o.each_write() {
                s.bytes_mut()[off as usize..off as usize + d.len()].copy_from_slice(d);
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
        let o = &mut self.s.objs[i];
        if off as u64 + bytes.len() as u64 > o.size {
            return Err(Error::OutOfBounds {
                obj: o.obj,
                off: off as u64,
                len: bytes.len() as u64,
            });
        }
        // Past WRITES_MAX writes, or more bytes than the object, a copy is cheaper to
        // log (only what differs) and bounds the record; objects updated in place keep
        // their writes (no copy of a large object; a record too large for the log is
        // refused at commit).
        if o.shadow.is_none()
            && o.size <= SHADOW_MAX
            && (o.writes.len() >= WRITES_MAX || o.data.len() + bytes.len() > o.size as usize)
        {
            self.shadow(i);
        }
        let o = &mut self.s.objs[i];
        if let Some(s) = o.shadow.as_mut() {
            s.bytes_mut()[off..off + bytes.len()].copy_from_slice(bytes);
        } else {
            o.writes.push((off as u32, bytes.len() as u32));
            o.data.extend_from_slice(bytes);
            // The home lines are stored after the commit fence; fetching them now
            // overlaps that miss with building and persisting the record.
            prefetch_lines(self.pool.media(), o.obj as usize + off, bytes.len());
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
        let o = &self.s.objs[i];
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
        for (wo, d) in o.each_write() {
            let (ws, we) = (wo as usize, wo as usize + d.len());
            let (s, e) = (ws.max(off), we.min(off + buf.len()));
            if s < e {
                buf[s - off..e - off].copy_from_slice(&d[s - ws..e - ws]);
            }
        }
        Ok(())
    }

    /// Reads the `T` that `p` points to as this transaction sees it.
    pub fn read<T: Persistent>(&mut self, p: PPtr<T>) -> Result<T, Error> {
        let i = self.typed(p)?;
        self.pool.note_read(p.raw());
        if let Some(s) = &self.s.objs[i].shadow {
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
        self.pool.pending.prefetch(r.obj);
        let mut shadow = take_buf(&mut self.s.bufs, size);
        let n = init.len().min(size);
        shadow.bytes_mut()[..n].copy_from_slice(&init[..n]);
        // A new object is zero beyond `init`.
        shadow.bytes_mut()[n..].fill(0);
        let obj = r.obj;
        let fresh = self.s.allocs.len();
        let i = self.s.push_obj(obj, size as u64, type_num);
        let o = &mut self.s.objs[i];
        o.fresh = Some(fresh);
        o.shadow = Some(shadow);
        self.s.allocs.push(r);
        Ok(PPtr::from_raw(obj))
    }

    /// Frees the object `p` points to when the transaction commits.
    pub fn free<T>(&mut self, p: PPtr<T>) -> Result<(), Error> {
        let obj = p.raw();
        if let Some(i) = self.s.live().iter().position(|o| o.obj == obj) {
            let fresh = self.s.objs[i].fresh;
            self.s.remove_obj(i);
            if let Some(a) = fresh {
                // Allocated and freed in this transaction: nothing to log.
                self.pool.heap.cancel(&self.s.allocs[a]);
                self.s.allocs[a].obj = 0;
                return Ok(());
            }
        }
        if self.s.frees.iter().any(|f| f.obj == obj) {
            return Err(Error::Freed { obj });
        }
        self.s.frees.push(self.pool.heap.prepare_free(obj)?);
        self.pool.pending.prefetch(obj);
        Ok(())
    }

    /// Publishes `p` as the pool's root object at commit.
    pub fn set_root<T>(&mut self, p: PPtr<T>) {
        self.root = Some(p.raw());
    }

    /// Forces the persistence mode of `p`'s object in this transaction.
    pub fn set_mode<T>(&mut self, p: PPtr<T>, mode: Mode) -> Result<(), Error> {
        let i = self.find(p.raw())?;
        self.s.objs[i].mode = Some(mode);
        Ok(())
    }
}

/// Makes room for `bytes` of records in a lane log: advances the persisted tail over
/// dead records, and applies back-pressure (coalescing the objects that hold the oldest
/// live records) until they fit. A full log delays a transaction, never fails it, unless
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
        if pool.advance_tail(log, lane, true)
            || log.rewind_empty(pool.media(), &pool.area, &lane.recs)
        {
            continue;
        }
        // Held back by another lane's lazy marks: flush them rather than coalesce live
        // records further on.
        if lane.recs.lock().front_dead() && pool.advance_tail(log, lane, false) {
            continue;
        }
        let finished = pool.rounds_finished();
        if !pool.coalesce_front(log.idx) {
            // Live records with no chain to write them back by: another thread's round
            // took their chains and has not marked them yet. It will; wait for it (a
            // full log delays a transaction, never fails it).
            if pool.rounds_since(finished) {
                core::hint::spin_loop();
                continue;
            }
            return Err(Error::TooLarge {
                bytes,
                lane_bytes: log.len,
            });
        }
    }
}

/// Calls `f(pool offset, bytes)` for every range a redo plan stores in its home.
fn plan_bytes(o: &TxObj, p: &Plan, runs: &[(u32, u32)], mut f: impl FnMut(usize, &[u8])) {
    match p.kind {
        Kind::Redo(_) => {
            let new = o.shadow.as_ref().map_or(&[][..], Buf::bytes);
            for &(off, len) in &runs[p.runs.clone()] {
                f(
                    o.obj as usize + off as usize,
                    &new[off as usize..(off + len) as usize],
                );
            }
        }
        Kind::Writes(_) => {
            for (off, d) in o.each_write() {
                f(o.obj as usize + off as usize, d);
            }
        }
        Kind::Undo | Kind::FreshInPlace => {}
    }
}

/// Prefetches, for writing, the lines of `[at, at + len)` (at most 32 of them).
fn prefetch_lines<M: Media>(media: &M, at: usize, len: usize) {
    for l in arch::line_range(at, len).take(32) {
        media.prefetch_write(l * 64);
    }
}

/// Dirty lines of an object's explicit writes.
fn write_lines(o: &TxObj) -> usize {
    if let [(off, len)] = o.writes[..] {
        return arch::line_range(off as usize, len as usize).len();
    }
    let mut dm = DirtyMap::new(o.size as usize);
    for &(off, len) in &o.writes {
        dm.mark(off as usize, len as usize);
    }
    dm.count()
}

impl<M: Media> Tx<'_, M> {
    /// Step 1 of commit: a plan per changed object (in `s.plans`); returns the bytes
    /// users changed.
    fn plan(&mut self) -> u64 {
        let pool = self.pool;
        let media = pool.media();
        let s = &mut **self.s;
        let mut user_bytes = 0u64;
        for (i, o) in s.objs[..s.n].iter().enumerate() {
            let lines = (o.size as usize).div_ceil(64);
            let first = s.runs.len();
            let plan = |kind: Kind, runs: &mut Vec<(u32, u32)>, undo_new: Option<Vec<u8>>| Plan {
                obj: i,
                kind,
                runs: first..runs.len(),
                undo_new,
            };
            if o.fresh.is_some() {
                user_bytes += o.size;
                if o.size > SHADOW_MAX {
                    s.plans.push(plan(Kind::FreshInPlace, &mut s.runs, None));
                } else {
                    s.runs.push((0, o.size as u32));
                    s.plans
                        .push(plan(Kind::Redo(Mode::Full), &mut s.runs, None));
                }
                continue;
            }
            if let (Some(sh), Some(pr)) = (&o.shadow, &o.pristine) {
                let dirty = DirtyMap::diff(pr.bytes(), sh.bytes());
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
                dirty_runs(pr.bytes(), sh.bytes(), &dirty, 16, &mut s.runs);
                for &(off, len) in &s.runs[first..] {
                    prefetch_lines(media, o.obj as usize + off as usize, len as usize);
                }
                user_bytes += s.runs[first..].iter().map(|r| u64::from(r.1)).sum::<u64>();
                if o.size > SHADOW_MAX {
                    s.plans.push(plan(Kind::Undo, &mut s.runs, None));
                } else if mode == Mode::Full {
                    s.runs.truncate(first);
                    s.runs.push((0, o.size as u32));
                    s.plans.push(plan(Kind::Redo(mode), &mut s.runs, None));
                } else {
                    s.plans.push(plan(Kind::Redo(mode), &mut s.runs, None));
                }
            } else if !o.writes.is_empty() {
                user_bytes += o.writes.iter().map(|w| u64::from(w.1)).sum::<u64>();
                let input = ModeInput {
                    obj: o.obj,
                    size: o.size,
                    type_num: o.type_num,
                    dirty_lines: write_lines(o),
                    lines,
                };
                let mode = o.mode.unwrap_or_else(|| pool.policy.choose(&input));
                if o.size > SHADOW_MAX {
                    // In place: the new bytes are the writes, applied over the old.
                    let mut new = alloc::vec![0u8; o.size as usize];
                    media.read(o.obj as usize, &mut new);
                    for (off, d) in o.each_write() {
                        new[off as usize..off as usize + d.len()].copy_from_slice(d);
                    }
                    s.runs.extend_from_slice(&o.writes);
                    s.plans.push(plan(Kind::Undo, &mut s.runs, Some(new)));
                } else {
                    s.plans.push(plan(Kind::Writes(mode), &mut s.runs, None));
                }
            }
        }
        user_bytes
    }

    /// Step 2 of commit: the undo record (old bytes of in-place objects), if any;
    /// returns whether there is one.
    fn build_undo(&mut self, seq: u64) -> bool {
        let media = self.pool.media();
        let s = &mut **self.s;
        s.undo.reset();
        let mut any = false;
        for p in &s.plans {
            if p.kind != Kind::Undo {
                continue;
            }
            any = true;
            let o = &s.objs[p.obj];
            s.undo.group(o.obj, G_REL, 0);
            for &(off, len) in &s.runs[p.runs.clone()] {
                s.old.clear();
                s.old.resize(len as usize, 0);
                media.read(o.obj as usize + off as usize, &mut s.old);
                s.undo.rel(off, &s.old);
            }
        }
        if any {
            s.undo
                .finish(seq, F_UNDO, false, self.log.idx, self.pool.salt());
        }
        any
    }

    /// Step 2 of commit: the redo record(s) and the group list in `s.groups`.
    fn build_redo(&mut self, seq: u64) {
        let s = &mut **self.s;
        let b = &mut s.redo;
        b.reset();
        for (pi, p) in s.plans.iter().enumerate() {
            let Some(mode) = p.kind.mode() else {
                continue;
            };
            let o = &s.objs[p.obj];
            b.group(o.obj, G_REL, mode as u8);
            let r0 = s.ranges.len();
            let mut volume = 0u64;
            let ranges = &mut s.ranges;
            plan_bytes(o, p, &s.runs, |at, d| {
                b.rel((at - o.obj as usize) as u32, d);
                volume += d.len() as u64;
                // Write-through objects are durable at commit: nothing to write back.
                if mode != Mode::CriticalSection {
                    ranges.push((at as u64, d.len() as u32));
                }
            });
            s.groups.push(GroupInfo {
                key: o.obj,
                src: Src::Plan(pi),
                ranges: r0..s.ranges.len(),
                volume,
                size: o.size,
            });
        }
        let metas = s
            .allocs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.obj != 0)
            .map(|(i, a)| {
                (
                    Src::Alloc(i),
                    a.obj,
                    a.hdr_off,
                    &a.header,
                    &a.chunk_words[..],
                )
            })
            .chain(s.frees.iter().enumerate().map(|(i, f)| {
                (
                    Src::Free(i),
                    f.obj,
                    f.hdr_off,
                    &f.header,
                    &f.chunk_words[..],
                )
            }));
        for (src, obj, hdr_off, header, words) in metas {
            b.group(obj, G_ABS, 0);
            b.abs(hdr_off, header);
            let r0 = s.ranges.len();
            s.ranges.push((hdr_off, 16));
            for &(off, w) in words {
                b.abs(off, &w.to_le_bytes());
                s.ranges.push((off, 8));
            }
            s.groups.push(GroupInfo {
                key: obj,
                src,
                ranges: r0..s.ranges.len(),
                volume: 16 + 8 * words.len() as u64,
                size: 16,
            });
        }
        if let Some(r) = self.root {
            b.group(ROOT_SLOT as u64, G_ABS, 0);
            b.abs(ROOT_SLOT as u64, &r.to_le_bytes());
            let r0 = s.ranges.len();
            s.ranges.push((ROOT_SLOT as u64, 8));
            s.groups.push(GroupInfo {
                key: ROOT_SLOT as u64,
                src: Src::Root,
                ranges: r0..s.ranges.len(),
                volume: 8,
                size: 8,
            });
        }
        b.finish(seq, 0, true, self.log.idx, self.pool.salt());
    }

    /// Commits (module docs). On `Err` nothing was written and the transaction aborts.
    #[allow(clippy::too_many_lines)] // one protocol, step by step, reads best in one place
    pub(crate) fn commit(mut self) -> Result<(), Error> {
        if let Some((i, mode)) = self.small() {
            return self.commit_small(i, mode);
        }
        let pool = self.pool;
        let media = pool.media();
        let salt = pool.salt();
        let lane = self.log.idx;

        // 1. What changed, and how each object is made durable.
        let user_bytes = self.plan();
        if self.s.plans.is_empty()
            && self.s.allocs.iter().all(|a| a.obj == 0)
            && self.s.frees.is_empty()
            && self.root.is_none()
        {
            self.done = true;
            return Ok(());
        }

        // 2. Build the undo and redo records in DRAM.
        let seq = pool.next_seq();
        let has_undo = self.build_undo(seq);
        self.build_redo(seq);

        // 3. Room for everything at once (plus one padding record), so no append below
        //    can fail halfway.
        let s = &mut **self.s;
        let (undo_bytes, undo_largest) = if has_undo {
            (s.undo.bytes(), s.undo.largest())
        } else {
            (0, 0)
        };
        let total = undo_bytes + s.redo.bytes();
        let largest = undo_largest.max(s.redo.largest());
        make_room(pool, &mut self.log, self.lane, total + largest)?;
        self.done = true;

        let mut lines = 0u64;
        let mut fences = 0u64;
        // In-place writes must not be overwritten by a replay of older records: write
        // those objects back and make their dead-marks durable first.
        s.keys.clear();
        s.keys.extend(
            s.plans
                .iter()
                .filter(|p| matches!(p.kind, Kind::Undo | Kind::FreshInPlace))
                .map(|p| s.objs[p.obj].obj),
        );
        if !s.keys.is_empty() {
            pool.coalesce_keys(&s.keys, Trigger::Explicit, true);
        }
        // 4. In-place objects: undo first, then their new bytes.
        if has_undo {
            for k in 0..s.undo.parts() {
                let (p, _) = s.undo.part(k);
                let (recno, pos) = self.log.append(media, &self.lane.recs, p, 1, &[], seq);
                s.undo_recs.push((recno, pos));
                lines += (p.len() / LINE) as u64;
            }
            if crate::keep_step(5) {
                media.fence();
            }
            for p in &s.plans {
                if p.kind != Kind::Undo {
                    continue;
                }
                let o = &s.objs[p.obj];
                let new = match &p.undo_new {
                    Some(n) => &n[..],
                    None => o.shadow.as_ref().map_or(&[][..], Buf::bytes),
                };
                for &(off, len) in &s.runs[p.runs.clone()] {
                    let at = o.obj as usize + off as usize;
                    media.write(at, &new[off as usize..(off + len) as usize]);
                    media.flush(at, len as usize);
                    lines += arch::line_range(at, len as usize).len() as u64;
                }
            }
            media.fence();
            fences += 2;
        }
        let mut fresh_in_place = false;
        for p in &s.plans {
            if p.kind == Kind::FreshInPlace {
                let o = &s.objs[p.obj];
                media.write_nt(
                    o.obj as usize,
                    o.shadow.as_ref().map_or(&[][..], Buf::bytes),
                );
                fresh_in_place = true;
            }
        }
        if fresh_in_place {
            media.fence();
            fences += 1;
        }

        if !crate::keep_step(2) {
            for p in &s.plans {
                plan_bytes(&s.objs[p.obj], p, &s.runs, |at, d| {
                    media.write(at, d);
                    media.flush(at, d.len());
                });
            }
        }
        if !crate::keep_step(6) {
            for p in &s.plans {
                if p.kind.mode() == Some(Mode::CriticalSection) {
                    plan_bytes(&s.objs[p.obj], p, &s.runs, |at, d| {
                        media.write(at, d);
                        media.flush(at, d.len());
                    });
                }
            }
        }
        // 5. The redo record.
        for k in 0..s.redo.parts() {
            let (p, _) = s.redo.part(k);
            let live = u64::from_le_bytes(p[LIVE_OFF..LIVE_OFF + 8].try_into().unwrap_or([0; 8]));
            s.keys.clear();
            s.keys.extend(
                s.groups
                    .iter()
                    .skip(k * MAX_GROUPS)
                    .take(MAX_GROUPS)
                    .map(|g| g.key),
            );
            let rec = self
                .log
                .append(media, &self.lane.recs, p, live, &s.keys, seq);
            s.appended.push(rec);
            lines += (p.len() / LINE) as u64;
        }
        // 6. One fence: committed.
        if crate::keep_step(1) {
            media.fence();
        }
        fences += 1;
        media.crash_point("pmrt.tx.committed");
        if let Some((k, g)) = self.log.behind.take() {
            pool.retire_behind(k, g, &self.lane.stats);
        }

        // 7. Write-through objects: stored in place and made durable now (after the
        //    record: stored before it, a torn record would leave them half new with
        //    nothing to roll either way).
        let mut through = false;
        for p in &s.plans {
            if p.kind.mode() == Some(Mode::CriticalSection) {
                plan_bytes(&s.objs[p.obj], p, &s.runs, |at, d| {
                    media.write(at, d);
                    media.flush(at, d.len());
                    lines += arch::line_range(at, d.len()).len() as u64;
                });
                through = true;
            }
        }
        if through {
            media.fence();
            fences += 1;
        }
        // 8. The undo records are dead now that the commit record is durable.
        if has_undo {
            for &(_, pos) in &s.undo_recs {
                media.write_u64(
                    self.log.base + pos + LIVE_OFF,
                    crate::record::live_tag(seq, lane, salt),
                );
                media.flush(self.log.base + pos + LIVE_OFF, 8);
            }
            media.fence();
            fences += 1;
            let mut recs = self.lane.recs.lock();
            for &(recno, _) in &s.undo_recs {
                if let Some(r) = recs.get_mut(recno) {
                    r.live = 0;
                }
            }
        }

        // 9. The homes of deferred objects and metadata (in the cache: coalescing writes
        //    them back), each stored under its object's index lock together with the
        //    chain and the schedule (one lookup per group; taking the lock before the
        //    stores keeps its atomic from waiting for them); then the freed objects the
        //    chains now hold back.
        let view = pool.commit_view(self.log.free_q8(), seq);
        let ls = &self.lane.stats;
        let mut batch = crate::coalesce::Batch::new();
        let mut logged = 0u64;
        for (i, g) in s.groups.iter().enumerate() {
            let (recno, pos) = s.appended[i / MAX_GROUPS];
            let gr = GroupRef::new(lane, recno, (i % MAX_GROUPS) as u8, pos);
            let c = Committed {
                volume: g.volume,
                lines: s.ranges[g.ranges.clone()]
                    .iter()
                    .map(|&(o, l)| arch::line_range(o as usize, l as usize).len() as u64)
                    .sum(),
                size: g.size,
            };
            logged += g.volume;
            let ranges = &s.ranges[g.ranges.clone()];
            let root = self.root;
            let sched = pool.pending.with(g.key, |st| {
                match g.src {
                    Src::Plan(pi) => {
                        let p = &s.plans[pi];
                        if matches!(p.kind.mode(), Some(Mode::Delta | Mode::Full)) {
                            plan_bytes(&s.objs[p.obj], p, &s.runs, |at, d| media.write(at, d));
                        }
                    }
                    Src::Alloc(i) => {
                        pool.heap.store_reserved(&s.allocs[i]);
                    }
                    Src::Free(i) => {
                        pool.heap.store_freeing(&s.frees[i]);
                    }
                    Src::Root => media.write_u64(ROOT_SLOT, root.unwrap_or(0)),
                }
                chain_group::<M>(st, g.key, gr, ranges.iter().copied(), &c, &view, ls)
            });
            route(pool, sched, g.key, &view, &mut batch, &mut s.queued);
        }
        for f in s.frees.drain(..) {
            pool.pending
                .with(f.obj, |p| p.chain.freeing = Some(alloc::boxed::Box::new(f)));
        }
        count(&self.lane.stats, [lines, fences, logged, user_bytes]);
        self.close(&view, &mut batch);
        Ok(())
    }

    /// The single object a *small* transaction changed (its index among the
    /// transaction's objects) and its mode, if this is one: an existing object of at
    /// most [`SHADOW_MAX`] bytes changed only by explicit writes and redo-logged (Delta
    /// or Full: the writes are logged as they are), nothing allocated, freed or
    /// published; other objects only read (their reads were counted as they happened).
    /// Most updates are small; they commit through [`Tx::commit_small`]. A mode the
    /// policy chose is kept for the general path, which then does not ask again.
    #[inline(always)]
    fn small(&mut self) -> Option<(usize, Mode)> {
        let s = &mut **self.s;
        let changed = |o: &TxObj| o.fresh.is_some() || o.shadow.is_some() || !o.writes.is_empty();
        let mut written = s.objs[..s.n].iter().enumerate().filter(|(_, o)| changed(o));
        let i = written.next()?.0;
        if written.next().is_some() {
            return None;
        }
        let o = &mut s.objs[i];
        if o.fresh.is_some()
            || o.shadow.is_some()
            || o.size > SHADOW_MAX
            || self.root.is_some()
            || !s.frees.is_empty()
            || s.allocs.iter().any(|a| a.obj != 0)
        {
            return None;
        }
        let mode = o.mode.unwrap_or_else(|| {
            self.pool.policy.choose(&ModeInput {
                obj: o.obj,
                size: o.size,
                type_num: o.type_num,
                dirty_lines: write_lines(o),
                lines: (o.size as usize).div_ceil(64),
            })
        });
        o.mode = Some(mode);
        (mode != Mode::CriticalSection).then_some((i, mode))
    }

    /// Commits a small transaction ([`Tx::small`]): the protocol of [`Tx::commit`] for
    /// one redo group, without its plans and lists. The record is laid out in one pass
    /// and its place reserved; the object's index slot is locked, the record stored,
    /// the chain extended and the schedule run while the record drains; then the
    /// fence, and the homes stored under the same lock (one lookup of the slot).
    fn commit_small(mut self, i: usize, mode: Mode) -> Result<(), Error> {
        let pool = self.pool;
        let media = pool.media();
        let lane = self.log.idx;
        let s = &mut **self.s;
        let o = &s.objs[i];
        let key = o.obj;
        let seq = pool.next_seq();
        let rec = s
            .redo
            .single(key, mode as u8, o.each_write(), seq, lane, pool.salt());
        // Room for the record and a padding record before it (as `commit`).
        make_room(pool, &mut self.log, self.lane, 2 * rec.len())?;
        self.done = true;
        if !crate::keep_step(2) {
            for (off, d) in o.each_write() {
                media.write(key as usize + off as usize, d);
                media.flush(key as usize + off as usize, d.len());
            }
        }
        let live = crate::record::u64_at(rec, LIVE_OFF);
        let (recno, pos) = self
            .log
            .reserve(media, &self.lane.recs, rec.len(), live, &[key], seq);
        let lines = (rec.len() / LINE) as u64;
        let view = pool.commit_view(self.log.free_q8(), seq);
        // The object's index lock is taken before the record's non-temporal stores:
        // after them, its locked instruction would wait for them as the fence does.
        // Taken here, the chain and the schedule are worked out while the stores
        // drain, and nothing after the fence waits until the next locked instruction
        // (on this EPYC an `sfence` holds back later stores, not later work).
        let mut entry = pool.pending.lock(key);
        self.log.store(media, pos, rec);
        let (mut volume, mut home_lines) = (0u64, 0u64);
        for (off, d) in o.each_write() {
            volume += d.len() as u64;
            home_lines += arch::line_range(key as usize + off as usize, d.len()).len() as u64;
        }
        let c = Committed {
            volume,
            lines: home_lines,
            size: o.size,
        };
        let gr = GroupRef::new(lane, recno, 0, pos);
        let st = entry.state();
        // Nothing pending and untouched for a while: its lines will not be written
        // again before back-pressure would write them back, so write them behind.
        let behind = !view.cfg.eager
            && view.cfg.behind_age != 0
            && home_lines <= BEHIND_LINES
            && st.chain.is_empty()
            && view.now.saturating_sub(st.last_tick) >= u64::from(view.cfg.behind_age);
        let ranges = o
            .writes
            .iter()
            .map(|&(off, len)| (key + u64::from(off), len));
        let sched = chain_group::<M>(st, key, gr, ranges, &c, &view, &self.lane.stats);
        count(&self.lane.stats, [lines, 1, volume, volume]);
        if crate::keep_step(1) {
            media.fence();
        }
        media.crash_point("pmrt.tx.committed");
        for (off, d) in o.each_write() {
            media.write(key as usize + off as usize, d);
        }
        drop(entry);
        // Stores after the fence wait in the store buffer until it completes, and a
        // full buffer stalls: test before taking.
        if self.log.behind.is_some() {
            if let Some((k, g)) = self.log.behind.take() {
                pool.retire_behind(k, g, &self.lane.stats);
            }
        }
        if behind {
            for (off, d) in o.each_write() {
                media.flush(key as usize + off as usize, d.len());
            }
            self.log.behind = Some((key, gr));
            if !crate::keep_step(7) {
                if let Some((k, g)) = self.log.behind.take() {
                    pool.retire_behind(k, g, &self.lane.stats);
                }
            }
        }
        let mut batch = crate::coalesce::Batch::new();
        route(pool, sched, key, &view, &mut batch, &mut s.queued);
        self.close(&view, &mut batch);
        Ok(())
    }

    /// The end of both commit paths: the queue and this commit's coalescing batch,
    /// then the lane released and the batch written back.
    #[inline(always)]
    fn close(self, view: &CommitView, batch: &mut Batch) {
        let pool = self.pool;
        let why = if view.cfg.eager {
            Trigger::Eager
        } else {
            pool.take_batch(&self.s.queued, batch, view)
        };
        // A lane whose log is nearly full of this turn's records has nothing older left
        // to give back: the next lane's records are now the oldest.
        if let Some(t) = self.turn {
            if view.free_q8 < view.cfg.lane_turn && self.log.front_seq >= self.log.turn_seq {
                pool.next_turn(t);
            }
        }
        // Coalesce with the lane released: other transactions may use it meanwhile.
        drop(self);
        if !batch.is_empty() {
            pool.coalesce_keys(batch, why, false);
        }
    }
}

/// Counts a commit in its lane's counters: `[record lines, fences, bytes logged, bytes
/// users changed]`.
fn count(ls: &LaneStats, counts: [u64; 4]) {
    LaneStats::add(&ls.commits, 1);
    LaneStats::add(&ls.commit_lines, counts[0]);
    LaneStats::add(&ls.commit_fences, counts[1]);
    LaneStats::add(&ls.logged_bytes, counts[2]);
    LaneStats::add(&ls.user_bytes, counts[3]);
}

/// Adds a committed group to `st`'s chain with the home ranges it leaves to write
/// back, and schedules coalescing (both commit paths, under the object's index lock).
#[inline(always)]
fn chain_group<M: Media>(
    st: &mut ObjState,
    key: u64,
    gr: GroupRef,
    ranges: impl Iterator<Item = (u64, u32)>,
    c: &Committed,
    view: &CommitView,
    ls: &LaneStats,
) -> Sched {
    st.chain.groups.push(gr);
    for (o, l) in ranges {
        st.chain.add_range(key, o, l);
    }
    st.chain.count += 1;
    st.chain.volume += c.volume;
    Pool::<M>::schedule(st, c, view, ls)
}

/// Acts on `key`'s schedule: into this commit's `batch` (volume threshold met, or
/// eager coalescing), into the queue (`queued`, count threshold met), or nothing.
#[inline(always)]
fn route<M: Media>(
    pool: &Pool<M>,
    sched: Sched,
    key: u64,
    view: &CommitView,
    batch: &mut Batch,
    queued: &mut Vec<(u32, u64)>,
) {
    match sched {
        Sched::Now => {
            if batch.push(key).is_err() {
                queued.push((u32::MAX, key));
            }
        }
        Sched::Queue(freq) => queued.push((freq, key)),
        Sched::Wait => {}
    }
    if view.cfg.eager && !batch.contains(&key) && batch.push(key).is_err() {
        pool.coalesce_keys(batch, Trigger::Eager, false);
        batch.clear();
        let _ = batch.push(key);
    }
}

impl<M: Media> Drop for Tx<'_, M> {
    fn drop(&mut self) {
        if !self.done {
            for a in &self.s.allocs {
                if a.obj != 0 {
                    self.pool.heap.cancel(a);
                }
            }
            LaneStats::add(&self.lane.stats.aborts, 1);
        }
        // SAFETY: `self.s` is not used again: this is the end of `drop`.
        let mut s = unsafe { core::mem::ManuallyDrop::take(&mut self.s) };
        s.clear();
        self.log.scratch = Some(s);
    }
}
