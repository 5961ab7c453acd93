//! What a replayed metadata group may write. A record's check says its bytes are the
//! ones written, not that they make sense: a damaged or forged record can pass it. So
//! recovery applies a metadata group (absolute entries) only as the allocation
//! metadata of its key, as a transaction logs it (`tx.rs`, `build_redo`):
//!
//! * for an object key: one header, valid for that object, at the object's header
//!   location (in its run's header array, or in its extent's chunk descriptor), plus,
//!   for an extent, the chunk entries of exactly its span, each valid for its chunk,
//!   over chunks that are free or already the extent's own;
//! * for the root slot: one pointer that is null or names an allocated object.
//!
//! Metadata groups are checked and applied one at a time in commit order, reading the
//! chunk table and headers on media, so each check sees the metadata the log put there
//! before it. (Data groups are checked in `recover.rs`: inside their allocated object.)

use alloc::vec::Vec;

use arch::Media;
use pmalloc::chunk::ChunkEntry;
use pmalloc::header::{HeaderState, ObjHeader, F_EXTENT, HEADER_BYTES};
use pmalloc::layout::{Layout, CHUNK, ROOT_SLOT};
use pmalloc::Heap;

use super::LogFault;
use crate::record::Entry;

/// The chunk entry of chunk `c`, if its word is valid.
fn entry<M: Media>(heap: &Heap<M>, c: usize) -> Option<ChunkEntry> {
    let l = heap.layout();
    ChunkEntry::decode(heap.media().read_u64(l.desc_off(c)), c as u32, heap.salt()).ok()
}

/// The chunk whose entry word lives at pool offset `off`.
fn desc_chunk(l: &Layout, off: u64) -> Option<usize> {
    let rel = usize::try_from(off).ok()?.checked_sub(l.chunks_off)?;
    let c = rel / 32;
    (rel.is_multiple_of(32) && c < l.nchunks).then_some(c)
}

fn le_u64(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.try_into().ok()?))
}

/// Where `obj`'s header lives, how many bytes its slot or extent may hold (unknown for
/// an extent whose span is not known), and whether it is an extent. An extent (a
/// chunk-aligned `obj`) need not exist yet: the group may be what allocates it, and
/// `span` (its length in chunks, from the group's words or the table) sizes it.
fn header_home<M: Media>(
    heap: &Heap<M>,
    obj: u64,
    span: Option<u32>,
) -> Option<(u64, Option<u64>, bool)> {
    let l = heap.layout();
    let c = l.chunk_of(usize::try_from(obj).ok()?)?;
    if obj == l.chunk_off(c) as u64 {
        let cap = span.map(|n| u64::from(n) * CHUNK as u64);
        return Some(((l.desc_off(c) + 16) as u64, cap, true));
    }
    // A run slot: its run exists on media (the heap makes a run's chunk entries
    // durable itself, when it makes the run).
    let s = heap.slot_on_media(obj).filter(|s| !s.extent)?;
    Some((s.hdr_off, Some(s.capacity), false))
}

/// Checks a metadata group of `key` with these entries against the metadata on media
/// now: `Ok` if it may be applied.
pub(super) fn check_meta<M: Media>(
    heap: &Heap<M>,
    key: u64,
    entries: &[Entry<'_>],
) -> Result<(), LogFault> {
    if key == ROOT_SLOT as u64 {
        return match entries {
            [e] if e.off == key && e.data.len() == 8 => {
                let v = le_u64(e.data).unwrap_or(u64::MAX);
                if v == 0 || heap.info_on_media(v).is_ok() {
                    Ok(())
                } else {
                    Err(LogFault::BadRoot { value: v })
                }
            }
            _ => Err(LogFault::MetaShape {
                offset: entries.first().map_or(key, |e| e.off),
            }),
        };
    }
    let l = heap.layout();
    let (mut header, mut words) = (None, Vec::new());
    for e in entries {
        let shape = LogFault::MetaShape { offset: e.off };
        match e.data.len() {
            HEADER_BYTES if header.is_none() => header = Some(e),
            8 => {
                let c = desc_chunk(l, e.off).ok_or(shape)?;
                let w = le_u64(e.data).ok_or(shape)?;
                let ce = ChunkEntry::decode(w, c as u32, heap.salt()).map_err(|_| shape)?;
                words.push((c, ce));
            }
            _ => return Err(shape),
        }
    }
    let header = header.ok_or(LogFault::MetaShape { offset: key })?;
    let placement = LogFault::MetaPlacement { offset: header.off };
    let (span, alloc_form) = extent_span(heap, key, &words)?;
    let (hdr_off, cap, extent) = header_home(heap, key, span).ok_or(placement)?;
    // An extent's allocation or free always carries its chunk entries; a run slot's
    // never does.
    if header.off != hdr_off || words.is_empty() == extent {
        return Err(placement);
    }
    let bad_header = LogFault::MetaHeader { offset: header.off };
    let b: [u8; HEADER_BYTES] = header.data.try_into().map_err(|_| bad_header)?;
    let HeaderState::Valid(h) = ObjHeader::decode_bytes(&b, key, heap.salt()) else {
        return Err(bad_header);
    };
    // A free header keeps its object's size (the heap checks it against the slot too);
    // only a freed extent whose span is gone from the table has no capacity to check.
    let fits = cap.map_or(!h.allocated(), |c| h.size <= c);
    let kind = (h.flags & F_EXTENT != 0) == extent;
    if fits && kind && alloc_form.is_none_or(|a| a == h.allocated()) {
        Ok(())
    } else {
        Err(bad_header)
    }
}

/// Checks an extent group's chunk words: consecutive chunks from `key`'s chunk, either
/// `Extent { len }` then `ExtentCont`s (an allocation) or all `Free` (a free of the
/// whole extent), over chunks that are free or the extent's own (a write-back that
/// reached media only in part leaves some of each). Returns the span length the header
/// may use (from the words, else from the table) and whether the words allocate (None
/// without words).
fn extent_span<M: Media>(
    heap: &Heap<M>,
    key: u64,
    words: &[(usize, ChunkEntry)],
) -> Result<(Option<u32>, Option<bool>), LogFault> {
    let l = heap.layout();
    let head = usize::try_from(key).ok().and_then(|k| l.chunk_of(k));
    let current = head.and_then(|h| match entry(heap, h) {
        Some(ChunkEntry::Extent { len }) if h + len as usize <= l.nchunks => Some(len),
        _ => None,
    });
    let Some(&(first, first_entry)) = words.first() else {
        return Ok((current, None));
    };
    let bad = LogFault::MetaPlacement {
        offset: l.desc_off(first) as u64,
    };
    let h = head.ok_or(bad)?;
    let n = words.len();
    if first != h || h + n > l.nchunks || words.iter().enumerate().any(|(i, (c, _))| *c != h + i) {
        return Err(bad);
    }
    let own_or_free = |c: usize| match entry(heap, c) {
        Some(ChunkEntry::Free) => true,
        Some(ChunkEntry::Extent { .. }) => c == h,
        Some(ChunkEntry::ExtentCont { head }) => head as usize == h,
        _ => false,
    };
    if !(h..h + n).all(own_or_free) {
        return Err(bad);
    }
    match first_entry {
        ChunkEntry::Extent { len } if len as usize == n => {
            let conts = words[1..]
                .iter()
                .all(|&(_, e)| e == ChunkEntry::ExtentCont { head: h as u32 });
            conts.then_some((Some(len), Some(true))).ok_or(bad)
        }
        ChunkEntry::Free => {
            let all_free = words.iter().all(|&(_, e)| e == ChunkEntry::Free);
            let whole = current.is_none_or(|len| len as usize == n);
            (all_free && whole)
                .then_some((current, Some(false)))
                .ok_or(bad)
        }
        _ => Err(bad),
    }
}
