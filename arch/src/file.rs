//! `FileMedia`: a memory-mapped file as media (host only).
//!
//! The mapping is chosen in this order, and the choice is reported in
//! [`FileMedia::sync_mode`] and [`MediaInfo::kind`]:
//! 1. `MAP_SYNC` (a DAX filesystem): flush instructions reach persistence directly.
//! 2. tmpfs (`/dev/shm`): memory standing in for pmem; the real flush instructions run,
//!    there is no disk behind it to `msync` to.
//! 3. an ordinary file: stores reach the disk only through `msync`, so `fence` syncs the
//!    pages flushed since the previous fence.

use core::ptr::NonNull;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{Access, Counters, Media, MediaInfo, PersistMode, RawMedia};

/// How durability is reached on the mapped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// DAX with `MAP_SYNC`: flush + fence make stores durable.
    Dax,
    /// tmpfs or a caller forcing it: flush + fence, no syscalls (emulated pmem, like
    /// PMDK's `PMEM_IS_PMEM_FORCE=1`).
    Emulated,
    /// Page cache: `fence` calls `msync` on the pages flushed since the last fence.
    Msync,
}

/// How to open or create the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileOptions {
    /// Create the file with this length (truncating an existing file). `None`: open an
    /// existing file and map its whole length.
    pub create_len: Option<usize>,
    /// Treat any file as persistent memory (skip `msync`), as for benchmarks.
    pub force_pmem: bool,
    /// Skip flushes (eADR); fences stay.
    pub eadr: bool,
}

/// Why a file could not be mapped.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileMediaError {
    /// Opening, sizing or mapping the file failed.
    Io {
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is empty or too large to map.
    BadLength {
        /// Its length.
        len: u64,
    },
}

impl core::fmt::Display for FileMediaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FileMediaError::Io { what, source } => write!(f, "{what}: {source}"),
            FileMediaError::BadLength { len } => write!(f, "file length {len} cannot be mapped"),
        }
    }
}

impl std::error::Error for FileMediaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileMediaError::Io { source, .. } => Some(source),
            FileMediaError::BadLength { .. } => None,
        }
    }
}

const TMPFS_MAGIC: libc::__fsword_t = 0x0102_1994;
const PAGE: usize = 4096;

/// A memory-mapped file as media.
#[derive(Debug)]
pub struct FileMedia {
    raw: RawMedia,
    map_len: usize,
    mode: SyncMode,
    // On tmpfs a read populate maps the pages writable as well (shmem asks no write
    // notification), around 16 pages per fault instead of one: a third of the cost of
    // a write populate (16 MiB: 0.9 ms against 2.5 ms here).
    read_maps_writable: bool,
    // Page span flushed since the last fence, for the msync mode.
    dirty: spin::Mutex<Option<(usize, usize)>>,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> FileMediaError {
    move |source| FileMediaError::Io { what, source }
}

impl FileMedia {
    /// Opens (or creates) and maps `path`.
    pub fn open(path: &Path, opts: FileOptions) -> Result<Self, FileMediaError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(opts.create_len.is_some())
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        if let Some(len) = opts.create_len {
            file.set_len(0).map_err(io("truncate"))?;
            file.set_len(len as u64).map_err(io("set length"))?;
        }
        let len64 = file.metadata().map_err(io("stat"))?.len();
        let len = usize::try_from(len64).map_err(|_| FileMediaError::BadLength { len: len64 })?;
        if len == 0 {
            return Err(FileMediaError::BadLength { len: len64 });
        }
        let fd = file.as_raw_fd();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: mapping a file we own with a null hint; the kernel validates the rest.
        let mut addr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
                fd,
                0,
            )
        };
        let mut mode = SyncMode::Dax;
        let tmpfs = is_tmpfs(&file);
        if addr == libc::MAP_FAILED {
            // SAFETY: as above, without MAP_SYNC.
            addr = unsafe { libc::mmap(core::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
            if addr == libc::MAP_FAILED {
                return Err(io("mmap")(std::io::Error::last_os_error()));
            }
            mode = if opts.force_pmem || tmpfs {
                SyncMode::Emulated
            } else {
                SyncMode::Msync
            };
        }
        let base =
            NonNull::new(addr.cast::<u8>()).ok_or(FileMediaError::BadLength { len: len64 })?;
        let pmode = if opts.eadr {
            PersistMode::Eadr
        } else {
            PersistMode::Adr
        };
        let kind = match mode {
            SyncMode::Dax => "file-dax",
            SyncMode::Emulated => "file-emulated",
            SyncMode::Msync => "file-msync",
        };
        // SAFETY: the mapping is page aligned, `len` bytes long, lives until `drop`, and
        // nothing else in this process holds references into it.
        let raw = unsafe { RawMedia::new(base, len, pmode) }.with_kind(kind);
        Ok(FileMedia {
            raw,
            map_len: len,
            mode,
            // (tmpfs never maps with MAP_SYNC, so this is never a DAX mapping.)
            read_maps_writable: tmpfs,
            dirty: spin::Mutex::new(None),
        })
    }

    /// How durability is reached on this file.
    pub fn sync_mode(&self) -> SyncMode {
        self.mode
    }

    /// Stops or resumes counting flushes, fences and bytes
    /// ([`crate::CounterCell::set_enabled`]); a benchmark stops it while it times.
    pub fn set_counting(&self, on: bool) {
        self.raw.set_counting(on);
    }

    /// Whether flushes, fences and bytes are being counted ([`RawMedia::counting`]).
    pub fn counting(&self) -> bool {
        self.raw.counting()
    }
}

fn is_tmpfs(file: &File) -> bool {
    // SAFETY: statfs is plain data, so all-zero is a valid value to overwrite.
    let mut st: libc::statfs = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer and the fd is open.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &raw mut st) };
    rc == 0 && st.f_type == TMPFS_MAGIC
}

impl Drop for FileMedia {
    fn drop(&mut self) {
        if self.mode == SyncMode::Msync {
            let base = self
                .raw
                .base_ptr()
                .map_or(core::ptr::null_mut(), NonNull::as_ptr);
            // SAFETY: syncing our own live mapping.
            unsafe { libc::msync(base.cast(), self.map_len, libc::MS_SYNC) };
        }
        if let Some(base) = self.raw.base_ptr() {
            // SAFETY: unmapping the mapping created in `open`; `raw` is never used again.
            unsafe { libc::munmap(base.as_ptr().cast(), self.map_len) };
        }
    }
}

impl Media for FileMedia {
    #[inline(always)]
    fn len(&self) -> usize {
        self.raw.len()
    }
    #[inline(always)]
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.raw.read(off, buf);
    }
    #[inline(always)]
    fn write(&self, off: usize, data: &[u8]) {
        self.raw.write(off, data);
    }
    #[inline(always)]
    fn read_u64(&self, off: usize) -> u64 {
        self.raw.read_u64(off)
    }
    #[inline(always)]
    fn write_u64(&self, off: usize, v: u64) {
        self.raw.write_u64(off, v);
    }
    #[inline(always)]
    fn write_nt(&self, off: usize, data: &[u8]) {
        self.raw.write_nt(off, data);
        if self.mode == SyncMode::Msync {
            self.note_dirty(off, data.len());
        }
    }
    fn copy_nt(&self, dst: usize, src: usize, len: usize) {
        self.raw.copy_nt(dst, src, len);
        if self.mode == SyncMode::Msync {
            self.note_dirty(dst, len);
        }
    }
    unsafe fn read_in_place(&self, off: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.raw.read_in_place(off, len, f) }
    }
    #[inline(always)]
    fn flush(&self, off: usize, len: usize) {
        self.raw.flush(off, len);
        if self.mode == SyncMode::Msync {
            self.note_dirty(off, len);
        }
    }
    #[inline(always)]
    fn prefetch_write(&self, off: usize) {
        self.raw.prefetch_write(off);
    }

    fn populate(&self, off: usize, len: usize, access: Access) {
        let end = off.saturating_add(len).min(self.map_len);
        let start = off / PAGE * PAGE;
        if start >= end {
            return;
        }
        let Some(base) = self.raw.base_ptr() else {
            return;
        };
        let advice = match access {
            Access::Write if !self.read_maps_writable => libc::MADV_POPULATE_WRITE,
            Access::Read | Access::Write => libc::MADV_POPULATE_READ,
        };
        // SAFETY: a page-aligned sub-range of our own live mapping; populating changes no
        // contents. A kernel without the advice (before 5.14) says EINVAL, and the pages
        // then fault one by one as before, so the result is ignored.
        unsafe { libc::madvise(base.as_ptr().add(start).cast(), end - start, advice) };
    }

    fn fence(&self) {
        self.raw.fence();
        if self.mode == SyncMode::Msync {
            if let Some((lo, hi)) = self.dirty.lock().take() {
                let base = self
                    .raw
                    .base_ptr()
                    .map_or(core::ptr::null_mut(), NonNull::as_ptr);
                // SAFETY: [lo, hi) is page aligned and inside our live mapping.
                unsafe { libc::msync(base.add(lo).cast(), hi - lo, libc::MS_SYNC) };
            }
        }
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

impl FileMedia {
    fn note_dirty(&self, off: usize, len: usize) {
        if len == 0 {
            return;
        }
        let lo = off / PAGE * PAGE;
        let hi = ((off + len).div_ceil(PAGE) * PAGE).min(self.map_len);
        let mut d = self.dirty.lock();
        *d = Some(match *d {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_file_is_emulated_pmem_and_round_trips() {
        let path = std::env::temp_dir().join(format!("arch-file-{}.pool", std::process::id()));
        let shm = Path::new("/dev/shm").join(path.file_name().unwrap());
        let target = if Path::new("/dev/shm").is_dir() {
            shm
        } else {
            path
        };
        {
            let m = FileMedia::open(
                &target,
                FileOptions {
                    create_len: Some(1 << 16),
                    ..Default::default()
                },
            )
            .unwrap();
            if target.starts_with("/dev/shm") {
                assert_eq!(m.sync_mode(), SyncMode::Emulated);
            }
            m.write(100, b"hello");
            m.persist(100, 5);
        }
        let m = FileMedia::open(&target, FileOptions::default()).unwrap();
        let mut b = [0u8; 5];
        m.read(100, &mut b);
        assert_eq!(&b, b"hello");
        assert_eq!(m.len(), 1 << 16);
        drop(m);
        std::fs::remove_file(&target).unwrap();
    }

    #[test]
    fn ordinary_file_falls_back_to_msync() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("arch-msync-{}.pool", std::process::id()));
        let m = FileMedia::open(
            &path,
            FileOptions {
                create_len: Some(8192),
                ..Default::default()
            },
        )
        .unwrap();
        if !is_tmpfs(&File::open(&path).unwrap()) {
            assert_eq!(m.sync_mode(), SyncMode::Msync);
            assert_eq!(m.info().kind, "file-msync");
        }
        m.write(5000, &[7; 10]);
        m.persist(5000, 10);
        drop(m);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[5000..5010], &[7; 10]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn missing_file_is_a_typed_error() {
        let e = FileMedia::open(Path::new("/nonexistent/dir/x.pool"), FileOptions::default())
            .unwrap_err();
        assert!(matches!(e, FileMediaError::Io { what: "open", .. }), "{e}");
    }
}
