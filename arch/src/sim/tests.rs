//! Tests of the simulator's semantics. The properties are checked against a tiny spec
//! model (three versions per line) that shares no code with the implementation.

use proptest::prelude::*;

use super::*;

const LINES: usize = 6;
const LEN: usize = LINES * CACHE_LINE;

#[derive(Debug, Clone)]
enum Op {
    Write { off: usize, val: u8, len: usize },
    Word { word: usize, val: u64 },
    Flush { line: usize, n: usize },
    Fence,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..LEN, 1..=255u8, 1..24usize).prop_map(|(off, val, len)| Op::Write { off, val, len: len.min(LEN - off) }),
        2 => (0..LEN / WORD, any::<u64>()).prop_map(|(word, val)| Op::Word { word, val }),
        2 => (0..LINES, 1..3usize).prop_map(|(line, n)| Op::Flush { line, n: n.min(LINES - line) }),
        1 => Just(Op::Fence),
    ]
}

/// The spec: per line a media, an optional pending and a cache version, plus what the
/// crash images may contain per word.
#[derive(Debug)]
struct Model {
    media: Vec<u8>,
    pending: Vec<Option<Vec<u8>>>,
    cache: Vec<u8>,
    /// Per line: the value every crash image must show, when the line was flushed
    /// after its last store and a fence followed.
    guaranteed: Vec<Option<Vec<u8>>>,
    stored_since_flush: Vec<bool>,
    /// Per word, every value it ever held.
    history: Vec<Vec<[u8; 8]>>,
}

impl Model {
    fn new() -> Self {
        Model {
            media: vec![0; LEN],
            pending: vec![None; LINES],
            cache: vec![0; LEN],
            guaranteed: vec![Some(vec![0; CACHE_LINE]); LINES],
            stored_since_flush: vec![false; LINES],
            history: vec![vec![[0; 8]]; LEN / WORD],
        }
    }
    fn line(v: &[u8], l: usize) -> &[u8] {
        &v[l * CACHE_LINE..(l + 1) * CACHE_LINE]
    }
    fn apply(&mut self, op: &Op, m: &SimMedia) {
        match *op {
            Op::Write { off, val, len } => {
                let data = vec![val; len];
                m.write(off, &data);
                self.store(off, &data);
            }
            Op::Word { word, val } => {
                m.write_u64(word * WORD, val);
                self.store(word * WORD, &val.to_le_bytes());
            }
            Op::Flush { line, n } => {
                m.flush(line * CACHE_LINE, n * CACHE_LINE);
                for l in line..line + n {
                    self.pending[l] = Some(Self::line(&self.cache, l).to_vec());
                    self.stored_since_flush[l] = false;
                }
            }
            Op::Fence => {
                m.fence();
                for l in 0..LINES {
                    if let Some(p) = self.pending[l].take() {
                        self.media[l * CACHE_LINE..(l + 1) * CACHE_LINE].copy_from_slice(&p);
                        if !self.stored_since_flush[l] {
                            self.guaranteed[l] = Some(p);
                        }
                    }
                }
            }
        }
    }
    fn store(&mut self, off: usize, data: &[u8]) {
        self.cache[off..off + data.len()].copy_from_slice(data);
        for l in crate::line_range(off, data.len()) {
            self.stored_since_flush[l] = true;
            self.guaranteed[l] = None;
        }
        for w in off / WORD..(off + data.len()).div_ceil(WORD) {
            let word: [u8; 8] = self.cache[w * WORD..(w + 1) * WORD].try_into().unwrap();
            if !self.history[w].contains(&word) {
                self.history[w].push(word);
            }
        }
    }
}

fn all_images(m: &SimMedia, seed: u64) -> Vec<Vec<u8>> {
    m.with_state(|st| {
        let space = ImageSpace::new(st.uncertain());
        let opts = ImageOptions {
            exhaustive_limit: 1 << 12,
            random_lines: 8,
            random_words: 16,
            family_positions: 64,
            max_images: 0,
        };
        space
            .images(&opts, seed)
            .iter()
            .map(|img| st.materialize(img))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A line flushed after its last store, then fenced, survives in every crash image.
    #[test]
    fn fenced_line_survives_every_crash_image(ops in proptest::collection::vec(op(), 1..40), seed in any::<u64>()) {
        let m = SimMedia::new(LEN);
        let mut model = Model::new();
        for op in &ops {
            model.apply(op, &m);
        }
        for img in all_images(&m, seed) {
            for l in 0..LINES {
                if let Some(g) = &model.guaranteed[l] {
                    prop_assert_eq!(Model::line(&img, l), &g[..], "line {} lost after fence", l);
                }
            }
        }
    }

    /// Tearing is per aligned 8-byte word: every word of every image is a value that word
    /// really held (never a mix of two versions' bytes), and only media/pending/cache
    /// versions of the current point.
    #[test]
    fn tearing_never_splits_an_aligned_word(ops in proptest::collection::vec(op(), 1..40), seed in any::<u64>()) {
        let m = SimMedia::new(LEN);
        let mut model = Model::new();
        for op in &ops {
            model.apply(op, &m);
        }
        for img in all_images(&m, seed) {
            for w in 0..LEN / WORD {
                let word: [u8; 8] = img[w * WORD..(w + 1) * WORD].try_into().unwrap();
                prop_assert!(model.history[w].contains(&word), "word {} = {:?} never held", w, word);
                let l = w * WORD / CACHE_LINE;
                let r = w * WORD..(w + 1) * WORD;
                let ok = model.media[r.clone()] == word
                    || model.cache[r.clone()] == word
                    || model.pending[l].as_ref().is_some_and(|p| p[r.start % CACHE_LINE..r.end - l * CACHE_LINE] == word);
                prop_assert!(ok, "word {} not one of its current versions", w);
            }
        }
    }

    /// A stored but unflushed line may or may not survive: both its durable and its
    /// cached version occur among the images.
    #[test]
    fn unflushed_line_may_or_may_not_survive(ops in proptest::collection::vec(op(), 1..30), seed in any::<u64>()) {
        let m = SimMedia::new(LEN);
        let mut model = Model::new();
        for op in &ops {
            model.apply(op, &m);
        }
        let images = all_images(&m, seed);
        for l in 0..LINES {
            if model.pending[l].is_none() && Model::line(&model.cache, l) != Model::line(&model.media, l) {
                prop_assert!(images.iter().any(|i| Model::line(i, l) == Model::line(&model.media, l)), "old version of line {} never survives", l);
                prop_assert!(images.iter().any(|i| Model::line(i, l) == Model::line(&model.cache, l)), "new version of line {} never survives", l);
            }
        }
    }

    /// A flush without a fence guarantees nothing: the durable version still occurs.
    #[test]
    fn flush_without_fence_is_not_durable(ops in proptest::collection::vec(op(), 1..30), line in 0..LINES, val in 1..=255u8, seed in any::<u64>()) {
        let m = SimMedia::new(LEN);
        let mut model = Model::new();
        for op in &ops {
            model.apply(op, &m);
        }
        model.apply(&Op::Fence, &m);
        let before = Model::line(&model.media, line).to_vec();
        model.apply(&Op::Write { off: line * CACHE_LINE, val, len: CACHE_LINE }, &m);
        model.apply(&Op::Flush { line, n: 1 }, &m);
        let images = all_images(&m, seed);
        if before != vec![val; CACHE_LINE] {
            prop_assert!(images.iter().any(|i| Model::line(i, line) == &before[..]));
        }
        prop_assert!(images.iter().any(|i| Model::line(i, line) == &[val; CACHE_LINE][..]));
    }
}

#[test]
fn durable_image_is_exactly_what_was_fenced() {
    let m = SimMedia::new(256);
    m.write(0, &[1; 64]);
    m.flush(0, 64);
    m.fence();
    m.write(64, &[2; 64]);
    m.flush(64, 64);
    m.write(128, &[3; 64]);
    let d = m.durable_image();
    assert_eq!(&d[0..64], &[1; 64]);
    assert_eq!(&d[64..192], &[0; 128]);
}

#[test]
fn store_after_flush_is_not_in_the_pending_snapshot() {
    let m = SimMedia::new(128);
    m.write(0, &[1; 8]);
    m.flush(0, 64);
    m.write(0, &[2; 8]);
    m.fence();
    assert_eq!(&m.durable_image()[0..8], &[1; 8]);
    let u = m.with_state(SimState::uncertain);
    assert_eq!(u.len(), 1);
    assert_eq!(&u[0].cache[0..8], &[2; 8]);
}

#[test]
fn hook_crash_unwinds_with_the_crash_point() {
    silence_crash_panics();
    let m = SimMedia::new(128);
    m.set_hook(Box::new(|ev, _| {
        if ev == (SimEvent::BeforeFence { seq: 2 }) {
            HookAction::Crash
        } else {
            HookAction::Continue
        }
    }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.write(0, &[1; 8]);
        m.persist(0, 8);
        m.write(8, &[2; 8]);
        m.persist(8, 8);
        unreachable!("second fence must crash");
    }));
    let payload = r.unwrap_err();
    let crash = payload
        .downcast_ref::<SimCrash>()
        .expect("SimCrash payload");
    assert_eq!(crash.at, SimEvent::BeforeFence { seq: 2 });
    // The first fence took effect, the second did not.
    let d = m.durable_image();
    assert_eq!(&d[0..8], &[1; 8]);
    assert_eq!(&d[8..16], &[0; 8]);
}

#[test]
fn hook_sees_every_store_and_named_point() {
    let m = SimMedia::new(128);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    m.set_hook(Box::new(move |ev, _| {
        s2.lock().unwrap().push(ev);
        HookAction::Continue
    }));
    m.write(0, &[1]);
    m.write_u64(8, 5);
    m.crash_point("here");
    m.fence();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            SimEvent::Store { seq: 1 },
            SimEvent::Store { seq: 2 },
            SimEvent::Named("here"),
            SimEvent::BeforeFence { seq: 1 },
            SimEvent::AfterFence { seq: 1 }
        ]
    );
}

#[test]
fn reset_incremental_equals_reset_full() {
    let base = BaseImage::new((0..1024u32).map(|i| (i % 251) as u8).collect());
    let overlay = CrashImage {
        family: Family::Durable,
        lines: vec![(3, [9; 64])],
    };
    let a = SimMedia::new(1024);
    a.reset_to(&base, &overlay);
    a.write(500, &[7; 100]);
    a.persist(500, 100);
    // Second reset with the same base restores only touched lines.
    let overlay2 = CrashImage {
        family: Family::Durable,
        lines: vec![(5, [4; 64])],
    };
    a.reset_to(&base, &overlay2);
    let b = SimMedia::from_image(base.bytes().to_vec());
    b.reset_to(&BaseImage::new(base.bytes().to_vec()), &overlay2);
    let mut ba = vec![0; 1024];
    let mut bb = vec![0; 1024];
    a.read(0, &mut ba);
    b.read(0, &mut bb);
    assert_eq!(ba, bb);
    assert_eq!(a.durable_image(), b.durable_image());
}

#[test]
fn perf_findings_count_redundant_flushes_and_empty_fences() {
    let m = SimMedia::new(128);
    m.flush(0, 64);
    m.fence();
    m.write(0, &[1]);
    m.persist(0, 1);
    let s = m.stats();
    assert_eq!(s.redundant_flushes, 1);
    assert_eq!(s.empty_fences, 1);
}

#[test]
fn eadr_media_makes_every_store_durable() {
    let m = SimMedia::new_eadr(128);
    m.write(0, &[5; 10]);
    assert_eq!(&m.durable_image()[0..10], &[5; 10]);
    assert!(m.with_state(SimState::uncertain).is_empty());
    assert!(m.info().eadr);
}

#[test]
fn exhaustive_family_covers_every_line_subset() {
    let m = SimMedia::new(64 * 4);
    for l in 0..3 {
        m.write(l * 64, &[u8::try_from(l).unwrap() + 1; 64]);
    }
    let space = m.with_state(|st| ImageSpace::new(st.uncertain()));
    assert_eq!(space.combinations(), 8);
    let imgs = space.images(&ImageOptions::default(), 1);
    let subsets: std::collections::HashSet<Vec<usize>> = imgs
        .iter()
        .map(|i| i.lines.iter().map(|(l, _)| *l).collect())
        .collect();
    assert_eq!(subsets.len(), 8, "all 2^3 subsets");
}

#[test]
fn images_are_reproducible_from_the_seed() {
    let m = SimMedia::new(64 * 40);
    for l in 0..30 {
        m.write(l * 64 + 3, &[l as u8 + 1; 20]);
    }
    let space = m.with_state(|st| ImageSpace::new(st.uncertain()));
    let a = space.images(&ImageOptions::default(), 42);
    let b = space.images(&ImageOptions::default(), 42);
    assert_eq!(a, b);
    assert!(a.iter().any(|i| matches!(i.family, Family::Prefix(_))));
    assert!(a.iter().any(|i| matches!(i.family, Family::RandomWords(_))));
}

#[test]
fn reset_from_a_live_state_tracks_its_fences() {
    let src = SimMedia::new(64 * 16);
    let dst = SimMedia::new(64 * 16);
    src.write(0, &[1; 64]);
    src.persist(0, 64);
    let overlay = CrashImage {
        family: Family::Durable,
        lines: vec![(5, [9; 64])],
    };
    src.with_state(|st| dst.reset_from(st, &overlay));
    dst.write(64 * 7, &[3; 8]);
    src.write(64 * 2, &[2; 64]);
    src.persist(64 * 2, 64);
    src.with_state(|st| dst.reset_from(st, &CrashImage::durable()));
    let mut a = vec![0; 64 * 16];
    dst.read(0, &mut a);
    assert_eq!(a, src.durable_image());
    assert_eq!(dst.durable_image(), src.durable_image());
}
