//! NVDIMM discovery: the NFIT lists what QEMU attached, and distinct devices are
//! distinct memory.

use arch::Media;
use pm_qemu_proto::mix64;

use crate::testing::{expect_eq, Env, Test, TestFailure};

/// The suite.
pub fn tests() -> &'static [Test] {
    &[
        Test {
            name: "nvdimm_found_via_nfit",
            run: found_via_nfit,
        },
        Test {
            name: "nvdimms_are_distinct",
            run: distinct,
        },
    ]
}

/// As many NVDIMMs as `nvdimms=` says (at least one), none empty.
fn found_via_nfit(env: &Env) -> Result<(), TestFailure> {
    let list = env.nvdimms()?;
    let expected = env.args.nvdimms.unwrap_or(1);
    let ok = match env.args.nvdimms {
        Some(n) => list.len() == n as usize,
        None => !list.is_empty(),
    };
    if !ok || list.iter().any(|n| n.len == 0) {
        return Err(TestFailure::NvdimmCount {
            expected,
            found: list.len(),
        });
    }
    Ok(())
}

/// Ranges do not overlap, and a tag written at each end of each NVDIMM reads back from
/// that NVDIMM only (two devices backed by one range would overwrite each other).
fn distinct(env: &Env) -> Result<(), TestFailure> {
    let list = env.nvdimms()?;
    for a in list {
        for b in list.iter().filter(|b| b.index > a.index) {
            if a.base < b.base + b.len && b.base < a.base + a.len {
                return Err(TestFailure::NotDistinct {
                    first: a.index,
                    second: b.index,
                });
            }
        }
    }
    let tag = |i: usize, end: u64| mix64(env.args.seed ^ (i as u64) << 32 ^ end);
    let ends = |len: u64| [0usize, len as usize - 8];
    for n in list {
        let m = n.media();
        for (end, off) in ends(n.len).into_iter().enumerate() {
            m.write_u64(off, tag(n.index, end as u64));
            m.persist(off, 8);
        }
    }
    for n in list {
        let m = n.media();
        for (end, off) in ends(n.len).into_iter().enumerate() {
            expect_eq(
                "end tag",
                n.index,
                off,
                tag(n.index, end as u64),
                m.read_u64(off),
            )?;
        }
    }
    Ok(())
}
