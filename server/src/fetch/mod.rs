//! Fetch on a network core: the block cache, reading ranges, long polls and fetch sessions.
//!
//! # Where the bytes come from
//!
//! A fetch asks the metadata core (one [`crate::metadata_core::CoreHandle::query`] per attempt,
//! for every partition of the request at once) which index entries hold the fetch offset onward,
//! then reads each entry's exact byte range: from this core's [`BlockCache`] if it is there, else
//! with one ranged GET, whose bytes are inserted for the next fetch. The objects this agent wrote
//! are put into every core's cache by the commit that acknowledges them ([`write_through`]), so
//! consumers at the live edge are served from memory and the store is read only by consumers that
//! fall behind the cache or after a restart (DESIGN.md, invariant 8).
//!
//! # Why a cache per core and not one per agent
//!
//! Cores share nothing on the request path (invariant 5): a cache shared across cores needs a
//! lock or a message per lookup. One cache per core costs memory — an object wanted on two cores
//! is referenced twice, but the live edge's `Bytes` are the same refcounted buffers on every core,
//! so only bytes read back from the store are really duplicated — and keeps every lookup a plain
//! `&mut` call. Each core's budget is `block_cache_bytes_max`.
//!
//! # Long poll
//!
//! A fetch with less than `min_bytes` ready parks on the core's
//! [`crate::metadata_core::watermarks::WatermarkWaiters`] for each partition it asked for, and a
//! glommio timer for what is left of `max_wait_ms`; a commit that moves one of those high
//! watermarks wakes it, it reads again, and answers or parks for the rest of its wait.
//!
//! # Read-ahead
//!
//! A fetch that read the store (a consumer replaying history) starts reading what the same
//! partitions' next fetch will want as soon as its answer is built, so the store works while the
//! client parses; see [`readahead`].
//!
//! # Fetch sessions (KIP-227)
//!
//! See [`sessions`]: a bounded number per core, least recently used evicted first. A session
//! lives on the core that holds the client's connection; a client that reconnects to another core
//! gets FETCH_SESSION_ID_NOT_FOUND and starts a new one with a full fetch, as Kafka clients do.

pub mod readahead;
pub mod reader;
pub mod sessions;
pub mod write_through;

use std::cell::{Cell, RefCell};

use sluice_engine::read::{BlockCache, CacheStats};

use crate::metadata_core::watermarks::CommittedObject;
pub use sessions::{FetchSessions, SessionContext};
pub use write_through::committed_object;

/// Default fetch sessions per core (Kafka's `max.incremental.fetch.session.cache.slots`).
pub const FETCH_SESSIONS_MAX_DEFAULT: usize = 1_000;
/// Default block cache per core when none is configured (protocol-only tests).
pub const BLOCK_CACHE_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// A network core's fetch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchConfig {
    pub block_cache_bytes_max: u64,
    pub fetch_sessions_max: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            block_cache_bytes_max: BLOCK_CACHE_BYTES_MAX_DEFAULT,
            fetch_sessions_max: FETCH_SESSIONS_MAX_DEFAULT,
        }
    }
}

/// One network core's fetch state. Single-threaded (`RefCell`): it lives on its core; no borrow
/// is ever held across an `await`.
#[derive(Debug)]
pub struct FetchCore {
    pub(crate) cache: RefCell<BlockCache>,
    pub(crate) sessions: RefCell<FetchSessions>,
    pub(crate) readaheads: RefCell<readahead::Readaheads>,
    /// Where consumers of large compacted entries continue ([`reader::Positions`]).
    pub(crate) positions: RefCell<reader::Positions>,
    store_reads: Cell<u64>,
    store_read_bytes: Cell<u64>,
}

impl FetchCore {
    pub fn new(config: FetchConfig) -> Self {
        Self {
            cache: RefCell::new(BlockCache::new(config.block_cache_bytes_max)),
            sessions: RefCell::new(FetchSessions::new(config.fetch_sessions_max)),
            readaheads: RefCell::new(readahead::Readaheads::default()),
            positions: RefCell::new(reader::Positions::default()),
            store_reads: Cell::new(0),
            store_read_bytes: Cell::new(0),
        }
    }

    /// Write-through: caches the batches of an object this agent just committed.
    pub fn cache_object(&self, object: &CommittedObject) {
        let mut cache = self.cache.borrow_mut();
        for (start, bytes) in &object.pieces {
            cache.insert(object.seq, *start, bytes.clone());
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.borrow().stats()
    }

    /// Ranged GETs this core made for fetches (cache misses), and their bytes.
    pub fn store_reads(&self) -> (u64, u64) {
        (self.store_reads.get(), self.store_read_bytes.get())
    }

    pub(crate) fn note_store_read(&self, bytes: u64) {
        self.store_reads.set(self.store_reads.get() + 1);
        self.store_read_bytes
            .set(self.store_read_bytes.get() + bytes);
    }
}

impl Default for FetchCore {
    fn default() -> Self {
        Self::new(FetchConfig::default())
    }
}
