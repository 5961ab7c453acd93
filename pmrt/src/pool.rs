//! `Pool`: a heap plus the runtime (logs, pending chains, coalescing).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use arch::Media;
use pmalloc::{CreateOptions, Heap, OpenOptions, OpenReport, PPtr, Persistent};

use crate::area::{Area, SEQ_BLOCK};
use crate::coalesce::Coalescer;
use crate::error::{Error, PoolError, TxError};
use crate::log::{Lane, LaneLog, LaneRecs, LaneStats};
use crate::mode::{ModePolicy, StaticPolicy};
use crate::pending::PendingIndex;
use crate::recover::RecoveryReport;
use crate::tx::Tx;

/// How to create a pool.
#[derive(Debug, Clone)]
pub struct PoolOptions<'a> {
    /// Heap options (layout name, UUID, lanes of the allocator, runtime-area size).
    pub heap: CreateOptions<'a>,
    /// Transaction lanes (threads committing at once without waiting).
    pub lanes: u32,
}

impl<'a> PoolOptions<'a> {
    /// Defaults for `layout` and `uuid`: 8 transaction lanes.
    pub fn new(layout: &'a str, uuid: [u8; 16]) -> Self {
        PoolOptions {
            heap: CreateOptions::new(layout, uuid),
            lanes: 8,
        }
    }
}

/// A persistent pool with failure-atomic transactions.
pub struct Pool<M: Media> {
    pub(crate) heap: Heap<M>,
    /// The heap's claim: its atomic ops with a destination are the pool's alone
    /// ([`Pool::alloc_into`], [`Pool::free_from`]).
    claim: pmalloc::Claim,
    pub(crate) area: Area,
    pub(crate) lanes: Box<[Lane]>,
    pub(crate) seq: AtomicU64,
    /// Whose turn it is: the turn's number (high 32 bits, counting up) and its offset
    /// (low 32 bits, below the lane count). Transactions start on their usual lane plus
    /// the offset; a lane whose log is nearly full of the turn's own records starts the
    /// next ([`crate::CoalesceConfig::lane_turn`]). The number tells a lane that a turn
    /// is new to it even when the offset has come round again.
    pub(crate) turn: AtomicU64,
    /// Sequence numbers below this are reserved durably (`area::SEQ_OFF`); the next
    /// one at or above it persists a new reservation first.
    seq_reserved: AtomicU64,
    seq_lock: spin::Mutex<()>,
    pub(crate) pending: PendingIndex,
    pub(crate) coalescer: Coalescer,
    pub(crate) policy: Box<dyn ModePolicy>,
}

impl<M: Media> core::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("heap", &self.heap)
            .field("area", &self.area)
            .finish_non_exhaustive()
    }
}

impl<M: Media> Pool<M> {
    /// Formats `media` as a pool with an empty runtime area.
    pub fn create(media: M, opts: &PoolOptions<'_>) -> Result<Self, PoolError> {
        let heap = Heap::create(media, &opts.heap).map_err(PoolError::Create)?;
        let (off, len) = heap.runtime_area();
        let area = Area::compute(off, len, opts.lanes).map_err(PoolError::Area)?;
        area.format(heap.media(), heap.salt());
        Ok(Self::assemble(heap, area, &[], 1, SEQ_BLOCK))
    }

    /// Opens the pool on `media` and recovers it: the heap's own recovery, then the
    /// runtime's (replaying committed transactions not yet written back, rolling back
    /// uncommitted in-place ones). Returns what both found.
    pub fn open(
        media: M,
        opts: &OpenOptions<'_>,
    ) -> Result<(Self, OpenReport, RecoveryReport), PoolError> {
        let (heap, heap_report) = Heap::open(media, opts).map_err(PoolError::Open)?;
        let (off, len) = heap.runtime_area();
        let area = Area::open(heap.media(), off, len, heap.salt()).map_err(PoolError::Area)?;
        let mut r = crate::recover::recover(&heap, &area);
        let (media, salt) = (heap.media(), heap.salt());
        // Sequence numbers must grow across sessions: a scan that runs past the newest
        // record meets older records, and stops only because their numbers are lower.
        // Every number issued so far is below the persisted reservation; this session
        // starts there. If the reservation cannot be trusted (damaged, missing, below a
        // scanned record, or about to overflow), the logs are cleared (recovery is done
        // with them) and numbering starts over.
        let start = area
            .reserved_seq(media, salt)
            .filter(|&s| s > r.max_seq && s.checked_add(2 * SEQ_BLOCK).is_some())
            .unwrap_or_else(|| {
                area.clear_logs(media);
                r.report.seq_reset = true;
                1
            });
        let reserved = (start + SEQ_BLOCK) & !0xFFFF;
        area.reserve_seq(media, salt, reserved);
        Ok((
            Self::assemble(heap, area, &r.heads, start, reserved),
            heap_report,
            r.report,
        ))
    }

    fn assemble(heap: Heap<M>, area: Area, heads: &[usize], seq: u64, reserved: u64) -> Self {
        let coalescer = Coalescer::default();
        if heap.media().info().eadr {
            coalescer
                .behind_age
                .store(crate::coalesce::BEHIND_AGE_EADR, Relaxed);
        }
        let lanes: Vec<Lane> = (0..area.lanes)
            .map(|k| {
                let pos = heads.get(k as usize).copied().unwrap_or(0);
                Lane {
                    log: spin::Mutex::new(LaneLog::new(&area, k, pos, heap.salt())),
                    recs: spin::Mutex::new(LaneRecs::default()),
                    stats: LaneStats::default(),
                }
            })
            .collect();
        let claim = heap
            .claim()
            .expect("a heap just created or opened is unclaimed");
        Pool {
            heap,
            claim,
            area,
            lanes: lanes.into_boxed_slice(),
            seq: AtomicU64::new(seq),
            turn: AtomicU64::new(0),
            seq_reserved: AtomicU64::new(reserved),
            seq_lock: spin::Mutex::new(()),
            pending: PendingIndex::new(),
            coalescer,
            policy: Box::new(StaticPolicy::default()),
        }
    }

    /// Replaces the mode policy (the controller's hook).
    pub fn set_policy(&mut self, policy: Box<dyn ModePolicy>) {
        self.policy = policy;
    }

    /// Writes everything back, empties the logs and closes the heap; returns the media.
    pub fn close(self) -> M {
        self.coalesce_all();
        self.heap.close()
    }

    /// The heap, for iteration, statistics and checks. The pool claims it
    /// ([`Heap::claim`]): its atomic ops that change pool bytes transactions may have
    /// logged (`alloc_into`, `free_from`, `free`) answer `Claimed` here; use
    /// [`Pool::alloc_into`] and [`Pool::free_from`], which write those objects back
    /// first, and free inside transactions (`Tx::free`).
    pub fn heap(&self) -> &Heap<M> {
        &self.heap
    }

    /// `pmalloc`'s atomic allocation and publication ([`Heap::alloc_into`]) into a word
    /// of this pool. The word's object (or the root slot) is written back first, with
    /// its dead marks durable, so that no record of an earlier transaction can replay
    /// over the publication after a crash. Costs a coalescing round of that object on
    /// top of the op's own fences: nothing more when no transaction left the object a
    /// pending record and no dead mark waits to be made durable, one fence when only
    /// marks wait, two when the object had pending records.
    pub fn alloc_into(
        &self,
        dest: u64,
        size: usize,
        align: usize,
        type_num: u32,
        init: pmalloc::Init<'_>,
    ) -> Result<PPtr<()>, pmalloc::AllocError> {
        self.heap.alloc_into_claimed(
            &self.claim,
            dest,
            size,
            align,
            type_num,
            init,
            |container| self.write_back(container, None),
        )
    }

    /// `pmalloc`'s atomic free and clear ([`Heap::free_from`]) of a word of this pool.
    /// The word's object and the object it frees are written back first, as
    /// [`Pool::alloc_into`] does: the word for the reason given there, the freed object
    /// because its space is reusable as soon as this returns, and a record of an
    /// earlier transaction replaying into whatever reuses it would corrupt that.
    pub fn free_from(&self, dest: u64) -> Result<(), pmalloc::FreeError> {
        self.heap
            .free_from_claimed(&self.claim, dest, |container, target| {
                self.write_back(container, Some(target));
            })
    }

    /// Writes back the object holding an atomic op's destination (`None`: the root
    /// slot, under its own key) and the object it frees, if any, making every dead
    /// mark durable, as an in-place write does. The heap calls it once it has checked
    /// the destination, before the op.
    fn write_back(&self, container: Option<u64>, target: Option<u64>) {
        let key = container.unwrap_or(pmalloc::layout::ROOT_SLOT as u64);
        let keys = [key, target.unwrap_or(key)];
        let n = 1 + usize::from(keys[1] != key);
        self.coalesce_keys(&keys[..n], crate::coalesce::Trigger::Explicit, true);
    }

    /// The runtime area layout.
    pub fn area(&self) -> &Area {
        &self.area
    }

    /// Runs `f` as a failure-atomic transaction: its changes become visible together
    /// when it returns `Ok` (one fence for redo-logged objects), or not at all when it
    /// returns `Err` or unwinds. Nested transactions flatten through [`Tx::nested`].
    pub fn transaction<R, E>(
        &self,
        f: impl FnOnce(&mut Tx<'_, M>) -> Result<R, E>,
    ) -> Result<R, TxError<E>> {
        let turn = self.turn.load(Relaxed);
        Self::run(Tx::begin(self, self.lane_index(turn), Some(turn)), f)
    }

    /// As [`Pool::transaction`], on lane `lane % lanes` (for example one lane per CPU,
    /// so a thread's transactions keep to one log). Waits if the lane is busy. Such a
    /// transaction neither follows nor moves the lanes' turn.
    pub fn transaction_in<R, E>(
        &self,
        lane: usize,
        f: impl FnOnce(&mut Tx<'_, M>) -> Result<R, E>,
    ) -> Result<R, TxError<E>> {
        Self::run(Tx::begin(self, lane % self.lanes.len(), None), f)
    }

    fn run<R, E>(
        mut tx: Tx<'_, M>,
        f: impl FnOnce(&mut Tx<'_, M>) -> Result<R, E>,
    ) -> Result<R, TxError<E>> {
        match f(&mut tx) {
            Ok(r) => {
                tx.commit().map_err(TxError::Commit)?;
                Ok(r)
            }
            Err(e) => Err(TxError::Aborted(e)),
        }
    }

    /// Reads the `T` that `p` points to (outside a transaction: the committed state).
    pub fn read<T: Persistent>(&self, p: PPtr<T>) -> Result<T, Error> {
        Ok(self.heap.get(p)?)
    }

    /// Reads bytes of an object.
    pub fn read_bytes<T: Persistent>(
        &self,
        p: PPtr<T>,
        off: usize,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        Ok(self.heap.read_bytes(p, off, buf)?)
    }

    /// The root object, if one was published.
    pub fn root<T: Persistent>(&self) -> Option<PPtr<T>> {
        self.heap
            .root()
            .map(PPtr::cast)
            .filter(|p: &PPtr<T>| self.heap.validate(*p).is_ok())
    }

    /// The root object, created from `init` in a transaction if there is none yet.
    pub fn root_or_init<T: Persistent>(&self, init: impl FnOnce() -> T) -> Result<PPtr<T>, Error> {
        if let Some(r) = self.root::<T>() {
            return Ok(r);
        }
        self.transaction(|tx| {
            let p = tx.alloc(init())?;
            tx.set_root(p);
            Ok::<_, Error>(p)
        })
        .map_err(Error::from)
    }

    /// The next sequence number, persisting a new reservation first when it reaches
    /// the current one (once per `SEQ_BLOCK` transactions).
    #[inline(always)]
    pub(crate) fn next_seq(&self) -> u64 {
        let s = self.seq.fetch_add(1, Relaxed);
        if s >= self.seq_reserved.load(Acquire) {
            let _g = self.seq_lock.lock();
            let r = self.seq_reserved.load(Acquire);
            if s >= r {
                let next = (s + SEQ_BLOCK) & !0xFFFF;
                self.area.reserve_seq(self.media(), self.salt(), next);
                self.seq_reserved.store(next, Release);
            }
        }
        s
    }

    pub(crate) fn media(&self) -> &M {
        self.heap.media()
    }

    pub(crate) fn salt(&self) -> u64 {
        self.heap.salt()
    }

    /// Picks a lane for a transaction: the caller's usual one (its stack's hash), moved
    /// on by the offset of the lanes' turn `turn` (see `Pool::turn`).
    pub(crate) fn lane_index(&self, turn: u64) -> usize {
        let marker = 0u8;
        let a = (core::ptr::addr_of!(marker) as usize >> 21) as u64;
        let n = self.lanes.len();
        // The hash's top 32 bits scaled to the lane count (a multiply, not a divide).
        let k = (((a.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) * n as u64) >> 32) as usize;
        let k = k + (turn as u32) as usize;
        if k >= n {
            k - n
        } else {
            k
        }
    }

    /// Ends turn `turn` (its lane has nothing older than the turn left to give back):
    /// every transaction from now on starts one lane further. A no-op if another lane
    /// ended it first.
    pub(crate) fn next_turn(&self, turn: u64) {
        let off = turn as u32 + 1;
        let off = if off as usize >= self.lanes.len() {
            0
        } else {
            off
        };
        let next = ((turn >> 32).wrapping_add(1) << 32) | u64::from(off);
        let _ = self.turn.compare_exchange(turn, next, Relaxed, Relaxed);
    }

    /// Statistics since open.
    pub fn stats(&self) -> PoolStats {
        let sum = |f: fn(&LaneStats) -> &AtomicU64| -> u64 {
            self.lanes.iter().map(|l| f(&l.stats).load(Relaxed)).sum()
        };
        let max = |f: fn(&LaneStats) -> &AtomicU64| -> u64 {
            self.lanes
                .iter()
                .map(|l| f(&l.stats).load(Relaxed))
                .max()
                .unwrap_or(0)
        };
        let (pending_objects, pending_bytes) = self.pending.totals();
        let mut coalescing = self.coalescer.stats();
        coalescing.by_count = sum(|s| &s.by_count);
        coalescing.by_volume = sum(|s| &s.by_volume);
        coalescing.lines_eager = sum(|s| &s.lines_eager);
        coalescing.pending_hwm = max(|s| &s.pending_hwm);
        coalescing.over_threshold_max = max(|s| &s.over_threshold_max);
        coalescing.largest_record = max(|s| &s.largest_record);
        coalescing.written_behind = sum(|s| &s.behind);
        coalescing.lines_written_back += sum(|s| &s.behind_lines);
        coalescing.objects += coalescing.written_behind;
        PoolStats {
            commits: sum(|s| &s.commits),
            aborts: sum(|s| &s.aborts),
            commit_lines_durable: sum(|s| &s.commit_lines),
            commit_fences: sum(|s| &s.commit_fences),
            logged_bytes: sum(|s| &s.logged_bytes),
            user_bytes: sum(|s| &s.user_bytes),
            pending_objects,
            pending_bytes,
            coalescing,
        }
    }
}

/// What a pool did since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Committed transactions.
    pub commits: u64,
    /// Aborted transactions.
    pub aborts: u64,
    /// Lines commits made durable: log records (non-temporal stores), write-through
    /// homes and fresh objects (flushed); home write-back by coalescing is counted in
    /// `coalescing`.
    pub commit_lines_durable: u64,
    /// Fences issued by commits.
    pub commit_fences: u64,
    /// Data bytes logged.
    pub logged_bytes: u64,
    /// Bytes users changed (dirty runs before padding, writes).
    pub user_bytes: u64,
    /// Objects with pending chains now.
    pub pending_objects: u64,
    /// Bytes pending now.
    pub pending_bytes: u64,
    /// Coalescing statistics.
    pub coalescing: crate::coalesce::CoalesceStats,
}
