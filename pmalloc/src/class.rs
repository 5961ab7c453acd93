//! Size classes and run geometry.
//!
//! Small objects live in *runs*: one or more chunks holding an array of 16-byte object
//! headers followed by equal slots. Classes step by 16 B up to 128 B, then by a quarter
//! of each power of two (under 25 % internal waste). Classes from 256 B up are
//! multiples of 64, so those objects start on cache lines and their dirty maps cover
//! whole lines; smaller ones trade that for space.
//! Objects above [`MAX_RUN_CLASS`] are *extents*: whole chunks.

use crate::header::HEADER_BYTES;
use crate::layout::{CHUNK, PAGE};

/// Size classes in bytes.
pub const CLASSES: [usize; NCLASSES] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336,
    16384, 20480, 24576, 28672, 32768, 40960, 49152, 57344, 65536, 81920, 98304, 114_688, 131_072,
];
/// Number of classes.
pub const NCLASSES: usize = 48;
/// Largest object placed in a run.
pub const MAX_RUN_CLASS: usize = 131_072;
/// Largest alignment the heap honours.
pub const MAX_ALIGN: usize = PAGE;

const _: () = assert!(CLASSES[NCLASSES - 1] == MAX_RUN_CLASS);

/// How a run of one class is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunGeometry {
    /// Slot size.
    pub slot: usize,
    /// Chunks the run spans.
    pub chunks: usize,
    /// Number of slots.
    pub nslots: usize,
    /// Offset of slot 0 from the run start (the header array comes first).
    pub data_off: usize,
    /// `floor(2^40 / slot) + 1`, so that [`RunGeometry::slot_index`] divides by a
    /// multiply.
    pub recip: u64,
}

impl RunGeometry {
    /// `x / slot` for `x` below the slots' bytes (`nslots * slot`, at most 1 MiB; the
    /// product below needs `x < 2^27`), by a multiply and one correction: every
    /// pointer check divides on its way to the header load, and a 64-bit divide is
    /// tens of cycles on that path.
    #[inline]
    pub fn slot_index(&self, x: usize) -> usize {
        // x * recip / 2^40 lies in (x / slot, x / slot + x / 2^40): the quotient or
        // one above it.
        let q = ((x as u64 * self.recip) >> 40) as usize;
        if q * self.slot > x {
            q - 1
        } else {
            q
        }
    }
}

/// Geometry of class `class` (index into [`CLASSES`]).
pub const fn geometry(class: usize) -> RunGeometry {
    let slot = CLASSES[class];
    let chunks = if slot <= 32768 {
        1
    } else {
        (8 * slot).div_ceil(CHUNK)
    };
    let bytes = chunks * CHUNK;
    // Largest n with round_up(n * HEADER_BYTES, PAGE) + n * slot <= bytes.
    let mut n = bytes / (slot + HEADER_BYTES);
    while (n * HEADER_BYTES).div_ceil(PAGE) * PAGE + n * slot > bytes {
        n -= 1;
    }
    RunGeometry {
        slot,
        chunks,
        nslots: n,
        data_off: (n * HEADER_BYTES).div_ceil(PAGE) * PAGE,
        recip: (1u64 << 40) / slot as u64 + 1,
    }
}

/// Geometry of every class, computed at compile time.
pub static GEOMETRY: [RunGeometry; NCLASSES] = {
    let mut g = [RunGeometry {
        slot: 0,
        chunks: 0,
        nslots: 0,
        data_off: 0,
        recip: 0,
    }; NCLASSES];
    let mut i = 0;
    while i < NCLASSES {
        g[i] = geometry(i);
        i += 1;
    }
    g
};

/// Where an allocation of `size` bytes aligned to `align` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A slot of this class.
    Run(usize),
    /// An extent of this many chunks.
    Extent(usize),
}

/// The placement of `size` bytes at alignment `align` (a power of two up to
/// [`MAX_ALIGN`]); `None` when `size` is 0 or the alignment is unsupported.
#[inline]
pub fn placement(size: usize, align: usize) -> Option<Placement> {
    if size == 0 || !align.is_power_of_two() || align > MAX_ALIGN {
        return None;
    }
    if size <= MAX_RUN_CLASS {
        // Slots start at a page-aligned offset plus i * slot, so a slot size that is a
        // multiple of the alignment keeps every slot aligned.
        let start = class_index(size);
        if CLASSES[start].is_multiple_of(align) {
            return Some(Placement::Run(start));
        }
        if let Some(c) = (start..NCLASSES).find(|&c| CLASSES[c].is_multiple_of(align)) {
            return Some(Placement::Run(c));
        }
    }
    Some(Placement::Extent(size.div_ceil(CHUNK)))
}

/// Every class boundary up to 4096 is a multiple of 16, so the class of a size up to
/// 4096 is that of the size rounded up to 16: a table indexed by `(size - 1) / 16`.
static SMALL_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    let mut c = 0;
    while i < 256 {
        while CLASSES[c] < (i + 1) * 16 {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// The smallest class holding `size` (`size <= MAX_RUN_CLASS`).
#[inline]
pub fn class_index(size: usize) -> usize {
    if size <= 4096 {
        return SMALL_CLASS[(size.max(1) - 1) / 16] as usize;
    }
    // Binary search over the geometric part.
    match CLASSES.binary_search(&size) {
        Ok(i) | Err(i) => i,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_and_line_multiples_from_256() {
        for w in CLASSES.windows(2) {
            assert!(w[0] < w[1]);
        }
        for &c in CLASSES.iter().filter(|&&c| c >= 256) {
            assert_eq!(c % 64, 0, "{c}");
        }
    }

    #[test]
    fn waste_is_under_a_quarter_above_128() {
        for size in 1..=MAX_RUN_CLASS {
            let c = CLASSES[class_index(size)];
            assert!(c >= size, "size {size} class {c}");
            if size > 128 {
                assert!((c - size) * 4 < size, "size {size} class {c}");
            }
            if class_index(size) > 0 {
                assert!(
                    CLASSES[class_index(size) - 1] < size,
                    "not the smallest class for {size}"
                );
            }
        }
    }

    #[test]
    fn every_class_fits_at_least_seven_slots() {
        for (i, g) in GEOMETRY.iter().enumerate() {
            assert!(g.nslots >= 7, "class {i}: {g:?}");
            assert!(g.data_off + g.nslots * g.slot <= g.chunks * CHUNK);
            assert_eq!(g.data_off % PAGE, 0);
            assert!(g.data_off >= g.nslots * HEADER_BYTES);
        }
    }

    #[test]
    fn placement_honours_alignment() {
        for align in [1, 8, 16, 64, 256, 4096] {
            for size in [1, 15, 16, 17, 100, 1000, 5000, 100_000, 200_000] {
                match placement(size, align).unwrap() {
                    Placement::Run(c) => {
                        assert!(
                            CLASSES[c] >= size && CLASSES[c].is_multiple_of(align),
                            "{size}/{align}"
                        );
                    }
                    Placement::Extent(n) => assert!(n * CHUNK >= size),
                }
            }
        }
        assert_eq!(placement(0, 8), None);
        assert_eq!(placement(8, 3), None);
        assert_eq!(placement(8, 8192), None);
        assert_eq!(placement(MAX_RUN_CLASS + 1, 8), Some(Placement::Extent(1)));
    }

    #[test]
    fn slot_index_divides_exactly_across_every_run() {
        for (i, g) in GEOMETRY.iter().enumerate() {
            let bytes = g.chunks * CHUNK;
            // Every slot boundary and its neighbours, and a stride through the rest.
            let edges = (0..=g.nslots + 1).flat_map(|k| {
                let b = k * g.slot;
                [b.saturating_sub(1), b, b + 1]
            });
            for x in edges.chain((0..bytes).step_by(97)).filter(|&x| x < bytes) {
                assert_eq!(g.slot_index(x), x / g.slot, "class {i}, x {x}");
            }
        }
    }
}
