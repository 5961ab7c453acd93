//! From the RSDP to a table: the walk the kernel does at boot.

use crate::{AcpiError, RootTable, Rsdp, Sdt, Signature, HEADER_LEN, RSDP_V1_LEN};

/// Largest table accepted. Real NFITs are a few hundred bytes; a corrupt length field
/// must not make the kernel checksum gigabytes.
pub const MAX_TABLE_LEN: usize = 1 << 20;

/// Read access to physical memory, as the tables see it.
pub trait PhysMemory {
    /// The `len` bytes at physical address `addr`, or [`AcpiError::Unreadable`] when
    /// they are not all mapped.
    fn read(&self, addr: u64, len: usize) -> Result<&[u8], AcpiError>;
}

fn read_table<M: PhysMemory + ?Sized>(mem: &M, addr: u64) -> Result<Sdt<'_>, AcpiError> {
    let (_, length) = Sdt::peek(mem.read(addr, HEADER_LEN)?, MAX_TABLE_LEN)?;
    Sdt::parse(mem.read(addr, length)?)
}

/// Reads and validates the RSDP at `rsdp_addr`.
pub fn read_rsdp<M: PhysMemory + ?Sized>(mem: &M, rsdp_addr: u64) -> Result<Rsdp, AcpiError> {
    let mut len = RSDP_V1_LEN;
    // 20 bytes give the revision, 36 the length field, then the length itself: at most
    // three reads, each longer than the one before.
    for _ in 0..3 {
        let bytes = mem.read(rsdp_addr, len)?;
        let needed = Rsdp::needed_len(bytes)?;
        if needed <= bytes.len() {
            return Rsdp::parse(bytes);
        }
        len = needed;
    }
    Err(AcpiError::Unreadable {
        addr: rsdp_addr,
        len,
    })
}

/// Finds the table called `signature`: RSDP at `rsdp_addr` → XSDT (when the RSDP is
/// revision 2 or later and gives one) or RSDT → the first listed table with that
/// signature. The root table and the table found are checksummed; other listed tables
/// are only read as far as their signature, so a damaged unrelated table does not hide the one
/// wanted.
pub fn find_table<M: PhysMemory + ?Sized>(
    mem: &M,
    rsdp_addr: u64,
    signature: Signature,
) -> Result<Sdt<'_>, AcpiError> {
    let rsdp = read_rsdp(mem, rsdp_addr)?;
    let (root_addr, root_sig) = match rsdp.xsdt {
        Some(x) => (x, RootTable::XSDT),
        None => (u64::from(rsdp.rsdt), RootTable::RSDT),
    };
    let root_sdt = read_table(mem, root_addr)?;
    if root_sdt.signature() != root_sig {
        return Err(AcpiError::TableSignature {
            expected: root_sig,
            found: root_sdt.signature(),
        });
    }
    let root = RootTable::new(root_sdt)?;
    for addr in root.entries() {
        let sig = mem.read(addr, 4)?;
        if sig == signature.0 {
            return read_table(mem, addr);
        }
    }
    Err(AcpiError::NotFound { table: signature })
}
