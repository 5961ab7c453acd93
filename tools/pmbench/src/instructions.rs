//! `pmbench instructions`: the CPU work of one operation on each side, as instructions
//! executed, counted by valgrind's callgrind over one quick round of a workload.
//!
//! Times on this shared machine drift by 20% from hour to hour; an instruction count
//! does not. It splits a ratio into its two causes: the work between fences (this
//! count, with the fences' own price excluded) and the fences (`fence-cost` and the
//! fence counts of the main run). pmbench runs itself twice under
//!
//! ```text
//! valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=DIR/cg.%p
//!     --toggle-collect=F [--toggle-collect='pmbench::pmdk::marked*']
//!     pmbench W --rounds 1 --no-count --quick
//! ```
//!
//! so only timed regions count: with `F` = `pmbench::ours::region_flush*` and PMDK's
//! timed regions (in its two children: with flushes, then without, in the order they
//! started), then with `F` = `pmbench::ours::region_eadr*` alone. (Callgrind's dumps
//! would split one run, but a dump taken while collection is toggled came out empty.)
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
        &["pmbench::ours::region_flush*", "pmbench::pmdk::marked*"],
    )?;
    let eadr = run(
        exe,
        id,
        &work.join(format!("{}-eadr", id.name())),
        pool_dir,
        &["pmbench::ours::region_eadr*"],
    )?;
    let (ours, pmdk) = split(id, &flush)?;
    let (ours_eadr, _) = split(id, &eadr)?;
    let ops = Params::quick().ops as f64;
    Ok(PerOp {
        ours: ours as f64 / ops,
        ours_eadr: ours_eadr as f64 / ops,
        pmdk: pmdk[0] as f64 / ops,
        pmdk_no_flush: pmdk[1] as f64 / ops,
    })
}

/// One run of `exe` on `id` under callgrind collecting inside `toggles`; its dumps.
fn run(
    exe: &Path,
    id: WorkloadId,
    dir: &Path,
    pool_dir: &Path,
    toggles: &[&str],
) -> Result<Vec<Dump>, InstrError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--trace-children=yes")
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
    read_dumps(dir)
}

/// A callgrind output file: the process it came from, its dump number (0 for the
/// final dump), and its instruction total.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dump {
    pid: u32,
    part: u32,
    total: u64,
    cmd: String,
}

fn read_dumps(dir: &Path) -> Result<Vec<Dump>, InstrError> {
    let mut dumps = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path: PathBuf = e?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("cg.") else {
            continue;
        };
        let mut it = rest.split('.');
        let pid = it.next().and_then(|p| p.parse().ok());
        let part = it.next().map_or(Some(0), |p| p.parse().ok());
        let (Some(pid), Some(part)) = (pid, part) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        dumps.push(parse_dump(pid, part, &text));
    }
    dumps.sort_by_key(|d| (d.pid, d.part));
    Ok(dumps)
}

fn parse_dump(pid: u32, part: u32, text: &str) -> Dump {
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
    Dump {
        pid,
        part,
        total,
        cmd: field("cmd:").unwrap_or("").to_string(),
    }
}

/// Ours: the total of the one process that is not a PMDK child; PMDK: its two
/// children's totals in the order they started (with flushes, then without).
fn split(id: WorkloadId, dumps: &[Dump]) -> Result<(u64, [u64; 2]), InstrError> {
    let is_child = |d: &Dump| d.cmd.contains(" __pmdk ");
    let ours: Vec<u64> = dumps
        .iter()
        .filter(|d| !is_child(d))
        .map(|d| d.total)
        .collect();
    let pmdk: Vec<u64> = dumps
        .iter()
        .filter(|d| is_child(d))
        .map(|d| d.total)
        .collect();
    let (&[a], &[c, d]) = (&ours[..], &pmdk[..]) else {
        return Err(InstrError::Files {
            id,
            found: format!(
                "{} processes of ours and {} PMDK children",
                ours.len(),
                pmdk.len()
            ),
        });
    };
    Ok((a, [c, d]))
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

    fn dump(pid: u32, part: u32, total: u64, cmd: &str) -> Dump {
        Dump {
            pid,
            part,
            total,
            cmd: cmd.to_string(),
        }
    }

    #[test]
    fn files_split_into_ours_and_pmdk_children_in_start_order() {
        let files = [
            dump(10, 0, 30_000_000, "pmbench w1 --quick"),
            dump(11, 0, 36_000_000, "pmbench __pmdk w1 --pool p --quick"),
            dump(12, 0, 35_000_000, "pmbench __pmdk w1 --pool p --quick"),
        ];
        let (ours, pmdk) = split(WorkloadId::W1, &files).unwrap();
        assert_eq!((ours, pmdk), (30_000_000, [36_000_000, 35_000_000]));
        assert!(split(WorkloadId::W1, &files[..2]).is_err());
    }

    #[test]
    fn a_dump_is_read_for_its_total_and_command() {
        let d = parse_dump(
            7,
            2,
            "version: 1\ncmd:  pmbench __pmdk w1\npart: 2\nsummary: 1234\ntotals: 1234\n",
        );
        assert_eq!(d, dump(7, 2, 1234, "pmbench __pmdk w1"));
    }
}
