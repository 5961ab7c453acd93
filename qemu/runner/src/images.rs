//! NVDIMM image files: one fresh set per boot sequence, in its own temporary directory.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::RunnerError;

/// A temporary directory holding `count` zero-filled (sparse) image files of `size`
/// bytes each, removed on drop unless `PM_QEMU_KEEP` is set (then its path is printed).
#[derive(Debug)]
pub struct Images {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    size: u64,
}

impl Images {
    /// Makes the directory and the files (`File::set_len`: sparse, instant).
    pub fn create(count: usize, size: u64) -> Result<Self, RunnerError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "pm-qemu-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RunnerError::Image { path, source }
        };
        fs::create_dir(&dir).map_err(io(&dir))?;
        let images = Images {
            paths: (0..count)
                .map(|i| dir.join(format!("nvdimm{i}.img")))
                .collect(),
            dir,
            size,
        };
        for p in &images.paths {
            File::create_new(p)
                .and_then(|f| f.set_len(size))
                .map_err(io(p))?;
        }
        Ok(images)
    }

    /// The image files, in device order (image 0 is NVDIMM 0, the lowest address).
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Bytes per image.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads `len` bytes at `off` of image `index`.
    pub fn read(&self, index: usize, off: u64, len: usize) -> Result<Vec<u8>, RunnerError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = &self.paths[index];
        let mut buf = vec![0u8; len];
        File::open(path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(off))?;
                f.read_exact(&mut buf)
            })
            .map_err(|source| RunnerError::Image {
                path: path.clone(),
                source,
            })?;
        Ok(buf)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        if std::env::var_os("PM_QEMU_KEEP").is_some() {
            eprintln!("keeping NVDIMM images in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
