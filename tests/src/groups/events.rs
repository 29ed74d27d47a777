//! The JSON-lines report of a group member (docs/testing.md, "Consumer groups"): one event per line,
//! written and flushed as it happens, `t` in wall-clock microseconds. Every member program (Java,
//! librdkafka, franz-go) writes the same events, so the checks never know which library ran.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::HarnessError;

/// A line of a member's report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemberEvent {
    /// The consumer exists and is about to subscribe.
    Started {
        t: i64,
        name: String,
    },
    /// A rebalance callback added `partitions` (possibly none: a callback with nothing in it still
    /// says a rebalance happened); `owned` is the whole assignment afterwards.
    Assigned {
        t: i64,
        partitions: Vec<i32>,
        owned: Vec<i32>,
    },
    /// A rebalance callback took `partitions` away in an orderly way.
    Revoked {
        t: i64,
        partitions: Vec<i32>,
        owned: Vec<i32>,
    },
    /// The member learnt it had lost `partitions` (its session had expired, say).
    Lost {
        t: i64,
        partitions: Vec<i32>,
        owned: Vec<i32>,
    },
    /// The record at (`p`, `o`) was processed; `i` is its generator index (`seq` header).
    Consumed {
        t: i64,
        p: i32,
        o: i64,
        i: i64,
    },
    /// A synchronous commit of these (partition, next offset) pairs succeeded.
    Committed {
        t: i64,
        offsets: Vec<(i32, i64)>,
    },
    /// A commit failed; its records stay uncommitted.
    CommitFailed {
        t: i64,
        message: String,
    },
    /// The client's committed() answer for newly assigned partitions (-1: none committed).
    CommittedFetch {
        t: i64,
        offsets: Vec<(i32, i64)>,
    },
    /// An error the client reported and recovered from.
    ClientError {
        t: i64,
        message: String,
    },
    /// The member failed; it exits non-zero.
    Error {
        t: i64,
        message: String,
    },
    /// The member stops processing and is about to close its consumer (leave the group).
    Closing {
        t: i64,
    },
    Closed {
        t: i64,
    },
    Done {
        t: i64,
        consumed: u64,
    },
}

impl MemberEvent {
    pub fn time_us(&self) -> i64 {
        match self {
            MemberEvent::Started { t, .. }
            | MemberEvent::Assigned { t, .. }
            | MemberEvent::Revoked { t, .. }
            | MemberEvent::Lost { t, .. }
            | MemberEvent::Consumed { t, .. }
            | MemberEvent::Committed { t, .. }
            | MemberEvent::CommitFailed { t, .. }
            | MemberEvent::CommittedFetch { t, .. }
            | MemberEvent::ClientError { t, .. }
            | MemberEvent::Error { t, .. }
            | MemberEvent::Closing { t }
            | MemberEvent::Closed { t }
            | MemberEvent::Done { t, .. } => *t,
        }
    }

    /// The assignment after this event, if it is a rebalance callback.
    pub fn owned_after(&self) -> Option<BTreeSet<i32>> {
        match self {
            MemberEvent::Assigned { owned, .. }
            | MemberEvent::Revoked { owned, .. }
            | MemberEvent::Lost { owned, .. } => Some(owned.iter().copied().collect()),
            _ => None,
        }
    }

    pub fn is_rebalance_callback(&self) -> bool {
        self.owned_after().is_some()
    }
}

/// Reads a member's report; a missing file is an empty report (the member has not started yet).
pub fn read_events(path: &Path) -> Result<Vec<MemberEvent>, HarnessError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(HarnessError::Io {
                what: format!("read {}", path.display()),
                source: error,
            });
        }
    };
    parse_events(&text).map_err(|(line, message)| HarnessError::Report {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Parses a report; a torn last line (a member killed mid-write, or read while writing) is
/// ignored. Returns the 1-based line number of a bad line.
pub fn parse_events(text: &str) -> Result<Vec<MemberEvent>, (usize, String)> {
    let mut events = Vec::new();
    let complete = text.ends_with('\n');
    let line_count = text.lines().count();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(event) => events.push(event),
            Err(_) if number + 1 == line_count && !complete => break,
            Err(error) => return Err((number + 1, error.to_string())),
        }
    }
    Ok(events)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_a_torn_last_line_is_ignored() {
        let text = concat!(
            "{\"kind\":\"started\",\"t\":1,\"name\":\"m1\"}\n",
            "{\"kind\":\"assigned\",\"t\":2,\"partitions\":[0, 1],\"owned\":[0, 1]}\n",
            "{\"kind\":\"consumed\",\"t\":3,\"p\":0,\"o\":5,\"i\":60}\n",
            "{\"kind\":\"committed\",\"t\":4,\"offsets\":[[0,6]]}\n",
            "{\"kind\":\"commit_failed\",\"t\":5,\"message\":\"rebalance\"}\n",
            "{\"kind\":\"committed_fetch\",\"t\":6,\"offsets\":[[1,-1]]}\n",
            "{\"kind\":\"revoked\",\"t\":7,\"partitions\":[1],\"owned\":[0]}\n",
            "{\"kind\":\"closing\",\"t\":8}\n",
            "{\"kind\":\"done\",\"t\":9,\"consumed\":1}\n",
            "{\"kind\":\"consu",
        );
        let events = parse_events(text).unwrap();
        assert_eq!(events.len(), 9);
        assert_eq!(
            events[2],
            MemberEvent::Consumed {
                t: 3,
                p: 0,
                o: 5,
                i: 60
            }
        );
        assert_eq!(events[6].owned_after(), Some(BTreeSet::from([0])));
        assert!(parse_events("{\"kind\":\"nonsense\"}\n{}\n").is_err());
    }
}
