//! The chunk-free intent: how a checkpoint frees multi-chunk runs crash-atomically.
//!
//! A run of one chunk is freed by one aligned word (its chunk entry becomes 0). A run
//! of several chunks needs several entry words, and a crash between them would leave a
//! head without its continuations (or the reverse), which open would have to treat as
//! damage. So before writing those words the checkpoint makes this line durable, naming
//! every span it is about to free; open completes a valid intent before anything else
//! and then clears it.
//!
//! ```text
//! line at layout::INTENT_OFF (64 B, in the header page after the pool state line)
//! w0..w6  chunk ops (the `ChunkOp` word of a span becoming free; 0 = unused)
//! w7      check (32) = CRC-32C(w0..w6, pool salt) | INTENT_MAGIC (32) << 32
//! ```
//!
//! All zero means no intent. An intent is written only when every op record is invalid
//! (durably zero), and it is cleared (durably) before the checkpoint returns, so no op
//! can reuse the chunks while it is valid; a torn intent means its fence never
//! completed, so none of its entries were written, and it is ignored.

use crate::checksum::crc32c_words;
use crate::chunk::{BadEntry, ChunkOp, SpanKind};

/// Spans one intent can name.
pub const INTENT_SPANS: usize = 7;
/// The high half of the check word.
pub const INTENT_MAGIC: u32 = 0x4652_4545; // "FREE"

/// What the intent line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Nothing (all zero).
    None,
    /// Valid: these spans are being freed.
    Free(heapless::Vec<ChunkOp, INTENT_SPANS>),
    /// Not zero and not valid: torn (a crash before its fence) or damaged.
    Invalid,
}

/// The eight words of an intent naming `spans` (at most [`INTENT_SPANS`], each a span
/// becoming free).
pub fn encode(spans: &[ChunkOp], salt: u64) -> [u64; 8] {
    debug_assert!(spans.len() <= INTENT_SPANS);
    debug_assert!(spans.iter().all(|s| s.to == SpanKind::Free));
    let mut w = [0u64; 8];
    for (slot, op) in w.iter_mut().zip(spans) {
        *slot = op.encode();
    }
    w[7] = u64::from(check(&w, salt)) | (u64::from(INTENT_MAGIC) << 32);
    w
}

/// Decodes the intent line of a pool with `nchunks` chunks.
pub fn decode(w: &[u64; 8], nchunks: usize, salt: u64) -> Intent {
    if w.iter().all(|&x| x == 0) {
        return Intent::None;
    }
    if (w[7] >> 32) as u32 != INTENT_MAGIC || w[7] as u32 != check(w, salt) {
        return Intent::Invalid;
    }
    let mut spans = heapless::Vec::new();
    for &op in &w[..INTENT_SPANS] {
        match ChunkOp::decode(op, nchunks) {
            Ok(None) => {}
            Ok(Some(op)) if op.to == SpanKind::Free => {
                let _ = spans.push(op);
            }
            Ok(Some(_)) | Err(BadEntry) => return Intent::Invalid,
        }
    }
    Intent::Free(spans)
}

fn check(w: &[u64; 8], salt: u64) -> u32 {
    crc32c_words(&[w[0], w[1], w[2], w[3], w[4], w[5], w[6], salt])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u32, count: u32) -> ChunkOp {
        ChunkOp {
            start,
            count,
            to: SpanKind::Free,
        }
    }

    #[test]
    fn round_trips_and_binds_to_the_pool() {
        let spans = [span(3, 2), span(10, 4)];
        let w = encode(&spans, 77);
        match decode(&w, 100, 77) {
            Intent::Free(v) => assert_eq!(&v[..], &spans),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(&w, 100, 78), Intent::Invalid, "other pool");
        assert_eq!(decode(&w, 12, 77), Intent::Invalid, "span out of range");
        assert_eq!(decode(&[0; 8], 100, 77), Intent::None);
    }

    #[test]
    fn any_torn_word_is_invalid() {
        let a = encode(&[span(3, 2)], 5);
        let b = encode(&[span(20, 3), span(40, 2)], 5);
        for i in 0..8 {
            let mut t = a;
            t[i] = b[i];
            if t != a && t != b {
                assert_eq!(decode(&t, 100, 5), Intent::Invalid, "word {i}");
            }
        }
    }
}
