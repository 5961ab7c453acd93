//! `pmbench count-pmdk`: how many fences, flushed lines and non-temporal lines PMDK
//! executes per operation, counted on its real code path.
//!
//! Why not valgrind: valgrind 3.19 does not decode `clwb` (SIGILL) and its virtual CPU
//! reports no clwb, clflushopt, AVX-512 or movdir64b, so libpmem picks `clflush` under
//! it, and on that path libpmem's drain is an empty function (clflush is ordered by
//! itself) while each non-temporal copy ends in its own `sfence`: the fence pattern
//! valgrind would count is not the one that runs natively. The tracer in [`trace`] runs
//! the workload natively and counts every execution of every fence, flush and
//! non-temporal store instruction of libpmem, libpmemobj, libc and pmbench itself with
//! breakpoints (see `docs/benchmarks.md`).
//!
//! Results are cached in `<out>/pmdk-counts.json`, keyed by the PMDK library files and
//! the run's sizes, so the main run re-counts only when something changed.

pub mod sites;
pub mod trace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::harness::{parse_child_output, ChildSpec, PmdkMode};
use crate::workload::{Metric, WorkloadId};
use sites::Kind;

/// Bumped when the counting method changes, which invalidates caches.
const METHOD: u32 = 1;

/// Why counting failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CountError {
    /// `objdump` failed on an object file.
    Objdump {
        /// The file.
        path: PathBuf,
        /// What it said.
        detail: String,
    },
    /// A ptrace or process step failed.
    Ptrace {
        /// The step.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The traced child failed or did not stop as expected.
    Child(String),
    /// The byte at a site's runtime address is not the one objdump showed: the load
    /// address was computed wrongly, and patching would corrupt the code.
    SiteMismatch {
        /// The object file.
        path: PathBuf,
        /// The site's objdump address.
        addr: u64,
        /// The byte objdump showed.
        expected: u8,
        /// The byte in the process.
        found: u8,
    },
    /// The child printed no round result, or its marks do not match its metrics.
    Output(String),
    /// Reading or writing the cache file failed.
    Cache(std::io::Error),
    /// pmbench was built without the `pmdk` feature.
    FeatureOff,
}

impl std::fmt::Display for CountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CountError::Objdump { path, detail } => {
                write!(f, "objdump -d {} failed: {detail}", path.display())
            }
            CountError::Ptrace { what, source } => write!(f, "tracer: {what}: {source}"),
            CountError::Child(s) => write!(f, "traced child: {s}"),
            CountError::SiteMismatch {
                path,
                addr,
                expected,
                found,
            } => write!(
                f,
                "{}: byte at {addr:#x} is {found:#04x}, objdump says {expected:#04x}",
                path.display()
            ),
            CountError::Output(s) => write!(f, "traced child output: {s}"),
            CountError::Cache(e) => write!(f, "count cache: {e}"),
            CountError::FeatureOff => f.write_str("pmdk feature off"),
        }
    }
}

impl std::error::Error for CountError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CountError::Ptrace { source, .. } => Some(source),
            CountError::Cache(e) => Some(e),
            _ => None,
        }
    }
}

/// PMDK's counts over one timed region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdkCount {
    /// The workload.
    pub workload: WorkloadId,
    /// PMDK's configuration.
    pub mode: PmdkMode,
    /// The region.
    pub metric: Metric,
    /// Units (operations) in the region.
    pub units: u64,
    /// Fence instructions executed.
    pub fences: u64,
    /// Flush instructions executed (one line each).
    pub lines_flushed: u64,
    /// Bytes stored non-temporally.
    pub nt_bytes: u64,
    /// Executions per `object:mnemonic`, for the curious and for checking.
    pub by_instruction: BTreeMap<String, u64>,
}

#[allow(clippy::cast_precision_loss)] // report arithmetic on counts far below 2^53
impl PmdkCount {
    fn per_unit(&self, v: u64) -> f64 {
        v as f64 / self.units.max(1) as f64
    }

    /// Fences per unit.
    pub fn fences_per_unit(&self) -> f64 {
        self.per_unit(self.fences)
    }

    /// Flushed lines per unit.
    pub fn lines_per_unit(&self) -> f64 {
        self.per_unit(self.lines_flushed)
    }

    /// Non-temporal 64-byte lines per unit.
    pub fn nt_lines_per_unit(&self) -> f64 {
        self.per_unit(self.nt_bytes) / 64.0
    }

    /// Bytes made durable per user byte changed.
    pub fn write_amplification(&self, user_bytes_per_unit: f64) -> f64 {
        self.per_unit(self.lines_flushed * 64 + self.nt_bytes) / user_bytes_per_unit
    }
}

/// What the counts depend on: a change of any of it invalidates the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The counting method's version.
    pub method: u32,
    /// Operations per counted run.
    pub ops: u64,
    /// Quick sizes.
    pub quick: bool,
    /// `(path, length, modification time)` of each PMDK library.
    pub libraries: Vec<(String, u64, i64)>,
}

/// The cache file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountCache {
    /// What the counts depend on.
    pub key: CacheKey,
    /// The counts.
    pub counts: Vec<PmdkCount>,
}

/// The cache key for a run with these sizes, from the PMDK libraries this process has
/// mapped (pmbench links them when built with the `pmdk` feature).
pub fn cache_key(ops: u64, quick: bool) -> Result<CacheKey, CountError> {
    use std::os::unix::fs::MetadataExt;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(CountError::Cache)?;
    let mut libraries = Vec::new();
    for path in maps.split_whitespace().filter(|w| is_pmdk_lib(w)) {
        if libraries
            .iter()
            .any(|(p, _, _): &(String, u64, i64)| p == path)
        {
            continue;
        }
        let m = std::fs::metadata(path).map_err(CountError::Cache)?;
        libraries.push((path.to_owned(), m.len(), m.mtime()));
    }
    if libraries.is_empty() {
        return Err(CountError::FeatureOff);
    }
    Ok(CacheKey {
        method: METHOD,
        ops,
        quick,
        libraries,
    })
}

fn is_pmdk_lib(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libpmem.so") || n.starts_with("libpmemobj.so"))
}

/// The files whose instructions are counted: PMDK, libc, and pmbench itself (the shim).
fn counted_object(path: &str) -> bool {
    let exe = crate::harness::pmbench_exe().ok();
    is_pmdk_lib(path)
        || Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libc.so"))
        || exe.is_some_and(|e| e == Path::new(path))
}

/// The cache at `file` if it exists and matches `key`.
pub fn load_cache(file: &Path, key: &CacheKey) -> Option<CountCache> {
    let text = std::fs::read_to_string(file).ok()?;
    let cache: CountCache = serde_json::from_str(&text).ok()?;
    (cache.key == *key).then_some(cache)
}

/// Writes the cache.
pub fn save_cache(file: &Path, cache: &CountCache) -> Result<(), CountError> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(CountError::Cache)?;
    }
    let text = serde_json::to_string_pretty(cache).expect("counts serialize");
    std::fs::write(file, text).map_err(CountError::Cache)
}

/// Counts workload `id` in configuration `mode`: `ops` operations (open and recover
/// run at their own sizes), pools in `pool_dir`.
pub fn count_one(
    id: WorkloadId,
    mode: PmdkMode,
    ops: u64,
    quick: bool,
    pool_dir: &Path,
) -> Result<Vec<PmdkCount>, CountError> {
    if !cfg!(feature = "pmdk") {
        return Err(CountError::FeatureOff);
    }
    let pool = crate::harness::scratch_pool(pool_dir, &format!("count-{id}"));
    let spec = ChildSpec {
        workload: id,
        quick,
        // open and recover run at their own sizes; `ops` applies to w1..w6.
        ops: (!matches!(id, WorkloadId::Open | WorkloadId::Recover)).then_some(ops),
        pool: pool.clone(),
        build: false,
        marks: true,
    };
    let result = (|| {
        if id == WorkloadId::Open {
            let build = ChildSpec {
                build: true,
                marks: false,
                ..spec.clone()
            };
            crate::harness::run_child(&build, PmdkMode::Flush)
                .map_err(|e| CountError::Child(e.to_string()))?;
        }
        let cmd = spec
            .command(mode)
            .map_err(|e| CountError::Child(e.to_string()))?;
        trace::trace(cmd, &counted_object)
    })();
    let _ = std::fs::remove_file(&pool);
    let traced = result?;
    let round =
        parse_child_output(&traced.stdout).map_err(|e| CountError::Output(e.to_string()))?;
    let metrics = id.metrics();
    if traced.marks.len() != 2 * metrics.len() || round.timings.len() != metrics.len() {
        return Err(CountError::Output(format!(
            "{} marks and {} timings for {} metrics",
            traced.marks.len(),
            round.timings.len(),
            metrics.len()
        )));
    }
    let sites: Vec<(String, &sites::Site)> = traced
        .objects
        .iter()
        .flat_map(|o| {
            let name = o
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            o.sites.iter().map(move |s| (name.clone(), s))
        })
        .collect();
    Ok(round
        .timings
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let (before, after) = (&traced.marks[2 * k], &traced.marks[2 * k + 1]);
            let mut c = PmdkCount {
                workload: id,
                mode,
                metric: t.metric,
                units: t.units,
                fences: 0,
                lines_flushed: 0,
                nt_bytes: 0,
                by_instruction: BTreeMap::new(),
            };
            for (i, (obj, site)) in sites.iter().enumerate() {
                let n = after[i] - before[i];
                if n == 0 {
                    continue;
                }
                match site.kind {
                    Kind::Fence => c.fences += n,
                    Kind::Flush => c.lines_flushed += n,
                    Kind::NonTemporal(b) => c.nt_bytes += n * u64::from(b),
                }
                *c.by_instruction
                    .entry(format!("{obj}:{}", site.mnemonic))
                    .or_default() += n;
            }
            c
        })
        .collect())
}
