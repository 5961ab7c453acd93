//! Crash-reboot cycles of the heap workload, direct and ADR mode: after a kill or a
//! crash at a fence, the recovered pool passes `check()`, shows every allocation and
//! free the kernel reported, the op in flight entirely or not at all, no leak and no
//! double allocation, and the runner's own open of the image agrees with the kernel.
//! The crashes must land inside the workload, or the cycles would prove nothing.

mod common;

use pm_qemu_proto::Mode;
use pm_qemu_runner::HeapWorkload;

#[test]
fn heap_ops_survive_crashes_all_or_nothing_in_direct_mode() {
    common::twenty_cycles_of(&HeapWorkload::default(), Mode::Direct, 0x4ea9_0001);
}

#[test]
fn heap_ops_survive_crashes_all_or_nothing_in_adr_mode() {
    common::twenty_cycles_of(&HeapWorkload::default(), Mode::Adr, 0x4ea9_0002);
}
