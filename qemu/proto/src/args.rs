//! The kernel command line: `key=value` words separated by spaces.
//!
//! | key | values | default | meaning |
//! |---|---|---|---|
//! | `suite` | `all`, `persist`, `verify`, `log`, `log-verify`, `pmalloc`, `pool-create`, `pool-verify`, `heap`, `heap-verify`, `pmrt`, `tx`, `tx-verify` | `all` | what the boot runs |
//! | `seed` | decimal or `0x` hex `u64` | 0 | seeds every pattern |
//! | `mode` | `direct`, `adr` | `direct` | media of the log, heap and tx workloads: the NVDIMM itself, or a DRAM copy flushed line by line (ADR model) |
//! | `crash_at` | `u64` >= 1 | none | stop without cleanup at that fence (log, heap and tx workloads) |
//! | `records` | 1..=[`MAX_RECORDS`] | [`DEFAULT_RECORDS`] | records the log workload appends |
//! | `ops` | 1..=[`MAX_OPS`] | [`DEFAULT_OPS`] | allocations and frees the heap workload runs; transactions the tx workload runs |
//! | `nvdimms` | `u32` | none | how many NVDIMMs the kernel must find |
//! | `skip_flush` | `u64` | none | fault injection: the log writer stores record n with ordinary stores and never flushes it (ADR mode must then lose it; direct mode cannot tell) |
//!
//! Unknown keys, repeated keys and bad values are errors (a typo must not silently run
//! the default).

use core::fmt;

/// Records the log workload appends unless told otherwise.
pub const DEFAULT_RECORDS: u32 = 8192;
/// Upper bound of `records=` (64 MiB of log, the size of the smallest image the runner
/// makes).
pub const MAX_RECORDS: u32 = 1 << 20;
/// Ops the heap workload runs unless told otherwise.
pub const DEFAULT_OPS: u32 = 1000;
/// Upper bound of `ops=`: below pmalloc's checkpoint interval (8192 ops), so every
/// allocation or free of the workload costs exactly one fence and a crash at fence `n`
/// says exactly which ops had returned.
pub const MAX_OPS: u32 = 4096;

/// What a boot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Suite {
    /// The self-tests: NVDIMM discovery, raw media, ADR media.
    #[default]
    All,
    /// Writes a seeded pattern over every NVDIMM and persists it (boot 1 of 2).
    Persist,
    /// Checks the pattern `persist` wrote with the same seed (boot 2 of 2).
    Verify,
    /// The crash-cycle writer: appends checksummed records, reporting each commit.
    Log,
    /// The crash-cycle verifier: scans the log and reports what survived.
    LogVerify,
    /// The persistent heap (`pmalloc`) on NVDIMM pools, raw and ADR media, and one
    /// pool on each of two NVDIMMs.
    Pmalloc,
    /// Creates a pool over NVDIMM 0 and fills it with a seeded pattern (boot 1 of 2).
    PoolCreate,
    /// Opens the pool on NVDIMM 0 and checks the seeded pattern (boot 2 of 2, or a
    /// pool the host made).
    PoolVerify,
    /// The heap crash-cycle writer: seeded atomic allocations and frees on root
    /// fields, reporting each as it returns.
    Heap,
    /// The heap crash-cycle verifier: opens (recovers) the pool and reports its state.
    HeapVerify,
    /// The runtime (`pmrt`) on NVDIMM pools: transactions, coalescing, recovery,
    /// collections, raw and ADR media, and a pool on each of two NVDIMMs.
    Pmrt,
    /// The transaction crash-cycle writer: seeded transactions on slots and a hash
    /// map in all three modes, reporting each as its commit returns.
    Tx,
    /// The transaction crash-cycle verifier: opens (recovers) the pool, checks it
    /// against the seed's model and reports its state.
    TxVerify,
}

impl Suite {
    const ALL: [Suite; 13] = [
        Suite::All,
        Suite::Persist,
        Suite::Verify,
        Suite::Log,
        Suite::LogVerify,
        Suite::Pmalloc,
        Suite::PoolCreate,
        Suite::PoolVerify,
        Suite::Heap,
        Suite::HeapVerify,
        Suite::Pmrt,
        Suite::Tx,
        Suite::TxVerify,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Suite::All => "all",
            Suite::Persist => "persist",
            Suite::Verify => "verify",
            Suite::Log => "log",
            Suite::LogVerify => "log-verify",
            Suite::Pmalloc => "pmalloc",
            Suite::PoolCreate => "pool-create",
            Suite::PoolVerify => "pool-verify",
            Suite::Heap => "heap",
            Suite::HeapVerify => "heap-verify",
            Suite::Pmrt => "pmrt",
            Suite::Tx => "tx",
            Suite::TxVerify => "tx-verify",
        }
    }

    /// The suite called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Which media the log, heap and tx workloads run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Straight on the NVDIMM: a kill keeps every store made before it.
    #[default]
    Direct,
    /// On a DRAM working copy whose flushes copy lines to the NVDIMM: a kill loses
    /// exactly the lines never flushed (the ADR model).
    Adr,
}

impl Mode {
    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Adr => "adr",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Mode::Direct, Mode::Adr]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Parsed kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootArgs {
    /// What the boot runs.
    pub suite: Suite,
    /// Seed of every pattern.
    pub seed: u64,
    /// Media of the log workload.
    pub mode: Mode,
    /// Stop without cleanup at this fence (1-based), if set.
    pub crash_at: Option<u64>,
    /// Records the log workload appends.
    pub records: u32,
    /// Allocations and frees the heap workload runs; transactions the tx workload
    /// runs.
    pub ops: u32,
    /// How many NVDIMMs the kernel must find, if set.
    pub nvdimms: Option<u32>,
    /// Fault injection: the log record whose flush the writer leaves out.
    pub skip_flush: Option<u64>,
}

impl Default for BootArgs {
    fn default() -> Self {
        BootArgs {
            suite: Suite::All,
            seed: 0,
            mode: Mode::Direct,
            crash_at: None,
            records: DEFAULT_RECORDS,
            ops: DEFAULT_OPS,
            nvdimms: None,
            skip_flush: None,
        }
    }
}

/// Why a command line was refused. `at` and `len` locate the offending word (byte
/// offsets into the command line; see [`ArgError::word`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgError {
    /// A key this kernel does not know.
    UnknownKey {
        /// Byte offset of the word.
        at: usize,
        /// Length of the word.
        len: usize,
    },
    /// A word without `=value`.
    MissingValue {
        /// Byte offset of the word.
        at: usize,
        /// Length of the word.
        len: usize,
    },
    /// A number that does not parse or is out of the key's range.
    BadNumber {
        /// Byte offset of the word.
        at: usize,
        /// Length of the word.
        len: usize,
    },
    /// A `suite=` value that names no suite.
    UnknownSuite {
        /// Byte offset of the word.
        at: usize,
        /// Length of the word.
        len: usize,
    },
    /// A `mode=` value that names no mode.
    UnknownMode {
        /// Byte offset of the word.
        at: usize,
        /// Length of the word.
        len: usize,
    },
    /// A key given twice.
    Repeated {
        /// Byte offset of the second occurrence.
        at: usize,
        /// Length of the word.
        len: usize,
    },
}

impl ArgError {
    /// Byte offset and length of the offending word.
    pub fn span(&self) -> (usize, usize) {
        match *self {
            ArgError::UnknownKey { at, len }
            | ArgError::MissingValue { at, len }
            | ArgError::BadNumber { at, len }
            | ArgError::UnknownSuite { at, len }
            | ArgError::UnknownMode { at, len }
            | ArgError::Repeated { at, len } => (at, len),
        }
    }

    /// The offending word of `cmdline` (the line this error came from), or `""` if
    /// the span does not fit it.
    pub fn word<'a>(&self, cmdline: &'a str) -> &'a str {
        let (at, len) = self.span();
        cmdline.get(at..at.saturating_add(len)).unwrap_or("")
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ArgError::UnknownKey { .. } => "unknown option",
            ArgError::MissingValue { .. } => "option without =value",
            ArgError::BadNumber { .. } => "bad number",
            ArgError::UnknownSuite { .. } => "unknown suite",
            ArgError::UnknownMode { .. } => "unknown mode",
            ArgError::Repeated { .. } => "option given twice",
        };
        let (at, len) = self.span();
        write!(f, "{what} in the word at bytes {at}..{}", at + len)
    }
}

impl core::error::Error for ArgError {}

fn parse_u64(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl BootArgs {
    /// Parses a command line; empty means all defaults.
    pub fn parse(cmdline: &str) -> Result<Self, ArgError> {
        let mut args = BootArgs::default();
        let mut seen = 0u8;
        let mut pos = 0;
        for word in cmdline.split(' ') {
            let at = pos;
            pos += word.len() + 1;
            if word.is_empty() {
                continue;
            }
            let len = word.len();
            let Some((key, value)) = word.split_once('=') else {
                return Err(ArgError::MissingValue { at, len });
            };
            let bad_number = ArgError::BadNumber { at, len };
            let bit = match key {
                "suite" => {
                    args.suite =
                        Suite::from_name(value).ok_or(ArgError::UnknownSuite { at, len })?;
                    0
                }
                "seed" => {
                    args.seed = parse_u64(value).ok_or(bad_number)?;
                    1
                }
                "mode" => {
                    args.mode = Mode::from_name(value).ok_or(ArgError::UnknownMode { at, len })?;
                    2
                }
                "crash_at" => {
                    let n = parse_u64(value).filter(|&n| n >= 1).ok_or(bad_number)?;
                    args.crash_at = Some(n);
                    3
                }
                "records" => {
                    args.records = parse_u64(value)
                        .filter(|n| (1..=u64::from(MAX_RECORDS)).contains(n))
                        .ok_or(bad_number)? as u32;
                    4
                }
                "nvdimms" => {
                    let n = parse_u64(value)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(bad_number)?;
                    args.nvdimms = Some(n);
                    5
                }
                "skip_flush" => {
                    args.skip_flush = Some(parse_u64(value).ok_or(bad_number)?);
                    6
                }
                "ops" => {
                    args.ops = parse_u64(value)
                        .filter(|n| (1..=u64::from(MAX_OPS)).contains(n))
                        .ok_or(bad_number)? as u32;
                    7
                }
                _ => return Err(ArgError::UnknownKey { at, len }),
            };
            if seen & (1 << bit) != 0 {
                return Err(ArgError::Repeated { at, len });
            }
            seen |= 1 << bit;
        }
        Ok(args)
    }
}

/// The canonical command line: what the runner passes with `-append`.
impl fmt::Display for BootArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "suite={} seed={} mode={} records={} ops={}",
            self.suite.name(),
            self.seed,
            self.mode.name(),
            self.records,
            self.ops
        )?;
        if let Some(n) = self.crash_at {
            write!(f, " crash_at={n}")?;
        }
        if let Some(n) = self.nvdimms {
            write!(f, " nvdimms={n}")?;
        }
        if let Some(n) = self.skip_flush {
            write!(f, " skip_flush={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_command_line_gives_defaults() {
        assert_eq!(BootArgs::parse("").unwrap(), BootArgs::default());
        assert_eq!(BootArgs::parse("   ").unwrap(), BootArgs::default());
    }

    #[test]
    fn every_key_parses_and_display_round_trips() {
        let line =
            "suite=log-verify seed=0x10 mode=adr crash_at=7 records=100 nvdimms=2 skip_flush=3 ops=9";
        let args = BootArgs::parse(line).unwrap();
        assert_eq!(
            args,
            BootArgs {
                suite: Suite::LogVerify,
                seed: 16,
                mode: Mode::Adr,
                crash_at: Some(7),
                records: 100,
                ops: 9,
                nvdimms: Some(2),
                skip_flush: Some(3),
            }
        );
        assert_eq!(BootArgs::parse(&args.to_string()).unwrap(), args);
        for suite in Suite::ALL {
            let a = BootArgs {
                suite,
                ..BootArgs::default()
            };
            assert_eq!(BootArgs::parse(&a.to_string()).unwrap(), a);
        }
    }

    #[test]
    fn bad_words_are_refused_and_located() {
        let cases: [(&str, ArgError, &str); 7] = [
            (
                "seed=1 sed=2",
                ArgError::UnknownKey { at: 7, len: 5 },
                "sed=2",
            ),
            ("suite", ArgError::MissingValue { at: 0, len: 5 }, "suite"),
            (
                "seed=12x",
                ArgError::BadNumber { at: 0, len: 8 },
                "seed=12x",
            ),
            (
                "crash_at=0",
                ArgError::BadNumber { at: 0, len: 10 },
                "crash_at=0",
            ),
            (
                "records=0",
                ArgError::BadNumber { at: 0, len: 9 },
                "records=0",
            ),
            (
                "suite=every",
                ArgError::UnknownSuite { at: 0, len: 11 },
                "suite=every",
            ),
            (
                "mode=adr  mode=direct",
                ArgError::Repeated { at: 10, len: 11 },
                "mode=direct",
            ),
        ];
        for (line, err, word) in cases {
            let got = BootArgs::parse(line).unwrap_err();
            assert_eq!(got, err, "{line}");
            assert_eq!(got.word(line), word);
        }
        assert!(matches!(
            BootArgs::parse("mode=eadr"),
            Err(ArgError::UnknownMode { .. })
        ));
        assert!(matches!(
            BootArgs::parse(&format!("records={}", MAX_RECORDS + 1)),
            Err(ArgError::BadNumber { .. })
        ));
        for bad_ops in ["ops=0".to_string(), format!("ops={}", MAX_OPS + 1)] {
            assert!(matches!(
                BootArgs::parse(&bad_ops),
                Err(ArgError::BadNumber { .. })
            ));
        }
        assert!(matches!(
            BootArgs::parse("nvdimms=4294967296"),
            Err(ArgError::BadNumber { .. })
        ));
    }
}
