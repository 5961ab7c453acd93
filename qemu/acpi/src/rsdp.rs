//! The Root System Description Pointer.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `"RSD PTR "` |
//! | 8 | 1 | checksum of bytes 0..20 |
//! | 9 | 6 | OEM id |
//! | 15 | 1 | revision (0 = ACPI 1.0, 2 = ACPI 2.0+) |
//! | 16 | 4 | RSDT physical address |
//! | 20 | 4 | length (revision >= 2) |
//! | 24 | 8 | XSDT physical address (revision >= 2) |
//! | 32 | 1 | extended checksum of bytes 0..length (revision >= 2) |

use crate::bytes::{array, sums_to_zero, u32_at, u64_at};
use crate::{AcpiError, Signature};

/// Size of an ACPI 1.0 RSDP.
pub const RSDP_V1_LEN: usize = 20;
/// Size of an ACPI 2.0 RSDP.
pub const RSDP_V2_LEN: usize = 36;
const SIGNATURE: [u8; 8] = *b"RSD PTR ";
const OFF_REVISION: usize = 15;
const OFF_RSDT: usize = 16;
const OFF_LENGTH: usize = 20;
const OFF_XSDT: usize = 24;
/// Largest RSDP length accepted (the structure is 36 bytes; later revisions may grow
/// it, firmware garbage should not make the walker read kilobytes).
const MAX_RSDP_LEN: usize = 1024;
/// How `Truncated` names the RSDP.
const NAME: Signature = Signature(*b"RSD ");

/// A validated RSDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// ACPI revision field.
    pub revision: u8,
    /// Physical address of the RSDT.
    pub rsdt: u32,
    /// Physical address of the XSDT (revision >= 2 and non-zero), which supersedes the
    /// RSDT.
    pub xsdt: Option<u64>,
}

impl Rsdp {
    /// How many bytes the RSDP starting `bytes` occupies, as far as `bytes` tells:
    /// 20 for revision 0/1; for revision 2 and later 36 until the length field is
    /// among `bytes`, then that length. Read that many and ask again until it is no
    /// more than what was read.
    pub fn needed_len(bytes: &[u8]) -> Result<usize, AcpiError> {
        let revision = *bytes.get(OFF_REVISION).ok_or(AcpiError::Truncated {
            table: NAME,
            needed: RSDP_V1_LEN,
            have: bytes.len(),
        })?;
        if revision < 2 {
            return Ok(RSDP_V1_LEN);
        }
        match u32_at(bytes, OFF_LENGTH) {
            None => Ok(RSDP_V2_LEN),
            Some(length) if (RSDP_V2_LEN..=MAX_RSDP_LEN).contains(&(length as usize)) => {
                Ok(length as usize)
            }
            Some(length) => Err(AcpiError::TableLength {
                table: NAME,
                length,
            }),
        }
    }

    /// Validates signature and checksums and extracts the root table addresses.
    pub fn parse(bytes: &[u8]) -> Result<Self, AcpiError> {
        let truncated = |needed| AcpiError::Truncated {
            table: NAME,
            needed,
            have: bytes.len(),
        };
        let v1 = bytes.get(..RSDP_V1_LEN).ok_or(truncated(RSDP_V1_LEN))?;
        let found: [u8; 8] = array(v1, 0).ok_or(truncated(RSDP_V1_LEN))?;
        if found != SIGNATURE {
            return Err(AcpiError::RsdpSignature { found });
        }
        if !sums_to_zero(v1) {
            return Err(AcpiError::RsdpChecksum { extended: false });
        }
        let revision = v1[OFF_REVISION];
        let rsdt = u32_at(v1, OFF_RSDT).ok_or(truncated(RSDP_V1_LEN))?;
        let mut xsdt = None;
        if revision >= 2 {
            let length = Self::needed_len(bytes)?;
            let v2 = bytes.get(..length).ok_or(truncated(length))?;
            if !sums_to_zero(v2) {
                return Err(AcpiError::RsdpChecksum { extended: true });
            }
            xsdt = u64_at(v2, OFF_XSDT).filter(|&a| a != 0);
        }
        Ok(Rsdp {
            revision,
            rsdt,
            xsdt,
        })
    }
}
