//! Fetch sessions (KIP-227): a client with many partitions sends the whole list once, then only
//! what changed.
//!
//! The rules follow the Java broker's `FetchManager`:
//! - session id 0, epoch -1: no session (a full fetch, answered with session id 0);
//! - epoch 0: a new session holding the listed partitions (an existing id given with it is
//!   closed first); the full answer carries the new id, and the client's next epoch is 1;
//! - id X, epoch -1: close X and answer this request in full, without a session;
//! - id X, epoch n > 0: incremental. Unknown X is FETCH_SESSION_ID_NOT_FOUND (70), an epoch other
//!   than the one expected is INVALID_FETCH_SESSION_EPOCH (71). Listed partitions are added or
//!   updated, forgotten ones removed; the answer lists only partitions with records, an error, or
//!   a high watermark or log start offset that moved since the session last reported them.
//!
//! Limits: at most `sessions_max` per core, the least recently used evicted to make room (its
//! client gets 70 and starts over), and [`PARTITIONS_PER_SESSION_MAX`] partitions per session
//! (beyond that the fetch is served without a session). When the table is full and `sessions_max`
//! is 0, clients simply fetch without sessions.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Kafka's FETCH_SESSION_ID_NOT_FOUND.
pub const FETCH_SESSION_ID_NOT_FOUND: i16 =
    kafka_protocol::ResponseError::FetchSessionIdNotFound.code();
/// Kafka's INVALID_FETCH_SESSION_EPOCH.
pub const INVALID_FETCH_SESSION_EPOCH: i16 =
    kafka_protocol::ResponseError::InvalidFetchSessionEpoch.code();
/// Partitions one session may hold.
pub const PARTITIONS_PER_SESSION_MAX: usize = 100_000;

/// A partition as the client names it: topic id (v13+, else nil), topic name (before v13, else
/// empty), partition index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub topic_id: Uuid,
    pub topic: StrBytes,
    pub partition: i32,
}

/// What the client wants of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
}

#[derive(Debug, Clone, Copy)]
struct SessionPartition {
    wanted: Wanted,
    /// What the session last told the client (-1: nothing yet).
    high_watermark_sent: i64,
    log_start_offset_sent: i64,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<PartitionKey, SessionPartition>,
    /// Where the next incremental read starts (see [`FetchSessions::served`]).
    first: usize,
    last_used: u64,
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionContext {
    /// The id to answer with (0: no session).
    pub session_id: i32,
    /// Answer only what changed.
    pub incremental: bool,
    /// Every partition to read, in the session's order (or the request's when full).
    pub partitions: Vec<(PartitionKey, Wanted)>,
}

/// A core's sessions.
#[derive(Debug)]
pub struct FetchSessions {
    sessions: HashMap<i32, Session>,
    sessions_max: usize,
    tick: u64,
}

impl FetchSessions {
    pub fn new(sessions_max: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            sessions_max,
            tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Applies the request's session fields; `Err` is the top-level error code to answer with.
    pub fn begin(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<(PartitionKey, Wanted)>,
        forgotten: Vec<PartitionKey>,
    ) -> Result<SessionContext, i16> {
        self.tick += 1;
        match epoch {
            -1 => {
                self.sessions.remove(&session_id);
                Ok(SessionContext {
                    session_id: 0,
                    incremental: false,
                    partitions: requested,
                })
            }
            0 => {
                self.sessions.remove(&session_id);
                let session_id = self.create(&requested);
                Ok(SessionContext {
                    session_id,
                    incremental: false,
                    partitions: requested,
                })
            }
            epoch if epoch > 0 => self.incremental(session_id, epoch, requested, forgotten),
            _ => Err(INVALID_FETCH_SESSION_EPOCH),
        }
    }

    fn incremental(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<(PartitionKey, Wanted)>,
        forgotten: Vec<PartitionKey>,
    ) -> Result<SessionContext, i16> {
        let session = self
            .sessions
            .get_mut(&session_id)
            .ok_or(FETCH_SESSION_ID_NOT_FOUND)?;
        if session.next_epoch != epoch {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        for (key, wanted) in requested {
            session
                .partitions
                .entry(key)
                .and_modify(|partition| partition.wanted = wanted)
                .or_insert(SessionPartition {
                    wanted,
                    high_watermark_sent: -1,
                    log_start_offset_sent: -1,
                });
        }
        for key in &forgotten {
            session.partitions.remove(key);
        }
        if session.partitions.len() > PARTITIONS_PER_SESSION_MAX {
            self.sessions.remove(&session_id);
            return Err(FETCH_SESSION_ID_NOT_FOUND);
        }
        // Kafka's epochs wrap from i32::MAX to 1 (0 means "new session").
        session.next_epoch = epoch.checked_add(1).unwrap_or(1);
        session.last_used = self.tick;
        let mut partitions: Vec<(PartitionKey, Wanted)> = session
            .partitions
            .iter()
            .map(|(key, partition)| (key.clone(), partition.wanted))
            .collect();
        if !partitions.is_empty() {
            let len = partitions.len();
            partitions.rotate_left(session.first % len);
        }
        Ok(SessionContext {
            session_id,
            incremental: true,
            partitions,
        })
    }

    /// A new session for `partitions`, or 0 when none can be had.
    fn create(&mut self, partitions: &[(PartitionKey, Wanted)]) -> i32 {
        if self.sessions_max == 0 || partitions.len() > PARTITIONS_PER_SESSION_MAX {
            return 0;
        }
        while self.sessions.len() >= self.sessions_max {
            let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, session)| session.last_used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.sessions.remove(&oldest);
        }
        let Some(session_id) = self.fresh_id() else {
            return 0;
        };
        let partitions = partitions
            .iter()
            .map(|(key, wanted)| {
                (
                    key.clone(),
                    SessionPartition {
                        wanted: *wanted,
                        high_watermark_sent: -1,
                        log_start_offset_sent: -1,
                    },
                )
            })
            .collect();
        self.sessions.insert(
            session_id,
            Session {
                next_epoch: 1,
                partitions,
                first: 0,
                last_used: self.tick,
            },
        );
        session_id
    }

    /// A random positive id not in use (random so that a client cannot guess another's session).
    fn fresh_id(&self) -> Option<i32> {
        // A handful of tries: with at most a few thousand sessions a collision is rare.
        for _ in 0..8 {
            let [a, b, c, d, ..] = *Uuid::new_v4().as_bytes();
            let id = i32::from_be_bytes([a & 0x7f, b, c, d]);
            if id != 0 && !self.sessions.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// After an incremental answer in which the partitions up to `last_with_records` (an index
    /// into the context's list) returned records: the next read starts after it. Partitions are
    /// filled in order until `max_bytes` runs out, so without this turn-taking (the Java broker
    /// moves served partitions to the end of its session) the first partitions of a busy session
    /// could starve the others.
    pub fn served(&mut self, session_id: i32, last_with_records: usize) {
        if let Some(session) = self.sessions.get_mut(&session_id) {
            let len = session.partitions.len().max(1);
            session.first = (session.first % len + last_with_records + 1) % len;
        }
    }

    /// Records what is about to be sent for `key`; true when it must be in the answer (anything
    /// moved, or `must_send`: records or an error). Without a session, always true.
    pub fn record_sent(
        &mut self,
        session_id: i32,
        key: &PartitionKey,
        high_watermark: i64,
        log_start_offset: i64,
        must_send: bool,
    ) -> bool {
        let Some(partition) = self
            .sessions
            .get_mut(&session_id)
            .and_then(|session| session.partitions.get_mut(key))
        else {
            return true;
        };
        let moved = partition.high_watermark_sent != high_watermark
            || partition.log_start_offset_sent != log_start_offset;
        partition.high_watermark_sent = high_watermark;
        partition.log_start_offset_sent = log_start_offset;
        moved || must_send
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn key(partition: i32) -> PartitionKey {
        PartitionKey {
            topic_id: Uuid::nil(),
            topic: StrBytes::from_static_str("t"),
            partition,
        }
    }

    fn wanted(offset: i64) -> Wanted {
        Wanted {
            fetch_offset: offset,
            partition_max_bytes: 1024,
        }
    }

    #[test]
    fn a_session_goes_full_then_incremental_and_checks_epochs() {
        let mut sessions = FetchSessions::new(4);
        let full = sessions
            .begin(0, 0, vec![(key(0), wanted(0)), (key(1), wanted(0))], vec![])
            .unwrap();
        assert!(!full.incremental);
        assert_ne!(full.session_id, 0);
        let id = full.session_id;
        // Epoch 1 next; partition 1 moves on, partition 0 is forgotten, 2 is added.
        let next = sessions
            .begin(
                id,
                1,
                vec![(key(1), wanted(5)), (key(2), wanted(0))],
                vec![key(0)],
            )
            .unwrap();
        assert!(next.incremental);
        assert_eq!(
            next.partitions,
            vec![(key(1), wanted(5)), (key(2), wanted(0))]
        );
        assert_eq!(
            sessions.begin(id, 1, vec![], vec![]),
            Err(INVALID_FETCH_SESSION_EPOCH)
        );
        assert_eq!(
            sessions
                .begin(id, 2, vec![], vec![])
                .unwrap()
                .partitions
                .len(),
            2
        );
        assert_eq!(
            sessions.begin(id + 1, 1, vec![], vec![]),
            Err(FETCH_SESSION_ID_NOT_FOUND)
        );
        // Closing: epoch -1 answers without a session and forgets it.
        assert_eq!(
            sessions.begin(id, -1, vec![], vec![]).unwrap().session_id,
            0
        );
        assert_eq!(
            sessions.begin(id, 3, vec![], vec![]),
            Err(FETCH_SESSION_ID_NOT_FOUND)
        );
    }

    #[test]
    fn incremental_reads_take_turns_after_the_last_served_partition() {
        let mut sessions = FetchSessions::new(4);
        let all = (0..4)
            .map(|partition| (key(partition), wanted(0)))
            .collect();
        let id = sessions.begin(0, 0, all, vec![]).unwrap().session_id;
        let order = |context: SessionContext| -> Vec<i32> {
            context
                .partitions
                .iter()
                .map(|(key, _)| key.partition)
                .collect()
        };
        assert_eq!(
            order(sessions.begin(id, 1, vec![], vec![]).unwrap()),
            vec![0, 1, 2, 3]
        );
        // Partitions 0 and 1 filled the response: 2 goes first next time.
        sessions.served(id, 1);
        assert_eq!(
            order(sessions.begin(id, 2, vec![], vec![]).unwrap()),
            vec![2, 3, 0, 1]
        );
        sessions.served(id, 3);
        assert_eq!(
            order(sessions.begin(id, 3, vec![], vec![]).unwrap()),
            vec![2, 3, 0, 1]
        );
        sessions.served(id, 0);
        assert_eq!(
            order(sessions.begin(id, 4, vec![], vec![]).unwrap()),
            vec![3, 0, 1, 2]
        );
    }

    #[test]
    fn only_moved_partitions_are_resent() {
        let mut sessions = FetchSessions::new(4);
        let id = sessions
            .begin(0, 0, vec![(key(0), wanted(0))], vec![])
            .unwrap()
            .session_id;
        assert!(
            sessions.record_sent(id, &key(0), 10, 0, false),
            "first report"
        );
        assert!(
            !sessions.record_sent(id, &key(0), 10, 0, false),
            "nothing moved"
        );
        assert!(
            sessions.record_sent(id, &key(0), 10, 0, true),
            "records to send"
        );
        assert!(
            sessions.record_sent(id, &key(0), 11, 0, false),
            "high watermark moved"
        );
        assert!(
            sessions.record_sent(0, &key(0), 11, 0, false),
            "no session: always"
        );
    }

    #[test]
    fn the_least_recently_used_session_is_evicted() {
        let mut sessions = FetchSessions::new(2);
        let first = sessions
            .begin(0, 0, vec![(key(0), wanted(0))], vec![])
            .unwrap()
            .session_id;
        let second = sessions
            .begin(0, 0, vec![(key(0), wanted(0))], vec![])
            .unwrap()
            .session_id;
        // Using the first makes the second the oldest.
        sessions.begin(first, 1, vec![], vec![]).unwrap();
        let third = sessions
            .begin(0, 0, vec![(key(0), wanted(0))], vec![])
            .unwrap()
            .session_id;
        assert_eq!(sessions.len(), 2);
        assert_ne!(third, 0);
        assert_eq!(
            sessions.begin(second, 1, vec![], vec![]),
            Err(FETCH_SESSION_ID_NOT_FOUND)
        );
        assert!(sessions.begin(first, 2, vec![], vec![]).is_ok());
        let mut none = FetchSessions::new(0);
        assert_eq!(
            none.begin(0, 0, vec![(key(0), wanted(0))], vec![])
                .unwrap()
                .session_id,
            0
        );
    }
}
