//! One-instruction wrappers for the persistence instructions.
//!
//! Each is tiny and honest about its preconditions: the caller proves the CPU supports
//! the instruction (see [`crate::cpu`]) and that the address is mapped. On targets other
//! than x86_64 the flushes are no-ops and the fence is a sequentially consistent fence,
//! so the crate still builds there (only x86_64 is supported for persistence).

/// Writes the cache line holding `p` back to memory, keeping it cached (`clwb`).
///
/// # Safety
/// The CPU supports CLWB (`CPUID.(EAX=7,ECX=0):EBX[24]`) and `p` is a mapped address.
#[inline(always)]
pub unsafe fn clwb(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees CLWB support and a mapped address; clwb writes no
    // memory visible to Rust and does not touch the stack or flags.
    unsafe {
        core::arch::asm!("clwb [{}]", in(reg) p, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Writes back and invalidates the cache line holding `p`, weakly ordered (`clflushopt`).
///
/// # Safety
/// The CPU supports CLFLUSHOPT (`CPUID.(EAX=7,ECX=0):EBX[23]`) and `p` is mapped.
#[inline(always)]
pub unsafe fn clflushopt(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees CLFLUSHOPT support and a mapped address.
    unsafe {
        core::arch::asm!("clflushopt [{}]", in(reg) p, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Writes back and invalidates the cache line holding `p`, strongly ordered (`clflush`).
///
/// # Safety
/// `p` is a mapped address (every x86_64 CPU has CLFLUSH).
#[inline(always)]
pub unsafe fn clflush(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CLFLUSH is baseline on x86_64; the caller guarantees a mapped address.
    unsafe {
        core::arch::asm!("clflush [{}]", in(reg) p, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch for writing (`prefetchw`): starts bringing the line of `p` into the cache
/// in a writable state, so a later store does not wait for it. A hint: it never faults
/// and has no architectural effect (a no-op on CPUs without PRFCHW).
#[inline(always)]
pub fn prefetch_w(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetchw never faults, whatever the address, and changes no memory.
    unsafe {
        core::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Store fence: every earlier store, flush and non-temporal store completes first.
#[inline(always)]
pub fn sfence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence has no preconditions and touches no memory.
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Non-temporal 8-byte store (`movnti`): bypasses the cache, durable after a fence.
///
/// MOVNTI uses general-purpose registers only, so it is usable on the soft-float kernel
/// target too.
///
/// # Safety
/// `p` is 8-byte aligned, mapped, writable, and no Rust reference covers it.
#[inline(always)]
pub unsafe fn movnti(p: *mut u64, v: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees an aligned, writable address not aliased by a
    // reference; MOVNTI is baseline (SSE2) on x86_64 and needs no XMM state.
    unsafe {
        core::arch::asm!("movnti [{}], {}", in(reg) p, in(reg) v, options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        core::ptr::write_volatile(p, v);
    }
}

/// Non-temporal 16-byte store (`movntdq`) of the 16 bytes at `src`: a quarter of the
/// instructions of [`movnti`] for bulk copies. Only where SSE2 is enabled (not on the
/// soft-float kernel target, which uses [`movnti`]).
///
/// # Safety
/// `p` is 16-byte aligned, mapped, writable, and no Rust reference covers it; `src` is
/// readable for 16 bytes.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
// The store address is 16-aligned by contract; the load is unaligned by design.
#[allow(clippy::cast_ptr_alignment)]
pub unsafe fn movntdq(p: *mut u8, src: *const u8) {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    // SAFETY: the caller guarantees both ranges; the load is unaligned, the store is to
    // an aligned address, and SSE2 is enabled at compile time.
    unsafe { _mm_stream_si128(p.cast::<__m128i>(), _mm_loadu_si128(src.cast::<__m128i>())) }
}

/// Copies `n` bytes from `src` to `dst` with non-temporal stores (`movntdq` where SSE2
/// is enabled, else `movnti`), a line per step: bulk moves between two places of the
/// media that must not pull the destination into the cache. In inline assembly, for
/// the reasons given at [`copy_bytes`]. Durable after the next [`sfence`].
///
/// # Safety
/// `n` is a multiple of 64, `dst` is 16-byte aligned, `src` is readable and `dst`
/// writable for `n` bytes, and the ranges do not overlap.
#[inline(always)]
pub unsafe fn copy_nt(dst: *mut u8, src: *const u8, n: usize) {
    if n == 0 {
        return;
    }
    debug_assert!(n.is_multiple_of(64) && (dst as usize).is_multiple_of(16));
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the caller guarantees both ranges, the alignment `movntdq` needs and
    // `n > 0` a multiple of 64, so the loop ends exactly at `n`.
    unsafe {
        core::arch::asm!(
            "2:",
            "movdqu {a}, [{s}]",
            "movdqu {b}, [{s} + 16]",
            "movdqu {c}, [{s} + 32]",
            "movdqu {d}, [{s} + 48]",
            "movntdq [{t}], {a}",
            "movntdq [{t} + 16], {b}",
            "movntdq [{t} + 32], {c}",
            "movntdq [{t} + 48], {d}",
            "add {s}, 64",
            "add {t}, 64",
            "sub {n}, 64",
            "jnz 2b",
            s = inout(reg) src => _,
            t = inout(reg) dst => _,
            n = inout(reg) n => _,
            a = out(xmm_reg) _,
            b = out(xmm_reg) _,
            c = out(xmm_reg) _,
            d = out(xmm_reg) _,
            options(nostack),
        );
    }
    #[cfg(all(target_arch = "x86_64", not(target_feature = "sse2")))]
    // SAFETY: as above; `movnti` needs only the 8-byte alignment `dst` has.
    unsafe {
        core::arch::asm!(
            "2:",
            "mov {a}, [{s}]",
            "mov {b}, [{s} + 8]",
            "movnti [{t}], {a}",
            "movnti [{t} + 8], {b}",
            "add {s}, 16",
            "add {t}, 16",
            "sub {n}, 16",
            "jnz 2b",
            s = inout(reg) src => _,
            t = inout(reg) dst => _,
            n = inout(reg) n => _,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        core::ptr::copy_nonoverlapping(src, dst, n);
    }
}

/// Copies `n` bytes from `src` to `dst` with `rep movsb` (fast-string moves: the CPU
/// copies in wide chunks). In inline assembly the accesses are opaque to the compiler,
/// as the media's atomics are, so racing accesses to pool bytes stay free of undefined
/// behaviour; no atomicity of any unit is promised. General-purpose registers only.
///
/// # Safety
/// `src` is readable and `dst` writable for `n` bytes, and the ranges do not overlap.
#[inline(always)]
pub unsafe fn copy_bytes(dst: *mut u8, src: *const u8, n: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees both ranges; the direction flag is clear at every
    // function boundary (System V ABI), so the copy runs forwards.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        core::ptr::copy_nonoverlapping(src, dst, n);
    }
}

/// The carry-less product of `a` and `b`, each below 2^32 (`pclmulqdq`), which fits 63
/// bits.
///
/// # Safety
/// [`crate::cpu::features`] reports `pclmul` (the CPU has the instruction and this build
/// may use XMM registers).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
#[target_feature(enable = "pclmulqdq")]
pub unsafe fn clmul32(a: u32, b: u32) -> u64 {
    use core::arch::x86_64::{_mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_cvtsi64_si128};
    let p = _mm_clmulepi64_si128(
        _mm_cvtsi64_si128(i64::from(a)),
        _mm_cvtsi64_si128(i64::from(b)),
        0,
    );
    _mm_cvtsi128_si64(p).cast_unsigned()
}

/// Stand-in where XMM registers are off limits: never called (`pclmul` is false there).
///
/// # Safety
/// None needed; it panics.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub unsafe fn clmul32(a: u32, b: u32) -> u64 {
    unreachable!("pclmulqdq is not available in this build ({a}, {b})")
}

/// One step of CRC-32C (Castagnoli) over 8 bytes (`crc32 r64, r64`).
///
/// Uses general-purpose registers only, so it works on the soft-float kernel target.
///
/// # Safety
/// The CPU supports SSE4.2 (`CPUID.1:ECX[20]`, see [`crate::cpu::features`]).
#[inline(always)]
pub unsafe fn crc32c_u64(crc: u32, v: u64) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut c = u64::from(crc);
        // SAFETY: the caller guarantees SSE4.2; the instruction touches only registers.
        unsafe {
            core::arch::asm!("crc32 {c}, {v}", c = inout(reg) c, v = in(reg) v, options(pure, nomem, nostack, preserves_flags));
        }
        c as u32
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = v;
        unreachable!("crc32c_u64 needs x86_64 with SSE4.2 ({crc})")
    }
}

/// One step of CRC-32C over 4 bytes (`crc32 r32, r32`).
///
/// # Safety
/// The CPU supports SSE4.2.
#[inline(always)]
pub unsafe fn crc32c_u32(crc: u32, v: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut c = crc;
        // SAFETY: the caller guarantees SSE4.2; the instruction touches only registers.
        unsafe {
            core::arch::asm!("crc32 {c:e}, {v:e}", c = inout(reg) c, v = in(reg) v, options(pure, nomem, nostack, preserves_flags));
        }
        c
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = v;
        unreachable!("crc32c_u32 needs x86_64 with SSE4.2 ({crc})")
    }
}

/// One step of CRC-32C over one byte (`crc32 r32, r8`).
///
/// # Safety
/// The CPU supports SSE4.2.
#[inline(always)]
pub unsafe fn crc32c_u8(crc: u32, v: u8) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut c = crc;
        // SAFETY: the caller guarantees SSE4.2; the instruction touches only registers.
        unsafe {
            core::arch::asm!("crc32 {c:e}, {v}", c = inout(reg) c, v = in(reg_byte) v, options(pure, nomem, nostack, preserves_flags));
        }
        c
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = v;
        unreachable!("crc32c_u8 needs x86_64 with SSE4.2 ({crc})")
    }
}
