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
//! * the destination holds its old or new value;
//! * per chunk of the record's chunk op: the chunk is still in the state the op found
//!   it in or already in the one it leaves (for an extent's free: still that extent or
//!   free; for a new run or extent: free or already it), judged against the table as
//!   the earlier current records leave it. A chunk that has moved on belongs to a later
//!   op whose record is gone (its effects are durable) and is not touched. Without this,
//!   an extent's free replayed after its chunk became part of a run (the run's record
//!   invalidated first by a checkpoint or recovery whose invalidation only partly
//!   reached media) would free the run's chunk under it.
//!
//! Replay writes homes, flushes them, fences once, then checkpoints (invalidating all
//! records). A crash anywhere in here leaves records that replay to the same result:
//! recovery is idempotent.
//!
//! Before the records, a valid chunk-free intent (a checkpoint that was freeing
//! multi-chunk runs, see `intent`) is completed: the entries it names are set free,
//! made durable, and the intent cleared. Completing it again is harmless, so this too
//! survives a crash inside it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use arch::Media;

use crate::chunk::{ChunkEntry, ChunkOp, SpanKind};
use crate::class::GEOMETRY;
use crate::header::{HeaderState, ObjHeader};
use crate::heap::{Heap, Home, Loc, OpenReport, Span};
use crate::intent::{self, Intent};
use crate::layout::{CHUNK, DESC_BYTES, INTENT_OFF, ROOT_SLOT};
use crate::record::{OpKind, Record, RecordFault, RECORD_BYTES, R_CONTAINER};

impl<M: Media> Heap<M> {
    pub(crate) fn recover(&self, report: &mut OpenReport) {
        self.complete_intent();
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
        let (plan, skips) = self.plan(&recs);
        let mut touched: Vec<(usize, usize)> = Vec::new();
        for ((r, step), skip) in recs.iter().zip(plan).zip(&skips) {
            match step {
                Some(loc) => {
                    self.replay(r, &loc, skip, &mut touched);
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

    /// Completes (or, if torn or damaged, discards) a chunk-free intent.
    fn complete_intent(&self) {
        let mut w = [0u64; 8];
        for (i, v) in w.iter_mut().enumerate() {
            *v = self.media.read_u64(INTENT_OFF + i * 8);
        }
        match intent::decode(&w, self.layout.nchunks, self.salt) {
            Intent::None => return,
            Intent::Invalid => {
                // Torn: its fence never completed, so none of its entries were written.
                // A valid check with impossible spans is damage.
                if (w[7] >> 32) as u32 == intent::INTENT_MAGIC {
                    self.note_damage("chunk-free intent", INTENT_OFF as u64);
                }
            }
            Intent::Free(spans) => {
                for op in spans {
                    // Only entries that still belong to the run being freed (its head,
                    // its continuations) or are already free: anything else means the
                    // intent does not describe this table, and it is left alone.
                    let ours = |i: u32, e: Result<ChunkEntry, crate::chunk::BadEntry>| match e {
                        Ok(ChunkEntry::Free) => true,
                        Ok(ChunkEntry::Run { len, .. }) => i == 0 && len == op.count,
                        Ok(ChunkEntry::RunCont { head }) => i > 0 && head == op.start,
                        _ => false,
                    };
                    let whole = (0..op.count).all(|i| ours(i, self.entry((op.start + i) as usize)));
                    if !whole {
                        self.note_damage(
                            "chunk-free intent",
                            self.layout.desc_off(op.start as usize) as u64,
                        );
                        continue;
                    }
                    for i in 0..op.count {
                        self.media
                            .write_u64(self.layout.desc_off((op.start + i) as usize), 0);
                    }
                    self.media.flush(
                        self.layout.desc_off(op.start as usize),
                        op.count as usize * DESC_BYTES,
                    );
                }
                self.media.fence();
                self.media.crash_point("pmalloc.recover.intent");
            }
        }
        self.media.fill(INTENT_OFF, 64, 0);
        self.media.persist(INTENT_OFF, 64);
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
    /// Returns, per record, where its object's header is if it is replayed, and the
    /// chunks of its chunk op that have moved on and must not be written.
    fn plan(&self, recs: &[Record]) -> (Vec<Option<Loc>>, Vec<Vec<u32>>) {
        let gen_of = |r: &Record| (r.header[1] & 0xFF_FFFF) as u32;
        let mut by_obj: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, r) in recs.iter().enumerate() {
            if self.decodes(r) {
                by_obj.entry(r.obj).or_default().push(i);
            }
        }
        let mut plan: Vec<Option<Loc>> = alloc::vec![None; recs.len()];
        let mut skips: Vec<Vec<u32>> = alloc::vec![Vec::new(); recs.len()];
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
                    let current = current || seeded!(IgnoreReplayGuards);
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
                    let after = Span::after(&op);
                    // The state the op found its chunks in.
                    let before = match op.to {
                        SpanKind::Free => Some(Span::Extent {
                            head: op.start,
                            len: op.count,
                        }),
                        SpanKind::Run(_) | SpanKind::Extent => None,
                    };
                    for k in 0..op.count {
                        let c = (op.start + k) as usize;
                        let now = match overlay.get(&c) {
                            Some(s) => *s,
                            None => self.span_on_media(c),
                        };
                        if now == after || now == before || now.is_none() {
                            overlay.insert(c, after);
                        } else {
                            skips[i].push(c as u32);
                        }
                    }
                }
            }
        }
        (plan, skips)
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
                None => self.span_on_media(c),
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
                    || self.slot_containing_on_media(r.dest).is_some()
                    || usize::try_from(r.dest).is_ok_and(|d| self.layout.chunk_of(d).is_some())))
    }

    fn replay(&self, r: &Record, loc: &Loc, skip: &[u32], touched: &mut Vec<(usize, usize)>) {
        // Chunk entries (but those that moved on) and header: idempotent stores. The
        // destination only if it still belongs to the op.
        let mut rec = *r;
        if !seeded!(IgnoreReplayGuards) && rec.dest != 0 && !self.dest_current(&rec) {
            rec.dest = 0;
        }
        if let Ok(Some(op)) = ChunkOp::decode(rec.chunk_op, self.layout.nchunks) {
            for i in 0..op.count {
                let c = op.start + i;
                if !skip.contains(&c) {
                    self.media.write_u64(
                        self.layout.desc_off(c as usize),
                        op.entry(i).encode(c, self.salt),
                    );
                }
            }
            touched.push((
                self.layout.desc_off(op.start as usize),
                op.count as usize * DESC_BYTES,
            ));
        }
        rec.chunk_op = 0;
        touched.extend(self.apply(&rec, loc.hdr_off));
    }

    /// Whether the record's destination still belongs to the op: its container (if any)
    /// is the same object generation, and it holds the old or the new value.
    fn dest_current(&self, r: &Record) -> bool {
        if r.flags & R_CONTAINER != 0 {
            let Some(cloc) = self.slot_containing_on_media(r.dest) else {
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
        self.map.set(0, n, None);
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
                Ok(ChunkEntry::Run { .. } | ChunkEntry::Extent { .. }) => self.span_on_media(c),
                _ => None,
            };
            if let Some(s) = free_start.take() {
                space.give(s as u32, (c - s) as u32);
            }
            let len = match span {
                Some(Span::Run { head, class, len }) if self.conts_ok(c, len, true) => {
                    self.queues[class as usize].lock().push(head);
                    self.map.set(c, len as usize, span);
                    len as usize
                }
                Some(Span::Extent { len, .. }) if self.conts_ok(c, len, false) => {
                    self.map.set(c, len as usize, span);
                    len as usize
                }
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
