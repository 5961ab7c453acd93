//! The static pool header: written once at create, kept in two copies (first and last
//! page), each with its own CRC-32C. See `docs/pool-format.md` for the byte table.

use crate::checksum::crc32c;
use crate::layout::{Layout, LayoutError, CHUNK};

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"PMALLOC\0";
/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of one header copy.
pub const HEADER_LEN: usize = 256;
/// Maximum layout-name length.
pub const LAYOUT_NAME_LEN: usize = 32;

// Field offsets (little-endian).
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_UUID: usize = 16;
const OFF_LAYOUT: usize = 32;
const OFF_POOL_SIZE: usize = 64;
const OFF_CTIME: usize = 72;
const OFF_CHUNK_SIZE: usize = 80;
const OFF_NLANES: usize = 84;
const OFF_LANES: usize = 88;
const OFF_RUNTIME: usize = 96;
const OFF_RUNTIME_LEN: usize = 104;
const OFF_CHUNKS: usize = 112;
const OFF_NCHUNKS: usize = 120;
const OFF_HEAP: usize = 128;
const OFF_BACKUP: usize = 136;
const OFF_CRC: usize = 252;
const _: () = assert!(OFF_BACKUP + 8 <= OFF_CRC && OFF_CRC + 4 == HEADER_LEN);

/// Flags word: the pool was created for eADR (flushes skipped).
pub const FLAG_EADR: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_EADR;

/// The decoded static header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolHeader {
    /// Pool identity.
    pub uuid: [u8; 16],
    /// The application's layout name (checked at open, like PMDK's layout).
    pub layout_name: [u8; LAYOUT_NAME_LEN],
    /// Creation time (seconds since the Unix epoch, as the creator said).
    pub creation_time: u64,
    /// Flag bits (`FLAG_*`).
    pub flags: u32,
    /// Where everything is.
    pub layout: Layout,
}

/// Why a header copy is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// Wrong magic.
    BadMagic,
    /// A version this code does not read.
    UnsupportedVersion(u32),
    /// Checksum mismatch.
    BadChecksum,
    /// Unknown flag bits.
    UnknownFlags(u32),
    /// The offsets disagree with the sizes.
    InconsistentLayout,
    /// The sizes make no valid layout.
    BadSize(LayoutError),
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]))
}
fn usize_at(b: &[u8], off: usize) -> Option<usize> {
    usize::try_from(u64_at(b, off)).ok()
}

impl PoolHeader {
    /// A 64-bit salt from the UUID, mixed into every object and record checksum so
    /// that bytes copied from another pool never validate here.
    pub fn salt(&self) -> u64 {
        u64::from_le_bytes(self.uuid[..8].try_into().unwrap_or([0; 8]))
            ^ u64::from_le_bytes(self.uuid[8..].try_into().unwrap_or([0; 8])).rotate_left(17)
    }

    /// Serializes to `HEADER_LEN` bytes with the checksum filled in.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = &self.layout;
        let mut b = [0u8; HEADER_LEN];
        b[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC);
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&self.flags.to_le_bytes());
        b[OFF_UUID..OFF_UUID + 16].copy_from_slice(&self.uuid);
        b[OFF_LAYOUT..OFF_LAYOUT + LAYOUT_NAME_LEN].copy_from_slice(&self.layout_name);
        let words: [(usize, u64); 9] = [
            (OFF_POOL_SIZE, l.pool_size as u64),
            (OFF_CTIME, self.creation_time),
            (OFF_LANES, l.lanes_off as u64),
            (OFF_RUNTIME, l.runtime_off as u64),
            (OFF_RUNTIME_LEN, l.runtime_len as u64),
            (OFF_CHUNKS, l.chunks_off as u64),
            (OFF_NCHUNKS, l.nchunks as u64),
            (OFF_HEAP, l.heap_off as u64),
            (OFF_BACKUP, l.backup_off as u64),
        ];
        for (off, v) in words {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        b[OFF_CHUNK_SIZE..OFF_CHUNK_SIZE + 4].copy_from_slice(&(CHUNK as u32).to_le_bytes());
        b[OFF_NLANES..OFF_NLANES + 4].copy_from_slice(&l.nlanes.to_le_bytes());
        let crc = crc32c(&[&b[..OFF_CRC]]);
        b[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and validates one copy.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<PoolHeader, HeaderFault> {
        if b[OFF_MAGIC..OFF_MAGIC + 8] != MAGIC {
            return Err(HeaderFault::BadMagic);
        }
        if crc32c(&[&b[..OFF_CRC]]) != u32_at(b, OFF_CRC) {
            return Err(HeaderFault::BadChecksum);
        }
        let version = u32_at(b, OFF_VERSION);
        if version != FORMAT_VERSION {
            return Err(HeaderFault::UnsupportedVersion(version));
        }
        let flags = u32_at(b, OFF_FLAGS);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(HeaderFault::UnknownFlags(flags));
        }
        if u32_at(b, OFF_CHUNK_SIZE) as usize != CHUNK {
            return Err(HeaderFault::InconsistentLayout);
        }
        let size = usize_at(b, OFF_POOL_SIZE).ok_or(HeaderFault::InconsistentLayout)?;
        let runtime_len = usize_at(b, OFF_RUNTIME_LEN).ok_or(HeaderFault::InconsistentLayout)?;
        let layout = Layout::compute(size, u32_at(b, OFF_NLANES), runtime_len)
            .map_err(HeaderFault::BadSize)?;
        let stored = [
            (OFF_LANES, layout.lanes_off),
            (OFF_RUNTIME, layout.runtime_off),
            (OFF_CHUNKS, layout.chunks_off),
            (OFF_NCHUNKS, layout.nchunks),
            (OFF_HEAP, layout.heap_off),
            (OFF_BACKUP, layout.backup_off),
        ];
        if layout.pool_size != size || stored.iter().any(|&(off, v)| usize_at(b, off) != Some(v)) {
            return Err(HeaderFault::InconsistentLayout);
        }
        let mut uuid = [0; 16];
        uuid.copy_from_slice(&b[OFF_UUID..OFF_UUID + 16]);
        let mut layout_name = [0; LAYOUT_NAME_LEN];
        layout_name.copy_from_slice(&b[OFF_LAYOUT..OFF_LAYOUT + LAYOUT_NAME_LEN]);
        Ok(PoolHeader {
            uuid,
            layout_name,
            creation_time: u64_at(b, OFF_CTIME),
            flags,
            layout,
        })
    }
}

/// Encodes `name` as a NUL-padded layout name; `None` if longer than the field.
pub fn layout_name(name: &str) -> Option<[u8; LAYOUT_NAME_LEN]> {
    let bytes = name.as_bytes();
    (bytes.len() <= LAYOUT_NAME_LEN).then(|| {
        let mut out = [0u8; LAYOUT_NAME_LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PoolHeader {
        PoolHeader {
            uuid: [7; 16],
            layout_name: layout_name("kv-store").unwrap(),
            creation_time: 1_700_000_000,
            flags: 0,
            layout: Layout::compute(64 << 20, 16, 1 << 20).unwrap(),
        }
    }

    #[test]
    fn round_trips() {
        let h = sample();
        assert_eq!(PoolHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let b = sample().encode();
        for bit in 0..HEADER_LEN * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(
                PoolHeader::decode(&c).is_err(),
                "flip of bit {bit} accepted"
            );
        }
    }

    #[test]
    fn consistent_checksum_but_wrong_offsets_is_rejected() {
        let mut b = sample().encode();
        b[OFF_HEAP..OFF_HEAP + 8].copy_from_slice(&4096u64.to_le_bytes());
        let crc = crc32c(&[&b[..OFF_CRC]]);
        b[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(PoolHeader::decode(&b), Err(HeaderFault::InconsistentLayout));
    }

    #[test]
    fn future_version_is_reported_as_such() {
        let mut b = sample().encode();
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c(&[&b[..OFF_CRC]]);
        b[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            PoolHeader::decode(&b),
            Err(HeaderFault::UnsupportedVersion(2))
        );
    }
}
