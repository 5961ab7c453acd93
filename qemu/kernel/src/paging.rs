//! Identity mappings added after boot: the NVDIMM ranges, which lie above the 4 GiB
//! the boot stub maps and whose addresses only the NFIT tells.
//!
//! New page directories come from a static pool of [`SPARE_TABLES`] zeroed tables;
//! each covers 1 GiB of 2 MiB pages, so the pool maps up to that many GiB of NVDIMM
//! address space, anywhere below 512 GiB (the first PML4 entry, the only one the boot
//! stub fills).

use core::cell::UnsafeCell;
use core::fmt;

use spin::Mutex;
use x86_64::instructions::tlb;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, PageSize, PageTable, PageTableFlags, PhysFrame,
    Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// Page directories available for new mappings.
pub const SPARE_TABLES: usize = 16;
/// The boot stub fills only PML4 entry 0, so identity mappings stay below this.
pub const REACH: u64 = 512 << 30;

/// Why a range could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// The range ends above [`REACH`] or wraps.
    OutOfReach {
        /// Start of the range.
        start: u64,
        /// Its length.
        len: u64,
    },
    /// The spare page directories ran out.
    NoTables {
        /// The 2 MiB page that needed one.
        page: u64,
    },
    /// The page is already mapped, to another frame or as a 1 GiB page.
    Conflict {
        /// The 2 MiB page.
        page: u64,
    },
    /// The address is not mapped at all (so it cannot become a guard page).
    NotMapped {
        /// The address.
        addr: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::OutOfReach { start, len } => write!(
                f,
                "range {start:#x}+{len:#x} is beyond the mappable {REACH:#x}"
            ),
            MapError::NoTables { page } => {
                write!(f, "no spare page directory left to map {page:#x}")
            }
            MapError::Conflict { page } => write!(f, "page {page:#x} is already mapped"),
            MapError::NotMapped { addr } => write!(f, "{addr:#x} is not mapped"),
        }
    }
}

impl core::error::Error for MapError {}

#[repr(C, align(4096))]
struct Spare(UnsafeCell<[PageTable; SPARE_TABLES]>);

// SAFETY: the tables are touched only through `MAPPER`'s lock.
unsafe impl Sync for Spare {}

static SPARE: Spare = Spare(UnsafeCell::new([const { PageTable::new() }; SPARE_TABLES]));

/// How many spare tables are in use; the lock also serialises every page-table change.
static MAPPER: Mutex<usize> = Mutex::new(0);

/// Hands out the spare tables (their physical address is their address: the kernel is
/// identity-mapped).
struct SpareFrames<'a> {
    used: &'a mut usize,
}

// SAFETY: every frame returned is a distinct, page-aligned, zeroed, otherwise unused
// static table; `used` only grows, so none is returned twice.
unsafe impl FrameAllocator<Size4KiB> for SpareFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if *self.used == SPARE_TABLES {
            return None;
        }
        let addr = SPARE.0.get() as u64 + (*self.used as u64) * Size4KiB::SIZE;
        *self.used += 1;
        Some(PhysFrame::containing_address(PhysAddr::new(addr)))
    }
}

/// Runs `f` on the live PML4 and the spare-table allocator, under `MAPPER`'s lock.
fn with_tables<T>(f: impl FnOnce(&mut PageTable, &mut SpareFrames<'_>) -> T) -> T {
    let mut used = MAPPER.lock();
    let (pml4_frame, _) = Cr3::read();
    // SAFETY: CR3 holds the boot stub's PML4, identity-mapped; `MAPPER`'s lock makes
    // this the only reference to it (and to every table below it) while it lives.
    let pml4 = unsafe { &mut *(pml4_frame.start_address().as_u64() as *mut PageTable) };
    f(pml4, &mut SpareFrames { used: &mut used })
}

/// Unmaps the 4 KiB page at `addr` (page-aligned, inside a 2 MiB page of the boot
/// identity map), splitting that 2 MiB page into 4 KiB pages first.
pub fn unmap_guard_page(addr: u64) -> Result<(), MapError> {
    let not_mapped = MapError::NotMapped { addr };
    let va = VirtAddr::new(addr);
    with_tables(|pml4, frames| {
        let table_at = |e: &x86_64::structures::paging::page_table::PageTableEntry| {
            e.addr().as_u64() as *mut PageTable
        };
        let l4 = &pml4[va.p4_index()];
        if !l4.flags().contains(PageTableFlags::PRESENT) {
            return Err(not_mapped);
        }
        // SAFETY: a present PML4 entry of the boot tables points at an identity-mapped
        // PDPT; the lock held by `with_tables` makes this the only reference to it.
        let pdpt = unsafe { &mut *table_at(l4) };
        let l3 = &pdpt[va.p3_index()];
        if !l3.flags().contains(PageTableFlags::PRESENT)
            || l3.flags().contains(PageTableFlags::HUGE_PAGE)
        {
            return Err(not_mapped);
        }
        // SAFETY: as above, one level down (a present, non-huge PDPT entry).
        let pd = unsafe { &mut *table_at(l3) };
        let l2 = &mut pd[va.p2_index()];
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        if !l2.flags().contains(PageTableFlags::PRESENT) {
            return Err(not_mapped);
        }
        if l2.flags().contains(PageTableFlags::HUGE_PAGE) {
            let huge = l2.addr();
            let frame = frames.allocate_frame().ok_or(MapError::NoTables {
                page: huge.as_u64(),
            })?;
            // SAFETY: a fresh, zeroed spare table, identity-mapped and referenced
            // nowhere else; it becomes reachable only when `l2` is updated below.
            let pt = unsafe { &mut *(frame.start_address().as_u64() as *mut PageTable) };
            for (i, e) in pt.iter_mut().enumerate() {
                e.set_addr(huge + i as u64 * Size4KiB::SIZE, flags);
            }
            l2.set_addr(frame.start_address(), flags);
        }
        // SAFETY: `l2` now points at a 4 KiB page table (split above, or already one).
        let pt = unsafe { &mut *table_at(l2) };
        pt[va.p1_index()].set_unused();
        tlb::flush_all();
        Ok(())
    })
}

/// Whether `addr` translates to itself (identity-mapped and present).
pub fn is_identity_mapped(addr: u64) -> bool {
    with_tables(|pml4, _| {
        // SAFETY: all of physical memory the tables live in is mapped at offset 0.
        let mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(0)) };
        mapper.translate_addr(VirtAddr::new(addr)) == Some(PhysAddr::new(addr))
    })
}

/// Identity-maps `[start, start + len)`, rounded out to 2 MiB pages, writable and
/// cacheable (write-back: the ADR model needs cached stores that a flush writes back).
/// Pages already identity-mapped are left as they are.
pub fn identity_map(start: u64, len: u64) -> Result<(), MapError> {
    let end = start
        .checked_add(len)
        .filter(|&e| e <= REACH)
        .ok_or(MapError::OutOfReach { start, len })?;
    with_tables(|pml4, frames| {
        // SAFETY: all of physical memory the tables live in is mapped at offset 0.
        let mut mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(0)) };
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        let mut page = start & !(Size2MiB::SIZE - 1);
        while page < end {
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(page));
            // SAFETY: an identity mapping of memory nothing else maps: it creates no alias
            // of any existing mapping, and the NVDIMM range it exposes is reached only
            // through `RawMedia` (raw pointers and atomics).
            match unsafe { mapper.identity_map(frame, flags, frames) } {
                Ok(flush) => flush.flush(),
                Err(MapToError::PageAlreadyMapped(f)) if f == frame => {}
                Err(MapToError::FrameAllocationFailed) => return Err(MapError::NoTables { page }),
                Err(MapToError::PageAlreadyMapped(_) | MapToError::ParentEntryHugePage) => {
                    return Err(MapError::Conflict { page })
                }
            }
            page += Size2MiB::SIZE;
        }
        Ok(())
    })
}
