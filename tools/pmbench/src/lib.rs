//! pmbench: named workloads run side by side on this project's stack ("ours") and on
//! PMDK's libpmemobj, interleaved round by round, with per-operation fence and flush
//! counts for both.
//!
//! * [`workload`]: the workloads and the operation sequences both sides run;
//! * [`ours`]: the [`ours::OursEngine`] trait our stack plugs into;
//! * `pmdk` (feature `pmdk`): the C shim that runs PMDK's timed loops;
//! * [`harness`]: interleaved rounds, PMDK in child processes per configuration;
//! * [`count`]: PMDK's fences and flushed lines per operation, counted natively;
//! * [`report`]: the table, JSON and SVG;
//! * [`ablation`]: `pmbench ablation`, what coalescing buys (our stack only), with
//!   [`fit`] for the recovery-time line.
//!
//! See `docs/benchmarks.md` for the method.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

pub mod ablation;
pub mod count;
pub mod fence_cost;
pub mod fit;
pub mod harness;
pub mod instructions;

pub mod ours;
#[cfg(feature = "pmdk")]
pub mod pmdk;
pub mod report;
pub mod rng;
pub mod round;
pub mod stats;
pub mod workload;

pub use workload::{Job, Metric, Params, WorkloadId};
