//! The NVDIMM Firmware Interface Table and its System Physical Address Range
//! structures.
//!
//! The NFIT is the 36-byte table header, 4 reserved bytes, then structures, each
//! starting with `u16 type, u16 length`. Type 0, System Physical Address (SPA) Range,
//! is 56 bytes (64 from ACPI 6.4, which appends a location cookie):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | type = 0 |
//! | 2 | 2 | length |
//! | 4 | 2 | SPA range structure index |
//! | 6 | 2 | flags |
//! | 8 | 4 | reserved |
//! | 12 | 4 | proximity domain |
//! | 16 | 16 | address range type GUID |
//! | 32 | 8 | system physical address range base |
//! | 40 | 8 | system physical address range length |
//! | 48 | 8 | address range memory mapping attribute |

use crate::bytes::{array, u16_at, u32_at, u64_at};
use crate::{AcpiError, Sdt, Signature, HEADER_LEN};

/// Bytes of an SPA Range structure up to and including the mapping attribute.
pub const SPA_LEN: usize = 56;
/// The address range type GUID of persistent memory,
/// 66F0D379-B4F3-4074-AC43-0D3318B78CDB, in its on-table byte order (the first three
/// fields little-endian).
pub const PERSISTENT_MEMORY_GUID: [u8; 16] = [
    0x79, 0xd3, 0xf0, 0x66, 0xf3, 0xb4, 0x74, 0x40, 0xac, 0x43, 0x0d, 0x33, 0x18, 0xb7, 0x8c, 0xdb,
];
const STRUCTURES_OFFSET: usize = HEADER_LEN + 4;
const TYPE_SPA: u16 = 0;
const OFF_SPA_INDEX: usize = 4;
const OFF_SPA_FLAGS: usize = 6;
const OFF_SPA_PROXIMITY: usize = 12;
const OFF_SPA_GUID: usize = 16;
const OFF_SPA_BASE: usize = 32;
const OFF_SPA_LENGTH: usize = 40;
const OFF_SPA_ATTRIBUTES: usize = 48;

/// A checksummed NFIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nfit<'a> {
    sdt: Sdt<'a>,
}

/// One NFIT structure: its type and its bytes (exactly its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Structure<'a> {
    /// Structure type (0 = SPA range, 1 = region mapping, ...).
    pub kind: u16,
    /// Offset in the NFIT.
    pub offset: usize,
    /// The structure's bytes, header included.
    pub bytes: &'a [u8],
}

/// A System Physical Address Range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaRange {
    /// The SPA range structure index other structures refer to.
    pub index: u16,
    /// Flags (bit 0: control region for hot-add; bit 1: proximity domain valid).
    pub flags: u16,
    /// Proximity domain.
    pub proximity_domain: u32,
    /// Address range type GUID.
    pub type_guid: [u8; 16],
    /// First byte of the range.
    pub base: u64,
    /// Length in bytes (non-zero; `base + length` does not wrap).
    pub length: u64,
    /// EFI memory mapping attributes.
    pub attributes: u64,
}

impl SpaRange {
    /// Whether the range is persistent memory.
    pub fn is_persistent_memory(&self) -> bool {
        self.type_guid == PERSISTENT_MEMORY_GUID
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.length
    }

    fn parse(s: &Structure<'_>) -> Result<Self, AcpiError> {
        let b = s.bytes;
        let too_short = AcpiError::SpaTooShort {
            offset: s.offset,
            length: b.len() as u16,
        };
        if b.len() < SPA_LEN {
            return Err(too_short);
        }
        let spa = SpaRange {
            index: u16_at(b, OFF_SPA_INDEX).ok_or(too_short)?,
            flags: u16_at(b, OFF_SPA_FLAGS).ok_or(too_short)?,
            proximity_domain: u32_at(b, OFF_SPA_PROXIMITY).ok_or(too_short)?,
            type_guid: array(b, OFF_SPA_GUID).ok_or(too_short)?,
            base: u64_at(b, OFF_SPA_BASE).ok_or(too_short)?,
            length: u64_at(b, OFF_SPA_LENGTH).ok_or(too_short)?,
            attributes: u64_at(b, OFF_SPA_ATTRIBUTES).ok_or(too_short)?,
        };
        if spa.length == 0 || spa.base.checked_add(spa.length).is_none() {
            return Err(AcpiError::SpaRange {
                index: spa.index,
                base: spa.base,
                length: spa.length,
            });
        }
        Ok(spa)
    }
}

/// Iterator over an NFIT's structures; after the first error it yields nothing more
/// (a bad length leaves no way to find the next structure).
#[derive(Debug, Clone)]
pub struct Structures<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Structures<'a> {
    type Item = Result<Structure<'a>, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..).filter(|r| !r.is_empty())?;
        let offset = self.offset;
        // Stop after this item whatever happens; a good structure moves it on.
        self.offset = self.bytes.len();
        let (Some(kind), Some(length)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            return Some(Err(AcpiError::Truncated {
                table: Nfit::SIGNATURE,
                needed: offset + 4,
                have: self.bytes.len(),
            }));
        };
        let bad = AcpiError::StructureLength { offset, length };
        if usize::from(length) < 4 {
            return Some(Err(bad));
        }
        let Some(bytes) = rest.get(..usize::from(length)) else {
            return Some(Err(bad));
        };
        self.offset = offset + usize::from(length);
        Some(Ok(Structure {
            kind,
            offset,
            bytes,
        }))
    }
}

impl<'a> Nfit<'a> {
    /// The NFIT signature.
    pub const SIGNATURE: Signature = Signature(*b"NFIT");

    /// Interprets a checksummed table as an NFIT.
    pub fn new(sdt: Sdt<'a>) -> Result<Self, AcpiError> {
        if sdt.signature() != Self::SIGNATURE {
            return Err(AcpiError::TableSignature {
                expected: Self::SIGNATURE,
                found: sdt.signature(),
            });
        }
        if sdt.bytes().len() < STRUCTURES_OFFSET {
            return Err(AcpiError::Truncated {
                table: Self::SIGNATURE,
                needed: STRUCTURES_OFFSET,
                have: sdt.bytes().len(),
            });
        }
        Ok(Nfit { sdt })
    }

    /// Every structure, in table order.
    pub fn structures(&self) -> Structures<'a> {
        Structures {
            bytes: self.sdt.bytes(),
            offset: STRUCTURES_OFFSET,
        }
    }

    /// Every SPA range structure (any type GUID), in table order.
    pub fn spa_ranges(&self) -> impl Iterator<Item = Result<SpaRange, AcpiError>> + 'a {
        self.structures().filter_map(|s| match s {
            Ok(s) if s.kind == TYPE_SPA => Some(SpaRange::parse(&s)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// The SPA ranges that are persistent memory, in table order.
    pub fn persistent_memory(&self) -> impl Iterator<Item = Result<SpaRange, AcpiError>> + 'a {
        self.spa_ranges()
            .filter(|r| r.as_ref().map_or(true, SpaRange::is_persistent_memory))
    }
}
