//! What the workloads' unit tests share: boots made by hand.

use std::fmt::{Display, Write as _};
use std::time::Duration;

use crate::{BootOutcome, Exit};

/// A boot that ended with `exit` after printing `serial`.
pub fn outcome(exit: Exit, serial: String) -> BootOutcome {
    BootOutcome {
        command: String::new(),
        exit,
        serial,
        stderr: String::new(),
        elapsed: Duration::ZERO,
    }
}

/// `lines`, one a line, as a boot prints them.
pub fn text<L: Display>(lines: &[L]) -> String {
    lines.iter().fold(String::new(), |mut t, l| {
        let _ = writeln!(t, "{l}");
        t
    })
}
