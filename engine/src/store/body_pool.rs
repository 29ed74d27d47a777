//! Reused buffers for GET bodies received over HTTP.
//!
//! An HTTP client hands a response body over in pieces; a caller of [`super::ObjectStorage::get`]
//! wants one contiguous [`Bytes`], so the pieces are copied into one buffer. `object_store` copies
//! them into a new `Vec` every time. A GET body of a few MiB then lands on pages the kernel must
//! find and zero first: the agent's block cache frees an old block for every new one, and glibc's
//! per-thread arenas give much of that memory back to the kernel in between. In a replay from the
//! loopback S3 server, zeroing those pages was 28 % of the CPU of the thread that receives GET
//! bodies, more than the copy itself (docs/benchmarks.md, "GET bodies into reused buffers").
//!
//! [`BodyPool`] keeps the buffers of bodies nobody holds any more, up to a bound, and copies the
//! next body into one of them, whose pages are already mapped. A body's [`Bytes`] owns its buffer;
//! when the last slice of it is dropped (on whichever thread), the buffer goes back to the pool,
//! or to the allocator if the pool is full. Small bodies (footers, indexes) do not go through it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Bodies shorter than this are copied into a plain `Vec`: small allocations come from the
/// allocator's caches without faults, and they would crowd the pool.
pub(crate) const POOLED_BODY_BYTES_MIN: usize = 256 << 10;

/// New pooled buffers are rounded up to a multiple of this, so bodies of nearly the same length
/// (chunks of one compacted object, window objects of one load) can share buffers.
const BUFFER_GRANULE_BYTES: usize = 256 << 10;

/// Idle buffers kept, in bytes, by default: a few of the block cache's typical fills.
pub(crate) const IDLE_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// The most idle buffers kept, whatever their size (bounds the search in [`BodyPool::take`]).
const IDLE_BUFFERS_MAX: usize = 64;

/// Idle buffers for GET bodies, bounded in bytes and in count. Shared by every thread that
/// receives bodies or drops them.
#[derive(Debug)]
pub(crate) struct BodyPool {
    idle: Mutex<Idle>,
    idle_bytes_max: usize,
}

#[derive(Debug, Default)]
struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl BodyPool {
    /// A pool that keeps at most `idle_bytes_max` bytes of buffers nobody uses.
    pub(crate) fn new(idle_bytes_max: usize) -> Arc<BodyPool> {
        Arc::new(BodyPool {
            idle: Mutex::new(Idle::default()),
            idle_bytes_max,
        })
    }

    /// An empty buffer with room for `len` bytes: an idle one that fits (at least `len`, and not
    /// more than a quarter and a granule above it, so a small body does not pin a large buffer),
    /// the smallest such, or a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let fits_up_to = len
            .saturating_add(len / 4)
            .saturating_add(BUFFER_GRANULE_BYTES);
        if let Ok(mut idle) = self.idle.lock() {
            let best = idle
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, buffer)| (len..=fits_up_to).contains(&buffer.capacity()))
                .min_by_key(|(_, buffer)| buffer.capacity())
                .map(|(index, _)| index);
            if let Some(index) = best {
                let buffer = idle.buffers.swap_remove(index);
                idle.bytes = idle.bytes.saturating_sub(buffer.capacity());
                return buffer;
            }
        }
        let rounded = len
            .div_ceil(BUFFER_GRANULE_BYTES)
            .saturating_mul(BUFFER_GRANULE_BYTES);
        Vec::with_capacity(rounded.max(len))
    }

    /// Keeps `buffer` for a later body if the pool has room; otherwise frees it.
    fn give_back(&self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity < POOLED_BODY_BYTES_MIN {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.buffers.len() < IDLE_BUFFERS_MAX
            && idle.bytes.saturating_add(capacity) <= self.idle_bytes_max
        {
            buffer.clear();
            idle.bytes += capacity;
            idle.buffers.push(buffer);
        }
    }

    /// Wraps a filled buffer as [`Bytes`] that returns it to this pool when its last slice drops.
    pub(crate) fn freeze(self: &Arc<BodyPool>, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(PooledBody {
            buffer,
            pool: Arc::clone(self),
        })
    }

    /// Idle buffers and their bytes, for tests and the pool's log line.
    #[cfg(test)]
    fn idle(&self) -> (usize, usize) {
        self.idle
            .lock()
            .map(|idle| (idle.buffers.len(), idle.bytes))
            .unwrap_or_default()
    }
}

/// A body's buffer, owned by its [`Bytes`]; back to the pool on drop.
struct PooledBody {
    buffer: Vec<u8>,
    pool: Arc<BodyPool>,
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const MIB: usize = 1 << 20;

    fn filled(pool: &Arc<BodyPool>, len: usize, byte: u8) -> Bytes {
        let mut buffer = pool.take(len);
        buffer.resize(len, byte);
        pool.freeze(buffer)
    }

    #[test]
    fn a_dropped_body_s_buffer_is_reused_by_the_next_body_of_its_size() {
        let pool = BodyPool::new(IDLE_BYTES_MAX_DEFAULT);
        let first = filled(&pool, 4 * MIB, 1);
        let address = first.as_ptr();
        assert_eq!(pool.idle(), (0, 0));
        drop(first);
        assert_eq!(pool.idle(), (1, 4 * MIB));
        let second = filled(&pool, 4 * MIB - 1000, 2);
        assert_eq!(second.as_ptr(), address, "the idle buffer was not reused");
        assert_eq!(second.len(), 4 * MIB - 1000);
        assert!(second.iter().all(|&byte| byte == 2));
        assert_eq!(pool.idle(), (0, 0));
    }

    #[test]
    fn a_buffer_returns_only_when_its_last_slice_is_dropped() {
        let pool = BodyPool::new(IDLE_BYTES_MAX_DEFAULT);
        let body = filled(&pool, MIB, 7);
        let slice = body.slice(10..20);
        drop(body);
        assert_eq!(pool.idle(), (0, 0));
        assert_eq!(&slice[..], &[7; 10]);
        let other_thread = std::thread::spawn(move || drop(slice));
        other_thread.join().unwrap();
        assert_eq!(pool.idle(), (1, MIB));
    }

    #[test]
    fn a_small_body_does_not_pin_a_large_buffer() {
        let pool = BodyPool::new(IDLE_BYTES_MAX_DEFAULT);
        drop(filled(&pool, 16 * MIB, 0));
        let small = pool.take(MIB);
        assert!(small.capacity() < 2 * MIB, "got {}", small.capacity());
        assert_eq!(pool.idle(), (1, 16 * MIB));
        let larger = pool.take(16 * MIB - 5);
        assert_eq!(larger.capacity(), 16 * MIB);
    }

    #[test]
    fn the_best_fitting_buffer_is_taken() {
        let pool = BodyPool::new(IDLE_BYTES_MAX_DEFAULT);
        let (a, b) = (filled(&pool, 5 * MIB, 0), filled(&pool, 4 * MIB, 0));
        drop((a, b));
        assert_eq!(pool.take(4 * MIB).capacity(), 4 * MIB);
        assert_eq!(pool.take(4 * MIB).capacity(), 5 * MIB);
    }

    #[test]
    fn idle_buffers_are_bounded_in_bytes() {
        let pool = BodyPool::new(10 * MIB);
        let bodies: Vec<Bytes> = (0..5).map(|_| filled(&pool, 4 * MIB, 0)).collect();
        drop(bodies);
        assert_eq!(pool.idle(), (2, 8 * MIB));
    }

    #[test]
    fn idle_buffers_are_bounded_in_count() {
        let pool = BodyPool::new(usize::MAX);
        let bodies: Vec<Bytes> = (0..IDLE_BUFFERS_MAX + 3)
            .map(|_| filled(&pool, POOLED_BODY_BYTES_MIN, 0))
            .collect();
        drop(bodies);
        assert_eq!(pool.idle().0, IDLE_BUFFERS_MAX);
    }
}
