//! Garbage collection of a cluster's window objects (`data/{token}/{counter}`): which of them no
//! committed index entry names *and* no commit record can still name.
//!
//! # The question
//!
//! In a cluster an agent PUTs each window's object under its incarnation's token, then appends
//! one commit record to the sequencer ([`super::SequencedLog`]). Deleting an object is safe only
//! when (a) no index entry of the state names it — fetches need it — and (b) no record naming it
//! can still be *applied*: a record that landed after the delete would give offsets to bytes that
//! are gone. (a) is a lookup. (b) is the whole problem: an append is never retried, but one whose
//! outcome was unknown may land late, and a window whose PUT finished may still be on its way to
//! the sequencer.
//!
//! # Why a record cannot land after the grace
//!
//! A window's record is committed only while two deadlines hold, and the database enforces both
//! when it commits, by its own clock, in the append's own statement (`SequencedLog::append`
//! sends it fenced, [`crate::sequencer::Fence`]):
//!
//! - **the lease**: the writer's registration, of the same incarnation, still has an unexpired
//!   lease (`lease_expires_at > now()`), and
//! - **the record deadline**: one lease (`lease_ms`) after the window's PUT *started*, on the
//!   writer's monotonic clock, mapped to the database's clock through the writer's lease
//!   (`expires_at - (valid_until - send_by)`, values fixed before the send). The mapped deadline
//!   is never before the local one, and at most one renewal's one-way delay — at most
//!   `operation_timeout_ms` — after it.
//!
//! The writer checks both locally too, right before it sends (the fast path: it sends nothing
//! doomed). Those checks alone would not do: a writer paused between its check and the send (a
//! stopped process, a stalled core) could send any time later. The database's check does not
//! depend on when the bytes leave. Its `now()` is the time the append's transaction started, and
//! it runs the statement for at most `statement_timeout` (`operation_timeout_ms`, set on every
//! sequencer connection), so a record is committed by its PUT's start + `lease_ms` +
//! `operation_timeout_ms` (the mapping's slack) + `operation_timeout_ms` (the statement), or
//! never. Hence [`DataGcConfig::record_grace_ms`] = `lease_ms + 2 × operation_timeout_ms`, and an
//! unreferenced object becomes garbage on either of two facts the collector observes:
//!
//! - **Settled:** the collector first listed it unreferenced at least the grace ago. It existed
//!   then, so its PUT had started earlier; a record naming it was committed by that start plus
//!   the grace, or never will be.
//! - **Writer gone:** its token has been missing from the live agents for at least the grace. An
//!   incarnation missing from `live_agents()` (expired, superseded by a restart, deregistered)
//!   holds no unexpired lease in the database from that listing on (a renewal needs one, a new
//!   registration is a new incarnation), so every append of it whose transaction starts later is
//!   refused, and one that started before commits within `statement_timeout` or never.
//!
//! Either way the collector then reads the sequencer's head and compares against a state that has
//! applied at least up to it: every record that could ever name the object is in that state, so
//! an object it does not name is never named again — not by this state, not by a later one, and
//! not by an agent recovering from an older checkpoint (recovery replays the records after the
//! checkpoint, which carry the objects' tails, and reads no window object; the records it replays
//! are the ones this state applied). The collector's clock only has to run at the writers' rate,
//! the assumption the lease already makes.
//!
//! # What it costs, and what it does not collect
//!
//! The facts are kept in memory ([`DataCollector`]), bounded by the objects and tokens listed:
//! after a restart (or when another agent becomes the collector) every object waits one more grace,
//! which only deletes later. The existing delay ([`super::gc::GcConfig::delete_delay_ms`]) comes
//! on top, for readers that resolved an object before retention dropped it. A live agent that
//! does not announce its token (an older version, which does not enforce the record deadline)
//! stops data collection altogether ([`LiveWriters::Unknown`]).
//!
//! # A cluster's compacted objects follow the same rule
//!
//! A cluster's compactor names its objects by its incarnation's token
//! (`compacted/…`, [`crate::types::cluster_compacted_object_id`]) and commits one by a swap
//! record (`ReplaceIndexRange`) that rides a later window. The two facts above hold for it too,
//! because the swap obeys the same two deadlines as a window's record: it is sent by the
//! incarnation whose token names the object (the flusher refuses a swap whose token is no longer
//! the log's, so never after that incarnation's lease), and not later than one lease after the
//! compacted object's PUT started (the job checks before it submits the swap, and the window
//! carrying it passes the deadline on, `EntryContent::send_by`, which `SequencedLog::append`
//! enforces beside its own). So [`DataCollector::candidates`] decides window objects and a
//! cluster's compacted objects alike, by their writer's token ([`cluster_object_token`]). The
//! collector's older rule for `compacted/` (an id's writer epoch at most the state's, `log::gc`)
//! is meaningless with token names and is not used in a cluster. Ids that carry no token (an
//! agent alone's compacted objects) are never collected here.

use std::collections::{BTreeMap, BTreeSet};

use super::LogError;
use crate::store::ObjectStorage;
use crate::types::{AGENT_OBJECT_DIR, LogSeq, cluster_object_token, parse_agent_object_key};

/// Lists the window objects under `data/`, ascending (keys that do not parse are ignored, never
/// deleted).
pub async fn list_agent_objects(store: &dyn ObjectStorage) -> Result<Vec<LogSeq>, LogError> {
    let mut objects: Vec<LogSeq> = store
        .list(AGENT_OBJECT_DIR, None)
        .await?
        .iter()
        .filter_map(|info| parse_agent_object_key(&info.key))
        .collect();
    objects.sort_unstable();
    Ok(objects)
}

/// The role an agent registers to announce the token its window objects are named by.
pub const TOKEN_ROLE_PREFIX: &str = "data-token:";

/// The role announcing `token` (`data-token:0000000042`).
pub fn token_role(token: u32) -> String {
    format!("{TOKEN_ROLE_PREFIX}{token:010}")
}

/// The token a registration's roles announce, if one does.
pub fn token_of_roles(roles: &[String]) -> Option<u32> {
    roles
        .iter()
        .find_map(|role| role.strip_prefix(TOKEN_ROLE_PREFIX)?.parse().ok())
}

/// How long a record naming an object can still land (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataGcConfig {
    /// `lease_ms + 2 × operation_timeout_ms`: the record deadline plus the longest a sent append
    /// takes to land or fail.
    pub record_grace_ms: u64,
}

impl DataGcConfig {
    /// The grace of a cluster whose agents hold leases of `lease_ms` and whose sequencer calls
    /// run under `operation_timeout_ms`.
    pub fn for_cluster(lease_ms: u64, operation_timeout_ms: u64) -> DataGcConfig {
        DataGcConfig {
            record_grace_ms: lease_ms.saturating_add(operation_timeout_ms.saturating_mul(2)),
        }
    }
}

/// The tokens of the live agents, from one `live_agents()` made after the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveWriters {
    /// Every live agent announced its token.
    Known(BTreeSet<u32>),
    /// At least one live agent announces none: nothing is collected.
    Unknown,
}

impl LiveWriters {
    /// From the live agents' roles.
    pub fn of<'a>(roles: impl IntoIterator<Item = &'a [String]>) -> LiveWriters {
        let mut tokens = BTreeSet::new();
        for roles in roles {
            match token_of_roles(roles) {
                Some(token) => {
                    tokens.insert(token);
                }
                None => return LiveWriters::Unknown,
            }
        }
        LiveWriters::Known(tokens)
    }
}

/// What the collector knows of one listed object's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Some live agent does not announce its token.
    Unknown,
    /// Its token is a live agent's.
    Live,
    /// Its token has been missing from the live agents for this long.
    GoneFor { ms: u64 },
}

/// The facts about one listed object that decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectFacts {
    /// An index entry of the caught-up state names it.
    pub referenced: bool,
    /// How long the collector has seen it unreferenced (0 the first time).
    pub unreferenced_for_ms: u64,
    pub writer: Writer,
}

/// Why an object was found to be garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarbageReason {
    /// Unreferenced for the whole grace: its record landed and was dropped, or never comes.
    Settled,
    /// Its writer incarnation has been gone for the grace: it sends no more records.
    WriterGone,
}

/// The decision about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataVerdict {
    /// An index entry names it: kept.
    Referenced,
    /// Some live agent does not say which objects it writes: kept.
    WritersUnknown,
    /// A record naming it may still land: kept for now.
    MayStillCommit,
    /// No index entry names it and no record ever will: deleted after the delete delay.
    Garbage(GarbageReason),
}

/// Decides one object. Pure: the caller guarantees that `referenced` comes from a state that has
/// applied the sequencer's head as read *after* the time the durations run to.
pub fn data_object_verdict(facts: &ObjectFacts, config: &DataGcConfig) -> DataVerdict {
    if facts.referenced {
        return DataVerdict::Referenced;
    }
    match facts.writer {
        Writer::Unknown => DataVerdict::WritersUnknown,
        Writer::GoneFor { ms } if ms >= config.record_grace_ms => {
            DataVerdict::Garbage(GarbageReason::WriterGone)
        }
        Writer::Live | Writer::GoneFor { .. } => {
            if facts.unreferenced_for_ms >= config.record_grace_ms {
                DataVerdict::Garbage(GarbageReason::Settled)
            } else {
                DataVerdict::MayStillCommit
            }
        }
    }
}

/// One pass's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataCandidates {
    /// Objects found to be garbage, ascending.
    pub garbage: Vec<LogSeq>,
    /// Listed objects an index entry names.
    pub referenced: usize,
    /// Unreferenced objects still within the grace (or kept because writers are unknown).
    pub waiting: usize,
    /// A live agent announced no token, so nothing was collected.
    pub writers_unknown: bool,
}

/// The collector's memory of when each fact began, on its monotonic clock. Bounded by the
/// objects and tokens of the last listing.
#[derive(Debug, Default)]
pub struct DataCollector {
    config: DataGcConfig,
    unreferenced_since_ms: BTreeMap<LogSeq, u64>,
    gone_since_ms: BTreeMap<u32, u64>,
}

impl Default for DataGcConfig {
    fn default() -> Self {
        DataGcConfig::for_cluster(10_000, 10_000)
    }
}

impl DataCollector {
    pub fn new(config: DataGcConfig) -> DataCollector {
        DataCollector {
            config,
            unreferenced_since_ms: BTreeMap::new(),
            gone_since_ms: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &DataGcConfig {
        &self.config
    }

    /// Objects and tokens whose fact is being timed.
    pub fn tracked(&self) -> (usize, usize) {
        (self.unreferenced_since_ms.len(), self.gone_since_ms.len())
    }

    /// Decides every object of `listed` at `now_ms`: window objects (`data/…`) and a cluster's
    /// compacted objects (`compacted/…` named by a token), by their writer's token.
    ///
    /// The caller's order is the safety argument: list `data/`, then list the live agents
    /// (`live`), then read `now_ms`, then read the sequencer's head, then take `referenced` from a
    /// state that has applied at least that head.
    pub fn candidates(
        &mut self,
        listed: &[LogSeq],
        referenced: &BTreeSet<LogSeq>,
        live: &LiveWriters,
        now_ms: u64,
    ) -> DataCandidates {
        let listed_tokens: BTreeSet<u32> = listed
            .iter()
            .filter_map(|id| cluster_object_token(*id))
            .collect();
        // A token is timed while it is listed and not live; a live one starts again from zero
        // if it is ever missing later.
        match live {
            LiveWriters::Known(tokens) => {
                self.gone_since_ms
                    .retain(|token, _| listed_tokens.contains(token) && !tokens.contains(token));
                for token in listed_tokens.iter().filter(|token| !tokens.contains(token)) {
                    self.gone_since_ms.entry(*token).or_insert(now_ms);
                }
            }
            LiveWriters::Unknown => self.gone_since_ms.clear(),
        }
        // Objects without a writer's token are never decided here (see the module doc).
        let listed_set: BTreeSet<LogSeq> = listed
            .iter()
            .copied()
            .filter(|id| cluster_object_token(*id).is_some())
            .collect();
        self.unreferenced_since_ms
            .retain(|id, _| listed_set.contains(id) && !referenced.contains(id));
        let mut result = DataCandidates {
            writers_unknown: *live == LiveWriters::Unknown,
            ..DataCandidates::default()
        };
        for id in &listed_set {
            let is_referenced = referenced.contains(id);
            let unreferenced_for_ms = if is_referenced {
                0
            } else {
                now_ms.saturating_sub(*self.unreferenced_since_ms.entry(*id).or_insert(now_ms))
            };
            let Some(token) = cluster_object_token(*id) else {
                continue;
            };
            let writer = match live {
                LiveWriters::Unknown => Writer::Unknown,
                LiveWriters::Known(tokens) if tokens.contains(&token) => Writer::Live,
                LiveWriters::Known(_) => Writer::GoneFor {
                    ms: self
                        .gone_since_ms
                        .get(&token)
                        .map_or(0, |since| now_ms.saturating_sub(*since)),
                },
            };
            let facts = ObjectFacts {
                referenced: is_referenced,
                unreferenced_for_ms,
                writer,
            };
            match data_object_verdict(&facts, &self.config) {
                DataVerdict::Referenced => result.referenced += 1,
                DataVerdict::WritersUnknown | DataVerdict::MayStillCommit => result.waiting += 1,
                DataVerdict::Garbage(_) => result.garbage.push(*id),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{agent_object_id, cluster_compacted_object_id, compacted_object_id};

    const GRACE: u64 = 23_000;

    fn config() -> DataGcConfig {
        DataGcConfig::for_cluster(3_000, 10_000)
    }

    #[test]
    fn the_grace_is_one_lease_and_two_operation_timeouts() {
        assert_eq!(config().record_grace_ms, GRACE);
    }

    #[test]
    fn each_fact_decides_as_the_safety_argument_says() {
        use DataVerdict::*;
        use GarbageReason::*;
        let cases: [(&str, ObjectFacts, DataVerdict); 12] = [
            (
                "referenced, writer live",
                facts(true, 0, Writer::Live),
                Referenced,
            ),
            (
                "referenced, writer long gone, long unreferenced before",
                facts(true, GRACE * 10, Writer::GoneFor { ms: GRACE * 10 }),
                Referenced,
            ),
            (
                "referenced, writers unknown",
                facts(true, 0, Writer::Unknown),
                Referenced,
            ),
            (
                "unreferenced, live incarnation, just listed (its record may be on its way)",
                facts(false, 0, Writer::Live),
                MayStillCommit,
            ),
            (
                "unreferenced, live incarnation, within the grace",
                facts(false, GRACE - 1, Writer::Live),
                MayStillCommit,
            ),
            (
                "unreferenced, live incarnation, the whole grace (dropped or never committed)",
                facts(false, GRACE, Writer::Live),
                Garbage(Settled),
            ),
            (
                "unreferenced, writer gone only just",
                facts(false, 0, Writer::GoneFor { ms: 0 }),
                MayStillCommit,
            ),
            (
                "unreferenced, writer gone within the grace (an append may still land)",
                facts(false, 5, Writer::GoneFor { ms: GRACE - 1 }),
                MayStillCommit,
            ),
            (
                "unreferenced, expired incarnation gone for the grace, first seen now",
                facts(false, 0, Writer::GoneFor { ms: GRACE }),
                Garbage(WriterGone),
            ),
            (
                "unreferenced, writer gone briefly but the object settled",
                facts(false, GRACE, Writer::GoneFor { ms: 1 }),
                Garbage(Settled),
            ),
            (
                "unreferenced, writers unknown (an older agent is live), long settled",
                facts(false, GRACE * 10, Writer::Unknown),
                WritersUnknown,
            ),
            (
                "unreferenced, writers unknown, just listed",
                facts(false, 0, Writer::Unknown),
                WritersUnknown,
            ),
        ];
        for (name, facts, expected) in cases {
            assert_eq!(data_object_verdict(&facts, &config()), expected, "{name}");
        }
    }

    fn facts(referenced: bool, unreferenced_for_ms: u64, writer: Writer) -> ObjectFacts {
        ObjectFacts {
            referenced,
            unreferenced_for_ms,
            writer,
        }
    }

    #[test]
    fn roles_announce_tokens_and_an_agent_without_one_stops_collection() {
        assert_eq!(token_role(42), "data-token:0000000042");
        let roles = [
            vec!["broker".to_owned(), token_role(42)],
            vec![token_role(7)],
        ];
        assert_eq!(
            LiveWriters::of(roles.iter().map(Vec::as_slice)),
            LiveWriters::Known(BTreeSet::from([7, 42]))
        );
        let older = [vec![token_role(42)], vec!["broker".to_owned()]];
        assert_eq!(
            LiveWriters::of(older.iter().map(Vec::as_slice)),
            LiveWriters::Unknown
        );
        assert_eq!(token_of_roles(&["data-token:x".to_owned()]), None);
    }

    /// The collector over time: a live agent's window that never committed, a window that was
    /// referenced and then dropped, a killed agent's leftover, and a record that landed late.
    #[test]
    fn the_collector_times_each_fact_from_when_it_first_saw_it() {
        let mut collector = DataCollector::new(config());
        let (live, dead) = (1, 2);
        let orphan = agent_object_id(live, 3); // PUT, append failed: never referenced
        let dropped = agent_object_id(live, 4); // referenced, then retention dropped it
        let late = agent_object_id(live, 5); // its record lands late
        let leftover = agent_object_id(dead, 0); // a killed agent's window
        let listed = [orphan, dropped, late, leftover];
        let live_writers = LiveWriters::Known(BTreeSet::from([live]));

        let first = collector.candidates(&listed, &BTreeSet::from([dropped]), &live_writers, 1_000);
        assert_eq!(first.garbage, Vec::<LogSeq>::new());
        assert_eq!((first.referenced, first.waiting), (1, 3));

        // The late record lands; retention drops `dropped`.
        let at = 1_000 + GRACE - 1;
        let second = collector.candidates(&listed, &BTreeSet::from([late]), &live_writers, at);
        assert!(second.garbage.is_empty(), "{second:?}");

        let at = 1_000 + GRACE;
        let third = collector.candidates(&listed, &BTreeSet::from([late]), &live_writers, at);
        // The orphan settled, the dead agent's leftover is gone for the grace; `dropped` became
        // unreferenced only at the second pass and waits; `late` is referenced.
        assert_eq!(third.garbage, vec![orphan, leftover]);
        assert_eq!((third.referenced, third.waiting), (1, 1));

        // Deleted: the listing no longer has them, and nothing about them is kept.
        let listed = [dropped, late];
        let at = 1_000 + 2 * GRACE;
        let fourth = collector.candidates(&listed, &BTreeSet::new(), &live_writers, at);
        assert_eq!(fourth.garbage, vec![dropped]);
        assert_eq!(collector.tracked(), (2, 0));

        // An older agent joins: nothing is collected, and the timing of gone writers restarts.
        let unknown = collector.candidates(&listed, &BTreeSet::new(), &LiveWriters::Unknown, at);
        assert!(unknown.garbage.is_empty() && unknown.writers_unknown);
    }

    /// A cluster's compacted objects, decided beside window objects by their writer's token:
    /// referenced (swapped in) stays; an orphan of a live incarnation (its swap rejected or never
    /// sent) settles after the grace; one of an incarnation gone for the grace goes at once; an
    /// agent alone's compacted object (named by epoch) is never decided here.
    #[test]
    fn a_clusters_compacted_objects_follow_the_window_objects_rule() {
        let mut collector = DataCollector::new(config());
        let (live, dead) = (11, 12);
        let swapped_in = cluster_compacted_object_id(live, 0);
        let orphan = cluster_compacted_object_id(live, 1);
        let dead_ones = cluster_compacted_object_id(dead, 0);
        let by_epoch = compacted_object_id(1, 0);
        let window = agent_object_id(live, 7);
        let listed = [window, swapped_in, orphan, dead_ones, by_epoch];
        let referenced = BTreeSet::from([swapped_in]);
        let live_writers = LiveWriters::Known(BTreeSet::from([live]));

        let first = collector.candidates(&listed, &referenced, &live_writers, 0);
        assert!(first.garbage.is_empty(), "{first:?}");
        // The epoch-named object is not counted at all; the rest: one referenced, three waiting.
        assert_eq!((first.referenced, first.waiting), (1, 3));

        // A grace later: the live incarnation's orphan and window settled; the dead one's token
        // has been gone for the grace, so its objects go, even one first listed only now.
        let dead_late = cluster_compacted_object_id(dead, 1);
        let listed = [window, swapped_in, orphan, dead_ones, dead_late, by_epoch];
        let second = collector.candidates(&listed, &referenced, &live_writers, GRACE);
        assert_eq!(
            second.garbage,
            vec![window, orphan, dead_ones, dead_late],
            "{second:?}"
        );
        assert_eq!(second.referenced, 1);

        // Within the grace nothing unreferenced of a live writer goes, whatever its kind.
        let mut fresh = DataCollector::new(config());
        let pass = fresh.candidates(&[orphan], &BTreeSet::new(), &live_writers, 0);
        let pass_later = fresh.candidates(&[orphan], &BTreeSet::new(), &live_writers, GRACE - 1);
        assert!(pass.garbage.is_empty() && pass_later.garbage.is_empty());

        // Referenced: kept whatever the time, even with its writer long gone.
        let gone = LiveWriters::Known(BTreeSet::new());
        collector.candidates(&[swapped_in], &referenced, &gone, 10 * GRACE);
        let kept = collector.candidates(&[swapped_in], &referenced, &gone, 20 * GRACE);
        assert_eq!((kept.garbage.len(), kept.referenced), (0, 1));
        // Never the epoch-named one, whatever the time and facts.
        let never = collector.candidates(&[by_epoch], &BTreeSet::new(), &gone, 40 * GRACE);
        assert_eq!(never, DataCandidates::default());
        assert_eq!(collector.tracked().0, 0);
    }

    #[test]
    fn a_token_that_comes_back_is_timed_again_from_zero() {
        let mut collector = DataCollector::new(config());
        let object = agent_object_id(9, 0);
        let referenced = BTreeSet::from([object]);
        let none = LiveWriters::Known(BTreeSet::new());
        let nine = LiveWriters::Known(BTreeSet::from([9]));
        collector.candidates(&[object], &referenced, &none, 0);
        collector.candidates(&[object], &referenced, &nine, GRACE / 2);
        let pass = collector.candidates(&[object], &BTreeSet::new(), &none, GRACE + 1);
        assert!(pass.garbage.is_empty(), "{pass:?}");
        let pass = collector.candidates(&[object], &BTreeSet::new(), &none, 2 * GRACE + 1);
        assert_eq!(pass.garbage, vec![object]);
    }
}
