//! Exit values for QEMU's `isa-debug-exit` device.

/// The I/O port of `-device isa-debug-exit,iobase=0xf4,iosize=0x04`.
pub const EXIT_PORT: u16 = 0xf4;

/// How the kernel ends a run. Writing value `v` to [`EXIT_PORT`] makes QEMU exit with
/// status `(v << 1) | 1`, so no value can produce status 0 (which QEMU also uses for a
/// triple fault under `-no-reboot`) and only [`GuestExit::Pass`] counts as a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum GuestExit {
    /// Every test passed (QEMU exits 33).
    Pass = 0x10,
    /// A test failed, the kernel panicked, or it met an error it cannot test past
    /// (QEMU exits 35).
    Fail = 0x11,
    /// A planned crash (`crash_at=<n>`): stopped without cleanup at the n-th fence
    /// (QEMU exits 37).
    Crash = 0x12,
}

impl GuestExit {
    /// The value written to the port.
    pub const fn value(self) -> u32 {
        self as u32
    }

    /// The exit status QEMU reports for this value.
    pub const fn qemu_status(self) -> i32 {
        (self as i32) << 1 | 1
    }

    /// The guest exit behind a QEMU exit status, if it is one of ours.
    pub fn from_qemu_status(status: i32) -> Option<Self> {
        [GuestExit::Pass, GuestExit::Fail, GuestExit::Crash]
            .into_iter()
            .find(|e| e.qemu_status() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_qemu_formula_and_round_trip() {
        assert_eq!(GuestExit::Pass.qemu_status(), 33);
        assert_eq!(GuestExit::Fail.qemu_status(), 35);
        assert_eq!(GuestExit::Crash.qemu_status(), 37);
        for e in [GuestExit::Pass, GuestExit::Fail, GuestExit::Crash] {
            assert_eq!(GuestExit::from_qemu_status(e.qemu_status()), Some(e));
        }
        // 0 is a triple fault with -no-reboot, 1 a QEMU error: never ours.
        assert_eq!(GuestExit::from_qemu_status(0), None);
        assert_eq!(GuestExit::from_qemu_status(1), None);
    }
}
