//! Running a suite and demanding a pass.

use std::fmt;
use std::time::Duration;

use pm_qemu_proto::BootArgs;

use crate::{boot, BootOutcome, BootSpec, Images, Kernel, RunnerError};

/// A suite that did not pass.
#[derive(Debug)]
#[non_exhaustive]
pub enum SuiteError {
    /// The runner failed before a verdict.
    Runner(RunnerError),
    /// The boot ended without a pass; the outcome holds the exit and the serial log.
    Failed(Box<BootOutcome>),
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuiteError::Runner(e) => write!(f, "{e}"),
            SuiteError::Failed(o) => {
                write!(f, "suite failed: {}", o.exit)?;
                match o.summary() {
                    Some(s) => write!(f, ", {s}")?,
                    None => write!(f, ", no summary line")?,
                }
                let failed = o.failed_tests();
                if !failed.is_empty() {
                    write!(f, " (failed: {})", failed.join(", "))?;
                }
                write!(
                    f,
                    "\ncommand: {}\n--- serial ---\n{}--- stderr ---\n{}",
                    o.command,
                    o.serial_tail(80),
                    o.stderr
                )
            }
        }
    }
}

impl std::error::Error for SuiteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SuiteError::Runner(e) => Some(e),
            SuiteError::Failed(_) => None,
        }
    }
}

impl From<RunnerError> for SuiteError {
    fn from(e: RunnerError) -> Self {
        SuiteError::Runner(e)
    }
}

/// Boots `args` once on `images` with a 30 s limit and returns the outcome if it
/// passed: exit 33 and `N passed, 0 failed` with N > 0.
pub fn run_suite(
    kernel: &Kernel,
    images: &Images,
    args: BootArgs,
) -> Result<BootOutcome, SuiteError> {
    let outcome = boot(&BootSpec {
        kernel,
        images,
        args,
        raw_append: None,
        timeout: Duration::from_secs(30),
        kill_after: None,
    })?;
    if outcome.passed() {
        Ok(outcome)
    } else {
        Err(SuiteError::Failed(Box::new(outcome)))
    }
}
