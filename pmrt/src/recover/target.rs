//! What a replayed log group may write. A record's check says its bytes are the ones
//! written, not that they make sense: a damaged or forged record can pass it. So
//! recovery applies a group only where a real transaction could have written:
//!
//! * a data group (relative entries) only inside the object its key names, which must
//!   be allocated when the group is applied;
//! * a metadata group (absolute entries) only as the allocation metadata of its key:
//!   one header, valid for that object, at the object's header location (in its run's
//!   header array, or in its extent's chunk descriptor), plus, for an extent, the chunk
//!   entries of exactly its span, each valid for its chunk, over chunks that are free
//!   or already the extent's own; or, for the root slot, one pointer that is null or
//!   names an allocated object.
//!
//! Metadata groups are checked and applied one at a time in commit order, so each check
//! sees the metadata the log put there before it.

use alloc::vec::Vec;

use arch::Media;
use pmalloc::chunk::ChunkEntry;
use pmalloc::class::geometry;
use pmalloc::header::{HeaderState, ObjHeader, F_EXTENT, HEADER_BYTES};
use pmalloc::layout::{Layout, CHUNK, ROOT_SLOT};
use pmalloc::Heap;

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

/// Where `obj`'s header lives and how many bytes its slot or extent holds. For an
/// extent (a chunk-aligned `obj`), `span` is its length in chunks when known.
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
    let head = match entry(heap, c)? {
        ChunkEntry::Run { .. } => c,
        ChunkEntry::RunCont { head } => head as usize,
        _ => return None,
    };
    let ChunkEntry::Run { class, len } = entry(heap, head)? else {
        return None;
    };
    if c >= head + len as usize {
        return None;
    }
    let g = geometry(class as usize);
    let run_off = l.chunk_off(head) as u64;
    let rel = obj.checked_sub(run_off + g.data_off as u64)?;
    let idx = rel / g.slot as u64;
    (rel.is_multiple_of(g.slot as u64) && idx < g.nslots as u64).then_some((
        run_off + idx * HEADER_BYTES as u64,
        Some(g.slot as u64),
        false,
    ))
}

/// Whether a metadata group of `key` with these entries may be applied now.
pub(super) fn meta_group_ok<M: Media>(heap: &Heap<M>, key: u64, entries: &[Entry<'_>]) -> bool {
    if key == ROOT_SLOT as u64 {
        return match entries {
            [e] if e.off == key && e.data.len() == 8 => {
                let v = u64::from_le_bytes(e.data.try_into().unwrap_or([0xFF; 8]));
                v == 0 || heap.info(v).is_ok()
            }
            _ => false,
        };
    }
    let l = heap.layout();
    let (mut header, mut words) = (None, Vec::new());
    for e in entries {
        match e.data.len() {
            HEADER_BYTES if header.is_none() => header = Some(e),
            8 => {
                let Some(c) = desc_chunk(l, e.off) else {
                    return false;
                };
                let w = u64::from_le_bytes(e.data.try_into().unwrap_or([0xFF; 8]));
                let Ok(ce) = ChunkEntry::decode(w, c as u32, heap.salt()) else {
                    return false;
                };
                words.push((c, ce));
            }
            _ => return false,
        }
    }
    let Some(header) = header else {
        return false;
    };
    let Ok((span, alloc_form)) = extent_span(heap, key, &words) else {
        return false;
    };
    let Some((hdr_off, cap, extent)) = header_home(heap, key, span) else {
        return false;
    };
    // An extent's allocation or free always carries its chunk entries; a run slot's
    // never does (the heap makes a run's entries durable when it makes the run).
    if header.off != hdr_off || words.is_empty() == extent {
        return false;
    }
    let b: [u8; HEADER_BYTES] = header.data.try_into().unwrap_or([0xFF; HEADER_BYTES]);
    let HeaderState::Valid(h) = ObjHeader::decode_bytes(&b, key, heap.salt()) else {
        return false;
    };
    let fits = !h.allocated() || cap.is_some_and(|c| h.size <= c);
    (h.flags & F_EXTENT != 0) == extent && fits && alloc_form.is_none_or(|a| a == h.allocated())
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
) -> Result<(Option<u32>, Option<bool>), ()> {
    let l = heap.layout();
    let head = usize::try_from(key).ok().and_then(|k| l.chunk_of(k));
    let current = head.and_then(|h| match entry(heap, h) {
        Some(ChunkEntry::Extent { len }) if h + len as usize <= l.nchunks => Some(len),
        _ => None,
    });
    let Some(&(first, first_entry)) = words.first() else {
        return Ok((current, None));
    };
    let h = head.ok_or(())?;
    let n = words.len();
    if first != h || h + n > l.nchunks || words.iter().enumerate().any(|(i, (c, _))| *c != h + i) {
        return Err(());
    }
    let own_or_free = |c: usize| match entry(heap, c) {
        Some(ChunkEntry::Free) => true,
        Some(ChunkEntry::Extent { .. }) => c == h,
        Some(ChunkEntry::ExtentCont { head }) => head as usize == h,
        _ => false,
    };
    if !(h..h + n).all(own_or_free) {
        return Err(());
    }
    match first_entry {
        ChunkEntry::Extent { len } if len as usize == n => {
            let conts = words[1..]
                .iter()
                .all(|&(_, e)| e == ChunkEntry::ExtentCont { head: h as u32 });
            conts.then_some((Some(len), Some(true))).ok_or(())
        }
        ChunkEntry::Free => {
            let all_free = words.iter().all(|&(_, e)| e == ChunkEntry::Free);
            let whole = current.is_none_or(|len| len as usize == n);
            (all_free && whole)
                .then_some((current, Some(false)))
                .ok_or(())
        }
        _ => Err(()),
    }
}

/// The bytes a data group of `key` may write: the allocated object at `key`.
pub(super) fn object_bounds<M: Media>(heap: &Heap<M>, key: u64) -> Option<(u64, u64)> {
    let info = heap.info(key).ok()?;
    Some((key, key.checked_add(info.size)?))
}
