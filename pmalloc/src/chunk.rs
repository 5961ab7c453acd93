//! Chunk descriptors: 32 bytes per chunk.
//!
//! ```text
//! +0  entry word (u64, below)        +8  reserved (0)
//! +16 extent object header (16 B, used when the chunk heads an extent)
//! ```
//!
//! Entry word: `kind (3 bits) | class (8) << 3 | n (23) << 11 | check (16) << 48`.
//! The all-zero word is `Free` and carries no check. For heads `n` is the span length
//! in chunks, for continuations the head's index. `check` is the low 16 bits of
//! CRC-32C(chunk index, the low 48 bits, pool salt). Each entry is one aligned word, so
//! a crash never tears one.

use crate::checksum::crc32c_words;
use crate::class::NCLASSES;

const KIND_FREE: u64 = 0;
const KIND_RUN: u64 = 1;
const KIND_RUN_CONT: u64 = 2;
const KIND_EXT: u64 = 3;
const KIND_EXT_CONT: u64 = 4;
const N_MASK: u64 = (1 << 23) - 1;

/// What a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEntry {
    /// Unused.
    Free,
    /// First chunk of a run of `class` spanning `len` chunks.
    Run {
        /// Size-class index.
        class: u8,
        /// Chunks in the run.
        len: u32,
    },
    /// Later chunk of the run headed at `head`.
    RunCont {
        /// Head chunk index.
        head: u32,
    },
    /// First chunk of an extent spanning `len` chunks.
    Extent {
        /// Chunks in the extent.
        len: u32,
    },
    /// Later chunk of the extent headed at `head`.
    ExtentCont {
        /// Head chunk index.
        head: u32,
    },
}

/// An entry word that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEntry;

impl ChunkEntry {
    /// The entry word for chunk `idx`.
    pub fn encode(self, idx: u32, salt: u64) -> u64 {
        let (kind, class, n) = match self {
            ChunkEntry::Free => return 0,
            ChunkEntry::Run { class, len } => (KIND_RUN, u64::from(class), u64::from(len)),
            ChunkEntry::RunCont { head } => (KIND_RUN_CONT, 0, u64::from(head)),
            ChunkEntry::Extent { len } => (KIND_EXT, 0, u64::from(len)),
            ChunkEntry::ExtentCont { head } => (KIND_EXT_CONT, 0, u64::from(head)),
        };
        let low = kind | (class << 3) | ((n & N_MASK) << 11);
        low | (u64::from(check(idx, low, salt)) << 48)
    }

    /// Decodes chunk `idx`'s entry word (structure only; spans are checked by the
    /// table walk).
    pub fn decode(word: u64, idx: u32, salt: u64) -> Result<ChunkEntry, BadEntry> {
        if word == 0 {
            return Ok(ChunkEntry::Free);
        }
        let low = word & ((1 << 48) - 1);
        if (word >> 48) as u16 != check(idx, low, salt) || low >> 34 != 0 {
            return Err(BadEntry);
        }
        let class = ((low >> 3) & 0xFF) as u8;
        let n = ((low >> 11) & N_MASK) as u32;
        let e = match low & 7 {
            KIND_RUN if (class as usize) < NCLASSES && n >= 1 => ChunkEntry::Run { class, len: n },
            KIND_RUN_CONT if class == 0 && n < idx => ChunkEntry::RunCont { head: n },
            KIND_EXT if class == 0 && n >= 1 => ChunkEntry::Extent { len: n },
            KIND_EXT_CONT if class == 0 && n < idx => ChunkEntry::ExtentCont { head: n },
            _ => return Err(BadEntry),
        };
        Ok(e)
    }
}

fn check(idx: u32, low: u64, salt: u64) -> u16 {
    crc32c_words(&[u64::from(idx), low, salt]) as u16
}

/// A change of a span of chunk entries, as carried by an op record:
/// `start (23 bits) | count (23) << 23 | kind (3) << 46 | class (8) << 49`; 0 = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOp {
    /// First chunk.
    pub start: u32,
    /// Chunks in the span.
    pub count: u32,
    /// What the span becomes.
    pub to: SpanKind,
}

/// What a span of chunks becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Free chunks.
    Free,
    /// A run of a class.
    Run(u8),
    /// An extent.
    Extent,
}

impl ChunkOp {
    /// The packed word (never 0: count is at least 1).
    pub fn encode(self) -> u64 {
        let (kind, class) = match self.to {
            SpanKind::Free => (KIND_FREE, 0),
            SpanKind::Run(c) => (KIND_RUN, u64::from(c)),
            SpanKind::Extent => (KIND_EXT, 0),
        };
        u64::from(self.start) | (u64::from(self.count) << 23) | (kind << 46) | (class << 49)
    }

    /// Unpacks; `Ok(None)` for 0, `Err` for a word no op encodes or a span outside
    /// `nchunks`.
    pub fn decode(w: u64, nchunks: usize) -> Result<Option<ChunkOp>, BadEntry> {
        if w == 0 {
            return Ok(None);
        }
        let start = (w & N_MASK) as u32;
        let count = ((w >> 23) & N_MASK) as u32;
        let class = ((w >> 49) & 0xFF) as u8;
        if w >> 57 != 0 || count == 0 || start as usize + count as usize > nchunks {
            return Err(BadEntry);
        }
        let to = match (w >> 46) & 7 {
            KIND_FREE if class == 0 => SpanKind::Free,
            KIND_RUN if (class as usize) < NCLASSES => SpanKind::Run(class),
            KIND_EXT if class == 0 => SpanKind::Extent,
            _ => return Err(BadEntry),
        };
        Ok(Some(ChunkOp { start, count, to }))
    }

    /// The entry chunk `start + i` gets.
    pub fn entry(&self, i: u32) -> ChunkEntry {
        match (self.to, i) {
            (SpanKind::Free, _) => ChunkEntry::Free,
            (SpanKind::Run(class), 0) => ChunkEntry::Run {
                class,
                len: self.count,
            },
            (SpanKind::Run(_), _) => ChunkEntry::RunCont { head: self.start },
            (SpanKind::Extent, 0) => ChunkEntry::Extent { len: self.count },
            (SpanKind::Extent, _) => ChunkEntry::ExtentCont { head: self.start },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bind_to_their_index() {
        let s = 99;
        for (idx, e) in [
            (5, ChunkEntry::Free),
            (5, ChunkEntry::Run { class: 7, len: 2 }),
            (6, ChunkEntry::RunCont { head: 5 }),
            (9, ChunkEntry::Extent { len: 300 }),
            (10, ChunkEntry::ExtentCont { head: 9 }),
        ] {
            let w = e.encode(idx, s);
            assert_eq!(ChunkEntry::decode(w, idx, s), Ok(e));
            if e != ChunkEntry::Free {
                assert_eq!(ChunkEntry::decode(w, idx + 1, s), Err(BadEntry));
            }
        }
        // A continuation must point backwards.
        let w = ChunkEntry::RunCont { head: 8 }.encode(8, s);
        assert_eq!(ChunkEntry::decode(w, 8, s), Err(BadEntry));
    }

    #[test]
    fn ops_round_trip_and_reject_out_of_range_spans() {
        let op = ChunkOp {
            start: 3,
            count: 4,
            to: SpanKind::Run(11),
        };
        assert_eq!(ChunkOp::decode(op.encode(), 8), Ok(Some(op)));
        assert_eq!(ChunkOp::decode(op.encode(), 6), Err(BadEntry));
        assert_eq!(ChunkOp::decode(0, 6), Ok(None));
        assert_eq!(op.entry(0), ChunkEntry::Run { class: 11, len: 4 });
        assert_eq!(op.entry(2), ChunkEntry::RunCont { head: 3 });
    }
}
