//! `PString`: a persistent UTF-8 string.

use alloc::string::String;

use arch::Media;
use pmalloc::{PPtr, Persistent};

use super::{PVec, Read};
use crate::error::Error;
use crate::tx::Tx;

/// A UTF-8 string in the pool (a `PVec<u8>` whose bytes are checked on read).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PString(PVec<u8>);

// SAFETY: a PString is a PVec, itself a PPtr (a u64 offset).
unsafe impl Persistent for PString {}

impl PString {
    /// A new string holding `s`.
    pub fn new<M: Media>(tx: &mut Tx<'_, M>, s: &str) -> Result<Self, Error> {
        let v = PVec::new(tx)?;
        v.extend(tx, s.as_bytes())?;
        Ok(PString(v))
    }

    /// The header pointer.
    pub fn as_ptr(self) -> PPtr<()> {
        self.0.as_ptr()
    }

    /// Appends `s`.
    pub fn push_str<M: Media>(self, tx: &mut Tx<'_, M>, s: &str) -> Result<(), Error> {
        self.0.extend(tx, s.as_bytes())
    }

    /// Length in bytes.
    pub fn len<R: Read>(self, r: &mut R) -> Result<u64, Error> {
        self.0.len(r)
    }

    /// Whether it is empty.
    pub fn is_empty<R: Read>(self, r: &mut R) -> Result<bool, Error> {
        self.0.is_empty(r)
    }

    /// The string, checked to be UTF-8.
    pub fn to_string<R: Read>(self, r: &mut R) -> Result<String, Error> {
        String::from_utf8(self.0.to_vec(r)?).map_err(|_| Error::NotUtf8 {
            obj: self.0.as_ptr().raw(),
        })
    }

    /// Frees it.
    pub fn free<M: Media>(self, tx: &mut Tx<'_, M>) -> Result<(), Error> {
        self.0.free(tx)
    }
}
