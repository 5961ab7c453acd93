//! Recovery of undo records of hundreds of KiB, which recovery checks where they lie in
//! the log and replays by copying their large entries from the log to their homes
//! (`pmrt::recover`, records scanned in place): a crash inside an in-place rewrite of a
//! 640 KiB object rolls back every byte, and a damaged byte anywhere in the record's
//! headers or large entries makes recovery refuse the whole record rather than store
//! zeros or part of it (or panic).

use std::panic::{catch_unwind, AssertUnwindSafe};

use arch::sim::{HookAction, SimEvent, SimMedia};
use pmalloc::OpenOptions;
use pmrt::area::Area;
use pmrt::recover::scan_logs;
use pmrt::{PPtr, Pool, PoolOptions};

const POOL: usize = 16 << 20;
const OBJ: usize = 640 << 10;
/// The rewrite: ten 64 KiB ranges (each an undo entry far above the in-log size).
const RANGE: usize = 64 << 10;
const OLD: u8 = 0x3C;
const NEW: u8 = 0xC3;

/// A pool holding one `OBJ`-byte object of `OLD` as its root, and the durable image of
/// a crash inside a transaction that rewrote it with `NEW` in place: after the undo
/// record and the new bytes were durable, before the commit record.
fn crashed_rewrite() -> Vec<u8> {
    let media = SimMedia::new(POOL);
    let mut opts = PoolOptions::new("pmrt-large-undo", [0x1A; 16]);
    opts.lanes = 1;
    opts.heap.runtime_len = Some(4 << 20);
    let pool = Pool::create(&media, &opts).unwrap();
    let obj = pool
        .transaction(|tx| {
            let p = tx.alloc_bytes(OBJ, 64, 1, &vec![OLD; OBJ])?;
            tx.set_root(p);
            Ok::<_, pmrt::Error>(p)
        })
        .unwrap();
    pool.coalesce();
    let last = obj.raw() as usize + OBJ - 1;
    media.set_hook(Box::new(move |ev, st| {
        let stored = st.media_image()[last] == NEW;
        if matches!(ev, SimEvent::AfterFence { .. }) && stored {
            HookAction::Crash
        } else {
            HookAction::Continue
        }
    }));
    arch::sim::silence_crash_panics();
    let new = vec![NEW; RANGE];
    let r = catch_unwind(AssertUnwindSafe(|| {
        pool.transaction(|tx| {
            for k in 0..OBJ / RANGE {
                tx.write_bytes(obj.cast::<u8>(), k * RANGE, &new)?;
            }
            Ok::<_, pmrt::Error>(())
        })
    }));
    media.clear_hook();
    assert!(r.is_err(), "the rewrite must crash before its commit");
    media.durable_image()
}

/// The object's bytes after recovering `img`, and the recovery report.
fn recover(img: Vec<u8>) -> (Vec<u8>, pmrt::RecoveryReport) {
    let (pool, _, report) = Pool::open(SimMedia::from_image(img), &OpenOptions::default()).unwrap();
    pool.heap().check().unwrap();
    let root: PPtr<u8> = pool.root().expect("the root object");
    let mut bytes = vec![0u8; OBJ];
    pool.read_bytes(root, 0, &mut bytes).unwrap();
    (bytes, report)
}

#[test]
fn a_crashed_in_place_rewrite_of_640_kib_rolls_back_every_byte() {
    let img = crashed_rewrite();
    let (bytes, report) = recover(img);
    assert_eq!(
        (report.rolled_back, report.incomplete),
        (1, 1),
        "{report:?}"
    );
    let wrong = bytes.iter().position(|&b| b != OLD);
    assert_eq!(wrong, None, "byte {wrong:?} not rolled back");
}

#[test]
fn a_damaged_byte_in_a_large_undo_entry_makes_recovery_refuse_the_whole_record() {
    let img = crashed_rewrite();
    let m = SimMedia::from_image(img.clone());
    let heap = pmalloc::Heap::open(&m, &OpenOptions::default()).unwrap().0;
    let (off, len) = heap.runtime_area();
    let area = Area::open(&m, off, len, heap.salt()).unwrap();
    let scan = scan_logs(&m, &area, heap.salt());
    let big = scan
        .records
        .iter()
        .find(|r| r.bytes.len() > OBJ)
        .expect("the undo record");
    let at = area.log_off(big.lane) + big.pos;
    for (name, damage_at) in [
        // The record's structure, which recovery walks to copy the headers: the first
        // group's entry count and its first entry's length (high byte).
        ("entry count", at + 32 + 11),
        ("entry length", at + 32 + 16 + 7),
        ("first entry", at + 4096),
        ("middle", at + big.bytes.len() / 2),
        ("last line", at + big.bytes.len() - 40),
    ] {
        let mut img = img.clone();
        img[damage_at] ^= 0x40;
        let (bytes, report) = recover(img);
        // Not one byte of the record replayed: the new bytes stay, and no zeros from
        // the partial copy recovery keeps of large records.
        assert_eq!(report.rolled_back, 0, "{name}: {report:?}");
        let wrong = bytes.iter().position(|&b| b != NEW);
        assert_eq!(wrong, None, "{name}: byte {wrong:?} changed");
    }
}
