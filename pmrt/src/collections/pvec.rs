//! `PVec<T>`: a growable persistent array.

use alloc::vec::Vec;
use core::marker::PhantomData;

use arch::Media;
use pmalloc::{bytes_of, from_bytes, PPtr, Persistent};

use super::Read;
use crate::error::Error;
use crate::tx::Tx;

/// The header object of a `PVec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, crate::Persistent)]
#[repr(C)]
#[persistent(type_num = 0x00F0_0001)]
pub(crate) struct VecHead {
    pub len: u64,
    pub cap: u64,
    pub data: PPtr<u8>,
}

const LEN: usize = 0;
const CAP: usize = 8;
const DATA: usize = 16;

/// A growable array of `T` in the pool.
#[repr(transparent)]
pub struct PVec<T> {
    head: PPtr<VecHead>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PVec<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PVec<T> {}
impl<T> PartialEq for PVec<T> {
    fn eq(&self, o: &Self) -> bool {
        self.head == o.head
    }
}
impl<T> Eq for PVec<T> {}
impl<T> core::fmt::Debug for PVec<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PVec({:#x})", self.head.raw())
    }
}

// SAFETY: a PVec is a PPtr (a u64 offset): every bit pattern is a (checked) offset.
unsafe impl<T: 'static> Persistent for PVec<T> {}

impl<T: Persistent> PVec<T> {
    const SIZE: usize = core::mem::size_of::<T>();

    /// An empty vector.
    pub fn new<M: Media>(tx: &mut Tx<'_, M>) -> Result<Self, Error> {
        Ok(PVec {
            head: tx.alloc(VecHead {
                len: 0,
                cap: 0,
                data: PPtr::NULL,
            })?,
            _t: PhantomData,
        })
    }

    /// The header pointer (what to store to keep the vector).
    pub fn as_ptr(self) -> PPtr<()> {
        self.head.cast()
    }

    /// Rebuilds a handle from a stored header pointer.
    pub fn from_ptr(p: PPtr<()>) -> Self {
        PVec {
            head: p.cast(),
            _t: PhantomData,
        }
    }

    fn head<R: Read>(self, r: &mut R) -> Result<VecHead, Error> {
        let h: VecHead = r.read_at(self.head.raw(), 0)?;
        let obj = self.head.raw();
        if h.len > h.cap || (h.cap > 0 && h.data.is_null()) {
            return Err(Error::Corrupt {
                what: "vector header",
                obj,
            });
        }
        Ok(h)
    }

    /// Number of elements.
    pub fn len<R: Read>(self, r: &mut R) -> Result<u64, Error> {
        Ok(self.head(r)?.len)
    }

    /// Whether it is empty.
    pub fn is_empty<R: Read>(self, r: &mut R) -> Result<bool, Error> {
        Ok(self.len(r)? == 0)
    }

    /// Element `i`.
    pub fn get<R: Read>(self, r: &mut R, i: u64) -> Result<Option<T>, Error> {
        let h = self.head(r)?;
        if i >= h.len {
            return Ok(None);
        }
        r.read_at(h.data.raw(), i as usize * Self::SIZE).map(Some)
    }

    /// All elements.
    pub fn to_vec<R: Read>(self, r: &mut R) -> Result<Vec<T>, Error> {
        let h = self.head(r)?;
        let mut bytes = alloc::vec![0u8; h.len as usize * Self::SIZE];
        if !bytes.is_empty() {
            r.read_raw(h.data.raw(), 0, &mut bytes)?;
        }
        Ok(bytes
            .chunks_exact(Self::SIZE.max(1))
            .map(from_bytes)
            .collect())
    }

    fn grow<M: Media>(self, tx: &mut Tx<'_, M>, h: &VecHead, need: u64) -> Result<VecHead, Error> {
        let cap = need.max(h.cap * 2).max(4);
        let mut old = alloc::vec![0u8; h.len as usize * Self::SIZE];
        if !old.is_empty() {
            tx.read_bytes(h.data, 0, &mut old)?;
        }
        let data = tx.alloc_bytes(
            cap as usize * Self::SIZE.max(1),
            core::mem::align_of::<T>(),
            0,
            &old,
        )?;
        if !h.data.is_null() {
            tx.free(h.data)?;
        }
        let nh = VecHead {
            len: h.len,
            cap,
            data: data.cast(),
        };
        tx.write(self.head, CAP, &nh.cap)?;
        tx.write(self.head, DATA, &nh.data)?;
        Ok(nh)
    }

    /// Appends `v`.
    pub fn push<M: Media>(self, tx: &mut Tx<'_, M>, v: T) -> Result<(), Error> {
        self.extend(tx, core::slice::from_ref(&v))
    }

    /// Appends all of `vs`.
    pub fn extend<M: Media>(self, tx: &mut Tx<'_, M>, vs: &[T]) -> Result<(), Error> {
        let mut h = self.head(tx)?;
        let need = h.len + vs.len() as u64;
        if need > h.cap {
            h = self.grow(tx, &h, need)?;
        }
        let mut bytes = Vec::with_capacity(vs.len() * Self::SIZE);
        for v in vs {
            bytes.extend_from_slice(bytes_of(v));
        }
        if !bytes.is_empty() {
            tx.write_bytes(h.data, h.len as usize * Self::SIZE, &bytes)?;
        }
        tx.write(self.head, LEN, &need)
    }

    /// Sets element `i` (which must exist).
    pub fn set<M: Media>(self, tx: &mut Tx<'_, M>, i: u64, v: T) -> Result<(), Error> {
        let h = self.head(tx)?;
        if i >= h.len {
            return Err(Error::OutOfBounds {
                obj: self.head.raw(),
                off: i,
                len: 1,
            });
        }
        tx.write_bytes(h.data, i as usize * Self::SIZE, bytes_of(&v))
    }

    /// Removes and returns the last element.
    pub fn pop<M: Media>(self, tx: &mut Tx<'_, M>) -> Result<Option<T>, Error> {
        let h = self.head(tx)?;
        if h.len == 0 {
            return Ok(None);
        }
        let v = tx.read_at(h.data.raw(), (h.len as usize - 1) * Self::SIZE)?;
        tx.write(self.head, LEN, &(h.len - 1))?;
        Ok(Some(v))
    }

    /// Frees the vector and its storage.
    pub fn free<M: Media>(self, tx: &mut Tx<'_, M>) -> Result<(), Error> {
        let h = self.head(tx)?;
        if !h.data.is_null() {
            tx.free(h.data)?;
        }
        tx.free(self.head)
    }
}
