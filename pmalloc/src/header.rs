//! Object headers: 16 bytes, out of line (in a run's header array, or in an extent's
//! chunk descriptor), so object data starts aligned and header writes never dirty data
//! lines.
//!
//! ```text
//! word 0: size (40 bits, bytes the user asked for) | type number (24 bits) << 40
//! word 1: generation (24 bits) | flags (8 bits) << 24 | check (32 bits) << 32
//! check = CRC-32C(object offset, word 0, low half of word 1, pool salt)
//! ```
//!
//! The header is the allocation state: an object is allocated iff its header is valid
//! and has `ALLOCATED`. An all-zero header is a never-used slot. The generation counts
//! allocations and frees of the slot; op records use it to tell a stale record from a
//! current one (see `record`).

use crate::checksum::crc32c_words;

/// Bytes per header.
pub const HEADER_BYTES: usize = 16;
/// Largest object size a header can state.
pub const MAX_SIZE: u64 = (1 << 40) - 1;
/// Largest type number.
pub const MAX_TYPE: u32 = (1 << 24) - 1;
/// Generations wrap at this modulus.
pub const GEN_MOD: u32 = 1 << 24;

/// Flag: the object is allocated.
pub const F_ALLOCATED: u8 = 1;
/// Flag: the object is an extent (whole chunks), not a run slot.
pub const F_EXTENT: u8 = 2;
const KNOWN_FLAGS: u8 = F_ALLOCATED | F_EXTENT;

/// A decoded, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjHeader {
    /// Size the user asked for.
    pub size: u64,
    /// Type number.
    pub type_num: u32,
    /// Generation.
    pub gen: u32,
    /// Flag bits.
    pub flags: u8,
}

/// What a header's 16 bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// All zero: never used.
    Zero,
    /// Valid.
    Valid(ObjHeader),
    /// Non-zero and not valid: torn or damaged.
    Invalid,
}

impl ObjHeader {
    /// Whether the object is allocated.
    pub fn allocated(&self) -> bool {
        self.flags & F_ALLOCATED != 0
    }

    /// Whether the object is an extent.
    pub fn extent(&self) -> bool {
        self.flags & F_EXTENT != 0
    }

    /// The two little-endian words for the object at `obj_off`.
    #[inline]
    pub fn encode(&self, obj_off: u64, salt: u64) -> [u64; 2] {
        debug_assert!(self.size <= MAX_SIZE && self.type_num <= MAX_TYPE && self.gen < GEN_MOD);
        let w0 = self.size | (u64::from(self.type_num) << 40);
        let lo = u64::from(self.gen) | (u64::from(self.flags) << 24);
        let check = crc32c_words(&[obj_off, w0, lo, salt]);
        [w0, lo | (u64::from(check) << 32)]
    }

    /// The 16 bytes for the object at `obj_off`.
    pub fn to_bytes(&self, obj_off: u64, salt: u64) -> [u8; HEADER_BYTES] {
        words_to_bytes(self.encode(obj_off, salt))
    }

    /// Decodes the header of the object at `obj_off`.
    #[inline]
    pub fn decode(words: [u64; 2], obj_off: u64, salt: u64) -> HeaderState {
        if words == [0, 0] {
            return HeaderState::Zero;
        }
        let [w0, w1] = words;
        let lo = w1 & 0xFFFF_FFFF;
        if (w1 >> 32) as u32 != crc32c_words(&[obj_off, w0, lo, salt]) {
            return HeaderState::Invalid;
        }
        let flags = ((lo >> 24) & 0xFF) as u8;
        if flags & !KNOWN_FLAGS != 0 {
            return HeaderState::Invalid;
        }
        HeaderState::Valid(ObjHeader {
            size: w0 & MAX_SIZE,
            type_num: (w0 >> 40) as u32,
            gen: (lo & 0xFF_FFFF) as u32,
            flags,
        })
    }

    /// Decodes 16 bytes.
    #[inline]
    pub fn decode_bytes(b: &[u8; HEADER_BYTES], obj_off: u64, salt: u64) -> HeaderState {
        Self::decode(bytes_to_words(b), obj_off, salt)
    }
}

impl HeaderState {
    /// The generation a new state of this slot must exceed: the valid header's, else 0.
    pub fn gen(&self) -> u32 {
        match self {
            HeaderState::Valid(h) => h.gen,
            HeaderState::Zero | HeaderState::Invalid => 0,
        }
    }

    /// The valid, allocated header, if that is what this is.
    pub fn allocated(&self) -> Option<ObjHeader> {
        match self {
            HeaderState::Valid(h) if h.allocated() => Some(*h),
            _ => None,
        }
    }
}

/// The next generation after `g`.
pub fn next_gen(g: u32) -> u32 {
    (g + 1) % GEN_MOD
}

/// Calls `f(i, header)` for every header in an array whose 16 bytes are not all zero,
/// skipping zero runs 64 bytes at a time (most slots of a young run were never used).
#[inline]
pub fn for_each_nonzero(hdrs: &[u8], mut f: impl FnMut(usize, &[u8; HEADER_BYTES])) {
    for (group, block) in hdrs.chunks(64).enumerate() {
        if block.iter().fold(0u8, |a, b| a | b) != 0 {
            for (k, h) in block.chunks_exact(HEADER_BYTES).enumerate() {
                let h: &[u8; HEADER_BYTES] = h.try_into().unwrap_or(&[0; HEADER_BYTES]);
                if *h != [0; HEADER_BYTES] {
                    f(group * 4 + k, h);
                }
            }
        }
    }
}

/// Two words as 16 little-endian bytes.
pub fn words_to_bytes(w: [u64; 2]) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[..8].copy_from_slice(&w[0].to_le_bytes());
    b[8..].copy_from_slice(&w[1].to_le_bytes());
    b
}

/// 16 little-endian bytes as two words.
#[inline]
pub fn bytes_to_words(b: &[u8; HEADER_BYTES]) -> [u64; 2] {
    [
        u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
        u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u64 = 0x1234_5678_9abc_def0;

    #[test]
    fn round_trips_and_binds_to_its_offset_and_pool() {
        let h = ObjHeader {
            size: 1000,
            type_num: 77,
            gen: 5,
            flags: F_ALLOCATED,
        };
        let w = h.encode(4096, SALT);
        assert_eq!(ObjHeader::decode(w, 4096, SALT), HeaderState::Valid(h));
        assert_eq!(
            ObjHeader::decode(w, 4160, SALT),
            HeaderState::Invalid,
            "moved header"
        );
        assert_eq!(
            ObjHeader::decode(w, 4096, SALT ^ 1),
            HeaderState::Invalid,
            "other pool"
        );
        assert_eq!(ObjHeader::decode([0, 0], 4096, SALT), HeaderState::Zero);
    }

    #[test]
    fn every_bit_flip_and_every_torn_half_is_invalid() {
        let old = ObjHeader {
            size: 64,
            type_num: 1,
            gen: 9,
            flags: 0,
        }
        .encode(8192, SALT);
        let new = ObjHeader {
            size: 100,
            type_num: 2,
            gen: 10,
            flags: F_ALLOCATED,
        }
        .encode(8192, SALT);
        for bit in 0..128 {
            let mut w = new;
            w[bit / 64] ^= 1 << (bit % 64);
            assert_eq!(
                ObjHeader::decode(w, 8192, SALT),
                HeaderState::Invalid,
                "bit {bit}"
            );
        }
        assert_eq!(
            ObjHeader::decode([old[0], new[1]], 8192, SALT),
            HeaderState::Invalid
        );
        assert_eq!(
            ObjHeader::decode([new[0], old[1]], 8192, SALT),
            HeaderState::Invalid
        );
    }

    #[test]
    fn generations_wrap() {
        assert_eq!(next_gen(GEN_MOD - 1), 0);
        assert_eq!(next_gen(3), 4);
    }
}
