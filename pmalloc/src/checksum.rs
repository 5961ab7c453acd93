//! CRC-32C for every on-media checksum: the SSE4.2 `crc32` instruction when the CPU has
//! it (a few cycles per 8 bytes), the `crc` crate's table otherwise. Both compute the
//! same function; a test checks it.

use crc::{Crc, CRC_32_ISCSI};

static TABLE: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// CRC-32C of `parts` concatenated, with the usual initial value and final xor.
#[inline]
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut c = Crc32c::new();
    for p in parts {
        c.update(p);
    }
    c.finish()
}

/// CRC-32C fed piece by piece (for inputs read in chunks, such as a record of
/// megabytes checked where it lies in the log): the same value as [`crc32c`] of the
/// pieces.
#[derive(Clone)]
pub struct Crc32c(Engine);

#[derive(Clone)]
enum Engine {
    Hw(u32),
    Sw(crc::Digest<'static, u32>),
}

impl core::fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Crc32c").finish_non_exhaustive()
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// An empty checksum.
    #[inline]
    pub fn new() -> Self {
        if arch::cpu::features().sse42 {
            Crc32c(Engine::Hw(!0))
        } else {
            Crc32c(Engine::Sw(TABLE.digest()))
        }
    }

    /// Adds `p`.
    #[inline]
    pub fn update(&mut self, p: &[u8]) {
        match &mut self.0 {
            Engine::Hw(c) => *c = hw_update(*c, p),
            Engine::Sw(d) => d.update(p),
        }
    }

    /// Adds the 8 bytes of `w`, little-endian (one instruction with SSE4.2).
    #[inline]
    pub fn update_u64(&mut self, w: u64) {
        match &mut self.0 {
            // SAFETY: the hardware engine is only made after SSE4.2 was detected.
            Engine::Hw(c) => *c = unsafe { arch::instr::crc32c_u64(*c, w) },
            Engine::Sw(d) => d.update(&w.to_le_bytes()),
        }
    }

    /// Adds the 4 bytes of `w`, little-endian.
    #[inline]
    pub fn update_u32(&mut self, w: u32) {
        match &mut self.0 {
            // SAFETY: as in `update_u64`.
            Engine::Hw(c) => *c = unsafe { arch::instr::crc32c_u32(*c, w) },
            Engine::Sw(d) => d.update(&w.to_le_bytes()),
        }
    }

    /// An empty checksum for bytes that follow everything added to `self`, computed
    /// apart (on another thread) and added back with [`Crc32c::join`]; `None` without
    /// the hardware instruction (the table's state cannot be joined).
    pub fn fork(&self) -> Option<Crc32c> {
        match self.0 {
            Engine::Hw(_) => Some(Crc32c(Engine::Hw(0))),
            Engine::Sw(_) => None,
        }
    }

    /// Adds the `len` bytes that `fork`, a [`Crc32c::fork`] of this checksum, took: as
    /// if they had been added here. The register is linear in its start:
    /// `f(c, B) = S·c ⊕ f(0, B)`, `S` the map of `len` zero bytes.
    pub fn join(&mut self, fork: Crc32c, len: u64) {
        if let (Engine::Hw(c), Engine::Hw(f)) = (&mut self.0, fork.0) {
            *c = after_zeros(*c, len) ^ f;
        }
    }

    /// The checksum of everything added.
    #[inline]
    pub fn finish(self) -> u32 {
        match self.0 {
            Engine::Hw(c) => !c,
            Engine::Sw(d) => d.finalize(),
        }
    }
}

/// CRC-32C of 8-byte little-endian words (the common case for headers and records).
///
/// Always inlined: its callers pass a few words, and the hardware loop unrolls into a
/// handful of `crc32` instructions; left to the optimizer, whether it was inlined
/// moved with unrelated changes elsewhere (w4: 2.5% of its instructions).
#[inline(always)]
pub fn crc32c_words(words: &[u64]) -> u32 {
    if arch::cpu::features().sse42 {
        let mut c = !0u32;
        for &w in words {
            // SAFETY: SSE4.2 was detected above.
            c = unsafe { arch::instr::crc32c_u64(c, w) };
        }
        !c
    } else {
        crc32c_words_sw(words)
    }
}

/// [`crc32c_words`] without SSE4.2.
#[cold]
#[inline(never)]
fn crc32c_words_sw(words: &[u64]) -> u32 {
    let mut d = TABLE.digest();
    for w in words {
        d.update(&w.to_le_bytes());
    }
    d.finalize()
}

#[cfg(test)]
fn sw(parts: &[&[u8]]) -> u32 {
    let mut d = TABLE.digest();
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

/// Bytes of each of the three streams [`hw_update`] runs side by side over long inputs.
const STREAM: usize = 4096;

/// The reflected CRC-32C polynomial.
const POLY: u32 = 0x82F6_3B78;

/// A linear map on CRC registers as its 32 columns (the image of each bit).
type Gf2Matrix = [u32; 32];

/// A register times x modulo P, reflected (bit `i` is x^(31 - i)): one step of feeding a
/// zero bit.
const fn times_x(r: u32) -> u32 {
    (r >> 1) ^ (POLY & 0u32.wrapping_sub(r & 1))
}

/// `m · v` over GF(2).
const fn gf2_apply(m: &Gf2Matrix, v: u32) -> u32 {
    let mut r = 0;
    let mut i = 0;
    while i < 32 {
        // Branch-free: the column is taken when bit `i` of `v` is set.
        r ^= m[i] & 0u32.wrapping_sub((v >> i) & 1);
        i += 1;
    }
    r
}

/// `m · m`.
const fn gf2_square(m: &Gf2Matrix) -> Gf2Matrix {
    let mut r = [0; 32];
    let mut i = 0;
    while i < 32 {
        r[i] = gf2_apply(m, m[i]);
        i += 1;
    }
    r
}

/// The register map of feeding `n` zero bytes (`n` a power of two): one zero byte is
/// eight shift-and-reduce steps; doubling is squaring.
const fn zeros_operator(n: usize) -> Gf2Matrix {
    let mut m = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut c = 1u32 << i;
        let mut k = 0;
        while k < 8 {
            c = times_x(c);
            k += 1;
        }
        m[i] = c;
        i += 1;
    }
    let mut len = 1;
    while len < n {
        m = gf2_square(&m);
        len *= 2;
    }
    m
}

const _: () = assert!(STREAM.is_power_of_two() && STREAM.is_multiple_of(8));

/// Register `c` after `n` zero bytes: the maps of 1, 2, 4, ... zero bytes by squaring,
/// applied where `n` has a bit (about 30 squarings of a 32 × 32 matrix for a
/// gigabyte: microseconds, for joining checksums of megabytes).
fn after_zeros(mut c: u32, mut n: u64) -> u32 {
    let mut m = zeros_operator(1);
    while n > 0 {
        if n & 1 == 1 {
            c = gf2_apply(&m, c);
        }
        n >>= 1;
        if n > 0 {
            m = gf2_square(&m);
        }
    }
    c
}

/// Bytes of each stream for what is left from 768 bytes (a kilobyte record is checked
/// at every commit that logs it).
const MID: usize = 256;
const _: () = assert!(MID.is_power_of_two() && MID.is_multiple_of(8));

/// A register map as four byte-indexed tables: `m · v` in four loads.
type ShiftTable = [[u32; 256]; 4];

const fn shift_table(m: &Gf2Matrix) -> ShiftTable {
    let mut t = [[0u32; 256]; 4];
    let mut b = 0;
    while b < 4 {
        let mut v = 0;
        while v < 256 {
            t[b][v] = gf2_apply(m, (v as u32) << (8 * b));
            v += 1;
        }
        b += 1;
    }
    t
}

/// The stream lengths, longest first, each with the register maps of one and two
/// streams of zero bytes that join three streams.
static TIERS: [(usize, ShiftTable, ShiftTable); 2] = [
    (
        STREAM,
        shift_table(&zeros_operator(STREAM)),
        shift_table(&zeros_operator(2 * STREAM)),
    ),
    (
        MID,
        shift_table(&zeros_operator(MID)),
        shift_table(&zeros_operator(2 * MID)),
    ),
];

fn shift(t: &ShiftTable, c: u32) -> u32 {
    t[0][(c & 0xFF) as usize]
        ^ t[1][((c >> 8) & 0xFF) as usize]
        ^ t[2][((c >> 16) & 0xFF) as usize]
        ^ t[3][(c >> 24) as usize]
}

/// Three streams of `n` bytes each from `p` (at least `3n` long), side by side, from
/// register `c`: the three registers.
#[inline(always)]
fn three_streams(c: u32, p: &[u8], n: usize) -> (u32, u32, u32) {
    // Whole words by index over three equal slices: the compiler drops the bounds
    // checks (a zip of `chunks_exact` kept a length test and a fallback per word).
    let (a, _) = p[..n].as_chunks::<8>();
    let (b, _) = p[n..2 * n].as_chunks::<8>();
    let (d, _) = p[2 * n..3 * n].as_chunks::<8>();
    let (mut ca, mut cb, mut cd) = (c, 0u32, 0u32);
    for i in 0..a.len().min(b.len()).min(d.len()) {
        // SAFETY: only called after SSE4.2 was detected.
        unsafe {
            ca = arch::instr::crc32c_u64(ca, u64::from_le_bytes(a[i]));
            cb = arch::instr::crc32c_u64(cb, u64::from_le_bytes(b[i]));
            cd = arch::instr::crc32c_u64(cd, u64::from_le_bytes(d[i]));
        }
    }
    (ca, cb, cd)
}

/// Inputs at least this long (after the tiers) go in three streams joined by
/// carry-less multiplies when the CPU has them: a single chain of `crc32` instructions
/// waits three cycles per word.
const JOIN_MIN: usize = 96;

/// Words of the longest shift [`JOIN`] covers: two streams of what the tiers leave
/// (under `3 * MID` bytes).
const JOIN_WORDS: usize = 2 * MID / 8;

/// `JOIN[j]`: x^(64 j - 33) mod P, reflected. A register `c` times it, carry-less, fed
/// to `crc32` from zero is `c` moved past `8 j` zero bytes: the product's bit `k` is
/// x^(62 - k) and `crc32` reads bit `k` of its word as x^(63 - k), then multiplies by
/// x^32, so the exponents add to 64 j.
static JOIN: [u32; JOIN_WORDS + 1] = join_table();

const fn join_table() -> [u32; JOIN_WORDS + 1] {
    let mut t = [0u32; JOIN_WORDS + 1];
    // x^0, then x^31 for j = 1, then 64 more powers per entry.
    let mut r = 0x8000_0000u32;
    let mut e = 0;
    while e < 31 {
        r = times_x(r);
        e += 1;
    }
    let mut j = 1;
    while j <= JOIN_WORDS {
        t[j] = r;
        let mut k = 0;
        while k < 64 {
            r = times_x(r);
            k += 1;
        }
        j += 1;
    }
    t
}

/// Register `c` moved past `n` zero bytes (`n` a multiple of 8, `1..=JOIN_WORDS` words).
///
/// # Safety
/// The CPU has SSE4.2 and usable PCLMULQDQ.
#[inline]
unsafe fn join(c: u32, n: usize) -> u32 {
    // SAFETY: the caller vouches for both instructions.
    unsafe { arch::instr::crc32c_u64(0, arch::instr::clmul32(c, JOIN[n / 8])) }
}

/// The CRC register after `p`, from register `c`. The `crc32` instruction has a latency
/// of three cycles and a throughput of one, so one chain uses a third of it: long inputs
/// go in blocks of three [`STREAM`]-byte streams, computed side by side and joined by
/// the linearity of the CRC (`f(c, A‖B‖C) = S₂·f(c, A) ⊕ S₁·f(0, B) ⊕ f(0, C)`, `Sₖ`
/// the map of `k × STREAM` zero bytes). Recovery checks records of megabytes; what is
/// left from 768 bytes goes the same way in [`MID`]-byte streams.
#[inline]
fn hw_update(mut c: u32, mut p: &[u8]) -> u32 {
    // Most calls are short (record headers, one-line records, words): they skip the
    // tiers' loop.
    if p.len() >= 3 * MID {
        for (n, one, two) in &TIERS {
            while p.len() >= 3 * n {
                let (ca, cb, cd) = three_streams(c, p, *n);
                c = shift(two, ca) ^ shift(one, cb) ^ cd;
                p = &p[3 * n..];
            }
        }
    }
    if p.len() >= JOIN_MIN && arch::cpu::features().pclmul {
        let n = p.len() / 24 * 8;
        let (ca, cb, cd) = three_streams(c, p, n);
        // SAFETY: SSE4.2 was detected by the caller, PCLMULQDQ just above; `2n` is below
        // `2 * MID` bytes, as `p` is shorter than `3 * MID` here.
        c = unsafe { join(ca, 2 * n) ^ join(cb, n) } ^ cd;
        p = &p[3 * n..];
    }
    let (words, mut rest) = p.as_chunks::<8>();
    for w in words {
        // SAFETY: only called after SSE4.2 was detected.
        c = unsafe { arch::instr::crc32c_u64(c, u64::from_le_bytes(*w)) };
    }
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        // SAFETY: as above.
        c = unsafe { arch::instr::crc32c_u32(c, u32::from_le_bytes(*w)) };
        rest = tail;
    }
    for &b in rest {
        // SAFETY: as above.
        c = unsafe { arch::instr::crc32c_u8(c, b) };
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_forked_and_joined_equals_one_fed_in_order() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let whole = crc32c(&[&data]);
        for (a, b) in [
            (0, 0),
            (0, 40_000),
            (1, 2),
            (100, 13_000),
            (12_289, 40_000),
            (39_999, 40_000),
        ] {
            let mut c = Crc32c::new();
            c.update(&data[..a]);
            let Some(mut f) = c.fork() else {
                return; // No SSE4.2: nothing to join.
            };
            let mut g = f.fork().unwrap();
            f.update(&data[a..b]);
            g.update(&data[b..]);
            c.join(f, (b - a) as u64);
            c.join(g, (data.len() - b) as u64);
            assert_eq!(c.finish(), whole, "cut at {a} and {b}");
        }
    }

    #[test]
    fn short_inputs_and_words_agree_with_the_table() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 29 + 5) as u8).collect();
        for len in 0..=data.len() {
            assert_eq!(crc32c(&[&data[..len]]), sw(&[&data[..len]]), "len {len}");
        }
        for engine in [Engine::Hw(!0), Engine::Sw(TABLE.digest())] {
            if matches!(engine, Engine::Hw(_)) && !arch::cpu::features().sse42 {
                continue;
            }
            let mut c = Crc32c(engine);
            c.update_u64(u64::from_le_bytes(data[..8].try_into().unwrap()));
            c.update_u32(u32::from_le_bytes(data[8..12].try_into().unwrap()));
            c.update(&data[12..13]);
            c.update_u64(u64::from_le_bytes(data[13..21].try_into().unwrap()));
            assert_eq!(c.finish(), sw(&[&data[..21]]));
        }
    }

    #[test]
    fn a_carry_less_join_moves_a_register_past_zero_bytes_like_the_matrix() {
        let f = arch::cpu::features();
        if !(f.sse42 && f.pclmul) {
            return;
        }
        let mut c = 0x1234_5678u32;
        for j in 1..=JOIN_WORDS {
            for _ in 0..8 {
                c = c.rotate_left(7) ^ 0x9E37_79B9u32.wrapping_mul(j as u32);
                // SAFETY: both instructions were detected just above.
                let joined = unsafe { join(c, 8 * j) };
                assert_eq!(
                    joined,
                    after_zeros(c, 8 * j as u64),
                    "{j} words from {c:#x}"
                );
            }
        }
    }

    #[test]
    fn hardware_and_table_agree() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in [0, 1, 7, 8, 9, 64, 299, 300] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc32c(&[a, b]), sw(&[&data]), "cut {cut}");
        }
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(&[b"123456789"]), 0xE306_9283);
        // Piece by piece, either engine, equals the whole.
        for engine in [Engine::Hw(!0), Engine::Sw(TABLE.digest())] {
            if matches!(engine, Engine::Hw(_)) && !arch::cpu::features().sse42 {
                continue;
            }
            let mut c = Crc32c(engine);
            for piece in data.chunks(37) {
                c.update(piece);
            }
            assert_eq!(c.finish(), sw(&[&data]));
        }
        // Long enough for the three-stream path, with a tail and a split inside it.
        let long: Vec<u8> = (0..7 * STREAM + 13)
            .map(|i| (i * 31 + i / 7) as u8)
            .collect();
        for cut in [0, 5, STREAM, 3 * STREAM + 1, long.len()] {
            let (a, b) = long.split_at(cut);
            assert_eq!(crc32c(&[a, b]), sw(&[&long]), "long cut {cut}");
        }
        // Every length through the kilobyte tier, whole and split, from every register.
        for len in 0..2400 {
            assert_eq!(crc32c(&[&long[..len]]), sw(&[&long[..len]]), "len {len}");
            if arch::cpu::features().sse42 {
                let (a, b) = long[..len].split_at(len / 3);
                let mut c = Crc32c(Engine::Hw(!0));
                c.update(a);
                c.update(b);
                assert_eq!(c.finish(), sw(&[&long[..len]]), "len {len} split");
            }
        }
        assert_eq!(sw(&[b"123456789"]), 0xE306_9283);
        let words = [1u64, 2, 0xdead_beef];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(crc32c_words(&words), sw(&[&bytes]));
    }
}
