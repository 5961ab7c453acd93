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
    /// Counts over the regions of other metrics (open, first allocation, ...), when
    /// the stack counts them itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_metric: Vec<(Metric, RoundCounters)>,
}
