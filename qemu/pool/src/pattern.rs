//! A seeded pool pattern: what one side writes and the other verifies.
//!
//! The pool's root object holds [`FIELDS`] pointer fields. Field `i` receives an object
//! of shape [`SHAPES`]`[i]` (sizes from 1 byte to a five-chunk extent, alignments from 1
//! to 4096), type number [`TYPE_BASE`]` + i`, filled with bytes that are a function of
//! `(seed, i, offset)`. Then the fields for which [`freed`] says so are freed again, so
//! the pool also holds free slots and free chunks between live objects.
//!
//! [`PoolPattern::verify`] demands exactly that: `check()` passes, the root has its type
//! and size, every field is null or names an object of the right size, type, extent
//! flag, alignment and contents, and the object set is the root plus the live fields
//! (nothing leaked, nothing missing).

use alloc::vec::Vec;
use core::fmt;

use arch::Media;

use crate::Damaged;
use pm_qemu_proto::mix64;
use pmalloc::{
    AllocError, CheckError, CreateError, CreateOptions, FreeError, Heap, Init, OpenError,
    OpenOptions, OpenReport, PPtr, PtrError,
};

/// The pool's layout name.
pub const LAYOUT: &str = "pm-qemu-pattern";
/// Fields in the root object.
pub const FIELDS: usize = 20;
/// Type number of the root object.
pub const ROOT_TYPE: u32 = 2;
/// Field `i`'s object has type `TYPE_BASE + i`.
pub const TYPE_BASE: u32 = 100;
/// Largest object a run slot holds (pmalloc's largest size class); above it, extents.
pub const MAX_RUN_OBJECT: u64 = 128 << 10;

/// `(size, align)` of each field's object: the smallest object, each side of the 16 B
/// class step, a line, odd sizes, page-aligned objects, the largest run class and one
/// byte more (the first extent), one chunk and one byte more, and multi-chunk extents.
pub const SHAPES: [(usize, usize); FIELDS] = [
    (1, 1),
    (8, 8),
    (16, 16),
    (17, 8),
    (48, 16),
    (64, 64),
    (100, 4),
    (256, 256),
    (1000, 8),
    (3000, 1024),
    (4096, 4096),
    (5000, 8),
    (32_768, 64),
    (65_536, 4096),
    (131_072, 8),
    (131_073, 8),
    (262_144, 4096),
    (262_145, 8),
    (600_000, 64),
    (1_100_000, 4096),
];

/// Whether the pattern frees field `i` again after allocating it.
pub fn freed(seed: u64, i: usize) -> bool {
    mix64(seed ^ 0x6672_6565 ^ i as u64).is_multiple_of(4)
}

/// Byte `off` of field `i`'s object.
pub fn byte(seed: u64, i: usize, off: usize) -> u8 {
    let word = mix64(seed ^ (i as u64) << 48 ^ (off / 8) as u64);
    word.to_le_bytes()[off % 8]
}

/// Why a pattern could not be written or did not verify. Field numbers are root-field
/// indices; offsets are pool offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// The pool could not be created.
    Create(CreateError),
    /// The pool could not be opened.
    Open(OpenError),
    /// Open found damage (chunks or headers set aside).
    Damage(Damaged),
    /// Allocating into a field failed (or the root, as field `usize::MAX`).
    Alloc {
        /// The field.
        field: usize,
        /// Why.
        error: AllocError,
    },
    /// Freeing a field failed.
    Free {
        /// The field.
        field: usize,
        /// Why.
        error: FreeError,
    },
    /// The heap's invariant check failed.
    Check(CheckError),
    /// No root object.
    NoRoot,
    /// The root is not what the pattern made.
    Root {
        /// What differs.
        what: &'static str,
        /// Expected value.
        expected: u64,
        /// Value found.
        found: u64,
    },
    /// A field's value does not name an allocated object.
    Field {
        /// The field.
        field: usize,
        /// Its value.
        value: u64,
        /// Why it is not an object.
        error: PtrError,
    },
    /// A field that should be null is not, or the reverse.
    Liveness {
        /// The field.
        field: usize,
        /// Whether the pattern expects an object there.
        expected_live: bool,
        /// The field's value.
        value: u64,
    },
    /// A field's object has the wrong size, type, extent flag or alignment.
    Shape {
        /// The field.
        field: usize,
        /// Which property.
        what: &'static str,
        /// Expected value.
        expected: u64,
        /// Value found.
        found: u64,
    },
    /// A field's object holds other bytes than the pattern's.
    Content {
        /// The field.
        field: usize,
        /// Offset of the first wrong byte inside the object.
        offset: usize,
    },
    /// An allocated object that neither the root nor a field names (a leak).
    Leaked {
        /// Its offset.
        ptr: u64,
    },
    /// A different number of allocated objects than the root plus the live fields.
    ObjectCount {
        /// Expected.
        expected: usize,
        /// Found.
        found: usize,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Create(e) => write!(f, "create: {e}"),
            PatternError::Open(e) => write!(f, "open: {e}"),
            PatternError::Damage(e) => write!(f, "{e}"),
            PatternError::Alloc { field, error } => write!(f, "alloc into field {field}: {error}"),
            PatternError::Free { field, error } => write!(f, "free from field {field}: {error}"),
            PatternError::Check(e) => write!(f, "{e}"),
            PatternError::NoRoot => write!(f, "no root object"),
            PatternError::Root {
                what,
                expected,
                found,
            } => write!(f, "root {what}: expected {expected:#x}, found {found:#x}"),
            PatternError::Field {
                field,
                value,
                error,
            } => write!(f, "field {field} = {value:#x}: {error}"),
            PatternError::Liveness {
                field,
                expected_live,
                value,
            } => write!(
                f,
                "field {field} = {value:#x}, expected {}",
                if *expected_live { "an object" } else { "null" }
            ),
            PatternError::Shape {
                field,
                what,
                expected,
                found,
            } => write!(
                f,
                "field {field}'s object {what}: expected {expected:#x}, found {found:#x}"
            ),
            PatternError::Content { field, offset } => {
                write!(f, "field {field}'s object differs at byte {offset:#x}")
            }
            PatternError::Leaked { ptr } => write!(f, "object {ptr:#x} is allocated but unnamed"),
            PatternError::ObjectCount { expected, found } => {
                write!(f, "{found} objects allocated, expected {expected}")
            }
        }
    }
}

impl core::error::Error for PatternError {}

/// What a verified pattern holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternSummary {
    /// The root object's offset.
    pub root: u64,
    /// Fields holding an object.
    pub live: usize,
    /// Bytes in those objects (as asked for).
    pub bytes: u64,
    /// Free chunks left in the heap.
    pub free_chunks: u64,
}

impl fmt::Display for PatternSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "root {:#x}, {} live objects, {} bytes, {} free chunks",
            self.root, self.live, self.bytes, self.free_chunks
        )
    }
}

/// The pattern of one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPattern {
    /// Seeds the contents, the freed fields and the pool's UUID.
    pub seed: u64,
}

impl PoolPattern {
    /// The pattern of `seed`.
    pub fn new(seed: u64) -> Self {
        PoolPattern { seed }
    }

    /// The pool's UUID.
    pub fn uuid(self) -> [u8; 16] {
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&mix64(self.seed ^ 0x7575_6964).to_le_bytes());
        u[8..].copy_from_slice(&mix64(!self.seed).to_le_bytes());
        u
    }

    /// The contents of field `i`'s object.
    pub fn contents(self, i: usize) -> Vec<u8> {
        (0..SHAPES[i].0)
            .map(|off| byte(self.seed, i, off))
            .collect()
    }

    /// Formats `media` as a pool (layout [`LAYOUT`], this pattern's UUID) and writes
    /// the pattern into it.
    pub fn create<M: Media>(self, media: M) -> Result<Heap<M>, PatternError> {
        let heap = Heap::create(media, &CreateOptions::new(LAYOUT, self.uuid()))
            .map_err(PatternError::Create)?;
        self.write(&heap)?;
        Ok(heap)
    }

    /// Writes the pattern into an empty pool: the root, every field's object, then the
    /// frees.
    pub fn write<M: Media>(self, heap: &Heap<M>) -> Result<PPtr<()>, PatternError> {
        let root = heap
            .alloc_into(Heap::<M>::ROOT, FIELDS * 8, 8, ROOT_TYPE, Init::Zeroed)
            .map_err(|error| PatternError::Alloc {
                field: usize::MAX,
                error,
            })?;
        for (i, &(size, align)) in SHAPES.iter().enumerate() {
            let bytes = self.contents(i);
            heap.alloc_into(
                root.field(i * 8),
                size,
                align,
                TYPE_BASE + i as u32,
                Init::Bytes(&bytes),
            )
            .map_err(|error| PatternError::Alloc { field: i, error })?;
        }
        for i in (0..FIELDS).filter(|&i| freed(self.seed, i)) {
            heap.free_from(root.field(i * 8))
                .map_err(|error| PatternError::Free { field: i, error })?;
        }
        Ok(root)
    }

    /// Opens the pool on `media` (layout [`LAYOUT`] required) and verifies the
    /// pattern; damage reported by open is an error.
    pub fn open_and_verify<M: Media>(
        self,
        media: M,
    ) -> Result<(Heap<M>, OpenReport, PatternSummary), PatternError> {
        let opts = OpenOptions {
            layout: Some(LAYOUT),
        };
        let (heap, report) = Heap::open(media, &opts).map_err(PatternError::Open)?;
        Damaged::check(&report).map_err(PatternError::Damage)?;
        let summary = self.verify(&heap)?;
        Ok((heap, report, summary))
    }

    /// Verifies the pattern in an open pool (see the module docs).
    pub fn verify<M: Media>(self, heap: &Heap<M>) -> Result<PatternSummary, PatternError> {
        let free_chunks = heap.check().map_err(PatternError::Check)?;
        let root = heap.root().ok_or(PatternError::NoRoot)?;
        let info = heap.info(root.raw()).map_err(|_| PatternError::NoRoot)?;
        let root_err = |what, expected: u64, found: u64| PatternError::Root {
            what,
            expected,
            found,
        };
        if info.type_num != ROOT_TYPE {
            return Err(root_err("type", ROOT_TYPE.into(), info.type_num.into()));
        }
        if info.size != (FIELDS * 8) as u64 {
            return Err(root_err("size", (FIELDS * 8) as u64, info.size));
        }
        let mut named = Vec::with_capacity(FIELDS + 1);
        named.push(root.raw());
        let mut bytes = 0;
        for (i, &(size, align)) in SHAPES.iter().enumerate() {
            let value = heap.media().read_u64(root.field(i * 8) as usize);
            let live = !freed(self.seed, i);
            if live != (value != 0) {
                return Err(PatternError::Liveness {
                    field: i,
                    expected_live: live,
                    value,
                });
            }
            if !live {
                continue;
            }
            self.verify_object(heap, i, value, size, align)?;
            named.push(value);
            bytes += size as u64;
        }
        let mut found = 0;
        for o in heap.objects() {
            found += 1;
            if !named.contains(&o.ptr) {
                return Err(PatternError::Leaked { ptr: o.ptr });
            }
        }
        if found != named.len() {
            return Err(PatternError::ObjectCount {
                expected: named.len(),
                found,
            });
        }
        Ok(PatternSummary {
            root: root.raw(),
            live: named.len() - 1,
            bytes,
            free_chunks,
        })
    }

    fn verify_object<M: Media>(
        self,
        heap: &Heap<M>,
        field: usize,
        ptr: u64,
        size: usize,
        align: usize,
    ) -> Result<(), PatternError> {
        let info = heap.info(ptr).map_err(|error| PatternError::Field {
            field,
            value: ptr,
            error,
        })?;
        let shape = |what, expected: u64, found: u64| {
            if expected == found {
                Ok(())
            } else {
                Err(PatternError::Shape {
                    field,
                    what,
                    expected,
                    found,
                })
            }
        };
        shape("size", size as u64, info.size)?;
        shape(
            "type",
            (TYPE_BASE + field as u32).into(),
            info.type_num.into(),
        )?;
        shape(
            "extent flag",
            u64::from(size as u64 > MAX_RUN_OBJECT),
            u64::from(info.extent),
        )?;
        shape("misalignment", 0, ptr % align as u64)?;
        let mut found = alloc::vec![0u8; size];
        heap.read_bytes(PPtr::<()>::from_raw(ptr), 0, &mut found)
            .map_err(|error| PatternError::Field {
                field,
                value: ptr,
                error,
            })?;
        match (0..size).find(|&off| found[off] != byte(self.seed, field, off)) {
            Some(offset) => Err(PatternError::Content { field, offset }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pattern on simulated media: it verifies after a close and reopen, and each
    //! kind of damage a pool could suffer is reported as its own error.

    use arch::sim::SimMedia;

    use super::*;

    const POOL: usize = 16 << 20;

    fn written(seed: u64) -> SimMedia {
        let media = SimMedia::new(POOL);
        PoolPattern::new(seed).create(&media).unwrap().close();
        media
    }

    #[test]
    fn pattern_survives_close_and_reopen_and_frees_some_fields() {
        let media = written(7);
        let (_, report, s) = PoolPattern::new(7).open_and_verify(&media).unwrap();
        assert_eq!((report.replayed, report.torn), (0, 0));
        let freed_count = (0..FIELDS).filter(|&i| freed(7, i)).count();
        assert!(freed_count > 0 && freed_count < FIELDS, "{freed_count}");
        assert_eq!(s.live, FIELDS - freed_count);
    }

    #[test]
    fn a_pool_left_unclosed_verifies_after_recovery() {
        let media = SimMedia::new(POOL);
        drop(PoolPattern::new(8).create(&media).unwrap());
        let (_, report, _) = PoolPattern::new(8).open_and_verify(&media).unwrap();
        assert!(report.replayed > 0, "{report:?}");
    }

    #[test]
    fn wrong_seed_changed_byte_leak_and_wrong_liveness_are_reported() {
        let media = written(9);
        // Another seed: other freed fields or other contents.
        let e = PoolPattern::new(10).open_and_verify(&media).unwrap_err();
        assert!(
            matches!(
                e,
                PatternError::Liveness { .. } | PatternError::Content { .. }
            ),
            "{e}"
        );
        let p = PoolPattern::new(9);
        let (heap, _) = Heap::open(&media, &OpenOptions::default()).unwrap();
        let root = heap.root().unwrap();
        let live = (0..FIELDS)
            .find(|&i| !freed(9, i) && SHAPES[i].0 >= 64)
            .unwrap();
        let obj = heap.media().read_u64(root.field(live * 8) as usize);
        // One changed byte in the middle of an object.
        let at = obj as usize + SHAPES[live].0 / 2;
        let old = heap.media().read_u64(at / 8 * 8);
        heap.media()
            .write_u64(at / 8 * 8, old ^ 0xff << (at % 8 * 8));
        assert_eq!(
            p.verify(&heap),
            Err(PatternError::Content {
                field: live,
                offset: SHAPES[live].0 / 2
            })
        );
        heap.media().write_u64(at / 8 * 8, old);
        p.verify(&heap).unwrap();
        // A leak: an object allocated into a word of a live object whose old bytes
        // are then put back behind the heap's back, so nothing names it.
        let word = obj + 8;
        let saved = heap.media().read_u64(word as usize);
        heap.media().write_u64(word as usize, 0);
        let leaked = heap.alloc_into(word, 32, 8, 5, Init::Zeroed).unwrap();
        heap.media().write_u64(word as usize, saved);
        assert_eq!(
            p.verify(&heap),
            Err(PatternError::Leaked { ptr: leaked.raw() })
        );
        // A live field cleared, and a freed field pointing at an object.
        heap.media().write_u64(root.field(live * 8) as usize, 0);
        assert!(matches!(
            p.verify(&heap),
            Err(PatternError::Liveness { field, .. }) if field == live
        ));
        heap.media().write_u64(root.field(live * 8) as usize, obj);
        let dead = (0..FIELDS).find(|&i| freed(9, i)).unwrap();
        heap.media().write_u64(root.field(dead * 8) as usize, obj);
        assert!(matches!(
            p.verify(&heap),
            Err(PatternError::Liveness { field, .. }) if field == dead
        ));
    }

    #[test]
    fn a_pool_of_another_layout_is_refused() {
        let media = SimMedia::new(POOL);
        Heap::create(&media, &CreateOptions::new("other", [1; 16]))
            .unwrap()
            .close();
        assert!(matches!(
            PoolPattern::new(1).open_and_verify(&media),
            Err(PatternError::Open(OpenError::WrongLayout { .. }))
        ));
    }
}
