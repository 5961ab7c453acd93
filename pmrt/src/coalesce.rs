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
//! Marking groups dead is lazy: the live word is updated in the cache only. Durability
//! is paid where correctness needs it: before a lane's tail moves past dead records, the
//! pending clears of *other* records of the same objects are flushed (so an older group
//! can never outlive a newer reclaimed one), and before any in-place write (undo-logged
//! or fresh large objects) the object's clears are flushed and fenced.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use arch::Media;
use hashbrown::HashMap;

use crate::log::{Lane, LaneLog};
use crate::pool::Pool;
use crate::record::LIVE_OFF;

/// Running mean and variance of a size, fixed point (Welford's method; `n` is capped so
/// old samples fade, approximating exponential weighting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Welford {
    n: u32,
    mean_q8: i128,
    m2_q16: i128,
}

const WELFORD_CAP: u32 = 256;

impl Welford {
    /// Adds a sample.
    pub fn push(&mut self, x: u64) {
        if self.n < WELFORD_CAP {
            self.n += 1;
        } else {
            // Keep the variance estimate's scale when n stops growing.
            self.m2_q16 = self.m2_q16 * i128::from(WELFORD_CAP - 1) / i128::from(WELFORD_CAP);
        }
        let x = i128::from(x) << 8;
        let delta = x - self.mean_q8;
        self.mean_q8 = (self.mean_q8 + delta / i128::from(self.n)).max(0);
        self.m2_q16 = (self.m2_q16 + delta * (x - self.mean_q8)).max(0);
    }

    /// Samples seen (capped).
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Mean, in bytes (Q8 fixed point).
    pub fn mean_q8(&self) -> u64 {
        u64::try_from(self.mean_q8).unwrap_or(u64::MAX)
    }

    /// Variance, in bytes squared (Q16 fixed point).
    pub fn var_q16(&self) -> u128 {
        if self.n < 2 {
            0
        } else {
            u128::try_from(self.m2_q16 / i128::from(self.n - 1)).unwrap_or(0)
        }
    }
}

/// Integer square root.
fn isqrt(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    let mut x = 1u128 << (u128::BITS - v.leading_zeros()).div_ceil(2);
    loop {
        let y = x.midpoint(v / x);
        if y >= x {
            return x;
        }
        x = y;
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
    pub fn pooled(&self) -> (u64, u128) {
        let [a, b] = self.kinds;
        let (na, nb) = (u128::from(a.n), u128::from(b.n));
        let n = na + nb;
        if n == 0 {
            return (0, 0);
        }
        let mean = (na * u128::from(a.mean_q8()) + nb * u128::from(b.mean_q8())) / n;
        let spread = |w: &Welford| {
            let d = u128::from(w.mean_q8()).abs_diff(mean);
            w.var_q16() + d * d
        };
        let var = (na * spread(&a) + nb * spread(&b)) / n;
        (mean as u64, var)
    }
}

/// What the threshold calculator decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThresholdInput {
    /// The object's record sizes.
    pub monitor: SizeMonitor,
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
pub fn volume_threshold(i: &ThresholdInput) -> u64 {
    let (mean_q8, var_q16) = i.monitor.pooled();
    let per_record_q8 = if mean_q8 == 0 {
        64 << 8
    } else {
        u128::from(mean_q8) + 2 * isqrt(var_q16)
    };
    let mut v = u128::from(i.count) * per_record_q8;
    v = v * u128::from(i.free_q8.clamp(32, 256)) / 256;
    let ratio_q8 = u128::from(i.reads) * 256 / u128::from(i.writes.max(1));
    let rw_q8 = (256 * 256 / (256 + ratio_q8 / 4)).max(32);
    v = v * rw_q8 / 256;
    ((v >> 8) as u64).clamp(64, i.max.max(64))
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
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            count_threshold: 16,
            volume: true,
            batch: 16,
            eager: false,
        }
    }
}

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
    /// Largest pending volume of any object seen (bytes).
    pub pending_hwm: u64,
    /// Largest amount by which an object's pending volume exceeded its volume threshold.
    pub over_threshold_max: u64,
    /// Largest single record seen (bytes).
    pub largest_record: u64,
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
    pub lane: u32,
    pub recno: u64,
    pub pos: usize,
}

#[derive(Debug, Default)]
struct Counters {
    by_count: AtomicU64,
    by_volume: AtomicU64,
    by_backpressure: AtomicU64,
    explicit: AtomicU64,
    rounds: AtomicU64,
    objects: AtomicU64,
    lines_written_back: AtomicU64,
    lines_eager: AtomicU64,
    pending_hwm: AtomicU64,
    over_threshold_max: AtomicU64,
    largest_record: AtomicU64,
}

/// The coalescing state of a pool.
pub struct Coalescer {
    config: spin::RwLock<CoalesceConfig>,
    queue: spin::Mutex<heapless::BinaryHeap<(u32, u64), heapless::binary_heap::Max, 256>>,
    unflushed: spin::Mutex<HashMap<u64, Vec<RecId>>>,
    tick: AtomicU64,
    c: Counters,
}

impl core::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coalescer")
            .field("config", &*self.config.read())
            .finish_non_exhaustive()
    }
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            config: spin::RwLock::new(CoalesceConfig::default()),
            queue: spin::Mutex::new(heapless::BinaryHeap::new()),
            unflushed: spin::Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
            c: Counters::default(),
        }
    }
}

fn max_into(a: &AtomicU64, v: u64) {
    a.fetch_max(v, Relaxed);
}

impl Coalescer {
    /// The configuration.
    pub fn config(&self) -> CoalesceConfig {
        *self.config.read()
    }

    /// Statistics.
    pub fn stats(&self) -> CoalesceStats {
        let c = &self.c;
        CoalesceStats {
            by_count: c.by_count.load(Relaxed),
            by_volume: c.by_volume.load(Relaxed),
            by_backpressure: c.by_backpressure.load(Relaxed),
            explicit: c.explicit.load(Relaxed),
            rounds: c.rounds.load(Relaxed),
            objects: c.objects.load(Relaxed),
            lines_written_back: c.lines_written_back.load(Relaxed),
            lines_eager: c.lines_eager.load(Relaxed),
            pending_hwm: c.pending_hwm.load(Relaxed),
            over_threshold_max: c.over_threshold_max.load(Relaxed),
            largest_record: c.largest_record.load(Relaxed),
        }
    }
}

/// One group a commit added: its object, logged bytes, home lines, the object's size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    pub key: u64,
    pub volume: u64,
    pub lines: u64,
    pub size: u64,
}

impl<M: Media> Pool<M> {
    /// Sets the coalescing configuration.
    pub fn set_coalesce_config(&self, cfg: CoalesceConfig) {
        *self.coalescer.config.write() = cfg;
    }

    /// Counts, thresholds and scheduling after a commit (module docs). `free_q8` is the
    /// committing lane's free log share.
    pub(crate) fn after_commit(&self, groups: &[Committed], free_q8: u32) {
        let co = &self.coalescer;
        let cfg = co.config();
        let now = co.tick.fetch_add(1, Relaxed);
        if cfg.eager {
            let keys: Vec<u64> = groups.iter().map(|g| g.key).collect();
            for g in groups {
                co.c.lines_eager.fetch_add(g.lines, Relaxed);
            }
            self.coalesce_keys(&keys, Trigger::Eager, false);
            return;
        }
        let max = (self.area.lane_bytes / 4) as u64;
        let mut queued: Vec<(u32, u64)> = Vec::new();
        let mut immediate: Vec<u64> = Vec::new();
        for g in groups {
            co.c.lines_eager.fetch_add(g.lines, Relaxed);
            max_into(&co.c.largest_record, g.volume);
            self.pending.with(g.key, |st| {
                st.writes = st.writes.saturating_add(1);
                let age = now.saturating_sub(st.last_tick);
                st.freq = (st.freq >> (age / 1024).min(31)).saturating_add(256);
                st.last_tick = now;
                st.monitor
                    .push(crate::coalesce::OpKind::of(g.volume, g.size), g.volume);
                if st.queued || st.chain.groups.is_empty() {
                    return;
                }
                max_into(&co.c.pending_hwm, st.chain.volume);
                let input = ThresholdInput {
                    monitor: st.monitor,
                    count: cfg.count_threshold,
                    free_q8,
                    reads: st.reads,
                    writes: st.writes,
                    max,
                };
                let v = volume_threshold(&input);
                if cfg.volume && st.chain.volume > v {
                    max_into(&co.c.over_threshold_max, st.chain.volume - v);
                }
                if cfg.volume && st.chain.volume >= v {
                    st.queued = true;
                    co.c.by_volume.fetch_add(1, Relaxed);
                    immediate.push(g.key);
                } else if st.chain.count >= cfg.count_threshold {
                    st.queued = true;
                    co.c.by_count.fetch_add(1, Relaxed);
                    queued.push((st.freq, g.key));
                }
            });
        }
        let mut batch: Vec<u64> = immediate;
        {
            let mut q = co.queue.lock();
            for item in queued {
                if q.push(item).is_err() {
                    // Queue full: serve this one now.
                    batch.push(item.1);
                }
            }
            if !batch.is_empty() || q.len() >= cfg.batch || free_q8 < 32 {
                while batch.len() < cfg.batch.max(1) {
                    match q.pop() {
                        Some((_, k)) => batch.push(k),
                        None => break,
                    }
                }
            }
        }
        if !batch.is_empty() {
            let why = if free_q8 < 32 {
                Trigger::BackPressure
            } else if co.c.by_volume.load(Relaxed) > 0 && batch.len() < cfg.batch {
                Trigger::Volume
            } else {
                Trigger::Count
            };
            self.coalesce_keys(&batch, why, false);
        }
        if now.is_multiple_of(65_536) {
            self.pending.trim(1 << 20, now);
        }
    }

    /// Notes a transactional read of `key` (for the read/write ratio).
    pub(crate) fn note_read(&self, key: u64) {
        self.pending
            .with(key, |st| st.reads = st.reads.saturating_add(1));
    }

    /// Writes back `keys` and marks their groups dead (module docs). With `durable`,
    /// the marks (and earlier lazy marks of these objects) are flushed and fenced too,
    /// as an in-place write of these objects needs. Returns the groups marked dead.
    pub(crate) fn coalesce_keys(&self, keys: &[u64], why: Trigger, durable: bool) -> usize {
        let co = &self.coalescer;
        let media = self.media();
        let chains: Vec<(u64, crate::pending::Chain)> = keys
            .iter()
            .map(|&k| (k, self.pending.take(k)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if chains.is_empty() && !durable {
            return 0;
        }
        // A freed object's space is released at the end of this round and may then be
        // reused by writes that are not logged (a new run's chunk entry) or logged under
        // another key. Recovery must never replay the free or older bytes over that, so
        // the dead marks of such a round are made durable before the release.
        let durable = durable || chains.iter().any(|(_, c)| c.freeing.is_some());
        // 1. Write the homes back: one fence for every object of the round.
        let mut lines = 0u64;
        for (_, c) in &chains {
            for &(off, len) in &c.ranges {
                media.flush(off as usize, len as usize);
                lines += arch::line_range(off as usize, len as usize).len() as u64;
            }
        }
        if !chains.is_empty() {
            media.fence();
        }
        // 2. Mark the groups dead, lane by lane.
        let mut cleared = 0;
        let mut lazy: Vec<(u64, RecId)> = Vec::new();
        let mut refs: Vec<(u64, crate::pending::GroupRef)> = chains
            .iter()
            .flat_map(|(k, c)| c.groups.iter().map(move |g| (*k, *g)))
            .collect();
        refs.sort_by_key(|(_, g)| (g.lane, g.recno));
        for chunk in refs.chunk_by(|a, b| a.1.lane == b.1.lane) {
            let lane: &Lane = &self.lanes[chunk[0].1.lane as usize];
            let base = self.area.log_off(chunk[0].1.lane);
            let mut recs = lane.recs.lock();
            for (key, g) in chunk {
                let Some(rm) = recs.get_mut(g.recno) else {
                    continue;
                };
                rm.live &= !(1u64 << g.group);
                media.write_u64(base + rm.pos + LIVE_OFF, rm.live | rm.tag);
                if durable {
                    media.flush(base + rm.pos + LIVE_OFF, 8);
                } else {
                    lazy.push((
                        *key,
                        RecId {
                            lane: g.lane,
                            recno: g.recno,
                            pos: rm.pos,
                        },
                    ));
                }
                cleared += 1;
            }
            recs.pop_dead();
        }
        if durable {
            // Earlier lazy marks of these objects must be durable too.
            let mut uf = co.unflushed.lock();
            for k in keys {
                for id in uf.remove(k).unwrap_or_default() {
                    media.flush(self.area.log_off(id.lane) + id.pos + LIVE_OFF, 8);
                }
            }
            drop(uf);
            media.fence();
        } else if !lazy.is_empty() {
            let mut uf = co.unflushed.lock();
            for (k, id) in lazy {
                uf.entry(k).or_default().push(id);
            }
        }
        // 3. Freed objects can be reused now.
        for (_, c) in &chains {
            if let Some(f) = &c.freeing {
                self.heap.release(f);
            }
        }
        co.c.rounds.fetch_add(1, Relaxed);
        co.c.objects.fetch_add(chains.len() as u64, Relaxed);
        co.c.lines_written_back.fetch_add(lines, Relaxed);
        match why {
            Trigger::BackPressure => co.c.by_backpressure.fetch_add(1, Relaxed),
            Trigger::Explicit => co.c.explicit.fetch_add(1, Relaxed),
            Trigger::Count | Trigger::Volume | Trigger::Eager => 0,
        };
        cleared
    }

    /// Back-pressure: coalesces the objects holding lane `lane`'s oldest live record.
    /// False if there is nothing to coalesce there.
    pub(crate) fn coalesce_front(&self, lane: u32) -> bool {
        let keys: Vec<u64> = {
            let mut r = self.lanes[lane as usize].recs.lock();
            r.pop_dead();
            match r.recs.front() {
                Some(m) => (0..64)
                    .filter(|g| m.live & (1 << g) != 0)
                    .filter_map(|g| m.keys.get(g).copied())
                    .collect(),
                None => return false,
            }
        };
        if keys.is_empty() {
            return false;
        }
        self.coalesce_keys(&keys, Trigger::BackPressure, false) > 0
    }

    /// Moves lane `log`'s persisted tail over its dead records. First makes durable
    /// the pending dead-marks of other records holding the same objects (an older group
    /// must never outlive a newer one the tail passes). False if it could not move.
    pub(crate) fn advance_tail(&self, log: &mut LaneLog, lane: &Lane) -> bool {
        let (vt, passed) = {
            let mut r = lane.recs.lock();
            r.pop_dead();
            (r.vtail(log.head), core::mem::take(&mut r.passed))
        };
        if vt == log.ptail {
            lane.recs.lock().passed.extend(passed);
            return false;
        }
        let media = self.media();
        let mut flushed = false;
        {
            let mut uf = self.coalescer.unflushed.lock();
            for (_, keys) in &passed {
                for k in keys {
                    for id in uf.remove(k).unwrap_or_default() {
                        let gone = id.lane == log.idx && passed.iter().any(|(n, _)| *n == id.recno);
                        if !gone {
                            media.flush(self.area.log_off(id.lane) + id.pos + LIVE_OFF, 8);
                            flushed = true;
                        }
                    }
                }
            }
        }
        if flushed {
            media.fence();
        }
        log.persist_tail(media, &self.area, vt);
        true
    }

    /// Writes back everything queued and pending, now.
    pub fn coalesce(&self) {
        self.coalescer.queue.lock().clear();
        let keys = self.pending.keys();
        for chunk in keys.chunks(256) {
            self.coalesce_keys(chunk, Trigger::Explicit, false);
        }
    }

    /// Writes back everything and makes every dead-mark durable (close, or before
    /// handing the pool to another program).
    pub(crate) fn coalesce_all(&self) {
        self.coalescer.queue.lock().clear();
        let mut keys = self.pending.keys();
        keys.extend(self.coalescer.unflushed.lock().keys().copied());
        keys.sort_unstable();
        keys.dedup();
        self.coalesce_keys(&keys, Trigger::Explicit, true);
        for (k, lane) in self.lanes.iter().enumerate() {
            let mut log = lane.log.lock();
            self.advance_tail(&mut log, lane);
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

    #[test]
    fn isqrt_is_exact_on_squares_and_floors_otherwise() {
        for v in [
            0u128,
            1,
            2,
            3,
            4,
            99,
            100,
            101,
            1 << 40,
            (1 << 40) + 1,
            u128::from(u64::MAX),
        ] {
            let r = isqrt(v);
            assert!(r * r <= v && (r + 1) * (r + 1) > v, "{v}");
        }
    }

    fn monitor(samples: &[(OpKind, u64)]) -> SizeMonitor {
        let mut m = SizeMonitor::default();
        for &(k, v) in samples {
            m.push(k, v);
        }
        m
    }

    fn input(m: SizeMonitor) -> ThresholdInput {
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
    fn volume_threshold_edges() {
        // No history: one line per record.
        assert_eq!(volume_threshold(&input(SizeMonitor::default())), 16 * 64);
        // Steady 8-byte updates: count * 8 (no variance), never below one line.
        let small = monitor(&[(OpKind::Field, 8); 50]);
        assert_eq!(volume_threshold(&input(small)), 128);
        // Occasional 1 KiB rewrites raise mean and variance: a larger budget, but far
        // below 16 rewrites.
        let mut mixed: Vec<(OpKind, u64)> = alloc::vec![(OpKind::Field, 8); 45];
        mixed.extend([(OpKind::Rewrite, 1024); 5]);
        let v = volume_threshold(&input(monitor(&mixed)));
        assert!(v > 128 && v < 16 * 1024, "{v}");
        // A nearly full log shrinks it (floor 1/8), a read-mostly object too.
        let full = volume_threshold(&ThresholdInput {
            free_q8: 0,
            ..input(monitor(&mixed))
        });
        assert_eq!(full, (v / 8).max(64));
        let readish = volume_threshold(&ThresholdInput {
            reads: 400,
            writes: 100,
            ..input(monitor(&mixed))
        });
        assert!(readish * 2 <= v + 1, "{readish} vs {v}");
        // Clamped to the maximum.
        let huge = monitor(&[(OpKind::Rewrite, 1 << 30); 4]);
        assert_eq!(volume_threshold(&input(huge)), 1 << 20);
    }

    #[test]
    fn op_kinds_split_small_updates_from_rewrites() {
        assert_eq!(OpKind::of(8, 1024), OpKind::Field);
        assert_eq!(OpKind::of(64, 64), OpKind::Field);
        assert_eq!(OpKind::of(256, 1024), OpKind::Field);
        assert_eq!(OpKind::of(1024, 1024), OpKind::Rewrite);
    }
}
