//! The persistent heap: create, open (with recovery), and the typed object API.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use arch::Media;

use crate::chunk::ChunkEntry;
use crate::class::{GEOMETRY, NCLASSES};
use crate::error::{CreateError, DestFault, OpenError, PtrError};
use crate::header::{HeaderState, ObjHeader, HEADER_BYTES};
use crate::layout::{Layout, CHUNK, MIN_POOL, PAGE, ROOT_SLOT};
use crate::op::PaddedLane;
use crate::pool_header::{layout_name, HeaderFault, PoolHeader, HEADER_LEN};
use crate::pptr::{from_bytes, PPtr, Persistent};
use crate::run::RunTable;
use crate::space::Space;

/// How to create a pool.
#[derive(Debug, Clone)]
pub struct CreateOptions<'a> {
    /// The application's layout name (at most 32 bytes), checked at open.
    pub layout: &'a str,
    /// Pool identity; give a random one (e.g. from `getrandom` or RDRAND).
    pub uuid: [u8; 16],
    /// Creation time, seconds since the Unix epoch (recorded only).
    pub creation_time: u64,
    /// Lanes (threads that can allocate at once without waiting).
    pub lanes: u32,
    /// Bytes set aside for the runtime's logs; `None` for the default (1/16 of the
    /// pool, between 256 KiB and 64 MiB).
    pub runtime_len: Option<usize>,
}

impl<'a> CreateOptions<'a> {
    /// Defaults with `layout` and `uuid`.
    pub fn new(layout: &'a str, uuid: [u8; 16]) -> Self {
        CreateOptions {
            layout,
            uuid,
            creation_time: 0,
            lanes: crate::layout::DEFAULT_LANES,
            runtime_len: None,
        }
    }
}

/// How to open a pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions<'a> {
    /// Require this layout name (`None`: accept any).
    pub layout: Option<&'a str>,
}

/// Which header copy open repaired from the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repaired {
    /// The primary (first page) was rewritten from the backup.
    Primary(HeaderFault),
    /// The backup (last page) was rewritten from the primary.
    Backup(HeaderFault),
}

/// What open found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// A header copy that was repaired.
    pub repaired: Option<Repaired>,
    /// Op records replayed by recovery.
    pub replayed: u32,
    /// Valid op records that were stale (their op had been superseded) and skipped.
    pub stale: u32,
    /// Records that failed their checksum (a crash mid-write) or validation.
    pub torn: u32,
    /// Damage found (chunks or headers that are not valid): what and where.
    pub damage: Vec<Damage>,
}

/// A damaged structure found and set aside (never used, never trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// What.
    pub what: &'static str,
    /// Where (pool offset).
    pub offset: u64,
}

/// Where an object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// Slot `idx` of the run headed at `head`.
    Slot { head: u32, class: u8, idx: usize },
    /// The extent headed at `head`, `len` chunks.
    Extent { head: u32, len: u32 },
}

/// A located object slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub obj: u64,
    pub hdr_off: usize,
    pub home: Home,
    /// Bytes available from `obj`.
    pub capacity: u64,
}

/// A chunk span as the table describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    Run { head: u32, class: u8, len: u32 },
    Extent { head: u32, len: u32 },
}

impl Span {
    /// The span a chunk op leaves its chunks in (`None`: free).
    pub(crate) fn after(op: &crate::chunk::ChunkOp) -> Option<Span> {
        match op.to {
            crate::chunk::SpanKind::Free => None,
            crate::chunk::SpanKind::Run(class) => Some(Span::Run {
                head: op.start,
                class,
                len: op.count,
            }),
            crate::chunk::SpanKind::Extent => Some(Span::Extent {
                head: op.start,
                len: op.count,
            }),
        }
    }
}

/// What an object is, from its valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjInfo {
    /// Its offset.
    pub ptr: u64,
    /// Size the user asked for.
    pub size: u64,
    /// Type number.
    pub type_num: u32,
    /// Whether it is an extent (whole chunks) rather than a run slot.
    pub extent: bool,
}

impl ObjInfo {
    pub(crate) fn of(ptr: u64, h: &ObjHeader) -> Self {
        ObjInfo {
            ptr,
            size: h.size,
            type_num: h.type_num,
            extent: h.extent(),
        }
    }
}

/// Where an object's header lives and how many bytes its slot or extent holds
/// ([`Heap::slot_on_media`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjSlot {
    /// Pool offset of its 16-byte header (in its run's header array, or in its
    /// extent's head chunk descriptor).
    pub hdr_off: u64,
    /// Bytes the slot or extent holds from the object's start.
    pub capacity: u64,
    /// Whether it is an extent (whole chunks) rather than a run slot.
    pub extent: bool,
}

/// Numbers the heaps of the process ([`Heap::claim`]).
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A crash-consistent persistent heap over a [`Media`].
///
/// Atomic allocation ([`Heap::alloc_into`]) and free ([`Heap::free_from`]) publish to
/// (or clear) an 8-byte destination word in the pool together with the heap change:
/// after any crash, both happened or neither did, at one fence per operation. See
/// `docs/pool-format.md` and the `record` module for the protocol.
pub struct Heap<M: Media> {
    pub(crate) media: M,
    pub(crate) hdr: PoolHeader,
    pub(crate) layout: Layout,
    pub(crate) salt: u64,
    pub(crate) lanes: Box<[PaddedLane]>,
    pub(crate) runs: RunTable,
    /// The chunk table as validated spans, one word per chunk (see [`SpanMap`]): what
    /// runtime lookups read instead of decoding descriptors.
    pub(crate) map: SpanMap,
    pub(crate) queues: Box<[spin::Mutex<Vec<u32>>]>,
    pub(crate) space: spin::Mutex<Space>,
    pub(crate) damage: spin::Mutex<Vec<Damage>>,
    pub(crate) seq: AtomicU64,
    /// Heads of runs that became empty (all slots free) since the last checkpoint.
    pub(crate) empty_runs: spin::Mutex<Vec<u32>>,
    pub(crate) stat_checkpoints: AtomicU64,
    pub(crate) stat_settles: AtomicU64,
    /// A runtime claimed the atomic ops with a destination ([`Heap::claim`]).
    pub(crate) claimed: AtomicBool,
    /// This heap among the process's (for its claim; copies of one pool share a salt).
    pub(crate) instance: u64,
    pub(crate) stat_released_runs: AtomicU64,
    /// Some op record may be valid on media (set by every op, cleared by
    /// [`Heap::settle`] with every lane held): settling is a load when there is none.
    pub(crate) unsettled: AtomicBool,
}

impl<M: Media> core::fmt::Debug for Heap<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("layout", &self.layout)
            .field("media", &self.media.info())
            .finish_non_exhaustive()
    }
}

impl<M: Media> Heap<M> {
    /// Formats `media` as an empty pool. Everything but the headers is written and made
    /// durable first, then the backup header, then the primary: a crash leaves either
    /// no valid pool or a complete one.
    pub fn create(media: M, opts: &CreateOptions<'_>) -> Result<Self, CreateError> {
        let name = layout_name(opts.layout).ok_or(CreateError::LayoutNameTooLong {
            len: opts.layout.len(),
        })?;
        let runtime_len = opts
            .runtime_len
            .unwrap_or_else(|| Layout::default_runtime_len(media.len()));
        let layout = Layout::compute(media.len(), opts.lanes, runtime_len)?;
        let hdr = PoolHeader {
            uuid: opts.uuid,
            layout_name: name,
            creation_time: opts.creation_time,
            flags: 0,
            layout,
        };
        // Invalidate both header copies first, so a crash during create never leaves an
        // old pool's header describing new bytes.
        media.fill(0, HEADER_LEN, 0);
        media.fill(layout.backup_off, HEADER_LEN, 0);
        media.persist(0, HEADER_LEN);
        media.persist(layout.backup_off, HEADER_LEN);
        // Pool state, lanes and chunk descriptors start zeroed (zero = empty record,
        // free chunk). The runtime area is the runtime's to format.
        let meta_end = layout.runtime_off;
        media.write_nt(HEADER_LEN, &alloc::vec![0u8; meta_end - HEADER_LEN]);
        zero_nt(
            &media,
            layout.chunks_off,
            layout.heap_off - layout.chunks_off,
        );
        media.fence();
        let bytes = hdr.encode();
        media.write(layout.backup_off, &bytes);
        media.persist(layout.backup_off, HEADER_LEN);
        media.write(0, &bytes);
        media.persist(0, HEADER_LEN);
        Ok(Self::assemble(media, hdr))
    }

    fn assemble(media: M, hdr: PoolHeader) -> Self {
        let layout = hdr.layout;
        let lanes: Vec<PaddedLane> = (0..layout.nlanes).map(PaddedLane::new).collect();
        let queues: Vec<spin::Mutex<Vec<u32>>> = (0..NCLASSES)
            .map(|_| spin::Mutex::new(Vec::new()))
            .collect();
        Heap {
            salt: hdr.salt(),
            hdr,
            layout,
            lanes: lanes.into_boxed_slice(),
            runs: RunTable::new(layout.nchunks),
            map: SpanMap::new(layout.nchunks),
            queues: queues.into_boxed_slice(),
            space: spin::Mutex::new(Space::new()),
            damage: spin::Mutex::new(Vec::new()),
            seq: AtomicU64::new(1),
            empty_runs: spin::Mutex::new(Vec::new()),
            stat_checkpoints: AtomicU64::new(0),
            stat_settles: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
            instance: NEXT_INSTANCE.fetch_add(1, Relaxed),
            stat_released_runs: AtomicU64::new(0),
            unsettled: AtomicBool::new(false),
            media,
        }
        .with_fresh_space()
    }

    fn with_fresh_space(self) -> Self {
        // Fresh pool: the whole heap is one free span.
        self.space.lock().give(0, self.layout.nchunks as u32);
        self
    }

    /// Opens the pool on `media`: validates and if needed repairs the header copies,
    /// replays op records left by a crash, and indexes the chunk table. Damage it can
    /// work around (a bad chunk descriptor, a bad object header) is set aside and listed
    /// in the report; damage it cannot is an error. Never reads or writes outside the
    /// media.
    pub fn open(media: M, opts: &OpenOptions<'_>) -> Result<(Self, OpenReport), OpenError> {
        let len = media.len();
        if len < MIN_POOL {
            return Err(OpenError::TooSmall { len });
        }
        let mut report = OpenReport::default();
        let read_hdr = |off: usize| {
            let mut b = [0u8; HEADER_LEN];
            media.read(off, &mut b);
            PoolHeader::decode(&b)
        };
        let guess_backup = len / PAGE * PAGE - PAGE;
        let hdr = match read_hdr(0) {
            Ok(h) => {
                if h.layout.pool_size > len {
                    return Err(OpenError::SizeMismatch {
                        header: h.layout.pool_size,
                        media: len,
                    });
                }
                match read_hdr(h.layout.backup_off) {
                    Ok(b) if b == h => {}
                    other => {
                        let why = other.err().unwrap_or(HeaderFault::InconsistentLayout);
                        media.write(h.layout.backup_off, &h.encode());
                        media.persist(h.layout.backup_off, HEADER_LEN);
                        report.repaired = Some(Repaired::Backup(why));
                    }
                }
                h
            }
            Err(primary) => match read_hdr(guess_backup) {
                Ok(b) if b.layout.backup_off == guess_backup && b.layout.pool_size <= len => {
                    media.write(0, &b.encode());
                    media.persist(0, HEADER_LEN);
                    report.repaired = Some(Repaired::Primary(primary));
                    b
                }
                Ok(_) => {
                    return Err(OpenError::NoValidHeader {
                        primary,
                        backup: HeaderFault::InconsistentLayout,
                    })
                }
                Err(backup) => return Err(OpenError::NoValidHeader { primary, backup }),
            },
        };
        if let Some(want) = opts.layout {
            if layout_name(want) != Some(hdr.layout_name) {
                return Err(OpenError::WrongLayout {
                    found: hdr.layout_name,
                });
            }
        }
        let heap = Self::assemble_empty(media, hdr);
        heap.recover(&mut report);
        heap.index_chunks(&mut report);
        report.damage.clone_from(&heap.damage.lock());
        Ok((heap, report))
    }

    fn assemble_empty(media: M, hdr: PoolHeader) -> Self {
        let h = Self::assemble(media, hdr);
        *h.space.lock() = Space::new();
        h
    }

    /// Makes every completed operation's home durable, invalidates the op records, and
    /// hands the media back. Dropping a heap without `close` is safe too: the records
    /// make every completed operation durable; the next open replays them.
    pub fn close(self) -> M {
        self.checkpoint();
        self.media
    }

    /// The media.
    pub fn media(&self) -> &M {
        &self.media
    }

    /// The pool's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The static header.
    pub fn pool_header(&self) -> &PoolHeader {
        &self.hdr
    }

    /// The runtime area: `(offset, length)`, owned by the runtime (`pmrt`).
    pub fn runtime_area(&self) -> (usize, usize) {
        (self.layout.runtime_off, self.layout.runtime_len)
    }

    /// The pool salt mixed into checksums.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// Damage found so far (at open, while loading runs, in checks).
    pub fn damage(&self) -> Vec<Damage> {
        self.damage.lock().clone()
    }

    pub(crate) fn note_damage(&self, what: &'static str, offset: u64) {
        let mut d = self.damage.lock();
        if !d.iter().any(|x| x.offset == offset && x.what == what) {
            d.push(Damage { what, offset });
        }
    }

    // ---- locating objects -------------------------------------------------------

    pub(crate) fn entry(&self, c: usize) -> Result<ChunkEntry, crate::chunk::BadEntry> {
        ChunkEntry::decode(
            self.media.read_u64(self.layout.desc_off(c)),
            c as u32,
            self.salt,
        )
    }

    /// The span covering chunk `c` as the chunk table on media says, validated (head
    /// entry covers `c`), if `c` is used. Recovery and the walkers read this; the
    /// runtime reads [`Heap::span_of`], the same thing kept in DRAM.
    pub(crate) fn span_on_media(&self, c: usize) -> Option<Span> {
        let head = match self.entry(c).ok()? {
            ChunkEntry::Free => return None,
            ChunkEntry::Run { .. } | ChunkEntry::Extent { .. } => c,
            ChunkEntry::RunCont { head } | ChunkEntry::ExtentCont { head } => head as usize,
        };
        let span = match self.entry(head).ok()? {
            ChunkEntry::Run { class, len } if GEOMETRY[class as usize].chunks == len as usize => {
                Span::Run {
                    head: head as u32,
                    class,
                    len,
                }
            }
            ChunkEntry::Extent { len } => Span::Extent {
                head: head as u32,
                len,
            },
            _ => return None,
        };
        let (h, l) = match span {
            Span::Run { head, len, .. } | Span::Extent { head, len } => {
                (head as usize, len as usize)
            }
        };
        (c < h + l && h + l <= self.layout.nchunks).then_some(span)
    }

    /// The span covering chunk `c`, from the span map (the validated chunk table, kept
    /// in step with it by every change after open).
    #[inline]
    pub(crate) fn span_of(&self, c: usize) -> Option<Span> {
        self.map.get(c)
    }

    /// The slot or extent that holds pool offset `off` (anywhere inside it), by the
    /// span map.
    #[inline]
    pub(crate) fn slot_containing(&self, off: u64) -> Option<Loc> {
        let off_us = usize::try_from(off).ok()?;
        let c = self.layout.chunk_of(off_us)?;
        self.slot_in(off_us, self.span_of(c)?)
    }

    /// As [`Heap::slot_containing`], by the chunk table on media (recovery).
    pub(crate) fn slot_containing_on_media(&self, off: u64) -> Option<Loc> {
        let off_us = usize::try_from(off).ok()?;
        let c = self.layout.chunk_of(off_us)?;
        self.slot_in(off_us, self.span_on_media(c)?)
    }

    #[inline]
    fn slot_in(&self, off_us: usize, span: Span) -> Option<Loc> {
        match span {
            Span::Run { head, class, .. } => {
                let g = &GEOMETRY[class as usize];
                let run_off = self.layout.chunk_off(head as usize);
                // Past the slots (the run's unused tail, or beyond a span a damaged
                // table made too long) is no slot; below that `slot_index` is exact.
                let x = off_us.checked_sub(run_off + g.data_off)?;
                if x >= g.nslots * g.slot {
                    return None;
                }
                let idx = g.slot_index(x);
                Some(Loc {
                    obj: (run_off + g.data_off + idx * g.slot) as u64,
                    hdr_off: run_off + idx * HEADER_BYTES,
                    home: Home::Slot { head, class, idx },
                    capacity: g.slot as u64,
                })
            }
            Span::Extent { head, len } => Some(Loc {
                obj: self.layout.chunk_off(head as usize) as u64,
                hdr_off: self.layout.desc_off(head as usize) + 16,
                home: Home::Extent { head, len },
                capacity: u64::from(len) * CHUNK as u64,
            }),
        }
    }

    /// The object starting exactly at `off`.
    pub(crate) fn slot_at(&self, off: u64) -> Result<Loc, PtrError> {
        Self::starting_at(off, self.slot_containing(off))
    }

    /// `loc` (the slot or extent holding `off`) if it starts exactly at `off`.
    #[inline]
    fn starting_at(off: u64, loc: Option<Loc>) -> Result<Loc, PtrError> {
        if off == 0 {
            return Err(PtrError::Null);
        }
        let loc = loc.ok_or(PtrError::OutOfRange { offset: off })?;
        if loc.obj != off {
            return Err(PtrError::NotAnObject { offset: off });
        }
        Ok(loc)
    }

    #[inline(always)]
    pub(crate) fn read_header(&self, loc: &Loc) -> HeaderState {
        // Header offsets are 16-aligned: two word loads.
        let words = [
            self.media.read_u64(loc.hdr_off),
            self.media.read_u64(loc.hdr_off + 8),
        ];
        ObjHeader::decode(words, loc.obj, self.salt)
    }

    /// The allocated object at `off` and its header.
    #[inline(always)]
    pub(crate) fn object_at(&self, off: u64) -> Result<(Loc, ObjHeader), PtrError> {
        self.allocated_in(off, self.slot_at(off)?)
    }

    /// `loc`'s header, if it is valid and allocated and fits `loc`.
    #[inline(always)]
    fn allocated_in(&self, off: u64, loc: Loc) -> Result<(Loc, ObjHeader), PtrError> {
        match self.read_header(&loc) {
            HeaderState::Valid(h) if h.allocated() => {
                if h.extent() != matches!(loc.home, Home::Extent { .. }) || h.size > loc.capacity {
                    return Err(PtrError::BadHeader { offset: off });
                }
                Ok((loc, h))
            }
            HeaderState::Valid(_) | HeaderState::Zero => {
                Err(PtrError::NotAllocated { offset: off })
            }
            HeaderState::Invalid => Err(PtrError::BadHeader { offset: off }),
        }
    }

    /// The object whose bytes hold the destination word `dest` of an atomic op
    /// ([`Heap::alloc_into`], [`Heap::free_from`]), or `None` for the root slot; the
    /// op's own typed error when `dest` cannot be one (the check the ops make first; a
    /// claiming runtime gets the same object through their `prepare` hooks).
    pub fn container_of(&self, dest: u64) -> Result<Option<u64>, DestFault> {
        Ok(self.check_dest(dest)?.map(|(loc, _)| loc.obj))
    }

    /// Checks that the 8 bytes at `dest` may hold a published pointer: the root slot, or
    /// inside an allocated object. Returns the container's generation.
    #[inline(always)]
    pub(crate) fn check_dest(&self, dest: u64) -> Result<Option<(Loc, ObjHeader)>, DestFault> {
        if !dest.is_multiple_of(8) {
            return Err(DestFault::Misaligned);
        }
        if dest == ROOT_SLOT as u64 {
            return Ok(None);
        }
        let loc = self.slot_containing(dest).ok_or(DestFault::OutOfRange)?;
        match self.read_header(&loc) {
            HeaderState::Valid(h) if h.allocated() && dest + 8 <= loc.obj + h.size => {
                Ok(Some((loc, h)))
            }
            _ => Err(DestFault::NotInObject),
        }
    }

    // ---- typed access -------------------------------------------------------------

    /// Validates `p`: an allocated object of `T`'s type number (unless 0) with room for
    /// a `T`.
    #[inline(always)]
    pub fn validate<T: Persistent>(&self, p: PPtr<T>) -> Result<ObjInfo, PtrError> {
        let (_, h) = self.object_at(p.raw())?;
        let need = core::mem::size_of::<T>();
        if T::TYPE_NUM != 0 && h.type_num != T::TYPE_NUM {
            return Err(PtrError::WrongType {
                offset: p.raw(),
                expected: T::TYPE_NUM,
                found: h.type_num,
            });
        }
        if (h.size as usize) < need {
            return Err(PtrError::TooSmall {
                offset: p.raw(),
                size: h.size,
                need,
            });
        }
        if !p.raw().is_multiple_of(core::mem::align_of::<T>() as u64) {
            return Err(PtrError::Misaligned {
                offset: p.raw(),
                align: core::mem::align_of::<T>(),
            });
        }
        Ok(ObjInfo::of(p.raw(), &h))
    }

    /// Reads the `T` that `p` points to (validated first).
    pub fn get<T: Persistent>(&self, p: PPtr<T>) -> Result<T, PtrError> {
        self.validate(p)?;
        let mut buf = alloc::vec![0u8; core::mem::size_of::<T>()];
        self.media.read(p.raw() as usize, &mut buf);
        Ok(from_bytes(&buf))
    }

    /// A reference to the `T` that `p` points to, on addressable media.
    ///
    /// # Safety
    /// While the reference lives, nothing may write the object (no transaction, no
    /// `write_persist`, no other thread), since that would be a data race.
    pub unsafe fn deref<T: Persistent>(&self, p: PPtr<T>) -> Result<&T, PtrError> {
        self.validate(p)?;
        let base = self.media.base_ptr().ok_or(PtrError::NotAddressable)?;
        // SAFETY: validated in range, aligned, large enough; the caller excludes writers;
        // `Persistent` accepts every bit pattern.
        Ok(unsafe { &*base.as_ptr().add(p.raw() as usize).cast::<T>() })
    }

    /// Reads `buf.len()` bytes at `off` inside the object `p` (validated).
    pub fn read_bytes<T: Persistent>(
        &self,
        p: PPtr<T>,
        off: usize,
        buf: &mut [u8],
    ) -> Result<(), PtrError> {
        let (_, h) = self.object_at(p.raw())?;
        if off as u64 + buf.len() as u64 > h.size {
            return Err(PtrError::TooSmall {
                offset: p.raw(),
                size: h.size,
                need: off + buf.len(),
            });
        }
        self.media.read(p.raw() as usize + off, buf);
        Ok(())
    }

    /// Writes `data` at `off` inside the object `p` and makes it durable (flush +
    /// fence): a non-atomic in-place update, like `pmemobj_memcpy_persist`. Use a
    /// transaction for failure atomicity.
    pub fn write_persist<T: Persistent>(
        &self,
        p: PPtr<T>,
        off: usize,
        data: &[u8],
    ) -> Result<(), PtrError> {
        let (loc, h) = self.object_at(p.raw())?;
        if off as u64 + data.len() as u64 > h.size {
            return Err(PtrError::TooSmall {
                offset: p.raw(),
                size: h.size,
                need: off + data.len(),
            });
        }
        // An op record still valid for a destination inside this object could be
        // replayed over these bytes after a crash: retire such records first.
        self.retire_records_in(loc.obj, h.size);
        let at = p.raw() as usize + off;
        self.media.write(at, data);
        self.media.persist(at, data.len());
        Ok(())
    }

    /// The root object, if one was published.
    pub fn root(&self) -> Option<PPtr<()>> {
        let raw = self.media.read_u64(ROOT_SLOT);
        (raw != 0 && self.object_at(raw).is_ok()).then_some(PPtr::from_raw(raw))
    }

    /// The destination offset of the root slot (for `alloc_into`).
    pub const ROOT: u64 = ROOT_SLOT as u64;

    /// Allocated objects' generations etc.: the header of `p`.
    #[inline(always)]
    pub fn info(&self, p: u64) -> Result<ObjInfo, PtrError> {
        let (_, h) = self.object_at(p)?;
        Ok(ObjInfo::of(p, &h))
    }

    /// As [`Heap::info`], but locating `p` by the chunk table on media instead of the
    /// span map: for a layer above that replays chunk-table words from its own log
    /// before the heap re-indexes ([`Heap::reindex`]).
    pub fn info_on_media(&self, p: u64) -> Result<ObjInfo, PtrError> {
        let loc = Self::starting_at(p, self.slot_containing_on_media(p))?;
        let (_, h) = self.allocated_in(p, loc)?;
        Ok(ObjInfo::of(p, &h))
    }

    /// Where the object starting at `p` keeps its header and how many bytes it may
    /// hold, by the chunk table on media (see [`Heap::info_on_media`]), whether or not
    /// it is allocated. `None` if `p` is not the start of a slot of a valid run or the
    /// head of a valid extent.
    pub fn slot_on_media(&self, p: u64) -> Option<ObjSlot> {
        let loc = Self::starting_at(p, self.slot_containing_on_media(p)).ok()?;
        Some(ObjSlot {
            hdr_off: loc.hdr_off as u64,
            capacity: loc.capacity,
            extent: matches!(loc.home, Home::Extent { .. }),
        })
    }
}

fn zero_nt<M: Media>(media: &M, off: usize, len: usize) {
    let zeros = [0u8; 16 * 1024];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len());
        media.write_nt(off + done, &zeros[..n]);
        done += n;
    }
}

/// The chunk table's validated spans in DRAM, one word per chunk: `0` = not in use
/// (free or set aside as damaged), else `kind (2) | class (8) << 2 | head (23) << 10 |
/// len (23) << 33` with kind 1 = run, 2 = extent. Built from the table at open and
/// changed with it (op apply, run release, transient runs); `Heap::check` compares
/// the two.
pub(crate) struct SpanMap(Box<[AtomicU64]>);

impl core::fmt::Debug for SpanMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpanMap")
            .field("chunks", &self.0.len())
            .finish()
    }
}

impl SpanMap {
    fn new(nchunks: usize) -> Self {
        SpanMap((0..nchunks).map(|_| AtomicU64::new(0)).collect())
    }

    fn word(span: Option<Span>) -> u64 {
        match span {
            None => 0,
            Some(Span::Run { head, class, len }) => {
                1 | (u64::from(class) << 2) | (u64::from(head) << 10) | (u64::from(len) << 33)
            }
            Some(Span::Extent { head, len }) => {
                2 | (u64::from(head) << 10) | (u64::from(len) << 33)
            }
        }
    }

    /// The span covering chunk `c`.
    #[inline]
    pub(crate) fn get(&self, c: usize) -> Option<Span> {
        let w = self.0.get(c)?.load(Relaxed);
        let head = ((w >> 10) & 0x7F_FFFF) as u32;
        let len = ((w >> 33) & 0x7F_FFFF) as u32;
        match w & 3 {
            1 => Some(Span::Run {
                head,
                class: ((w >> 2) & 0xFF) as u8,
                len,
            }),
            2 => Some(Span::Extent { head, len }),
            _ => None,
        }
    }

    /// Records `span` (or "not in use") for chunks `[start, start + n)`.
    pub(crate) fn set(&self, start: usize, n: usize, span: Option<Span>) {
        let w = Self::word(span);
        for c in &self.0[start..start + n] {
            c.store(w, Relaxed);
        }
    }
}
