//! Identifiers shared by every layer of the engine.

use std::fmt;

/// A topic's UUID, as Kafka's `topic_id`. Stored as raw bytes so it archives with rkyv trivially.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash))]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// The all-zero id Kafka uses to mean "no topic id".
    pub const ZERO: TopicId = TopicId([0; 16]);

    pub fn from_uuid(uuid: uuid::Uuid) -> Self {
        TopicId(*uuid.as_bytes())
    }

    pub fn as_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.0)
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({})", self.as_uuid())
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_uuid())
    }
}

/// One partition of one topic, named by topic id (names can be deleted and reused; ids cannot).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash))]
pub struct TopicPartition {
    pub topic_id: TopicId,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic_id: TopicId, partition: i32) -> Self {
        TopicPartition {
            topic_id,
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.partition)
    }
}

/// A position in the metadata log. Every object the agent writes sits at one position; the key of
/// the object at position `n` is [`log_key`]`(prefix, n)`.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash))]
pub struct LogSeq(pub u64);

impl LogSeq {
    pub fn next(self) -> LogSeq {
        LogSeq(self.0 + 1)
    }
}

impl fmt::Display for LogSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0)
    }
}

/// Folder (key prefix) of the log entries inside a store.
pub const LOG_DIR: &str = "log";
/// Folder (key prefix) of the checkpoints inside a store.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// The key of the log entry at `seq`. Zero-padded so that listing order is log order.
pub fn log_key(seq: LogSeq) -> String {
    format!("{LOG_DIR}/{seq}")
}

/// The key of the checkpoint that holds the state after applying every entry up to `seq`.
pub fn checkpoint_key(seq: LogSeq) -> String {
    format!("{CHECKPOINT_DIR}/{seq}")
}

/// Folder (key prefix) of the objects object compaction writes.
pub const COMPACTED_DIR: &str = "compacted";
/// Object ids at or above this name compacted objects (`compacted/{id - base:020}`), below it log
/// entries (`log/{seq:020}`). Index entries name their object by this one number, so a swap from
/// window objects to a compacted object changes no type and no checkpoint layout.
pub const COMPACTED_OBJECT_BASE: u64 = 1 << 63;

/// The id of compacted object number `job` of writer epoch `writer_epoch`: unique across writers
/// (epochs are) and across this writer's jobs, so no two compactions ever race for one key.
pub fn compacted_object_id(writer_epoch: u64, job: u32) -> LogSeq {
    LogSeq(COMPACTED_OBJECT_BASE | ((writer_epoch & 0x7fff_ffff) << 32) | u64::from(job))
}

/// True for an id [`compacted_object_id`] or [`cluster_compacted_object_id`] made.
pub fn is_compacted_object(id: LogSeq) -> bool {
    id.0 >= COMPACTED_OBJECT_BASE
}

/// The writer epoch a compacted object id carries (for an id of a cluster's compactor, the
/// marker and the token: see [`CLUSTER_COMPACTED_MARKER`]).
pub fn compacted_object_epoch(id: LogSeq) -> u64 {
    (id.0 & !COMPACTED_OBJECT_BASE) >> 32
}

/// The bit of a compacted object id's 31 epoch bits that says "named by a cluster agent's token,
/// not by a writer epoch". A cluster's agents share the state's writer epoch, so their compactors
/// name objects by their incarnation's token (30 bits, [`AGENT_OBJECT_TOKEN_MAX`]) instead, with
/// this bit set beside it. An agent alone never reaches writer epoch 2^30 (one epoch per
/// takeover), so the two kinds never meet, and the single agent's collector rule ("epoch at most
/// the state's") never takes a cluster's object for one of its own.
pub const CLUSTER_COMPACTED_MARKER: u64 = 1 << 30;

/// The id of compacted object number `job` of the cluster agent incarnation holding `token`:
/// unique across incarnations (tokens are, while their objects exist) and across its jobs.
pub fn cluster_compacted_object_id(token: u32, job: u32) -> LogSeq {
    compacted_object_id(
        CLUSTER_COMPACTED_MARKER | u64::from(token & AGENT_OBJECT_TOKEN_MAX),
        job,
    )
}

/// The token and job number of a compacted object a cluster agent named
/// ([`cluster_compacted_object_id`]); `None` for any other id (an agent alone's, by epoch).
pub fn cluster_compacted_object_parts(id: LogSeq) -> Option<(u32, u32)> {
    if !is_compacted_object(id) {
        return None;
    }
    let epoch = compacted_object_epoch(id);
    (epoch & CLUSTER_COMPACTED_MARKER != 0).then(|| {
        (
            (epoch & u64::from(AGENT_OBJECT_TOKEN_MAX)) as u32,
            id.0 as u32,
        )
    })
}

/// The token of the cluster agent incarnation that wrote object `id`: a window object's
/// ([`agent_object_id`]) or a compacted object's ([`cluster_compacted_object_id`]). `None` for
/// log entries and an agent alone's compacted objects.
pub fn cluster_object_token(id: LogSeq) -> Option<u32> {
    if is_agent_object(id) {
        Some(agent_object_parts(id).0)
    } else {
        cluster_compacted_object_parts(id).map(|(token, _)| token)
    }
}

/// Folder (key prefix) of the window objects agents of a cluster write (`--metadata`): each agent
/// incarnation writes under a token of its own, so agents never race for a key.
pub const AGENT_OBJECT_DIR: &str = "data";
/// Object ids in `[AGENT_OBJECT_BASE, COMPACTED_OBJECT_BASE)` name window objects of a cluster's
/// agents (`data/{token:010}/{counter:010}`), below it log entries. In a cluster a window object
/// is not a log position: the sequencer's record that commits it is (`docs/cluster.md`).
pub const AGENT_OBJECT_BASE: u64 = 1 << 62;
/// Largest token of an agent incarnation (30 bits).
pub const AGENT_OBJECT_TOKEN_MAX: u32 = (1 << 30) - 1;

/// The id of window object `counter` of the agent incarnation holding `token`.
pub fn agent_object_id(token: u32, counter: u32) -> LogSeq {
    LogSeq(
        AGENT_OBJECT_BASE | (u64::from(token & AGENT_OBJECT_TOKEN_MAX) << 32) | u64::from(counter),
    )
}

/// True for an id [`agent_object_id`] made.
pub fn is_agent_object(id: LogSeq) -> bool {
    (AGENT_OBJECT_BASE..COMPACTED_OBJECT_BASE).contains(&id.0)
}

/// The token and counter an agent object id carries.
pub fn agent_object_parts(id: LogSeq) -> (u32, u32) {
    let token = ((id.0 >> 32) as u32) & AGENT_OBJECT_TOKEN_MAX;
    (token, id.0 as u32)
}

/// The key of the object an index entry names: a log entry, an agent's window object or a
/// compacted object.
pub fn object_key(id: LogSeq) -> String {
    if is_compacted_object(id) {
        format!("{COMPACTED_DIR}/{:020}", id.0 & !COMPACTED_OBJECT_BASE)
    } else if is_agent_object(id) {
        let (token, counter) = agent_object_parts(id);
        format!("{AGENT_OBJECT_DIR}/{token:010}/{counter:010}")
    } else {
        log_key(id)
    }
}

/// The id of a key written by [`object_key`] for an agent's window object
/// (`data/{token:010}/{counter:010}`); `None` for any other key (never collected).
pub fn parse_agent_object_key(key: &str) -> Option<LogSeq> {
    let rest = key.strip_prefix(AGENT_OBJECT_DIR)?.strip_prefix('/')?;
    let (token, counter) = rest.split_once('/')?;
    let number = |text: &str| {
        (text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    let token = u32::try_from(number(token)?).ok()?;
    let counter = u32::try_from(number(counter)?).ok()?;
    (token <= AGENT_OBJECT_TOKEN_MAX).then(|| agent_object_id(token, counter))
}

/// The id of a key written by [`object_key`] for a compacted object.
pub fn parse_compacted_key(key: &str) -> Option<LogSeq> {
    let number = parse_seq_key(COMPACTED_DIR, key)?;
    (number.0 < COMPACTED_OBJECT_BASE).then_some(LogSeq(number.0 | COMPACTED_OBJECT_BASE))
}

/// Parses the sequence number out of a key written by [`log_key`] or [`checkpoint_key`].
pub fn parse_seq_key(dir: &str, key: &str) -> Option<LogSeq> {
    let rest = key.strip_prefix(dir)?.strip_prefix('/')?;
    if rest.len() != 20 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok().map(LogSeq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_log_order_and_parse_back() {
        let a = log_key(LogSeq(9));
        let b = log_key(LogSeq(10));
        assert!(a < b);
        assert_eq!(parse_seq_key(LOG_DIR, &b), Some(LogSeq(10)));
        assert_eq!(parse_seq_key(LOG_DIR, "log/12"), None);
        assert_eq!(parse_seq_key(CHECKPOINT_DIR, &b), None);
    }

    #[test]
    fn agent_object_ids_are_neither_log_positions_nor_compacted_objects() {
        let id = agent_object_id(AGENT_OBJECT_TOKEN_MAX, u32::MAX);
        assert!(is_agent_object(id));
        assert!(!is_compacted_object(id));
        assert_eq!(agent_object_parts(id), (AGENT_OBJECT_TOKEN_MAX, u32::MAX));
        assert_eq!(
            object_key(agent_object_id(7, 9)),
            "data/0000000007/0000000009"
        );
        assert!(!is_agent_object(LogSeq(AGENT_OBJECT_BASE - 1)));
        assert!(!is_agent_object(compacted_object_id(1, 1)));
    }

    #[test]
    fn a_cluster_compactor_names_objects_by_token_beside_an_agent_alones() {
        for (token, job) in [(0, 0), (7, 9), (AGENT_OBJECT_TOKEN_MAX, u32::MAX)] {
            let id = cluster_compacted_object_id(token, job);
            assert!(is_compacted_object(id) && !is_agent_object(id));
            assert_eq!(cluster_compacted_object_parts(id), Some((token, job)));
            assert_eq!(cluster_object_token(id), Some(token));
            assert_eq!(parse_compacted_key(&object_key(id)), Some(id));
            // Never a candidate of the single agent's rule (epoch at most the state's).
            assert!(compacted_object_epoch(id) > u64::from(u32::MAX >> 2));
        }
        // An agent alone's ids (writer epochs below 2^30) keep parsing as before, as no token's.
        for epoch in [0, 1, 42, CLUSTER_COMPACTED_MARKER - 1] {
            let id = compacted_object_id(epoch, 3);
            assert_eq!(compacted_object_epoch(id), epoch);
            assert_eq!(cluster_compacted_object_parts(id), None);
            assert_eq!(cluster_object_token(id), None);
            assert_eq!(parse_compacted_key(&object_key(id)), Some(id));
        }
        assert_eq!(cluster_object_token(agent_object_id(5, 1)), Some(5));
        assert_eq!(cluster_object_token(LogSeq(12)), None);
        assert_ne!(
            cluster_compacted_object_id(1, 0),
            compacted_object_id(1, 0),
            "token 1 is not writer epoch 1"
        );
    }

    #[test]
    fn agent_object_keys_parse_back_and_nothing_else_does() {
        for (token, counter) in [(0, 0), (7, 9), (AGENT_OBJECT_TOKEN_MAX, u32::MAX)] {
            let id = agent_object_id(token, counter);
            assert_eq!(parse_agent_object_key(&object_key(id)), Some(id));
        }
        for key in [
            "data/0000000007",
            "data/0000000007/9",
            "data/0000000007/0000000009/x",
            "data/1073741824/0000000009",
            "data/0000000007/4294967296",
            "log/00000000000000000001",
            "data/000000000a/0000000009",
        ] {
            assert_eq!(parse_agent_object_key(key), None, "{key}");
        }
    }
}
