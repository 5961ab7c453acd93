//! The persistent heap (`pmalloc`) on NVDIMM pools: create, allocate into the root and
//! its fields, free, iterate, `check()`, close and reopen within one boot; sizes from
//! 1 byte to multi-chunk extents, alignments up to 4 KiB, typed errors for bad
//! destinations and bad requests, recovery of a pool dropped without `close`; one pool
//! on each of two NVDIMMs.
//!
//! Most tests run twice: on `RawMedia` over the whole of NVDIMM 0 (`_raw`), and on an
//! `AdrMedia` working copy of its first [`ADR_POOL`] bytes (`_adr`), where only flushed
//! lines reach the NVDIMM. The suite needs two NVDIMMs (`nvdimms=2`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use arch::{Media, RawMedia};
use pm_qemu_pool::pattern::byte;
use pmalloc::{
    AllocError, CreateOptions, DestFault, FreeError, Heap, Init, ObjInfo, OpenOptions, PPtr,
    PtrError,
};

use super::Kind;
use crate::adr::AdrMedia;
use crate::nvdimm::Nvdimm;
use crate::testing::{expect_eq, Env, Test, TestFailure};

/// Bytes of NVDIMM 0 an ADR-mode pool covers (its DRAM working copy is as large).
pub const ADR_POOL: u64 = 16 << 20;
/// Layout name of the suite's pools.
const LAYOUT: &str = "pm-kernel-suite";
/// The largest object a run slot holds; larger objects are extents.
const MAX_RUN_OBJECT: usize = 128 << 10;

/// The suite.
pub fn tests() -> &'static [Test] {
    const TESTS: &[Test] = on_both! {
        with_media;
        reopen: "pool_reopens_with_its_root_and_objects_raw",
            "pool_reopens_with_its_root_and_objects_adr";
        sizes: "sizes_from_1_byte_to_multi_chunk_extents_raw",
            "sizes_from_1_byte_to_multi_chunk_extents_adr";
        alignments: "alignments_up_to_4_kib_are_honoured_raw",
            "alignments_up_to_4_kib_are_honoured_adr";
        bad_destinations: "bad_destinations_are_typed_errors_raw",
            "bad_destinations_are_typed_errors_adr";
        bad_requests: "bad_sizes_types_and_frees_are_typed_errors_raw",
            "bad_sizes_types_and_frees_are_typed_errors_adr";
        iteration: "objects_iterate_in_pool_order_and_by_type_raw",
            "objects_iterate_in_pool_order_and_by_type_adr";
        exhaustion: "a_full_pool_says_out_of_space_and_recovers_when_freed_raw",
            "a_full_pool_says_out_of_space_and_recovers_when_freed_adr";
    };
    const MORE: &[Test] = &[
        Test {
            name: "pool_dropped_unclosed_recovers_from_the_nvdimm_raw",
            run: |env| unclosed(env, Kind::Raw),
        },
        Test {
            name: "pool_dropped_unclosed_recovers_from_the_nvdimm_adr",
            run: |env| unclosed(env, Kind::Adr),
        },
        Test {
            name: "two_nvdimms_hold_two_independent_pools",
            run: two_pools,
        },
    ];
    static ALL: spin::Once<Vec<Test>> = spin::Once::new();
    ALL.call_once(|| TESTS.iter().chain(MORE).copied().collect())
}

/// The media of a suite pool on NVDIMM 0.
fn pool_media(env: &Env, kind: Kind) -> Result<Box<dyn Media>, TestFailure> {
    let nv = &env.nvdimms()?[0];
    Ok(match kind {
        Kind::Raw => Box::new(nv.media()),
        Kind::Adr => Box::new(AdrMedia::new(nv.window(0, ADR_POOL)?)?),
    })
}

/// Runs `body` on the media of a suite pool of `kind`.
fn with_media(
    env: &Env,
    kind: Kind,
    body: fn(&Env, &dyn Media) -> Result<(), TestFailure>,
) -> Result<(), TestFailure> {
    body(env, &*pool_media(env, kind)?)
}

/// The UUID of a suite pool: from the seed and a salt, so pools never share one.
fn uuid(env: &Env, salt: u64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&pm_qemu_proto::mix64(env.args.seed ^ salt).to_le_bytes());
    u[8..].copy_from_slice(&salt.to_le_bytes());
    u
}

/// A fresh pool with a root of `fields` zeroed pointer fields.
fn pool_with_root<'m>(
    env: &Env,
    media: &'m dyn Media,
    fields: usize,
) -> Result<(Heap<&'m dyn Media>, PPtr<()>), TestFailure> {
    let heap = Heap::create(media, &CreateOptions::new(LAYOUT, uuid(env, fields as u64)))?;
    let root = heap.alloc_into(Heap::<&dyn Media>::ROOT, fields * 8, 8, 1, Init::Zeroed)?;
    Ok((heap, root))
}

/// Seeded bytes for object `i`.
fn contents(env: &Env, i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|off| byte(env.args.seed, i, off)).collect()
}

/// The object at `ptr` holds `expected`.
fn expect_contents<M: Media>(heap: &Heap<M>, ptr: u64, expected: &[u8]) -> Result<(), TestFailure> {
    let mut found = alloc::vec![0u8; expected.len()];
    heap.read_bytes(PPtr::<()>::from_raw(ptr), 0, &mut found)?;
    match (0..expected.len()).find(|&i| found[i] != expected[i]) {
        Some(i) => Err(TestFailure::Mismatch {
            what: "object byte",
            nvdimm: 0,
            offset: ptr as usize + i,
            expected: expected[i].into(),
            found: found[i].into(),
        }),
        None => Ok(()),
    }
}

/// `heap.objects()` yields exactly `expected`: the same offsets, sizes, types and
/// kinds, in the same order.
fn expect_objects<M: Media>(
    when: &'static str,
    heap: &Heap<M>,
    expected: &[ObjInfo],
) -> Result<(), TestFailure> {
    let found: Vec<ObjInfo> = heap.objects().collect();
    expect_eq(when, 0, 0, expected.len() as u64, found.len() as u64)?;
    for (e, f) in expected.iter().zip(&found) {
        let at = e.ptr as usize;
        expect_eq("object offset", 0, at, e.ptr, f.ptr)?;
        expect_eq("object size", 0, at, e.size, f.size)?;
        expect_eq("object type", 0, at, e.type_num.into(), f.type_num.into())?;
        expect_eq(
            "object is an extent",
            0,
            at,
            e.extent.into(),
            f.extent.into(),
        )?;
    }
    Ok(())
}

fn expect_alloc_err(
    what: &'static str,
    expected: AllocError,
    found: Result<PPtr<()>, AllocError>,
) -> Result<(), TestFailure> {
    let found = found.map(PPtr::raw);
    if found == Err(expected) {
        Ok(())
    } else {
        Err(TestFailure::AllocResult {
            what,
            expected,
            found,
        })
    }
}

fn expect_free_err(
    what: &'static str,
    expected: FreeError,
    found: Result<(), FreeError>,
) -> Result<(), TestFailure> {
    if found == Err(expected) {
        Ok(())
    } else {
        Err(TestFailure::FreeResult {
            what,
            expected,
            found,
        })
    }
}

const REOPEN_SIZES: [usize; 8] = [8, 40, 256, 1000, 4096, 70_000, 131_073, 600_000];

/// Objects allocated into root fields survive `close` and `open`: the same root, the
/// same objects in the same order with the same contents, a clean open report (nothing
/// replayed, torn, damaged or repaired) and a passing `check()`.
fn reopen(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    let (heap, root) = pool_with_root(env, media, REOPEN_SIZES.len())?;
    for (i, &size) in REOPEN_SIZES.iter().enumerate() {
        let bytes = contents(env, i, size);
        heap.alloc_into(
            root.field(i * 8),
            size,
            8,
            10 + i as u32,
            Init::Bytes(&bytes),
        )?;
    }
    heap.check()?;
    let before: Vec<ObjInfo> = heap.objects().collect();
    expect_eq(
        "objects before close",
        0,
        0,
        REOPEN_SIZES.len() as u64 + 1,
        before.len() as u64,
    )?;
    let media = heap.close();
    let (heap, report) = Heap::open(
        media,
        &OpenOptions {
            layout: Some(LAYOUT),
        },
    )?;
    let dirty = u64::from(report.replayed + report.torn)
        + report.damage.len() as u64
        + u64::from(report.repaired.is_some());
    expect_eq(
        "replayed + torn + damage + repaired after close",
        0,
        0,
        0,
        dirty,
    )?;
    heap.check()?;
    expect_eq(
        "root after reopen",
        0,
        0,
        root.raw(),
        heap.root().map_or(0, PPtr::raw),
    )?;
    expect_objects("after reopen", &heap, &before)?;
    for (i, &size) in REOPEN_SIZES.iter().enumerate() {
        let ptr = heap.media().read_u64(root.field(i * 8) as usize);
        expect_contents(&heap, ptr, &contents(env, i, size))?;
    }
    expect_eq(
        "stats.objects after reopen",
        0,
        0,
        before.len() as u64,
        heap.stats().objects,
    )
}

/// Every size from 1 byte across the class steps, the largest run class and the first
/// extent, to a six-chunk extent: allocated with its contents, described by `info`
/// (size, extent flag), listed by `objects()`, readable, freed (the field cleared, the
/// object gone), with `check()` passing after each step and the extents' chunks back
/// in the free count at the end.
fn sizes(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    const SIZES: [usize; 17] = [
        1,
        15,
        16,
        17,
        64,
        100,
        512,
        4096,
        20_000,
        65_536,
        MAX_RUN_OBJECT,
        MAX_RUN_OBJECT + 1,
        256 << 10,
        (256 << 10) + 1,
        700_000,
        1 << 20,
        1_500_000,
    ];
    let (heap, root) = pool_with_root(env, media, 1)?;
    let dest = root.field(0);
    for (i, &size) in SIZES.iter().enumerate() {
        let bytes = contents(env, i, size);
        let free_before = heap.check()?;
        let p = heap.alloc_into(dest, size, 8, 7, Init::Bytes(&bytes))?;
        expect_eq(
            "published pointer",
            0,
            i,
            p.raw(),
            heap.media().read_u64(dest as usize),
        )?;
        let info = heap.info(p.raw())?;
        expect_eq("info.size", 0, i, size as u64, info.size)?;
        expect_eq(
            "info.extent",
            0,
            i,
            u64::from(size > MAX_RUN_OBJECT),
            u64::from(info.extent),
        )?;
        expect_contents(&heap, p.raw(), &bytes)?;
        let listed = heap
            .objects()
            .any(|o| o.ptr == p.raw() && o.size == size as u64);
        expect_eq("objects() lists the new object", 0, i, 1, u64::from(listed))?;
        heap.check()?;
        heap.free_from(dest)?;
        expect_eq(
            "field after free",
            0,
            i,
            0,
            heap.media().read_u64(dest as usize),
        )?;
        if heap.info(p.raw()).is_ok() {
            return Err(TestFailure::Mismatch {
                what: "freed object still allocated",
                nvdimm: 0,
                offset: p.raw() as usize,
                expected: 0,
                found: 1,
            });
        }
        let free_after = heap.check()?;
        if size > MAX_RUN_OBJECT {
            expect_eq(
                "free chunks after freeing an extent",
                0,
                i,
                free_before,
                free_after,
            )?;
        }
    }
    expect_eq("objects left (the root)", 0, 0, 1, heap.stats().objects)
}

/// Every power-of-two alignment from 1 to 4096, with run and extent sizes, gives an
/// aligned object; alignments that are not a power of two or exceed 4096 are
/// `BadAlign` and change nothing.
fn alignments(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    let (heap, root) = pool_with_root(env, media, 1)?;
    let dest = root.field(0);
    for shift in 0..=12 {
        let align = 1usize << shift;
        for size in [1usize, 24, 100, 5000, 200_000] {
            let p = heap.alloc_into(dest, size, align, 3, Init::Zeroed)?;
            expect_eq("misalignment", 0, align, 0, p.raw() % align as u64)?;
            expect_eq(
                "aligned object size",
                0,
                size,
                size as u64,
                heap.info(p.raw())?.size,
            )?;
            heap.free_from(dest)?;
        }
    }
    let objects = heap.stats().objects;
    for align in [0usize, 3, 48, 8192, 1 << 20] {
        expect_alloc_err(
            "unsupported alignment",
            AllocError::BadAlign { align },
            heap.alloc_into(dest, 64, align, 3, Init::Zeroed),
        )?;
    }
    expect_eq(
        "objects after refused allocations",
        0,
        0,
        objects,
        heap.stats().objects,
    )?;
    expect_eq(
        "field after refused allocations",
        0,
        0,
        0,
        heap.media().read_u64(dest as usize),
    )?;
    heap.check()?;
    Ok(())
}

/// A pool whose root has two fields, the first holding a 40-byte object `a`.
type Refusals<'m> = (Heap<&'m dyn Media>, PPtr<()>, PPtr<()>);

fn refusal_pool<'m>(env: &Env, media: &'m dyn Media) -> Result<Refusals<'m>, TestFailure> {
    let (heap, root) = pool_with_root(env, media, 2)?;
    let a = heap.alloc_into(root.field(0), 40, 8, 5, Init::Zeroed)?;
    Ok((heap, root, a))
}

/// After refused requests: the same objects, field 0 still holding `a`, `check()`
/// passing.
fn unchanged(
    heap: &Heap<&dyn Media>,
    root: PPtr<()>,
    a: PPtr<()>,
    objects: u64,
) -> Result<(), TestFailure> {
    expect_eq(
        "objects after refused requests",
        0,
        0,
        objects,
        heap.stats().objects,
    )?;
    expect_eq(
        "field after refused requests",
        0,
        0,
        a.raw(),
        heap.media().read_u64(root.field(0) as usize),
    )?;
    heap.check()?;
    Ok(())
}

/// Each bad destination gets its own typed error and changes nothing: a misaligned
/// word, metadata, past the pool, past an object's end, a free slot, a word (or the
/// root slot) that already holds a pointer.
fn bad_destinations(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    let (heap, root, a) = refusal_pool(env, media)?;
    let objects = heap.stats().objects;
    let len = heap.media().len() as u64;
    let root_slot = Heap::<&dyn Media>::ROOT;
    let bad = |offset, why| AllocError::BadDest { offset, why };
    let alloc_cases = [
        (
            "misaligned destination",
            root.field(8) + 4,
            bad(root.field(8) + 4, DestFault::Misaligned),
        ),
        (
            "destination in pool metadata",
            8,
            bad(8, DestFault::OutOfRange),
        ),
        (
            "destination past the pool",
            len + 4096,
            bad(len + 4096, DestFault::OutOfRange),
        ),
        // A's run class is 48 bytes: its slot has 8 bytes past its 40.
        (
            "destination past the object's end",
            a.raw() + 40,
            bad(a.raw() + 40, DestFault::NotInObject),
        ),
        (
            "destination in a free slot",
            a.raw() + 48,
            bad(a.raw() + 48, DestFault::NotInObject),
        ),
        (
            "destination already holding a pointer",
            root.field(0),
            AllocError::DestNotNull {
                offset: root.field(0),
                value: a.raw(),
            },
        ),
        (
            "root slot already holding the root",
            root_slot,
            AllocError::DestNotNull {
                offset: root_slot,
                value: root.raw(),
            },
        ),
    ];
    for (what, dest, expected) in alloc_cases {
        expect_alloc_err(
            what,
            expected,
            heap.alloc_into(dest, 32, 8, 1, Init::Zeroed),
        )?;
    }
    unchanged(&heap, root, a, objects)
}

/// Each bad request gets its own typed error and changes nothing: zero size, a type
/// number over 24 bits, a size beyond the pool; freeing from null, from a misaligned
/// word, from a word holding no object, from a word inside the object being freed.
fn bad_requests(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    let (heap, root, a) = refusal_pool(env, media)?;
    let objects = heap.stats().objects;
    let len = heap.media().len() as u64;
    let free_dest = root.field(8);
    expect_alloc_err(
        "zero size",
        AllocError::ZeroSize,
        heap.alloc_into(free_dest, 0, 8, 1, Init::Zeroed),
    )?;
    expect_alloc_err(
        "type number over 24 bits",
        AllocError::BadType { type_num: 1 << 24 },
        heap.alloc_into(free_dest, 8, 8, 1 << 24, Init::Zeroed),
    )?;
    let huge = 2 * len as usize;
    expect_alloc_err(
        "larger than the pool",
        AllocError::TooLarge { size: huge },
        heap.alloc_into(free_dest, huge, 8, 1, Init::Zeroed),
    )?;
    expect_free_err(
        "free from a null field",
        FreeError::DestNull { offset: free_dest },
        heap.free_from(free_dest),
    )?;
    expect_free_err(
        "free from a misaligned word",
        FreeError::BadDest {
            offset: free_dest + 1,
            why: DestFault::Misaligned,
        },
        heap.free_from(free_dest + 1),
    )?;
    // A's first word holds a number that is no object, then A's own offset.
    heap.write_persist(a, 0, &0x1234u64.to_le_bytes())?;
    expect_free_err(
        "free from a word holding no object",
        FreeError::NotAnObject(PtrError::OutOfRange { offset: 0x1234 }),
        heap.free_from(a.raw()),
    )?;
    heap.write_persist(a, 0, &a.raw().to_le_bytes())?;
    expect_free_err(
        "free from a word inside the object freed",
        FreeError::BadDest {
            offset: a.raw(),
            why: DestFault::InsideTarget,
        },
        heap.free_from(a.raw()),
    )?;
    unchanged(&heap, root, a, objects)
}

/// `objects()` yields every allocated object once, in pool order;
/// `objects_of_type(t)` yields exactly those of type `t`, and none once they are freed.
fn iteration(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    const N: usize = 24;
    let (heap, root) = pool_with_root(env, media, N)?;
    let type_of = |i: usize| 20 + (i % 3) as u32;
    for i in 0..N {
        let size = [24, 300, 5000, 150_000][i % 4];
        heap.alloc_into(root.field(i * 8), size, 8, type_of(i), Init::Zeroed)?;
    }
    let all: Vec<ObjInfo> = heap.objects().collect();
    expect_eq(
        "objects (root + fields)",
        0,
        0,
        N as u64 + 1,
        all.len() as u64,
    )?;
    for pair in all.windows(2) {
        if pair[0].ptr >= pair[1].ptr {
            return Err(TestFailure::Mismatch {
                what: "objects out of pool order",
                nvdimm: 0,
                offset: pair[1].ptr as usize,
                expected: pair[0].ptr + 1,
                found: pair[1].ptr,
            });
        }
    }
    for i in 0..N {
        let ptr = heap.media().read_u64(root.field(i * 8) as usize);
        let found = all
            .iter()
            .filter(|o| o.ptr == ptr && o.type_num == type_of(i))
            .count();
        expect_eq("field object listed once", 0, i, 1, found as u64)?;
    }
    for t in 20..23 {
        let listed: Vec<ObjInfo> = heap.objects_of_type(t).collect();
        let want = (0..N).filter(|&i| type_of(i) == t).count();
        expect_eq(
            "objects of type",
            0,
            t as usize,
            want as u64,
            listed.len() as u64,
        )?;
        if let Some(o) = listed.iter().find(|o| o.type_num != t) {
            return Err(TestFailure::Mismatch {
                what: "objects_of_type yielded another type",
                nvdimm: 0,
                offset: o.ptr as usize,
                expected: t.into(),
                found: o.type_num.into(),
            });
        }
    }
    for i in (0..N).filter(|&i| type_of(i) == 21) {
        heap.free_from(root.field(i * 8))?;
    }
    expect_eq(
        "objects of a freed type",
        0,
        21,
        0,
        heap.objects_of_type(21).count() as u64,
    )?;
    heap.check()?;
    Ok(())
}

/// Filling the pool with 1 MiB extents ends in `OutOfSpace` (not a panic, not a
/// corrupt heap); freeing them all gives every chunk back.
fn exhaustion(env: &Env, media: &dyn Media) -> Result<(), TestFailure> {
    let (heap, root) = pool_with_root(env, media, 1)?;
    let free0 = heap.check()?;
    let table = heap.alloc_into(root.field(0), 512 * 8, 8, 4, Init::Zeroed)?;
    let mut filled = 0;
    let result = loop {
        if filled == 512 {
            break Ok(PPtr::NULL);
        }
        match heap.alloc_into(table.field(filled * 8), 1 << 20, 4096, 6, Init::Uninit) {
            Ok(_) => filled += 1,
            Err(e) => break Err(e),
        }
    };
    expect_alloc_err(
        "allocation in a full pool",
        AllocError::OutOfSpace { size: 1 << 20 },
        result,
    )?;
    heap.check()?;
    for i in 0..filled {
        heap.free_from(table.field(i * 8))?;
    }
    heap.free_from(root.field(0))?;
    // The table's run keeps its chunk; everything else is free again.
    let free = heap.check()?;
    expect_eq(
        "free chunks after freeing everything",
        0,
        0,
        free0 - 1,
        free,
    )?;
    Ok(())
}

/// A pool dropped without `close` (a crash after its ops returned) opens from what is
/// on the NVDIMM itself: the op records replay, every op is visible, `check()` passes.
/// With `AdrMedia` the DRAM copy is dropped too, so only flushed lines count.
fn unclosed(env: &Env, kind: Kind) -> Result<(), TestFailure> {
    const N: usize = 12;
    let nv: &Nvdimm = &env.nvdimms()?[0];
    let media = pool_media(env, kind)?;
    let (heap, root) = pool_with_root(env, &*media, N)?;
    for i in 0..N {
        let size = 16 + i * 777;
        heap.alloc_into(
            root.field(i * 8),
            size,
            8,
            30,
            Init::Bytes(&contents(env, i, size)),
        )?;
    }
    for i in (0..N).step_by(3) {
        heap.free_from(root.field(i * 8))?;
    }
    let expected: Vec<ObjInfo> = heap.objects().collect();
    drop(heap);
    drop(media);
    let len = match kind {
        Kind::Raw => nv.len,
        Kind::Adr => ADR_POOL,
    };
    let (heap, report) = Heap::open(nv.window(0, len)?, &OpenOptions::default())?;
    if report.replayed == 0 {
        return Err(TestFailure::Counter {
            what: "op records replayed (at least 1)",
            expected: 1,
            found: 0,
        });
    }
    heap.check()?;
    expect_objects("after recovery", &heap, &expected)?;
    for i in 0..N {
        let ptr = heap.media().read_u64(root.field(i * 8) as usize);
        if i % 3 == 0 {
            expect_eq("freed field after recovery", 0, i, 0, ptr)?;
        } else {
            expect_contents(&heap, ptr, &contents(env, i, 16 + i * 777))?;
        }
    }
    Ok(())
}

/// A pool on each of two NVDIMMs, used alternately, closed and reopened: each holds
/// its own objects and contents, each keeps its own UUID and layout name (opening one
/// with the other's layout is refused), and neither disturbed the other.
fn two_pools(env: &Env) -> Result<(), TestFailure> {
    const N: usize = 10;
    let list = env.nvdimms()?;
    if list.len() < 2 {
        return Err(TestFailure::NvdimmCount {
            expected: 2,
            found: list.len(),
        });
    }
    let names = ["pool-on-nvdimm-0", "pool-on-nvdimm-1"];
    let mut pools: Vec<(Heap<RawMedia>, PPtr<()>)> = Vec::new();
    for (k, nv) in list[..2].iter().enumerate() {
        let heap = Heap::create(
            nv.media(),
            &CreateOptions::new(names[k], uuid(env, 100 + k as u64)),
        )?;
        let root = heap.alloc_into(Heap::<RawMedia>::ROOT, N * 8, 8, 1, Init::Zeroed)?;
        pools.push((heap, root));
    }
    let size = |k: usize, i: usize| 100 + 1000 * k + 37 * i;
    for i in 0..N {
        for (k, (heap, root)) in pools.iter().enumerate() {
            let bytes = contents(env, 50 * k + i, size(k, i));
            heap.alloc_into(
                root.field(i * 8),
                size(k, i),
                8,
                40 + k as u32,
                Init::Bytes(&bytes),
            )?;
        }
    }
    let roots: Vec<PPtr<()>> = pools.iter().map(|p| p.1).collect();
    let media: Vec<RawMedia> = pools.into_iter().map(|(h, _)| h.close()).collect();
    for (k, m) in media.into_iter().enumerate() {
        let other = OpenOptions {
            layout: Some(names[1 - k]),
        };
        if Heap::open(list[k].media(), &other).is_ok() {
            return Err(TestFailure::Mismatch {
                what: "pool opened with the other pool's layout",
                nvdimm: k,
                offset: 0,
                expected: 0,
                found: 1,
            });
        }
        let (heap, _) = Heap::open(
            m,
            &OpenOptions {
                layout: Some(names[k]),
            },
        )?;
        heap.check()?;
        expect_eq(
            "pool UUID",
            k,
            16,
            1,
            u64::from(heap.pool_header().uuid == uuid(env, 100 + k as u64)),
        )?;
        expect_eq(
            "root",
            k,
            0,
            roots[k].raw(),
            heap.root().map_or(0, PPtr::raw),
        )?;
        expect_eq("objects", k, 0, N as u64 + 1, heap.objects().count() as u64)?;
        for i in 0..N {
            let ptr = heap.media().read_u64(roots[k].field(i * 8) as usize);
            let info = heap.info(ptr)?;
            expect_eq("object type", k, i, 40 + k as u64, info.type_num.into())?;
            expect_eq("object size", k, i, size(k, i) as u64, info.size)?;
            expect_contents(&heap, ptr, &contents(env, 50 * k + i, size(k, i)))?;
        }
    }
    Ok(())
}
