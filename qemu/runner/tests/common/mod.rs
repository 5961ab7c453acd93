//! Shared by the QEMU integration tests: skip without QEMU, build the kernel once.

use pm_qemu_runner::{qemu_available, qemu_program, Kernel};

/// The kernel, or `None` (with the reason printed) when QEMU is not installed. CI
/// installs QEMU (`.ci/run`, `cargo xtask setup`), so there these tests always run.
/// A failed kernel build fails the test.
pub fn kernel() -> Option<&'static Kernel> {
    if !qemu_available() {
        println!(
            "skipping: {} not found (apt-get install -y qemu-system-x86)",
            qemu_program()
        );
        return None;
    }
    match Kernel::shared() {
        Ok(k) => Some(k),
        Err(e) => panic!("{e}"),
    }
}
