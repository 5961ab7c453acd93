//! Parsing the workloads' serial lines: a keyword, then words that are either a
//! number or `key=<number>`, nothing after the last.

/// A decimal or `0x` hex number.
pub(crate) fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The words of a line after its keyword, each either `value` or `key=value`.
pub(crate) struct Words<'a>(core::str::Split<'a, char>);

impl<'a> Words<'a> {
    /// The words of `rest`, separated by single spaces.
    pub(crate) fn of(rest: &'a str) -> Self {
        Words(rest.split(' '))
    }

    /// The next word as it is.
    pub(crate) fn word(&mut self) -> Option<&'a str> {
        self.0.next()
    }

    /// The next word, a bare number.
    pub(crate) fn num(&mut self) -> Option<u64> {
        number(self.0.next()?)
    }

    /// The next word, `key=<number>`.
    pub(crate) fn key(&mut self, key: &str) -> Option<u64> {
        let (k, v) = self.0.next()?.split_once('=')?;
        (k == key).then(|| number(v))?
    }

    /// The end of the line: nothing may follow.
    pub(crate) fn end<T>(mut self, value: T) -> Option<T> {
        self.0.next().is_none().then_some(value)
    }
}

/// A number that fits a `u32`.
pub(crate) fn small(v: u64) -> Option<u32> {
    u32::try_from(v).ok()
}

/// A workload line: `<prefix> no-pool` (optionally `: reason`), or `<prefix> <kind>
/// <words>`.
pub(crate) enum Keyed<'a> {
    /// The verifier found no pool.
    NoPool,
    /// Any other line: its kind word and the words after it.
    Kind(&'a str, Words<'a>),
}

/// Splits `line` (a line end trimmed) after `prefix` (`"heap"`, `"tx"`).
pub(crate) fn keyed<'a>(line: &'a str, prefix: &str) -> Option<Keyed<'a>> {
    let rest = line.trim_end_matches('\r').strip_prefix(prefix)?;
    if let Some(reason) = rest.strip_prefix(" no-pool") {
        return (reason.is_empty() || reason.starts_with(':')).then_some(Keyed::NoPool);
    }
    let (kind, rest) = rest.strip_prefix(' ')?.split_once(' ')?;
    Some(Keyed::Kind(kind, Words::of(rest)))
}
