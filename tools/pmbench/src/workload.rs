//! The named workloads, their sizes, and the operation sequences both stacks run.
//!
//! A [`Job`] is everything one round of one workload needs: the warm-up operations (run
//! untimed first) and the timed operations, all generated from a fixed seed, so every
//! round and both stacks run exactly the same sequence.

use serde::{Deserialize, Serialize};

use crate::rng::{SplitMix64, Zipf};

/// A workload, by the name used on the command line and in reports.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadId {
    /// 8-byte transactional update of a uniformly chosen 1 KiB object.
    W1,
    /// 256-byte transactional update.
    W2,
    /// Transactional rewrite of a whole 1 KiB object.
    W3,
    /// Atomic (non-transactional) free + allocate of 64..4096 B, 10,000 live.
    W4,
    /// Transactional free + allocate of 128 B with the slot updated, 10,000 live.
    W5,
    /// W1 with a Zipf(0.99) choice of object.
    W6,
    /// W1 on two threads, each on its own half of the objects.
    W7,
    /// Open of a 1 GiB pool with 1,000,000 objects, first allocation, walk.
    Open,
    /// Open after a crash inside a transaction that had logged 16 MiB.
    Recover,
    /// W1's objects, 90% 8-byte updates and 10% whole-object rewrites (issue 6).
    Mixed,
}

/// A timed quantity of a workload; most workloads have one ([`Metric::Op`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// One operation of the workload (a transaction, an alloc/free pair).
    Op,
    /// `pmemobj_open` (or ours) of the built pool.
    Open,
    /// The first allocation after the open.
    FirstAlloc,
    /// The walk over every live object, per object.
    Walk,
    /// The open that rolls the crashed transaction back.
    RecoverOpen,
    /// A clean open of the same pool afterwards, for comparison.
    CleanOpen,
}

impl Metric {
    /// What one "op" of this metric is, for table headings.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Op => "op",
            Metric::Open | Metric::RecoverOpen | Metric::CleanOpen => "open",
            Metric::FirstAlloc => "alloc",
            Metric::Walk => "object",
        }
    }
}

impl WorkloadId {
    /// Every workload, in report order.
    pub const ALL: [WorkloadId; 10] = [
        WorkloadId::W1,
        WorkloadId::W2,
        WorkloadId::W3,
        WorkloadId::W4,
        WorkloadId::W5,
        WorkloadId::W6,
        WorkloadId::W7,
        WorkloadId::Open,
        WorkloadId::Recover,
        WorkloadId::Mixed,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadId::W1 => "w1",
            WorkloadId::W2 => "w2",
            WorkloadId::W3 => "w3",
            WorkloadId::W4 => "w4",
            WorkloadId::W5 => "w5",
            WorkloadId::W6 => "w6",
            WorkloadId::W7 => "w7",
            WorkloadId::Open => "open",
            WorkloadId::Recover => "recover",
            WorkloadId::Mixed => "mixed",
        }
    }

    /// One line saying what the workload does.
    pub fn describe(self) -> &'static str {
        match self {
            WorkloadId::W1 => "tx: 8 B update, uniform object of 10,000 x 1 KiB",
            WorkloadId::W2 => "tx: 256 B update, uniform object",
            WorkloadId::W3 => "tx: whole 1 KiB object rewrite",
            WorkloadId::W4 => "atomic free+alloc 64..4096 B, 10,000 live",
            WorkloadId::W5 => "tx free+alloc 128 B + slot update, 10,000 live",
            WorkloadId::W6 => "tx: 8 B update, Zipf(0.99) object",
            WorkloadId::W7 => "tx: 8 B update, 2 threads on disjoint halves",
            WorkloadId::Open => "1 GiB pool, 1,000,000 objects: open / first alloc / walk",
            WorkloadId::Recover => "open after a crash in a tx that logged 16 MiB",
            WorkloadId::Mixed => "tx: 90% 8 B updates, 10% 1 KiB rewrites, uniform object",
        }
    }

    /// The timed quantities this workload reports, in order.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            WorkloadId::Open => &[Metric::Open, Metric::FirstAlloc, Metric::Walk],
            WorkloadId::Recover => &[Metric::RecoverOpen, Metric::CleanOpen],
            _ => &[Metric::Op],
        }
    }

    /// Bytes the user changes per operation, the denominator of write amplification;
    /// `None` where the operation changes no user bytes (allocation, open). Exact for
    /// mixed too: every block of [`MIXED_BLOCK`] operations holds one rewrite.
    pub fn user_bytes_per_op(self) -> Option<f64> {
        match self {
            WorkloadId::W1 | WorkloadId::W6 | WorkloadId::W7 => Some(8.0),
            WorkloadId::W2 => Some(256.0),
            WorkloadId::W3 => Some(1024.0),
            WorkloadId::Mixed => {
                let block = u32::try_from(MIXED_BLOCK).unwrap_or(u32::MAX);
                Some(f64::from((block - 1) * 8 + MIXED_REWRITE) / f64::from(block))
            }
            _ => None,
        }
    }

    /// Whether the instruction counter can trace it (it follows one thread only).
    pub fn countable(self) -> bool {
        self != WorkloadId::W7
    }

    fn seed(self) -> u64 {
        0x706D_6265_6E63_6800 | self as u64
    }
}

impl std::fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sizes of every workload; [`Params::full`] is the specification, [`Params::quick`]
/// the CI smoke version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Timed operations per round (w1..w7).
    pub ops: u64,
    /// Untimed warm-up operations run first in each round.
    pub warmup: u64,
    /// Objects (w1..w3, w6, w7) or live slots (w4, w5).
    pub objects: u32,
    /// Object size of the update workloads.
    pub object_size: u32,
    /// Pool size of w1..w7, the same for both stacks.
    pub pool_size: u64,
    /// Live objects in the open workload's pool.
    pub open_objects: u64,
    /// Pool size of the open workload.
    pub open_pool_size: u64,
    /// Bytes the crashed transaction of the recover workload had logged.
    pub log_bytes: u64,
    /// Size of each range it added to the transaction.
    pub log_chunk: u64,
    /// Pool size of the recover workload.
    pub recover_pool_size: u64,
}

const MIB: u64 = 1 << 20;

impl Params {
    /// The sizes the workloads are specified with.
    pub fn full() -> Self {
        Params {
            ops: 1_000_000,
            warmup: 100_000,
            objects: 10_000,
            object_size: 1024,
            pool_size: 256 * MIB,
            open_objects: 1_000_000,
            open_pool_size: 1024 * MIB,
            log_bytes: 16 * MIB,
            log_chunk: 64 * 1024,
            recover_pool_size: 256 * MIB,
        }
    }

    /// About 1/100 of the work, for CI smoke runs: same object counts and object
    /// sizes (so the same code paths run), fewer operations, a smaller open pool.
    pub fn quick() -> Self {
        Params {
            ops: 10_000,
            warmup: 2_000,
            open_objects: 10_000,
            open_pool_size: 64 * MIB,
            log_bytes: MIB,
            recover_pool_size: 64 * MIB,
            ..Self::full()
        }
    }

    /// These sizes with `ops` timed operations and as many warm-up operations (the
    /// instruction counter's short runs).
    #[must_use]
    pub fn with_ops(self, ops: u64) -> Self {
        Params {
            ops,
            warmup: ops,
            ..self
        }
    }
}

/// The operations of one thread of an update workload: op `i` stores over
/// `[off[i], off[i] + len)` of object `obj[i]`, where `len` is `lens[i]` when the job
/// mixes sizes and [`UpdateJob::len`] when `lens` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOps {
    /// Object index per operation.
    pub obj: Vec<u32>,
    /// Byte offset in the object per operation (8-byte aligned).
    pub off: Vec<u32>,
    /// Bytes per operation (multiples of 8), for mixed; empty for one size.
    pub lens: Vec<u32>,
}

impl UpdateOps {
    /// Bytes op `i` updates in a job whose fixed length is `len`.
    pub fn len_of(&self, i: usize, len: u32) -> u32 {
        self.lens.get(i).copied().unwrap_or(len)
    }
}

/// The mixed workload puts one whole-object rewrite at a random position in every block
/// of this many operations (so exactly 10% are rewrites, and the user bytes per
/// operation are exact for any multiple of the block).
pub const MIXED_BLOCK: u64 = 10;

/// Bytes of mixed's rewrites: the whole 1 KiB object.
const MIXED_REWRITE: u32 = 1024;

/// w1, w2, w3, w6, w7, mixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateJob {
    /// Bytes updated per transaction (a multiple of 8); for mixed, the largest (the
    /// per-operation lengths are in [`UpdateOps::lens`]).
    pub len: u32,
    /// 1, or 2 for w7: ops `[0, n/2)` run on one thread, `[n/2, n)` on the other.
    pub threads: u32,
    /// Object count and size, all objects the same size.
    pub objects: u32,
    /// Size of each object.
    pub object_size: u32,
    /// Untimed operations.
    pub warm: UpdateOps,
    /// Timed operations.
    pub timed: UpdateOps,
}

/// w4: atomic free + allocate into a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocJob {
    /// Size of each slot's first object (setup, untimed).
    pub initial_sizes: Vec<u32>,
    /// Untimed operations: (slot, new size) pairs as two arrays.
    pub warm: (Vec<u32>, Vec<u32>),
    /// Timed operations.
    pub timed: (Vec<u32>, Vec<u32>),
}

/// w5: transactional free + allocate of a fixed size into a slot, oldest slot first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxAllocJob {
    /// Live objects (slots).
    pub slots: u32,
    /// Size of every object.
    pub size: u32,
    /// Untimed operations (slot per op).
    pub warm: Vec<u32>,
    /// Timed operations.
    pub timed: Vec<u32>,
}

/// The open workload: a pool built once, then timed open, first alloc, walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJob {
    /// Pool size.
    pub pool_size: u64,
    /// Size of each object of the built pool.
    pub sizes: Vec<u32>,
}

/// The recover workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverJob {
    /// Pool size.
    pub pool_size: u64,
    /// Bytes the crashed transaction had logged.
    pub log_bytes: u64,
    /// Size of each range it added.
    pub chunk: u64,
}

/// Everything one round of a workload runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// w1, w2, w3, w6, w7, mixed.
    Update(UpdateJob),
    /// w4.
    Alloc(AllocJob),
    /// w5.
    TxAlloc(TxAllocJob),
    /// open.
    Open(OpenJob),
    /// recover.
    Recover(RecoverJob),
}

impl Job {
    /// The job of workload `id` at sizes `p`; the same for every call.
    pub fn build(id: WorkloadId, p: &Params) -> Job {
        let mut rng = SplitMix64::new(id.seed());
        let n_warm = p.warmup;
        let n = p.ops;
        match id {
            WorkloadId::W1 | WorkloadId::W2 | WorkloadId::W3 | WorkloadId::W6 | WorkloadId::W7 => {
                let len = match id {
                    WorkloadId::W2 => 256,
                    WorkloadId::W3 => p.object_size,
                    _ => 8,
                };
                let threads = if id == WorkloadId::W7 { 2 } else { 1 };
                let zipf = (id == WorkloadId::W6).then(|| Zipf::new(p.objects, 0.99, &mut rng));
                let mut gen =
                    |count: u64| update_ops(count, len, threads, p, zipf.as_ref(), &mut rng);
                let warm = gen(n_warm);
                let timed = gen(n);
                Job::Update(UpdateJob {
                    len,
                    threads,
                    objects: p.objects,
                    object_size: p.object_size,
                    warm,
                    timed,
                })
            }
            WorkloadId::W4 => {
                let size = |r: &mut SplitMix64| r.between(64, 4096);
                let initial_sizes = (0..p.objects).map(|_| size(&mut rng)).collect();
                let mut gen = |count: u64| -> (Vec<u32>, Vec<u32>) {
                    (0..count)
                        .map(|_| (rng.below(p.objects), size(&mut rng)))
                        .unzip()
                };
                let warm = gen(n_warm);
                let timed = gen(n);
                Job::Alloc(AllocJob {
                    initial_sizes,
                    warm,
                    timed,
                })
            }
            WorkloadId::W5 => {
                // FIFO: op i replaces the object allocated `objects` ops earlier.
                let slot = |i: u64| (i % u64::from(p.objects)) as u32;
                Job::TxAlloc(TxAllocJob {
                    slots: p.objects,
                    size: 128,
                    warm: (0..n_warm).map(slot).collect(),
                    timed: (n_warm..n_warm + n).map(slot).collect(),
                })
            }
            WorkloadId::Open => Job::Open(OpenJob {
                pool_size: p.open_pool_size,
                sizes: (0..p.open_objects).map(|_| rng.between(64, 512)).collect(),
            }),
            WorkloadId::Recover => Job::Recover(RecoverJob {
                pool_size: p.recover_pool_size,
                log_bytes: p.log_bytes,
                chunk: p.log_chunk,
            }),
            WorkloadId::Mixed => {
                let mut gen = |count: u64| mixed_ops(count, p, &mut rng);
                let warm = gen(n_warm);
                let timed = gen(n);
                Job::Update(UpdateJob {
                    len: MIXED_REWRITE.min(p.object_size),
                    threads: 1,
                    objects: p.objects,
                    object_size: p.object_size,
                    warm,
                    timed,
                })
            }
        }
    }

    /// Timed operations per round for [`Metric::Op`] (0 for open and recover, whose
    /// metrics count their own units).
    pub fn timed_ops(&self) -> u64 {
        match self {
            Job::Update(j) => j.timed.obj.len() as u64,
            Job::Alloc(j) => j.timed.0.len() as u64,
            Job::TxAlloc(j) => j.timed.len() as u64,
            Job::Open(_) | Job::Recover(_) => 0,
        }
    }
}

/// `count` update operations; with two threads the first half uses objects
/// `[0, objects/2)` and the second half the rest.
fn update_ops(
    count: u64,
    len: u32,
    threads: u32,
    p: &Params,
    zipf: Option<&Zipf>,
    rng: &mut SplitMix64,
) -> UpdateOps {
    let mut ops = UpdateOps::default();
    let per_thread = p.objects / threads;
    let slots = (p.object_size - len) / 8 + 1;
    for i in 0..count {
        let t = u32::from(threads == 2 && i >= count / 2);
        let obj = match zipf {
            Some(z) => z.sample(rng),
            None => t * per_thread + rng.below(per_thread),
        };
        ops.obj.push(obj);
        ops.off.push(rng.below(slots) * 8);
    }
    ops
}

/// `count` mixed operations on uniformly chosen objects: in every block of
/// [`MIXED_BLOCK`] operations one, at a random position, rewrites the whole object
/// (offset 0); the others update 8 bytes at a random 8-aligned offset.
fn mixed_ops(count: u64, p: &Params, rng: &mut SplitMix64) -> UpdateOps {
    let mut ops = UpdateOps::default();
    let block = u32::try_from(MIXED_BLOCK).unwrap_or(u32::MAX);
    let rewrite = MIXED_REWRITE.min(p.object_size);
    let mut at = 0;
    for i in 0..count {
        let k = (i % MIXED_BLOCK) as u32;
        if k == 0 {
            at = rng.below(block);
        }
        ops.obj.push(rng.below(p.objects));
        if k == at {
            ops.off.push(0);
            ops.lens.push(rewrite);
        } else {
            ops.off.push(rng.below(p.object_size / 8) * 8);
            ops.lens.push(8);
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_the_same_on_every_build() {
        let p = Params::quick().with_ops(500);
        for id in WorkloadId::ALL {
            assert_eq!(Job::build(id, &p), Job::build(id, &p), "{id}");
        }
    }

    #[test]
    fn update_ranges_fit_their_objects_and_are_aligned() {
        let p = Params::quick().with_ops(2000);
        for id in [
            WorkloadId::W1,
            WorkloadId::W2,
            WorkloadId::W3,
            WorkloadId::W6,
        ] {
            let Job::Update(j) = Job::build(id, &p) else {
                panic!()
            };
            for (&o, &off) in j.timed.obj.iter().zip(&j.timed.off) {
                assert!(o < j.objects);
                assert_eq!(off % 8, 0);
                assert!(off + j.len <= j.object_size, "{id}: {off}+{}", j.len);
            }
        }
    }

    #[test]
    fn w7_threads_touch_disjoint_halves() {
        let p = Params::quick().with_ops(1000);
        let Job::Update(j) = Job::build(WorkloadId::W7, &p) else {
            panic!()
        };
        let (a, b) = j.timed.obj.split_at(500);
        assert!(a.iter().all(|&o| o < 5000));
        assert!(b.iter().all(|&o| (5000..10_000).contains(&o)));
    }

    #[test]
    fn w4_sizes_stay_in_64_to_4096() {
        let p = Params::quick().with_ops(3000);
        let Job::Alloc(j) = Job::build(WorkloadId::W4, &p) else {
            panic!()
        };
        assert!(j.timed.1.iter().all(|s| (64..=4096).contains(s)));
        assert!(j.timed.0.iter().all(|&s| s < p.objects));
    }

    #[test]
    fn mixed_has_one_whole_object_rewrite_in_every_block_of_ten() {
        let p = Params::quick().with_ops(2000);
        let Job::Update(j) = Job::build(WorkloadId::Mixed, &p) else {
            panic!()
        };
        let ops = &j.timed;
        assert_eq!(ops.lens.len(), 2000);
        for block in ops.lens.chunks(10) {
            assert_eq!(block.iter().filter(|&&l| l == 1024).count(), 1);
            assert_eq!(block.iter().filter(|&&l| l == 8).count(), 9);
        }
        for (i, &o) in ops.obj.iter().enumerate() {
            let (off, len) = (ops.off[i], ops.len_of(i, j.len));
            assert!(o < j.objects);
            assert_eq!(off % 8, 0);
            assert!(off + len <= j.object_size);
            if len == 1024 {
                assert_eq!(off, 0);
            }
        }
        let user: u64 = ops.lens.iter().map(|&l| u64::from(l)).sum();
        #[allow(clippy::cast_precision_loss)] // small exact integers
        let per_op = user as f64 / 2000.0;
        assert!((per_op - WorkloadId::Mixed.user_bytes_per_op().unwrap()).abs() < 1e-9);
    }

    #[test]
    fn w5_frees_the_oldest_object() {
        let p = Params::quick().with_ops(3);
        let Job::TxAlloc(j) = Job::build(WorkloadId::W5, &p) else {
            panic!()
        };
        assert_eq!(j.warm, vec![0, 1, 2]);
        assert_eq!(j.timed, vec![3, 4, 5]);
    }
}
