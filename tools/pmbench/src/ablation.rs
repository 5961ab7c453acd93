//! `pmbench ablation`: what coalescing (issue 6) buys, on our stack only.
//!
//! * **(a) write-back**: w6 (Zipf updates) with coalescing on (the default
//!   configuration) against write-back at every commit (`eager: true`): time, and lines
//!   and fences per transaction. Target: at least 3x fewer flushed lines per
//!   transaction with coalescing, and higher throughput.
//! * **(b) thresholds**: the mixed workload (90% 8-byte updates, 10% 1 KiB rewrites)
//!   with count + volume thresholds against count only (`volume: false`): the largest
//!   pending volume of any object, the largest record, the largest excess of an
//!   object's pending volume over its volume threshold, what queued objects, time.
//!   Target: count + volume stays within the threshold plus one record, count only
//!   does not.
//! * **(c) recovery**: recovery time against pending volume. Mixed operations are
//!   committed with coalescing held off (count threshold `u32::MAX`, no volume
//!   threshold) until the pool holds a given volume of committed records not written
//!   back; the pool is then dropped without `close` (a crash: nothing more is written
//!   back) and the open that recovers it is timed. A least-squares line through the
//!   medians gives the time per MiB and R²; the points and the line are drawn to
//!   `recovery-vs-pending.svg`.
//!
//! Rounds are interleaved (every configuration or point once per round, in turn) and
//! the report gives medians, as the main run does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fit::LinearFit;
use crate::ours::{self, update, EngineError, OursConfig};
use crate::report::{fmt_ns, fmt_rate};
use crate::round::{RoundResult, TxPerTx};
use crate::stats::Summary;
use crate::workload::{Job, Metric, Params, UpdateJob, UpdateOps, WorkloadId};

const MIB: u64 = 1 << 20;

/// How the ablation runs.
#[derive(Debug, Clone)]
pub struct AblationOptions {
    /// Rounds per configuration (and per recovery point).
    pub rounds: u32,
    /// Quick sizes: w6 and mixed at [`Params::quick`], recovery points up to 4 MiB.
    pub quick: bool,
    /// Folder for pool files.
    pub pool_dir: PathBuf,
}

impl AblationOptions {
    fn params(&self) -> Params {
        if self.quick {
            Params::quick()
        } else {
            Params::full()
        }
    }

    /// The pending volumes of the recovery curve, in bytes.
    pub fn recovery_points(&self) -> Vec<u64> {
        let mib: &[u64] = if self.quick {
            &[1, 2, 4, 8, 16]
        } else {
            &[4, 8, 16, 32, 64]
        };
        // Quarters of a MiB: quick runs 0.25 .. 4 MiB, full runs 1 .. 16 MiB.
        mib.iter().map(|q| q * MIB / 4).collect()
    }
}

/// Why the ablation stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum AblationError {
    /// A round on our stack failed.
    Round {
        /// What was running.
        what: String,
        /// The failure.
        source: EngineError,
    },
    /// Coalescing ran while the recovery curve needed records to stay pending: the log
    /// is too small for the point.
    NotPending {
        /// The pending volume wanted.
        wanted: u64,
        /// The pending volume reached.
        pending: u64,
        /// Coalescing rounds that ran.
        rounds: u64,
    },
    /// Writing the results failed.
    Write(std::io::Error),
    /// Drawing the SVG failed.
    Plot(String),
}

impl std::fmt::Display for AblationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AblationError::Round { what, source } => write!(f, "{what}: {source}"),
            AblationError::NotPending {
                wanted,
                pending,
                rounds,
            } => write!(
                f,
                "wanted {wanted} B pending, have {pending} B after {rounds} coalescing rounds \
                 (log too small)"
            ),
            AblationError::Write(e) => write!(f, "writing the ablation results: {e}"),
            AblationError::Plot(e) => write!(f, "drawing recovery-vs-pending.svg: {e}"),
        }
    }
}

impl std::error::Error for AblationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AblationError::Round { source, .. } => Some(source),
            AblationError::Write(e) => Some(e),
            _ => None,
        }
    }
}

/// A coalescing configuration, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Records per object that queue it.
    pub count_threshold: u32,
    /// Volume thresholds on.
    pub volume: bool,
    /// Objects per coalescing round from the queue.
    pub batch: usize,
    /// Write-back at every commit.
    pub eager: bool,
    /// Records per written-back line the count threshold stretches toward (0: off).
    pub line_efficiency: u32,
    /// Lanes of the pool (a single thread's lane log is the runtime area / lanes).
    pub lanes: u32,
    /// Lanes take turns (`CoalesceConfig::lane_turn`; 0: every thread keeps to its
    /// lane).
    pub lane_turn: u32,
}

impl Policy {
    fn of(c: pmrt::CoalesceConfig, lanes: u32) -> Self {
        Policy {
            count_threshold: c.count_threshold,
            volume: c.volume,
            batch: c.batch,
            eager: c.eager,
            line_efficiency: c.line_efficiency,
            lanes,
            lane_turn: c.lane_turn,
        }
    }

    /// Whether one thread's window of pending records is every lane's log.
    fn turns(&self) -> bool {
        self.lane_turn != 0 && self.lanes > 1
    }
}

/// One configuration [`compare`] runs: its name, coalescing policy and pool lanes.
type Config = (&'static str, pmrt::CoalesceConfig, u32);

/// Lanes of the main run's update pools.
const MAIN_LANES: u32 = 8;

/// One configuration of a workload over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// Its name in the tables.
    pub name: &'static str,
    /// The coalescing configuration.
    pub policy: Policy,
    /// Nanoseconds per operation over the rounds.
    pub ns_per_op: Summary,
    /// Operations per second over the rounds.
    pub ops_per_s: Summary,
    /// Work per committed transaction, all rounds together.
    pub per_tx: TxPerTx,
    /// Largest pending volume of any object (bytes), the largest over the rounds.
    pub pending_hwm: u64,
    /// Largest record (bytes), the largest over the rounds.
    pub largest_record: u64,
    /// Largest excess of an object's pending volume over its volume threshold (bytes),
    /// the largest over the rounds.
    pub over_threshold_max: u64,
    /// Objects queued by count per round (median).
    pub by_count: f64,
    /// Objects queued by volume per round (median).
    pub by_volume: f64,
    /// Back-pressure rounds per round (median).
    pub by_backpressure: f64,
    /// Bytes of one lane's log.
    pub lane_log_bytes: u64,
    /// Bytes of log one thread's pending records have: its lane's log, or every lane's
    /// when lanes take turns.
    pub window_bytes: u64,
}

impl Variant {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    fn of((name, policy, lanes): Config, rounds: &[RoundResult]) -> Option<Variant> {
        let ns: Vec<f64> = rounds
            .iter()
            .flat_map(|r| r.timings.iter().filter(|t| t.metric == Metric::Op))
            .map(crate::round::Timing::ns_per_unit)
            .collect();
        let per_s: Vec<f64> = ns.iter().map(|n| 1e9 / n.max(f64::MIN_POSITIVE)).collect();
        let tx: Vec<crate::round::TxCounters> = rounds.iter().filter_map(|r| r.tx).collect();
        let median = |f: fn(&crate::round::TxCounters) -> u64| {
            let v: Vec<f64> = tx.iter().map(|t| f(t) as f64).collect();
            Summary::of(&v).map_or(0.0, |s| s.median)
        };
        let max = |f: fn(&crate::round::TxCounters) -> u64| tx.iter().map(f).max().unwrap_or(0);
        let policy = Policy::of(policy, lanes);
        let lane_log_bytes = max(|t| t.lane_log_bytes);
        Some(Variant {
            name,
            window_bytes: if policy.turns() {
                lane_log_bytes * u64::from(lanes)
            } else {
                lane_log_bytes
            },
            policy,
            ns_per_op: Summary::of(&ns)?,
            ops_per_s: Summary::of(&per_s)?,
            per_tx: TxPerTx::of(rounds)?,
            pending_hwm: max(|t| t.pending_hwm),
            largest_record: max(|t| t.largest_record),
            over_threshold_max: max(|t| t.over_threshold_max),
            by_count: median(|t| t.by_count),
            by_volume: median(|t| t.by_volume),
            by_backpressure: median(|t| t.by_backpressure),
            lane_log_bytes,
        })
    }

    /// The `ns/op ±spread | ops/s` cells of its table row.
    fn time_cells(&self) -> String {
        format!(
            "{} ±{:.0}% | {}",
            fmt_ns(self.ns_per_op.median),
            self.ns_per_op.spread() * 50.0,
            fmt_rate(self.ops_per_s.median)
        )
    }

    /// Whether no object's pending volume exceeded its volume threshold by more than
    /// one record (the largest record, as a bound).
    pub fn within_threshold_plus_one_record(&self) -> bool {
        self.over_threshold_max <= self.largest_record
    }
}

/// Table (a): w6, coalescing against write-back at every commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteBack {
    /// Coalescing on (the default configuration).
    pub coalescing: Variant,
    /// Write-back at every commit.
    pub eager: Variant,
    /// Coalescing on, lanes taking turns (`CoalesceConfig::lane_turn`): the thread's
    /// window of pending records is every lane's log (the runtime area), not its
    /// lane's eighth of it.
    pub turns_on: Variant,
    /// Home write-back lines per transaction, eager / coalescing with lanes taking
    /// turns.
    pub turns_on_writeback_lines_ratio: Option<f64>,
    /// Every line made durable (flushed or non-temporal) per transaction, eager /
    /// coalescing (target: at least 3).
    pub durable_lines_ratio: Option<f64>,
    /// Home write-back lines per transaction, eager / coalescing.
    pub writeback_lines_ratio: Option<f64>,
    /// The largest `durable_lines_ratio` coalescing could reach here: eager's lines
    /// per transaction over coalescing's commit lines alone (each commit makes its
    /// record durable whatever coalescing does).
    pub durable_lines_ratio_bound: Option<f64>,
    /// Throughput, coalescing / eager (target: above 1).
    pub throughput_ratio: f64,
    /// Home lines per transaction if every object were written back as late as the
    /// main pool's lane log allows ([`late_writeback_lines`], whole objects).
    pub late_lines: Option<f64>,
    /// The same with every lane's log (lanes taking turns).
    pub late_lines_turns_on: Option<f64>,
    /// The fewest home lines per transaction any write-back policy can flush with the
    /// main pool's lane log ([`late_writeback_lines`], line by line).
    pub fewest_lines: Option<f64>,
    /// The same with every lane's log (lanes taking turns).
    pub fewest_lines_turns_on: Option<f64>,
}

/// Home lines per transaction that writing back *as late as the log allows* would
/// flush over `job.timed` (after `job.warm`: the same operations in the same order),
/// with a lane log of `window` records, each operation one record (w6's 8-byte updates
/// are one-line records). A model run over the operations, not a measurement.
///
/// A lane log is a ring whose tail cannot pass a live record, so a record must be
/// written back before it is `window` records old. With `per_line` false, whole
/// objects are written back (as coalescing does): an object when its oldest pending
/// record reaches that age, flushing every line its pending records dirtied. With
/// `per_line` true, each line of each object on its own: a line when the oldest
/// pending record that dirtied it reaches that age. Each record needs a flush of each
/// of its lines within its window, and per line, flushing at the oldest record's last
/// moment needs the fewest flushes (interval stabbing, earliest deadline first); so
/// the per-line figure is a lower bound for every write-back policy with this log,
/// and exact for one-line records. `None` without timed operations, with an empty
/// window, or for objects of more than 64 lines.
pub fn late_writeback_lines(job: &UpdateJob, window: usize, per_line: bool) -> Option<f64> {
    let lines = job.object_size.div_ceil(64);
    if window == 0 || job.timed.obj.is_empty() || lines > 64 {
        return None;
    }
    let per_key = if per_line { lines as usize } else { 1 };
    // Per key (an object, or one line of one): the lines its pending records dirtied
    // (empty: nothing pending).
    let mut dirty = vec![0u64; job.objects as usize * per_key];
    // (operation of the oldest pending record, key), oldest first.
    let mut oldest = std::collections::VecDeque::<(usize, usize)>::new();
    let (mut t, mut flushed) = (0usize, 0u64);
    for (ops, timed) in [(&job.warm, false), (&job.timed, true)] {
        for i in 0..ops.obj.len() {
            while let Some(&(at, k)) = oldest.front() {
                if t - at < window {
                    break;
                }
                oldest.pop_front();
                if timed {
                    flushed += u64::from(dirty[k].count_ones());
                }
                dirty[k] = 0;
            }
            let o = ops.obj[i] as usize;
            let (off, len) = (ops.off[i], ops.len_of(i, job.len).max(1));
            let (a, b) = (off / 64, ((off + len - 1) / 64).min(lines - 1));
            for l in a..=b {
                let (k, bit) = if per_line {
                    (o * per_key + l as usize, 1)
                } else {
                    (o, 1u64 << l)
                };
                let d = dirty.get_mut(k)?;
                if *d == 0 {
                    oldest.push_back((t, k));
                }
                *d |= bit;
            }
            t += 1;
        }
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    Some(flushed as f64 / job.timed.obj.len() as f64)
}

/// Table (b): mixed, count + volume thresholds against count only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// Count and volume thresholds (the default configuration).
    pub count_and_volume: Variant,
    /// Count threshold only.
    pub count_only: Variant,
    /// Count + volume within the threshold plus one record and count only not.
    pub target_met: bool,
}

/// One pending volume of the recovery curve, over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryPoint {
    /// The pending volume asked for (bytes).
    pub target_bytes: u64,
    /// The pending volume reached (`PoolStats::pending_bytes`, bytes; the same every
    /// round: the operations are).
    pub pending_bytes: u64,
    /// Transactions committed to reach it.
    pub transactions: u64,
    /// Log bytes recovery scanned.
    pub log_bytes: u64,
    /// Records recovery scanned.
    pub records: u64,
    /// Groups recovery replayed.
    pub groups_replayed: u64,
    /// Bytes recovery wrote to homes.
    pub bytes_replayed: u64,
    /// The recovering open (mapping + `Pool::open`), ns, over the rounds.
    pub recover_ns: Summary,
    /// Every round's recovering open, ns.
    pub recover_samples: Vec<u64>,
    /// A clean open of the same pool afterwards, ns, over the rounds.
    pub clean_ns: Summary,
}

/// Table (c): recovery time against pending volume, and the line through it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryCurve {
    /// The points, smallest volume first.
    pub points: Vec<RecoveryPoint>,
    /// Median recovery ns against pending MiB; `None` when no line could be fitted.
    pub fit: Option<LinearFit>,
    /// Why not, then.
    pub fit_error: Option<String>,
}

/// Everything `pmbench ablation` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ablation {
    /// The command.
    pub command: String,
    /// Rounds per configuration and per point.
    pub rounds: u32,
    /// The sizes of (a) and (b).
    pub params: Params,
    /// CPU, cores, kernel.
    pub machine: String,
    /// (a).
    pub writeback: WriteBack,
    /// (b).
    pub thresholds: Thresholds,
    /// (c).
    pub recovery: RecoveryCurve,
}

/// Runs the three parts; `progress` hears one line per finished round.
pub fn run(
    command: String,
    opts: &AblationOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Ablation, AblationError> {
    let params = opts.params();
    let cfg = OursConfig {
        pool_dir: opts.pool_dir.clone(),
        eadr: false,
        params,
        coalesce: None,
        lanes: None,
        // Counts are what the ablation compares; its configurations all pay for them.
        count: true,
    };
    let default = pmrt::CoalesceConfig::default();
    let [coalescing, eager, turns_on] = compare(
        WorkloadId::W6,
        &cfg,
        opts.rounds,
        [
            ("coalescing", default, MAIN_LANES),
            (
                "eager write-back",
                pmrt::CoalesceConfig {
                    eager: true,
                    ..default
                },
                MAIN_LANES,
            ),
            (
                "coalescing, lanes taking turns",
                pmrt::CoalesceConfig {
                    lane_turn: pmrt::LANE_TURN,
                    ..default
                },
                MAIN_LANES,
            ),
        ],
        progress,
    )?;
    let Job::Update(w6) = Job::build(WorkloadId::W6, &params) else {
        unreachable!("w6 is an update workload")
    };
    // w6's records are one line each.
    let window = |v: &Variant| usize::try_from(v.window_bytes / 64).unwrap_or(usize::MAX);
    let writeback = WriteBack {
        late_lines: late_writeback_lines(&w6, window(&coalescing), false),
        late_lines_turns_on: late_writeback_lines(&w6, window(&turns_on), false),
        fewest_lines: late_writeback_lines(&w6, window(&coalescing), true),
        fewest_lines_turns_on: late_writeback_lines(&w6, window(&turns_on), true),
        durable_lines_ratio: ratio(eager.per_tx.durable_lines, coalescing.per_tx.durable_lines),
        writeback_lines_ratio: ratio(
            Some(eager.per_tx.writeback_lines),
            Some(coalescing.per_tx.writeback_lines),
        ),
        durable_lines_ratio_bound: ratio(
            eager.per_tx.durable_lines,
            Some(coalescing.per_tx.commit_lines),
        ),
        throughput_ratio: coalescing.ops_per_s.median / eager.ops_per_s.median,
        turns_on_writeback_lines_ratio: ratio(
            Some(eager.per_tx.writeback_lines),
            Some(turns_on.per_tx.writeback_lines),
        ),
        coalescing,
        eager,
        turns_on,
    };
    let [count_and_volume, count_only] = compare(
        WorkloadId::Mixed,
        &cfg,
        opts.rounds,
        [
            ("count + volume", default, MAIN_LANES),
            (
                "count only",
                pmrt::CoalesceConfig {
                    volume: false,
                    ..default
                },
                MAIN_LANES,
            ),
        ],
        progress,
    )?;
    let thresholds = Thresholds {
        target_met: count_and_volume.within_threshold_plus_one_record()
            && !count_only.within_threshold_plus_one_record(),
        count_and_volume,
        count_only,
    };
    let recovery = recovery_curve(&cfg, opts, progress)?;
    Ok(Ablation {
        command,
        rounds: opts.rounds,
        params,
        machine: crate::report::machine(),
        writeback,
        thresholds,
        recovery,
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

/// Runs `id` under each configuration, interleaved round by round.
fn compare<const N: usize>(
    id: WorkloadId,
    cfg: &OursConfig,
    rounds: u32,
    variants: [Config; N],
    progress: &mut dyn FnMut(&str),
) -> Result<[Variant; N], AblationError> {
    let Job::Update(job) = Job::build(id, &cfg.params) else {
        unreachable!("{id} is an update workload")
    };
    let mut results: [Vec<RoundResult>; N] = core::array::from_fn(|_| Vec::new());
    for round in 1..=rounds {
        for (k, (name, policy, lanes)) in variants.iter().enumerate() {
            let c = OursConfig {
                coalesce: Some(*policy),
                lanes: Some(*lanes),
                ..cfg.clone()
            };
            let what = format!("{id} {name} round {round}/{rounds}");
            let r = update::run(id, &job, &c).map_err(|source| AblationError::Round {
                what: what.clone(),
                source,
            })?;
            if let Some(t) = r.timings.first() {
                progress(&format!("{what}: {:.1} ns/op", t.ns_per_unit()));
            }
            results[k].push(r);
        }
    }
    let variant = |k: usize| {
        let name = variants[k].0;
        Variant::of(variants[k], &results[k]).ok_or_else(|| AblationError::Round {
            what: format!("{id} {name}"),
            source: EngineError::Failed {
                workload: id,
                op: 0,
                source: "no transaction counters in the rounds".into(),
            },
        })
    };
    let mut out = Vec::with_capacity(N);
    for k in 0..N {
        out.push(variant(k)?);
    }
    Ok(out
        .try_into()
        .unwrap_or_else(|_| unreachable!("N variants made")))
}

/// One recovery sample: what the pool held, what recovery did, how long it took.
struct Sample {
    pending: u64,
    transactions: u64,
    report: pmrt::RecoveryReport,
    recover_ns: u64,
    clean_ns: u64,
}

/// The first operations of `ops`, cycled, whose lengths add up to at least `bytes`.
fn ops_for_volume(ops: &UpdateOps, len: u32, bytes: u64) -> UpdateOps {
    let mut out = UpdateOps::default();
    let mut sum = 0u64;
    let n = ops.obj.len();
    let mut i = 0;
    while sum < bytes && n > 0 {
        let l = ops.len_of(i % n, len);
        out.obj.push(ops.obj[i % n]);
        out.off.push(ops.off[i % n]);
        out.lens.push(l);
        sum += u64::from(l);
        i += 1;
    }
    out
}

/// Runtime area of the recovery pools: the records of the largest point (a 1 KiB
/// rewrite is 17 log lines, an 8-byte update one: 1.52 log bytes per pending byte
/// for mixed) with room to spare, so nothing is coalesced by back-pressure.
fn recovery_log_len(max_bytes: u64) -> usize {
    usize::try_from(2 * max_bytes + 2 * MIB).unwrap_or(usize::MAX)
}

/// One round of one recovery point (module docs).
fn recovery_sample(
    cfg: &OursConfig,
    job: &UpdateJob,
    ops: &UpdateOps,
    bytes: u64,
    runtime_len: usize,
) -> Result<Sample, AblationError> {
    let w = WorkloadId::Mixed;
    let name = "ablation-recovery";
    let err = |source| AblationError::Round {
        what: format!("recovery with {bytes} B pending"),
        source,
    };
    let base = OursConfig {
        coalesce: None,
        ..cfg.clone()
    };
    let hold = OursConfig {
        coalesce: Some(pmrt::CoalesceConfig {
            count_threshold: u32::MAX,
            volume: false,
            behind_age: 0,
            ..pmrt::CoalesceConfig::default()
        }),
        ..cfg.clone()
    };
    let result = (|| {
        let pool =
            ours::fresh_pool_with_log(&base, w, name, cfg.params.pool_size, 1, Some(runtime_len))
                .map_err(err)?;
        let objs = update::alloc_objects(w, &pool, job.objects, job.object_size);
        // Closed and opened again: the allocations are written back, the log is empty.
        drop(pool.close());
        let objs = objs.map_err(err)?;
        let (pool, _, _) = ours::open_pool(&hold, w, name).map_err(err)?;
        update::updates(w, &pool, &objs, job, ops, 1).map_err(err)?;
        let stats = pool.stats();
        if stats.pending_bytes < bytes || stats.coalescing.rounds != 0 {
            return Err(AblationError::NotPending {
                wanted: bytes,
                pending: stats.pending_bytes,
                rounds: stats.coalescing.rounds,
            });
        }
        // The crash: no close, nothing more written back.
        drop(pool);
        let (pool, report, recover_ns) = ours::open_pool(&base, w, name).map_err(err)?;
        let mut model = vec![0u64; job.objects as usize * job.object_size as usize / 8];
        update::apply(&mut model, job, ops, 1);
        update::verify(w, &pool, &objs, job, &model).map_err(err)?;
        drop(pool.close());
        let (pool, _, clean_ns) = ours::open_pool(&base, w, name).map_err(err)?;
        drop(pool.close());
        Ok(Sample {
            pending: stats.pending_bytes,
            transactions: ops.obj.len() as u64,
            report,
            recover_ns,
            clean_ns,
        })
    })();
    let _ = std::fs::remove_file(ours::pool_path(&cfg.pool_dir, name));
    result
}

fn recovery_curve(
    cfg: &OursConfig,
    opts: &AblationOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RecoveryCurve, AblationError> {
    let Job::Update(job) = Job::build(WorkloadId::Mixed, &cfg.params) else {
        unreachable!("mixed is an update workload")
    };
    let targets = opts.recovery_points();
    let runtime_len = recovery_log_len(targets.iter().copied().max().unwrap_or(MIB));
    let ops: Vec<UpdateOps> = targets
        .iter()
        .map(|&b| ops_for_volume(&job.timed, job.len, b))
        .collect();
    let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 1..=opts.rounds {
        for (k, &bytes) in targets.iter().enumerate() {
            let s = recovery_sample(cfg, &job, &ops[k], bytes, runtime_len)?;
            progress(&format!(
                "recovery {:.2} MiB pending round {round}/{}: {}",
                mib(s.pending),
                opts.rounds,
                fmt_ns(ns_f64(s.recover_ns))
            ));
            samples[k].push(s);
        }
    }
    let mut points = Vec::new();
    for (k, s) in samples.iter().enumerate() {
        let rec: Vec<f64> = s.iter().map(|x| ns_f64(x.recover_ns)).collect();
        let clean: Vec<f64> = s.iter().map(|x| ns_f64(x.clean_ns)).collect();
        let (Some(first), Some(recover_ns), Some(clean_ns)) =
            (s.first(), Summary::of(&rec), Summary::of(&clean))
        else {
            continue;
        };
        points.push(RecoveryPoint {
            target_bytes: targets[k],
            pending_bytes: first.pending,
            transactions: first.transactions,
            log_bytes: first.report.log_bytes,
            records: first.report.records,
            groups_replayed: first.report.groups_replayed,
            bytes_replayed: first.report.bytes_replayed,
            recover_ns,
            recover_samples: s.iter().map(|x| x.recover_ns).collect(),
            clean_ns,
        });
    }
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (mib(p.pending_bytes), p.recover_ns.median))
        .collect();
    let (fit, fit_error) = match LinearFit::of(&xy) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(RecoveryCurve {
        points,
        fit,
        fit_error,
    })
}

#[allow(clippy::cast_precision_loss)] // volumes far below 2^53
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[allow(clippy::cast_precision_loss)] // durations far below 2^53 ns
fn ns_f64(ns: u64) -> f64 {
    ns as f64
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn met(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "NOT met"
    }
}

impl Ablation {
    /// The three tables and their verdicts, in Markdown.
    #[allow(clippy::too_many_lines)] // three tables, written out plainly
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let f2 = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            s,
            "`{}` — our stack only, {} rounds per configuration, interleaved, medians \
             (± half the max-min spread); {}.\n",
            self.command, self.rounds, self.machine
        );

        let a = &self.writeback;
        let _ = writeln!(
            s,
            "### (a) w6 (Zipf 8 B updates): coalescing vs write-back at every commit\n\n\
             | configuration | ns/op | ops/s | commit lines/tx | write-back lines/tx | \
             all durable lines/tx | all fences/tx | WA |\n|---|---|---|---|---|---|---|---|"
        );
        for v in [&a.coalescing, &a.eager, &a.turns_on] {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {:.2} | {} | {} | {} |",
                v.name,
                v.time_cells(),
                v.per_tx.commit_lines,
                v.per_tx.writeback_lines,
                f2(v.per_tx.durable_lines),
                f2(v.per_tx.fences),
                f2(v.per_tx.write_amplification),
            );
        }
        let at_least_3 = |r: Option<f64>| met(r.is_some_and(|r| r >= 3.0));
        let _ = writeln!(
            s,
            "\n* all lines made durable (flushed or non-temporal) per transaction, eager / \
             coalescing: {}x (≥ 3x: {}; at most {}x is reachable here, as every commit \
             makes its record lines durable)\n\
             * home write-back lines per transaction, eager / coalescing: {}x (≥ 3x: {}); \
             lanes taking turns: {}x (≥ 3x: {})\n\
             * throughput, coalescing / eager: {:.2}x (> 1: {})",
            f2(a.durable_lines_ratio),
            at_least_3(a.durable_lines_ratio),
            f2(a.durable_lines_ratio_bound),
            f2(a.writeback_lines_ratio),
            at_least_3(a.writeback_lines_ratio),
            f2(a.turns_on_writeback_lines_ratio),
            at_least_3(a.turns_on_writeback_lines_ratio),
            a.throughput_ratio,
            met(a.throughput_ratio > 1.0),
        );
        // The model's figure, the ratio to eager it allows, and the share of the
        // model's saving coalescing achieved.
        let late = |late: Option<f64>, v: &Variant| match late {
            Some(l) if l > 0.0 => format!(
                "{l:.2} home lines/tx with a {:.0} MiB window ({:.2}x fewer than eager; \
                 coalescing flushed {:.2})",
                mib(v.window_bytes),
                a.eager.per_tx.writeback_lines / l,
                v.per_tx.writeback_lines
            ),
            _ => "—".into(),
        };
        let _ = writeln!(
            s,
            "* writing back as late as the log allows (a model run over the same \
             operations, `late_writeback_lines`: a record must be written back before \
             the ring comes round to it):\n  \
             * whole objects, each when its oldest pending record would be overwritten: \
             {}; lanes taking turns: {}\n  \
             * line by line, each line when the oldest pending record that dirtied it \
             would be overwritten, the fewest any write-back policy can flush with the \
             log: {}; lanes taking turns: {}\n",
            late(a.late_lines, &a.coalescing),
            late(a.late_lines_turns_on, &a.turns_on),
            late(a.fewest_lines, &a.coalescing),
            late(a.fewest_lines_turns_on, &a.turns_on),
        );

        let b = &self.thresholds;
        let _ = writeln!(
            s,
            "### (b) mixed (90% 8 B updates, 10% 1 KiB rewrites): count + volume vs count only\n\n\
             | policy | ns/op | ops/s | largest pending volume (B) | largest record (B) | \
             largest excess over threshold (B) | queued by count | queued by volume | \
             back-pressure rounds | within threshold + one record |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for v in [&b.count_and_volume, &b.count_only] {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} |",
                v.name,
                v.time_cells(),
                v.pending_hwm,
                v.largest_record,
                v.over_threshold_max,
                v.by_count,
                v.by_volume,
                v.by_backpressure,
                yes_no(v.within_threshold_plus_one_record()),
            );
        }
        let _ = writeln!(
            s,
            "\n* target (count + volume within its threshold plus one record, count only \
             beyond it): {}\n",
            met(b.target_met)
        );

        let c = &self.recovery;
        let _ = writeln!(
            s,
            "### (c) recovery time vs pending volume (mixed records, coalescing held off, \
             crash = pool dropped without close)\n\n\
             | pending (MiB) | transactions | log scanned (MiB) | records | groups replayed | \
             recovering open | clean open |\n|---|---|---|---|---|---|---|"
        );
        for p in &c.points {
            let _ = writeln!(
                s,
                "| {:.2} | {} | {:.2} | {} | {} | {} ±{:.0}% | {} |",
                mib(p.pending_bytes),
                p.transactions,
                mib(p.log_bytes),
                p.records,
                p.groups_replayed,
                fmt_ns(p.recover_ns.median),
                p.recover_ns.spread() * 50.0,
                fmt_ns(p.clean_ns.median),
            );
        }
        match (&c.fit, &c.fit_error) {
            (Some(f), _) => {
                let _ = writeln!(
                    s,
                    "\nLeast-squares line through the medians: recovering open = {} + {} per \
                     MiB pending (slope {:.0} ns/MiB), R² = {:.4}, {} points. Plot: \
                     `recovery-vs-pending.svg`.",
                    fmt_ns(f.intercept),
                    fmt_ns(f.slope),
                    f.slope,
                    f.r_squared,
                    f.n
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(s, "\nNo line fitted: {e}.");
            }
            (None, None) => {}
        }
        s
    }

    /// Writes `ablation.md`, `ablation.json` and `recovery-vs-pending.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), AblationError> {
        std::fs::create_dir_all(dir).map_err(AblationError::Write)?;
        std::fs::write(
            dir.join("ablation.json"),
            serde_json::to_string_pretty(self).expect("ablation serializes"),
        )
        .map_err(AblationError::Write)?;
        std::fs::write(dir.join("ablation.md"), self.markdown()).map_err(AblationError::Write)?;
        self.svg(&dir.join("recovery-vs-pending.svg"))
            .map_err(|e| AblationError::Plot(e.to_string()))
    }

    /// The recovery curve: every round's sample, the medians and the fitted line.
    fn svg(&self, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
        use plotters::prelude::*;

        let pts = &self.recovery.points;
        let samples: Vec<(f64, f64)> = pts
            .iter()
            .flat_map(|p| {
                p.recover_samples
                    .iter()
                    .map(move |&ns| (mib(p.pending_bytes), ns_f64(ns) / 1e6))
            })
            .collect();
        let medians: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (mib(p.pending_bytes), p.recover_ns.median / 1e6))
            .collect();
        let x_max = samples.iter().map(|p| p.0).fold(1.0_f64, f64::max) * 1.1;
        let y_max = samples.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.15;
        let root = SVGBackend::new(file, (720, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "pmbench ablation: recovery time vs pending volume (ours)",
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("committed records not written back (MiB)")
            .y_desc("recovering open (ms)")
            .draw()?;
        let grey = RGBColor(0x99, 0x99, 0x99);
        let blue = RGBColor(0x1f, 0x77, 0xb4);
        chart
            .draw_series(samples.iter().map(|&p| Circle::new(p, 3, grey.filled())))?
            .label("each round")
            .legend(move |(x, y)| Circle::new((x + 6, y), 3, grey.filled()));
        chart
            .draw_series(medians.iter().map(|&p| Circle::new(p, 5, blue.filled())))?
            .label("median")
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, blue.filled()));
        if let Some(f) = &self.recovery.fit {
            let red = RGBColor(0xd6, 0x27, 0x28);
            chart
                .draw_series(LineSeries::new(
                    [(0.0, f.at(0.0) / 1e6), (x_max, f.at(x_max) / 1e6)],
                    red.stroke_width(2),
                ))?
                .label(format!(
                    "fit: {:.3} ms + {:.3} ms/MiB, R² = {:.3}",
                    f.intercept / 1e6,
                    f.slope / 1e6,
                    f.r_squared
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], red.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_object(offsets: &[u32]) -> UpdateJob {
        UpdateJob {
            len: 8,
            threads: 1,
            objects: 2,
            object_size: 1024,
            warm: UpdateOps {
                obj: vec![],
                off: vec![],
                lens: vec![],
            },
            timed: UpdateOps {
                obj: vec![0; offsets.len()],
                off: offsets.to_vec(),
                lens: vec![],
            },
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // small exact ratios
    fn late_writeback_folds_every_record_a_window_holds_and_counts_distinct_lines() {
        for per_line in [false, true] {
            let late = |job: &UpdateJob, window| late_writeback_lines(job, window, per_line);
            // Ten updates of one line: written back at operations 4 and 8 (the records
            // of operations 0 and 4 reaching the end of a 4-record window); 8 and 9
            // stay pending.
            assert_eq!(late(&one_object(&[0; 10]), 4), Some(0.2));
            // A window of one record: every record but the last is written back alone.
            assert_eq!(late(&one_object(&[0; 10]), 1), Some(0.9));
            // Two lines in turn, four records a window: each line is flushed twice.
            let two = one_object(&[0, 64, 0, 64, 0, 64, 0, 64, 0, 64]);
            assert_eq!(late(&two, 4), Some(0.4));
            // An update crossing a line boundary dirties both lines.
            assert_eq!(late(&one_object(&[60, 0]), 1), Some(1.0));
            // Warm-up operations fill the window but are not counted.
            let mut warm = one_object(&[0; 4]);
            warm.warm = warm.timed.clone();
            assert_eq!(late(&warm, 4), Some(0.25));
            assert_eq!(late(&one_object(&[]), 4), None);
            assert_eq!(late(&one_object(&[0]), 0), None);
        }
        // Where whole objects cost more: lines 0, 1, 0, 1 in a 3-record window. The
        // object's oldest record expires at operation 3 and takes both lines; line by
        // line only line 0 is due then (line 1's oldest record expires after the end).
        let ab = one_object(&[0, 64, 0, 64]);
        assert_eq!(late_writeback_lines(&ab, 3, false), Some(0.5));
        assert_eq!(late_writeback_lines(&ab, 3, true), Some(0.25));
    }

    #[test]
    fn ops_for_volume_stop_at_the_first_op_that_reaches_the_volume_and_cycle() {
        let ops = UpdateOps {
            obj: vec![0, 1, 2],
            off: vec![0, 8, 16],
            lens: vec![8, 1024, 8],
        };
        let v = ops_for_volume(&ops, 1024, 1040);
        assert_eq!(v.lens, vec![8, 1024, 8]);
        let v = ops_for_volume(&ops, 1024, 1041);
        assert_eq!(v.lens, vec![8, 1024, 8, 8]);
        assert_eq!(v.obj, vec![0, 1, 2, 0]);
        // One-size jobs have no lengths: the job's length counts.
        let fixed = UpdateOps {
            obj: vec![5],
            off: vec![0],
            lens: Vec::new(),
        };
        assert_eq!(ops_for_volume(&fixed, 8, 20).lens, vec![8, 8, 8]);
    }

    #[test]
    fn recovery_points_double_from_a_quarter_mib_quick_and_one_mib_full() {
        let mut o = AblationOptions {
            rounds: 1,
            quick: true,
            pool_dir: PathBuf::new(),
        };
        assert_eq!(
            o.recovery_points(),
            vec![MIB / 4, MIB / 2, MIB, 2 * MIB, 4 * MIB]
        );
        o.quick = false;
        assert_eq!(
            o.recovery_points(),
            vec![MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB]
        );
    }

    #[test]
    fn the_threshold_bound_allows_exactly_one_record_of_excess() {
        let v = |over, largest| Variant {
            name: "t",
            policy: Policy::of(pmrt::CoalesceConfig::default(), MAIN_LANES),
            ns_per_op: Summary::of(&[1.0]).unwrap(),
            ops_per_s: Summary::of(&[1.0]).unwrap(),
            per_tx: TxPerTx {
                commits_per_op: 1.0,
                commit_lines: 1.0,
                commit_fences: 1.0,
                writeback_lines: 0.0,
                eager_lines: 0.0,
                logged_bytes: 8.0,
                user_bytes: 8.0,
                durable_lines: None,
                fences: None,
                write_amplification: None,
            },
            pending_hwm: 0,
            largest_record: largest,
            over_threshold_max: over,
            by_count: 0.0,
            by_volume: 0.0,
            by_backpressure: 0.0,
            lane_log_bytes: 2 << 20,
            window_bytes: 2 << 20,
        };
        assert!(v(0, 1024).within_threshold_plus_one_record());
        assert!(v(1024, 1024).within_threshold_plus_one_record());
        assert!(!v(1025, 1024).within_threshold_plus_one_record());
    }
}
