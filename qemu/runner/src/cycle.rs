//! Crash-reboot cycles, for any workload.
//!
//! A cycle: fresh images; boot the workload's writer with a crash planned (a kill after
//! a seeded delay, or `crash_at=<n>`: the kernel stops itself at its n-th fence);
//! boot the workload's verifier on the same images; let the workload check both boots
//! and the images. Seeds, crash choices and results are printed per cycle.

use std::fmt;
use std::time::Duration;

use pm_qemu_proto::{BootArgs, GuestExit, Mode, SplitMix64, Suite};

use crate::{boot, BootOutcome, BootSpec, Exit, Images, Kernel, RunnerError, IMAGE_SIZE};

/// How a writer boot is crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// SIGKILL to QEMU this long after the kernel's first serial output.
    Kill(Duration),
    /// `crash_at=<n>`: the kernel exits without cleanup at its n-th fence.
    AtFence(u64),
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crash::Kill(d) => write!(f, "kill {} ms after first output", d.as_millis()),
            Crash::AtFence(n) => write!(f, "crash at fence {n}"),
        }
    }
}

/// One finished cycle, as the workload's check sees it.
#[derive(Debug)]
pub struct CycleRun<'a> {
    /// The cycle's seed (the workload's seed argument).
    pub seed: u64,
    /// The media mode.
    pub mode: Mode,
    /// How the writer was crashed.
    pub crash: Crash,
    /// The writer boot.
    pub writer: &'a BootOutcome,
    /// The verifier boot.
    pub verifier: &'a BootOutcome,
    /// The images both ran on.
    pub images: &'a Images,
}

impl CycleRun<'_> {
    /// The fence the writer stopped itself at (`crash_at`), if it did.
    pub fn fence_crash(&self) -> Option<u64> {
        match (self.crash, self.writer.exit) {
            (Crash::AtFence(fence), Exit::Guest(GuestExit::Crash)) => Some(fence),
            _ => None,
        }
    }

    /// The verifier boot's lines that `parse` recognises, if it passed.
    pub fn verifier_lines<L>(&self, parse: fn(&str) -> Option<L>) -> Result<Vec<L>, CycleFailure> {
        if !self.verifier.passed() {
            return Err(CycleFailure::VerifierFailed {
                exit: self.verifier.exit,
            });
        }
        Ok(self.verifier.serial.lines().filter_map(parse).collect())
    }
}

/// Why a workload's check failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CycleFailure {
    /// The writer ended otherwise than by the planned crash or by finishing.
    WriterExit {
        /// How it ended.
        exit: Exit,
    },
    /// The verifier boot did not pass.
    VerifierFailed {
        /// How it ended.
        exit: Exit,
    },
    /// A line the check needs is missing from a boot's serial log.
    MissingLine {
        /// Which line (`"log valid"`).
        what: &'static str,
    },
    /// The workload's own invariant failed.
    Log(pm_qemu_proto::log::LogError),
    /// The kernel's verifier and the runner's scan of the image disagree.
    HostScan {
        /// What the kernel reported.
        kernel: u64,
        /// What the runner found in the image.
        host: u64,
    },
    /// A crash at fence n must leave exactly the commits before it.
    FenceCommits {
        /// The crash fence.
        fence: u64,
        /// Commits expected.
        expected: u64,
        /// Commits reported.
        found: u64,
    },
    /// The image could not be read.
    Runner(RunnerError),
    /// The heap workload's oracle: the writer's reports or the recovered pool broke an
    /// invariant.
    Heap(pm_qemu_pool::workload::HistoryError),
    /// The runner's own open of the pool in the image failed where the kernel's had
    /// succeeded, or its `check()` failed.
    HostPool(HostPoolError),
    /// The tx workload's oracle: the writer's reports or the recovered state broke an
    /// invariant.
    Tx(pm_qemu_pool::tx::TxHistoryError),
    /// The runner's own verification of the tx pool in the image failed.
    HostTx(pm_qemu_pool::tx::TxWorkloadError),
    /// The kernel's view of the recovered pool and the runner's view of the image
    /// differ.
    HostView {
        /// What differs (`"pool present"`, `"root"`, `"field"`, `"objects"`).
        what: &'static str,
        /// Which field or object index.
        index: usize,
        /// The kernel's value.
        kernel: u64,
        /// The runner's value.
        host: u64,
    },
}

/// Why the runner could not open or check a pool in an image.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostPoolError {
    /// The image could not be mapped.
    Map(arch::FileMediaError),
    /// The pool did not open.
    Open(pmalloc::OpenError),
    /// Its `check()` failed.
    Check(pmalloc::CheckError),
}

impl fmt::Display for HostPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPoolError::Map(e) => write!(f, "mapping the image: {e}"),
            HostPoolError::Open(e) => write!(f, "opening the pool on the host: {e}"),
            HostPoolError::Check(e) => write!(f, "host check: {e}"),
        }
    }
}

impl std::error::Error for HostPoolError {}

impl fmt::Display for CycleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CycleFailure::WriterExit { exit } => write!(f, "writer boot ended badly: {exit}"),
            CycleFailure::VerifierFailed { exit } => write!(f, "verifier boot failed: {exit}"),
            CycleFailure::MissingLine { what } => write!(f, "no \"{what}\" line"),
            CycleFailure::Log(e) => write!(f, "{e}"),
            CycleFailure::HostScan { kernel, host } => write!(
                f,
                "kernel found {kernel} valid records, the image holds {host}"
            ),
            CycleFailure::FenceCommits {
                fence,
                expected,
                found,
            } => write!(
                f,
                "crash at fence {fence}: expected {expected} commits, {found} reported"
            ),
            CycleFailure::Runner(e) => write!(f, "{e}"),
            CycleFailure::Heap(e) => write!(f, "{e}"),
            CycleFailure::HostPool(e) => write!(f, "{e}"),
            CycleFailure::Tx(e) => write!(f, "{e}"),
            CycleFailure::HostTx(e) => write!(f, "the runner's verification of the image: {e}"),
            CycleFailure::HostView {
                what,
                index,
                kernel,
                host,
            } => write!(
                f,
                "kernel and host disagree on {what} {index}: kernel {kernel:#x}, host {host:#x}"
            ),
        }
    }
}

impl std::error::Error for CycleFailure {}

/// A workload for crash cycles: what the two boots run and how their results are
/// judged.
pub trait Workload {
    /// What a successful check reports (printed per cycle).
    type Report: fmt::Display;

    /// Its name, for reports.
    fn name(&self) -> &'static str;

    /// The suites of the writer boot and of the verifier boot.
    fn suites(&self) -> (Suite, Suite);

    /// The arguments of a boot running `suite` (the driver adds `crash_at` to the
    /// writer's).
    fn args(&self, suite: Suite, seed: u64, mode: Mode) -> BootArgs;

    /// The writer boot's arguments.
    fn writer_args(&self, seed: u64, mode: Mode) -> BootArgs {
        self.args(self.suites().0, seed, mode)
    }

    /// The verifier boot's arguments.
    fn verifier_args(&self, seed: u64, mode: Mode) -> BootArgs {
        self.args(self.suites().1, seed, mode)
    }

    /// The highest fence worth crashing at.
    fn fences(&self) -> u64;

    /// Bytes of each NVDIMM image (QEMU's `size=`).
    fn image_size(&self) -> u64 {
        IMAGE_SIZE
    }

    /// Kill delays (from the kernel's first serial output) that land inside the
    /// writer's work: see [`CycleConfig::of`].
    fn kill_window(&self) -> (Duration, Duration) {
        KILL_WINDOW
    }

    /// Judges a finished cycle.
    fn check(&self, run: &CycleRun<'_>) -> Result<Self::Report, CycleFailure>;
}

/// Kill delays that land inside the log workload's default 4096 records (about 100 ms
/// of guest time on TCG after the kernel's banner): some early, most mid-way, a few
/// after it finished.
pub const KILL_WINDOW: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_millis(110));

/// Kill delays from 1 ms to a little past the end of a workload of `count` steps that
/// take about `ms_per_1000` ms per thousand after the kernel's first output (TCG, idle
/// machine; under load the guest runs slower, so the kills land earlier in it).
pub fn kill_window_for(count: u32, ms_per_1000: u64) -> (Duration, Duration) {
    let ms = 20 + u64::from(count) * ms_per_1000 / 1000;
    (Duration::from_millis(1), Duration::from_millis(ms))
}

/// How many cycles, from which seed, in which mode.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// Base seed; each cycle's seed and crash come from it.
    pub seed: u64,
    /// Cycles to run.
    pub cycles: u32,
    /// Media mode of both boots.
    pub mode: Mode,
    /// NVDIMMs attached.
    pub nvdimms: usize,
    /// Kill delays are drawn from this range (inclusive, from the kernel's first
    /// serial output).
    pub kill_window: (Duration, Duration),
    /// Print each cycle (and each QEMU command) to stdout.
    pub verbose: bool,
    /// Cycles before this one are skipped (their seeds and crashes are still drawn),
    /// so `from_cycle: k, cycles: 1` replays cycle `k` of a base seed alone.
    pub from_cycle: u32,
}

/// Serial lines shown per boot in a failure report (the writer's can be thousands).
const SHOWN_LINES: usize = 40;

impl CycleConfig {
    /// `cycles` cycles from `seed` in `mode`, on one NVDIMM, kills in [`KILL_WINDOW`],
    /// printing each cycle.
    pub fn new(seed: u64, cycles: u32, mode: Mode) -> Self {
        CycleConfig {
            seed,
            cycles,
            mode,
            nvdimms: 1,
            kill_window: KILL_WINDOW,
            verbose: true,
            from_cycle: 0,
        }
    }

    /// As [`CycleConfig::new`], with kills in `workload`'s own window.
    pub fn of<W: Workload>(workload: &W, seed: u64, cycles: u32, mode: Mode) -> Self {
        CycleConfig {
            kill_window: workload.kill_window(),
            ..Self::new(seed, cycles, mode)
        }
    }
}

/// A cycle that failed, with what is needed to replay and debug it.
#[derive(Debug)]
pub struct CycleError {
    /// The workload.
    pub workload: &'static str,
    /// The base seed of the run.
    pub base_seed: u64,
    /// Which cycle (0-based).
    pub cycle: u32,
    /// Its seed.
    pub seed: u64,
    /// Its mode.
    pub mode: Mode,
    /// Its crash.
    pub crash: Crash,
    /// What went wrong.
    pub failure: CycleFailure,
    /// The writer boot, if it ran.
    pub writer: Option<Box<BootOutcome>>,
    /// The verifier boot, if it ran.
    pub verifier: Option<Box<BootOutcome>>,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} cycle {} (base seed {:#x}, cycle seed {:#x}, mode {}, {}): {}",
            self.workload,
            self.cycle,
            self.base_seed,
            self.seed,
            self.mode.name(),
            self.crash,
            self.failure
        )?;
        for (what, boot) in [("writer", &self.writer), ("verifier", &self.verifier)] {
            if let Some(b) = boot {
                writeln!(f, "--- {what}: {} ---\n$ {}", b.exit, b.command)?;
                write!(f, "{}{}", b.serial_tail(SHOWN_LINES), b.stderr)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CycleError {}

/// What a run of cycles did.
#[derive(Debug, Clone, Default)]
pub struct CyclesReport {
    /// Cycles run (all passed).
    pub cycles: u32,
    /// Writers stopped by a planned kill.
    pub killed: u32,
    /// Writers stopped at a fence.
    pub fence_crashes: u32,
    /// Writers that finished before the crash came.
    pub finished: u32,
    /// Slowest boot.
    pub slowest_boot: Duration,
    /// Sum of all boot times.
    pub boot_time: Duration,
    /// Boots.
    pub boots: u32,
}

impl CyclesReport {
    /// Mean wall-clock time of a boot.
    pub fn mean_boot(&self) -> Duration {
        self.boot_time / self.boots.max(1)
    }
}

impl fmt::Display for CyclesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cycles ok ({} killed, {} crashed at a fence, {} finished first); \
             {} boots, mean {} ms, slowest {} ms",
            self.cycles,
            self.killed,
            self.fence_crashes,
            self.finished,
            self.boots,
            self.mean_boot().as_millis(),
            self.slowest_boot.as_millis()
        )
    }
}

/// Runs `cfg.cycles` crash-reboot cycles of `workload`; stops at the first failure.
pub fn crash_cycles<W: Workload>(
    kernel: &Kernel,
    workload: &W,
    cfg: &CycleConfig,
) -> Result<CyclesReport, Box<CycleError>> {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut report = CyclesReport::default();
    let timeout = Duration::from_secs(30);
    for cycle in 0..cfg.from_cycle + cfg.cycles {
        let seed = rng.next_u64();
        let crash = if rng.next_u64().is_multiple_of(2) {
            let (lo, hi) = cfg.kill_window;
            let ms = rng.in_range(lo.as_millis() as u64, hi.as_millis() as u64);
            Crash::Kill(Duration::from_millis(ms))
        } else {
            Crash::AtFence(rng.in_range(1, workload.fences()))
        };
        if cycle < cfg.from_cycle {
            continue;
        }
        let fail = |failure, writer: Option<&BootOutcome>, verifier: Option<&BootOutcome>| {
            Box::new(CycleError {
                workload: workload.name(),
                base_seed: cfg.seed,
                cycle,
                seed,
                mode: cfg.mode,
                crash,
                failure,
                writer: writer.cloned().map(Box::new),
                verifier: verifier.cloned().map(Box::new),
            })
        };
        let images = Images::create(cfg.nvdimms, workload.image_size())
            .map_err(|e| fail(CycleFailure::Runner(e), None, None))?;
        let mut args = workload.writer_args(seed, cfg.mode);
        let kill_after = match crash {
            Crash::Kill(d) => Some(d),
            Crash::AtFence(n) => {
                args.crash_at = Some(n);
                None
            }
        };
        let boot_one = |args, kill_after| {
            boot(&BootSpec {
                kernel,
                images: &images,
                args,
                raw_append: None,
                timeout,
                kill_after,
            })
        };
        let writer =
            boot_one(args, kill_after).map_err(|e| fail(CycleFailure::Runner(e), None, None))?;
        match writer.exit {
            Exit::KilledAsPlanned => report.killed += 1,
            Exit::Guest(GuestExit::Crash) if matches!(crash, Crash::AtFence(_)) => {
                report.fence_crashes += 1;
            }
            Exit::Guest(GuestExit::Pass) if writer.passed() => report.finished += 1,
            exit => return Err(fail(CycleFailure::WriterExit { exit }, Some(&writer), None)),
        }
        let verifier = boot_one(workload.verifier_args(seed, cfg.mode), None)
            .map_err(|e| fail(CycleFailure::Runner(e), Some(&writer), None))?;
        let run = CycleRun {
            seed,
            mode: cfg.mode,
            crash,
            writer: &writer,
            verifier: &verifier,
            images: &images,
        };
        let found = workload
            .check(&run)
            .map_err(|e| fail(e, Some(&writer), Some(&verifier)))?;
        for b in [&writer, &verifier] {
            report.boots += 1;
            report.boot_time += b.elapsed;
            report.slowest_boot = report.slowest_boot.max(b.elapsed);
        }
        report.cycles += 1;
        if cfg.verbose {
            if cycle == 0 {
                println!("$ {}\n$ {}", writer.command, verifier.command);
            }
            println!(
                "{} cycle {cycle} seed {seed:#x} mode {} {}: writer {} in {} ms, verifier {} ms: {found}",
                workload.name(),
                cfg.mode.name(),
                crash,
                writer.exit,
                writer.elapsed.as_millis(),
                verifier.elapsed.as_millis()
            );
        }
    }
    Ok(report)
}
