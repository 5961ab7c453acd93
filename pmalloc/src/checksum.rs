//! CRC-32C for every on-media checksum: the SSE4.2 `crc32` instruction when the CPU has
//! it (a few cycles per 8 bytes), the `crc` crate's table otherwise. Both compute the
//! same function; a test checks it.

use crc::{Crc, CRC_32_ISCSI};

static TABLE: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// CRC-32C of `parts` concatenated, with the usual initial value and final xor.
#[inline]
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    if arch::cpu::features().sse42 {
        let mut c = !0u32;
        for p in parts {
            c = hw_update(c, p);
        }
        !c
    } else {
        sw(parts)
    }
}

/// CRC-32C of 8-byte little-endian words (the common case for headers and records).
#[inline]
pub fn crc32c_words(words: &[u64]) -> u32 {
    if arch::cpu::features().sse42 {
        let mut c = !0u32;
        for &w in words {
            // SAFETY: SSE4.2 was detected above.
            c = unsafe { arch::instr::crc32c_u64(c, w) };
        }
        !c
    } else {
        let mut d = TABLE.digest();
        for w in words {
            d.update(&w.to_le_bytes());
        }
        d.finalize()
    }
}

fn sw(parts: &[&[u8]]) -> u32 {
    let mut d = TABLE.digest();
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

#[inline]
fn hw_update(mut c: u32, mut p: &[u8]) -> u32 {
    while p.len() >= 8 {
        let (w, rest) = p.split_at(8);
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        // SAFETY: only called after SSE4.2 was detected.
        c = unsafe { arch::instr::crc32c_u64(c, w) };
        p = rest;
    }
    for &b in p {
        // SAFETY: as above.
        c = unsafe { arch::instr::crc32c_u8(c, b) };
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_and_table_agree() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 64, 299, 300] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc32c(&[a, b]), sw(&[&data]), "cut {cut}");
        }
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(&[b"123456789"]), 0xE306_9283);
        assert_eq!(sw(&[b"123456789"]), 0xE306_9283);
        let words = [1u64, 2, 0xdead_beef];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(crc32c_words(&words), sw(&[&bytes]));
    }
}
