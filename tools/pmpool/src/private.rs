//! `PrivateCopy`: a pool file read into memory, so inspecting it (open runs recovery,
//! which writes) never changes the file.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::ptr::NonNull;

use arch::{Counters, Media, MediaInfo, PersistMode, RawMedia};

use crate::PmpoolError;

/// The bytes of a file as media in ordinary memory (flushes skipped: nothing here is
/// meant to persist). Writes, including recovery's, change only the copy.
#[derive(Debug)]
pub struct PrivateCopy {
    /// The copy, as media.
    raw: RawMedia,
    /// The allocation behind `raw` (8-byte words, so `raw` is aligned), freed on drop.
    words: NonNull<[u64]>,
}

// SAFETY: `words` is reached only through `raw`, which is Send + Sync (atomics).
unsafe impl Send for PrivateCopy {}
// SAFETY: as for Send.
unsafe impl Sync for PrivateCopy {}

impl PrivateCopy {
    /// Reads all of `path`.
    pub fn read(path: &Path) -> Result<Self, PmpoolError> {
        let err = |source| PmpoolError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(err)?;
        let len = usize::try_from(file.metadata().map_err(err)?.len()).map_err(|_| {
            PmpoolError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::other("file too large to read"),
            }
        })?;
        if len == 0 {
            return Err(PmpoolError::Empty {
                path: path.to_path_buf(),
            });
        }
        let words = NonNull::from(Box::leak(vec![0u64; len.div_ceil(8)].into_boxed_slice()));
        // Owns the allocation until `raw` exists (freed if the read fails).
        let copy = PrivateCopy {
            // SAFETY: the allocation is `len.div_ceil(8) * 8 >= len` bytes, 8-aligned,
            // freed only in `drop` after the last use of `raw`; the slice made below to
            // fill it is dropped before `raw` is ever used.
            raw: unsafe { RawMedia::new(words.cast::<u8>(), len, PersistMode::Eadr) }
                .with_kind("private-copy"),
            words,
        };
        // SAFETY: the allocation is valid for `len` bytes, nothing else refers to it
        // yet, and the slice ends with this statement.
        let bytes = unsafe { std::slice::from_raw_parts_mut(words.cast::<u8>().as_ptr(), len) };
        file.read_exact(bytes).map_err(err)?;
        Ok(copy)
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        // SAFETY: `words` came from `Box::leak` in `read` and is freed only here; `raw`
        // is not used after this.
        drop(unsafe { Box::from_raw(self.words.as_ptr()) });
    }
}

impl Media for PrivateCopy {
    fn len(&self) -> usize {
        self.raw.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.raw.read(off, buf);
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.raw.write(off, data);
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.raw.read_u64(off)
    }
    fn write_u64(&self, off: usize, v: u64) {
        self.raw.write_u64(off, v);
    }
    fn write_nt(&self, off: usize, data: &[u8]) {
        self.raw.write_nt(off, data);
    }
    fn flush(&self, off: usize, len: usize) {
        self.raw.flush(off, len);
    }
    fn fence(&self) {
        self.raw.fence();
    }
    fn counters(&self) -> Counters {
        self.raw.counters()
    }
    fn info(&self) -> MediaInfo {
        self.raw.info()
    }
    fn base_ptr(&self) -> Option<NonNull<u8>> {
        self.raw.base_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_holds_the_file_and_writes_stay_in_memory() {
        let dir = std::env::temp_dir().join(format!("pmpool-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let bytes: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let copy = PrivateCopy::read(&path).unwrap();
        assert_eq!(copy.len(), 1001);
        let mut back = vec![0u8; 1001];
        copy.read(0, &mut back);
        assert_eq!(back, bytes);
        copy.write_u64(8, u64::MAX);
        copy.persist(8, 8);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            PrivateCopy::read(&path),
            Err(PmpoolError::Empty { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
