//! The `pmalloc` and `pmrt` work that the QEMU test kernel and its host runner share, so a pool
//! made on one side is checked by the same code on the other (one format everywhere):
//!
//! * [`pattern`]: a seeded pool pattern (a root, fields holding objects from 1 byte to
//!   multi-chunk extents at alignments up to 4 KiB, some freed again), written and
//!   verified on any [`arch::Media`]: the kernel's cross-boot pair, and the host/QEMU
//!   format tests in both directions;
//! * [`workload`]: the heap crash-cycle workload: the writer the kernel runs, the
//!   [`workload::HeapView`] its verifier reports (and the runner rebuilds from the
//!   image), and the oracle ([`workload::History`]) that judges a view against the
//!   ops the writer reported;
//! * [`tx`]: the transaction crash-cycle workload on a `pmrt` pool: its plans, the
//!   writer and verifier, the state [`tx::Model`] and the oracle ([`tx::TxHistory`]).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

extern crate alloc;

use core::fmt;

use pmalloc::OpenReport;

pub mod pattern;
pub mod tx;
pub mod workload;

/// Damage open found and set aside: never an expected outcome here, since the pools of
/// these tests are only ever crashed, not corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged {
    /// Structures set aside.
    pub count: usize,
    /// The first one's offset.
    pub first: u64,
}

impl Damaged {
    /// `Err` if `report` lists damage.
    pub fn check(report: &OpenReport) -> Result<(), Damaged> {
        match report.damage.first() {
            Some(d) => Err(Damaged {
                count: report.damage.len(),
                first: d.offset,
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open set aside {} damaged structures, first at {:#x}",
            self.count, self.first
        )
    }
}

impl core::error::Error for Damaged {}
