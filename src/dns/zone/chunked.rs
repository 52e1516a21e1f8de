//! A vector in fixed-size chunks behind reference counts: a clone shares every chunk, and
//! a write copies only the chunk it lands in. The zone keeps its nodes in one, so a patch
//! that changes a few names copies a few small chunks, not every node.

use std::sync::Arc;

/// Elements per chunk: small enough that a patch copies little, large enough that the
/// chunk list stays short.
const CHUNK_BITS: usize = 8;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug, Clone)]
pub(super) struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

// === impl Chunked ===

impl<T: Clone> Chunked<T> {
    pub(super) fn with_capacity(len: usize) -> Chunked<T> {
        Chunked {
            chunks: Vec::with_capacity(len.div_ceil(CHUNK)),
            len: 0,
        }
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        Some(&self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)])
    }

    /// The element at `i`, its chunk copied first if another clone shares it.
    pub(super) fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        &mut Arc::make_mut(&mut self.chunks[i >> CHUNK_BITS])[i & (CHUNK - 1)]
    }

    pub(super) fn push(&mut self, value: T) {
        if self.len & (CHUNK - 1) == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(value);
        self.len += 1;
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_chunks_until_one_is_written() {
        let mut a = Chunked::with_capacity(0);
        for i in 0..(3 * CHUNK + 5) {
            a.push(i);
        }
        let mut b = a.clone();
        *b.get_mut(CHUNK + 1) = 7;
        b.push(99);
        assert_eq!(a.get(CHUNK + 1), Some(&(CHUNK + 1)));
        assert_eq!(b.get(CHUNK + 1), Some(&7));
        assert_eq!((a.len(), b.len()), (3 * CHUNK + 5, 3 * CHUNK + 6));
        assert_eq!(a.get(3 * CHUNK + 5), None);
        assert_eq!(b.get(3 * CHUNK + 5), Some(&99));
        // Only the written chunk and the last one were copied.
        assert!(Arc::ptr_eq(&a.chunks[0], &b.chunks[0]));
        assert!(!Arc::ptr_eq(&a.chunks[1], &b.chunks[1]));
        assert!(Arc::ptr_eq(&a.chunks[2], &b.chunks[2]));
    }
}
