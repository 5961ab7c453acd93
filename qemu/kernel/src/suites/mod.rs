//! The test suites. A suite is a module with a `tests()` list; [`tests`] picks the
//! lists a boot runs. The allocator and transaction suites join here as modules.

mod adr;
mod boot;
mod log;
mod media;
mod nvdimm;
mod persist;

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
    };
    lists.iter().flat_map(|l| l.iter().copied()).collect()
}
