//! The heap crash-cycle workload (format and op plans in [`pm_qemu_proto::heap`]).
//!
//! * [`write`]: the kernel's writer boot: create the pool, publish the root, run the
//!   seeded ops, print a line as each op returns;
//! * [`verify`]: the verifier boot: open (recover), `check()`, print the
//!   [`HeapView`], demand its self-consistency, and show the recovered heap still
//!   allocates and frees;
//! * [`HeapView`]: what a recovered pool holds (root, fields, objects with their
//!   tags), taken from a heap or rebuilt from the verifier's lines;
//! * [`History`]: the oracle. It replays the writer's lines (checking each op on the
//!   way: the planned field, its fences (two per allocation, one per free), no object handed
//!   out twice) and judges a view: every reported op visible, the op in flight entirely
//!   or not at all, no leak, no double allocation.

use alloc::vec::Vec;
use core::fmt;

use arch::Media;

use crate::Damaged;
use pm_qemu_proto::heap::{plan, uuid, HeapLine, Plan, FIELDS, FIELD_TYPE_BASE, LAYOUT, ROOT_TYPE};
use pmalloc::{
    AllocError, CheckError, CreateError, CreateOptions, FreeError, Heap, Init, OpenError,
    OpenOptions, PPtr,
};

/// Size of the root object.
pub const ROOT_SIZE: u64 = (FIELDS * 8) as u64;

/// The tag an object of `size` bytes carries: the plan's tag cut to the object (an
/// object under 8 bytes holds only the tag's low bytes).
pub fn tag_for(size: u64, tag: u64) -> u64 {
    if size >= 8 {
        tag
    } else {
        tag & ((1u64 << (8 * size)) - 1)
    }
}

/// Why a writer or verifier boot failed (never an expected outcome of a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The pool could not be created.
    Create(CreateError),
    /// The pool exists but does not open (only a missing pool is a crash outcome).
    Open(OpenError),
    /// Open set damaged structures aside.
    Damage(Damaged),
    /// The root could not be allocated.
    RootAlloc(AllocError),
    /// An allocation failed other than for lack of space.
    Alloc {
        /// The op.
        op: u64,
        /// Why.
        error: AllocError,
    },
    /// A free failed.
    Free {
        /// The op.
        op: u64,
        /// Why.
        error: FreeError,
    },
    /// `check()` failed.
    Check(CheckError),
    /// The recovered heap is not self-consistent.
    View(ViewError),
    /// The recovered heap could not allocate into a null field.
    ExerciseAlloc {
        /// The field.
        field: usize,
        /// Why.
        error: AllocError,
    },
    /// The recovered heap could not free what it just allocated.
    ExerciseFree {
        /// The field.
        field: usize,
        /// Why.
        error: FreeError,
    },
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadError::Create(e) => write!(f, "create: {e}"),
            WorkloadError::Open(e) => write!(f, "open: {e}"),
            WorkloadError::Damage(e) => write!(f, "{e}"),
            WorkloadError::RootAlloc(e) => write!(f, "root: {e}"),
            WorkloadError::Alloc { op, error } => write!(f, "op {op}: alloc: {error}"),
            WorkloadError::Free { op, error } => write!(f, "op {op}: free: {error}"),
            WorkloadError::Check(e) => write!(f, "{e}"),
            WorkloadError::View(e) => write!(f, "{e}"),
            WorkloadError::ExerciseAlloc { field, error } => {
                write!(f, "after recovery, alloc into field {field}: {error}")
            }
            WorkloadError::ExerciseFree { field, error } => {
                write!(f, "after recovery, free from field {field}: {error}")
            }
        }
    }
}

impl core::error::Error for WorkloadError {}

/// Runs the writer: creates the pool on `media` ([`LAYOUT`], the seed's UUID),
/// publishes the root, and runs ops `0..ops`, calling `out` with `heap ready` and then
/// one `heap op` line per op, each only after the op returned. `fences` reads the
/// media's fence count. The heap is returned unclosed: a finished writer leaves the
/// pool as a crash after its last op would, so every cycle exercises recovery.
pub fn write<M: Media>(
    media: M,
    seed: u64,
    ops: u32,
    fences: &dyn Fn() -> u64,
    out: &mut dyn FnMut(HeapLine),
) -> Result<Heap<M>, WorkloadError> {
    let heap = Heap::create(media, &CreateOptions::new(LAYOUT, uuid(seed)))
        .map_err(WorkloadError::Create)?;
    let root = heap
        .alloc_into(Heap::<M>::ROOT, FIELDS * 8, 8, ROOT_TYPE, Init::Zeroed)
        .map_err(WorkloadError::RootAlloc)?;
    out(HeapLine::Ready {
        root: root.raw(),
        fences: fences(),
    });
    let mut values = [0u64; FIELDS];
    for op in 0..u64::from(ops) {
        let p = plan(seed, op);
        let dest = root.field(p.field * 8);
        if values[p.field] == 0 {
            let tag = p.tag.to_le_bytes();
            match heap.alloc_into(
                dest,
                p.size as usize,
                p.align as usize,
                p.type_num,
                Init::Bytes(&tag),
            ) {
                Ok(ptr) => values[p.field] = ptr.raw(),
                Err(AllocError::OutOfSpace { .. }) => {}
                Err(error) => return Err(WorkloadError::Alloc { op, error }),
            }
        } else {
            heap.free_from(dest)
                .map_err(|error| WorkloadError::Free { op, error })?;
            values[p.field] = 0;
        }
        out(HeapLine::Op {
            op,
            field: p.field,
            value: values[p.field],
            fences: fences(),
        });
    }
    Ok(heap)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// No valid pool header (a crash before create completed): why.
    NoPool(OpenError),
    /// The recovered pool.
    Pool(HeapView),
}

/// Runs the verifier: opens the pool on `media`, printing `heap no-pool` when there is
/// no valid header, else `heap opened`, then `check()`, the view's lines, its
/// self-check, and an exercise: allocate into every null field and free again, check
/// once more, close. Any other open error, damage, or a failed check is an error.
pub fn verify<M: Media>(
    media: M,
    out: &mut dyn FnMut(HeapLine),
) -> Result<Verified, WorkloadError> {
    let opts = OpenOptions {
        layout: Some(LAYOUT),
    };
    let (heap, report) = match Heap::open(media, &opts) {
        Ok(h) => h,
        Err(e @ OpenError::NoValidHeader { .. }) => {
            out(HeapLine::NoPool);
            return Ok(Verified::NoPool(e));
        }
        Err(e) => return Err(WorkloadError::Open(e)),
    };
    out(HeapLine::Opened {
        replayed: report.replayed,
        stale: report.stale,
        torn: report.torn,
        damage: report.damage.len() as u32,
    });
    Damaged::check(&report).map_err(WorkloadError::Damage)?;
    heap.check().map_err(WorkloadError::Check)?;
    let view = HeapView::of(&heap);
    for line in view.lines() {
        out(line);
    }
    view.self_check().map_err(WorkloadError::View)?;
    exercise(&heap, &view)?;
    heap.close();
    Ok(Verified::Pool(view))
}

/// Allocates into every null field of the root and frees again, checking the heap
/// after each round: recovery left a heap that works, not just one that reads.
fn exercise<M: Media>(heap: &Heap<M>, view: &HeapView) -> Result<(), WorkloadError> {
    if view.root == 0 {
        return Ok(());
    }
    let root = PPtr::<()>::from_raw(view.root);
    let null = || (0..FIELDS).filter(|&i| view.fields[i] == 0);
    for i in null() {
        heap.alloc_into(root.field(i * 8), 24 + i * 40, 8, 99, Init::Zeroed)
            .map_err(|error| WorkloadError::ExerciseAlloc { field: i, error })?;
    }
    heap.check().map_err(WorkloadError::Check)?;
    for i in null() {
        heap.free_from(root.field(i * 8))
            .map_err(|error| WorkloadError::ExerciseFree { field: i, error })?;
    }
    heap.check().map_err(WorkloadError::Check)?;
    Ok(())
}

/// One allocated object of a recovered pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectView {
    /// Its offset.
    pub ptr: u64,
    /// Its size.
    pub size: u64,
    /// Its type number.
    pub type_num: u32,
    /// Its first `min(size, 8)` bytes, little-endian.
    pub tag: u64,
}

/// What a recovered pool holds: the root, its fields, and every allocated object in
/// pool order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapView {
    /// The root object's offset, 0 if none was published.
    pub root: u64,
    /// The root's fields (all 0 without a root).
    pub fields: [u64; FIELDS],
    /// Every allocated object, by offset.
    pub objects: Vec<ObjectView>,
}

/// A view that is not self-consistent: a leak, a double allocation, or a field that
/// names no object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViewError {
    /// Objects are allocated but no root names them.
    Rootless {
        /// The first object's offset.
        ptr: u64,
    },
    /// The root is not an allocated object of the root's type and size.
    BadRoot {
        /// The root's offset.
        root: u64,
    },
    /// A field names no allocated object.
    Dangling {
        /// The field.
        field: usize,
        /// Its value.
        value: u64,
    },
    /// A field's object has another field's type.
    FieldType {
        /// The field.
        field: usize,
        /// The object's type.
        found: u32,
    },
    /// Two fields name one object (or a field names the root): a double allocation.
    Shared {
        /// The first field.
        first: usize,
        /// The second field (`usize::MAX`: the root).
        second: usize,
        /// The object.
        ptr: u64,
    },
    /// An allocated object named by neither the root slot nor a field: a leak.
    Leak {
        /// The object.
        ptr: u64,
    },
    /// Two objects overlap.
    Overlap {
        /// The lower object.
        first: u64,
        /// The object starting inside it.
        second: u64,
    },
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewError::Rootless { ptr } => write!(f, "object {ptr:#x} allocated without a root"),
            ViewError::BadRoot { root } => write!(f, "root {root:#x} is not a root object"),
            ViewError::Dangling { field, value } => {
                write!(f, "field {field} = {value:#x} names no allocated object")
            }
            ViewError::FieldType { field, found } => {
                write!(f, "field {field}'s object has type {found}")
            }
            ViewError::Shared { first, second, ptr } => {
                write!(
                    f,
                    "object {ptr:#x} named twice (fields {first} and {second})"
                )
            }
            ViewError::Leak { ptr } => write!(f, "object {ptr:#x} leaked: nothing names it"),
            ViewError::Overlap { first, second } => {
                write!(f, "objects {first:#x} and {second:#x} overlap")
            }
        }
    }
}

impl core::error::Error for ViewError {}

impl HeapView {
    /// The view of an open heap.
    pub fn of<M: Media>(heap: &Heap<M>) -> Self {
        let root = heap.root().map_or(0, PPtr::raw);
        let mut fields = [0u64; FIELDS];
        if root != 0 && heap.info(root).is_ok_and(|o| o.size >= ROOT_SIZE) {
            for (i, f) in fields.iter_mut().enumerate() {
                *f = heap.media().read_u64(root as usize + i * 8);
            }
        }
        let objects = heap
            .objects()
            .map(|o| {
                let mut tag = [0u8; 8];
                let n = o.size.min(8) as usize;
                heap.media().read(o.ptr as usize, &mut tag[..n]);
                ObjectView {
                    ptr: o.ptr,
                    size: o.size,
                    type_num: o.type_num,
                    tag: u64::from_le_bytes(tag),
                }
            })
            .collect();
        HeapView {
            root,
            fields,
            objects,
        }
    }

    /// The verifier's lines for this view: root, fields, objects.
    pub fn lines(&self) -> impl Iterator<Item = HeapLine> + '_ {
        core::iter::once(HeapLine::Root(self.root))
            .chain(
                self.fields
                    .iter()
                    .enumerate()
                    .map(|(index, &value)| HeapLine::Field { index, value }),
            )
            .chain(self.objects.iter().map(|o| HeapLine::Object {
                ptr: o.ptr,
                size: o.size,
                type_num: o.type_num,
                tag: o.tag,
            }))
    }

    /// Rebuilds a view from the verifier's lines (other lines are skipped): `None` if
    /// they hold no `heap root` line.
    pub fn from_lines(lines: impl Iterator<Item = HeapLine>) -> Option<Self> {
        let mut view = HeapView {
            root: 0,
            fields: [0; FIELDS],
            objects: Vec::new(),
        };
        let mut rooted = false;
        for line in lines {
            match line {
                HeapLine::Root(r) => {
                    view.root = r;
                    rooted = true;
                }
                HeapLine::Field { index, value } => view.fields[index] = value,
                HeapLine::Object {
                    ptr,
                    size,
                    type_num,
                    tag,
                } => view.objects.push(ObjectView {
                    ptr,
                    size,
                    type_num,
                    tag,
                }),
                _ => {}
            }
        }
        view.objects.sort_unstable();
        rooted.then_some(view)
    }

    /// The object at `ptr`.
    pub fn object(&self, ptr: u64) -> Option<&ObjectView> {
        self.objects
            .binary_search_by_key(&ptr, |o| o.ptr)
            .ok()
            .map(|i| &self.objects[i])
    }

    /// The invariants any recovered pool of this workload must meet, whatever the
    /// writer did: the root is a root object; every non-null field names an allocated
    /// object of its field's type, and no two name the same one (no double
    /// allocation); every allocated object is the root or named by a field (no leak);
    /// no two objects overlap.
    pub fn self_check(&self) -> Result<(), ViewError> {
        for pair in self.objects.windows(2) {
            if pair[1].ptr < pair[0].ptr + pair[0].size {
                return Err(ViewError::Overlap {
                    first: pair[0].ptr,
                    second: pair[1].ptr,
                });
            }
        }
        if self.root == 0 {
            return match self.objects.first() {
                Some(o) => Err(ViewError::Rootless { ptr: o.ptr }),
                None => Ok(()),
            };
        }
        match self.object(self.root) {
            Some(o) if o.type_num == ROOT_TYPE && o.size == ROOT_SIZE => {}
            _ => return Err(ViewError::BadRoot { root: self.root }),
        }
        for (i, &value) in self.fields.iter().enumerate() {
            if value == 0 {
                continue;
            }
            if value == self.root {
                return Err(ViewError::Shared {
                    first: i,
                    second: usize::MAX,
                    ptr: value,
                });
            }
            if let Some(j) = (0..i).find(|&j| self.fields[j] == value) {
                return Err(ViewError::Shared {
                    first: j,
                    second: i,
                    ptr: value,
                });
            }
            let o = self
                .object(value)
                .ok_or(ViewError::Dangling { field: i, value })?;
            if o.type_num != FIELD_TYPE_BASE + i as u32 {
                return Err(ViewError::FieldType {
                    field: i,
                    found: o.type_num,
                });
            }
        }
        match self
            .objects
            .iter()
            .find(|o| o.ptr != self.root && !self.fields.contains(&o.ptr))
        {
            Some(o) => Err(ViewError::Leak { ptr: o.ptr }),
            None => Ok(()),
        }
    }
}

/// A field's object as the writer's reported ops left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Slot {
    value: u64,
    size: u64,
    type_num: u32,
    tag: u64,
}

impl Slot {
    fn of_plan(value: u64, p: &Plan) -> Self {
        Slot {
            value,
            size: p.size,
            type_num: p.type_num,
            tag: tag_for(p.size, p.tag),
        }
    }
}

/// The op the writer was running when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Its number.
    pub op: u64,
    /// Its plan.
    pub plan: Plan,
    /// Whether it allocates (the field was null) rather than frees.
    pub alloc: bool,
}

/// What a judged cycle showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Ops the writer reported.
    pub committed: u64,
    /// The op in flight, if the writer stopped inside the workload.
    pub in_flight: Option<u64>,
    /// Whether the op in flight is visible (it completed but was not reported).
    pub applied: bool,
    /// Non-null fields after recovery.
    pub live: usize,
    /// Whether the pool (with its root) had been reported ready.
    pub ready: bool,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.ready {
            return write!(f, "stopped before the pool was ready");
        }
        write!(
            f,
            "{} ops reported, {} live fields",
            self.committed, self.live
        )?;
        match self.in_flight {
            Some(op) if self.applied => write!(f, ", op {op} in flight: applied"),
            Some(op) => write!(f, ", op {op} in flight: not applied"),
            None => write!(f, ", all ops done"),
        }
    }
}

/// Where the writer's lines or a recovered pool broke the workload's invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryError {
    /// A writer line out of order (an op before `ready`, a skipped op number, a second
    /// `ready`).
    Sequence {
        /// The op number expected next.
        expected: u64,
        /// The line's op number (`u64::MAX` for a `ready` line).
        found: u64,
    },
    /// An op reported on another field than its plan names.
    WrongField {
        /// The op.
        op: u64,
        /// The field reported.
        field: usize,
    },
    /// A free reported a non-null value, or an allocation handed out the root or an
    /// object another field holds.
    BadValue {
        /// The op.
        op: u64,
        /// The value reported.
        value: u64,
    },
    /// An op issued another number of fences than its own: one for a free, two for
    /// an allocation (its initial bytes, its record), zero for an allocation that
    /// found no space; an allocation that opens a fresh run may issue one more, after
    /// zeroing the run's header array.
    Fences {
        /// The op.
        op: u64,
        /// Fences expected after it.
        expected: u64,
        /// Fences reported after it.
        found: u64,
    },
    /// A crash at fence `fence`: the last line should report `fence - 1` fences (down
    /// to `fence - 3` when an allocation was in flight).
    CrashFence {
        /// The crash fence.
        fence: u64,
        /// Fences the last line reported.
        last: u64,
    },
    /// The pool was reported ready, but no valid pool was found.
    PoolLost,
    /// The root is not the one reported.
    RootChanged {
        /// Reported.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// Before `ready`, the only possible states are no root, or a root with null
    /// fields; a field was not null.
    EarlyField {
        /// The field.
        field: usize,
        /// Its value.
        value: u64,
    },
    /// A field differs from every state the ops allow (a lost or a phantom op).
    Field {
        /// The field.
        field: usize,
        /// Value expected (the committed one).
        expected: u64,
        /// Value found.
        found: u64,
    },
    /// A field's object differs from the one the op that allocated it made.
    Object {
        /// The field.
        field: usize,
        /// Which property.
        what: &'static str,
        /// Expected.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// The recovered pool is not self-consistent.
    View(ViewError),
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Sequence { expected, found } => {
                write!(f, "writer lines out of order: expected op {expected}, got {found}")
            }
            HistoryError::WrongField { op, field } => {
                write!(f, "op {op} reported on field {field}, not its planned field")
            }
            HistoryError::BadValue { op, value } => {
                write!(f, "op {op} reported the impossible value {value:#x}")
            }
            HistoryError::Fences {
                op,
                expected,
                found,
            } => write!(f, "op {op}: expected {expected} fences so far, found {found}"),
            HistoryError::CrashFence { fence, last } => write!(
                f,
                "crash at fence {fence}, but the last report was at fence {last}"
            ),
            HistoryError::PoolLost => write!(f, "the pool was reported ready but is gone"),
            HistoryError::RootChanged { expected, found } => {
                write!(f, "root is {found:#x}, reported {expected:#x}")
            }
            HistoryError::EarlyField { field, value } => write!(
                f,
                "field {field} = {value:#x} although no op had been reported"
            ),
            HistoryError::Field {
                field,
                expected,
                found,
            } => write!(
                f,
                "field {field} = {found:#x}: neither the committed {expected:#x} nor the op in flight"
            ),
            HistoryError::Object {
                field,
                what,
                expected,
                found,
            } => write!(
                f,
                "field {field}'s object {what}: expected {expected:#x}, found {found:#x}"
            ),
            HistoryError::View(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for HistoryError {}

/// The writer's reported progress, replayed: the oracle of a heap cycle.
#[derive(Debug, Clone)]
pub struct History {
    seed: u64,
    ops: u32,
    ready: Option<(u64, u64)>,
    fields: [Slot; FIELDS],
    next_op: u64,
    fences: u64,
}

impl History {
    /// Nothing reported yet, for a writer of `ops` ops seeded `seed`.
    pub fn new(seed: u64, ops: u32) -> Self {
        History {
            seed,
            ops,
            ready: None,
            fields: [Slot::default(); FIELDS],
            next_op: 0,
            fences: 0,
        }
    }

    /// Replays the writer's serial output. Lines other than `heap ready` and `heap
    /// op` are skipped, and so is a last line without its line end (a kill can cut a
    /// number short and leave a line that still parses).
    pub fn from_serial(seed: u64, ops: u32, serial: &str) -> Result<Self, HistoryError> {
        let mut h = History::new(seed, ops);
        let complete = match serial.rfind('\n') {
            Some(end) => &serial[..end],
            None => "",
        };
        for line in complete.lines().filter_map(HeapLine::parse) {
            h.record(line)?;
        }
        Ok(h)
    }

    /// Replays one writer line, checking it: `ready` once and first; ops in order, on
    /// their planned field; a free leaves null; an allocation hands out neither the
    /// root nor an object another field holds; one fence per free and two per
    /// allocation (the tag is initial bytes, made durable before the record), none
    /// for an allocation that found no space.
    pub fn record(&mut self, line: HeapLine) -> Result<(), HistoryError> {
        match line {
            HeapLine::Ready { root, fences } => {
                if self.ready.is_some() {
                    return Err(HistoryError::Sequence {
                        expected: self.next_op,
                        found: u64::MAX,
                    });
                }
                self.ready = Some((root, fences));
                self.fences = fences;
            }
            HeapLine::Op {
                op,
                field,
                value,
                fences,
            } => {
                let Some((root, _)) = self.ready else {
                    return Err(HistoryError::Sequence {
                        expected: u64::MAX,
                        found: op,
                    });
                };
                if op != self.next_op {
                    return Err(HistoryError::Sequence {
                        expected: self.next_op,
                        found: op,
                    });
                }
                let p = plan(self.seed, op);
                if field != p.field {
                    return Err(HistoryError::WrongField { op, field });
                }
                let before = self.fields[field].value;
                let bad = HistoryError::BadValue { op, value };
                let changed = if before == 0 {
                    if value == root || self.fields.iter().any(|s| value != 0 && s.value == value) {
                        return Err(bad);
                    }
                    self.fields[field] = Slot::of_plan(value, &p);
                    value != 0
                } else {
                    if value != 0 {
                        return Err(bad);
                    }
                    self.fields[field] = Slot::default();
                    true
                };
                // An allocation's tag is initial bytes: fenced before its record.
                let own = if before == 0 { 2 } else { 1 };
                let expected = self.fences + if changed { own } else { 0 };
                // The fresh-run fence: only an allocation that succeeded can open a run.
                let fresh_run = u64::from(changed && before == 0);
                if fences < expected || fences > expected + fresh_run {
                    return Err(HistoryError::Fences {
                        op,
                        expected,
                        found: fences,
                    });
                }
                self.fences = fences;
                self.next_op += 1;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ops reported.
    pub fn committed(&self) -> u64 {
        self.next_op
    }

    /// The op that was running when the writer stopped (`None` before `ready`, or
    /// when every op was reported).
    pub fn in_flight(&self) -> Option<InFlight> {
        self.ready?;
        (self.next_op < u64::from(self.ops)).then(|| {
            let plan = plan(self.seed, self.next_op);
            InFlight {
                op: self.next_op,
                plan,
                alloc: self.fields[plan.field].value == 0,
            }
        })
    }

    /// For a writer stopped by `crash_at=fence`: the last reported line must have
    /// counted `fence - 1` fences (the stopped fence belongs to the op in flight; the
    /// op before it returned and reported), or down to `fence - 3` when the op in
    /// flight is an allocation (its fresh run's fence, its initial bytes' fence, its
    /// record's). Nothing to check before `ready`.
    pub fn check_crash_fence(&self, fence: u64) -> Result<(), HistoryError> {
        let alloc = u64::from(self.in_flight().is_some_and(|f| f.alloc));
        let ok = (self.fences + 1..=self.fences + 1 + 2 * alloc).contains(&fence);
        if self.ready.is_some() && !ok {
            return Err(HistoryError::CrashFence {
                fence,
                last: self.fences,
            });
        }
        Ok(())
    }

    /// Judges the recovered pool (`None`: no valid pool was found).
    pub fn check(&self, view: Option<&HeapView>) -> Result<Verdict, HistoryError> {
        let Some((root, _)) = self.ready else {
            // Create or the root's allocation was in flight: no pool, an empty pool,
            // or a pool whose root holds null fields.
            if let Some(v) = view {
                v.self_check().map_err(HistoryError::View)?;
                if let Some(field) = (0..FIELDS).find(|&i| v.fields[i] != 0) {
                    return Err(HistoryError::EarlyField {
                        field,
                        value: v.fields[field],
                    });
                }
            }
            return Ok(Verdict {
                committed: 0,
                in_flight: None,
                applied: false,
                live: 0,
                ready: false,
            });
        };
        let v = view.ok_or(HistoryError::PoolLost)?;
        v.self_check().map_err(HistoryError::View)?;
        if v.root != root {
            return Err(HistoryError::RootChanged {
                expected: root,
                found: v.root,
            });
        }
        let flight = self.in_flight();
        let mut applied = false;
        for (i, &found) in v.fields.iter().enumerate() {
            let committed = self.fields[i];
            let expect = match flight {
                Some(f) if f.plan.field == i && found != committed.value => {
                    applied = true;
                    if f.alloc {
                        Slot::of_plan(found, &f.plan)
                    } else {
                        Slot::default()
                    }
                }
                _ => committed,
            };
            if found != expect.value {
                return Err(HistoryError::Field {
                    field: i,
                    expected: committed.value,
                    found,
                });
            }
            if found == 0 {
                continue;
            }
            let o = v
                .object(found)
                .ok_or(HistoryError::View(ViewError::Dangling {
                    field: i,
                    value: found,
                }))?;
            for (what, e, g) in [
                ("size", expect.size, o.size),
                ("type", expect.type_num.into(), o.type_num.into()),
                ("tag", expect.tag, o.tag),
            ] {
                if e != g {
                    return Err(HistoryError::Object {
                        field: i,
                        what,
                        expected: e,
                        found: g,
                    });
                }
            }
        }
        Ok(Verdict {
            committed: self.next_op,
            in_flight: flight.map(|f| f.op),
            applied,
            live: v.fields.iter().filter(|&&f| f != 0).count(),
            ready: true,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The writer and verifier on simulated media, and the oracle against hand-made
    //! histories: each way a crash could break the heap must be reported.

    use arch::sim::SimMedia;
    use pm_qemu_proto::heap::POOL_LEN;

    use super::*;

    const SEED: u64 = 0x5eed;

    fn run_writer(media: &SimMedia, ops: u32) -> Vec<HeapLine> {
        let mut lines = Vec::new();
        let heap = write(media, SEED, ops, &|| media.counters().fences, &mut |l| {
            lines.push(l);
        })
        .unwrap();
        drop(heap);
        lines
    }

    fn history(lines: &[HeapLine], ops: u32) -> Result<History, HistoryError> {
        let mut h = History::new(SEED, ops);
        for &l in lines {
            h.record(l)?;
        }
        Ok(h)
    }

    fn verified(media: &SimMedia) -> HeapView {
        match verify(media, &mut |_| {}).unwrap() {
            Verified::Pool(v) => v,
            Verified::NoPool(e) => panic!("no pool: {e}"),
        }
    }

    #[test]
    fn a_finished_writer_verifies_and_its_lines_replay() {
        let media = SimMedia::new(POOL_LEN as usize);
        let lines = run_writer(&media, 300);
        let h = history(&lines, 300).unwrap();
        assert_eq!(h.committed(), 300);
        let v = verified(&media);
        let verdict = h.check(Some(&v)).unwrap();
        assert!(verdict.ready && verdict.in_flight.is_none() && verdict.live > 0);
        // The verifier's lines rebuild the same view, and serial text replays.
        let rebuilt = HeapView::from_lines(v.lines()).unwrap();
        assert_eq!(rebuilt, v);
        let text = lines.iter().fold(String::new(), |mut t, l| {
            use std::fmt::Write as _;
            let _ = writeln!(t, "{l}");
            t
        });
        let h2 = History::from_serial(SEED, 300, &text).unwrap();
        assert_eq!(h2.committed(), 300);
        // A cut last line is ignored, not misread.
        let cut = &text[..text.len() - 3];
        assert_eq!(
            History::from_serial(SEED, 300, cut).unwrap().committed(),
            299
        );
        // The view after the verifier's exercise and close is unchanged.
        assert_eq!(verified(&media), v);
    }

    #[test]
    fn an_op_in_flight_may_be_applied_or_not_but_nothing_else_changes() {
        let media = SimMedia::new(POOL_LEN as usize);
        let lines = run_writer(&media, 40);
        let v = verified(&media);
        // Forget the last op's report: it becomes the op in flight, visible.
        let h = history(&lines[..lines.len() - 1], 40).unwrap();
        let verdict = h.check(Some(&v)).unwrap();
        assert_eq!((verdict.in_flight, verdict.applied), (Some(39), true));
        // The full history sees it done.
        let h = history(&lines, 40).unwrap();
        assert!(!h.check(Some(&v)).unwrap().applied);
        // Forgetting every op: op 0 is in flight, and the later ops' objects are
        // phantoms.
        let h = history(&lines[..1], 40).unwrap();
        assert!(matches!(h.check(Some(&v)), Err(HistoryError::Field { .. })));
    }

    #[test]
    fn lost_phantom_leaked_and_double_allocated_objects_are_reported() {
        let media = SimMedia::new(POOL_LEN as usize);
        let lines = run_writer(&media, 60);
        let h = history(&lines, 60).unwrap();
        let v = verified(&media);
        let live = (0..FIELDS).find(|&i| v.fields[i] != 0).unwrap();
        let other_live = (live + 1..FIELDS).find(|&i| v.fields[i] != 0).unwrap();
        let null = (0..FIELDS).find(|&i| v.fields[i] == 0).unwrap();
        // Lost: a committed object is gone (field null, object freed).
        let mut lost = v.clone();
        let gone = lost.fields[live];
        lost.fields[live] = 0;
        lost.objects.retain(|o| o.ptr != gone);
        assert!(matches!(
            h.check(Some(&lost)),
            Err(HistoryError::Field { field, .. }) if field == live
        ));
        // Leaked: the field cleared but the object still allocated.
        let mut leaked = v.clone();
        leaked.fields[live] = 0;
        assert_eq!(
            h.check(Some(&leaked)),
            Err(HistoryError::View(ViewError::Leak { ptr: gone }))
        );
        // Double allocation: two fields name one object.
        let mut double = v.clone();
        double.fields[other_live] = gone;
        assert!(matches!(
            h.check(Some(&double)),
            Err(HistoryError::View(ViewError::Shared { .. }))
        ));
        // Phantom: an object no op made appears in a null field.
        let mut phantom = v.clone();
        let end = phantom.objects.last().map_or(0, |o| o.ptr + o.size);
        phantom.fields[null] = end + 4096;
        phantom.objects.push(ObjectView {
            ptr: end + 4096,
            size: 8,
            type_num: FIELD_TYPE_BASE + null as u32,
            tag: 0,
        });
        assert!(matches!(
            h.check(Some(&phantom)),
            Err(HistoryError::Field { field, .. }) if field == null
        ));
        // A changed tag: the object is not the one the op made.
        let mut retagged = v.clone();
        let idx = retagged.objects.iter().position(|o| o.ptr == gone).unwrap();
        retagged.objects[idx].tag ^= 1;
        assert!(matches!(
            h.check(Some(&retagged)),
            Err(HistoryError::Object { what: "tag", .. })
        ));
        // The pool gone although ready was reported.
        assert_eq!(h.check(None), Err(HistoryError::PoolLost));
    }

    #[test]
    fn bad_writer_lines_are_reported() {
        let media = SimMedia::new(POOL_LEN as usize);
        let lines = run_writer(&media, 20);
        let HeapLine::Ready { root, fences } = lines[0] else {
            panic!("{:?}", lines[0]);
        };
        // An op before ready, a skipped op, a second ready.
        assert!(matches!(
            history(&lines[1..], 20),
            Err(HistoryError::Sequence { .. })
        ));
        let mut skipped = lines.clone();
        skipped.remove(3);
        assert!(matches!(
            history(&skipped, 20),
            Err(HistoryError::Sequence {
                expected: 2,
                found: 3
            })
        ));
        assert!(history(&[lines[0], lines[0]], 20).is_err());
        // A free that reports a value, an allocation of the root, an extra fence.
        let p = plan(SEED, 0);
        let op0 = |value, f| HeapLine::Op {
            op: 0,
            field: p.field,
            value,
            fences: f,
        };
        assert_eq!(
            history(&[lines[0], op0(root, fences + 1)], 20).unwrap_err(),
            HistoryError::BadValue { op: 0, value: root }
        );
        assert!(matches!(
            history(&[lines[0], op0(0x9000_0000, fences + 4)], 20),
            Err(HistoryError::Fences { op: 0, .. })
        ));
        let wrong_field = HeapLine::Op {
            op: 0,
            field: (p.field + 1) % FIELDS,
            value: 0,
            fences,
        };
        assert!(matches!(
            history(&[lines[0], wrong_field], 20),
            Err(HistoryError::WrongField { op: 0, .. })
        ));
        // The crash fence must follow the last report.
        let h = history(&lines[..5], 20).unwrap();
        let HeapLine::Op { fences: last, .. } = lines[4] else {
            panic!()
        };
        assert!(h.check_crash_fence(last + 1).is_ok());
        assert_eq!(
            h.check_crash_fence(last + 4),
            Err(HistoryError::CrashFence {
                fence: last + 4,
                last
            })
        );
    }

    #[test]
    fn before_ready_only_an_empty_pool_or_none_is_accepted() {
        let h = History::new(SEED, 10);
        assert!(h.check(None).is_ok());
        let empty = HeapView {
            root: 0,
            fields: [0; FIELDS],
            objects: Vec::new(),
        };
        assert!(h.check(Some(&empty)).is_ok());
        let media = SimMedia::new(POOL_LEN as usize);
        run_writer(&media, 30);
        let v = verified(&media);
        assert!(matches!(
            h.check(Some(&v)),
            Err(HistoryError::EarlyField { .. })
        ));
        // A pool without a valid header is reported as such by the verifier.
        let blank = SimMedia::new(POOL_LEN as usize);
        let mut lines = Vec::new();
        assert!(matches!(
            verify(&blank, &mut |l| lines.push(l)).unwrap(),
            Verified::NoPool(OpenError::NoValidHeader { .. })
        ));
        assert_eq!(lines, [HeapLine::NoPool]);
    }
}
