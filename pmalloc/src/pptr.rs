//! `PPtr<T>`: a typed, position-independent pointer into a pool (8 bytes: the object's
//! offset from the pool start; 0 is null), and the `Persistent` marker trait.

use core::fmt;
use core::marker::PhantomData;

/// Types whose values may live in a pool.
///
/// # Safety
/// Implementors guarantee that the type
/// * is `Copy` with no `Drop` (pool bytes are never dropped),
/// * accepts every bit pattern as a valid value (pool bytes are untrusted input),
/// * has no padding bytes (so values can be written as bytes),
/// * holds no pointer into volatile memory (it would dangle after a restart); pool
///   references are `PPtr`s.
pub unsafe trait Persistent: Copy + 'static {
    /// The type number stored in the headers of objects of this type; 0 means
    /// "untyped" and is not checked.
    const TYPE_NUM: u32 = 0;
}

macro_rules! persistent_prims {
    ($($t:ty),*) => {$(
        // SAFETY: plain integers/floats: every bit pattern valid, no padding, no pointers.
        unsafe impl Persistent for $t {}
    )*};
}
persistent_prims!(
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    f32,
    f64,
    ()
);

// SAFETY: an array of such values has no padding and accepts every bit pattern.
unsafe impl<T: Persistent, const N: usize> Persistent for [T; N] {}

/// A pointer to a `T` in a pool: the byte offset of the object from the pool start.
///
/// Being an offset, it stays valid wherever the pool is mapped. It is checked before
/// use: `Heap::get`/`Heap::validate` confirm that it points at the start of an
/// allocated object whose header carries `T`'s type number and that is large enough.
#[repr(transparent)]
pub struct PPtr<T> {
    off: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> PPtr<T> {
    /// The null pointer.
    pub const NULL: PPtr<T> = PPtr {
        off: 0,
        _t: PhantomData,
    };

    /// A pointer from a raw offset.
    pub const fn from_raw(off: u64) -> Self {
        PPtr {
            off,
            _t: PhantomData,
        }
    }

    /// The raw offset.
    pub const fn raw(self) -> u64 {
        self.off
    }

    /// Whether this is null.
    pub const fn is_null(self) -> bool {
        self.off == 0
    }

    /// The same offset as a pointer to `U`.
    pub const fn cast<U>(self) -> PPtr<U> {
        PPtr::from_raw(self.off)
    }

    /// The offset of the field at `field_off` bytes into the object (for example
    /// `core::mem::offset_of!(Node, next)`), as a destination for `alloc_into`.
    pub const fn field(self, field_off: usize) -> u64 {
        self.off + field_off as u64
    }
}

impl<T> Clone for PPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PPtr<T> {}
impl<T> PartialEq for PPtr<T> {
    fn eq(&self, o: &Self) -> bool {
        self.off == o.off
    }
}
impl<T> Eq for PPtr<T> {}
impl<T> core::hash::Hash for PPtr<T> {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.off.hash(h);
    }
}
impl<T> Default for PPtr<T> {
    fn default() -> Self {
        Self::NULL
    }
}
impl<T> fmt::Debug for PPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PPtr({:#x})", self.off)
    }
}

// SAFETY: a PPtr is a u64 (repr(transparent) over u64 plus a zero-sized marker): every
// bit pattern is a (possibly invalid, hence checked) offset, no padding, no volatile
// pointer.
unsafe impl<T: 'static> Persistent for PPtr<T> {}

const _: () = assert!(core::mem::size_of::<PPtr<u64>>() == 8);

/// Views a persistent value as bytes.
pub fn bytes_of<T: Persistent>(v: &T) -> &[u8] {
    // SAFETY: `Persistent` guarantees no padding, so every byte is initialized.
    unsafe {
        core::slice::from_raw_parts(
            core::ptr::from_ref(v).cast::<u8>(),
            core::mem::size_of::<T>(),
        )
    }
}

/// Reads a persistent value from bytes (`b.len() >= size_of::<T>()`).
pub fn from_bytes<T: Persistent>(b: &[u8]) -> T {
    assert!(
        b.len() >= core::mem::size_of::<T>(),
        "from_bytes: short buffer"
    );
    // SAFETY: length checked; `Persistent` accepts every bit pattern; read_unaligned
    // needs no alignment.
    unsafe { b.as_ptr().cast::<T>().read_unaligned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let v: [u32; 3] = [1, 2, 0xdead_beef];
        let b = bytes_of(&v);
        assert_eq!(b.len(), 12);
        assert_eq!(from_bytes::<[u32; 3]>(b), v);
        let p = PPtr::<u64>::from_raw(0x1000);
        assert_eq!(from_bytes::<PPtr<u64>>(bytes_of(&p)), p);
        assert_eq!(p.field(16), 0x1010);
        assert!(PPtr::<u8>::NULL.is_null());
    }
}
