//! Crash images: which version of each uncertain word survives.
//!
//! An [`ImageSpace`] holds the uncertain lines at one crash point; [`ImageSpace::images`]
//! yields a seeded, reproducible, de-duplicated list of crash images from these families:
//! * `Durable`: only what was fenced (every line at its media version);
//! * `Everything`: every store reached media (every line at its cache version);
//! * `Flushed`: every flush completed, nothing else was written back;
//! * `Exhaustive(i)`: when the product of each line's distinct versions is small enough,
//!   every combination, line-atomic;
//! * otherwise `SingleLine`, `AllButOne`, program-order `Prefix` / `Suffix` (PMDK
//!   `pmreorder`'s `Accumulative` / `ReverseAccumulative`) and `RandomLines` subsets;
//! * `RandomWords`: per-word tearing, each aligned 8-byte word independently at one of
//!   its versions.

use std::collections::HashSet;

use super::{LineBytes, Rng};
use crate::{CACHE_LINE, WORD};

/// One uncertain line and its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncertainLine {
    /// Line index (byte offset / 64).
    pub line: usize,
    /// The durable version.
    pub media: LineBytes,
    /// The snapshot of an unfenced flush, if it differs from media.
    pub pending: Option<LineBytes>,
    /// What the program sees.
    pub cache: LineBytes,
}

impl UncertainLine {
    /// The distinct line versions: media first, then pending, then cache.
    pub fn versions(&self) -> Vec<LineBytes> {
        let mut v = vec![self.media];
        for cand in self.pending.iter().chain(core::iter::once(&self.cache)) {
            if !v.contains(cand) {
                v.push(*cand);
            }
        }
        v
    }

    /// The distinct versions of word `w` (0..8) of this line.
    pub fn word_versions(&self, w: usize) -> Vec<[u8; WORD]> {
        let mut v: Vec<[u8; WORD]> = Vec::with_capacity(3);
        for line in core::iter::once(&self.media)
            .chain(self.pending.iter())
            .chain(core::iter::once(&self.cache))
        {
            let word: [u8; WORD] = line[w * WORD..(w + 1) * WORD].try_into().expect("word");
            if !v.contains(&word) {
                v.push(word);
            }
        }
        v
    }
}

/// How a crash image was chosen (printed when a check fails, for replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Only fenced data survived.
    Durable,
    /// Every store survived.
    Everything,
    /// Every flush completed.
    Flushed,
    /// Combination number `i` of the exhaustive enumeration.
    Exhaustive(u64),
    /// Only uncertain line number `i` (in program order) reached its cache version.
    SingleLine(usize),
    /// Every uncertain line but number `i` reached its cache version.
    AllButOne(usize),
    /// The first `n` uncertain lines in program order reached their cache version.
    Prefix(usize),
    /// The last `n` uncertain lines in program order reached their cache version.
    Suffix(usize),
    /// A random line-atomic subset, sample `i`.
    RandomLines(u64),
    /// A random per-word tearing, sample `i`.
    RandomWords(u64),
}

/// A crash image as an overlay of whole lines on the media image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashImage {
    /// How it was chosen.
    pub family: Family,
    /// Lines whose surviving bytes differ from the media image.
    pub lines: Vec<(usize, LineBytes)>,
}

impl CrashImage {
    /// The image in which only fenced data survived (no overlay).
    pub fn durable() -> Self {
        CrashImage {
            family: Family::Durable,
            lines: Vec::new(),
        }
    }

    /// Writes the overlay into `image` (a copy of the media image).
    pub fn apply(&self, image: &mut [u8]) {
        for (l, bytes) in &self.lines {
            image[l * CACHE_LINE..(l + 1) * CACHE_LINE].copy_from_slice(bytes);
        }
    }

    fn key(&self) -> u64 {
        // FNV-1a over the overlay: cheap de-duplication of equal images.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (l, bytes) in &self.lines {
            for b in (*l as u64).to_le_bytes().iter().chain(bytes.iter()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
}

/// How many images to produce per crash point.
#[derive(Debug, Clone, Copy)]
pub struct ImageOptions {
    /// Enumerate every line-atomic combination when there are at most this many.
    pub exhaustive_limit: u64,
    /// Random line subsets when not exhaustive.
    pub random_lines: u64,
    /// Random per-word tearings (always, when some line has more than one word version).
    pub random_words: u64,
    /// With many uncertain lines, the single-line / all-but-one / prefix / suffix
    /// families use at most this many evenly spaced positions each.
    pub family_positions: usize,
    /// At most this many images per point (the first families in order, then a seeded
    /// sample of the rest); 0 = no limit.
    pub max_images: usize,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            exhaustive_limit: 4096,
            random_lines: 16,
            random_words: 4,
            family_positions: 16,
            max_images: 48,
        }
    }
}

/// The uncertain lines at one crash point.
#[derive(Debug, Clone)]
pub struct ImageSpace {
    lines: Vec<UncertainLine>,
}

impl ImageSpace {
    /// The space over `lines` (program order).
    pub fn new(lines: Vec<UncertainLine>) -> Self {
        ImageSpace { lines }
    }

    /// The uncertain lines.
    pub fn lines(&self) -> &[UncertainLine] {
        &self.lines
    }

    /// Number of line-atomic combinations (saturating).
    pub fn combinations(&self) -> u64 {
        self.lines
            .iter()
            .fold(1u64, |acc, l| acc.saturating_mul(l.versions().len() as u64))
    }

    fn choose(
        &self,
        family: Family,
        mut pick: impl FnMut(usize, &UncertainLine) -> LineBytes,
    ) -> CrashImage {
        let lines = self
            .lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let b = pick(i, l);
                (b != l.media).then_some((l.line, b))
            })
            .collect();
        CrashImage { family, lines }
    }

    /// The images for this point, de-duplicated, in a reproducible order for `seed`.
    pub fn images(&self, opts: &ImageOptions, seed: u64) -> Vec<CrashImage> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut push = |img: CrashImage, out: &mut Vec<CrashImage>| {
            if seen.insert(img.key()) {
                out.push(img);
            }
        };
        push(CrashImage::durable(), &mut out);
        if self.lines.is_empty() {
            return out;
        }
        push(self.choose(Family::Everything, |_, l| l.cache), &mut out);
        push(
            self.choose(Family::Flushed, |_, l| l.pending.unwrap_or(l.media)),
            &mut out,
        );
        let versions: Vec<Vec<LineBytes>> =
            self.lines.iter().map(UncertainLine::versions).collect();
        let combos = self.combinations();
        let mut rng = Rng::new(seed);
        if combos <= opts.exhaustive_limit {
            for i in 0..combos {
                let mut rest = i;
                let img = self.choose(Family::Exhaustive(i), |k, _| {
                    let n = versions[k].len() as u64;
                    let v = versions[k][(rest % n) as usize];
                    rest /= n;
                    v
                });
                push(img, &mut out);
            }
        } else {
            let n = self.lines.len();
            let cap = opts.family_positions.max(2);
            let positions: Vec<usize> = if n <= cap {
                (0..n).collect()
            } else {
                (0..cap).map(|j| j * (n - 1) / (cap - 1)).collect()
            };
            let cache_if = |pred: &dyn Fn(usize) -> bool, k: usize, l: &UncertainLine| {
                if pred(k) {
                    l.cache
                } else {
                    l.media
                }
            };
            for &i in &positions {
                push(
                    self.choose(Family::SingleLine(i), |k, l| cache_if(&|k| k == i, k, l)),
                    &mut out,
                );
                push(
                    self.choose(Family::AllButOne(i), |k, l| cache_if(&|k| k != i, k, l)),
                    &mut out,
                );
            }
            for &p in positions.iter().filter(|&&p| p > 0) {
                push(
                    self.choose(Family::Prefix(p), |k, l| cache_if(&|k| k < p, k, l)),
                    &mut out,
                );
                push(
                    self.choose(Family::Suffix(p), |k, l| cache_if(&|k| k >= n - p, k, l)),
                    &mut out,
                );
            }
            for s in 0..opts.random_lines {
                let img = self.choose(Family::RandomLines(s), |k, _| {
                    versions[k][rng.below(versions[k].len() as u64) as usize]
                });
                push(img, &mut out);
            }
        }
        let torn_words = self
            .lines
            .iter()
            .any(|l| (0..CACHE_LINE / WORD).any(|w| l.word_versions(w).len() > 1));
        if torn_words {
            for s in 0..opts.random_words {
                let img = self.choose(Family::RandomWords(s), |_, l| {
                    let mut b = l.media;
                    for w in 0..CACHE_LINE / WORD {
                        let vs = l.word_versions(w);
                        let pick = vs[rng.below(vs.len() as u64) as usize];
                        b[w * WORD..(w + 1) * WORD].copy_from_slice(&pick);
                    }
                    b
                });
                push(img, &mut out);
            }
        }
        if opts.max_images > 0 && out.len() > opts.max_images {
            // Keep the first families (durable, everything, flushed) and a seeded
            // sample of the rest.
            let keep = 3.min(opts.max_images);
            let mut rest = out.split_off(keep);
            while out.len() < opts.max_images && !rest.is_empty() {
                let k = rng.below(rest.len() as u64) as usize;
                out.push(rest.swap_remove(k));
            }
        }
        out
    }
}
