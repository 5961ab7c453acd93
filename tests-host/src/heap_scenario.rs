//! The pmalloc crash scenario: a root object with 16 pointer fields; the workload
//! allocates into null fields and frees non-null ones, with sizes from 16 B to
//! multi-chunk extents, and now and then allocates or frees an object with no
//! destination (`Heap::alloc` / `Heap::free`). At every crash point and image the recovered heap must: open;
//! pass `check` (metadata agrees with headers); show every completed op and the
//! in-flight op entirely or not at all; hold exactly the root and the objects the fields
//! point to (no leak, no double allocation); allocate and free correctly afterwards; and
//! give the same result when recovery itself is crashed and rerun.
//!
//! [`explore_heap_releasing`] runs the same workload with a checkpoint every few ops
//! and sizes that fill multi-chunk runs, so that runs become empty and are returned to
//! the free chunks (single-chunk runs by one entry word, multi-chunk ones under the
//! chunk-free intent) at crash points all through those checkpoints.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::explorer::{explore, Config, Phase, Report, Scenario};
use arch::sim::{Rng, SimMedia};
use arch::Media;
use pmalloc::{CreateOptions, Heap, Init, OpenOptions};

const FIELDS: usize = 16;
const POOL: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Alloc {
        field: usize,
        size: usize,
        type_num: u32,
    },
    Free {
        field: usize,
        target: u64,
    },
    /// `Heap::alloc`: an object no field points to.
    AllocLoose {
        size: usize,
        type_num: u32,
    },
    /// `Heap::free` of such an object.
    FreeLoose {
        target: (u64, u64, u32),
    },
}

/// Type number of loose objects.
const LOOSE_TYPE: u32 = 7;

/// What the heap workload has done.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    root: u64,
    /// Committed value, size and type of each field's object.
    fields: [(u64, u64, u32); FIELDS],
    /// Committed objects allocated with no destination.
    loose: Vec<(u64, u64, u32)>,
    inflight: Option<Op>,
    done: u64,
}

/// Recovery and oracles for the heap workload.
#[derive(Debug)]
pub struct HeapScenario;

type Digest = (Vec<u64>, Vec<(u64, u64, u32)>);

impl Scenario for HeapScenario {
    type Progress = Progress;
    type Digest = Digest;

    fn recover_and_check(
        &self,
        media: &SimMedia,
        p: &Progress,
        recovered: &Phase,
    ) -> Result<Digest, String> {
        if std::env::var("PM_DEBUG").is_ok() {
            dump_records(media);
        }
        let (heap, report) =
            Heap::open(media, &OpenOptions::default()).map_err(|e| format!("open failed: {e}"))?;
        if std::env::var("PM_DEBUG").is_ok() {
            eprintln!("open report: {report:?}");
            for i in 0..FIELDS {
                eprint!("{:#x} ", media.read_u64(p.root as usize + i * 8));
            }
            eprintln!();
        }
        recovered.done();
        heap.check().map_err(|e| e.to_string())?;
        if heap.root().map(pmalloc::PPtr::raw) != Some(p.root) {
            return Err(format!("root is {:?}, expected {:#x}", heap.root(), p.root));
        }
        let mut values = Vec::with_capacity(FIELDS);
        let mut expect_objects: BTreeSet<(u64, u64, u32)> = BTreeSet::new();
        let root_info = heap.info(p.root).map_err(|e| format!("root object: {e}"))?;
        expect_objects.insert((p.root, root_info.size, root_info.type_num));
        for (i, &(committed, size, ty)) in p.fields.iter().enumerate() {
            let v = media.read_u64(p.root as usize + i * 8);
            let ok_committed = v == committed;
            let (ok, obj) = match p.inflight {
                Some(Op::Alloc {
                    field,
                    size: s,
                    type_num,
                }) if field == i => {
                    if v == 0 {
                        (true, None)
                    } else {
                        let good = heap
                            .info(v)
                            .is_ok_and(|o| o.size == s as u64 && o.type_num == type_num);
                        (good, Some((v, s as u64, type_num)))
                    }
                }
                Some(Op::Free { field, target }) if field == i => {
                    if v == 0 {
                        (heap.info(target).is_err(), None)
                    } else {
                        (v == target, Some((v, size, ty)))
                    }
                }
                _ => (ok_committed, (v != 0).then_some((v, size, ty))),
            };
            if !ok {
                return Err(format!("field {i} = {v:#x}: neither the state before nor after the ops (inflight {:?})", p.inflight));
            }
            if let Some(o) = obj {
                // Odd fields are allocated zeroed: a published object holds its zeros
                // (its record must not reach media before them).
                if !i.is_multiple_of(2) {
                    let mut bytes = vec![0u8; o.1 as usize];
                    media.read(o.0 as usize, &mut bytes);
                    if let Some(at) = bytes.iter().position(|&b| b != 0) {
                        return Err(format!(
                            "field {i} = {v:#x}: the zeroed object holds a nonzero byte at {at}"
                        ));
                    }
                }
                expect_objects.insert(o);
            }
            values.push(v);
        }
        expect_objects.extend(p.loose.iter().copied());
        let found: BTreeSet<(u64, u64, u32)> = heap
            .objects()
            .map(|o| (o.ptr, o.size, o.type_num))
            .collect();
        match p.inflight {
            // The in-flight loose allocation may or may not have happened.
            Some(Op::AllocLoose { size, type_num }) => {
                if let Some(&o) = found.difference(&expect_objects).next() {
                    if o.1 == size as u64 && o.2 == type_num {
                        expect_objects.insert(o);
                    }
                }
            }
            // The in-flight loose free may or may not have happened.
            Some(Op::FreeLoose { target }) if !found.contains(&target) => {
                expect_objects.remove(&target);
            }
            _ => {}
        }
        if found != expect_objects {
            let leaked: Vec<_> = found.difference(&expect_objects).collect();
            let lost: Vec<_> = expect_objects.difference(&found).collect();
            return Err(format!(
                "heap objects disagree with the fields: leaked {leaked:x?}, missing {lost:x?}"
            ));
        }
        keeps_working(&heap, p.root, &values)?;
        Ok((values, found.into_iter().collect()))
    }
}

/// The recovered heap must keep working: fills the null fields of the root at `root`
/// (`values`, as recovered) and frees them again.
fn keeps_working(heap: &Heap<&SimMedia>, root: u64, values: &[u64]) -> Result<(), String> {
    // A heap the workload filled may have no chunk left for a new size class (the
    // workload itself tolerates `OutOfSpace`). That is the one acceptable failure,
    // and only when the heap is really full: no free chunk, and no empty run that a
    // checkpoint would give back (recovery's own checkpoint must have released
    // them all).
    let mut filled = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if *v == 0 {
            let d = root + i as u64 * 8;
            match heap.alloc_into(d, 40 + i * 8, 8, 99, Init::Uninit) {
                Ok(_) => filled.push(i),
                Err(pmalloc::AllocError::OutOfSpace { .. }) if heap.stats().free_chunks == 0 => {
                    let released = heap.stats().released_runs;
                    heap.checkpoint();
                    let s = heap.stats();
                    if s.released_runs != released || s.free_chunks != 0 {
                        return Err(format!(
                            "out of space, yet a checkpoint frees chunks: {s:?}"
                        ));
                    }
                }
                Err(e) => {
                    return Err(format!("alloc after recovery: {e}; {:?}", heap.stats()));
                }
            }
        }
    }
    heap.check()
        .map_err(|e| format!("after post-recovery allocations: {e}"))?;
    for &i in &filled {
        heap.free_from(root + i as u64 * 8)
            .map_err(|e| format!("free after recovery: {e}"))?;
    }
    Ok(())
}

fn dump_records(media: &SimMedia) {
    let mut hb = [0u8; 256];
    media.read(0, &mut hb);
    let Ok(h) = pmalloc::pool_header::PoolHeader::decode(&hb) else {
        return;
    };
    for lane in 0..h.layout.nlanes {
        for slot in 0..2 {
            let mut b = [0u8; 64];
            media.read(h.layout.record_off(lane, slot), &mut b);
            match pmalloc::record::Record::decode(&b, lane, h.salt()) {
                Ok(r) => {
                    let hdr = pmalloc::header::ObjHeader::decode(r.header, r.obj, h.salt());
                    eprintln!("lane {lane} slot {slot}: seq {} {:?} obj {:#x} dest {:#x} gen_before {} after {:?} chunk_op {:#x}", r.seq, r.kind, r.obj, r.dest, r.gen_before, hdr, r.chunk_op);
                }
                Err(pmalloc::record::RecordFault::Empty) => {}
                Err(e) => eprintln!("lane {lane} slot {slot}: {e:?}"),
            }
        }
    }
}

fn size_for(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => 300_000 + rng.below(300_000) as usize,
        1 => 2000 + rng.below(30_000) as usize,
        _ => 8 + rng.below(400) as usize,
    }
}

/// Sizes for the releasing workload: a few classes only (so runs empty often), a
/// third of them in multi-chunk runs (classes above 32 KiB span 2 to 4 chunks).
fn releasing_size_for(rng: &mut Rng) -> usize {
    match rng.below(6) {
        0 | 1 => 33_000 + rng.below(98_000) as usize,
        2 => 300_000 + rng.below(100_000) as usize,
        _ => [24, 200, 1500][rng.below(3) as usize],
    }
}

/// Runs the workload under the explorer; the report.
pub fn explore_heap(cfg: &Config, ops: usize) -> Report {
    explore_workload(cfg, ops, 0, size_for)
}

/// Runs the workload with a checkpoint after every `checkpoint_every`-th op and sizes
/// that empty single- and multi-chunk runs (module docs); the report. Panics if the
/// run never released a run (the workload would not cover what it is for).
pub fn explore_heap_releasing(cfg: &Config, ops: usize, checkpoint_every: usize) -> Report {
    explore_workload(cfg, ops, checkpoint_every, releasing_size_for)
}

fn explore_workload(
    cfg: &Config,
    ops: usize,
    checkpoint_every: usize,
    size_for: fn(&mut Rng) -> usize,
) -> Report {
    let media = SimMedia::new(POOL);
    let heap = Heap::create(&media, &CreateOptions::new("crash", [5; 16])).unwrap();
    let root = heap
        .alloc_into(Heap::<&SimMedia>::ROOT, FIELDS * 8, 8, 1, Init::Zeroed)
        .unwrap();
    let progress = Arc::new(Mutex::new(Progress {
        root: root.raw(),
        ..Progress::default()
    }));
    let p2 = progress.clone();
    let mut rng = Rng::new(cfg.seed);
    let report = explore(cfg, Arc::new(HeapScenario), &media, progress, || {
        let mut last_field = 0;
        for _ in 0..ops {
            // One op in four on the field the last op used, as w4's free and
            // allocation into one slot: the second op's record then stands for the
            // same destination word as the first's, whose homes it flushes.
            let field = if rng.below(4) == 0 {
                last_field
            } else {
                rng.below(FIELDS as u64) as usize
            };
            last_field = field;
            let dest = root.field(field * 8);
            let cur = p2.lock().unwrap().fields[field];
            let loose = p2.lock().unwrap().loose.clone();
            if rng.below(8) == 0 {
                // An object with no destination (`alloc` / `free`).
                if loose.len() < 3 {
                    let size = 8 + rng.below(300) as usize;
                    p2.lock().unwrap().inflight = Some(Op::AllocLoose {
                        size,
                        type_num: LOOSE_TYPE,
                    });
                    match heap.alloc(size, 8, LOOSE_TYPE, Init::Zeroed) {
                        Ok(p) => p2
                            .lock()
                            .unwrap()
                            .loose
                            .push((p.raw(), size as u64, LOOSE_TYPE)),
                        Err(pmalloc::AllocError::OutOfSpace { .. }) => {}
                        Err(e) => panic!("alloc failed: {e}"),
                    }
                } else {
                    let k = rng.below(loose.len() as u64) as usize;
                    p2.lock().unwrap().inflight = Some(Op::FreeLoose { target: loose[k] });
                    heap.free(pmalloc::PPtr::from_raw(loose[k].0)).unwrap();
                    p2.lock().unwrap().loose.swap_remove(k);
                }
            } else if cur.0 == 0 {
                let size = size_for(&mut rng);
                let type_num = 10 + field as u32;
                p2.lock().unwrap().inflight = Some(Op::Alloc {
                    field,
                    size,
                    type_num,
                });
                // Even fields without initial bytes (one fence, so a new run's header
                // zeroing needs its own), odd ones zeroed (a fence after the bytes).
                let init = if field.is_multiple_of(2) {
                    Init::Uninit
                } else {
                    Init::Zeroed
                };
                match heap.alloc_into(dest, size, 8, type_num, init) {
                    Ok(p) => p2.lock().unwrap().fields[field] = (p.raw(), size as u64, type_num),
                    Err(pmalloc::AllocError::OutOfSpace { .. }) => {}
                    Err(e) => panic!("alloc failed: {e}"),
                }
            } else {
                p2.lock().unwrap().inflight = Some(Op::Free {
                    field,
                    target: cur.0,
                });
                heap.free_from(dest).unwrap();
                p2.lock().unwrap().fields[field] = (0, 0, 0);
            }
            let done = {
                let mut g = p2.lock().unwrap();
                g.inflight = None;
                g.done += 1;
                g.done
            };
            if checkpoint_every > 0 && done % checkpoint_every as u64 == 0 {
                heap.checkpoint();
            }
        }
        if checkpoint_every > 0 && p2.lock().unwrap().done == ops as u64 {
            let s = heap.stats();
            assert!(s.released_runs > 0, "no run was released: {s:?}");
        }
    });
    report
}
