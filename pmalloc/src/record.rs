//! Op records: how an atomic allocation or free becomes durable with one fence.
//!
//! Each lane has two 64-byte record slots used in turn. An op writes its record (the
//! header the object gets, the destination word it publishes to, the chunk-table span
//! it changes) with non-temporal stores, flushes the *previous* op's home lines, and
//! fences once. Only then does it store the new header, chunk entries and destination word
//! (in the cache; the lane's next op flushes them). A torn record means the fence never
//! completed, so nothing was applied; a valid record is replayed by recovery.
//!
//! ```text
//! w0 seq (global, non-zero)
//! w1 kind (8) | flags (8) << 8 | gen_before (24) << 16 | container_gen (24) << 40
//! w2 object offset X              w3 destination offset D (0 = none)
//! w4 w5 header after the op       w6 chunk op (0 = none)
//! w7 check (32) = CRC-32C(w0..w6, lane index, pool salt) | 0 << 32
//! ```
//!
//! A record stays valid after its op completed (until its slot is reused), so replay
//! is guarded: the object's header must still be at `gen_before` or already at the
//! record's header, the destination's container object must still be at
//! `container_gen`, and the destination must still hold its old or new value.
//! Checkpoints flush every lane's homes and invalidate all records, which bounds how
//! long a record can stay valid (generations are 24 bits).

use crate::checksum::crc32c_words;
use crate::header::{bytes_to_words, words_to_bytes};

/// Record bytes.
pub const RECORD_BYTES: usize = 64;

/// What an op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Allocated X and published it into D.
    Alloc,
    /// Freed X and cleared D.
    Free,
}

/// Flag: D lies inside an object (the container), whose generation is recorded.
pub const R_CONTAINER: u8 = 1;

/// A decoded op record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Global sequence number (replay order).
    pub seq: u64,
    /// Alloc or free.
    pub kind: OpKind,
    /// `R_*` flags.
    pub flags: u8,
    /// The object's header generation before the op.
    pub gen_before: u32,
    /// The generation of D's container (when `R_CONTAINER`).
    pub container_gen: u32,
    /// Object data offset.
    pub obj: u64,
    /// Destination offset, 0 for none.
    pub dest: u64,
    /// The object's header words after the op.
    pub header: [u64; 2],
    /// The chunk op word (0 = none).
    pub chunk_op: u64,
}

/// Why a slot holds no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFault {
    /// Never written, or invalidated.
    Empty,
    /// Checksum mismatch (torn or damaged).
    BadCheck,
    /// Checksum fine but fields impossible.
    BadField,
}

impl Record {
    /// The slot bytes for lane `lane`.
    #[inline]
    pub fn encode(&self, lane: u32, salt: u64) -> [u8; RECORD_BYTES] {
        let kind = match self.kind {
            OpKind::Alloc => 1u64,
            OpKind::Free => 2,
        };
        let w = [
            self.seq,
            kind | (u64::from(self.flags) << 8)
                | (u64::from(self.gen_before) << 16)
                | (u64::from(self.container_gen) << 40),
            self.obj,
            self.dest,
            self.header[0],
            self.header[1],
            self.chunk_op,
        ];
        let check = check(&w, lane, salt);
        let mut b = [0u8; RECORD_BYTES];
        for (i, v) in w
            .iter()
            .chain(core::iter::once(&u64::from(check)))
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes lane `lane`'s slot bytes.
    pub fn decode(b: &[u8; RECORD_BYTES], lane: u32, salt: u64) -> Result<Record, RecordFault> {
        let mut w = [0u64; 8];
        for (i, v) in w.iter_mut().enumerate() {
            *v = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        }
        if w[0] == 0 && w[7] == 0 {
            return Err(RecordFault::Empty);
        }
        let body: [u64; 7] = w[..7].try_into().unwrap_or([0; 7]);
        if !seeded!(SkipRecordChecksum)
            && (w[7] >> 32 != 0 || w[7] as u32 != check(&body, lane, salt))
        {
            return Err(RecordFault::BadCheck);
        }
        let kind = match w[1] & 0xFF {
            1 => OpKind::Alloc,
            2 => OpKind::Free,
            _ => return Err(RecordFault::BadField),
        };
        let gen_before = ((w[1] >> 16) & 0xFF_FFFF) as u32;
        let container_gen = ((w[1] >> 40) & 0xFF_FFFF) as u32;
        if w[0] == 0 {
            return Err(RecordFault::BadField);
        }
        Ok(Record {
            seq: w[0],
            kind,
            flags: ((w[1] >> 8) & 0xFF) as u8,
            gen_before,
            container_gen,
            obj: w[2],
            dest: w[3],
            header: [w[4], w[5]],
            chunk_op: w[6],
        })
    }

    /// The header bytes after the op.
    pub fn header_bytes(&self) -> [u8; 16] {
        words_to_bytes(self.header)
    }

    /// Header words from bytes (for symmetry with `header_bytes`).
    pub fn header_from(b: &[u8; 16]) -> [u64; 2] {
        bytes_to_words(b)
    }
}

#[inline]
fn check(w: &[u64; 7], lane: u32, salt: u64) -> u32 {
    crc32c_words(&[
        w[0],
        w[1],
        w[2],
        w[3],
        w[4],
        w[5],
        w[6],
        u64::from(lane),
        salt,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            seq: 42,
            kind: OpKind::Alloc,
            flags: R_CONTAINER,
            gen_before: 7,
            container_gen: 0xAB_CDEF,
            obj: 0x10_0000,
            dest: 0x20_0008,
            header: [0x1111, 0x2222],
            chunk_op: 0,
        }
    }

    #[test]
    fn round_trips_per_lane() {
        let r = sample();
        let b = r.encode(3, 77);
        assert_eq!(Record::decode(&b, 3, 77), Ok(r));
        assert_eq!(
            Record::decode(&b, 4, 77),
            Err(RecordFault::BadCheck),
            "other lane"
        );
        assert_eq!(Record::decode(&[0; 64], 3, 77), Err(RecordFault::Empty));
    }

    #[test]
    fn any_torn_word_is_detected() {
        let a = sample().encode(0, 1);
        let mut other = sample();
        other.seq = 43;
        other.obj = 0x30_0000;
        let b = other.encode(0, 1);
        for w in 0..8 {
            let mut t = a;
            t[w * 8..w * 8 + 8].copy_from_slice(&b[w * 8..w * 8 + 8]);
            if t != a && t != b {
                assert!(Record::decode(&t, 0, 1).is_err(), "torn word {w} accepted");
            }
        }
    }
}
