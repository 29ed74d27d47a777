//! Scenario `chaos`: does the agent keep every acknowledged record through kill -9 at any instant,
//! SIGSTOP pauses and a misbehaving object store — and write none twice?
//!
//! An idempotent producer ([`client`]) writes numbered records to a 4-partition topic on the real
//! agent (`sluice serve` on the loopback S3 server, behind the harness's proxy) for the whole
//! campaign. A seeded [`schedule`] decides, for each agent lifetime, when it gets SIGKILL (at a
//! random instant after its start, so often mid-recovery), whether it is paused with SIGSTOP for
//! 0.1–3 s, and whether the proxy opens a fault window: 503s, connections cut before or after the
//! store applied the request, or requests held (some past the agent's store timeout, so a PUT lands
//! after the agent that sent it is dead). After each kill the agent is started again on the same
//! bucket and asked for its watermarks, which must not fall below what it acknowledged before the
//! kill. At the end the producer stops, the agent is killed once more and restarted, and a reader
//! reads every partition from offset 0 to its high watermark: every acknowledged record must be at
//! the offset it was acknowledged at, and no record may appear twice ([`verify`]).
//!
//! Why the kill instant is drawn from a clock rather than from an acknowledgement count: a count
//! puts every kill at the same phase of the agent's work (just after an answer), while the bugs
//! worth finding sit between a PUT and its commit, in a checkpoint, in a compaction swap, in the
//! replay itself. The schedule is drawn from the seed alone, so a failing campaign is re-run with
//! its seed: the same instants, although not the same interleaving.
//!
//! Why a hand-written producer rather than librdkafka: the verifier needs to know exactly which
//! batch was acknowledged at which offset and which one was still in doubt when the run stopped,
//! and the retry rule (the same bytes, the same sequence, until acknowledged) must be the one under
//! test, not a client's configuration.

pub mod client;
mod report;
mod schedule;
mod verify;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::proxy::S3Proxy;
use crate::report::Status;
use crate::targets::{self, Env, Running};
use client::{Producer, ProducerSettings};
pub use report::{ChaosReport, ChaosTarget};
use report::{Lifetime, RecoverySummary};
use schedule::{Action, Cycle, Schedule, Timing};

const TOPIC: &str = "bench-chaos";
const PARTITIONS: i32 = 4;
/// Limit on a restarted agent answering (as `targets`' start limit): past it, it did not come back.
const NOT_BACK_LIMIT: Duration = Duration::from_secs(90);
/// Limit on the producer's last batches once it is told to stop.
const PRODUCER_FINISH_LIMIT: Duration = Duration::from_secs(60);
/// Limit on the verifying read.
const READ_LIMIT: Duration = Duration::from_secs(600);
/// How often the driver looks at the agent between two actions.
const POLL: Duration = Duration::from_millis(5);
const TOPIC_SETUP_LIMIT: Duration = Duration::from_secs(60);
/// A progress line on stderr every this many kills.
const PROGRESS_EVERY_KILLS: u64 = 50;

/// When a campaign ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    Kills(u64),
    Seconds(u64),
}

/// The campaign's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub quick: bool,
    pub seed: u64,
    pub length: Length,
    pub timing: Timing,
    pub records_per_batch_max: u64,
    pub pace_ms: u64,
}

impl Plan {
    /// `kills` or `duration_s` if given (kills win), else 10 kills quick and 1,000 otherwise.
    pub fn new(quick: bool, seed: u64, kills: Option<u64>, duration_s: Option<u64>) -> Plan {
        let length = match (kills, duration_s) {
            (Some(kills), _) => Length::Kills(kills),
            (None, Some(seconds)) => Length::Seconds(seconds),
            (None, None) => Length::Kills(if quick { 10 } else { 1_000 }),
        };
        Plan {
            quick,
            seed,
            length,
            timing: Timing::new(quick),
            records_per_batch_max: 8,
            pace_ms: 5,
        }
    }

    fn done(&self, kills: u64, elapsed: Duration) -> bool {
        match self.length {
            Length::Kills(limit) => kills >= limit,
            Length::Seconds(limit) => elapsed.as_secs() >= limit,
        }
    }

    pub fn settings(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("seed".into(), json!(self.seed));
        match self.length {
            Length::Kills(kills) => map.insert("kills".into(), json!(kills)),
            Length::Seconds(seconds) => map.insert("duration_s".into(), json!(seconds)),
        };
        map.insert("topic_partitions".into(), json!(PARTITIONS));
        map.insert(
            "producer".into(),
            json!(format!(
                "idempotent, one batch of 1-{} records of {} bytes in flight per partition, acks=all, {} ms between batches",
                self.records_per_batch_max,
                verify::VALUE_BYTES,
                self.pace_ms
            )),
        );
        map.insert("timing".into(), json!(self.timing));
        map
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A seed from the clock, for runs that name none (printed and reported, so it can be replayed).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| {
            u64::try_from(elapsed.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
        })
}

/// Runs the campaign against every target, writes the report, returns the exit code.
pub fn run(env: &Env, target_names: &[String], plan: &Plan, out: &Path) -> anyhow::Result<i32> {
    let load_at_start = crate::load_average();
    eprintln!(
        "sluice-bench: chaos: seed {} (rerun with --seed {})",
        plan.seed, plan.seed
    );
    let mut results = Vec::new();
    for name in target_names {
        eprintln!("sluice-bench: {name}: starting the chaos campaign");
        results.push(run_target(name, env, plan));
        for suffix in ["", "-stderr"] {
            let log = env.work_dir.join(format!("{name}{suffix}.log"));
            let _ = std::fs::copy(&log, out.join(format!("{name}{suffix}.log")));
        }
    }
    let report = ChaosReport {
        scenario: "chaos".to_owned(),
        quick: plan.quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: plan.seed,
        started_at_unix_ms: unix_ms(),
        machine: format!(
            "{} CPUs, load average {load_at_start} at the start and {} at the end of the run",
            std::thread::available_parallelism().map_or(0, usize::from),
            crate::load_average()
        ),
        settings: plan.settings(),
        targets: results,
    };
    report::write(&report, out)?;
    println!("{}", report::render(&report));
    println!("sluice-bench: wrote {}", out.display());
    let failures = report::failures(&report);
    for failure in &failures {
        eprintln!("sluice-bench: FAILED: {failure}");
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn run_target(name: &str, env: &Env, plan: &Plan) -> ChaosTarget {
    let mut target = ChaosTarget::new(name, plan.settings());
    if !name.starts_with("sluice") {
        target.status = Status::NotImplemented(
            "kills and restarts the Sluice agent on its loopback bucket".to_owned(),
        );
        return target;
    }
    let mut running = match targets::start(name, env) {
        Ok(running) => running,
        Err(targets::StartError::NotInstalled(hint)) => {
            target.status = Status::NotInstalled(hint);
            return target;
        }
        Err(targets::StartError::Failed(reason)) => {
            target.status = Status::Failed(format!("could not start: {reason}"));
            return target;
        }
    };
    target.settings.extend(running.settings.clone());
    if running.proxy.is_none() {
        target.status = Status::NotImplemented(
            "no harness proxy in front of the store (faults are injected there)".to_owned(),
        );
        return target;
    }
    if let Err(error) = campaign(&mut running, env, plan, &mut target) {
        target.status = Status::Failed(format!("{error:#}"));
    }
    target
}

/// Milliseconds from the agent's start to its answer, and each partition's `(log start, high
/// watermark)` in that answer.
type Answered = (u64, Vec<(i64, i64)>);

/// The current lifetime's probe: asks the agent for its watermarks until it answers.
struct Probe {
    task: tokio::task::JoinHandle<anyhow::Result<Answered>>,
}

impl Probe {
    /// Asks the agent started at `started` for its watermarks until it answers.
    fn start(env: &Env, bootstrap: &str, started: Instant) -> Probe {
        let bootstrap = bootstrap.to_owned();
        let task = env.runtime.spawn(async move {
            let marks =
                client::wait_for_watermarks(&bootstrap, TOPIC, PARTITIONS, NOT_BACK_LIMIT).await?;
            let ready_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            Ok((ready_ms, marks))
        });
        Probe { task }
    }

    /// The answer if the probe has one (`None`: still asking, or gave up), ending the probe.
    fn end(self, env: &Env) -> Option<anyhow::Result<Answered>> {
        if !self.task.is_finished() {
            self.task.abort();
            return None;
        }
        env.runtime.block_on(self.task).ok()
    }
}

/// Compares a restarted agent's watermarks with what was acknowledged before the kill.
fn check_watermarks(cycle: u64, acked_ends: &[i64], marks: &[(i64, i64)]) -> Vec<String> {
    acked_ends
        .iter()
        .zip(marks)
        .enumerate()
        .filter(|(_, (acked_end, (log_start, high_watermark)))| {
            high_watermark < acked_end || *log_start != 0
        })
        .map(|(partition, (acked_end, (log_start, high_watermark)))| {
            format!(
                "lifetime {cycle}: partition {partition} answered log start {log_start}, high watermark {high_watermark}, after {acked_end} were acknowledged"
            )
        })
        .collect()
}

fn proxy_of(running: &Running) -> anyhow::Result<&S3Proxy> {
    running
        .proxy
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no proxy"))
}

/// The whole campaign on one started target: set-up, the kill cycles, the final verifying read.
fn campaign(
    running: &mut Running,
    env: &Env,
    plan: &Plan,
    target: &mut ChaosTarget,
) -> anyhow::Result<()> {
    let bootstrap = running.bootstrap.clone();
    env.runtime.block_on(crate::soak::admin::create_topic(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        &[],
        TOPIC_SETUP_LIMIT,
    ))?;
    let producer = env.runtime.block_on(Producer::start(ProducerSettings {
        bootstrap: bootstrap.clone(),
        topic: TOPIC.to_owned(),
        partitions: PARTITIONS,
        seed: plan.seed,
        records_per_batch_max: plan.records_per_batch_max,
        pace: Duration::from_millis(plan.pace_ms),
    }))?;
    target.producer_id = Some(producer.producer_id());
    let started = Instant::now();
    let puts_before = proxy_of(running)?.counters().snapshot();
    let mut recoveries = Vec::new();
    let mut acked_ends = vec![0_i64; usize::try_from(PARTITIONS)?];
    let mut spawned_at = Instant::now();
    let mut previous_answered = true;
    let mut schedule = Schedule::new(plan.seed, plan.timing);
    while !plan.done(target.kills, started.elapsed()) && !producer.failed() {
        let Some(cycle) = schedule.next() else {
            break;
        };
        let probe = Probe::start(env, &bootstrap, spawned_at);
        let lived = live(
            running,
            &cycle,
            spawned_at,
            previous_answered,
            &probe,
            target,
        )?;
        let answered = probe.end(env);
        let ready_ms = match answered {
            Some(Ok((ready_ms, marks))) => {
                target.watermark_findings.extend(check_watermarks(
                    cycle.index,
                    &acked_ends,
                    &marks,
                ));
                Some(ready_ms)
            }
            Some(Err(error)) => anyhow::bail!(
                "lifetime {}: the agent did not answer: {error:#}; {}",
                cycle.index,
                running.broker.log_tail()
            ),
            None => None,
        };
        if let Some(ready_ms) = ready_ms {
            recoveries.push(ready_ms);
        } else if lived.killed {
            target.kills_before_ready += 1;
        }
        previous_answered = ready_ms.is_some();
        target.lifetimes.push(Lifetime {
            cycle: cycle.index,
            kill_after_ms: cycle.kill_after_ms,
            killed_at_ms: lived.ended_at_ms,
            ready_ms,
            paused: cycle
                .pause
                .is_some_and(|pause| pause.at_ms < lived.ended_at_ms),
            fault: cycle
                .fault
                .filter(|fault| fault.span.at_ms < lived.ended_at_ms)
                .map(|fault| fault.spec.kind.name()),
        });
        // Whatever was acknowledged until now was acknowledged by an agent that is gone.
        let ledger = producer.ledger();
        acked_ends = ledger.acked_ends();
        if lived.killed && target.kills.is_multiple_of(PROGRESS_EVERY_KILLS) {
            eprintln!(
                "sluice-bench: chaos: {} kills in {:.0} s, {} records acknowledged, {} exits under store faults, {} findings",
                target.kills,
                started.elapsed().as_secs_f64(),
                ledger.acked_records(),
                target.exits_under_faults.len(),
                target.unexpected_exits.len() + target.watermark_findings.len()
            );
        }
        spawned_at = Instant::now();
        running.broker = running.launch.spawn()?;
    }
    target.recovery = RecoverySummary::of(&recoveries);

    // The end: the agent running now answers, the producer's last batches are acknowledged (or
    // left in doubt), one more kill, and the read from a fresh agent.
    let marks = env.runtime.block_on(client::wait_for_watermarks(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        NOT_BACK_LIMIT,
    ));
    if let Err(error) = marks {
        anyhow::bail!(
            "the agent did not answer after the last kill: {error:#}; {}",
            running.broker.log_tail()
        );
    }
    let (ledger, stats) = env.runtime.block_on(producer.finish(PRODUCER_FINISH_LIMIT));
    target.producer = Some(stats);
    running.broker.kill_now()?;
    let final_start = Instant::now();
    running.broker = running.launch.spawn()?;
    let marks = env.runtime.block_on(client::wait_for_watermarks(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        NOT_BACK_LIMIT,
    ));
    match marks {
        Ok(_) => {
            target.final_recovery_ms =
                Some(u64::try_from(final_start.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        Err(error) => anyhow::bail!(
            "the agent did not come back for the verifying read: {error:#}; {}",
            running.broker.log_tail()
        ),
    }
    target.campaign_s = started.elapsed().as_secs_f64();
    let reads = env
        .runtime
        .block_on(client::read_all(&bootstrap, TOPIC, PARTITIONS, READ_LIMIT))?;
    target.verification = Some(verify::verify(&ledger, &reads));
    let proxy = proxy_of(running)?;
    target.faults_injected = proxy.faults().counts();
    target.store = Some(proxy.counters().snapshot().since(&puts_before));
    Ok(())
}

/// How a lifetime ended.
struct Lived {
    killed: bool,
    ended_at_ms: u64,
}

/// Carries out one lifetime's actions on the running agent, up to its kill (or its own exit).
fn live(
    running: &mut Running,
    cycle: &Cycle,
    spawned_at: Instant,
    previous_answered: bool,
    probe: &Probe,
    target: &mut ChaosTarget,
) -> anyhow::Result<Lived> {
    let since_start = || u64::try_from(spawned_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut faults_opened = false;
    let mut paused = false;
    for (at_ms, action) in cycle.actions() {
        let due = spawned_at + Duration::from_millis(at_ms);
        let must_answer_first = action == Action::Kill && !previous_answered;
        loop {
            if let Some(status) = running.broker.exited() {
                proxy_of(running)?.faults().set(None, 0);
                let line = format!(
                    "lifetime {}: the agent exited ({status}) {} ms after its start, without a kill; {}",
                    cycle.index,
                    since_start(),
                    running.broker.log_tail()
                );
                if faults_opened {
                    target.exits_under_faults.push(line);
                } else {
                    target.unexpected_exits.push(line);
                }
                return Ok(Lived {
                    killed: false,
                    ended_at_ms: since_start(),
                });
            }
            let waiting_for_answer = must_answer_first && !probe.task.is_finished();
            if Instant::now() >= due {
                if !waiting_for_answer {
                    break;
                }
                // The kill waits for an answer, which a stopped agent never gives, nor one whose
                // store fails every call: a pause or a fault window that would have lasted past
                // the kill ends where the kill was due.
                if paused {
                    running.broker.signal(libc::SIGCONT)?;
                    paused = false;
                }
                proxy_of(running)?.faults().set(None, 0);
            }
            std::thread::sleep(POLL);
        }
        match action {
            Action::Pause => {
                running.broker.signal(libc::SIGSTOP)?;
                paused = true;
                target.pauses += 1;
            }
            Action::Resume => {
                running.broker.signal(libc::SIGCONT)?;
                paused = false;
            }
            Action::FaultOn(spec, seed) => {
                proxy_of(running)?.faults().set(Some(spec), seed);
                faults_opened = true;
                *target
                    .fault_windows
                    .entry(spec.kind.name().to_owned())
                    .or_insert(0) += 1;
            }
            Action::FaultOff => proxy_of(running)?.faults().set(None, 0),
            Action::Kill => {
                if must_answer_first && since_start() > cycle.kill_after_ms + 1 {
                    target.deferred_kills += 1;
                }
                running.broker.kill_now()?;
                proxy_of(running)?.faults().set(None, 0);
                target.kills += 1;
            }
        }
    }
    Ok(Lived {
        killed: true,
        ended_at_ms: since_start(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn the_length_comes_from_kills_then_seconds_then_the_mode() {
        assert_eq!(Plan::new(true, 1, None, None).length, Length::Kills(10));
        assert_eq!(Plan::new(false, 1, None, None).length, Length::Kills(1_000));
        assert_eq!(
            Plan::new(false, 1, None, Some(60)).length,
            Length::Seconds(60)
        );
        assert_eq!(
            Plan::new(false, 1, Some(5), Some(60)).length,
            Length::Kills(5)
        );
        let plan = Plan::new(true, 1, Some(3), None);
        assert!(!plan.done(2, Duration::from_secs(1_000)));
        assert!(plan.done(3, Duration::ZERO));
        let timed = Plan::new(true, 1, None, Some(5));
        assert!(!timed.done(1_000, Duration::from_secs(4)));
        assert!(timed.done(0, Duration::from_secs(5)));
        assert_eq!(plan.settings()["seed"], 1);
    }

    #[test]
    fn watermarks_below_the_acknowledged_end_are_findings() {
        assert!(check_watermarks(1, &[5, 0], &[(0, 5), (0, 9)]).is_empty());
        let found = check_watermarks(2, &[5, 7], &[(0, 5), (0, 6)]);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("partition 1"), "{found:?}");
        assert!(found[0].contains("high watermark 6, after 7"), "{found:?}");
        assert_eq!(check_watermarks(3, &[0], &[(2, 9)]).len(), 1);
    }

    #[test]
    fn clock_seeds_differ() {
        let first = clock_seed();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(first, clock_seed());
    }
}
