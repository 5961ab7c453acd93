//! Log records: a transaction's redo data (and, for in-place objects, undo data).
//!
//! ```text
//! header (32 B)
//!  +0  seq      u64   commit order (global); all parts of one transaction share it
//!  +8  lines    u32   record length in 64-byte lines
//!  +12 ngroups  u16   at most 64
//!  +14 flags    u16   COMMIT (last part of a transaction), UNDO, PAD (filler to the log end)
//!  +16 live     u64   bits 0..48: bit g set = group g is pending (not yet written
//!                     back); UNDO records use bit 0 for "may roll back". Bits 48..64:
//!                     a tag bound to the record (sequence, lane, pool salt). Mutable,
//!                     so not covered by the check; a torn append can leave an older
//!                     record's live word here, and its wrong tag then makes every
//!                     group count as live (the only safe reading).
//!  +24 check    u32   CRC-32C over bytes 0..16 and 28..end, the lane, the pool salt
//!  +28 zero     u32
//! groups from +32
//!  group header (16 B): key u64 (object offset), kind u8 (REL/ABS), mode u8, n u16, 0 u32
//!  REL entry: off u32 (from key) | len u32 | data, padded to 8
//!  ABS entry: off u64 (pool)     | len u32 | 0 u32 | data, padded to 8
//! ```
//!
//! An 8-byte update of one object is exactly one line: 32 + 16 + 8 + 8.
//! At most 48 groups per record (the live word's mask).

use alloc::vec::Vec;

use pmalloc::checksum::Crc32c;

/// Record header bytes.
pub const HEADER: usize = 32;
/// Most groups per record.
pub const MAX_GROUPS: usize = 48;
/// The group bits of a live word.
pub const LIVE_MASK: u64 = (1 << 48) - 1;

/// The live bits of `groups` groups (every bit for more than a record holds: a header
/// that claims that many fails its parse anyway, and no shift may overflow on it).
fn group_mask(groups: usize) -> u64 {
    if groups >= MAX_GROUPS {
        LIVE_MASK
    } else {
        (1u64 << groups) - 1
    }
}

/// The tag bits of the live word of record `seq` on lane `lane`.
pub fn live_tag(seq: u64, lane: u32, salt: u64) -> u64 {
    u64::from(pmalloc::checksum::crc32c_words(&[seq, u64::from(lane), salt, 0x4C49_5645]) as u16)
        << 48
}

/// The live groups of a record, trusting the stored mask only if its tag is this
/// record's (otherwise every group is live).
pub fn live_mask(head: &Head, lane: u32, salt: u64) -> u64 {
    let all = if head.flags & F_UNDO != 0 {
        1
    } else {
        group_mask(head.ngroups)
    };
    if head.live & !LIVE_MASK == live_tag(head.seq, lane, salt) || !crate::keep_step(4) {
        head.live & all
    } else {
        all
    }
}
/// Flag: last part of a committed transaction.
pub const F_COMMIT: u16 = 1;
/// Flag: undo data (old bytes) of in-place writes.
pub const F_UNDO: u16 = 2;
/// Flag: padding to the end of the log; no groups.
pub const F_PAD: u16 = 4;
const KNOWN_FLAGS: u16 = F_COMMIT | F_UNDO | F_PAD;
/// Offset of the live word.
pub const LIVE_OFF: usize = 16;

/// Entries relative to the group key.
pub const G_REL: u8 = 0;
/// Entries with absolute pool offsets (object headers, chunk entries, the root slot).
pub const G_ABS: u8 = 1;

/// Bytes of a group header.
const GROUP_HEADER: usize = 16;

/// An entry header of a group of `kind`: its length in bytes, and where its 4-byte data
/// length sits in it (relative: offset u32, length u32; absolute: offset u64, length
/// u32, 4 zero bytes).
fn entry_header(kind: u8) -> (usize, usize) {
    if kind == G_REL {
        (8, 4)
    } else {
        (16, 8)
    }
}

/// Builds one or more records (parts) for a transaction, back to back in one buffer
/// that is kept between transactions (no allocation once it has grown).
#[derive(Debug, Default)]
pub struct Builder {
    buf: Vec<u8>,
    /// Start of each finished part, and its groups.
    parts: Vec<(usize, usize)>,
    cur: usize,
    groups: usize,
    group_start: Option<usize>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Self {
        let mut b = Builder::default();
        b.reset();
        b
    }

    /// Empties the builder, keeping its memory.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(HEADER, 0);
        self.parts.clear();
        self.cur = 0;
        self.groups = 0;
        self.group_start = None;
    }

    /// Whether no group was added.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.groups == 0
    }

    /// Starts a group for `key` (ends the previous one). A group holds at most
    /// `u16::MAX` entries: more continue in a new group for the same key (only undo
    /// groups reach that: a redo group logs an object of at most `SHADOW_MAX` bytes,
    /// at most one entry per 32 bytes of it, or at most 1,024 explicit writes: `tx::WRITES_MAX`).
    pub fn group(&mut self, key: u64, kind: u8, mode: u8) {
        if self.groups == MAX_GROUPS {
            self.close_part();
            self.buf.resize(self.cur + HEADER, 0);
        }
        self.group_start = Some(self.buf.len());
        self.buf.extend_from_slice(&key.to_le_bytes());
        self.buf.extend_from_slice(&[kind, mode, 0, 0, 0, 0, 0, 0]);
        self.groups += 1;
    }

    /// Pads the current part to whole lines and starts the next one after it.
    fn close_part(&mut self) {
        let end = self.cur + (self.buf.len() - self.cur).next_multiple_of(64).max(64);
        self.buf.resize(end, 0);
        self.parts.push((self.cur, self.groups));
        self.cur = end;
        self.groups = 0;
        self.group_start = None;
    }

    #[inline]
    fn bump_entries(&mut self) {
        if let Some(g) = self.group_start {
            let n = u16::from_le_bytes([self.buf[g + 10], self.buf[g + 11]]);
            if n == u16::MAX {
                self.continue_group(g);
                return;
            }
            self.buf[g + 10..g + 12].copy_from_slice(&(n + 1).to_le_bytes());
        }
    }

    /// Starts a group like the full one at `g` (key, kind, mode), holding the entry
    /// being added.
    #[cold]
    #[inline(never)]
    fn continue_group(&mut self, g: usize) {
        let key = u64_at(&self.buf, g);
        let (kind, mode) = (self.buf[g + 8], self.buf[g + 9]);
        self.group(key, kind, mode);
        if let Some(n) = self.group_start {
            self.buf[n + 10..n + 12].copy_from_slice(&1u16.to_le_bytes());
        }
    }

    fn data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let pad = data.len().next_multiple_of(8) - data.len();
        self.buf.extend_from_slice(&[0; 8][..pad]);
    }

    /// Adds a relative entry: `data` goes at `key + off`.
    pub fn rel(&mut self, off: u32, data: &[u8]) {
        self.bump_entries();
        // The entry's offset and length words in one store.
        let head = u64::from(off) | (data.len() as u64) << 32;
        self.buf.extend_from_slice(&head.to_le_bytes());
        self.data(data);
    }

    /// Adds an absolute entry: `data` goes at pool offset `off`.
    pub fn abs(&mut self, off: u64, data: &[u8]) {
        self.bump_entries();
        self.buf.extend_from_slice(&off.to_le_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.data(data);
    }

    /// Finishes into records for `seq` on lane `lane` (see [`Builder::part`]). The
    /// last part carries `flags | F_COMMIT` when `commit`. Returns the number of parts.
    pub fn finish(&mut self, seq: u64, flags: u16, commit: bool, lane: u32, salt: u64) -> usize {
        self.close_part();
        let n = self.parts.len();
        for i in 0..n {
            let (start, g) = self.parts[i];
            let end = self.parts.get(i + 1).map_or(self.buf.len(), |p| p.0);
            let f = flags | if commit && i + 1 == n { F_COMMIT } else { 0 };
            seal(&mut self.buf[start..end], seq, g, f, lane, salt);
        }
        n
    }

    /// Finished part `i`: its bytes (whole lines) and its group count.
    pub fn part(&self, i: usize) -> (&[u8], usize) {
        let (start, g) = self.parts[i];
        let end = self.parts.get(i + 1).map_or(self.buf.len(), |p| p.0);
        (&self.buf[start..end], g)
    }

    /// Finished parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Total bytes of the finished parts.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Lays out and seals, in one pass, a one-part record of one relative group for
    /// `key` (the small-transaction commit): an entry per `(offset from key, bytes)` of
    /// `writes` (at most `u16::MAX` of them). Returns its bytes, as [`Builder::part`]
    /// `(0)` does afterwards.
    #[inline(always)]
    pub fn single<'a>(
        &mut self,
        key: u64,
        mode: u8,
        writes: impl Iterator<Item = (u32, &'a [u8])> + Clone,
        seq: u64,
        lane: u32,
        salt: u64,
    ) -> &[u8] {
        let (mut n, mut len) = (0usize, HEADER + GROUP_HEADER);
        for (_, d) in writes.clone() {
            n += 1;
            len += 8 + d.len().next_multiple_of(8);
        }
        debug_assert!(u16::try_from(n).is_ok());
        self.buf.clear();
        self.buf.resize(len.next_multiple_of(64), 0);
        let b = &mut self.buf[..];
        b[HEADER..HEADER + 8].copy_from_slice(&key.to_le_bytes());
        let kind = u64::from(G_REL) | u64::from(mode) << 8 | (n as u64) << 16;
        b[HEADER + 8..HEADER + 16].copy_from_slice(&kind.to_le_bytes());
        let mut at = HEADER + GROUP_HEADER;
        for (off, d) in writes {
            let head = u64::from(off) | (d.len() as u64) << 32;
            b[at..at + 8].copy_from_slice(&head.to_le_bytes());
            b[at + 8..at + 8 + d.len()].copy_from_slice(d);
            at += 8 + d.len().next_multiple_of(8);
        }
        seal(b, seq, 1, F_COMMIT, lane, salt);
        self.parts.clear();
        self.parts.push((0, 1));
        self.cur = self.buf.len();
        self.groups = 0;
        self.group_start = None;
        &self.buf
    }

    /// The largest finished part, in bytes.
    pub fn largest(&self) -> usize {
        let (mut largest, mut end) = (0, self.buf.len());
        for &(start, _) in self.parts.iter().rev() {
            largest = largest.max(end - start);
            end = start;
        }
        largest
    }
}

/// Fills in a record's header (all groups live); `p` is whole lines.
pub fn seal(p: &mut [u8], seq: u64, groups: usize, flags: u16, lane: u32, salt: u64) {
    debug_assert!(p.len() >= 64 && p.len().is_multiple_of(64));
    let lines = (p.len() / 64) as u32;
    p[0..8].copy_from_slice(&seq.to_le_bytes());
    p[8..12].copy_from_slice(&lines.to_le_bytes());
    p[12..14].copy_from_slice(&(groups as u16).to_le_bytes());
    p[14..16].copy_from_slice(&flags.to_le_bytes());
    let mask = if flags & F_UNDO != 0 {
        1
    } else {
        group_mask(groups)
    };
    let live = mask | live_tag(seq, lane, salt);
    p[16..24].copy_from_slice(&live.to_le_bytes());
    p[28..32].copy_from_slice(&[0; 4]);
    let c = check(p, lane, salt);
    p[24..28].copy_from_slice(&c.to_le_bytes());
}

/// The check of a record (or of a padding record's header alone).
pub(crate) fn check(p: &[u8], lane: u32, salt: u64) -> u32 {
    check_with(&p[..HEADER], lane, salt, |c| c.update(&p[HEADER..]))
}

/// The check of a record from its header and a function that feeds the bytes after the
/// header to the checksum (recovery feeds a large record from the log, in chunks).
pub(crate) fn check_with(
    header: &[u8],
    lane: u32,
    salt: u64,
    rest: impl FnOnce(&mut Crc32c),
) -> u32 {
    // Word by word: the same bytes as feeding the slices, with fewer calls (every
    // commit seals a record).
    let mut c = Crc32c::new();
    c.update_u64(u64_at(header, 0));
    c.update_u64(u64_at(header, 8));
    c.update_u32(u32_at(header, 28));
    rest(&mut c);
    c.update_u64(u64::from(lane));
    c.update_u64(salt);
    c.finish()
}

/// A padding record of `lines` lines (the log wraps after it).
pub fn pad(lines: usize, seq: u64, lane: u32, salt: u64) -> [u8; 64] {
    let mut p = [0u8; 64];
    seal(&mut p, seq, 0, F_PAD, lane, salt);
    // Only the header line is written; its `lines` says how far to skip.
    p[8..12].copy_from_slice(&(lines as u32).to_le_bytes());
    let c = check(&p[..HEADER], lane, salt);
    p[24..28].copy_from_slice(&c.to_le_bytes());
    p
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecFault {
    /// All zero or shorter than a header.
    Empty,
    /// Check mismatch (torn, stale, or damaged).
    BadCheck,
    /// Check fine but the structure is impossible.
    BadShape,
}

/// A parsed record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Commit order.
    pub seq: u64,
    /// Length in lines.
    pub lines: usize,
    /// Groups.
    pub ngroups: usize,
    /// Flags.
    pub flags: u16,
    /// Live word as stored.
    pub live: u64,
}

/// Reads a header from a record's first line, without checking (for the scanner,
/// which then reads the whole record and calls [`parse`]).
///
/// # Panics
/// If `line` is shorter than 24 bytes (every caller passes at least a header).
pub fn peek(line: &[u8]) -> Head {
    // Three word loads: recovery peeks at every scanned record several times.
    let mid = u64_at(line, 8);
    Head {
        seq: u64_at(line, 0),
        lines: (mid & 0xffff_ffff) as usize,
        ngroups: ((mid >> 32) & 0xffff) as usize,
        flags: (mid >> 48) as u16,
        live: u64_at(line, 16),
    }
}

/// A group in a parsed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    /// Index in the record (its live bit).
    pub index: usize,
    /// Object offset (the pending-chain key, and the base of relative entries).
    pub key: u64,
    /// `G_REL` or `G_ABS`.
    pub kind: u8,
    /// Mode the transaction used.
    pub mode: u8,
    entries: &'a [u8],
    n: usize,
    /// Offset of the first entry in the whole record (in the log).
    at: usize,
    /// Relative entries of at least this many bytes have no data in `entries`
    /// ([`copy_headers`]); [`FULL`] for a whole record.
    elide: usize,
}

/// The `elide` of a whole record: every entry's data is there.
pub(crate) const FULL: usize = usize::MAX;

/// Whether a copy made with `elide` ([`copy_headers`]) leaves out the data of an entry
/// of `len` bytes in a group of `kind`: only relative entries (object data) are left
/// in the log, never metadata.
fn elided(kind: u8, len: usize, elide: usize) -> bool {
    kind == G_REL && len >= elide
}

/// An entry: write `len` bytes at pool offset `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Pool offset.
    pub off: u64,
    /// The bytes; empty when a copy of the record left them in the log
    /// ([`Entry::in_log`]).
    pub data: &'a [u8],
    /// Number of bytes.
    pub len: usize,
    /// Offset of the bytes in the whole record (where they lie in the log).
    pub at: usize,
}

impl Entry<'_> {
    /// Whether the bytes are only in the log (`data` is empty but `len` is not).
    pub fn in_log(&self) -> bool {
        self.data.len() != self.len
    }
}

impl<'a> Group<'a> {
    /// The entries, with absolute offsets.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'a>> + Clone + 'a {
        let (mut b, n, key, kind) = (self.entries, self.n, self.key, self.kind);
        let (mut v, elide) = (self.at, self.elide);
        (0..n).map(move |_| {
            let (off, len, hdr) = if kind == G_REL {
                let (off, len) = (u32_at(b, 0), u32_at(b, 4));
                (key.wrapping_add(u64::from(off)), len as usize, 8)
            } else {
                (u64_at(b, 0), u32_at(b, 8) as usize, 16)
            };
            let at = v + hdr;
            v = at + len.next_multiple_of(8);
            let (data, step) = if elided(kind, len, elide) {
                (&b[hdr..hdr], hdr)
            } else {
                (&b[hdr..hdr + len], hdr + len.next_multiple_of(8))
            };
            b = &b[step..];
            Entry { off, data, len, at }
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the group has no entries.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Total data bytes.
    pub fn volume(&self) -> u64 {
        self.entries().map(|e| e.len as u64).sum()
    }
}

/// A validated record.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// Header.
    pub head: Head,
    groups: Vec<Group<'a>>,
}

impl<'a> Record<'a> {
    /// The groups.
    pub fn groups(&self) -> &[Group<'a>] {
        &self.groups
    }
}

/// Validates `p` (exactly `head.lines * 64` bytes) as a record of lane `lane`.
pub fn parse(p: &[u8], lane: u32, salt: u64) -> Result<Record<'_>, RecFault> {
    parse_with(p, FULL, |q| check(q, lane, salt))
}

/// [`parse`] with the check computed by `check` over the bytes it covers (the header
/// alone for a padding record, else the whole record), of a whole record (`elide` is
/// [`FULL`]) or of a copy that left out the data of relative entries of `elide` bytes
/// and more ([`copy_headers`]): recovery checks a large record where it lies in the
/// log and parses a copy of its headers.
pub(crate) fn parse_with(
    p: &[u8],
    elide: usize,
    check: impl FnOnce(&[u8]) -> u32,
) -> Result<Record<'_>, RecFault> {
    let mut groups = Vec::new();
    let head = parse_into(p, elide, check, Some(&mut groups))?;
    Ok(Record { head, groups })
}

/// [`parse_with`] that appends the groups to `out` (`None`: validates them only)
/// instead of allocating a list per record: recovery parses every scanned record
/// twice, once to check it and once to plan its groups. On an error `out` may hold
/// some of the record's groups.
pub(crate) fn parse_into<'a>(
    p: &'a [u8],
    elide: usize,
    check: impl FnOnce(&[u8]) -> u32,
    out: Option<&mut Vec<Group<'a>>>,
) -> Result<Head, RecFault> {
    let min = if elide == FULL { 64 } else { HEADER };
    if p.len() < min || p[..32].iter().all(|&b| b == 0) {
        return Err(RecFault::Empty);
    }
    let head = peek(p);
    let stored = stored_check(p);
    if head.flags & F_PAD != 0 {
        if stored != check(&p[..HEADER]) {
            return Err(RecFault::BadCheck);
        }
        return Ok(head);
    }
    if elide == FULL && head.lines * 64 != p.len() {
        return Err(RecFault::BadShape);
    }
    if crate::keep_step(3) && stored != check(p) {
        return Err(RecFault::BadCheck);
    }
    shape(p, head, elide, out)?;
    Ok(head)
}

/// The structure of bytes [`parse`] accepted before, without checking them again
/// (recovery parses its own copy of a scanned record once per group it replays; the
/// check of a 16 MiB record costs milliseconds). The structure is still validated, so
/// other bytes give an error, never a panic.
pub fn reparse(p: &[u8]) -> Result<Record<'_>, RecFault> {
    reparse_with(p, FULL)
}

/// [`reparse`] of a whole record or of a copy ([`parse_with`]'s `elide`).
pub(crate) fn reparse_with(p: &[u8], elide: usize) -> Result<Record<'_>, RecFault> {
    parse_with(p, elide, stored_check)
}

/// [`reparse_with`] appending the groups to `out` ([`parse_into`]).
pub(crate) fn reparse_into<'a>(
    p: &'a [u8],
    elide: usize,
    out: &mut Vec<Group<'a>>,
) -> Result<Head, RecFault> {
    parse_into(p, elide, stored_check, Some(out))
}

/// The stored check word, standing in for the check of bytes parsed before.
fn stored_check(q: &[u8]) -> u32 {
    u32_at(q, 24)
}

/// The little-endian word at `at` of `b`. Panics if `b` is too short: every caller
/// has checked the length first.
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// The little-endian 32-bit word at `at` of `b` (as [`u64_at`]).
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

/// A copy of the `n`-byte record whose bytes `read(at, buf)` fetches, holding its
/// header, group and entry headers, and the data of every entry except the relative
/// entries of `elide` bytes and more, which it leaves out (no bytes in the copy:
/// [`Entry::in_log`]). Recovery copies a large record this way and keeps its large
/// entries in the log, so the copy of a 16 MiB undo record takes a few hundred bytes
/// of DRAM, not 16 MiB. `None` when the structure runs past `n` bytes; other nonsense
/// is left to [`parse_with`] (with the same `elide`), which validates the copy as any
/// record.
pub(crate) fn copy_headers(
    n: usize,
    elide: usize,
    mut read: impl FnMut(usize, &mut [u8]),
) -> Option<Vec<u8>> {
    // `at` walks the record in the log, `b` grows with what is copied.
    let mut b = Vec::with_capacity(256);
    let mut take = |b: &mut Vec<u8>, at: usize, k: usize| -> Option<()> {
        at.checked_add(k).filter(|&end| end <= n)?;
        let from = b.len();
        b.resize(from + k, 0);
        read(at, &mut b[from..]);
        Some(())
    };
    take(&mut b, 0, HEADER)?;
    let mut at = HEADER;
    for _ in 0..peek(&b).ngroups.min(MAX_GROUPS) {
        take(&mut b, at, GROUP_HEADER)?;
        let g = b.len() - GROUP_HEADER;
        let (kind, count) = (b[g + 8], u16::from_le_bytes([b[g + 10], b[g + 11]]));
        at += GROUP_HEADER;
        let (hdr, len_at) = entry_header(kind);
        for _ in 0..count {
            take(&mut b, at, hdr)?;
            let h = b.len() - hdr;
            let len = u32::from_le_bytes(b[h + len_at..h + len_at + 4].try_into().ok()?) as usize;
            let padded = len.next_multiple_of(8);
            if !elided(kind, len, elide) {
                take(&mut b, at + hdr, padded)?;
            }
            at = at.checked_add(hdr + padded)?;
        }
    }
    (at <= n).then_some(b)
}

/// The groups of a record whose header `head` passed its check, appended to `out` (or
/// only validated): of the whole record `p`, or of a copy of it that left out the data
/// of relative entries of `elide` bytes and more (whose place in the record still
/// counts against its `lines`).
fn shape<'a>(
    p: &'a [u8],
    head: Head,
    elide: usize,
    mut out: Option<&mut Vec<Group<'a>>>,
) -> Result<(), RecFault> {
    if head.flags & !KNOWN_FLAGS != 0 || head.ngroups > MAX_GROUPS || head.seq == 0 {
        return Err(RecFault::BadShape);
    }
    if let Some(o) = out.as_deref_mut() {
        o.reserve(head.ngroups);
    }
    // `at` in the copy, `v` in the whole record.
    let (mut at, mut v, lines_end) = (HEADER, HEADER, head.lines.saturating_mul(64));
    for index in 0..head.ngroups {
        let g = p.get(at..at + GROUP_HEADER).ok_or(RecFault::BadShape)?;
        let key = u64_at(g, 0);
        let (kind, mode) = (g[8], g[9]);
        let n = u16::from_le_bytes([g[10], g[11]]) as usize;
        if kind > G_ABS {
            return Err(RecFault::BadShape);
        }
        let start = at + GROUP_HEADER;
        let vstart = v + GROUP_HEADER;
        let (mut e, mut ve) = (start, vstart);
        let (hdr, len_at) = entry_header(kind);
        for _ in 0..n {
            let h = p.get(e..e + hdr).ok_or(RecFault::BadShape)?;
            let len = u32_at(h, len_at) as usize;
            let whole = hdr + len.next_multiple_of(8);
            let here = if elided(kind, len, elide) { hdr } else { whole };
            e = e.checked_add(here).ok_or(RecFault::BadShape)?;
            ve = ve.checked_add(whole).ok_or(RecFault::BadShape)?;
            if e > p.len() || ve > lines_end {
                return Err(RecFault::BadShape);
            }
        }
        if let Some(o) = out.as_deref_mut() {
            o.push(Group {
                index,
                key,
                kind,
                mode,
                entries: &p[start..e],
                n,
                at: vstart,
                elide,
            });
        }
        (at, v) = (e, ve);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_word_from_another_record_counts_every_group_live() {
        let mut b = Builder::new();
        for k in 0..3u64 {
            b.group(k * 64, G_REL, 0);
            b.rel(0, &[1]);
        }
        b.finish(7, 0, true, 0, 1);
        let mut p = b.part(0).0.to_vec();
        let mut h = parse(&p, 0, 1).unwrap().head;
        assert_eq!(live_mask(&h, 0, 1), 0b111);
        // Group 1 written back: the mask loses its bit, the tag stays.
        h.live = (h.live & !0b010) | live_tag(7, 0, 1);
        assert_eq!(live_mask(&h, 0, 1), 0b101);
        // A stale word (another record's tag, or zero) is not trusted.
        h.live = 0;
        assert_eq!(live_mask(&h, 0, 1), 0b111);
        p[LIVE_OFF..LIVE_OFF + 8].copy_from_slice(&live_tag(8, 0, 1).to_le_bytes());
        assert_eq!(live_mask(&parse(&p, 0, 1).unwrap().head, 0, 1), 0b111);
    }

    #[test]
    fn an_eight_byte_update_is_one_line() {
        let mut b = Builder::new();
        b.group(0x10_0000, G_REL, 0);
        b.rel(40, &7u64.to_le_bytes());
        assert_eq!(b.finish(5, 0, true, 2, 9), 1);
        assert_eq!(b.part(0).0.len(), 64);
        let r = parse(b.part(0).0, 2, 9).unwrap();
        assert_eq!(r.head.seq, 5);
        assert_eq!(r.head.flags, F_COMMIT);
        assert_eq!(live_mask(&r.head, 2, 9), 1);
        let e: Vec<_> = r.groups()[0].entries().collect();
        assert_eq!(
            e,
            vec![Entry {
                off: 0x10_0028,
                data: &7u64.to_le_bytes(),
                len: 8,
                at: HEADER + GROUP_HEADER + 8,
            }]
        );
    }

    #[test]
    fn a_group_of_more_entries_than_its_count_holds_continues_in_another() {
        let mut b = Builder::new();
        b.group(0x8000, G_REL, 0);
        for i in 0..70_000u32 {
            b.rel(i * 32, &u64::from(i).to_le_bytes());
        }
        assert_eq!(b.finish(9, F_UNDO, false, 0, 3), 1);
        let r = parse(b.part(0).0, 0, 3).unwrap();
        assert_eq!(r.groups().len(), 2);
        let e: Vec<Entry<'_>> = r.groups().iter().flat_map(Group::entries).collect();
        assert_eq!(e.len(), 70_000);
        for (i, e) in e.iter().enumerate() {
            assert_eq!(
                (e.off, e.data),
                (0x8000 + i as u64 * 32, &(i as u64).to_le_bytes()[..])
            );
        }
    }

    #[test]
    fn a_single_record_equals_the_one_built_entry_by_entry() {
        let writes: [(u32, &[u8]); 3] = [(8, &[1; 8]), (100, &[2; 3]), (400, &[3; 70])];
        let mut b = Builder::new();
        b.group(0x4000, G_REL, 1);
        for (off, d) in writes {
            b.rel(off, d);
        }
        b.finish(11, 0, true, 2, 5);
        let built = b.part(0).0.to_vec();
        let mut s = Builder::new();
        let single = s
            .single(0x4000, 1, writes.iter().copied(), 11, 2, 5)
            .to_vec();
        assert_eq!(single, built);
        assert_eq!((s.parts(), s.part(0).0), (1, &built[..]));
    }

    /// A record of a large and small relative entries and a metadata entry.
    fn mixed_record() -> Vec<u8> {
        let mut b = Builder::new();
        b.group(0x4000, G_REL, 0);
        b.rel(0, &[1; 20]);
        b.rel(64, &[2; 3000]);
        b.rel(8, &[3; 5]);
        b.group(0x100, G_ABS, 0);
        b.abs(0x108, &[4; 4000]);
        assert_eq!(b.finish(3, 0, true, 1, 2), 1);
        b.part(0).0.to_vec()
    }

    #[test]
    fn a_copy_without_large_entries_parses_to_the_same_entries_with_their_places() {
        let p = mixed_record();
        let whole = parse(&p, 1, 2).unwrap();
        let copy = copy_headers(p.len(), 1000, |at, buf| {
            buf.copy_from_slice(&p[at..at + buf.len()]);
        })
        .unwrap();
        assert!(copy.len() < p.len() - 2900, "the 3000-byte entry stays out");
        let part = reparse_with(&copy, 1000).unwrap();
        let w: Vec<Entry<'_>> = whole.groups().iter().flat_map(Group::entries).collect();
        let c: Vec<Entry<'_>> = part.groups().iter().flat_map(Group::entries).collect();
        assert_eq!(w.len(), 4);
        for (w, c) in w.iter().zip(&c) {
            assert_eq!((w.off, w.len, w.at), (c.off, c.len, c.at));
            // The entry's place in the record holds its bytes.
            assert_eq!(&p[w.at..w.at + w.len], w.data);
            // Only the large relative entry is left out (absolute ones never are).
            assert_eq!(c.in_log(), w.len == 3000);
            if !c.in_log() {
                assert_eq!(c.data, w.data);
            }
        }
    }

    #[test]
    fn a_copy_whose_entries_run_past_the_record_is_refused() {
        let p = mixed_record();
        let read = |at: usize, buf: &mut [u8]| buf.copy_from_slice(&p[at..at + buf.len()]);
        // Shorter than its entries say: no copy, and no read past the end.
        assert!(copy_headers(p.len() - 64 * 10, 1000, read).is_none());
        // A copy whose header claims fewer lines than its entries span.
        let mut copy = copy_headers(p.len(), 1000, read).unwrap();
        let lines = (p.len() / 64 - 10) as u32;
        copy[8..12].copy_from_slice(&lines.to_le_bytes());
        assert_eq!(reparse_with(&copy, 1000).err(), Some(RecFault::BadShape));
    }

    #[test]
    fn groups_split_into_parts_and_only_the_last_commits() {
        let mut b = Builder::new();
        for k in 0..54u64 {
            b.group(k * 64, G_ABS, 1);
            b.abs(k * 64 + 8, &[k as u8; 3]);
        }
        assert_eq!(b.finish(9, 0, true, 0, 1), 2);
        let r0 = parse(b.part(0).0, 0, 1).unwrap();
        let r1 = parse(b.part(1).0, 0, 1).unwrap();
        assert_eq!((r0.groups().len(), r0.head.flags), (48, 0));
        assert_eq!((r1.groups().len(), r1.head.flags), (6, F_COMMIT));
        assert_eq!(live_mask(&r0.head, 0, 1), LIVE_MASK);
        let e: Vec<_> = r1.groups()[5].entries().collect();
        assert_eq!(e[0].off, 53 * 64 + 8);
        assert_eq!(e[0].data, &[53; 3]);
    }

    #[test]
    fn the_live_word_is_outside_the_check_and_everything_else_inside() {
        let mut b = Builder::new();
        b.group(4096, G_REL, 0);
        b.rel(0, &[1; 100]);
        b.finish(3, 0, true, 1, 5);
        let mut p = b.part(0).0.to_vec();
        p[LIVE_OFF] = 0;
        assert!(
            parse(&p, 1, 5).is_ok(),
            "clearing live bits keeps the record valid"
        );
        for byte in (0..p.len()).filter(|b| !(16..24).contains(b)) {
            let mut q = p.clone();
            q[byte] ^= 0x10;
            assert!(parse(&q, 1, 5).is_err(), "flip at {byte} accepted");
        }
        assert_eq!(
            parse(&p, 2, 5).unwrap_err(),
            RecFault::BadCheck,
            "other lane"
        );
    }

    #[test]
    fn group_counts_beyond_a_record_never_overflow_the_live_mask() {
        let mut p = alloc::vec![0u8; 64];
        seal(&mut p, 1, 0xFFFF, 0, 0, 1);
        assert_eq!(parse(&p, 0, 1).unwrap_err(), RecFault::BadShape);
        let h = peek(&p);
        assert_eq!(live_mask(&h, 0, 1), LIVE_MASK);
    }

    #[test]
    fn padding_records_validate_from_one_line() {
        let p = pad(100, 4, 3, 8);
        assert_eq!(p.len(), 64);
        let r = parse(&p, 3, 8).unwrap();
        assert_eq!(r.head.lines, 100);
        assert_eq!(r.head.flags, F_PAD);
    }
}
