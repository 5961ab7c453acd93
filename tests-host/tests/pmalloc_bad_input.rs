//! Bad input (DESIGN.md invariant 6): opening any byte string as a pool returns a typed
//! error or a working heap, never a panic, and never touches bytes outside the media
//! (the media asserts every access is in range, so an attempt would panic here).
//!
//! Cases: thousands of single and multiple bit flips of a valid pool (all over it, and
//! concentrated on the metadata), truncations, random bytes, and structures forged with
//! valid checksums but impossible offsets. Every pool that opens is then exercised:
//! check, iteration, stats, typed reads, allocation and free.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use arch::sim::Rng;
use arch::{Media, PersistMode, RawMedia};
use pmalloc::{CreateOptions, Heap, Init, OpenOptions, PPtr};

const POOL: usize = 8 << 20;

/// A valid pool with a root, small objects, an extent, and live op records.
fn valid_image() -> Vec<u8> {
    let mut mem = vec![0u64; POOL / 8];
    {
        let m = raw(&mut mem);
        let heap = Heap::create(m, &CreateOptions::new("bad-input", [0xAB; 16])).unwrap();
        let root = heap
            .alloc_into(Heap::<RawMedia>::ROOT, 16 * 8, 8, 1, Init::Zeroed)
            .unwrap();
        for i in 0..12usize {
            let size = [24, 100, 700, 3000, 40_000, 300_000][i % 6];
            heap.alloc_into(root.field(i * 8), size, 8, 5, Init::Bytes(&[i as u8; 16]))
                .unwrap();
        }
        heap.free_from(root.field(8)).unwrap();
        // No close: the lanes keep live records for recovery to chew on.
    }
    mem.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn raw(mem: &mut [u64]) -> RawMedia {
    // SAFETY: `mem` outlives the media in every use below and is touched only through it.
    unsafe {
        RawMedia::new(
            NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap(),
            mem.len() * 8,
            PersistMode::Eadr,
        )
    }
}

fn words(img: &[u8]) -> Vec<u64> {
    let mut w: Vec<u64> = img
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    if !img.len().is_multiple_of(8) {
        w.pop();
    }
    w
}

/// Opens `img` and, if that works, uses the heap every way a program would. Returns
/// whether it opened. Panics (failing the test) if anything panics.
fn exercise(img: &[u8], what: &str) -> bool {
    let mut mem = words(img);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let m = raw(&mut mem);
        let Ok((heap, _report)) = Heap::open(m, &OpenOptions::default()) else {
            return false;
        };
        let _ = heap.check();
        let _ = heap.stats();
        let objs: Vec<_> = heap.objects().take(1000).collect();
        for o in &objs {
            let _ = heap.get(PPtr::<[u8; 8]>::from_raw(o.ptr));
        }
        if let Some(root) = heap.root() {
            for i in 0..16usize {
                let d = root.field(i * 8);
                let v = heap.media().read_u64(d as usize);
                let _ = heap.info(v);
                if v == 0 {
                    let _ = heap.alloc_into(d, 64 + i * 100, 8, 9, Init::Zeroed);
                } else {
                    let _ = heap.free_from(d);
                }
            }
        }
        let _ = heap.alloc_into(Heap::<RawMedia>::ROOT, 64, 8, 1, Init::Zeroed);
        let _ = heap.check();
        true
    }));
    match r {
        Ok(opened) => opened,
        Err(p) => panic!(
            "{what}: panicked: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        ),
    }
}

#[test]
fn the_valid_pool_opens() {
    assert!(exercise(&valid_image(), "valid"));
}

#[test]
fn bit_flips_anywhere_give_errors_or_working_heaps() {
    let base = valid_image();
    let mut rng = Rng::new(11);
    let mut opened = 0;
    for case in 0..1500 {
        let mut img = base.clone();
        for _ in 0..=rng.below(3) {
            let bit = rng.below(POOL as u64 * 8) as usize;
            img[bit / 8] ^= 1 << (bit % 8);
        }
        opened += usize::from(exercise(&img, &format!("flip case {case}")));
    }
    assert!(
        opened > 1000,
        "most random flips hit data, so most pools still open ({opened})"
    );
}

#[test]
fn bit_flips_in_metadata_give_errors_or_working_heaps() {
    let base = valid_image();
    let heap_off = {
        let mut w = words(&base);
        let (h, _) = Heap::open(raw(&mut w), &OpenOptions::default()).unwrap();
        h.layout().heap_off
    };
    // Header page, lanes, chunk descriptors, and the first run's header array.
    let regions = [
        (0usize, 4096usize),
        (4096, 8192),
        (heap_off - 4096, 4096),
        (heap_off, 8192),
        (POOL - 4096, 256),
    ];
    let mut rng = Rng::new(12);
    for case in 0..3000 {
        let mut img = base.clone();
        for _ in 0..=rng.below(4) {
            let (off, len) = regions[rng.below(regions.len() as u64) as usize];
            let bit = rng.below(len as u64 * 8) as usize;
            img[off + bit / 8] ^= 1 << (bit % 8);
        }
        exercise(&img, &format!("metadata flip case {case}"));
    }
}

#[test]
fn truncated_pools_are_refused_or_work() {
    let base = valid_image();
    let mut rng = Rng::new(13);
    let mut lens: Vec<usize> = vec![
        0,
        8,
        255,
        4096,
        (8 << 20) - 8,
        (8 << 20) - 4096,
        1 << 20,
        7 << 20,
    ];
    lens.extend((0..200).map(|_| rng.below(POOL as u64) as usize));
    for len in lens {
        let opened = exercise(&base[..len], &format!("truncated to {len}"));
        assert!(
            !opened || len >= (8 << 20) - 4096,
            "a pool truncated to {len} bytes opened"
        );
    }
}

#[test]
fn random_bytes_never_open_as_a_pool() {
    let mut rng = Rng::new(14);
    for case in 0..40 {
        let img: Vec<u8> = (0..POOL).map(|_| rng.next_u64() as u8).collect();
        assert!(!exercise(&img, &format!("random case {case}")));
    }
}

/// Structures with valid checksums but impossible contents: records pointing outside
/// the heap, chunk entries claiming spans past the end, headers claiming huge sizes.
#[test]
#[allow(clippy::too_many_lines)] // one table of forgery cases reads best in one place
fn forged_structures_with_valid_checksums_are_contained() {
    use pmalloc::chunk::{ChunkEntry, ChunkOp, SpanKind};
    use pmalloc::header::{ObjHeader, F_ALLOCATED, F_EXTENT};
    use pmalloc::record::{OpKind, Record, R_CONTAINER};
    let base = valid_image();
    let mut w = words(&base);
    // Real objects and their current header generation, so forged records pass the
    // object checks and replay really reaches their destinations and spans.
    let (layout, salt, objects) = {
        let (h, _) = Heap::open(raw(&mut w), &OpenOptions::default()).unwrap();
        let objs: Vec<(u64, bool)> = h.objects().map(|o| (o.ptr, o.extent)).collect();
        (*h.layout(), h.salt(), objs)
    };
    // An extent's header generation (run slots get a guess: 0..3 covers the few
    // generations the valid pool's slots went through).
    let extent_gen = |img: &[u8], obj: u64| -> u32 {
        let hdr_off = layout.desc_off(layout.chunk_of(obj as usize).unwrap()) + 16;
        let w1 = u64::from_le_bytes(img[hdr_off + 8..hdr_off + 16].try_into().unwrap());
        (w1 & 0xFF_FFFF) as u32
    };
    let heap_end = layout.heap_end() as u64;
    let wild = [
        0u64,
        8,
        4096,
        layout.heap_off as u64 - 8,
        heap_end,
        heap_end + 64,
        POOL as u64,
        u64::MAX - 7,
        1 << 62,
    ];
    let mut rng = Rng::new(15);
    for case in 0..800 {
        let mut img = base.clone();
        let real = objects[rng.below(objects.len() as u64) as usize];
        let use_real = rng.chance(2, 3);
        let obj = if use_real {
            real.0
        } else {
            wild[rng.below(wild.len() as u64) as usize]
        };
        let dest = wild[rng.below(wild.len() as u64) as usize].wrapping_add(8 * rng.below(3));
        match case % 4 {
            0 => {
                let extent = if use_real { real.1 } else { rng.chance(1, 2) };
                let gen_before = if use_real && extent {
                    extent_gen(&base, obj)
                } else {
                    rng.below(3) as u32
                };
                let size = if rng.chance(1, 2) {
                    8
                } else {
                    rng.below(1 << 40)
                };
                let hdr = ObjHeader {
                    size,
                    type_num: 3,
                    gen: (gen_before + 1) % (1 << 24),
                    flags: F_ALLOCATED | if extent { F_EXTENT } else { 0 },
                };
                let chunk_op = match rng.below(4) {
                    0 => ChunkOp {
                        start: rng.below(1 << 23) as u32,
                        count: rng.below(1 << 23) as u32,
                        to: SpanKind::Extent,
                    }
                    .encode(),
                    1 => ChunkOp {
                        start: rng.below(layout.nchunks as u64) as u32,
                        count: 1 + rng.below(4) as u32,
                        to: SpanKind::Free,
                    }
                    .encode(),
                    2 => rng.next_u64() >> rng.below(64),
                    _ => 0,
                };
                let rec = Record {
                    seq: rng.below(100) + 1,
                    kind: if rng.chance(1, 2) {
                        OpKind::Alloc
                    } else {
                        OpKind::Free
                    },
                    flags: if rng.chance(1, 2) { R_CONTAINER } else { 0 },
                    gen_before,
                    container_gen: rng.below(3) as u32,
                    obj,
                    dest,
                    header: hdr.encode(obj, salt),
                    chunk_op,
                };
                let lane = rng.below(u64::from(layout.nlanes)) as u32;
                let off = layout.record_off(lane, rng.below(2) as usize);
                img[off..off + 64].copy_from_slice(&rec.encode(lane, salt));
            }
            1 => {
                let c = rng.below(layout.nchunks as u64) as u32;
                let e = match rng.below(4) {
                    0 => ChunkEntry::Run {
                        class: rng.below(48) as u8,
                        len: rng.below(1 << 23) as u32,
                    },
                    1 => ChunkEntry::Extent {
                        len: rng.below(1 << 23) as u32,
                    },
                    2 => ChunkEntry::RunCont {
                        head: rng.below(u64::from(c).max(1)) as u32,
                    },
                    _ => ChunkEntry::ExtentCont {
                        head: rng.below(u64::from(c).max(1)) as u32,
                    },
                };
                let off = layout.desc_off(c as usize);
                img[off..off + 8].copy_from_slice(&e.encode(c, salt).to_le_bytes());
            }
            2 => {
                // An extent header claiming more bytes than the pool.
                let c = rng.below(layout.nchunks as u64) as usize;
                let obj = layout.chunk_off(c) as u64;
                let hdr = ObjHeader {
                    size: (1 << 40) - 1,
                    type_num: 2,
                    gen: 3,
                    flags: F_ALLOCATED | F_EXTENT,
                };
                let off = layout.desc_off(c) + 16;
                img[off..off + 16].copy_from_slice(&hdr.to_bytes(obj, salt));
                img[off - 16..off - 8].copy_from_slice(
                    &ChunkEntry::Extent { len: 1 }
                        .encode(c as u32, salt)
                        .to_le_bytes(),
                );
            }
            _ => {
                // The root pointer aimed anywhere.
                img[256..264].copy_from_slice(&dest.wrapping_add(rng.below(64)).to_le_bytes());
            }
        }
        exercise(&img, &format!("forged case {case}"));
    }
}
