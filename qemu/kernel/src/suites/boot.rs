//! The boot environment: the stack guard, the NVDIMM mappings, the bootstrap heap.

use alloc::vec::Vec;

use crate::paging::is_identity_mapped;
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
            name: "allocations_come_from_the_bootstrap_arena",
            run: heap_arena,
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

/// Heap blocks lie in the arena, hold what is written, and are reused after a free.
fn heap_arena(env: &Env) -> Result<(), TestFailure> {
    let words = 1 << 17; // 1 MiB
    let fill = |salt: u64| -> Vec<u64> { (0..words).map(|i| env.args.seed ^ salt ^ i).collect() };
    let first = fill(1);
    let at = first.as_ptr() as u64;
    if !crate::heap::contains(at, words as usize * 8) {
        return Err(TestFailure::Mapping {
            what: "heap block outside the arena",
            addr: at,
            expected: true,
        });
    }
    for (i, &w) in first.iter().enumerate() {
        expect_eq("heap word", 0, i * 8, env.args.seed ^ 1 ^ i as u64, w)?;
    }
    drop(first);
    let second = fill(2);
    // First fit over a free list: the freed block is found again.
    expect_eq("reused block address", 0, 0, at, second.as_ptr() as u64)
}
