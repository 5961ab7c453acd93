//! Formatting shared by the subcommands, and opening a pool on a private copy.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use arch::Media;
use pmalloc::{Heap, OpenOptions, OpenReport, Repaired};

use crate::{PmpoolError, PrivateCopy};

/// Opens the pool in `path` on a private copy (the file is not changed).
pub fn open_private(path: &Path) -> Result<(Heap<PrivateCopy>, OpenReport), PmpoolError> {
    Heap::open(PrivateCopy::read(path)?, &OpenOptions::default()).map_err(|source| {
        PmpoolError::Open {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A UUID as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid(u: &[u8; 16]) -> String {
    let hex = u.iter().fold(String::with_capacity(32), |mut h, b| {
        let _ = write!(h, "{b:02x}");
        h
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A layout name without its NUL padding.
pub fn layout_name(name: &[u8; 32]) -> String {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// The recovery section: header copies, op records, damage.
pub fn recovery(report: &OpenReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "recovery:")?;
    match report.repaired {
        None => writeln!(out, "  header copies   both valid")?,
        Some(Repaired::Primary(why)) => {
            writeln!(
                out,
                "  header copies   primary invalid ({why}), repaired from the backup"
            )?;
        }
        Some(Repaired::Backup(why)) => {
            writeln!(
                out,
                "  header copies   backup invalid ({why}), repaired from the primary"
            )?;
        }
    }
    writeln!(
        out,
        "  op records      {} replayed, {} stale, {} torn",
        report.replayed, report.stale, report.torn
    )?;
    if report.damage.is_empty() {
        writeln!(out, "  damage          none")
    } else {
        writeln!(
            out,
            "  damage          {} structures set aside:",
            report.damage.len()
        )?;
        for d in &report.damage {
            writeln!(out, "    {} at {:#x}", d.what, d.offset)?;
        }
        Ok(())
    }
}

/// The root object, if any: `0x... (type T, N bytes)`.
pub fn root<M: Media>(heap: &Heap<M>) -> String {
    match heap.root().map(|r| heap.info(r.raw())) {
        Some(Ok(o)) => format!("{:#x} (type {}, {} bytes)", o.ptr, o.type_num, o.size),
        Some(Err(e)) => format!("invalid: {e}"),
        None => "none".into(),
    }
}

/// Parts per million as a percentage with two decimals, without floats.
pub fn ppm_percent(ppm: u32) -> String {
    format!("{}.{:02}%", ppm / 10_000, ppm % 10_000 / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_names_and_percentages_format() {
        let u: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(uuid(&u), "00112233-4455-6677-8899-aabbccddeeff");
        let mut name = [0u8; 32];
        name[..4].copy_from_slice(b"demo");
        assert_eq!(layout_name(&name), "demo");
        assert_eq!(ppm_percent(0), "0.00%");
        assert_eq!(ppm_percent(123_456), "12.34%");
        assert_eq!(ppm_percent(1_000_000), "100.00%");
    }
}
