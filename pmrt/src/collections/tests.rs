use std::collections::HashMap;

use arch::sim::{Rng, SimMedia};
use pmalloc::OpenOptions;

use crate::collections::{PBox, PHashMap, PString, PVec};
use crate::*;

fn pool() -> Pool<SimMedia> {
    Pool::create(SimMedia::new(16 << 20), &PoolOptions::new("coll", [1; 16])).unwrap()
}

fn reopen(p: &Pool<SimMedia>) -> Pool<SimMedia> {
    let img = p.heap().media().durable_image();
    Pool::open(SimMedia::from_image(img), &OpenOptions::default())
        .unwrap()
        .0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, crate::Persistent)]
#[repr(C)]
struct Roots {
    boxed: PBox<u64>,
    vec: PVec<u64>,
    name: PString,
    map: PHashMap<u64, PString>,
}

#[test]
fn derive_gives_distinct_stable_type_numbers() {
    #[derive(Clone, Copy, crate::Persistent)]
    #[repr(C)]
    struct A {
        x: u64,
    }
    #[derive(Clone, Copy, crate::Persistent)]
    #[repr(C)]
    #[persistent(type_num = 77)]
    struct B {
        x: u32,
        y: u32,
    }
    assert_ne!(<A as Persistent>::TYPE_NUM, 0);
    assert_ne!(<A as Persistent>::TYPE_NUM, <Roots as Persistent>::TYPE_NUM);
    assert_eq!(<B as Persistent>::TYPE_NUM, 77);
    assert_eq!(
        <A as Persistent>::TYPE_NUM,
        type_num_of(concat!(module_path!(), "::A"))
    );
}

#[test]
fn collections_survive_a_crash_and_abort_atomically() {
    let p = pool();
    let roots = p
        .transaction(|tx| {
            let r = Roots {
                boxed: PBox::new(tx, 5)?,
                vec: PVec::new(tx)?,
                name: PString::new(tx, "héllo")?,
                map: PHashMap::new(tx)?,
            };
            let root = tx.alloc(r)?;
            tx.set_root(root);
            Ok::<_, Error>(r)
        })
        .unwrap();
    let mut model: HashMap<u64, String> = HashMap::new();
    let mut rng = Rng::new(3);
    for i in 0..300u64 {
        let key = rng.below(64);
        let val = format!("value-{i}-{}", "x".repeat(rng.below(40) as usize));
        let remove = rng.chance(1, 5);
        p.transaction(|tx| {
            roots.vec.push(tx, i)?;
            *roots.boxed.get_mut(tx)? += 1;
            if remove {
                if let Some(old) = roots.map.remove(tx, &key)? {
                    old.free(tx)?;
                }
            } else {
                let s = PString::new(tx, &val)?;
                if let Some(old) = roots.map.insert(tx, key, s)? {
                    old.free(tx)?;
                }
            }
            Ok::<_, Error>(())
        })
        .unwrap();
        if remove {
            model.remove(&key);
        } else {
            model.insert(key, val);
        }
    }
    // An aborted transaction changes nothing.
    let r: Result<(), TxError<Error>> = p.transaction(|tx| {
        roots.vec.push(tx, 999)?;
        let s = PString::new(tx, "no")?;
        roots.map.insert(tx, 1000, s)?;
        roots.name.push_str(tx, " world")?;
        Err(Error::Freed { obj: 0 })
    });
    assert!(r.is_err());
    let q = reopen(&p);
    let mut r = &q;
    assert_eq!(roots.boxed.get(&mut r).unwrap(), 305);
    assert_eq!(
        roots.vec.to_vec(&mut r).unwrap(),
        (0..300).collect::<Vec<u64>>()
    );
    assert_eq!(roots.name.to_string(&mut r).unwrap(), "héllo");
    let got: HashMap<u64, String> = roots
        .map
        .entries(&mut r)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.to_string(&mut r).unwrap()))
        .collect();
    assert_eq!(got, model);
    assert_eq!(roots.map.len(&mut r).unwrap(), model.len() as u64);
    for k in 0..64u64 {
        assert_eq!(
            roots
                .map
                .get(&mut r, &k)
                .unwrap()
                .map(|s| s.to_string(&mut r).unwrap()),
            model.get(&k).cloned()
        );
    }
    q.heap().check().unwrap();
}

#[test]
fn damaged_collection_headers_are_typed_errors() {
    let p = pool();
    let (v, s) = p
        .transaction(|tx| {
            let v: PVec<u64> = PVec::new(tx)?;
            v.extend(tx, &[1, 2, 3])?;
            let s = PString::new(tx, "ok")?;
            Ok::<_, Error>((v, s))
        })
        .unwrap();
    // len > cap
    p.transaction(|tx| tx.write(v.as_ptr(), 0, &1000u64))
        .unwrap();
    let mut r = &p;
    assert!(matches!(v.to_vec(&mut r), Err(Error::Corrupt { .. })));
    // Invalid UTF-8 in a string.
    let data: u64 = p
        .read(PPtr::<[u64; 3]>::from_raw(s.as_ptr().raw()))
        .unwrap()[2];
    p.transaction(|tx| tx.write_bytes(PPtr::<u8>::from_raw(data), 0, &[0xFF, 0xFE]))
        .unwrap();
    let mut r = &p;
    assert!(matches!(s.to_string(&mut r), Err(Error::NotUtf8 { .. })));
}
