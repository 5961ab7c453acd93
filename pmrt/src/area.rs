//! The runtime area (owned by pmrt inside the pool): its header, per-lane tails, and
//! per-lane logs. See `docs/transactions.md` for the byte tables.
//!
//! ```text
//! +0                    area header (32 B): magic, version, lanes, lane log bytes, check
//! +32                   sequence reservation word (see [`encode_seq_word`])
//! +4096                 lane k tail word at +4096 + 64 k (own line each)
//! +logs_off             lane k log at logs_off + k * lane_bytes
//! ```

use arch::Media;
use pmalloc::checksum::crc32c_words;

/// Magic of the area header.
pub const AREA_MAGIC: u64 = u64::from_le_bytes(*b"PMRTLOG1");
/// Format version.
pub const AREA_VERSION: u32 = 1;
/// Offset of the lane tails from the area start.
pub const TAILS_OFF: usize = 4096;
/// Log line size.
pub const LINE: usize = 64;
/// Offset of the sequence reservation word from the area start.
pub const SEQ_OFF: usize = 32;
/// Sequence numbers reserved at a time: a session persists a new reservation once per
/// this many transactions (and once at open).
pub const SEQ_BLOCK: u64 = 1 << 32;

/// Where things are in the runtime area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// Pool offset of the area.
    pub off: usize,
    /// Area length.
    pub len: usize,
    /// Lanes.
    pub lanes: u32,
    /// Bytes per lane log (a multiple of 4096).
    pub lane_bytes: usize,
    /// Offset of lane 0's log from the area start.
    pub logs_off: usize,
}

/// Why an area cannot be laid out or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaError {
    /// Too small for the lanes asked for (at least 16 KiB of log per lane).
    TooSmall {
        /// Area length.
        len: usize,
    },
    /// Header magic, version, sizes or check wrong.
    BadHeader {
        /// Pool offset of the header.
        offset: u64,
    },
}

impl Area {
    /// Lays out `len` bytes at `off` for `lanes` lanes.
    pub fn compute(off: usize, len: usize, lanes: u32) -> Result<Area, AreaError> {
        if lanes == 0 || lanes > 256 {
            return Err(AreaError::TooSmall { len });
        }
        let logs_off = (TAILS_OFF + lanes as usize * LINE).next_multiple_of(4096);
        let lane_bytes = (len.saturating_sub(logs_off) / lanes as usize) / 4096 * 4096;
        if lane_bytes < 16 * 1024 {
            return Err(AreaError::TooSmall { len });
        }
        Ok(Area {
            off,
            len,
            lanes,
            lane_bytes,
            logs_off,
        })
    }

    /// Pool offset of lane `k`'s log.
    pub fn log_off(&self, k: u32) -> usize {
        self.off + self.logs_off + k as usize * self.lane_bytes
    }

    /// Pool offset of lane `k`'s tail word.
    pub fn tail_off(&self, k: u32) -> usize {
        self.off + TAILS_OFF + k as usize * LINE
    }

    fn header_words(&self, salt: u64) -> [u64; 4] {
        let w1 = u64::from(AREA_VERSION) | (u64::from(self.lanes) << 32);
        let w2 = self.lane_bytes as u64;
        [
            AREA_MAGIC,
            w1,
            w2,
            u64::from(crc32c_words(&[AREA_MAGIC, w1, w2, salt])),
        ]
    }

    /// Writes the header, zeroes every tail and every log, and makes it durable (a
    /// fresh area scans as empty). The whole of each log, not just its first line: a
    /// pool made again over an old one with the same UUID (so the same salt) would
    /// otherwise find the old pool's records, still valid, right after its own, and a
    /// scan would take them for its own transactions (an old commit record completing
    /// a new transaction's undo record, or replaying into the new pool). Sequence
    /// numbers below [`SEQ_BLOCK`] are reserved.
    pub fn format<M: Media>(&self, media: &M, salt: u64) {
        for k in 0..self.lanes {
            media.write_u64(self.tail_off(k), encode_tail(0, k, salt));
            media.flush(self.tail_off(k), 8);
        }
        // Fences the tails too.
        self.clear_logs(media);
        let w = self.header_words(salt);
        for (i, v) in w.iter().enumerate() {
            media.write_u64(self.off + i * 8, *v);
        }
        media.write_u64(self.off + SEQ_OFF, encode_seq_word(SEQ_BLOCK, salt));
        media.persist(self.off, SEQ_OFF + 8);
    }

    /// The persisted sequence reservation: every sequence number ever issued on this
    /// pool is below it. `None` if the word is damaged (or the area predates it).
    pub fn reserved_seq<M: Media>(&self, media: &M, salt: u64) -> Option<u64> {
        decode_seq_word(media.read_u64(self.off + SEQ_OFF), salt)
    }

    /// Persists `reserved` (a multiple of 2^16) as the sequence reservation (one fence).
    pub fn reserve_seq<M: Media>(&self, media: &M, salt: u64, reserved: u64) {
        media.write_u64(self.off + SEQ_OFF, encode_seq_word(reserved, salt));
        media.persist(self.off + SEQ_OFF, 8);
    }

    /// Zeroes every lane log and makes it durable: afterwards no old record, valid or
    /// not, is left for a later scan to run into. For the rare opens whose sequence
    /// reservation cannot be trusted (see `Pool::open`).
    pub fn clear_logs<M: Media>(&self, media: &M) {
        for k in 0..self.lanes {
            media.fill(self.log_off(k), self.lane_bytes, 0);
            media.flush(self.log_off(k), self.lane_bytes);
        }
        media.fence();
    }

    /// Reads and validates the header of the area at `off`, `len`.
    pub fn open<M: Media>(media: &M, off: usize, len: usize, salt: u64) -> Result<Area, AreaError> {
        let bad = AreaError::BadHeader { offset: off as u64 };
        let w: [u64; 4] = core::array::from_fn(|i| media.read_u64(off + i * 8));
        if w[0] != AREA_MAGIC || (w[1] & 0xFFFF_FFFF) as u32 != AREA_VERSION {
            return Err(bad);
        }
        let area = Area::compute(off, len, (w[1] >> 32) as u32).map_err(|_| bad)?;
        if area.lane_bytes as u64 != w[2] || area.header_words(salt) != w {
            return Err(bad);
        }
        Ok(area)
    }
}

/// A tail word: the byte position in the lane log (48 bits) and a 16-bit check bound to
/// the lane and pool, so a damaged word reads as "no tail" instead of a wild position.
pub fn encode_tail(pos: u64, lane: u32, salt: u64) -> u64 {
    let pos = pos & ((1 << 48) - 1);
    pos | (u64::from(crc32c_words(&[pos, u64::from(lane), salt]) as u16) << 48)
}

/// Decodes a tail word; `None` if its check fails.
pub fn decode_tail(w: u64, lane: u32, salt: u64) -> Option<u64> {
    let pos = w & ((1 << 48) - 1);
    (encode_tail(pos, lane, salt) == w).then_some(pos)
}

/// The sequence reservation word: `reserved >> 16` (48 bits; `reserved` is a multiple
/// of 2^16) and a 16-bit check bound to the pool, so a damaged word reads as unknown.
pub fn encode_seq_word(reserved: u64, salt: u64) -> u64 {
    let v = reserved >> 16;
    v | (u64::from(crc32c_words(&[v, 0x5345_5152, salt]) as u16) << 48)
}

/// Decodes a sequence reservation word; `None` if its check fails.
pub fn decode_seq_word(w: u64, salt: u64) -> Option<u64> {
    let v = w & ((1 << 48) - 1);
    (encode_seq_word(v << 16, salt) == w).then_some(v << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_fits() {
        let a = Area::compute(1 << 20, 4 << 20, 8).unwrap();
        assert_eq!(a.logs_off % 4096, 0);
        assert_eq!(a.lane_bytes % 4096, 0);
        assert!(a.logs_off + 8 * a.lane_bytes <= a.len);
        assert!(Area::compute(0, 64 * 1024, 16).is_err());
    }

    #[test]
    fn tail_words_bind_to_lane_and_pool() {
        let w = encode_tail(4096, 3, 77);
        assert_eq!(decode_tail(w, 3, 77), Some(4096));
        assert_eq!(decode_tail(w, 4, 77), None);
        assert_eq!(decode_tail(w ^ 1, 3, 77), None);
    }

    #[test]
    fn sequence_words_round_trip_and_reject_damage() {
        for r in [SEQ_BLOCK, 5 * SEQ_BLOCK, !0xFFFF] {
            let w = encode_seq_word(r, 9);
            assert_eq!(decode_seq_word(w, 9), Some(r));
            assert_eq!(decode_seq_word(w, 10), None, "other pool");
            for bit in 0..64 {
                assert_eq!(decode_seq_word(w ^ (1 << bit), 9), None, "bit {bit}");
            }
        }
        assert_eq!(
            decode_seq_word(0, 9),
            None,
            "an area formatted before the word"
        );
    }
}
