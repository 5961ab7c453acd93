//! Where everything is in a pool. All of it follows from four numbers in the header
//! (pool size, lane count, runtime-area length, chunk size), and open recomputes it and
//! compares, so a header whose offsets disagree with its sizes is rejected.
//!
//! ```text
//! 0            header page: static header (256 B) | pool state line (root, ...) |
//!              chunk-free intent line
//! PAGE         lanes: nlanes x 128 B (two 64 B op records each)
//! runtime_off  runtime area (owned by pmrt: logs), runtime_len bytes
//! chunks_off   chunk descriptors: nchunks x 32 B
//! heap_off     heap: nchunks x CHUNK (runs and extents)
//! backup_off   backup copy of the static header (last page)
//! ```

/// Chunk size: the unit of the heap (runs and extents are made of chunks).
pub const CHUNK: usize = 256 * 1024;
/// Page size used for alignment of regions.
pub const PAGE: usize = 4096;
/// Bytes of one lane (two op records).
pub const LANE_BYTES: usize = 128;
/// Bytes of one chunk descriptor.
pub const DESC_BYTES: usize = 32;
/// Lanes in a pool created with default options.
pub const DEFAULT_LANES: u32 = 64;
/// Most lanes a pool may have.
pub const MAX_LANES: u32 = 1024;
/// Smallest pool.
pub const MIN_POOL: usize = 8 << 20;
/// Largest number of chunks (23-bit chunk indices in descriptors): 2 TiB of heap.
pub const MAX_CHUNKS: usize = 1 << 23;
/// Offset of the pool state line (mutable words: the root pointer).
pub const STATE_OFF: usize = 256;
/// Offset of the root pointer (an 8-byte `PPtr`, a valid destination for `alloc_into`).
pub const ROOT_SLOT: usize = STATE_OFF;
/// Offset of the chunk-free intent line (see the `intent` module), the line after the
/// pool state line.
pub const INTENT_OFF: usize = STATE_OFF + 64;
const _: () = assert!(INTENT_OFF + 64 <= PAGE);

/// The computed layout of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Pool size in bytes (a multiple of `PAGE`).
    pub pool_size: usize,
    /// Number of lanes.
    pub nlanes: u32,
    /// Offset of lane 0.
    pub lanes_off: usize,
    /// Offset of the runtime area.
    pub runtime_off: usize,
    /// Length of the runtime area.
    pub runtime_len: usize,
    /// Offset of the chunk descriptor table.
    pub chunks_off: usize,
    /// Number of chunks.
    pub nchunks: usize,
    /// Offset of chunk 0.
    pub heap_off: usize,
    /// Offset of the backup header.
    pub backup_off: usize,
}

/// Why a layout cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// Pool smaller than [`MIN_POOL`] or too small for its regions.
    TooSmall {
        /// The size asked for.
        size: usize,
    },
    /// More chunks than descriptors can name.
    TooLarge {
        /// The size asked for.
        size: usize,
    },
    /// Lane count 0 or above [`MAX_LANES`].
    BadLanes {
        /// The count asked for.
        nlanes: u32,
    },
}

const fn round_up(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

impl Layout {
    /// The layout of a pool of `size` bytes (rounded down to whole pages).
    pub fn compute(size: usize, nlanes: u32, runtime_len: usize) -> Result<Layout, LayoutError> {
        let pool_size = size / PAGE * PAGE;
        if pool_size < MIN_POOL {
            return Err(LayoutError::TooSmall { size });
        }
        if nlanes == 0 || nlanes > MAX_LANES {
            return Err(LayoutError::BadLanes { nlanes });
        }
        let lanes_off = PAGE;
        let runtime_off = round_up(lanes_off + nlanes as usize * LANE_BYTES, PAGE);
        let runtime_len = round_up(runtime_len, PAGE);
        let chunks_off = runtime_off
            .checked_add(runtime_len)
            .ok_or(LayoutError::TooLarge { size })?;
        let backup_off = pool_size - PAGE;
        if chunks_off + PAGE >= backup_off {
            return Err(LayoutError::TooSmall { size });
        }
        let avail = backup_off - chunks_off;
        let mut nchunks = avail / (CHUNK + DESC_BYTES);
        while nchunks > 0
            && round_up(chunks_off + nchunks * DESC_BYTES, PAGE) + nchunks * CHUNK > backup_off
        {
            nchunks -= 1;
        }
        if nchunks < 4 {
            return Err(LayoutError::TooSmall { size });
        }
        if nchunks > MAX_CHUNKS {
            return Err(LayoutError::TooLarge { size });
        }
        let heap_off = round_up(chunks_off + nchunks * DESC_BYTES, PAGE);
        Ok(Layout {
            pool_size,
            nlanes,
            lanes_off,
            runtime_off,
            runtime_len,
            chunks_off,
            nchunks,
            heap_off,
            backup_off,
        })
    }

    /// Offset of lane `i`'s record slot `s` (0 or 1).
    pub fn record_off(&self, lane: u32, slot: usize) -> usize {
        self.lanes_off + lane as usize * LANE_BYTES + slot * 64
    }

    /// Offset of chunk `c`'s descriptor.
    pub fn desc_off(&self, c: usize) -> usize {
        self.chunks_off + c * DESC_BYTES
    }

    /// Offset of chunk `c`'s first byte.
    pub fn chunk_off(&self, c: usize) -> usize {
        self.heap_off + c * CHUNK
    }

    /// End of the heap.
    pub fn heap_end(&self) -> usize {
        self.heap_off + self.nchunks * CHUNK
    }

    /// The chunk holding heap offset `off`, if it is in the heap.
    pub fn chunk_of(&self, off: usize) -> Option<usize> {
        (off >= self.heap_off && off < self.heap_end()).then(|| (off - self.heap_off) / CHUNK)
    }

    /// The default runtime-area length for a pool of `size` bytes: 1/16 of the pool,
    /// between 256 KiB and 64 MiB.
    pub fn default_runtime_len(size: usize) -> usize {
        (size / 16).clamp(256 << 10, 64 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_ordered_aligned_and_disjoint() {
        for size in [MIN_POOL, 9 << 20, 64 << 20, 1 << 30, 1 << 40] {
            let l =
                Layout::compute(size, DEFAULT_LANES, Layout::default_runtime_len(size)).unwrap();
            assert!(l.lanes_off >= STATE_OFF + 64);
            assert!(l.runtime_off >= l.lanes_off + l.nlanes as usize * LANE_BYTES);
            assert_eq!(l.chunks_off, l.runtime_off + l.runtime_len);
            assert!(l.heap_off >= l.chunks_off + l.nchunks * DESC_BYTES);
            assert!(l.heap_end() <= l.backup_off);
            assert_eq!(l.backup_off + PAGE, l.pool_size);
            assert_eq!(l.heap_off % PAGE, 0);
            // Wasted tail under one chunk plus its descriptor page.
            assert!(
                l.backup_off - l.heap_end() < CHUNK + PAGE + DESC_BYTES,
                "{size}"
            );
        }
    }

    #[test]
    fn sizes_outside_the_range_are_typed_errors() {
        assert_eq!(
            Layout::compute(MIN_POOL - 1, 64, 0),
            Err(LayoutError::TooSmall { size: MIN_POOL - 1 })
        );
        assert!(matches!(
            Layout::compute(4 << 40, 64, 0),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            Layout::compute(1 << 30, 0, 0),
            Err(LayoutError::BadLanes { .. })
        ));
        assert!(matches!(
            Layout::compute(MIN_POOL, 64, MIN_POOL),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn chunk_of_maps_heap_offsets_only() {
        let l = Layout::compute(64 << 20, 8, 1 << 20).unwrap();
        assert_eq!(l.chunk_of(l.heap_off), Some(0));
        assert_eq!(l.chunk_of(l.heap_off + CHUNK + 5), Some(1));
        assert_eq!(l.chunk_of(l.heap_off - 1), None);
        assert_eq!(l.chunk_of(l.heap_end()), None);
    }
}
