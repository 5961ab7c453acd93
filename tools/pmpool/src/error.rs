//! What can go wrong in a `pmpool` command (damage found by `check` is an outcome, not
//! an error).

use std::fmt;
use std::path::PathBuf;

use pmalloc::{CreateError, OpenError};

/// Why a command could not do its job. Each variant names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum PmpoolError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is empty.
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be created, sized or mapped.
    Map {
        /// The file.
        path: PathBuf,
        /// Why.
        source: arch::FileMediaError,
    },
    /// `create` would overwrite an existing file (use `--force`).
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The size does not fit this machine's address space.
    SizeTooLarge {
        /// The size asked for.
        size: u64,
    },
    /// The pool could not be created.
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: CreateError,
    },
    /// The layout name is longer than a pool header holds.
    LayoutName {
        /// Its length in bytes.
        len: usize,
    },
    /// The file holds no pool that opens.
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: OpenError,
    },
    /// Writing the report failed.
    Output(std::io::Error),
    /// The runtime could not create or open the pool.
    Pool {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pmrt::PoolError,
    },
    /// A transaction (or a read of persistent data) failed.
    Tx(pmrt::Error),
    /// The demo's writer process could not be started or did not say what it did.
    Writer {
        /// What went wrong.
        what: &'static str,
        /// The OS error, if any.
        source: Option<std::io::Error>,
    },
}

impl fmt::Display for PmpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PmpoolError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            PmpoolError::Empty { path } => write!(f, "{}: file is empty", path.display()),
            PmpoolError::Map { path, source } => write!(f, "{}: {source}", path.display()),
            PmpoolError::Exists { path } => write!(
                f,
                "{}: file exists (use --force to overwrite it)",
                path.display()
            ),
            PmpoolError::LayoutName { len } => write!(
                f,
                "layout name of {len} bytes is longer than {}",
                pmalloc::pool_header::LAYOUT_NAME_LEN
            ),
            PmpoolError::SizeTooLarge { size } => {
                write!(f, "size {size} does not fit this machine's address space")
            }
            PmpoolError::Create { path, source } => write!(f, "{}: {source}", path.display()),
            PmpoolError::Open { path, source } => {
                write!(f, "{}: not a usable pool: {source}", path.display())
            }
            PmpoolError::Output(e) => write!(f, "writing output: {e}"),
            PmpoolError::Pool { path, source } => write!(f, "{}: {source}", path.display()),
            PmpoolError::Tx(e) => write!(f, "{e}"),
            PmpoolError::Writer {
                what,
                source: Some(e),
            } => write!(f, "demo writer: {what}: {e}"),
            PmpoolError::Writer { what, source: None } => write!(f, "demo writer: {what}"),
        }
    }
}

impl std::error::Error for PmpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PmpoolError::Read { source, .. } => Some(source),
            PmpoolError::Map { source, .. } => Some(source),
            PmpoolError::Create { source, .. } => Some(source),
            PmpoolError::Open { source, .. } => Some(source),
            PmpoolError::Output(e) => Some(e),
            PmpoolError::Pool { source, .. } => Some(source),
            PmpoolError::Tx(e) => Some(e),
            PmpoolError::Writer { source, .. } => source
                .as_ref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            PmpoolError::Empty { .. }
            | PmpoolError::Exists { .. }
            | PmpoolError::LayoutName { .. }
            | PmpoolError::SizeTooLarge { .. } => None,
        }
    }
}

impl From<std::io::Error> for PmpoolError {
    fn from(e: std::io::Error) -> Self {
        PmpoolError::Output(e)
    }
}

impl From<pmrt::Error> for PmpoolError {
    fn from(e: pmrt::Error) -> Self {
        PmpoolError::Tx(e)
    }
}
