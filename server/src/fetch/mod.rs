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
//! # One cache budget for the agent: every block has an owner core
//!
//! Cores share nothing on the request path (invariant 5), so the cache is not one structure
//! behind a lock. Instead each block read from the store — a window object, or one partition's
//! entry of a compacted object — is owned by one network core, chosen by a stable hash
//! ([`owners::owner_core`]), and only that core reads it from the store and caches it. A fetch
//! on another core sends the owner its wants over a bounded channel and gets back refcounted
//! `Bytes` slices of the owner's cached buffers (no copy per reader); see [`owners`]. So a
//! consumer whose new connection lands on another core finds what the first connection read,
//! the agent's whole budget (`block_cache_bytes_max` × network cores) holds distinct bytes, and
//! the chunk a compacted entry is read in is sized from that whole budget
//! ([`FetchCore::agent_cache_bytes`]). Concurrent misses of one block on its owner make one GET
//! ([`inflight`]).
//!
//! The live edge is the exception: the objects this agent commits are inserted into *every*
//! core's cache ([`write_through`]; the same refcounted buffers, so no byte is held twice), so a
//! consumer at the live edge never waits for a message to another core. Each core counts them
//! against its own budget, but a core that does not own an object keeps it as the first to go
//! ([`BlockCache::demote_object`]) until a fetch there uses it, so the copies cost the blocks a
//! core owns nothing.
//!
//! Compaction is the other: once a job's swap is applied, the compactor hands each compacted
//! entry's bytes to the core that owns it ([`owners::CompactedOffers`]), so data compacted while
//! it was cached is still served from memory.
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

pub mod inflight;
pub mod owners;
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
    /// GETs in flight on this core, joined by concurrent misses of the same bytes.
    pub(crate) inflight: RefCell<inflight::InflightReads>,
    /// Where every core's blocks are read (`None`: this core reads everything itself).
    pub(crate) owners: Option<owners::BlockOwners>,
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
            inflight: RefCell::new(inflight::InflightReads::default()),
            owners: None,
            store_reads: Cell::new(0),
            store_read_bytes: Cell::new(0),
        }
    }

    /// Reads each block on the core that owns it (see the module doc); `owners` names every
    /// network core's inbox and this core's index among them.
    pub fn with_owners(mut self, owners: owners::BlockOwners) -> Self {
        self.owners = Some(owners);
        self
    }

    /// The agent's cache budget: this core's `block_cache_bytes_max` times the network cores
    /// that share their caches through block owners.
    pub fn agent_cache_bytes(&self) -> u64 {
        let cores = self
            .owners
            .as_ref()
            .map_or(1, owners::BlockOwners::core_count);
        let cores = u64::try_from(cores).unwrap_or(1);
        self.cache.borrow().capacity_bytes().saturating_mul(cores)
    }

    /// Misses on this core that joined a GET already in flight instead of starting one.
    pub fn reads_joined(&self) -> u64 {
        self.inflight.borrow().joined()
    }

    /// Write-through: caches the batches of an object this agent just committed.
    /// On a core that does not own the object it is kept as the first to go: the owner's copy
    /// is the one the agent's budget counts on, this one only spares live-edge fetches here a
    /// message (a use makes it ordinary).
    pub fn cache_object(&self, object: &CommittedObject) {
        let mut cache = self.cache.borrow_mut();
        for (start, bytes) in &object.pieces {
            cache.insert(object.seq, *start, bytes.clone());
        }
        if let Some(owners) = &self.owners
            && owners.core_count() > 1
            && !owners.owns_window_object(object.seq)
        {
            cache.demote_object(object.seq);
        }
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.borrow().stats()
    }

    /// Ranged GETs this core made for fetches (cache misses), and their bytes.
    pub fn store_reads(&self) -> (u64, u64) {
        (self.store_reads.get(), self.store_read_bytes.get())
    }

    /// GETs made for this core's fetches, here or by the blocks' owners.
    pub(crate) fn note_store_reads(&self, count: reader::ReadCount) {
        self.store_reads.set(self.store_reads.get() + count.gets);
        self.store_read_bytes
            .set(self.store_read_bytes.get() + count.bytes);
    }
}

impl Default for FetchCore {
    fn default() -> Self {
        Self::new(FetchConfig::default())
    }
}
