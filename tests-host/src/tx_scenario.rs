//! The transaction crash scenario (DESIGN.md invariants 1, 2, 4, 5).
//!
//! A root object holds 8 slots; slot 7 may hold a 96 KiB object (in-place, undo
//! logged), the others objects of 16..512 bytes. Each step is a transaction that
//! rewrites parts of 1-3 objects (explicit writes or a shadow, each object with a random
//! mode: Delta, Full, or Critical-Section write-through), sometimes allocating a new
//! object into an empty slot or freeing one, or moving a small object's pointer to an
//! empty slot; some transactions abort; now and then the workload coalesces. Between
//! transactions, `pmalloc`'s atomic allocation (`Pool::alloc_into`, with initial bytes)
//! publishes into empty slots, and its atomic free (`Pool::free_from`) empties slots.
//! Logs are small so they wrap and apply back-pressure.
//!
//! The publications, atomic frees and moves found six bugs (eleventh session), each
//! caught again here (or in the `pmrt` model test) when its fix is taken out: an
//! allocation's record reached media before its initial bytes (`pmalloc` fences
//! between them); a still-valid op record replayed its destination over a later
//! transaction's move (`Heap::settle` in coalescing); an older transaction's record
//! replayed over a publication, or into a freed object's reused space
//! (`Pool::alloc_into` / `free_from` write those objects back first); and a transaction's
//! newer header for space an atomic op had just freed or allocated made recovery skip
//! that op's record (`Heap::reserve` and `prepare_free` settle first).
//!
//! After recovery from any crash image the pool must open with no log group refused as
//! damaged (a well-formed log must pass recovery's validation), pass the heap check, and
//! show exactly the state before the in-flight transaction or exactly the state after
//! it (after, once its commit returned): every slot's pointer and every object's bytes,
//! no leaked or missing object; it must then run a transaction; and crashing inside
//! recovery and recovering again must give the same state.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arch::sim::{Rng, SimMedia};
use pmalloc::OpenOptions;
use pmrt::{CoalesceConfig, Error, Mode, PPtr, Pool, PoolOptions, Tx};

use crate::explorer::{explore, Config, Phase, Report, Scenario};

/// Slots in the root.
pub const SLOTS: usize = 8;
const BIG: usize = 96 * 1024;
const POOL: usize = 8 << 20;

/// A slot's committed content: the object's offset and bytes.
pub type Slot = Option<(u64, Vec<u8>)>;

/// The model: the state before the in-flight transaction, and after it.
#[derive(Clone, Default)]
pub struct Progress {
    /// The root object.
    pub root: u64,
    /// Committed state.
    pub before: Vec<Slot>,
    /// State the in-flight transaction commits (None: none in flight).
    pub after: Option<Vec<Slot>>,
    /// The in-flight transaction's commit returned.
    pub returned: bool,
    /// Transactions done.
    pub done: u64,
    /// An atomic allocation in flight: the slot and the new object's bytes (its
    /// pointer is known only when it returns, so any pointer to these bytes matches).
    pub publishing: Option<(usize, Vec<u8>)>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tx #{} (returned: {}, publishing: {:?})\n  before {}\n  after  {}",
            self.done,
            self.returned,
            self.publishing.as_ref().map(|(i, b)| (i, b.len())),
            describe(&self.before),
            self.after
                .as_deref()
                .map_or_else(|| "(none)".into(), describe)
        )
    }
}

/// Recovery and oracles for transactions.
#[derive(Debug)]
pub struct TxScenario;

fn state_of(pool: &Pool<&SimMedia>, root: u64) -> Result<Vec<Slot>, String> {
    let mut out = Vec::with_capacity(SLOTS);
    for i in 0..SLOTS {
        let mut b = [0u8; 8];
        pool.read_bytes(PPtr::<[u64; SLOTS]>::from_raw(root), i * 8, &mut b)
            .map_err(|e| format!("root slot {i}: {e}"))?;
        let p = u64::from_le_bytes(b);
        if p == 0 {
            out.push(None);
            continue;
        }
        let info = pool
            .heap()
            .info(p)
            .map_err(|e| format!("slot {i} -> {p:#x}: {e}"))?;
        let mut bytes = vec![0u8; info.size as usize];
        pool.read_bytes(PPtr::<u8>::from_raw(p), 0, &mut bytes)
            .map_err(|e| format!("slot {i}: {e}"))?;
        out.push(Some((p, bytes)));
    }
    Ok(out)
}

fn describe(s: &[Slot]) -> String {
    s.iter()
        .map(|x| match x {
            None => "-".to_string(),
            Some((p, b)) => format!(
                "{p:#x}:{}B:{:08x}",
                b.len(),
                pmalloc::checksum::crc32c(&[b])
            ),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Scenario for TxScenario {
    type Progress = Progress;
    type Digest = String;

    fn recover_and_check(
        &self,
        media: &SimMedia,
        p: &Progress,
        recovered: &Phase,
    ) -> Result<String, String> {
        let (pool, hr, rr) =
            Pool::open(media, &OpenOptions::default()).map_err(|e| format!("open failed: {e}"))?;
        recovered.done();
        if std::env::var("PM_DEBUG").is_ok() {
            eprintln!("recovery: {rr:?}\nheap: {hr:?}");
        }
        // Every crash state of a working pool has a well-formed log: a refused group
        // is recovery's validation rejecting a real transaction.
        if rr.bad_entries != 0 || !rr.damage.is_empty() {
            return Err(format!("recovery refused valid log groups: {rr:?}"));
        }
        pool.heap().check().map_err(|e| e.to_string())?;
        if pool.heap().root().map(PPtr::raw) != Some(p.root) {
            return Err(format!(
                "root is {:?}, expected {:#x}",
                pool.heap().root(),
                p.root
            ));
        }
        let got = state_of(&pool, p.root)?;
        let is_before = got == p.before;
        let is_after = p.after.as_ref() == Some(&got)
            || p.publishing.as_ref().is_some_and(|(i, bytes)| {
                let mut after = p.before.clone();
                after[*i] = got[*i].clone().filter(|(_, b)| b == bytes);
                after[*i].is_some() && after == got
            });
        let ok = if p.returned {
            is_after
        } else {
            is_before || is_after
        };
        if !ok {
            return Err(format!(
                "state is neither before nor after the in-flight transaction (returned: {})\n  got    {}\n  before {}\n  after  {}",
                p.returned,
                describe(&got),
                describe(&p.before),
                p.after.as_deref().map_or_else(|| "(none)".into(), describe)
            ));
        }
        let mut expect: BTreeSet<u64> = got.iter().flatten().map(|(o, _)| *o).collect();
        expect.insert(p.root);
        let found: BTreeSet<u64> = pool.heap().objects().map(|o| o.ptr).collect();
        if found != expect {
            let leaked: Vec<_> = found.difference(&expect).collect();
            let lost: Vec<_> = expect.difference(&found).collect();
            return Err(format!(
                "objects disagree with the slots: leaked {leaked:x?}, missing {lost:x?}"
            ));
        }
        // The pool works after recovery.
        pool.transaction(|tx| {
            let o = tx.alloc([7u64; 4])?;
            tx.free(o)
        })
        .map_err(|e| format!("transaction after recovery: {e}"))?;
        Ok(describe(&got))
    }
}

fn next_of(s: &[Slot], i: usize) -> String {
    s[i].as_ref().map_or("-".into(), |(p, _)| format!("{p:#x}"))
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// What a scenario's transactions may do.
#[derive(Debug, Clone, Copy)]
struct Menu {
    /// Slots used (the last one holds the 96 KiB in-place object).
    slots: usize,
    /// Frees (their rounds make every lazy dead-mark durable).
    frees: bool,
    /// Modes drawn from Delta, Full and Critical-Section, in that order.
    modes: u64,
    /// One transaction in this many is on lane 1, the others on lane 0.
    other_lane: u64,
    /// A third of the transactions follow the lanes' turns instead.
    turns: bool,
    /// Between transactions, `pmalloc`'s atomic allocation publishes into empty slots
    /// (`Pool::alloc_into`), and transactions move pointers between slots.
    publish: bool,
}

impl Menu {
    const ALL: Menu = Menu {
        slots: SLOTS,
        frees: true,
        modes: 3,
        other_lane: 3,
        turns: true,
        publish: true,
    };
    /// Redo only, no frees, no in-place object: dead-marks stay lazy until tails pass
    /// them (see [`explore_tx_cross_lane`]).
    const LAZY: Menu = Menu {
        slots: SLOTS - 1,
        frees: false,
        modes: 2,
        other_lane: 2,
        turns: false,
        publish: false,
    };
}

/// One random transaction on `state`; returns the state it commits, or None if it
/// aborts. Updates `progress.after` as it learns new pointers.
#[allow(clippy::too_many_lines)] // the workload's whole menu in one place
fn step(
    tx: &mut Tx<'_, &SimMedia>,
    rng: &mut Rng,
    root: PPtr<[u64; SLOTS]>,
    state: &[Slot],
    progress: &Mutex<Progress>,
    menu: Menu,
) -> Result<Option<Vec<Slot>>, Error> {
    let mut next: Vec<Slot> = state.to_vec();
    // A quarter are small updates when they find an object (one object, explicit
    // writes): the commit path `Tx::commit_small` takes those.
    let small = rng.chance(1, 4);
    let touches = if small { 1 } else { 1 + rng.below(3) as usize };
    for _ in 0..touches {
        let i = rng.below(menu.slots as u64) as usize;
        match next[i].clone() {
            None => {
                let size = if i == SLOTS - 1 {
                    BIG
                } else {
                    16 + rng.below(497) as usize
                };
                let init = random_bytes(rng, size);
                let p = tx.alloc_bytes(size, 8, 100 + i as u32, &init)?;
                tx.write(root, i * 8, &p.raw())?;
                next[i] = Some((p.raw(), init));
            }
            Some((p, mut bytes)) => {
                // A small object's pointer moves to an empty small slot: with atomic
                // publications between transactions (`explore_with`), this is the
                // write a still-valid `pmalloc` op record could replay over.
                let to = (0..SLOTS - 1).find(|&j| next[j].is_none());
                if menu.frees && rng.chance(1, 6) {
                    tx.free(PPtr::<u8>::from_raw(p))?;
                    tx.write(root, i * 8, &0u64)?;
                    next[i] = None;
                } else if let Some(j) =
                    to.filter(|_| menu.publish && i < SLOTS - 1 && rng.chance(1, 6))
                {
                    tx.write(root, j * 8, &p)?;
                    tx.write(root, i * 8, &0u64)?;
                    next[j] = next[i].take();
                } else {
                    let ptr = PPtr::<u8>::from_raw(p);
                    if bytes.len() <= 64 * 1024 {
                        let mode = [Mode::Delta, Mode::Full, Mode::CriticalSection]
                            [rng.below(menu.modes) as usize];
                        tx.set_mode(ptr, mode)?;
                    }
                    for _ in 0..=rng.below(3) {
                        let off = rng.below(bytes.len() as u64) as usize;
                        let len = (1 + rng.below(64) as usize).min(bytes.len() - off);
                        let data = random_bytes(rng, len);
                        if small || rng.chance(1, 2) {
                            tx.write_bytes(ptr, off, &data)?;
                        } else {
                            tx.open_bytes_mut(ptr)?[off..off + len].copy_from_slice(&data);
                        }
                        bytes[off..off + len].copy_from_slice(&data);
                    }
                    next[i] = Some((p, bytes));
                }
            }
        }
        progress.lock().unwrap().after = Some(next.clone());
    }
    if rng.chance(1, 10) {
        return Ok(None);
    }
    Ok(Some(next))
}

/// An atomic allocation into a random empty small slot, outside any transaction: the
/// state before it, or after it once it returned.
fn publish(
    pool: &Pool<&SimMedia>,
    root: PPtr<[u64; SLOTS]>,
    progress: &Mutex<Progress>,
    rng: &mut Rng,
) {
    let state = progress.lock().unwrap().before.clone();
    let i = rng.below(SLOTS as u64 - 1) as usize;
    if state[i].is_some() {
        return;
    }
    let size = 16 + rng.below(497) as usize;
    let init = random_bytes(rng, size);
    // The pointer is not known until the op returns: until then any pointer to these
    // bytes in slot `i` is the state after it.
    progress.lock().unwrap().publishing = Some((i, init.clone()));
    let p = pool
        .alloc_into(
            root.raw() + i as u64 * 8,
            size,
            8,
            100 + i as u32,
            pmalloc::Init::Bytes(&init),
        )
        .expect("atomic allocation");
    let mut next = state;
    if std::env::var("PM_DEBUG").is_ok() {
        eprintln!("publish slot {i}: {:#x}", p.raw());
    }
    next[i] = Some((p.raw(), init));
    let mut g = progress.lock().unwrap();
    g.before = next;
    g.publishing = None;
    g.done += 1;
}

/// An atomic free of a random slot's object, outside any transaction (its space is
/// reusable at once, though transactions may have records of it pending).
fn unpublish(
    pool: &Pool<&SimMedia>,
    root: PPtr<[u64; SLOTS]>,
    progress: &Mutex<Progress>,
    rng: &mut Rng,
) {
    let state = progress.lock().unwrap().before.clone();
    let i = rng.below(SLOTS as u64) as usize;
    if state[i].is_none() {
        return;
    }
    let mut next = state;
    next[i] = None;
    if std::env::var("PM_DEBUG").is_ok() {
        eprintln!(
            "unpublish slot {i}: {:?}",
            next_of(&progress.lock().unwrap().before, i)
        );
    }
    progress.lock().unwrap().after = Some(next.clone());
    pool.free_from(root.raw() + i as u64 * 8)
        .expect("atomic free");
    let mut g = progress.lock().unwrap();
    g.before = next;
    g.after = None;
    g.done += 1;
}

/// Runs `steps` transactions under the explorer.
pub fn explore_tx(cfg: &Config, steps: usize) -> Report {
    explore_with(cfg, steps, Menu::ALL)
}

/// Runs `steps` transactions under the explorer that leave dead-marks lazy (redo only:
/// no frees, no in-place object, no write-through), each on lane 0 or 1 at random. So
/// an object's groups lie in both lanes, rounds mark them in the cache only, and a
/// lane's tail keeps passing records newer than the other lane's lazy marks: the case
/// where those marks must be made durable first (`coalescing.md`).
pub fn explore_tx_cross_lane(cfg: &Config, steps: usize) -> Report {
    explore_with(cfg, steps, Menu::LAZY)
}

fn explore_with(cfg: &Config, steps: usize, menu: Menu) -> Report {
    let media = SimMedia::new(POOL);
    let mut opts = PoolOptions::new("tx-crash", [6; 16]);
    // Small logs (about 20 KiB a lane): they wrap every few dozen transactions, so
    // padding, tail persistence, reuse of dead space and back-pressure are all crossed.
    opts.heap.runtime_len = Some(8192 + 2 * 20 * 1024);
    opts.lanes = 2;
    let pool = Pool::create(&media, &opts).unwrap();
    pool.set_coalesce_config(CoalesceConfig::frequent());
    let root = pool.root_or_init(|| [0u64; SLOTS]).unwrap();
    let progress = Arc::new(Mutex::new(Progress {
        root: root.raw(),
        before: vec![None; SLOTS],
        ..Progress::default()
    }));
    let p2 = progress.clone();
    let mut rng = Rng::new(cfg.seed);
    let report = explore(cfg, Arc::new(TxScenario), &media, progress, || {
        for _ in 0..steps {
            if menu.publish && rng.chance(1, 6) {
                publish(&pool, root, &p2, &mut rng);
            }
            if menu.publish && rng.chance(1, 10) {
                unpublish(&pool, root, &p2, &mut rng);
            }
            let state = p2.lock().unwrap().before.clone();
            {
                let mut g = p2.lock().unwrap();
                g.after = Some(state.clone());
                g.returned = false;
            }
            // Mostly one lane, sometimes the other: coalescing then marks records of a
            // lane that is not the committer's, which are flushed (durable dead masks
            // that a later, torn append at the same place must not trust). A third of
            // the transactions follow the lanes' turns instead (`lane_turn`), so turns
            // end, lanes arrive, and tails are held back behind the other lane's marks.
            let lane = usize::from(rng.chance(1, menu.other_lane));
            let turns = menu.turns && rng.chance(1, 3);
            let mut body =
                |tx: &mut Tx<'_, &SimMedia>| match step(tx, &mut rng, root, &state, &p2, menu)? {
                    Some(next) => Ok(next),
                    None => Err(Error::Freed { obj: 0 }),
                };
            let r = if turns {
                pool.transaction(&mut body)
            } else {
                pool.transaction_in(lane, &mut body)
            };
            let mut g = p2.lock().unwrap();
            if std::env::var("PM_DEBUG").is_ok() {
                eprintln!(
                    "tx #{} {}: {}",
                    g.done,
                    if r.is_ok() { "committed" } else { "aborted" },
                    r.as_ref().map_or(String::new(), |n| describe(n))
                );
            }
            match r {
                Ok(next) => {
                    g.after = Some(next.clone());
                    g.returned = true;
                    g.before = next;
                }
                Err(pmrt::TxError::Aborted(Error::Freed { obj: 0 })) => {}
                Err(e) => panic!("transaction failed: {e}"),
            }
            g.after = None;
            g.returned = false;
            g.done += 1;
            drop(g);
            if rng.chance(1, 25) {
                pool.coalesce();
            }
        }
    });
    report
}
