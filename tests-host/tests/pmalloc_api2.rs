//! `Heap` as an `allocator_api2` allocator: transient collections in pool memory.
//!
//! Blocks come from the heap's volatile free state (no header, no record), so they must
//! never overlap a persistent object, must be reusable after they are freed, and are all
//! free again after a reopen; a run created for them has its chunk entries durable
//! (the chunk table never lags the volatile state). `Heap::check` runs once they are
//! freed: a live transient block has no header, so check would call it a free slot
//! marked allocated.

use std::path::PathBuf;

use allocator_api2::vec::Vec as AVec;
use arch::{FileMedia, FileOptions, Media};
use pmalloc::{CreateOptions, Heap, Init, OpenOptions};

fn pool_path(name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("pmalloc-api2-{}-{name}.pool", std::process::id()))
}

#[test]
fn vec_new_in_heap_grows_keeps_its_contents_and_frees_its_blocks() {
    let path = pool_path("vec");
    let media = FileMedia::open(
        &path,
        FileOptions {
            create_len: Some(32 << 20),
            force_pmem: true,
            eadr: false,
        },
    )
    .unwrap();
    let heap = Heap::create(media, &CreateOptions::new("api2", [0x42; 16])).unwrap();
    let root = heap
        .alloc_into(Heap::<FileMedia>::ROOT, 64, 8, 1, Init::Zeroed)
        .unwrap();
    let persistent = heap
        .alloc_into(root.field(0), 1000, 8, 2, Init::Bytes(&[0xEE; 1000]))
        .unwrap();
    let base = heap.media().base_ptr().unwrap().as_ptr() as usize;
    let free_before = heap.check().unwrap();
    {
        // Grows through many classes and into an extent (1 MiB of u64s).
        let mut v: AVec<u64, _> = AVec::new_in(&heap);
        for i in 0..131_072u64 {
            v.push(i * 3);
        }
        let at = v.as_ptr() as usize - base;
        assert!(at >= heap.layout().heap_off && at < heap.layout().heap_end());
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        // Small vectors of several classes side by side with the persistent object.
        let mut small: std::vec::Vec<AVec<u32, _>> = (0..50u32)
            .map(|k| {
                let mut s = AVec::new_in(&heap);
                s.extend(0..k * 7);
                s
            })
            .collect();
        for (k, s) in small.iter().enumerate().skip(1) {
            assert_eq!(s.len(), k * 7);
            assert!(s.iter().enumerate().all(|(i, &x)| x as usize == i));
            let lo = s.as_ptr() as usize - base;
            let hi = lo + s.capacity() * 4;
            let p = persistent.raw() as usize;
            assert!(hi <= p || lo >= p + 1000, "overlaps the object");
        }
        small.truncate(10);
        v.shrink_to_fit();
    }
    // Every transient block is back: the same free chunks as before (runs created for
    // them stay, empty, until a checkpoint releases them).
    heap.checkpoint();
    assert_eq!(heap.check().unwrap(), free_before);
    let mut b = [0u8; 1000];
    heap.read_bytes(persistent, 0, &mut b).unwrap();
    assert_eq!(b, [0xEE; 1000], "the persistent object is untouched");
    // A reopen sees no trace of transient blocks.
    let media = heap.close();
    let (heap, report) = Heap::open(media, &OpenOptions::default()).unwrap();
    assert!(report.damage.is_empty());
    assert_eq!(heap.objects().count(), 2);
    drop(heap);
    std::fs::remove_file(&path).unwrap();
}
