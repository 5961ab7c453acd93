//! System description tables: the common 36-byte header, checksums, and the root
//! tables (RSDT with 4-byte entries, XSDT with 8-byte entries).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | signature |
//! | 4 | 4 | length of the whole table, header included |
//! | 8 | 1 | revision |
//! | 9 | 1 | checksum (whole table sums to zero) |
//! | 10 | 26 | OEM id, OEM table id, OEM revision, creator id, creator revision |

use crate::bytes::{array, sums_to_zero, u32_at, u64_at};
use crate::{AcpiError, Signature};

/// Size of the common table header.
pub const HEADER_LEN: usize = 36;
const OFF_LENGTH: usize = 4;
const OFF_REVISION: usize = 8;

/// A checksummed table: exactly its `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdt<'a> {
    bytes: &'a [u8],
}

impl<'a> Sdt<'a> {
    /// Signature and length field of the header at the start of `header` (at least
    /// [`HEADER_LEN`] bytes); the length is checked to cover the header and to be at
    /// most `max_len`.
    pub fn peek(header: &[u8], max_len: usize) -> Result<(Signature, usize), AcpiError> {
        let sig = Signature(array(header, 0).ok_or(AcpiError::Truncated {
            table: Signature(*b"????"),
            needed: HEADER_LEN,
            have: header.len(),
        })?);
        let truncated = AcpiError::Truncated {
            table: sig,
            needed: HEADER_LEN,
            have: header.len(),
        };
        if header.len() < HEADER_LEN {
            return Err(truncated);
        }
        let length = u32_at(header, OFF_LENGTH).ok_or(truncated)?;
        if (length as usize) < HEADER_LEN || length as usize > max_len {
            return Err(AcpiError::TableLength { table: sig, length });
        }
        Ok((sig, length as usize))
    }

    /// Validates the table starting `bytes`: header present, length field within
    /// `bytes`, checksum over the length. Bytes past the length are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AcpiError> {
        let (sig, length) = Self::peek(bytes, bytes.len())?;
        let bytes = &bytes[..length];
        if !sums_to_zero(bytes) {
            return Err(AcpiError::TableChecksum { table: sig });
        }
        Ok(Sdt { bytes })
    }

    /// As [`Sdt::parse`], and the signature must be `expected`.
    pub fn parse_as(bytes: &'a [u8], expected: Signature) -> Result<Self, AcpiError> {
        let sdt = Self::parse(bytes)?;
        if sdt.signature() != expected {
            return Err(AcpiError::TableSignature {
                expected,
                found: sdt.signature(),
            });
        }
        Ok(sdt)
    }

    /// The table's signature.
    pub fn signature(&self) -> Signature {
        Signature([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    /// The table's revision field.
    pub fn revision(&self) -> u8 {
        self.bytes[OFF_REVISION]
    }

    /// The whole table, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The bytes after the header.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// A root table: the list of physical addresses of every other table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootTable<'a> {
    entries: &'a [u8],
    entry_len: usize,
}

impl<'a> RootTable<'a> {
    /// The RSDT signature.
    pub const RSDT: Signature = Signature(*b"RSDT");
    /// The XSDT signature.
    pub const XSDT: Signature = Signature(*b"XSDT");

    /// Interprets a checksummed `RSDT` (4-byte entries) or `XSDT` (8-byte entries).
    pub fn new(sdt: Sdt<'a>) -> Result<Self, AcpiError> {
        let entry_len = match sdt.signature() {
            Self::RSDT => 4,
            Self::XSDT => 8,
            found => {
                return Err(AcpiError::TableSignature {
                    expected: Self::RSDT,
                    found,
                })
            }
        };
        let entries = sdt.body();
        if !entries.len().is_multiple_of(entry_len) {
            return Err(AcpiError::RootTableLength {
                table: sdt.signature(),
                entry_bytes: entries.len(),
            });
        }
        Ok(RootTable { entries, entry_len })
    }

    /// The physical addresses listed, in table order.
    pub fn entries(&self) -> impl Iterator<Item = u64> + 'a {
        let entry_len = self.entry_len;
        self.entries
            .chunks_exact(entry_len)
            .filter_map(move |e| match entry_len {
                4 => u32_at(e, 0).map(u64::from),
                _ => u64_at(e, 0),
            })
    }
}
