//! Error types, one per operation. Each says what went wrong and where (pool offsets).

use core::fmt;

use crate::layout::LayoutError;
use crate::pool_header::HeaderFault;

macro_rules! impl_error {
    ($($t:ty),*) => {$(
        impl core::error::Error for $t {}
    )*};
}

/// Why a pool could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateError {
    /// The media's size makes no valid layout.
    Layout(LayoutError),
    /// The layout name is longer than 32 bytes.
    LayoutNameTooLong {
        /// Its length.
        len: usize,
    },
}

/// Why a pool could not be opened. The media is left untouched unless stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// Smaller than the smallest pool.
    TooSmall {
        /// Media length.
        len: usize,
    },
    /// Neither header copy is valid (the reasons for the first and the last page).
    NoValidHeader {
        /// Why the primary copy (offset 0) was rejected.
        primary: HeaderFault,
        /// Why the backup copy (last page) was rejected.
        backup: HeaderFault,
    },
    /// The header says the pool is larger than the media.
    SizeMismatch {
        /// Size in the header.
        header: usize,
        /// Media length.
        media: usize,
    },
    /// The pool was created with another layout name.
    WrongLayout {
        /// The name in the pool.
        found: [u8; 32],
    },
    /// A structure the heap needs is damaged beyond what open can repair.
    Corrupt {
        /// What.
        what: &'static str,
        /// Where.
        offset: u64,
    },
}

/// Why a destination word cannot take a published pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestFault {
    /// Not 8-byte aligned.
    Misaligned,
    /// Outside the pool, or overlapping metadata other than the root slot.
    OutOfRange,
    /// In the heap but not inside an allocated object.
    NotInObject,
    /// Inside the object being freed.
    InsideTarget,
}

/// Why an allocation failed. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// Size 0.
    ZeroSize,
    /// Alignment not a power of two or above 4 KiB.
    BadAlign {
        /// The alignment asked for.
        align: usize,
    },
    /// Larger than an object header can state, or than the pool.
    TooLarge {
        /// The size asked for.
        size: usize,
    },
    /// No free space of that size.
    OutOfSpace {
        /// The size asked for.
        size: usize,
    },
    /// Type number above 2^24 - 1.
    BadType {
        /// The type number.
        type_num: u32,
    },
    /// The destination cannot hold a pointer.
    BadDest {
        /// Destination offset.
        offset: u64,
        /// Why.
        why: DestFault,
    },
    /// The destination already holds a pointer (free it first; overwriting would leak).
    DestNotNull {
        /// Destination offset.
        offset: u64,
        /// What it holds.
        value: u64,
    },
    /// A runtime claimed the heap ([`crate::Heap::claim`]): its atomic ops with a
    /// destination go through the runtime (`pmrt::Pool::alloc_into`), which first
    /// writes back what its transactions logged of the destination.
    Claimed,
}

/// Why a free failed. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreeError {
    /// The destination cannot hold a pointer.
    BadDest {
        /// Destination offset.
        offset: u64,
        /// Why.
        why: DestFault,
    },
    /// The destination holds null.
    DestNull {
        /// Destination offset.
        offset: u64,
    },
    /// The destination's value is not an allocated object.
    NotAnObject(PtrError),
    /// A runtime claimed the heap ([`crate::Heap::claim`]): frees go through the
    /// runtime (`pmrt::Pool::free_from`, `Tx::free`), which first writes back what its
    /// transactions logged of the destination and of the object.
    Claimed,
}

/// Why a pool offset is not a usable object pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PtrError {
    /// Null.
    Null,
    /// Outside the heap.
    OutOfRange {
        /// The offset.
        offset: u64,
    },
    /// Not the start of an object slot or extent.
    NotAnObject {
        /// The offset.
        offset: u64,
    },
    /// A slot whose header is not valid (never used, torn, or damaged).
    BadHeader {
        /// The object offset.
        offset: u64,
    },
    /// A valid slot that is free.
    NotAllocated {
        /// The object offset.
        offset: u64,
    },
    /// The header's type number is not the pointer's.
    WrongType {
        /// The object offset.
        offset: u64,
        /// The pointer type's number.
        expected: u32,
        /// The header's.
        found: u32,
    },
    /// The object is smaller than the type.
    TooSmall {
        /// The object offset.
        offset: u64,
        /// The object's size.
        size: u64,
        /// The type's size.
        need: usize,
    },
    /// The offset is not aligned for the type.
    Misaligned {
        /// The offset.
        offset: u64,
        /// The type's alignment.
        align: usize,
    },
    /// The media is not addressable memory (a simulated media): use the copying reads.
    NotAddressable,
}

impl From<LayoutError> for CreateError {
    fn from(e: LayoutError) -> Self {
        CreateError::Layout(e)
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::TooSmall { size } => write!(f, "pool size {size} is below the minimum"),
            LayoutError::TooLarge { size } => write!(f, "pool size {size} exceeds the maximum"),
            LayoutError::BadLanes { nlanes } => write!(f, "lane count {nlanes} out of range"),
        }
    }
}

impl fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderFault::BadMagic => write!(f, "bad magic"),
            HeaderFault::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            HeaderFault::BadChecksum => write!(f, "checksum mismatch"),
            HeaderFault::UnknownFlags(x) => write!(f, "unknown flags {x:#x}"),
            HeaderFault::InconsistentLayout => write!(f, "offsets disagree with sizes"),
            HeaderFault::BadSize(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Layout(e) => write!(f, "cannot lay out the pool: {e}"),
            CreateError::LayoutNameTooLong { len } => {
                write!(f, "layout name of {len} bytes exceeds 32")
            }
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::TooSmall { len } => {
                write!(f, "media of {len} bytes is too small for a pool")
            }
            OpenError::NoValidHeader { primary, backup } => {
                write!(
                    f,
                    "no valid pool header: primary: {primary}; backup: {backup}"
                )
            }
            OpenError::SizeMismatch { header, media } => {
                write!(f, "header says {header} bytes but the media has {media}")
            }
            OpenError::WrongLayout { .. } => {
                write!(f, "the pool was created with another layout name")
            }
            OpenError::Corrupt { what, offset } => write!(f, "corrupt {what} at {offset:#x}"),
        }
    }
}

impl fmt::Display for DestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DestFault::Misaligned => "not 8-byte aligned",
            DestFault::OutOfRange => "outside the heap and not the root slot",
            DestFault::NotInObject => "not inside an allocated object",
            DestFault::InsideTarget => "inside the object being freed",
        })
    }
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::ZeroSize => write!(f, "zero-size allocation"),
            AllocError::BadAlign { align } => write!(f, "unsupported alignment {align}"),
            AllocError::TooLarge { size } => write!(f, "allocation of {size} bytes is too large"),
            AllocError::OutOfSpace { size } => write!(f, "no free space for {size} bytes"),
            AllocError::BadType { type_num } => write!(f, "type number {type_num} exceeds 2^24-1"),
            AllocError::BadDest { offset, why } => write!(f, "destination {offset:#x}: {why}"),
            AllocError::DestNotNull { offset, value } => {
                write!(f, "destination {offset:#x} already holds {value:#x}")
            }
            AllocError::Claimed => write!(
                f,
                "the heap belongs to a runtime: publish through the runtime's alloc_into"
            ),
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::BadDest { offset, why } => write!(f, "destination {offset:#x}: {why}"),
            FreeError::DestNull { offset } => write!(f, "destination {offset:#x} holds null"),
            FreeError::NotAnObject(e) => write!(f, "cannot free: {e}"),
            FreeError::Claimed => write!(
                f,
                "the heap belongs to a runtime: free through the runtime (free_from, a transaction)"
            ),
        }
    }
}

impl fmt::Display for PtrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PtrError::Null => write!(f, "null pointer"),
            PtrError::OutOfRange { offset } => write!(f, "{offset:#x} is outside the heap"),
            PtrError::NotAnObject { offset } => write!(f, "{offset:#x} is not an object start"),
            PtrError::BadHeader { offset } => write!(f, "object {offset:#x} has an invalid header"),
            PtrError::NotAllocated { offset } => write!(f, "object {offset:#x} is free"),
            PtrError::WrongType {
                offset,
                expected,
                found,
            } => {
                write!(
                    f,
                    "object {offset:#x} has type {found}, expected {expected}"
                )
            }
            PtrError::TooSmall { offset, size, need } => {
                write!(
                    f,
                    "object {offset:#x} has {size} bytes, the type needs {need}"
                )
            }
            PtrError::Misaligned { offset, align } => {
                write!(f, "{offset:#x} is not {align}-aligned")
            }
            PtrError::NotAddressable => write!(f, "media is not addressable; use copying reads"),
        }
    }
}

impl_error!(
    CreateError,
    OpenError,
    AllocError,
    FreeError,
    PtrError,
    DestFault,
    LayoutError,
    HeaderFault
);
