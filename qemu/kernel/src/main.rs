//! The bare-metal test kernel: QEMU boots it (PVH) with emulated NVDIMMs; it finds them
//! through the ACPI NFIT, runs the suite named on its command line, prints one line per
//! test and `N passed, N failed`, and exits through `isa-debug-exit` (33 = pass).
//!
//! See `docs/qemu.md` for the boot path, the command line and the crash cycles.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

extern crate alloc;

// First: the print macros are used by every module below.
#[macro_use]
mod serial;

mod adr;
mod boot;
mod crash;
mod exit;
mod firmware;
mod heap;
mod idt;
mod nvdimm;
mod paging;
mod start_info;
mod suites;
mod testing;

use core::fmt::Write;
use core::panic::PanicInfo;

use pm_qemu_proto::{BootArgs, GuestExit};

use crate::exit::exit;
use crate::firmware::LowMemory;
use crate::start_info::StartInfo;
use crate::testing::Env;

/// Rust entry, called once by the boot stub in long mode with the physical address of
/// `hvm_start_info`.
#[no_mangle]
extern "C" fn kmain(start_info: u64) -> ! {
    serial::init();
    idt::init();
    if let Err(e) = paging::unmap_guard_page(boot::stack_guard()) {
        println!("pm-kernel: no stack guard page: {e}");
        exit(GuestExit::Fail);
    }
    let info = StartInfo::read(start_info).unwrap_or_else(|e| {
        println!("pm-kernel: {e}");
        exit(GuestExit::Fail)
    });
    let cmdline = info.cmdline.as_str();
    let args = BootArgs::parse(cmdline).unwrap_or_else(|e| {
        println!("pm-kernel: bad command line: {e}: {:?}", e.word(cmdline));
        exit(GuestExit::Fail)
    });
    println!("pm-kernel: {args}");
    // Firmware tables are read only inside these regions (all of low memory if none).
    for r in &info.memmap {
        println!("memory: {:#x}+{:#x} type {}", r.base, r.size, r.kind);
    }
    // Nothing has allocated so far; from here on `alloc` is served by pmalloc.
    match heap::init(&info.memmap) {
        Ok(r) => println!("heap: {:#x}+{:#x} (pmalloc VolatileHeap)", r.start, r.len),
        Err(e) => {
            println!("pm-kernel: {e}");
            exit(GuestExit::Fail)
        }
    }
    let nvdimms = nvdimm::discover(&LowMemory::within(&info.memmap), info.rsdp);
    match &nvdimms {
        Ok(list) => {
            for n in list {
                println!(
                    "nvdimm {}: base {:#x} len {:#x} (NFIT SPA range {})",
                    n.index, n.base, n.len, n.spa_index
                );
            }
        }
        Err(e) => println!("nvdimm discovery failed: {e}"),
    }
    let env = Env { args, nvdimms };
    let summary = testing::run(&suites::tests(args.suite), &env);
    exit(if summary.is_pass() {
        GuestExit::Pass
    } else {
        GuestExit::Fail
    })
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut w = serial::emergency_writer();
    let test = testing::current().unwrap_or("-");
    let _ = writeln!(w, "\nPANIC in test {test}: {info}");
    exit(GuestExit::Fail)
}
