//! Host runner for the QEMU test kernel (`qemu/kernel`).
//!
//! * [`Kernel::build`] builds the kernel (`cargo build --release` in `qemu/kernel`);
//! * [`Images`] makes one fresh NVDIMM image file per run (QEMU takes no lock on them);
//! * [`boot`] runs `qemu-system-x86_64` with emulated NVDIMMs under a wall-clock limit
//!   (SIGKILL), optionally killing it on purpose after a delay, and returns a
//!   [`BootOutcome`]: what the exit status means, the serial log and its parsed lines;
//! * [`run_suite`] boots a suite and demands a pass (exit 33 and `N passed, 0 failed`);
//! * [`crash_cycles`] drives crash-reboot cycles of any [`Workload`]: boot on a fresh
//!   image, crash (kill after a seeded delay, or `crash_at=<n>`), boot the verifier on
//!   the same image, check; [`LogWorkload`], [`HeapWorkload`] and [`TxWorkload`]
//!   are the workloads.
//!
//! Everything random comes from a printed seed, so a failure replays.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod build;
mod cycle;
mod error;
mod heap_workload;
mod images;
mod log_workload;
mod qemu;
mod suite;
#[cfg(test)]
mod test_support;
mod tx_workload;

pub use build::Kernel;
pub use cycle::{
    crash_cycles, kill_window_for, Crash, CycleConfig, CycleError, CycleFailure, CycleRun,
    CyclesReport, HostPoolError, Workload, KILL_WINDOW,
};
pub use error::RunnerError;
pub use heap_workload::{host_view, HeapReport, HeapWorkload};
pub use images::Images;
pub use log_workload::{LogReport, LogWorkload};
pub use qemu::{boot, qemu_available, qemu_program, BootOutcome, BootSpec, Exit, IMAGE_SIZE};
pub use suite::{run_suite, SuiteError};
pub use tx_workload::{host_state, TxReport, TxWorkload, DEFAULT_TXS};
