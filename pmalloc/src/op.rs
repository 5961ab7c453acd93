//! Atomic allocation and free: lanes, reservation, the one-fence commit, checkpoints.
//!
//! The commit of an op, on its lane:
//! 1. flush the lane's previous op's home lines (header, destination, chunk entries)
//!    as soon as the op holds the lane and has done its locked instructions (a locked
//!    read-modify-write would wait for the write-back), so that the write-back
//!    overlaps the op's own work;
//! 2. write the op record into the lane's next slot with non-temporal stores;
//! 3. one fence: the record and the previous op's homes are durable;
//! 4. store this op's homes (cache only; the lane's next op or a checkpoint flushes
//!    them, and until then the record stands for them).
//!
//! Steps 1 and 3 run in the same call on the same thread: a fence orders only its own
//! core's flushes, so homes flushed by an op that then failed stay pending, and the
//! next op on the lane flushes them again.
//!
//! An op that creates a run fences once more, after zeroing the new run's header
//! array and before writing its record (see `reserve_slot`). So does an allocation
//! that initialises its object (`Init::Zeroed`, `Init::Bytes`), after the new bytes:
//! its record must not reach media before them. `Init::Uninit` (PMDK's allocation
//! without a constructor) keeps to one fence.
//!
//! Why so much of the op path is `#[inline(always)]` (here and in `heap.rs`, `run.rs`):
//! an op's stores after the previous op's fence wait in the store buffer until that
//! fence completes, and once about 40 wait the core stalls. Call prologues, epilogues
//! and results passed through memory were most of an op's stores; inlined, w4 went
//! from 493 to 405 ns a pair (`docs/benchmarks.md`, thirteenth session).
//!
//! When a lane has done `CHECKPOINT_OPS` ops since the last checkpoint, a checkpoint
//! flushes all lanes' pending homes, fences, invalidates all records and fences again
//! (two fences per 8192 ops of a lane), and then returns runs whose slots are all free
//! to the free chunks (one more fence when there are any; three when one spans several
//! chunks, see `intent`). Run freeing happens only there, after every record is
//! invalid, so no record can name a slot of a freed run.

use core::sync::atomic::Ordering::Relaxed;

use arch::Media;

use crate::chunk::{ChunkOp, SpanKind};
use crate::class::{placement, Placement, GEOMETRY, NCLASSES};
use crate::error::{AllocError, DestFault, FreeError};
use crate::header::{next_gen, ObjHeader, F_ALLOCATED, F_EXTENT, HEADER_BYTES, MAX_SIZE, MAX_TYPE};
use crate::heap::{Heap, Home, Loc, Span};
use crate::intent::INTENT_SPANS;
use crate::layout::{CHUNK, DESC_BYTES, INTENT_OFF};
use crate::pptr::PPtr;
use crate::record::{OpKind, Record, RECORD_BYTES, R_CONTAINER};
use crate::run::RunState;

/// Ops of one lane between checkpoints. With at most `MAX_LANES` (1024) lanes, fewer
/// than 2^24 ops (the generation modulus) happen between two checkpoints, so a record
/// left in an idle lane can never meet its object again at a wrapped generation.
pub const CHECKPOINT_OPS: u64 = 8192;
const _: () =
    assert!(crate::layout::MAX_LANES as u64 * CHECKPOINT_OPS < crate::header::GEN_MOD as u64);

/// How a new object's bytes start out.
#[derive(Debug, Clone, Copy)]
pub enum Init<'a> {
    /// Unspecified (whatever the slot held).
    Uninit,
    /// All zero.
    Zeroed,
    /// These bytes at the start, zero after them.
    Bytes(&'a [u8]),
}

/// One lane: two record slots and the allocation state of one thread at a time.
#[derive(Debug)]
pub(crate) struct Lane {
    pub idx: u32,
    next_slot: usize,
    /// The last op's homes, flushed by the next op (or a checkpoint).
    pending: Homes,
    /// The destination of the record valid in each slot (`Some(0)`: valid, with no
    /// destination); what settling and `retire_records_in` need of it.
    pub live: [Option<u64>; 2],
    /// Current run per class (head chunk + 1; 0 = none).
    current: [u32; NCLASSES],
    /// Ops since the last checkpoint.
    ops: u64,
    /// Atomic allocations and frees on this lane since open (statistics).
    pub allocs: u64,
    pub frees: u64,
}

impl Lane {
    /// Counts an op; true when it is time for a checkpoint.
    fn count_op(&mut self) -> bool {
        self.ops += 1;
        self.ops >= CHECKPOINT_OPS
    }
}

/// Where an op's homes are: its header (16 bytes at `hdr`; 0: no op), its destination
/// word (0: none) and its chunk entries (`chunks.1` bytes at `chunks.0`). A few words,
/// not a list of ranges: the commit stores them while its record drains, and every
/// store before the next fence waits behind this one's fence.
#[derive(Debug, Clone, Copy, Default)]
struct Homes {
    hdr: usize,
    dest: usize,
    chunks: (usize, usize),
}

impl Homes {
    /// Calls `f` with each range `(offset, length)` the homes occupy: chunk entries,
    /// header, destination.
    #[inline(always)]
    fn each(&self, mut f: impl FnMut(usize, usize)) {
        if self.hdr == 0 {
            return;
        }
        if self.chunks.1 != 0 {
            f(self.chunks.0, self.chunks.1);
        }
        f(self.hdr, HEADER_BYTES);
        if self.dest != 0 {
            f(self.dest, 8);
        }
    }
}

/// A lane on its own cache lines.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct PaddedLane(pub spin::Mutex<Lane>);

impl PaddedLane {
    pub fn new(idx: u32) -> Self {
        PaddedLane(spin::Mutex::new(Lane {
            idx,
            next_slot: 0,
            pending: Homes::default(),
            live: [None, None],
            current: [0; NCLASSES],
            ops: 0,
            allocs: 0,
            frees: 0,
        }))
    }
}

/// A runtime's right to a heap's atomic ops with a destination ([`Heap::claim`]); not
/// cloneable, so one runtime holds it.
#[derive(Debug)]
pub struct Claim {
    /// The heap's instance number, so that a claim works only on its own heap.
    instance: u64,
}

/// A slot or extent set aside for an op.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    pub loc: Loc,
    pub chunk_op: Option<ChunkOp>,
}

fn stack_bucket() -> usize {
    let marker = 0u8;
    let a = core::ptr::addr_of!(marker) as usize >> 21;
    a.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40
}

impl<M: Media> Heap<M> {
    pub(crate) fn lane(&self) -> spin::MutexGuard<'_, Lane> {
        let n = self.lanes.len();
        let start = stack_bucket() % n;
        for k in 0..n {
            if let Some(g) = self.lanes[(start + k) % n].0.try_lock() {
                return g;
            }
        }
        self.lanes[start].0.lock()
    }

    /// Every lane, locked in index order (checkpoints, checks).
    pub(crate) fn all_lanes(&self) -> alloc::vec::Vec<spin::MutexGuard<'_, Lane>> {
        self.lanes.iter().map(|l| l.0.lock()).collect()
    }

    /// Starts the write-back of the lane's previous op's homes (step 1). They stay in
    /// `pending` until this call's fence.
    #[inline(always)]
    fn flush_pending(&self, lane: &Lane) {
        self.flush_homes(&lane.pending);
    }

    #[inline(always)]
    fn flush_homes(&self, h: &Homes) {
        h.each(|o, l| self.media.flush(o, l));
    }

    /// Use the reference only while holding a lane lock (see `run`).
    fn run_state(&self, head: u32, class: u8) -> &RunState {
        self.runs.get_or_load(head, || self.load_run(head, class))
    }

    /// Builds a run's volatile state from its header array.
    pub(crate) fn load_run(&self, head: u32, class: u8) -> RunState {
        let g = &GEOMETRY[class as usize];
        let run_off = self.layout.chunk_off(head as usize);
        let mut hdrs = alloc::vec![0u8; g.nslots * HEADER_BYTES];
        self.media.read(run_off, &mut hdrs);
        let mut taken = alloc::vec![false; g.nslots];
        crate::header::for_each_nonzero(&hdrs, |i, b| {
            let obj = (run_off + g.data_off + i * g.slot) as u64;
            match ObjHeader::decode_bytes(b, obj, self.salt) {
                crate::header::HeaderState::Zero => {}
                crate::header::HeaderState::Valid(h) => taken[i] = h.allocated(),
                crate::header::HeaderState::Invalid => {
                    // Neither free nor trusted: set aside and report.
                    self.note_damage("object header", (run_off + i * HEADER_BYTES) as u64);
                    taken[i] = true;
                }
            }
        });
        let run = RunState::new(head, class, |i| !taken[i]);
        if run.is_empty() {
            self.empty_runs.lock().push(head);
        }
        run
    }

    /// Queues a run with free slots that no lane owns, once.
    #[inline(always)]
    fn requeue(&self, run: &RunState) {
        if run.free_count() > 0 && !run.owned() && run.mark_queued() {
            self.queues[run.class as usize].lock().push(run.head);
        }
    }

    fn reserve_slot(&self, lane: &mut Lane, class: usize) -> Result<Reservation, AllocError> {
        let g = &GEOMETRY[class];
        loop {
            if lane.current[class] != 0 {
                let head = lane.current[class] - 1;
                let run = self.run_state(head, class as u8);
                if let Some(idx) = run.take() {
                    // The next allocation of this class reads (and then writes) the
                    // header of the run's next free slot: start fetching it, as this
                    // one's was a cache miss.
                    if let Some(next) = run.peek() {
                        let at = self.slot_loc(head, class as u8, next).hdr_off;
                        self.media.prefetch_write(at);
                    }
                    return Ok(Reservation {
                        loc: self.slot_loc(head, class as u8, idx),
                        chunk_op: None,
                    });
                }
                lane.current[class] = 0;
                run.disown();
                self.requeue(run);
                continue;
            }
            let next = self.queues[class].lock().pop();
            if let Some(head) = next {
                let run = self.run_state(head, class as u8);
                run.unmark_queued();
                if run.free_count() > 0 && run.try_own(lane.idx) {
                    lane.current[class] = head + 1;
                } else {
                    self.requeue(run);
                }
                continue;
            }
            // No run with room: make one from free chunks.
            let chunks = g.chunks as u32;
            let head = self
                .space
                .lock()
                .take(chunks)
                .ok_or(AllocError::OutOfSpace { size: g.slot })?;
            // Volatile state for this chunk already exists only if the chunk table (pool
            // bytes) disagreed with it, e.g. a damaged descriptor made a live run look
            // free. Never reuse such a chunk: set it aside and take another.
            if self.runs.get(head).is_some() {
                self.note_damage(
                    "chunk free in the table but in use",
                    self.layout.desc_off(head as usize) as u64,
                );
                continue;
            }
            // The chunk's old bytes could hold headers from an earlier use (a released
            // run) or data (an extent): zero the header array now, and fence, so that
            // the op's record (which creates the run) can never be durable before the
            // zeros. The op's own fence would not do: a record line can reach media
            // before that fence completes, the non-temporal zeros only at it.
            let run_off = self.layout.chunk_off(head as usize);
            let zeros = [0u8; 4096];
            let mut done = 0;
            while done < g.data_off {
                let n = (g.data_off - done).min(zeros.len());
                self.media.write_nt(run_off + done, &zeros[..n]);
                done += n;
            }
            if !seeded!(NoFenceAfterRunZeroing) {
                self.media.fence();
            }
            let run = self
                .runs
                .get_or_load(head, || RunState::new(head, class as u8, |_| true));
            if !run.try_own(lane.idx) {
                // Lost a race with a loader of the same chunk: the same disagreement.
                self.note_damage(
                    "chunk free in the table but in use",
                    self.layout.desc_off(head as usize) as u64,
                );
                continue;
            }
            lane.current[class] = head + 1;
            let idx = run.take().ok_or(AllocError::OutOfSpace { size: g.slot })?;
            let op = ChunkOp {
                start: head,
                count: chunks,
                to: SpanKind::Run(class as u8),
            };
            return Ok(Reservation {
                loc: self.slot_loc(head, class as u8, idx),
                chunk_op: Some(op),
            });
        }
    }

    pub(crate) fn slot_loc(&self, head: u32, class: u8, idx: usize) -> Loc {
        let g = &GEOMETRY[class as usize];
        let run_off = self.layout.chunk_off(head as usize);
        Loc {
            obj: (run_off + g.data_off + idx * g.slot) as u64,
            hdr_off: run_off + idx * HEADER_BYTES,
            home: Home::Slot { head, class, idx },
            capacity: g.slot as u64,
        }
    }

    fn reserve_extent(&self, chunks: usize, size: usize) -> Result<Reservation, AllocError> {
        let n = u32::try_from(chunks).map_err(|_| AllocError::TooLarge { size })?;
        let head = self
            .space
            .lock()
            .take(n)
            .ok_or(AllocError::OutOfSpace { size })?;
        let loc = Loc {
            obj: self.layout.chunk_off(head as usize) as u64,
            hdr_off: self.layout.desc_off(head as usize) + 16,
            home: Home::Extent { head, len: n },
            capacity: u64::from(n) * CHUNK as u64,
        };
        Ok(Reservation {
            loc,
            chunk_op: Some(ChunkOp {
                start: head,
                count: n,
                to: SpanKind::Extent,
            }),
        })
    }

    /// Returns a reservation's space (the op did not happen, or was a free). Call with
    /// a lane held.
    #[inline(always)]
    pub(crate) fn unreserve(&self, lane: &Lane, r: &Reservation) {
        match r.loc.home {
            Home::Slot { head, class, idx } => {
                let run = self.run_state(head, class);
                if run.put(idx, lane.idx) as usize == GEOMETRY[class as usize].nslots {
                    // Every slot free: the next checkpoint may return the run's chunks.
                    self.empty_runs.lock().push(head);
                }
                self.requeue(run);
            }
            Home::Extent { head, len } => self.space.lock().give(head, len),
        }
    }

    /// Makes the caller, a runtime that logs writes to pool bytes (`pmrt`), the only
    /// user of the atomic ops that change words and objects its log may stand for:
    /// afterwards [`Heap::alloc_into`], [`Heap::free_from`] and [`Heap::free`] answer
    /// `Claimed`, and the runtime uses [`Heap::alloc_into_claimed`] and
    /// [`Heap::free_from_claimed`] after writing back what it logged. Without the
    /// claim, a program holding the runtime's pool could call the heap's ops directly
    /// and a crash could replay the runtime's older records over them. `None` when
    /// the heap is claimed already.
    pub fn claim(&self) -> Option<Claim> {
        self.claimed
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
            .then_some(Claim {
                instance: self.instance,
            })
    }

    /// Whether a caller holding `claim` (or none) may use the ops a claim reserves:
    /// it holds this heap's claim, or nobody claimed the heap.
    fn admits(&self, claim: Option<&Claim>) -> bool {
        match claim {
            Some(c) => c.instance == self.instance,
            None => !self.claimed.load(Relaxed),
        }
    }

    /// Allocates an object of `size` bytes aligned to `align`, with type number
    /// `type_num`, initialises it, and publishes its offset into the 8-byte word at
    /// `dest` (the root slot [`Heap::ROOT`], or a field inside an allocated object that
    /// holds null). After a crash at any point, either the object is allocated,
    /// initialised and `dest` points to it, or neither. One fence with
    /// [`Init::Uninit`], two when there are initial bytes to make durable first.
    /// `Claimed` when a runtime claimed the heap ([`Heap::claim`]).
    pub fn alloc_into(
        &self,
        dest: u64,
        size: usize,
        align: usize,
        type_num: u32,
        init: Init<'_>,
    ) -> Result<PPtr<()>, AllocError> {
        self.publish(None, dest, size, align, type_num, init, |_| {})
    }

    /// [`Heap::alloc_into`] for the runtime holding the heap's claim. Once `dest` is
    /// known to be a null word the op may publish to, and before the op takes a lane,
    /// `prepare` gets the object holding `dest` (`None`: the root slot), which the
    /// runtime writes back first.
    #[allow(clippy::too_many_arguments)] // alloc_into's, with the claim and the hook
    pub fn alloc_into_claimed(
        &self,
        claim: &Claim,
        dest: u64,
        size: usize,
        align: usize,
        type_num: u32,
        init: Init<'_>,
        prepare: impl FnOnce(Option<u64>),
    ) -> Result<PPtr<()>, AllocError> {
        self.publish(Some(claim), dest, size, align, type_num, init, prepare)
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        claim: Option<&Claim>,
        dest: u64,
        size: usize,
        align: usize,
        type_num: u32,
        init: Init<'_>,
        prepare: impl FnOnce(Option<u64>),
    ) -> Result<PPtr<()>, AllocError> {
        if !self.admits(claim) {
            return Err(AllocError::Claimed);
        }
        let place = Self::alloc_args(size, align, type_num)?;
        let container = self
            .check_dest(dest)
            .map_err(|why| AllocError::BadDest { offset: dest, why })?;
        // `dest` is the caller's word; a racing writer of it is the caller's bug, as with
        // any shared memory (the lane lock would not exclude other lanes anyway).
        let value = self.media.read_u64(dest as usize);
        if value != 0 {
            return Err(AllocError::DestNotNull {
                offset: dest,
                value,
            });
        }
        prepare(container.map(|(loc, _)| loc.obj));
        self.alloc_op(dest, container, place, size, type_num, init)
    }

    /// Allocates an object as [`Heap::alloc_into`] does, but publishes it nowhere: like
    /// `pmemobj_alloc` with a null `oidp`, the object is reachable by iteration
    /// ([`Heap::objects`]) until the program stores its offset somewhere. After a crash
    /// it is allocated (and initialised) or not. Fences as [`Heap::alloc_into`].
    pub fn alloc(
        &self,
        size: usize,
        align: usize,
        type_num: u32,
        init: Init<'_>,
    ) -> Result<PPtr<()>, AllocError> {
        let place = Self::alloc_args(size, align, type_num)?;
        self.alloc_op(0, None, place, size, type_num, init)
    }

    fn alloc_args(size: usize, align: usize, type_num: u32) -> Result<Placement, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        if size as u64 > MAX_SIZE {
            return Err(AllocError::TooLarge { size });
        }
        if type_num > MAX_TYPE {
            return Err(AllocError::BadType { type_num });
        }
        placement(size, align).ok_or(AllocError::BadAlign { align })
    }

    /// The allocation proper: `dest` 0 publishes nowhere.
    #[inline(always)]
    fn alloc_op(
        &self,
        dest: u64,
        container: Option<(Loc, ObjHeader)>,
        place: Placement,
        size: usize,
        type_num: u32,
        init: Init<'_>,
    ) -> Result<PPtr<()>, AllocError> {
        if size > self.layout.nchunks * CHUNK {
            return Err(AllocError::TooLarge { size });
        }
        // The op's locked instructions come before `flush_pending`, a run switch's in
        // `reserve_slot` (queue lock, ownership) included: a locked read-modify-write
        // waits for earlier flushes to complete, which would expose the homes' write-back
        // there instead of overlapping it with the op's work up to its fence. (Under w4's
        // scattered frees nearly every allocation switches runs.) Written out rather than
        // through `after_checkpoint_if_full`: its closure's result (the lane guard, the
        // sequence number, the reservation) went through memory, and these are stores
        // between the previous op's fence and this one's.
        let mut lane = self.lane();
        let mut seq = self.seq.fetch_add(1, Relaxed);
        let res = match self.reserve_for(&mut lane, place, size) {
            Ok(r) => r,
            Err(AllocError::OutOfSpace { .. }) => {
                // Empty runs go back to the free chunks only at a checkpoint, which
                // takes every lane: let go of ours, and try once more after it.
                drop(lane);
                self.checkpoint();
                lane = self.lane();
                seq = self.seq.fetch_add(1, Relaxed);
                self.reserve_for(&mut lane, place, size)?
            }
            Err(e) => return Err(e),
        };
        self.flush_pending(&lane);
        let loc = res.loc;
        let gen_before = self.read_header(&loc).gen();
        let extent = matches!(loc.home, Home::Extent { .. });
        let header = ObjHeader {
            size: size as u64,
            type_num,
            gen: next_gen(gen_before),
            flags: F_ALLOCATED | if extent { F_EXTENT } else { 0 },
        };
        if self.init_object(loc.obj as usize, size, init) && !seeded!(NoFenceAfterInit) {
            // The new bytes must be on media before the record can be: its line may
            // reach media before the op's fence completes, and a crash would then
            // publish an object holding whatever the slot held. (Replaying the init
            // instead would also overwrite what the program stores into the object
            // while the record stays valid.) Found by the transaction crash
            // scenario's atomic publications.
            self.media.fence();
        }
        let (flags, container_gen) = match container {
            Some((_, h)) => (R_CONTAINER, h.gen),
            None => (0, 0),
        };
        let rec = Record {
            seq,
            kind: OpKind::Alloc,
            flags,
            gen_before,
            container_gen,
            obj: loc.obj,
            dest,
            header: header.encode(loc.obj, self.salt),
            chunk_op: res.chunk_op.map_or(0, ChunkOp::encode),
        };
        self.commit(&mut lane, rec, loc.hdr_off);
        lane.allocs += 1;
        let due = lane.count_op();
        drop(lane);
        if due {
            self.checkpoint();
        }
        Ok(PPtr::from_raw(loc.obj))
    }

    /// A slot or an extent for a new object of `size` bytes placed as `place`.
    #[inline(always)]
    fn reserve_for(
        &self,
        lane: &mut Lane,
        place: Placement,
        size: usize,
    ) -> Result<Reservation, AllocError> {
        match place {
            Placement::Run(c) => self.reserve_slot(lane, c),
            Placement::Extent(n) => self.reserve_extent(n, size),
        }
    }

    /// Runs `reserve`; when it finds no free chunk, checkpoints (empty runs go back to
    /// the free chunks only there) and runs it once more. `reserve` must hold no lane
    /// when it fails: the checkpoint takes them all.
    pub(crate) fn after_checkpoint_if_full<T>(
        &self,
        mut reserve: impl FnMut() -> Result<T, AllocError>,
    ) -> Result<T, AllocError> {
        match reserve() {
            Err(AllocError::OutOfSpace { .. }) => {
                self.checkpoint();
                reserve()
            }
            r => r,
        }
    }

    /// Stores and flushes the new object's initial bytes; returns whether there were
    /// any (then they need a fence before the op's record).
    fn init_object(&self, at: usize, size: usize, init: Init<'_>) -> bool {
        let (bytes, zero_from) = match init {
            Init::Uninit => return false,
            Init::Zeroed => (&[][..], 0),
            Init::Bytes(b) => (&b[..b.len().min(size)], b.len().min(size)),
        };
        if !bytes.is_empty() {
            self.media.write(at, bytes);
            self.media.flush(at, bytes.len());
        }
        if zero_from < size {
            let n = size - zero_from;
            if n >= 1024 {
                let zeros = [0u8; 4096];
                let mut done = 0;
                while done < n {
                    let k = (n - done).min(zeros.len());
                    self.media.write_nt(at + zero_from + done, &zeros[..k]);
                    done += k;
                }
            } else {
                self.media.fill(at + zero_from, n, 0);
                self.media.flush(at + zero_from, n);
            }
        }
        size > 0
    }

    /// Frees the object whose offset the word at `dest` holds and clears `dest`, both
    /// or neither after any crash. One fence. `Claimed` when a runtime claimed the
    /// heap ([`Heap::claim`]).
    pub fn free_from(&self, dest: u64) -> Result<(), FreeError> {
        self.unpublish(None, dest, |_, _| {})
    }

    /// [`Heap::free_from`] for the runtime holding the heap's claim. Once `dest` is
    /// known to hold an object the op may free, and before the op takes a lane,
    /// `prepare` gets the object holding `dest` (`None`: the root slot) and the object
    /// to be freed, which the runtime writes back first.
    pub fn free_from_claimed(
        &self,
        claim: &Claim,
        dest: u64,
        prepare: impl FnOnce(Option<u64>, u64),
    ) -> Result<(), FreeError> {
        self.unpublish(Some(claim), dest, prepare)
    }

    fn unpublish(
        &self,
        claim: Option<&Claim>,
        dest: u64,
        prepare: impl FnOnce(Option<u64>, u64),
    ) -> Result<(), FreeError> {
        if !self.admits(claim) {
            return Err(FreeError::Claimed);
        }
        let container = self
            .check_dest(dest)
            .map_err(|why| FreeError::BadDest { offset: dest, why })?;
        let target = self.media.read_u64(dest as usize);
        if target == 0 {
            return Err(FreeError::DestNull { offset: dest });
        }
        let (loc, h) = self.object_at(target).map_err(FreeError::NotAnObject)?;
        if dest >= loc.obj && dest < loc.obj + loc.capacity {
            return Err(FreeError::BadDest {
                offset: dest,
                why: DestFault::InsideTarget,
            });
        }
        prepare(container.map(|(c, _)| c.obj), loc.obj);
        self.free_op(dest, container, loc, h);
        Ok(())
    }

    /// Frees the allocated object at `p`, clearing no destination (the counterpart of
    /// [`Heap::alloc`]; a pointer to it stored elsewhere dangles afterwards). After a
    /// crash it is freed or not. One fence. `Claimed` when a runtime claimed the heap
    /// ([`Heap::claim`]): its transactions free objects (`Tx::free`).
    pub fn free(&self, p: PPtr<()>) -> Result<(), FreeError> {
        if !self.admits(None) {
            return Err(FreeError::Claimed);
        }
        let (loc, h) = self.object_at(p.raw()).map_err(FreeError::NotAnObject)?;
        self.free_op(0, None, loc, h);
        Ok(())
    }

    /// The free proper: `dest` 0 clears nothing.
    fn free_op(&self, dest: u64, container: Option<(Loc, ObjHeader)>, loc: Loc, h: ObjHeader) {
        let mut lane = self.lane();
        let seq = self.seq.fetch_add(1, Relaxed);
        // The run's volatile state must exist before the free is applied: built later,
        // it would already show the slot free, and returning it would count it twice.
        if let Home::Slot { head, class, .. } = loc.home {
            self.run_state(head, class);
        }
        // After the op's last locked instruction (see `alloc_into`).
        self.flush_pending(&lane);
        let (after, chunk_op) = Self::freed(&loc, &h);
        let (flags, container_gen) = match container {
            Some((_, c)) => (R_CONTAINER, c.gen),
            None => (0, 0),
        };
        let rec = Record {
            seq,
            kind: OpKind::Free,
            flags,
            gen_before: h.gen,
            container_gen,
            obj: loc.obj,
            dest,
            header: after.encode(loc.obj, self.salt),
            chunk_op: chunk_op.map_or(0, ChunkOp::encode),
        };
        self.commit(&mut lane, rec, loc.hdr_off);
        // Only now may the space be reused; still under the lane, like every use of a
        // run's volatile state. (Returned at the lane's next op instead, so that its
        // locked instructions would not follow the fence, it measured 1-3% slower.)
        self.unreserve(&lane, &Reservation { loc, chunk_op });
        lane.frees += 1;
        let due = lane.count_op();
        drop(lane);
        if due {
            self.checkpoint();
        }
    }

    /// Steps 1-4 of the protocol (module docs). Inlined into both ops: as a call, its
    /// prologue's and epilogue's stores fall between two fences.
    #[inline(always)]
    fn commit(&self, lane: &mut Lane, rec: Record, hdr_off: usize) {
        if seeded!(ApplyBeforeRecord) {
            for (o, l) in self.apply(&rec, hdr_off) {
                self.media.flush(o, l);
            }
        }
        // The homes stored after the fence: write-back evicts a line on this host, and
        // `flush_pending` may just have evicted them (a destination or a header line
        // the previous op shares), so fetch them back while the fence waits.
        if rec.dest != 0 {
            self.media.prefetch_write(rec.dest as usize);
        }
        self.media.prefetch_write(hdr_off);
        let slot = lane.next_slot;
        let off = self.layout.record_off(lane.idx, slot);
        // Non-temporal: the fence then waits for a write-combined line, not a flushed
        // one (95 ns against 160 ns on this host); the homes flushed at the op's start
        // have had its work to complete.
        self.media.write_nt(off, &rec.encode(lane.idx, self.salt));
        // Volatile bookkeeping before the fence: stores after it wait in the store
        // buffer until the fence completes, and reading one back early would stall.
        // (The previous op's homes were flushed by `flush_pending` in this same call.)
        lane.pending = self.homes(&rec, hdr_off);
        lane.live[slot] = Some(rec.dest);
        lane.next_slot ^= 1;
        // Read first: the word is shared by every lane, and written only after a settle.
        if !self.unsettled.load(Relaxed) {
            self.unsettled.store(true, Relaxed);
        }
        if !seeded!(DropCommitFence) {
            self.media.fence();
        }
        self.media.crash_point("pmalloc.op.committed");
        self.store_homes(&rec, hdr_off);
    }

    /// Stores the chunk entries of `op` (cache only) and records the span in the map.
    fn write_chunk_op(&self, op: &ChunkOp) {
        self.write_chunk_entries(op, 0..op.count);
        self.map
            .set(op.start as usize, op.count as usize, Span::after(op));
    }

    /// Stores the chunk entries `entries` of `op` (cache only).
    fn write_chunk_entries(&self, op: &ChunkOp, entries: core::ops::Range<u32>) {
        for i in entries {
            let c = (op.start + i) as usize;
            self.media.write_u64(
                self.layout.desc_off(c),
                op.entry(i).encode(c as u32, self.salt),
            );
        }
    }

    /// Stores an op's homes; returns the ranges written. Used by replay.
    pub(crate) fn apply(&self, rec: &Record, hdr_off: usize) -> heapless::Vec<(usize, usize), 4> {
        self.store_homes(rec, hdr_off);
        self.home_ranges(rec, hdr_off)
    }

    /// Where an op's homes are (chunk entries, header, destination).
    #[inline(always)]
    fn homes(&self, rec: &Record, hdr_off: usize) -> Homes {
        Homes {
            hdr: hdr_off,
            dest: rec.dest as usize,
            chunks: match ChunkOp::decode(rec.chunk_op, self.layout.nchunks) {
                Ok(Some(op)) => (
                    self.layout.desc_off(op.start as usize),
                    op.count as usize * DESC_BYTES,
                ),
                _ => (0, 0),
            },
        }
    }

    /// The ranges an op's homes occupy (replay's list of lines to flush).
    fn home_ranges(&self, rec: &Record, hdr_off: usize) -> heapless::Vec<(usize, usize), 4> {
        let mut out = heapless::Vec::new();
        self.homes(rec, hdr_off).each(|o, l| {
            let _ = out.push((o, l));
        });
        out
    }

    /// Stores an op's homes (cache only): chunk entries, header, destination word.
    #[inline(always)]
    fn store_homes(&self, rec: &Record, hdr_off: usize) {
        if let Ok(Some(op)) = ChunkOp::decode(rec.chunk_op, self.layout.nchunks) {
            self.write_chunk_op(&op);
        }
        // Headers are 16-aligned: two word stores.
        self.media.write_u64(hdr_off, rec.header[0]);
        self.media.write_u64(hdr_off + 8, rec.header[1]);
        if rec.dest != 0 {
            let v = match rec.kind {
                OpKind::Alloc => rec.obj,
                OpKind::Free => 0,
            };
            self.media.write_u64(rec.dest as usize, v);
        }
    }

    /// Makes every completed op final: flushes every lane's pending homes and
    /// invalidates every op record, so that recovery replays none of them. Two fences
    /// when some record may be valid; otherwise one load and nothing else.
    ///
    /// Until then an op's record stays valid (to its lane's next op but one, or a
    /// checkpoint) and recovery may replay it, destination word included: a plain
    /// store of null to the destination of an [`Heap::alloc_into`] in that window,
    /// even one made durable, could be replayed over after a crash (replay cannot tell
    /// it from the op's own store not yet on media). Settle before such a store, or
    /// change the word with [`Heap::free_from`]. `pmrt` settles before any of its
    /// records can die (a coalescing round, a write-behind retire), so transactions
    /// may write destination words freely.
    pub fn settle(&self) {
        if !self.unsettled.load(Relaxed) {
            return;
        }
        let mut lanes = self.all_lanes();
        self.settle_lanes(&mut lanes);
    }

    /// [`Heap::settle`] with every lane held; clears `unsettled` while no op can run.
    fn settle_lanes(&self, lanes: &mut [spin::MutexGuard<'_, Lane>]) {
        self.unsettled.store(false, Relaxed);
        let mut live = false;
        for lane in lanes.iter_mut() {
            self.flush_homes(&lane.pending);
            lane.pending = Homes::default();
            lane.ops = 0;
            live |= lane.live.iter().any(Option::is_some);
        }
        if live {
            self.media.fence();
            for lane in lanes.iter_mut() {
                for slot in 0..2 {
                    if lane.live[slot].take().is_some() {
                        let off = self.layout.record_off(lane.idx, slot);
                        self.media.fill(off, RECORD_BYTES, 0);
                        self.media.flush(off, RECORD_BYTES);
                    }
                }
            }
            self.media.fence();
            self.media.crash_point("pmalloc.checkpoint.invalidated");
            self.stat_settles.fetch_add(1, Relaxed);
        }
    }

    /// Settles ([`Heap::settle`]: every op's homes durable, every record invalid), then
    /// returns runs whose slots are all free to the free chunks. Takes every lane
    /// (waiting for ops in flight); two fences when any record is live, one more when
    /// runs are returned (three when one of them spans several chunks).
    pub fn checkpoint(&self) {
        let mut lanes = self.all_lanes();
        self.settle_lanes(&mut lanes);
        self.release_empty_runs(&mut lanes);
        self.stat_checkpoints.fetch_add(1, Relaxed);
    }

    /// Returns runs whose slots are all free (and that no lane allocates from, or
    /// whose lane's current run it is) to the free chunks. Runs with every lane held
    /// and every op record invalid (durably zero), so no record can name a slot of a
    /// freed run and no op can be using one.
    fn release_empty_runs(&self, lanes: &mut [spin::MutexGuard<'_, Lane>]) {
        // A lane's own current run, if empty, is given up too.
        for lane in lanes.iter_mut() {
            for class in 0..NCLASSES {
                let Some(head) = lane.current[class].checked_sub(1) else {
                    continue;
                };
                if let Some(run) = self.runs.get(head) {
                    if run.is_empty() {
                        lane.current[class] = 0;
                        run.disown();
                        self.empty_runs.lock().push(head);
                    }
                }
            }
        }
        let mut cands = core::mem::take(&mut *self.empty_runs.lock());
        if cands.is_empty() {
            return;
        }
        cands.sort_unstable();
        cands.dedup();
        let mut single: alloc::vec::Vec<(u32, u8)> = alloc::vec::Vec::new();
        let mut multi: heapless::Vec<(u32, u8, u32), INTENT_SPANS> = heapless::Vec::new();
        let mut later = alloc::vec::Vec::new();
        for head in cands {
            let Some(run) = self.runs.get(head) else {
                continue;
            };
            if !run.is_empty() || run.owned() {
                continue;
            }
            let chunks = GEOMETRY[run.class as usize].chunks as u32;
            if chunks == 1 {
                single.push((head, run.class));
            } else if multi.push((head, run.class, chunks)).is_err() {
                later.push(head);
            }
        }
        if !seeded!(ReleaseWithoutIntent) && !multi.is_empty() {
            let spans: heapless::Vec<ChunkOp, INTENT_SPANS> = multi
                .iter()
                .map(|&(start, _, count)| ChunkOp {
                    start,
                    count,
                    to: SpanKind::Free,
                })
                .collect();
            let words = crate::intent::encode(&spans, self.salt);
            let mut b = [0u8; 64];
            for (i, w) in words.iter().enumerate() {
                b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            self.media.write(INTENT_OFF, &b);
            self.media.persist(INTENT_OFF, 64);
            self.media.crash_point("pmalloc.checkpoint.intent");
        }
        let freed = single
            .iter()
            .map(|&(h, c)| (h, c, 1))
            .chain(multi.iter().copied());
        for (start, _, count) in freed.clone() {
            self.write_chunk_op(&ChunkOp {
                start,
                count,
                to: SpanKind::Free,
            });
            self.media.flush(
                self.layout.desc_off(start as usize),
                count as usize * DESC_BYTES,
            );
        }
        self.media.fence();
        if !multi.is_empty() {
            self.media.crash_point("pmalloc.checkpoint.released");
            self.media.fill(INTENT_OFF, 64, 0);
            self.media.persist(INTENT_OFF, 64);
        }
        let mut space = self.space.lock();
        for (head, class, chunks) in freed {
            self.queues[class as usize].lock().retain(|&h| h != head);
            // SAFETY: every lane lock is held (the caller's `lanes`), and every user of a
            // run state holds one while using it and keeps no reference past it.
            unsafe { self.runs.reset(head) };
            space.give(head, chunks);
            self.stat_released_runs.fetch_add(1, Relaxed);
        }
        drop(space);
        self.empty_runs.lock().extend(later);
    }

    /// Checkpoints if a live op record's destination lies in `[off, off + len)`: an
    /// in-place writer of those bytes must call this first, or a crash could replay
    /// the record over its newer bytes.
    pub fn retire_records_in(&self, off: u64, len: u64) {
        let hit = self.lanes.iter().any(|l| {
            let lane = l.0.lock();
            lane.live
                .iter()
                .flatten()
                .any(|&dest| dest >= off && dest < off + len)
        });
        if hit {
            self.checkpoint();
        }
    }
}

impl<M: Media> Heap<M> {
    /// A slot for transient use (no header, no record). A run created for it gets its
    /// chunk entries made durable now, after its zeroed header array.
    pub(crate) fn reserve_slot_transient(
        &self,
        lane: &mut Lane,
        class: usize,
    ) -> Result<Loc, AllocError> {
        let r = self.reserve_slot(lane, class)?;
        if let Some(op) = r.chunk_op {
            // `reserve_slot` fenced after zeroing the header array. Then the continuation
            // entries, then the head: a crash leaves no head (the continuations are
            // leftovers the table walk reads as free) or a whole, empty run.
            let head_off = self.layout.desc_off(op.start as usize);
            self.write_chunk_entries(&op, 1..op.count);
            if op.count > 1 {
                self.media
                    .persist(head_off + DESC_BYTES, (op.count as usize - 1) * DESC_BYTES);
            }
            self.write_chunk_entries(&op, 0..1);
            self.map
                .set(op.start as usize, op.count as usize, Span::after(&op));
            self.media.persist(head_off, 8);
        }
        Ok(r.loc)
    }

    /// Returns a transient slot.
    pub(crate) fn release_transient(&self, loc: &Loc) {
        let lane = self.lane();
        self.unreserve(
            &lane,
            &Reservation {
                loc: *loc,
                chunk_op: None,
            },
        );
        drop(lane);
    }
}

impl<M: Media> Heap<M> {
    /// An extent of `chunks` chunks for a reservation.
    pub(crate) fn reserve_extent_for(
        &self,
        chunks: usize,
        size: usize,
    ) -> Result<Reservation, AllocError> {
        self.reserve_extent(chunks, size)
    }

    /// Builds the run's volatile state if it does not exist yet.
    pub(crate) fn ensure_run(&self, head: u32, class: u8) {
        self.run_state(head, class);
    }
}
