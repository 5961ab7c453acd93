//! The transaction crash-cycle workload (lines in [`pm_qemu_proto::tx`]).
//!
//! The pool's root ([`TxRoot`]) holds a commit counter, a `PHashMap<u64, u64>` and
//! [`SLOTS`] object slots; slot [`BIG_SLOT`] holds a [`BIG_SIZE`] object (above the
//! runtime's 64 KiB shadow limit: updated in place with undo logging), the others
//! objects of 16 to 2048 bytes. Transaction `n` follows [`plan`]`(seed, n)`: one to three
//! actions, each either on a slot (allocate into an empty one; else free it, or
//! rewrite runs of its bytes in Delta, Full or Critical-Section mode, through explicit
//! writes or a shadow) or on the map (insert or remove a key), then the counter; some
//! plans abort, some coalesce afterwards. The pool has two lanes with small logs (they
//! wrap and apply back-pressure) and coalesces by count (4) and volume.
//!
//! * [`write`]: the writer boot; a line after each transaction returned;
//! * [`verify`]: the verifier boot: open (recover), heap check, read the state
//!   ([`Model::read`]), no leaked object, compare with the seed's model after the
//!   counter's number of commits ([`Model::replay`]), show the pool still works, close;
//! * [`Model`]: the state as plain data, what the transactions do to it, its digest;
//! * [`TxHistory`]: the oracle (`history.rs`). It replays the writer's lines (numbers in order,
//!   commits and aborts as planned, the counter one up per commit) and judges the
//!   verifier's state: every reported commit visible, the transaction in flight
//!   entirely or not at all.
//!
//! Both sides run the same code: the kernel writes and verifies, the runner replays the
//! model and opens the image itself.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use arch::Media;
use pm_qemu_proto::tx::{TxLine, LAYOUT, SLOTS};
use pm_qemu_proto::{mix64, SplitMix64};
use pmalloc::{CheckError, OpenError, OpenOptions, PPtr};
use pmrt::collections::PHashMap;
use pmrt::{CoalesceConfig, Mode, Pool, PoolError, PoolOptions, Tx};

use crate::Damaged;

mod history;

pub use history::{TxHistory, TxHistoryError, TxVerdict};

/// The slot holding the large, undo-logged object.
pub const BIG_SLOT: usize = SLOTS - 1;
/// Size of the large object: above the runtime's shadow limit (64 KiB).
pub const BIG_SIZE: usize = 96 * 1024;
/// Keys of the map are drawn from `0..KEYS`.
pub const KEYS: u64 = 48;
/// Objects in slot `i` have type number `SLOT_TYPE_BASE + i`.
pub const SLOT_TYPE_BASE: u32 = 0x51_0010;
/// Runtime area: the header page, the tail page and two 32 KiB lane logs, so the logs
/// wrap every few dozen transactions and back-pressure is crossed.
pub const RUNTIME_LEN: usize = 8192 + 2 * 32 * 1024;
/// Transaction lanes of the pool.
pub const LANES: u32 = 2;

/// The workload's root object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, pmrt::Persistent)]
#[repr(C)]
#[persistent(type_num = 0x51_0001)]
pub struct TxRoot {
    /// Transactions committed.
    pub count: u64,
    /// The key-value map.
    pub map: PHashMap<u64, u64>,
    /// The slots' objects (0: empty).
    pub slots: [u64; SLOTS],
}

/// Byte offset of [`TxRoot::count`].
const COUNT_OFF: usize = 0;
/// Byte offset of [`TxRoot::slots`].
const SLOTS_OFF: usize = 16;

/// One action of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Work on a slot; what exactly depends on the slot ([`Op`]), drawn from `r`.
    Slot {
        /// The slot.
        slot: usize,
        /// The action's random word.
        r: u64,
    },
    /// Insert `key -> value` into the map.
    Put {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Remove `key` from the map.
    Remove {
        /// The key.
        key: u64,
    },
}

/// What transaction `n` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPlan {
    /// Its actions, in order.
    pub actions: Vec<Action>,
    /// It aborts (returns an error) after its actions.
    pub abort: bool,
    /// `Pool::coalesce()` runs after it.
    pub coalesce: bool,
    /// The lane it runs on.
    pub lane: usize,
}

/// The plan of transaction `n` of the workload seeded `seed`.
pub fn plan(seed: u64, n: u64) -> TxPlan {
    let mut r = SplitMix64::new(seed ^ mix64(n.wrapping_add(0x7478_706c)));
    let actions = (0..r.in_range(1, 3))
        .map(|_| match r.next_u64() % 3 {
            0 if r.next_u64().is_multiple_of(4) => Action::Remove {
                key: r.next_u64() % KEYS,
            },
            0 => Action::Put {
                key: r.next_u64() % KEYS,
                value: r.next_u64(),
            },
            _ => Action::Slot {
                slot: (r.next_u64() % SLOTS as u64) as usize,
                r: r.next_u64(),
            },
        })
        .collect();
    TxPlan {
        actions,
        abort: r.next_u64().is_multiple_of(12),
        coalesce: r.next_u64().is_multiple_of(25),
        lane: (r.next_u64() % u64::from(LANES)) as usize,
    }
}

/// `len` seeded bytes.
fn fill(r: &mut SplitMix64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A concrete change: an [`Action`] resolved against the state it meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Allocate an object with these bytes into an empty slot.
    Alloc {
        /// The slot.
        slot: usize,
        /// The new object's bytes.
        bytes: Vec<u8>,
    },
    /// Free a slot's object.
    Free {
        /// The slot.
        slot: usize,
    },
    /// Rewrite runs of a slot's object.
    Update {
        /// The slot.
        slot: usize,
        /// The mode forced with `set_mode` (`None` for the undo-logged large object).
        mode: Option<Mode>,
        /// Through `write_bytes` (else through a shadow, `open_bytes_mut`).
        explicit: bool,
        /// `(offset, bytes)` runs.
        writes: Vec<(usize, Vec<u8>)>,
    },
    /// Insert into the map.
    Put {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Remove from the map.
    Remove {
        /// The key.
        key: u64,
    },
}

/// The workload's state as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    /// Transactions committed (the root's counter).
    pub count: u64,
    /// Each slot's object bytes.
    pub slots: [Option<Vec<u8>>; SLOTS],
    /// The map's entries.
    pub map: BTreeMap<u64, u64>,
}

/// Where two states differ (the first difference found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDiff {
    /// The counters differ.
    Count {
        /// Expected.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// A slot is empty in one and not the other, or sizes differ (`u64::MAX`: empty).
    SlotSize {
        /// The slot.
        slot: usize,
        /// Expected size.
        expected: u64,
        /// Found size.
        found: u64,
    },
    /// A slot's byte differs.
    SlotByte {
        /// The slot.
        slot: usize,
        /// Offset in the object.
        offset: usize,
        /// Expected.
        expected: u8,
        /// Found.
        found: u8,
    },
    /// A key's value differs (`None`: absent).
    Key {
        /// The key.
        key: u64,
        /// Expected.
        expected: Option<u64>,
        /// Found.
        found: Option<u64>,
    },
}

impl fmt::Display for StateDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDiff::Count { expected, found } => {
                write!(f, "counter is {found}, expected {expected}")
            }
            StateDiff::SlotSize {
                slot,
                expected,
                found,
            } => {
                let size = |s: u64| match s {
                    u64::MAX => alloc::string::String::from("empty"),
                    n => alloc::format!("{n} bytes"),
                };
                write!(
                    f,
                    "slot {slot} is {}, expected {}",
                    size(*found),
                    size(*expected)
                )
            }
            StateDiff::SlotByte {
                slot,
                offset,
                expected,
                found,
            } => write!(
                f,
                "slot {slot} byte {offset} is {found:#04x}, expected {expected:#04x}"
            ),
            StateDiff::Key {
                key,
                expected,
                found,
            } => write!(f, "key {key} maps to {found:?}, expected {expected:?}"),
        }
    }
}

impl Model {
    /// What `action` (action `i` of transaction `n`) does to this state.
    pub fn resolve(&self, action: Action) -> Op {
        match action {
            Action::Put { key, value } => Op::Put { key, value },
            Action::Remove { key } => Op::Remove { key },
            Action::Slot { slot, r } => {
                let mut r = SplitMix64::new(r);
                let Some(bytes) = &self.slots[slot] else {
                    let size = if slot == BIG_SLOT {
                        BIG_SIZE
                    } else {
                        r.in_range(16, 2048) as usize
                    };
                    return Op::Alloc {
                        slot,
                        bytes: fill(&mut r, size),
                    };
                };
                if r.next_u64().is_multiple_of(6) {
                    return Op::Free { slot };
                }
                let mode =
                    [Mode::Delta, Mode::Full, Mode::CriticalSection][(r.next_u64() % 3) as usize];
                let len = bytes.len() as u64;
                let writes = (0..r.in_range(1, 3))
                    .map(|_| {
                        let off = r.next_u64() % len;
                        let max = if r.next_u64().is_multiple_of(4) {
                            512
                        } else {
                            64
                        };
                        let n = r.in_range(1, max).min(len - off);
                        (off as usize, fill(&mut r, n as usize))
                    })
                    .collect();
                Op::Update {
                    slot,
                    mode: (slot != BIG_SLOT).then_some(mode),
                    explicit: r.next_u64().is_multiple_of(2),
                    writes,
                }
            }
        }
    }

    /// Applies `op`.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Alloc { slot, bytes } => self.slots[*slot] = Some(bytes.clone()),
            Op::Free { slot } => self.slots[*slot] = None,
            Op::Update { slot, writes, .. } => {
                if let Some(b) = &mut self.slots[*slot] {
                    for (off, data) in writes {
                        b[*off..off + data.len()].copy_from_slice(data);
                    }
                }
            }
            Op::Put { key, value } => {
                self.map.insert(*key, *value);
            }
            Op::Remove { key } => {
                self.map.remove(key);
            }
        }
    }

    /// The state after the first `commits` committed transactions of the workload
    /// seeded `seed` (`None` if its `txs` transactions do not commit that often).
    pub fn replay(seed: u64, txs: u32, commits: u64) -> Option<Model> {
        let mut m = Model::default();
        for n in 0..u64::from(txs) {
            if m.count == commits {
                return Some(m);
            }
            let p = plan(seed, n);
            if !p.abort {
                for &a in &p.actions {
                    let op = m.resolve(a);
                    m.apply(&op);
                }
                m.count += 1;
            }
        }
        (m.count == commits).then_some(m)
    }

    /// A 64-bit digest (FNV-1a) of the counter, every slot's size and bytes, and the
    /// map's entries in key order.
    pub fn digest(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        };
        eat(&self.count.to_le_bytes());
        for s in &self.slots {
            match s {
                None => eat(&u64::MAX.to_le_bytes()),
                Some(b) => {
                    eat(&(b.len() as u64).to_le_bytes());
                    eat(b);
                }
            }
        }
        for (k, v) in &self.map {
            eat(&k.to_le_bytes());
            eat(&v.to_le_bytes());
        }
        h
    }

    /// The first difference from `expected`, if any.
    pub fn diff(&self, expected: &Model) -> Option<StateDiff> {
        if self.count != expected.count {
            return Some(StateDiff::Count {
                expected: expected.count,
                found: self.count,
            });
        }
        let size = |s: &Option<Vec<u8>>| s.as_ref().map_or(u64::MAX, |b| b.len() as u64);
        for slot in 0..SLOTS {
            let (e, f) = (&expected.slots[slot], &self.slots[slot]);
            if size(e) != size(f) {
                return Some(StateDiff::SlotSize {
                    slot,
                    expected: size(e),
                    found: size(f),
                });
            }
            if let (Some(e), Some(f)) = (e, f) {
                if let Some(offset) = (0..e.len()).find(|&i| e[i] != f[i]) {
                    return Some(StateDiff::SlotByte {
                        slot,
                        offset,
                        expected: e[offset],
                        found: f[offset],
                    });
                }
            }
        }
        let keys = expected.map.keys().chain(self.map.keys());
        keys.copied()
            .find(|k| expected.map.get(k) != self.map.get(k))
            .map(|key| StateDiff::Key {
                key,
                expected: expected.map.get(&key).copied(),
                found: self.map.get(&key).copied(),
            })
    }

    /// The line that reports this state.
    pub fn line(&self) -> TxLine {
        TxLine::State {
            count: self.count,
            slots: self.slots.iter().flatten().count() as u64,
            keys: self.map.len() as u64,
            digest: self.digest(),
        }
    }

    /// Reads the state of a pool (the empty state when no root was published) and
    /// checks that it holds no other object than the root, the slots' objects, the
    /// map's header and (once it held a key) its bucket array.
    pub fn read<M: Media>(pool: &Pool<M>) -> Result<Model, TxWorkloadError> {
        let Some(root) = pool.root::<TxRoot>() else {
            return match pool.heap().objects().next() {
                Some(o) => Err(TxWorkloadError::Leak { obj: o.ptr }),
                None => Ok(Model::default()),
            };
        };
        let r = pool.read(root).map_err(TxWorkloadError::Runtime)?;
        let mut m = Model {
            count: r.count,
            ..Model::default()
        };
        for (i, &p) in r.slots.iter().enumerate() {
            if p == 0 {
                continue;
            }
            let info = pool.heap().info(p).map_err(|e| TxWorkloadError::Slot {
                slot: i,
                error: pmrt::Error::BadPointer(e),
            })?;
            if info.type_num != SLOT_TYPE_BASE + i as u32 {
                return Err(TxWorkloadError::SlotType {
                    slot: i,
                    type_num: info.type_num,
                });
            }
            let mut b = alloc::vec![0u8; info.size as usize];
            pool.read_bytes(PPtr::<u8>::from_raw(p), 0, &mut b)
                .map_err(|error| TxWorkloadError::Slot { slot: i, error })?;
            m.slots[i] = Some(b);
        }
        m.map = r
            .map
            .entries(&mut &*pool)
            .map_err(TxWorkloadError::Runtime)?
            .into_iter()
            .collect();
        let known = |p: u64| p == root.raw() || p == r.map.as_ptr().raw() || r.slots.contains(&p);
        let mut buckets = 0;
        for o in pool.heap().objects().filter(|o| !known(o.ptr)) {
            buckets += 1;
            if o.type_num != 0 || buckets > 1 {
                return Err(TxWorkloadError::Leak { obj: o.ptr });
            }
        }
        if buckets == 0 && !m.map.is_empty() {
            return Err(TxWorkloadError::Leak { obj: 0 });
        }
        Ok(m)
    }
}

/// Why a writer or verifier boot failed (never an expected outcome of a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxWorkloadError {
    /// The pool could not be created, or exists but does not open.
    Pool(PoolError),
    /// Open set damaged structures aside.
    Damage(Damaged),
    /// `check()` failed.
    Check(CheckError),
    /// A transaction failed other than by its planned abort.
    Tx {
        /// The transaction (`u64::MAX`: the root's, or the verifier's exercise).
        tx: u64,
        /// Why.
        error: pmrt::Error,
    },
    /// A transaction failed in a way this workload does not know.
    TxFailed {
        /// The transaction.
        tx: u64,
    },
    /// A runtime read failed.
    Runtime(pmrt::Error),
    /// A slot's object could not be read.
    Slot {
        /// The slot.
        slot: usize,
        /// Why.
        error: pmrt::Error,
    },
    /// A slot's object has another type number than the slot's.
    SlotType {
        /// The slot.
        slot: usize,
        /// Its type number.
        type_num: u32,
    },
    /// An object nothing reaches (0: the map holds keys but has no bucket array).
    Leak {
        /// Its offset.
        obj: u64,
    },
    /// The counter says more commits than the workload's transactions can make.
    Count {
        /// The counter.
        count: u64,
    },
    /// The state differs from the model after the counter's number of commits.
    State(StateDiff),
}

impl fmt::Display for TxWorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxWorkloadError::Pool(e) => write!(f, "pool: {e}"),
            TxWorkloadError::Damage(e) => write!(f, "{e}"),
            TxWorkloadError::Check(e) => write!(f, "{e}"),
            TxWorkloadError::Tx { tx, error } => write!(f, "transaction {tx}: {error}"),
            TxWorkloadError::TxFailed { tx } => write!(f, "transaction {tx} failed"),
            TxWorkloadError::Runtime(e) => write!(f, "{e}"),
            TxWorkloadError::Slot { slot, error } => write!(f, "slot {slot}: {error}"),
            TxWorkloadError::SlotType { slot, type_num } => {
                write!(f, "slot {slot} holds an object of type {type_num:#x}")
            }
            TxWorkloadError::Leak { obj } => write!(f, "object {obj:#x} is unreachable"),
            TxWorkloadError::Count { count } => {
                write!(f, "counter {count} is more than the workload commits")
            }
            TxWorkloadError::State(d) => write!(f, "state differs from the model: {d}"),
        }
    }
}

impl core::error::Error for TxWorkloadError {}

/// A planned abort, or a runtime error inside a transaction.
enum Stop {
    Planned,
    Runtime(pmrt::Error),
}

impl From<pmrt::Error> for Stop {
    fn from(e: pmrt::Error) -> Self {
        Stop::Runtime(e)
    }
}

/// Does `op` in `tx` on the pool whose root is `root` and whose slots hold `ptrs`.
fn execute<M: Media>(
    tx: &mut Tx<'_, M>,
    root: PPtr<TxRoot>,
    map: PHashMap<u64, u64>,
    ptrs: &mut [u64; SLOTS],
    op: &Op,
) -> Result<(), pmrt::Error> {
    match op {
        Op::Alloc { slot, bytes } => {
            let p = tx.alloc_bytes(bytes.len(), 8, SLOT_TYPE_BASE + *slot as u32, bytes)?;
            tx.write(root, SLOTS_OFF + 8 * slot, &p.raw())?;
            ptrs[*slot] = p.raw();
        }
        Op::Free { slot } => {
            tx.free(PPtr::<u8>::from_raw(ptrs[*slot]))?;
            tx.write(root, SLOTS_OFF + 8 * slot, &0u64)?;
            ptrs[*slot] = 0;
        }
        Op::Update {
            slot,
            mode,
            explicit,
            writes,
        } => {
            let p = PPtr::<u8>::from_raw(ptrs[*slot]);
            if let Some(mode) = *mode {
                tx.set_mode(p, mode)?;
            }
            for (off, data) in writes {
                if *explicit {
                    tx.write_bytes(p, *off, data)?;
                } else {
                    tx.open_bytes_mut(p)?[*off..off + data.len()].copy_from_slice(data);
                }
            }
        }
        Op::Put { key, value } => {
            map.insert(tx, *key, *value)?;
        }
        Op::Remove { key } => {
            map.remove(tx, key)?;
        }
    }
    Ok(())
}

/// The pool's identity for a seed.
fn uuid(seed: u64) -> [u8; 16] {
    pm_qemu_proto::heap::uuid(seed ^ 0x7478_7478)
}

/// Runs the writer: creates the pool on `media` ([`LAYOUT`], two lanes of small logs,
/// coalescing by count 4 and volume), publishes the root in a transaction, then runs
/// transactions `0..txs`, calling `out` with `tx ready` and one line per transaction,
/// each only after it returned. `fences` reads the media's fence count. The pool is
/// returned unclosed: a finished writer leaves it as a crash after its last
/// transaction would, so every cycle exercises recovery.
pub fn write<M: Media>(
    media: M,
    seed: u64,
    txs: u32,
    fences: &dyn Fn() -> u64,
    out: &mut dyn FnMut(TxLine),
) -> Result<Pool<M>, TxWorkloadError> {
    let mut opts = PoolOptions::new(LAYOUT, uuid(seed));
    opts.heap.runtime_len = Some(RUNTIME_LEN);
    opts.lanes = LANES;
    let pool = Pool::create(media, &opts).map_err(TxWorkloadError::Pool)?;
    pool.set_coalesce_config(CoalesceConfig::frequent());
    let root = pool
        .transaction(|tx| {
            let map = PHashMap::new(tx)?;
            let root = tx.alloc(TxRoot {
                count: 0,
                map,
                slots: [0; SLOTS],
            })?;
            tx.set_root(root);
            Ok::<_, pmrt::Error>(root)
        })
        .map_err(|e| TxWorkloadError::Tx {
            tx: u64::MAX,
            error: e.into(),
        })?;
    out(TxLine::Ready {
        root: root.raw(),
        fences: fences(),
    });
    let map = pool.read(root).map_err(TxWorkloadError::Runtime)?.map;
    let mut committed = Model::default();
    let mut ptrs = [0u64; SLOTS];
    for n in 0..u64::from(txs) {
        let p = plan(seed, n);
        let r = pool.transaction_in(p.lane, |tx| {
            let mut next = committed.clone();
            let mut next_ptrs = ptrs;
            for &a in &p.actions {
                let op = next.resolve(a);
                execute(tx, root, map, &mut next_ptrs, &op)?;
                next.apply(&op);
            }
            next.count += 1;
            tx.write(root, COUNT_OFF, &next.count)?;
            if p.abort {
                return Err(Stop::Planned);
            }
            Ok((next, next_ptrs))
        });
        match r {
            Ok((next, next_ptrs)) => {
                committed = next;
                ptrs = next_ptrs;
                out(TxLine::Commit {
                    tx: n,
                    count: committed.count,
                    fences: fences(),
                });
            }
            Err(pmrt::TxError::Aborted(Stop::Planned)) => out(TxLine::Abort {
                tx: n,
                fences: fences(),
            }),
            Err(pmrt::TxError::Aborted(Stop::Runtime(error)) | pmrt::TxError::Commit(error)) => {
                return Err(TxWorkloadError::Tx { tx: n, error })
            }
            Err(_) => return Err(TxWorkloadError::TxFailed { tx: n }),
        }
        if p.coalesce {
            pool.coalesce();
        }
    }
    Ok(pool)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// No pool (a crash before create completed): why.
    NoPool(PoolError),
    /// The recovered state (it matched the model).
    Pool(Model),
}

/// Runs the verifier: opens the pool on `media`, printing `tx no-pool` when there is
/// no valid pool header or runtime area, else `tx opened`; checks the heap, reads the
/// state, compares it with the model after the counter's number of commits, prints
/// `tx state`; then shows the recovered pool works (a key inserted and removed again,
/// an object allocated and freed in one transaction: the state is unchanged), checks
/// again and closes. Any other open error, damage, a failed check or a state the
/// model does not have is an error.
pub fn verify<M: Media>(
    media: M,
    seed: u64,
    txs: u32,
    out: &mut dyn FnMut(TxLine),
) -> Result<Verified, TxWorkloadError> {
    let opts = OpenOptions {
        layout: Some(LAYOUT),
    };
    let (pool, heap_report, report) = match Pool::open(media, &opts) {
        Ok(p) => p,
        Err(e @ (PoolError::Open(OpenError::NoValidHeader { .. }) | PoolError::Area(_))) => {
            out(TxLine::NoPool);
            return Ok(Verified::NoPool(e));
        }
        Err(e) => return Err(TxWorkloadError::Pool(e)),
    };
    out(TxLine::Opened {
        records: report.records,
        committed: report.committed,
        incomplete: report.incomplete,
        rolled_back: report.rolled_back,
        replayed: report.groups_replayed,
    });
    Damaged::check(&heap_report).map_err(TxWorkloadError::Damage)?;
    pool.heap().check().map_err(TxWorkloadError::Check)?;
    let found = Model::read(&pool)?;
    let expected = Model::replay(seed, txs, found.count)
        .ok_or(TxWorkloadError::Count { count: found.count })?;
    if let Some(d) = found.diff(&expected) {
        return Err(TxWorkloadError::State(d));
    }
    out(found.line());
    if let Some(root) = pool.root::<TxRoot>() {
        let exercise = |f: &mut dyn FnMut(&mut Tx<'_, M>) -> Result<(), pmrt::Error>| {
            pool.transaction(|tx| f(tx))
                .map_err(|e| TxWorkloadError::Tx {
                    tx: u64::MAX,
                    error: e.into(),
                })
        };
        let map = pool.read(root).map_err(TxWorkloadError::Runtime)?.map;
        exercise(&mut |tx| map.insert(tx, KEYS + 1, 1).map(drop))?;
        exercise(&mut |tx| map.remove(tx, &(KEYS + 1)).map(drop))?;
        exercise(&mut |tx| {
            let p = tx.alloc_bytes(300, 8, 99, &[])?;
            tx.free(p)
        })?;
        // A free committed by a transaction stays reserved until coalescing writes its
        // records back; the heap check wants no reservation in flight.
        pool.coalesce();
        pool.heap().check().map_err(TxWorkloadError::Check)?;
        let again = Model::read(&pool)?;
        if let Some(d) = again.diff(&found) {
            return Err(TxWorkloadError::State(d));
        }
    }
    pool.close();
    Ok(Verified::Pool(found))
}

#[cfg(test)]
mod tests;
