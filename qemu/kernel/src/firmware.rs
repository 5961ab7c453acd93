//! Reading firmware-provided memory (start info, ACPI tables) as byte slices.

use pm_acpi::{AcpiError, PhysMemory};

use crate::start_info::MemoryRegion;

/// Everything the boot stub identity-maps: the low 4 GiB.
const MAPPED_END: u64 = 1 << 32;

extern "C" {
    /// First byte of the kernel image (linker script).
    static __kernel_start: u8;
    /// One past the last byte of the kernel image, `.bss` included (linker script).
    static __kernel_end: u8;
}

/// The kernel's own image: mapped RAM, but never firmware's, and written by the kernel,
/// so never handed out as a firmware byte slice.
pub(crate) fn kernel_image() -> (u64, u64) {
    (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    )
}

/// The identity-mapped low 4 GiB, read-only, optionally restricted to the regions of
/// the firmware's memory map (so a corrupt table pointer cannot make the kernel read a
/// device's registers); the kernel's own image is always excluded.
#[derive(Debug, Clone, Copy)]
pub struct LowMemory<'a> {
    regions: &'a [MemoryRegion],
}

impl<'a> LowMemory<'a> {
    /// Any address below 4 GiB (before the memory map is known).
    pub fn unrestricted() -> Self {
        LowMemory { regions: &[] }
    }

    /// Only addresses inside one entry of `memmap` (any type: ACPI tables sit in
    /// reserved or ACPI entries); any address below 4 GiB when it is empty.
    pub fn within(memmap: &'a [MemoryRegion]) -> Self {
        LowMemory { regions: memmap }
    }

    fn allowed(&self, addr: u64, len: usize) -> bool {
        let Some(end) = addr.checked_add(len as u64) else {
            return false;
        };
        let (image_start, image_end) = kernel_image();
        end <= MAPPED_END
            && (end <= image_start || addr >= image_end)
            && (self.regions.is_empty()
                || self
                    .regions
                    .iter()
                    .any(|r| addr >= r.base && end <= r.base.saturating_add(r.size)))
    }

    /// As [`PhysMemory::read`] with a `'static` result, for bytes already checked
    /// by a `read` of at least this range.
    pub fn read_static(&self, addr: u64, len: usize) -> &'static [u8] {
        assert!(self.allowed(addr, len), "read_static of unchecked range");
        // SAFETY: as in `read`; firmware memory stays mapped and unwritten for the
        // kernel's whole life, so the slice may be `'static`.
        unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
    }
}

impl PhysMemory for LowMemory<'_> {
    fn read(&self, addr: u64, len: usize) -> Result<&[u8], AcpiError> {
        if addr == 0 || !self.allowed(addr, len) {
            return Err(AcpiError::Unreadable { addr, len });
        }
        Ok(self.read_static(addr, len))
    }
}
