//! CPU feature detection for the persistence instructions, done once.

use spin::Once;

/// The cache-line flush instruction in use, best available first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushKind {
    /// `clwb`: write back, keep the line cached, weakly ordered.
    Clwb,
    /// `clflushopt`: write back and invalidate, weakly ordered.
    Clflushopt,
    /// `clflush`: write back and invalidate, ordered with other flushes.
    Clflush,
}

impl FlushKind {
    /// The instruction's mnemonic, for reports.
    pub fn name(self) -> &'static str {
        match self {
            FlushKind::Clwb => "clwb",
            FlushKind::Clflushopt => "clflushopt",
            FlushKind::Clflush => "clflush",
        }
    }
}

/// What the CPU offers that persistence code cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct PersistFeatures {
    /// The flush instruction chosen: clwb > clflushopt > clflush.
    pub flush: FlushKind,
    /// SSE4.2 (`crc32` instruction).
    pub sse42: bool,
    /// AVX2 (32-byte compares for dirty-line detection).
    pub avx2: bool,
    /// PCLMULQDQ, usable: the CPU has it and this build may touch XMM registers (not the
    /// soft-float kernel target). Joins checksums computed side by side.
    pub pclmul: bool,
    /// The CPU reports being a hypervisor guest.
    pub hypervisor: bool,
}

static FEATURES: Once<PersistFeatures> = Once::new();

/// Detects the features on first call and returns the cached answer afterwards.
#[inline]
pub fn features() -> PersistFeatures {
    *FEATURES.call_once(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> PersistFeatures {
    use core::arch::x86_64::__cpuid_count;
    let leaf0 = __cpuid_count(0, 0);
    let leaf1 = __cpuid_count(1, 0);
    let leaf7 = if leaf0.eax >= 7 {
        __cpuid_count(7, 0).ebx
    } else {
        0
    };
    let flush = if leaf7 & (1 << 24) != 0 {
        FlushKind::Clwb
    } else if leaf7 & (1 << 23) != 0 {
        FlushKind::Clflushopt
    } else {
        FlushKind::Clflush
    };
    // AVX2 also needs the OS to save YMM state (OSXSAVE + XCR0 bits 1 and 2). The kernel
    // target never enables it, so this is false there and the scalar path is used.
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let avx2 = leaf7 & (1 << 5) != 0 && osxsave && ymm_enabled();
    PersistFeatures {
        flush,
        sse42: leaf1.ecx & (1 << 20) != 0,
        avx2,
        pclmul: cfg!(target_feature = "sse2") && leaf1.ecx & (1 << 1) != 0,
        hypervisor: leaf1.ecx & (1 << 31) != 0,
    }
}

#[cfg(target_arch = "x86_64")]
fn ymm_enabled() -> bool {
    let lo: u32;
    // SAFETY: only called when CPUID reports OSXSAVE, so XGETBV with ECX=0 is valid; it
    // reads XCR0 into edx:eax and touches no memory.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _, options(nomem, nostack, preserves_flags));
    }
    lo & 0b110 == 0b110
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> PersistFeatures {
    PersistFeatures {
        flush: FlushKind::Clflush,
        sse42: false,
        avx2: false,
        pclmul: false,
        hypervisor: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_is_stable_across_calls() {
        assert_eq!(features(), features());
    }
}
