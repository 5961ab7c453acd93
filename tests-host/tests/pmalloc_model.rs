//! Random alloc / free / reopen / crash sequences against a model of the heap.
//!
//! The model is a set of 24 pointer fields in a root object, each null or holding an
//! object of a known size and type. After every step the heap must agree: field
//! values, object sizes and types, the set of allocated objects, and `check`. Reopens
//! are clean (close) or crashes (only fenced data survives).

use std::collections::BTreeSet;

use arch::sim::SimMedia;
use arch::Media;
use pmalloc::{CreateOptions, Heap, Init, OpenOptions};
use proptest::prelude::*;

const FIELDS: usize = 24;

#[derive(Debug, Clone)]
enum Action {
    Alloc {
        field: usize,
        size: usize,
        align_log: u32,
        type_num: u32,
    },
    Free {
        field: usize,
    },
    Reopen {
        clean: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..FIELDS, prop_oneof![1..300usize, 300..20_000usize, 200_000..700_000usize], 0..13u32, 0..1000u32)
            .prop_map(|(field, size, align_log, type_num)| Action::Alloc { field, size, align_log, type_num }),
        4 => (0..FIELDS).prop_map(|field| Action::Free { field }),
        1 => any::<bool>().prop_map(|clean| Action::Reopen { clean }),
    ]
}

fn reopen(heap: Heap<SimMedia>, clean: bool) -> Heap<SimMedia> {
    let img = if clean {
        heap.close().durable_image()
    } else {
        heap.media().durable_image()
    };
    Heap::open(
        SimMedia::from_image(img),
        &OpenOptions {
            layout: Some("model"),
        },
    )
    .unwrap()
    .0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn heap_matches_the_model(actions in proptest::collection::vec(action(), 1..120)) {
        let mut heap = Heap::create(SimMedia::new(16 << 20), &CreateOptions::new("model", [3; 16])).unwrap();
        let root = heap.alloc_into(Heap::<SimMedia>::ROOT, FIELDS * 8, 8, 1, Init::Zeroed).unwrap().raw();
        let mut model: Vec<Option<(u64, usize, u32)>> = vec![None; FIELDS];
        for a in actions {
            match a {
                Action::Alloc { field, size, align_log, type_num } => {
                    let dest = root + field as u64 * 8;
                    let r = heap.alloc_into(dest, size, 1 << align_log, type_num, Init::Zeroed);
                    match (model[field], r) {
                        (Some(_), Err(pmalloc::AllocError::DestNotNull { .. }))
                        | (None, Err(pmalloc::AllocError::OutOfSpace { .. })) => {}
                        (None, Ok(p)) => {
                            prop_assert_eq!(p.raw() % (1u64 << align_log), 0);
                            model[field] = Some((p.raw(), size, type_num));
                        }
                        (m, r) => prop_assert!(false, "alloc into {field} with model {m:?} gave {r:?}"),
                    }
                }
                Action::Free { field } => {
                    let r = heap.free_from(root + field as u64 * 8);
                    match (model[field], r) {
                        (Some(_), Ok(())) => model[field] = None,
                        (None, Err(pmalloc::FreeError::DestNull { .. })) => {}
                        (m, r) => prop_assert!(false, "free of {field} with model {m:?} gave {r:?}"),
                    }
                }
                Action::Reopen { clean } => heap = reopen(heap, clean),
            }
            heap.check().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut expect = BTreeSet::from([root]);
            for (i, m) in model.iter().enumerate() {
                let v = heap.media().read_u64(root as usize + i * 8);
                if let Some((p, size, ty)) = m {
                    prop_assert_eq!(v, *p);
                    let info = heap.info(*p).unwrap();
                    prop_assert_eq!((info.size, info.type_num), (*size as u64, *ty));
                    expect.insert(*p);
                } else {
                    prop_assert_eq!(v, 0);
                }
            }
            let found: BTreeSet<u64> = heap.objects().map(|o| o.ptr).collect();
            prop_assert_eq!(found, expect);
        }
        // Free everything: the heap returns to its empty-but-root state.
        for (i, m) in model.iter().enumerate() {
            if m.is_some() {
                heap.free_from(root + i as u64 * 8).unwrap();
            }
        }
        let s = heap.stats();
        prop_assert_eq!(s.objects, 1);
        prop_assert_eq!(s.extents, 0);
        prop_assert_eq!(s.free_chunks as usize + s.runs.iter().map(|&r| r as usize).sum::<usize>()
            + (s.chunks as usize - s.free_chunks as usize - s.runs.iter().map(|&r| r as usize).sum::<usize>()), s.chunks as usize);
    }
}
