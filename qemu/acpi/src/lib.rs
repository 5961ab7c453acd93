//! Bounds-checked parsing of the ACPI tables the test kernel needs to find NVDIMMs:
//! the RSDP, the root table (RSDT, or XSDT from ACPI 2.0 on) and the NFIT's System
//! Physical Address Range structures.
//!
//! Firmware tables are untrusted input: every length and offset is checked against the
//! bytes actually available, every checksum is verified, and every problem is a typed
//! [`AcpiError`]; nothing here panics or reads outside a slice. Physical memory is
//! reached only through [`PhysMemory`], so the whole walk runs on the host in tests over
//! tables built byte by byte.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

mod bytes;
mod error;
mod nfit;
mod rsdp;
mod sdt;
mod walk;

pub use error::{AcpiError, Signature};
pub use nfit::{Nfit, SpaRange, Structure, Structures, PERSISTENT_MEMORY_GUID, SPA_LEN};
pub use rsdp::{Rsdp, RSDP_V1_LEN, RSDP_V2_LEN};
pub use sdt::{RootTable, Sdt, HEADER_LEN};
pub use walk::{find_table, PhysMemory, MAX_TABLE_LEN};

#[cfg(test)]
mod tests;
