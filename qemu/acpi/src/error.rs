//! The one error type of the crate.

use core::fmt;

/// A 4-byte ACPI table signature (`*b"NFIT"`), printed as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 4]);

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Why the tables could not be used. Each variant says what was wrong and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcpiError {
    /// [`crate::PhysMemory`] cannot provide these bytes (unmapped, or out of range).
    Unreadable {
        /// Physical address asked for.
        addr: u64,
        /// Bytes asked for.
        len: usize,
    },
    /// The RSDP does not start with `"RSD PTR "`.
    RsdpSignature {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// An RSDP checksum does not sum to zero.
    RsdpChecksum {
        /// The ACPI 2.0 extended checksum (over the whole structure) failed, rather
        /// than the ACPI 1.0 one over the first 20 bytes.
        extended: bool,
    },
    /// Fewer bytes than the structure needs.
    Truncated {
        /// The table the structure is in (`RSD ` for the RSDP).
        table: Signature,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// A table header's length field is smaller than the header, larger than
    /// [`crate::MAX_TABLE_LEN`], or than the bytes available.
    TableLength {
        /// The table.
        table: Signature,
        /// Its length field.
        length: u32,
    },
    /// A table's bytes do not sum to zero.
    TableChecksum {
        /// The table.
        table: Signature,
    },
    /// A table has another signature than expected.
    TableSignature {
        /// What was looked for.
        expected: Signature,
        /// What was found.
        found: Signature,
    },
    /// A root table's entry area is not a whole number of entries.
    RootTableLength {
        /// `RSDT` or `XSDT`.
        table: Signature,
        /// Bytes after the header.
        entry_bytes: usize,
    },
    /// No table with this signature is listed in the root table.
    NotFound {
        /// The signature looked for.
        table: Signature,
    },
    /// An NFIT structure's length is below its 4-byte header or runs past the table.
    StructureLength {
        /// Offset of the structure in the NFIT.
        offset: usize,
        /// Its length field.
        length: u16,
    },
    /// A System Physical Address Range structure shorter than its 56 bytes.
    SpaTooShort {
        /// Offset of the structure in the NFIT.
        offset: usize,
        /// Its length field.
        length: u16,
    },
    /// A System Physical Address Range of length zero or that wraps past 2^64.
    SpaRange {
        /// The structure's range index.
        index: u16,
        /// Its base.
        base: u64,
        /// Its length.
        length: u64,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::Unreadable { addr, len } => {
                write!(f, "cannot read {len} bytes at physical {addr:#x}")
            }
            AcpiError::RsdpSignature { found } => {
                write!(f, "RSDP signature is {found:02x?}, not \"RSD PTR \"")
            }
            AcpiError::RsdpChecksum { extended } => write!(
                f,
                "RSDP {}checksum does not sum to zero",
                if extended { "extended " } else { "" }
            ),
            AcpiError::Truncated {
                table,
                needed,
                have,
            } => write!(f, "{table}: need {needed} bytes, have {have}"),
            AcpiError::TableLength { table, length } => {
                write!(f, "{table}: bad length field {length}")
            }
            AcpiError::TableChecksum { table } => {
                write!(f, "{table}: checksum does not sum to zero")
            }
            AcpiError::TableSignature { expected, found } => {
                write!(f, "expected table {expected}, found {found}")
            }
            AcpiError::RootTableLength { table, entry_bytes } => write!(
                f,
                "{table}: {entry_bytes} entry bytes are not a whole number of entries"
            ),
            AcpiError::NotFound { table } => write!(f, "no {table} table"),
            AcpiError::StructureLength { offset, length } => {
                write!(f, "NFIT structure at offset {offset}: bad length {length}")
            }
            AcpiError::SpaTooShort { offset, length } => write!(
                f,
                "NFIT SPA range structure at offset {offset}: length {length} < 56"
            ),
            AcpiError::SpaRange {
                index,
                base,
                length,
            } => write!(
                f,
                "NFIT SPA range {index}: base {base:#x} length {length:#x} is empty or wraps"
            ),
        }
    }
}

impl core::error::Error for AcpiError {}
