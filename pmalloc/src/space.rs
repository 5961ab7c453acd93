//! Free chunk spans (volatile, rebuilt from the chunk table at open).

use alloc::collections::BTreeMap;

/// Free spans of chunks: start -> length, adjacent spans merged.
#[derive(Debug, Default)]
pub struct Space {
    spans: BTreeMap<u32, u32>,
    free_chunks: u64,
}

impl Space {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `n` contiguous chunks (first fit); their start.
    pub fn take(&mut self, n: u32) -> Option<u32> {
        let (&start, &len) = self.spans.iter().find(|(_, &len)| len >= n)?;
        self.spans.remove(&start);
        if len > n {
            self.spans.insert(start + n, len - n);
        }
        self.free_chunks -= u64::from(n);
        Some(start)
    }

    /// Returns `[start, start + n)`, merging with neighbours.
    pub fn give(&mut self, start: u32, n: u32) {
        let mut s = start;
        let mut len = n;
        if let Some((&ps, &pl)) = self.spans.range(..start).next_back() {
            debug_assert!(ps + pl <= start, "overlapping free spans");
            if ps + pl == start {
                self.spans.remove(&ps);
                s = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.spans.get(&(start + n)) {
            self.spans.remove(&(start + n));
            len += nl;
        }
        self.spans.insert(s, len);
        self.free_chunks += u64::from(n);
    }

    /// Free chunks in all spans.
    pub fn free_chunks(&self) -> u64 {
        self.free_chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_neighbours_and_splits_on_take() {
        let mut s = Space::new();
        s.give(0, 2);
        s.give(4, 2);
        s.give(2, 2);
        assert_eq!(s.free_chunks(), 6);
        assert_eq!(s.take(4), Some(0));
        assert_eq!(s.take(3), None);
        assert_eq!(s.take(2), Some(4));
        assert_eq!(s.free_chunks(), 0);
    }
}
