//! Error types of the runtime.

use core::fmt;

use pmalloc::{AllocError, CreateError, OpenError, PtrError};

use crate::area::AreaError;

/// Why a transactional operation (or a commit) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A pointer is not a valid object of its type.
    BadPointer(PtrError),
    /// An allocation failed.
    Alloc(AllocError),
    /// A write or read outside the object.
    OutOfBounds {
        /// The object.
        obj: u64,
        /// Offset of the access.
        off: u64,
        /// Its length.
        len: u64,
    },
    /// The transaction's log record is larger than a whole lane log.
    TooLarge {
        /// Record bytes.
        bytes: usize,
        /// Lane log bytes.
        lane_bytes: usize,
    },
    /// A type with alignment above 64 bytes cannot be shadowed.
    Alignment {
        /// The alignment.
        align: usize,
    },
    /// The object was freed earlier in this transaction.
    Freed {
        /// The object.
        obj: u64,
    },
    /// A persistent string's bytes are not UTF-8 (damaged or not a string).
    NotUtf8 {
        /// The string's byte vector.
        obj: u64,
    },
    /// A collection's header is inconsistent (length above capacity, wrong sizes).
    Corrupt {
        /// What.
        what: &'static str,
        /// The object.
        obj: u64,
    },
}

/// Why a transaction did not commit. Nothing it did is visible.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError<E> {
    /// The closure returned `Err`: the transaction aborted.
    Aborted(E),
    /// The commit itself failed.
    Commit(Error),
}

/// Why a pool could not be created or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// Creating the heap failed.
    Create(CreateError),
    /// Opening the heap failed.
    Open(OpenError),
    /// The runtime area is too small or its header is damaged.
    Area(AreaError),
}

impl From<PtrError> for Error {
    fn from(e: PtrError) -> Self {
        Error::BadPointer(e)
    }
}

impl From<AllocError> for Error {
    fn from(e: AllocError) -> Self {
        Error::Alloc(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadPointer(e) => write!(f, "bad pointer: {e}"),
            Error::Alloc(e) => write!(f, "allocation failed: {e}"),
            Error::OutOfBounds { obj, off, len } => {
                write!(
                    f,
                    "access of {len} bytes at +{off} is outside object {obj:#x}"
                )
            }
            Error::TooLarge { bytes, lane_bytes } => {
                write!(f, "transaction log record of {bytes} bytes exceeds the lane log ({lane_bytes} bytes)")
            }
            Error::Alignment { align } => {
                write!(f, "alignment {align} above 64 cannot be shadowed")
            }
            Error::Freed { obj } => write!(f, "object {obj:#x} was freed in this transaction"),
            Error::NotUtf8 { obj } => write!(f, "string {obj:#x} is not UTF-8"),
            Error::Corrupt { what, obj } => write!(f, "corrupt {what} at {obj:#x}"),
        }
    }
}

impl core::error::Error for Error {}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Aborted(e) => write!(f, "transaction aborted: {e}"),
            TxError::Commit(e) => write!(f, "commit failed: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for TxError<E> {}

impl fmt::Display for AreaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AreaError::TooSmall { len } => {
                write!(f, "runtime area of {len} bytes is too small for its lanes")
            }
            AreaError::BadHeader { offset } => {
                write!(f, "runtime area header at {offset:#x} is damaged")
            }
        }
    }
}

impl core::error::Error for AreaError {}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Create(e) => write!(f, "{e}"),
            PoolError::Open(e) => write!(f, "{e}"),
            PoolError::Area(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for PoolError {}

impl From<TxError<Error>> for Error {
    /// A transaction whose closure fails with the runtime's own error: either way it is
    /// that error.
    fn from(e: TxError<Error>) -> Self {
        match e {
            TxError::Aborted(e) | TxError::Commit(e) => e,
        }
    }
}
