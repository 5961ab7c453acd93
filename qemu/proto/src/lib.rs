//! What the bare-metal test kernel and its host runner agree on.
//!
//! Both sides link this crate, so each format has one definition:
//!
//! * [`BootArgs`]: the kernel command line (`-append`), parsed by the kernel and
//!   written by the runner;
//! * [`GuestExit`]: the values the kernel writes to `isa-debug-exit` and the QEMU exit
//!   statuses they become;
//! * [`report`]: the serial lines the runner reads (`committed <i>`, `N passed, N
//!   failed`, ...);
//! * [`log`]: the crash-cycle workload's on-media format (checksummed 64-byte records)
//!   and its scanner, run by the kernel's verifier boot and by the runner on the image;
//! * [`heap`]: the heap crash-cycle workload: its ops as a function of the seed, and
//!   the lines its writer and verifier print;
//! * [`tx`]: the transaction crash-cycle workload's lines;
//! * [`SplitMix64`]: the seeded generator behind every pattern, so a seed replays.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod args;
mod exit;
pub mod heap;
pub mod log;
pub mod report;
mod rng;
pub mod tx;
mod words;

pub use args::{
    ArgError, BootArgs, Mode, Suite, DEFAULT_OPS, DEFAULT_RECORDS, MAX_OPS, MAX_RECORDS,
};
pub use exit::{GuestExit, EXIT_PORT};
pub use rng::{mix64, SplitMix64};
