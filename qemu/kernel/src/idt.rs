//! CPU exception handlers: any exception prints what and where, then fails the run.
//!
//! Without them an exception (a page fault on an unmapped NVDIMM, say) triple-faults,
//! and QEMU with `-no-reboot` exits 0 with nothing on the serial line. Each stub pushes
//! a dummy error code where the CPU pushes none, then the vector, and jumps to a
//! common path that calls [`kernel_exception`]. No interrupt is ever enabled, so
//! exceptions are all there is.

use core::arch::global_asm;
use core::fmt::Write;

use pm_qemu_proto::GuestExit;
use spin::Once;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

/// Bytes between two stubs (each is padded to this size).
const STUB_SIZE: u64 = 16;

global_asm!(
    r#"
    .pushsection .text.exceptions, "ax"
    .p2align 4
    .global exception_stubs
exception_stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21
    .p2align 4
    /* Vectors 8, 10-14, 17 and 21 get an error code from the CPU. */
    .if (\vector != 8) && ((\vector < 10) || (\vector > 14)) && (\vector != 17) && (\vector != 21)
    push $0
    .endif
    push $\vector
    jmp exception_common
    .endr

exception_common:
    pop %rdi                /* vector */
    pop %rsi                /* error code */
    mov %rsp, %rdx          /* the CPU's frame: rip, cs, rflags, rsp, ss */
    and $-16, %rsp
    call kernel_exception
    ud2
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    /// First byte of the stub for vector 0; vector `v` starts `v * STUB_SIZE` later.
    static exception_stubs: u8;
}

const NAMES: [&str; 22] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating point",
    "alignment check",
    "machine check",
    "SIMD floating point",
    "virtualization",
    "control protection",
];

/// Called by the stubs; prints and fails the run.
#[no_mangle]
extern "C" fn kernel_exception(vector: u64, error: u64, frame: *const u64) -> ! {
    // SAFETY: `frame` is the stack pointer after the CPU pushed its 5-word frame for
    // this exception, so the first word (the faulting rip) is readable.
    let rip = unsafe { frame.read() };
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let name = NAMES.get(vector as usize).copied().unwrap_or("?");
    let mut w = crate::serial::emergency_writer();
    let _ = writeln!(
        w,
        "\nEXCEPTION in test {}: {name} (vector {vector}) error {error:#x} at rip {rip:#x} cr2 {cr2:#x}",
        crate::testing::current().unwrap_or("-")
    );
    crate::exit::exit(GuestExit::Fail)
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Installs the handlers for vectors 0-21.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        let base = core::ptr::addr_of!(exception_stubs) as u64;
        let at = |v: u64| VirtAddr::new(base + v * STUB_SIZE);
        // SAFETY: each address is the stub for that entry's vector, which never
        // returns (it calls `kernel_exception`, which exits), so the handler signature
        // expected by the entry type is never relied on.
        unsafe {
            idt.divide_error.set_handler_addr(at(0));
            idt.debug.set_handler_addr(at(1));
            idt.non_maskable_interrupt.set_handler_addr(at(2));
            idt.breakpoint.set_handler_addr(at(3));
            idt.overflow.set_handler_addr(at(4));
            idt.bound_range_exceeded.set_handler_addr(at(5));
            idt.invalid_opcode.set_handler_addr(at(6));
            idt.device_not_available.set_handler_addr(at(7));
            idt.double_fault.set_handler_addr(at(8));
            idt.invalid_tss.set_handler_addr(at(10));
            idt.segment_not_present.set_handler_addr(at(11));
            idt.stack_segment_fault.set_handler_addr(at(12));
            idt.general_protection_fault.set_handler_addr(at(13));
            idt.page_fault.set_handler_addr(at(14));
            idt.x87_floating_point.set_handler_addr(at(16));
            idt.alignment_check.set_handler_addr(at(17));
            idt.machine_check.set_handler_addr(at(18));
            idt.simd_floating_point.set_handler_addr(at(19));
            idt.virtualization.set_handler_addr(at(20));
            idt.cp_protection_exception.set_handler_addr(at(21));
        }
        idt
    });
    idt.load();
}
