//! In-pool coalescing of redo records (the second seed, with a persistent object as the
//! "data page" and the lane logs as the "storage node").
//!
//! After a commit the object's home lines are updated in the cache but not flushed; its
//! log groups stay in its *pending chain*. Coalescing flushes the home lines once for
//! many transactions, then marks the groups dead so their log space can be reclaimed.
//!
//! * **Size monitor** ([`SizeMonitor`]): per object, running mean and variance (fixed
//!   point, Welford) of record sizes, split into small field updates and large
//!   rewrites.
//! * **Threshold calculator** ([`volume_threshold`]): the volume threshold from the
//!   mean, the variance, the count threshold, free log space and the read/write ratio.
//! * **Scheduler**: an object is queued when its record count reaches the count
//!   threshold OR its volume reaches its volume threshold. The queue is ordered by
//!   access frequency (hotter first) and bounded (`heapless`). A volume trigger is
//!   served at once, in the same commit, so no object's pending volume exceeds its
//!   threshold by more than one record; count triggers wait for a batch (one fence
//!   shared by many objects). The queue also drains on `Pool::coalesce` and when a
//!   log runs short of space (back-pressure): a full log delays a transaction, never
//!   fails it.
//!
//! Marking groups dead is lazy: the live word is updated in the cache only and the
//! record is listed. Durability is paid where correctness needs it: before a lane's
//! tail moves past dead records, the listed marks of *other* lanes are flushed (one of
//! them may be an older record of an object, or of memory, whose newer record the tail
//! passes, and an older group must never outlive a newer reclaimed one; the lane's own
//! remaining records cannot be, as a lane's records are in commit order), and before
//! any in-place write (undo-logged or fresh large objects) every listed mark is flushed
//! and fenced.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

use arch::Media;
use pmalloc::Freeing;

use crate::log::{Lane, LaneLog, LaneStats};
use crate::pending::{self, GroupRef, ObjState};
use crate::pool::Pool;
use crate::record::LIVE_OFF;

/// Running mean and variance of a size, fixed point (Welford's method; `n` is capped so
/// old samples fade, approximating exponential weighting). Samples are clamped to
/// [`SAMPLE_MAX`] so every intermediate fits 64 bits (no 128-bit division on the commit
/// path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Welford {
    n: u32,
    mean_q8: i64,
    m2_q16: i64,
}

const WELFORD_CAP: u32 = 256;

/// Largest sample the monitor distinguishes (bytes); larger records count as this.
/// Records that large exceed any volume threshold on their own anyway.
pub const SAMPLE_MAX: u64 = 1 << 16;

impl Welford {
    /// Adds a sample.
    pub fn push(&mut self, x: u64) {
        if self.n < WELFORD_CAP {
            self.n += 1;
        } else {
            // Keep the variance estimate's scale when n stops growing (x 255/256).
            self.m2_q16 -= self.m2_q16 >> 8;
        }
        let x = x.min(SAMPLE_MAX).cast_signed() << 8;
        let delta = x - self.mean_q8;
        self.mean_q8 = (self.mean_q8 + delta / i64::from(self.n)).max(0);
        self.m2_q16 = (self.m2_q16 + delta * (x - self.mean_q8)).max(0);
    }

    /// Samples seen (capped).
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Mean, in bytes (Q8 fixed point).
    pub fn mean_q8(&self) -> u64 {
        self.mean_q8.unsigned_abs()
    }

    /// Variance, in bytes squared (Q16 fixed point).
    pub fn var_q16(&self) -> u64 {
        if self.n < 2 {
            0
        } else {
            self.m2_q16.unsigned_abs() / u64::from(self.n - 1)
        }
    }
}

/// Kinds of operation the size monitor separates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A small update: at most 64 bytes, or at most a quarter of the object.
    Field = 0,
    /// A large rewrite.
    Rewrite = 1,
}

impl OpKind {
    /// The kind of a record of `volume` bytes on an object of `size` bytes.
    pub fn of(volume: u64, size: u64) -> OpKind {
        if volume <= 64 || volume * 4 <= size {
            OpKind::Field
        } else {
            OpKind::Rewrite
        }
    }
}

/// Record sizes of one object, by operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeMonitor {
    kinds: [Welford; 2],
}

impl SizeMonitor {
    /// Adds a record of `volume` bytes of `kind`.
    pub fn push(&mut self, kind: OpKind, volume: u64) {
        self.kinds[kind as usize].push(volume);
    }

    /// The statistics of one kind.
    pub fn kind(&self, kind: OpKind) -> &Welford {
        &self.kinds[kind as usize]
    }

    /// Pooled mean (Q8) and variance (Q16) over both kinds, weighted by their counts.
    /// (Fits 64 bits: means are at most 2^24 in Q8, squares 2^48, times 512 samples.)
    pub fn pooled(&self) -> (u64, u64) {
        let [a, b] = &self.kinds;
        match (a.n, b.n) {
            (0, 0) => return (0, 0),
            (_, 0) => return (a.mean_q8(), a.var_q16()),
            (0, _) => return (b.mean_q8(), b.var_q16()),
            _ => {}
        }
        let (na, nb) = (u64::from(a.n), u64::from(b.n));
        let n = na + nb;
        let mean = (na * a.mean_q8() + nb * b.mean_q8()) / n;
        let spread = |w: &Welford| {
            let d = w.mean_q8().abs_diff(mean);
            w.var_q16() + d * d
        };
        let var = (na * spread(a) + nb * spread(b)) / n;
        (mean, var)
    }
}

/// What the threshold calculator decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdInput<'a> {
    /// The object's record sizes. (Borrowed: the commit has just stored to it, and a
    /// copy's wide loads could not take those stores' values from the store buffer.)
    pub monitor: &'a SizeMonitor,
    /// The count threshold.
    pub count: u32,
    /// Free space of the committing lane's log, out of 256.
    pub free_q8: u32,
    /// Transactional reads of the object.
    pub reads: u32,
    /// Committed writes of the object.
    pub writes: u32,
    /// Largest threshold allowed (a share of a lane log).
    pub max: u64,
}

/// The volume threshold of an object, in bytes.
///
/// * Start from what `count` typical records occupy: `count * (mean + 2 sigma)`. With
///   steady small updates the count threshold then fires first; when sizes vary (a
///   rewrite now and then) the volume threshold fires earlier, so a few large records
///   cannot hold a lot of log space (and recovery time) hostage.
/// * Scale by the free share of the log (floor 1/8): as the log fills, coalesce sooner.
/// * Scale by `1 / (1 + reads / (4 writes))` (floor 1/8): an object read much more than
///   written gains little from deferring (few further writes will share the write-back),
///   so its records should not occupy the log for long.
/// * With no history yet, assume one line per record. Clamp to `[64, max]`.
pub fn volume_threshold(i: &ThresholdInput<'_>) -> u64 {
    let (mean_q8, var_q16) = i.monitor.pooled();
    let per_record_q8 = match (mean_q8, var_q16) {
        (0, _) => 64 << 8,
        // Records of one size (a field updated again and again, a new object's
        // single record): the common case, and `isqrt` costs tens of cycles even of 0.
        (m, 0) => m,
        (m, v) => m + 2 * v.isqrt(),
    };
    // count <= 2^16 and per_record_q8 < 2^26: no overflow.
    let mut v = u64::from(i.count.min(1 << 16)) * per_record_q8;
    v = (v * u64::from(i.free_q8.clamp(32, 256))) >> 8;
    if i.reads > 0 {
        let ratio_q8 = u64::from(i.reads) * 256 / u64::from(i.writes.max(1));
        let rw_q8 = (256 * 256 / (256 + ratio_q8 / 4)).max(32);
        v = (v * rw_q8) >> 8;
    }
    (v >> 8).clamp(64, i.max.max(64))
}

impl CoalesceConfig {
    /// Coalescing only when asked (`Pool::coalesce`, close) or forced by back-pressure:
    /// no count or volume trigger, so committed records stay pending.
    pub fn deferred() -> Self {
        CoalesceConfig {
            count_threshold: 1 << 20,
            volume: false,
            ..Self::default()
        }
    }

    /// Coalescing every few commits with the thresholds as written (count 4, volume
    /// on, batches of 3, no per-object stretch): crash tests use it to cross many
    /// coalescing rounds, tail moves and back-pressure.
    pub fn frequent() -> Self {
        CoalesceConfig {
            count_threshold: 4,
            volume: true,
            batch: 3,
            eager: false,
            line_efficiency: 0,
            behind_age: 6,
            lane_turn: LANE_TURN,
        }
    }
}

/// Most an object's count threshold is stretched, as a multiple of the configured one.
pub const STRETCH_MAX: u32 = 8;

/// The count threshold of an object whose last write-back flushed `spread` home lines.
///
/// A write-back flushes every distinct home line its chain dirtied, so what it saves is
/// records per line. Updates that keep hitting the same field fold into one line at any
/// count; updates spread over an object's lines (random fields of a 1 KiB object: 16
/// records dirty about 10 of its 16 lines, 1.6 records per line) fold only when the
/// chain is long enough to hit lines again. So the threshold is stretched to
/// `efficiency × spread` records, between the configured `base` and [`STRETCH_MAX`]
/// times it: 128 records (8 per line) for random fields of a 1 KiB object, `base`
/// for a hot field. (Eight, not three: the Zipf tail's objects are written back by
/// back-pressure at about one record per line, so the hot objects must fold well
/// above 3 records per line for a workload's home lines to drop threefold; on w6,
/// 3 per line gave 1.75x fewer home lines than write-back at every commit, 8 gives
/// 2.09x, and 3.50x with a 16 MiB lane log.) The volume threshold is computed from the
/// stretched count (it is what `count` typical records occupy), and it still shrinks
/// with free log space, so the stretch never holds more log than the volume bound
/// allows.
pub fn count_threshold(base: u32, efficiency: u32, spread: u32) -> u32 {
    let max = base.saturating_mul(STRETCH_MAX);
    efficiency.saturating_mul(spread).clamp(base, max.max(base))
}

/// How coalescing is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// Records per object that queue it.
    pub count_threshold: u32,
    /// Use the volume threshold too (off: count only).
    pub volume: bool,
    /// Objects per coalescing round when draining the queue.
    pub batch: usize,
    /// Write back at every commit (no deferral): the baseline coalescing is measured
    /// against.
    pub eager: bool,
    /// Records per written-back home line an object's count threshold stretches toward
    /// (0: off); see [`count_threshold`].
    pub line_efficiency: u32,
    /// Commits since an object's last write after which a small transaction on it,
    /// finding nothing pending, writes its home lines *behind* (0: never): flushed
    /// after the commit, durable at the lane's next commit fence, then retired
    /// (`coalescing.md`). Off by default: with flushes the next fence's wait for the
    /// extra line cost more than it saved; a pool on eADR media (no flushes) starts
    /// with [`BEHIND_AGE_EADR`].
    pub behind_age: u32,
    /// Lanes take turns (0: never; every thread keeps to the lane its stack hashes
    /// to): when a lane's log holds only records of the current turn and less than
    /// `lane_turn`/256 of it is free, transactions move on to the next lane, whose
    /// records are then the oldest. So the whole runtime area, not one lane's share,
    /// is a single thread's window of pending records, and lanes give back their
    /// space oldest first (`coalescing.md`, "Lanes take turns"). Any value is valid:
    /// above 256 it acts as 256 (a lane's turn ends as soon as it holds nothing older).
    pub lane_turn: u32,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            count_threshold: 16,
            volume: true,
            batch: 16,
            eager: false,
            line_efficiency: 8,
            behind_age: 0,
            lane_turn: 0,
        }
    }
}

/// The default [`CoalesceConfig::lane_turn`]: a turn ends when less than an eighth of
/// the lane's log is free.
pub const LANE_TURN: u32 = 32;

/// The write-behind age of a pool on eADR media (the access frequency's decay
/// period).
pub const BEHIND_AGE_EADR: u32 = 1024;

/// Why a coalescing round ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Objects reached their count threshold.
    Count,
    /// An object reached its volume threshold.
    Volume,
    /// A lane log was short of space.
    BackPressure,
    /// `Pool::coalesce`, close, or an in-place write.
    Explicit,
    /// Eager configuration: every commit.
    Eager,
}

/// What coalescing did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalesceStats {
    /// Objects queued by their count threshold.
    pub by_count: u64,
    /// Objects queued by their volume threshold.
    pub by_volume: u64,
    /// Rounds forced by back-pressure.
    pub by_backpressure: u64,
    /// Rounds run explicitly.
    pub explicit: u64,
    /// Rounds run in total.
    pub rounds: u64,
    /// Objects written back.
    pub objects: u64,
    /// Home lines flushed by write-back.
    pub lines_written_back: u64,
    /// Home lines write-back at every commit would have flushed.
    pub lines_eager: u64,
    /// Largest pending volume of any object seen (bytes), queued objects included.
    pub pending_hwm: u64,
    /// Largest amount by which an object's pending volume exceeded its volume threshold
    /// (also under count-only, where the threshold is computed but not acted on).
    pub over_threshold_max: u64,
    /// Largest single record seen (bytes).
    pub largest_record: u64,
    /// Objects written behind (their homes flushed by their own commit and retired
    /// after the lane's next fence, no round); their lines count in
    /// `lines_written_back` too.
    pub written_behind: u64,
}

impl CoalesceStats {
    /// Lines coalescing saved against write-back at every commit.
    pub fn lines_saved(&self) -> u64 {
        self.lines_eager.saturating_sub(self.lines_written_back)
    }
}

/// A record whose live word was updated in the cache but not yet flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecId {
    pub recno: u64,
    pub seq: u64,
    pub lane: u32,
    /// Pool offset of the record's live word (what `mark_dead` stored).
    pub at: usize,
}

/// Records per [`Bucket`] of a lane's lazy marks (a power of two).
const BUCKET_RECS: u64 = 256;

/// The lazy marks of records `k * BUCKET_RECS ..` of one lane, in any order.
#[derive(Debug)]
struct Bucket {
    ids: Vec<RecId>,
    /// The lowest sequence number among `ids` (`u64::MAX`: none).
    min_seq: u64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            ids: Vec::new(),
            min_seq: u64::MAX,
        }
    }
}

/// One lane's lazy marks, bucketed by record number: within a lane record numbers and
/// sequence numbers rise together, so every mark of a bucket is older than every mark
/// of the next one. Marks arrive in any order (a round marks whole chains); adding
/// one, finding the oldest, and taking the ones older than a sequence number are
/// amortized constant time per mark.
#[derive(Debug, Default)]
struct LaneMarks {
    /// Bucket number of `buckets[0]`.
    first: u64,
    buckets: VecDeque<Bucket>,
}

impl LaneMarks {
    fn push(&mut self, id: RecId) {
        let k = id.recno / BUCKET_RECS;
        if self.buckets.is_empty() {
            self.first = k;
        }
        if k < self.first {
            // Older than every listed bucket (a record the tail has not passed yet,
            // marked after newer ones): open buckets in front.
            for _ in k..self.first {
                self.buckets.push_front(Bucket::default());
            }
            self.first = k;
        }
        let i = (k - self.first) as usize;
        if self.buckets.len() <= i {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        let b = &mut self.buckets[i];
        b.min_seq = b.min_seq.min(id.seq);
        b.ids.push(id);
    }

    /// Forgets the marks on records before `front` (passed by the lane's tail; no mark
    /// on them comes later, as a passed record is no longer listed to be marked).
    fn passed(&mut self, front: u64) {
        while !self.buckets.is_empty() && (self.first + 1) * BUCKET_RECS <= front {
            self.buckets.pop_front();
            self.first += 1;
        }
        // The bucket the front falls in: its passed marks would hold other tails back.
        if let Some(b) = self.buckets.front_mut() {
            b.ids.retain(|id| id.recno >= front);
            b.min_seq = b.ids.iter().map(|id| id.seq).min().unwrap_or(u64::MAX);
        }
        self.trim_empty();
    }

    fn trim_empty(&mut self) {
        while self.buckets.front().is_some_and(|b| b.ids.is_empty()) {
            self.buckets.pop_front();
            self.first += 1;
        }
    }

    /// The lowest sequence number of the marks (`u64::MAX`: none).
    fn oldest(&self) -> u64 {
        self.buckets.front().map_or(u64::MAX, |b| b.min_seq)
    }

    /// Hands `f` every mark on a record older than `seq` and forgets it.
    fn take_older(&mut self, seq: u64, f: &mut impl FnMut(&RecId)) {
        for b in &mut self.buckets {
            // Buckets opened between two marks may be empty; a full one not older than
            // `seq` ends the walk (every later mark is newer).
            if b.ids.is_empty() {
                continue;
            }
            if b.min_seq >= seq {
                break;
            }
            let mut min = u64::MAX;
            b.ids.retain(|id| {
                if id.seq < seq {
                    f(id);
                    return false;
                }
                min = min.min(id.seq);
                true
            });
            b.min_seq = min;
        }
        self.trim_empty();
    }
}

/// The lazy dead-marks, per lane. A mark must be durable before a newer group of its
/// object can leave the log unseen (recovery skips what is older than an object's
/// newest dead group, but not what is older than a group gone with its record), so a
/// tail move makes durable the other lanes' marks on records older than the newest
/// record it passes, and forgets its own lane's passed ones. Marks on newer records
/// wait: when a newer record is passed later, that tail move flushes them.
#[derive(Debug, Default)]
struct Lazy {
    lanes: Vec<LaneMarks>,
    /// The mark listed last (a round marks a record's groups together: its live word
    /// is one line, listed once).
    last: Option<RecId>,
}

impl Lazy {
    fn push(&mut self, id: RecId) {
        if self.last == Some(id) {
            return;
        }
        self.last = Some(id);
        let lane = id.lane as usize;
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, LaneMarks::default);
        }
        self.lanes[lane].push(id);
    }

    /// A lower bound of the sequence numbers of the records with a lazy mark in a lane
    /// other than `lane` (`u64::MAX`: none).
    fn oldest_other(&self, lane: u32) -> u64 {
        self.lanes
            .iter()
            .enumerate()
            .filter(|&(l, _)| l != lane as usize)
            .map(|(_, m)| m.oldest())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Hands `f` every mark (not passed by its lane's tail) and forgets them all.
    fn drain(&mut self, mut f: impl FnMut(&RecId)) {
        self.last = None;
        for m in &mut self.lanes {
            m.take_older(u64::MAX, &mut f);
        }
    }

    /// A tail move on `lane` to its record `front`, passing records up to sequence
    /// number `passed`: forgets the lane's own marks before `front` (they leave the log
    /// with the tail) and hands `flush` every other lane's mark on a record older than
    /// `passed`. Returns whether it flushed any.
    fn pass(&mut self, lane: u32, front: u64, passed: u64, mut flush: impl FnMut(&RecId)) -> bool {
        self.last = None;
        let mut flushed = false;
        for (l, m) in self.lanes.iter_mut().enumerate() {
            if l == lane as usize {
                m.passed(front);
            } else if m.oldest() < passed {
                m.take_older(passed, &mut |id| {
                    if crate::keep_step(8) {
                        flush(id);
                        flushed = true;
                    }
                });
            }
        }
        flushed
    }
}

/// Counters of coalescing rounds (per round, not per commit: shared atomics are fine).
/// Per-commit counts live in the lanes' [`LaneStats`].
#[derive(Debug, Default)]
struct Counters {
    by_backpressure: AtomicU64,
    explicit: AtomicU64,
    rounds: AtomicU64,
    objects: AtomicU64,
    lines_written_back: AtomicU64,
}

/// The coalescing state of a pool.
pub struct Coalescer {
    count_threshold: AtomicU32,
    line_efficiency: AtomicU32,
    pub(crate) behind_age: AtomicU32,
    lane_turn: AtomicU32,
    volume: AtomicBool,
    batch: AtomicUsize,
    eager: AtomicBool,
    queue: spin::Mutex<heapless::BinaryHeap<(u32, u64), heapless::binary_heap::Max, 256>>,
    /// The queue's length as of its last change (read without its lock).
    queue_len: AtomicUsize,
    /// Dead-marks written in the cache but not flushed (lazy), in any lane.
    unflushed: spin::Mutex<Lazy>,
    /// A round's buffers, kept between rounds (a round that finds them taken by a
    /// concurrent one uses fresh ones).
    scratch: spin::Mutex<RoundScratch>,
    /// Rounds under way: from taking their objects' chains to marking their groups
    /// dead, a record of theirs is live with no chain to coalesce it by.
    in_flight: AtomicUsize,
    /// Rounds finished (counted before `in_flight` drops).
    finished: AtomicU64,
    c: Counters,
}

/// How many objects ahead of its drains a round fetches their index slots: enough to
/// overlap the misses, few enough not to run out of line-fill buffers (a slot is
/// several lines).
const AHEAD: usize = 8;

/// The buffers of a coalescing round.
#[derive(Debug, Default)]
struct RoundScratch {
    refs: Vec<GroupRef>,
    /// `refs` regrouped by lane.
    by_lane: Vec<GroupRef>,
    ranges: Vec<(u64, u32)>,
    freeing: Vec<Freeing>,
    to_flush: Vec<(usize, usize)>,
}

impl RoundScratch {
    fn clear(&mut self) {
        self.refs.clear();
        self.ranges.clear();
        self.freeing.clear();
        self.to_flush.clear();
    }
}

impl core::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coalescer")
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            count_threshold: AtomicU32::new(CoalesceConfig::default().count_threshold),
            line_efficiency: AtomicU32::new(CoalesceConfig::default().line_efficiency),
            behind_age: AtomicU32::new(CoalesceConfig::default().behind_age),
            lane_turn: AtomicU32::new(CoalesceConfig::default().lane_turn),
            volume: AtomicBool::new(CoalesceConfig::default().volume),
            batch: AtomicUsize::new(CoalesceConfig::default().batch),
            eager: AtomicBool::new(CoalesceConfig::default().eager),
            queue: spin::Mutex::new(heapless::BinaryHeap::new()),
            queue_len: AtomicUsize::new(0),
            unflushed: spin::Mutex::new(Lazy::default()),
            scratch: spin::Mutex::new(RoundScratch::default()),
            in_flight: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            c: Counters::default(),
        }
    }
}

impl Coalescer {
    /// Empties the queue (everything in it is about to be written back).
    fn clear_queue(&self) {
        let mut q = self.queue.lock();
        q.clear();
        self.queue_len.store(0, Relaxed);
    }

    /// The configuration.
    #[inline(always)]
    pub fn config(&self) -> CoalesceConfig {
        CoalesceConfig {
            count_threshold: self.count_threshold.load(Relaxed),
            line_efficiency: self.line_efficiency.load(Relaxed),
            behind_age: self.behind_age.load(Relaxed),
            lane_turn: self.lane_turn.load(Relaxed),
            volume: self.volume.load(Relaxed),
            batch: self.batch.load(Relaxed),
            eager: self.eager.load(Relaxed),
        }
    }

    /// Statistics.
    pub fn stats(&self) -> CoalesceStats {
        let c = &self.c;
        // The per-commit fields are filled in by `Pool::stats` from the lanes.
        CoalesceStats {
            by_backpressure: c.by_backpressure.load(Relaxed),
            explicit: c.explicit.load(Relaxed),
            rounds: c.rounds.load(Relaxed),
            objects: c.objects.load(Relaxed),
            lines_written_back: c.lines_written_back.load(Relaxed),
            ..CoalesceStats::default()
        }
    }
}

/// One group a commit added: logged bytes, home lines, the object's size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    pub volume: u64,
    pub lines: u64,
    pub size: u64,
}

/// Objects a commit hands to coalescing (bounded: the rest wait in the queue or are
/// served by the next commit).
pub(crate) type Batch = heapless::Vec<u64, 64>;

/// The keys a batch has taken, for a duplicate test that does not scan the batch: an
/// open-addressing set of 128 slots (the object index's hash and empty marker), at
/// most half full as a batch holds 64 keys.
struct Seen([u64; 128]);

impl Seen {
    fn new() -> Self {
        Seen([pending::EMPTY; 128])
    }

    /// Adds `k`; false if it was there already.
    fn insert(&mut self, k: u64) -> bool {
        let mut i = (pending::hash(k) >> 57) as usize;
        loop {
            match self.0[i] {
                x if x == k => return false,
                pending::EMPTY => {
                    self.0[i] = k;
                    return true;
                }
                _ => i = (i + 1) % self.0.len(),
            }
        }
    }
}

/// Regroups `refs` lane by lane, keeping their order within a lane (each object's
/// groups oldest first): one counting pass, where a sort by (lane, record) was a tenth
/// of a round once chains spanned lanes. `spare` is a buffer to swap with.
fn group_by_lane(refs: &mut Vec<GroupRef>, spare: &mut Vec<GroupRef>) {
    // At most 256 lanes (`Area::compute`): lane + 1 is at most 256.
    let mut start = [0usize; 257];
    for g in refs.iter() {
        start[usize::from(g.lane) + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    spare.clear();
    spare.resize(refs.len(), GroupRef::default());
    for g in refs.iter() {
        let at = &mut start[usize::from(g.lane)];
        spare[*at] = *g;
        *at += 1;
    }
    core::mem::swap(refs, spare);
}

/// Flags, among one object's drained groups (oldest first), the newest of each lane:
/// the ones whose dead marks a round writes to the log. An older group needs no mark of
/// its own. Recovery skips every group of an object older than its newest dead one,
/// and the newest of a lane leaves the log after every older group of that lane. Once
/// it is passed, a newer group's mark elsewhere covers the others; the tail-move rule
/// (`Lazy`) makes that mark durable first. Lanes past 64 are all flagged (marking more
/// is always safe).
fn newest_per_lane(groups: &mut [GroupRef]) {
    let mut seen = 0u64;
    for g in groups.iter_mut().rev() {
        let bit = 1u64.checked_shl(u32::from(g.lane)).unwrap_or(0);
        g.newest = bit == 0 || seen & bit == 0;
        seen |= bit;
    }
}

/// Clears group `group`'s bit of record `rm` (in the lane log at pool offset `base`)
/// and stores its live word, in the cache only; returns the word's pool offset.
fn mark_dead<M: Media>(media: &M, base: usize, rm: &mut crate::log::RecMeta, group: u8) -> usize {
    rm.live &= !(1u64 << group);
    let at = base + rm.pos + LIVE_OFF;
    media.write_u64(at, rm.live | rm.tag);
    at
}

/// What a commit's scheduling step decided for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sched {
    /// Nothing to do yet.
    Wait,
    /// Volume threshold reached: coalesce in this commit.
    Now,
    /// Count threshold reached: queue it with this access frequency.
    Queue(u32),
}

/// The per-commit view of the configuration, read once per transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitView {
    pub cfg: CoalesceConfig,
    pub now: u64,
    pub free_q8: u32,
    /// Largest volume threshold (a quarter of a lane log).
    pub max: u64,
}

impl<M: Media> Pool<M> {
    /// Sets the coalescing configuration.
    pub fn set_coalesce_config(&self, cfg: CoalesceConfig) {
        let co = &self.coalescer;
        co.count_threshold.store(cfg.count_threshold, Relaxed);
        co.line_efficiency.store(cfg.line_efficiency, Relaxed);
        co.behind_age.store(cfg.behind_age, Relaxed);
        co.lane_turn.store(cfg.lane_turn, Relaxed);
        co.volume.store(cfg.volume, Relaxed);
        co.batch.store(cfg.batch, Relaxed);
        co.eager.store(cfg.eager, Relaxed);
    }

    /// The scheduling view of a commit on a lane with `free_q8`/256 of its log free.
    /// `seq` (the commit's sequence number) is the clock of the frequency decay.
    #[inline(always)]
    pub(crate) fn commit_view(&self, free_q8: u32, seq: u64) -> CommitView {
        let co = &self.coalescer;
        CommitView {
            cfg: co.config(),
            now: seq,
            free_q8,
            max: (self.area.lane_bytes / 4) as u64,
        }
    }

    /// Counts, statistics and the threshold test for one group a commit added to
    /// `st`'s chain (module docs). Runs under the object's shard lock, in the same
    /// lookup that extended the chain.
    /// Counters go to `ls`, the committing lane's.
    #[inline]
    pub(crate) fn schedule(
        st: &mut ObjState,
        g: &Committed,
        v: &CommitView,
        ls: &LaneStats,
    ) -> Sched {
        LaneStats::add(&ls.lines_eager, g.lines);
        LaneStats::max(&ls.largest_record, g.volume);
        st.writes = st.writes.saturating_add(1);
        let age = v.now.saturating_sub(st.last_tick);
        st.freq = (st.freq >> (age / 1024).min(31)).saturating_add(256);
        st.last_tick = v.now;
        st.monitor.push(OpKind::of(g.volume, g.size), g.volume);
        if v.cfg.eager || st.chain.groups.is_empty() {
            return Sched::Wait;
        }
        // The statistics see every chain, queued ones too (they keep growing until
        // their batch runs), and the threshold is computed under count-only as well,
        // where it is only observed: so the two policies can be compared.
        LaneStats::max(&ls.pending_hwm, st.chain.volume);
        if st.queued {
            // Queued by count and waiting for its batch: the volume bound still holds
            // (cached threshold), so a chain that reaches it is written back now.
            if st.thresh != 0 && st.chain.volume > st.thresh {
                LaneStats::max(&ls.over_threshold_max, st.chain.volume - st.thresh);
            }
            if v.cfg.volume && st.thresh != 0 && st.chain.volume >= st.thresh {
                LaneStats::add(&ls.by_volume, 1);
                return Sched::Now;
            }
            return Sched::Wait;
        }
        // The threshold moves slowly (sizes are averaged over up to 256 records),
        // so it is recomputed every 16 writes, when the free share of the log
        // changes by 1/8, on new reads, and whenever the volume is within 80% of
        // it: the decision at the threshold always uses a fresh value.
        let count = count_threshold(v.cfg.count_threshold, v.cfg.line_efficiency, st.spread);
        let bucket = (v.free_q8 >> 5) as u8;
        let stale = st.thresh == 0
            || st.thresh_free != bucket
            || st.thresh_reads != st.reads
            || st.writes.is_multiple_of(16)
            || st.chain.volume + st.chain.volume / 4 >= st.thresh;
        if stale {
            st.thresh = volume_threshold(&ThresholdInput {
                monitor: &st.monitor,
                count,
                free_q8: v.free_q8,
                reads: st.reads,
                writes: st.writes,
                max: v.max,
            });
            st.thresh_free = bucket;
            st.thresh_reads = st.reads;
        }
        let t = st.thresh;
        if st.chain.volume > t {
            LaneStats::max(&ls.over_threshold_max, st.chain.volume - t);
        }
        if v.cfg.volume && st.chain.volume >= t {
            st.queued = true;
            LaneStats::add(&ls.by_volume, 1);
            return Sched::Now;
        }
        if st.chain.count >= count {
            st.queued = true;
            LaneStats::add(&ls.by_count, 1);
            return Sched::Queue(st.freq);
        }
        Sched::Wait
    }

    /// Queues count-triggered objects and adds to `batch` what this commit should
    /// coalesce: volume-triggered objects (already there), plus a batch from the queue
    /// when it is long enough or the log runs short. Returns the round's trigger.
    pub(crate) fn take_batch(
        &self,
        queued: &[(u32, u64)],
        batch: &mut Batch,
        v: &CommitView,
    ) -> Trigger {
        let co = &self.coalescer;
        let volume = !batch.is_empty();
        // Back-pressure alone only pops the queue: skip its lock when it is empty.
        let pop = v.free_q8 < 32 && co.queue_len.load(Relaxed) > 0;
        if !queued.is_empty() || volume || pop {
            let mut q = co.queue.lock();
            for &item in queued {
                if q.push(item).is_err() && batch.push(item.1).is_err() {
                    // Queue and batch full: it stays marked queued and is served by
                    // back-pressure or an explicit coalesce.
                    break;
                }
            }
            if volume || q.len() >= v.cfg.batch || v.free_q8 < 32 {
                while batch.len() < v.cfg.batch.clamp(1, batch.capacity()) {
                    match q.pop() {
                        Some((_, k)) => {
                            let _ = batch.push(k);
                        }
                        None => break,
                    }
                }
            }
            co.queue_len.store(q.len(), Relaxed);
        }
        if v.now.is_multiple_of(65_536) {
            self.pending.trim(1 << 20, v.now);
        }
        if v.free_q8 < 32 {
            Trigger::BackPressure
        } else if volume {
            Trigger::Volume
        } else {
            Trigger::Count
        }
    }

    /// Notes a transactional read of `key` (for the read/write ratio).
    pub(crate) fn note_read(&self, key: u64) {
        self.pending
            .with(key, |st| st.reads = st.reads.saturating_add(1));
    }

    /// Writes back `keys` and marks their groups dead (module docs). With `durable`,
    /// the marks (and every earlier lazy mark) are flushed and fenced too, as an
    /// in-place write of these objects needs. Returns the groups marked dead.
    pub(crate) fn coalesce_keys(&self, keys: &[u64], why: Trigger, durable: bool) -> usize {
        let co = &self.coalescer;
        co.in_flight.fetch_add(1, Acquire);
        let mut kept = co.scratch.try_lock();
        let mut fresh = RoundScratch::default();
        let s = kept.as_deref_mut().unwrap_or(&mut fresh);
        s.clear();
        let n = self.round(keys, why, durable, s);
        co.finished.fetch_add(1, Release);
        co.in_flight.fetch_sub(1, Release);
        n
    }

    /// Rounds finished so far (for [`Pool::rounds_since`]).
    pub(crate) fn rounds_finished(&self) -> u64 {
        self.coalescer.finished.load(Acquire)
    }

    /// Whether a round was under way or finished since `finished` was read: one may
    /// have held the chains of records that looked live then (see
    /// `Coalescer::in_flight`), and they are dead now or soon.
    pub(crate) fn rounds_since(&self, finished: u64) -> bool {
        self.coalescer.in_flight.load(Acquire) > 0 || self.rounds_finished() != finished
    }

    /// [`Pool::coalesce_keys`] with buffers `s` (empty).
    fn round(&self, keys: &[u64], why: Trigger, durable: bool, s: &mut RoundScratch) -> usize {
        let co = &self.coalescer;
        let media = self.media();
        let RoundScratch {
            refs,
            by_lane,
            ranges,
            freeing,
            to_flush,
        } = s;
        let mut objects = 0u64;
        for &k in keys.iter().take(AHEAD) {
            self.pending.prefetch(k);
        }
        for (i, &k) in keys.iter().enumerate() {
            if let Some(&next) = keys.get(i + AHEAD) {
                self.pending.prefetch(next);
            }
            let start = refs.len();
            if let Some(d) = self.pending.drain(k, refs, ranges) {
                objects += 1;
                freeing.extend(d.freeing);
            }
            newest_per_lane(&mut refs[start..]);
        }
        if objects == 0 && !durable {
            return 0;
        }
        // A freed object's space is released at the end of this round and may then be
        // reused by writes that are not logged (a new run's chunk entry) or logged under
        // another key. Recovery must never replay the free or older bytes over that, so
        // the dead marks of such a round are made durable before the release.
        let durable = durable || !freeing.is_empty();
        // 1. Write the homes back: one fence for every object of the round.
        let mut lines = 0u64;
        for &(off, len) in ranges.iter() {
            media.flush(off as usize, len as usize);
            lines += arch::line_range(off as usize, len as usize).len() as u64;
        }
        // The records' live words are marked after the fence: fetch their lines and
        // their entries (long out of the cache when back-pressure reaches them) while
        // it waits.
        if refs.windows(2).any(|w| w[0].lane != w[1].lane) {
            group_by_lane(refs, by_lane);
        }
        for chunk in refs.chunk_by(|a, b| a.lane == b.lane) {
            let lane = u32::from(chunk[0].lane);
            let recs = self.lanes[lane as usize].recs.lock();
            for g in chunk {
                recs.prefetch(g.recno);
                if g.newest && g.line != u32::MAX {
                    media.prefetch_write(self.area.log_off(lane) + g.line as usize * 64);
                }
            }
        }
        if objects > 0 {
            // Once these groups die, their objects' home bytes are on media with no
            // record of ours behind them. An older `pmalloc` op record still valid
            // could then replay a destination word over them (`Heap::settle`): make
            // those final first (nothing to do, one load, when there are none).
            self.heap.settle();
            media.fence();
        }
        // 2. Mark the groups dead, lane by lane. The lazy list stays locked from the
        //    first mark until every lazy mark of the round is listed, so a tail that
        //    moves past one of these records (advance_tail) finds all of them.
        let mut cleared = 0;
        // A durable round collects the live words to flush in `to_flush`: each line
        // once, however many of its record's groups died now or in earlier lazy rounds.
        let mut uf = co.unflushed.lock();
        for chunk in refs.chunk_by(|a, b| a.lane == b.lane) {
            let lane: &Lane = &self.lanes[usize::from(chunk[0].lane)];
            let base = self.area.log_off(u32::from(chunk[0].lane));
            let mut recs = lane.recs.lock();
            for g in chunk {
                let Some(rm) = recs.get_mut(g.recno) else {
                    continue;
                };
                cleared += 1;
                if !g.newest {
                    // Its lane holds a newer dead group of the object, whose mark
                    // covers it: recovery skips every group older than an object's
                    // newest dead one. Only the lane's tail needs to know.
                    rm.live &= !(1u64 << g.group);
                    continue;
                }
                let at = mark_dead(media, base, rm, g.group);
                if durable {
                    to_flush.push((at, 8));
                } else {
                    uf.push(RecId {
                        lane: u32::from(g.lane),
                        recno: g.recno,
                        seq: rm.seq,
                        at,
                    });
                }
            }
        }
        if durable {
            // Earlier lazy marks must be durable too (a superset of this round's
            // objects' marks: the list is not kept per object).
            uf.drain(|id| to_flush.push((id.at, 8)));
            // With nothing to flush there is nothing to wait for: marks drained by
            // other rounds were fenced before they let go of the list. (An atomic op
            // through the pool on a word no transaction touched then costs only its
            // own fence.)
            if !to_flush.is_empty() {
                arch::flush_lines_once(media, to_flush);
                media.fence();
            }
        }
        drop(uf);
        // 3. Freed objects can be reused now.
        for f in freeing.drain(..) {
            self.heap.release(&f);
        }
        co.c.rounds.fetch_add(1, Relaxed);
        co.c.objects.fetch_add(objects, Relaxed);
        co.c.lines_written_back.fetch_add(lines, Relaxed);
        match why {
            Trigger::BackPressure => co.c.by_backpressure.fetch_add(1, Relaxed),
            Trigger::Explicit => co.c.explicit.fetch_add(1, Relaxed),
            Trigger::Count | Trigger::Volume | Trigger::Eager => 0,
        };
        cleared
    }

    /// Retires a group written behind (`Tx::commit_small`): its homes were flushed by
    /// the commit that logged it and a fence of the same lane has passed since, so
    /// they are durable; if it is still its object's only pending group, the chain is
    /// emptied and the group marked dead, lazily, as a round marks it.
    pub(crate) fn retire_behind(&self, key: u64, g: GroupRef, ls: &LaneStats) {
        let Some(lines) = self.pending.retire(key, g) else {
            return;
        };
        // The group dies here: as in a round, older `pmalloc` records go first.
        self.heap.settle();
        LaneStats::add(&ls.behind, 1);
        LaneStats::add(&ls.behind_lines, u64::from(lines));
        let media = self.media();
        let mut uf = self.coalescer.unflushed.lock();
        let lane = u32::from(g.lane);
        let base = self.area.log_off(lane);
        let mut recs = self.lanes[usize::from(g.lane)].recs.lock();
        if let Some(rm) = recs.get_mut(g.recno) {
            let at = mark_dead(media, base, rm, g.group);
            uf.push(RecId {
                lane,
                recno: g.recno,
                seq: rm.seq,
                at,
            });
        }
    }

    /// Back-pressure: coalesces the objects holding lane `lane`'s oldest live records,
    /// up to an eighth of the log (or 64 objects) in one round, so a full log costs
    /// one write-back fence per many records freed. False if there is nothing to
    /// coalesce there.
    pub(crate) fn coalesce_front(&self, lane: u32) -> bool {
        let mut keys: Batch = Batch::new();
        let mut seen = Seen::new();
        {
            let r = self.lanes[lane as usize].recs.lock();
            // Dead records a held-back tail has not passed yet come first.
            let mut live = r.recs.iter().skip_while(|m| m.live == 0).peekable();
            let Some(first) = live.peek().map(|m| m.pos) else {
                return false;
            };
            let span = self.area.lane_bytes / 8;
            'recs: for m in live {
                let dist = (m.pos + self.area.lane_bytes - first) % self.area.lane_bytes;
                if dist > span && !keys.is_empty() {
                    break;
                }
                for (g, &k) in m.keys.as_slice().iter().enumerate() {
                    if m.live & (1 << g) != 0 && seen.insert(k) && keys.push(k).is_err() {
                        break 'recs;
                    }
                }
            }
        }
        if keys.is_empty() {
            return false;
        }
        self.coalesce_keys(&keys, Trigger::BackPressure, false) > 0
    }

    /// Moves lane `log`'s persisted tail over its dead records. A tail that passes a
    /// record must not leave an older group of one of its objects replayable: every
    /// lazy dead-mark of another lane on a record older than the newest one passed is
    /// made durable first (see [`Lazy`]). With `hold_back` the tail stops instead at
    /// the first record newer than another lane's oldest lazy mark, so nothing is
    /// flushed: lanes taking whole-log turns pass only the oldest records there are.
    /// The lazy list stays locked through the flushes and the tail's own persist, so no
    /// other lane can see it emptied before the marks it lost are durable or passed by
    /// the tail (a durable round that releases a freed object, or precedes an in-place
    /// write, relies on that: a mark dropped here but not yet passed could otherwise
    /// let recovery replay old bytes there).
    /// False if the tail could not move.
    pub(crate) fn advance_tail(&self, log: &mut LaneLog, lane: &Lane, hold_back: bool) -> bool {
        let mut uf = self.coalescer.unflushed.lock();
        let limit = if hold_back && crate::keep_step(8) {
            uf.oldest_other(log.idx)
        } else {
            u64::MAX
        };
        let (vt, front, passed) = {
            let mut r = lane.recs.lock();
            r.pop_passable(limit);
            log.front_seq = r.front_seq().unwrap_or(u64::MAX);
            (r.vtail(log.head), r.front_recno, r.passed_seq)
        };
        if vt == log.ptail {
            return false;
        }
        let media = self.media();
        let flushed = uf.pass(log.idx, front, passed, |id| media.flush(id.at, 8));
        if flushed {
            media.fence();
        }
        log.persist_tail(media, &self.area, vt);
        true
    }

    /// Writes back everything queued and pending, now.
    pub fn coalesce(&self) {
        self.coalescer.clear_queue();
        let keys = self.pending.keys();
        for chunk in keys.chunks(256) {
            self.coalesce_keys(chunk, Trigger::Explicit, false);
        }
    }

    /// Writes back everything and makes every dead-mark durable (close, or before
    /// handing the pool to another program).
    pub(crate) fn coalesce_all(&self) {
        self.coalescer.clear_queue();
        let keys = self.pending.keys();
        self.coalesce_keys(&keys, Trigger::Explicit, true);
        for (k, lane) in self.lanes.iter().enumerate() {
            let mut log = lane.log.lock();
            self.advance_tail(&mut log, lane, false);
            debug_assert!(
                lane.recs.lock().recs.is_empty(),
                "lane {k} still has live records after coalesce_all"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_precision_loss)] // exact references computed in floating point
mod tests {
    use super::*;

    #[test]
    fn lazy_marks_give_the_oldest_take_the_older_and_forget_the_passed() {
        let id = |lane, recno| RecId {
            recno,
            seq: 10 * recno,
            lane,
            at: recno as usize * 64,
        };
        let mut lz = Lazy::default();
        // Out of order, across buckets, one listed twice in a row (kept once).
        for r in [700, 5, 300, 300, 40, 1000] {
            lz.push(id(1, r));
        }
        lz.push(id(0, 9));
        assert_eq!(lz.oldest_other(0), 50);
        assert_eq!(lz.oldest_other(1), 90);
        // Lane 0's tail passes records up to sequence 4,000: lane 1's marks below it.
        let mut got = Vec::new();
        assert!(lz.pass(0, 10, 4_000, |m| got.push(m.recno)));
        got.sort_unstable();
        assert_eq!(got, [5, 40, 300]);
        assert_eq!(lz.oldest_other(0), 7_000);
        // Lane 0's own mark was passed: nothing of it is flushed or left.
        assert_eq!(lz.oldest_other(1), u64::MAX);
        // Lane 1's tail passes record 800: its mark on 700 is forgotten, 1000 stays.
        assert!(!lz.pass(1, 800, 7_990, |_| panic!("own marks are not flushed")));
        let mut left = Vec::new();
        lz.drain(|m| left.push(m.recno));
        assert_eq!(left, [1000]);
        lz.drain(|_| panic!("drained"));
    }

    #[test]
    fn lazy_marks_past_an_empty_bucket_are_taken_too() {
        let id = |recno| RecId {
            recno,
            seq: recno,
            lane: 1,
            at: 0,
        };
        let mut lz = Lazy::default();
        // Buckets 0 and 2 hold marks, bucket 1 is opened empty between them.
        lz.push(id(3));
        lz.push(id(600));
        let mut got = Vec::new();
        lz.pass(0, 0, 1_000, |m| got.push(m.recno));
        assert_eq!(got, [3, 600]);
        assert_eq!(lz.oldest_other(0), u64::MAX);
    }

    #[test]
    fn seen_takes_each_key_once_up_to_a_full_batch() {
        let mut seen = Seen::new();
        // Keys that share their hash's top bits too (a run in one probe sequence).
        let keys: Vec<u64> = (0..65u64).map(|i| 4096 + i * (1 << 20)).collect();
        for &k in &keys {
            assert!(seen.insert(k), "new key {k:#x}");
        }
        for &k in &keys {
            assert!(!seen.insert(k), "repeated key {k:#x}");
        }
    }

    #[test]
    fn welford_matches_the_exact_mean_and_variance() {
        let xs = [8u64, 8, 8, 1024, 8, 8, 8, 8, 1024, 8];
        let mut w = Welford::default();
        for &x in &xs {
            w.push(x);
        }
        let mean = xs.iter().sum::<u64>() as f64 / xs.len() as f64;
        let var =
            xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        assert!((w.mean_q8() as f64 / 256.0 - mean).abs() < 1.0);
        assert!(((w.var_q16() as f64 / 65536.0) - var).abs() / var < 0.01);
    }

    fn monitor(samples: &[(OpKind, u64)]) -> SizeMonitor {
        let mut m = SizeMonitor::default();
        for &(k, v) in samples {
            m.push(k, v);
        }
        m
    }

    fn input(m: &SizeMonitor) -> ThresholdInput<'_> {
        ThresholdInput {
            monitor: m,
            count: 16,
            free_q8: 256,
            reads: 0,
            writes: 100,
            max: 1 << 20,
        }
    }

    #[test]
    fn count_threshold_stretches_with_the_lines_a_write_back_flushed() {
        // No write-back yet, or a hot field (one line): the configured threshold.
        assert_eq!(count_threshold(16, 3, 0), 16);
        assert_eq!(count_threshold(16, 3, 1), 16);
        // Random fields of a 1 KiB object: 10 of 16 lines after 16 records, then all
        // 16 at the default 8 per line (exactly the cap).
        assert_eq!(count_threshold(16, 3, 10), 30);
        assert_eq!(count_threshold(16, 3, 16), 48);
        let d = CoalesceConfig::default();
        assert_eq!(
            count_threshold(d.count_threshold, d.line_efficiency, 10),
            80
        );
        assert_eq!(
            count_threshold(d.count_threshold, d.line_efficiency, 16),
            128
        );
        // Capped at STRETCH_MAX times the configured one.
        assert_eq!(count_threshold(16, 3, 1000), 16 * STRETCH_MAX);
        // Off.
        assert_eq!(count_threshold(16, 0, 1000), 16);
        // No overflow at the extremes.
        assert_eq!(count_threshold(u32::MAX, 3, u32::MAX), u32::MAX);
    }

    #[test]
    fn volume_threshold_edges() {
        // No history: one line per record.
        assert_eq!(volume_threshold(&input(&SizeMonitor::default())), 16 * 64);
        // Steady 8-byte updates: count * 8 (no variance), never below one line.
        let small = monitor(&[(OpKind::Field, 8); 50]);
        assert_eq!(volume_threshold(&input(&small)), 128);
        // Occasional 1 KiB rewrites raise mean and variance: a larger budget, but far
        // below 16 rewrites.
        let mut mixed: Vec<(OpKind, u64)> = alloc::vec![(OpKind::Field, 8); 45];
        mixed.extend([(OpKind::Rewrite, 1024); 5]);
        let v = volume_threshold(&input(&monitor(&mixed)));
        assert!(v > 128 && v < 16 * 1024, "{v}");
        // A nearly full log shrinks it (floor 1/8), a read-mostly object too.
        let full = volume_threshold(&ThresholdInput {
            free_q8: 0,
            ..input(&monitor(&mixed))
        });
        assert_eq!(full, (v / 8).max(64));
        let readish = volume_threshold(&ThresholdInput {
            reads: 400,
            writes: 100,
            ..input(&monitor(&mixed))
        });
        assert!(readish * 2 <= v + 1, "{readish} vs {v}");
        // Clamped to the maximum.
        let huge = monitor(&[(OpKind::Rewrite, 1 << 30); 4]);
        assert_eq!(volume_threshold(&input(&huge)), 1 << 20);
    }

    /// One commit of a `volume`-byte group to `st`'s chain (as the commit path adds it),
    /// then the scheduling step, with `free_q8`/256 of the log free.
    fn commit(
        st: &mut ObjState,
        volume: u64,
        cfg: CoalesceConfig,
        free_q8: u32,
        ls: &LaneStats,
    ) -> Sched {
        st.chain.groups.push(GroupRef::new(0, 0, 0, 0));
        st.chain.count += 1;
        st.chain.volume += volume;
        let view = CommitView {
            cfg,
            now: 1,
            free_q8,
            max: 1 << 20,
        };
        let g = Committed {
            volume,
            lines: 1,
            size: 1024,
        };
        Pool::<arch::sim::SimMedia>::schedule(st, &g, &view, ls)
    }

    #[test]
    fn count_only_reports_the_excess_over_the_volume_threshold_it_does_not_act_on() {
        // A nearly full log: the threshold of steady 8-byte updates is 64 bytes.
        let both = CoalesceConfig::default();
        let count_only = CoalesceConfig {
            volume: false,
            ..both
        };
        let ls = LaneStats::default();
        let mut st = ObjState::default();
        let fired = (1..=16)
            .find(|_| commit(&mut st, 8, both, 0, &ls) == Sched::Now)
            .unwrap();
        assert_eq!(fired, 8, "count+volume serves the object at its threshold");
        assert_eq!(ls.by_volume.load(Relaxed), 1);
        assert_eq!(ls.over_threshold_max.load(Relaxed), 0);

        let ls = LaneStats::default();
        let mut st = ObjState::default();
        for _ in 0..15 {
            assert_eq!(commit(&mut st, 8, count_only, 0, &ls), Sched::Wait);
        }
        assert_eq!(
            ls.by_volume.load(Relaxed),
            0,
            "count-only never triggers by volume"
        );
        assert_eq!(ls.over_threshold_max.load(Relaxed), 15 * 8 - 64);
    }

    /// An object whose fourth 8-byte record queues it by count (`cfg`'s threshold 4).
    #[test]
    fn an_object_whose_write_backs_spread_over_many_lines_waits_for_a_longer_chain() {
        for volume in [false, true] {
            let cfg = CoalesceConfig {
                count_threshold: 4,
                volume,
                line_efficiency: 3,
                ..CoalesceConfig::default()
            };
            let ls = LaneStats::default();
            let mut st = ObjState {
                spread: 3,
                ..ObjState::default()
            };
            // 3 lines per write-back, 3 records per line wanted: nothing before 9
            // records, not 4; the volume threshold grows with the count (9 records of
            // 8 bytes), so it does not fire early either.
            for n in 1..9 {
                assert_eq!(commit(&mut st, 8, cfg, 256, &ls), Sched::Wait, "record {n}");
            }
            let s = commit(&mut st, 8, cfg, 256, &ls);
            if volume {
                // Both thresholds reached together: the volume one is served at once.
                assert_eq!(s, Sched::Now);
            } else {
                assert!(matches!(s, Sched::Queue(_)), "{s:?}");
            }
        }
    }

    fn queued_by_count(cfg: CoalesceConfig, ls: &LaneStats) -> ObjState {
        let mut st = ObjState::default();
        for _ in 0..3 {
            assert_eq!(commit(&mut st, 8, cfg, 256, ls), Sched::Wait);
        }
        assert!(matches!(commit(&mut st, 8, cfg, 256, ls), Sched::Queue(_)));
        st
    }

    #[test]
    fn pending_high_water_mark_sees_chains_waiting_in_the_queue() {
        let cfg = CoalesceConfig {
            count_threshold: 4,
            volume: false,
            ..CoalesceConfig::default()
        };
        let ls = LaneStats::default();
        let mut st = queued_by_count(cfg, &ls);
        // Queued, not yet written back: a rewrite lands in the chain meanwhile.
        assert_eq!(commit(&mut st, 1024, cfg, 256, &ls), Sched::Wait);
        assert_eq!(ls.pending_hwm.load(Relaxed), 32 + 1024);
        assert_eq!(ls.over_threshold_max.load(Relaxed), 32 + 1024 - 64);
    }

    #[test]
    fn a_queued_chain_that_reaches_its_volume_threshold_is_written_back_now() {
        let cfg = CoalesceConfig {
            count_threshold: 4,
            volume: true,
            ..CoalesceConfig::default()
        };
        let ls = LaneStats::default();
        let mut st = queued_by_count(cfg, &ls);
        // Waiting in the queue, a rewrite pushes the chain past its threshold: it
        // does not wait for the queue's batch.
        assert_eq!(commit(&mut st, 1024, cfg, 256, &ls), Sched::Now);
        assert_eq!(ls.by_volume.load(Relaxed), 1);
    }

    #[test]
    fn op_kinds_split_small_updates_from_rewrites() {
        assert_eq!(OpKind::of(8, 1024), OpKind::Field);
        assert_eq!(OpKind::of(64, 64), OpKind::Field);
        assert_eq!(OpKind::of(256, 1024), OpKind::Field);
        assert_eq!(OpKind::of(1024, 1024), OpKind::Rewrite);
    }
}
