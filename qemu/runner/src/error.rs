//! Errors of the runner's own machinery (building, files, processes).

use std::fmt;
use std::path::PathBuf;

/// The runner could not do its job (as opposed to the kernel failing a test).
#[derive(Debug)]
#[non_exhaustive]
pub enum RunnerError {
    /// A program could not be started.
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// `cargo build` of the kernel failed.
    KernelBuild {
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The kernel ELF is not where the build should have put it.
    KernelMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An image file or directory could not be made or read.
    Image {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for or killing QEMU failed.
    Wait(std::io::Error),
    /// A boot asked for a number of NVDIMMs QEMU's command line here does not support.
    NvdimmCount {
        /// The number asked for.
        count: usize,
    },
}

impl fmt::Display for RunnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerError::Spawn { program, source } => write!(f, "cannot run {program}: {source}"),
            RunnerError::KernelBuild { status } => write!(f, "kernel build failed ({status})"),
            RunnerError::KernelMissing { path } => {
                write!(f, "kernel ELF missing after build: {}", path.display())
            }
            RunnerError::Image { path, source } => {
                write!(f, "NVDIMM image {}: {source}", path.display())
            }
            RunnerError::Wait(e) => write!(f, "waiting for QEMU: {e}"),
            RunnerError::NvdimmCount { count } => {
                write!(f, "{count} NVDIMMs asked for; 1 to 4 are supported")
            }
        }
    }
}

impl std::error::Error for RunnerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunnerError::Spawn { source, .. } | RunnerError::Image { source, .. } => Some(source),
            RunnerError::Wait(e) => Some(e),
            _ => None,
        }
    }
}
