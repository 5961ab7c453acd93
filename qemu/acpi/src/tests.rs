//! The parsers against tables built byte by byte: good ones as QEMU lays them out, and
//! truncated, corrupt and hostile ones, which must give typed errors, never panics.

use super::*;
use std::collections::BTreeMap;

/// Physical memory made of a few regions.
#[derive(Default)]
struct FakeMemory {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FakeMemory {
    fn put(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.insert(addr, bytes);
    }
}

impl PhysMemory for FakeMemory {
    fn read(&self, addr: u64, len: usize) -> Result<&[u8], AcpiError> {
        let unreadable = AcpiError::Unreadable { addr, len };
        let (&start, bytes) = self.regions.range(..=addr).next_back().ok_or(unreadable)?;
        let off = usize::try_from(addr - start).map_err(|_| unreadable)?;
        bytes
            .get(off..off.checked_add(len).ok_or(unreadable)?)
            .ok_or(unreadable)
    }
}

fn fix_checksum(bytes: &mut [u8], at: usize, over: core::ops::Range<usize>) {
    bytes[at] = 0;
    let sum = bytes[over].iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

/// A table with a correct length and checksum.
fn table(sig: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[..4].copy_from_slice(&sig);
    t.extend_from_slice(body);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[8] = 1;
    t[10..16].copy_from_slice(b"BOCHS ");
    let n = t.len();
    fix_checksum(&mut t, 9, 0..n);
    t
}

fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = vec![0u8; RSDP_V2_LEN];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"BOCHS ");
    r[15] = revision;
    r[16..20].copy_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut r, 8, 0..RSDP_V1_LEN);
    if revision < 2 {
        r.truncate(RSDP_V1_LEN);
        return r;
    }
    r[20..24].copy_from_slice(&(RSDP_V2_LEN as u32).to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    fix_checksum(&mut r, 32, 0..RSDP_V2_LEN);
    r
}

fn spa(index: u16, guid: [u8; 16], base: u64, length: u64) -> Vec<u8> {
    let mut s = vec![0u8; SPA_LEN];
    s[2..4].copy_from_slice(&(SPA_LEN as u16).to_le_bytes());
    s[4..6].copy_from_slice(&index.to_le_bytes());
    s[16..32].copy_from_slice(&guid);
    s[32..40].copy_from_slice(&base.to_le_bytes());
    s[40..48].copy_from_slice(&length.to_le_bytes());
    s[48..56].copy_from_slice(&0x8008u64.to_le_bytes());
    s
}

/// A non-SPA structure (type 1, region mapping) of 48 bytes.
fn region_mapping() -> Vec<u8> {
    let mut s = vec![0u8; 48];
    s[0..2].copy_from_slice(&1u16.to_le_bytes());
    s[2..4].copy_from_slice(&48u16.to_le_bytes());
    s
}

const VOLATILE_GUID: [u8; 16] = [
    0x30, 0xbd, 0x5a, 0x7f, 0x5e, 0x54, 0x29, 0x48, 0x8d, 0x3e, 0x7c, 0xf0, 0x3b, 0x87, 0xaa, 0x49,
];
const NV0: u64 = 0x1_0000_0000;
const NV1: u64 = 0x1_0400_0000;
const MIB64: u64 = 64 << 20;

/// The NFIT body as QEMU 7.2 lays it out for two NVDIMMs: the last device first, each
/// SPA followed by other structures.
fn nfit_body() -> Vec<u8> {
    let mut body = vec![0u8; 4]; // reserved
    body.extend(spa(2, PERSISTENT_MEMORY_GUID, NV1, MIB64));
    body.extend(region_mapping());
    body.extend(spa(3, VOLATILE_GUID, 0x2_0000_0000, MIB64));
    body.extend(spa(1, PERSISTENT_MEMORY_GUID, NV0, MIB64));
    body.extend(region_mapping());
    body
}

fn nfit_table() -> Vec<u8> {
    table(*b"NFIT", &nfit_body())
}

/// RSDP at 0xf0000, RSDT at 0x1000 listing FACP, a damaged table and the NFIT.
fn qemu_like(revision: u8) -> FakeMemory {
    let mut m = FakeMemory::default();
    let mut rsdt_body = Vec::new();
    for a in [0x2000u32, 0x3000, 0x4000] {
        rsdt_body.extend(a.to_le_bytes());
    }
    m.put(0x1000, table(*b"RSDT", &rsdt_body));
    m.put(0x2000, table(*b"FACP", &[0; 80]));
    // Unrelated and damaged: wrong checksum and absurd length. Must not matter.
    let mut junk = table(*b"SSDT", &[1, 2, 3]);
    junk[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    m.put(0x3000, junk);
    m.put(0x4000, nfit_table());
    m.put(0xf0000, rsdp(revision, 0x1000, 0));
    m
}

fn pm_ranges(nfit: &Nfit<'_>) -> Result<Vec<SpaRange>, AcpiError> {
    nfit.persistent_memory().collect()
}

#[test]
fn rsdt_walk_finds_nfit_and_its_persistent_ranges() {
    let m = qemu_like(0);
    let sdt = find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap();
    let nfit = Nfit::new(sdt).unwrap();
    let ranges = pm_ranges(&nfit).unwrap();
    assert_eq!(ranges.len(), 2, "the volatile range is left out");
    assert_eq!((ranges[0].index, ranges[0].base), (2, NV1));
    assert_eq!((ranges[1].index, ranges[1].base), (1, NV0));
    assert!(ranges
        .iter()
        .all(|r| r.length == MIB64 && r.attributes == 0x8008));
    assert_eq!(ranges[1].end(), NV0 + MIB64);
    assert_eq!(nfit.spa_ranges().count(), 3);
    assert_eq!(nfit.structures().count(), 5);
}

#[test]
fn xsdt_is_used_from_revision_2() {
    let mut m = qemu_like(2);
    // The RSDT lists no NFIT; only the XSDT does. Revision 2 must take the XSDT.
    m.put(0x1000, table(*b"RSDT", &0x2000u32.to_le_bytes()));
    let mut xsdt_body = Vec::new();
    for a in [0x2000u64, 0x4000] {
        xsdt_body.extend(a.to_le_bytes());
    }
    m.put(0x5000, table(*b"XSDT", &xsdt_body));
    m.put(0xf0000, rsdp(2, 0x1000, 0x5000));
    let nfit = Nfit::new(find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap()).unwrap();
    assert_eq!(pm_ranges(&nfit).unwrap().len(), 2);

    // A revision 2 RSDP without an XSDT address falls back to the RSDT.
    m.put(0xf0000, rsdp(2, 0x1000, 0));
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::NotFound {
            table: Nfit::SIGNATURE
        }
    );
}

#[test]
fn checksums_are_verified_everywhere() {
    // RSDP v1 checksum.
    let mut m = qemu_like(0);
    let mut r = rsdp(0, 0x1000, 0);
    r[16] ^= 1;
    m.put(0xf0000, r);
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::RsdpChecksum { extended: false }
    );
    // RSDP v2 extended checksum.
    let mut r = rsdp(2, 0x1000, 0x5000);
    r[24] ^= 1;
    m.put(0xf0000, r);
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::RsdpChecksum { extended: true }
    );
    // Root table checksum.
    let mut m = qemu_like(0);
    let mut rsdt = table(*b"RSDT", &0x4000u32.to_le_bytes());
    rsdt[HEADER_LEN] ^= 0x10;
    m.put(0x1000, rsdt);
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::TableChecksum {
            table: RootTable::RSDT
        }
    );
    // The NFIT's own checksum.
    let mut m = qemu_like(0);
    let mut nfit = nfit_table();
    nfit[60] ^= 0xff;
    m.put(0x4000, nfit);
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::TableChecksum {
            table: Nfit::SIGNATURE
        }
    );
}

#[test]
fn bad_pointers_and_signatures_are_typed_errors() {
    let m = qemu_like(0);
    assert_eq!(
        find_table(&m, 0x9_0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::Unreadable {
            addr: 0x9_0000,
            len: RSDP_V1_LEN
        }
    );
    let mut m = qemu_like(0);
    let mut r = rsdp(0, 0x1000, 0);
    r[0] = b'X';
    m.put(0xf0000, r);
    assert!(matches!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE),
        Err(AcpiError::RsdpSignature { .. })
    ));
    // The RSDT address points at the FACP.
    let mut m = qemu_like(0);
    m.put(0xf0000, rsdp(0, 0x2000, 0));
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::TableSignature {
            expected: RootTable::RSDT,
            found: Signature(*b"FACP")
        }
    );
    // A root table entry pointing nowhere.
    let mut m = qemu_like(0);
    m.put(0x1000, table(*b"RSDT", &0x7777_0000u32.to_le_bytes()));
    assert!(matches!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE),
        Err(AcpiError::Unreadable {
            addr: 0x7777_0000,
            ..
        })
    ));
    // An RSDT whose entry area is not a multiple of 4.
    let mut m = qemu_like(0);
    m.put(0x1000, table(*b"RSDT", &[0, 0x40, 0, 0, 0]));
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::RootTableLength {
            table: RootTable::RSDT,
            entry_bytes: 5
        }
    );
    // A root table that claims to be longer than memory holds.
    let mut m = qemu_like(0);
    let mut rsdt = table(*b"RSDT", &0x4000u32.to_le_bytes());
    rsdt[4..8].copy_from_slice(&4096u32.to_le_bytes());
    m.put(0x1000, rsdt);
    assert_eq!(
        find_table(&m, 0xf0000, Nfit::SIGNATURE).unwrap_err(),
        AcpiError::Unreadable {
            addr: 0x1000,
            len: 4096
        }
    );
    // A length field below the header size.
    let mut short = table(*b"NFIT", &[]);
    short[4..8].copy_from_slice(&10u32.to_le_bytes());
    assert_eq!(
        Sdt::parse(&short).unwrap_err(),
        AcpiError::TableLength {
            table: Nfit::SIGNATURE,
            length: 10
        }
    );
    assert!(matches!(
        Nfit::new(Sdt::parse(&table(*b"FACP", &[0; 8])).unwrap()),
        Err(AcpiError::TableSignature { .. })
    ));
}

#[test]
fn every_truncation_of_every_structure_is_an_error_not_a_panic() {
    let full = nfit_table();
    for len in 0..full.len() {
        // Cut bytes (the length field still claims the whole table).
        assert!(Sdt::parse(&full[..len]).is_err(), "cut at {len}");
        // A consistent table (length and checksum fixed up) whose last structure is
        // cut: the structures before it parse, then exactly one error.
        if len < HEADER_LEN {
            continue;
        }
        let mut t = full[..len].to_vec();
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        fix_checksum(&mut t, 9, 0..len);
        let Ok(nfit) = Sdt::parse(&t).and_then(Nfit::new) else {
            assert!(
                len < HEADER_LEN + 4,
                "only a missing reserved field may fail"
            );
            continue;
        };
        let items: Vec<_> = nfit.structures().collect();
        let errors = items.iter().filter(|r| r.is_err()).count();
        let whole = items.iter().filter(|r| r.is_ok()).count();
        let boundaries = [40, 96, 144, 200, 256, 304];
        assert_eq!(errors, usize::from(!boundaries.contains(&len)), "len {len}");
        assert_eq!(
            whole,
            boundaries.iter().filter(|&&b| b > 40 && b <= len).count()
        );
        assert!(items.last().is_none_or(Result::is_err) || boundaries.contains(&len));
    }
    let pr = RSDP_V2_LEN;
    let r = rsdp(2, 1, 2);
    for len in 0..pr {
        if len < RSDP_V1_LEN {
            assert!(Rsdp::parse(&r[..len]).is_err());
        } else {
            assert!(matches!(
                Rsdp::parse(&r[..len]),
                Err(AcpiError::Truncated { needed: 36, .. })
            ));
        }
    }
}

#[test]
fn hostile_structure_lengths_stop_the_walk() {
    let with_first_structure = |s: Vec<u8>| {
        let mut body = vec![0u8; 4];
        body.extend(s);
        body.extend(spa(1, PERSISTENT_MEMORY_GUID, NV0, MIB64));
        table(*b"NFIT", &body)
    };
    // Length 0 would loop forever if trusted; 3 is below the header; 0xffff runs past
    // the end.
    for (length, expected) in [
        (
            0u16,
            AcpiError::StructureLength {
                offset: 40,
                length: 0,
            },
        ),
        (
            3,
            AcpiError::StructureLength {
                offset: 40,
                length: 3,
            },
        ),
        (
            0xffff,
            AcpiError::StructureLength {
                offset: 40,
                length: 0xffff,
            },
        ),
    ] {
        let mut s = region_mapping();
        s[2..4].copy_from_slice(&length.to_le_bytes());
        let t = with_first_structure(s);
        let nfit = Nfit::new(Sdt::parse(&t).unwrap()).unwrap();
        let items: Vec<_> = nfit.persistent_memory().collect();
        assert_eq!(items, vec![Err(expected)]);
    }
    // An SPA structure claiming 40 bytes (shorter than its fields).
    let mut s = spa(1, PERSISTENT_MEMORY_GUID, NV0, MIB64);
    s[2..4].copy_from_slice(&40u16.to_le_bytes());
    s.truncate(40);
    let t = with_first_structure(s);
    let nfit = Nfit::new(Sdt::parse(&t).unwrap()).unwrap();
    assert_eq!(
        nfit.spa_ranges().next(),
        Some(Err(AcpiError::SpaTooShort {
            offset: 40,
            length: 40
        }))
    );
    // Ranges that are empty or wrap around.
    for (base, length) in [(NV0, 0), (u64::MAX - 10, 11)] {
        let t = with_first_structure(spa(7, PERSISTENT_MEMORY_GUID, base, length));
        let nfit = Nfit::new(Sdt::parse(&t).unwrap()).unwrap();
        assert_eq!(
            nfit.persistent_memory().next(),
            Some(Err(AcpiError::SpaRange {
                index: 7,
                base,
                length
            }))
        );
    }
    // ACPI 6.4's 64-byte SPA structure (with a location cookie) is accepted.
    let mut s = spa(4, PERSISTENT_MEMORY_GUID, NV0, MIB64);
    s.extend([0xaa; 8]);
    s[2..4].copy_from_slice(&64u16.to_le_bytes());
    let mut body = vec![0u8; 4];
    body.extend(s);
    let t = table(*b"NFIT", &body);
    let nfit = Nfit::new(Sdt::parse(&t).unwrap()).unwrap();
    assert_eq!(pm_ranges(&nfit).unwrap()[0].index, 4);
}

#[test]
fn random_corruption_never_panics() {
    // Deterministic xorshift: flip a few random bytes of the whole QEMU-like memory and
    // walk it; any outcome but a panic is fine, and damage to the NFIT or the path to it
    // must not yield a range the table never had.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut found = 0;
    for _ in 0..5000 {
        let mut m = qemu_like(0);
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let keys: Vec<u64> = m.regions.keys().copied().collect();
            let key = keys[(next() % keys.len() as u64) as usize];
            let region = m.regions.get_mut(&key).unwrap();
            let at = (next() % region.len() as u64) as usize;
            region[at] ^= 1 << (next() % 8);
        }
        if let Ok(sdt) = find_table(&m, 0xf0000, Nfit::SIGNATURE) {
            if let Ok(nfit) = Nfit::new(sdt) {
                for r in nfit.persistent_memory().flatten() {
                    assert!(r.base == NV0 || r.base == NV1, "{r:?}");
                    found += 1;
                }
            }
        }
    }
    assert!(found > 0, "some runs must leave the NFIT intact");
}

#[test]
fn errors_print_what_and_where() {
    let e = AcpiError::StructureLength {
        offset: 40,
        length: 3,
    };
    assert_eq!(e.to_string(), "NFIT structure at offset 40: bad length 3");
    let e = AcpiError::TableChecksum {
        table: Signature(*b"NF\x00T"),
    };
    assert_eq!(e.to_string(), "NF\\x00T: checksum does not sum to zero");
}
