//! `pmbench fence-cost`: what one fence costs on this machine when it waits for `n`
//! flushed lines, through our own media primitives (`arch`: store, `clwb`, `sfence`) on a
//! file in the pool folder. Every ratio against PMDK turns on this number (the issues
//! quote 110-170 ns for one line; a shared machine drifts from it hour to hour), so the
//! figures come with the command that measures them, side by side with the workloads.
//!
//! Two placements of the lines: *hot* (the first `n` lines of the file every time, so
//! always in the cache: a log head or a lane's record slots) and *cold* (a random line
//! of 64 MiB each time: object homes written back; the store's own cache miss is
//! included, as a write-back pays it too). A third column stores the `n` lines with
//! non-temporal stores instead (`Media::write_nt`, no flush), as log and op records
//! are written: the lines of a ring walked in order, each a lap old.

use std::fmt::Write as _;
use std::path::Path;

use arch::{FileMedia, FileOptions, Media};

use crate::rng::SplitMix64;
use crate::stats::Summary;

/// Bytes of the file the cold lines are drawn from.
const SPAN: usize = 64 << 20;
/// Fences per timed sample.
const FENCES: u32 = 100_000;
/// Line counts measured: 0 (a fence with nothing to wait for) to this.
const MAX_LINES: usize = 6;

/// The median ns per fence for each placement and line count.
#[derive(Debug, Clone)]
pub struct FenceCost {
    /// `hot[n]`: `n` hot lines per fence.
    pub hot: Vec<Summary>,
    /// `cold[n]`: `n` random lines per fence.
    pub cold: Vec<Summary>,
    /// `nt[n]`: `n` lines of a 2 MiB ring stored non-temporally per fence.
    pub nt: Vec<Summary>,
}

/// Measures `rounds` samples of every line count, interleaved, on a file in `dir`.
pub fn measure(dir: &Path, rounds: u32) -> Result<FenceCost, arch::FileMediaError> {
    let path = dir.join(format!("pmbench-{}-fence-cost.pool", std::process::id()));
    let media = FileMedia::open(
        &path,
        FileOptions {
            create_len: Some(SPAN),
            force_pmem: true,
            eadr: false,
        },
    );
    // Unlinked at once: the mapping keeps the memory until the end.
    let _ = std::fs::remove_file(&path);
    let media = media?;
    media.fill(0, SPAN, 0);
    let rounds = rounds.max(1);
    let mut rng = SplitMix64::new(0xfe7c);
    let mut hot = vec![Vec::new(); MAX_LINES + 1];
    let mut cold = vec![Vec::new(); MAX_LINES + 1];
    let mut nt = vec![Vec::new(); MAX_LINES + 1];
    let line = [0x5au8; 64];
    let mut ring = 0;
    let flushed = |media: &FileMedia, off: usize, i: u32| {
        media.write_u64(off, u64::from(i));
        media.flush(off, 8);
    };
    for _ in 0..rounds {
        for n in 0..=MAX_LINES {
            hot[n].push(sample(&media, n, |k, i| flushed(&media, k * 64, i)));
            cold[n].push(sample(&media, n, |_, i| {
                flushed(&media, rng.below((SPAN / 64) as u32) as usize * 64, i);
            }));
            // The next lines of a lane-log-sized ring, as records are appended.
            nt[n].push(sample(&media, n, |_, _| {
                media.write_nt(ring, &line);
                ring = (ring + 64) % RING;
            }));
        }
    }
    // Every list has `rounds` >= 1 samples.
    let sum =
        |v: Vec<Vec<f64>>| -> Vec<Summary> { v.iter().filter_map(|s| Summary::of(s)).collect() };
    Ok(FenceCost {
        hot: sum(hot),
        cold: sum(cold),
        nt: sum(nt),
    })
}

/// Bytes of the ring the non-temporal column writes (a lane log's size).
const RING: usize = 2 << 20;

/// ns per fence over [`FENCES`] fences, each after `store(k, i)` for lines `k` in
/// `0..n` (`i` the fence's number).
fn sample(media: &FileMedia, n: usize, mut store: impl FnMut(usize, u32)) -> f64 {
    let t = std::time::Instant::now();
    for i in 0..FENCES {
        for k in 0..n {
            store(k, i);
        }
        media.fence();
    }
    t.elapsed().as_secs_f64() * 1e9 / f64::from(FENCES)
}

impl FenceCost {
    /// The Markdown table: one row per line count.
    pub fn markdown(&self, rounds: u32) -> String {
        let mut s = format!(
            "`pmbench fence-cost --rounds {rounds}`: ns per fence (median of {rounds} samples \
             of {FENCES} fences, ± half the max-min spread), each fence after a store to and a \
             `clwb` of n lines, or after n lines of non-temporal stores.\n\n| lines | hot (the \
             same lines, in the cache) | cold (random line of 64 MiB) | non-temporal (lines \
             of a 2 MiB ring, in order) |\n|---|---|---|---|\n"
        );
        for (n, ((h, c), t)) in self.hot.iter().zip(&self.cold).zip(&self.nt).enumerate() {
            let _ = writeln!(
                s,
                "| {n} | {:.1} ns ±{:.0}% | {:.1} ns ±{:.0}% | {:.1} ns ±{:.0}% |",
                h.median,
                h.spread() * 50.0,
                c.median,
                c.spread() * 50.0,
                t.median,
                t.spread() * 50.0
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_cost_has_a_row_per_line_count_and_waiting_costs_more_than_none() {
        let cost = measure(&std::env::temp_dir(), 1).expect("a file in the temp folder");
        assert_eq!(cost.hot.len(), MAX_LINES + 1);
        assert_eq!(cost.cold.len(), MAX_LINES + 1);
        assert_eq!(cost.nt.len(), MAX_LINES + 1);
        // A fence with a flushed line to wait for is never cheaper than an idle one
        // (the store and the flush alone take longer than an empty loop turn).
        assert!(cost.hot[1].median > cost.hot[0].median);
        let md = cost.markdown(1);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            MAX_LINES + 2
        );
    }

    #[test]
    fn a_missing_pool_folder_is_a_typed_error() {
        let dir = std::env::temp_dir().join(format!("pmbench-no-such-{}", std::process::id()));
        let e = measure(&dir, 1).expect_err("no folder, no file");
        assert!(
            matches!(e, arch::FileMediaError::Io { what: "open", .. }),
            "{e:?}"
        );
    }
}
