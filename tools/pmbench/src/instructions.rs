//! `pmbench instructions`: the CPU work of one operation on each side, as instructions
//! executed, counted by valgrind's callgrind over one quick round of a workload.
//!
//! Times on this shared machine drift by 20% from hour to hour; an instruction count
//! does not. It splits a ratio into its two causes: the work between fences (this
//! count, with the fences' own price excluded) and the fences (`fence-cost` and the
//! fence counts of the main run). pmbench runs itself twice under
//!
//! ```text
//! valgrind --tool=callgrind --trace-children=C --callgrind-out-file=DIR/cg.%p
//!     --toggle-collect=F [--toggle-collect='pmbench::pmdk::marked*']
//!     pmbench W --rounds 1 --no-count --quick
//! ```
//!
//! so only timed regions count: with `F` = `pmbench::ours::region_flush*` and PMDK's
//! timed regions (`C` = yes: its two children, with flushes, then without, in the order
//! they started), then with `F` = `pmbench::ours::region_eadr*` alone (`C` = no: PMDK's
//! children run natively). (Callgrind's dumps would split one run, but a dump taken
//! while collection is toggled came out empty.)
//! Under valgrind neither side sees `clwb` (valgrind's CPU does not report it), so
//! both flush with `clflush`: that changes which flush instruction runs, not how many
//! instructions run around it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workload::{Params, WorkloadId};

/// What one workload's counted round found: instructions per operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerOp {
    /// Ours, flushing.
    pub ours: f64,
    /// Ours, eADR (no flushes).
    pub ours_eadr: f64,
    /// PMDK, flushing.
    pub pmdk: f64,
    /// PMDK without flushes (`PMEM_NO_FLUSH=1`).
    pub pmdk_no_flush: f64,
}

/// Why a count failed.
#[derive(Debug)]
pub enum InstrError {
    /// valgrind could not be started (not installed?).
    NoValgrind(std::io::Error),
    /// The run under valgrind failed.
    RunFailed {
        /// The workload.
        id: WorkloadId,
        /// Its exit status and the tail of its output.
        detail: String,
    },
    /// The callgrind files were not the timed regions expected.
    Files {
        /// The workload.
        id: WorkloadId,
        /// What was found.
        found: String,
    },
    /// Reading or writing a file.
    Io(std::io::Error),
}

impl std::fmt::Display for InstrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstrError::NoValgrind(e) => {
                write!(f, "cannot run valgrind (apt-get install valgrind): {e}")
            }
            InstrError::RunFailed { id, detail } => {
                write!(f, "{id} under callgrind failed: {detail}")
            }
            InstrError::Files { id, found } => {
                write!(
                    f,
                    "{id}: expected our process and two PMDK children, found {found}"
                )
            }
            InstrError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InstrError {}

impl From<std::io::Error> for InstrError {
    fn from(e: std::io::Error) -> Self {
        InstrError::Io(e)
    }
}

/// Whether `id` can be counted this way: one timed region of `Params::ops` operations
/// per round (open and recover time other units) on one thread (callgrind's toggle is
/// per thread: w7's second thread would go uncounted).
pub fn countable(id: WorkloadId) -> bool {
    id.countable() && !matches!(id, WorkloadId::Open | WorkloadId::Recover)
}

/// Counts workload `id` by running `exe` (this pmbench) under callgrind, with scratch
/// files in `work` and pools in `pool_dir`.
#[allow(clippy::cast_precision_loss)] // counts far below 2^53
pub fn count(
    exe: &Path,
    id: WorkloadId,
    work: &Path,
    pool_dir: &Path,
) -> Result<PerOp, InstrError> {
    let flush = run(
        exe,
        id,
        &work.join(format!("{}-flush", id.name())),
        pool_dir,
        true,
    )?;
    // PMDK's children were counted above: this run lets them run natively.
    let eadr = run(
        exe,
        id,
        &work.join(format!("{}-eadr", id.name())),
        pool_dir,
        false,
    )?;
    let (ours, pmdk) = split(id, &flush, 2)?;
    let (ours_eadr, _) = split(id, &eadr, 0)?;
    let ops = Params::quick().ops as f64;
    Ok(PerOp {
        ours: ours as f64 / ops,
        ours_eadr: ours_eadr as f64 / ops,
        pmdk: pmdk[0] as f64 / ops,
        pmdk_no_flush: pmdk[1] as f64 / ops,
    })
}

/// One run of `exe` on `id` under callgrind, collecting inside our flushing rounds'
/// timed region and PMDK's children's (`flush`), or inside our eADR round's only; the
/// profiles it wrote.
fn run(
    exe: &Path,
    id: WorkloadId,
    dir: &Path,
    pool_dir: &Path,
    flush: bool,
) -> Result<Vec<Profile>, InstrError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let toggles: &[&str] = if flush {
        &["pmbench::ours::region_flush*", "pmbench::pmdk::marked*"]
    } else {
        &["pmbench::ours::region_eadr*"]
    };
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!(
            "--trace-children={}",
            if flush { "yes" } else { "no" }
        ))
        .arg(format!("--callgrind-out-file={}/cg.%p", dir.display()))
        .args(toggles.iter().map(|t| format!("--toggle-collect={t}")))
        .arg(exe)
        .arg(id.name())
        .args(["--rounds", "1", "--no-count", "--quick", "--out"])
        .arg(dir.join("out"))
        .arg("--pool-dir")
        .arg(pool_dir)
        .output()
        .map_err(InstrError::NoValgrind)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(InstrError::RunFailed {
            id,
            detail: format!(
                "{}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
        });
    }
    read_profiles(dir)
}

/// A callgrind output file (`cg.<pid>`): the process it came from and its instruction
/// total.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Profile {
    pid: u32,
    total: u64,
    cmd: String,
}

/// The profiles in `dir`, in the order their processes started.
fn read_profiles(dir: &Path) -> Result<Vec<Profile>, InstrError> {
    let mut profiles = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path: PathBuf = e?.path();
        let pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("cg."))
            .and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            profiles.push(parse_profile(pid, &std::fs::read_to_string(&path)?));
        }
    }
    profiles.sort_by_key(|d| d.pid);
    Ok(profiles)
}

fn parse_profile(pid: u32, text: &str) -> Profile {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    let total = field("totals:")
        .or_else(|| field("summary:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Profile {
        pid,
        total,
        cmd: field("cmd:").unwrap_or("").to_string(),
    }
}

/// Ours: the total of the one process that is not a PMDK child; PMDK: the totals of
/// its `children` children (traced ones), in the order they started (with flushes,
/// then without).
fn split(
    id: WorkloadId,
    profiles: &[Profile],
    children: usize,
) -> Result<(u64, Vec<u64>), InstrError> {
    let (pmdk, ours): (Vec<&Profile>, Vec<&Profile>) =
        profiles.iter().partition(|d| d.cmd.contains(" __pmdk "));
    match ours[..] {
        [o] if pmdk.len() == children => Ok((o.total, pmdk.iter().map(|d| d.total).collect())),
        _ => Err(InstrError::Files {
            id,
            found: format!(
                "{} processes of ours and {} PMDK children (expected 1 and {children})",
                ours.len(),
                pmdk.len()
            ),
        }),
    }
}

/// The report: one row per workload.
pub fn markdown(rows: &[(WorkloadId, PerOp)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`pmbench instructions`: instructions executed per operation in the timed region \
         (callgrind, one quick round of {} operations per side; both sides flush with \
         `clflush` under valgrind).\n",
        Params::quick().ops
    );
    let _ = writeln!(
        s,
        "| workload | ours | ours eADR | PMDK | PMDK no-flush | PMDK / ours | PMDK no-flush / ours eADR |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for (id, r) in rows {
        let _ = writeln!(
            s,
            "| {id} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            r.ours,
            r.ours_eadr,
            r.pmdk,
            r.pmdk_no_flush,
            r.pmdk / r.ours,
            r.pmdk_no_flush / r.ours_eadr
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(pid: u32, total: u64, cmd: &str) -> Profile {
        Profile {
            pid,
            total,
            cmd: cmd.to_string(),
        }
    }

    #[test]
    fn profiles_split_into_ours_and_pmdk_children_in_start_order() {
        let files = [
            profile(10, 30_000_000, "pmbench w1 --quick"),
            profile(11, 36_000_000, "pmbench __pmdk w1 --pool p --quick"),
            profile(12, 35_000_000, "pmbench __pmdk w1 --pool p --quick"),
        ];
        let (ours, pmdk) = split(WorkloadId::W1, &files, 2).unwrap();
        assert_eq!((ours, pmdk), (30_000_000, vec![36_000_000, 35_000_000]));
        assert!(split(WorkloadId::W1, &files[..2], 2).is_err());
        assert_eq!(split(WorkloadId::W1, &files[..1], 0).unwrap().0, 30_000_000);
        assert!(
            split(WorkloadId::W1, &files[1..], 2).is_err(),
            "no process of ours"
        );
    }

    #[test]
    fn a_profile_is_read_for_its_total_and_command() {
        let d = parse_profile(
            7,
            "version: 1\ncmd:  pmbench __pmdk w1\npart: 1\nsummary: 1234\ntotals: 1234\n",
        );
        assert_eq!(d, profile(7, 1234, "pmbench __pmdk w1"));
    }
}
