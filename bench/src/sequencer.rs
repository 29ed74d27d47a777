//! Scenario `sequencer`: how many commit records the cluster's sequencer (the ordered metadata
//! log in PostgreSQL, `sluice_engine::sequencer`) appends and every agent applies per second, as
//! agents grow, and the latency a commit adds. No broker and no load generator.
//!
//! Each simulated agent is what an agent of a cluster does with the sequencer, and nothing else:
//! its own `PgSequencer` (a writer and a watcher connection), registered with a lease, one fenced
//! append (its lease and record deadline checked by the database, as an agent's are) of
//! `records_per_append` records of 1 KiB (a window's commit record: the object's id and its
//! tail, a few KB) in flight at a time, back to back, and a tailer that follows the head watch
//! (NOTIFY, with the poll as safety net) and reads every agent's records, up to 1,024 per read,
//! as the agent's tailer does before it applies them. Appends run flat out, so the step with the
//! most agents that still adds records per second is where the database saturates.
//!
//! Measured per step: records appended per second; records the slowest tailer read per second;
//! append latency (the statement and its commit, as the agent sees it); and *append → applied*:
//! from sending an append to its own agent's tailer having read it (what a produce waits for
//! after its PUT), and to every tailer having read it (when a consumer on any agent can see it).
//! PostgreSQL is started as the tests start it (`TestPostgres`: Debian's package, a fresh
//! cluster, default durability: `fsync` and `synchronous_commit` on), on the same machine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use sluice_engine::sequencer::{AgentRegistration, Fence, PgSequencer};
use tokio::sync::watch;

use crate::plot;

/// Agents per step when `--agents` is not given.
pub const DEFAULT_AGENTS: &str = "1,2,4,8,16";
/// Most simulated agents in one step (two connections each; PostgreSQL's default
/// `max_connections` is 100).
pub const AGENTS_MAX: usize = 40;
/// Bytes of one commit record.
pub const RECORD_BYTES: usize = 1024;
/// Records one tailer read returns at most (as the agent's tailer).
const READ_RECORDS_MAX: usize = 1024;
/// The simulated agents' lease: longer than any step, so none is renewed during one.
const BENCH_LEASE_MS: u64 = 10 * 60 * 1_000;
/// Records per append at most (the sequencer's own limit is 4,096).
pub const RECORDS_PER_APPEND_MAX: usize = 1024;

/// The sizes of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub agents: Vec<usize>,
    pub step: Duration,
    pub records_per_append: usize,
    /// Appends fenced as an agent's are (default); `false` (`--unfenced`): the statement without
    /// the lease and deadline check, to measure what the check costs.
    pub fenced: bool,
}

impl Plan {
    /// `agents`: a comma list (default [`DEFAULT_AGENTS`]); `step_s`: seconds per step (default
    /// 10, quick 3); `records_per_append` default 1 (each window its own commit).
    pub fn new(
        quick: bool,
        agents: Option<&str>,
        step_s: Option<u64>,
        records_per_append: Option<usize>,
    ) -> anyhow::Result<Plan> {
        let agents = parse_agents(agents.unwrap_or(DEFAULT_AGENTS))?;
        let step_s = step_s.unwrap_or(if quick { 3 } else { 10 });
        anyhow::ensure!(
            (1..=600).contains(&step_s),
            "--duration-s {step_s}: a sequencer step lasts 1 to 600 s"
        );
        let records_per_append = records_per_append.unwrap_or(1);
        anyhow::ensure!(
            (1..=RECORDS_PER_APPEND_MAX).contains(&records_per_append),
            "--records-per-append {records_per_append}: 1 to {RECORDS_PER_APPEND_MAX}"
        );
        Ok(Plan {
            agents,
            step: Duration::from_secs(step_s),
            records_per_append,
            fenced: true,
        })
    }
}

/// `"1,2,4"` → `[1, 2, 4]`: each 1 to [`AGENTS_MAX`], at least one.
pub fn parse_agents(list: &str) -> anyhow::Result<Vec<usize>> {
    let agents = list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let agents: usize = item
                .parse()
                .map_err(|_| anyhow::anyhow!("--agents: {item:?} is not a number of agents"))?;
            anyhow::ensure!(
                (1..=AGENTS_MAX).contains(&agents),
                "--agents: {agents}: a step has 1 to {AGENTS_MAX} agents"
            );
            Ok(agents)
        })
        .collect::<anyhow::Result<Vec<usize>>>()?;
    anyhow::ensure!(!agents.is_empty(), "--agents: no step in {list:?}");
    Ok(agents)
}

/// One append as its agent saw it: the last position it took, when it was sent and when it
/// returned (microseconds from the step's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Append {
    pub last_position: u64,
    pub sent_us: u64,
    pub returned_us: u64,
}

/// A tailer's progress: it had read up to `position` at `at_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub position: u64,
    pub at_us: u64,
}

/// Percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Of microsecond values (sorted here).
    pub fn of(mut values_us: Vec<u64>) -> Percentiles {
        values_us.sort_unstable();
        let at = |p: f64| -> f64 {
            if values_us.is_empty() {
                return 0.0;
            }
            #[expect(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "an index into a vector"
            )]
            let index = ((values_us.len() - 1) as f64 * p).round() as usize;
            #[expect(clippy::cast_precision_loss, reason = "microseconds")]
            let value = values_us.get(index).copied().unwrap_or_default() as f64;
            value / 1000.0
        };
        Percentiles {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// One step's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub agents: usize,
    pub seconds: f64,
    pub appends_per_sec: f64,
    pub records_appended_per_sec: f64,
    /// Records the slowest tailer had read by the end of the step, per second.
    pub records_applied_per_sec_min: f64,
    /// The statement and its commit.
    pub append: Percentiles,
    /// From sending an append to its own agent's tailer having read it.
    pub append_to_applied: Percentiles,
    /// From sending an append to every agent's tailer having read it.
    pub append_to_applied_everywhere: Percentiles,
    pub load_average_start: String,
    pub load_average_end: String,
}

/// The step's figures from what each agent's appender and tailer recorded (agent `i`'s appends
/// and its tailer's progress at index `i`).
pub fn summarize(
    agents: usize,
    step: Duration,
    records_per_append: usize,
    appends: &[Vec<Append>],
    applied: &[Vec<Applied>],
) -> Step {
    let seconds = step.as_secs_f64();
    let step_us = u64::try_from(step.as_micros()).unwrap_or(u64::MAX);
    let all: Vec<&Append> = appends.iter().flatten().collect();
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let appends_per_sec = all.len() as f64 / seconds;
    #[expect(clippy::cast_precision_loss, reason = "a small number")]
    let records_appended_per_sec = appends_per_sec * records_per_append as f64;
    // Positions start at 1 in a fresh cluster, so the position read is the records read.
    let read_by_end = applied.iter().map(|progress| {
        progress
            .iter()
            .take_while(|event| event.at_us <= step_us)
            .last()
            .map_or(0, |event| event.position)
    });
    #[expect(clippy::cast_precision_loss, reason = "positions far below 2^52")]
    let records_applied_per_sec_min = read_by_end.min().unwrap_or(0) as f64 / seconds;
    let applied_at = |progress: &[Applied], position: u64| -> Option<u64> {
        let index = progress.partition_point(|event| event.position < position);
        progress.get(index).map(|event| event.at_us)
    };
    let mut own = Vec::with_capacity(all.len());
    let mut everywhere = Vec::with_capacity(all.len());
    for (agent, agent_appends) in appends.iter().enumerate() {
        for append in agent_appends {
            if let Some(at) = applied
                .get(agent)
                .and_then(|progress| applied_at(progress, append.last_position))
            {
                own.push(at.saturating_sub(append.sent_us));
            }
            let last = applied
                .iter()
                .map(|progress| applied_at(progress, append.last_position))
                .collect::<Option<Vec<u64>>>()
                .and_then(|ats| ats.into_iter().max());
            if let Some(at) = last {
                everywhere.push(at.saturating_sub(append.sent_us));
            }
        }
    }
    Step {
        agents,
        seconds,
        appends_per_sec,
        records_appended_per_sec,
        records_applied_per_sec_min,
        append: Percentiles::of(
            all.iter()
                .map(|append| append.returned_us.saturating_sub(append.sent_us))
                .collect(),
        ),
        append_to_applied: Percentiles::of(own),
        append_to_applied_everywhere: Percentiles::of(everywhere),
        load_average_start: String::new(),
        load_average_end: String::new(),
    }
}

/// Where the appends stopped growing: the step with the most records appended per second, and
/// what the largest step did beyond it.
pub fn saturation_finding(steps: &[Step]) -> Option<String> {
    let peak = steps.iter().max_by(|a, b| {
        a.records_appended_per_sec
            .total_cmp(&b.records_appended_per_sec)
    })?;
    let largest = steps.iter().max_by_key(|step| step.agents)?;
    let mut text = format!(
        "peak {:.0} records/s appended at {} agents (append → applied p50 {:.1} ms, p99 {:.1} ms)",
        peak.records_appended_per_sec,
        peak.agents,
        peak.append_to_applied.p50_ms,
        peak.append_to_applied.p99_ms
    );
    if largest.agents > peak.agents {
        text.push_str(&format!(
            "; at {} agents {:.0} records/s (append → applied p50 {:.1} ms, p99 {:.1} ms): more \
             agents only queue on the log's counter row",
            largest.agents,
            largest.records_appended_per_sec,
            largest.append_to_applied.p50_ms,
            largest.append_to_applied.p99_ms
        ));
    } else {
        text.push_str(": still growing at the largest step, the saturation is beyond it");
    }
    Some(text)
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct SequencerReport {
    pub scenario: String,
    pub quick: bool,
    pub command: String,
    pub started_at_unix_ms: u64,
    pub machine: String,
    pub postgres: String,
    pub records_per_append: usize,
    pub record_bytes: usize,
    /// Whether appends were fenced (the lease and record deadline checked in the statement).
    pub fenced: bool,
    pub findings: Vec<String>,
    pub steps: Vec<Step>,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// The report as Markdown.
pub fn render(report: &SequencerReport) -> String {
    let mut text = format!(
        "# sluice-bench: sequencer{}\n\n{}; {}. {} record(s) of {} bytes per append, {}, one \
         append in flight per agent, flat out.\n\n",
        if report.quick { " (quick)" } else { "" },
        report.machine,
        report.postgres,
        report.records_per_append,
        report.record_bytes,
        if report.fenced {
            "fenced (each agent registered; its lease and record deadline checked in the statement)"
        } else {
            "unfenced (--unfenced)"
        }
    );
    text.push_str(
        "| agents | appends/s | records appended/s | records applied/s (slowest tailer) | append p50 / p99 / max ms | append → applied p50 / p99 ms | → applied everywhere p50 / p99 ms | load average |\n\
         |---:|---:|---:|---:|---|---|---|---|\n",
    );
    for step in &report.steps {
        text.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} / {:.2} / {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {} → {} |\n",
            step.agents,
            step.appends_per_sec,
            step.records_appended_per_sec,
            step.records_applied_per_sec_min,
            step.append.p50_ms,
            step.append.p99_ms,
            step.append.max_ms,
            step.append_to_applied.p50_ms,
            step.append_to_applied.p99_ms,
            step.append_to_applied_everywhere.p50_ms,
            step.append_to_applied_everywhere.p99_ms,
            step.load_average_start,
            step.load_average_end,
        ));
    }
    for finding in &report.findings {
        text.push_str(&format!("\n- {finding}"));
    }
    if let Some(error) = &report.error {
        text.push_str(&format!("\n\n**FAILED**: {error}"));
    }
    text.push('\n');
    text
}

/// Runs every step on a fresh PostgreSQL and writes `report.json`, `report.md` and two plots to
/// `out`. Returns the exit code: 1 when a step failed.
pub fn run(plan: &Plan, quick: bool, out: &Path) -> anyhow::Result<i32> {
    let postgres = crate::cluster::start_postgres("sequencer").map_err(|error| match error {
        crate::targets::StartError::NotInstalled(hint)
        | crate::targets::StartError::Failed(hint) => {
            anyhow::anyhow!("{hint}")
        }
    })?;
    let version = postgres.query_i64("SELECT current_setting('server_version_num')::bigint");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = postgres.url();
    let mut steps = Vec::with_capacity(plan.agents.len());
    let mut error = None;
    for (index, &agents) in plan.agents.iter().enumerate() {
        let load_average_start = crate::load_average();
        eprintln!("sluice-bench: sequencer: {agents} agent(s), load average {load_average_start}");
        // A cluster of its own per step, so that its positions start at 1 (`summarize` counts
        // records by position) even when a list names one agent count twice.
        let cluster = format!("bench-{index}-{agents}-{}", plan.records_per_append);
        match runtime.block_on(run_step(&url, &cluster, agents, plan)) {
            Ok(mut step) => {
                step.load_average_start = load_average_start;
                step.load_average_end = crate::load_average();
                eprintln!(
                    "sluice-bench: sequencer: {agents} agent(s): {:.0} records/s appended, append → applied p99 {:.2} ms",
                    step.records_appended_per_sec, step.append_to_applied.p99_ms
                );
                steps.push(step);
            }
            Err(failure) => {
                error = Some(format!("{agents} agents: {failure:#}"));
                break;
            }
        }
    }
    let report = SequencerReport {
        scenario: "sequencer".to_owned(),
        quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        machine: crate::machine(),
        postgres: format!(
            "PostgreSQL {}.{} on loopback (fresh cluster, fsync and synchronous_commit on)",
            version / 10_000,
            version % 10_000
        ),
        records_per_append: plan.records_per_append,
        record_bytes: RECORD_BYTES,
        fenced: plan.fenced,
        findings: saturation_finding(&steps).into_iter().collect(),
        steps,
        error,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = render(&report);
    std::fs::write(out.join("report.md"), &markdown)?;
    let label = |step: &Step| format!("{} agent(s)", step.agents);
    let appended: Vec<(String, f64)> = report
        .steps
        .iter()
        .map(|step| (label(step), step.records_appended_per_sec))
        .collect();
    std::fs::write(
        out.join("sequencer-records-per-sec.svg"),
        plot::bars(
            "sequencer: records appended per second",
            "records/s",
            &appended,
        ),
    )?;
    let latency: Vec<(String, f64)> = report
        .steps
        .iter()
        .map(|step| (label(step), step.append_to_applied.p99_ms))
        .collect();
    std::fs::write(
        out.join("sequencer-append-to-applied-p99.svg"),
        plot::bars(
            "sequencer: append → applied by its agent, P99",
            "milliseconds",
            &latency,
        ),
    )?;
    println!("{markdown}");
    println!("sluice-bench: wrote {}", out.display());
    if let Some(error) = &report.error {
        eprintln!("sluice-bench: FAILED: sequencer: {error}");
        return Ok(crate::FAILED_EXIT_CODE);
    }
    Ok(0)
}

fn elapsed_us(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One step: `agents` simulated agents on `cluster` (a new one) for `plan.step`.
async fn run_step(url: &str, cluster: &str, agents: usize, plan: &Plan) -> anyhow::Result<Step> {
    let mut sequencers = Vec::with_capacity(agents);
    for agent in 0..agents {
        let sequencer = PgSequencer::connect(url, cluster).await?;
        // Registered as an agent is, so that every append is fenced as an agent's is (the lease
        // and the record deadline checked by the database in the append's statement).
        let registration = AgentRegistration {
            agent_id: format!("bench-{agent}"),
            address: format!("127.0.0.1:{}", 10_000 + agent),
            zone: String::new(),
            roles: vec!["broker".to_owned()],
        };
        let lease = sequencer.register(&registration, BENCH_LEASE_MS).await?;
        sequencers.push((Arc::new(sequencer), lease));
    }
    let (done_tx, done_rx) = watch::channel(false);
    let start = Instant::now();
    let stop_at = start + plan.step;
    let mut appenders = Vec::with_capacity(agents);
    let mut tailers = Vec::with_capacity(agents);
    for (agent, (sequencer, lease)) in sequencers.into_iter().enumerate() {
        let records = vec![
            Bytes::from(vec![u8::try_from(agent % 256).unwrap_or(0); RECORD_BYTES]);
            plan.records_per_append
        ];
        let writer = Arc::clone(&sequencer);
        let fenced = plan.fenced;
        appenders.push(tokio::spawn(async move {
            let mut appends = Vec::new();
            while Instant::now() < stop_at {
                // The deadline an agent gives a window it has just uploaded: one lease on.
                let fence = Fence::for_send_by(
                    &lease,
                    Instant::now() + Duration::from_millis(BENCH_LEASE_MS),
                )?;
                let sent_us = elapsed_us(start);
                let range = if fenced {
                    writer.append_fenced(records.clone(), &fence).await?
                } else {
                    writer.append(records.clone()).await?
                };
                appends.push(Append {
                    last_position: range.end.saturating_sub(1),
                    sent_us,
                    returned_us: elapsed_us(start),
                });
            }
            anyhow::Ok(appends)
        }));
        let mut done = done_rx.clone();
        tailers.push(tokio::spawn(async move {
            let mut head = sequencer.subscribe();
            let mut after = 0;
            let mut progress = Vec::new();
            loop {
                let finished = *done.borrow_and_update();
                let target = if finished {
                    sequencer.head().await?
                } else {
                    tokio::select! {
                        _ = head.changed() => {}
                        _ = done.changed() => {}
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    *head.borrow_and_update()
                };
                while after < target {
                    let records = sequencer.read_after(after, READ_RECORDS_MAX).await?;
                    let Some((last, _)) = records.last() else {
                        break;
                    };
                    after = *last;
                    progress.push(Applied {
                        position: after,
                        at_us: elapsed_us(start),
                    });
                }
                if finished {
                    break;
                }
            }
            anyhow::Ok(progress)
        }));
    }
    let mut appends = Vec::with_capacity(agents);
    let mut failure = None;
    for appender in appenders {
        match appender.await {
            Ok(Ok(agent_appends)) => appends.push(agent_appends),
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(join) => failure = failure.or(Some(anyhow::anyhow!("appender: {join}"))),
        }
    }
    // Every append has returned: the tailers catch up with the final head and stop.
    let _ = done_tx.send(true);
    let mut applied = Vec::with_capacity(agents);
    for tailer in tailers {
        match tailer.await {
            Ok(Ok(progress)) => applied.push(progress),
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(join) => failure = failure.or(Some(anyhow::anyhow!("tailer: {join}"))),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(summarize(
        agents,
        plan.step,
        plan.records_per_append,
        &appends,
        &applied,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn agents_and_sizes_are_checked() {
        assert_eq!(parse_agents(" 1,2, 16 ").unwrap(), [1, 2, 16]);
        for bad in ["", "0", "1,x", "41", "-2"] {
            let error = parse_agents(bad).unwrap_err().to_string();
            assert!(error.starts_with("--agents"), "{bad:?}: {error}");
        }
        let plan = Plan::new(true, None, None, None).unwrap();
        assert_eq!(plan.agents, [1, 2, 4, 8, 16]);
        assert_eq!(plan.step, Duration::from_secs(3));
        assert_eq!(plan.records_per_append, 1);
        assert_eq!(
            Plan::new(false, Some("4"), None, Some(8)).unwrap(),
            Plan {
                agents: vec![4],
                step: Duration::from_secs(10),
                records_per_append: 8,
                fenced: true,
            }
        );
        assert!(Plan::new(false, None, Some(0), None).is_err());
        assert!(Plan::new(false, None, None, Some(0)).is_err());
    }

    #[test]
    fn append_to_applied_counts_from_sending_to_the_first_read_that_covers_it() {
        // Two agents, 1 s: agent 0 appended positions 1 and 3, agent 1 position 2.
        let appends = vec![
            vec![
                Append {
                    last_position: 1,
                    sent_us: 0,
                    returned_us: 2_000,
                },
                Append {
                    last_position: 3,
                    sent_us: 2_000,
                    returned_us: 5_000,
                },
            ],
            vec![Append {
                last_position: 2,
                sent_us: 1_000,
                returned_us: 4_000,
            }],
        ];
        let applied = vec![
            vec![
                Applied {
                    position: 1,
                    at_us: 3_000,
                },
                Applied {
                    position: 3,
                    at_us: 6_000,
                },
            ],
            vec![
                Applied {
                    position: 2,
                    at_us: 4_500,
                },
                // Read after the step ended: not in the applied rate.
                Applied {
                    position: 3,
                    at_us: 1_200_000,
                },
            ],
        ];
        let step = summarize(2, Duration::from_secs(1), 1, &appends, &applied);
        assert!((step.appends_per_sec - 3.0).abs() < 1e-9);
        assert!((step.records_appended_per_sec - 3.0).abs() < 1e-9);
        assert!(
            (step.records_applied_per_sec_min - 2.0).abs() < 1e-9,
            "the slowest tailer had read 2 by the end"
        );
        // Own tailer: 3 ms (position 1), 4 ms (position 3 at 6 ms), 3.5 ms (position 2).
        assert_eq!(step.append_to_applied.p50_ms, 3.5);
        assert_eq!(step.append_to_applied.max_ms, 4.0);
        // Everywhere: position 1 read by tailer 1 at 4.5 ms (it read up to 2), position 3 only
        // at 1,200 ms.
        assert_eq!(step.append_to_applied_everywhere.max_ms, 1_198.0);
        assert_eq!(step.append.p50_ms, 3.0);
        let finding = saturation_finding(&[step]).unwrap();
        assert!(
            finding.starts_with("peak 3 records/s appended at 2 agents"),
            "{finding}"
        );
        assert!(finding.contains("still growing"), "{finding}");
    }

    #[test]
    fn the_finding_names_the_peak_and_what_came_after() {
        let step = |agents, records: f64| Step {
            agents,
            seconds: 1.0,
            appends_per_sec: records,
            records_appended_per_sec: records,
            records_applied_per_sec_min: records,
            append: Percentiles::default(),
            append_to_applied: Percentiles {
                p50_ms: 1.0,
                p99_ms: 2.0,
                max_ms: 3.0,
            },
            append_to_applied_everywhere: Percentiles::default(),
            load_average_start: String::new(),
            load_average_end: String::new(),
        };
        let steps = [step(1, 300.0), step(4, 900.0), step(16, 700.0)];
        let finding = saturation_finding(&steps).unwrap();
        assert!(
            finding.starts_with("peak 900 records/s appended at 4 agents"),
            "{finding}"
        );
        assert!(finding.contains("at 16 agents 700 records/s"), "{finding}");
        assert_eq!(saturation_finding(&[]), None);
        let report = SequencerReport {
            scenario: "sequencer".into(),
            quick: true,
            command: String::new(),
            started_at_unix_ms: 0,
            machine: "2 CPUs".into(),
            postgres: "PostgreSQL 15.18".into(),
            records_per_append: 1,
            record_bytes: RECORD_BYTES,
            fenced: true,
            findings: vec![finding],
            steps: steps.to_vec(),
            error: Some("8 agents: refused".into()),
        };
        let markdown = render(&report);
        assert!(markdown.contains("| 4 | 900 | 900 | 900 |"), "{markdown}");
        assert!(markdown.contains("**FAILED**: 8 agents"), "{markdown}");
    }
}
