//! Committed group offsets survive the agent: written through the metadata log on a real S3-API
//! server (s3s-fs on loopback), then recovered by a fresh log opened on the store alone, as an
//! agent starting on a new disk does. Recovery goes through a checkpoint (offsets in it) and the
//! entries after it (offsets replayed), and later DeleteOffsets/DeleteGroups survive recovery too.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_engine::log::{EntryContent, LogConfig, MetadataLog};
use sluice_engine::metadata::{Command, CommittedOffset, Event, OffsetCommit};
use sluice_engine::store::{
    ObjectStorage, S3TestServer, StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store,
};
use sluice_engine::types::TopicId;

/// Checkpoints only when the test asks for one.
fn config() -> LogConfig {
    LogConfig {
        checkpoint_interval_entries: 1_000_000,
        ..LogConfig::default()
    }
}

/// A new client and runtime bridge per "agent", so nothing but the bucket is shared.
fn agent_store(server: &S3TestServer, prefix: &str) -> Arc<dyn ObjectStorage> {
    let inner = open_store(&StoreConfig::from_url(&server.store_url(prefix)).unwrap()).unwrap();
    StoreRuntime::start(
        inner,
        StoreRuntimeConfig {
            worker_threads: 1,
            inflight_requests_max: 16,
            ..StoreRuntimeConfig::default()
        },
    )
    .unwrap()
}

fn offset(topic: &str, partition: u32, offset: i64, metadata: Option<&str>) -> OffsetCommit {
    OffsetCommit {
        topic: topic.to_owned(),
        partition,
        offset,
        leader_epoch: 7,
        metadata: metadata.map(str::to_owned),
        commit_timestamp_ms: 1_700_000_000_000 + offset,
    }
}

/// What the test expects the state to hold: group -> (topic, partition) -> offset.
type Expected = BTreeMap<String, BTreeMap<(String, u32), CommittedOffset>>;

fn remember(expected: &mut Expected, group: &str, commits: &[OffsetCommit]) {
    for commit in commits {
        expected.entry(group.to_owned()).or_default().insert(
            (commit.topic.clone(), commit.partition),
            CommittedOffset {
                offset: commit.offset,
                leader_epoch: commit.leader_epoch,
                metadata: commit.metadata.clone(),
                commit_timestamp_ms: commit.commit_timestamp_ms,
            },
        );
    }
}

async fn append(log: &MetadataLog, commands: Vec<Command>) -> Vec<Event> {
    let outcome = log
        .append(EntryContent {
            commands,
            created_at_ms: 1_700_000_000_000,
            ..EntryContent::default()
        })
        .await
        .unwrap();
    outcome.events
}

/// Commits `commits` for `group` in one entry and checks none was skipped.
async fn commit(
    log: &MetadataLog,
    expected: &mut Expected,
    group: &str,
    commits: Vec<OffsetCommit>,
) {
    let events = append(
        log,
        vec![Command::CommitOffsets {
            group: group.to_owned(),
            offsets: commits.clone(),
        }],
    )
    .await;
    assert_eq!(
        events,
        vec![Event::OffsetsCommitted {
            index: 0,
            group: group.to_owned(),
            skipped: vec![]
        }]
    );
    remember(expected, group, &commits);
}

/// The log's state holds exactly `expected`, through every accessor.
fn assert_offsets(log: &MetadataLog, expected: &Expected) {
    log.with_state(|state| {
        let groups: Vec<&str> = state.offset_groups().collect();
        let expected_groups: Vec<&str> = expected.keys().map(String::as_str).collect();
        assert_eq!(groups, expected_groups);
        for (group, offsets) in expected {
            let stored: BTreeMap<(String, u32), CommittedOffset> = state
                .committed_offsets(group)
                .map(|((topic, partition), committed)| {
                    ((topic.to_owned(), partition), committed.clone())
                })
                .collect();
            assert_eq!(&stored, offsets, "group {group}");
            for ((topic, partition), committed) in offsets {
                assert_eq!(
                    state.committed_offset(group, topic, *partition),
                    Some(committed)
                );
            }
        }
        let total: usize = expected.values().map(BTreeMap::len).sum();
        assert_eq!(state.committed_offset_count(), total);
    });
}

#[tokio::test(flavor = "current_thread")]
async fn committed_offsets_survive_a_fresh_agent() {
    let server = S3TestServer::start().unwrap();
    let prefix = "group-offsets";
    let mut expected = Expected::new();

    // First agent: topics, commits, a checkpoint, then more commits after it.
    let (log, _) = MetadataLog::open(agent_store(&server, prefix), config(), 0)
        .await
        .unwrap();
    let events = append(
        &log,
        vec![
            Command::CreateTopic {
                name: "orders".into(),
                topic_id: TopicId([1; 16]),
                partition_count: 4,
                configs: BTreeMap::new(),
            },
            Command::CreateTopic {
                name: "audit".into(),
                topic_id: TopicId([2; 16]),
                partition_count: 1,
                configs: BTreeMap::new(),
            },
        ],
    )
    .await;
    assert!(
        events
            .iter()
            .all(|event| matches!(event, Event::TopicCreated { .. })),
        "{events:?}"
    );
    commit(
        &log,
        &mut expected,
        "billing",
        (0..4)
            .map(|partition| {
                offset(
                    "orders",
                    partition,
                    100 + i64::from(partition),
                    Some("before checkpoint"),
                )
            })
            .collect(),
    )
    .await;
    commit(
        &log,
        &mut expected,
        "audit-reader",
        vec![
            offset("audit", 0, -1, None),
            offset("orders", 3, 5, Some("")),
        ],
    )
    .await;
    commit(
        &log,
        &mut expected,
        "short-lived",
        vec![offset("orders", 0, 1, None)],
    )
    .await;
    let checkpoint_seq = log
        .write_checkpoint()
        .await
        .unwrap()
        .expect("a checkpoint position");

    // After the checkpoint: updates of checkpointed offsets, a new group, a deletion of some
    // offsets, and a commit that skips an unknown partition.
    commit(
        &log,
        &mut expected,
        "billing",
        vec![offset("orders", 1, 250, Some("after checkpoint ✓"))],
    )
    .await;
    commit(
        &log,
        &mut expected,
        "late",
        vec![offset("audit", 0, 9, Some("late"))],
    )
    .await;
    let events = append(
        &log,
        vec![
            Command::DeleteOffsets {
                group: "billing".into(),
                partitions: vec![("orders".into(), 2)],
            },
            Command::CommitOffsets {
                group: "late".into(),
                offsets: vec![offset("orders", 9, 1, None), offset("orders", 2, 3, None)],
            },
        ],
    )
    .await;
    assert!(
        matches!(
            &events[0],
            Event::OffsetsDeleted {
                deleted_count: 1,
                ..
            }
        ),
        "{events:?}"
    );
    let Event::OffsetsCommitted { skipped, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, 0);
    assert_eq!(skipped[0].1.kafka_error_code(), 3);
    expected
        .get_mut("billing")
        .unwrap()
        .remove(&("orders".to_owned(), 2));
    remember(&mut expected, "late", &[offset("orders", 2, 3, None)]);
    assert_offsets(&log, &expected);
    drop(log);

    // Second agent, fresh: the checkpoint plus the three entries after it.
    let (log, stats) = MetadataLog::open(agent_store(&server, prefix), config(), 0)
        .await
        .unwrap();
    assert_eq!(stats.checkpoint_seq, Some(checkpoint_seq));
    assert_eq!(stats.entries_replayed, 3);
    assert_offsets(&log, &expected);
    log.with_state(|state| {
        assert_eq!(
            state
                .committed_offset("billing", "orders", 1)
                .unwrap()
                .metadata
                .as_deref(),
            Some("after checkpoint ✓")
        );
        assert_eq!(
            state
                .committed_offset("audit-reader", "orders", 3)
                .unwrap()
                .metadata
                .as_deref(),
            Some("")
        );
        assert_eq!(
            state
                .committed_offset("audit-reader", "audit", 0)
                .unwrap()
                .metadata,
            None
        );
        assert_eq!(
            state
                .committed_offset("audit-reader", "audit", 0)
                .unwrap()
                .offset,
            -1
        );
    });

    // Group deletions and offset deletions made after recovery are durable too, and a deleted
    // topic takes its offsets with it.
    let events = append(
        &log,
        vec![
            Command::DeleteGroups {
                groups: vec!["short-lived".into(), "never-existed".into()],
            },
            Command::DeleteOffsets {
                group: "audit-reader".into(),
                partitions: vec![("audit".into(), 0)],
            },
        ],
    )
    .await;
    assert_eq!(
        events[0],
        Event::GroupsDeleted {
            index: 0,
            deleted: vec!["short-lived".into()]
        }
    );
    expected.remove("short-lived");
    expected
        .get_mut("audit-reader")
        .unwrap()
        .remove(&("audit".to_owned(), 0));
    append(
        &log,
        vec![Command::DeleteTopic {
            topic_id: TopicId([2; 16]),
        }],
    )
    .await;
    expected.remove("late").unwrap();
    remember(&mut expected, "late", &[offset("orders", 2, 3, None)]);
    assert_offsets(&log, &expected);
    drop(log);

    // Third agent: nothing deleted comes back.
    let (log, stats) = MetadataLog::open(agent_store(&server, prefix), config(), 0)
        .await
        .unwrap();
    assert_eq!(stats.checkpoint_seq, Some(checkpoint_seq));
    assert_offsets(&log, &expected);
    log.with_state(|state| {
        assert_eq!(state.committed_offsets("short-lived").count(), 0);
        assert_eq!(state.committed_offset("audit-reader", "audit", 0), None);
        assert_eq!(state.committed_offset("late", "audit", 0), None);
    });

    // And from a checkpoint alone: write one now, open a fourth agent.
    let checkpoint_seq = log.write_checkpoint().await.unwrap().unwrap();
    drop(log);
    let (log, stats) = MetadataLog::open(agent_store(&server, prefix), config(), 0)
        .await
        .unwrap();
    assert_eq!(stats.checkpoint_seq, Some(checkpoint_seq));
    assert_eq!(stats.entries_replayed, 0);
    assert_offsets(&log, &expected);
}
