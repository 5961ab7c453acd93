//! The reconstruction engine.
//!
//! 1. Scan each lane from its persisted tail: records in order, sequence numbers never
//!    decreasing, wrapping at a padding record, stopping at the first record that fails
//!    its check (a torn append) or goes backwards (older data beyond the end). Records
//!    of 256 KiB and more are checked where they lie and copied only in part; their
//!    large entries go from the log to their homes at replay.
//! 2. Group records into transactions (consecutive records with one sequence number);
//!    a transaction committed iff its last record carries COMMIT.
//! 3. Per object, in sequence order: the live redo groups of committed transactions
//!    after the object's newest *dead* group (older ones were written back, and a
//!    newer write-back supersedes them), and the undo groups of uncommitted in-place
//!    transactions (their old bytes, applied in reverse).
//! 4. Replay: metadata groups one at a time in commit order, then data groups, objects
//!    in parallel on std threads (feature `std`); each group only where a transaction
//!    could have written (its key's own allocation metadata, checked in `target`; data
//!    inside its allocated object), else listed as [`LogDamage`] and skipped; data of
//!    an earlier incarnation of its object skipped as superseded. Lookups read the
//!    chunk table on media: the heap's span map is rebuilt only after this. Flush
//!    each written line once, fence.
//! 5. Mark every scanned record dead (unless all are in one lane: then its tail is the
//!    one switch) and clear the line at the end of each scan (so a scan starting there
//!    stops at once instead of meeting a stale record), fence; move every tail to the
//!    end of its scan, fence.
//!
//! A crash anywhere in here leaves a state that recovers to the same result: before 5
//! everything replays again; during 5 the dead marks follow the newest-dead rule and
//! the homes are already durable.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use core::ops::Range;

use arch::{Access, Media};
use pmalloc::checksum::Crc32c;
use pmalloc::Heap;

use crate::area::{decode_tail, encode_tail, Area, LINE};
use crate::record::{
    check, check_with, copy_headers, live_mask, live_tag, parse, parse_into, peek, reparse_into,
    Entry, Group, FULL, F_COMMIT, F_PAD, F_UNDO, G_ABS, HEADER, LIVE_OFF, MAX_GROUPS,
};

mod parallel;
mod target;

/// Data entries at least this long are replayed with non-temporal stores (the homes are
/// written once and not read again soon; a shorter entry shares its lines' flushes).
const NT_MIN: usize = 1024;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records scanned (padding excluded).
    pub records: u64,
    /// Log bytes scanned.
    pub log_bytes: u64,
    /// Committed transactions found.
    pub committed: u64,
    /// Transactions without a commit record: discarded (redo) or rolled back (undo).
    pub incomplete: u64,
    /// Of those, transactions whose in-place writes were rolled back.
    pub rolled_back: u64,
    /// Groups replayed.
    pub groups_replayed: u64,
    /// Groups skipped as already written back.
    pub groups_dead: u64,
    /// Bytes written to homes.
    pub bytes_replayed: u64,
    /// Lanes whose tail word was damaged (scanned from 0).
    pub bad_tails: u32,
    /// Entries of groups that a record's check passed but that write where no
    /// transaction could have (see [`LogFault`]): not applied. Each refused group is
    /// listed in `damage` (the first [`MAX_DAMAGE`]).
    pub bad_entries: u64,
    /// Data groups of an earlier incarnation of their object (freed, or freed and
    /// allocated again, by metadata later in the log): not applied, as the later
    /// metadata supersedes them.
    pub groups_stale: u64,
    /// The area's sequence reservation was damaged, missing (an area formatted before
    /// it existed), or below a scanned record: after replay the logs were cleared so
    /// no old record can be mistaken for a new one, and numbering started over.
    pub seq_reset: bool,
    /// Log groups refused as damaged, in the order found (the first [`MAX_DAMAGE`];
    /// `bad_entries` counts them all). Empty after any crash of a working pool: a
    /// listed group means the log was damaged or forged.
    pub damage: Vec<LogDamage>,
}

/// How many refused groups a [`RecoveryReport`] lists.
pub const MAX_DAMAGE: usize = 64;

/// A log group that recovery refused to apply although its record passed its check:
/// where it is and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDamage {
    /// Lane of the record.
    pub lane: u32,
    /// Byte position of the record in the lane log.
    pub pos: usize,
    /// Index of the group in the record.
    pub group: usize,
    /// The group's key (the object it belongs to, or the root slot).
    pub key: u64,
    /// Why it was refused.
    pub fault: LogFault,
}

/// Why recovery refused a log group (see `docs/transactions.md`, Recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFault {
    /// A data entry reaches outside its object: the entry's pool range.
    OutsideObject {
        /// Pool offset of the entry.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// Data for a key that is no allocated object, and that no metadata in the log
    /// freed.
    NoObject,
    /// Absolute entries that are not one object header plus chunk-entry words (or, for
    /// the root slot, one 8-byte pointer): the first entry that does not fit.
    MetaShape {
        /// Pool offset of the entry.
        offset: u64,
    },
    /// A header not at its key's header location, or chunk words that are not exactly
    /// the key's extent over chunks that are free or its own.
    MetaPlacement {
        /// Pool offset of the header or of the first chunk word.
        offset: u64,
    },
    /// A header that is not valid for its key, or whose kind, size or allocation state
    /// disagrees with where it is and the chunk words beside it.
    MetaHeader {
        /// Pool offset of the header.
        offset: u64,
    },
    /// A root pointer that is neither null nor an allocated object.
    BadRoot {
        /// The pointer.
        value: u64,
    },
    /// Metadata in an undo record (undo records hold old data only; old metadata is
    /// never rolled back).
    UndoMetadata,
}

impl core::fmt::Display for LogFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LogFault::OutsideObject { offset, len } => {
                write!(f, "data entry {offset:#x}+{len} outside its object")
            }
            LogFault::NoObject => write!(f, "data for no allocated object"),
            LogFault::MetaShape { offset } => write!(f, "malformed metadata entry at {offset:#x}"),
            LogFault::MetaPlacement { offset } => {
                write!(f, "metadata at {offset:#x} is not its object's")
            }
            LogFault::MetaHeader { offset } => write!(f, "bad object header at {offset:#x}"),
            LogFault::BadRoot { value } => write!(f, "root pointer {value:#x} names no object"),
            LogFault::UndoMetadata => write!(f, "metadata in an undo record"),
        }
    }
}

impl core::fmt::Display for LogDamage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "lane {} record at {:#x} group {} (key {:#x}): {}",
            self.lane, self.pos, self.group, self.key, self.fault
        )
    }
}

/// A record a scan found: its lane, its position in the lane log, its bytes (a valid
/// record: its check passed), and the header fields the plan groups records by, read
/// once by the scan (each peek at a record again is a cache miss).
///
/// `B` is how the bytes are held: owned for [`scan_logs`] ([`ScannedRecord`]); in
/// recovery, a place in one buffer shared by every record of the scan (`Scan`), then
/// a slice of it (a recovery of 150,000 one-line records spent a fifth of its time
/// allocating and freeing a buffer per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned<B> {
    /// Lane.
    pub lane: u32,
    /// Byte position in the lane log.
    pub pos: usize,
    seq: u64,
    flags: u16,
    /// What `bytes` leaves out ([`copy_headers`]).
    elide: usize,
    /// The record (whole lines), or for a record recovery scanned in place, a copy
    /// of its headers, its metadata and its data entries shorter than
    /// `IN_LOG_MIN`: longer ones go from the log to their homes at replay. (Always
    /// whole from [`scan_logs`].)
    pub bytes: B,
}

impl<B> Scanned<B> {
    /// The same record with its bytes held as `bytes`.
    fn with_bytes<C>(&self, bytes: C) -> Scanned<C> {
        Scanned {
            lane: self.lane,
            pos: self.pos,
            seq: self.seq,
            flags: self.flags,
            elide: self.elide,
            bytes,
        }
    }
}

/// A record [`scan_logs`] found, owning its bytes.
pub type ScannedRecord = Scanned<Vec<u8>>;

/// A record's place in [`Scan::chunks`]: `(chunk, start, len)`.
type Found = Scanned<(usize, usize, usize)>;

/// What [`scan`] found: [`LogScan`] with the records' bytes end to end in chunks
/// (fixed buffers: one growing buffer spent a fifth of a recovery copying itself as it
/// grew). Chunks start at [`CHUNK_MIN`] bytes and double up to [`CHUNK`], so a short
/// log takes a small buffer (the kernel's heap is small) and a long one few.
#[derive(Default)]
struct Scan {
    found: Vec<Found>,
    /// Groups of all records found (their headers' counts).
    groups: usize,
    chunks: Vec<Vec<u8>>,
    heads: Vec<usize>,
    log_bytes: u64,
    bad_tails: u32,
}

/// The size of a [`Scan`]'s first chunk (or of a record, if larger).
const CHUNK_MIN: usize = 64 << 10;
/// The size chunks double up to (or of a record, if larger).
const CHUNK: usize = 1 << 20;

impl Scan {
    /// A chunk with room for `n` more bytes: the last one, or a new one as large as
    /// all before it together, within `[CHUNK_MIN, CHUNK]`.
    fn room(&mut self, n: usize) -> usize {
        match self.chunks.last() {
            Some(c) if c.capacity() - c.len() >= n => {}
            _ => {
                let held: usize = self.chunks.iter().map(Vec::capacity).sum();
                let size = held.clamp(CHUNK_MIN, CHUNK).max(n);
                self.chunks.push(Vec::with_capacity(size));
            }
        }
        self.chunks.len() - 1
    }

    /// The records, borrowing their bytes.
    fn records(&self) -> Vec<Scanned<&[u8]>> {
        self.found
            .iter()
            .map(|f| {
                let (chunk, start, len) = f.bytes;
                f.with_bytes(&self.chunks[chunk][start..start + len])
            })
            .collect()
    }
}

/// Records at least this long are scanned in place by recovery: checked where they lie
/// in the log (no copy: [`Media::read_in_place`]), with only their headers and short
/// entries copied. A copy of a 16 MiB undo record into fresh memory took a page fault
/// per 4 KiB and a pass over all its bytes, a third of the whole rollback.
const IN_PLACE_MIN: usize = 256 << 10;

/// Data entries at least this long, in records scanned in place, stay in the log until
/// replay copies them to their homes.
const IN_LOG_MIN: usize = 16 << 10;

/// What a scan of every lane found (recovery's step 1, without changing anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogScan {
    /// Records of every lane, in log order, lane by lane (padding records excluded).
    pub records: Vec<ScannedRecord>,
    /// Each lane's end of scan (where its next record would go).
    pub heads: Vec<usize>,
    /// Log bytes scanned.
    pub log_bytes: u64,
    /// Lanes whose tail word was damaged (scanned from 0).
    pub bad_tails: u32,
}

/// One group to replay: its record, its index, its sequence number, undo or redo,
/// metadata (absolute entries) or data (relative to its object).
#[derive(Clone, Copy)]
struct Item<'r> {
    rec: usize,
    group: Group<'r>,
    seq: u64,
    undo: bool,
    meta: bool,
}

/// What recovery leaves for the pool: the report, each lane's head, and the highest
/// sequence number scanned (0 if none).
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub heads: Vec<usize>,
    pub max_seq: u64,
}

/// Scans, replays and resets (module docs).
pub(crate) fn recover<M: Media>(heap: &Heap<M>, area: &Area) -> Recovered {
    let mut scanned = scan(heap.media(), area, heap.salt(), true);
    let heads = core::mem::take(&mut scanned.heads);
    let recs = scanned.records();
    let mut report = RecoveryReport {
        records: recs.len() as u64,
        log_bytes: scanned.log_bytes,
        bad_tails: scanned.bad_tails,
        ..RecoveryReport::default()
    };
    let max_seq = recs.iter().map(|r| r.seq).max().unwrap_or(0);
    let work = plan(&recs, scanned.groups, heap.salt(), &mut report);
    replay(heap, area, &recs, &work, &mut report);
    reset(heap, area, &recs, &heads);
    // The heap indexed its chunk table before the replay changed it.
    heap.reindex();
    Recovered {
        report,
        heads,
        max_seq,
    }
}

/// Step 1: the records of every lane, in log order, and each lane's end of scan. Reads
/// only; a tool can use it to list what recovery would see.
pub fn scan_logs<M: Media>(media: &M, area: &Area, salt: u64) -> LogScan {
    let s = scan(media, area, salt, false);
    LogScan {
        records: s
            .records()
            .iter()
            .map(|r| r.with_bytes(r.bytes.to_vec()))
            .collect(),
        heads: s.heads,
        log_bytes: s.log_bytes,
        bad_tails: s.bad_tails,
    }
}

/// [`scan_logs`]; with `in_place`, records of [`IN_PLACE_MIN`] bytes and more are
/// checked in the log and copied only in part (see [`ScannedRecord`]).
fn scan<M: Media>(media: &M, area: &Area, salt: u64, in_place: bool) -> Scan {
    let mut out = Scan {
        heads: Vec::with_capacity(area.lanes as usize),
        ..Scan::default()
    };
    for k in 0..area.lanes {
        let base = area.log_off(k);
        let len = area.lane_bytes;
        let tail = match decode_tail(media.read_u64(area.tail_off(k)), k, salt) {
            Some(t) if (t as usize) < len && (t as usize).is_multiple_of(LINE) => t as usize,
            _ => {
                out.bad_tails += 1;
                0
            }
        };
        let (mut pos, mut scanned, mut last_seq) = (tail, 0usize, 0u64);
        let mut line = [0u8; LINE];
        while scanned < len {
            media.read(base + pos, &mut line);
            let h = peek(&line);
            if h.flags & F_PAD != 0 {
                if parse(&line, k, salt).is_err() || h.seq < last_seq || pos + h.lines * LINE != len
                {
                    break;
                }
                scanned += len - pos;
                pos = 0;
                continue;
            }
            if h.lines == 0 || pos + h.lines * LINE > len || scanned + h.lines * LINE > len {
                break;
            }
            let (at, n) = (base + pos, h.lines * LINE);
            let elide = if in_place && n >= IN_PLACE_MIN {
                IN_LOG_MIN
            } else {
                FULL
            };
            let (chunk, start, seq) = if elide == FULL {
                if n >= POPULATE_MIN {
                    media.populate(at, n, Access::Read);
                }
                let chunk = out.room(n);
                let c = &mut out.chunks[chunk];
                let start = c.len();
                c.resize(start + n, 0);
                let b = &mut c[start..];
                media.read(at, b);
                let seq = parse_into(b, FULL, |q| check(q, k, salt), None).map(|h| h.seq);
                (chunk, start, seq)
            } else {
                // Checked in place, mapping its pages as it goes (`check_in_log`).
                let Some(b) = copy_headers(n, elide, |o, buf| media.read(at + o, buf)) else {
                    break;
                };
                let seq = parse_into(&b, elide, |p| check_in_log(media, at, n, p, k, salt), None)
                    .map(|h| h.seq);
                let chunk = out.room(b.len());
                let start = out.chunks[chunk].len();
                out.chunks[chunk].extend_from_slice(&b);
                (chunk, start, seq)
            };
            let c = &mut out.chunks[chunk];
            let kept = c.len() - start;
            let seq = match seq {
                Ok(seq) if seq >= last_seq => seq,
                _ => {
                    c.truncate(start);
                    break;
                }
            };
            last_seq = seq;
            // A record that parsed has at most MAX_GROUPS groups.
            out.groups += h.ngroups;
            out.found.push(Found {
                lane: k,
                pos,
                seq,
                flags: h.flags,
                elide,
                bytes: (chunk, start, kept),
            });
            pos = (pos + h.lines * LINE) % len;
            scanned += h.lines * LINE;
        }
        out.log_bytes += scanned as u64;
        out.heads.push(pos);
    }
    out
}

/// The check of the `n`-byte record at `at` whose header `p` starts, computed where
/// the record lies in the log, in parts on several threads when it is long
/// ([`parallel`]).
fn check_in_log<M: Media>(media: &M, at: usize, n: usize, p: &[u8], lane: u32, salt: u64) -> u32 {
    let (body, len) = (at + HEADER, n - HEADER);
    let feed = |c: &mut Crc32c, r: Range<usize>| {
        media.populate(body + r.start, r.len(), Access::Read);
        // SAFETY: nothing stores to the log while recovery scans it: the pool is not
        // open yet, and replay, which stores, starts after the scan.
        unsafe { media.read_in_place(body + r.start, r.len(), &mut |piece| c.update(piece)) };
    };
    check_with(&p[..HEADER], lane, salt, |c| match c.fork() {
        Some(empty) if parallel::splits(len) => {
            for (part, r) in parallel::split(len, LINE, |r| {
                let mut f = empty.clone();
                feed(&mut f, r.clone());
                (f, r)
            }) {
                c.join(part, r.len() as u64);
            }
        }
        _ => feed(c, 0..len),
    })
}

/// Steps 2-3's result: every group to replay in one list, object by object, each
/// object's in sequence order (one list, where a list per object cost an allocation
/// per object: a recovery of small records replays about one group per object).
struct Work<'r> {
    /// Every group scanned (dead ones too).
    all: Vec<Item<'r>>,
    /// The ones to replay: indices into `all`, object by object (copies of the items
    /// doubled the memory a recovery touches for the first time).
    items: Vec<usize>,
    /// Where each object's items end in `items`.
    ends: Vec<usize>,
}

impl<'r> Work<'r> {
    /// The items of objects `objs` (indices into `ends`), object by object.
    fn objects(&self, objs: Range<usize>) -> impl Iterator<Item = &[usize]> + '_ {
        objs.map(|i| &self.items[i.checked_sub(1).map_or(0, |p| self.ends[p])..self.ends[i]])
    }

    /// The items `idx` names.
    fn get<'w>(&'w self, idx: &'w [usize]) -> impl Iterator<Item = &'w Item<'r>> + Clone + 'w {
        idx.iter().map(|&i| &self.all[i])
    }
}

/// Steps 2-3: per object, the groups to replay in order (`groups`: the records' group
/// count, for the lists' sizes).
fn plan<'r>(
    recs: &[Scanned<&'r [u8]>],
    groups: usize,
    salt: u64,
    report: &mut RecoveryReport,
) -> Work<'r> {
    // Every group once, and a compact sort key per group (object, sequence number,
    // dead, index): one sort of small keys, where a map of per-object lists made an
    // allocation per object and a tree walk per group. The index makes the order of
    // equal keys their log order. Sized from the headers' group counts, so neither
    // list grows.
    let mut all: Vec<Item<'r>> = Vec::with_capacity(groups);
    let mut order: Vec<(u64, u64, bool, usize)> = Vec::with_capacity(groups);
    // One record's groups at a time, in one buffer.
    let mut parsed: Vec<Group<'r>> = Vec::with_capacity(MAX_GROUPS);
    let mut i = 0;
    while i < recs.len() {
        let mut j = i;
        while j + 1 < recs.len()
            && recs[j + 1].lane == recs[i].lane
            && recs[j + 1].seq == recs[i].seq
        {
            j += 1;
        }
        let committed = recs[j].flags & F_COMMIT != 0;
        if committed {
            report.committed += 1;
        } else {
            report.incomplete += 1;
        }
        let mut rolled = false;
        for (r, rec) in recs.iter().enumerate().take(j + 1).skip(i) {
            parsed.clear();
            let Ok(head) = reparse_into(rec.bytes, rec.elide, &mut parsed) else {
                continue;
            };
            let undo = head.flags & F_UNDO != 0;
            // Undo data matters only for uncommitted transactions (and only while its
            // record is live); redo data only for committed ones.
            let mask = live_mask(&head, rec.lane, salt);
            if undo && (committed || mask & 1 == 0) || !undo && !committed {
                continue;
            }
            rolled |= undo;
            for g in &parsed {
                let live = undo || mask & (1 << g.index) != 0;
                let item = Item {
                    rec: r,
                    group: *g,
                    seq: head.seq,
                    undo,
                    meta: g.kind == G_ABS,
                };
                // A dead group marks everything older of this object as written back.
                order.push((g.key, item.seq, !live, all.len()));
                all.push(if live {
                    item
                } else {
                    Item { rec: DEAD, ..item }
                });
            }
        }
        report.rolled_back += u64::from(rolled);
        i = j + 1;
    }
    order.sort_unstable();
    let mut work = Work {
        all,
        items: Vec::with_capacity(order.len()),
        ends: Vec::new(),
    };
    for keys in order.chunk_by(|a, b| a.0 == b.0) {
        let newest_dead = keys.iter().rposition(|k| k.2);
        let skip = newest_dead.map_or(0, |d| d + 1);
        report.groups_dead += skip as u64;
        let before = work.items.len();
        let all = &work.all;
        work.items.extend(
            keys[skip..]
                .iter()
                .map(|k| k.3)
                .filter(|&i| all[i].rec != DEAD),
        );
        if work.items.len() > before {
            work.ends.push(work.items.len());
        }
    }
    work
}

/// Records and entries at least this long have their pages mapped in one call before
/// they are read or stored ([`Media::populate`]): four pages and more.
const POPULATE_MIN: usize = 16 << 10;

/// Where in the pool a data entry's bytes are when its record's copy left them in the
/// log ([`Entry::in_log`]); `None` when `e.data` holds them.
fn in_log(area: &Area, rec: &Scanned<&[u8]>, e: &Entry<'_>) -> Option<usize> {
    e.in_log().then(|| area.log_off(rec.lane) + rec.pos + e.at)
}

/// Stores a data entry, from `e.data` or from the log at `from_log`; lists it in `out`
/// when it needs a flush. Large ranges (an undo image of a big in-place write) go
/// straight to the media, durable at the replay's fence, without reading the old
/// lines; from the log, media to media, in parts on several threads when long.
fn store_data<M: Media>(
    media: &M,
    e: &Entry<'_>,
    from_log: Option<usize>,
    out: &mut Vec<(usize, usize)>,
) {
    let (dst, n) = (e.off as usize, e.len);
    if let Some(src) = from_log {
        parallel::split(n, LINE, |r| {
            media.populate(dst + r.start, r.len(), Access::Write);
            media.copy_nt(dst + r.start, src + r.start, r.len());
        });
    } else if n >= NT_MIN {
        if n >= POPULATE_MIN {
            media.populate(dst, n, Access::Write);
        }
        media.write_nt(dst, e.data);
    } else {
        media.write(dst, e.data);
        out.push((dst, n));
    }
}

/// A group's entries (reversed for undo: old bytes go back newest first).
fn entries_of<'r>(it: &Item<'r>) -> Vec<Entry<'r>> {
    let mut entries: Vec<Entry<'r>> = it.group.entries().collect();
    if it.undo {
        entries.reverse();
    }
    entries
}

impl Item<'_> {
    fn damage(&self, recs: &[Scanned<&[u8]>], key: u64, fault: LogFault) -> LogDamage {
        LogDamage {
            lane: recs[self.rec].lane,
            pos: recs[self.rec].pos,
            group: self.group.index,
            key,
            fault,
        }
    }
}

/// Step 4: writes the groups to the homes, flushes, fences. Metadata groups first, one
/// at a time in commit order, each checked against the metadata on media then
/// (`target`); then data groups, objects in parallel, each against its object as the
/// metadata left it.
fn replay<M: Media>(
    heap: &Heap<M>,
    area: &Area,
    recs: &[Scanned<&[u8]>],
    work: &Work<'_>,
    report: &mut RecoveryReport,
) {
    let media = heap.media();
    let mut touched: Vec<(usize, usize)> = Vec::new();
    let mut meta: Vec<Item<'_>> = work
        .get(&work.items)
        .filter(|it| it.meta)
        .copied()
        .collect();
    meta.sort_by_key(|it| (it.seq, it.rec, it.group.index));
    // Each key's newest applied metadata: data of the key older than it belongs to an
    // earlier incarnation (freed since, perhaps allocated again).
    let mut incarnation: BTreeMap<u64, u64> = BTreeMap::new();
    let mut meta_totals = Totals::default();
    for it in &meta {
        let (key, entries) = (it.group.key, entries_of(it));
        let checked = if it.undo {
            Err(LogFault::UndoMetadata)
        } else {
            target::check_meta(heap, key, &entries)
        };
        if let Err(fault) = checked {
            meta_totals.refuse(it.damage(recs, key, fault), entries.len());
            continue;
        }
        for e in &entries {
            media.write(e.off as usize, e.data);
            touched.push((e.off as usize, e.len));
            meta_totals.bytes += e.len as u64;
        }
        meta_totals.groups += 1;
        incarnation.insert(key, it.seq);
    }
    // A key's data items, in place among its metadata ones (applied above): no second
    // list per object.
    let replay_key = |idx: &[usize], out: &mut Vec<(usize, usize)>| -> Totals {
        let items = work.get(idx);
        let mut t = Totals::default();
        // Every item of a key: the object as the metadata replay left it (on media:
        // the heap re-indexes only after recovery).
        let Some(key) = items.clone().find(|it| !it.meta).map(|it| it.group.key) else {
            return t;
        };
        let object = heap.info_on_media(key).ok();
        let newest_meta = incarnation.get(&key).copied();
        for it in items.filter(|it| !it.meta) {
            let entries = it.group.entries();
            let superseded =
                newest_meta.is_some_and(|m| it.seq < m || (it.seq == m && object.is_none()));
            if superseded {
                t.stale += 1;
                continue;
            }
            let Some(o) = object else {
                t.refuse(it.damage(recs, key, LogFault::NoObject), it.group.len());
                continue;
            };
            let end = key + o.size;
            let outside = entries
                .clone()
                .find(|e| e.off < key || e.off.checked_add(e.len as u64).is_none_or(|x| x > end));
            if let Some(e) = outside {
                let fault = LogFault::OutsideObject {
                    offset: e.off,
                    len: e.len as u64,
                };
                t.refuse(it.damage(recs, key, fault), it.group.len());
                continue;
            }
            let rec = &recs[it.rec];
            let mut store = |e: Entry<'_>| {
                store_data(media, &e, in_log(area, rec, &e), out);
                t.bytes += e.len as u64;
            };
            if it.undo {
                // Old bytes go back newest first.
                entries_of(it).into_iter().for_each(&mut store);
            } else {
                entries.for_each(&mut store);
            }
            t.groups += 1;
        }
        t
    };
    let mut t = meta_totals;
    t.absorb(replay_all(work, &replay_key, &mut touched));
    report.groups_replayed += t.groups;
    report.bytes_replayed += t.bytes;
    report.groups_stale += t.stale;
    report.bad_entries += t.bad;
    report.damage = t.damage;
    arch::flush_lines_once(media, &mut touched);
    media.fence();
    media.crash_point("pmrt.recover.replayed");
}

/// Step 5: every scanned record dead, then every tail at the end of its scan.
fn reset<M: Media>(heap: &Heap<M>, area: &Area, recs: &[Scanned<&[u8]>], heads: &[usize]) {
    let (media, salt) = (heap.media(), heap.salt());
    // The marks keep lanes apart: if some tails moved and others did not, the records
    // still scanned must not replay over what the passed ones wrote (an older group of
    // another lane over a newer home). With every record in one lane, its tail's move
    // is the one switch: before it persists everything replays again, as after a crash
    // before this step; so no marks (a recovery of 16 MiB of pending one-line records
    // flushed 150,000 of them).
    if recs.windows(2).any(|w| w[0].lane != w[1].lane) {
        for rec in recs {
            let at = area.log_off(rec.lane) + rec.pos + LIVE_OFF;
            media.write_u64(at, live_tag(rec.seq, rec.lane, salt));
            media.flush(at, 8);
        }
    }
    // Each tail moves to its head below; a scan from there must stop at once, so the
    // line at each head (the end of the scan: a torn, stale or empty record) is cleared
    // in the same batch, before the tails move.
    for (k, &head) in heads.iter().enumerate() {
        let at = area.log_off(k as u32) + head;
        media.fill(at, LINE, 0);
        media.flush(at, LINE);
    }
    media.fence();
    media.crash_point("pmrt.recover.dead");
    for (k, &head) in heads.iter().enumerate() {
        let k = k as u32;
        let off = area.tail_off(k);
        let want = encode_tail(head as u64, k, salt);
        if media.read_u64(off) != want {
            media.write_u64(off, want);
            media.flush(off, 8);
        }
    }
    media.fence();
}

/// What replaying some objects did.
#[derive(Debug, Clone, Default)]
struct Totals {
    groups: u64,
    bytes: u64,
    bad: u64,
    stale: u64,
    /// Refused groups (the first [`MAX_DAMAGE`]; `bad` counts their entries).
    damage: Vec<LogDamage>,
}

impl Totals {
    /// Counts a refused group of `entries` entries and lists it (unless the list holds
    /// [`MAX_DAMAGE`] already).
    fn refuse(&mut self, d: LogDamage, entries: usize) {
        self.bad += entries as u64;
        if self.damage.len() < MAX_DAMAGE {
            self.damage.push(d);
        }
    }

    /// Adds `b`'s counts and refused groups (metadata, then data, keep that order).
    fn absorb(&mut self, b: Totals) {
        self.groups += b.groups;
        self.bytes += b.bytes;
        self.bad += b.bad;
        self.stale += b.stale;
        let room = MAX_DAMAGE.saturating_sub(self.damage.len());
        self.damage.extend(b.damage.into_iter().take(room));
    }
}

const DEAD: usize = usize::MAX;

/// Replays every object's items, on worker threads when `std` is on and there is
/// enough work.
fn replay_all<F>(work: &Work<'_>, replay_key: &F, touched: &mut Vec<(usize, usize)>) -> Totals
where
    F: Fn(&[usize], &mut Vec<(usize, usize)>) -> Totals + Sync,
{
    let add = |mut a: Totals, b: Totals| {
        a.absorb(b);
        a
    };
    #[cfg(feature = "std")]
    {
        let threads = parallel::threads();
        if threads > 1 && work.items.len() > 64 {
            let n = work.ends.len();
            let chunk = n.div_ceil(threads).max(1);
            let results: Vec<(Totals, Vec<(usize, usize)>)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .step_by(chunk)
                    .map(|from| {
                        s.spawn(move || {
                            let mut out = Vec::new();
                            let objs = work.objects(from..(from + chunk).min(n));
                            let t = objs.fold(Totals::default(), |t, items| {
                                add(t, replay_key(items, &mut out))
                            });
                            (t, out)
                        })
                    })
                    .collect();
                // A worker's panic is a bug, never a reaction to pool bytes: pass it on
                // rather than finish recovery with that worker's objects not replayed.
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            let mut t = Totals::default();
            for (r, out) in results {
                t = add(t, r);
                touched.extend(out);
            }
            return t;
        }
    }
    work.objects(0..work.ends.len())
        .fold(Totals::default(), |t, items| {
            add(t, replay_key(items, touched))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_chunks_start_small_double_and_fit_any_record() {
        let mut s = Scan::default();
        let fill = |s: &mut Scan, n: usize| {
            let c = s.room(n);
            let len = s.chunks[c].len();
            s.chunks[c].resize(len + n, 0);
            c
        };
        // A short log takes one small chunk.
        assert_eq!(fill(&mut s, 64), 0);
        assert_eq!(fill(&mut s, 64), 0);
        assert_eq!(s.chunks[0].capacity(), CHUNK_MIN);
        // Full: the next chunk is as large as all before it, doubling up to CHUNK.
        fill(&mut s, CHUNK_MIN - 128);
        assert_eq!(fill(&mut s, 64), 1);
        assert_eq!(s.chunks[1].capacity(), CHUNK_MIN);
        fill(&mut s, CHUNK_MIN - 64);
        fill(&mut s, 64);
        assert_eq!(s.chunks[2].capacity(), 2 * CHUNK_MIN);
        // A record larger than a chunk gets one of its own size.
        let big = fill(&mut s, 3 * CHUNK);
        assert_eq!(s.chunks[big].len(), 3 * CHUNK);
        assert!(s.chunks.iter().map(Vec::capacity).all(|c| c <= 3 * CHUNK));
    }
}
