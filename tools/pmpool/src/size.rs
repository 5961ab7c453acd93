//! Byte sizes on the command line: `8388608`, `512K`, `64M`, `64MiB`, `2G`, `1T`
//! (binary multiples; `B` and `iB` suffixes accepted).

use std::fmt;

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeError {
    /// No digits.
    Empty,
    /// Not a number followed by an optional K, M, G or T.
    Malformed {
        /// The text.
        text: String,
    },
    /// Larger than 2^64 - 1 bytes.
    Overflow {
        /// The text.
        text: String,
    },
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => write!(f, "empty size"),
            SizeError::Malformed { text } => write!(
                f,
                "size {text:?} is not a number with an optional K, M, G or T suffix"
            ),
            SizeError::Overflow { text } => write!(f, "size {text:?} is too large"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a size (see the module docs).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let malformed = || SizeError::Malformed {
        text: text.to_string(),
    };
    let n: u64 = t[..digits].parse().map_err(|_| malformed())?;
    let suffix = t[digits..].trim_end_matches("iB").trim_end_matches('B');
    let shift = match suffix {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(malformed()),
    };
    n.checked_mul(1 << shift).ok_or(SizeError::Overflow {
        text: text.to_string(),
    })
}

/// `bytes` with a binary unit when it is a whole multiple of one (`64 MiB`), else in
/// bytes.
pub fn show_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units_parse() {
        for (text, v) in [
            ("8388608", 8 << 20),
            ("512K", 512 << 10),
            ("64M", 64 << 20),
            ("64MiB", 64 << 20),
            ("64MB", 64 << 20),
            ("2g", 2 << 30),
            ("1T", 1 << 40),
            (" 16M ", 16 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(v), "{text}");
        }
    }

    #[test]
    fn malformed_and_huge_sizes_are_refused() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        for bad in ["M", "64Q", "6 4M", "-1", "64MM", "0x10"] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_size("99999999999T"),
            Err(SizeError::Overflow { .. })
        ));
    }

    #[test]
    fn sizes_show_in_the_largest_whole_unit() {
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(3 << 10), "3 KiB");
        assert_eq!(show_size(1000), "1000 B");
        assert_eq!(show_size((1 << 20) + 1), "1048577 B");
    }
}
