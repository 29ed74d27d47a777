//! The `replay` scenario for one target: fill a 64-partition topic at the client's top speed,
//! read it from offset 0 to its end (`sluice-loadgen --mode replay`), restart the broker, and
//! read it twice more.
//!
//! Why a restart: an agent keeps the objects it wrote in its block cache, so a read right after
//! the fill would partly measure memory. After a restart Sluice's cache is empty and every byte
//! of the first read ("cold") comes from the object store through ranged GETs, counted by the
//! proxy. The second read ("warm") shows what the cache then holds (all of a quick run's 205 MB,
//! a slice of the full run's 5 GB). Kafka and Tansu are restarted the same way; Kafka's log stays
//! in the operating system's page cache across its restart (the harness does not drop the
//! machine's caches, which would slow every other process on it), and so do the loopback S3
//! server's files — "cold" means "not in the broker's own memory", for every target.
//!
//! The read before the restart ("after fill") tells a broker that never stored what it
//! acknowledged from one that lost it in the restart.
//!
//! Rows: `<target> fill` (a produce row), `<target> after fill`, `<target> cold`, `<target> warm`
//! (replay rows, each verified: every offset read once and every record the fill acknowledged
//! found).

use std::path::Path;
use std::time::Duration;

use crate::report::{self, Row, Status};
use crate::runner;
use crate::scenario::ReplayPlan;
use crate::targets::Running;

const TOPIC: &str = "bench-replay";

pub fn run_target(
    name: &str,
    running: &mut Running,
    plan: &ReplayPlan,
    loadgen: &Path,
    out: &Path,
) -> Vec<Row> {
    let mut settings = running.settings.clone();
    settings.extend(plan.settings());
    let failed = |label: &str, reason: String| {
        Row::without_numbers(label, Status::Failed(reason), settings.clone())
    };
    let fill_label = format!("{name} fill");
    if let Err(error) = runner::probe(running, loadgen, &out.join(format!("{name}-probe"))) {
        let reason = format!(
            "not ready after {} probe runs: {error:#}",
            runner::PROBE_ATTEMPTS_MAX
        );
        return vec![failed(&fill_label, reason)];
    }
    eprintln!(
        "sluice-bench: {fill_label}: {} records of {} bytes",
        plan.records(),
        plan.record_bytes
    );
    let (outcome, attempts) = runner::run_with_retries(
        running,
        &plan.fill(),
        loadgen,
        &|attempt| out.join(format!("{name}-fill-try{attempt}")),
        TOPIC,
        &fill_label,
    );
    let mut fill_settings = settings.clone();
    fill_settings.insert("loadgen_attempts".into(), serde_json::json!(attempts));
    let fill = match outcome {
        Ok(measured) => measured,
        Err(error) => return vec![failed(&fill_label, format!("{error:#}"))],
    };
    let fill_summary = fill.summary.clone();
    let mut fill_row = report::build_row(&fill_label, fill_settings, fill);
    fill_row.store_note.clone_from(&running.store_note);
    // The fill's latencies are queueing behind an open-loop schedule far above any broker's
    // rate: meaningless as latency, so they are not reported.
    fill_row.produce = None;
    fill_row.produce_curve.clear();
    fill_row.end_to_end_note = Some(
        "fill: produce only, at the client's top speed; its latencies are queueing, not reported"
            .to_owned(),
    );
    let mut rows = vec![fill_row];

    rows.push(read(
        name,
        "after fill",
        running,
        plan,
        loadgen,
        out,
        &fill_summary,
        &settings,
    ));
    eprintln!("sluice-bench: {name}: restarting the broker for a cold read");
    if let Err(error) = running.restart() {
        for phase in ["cold", "warm"] {
            rows.push(failed(
                &format!("{name} {phase}"),
                format!("broker did not restart: {error:#}"),
            ));
        }
        return rows;
    }
    for phase in ["cold", "warm"] {
        rows.push(read(
            name,
            phase,
            running,
            plan,
            loadgen,
            out,
            &fill_summary,
            &settings,
        ));
    }
    rows
}

/// One read of the whole topic, as a row.
#[expect(
    clippy::too_many_arguments,
    reason = "one caller; the read's whole context"
)]
fn read(
    name: &str,
    phase: &str,
    running: &Running,
    plan: &ReplayPlan,
    loadgen: &Path,
    out: &Path,
    fill_summary: &serde_json::Value,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Row {
    let label = format!("{name} {phase}");
    let run_dir = out.join(format!("{name}-replay-{}", phase.replace(' ', "-")));
    let args = plan.replay_args(&running.bootstrap, TOPIC, &run_dir.to_string_lossy());
    let limit = Duration::from_secs(plan.replay_limit_s());
    let row = match runner::run_measured(running, &args, loadgen, &run_dir, limit) {
        Ok(measured) => {
            let mut row =
                report::build_replay_row(&label, phase, settings.clone(), &measured, fill_summary);
            row.store_note.clone_from(&running.store_note);
            row
        }
        Err(error) => Row::without_numbers(
            &label,
            Status::Failed(format!("{error:#}")),
            settings.clone(),
        ),
    };
    eprintln!(
        "sluice-bench: {label}: {:.1} MB/s, verified {:?}",
        row.mb_per_sec.unwrap_or(0.0),
        row.replay.as_ref().map(|replay| replay.verified)
    );
    row
}
