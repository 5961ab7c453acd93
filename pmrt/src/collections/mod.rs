//! Persistent smart pointers and collections built on transactions.
//!
//! Each is a small `Copy` handle (a `PPtr` to a header object in the pool) that can
//! itself be stored in pool objects; every change goes through a [`Tx`] and is
//! failure-atomic with the rest of the transaction. Reads take anything that can
//! [`Read`]: a `&Pool` (the committed state) or a `Tx` (its own writes included).
//! Pool bytes are untrusted: headers are checked before use (`Error::Corrupt`).

use arch::Media;
use pmalloc::{from_bytes, PPtr, Persistent};

use crate::error::Error;
use crate::pool::Pool;
use crate::tx::Tx;

mod pbox;
mod phashmap;
mod pstring;
mod pvec;

pub use pbox::PBox;
pub use phashmap::PHashMap;
pub use pstring::PString;
pub use pvec::PVec;

/// Something collections can read pool objects through.
pub trait Read {
    /// Reads `buf.len()` bytes at `off` inside object `obj`.
    fn read_raw(&mut self, obj: u64, off: usize, buf: &mut [u8]) -> Result<(), Error>;

    /// Reads a `T` at `off` inside object `obj`.
    fn read_at<T: Persistent>(&mut self, obj: u64, off: usize) -> Result<T, Error> {
        let mut b = alloc::vec![0u8; core::mem::size_of::<T>()];
        self.read_raw(obj, off, &mut b)?;
        Ok(from_bytes(&b))
    }
}

impl<M: Media> Read for &Pool<M> {
    fn read_raw(&mut self, obj: u64, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.read_bytes(PPtr::<u8>::from_raw(obj), off, buf)
    }
}

impl<M: Media> Read for Tx<'_, M> {
    fn read_raw(&mut self, obj: u64, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.read_bytes(PPtr::<u8>::from_raw(obj), off, buf)
    }
}

#[cfg(test)]
mod tests;
