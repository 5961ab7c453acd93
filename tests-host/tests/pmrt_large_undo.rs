//! Recovery of undo records of hundreds of KiB and of megabytes, which recovery checks
//! where they lie in the log and replays by copying their large entries from the log to
//! their homes (`pmrt::recover`, records scanned in place; from 1 MiB the check and the
//! copy run in parts on several threads): a crash inside an in-place rewrite of a
//! 640 KiB or a 3 MiB object rolls back every byte, and a damaged byte anywhere in the
//! record's headers or large entries (in any part) makes recovery refuse the whole
//! record rather than store zeros or part of it (or panic).

use std::panic::{catch_unwind, AssertUnwindSafe};

use arch::sim::{HookAction, SimEvent, SimMedia};
use pmalloc::OpenOptions;
use pmrt::area::Area;
use pmrt::recover::scan_logs;
use pmrt::{PPtr, Pool, PoolOptions};

const POOL: usize = 32 << 20;
/// An object rewritten in ten 64 KiB ranges (undo entries far above the in-log size).
const SMALL: Rewrite = Rewrite {
    obj: 640 << 10,
    range: 64 << 10,
};
/// An object rewritten in one write: one undo entry of 3 MiB, checked and copied in
/// parts.
const LARGE: Rewrite = Rewrite {
    obj: 3 << 20,
    range: 3 << 20,
};

/// The object's size and the length of each write that rewrites it.
#[derive(Clone, Copy)]
struct Rewrite {
    obj: usize,
    range: usize,
}
const OLD: u8 = 0x3C;
const NEW: u8 = 0xC3;

/// A pool holding one `w.obj`-byte object of `OLD` as its root, and the durable image
/// of a crash inside a transaction that rewrote it with `NEW` in place: after the undo
/// record and the new bytes were durable, before the commit record.
fn crashed_rewrite(w: Rewrite) -> Vec<u8> {
    let Rewrite { obj: len, range } = w;
    let media = SimMedia::new(POOL);
    let mut opts = PoolOptions::new("pmrt-large-undo", [0x1A; 16]);
    opts.lanes = 1;
    opts.heap.runtime_len = Some(8 << 20);
    let pool = Pool::create(&media, &opts).unwrap();
    let obj = pool
        .transaction(|tx| {
            let p = tx.alloc_bytes(len, 64, 1, &vec![OLD; len])?;
            tx.set_root(p);
            Ok::<_, pmrt::Error>(p)
        })
        .unwrap();
    pool.coalesce();
    let last = obj.raw() as usize + len - 1;
    media.set_hook(Box::new(move |ev, st| {
        let stored = st.media_image()[last] == NEW;
        if matches!(ev, SimEvent::AfterFence { .. }) && stored {
            HookAction::Crash
        } else {
            HookAction::Continue
        }
    }));
    arch::sim::silence_crash_panics();
    let new = vec![NEW; range];
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.transaction(|tx| {
            for k in 0..len / range {
                tx.write_bytes(obj.cast::<u8>(), k * range, &new)?;
            }
            Ok::<_, pmrt::Error>(())
        })
    }));
    media.clear_hook();
    assert!(r.is_err(), "the rewrite must crash before its commit");
    media.durable_image()
}

/// The object's bytes after recovering `img`, and the recovery report.
fn recover(img: Vec<u8>, w: Rewrite) -> (Vec<u8>, pmrt::RecoveryReport) {
    let (pool, _, report) = Pool::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    pool.heap().check().unwrap();
    let root: PPtr<u8> = pool.root().expect("the root object");
    let mut bytes = vec![0u8; w.obj];
    pool.read_bytes(root, 0, &mut bytes).unwrap();
    (bytes, report)
}

fn rolls_back_every_byte(w: Rewrite) {
    let img = crashed_rewrite(w);
    let (bytes, report) = recover(img, w);
    assert_eq!(
        (report.rolled_back, report.incomplete),
        (1, 1),
        "{report:?}"
    );
    let wrong = bytes.iter().position(|&b| b != OLD);
    assert_eq!(wrong, None, "byte {wrong:?} not rolled back");
}

#[test]
fn a_crashed_in_place_rewrite_of_640_kib_rolls_back_every_byte() {
    rolls_back_every_byte(SMALL);
}

#[test]
fn a_crashed_in_place_rewrite_of_3_mib_in_one_write_rolls_back_every_byte() {
    rolls_back_every_byte(LARGE);
}

fn a_damaged_byte_makes_recovery_refuse_the_whole_record(w: Rewrite) {
    let img = crashed_rewrite(w);
    let m = SimMedia::from_image(img.clone());
    let heap = pmalloc::Heap::open(&m, &OpenOptions::default()).unwrap().0;
    let (off, len) = heap.runtime_area();
    let area = Area::open(&m, off, len, heap.salt()).unwrap();
    let scan = scan_logs(&m, &area, heap.salt());
    let big = scan
        .records
        .iter()
        .find(|r| r.bytes.len() > w.obj)
        .expect("the undo record");
    let (at, n) = (area.log_off(big.lane) + big.pos, big.bytes.len());
    for (name, damage_at) in [
        // The record's structure, which recovery walks to copy the headers: the first
        // group's entry count and its first entry's length (high byte).
        ("entry count", at + 32 + 11),
        ("entry length", at + 32 + 16 + 7),
        ("first entry", at + 4096),
        // Around the cut between two threads' parts, and in the last part.
        ("before the middle", at + n / 2 - 64),
        ("middle", at + n / 2),
        ("after the middle", at + n / 2 + 4097),
        ("last line", at + n - 40),
    ] {
        let mut img = img.clone();
        img[damage_at] ^= 0x40;
        let (bytes, report) = recover(img, w);
        // Not one byte of the record replayed: the new bytes stay, and no zeros from
        // the partial copy recovery keeps of large records.
        assert_eq!(report.rolled_back, 0, "{name}: {report:?}");
        let wrong = bytes.iter().position(|&b| b != NEW);
        assert_eq!(wrong, None, "{name}: byte {wrong:?} changed");
    }
}

#[test]
fn a_damaged_byte_in_a_large_undo_entry_makes_recovery_refuse_the_whole_record() {
    a_damaged_byte_makes_recovery_refuse_the_whole_record(SMALL);
}

#[test]
fn a_damaged_byte_in_any_part_of_a_3_mib_undo_entry_makes_recovery_refuse_the_record() {
    a_damaged_byte_makes_recovery_refuse_the_whole_record(LARGE);
}
