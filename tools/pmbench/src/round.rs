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
    /// Lines flushed by commits (records, write-through homes).
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
}

impl TxCounters {
    /// The growth from `a` to `b` (high-water marks: `b`'s).
    pub fn between(a: &pmrt::PoolStats, b: &pmrt::PoolStats) -> Self {
        TxCounters {
            commits: b.commits - a.commits,
            commit_lines: b.commit_lines_flushed - a.commit_lines_flushed,
            commit_fences: b.commit_fences - a.commit_fences,
            writeback_lines: b.coalescing.lines_written_back - a.coalescing.lines_written_back,
            eager_lines: b.coalescing.lines_eager - a.coalescing.lines_eager,
            logged_bytes: b.logged_bytes - a.logged_bytes,
            user_bytes: b.user_bytes - a.user_bytes,
            coalesce_rounds: b.coalescing.rounds - a.coalescing.rounds,
            pending_hwm: b.coalescing.pending_hwm,
            over_threshold_max: b.coalescing.over_threshold_max,
        }
    }
}
