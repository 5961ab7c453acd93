//! Walking the heap: iteration over live objects, statistics, and the invariant check.

use alloc::vec::Vec;
use core::sync::atomic::Ordering::Relaxed;

use arch::Media;

use crate::chunk::ChunkEntry;
use crate::class::{GEOMETRY, NCLASSES};
use crate::header::{HeaderState, ObjHeader, HEADER_BYTES};
use crate::heap::{Heap, ObjInfo, Span};
use crate::layout::CHUNK;

/// One step of the chunk walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Free(usize),
    Used(Span),
    Bad(usize),
}

/// Iterator over the chunk table's spans.
pub(crate) struct Spans<'h, M: Media> {
    heap: &'h Heap<M>,
    c: usize,
}

impl<M: Media> Iterator for Spans<'_, M> {
    type Item = Step;
    fn next(&mut self) -> Option<Step> {
        let h = self.heap;
        if self.c >= h.layout.nchunks {
            return None;
        }
        let c = self.c;
        let step = match h.entry(c) {
            // A continuation the walk reaches is not claimed by a head before it: a
            // leftover of a run whose head never became durable. Free space.
            Ok(ChunkEntry::Free | ChunkEntry::RunCont { .. } | ChunkEntry::ExtentCont { .. }) => {
                Step::Free(c)
            }
            Ok(ChunkEntry::Run { .. } | ChunkEntry::Extent { .. }) => match h.span_on_media(c) {
                Some(s) => Step::Used(s),
                None => Step::Bad(c),
            },
            _ => Step::Bad(c),
        };
        self.c += match step {
            Step::Used(Span::Run { len, .. } | Span::Extent { len, .. }) => len as usize,
            Step::Free(_) | Step::Bad(_) => 1,
        };
        Some(step)
    }
}

/// Iterator over allocated objects (see [`Heap::objects`]).
pub struct Objects<'h, M: Media> {
    spans: Spans<'h, M>,
    filter: Option<u32>,
    // The current run's headers, and its allocated objects not yet yielded (reversed).
    hdrs: Vec<u8>,
    pending: Vec<ObjInfo>,
}

impl<M: Media> core::fmt::Debug for Objects<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Objects")
            .field("chunk", &self.spans.c)
            .finish_non_exhaustive()
    }
}

impl<M: Media> Iterator for Objects<'_, M> {
    type Item = ObjInfo;
    fn next(&mut self) -> Option<ObjInfo> {
        let h = self.spans.heap;
        loop {
            if let Some(o) = self.pending.pop() {
                return Some(o);
            }
            match self.spans.next()? {
                Step::Used(Span::Run { head, class, .. }) => {
                    let g = &GEOMETRY[class as usize];
                    let run_off = h.layout.chunk_off(head as usize);
                    self.hdrs.resize(g.nslots * HEADER_BYTES, 0);
                    h.media.read(run_off, &mut self.hdrs);
                    let (filter, pending) = (self.filter, &mut self.pending);
                    crate::header::for_each_nonzero(&self.hdrs, |i, b| {
                        let obj = (run_off + g.data_off + i * g.slot) as u64;
                        if let HeaderState::Valid(hd) = ObjHeader::decode_bytes(b, obj, h.salt) {
                            if hd.allocated()
                                && !hd.extent()
                                && hd.size <= g.slot as u64
                                && filter.is_none_or(|t| t == hd.type_num)
                            {
                                pending.push(ObjInfo::of(obj, &hd));
                            }
                        }
                    });
                    // Yielded by popping from the back: reverse for pool order.
                    pending.reverse();
                }
                Step::Used(Span::Extent { head, len }) => {
                    let obj = h.layout.chunk_off(head as usize) as u64;
                    let mut b = [0u8; HEADER_BYTES];
                    h.media.read(h.layout.desc_off(head as usize) + 16, &mut b);
                    if let HeaderState::Valid(hd) = ObjHeader::decode_bytes(&b, obj, h.salt) {
                        if hd.allocated()
                            && hd.extent()
                            && hd.size <= u64::from(len) * CHUNK as u64
                            && self.filter.is_none_or(|t| t == hd.type_num)
                        {
                            return Some(ObjInfo::of(obj, &hd));
                        }
                    }
                }
                Step::Free(_) | Step::Bad(_) => {}
            }
        }
    }
}

/// Heap statistics (see [`Heap::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Chunks in the heap.
    pub chunks: u64,
    /// Free chunks.
    pub free_chunks: u64,
    /// Largest free span, in chunks.
    pub largest_free_span: u64,
    /// Runs per class.
    pub runs: [u32; NCLASSES],
    /// Extents.
    pub extents: u64,
    /// Allocated objects.
    pub objects: u64,
    /// Bytes users asked for, summed over allocated objects.
    pub allocated_bytes: u64,
    /// Bytes those objects occupy (slot sizes, extent chunks).
    pub occupied_bytes: u64,
    /// Free bytes in runs (free slots).
    pub free_slot_bytes: u64,
    /// Fragmentation of free space in parts per million: 1 - (largest free span /
    /// all free bytes). 0 means all free space is one span.
    pub fragmentation_ppm: u32,
    /// Atomic allocations since open.
    pub allocs: u64,
    /// Atomic frees since open.
    pub frees: u64,
    /// Checkpoints since open (every `CHECKPOINT_OPS` ops of a lane, when out of
    /// chunks, and [`Heap::checkpoint`] calls).
    pub checkpoints: u64,
    /// Settles since open that found op records valid and invalidated them: each
    /// checkpoint's, and each [`Heap::settle`] that had work (two fences each).
    pub settles: u64,
    /// Empty runs returned to the free chunks since open.
    pub released_runs: u64,
    /// Damaged structures set aside.
    pub damaged: u64,
}

/// A broken heap invariant, found by [`Heap::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckError {
    /// Which invariant.
    pub what: &'static str,
    /// Where.
    pub offset: u64,
}

impl Default for HeapStats {
    fn default() -> Self {
        HeapStats {
            chunks: 0,
            free_chunks: 0,
            largest_free_span: 0,
            runs: [0; NCLASSES],
            extents: 0,
            objects: 0,
            allocated_bytes: 0,
            occupied_bytes: 0,
            free_slot_bytes: 0,
            fragmentation_ppm: 0,
            allocs: 0,
            frees: 0,
            checkpoints: 0,
            settles: 0,
            released_runs: 0,
            damaged: 0,
        }
    }
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "heap check: {} at {:#x}", self.what, self.offset)
    }
}

impl core::error::Error for CheckError {}

impl<M: Media> Heap<M> {
    pub(crate) fn spans(&self) -> Spans<'_, M> {
        Spans { heap: self, c: 0 }
    }

    /// Every allocated object, in pool order.
    pub fn objects(&self) -> Objects<'_, M> {
        Objects {
            spans: self.spans(),
            filter: None,
            hdrs: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Allocated objects of one type number.
    pub fn objects_of_type(&self, type_num: u32) -> Objects<'_, M> {
        Objects {
            filter: Some(type_num),
            ..self.objects()
        }
    }

    /// Statistics (walks the chunk table and the header arrays).
    pub fn stats(&self) -> HeapStats {
        let (allocs, frees) = self.lanes.iter().fold((0, 0), |(a, f), l| {
            let lane = l.0.lock();
            (a + lane.allocs, f + lane.frees)
        });
        let mut s = HeapStats {
            chunks: self.layout.nchunks as u64,
            allocs,
            frees,
            checkpoints: self.stat_checkpoints.load(Relaxed),
            settles: self.stat_settles.load(Relaxed),
            released_runs: self.stat_released_runs.load(Relaxed),
            damaged: self.damage.lock().len() as u64,
            ..HeapStats::default()
        };
        let mut run_free = 0u64;
        let mut span = 0u64;
        for step in self.spans() {
            match step {
                Step::Free(_) => {
                    s.free_chunks += 1;
                    span += 1;
                    s.largest_free_span = s.largest_free_span.max(span);
                    continue;
                }
                Step::Used(Span::Run { class, .. }) => {
                    s.runs[class as usize] += 1;
                }
                Step::Used(Span::Extent { len, .. }) => {
                    s.extents += 1;
                    s.occupied_bytes += u64::from(len) * CHUNK as u64;
                }
                Step::Bad(_) => {}
            }
            span = 0;
        }
        let mut run_used = 0u64;
        for o in self.objects() {
            s.objects += 1;
            s.allocated_bytes += o.size;
            if !o.extent {
                if let Some(loc) = self.slot_containing(o.ptr) {
                    s.occupied_bytes += loc.capacity;
                    run_used += loc.capacity;
                }
            }
        }
        for (c, &n) in s.runs.iter().enumerate() {
            let g = &GEOMETRY[c];
            run_free += u64::from(n) * (g.nslots * g.slot) as u64;
        }
        s.free_slot_bytes = run_free.saturating_sub(run_used);
        if let Some(share) = (s.largest_free_span * 1_000_000).checked_div(s.free_chunks) {
            s.fragmentation_ppm = (1_000_000 - share) as u32;
        }
        s
    }

    /// Checks the heap's invariants against the media: every chunk descriptor valid and
    /// spans consistent; every object header valid or never used; every extent head
    /// allocated; loaded runs' free bits agree with their headers; the volatile free
    /// span index agrees with the table. Returns the first violation, or the number of
    /// free chunks. Run it with no transient block (the `Allocator` front end) live:
    /// such a block has no header, so it would show as a free slot marked allocated.
    pub fn check(&self) -> Result<u64, CheckError> {
        // Holding every lane: no op is in flight, and no checkpoint can drop a run state
        // the check is reading.
        let _lanes = self.all_lanes();
        let mut free_chunks = 0u64;
        for c in 0..self.layout.nchunks {
            // The span map is the chunk table, validated (damaged chunks are not used).
            let on_media = match self.entry(c) {
                Ok(ChunkEntry::Free) | Err(_) => None,
                Ok(_) => self.span_on_media(c),
            };
            if self.map.get(c) != on_media {
                return Err(CheckError {
                    what: "span map disagrees with the chunk table",
                    offset: self.layout.desc_off(c) as u64,
                });
            }
        }
        for step in self.spans() {
            match step {
                Step::Bad(c) => {
                    return Err(CheckError {
                        what: "chunk descriptor",
                        offset: self.layout.desc_off(c) as u64,
                    })
                }
                Step::Free(_) => free_chunks += 1,
                Step::Used(Span::Run { head, class, len }) => {
                    if !(1..len).all(|i| {
                        self.entry((head + i) as usize) == Ok(ChunkEntry::RunCont { head })
                    }) {
                        return Err(CheckError {
                            what: "run continuation",
                            offset: self.layout.desc_off(head as usize) as u64,
                        });
                    }
                    self.check_run(head, class)?;
                }
                Step::Used(Span::Extent { head, len }) => {
                    if !(1..len).all(|i| {
                        self.entry((head + i) as usize) == Ok(ChunkEntry::ExtentCont { head })
                    }) {
                        return Err(CheckError {
                            what: "extent continuation",
                            offset: self.layout.desc_off(head as usize) as u64,
                        });
                    }
                    let obj = self.layout.chunk_off(head as usize) as u64;
                    let mut b = [0u8; HEADER_BYTES];
                    self.media
                        .read(self.layout.desc_off(head as usize) + 16, &mut b);
                    match ObjHeader::decode_bytes(&b, obj, self.salt) {
                        HeaderState::Valid(h)
                            if h.allocated()
                                && h.extent()
                                && h.size <= u64::from(len) * CHUNK as u64 => {}
                        _ => {
                            return Err(CheckError {
                                what: "extent header",
                                offset: obj,
                            })
                        }
                    }
                }
            }
        }
        let space = self.space.lock().free_chunks();
        if space > free_chunks {
            return Err(CheckError {
                what: "free-span index lists used chunks",
                offset: space,
            });
        }
        Ok(free_chunks)
    }

    fn check_run(&self, head: u32, class: u8) -> Result<(), CheckError> {
        let g = &GEOMETRY[class as usize];
        let run_off = self.layout.chunk_off(head as usize);
        let mut hdrs = alloc::vec![0u8; g.nslots * HEADER_BYTES];
        self.media.read(run_off, &mut hdrs);
        let mut allocated = alloc::vec![false; g.nslots];
        let mut bad = None;
        crate::header::for_each_nonzero(&hdrs, |i, b| {
            let obj = (run_off + g.data_off + i * g.slot) as u64;
            match ObjHeader::decode_bytes(b, obj, self.salt) {
                HeaderState::Valid(h) if !h.extent() && h.size <= g.slot as u64 => {
                    allocated[i] = h.allocated();
                }
                _ => {
                    bad.get_or_insert((run_off + i * HEADER_BYTES) as u64);
                }
            }
        });
        if let Some(offset) = bad {
            return Err(CheckError {
                what: "object header",
                offset,
            });
        }
        if let Some(st) = self.runs.get(head) {
            // Checks run quiescent: no slot is reserved by an op in flight.
            for (i, &a) in allocated.iter().enumerate() {
                if st.is_free(i) == a {
                    let offset = (run_off + g.data_off + i * g.slot) as u64;
                    let what = if a {
                        "allocated slot marked free"
                    } else {
                        "free slot marked allocated"
                    };
                    return Err(CheckError { what, offset });
                }
            }
        }
        Ok(())
    }
}
