//! Crash-reboot cycles of the transaction workload, direct and ADR mode: after a kill
//! or a crash at a fence, the recovered pool passes the heap check, holds no leaked
//! object, equals the seed's model after its commit counter, shows every transaction
//! the kernel reported committed (durability) and the one in flight entirely or not at
//! all (atomicity), and the runner's own verification of the image agrees with the
//! kernel's. The crashes must land inside the workload, or the cycles would prove
//! nothing. `PM_QEMU_SEED` replays a base seed.

mod common;

use pm_qemu_proto::Mode;
use pm_qemu_runner::TxWorkload;

#[test]
fn transactions_survive_crashes_all_or_nothing_in_direct_mode() {
    common::twenty_cycles_of(&TxWorkload::default(), Mode::Direct, 0x7a_0001);
}

#[test]
fn transactions_survive_crashes_all_or_nothing_in_adr_mode() {
    common::twenty_cycles_of(&TxWorkload::default(), Mode::Adr, 0x7a_0002);
}
