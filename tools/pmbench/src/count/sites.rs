//! Where the persistence instructions are: `objdump -d` of an object file, reduced to
//! the addresses of fences, cache-line flushes and non-temporal stores.

use std::path::Path;
use std::process::Command;

use super::CountError;

/// What a persistence instruction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `sfence` or `mfence`: waits for earlier flushes and non-temporal stores.
    Fence,
    /// `clwb`, `clflushopt`, `clflush`: one cache line written back.
    Flush,
    /// A non-temporal store of this many bytes (`movnti`, `movntdq`, `vmovntdq`,
    /// `movntps`/`pd`, `movdir64b`).
    NonTemporal(u32),
}

/// One persistence instruction in an object file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Its address as objdump prints it (the link-time virtual address).
    pub addr: u64,
    /// Its first byte, to check the runtime address before patching it.
    pub first_byte: u8,
    /// The mnemonic, as objdump prints it.
    pub mnemonic: String,
    /// What it does.
    pub kind: Kind,
}

/// The kind of `mnemonic` with operands `operands`, or `None` when it is not a
/// persistence instruction. Non-temporal *loads* (`movntdqa`) are not stores and are
/// left out.
pub fn classify(mnemonic: &str, operands: &str) -> Option<Kind> {
    let width = || {
        if operands.contains("%zmm") {
            64
        } else if operands.contains("%ymm") {
            32
        } else {
            16
        }
    };
    match mnemonic {
        "sfence" | "mfence" => Some(Kind::Fence),
        "clwb" | "clflushopt" | "clflush" => Some(Kind::Flush),
        "movnti" => Some(Kind::NonTemporal(if operands.starts_with("%r") {
            8
        } else {
            4
        })),
        "movntdq" | "movntps" | "movntpd" | "vmovntdq" | "vmovntps" | "vmovntpd" => {
            Some(Kind::NonTemporal(width()))
        }
        "movdir64b" => Some(Kind::NonTemporal(64)),
        _ => None,
    }
}

/// Parses one line of `objdump -d --insn-width=16` output.
pub fn parse_line(line: &str) -> Option<Site> {
    // "   11c3:\t66 0f ae 32          \tclwb   (%rdx)"
    let mut parts = line.splitn(3, '\t');
    let addr = parts.next()?.trim().strip_suffix(':')?;
    let addr = u64::from_str_radix(addr, 16).ok()?;
    let bytes = parts.next()?;
    let first_byte = u8::from_str_radix(bytes.split_whitespace().next()?, 16).ok()?;
    let text = parts.next()?.trim();
    let mut words = text.split_whitespace();
    let mut mnemonic = words.next()?;
    // Prefixes objdump prints as words of their own.
    while matches!(
        mnemonic,
        "ds" | "cs" | "notrack" | "data16" | "rex" | "rex.W"
    ) {
        mnemonic = words.next()?;
    }
    let operands = words.next().unwrap_or("");
    let kind = classify(mnemonic, operands)?;
    Some(Site {
        addr,
        first_byte,
        mnemonic: mnemonic.to_owned(),
        kind,
    })
}

/// Every persistence instruction in the object file at `path`.
pub fn scan(path: &Path) -> Result<Vec<Site>, CountError> {
    let out = Command::new("objdump")
        .args(["-d", "--insn-width=16"])
        .arg(path)
        .output()
        .map_err(|e| CountError::Objdump {
            path: path.into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(CountError::Objdump {
            path: path.into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_line)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flushes_fences_and_stores_with_their_widths() {
        let s = parse_line("    11c3:\t66 0f ae 32          \tclwb   (%rdx)").unwrap();
        assert_eq!((s.addr, s.first_byte, s.kind), (0x11c3, 0x66, Kind::Flush));
        let s = parse_line("    cc30:\t0f ae f8             \tsfence").unwrap();
        assert_eq!(s.kind, Kind::Fence);
        let s = parse_line("   1a2b0:\t62 f1 7d 48 e7 07    \tvmovntdq %zmm0,(%rdi)").unwrap();
        assert_eq!(s.kind, Kind::NonTemporal(64));
        let s = parse_line("   1a2b0:\tc5 fd e7 07          \tvmovntdq %ymm0,(%rdi)").unwrap();
        assert_eq!(s.kind, Kind::NonTemporal(32));
        let s = parse_line("   1a2b0:\t66 0f e7 07          \tmovntdq %xmm0,(%rdi)").unwrap();
        assert_eq!(s.kind, Kind::NonTemporal(16));
        let s = parse_line("   1a2b0:\t48 0f c3 07          \tmovnti %rax,(%rdi)").unwrap();
        assert_eq!(s.kind, Kind::NonTemporal(8));
        let s = parse_line("   1a2b0:\t0f c3 07             \tmovnti %eax,(%rdi)").unwrap();
        assert_eq!(s.kind, Kind::NonTemporal(4));
        let s = parse_line("   1a2b0:\t66 0f 38 f8 37       \tmovdir64b (%rdi),%rsi").unwrap();
        assert_eq!(s.kind, Kind::NonTemporal(64));
    }

    #[test]
    fn ignores_loads_and_ordinary_instructions() {
        assert!(parse_line("   1a2b0:\t66 0f 38 2a 07       \tmovntdqa (%rdi),%xmm0").is_none());
        assert!(parse_line("   1a2b0:\t48 89 07             \tmov    %rax,(%rdi)").is_none());
        assert!(parse_line("Disassembly of section .text:").is_none());
        assert!(parse_line("0000000000009630 <pmem_drain@@LIBPMEM_1.0>:").is_none());
    }
}
