//! Unit tests of the heap on simulated media. Crash exploration, property tests and
//! bad-input sweeps live in `tests-host`.

use arch::sim::SimMedia;
use arch::Media;

use crate::layout::{CHUNK, MIN_POOL, ROOT_SLOT};
use crate::*;

const T_NODE: u32 = 7;

fn fresh(len: usize) -> Heap<SimMedia> {
    Heap::create(SimMedia::new(len), &CreateOptions::new("test", [9; 16])).unwrap()
}

fn reopen(h: Heap<SimMedia>) -> (Heap<SimMedia>, OpenReport) {
    let m = h.close();
    let img = m.durable_image();
    Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap()
}

/// A root object with 16 pointer fields.
fn with_root(h: &Heap<SimMedia>) -> PPtr<()> {
    h.alloc_into(Heap::<SimMedia>::ROOT, 16 * 8, 8, 1, Init::Zeroed)
        .unwrap()
}

#[test]
fn alloc_into_publishes_and_free_from_clears() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    assert_eq!(h.root(), Some(root));
    let field = root.field(8);
    let obj = h
        .alloc_into(field, 100, 8, T_NODE, Init::Bytes(b"hello"))
        .unwrap();
    assert_eq!(h.media().read_u64(field as usize), obj.raw());
    let info = h.info(obj.raw()).unwrap();
    assert_eq!(
        (info.size, info.type_num, info.extent),
        (100, T_NODE, false)
    );
    let mut b = [0u8; 7];
    h.read_bytes(obj, 0, &mut b).unwrap();
    assert_eq!(&b, b"hello\0\0");
    h.free_from(field).unwrap();
    assert_eq!(h.media().read_u64(field as usize), 0);
    assert_eq!(
        h.info(obj.raw()),
        Err(PtrError::NotAllocated { offset: obj.raw() })
    );
    h.check().unwrap();
}

#[test]
fn objects_survive_close_and_open() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let mut ptrs = Vec::new();
    for i in 0..16u64 {
        let size = [16, 64, 1000, 5000, 200_000, 600_000][i as usize % 6];
        ptrs.push((
            h.alloc_into(
                root.field(i as usize * 8),
                size,
                8,
                T_NODE,
                Init::Bytes(&i.to_le_bytes()),
            )
            .unwrap(),
            size,
        ));
    }
    let (h, report) = reopen(h);
    assert_eq!(report.replayed, 0, "clean close leaves no record");
    assert!(report.damage.is_empty());
    assert_eq!(h.root(), Some(root));
    for (i, (p, size)) in ptrs.iter().enumerate() {
        let info = h.info(p.raw()).unwrap();
        assert_eq!(info.size, *size as u64);
        assert_eq!(info.extent, *size > 131_072);
        let mut b = [0u8; 8];
        h.read_bytes(*p, 0, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i as u64);
    }
    assert_eq!(h.objects_of_type(T_NODE).count(), 16);
    assert_eq!(h.objects().count(), 17);
    h.check().unwrap();
}

#[test]
fn completed_ops_survive_a_crash_without_close() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let a = h
        .alloc_into(root.field(0), 64, 8, T_NODE, Init::Zeroed)
        .unwrap();
    let b = h
        .alloc_into(root.field(8), 64, 8, T_NODE, Init::Zeroed)
        .unwrap();
    h.free_from(root.field(0)).unwrap();
    // Crash: only what was fenced survives.
    let img = h.media().durable_image();
    drop(h);
    let (h, report) = Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert!(report.replayed >= 1, "{report:?}");
    assert_eq!(h.media().read_u64(root.field(0) as usize), 0);
    assert_eq!(h.media().read_u64(root.field(8) as usize), b.raw());
    assert!(h.info(a.raw()).is_err());
    assert!(h.info(b.raw()).is_ok());
    h.check().unwrap();
}

#[test]
fn one_fence_per_alloc_and_per_free() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let round = |n: u64| {
        let before = h.media().counters();
        for i in 0..n {
            h.alloc_into(
                root.field(0),
                64 + (i as usize % 7) * 100,
                8,
                T_NODE,
                Init::Uninit,
            )
            .unwrap();
            h.free_from(root.field(0)).unwrap();
        }
        h.media().counters().since(&before)
    };
    // The first round creates the runs of 7 classes: one more fence each, after their
    // header arrays are zeroed.
    let d = round(7);
    assert_eq!(d.fences, 2 * 7 + 7, "{d:?}");
    let n = 200u64;
    let d = round(n);
    assert_eq!(d.fences, 2 * n, "{d:?}");
    // Record line + the previous op's header and destination lines.
    assert!(d.lines_flushed <= 3 * 2 * n + 8, "{d:?}");
}

#[test]
fn bad_destinations_are_typed_errors() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let e = |r: Result<PPtr<()>, AllocError>| r.unwrap_err();
    assert!(matches!(
        e(h.alloc_into(root.field(3), 8, 8, 0, Init::Uninit)),
        AllocError::BadDest {
            why: DestFault::Misaligned,
            ..
        }
    ));
    assert!(matches!(
        e(h.alloc_into(4096, 8, 8, 0, Init::Uninit)),
        AllocError::BadDest {
            why: DestFault::OutOfRange,
            ..
        }
    ));
    assert!(matches!(
        e(h.alloc_into(root.field(16 * 8), 8, 8, 0, Init::Uninit)),
        AllocError::BadDest {
            why: DestFault::NotInObject,
            ..
        }
    ));
    assert!(matches!(
        e(h.alloc_into(Heap::<SimMedia>::ROOT, 8, 8, 0, Init::Uninit)),
        AllocError::DestNotNull { .. }
    ));
    assert_eq!(
        e(h.alloc_into(root.field(0), 0, 8, 0, Init::Uninit)),
        AllocError::ZeroSize
    );
    assert_eq!(
        e(h.alloc_into(root.field(0), 8, 3, 0, Init::Uninit)),
        AllocError::BadAlign { align: 3 }
    );
    assert_eq!(
        e(h.alloc_into(root.field(0), 8, 8, 1 << 24, Init::Uninit)),
        AllocError::BadType { type_num: 1 << 24 }
    );
    assert!(matches!(
        e(h.alloc_into(root.field(0), 1 << 40, 8, 0, Init::Uninit)),
        AllocError::TooLarge { .. }
    ));
    assert_eq!(
        h.free_from(root.field(0)),
        Err(FreeError::DestNull {
            offset: root.field(0)
        })
    );
    // A destination holding garbage is not freed.
    h.write_persist(root, 0, &12345u64.to_le_bytes()).unwrap();
    assert!(matches!(
        h.free_from(root.field(0)),
        Err(FreeError::NotAnObject(_))
    ));
    // An object cannot be freed through a pointer stored inside itself.
    let a = h.alloc_into(root.field(8), 64, 8, 0, Init::Zeroed).unwrap();
    h.write_persist(a, 0, &a.raw().to_le_bytes()).unwrap();
    assert!(matches!(
        h.free_from(a.field(0)),
        Err(FreeError::BadDest {
            why: DestFault::InsideTarget,
            ..
        })
    ));
    h.check().unwrap();
}

#[test]
fn alignment_up_to_4k_is_honoured() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    for (i, align) in [8usize, 64, 256, 1024, 4096].into_iter().enumerate() {
        let p = h
            .alloc_into(root.field(i * 8), 100, align, 0, Init::Uninit)
            .unwrap();
        assert_eq!(p.raw() % align as u64, 0, "align {align}");
    }
}

#[test]
fn exhaustion_is_out_of_space_and_freeing_makes_room() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let mut n = 0;
    let err = loop {
        match h.alloc_into(root.field((n % 16) * 8), 2 * CHUNK, 8, 0, Init::Uninit) {
            Ok(_) => {
                n += 1;
                assert!(n < 16, "8 MiB pool holds fewer than 16 half-MiB extents");
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, AllocError::OutOfSpace { .. }), "{err:?}");
    h.free_from(root.field(0)).unwrap();
    h.alloc_into(root.field(0), 2 * CHUNK, 8, 0, Init::Uninit)
        .unwrap();
    h.check().unwrap();
}

#[test]
fn damaged_primary_header_is_repaired_from_the_backup() {
    let h = fresh(MIN_POOL);
    with_root(&h);
    let m = h.close();
    let mut img = m.durable_image();
    img[40] ^= 0xFF;
    let (h, report) = Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert!(
        matches!(report.repaired, Some(Repaired::Primary(_))),
        "{report:?}"
    );
    assert!(h.root().is_some());
    let mut img = h.close().durable_image();
    let backup = img.len() - 4096;
    img[backup + 70] ^= 1;
    let (_, report) =
        Heap::open(SimMedia::from_image(img.clone()), &OpenOptions::default()).unwrap();
    assert!(
        matches!(report.repaired, Some(Repaired::Backup(_))),
        "{report:?}"
    );
    img[40] ^= 0xFF;
    assert!(matches!(
        Heap::open(SimMedia::from_image(img), &OpenOptions::default()),
        Err(OpenError::NoValidHeader { .. })
    ));
}

#[test]
fn wrong_layout_name_and_small_media_are_refused() {
    let m = fresh(MIN_POOL).close();
    let img = m.durable_image();
    let r = Heap::open(
        SimMedia::from_image(img),
        &OpenOptions {
            layout: Some("other"),
        },
    );
    assert!(matches!(r, Err(OpenError::WrongLayout { .. })));
    assert!(matches!(
        Heap::open(SimMedia::new(4096), &OpenOptions::default()),
        Err(OpenError::TooSmall { .. })
    ));
    assert!(matches!(
        Heap::create(SimMedia::new(4096), &CreateOptions::new("x", [0; 16])),
        Err(CreateError::Layout(_))
    ));
}

#[test]
fn typed_access_checks_type_size_and_liveness() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Node {
        key: u64,
        next: PPtr<Node>,
    }
    // SAFETY: two u64-sized fields, no padding, any bit pattern valid.
    unsafe impl Persistent for Node {
        const TYPE_NUM: u32 = T_NODE;
    }
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let n = Node {
        key: 5,
        next: PPtr::NULL,
    };
    let p: PPtr<Node> = h
        .alloc_into(root.field(0), 16, 8, T_NODE, Init::Bytes(bytes_of(&n)))
        .unwrap()
        .cast();
    assert_eq!(h.get(p).unwrap().key, 5);
    let wrong: PPtr<Node> = h
        .alloc_into(root.field(8), 16, 8, 3, Init::Zeroed)
        .unwrap()
        .cast();
    assert_eq!(
        h.get(wrong).unwrap_err(),
        PtrError::WrongType {
            offset: wrong.raw(),
            expected: T_NODE,
            found: 3
        }
    );
    let small: PPtr<Node> = h
        .alloc_into(root.field(16), 8, 8, T_NODE, Init::Zeroed)
        .unwrap()
        .cast();
    assert!(matches!(h.get(small), Err(PtrError::TooSmall { .. })));
    assert_eq!(
        h.get(PPtr::<Node>::from_raw(p.raw() + 8)),
        Err(PtrError::NotAnObject {
            offset: p.raw() + 8
        })
    );
    assert_eq!(h.get(PPtr::<Node>::NULL), Err(PtrError::Null));
    assert!(matches!(
        h.get(PPtr::<Node>::from_raw(ROOT_SLOT as u64)),
        Err(PtrError::OutOfRange { .. })
    ));
    // SAFETY: nothing writes the object meanwhile.
    assert_eq!(unsafe { h.deref(p) }, Err(PtrError::NotAddressable));
}

#[test]
fn a_pointer_into_a_runs_unused_tail_is_out_of_range() {
    use crate::class::{CLASSES, GEOMETRY};
    // A class whose slots leave bytes at the end of the run: no object is there.
    let class = (0..CLASSES.len())
        .find(|&c| {
            let g = &GEOMETRY[c];
            g.data_off + g.nslots * g.slot + 16 <= g.chunks * CHUNK
        })
        .expect("some class leaves a tail");
    let g = &GEOMETRY[class];
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let p = h
        .alloc_into(root.field(0), g.slot, 8, 1, Init::Zeroed)
        .unwrap();
    let (loc, _) = h.object_at(p.raw()).unwrap();
    let crate::heap::Home::Slot { head, .. } = loc.home else {
        panic!("a {}-byte object is a slot", g.slot);
    };
    let end = h.layout.chunk_off(head as usize) + g.data_off + g.nslots * g.slot;
    for off in [end, end + 8] {
        assert_eq!(
            h.info(off as u64).unwrap_err(),
            PtrError::OutOfRange { offset: off as u64 }
        );
    }
    // The last slot itself is still one (free).
    assert!(matches!(
        h.info((end - g.slot) as u64),
        Err(PtrError::NotAllocated { .. })
    ));
}

#[test]
fn checkpoint_invalidates_records_and_reopen_replays_none() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    for i in 0..(CHECKPOINT_OPS as usize + 10) {
        let f = root.field((i % 16) * 8);
        if h.media().read_u64(f as usize) == 0 {
            h.alloc_into(f, 48, 8, 0, Init::Uninit).unwrap();
        } else {
            h.free_from(f).unwrap();
        }
    }
    assert!(h.stats().checkpoints >= 1);
    h.checkpoint();
    let img = h.media().durable_image();
    let (h2, report) = Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert_eq!((report.replayed, report.stale, report.torn), (0, 0, 0));
    h2.check().unwrap();
}

/// Recovery bug found by the crash explorer: an extent's free record replayed after the
/// extent's chunk had become a run, when only the run's record was invalidated on media
/// (a checkpoint or recovery whose record invalidation only partly reached media). The
/// free's chunk op must not touch a chunk that has moved on.
#[test]
fn stale_extent_free_does_not_free_a_reused_chunk() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let ext = h
        .alloc_into(root.field(0), 2 * CHUNK - 100, 8, T_NODE, Init::Uninit)
        .unwrap();
    let c = h.layout().chunk_of(ext.raw() as usize).unwrap();
    // Free the extent, then allocate a new class: its fresh run takes the freed chunk.
    h.free_from(root.field(0)).unwrap();
    let small = h
        .alloc_into(root.field(8), 1000, 8, T_NODE, Init::Zeroed)
        .unwrap();
    assert_eq!(
        h.layout().chunk_of(small.raw() as usize),
        Some(c),
        "run reuses the chunk"
    );
    // Every store durable, but the run's record invalidated and the free's not.
    let mut img = h.media().with_state(|st| st.cache_image().to_vec());
    let l = h.layout();
    let mut found = None;
    for lane in 0..l.nlanes {
        for slot in 0..2 {
            let off = l.record_off(lane, slot);
            let b: [u8; 64] = img[off..off + 64].try_into().unwrap();
            if let Ok(r) = crate::record::Record::decode(&b, lane, h.salt()) {
                if r.obj == small.raw() {
                    found = Some(off);
                }
            }
        }
    }
    let off = found.expect("the run's record");
    img[off..off + 64].fill(0);
    drop(h);
    let (h, report) = Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert!(report.replayed >= 1, "{report:?}");
    h.check().unwrap();
    assert_eq!(h.media().read_u64(root.field(8) as usize), small.raw());
    assert!(h.info(small.raw()).is_ok(), "the run's object survives");
    assert!(h.info(ext.raw()).is_err(), "the extent stays freed");
}

/// Fills runs of a single-chunk class and of a multi-chunk class into fields of an
/// array object, then frees them all: every run they used is empty.
fn fill_and_empty_runs(h: &Heap<SimMedia>) -> usize {
    let root = with_root(h);
    let arr = h
        .alloc_into(root.field(0), 400 * 8, 8, 0, Init::Zeroed)
        .unwrap();
    // 300 objects of 1000 B (class 1024: ~250 per chunk, so 2 runs), then 20 of
    // 50,000 B (class 57,344: runs of 2 chunks, 9 slots each, so 3 runs).
    for i in 0..300 {
        h.alloc_into(arr.field(i * 8), 1000, 8, T_NODE, Init::Uninit)
            .unwrap();
    }
    for i in 300..320 {
        h.alloc_into(arr.field(i * 8), 50_000, 8, T_NODE, Init::Uninit)
            .unwrap();
    }
    for i in 0..320 {
        h.free_from(arr.field(i * 8)).unwrap();
    }
    320
}

#[test]
fn empty_runs_go_back_to_the_free_chunks_at_a_checkpoint() {
    let h = fresh(MIN_POOL);
    let baseline = h.check().unwrap();
    fill_and_empty_runs(&h);
    let before = h.stats();
    assert!(before.free_chunks < baseline - 6, "{before:?}");
    h.checkpoint();
    let after = h.stats();
    assert_eq!(
        after.released_runs, 5,
        "2 single-chunk and 3 two-chunk runs: {after:?}"
    );
    // Left in use: the root's run and the array's (class 3,200 B).
    assert_eq!(after.free_chunks, baseline - 2, "{after:?}");
    assert_eq!(h.check().unwrap(), baseline - 2);
    // The released chunks are usable again, by any class or an extent.
    let root = h.root().unwrap();
    h.alloc_into(root.field(8), 3 * CHUNK, 8, 0, Init::Uninit)
        .unwrap();
    h.check().unwrap();
    let (h, _) = reopen(h);
    h.check().unwrap();
    assert_eq!(h.stats().free_chunks, baseline - 5);
}

/// An allocation that finds no free chunk while empty runs wait for a checkpoint lets
/// go of its lane, checkpoints, and takes a released chunk on its second try.
#[test]
fn an_allocation_finding_no_free_chunk_checkpoints_and_takes_a_released_one() {
    let h = fresh(MIN_POOL);
    fill_and_empty_runs(&h);
    // Every free chunk taken by a one-chunk extent; the empty runs are not free yet.
    let free = h.stats().free_chunks;
    assert!(free > 0);
    for _ in 0..free {
        h.alloc(CHUNK, 8, 0, Init::Uninit).unwrap();
    }
    assert_eq!(h.stats().free_chunks, 0);
    let before = h.stats();
    h.alloc(CHUNK, 8, 0, Init::Uninit)
        .expect("a checkpoint releases the empty runs' chunks");
    let after = h.stats();
    assert_eq!(after.released_runs, before.released_runs + 5, "{after:?}");
    assert!(after.checkpoints > before.checkpoints, "{after:?}");
    // Seven of the eight released chunks are left free.
    assert_eq!(after.free_chunks, 7, "{after:?}");
    h.check().unwrap();
    let (h, _) = reopen(h);
    assert_eq!(h.stats().free_chunks, 7);
    h.check().unwrap();
}

/// A checkpoint releasing multi-chunk runs that crashes after its chunk-free intent is
/// durable (before or after the entries are) is completed by the next open.
#[test]
fn an_interrupted_multi_chunk_release_is_completed_at_open() {
    use arch::sim::{HookAction, SimEvent};
    use std::sync::{Arc, Mutex};
    // Crashing at the intent, the single-chunk runs (freed by plain entry words in the
    // same fence as the multi-chunk ones) are still runs; after the entries, nothing is.
    for (point, in_use) in [
        ("pmalloc.checkpoint.intent", 4),
        ("pmalloc.checkpoint.released", 2),
    ] {
        let h = fresh(MIN_POOL);
        let baseline = h.check().unwrap();
        fill_and_empty_runs(&h);
        let image: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let img2 = image.clone();
        h.media().set_hook(Box::new(move |ev, st| {
            if ev == SimEvent::Named(point) {
                *img2.lock().unwrap() = Some(st.media_image().to_vec());
            }
            HookAction::Continue
        }));
        h.checkpoint();
        h.media().clear_hook();
        let img = image.lock().unwrap().take().expect("the point was reached");
        let intent_off = crate::layout::INTENT_OFF;
        assert!(
            img[intent_off..intent_off + 64].iter().any(|&b| b != 0),
            "{point}"
        );
        let (h2, report) = Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
        assert!(report.damage.is_empty(), "{point}: {report:?}");
        assert_eq!(h2.check().unwrap(), baseline - in_use, "{point}");
        assert_eq!(
            h2.media().read_u64(intent_off + 56),
            0,
            "{point}: intent cleared"
        );
        assert_eq!(h2.objects().count(), 2, "{point}: the root and the array");
    }
}

#[test]
fn alloc_without_destination_is_found_by_iteration_and_freed_by_pointer() {
    let h = fresh(MIN_POOL);
    let loose = h.alloc(300, 64, T_NODE, Init::Bytes(b"loose")).unwrap();
    assert_eq!(loose.raw() % 64, 0);
    assert_eq!(
        h.objects().map(|o| o.ptr).collect::<Vec<_>>(),
        vec![loose.raw()]
    );
    let (h, _) = reopen(h);
    assert_eq!(h.info(loose.raw()).unwrap().size, 300);
    h.free(loose).unwrap();
    assert_eq!(h.objects().count(), 0);
    assert_eq!(
        h.free(loose),
        Err(FreeError::NotAnObject(PtrError::NotAllocated {
            offset: loose.raw()
        }))
    );
    assert_eq!(h.alloc(0, 8, 0, Init::Uninit), Err(AllocError::ZeroSize));
    h.check().unwrap();
}

/// A layer that logs allocation metadata replays it from its log at recovery, before
/// the heap re-indexes: in between, only the `_on_media` lookups see an extent whose
/// chunk words exist on media alone (the span map was built before them).
#[test]
fn on_media_lookups_find_an_extent_the_span_map_does_not_know_yet() {
    let h = fresh(8 << 20);
    let r = h.reserve(300_000, 8, 5).unwrap();
    assert_eq!(r.chunk_words.len(), 2, "an extent of two chunks");
    for &(off, w) in &r.chunk_words {
        h.media().write_u64(off as usize, w);
    }
    h.media().write(r.hdr_off as usize, &r.header);
    assert!(h.info(r.obj).is_err(), "the span map does not know it");
    let info = h.info_on_media(r.obj).unwrap();
    assert_eq!((info.size, info.type_num, info.extent), (300_000, 5, true));
    let slot = h.slot_on_media(r.obj).unwrap();
    assert_eq!(
        slot,
        ObjSlot {
            hdr_off: r.hdr_off,
            capacity: 2 * CHUNK as u64,
            extent: true
        }
    );
    assert_eq!(h.slot_on_media(r.obj + 64), None, "not an object's start");
    // A run slot: its header in the run's header array, its class's slot size.
    let s = h.reserve(100, 8, 5).unwrap();
    h.store_reserved(&s);
    let slot = h.slot_on_media(s.obj).unwrap();
    assert_eq!(
        (slot.hdr_off, slot.capacity, slot.extent),
        (s.hdr_off, s.capacity, false)
    );
    assert_eq!(h.info_on_media(s.obj), h.info(s.obj));
}

#[test]
fn a_claimed_heap_leaves_its_atomic_ops_to_the_claims_holder() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let other = fresh(MIN_POOL);
    let foreign = other.claim().unwrap();
    let claim = h.claim().expect("unclaimed");
    assert!(h.claim().is_none(), "one claim");
    let (f0, f1) = (root.field(0), root.field(8));
    assert_eq!(
        h.alloc_into(f0, 64, 8, T_NODE, Init::Zeroed),
        Err(AllocError::Claimed)
    );
    let refused = |_: Option<u64>| panic!("a refused op prepares nothing");
    assert_eq!(
        h.alloc_into_claimed(&foreign, f0, 64, 8, T_NODE, Init::Zeroed, refused),
        Err(AllocError::Claimed),
        "another heap's claim"
    );
    assert_eq!(h.media().read_u64(f0 as usize), 0);
    // The holder's hook sees the destination's object before the op.
    let mut seen = None;
    let a = h
        .alloc_into_claimed(&claim, f0, 64, 8, T_NODE, Init::Zeroed, |c| {
            seen = Some(c);
        })
        .unwrap();
    assert_eq!(seen, Some(Some(root.raw())));
    assert_eq!(h.media().read_u64(f0 as usize), a.raw());
    // Allocation without a destination stays open to all.
    let loose = h.alloc(32, 8, T_NODE, Init::Zeroed).unwrap();
    assert_eq!(h.free(loose), Err(FreeError::Claimed));
    assert_eq!(h.free_from(f0), Err(FreeError::Claimed));
    assert_eq!(
        h.free_from_claimed(&foreign, f0, |_, _| panic!("refused")),
        Err(FreeError::Claimed)
    );
    assert_eq!(h.media().read_u64(f0 as usize), a.raw());
    let mut seen = None;
    h.free_from_claimed(&claim, f0, |c, t| seen = Some((c, t)))
        .unwrap();
    assert_eq!(seen, Some((Some(root.raw()), a.raw())));
    assert_eq!(h.media().read_u64(f0 as usize), 0);
    assert_eq!(h.media().read_u64(f1 as usize), 0);
    assert_eq!(h.objects_of_type(T_NODE).count(), 1, "the loose object");
    h.check().unwrap();
}

#[test]
fn settles_and_checkpoints_are_counted_apart() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let base = h.stats();
    h.alloc_into(root.field(0), 64, 8, T_NODE, Init::Uninit)
        .unwrap();
    h.settle();
    h.settle();
    let s = h.stats();
    assert_eq!(
        s.settles,
        base.settles + 1,
        "the second settle had nothing to do"
    );
    assert_eq!(
        s.checkpoints, base.checkpoints,
        "a settle is not a checkpoint"
    );
    h.checkpoint();
    let c = h.stats();
    assert_eq!(c.checkpoints, s.checkpoints + 1);
    assert_eq!(c.settles, s.settles, "nothing was left to invalidate");
}

#[test]
fn a_destination_cleared_durably_after_a_settle_stays_cleared_after_a_crash() {
    let h = fresh(MIN_POOL);
    let root = with_root(&h);
    let a = h
        .alloc_into(root.field(0), 64, 8, T_NODE, Init::Zeroed)
        .unwrap();
    let fences = h.media().counters().fences;
    h.settle();
    assert_eq!(
        h.media().counters().fences,
        fences + 2,
        "homes, then records"
    );
    h.settle();
    assert_eq!(
        h.media().counters().fences,
        fences + 2,
        "nothing left to settle"
    );
    // The caller moves the pointer with plain stores made durable: field 1 takes it,
    // field 0 is cleared. Without the settle, the allocation's record would still be
    // valid and its replay would store the pointer into field 0 again.
    let m = h.media();
    m.write_u64(root.field(8) as usize, a.raw());
    m.write_u64(root.field(0) as usize, 0);
    m.flush(root.field(0) as usize, 16);
    m.fence();
    let img = m.durable_image();
    drop(h);
    let (h, report) = Heap::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    assert_eq!(report.replayed, 0, "{report:?}");
    assert_eq!(h.media().read_u64(root.field(8) as usize), a.raw());
    assert_eq!(h.media().read_u64(root.field(0) as usize), 0);
    assert!(h.info(a.raw()).is_ok());
    h.check().unwrap();
}
