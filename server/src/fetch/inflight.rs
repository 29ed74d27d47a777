//! Single-flight for ranged GETs: a core's concurrent misses of the same bytes make one GET.
//!
//! Two fetches (or a fetch and a read-ahead, or requests forwarded from other cores to the block's
//! owner, see [`super::owners`]) can miss the same range of one object at the same moment: a
//! consumer group whose members replay neighbouring partitions of one window object, two consumers
//! of one topic, a consumer on another core asking the owner for a chunk the owner's read-ahead is
//! already reading. Each would GET it, and the cache would keep only the first copy. So every GET a
//! core starts is registered here, by object and byte range, until it returns; a miss that lies
//! wholly inside a registered range awaits that GET (a `Shared` future: the same refcounted
//! `Bytes`, no copy per reader) instead of starting its own.
//!
//! A registration is removed when the read that started it finishes or is dropped
//! ([`InflightGuard`]), so the registry holds at most the GETs in flight on the core — bounded by
//! the fetches in flight (a connection keeps at most 64 requests in flight), each a bounded number
//! of GETs. A dropped starter does not cancel the GET for readers that joined it: each holds its own
//! clone of the future and drives it.

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;
use futures::future::{LocalBoxFuture, Shared};
use sluice_engine::types::LogSeq;

use super::reader::ReadError;

/// One GET in flight, shared by every reader that needs its bytes.
pub type SharedRead = Shared<LocalBoxFuture<'static, Result<Bytes, ReadError>>>;

/// A GET in flight: its id, its range, whether its bytes are cached as one piece (a chunk of a
/// compacted entry), and the read.
#[derive(Clone)]
pub struct InflightRead {
    pub id: u64,
    pub range: Range<u64>,
    pub chunk: bool,
    pub read: SharedRead,
}

/// The GETs a core has in flight, by object.
#[derive(Default)]
pub struct InflightReads {
    by_object: HashMap<LogSeq, Vec<InflightRead>>,
    next_id: u64,
    /// Misses that joined a GET already in flight (for tests and the debug log).
    joined: u64,
}

impl std::fmt::Debug for InflightReads {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("InflightReads")
            .field("objects", &self.by_object.len())
            .field("joined", &self.joined)
            .finish()
    }
}

impl InflightReads {
    /// The GET in flight whose range holds all of `range` of object `seq`, if any (counted as a
    /// join).
    pub fn covering(&mut self, seq: LogSeq, range: &Range<u64>) -> Option<InflightRead> {
        let found = self.by_object.get(&seq)?.iter().find(|inflight| {
            inflight.range.start <= range.start && range.end <= inflight.range.end
        })?;
        self.joined += 1;
        Some(found.clone())
    }

    /// Registers a GET of `range` of object `seq`; returns its registration.
    pub fn start(
        &mut self,
        seq: LogSeq,
        range: Range<u64>,
        chunk: bool,
        read: SharedRead,
    ) -> InflightRead {
        self.next_id += 1;
        let inflight = InflightRead {
            id: self.next_id,
            range,
            chunk,
            read,
        };
        self.by_object
            .entry(seq)
            .or_default()
            .push(inflight.clone());
        inflight
    }

    /// Removes the registration `id` of object `seq`.
    pub fn finish(&mut self, seq: LogSeq, id: u64) {
        if let Some(reads) = self.by_object.get_mut(&seq) {
            reads.retain(|inflight| inflight.id != id);
            if reads.is_empty() {
                self.by_object.remove(&seq);
            }
        }
    }

    /// Bytes of the chunk GETs in flight (cached when they return).
    pub fn chunk_bytes(&self) -> u64 {
        self.by_object
            .values()
            .flatten()
            .filter(|inflight| inflight.chunk)
            .map(|inflight| inflight.range.end - inflight.range.start)
            .sum()
    }

    /// GETs in flight.
    pub fn len(&self) -> usize {
        self.by_object.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_object.is_empty()
    }

    /// Misses that joined a GET in flight instead of starting one, since the core started.
    pub fn joined(&self) -> u64 {
        self.joined
    }
}

impl std::fmt::Debug for InflightRead {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("InflightRead")
            .field("id", &self.id)
            .field("range", &self.range)
            .field("chunk", &self.chunk)
            .finish()
    }
}

/// Removes a read's registrations when it finishes or is dropped.
#[derive(Debug)]
pub struct InflightGuard<'a> {
    pub(crate) reads: &'a std::cell::RefCell<InflightReads>,
    pub(crate) started: Vec<(LogSeq, u64)>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        // No borrow of the registry is held across an await, so this cannot collide.
        if let Ok(mut reads) = self.reads.try_borrow_mut() {
            for (seq, id) in self.started.drain(..) {
                reads.finish(seq, id);
            }
        }
    }
}
