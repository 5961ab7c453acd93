//! `PHashMap<K, V>`: a persistent hash map (open addressing, linear probing).
//!
//! Buckets are `[state: u64][K][V]`, padded to 8 bytes, in one array object; state 0 is
//! empty, 1 full, 2 a tombstone. Keys are compared and hashed (FNV-1a) as bytes, which
//! `Persistent` makes exact. The table doubles when more than 7/10 of it is used (full
//! or tombstone); every change is one transaction's writes, so a crash never leaves a
//! half-inserted key or a half-grown table.

use alloc::vec::Vec;
use core::marker::PhantomData;

use arch::Media;
use pmalloc::{bytes_of, from_bytes, PPtr, Persistent};

use super::Read;
use crate::error::Error;
use crate::tx::Tx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, crate::Persistent)]
#[repr(C)]
#[persistent(type_num = 0x00F0_0002)]
struct MapHead {
    len: u64,
    cap: u64,
    used: u64,
    buckets: PPtr<u8>,
}

const EMPTY: u64 = 0;
const FULL: u64 = 1;
const TOMB: u64 = 2;

/// A hash map from `K` to `V` in the pool.
#[repr(transparent)]
pub struct PHashMap<K, V> {
    head: PPtr<MapHead>,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for PHashMap<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for PHashMap<K, V> {}
impl<K, V> PartialEq for PHashMap<K, V> {
    fn eq(&self, o: &Self) -> bool {
        self.head == o.head
    }
}
impl<K, V> Eq for PHashMap<K, V> {}
impl<K, V> core::fmt::Debug for PHashMap<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PHashMap({:#x})", self.head.raw())
    }
}

// SAFETY: a PHashMap is a PPtr (a u64 offset): every bit pattern is a (checked) offset.
unsafe impl<K: 'static, V: 'static> Persistent for PHashMap<K, V> {}

fn hash(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &x in b {
        h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
    }
    h ^ (h >> 29)
}

impl<K: Persistent, V: Persistent> PHashMap<K, V> {
    const KEY: usize = core::mem::size_of::<K>();
    const STRIDE: usize =
        (8 + core::mem::size_of::<K>() + core::mem::size_of::<V>()).next_multiple_of(8);

    /// An empty map.
    pub fn new<M: Media>(tx: &mut Tx<'_, M>) -> Result<Self, Error> {
        if core::mem::align_of::<K>() > 8 || core::mem::align_of::<V>() > 8 {
            return Err(Error::Alignment {
                align: core::mem::align_of::<K>().max(core::mem::align_of::<V>()),
            });
        }
        let head = tx.alloc(MapHead {
            len: 0,
            cap: 0,
            used: 0,
            buckets: PPtr::NULL,
        })?;
        Ok(PHashMap {
            head,
            _t: PhantomData,
        })
    }

    /// The header pointer.
    pub fn as_ptr(self) -> PPtr<()> {
        self.head.cast()
    }

    /// Rebuilds a handle from a stored header pointer.
    pub fn from_ptr(p: PPtr<()>) -> Self {
        PHashMap {
            head: p.cast(),
            _t: PhantomData,
        }
    }

    fn head<R: Read>(self, r: &mut R) -> Result<MapHead, Error> {
        let h: MapHead = r.read_at(self.head.raw(), 0)?;
        if h.len > h.used
            || h.used > h.cap
            || (h.cap > 0 && (h.buckets.is_null() || !h.cap.is_power_of_two()))
        {
            return Err(Error::Corrupt {
                what: "hash map header",
                obj: self.head.raw(),
            });
        }
        Ok(h)
    }

    /// Entries.
    pub fn len<R: Read>(self, r: &mut R) -> Result<u64, Error> {
        Ok(self.head(r)?.len)
    }

    /// Whether it has no entry.
    pub fn is_empty<R: Read>(self, r: &mut R) -> Result<bool, Error> {
        Ok(self.len(r)? == 0)
    }

    /// Finds `k`: `Ok(Ok(slot))` if present, `Ok(Err(slot))` with the slot to insert at.
    fn find<R: Read>(r: &mut R, h: &MapHead, k: &K) -> Result<Result<u64, u64>, Error> {
        let kb = bytes_of(k);
        let mask = h.cap - 1;
        let mut i = hash(kb) & mask;
        let mut first_tomb = None;
        let mut bucket = alloc::vec![0u8; 8 + Self::KEY];
        for _ in 0..h.cap {
            r.read_raw(h.buckets.raw(), i as usize * Self::STRIDE, &mut bucket)?;
            match u64::from_le_bytes(bucket[..8].try_into().unwrap_or([0; 8])) {
                EMPTY => return Ok(Err(first_tomb.unwrap_or(i))),
                TOMB => {
                    first_tomb.get_or_insert(i);
                }
                _ if bucket[8..] == *kb => return Ok(Ok(i)),
                _ => {}
            }
            i = (i + 1) & mask;
        }
        first_tomb.map(Err).ok_or(Error::Corrupt {
            what: "hash map with no free bucket",
            obj: h.buckets.raw(),
        })
    }

    /// The value of `k`.
    pub fn get<R: Read>(self, r: &mut R, k: &K) -> Result<Option<V>, Error> {
        let h = self.head(r)?;
        if h.cap == 0 {
            return Ok(None);
        }
        match Self::find(r, &h, k)? {
            Ok(i) => r
                .read_at(h.buckets.raw(), i as usize * Self::STRIDE + 8 + Self::KEY)
                .map(Some),
            Err(_) => Ok(None),
        }
    }

    fn resize<M: Media>(self, tx: &mut Tx<'_, M>, h: &MapHead, cap: u64) -> Result<MapHead, Error> {
        let entries = if h.cap == 0 {
            Vec::new()
        } else {
            Self::entries_of(tx, h)?
        };
        let mut table = alloc::vec![0u8; cap as usize * Self::STRIDE];
        for (k, v) in &entries {
            let mut i = hash(bytes_of(k)) & (cap - 1);
            while table[i as usize * Self::STRIDE] != 0 {
                i = (i + 1) & (cap - 1);
            }
            let at = i as usize * Self::STRIDE;
            table[at..at + 8].copy_from_slice(&FULL.to_le_bytes());
            table[at + 8..at + 8 + Self::KEY].copy_from_slice(bytes_of(k));
            table[at + 8 + Self::KEY..at + 8 + Self::KEY + core::mem::size_of::<V>()]
                .copy_from_slice(bytes_of(v));
        }
        let buckets = tx.alloc_bytes(table.len(), 8, 0, &table)?;
        if !h.buckets.is_null() {
            tx.free(h.buckets)?;
        }
        let nh = MapHead {
            len: entries.len() as u64,
            cap,
            used: entries.len() as u64,
            buckets: buckets.cast(),
        };
        tx.write(self.head, 0, &nh)?;
        Ok(nh)
    }

    /// Inserts `k` -> `v`; the old value if `k` was present.
    pub fn insert<M: Media>(self, tx: &mut Tx<'_, M>, k: K, v: V) -> Result<Option<V>, Error> {
        let mut h = self.head(tx)?;
        if (h.used + 1) * 10 > h.cap * 7 {
            let cap = if h.len * 2 < h.cap {
                h.cap
            } else {
                (h.cap * 2).max(16)
            };
            h = self.resize(tx, &h, cap)?;
        }
        match Self::find(tx, &h, &k)? {
            Ok(i) => {
                let at = i as usize * Self::STRIDE + 8 + Self::KEY;
                let old = tx.read_at(h.buckets.raw(), at)?;
                tx.write(h.buckets, at, &v)?;
                Ok(Some(old))
            }
            Err(i) => {
                let at = i as usize * Self::STRIDE;
                let was: u64 = tx.read_at(h.buckets.raw(), at)?;
                let mut b = Vec::with_capacity(Self::STRIDE);
                b.extend_from_slice(&FULL.to_le_bytes());
                b.extend_from_slice(bytes_of(&k));
                b.extend_from_slice(bytes_of(&v));
                tx.write_bytes(h.buckets, at, &b)?;
                let used = h.used + u64::from(was == EMPTY);
                tx.write(
                    self.head,
                    0,
                    &MapHead {
                        len: h.len + 1,
                        used,
                        ..h
                    },
                )?;
                Ok(None)
            }
        }
    }

    /// Removes `k`; its value if it was present.
    pub fn remove<M: Media>(self, tx: &mut Tx<'_, M>, k: &K) -> Result<Option<V>, Error> {
        let h = self.head(tx)?;
        if h.cap == 0 {
            return Ok(None);
        }
        match Self::find(tx, &h, k)? {
            Ok(i) => {
                let at = i as usize * Self::STRIDE;
                let v = tx.read_at(h.buckets.raw(), at + 8 + Self::KEY)?;
                tx.write(h.buckets, at, &TOMB)?;
                tx.write(
                    self.head,
                    0,
                    &MapHead {
                        len: h.len - 1,
                        ..h
                    },
                )?;
                Ok(Some(v))
            }
            Err(_) => Ok(None),
        }
    }

    fn entries_of<R: Read>(r: &mut R, h: &MapHead) -> Result<Vec<(K, V)>, Error> {
        let mut table = alloc::vec![0u8; h.cap as usize * Self::STRIDE];
        r.read_raw(h.buckets.raw(), 0, &mut table)?;
        Ok(table
            .chunks_exact(Self::STRIDE)
            .filter(|b| b[..8] == FULL.to_le_bytes())
            .map(|b| (from_bytes(&b[8..]), from_bytes(&b[8 + Self::KEY..])))
            .collect())
    }

    /// Every entry (in bucket order).
    pub fn entries<R: Read>(self, r: &mut R) -> Result<Vec<(K, V)>, Error> {
        let h = self.head(r)?;
        if h.cap == 0 {
            return Ok(Vec::new());
        }
        Self::entries_of(r, &h)
    }

    /// Frees the map (not values it points to).
    pub fn free<M: Media>(self, tx: &mut Tx<'_, M>) -> Result<(), Error> {
        let h = self.head(tx)?;
        if !h.buckets.is_null() {
            tx.free(h.buckets)?;
        }
        tx.free(self.head)
    }
}
