//! The interleaved runner: rounds of ours and PMDK, alternating, so drift of the shared
//! machine hits both sides alike.
//!
//! PMDK rounds run in a child process of pmbench itself (the hidden `__pmdk`
//! subcommand): libpmem reads `PMEM_IS_PMEM_FORCE` and `PMEM_NO_FLUSH` once, when it is
//! loaded, which is before `main` of a program linked against it, so the only reliable
//! way to run both configurations in one run is a fresh process per configuration. The
//! child prints its [`RoundResult`] as one JSON line. Child start-up is outside every
//! timed region (the clock runs inside the shim).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::ours::{EngineError, OursConfig, OursEngine};
use crate::round::RoundResult;
use crate::workload::{Job, Params, WorkloadId};

/// PMDK's two configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PmdkMode {
    /// `PMEM_IS_PMEM_FORCE=1 PMEM_NO_FLUSH=0`: the real flush path (clwb + sfence).
    Flush,
    /// `PMEM_IS_PMEM_FORCE=1 PMEM_NO_FLUSH=1`: PMDK's eADR path (no flushes, fences).
    NoFlush,
}

impl PmdkMode {
    /// Both, in report order.
    pub const ALL: [PmdkMode; 2] = [PmdkMode::Flush, PmdkMode::NoFlush];

    /// The environment libpmem is started with.
    pub fn env(self) -> [(&'static str, &'static str); 2] {
        [
            ("PMEM_IS_PMEM_FORCE", "1"),
            (
                "PMEM_NO_FLUSH",
                match self {
                    PmdkMode::Flush => "0",
                    PmdkMode::NoFlush => "1",
                },
            ),
        ]
    }

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            PmdkMode::Flush => "flush",
            PmdkMode::NoFlush => "no-flush",
        }
    }
}

/// Why a PMDK child round failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    /// pmbench could not find or start its own executable.
    Spawn(std::io::Error),
    /// The child exited unsuccessfully.
    Child {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last line it wrote to stderr.
        stderr: String,
    },
    /// The child's output was not a round result.
    Output(serde_json::Error),
}

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HarnessError::Spawn(e) => write!(f, "cannot run pmbench's PMDK child: {e}"),
            HarnessError::Child { status, stderr } => {
                write!(f, "PMDK child failed ({status}): {stderr}")
            }
            HarnessError::Output(e) => write!(f, "PMDK child printed no result: {e}"),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Spawn(e) => Some(e),
            HarnessError::Output(e) => Some(e),
            HarnessError::Child { .. } => None,
        }
    }
}

/// What the `__pmdk` child is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// The workload.
    pub workload: WorkloadId,
    /// Quick sizes.
    pub quick: bool,
    /// Timed (and warm-up) operations instead of the sizes' own.
    pub ops: Option<u64>,
    /// The pool file.
    pub pool: PathBuf,
    /// Build the open workload's pool instead of running a round.
    pub build: bool,
    /// Stop (SIGSTOP) before and after every timed region, for the tracer.
    pub marks: bool,
}

impl ChildSpec {
    /// The workload's sizes as the child computes them.
    pub fn params(&self) -> Params {
        let p = if self.quick {
            Params::quick()
        } else {
            Params::full()
        };
        match self.ops {
            Some(n) => p.with_ops(n),
            None => p,
        }
    }

    /// The command that runs this spec in PMDK configuration `mode`.
    pub fn command(&self, mode: PmdkMode) -> Result<Command, HarnessError> {
        let mut cmd = Command::new(pmbench_exe().map_err(HarnessError::Spawn)?);
        cmd.arg("__pmdk")
            .arg(self.workload.name())
            .arg("--pool")
            .arg(&self.pool);
        if self.quick {
            cmd.arg("--quick");
        }
        if let Some(n) = self.ops {
            cmd.arg("--ops").arg(n.to_string());
        }
        if self.build {
            cmd.arg("--build");
        }
        if self.marks {
            cmd.arg("--marks");
        }
        for (k, v) in mode.env() {
            cmd.env(k, v);
        }
        Ok(cmd)
    }
}

/// The pmbench executable: this one, or `PMBENCH_EXE` (set by the integration tests,
/// whose own executable is the test binary).
pub fn pmbench_exe() -> std::io::Result<PathBuf> {
    match std::env::var_os("PMBENCH_EXE") {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe(),
    }
}

/// Runs `spec` in a child with PMDK in configuration `mode`; waits for its result.
pub fn run_child(spec: &ChildSpec, mode: PmdkMode) -> Result<RoundResult, HarnessError> {
    let out = spec
        .command(mode)?
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(HarnessError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(HarnessError::Child {
            status: out.status,
            stderr: stderr.lines().last().unwrap_or("").to_owned(),
        });
    }
    parse_child_output(&out.stdout)
}

/// Parses the last line of a child's stdout as its round result.
pub fn parse_child_output(stdout: &[u8]) -> Result<RoundResult, HarnessError> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(HarnessError::Output)
}

/// How one side of one workload ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SideRuns {
    /// Every round ran.
    Measured {
        /// One result per round.
        rounds: Vec<RoundResult>,
    },
    /// Our stack is not written yet.
    NotBuilt,
    /// pmbench was built without the `pmdk` feature.
    FeatureOff,
    /// A round failed; the others are discarded.
    Failed {
        /// The error.
        error: String,
    },
}

/// The four sides of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRuns {
    /// The workload.
    pub workload: WorkloadId,
    /// Ours, with flushes (timed, not counting).
    pub ours: SideRuns,
    /// Ours, with flushes: the one round that counts flushes, fences and bytes (its
    /// time is not reported; counting costs time of its own, and PMDK's side is
    /// counted apart from its timed rounds too).
    pub ours_counted: SideRuns,
    /// Ours in eADR mode (no flushes).
    pub ours_eadr: SideRuns,
    /// PMDK, flush path.
    pub pmdk: SideRuns,
    /// PMDK with `PMEM_NO_FLUSH=1`.
    pub pmdk_no_flush: SideRuns,
}

/// What a run covers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rounds per side.
    pub rounds: u32,
    /// Quick sizes.
    pub quick: bool,
    /// Folder for pool files.
    pub pool_dir: PathBuf,
}

impl RunOptions {
    fn params(&self) -> Params {
        if self.quick {
            Params::quick()
        } else {
            Params::full()
        }
    }
}

/// One side's rounds so far, or why it stopped.
struct Side {
    rounds: Vec<RoundResult>,
    stopped: Option<SideRuns>,
}

impl Side {
    fn new(stopped: Option<SideRuns>) -> Self {
        Side {
            rounds: Vec::new(),
            stopped,
        }
    }

    fn record(&mut self, r: Result<RoundResult, SideRuns>) {
        match r {
            Ok(r) => self.rounds.push(r),
            Err(s) => self.stopped = Some(s),
        }
    }

    fn finish(self) -> SideRuns {
        self.stopped.unwrap_or(SideRuns::Measured {
            rounds: self.rounds,
        })
    }
}

fn ours_round(
    engine: &dyn OursEngine,
    id: WorkloadId,
    job: &Job,
    cfg: &OursConfig,
) -> Result<RoundResult, SideRuns> {
    engine.run(id, job, cfg).map_err(|e| match e {
        EngineError::NotBuilt => SideRuns::NotBuilt,
        e => SideRuns::Failed {
            error: e.to_string(),
        },
    })
}

fn pmdk_round(spec: &ChildSpec, mode: PmdkMode) -> Result<RoundResult, SideRuns> {
    run_child(spec, mode).map_err(|e| SideRuns::Failed {
        error: e.to_string(),
    })
}

/// A scratch pool path in `dir` for `what`.
pub fn scratch_pool(dir: &Path, what: &str) -> PathBuf {
    crate::ours::pool_path(dir, what)
}

/// Runs `opts.rounds` interleaved rounds of workload `id`: ours, PMDK, ours (eADR),
/// PMDK (no flush), and again. `progress` hears one line per finished round.
pub fn run_workload(
    id: WorkloadId,
    opts: &RunOptions,
    engine: &dyn OursEngine,
    progress: &mut dyn FnMut(&str),
) -> WorkloadRuns {
    let params = opts.params();
    let job = Job::build(id, &params);
    let cfg = |eadr, count| OursConfig {
        pool_dir: opts.pool_dir.clone(),
        eadr,
        params,
        coalesce: None,
        lanes: None,
        count,
    };
    let (cfg_adr, cfg_eadr) = (cfg(false, false), cfg(true, false));
    let pmdk_off = (!cfg!(feature = "pmdk")).then_some(SideRuns::FeatureOff);
    let mut ours = Side::new(None);
    let mut ours_eadr = Side::new(None);
    let mut pmdk = Side::new(pmdk_off.clone());
    let mut pmdk_nf = Side::new(pmdk_off);

    let pool = scratch_pool(&opts.pool_dir, id.name());
    let spec = ChildSpec {
        workload: id,
        quick: opts.quick,
        ops: None,
        pool: pool.clone(),
        build: false,
        marks: false,
    };
    if id == WorkloadId::Open && pmdk.stopped.is_none() {
        // The open workload's pool is built once (untimed) and opened by every round.
        let build = ChildSpec {
            build: true,
            ..spec.clone()
        };
        if let Err(e) = pmdk_round(&build, PmdkMode::Flush) {
            pmdk.stopped = Some(e.clone());
            pmdk_nf.stopped = Some(e);
        }
    }
    // The counting round first, untimed.
    let mut ours_counted = Side::new(None);
    let counted = ours_round(engine, id, &job, &cfg(false, true));
    progress(&round_line(
        id,
        0,
        opts.rounds,
        "ours (counting, untimed)",
        &counted,
    ));
    ours_counted.record(counted);
    for round in 1..=opts.rounds {
        for (side, name, run) in [
            (&mut ours, "ours", Run::Ours(&cfg_adr)),
            (&mut pmdk, "pmdk", Run::Pmdk(PmdkMode::Flush)),
            (&mut ours_eadr, "ours eADR", Run::Ours(&cfg_eadr)),
            (&mut pmdk_nf, "pmdk no-flush", Run::Pmdk(PmdkMode::NoFlush)),
        ] {
            if side.stopped.is_some() {
                continue;
            }
            let r = match run {
                Run::Ours(c) => ours_round(engine, id, &job, c),
                Run::Pmdk(mode) => pmdk_round(&spec, mode),
            };
            progress(&round_line(id, round, opts.rounds, name, &r));
            side.record(r);
        }
    }
    if id == WorkloadId::Open {
        let _ = std::fs::remove_file(&pool);
        crate::ours::open::remove_built_pool();
    }
    WorkloadRuns {
        workload: id,
        ours: ours.finish(),
        ours_counted: ours_counted.finish(),
        ours_eadr: ours_eadr.finish(),
        pmdk: pmdk.finish(),
        pmdk_no_flush: pmdk_nf.finish(),
    }
}

enum Run<'a> {
    Ours(&'a OursConfig),
    Pmdk(PmdkMode),
}

fn round_line(
    id: WorkloadId,
    round: u32,
    rounds: u32,
    side: &str,
    r: &Result<RoundResult, SideRuns>,
) -> String {
    let what = match r {
        Ok(r) => r
            .timings
            .iter()
            .map(|t| {
                format!(
                    "{:?} {:.1} ns/{}",
                    t.metric,
                    t.ns_per_unit(),
                    t.metric.unit()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(SideRuns::NotBuilt) => "not built yet".into(),
        Err(SideRuns::Failed { error }) => format!("FAILED: {error}"),
        Err(s) => format!("{s:?}"),
    };
    format!("{id} round {round}/{rounds} {side}: {what}")
}
