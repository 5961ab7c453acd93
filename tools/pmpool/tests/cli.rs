//! The `pmpool` binary end to end: each subcommand's report, the exit status that
//! scripts rely on (0 done or consistent, 1 damaged, 2 could not run), that inspecting
//! never changes the file (and `check --repair` does), and that damage of each kind
//! is found.

use std::path::{Path, PathBuf};
use std::process::Command;

use arch::{FileMedia, FileOptions, Media};
use pmalloc::{Heap, Init, OpenOptions};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmpool-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary: (exit status, stdout, stderr).
fn pmpool(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pmpool"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 16 MiB pool made by the CLI, with a root of 4 fields holding objects of types
/// 7, 8, 7, 8 allocated through the library; the pool is left unclosed if `close` is
/// false (its last ops are then only in op records).
fn pool_with_objects(dir: &Path, close: bool) -> PathBuf {
    let path = dir.join("objects.pool");
    let (code, _, err) = pmpool(&["create", s(&path), "--size", "16M", "--layout", "cli"]);
    assert_eq!(code, 0, "{err}");
    let media = FileMedia::open(&path, FileOptions::default()).unwrap();
    let (heap, _) = Heap::open(media, &OpenOptions::default()).unwrap();
    let root = heap
        .alloc_into(Heap::<FileMedia>::ROOT, 32, 8, 3, Init::Zeroed)
        .unwrap();
    for (i, size) in [100usize, 5000, 300_000, 64].into_iter().enumerate() {
        heap.alloc_into(root.field(i * 8), size, 8, 7 + (i % 2) as u32, Init::Zeroed)
            .unwrap();
    }
    if close {
        drop(heap.close());
    }
    path
}

#[test]
fn create_then_info_and_check_describe_an_empty_pool() {
    let dir = scratch("create");
    let path = dir.join("a.pool");
    let (code, out, err) = pmpool(&["create", s(&path), "--size", "16M", "--layout", "t1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("16 MiB pool, layout \"t1\", 64 lanes"),
        "{out}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 << 20);
    let (code, out, _) = pmpool(&["info", s(&path)]);
    assert_eq!(code, 0, "{out}");
    for want in [
        "format          PMALLOC version 1",
        "layout name     \"t1\"",
        "pool size       16777216 (16 MiB)",
        "lanes           64 at 0x1000",
        "op records      0 replayed, 0 stale, 0 torn",
        "damage          none",
        "root            none",
        "check           passed",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (code, out, _) = pmpool(&["check", s(&path)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with(&format!("{}: consistent\n", path.display())),
        "{out}"
    );
}

#[test]
fn objects_lists_every_object_in_pool_order_and_filters_by_type() {
    let dir = scratch("objects");
    let path = pool_with_objects(&dir, true);
    let (code, out, _) = pmpool(&["objects", s(&path)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 objects, 305196 bytes"), "{out}");
    assert_eq!(out.matches("(root)").count(), 1, "{out}");
    assert_eq!(out.matches(" extent").count(), 1, "{out}");
    let offsets: Vec<u64> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix("0x"))
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(offsets.len(), 5);
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:x?}");
    let (code, out, _) = pmpool(&["objects", s(&path), "--type", "8"]);
    assert_eq!(code, 0);
    assert!(out.contains("2 objects, 5064 bytes"), "{out}");
    let (_, info, _) = pmpool(&["info", s(&path)]);
    assert!(
        info.contains("objects         5 (305196 bytes asked for"),
        "{info}"
    );
    assert!(info.contains("extents         1"), "{info}");
    assert!(info.contains("(type 3, 32 bytes)"), "{info}");
}

#[test]
fn create_refuses_an_existing_file_a_bad_size_a_small_pool_and_a_long_name() {
    let dir = scratch("refuse");
    let path = dir.join("p");
    assert_eq!(pmpool(&["create", s(&path), "--size", "8M"]).0, 0);
    let (code, _, err) = pmpool(&["create", s(&path), "--size", "8M"]);
    assert_eq!(code, 2);
    assert!(err.contains("file exists (use --force"), "{err}");
    assert_eq!(
        pmpool(&["create", s(&path), "--size", "9M", "--force"]).0,
        0
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 9 << 20);
    let small = dir.join("small");
    let (code, _, err) = pmpool(&["create", s(&small), "--size", "1M"]);
    assert_eq!(code, 2);
    assert!(err.contains("below the minimum"), "{err}");
    assert!(!small.exists(), "a refused pool leaves no file");
    let (code, _, err) = pmpool(&["create", s(&small), "--size", "64Q"]);
    assert_eq!(code, 2);
    assert!(err.contains("\"64Q\""), "{err}");
    let long = "x".repeat(33);
    let (code, _, err) = pmpool(&["create", s(&small), "--size", "8M", "--layout", &long]);
    assert_eq!(code, 2);
    assert!(err.contains("layout name of 33 bytes"), "{err}");
    let (code, _, err) = pmpool(&["info", s(&dir.join("missing"))]);
    assert_eq!(code, 2);
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn check_reports_recovery_on_a_copy_and_repair_writes_it_back() {
    let dir = scratch("repair");
    let path = pool_with_objects(&dir, false);
    let before = std::fs::read(&path).unwrap();
    let replayed = |out: &str| -> u32 {
        let line = out.lines().find(|l| l.contains("op records")).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let (code, out, _) = pmpool(&["check", s(&path)]);
    assert_eq!(code, 0, "{out}");
    assert!(replayed(&out) > 0, "{out}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "check changed the file"
    );
    let (code, again, _) = pmpool(&["info", s(&path)]);
    assert_eq!(code, 0);
    assert_eq!(replayed(&again), replayed(&out));
    let (code, out, _) = pmpool(&["check", s(&path), "--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("recovery written to"), "{out}");
    let (code, out, _) = pmpool(&["check", s(&path)]);
    assert_eq!(code, 0);
    assert_eq!(replayed(&out), 0, "{out}");
    assert!(out.contains("5 objects"), "{out}");
}

#[test]
fn check_exits_1_on_each_kind_of_damage() {
    let dir = scratch("damage");
    // Not a pool at all.
    let zeros = dir.join("zeros");
    std::fs::write(&zeros, vec![0u8; 16 << 20]).unwrap();
    let (code, out, _) = pmpool(&["check", s(&zeros)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DAMAGED: cannot open: no valid pool header"),
        "{out}"
    );
    // A flipped byte in the primary header: repaired from the backup, but damage.
    let path = pool_with_objects(&dir, true);
    let pristine = std::fs::read(&path).unwrap();
    let mut bytes = pristine.clone();
    bytes[40] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let (code, out, _) = pmpool(&["check", s(&path)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("primary invalid (checksum mismatch)"), "{out}");
    let (code, info, _) = pmpool(&["info", s(&path)]);
    assert_eq!(code, 0, "info reports, it does not judge");
    assert!(info.contains("repaired from the backup"), "{info}");
    // A damaged chunk descriptor: set aside by open.
    let media = FileMedia::open(&path, FileOptions::default()).unwrap();
    media.write(0, &pristine[..4096]);
    let (heap, _) = Heap::open(&media, &OpenOptions::default()).unwrap();
    let desc = heap.layout().desc_off(0);
    drop(heap);
    let word = media.read_u64(desc);
    media.write_u64(desc, word ^ 1 << 40);
    media.persist(desc, 8);
    drop(media);
    let (code, out, _) = pmpool(&["check", s(&path)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("structures set aside"), "{out}");
    assert!(out.contains("DAMAGED"), "{out}");
}

/// The main job: a crash mid-load recovers to exactly the committed keys, with the batch
/// in flight all or nothing, in both memory models, across seeds (so crash points fall
/// in different places: early, late, between and inside batches).
#[test]
fn demo_crashes_recovers_and_verifies() {
    let dir = scratch("demo");
    let pool = dir.join("demo.pool");
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 1..=8u64 {
        for direct in [false, true] {
            let seed_s = seed.to_string();
            let mut args = vec![
                "demo",
                "--pool",
                s(&pool),
                "--keys",
                "600",
                "--seed",
                &seed_s,
            ];
            if direct {
                args.push("--direct");
            }
            let (code, out, err) = pmpool(&args);
            assert_eq!(code, 0, "seed {seed} direct {direct}:\n{out}\n{err}");
            assert!(out.contains("result: consistent"), "{out}");
            assert!(
                out.contains("crashed at fence") || out.contains("before its crash point"),
                "{out}"
            );
            for w in ["not applied", "applied (", "none"] {
                if out.contains(&format!("batch in flight: {w}")) {
                    outcomes.insert(w);
                }
            }
        }
    }
    assert!(
        outcomes.contains("not applied") && outcomes.contains("applied ("),
        "both outcomes seen: {outcomes:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
