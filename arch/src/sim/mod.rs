//! The simulated persistence domain (host only, feature `sim`).
//!
//! Per 64-byte line the domain keeps three versions:
//! * **cache**: what the program sees (every store lands here);
//! * **pending**: a snapshot taken by `flush` (a later store does not change it);
//! * **media**: what survives a crash for sure.
//!
//! `fence` makes every pending snapshot durable (media := pending). A line is
//! *uncertain* when its cache or pending version differs from media. A crash image is
//! the media image plus, for each uncertain line and each aligned 8-byte word in it, one
//! of the word's versions (media, pending, or cache): the cache may have written the
//! line back at any time, a flush may or may not have completed, and only 8-byte words
//! are atomic. Stores to one line reach media in order on x86; choosing per word
//! over-approximates that (conservative), so code must not rely on same-line ordering.
//!
//! A hook sees the state at every store and before and after every fence, and can stop
//! the program there ([`HookAction::Crash`] unwinds with a [`SimCrash`] payload).

mod image;
mod rng;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use image::{CrashImage, Family, ImageOptions, ImageSpace, UncertainLine};
pub use rng::Rng;

use crate::media::check_range;
use crate::{Counters, Media, MediaInfo, CACHE_LINE, WORD};

/// One cache line's bytes.
pub type LineBytes = [u8; CACHE_LINE];

/// Where the program is when the hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimEvent {
    /// Just after store number `seq` (counting from 1) landed in the cache.
    Store {
        /// Stores so far.
        seq: u64,
    },
    /// Just before fence number `seq` takes effect.
    BeforeFence {
        /// Fences so far, this one included.
        seq: u64,
    },
    /// Just after fence number `seq` took effect.
    AfterFence {
        /// Fences so far, this one included.
        seq: u64,
    },
    /// A named point the code under test marked with `Media::crash_point`.
    Named(&'static str),
}

/// What the program does after the hook returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// Keep running.
    Continue,
    /// Stop here: the media call unwinds with a [`SimCrash`] payload.
    Crash,
}

/// The unwind payload of a simulated crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimCrash {
    /// Where the crash happened.
    pub at: SimEvent,
}

/// The hook's type.
pub type Hook = Box<dyn FnMut(SimEvent, &SimState) -> HookAction + Send>;

/// Statistics of a simulated media, including findings that cost time on real hardware.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Store calls (`write`, `write_u64`, `fill`, `write_nt`).
    pub stores: u64,
    /// Flushes of a line whose cache version already equalled media (wasted).
    pub redundant_flushes: u64,
    /// Fences with nothing pending (cheap on hardware, but a sign of a wasted step).
    pub empty_fences: u64,
}

/// A base image shared by many crash states; its id lets a media reset to it by
/// restoring only the lines that differ from the last reset.
#[derive(Debug, Clone)]
pub struct BaseImage {
    id: u64,
    bytes: Arc<[u8]>,
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl BaseImage {
    /// Wraps `bytes` (length a multiple of 64) with a fresh id.
    pub fn new(bytes: Vec<u8>) -> Self {
        assert_eq!(
            bytes.len() % CACHE_LINE,
            0,
            "image length must be whole lines"
        );
        BaseImage {
            id: next_id(),
            bytes: bytes.into(),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The three images and the bookkeeping behind them.
#[derive(Debug)]
pub struct SimState {
    cache: Vec<u8>,
    media: Vec<u8>,
    pending: HashMap<usize, LineBytes>,
    // Lines that may be uncertain, in first-touch order since the last fence.
    tracked: Vec<usize>,
    tracked_set: Bitset,
    // Lines stored to since the last reset, for incremental resets.
    written: Vec<usize>,
    written_set: Bitset,
    base: Option<(u64, Vec<usize>)>,
    // Identity of this state, and the lines its fences changed in media, in order: lets
    // another media reset to this one's media image by copying only what changed.
    id: u64,
    media_log: Vec<usize>,
    // The source state and log position of the last `reset_from`.
    source: Option<(u64, usize)>,
    counters: Counters,
    stats: SimStats,
    eadr: bool,
}

#[derive(Debug, Clone)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset(vec![0; bits.div_ceil(64)])
    }
    /// Sets `i`; returns whether it was clear.
    fn insert(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let was_clear = self.0[w] & b == 0;
        self.0[w] |= b;
        was_clear
    }
    fn remove(&mut self, i: usize) {
        self.0[i / 64] &= !(1u64 << (i % 64));
    }
}

impl SimState {
    fn new(image: Vec<u8>, eadr: bool) -> Self {
        assert_eq!(
            image.len() % CACHE_LINE,
            0,
            "sim media length must be whole lines"
        );
        let lines = image.len() / CACHE_LINE;
        SimState {
            cache: image.clone(),
            media: image,
            pending: HashMap::new(),
            tracked: Vec::new(),
            tracked_set: Bitset::new(lines),
            written: Vec::new(),
            written_set: Bitset::new(lines),
            base: None,
            id: next_id(),
            media_log: Vec::new(),
            source: None,
            counters: Counters::default(),
            stats: SimStats::default(),
            eadr,
        }
    }

    fn line(img: &[u8], line: usize) -> &LineBytes {
        img[line * CACHE_LINE..(line + 1) * CACHE_LINE]
            .try_into()
            .expect("line slice")
    }

    /// What the program sees.
    pub fn cache_image(&self) -> &[u8] {
        &self.cache
    }

    /// What survives every crash.
    pub fn media_image(&self) -> &[u8] {
        &self.media
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Statistics so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The uncertain lines, in the order they were first stored to since the last fence.
    pub fn uncertain(&self) -> Vec<UncertainLine> {
        self.tracked
            .iter()
            .filter_map(|&l| {
                let media = *Self::line(&self.media, l);
                let cache = *Self::line(&self.cache, l);
                let pending = self.pending.get(&l).copied().filter(|p| *p != media);
                (cache != media || pending.is_some()).then_some(UncertainLine {
                    line: l,
                    media,
                    pending,
                    cache,
                })
            })
            .collect()
    }

    /// A crash image of this state expressed as an overlay on the base image of the last
    /// `reset_to`: every line stored since then (at its media version), plus the last
    /// reset's overlay, plus `img`'s lines (chosen versions of uncertain lines). Lets a
    /// crash *inside* a recovery be replayed by resetting another media to the same
    /// base, without copying whole images.
    pub fn rebase(&self, img: &CrashImage) -> CrashImage {
        let mut lines: std::collections::BTreeMap<usize, LineBytes> =
            std::collections::BTreeMap::new();
        let prev = self.base.as_ref().map_or(&[][..], |(_, l)| l.as_slice());
        for &l in prev.iter().chain(self.written.iter()) {
            lines.insert(l, *Self::line(&self.media, l));
        }
        for (l, b) in &img.lines {
            lines.insert(*l, *b);
        }
        CrashImage {
            family: img.family,
            lines: lines.into_iter().collect(),
        }
    }

    /// The full crash image for `img` (media image plus its overlay).
    pub fn materialize(&self, img: &CrashImage) -> Vec<u8> {
        let mut out = self.media.clone();
        img.apply(&mut out);
        out
    }

    fn track(&mut self, off: usize, len: usize) {
        for l in crate::line_range(off, len) {
            if self.tracked_set.insert(l) {
                self.tracked.push(l);
            }
            if self.written_set.insert(l) {
                self.written.push(l);
            }
        }
    }

    fn store(&mut self, off: usize, data: &[u8]) {
        self.cache[off..off + data.len()].copy_from_slice(data);
        if self.eadr {
            self.media[off..off + data.len()].copy_from_slice(data);
            for l in crate::line_range(off, data.len()) {
                if self.written_set.insert(l) {
                    self.written.push(l);
                }
            }
        } else {
            self.track(off, data.len());
        }
        self.counters.bytes_written += data.len() as u64;
        self.stats.stores += 1;
    }

    fn flush(&mut self, off: usize, len: usize, count: bool) {
        for l in crate::line_range(off, len) {
            if count {
                self.counters.lines_flushed += 1;
            }
            if self.eadr {
                continue;
            }
            let cache = *Self::line(&self.cache, l);
            if cache == *Self::line(&self.media, l) && !self.pending.contains_key(&l) {
                self.stats.redundant_flushes += 1;
                continue;
            }
            self.pending.insert(l, cache);
            if self.tracked_set.insert(l) {
                self.tracked.push(l);
            }
        }
    }

    fn fence(&mut self) {
        self.counters.fences += 1;
        if self.pending.is_empty() {
            self.stats.empty_fences += 1;
        }
        for (l, snap) in self.pending.drain() {
            self.media[l * CACHE_LINE..(l + 1) * CACHE_LINE].copy_from_slice(&snap);
            self.media_log.push(l);
        }
        let (cache, media) = (&self.cache, &self.media);
        let set = &mut self.tracked_set;
        self.tracked.retain(|&l| {
            let keep = Self::line(cache, l) != Self::line(media, l);
            if !keep {
                set.remove(l);
            }
            keep
        });
    }

    /// Resets all three images to `base` plus `overlay`, as after a crash. When `base`
    /// is the one of the previous reset, only lines touched since then are copied.
    fn reset(&mut self, base: &BaseImage, overlay: &CrashImage) {
        assert_eq!(
            base.bytes.len(),
            self.cache.len(),
            "base image length differs"
        );
        let incremental = matches!(&self.base, Some((id, _)) if *id == base.id);
        if incremental {
            let (_, prev_overlay) = self.base.take().unwrap_or_default();
            for l in prev_overlay.into_iter().chain(self.written.drain(..)) {
                let r = l * CACHE_LINE..(l + 1) * CACHE_LINE;
                self.cache[r.clone()].copy_from_slice(&base.bytes[r.clone()]);
                self.media[r.clone()].copy_from_slice(&base.bytes[r]);
            }
        } else {
            self.cache.copy_from_slice(&base.bytes);
            self.media.copy_from_slice(&base.bytes);
            self.written.clear();
        }
        self.written_set = Bitset::new(self.cache.len() / CACHE_LINE);
        overlay.apply(&mut self.cache);
        overlay.apply(&mut self.media);
        self.pending.clear();
        self.tracked.clear();
        self.tracked_set = Bitset::new(self.cache.len() / CACHE_LINE);
        self.base = Some((base.id, overlay.lines.iter().map(|(l, _)| *l).collect()));
        self.source = None;
        self.counters = Counters::default();
        self.stats = SimStats::default();
    }

    /// Resets all three images to `src`'s media image plus `overlay`. When the last
    /// reset came from the same `src`, copies only the lines stored here since, the
    /// last overlay, and the lines `src`'s fences changed since.
    fn reset_from(&mut self, src: &SimState, overlay: &CrashImage) {
        assert_eq!(src.media.len(), self.cache.len(), "source length differs");
        let restore = |me: &mut SimState, l: usize| {
            let r = l * CACHE_LINE..(l + 1) * CACHE_LINE;
            me.cache[r.clone()].copy_from_slice(&src.media[r.clone()]);
            me.media[r.clone()].copy_from_slice(&src.media[r]);
        };
        match self.source {
            Some((id, pos)) if id == src.id && pos <= src.media_log.len() => {
                let prev = self.base.take().map(|(_, l)| l).unwrap_or_default();
                let written = std::mem::take(&mut self.written);
                for &l in prev
                    .iter()
                    .chain(written.iter())
                    .chain(src.media_log[pos..].iter())
                {
                    restore(self, l);
                }
            }
            _ => {
                self.cache.copy_from_slice(&src.media);
                self.media.copy_from_slice(&src.media);
                self.written.clear();
            }
        }
        self.written_set = Bitset::new(self.cache.len() / CACHE_LINE);
        overlay.apply(&mut self.cache);
        overlay.apply(&mut self.media);
        self.pending.clear();
        self.tracked.clear();
        self.tracked_set = Bitset::new(self.cache.len() / CACHE_LINE);
        self.base = Some((0, overlay.lines.iter().map(|(l, _)| *l).collect()));
        self.source = Some((src.id, src.media_log.len()));
        self.counters = Counters::default();
        self.stats = SimStats::default();
    }
}

/// A simulated persistent range. See the module documentation.
pub struct SimMedia {
    state: Mutex<SimState>,
    hook: Mutex<Option<Hook>>,
}

impl core::fmt::Debug for SimMedia {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimMedia")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl SimMedia {
    /// A zeroed media of `len` bytes (rounded up to whole lines), ADR semantics.
    pub fn new(len: usize) -> Self {
        Self::from_image(vec![0; len.next_multiple_of(CACHE_LINE)])
    }

    /// A media whose cache and media images both start as `image` (a crash image being
    /// reopened). Length must be whole lines.
    pub fn from_image(image: Vec<u8>) -> Self {
        SimMedia {
            state: Mutex::new(SimState::new(image, false)),
            hook: Mutex::new(None),
        }
    }

    /// A media with eADR semantics: every store is durable when made, flushes are
    /// no-ops, fences are still counted.
    pub fn new_eadr(len: usize) -> Self {
        let m = Self::new(len);
        m.lock().eadr = true;
        m
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock (a simulated crash unwinds after releasing it)
        // leaves consistent images: each mutation completes before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Installs the hook called at every store and around every fence. It must not call
    /// back into this media.
    pub fn set_hook(&self, hook: Hook) {
        *self
            .hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
    }

    /// Removes the hook.
    pub fn clear_hook(&self) {
        *self
            .hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Runs `f` on the current state (images, uncertain lines, counters).
    pub fn with_state<R>(&self, f: impl FnOnce(&SimState) -> R) -> R {
        f(&self.lock())
    }

    /// Statistics so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// Resets to `base` + `overlay` (see [`BaseImage`]); clears counters and statistics.
    pub fn reset_to(&self, base: &BaseImage, overlay: &CrashImage) {
        self.lock().reset(base, overlay);
    }

    /// Resets to `src`'s media image plus `overlay` (a crash image of the media `src`
    /// belongs to), copying only what changed since the last reset from the same
    /// source. Clears counters and statistics. `src` must not be this media's own state.
    pub fn reset_from(&self, src: &SimState, overlay: &CrashImage) {
        self.lock().reset_from(src, overlay);
    }

    /// The crash image in which exactly what was fenced survived.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().media.clone()
    }

    fn event(&self, ev: SimEvent, state: &SimState) {
        let mut hook = self
            .hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = hook.as_mut() {
            if h(ev, state) == HookAction::Crash {
                drop(hook);
                std::panic::panic_any(SimCrash { at: ev });
            }
        }
    }

    fn after_store(&self, st: &SimState) {
        self.event(
            SimEvent::Store {
                seq: st.stats.stores,
            },
            st,
        );
    }
}

/// Installs a panic hook that stays quiet for [`SimCrash`] unwinds and forwards every
/// other panic to the previous hook. Idempotent enough to call from every test.
pub fn silence_crash_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<SimCrash>().is_none() {
                prev(info);
            }
        }));
    });
}

impl Media for SimMedia {
    fn len(&self) -> usize {
        self.lock().cache.len()
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        let st = self.lock();
        check_range(st.cache.len(), off, buf.len());
        buf.copy_from_slice(&st.cache[off..off + buf.len()]);
    }

    fn write(&self, off: usize, data: &[u8]) {
        let mut st = self.lock();
        check_range(st.cache.len(), off, data.len());
        st.store(off, data);
        self.after_store(&st);
    }

    fn fill(&self, off: usize, len: usize, byte: u8) {
        let mut st = self.lock();
        check_range(st.cache.len(), off, len);
        st.store(off, &vec![byte; len]);
        self.after_store(&st);
    }

    fn read_u64(&self, off: usize) -> u64 {
        let st = self.lock();
        check_range(st.cache.len(), off, WORD);
        assert_eq!(off % WORD, 0, "unaligned word read at {off:#x}");
        u64::from_le_bytes(st.cache[off..off + WORD].try_into().expect("word"))
    }

    fn write_u64(&self, off: usize, v: u64) {
        let mut st = self.lock();
        check_range(st.cache.len(), off, WORD);
        assert_eq!(off % WORD, 0, "unaligned word write at {off:#x}");
        st.store(off, &v.to_le_bytes());
        self.after_store(&st);
    }

    fn write_nt(&self, off: usize, data: &[u8]) {
        // Modelled as a store plus a flush of the lines written: durable at the next
        // fence, possibly earlier, torn per word until then.
        let mut st = self.lock();
        check_range(st.cache.len(), off, data.len());
        st.store(off, data);
        st.flush(off, data.len(), false);
        st.counters.nt_bytes += data.len() as u64;
        self.after_store(&st);
    }

    fn flush(&self, off: usize, len: usize) {
        let mut st = self.lock();
        check_range(st.cache.len(), off, len);
        st.flush(off, len, true);
    }

    fn fence(&self) {
        let mut st = self.lock();
        let seq = st.counters.fences + 1;
        self.event(SimEvent::BeforeFence { seq }, &st);
        st.fence();
        self.event(SimEvent::AfterFence { seq }, &st);
    }

    fn crash_point(&self, name: &'static str) {
        let st = self.lock();
        self.event(SimEvent::Named(name), &st);
    }

    fn counters(&self) -> Counters {
        self.lock().counters
    }

    fn info(&self) -> MediaInfo {
        MediaInfo {
            kind: "sim",
            flush: None,
            eadr: self.lock().eadr,
        }
    }
}

#[cfg(test)]
mod tests;
