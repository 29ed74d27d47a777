//! Crash at every step of a flush and commit, recover on the same store, and check that every
//! acknowledged batch is there at the offsets it was acknowledged with, that no offset maps to two
//! payloads, and that a fenced writer cannot write.
//!
//! Steps covered, each at every position of a short pipelined run: before the PUT, after the PUT
//! (before its response), after a lost response (the writer retries and finds its own entry), after a
//! lost response followed by a crash, after the ack, and during a checkpoint. A seeded soak then runs
//! many writers under random faults (errors, timeouts, lost responses) with crashes and re-opens.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::log_harness::*;
use sluice_engine::log::{LogConfig, LogError, MetadataLog};
use sluice_engine::store::{Fault, FaultInjection, FaultProbabilities, Op};

fn config() -> LogConfig {
    LogConfig {
        put_attempts_max: 3,
        checkpoint_interval_entries: 4,
        ..LogConfig::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn crash_before_and_after_every_put() {
    for mode in [TripMode::BeforePut, TripMode::AfterPut] {
        for trip_at in 0..10 {
            let base = memory_store();
            let tripwire = Tripwire::new(base.clone(), mode, trip_at);
            let mut run = Run::new(7 + trip_at);
            run.phase(tripwire.clone(), config(), 8, 3).await;
            assert!(
                tripwire.tripped() || trip_at >= run.puts_seen,
                "{mode:?}@{trip_at}: tripwire never fired"
            );
            run.recover_and_verify(base.clone(), config()).await;
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn lost_response_is_resolved_by_reading_back() {
    for lost_at in 1..8 {
        let base = memory_store();
        let faults = FaultInjection::new(base.clone(), lost_at);
        // Put #1 is the claim, #2 the topic; from there, data entries.
        faults
            .fail_call(Op::Put, lost_at + 1, Fault::LostResponse)
            .unwrap();
        let store: Arc<dyn sluice_engine::store::ObjectStorage> = Arc::new(faults);
        let mut run = Run::new(100 + lost_at);
        run.phase(store, config(), 8, 3).await;
        assert_eq!(
            run.failed, 0,
            "a lost response with retries left must not fail the entry"
        );
        run.recover_and_verify(base.clone(), config()).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn lost_response_then_crash() {
    for lost_at in 1..8 {
        let base = memory_store();
        let faults = FaultInjection::new(base.clone(), lost_at);
        faults
            .fail_call(Op::Put, lost_at + 1, Fault::LostResponse)
            .unwrap();
        // The retry of that PUT never gets out: the process died after the lost response.
        let tripwire = Tripwire::new(Arc::new(faults), TripMode::BeforePut, lost_at + 1);
        let mut run = Run::new(200 + lost_at);
        run.phase(tripwire, config(), 8, 1).await;
        run.recover_and_verify(base.clone(), config()).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn crash_after_ack_and_during_checkpoint() {
    // After every ack: the whole run completes, then the process dies.
    let base = memory_store();
    let mut run = Run::new(300);
    run.phase(base.clone(), config(), 10, 3).await;
    assert_eq!(run.failed, 0);
    run.recover_and_verify(base.clone(), config()).await;

    // During a checkpoint write: the checkpoint PUT never completes.
    let base = memory_store();
    let tripwire = Tripwire::checkpoints_only(base.clone(), TripMode::AfterPut, 0);
    let mut run = Run::new(301);
    run.phase(tripwire.clone(), config(), 10, 1).await;
    run.recover_and_verify(base.clone(), config()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn second_writer_fences_the_first() {
    let base = memory_store();
    let mut run = Run::new(400);
    let first = run.open(base.clone(), config()).await;
    run.append_some(&first, 3).await;
    assert_eq!(run.failed, 0);

    // A second agent on the same bucket takes over.
    let (second, _) = MetadataLog::open(base.clone(), config(), 0).await.unwrap();
    assert!(second.epoch() > first.epoch());

    // The first writer's next entry is refused: it finds the position taken by a newer epoch.
    let error = first.append(run.entry(1)).await.unwrap_err();
    assert!(
        matches!(error, LogError::Fenced { .. }),
        "expected Fenced, got {error:?}"
    );
    // And it stays stopped.
    let error = first.append(run.entry(1)).await.unwrap_err();
    assert!(
        error.is_fatal_for_writer(),
        "expected a fatal error, got {error:?}"
    );

    // The second writer continues the log; everything the first acknowledged is there.
    run.append_some(&second, 3).await;
    drop(second);
    run.recover_and_verify(base, config()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn seeded_soak_with_random_faults_and_reopens() {
    for seed in 0..12 {
        let base = memory_store();
        let put = FaultProbabilities {
            error: 0.08,
            timeout: 0.04,
            slow: 0.05,
            lost_response: 0.08,
        };
        let get = FaultProbabilities {
            error: 0.03,
            ..FaultProbabilities::default()
        };
        let faults = FaultInjection::new(base.clone(), seed)
            .with_probabilities(Op::Put, put)
            .unwrap()
            .with_probabilities(Op::Get, get)
            .unwrap()
            .with_timeout_ms(2)
            .with_slow_ms(1);
        let store: Arc<dyn sluice_engine::store::ObjectStorage> = Arc::new(faults);
        let mut run = Run::new(500 + seed);
        run.soak(store, config(), 30).await;
        run.recover_and_verify(base.clone(), config()).await;
    }
}

// On a paused clock: the takeover 5 ms in must land while the zombie's 30 ms PUTs are in flight, and
// only virtual time (tokio's sleeps, a memory store) guarantees that on a loaded machine.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn zombie_writer_with_pipelined_puts_in_flight() {
    let base = memory_store();
    let mut run = Run::new(600);
    // The zombie's PUTs are slow, so they are still in flight when the new writer claims the log.
    let slow = FaultInjection::new(base.clone(), 600)
        .with_probabilities(
            Op::Put,
            FaultProbabilities {
                slow: 1.0,
                ..FaultProbabilities::default()
            },
        )
        .unwrap()
        .with_slow_ms(30);
    let zombie = run.open(Arc::new(slow), config()).await;
    run.append_some(&zombie, 2).await;
    assert_eq!(run.failed, 0);
    let acked_before = run.acked.len();

    let contents: Vec<_> = (0..3).map(|_| run.entry(3)).collect();
    let zombie_appends = futures::future::join_all(
        contents
            .iter()
            .map(|content| zombie.append(content.clone())),
    );
    let takeover = async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        MetadataLog::open(base.clone(), config(), 0)
            .await
            .unwrap()
            .0
    };
    let (results, successor) = tokio::join!(zombie_appends, takeover);
    for (content, result) in contents.iter().zip(results) {
        match result {
            Ok(outcome) => run.record_ack(content, &outcome),
            Err(error) => assert!(
                error.is_fatal_for_writer(),
                "zombie entry failed with {error:?}"
            ),
        }
    }
    assert_eq!(
        run.acked.len(),
        acked_before,
        "a fenced writer acknowledged an entry"
    );

    // The successor may find the zombie's late writes in its way once; re-opening settles that.
    let content = run.entry(3);
    let outcome = match successor.append(content.clone()).await {
        Ok(outcome) => outcome,
        Err(LogError::Broken { .. }) => {
            successor.reopen(0).await.unwrap();
            successor.append(content.clone()).await.unwrap()
        }
        Err(error) => panic!("successor failed: {error:?}"),
    };
    run.record_ack(&content, &outcome);
    drop(successor);
    run.recover_and_verify(base, config()).await;
}
