//! `pmpool demo`: the main job. A persistent key-value store that crashes itself and
//! recovers.
//!
//! 1. Creates a pool (64 MiB) at the default location (`/dev/shm/pmem-demo.pool`, or
//!    the temporary directory without `/dev/shm`) holding a `PHashMap<u64, PString>`.
//! 2. Starts a writer process that loads the keys in transactions of 8 and reports each
//!    batch on its standard output *after* the commit returned. The writer stops itself
//!    (process exit, no cleanup) at a random fence chosen from the seed: mid-flight.
//!    By default it runs over a DRAM working copy whose `flush` writes the lines through
//!    to the file (the ADR model: what was never flushed is lost with the process);
//!    `--direct` maps the file instead (then a crash keeps every store, as a killed
//!    process does on real memory).
//! 3. Reopens the file, recovers, and verifies: every reported key present with its
//!    exact value; the batch in flight entirely present or entirely absent; no other
//!    key; the heap consistent; no leaked object. Exit 0 when all holds.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arch::{Counters, FileMedia, FileOptions, Media, MediaInfo, PersistMode, RawMedia, CACHE_LINE};
use pmalloc::OpenOptions;
use pmrt::collections::{PHashMap, PString};
use pmrt::{Error, Pool, PoolOptions};

use crate::{Outcome, PmpoolError};

const POOL_SIZE: usize = 64 << 20;
const BATCH: u64 = 8;
const LAYOUT: &str = "pmpool-demo";

/// The store's root object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, pmrt::Persistent)]
#[repr(C)]
struct Root {
    map: PHashMap<u64, PString>,
}

/// Options of `pmpool demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Pool file (default: /dev/shm/pmem-demo.pool, or the temporary directory).
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// Keys to load.
    #[arg(long, default_value_t = 20_000)]
    pub keys: u64,
    /// Seed of the keys and of the crash point (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Map the file directly instead of the ADR model (DRAM copy, flush writes through).
    #[arg(long)]
    pub direct: bool,
}

/// Options of the hidden writer process.
#[derive(Debug, clap::Args)]
pub struct WriterArgs {
    /// Pool file.
    #[arg(long)]
    pub pool: PathBuf,
    /// Keys to load.
    #[arg(long)]
    pub keys: u64,
    /// Seed.
    #[arg(long)]
    pub seed: u64,
    /// Exit without cleanup just before this fence.
    #[arg(long)]
    pub crash_at: u64,
    /// Map the file directly.
    #[arg(long)]
    pub direct: bool,
}

/// `SplitMix64`: keys and the crash point from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn default_pool() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("pmem-demo.pool")
    } else {
        std::env::temp_dir().join("pmem-demo.pool")
    }
}

fn key(seed: u64, i: u64) -> u64 {
    Rng::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

fn value(seed: u64, i: u64) -> String {
    format!(
        "value {i} of seed {seed:#x}: {}",
        "*".repeat((key(seed, i) % 40) as usize)
    )
}

fn open_file(path: &Path, create: bool) -> Result<FileMedia, PmpoolError> {
    let opts = FileOptions {
        create_len: create.then_some(POOL_SIZE),
        force_pmem: true,
        eadr: false,
    };
    FileMedia::open(path, opts).map_err(|source| PmpoolError::Map {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the demo (module docs).
pub fn run(a: &DemoArgs, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    let path = a.pool.clone().unwrap_or_else(default_pool);
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(PmpoolError::Output);
    let model = if a.direct {
        "direct (mapped file)"
    } else {
        "ADR (DRAM copy, flush writes through)"
    };
    w(
        out,
        format!(
            "pmem demo: pool {} ({} MiB), seed {seed:#x}, {} keys, model: {model}",
            path.display(),
            POOL_SIZE >> 20,
            a.keys
        ),
    )?;

    // 1. A fresh pool with an empty map.
    let _ = std::fs::remove_file(&path);
    {
        let mut opts = PoolOptions::new(LAYOUT, uuid(seed));
        opts.heap.creation_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pool =
            Pool::create(open_file(&path, true)?, &opts).map_err(|source| PmpoolError::Pool {
                path: path.clone(),
                source,
            })?;
        pool.root_or_init(|| Root {
            map: PHashMap::from_ptr(pmalloc::PPtr::NULL),
        })?;
        pool.transaction(|tx| {
            let root = pool.root::<Root>().ok_or(Error::Corrupt {
                what: "demo root",
                obj: 0,
            })?;
            let map = PHashMap::<u64, PString>::new(tx)?;
            tx.write(root, 0, &map)
        })
        .map_err(|e| PmpoolError::Tx(e.into()))?;
        drop(pool.close());
    }
    let committed = spawn_writer(a, &path, seed, out)?;
    verify(a, &path, seed, committed, out)
}

/// Step 2: runs the writer; the number of batches it reported committed.
fn spawn_writer(
    a: &DemoArgs,
    path: &Path,
    seed: u64,
    out: &mut dyn Write,
) -> Result<u64, PmpoolError> {
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(PmpoolError::Output);
    // 2. The writer, crashing itself at a random fence (about 2 per batch).
    let batches = a.keys.div_ceil(BATCH);
    let crash_at = 1 + Rng::new(seed ^ 0xC4A5).below((2 * batches).max(1));
    let exe = std::env::current_exe().map_err(|e| PmpoolError::Writer {
        what: "cannot find this program",
        source: Some(e),
    })?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["demo-writer", "--pool"])
        .arg(path)
        .args([
            "--keys",
            &a.keys.to_string(),
            "--seed",
            &seed.to_string(),
            "--crash-at",
            &crash_at.to_string(),
        ])
        .args(a.direct.then_some("--direct"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| PmpoolError::Writer {
            what: "cannot start",
            source: Some(e),
        })?;
    let stdout = child.stdout.take().ok_or(PmpoolError::Writer {
        what: "no output pipe",
        source: None,
    })?;
    let mut committed = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| PmpoolError::Writer {
            what: "reading its output",
            source: Some(e),
        })?;
        if let Some(n) = line
            .strip_prefix("committed ")
            .and_then(|n| n.parse::<u64>().ok())
        {
            committed = n;
        }
    }
    let status = child.wait().map_err(|e| PmpoolError::Writer {
        what: "waiting for it",
        source: Some(e),
    })?;
    let loaded = (committed * BATCH).min(a.keys);
    if status.code() == Some(CRASH_EXIT) {
        w(out, format!("  writer: committed {committed} of {batches} batches ({loaded} keys), then crashed at fence {crash_at} in batch {} ({:.1?})", committed + 1, started.elapsed()))?;
    } else {
        w(out, format!("  writer: committed all {committed} batches ({loaded} keys) before its crash point; exit {status}"))?;
    }

    Ok(committed)
}

/// Step 3: reopens, recovers and verifies.
fn verify(
    a: &DemoArgs,
    path: &Path,
    seed: u64,
    committed: u64,
    out: &mut dyn Write,
) -> Result<Outcome, PmpoolError> {
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(PmpoolError::Output);
    // 3. Reopen, recover, verify.
    let t = Instant::now();
    let (pool, heap_report, report) = Pool::open(
        open_file(path, false)?,
        &OpenOptions {
            layout: Some(LAYOUT),
        },
    )
    .map_err(|source| PmpoolError::Pool {
        path: path.to_path_buf(),
        source,
    })?;
    let took = t.elapsed();
    w(out, format!(
        "  reopened in {took:.1?}: recovery replayed {} transactions ({} groups, {} bytes) from {} bytes of log; {} incomplete discarded; heap records replayed {}",
        report.committed, report.groups_replayed, report.bytes_replayed, report.log_bytes, report.incomplete, heap_report.replayed
    ))?;
    let mut problems = Vec::new();
    if let Err(e) = pool.heap().check() {
        problems.push(format!("heap check: {e}"));
    }
    let root = pool.root::<Root>().ok_or(Error::Corrupt {
        what: "demo root",
        obj: 0,
    })?;
    let map = pool.read(root)?.map;
    let mut r = &pool;
    let in_flight: Vec<u64> = (committed * BATCH..((committed + 1) * BATCH).min(a.keys)).collect();
    let mut present_in_flight = 0;
    for i in 0..a.keys {
        let got = map.get(&mut r, &key(seed, i))?;
        let got = match got {
            Some(s) => Some(s.to_string(&mut r)?),
            None => None,
        };
        let expected = i < committed * BATCH;
        match (expected, in_flight.contains(&i), got) {
            (true, _, Some(v)) if v == value(seed, i) => {}
            (true, _, g) => problems.push(format!("key {i}: committed but found {g:?}")),
            (false, true, Some(v)) if v == value(seed, i) => present_in_flight += 1,
            (false, _, None) => {}
            (false, _, g) => problems.push(format!("key {i}: never committed but found {g:?}")),
        }
    }
    let len = map.len(&mut r)?;
    if len != committed * BATCH + present_in_flight {
        problems.push(format!(
            "map holds {len} entries, expected {}",
            committed * BATCH + present_in_flight
        ));
    }
    if present_in_flight != 0 && present_in_flight as usize != in_flight.len() {
        problems.push(format!(
            "the batch in flight is partly visible: {present_in_flight} of {} keys",
            in_flight.len()
        ));
    }
    // Objects: root, map head, bucket array, and per entry a string head and its bytes.
    let objects = pool.heap().objects().count() as u64;
    let want = 3 + 2 * len;
    if objects != want {
        problems.push(format!(
            "{objects} objects in the heap, expected {want} (leak or loss)"
        ));
    }
    let flight = if in_flight.is_empty() {
        "none".to_string()
    } else if present_in_flight == 0 {
        format!("not applied ({} keys absent)", in_flight.len())
    } else {
        format!("applied ({} keys present)", in_flight.len())
    };
    w(out, format!("  verified: {} committed keys present and exact; batch in flight: {flight}; map entries {len}; heap objects {objects}", committed * BATCH))?;
    drop(pool);
    if problems.is_empty() {
        w(out, "  result: consistent".into())?;
        Ok(Outcome::Clean)
    } else {
        for p in problems.iter().take(20) {
            w(out, format!("  PROBLEM: {p}"))?;
        }
        Ok(Outcome::Damaged)
    }
}

fn uuid(seed: u64) -> [u8; 16] {
    let mut r = Rng::new(seed ^ 0x5EED);
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&r.next_u64().to_le_bytes());
    u[8..].copy_from_slice(&r.next_u64().to_le_bytes());
    u
}

/// Exit status of a writer that stopped at its crash point.
pub const CRASH_EXIT: i32 = 86;

/// The writer process (module docs).
pub fn writer(a: &WriterArgs, out: &mut dyn Write) -> Result<Outcome, PmpoolError> {
    let file = open_file(&a.pool, false)?;
    let media = Crashing {
        inner: if a.direct {
            Box::new(file)
        } else {
            Box::new(AdrCopy::new(file))
        },
        fences: AtomicU64::new(0),
        crash_at: a.crash_at,
    };
    let (pool, _, _) = Pool::open(
        media,
        &OpenOptions {
            layout: Some(LAYOUT),
        },
    )
    .map_err(|source| PmpoolError::Pool {
        path: a.pool.clone(),
        source,
    })?;
    let root = pool.root::<Root>().ok_or(Error::Corrupt {
        what: "demo root",
        obj: 0,
    })?;
    let map = pool.read(root)?.map;
    let batches = a.keys.div_ceil(BATCH);
    for b in 0..batches {
        pool.transaction(|tx| {
            for i in b * BATCH..((b + 1) * BATCH).min(a.keys) {
                let s = PString::new(tx, &value(a.seed, i))?;
                if let Some(old) = map.insert(tx, key(a.seed, i), s)? {
                    old.free(tx)?;
                }
            }
            Ok::<_, Error>(())
        })
        .map_err(|e| PmpoolError::Tx(e.into()))?;
        writeln!(out, "committed {}", b + 1)
            .and_then(|()| out.flush())
            .map_err(PmpoolError::Output)?;
    }
    Ok(Outcome::Clean)
}

/// A media that exits the process just before its `crash_at`-th fence.
struct Crashing {
    inner: Box<dyn Media>,
    fences: AtomicU64,
    crash_at: u64,
}

impl std::fmt::Debug for Crashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crashing")
            .field("crash_at", &self.crash_at)
            .finish_non_exhaustive()
    }
}

impl Crashing {
    fn m(&self) -> &dyn Media {
        &*self.inner
    }
}

impl Media for Crashing {
    fn len(&self) -> usize {
        self.m().len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.m().read(off, buf);
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.m().write(off, data);
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.m().read_u64(off)
    }
    fn write_u64(&self, off: usize, v: u64) {
        self.m().write_u64(off, v);
    }
    fn write_nt(&self, off: usize, data: &[u8]) {
        self.m().write_nt(off, data);
    }
    fn flush(&self, off: usize, len: usize) {
        self.m().flush(off, len);
    }
    fn fence(&self) {
        if self.fences.fetch_add(1, Ordering::Relaxed) + 1 == self.crash_at {
            // A crash: no destructor, no cleanup; in the ADR model the DRAM copy (and
            // every line never flushed) is lost with the process.
            std::process::exit(CRASH_EXIT);
        }
        self.m().fence();
    }
    fn counters(&self) -> Counters {
        self.m().counters()
    }
    fn info(&self) -> MediaInfo {
        self.m().info()
    }
}

/// The ADR model over a file: reads and writes go to a DRAM copy; `flush` writes the
/// covered lines through to the file (and flushes them there); `fence` fences the file.
struct AdrCopy {
    dram: RawMedia,
    words: NonNull<[u64]>,
    file: FileMedia,
}

// SAFETY: `words` is reached only through `dram` (atomics) and freed in drop.
unsafe impl Send for AdrCopy {}
// SAFETY: as for Send.
unsafe impl Sync for AdrCopy {}

impl AdrCopy {
    fn new(file: FileMedia) -> Self {
        let len = file.len();
        let words = NonNull::from(Box::leak(vec![0u64; len.div_ceil(8)].into_boxed_slice()));
        // SAFETY: the allocation holds `len` bytes, 8-aligned, lives until drop, and is
        // touched only through `dram`.
        let dram = unsafe { RawMedia::new(words.cast::<u8>(), len, PersistMode::Eadr) };
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < len {
            let n = buf.len().min(len - off);
            file.read(off, &mut buf[..n]);
            dram.write(off, &buf[..n]);
            off += n;
        }
        AdrCopy { dram, words, file }
    }
}

impl Drop for AdrCopy {
    fn drop(&mut self) {
        // SAFETY: made by Box::leak in `new`; `dram` is not used after this.
        drop(unsafe { Box::from_raw(self.words.as_ptr()) });
    }
}

impl Media for AdrCopy {
    fn len(&self) -> usize {
        self.dram.len()
    }
    fn read(&self, off: usize, buf: &mut [u8]) {
        self.dram.read(off, buf);
    }
    fn write(&self, off: usize, data: &[u8]) {
        self.dram.write(off, data);
    }
    fn read_u64(&self, off: usize) -> u64 {
        self.dram.read_u64(off)
    }
    fn write_u64(&self, off: usize, v: u64) {
        self.dram.write_u64(off, v);
    }
    fn write_nt(&self, off: usize, data: &[u8]) {
        self.dram.write(off, data);
        self.flush(off, data.len());
    }
    fn flush(&self, off: usize, len: usize) {
        if len == 0 {
            return;
        }
        let first = off / CACHE_LINE * CACHE_LINE;
        let end = ((off + len).div_ceil(CACHE_LINE) * CACHE_LINE).min(self.len());
        let mut line = [0u8; CACHE_LINE];
        let mut at = first;
        while at < end {
            let n = CACHE_LINE.min(end - at);
            self.dram.read(at, &mut line[..n]);
            self.file.write(at, &line[..n]);
            at += n;
        }
        self.file.flush(first, end - first);
    }
    fn fence(&self) {
        self.file.fence();
    }
    fn counters(&self) -> Counters {
        self.file.counters()
    }
    fn info(&self) -> MediaInfo {
        MediaInfo {
            kind: "adr-copy",
            ..self.file.info()
        }
    }
}
