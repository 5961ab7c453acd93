//! Recovery: replay of the op records a crash left, then the chunk-table index.
//!
//! Every record that decodes is replayed in sequence order, each under guards that make
//! a stale record (its op long completed, its slot not reused yet) a no-op:
//! * the object's header is at the record's `gen_before` (op not applied), or equals
//!   the record's header (applied), or is torn; any other generation means a later op
//!   changed the object, so the record is skipped;
//! * the destination's container object still has `container_gen`;
//! * the destination holds its old or new value.
//!
//! Replay writes homes, flushes them, fences once, then checkpoints (invalidating all
//! records). A crash anywhere in here leaves records that replay to the same result:
//! recovery is idempotent.

use alloc::vec::Vec;

use arch::Media;

use crate::chunk::{ChunkEntry, ChunkOp, SpanKind};
use crate::class::GEOMETRY;
use crate::header::{HeaderState, ObjHeader, HEADER_BYTES};
use crate::heap::{Heap, Home, Loc, OpenReport, Span};
use crate::layout::{CHUNK, ROOT_SLOT};
use crate::record::{OpKind, Record, RecordFault, RECORD_BYTES, R_CONTAINER};

/// What replaying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Applied,
    Stale,
    Invalid,
}

impl<M: Media> Heap<M> {
    pub(crate) fn recover(&self, report: &mut OpenReport) {
        let mut recs: Vec<Record> = Vec::new();
        for lane in 0..self.layout.nlanes {
            for slot in 0..2 {
                let mut b = [0u8; RECORD_BYTES];
                self.media.read(self.layout.record_off(lane, slot), &mut b);
                match Record::decode(&b, lane, self.salt) {
                    Ok(r) => recs.push(r),
                    Err(RecordFault::Empty) => {}
                    Err(RecordFault::BadCheck | RecordFault::BadField) => report.torn += 1,
                }
            }
        }
        if recs.is_empty() {
            return;
        }
        recs.sort_by_key(|r| r.seq);
        let mut touched: Vec<(usize, usize)> = Vec::new();
        for r in &recs {
            match self.replay(r, &mut touched) {
                Replay::Applied => report.replayed += 1,
                Replay::Stale => report.stale += 1,
                Replay::Invalid => report.torn += 1,
            }
        }
        for (o, l) in &touched {
            self.media.flush(*o, *l);
        }
        self.media.fence();
        self.media.crash_point("pmalloc.recover.replayed");
        // Invalidate every record slot that held anything (valid or torn).
        for lane in 0..self.layout.nlanes {
            for slot in 0..2 {
                let off = self.layout.record_off(lane, slot);
                if self.media.read_u64(off) != 0 || self.media.read_u64(off + 56) != 0 {
                    self.media.fill(off, RECORD_BYTES, 0);
                    self.media.flush(off, RECORD_BYTES);
                }
            }
        }
        self.media.fence();
    }

    /// Where the record's object header lives, validated against the record's own
    /// chunk op (if any) or the current chunk table.
    fn replay_loc(&self, r: &Record, op: Option<ChunkOp>, h: &ObjHeader) -> Option<Loc> {
        let obj = usize::try_from(r.obj).ok()?;
        let c = self.layout.chunk_of(obj)?;
        if h.extent() {
            let len = match op {
                Some(ChunkOp {
                    start,
                    count,
                    to: SpanKind::Extent | SpanKind::Free,
                }) if start as usize == c => count,
                Some(_) => return None,
                None => match self.span_of(c)? {
                    Span::Extent { head, len } if head as usize == c => len,
                    _ => return None,
                },
            };
            if self.layout.chunk_off(c) != obj || h.size > u64::from(len) * CHUNK as u64 {
                return None;
            }
            return Some(Loc {
                obj: r.obj,
                hdr_off: self.layout.desc_off(c) + 16,
                home: Home::Extent {
                    head: c as u32,
                    len,
                },
                capacity: u64::from(len) * CHUNK as u64,
            });
        }
        let (head, class) = match op {
            Some(ChunkOp {
                start,
                count,
                to: SpanKind::Run(class),
            }) => {
                if c < start as usize
                    || c >= (start + count) as usize
                    || GEOMETRY[class as usize].chunks != count as usize
                {
                    return None;
                }
                (start, class)
            }
            Some(_) => return None,
            None => match self.span_of(c)? {
                Span::Run { head, class, .. } => (head, class),
                Span::Extent { .. } => return None,
            },
        };
        let g = &GEOMETRY[class as usize];
        let data = self.layout.chunk_off(head as usize) + g.data_off;
        if obj < data
            || !(obj - data).is_multiple_of(g.slot)
            || (obj - data) / g.slot >= g.nslots
            || h.size > g.slot as u64
        {
            return None;
        }
        Some(self.slot_loc(head, class, (obj - data) / g.slot))
    }

    fn replay(&self, r: &Record, touched: &mut Vec<(usize, usize)>) -> Replay {
        let Ok(op) = ChunkOp::decode(r.chunk_op, self.layout.nchunks) else {
            return Replay::Invalid;
        };
        let HeaderState::Valid(after) = ObjHeader::decode(r.header, r.obj, self.salt) else {
            return Replay::Invalid;
        };
        if after.allocated() != (r.kind == OpKind::Alloc) {
            return Replay::Invalid;
        }
        let Some(loc) = self.replay_loc(r, op, &after) else {
            return Replay::Invalid;
        };
        let dest_ok = r.dest == 0
            || (r.dest.is_multiple_of(8)
                && (r.dest == ROOT_SLOT as u64) == (r.flags & R_CONTAINER == 0)
                && (r.dest == ROOT_SLOT as u64 || self.slot_containing(r.dest).is_some()));
        if !dest_ok {
            return Replay::Invalid;
        }
        let mut hb = [0u8; HEADER_BYTES];
        self.media.read(loc.hdr_off, &mut hb);
        let cur = ObjHeader::decode_bytes(&hb, loc.obj, self.salt);
        let applied = crate::header::bytes_to_words(&hb) == r.header;
        let current = match cur {
            HeaderState::Valid(h) => h.gen == r.gen_before,
            HeaderState::Zero => r.gen_before == 0,
            // Torn by the crash (this record's homes were being stored): replay.
            HeaderState::Invalid => true,
        };
        if !applied && !current {
            return Replay::Stale;
        }
        // Chunk entries and header: idempotent stores.
        let mut rec = *r;
        let dest_current = rec.dest != 0 && self.dest_current(&rec);
        if !dest_current {
            rec.dest = 0;
        }
        for range in self.apply(&rec, loc.hdr_off) {
            touched.push(range);
        }
        Replay::Applied
    }

    /// Whether the record's destination still belongs to the op: its container (if any)
    /// is the same object generation, and it holds the old or the new value.
    fn dest_current(&self, r: &Record) -> bool {
        if r.flags & R_CONTAINER != 0 {
            let Some(cloc) = self.slot_containing(r.dest) else {
                return false;
            };
            match self.read_header(&cloc) {
                HeaderState::Valid(h)
                    if h.allocated()
                        && h.gen == r.container_gen
                        && r.dest + 8 <= cloc.obj + h.size => {}
                _ => return false,
            }
        }
        let v = self.media.read_u64(r.dest as usize);
        v == 0 || v == r.obj
    }

    /// Walks the chunk table once: free spans into `space`, runs into their class
    /// queues, anything inconsistent into the damage list (and out of use).
    pub(crate) fn index_chunks(&self, report: &mut OpenReport) {
        let mut space = self.space.lock();
        let n = self.layout.nchunks;
        let mut c = 0;
        let mut free_start = None;
        while c < n {
            let entry = self.entry(c);
            let span = match entry {
                Ok(ChunkEntry::Free) => {
                    free_start.get_or_insert(c);
                    c += 1;
                    continue;
                }
                Ok(ChunkEntry::Run { .. } | ChunkEntry::Extent { .. }) => self.span_of(c),
                _ => None,
            };
            if let Some(s) = free_start.take() {
                space.give(s as u32, (c - s) as u32);
            }
            let len = match span {
                Some(Span::Run { head, class, len }) if self.conts_ok(c, len, true) => {
                    self.queues[class as usize].lock().push(head);
                    len as usize
                }
                Some(Span::Extent { len, .. }) if self.conts_ok(c, len, false) => len as usize,
                _ => {
                    self.note_damage("chunk descriptor", self.layout.desc_off(c) as u64);
                    1
                }
            };
            c += len;
        }
        if let Some(s) = free_start {
            space.give(s as u32, (n - s) as u32);
        }
        drop(space);
        // Mark queued runs as queued (they have no state yet; loading happens on use).
        let _ = report;
    }

    fn conts_ok(&self, head: usize, len: u32, run: bool) -> bool {
        (1..len as usize).all(|i| {
            let want = if run {
                ChunkEntry::RunCont { head: head as u32 }
            } else {
                ChunkEntry::ExtentCont { head: head as u32 }
            };
            self.entry(head + i) == Ok(want)
        })
    }
}
