//! The PVH entry: from QEMU's 32-bit hand-over to Rust's `kmain` in long mode.
//!
//! QEMU's PVH loader enters at the address in the `XEN_ELFNOTE_PHYS32_ENTRY` note in
//! 32-bit protected mode with paging off, flat segments, and `%ebx` holding the physical
//! address of `hvm_start_info`. The stub
//!
//! 1. identity-maps the low 4 GiB with 2 MiB pages (RAM, the kernel, the ACPI tables and
//!    the start info all lie there; the default CPU model has no 1 GiB pages),
//! 2. enables PAE, sets `EFER.LME`, loads `CR3` and turns paging on (long mode),
//! 3. loads a 64-bit GDT, far-jumps into 64-bit code, sets up the stack, and
//! 4. calls `kmain(start_info)`.
//!
//! The NVDIMM ranges lie above 4 GiB at addresses only the NFIT tells; `paging` maps
//! them from Rust once the NFIT is read, into spare page directories (no guess at a
//! range up front, and nothing mapped that is not there).

use core::arch::global_asm;

/// Size of the boot stack, the only stack the kernel has.
pub const STACK_SIZE: usize = 256 * 1024;

global_asm!(
    r#"
    /* The PVH note: QEMU reads a 32-bit entry address after the name, the name padded
     * to the note segment's alignment (4). */
    .pushsection .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* n_namesz: "Xen\0" */
    .long 4                 /* n_descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start32
    .popsection

    .pushsection .bss.boot, "aw", @nobits
    .p2align 12
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd_low:                /* four page directories: 4 x 1 GiB */
    .skip 4096 * 4
    /* Unmapped by `paging::guard_stack` once in Rust: an overflow faults instead of
     * running into the page tables above (a triple fault, as the exception handlers
     * run on this same stack, but never silent corruption). */
    .p2align 12
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack_bottom:
    .skip {stack_size}
boot_stack_top:
    .popsection

    .pushsection .rodata.boot, "a"
    .p2align 3
boot_gdt:
    .quad 0                         /* null */
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code, present, ring 0 */
    .quad 0x00cf92000000ffff        /* 0x10: data, present, writable */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %edi                  /* hvm_start_info, kmain's argument */
    mov $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four low page directories. */
    mov $boot_pdpt, %eax
    or $0x3, %eax                   /* present | writable */
    mov %eax, boot_pml4
    mov $boot_pd_low, %eax
    or $0x3, %eax
    xor %ecx, %ecx
1:
    mov %eax, boot_pdpt(,%ecx,8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b

    /* 2048 entries of 2 MiB: physical = virtual for the low 4 GiB. */
    xor %ecx, %ecx
    mov $0x83, %eax                 /* present | writable | page size (2 MiB) */
2:
    mov %eax, boot_pd_low(,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov %cr4, %eax
    or $(1 << 5), %eax              /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx           /* EFER */
    rdmsr
    or $(1 << 8), %eax              /* LME */
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | 1), %eax  /* PG | WP | PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea boot_stack_top(%rip), %rsp  /* 16-byte aligned: the call pushes 8 */
    mov %edi, %edi                  /* upper half is undefined after the switch */
    call kmain
3:
    cli
    hlt
    jmp 3b
    .popsection
    "#,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    /// The 4 KiB page below the boot stack (see the assembly above).
    static boot_stack_guard: u8;
}

/// Address of the page below the stack, which `paging::unmap_guard_page` unmaps.
pub fn stack_guard() -> u64 {
    core::ptr::addr_of!(boot_stack_guard) as u64
}
