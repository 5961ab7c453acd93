//! What one round of one workload on one stack produces.

use serde::{Deserialize, Serialize};

use crate::workload::Metric;

/// One timed quantity of a round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// What was timed.
    pub metric: Metric,
    /// Elapsed wall-clock nanoseconds of the timed region.
    pub ns: u64,
    /// Units in it (operations, objects walked, 1 for an open).
    pub units: u64,
}

impl Timing {
    /// Nanoseconds per unit.
    #[allow(clippy::cast_precision_loss)] // report arithmetic; 2^53 ns is 104 days
    pub fn ns_per_unit(&self) -> f64 {
        self.ns as f64 / self.units.max(1) as f64
    }
}

/// Flush/fence/byte counts of a round's timed region (our side, from `arch` counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundCounters {
    /// Cache lines flushed.
    pub lines_flushed: u64,
    /// Store fences.
    pub fences: u64,
    /// Bytes stored non-temporally.
    pub nt_bytes: u64,
    /// Bytes made durable (flushed lines x 64 + non-temporal bytes).
    pub bytes_persisted: u64,
}

impl std::ops::AddAssign for RoundCounters {
    fn add_assign(&mut self, o: RoundCounters) {
        self.lines_flushed += o.lines_flushed;
        self.fences += o.fences;
        self.nt_bytes += o.nt_bytes;
        self.bytes_persisted += o.bytes_persisted;
    }
}

impl From<arch::Counters> for RoundCounters {
    fn from(c: arch::Counters) -> Self {
        RoundCounters {
            lines_flushed: c.lines_flushed,
            fences: c.fences,
            nt_bytes: c.nt_bytes,
            bytes_persisted: c.bytes_persisted(),
        }
    }
}

/// The result of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundResult {
    /// One entry per metric of the workload, in [`crate::WorkloadId::metrics`] order.
    pub timings: Vec<Timing>,
    /// Counts over the [`Metric::Op`] region, when the stack counts them itself.
    pub counters: Option<RoundCounters>,
    /// Our transaction layer's own counts over the [`Metric::Op`] region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<TxCounters>,
    /// Counts over the regions of other metrics (open, first allocation, ...), when
    /// the stack counts them itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_metric: Vec<(Metric, RoundCounters)>,
}

/// What `pmrt` reports about a round's transactions: the split between the commit
/// path and deferred home write-back (coalescing), which `arch`'s counters cannot
/// tell apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxCounters {
    /// Committed transactions.
    pub commits: u64,
    /// Lines commits made durable (records, write-through homes).
    pub commit_lines: u64,
    /// Fences issued by commits.
    pub commit_fences: u64,
    /// Home lines written back by coalescing.
    pub writeback_lines: u64,
    /// Home lines write-back at every commit would have flushed.
    pub eager_lines: u64,
    /// Data bytes logged.
    pub logged_bytes: u64,
    /// Bytes the user changed.
    pub user_bytes: u64,
    /// Coalescing rounds.
    pub coalesce_rounds: u64,
    /// Largest pending volume of one object (bytes), over the pool's life.
    pub pending_hwm: u64,
    /// Largest excess of an object's pending volume over its volume threshold.
    pub over_threshold_max: u64,
    /// Objects queued for coalescing by their count threshold.
    #[serde(default)]
    pub by_count: u64,
    /// Objects queued (and served at once) by their volume threshold.
    #[serde(default)]
    pub by_volume: u64,
    /// Coalescing rounds forced by a full log (back-pressure).
    #[serde(default)]
    pub by_backpressure: u64,
    /// Largest single record (data bytes of one object in one transaction), over the
    /// pool's life.
    #[serde(default)]
    pub largest_record: u64,
    /// Bytes of one lane's log (`Area::lane_bytes`): the window of pending records one
    /// thread has before back-pressure when lanes do not take turns.
    #[serde(default)]
    pub lane_log_bytes: u64,
}

impl TxCounters {
    /// What `pool` did since its statistics were `before` (high-water marks: now).
    pub fn since<M: arch::Media>(pool: &pmrt::Pool<M>, before: &pmrt::PoolStats) -> Self {
        TxCounters {
            lane_log_bytes: pool.area().lane_bytes as u64,
            ..Self::between(before, &pool.stats())
        }
    }

    /// The growth from `a` to `b` (high-water marks: `b`'s).
    fn between(a: &pmrt::PoolStats, b: &pmrt::PoolStats) -> Self {
        TxCounters {
            commits: b.commits - a.commits,
            commit_lines: b.commit_lines_durable - a.commit_lines_durable,
            commit_fences: b.commit_fences - a.commit_fences,
            writeback_lines: b.coalescing.lines_written_back - a.coalescing.lines_written_back,
            eager_lines: b.coalescing.lines_eager - a.coalescing.lines_eager,
            logged_bytes: b.logged_bytes - a.logged_bytes,
            user_bytes: b.user_bytes - a.user_bytes,
            coalesce_rounds: b.coalescing.rounds - a.coalescing.rounds,
            pending_hwm: b.coalescing.pending_hwm,
            over_threshold_max: b.coalescing.over_threshold_max,
            by_count: b.coalescing.by_count - a.coalescing.by_count,
            by_volume: b.coalescing.by_volume - a.coalescing.by_volume,
            by_backpressure: b.coalescing.by_backpressure - a.coalescing.by_backpressure,
            largest_record: b.coalescing.largest_record,
            lane_log_bytes: 0,
        }
    }
}

/// Our transactions' persistence work per committed transaction, summed over rounds
/// (totals divided by total commits, so every transaction weighs the same).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TxPerTx {
    /// Committed transactions per timed operation.
    pub commits_per_op: f64,
    /// Lines commits made durable (records, write-through homes) per transaction.
    pub commit_lines: f64,
    /// Fences issued by commits per transaction.
    pub commit_fences: f64,
    /// Home lines written back by coalescing per transaction.
    pub writeback_lines: f64,
    /// Home lines write-back at every commit would have flushed, per transaction.
    pub eager_lines: f64,
    /// Data bytes logged per transaction.
    pub logged_bytes: f64,
    /// Bytes the user changed per transaction (`pmrt`'s count).
    pub user_bytes: f64,
    /// Every line made durable in the timed region (`arch` counters: flushed, or
    /// stored non-temporally) per transaction.
    pub durable_lines: Option<f64>,
    /// Every fence in the timed region (`arch` counters) per transaction.
    pub fences: Option<f64>,
    /// Bytes made durable (`arch`) per byte the user changed (`pmrt`).
    pub write_amplification: Option<f64>,
}

impl TxPerTx {
    /// The per-transaction figures of `rounds`; `None` when a round has no transaction
    /// counters or nothing committed.
    #[allow(clippy::cast_precision_loss)] // report arithmetic on counts far below 2^53
    pub fn of(rounds: &[RoundResult]) -> Option<TxPerTx> {
        let mut t = TxCounters::default();
        let mut c = Some(RoundCounters::default());
        let mut ops = 0;
        for r in rounds {
            let x = r.tx?;
            t.commits += x.commits;
            t.commit_lines += x.commit_lines;
            t.commit_fences += x.commit_fences;
            t.writeback_lines += x.writeback_lines;
            t.eager_lines += x.eager_lines;
            t.logged_bytes += x.logged_bytes;
            t.user_bytes += x.user_bytes;
            c = c.zip(r.counters).map(|(mut a, b)| {
                a += b;
                a
            });
            ops += r
                .timings
                .iter()
                .find(|t| t.metric == Metric::Op)
                .map_or(0, |t| t.units);
        }
        if t.commits == 0 {
            return None;
        }
        let n = t.commits as f64;
        let per = |v: u64| v as f64 / n;
        Some(TxPerTx {
            commits_per_op: n / ops.max(1) as f64,
            commit_lines: per(t.commit_lines),
            commit_fences: per(t.commit_fences),
            writeback_lines: per(t.writeback_lines),
            eager_lines: per(t.eager_lines),
            logged_bytes: per(t.logged_bytes),
            user_bytes: per(t.user_bytes),
            durable_lines: c.map(|c| per(c.bytes_persisted) / 64.0),
            fences: c.map(|c| per(c.fences)),
            write_amplification: c
                .filter(|_| t.user_bytes > 0)
                .map(|c| c.bytes_persisted as f64 / t.user_bytes as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ops: u64, tx: TxCounters, lines: u64) -> RoundResult {
        RoundResult {
            timings: vec![Timing {
                metric: Metric::Op,
                ns: 1000,
                units: ops,
            }],
            counters: Some(RoundCounters {
                lines_flushed: lines,
                fences: ops,
                nt_bytes: 0,
                bytes_persisted: lines * 64,
            }),
            tx: Some(tx),
            by_metric: Vec::new(),
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // small exact ratios
    fn per_transaction_figures_weigh_every_transaction_of_every_round_alike() {
        let tx = |commits, commit_lines, writeback_lines| TxCounters {
            commits,
            commit_lines,
            commit_fences: commits,
            writeback_lines,
            eager_lines: commits,
            logged_bytes: 8 * commits,
            user_bytes: 8 * commits,
            ..TxCounters::default()
        };
        let rounds = [
            result(100, tx(100, 100, 10), 110),
            result(300, tx(300, 300, 90), 390),
        ];
        let t = TxPerTx::of(&rounds).unwrap();
        assert_eq!(t.commits_per_op, 1.0);
        assert_eq!(t.commit_lines, 1.0);
        assert_eq!(t.writeback_lines, 0.25);
        assert_eq!(t.durable_lines, Some(1.25));
        assert_eq!(t.write_amplification, Some(10.0));
        // A round without transaction counters (PMDK's) gives none.
        let mut pmdk = rounds[0].clone();
        pmdk.tx = None;
        assert!(TxPerTx::of(&[pmdk]).is_none());
    }

    #[test]
    fn transaction_counters_written_before_the_trigger_fields_still_parse() {
        let old = r#"{"commits":1,"commit_lines":1,"commit_fences":1,"writeback_lines":0,
            "eager_lines":1,"logged_bytes":8,"user_bytes":8,"coalesce_rounds":0,
            "pending_hwm":8,"over_threshold_max":0}"#;
        let t: TxCounters = serde_json::from_str(old).unwrap();
        assert_eq!((t.commits, t.by_count, t.largest_record), (1, 0, 0));
    }
}
