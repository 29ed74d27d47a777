//! The `groups` scenario's rows, findings and Markdown: pure, unit-tested. A target that could
//! not run still gets a row saying why.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use super::stats::{OffsetCheck, Stats, latency};
use super::{COMMIT_TARGET_MARGIN_MS, Plan, SLUICE_FLUSH_INTERVAL_MS};
use crate::proxy::CountSnapshot;
use crate::report::{Latency, Status};

#[derive(Clone, Debug, Serialize)]
pub struct GroupsRow {
    pub target: String,
    pub status: Status,
    pub settings: Map<String, Value>,
    pub groups: usize,
    pub members: usize,
    /// Groups that were Stable (every member assigned in one generation) at least once.
    pub groups_stable: usize,
    /// Seconds from starting the members until the last group was first Stable (`None` when
    /// some group never was within the forming limit).
    pub all_stable_after_s: Option<f64>,
    /// Groups Stable when the steady state ended.
    pub groups_stable_at_end: usize,
    pub forming_s: f64,
    pub join_group: Option<Latency>,
    pub sync_group: Option<Latency>,
    pub forming_cpu_seconds_per_second: Option<f64>,
    pub forming_errors: BTreeMap<String, u64>,
    pub steady_s: f64,
    /// Wall-clock start of the steady state (Unix ms), to line seconds up with the broker's log.
    pub steady_started_unix_ms: u64,
    pub heartbeat: Option<Latency>,
    pub offset_commit: Option<Latency>,
    pub heartbeats_per_second: f64,
    pub commits_per_second: f64,
    pub committed_partitions_per_second: f64,
    /// The slowest commit answered in each second of the steady state (ms).
    pub commit_worst_ms_by_second: Vec<f64>,
    /// The broker process's user + system CPU over the steady state, per wall second.
    pub cpu_seconds_per_second: Option<f64>,
    /// Seconds per second the broker's threads were runnable but waiting for a CPU (summed over
    /// threads; see `sched.rs`): the machine's share of a latency tail.
    pub broker_cpu_wait_seconds_per_second: Option<f64>,
    /// The same for the harness process (simulated members, S3 server, proxy).
    pub harness_cpu_wait_seconds_per_second: Option<f64>,
    pub errors: BTreeMap<String, u64>,
    /// JoinGroup requests in the steady state: each is a member rebalancing.
    pub steady_joins: u64,
    pub send_lag_p99_ms: Option<f64>,
    pub send_lag_max_ms: Option<f64>,
    /// Object-store calls in the steady state (Sluice behind the harness proxy only).
    pub store: Option<CountSnapshot>,
    pub puts_per_second: Option<f64>,
    /// PUTs that stored an object (not refused as a create-only conflict: a hedged PUT's
    /// losing copy): the objects the agent wrote, one per flush window at most.
    pub stored_puts_per_second: Option<f64>,
    /// Sluice only: the bound on commit P99 (flush window + 20 ms) and whether it held.
    pub commit_p99_target_ms: Option<f64>,
    pub commit_p99_target_met: Option<bool>,
    /// Every group's offsets read back after the run against the acknowledged commits
    /// (`Err`: the read-back itself failed).
    pub offsets: Option<Result<OffsetCheck, String>>,
}

impl GroupsRow {
    pub fn without_numbers(
        target: &str,
        status: Status,
        settings: Map<String, Value>,
    ) -> GroupsRow {
        GroupsRow {
            target: target.to_owned(),
            status,
            settings,
            groups: 0,
            members: 0,
            groups_stable: 0,
            all_stable_after_s: None,
            groups_stable_at_end: 0,
            forming_s: 0.0,
            join_group: None,
            sync_group: None,
            forming_cpu_seconds_per_second: None,
            forming_errors: BTreeMap::new(),
            steady_s: 0.0,
            steady_started_unix_ms: 0,
            heartbeat: None,
            offset_commit: None,
            heartbeats_per_second: 0.0,
            commits_per_second: 0.0,
            committed_partitions_per_second: 0.0,
            commit_worst_ms_by_second: Vec::new(),
            cpu_seconds_per_second: None,
            broker_cpu_wait_seconds_per_second: None,
            harness_cpu_wait_seconds_per_second: None,
            errors: BTreeMap::new(),
            steady_joins: 0,
            send_lag_p99_ms: None,
            send_lag_max_ms: None,
            store: None,
            puts_per_second: None,
            stored_puts_per_second: None,
            commit_p99_target_ms: None,
            commit_p99_target_met: None,
            offsets: None,
        }
    }
}

/// What the driver measured for one target.
#[derive(Debug)]
pub struct Measured<'a> {
    pub target: &'a str,
    pub settings: Map<String, Value>,
    pub plan: Plan,
    pub groups_stable: usize,
    pub all_stable_after_s: Option<f64>,
    pub stable_at_end: usize,
    pub forming: Stats,
    pub forming_s: f64,
    pub forming_cpu_per_s: Option<f64>,
    pub steady: Stats,
    pub steady_s: f64,
    pub steady_started_unix_ms: u64,
    pub steady_cpu_per_s: Option<f64>,
    pub broker_cpu_wait_per_s: Option<f64>,
    pub harness_cpu_wait_per_s: Option<f64>,
    pub store: Option<CountSnapshot>,
    pub offsets: Result<OffsetCheck, String>,
}

pub fn build_row(measured: Measured<'_>) -> GroupsRow {
    let Measured {
        target,
        settings,
        plan,
        forming,
        steady,
        ..
    } = measured;
    let seconds = measured.steady_s.max(f64::EPSILON);
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per_second = |count: u64| count as f64 / seconds;
    let heartbeat = latency(&steady.heartbeat);
    let offset_commit = latency(&steady.offset_commit);
    let send_lag = latency(&steady.send_lag);
    let sluice = target.starts_with("sluice");
    let commit_target = sluice.then_some(SLUICE_FLUSH_INTERVAL_MS + COMMIT_TARGET_MARGIN_MS);
    let all_stable = measured.groups_stable == plan.groups;
    GroupsRow {
        target: target.to_owned(),
        // Numbers from a run where groups never formed are reported, but not as a clean run.
        status: match &measured.offsets {
            _ if !all_stable => Status::Failed(format!(
                "only {} of {} groups became Stable within {:.0} s",
                measured.groups_stable, plan.groups, measured.forming_s
            )),
            Ok(check) if !check.all_good() => Status::Failed(format!(
                "committed offsets read back: {} of {} partitions behind the last acknowledged \
                 commit, {} missing",
                check.behind, check.partitions, check.missing
            )),
            Ok(_) => Status::Ran,
            Err(error) => Status::Failed(format!("reading committed offsets back: {error}")),
        },
        settings,
        groups: plan.groups,
        members: plan.groups * plan.members_per_group,
        groups_stable: measured.groups_stable,
        all_stable_after_s: measured.all_stable_after_s,
        groups_stable_at_end: measured.stable_at_end,
        forming_s: measured.forming_s,
        join_group: latency(&forming.join_group),
        sync_group: latency(&forming.sync_group),
        forming_cpu_seconds_per_second: measured.forming_cpu_per_s,
        forming_errors: forming.errors,
        steady_s: measured.steady_s,
        steady_started_unix_ms: measured.steady_started_unix_ms,
        heartbeats_per_second: per_second(steady.heartbeat.len()),
        commits_per_second: per_second(steady.offset_commit.len()),
        committed_partitions_per_second: per_second(steady.committed_partitions),
        commit_worst_ms_by_second: steady.commit_worst_ms_by_second,
        heartbeat,
        cpu_seconds_per_second: measured.steady_cpu_per_s,
        broker_cpu_wait_seconds_per_second: measured.broker_cpu_wait_per_s,
        harness_cpu_wait_seconds_per_second: measured.harness_cpu_wait_per_s,
        errors: steady.errors,
        steady_joins: steady.joins,
        send_lag_p99_ms: send_lag.map(|l| l.p99_ms),
        send_lag_max_ms: send_lag.map(|l| l.max_ms),
        puts_per_second: measured.store.map(|s| per_second(s.puts)),
        stored_puts_per_second: measured
            .store
            .map(|s| per_second(s.puts.saturating_sub(s.put_conflicts))),
        store: measured.store,
        commit_p99_target_ms: commit_target,
        commit_p99_target_met: commit_target
            .zip(offset_commit)
            .map(|(target, commit)| commit.p99_ms < target),
        offset_commit,
        offsets: Some(measured.offsets),
    }
}

/// One line per Sluice row on the commit target.
pub fn findings(rows: &[GroupsRow]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| {
            let target = row.commit_p99_target_ms?;
            let commit = row.offset_commit?;
            Some(format!(
                "{}: offset commit P99 {:.1} ms, target < {target:.0} ms (flush window \
                 {SLUICE_FLUSH_INTERVAL_MS:.0} ms + {COMMIT_TARGET_MARGIN_MS:.0} ms): {}",
                row.target,
                commit.p99_ms,
                if commit.p99_ms < target {
                    "met"
                } else {
                    "missed"
                }
            ))
        })
        .collect()
}

/// The whole report (`report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct GroupsReport {
    pub scenario: String,
    pub quick: bool,
    pub command: String,
    pub started_at_unix_ms: u64,
    pub machine: String,
    pub findings: Vec<String>,
    pub rows: Vec<GroupsRow>,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |value| format!("{value:.digits$}"))
}

fn percentiles(latency: Option<&Latency>) -> String {
    latency.map_or_else(
        || "—".to_owned(),
        |l| {
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            )
        },
    )
}

fn status_text(status: &Status) -> String {
    match status {
        Status::Ran => "ran".to_owned(),
        Status::NotInstalled(reason) => format!("**not installed**: {reason}"),
        Status::Failed(reason) => format!("**failed**: {reason}"),
        Status::NotImplemented(reason) => format!("**not implemented**: {reason}"),
    }
}

fn error_list(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(name, count)| format!("{name} × {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn headline(row: &GroupsRow) -> String {
    if row.groups == 0 {
        return format!(
            "| {} | {} | | | | | | | |\n",
            row.target,
            status_text(&row.status)
        );
    }
    let errors: u64 = row.errors.values().sum();
    format!(
        "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |\n",
        row.target,
        row.groups_stable,
        row.groups,
        opt(row.all_stable_after_s, 1),
        percentiles(row.heartbeat.as_ref()),
        percentiles(row.offset_commit.as_ref()),
        match (row.commit_p99_target_ms, row.commit_p99_target_met) {
            (Some(target), Some(true)) => format!("< {target:.0}: met"),
            (Some(target), Some(false)) => format!("< {target:.0}: **missed**"),
            _ => "—".to_owned(),
        },
        opt(row.cpu_seconds_per_second, 3),
        match (row.puts_per_second, row.stored_puts_per_second) {
            (Some(all), Some(stored)) => format!("{all:.1} ({stored:.1})"),
            _ => "—".to_owned(),
        },
        errors,
    )
}

/// Commits slower than this make a second count as a stall in the report.
const STALL_MS: f64 = 100.0;
/// Stalled seconds listed by name; the rest are counted.
const STALLS_LISTED_MAX: usize = 12;

/// "Seconds with a commit over 100 ms: 3 of 60 (at 12 s: 850 ms, ...)".
fn stalls(worst_by_second: &[f64]) -> String {
    if worst_by_second.is_empty() {
        return String::new();
    }
    let stalled: Vec<String> = worst_by_second
        .iter()
        .enumerate()
        .filter(|(_, worst)| **worst > STALL_MS)
        .map(|(second, worst)| format!("{second} s: {worst:.0}"))
        .collect();
    let mut line = format!(
        "Seconds of the steady state whose slowest commit took over {STALL_MS:.0} ms: {} of {}",
        stalled.len(),
        worst_by_second.len()
    );
    if !stalled.is_empty() {
        let listed: Vec<&str> = stalled
            .iter()
            .take(STALLS_LISTED_MAX)
            .map(String::as_str)
            .collect();
        let more = stalled.len().saturating_sub(STALLS_LISTED_MAX);
        let _ = write!(
            line,
            " (at {} ms{})",
            listed.join(", "),
            if more > 0 {
                format!(", {more} more")
            } else {
                String::new()
            }
        );
    }
    line.push_str("  \n");
    line
}

pub fn render(report: &GroupsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# sluice-bench: scenario `groups`{}\n",
        if report.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Command: `{}`  \nMachine: {}\n",
        report.command, report.machine
    );
    out.push_str(
        "| target | groups Stable | all Stable after (s) | heartbeat p50 / p99 / p99.9 / max (ms) \
         | offset commit p50 / p99 / p99.9 / max (ms) | commit P99 target (ms) | broker CPU s/s \
         | PUT/s (stored) | errors |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &report.rows {
        out.push_str(&headline(row));
    }
    for finding in &report.findings {
        let _ = writeln!(out, "\n**{finding}**");
    }
    out.push_str(
        "\nLatencies, CPU, PUTs and errors are over the steady state (after every group was \
         Stable); CPU is the broker process's user + system seconds per wall second; PUT/s counts \
         every PUT, (stored) leaves out those refused as create-only conflicts. `—` = not \
         available.\n",
    );
    for row in &report.rows {
        let _ = writeln!(
            out,
            "\n## {}\n\nStatus: {}  ",
            row.target,
            status_text(&row.status)
        );
        if row.groups > 0 {
            let _ = writeln!(
                out,
                "Forming: {} of {} groups Stable in {:.1} s; JoinGroup p50 / p99 / p99.9 / max \
                 {} ms, SyncGroup {} ms; broker CPU {} s/s  ",
                row.groups_stable,
                row.groups,
                row.forming_s,
                percentiles(row.join_group.as_ref()),
                percentiles(row.sync_group.as_ref()),
                opt(row.forming_cpu_seconds_per_second, 3),
            );
            let _ = writeln!(out, "Forming errors: {}  ", error_list(&row.forming_errors));
            let _ = writeln!(
                out,
                "Steady state: {:.1} s from Unix ms {}, {:.0} heartbeats/s, {:.0} commits/s ({:.0} partitions/s), \
                 {} JoinGroups, {} of {} groups Stable at the end  ",
                row.steady_s,
                row.steady_started_unix_ms,
                row.heartbeats_per_second,
                row.commits_per_second,
                row.committed_partitions_per_second,
                row.steady_joins,
                row.groups_stable_at_end,
                row.groups,
            );
            let _ = writeln!(out, "Steady-state errors: {}  ", error_list(&row.errors));
            out.push_str(&stalls(&row.commit_worst_ms_by_second));
            if row.broker_cpu_wait_seconds_per_second.is_some() {
                let _ = writeln!(
                    out,
                    "Waiting for a CPU while runnable (s/s, all threads): broker {}, harness {}  ",
                    opt(row.broker_cpu_wait_seconds_per_second, 3),
                    opt(row.harness_cpu_wait_seconds_per_second, 3),
                );
            }
            if let (Some(p99), Some(max)) = (row.send_lag_p99_ms, row.send_lag_max_ms) {
                let _ = writeln!(out, "Members' send lag p99 / max: {p99:.1} / {max:.1} ms  ");
            }
            match &row.offsets {
                Some(Ok(check)) => {
                    let _ = writeln!(
                        out,
                        "Committed offsets read back (OffsetFetch after the run): {} partitions \
                         of {} groups; {} behind the last acknowledged commit, {} missing  ",
                        check.partitions, check.groups, check.behind, check.missing
                    );
                }
                Some(Err(error)) => {
                    let _ = writeln!(out, "Committed offsets not read back: {error}  ");
                }
                None => {}
            }
            if let Some(c) = &row.store {
                let _ = writeln!(
                    out,
                    "Object-store calls in the steady state: {} PUT ({} bytes; {} refused as \
                     create-only conflicts, e.g. hedged copies), {} GET, {} LIST  ",
                    c.puts, c.put_bytes, c.put_conflicts, c.gets, c.lists
                );
            }
        }
        let settings: Vec<String> = row
            .settings
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let _ = writeln!(out, "Settings: {}", settings.join(", "));
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
