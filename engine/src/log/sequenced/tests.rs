//! The fence at commit, end to end at the log, with a real PostgreSQL (`sluice_tests::postgres`)
//! and an in-memory bucket: a window that passed its local checks and is then held right before
//! its send — as a process paused there, or a stalled core, would hold it — is refused by the
//! database once its lease has expired there, or once its record deadline has passed by the
//! database's clock. Nothing of it is committed and its append fails; its object is left for the
//! collector. Without the fence in the append statement both windows would be committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::Either;
use sluice_tests::postgres::TestPostgres;

use super::{SequencedLog, SequencedWriter};
use crate::log::data_gc::list_agent_objects;
use crate::log::{AppendOutcome, EntryContent, LogConfig, LogError};
use crate::metadata::Command;
use crate::sequencer::{AgentRegistration, SequencerClient, SequencerConfig, SequencerError};
use crate::store::{ObjectStorage, ObjectStoreBackend};
use crate::types::TopicId;

/// Long enough for a window to pass its local checks after the registration on a loaded
/// machine; the test then waits for the database to expire it.
const SHORT_LEASE_MS: u64 = 3_000;
const LEASE_MS: u64 = 60_000;

fn registration(agent_id: &str) -> AgentRegistration {
    AgentRegistration {
        agent_id: agent_id.to_owned(),
        address: format!("{agent_id}.local:9092"),
        zone: String::new(),
        roles: vec!["broker".to_owned()],
    }
}

fn create_topic(name: &str, id: u8) -> EntryContent {
    EntryContent {
        commands: vec![Command::CreateTopic {
            name: name.to_owned(),
            topic_id: TopicId([id; 16]),
            partition_count: 1,
            configs: Default::default(),
        }],
        ..EntryContent::default()
    }
}

fn open(
    postgres: &TestPostgres,
    cluster: &str,
    record_deadline_ms: u64,
) -> (SequencedLog, SequencerClient, Arc<dyn ObjectStorage>) {
    let sequencer =
        SequencerClient::connect(SequencerConfig::new(postgres.url(), cluster)).unwrap();
    let store: Arc<dyn ObjectStorage> = Arc::new(ObjectStoreBackend::in_memory());
    let writer = SequencedWriter {
        token: 5,
        record_deadline_ms,
    };
    let (log, _) = block_on(SequencedLog::open_as(
        Arc::clone(&store),
        sequencer.clone(),
        LogConfig::default(),
        writer,
    ))
    .unwrap();
    (log, sequencer, store)
}

/// Appends `content` with its send held at the gate until `while_held` has run, and answers the
/// append's result, driving the catch-ups that would acknowledge it once released (so that a
/// window committed after all is answered, not awaited for ever). Fails the test if the window
/// never reached its send (its local checks refused it first).
async fn append_held(
    log: &SequencedLog,
    content: EntryContent,
    while_held: impl AsyncFnOnce(),
) -> Result<AppendOutcome, LogError> {
    let (entered_sender, entered) = oneshot::channel();
    let (release, released) = oneshot::channel();
    log.hold_next_send(entered_sender, released);
    let append = log.append(content);
    futures::pin_mut!(append);
    let append = match futures::future::select(append, entered).await {
        Either::Left((result, _)) => panic!("the window never reached its send: {result:?}"),
        Either::Right((entered, append)) => {
            entered.unwrap();
            append
        }
    };
    while_held().await;
    release.send(()).unwrap();
    let tail = tail(log);
    futures::pin_mut!(tail);
    match futures::future::select(append, tail).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(((), _)) => unreachable!("the tail loop never ends"),
    }
}

/// Applies every record as the head moves (the tailer's job in an agent); never ends.
async fn tail(log: &SequencedLog) {
    let mut head = log.sequencer().subscribe();
    loop {
        log.catch_up().await.unwrap();
        if head.changed().await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}

/// Appends `content` and drives the catch-ups that acknowledge it (the tailer's job in an agent).
async fn append_acknowledged(log: &SequencedLog, content: EntryContent) -> AppendOutcome {
    let append = log.append(content);
    let tail = tail(log);
    futures::pin_mut!(append, tail);
    match futures::future::select(append, tail).await {
        Either::Left((outcome, _)) => outcome.unwrap(),
        Either::Right(((), _)) => unreachable!("the tail loop never ends"),
    }
}

#[test]
fn a_window_held_before_its_send_until_its_lease_expired_in_the_database_is_refused() {
    let Some(postgres) = TestPostgres::start_or_skip("sequenced fence: lease") else {
        return;
    };
    let (log, sequencer, store) = open(&postgres, "held_past_lease", LEASE_MS);
    let lease = block_on(sequencer.register(registration("paused"), SHORT_LEASE_MS)).unwrap();
    log.hold_lease(&lease);

    let held = block_on(append_held(&log, create_topic("late", 1), async || {
        // Held until the database itself no longer lists the agent: observed, not timed.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sequencer
            .live_agents()
            .await
            .unwrap()
            .iter()
            .any(|agent| agent.agent_id == "paused")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the lease never expired in the database"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }));
    let error = held.expect_err("a window sent after its lease expired in the database");
    assert!(
        matches!(
            &error,
            LogError::Sequencer(SequencerError::LeaseLost { incarnation, .. })
                if *incarnation == lease.incarnation
        ),
        "{error}"
    );
    assert_eq!(
        block_on(sequencer.head()).unwrap(),
        0,
        "nothing was committed"
    );
    assert!(
        log.stopped()
            .is_some_and(|reason| reason.contains("lease lost")),
        "the log stops appending once the database says the lease is gone"
    );
    assert_eq!(
        block_on(list_agent_objects(store.as_ref())).unwrap().len(),
        1,
        "the window's object is left for the collector"
    );
}

#[test]
fn a_window_held_before_its_send_past_its_record_deadline_in_the_database_is_refused() {
    const RECORD_DEADLINE_MS: u64 = 1_000;
    let Some(postgres) = TestPostgres::start_or_skip("sequenced fence: record deadline") else {
        return;
    };
    let (log, sequencer, _) = open(&postgres, "held_past_deadline", RECORD_DEADLINE_MS);
    let before_registering = std::time::Instant::now();
    let lease = block_on(sequencer.register(registration("paused"), LEASE_MS)).unwrap();
    log.hold_lease(&lease);

    let held = block_on(append_held(&log, create_topic("late", 1), async || {
        // The window's deadline by the database's clock is at most the registration's database
        // time plus the local time from before the registration to the deadline (at most one
        // record deadline after now, as its PUT started before now): wait until the database's
        // clock is past that, as read from the database.
        let bound = lease.expires_at - Duration::from_millis(LEASE_MS)
            + (std::time::Instant::now() + Duration::from_millis(RECORD_DEADLINE_MS)
                - before_registering);
        let bound_ms = bound
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while postgres.query_i64("SELECT floor(extract(epoch FROM now()) * 1000)::BIGINT")
            <= bound_ms + 1
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the database's clock never passed {bound_ms}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }));
    let error = held.expect_err("a window sent after its record deadline by the database's clock");
    assert!(
        matches!(
            &error,
            LogError::Sequencer(SequencerError::RecordDeadlinePassed { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("record deadline"), "{error}");
    assert_eq!(
        block_on(sequencer.head()).unwrap(),
        0,
        "nothing was committed"
    );
    assert!(
        log.stopped().is_none(),
        "the lease is still held: {:?}",
        log.stopped()
    );

    // The next window, on time, is fenced by the same lease and committed.
    block_on(append_acknowledged(&log, create_topic("on-time", 2)));
    assert_eq!(block_on(sequencer.head()).unwrap(), 1);
    assert_eq!(log.applied_position(), 1);
    assert!(log.with_state(|state| state.topic(TopicId([2; 16])).is_some()));
}
