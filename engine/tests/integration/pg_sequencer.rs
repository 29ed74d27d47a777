//! The metadata-log sequencer against a real PostgreSQL (`common::postgres`): gap-free positions
//! in commit order under concurrent appenders and tailers, truncation, leases by the database
//! clock, a stored cluster id, NOTIFY waking a tailer before the poll, and a killed connection.
//! The capacity figures of docs/cluster.md come from the `#[ignore]`d `sequencer_capacity`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_engine::sequencer::{
    AgentRegistration, ErrorKind, Fence, Lease, PgSequencer, SequencerConfig, SequencerError,
};
use tokio::time::Instant;

use crate::common::postgres::TestPostgres;

const APPENDERS: usize = 8;
const APPENDS_PER_APPENDER: usize = 500;
const BATCH_RECORDS_MAX: usize = 5;
const TAILERS: usize = 3;

fn payload(appender: usize, append: usize, record: usize) -> Bytes {
    Bytes::from(format!(
        "appender {appender} append {append} record {record}"
    ))
}

/// Every tailer reads from 0 until it has `total` records, waking on the head watch (or a 1 s
/// timeout) whenever it is at the head, with a random read limit each time.
async fn tail(
    sequencer: PgSequencer,
    total: u64,
    seed: u64,
) -> Result<Vec<(u64, Bytes)>, SequencerError> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut head = sequencer.subscribe();
    let mut seen: Vec<(u64, Bytes)> = Vec::new();
    let mut after = 0;
    while after < total {
        let limit = rng.random_range(1..=64);
        let records = sequencer.read_after(after, limit).await?;
        if records.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), head.changed()).await;
            continue;
        }
        for (position, record) in records {
            assert_eq!(position, after + 1, "tailer {seed}: a gap or a repeat");
            after = position;
            seen.push((position, record));
        }
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_and_tailers_see_one_gap_free_order() {
    let Some(postgres) =
        TestPostgres::start_or_skip("concurrent_appenders_and_tailers_see_one_gap_free_order")
    else {
        return;
    };
    // The batch sizes are drawn up front, so the tailers know how many records to wait for.
    let mut rng = SmallRng::seed_from_u64(15);
    let batches: Vec<Vec<usize>> = (0..APPENDERS)
        .map(|_| {
            (0..APPENDS_PER_APPENDER)
                .map(|_| rng.random_range(1..=BATCH_RECORDS_MAX))
                .collect()
        })
        .collect();
    let total: u64 = batches.iter().flatten().map(|&n| n as u64).sum();

    let mut tailers = Vec::new();
    for tailer in 0..TAILERS {
        let sequencer = PgSequencer::connect(&postgres.url(), "concurrent")
            .await
            .expect("tailer connects");
        tailers.push(tokio::spawn(tail(sequencer, total, tailer as u64)));
    }
    let mut appenders = Vec::new();
    for (appender, sizes) in batches.iter().cloned().enumerate() {
        let sequencer = PgSequencer::connect(&postgres.url(), "concurrent")
            .await
            .expect("appender connects");
        appenders.push(tokio::spawn(async move {
            let mut ranges: Vec<(Range<u64>, Vec<Bytes>)> = Vec::new();
            for (append, size) in sizes.into_iter().enumerate() {
                let records: Vec<Bytes> = (0..size)
                    .map(|record| payload(appender, append, record))
                    .collect();
                let range = sequencer.append(records.clone()).await?;
                assert_eq!(range.end - range.start, size as u64);
                ranges.push((range, records));
            }
            Ok::<_, SequencerError>(ranges)
        }));
    }

    // What the appenders were told: every position exactly once, with the records they sent.
    let mut expected: BTreeMap<u64, Bytes> = BTreeMap::new();
    for appender in appenders {
        let ranges = appender
            .await
            .expect("appender task")
            .expect("appends succeed");
        let mut previous_end = 0;
        for (range, records) in ranges {
            assert!(
                range.start >= previous_end,
                "one appender's appends take increasing positions"
            );
            previous_end = range.end;
            for (position, record) in range.zip(records) {
                assert!(
                    expected.insert(position, record).is_none(),
                    "position {position} handed out twice"
                );
            }
        }
    }
    let positions: Vec<u64> = expected.keys().copied().collect();
    assert_eq!(
        positions,
        (1..=total).collect::<Vec<u64>>(),
        "positions 1..=N, no gap"
    );

    // What every tailer saw: the same, in the same order.
    let expected: Vec<(u64, Bytes)> = expected.into_iter().collect();
    for tailer in tailers {
        let seen = tokio::time::timeout(Duration::from_secs(120), tailer)
            .await
            .expect("tailer finishes")
            .expect("tailer task")
            .expect("reads succeed");
        assert_eq!(seen.len(), expected.len());
        assert!(
            seen == expected,
            "a tailer saw another order or other bytes"
        );
    }
}

/// The property in slow motion: a transaction that took position 2 and has not committed holds
/// back every later append, so a reader can never see 3 while 2 is invisible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_transaction_holds_back_later_positions_so_no_reader_passes_it() {
    let Some(postgres) = TestPostgres::start_or_skip(
        "a_slow_transaction_holds_back_later_positions_so_no_reader_passes_it",
    ) else {
        return;
    };
    let appender = Arc::new(PgSequencer::connect(&postgres.url(), "slow").await.unwrap());
    let reader = PgSequencer::connect(&postgres.url(), "slow").await.unwrap();
    assert_eq!(
        appender
            .append(vec![Bytes::from_static(b"first")])
            .await
            .unwrap(),
        1..2
    );

    // A slow appender: takes position 2 the way an append does, inserts, and does not commit.
    let slow = postgres.admin().await;
    slow.batch_execute("BEGIN").await.unwrap();
    let taken: i64 = slow
        .query_one(
            "UPDATE sluice_clusters SET next_position = next_position + 1 \
             WHERE cluster_name = 'slow' RETURNING next_position - 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(taken, 2);
    slow.execute(
        "INSERT INTO sluice_log (cluster_name, position, record) VALUES ('slow', 2, 'slow')",
        &[],
    )
    .await
    .unwrap();
    let fast = tokio::spawn({
        let appender = Arc::clone(&appender);
        async move { appender.append(vec![Bytes::from_static(b"fast")]).await }
    });
    // However long the slow one takes, the fast append waits and nothing after 1 is visible.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !fast.is_finished(),
            "an append overtook an uncommitted position"
        );
        assert_eq!(reader.read_after(1, 10).await.unwrap(), vec![]);
        assert_eq!(reader.head().await.unwrap(), 1);
    }
    slow.batch_execute("COMMIT").await.unwrap();
    assert_eq!(fast.await.unwrap().unwrap(), 3..4);
    assert_eq!(
        reader.read_after(1, 10).await.unwrap(),
        vec![
            (2, Bytes::from_static(b"slow")),
            (3, Bytes::from_static(b"fast"))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_before_deletes_covered_records_and_readers_are_told() {
    let Some(postgres) =
        TestPostgres::start_or_skip("truncate_before_deletes_covered_records_and_readers_are_told")
    else {
        return;
    };
    let sequencer = PgSequencer::connect(&postgres.url(), "truncate")
        .await
        .unwrap();
    let records: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i; 3])).collect();
    assert_eq!(sequencer.append(records.clone()).await.unwrap(), 1..11);
    assert_eq!(sequencer.head().await.unwrap(), 10);

    assert_eq!(sequencer.truncate_before(6).await.unwrap(), 5);
    assert!(matches!(
        sequencer.read_after(0, 100).await,
        Err(SequencerError::Truncated {
            after: 0,
            log_start: 6
        })
    ));
    let rest = sequencer.read_after(5, 100).await.unwrap();
    assert_eq!(
        rest,
        (6..=10)
            .zip(records.iter().skip(5).cloned())
            .collect::<Vec<_>>()
    );
    // Truncating again is idempotent; everything up to the head may go.
    assert_eq!(sequencer.truncate_before(6).await.unwrap(), 0);
    assert_eq!(sequencer.truncate_before(11).await.unwrap(), 5);
    assert!(matches!(
        sequencer.read_after(5, 100).await,
        Err(SequencerError::Truncated {
            after: 5,
            log_start: 11
        })
    ));
    assert_eq!(sequencer.read_after(10, 100).await.unwrap(), vec![]);
    // Positions continue after a truncation: the counter is not the table.
    assert_eq!(
        sequencer
            .append(vec![Bytes::from_static(b"after")])
            .await
            .unwrap(),
        11..12
    );
    assert_eq!(
        sequencer.read_after(10, 100).await.unwrap(),
        vec![(11, Bytes::from_static(b"after"))]
    );
    let beyond = sequencer.read_after(20, 1).await.unwrap_err();
    assert!(matches!(
        beyond,
        SequencerError::BeyondHead {
            after: 20,
            head: 11
        }
    ));
    assert_eq!(beyond.kind(), ErrorKind::Fatal);

    // Bad input is refused before anything is sent.
    assert!(matches!(
        sequencer.append(vec![]).await,
        Err(SequencerError::InvalidInput { .. })
    ));
    assert!(matches!(
        sequencer.read_after(u64::MAX, 1).await,
        Err(SequencerError::InvalidInput { .. })
    ));
    let mut config = SequencerConfig::new(postgres.url(), "truncate");
    config.record_bytes_max = 4;
    let small = PgSequencer::connect_with(config).await.unwrap();
    assert!(matches!(
        small.append(vec![Bytes::from_static(b"12345")]).await,
        Err(SequencerError::InvalidInput { .. })
    ));
    assert!(matches!(
        PgSequencer::connect(&postgres.url(), "bad name").await,
        Err(SequencerError::InvalidInput { .. })
    ));
}

fn agent(id: &str, zone: &str) -> AgentRegistration {
    AgentRegistration {
        agent_id: id.into(),
        address: format!("{id}.local:9092"),
        zone: zone.into(),
        roles: vec!["broker".into(), "coordinator".into()],
    }
}

/// Polls the database (not the clock) until `agent_id`'s presence among the live agents is
/// `present`.
async fn wait_until_live(sequencer: &PgSequencer, agent_id: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = sequencer.live_agents().await.unwrap();
        if live.iter().any(|agent| agent.agent_id == agent_id) == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{agent_id} never became {}",
            if present { "live" } else { "expired" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_by_the_database_clock_and_a_lost_lease_cannot_be_renewed() {
    let Some(postgres) = TestPostgres::start_or_skip(
        "leases_expire_by_the_database_clock_and_a_lost_lease_cannot_be_renewed",
    ) else {
        return;
    };
    let sequencer = PgSequencer::connect(&postgres.url(), "leases")
        .await
        .unwrap();
    let long = sequencer
        .register(&agent("a", "zone-a"), 60_000)
        .await
        .unwrap();
    let short = sequencer
        .register(&agent("b", "zone-b"), 300)
        .await
        .unwrap();
    assert_eq!((long.incarnation, short.incarnation), (1, 1));
    assert!(short.valid_until < long.valid_until);

    let live = sequencer.live_agents().await.unwrap();
    assert_eq!(
        live.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let a = live.first().unwrap();
    assert_eq!(a.address, "a.local:9092");
    assert_eq!(a.zone, "zone-a");
    assert_eq!(a.roles, ["broker", "coordinator"]);
    assert_eq!(a.lease_expires_at, long.expires_at);

    // b's lease runs out by the database's clock; a renewal then fails and b must rejoin.
    wait_until_live(&sequencer, "b", false).await;
    assert!(
        sequencer
            .live_agents()
            .await
            .unwrap()
            .iter()
            .any(|a| a.agent_id == "a")
    );
    let lost = sequencer.renew(&short, 60_000).await.unwrap_err();
    assert!(matches!(
        lost,
        SequencerError::LeaseLost { incarnation: 1, .. }
    ));
    assert_eq!(lost.kind(), ErrorKind::Fatal);
    let rejoined = sequencer
        .register(&agent("b", "zone-b"), 60_000)
        .await
        .unwrap();
    assert_eq!(rejoined.incarnation, 2);
    wait_until_live(&sequencer, "b", true).await;

    // A live lease renews; a newer registration of the same id supersedes the older lease.
    let renewed = sequencer.renew(&long, 120_000).await.unwrap();
    assert!(renewed.expires_at > long.expires_at);
    let restarted = sequencer
        .register(&agent("a", "zone-a"), 60_000)
        .await
        .unwrap();
    assert_eq!(restarted.incarnation, 2);
    assert!(matches!(
        sequencer.renew(&renewed, 60_000).await,
        Err(SequencerError::LeaseLost { .. })
    ));
    assert!(sequencer.renew(&restarted, 60_000).await.is_ok());

    // An expired row is forgotten only once it has been expired for the given time.
    let c = sequencer
        .register(&agent("c", "zone-c"), 200)
        .await
        .unwrap();
    wait_until_live(&sequencer, "c", false).await;
    assert_eq!(sequencer.forget_expired_agents(3_600_000).await.unwrap(), 0);
    assert_eq!(sequencer.forget_expired_agents(0).await.unwrap(), 1);
    assert!(matches!(
        sequencer.renew(&c, 1_000).await,
        Err(SequencerError::LeaseLost { .. })
    ));
    assert_eq!(
        sequencer
            .register(&agent("c", "zone-c"), 1_000)
            .await
            .unwrap()
            .incarnation,
        1,
        "a forgotten id starts again"
    );

    // A graceful leave removes it at once; only its own incarnation can.
    assert!(!sequencer.deregister(&renewed).await.unwrap());
    assert!(sequencer.deregister(&restarted).await.unwrap());
    wait_until_live(&sequencer, "a", false).await;

    // Bad registrations are refused.
    assert!(matches!(
        sequencer.register(&agent("", "z"), 1_000).await,
        Err(SequencerError::InvalidInput { .. })
    ));
    assert!(matches!(
        sequencer.register(&agent("c", "z"), 0).await,
        Err(SequencerError::InvalidInput { .. })
    ));
}

/// The rows of `cluster` in the log table, as the database counts them.
async fn log_rows(admin: &tokio_postgres::Client, cluster: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM sluice_log WHERE cluster_name = $1",
            &[&cluster],
        )
        .await
        .unwrap()
        .get(0)
}

/// Appends under `fence`, which the database must refuse: the refusal is definite (never
/// "outcome unknown"), and neither the counter nor the log's rows moved.
async fn refused(
    sequencer: &PgSequencer,
    admin: &tokio_postgres::Client,
    fence: &Fence,
) -> SequencerError {
    let cluster = sequencer.cluster_name().to_owned();
    let (head, rows) = (
        sequencer.head().await.unwrap(),
        log_rows(admin, &cluster).await,
    );
    let error = sequencer
        .append_fenced(vec![Bytes::from_static(b"refused")], fence)
        .await
        .expect_err("an append past its fence");
    assert_eq!(error.kind(), ErrorKind::Fatal, "{error}");
    assert_eq!(
        sequencer.head().await.unwrap(),
        head,
        "the counter moved: {error}"
    );
    assert_eq!(
        log_rows(admin, &cluster).await,
        rows,
        "a row was inserted: {error}"
    );
    error
}

/// The fence at commit (`append_fenced`, docs/cluster.md "The fence at commit"): the database
/// itself refuses an append whose lease expired by its clock, whose incarnation was superseded,
/// whose agent is unknown, or whose record deadline is in its past — nothing inserted, the
/// counter unmoved, the refusal saying which — and commits one whose fence holds, notifying
/// tailers as a plain append does. Both statements: with and without notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_append_commits_only_while_its_lease_and_its_deadline_hold() {
    let Some(postgres) = TestPostgres::start_or_skip(
        "a_fenced_append_commits_only_while_its_lease_and_its_deadline_hold",
    ) else {
        return;
    };
    let admin = postgres.admin().await;
    let fence = |lease: &Lease| Fence::for_send_by(lease, lease.valid_until.into_std()).unwrap();
    for notify in [true, false] {
        let cluster = if notify { "fenced" } else { "fenced_quiet" };
        let mut config = SequencerConfig::new(postgres.url(), cluster);
        config.notify = notify;
        let sequencer = PgSequencer::connect_with(config.clone()).await.unwrap();
        // A tailer that polls once a minute: only the append's notification wakes it in time.
        let mut tailer_config = config.clone();
        tailer_config.poll_interval_ms = 60_000;
        let tailer = PgSequencer::connect_with(tailer_config).await.unwrap();
        let mut tailer_head = tailer.subscribe();

        let before_registering = std::time::Instant::now();
        let lease = sequencer.register(&agent("a", "z"), 60_000).await.unwrap();
        assert_eq!(
            sequencer
                .append_fenced(vec![Bytes::from_static(b"held")], &fence(&lease))
                .await
                .unwrap(),
            1..2,
            "an append in time under a held lease"
        );
        if notify {
            tokio::time::timeout(
                Duration::from_secs(10),
                tailer_head.wait_for(|head| *head >= 1),
            )
            .await
            .expect("the fenced append's notification woke the tailer")
            .unwrap();
        }

        // A deadline before the registration ran, by the database's clock: already passed.
        let late = Fence::for_send_by(&lease, before_registering).unwrap();
        assert!(late.deadline <= lease.expires_at - Duration::from_secs(60));
        let error = refused(&sequencer, &admin, &late).await;
        assert!(
            matches!(
                &error,
                SequencerError::RecordDeadlinePassed { agent_id, incarnation: 1 } if agent_id == "a"
            ),
            "{error}"
        );
        assert!(error.to_string().contains("record deadline"), "{error}");

        // A newer registration of the same id supersedes the lease: refused, whatever the
        // deadline; the new incarnation appends.
        let restarted = sequencer.register(&agent("a", "z"), 60_000).await.unwrap();
        let error = refused(&sequencer, &admin, &fence(&lease)).await;
        assert!(
            matches!(error, SequencerError::LeaseLost { incarnation: 1, .. }),
            "{error}"
        );
        assert_eq!(
            sequencer
                .append_fenced(vec![Bytes::from_static(b"restarted")], &fence(&restarted))
                .await
                .unwrap(),
            2..3
        );

        // A lease that ran out by the database's clock (seen in the database, not timed here).
        let short = sequencer.register(&agent("b", "z"), 1).await.unwrap();
        wait_until_live(&sequencer, "b", false).await;
        let in_time = Fence {
            deadline: short.expires_at + Duration::from_secs(3_600),
            ..fence(&short)
        };
        let error = refused(&sequencer, &admin, &in_time).await;
        assert!(
            matches!(&error, SequencerError::LeaseLost { agent_id, .. } if agent_id == "b"),
            "{error}"
        );
        // Lease lost and late: the lease is what the agent must act on.
        let error = refused(
            &sequencer,
            &admin,
            &Fence::for_send_by(&short, before_registering).unwrap(),
        )
        .await;
        assert!(matches!(error, SequencerError::LeaseLost { .. }), "{error}");
        // An agent that never registered.
        let stranger = Fence {
            agent_id: "nobody".to_owned(),
            ..fence(&restarted)
        };
        let error = refused(&sequencer, &admin, &stranger).await;
        assert!(matches!(error, SequencerError::LeaseLost { .. }), "{error}");

        // Still the one committed record per successful append, nothing in between.
        let records = sequencer.read_after(0, 10).await.unwrap();
        assert_eq!(
            records,
            vec![
                (1, Bytes::from_static(b"held")),
                (2, Bytes::from_static(b"restarted"))
            ]
        );

        // Without the cluster's row: the existing error, not a refusal.
        admin
            .execute(
                "DELETE FROM sluice_clusters WHERE cluster_name = $1",
                &[&cluster],
            )
            .await
            .unwrap();
        assert!(matches!(
            sequencer
                .append_fenced(vec![Bytes::from_static(b"orphan")], &fence(&restarted))
                .await,
            Err(SequencerError::Inconsistent { .. })
        ));
        assert_eq!(log_rows(&admin, cluster).await, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_id_is_created_once_and_stable_across_reconnects() {
    let Some(postgres) =
        TestPostgres::start_or_skip("the_cluster_id_is_created_once_and_stable_across_reconnects")
    else {
        return;
    };
    // Four first connects at once on an empty database race on the schema and the cluster row.
    let url = postgres.url();
    let connects = (0..4).map(|_| PgSequencer::connect(&url, "ids"));
    let sequencers: Vec<PgSequencer> = futures::future::try_join_all(connects).await.unwrap();
    let id = sequencers.first().unwrap().cluster_id();
    assert!(sequencers.iter().all(|s| s.cluster_id() == id));
    assert!(!id.is_nil());
    drop(sequencers);

    let again = PgSequencer::connect(&url, "ids").await.unwrap();
    assert_eq!(again.cluster_id(), id);
    let stored: String = postgres
        .admin()
        .await
        .query_one(
            "SELECT cluster_id FROM sluice_clusters WHERE cluster_name = 'ids'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, id.to_string());
    let other = PgSequencer::connect(&url, "other").await.unwrap();
    assert_ne!(other.cluster_id(), id);
}

/// Waits for the head watch to reach `position`, and returns how long that took.
async fn wait_for_head(
    head: &mut tokio::sync::watch::Receiver<u64>,
    position: u64,
    timeout: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(timeout, head.wait_for(|head| *head >= position))
        .await
        .ok()
        .map(|result| {
            result.expect("the sequencer is alive");
            started.elapsed()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_tailer_long_before_the_poll() {
    let Some(postgres) = TestPostgres::start_or_skip("notify_wakes_a_tailer_long_before_the_poll")
    else {
        return;
    };
    let appender = PgSequencer::connect(&postgres.url(), "wake").await.unwrap();
    let mut config = SequencerConfig::new(postgres.url(), "wake");
    config.poll_interval_ms = 600_000;
    let tailer = PgSequencer::connect_with(config).await.unwrap();
    let mut head = tailer.subscribe();
    assert_eq!(*head.borrow_and_update(), 0);

    for round in 1..=5u64 {
        let sent = Instant::now();
        let range = appender
            .append(vec![Bytes::from(format!("wake {round}"))])
            .await
            .unwrap();
        assert_eq!(range, round..round + 1);
        let waited = wait_for_head(&mut head, round, Duration::from_secs(10))
            .await
            .expect("the notification woke the tailer (the poll is 10 minutes away)");
        println!(
            "notification {round}: the tailer woke {:?} after the append was sent, {waited:?} \
             after it returned",
            sent.elapsed()
        );
        assert!(
            waited < Duration::from_secs(2),
            "woken after {waited:?}, not within milliseconds"
        );
        let records = tailer.read_after(round - 1, 10).await.unwrap();
        assert_eq!(records, vec![(round, Bytes::from(format!("wake {round}")))]);
    }

    // Without notifications (CockroachDB, YugabyteDB), the poll alone wakes it.
    let mut config = SequencerConfig::new(postgres.url(), "wake");
    config.notify = false;
    config.poll_interval_ms = 100;
    let polling = PgSequencer::connect_with(config.clone()).await.unwrap();
    let quiet_appender = PgSequencer::connect_with(config).await.unwrap();
    let mut polled_head = polling.subscribe();
    quiet_appender
        .append(vec![Bytes::from_static(b"quiet")])
        .await
        .unwrap();
    wait_for_head(&mut polled_head, 6, Duration::from_secs(10))
        .await
        .expect("the poll woke the tailer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_deregistrations_are_announced_to_the_cluster_only() {
    let Some(postgres) = TestPostgres::start_or_skip(
        "registrations_and_deregistrations_are_announced_to_the_cluster_only",
    ) else {
        return;
    };
    let mut config = SequencerConfig::new(postgres.url(), "joins");
    config.poll_interval_ms = 600_000;
    let listener = PgSequencer::connect_with(config).await.unwrap();
    let joiner = PgSequencer::connect(&postgres.url(), "joins")
        .await
        .unwrap();
    let elsewhere = PgSequencer::connect(&postgres.url(), "other-cluster")
        .await
        .unwrap();
    let mut changes = listener.subscribe_agents();
    // A count of the notifications heard.
    let before = *changes.borrow_and_update();

    // Another cluster's registration is not this cluster's business; this cluster's is. (A
    // notification is delivered in commit order, so the second one arriving first would show.)
    elsewhere.register(&agent("x", "z"), 30_000).await.unwrap();
    let lease = joiner.register(&agent("b", "z"), 30_000).await.unwrap();
    let sent = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the registration was announced")
        .unwrap();
    println!("registration heard {:?} after it returned", sent.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heard = *changes.borrow_and_update();
    assert_eq!(
        heard,
        before + 1,
        "one announcement (another cluster's registration is not one)"
    );

    assert!(joiner.deregister(&lease).await.unwrap());
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the deregistration was announced")
        .unwrap();
    assert!(*changes.borrow_and_update() > heard);

    // Without notifications nothing is announced (the renewal's listing is all there is).
    let mut quiet = SequencerConfig::new(postgres.url(), "joins");
    quiet.notify = false;
    let quiet = PgSequencer::connect_with(quiet).await.unwrap();
    quiet.register(&agent("c", "z"), 30_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !changes.has_changed().unwrap(),
        "a notify = false registration was announced"
    );
}

/// Terminates every backend of `application_name` (the test's admin connection is not one).
async fn terminate_backends(admin: &tokio_postgres::Client, application_name: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_retriable_and_the_next_call_reconnects() {
    let Some(postgres) = TestPostgres::start_or_skip(
        "a_killed_connection_is_retriable_and_the_next_call_reconnects",
    ) else {
        return;
    };
    // Nothing listening: retriable, not fatal.
    let refused = PgSequencer::connect("postgres://postgres@127.0.0.1:1/postgres", "x")
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Retriable, "{refused}");

    let victim = Arc::new(
        PgSequencer::connect(&postgres.url_named("victim"), "kill")
            .await
            .unwrap(),
    );
    let observer = PgSequencer::connect(&postgres.url(), "kill").await.unwrap();
    assert_eq!(
        victim
            .append(vec![Bytes::from_static(b"one")])
            .await
            .unwrap(),
        1..2
    );

    // Hold the counter row, so the victim's next append is inside the database when its backend
    // is terminated.
    let admin = postgres.admin().await;
    admin.batch_execute("BEGIN").await.unwrap();
    admin
        .execute(
            "UPDATE sluice_clusters SET next_position = next_position WHERE cluster_name = 'kill'",
            &[],
        )
        .await
        .unwrap();
    let append = tokio::spawn({
        let victim = Arc::clone(&victim);
        async move { victim.append(vec![Bytes::from_static(b"lost")]).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'victim' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the victim's append never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        terminate_backends(&admin, "victim").await,
        2,
        "writer and watcher"
    );
    let error = append.await.unwrap().unwrap_err();
    assert!(error.is_retriable(), "{error:?} is not retriable");
    admin.batch_execute("ROLLBACK").await.unwrap();

    // The next calls reconnect (the watcher re-LISTENs), and the killed append did not land.
    let mut head = victim.subscribe();
    assert_eq!(
        victim
            .append(vec![Bytes::from_static(b"two")])
            .await
            .unwrap(),
        2..3
    );
    assert_eq!(
        victim.read_after(0, 10).await.unwrap(),
        vec![
            (1, Bytes::from_static(b"one")),
            (2, Bytes::from_static(b"two"))
        ]
    );
    observer
        .append(vec![Bytes::from_static(b"three")])
        .await
        .unwrap();
    assert!(
        wait_for_head(&mut head, 3, Duration::from_secs(5))
            .await
            .is_some(),
        "the reconnected watcher is notified again"
    );

    // A backend killed while idle: the next call either finds the connection closed and
    // reconnects at once, or fails retriably and the one after succeeds.
    terminate_backends(&admin, "victim").await;
    let mut attempts = 0;
    let position = loop {
        attempts += 1;
        match victim.append(vec![Bytes::from_static(b"four")]).await {
            Ok(range) => break range.start,
            Err(error) if error.is_retriable() && attempts < 3 => continue,
            Err(error) => panic!("attempt {attempts}: {error}"),
        }
    };
    assert_eq!(position, 4);
}

/// A client configuration that trusts only `pem`, on the provider the workspace builds rustls
/// with (aws-lc-rs).
fn trusting(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgresql_is_used_and_an_untrusted_server_is_refused() {
    let Some((postgres, pem)) = TestPostgres::start_tls_or_skip(
        "tls_to_postgresql_is_used_and_an_untrusted_server_is_refused",
    ) else {
        return;
    };
    let mut config = SequencerConfig::new(
        format!("{}&sslmode=require", postgres.url_named("tls")),
        "tls",
    );
    config.tls = Some(trusting(&pem));
    let sequencer = PgSequencer::connect_with(config).await.unwrap();
    assert_eq!(
        sequencer
            .append(vec![Bytes::from_static(b"private")])
            .await
            .unwrap(),
        1..2
    );
    let encrypted: i64 = postgres
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'tls' AND pg_stat_ssl.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 2, "the writer and the watcher both use TLS");

    // A server whose certificate the client does not trust: refused, and not worth retrying.
    let other_pem = crate::common::postgres::unrelated_certificate_pem();
    let mut config = SequencerConfig::new(format!("{}?sslmode=require", postgres.url()), "tls");
    config.tls = Some(trusting(&other_pem));
    let refused = PgSequencer::connect_with(config).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Fatal, "{refused}");
}

/// Capacity of the sequencer on this machine: `agents` simulated agents, each appending one
/// commit record (1 KiB, about an object index of a few partitions) at a time, as fast as it can,
/// and tailing the log (applying every agent's records) for `SLUICE_CAPACITY_SECONDS` (10) per
/// step. Prints appends/s, the records the slowest tailer applied per second, append latency
/// percentiles, and the tail lag: from the head watch changing to the tailer having read up to it.
///
/// `cargo test -p sluice-engine --test integration -- pg_sequencer::sequencer_capacity --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for docs/cluster.md, not a check"]
async fn sequencer_capacity() {
    let Some(postgres) = TestPostgres::start_or_skip("sequencer_capacity") else {
        return;
    };
    let duration = Duration::from_secs(
        std::env::var("SLUICE_CAPACITY_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    // Records per append: 1 is one window per commit; more models an agent that coalesces the
    // windows queued behind a commit in flight into one append.
    let records_per_append: usize = std::env::var("SLUICE_CAPACITY_RECORDS_PER_APPEND")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    println!(
        "{records_per_append} record(s) of 1 KiB per append, {} s per step",
        duration.as_secs()
    );
    println!(
        "agents  appends/s  records applied/s (min tailer)  p50 ms  p99 ms  max ms  tail lag p99 ms"
    );
    for agents in [1usize, 2, 4, 8, 16] {
        let cluster = format!("capacity-{agents}");
        let mut tasks = Vec::new();
        let started = Instant::now();
        let stop_at = started + duration;
        for agent in 0..agents {
            let sequencer = Arc::new(
                PgSequencer::connect(&postgres.url(), &cluster)
                    .await
                    .unwrap(),
            );
            let appender = {
                let sequencer = Arc::clone(&sequencer);
                tokio::spawn(async move {
                    let mut latencies_us: Vec<u64> = Vec::new();
                    let record = Bytes::from(vec![agent as u8; 1024]);
                    while Instant::now() < stop_at {
                        let sent = Instant::now();
                        sequencer
                            .append(vec![record.clone(); records_per_append])
                            .await
                            .unwrap();
                        latencies_us.push(sent.elapsed().as_micros() as u64);
                    }
                    latencies_us
                })
            };
            let tailer = tokio::spawn(async move {
                let mut head = sequencer.subscribe();
                let mut after = 0;
                let mut lags_us: Vec<u64> = Vec::new();
                while Instant::now() < stop_at {
                    let _ = tokio::time::timeout(Duration::from_millis(100), head.changed()).await;
                    let known = Instant::now();
                    let target = *head.borrow_and_update();
                    while after < target {
                        let records = sequencer.read_after(after, 1024).await.unwrap();
                        if let Some((last, _)) = records.last() {
                            after = *last;
                        } else {
                            break;
                        }
                    }
                    lags_us.push(known.elapsed().as_micros() as u64);
                }
                (after, lags_us)
            });
            tasks.push((appender, tailer));
        }
        let mut latencies_us: Vec<u64> = Vec::new();
        let mut lags_us: Vec<u64> = Vec::new();
        let mut applied_min = u64::MAX;
        for (appender, tailer) in tasks {
            latencies_us.extend(appender.await.unwrap());
            let (applied, lags) = tailer.await.unwrap();
            applied_min = applied_min.min(applied);
            lags_us.extend(lags);
        }
        let seconds = duration.as_secs_f64();
        latencies_us.sort_unstable();
        lags_us.sort_unstable();
        let percentile = |values: &[u64], p: f64| -> f64 {
            let index = ((values.len() as f64 - 1.0) * p).round() as usize;
            values.get(index).copied().unwrap_or_default() as f64 / 1000.0
        };
        println!(
            "{agents:>6}  {:>9.0}  {:>30.0}  {:>6.2}  {:>6.2}  {:>6.2}  {:>15.2}",
            latencies_us.len() as f64 / seconds,
            applied_min as f64 / seconds,
            percentile(&latencies_us, 0.50),
            percentile(&latencies_us, 0.99),
            percentile(&latencies_us, 1.0),
            percentile(&lags_us, 0.99),
        );
    }
}
