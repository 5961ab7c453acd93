//! NVDIMM discovery: the NFIT's persistent-memory ranges, mapped and wrapped as media.

use core::fmt;
use core::ptr::NonNull;

use arch::{PersistMode, RawMedia, WORD};
use heapless::Vec;
use pm_acpi::{find_table, AcpiError, Nfit, PhysMemory};

use crate::paging::{self, MapError};

/// Most NVDIMMs the kernel handles (QEMU's `slots=` rarely goes past 4).
pub const MAX_NVDIMMS: usize = 8;

/// The NVDIMMs found, lowest address first.
pub type NvdimmList = Vec<Nvdimm, MAX_NVDIMMS>;

/// One persistent-memory range, identity-mapped for the rest of the kernel's life.
///
/// Only [`discover`] makes these, after mapping the range; nothing in the kernel makes a
/// Rust reference into an NVDIMM (all access goes through [`RawMedia`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nvdimm {
    /// Position in the list (0 = lowest address = the first `-device nvdimm`).
    pub index: usize,
    /// The NFIT's SPA range structure index.
    pub spa_index: u16,
    /// Physical (= virtual) address of byte 0.
    pub base: u64,
    /// Bytes.
    pub len: u64,
}

/// Why no NVDIMM list could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// QEMU gave no RSDP address (ACPI off).
    NoRsdp,
    /// The tables could not be walked or parsed.
    Acpi(AcpiError),
    /// More persistent-memory ranges than [`MAX_NVDIMMS`].
    TooMany,
    /// Two ranges overlap.
    Overlap {
        /// Base of the lower range.
        first: u64,
        /// Base of the range that starts inside it.
        second: u64,
    },
    /// A range could not be mapped.
    Map(MapError),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NoRsdp => write!(f, "no ACPI RSDP in the start info"),
            DiscoveryError::Acpi(e) => write!(f, "ACPI: {e}"),
            DiscoveryError::TooMany => write!(f, "more than {MAX_NVDIMMS} NVDIMM ranges"),
            DiscoveryError::Overlap { first, second } => {
                write!(f, "NVDIMM ranges at {first:#x} and {second:#x} overlap")
            }
            DiscoveryError::Map(e) => write!(f, "mapping an NVDIMM: {e}"),
        }
    }
}

impl core::error::Error for DiscoveryError {}

/// A media window that does not fit its NVDIMM or is misaligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowError {
    /// The NVDIMM's index.
    pub nvdimm: usize,
    /// Requested offset.
    pub off: u64,
    /// Requested length.
    pub len: u64,
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "window {:#x}+{:#x} does not fit NVDIMM {} (or is not 8-byte aligned)",
            self.off, self.len, self.nvdimm
        )
    }
}

impl core::error::Error for WindowError {}

/// Finds every persistent-memory SPA range in the NFIT reached from the RSDP at
/// `rsdp`, maps each, and lists them by address.
pub fn discover(mem: &impl PhysMemory, rsdp: u64) -> Result<NvdimmList, DiscoveryError> {
    if rsdp == 0 {
        return Err(DiscoveryError::NoRsdp);
    }
    let sdt = find_table(mem, rsdp, Nfit::SIGNATURE).map_err(DiscoveryError::Acpi)?;
    let nfit = Nfit::new(sdt).map_err(DiscoveryError::Acpi)?;
    let mut list = NvdimmList::new();
    for range in nfit.persistent_memory() {
        let range = range.map_err(DiscoveryError::Acpi)?;
        list.push(Nvdimm {
            index: 0,
            spa_index: range.index,
            base: range.base,
            len: range.length,
        })
        .map_err(|_| DiscoveryError::TooMany)?;
    }
    // QEMU lists the last device first; address order is device order.
    list.sort_unstable_by_key(|n| n.base);
    for pair in list.windows(2) {
        if pair[1].base < pair[0].base + pair[0].len {
            return Err(DiscoveryError::Overlap {
                first: pair[0].base,
                second: pair[1].base,
            });
        }
    }
    for (i, n) in list.iter_mut().enumerate() {
        n.index = i;
        paging::identity_map(n.base, n.len).map_err(DiscoveryError::Map)?;
    }
    Ok(list)
}

impl Nvdimm {
    /// The whole NVDIMM as media (ADR: real flush + fence).
    pub fn media(&self) -> RawMedia {
        self.window(0, self.len)
            .expect("the whole range is a valid window")
    }

    /// Bytes `[off, off + len)` of the NVDIMM as media; `off` must be 8-byte aligned.
    pub fn window(&self, off: u64, len: u64) -> Result<RawMedia, WindowError> {
        let err = WindowError {
            nvdimm: self.index,
            off,
            len,
        };
        let end = off.checked_add(len).ok_or(err)?;
        if end > self.len || !off.is_multiple_of(WORD as u64) {
            return Err(err);
        }
        let base = NonNull::new((self.base + off) as *mut u8).ok_or(err)?;
        // SAFETY: `discover` identity-mapped the whole range before making this
        // `Nvdimm`, and never unmaps it, so the window is mapped, readable and writable
        // for the kernel's life; `off` is 8-aligned and the NFIT base is page-aligned in
        // practice (RawMedia asserts alignment anyway); the kernel makes no Rust
        // reference into NVDIMM memory, and overlapping `RawMedia` windows access it
        // only through atomics and raw pointers, which the contract allows.
        Ok(unsafe { RawMedia::new(base, len as usize, PersistMode::Adr) }.with_kind("nvdimm"))
    }
}
