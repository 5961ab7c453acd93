//! Recovery: replay of the op records a crash left, then the chunk-table index.
//!
//! Every record that decodes is replayed in sequence order, each under guards that make
//! a stale record (its op long completed, its slot not reused yet) a no-op:
//! * per object, the live records in sequence order form segments of unbroken chains
//!   (each record's header generation is the next one's `gen_before`); a break means an
//!   op whose record is gone (so whose effects are durable) came between, so every
//!   segment but the last is superseded and skipped. The last segment is *current*
//!   when the object's header is at any point of it (its first `gen_before`, or any of
//!   its records' generations), or is torn (only one of its ops can have torn it, in
//!   the workload or in an interrupted recovery); otherwise it was superseded too;
//! * the destination's container object still has `container_gen`;
//! * the destination holds its old or new value.
//!
//! Replay writes homes, flushes them, fences once, then checkpoints (invalidating all
//! records). A crash anywhere in here leaves records that replay to the same result:
//! recovery is idempotent.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use arch::Media;

use crate::chunk::{ChunkEntry, ChunkOp, SpanKind};
use crate::class::GEOMETRY;
use crate::header::{HeaderState, ObjHeader};
use crate::heap::{Heap, Home, Loc, OpenReport, Span};
use crate::layout::{CHUNK, ROOT_SLOT};
use crate::record::{OpKind, Record, RecordFault, RECORD_BYTES, R_CONTAINER};

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
        let plan = self.plan(&recs);
        let mut touched: Vec<(usize, usize)> = Vec::new();
        for (r, step) in recs.iter().zip(plan) {
            match step {
                Some(loc) => {
                    self.replay(r, &loc, &mut touched);
                    report.replayed += 1;
                }
                None if self.decodes(r) => report.stale += 1,
                None => report.torn += 1,
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

    fn decodes(&self, r: &Record) -> bool {
        ChunkOp::decode(r.chunk_op, self.layout.nchunks).is_ok()
            && matches!(ObjHeader::decode(r.header, r.obj, self.salt), HeaderState::Valid(h) if h.allocated() == (r.kind == OpKind::Alloc))
    }

    /// Decides, before writing anything, which records are current and where their
    /// objects' headers are (module docs). Records are visited in sequence order; each
    /// object's chain is judged at its first record, when the chunk ops of every
    /// earlier current record are known (they may create the run the object lives in
    /// and not be durable yet).
    fn plan(&self, recs: &[Record]) -> Vec<Option<Loc>> {
        let gen_of = |r: &Record| (r.header[1] & 0xFF_FFFF) as u32;
        let mut by_obj: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, r) in recs.iter().enumerate() {
            if self.decodes(r) {
                by_obj.entry(r.obj).or_default().push(i);
            }
        }
        let mut plan: Vec<Option<Loc>> = alloc::vec![None; recs.len()];
        let mut overlay: BTreeMap<usize, Option<Span>> = BTreeMap::new();
        for (i, r) in recs.iter().enumerate() {
            let Some(chain) = by_obj.get(&r.obj) else {
                continue;
            };
            if chain[0] == i {
                // The last unbroken segment of the chain.
                let mut start = 0;
                for k in 1..chain.len() {
                    if gen_of(&recs[chain[k - 1]]) != recs[chain[k]].gen_before {
                        start = k;
                    }
                }
                let seg = &chain[start..];
                let loc = seg
                    .iter()
                    .find_map(|&k| self.replay_loc(&recs[k], &overlay));
                if let Some(loc) = loc {
                    let points = || {
                        core::iter::once(recs[seg[0]].gen_before)
                            .chain(seg.iter().map(|&k| gen_of(&recs[k])))
                    };
                    let current = match self.read_header(&loc) {
                        HeaderState::Valid(h) => points().any(|g| g == h.gen),
                        HeaderState::Zero => recs[seg[0]].gen_before == 0,
                        HeaderState::Invalid => true,
                    };
                    #[cfg(feature = "seeded-bugs")]
                    let current = current
                        || crate::seeded_bug::on(crate::seeded_bug::Bug::IgnoreReplayGuards);
                    if current {
                        for &k in seg {
                            if self.dest_valid(&recs[k]) {
                                plan[k] = Some(loc);
                            }
                        }
                    }
                }
            }
            if plan[i].is_some() {
                if let Ok(Some(op)) = ChunkOp::decode(r.chunk_op, self.layout.nchunks) {
                    for k in 0..op.count {
                        let span = match op.to {
                            SpanKind::Free => None,
                            SpanKind::Run(class) => Some(Span::Run {
                                head: op.start,
                                class,
                                len: op.count,
                            }),
                            SpanKind::Extent => Some(Span::Extent {
                                head: op.start,
                                len: op.count,
                            }),
                        };
                        overlay.insert((op.start + k) as usize, span);
                    }
                }
            }
        }
        plan
    }

    /// Where the record's object header lives: from the record's own chunk op, else
    /// from the chunk ops of earlier current records (`overlay`), else the table.
    fn replay_loc(&self, r: &Record, overlay: &BTreeMap<usize, Option<Span>>) -> Option<Loc> {
        let op = ChunkOp::decode(r.chunk_op, self.layout.nchunks).ok()?;
        let HeaderState::Valid(h) = ObjHeader::decode(r.header, r.obj, self.salt) else {
            return None;
        };
        let obj = usize::try_from(r.obj).ok()?;
        let c = self.layout.chunk_of(obj)?;
        let span = match op {
            Some(ChunkOp {
                start,
                count,
                to: SpanKind::Run(class),
            }) => Some(Span::Run {
                head: start,
                class,
                len: count,
            }),
            Some(ChunkOp {
                start,
                count,
                to: SpanKind::Extent | SpanKind::Free,
            }) => Some(Span::Extent {
                head: start,
                len: count,
            }),
            None => match overlay.get(&c) {
                Some(s) => *s,
                None => self.span_of(c),
            },
        }?;
        match span {
            Span::Extent { head, len } if h.extent() => {
                if head as usize != c
                    || self.layout.chunk_off(c) != obj
                    || h.size > u64::from(len) * CHUNK as u64
                {
                    return None;
                }
                Some(Loc {
                    obj: r.obj,
                    hdr_off: self.layout.desc_off(c) + 16,
                    home: Home::Extent { head, len },
                    capacity: u64::from(len) * CHUNK as u64,
                })
            }
            Span::Run { head, class, len } if !h.extent() => {
                let g = &GEOMETRY[class as usize];
                if c < head as usize || c >= (head + len) as usize || g.chunks != len as usize {
                    return None;
                }
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
            _ => None,
        }
    }

    /// The destination word is aligned, in range, and of the kind the flags say.
    fn dest_valid(&self, r: &Record) -> bool {
        let root = r.dest == ROOT_SLOT as u64;
        r.dest == 0
            || (r.dest.is_multiple_of(8)
                && root == (r.flags & R_CONTAINER == 0)
                && (root
                    || self.slot_containing(r.dest).is_some()
                    || usize::try_from(r.dest).is_ok_and(|d| self.layout.chunk_of(d).is_some())))
    }

    fn replay(&self, r: &Record, loc: &Loc, touched: &mut Vec<(usize, usize)>) {
        // Chunk entries and header: idempotent stores. The destination only if it
        // still belongs to the op.
        let mut rec = *r;
        #[cfg(feature = "seeded-bugs")]
        let guard = !crate::seeded_bug::on(crate::seeded_bug::Bug::IgnoreReplayGuards);
        #[cfg(not(feature = "seeded-bugs"))]
        let guard = true;
        if guard && rec.dest != 0 && !self.dest_current(&rec) {
            rec.dest = 0;
        }
        touched.extend(self.apply(&rec, loc.hdr_off));
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
                // Orphaned continuations (no head claims them) are free, as in `walk`.
                Ok(
                    ChunkEntry::Free | ChunkEntry::RunCont { .. } | ChunkEntry::ExtentCont { .. },
                ) => {
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
