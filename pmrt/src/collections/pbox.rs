//! `PBox<T>`: an owned persistent value.

use core::marker::PhantomData;

use arch::Media;
use pmalloc::{PPtr, Persistent};

use super::Read;
use crate::error::Error;
use crate::tx::Tx;

/// An owned `T` in the pool: allocated by [`PBox::new`], freed by [`PBox::free`].
#[repr(transparent)]
pub struct PBox<T> {
    ptr: PPtr<T>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PBox<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PBox<T> {}
impl<T> PartialEq for PBox<T> {
    fn eq(&self, o: &Self) -> bool {
        self.ptr == o.ptr
    }
}
impl<T> Eq for PBox<T> {}
impl<T> core::fmt::Debug for PBox<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PBox({:#x})", self.ptr.raw())
    }
}

// SAFETY: a PBox is a PPtr (a u64 offset): every bit pattern is a (checked) offset.
unsafe impl<T: 'static> Persistent for PBox<T> {}

impl<T: Persistent> PBox<T> {
    /// Allocates `value` in the transaction.
    pub fn new<M: Media>(tx: &mut Tx<'_, M>, value: T) -> Result<Self, Error> {
        Ok(PBox {
            ptr: tx.alloc(value)?,
            _t: PhantomData,
        })
    }

    /// The pointer.
    pub fn as_ptr(self) -> PPtr<T> {
        self.ptr
    }

    /// Reads the value.
    pub fn get<R: Read>(self, r: &mut R) -> Result<T, Error> {
        r.read_at(self.ptr.raw(), 0)
    }

    /// The value, mutably, in the transaction.
    pub fn get_mut<'t, M: Media>(self, tx: &'t mut Tx<'_, M>) -> Result<&'t mut T, Error> {
        tx.open_mut(self.ptr)
    }

    /// Frees it when the transaction commits.
    pub fn free<M: Media>(self, tx: &mut Tx<'_, M>) -> Result<(), Error> {
        tx.free(self.ptr)
    }
}
