//! Reservations for a transaction runtime that logs allocation state itself.
//!
//! `pmrt` allocates and frees inside transactions: it takes a slot here (volatile
//! only: no header written, no op record), logs the bytes that make the change
//! durable (the object header, and for a new run or an extent the chunk entry words)
//! in its own redo record, and stores them at commit. [`Heap::reserve`] and
//! [`Heap::prepare_free`] return exactly those bytes; [`Heap::cancel`] (abort) and
//! [`Heap::release`] (after the free is durable and retired) give space back.
//!
//! A pool used through `pmrt` must not also use [`Heap::alloc_into`]/[`Heap::free_from`]
//! on the same objects: the two logs are replayed separately.

use alloc::vec::Vec;

use arch::Media;

use crate::chunk::{ChunkOp, SpanKind};
use crate::class::{placement, Placement};
use crate::error::{AllocError, PtrError};
use crate::header::{next_gen, ObjHeader, F_ALLOCATED, F_EXTENT, HEADER_BYTES, MAX_SIZE, MAX_TYPE};
use crate::heap::{Heap, Home, Loc, Span};
use crate::layout::CHUNK;
use crate::op::Reservation;

/// A chunk-entry word to store: `(pool offset, little-endian word)`.
pub type ChunkWord = (u64, u64);

/// A slot or extent set aside by [`Heap::reserve`].
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The object's offset.
    pub obj: u64,
    /// Bytes usable from `obj` (the slot or extent size, at least the size asked for).
    pub capacity: u64,
    /// Where its header lives.
    pub hdr_off: u64,
    /// The header that makes it allocated.
    pub header: [u8; HEADER_BYTES],
    /// Chunk entries to store too (a new run or an extent); usually empty.
    pub chunk_words: Vec<ChunkWord>,
    res: Reservation,
}

/// A free prepared by [`Heap::prepare_free`].
#[derive(Debug, Clone)]
pub struct Freeing {
    /// The object's offset.
    pub obj: u64,
    /// Where its header lives.
    pub hdr_off: u64,
    /// The header that makes it free.
    pub header: [u8; HEADER_BYTES],
    /// Chunk entries to store too (an extent's chunks become free); usually empty.
    pub chunk_words: Vec<ChunkWord>,
    res: Reservation,
}

impl<M: Media> Heap<M> {
    /// What freeing the object at `loc` with header `h` changes: its header (not
    /// allocated, next generation) and, for an extent, the chunk op that frees it.
    pub(crate) fn freed(loc: &Loc, h: &ObjHeader) -> (ObjHeader, Option<ChunkOp>) {
        let after = ObjHeader {
            gen: next_gen(h.gen),
            flags: h.flags & !F_ALLOCATED,
            ..*h
        };
        let chunk_op = match loc.home {
            Home::Extent { head, len } => Some(ChunkOp {
                start: head,
                count: len,
                to: SpanKind::Free,
            }),
            Home::Slot { .. } => None,
        };
        (after, chunk_op)
    }

    fn chunk_words(&self, op: Option<ChunkOp>) -> Vec<ChunkWord> {
        let Some(op) = op else { return Vec::new() };
        (0..op.count)
            .map(|i| {
                let c = (op.start + i) as usize;
                (
                    self.layout.desc_off(c) as u64,
                    op.entry(i).encode(c as u32, self.salt),
                )
            })
            .collect()
    }

    /// Sets aside room for an object of `size` bytes at `align` with `type_num` and
    /// returns the bytes that make it allocated. Nothing persistent changes until the
    /// caller stores those bytes (after logging them); [`Heap::cancel`] undoes it.
    pub fn reserve(
        &self,
        size: usize,
        align: usize,
        type_num: u32,
    ) -> Result<Reserved, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        if size as u64 > MAX_SIZE || size > self.layout.nchunks * CHUNK {
            return Err(AllocError::TooLarge { size });
        }
        if type_num > MAX_TYPE {
            return Err(AllocError::BadType { type_num });
        }
        // The space may have been freed by an atomic op whose homes are not durable
        // yet. The caller logs a newer header generation for it, and if that header
        // reached media first, recovery would take the op's record for superseded and
        // skip it, leaving its destination pointing here. Settled, that record is gone
        // and its homes are durable (one load when no op record is valid).
        self.settle();
        // A new run's chunk entries are made durable here (an empty run is a valid
        // state), so only extents carry chunk words in the caller's log.
        let place = placement(size, align).ok_or(AllocError::BadAlign { align })?;
        let res = self.after_checkpoint_if_full(|| match place {
            Placement::Run(c) => {
                let mut lane = self.lane();
                self.reserve_slot_transient(&mut lane, c)
                    .map(|loc| Reservation {
                        loc,
                        chunk_op: None,
                    })
            }
            Placement::Extent(n) => self.reserve_extent_for(n, size),
        })?;
        let gen = self.read_header(&res.loc).gen();
        let extent = matches!(res.loc.home, Home::Extent { .. });
        let header = ObjHeader {
            size: size as u64,
            type_num,
            gen: next_gen(gen),
            flags: F_ALLOCATED | if extent { F_EXTENT } else { 0 },
        };
        Ok(Reserved {
            obj: res.loc.obj,
            capacity: res.loc.capacity,
            hdr_off: res.loc.hdr_off as u64,
            header: header.to_bytes(res.loc.obj, self.salt),
            chunk_words: self.chunk_words(res.chunk_op),
            res,
        })
    }

    /// Gives a reservation back (its transaction aborted).
    pub fn cancel(&self, r: &Reserved) {
        let lane = self.lane();
        self.unreserve(&lane, &r.res);
    }

    /// Prepares freeing the allocated object at `obj`: the bytes that make it free. The
    /// space stays taken until [`Heap::release`].
    pub fn prepare_free(&self, obj: u64) -> Result<Freeing, PtrError> {
        // As in `reserve`: the object (or its run) may come from an atomic op whose
        // homes are not durable yet, and the caller's newer header generation must not
        // reach media before them, or recovery would skip the op's record (its run's
        // chunk words included) as superseded.
        self.settle();
        let (loc, h) = self.object_at(obj)?;
        // The run's volatile state must exist before the header changes (see free_from).
        if let Home::Slot { head, class, .. } = loc.home {
            self.ensure_run(head, class);
        }
        let (after, chunk_op) = Self::freed(&loc, &h);
        Ok(Freeing {
            obj,
            hdr_off: loc.hdr_off as u64,
            header: after.to_bytes(loc.obj, self.salt),
            chunk_words: self.chunk_words(chunk_op),
            res: Reservation { loc, chunk_op },
        })
    }

    /// Returns a freed object's space to the allocator. Call only once the free is
    /// durable and no log can replay older contents into it.
    pub fn release(&self, f: &Freeing) {
        let lane = self.lane();
        self.unreserve(&lane, &f.res);
    }

    /// Stores a reservation's header and chunk words (cache only: the caller logged
    /// them and makes them durable) and keeps the heap's span map in step, so pointer
    /// lookups find an extent from here on.
    pub fn store_reserved(&self, r: &Reserved) {
        self.store_meta(
            r.hdr_off,
            &r.header,
            &r.chunk_words,
            r.res.chunk_op.as_ref(),
        );
    }

    /// As [`Heap::store_reserved`], for a free: the object stops being found.
    pub fn store_freeing(&self, f: &Freeing) {
        self.store_meta(
            f.hdr_off,
            &f.header,
            &f.chunk_words,
            f.res.chunk_op.as_ref(),
        );
    }

    fn store_meta(
        &self,
        hdr_off: u64,
        header: &[u8; HEADER_BYTES],
        words: &[ChunkWord],
        op: Option<&ChunkOp>,
    ) {
        for &(off, w) in words {
            self.media.write_u64(off as usize, w);
        }
        self.media.write(hdr_off as usize, header);
        if let Some(op) = op {
            self.map
                .set(op.start as usize, op.count as usize, Span::after(op));
        }
    }

    /// The object (slot or extent) whose bytes include `off`, with its bounds:
    /// `(object offset, capacity)`, if `off` is inside an allocated object.
    pub fn object_containing(&self, off: u64) -> Option<(u64, u64)> {
        let loc: Loc = self.slot_containing(off)?;
        let h = self.read_header(&loc).allocated()?;
        (off < loc.obj + h.size).then_some((loc.obj, h.size))
    }
}

impl<M: Media> Heap<M> {
    /// Rebuilds the volatile index of the chunk table (free spans, runs per class) from
    /// the media: a runtime that replayed its own log over chunk entries calls this
    /// before allocating. Run states are built lazily afterwards, from the headers.
    pub fn reindex(&self) {
        *self.space.lock() = crate::space::Space::new();
        for q in &*self.queues {
            q.lock().clear();
        }
        let mut report = crate::heap::OpenReport::default();
        self.index_chunks(&mut report);
    }
}
