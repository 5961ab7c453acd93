//! Bad input for the runtime layer (DESIGN.md invariants 4 and 6): opening a pool whose
//! runtime area (lane logs, tails, area header, sequence word) is damaged or forged
//! returns a typed error or a working pool, never panics, and never reads or writes
//! outside the media. What recovery validates (docs/transactions.md, Recovery):
//!
//! * a record whose check fails, or whose structure is impossible although its check
//!   passes (huge lengths, too many groups, unknown kinds or flags, sequence 0), ends
//!   its lane's scan exactly as a clean end of the log there would: the records before
//!   it are all replayed, nothing after it is;
//! * a group whose record passes its check but that writes where no transaction could
//!   (data outside its object or for no object; metadata that is not its key's header
//!   and extent words over free or own chunks; a root naming no object; metadata in an
//!   undo record) is not applied and is listed in `RecoveryReport::damage` with its
//!   `LogFault`, and everything else recovers as if the group were not there;
//! * a damaged tail word is counted (`bad_tails`) and its lane scanned from its start;
//!   a damaged area header is refused (`AreaError::BadHeader` with its offset); a
//!   truncated pool is refused by the heap (`OpenError`).
//!
//! The valid pools (`Base`) hold what recovery has to work on: committed records not
//! yet written back on three small lanes that wrapped (padding records), multi-part
//! records (more than 48 groups), allocation and free metadata, dead records with stale
//! bytes, and, in one of them, an in-flight in-place transaction (live undo records,
//! new bytes already in place, no commit record). Each case damages a copy, opens it
//! on a media that fails the test on any access outside its range (also from recovery's
//! worker threads, whose panics would otherwise be lost), and, if it opens: the heap
//! check passes, every object the root names reads back, a transaction on every lane
//! commits, coalescing and the heap check pass again, and the closed pool reopens with
//! nothing to replay. The targeted tests compare the recovered pool, byte for byte
//! outside the runtime area, with what the undamaged pool (or the log cut cleanly at
//! the damage) recovers to, and check the exact fault reported.
//!
//! Every case is seeded (`arch::sim::Rng`) or fixed, so a failure names a reproducible
//! case. These tests can fail (each was seen failing): with the metadata check
//! (`recover/target.rs`) accepting everything, forged headers, roots and chunk words
//! are applied and the exact-fault, random-forgery and record-field tests fail; with
//! the data bound check removed, forged entries write outside their objects (outside
//! the media, for some) and the same three fail; with free headers not held to their
//! slot's size, the random forgeries leave a heap that fails its check.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use arch::sim::{HookAction, Rng, SimEvent, SimMedia};
use arch::{Counters, Media, MediaInfo, PersistMode, RawMedia};
use pmalloc::chunk::ChunkEntry;
use pmalloc::header::{HeaderState, ObjHeader, F_ALLOCATED, F_EXTENT};
use pmalloc::layout::{Layout, CHUNK, MIN_POOL, ROOT_SLOT};
use pmalloc::{OpenError, OpenOptions};
use pmrt::area::{self, Area, AreaError};
use pmrt::record::{self, Builder, F_PAD, F_UNDO, G_ABS, G_REL};
use pmrt::recover::{scan_logs, ScannedRecord};
use pmrt::{
    CoalesceConfig, Error, LogDamage, LogFault, Mode, PPtr, Pool, PoolError, PoolOptions,
    RecoveryReport,
};

/// Above the smallest pool, so a truncated pool can still be long enough to read.
const POOL: usize = 10 << 20;
const LANES: u32 = 3;
/// Bytes per lane log: the smallest a lane may have, so the logs wrap.
const LANE_LOG: usize = 16 * 1024;
const SLOTS: usize = 16;
/// Slot of the 200 000-byte extent and of the 100 000-byte run object (in place).
const BIG: [usize; 2] = [12, 13];
/// Slot left empty for the exercise's allocations.
const SPARE: usize = 14;
/// Slot of an array of `TINY` pointers to 8-byte objects (a transaction writing all of
/// them has more groups than one record holds).
const TINIES: usize = 15;
const TINY: usize = 60;

type Root = [u64; SLOTS];

// ---- a media that fails the test on any access outside its range -------------------

/// `RawMedia` over a test buffer, recording what it writes (so the buffer can be reset
/// cheaply) and any access outside the range (so a panic swallowed by a worker thread
/// still fails the test).
#[derive(Debug)]
struct Guarded {
    raw: RawMedia,
    written: Mutex<Vec<(usize, usize)>>,
    outside: AtomicBool,
}

impl Guarded {
    fn new(buf: &mut [u64], len: usize) -> Self {
        assert!(len <= buf.len() * 8);
        // SAFETY: `buf` outlives the media in every use below (the media is dropped
        // before the buffer is touched again) and is accessed only through it meanwhile.
        let raw = unsafe {
            RawMedia::new(
                NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap(),
                len,
                PersistMode::Eadr,
            )
        };
        Guarded {
            raw,
            written: Mutex::new(Vec::new()),
            outside: AtomicBool::new(false),
        }
    }

    fn check(&self, off: usize, len: usize) {
        if off > self.raw.len() || len > self.raw.len() - off {
            self.outside.store(true, Ordering::SeqCst);
            panic!(
                "access outside the media: {off:#x}+{len:#x} > {:#x}",
                self.raw.len()
            );
        }
    }

    fn wrote(&self, off: usize, len: usize) {
        self.check(off, len);
        self.written.lock().unwrap().push((off, len));
    }

    fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.raw.read(off, &mut b);
        b
    }
}

impl Media for Guarded {
    fn len(&self) -> usize {
        self.raw.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.check(off, buf.len());
        self.raw.read(off, buf);
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.wrote(off, data.len());
        self.raw.write(off, data);
    }
    fn fill(&self, off: usize, len: usize, byte: u8) {
        self.wrote(off, len);
        self.raw.fill(off, len, byte);
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.check(off, 8);
        self.raw.read_u64(off)
    }
    fn write_u64(&self, off: usize, v: u64) {
        self.wrote(off, 8);
        self.raw.write_u64(off, v);
    }
    fn write_nt(&self, off: usize, data: &[u8]) {
        self.wrote(off, data.len());
        self.raw.write_nt(off, data);
    }
    fn flush(&self, off: usize, len: usize) {
        self.check(off, len);
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
}

// ---- the valid pools ------------------------------------------------------------------

/// A valid pool image and what the tests need to know about it.
struct Base {
    name: &'static str,
    words: Vec<u64>,
    salt: u64,
    layout: Layout,
    area: Area,
    /// What recovery will scan.
    recs: Vec<ScannedRecord>,
    heads: Vec<usize>,
    max_seq: u64,
    /// Objects the workload freed that are not live after recovery.
    freed: Vec<u64>,
    /// Live objects after recovery: `(offset, size)`.
    live: Vec<(u64, u64)>,
    /// The image after opening the unmodified pool (recovery done).
    recovered: Vec<u8>,
    /// What that recovery reported.
    report: RecoveryReport,
}

fn bytes_of_words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn words_of_bytes(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// 1 to `max` random bytes.
fn noise(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = 1 + rng.below(max) as usize;
    random_bytes(rng, n)
}

/// Runs the workload that fills a base: `steps` transactions round-robin over the
/// lanes. Returns the objects it freed.
fn workload(pool: &Pool<&SimMedia>, root: PPtr<Root>, rng: &mut Rng, steps: usize) -> Vec<u64> {
    let mut freed = Vec::new();
    let slot = |i: usize| pool.read(root).unwrap()[i];
    for step in 0..steps {
        let lane = step % LANES as usize;
        match rng.below(10) {
            0..=5 => {
                pool.transaction_in(lane, |tx| {
                    for _ in 0..=rng.below(3) {
                        let p = PPtr::<u8>::from_raw(slot(rng.below(12) as usize));
                        let size = pool.heap().info(p.raw())?.size as usize;
                        let off = rng.below(size as u64) as usize;
                        let n = (1 + rng.below(200) as usize).min(size - off);
                        let data = random_bytes(rng, n);
                        let mode =
                            [Mode::Delta, Mode::Full, Mode::CriticalSection][rng.below(3) as usize];
                        tx.set_mode(p, mode)?;
                        if rng.chance(1, 2) {
                            tx.write_bytes(p, off, &data)?;
                        } else {
                            tx.open_bytes_mut(p)?[off..off + data.len()].copy_from_slice(&data);
                        }
                    }
                    Ok::<_, Error>(())
                })
                .unwrap();
            }
            6 => {
                let i = rng.below(12) as usize;
                let old = slot(i);
                let size = 8 + rng.below(1500) as usize;
                let init = random_bytes(rng, size);
                pool.transaction_in(lane, |tx| {
                    tx.free(PPtr::<u8>::from_raw(old))?;
                    let p = tx.alloc_bytes(size, 8, 10 + i as u32, &init)?;
                    tx.write(root, i * 8, &p.raw())
                })
                .unwrap();
                freed.push(old);
            }
            7 => {
                let arr = PPtr::<[u64; TINY]>::from_raw(slot(TINIES));
                let tinies = pool.read(arr).unwrap();
                let v = rng.next_u64();
                pool.transaction_in(lane, |tx| {
                    for &t in &tinies {
                        tx.write(PPtr::<u64>::from_raw(t), 0, &v)?;
                    }
                    Ok::<_, Error>(())
                })
                .unwrap();
            }
            _ => {
                // In place, undo-logged (when the base has the big objects).
                let b = slot(BIG[rng.below(2) as usize]);
                if b != 0 {
                    let n = 1 + rng.below(300) as usize;
                    let data = random_bytes(rng, n);
                    let off = rng.below(90_000) as usize;
                    pool.transaction_in(lane, |tx| {
                        tx.write_bytes(PPtr::<u8>::from_raw(b), off, &data)
                    })
                    .unwrap();
                }
            }
        }
    }
    freed
}

/// Rewrites both big objects in place and crashes once their new bytes are durable but
/// the commit record is not: live undo records for recovery to roll back.
fn crash_before_commit(media: &SimMedia, pool: &Pool<&SimMedia>, root: PPtr<Root>) {
    let fields = pool.read(root).unwrap();
    let (a, b) = (fields[BIG[0]], fields[BIG[1]]);
    let marker = 0x0DD_BA11_u64.to_le_bytes();
    let probe = a as usize + 4096;
    media.set_hook(Box::new(move |ev, st| {
        let durable = st.media_image()[probe..probe + 8] == marker;
        if matches!(ev, SimEvent::AfterFence { .. }) && durable {
            HookAction::Crash
        } else {
            HookAction::Continue
        }
    }));
    arch::sim::silence_crash_panics();
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.transaction_in(1, |tx| {
            tx.write_bytes(PPtr::<u8>::from_raw(a), 4096, &marker)?;
            tx.write_bytes(PPtr::<u8>::from_raw(a), 150_000, &[0xEE; 3000])?;
            tx.write_bytes(PPtr::<u8>::from_raw(b), 64, &[0xCC; 700])
        })
    }));
    media.clear_hook();
    assert!(
        r.is_err(),
        "the in-place transaction must crash before its commit"
    );
}

impl Base {
    /// Builds a base. With `undo_in_flight`, the last transaction rewrites both big
    /// objects in place and the image is taken when their new bytes are durable but the
    /// commit record is not.
    fn build(name: &'static str, seed: u64, undo_in_flight: bool) -> Base {
        let media = SimMedia::new(POOL);
        let mut opts = PoolOptions::new("pmrt-bad-input", [0xB1; 16]);
        opts.heap.runtime_len = Some(8192 + LANES as usize * LANE_LOG);
        opts.lanes = LANES;
        let pool = Pool::create(&media, &opts).unwrap();
        // Write-back only under back-pressure: most committed records stay pending.
        pool.set_coalesce_config(CoalesceConfig::deferred());
        let mut rng = Rng::new(seed);
        let root = pool.root_or_init(|| [0u64; SLOTS]).unwrap();
        for i in 0..12usize {
            let size = [24, 100, 700, 1500, 3000, 8][i % 6];
            let init = random_bytes(&mut rng, size);
            pool.transaction_in(i % 3, |tx| {
                let p = tx.alloc_bytes(size, 8, 10 + i as u32, &init)?;
                tx.write(root, i * 8, &p.raw())
            })
            .unwrap();
        }
        pool.transaction_in(0, |tx| {
            let mut ptrs = [0u64; TINY];
            for p in &mut ptrs {
                *p = tx.alloc(0u64)?.raw();
            }
            let arr = tx.alloc(ptrs)?;
            tx.write(root, TINIES * 8, &arr.raw())
        })
        .unwrap();
        if undo_in_flight {
            for (k, size) in [(BIG[0], 200_000), (BIG[1], 100_000)] {
                pool.transaction_in(1, |tx| {
                    let p = tx.alloc_bytes(size, 8, 50, &[0x5A; 256])?;
                    tx.write(root, k * 8, &p.raw())
                })
                .unwrap();
            }
        }
        let mut freed = workload(&pool, root, &mut rng, 260);
        if undo_in_flight {
            crash_before_commit(&media, &pool, root);
        }
        let img = media.durable_image();
        drop(pool);
        let salt;
        let layout;
        let area;
        {
            let m = SimMedia::from_image(img.clone());
            let heap = pmalloc::Heap::open(&m, &OpenOptions::default()).unwrap().0;
            salt = heap.salt();
            layout = *heap.layout();
            let (off, len) = heap.runtime_area();
            area = Area::open(&m, off, len, salt).unwrap();
        }
        let scan = scan_logs(&SimMedia::from_image(img.clone()), &area, salt);
        let max_seq = scan
            .records
            .iter()
            .map(|r| record::peek(&r.bytes).seq)
            .max()
            .unwrap_or(0);
        let mut words = words_of_bytes(&img);
        let (live, recovered, report) = {
            let g = Guarded::new(&mut words, POOL);
            let (pool, _, report) = Pool::open(&g, &OpenOptions::default()).unwrap();
            pool.heap().check().unwrap();
            let live: Vec<(u64, u64)> = pool.heap().objects().map(|o| (o.ptr, o.size)).collect();
            drop(pool);
            (live, g.bytes(0, POOL), report)
        };
        freed.retain(|f| !live.iter().any(|(p, _)| p == f));
        freed.sort_unstable();
        freed.dedup();
        assert!(
            report.committed > 10 && report.groups_replayed > 10,
            "{name}: {report:?}"
        );
        assert_eq!(report.rolled_back > 0, undo_in_flight, "{name}: {report:?}");
        assert!(
            report.damage.is_empty() && report.bad_entries == 0,
            "{name}: a valid log refused: {report:?}"
        );
        assert!(!freed.is_empty(), "{name}: the workload frees objects");
        Base {
            name,
            words: words_of_bytes(&img),
            salt,
            layout,
            area,
            recs: scan.records,
            heads: scan.heads,
            max_seq,
            freed,
            live,
            recovered,
            report,
        }
    }

    /// Both bases, built once per test process.
    fn all() -> &'static [Base] {
        static BASES: OnceLock<Vec<Base>> = OnceLock::new();
        BASES.get_or_init(|| {
            vec![
                Base::build("pending redo", 0x5EED_0001, false),
                Base::build("undo in flight", 0x5EED_0002, true),
            ]
        })
    }

    fn is_live(&self, obj: u64) -> bool {
        self.live.iter().any(|&(p, _)| p == obj)
    }
}

// ---- running one case -------------------------------------------------------------------

/// What opening a damaged copy gave.
#[derive(Debug)]
enum Outcome {
    Opened(RecoveryReport),
    Refused(PoolError),
}

impl Outcome {
    fn opened(&self) -> bool {
        matches!(self, Outcome::Opened(_))
    }
}

/// A reusable copy of a base: cases change it, and after each case only the bytes the
/// case or the pool wrote are restored.
struct Work<'b> {
    base: &'b Base,
    buf: Vec<u64>,
    changed: Vec<(usize, usize)>,
}

impl<'b> Work<'b> {
    fn new(base: &'b Base) -> Self {
        Work {
            base,
            buf: base.words.clone(),
            changed: Vec::new(),
        }
    }

    fn read(&self, off: usize, len: usize) -> Vec<u8> {
        bytes_of_words(&self.buf[off / 8..(off + len).div_ceil(8)])[off % 8..off % 8 + len].to_vec()
    }

    fn put(&mut self, off: usize, data: &[u8]) {
        let mut b = bytes_of_words(&self.buf[off / 8..(off + data.len()).div_ceil(8)]);
        b[off % 8..off % 8 + data.len()].copy_from_slice(data);
        let w = words_of_bytes(&b);
        self.buf[off / 8..off / 8 + w.len()].copy_from_slice(&w);
        self.changed.push((off, data.len()));
    }

    fn put_u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_le_bytes());
    }

    fn flip(&mut self, bit: usize) {
        let off = bit / 8;
        let b = self.read(off, 1)[0] ^ (1 << (bit % 8));
        self.put(off, &[b]);
    }

    fn restore(&mut self, ranges: &[(usize, usize)]) {
        for &(off, len) in ranges.iter().chain(&self.changed) {
            let (a, b) = (off / 8, (off + len).div_ceil(8).min(self.buf.len()));
            self.buf[a..b].copy_from_slice(&self.base.words[a..b]);
        }
        self.changed.clear();
    }

    /// Opens the copy (the first `len` bytes of it), runs `after_open` on the media
    /// right after recovery, then uses the pool; fails the test on a panic, an access
    /// outside the media, or a pool that opened but does not work.
    fn run(
        &mut self,
        what: &str,
        len: usize,
        after_open: &dyn Fn(&Guarded) -> Result<(), String>,
    ) -> Outcome {
        let g = Guarded::new(&mut self.buf, len);
        let r = catch_unwind(AssertUnwindSafe(|| open_and_use(&g, after_open)));
        let written = std::mem::take(&mut *g.written.lock().unwrap());
        let outside = g.outside.load(Ordering::SeqCst);
        drop(g);
        self.restore(&written);
        assert!(
            !outside,
            "{} / {what}: an access outside the media",
            self.base.name
        );
        match r {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => panic!("{} / {what}: {e}", self.base.name),
            Err(p) => panic!(
                "{} / {what}: panicked: {}",
                self.base.name,
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            ),
        }
    }

    fn open(&mut self, what: &str) -> Outcome {
        self.run(what, POOL, &|_| Ok(()))
    }

    /// Opens the copy (then uses it, as [`Work::run`]); returns the outcome and, if it
    /// opened, the pool's bytes right after recovery with the runtime area zeroed (what
    /// recovery made of the heap, to compare).
    fn recover(&mut self, what: &str) -> (Outcome, Vec<u8>) {
        let a = self.base.area;
        let image = Mutex::new(Vec::new());
        let o = self.run(what, POOL, &|g| {
            let mut b = g.bytes(0, POOL);
            b[a.off..a.off + a.len].fill(0);
            *image.lock().unwrap() = b;
            Ok(())
        });
        (o, image.into_inner().unwrap())
    }
}

/// Fails with the first byte where two recovered images (runtime area zeroed) differ.
fn same_image(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: the pool did not open");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: recovered byte {i:#x} is {:#x}, expected {:#x}",
            got[i], want[i]
        );
    }
}

impl Outcome {
    /// The report of a pool that opened; fails the test otherwise.
    fn report(self, what: &str) -> RecoveryReport {
        match self {
            Outcome::Opened(r) => r,
            Outcome::Refused(e) => panic!("{what}: refused: {e}"),
        }
    }
}

fn open_and_use(
    g: &Guarded,
    after_open: &dyn Fn(&Guarded) -> Result<(), String>,
) -> Result<Outcome, String> {
    let (pool, _, report) = match Pool::open(g, &OpenOptions::default()) {
        Ok(x) => x,
        Err(e) => return Ok(Outcome::Refused(e)),
    };
    after_open(g).map_err(|e| format!("{e} ({report:?})"))?;
    pool.heap()
        .check()
        .map_err(|e| format!("opened ({report:?}) but the heap check fails: {e}"))?;
    use_pool(&pool).map_err(|e| format!("opened ({report:?}) but {e}"))?;
    pool.coalesce();
    pool.heap()
        .check()
        .map_err(|e| format!("heap check after using the pool: {e}"))?;
    let m = pool.close();
    let (again, _, r2) = Pool::open(m, &OpenOptions::default())
        .map_err(|e| format!("closed pool does not reopen: {e}"))?;
    if r2.groups_replayed != 0 || r2.bad_entries != 0 {
        return Err(format!("a closed pool left work for recovery: {r2:?}"));
    }
    again
        .heap()
        .check()
        .map_err(|e| format!("heap check after reopening: {e}"))?;
    Ok(Outcome::Opened(report))
}

/// Reads every object the root names, then commits a transaction on every lane and an
/// allocation or free in the spare slot.
fn use_pool(pool: &Pool<&Guarded>) -> Result<(), String> {
    let objs: Vec<u64> = match pool.root::<Root>() {
        Some(root) => {
            let fields = pool
                .read(root)
                .map_err(|e| format!("the root reads as {e}"))?;
            // A forged root may name any object, whose "spare slot" is then any word:
            // free it only if it is an object other than the root.
            let spare = fields[SPARE];
            let free_spare = spare != root.raw() && pool.heap().info(spare).is_ok();
            pool.transaction(|tx| {
                if free_spare {
                    tx.free(PPtr::<u8>::from_raw(spare))?;
                    tx.write(root, SPARE * 8, &0u64)
                } else {
                    let p = tx.alloc_bytes(333, 8, 77, &[3; 333])?;
                    tx.write(root, SPARE * 8, &p.raw())
                }
            })
            .map_err(|e| format!("the spare slot's transaction failed: {e}"))?;
            fields
                .iter()
                .copied()
                .filter(|&f| pool.heap().info(f).is_ok())
                .collect()
        }
        None => Vec::new(),
    };
    for &o in &objs {
        let size = pool.heap().info(o).map_err(|e| e.to_string())?.size as usize;
        let mut b = vec![0u8; size.min(1 << 18)];
        pool.read_bytes(PPtr::<u8>::from_raw(o), 0, &mut b)
            .map_err(|e| format!("object {o:#x} reads as {e}"))?;
    }
    for lane in 0..LANES as usize {
        pool.transaction_in(lane, |tx| {
            for &o in &objs {
                let p = PPtr::<u8>::from_raw(o);
                if tx.read_bytes(p, 0, &mut [0u8; 8]).is_ok() {
                    tx.write_bytes(p, 0, &[lane as u8; 8])?;
                }
            }
            let t = tx.alloc_bytes(40, 8, 78, &[lane as u8; 40])?;
            tx.free(t)
        })
        .map_err(|e| format!("a transaction on lane {lane} failed: {e}"))?;
    }
    Ok(())
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn the_valid_bases_open_and_work() {
    for b in Base::all() {
        let mut w = Work::new(b);
        let o = w.open("unchanged");
        assert!(o.opened(), "{}: {o:?}", b.name);
        assert!(b.recs.len() > 20, "{}: {} records", b.name, b.recs.len());
        let parts = b.recs.windows(2).any(|p| {
            p[0].lane == p[1].lane && record::peek(&p[0].bytes).seq == record::peek(&p[1].bytes).seq
        });
        assert!(parts, "{}: a multi-part transaction is in the log", b.name);
    }
}

/// Runs `cases` cases over the bases in turn, each from its own seeded generator.
fn cases(
    seed: u64,
    cases: usize,
    mut case: impl FnMut(usize, &mut Rng, &mut Work<'_>) -> Option<Outcome>,
) -> (usize, usize) {
    let mut works: Vec<Work<'_>> = Base::all().iter().map(Work::new).collect();
    let (mut opened, mut refused) = (0, 0);
    for i in 0..cases {
        let n = works.len();
        let w = &mut works[i % n];
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match case(i, &mut rng, w) {
            Some(Outcome::Opened(_)) => opened += 1,
            Some(Outcome::Refused(_)) => refused += 1,
            None => w.restore(&[]),
        }
    }
    (opened, refused)
}

/// Byte ranges of a record's structure (header fields, group headers, entry headers),
/// relative to its start.
fn record_fields(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut f = vec![(0, 8), (8, 4), (12, 2), (14, 2), (16, 8), (24, 4), (28, 4)];
    let h = record::peek(bytes);
    let mut at = record::HEADER;
    for _ in 0..h.ngroups {
        if at + 16 > bytes.len() {
            break;
        }
        f.extend([(at, 8), (at + 8, 1), (at + 9, 1), (at + 10, 2)]);
        let kind = bytes[at + 8];
        let n = u16::from_le_bytes([bytes[at + 10], bytes[at + 11]]) as usize;
        at += 16;
        for _ in 0..n {
            let (hdr, len_at) = if kind == G_REL { (8, 4) } else { (16, 8) };
            if at + hdr > bytes.len() {
                break;
            }
            f.extend([(at, len_at), (at + len_at, 4)]);
            let len = u32::from_le_bytes(bytes[at + len_at..at + len_at + 4].try_into().unwrap())
                as usize;
            at += hdr + len.next_multiple_of(8);
        }
    }
    f
}

/// Re-seals a record (valid check again) keeping its header fields, for lane `lane`.
fn reseal(bytes: &mut Vec<u8>, lane: u32, salt: u64) {
    let h = record::peek(bytes);
    if h.flags & F_PAD != 0 {
        *bytes = record::pad(h.lines, h.seq, lane, salt).to_vec();
    } else {
        record::seal(bytes, h.seq, h.ngroups.min(0xFFFF), h.flags, lane, salt);
    }
}

#[test]
fn bit_flips_anywhere_in_the_runtime_area_give_errors_or_working_pools() {
    let (opened, _) = cases(0xF1, 1500, |i, rng, w| {
        let a = w.base.area;
        for _ in 0..=rng.below(4) {
            w.flip(a.off * 8 + rng.below(a.len as u64 * 8) as usize);
        }
        Some(w.open(&format!("runtime-area flip case {i}")))
    });
    assert!(
        opened > 1400,
        "flips outside the area header still open ({opened})"
    );
}

#[test]
fn bit_flips_in_records_tails_and_headers_give_errors_or_working_pools() {
    let (opened, refused) = cases(0xF2, 2000, |i, rng, w| {
        let b = w.base;
        let a = b.area;
        let what = match rng.below(10) {
            0 => {
                let k = rng.below(u64::from(a.lanes)) as u32;
                w.flip(a.tail_off(k) * 8 + rng.below(64) as usize);
                "tail"
            }
            1 => {
                w.flip(a.off * 8 + rng.below(40 * 8) as usize);
                "area header or sequence word"
            }
            _ => {
                // A field of a record; half the time the check is made valid again, so
                // the damaged structure itself reaches the parser and the replay.
                let r = &b.recs[rng.below(b.recs.len() as u64) as usize];
                let mut bytes = r.bytes.clone();
                let fields = record_fields(&bytes);
                for _ in 0..=rng.below(2) {
                    let (off, len) = fields[rng.below(fields.len() as u64) as usize];
                    let bit = off * 8 + rng.below(len as u64 * 8) as usize;
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                if rng.chance(1, 2) {
                    reseal(&mut bytes, r.lane, b.salt);
                }
                w.put(a.log_off(r.lane) + r.pos, &bytes);
                "record field"
            }
        };
        Some(w.open(&format!("{what} flip case {i}")))
    });
    assert!(
        opened > 1000 && refused > 0,
        "opened {opened}, refused {refused}"
    );
}

// ---- forged records -----------------------------------------------------------------------

/// A range the open must leave as the unmodified pool's recovery left it.
type Unchanged = Vec<(u64, u64)>;

/// Puts sealed records at lane `lane`'s end of scan (where recovery reads on), if they
/// fit in the free space there: before the end of the lane, and, when the lane has
/// wrapped, a line short of its tail (so they overwrite none of the records before
/// them).
fn append(w: &mut Work<'_>, lane: u32, parts: &[Vec<u8>]) -> bool {
    let a = w.base.area;
    let head = w.base.heads[lane as usize];
    let tail = area::decode_tail(w.base.words[a.tail_off(lane) / 8], lane, w.base.salt)
        .map_or(0, |t| t as usize);
    let end = if tail > head { tail - 64 } else { a.lane_bytes };
    if head + parts.iter().map(Vec::len).sum::<usize>() > end {
        return false;
    }
    let mut pos = a.log_off(lane) + head;
    for p in parts {
        w.put(pos, p);
        pos += p.len();
    }
    true
}

/// Checks, right after open, that no byte in `keep` (clipped to the media, the runtime
/// area left out: recovery writes there) holds anything but what the unmodified pool
/// held there before or after its own recovery: the forged bytes were not applied.
/// (Before: a forged free makes the replay skip the freed object's older data, which no
/// longer matters.)
fn unchanged<'b>(b: &'b Base, keep: &Unchanged) -> impl Fn(&Guarded) -> Result<(), String> + 'b {
    let keep = keep.clone();
    move |g: &Guarded| {
        let (ra, rb) = (b.area.off as u64, (b.area.off + b.area.len) as u64);
        let before = bytes_of_words(&b.words);
        for &(off, len) in &keep {
            let end = off.saturating_add(len).min(g.len() as u64);
            // The parts of [off, end) before and after the runtime area.
            for (s, e) in [(off, end.min(ra)), (off.max(rb), end)] {
                if s >= e {
                    continue;
                }
                let (s, e) = (s as usize, e as usize);
                let got = g.bytes(s, e - s);
                // Byte by byte: a range may straddle a live neighbour, replayed as usual.
                let odd =
                    (0..e - s).find(|&i| got[i] != b.recovered[s + i] && got[i] != before[s + i]);
                if let Some(i) = odd {
                    return Err(format!(
                        "a forged entry was applied at {s:#x}..{e:#x} (outside every live object): byte {:#x} is {:#x}",
                        s + i,
                        got[i]
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Offsets no transaction writes through a data group: metadata, free space, the ends
/// of the pool, values that overflow.
fn wild(b: &Base, rng: &mut Rng) -> u64 {
    let l = &b.layout;
    let a = &b.area;
    let picks = [
        0,
        8,
        ROOT_SLOT as u64,
        4096,
        a.off as u64,
        (a.off + area::SEQ_OFF) as u64,
        a.tail_off(1) as u64,
        a.log_off(1) as u64 + 64,
        l.chunks_off as u64,
        l.desc_off(rng.below(l.nchunks as u64) as usize) as u64 + 16,
        l.heap_off as u64,
        l.heap_end() as u64 - 64,
        l.heap_end() as u64,
        l.backup_off as u64,
        POOL as u64 - 8,
        POOL as u64,
        u64::MAX - 7,
        1 << 62,
    ];
    match rng.below(3) {
        0 => picks[rng.below(picks.len() as u64) as usize],
        1 => free_space(b, rng),
        _ => b.freed[rng.below(b.freed.len() as u64) as usize],
    }
}

/// A heap offset outside every live object (free slots, free chunks, run header arrays).
fn free_space(b: &Base, rng: &mut Rng) -> u64 {
    let l = &b.layout;
    loop {
        let off = (l.heap_off as u64 + rng.below((l.heap_end() - l.heap_off) as u64)) & !7;
        if !b.live.iter().any(|&(p, s)| off >= p && off < p + s.max(1)) {
            return off;
        }
    }
}

/// Where live object `obj`'s header is (its run's header array, or its extent's chunk
/// descriptor), read from the base's chunk table.
fn header_loc(b: &Base, obj: u64) -> u64 {
    let l = &b.layout;
    let c = l.chunk_of(obj as usize).unwrap();
    if obj == l.chunk_off(c) as u64 {
        return (l.desc_off(c) + 16) as u64;
    }
    let entry =
        |c: usize| ChunkEntry::decode(b.words[l.desc_off(c) / 8], c as u32, b.salt).unwrap();
    let head = match entry(c) {
        ChunkEntry::RunCont { head } => head as usize,
        _ => c,
    };
    let ChunkEntry::Run { class, .. } = entry(head) else {
        panic!("live object {obj:#x} is in no run")
    };
    let g = pmalloc::class::geometry(class as usize);
    let run = l.chunk_off(head) as u64;
    run + (obj - run - g.data_off as u64) / g.slot as u64 * 16
}

fn live_obj(b: &Base, rng: &mut Rng) -> (u64, u64) {
    // Skip the root (its fields name the objects the exercise uses).
    b.live[1 + rng.below(b.live.len() as u64 - 1) as usize]
}

/// A sequence number for a forged record: usually the next one, sometimes one another
/// lane already used, the largest, or 0 (never valid).
fn forged_seq(b: &Base, rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => record::peek(&b.recs[rng.below(b.recs.len() as u64) as usize].bytes).seq,
        1 => u64::MAX,
        2 => 0,
        _ => b.max_seq + 1 + rng.below(3),
    }
}

/// Seals the builder's records and copies out their parts.
fn finished(
    builder: &mut Builder,
    seq: u64,
    flags: u16,
    commit: bool,
    lane: u32,
    salt: u64,
) -> Vec<Vec<u8>> {
    let n = builder.finish(seq, flags, commit, lane, salt);
    (0..n).map(|i| builder.part(i).0.to_vec()).collect()
}

/// One forged record (possibly in parts) and the ranges it must not change.
#[allow(clippy::too_many_lines)] // one table of forgeries reads best in one place
fn forge(b: &Base, rng: &mut Rng, lane: u32) -> (Vec<Vec<u8>>, Unchanged) {
    let mut builder = Builder::new();
    let mut keep = Unchanged::new();
    let mut flags = 0;
    for _ in 0..=rng.below(3) {
        match rng.below(7) {
            0 => {
                // Data for something that is not a live object.
                let key = wild(b, rng);
                builder.group(key, G_REL, 0);
                for _ in 0..=rng.below(2) {
                    let off = rng.below(4096) as u32;
                    let data = noise(rng, 200);
                    keep.push((key.wrapping_add(u64::from(off)), data.len() as u64));
                    builder.rel(off, &data);
                }
            }
            1 => {
                // Data for a live object, running past its end (or starting far away).
                let (obj, size) = live_obj(b, rng);
                let len = 1 + rng.below(300);
                let off = match rng.below(3) {
                    0 => size.saturating_sub(rng.below(len.min(size))) + rng.below(2),
                    1 => u64::from(u32::MAX) - rng.below(300),
                    _ => size + rng.below(1 << 20),
                };
                let (off, len) = (
                    off.min(u64::from(u32::MAX)),
                    if off + len <= size {
                        size + 1 - off
                    } else {
                        len
                    },
                );
                builder.group(obj, G_REL, 0);
                builder.rel(off as u32, &random_bytes(rng, len as usize));
                keep.push((obj + off, len));
            }
            2 => {
                // Absolute entries with garbage, anywhere.
                let key = if rng.chance(1, 2) {
                    live_obj(b, rng).0
                } else {
                    wild(b, rng)
                };
                builder.group(key, G_ABS, 0);
                for _ in 0..=rng.below(3) {
                    let off = match rng.below(3) {
                        0 => header_loc(b, live_obj(b, rng).0),
                        _ => wild(b, rng),
                    };
                    let n = [8, 16, 24, 1 + rng.below(100) as usize][rng.below(4) as usize];
                    let data = random_bytes(rng, n);
                    keep.push((off, data.len() as u64));
                    builder.abs(off, &data);
                }
            }
            3 => {
                // Metadata with valid checks that contradicts the heap: a header for an
                // object (live or not) claiming any size and kind, chunk entries over
                // other spans.
                let key = if rng.chance(1, 2) {
                    live_obj(b, rng).0
                } else {
                    free_space(b, rng)
                };
                let extent = rng.chance(1, 3);
                let hdr = ObjHeader {
                    size: [8, 1 << 20, (1 << 40) - 1, rng.below(1 << 18)][rng.below(4) as usize],
                    type_num: 3,
                    gen: rng.below(4) as u32,
                    flags: if rng.chance(3, 4) { F_ALLOCATED } else { 0 }
                        | if extent { F_EXTENT } else { 0 },
                };
                let at = if b.is_live(key) && rng.chance(2, 3) {
                    header_loc(b, key)
                } else {
                    wild(b, rng)
                };
                builder.group(key, G_ABS, 0);
                builder.abs(at, &hdr.to_bytes(key, b.salt));
                for _ in 0..rng.below(4) {
                    let l = &b.layout;
                    let c = rng.below(l.nchunks as u64) as u32;
                    let e = match rng.below(4) {
                        0 => ChunkEntry::Free,
                        1 => ChunkEntry::Extent {
                            len: 1 + rng.below(4) as u32,
                        },
                        2 => ChunkEntry::ExtentCont {
                            head: rng.below(u64::from(c).max(1)) as u32,
                        },
                        _ => ChunkEntry::Run {
                            class: rng.below(48) as u8,
                            len: 1,
                        },
                    };
                    builder.abs(
                        l.desc_off(c as usize) as u64,
                        &e.encode(c, b.salt).to_le_bytes(),
                    );
                }
            }
            4 => {
                // The root pointer aimed at anything.
                let v = match rng.below(3) {
                    0 => live_obj(b, rng).0,
                    _ => wild(b, rng),
                };
                builder.group(ROOT_SLOT as u64, G_ABS, 0);
                builder.abs(ROOT_SLOT as u64, &v.to_le_bytes());
            }
            5 => {
                // Old bytes of an in-place transaction that never committed (rolled back:
                // inside a live object they apply, outside they must not).
                flags = F_UNDO;
                let (obj, size) = live_obj(b, rng);
                let off = rng.below(size + 64);
                let len = (1 + rng.below(64)).min(u64::from(u32::MAX) - off);
                builder.group(obj, G_REL, 0);
                builder.rel(off as u32, &random_bytes(rng, len as usize));
                if off + len > size {
                    keep.push((obj + off, len));
                }
            }
            _ => {
                // Many groups: the record splits in parts, only the last commits.
                for _ in 0..50 {
                    let key = wild(b, rng);
                    builder.group(key, G_REL, 0);
                    let off = rng.below(64) as u32;
                    keep.push((key.wrapping_add(u64::from(off)), 8));
                    builder.rel(off, &rng.next_u64().to_le_bytes());
                }
            }
        }
    }
    let seq = forged_seq(b, rng);
    let commit = flags & F_UNDO == 0 && rng.chance(7, 8);
    let mut parts = finished(&mut builder, seq, flags, commit, lane, b.salt);
    if parts.len() > 1 && rng.chance(1, 4) {
        // A later part under another number: the transaction has no commit record.
        let last = parts.len() - 1;
        let h = record::peek(&parts[last]);
        record::seal(
            &mut parts[last],
            seq.wrapping_add(1),
            h.ngroups,
            h.flags,
            lane,
            b.salt,
        );
    }
    (parts, keep)
}

/// The groups of forged records, for failure messages.
fn describe(parts: &[Vec<u8>], lane: u32, salt: u64) -> String {
    let mut out = Vec::new();
    for p in parts {
        let h = record::peek(p);
        let groups = match record::parse(p, lane, salt) {
            Ok(r) => r
                .groups()
                .iter()
                .map(|g| {
                    let e: Vec<String> = g
                        .entries()
                        .map(|e| format!("{:#x}+{}", e.off, e.data.len()))
                        .collect();
                    format!(
                        "{}{:#x}[{}]",
                        if g.kind == G_ABS { "abs " } else { "" },
                        g.key,
                        e.join(" ")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("{e:?}"),
        };
        out.push(format!(
            "seq {} flags {} lane {lane}: {groups}",
            h.seq, h.flags
        ));
    }
    out.join("; ")
}

#[test]
fn forged_records_with_valid_checks_apply_only_inside_live_objects() {
    let (opened, _) = cases(0xF3, 1600, |i, rng, w| {
        let b = w.base;
        let lane = rng.below(u64::from(b.area.lanes)) as u32;
        let (parts, keep) = forge(b, rng, lane);
        if !append(w, lane, &parts) {
            return None;
        }
        let what = format!("forged record case {i}: {}", describe(&parts, lane, b.salt));
        Some(w.run(&what, POOL, &unchanged(b, &keep)))
    });
    assert!(opened > 1000, "forged records open as pools ({opened})");
}

/// The header bytes the unmodified pool's recovery left at `obj`'s header location,
/// decoded.
fn header_of(b: &Base, obj: u64) -> (u64, ObjHeader) {
    let at = header_loc(b, obj);
    let mut raw = [0u8; 16];
    raw.copy_from_slice(&b.recovered[at as usize..at as usize + 16]);
    let HeaderState::Valid(h) = ObjHeader::decode_bytes(&raw, obj, b.salt) else {
        panic!("live object {obj:#x} without a valid header")
    };
    (at, h)
}

#[test]
fn data_for_freed_objects_is_refused_or_superseded_by_the_free() {
    cases(0xF4, 400, |i, rng, w| {
        let b = w.base;
        let lane = rng.below(u64::from(b.area.lanes)) as u32;
        let mut builder = Builder::new();
        let mut keep = Unchanged::new();
        let by_workload = rng.chance(1, 2);
        let obj = if by_workload {
            // Freed by the workload: no object there (and no free later in the log).
            b.freed[rng.below(b.freed.len() as u64) as usize]
        } else {
            // Live, freed by a forged free committed first in the same record: the data
            // is superseded, as a transaction that writes and frees an object logs it.
            let (obj, _) = live_obj(b, rng);
            let (at, h) = header_of(b, obj);
            let freed = ObjHeader {
                gen: h.gen + 1,
                flags: h.flags & !F_ALLOCATED,
                ..h
            };
            builder.group(obj, G_ABS, 0);
            builder.abs(at, &freed.to_bytes(obj, b.salt));
            let l = &b.layout;
            if h.flags & F_EXTENT != 0 {
                let c = l.chunk_of(obj as usize).unwrap();
                let span = h.size.div_ceil(pmalloc::layout::CHUNK as u64) as usize;
                for k in c..c + span {
                    builder.abs(l.desc_off(k) as u64, &0u64.to_le_bytes());
                }
            }
            obj
        };
        builder.group(obj, G_REL, 0);
        let n = 1 + rng.below(3) as usize;
        for _ in 0..n {
            let off = rng.below(64) as u32;
            let data = noise(rng, 64);
            keep.push((obj + u64::from(off), data.len() as u64));
            builder.rel(off, &data);
        }
        let parts = finished(&mut builder, b.max_seq + 1, 0, true, lane, b.salt);
        if !append(w, lane, &parts) {
            return None;
        }
        let what = format!(
            "freed-object record case {i}: {}",
            describe(&parts, lane, b.salt)
        );
        let o = w.run(&what, POOL, &unchanged(b, &keep));
        let Outcome::Opened(r) = &o else {
            panic!("{what}: {o:?}")
        };
        if by_workload {
            let want = LogDamage {
                lane,
                pos: b.heads[lane as usize],
                group: 0,
                key: obj,
                fault: LogFault::NoObject,
            };
            assert_eq!(r.damage, [want], "{what}");
            assert_eq!(r.bad_entries, n as u64, "{what}");
        } else {
            // The data beside the free, and the object's older data in the log.
            assert!(r.damage.is_empty(), "{what}: {r:?}");
            assert!(r.groups_stale > b.report.groups_stale, "{what}: {r:?}");
        }
        Some(o)
    });
}

#[test]
fn sequence_numbers_out_of_order_or_shared_across_lanes_give_errors_or_working_pools() {
    cases(0xF5, 600, |i, rng, w| {
        let b = w.base;
        let r = &b.recs[rng.below(b.recs.len() as u64) as usize];
        let other = &b.recs[rng.below(b.recs.len() as u64) as usize];
        let mut bytes = r.bytes.clone();
        let h = record::peek(&bytes);
        let seq = match rng.below(6) {
            0 => record::peek(&other.bytes).seq,
            1 => h.seq.saturating_sub(1 + rng.below(5)),
            2 => h.seq + 1 + rng.below(5),
            3 => u64::MAX - rng.below(2),
            4 => 0,
            _ => b.max_seq + 1,
        };
        let lane = if rng.chance(1, 3) {
            rng.below(u64::from(b.area.lanes)) as u32
        } else {
            r.lane
        };
        if h.flags & F_PAD != 0 {
            bytes = record::pad(h.lines, seq, lane, b.salt).to_vec();
        } else {
            record::seal(&mut bytes, seq, h.ngroups, h.flags, lane, b.salt);
        }
        if lane == r.lane {
            w.put(b.area.log_off(lane) + r.pos, &bytes);
        } else if !append(w, lane, &[bytes]) {
            return None;
        }
        Some(w.open(&format!("sequence case {i}")))
    });
}

#[test]
fn forged_tails_area_headers_and_sequence_words_give_errors_or_working_pools() {
    // Area headers with valid checks for other lane counts, from scratch formats.
    let formats: Vec<(u32, Vec<u8>)> = (1..=6u32)
        .map(|lanes| {
            let b = &Base::all()[0];
            let m = SimMedia::new(POOL);
            if let Ok(a) = Area::compute(b.area.off, b.area.len, lanes) {
                a.format(&m, b.salt);
            }
            (
                lanes,
                m.durable_image()[b.area.off..b.area.off + 40].to_vec(),
            )
        })
        .collect();
    cases(0xF6, 600, |i, rng, w| {
        let b = w.base;
        let a = b.area;
        let what = match rng.below(3) {
            0 => {
                let k = rng.below(u64::from(a.lanes)) as u32;
                let r = &b.recs[rng.below(b.recs.len() as u64) as usize];
                let pos = match rng.below(6) {
                    0 => a.lane_bytes as u64,
                    1 => a.lane_bytes as u64 - 64,
                    2 => r.pos as u64 + 64 * rng.below(3),
                    3 => rng.below(a.lane_bytes as u64),
                    4 => rng.below(1 << 48),
                    _ => (1 << 47) + 64,
                };
                w.put_u64(a.tail_off(k), area::encode_tail(pos, k, b.salt));
                "tail"
            }
            1 => {
                let (lanes, bytes) = &formats[rng.below(formats.len() as u64) as usize];
                w.put(a.off, &bytes[..32]);
                if *lanes == LANES {
                    return None;
                }
                "area header"
            }
            _ => {
                let v = match rng.below(5) {
                    0 => 0,
                    1 => 1 << 16,
                    2 => b.max_seq & !0xFFFF,
                    3 => !0xFFFF,
                    _ => rng.next_u64() & !0xFFFF,
                };
                w.put_u64(a.off + area::SEQ_OFF, area::encode_seq_word(v, b.salt));
                "sequence word"
            }
        };
        Some(w.open(&format!("forged {what} case {i}")))
    });
}

#[test]
fn truncated_pools_are_refused_by_the_heap_with_the_lengths() {
    let b = &Base::all()[1];
    let a = b.area;
    let l = b.layout;
    let mut rng = Rng::new(0xF7);
    let mut lens = vec![
        0,
        8,
        4096,
        a.off,
        a.off + 100,
        a.log_off(1),
        l.chunks_off,
        l.heap_off,
        MIN_POOL - 8,
        MIN_POOL,
        MIN_POOL + 4096,
        POOL - 4096 - 8,
        POOL - 8,
    ];
    lens.extend((0..80).map(|_| rng.below(POOL as u64 - 4096) as usize & !7));
    let mut w = Work::new(b);
    for len in lens {
        let o = w.run(&format!("truncated to {len}"), len, &|_| Ok(()));
        let want = if len < MIN_POOL {
            OpenError::TooSmall { len }
        } else {
            OpenError::SizeMismatch {
                header: POOL,
                media: len,
            }
        };
        assert!(
            matches!(o, Outcome::Refused(PoolError::Open(e)) if e == want),
            "truncated to {len}: {o:?}, expected {want:?}"
        );
    }
}

#[test]
fn random_bytes_in_the_runtime_area_give_errors_or_working_pools() {
    cases(0xF8, 300, |i, rng, w| {
        let a = w.base.area;
        let (off, len, what) = match rng.below(5) {
            0 => (a.off, a.len, "the whole area"),
            1 => {
                let k = rng.below(u64::from(a.lanes)) as u32;
                (a.log_off(k), a.lane_bytes, "a lane log")
            }
            2 => (a.off + area::TAILS_OFF, 4096, "the tails"),
            3 => (a.off + 40, 24, "after the sequence word"),
            _ => {
                let line = rng.below((a.len / 64) as u64) as usize;
                (
                    a.off + line * 64,
                    64 * (1 + rng.below(8) as usize),
                    "some lines",
                )
            }
        };
        let len = len.min(a.off + a.len - off);
        let data = random_bytes(rng, len);
        w.put(off, &data);
        Some(w.open(&format!("random bytes in {what} case {i}")))
    });
}

// ---- targeted cases: the exact fault, and nothing else changed ------------------------

/// Live run objects other than the root (whose header lives in a run's header array).
fn run_objects(b: &Base) -> Vec<(u64, u64)> {
    let l = &b.layout;
    b.live[1..]
        .iter()
        .copied()
        .filter(|&(p, s)| s >= 8 && l.chunk_off(l.chunk_of(p as usize).unwrap()) as u64 != p)
        .collect()
}

/// One forged group: what it is called, its record's flags, its key and kind, its
/// entries (offsets relative to the key for `G_REL`), and the fault recovery must
/// report for it.
struct Forged {
    name: &'static str,
    flags: u16,
    key: u64,
    kind: u8,
    entries: Vec<(u64, Vec<u8>)>,
    fault: LogFault,
}

/// Groups whose record passes its check but that no transaction writes, one per fault
/// (and per way to reach it).
#[allow(clippy::too_many_lines)] // one table, a row per fault, reads best in one place
fn forged_cases(b: &Base) -> Vec<Forged> {
    let runs = run_objects(b);
    let ((a, a_size), (other, _)) = (runs[0], runs[1]);
    let (a_at, a_hdr) = header_of(b, a);
    let (other_at, other_hdr) = header_of(b, other);
    let freed = b.freed[0];
    let l = b.layout;
    let c = l.chunk_of(a as usize).unwrap();
    // `a`'s run: its chunk's descriptor, and its start (chunk-aligned: an extent's key).
    let (a_desc, a_run) = (l.desc_off(c) as u64, l.chunk_off(c) as u64);
    let root = ROOT_SLOT as u64;
    let salt = b.salt;
    let big = ObjHeader {
        size: 1 << 20,
        ..a_hdr
    };
    let freed_big = ObjHeader {
        gen: a_hdr.gen + 1,
        flags: 0,
        ..big
    };
    let extent = ObjHeader {
        size: CHUNK as u64,
        type_num: 3,
        gen: 1,
        flags: F_ALLOCATED | F_EXTENT,
    };
    let extent_word = ChunkEntry::Extent { len: 1 }.encode(c as u32, salt);
    let undo_free = ObjHeader {
        gen: a_hdr.gen + 1,
        flags: 0,
        ..a_hdr
    };
    let v = |b: &[u8]| b.to_vec();
    let case = |name, flags, key, kind, entries, fault| Forged {
        name,
        flags,
        key,
        kind,
        entries,
        fault,
    };
    vec![
        case(
            "data running past its object's end",
            0,
            a,
            G_REL,
            vec![(a_size - 4, v(&[0xA5; 16]))],
            LogFault::OutsideObject {
                offset: a + a_size - 4,
                len: 16,
            },
        ),
        case(
            "data 4 GiB past its object",
            0,
            a,
            G_REL,
            vec![(0, v(&[0xA5; 8])), (u64::from(u32::MAX - 7), v(&[0xA5; 8]))],
            LogFault::OutsideObject {
                offset: a + u64::from(u32::MAX - 7),
                len: 8,
            },
        ),
        case(
            "data for a freed object",
            0,
            freed,
            G_REL,
            vec![(0, v(&[0xA5; 8]))],
            LogFault::NoObject,
        ),
        case(
            "data keyed by the root slot",
            0,
            root,
            G_REL,
            vec![(0, v(&[0xA5; 8]))],
            LogFault::NoObject,
        ),
        case(
            "a 24-byte header",
            0,
            a,
            G_ABS,
            vec![(a_at, v(&[0; 24]))],
            LogFault::MetaShape { offset: a_at },
        ),
        case(
            "a header and a word outside the chunk table",
            0,
            a,
            G_ABS,
            vec![(a_at, v(&a_hdr.to_bytes(a, salt))), (root, v(&[0; 8]))],
            LogFault::MetaShape { offset: root },
        ),
        case(
            "a valid header at another object's header location",
            0,
            a,
            G_ABS,
            vec![(other_at, v(&a_hdr.to_bytes(a, salt)))],
            LogFault::MetaPlacement { offset: other_at },
        ),
        case(
            "a run object's header with extent chunk words",
            0,
            a,
            G_ABS,
            vec![(a_at, v(&a_hdr.to_bytes(a, salt))), (a_desc, v(&[0; 8]))],
            LogFault::MetaPlacement { offset: a_desc },
        ),
        case(
            "an extent over a run's chunk",
            0,
            a_run,
            G_ABS,
            vec![
                (a_desc + 16, v(&extent.to_bytes(a_run, salt))),
                (a_desc, v(&extent_word.to_le_bytes())),
            ],
            LogFault::MetaPlacement { offset: a_desc },
        ),
        case(
            "extent words for the chunk after the key's",
            0,
            a_run,
            G_ABS,
            vec![(a_desc + 16, v(&[0; 16])), (a_desc + 32, v(&[0; 8]))],
            LogFault::MetaPlacement {
                offset: a_desc + 32,
            },
        ),
        case(
            "another object's header at this one's location",
            0,
            a,
            G_ABS,
            vec![(a_at, v(&other_hdr.to_bytes(other, salt)))],
            LogFault::MetaHeader { offset: a_at },
        ),
        case(
            "a header larger than its slot",
            0,
            a,
            G_ABS,
            vec![(a_at, v(&big.to_bytes(a, salt)))],
            LogFault::MetaHeader { offset: a_at },
        ),
        case(
            "a free header larger than its slot",
            0,
            a,
            G_ABS,
            vec![(a_at, v(&freed_big.to_bytes(a, salt)))],
            LogFault::MetaHeader { offset: a_at },
        ),
        case(
            "a root naming a freed object",
            0,
            root,
            G_ABS,
            vec![(root, v(&freed.to_le_bytes()))],
            LogFault::BadRoot { value: freed },
        ),
        case(
            "a root pointer of 16 bytes",
            0,
            root,
            G_ABS,
            vec![(root, v(&[0; 16]))],
            LogFault::MetaShape { offset: root },
        ),
        case(
            "metadata in an undo record",
            F_UNDO,
            a,
            G_ABS,
            vec![(a_at, v(&undo_free.to_bytes(a, salt)))],
            LogFault::UndoMetadata,
        ),
    ]
}

#[test]
fn forged_groups_are_refused_with_their_exact_fault_and_change_nothing_else() {
    for b in Base::all() {
        let mut w = Work::new(b);
        let (o, want) = w.recover("unchanged");
        assert!(o.report("unchanged").damage.is_empty());
        for (i, case) in forged_cases(b).iter().enumerate() {
            let lane = (i % LANES as usize) as u32;
            let mut builder = Builder::new();
            builder.group(case.key, case.kind, 0);
            for (off, data) in &case.entries {
                if case.kind == G_REL {
                    builder.rel(*off as u32, data);
                } else {
                    builder.abs(*off, data);
                }
            }
            let commit = case.flags & F_UNDO == 0;
            let parts = finished(
                &mut builder,
                b.max_seq + 1,
                case.flags,
                commit,
                lane,
                b.salt,
            );
            assert!(append(&mut w, lane, &parts), "{}: no room", case.name);
            let what = format!("{}: {}", b.name, case.name);
            let (o, got) = w.recover(&what);
            let r = o.report(&what);
            let expect = LogDamage {
                lane,
                pos: b.heads[lane as usize],
                group: 0,
                key: case.key,
                fault: case.fault,
            };
            assert_eq!(r.damage, [expect], "{what}");
            assert_eq!(r.bad_entries, case.entries.len() as u64, "{what}");
            // Refused: the pool recovers exactly as without the forged record.
            same_image(&what, &got, &want);
        }
    }
}

/// Ways to damage a record so that its lane's scan must end there.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// A flipped bit in its last byte (the check fails).
    Flip,
    /// Its last line not the one sealed (a torn append; for a one-line record, its
    /// groups).
    Torn,
    /// A length in lines past the end of the log (the scan does not read it).
    HugeLines,
    /// 49 groups, resealed: the check passes, the structure does not.
    TooManyGroups,
    /// Its first entry's length near 4 GiB, resealed.
    HugeEntry,
    /// Its first group of kind 9, resealed.
    BadKind,
    /// An unknown flag, resealed.
    UnknownFlag,
    /// Sequence number 0, resealed.
    SeqZero,
    /// A sequence number below the lane's previous record's, resealed.
    SeqBackwards,
}

impl Cut {
    const ALL: [Cut; 9] = [
        Cut::Flip,
        Cut::Torn,
        Cut::HugeLines,
        Cut::TooManyGroups,
        Cut::HugeEntry,
        Cut::BadKind,
        Cut::UnknownFlag,
        Cut::SeqZero,
        Cut::SeqBackwards,
    ];
}

fn cut(r: &ScannedRecord, how: Cut, prev_seq: Option<u64>, salt: u64) -> Option<Vec<u8>> {
    let mut p = r.bytes.clone();
    let h = record::peek(&p);
    let n = p.len();
    let first_entry_len = record::HEADER + 16 + 4;
    match how {
        Cut::Flip => p[n - 1] ^= 0x10,
        Cut::Torn => {
            // Its last line (for a one-line record, its groups) as it was before the
            // append: anything but what was sealed.
            let from = if n > 64 { n - 64 } else { 32 };
            for x in &mut p[from..] {
                *x = !*x;
            }
        }
        Cut::HugeLines => p[8..12].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes()),
        Cut::TooManyGroups => record::seal(&mut p, h.seq, 49, h.flags, r.lane, salt),
        Cut::HugeEntry | Cut::BadKind => {
            if h.ngroups == 0 {
                return None;
            }
            if let Cut::HugeEntry = how {
                // The length field of the first entry: REL at +4, ABS at +8.
                let at = if p[record::HEADER + 8] == G_REL {
                    first_entry_len
                } else {
                    first_entry_len + 4
                };
                p[at..at + 4].copy_from_slice(&(u32::MAX - 3).to_le_bytes());
            } else {
                p[record::HEADER + 8] = 9;
            }
            record::seal(&mut p, h.seq, h.ngroups, h.flags, r.lane, salt);
        }
        Cut::UnknownFlag => record::seal(&mut p, h.seq, h.ngroups, h.flags | 0x100, r.lane, salt),
        Cut::SeqZero => record::seal(&mut p, 0, h.ngroups, h.flags, r.lane, salt),
        Cut::SeqBackwards => {
            let prev = prev_seq.filter(|&s| s > 1)?;
            record::seal(&mut p, prev - 1, h.ngroups, h.flags, r.lane, salt);
        }
    }
    Some(p)
}

#[test]
fn damaged_records_end_their_lane_exactly_like_a_clean_end_of_log() {
    for b in Base::all() {
        let mut w = Work::new(b);
        let mut tried = 0;
        for (i, r) in b.recs.iter().enumerate() {
            // Each lane's first and last records, and every fifth.
            let first = i == 0 || b.recs[i - 1].lane != r.lane;
            let last = b.recs.get(i + 1).is_none_or(|n| n.lane != r.lane);
            if !(first || last || i % 5 == 0) {
                continue;
            }
            let prev_seq = (!first).then(|| record::peek(&b.recs[i - 1].bytes).seq);
            let at = b.area.log_off(r.lane) + r.pos;
            w.put(at, &[0; 64]);
            let what = format!("{}: record {i} (lane {} at {:#x})", b.name, r.lane, r.pos);
            let (o, want) = w.recover(&format!("{what} cut cleanly"));
            let clean = o.report(&what);
            for how in Cut::ALL {
                let Some(bytes) = cut(r, how, prev_seq, b.salt) else {
                    continue;
                };
                w.put(at, &bytes);
                let what = format!("{what} {how:?}");
                let (o, got) = w.recover(&what);
                let rep = o.report(&what);
                assert_eq!(rep.records, clean.records, "{what}: {rep:?}");
                assert_eq!(rep.committed, clean.committed, "{what}: {rep:?}");
                assert_eq!(rep.damage, clean.damage, "{what}");
                same_image(&what, &got, &want);
                tried += 1;
            }
        }
        assert!(tried > 100, "{}: {tried} cases", b.name);
    }
}

#[test]
fn a_damaged_tail_word_is_counted_and_its_lane_scanned_from_the_start() {
    for b in Base::all() {
        let mut w = Work::new(b);
        let a = b.area;
        for k in 0..a.lanes {
            let good = area::decode_tail(b.words[a.tail_off(k) / 8], k, b.salt).unwrap();
            for (how, word) in [
                (
                    "a flipped bit",
                    area::encode_tail(good, k, b.salt) ^ (1 << (k * 7 % 64)),
                ),
                (
                    "past the log",
                    area::encode_tail(a.lane_bytes as u64, k, b.salt),
                ),
                ("inside a line", area::encode_tail(good + 8, k, b.salt)),
                ("another lane's", area::encode_tail(good, k + 1, b.salt)),
            ] {
                w.put_u64(a.tail_off(k), word);
                let what = format!("{}: lane {k}'s tail {how}", b.name);
                let r = w.open(&what).report(&what);
                assert_eq!(r.bad_tails, 1, "{what}: {r:?}");
            }
        }
    }
}

#[test]
fn a_damaged_area_header_is_refused_with_its_offset() {
    let b = &Base::all()[0];
    let mut w = Work::new(b);
    let a = b.area;
    for bit in (0..32 * 8).step_by(5) {
        w.flip(a.off * 8 + bit);
        let o = w.open(&format!("area header bit {bit}"));
        let want = AreaError::BadHeader {
            offset: a.off as u64,
        };
        assert!(
            matches!(o, Outcome::Refused(PoolError::Area(e)) if e == want),
            "area header bit {bit}: {o:?}"
        );
    }
}

#[test]
fn live_words_claiming_groups_a_record_lacks_change_nothing() {
    for b in Base::all() {
        let mut w = Work::new(b);
        let (_, want) = w.recover("unchanged");
        for r in &b.recs {
            let at = b.area.log_off(r.lane) + r.pos + record::LIVE_OFF;
            let h = record::peek(&r.bytes);
            let groups = if h.flags & F_UNDO != 0 { 1 } else { h.ngroups };
            let beyond = record::LIVE_MASK & !((1u64 << groups) - 1);
            w.put_u64(at, h.live | beyond);
        }
        let what = format!("{}: every live word with bits past its groups", b.name);
        let (o, got) = w.recover(&what);
        let r = o.report(&what);
        assert_eq!(
            (r.groups_replayed, r.groups_dead),
            (b.report.groups_replayed, b.report.groups_dead),
            "{what}"
        );
        same_image(&what, &got, &want);
    }
}

#[test]
fn live_words_with_a_wrong_tag_count_every_group_live() {
    for b in Base::all() {
        let mut w = Work::new(b);
        for r in &b.recs {
            let at = b.area.log_off(r.lane) + r.pos + record::LIVE_OFF;
            let h = record::peek(&r.bytes);
            w.put_u64(
                at,
                (h.live & record::LIVE_MASK) ^ (1 << 50) ^ (h.live & !record::LIVE_MASK),
            );
        }
        let what = format!("{}: every live word's tag wrong", b.name);
        let r = w.open(&what).report(&what);
        assert_eq!(r.groups_dead, 0, "{what}: {r:?}");
        assert!(
            r.groups_replayed >= b.report.groups_replayed,
            "{what}: {r:?}"
        );
    }
}
