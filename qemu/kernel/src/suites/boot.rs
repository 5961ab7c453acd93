//! The boot environment: the stack guard, the NVDIMM mappings, the global allocator
//! (pmalloc's `VolatileHeap` over DRAM).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::heap::{self, dram_region, Region};
use crate::paging::is_identity_mapped;
use crate::start_info::MemoryRegion;
use crate::testing::{expect_eq, Env, Test, TestFailure};

/// The suite.
pub fn tests() -> &'static [Test] {
    &[
        Test {
            name: "stack_guard_page_is_unmapped",
            run: stack_guard,
        },
        Test {
            name: "nvdimm_ranges_are_identity_mapped",
            run: nvdimms_mapped,
        },
        Test {
            name: "alloc_collections_are_served_by_the_volatile_heap",
            run: collections_use_volatile_heap,
        },
        Test {
            name: "freed_heap_blocks_are_reused_before_new_space_is_carved",
            run: blocks_reused,
        },
        Test {
            name: "heap_region_is_the_largest_ram_outside_kernel_and_nvdimms",
            run: heap_region,
        },
    ]
}

fn mapped(what: &'static str, addr: u64, expected: bool) -> Result<(), TestFailure> {
    if is_identity_mapped(addr) == expected {
        Ok(())
    } else {
        Err(TestFailure::Mapping {
            what,
            addr,
            expected,
        })
    }
}

/// Only the guard page is cut out of the 2 MiB page it lived in.
fn stack_guard(_: &Env) -> Result<(), TestFailure> {
    let guard = crate::boot::stack_guard();
    mapped("stack guard", guard, false)?;
    mapped("stack guard, last byte", guard + 4095, false)?;
    mapped("page below the guard", guard - 4096, true)?;
    mapped("stack bottom", guard + 4096, true)
}

/// Every 2 MiB page of every NVDIMM, and its last byte, translate to themselves.
fn nvdimms_mapped(env: &Env) -> Result<(), TestFailure> {
    for n in env.nvdimms()? {
        for page in (n.base..n.base + n.len).step_by(2 << 20) {
            mapped("NVDIMM page", page, true)?;
        }
        mapped("NVDIMM last byte", n.base + n.len - 1, true)?;
    }
    Ok(())
}

fn outside_heap(what: &'static str, addr: u64) -> TestFailure {
    TestFailure::Mapping {
        what,
        addr,
        expected: true,
    }
}

/// `Vec`, `Box`, `String` and `BTreeMap` blocks of 1 byte to 1 MiB all lie in the
/// `VolatileHeap`'s DRAM region, every allocation and free goes through it (its
/// counters move by at least as many calls as were made), it carves fresh space for
/// them, and they hold what was written.
fn collections_use_volatile_heap(env: &Env) -> Result<(), TestFailure> {
    let before = heap::stats();
    let region = before.region;
    let sizes = [1usize, 16, 100, 4096, 40_000, 200_000, 1 << 20];
    let mut vecs: Vec<Vec<u64>> = Vec::with_capacity(sizes.len() * 8);
    let mut boxes: Vec<Box<[u8; 512]>> = Vec::with_capacity(64);
    for round in 0..8u64 {
        for &bytes in &sizes {
            let words = bytes.div_ceil(8);
            vecs.push(
                (0..words as u64)
                    .map(|w| env.args.seed ^ round << 32 ^ w)
                    .collect(),
            );
        }
        for _ in 0..8 {
            boxes.push(Box::new([round as u8; 512]));
        }
    }
    let mut map = BTreeMap::new();
    for k in 0..500u64 {
        map.insert(k, String::from("persistent memory"));
    }
    let during = heap::stats();
    for v in &vecs {
        let at = v.as_ptr() as u64;
        if !region.contains(at, v.len() as u64 * 8) {
            return Err(outside_heap("Vec block outside the heap region", at));
        }
    }
    for b in &boxes {
        let at = b.as_ptr() as u64;
        if !region.contains(at, 512) {
            return Err(outside_heap("Box block outside the heap region", at));
        }
    }
    for s in map.values() {
        if !region.contains(s.as_ptr() as u64, s.len() as u64) {
            return Err(outside_heap(
                "String block outside the heap region",
                s.as_ptr() as u64,
            ));
        }
    }
    // Every element block, the two outer vectors, a string per map entry.
    let made = (vecs.len() + boxes.len() + 2 + map.len()) as u64;
    if during.allocs - before.allocs < made {
        return Err(TestFailure::Counter {
            what: "heap allocs (at least)",
            expected: made,
            found: during.allocs - before.allocs,
        });
    }
    if during.uncarved >= before.uncarved {
        return Err(TestFailure::Counter {
            what: "heap bytes carved (more than 0)",
            expected: 1,
            found: 0,
        });
    }
    for (i, v) in vecs.iter().enumerate() {
        let round = (i / sizes.len()) as u64;
        for (w, &x) in v.iter().enumerate() {
            expect_eq(
                "heap word",
                0,
                w * 8,
                env.args.seed ^ round << 32 ^ w as u64,
                x,
            )?;
        }
    }
    let n = (vecs.len() + boxes.len()) as u64;
    drop((vecs, boxes, map));
    let after = heap::stats();
    if after.frees - during.frees < n {
        return Err(TestFailure::Counter {
            what: "heap frees (at least)",
            expected: n,
            found: after.frees - during.frees,
        });
    }
    Ok(())
}

/// After a round of blocks is freed, the same round again is served from the freed
/// blocks (the same addresses) without carving new space: small blocks from the size
/// class free lists, large ones from the merged free list.
fn blocks_reused(_: &Env) -> Result<(), TestFailure> {
    let sizes = [16usize, 48, 512, 3000, 100_000, 300_000, 2 << 20];
    let round = |out: &mut Vec<u64>| -> Vec<Vec<u8>> {
        let blocks: Vec<Vec<u8>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
        out.clear();
        out.extend(blocks.iter().map(|b| b.as_ptr() as u64));
        out.sort_unstable();
        blocks
    };
    let (mut first, mut second) = (Vec::with_capacity(8), Vec::with_capacity(8));
    drop(round(&mut first));
    let carved = heap::stats().uncarved;
    drop(round(&mut second));
    expect_eq(
        "uncarved bytes after reusing freed blocks",
        0,
        0,
        carved,
        heap::stats().uncarved,
    )?;
    for (i, (&a, &b)) in first.iter().zip(&second).enumerate() {
        expect_eq("reused block address", 0, i, a, b)?;
    }
    Ok(())
}

/// The region picker on made-up memory maps, then the real region: RAM only, above
/// 1 MiB, below 4 GiB, never the kernel image, never an NVDIMM.
fn heap_region(env: &Env) -> Result<(), TestFailure> {
    let ram = |base, size| MemoryRegion {
        base,
        size,
        kind: 1,
    };
    let reserved = MemoryRegion {
        base: 0x2000_0000,
        size: 0x4000_0000,
        kind: 2,
    };
    let image = (0x10_0000, 0x50_0000);
    let cases: [(&[MemoryRegion], Option<Region>); 5] = [
        // QEMU's map: low RAM, RAM from 1 MiB holding the kernel image, reserved.
        (
            &[ram(0, 0x9_fc00), ram(0x10_0000, 0xfed_f000), reserved],
            Some(Region {
                start: 0x50_0000,
                len: 0xffd_f000 - 0x50_0000,
            }),
        ),
        // Only memory below 1 MiB: nothing.
        (&[ram(0, 0x9_fc00)], None),
        // The larger side of the image wins.
        (
            &[ram(0x10_0000, 0x80_0000)],
            Some(Region {
                start: 0x50_0000,
                len: 0x40_0000,
            }),
        ),
        // RAM crossing 4 GiB is cut there; reserved memory is never RAM.
        (
            &[ram(0xc000_0000, 0x8000_0000), reserved],
            Some(Region {
                start: 0xc000_0000,
                len: 0x4000_0000,
            }),
        ),
        (&[reserved], None),
    ];
    for (i, (map, want)) in cases.iter().enumerate() {
        let got = dram_region(map, image);
        if got != *want {
            let word = |r: Option<Region>| r.map_or(0, |r| r.start ^ r.len << 32);
            return Err(TestFailure::Mismatch {
                what: "dram_region case (start ^ len << 32)",
                nvdimm: 0,
                offset: i,
                expected: word(*want),
                found: word(got),
            });
        }
    }
    let region = heap::stats().region;
    let (start, end) = crate::firmware::kernel_image();
    if region.start < end && start < region.end() {
        return Err(outside_heap(
            "heap region overlaps the kernel image",
            region.start,
        ));
    }
    for n in env.nvdimms()? {
        if region.start < n.base + n.len && n.base < region.end() {
            return Err(outside_heap("heap region overlaps an NVDIMM", region.start));
        }
    }
    if region.len < heap::MIN_REGION || region.start < 1 << 20 || region.end() > 1 << 32 {
        return Err(outside_heap("heap region out of bounds", region.start));
    }
    Ok(())
}
