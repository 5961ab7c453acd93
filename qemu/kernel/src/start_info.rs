//! `hvm_start_info`: what QEMU's PVH loader tells the kernel, at the physical address
//! it left in `%ebx`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0x336ec578` |
//! | 4 | 4 | version (1 adds the memory map) |
//! | 24 | 8 | physical address of the NUL-terminated command line (`-append`), or 0 |
//! | 32 | 8 | physical address of the ACPI RSDP |
//! | 40 | 8 | physical address of the memory map (version >= 1) |
//! | 48 | 4 | memory map entries |
//!
//! Memory map entries are 24 bytes: base (8), size (8), type (4), reserved (4).

use core::fmt;

use heapless::{String, Vec};

use crate::firmware::LowMemory;
use pm_acpi::{AcpiError, PhysMemory};

const MAGIC: u32 = 0x336e_c578;
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CMDLINE: usize = 24;
const OFF_RSDP: usize = 32;
const OFF_MEMMAP: usize = 40;
const OFF_MEMMAP_ENTRIES: usize = 48;
const INFO_LEN: usize = 56;
const MEMMAP_ENTRY_LEN: usize = 24;

/// Longest command line kept.
pub const CMDLINE_MAX: usize = 1024;
/// Most memory map entries kept.
pub const MEMMAP_MAX: usize = 32;

/// One memory map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub base: u64,
    /// Bytes.
    pub size: u64,
    /// E820 type (1 RAM, 2 reserved, 3 ACPI, 4 NVS, ...).
    pub kind: u32,
}

/// The start info, copied out of guest memory.
#[derive(Debug)]
pub struct StartInfo {
    /// The kernel command line.
    pub cmdline: String<CMDLINE_MAX>,
    /// Physical address of the RSDP (0 if QEMU gave none).
    pub rsdp: u64,
    /// The memory map (empty for version 0).
    pub memmap: Vec<MemoryRegion, MEMMAP_MAX>,
}

/// Why the start info could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartInfoError {
    /// The structure or something it points to is outside mapped memory.
    Unreadable(AcpiError),
    /// The magic number is wrong: not entered through PVH.
    Magic {
        /// What was found.
        found: u32,
    },
    /// No NUL within [`CMDLINE_MAX`] bytes of the command line's start.
    CmdlineTooLong {
        /// Its physical address.
        addr: u64,
    },
    /// The command line is not UTF-8.
    CmdlineNotUtf8 {
        /// Byte offset of the first bad byte.
        at: usize,
    },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::Unreadable(e) => write!(f, "start info unreadable: {e}"),
            StartInfoError::Magic { found } => {
                write!(f, "start info magic {found:#x}, expected {MAGIC:#x}")
            }
            StartInfoError::CmdlineTooLong { addr } => write!(
                f,
                "command line at {addr:#x} has no NUL within {CMDLINE_MAX} bytes"
            ),
            StartInfoError::CmdlineNotUtf8 { at } => {
                write!(f, "command line is not UTF-8 at byte {at}")
            }
        }
    }
}

impl core::error::Error for StartInfoError {}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | u64::from(u32_at(b, off + 4)) << 32
}

impl StartInfo {
    /// Reads the start info at physical `addr` (the boot stub's `%ebx`). The memory
    /// map is taken only as far as [`MEMMAP_MAX`] entries.
    pub fn read(addr: u64) -> Result<Self, StartInfoError> {
        let mem = LowMemory::unrestricted();
        let info = mem
            .read(addr, INFO_LEN)
            .map_err(StartInfoError::Unreadable)?;
        let found = u32_at(info, OFF_MAGIC);
        if found != MAGIC {
            return Err(StartInfoError::Magic { found });
        }
        let mut memmap = Vec::new();
        if u32_at(info, OFF_VERSION) >= 1 {
            let map = u64_at(info, OFF_MEMMAP);
            let entries = (u32_at(info, OFF_MEMMAP_ENTRIES) as usize).min(MEMMAP_MAX);
            let bytes = mem
                .read(map, entries * MEMMAP_ENTRY_LEN)
                .map_err(StartInfoError::Unreadable)?;
            for e in bytes.chunks_exact(MEMMAP_ENTRY_LEN) {
                // Cannot overflow: at most MEMMAP_MAX entries are read.
                let _ = memmap.push(MemoryRegion {
                    base: u64_at(e, 0),
                    size: u64_at(e, 8),
                    kind: u32_at(e, 16),
                });
            }
        }
        let mut cmdline = String::new();
        let cmdline_addr = u64_at(info, OFF_CMDLINE);
        if cmdline_addr != 0 {
            let bytes = Self::c_string(&mem, cmdline_addr)?;
            let s = core::str::from_utf8(bytes).map_err(|e| StartInfoError::CmdlineNotUtf8 {
                at: e.valid_up_to(),
            })?;
            // Fits: `c_string` returns fewer than CMDLINE_MAX bytes.
            let _ = cmdline.push_str(s);
        }
        Ok(StartInfo {
            cmdline,
            rsdp: u64_at(info, OFF_RSDP),
            memmap,
        })
    }

    /// The bytes before the NUL at `addr`, reading no further than needed (the string
    /// may end just before unmapped memory).
    fn c_string(mem: &LowMemory<'_>, addr: u64) -> Result<&'static [u8], StartInfoError> {
        for len in 1..=CMDLINE_MAX {
            let bytes = mem.read(addr, len).map_err(StartInfoError::Unreadable)?;
            if bytes[len - 1] == 0 {
                return Ok(mem.read_static(addr, len - 1));
            }
        }
        Err(StartInfoError::CmdlineTooLong { addr })
    }
}
