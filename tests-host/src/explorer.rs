//! The crash explorer (method: `docs/crash-testing.md`).
//!
//! A workload runs on a [`SimMedia`] with a hook installed. At every crash point (just
//! before and just after every fence, every `store_stride`-th store, every named point)
//! the explorer takes the set of crash images the persistence model allows there
//! ([`ImageSpace::images`]), resets a second simulated media to each image (restoring
//! only lines touched since the previous state), and asks the scenario to recover and
//! check every invariant against the workload's progress. For a sample of the states
//! it also crashes *inside* that recovery (at each of its fences, several images), and
//! demands that recovering from there gives the same logical result (invariant 5).
//!
//! The first failure stops the workload and is reported with everything needed to
//! replay it: seed, crash point index and event, image family.

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arch::sim::{
    silence_crash_panics, CrashImage, Family, HookAction, ImageOptions, ImageSpace, SimCrash,
    SimEvent, SimMedia, SimState,
};
use arch::Media;

/// What to explore.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed for image sampling (and for workloads that take it).
    pub seed: u64,
    /// Images per crash point.
    pub images: ImageOptions,
    /// A crash point at every N-th store as well (0: fences and named points only).
    pub store_stride: u64,
    /// Stop after this many crash states.
    pub max_states: u64,
    /// Crash inside recovery for every N-th state (0: never).
    pub recovery_stride: u64,
    /// Images per crash point inside recovery.
    pub recovery_images: ImageOptions,
    /// Only explore this crash point (replay of a failure).
    pub only_point: Option<u64>,
}

impl Config {
    /// A configuration with `states` crash states, scaled by `PM_CRASH_BUDGET` (a
    /// multiplier, default 1), seeded by `PM_CRASH_SEED` (default `default_seed`), and
    /// restricted to one point by `PM_CRASH_POINT` (for replays).
    pub fn from_env(states: u64, default_seed: u64) -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Config {
            seed: env("PM_CRASH_SEED").unwrap_or(default_seed),
            images: ImageOptions::default(),
            store_stride: 7,
            max_states: states.saturating_mul(env("PM_CRASH_BUDGET").unwrap_or(1).max(1)),
            recovery_stride: 32,
            recovery_images: ImageOptions {
                exhaustive_limit: 4,
                random_lines: 1,
                random_words: 1,
                family_positions: 2,
                max_images: 2,
            },
            only_point: env("PM_CRASH_POINT"),
        }
    }
}

/// A system under test: how to recover a crash image and what must hold afterwards.
pub trait Scenario: Send + Sync + 'static {
    /// What the workload has done and is doing (updated by the workload).
    type Progress: Clone + Send + Debug + 'static;
    /// The logical result of a recovery, compared across crash-in-recovery runs.
    type Digest: Eq + Debug;

    /// Recovers the pool on `media` (holding a crash image) and checks every invariant
    /// against `progress`. Returns the logical state for idempotence checks. Calls
    /// `recovered.done()` once recovery proper is over: crash points after it (the
    /// checks' own writes) are not used for crash-in-recovery images.
    fn recover_and_check(
        &self,
        media: &SimMedia,
        progress: &Self::Progress,
        recovered: &Phase,
    ) -> Result<Self::Digest, String>;
}

/// Marks the end of recovery inside [`Scenario::recover_and_check`].
#[derive(Debug, Default, Clone)]
pub struct Phase(Arc<std::sync::atomic::AtomicBool>);

impl Phase {
    /// Recovery is over; what follows is checking.
    pub fn done(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    fn is_done(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A failed check, with what replays it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Seed.
    pub seed: u64,
    /// Crash point index (`PM_CRASH_POINT` replays it).
    pub point: u64,
    /// The event of that point.
    pub event: SimEvent,
    /// How the image was chosen.
    pub family: Family,
    /// Crash depth: 1 = in the workload, 2 = inside recovery of that image.
    pub depth: u8,
    /// What the scenario said.
    pub message: String,
    /// The workload's progress then.
    pub progress: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "crash check failed: {}\n  seed={} point={} event={:?} family={:?} depth={}\n  progress: {}\n  replay: PM_CRASH_SEED={} PM_CRASH_POINT={} cargo test ...",
            self.message, self.seed, self.point, self.event, self.family, self.depth, self.progress, self.seed, self.point
        )
    }
}

/// What an exploration covered.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Crash points visited.
    pub points: u64,
    /// Crash states (images) recovered and checked.
    pub states: u64,
    /// Of those, states reached by crashing inside a recovery.
    pub recovery_states: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The first failure, if any.
    pub failure: Option<Failure>,
}

impl Report {
    /// Panics with the failure, if any; prints the coverage line otherwise.
    pub fn assert_ok(&self, name: &str) {
        if let Some(f) = &self.failure {
            panic!("{name}: {f}");
        }
        println!(
            "{name}: {} crash points, {} crash states ({} inside recovery) in {:.1}s ({:.0} states/s)",
            self.points,
            self.states,
            self.recovery_states,
            self.elapsed.as_secs_f64(),
            f64::from(u32::try_from(self.states).unwrap_or(u32::MAX)) / self.elapsed.as_secs_f64().max(1e-9)
        );
    }
}

struct State<S: Scenario> {
    cfg: Config,
    scenario: Arc<S>,
    progress: Arc<Mutex<S::Progress>>,
    r1: SimMedia,
    r2: SimMedia,
    report: Report,
    stores: u64,
}

impl<S: Scenario> State<S> {
    fn point(&mut self, ev: SimEvent, st: &SimState) -> HookAction {
        if self.report.failure.is_some() || self.report.states >= self.cfg.max_states {
            return HookAction::Continue;
        }
        let index = self.report.points;
        self.report.points += 1;
        if self.cfg.only_point.is_some_and(|p| p != index) {
            return HookAction::Continue;
        }
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let images = ImageSpace::new(st.uncertain())
            .images(&self.cfg.images, self.cfg.seed ^ index.wrapping_mul(0x9E37));
        for (k, img) in images.into_iter().enumerate() {
            if self.report.states >= self.cfg.max_states {
                break;
            }
            self.report.states += 1;
            self.r1.reset_from(st, &img);
            let fail = |depth, message: String| Failure {
                seed: self.cfg.seed,
                point: index,
                event: ev,
                family: img.family,
                depth,
                message,
                progress: format!("{progress:?}"),
            };
            let digest = match run_check(&*self.scenario, &self.r1, &progress) {
                Ok(d) => d,
                Err(m) => {
                    self.report.failure = Some(fail(1, m));
                    return HookAction::Crash;
                }
            };
            // Sampled by (point, image) so that a replay of one point repeats it exactly.
            let pick = (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64)
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                >> 40;
            if self.cfg.recovery_stride > 0 && pick.is_multiple_of(self.cfg.recovery_stride) {
                match self.crash_in_recovery(st, &img, &progress, &digest) {
                    Ok(n) => self.report.recovery_states += n,
                    Err(m) => {
                        self.report.failure = Some(fail(2, m));
                        return HookAction::Crash;
                    }
                }
            }
        }
        HookAction::Continue
    }

    /// Recovers `img` again, capturing crash images at each recovery fence, and checks
    /// that recovering each of them gives `expect`.
    fn crash_in_recovery(
        &self,
        base: &SimState,
        img: &CrashImage,
        progress: &S::Progress,
        expect: &S::Digest,
    ) -> Result<u64, String> {
        let captured: Arc<Mutex<Vec<CrashImage>>> = Arc::default();
        self.r1.reset_from(base, img);
        let cap = captured.clone();
        let seed = self.cfg.seed;
        let opts = self.cfg.recovery_images;
        let phase = Phase::default();
        let ph = phase.clone();
        self.r1.set_hook(Box::new(move |ev, st| {
            if !ph.is_done()
                && matches!(
                    ev,
                    SimEvent::BeforeFence { .. } | SimEvent::AfterFence { .. } | SimEvent::Named(_)
                )
            {
                let space = ImageSpace::new(st.uncertain());
                let mut c = cap
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for i in &space.images(&opts, seed) {
                    c.push(st.rebase(i));
                }
            }
            HookAction::Continue
        }));
        let first = run_check_phase(&*self.scenario, &self.r1, progress, &phase);
        self.r1.clear_hook();
        first?;
        let images = std::mem::take(
            &mut *captured
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let n = images.len() as u64;
        for (k, image) in images.into_iter().enumerate() {
            self.r2.reset_from(base, &image);
            let d = run_check(&*self.scenario, &self.r2, progress)
                .map_err(|m| format!("after a crash inside recovery (image {k}): {m}"))?;
            if &d != expect {
                return Err(format!(
                    "recovery is not idempotent: a crash inside recovery (image {k}) then recovery gave\n    {d:?}\n  instead of\n    {expect:?}"
                ));
            }
        }
        Ok(n)
    }
}

fn run_check<S: Scenario>(
    s: &S,
    media: &SimMedia,
    progress: &S::Progress,
) -> Result<S::Digest, String> {
    run_check_phase(s, media, progress, &Phase::default())
}

fn run_check_phase<S: Scenario>(
    s: &S,
    media: &SimMedia,
    progress: &S::Progress,
    phase: &Phase,
) -> Result<S::Digest, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        s.recover_and_check(media, progress, phase)
    })) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "recovery panicked: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    }
}

/// Runs `workload` on `media` with the explorer's hook installed; see the module docs.
/// The workload updates `progress` around each operation.
pub fn explore<S: Scenario>(
    cfg: &Config,
    scenario: Arc<S>,
    media: &SimMedia,
    progress: Arc<Mutex<S::Progress>>,
    workload: impl FnOnce(),
) -> Report {
    silence_crash_panics();
    let start = Instant::now();
    let state = Arc::new(Mutex::new(State {
        cfg: cfg.clone(),
        scenario,
        progress,
        r1: SimMedia::new(media.len()),
        r2: SimMedia::new(media.len()),
        report: Report::default(),
        stores: 0,
    }));
    let st2 = state.clone();
    let stride = cfg.store_stride;
    media.set_hook(Box::new(move |ev, sim| {
        let mut s = st2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let take = match ev {
            SimEvent::Store { .. } => {
                s.stores += 1;
                stride > 0 && s.stores % stride == 0
            }
            _ => true,
        };
        if take {
            s.point(ev, sim)
        } else {
            HookAction::Continue
        }
    }));
    let outcome = catch_unwind(AssertUnwindSafe(workload));
    media.clear_hook();
    let mut report = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .report
        .clone();
    report.elapsed = start.elapsed();
    if let Err(p) = outcome {
        if p.downcast_ref::<SimCrash>().is_none() {
            std::panic::resume_unwind(p);
        }
    }
    report
}
