//! The chaos campaign's report: `report.json` and `report.md`, and the failures that decide the exit
//! code. Rendering and judging are pure; `write` does the file I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::client::ProducerStats;
use super::verify::Verification;
use crate::proxy::CountSnapshot;
use crate::proxy_faults::FaultCounts;
use crate::report::Status;

#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub scenario: String,
    pub quick: bool,
    pub command: String,
    pub seed: u64,
    pub started_at_unix_ms: u64,
    pub machine: String,
    pub settings: Map<String, Value>,
    pub targets: Vec<ChaosTarget>,
}

/// One agent lifetime as it went: when it was killed, and when (if) it answered after its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Lifetime {
    pub cycle: u64,
    /// When the kill was due, and when it came (later if deferred until the agent answered).
    pub kill_after_ms: u64,
    pub killed_at_ms: u64,
    /// From the agent's start to its first answer with every partition's watermarks.
    pub ready_ms: Option<u64>,
    pub paused: bool,
    pub fault: Option<&'static str>,
}

/// Percentiles of the restarts' recovery times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RecoverySummary {
    pub restarts_measured: usize,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl RecoverySummary {
    pub fn of(times_ms: &[u64]) -> Option<RecoverySummary> {
        let mut sorted = times_ms.to_vec();
        sorted.sort_unstable();
        let at = |fraction: f64| {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "an index into a few thousand restarts"
            )]
            let index = ((sorted.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
            sorted.get(index).copied().unwrap_or(0)
        };
        (!sorted.is_empty()).then(|| RecoverySummary {
            restarts_measured: sorted.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: sorted.last().copied().unwrap_or(0),
        })
    }
}

/// One target's campaign.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosTarget {
    pub target: String,
    pub status: Status,
    pub settings: Map<String, Value>,
    /// Scheduled kills carried out (the final kill before the verifying read is not counted).
    pub kills: u64,
    /// Kills that came before the agent had answered since its start (in recovery).
    pub kills_before_ready: u64,
    /// Kills put off until the agent answered, because the lifetime before also ended unanswered.
    pub deferred_kills: u64,
    pub pauses: u64,
    /// Fault windows opened, by kind.
    pub fault_windows: BTreeMap<String, u64>,
    pub faults_injected: FaultCounts,
    /// The agent ending without being killed in a lifetime without store faults: lifetime and exit
    /// status, with its log's last lines. Each fails the run.
    pub unexpected_exits: Vec<String>,
    /// The agent ending by itself in a lifetime with a fault window (it refused to go on with an
    /// unavailable store; a supervisor starts it again, as the harness does). Reported, not a
    /// failure: what counts is that nothing acknowledged is lost.
    pub exits_under_faults: Vec<String>,
    /// A restarted agent answering watermarks below what it had acknowledged before the kill.
    pub watermark_findings: Vec<String>,
    pub recovery: Option<RecoverySummary>,
    /// The restart before the verifying read: from start to the first answer.
    pub final_recovery_ms: Option<u64>,
    pub campaign_s: f64,
    pub producer_id: Option<i64>,
    pub producer: Option<ProducerStats>,
    pub verification: Option<Verification>,
    /// Store calls through the proxy over the whole campaign (PUTs answered 412 included).
    pub store: Option<CountSnapshot>,
    pub lifetimes: Vec<Lifetime>,
    pub notes: Vec<String>,
}

impl ChaosTarget {
    pub fn new(target: &str, settings: Map<String, Value>) -> ChaosTarget {
        ChaosTarget {
            target: target.to_owned(),
            status: Status::Ran,
            settings,
            kills: 0,
            kills_before_ready: 0,
            deferred_kills: 0,
            pauses: 0,
            fault_windows: BTreeMap::new(),
            faults_injected: FaultCounts::default(),
            unexpected_exits: Vec::new(),
            exits_under_faults: Vec::new(),
            watermark_findings: Vec::new(),
            recovery: None,
            final_recovery_ms: None,
            campaign_s: 0.0,
            producer_id: None,
            producer: None,
            verification: None,
            store: None,
            lifetimes: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Why the run fails, one line each; empty when it passes.
pub fn failures(report: &ChaosReport) -> Vec<String> {
    let mut failures = Vec::new();
    for target in &report.targets {
        let name = &target.target;
        if target.status != Status::Ran {
            failures.push(format!("{name}: {:?}", target.status));
            continue;
        }
        match &target.verification {
            None => failures.push(format!("{name}: no verifying read")),
            Some(verification) if !verification.passed() => failures.push(format!(
                "{name}: lost {}, moved {}, duplicated {}, phantom {}, corrupt {}, offset gaps {}, \
                 offsets read twice {}, out of order {}, truncated partitions {} (acknowledged {}); {}",
                verification.lost,
                verification.moved,
                verification.duplicated,
                verification.phantom,
                verification.corrupt,
                verification.offset_gaps,
                verification.offset_repeats,
                verification.out_of_order,
                verification.truncated_partitions,
                verification.acknowledged,
                verification.examples.first().map_or("", String::as_str)
            )),
            Some(_) => {}
        }
        for exit in &target.unexpected_exits {
            failures.push(format!("{name}: {exit}"));
        }
        for finding in &target.watermark_findings {
            failures.push(format!("{name}: {finding}"));
        }
        if let Some(producer) = &target.producer {
            for fatal in &producer.fatal {
                failures.push(format!("{name}: producer: {fatal}"));
            }
        }
    }
    failures
}

fn opt_ms(value: Option<u64>) -> String {
    value.map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms"))
}

/// The report as Markdown (also printed to stdout).
pub fn render(report: &ChaosReport) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# sluice-bench: chaos{}\n",
        if report.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(md, "- seed: {} (replays the schedule)", report.seed);
    let _ = writeln!(md, "- command: `{}`", report.command);
    let _ = writeln!(md, "- machine: {}", report.machine);
    let settings: Vec<String> = report
        .settings
        .iter()
        .map(|(key, value)| format!("{key} {value}"))
        .collect();
    let _ = writeln!(md, "- settings: {}\n", settings.join(", "));
    let _ = writeln!(
        md,
        "| target | status | kills survived | in recovery | pauses | fault windows | faults injected | acknowledged | lost | duplicated | recovery p50 / p99 / max | campaign |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for target in &report.targets {
        let status = match &target.status {
            Status::Ran => "ran".to_owned(),
            Status::NotInstalled(hint) => format!("**not installed**: {hint}"),
            Status::Failed(reason) => format!("**failed**: {reason}"),
            Status::NotImplemented(reason) => format!("not implemented: {reason}"),
        };
        let windows: u64 = target.fault_windows.values().sum();
        let verification = target.verification.as_ref();
        let survived = if verification.is_some_and(Verification::passed)
            && target.unexpected_exits.is_empty()
        {
            target.kills.to_string()
        } else {
            format!("— of {}", target.kills)
        };
        let recovery = target.recovery.map_or_else(
            || "—".to_owned(),
            |r| format!("{} / {} / {} ms", r.p50_ms, r.p99_ms, r.max_ms),
        );
        let _ = writeln!(
            md,
            "| {} | {status} | {survived} | {} | {} | {windows} | {} | {} | {} | {} | {recovery} | {:.0} s |",
            target.target,
            target.kills_before_ready,
            target.pauses,
            target.faults_injected.total(),
            verification.map_or_else(|| "—".to_owned(), |v| v.acknowledged.to_string()),
            verification.map_or_else(|| "—".to_owned(), |v| v.lost.to_string()),
            verification.map_or_else(|| "—".to_owned(), |v| v.duplicated.to_string()),
            target.campaign_s,
        );
    }
    for target in &report.targets {
        render_details(&mut md, target);
    }
    md
}

fn render_details(md: &mut String, target: &ChaosTarget) {
    if target.status != Status::Ran {
        return;
    }
    let _ = writeln!(md, "\n## {}\n", target.target);
    let kinds: Vec<String> = target
        .fault_windows
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    let injected = target.faults_injected;
    let _ = writeln!(
        md,
        "- kills: {} ({} before the agent answered, {} deferred until it did), plus the final kill before the read; exits by itself: {} under store faults, {} without; pauses (SIGSTOP): {}",
        target.kills,
        target.kills_before_ready,
        target.deferred_kills,
        target.exits_under_faults.len(),
        target.unexpected_exits.len(),
        target.pauses
    );
    let _ = writeln!(
        md,
        "- fault windows: {} — requests hit: error {}, error after forward {}, reset {}, reset after forward {}, delay {}",
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        },
        injected.error,
        injected.error_after_forward,
        injected.reset,
        injected.reset_after_forward,
        injected.delay
    );
    if let Some(recovery) = target.recovery {
        let _ = writeln!(
            md,
            "- recovery (start → first answer with every watermark), {} restarts: p50 {} ms, p99 {} ms, max {} ms; final restart {}",
            recovery.restarts_measured,
            recovery.p50_ms,
            recovery.p99_ms,
            recovery.max_ms,
            opt_ms(target.final_recovery_ms)
        );
    }
    if let Some(producer) = &target.producer {
        let codes: Vec<String> = producer
            .error_codes
            .iter()
            .map(|(code, count)| format!("{code}: {count}"))
            .collect();
        let calls: Vec<String> = producer
            .call_failures
            .iter()
            .map(|(kind, count)| format!("{kind}: {count}"))
            .collect();
        let _ = writeln!(
            md,
            "- producer {}: {} batches acknowledged, {} retries, {} connections; error codes {{{}}}; calls without an answer {{{}}}",
            target
                .producer_id
                .map_or_else(|| "?".to_owned(), |id| id.to_string()),
            producer.batches_acked,
            producer.retries,
            producer.connects,
            codes.join(", "),
            calls.join(", ")
        );
    }
    if let Some(store) = &target.store {
        let _ = writeln!(
            md,
            "- store calls: {} PUT ({} answered 412), {} GET, {} LIST, {} DELETE",
            store.puts, store.put_conflicts, store.gets, store.lists, store.deletes
        );
    }
    if let Some(v) = &target.verification {
        let _ = writeln!(
            md,
            "- verifying read: {} records acknowledged, {} read; lost {}, moved {}, duplicated {}, phantom {}, corrupt {}, offset gaps {}, offsets read twice {}, out of order {}; in doubt at the end: {} sent, {} read",
            v.acknowledged,
            v.served,
            v.lost,
            v.moved,
            v.duplicated,
            v.phantom,
            v.corrupt,
            v.offset_gaps,
            v.offset_repeats,
            v.out_of_order,
            v.in_doubt_sent,
            v.in_doubt_served
        );
        for example in &v.examples {
            let _ = writeln!(md, "  - {example}");
        }
    }
    if !target.exits_under_faults.is_empty() {
        let _ = writeln!(
            md,
            "- the agent exited by itself {} times in a lifetime with store faults (started again, not a failure); the first: {}",
            target.exits_under_faults.len(),
            target.exits_under_faults.first().map_or("", String::as_str)
        );
    }
    for line in target
        .unexpected_exits
        .iter()
        .chain(&target.watermark_findings)
        .chain(&target.notes)
    {
        let _ = writeln!(md, "- {line}");
    }
}

pub fn write(report: &ChaosReport, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("report.md"), render(report))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn report(target: ChaosTarget) -> ChaosReport {
        ChaosReport {
            scenario: "chaos".into(),
            quick: true,
            command: "sluice-bench --scenario chaos".into(),
            seed: 7,
            started_at_unix_ms: 0,
            machine: String::new(),
            settings: Map::new(),
            targets: vec![target],
        }
    }

    fn passing() -> ChaosTarget {
        let mut target = ChaosTarget::new("sluice", Map::new());
        target.kills = 12;
        target.pauses = 3;
        target.fault_windows.insert("reset".into(), 2);
        target.recovery = RecoverySummary::of(&[120, 80, 100]);
        target.verification = Some(Verification {
            acknowledged: 5_000,
            served: 5_003,
            in_doubt_sent: 3,
            in_doubt_served: 3,
            ..Verification::default()
        });
        target
    }

    #[test]
    fn recovery_percentiles() {
        let summary = RecoverySummary::of(&(1..=100).rev().collect::<Vec<u64>>()).unwrap();
        assert_eq!(
            (summary.p50_ms, summary.p99_ms, summary.max_ms),
            (50, 99, 100)
        );
        assert_eq!(RecoverySummary::of(&[]), None);
    }

    #[test]
    fn a_clean_campaign_passes_and_shows_its_figures() {
        let report = report(passing());
        assert!(failures(&report).is_empty(), "{:?}", failures(&report));
        let md = render(&report);
        assert!(
            md.contains(
                "| sluice | ran | 12 | 0 | 3 | 2 | 0 | 5000 | 0 | 0 | 100 / 120 / 120 ms |"
            ),
            "{md}"
        );
        assert!(md.contains("seed: 7"), "{md}");
    }

    #[test]
    fn loss_duplicates_exits_and_findings_fail_the_run() {
        let mut lossy = passing();
        if let Some(v) = lossy.verification.as_mut() {
            v.lost = 2;
            v.examples
                .push("partition 1: sequence 4 acknowledged at offset 4, never read".into());
        }
        let failed = failures(&report(lossy.clone()));
        assert_eq!(failed.len(), 1);
        assert!(failed[0].contains("lost 2"), "{failed:?}");
        assert!(failed[0].contains("sequence 4"), "{failed:?}");
        assert!(render(&report(lossy)).contains("— of 12"));

        let mut duplicated = passing();
        if let Some(v) = duplicated.verification.as_mut() {
            v.duplicated = 1;
        }
        assert_eq!(failures(&report(duplicated)).len(), 1);

        let mut crashed = passing();
        crashed
            .unexpected_exits
            .push("cycle 3: exited (exit status: 1) without a kill".into());
        crashed
            .exits_under_faults
            .push("cycle 5: exited (exit status: 1): store unavailable".into());
        crashed
            .watermark_findings
            .push("cycle 4: partition 0 high watermark 10 below 12".into());
        assert_eq!(failures(&report(crashed)).len(), 2);

        let mut unread = passing();
        unread.verification = None;
        assert_eq!(
            failures(&report(unread)),
            vec!["sluice: no verifying read".to_owned()]
        );

        let mut absent = ChaosTarget::new("sluice", Map::new());
        absent.status = Status::NotInstalled("build it".into());
        let failed = failures(&report(absent));
        assert!(failed[0].contains("NotInstalled"), "{failed:?}");
        assert!(
            render(&report(ChaosTarget {
                status: Status::NotInstalled("build it".into()),
                ..passing()
            }))
            .contains("**not installed**")
        );
    }
}
