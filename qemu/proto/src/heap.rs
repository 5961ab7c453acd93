//! The heap crash-cycle workload (`suite=heap`, then `suite=heap-verify`): what the
//! kernel's writer does, op by op, as a pure function of the seed, and the serial lines
//! both boots print.
//!
//! The writer creates a pool over the first [`POOL_LEN`] bytes of NVDIMM 0, publishes a
//! root object of [`FIELDS`] pointer fields into the root slot, and prints
//! `heap ready`. Then for op `n = 0, 1, ...`: [`plan`]`(seed, n)` names a field; if the
//! field is null the writer allocates into it (size, alignment, type and a first word,
//! the *tag*, from the plan), else it frees from it. Only after the call returned does
//! it print `heap op n field=f value=v fences=k`, with the field's new value (0 after a
//! free, or after an allocation that found no space) and the fences issued so far.
//!
//! The verifier opens the pool (which recovers it) and prints what it found: `heap
//! no-pool` if there is no valid pool, else `heap opened ...`, `heap root`, one
//! `heap field` per field and one `heap object` per allocated object.
//!
//! ```text
//! heap ready root=0x103000 fences=6
//! heap op 0 field=3 value=0x143040 fences=7
//! heap op 1 field=9 value=0x0 fences=7
//! heap no-pool
//! heap opened replayed=1 stale=0 torn=1 damage=0
//! heap root 0x103000
//! heap field 3 0x143040
//! heap object 0x143040 size=240 type=19 tag=0x5e1d2c3b4a596877
//! ```

use core::fmt;

use crate::words::{keyed, small, Keyed};
use crate::{mix64, SplitMix64};

/// Pointer fields in the root object.
pub const FIELDS: usize = 16;
/// Type number of the root object.
pub const ROOT_TYPE: u32 = 1;
/// Objects allocated into field `i` have type number `FIELD_TYPE_BASE + i`.
pub const FIELD_TYPE_BASE: u32 = 16;
/// Bytes of NVDIMM 0 (from offset 0) the pool occupies.
pub const POOL_LEN: u64 = 16 << 20;
/// The pool's layout name.
pub const LAYOUT: &str = "pm-qemu-heap";

/// What op `n` does to its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The root field it works on.
    pub field: usize,
    /// Size of the object, if the field is null and the op allocates.
    pub size: u64,
    /// Alignment of that object (a power of two, at most 4096).
    pub align: u64,
    /// Its type number.
    pub type_num: u32,
    /// Its first 8 bytes (never 0), so an object names the op that made it.
    pub tag: u64,
}

/// The plan of op `op` of the workload seeded `seed`. Sizes: seven in ten from 1 to
/// 512 bytes, two in ten up to 40 000 (run slots of the larger classes), one in ten
/// from 140 000 to 600 000 (extents of one to three 256 KiB chunks).
pub fn plan(seed: u64, op: u64) -> Plan {
    let mut r = SplitMix64::new(seed ^ mix64(op.wrapping_add(0x6865_6170)));
    let field = (r.next_u64() % FIELDS as u64) as usize;
    let size = match r.next_u64() % 10 {
        0..=6 => r.in_range(1, 512),
        7 | 8 => r.in_range(513, 40_000),
        _ => r.in_range(140_000, 600_000),
    };
    let align = match r.next_u64() % 8 {
        0 => 4096,
        1 => 64,
        _ => 8,
    };
    Plan {
        field,
        size,
        align,
        type_num: FIELD_TYPE_BASE + field as u32,
        tag: mix64(seed ^ op.rotate_left(32)) | 1,
    }
}

/// The pool's identity (UUID) for a seed: pools of different seeds never accept each
/// other's checksums.
pub fn uuid(seed: u64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&mix64(seed).to_le_bytes());
    u[8..].copy_from_slice(&mix64(!seed).to_le_bytes());
    u
}

/// One serial line of the heap workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapLine {
    /// Writer: the pool exists and the root is published; `fences` issued so far.
    Ready {
        /// The root object's offset.
        root: u64,
        /// Fences issued by the media so far.
        fences: u64,
    },
    /// Writer: op `op` returned; the field now holds `value`.
    Op {
        /// The op number.
        op: u64,
        /// The field it worked on.
        field: usize,
        /// The field's value after the op.
        value: u64,
        /// Fences issued by the media so far.
        fences: u64,
    },
    /// Verifier: no valid pool on the media (the reason follows on the line).
    NoPool,
    /// Verifier: the pool opened; what recovery did.
    Opened {
        /// Op records replayed.
        replayed: u32,
        /// Valid but superseded records skipped.
        stale: u32,
        /// Records that failed their checksum.
        torn: u32,
        /// Damaged structures set aside.
        damage: u32,
    },
    /// Verifier: the root object's offset (0: none published).
    Root(u64),
    /// Verifier: a root field's value.
    Field {
        /// The field.
        index: usize,
        /// Its value.
        value: u64,
    },
    /// Verifier: an allocated object.
    Object {
        /// Its offset.
        ptr: u64,
        /// Its size.
        size: u64,
        /// Its type number.
        type_num: u32,
        /// Its first 8 bytes (0 for objects under 8 bytes).
        tag: u64,
    },
}

impl fmt::Display for HeapLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeapLine::Ready { root, fences } => {
                write!(f, "heap ready root={root:#x} fences={fences}")
            }
            HeapLine::Op {
                op,
                field,
                value,
                fences,
            } => write!(
                f,
                "heap op {op} field={field} value={value:#x} fences={fences}"
            ),
            HeapLine::NoPool => write!(f, "heap no-pool"),
            HeapLine::Opened {
                replayed,
                stale,
                torn,
                damage,
            } => write!(
                f,
                "heap opened replayed={replayed} stale={stale} torn={torn} damage={damage}"
            ),
            HeapLine::Root(root) => write!(f, "heap root {root:#x}"),
            HeapLine::Field { index, value } => write!(f, "heap field {index} {value:#x}"),
            HeapLine::Object {
                ptr,
                size,
                type_num,
                tag,
            } => write!(
                f,
                "heap object {ptr:#x} size={size} type={type_num} tag={tag:#x}"
            ),
        }
    }
}

fn field_index(v: u64) -> Option<usize> {
    usize::try_from(v).ok().filter(|&i| i < FIELDS)
}

impl HeapLine {
    /// Recognises one line (without its line end); `None` for anything else, including
    /// a line cut short by a kill.
    pub fn parse(line: &str) -> Option<Self> {
        let (kind, mut w) = match keyed(line, "heap")? {
            Keyed::NoPool => return Some(HeapLine::NoPool),
            Keyed::Kind(kind, w) => (kind, w),
        };
        match kind {
            "ready" => {
                let root = w.key("root")?;
                let fences = w.key("fences")?;
                w.end(HeapLine::Ready { root, fences })
            }
            "op" => {
                let op = w.num()?;
                let field = field_index(w.key("field")?)?;
                let value = w.key("value")?;
                let fences = w.key("fences")?;
                w.end(HeapLine::Op {
                    op,
                    field,
                    value,
                    fences,
                })
            }
            "opened" => {
                let replayed = small(w.key("replayed")?)?;
                let stale = small(w.key("stale")?)?;
                let torn = small(w.key("torn")?)?;
                let damage = small(w.key("damage")?)?;
                w.end(HeapLine::Opened {
                    replayed,
                    stale,
                    torn,
                    damage,
                })
            }
            "root" => {
                let root = w.num()?;
                w.end(HeapLine::Root(root))
            }
            "field" => {
                let index = field_index(w.num()?)?;
                let value = w.num()?;
                w.end(HeapLine::Field { index, value })
            }
            "object" => {
                let ptr = w.num()?;
                let size = w.key("size")?;
                let type_num = small(w.key("type")?)?;
                let tag = w.key("tag")?;
                w.end(HeapLine::Object {
                    ptr,
                    size,
                    type_num,
                    tag,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_lines_parse_back() {
        let lines = [
            HeapLine::Ready {
                root: 0x10_3000,
                fences: 6,
            },
            HeapLine::Op {
                op: 41,
                field: 15,
                value: 0,
                fences: 40,
            },
            HeapLine::NoPool,
            HeapLine::Opened {
                replayed: 1,
                stale: 2,
                torn: 3,
                damage: 0,
            },
            HeapLine::Root(0x10_3000),
            HeapLine::Field {
                index: 3,
                value: 0x14_3040,
            },
            HeapLine::Object {
                ptr: 0x14_3040,
                size: 600_000,
                type_num: 19,
                tag: u64::MAX,
            },
        ];
        for l in lines {
            let text = l.to_string();
            assert!(text.starts_with("heap "), "{text}");
            assert_eq!(HeapLine::parse(&text), Some(l), "{text}");
            assert_eq!(HeapLine::parse(&(text + "\r")), Some(l));
        }
        assert_eq!(
            HeapLine::parse("heap no-pool: no valid pool header"),
            Some(HeapLine::NoPool)
        );
    }

    #[test]
    fn cut_foreign_or_out_of_range_lines_are_not_recognised() {
        for line in [
            "heap",
            "heap ready root=0x10",
            "heap ready root=0x10 fences=",
            "heap ready root=0x10 fences=1 extra",
            "heap op 1 field=16 value=0x0 fences=1",
            "heap op 1 field=1 value=0x0",
            "heap op 1 value=0x0 field=1 fences=1",
            "heap field 16 0x0",
            "heap field 1",
            "heap object 0x10 size=1 type=4294967296 tag=0x1",
            "heap no-pools",
            "heap opened replayed=1",
            "heap frobnicate 1",
            "committed 4",
        ] {
            assert_eq!(HeapLine::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn plans_are_deterministic_and_cover_fields_sizes_and_alignments() {
        assert_eq!(plan(5, 9), plan(5, 9));
        assert_ne!(plan(5, 9), plan(6, 9));
        let plans: Vec<Plan> = (0..2000).map(|op| plan(77, op)).collect();
        for f in 0..FIELDS {
            assert!(plans.iter().any(|p| p.field == f), "field {f} never used");
        }
        assert!(plans.iter().any(|p| p.size <= 16));
        assert!(plans.iter().any(|p| (513..=40_000).contains(&p.size)));
        assert!(
            plans.iter().any(|p| p.size > 512 << 10),
            "multi-chunk extents"
        );
        for align in [8, 64, 4096] {
            assert!(plans.iter().any(|p| p.align == align), "align {align}");
        }
        for p in &plans {
            assert!((1..=600_000).contains(&p.size));
            assert_eq!(p.type_num, FIELD_TYPE_BASE + p.field as u32);
            assert_ne!(p.tag, 0);
        }
        assert_ne!(uuid(1), uuid(2));
    }
}
