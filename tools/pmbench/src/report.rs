//! The results: rows per workload metric, written as Markdown, JSON and an SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::count::PmdkCount;
use crate::harness::{PmdkMode, SideRuns, WorkloadRuns};
use crate::round::{RoundCounters, TxPerTx};
use crate::stats::Summary;
use crate::workload::{Metric, Params, WorkloadId};

/// One side's figure for one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Cell {
    /// Per-round figures.
    Measured {
        /// Nanoseconds per unit, over the rounds.
        ns_per_unit: Summary,
        /// Units per second, over the rounds.
        units_per_s: Summary,
    },
    /// Our stack is not written yet.
    NotBuilt,
    /// Built without the `pmdk` feature.
    FeatureOff,
    /// A round failed.
    Failed {
        /// The error.
        error: String,
    },
}

impl Cell {
    fn of(side: &SideRuns, metric: Metric) -> Cell {
        match side {
            SideRuns::Measured { rounds } => {
                let ns: Vec<f64> = rounds
                    .iter()
                    .flat_map(|r| r.timings.iter().filter(|t| t.metric == metric))
                    .map(crate::round::Timing::ns_per_unit)
                    .collect();
                let per_s: Vec<f64> = ns.iter().map(|n| 1e9 / n.max(f64::MIN_POSITIVE)).collect();
                match (Summary::of(&ns), Summary::of(&per_s)) {
                    (Some(ns_per_unit), Some(units_per_s)) => Cell::Measured {
                        ns_per_unit,
                        units_per_s,
                    },
                    _ => Cell::Failed {
                        error: format!("no {metric:?} timing in the rounds"),
                    },
                }
            }
            SideRuns::NotBuilt => Cell::NotBuilt,
            SideRuns::FeatureOff => Cell::FeatureOff,
            SideRuns::Failed { error } => Cell::Failed {
                error: error.clone(),
            },
        }
    }

    fn per_s(&self) -> Option<f64> {
        match self {
            Cell::Measured { units_per_s, .. } => Some(units_per_s.median),
            _ => None,
        }
    }

    fn ns(&self) -> Option<f64> {
        match self {
            Cell::Measured { ns_per_unit, .. } => Some(ns_per_unit.median),
            _ => None,
        }
    }

    fn time_text(&self) -> String {
        match self {
            Cell::Measured { ns_per_unit, .. } => format!(
                "{} ±{:.0}%",
                fmt_ns(ns_per_unit.median),
                ns_per_unit.spread() * 50.0
            ),
            Cell::NotBuilt => "not built yet".into(),
            Cell::FeatureOff => "pmdk feature off".into(),
            Cell::Failed { .. } => "FAILED".into(),
        }
    }
}

/// Persistence work per unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerUnit {
    /// Fences per unit.
    pub fences: f64,
    /// Flushed cache lines per unit.
    pub lines_flushed: f64,
    /// Non-temporal 64-byte lines per unit.
    pub nt_lines: f64,
    /// Bytes made durable per user byte changed (update workloads only).
    pub write_amplification: Option<f64>,
}

impl PerUnit {
    fn from_pmdk(c: &PmdkCount) -> PerUnit {
        PerUnit {
            fences: c.fences_per_unit(),
            lines_flushed: c.lines_per_unit(),
            nt_lines: c.nt_lines_per_unit(),
            write_amplification: c
                .workload
                .user_bytes_per_op()
                .filter(|_| c.metric == Metric::Op)
                .map(|b| c.write_amplification(b)),
        }
    }

    #[allow(clippy::cast_precision_loss)] // report arithmetic on counts far below 2^53
    fn from_ours(id: WorkloadId, metric: Metric, side: &SideRuns) -> Option<PerUnit> {
        let SideRuns::Measured { rounds } = side else {
            return None;
        };
        let mut total = RoundCounters::default();
        let mut units = 0;
        for r in rounds {
            let c = if metric == Metric::Op {
                r.counters?
            } else {
                r.by_metric.iter().find(|(m, _)| *m == metric)?.1
            };
            total += c;
            units += r.timings.iter().find(|t| t.metric == metric)?.units;
        }
        let u = units.max(1) as f64;
        Some(PerUnit {
            fences: total.fences as f64 / u,
            lines_flushed: total.lines_flushed as f64 / u,
            nt_lines: total.nt_bytes as f64 / 64.0 / u,
            write_amplification: id
                .user_bytes_per_op()
                .filter(|_| metric == Metric::Op)
                .map(|b| total.bytes_persisted as f64 / u / b),
        })
    }
}

/// One workload metric, all sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The workload.
    pub workload: WorkloadId,
    /// The metric.
    pub metric: Metric,
    /// What a unit is.
    pub unit: &'static str,
    /// What the workload does.
    pub description: &'static str,
    /// Ours with flushes.
    pub ours: Cell,
    /// Ours, eADR mode.
    pub ours_eadr: Cell,
    /// PMDK, flush path.
    pub pmdk: Cell,
    /// PMDK, `PMEM_NO_FLUSH=1`.
    pub pmdk_no_flush: Cell,
    /// Ours / PMDK throughput (flush paths).
    pub ratio: Option<f64>,
    /// Ours eADR / PMDK no-flush throughput.
    pub ratio_eadr: Option<f64>,
    /// PMDK no-flush / PMDK throughput: how much of PMDK's time is flushing.
    pub pmdk_no_flush_speedup: Option<f64>,
    /// Our persistence work per unit (from `arch` counters).
    pub ours_counts: Option<PerUnit>,
    /// Our transactions' work per committed transaction (from `pmrt`'s statistics),
    /// for workloads made of transactions.
    pub ours_tx: Option<TxPerTx>,
    /// PMDK's, flush path (counted by the tracer).
    pub pmdk_counts: Option<PerUnit>,
    /// PMDK's, no-flush path.
    pub pmdk_no_flush_counts: Option<PerUnit>,
    /// Derived figures (recovery throughput).
    pub note: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The command that produced it.
    pub command: String,
    /// Rounds per side.
    pub rounds: u32,
    /// The sizes used.
    pub params: Params,
    /// Operations per counted PMDK run, when counts were taken.
    pub pmdk_count_ops: Option<u64>,
    /// CPU, cores, kernel.
    pub machine: String,
    /// One row per workload metric.
    pub rows: Vec<Row>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

impl Report {
    /// Builds the rows from the runs and PMDK's counts.
    pub fn build(
        command: String,
        rounds: u32,
        params: Params,
        runs: &[WorkloadRuns],
        counts: Option<(u64, &[PmdkCount])>,
    ) -> Report {
        let find = |id: WorkloadId, metric: Metric, mode: PmdkMode| {
            counts.and_then(|(_, cs)| {
                cs.iter()
                    .find(|c| c.workload == id && c.metric == metric && c.mode == mode)
                    .map(PerUnit::from_pmdk)
            })
        };
        let mut rows = Vec::new();
        for run in runs {
            let id = run.workload;
            for &metric in id.metrics() {
                let ours = Cell::of(&run.ours, metric);
                let ours_eadr = Cell::of(&run.ours_eadr, metric);
                let pmdk = Cell::of(&run.pmdk, metric);
                let pmdk_no_flush = Cell::of(&run.pmdk_no_flush, metric);
                let note = (metric == Metric::RecoverOpen).then(|| {
                    let clean = |side| Cell::of(side, Metric::CleanOpen);
                    recover_note(
                        params.log_bytes,
                        &[
                            ("ours", &ours, clean(&run.ours)),
                            ("PMDK", &pmdk, clean(&run.pmdk)),
                            ("PMDK no-flush", &pmdk_no_flush, clean(&run.pmdk_no_flush)),
                        ],
                    )
                });
                rows.push(Row {
                    workload: id,
                    metric,
                    unit: metric.unit(),
                    description: id.describe(),
                    ratio: ratio(ours.per_s(), pmdk.per_s()),
                    ratio_eadr: ratio(ours_eadr.per_s(), pmdk_no_flush.per_s()),
                    pmdk_no_flush_speedup: ratio(pmdk_no_flush.per_s(), pmdk.per_s()),
                    // Counts from the round that counted; times from the others.
                    ours_counts: PerUnit::from_ours(id, metric, &run.ours_counted),
                    ours_tx: match &run.ours_counted {
                        SideRuns::Measured { rounds } if metric == Metric::Op => {
                            TxPerTx::of(rounds)
                        }
                        _ => None,
                    },
                    pmdk_counts: find(id, metric, PmdkMode::Flush),
                    pmdk_no_flush_counts: find(id, metric, PmdkMode::NoFlush),
                    ours,
                    ours_eadr,
                    pmdk,
                    pmdk_no_flush,
                    note,
                });
            }
        }
        Report {
            command,
            rounds,
            params,
            pmdk_count_ops: counts.map(|(n, _)| n),
            machine: machine(),
            rows,
        }
    }

    /// The Markdown table and its notes.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "`{}` — {} rounds per side, medians (± half the max-min spread); {}.\n",
            self.command, self.rounds, self.machine
        );
        s.push_str(
            "| workload | ours | ours eADR | PMDK | PMDK no-flush | ops/s ours / PMDK / no-flush | \
             ratio ours/PMDK | ratio eADR / no-flush | ours lines/op | ours nt lines/op | \
             ours fences/op | ours WA | PMDK fences/op | PMDK lines/op | PMDK nt lines/op | \
             PMDK WA |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let name = label(r);
            let per_s = |c: &Cell| c.per_s().map_or("—".into(), fmt_rate);
            let f = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
            let ours_c = r.ours_counts;
            let pmdk_c = r.pmdk_counts;
            let _ = writeln!(
                s,
                "| {name} (per {}) | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.unit,
                r.ours.time_text(),
                r.ours_eadr.time_text(),
                r.pmdk.time_text(),
                r.pmdk_no_flush.time_text(),
                per_s(&r.ours),
                per_s(&r.pmdk),
                per_s(&r.pmdk_no_flush),
                f(r.ratio),
                f(r.ratio_eadr),
                f(ours_c.map(|c| c.lines_flushed)),
                f(ours_c.map(|c| c.nt_lines)),
                f(ours_c.map(|c| c.fences)),
                f(ours_c.and_then(|c| c.write_amplification)),
                f(pmdk_c.map(|c| c.fences)),
                f(pmdk_c.map(|c| c.lines_flushed)),
                f(pmdk_c.map(|c| c.nt_lines)),
                f(pmdk_c.and_then(|c| c.write_amplification)),
            );
        }
        s.push('\n');
        tx_table(&mut s, &self.rows);
        for r in &self.rows {
            if let Some(n) = &r.note {
                let _ = writeln!(s, "* {} {:?}: {n}", r.workload, r.metric);
            }
            if let Some(c) = r.pmdk_no_flush_counts {
                let _ = writeln!(
                    s,
                    "* {} {:?}, PMDK no-flush: {:.2} fences, {:.2} lines, {:.2} nt lines per {}{}",
                    r.workload,
                    r.metric,
                    c.fences,
                    c.lines_flushed,
                    c.nt_lines,
                    r.unit,
                    r.pmdk_no_flush_speedup.map_or(String::new(), |x| format!(
                        "; {x:.2}x PMDK's flush-path throughput"
                    )),
                );
            }
            for (side, c) in [
                ("ours", &r.ours),
                ("ours eADR", &r.ours_eadr),
                ("PMDK", &r.pmdk),
                ("PMDK no-flush", &r.pmdk_no_flush),
            ] {
                if let Cell::Failed { error } = c {
                    let _ = writeln!(s, "* {} {:?}, {side} FAILED: {error}", r.workload, r.metric);
                }
            }
        }
        if let Some(n) = self.pmdk_count_ops {
            let _ = writeln!(
                s,
                "\nPMDK counts: `pmbench count-pmdk`, {n} traced operations per workload \
                 (open and recover at their full sizes), native code path, every execution \
                 of sfence/clwb/clflushopt/clflush/movnt*/movdir64b in libpmem, libpmemobj, \
                 libc and pmbench counted with breakpoints; nt lines = non-temporal bytes / 64."
            );
        }
        s
    }

    /// Writes `pmbench.json` and `pmbench.md` into `dir`, and `pmbench.svg` with `plot`.
    pub fn write(&self, dir: &Path, plot: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("pmbench.json"),
            serde_json::to_string_pretty(self).expect("report serializes"),
        )?;
        std::fs::write(dir.join("pmbench.md"), self.markdown())?;
        if plot {
            crate::report::svg(self, &dir.join("pmbench.svg"))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// The footnote table of our transactions' own counters (rows that have them).
fn tx_table(s: &mut String, rows: &[Row]) {
    let rows: Vec<(&Row, TxPerTx)> = rows
        .iter()
        .filter_map(|r| r.ours_tx.map(|t| (r, t)))
        .collect();
    if rows.is_empty() {
        return;
    }
    s.push_str(
        "Ours, per committed transaction (`pmrt` statistics over the counting round's region, flush \
         path; write-back = home lines flushed by coalescing, eager = what write-back at \
         every commit would flush; all lines (flushed or stored non-temporally: log \
         records) and fences from `arch`; WA = bytes made durable / \
         bytes the user changed):\n\n\
         | workload | commit lines/tx | commit fences/tx | write-back lines/tx | \
         eager lines/tx | all lines/tx | all fences/tx | logged B/tx | user B/tx | WA |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let f = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
    for (r, t) in rows {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} | {} |",
            label(r),
            t.commit_lines,
            t.commit_fences,
            t.writeback_lines,
            t.eager_lines,
            f(t.durable_lines),
            f(t.fences),
            t.logged_bytes,
            t.user_bytes,
            f(t.write_amplification),
        );
    }
    s.push('\n');
}

/// Log bytes per nanosecond (= GB/s) of each side's recovering open, over the whole
/// open and net of the clean open of the same pool.
fn recover_note(log_bytes: u64, sides: &[(&str, &Cell, Cell)]) -> String {
    #[allow(clippy::cast_precision_loss)] // a log size far below 2^53
    let bytes = log_bytes as f64;
    let parts: Vec<String> = sides
        .iter()
        .map(|(name, recover, clean)| match (recover.ns(), clean.ns()) {
            (Some(r), Some(c)) if r > c => format!(
                "{name} {:.2} GB/s ({:.2} GB/s net of a clean open)",
                bytes / r,
                bytes / (r - c)
            ),
            (Some(r), _) => format!("{name} {:.2} GB/s", bytes / r),
            _ => format!("{name} —"),
        })
        .collect();
    format!(
        "{} MiB of undo log rolled back: {}",
        log_bytes >> 20,
        parts.join(", ")
    )
}

/// A row's short name: the workload, and the metric where it has several.
fn label(r: &Row) -> String {
    let metric = match r.metric {
        Metric::Op => return r.workload.name().to_owned(),
        Metric::Open => "open",
        Metric::FirstAlloc => "1st alloc",
        Metric::Walk => "walk",
        Metric::RecoverOpen => "recovery",
        Metric::CleanOpen => "clean open",
    };
    format!("{}: {metric}", r.workload)
}

/// `812.3 ns`, `12.30 µs`, `45.60 ms`, `1.20 s` (`-5.20 ms` below zero: a fitted
/// intercept can be).
pub fn fmt_ns(ns: f64) -> String {
    if ns < 0.0 {
        format!("-{}", fmt_ns(-ns))
    } else if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `1.23 M/s`, `456.0 k/s`, `12.0/s`.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.1}/s")
    }
}

/// CPU, cores and kernel, for report headers.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown kernel".into(), |s| s.trim().to_owned());
    format!("{cpu}, {cores} cores (shared with other jobs), Linux {kernel}, pools in tmpfs")
}

/// The bar chart of throughput ratios: ours/PMDK per workload metric (absent while ours
/// is not built), and PMDK no-flush/PMDK (how much flushing costs PMDK).
pub fn svg(report: &Report, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let rows: Vec<&Row> = report.rows.iter().collect();
    let labels: Vec<String> = rows.iter().map(|r| label(r)).collect();
    let series: [(&str, RGBColor, Vec<Option<f64>>); 3] = [
        (
            "ours / PMDK",
            RGBColor(0x1f, 0x77, 0xb4),
            rows.iter().map(|r| r.ratio).collect(),
        ),
        (
            "ours eADR / PMDK no-flush",
            RGBColor(0x2c, 0xa0, 0x2c),
            rows.iter().map(|r| r.ratio_eadr).collect(),
        ),
        (
            "PMDK no-flush / PMDK",
            RGBColor(0xff, 0x7f, 0x0e),
            rows.iter().map(|r| r.pmdk_no_flush_speedup).collect(),
        ),
    ];
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .fold(1.0_f64, |a, &b| a.max(b))
        * 1.15;
    #[allow(clippy::cast_precision_loss)] // a handful of rows
    let n = rows.len().max(1) as f64;
    let width = 120 + 90 * u32::try_from(rows.len()).unwrap_or(1);
    let root = SVGBackend::new(file, (width.max(640), 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "pmbench: throughput ratios (higher = faster than PMDK's flush path)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..n, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor();
            if (x - i - 0.5).abs() < 1e-6 {
                #[allow(clippy::cast_sign_loss)] // x is in [0, n)
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("throughput ratio")
        .draw()?;
    chart.draw_series(LineSeries::new([(0.0, 1.0), (n, 1.0)], BLACK.mix(0.5)))?;
    let bar = 0.8 / 3.0;
    for (k, (name, color, values)) in series.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)] // k < 3
        let off = 0.1 + bar * k as f64;
        let bars = values.iter().enumerate().filter_map(|(i, v)| {
            #[allow(clippy::cast_precision_loss)] // a handful of rows
            let x = i as f64 + off;
            v.map(|v| Rectangle::new([(x, 0.0), (x + bar, v)], color.filled()))
        });
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    if rows.iter().all(|r| r.ratio.is_none()) {
        root.draw(&Text::new(
            "ours: not built yet (no ours/PMDK bars)",
            (80, 60),
            ("sans-serif", 14).into_font().color(&RED),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::{RoundResult, Timing, TxCounters};

    fn runs(id: WorkloadId, tx: Option<TxCounters>) -> WorkloadRuns {
        let r = RoundResult {
            timings: vec![Timing {
                metric: Metric::Op,
                ns: 2000,
                units: 2,
            }],
            counters: Some(RoundCounters {
                lines_flushed: 3,
                fences: 2,
                nt_bytes: 0,
                bytes_persisted: 192,
            }),
            tx,
            by_metric: Vec::new(),
        };
        WorkloadRuns {
            workload: id,
            ours: SideRuns::Measured {
                rounds: vec![r.clone()],
            },
            ours_counted: SideRuns::Measured { rounds: vec![r] },
            ours_eadr: SideRuns::NotBuilt,
            pmdk: SideRuns::FeatureOff,
            pmdk_no_flush: SideRuns::FeatureOff,
        }
    }

    #[test]
    fn our_transaction_counters_get_a_row_in_the_footnote_table() {
        let tx = TxCounters {
            commits: 2,
            commit_lines: 2,
            commit_fences: 2,
            writeback_lines: 1,
            eager_lines: 2,
            logged_bytes: 16,
            user_bytes: 16,
            ..TxCounters::default()
        };
        let report = Report::build(
            "test".into(),
            1,
            Params::quick(),
            &[runs(WorkloadId::W1, Some(tx)), runs(WorkloadId::W4, None)],
            None,
        );
        let md = report.markdown();
        assert!(
            md.contains("| w1 | 1.00 | 1.00 | 0.50 | 1.00 | 1.50 | 1.00 | 8.0 | 8.0 | 12.00 |"),
            "{md}"
        );
        // w4 is atomic allocation: no transactions, no row.
        assert!(!md.contains("| w4 | 1.00"), "{md}");
    }

    #[test]
    fn durations_keep_their_unit_below_zero() {
        assert_eq!(fmt_ns(812.34), "812.3 ns");
        assert_eq!(fmt_ns(45.6e6), "45.60 ms");
        assert_eq!(fmt_ns(-5.2e6), "-5.20 ms");
    }

    #[test]
    fn without_transaction_counters_there_is_no_footnote_table() {
        let report = Report::build(
            "test".into(),
            1,
            Params::quick(),
            &[runs(WorkloadId::W4, None)],
            None,
        );
        assert!(!report.markdown().contains("per committed transaction"));
    }
}
