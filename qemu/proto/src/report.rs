//! The serial lines the runner reads. The kernel prints them through the `Display`
//! impls here and the runner parses them with [`Line::parse`], so the two cannot drift.
//!
//! ```text
//! test nvdimm_found_via_nfit ... ok
//! test adr_flush_copies_only_flushed_lines ... FAILED (byte 0x40 is 0x00, expected 0x5a)
//! committed 41
//! crash at fence 43
//! log valid 42
//! 3 passed, 1 failed
//! ```

use core::fmt;

/// The closing line of every suite: exactly `N passed, N failed`, alone on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed.
    pub failed: u32,
}

impl Summary {
    /// Pass iff nothing failed and something ran.
    pub fn is_pass(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Printed by the log writer after record `.0` is durable (after its persist returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed(pub u64);

impl fmt::Display for Committed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "committed {}", self.0)
    }
}

/// Printed by the log verifier: how many records form the intact prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogValid(pub u64);

impl fmt::Display for LogValid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log valid {}", self.0)
    }
}

/// Printed just before a planned crash (`crash_at=<n>`) stops the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceCrash(pub u64);

impl fmt::Display for FenceCrash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crash at fence {}", self.0)
    }
}

/// The start of a test's line, `test <name> ... `; the verdict follows on the same
/// line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestStart<'a>(pub &'a str);

impl fmt::Display for TestStart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test {} ... ", self.0)
    }
}

/// One recognised serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `N passed, N failed`.
    Summary(Summary),
    /// `committed <i>`.
    Committed(u64),
    /// `log valid <n>`.
    LogValid(u64),
    /// `crash at fence <n>`.
    FenceCrash(u64),
    /// `test <name> ... ok`.
    TestOk(&'a str),
    /// `test <name> ... FAILED (<reason>)`.
    TestFailed {
        /// The test.
        name: &'a str,
        /// What it reported.
        reason: &'a str,
    },
}

impl<'a> Line<'a> {
    /// Recognises one line (without its line end); `None` for anything else, including
    /// a line cut short by a kill.
    pub fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("committed ") {
            return rest.parse().ok().map(Line::Committed);
        }
        if let Some(rest) = line.strip_prefix("log valid ") {
            return rest.parse().ok().map(Line::LogValid);
        }
        if let Some(rest) = line.strip_prefix("crash at fence ") {
            return rest.parse().ok().map(Line::FenceCrash);
        }
        if let Some(rest) = line.strip_prefix("test ") {
            let (name, verdict) = rest.split_once(" ... ")?;
            if verdict == "ok" {
                return Some(Line::TestOk(name));
            }
            let reason = verdict.strip_prefix("FAILED (")?.strip_suffix(')')?;
            return Some(Line::TestFailed { name, reason });
        }
        let (passed, failed) = line.split_once(" passed, ")?;
        let failed = failed.strip_suffix(" failed")?;
        Some(Line::Summary(Summary {
            passed: passed.parse().ok()?,
            failed: failed.parse().ok()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_lines_parse_back() {
        let s = Summary {
            passed: 12,
            failed: 1,
        };
        assert_eq!(s.to_string(), "12 passed, 1 failed");
        assert_eq!(Line::parse(&s.to_string()), Some(Line::Summary(s)));
        assert_eq!(
            Line::parse(&Committed(41).to_string()),
            Some(Line::Committed(41))
        );
        assert_eq!(
            Line::parse(&LogValid(42).to_string()),
            Some(Line::LogValid(42))
        );
        assert_eq!(
            Line::parse(&FenceCrash(9).to_string()),
            Some(Line::FenceCrash(9))
        );
        let ok = format!("{}ok", TestStart("a_b"));
        assert_eq!(Line::parse(&ok), Some(Line::TestOk("a_b")));
        let failed = format!("{}FAILED (x (y))\r", TestStart("t"));
        assert_eq!(
            Line::parse(&failed),
            Some(Line::TestFailed {
                name: "t",
                reason: "x (y)"
            })
        );
    }

    #[test]
    fn cut_or_foreign_lines_are_not_recognised() {
        for line in [
            "committ",
            "committed ",
            "committed 4x",
            "log valid",
            "1 passed, ",
            "1 passed, 2 failed and more",
            "x passed, 0 failed",
            "test t ... ",
            "test t ... FAILED (unterminated",
            "hello",
        ] {
            assert_eq!(Line::parse(line), None, "{line:?}");
        }
        assert!(!Summary {
            passed: 0,
            failed: 0
        }
        .is_pass());
        assert!(Summary {
            passed: 1,
            failed: 0
        }
        .is_pass());
    }
}
