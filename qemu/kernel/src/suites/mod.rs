//! The test suites. A suite is a module with a `tests()` list; [`tests`] picks the
//! lists a boot runs. The transaction suites join here as modules.

mod adr;
mod boot;
mod heap;
mod log;
mod media;
mod nvdimm;
mod persist;
mod pmalloc;
mod pool;

use alloc::vec::Vec;

use pm_qemu_proto::Suite;

use crate::testing::Test;

/// The tests `suite` runs, in order.
pub fn tests(suite: Suite) -> Vec<Test> {
    let lists: &[&[Test]] = match suite {
        Suite::All => &[boot::tests(), nvdimm::tests(), media::tests(), adr::tests()],
        Suite::Persist => &[persist::write_tests()],
        Suite::Verify => &[persist::verify_tests()],
        Suite::Log => &[log::append_tests()],
        Suite::LogVerify => &[log::verify_tests()],
        Suite::Pmalloc => &[nvdimm::tests(), pmalloc::tests()],
        Suite::PoolCreate => &[pool::create_tests()],
        Suite::PoolVerify => &[pool::verify_tests()],
        Suite::Heap => &[heap::writer_tests()],
        Suite::HeapVerify => &[heap::verifier_tests()],
    };
    lists.iter().flat_map(|l| l.iter().copied()).collect()
}
